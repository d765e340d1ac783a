#!/usr/bin/env bash
# Load test of `sam3d-studio-engine serve-http` (issue 24), on this machine's loopback only:
# N clients (N = --max-sessions), then 2N, each uploading a 512×512×200 CT (the demo CT
# resampled by `sam3d-studio resample`) and making CLICKS one-point objects with the real
# nnInteractive client. Prints p50/p95 click latency, errors, the server's memory, and whether
# every client saw only its own image. Usage: bash packaging/linux/load_test_http.sh [N] [CLICKS]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
source packaging/linux/env.sh
n=${1:-2}
clicks=${2:-20}
cargo build --release --locked --quiet --workspace --bins
bin=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin/sam3d-studio" resample assets/demo/ct.nii.gz "$work/ct.nii" --spacing 0.715,0.592,1.68 >/dev/null
"$bin/sam3d-studio" resample assets/demo/labels.nii.gz "$work/labels.nii" --spacing 0.715,0.592,1.68 --interp nearest >/dev/null
for clients in "$n" $((2 * n)); do
  "$bin/sam3d-studio-engine" serve-http --bind 127.0.0.1:0 --max-sessions "$n" --device cpu > "$work/serve.out" 2> "$work/serve.err" &
  server=$!
  for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
  url=$(sed -n 's/^listening on //p' "$work/serve.out")
  echo "== $clients clients, max-sessions $n, $clicks clicks each, $url" >&2
  PYTHONPATH=$SAM3D_NNI_CLIENT python3 tests/oracle/nninteractive_load.py "$url" "$clients" "$clicks" "$work/ct.nii" "$work/labels.nii" "$server"
  kill "$server"; wait "$server" 2>/dev/null || true
done
