/* Levenberg-Marquardt for masked low-rank factorisation (matrix completion)
 *
 *     min_{U,V}  ½ ‖M ∘ (U Vᵀ − A)‖²_F,    U m×r, V n×r, M a 0/1 mask,
 *
 * solved twice from the same start with the same damping schedule:
 *   matrix-free: the step (JᵀJ + λI) δ = −Jᵀr by CGLS, which touches J only
 *                through J v and Jᵀ w, preconditioned with diag(JᵀJ) taken
 *                from the operator's structure;
 *   assembled:   J materialised once per iteration and JᵀJ + λI factorised
 *                by CHOLMOD's supernodal Cholesky.
 * The Jacobian [∂r/∂U, ∂r/∂V] is rebuilt at every iterate from the
 * expression M .* (U*V' - A) after the leaves U and V take the new values,
 * through a Jacobian plan (the expression is analysed once).
 *
 *   lowrank_lm [m n r]     (default 40 30 3; try 600 400 8)
 *
 * With --sparse, the mask and the data are sparse matrices (k observed
 * entries in each row, at random columns), and the same expression
 * M .* (U*V' - A) is computed on M's pattern alone: the residual has one
 * entry per observation, J = [P_M·(V ⊗ I_m), P_M·(I_n ⊗ U)·K] is applied
 * entry by entry, and nothing of size m×n exists. Only the matrix-free run
 * is made, and the result is checked against the planted U₀V₀ᵀ on entries
 * that were not observed:
 *
 *   lowrank_lm --sparse [m n r k]   (default 2000 500 4 10; the README's
 *                                    run: 100000 10000 8 10)
 * Exit status 0 when the runs converge (and, dense, agree). */
#include <lazyjac.h>
#include <math.h>
#include <stdbool.h>
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

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void fail(lj_context *ctx, const char *what)
{
    fprintf(stderr, "lowrank_lm: %s: %s\n", what, lj_context_message(ctx));
    exit(1);
}

typedef struct {
    lj_context *ctx;
    lj_expr *R, *U, *V;
    int64_t m, n, r, nres, nvar;
    bool sparse; /* R's value is its stored entries */
} problem;

/* r = vec R at the current leaves, f = ½‖r‖² */
static double residual(problem *p, double *r)
{
    if (p->sparse) {
        cholmod_sparse *v = lj_expr_eval_sparse(p->ctx, p->R);
        if (!v) fail(p->ctx, "eval_sparse");
        memcpy(r, v->x, sizeof *r * (size_t)p->nres);
        lj_sparse_free(p->ctx, &v);
        return 0.5 * dot(r, r, p->nres);
    }
    int64_t a, b;
    double *v;
    if (lj_expr_eval(p->ctx, p->R, &a, &b, &v) != LJ_OK) fail(p->ctx, "eval");
    memcpy(r, v, sizeof *r * (size_t)p->nres);
    lj_free(v);
    return 0.5 * dot(r, r, p->nres);
}

static void set_point(problem *p, const double *x)
{
    if (lj_expr_set_value(p->ctx, p->U, x) != LJ_OK || lj_expr_set_value(p->ctx, p->V, x + p->m * p->r) != LJ_OK)
        fail(p->ctx, "set_value");
}

/* CGLS for min ‖J S y + r‖² + λ‖S y‖², δ = S y, S = diag(1/sqrt(diag(JᵀJ) + λ)).
 * Returns the number of iterations. */
