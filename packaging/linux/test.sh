#!/usr/bin/env bash
# Runs the whole test suite. Does all set-up first, idempotently: Debian packages (Xvfb, Mesa
# lavapipe for the wgpu snapshot tests), libtorch, release build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source packaging/linux/env.sh
# Software Vulkan (lavapipe) for wgpu snapshot tests on machines without a GPU.
export WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
cargo test --release --locked "$@"
