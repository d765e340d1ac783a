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
cargo test --release --locked --workspace "$@"
