#!/usr/bin/env bash
# Shipped in the portable archive as bin/install-desktop-entry: registers this unpacked copy's
# menu entry, icon and file types (NIfTI, NRRD, MetaImage; DICOM folders) for the current user,
# under ${XDG_DATA_HOME:-~/.local/share}. --remove takes them away again.
set -euo pipefail
prefix=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
data=${XDG_DATA_HOME:-$HOME/.local/share}
files=(applications/sam3d-studio.desktop mime/packages/sam3d-studio.xml icons/hicolor/scalable/apps/sam3d-studio.svg)
for s in 16 32 48 64 128 256; do files+=("icons/hicolor/${s}x${s}/apps/sam3d-studio.png"); done
if [ "${1:-}" = --remove ]; then
  for f in "${files[@]}"; do rm -f "$data/$f"; done
else
  for f in "${files[@]}"; do install -D -m 644 "$prefix/share/$f" "$data/$f"; done
  # The menu entry runs this copy by its full path.
  sed -i "s|^Exec=sam3d-studio|Exec=\"$prefix/bin/sam3d-studio\"|" "$data/applications/sam3d-studio.desktop"
fi
command -v update-mime-database >/dev/null && update-mime-database "$data/mime" || true
command -v update-desktop-database >/dev/null && update-desktop-database "$data/applications" || true
if [ "${1:-}" = --remove ]; then done_what="removed from"; else done_what="installed in"; fi
echo "sam3d-studio's menu entry and file types $done_what $data"
