#!/usr/bin/env bash
# Builds the portable Linux archive (x86_64, CPU libtorch):
#   ${CARGO_TARGET_DIR:-target}/installers/sam3d-studio-VERSION-linux-x86_64.tar.xz
# It unpacks to one folder, sam3d-studio-VERSION-linux-x86_64/, holding the tree of
# packaging/linux/stage.sh (bin/, lib/sam3d-studio/, share/) and INSTALL.txt; it runs from
# wherever it is unpacked (bin/sam3d-studio), as any user, with no root and no network. The
# system libraries it needs are the .deb's Depends (INSTALL.txt lists them);
# bin/install-desktop-entry registers the menu entry, icon and file types for the current user.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${INSTALLERS_DIR:-${CARGO_TARGET_DIR:-$root/target}/installers}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$root/Cargo.toml")
name=sam3d-studio-$version-linux-x86_64
work=$out/tarball-root
mkdir -p "$out"

bash "$here/stage.sh" "$work/$name"
install -m 755 "$here/install-desktop-entry.sh" "$work/$name/bin/install-desktop-entry"
cat >"$work/$name/INSTALL.txt" <<EOF
sam3d-studio $version for Linux x86_64 (CPU), portable archive

Run it from this folder, wherever it is unpacked:
  bin/sam3d-studio                       the viewer (the demo CT when given no file)
  bin/sam3d-studio info FILE             and every other command (README.md in share/doc/)
Menu entry, icon and file types (NIfTI, NRRD, MetaImage, DICOM folders) for this user:
  bin/install-desktop-entry              (bin/install-desktop-entry --remove undoes it)
A link on the PATH works too: ln -s "\$PWD/bin/sam3d-studio" ~/.local/bin/

It needs no Rust, Python or network. The model's libtorch (CPU) is in lib/sam3d-studio/.
The system libraries the viewer loads, on Debian/Ubuntu:
  sudo apt install libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon-x11-0 \\
                   libvulkan1 mesa-vulkan-drivers libegl1 libgl1
(the command line alone needs only libc6, libgcc-s1 and libstdc++6, present on every system).
EOF
rm -f "$out/$name.tar.xz"
tar -C "$work" --owner=0 --group=0 -cf - "$name" | xz -T0 -6 >"$out/$name.tar.xz"
rm -rf "$work"
echo "$out/$name.tar.xz: $(du -h "$out/$name.tar.xz" | cut -f1)"
