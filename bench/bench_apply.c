/* Apply benchmarks, each printed as a ratio measured in this one run:
 *   1. (W^T ⊗ A) vec H, lazily, against the two bare GEMMs it performs
 *   2. the same operator against a dense matrix-vector product with the
 *      materialised J (at sizes where J fits in memory)
 *   3. the seed-000 form (I_n ⊗ W)·Diag(vec B) against CHOLMOD's sparse
 *      matrix-vector product on the materialised matrix
 *   4. commutation K_{m,n} apply against a plain copy of the same bytes
 * Usage: bench_apply [quick] */
#include <lazyjac.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

static double *rnd(size_t n, unsigned *s)
{
    double *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        v[i] = (double)(*s >> 8) / 8388608.0 - 1.0;
    }
    return v;
}

static void die(lj_context *ctx)
{
    fprintf(stderr, "bench_apply: %s\n", lj_context_message(ctx));
    exit(1);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    double budget = quick ? 0.05 : 0.5;
    lj_context *ctx = lj_context_new();
    unsigned seed = 7;
    printf("lazyjac %s apply benchmarks (best of 5 rounds; ratios < 1 mean lazyjac is faster)\n\n",
           lj_version_string());

    printf("1. Kronecker apply (W^T ⊗ A) vec H = vec(A H W), A m×m, H m×n, W n×p (m = n, p = n/2),\n"
           "   against the bare GEMMs of either association; lazyjac picks the cheaper, (A H) W or A (H W)\n");
    printf("   %6s %12s %14s %14s %10s\n", "n", "lazy (ms)", "(AH)W (ms)", "A(HW) (ms)", "ratio*");
    int sizes[] = { 4, 16, 32, 64, 128, 256, 512, 1024 };
    for (int si = 0; si < (quick ? 5 : 8); si++) {
        int n = sizes[si], m = n, p = n / 2; /* A m×m, H m×n, W n×p: non-square */
        double *A = rnd((size_t)m * m, &seed), *H = rnd((size_t)m * n, &seed), *W = rnd((size_t)n * p, &seed);
        double *T = malloc(sizeof *T * (size_t)m * n), *Y = malloc(sizeof *Y * (size_t)m * p);
        double *U = malloc(sizeof *U * (size_t)m * p);
        lj_op *a = lj_op_dense(ctx, m, m, A, m, "A"), *w = lj_op_dense(ctx, n, p, W, n, "W");
        lj_op *wt = lj_op_transpose(ctx, w), *J = lj_op_kron(ctx, wt, a);
        if (!J) die(ctx);
        double tl, tg1, tg2;
        TIME_BEST(tl, budget, lj_op_apply(ctx, J, 0, 1.0, H, 0.0, Y));
        TIME_BEST(tg1, budget, {
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1.0, A, m, H, m, 0.0, T, m);
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0, T, m, W, n, 0.0, Y, m);
        });
        TIME_BEST(tg2, budget, {
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0, H, m, W, n, 0.0, U, m);
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, p, m, 1.0, A, m, U, m, 0.0, Y, m);
        });
        double tg = tg1 < tg2 ? tg1 : tg2;
        printf("   %6d %12.5f %14.5f %14.5f %10.3f\n", n, 1e3 * tl, 1e3 * tg1, 1e3 * tg2, tl / tg);
        lj_op *ops[] = { a, w, wt, J };
        for (int i = 0; i < 4; i++) lj_op_free(&ops[i]);
        free(A); free(H); free(W); free(T); free(Y); free(U);
    }
    printf("   * against the faster of the two bare associations\n");

    printf("\n2. the same lazy apply against a dense GEMV with the materialised J\n");
    printf("   %6s %12s %12s %8s %14s\n", "n", "lazy (ms)", "dense (ms)", "ratio", "J bytes");
    int dsizes[] = { 16, 32, 48, 64 };
    for (int si = 0; si < (quick ? 2 : 4); si++) {
        int n = dsizes[si], m = n, p = n;
        double *A = rnd((size_t)m * m, &seed), *H = rnd((size_t)m * n, &seed), *W = rnd((size_t)n * p, &seed);
        lj_op *a = lj_op_dense(ctx, m, m, A, m, "A"), *w = lj_op_dense(ctx, n, p, W, n, "W");
        lj_op *wt = lj_op_transpose(ctx, w), *J = lj_op_kron(ctx, wt, a);
        int64_t R = lj_op_rows(J), C = lj_op_cols(J);
        double *D = malloc(sizeof *D * (size_t)(R * C)), *y = malloc(sizeof *y * (size_t)R);
        if (!D || lj_op_to_dense(ctx, J, D, R) != LJ_OK) die(ctx);
        double tl, td;
        TIME_BEST(tl, budget, lj_op_apply(ctx, J, 0, 1.0, H, 0.0, y));
        TIME_BEST(td, budget, cblas_dgemv(CblasColMajor, CblasNoTrans, (int)R, (int)C, 1.0, D, (int)R, H, 1, 0.0, y, 1));
        printf("   %6d %12.4f %12.4f %8.3f %14.3g\n", n, 1e3 * tl, 1e3 * td, tl / td, 8.0 * (double)R * (double)C);
        lj_op *ops[] = { a, w, wt, J };
        for (int i = 0; i < 4; i++) lj_op_free(&ops[i]);
        free(A); free(H); free(W); free(D); free(y);
    }

    printf("\n3. (I_n ⊗ W)·Diag(vec B), lazily, against cholmod_l_sdmult on the materialised matrix\n");
    printf("   %6s %6s %12s %12s %8s %10s\n", "p×m", "n", "lazy (ms)", "sdmult (ms)", "ratio", "nnz");
    int ssz[][3] = { { 40, 30, 50 }, { 200, 100, 400 }, { 400, 300, 1000 } };
    for (int si = 0; si < (quick ? 2 : 3); si++) {
        int p = ssz[si][0], m = ssz[si][1], n = ssz[si][2];
        double *W = rnd((size_t)p * m, &seed), *B = rnd((size_t)m * n, &seed), *x = rnd((size_t)m * n, &seed);
        double *y = malloc(sizeof *y * (size_t)p * n);
        lj_op *w = lj_op_dense(ctx, p, m, W, p, "W"), *Id = lj_op_identity(ctx, n), *k = lj_op_kron(ctx, Id, w);
        lj_op *D = lj_op_diag(ctx, (int64_t)m * n, B, "vec B"), *J = lj_op_mul(ctx, k, D);
        cholmod_sparse *S = lj_op_to_sparse(ctx, J);
        if (!S) die(ctx);
        cholmod_dense X = { .nrow = (size_t)m * n, .ncol = 1, .nzmax = (size_t)m * n, .d = (size_t)m * n, .x = x,
                            .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
        cholmod_dense Y = { .nrow = (size_t)p * n, .ncol = 1, .nzmax = (size_t)p * n, .d = (size_t)p * n, .x = y,
                            .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
        double one[2] = { 1, 0 }, zero[2] = { 0, 0 }, tl, ts;
        TIME_BEST(tl, budget, lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y));
        TIME_BEST(ts, budget, cholmod_l_sdmult(S, 0, one, zero, &X, &Y, lj_context_cholmod(ctx)));
        printf("   %3d×%-3d %5d %12.4f %12.4f %8.3f %10lld\n", p, m, n, 1e3 * tl, 1e3 * ts, tl / ts,
               (long long)((int64_t *)S->p)[S->ncol]);
        lj_sparse_free(ctx, &S);
        lj_op *ops[] = { w, Id, k, D, J };
        for (int i = 0; i < 5; i++) lj_op_free(&ops[i]);
        free(W); free(B); free(x); free(y);
    }

    printf("\n4. commutation K_{m,n} apply (the transpose kernel) against memcpy of the same bytes\n");
    printf("   %12s %12s %12s %8s\n", "m×n", "K (ms)", "memcpy (ms)", "ratio");
    int csz[][2] = { { 100, 100 }, { 1000, 37 }, { 1000, 1000 }, { 3000, 2000 }, { 4096, 4096 } };
    for (int si = 0; si < (quick ? 3 : 5); si++) {
        int m = csz[si][0], n = csz[si][1];
        double *x = rnd((size_t)m * n, &seed), *y = malloc(sizeof *y * (size_t)m * n);
        memset(y, 0, sizeof *y * (size_t)m * n);
        lj_op *K = lj_op_commutation(ctx, m, n);
        /* the two timed in turn, twice, the best of each kept: a slow
         * spell of the machine then lands on both */
        double tk = 1e300, tc = 1e300;
        for (int rep = 0; rep < 2; rep++) {
            double a, b;
            TIME_BEST(a, budget / 2, lj_op_apply(ctx, K, 0, 1.0, x, 0.0, y));
            TIME_BEST(b, budget / 2, memcpy(y, x, sizeof *y * (size_t)m * n));
            if (a < tk) tk = a;
            if (b < tc) tc = b;
        }
        printf("   %5d×%-6d %12.4f %12.4f %8.3f\n", m, n, 1e3 * tk, 1e3 * tc, tk / tc);
        lj_op_free(&K);
        free(x); free(y);
    }
    lj_context_free(&ctx);
    return 0;
}
