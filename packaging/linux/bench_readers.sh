#!/usr/bin/env bash
# Reader speed against the Python stack (issue 20), each comparison one alternating hyperfine run
# (warm-up, several runs) so that the load of a shared machine falls on both sides alike:
#   load      `sam3d-studio info --json` of a 512×512×224 int16 CT (.nii.gz) vs nibabel
#   resample  `sam3d-studio resample --spacing 1` of it vs SimpleITK (linear)
#             (both through the shared peers bench, ../shared/tools/peers/bench.sh)
#   dicom     `sam3d-studio info --json` of a 512×512×300 JPEG 2000 lossless CT series vs
#             SimpleITK's ImageSeriesReader (GDCM), file names from GetGDCMSeriesFileNames
# Speed-ups are peer time / our time (medians). Targets: load ≥ 3×, resample ≥ 2×, dicom ≥ 1×.
#
# usage: packaging/linux/bench_readers.sh [BIN] [load] [resample] [dicom]   (default: all three)
#   BIN          default ${CARGO_TARGET_DIR:-target}/dist/sam3d-studio, built with
#                `cargo build --profile dist --locked -p sam3d-studio` (what installers ship)
#   PEERS_DIR    the shared peers (default ../shared/tools/peers beside the checkout); load and resample are
#                skipped when it is missing. Its setup.sh makes the venv and the CT once.
#   PEERS_VENV   Python with SimpleITK (default /tmp/peers); dicom also needs pydicom and
#                python-gdcm there to write the series once (pip install pydicom python-gdcm)
#   DICOM_BENCH  the series folder (default /tmp/sam3d-dicom-bench), written once by
#                tests/oracle/dicom_fixtures.py --bench (about 300 MB, never in the repository)
#   RUNS         hyperfine runs per command for load and resample (default 5); DICOM_RUNS for
#                dicom (default 3, no warm-up: SimpleITK takes tens of seconds per read)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/dist/sam3d-studio
if [ $# -gt 0 ] && [ -x "$1" ] && [ -f "$1" ]; then bin=$(realpath "$1"); shift; fi
ops=("$@"); [ ${#ops[@]} -gt 0 ] || ops=(load resample dicom)
[ -x "$bin" ] || { echo "error: $bin is not built (cargo build --profile dist --locked -p sam3d-studio)" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "error: hyperfine is missing (apt-get install hyperfine)" >&2; exit 1; }
peers=${PEERS_DIR:-$root/../shared/tools/peers}
venv=${PEERS_VENV:-/tmp/peers}; py=$venv/bin/python
export RUNS=${RUNS:-5}
echo "binary: $bin"
for op in "${ops[@]}"; do
  case $op in
    load|resample)
      if [ -x "$peers/bench.sh" ]; then
        [ -x "$py" ] && [ -f "${PEERS_DATA:-/tmp/peerdata}/big_ct.nii.gz" ] || bash "$peers/setup.sh"
        echo "== $op (vs $( [ "$op" = load ] && echo nibabel || echo SimpleITK ))"
        bash "$peers/bench.sh" "$op" "$bin"
      else
        echo "== $op: skipped ($peers/bench.sh not found; set PEERS_DIR)"
      fi;;
    dicom)
      dir=${DICOM_BENCH:-/tmp/sam3d-dicom-bench}
      if [ "$(find "$dir" -name '*.dcm' 2>/dev/null | wc -l)" -lt 300 ]; then
        echo "writing the JPEG 2000 series to $dir (once)"
        (cd "$root" && "$py" tests/oracle/dicom_fixtures.py --bench "$dir" >/dev/null)
      fi
      t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
      cat > "$t/sitk_series.py" <<'PY'
import sys, json
import SimpleITK as sitk
r = sitk.ImageSeriesReader()
r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))
im = r.Execute()
a = sitk.GetArrayViewFromImage(im)
print(json.dumps(dict(shape=a.shape, min=float(a.min()), max=float(a.max()), mean=float(a.mean()))))
PY
      echo "== dicom (vs SimpleITK ImageSeriesReader)"
      hyperfine -N --warmup 0 --runs "${DICOM_RUNS:-3}" --export-json "$t/h.json" \
        -n project "$bin info --json $dir" -n peer "$py $t/sitk_series.py $dir" >&2
      python3 - "$t/h.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
p, q = r["project"]["median"], r["peer"]["median"]
print(f"median wall: project {p:.3f} s, peer {q:.3f} s, speed-up {q/p:.2f}x")
PY
      ;;
    *) echo "unknown benchmark $op (load, resample or dicom)" >&2; exit 2;;
  esac
done
