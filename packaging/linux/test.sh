#!/usr/bin/env bash
# Runs the whole test suite (every crate of the workspace). Does all set-up first, idempotently:
# Debian packages (Xvfb, Mesa lavapipe for the wgpu snapshot tests), libtorch, release build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source packaging/linux/env.sh
# Software Vulkan (lavapipe) for wgpu snapshot tests on machines without a GPU.
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
# The front binary's tests start `sam3d-studio-engine`, another crate's binary: build every
# binary first (cargo builds only the tested package's own for its integration tests).
cargo build --release --locked --workspace --bins
# The layers are structural (ARCHITECTURE.md): the core crate knows neither libtorch nor the GUI
# stack, the front binary never depends on the engine crate, and never links libtorch.
for spec in "sam3d-core:tch|egui|eframe|wgpu|torch-sys" "sam3d-studio:tch|torch-sys|sam3d-engine"; do
  pkg=${spec%%:*}; banned=${spec#*:}
  if cargo tree --locked -p "$pkg" -e normal --prefix none | grep -Eq "^($banned) v"; then
    echo "error: $pkg depends on one of $banned (cargo tree -p $pkg -e normal -i …)" >&2; exit 1
  fi
done
gui="${CARGO_TARGET_DIR:-target}/release/sam3d-studio"
[ -x "$gui" ] || { echo "error: $gui was not built" >&2; exit 1; }
if ldd "$gui" | grep -q torch; then
  echo "error: $gui links libtorch" >&2; exit 1
fi
# The installer scripts are run by hand (packaging/build-installers.sh, test-installers.sh,
# test-wine.sh: an hour and more); here only their syntax is checked.
for script in packaging/*.sh packaging/*/*.sh; do bash -n "$script"; done
cargo test --release --locked --workspace "$@"
