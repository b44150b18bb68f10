#!/bin/sh
# The kernels' tests (check_op's "kernels" case: the transpose kernel and
# the small products) under every choice the library makes by the CPU,
# whatever this machine's CPU is: the transpose's Intel tuning (prefetches
# of B, streaming stores from 2 MiB in bands of 128 rows) and the other
# (no prefetches, streaming stores from 16 MiB in bands of 32 rows), and
# the portable kernels that CPUs without AVX run (LJ_SIMD=none).
run() {
  echo "$*"
  env "$@" CK_RUN_CASE=kernels "$top_builddir"/tests/check_op || exit 1
}
run LJ_TRANSPOSE_TUNING=intel
run LJ_TRANSPOSE_TUNING=other
run LJ_SIMD=none LJ_TRANSPOSE_TUNING=intel
