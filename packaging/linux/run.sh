#!/usr/bin/env bash
# Runs sam3d-studio (the GUI on the demo CT when given no arguments; any CLI subcommand works
# too). Does all set-up first, idempotently: Debian packages, libtorch, release build.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source packaging/linux/env.sh
cargo build --release --locked --quiet
exec "$root/target/release/sam3d-studio" "$@"
