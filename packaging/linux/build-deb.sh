#!/usr/bin/env bash
# Builds the Debian package (amd64, CPU libtorch) with dpkg-deb:
#   ${CARGO_TARGET_DIR:-target}/installers/sam3d-studio_VERSION_amd64.deb
# Installed layout: the tree of packaging/linux/stage.sh under /usr (binaries in /usr/bin, the
# engine's libtorch in /usr/lib/sam3d-studio, assets in /usr/share/sam3d-studio/assets).
# Desktop, MIME and icon caches are refreshed by dpkg's triggers (shared-mime-info,
# desktop-file-utils, hicolor-icon-theme), so the package has no maintainer scripts.
# Install: sudo apt install ./sam3d-studio_VERSION_amd64.deb   (apt resolves Depends)
# SAM3D_PACKAGE_CUDA=1: the CUDA variant, sam3d-studio-cuda (stage.sh; not built here).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${INSTALLERS_DIR:-${CARGO_TARGET_DIR:-$root/target}/installers}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
work=$out/deb-root
package=sam3d-studio
[ "${SAM3D_PACKAGE_CUDA:-0}" = 1 ] && package=sam3d-studio-cuda
mkdir -p "$out"

bash "$here/stage.sh" "$work/usr"
doc=$work/usr/share/doc/sam3d-studio
# Debian's copyright file (machine-readable format) and changelog.
{
  cat <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: sam3d-studio

Files: *
License: Apache-2.0

Files: usr/share/sam3d-studio/assets/demo/* usr/share/sam3d-studio/assets/mr/*
Comment: TotalSegmentator test data (Wasserthal et al., Radiology: AI 2023); DATA-CREDITS.txt
License: Apache-2.0

Files: usr/lib/sam3d-studio/libtorch* usr/lib/sam3d-studio/libc10* usr/lib/sam3d-studio/libgomp*
Comment: from the PyTorch wheel; libtorch/LICENSE and libtorch/third_party/ in this folder
License: BSD-3-Clause

Files: usr/lib/sam3d-studio/libcudart* usr/lib/sam3d-studio/libcupti*
Comment: NVIDIA CUDA runtime, redistributed as in the PyTorch wheel's dependencies
License: NVIDIA-proprietary (libtorch/nvidia_cuda_*-License.txt in this folder)

Files: usr/bin/*
Comment: The Rust crates compiled in: THIRD-PARTY-NOTICES.txt in this folder
License: Apache-2.0

License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0;
 it is also in LICENSE in this folder.
EOF
} >"$doc/copyright"
printf 'sam3d-studio (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- sam3d-studio <sam3d-studio@localhost>  %s\n' \
  "$version" "$version" "$(date -R)" | gzip -9n >"$doc/changelog.gz"

# Depends: what the binaries link (libc6, libgcc-s1, libstdc++6) and what the viewer loads at
# run time with dlopen (X11/Wayland, xkbcommon, Vulkan or OpenGL through Mesa's software
# renderers where there is no GPU driver).
mkdir -p "$work/DEBIAN"
variant_fields=
[ "$package" = sam3d-studio ] || variant_fields=$'\nProvides: sam3d-studio\nConflicts: sam3d-studio\nReplaces: sam3d-studio'
cat >"$work/DEBIAN/control" <<EOF
Package: $package
Version: $version
Architecture: amd64
Maintainer: sam3d-studio <sam3d-studio@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$work" | cut -f1)
Depends: libc6 (>= 2.34), libgcc-s1, libstdc++6 (>= 9), libx11-6, libx11-xcb1, libxcursor1, libxrandr2, libxi6, libxkbcommon-x11-0, libvulkan1, mesa-vulkan-drivers | vulkan-icd, libegl1, libgl1
Recommends: libwayland-client0, libwayland-cursor0, libwayland-egl1, xdg-desktop-portal
Section: science
Priority: optional${variant_fields}
Description: one click on a CT or MR slice -> the organ's 3D shape
 A viewer and command line for medical volumes (NIfTI, NRRD, MetaImage, DICOM): three linked
 slice views and a 3D view, label editing, and a SAM3D-family model (libtorch, CPU) that turns
 one click into an organ's 3D label and mesh. Ships its weights and a demo CT.
EOF
find "$work" -type d -exec chmod 755 {} +
rm -f "$out/${package}"_*_amd64.deb
deb=$out/${package}_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz -z6 --threads-max="$(nproc)" --build "$work" "$deb" >/dev/null
rm -rf "$work"
echo "$deb: $(du -h "$deb" | cut -f1)"
