#!/bin/sh
# Fails if the shared library exports any symbol not starting with lj_.
lib=$(ls "$top_builddir"/.libs/liblazyjac.so 2>/dev/null | head -n 1)
if [ -z "$lib" ]; then
  echo "SKIP: no shared library built"; exit 77
fi
bad=$(${NM:-nm} -D --defined-only "$lib" | awk '{print $3}' | grep -v '^lj_' | grep -v '^_' )
count=$(${NM:-nm} -D --defined-only "$lib" | awk '{print $3}' | grep -c '^lj_')
if [ -n "$bad" ]; then
  echo "symbols outside the lj_ prefix:"; echo "$bad"; exit 1
fi
if [ "$count" -lt 50 ]; then
  echo "only $count lj_ symbols exported: the export list is broken"; exit 1
fi
echo "exported symbols: $count, all lj_*"
