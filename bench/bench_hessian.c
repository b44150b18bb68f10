/* Hessian-vector products from lj_expr_hessian against hand-written BLAS
 * and against a dense Hessian, as ratios taken in one run:
 *
 *   lsq:    f = ½‖A X B − C‖²_F, H = (B Bᵀ) ⊗ (AᵀA); by hand, with the Gram
 *           matrices G = AᵀA and K = B Bᵀ formed once, H v = vec(G V K)
 *           (two GEMMs);
 *   logreg: f = sum(log(1 + exp(−y ∘ (X w)))) + λ/2·wᵀw,
 *           H = λI + Xᵀ Diag(d) X with d = σ(1 − σ) at the margins; by hand,
 *           with d formed once, H v = λv + Xᵀ(d ∘ (X v)) (two GEMVs).
 *
 * For each: the time to build the lazy H (the Jacobian of the gradient
 * expression, values included), H v lazily, H v by hand, the dense H built
 * by columns (n products H e_j) and the dense GEMV with it. The lazy H is
 * never formed. Usage: bench_hessian [quick]   (quick: smaller sizes) */
#include <cblas.h>
#include <lazyjac.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench.h"

static uint64_t seed = 99;
static double rnd(void)
{
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(seed >> 11) / 9007199254740992.0) * 2 - 1;
}

static void die(lj_context *ctx, const char *what)
{
    fprintf(stderr, "bench_hessian: %s: %s\n", what, ctx ? lj_context_message(ctx) : "out of memory");
    exit(1);
}

static double *randv(int64_t n)
{
    double *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    if (!v) die(NULL, "alloc");
    for (int64_t i = 0; i < n; i++) v[i] = rnd();
    return v;
}

static lj_expr *leaf(lj_context *ctx, lj_symtab *t, const char *name, int64_t r, int64_t c, const double *v, bool var)
{
    lj_expr *e = var ? lj_expr_var(ctx, name, r, c, v) : lj_expr_const(ctx, name, r, c, v);
    if (!e || lj_symtab_add(ctx, t, e) != LJ_OK) die(ctx, name);
    return e;
}

/* f parsed, and its Hessian with respect to x with the time to build it */
static lj_op *hessian_of(lj_context *ctx, lj_symtab *t, const char *text, const lj_expr *x, lj_expr **f, double *t_h)
{
    int64_t pos;
    *f = lj_parse(ctx, text, t, &pos);
    if (!*f) die(ctx, "parse");
    double t0 = now();
    lj_op *H = lj_expr_hessian(ctx, *f, x);
    *t_h = now() - t0;
    if (!H) die(ctx, "hessian");
    return H;
}

static double maxrel(const double *a, const double *b, int64_t n)
{
    double d = 0, s = 1e-300;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / s;
}

/* the dense H by columns, and the GEMV with it */
static void dense_part(lj_context *ctx, const lj_op *H, int64_t n, const double *v, double t_lazy, const double *ref)
{
    double *D = malloc(sizeof *D * (size_t)(n * n)), *e = calloc((size_t)n, sizeof *e), *y = malloc(sizeof *y * (size_t)n);
    if (!D || !e || !y) die(NULL, "dense H");
    double t0 = now();
    for (int64_t j = 0; j < n; j++) {
        e[j] = 1;
        if (lj_op_apply(ctx, H, 0, 1.0, e, 0.0, D + j * n) != LJ_OK) die(ctx, "H e_j");
        e[j] = 0;
    }
    double t_build = now() - t0, t_gemv;
    TIME_BEST(t_gemv, 0.5, cblas_dgemv(CblasColMajor, CblasNoTrans, (int)n, (int)n, 1.0, D, (int)n, v, 1, 0.0, y, 1));
    printf("  dense H by %lld columns: %.3g s (%.0f MB); its GEMV %.3g ms: lazy H v / dense GEMV = %.2f   [max rel. "
           "difference %.1e]\n",
           (long long)n, t_build, 8e-6 * (double)n * (double)n, 1e3 * t_gemv, t_lazy / t_gemv, maxrel(y, ref, n));
    free(D);
    free(e);
    free(y);
}

static void report(lj_context *ctx, const lj_op *H, int64_t n, const double *v, const double *y, const double *yh,
                   double t_lazy, double t_hand, const char *hand)
{
    printf("  H v lazily %.3g ms, by hand (%s) %.3g ms: ratio %.2f   [max rel. difference %.1e]\n", 1e3 * t_lazy, hand,
           1e3 * t_hand, t_lazy / t_hand, maxrel(y, yh, n));
    dense_part(ctx, H, n, v, t_lazy, yh);
}

