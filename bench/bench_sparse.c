/* Sparse-data benchmarks, each printed as ratios measured in this one run:
 *   mc:  the matrix-completion Jacobian J = d vec(M .* (U*V')) / d[U, V]
 *        (m = 100000, n = 10000, rank 8, 10 observations a row: 10^6
 *        entries), J x and J^T w against a hand-written loop over the
 *        observed entries computing the same numbers;
 *   lap: the gradient of tr(X'*L*X), L the Laplacian of a 1000×1000 grid
 *        (10^6 nodes), X 10^6×4, against one cholmod_l_sdmult L·X.
 *   mono: monomial factors round a sparse leaf S (10 entries a column, at
 *        rows spread over all of S's; 10^7 entries): Diag·S, P·S·Diag
 *        (rows moved and sorted again) and S·Q (columns moved)
 *        materialised, against a hand-written pass that writes the same
 *        CSC into arrays allocated before, and against the product of the
 *        factors' matrices through cholmod_l_ssmult (sorted), with the
 *        peak memory of the first materialisation against the result's.
 * Each part runs in its own process (this program started again with the
 * part's name), so that its peak memory is its own; it is printed against
 * the size of the part's data.
 * Usage: bench_sparse [quick] [mc|lap|mono]   (quick: a tenth of the sizes;
 * a part named: that part alone) */
#include <lazyjac.h>
#include <malloc.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#include "bench.h"

/* "VmRSS" (resident now) or "VmHWM" (the peak) of this process, in MB */
static double status_mb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') kb = atof(line + n + 1);
    if (f) fclose(f);
    return kb / 1024.0;
}

/* Peak memory of one computation: the data (the caller's arrays, allocated
 * and written before) plus the most lazyjac held at once beyond it, which is
 * the peak resident size during the computation (reset before it through
 * /proc/self/clear_refs) less the resident size when it began. */
typedef struct {
    double start;
} peak_probe;

static void probe_start(peak_probe *p)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f || fputs("5", f) < 0) {
        fprintf(stderr, "bench_sparse: cannot reset the peak resident size (/proc/self/clear_refs)\n");
        exit(1);
    }
    fclose(f);
    p->start = status_mb("VmRSS");
}

static void probe_print(const peak_probe *p, const char *part, const char *what, double data_mb, const char *data)
{
    double extra = status_mb("VmHWM") - p->start;
    if (extra < 0) extra = 0;
    printf("%s: peak memory of %s: %.0f MB of data (%s) + %.0f MB held by lazyjac: %.2f× the data (goal <= 3)\n",
           part, what, data_mb, data, extra, (data_mb + extra) / data_mb);
}

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void check(lj_context *ctx, int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "bench_sparse: %s: %s\n", what, lj_context_message(ctx));
        exit(1);
    }
}

static double maxdiff(const double *a, const double *b, int64_t n)
{
    double d = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / (s > 0 ? s : 1);
}

/* The hand-written loops over the observed entries, U and V column-major. */
typedef struct {
    int64_t m, n, r;
    const SuiteSparse_long *mp, *mi;
    const double *U, *V;
} hand;

/* y_q = dU(i,:)·V(j,:) + U(i,:)·dV(j,:) for the stored (i, j) */
static void hand_forward(const hand *h, const double *x, double *y)
{
    int64_t m = h->m, n = h->n, r = h->r;
    const double *dU = x, *dV = x + m * r;
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = h->mp[j]; q < h->mp[j + 1]; q++) {
            int64_t i = h->mi[q];
            double s = 0;
            for (int64_t l = 0; l < r; l++) s += dU[i + l * m] * h->V[j + l * n] + h->U[i + l * m] * dV[j + l * n];
            y[q] = s;
        }
}

/* gU(i,:) += w_q V(j,:), gV(j,:) += w_q U(i,:) */
static void hand_backward(const hand *h, const double *w, double *g)
{
    int64_t m = h->m, n = h->n, r = h->r;
    memset(g, 0, sizeof(double) * (size_t)((m + n) * r));
    double *gU = g, *gV = g + m * r;
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = h->mp[j]; q < h->mp[j + 1]; q++) {
            int64_t i = h->mi[q];
            for (int64_t l = 0; l < r; l++) {
                gU[i + l * m] += w[q] * h->V[j + l * n];
                gV[j + l * n] += w[q] * h->U[i + l * m];
            }
        }
}

