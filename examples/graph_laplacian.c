/* Graph regularisation with a sparse Laplacian: f(X) = tr(X' L X) for the
 * Laplacian L of a k×k grid graph (n = k² nodes, 5n − 4k stored entries)
 * and X n×r. L enters the expression as a sparse constant read in place,
 * declared symmetric (lazyjac checks it): its value, the gradient, derived
 * as the expression 2·L·X and evaluated with one sdmult, and J applied
 * lazily all go through the pattern, never an n×n array.
 *
 *   graph_laplacian [k [r]]     (default k = 1000: a 10^6-node grid, r = 4)
 *
 * Checks the value against X·(L X) computed here with one sdmult, the
 * gradient against (L + L^T) X from two more, J v against the directional
 * derivative, and prints the time and the peak memory against the size of
 * the data (L and X). Exit status 0 when every check holds. */
#include <lazyjac.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double peak_mb(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0; /* kilobytes on Linux */
}

/* The Laplacian D − A of the k×k grid (4-neighbour), CSC, sorted. */
static cholmod_sparse *grid_laplacian(lj_context *ctx, int64_t k)
{
    int64_t n = k * k, nz = 5 * n - 4 * k;
    cholmod_sparse *L = cholmod_l_allocate_sparse((size_t)n, (size_t)n, (size_t)nz, 1, 1, 0, CHOLMOD_REAL,
                                                  lj_context_cholmod(ctx));
    if (!L) return NULL;
    int64_t *p = L->p, *ii = L->i, q = 0;
    double *x = L->x;
    for (int64_t c = 0; c < k; c++)
        for (int64_t r = 0; r < k; r++) {
            int64_t j = r + c * k, deg = (r > 0) + (r < k - 1) + (c > 0) + (c < k - 1);
            p[j] = q;
            /* rows in ascending order: j−k, j−1, j, j+1, j+k */
            if (c > 0) ii[q] = j - k, x[q++] = -1;
            if (r > 0) ii[q] = j - 1, x[q++] = -1;
            ii[q] = j, x[q++] = deg;
            if (r < k - 1) ii[q] = j + 1, x[q++] = -1;
            if (c < k - 1) ii[q] = j + k, x[q++] = -1;
        }
    p[n] = q;
    return L;
}

