#!/usr/bin/env bash
# Tests the Windows installer under Wine (64-bit), in a fresh Wine prefix of its own:
#   0. (Wine 8 only) a stand-in for bcryptprimitives.dll in the prefix: wine-shim/;
#   1. silent install (setup.exe /S), timed; the Start-menu shortcuts, the file types and the
#      uninstall entry in the registry;
#   2. the installed `sam3d-studio.exe info` on the demo CT it installed;
#   3. the viewer under Xvfb (WGPU_BACKEND from the environment, else wgpu's own choice),
#      screenshot after SAM3D_TEST_VIEWER_WAIT seconds (default 60);
#   4. silent uninstall, then the prefix's files and registry (HKLM, HKCU) compared with a
#      snapshot taken before the install: what is left behind is printed.
# usage: test-wine.sh [SETUP.exe]   (default: the one build-nsis.sh made)
# Writes ${CARGO_TARGET_DIR:-target}/installers/test/{wine.log,wine-viewer.png,wine-left-behind.txt}.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${INSTALLERS_DIR:-${CARGO_TARGET_DIR:-$root/target}/installers}
setup=${1:-$(ls "$out"/sam3d-studio-*-windows-x86_64-setup.exe)}
test_dir=$out/test
mkdir -p "$test_dir"
exec > >(tee "$test_dir/wine.log") 2>&1
log() { echo "[test-wine] $*"; }

export WINEPREFIX=$test_dir/wineprefix WINEDEBUG=${WINEDEBUG:--all} WINEDLLOVERRIDES="mscoree,mshtml="
export DISPLAY=:${SAM3D_TEST_DISPLAY:-94}
xvfb_pid=
cleanup() {
  wineserver -k 2>/dev/null || true   # this prefix's processes only
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
}
trap cleanup EXIT
rm -f "/tmp/.X11-unix/X${DISPLAY#:}"
Xvfb "$DISPLAY" -screen 0 1600x1000x24 -nolisten tcp >"$test_dir/xvfb-wine.log" 2>&1 &
xvfb_pid=$!
sleep 2

log "fresh Wine prefix $WINEPREFIX"
rm -rf "$WINEPREFIX"
wineboot -i >/dev/null 2>&1
wineserver -w
drive_c=$WINEPREFIX/drive_c
# Wine 8 (Debian bookworm) lacks bcryptprimitives.dll, which Rust's std imports (ProcessPrng);
# a test-only stand-in goes into the prefix's system32 (wine-shim/; never into the installer).
if [ ! -f "$drive_c/windows/system32/bcryptprimitives.dll" ]; then
  log "adding the test-only bcryptprimitives.dll stand-in to the prefix (Wine $(wine --version))"
  x86_64-w64-mingw32-gcc -O2 -shared -Wl,--kill-at -o "$drive_c/windows/system32/bcryptprimitives.dll" \
    "$here/wine-shim/bcryptprimitives.c" -ladvapi32
fi
snapshot() { # NAME: the prefix's file list and registry
  (cd "$drive_c" && find . -path ./windows -prune -o -print | sort) >"$test_dir/wine-$1-files.txt"
  wine reg export 'HKLM\Software' "$test_dir/wine-$1-hklm.reg" /y >/dev/null 2>&1
  wine reg export 'HKCU\Software' "$test_dir/wine-$1-hkcu.reg" /y >/dev/null 2>&1
  wineserver -w
}
snapshot before

log "install: $(basename "$setup") /S"
t0=$(date +%s.%N)
wine "$setup" /S
wineserver -w
log "installed in $(echo "$(date +%s.%N) - $t0" | bc) s"
inst='C:\Program Files\sam3d-studio'
unix_inst=$drive_c/Program\ Files/sam3d-studio
ls -la "$unix_inst"
du -sh "$unix_inst"
ls "$drive_c/ProgramData/Microsoft/Windows/Start Menu/Programs/sam3d-studio/"
for key in 'HKLM\Software\Classes\.nii' 'HKLM\Software\Classes\sam3d-studio.volume\shell\open\command' \
           'HKLM\Software\Classes\Directory\shell\sam3d-studio\command' \
           'HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall\sam3d-studio'; do
  wine reg query "$key" 2>/dev/null | tr -d '\r' | grep -v '^$'
done

log "the installed sam3d-studio.exe info on the demo CT"
wine "$inst\\sam3d-studio.exe" info "$inst\\assets\\demo\\ct.nii.gz" | tr -d '\r'
wine "$inst\\sam3d-studio.exe" info "$inst\\assets\\demo\\ct.nii.gz" --json | tr -d '\r' | head -c 300; echo

log "the viewer under Xvfb (WGPU_BACKEND=${WGPU_BACKEND:-unset})"
WINEDEBUG=${WINEDEBUG_VIEWER:-err+all} wine "$inst\\sam3d-studio.exe" >"$test_dir/wine-viewer.log" 2>&1 &
viewer=$!
sleep "${SAM3D_TEST_VIEWER_WAIT:-60}"
import -display "$DISPLAY" -window root "$test_dir/wine-viewer.png"
alive=yes; kill -0 "$viewer" 2>/dev/null || alive=no
log "viewer alive after the wait: $alive; screenshot $test_dir/wine-viewer.png; the end of its log:"
tail -30 "$test_dir/wine-viewer.log"
# Quit as a user would (Ctrl+Q), so the viewer removes its temporary files and saves its layout.
xdotool search --onlyvisible --name 'sam3d-studio$' windowactivate --sync key ctrl+q 2>/dev/null || true
for _ in $(seq 30); do kill -0 "$viewer" 2>/dev/null || break; sleep 1; done
if kill -0 "$viewer" 2>/dev/null; then log "the viewer did not quit on Ctrl+Q; killing it"; wineserver -k; fi
wait "$viewer" 2>/dev/null || true
wineserver -w

log "uninstall /S"
t0=$(date +%s.%N)
wine "$inst\\Uninstall sam3d-studio.exe" /S
wineserver -w   # the uninstaller runs from a copy in %TEMP%; wait for it
log "uninstalled in $(echo "$(date +%s.%N) - $t0" | bc) s"
snapshot after
{
  echo "# files under drive_c (but windows/) present after the uninstall and not before"
  comm -13 "$test_dir/wine-before-files.txt" "$test_dir/wine-after-files.txt"
  for hive in hklm hkcu; do
    echo "# registry ($hive\\Software) lines added or changed"
    diff <(iconv -f utf-16 -t utf-8 "$test_dir/wine-before-$hive.reg" | tr -d '\r') \
         <(iconv -f utf-16 -t utf-8 "$test_dir/wine-after-$hive.reg" | tr -d '\r') | grep '^>' || true
  done
} >"$test_dir/wine-left-behind.txt"
cat "$test_dir/wine-left-behind.txt"
if grep -qi 'sam3d' "$test_dir/wine-left-behind.txt"; then
  log "something of sam3d-studio is left behind (above)"
else
  log "nothing of sam3d-studio left behind"
fi