static int part_mc(int quick)
{
    int64_t m = quick ? 10000 : 100000, n = quick ? 1000 : 10000, r = 8, k = 10;
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    unsigned long long seed = 7;
    cholmod_triplet *T = cholmod_l_allocate_triplet((size_t)m, (size_t)n, (size_t)(m * k), 0, CHOLMOD_REAL, cc);
    check(ctx, T != NULL, "triplet");
    SuiteSparse_long *ti = T->i, *tj = T->j;
    for (int64_t i = 0, q = 0; i < m; i++)
        for (int64_t c = 0; c < k; c++, q++) {
            ti[q] = i;
            tj[q] = (SuiteSparse_long)(urand(&seed) * (double)n) % n;
            ((double *)T->x)[q] = 1.0;
        }
    T->nnz = (size_t)(m * k);
    cholmod_sparse *M = cholmod_l_triplet_to_sparse(T, (size_t)(m * k), cc);
    cholmod_l_free_triplet(&T, cc);
    check(ctx, M != NULL, "triplet_to_sparse");
    const SuiteSparse_long *mp = M->p, *mi = M->i;
    int64_t nz = mp[n], nv = (m + n) * r;
    for (int64_t q = 0; q < nz; q++) ((double *)M->x)[q] = 1.0;
    double *U = malloc(sizeof(double) * (size_t)(m * r)), *V = malloc(sizeof(double) * (size_t)(n * r));
    for (int64_t i = 0; i < m * r; i++) U[i] = urand(&seed) - 0.5;
    for (int64_t i = 0; i < n * r; i++) V[i] = urand(&seed) - 0.5;

    lj_expr *Ue = lj_expr_var(ctx, "U", m, r, U), *Ve = lj_expr_var(ctx, "V", n, r, V);
    lj_expr *Me = lj_expr_const_sparse_borrow(ctx, "M", M), *Vt = lj_expr_transpose(ctx, Ve);
    lj_expr *UV = lj_expr_mul(ctx, Ue, Vt), *F = lj_expr_hadamard(ctx, Me, UV);
    check(ctx, F && lj_expr_nvalues(F) == nz, "expression");
    const lj_expr *vars[2] = { Ue, Ve };
    double *x = malloc(sizeof(double) * (size_t)nv), *w = malloc(sizeof(double) * (size_t)nz);
    double *y = calloc((size_t)nz, sizeof(double)), *yh = calloc((size_t)nz, sizeof(double));
    double *g = calloc((size_t)nv, sizeof(double)), *gh = calloc((size_t)nv, sizeof(double));
    for (int64_t i = 0; i < nv; i++) x[i] = urand(&seed) - 0.5;
    for (int64_t i = 0; i < nz; i++) w[i] = urand(&seed) - 0.5;
    memset(y, 1, sizeof(double) * (size_t)nz), memset(yh, 1, sizeof(double) * (size_t)nz);
    memset(g, 1, sizeof(double) * (size_t)nv), memset(gh, 1, sizeof(double) * (size_t)nv);
    /* the data: M's pattern and values, U, V, x and w in, y and g out */
    double data_mb = (16.0 * (double)nz + 8.0 * (double)(n + 1) + 8.0 * (double)(m + n) * (double)r +
                      16.0 * (double)nv + 16.0 * (double)nz) / 1048576.0;
    peak_probe probe;
    probe_start(&probe);
    double tj0 = now();
    lj_op *J = lj_expr_jacobian_n(ctx, F, 2, vars);
    double tjac = now() - tj0;
    check(ctx, J != NULL, "jacobian");
    check(ctx, lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) == LJ_OK, "apply");
    check(ctx, lj_op_apply(ctx, J, 1, 1.0, w, 0.0, g) == LJ_OK, "apply_t");
    probe_print(&probe, "mc", "building J and one J x and J^T w", data_mb, "pattern, U, V, x, w, y, g");
    char *pr = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    printf("mc: J = %s, %lld×%lld, %lld observed entries of %lld×%lld, rank %lld (built in %.3f s)\n", pr,
           (long long)lj_op_rows(J), (long long)lj_op_cols(J), (long long)nz, (long long)m, (long long)n,
           (long long)r, tjac);
    lj_free(pr);

    hand hp = { m, n, r, mp, mi, U, V };
    double t_lazy, t_hand, t_lazyt, t_handt;
    TIME_BEST(t_lazy, 2.0, check(ctx, lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) == LJ_OK, "apply"));
    /* the hand loop: y_q = dU(i,:)·V(j,:) + U(i,:)·dV(j,:) over the stored (i, j) */
    TIME_BEST(t_hand, 2.0, hand_forward(&hp, x, yh));
    TIME_BEST(t_lazyt, 2.0, check(ctx, lj_op_apply(ctx, J, 1, 1.0, w, 0.0, g) == LJ_OK, "apply_t"));
    TIME_BEST(t_handt, 2.0, hand_backward(&hp, w, gh));
    printf("mc: J x   %.2f ms, hand loop %.2f ms: ratio %.2f (goal <= 1.3)   [max rel. difference %.1e]\n",
           1e3 * t_lazy, 1e3 * t_hand, t_lazy / t_hand, maxdiff(y, yh, nz));
    printf("mc: J^T w %.2f ms, hand loop %.2f ms: ratio %.2f (goal <= 1.3)   [max rel. difference %.1e]\n",
           1e3 * t_lazyt, 1e3 * t_handt, t_lazyt / t_handt, maxdiff(g, gh, nv));
    lj_op_free(&J);
    lj_expr *all[] = { Ue, Ve, Me, Vt, UV, F };
    for (int i = 0; i < 6; i++) lj_expr_free(&all[i]);
    cholmod_l_free_sparse(&M, cc);
    free(U); free(V); free(x); free(w); free(y); free(yh); free(g); free(gh);
    lj_context_free(&ctx);
    return 0;
}