static int cgls(problem *p, const lj_op *J, const double *r, double lambda, double *delta, double tol, int maxit)
{
    lj_context *ctx = p->ctx;
    int64_t nv = p->nvar, nr = p->nres;
    double *s = malloc(sizeof *s * (size_t)nv), *y = calloc((size_t)nv, sizeof *y);
    double *res = malloc(sizeof *res * (size_t)nr), *resl = calloc((size_t)nv, sizeof *resl);
    double *sv = malloc(sizeof *sv * (size_t)nv), *q = malloc(sizeof *q * (size_t)nr);
    double *gr = malloc(sizeof *gr * (size_t)nv), *dir = malloc(sizeof *dir * (size_t)nv), *tmp = malloc(sizeof *tmp * (size_t)nv);
    if (lj_op_normal_diag(ctx, J, s) != LJ_OK) fail(ctx, "normal_diag");
    for (int64_t i = 0; i < nv; i++) s[i] = 1.0 / sqrt(s[i] + lambda);
    /* residual of the damped system at y = 0: [−r; 0] */
    for (int64_t i = 0; i < nr; i++) res[i] = -r[i];
    /* gr = Sᵀ(Jᵀ res + √λ·√λ·0) */
    if (lj_op_apply(ctx, J, 1, 1.0, res, 0.0, tmp) != LJ_OK) fail(ctx, "apply_t");
    for (int64_t i = 0; i < nv; i++) gr[i] = s[i] * tmp[i];
    memcpy(dir, gr, sizeof *dir * (size_t)nv);
    double gamma = dot(gr, gr, nv), gamma0 = gamma;
    int it = 0;
    while (it < maxit && gamma > tol * tol * gamma0) {
        for (int64_t i = 0; i < nv; i++) sv[i] = s[i] * dir[i];
        if (lj_op_apply(ctx, J, 0, 1.0, sv, 0.0, q) != LJ_OK) fail(ctx, "apply");
        double qq = dot(q, q, nr) + lambda * dot(sv, sv, nv);
        double alpha = gamma / qq;
        for (int64_t i = 0; i < nv; i++) y[i] += alpha * dir[i];
        for (int64_t i = 0; i < nr; i++) res[i] -= alpha * q[i];
        for (int64_t i = 0; i < nv; i++) resl[i] -= alpha * sqrt(lambda) * sv[i];
        if (lj_op_apply(ctx, J, 1, 1.0, res, 0.0, tmp) != LJ_OK) fail(ctx, "apply_t");
        for (int64_t i = 0; i < nv; i++) gr[i] = s[i] * (tmp[i] + sqrt(lambda) * resl[i]);
        double gnew = dot(gr, gr, nv);
        for (int64_t i = 0; i < nv; i++) dir[i] = gr[i] + (gnew / gamma) * dir[i];
        gamma = gnew;
        it++;
    }
    for (int64_t i = 0; i < nv; i++) delta[i] = s[i] * y[i];
    free(s); free(y); free(res); free(resl); free(sv); free(q); free(gr); free(dir); free(tmp);
    return it;
}

