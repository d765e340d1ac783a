#!/usr/bin/env bash
# Builds the Linux binaries for the installers and lays out an installed tree under a prefix,
# the same for the .deb (PREFIX=/usr) and the portable tarball (PREFIX = the archive's folder):
#
#   PREFIX/bin/sam3d-studio, sam3d-studio-engine     stripped; the engine's rpath is
#                                                    $ORIGIN/../lib/sam3d-studio
#   PREFIX/lib/sam3d-studio/                         the libtorch libraries the engine really
#                                                    loads (CPU; closure of its DT_NEEDED)
#   PREFIX/share/sam3d-studio/assets/                weights, MR adapter, demo data (+ licences)
#   PREFIX/share/applications/sam3d-studio.desktop   desktop entry (Exec=sam3d-studio %f)
#   PREFIX/share/mime/packages/sam3d-studio.xml      NIfTI (.nii, .nii.gz), NRRD, MetaImage types
#   PREFIX/share/icons/hicolor/*/apps/               the icon (packaging/icon/make-icon.sh)
#   PREFIX/share/doc/sam3d-studio/                   README, LICENSE, VERSION, notices
#
# usage: stage.sh STAGE_DIR        (STAGE_DIR is PREFIX; made afresh)
# The viewer and the command line find the engine beside them and the assets through
# PREFIX/bin/../share/sam3d-studio/assets (sam3d-core's assets.rs), so the tree works wherever
# it is unpacked, and through the /usr/bin symbolic links too.
#
# Environment: CARGO_TARGET_DIR (default: the checkout's target/), SAM3D_SKIP_BUILD=1 to reuse
# binaries already built with the settings below, SAM3D_PACKAGE_CUDA=1 for the CUDA variant
# (README "Install": the engine linked with libtorch_cuda, whose closure brings cuBLAS, cuDNN…
# from the wheel's nvidia/ folders, plus the libraries libtorch and cuDNN open at run time;
# about 3 GB more; written, not built or run on this project's CPU machines).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
stage=${1:?usage: stage.sh STAGE_DIR}
log() { echo "[stage] $*" >&2; }

cd "$root"
source packaging/linux/env.sh >/dev/null
target_dir=${CARGO_TARGET_DIR:-$root/target}
# The CPU engine (no libtorch_cuda) with an rpath relative to itself (crates/sam3d-engine/build.rs).
cuda=${SAM3D_PACKAGE_CUDA:-0}
export SAM3D_ENGINE_CUDA=$cuda
export SAM3D_ENGINE_RPATH='$ORIGIN/../lib/sam3d-studio'
if [ "${SAM3D_SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --profile dist (CPU engine, rpath $SAM3D_ENGINE_RPATH) into $target_dir"
  cargo build --profile dist --locked --quiet --workspace --bins
fi
bin_dir=$target_dir/dist
readelf -d "$bin_dir/sam3d-studio-engine" | grep -q 'R.*PATH.*\$ORIGIN/../lib/sam3d-studio' \
  || { log "$bin_dir/sam3d-studio-engine lacks the installed rpath (rebuild without SAM3D_SKIP_BUILD)"; exit 1; }
if [ "$cuda" = 0 ] && readelf -d "$bin_dir/sam3d-studio-engine" | grep -q 'NEEDED.*torch_cuda'; then
  log "$bin_dir/sam3d-studio-engine links libtorch_cuda; the CPU package must not"; exit 1
fi
if [ "$cuda" = 1 ] && ! readelf -d "$bin_dir/sam3d-studio-engine" | grep -q 'NEEDED.*torch_cuda'; then
  log "$bin_dir/sam3d-studio-engine does not link libtorch_cuda; the CUDA package must"; exit 1
fi

rm -rf "$stage"
mkdir -p "$stage"/{bin,lib/sam3d-studio,share/sam3d-studio,share/applications,share/mime/packages,share/doc/sam3d-studio}
for b in sam3d-studio sam3d-studio-engine; do
  install -m 755 "$bin_dir/$b" "$stage/bin/$b"
  strip "$stage/bin/$b"
done

# The libraries the engine loads: follow DT_NEEDED from the engine through the wheel's lib
# folders (torch/lib, then nvidia/*/lib); anything not there is the system's (libc, libstdc++…).
wheel_libs=("$LIBTORCH/lib" "$LIBTORCH"/../nvidia/*/lib)
find_wheel_lib() {
  local d
  for d in "${wheel_libs[@]}"; do [ -f "$d/$1" ] && { echo "$d/$1"; return; }; done
  return 0
}
todo=("$stage/bin/sam3d-studio-engine")
if [ "$cuda" = 1 ]; then
  # Opened with dlopen, so in no DT_NEEDED: cuDNN 9's sub-libraries, NVRTC and libtorch's shim.
  for f in "$LIBTORCH"/../nvidia/cudnn/lib/libcudnn*.so* "$LIBTORCH"/../nvidia/*/lib/libnvrtc*.so* \
           "$LIBTORCH/lib/libcaffe2_nvrtc.so"; do
    [ -f "$f" ] || continue
    install -m 644 "$f" "$stage/lib/sam3d-studio/"
    todo+=("$stage/lib/sam3d-studio/$(basename "$f")")
  done
fi
while [ ${#todo[@]} -gt 0 ]; do
  elf=${todo[0]}; todo=("${todo[@]:1}")
  for need in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$stage/lib/sam3d-studio/$need" ] && continue
    src=$(find_wheel_lib "$need")
    [ -n "$src" ] || continue
    install -m 644 "$src" "$stage/lib/sam3d-studio/$need"
    strip --strip-unneeded "$stage/lib/sam3d-studio/$need"
    todo+=("$stage/lib/sam3d-studio/$need")
  done
done
log "libraries: $(cd "$stage/lib/sam3d-studio" && ls | tr '\n' ' ')"

cp -r assets "$stage/share/sam3d-studio/assets"
install -m 644 packaging/linux/sam3d-studio.desktop "$stage/share/applications/"
install -m 644 packaging/linux/sam3d-studio-mime.xml "$stage/share/mime/packages/sam3d-studio.xml"
icons=${INSTALLERS_DIR:-$target_dir/installers}/icon
bash packaging/icon/make-icon.sh "$icons" >/dev/null
for s in 16 32 48 64 128 256; do
  install -D -m 644 "$icons/sam3d-studio-$s.png" "$stage/share/icons/hicolor/${s}x${s}/apps/sam3d-studio.png"
done
install -D -m 644 "$icons/sam3d-studio.svg" "$stage/share/icons/hicolor/scalable/apps/sam3d-studio.svg"

bash packaging/notices.sh linux "$stage/share/doc/sam3d-studio"
