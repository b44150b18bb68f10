/* Newton's method for L2-regularised logistic regression
 *
 *     min_w  f(w) = sum(log(1 + exp(-y .* (X w)))) + λ/2 · wᵀw,
 *
 * X n×d, labels y in {−1, +1}. The gradient is derived symbolically once
 * (lj_expr_gradient_expr, printed as a formula) and the Hessian is its
 * Jacobian (lj_expr_hessian), rebuilt at every iterate as a lazy operator
 * of the form λI + Xᵀ·Diag(…)·X. The Newton step H p = −∇f is solved twice
 * from the same start:
 *   Newton-CG:  conjugate gradients on Hessian-vector products (H is
 *               applied, never formed; two passes over X per product);
 *   assembled:  H materialised exactly (lj_op_to_sparse) and factorised by
 *               CHOLMOD's Cholesky.
 * Both print ‖∇f‖ per iteration (quadratic convergence: the exponent
 * doubles) and must reach the same w.
 *
 *   newton_logreg [n d λ]   (default 2000 50 1)
 *
 * Exit status 0 when both runs converge to ‖∇f‖ < 1e-9 and agree. */
#include <lazyjac.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fail(lj_context *ctx, const char *what)
{
    fprintf(stderr, "newton_logreg: %s: %s\n", what, ctx ? lj_context_message(ctx) : "out of memory");
    exit(1);
}