static int fail(lj_context *ctx, const char *what)
{
    fprintf(stderr, "graph_laplacian: %s: %s\n", what, lj_context_message(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    int64_t k = argc > 1 ? atoll(argv[1]) : 1000, r = argc > 2 ? atoll(argv[2]) : 4;
    if (k < 2 || r < 1) {
        fprintf(stderr, "usage: graph_laplacian [k >= 2 [r >= 1]]\n");
        return 2;
    }
    int64_t n = k * k;
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    double t0 = now(), mb0 = peak_mb();
    cholmod_sparse *Ls = grid_laplacian(ctx, k);
    double *X = malloc(sizeof *X * (size_t)(n * r)), *LX = malloc(sizeof *LX * (size_t)(n * r));
    double *G = malloc(sizeof *G * (size_t)(n * r)), *V = malloc(sizeof *V * (size_t)(n * r));
    if (!Ls || !X || !LX || !G || !V) return fail(ctx, "allocating the data");
    uint64_t s = 7;
    for (int64_t i = 0; i < n * r; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        X[i] = (double)(s >> 11) / 9007199254740992.0 - 0.5;
        V[i] = sin((double)i);
    }
    double data_mb = (16.0 * (double)((int64_t *)Ls->p)[n] + 8.0 * (double)n + 8.0 * (double)(n * r)) / 1048576.0;

    /* the expression: L borrowed in place, X a variable */
    lj_expr *L = lj_expr_const_sparse_borrow(ctx, "L", Ls), *Xv = lj_expr_var(ctx, "X", n, r, X);
    lj_expr *Xt = lj_expr_transpose(ctx, Xv), *LXe = lj_expr_mul(ctx, L, Xv);
    lj_expr *M = lj_expr_mul(ctx, Xt, LXe), *f = lj_expr_trace(ctx, M);
    if (!f) return fail(ctx, "building tr(X'*L*X)");
    if (lj_expr_declare_symmetric(ctx, L) != LJ_OK) return fail(ctx, "declaring L symmetric");
    lj_expr *ge = lj_expr_gradient_expr(ctx, f, Xv);
    char *gform = ge ? lj_expr_print_math(ctx, ge, Xv, LJ_PRINT_UNICODE) : NULL;
    lj_expr_free(&ge);
    if (!gform) return fail(ctx, "the gradient as an expression");
    double t1 = now();
    double *fv = NULL;
    int64_t fr, fc;
    if (lj_expr_eval(ctx, f, &fr, &fc, &fv) != LJ_OK) return fail(ctx, "value");
    double t2 = now();
    if (lj_expr_gradient(ctx, f, Xv, G) != LJ_OK) return fail(ctx, "gradient");
    double t3 = now();
    lj_op *J = lj_expr_jacobian(ctx, f, Xv);
    double jv;
    if (!J || lj_op_apply(ctx, J, 0, 1.0, V, 0.0, &jv) != LJ_OK) return fail(ctx, "J v");
    double t4 = now();
    char *form = lj_op_print(ctx, J, LJ_PRINT_UNICODE);

    /* references: L X, X·(L X), (L + L^T) X and <G, V> with sdmult */
    cholmod_dense Xd = { .nrow = (size_t)n, .ncol = (size_t)r, .nzmax = (size_t)(n * r), .d = (size_t)n, .x = X,
                         .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
    cholmod_dense Yd = Xd;
    Yd.x = LX;
    double one[2] = { 1, 0 }, zero[2] = { 0, 0 };
    cholmod_l_sdmult(Ls, 0, one, zero, &Xd, &Yd, cc);
    double ref = 0, gerr = 0, gmax = 0, dref = 0;
    for (int64_t i = 0; i < n * r; i++) ref += X[i] * LX[i];
    cholmod_l_sdmult(Ls, 1, one, one, &Xd, &Yd, cc); /* LX += L^T X */
    for (int64_t i = 0; i < n * r; i++) {
        gerr = fmax(gerr, fabs(G[i] - LX[i]));
        gmax = fmax(gmax, fabs(LX[i]));
        dref += LX[i] * V[i];
    }
    double verr = fabs(fv[0] - ref) / fmax(1.0, fabs(ref)), grel = gerr / fmax(1.0, gmax);
    double jerr = fabs(jv - dref) / fmax(1.0, fabs(dref));
    printf("tr(X'*L*X): %lld-node grid, X %lldx%lld, L with %lld stored entries\n", (long long)n, (long long)n,
           (long long)r, (long long)((int64_t *)Ls->p)[n]);
    printf("gradient = %s\n", gform);
    printf("J = %s\n", form ? form : "?");
    printf("value %.6e (relative error %.1e), gradient (relative error %.1e against (L + L^T) X), J v (%.1e)\n",
           fv[0], verr, grel, jerr);
    printf("time: value %.3f s, gradient %.3f s, J and J v %.3f s (setup %.3f s)\n", t2 - t1, t3 - t2, t4 - t3,
           t1 - t0);
    printf("peak memory %.0f MB for %.0f MB of data (L and X): %.2fx\n", peak_mb() - mb0, data_mb,
           (peak_mb() - mb0) / data_mb);
    bool ok = verr < 1e-10 && grel < 1e-10 && jerr < 1e-10;
    printf("%s\n", ok ? "checks: ok" : "checks: FAILED");
    lj_free(form);
    lj_free(gform);
    lj_free(fv);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_expr_free(&M);
    lj_expr_free(&LXe);
    lj_expr_free(&Xt);
    lj_expr_free(&Xv);
    lj_expr_free(&L);
    lj_sparse_free(ctx, &Ls);
    free(X);
    free(LX);
    free(G);
    free(V);
    lj_context_free(&ctx);
    return ok ? 0 : 1;
}