static int part_lap(int quick)
{
    int64_t side = quick ? 300 : 1000, N = side * side, c = 4;
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    /* the 5-point grid Laplacian, built column by column (rows ascending) */
    cholmod_sparse *L = cholmod_l_allocate_sparse((size_t)N, (size_t)N, (size_t)(5 * N), 1, 1, 0, CHOLMOD_REAL, cc);
    check(ctx, L != NULL, "allocate_sparse");
    SuiteSparse_long *lp = L->p, *li = L->i, q = 0;
    double *lx = L->x;
    for (int64_t j = 0; j < N; j++) {
        int64_t a = j % side, b = j / side, deg = (a > 0) + (a < side - 1) + (b > 0) + (b < side - 1);
        lp[j] = q;
        if (b > 0) li[q] = j - side, lx[q++] = -1;
        if (a > 0) li[q] = j - 1, lx[q++] = -1;
        li[q] = j, lx[q++] = (double)deg;
        if (a < side - 1) li[q] = j + 1, lx[q++] = -1;
        if (b < side - 1) li[q] = j + side, lx[q++] = -1;
    }
    lp[N] = q;
    unsigned long long seed = 11;
    double *X = malloc(sizeof(double) * (size_t)(N * c)), *G = calloc((size_t)(N * c), sizeof(double));
    double *LX = calloc((size_t)(N * c), sizeof(double));
    for (int64_t i = 0; i < N * c; i++) X[i] = urand(&seed) - 0.5;
    memset(G, 1, sizeof(double) * (size_t)(N * c)), memset(LX, 1, sizeof(double) * (size_t)(N * c));
    /* the data: L, X in and G out */
    double data_mb = (16.0 * (double)q + 8.0 * (double)(N + 1) + 16.0 * (double)(N * c)) / 1048576.0;
    /* L is read in place, and declared symmetric (checked), so that the
     * gradient (L^T + L)·X is 2·L·X */
    lj_expr *Le = lj_expr_const_sparse_borrow(ctx, "L", L), *Xe = lj_expr_var(ctx, "X", N, c, X);
    check(ctx, lj_expr_declare_symmetric(ctx, Le) == LJ_OK, "declare_symmetric");
    lj_expr *Xt = lj_expr_transpose(ctx, Xe), *LXe = lj_expr_mul(ctx, Le, Xe), *XLX = lj_expr_mul(ctx, Xt, LXe);
    lj_expr *f = lj_expr_trace(ctx, XLX);
    check(ctx, f != NULL, "expression");
    peak_probe probe;
    probe_start(&probe);
    check(ctx, lj_expr_gradient(ctx, f, Xe, G) == LJ_OK, "gradient");
    probe_print(&probe, "lap", "lj_expr_gradient", data_mb, "L, X, G");
    double t_grad, t_sd;
    TIME_BEST(t_grad, 3.0, check(ctx, lj_expr_gradient(ctx, f, Xe, G) == LJ_OK, "gradient"));
    double one[2] = { 1, 0 }, zero[2] = { 0, 0 };
    cholmod_dense Xd = { .nrow = (size_t)N, .ncol = (size_t)c, .nzmax = (size_t)(N * c), .d = (size_t)N, .x = X,
                         .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
    cholmod_dense Yd = Xd;
    Yd.x = LX;
    TIME_BEST(t_sd, 3.0, cholmod_l_sdmult(L, 0, one, zero, &Xd, &Yd, cc));
    for (int64_t i = 0; i < N * c; i++) LX[i] *= 2; /* (L + L^T) X = 2 L X: L is symmetric */
    printf("lap: gradient of tr(X'*L*X), %lld nodes, X %lld×%lld: %.1f ms, one cholmod_l_sdmult %.1f ms: ratio %.2f "
           "(goal <= 1.2)   [max rel. difference %.1e]\n", (long long)N, (long long)N, (long long)c, 1e3 * t_grad,
           1e3 * t_sd, t_grad / t_sd, maxdiff(G, LX, N * c));
    /* the gradient derived as an expression once, 2·L·X, then evaluated */
    lj_expr *ge = lj_expr_gradient_expr(ctx, f, Xe);
    check(ctx, ge != NULL, "gradient_expr");
    char *gform = lj_expr_print_math(ctx, ge, Xe, LJ_PRINT_UNICODE);
    double t_ge, *GE = NULL;
    int64_t gr, gc;
    TIME_BEST(t_ge, 3.0, {
        lj_free(GE);
        check(ctx, lj_expr_eval(ctx, ge, &gr, &gc, &GE) == LJ_OK, "evaluate the gradient expression");
    });
    printf("lap: the gradient as an expression, %s, evaluated: %.1f ms: ratio %.2f to one sdmult   [max rel. "
           "difference %.1e]\n", gform ? gform : "?", 1e3 * t_ge, t_ge / t_sd, maxdiff(GE, LX, N * c));
    lj_free(GE);
    lj_free(gform);
    lj_expr_free(&ge);
    lj_expr *all[] = { Le, Xe, Xt, LXe, XLX, f };
    for (int i = 0; i < 6; i++) lj_expr_free(&all[i]);
    cholmod_l_free_sparse(&L, cc);
    free(X); free(G); free(LX);
    lj_context_free(&ctx);
    return 0;
}

/* The hand-written pass of part mono: the result of case t (0: Diag·S,
 * 1: P·S·Diag, 2: S·Q) written into R's arrays, each moved column sorted
 * by insertion (10 entries). */
static void mono_hand(int t, const cholmod_sparse *S, const double *d, const int64_t *rinv, const int64_t *cfrom,
                      cholmod_sparse *R)
{
    const int64_t n = (int64_t)S->ncol;
    const SuiteSparse_long *sp = S->p, *si = S->i;
    const double *sx = S->x;
    SuiteSparse_long *p = R->p, *ii = R->i, q = 0;
    double *x = R->x;
    for (int64_t c = 0; c < n; c++) {
        const int64_t f = t == 2 ? cfrom[c] : c, b = q;
        p[c] = q;
        for (SuiteSparse_long k = sp[f]; k < sp[f + 1]; k++, q++) {
            const int64_t r = si[k];
            ii[q] = t == 1 ? rinv[r] : r;
            x[q] = t == 0 ? d[r] * sx[k] : t == 1 ? sx[k] * d[c] : sx[k];
        }
        if (t == 1)
            for (int64_t a = b + 1; a < q; a++) {
                SuiteSparse_long r = ii[a], e = a;
                double v = x[a];
                for (; e > b && ii[e - 1] > r; e--) ii[e] = ii[e - 1], x[e] = x[e - 1];
                ii[e] = r, x[e] = v;
            }
    }
    p[n] = q;
}

/* The product of the factors' matrices through cholmod_l_ssmult, sorted */
static cholmod_sparse *mono_ssmult(lj_context *ctx, int nf, const lj_op *const *f)
{
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *R = lj_op_to_sparse(ctx, f[0]);
    for (int k = 1; k < nf && R; k++) {
        cholmod_sparse *F = lj_op_to_sparse(ctx, f[k]), *T = F ? cholmod_l_ssmult(R, F, 0, 1, 1, cc) : NULL;
        lj_sparse_free(ctx, &F);
        lj_sparse_free(ctx, &R);
        R = T;
    }
    check(ctx, R != NULL, "cholmod_l_ssmult");
    return R;
}

static int part_mono(int quick)
{
    const int64_t n = quick ? 100000 : 1000000, per = 10;
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *S = cholmod_l_allocate_sparse((size_t)n, (size_t)n, (size_t)(n * per), 1, 1, 0, CHOLMOD_REAL, cc);
    check(ctx, S != NULL, "allocate_sparse");
    SuiteSparse_long *sp = S->p, *si = S->i;
    double *sx = S->x, *d = malloc(sizeof *d * (size_t)n);
    int64_t *perm = malloc(sizeof *perm * (size_t)n), *qperm = malloc(sizeof *qperm * (size_t)n);
    int64_t *rinv = malloc(sizeof *rinv * (size_t)n), *cfrom = malloc(sizeof *cfrom * (size_t)n);
    unsigned long long seed = 17;
    for (int64_t c = 0; c < n; c++) {
        sp[c] = c * per;
        for (int64_t k = 0; k < per; k++) { /* rows ascending, spread over all n */
            si[c * per + k] = k * (n / per) + (int64_t)(urand(&seed) * (double)(n / per));
            sx[c * per + k] = urand(&seed) - 0.5;
        }
        d[c] = 1.0 + urand(&seed);
        perm[c] = c, qperm[c] = c;
    }
    sp[n] = n * per;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(urand(&seed) * (double)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        j = (int64_t)(urand(&seed) * (double)(i + 1)), t = qperm[i];
        qperm[i] = qperm[j], qperm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) rinv[perm[i]] = i, cfrom[qperm[i]] = i;
    lj_op *So = lj_op_sparse(ctx, S, "S"), *D = lj_op_diag(ctx, n, d, "d"), *P = lj_op_perm(ctx, n, perm, "P");
    lj_op *Q = lj_op_perm(ctx, n, qperm, "Q");
    check(ctx, So && D && P && Q, "operators");
    const struct { const char *what; int nf; const lj_op *f[3]; } cases[3] = {
        { "Diag·S", 2, { D, So } }, { "P·S·Diag", 3, { P, So, D } }, { "S·Q", 2, { So, Q } } };
    const double out_mb = 16.0 * (double)(n * per) / 1048576.0 + 8.0 * (double)(n + 1) / 1048576.0;
    cholmod_sparse *H = cholmod_l_allocate_sparse((size_t)n, (size_t)n, (size_t)(n * per), 1, 1, 0, CHOLMOD_REAL, cc);
    check(ctx, H != NULL, "allocate_sparse");
    for (int t = 0; t < 3; t++) {
        lj_op *J = lj_op_compose(ctx, cases[t].nf, cases[t].f);
        check(ctx, J != NULL, "compose");
        /* the first materialisation in a context with no arrays kept; large
         * blocks from mmap and back to the system when freed, so that each
         * case's peak is its own (glibc otherwise raises its threshold after
         * the first large free, and keeps later blocks resident) */
        mallopt(M_MMAP_THRESHOLD, 1 << 20);
        malloc_trim(0);
        lj_context *fresh = lj_context_new();
        peak_probe probe;
        probe_start(&probe);
        cholmod_sparse *M = lj_op_to_sparse(fresh, J);
        double extra = status_mb("VmHWM") - probe.start;
        check(fresh, M != NULL, "to_sparse");
        mono_hand(t, S, d, rinv, cfrom, H);
        double diff = 0;
        const SuiteSparse_long *mp = M->p, *mi = M->i, *hp = H->p, *hi = H->i;
        for (int64_t q = 0; q < n * per; q++) diff = fmax(diff, mi[q] == hi[q] ? fabs(((double *)M->x)[q] - ((double *)H->x)[q]) : 1e300);
        for (int64_t c = 0; c <= n; c++) diff = mp[c] == hp[c] ? diff : 1e300;
        lj_sparse_free(fresh, &M);
        lj_context_free(&fresh);
        printf("mono: %s, %lld entries: peak memory %.0f MB for a %.0f MB result: %.2f× (goal <= 1.3)   [max "
               "difference from the hand-written pass %.1e]\n", cases[t].what, (long long)(n * per), extra, out_mb,
               extra / out_mb, diff);
        /* timed as glibc runs once large blocks have been freed: its
         * threshold raised to its most, 32 MiB */
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        double t_lj, t_hand, t_ss = now();
        M = mono_ssmult(ctx, cases[t].nf, cases[t].f); /* the slowest by far: timed once */
        t_ss = now() - t_ss;
        lj_sparse_free(ctx, &M);
        TIME_BEST2(t_lj, t_hand, quick ? 2.0 : 6.0,
                   { M = lj_op_to_sparse(ctx, J); check(ctx, M != NULL, "to_sparse"); lj_sparse_free(ctx, &M); },
                   mono_hand(t, S, d, rinv, cfrom, H));
        printf("mono: %s: %.1f ms (%.1f ns an entry), hand-written pass %.1f ms: ratio %.2f (goal <= 1.25); "
               "through cholmod_l_ssmult (once) %.1f ms: %.1f× faster\n", cases[t].what, 1e3 * t_lj,
               1e9 * t_lj / (double)(n * per), 1e3 * t_hand, t_lj / t_hand, 1e3 * t_ss, t_ss / t_lj);
        lj_op_free(&J);
    }
    cholmod_l_free_sparse(&H, cc);
    lj_op *all[] = { So, D, P, Q };
    for (int i = 0; i < 4; i++) lj_op_free(&all[i]);
    cholmod_l_free_sparse(&S, cc);
    free(d), free(perm), free(qperm), free(rinv), free(cfrom);
    lj_context_free(&ctx);
    return 0;
}

int main(int argc, char **argv)
{
    int quick = 0;
    const char *part = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "quick") == 0) quick = 1;
        else if (strcmp(argv[i], "mc") == 0 || strcmp(argv[i], "lap") == 0 || strcmp(argv[i], "mono") == 0)
            part = argv[i];
        else {
            fprintf(stderr, "usage: bench_sparse [quick] [mc|lap|mono]\n");
            return 2;
        }
    }
    if (part)
        return strcmp(part, "mc") == 0 ? part_mc(quick) : strcmp(part, "lap") == 0 ? part_lap(quick) : part_mono(quick);
    int status = 0;
    static char mc[] = "mc", lap[] = "lap", mono[] = "mono";
    char *parts[] = { mc, lap, mono };
    for (int p = 0; p < 3; p++) {
        char *args[] = { argv[0], parts[p], quick ? (char *)"quick" : NULL, NULL };
        pid_t pid;
        int st;
        fflush(stdout);
        if (posix_spawn(&pid, argv[0], NULL, NULL, args, environ) != 0 || waitpid(pid, &st, 0) < 0 ||
            !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            status = 1;
    }
    return status;
}
