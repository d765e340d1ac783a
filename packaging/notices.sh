#!/usr/bin/env bash
# Writes the version, licence and third-party notices an installer carries into DOC_DIR:
#   README.md, VERSION (version and commit), LICENSE (sam3d-studio: Apache-2.0),
#   DATA-CREDITS.txt (the demo CT and MR: TotalSegmentator's test data, Apache-2.0; their
#   LICENSE files also ship beside them in assets/),
#   THIRD-PARTY-NOTICES.txt (every crate compiled in, from `cargo metadata`: packaging/notices.py),
#   libtorch/ (linux: PyTorch's LICENSE and its third_party licences, from the wheel; and
#   NVIDIA's licence for the two CUDA runtime libraries libtorch_cpu needs)
#
# usage: notices.sh linux|windows DOC_DIR
#   linux: crates of sam3d-studio and sam3d-engine for x86_64-unknown-linux-gnu, with libtorch
#   windows: crates of sam3d-studio for x86_64-pc-windows-gnu (the engine is not in that build;
#            .github/workflows/windows-installer.yml adds its notices when it adds the engine)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kind=${1:?usage: notices.sh linux|windows DOC_DIR}
doc=${2:?usage: notices.sh linux|windows DOC_DIR}
cd "$root"
mkdir -p "$doc"

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
printf 'sam3d-studio %s (commit %s, built %s)\n' "$version" "$commit" "$(date -u +%Y-%m-%d)" >"$doc/VERSION"
cp README.md "$doc/README.md"
# sam3d-studio is Apache-2.0 (Cargo.toml); the demo data's LICENSE is that licence's full text.
cp assets/demo/LICENSE "$doc/LICENSE"
sed -n '/^## Data credits/,/^## /p' README.md | sed '/^## [^D]/d' >"$doc/DATA-CREDITS.txt"

case $kind in
  linux)
    python3 packaging/notices.py --target x86_64-unknown-linux-gnu --root sam3d-studio --root sam3d-engine \
      "$doc/THIRD-PARTY-NOTICES.txt" 2>/dev/null
    : "${LIBTORCH:?notices.sh linux needs LIBTORCH (source packaging/linux/env.sh)}"
    site=$(cd "$LIBTORCH/.." && pwd)
    mkdir -p "$doc/libtorch"
    torch_info=$(ls -d "$site"/torch-*.dist-info | head -1)
    cp "$torch_info/licenses/LICENSE" "$doc/libtorch/LICENSE"
    cp -r "$torch_info/licenses/third_party" "$doc/libtorch/third_party"
    for pkg in nvidia_cuda_runtime nvidia_cuda_cupti; do
      info=$(ls -d "$site/$pkg"-*.dist-info | head -1)
      cp "$info/licenses/License.txt" "$doc/libtorch/$pkg-License.txt"
    done
    ;;
  windows)
    python3 packaging/notices.py --target x86_64-pc-windows-gnu --root sam3d-studio \
      "$doc/THIRD-PARTY-NOTICES.txt" 2>/dev/null
    ;;
  *) echo "notices.sh: linux or windows, not $kind" >&2; exit 2 ;;
esac
