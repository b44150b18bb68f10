#!/usr/bin/env bash
# Runs the README's test command on a fresh Debian root of the given suite
# (bookworm = Debian 12, SuiteSparse 5; trixie = Debian 13, SuiteSparse 7):
# debootstrap a minimal root, clone the commit under test into it, and run
# `bash tools/quickstart.sh test` there, which installs the Debian packages
# it needs itself. Needs root and debootstrap (installed when missing).
#   bash .ci/debian-root.sh trixie
set -euo pipefail
suite=${1:?usage: $0 bookworm|trixie}
top=$(cd "$(dirname "$0")/.." && pwd)
root=${LJ_ROOT_DIR:-/tmp/lazyjac-root}-$suite
mirror=${LJ_DEBIAN_MIRROR:-http://deb.debian.org/debian}
export DEBIAN_FRONTEND=noninteractive

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

cleanup() {
  for m in dev/pts dev proc; do
    mountpoint -q "$root/$m" 2>/dev/null && umount -l "$root/$m" || true
  done
}
trap cleanup EXIT
cleanup
# --one-file-system: never into a bind mount of /dev or /proc that a killed
# run may have left behind
rm -rf --one-file-system "$root"
mkdir -p "$root"
echo "== $suite: debootstrap (minbase) into $root"
debootstrap --variant=minbase "$suite" "$root" "$mirror" > "$root.debootstrap.log" 2>&1 ||
  { tail -30 "$root.debootstrap.log" >&2; exit 1; }
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind /dev/pts "$root/dev/pts"
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true

# the committed tree, as a fresh clone would have it
git -C "$top" archive --format=tar --prefix=src/ HEAD | tar -x -C "$root"
echo "== $suite: $(cat "$root/etc/debian_version"): bash tools/quickstart.sh test"
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  LJ_CONFIGURE_FLAGS="${LJ_CONFIGURE_FLAGS:-}" \
  /bin/bash -c 'cd /src && bash tools/quickstart.sh test' > "$root.test.log" 2>&1 ||
  { tail -60 "$root.test.log" >&2; echo "$suite: the test command failed" >&2; exit 1; }
grep -E "^# (TOTAL|PASS|FAIL)|passed, .* failed|SuiteSparse|CHOLMOD" "$root.test.log" | sed "s/^/$suite: /"
cleanup
rm -rf --one-file-system "$root"
echo "== $suite: passed"
