/* PETSc adapter benchmarks, ratios measured in this one run (run it on two
 * ranks: mpiexec -n 2 bench/bench_petsc):
 *   1. MatMult and MatMultTranspose of the lazy MatShell against
 *      lj_op_apply of the same operator, on one rank, at 10^5 rows
 *   2. MatMult on one rank (a communicator of rank 0 alone) and on all
 *      ranks, for a Jacobian with 10^8 stored entries:
 *      (I_n ⊗ W)·Diag(vec B), W 100×100, n = 10^4 (quick: 10^7 entries)
 * Usage: mpiexec -n 2 bench_petsc [quick] */
#include <lazyjac_petsc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* (I_n ⊗ W)·Diag(vec B) with W w×w: rows and columns w·n, w²·n entries */
static lj_op *seed000(lj_context *ctx, int64_t w, int64_t n)
{
    unsigned long long s = 5;
    double *W = malloc(sizeof *W * (size_t)(w * w)), *B = malloc(sizeof *B * (size_t)(w * n));
    for (int64_t i = 0; i < w * w; i++) W[i] = urand(&s);
    for (int64_t i = 0; i < w * n; i++) B[i] = urand(&s);
    lj_op *Wo = lj_op_dense(ctx, w, w, W, w, "W"), *In = lj_op_identity(ctx, n), *K = lj_op_kron(ctx, In, Wo);
    lj_op *D = lj_op_diag(ctx, w * n, B, "vec B"), *J = lj_op_mul(ctx, K, D);
    lj_op_free(&Wo);
    lj_op_free(&In);
    lj_op_free(&K);
    lj_op_free(&D);
    free(W), free(B);
    return J;
}

/* best time of one call over rounds of at least `budget` seconds; every
 * rank of comm takes part, rank 0's clock decides */
#define BEST(out, comm, budget, stmt)                                                       \
    do {                                                                                    \
        double best_ = 1e300;                                                               \
        for (int r_ = 0; r_ < 5; r_++) {                                                    \
            int go_ = 1, n_ = 0;                                                            \
            (void)MPI_Barrier(comm);                                                         \
            double t0_ = MPI_Wtime();                                                       \
            while (go_) {                                                                   \
                stmt;                                                                       \
                n_++;                                                                       \
                go_ = MPI_Wtime() - t0_ < (budget);                                         \
                (void)MPI_Bcast(&go_, 1, MPI_INT, 0, comm);                                    \
            }                                                                               \
            double per_ = (MPI_Wtime() - t0_) / n_;                                         \
            if (per_ < best_) best_ = per_;                                                 \
        }                                                                                   \
        (out) = best_;                                                                      \
    } while (0)

int main(int argc, char **argv)
{
    PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    double budget = quick ? 0.05 : 0.3;
    int rank, size;
    MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
    MPI_Comm_size(PETSC_COMM_WORLD, &size);
    lj_context *ctx = lj_context_new();
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "lazyjac %s PETSc adapter benchmarks on %d rank%s\n\n", lj_version_string(),
                          size, size == 1 ? "" : "s"));
    /* 1. overhead on one rank, at 10^5 rows */
    MPI_Comm one;
    MPI_Comm_split(PETSC_COMM_WORLD, rank == 0 ? 0 : MPI_UNDEFINED, 0, &one);
    if (rank == 0) {
        lj_op *J = seed000(ctx, 100, 1000);
        int64_t m = lj_op_rows(J), n = lj_op_cols(J);
        Mat S;
        if (lj_petsc_matshell(ctx, J, one, 0, &S) != LJ_OK) {
            fprintf(stderr, "bench_petsc: %s\n", lj_context_message(ctx));
            MPI_Abort(PETSC_COMM_WORLD, 1);
        }
        Vec x, y;
        PetscCall(MatCreateVecs(S, &x, &y));
        PetscCall(VecSet(x, 0.5));
        double *xa = malloc(sizeof *xa * (size_t)n), *ya = malloc(sizeof *ya * (size_t)m);
        for (int64_t i = 0; i < n; i++) xa[i] = 0.5;
        double ts, tl, tst, tlt;
        BEST(ts, one, budget, MatMult(S, x, y));
        BEST(tl, one, budget, lj_op_apply(ctx, J, 0, 1.0, xa, 0.0, ya));
        BEST(tst, one, budget, MatMultTranspose(S, y, x));
        BEST(tlt, one, budget, lj_op_apply(ctx, J, 1, 1.0, ya, 0.0, xa));
        printf("1. MatShell against lj_op_apply, one rank, J = (I_1000 ⊗ W)·Diag(vec B), %lld rows:\n", (long long)m);
        printf("   MatMult %.3f ms, lj_op_apply %.3f ms: ratio %.3f (goal <= 1.05)\n", 1e3 * ts, 1e3 * tl, ts / tl);
        printf("   MatMultTranspose %.3f ms, lj_op_apply^T %.3f ms: ratio %.3f\n\n", 1e3 * tst, 1e3 * tlt, tst / tlt);
        fflush(stdout);
        PetscCall(VecDestroy(&x));
        PetscCall(VecDestroy(&y));
        PetscCall(MatDestroy(&S));
        lj_op_free(&J);
        free(xa), free(ya);
        MPI_Comm_free(&one);
    }
    (void)MPI_Barrier(PETSC_COMM_WORLD);
    /* 2. one rank against all of them, 10^8 stored entries */
    int64_t nb = quick ? 1000 : 10000;
    lj_op *J = seed000(ctx, 100, nb);
    int exact;
    int64_t nnz = lj_op_nnz(ctx, J, &exact);
    double t[2] = { 0, 0 };
    for (int pass = 0; pass < 2; pass++) {
        MPI_Comm c = PETSC_COMM_WORLD;
        if (pass == 0) MPI_Comm_split(PETSC_COMM_WORLD, rank == 0 ? 0 : MPI_UNDEFINED, 0, &c);
        if (c != MPI_COMM_NULL) {
            Mat S;
            if (lj_petsc_matshell(ctx, J, c, 0, &S) != LJ_OK) {
                fprintf(stderr, "bench_petsc: %s\n", lj_context_message(ctx));
                MPI_Abort(PETSC_COMM_WORLD, 1);
            }
            Vec x, y;
            PetscCall(MatCreateVecs(S, &x, &y));
            PetscCall(VecSet(x, 0.25));
            BEST(t[pass], c, budget, MatMult(S, x, y));
            PetscCall(VecDestroy(&x));
            PetscCall(VecDestroy(&y));
            PetscCall(MatDestroy(&S));
            if (pass == 0) MPI_Comm_free(&c);
        }
        (void)MPI_Barrier(PETSC_COMM_WORLD);
    }
    if (rank == 0) {
        printf("2. MatMult of the lazy shell, J = (I_%lld ⊗ W)·Diag(vec B), %lld×%lld with %lld stored entries:\n",
               (long long)nb, (long long)lj_op_rows(J), (long long)lj_op_cols(J), (long long)nnz);
        printf("   one rank %.2f ms, %d ranks %.2f ms: speedup %.2f\n", 1e3 * t[0], size, 1e3 * t[1], t[0] / t[1]);
    }
    lj_op_free(&J);
    lj_context_free(&ctx);
    PetscCall(PetscFinalize());
    return 0;
}
