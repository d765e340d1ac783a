#!/usr/bin/env bash
# measure_viewer_memory.sh CT LABELS [BIN] — the viewer's peak memory on one scan, stage by stage.
# Opens CT with LABELS in the release viewer (BIN, default target/release/sam3d-studio) in a
# fresh virtual display (Xvfb, Mesa's lavapipe: WGPU_BACKEND=vulkan) with fresh settings, and
# prints VmHWM (peak RSS) and VmRSS from /proc after each stage, a stage being over once the
# viewer has used no CPU for 4 s:
#   load    the scan and its labels open, every label's surface shown in the 3D view
#   hide    Hide all (every surface dropped)
#   show    Show all (every surface built again)
# (An edit and its undo are not driven: xdotool's presses in the slice views did not reach the
# brush here; the undo history's memory is `History::bytes`, capped at HISTORY_CAP_BYTES.)
# Make the scans with make_memory_scans.sh. Needs xvfb, xdotool, imagemagick (SHOTS=DIR: a
# screenshot after each stage).
# Under lavapipe the GPU's buffers and the software rasteriser's work live in the process too
# (LP_NUM_THREADS=0 keeps the rasteriser on one thread and its memory out of the figure).
set -euo pipefail
ct=$1; labels=$2
bin=${3:-$(cd "$(dirname "$0")/../.." && pwd)/target/release/sam3d-studio}
disp=:$((100 + RANDOM % 100))
work=$(mktemp -d)
Xvfb "$disp" -screen 0 1600x1000x24 >/dev/null 2>&1 & xp=$!
stop() {
    set +e
    kill "$ap" 2>/dev/null; sleep 1; kill -9 "$ap" 2>/dev/null
    kill "$xp" 2>/dev/null; rm -rf "$work"
}
ap=
trap stop EXIT
sleep 1
export DISPLAY=$disp WGPU_BACKEND=${WGPU_BACKEND:-vulkan}
HOME=$work XDG_DATA_HOME=$work/data XDG_CONFIG_HOME=$work/config SAM3D_AUTOSAVE_DIR=$work/autosave \
    "$bin" "$ct" --labels "$labels" >"$work/log" 2>&1 & ap=$!
t0=$(date +%s)

ticks() { awk '{print $14 + $15}' "/proc/$ap/stat"; }
mem() { awk '/VmHWM|VmRSS/ {printf "%s %.0f MB  ", $1, $2 / 1024}' "/proc/$ap/status"; }
# Waits until the viewer has been idle (no CPU) for 4 s in a row (at most $1 s).
settle() {
    local last now idle=0 waited=0
    last=$(ticks)
    while (( idle < 4 && waited < $1 )); do
        sleep 1; waited=$((waited + 1))
        kill -0 "$ap" 2>/dev/null || { echo "the viewer stopped:"; tail -5 "$work/log"; exit 1; }
        now=$(ticks)
        if (( now - last <= 3 )); then idle=$((idle + 1)); else idle=0; fi
        last=$now
    done
}
report() { printf '%-5s %4ss  %s\n' "$1" $(( $(date +%s) - t0 )) "$(mem)"; }

sleep 3; settle 600; report load
win=$(xdotool search --sync --name "sam3d-studio" | head -1)
xdotool windowactivate --sync "$win" 2>/dev/null || xdotool windowfocus --sync "$win" 2>/dev/null || true
# Where the buttons are: the layout of a fresh window of the screen's size.
shot() { if [ -n "${SHOTS:-}" ]; then mkdir -p "$SHOTS"; import -window root "$SHOTS/$1.png"; fi; }
shot load
xdotool mousemove 240 524 click 1; settle 120; report hide; shot hide
xdotool mousemove 175 524 click 1; settle 600; report show; shot show
grep -E "ERROR|panicked" "$work/log" | head -5 || true
