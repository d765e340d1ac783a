#!/usr/bin/env bash
# Installs the Linux artefacts into fresh Debian bookworm roots (debootstrap: no Rust, no Python,
# no libtorch cache, no source tree) and runs them there:
#   deb      apt-get install ./sam3d-studio_*.deb (apt fetches its Depends from Debian's mirror)
#   tarball  the viewer's system libraries (INSTALL.txt's list) from apt, then the archive
#            unpacked into an empty folder
# In each root, with the network cut off (unshare -n): `ldd` of the binaries and libraries
# (every library inside the package or the system's own), `sam3d-studio info` and
# `sam3d-studio infer` on the demo CT, and the viewer under Xvfb with a "3D from click" on the
# liver, screenshot taken after it settles.
#
# usage: test-installers.sh [deb|tarball]...   (default: both; run as root, after
#        build-installers.sh; needs debootstrap, Xvfb and ImageMagick on this machine)
# Writes ${CARGO_TARGET_DIR:-target}/installers/test/{KIND.log,KIND-viewer.png}; the roots are
# deleted at the end (the debootstrap base is kept as base.tar for the next run; KEEP_ROOTS=1
# keeps the roots).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${INSTALLERS_DIR:-${CARGO_TARGET_DIR:-$root/target}/installers}
test_dir=$out/test
kinds=("$@"); [ ${#kinds[@]} -gt 0 ] || kinds=(deb tarball)
mkdir -p "$test_dir"
log() { echo "[test-installers] $*" >&2; }
[ "$(id -u)" -eq 0 ] || { log "run as root (debootstrap, chroot)"; exit 1; }

# The liver of the demo CT (label 5's centroid), in RAS mm.
liver=68,185.3,391.3
display=:${SAM3D_TEST_DISPLAY:-93}

base=$test_dir/base.tar
if [ ! -f "$base" ]; then
  log "debootstrap bookworm (minbase) -> $base"
  tmp=$test_dir/base-root
  rm -rf "$tmp"
  debootstrap --variant=minbase bookworm "$tmp" http://deb.debian.org/debian >"$test_dir/debootstrap.log" 2>&1
  tar -C "$tmp" -cf "$base" .
  rm -rf "$tmp"
fi

mounted=()
cleanup() {
  local m
  for ((i=${#mounted[@]}-1; i>=0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  mounted=()
  [ -n "${xvfb_pid:-}" ] && kill "$xvfb_pid" 2>/dev/null || true
  xvfb_pid=
}
trap cleanup EXIT

fresh_root() { # DIR: a fresh copy of the base root, with /proc, /sys, /dev and the X socket
  local r=$1
  rm -rf "$r"; mkdir -p "$r"; tar -C "$r" -xf "$base"
  cp /etc/resolv.conf "$r/etc/resolv.conf"
  for m in proc sys dev tmp/.X11-unix; do
    mkdir -p "$r/$m"
    case $m in
      proc) mount -t proc proc "$r/proc" ;;
      *) mount --bind "/$m" "$r/$m" ;;
    esac
    mounted+=("$r/$m")
  done
}

in_root() { chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${@:2}"; }
# With the network cut off: what the package runs needs none.
offline() { unshare -n chroot "$1" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${@:2}"; }

check() { # ROOT BIN ASSETS LIBDIR KIND: the run-time checks, inside ROOT
  local r=$1 bin=$2 assets=$3 libdir=$4 kind=$5
  log "$kind: nothing of a build machine in the root"
  for tool in rustc cargo pip pip3; do
    if in_root "$r" sh -c "command -v $tool" >/dev/null; then log "$kind: $tool is in the test root"; return 1; fi
  done
  # python3 itself comes with mesa-vulkan-drivers (a Depends: its overlay script); no PyTorch.
  if in_root "$r" sh -c 'command -v python3 && python3 -c "import torch"' >/dev/null 2>&1; then
    log "$kind: PyTorch is importable in the test root"; return 1
  fi
  [ ! -e "$r/root/.cache/sam3d-studio" ] || { log "$kind: a libtorch cache is in the test root"; return 1; }

  log "$kind: ldd"
  local elf bad=0
  local allowed="=> ($libdir/|$bin/\.\./lib/sam3d-studio/|/lib/x86_64-linux-gnu/|/usr/lib/x86_64-linux-gnu/)|linux-vdso|^\s*/lib64/ld-linux"
  local libs  # the package's libraries, as paths inside the root
  libs=$(cd "$r$libdir" && printf "$libdir/%s\n" *.so*)
  for elf in "$bin/sam3d-studio" "$bin/sam3d-studio-engine" $libs; do
    echo "--- ldd $elf"
    in_root "$r" ldd "$elf" | tee "$test_dir/ldd.tmp"
    # Every library inside the package (through the rpath: BIN/../lib/sam3d-studio), or the
    # system's own folders.
    if grep -v -E "$allowed" "$test_dir/ldd.tmp" | grep -q .; then
      log "$kind: $elf resolves something outside the package and the system:"
      grep -v -E "$allowed" "$test_dir/ldd.tmp" >&2
      bad=1
    fi
  done
  rm -f "$test_dir/ldd.tmp"
  [ $bad -eq 0 ] || return 1
  log "$kind: the system libraries the engine's closure uses:"
  in_root "$r" ldd "$bin/sam3d-studio-engine" $libs | grep -o '=> /[^ ]*' | grep -v 'lib/sam3d-studio/' | sort -u | sed 's/^=> /  /' >&2

  log "$kind: info and infer on the demo CT (offline)"
  offline "$r" "$bin/sam3d-studio" info "$assets/demo/ct.nii.gz"
  offline "$r" "$bin/sam3d-studio-engine" --device-info
  local t0=$SECONDS
  offline "$r" "$bin/sam3d-studio" infer "$assets/demo/ct.nii.gz" --click-ras "$liver" \
    --out-mask /tmp/liver.nii.gz --out-mesh /tmp/liver.stl --json
  log "$kind: infer took $((SECONDS - t0)) s"
  offline "$r" "$bin/sam3d-studio" info /tmp/liver.nii.gz
  [ -s "$r/tmp/liver.stl" ] || { log "$kind: infer wrote no mesh"; return 1; }

  log "$kind: the viewer under Xvfb, 3D from click on the liver (offline)"
  rm -f "/tmp/.X11-unix/X${display#:}"
  Xvfb "$display" -screen 0 1600x1000x24 -nolisten tcp >"$test_dir/xvfb.log" 2>&1 &
  xvfb_pid=$!
  sleep 2
  # Not through a function: $! is then the process that becomes the viewer (unshare, chroot
  # and env exec one another), and the engine it starts is its child.
  unshare -n chroot "$r" env -i PATH=/usr/bin:/bin HOME=/root DISPLAY="$display" XDG_RUNTIME_DIR=/tmp \
    SAM3D_FILE_DIALOG=builtin "$bin/sam3d-studio" --at="$liver" --click axial >"$test_dir/$kind-viewer.log" 2>&1 &
  local viewer=$!
  sleep "${SAM3D_TEST_VIEWER_WAIT:-90}"
  import -display "$display" -window root "$test_dir/$kind-viewer.png"
  local alive=yes
  kill -0 "$viewer" 2>/dev/null || alive=no
  pkill -TERM -P "$viewer" 2>/dev/null || true   # the engine, by its parent's id
  kill "$viewer" 2>/dev/null || true
  wait "$viewer" 2>/dev/null || true
  kill "$xvfb_pid" 2>/dev/null || true; wait "$xvfb_pid" 2>/dev/null || true; xvfb_pid=
  log "$kind: viewer alive after the wait: $alive; screenshot $test_dir/$kind-viewer.png; its log:"
  cat "$test_dir/$kind-viewer.log" >&2
  [ $alive = yes ]
}

test_deb() {
  local deb r=$test_dir/root-deb
  deb=$(ls "$out"/sam3d-studio_*_amd64.deb)
  fresh_root "$r"
  cp "$deb" "$r/tmp/"
  in_root "$r" apt-get update -q >/dev/null
  local t0=$SECONDS
  log "deb: apt-get install ./$(basename "$deb") (Depends from Debian's mirror)"
  in_root "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "/tmp/$(basename "$deb")" | tail -3
  log "deb: installed in $((SECONDS - t0)) s (download of the Depends included)"
  in_root "$r" dpkg -L sam3d-studio | grep -E 'bin/|\.desktop|mime/packages' >&2
  check "$r" /usr/bin /usr/share/sam3d-studio/assets /usr/lib/sam3d-studio deb
  log "deb: apt-get remove"
  in_root "$r" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sam3d-studio | tail -1
  if [ -e "$r/usr/lib/sam3d-studio" ] || [ -e "$r/usr/share/sam3d-studio" ] || [ -e "$r/usr/bin/sam3d-studio" ]; then
    log "deb: files left after purge"; return 1
  fi
}

test_tarball() {
  local tarball r=$test_dir/root-tarball
  tarball=$(ls "$out"/sam3d-studio-*-linux-x86_64.tar.xz)
  fresh_root "$r"
  in_root "$r" apt-get update -q >/dev/null
  log "tarball: the system libraries INSTALL.txt lists, from apt"
  local libs
  libs=$(tar -xJOf "$tarball" --wildcards '*/INSTALL.txt' | sed -n '/sudo apt install/,/libgl1/p' | sed 's/.*apt install//; s/\\//' | tr -s ' \n' ' ')
  in_root "$r" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $libs | tail -1
  mkdir -p "$r/opt/empty"
  local t0=$SECONDS
  tar -C "$r/opt/empty" -xJf "$tarball"
  log "tarball: unpacked in $((SECONDS - t0)) s"
  local prefix
  prefix=/opt/empty/$(basename "$tarball" .tar.xz)
  check "$r" "$prefix/bin" "$prefix/share/sam3d-studio/assets" "$prefix/lib/sam3d-studio" tarball
}

status=0
for kind in "${kinds[@]}"; do
  # A subshell with errexit on (an `if` around the call would turn it off inside), which
  # unmounts its root however it ends.
  set +e
  ( trap cleanup EXIT; set -e; "test_$kind" ) > >(tee "$test_dir/$kind.log") 2> >(tee -a "$test_dir/$kind.log" >&2)
  rc=$?
  set -e
  if [ $rc -ne 0 ]; then
    log "$kind: FAILED (log: $test_dir/$kind.log)"; status=1
  else
    log "$kind: passed"
  fi
  if [ "${KEEP_ROOTS:-0}" != 1 ]; then
    # Never delete through a mount still in place (the root's /dev, /sys, /proc are the host's).
    if grep -q " $test_dir/root-$kind/" /proc/mounts; then
      log "$kind: mounts left under $test_dir/root-$kind; not deleting it"; status=1
    else
      rm -rf --one-file-system "$test_dir/root-$kind"
    fi
  fi
done
exit $status
