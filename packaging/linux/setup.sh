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

# --- libtorch (from the PyTorch wheel) ------------------------------------------------------
if [ ! -f "$torch_dir/.complete" ]; then
  log "installing torch==$TORCH_VERSION into $torch_dir (once; about 5 GB)"
  rm -rf "$torch_dir.partial"
  mkdir -p "$cache"
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --target "$torch_dir.partial" "torch==$TORCH_VERSION"
  rm -rf "$torch_dir"
  mv "$torch_dir.partial" "$torch_dir"
  touch "$torch_dir/.complete"
fi
[ -f "$torch_dir/torch/lib/libtorch_cpu.so" ] || { log "libtorch not found in $torch_dir/torch/lib"; exit 1; }

# --- nninteractive-client (tests only: the real client of `serve-http`) ----------------------
# What 3D Slicer's nnInteractive extension installs; the HTTP server's integration test drives
# the server with it. Installed once into the cache (with its numpy, httpx, blosc2), never used
# by the product.
NNI_VERSION=2.6.0
nni_dir=$cache/nninteractive-client-$NNI_VERSION
if [ ! -f "$nni_dir/.complete" ]; then
  log "installing nninteractive-client==$NNI_VERSION into $nni_dir (once, for the tests)"
  rm -rf "$nni_dir.partial"
  mkdir -p "$cache"
  python3 -m pip install -q --disable-pip-version-check --no-warn-script-location \
      --target "$nni_dir.partial" "nninteractive-client==$NNI_VERSION"
  rm -rf "$nni_dir"
  mv "$nni_dir.partial" "$nni_dir"
  touch "$nni_dir/.complete"
fi

cat <<ENV
export LIBTORCH='$torch_dir/torch'
export SAM3D_NNI_CLIENT='$nni_dir'
ENV
