#!/usr/bin/env bash
# Builds lazyjac on a Debian machine, installing missing Debian packages
# first (as root), then runs the demo or the test suite.
#   bash tools/quickstart.sh demo   # build, then `lazyjac demo` on the seed problems
#   bash tools/quickstart.sh test   # build, then `make check`
# Idempotent: an existing build in build/ is reused.
set -euo pipefail
mode=${1:-demo}
case "$mode" in demo|test) ;; *) echo "usage: $0 demo|test" >&2; exit 2 ;; esac
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

pkgs="build-essential autoconf automake libtool pkg-config libsuitesparse-dev libopenblas-dev check"
missing=
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing Debian packages:$missing"
  if [ "$(id -u)" -ne 0 ]; then echo "need root to install:$missing" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing
fi

[ -x configure ] || autoreconf -fi
mkdir -p build
cd build
[ -f Makefile ] || ../configure ${LJ_CONFIGURE_FLAGS:-}
make -j"$(nproc)"
if [ "$mode" = demo ]; then
  ./tools/lazyjac demo
else
  make -j"$(nproc)" check || { cat tests/*.log >&2; exit 1; }
fi
