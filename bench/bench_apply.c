/* Apply benchmarks, each printed as a ratio measured in this one run:
 *   1. (W^T ⊗ A) vec H, lazily, against the two bare GEMMs it performs
 *   2. the same operator against a dense matrix-vector product with the
 *      materialised J (at sizes where J fits in memory)
 *   3. the seed-000 form (I_n ⊗ W)·Diag(vec B) against CHOLMOD's sparse
 *      matrix-vector product on the materialised matrix
 *   4. commutation K_{m,n} apply against a plain copy of the same bytes
 *   5. multi-vector applies on one and two of lazyjac's threads
 * Usage: bench_apply [quick] */
#include <lazyjac.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* OpenBLAS's own thread count (weak: another BLAS may lack it) */
void openblas_set_num_threads(int n);
#pragma weak openblas_set_num_threads

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
    printf("lazyjac %s apply benchmarks (best of 5 rounds, 9 alternating in part 1; ratios < 1 mean lazyjac is faster)\n\n",
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
        TIME_BEST3(tl, tg1, tg2, 3 * budget, lj_op_apply(ctx, J, 0, 1.0, H, 0.0, Y), {
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, m, 1.0, A, m, H, m, 0.0, T, m);
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, p, n, 1.0, T, m, W, n, 0.0, Y, m);
        }, {
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

    printf("\n4. commutation K_{m,n} apply (the transpose kernel) on one thread against memcpy of the same bytes\n"
           "   (and on two of lazyjac's threads, for the record)\n");
    printf("   %12s %12s %12s %8s %12s\n", "m×n", "K (ms)", "memcpy (ms)", "ratio", "K 2T (ms)");
    /* the five shapes, then leading dimensions at and near
     * multiples of 512, whose columns crowd a few cache sets */
    int csz[][2] = { { 100, 100 }, { 1000, 37 }, { 1000, 1000 }, { 3000, 2000 }, { 4096, 4096 },
                     { 512, 512 }, { 1024, 1024 }, { 2047, 2049 }, { 4095, 4097 } };
    for (int si = 0; si < (quick ? 3 : 9); si++) {
        int m = csz[si][0], n = csz[si][1];
        double *x = rnd((size_t)m * n, &seed), *y = malloc(sizeof *y * (size_t)m * n);
        memset(y, 0, sizeof *y * (size_t)m * n);
        lj_op *K = lj_op_commutation(ctx, m, n);
        /* the two timed in turn, twice, the best of each kept: a slow
         * spell of the machine then lands on both */
        double tk = 1e300, tc = 1e300, t2;
        lj_context_set_threads(ctx, 1);
        for (int rep = 0; rep < 2; rep++) {
            double a, b;
            TIME_BEST(a, budget / 2, lj_op_apply(ctx, K, 0, 1.0, x, 0.0, y));
            TIME_BEST(b, budget / 2, memcpy(y, x, sizeof *y * (size_t)m * n));
            if (a < tk) tk = a;
            if (b < tc) tc = b;
        }
        lj_context_set_threads(ctx, 2);
        TIME_BEST(t2, budget / 2, lj_op_apply(ctx, K, 0, 1.0, x, 0.0, y));
        lj_context_set_threads(ctx, 0);
        printf("   %5d×%-6d %12.4f %12.4f %8.3f %12.4f\n", m, n, 1e3 * tk, 1e3 * tc, tk / tc, 1e3 * t2);
        lj_op_free(&K);
        free(x); free(y);
    }
    /* lazyjac's threads each call BLAS: with BLAS's own threads as well
     * the two kinds would share the cores */
    if (openblas_set_num_threads) openblas_set_num_threads(1);
    printf("\n5. multi-vector apply (k = 16) on one and two threads of lazyjac's own (BLAS on one thread%s)\n",
           openblas_set_num_threads ? "" : ": set OPENBLAS_NUM_THREADS=1 or its equivalent");
    printf("   %-34s %12s %12s %8s\n", "operator", "1T (ms)", "2T (ms)", "1T/2T");
    {
        int64_t n = 300, nn = n * n, k = 16;
        double *W = rnd((size_t)n * n, &seed), *B = rnd((size_t)nn, &seed);
        cholmod_common *cc = lj_context_cholmod(ctx);
        /* a sparse 2-D Laplacian-like pattern, 5 entries a column */
        cholmod_sparse *L = cholmod_l_allocate_sparse((size_t)nn, (size_t)nn, (size_t)(5 * nn), 1, 1, 0, CHOLMOD_REAL, cc);
        int64_t *lp = L->p, *li = L->i, q = 0;
        double *lx = L->x;
        for (int64_t j = 0; j < nn; j++) {
            lp[j] = q;
            const int64_t nb[5] = { j - n, j - 1, j, j + 1, j + n };
            for (int t = 0; t < 5; t++)
                if (nb[t] >= 0 && nb[t] < nn) {
                    li[q] = nb[t];
                    lx[q++] = t == 2 ? 4.0 : -1.0;
                }
        }
        lp[nn] = q;
        lj_op *w = lj_op_dense(ctx, n, n, W, n, "W"), *In = lj_op_identity(ctx, n), *IW = lj_op_kron(ctx, In, w);
        lj_op *D = lj_op_diag(ctx, nn, B, "vec B"), *seed0 = lj_op_mul(ctx, IW, D);
        lj_op *K = lj_op_commutation(ctx, n, n), *S = lj_op_sparse(ctx, L, "L");
        const lj_op *chain[3] = { D, K, S };
        lj_op *C = lj_op_compose(ctx, 3, chain);
        lj_op *ops[] = { K, S, C, seed0 };
        const char *names[] = { "K_{300,300}", "sparse L (5 per column)", "Diag(vec B)·K·L", "(I ⊗ W)·Diag(vec B) (GEMMs)" };
        double *X = rnd((size_t)(nn * k), &seed), *Y = malloc(sizeof *Y * (size_t)(nn * k));
        for (int o = 0; o < 4; o++) {
            if (!ops[o]) die(ctx);
            double t[2];
            for (int th = 0; th < 2; th++) {
                lj_context_set_threads(ctx, th + 1);
                TIME_BEST(t[th], budget, lj_op_apply_multi(ctx, ops[o], 0, k, 1.0, X, nn, 0.0, Y, nn));
            }
            lj_context_set_threads(ctx, 0);
            printf("   %-34s %12.3f %12.3f %8.2f\n", names[o], 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
        }
        /* one vector: a sum of three large terms and a stack of them, the
         * terms (groups of terms) on the two threads */
        lj_op *Kt = lj_op_transpose(ctx, K);
        const lj_op *terms[3] = { S, K, Kt };
        lj_op *Sum = lj_op_lincomb(ctx, 3, NULL, terms), *Vs = lj_op_vstack(ctx, 3, terms);
        lj_op *one[] = { Sum, Vs };
        const char *onames[] = { "L + K + K^T, one vector", "[L; K; K^T], one vector" };
        double *y3 = malloc(sizeof *y3 * (size_t)(3 * nn));
        for (int o = 0; o < 2; o++) {
            if (!one[o]) die(ctx);
            double t[2];
            for (int th = 0; th < 2; th++) {
                lj_context_set_threads(ctx, th + 1);
                TIME_BEST(t[th], budget, lj_op_apply(ctx, one[o], 0, 1.0, X, 0.0, y3));
            }
            lj_context_set_threads(ctx, 0);
            printf("   %-34s %12.3f %12.3f %8.2f\n", onames[o], 1e3 * t[0], 1e3 * t[1], t[0] / t[1]);
        }
        free(y3);
        lj_op *all[] = { w, In, IW, D, seed0, K, S, C, Kt, Sum, Vs };
        for (int i = 0; i < 11; i++) lj_op_free(&all[i]);
        cholmod_l_free_sparse(&L, cc);
        free(W); free(B); free(X); free(Y);
    }
    lj_context_free(&ctx);
    return 0;
}
