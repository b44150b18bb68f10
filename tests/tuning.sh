#!/bin/sh
# The transpose kernel's tests (check_op's "transpose" case) under both of
# its tunings, whatever this machine's CPU: the Intel one (prefetches of
# B, streaming stores from 2 MiB in bands of 128 rows) and the other
# (no prefetches, streaming stores from 16 MiB in bands of 32 rows).
for t in intel other; do
  echo "LJ_TRANSPOSE_TUNING=$t"
  LJ_TRANSPOSE_TUNING=$t CK_RUN_CASE=transpose "$top_builddir"/tests/check_op || exit 1
done
