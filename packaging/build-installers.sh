#!/usr/bin/env bash
# Builds every installer into ${CARGO_TARGET_DIR:-target}/installers/ (INSTALLERS_DIR overrides):
#   sam3d-studio_VERSION_amd64.deb                      packaging/linux/build-deb.sh
#   sam3d-studio-VERSION-linux-x86_64.tar.xz             packaging/linux/build-tarball.sh
#   sam3d-studio-VERSION-windows-x86_64-setup.exe       packaging/windows/build-nsis.sh
# and prints their sizes. The Windows build may use a target folder of its own
# (WIN_CARGO_TARGET_DIR; default: the same). Tests: packaging/linux/test-installers.sh and
# packaging/windows/test-wine.sh (they install what this built). The Windows installer with the
# model engine is built by .github/workflows/windows-installer.yml on a Windows runner.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export INSTALLERS_DIR=${INSTALLERS_DIR:-${CARGO_TARGET_DIR:-$root/target}/installers}
mkdir -p "$INSTALLERS_DIR"
time_it() { local t0=$SECONDS; "$@"; echo "[build-installers] $(basename "${@: -1}" .sh) took $((SECONDS - t0)) s" >&2; }
time_it bash "$root/packaging/linux/build-deb.sh"
SAM3D_SKIP_BUILD=1 time_it bash "$root/packaging/linux/build-tarball.sh"
CARGO_TARGET_DIR=${WIN_CARGO_TARGET_DIR:-${CARGO_TARGET_DIR:-$root/target}} time_it bash "$root/packaging/windows/build-nsis.sh"
echo "installers in $INSTALLERS_DIR:"
(cd "$INSTALLERS_DIR" && ls -l --block-size=M ./*.deb ./*.tar.xz ./*-setup.exe | awk '{print "  " $5 "  " $NF}')
