#!/usr/bin/env bash
# Builds the Windows installer on Linux: sam3d-studio.exe cross-built for x86_64-pc-windows-gnu
# (MinGW-w64), the assets, the icon, the licence and notices, packed by NSIS:
#   ${CARGO_TARGET_DIR:-target}/installers/sam3d-studio-VERSION-windows-x86_64-setup.exe
# What the `sam3d-studio` package builds at the time is what ships: the viewer (region growing
# locally; the model through an engine process when there is one) and the command line. The
# model engine (libtorch, built with MSVC) cannot be linked from MinGW; with ENGINE_DIR set to a
# folder holding sam3d-studio-engine.exe and the DLLs it needs (what
# .github/workflows/windows-installer.yml builds on a Windows runner), they are packed too.
#
# Environment: CARGO_TARGET_DIR, WIN_PROFILE (cargo profile; default release), ENGINE_DIR,
# SAM3D_SKIP_BUILD=1 (pack the exe already built). Needs: rustup target x86_64-pc-windows-gnu,
# gcc-mingw-w64-x86-64, nsis, ImageMagick (the icon), python3 (the notices).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=${INSTALLERS_DIR:-$target_dir/installers}
profile=${WIN_PROFILE:-release}
triple=x86_64-pc-windows-gnu
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
stage=$out/windows-root
log() { echo "[build-nsis] $*" >&2; }
mkdir -p "$out"
cd "$root"

if [ "${SAM3D_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --profile $profile -p sam3d-studio --target $triple"
  cargo build --profile "$profile" --locked --quiet -p sam3d-studio --target "$triple"
fi
exe=$target_dir/$triple/$profile/sam3d-studio.exe

rm -rf "$stage"; mkdir -p "$stage/doc"
install -m 755 "$exe" "$stage/sam3d-studio.exe"
x86_64-w64-mingw32-strip "$stage/sam3d-studio.exe"
cp -r assets "$stage/assets"
bash packaging/icon/make-icon.sh "$out/icon" >/dev/null
cp "$out/icon/sam3d-studio.ico" "$stage/"
bash packaging/notices.sh windows "$stage/doc"
if [ -n "${ENGINE_DIR:-}" ]; then
  log "packing the engine from $ENGINE_DIR"
  cp "$ENGINE_DIR"/*.exe "$ENGINE_DIR"/*.dll "$stage/"
  [ -d "$ENGINE_DIR/doc" ] && cp -r "$ENGINE_DIR/doc/." "$stage/doc/"
fi
# Windows names: .txt so Notepad opens them.
for f in LICENSE VERSION; do mv "$stage/doc/$f" "$stage/doc/$f.txt"; done

# The uninstaller's list: every staged file, then every folder deepest first.
{
  (cd "$stage" && find . -type f | sed 's|^\./||' | sort) | while read -r f; do
    printf 'Delete "$INSTDIR\\%s"\n' "${f//\//\\}"
  done
  (cd "$stage" && find . -mindepth 1 -type d | sed 's|^\./||' | sort -r) | while read -r d; do
    printf 'RMDir "$INSTDIR\\%s"\n' "${d//\//\\}"
  done
} >"$stage.uninstall.nsh"

setup=$out/sam3d-studio-$version-windows-x86_64-setup.exe
size_kb=$(du -sk "$stage" | cut -f1)
makensis -V2 -DVERSION="$version" -DSRC_DIR="$stage" -DOUT_FILE="$setup" -DICON="$stage/sam3d-studio.ico" \
  -DSIZE_KB="$size_kb" "$here/sam3d-studio.nsi"
rm -rf "$stage" "$stage.uninstall.nsh"
echo "$setup: $(du -h "$setup" | cut -f1)"
