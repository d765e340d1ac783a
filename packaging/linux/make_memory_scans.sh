#!/usr/bin/env bash
# make_memory_scans.sh SRC_DIR OUT_DIR [BIN] — the two scans of the viewer's memory measurement
# (measure_viewer_memory.sh), made from an abdominal CT with organ labels (SRC_DIR/ct.nii.gz,
# SRC_DIR/labels.nii.gz, e.g. the shared 122×101×112 CT at 3 mm with its labels):
#   OUT_DIR/ct224.nii.gz, labels224.nii.gz     512×512×224, 0.715×0.592×1.5 mm, CT int16, labels
#                                              uint8 (61 labels from the source's organs)
#   OUT_DIR/ct1000.nii.gz, labels1000.nii.gz   512×512×1000, the same anatomy on 0.336 mm slices
# Resampled by the project's own `resample` (linear for the CT, nearest for the labels), then
# stored as int16 by numpy (python3 with numpy; no nibabel needed).
set -euo pipefail
src=$1; out=$2
bin=${3:-$(dirname "$0")/../../target/release/sam3d-studio}
mkdir -p "$out"
for n in 224 1000; do
    case $n in 224) dz=1.5 ;; 1000) dz=0.336 ;; esac
    [ -f "$out/ct$n.nii.gz" ] && [ -f "$out/labels$n.nii.gz" ] && continue
    "$bin" resample "$src/ct.nii.gz" "$out/ct$n.i32.nii" --spacing 0.715,0.592,$dz
    "$bin" resample "$src/labels.nii.gz" "$out/labels$n.nii" --spacing 0.715,0.592,$dz --interp nearest
    python3 - "$out/ct$n.i32.nii" "$out/ct$n.nii" <<'PY'
import sys, struct, numpy as np
src, dst = sys.argv[1], sys.argv[2]
raw = open(src, 'rb').read()
hdr = bytearray(raw[:348])
assert struct.unpack('<i', hdr[0:4])[0] == 348, 'NIfTI-1 little-endian expected'
off = int(struct.unpack('<f', hdr[108:112])[0])
code, bitpix = struct.unpack('<hh', hdr[70:74])
dt = {8: np.int32, 4: np.int16, 16: np.float32}[code]
data = np.frombuffer(raw, dtype=dt, offset=off)
hdr[70:74] = struct.pack('<hh', 4, 16)  # int16
with open(dst, 'wb') as f:
    f.write(bytes(hdr)); f.write(raw[348:off])
    f.write(np.clip(np.round(data), -1024, 3071).astype('<i2').tobytes())
PY
    rm "$out/ct$n.i32.nii"
    gzip -1 -f "$out/ct$n.nii" "$out/labels$n.nii"
done
"$bin" info "$out/ct224.nii.gz" | head -3
