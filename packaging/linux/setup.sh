#!/usr/bin/env bash
# Idempotent developer/CI set-up for sam3d-studio on Debian-like Linux.
#   - Debian packages for the GUI (X11/Vulkan software rendering), screenshots and benchmarks
#   - PyTorch 2.13.0's libtorch (what tch 0.26 links), installed ONCE into a cache outside the
#     checkout: ${SAM3D_CACHE:-$HOME/.cache/sam3d-studio}/torch-2.13.0
# Prints `export` lines for the environment the build needs (eval them, or source env.sh).
# Safe to run again: every step checks first and does nothing when already done.
set -euo pipefail

TORCH_VERSION=2.13.0
cache=${SAM3D_CACHE:-$HOME/.cache/sam3d-studio}
torch_dir=$cache/torch-$TORCH_VERSION
log() { echo "[setup] $*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
pkgs=(xvfb xauth mesa-vulkan-drivers libvulkan1 libxkbcommon-x11-0 libx11-xcb1 libxcursor1
      libxrandr2 libxi6 libgl1 libegl1 imagemagick pkg-config cmake)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] && ! command -v sudo >/dev/null; then
    log "missing Debian packages: ${missing[*]} (run as root or install them)"; exit 1
  fi
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

# pip_once DIR SPEC WHAT: installs SPEC with pip into DIR once (a .partial folder renamed when
# complete, so an interrupted install starts over).
pip_once() {
  local dir=$1 spec=$2 what=$3
  [ -f "$dir/.complete" ] && return 0
  log "installing $spec into $dir ($what)"
  rm -rf "$dir.partial"
  mkdir -p "$cache"
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location --target "$dir.partial" "$spec"
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  touch "$dir/.complete"
}

# --- libtorch (from the PyTorch wheel) ------------------------------------------------------
pip_once "$torch_dir" "torch==$TORCH_VERSION" "once; about 5 GB"
[ -f "$torch_dir/torch/lib/libtorch_cpu.so" ] || { log "libtorch not found in $torch_dir/torch/lib"; exit 1; }

# --- nninteractive-client (tests only: the real client of `serve-http`) ----------------------
# What 3D Slicer's nnInteractive extension installs; the HTTP server's integration test drives
# the server with it. Installed once into the cache (with its numpy, httpx, blosc2), never used
# by the product.
NNI_VERSION=2.6.0
nni_dir=$cache/nninteractive-client-$NNI_VERSION
pip_once "$nni_dir" "nninteractive-client==$NNI_VERSION" "once, for the tests"

cat <<ENV
export LIBTORCH='$torch_dir/torch'
export SAM3D_NNI_CLIENT='$nni_dir'
ENV