static void lsq(int quick)
{
    int64_t p = quick ? 120 : 400, m = quick ? 60 : 100, k = quick ? 40 : 60, q = quick ? 90 : 300;
    int64_t n = m * k;
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    double *A = randv(p * m), *X = randv(m * k), *B = randv(k * q), *C = randv(p * q), *v = randv(n);
    lj_expr *e[4] = { leaf(ctx, t, "A", p, m, A, false), leaf(ctx, t, "X", m, k, X, true),
                      leaf(ctx, t, "B", k, q, B, false), leaf(ctx, t, "C", p, q, C, false) };
    lj_expr *f;
    double t_h;
    lj_op *H = hessian_of(ctx, t, "norm2(A*X*B - C)^2/2", e[1], &f, &t_h);
    char *form = lj_op_print(ctx, H, LJ_PRINT_UNICODE);
    printf("lsq: ½‖A X B − C‖², A %lld×%lld, X %lld×%lld, B %lld×%lld: %lld unknowns\n  H = %s, built in %.3g ms\n",
           (long long)p, (long long)m, (long long)m, (long long)k, (long long)k, (long long)q, (long long)n, form,
           1e3 * t_h);
    lj_free(form);
    double *y = malloc(sizeof *y * (size_t)n), *yh = malloc(sizeof *yh * (size_t)n);
    double *G = malloc(sizeof *G * (size_t)(m * m)), *K = malloc(sizeof *K * (size_t)(k * k)),
           *W = malloc(sizeof *W * (size_t)(m * k));
    if (!y || !yh || !G || !K || !W) die(NULL, "alloc");
    cblas_dgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)m, (int)m, (int)p, 1.0, A, (int)p, A, (int)p, 0.0, G, (int)m);
    cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)k, (int)k, (int)q, 1.0, B, (int)k, B, (int)k, 0.0, K, (int)k);
    double t_lazy, t_hand;
    TIME_BEST(t_lazy, 1.0, lj_op_apply(ctx, H, 0, 1.0, v, 0.0, y));
    TIME_BEST(t_hand, 1.0, {
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)m, 1.0, G, (int)m, v, (int)m, 0.0, W,
                    (int)m);
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)k, (int)k, 1.0, W, (int)m, K, (int)k, 0.0,
                    yh, (int)m);
    });
    report(ctx, H, n, v, y, yh, t_lazy, t_hand, "G V K, two GEMMs");
    free(y);
    free(yh);
    free(G);
    free(K);
    free(W);
    free(A);
    free(X);
    free(B);
    free(C);
    free(v);
    lj_op_free(&H);
    lj_expr_free(&f);
    for (int i = 0; i < 4; i++) lj_expr_free(&e[i]);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

static void logreg(int quick)
{
    int64_t N = quick ? 4000 : 20000, d = quick ? 200 : 1000;
    double lambda = 1.0;
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    double *X = randv(N * d), *y = randv(N), *w = randv(d), *v = randv(d);
    for (int64_t i = 0; i < N; i++) y[i] = y[i] >= 0 ? 1 : -1;
    for (int64_t i = 0; i < d; i++) w[i] *= 0.05;
    lj_expr *e[4] = { leaf(ctx, t, "X", N, d, X, false), leaf(ctx, t, "y", N, 1, y, false),
                      leaf(ctx, t, "w", d, 1, w, true), leaf(ctx, t, "lambda", 1, 1, &lambda, false) };
    lj_expr *f;
    double t_h;
    lj_op *H = hessian_of(ctx, t, "sum(log(1 + exp(-y.*(X*w)))) + lambda/2*(w'*w)", e[2], &f, &t_h);
    printf("logreg: sum(log(1 + exp(−y ∘ (X w)))) + λ/2·wᵀw, X %lld×%lld: H built in %.3g ms\n", (long long)N,
           (long long)d, 1e3 * t_h);
    double *yy = malloc(sizeof *yy * (size_t)d), *yh = malloc(sizeof *yh * (size_t)d);
    double *z = malloc(sizeof *z * (size_t)N), *dd = malloc(sizeof *dd * (size_t)N);
    if (!yy || !yh || !z || !dd) die(NULL, "alloc");
    /* d = σ(m)(1 − σ(m)) at the margins m = −y ∘ (X w) (y² = 1) */
    cblas_dgemv(CblasColMajor, CblasNoTrans, (int)N, (int)d, 1.0, X, (int)N, w, 1, 0.0, z, 1);
    for (int64_t i = 0; i < N; i++) {
        double s = 1 / (1 + exp(y[i] * z[i]));
        dd[i] = s * (1 - s);
    }
    double t_lazy, t_hand;
    TIME_BEST(t_lazy, 1.0, lj_op_apply(ctx, H, 0, 1.0, v, 0.0, yy));
    TIME_BEST(t_hand, 1.0, {
        cblas_dgemv(CblasColMajor, CblasNoTrans, (int)N, (int)d, 1.0, X, (int)N, v, 1, 0.0, z, 1);
        for (int64_t i = 0; i < N; i++) z[i] *= dd[i];
        memcpy(yh, v, sizeof *yh * (size_t)d);
        cblas_dgemv(CblasColMajor, CblasTrans, (int)N, (int)d, 1.0, X, (int)N, z, 1, lambda, yh, 1);
    });
    report(ctx, H, d, v, yy, yh, t_lazy, t_hand, "λv + Xᵀ(d ∘ X v), two GEMVs");
    free(yy);
    free(yh);
    free(z);
    free(dd);
    free(X);
    free(y);
    free(w);
    free(v);
    lj_op_free(&H);
    lj_expr_free(&f);
    for (int i = 0; i < 4; i++) lj_expr_free(&e[i]);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

int main(int argc, char **argv)
{
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "quick") == 0) quick = 1;
        else {
            fprintf(stderr, "usage: bench_hessian [quick]\n");
            return 2;
        }
    }
    printf("lazyjac %s Hessian-vector products (best of 5 rounds; ratios > 1 mean lazyjac is slower)\n",
           lj_version_string());
    lsq(quick);
    logreg(quick);
    return 0;
}
