#!/usr/bin/env bash
# Draws sam3d-studio's icon: a dark tile, an axial CT slice (grey body outline, spine), one organ
# picked out in orange, and the crosshair of the click. Writes, into OUT_DIR:
#   sam3d-studio.svg                 scalable (desktop entry, hicolor/scalable)
#   sam3d-studio-SIZE.png            16 … 256 px (hicolor/SIZExSIZE/apps)
#   sam3d-studio.ico                 the Windows installer and shortcut icon
# The SVG is written as text and the PNGs are drawn with ImageMagick's own primitives from the
# same numbers (this ImageMagick has no SVG reader), so both show the same picture.
set -euo pipefail
out=${1:?usage: make-icon.sh OUT_DIR}
mkdir -p "$out"

# Geometry on a 256 × 256 canvas.
tile_r=40                       # tile corner radius
body="128,136 92,70"            # centre, radii of the body ellipse
spine="128,196 16,14"
organ="102,118 34,26"           # the picked organ
cross=102,118                   # the click

cat >"$out/sam3d-studio.svg" <<SVG
<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256" viewBox="0 0 256 256">
  <rect x="8" y="8" width="240" height="240" rx="$tile_r" fill="#1e2630"/>
  <ellipse cx="128" cy="136" rx="92" ry="70" fill="#5c6670" stroke="#c9d1d9" stroke-width="6"/>
  <ellipse cx="128" cy="196" rx="16" ry="14" fill="#e8e8e8"/>
  <ellipse cx="102" cy="118" rx="34" ry="26" fill="#ff8c1a" stroke="#ffd9a8" stroke-width="4"/>
  <path d="M102 78 V100 M102 136 V158 M62 118 H84 M120 118 H142" stroke="#39d353" stroke-width="6" stroke-linecap="round"/>
  <circle cx="102" cy="118" r="5" fill="#39d353"/>
</svg>
SVG

ellipse() { # "cx,cy rx,ry" -> ImageMagick's "ellipse cx,cy rx,ry 0,360"
  echo "ellipse $1 0,360"
}
convert -size 256x256 xc:none \
  -fill '#1e2630' -draw "roundrectangle 8,8 247,247 $tile_r,$tile_r" \
  -fill '#5c6670' -stroke '#c9d1d9' -strokewidth 6 -draw "$(ellipse "$body")" \
  -stroke none -fill '#e8e8e8' -draw "$(ellipse "$spine")" \
  -fill '#ff8c1a' -stroke '#ffd9a8' -strokewidth 4 -draw "$(ellipse "$organ")" \
  -stroke '#39d353' -strokewidth 6 \
  -draw "line ${cross%,*},78 ${cross%,*},100" -draw "line ${cross%,*},136 ${cross%,*},158" \
  -draw "line 62,${cross#*,} 84,${cross#*,}" -draw "line 120,${cross#*,} 142,${cross#*,}" \
  -stroke none -fill '#39d353' -draw "circle $cross ${cross%,*},$(( ${cross#*,} + 5 ))" \
  "$out/sam3d-studio-256.png"
for s in 128 64 48 32 16; do
  convert "$out/sam3d-studio-256.png" -resize "${s}x${s}" "$out/sam3d-studio-$s.png"
done
convert "$out"/sam3d-studio-{16,32,48,64,128,256}.png "$out/sam3d-studio.ico"
echo "$out"