/* (JᵀJ + λI) δ = −Jᵀr with CHOLMOD: Jᵀ is factorised as Jᵀ(Jᵀ)ᵀ + λI. */
static int64_t cholesky_step(problem *p, const lj_op *J, const double *r, double lambda, double *delta)
{
    lj_context *ctx = p->ctx;
    cholmod_common *cc = lj_context_cholmod(ctx);
    lj_op *Jt = lj_op_transpose(ctx, J);
    cholmod_sparse *A = Jt ? lj_op_to_sparse(ctx, Jt) : NULL;
    if (!A) fail(ctx, "to_sparse");
    /* the mask's zeros are structural entries of Diag(vec M)·…: drop them */
    if (lj_sparse_prune(ctx, A, 0.0) != LJ_OK) fail(ctx, "prune");
    int64_t nnz = ((SuiteSparse_long *)A->p)[A->ncol];
    double *g = malloc(sizeof *g * (size_t)p->nvar);
    if (lj_op_apply(ctx, J, 1, -1.0, r, 0.0, g) != LJ_OK) fail(ctx, "apply_t");
    cc->supernodal = CHOLMOD_SUPERNODAL;
    cholmod_factor *L = cholmod_l_analyze(A, cc);
    double beta[2] = { lambda, 0 };
    if (!L || !cholmod_l_factorize_p(A, beta, NULL, 0, L, cc) || cc->status != CHOLMOD_OK) {
        fprintf(stderr, "lowrank_lm: CHOLMOD factorisation failed (status %d)\n", cc->status);
        exit(1);
    }
    cholmod_dense b = { .nrow = (size_t)p->nvar, .ncol = 1, .nzmax = (size_t)p->nvar, .d = (size_t)p->nvar, .x = g,
                        .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
    cholmod_dense *x = cholmod_l_solve(CHOLMOD_A, L, &b, cc);
    if (!x) fail(ctx, "cholmod_l_solve");
    memcpy(delta, x->x, sizeof *delta * (size_t)p->nvar);
    cholmod_l_free_dense(&x, cc);
    cholmod_l_free_factor(&L, cc);
    lj_sparse_free(ctx, &A);
    lj_op_free(&Jt);
    free(g);
    return nnz;
}

typedef struct {
    int iters;
    double f0, f, gnorm, t_jac, t_solve;
    int64_t nnz, inner;
} lm_result;

static lm_result levenberg_marquardt(problem *p, double *x, int assembled, int verbose)
{
    lj_context *ctx = p->ctx;
    const lj_expr *vars[2] = { p->U, p->V };
    /* the expression's analysis, once; each iteration re-evaluates it */
    lj_jacplan *plan = lj_jacplan_new(ctx, p->R, 2, vars);
    if (!plan) fail(ctx, "jacplan");
    int64_t nv = p->nvar;
    double *r = malloc(sizeof *r * (size_t)p->nres), *delta = malloc(sizeof *delta * (size_t)nv);
    double *xt = malloc(sizeof *xt * (size_t)nv), *g = malloc(sizeof *g * (size_t)nv);
    lm_result out = { 0 };
    double lambda = 1e-3;
    set_point(p, x);
    double f = residual(p, r);
    out.f0 = f;
    for (int it = 0; it < 100; it++) {
        double t0 = now();
        lj_op *J = lj_jacplan_eval(ctx, plan, r); /* J and r at the iterate, in one evaluation */
        if (!J) fail(ctx, "jacobian");
        if (it == 0 && verbose) {
            char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
            printf("  J = %s  (%lld×%lld)\n", s, (long long)lj_op_rows(J), (long long)lj_op_cols(J));
            lj_free(s);
        }
        if (lj_op_apply(ctx, J, 1, 1.0, r, 0.0, g) != LJ_OK) fail(ctx, "apply_t");
        out.gnorm = sqrt(dot(g, g, nv));
        double t1 = now();
        out.t_jac += t1 - t0;
        if (out.gnorm <= 1e-10 * (1 + sqrt(2 * out.f0)) || f <= 1e-26 * out.f0) {
            lj_op_free(&J);
            break;
        }
        /* try steps until one decreases f */
        for (int tries = 0; tries < 30; tries++) {
            double ts = now();
            if (assembled)
                out.nnz = cholesky_step(p, J, r, lambda, delta);
            else
                out.inner += cgls(p, J, r, lambda, delta, 1e-12, 2000);
            out.t_solve += now() - ts;
            for (int64_t i = 0; i < nv; i++) xt[i] = x[i] + delta[i];
            set_point(p, xt);
            double *rt = malloc(sizeof *rt * (size_t)p->nres);
            double ft = residual(p, rt);
            if (ft < f) {
                memcpy(x, xt, sizeof *x * (size_t)nv);
                memcpy(r, rt, sizeof *r * (size_t)p->nres);
                free(rt);
                f = ft;
                lambda = fmax(lambda / 3, 1e-15);
                break;
            }
            free(rt);
            set_point(p, x);
            lambda *= 4;
        }
        lj_op_free(&J);
        out.iters = it + 1;
        if (verbose > 1) printf("    iteration %2d: f = %.3e, |g| = %.3e, λ = %.1e\n", it + 1, f, out.gnorm, lambda);
    }
    out.f = f;
    lj_jacplan_free(&plan);
    free(r); free(delta); free(xt); free(g);
    return out;
}

static double peak_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

/* Matrix completion with a sparse mask: k observations in each row. */
static int sparse_main(int64_t m, int64_t n, int64_t r, int64_t k)
{
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    unsigned long long seed = 42;
    double t0 = now();
    double *U0 = malloc(sizeof(double) * (size_t)(m * r)), *V0 = malloc(sizeof(double) * (size_t)(n * r));
    for (int64_t i = 0; i < m * r; i++) U0[i] = urand(&seed);
    for (int64_t i = 0; i < n * r; i++) V0[i] = urand(&seed);
    /* the pattern: k random columns in each row (a repeat is one entry) */
    cholmod_triplet *T = cholmod_l_allocate_triplet((size_t)m, (size_t)n, (size_t)(m * k), 0, CHOLMOD_REAL, cc);
    if (!T) fail(ctx, "allocate_triplet");
    SuiteSparse_long *ti = T->i, *tj = T->j;
    double *tx = T->x;
    for (int64_t i = 0, q = 0; i < m; i++)
        for (int64_t c = 0; c < k; c++, q++) {
            ti[q] = i;
            tj[q] = (SuiteSparse_long)((urand(&seed) + 1) / 2 * (double)n) % n;
            tx[q] = 1.0;
        }
    T->nnz = (size_t)(m * k);
    cholmod_sparse *M = cholmod_l_triplet_to_sparse(T, (size_t)(m * k), cc);
    cholmod_l_free_triplet(&T, cc);
    if (!M) fail(ctx, "triplet_to_sparse");
    /* the mask's values are ones (repeats were summed); the data, exactly rank r */
    cholmod_sparse *A = cholmod_l_copy_sparse(M, cc);
    const SuiteSparse_long *mp = M->p, *mi = M->i;
    double *mx = M->x, *ax = A->x;
    int64_t nobs = mp[n];
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = mp[j]; q < mp[j + 1]; q++) {
            double s = 0;
            for (int64_t l = 0; l < r; l++) s += U0[mi[q] + l * m] * V0[j + l * n];
            ax[q] = s;
            mx[q] = 1.0;
        }
    int64_t nv = (m + n) * r;
    double *x = malloc(sizeof(double) * (size_t)nv);
    for (int64_t i = 0; i < m * r; i++) x[i] = U0[i] + 0.3 * urand(&seed);
    for (int64_t i = 0; i < n * r; i++) x[m * r + i] = V0[i] + 0.3 * urand(&seed);
    problem p = { ctx, NULL, NULL, NULL, m, n, r, nobs, nv, true };
    p.U = lj_expr_var(ctx, "U", m, r, x);
    p.V = lj_expr_var(ctx, "V", n, r, x + m * r);
    lj_expr *Ae = lj_expr_const_sparse(ctx, "A", A), *Me = lj_expr_const_sparse(ctx, "M", M);
    lj_expr *Vt = lj_expr_transpose(ctx, p.V), *UV = lj_expr_mul(ctx, p.U, Vt), *D = lj_expr_sub(ctx, UV, Ae);
    p.R = lj_expr_hadamard(ctx, Me, D);
    if (!p.R) fail(ctx, "expression");
    if (!lj_expr_is_sparse(p.R) || lj_expr_nvalues(p.R) != nobs) {
        fprintf(stderr, "lowrank_lm: the residual is not on the mask's pattern\n");
        return 1;
    }
    double data_mb = (16.0 * (double)nobs * 2 + 8.0 * (double)(n + 1) * 2 + 8.0 * (double)nv) / 1048576.0;
    printf("matrix completion: %lld×%lld of rank %lld, %lld entries observed (%.2g%%), %lld unknowns; setup %.2f s\n",
           (long long)m, (long long)n, (long long)r, (long long)nobs, 100.0 * (double)nobs / ((double)m * (double)n),
           (long long)nv, now() - t0);
    int verbose = getenv("LJ_VERBOSE") ? 2 : 1;
    printf("matrix-free (CGLS on J v, Jᵀ w):\n");
    double t1 = now();
    lm_result mf = levenberg_marquardt(&p, x, 0, verbose);
    double total = now() - t1;
    printf("  %d iterations, f: %.3e → %.3e, |g| %.1e, %lld CGLS iterations (%.1f per LM iteration)\n", mf.iters,
           mf.f0, mf.f, mf.gnorm, (long long)mf.inner, (double)mf.inner / mf.iters);
    printf("  per iteration: %.3f s (Jacobian and gradient %.3f s, solve %.3f s); total %.1f s\n", total / mf.iters,
           mf.t_jac / mf.iters, mf.t_solve / mf.iters, total);
    /* U Vᵀ against the planted U₀V₀ᵀ, on entries that were not observed */
    double diff = 0, norm = 0;
    for (int64_t t = 0; t < 100000; t++) {
        int64_t i = (int64_t)((urand(&seed) + 1) / 2 * (double)m) % m, j = (int64_t)((urand(&seed) + 1) / 2 * (double)n) % n;
        double s = 0, s0 = 0;
        for (int64_t l = 0; l < r; l++) {
            s += x[i + l * m] * x[m * r + j + l * n];
            s0 += U0[i + l * m] * V0[j + l * n];
        }
        diff += (s - s0) * (s - s0);
        norm += s0 * s0;
    }
    double err = sqrt(diff / norm);
    /* LM stopped by its own tests (gradient or residual), and the planted matrix recovered */
    bool conv = (mf.gnorm <= 1e-10 * (1 + sqrt(2 * mf.f0)) || mf.f <= 1e-20 * mf.f0) && err < 1e-6;
    printf("recovery on 100000 random entries: ‖UVᵀ − U₀V₀ᵀ‖/‖U₀V₀ᵀ‖ = %.2e; %s\n", err,
           conv ? "converged" : "NOT converged");
    printf("peak memory %.0f MB for %.0f MB of data and unknowns (%.1f×); m×n dense would be %.0f MB\n", peak_mb(),
           data_mb, peak_mb() / data_mb, 8.0 * (double)m * (double)n / 1048576.0);
    lj_expr *all[] = { p.U, p.V, Ae, Me, Vt, UV, D, p.R };
    for (int i = 0; i < 8; i++) lj_expr_free(&all[i]);
    cholmod_l_free_sparse(&M, cc);
    cholmod_l_free_sparse(&A, cc);
    free(U0); free(V0); free(x);
    lj_context_free(&ctx);
    return conv ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--sparse") == 0) {
        int64_t m = argc > 5 ? atoll(argv[2]) : 2000, n = argc > 5 ? atoll(argv[3]) : 500,
                r = argc > 5 ? atoll(argv[4]) : 4, k = argc > 5 ? atoll(argv[5]) : 10;
        if (m < 2 || n < 2 || r < 1 || r > n || k < 1 || k > n) {
            fprintf(stderr, "usage: lowrank_lm --sparse [m n r k]\n");
            return 2;
        }
        return sparse_main(m, n, r, k);
    }
    int64_t m = argc > 3 ? atoll(argv[1]) : 40, n = argc > 3 ? atoll(argv[2]) : 30, r = argc > 3 ? atoll(argv[3]) : 3;
    if (m < 2 || n < 2 || r < 1 || r > m || r > n) {
        fprintf(stderr, "usage: lowrank_lm [m n r]\n");
        return 2;
    }
    lj_context *ctx = lj_context_new();
    unsigned long long seed = 42;
    double *U0 = malloc(sizeof(double) * (size_t)(m * r)), *V0 = malloc(sizeof(double) * (size_t)(n * r));
    double *A = malloc(sizeof(double) * (size_t)(m * n)), *M = malloc(sizeof(double) * (size_t)(m * n));
    for (int64_t i = 0; i < m * r; i++) U0[i] = urand(&seed);
    for (int64_t i = 0; i < n * r; i++) V0[i] = urand(&seed);
    int64_t observed = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += U0[i + k * m] * V0[j + k * n];
            A[i + j * m] = s; /* exactly rank r */
            M[i + j * m] = urand(&seed) < 0.2 ? 1.0 : 0.0; /* 60% observed */
            observed += M[i + j * m] != 0.0;
        }
    /* the start: the truth, perturbed */
    int64_t nv = (m + n) * r;
    double *x0 = malloc(sizeof(double) * (size_t)nv), *xa = malloc(sizeof(double) * (size_t)nv), *xm = malloc(sizeof(double) * (size_t)nv);
    for (int64_t i = 0; i < m * r; i++) x0[i] = U0[i] + 0.3 * urand(&seed);
    for (int64_t i = 0; i < n * r; i++) x0[m * r + i] = V0[i] + 0.3 * urand(&seed);

    problem p = { ctx, NULL, NULL, NULL, m, n, r, m * n, nv, false };
    p.U = lj_expr_var(ctx, "U", m, r, x0);
    p.V = lj_expr_var(ctx, "V", n, r, x0 + m * r);
    lj_expr *Ae = lj_expr_const(ctx, "A", m, n, A), *Me = lj_expr_const(ctx, "M", m, n, M);
    lj_expr *Vt = lj_expr_transpose(ctx, p.V), *UV = lj_expr_mul(ctx, p.U, Vt), *D = lj_expr_sub(ctx, UV, Ae);
    p.R = lj_expr_hadamard(ctx, Me, D);
    if (!p.R) fail(ctx, "expression");

    printf("masked low-rank factorisation: A %lld×%lld of rank %lld, %lld entries observed, %lld unknowns\n",
           (long long)m, (long long)n, (long long)r, (long long)observed, (long long)nv);
    memcpy(xm, x0, sizeof(double) * (size_t)nv);
    memcpy(xa, x0, sizeof(double) * (size_t)nv);
    int verbose = getenv("LJ_VERBOSE") ? 2 : 1;
    printf("matrix-free (CGLS on J v, Jᵀ w):\n");
    lm_result mf = levenberg_marquardt(&p, xm, 0, verbose);
    printf("  %d iterations, f: %.3e → %.3e, |g| %.1e, %lld CGLS iterations; per iteration: Jacobian %.2f ms, solve %.2f ms\n",
           mf.iters, mf.f0, mf.f, mf.gnorm, (long long)mf.inner, 1e3 * mf.t_jac / mf.iters, 1e3 * mf.t_solve / mf.iters);
    printf("assembled (J materialised, JᵀJ + λI by CHOLMOD supernodal Cholesky):\n");
    lm_result as = levenberg_marquardt(&p, xa, 1, 0);
    printf("  %d iterations, f: %.3e → %.3e, |g| %.1e, nnz(J) %lld after pruning the mask's zeros; per iteration: Jacobian %.2f ms, solve %.2f ms\n",
           as.iters, as.f0, as.f, as.gnorm, (long long)as.nnz, 1e3 * as.t_jac / as.iters, 1e3 * as.t_solve / as.iters);

    /* U Vᵀ is what the data determine (U and V only up to an invertible r×r
     * factor): compare the two solutions through it */
    double diff = 0, norm = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            double sm = 0, sa = 0;
            for (int64_t k = 0; k < r; k++) {
                sm += xm[i + k * m] * xm[m * r + j + k * n];
                sa += xa[i + k * m] * xa[m * r + j + k * n];
            }
            diff += (sm - sa) * (sm - sa);
            norm += sa * sa;
        }
    double agree = sqrt(diff / norm);
    bool conv = mf.f <= 1e-20 * mf.f0 && as.f <= 1e-20 * as.f0;
    printf("solutions agree: ‖X_free − X_assembled‖/‖X‖ = %.2e; %s\n", agree,
           conv && agree < 1e-6 ? "converged" : "NOT converged");
    lj_expr *all[] = { p.U, p.V, Ae, Me, Vt, UV, D, p.R };
    for (int i = 0; i < 8; i++) lj_expr_free(&all[i]);
    free(U0); free(V0); free(A); free(M); free(x0); free(xa); free(xm);
    lj_context_free(&ctx);
    return conv && agree < 1e-6 ? 0 : 1;
}
