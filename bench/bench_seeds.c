/* The seed operators against the minimal computation written by hand
 * (plain loops and CBLAS), each ratio measured in this one run:
 *   1. J·v and J^T·w of the four seeds' Jacobians at n = 4 … 1024
 *   2. building J (lj_expr_jacobian) against one apply of it
 *   3. one multi-vector apply of 16 vectors against 16 single applies
 *   4. materialising seed 000's (I_n ⊗ W)·Diag(vec B) against a one-pass
 *      kernel that writes its CSC directly
 * Usage: bench_seeds [quick] */
#include <lazyjac.h>
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

static double *rnd(size_t n, unsigned *s)
{
    double *v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        *s = *s * 1664525u + 1013904223u;
        v[i] = (double)(*s >> 8) / 8388608.0 - 1.0;
    }
    return v;
}

static void die(lj_context *ctx, const char *what)
{
    fprintf(stderr, "bench_seeds: %s: %s\n", what, lj_context_message(ctx));
    exit(1);
}

static double maxrel(const double *a, const double *b, int64_t n)
{
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = a[i] - b[i];
        if (d < 0) d = -d;
        if (d > m) m = d;
        double t = b[i] < 0 ? -b[i] : b[i];
        if (t > s) s = t;
    }
    return s > 0 ? m / s : m;
}

/* ---- the hand-written computations --------------------------------------- */

typedef struct {
    int n;          /* the size parameter */
    int64_t rows, cols;
    double *W, *A, *B, *x, *b, *ones; /* data of the four seeds */
    int p, m, q;    /* shapes: seed 000 W p×m, A, B m×q; seed 002 Q, W p×m, b m×1 */
} seed_data;

/* seed 000: F = W (A ∘ B) w.r.t. A; J v = vec(W (B ∘ V)), J^T w = vec(B ∘ (W^T Wm)) */
static void raw000(const seed_data *d, int trans, const double *v, double *y, double *T)
{
    int p = d->p, m = d->m, q = d->q;
    if (!trans) {
        for (int64_t t = 0; t < (int64_t)m * q; t++) T[t] = d->B[t] * v[t];
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, p, q, m, 1.0, d->W, p, T, m, 0.0, y, p);
    } else {
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, m, q, p, 1.0, d->W, p, v, p, 0.0, y, m);
        for (int64_t t = 0; t < (int64_t)m * q; t++) y[t] *= d->B[t];
    }
}

/* seed 001: F = (x x^T) ∘ A w.r.t. x (K×1); J v = vec(A ∘ (v x^T + x v^T)),
 * J^T w = (A ∘ Wm) x + (A ∘ Wm)^T x */
static void raw001(const seed_data *d, int trans, const double *v, double *y, double *T)
{
    (void)T;
    int K = d->n;
    const double *A = d->A, *x = d->x;
    if (!trans) {
        for (int j = 0; j < K; j++)
            for (int i = 0; i < K; i++) y[i + j * K] = A[i + j * K] * (v[i] * x[j] + x[i] * v[j]);
    } else {
        for (int i = 0; i < K; i++) y[i] = 0.0;
        for (int j = 0; j < K; j++) {
            double s = 0.0;
            for (int i = 0; i < K; i++) {
                double t = A[i + j * K] * v[i + j * K];
                y[i] += t * x[j];
                s += t * x[i];
            }
            y[j] += s;
        }
    }
}

/* seed 002: f = 1^T (Q ∘ W) b w.r.t. Q (p×m); J v = Σ V_ij W_ij b_j,
 * J^T s = s·vec((1 b^T) ∘ W) */
static void raw002(const seed_data *d, int trans, const double *v, double *y, double *T)
{
    (void)T;
    int p = d->p, m = d->m;
    const double *W = d->W, *b = d->b;
    if (!trans) {
        double s = 0.0;
        for (int j = 0; j < m; j++) {
            double c = 0.0;
            for (int i = 0; i < p; i++) c += v[i + j * p] * W[i + j * p];
            s += c * b[j];
        }
        y[0] = s;
    } else {
        for (int j = 0; j < m; j++) {
            double c = v[0] * b[j];
            for (int i = 0; i < p; i++) y[i + j * p] = c * W[i + j * p];
        }
    }
}

