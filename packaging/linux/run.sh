#!/usr/bin/env bash
# Runs sam3d-studio (the GUI on the demo CT when given no arguments; any CLI subcommand works
# too). Does all set-up first, idempotently: Debian packages, libtorch, release build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source packaging/linux/env.sh
# The front binary never links libtorch (the workspace keeps the engine crate out of it); model
# work runs in `sam3d-studio-engine`, built beside it.
cargo build --profile dist --locked --quiet --workspace --bins
exec "$root/target/dist/sam3d-studio" "$@"
