#!/bin/sh
# liblazyjac-petsc under MPI: the adapter's tests on 1, 2 and 3 ranks, and
# the two examples on 1 and 2 ranks, which must give the same solution norm
# to solver tolerance. Run by make check when configured --with-petsc.
set -e
b=${top_builddir:-.}
mpi=${MPIEXEC:-mpiexec}
# as root in CI, and three ranks on two cores; one thread a rank
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export LJ_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
run() { n=$1; shift; "$mpi" -n "$n" "$@"; }
# the adapter exports lj_petsc_* alone
lib=$(ls "$b"/.libs/liblazyjac-petsc.so 2>/dev/null | head -n 1)
if [ -n "$lib" ]; then
  bad=$(${NM:-nm} -D --defined-only "$lib" | awk '{print $3}' | grep -v '^lj_petsc_' | grep -v '^_' || true)
  [ -z "$bad" ] || { echo "liblazyjac-petsc exports symbols outside lj_petsc_: $bad" >&2; exit 1; }
  echo "liblazyjac-petsc: $(${NM:-nm} -D --defined-only "$lib" | awk '{print $3}' | grep -c '^lj_petsc_') symbols, all lj_petsc_*"
fi
for n in 1 2 3; do
  run "$n" "$b/tests/check_petsc"
done
norm() { sed -n 's/^solution norm //p'; }
for ex in petsc_lsqr petsc_snes; do
  out1=$(run 1 "$b/examples/$ex") || { echo "$out1"; echo "petsc.sh: $ex failed on 1 rank" >&2; exit 1; }
  out2=$(run 2 "$b/examples/$ex") || { echo "$out2"; echo "petsc.sh: $ex failed on 2 ranks" >&2; exit 1; }
  echo "$out2"
  n1=$(echo "$out1" | norm) n2=$(echo "$out2" | norm)
  [ -n "$n1" ] && [ -n "$n2" ] || { echo "petsc.sh: $ex printed no solution norm" >&2; exit 1; }
  awk -v a="$n1" -v b="$n2" -v ex="$ex" 'BEGIN {
    d = a - b; if (d < 0) d = -d; s = a < 0 ? -a : a;
    if (d > 1e-8 * s) { printf "petsc.sh: %s: solution norm %s on 1 rank, %s on 2\n", ex, a, b > "/dev/stderr"; exit 1 }
    printf "%s: solution norm %s on 1 rank and %s on 2: agree\n", ex, a, b }'
done