/* seed 003: Z = A H W w.r.t. H (A n×n, H n×n, W n×n/2); J v = vec(A V W) in
 * the cheaper association, J^T w = vec(A^T Wm W^T) */
static void raw003(const seed_data *d, int trans, const double *v, double *y, double *T)
{
    int n = d->n, p = d->q;
    if (!trans) {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, p, n, 1.0, v, n, d->W, n, 0.0, T, n);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, n, p, n, 1.0, d->A, n, T, n, 0.0, y, n);
    } else {
        cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, n, p, n, 1.0, d->A, n, v, n, 0.0, T, n);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, n, n, p, 1.0, T, n, d->W, n, 0.0, y, n);
    }
}

typedef void (*raw_fn)(const seed_data *, int, const double *, double *, double *);

/* The seed's expression, its variable and the hand computation. */
static lj_expr *seed_expr(lj_context *ctx, int s, seed_data *d, lj_expr **var, raw_fn *raw, unsigned *seed)
{
    int n = d->n;
    lj_expr *e = NULL;
    switch (s) {
    case 0: { /* W p×m, A, B m×q with p = m = n/2 + 1, q = n */
        d->p = n / 2 + 1, d->m = n / 2 + 1, d->q = n;
        d->W = rnd((size_t)d->p * d->m, seed), d->A = rnd((size_t)d->m * d->q, seed), d->B = rnd((size_t)d->m * d->q, seed);
        lj_expr *W = lj_expr_const(ctx, "W", d->p, d->m, d->W), *B = lj_expr_const(ctx, "B", d->m, d->q, d->B);
        *var = lj_expr_var(ctx, "A", d->m, d->q, d->A);
        lj_expr *h = lj_expr_hadamard(ctx, *var, B);
        e = lj_expr_mul(ctx, W, h);
        lj_expr_free(&W), lj_expr_free(&B), lj_expr_free(&h);
        *raw = raw000;
        break;
    }
    case 1: {
        d->x = rnd((size_t)n, seed), d->A = rnd((size_t)n * n, seed);
        *var = lj_expr_var(ctx, "x", n, 1, d->x);
        lj_expr *A = lj_expr_const(ctx, "A", n, n, d->A), *xt = lj_expr_transpose(ctx, *var);
        lj_expr *o = lj_expr_mul(ctx, *var, xt);
        e = lj_expr_hadamard(ctx, o, A);
        lj_expr_free(&A), lj_expr_free(&xt), lj_expr_free(&o);
        *raw = raw001;
        break;
    }
    case 2: { /* Q, W p×m with p = n, m = n/2 + 1 */
        d->p = n, d->m = n / 2 + 1;
        d->ones = malloc(sizeof *d->ones * (size_t)d->p);
        for (int i = 0; i < d->p; i++) d->ones[i] = 1.0;
        d->W = rnd((size_t)d->p * d->m, seed), d->A = rnd((size_t)d->p * d->m, seed), d->b = rnd((size_t)d->m, seed);
        lj_expr *one = lj_expr_const(ctx, "ones", d->p, 1, d->ones), *W = lj_expr_const(ctx, "W", d->p, d->m, d->W);
        lj_expr *b = lj_expr_const(ctx, "b", d->m, 1, d->b);
        *var = lj_expr_var(ctx, "Q", d->p, d->m, d->A);
        lj_expr *ot = lj_expr_transpose(ctx, one), *h = lj_expr_hadamard(ctx, *var, W);
        lj_expr *l = lj_expr_mul(ctx, ot, h);
        e = lj_expr_mul(ctx, l, b);
        lj_expr_free(&one), lj_expr_free(&W), lj_expr_free(&b), lj_expr_free(&ot), lj_expr_free(&h), lj_expr_free(&l);
        *raw = raw002;
        break;
    }
    default: { /* A n×n, H n×n, W n×(n/2+1) */
        d->q = n / 2 + 1;
        d->A = rnd((size_t)n * n, seed), d->W = rnd((size_t)n * d->q, seed);
        double *h0 = rnd((size_t)n * n, seed);
        lj_expr *A = lj_expr_const(ctx, "A", n, n, d->A), *W = lj_expr_const(ctx, "W", n, d->q, d->W);
        *var = lj_expr_var(ctx, "H", n, n, h0);
        free(h0);
        lj_expr *ah = lj_expr_mul(ctx, A, *var);
        e = lj_expr_mul(ctx, ah, W);
        lj_expr_free(&A), lj_expr_free(&W), lj_expr_free(&ah);
        *raw = raw003;
        break;
    }
    }
    return e;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    double budget = quick ? 0.04 : 0.3;
    lj_context *ctx = lj_context_new();
    unsigned seed = 5;
    const char *names[] = { "000 W(A∘B)", "001 (xx^T)∘A", "002 1^T(Q∘W)b", "003 AHW" };
    int sizes[] = { 4, 16, 64, 256, 1024 };
    int nsz = quick ? 3 : 5;
    printf("lazyjac %s seed operators against the hand-written computation (best of 5 rounds, 9 in turns in part 1; < 1: lazyjac faster)\n\n",
           lj_version_string());
    printf("   %-14s %5s %10s %10s %7s %10s %10s %7s %9s %9s %9s\n", "seed", "n", "Jv (µs)", "raw (µs)", "ratio",
           "J^Tw (µs)", "raw (µs)", "ratio", "build/Jv", "multi/16", "max err");
    for (int s = 0; s < 4; s++)
        for (int si = 0; si < nsz; si++) {
            seed_data d = { .n = sizes[si] };
            lj_expr *var = NULL;
            raw_fn raw;
            lj_expr *e = seed_expr(ctx, s, &d, &var, &raw, &seed);
            lj_op *J = lj_expr_jacobian(ctx, e, var);
            if (!J) die(ctx, names[s]);
            int64_t R = lj_op_rows(J), C = lj_op_cols(J);
            double *v = rnd((size_t)C, &seed), *w = rnd((size_t)R, &seed), *y = malloc(sizeof *y * (size_t)R);
            double *yr = malloc(sizeof *yr * (size_t)R), *g = malloc(sizeof *g * (size_t)C), *gr = malloc(sizeof *gr * (size_t)C);
            double *T = malloc(sizeof *T * (size_t)(R > C ? R : C) * 2);
            double tj, tr, tt, ttr, tb, tm, t1;
            /* J·v, the hand computation and building J once, in turns */
            TIME_BEST3(tj, tr, tb, 3 * budget, lj_op_apply(ctx, J, 0, 1.0, v, 0.0, y), raw(&d, 0, v, yr, T), {
                lj_op *K = lj_expr_jacobian(ctx, e, var);
                lj_op_free(&K);
            });
            TIME_BEST2(tt, ttr, 2 * budget, lj_op_apply(ctx, J, 1, 1.0, w, 0.0, g), raw(&d, 1, w, gr, T));
            double err = maxrel(y, yr, R), e2 = maxrel(g, gr, C);
            if (e2 > err) err = e2;
            /* 16 vectors at once against 16 applies of one */
            const int k = 16;
            double *V = rnd((size_t)C * k, &seed), *Y = malloc(sizeof *Y * (size_t)R * k);
            lj_context_set_threads(ctx, 1); /* the blocking, not the threads */
            TIME_BEST2(tm, t1, 2 * budget, lj_op_apply_multi(ctx, J, 0, k, 1.0, V, C, 0.0, Y, R),
                       for (int j = 0; j < k; j++) lj_op_apply(ctx, J, 0, 1.0, V + (size_t)j * C, 0.0, Y + (size_t)j * R));
            lj_context_set_threads(ctx, 0);
            printf("   %-14s %5d %10.3f %10.3f %7.2f %10.3f %10.3f %7.2f %9.2f %9.2f %9.1e\n", names[s], d.n, 1e6 * tj, 1e6 * tr,
                   tj / tr, 1e6 * tt, 1e6 * ttr, tt / ttr, tb / tj, tm / t1, err);
            free(V), free(Y), free(v), free(w), free(y), free(yr), free(g), free(gr), free(T);
            free(d.W), free(d.A), free(d.B), free(d.x), free(d.b), free(d.ones);
            lj_op_free(&J);
            lj_expr_free(&e);
            lj_expr_free(&var);
        }
    printf("   build/Jv: building J once against one J·v; multi/16: one apply of 16 vectors against 16 applies\n"
           "   (both on one thread; all other columns with the default threads)\n");

    /* one thread on both sides: on a machine whose idle core takes
     * milliseconds to wake, a second thread costs more than these
     * materialisations (16 M entries in about 15 ms) save */
    lj_context_set_threads(ctx, 1);
    printf("\n4. materialising seed 000's (I_n ⊗ W)·Diag(vec B), W p×m, against a one-pass kernel writing its CSC\n"
           "   (both on one thread, best of five runs, both into memory the process has: the one-pass kernel into arrays\n"
           "   it wrote once before, lazyjac from 2 MiB up into the arrays lj_sparse_free kept from the run before)\n");
    printf("   %14s %12s %12s %8s\n", "entries", "lazyjac (ms)", "one pass (ms)", "ratio");
    int ms[][3] = { { 30, 30, 50 }, { 100, 100, 100 }, { 200, 200, 400 } };
    for (int si = 0; si < (quick ? 2 : 3); si++) {
        int p = ms[si][0], m = ms[si][1], n = ms[si][2];
        double *W = rnd((size_t)p * m, &seed), *B = rnd((size_t)m * n, &seed);
        lj_op *w = lj_op_dense(ctx, p, m, W, p, "W"), *In = lj_op_identity(ctx, n), *k = lj_op_kron(ctx, In, w);
        lj_op *D = lj_op_diag(ctx, (int64_t)m * n, B, "vec B"), *J = lj_op_mul(ctx, k, D);
        if (!J) die(ctx, "seed 000 operator");
        double tl = 1e300, th = 1e300;
        int64_t nz = (int64_t)p * m * n;
        /* the one-pass kernel's arrays: allocated and written once before
         * the timed runs, as lazyjac's best run writes into arrays it has */
        int64_t *cp = malloc(sizeof *cp * ((size_t)m * n + 1)), *ci = malloc(sizeof *ci * (size_t)nz);
        double *cx = malloc(sizeof *cx * (size_t)nz);
        if (!cp || !ci || !cx) die(ctx, "one-pass arrays");
        memset(cp, 0, sizeof *cp * ((size_t)m * n + 1));
        memset(ci, 0, sizeof *ci * (size_t)nz);
        memset(cx, 0, sizeof *cx * (size_t)nz);
        for (int r = 0; r < 5; r++) {
            double t0 = now();
            cholmod_sparse *S = lj_op_to_sparse(ctx, J);
            double dt = now() - t0;
            if (!S) die(ctx, "to_sparse");
            lj_sparse_free(ctx, &S);
            if (dt < tl) tl = dt;
            /* the one-pass kernel: column i + j·m holds W(:, i)·B(i, j) at
             * rows j·p … j·p + p - 1 */
            t0 = now();
            int64_t q = 0;
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++) {
                    cp[i + (int64_t)j * m] = q;
                    double bij = B[i + (int64_t)j * m];
                    for (int r2 = 0; r2 < p; r2++) {
                        ci[q] = (int64_t)j * p + r2;
                        cx[q++] = W[r2 + (int64_t)i * p] * bij;
                    }
                }
            cp[(int64_t)m * n] = q;
            dt = now() - t0;
            if (cx[nz / 2] == 12345.678) printf("?");
            if (dt < th) th = dt;
        }
        free(cp), free(ci), free(cx);
        printf("   %14lld %12.3f %12.3f %8.2f\n", (long long)nz, 1e3 * tl, 1e3 * th, tl / th);
        lj_op *ops[] = { w, In, k, D, J };
        for (int i = 0; i < 5; i++) lj_op_free(&ops[i]);
        free(W), free(B);
    }
    lj_context_free(&ctx);
    return 0;
}