static uint64_t rng = 12345;
static double unif(void) /* (0, 1) */
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return ((double)(rng >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(void) { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }

static double norm(const double *v, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += v[i] * v[i];
    return sqrt(s);
}

/* H p = −g by conjugate gradients on H·v (H symmetric positive definite) */
static int cg(lj_context *ctx, const lj_op *H, const double *g, double *p, int64_t d, double tol)
{
    double *r = malloc(sizeof *r * (size_t)d), *q = malloc(sizeof *q * (size_t)d), *Hq = malloc(sizeof *Hq * (size_t)d);
    if (!r || !q || !Hq) fail(NULL, "cg");
    for (int64_t i = 0; i < d; i++) {
        p[i] = 0;
        r[i] = -g[i];
        q[i] = r[i];
    }
    double rr = norm(r, d) * norm(r, d), stop = tol * tol * rr;
    int it = 0;
    for (; it < 10 * d && rr > stop; it++) {
        if (lj_op_apply(ctx, H, 0, 1.0, q, 0.0, Hq) != LJ_OK) fail(ctx, "H·v");
        double qHq = 0;
        for (int64_t i = 0; i < d; i++) qHq += q[i] * Hq[i];
        double a = rr / qHq, rr2 = 0;
        for (int64_t i = 0; i < d; i++) {
            p[i] += a * q[i];
            r[i] -= a * Hq[i];
            rr2 += r[i] * r[i];
        }
        for (int64_t i = 0; i < d; i++) q[i] = r[i] + (rr2 / rr) * q[i];
        rr = rr2;
    }
    free(r);
    free(q);
    free(Hq);
    return it;
}

/* H p = −g with H materialised and factorised by CHOLMOD */
static void direct(lj_context *ctx, const lj_op *H, const double *g, double *p, int64_t d)
{
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *S = lj_op_to_sparse(ctx, H);
    if (!S) fail(ctx, "materialise H");
    S->stype = 1; /* symmetric: CHOLMOD reads the upper triangle */
    cholmod_factor *L = cholmod_l_analyze(S, cc);
    if (!L || !cholmod_l_factorize(S, L, cc) || cc->status != CHOLMOD_OK) fail(ctx, "Cholesky of H");
    double *mg = malloc(sizeof *mg * (size_t)d);
    if (!mg) fail(NULL, "direct");
    for (int64_t i = 0; i < d; i++) mg[i] = -g[i];
    cholmod_dense b = { .nrow = (size_t)d, .ncol = 1, .nzmax = (size_t)d, .d = (size_t)d, .x = mg,
                        .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
    cholmod_dense *x = cholmod_l_solve(CHOLMOD_A, L, &b, cc);
    if (!x) fail(ctx, "cholmod_l_solve");
    memcpy(p, x->x, sizeof *p * (size_t)d);
    cholmod_l_free_dense(&x, cc);
    cholmod_l_free_factor(&L, cc);
    lj_sparse_free(ctx, &S);
    free(mg);
}

/* Newton from w = 0; returns the number of iterations, w in place */
static int newton(lj_context *ctx, lj_expr *f, lj_expr *g, lj_expr *w, double *wv, int64_t d, bool assembled)
{
    double *p = malloc(sizeof *p * (size_t)d);
    if (!p) fail(NULL, "newton");
    memset(wv, 0, sizeof *wv * (size_t)d);
    printf("%s:\n", assembled ? "assembled (H materialised, CHOLMOD Cholesky)" : "Newton-CG (H·v only)");
    int k = 0;
    for (;; k++) {
        if (lj_expr_set_value(ctx, w, wv) != LJ_OK) fail(ctx, "set w");
        int64_t r, c;
        double *gv = NULL, *fv = NULL;
        if (lj_expr_eval(ctx, g, &r, &c, &gv) != LJ_OK || lj_expr_eval(ctx, f, &r, &c, &fv) != LJ_OK)
            fail(ctx, "evaluate");
        double gn = norm(gv, d);
        printf("  iteration %d: f = %.12f, ‖∇f‖ = %.3e", k, fv[0], gn);
        lj_free(fv);
        if (gn < 1e-9 || k == 30) {
            printf("\n");
            lj_free(gv);
            break;
        }
        double t0 = now();
        lj_op *H = lj_expr_hessian(ctx, f, w);
        if (!H) fail(ctx, "Hessian");
        int inner = 0;
        if (assembled) direct(ctx, H, gv, p, d);
        else inner = cg(ctx, H, gv, p, d, fmin(0.1, gn)); /* forcing term: superlinear → quadratic */
        for (int64_t i = 0; i < d; i++) wv[i] += p[i];
        if (assembled) printf("   (%.1f ms)\n", 1e3 * (now() - t0));
        else printf("   (%d CG steps, %.1f ms)\n", inner, 1e3 * (now() - t0));
        lj_op_free(&H);
        lj_free(gv);
    }
    free(p);
    return k;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 2000, d = argc > 2 ? atoll(argv[2]) : 50;
    double lambda = argc > 3 ? atof(argv[3]) : 1.0;
    if (n < 1 || d < 1 || !(lambda > 0)) {
        fprintf(stderr, "usage: newton_logreg [n d λ] (n, d ≥ 1, λ > 0)\n");
        return 2;
    }
    lj_context *ctx = lj_context_new();
    if (!ctx) fail(NULL, "context");
    /* planted data: y = sign(X w0 + noise) */
    double *X = malloc(sizeof *X * (size_t)(n * d)), *y = malloc(sizeof *y * (size_t)n);
    double *w0 = malloc(sizeof *w0 * (size_t)d), *wa = calloc((size_t)d, sizeof *wa), *wb = calloc((size_t)d, sizeof *wb);
    if (!X || !y || !w0 || !wa || !wb) fail(NULL, "data");
    for (int64_t i = 0; i < n * d; i++) X[i] = gauss() / sqrt((double)d);
    for (int64_t j = 0; j < d; j++) w0[j] = 3 * gauss();
    for (int64_t i = 0; i < n; i++) {
        double s = 0.5 * gauss();
        for (int64_t j = 0; j < d; j++) s += X[i + j * n] * w0[j];
        y[i] = s >= 0 ? 1 : -1;
    }
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *Xe = lj_expr_const(ctx, "X", n, d, X), *ye = lj_expr_const(ctx, "y", n, 1, y);
    lj_expr *le = lj_expr_const(ctx, "lambda", 1, 1, &lambda), *w = lj_expr_var(ctx, "w", d, 1, wa);
    if (!t || !Xe || !ye || !le || !w || lj_symtab_add(ctx, t, Xe) != LJ_OK || lj_symtab_add(ctx, t, ye) != LJ_OK ||
        lj_symtab_add(ctx, t, le) != LJ_OK || lj_symtab_add(ctx, t, w) != LJ_OK)
        fail(ctx, "declare");
    const char *text = "sum(log(1 + exp(-y.*(X*w)))) + lambda/2*(w'*w)";
    int64_t pos;
    lj_expr *f = lj_parse(ctx, text, t, &pos);
    if (!f) fail(ctx, "parse");
    lj_expr *g = lj_expr_gradient_expr(ctx, f, w);
    if (!g) fail(ctx, "gradient");
    char *gs = lj_expr_print_math(ctx, g, w, LJ_PRINT_UNICODE);
    lj_op *H0 = lj_expr_hessian(ctx, f, w);
    char *hs = H0 ? lj_op_print(ctx, H0, LJ_PRINT_UNICODE) : NULL;
    if (!gs || !hs) fail(ctx, "print");
    printf("f(w) = %s,  X %lld×%lld, λ = %g\n∇f = %s\nH = %s\n\n", text, (long long)n, (long long)d, lambda, gs, hs);
    lj_free(gs);
    lj_free(hs);
    lj_op_free(&H0);
    double t0 = now();
    int ka = newton(ctx, f, g, w, wa, d, false);
    double ta = now() - t0;
    t0 = now();
    int kb = newton(ctx, f, g, w, wb, d, true);
    double tb = now() - t0;
    double diff = 0, scale = fmax(1, norm(wa, d));
    for (int64_t j = 0; j < d; j++) diff = fmax(diff, fabs(wa[j] - wb[j]));
    printf("\nNewton-CG: %d iterations, %.2f s; assembled: %d iterations, %.2f s; max |w_CG − w_Cholesky| = %.1e\n",
           ka, ta, kb, tb, diff);
    bool ok = ka < 30 && kb < 30 && diff < 1e-8 * scale;
    printf("%s\n", ok ? "converged: both runs reach ‖∇f‖ < 1e-9 at the same w" : "FAILED");
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_expr_free(&Xe);
    lj_expr_free(&ye);
    lj_expr_free(&le);
    lj_expr_free(&w);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
    free(X);
    free(y);
    free(w0);
    free(wa);
    free(wb);
    return ok ? 0 : 1;
}
