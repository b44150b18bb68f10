/* The calculus layer: every differentiation rule and composite expressions
 * against central finite differences on random shapes, gradients, the four
 * seeds against their independently computed references, error paths. */
#include "testutil.h"
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <unistd.h>

#ifndef LJ_CASES_DIR
#define LJ_CASES_DIR "tests/cases"
#endif

typedef struct {
    lj_context *ctx;
    uint64_t seed;
    lj_expr *pool[32];
    int n;
} env;

static lj_expr *keep(env *E, lj_expr *e)
{
    ck_assert_msg(e != NULL, "construction failed: %s", lj_context_message(E->ctx));
    ck_assert_int_lt(E->n, (int)(sizeof E->pool / sizeof E->pool[0]));
    E->pool[E->n++] = e;
    return e;
}

static void env_free(env *E)
{
    for (int i = 0; i < E->n; i++) lj_expr_free(&E->pool[i]);
    E->n = 0;
}

/* random leaf; kind 0 any, 1 positive, 2 well-conditioned square (I·n + noise), 3 SPD */
static lj_expr *leaf(env *E, const char *name, int64_t r, int64_t c, int kind, bool var)
{
    tmat m = tm_rand(r, c, &E->seed);
    if (kind == 1)
        for (int64_t i = 0; i < r * c; i++) m.a[i] = 0.5 + fabs(m.a[i]);
    if (kind == 2)
        for (int64_t i = 0; i < r; i++) m.a[i + i * r] += (double)r + 1;
    if (kind == 3) {
        tmat t = tm_transpose(m), s = tm_mul(t, m);
        for (int64_t i = 0; i < r; i++) s.a[i + i * r] += 1.0;
        tm_free(&m);
        tm_free(&t);
        m = s;
    }
    lj_expr *e = var ? lj_expr_var(E->ctx, name, r, c, m.a) : lj_expr_const(E->ctx, name, r, c, m.a);
    tm_free(&m);
    return keep(E, e);
}

/* J of f by a plan, densely */
static tmat plan_dense(lj_context *ctx, lj_jacplan *p, lj_op **J, int64_t m, int64_t n)
{
    *J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, *J);
    tmat d = tm_new(m, n);
    CK_OK(ctx, lj_op_to_dense(ctx, *J, d.a, m > 0 ? m : 1));
    return d;
}

static int plan_updates; /* evaluations the rule tests saw update J in place */

/* A plan's J after x moved (each entry by up to 1%: signs, kinks and
 * domains stay): updated in place or built anew, it is the same, bit for
 * bit and in print, as a Jacobian built fresh at the new values. */
static void plan_ok(env *E, lj_expr *f, lj_expr *x, const char *what)
{
    lj_context *ctx = E->ctx;
    int64_t m = lj_expr_nvalues(f), n = lj_expr_nvalues(x), r, c;
    lj_jacplan *p = lj_jacplan_new(ctx, f, 1, (const lj_expr *const *)&x);
    CK_NN(ctx, p);
    lj_op *J1, *J2;
    tmat d1 = plan_dense(ctx, p, &J1, m, n);
    const char *why;
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "the first evaluation");
    const lj_op *first = J1;
    lj_op_free(&J1);
    double *v0, *v1 = malloc(sizeof *v1 * (size_t)(n ? n : 1));
    if (lj_expr_is_sparse(x)) {
        cholmod_sparse *S = lj_expr_eval_sparse(ctx, x);
        CK_NN(ctx, S);
        v0 = malloc(sizeof *v0 * (size_t)(n ? n : 1));
        memcpy(v0, S->x, sizeof *v0 * (size_t)n);
        lj_sparse_free(ctx, &S);
    } else
        CK_OK(ctx, lj_expr_eval(ctx, x, &r, &c, &v0));
    for (int64_t i = 0; i < n; i++) v1[i] = v0[i] * (1.0 + 0.01 * urand(&E->seed));
    CK_OK(ctx, lj_expr_set_value(ctx, x, v1));
    tmat d2 = plan_dense(ctx, p, &J2, m, n);
    int rebuilt = lj_jacplan_rebuilt(p, &why);
    ck_assert_int_ge(rebuilt, 0);
    if (!rebuilt) {
        ck_assert_ptr_eq(J2, first); /* the same operator, its numbers updated */
        plan_updates++;
    }
    lj_op *K = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, K);
    tmat k = tm_new(m, n);
    CK_OK(ctx, lj_op_to_dense(ctx, K, k.a, m > 0 ? m : 1));
    ck_assert_msg(m * n == 0 || memcmp(d2.a, k.a, sizeof(double) * (size_t)(m * n)) == 0,
                  "%s: the plan's J after x moved (%s) differs from a fresh one by %g", what,
                  rebuilt ? why : "updated in place", tm_maxdiff(d2, k));
    char *pj = lj_op_print(ctx, J2, LJ_PRINT_UNICODE), *pk = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
    ck_assert_msg(pj && pk && strcmp(pj, pk) == 0, "%s: the plan's J prints %s, a fresh one %s", what, pj, pk);
    lj_free(pj);
    lj_free(pk);
    CK_OK(ctx, lj_expr_set_value(ctx, x, v0));
    lj_op_free(&J2);
    lj_op_free(&K);
    lj_jacplan_free(&p);
    tm_free(&d1);
    tm_free(&d2);
    tm_free(&k);
    lj_free(v0);
    free(v1);
}

static void fd_ok(env *E, lj_expr *f, lj_expr *x, double tol, const char *what)
{
    plan_ok(E, f, x, what);
    double maxrel = -1, fro = -1;
    lj_status st = lj_expr_fd_check(E->ctx, f, x, NULL, 0, &maxrel, &fro);
    ck_assert_msg(st == LJ_OK, "%s: fd_check status %d: %s", what, (int)st, lj_context_message(E->ctx));
    char *s = lj_expr_print(E->ctx, f);
    ck_assert_msg(maxrel < tol, "%s [%s]: finite differences differ by %g (fro %g)", what, s, maxrel, fro);
    /* and the Jacobian operator itself passes the three-way check */
    lj_op *J = lj_expr_jacobian(E->ctx, f, x);
    CK_NN(E->ctx, J);
    double rel;
    CK_OK(E->ctx, lj_op_check(E->ctx, J, 5, &rel));
    ck_assert_msg(rel < 1e-12, "%s: operator check %g", what, rel);
    lj_op_free(&J);
    lj_free(s);
}

typedef struct { int64_t m, n, p, q; } dims;
static const dims shapes[] = { { 3, 4, 2, 5 }, { 1, 1, 1, 1 }, { 4, 1, 3, 1 }, { 1, 5, 1, 2 }, { 2, 3, 4, 2 } };
#define NSH ((int)(sizeof shapes / sizeof shapes[0]))

START_TEST(test_rule_products)
{
    env E = { lj_context_new(), 100 + (uint64_t)_i, { 0 }, 0 };
    dims d = shapes[_i];
    lj_context *ctx = E.ctx;
    /* A B, both ways */
    lj_expr *A = leaf(&E, "A", d.m, d.n, 0, true), *B = leaf(&E, "B", d.n, d.q, 0, true);
    lj_expr *AB = keep(&E, lj_expr_mul(ctx, A, B));
    fd_ok(&E, AB, A, 1e-7, "d(AB)/dA");
    fd_ok(&E, AB, B, 1e-7, "d(AB)/dB");
    /* scalar times matrix, either side */
    lj_expr *s = leaf(&E, "s", 1, 1, 0, true), *sA = keep(&E, lj_expr_mul(ctx, s, A)), *As = keep(&E, lj_expr_mul(ctx, A, s));
    fd_ok(&E, sA, s, 1e-7, "d(sA)/ds");
    fd_ok(&E, sA, A, 1e-7, "d(sA)/dA");
    fd_ok(&E, As, s, 1e-7, "d(As)/ds");
    /* Hadamard and division, and broadcasting */
    lj_expr *C = leaf(&E, "C", d.m, d.n, 1, true);
    lj_expr *h = keep(&E, lj_expr_hadamard(ctx, A, C)), *q = keep(&E, lj_expr_hdiv(ctx, A, C));
    fd_ok(&E, h, A, 1e-7, "d(A∘C)/dA");
    fd_ok(&E, h, C, 1e-7, "d(A∘C)/dC");
    fd_ok(&E, q, A, 1e-7, "d(A./C)/dA");
    fd_ok(&E, q, C, 1e-6, "d(A./C)/dC");
    lj_expr *t = leaf(&E, "t", 1, 1, 1, true);
    lj_expr *hb = keep(&E, lj_expr_hadamard(ctx, t, A)), *qb = keep(&E, lj_expr_hdiv(ctx, A, t));
    lj_expr *qc = keep(&E, lj_expr_hdiv(ctx, t, C)), *ds = keep(&E, lj_expr_div_scalar(ctx, A, t));
    fd_ok(&E, hb, t, 1e-7, "d(t.*A)/dt");
    fd_ok(&E, qb, t, 1e-6, "d(A./t)/dt");
    fd_ok(&E, qc, C, 1e-6, "d(t./C)/dC");
    fd_ok(&E, qc, t, 1e-6, "d(t./C)/dt");
    fd_ok(&E, ds, t, 1e-6, "d(A/t)/dt");
    fd_ok(&E, ds, A, 1e-7, "d(A/t)/dA");
    /* sums */
    lj_expr *sum = keep(&E, lj_expr_sub(ctx, A, C)), *bc = keep(&E, lj_expr_add(ctx, A, t));
    fd_ok(&E, sum, C, 1e-7, "d(A-C)/dC");
    fd_ok(&E, bc, t, 1e-7, "d(A+t)/dt");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rule_structural)
{
    env E = { lj_context_new(), 200 + (uint64_t)_i, { 0 }, 0 };
    dims d = shapes[_i];
    lj_context *ctx = E.ctx;
    lj_expr *A = leaf(&E, "A", d.m, d.n, 0, true), *B = leaf(&E, "B", d.p, d.q, 0, true);
    lj_expr *k = keep(&E, lj_expr_kron(ctx, A, B));
    fd_ok(&E, k, A, 1e-7, "d(A⊗B)/dA");
    fd_ok(&E, k, B, 1e-7, "d(A⊗B)/dB");
    lj_expr *At = keep(&E, lj_expr_transpose(ctx, A));
    fd_ok(&E, At, A, 1e-9, "dA^T/dA");
    lj_expr *v = keep(&E, lj_expr_vec(ctx, A)), *s = keep(&E, lj_expr_sum(ctx, A)), *n2 = keep(&E, lj_expr_norm2(ctx, A));
    fd_ok(&E, v, A, 1e-9, "d vec A/dA");
    fd_ok(&E, s, A, 1e-9, "d sum A/dA");
    fd_ok(&E, n2, A, 1e-7, "d‖A‖/dA");
    lj_expr *S = leaf(&E, "S", d.m, d.m, 0, true);
    lj_expr *tr = keep(&E, lj_expr_trace(ctx, S)), *dg = keep(&E, lj_expr_diag(ctx, S));
    fd_ok(&E, tr, S, 1e-9, "d tr S/dS");
    fd_ok(&E, dg, S, 1e-9, "d diag(S)/dS");
    lj_expr *x = leaf(&E, "x", d.n, 1, 0, true), *dx = keep(&E, lj_expr_diag(ctx, x));
    fd_ok(&E, dx, x, 1e-9, "d diag(x)/dx");
    lj_expr *p2 = keep(&E, lj_expr_pow(ctx, A, 2.0)), *neg = keep(&E, lj_expr_neg(ctx, A)), *sc = keep(&E, lj_expr_scale(ctx, -2.5, A));
    fd_ok(&E, p2, A, 1e-7, "d A.^2/dA");
    fd_ok(&E, neg, A, 1e-9, "d(-A)/dA");
    fd_ok(&E, sc, A, 1e-9, "d(-2.5A)/dA");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rule_elementwise)
{
    env E = { lj_context_new(), 300 + (uint64_t)_i, { 0 }, 0 };
    dims d = shapes[_i];
    lj_context *ctx = E.ctx;
    lj_expr *A = leaf(&E, "A", d.m, d.n, 0, true), *P = leaf(&E, "P", d.m, d.n, 1, true);
    lj_func all[] = { LJ_FN_EXP, LJ_FN_SIN, LJ_FN_COS, LJ_FN_TANH };
    for (int i = 0; i < 4; i++) {
        lj_expr *f = lj_expr_func(ctx, all[i], A);
        fd_ok(&E, f, A, 1e-7, "d f(A)/dA");
        lj_expr_free(&f);
    }
    lj_expr *lg = keep(&E, lj_expr_func(ctx, LJ_FN_LOG, P)), *sq = keep(&E, lj_expr_func(ctx, LJ_FN_SQRT, P));
    lj_expr *p3 = keep(&E, lj_expr_pow(ctx, P, -1.5));
    fd_ok(&E, lg, P, 1e-7, "d log P/dP");
    fd_ok(&E, sq, P, 1e-7, "d sqrt P/dP");
    fd_ok(&E, p3, P, 1e-6, "d P.^-1.5/dP");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rule_inverse_det)
{
    env E = { lj_context_new(), 400 + (uint64_t)_i, { 0 }, 0 };
    int64_t n = 1 + _i;
    lj_context *ctx = E.ctx;
    lj_expr *A = leaf(&E, "A", n, n, 2, true), *S = leaf(&E, "S", n, n, 3, true);
    lj_expr *inv = keep(&E, lj_expr_inv(ctx, A)), *det = keep(&E, lj_expr_det(ctx, A));
    lj_expr *ld = keep(&E, lj_expr_logdet(ctx, S));
    fd_ok(&E, inv, A, 1e-6, "d inv A/dA");
    fd_ok(&E, det, A, 1e-6, "d det A/dA");
    fd_ok(&E, ld, S, 1e-6, "d logdet S/dS");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* Composite expressions of depth 3–6, and their gradients. */
/* Selections are sparse: nnz counts only real entries, exactly, and the
 * materialised pattern holds no stored zeros. */
static void nnz_is(lj_context *ctx, const lj_expr *f, const lj_expr *x, int64_t want, const char *what)
{
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    int exact = 0;
    int64_t nz = lj_op_nnz(ctx, J, &exact);
    ck_assert_msg(exact && nz == want, "%s: nnz %lld (exact %d), want %lld", what, (long long)nz, exact,
                  (long long)want);
    cholmod_sparse *S = lj_op_to_sparse(ctx, J);
    CK_NN(ctx, S);
    int64_t stored = ((int64_t *)S->p)[S->ncol];
    ck_assert_msg(stored == want, "%s: %lld stored entries, want %lld", what, (long long)stored,
                  (long long)want);
    const double *sx = S->x;
    for (int64_t q = 0; q < stored; q++) ck_assert_msg(sx[q] != 0.0, "%s: stored zero", what);
    lj_sparse_free(ctx, &S);
    lj_op_free(&J);
}

START_TEST(test_selections_sparse)
{
    env E = { lj_context_new(), 77, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 100, 100, 0, true), *x = leaf(&E, "x", 60, 1, 0, true);
    nnz_is(ctx, keep(&E, lj_expr_trace(ctx, X)), X, 100, "tr(X)");
    nnz_is(ctx, keep(&E, lj_expr_diag(ctx, X)), X, 100, "diag(X)");
    nnz_is(ctx, keep(&E, lj_expr_diag(ctx, x)), x, 60, "diag(x)");
    nnz_is(ctx, keep(&E, lj_expr_trace(ctx, keep(&E, lj_expr_transpose(ctx, X)))), X, 100, "tr(X')");
    nnz_is(ctx, keep(&E, lj_expr_sum(ctx, X)), X, 10000, "sum(X)");
    nnz_is(ctx, keep(&E, lj_expr_vec(ctx, X)), X, 10000, "vec(X)");
    /* and the selections still agree with finite differences */
    lj_expr *S = leaf(&E, "S", 7, 7, 0, true);
    fd_ok(&E, keep(&E, lj_expr_trace(ctx, S)), S, 1e-9, "tr(S)");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_composites)
{
    env E = { lj_context_new(), 500, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *X = leaf(&E, "X", 4, 3, 0, true), *A = leaf(&E, "A", 5, 4, 0, false), *B = leaf(&E, "B", 5, 3, 0, false);
    lj_expr *W1 = leaf(&E, "W1", 6, 4, 0, true), *W2 = leaf(&E, "W2", 2, 6, 0, true), *S = leaf(&E, "S", 4, 4, 3, true);
    lj_expr *C = leaf(&E, "C", 12, 12, 0, false), *v = leaf(&E, "v", 3, 1, 1, true);
    lj_expr *leaves[] = { X, A, B, W1, W2, S, C, v };
    for (int i = 0; i < 8; i++) CK_OK(ctx, lj_symtab_add(ctx, t, leaves[i]));
    const struct { const char *text, *wrt; int scalar; } cases[] = {
        { "norm2(A*X - B)", "X", 1 },
        { "sum(tanh(W2*tanh(W1*X)))", "W1", 1 },
        { "sum(tanh(W2*tanh(W1*X)))", "W2", 1 },
        { "tanh(W2*tanh(W1*X))", "X", 0 },
        { "tr(inv(X'*S*X + X'*X))", "X", 1 },
        { "logdet(X'*S*X + diag(v))", "v", 1 },
        { "logdet(X'*S*X + diag(v))", "S", 1 },
        { "kron(X, X') .* C", "X", 0 },
        { "(X*X').*S + S*X*X'", "X", 0 },
        { "exp(-X.^2/2) ./ (1 + sum(X.*X))", "X", 0 },
        { "det(S)*S - inv(S)'", "S", 0 },
        { "vec(X)'*kron(v, X)*v", "X", 1 },
        { "sqrt(v'*v) + sum(log(v + 1))", "v", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t pos;
        lj_expr *f = lj_parse(ctx, cases[i].text, t, &pos);
        ck_assert_msg(f != NULL, "%s: %s", cases[i].text, lj_context_message(ctx));
        lj_expr *x = lj_symtab_get(t, cases[i].wrt);
        fd_ok(&E, f, x, 1e-6, cases[i].text);
        if (cases[i].scalar) {
            /* gradient through J^T·1 against finite differences of f */
            int64_t n = lj_expr_rows(x) * lj_expr_cols(x);
            double *g = malloc(sizeof(double) * (size_t)n);
            CK_OK(ctx, lj_expr_gradient(ctx, f, x, g));
            lj_op *J = lj_expr_jacobian(ctx, f, x);
            tmat Jd = tm_new(1, n);
            CK_OK(ctx, lj_op_to_dense(ctx, J, Jd.a, 1));
            for (int64_t k = 0; k < n; k++) ck_assert(fabs(g[k] - Jd.a[k]) <= 1e-12 * (1 + fabs(g[k])));
            tm_free(&Jd);
            lj_op_free(&J);
            free(g);
        }
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* A shared subexpression is differentiated once and counted twice. */
START_TEST(test_shared_subexpressions)
{
    env E = { lj_context_new(), 600, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 3, 3, 0, true);
    lj_expr *Y = keep(&E, lj_expr_mul(ctx, X, X));
    lj_expr *Z = keep(&E, lj_expr_mul(ctx, Y, Y)); /* X^4 through one shared node */
    lj_expr *F = keep(&E, lj_expr_add(ctx, Z, Z));
    fd_ok(&E, F, X, 1e-6, "2 (XX)(XX)");
    /* a variable that does not occur gives the zero operator */
    lj_expr *U = leaf(&E, "U", 2, 5, 0, true);
    lj_op *J = lj_expr_jacobian(ctx, F, U);
    ck_assert_int_eq(lj_op_kind_of(J), LJ_OP_ZERO);
    ck_assert_int_eq(lj_op_rows(J), 9);
    ck_assert_int_eq(lj_op_cols(J), 10);
    lj_op_free(&J);
    /* several variables: a block row */
    lj_expr *V = leaf(&E, "V", 3, 3, 0, true);
    lj_expr *G = keep(&E, lj_expr_mul(ctx, X, V));
    const lj_expr *vars[2] = { X, V };
    lj_op *JJ = lj_expr_jacobian_n(ctx, G, 2, vars);
    CK_NN(ctx, JJ);
    ck_assert_int_eq(lj_op_kind_of(JJ), LJ_OP_HSTACK);
    ck_assert_int_eq(lj_op_cols(JJ), 18);
    char *s = lj_op_print(ctx, JJ, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "[V^T ⊗ I_3, I_3 ⊗ X]");
    lj_free(s);
    lj_op_free(&JJ);
    /* a long chain: built in linear passes, freed iteratively */
    lj_expr *c = lj_expr_retain(X);
    for (int i = 0; i < 3000; i++) {
        lj_expr *n = lj_expr_func(ctx, i % 2 ? LJ_FN_SIN : LJ_FN_TANH, c);
        lj_expr_free(&c);
        c = n;
    }
    lj_op *Jc = lj_expr_jacobian(ctx, c, X);
    CK_NN(ctx, Jc);
    ck_assert_int_eq(lj_op_kind_of(Jc), LJ_OP_DIAG); /* all diagonal factors merged */
    lj_op_free(&Jc);
    /* and a plan over it updates that Diag in place: 3000 derivatives and
     * 2999 products of Diags replayed, the same numbers as a fresh build */
    lj_jacplan *pc = lj_jacplan_new(ctx, c, 1, (const lj_expr *const *)&X);
    Jc = lj_jacplan_eval(ctx, pc, NULL);
    CK_NN(ctx, Jc);
    const lj_op *first = Jc;
    lj_op_free(&Jc);
    int64_t xr, xc;
    double *xv;
    CK_OK(ctx, lj_expr_eval(ctx, X, &xr, &xc, &xv));
    for (int64_t i = 0; i < xr * xc; i++) xv[i] *= 0.9;
    CK_OK(ctx, lj_expr_set_value(ctx, X, xv));
    Jc = lj_jacplan_eval(ctx, pc, NULL);
    CK_NN(ctx, Jc);
    ck_assert_int_eq(lj_jacplan_rebuilt(pc, NULL), 0);
    ck_assert_ptr_eq(Jc, first);
    lj_op *Kc = lj_expr_jacobian(ctx, c, X);
    CK_NN(ctx, Kc);
    int64_t nx = xr * xc;
    tmat ja = tm_new(nx, nx), ka = tm_new(nx, nx);
    CK_OK(ctx, lj_op_to_dense(ctx, Jc, ja.a, nx));
    CK_OK(ctx, lj_op_to_dense(ctx, Kc, ka.a, nx));
    ck_assert(memcmp(ja.a, ka.a, sizeof(double) * (size_t)(nx * nx)) == 0);
    tm_free(&ja);
    tm_free(&ka);
    lj_op_free(&Kc);
    lj_op_free(&Jc);
    lj_jacplan_free(&pc);
    for (int64_t i = 0; i < xr * xc; i++) xv[i] /= 0.9;
    CK_OK(ctx, lj_expr_set_value(ctx, X, xv));
    lj_free(xv);
    lj_expr_free(&c);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* J is built from the values its local Jacobians read, not from every
 * node's value: kron(X, Y) w.r.t. X needs Y alone, never the 8.1·10¹³
 * entries of the product. Operations that can fail on values are still
 * evaluated, so J exists exactly where the expression is defined. */
START_TEST(test_jacobian_without_value)
{
    env E = { lj_context_new(), 41, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = keep(&E, lj_expr_var(ctx, "X", 3000, 3000, NULL));
    lj_expr *Y = keep(&E, lj_expr_const(ctx, "Y", 3000, 3000, NULL));
    lj_expr *K = keep(&E, lj_expr_kron(ctx, X, Y));
    lj_op *J = lj_expr_jacobian(ctx, K, X);
    CK_NN(ctx, J);
    ck_assert(lj_op_rows(J) == 81000000000000LL && lj_op_cols(J) == 9000000);
    char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "(I_3000 ⊗ K_{3000,3000} ⊗ I_3000)·(I_9000000 ⊗ vec Y)");
    lj_free(s);
    lj_op_free(&J);
    /* the value itself cannot be had: a clear error, not a crash */
    int64_t r, c;
    double *v = NULL;
    ck_assert_int_ne(lj_expr_eval(ctx, K, &r, &c, &v), LJ_OK);
    lj_context_clear(ctx);
    /* a term that does not depend on the variable is not evaluated either */
    lj_expr *x = leaf(&E, "x", 4, 1, 0, true), *A = leaf(&E, "A", 4, 4, 0, false);
    lj_expr *big = keep(&E, lj_expr_trace(ctx, K));
    lj_expr *f = keep(&E, lj_expr_add(ctx, keep(&E, lj_expr_mul(ctx, A, x)), big));
    J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    lj_op_free(&J);
    /* a plan asked for J alone, then for the value too */
    lj_expr *g = keep(&E, lj_expr_func(ctx, LJ_FN_TANH, keep(&E, lj_expr_mul(ctx, A, x))));
    lj_jacplan *p = lj_jacplan_new(ctx, g, 1, (const lj_expr *const *)&x);
    CK_NN(ctx, p);
    lj_op *J1 = lj_jacplan_eval(ctx, p, NULL);
    double val[4];
    lj_op *J2 = lj_jacplan_eval(ctx, p, val);
    CK_NN(ctx, J1);
    CK_NN(ctx, J2);
    ck_assert(lj_op_equal(J1, J2));
    CK_OK(ctx, lj_expr_eval(ctx, g, &r, &c, &v));
    for (int i = 0; i < 4; i++) ck_assert(val[i] == v[i]);
    lj_free(v);
    lj_op_free(&J1);
    lj_op_free(&J2);
    lj_jacplan_free(&p);
    env_free(&E);
    /* domain errors of terms J does not read are still reported */
    double neg[4] = { 1, -1, 2, 3 };
    lj_expr *z = keep(&E, lj_expr_var(ctx, "z", 2, 2, NULL));
    lj_expr *C = keep(&E, lj_expr_const(ctx, "C", 2, 2, neg));
    lj_expr *h = keep(&E, lj_expr_add(ctx, z, keep(&E, lj_expr_func(ctx, LJ_FN_LOG, C))));
    ck_assert_ptr_null(lj_expr_jacobian(ctx, h, z));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "log");
    lj_expr *hd = keep(&E, lj_expr_add(ctx, z, keep(&E, lj_expr_inv(ctx, keep(&E, lj_expr_const(ctx, "Z0", 2, 2, NULL))))));
    ck_assert_ptr_null(lj_expr_jacobian(ctx, hd, z));
    ASSERT_ERR(ctx, LJ_ERR_SINGULAR, "inv");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* Every elementwise function of the table: the value against libm, the
 * Jacobian against central differences away from kinks and domain edges,
 * and the printed expression parsed back to the same text. */
static double ref_f(lj_func f, double x)
{
    switch (f) {
    case LJ_FN_EXP: return exp(x);
    case LJ_FN_LOG: return log(x);
    case LJ_FN_SIN: return sin(x);
    case LJ_FN_COS: return cos(x);
    case LJ_FN_TANH: return tanh(x);
    case LJ_FN_SQRT: return sqrt(x);
    case LJ_FN_ABS: return fabs(x);
    case LJ_FN_SIGN: return (x > 0) - (x < 0);
    case LJ_FN_RELU: return x > 0 ? x : 0;
    case LJ_FN_TAN: return tan(x);
    case LJ_FN_ASIN: return asin(x);
    case LJ_FN_ACOS: return acos(x);
    case LJ_FN_ATAN: return atan(x);
    case LJ_FN_SINH: return sinh(x);
    case LJ_FN_COSH: return cosh(x);
    case LJ_FN_SIGMOID: return 1 / (1 + exp(-x));
    case LJ_FN_SOFTPLUS: return log(1 + exp(x));
    case LJ_FN_LOG1P: return log1p(x);
    case LJ_FN_EXPM1: return expm1(x);
    }
    return NAN;
}

static const char *const fn_names[] = { "exp", "log", "sin", "cos", "tanh", "sqrt", "abs", "sign", "relu",
                                        "tan", "asin", "acos", "atan", "sinh", "cosh", "sigmoid",
                                        "softplus", "log1p", "expm1" };

START_TEST(test_functions)
{
    env E = { lj_context_new(), 900 + (uint64_t)_i, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_func f = (lj_func)_i;
    /* points inside every domain, away from 0 (the kinks) and from ±1 */
    tmat m = tm_rand(3, 4, &E.seed);
    for (int k = 0; k < 12; k++) {
        double u = m.a[k];
        m.a[k] = (u >= 0 ? 0.1 : -0.1) + 0.8 * u; /* |x| in [0.1, 0.9] */
        if (f == LJ_FN_LOG || f == LJ_FN_SQRT) m.a[k] = fabs(m.a[k]) + 0.2;
    }
    lj_expr *X = keep(&E, lj_expr_var(ctx, "X", 3, 4, m.a));
    lj_expr *F = keep(&E, lj_expr_func(ctx, f, X));
    int64_t r, c;
    double *v;
    CK_OK(ctx, lj_expr_eval(ctx, F, &r, &c, &v));
    for (int k = 0; k < 12; k++)
        ck_assert_msg(fabs(v[k] - ref_f(f, m.a[k])) <= 1e-14 * (1 + fabs(v[k])), "%s(%g) = %.17g, libm %.17g",
                      fn_names[f], m.a[k], v[k], ref_f(f, m.a[k]));
    lj_free(v);
    fd_ok(&E, F, X, 1e-7, fn_names[f]);
    /* through the language: the name, and the printed form parses back */
    lj_symtab *t = lj_symtab_new(ctx);
    CK_OK(ctx, lj_symtab_add(ctx, t, X));
    char text[64];
    snprintf(text, sizeof text, "%s(2*X) + X", fn_names[f]);
    int64_t pos;
    lj_expr *G = lj_parse(ctx, text, t, &pos);
    ck_assert_msg(G != NULL, "%s: %s", text, lj_context_message(ctx));
    char *s = lj_expr_print(ctx, G);
    ck_assert_str_eq(s, text);
    lj_free(s);
    lj_expr_free(&G);
    lj_symtab_free(&t);
    tm_free(&m);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* The derivative at kinks, pinned (PyTorch's conventions), and the domain
 * edges where the derivative is infinite. */
START_TEST(test_kink_conventions)
{
    env E = { lj_context_new(), 950, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    double x[4] = { 0.0, 2.0, -3.0, 0.0 }, y[4] = { 0.0, 1.0, -1.0, 5.0 };
    lj_expr *X = keep(&E, lj_expr_var(ctx, "X", 4, 1, x)), *Y = keep(&E, lj_expr_const(ctx, "Y", 4, 1, y));
    struct { lj_expr *f; double want[4]; const char *what; } cases[] = {
        { keep(&E, lj_expr_func(ctx, LJ_FN_ABS, X)), { 0, 1, -1, 0 }, "abs'(0) = 0" },
        { keep(&E, lj_expr_func(ctx, LJ_FN_RELU, X)), { 0, 1, 0, 0 }, "relu'(0) = 0" },
        { keep(&E, lj_expr_func(ctx, LJ_FN_SIGN, X)), { 0, 0, 0, 0 }, "sign' = 0" },
        { keep(&E, lj_expr_max(ctx, X, Y)), { 0.5, 1, 0, 0 }, "max: ½ at ties" },
        { keep(&E, lj_expr_min(ctx, X, Y)), { 0.5, 0, 1, 1 }, "min: ½ at ties" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lj_op *J = lj_expr_jacobian(ctx, cases[k].f, X);
        CK_NN(ctx, J);
        double d[16];
        CK_OK(ctx, lj_op_to_dense(ctx, J, d, 4));
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                ck_assert_msg(d[i + 4 * j] == (i == j ? cases[k].want[i] : 0.0), "%s: J[%d,%d] = %g",
                              cases[k].what, i, j, d[i + 4 * j]);
        lj_op_free(&J);
    }
    lj_op *Js = lj_expr_jacobian(ctx, cases[2].f, X);
    ck_assert_int_eq(lj_op_kind_of(Js), LJ_OP_ZERO); /* sign' is the zero operator */
    lj_op_free(&Js);
    /* norm1'(0) = 0 in each zero entry */
    lj_expr *n1 = keep(&E, lj_expr_norm1(ctx, X));
    double g[4];
    CK_OK(ctx, lj_expr_gradient(ctx, n1, X, g));
    ck_assert(g[0] == 0 && g[1] == 1 && g[2] == -1 && g[3] == 0);
    /* infinite slopes are errors, not infinities in J */
    double one[2] = { 1.0, 0.5 };
    lj_expr *U = keep(&E, lj_expr_var(ctx, "U", 2, 1, one));
    ck_assert_ptr_null(lj_expr_jacobian(ctx, keep(&E, lj_expr_func(ctx, LJ_FN_ASIN, U)), U));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "asin: not differentiable at 1");
    ck_assert_ptr_null(lj_expr_jacobian(ctx, keep(&E, lj_expr_func(ctx, LJ_FN_SQRT, X)), X));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "sqrt");
    /* values outside a domain */
    int64_t r, c;
    double *v = NULL;
    ck_assert_int_eq(lj_expr_eval(ctx, keep(&E, lj_expr_func(ctx, LJ_FN_LOG1P, keep(&E, lj_expr_scale(ctx, -1.0, Y)))), &r, &c, &v), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "log1p: argument -1 is not above -1");
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* The examples of matrixcalculus.org's documentation, parsed and
 * differentiated, each against central differences. */
START_TEST(test_matrixcalculus_examples)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    uint64_t seed = 4242;
    const struct { const char *name; int64_t r, c; int kind; } decl[] = {
        { "x", 4, 1, 0 }, { "y", 4, 1, 1 }, { "v", 4, 1, 0 }, { "A", 4, 4, 0 }, { "a", 1, 1, 1 },
        { "b", 1, 1, 0 }, { "X", 4, 4, 2 }, { "B", 4, 4, 0 }, { "C", 4, 4, 0 }, { "w", 3, 1, 0 },
        { "Z", 4, 3, 0 }, { "ys", 4, 1, 0 },
    };
    for (size_t i = 0; i < sizeof decl / sizeof decl[0]; i++) {
        tmat m = tm_rand(decl[i].r, decl[i].c, &seed);
        for (int64_t k = 0; k < m.r * m.c; k++) {
            if (decl[i].kind == 1) m.a[k] = 0.5 + fabs(m.a[k]);
            if (decl[i].kind == 2 && k % (m.r + 1) == 0) m.a[k] += 5.0; /* well-conditioned, det > 0 */
        }
        lj_expr *e = lj_expr_var(ctx, decl[i].name, decl[i].r, decl[i].c, m.a);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    const struct { const char *text, *wrt; } ex[] = {
        { "0.5*x'*A*x", "x" },
        { "A*exp(x)", "x" },
        { "(y.*v)'*x", "x" },
        { "a^b", "a" },
        { "a^b", "b" },
        { "norm1(A*x-y)", "x" },
        { "norm2(A*x-y)^2", "x" },
        { "sum(log(exp(-ys.*(Z*w)) + 1))", "w" },
        { "tr(A*X'*B*X*C)", "X" },
        { "log(det(inv(X)))", "X" },
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        int64_t pos;
        lj_expr *f = lj_parse(ctx, ex[i].text, t, &pos);
        ck_assert_msg(f != NULL, "%s: %s", ex[i].text, lj_context_message(ctx));
        lj_expr *x = lj_symtab_get(t, ex[i].wrt);
        double maxrel = -1, fro;
        CK_OK(ctx, lj_expr_fd_check(ctx, f, x, NULL, 0, &maxrel, &fro));
        ck_assert_msg(maxrel < 1e-6, "%s w.r.t. %s: finite differences differ by %g", ex[i].text, ex[i].wrt,
                      maxrel);
        lj_op *J = lj_expr_jacobian(ctx, f, x);
        CK_NN(ctx, J);
        double rel;
        CK_OK(ctx, lj_op_check(ctx, J, 3, &rel));
        ck_assert_msg(rel < 1e-12, "%s: operator check %g", ex[i].text, rel);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* The scalar power a^b, matrix powers, and eye. */
START_TEST(test_power_and_eye)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    uint64_t seed = 77;
    tmat m = tm_rand(3, 3, &seed);
    for (int i = 0; i < 3; i++) m.a[i * 4] += 4.0;
    double two = 2.0;
    lj_expr *X = lj_expr_var(ctx, "X", 3, 3, m.a), *R = lj_expr_var(ctx, "R", 2, 3, m.a);
    lj_expr *s = lj_expr_var(ctx, "s", 1, 1, &two);
    CK_OK(ctx, lj_symtab_add(ctx, t, X));
    CK_OK(ctx, lj_symtab_add(ctx, t, R));
    CK_OK(ctx, lj_symtab_add(ctx, t, s));
    const struct { const char *a, *b; } same[] = {
        { "X^2", "X*X" }, { "X^3 + X", "X*X*X + X" }, { "X^7", "X*X*X*X*X*X*X" }, { "-X^-3", "-inv(X)^3" }, { "X^0", "eye(3)" }, { "X^-1", "inv(X)" },
        { "X^-2", "inv(X)*inv(X)" }, { "X + eye", "X + eye(3)" }, { "eye*R'", "eye(3)*R'" },
        { "R*eye", "R*eye(3)" }, { "X - 2*eye'", "X - 2*eye(3)" }, { "s^2", "s.^2" }, { "2^s", "exp(s*log(2))" },
        { "eye(2)*R*eye", "R" }, { "-eye + X", "X - eye(3)" }, { "X + eye/s", "X + eye(3)/s" },
    };
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        int64_t pos;
        lj_expr *a = lj_parse(ctx, same[i].a, t, &pos), *b = lj_parse(ctx, same[i].b, t, &pos);
        ck_assert_msg(a && b, "%s / %s: %s", same[i].a, same[i].b, lj_context_message(ctx));
        tmat va, vb;
        CK_OK(ctx, lj_expr_eval(ctx, a, &va.r, &va.c, &va.a));
        CK_OK(ctx, lj_expr_eval(ctx, b, &vb.r, &vb.c, &vb.a));
        double big = 1.0;
        for (int64_t k = 0; k < va.r * va.c; k++) big = fmax(big, fabs(va.a[k]));
        ck_assert_msg(va.r == vb.r && va.c == vb.c && tm_maxdiff(va, vb) < 1e-13 * big, "%s ≠ %s", same[i].a,
                      same[i].b);
        double maxrel, fro;
        CK_OK(ctx, lj_expr_fd_check(ctx, a, lj_symtab_get(t, strchr(same[i].a, 's') ? "s" :
                                                      strchr(same[i].a, 'R') ? "R" : "X"), NULL, 0, &maxrel, &fro));
        ck_assert_msg(maxrel < 1e-6, "%s: finite differences %g", same[i].a, maxrel);
        /* printing round trip */
        char *p1 = lj_expr_print(ctx, a);
        lj_expr *a2 = lj_parse(ctx, p1, t, &pos);
        ck_assert_msg(a2 != NULL, "reparse '%s': %s", p1, lj_context_message(ctx));
        char *p2 = lj_expr_print(ctx, a2);
        ck_assert_str_eq(p1, p2);
        lj_free(p1);
        lj_free(p2);
        tm_free(&va);
        tm_free(&vb);
        lj_expr_free(&a);
        lj_expr_free(&a2);
        lj_expr_free(&b);
    }
    const struct { const char *text; lj_status code; int64_t pos; const char *frag; } bad[] = {
        { "R^2", LJ_ERR_SHAPE, 1, "power: '^' needs 1×1 operands or a square matrix" },
        { "X^1.5", LJ_ERR_SHAPE, 1, "constant integer" },
        { "X^s", LJ_ERR_SHAPE, 1, "constant integer" },
        { "s^X", LJ_ERR_SHAPE, 1, "(1×1)^(3×3)" },
        { "eye", LJ_ERR_SHAPE, 0, "eye: its size cannot be inferred" },
        { "R + eye", LJ_ERR_SHAPE, 2, "eye: no identity fits beside (2×3)" },
        { "tr(eye)", LJ_ERR_SHAPE, 0, "eye: its size cannot be inferred" },
        { "eye + eye", LJ_ERR_SHAPE, 4, "eye: its size cannot be inferred" },
        { "eye(s)", LJ_ERR_PARSE, 0, "eye(n) needs a constant non-negative integer" },
        { "eye(-1)", LJ_ERR_PARSE, 0, "eye(n)" },
        { "max(X)", LJ_ERR_PARSE, 0, "'max' takes 2 arguments, got 1" },
        { "max(X, R)", LJ_ERR_SHAPE, 0, "max: shapes differ: (3×3) and (2×3)" },
        { "norm1(X, X)", LJ_ERR_PARSE, 9, "got more" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t pos = 99;
        lj_context_clear(ctx);
        ck_assert_ptr_null(lj_parse(ctx, bad[i].text, t, &pos));
        ck_assert_msg(lj_context_status(ctx) == bad[i].code, "'%s': status %d: %s", bad[i].text,
                      (int)lj_context_status(ctx), lj_context_message(ctx));
        ck_assert_msg(strstr(lj_context_message(ctx), bad[i].frag) != NULL, "'%s': '%s' lacks '%s'", bad[i].text,
                      lj_context_message(ctx), bad[i].frag);
        ck_assert_msg(pos == bad[i].pos, "'%s': position %lld, want %lld", bad[i].text, (long long)pos,
                      (long long)bad[i].pos);
    }
    /* the API's constructors and their errors */
    lj_expr *E3 = lj_expr_eye(ctx, 3);
    CK_NN(ctx, E3);
    ck_assert_ptr_null(lj_expr_eye(ctx, -1));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "eye: bad size -1");
    ck_assert_ptr_null(lj_expr_power(ctx, X, s));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "power");
    ck_assert_ptr_null(lj_expr_max(ctx, NULL, s));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "max: operand 1 is NULL");
    ck_assert_ptr_null(lj_expr_norm1(ctx, NULL));
    ck_assert_ptr_null(lj_expr_func(ctx, (lj_func)99, X));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "func: unknown function 99");
    ck_assert_ptr_null(lj_expr_mpower(ctx, R, 2));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "mpower: a matrix power needs a square matrix, not (2×3)^2");
    ck_assert_ptr_null(lj_expr_mpower(ctx, X, LJ_MPOWER_MAX + 1));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "mpower: the exponent 1025 is outside -1024..1024");
    ck_assert_ptr_null(lj_expr_mpower(ctx, NULL, 2));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "mpower: operand 1 is NULL");
    /* a matrix power prints as one: what it prints nests no deeper than
     * what was written (200 signs, the parser's limit, before A^942) */
    const struct { int64_t n; const char *text; } pw[] = { { 3, "X^3" }, { -3, "X^-3" }, { 1, "X" },
                                                          { 0, "eye(3)" }, { -1, "inv(X)" }, { 942, "X^942" } };
    for (size_t i = 0; i < sizeof pw / sizeof pw[0]; i++) {
        lj_expr *P = lj_expr_mpower(ctx, X, pw[i].n);
        CK_NN(ctx, P);
        char *p = lj_expr_print(ctx, P);
        ck_assert_str_eq(p, pw[i].text);
        lj_free(p);
        lj_expr_free(&P);
    }
    /* a matrix power as a product's first factor is written as the power */
    lj_expr *P3 = lj_expr_mpower(ctx, X, 3), *X3X = lj_expr_mul(ctx, P3, X);
    CK_NN(ctx, X3X);
    char *p3 = lj_expr_print(ctx, X3X);
    ck_assert_str_eq(p3, "X^3*X");
    lj_free(p3);
    lj_expr_free(&P3);
    lj_expr_free(&X3X);
    char deep[256];
    memset(deep, '-', 199);
    strcpy(deep + 199, "X^942");
    int64_t dpos;
    lj_expr *D = lj_parse(ctx, deep, t, &dpos);
    CK_NN(ctx, D);
    char *dp = lj_expr_print(ctx, D);
    lj_expr *D2 = lj_parse(ctx, dp, t, &dpos);
    ck_assert_msg(D2 != NULL, "reparse: %s", lj_context_message(ctx));
    lj_free(dp);
    lj_expr_free(&D);
    lj_expr_free(&D2);
    /* powers of powers with a Diag inside: each power's J is its sum of
     * Kronecker products times the inner J, which it shares, so J stays
     * as large as the expression (written out term by term, J grew as
     * the product of the powers, ~10^6 paths) */
    lj_expr *N = lj_parse(ctx, "((sin(X)^95 - X)^93 - X)^95", t, &dpos);
    CK_NN(ctx, N);
    lj_op *JN = lj_expr_jacobian(ctx, N, X);
    CK_NN(ctx, JN);
    char *pn = lj_op_print(ctx, JN, LJ_PRINT_UNICODE);
    CK_NN(ctx, pn);
    ck_assert_msg(strlen(pn) < 64 * 1024, "length %zu", strlen(pn));
    lj_free(pn);
    int exact;
    double fl, by;
    ck_assert_int_eq(lj_op_nnz(ctx, JN, &exact), 9 * 9);
    CK_OK(ctx, lj_op_cost(ctx, JN, &fl, &by));
    ck_assert_msg(fl < 1e5 && fl > 0, "cost %g", fl);
    lj_op_free(&JN);
    lj_expr_free(&N);
    /* a J whose shared subtrees sit between other factors stays shared:
     * S_{k+1} = D_1·S_k·D_2 + D_3·S_k·D_4 has 2^30 paths to S_0. The print
     * is cut, in each format; nnz and cost visit each node once, with the
     * answers of the tree */
    lj_op *S;
    {
        double dv[4][9], av[81];
        for (int i = 0; i < 81; i++) av[i] = 0.5 + 0.01 * i;
        lj_op *Dg[4];
        for (int k = 0; k < 4; k++) {
            for (int i = 0; i < 9; i++) dv[k][i] = 1.0 + 0.1 * (k + 1) + 0.01 * i;
            char name[32];
            snprintf(name, sizeof name, "vec(a_%d + b_%d)", k + 1, k + 1);
            Dg[k] = lj_op_diag(ctx, 9, dv[k], name);
            CK_NN(ctx, Dg[k]);
        }
        lj_op *A = lj_op_dense(ctx, 9, 9, av, 9, "M");
        CK_NN(ctx, A);
        S = A;
        for (int level = 0; level < 30; level++) {
            const lj_op *f1[3] = { Dg[0], S, Dg[1] }, *f2[3] = { Dg[2], S, Dg[3] };
            lj_op *T1 = lj_op_compose(ctx, 3, f1), *T2 = lj_op_compose(ctx, 3, f2);
            CK_NN(ctx, T1);
            CK_NN(ctx, T2);
            lj_op *S2 = lj_op_add(ctx, T1, T2);
            CK_NN(ctx, S2);
            lj_op_free(&T1);
            lj_op_free(&T2);
            lj_op_free(&S);
            S = S2;
        }
        for (int k = 0; k < 4; k++) lj_op_free(&Dg[k]);
    }
    pn = lj_op_print(ctx, S, LJ_PRINT_PLAIN);
    CK_NN(ctx, pn);
    size_t ln = strlen(pn);
    ck_assert_msg(ln <= LJ_PRINT_MAX + 3 && ln > LJ_PRINT_MAX - 8 && strcmp(pn + ln - 3, "...") == 0, "length %zu", ln);
    lj_free(pn);
    pn = lj_op_print(ctx, S, LJ_PRINT_UNICODE);
    CK_NN(ctx, pn);
    ln = strlen(pn);
    ck_assert_msg(ln <= LJ_PRINT_MAX + 3 && strcmp(pn + ln - 3, "…") == 0, "length %zu", ln);
    lj_free(pn);
    pn = lj_op_print(ctx, S, LJ_PRINT_LATEX); /* cut outside a braced group */
    CK_NN(ctx, pn);
    ln = strlen(pn);
    ck_assert_msg(ln <= LJ_PRINT_MAX + 6 && strcmp(pn + ln - 6, "\\ldots") == 0, "length %zu", ln);
    int curly = 0;
    for (const char *c = pn; *c; c++) curly += *c == '{' ? 1 : *c == '}' ? -1 : 0;
    ck_assert_int_eq(curly, 0);
    lj_free(pn);
    ck_assert_int_eq(lj_op_nnz(ctx, S, &exact), 9 * 9);
    CK_OK(ctx, lj_op_cost(ctx, S, &fl, &by));
    ck_assert_msg(fl > 1e6 && isfinite(fl), "cost %g", fl);
    char *tr = lj_op_tree(ctx, S);
    CK_NN(ctx, tr);
    lj_free(tr);
    /* materialised once per shared node (a tree walk would multiply out
     * 2^30 products, minutes): S_30 = M ∘ (d_1·d_2^T + d_3·d_4^T)^{∘30}, entrywise */
    cholmod_sparse *Ms = lj_op_to_sparse(ctx, S);
    CK_NN(ctx, Ms);
    ck_assert_int_eq((int64_t)Ms->nrow, 9);
    const int64_t *mp = Ms->p, *mi = Ms->i;
    const double *mx = Ms->x;
    ck_assert_int_eq(mp[9], 81);
    for (int j = 0; j < 9; j++)
        for (int64_t q = mp[j]; q < mp[j + 1]; q++) {
            int64_t i = mi[q];
            double f = 1.0, d[4];
            for (int k = 0; k < 4; k++) d[k] = 1.0 + 0.1 * (k + 1) + 0.01 * (double)(k % 2 ? j : i);
            for (int level = 0; level < 30; level++) f *= d[0] * d[1] + d[2] * d[3];
            double want = (0.5 + 0.01 * (double)(i + 9 * j)) * f;
            ck_assert_msg(fabs(mx[q] - want) <= 1e-12 * fabs(want), "S_30(%d,%d) %g, want %g", (int)i, j, mx[q], want);
        }
    /* densely and as CSR the same, the shared nodes materialised once, and
     * J^T (which CSR materialises) made with one transpose per node */
    double dense[81];
    CK_OK(ctx, lj_op_to_dense(ctx, S, dense, 9));
    lj_csr *csr = lj_op_to_csr(ctx, S);
    CK_NN(ctx, csr);
    ck_assert_int_eq(csr->nnz, 81);
    for (int j = 0; j < 9; j++)
        for (int64_t q = mp[j]; q < mp[j + 1]; q++) {
            double v = csr->values[csr->rowptr[mi[q]] + j]; /* J^T's walk: products in another order */
            ck_assert_msg(fabs(dense[mi[q] + 9 * j] - mx[q]) <= 1e-13 * fabs(mx[q]), "dense (%d,%d)", (int)mi[q], j);
            ck_assert_msg(csr->colind[csr->rowptr[mi[q]] + j] == j && fabs(v - mx[q]) <= 1e-13 * fabs(mx[q]),
                          "csr (%d,%d): %g, want %g", (int)mi[q], j, v, mx[q]);
        }
    lj_csr_free(&csr);
    lj_sparse_free(ctx, &Ms);
    lj_op_free(&S);
    /* equal operators that share subtrees are compared once per pair of
     * nodes (a fuzz input: the sum of two such Jacobians took minutes) */
    lj_expr *N2 = lj_parse(ctx, "------min(X --4,-3---min(X, ------5--2- ------2--2--min(X, -4---3--min(X, "
                                "------0-X)^95-X)^93-X)^94-X)^93---2--min(X --4,-3---min(X, ------5--2- ------2--2"
                                "--min(X, -4---3--min(X, ------0-X)^95-X)^93-X)^94-X)^93", t, &dpos);
    CK_NN(ctx, N2);
    lj_op *JN2 = lj_expr_jacobian(ctx, N2, X);
    CK_NN(ctx, JN2);
    lj_op_free(&JN2);
    lj_expr_free(&N2);
    /* the Jacobian's labels say X^2, not X·X */
    lj_expr *X3 = lj_expr_mpower(ctx, X, 3);
    lj_op *J3 = lj_expr_jacobian(ctx, X3, X);
    CK_NN(ctx, J3);
    char *j3 = lj_op_print(ctx, J3, LJ_PRINT_UNICODE);
    ck_assert_msg(strstr(j3, "(X^2)^T ⊗ I_3") != NULL, "%s", j3);
    lj_free(j3);
    lj_op_free(&J3);
    lj_expr_free(&X3);
    lj_expr_free(&E3);
    lj_expr_free(&X);
    lj_expr_free(&R);
    lj_expr_free(&s);
    tm_free(&m);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A plan re-evaluates J and the value as the leaves change. */
START_TEST(test_jacobian_plan)
{
    env E = { lj_context_new(), 650, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *U = leaf(&E, "U", 5, 2, 0, true), *V = leaf(&E, "V", 4, 2, 0, true), *A = leaf(&E, "A", 5, 4, 0, false);
    lj_expr *Vt = keep(&E, lj_expr_transpose(ctx, V)), *UV = keep(&E, lj_expr_mul(ctx, U, Vt));
    lj_expr *R = keep(&E, lj_expr_sub(ctx, UV, A)), *T = keep(&E, lj_expr_func(ctx, LJ_FN_TANH, R));
    const lj_expr *vars[2] = { U, V };
    lj_jacplan *p = lj_jacplan_new(ctx, T, 2, vars);
    CK_NN(ctx, p);
    for (int round = 0; round < 3; round++) {
        double val[20], nu[10], nv[8];
        lj_op *J = lj_jacplan_eval(ctx, p, val);
        CK_NN(ctx, J);
        lj_op *K = lj_expr_jacobian_n(ctx, T, 2, vars);
        tmat Jd = tm_new(20, 18), Kd = tm_new(20, 18);
        CK_OK(ctx, lj_op_to_dense(ctx, J, Jd.a, 20));
        CK_OK(ctx, lj_op_to_dense(ctx, K, Kd.a, 20));
        ck_assert(tm_maxdiff(Jd, Kd) == 0.0);
        int64_t r, c;
        double *ev;
        CK_OK(ctx, lj_expr_eval(ctx, T, &r, &c, &ev));
        for (int i = 0; i < 20; i++) ck_assert(ev[i] == val[i]);
        lj_free(ev);
        tm_free(&Jd);
        tm_free(&Kd);
        lj_op_free(&J);
        lj_op_free(&K);
        for (int i = 0; i < 10; i++) nu[i] = urand(&E.seed);
        for (int i = 0; i < 8; i++) nv[i] = urand(&E.seed);
        CK_OK(ctx, lj_expr_set_value(ctx, U, nu));
        CK_OK(ctx, lj_expr_set_value(ctx, V, nv));
    }
    lj_jacplan_free(&p);
    lj_jacplan_free(&p);
    /* a variable the expression does not contain: a zero block */
    lj_expr *W = leaf(&E, "W", 3, 1, 0, true);
    const lj_expr *uw[2] = { U, W };
    p = lj_jacplan_new(ctx, T, 2, uw);
    lj_op *J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J);
    ck_assert_int_eq(lj_op_kind_of(lj_op_child(J, 1)), LJ_OP_ZERO);
    lj_op_free(&J);
    lj_jacplan_free(&p);
    ck_assert_ptr_null(lj_jacplan_new(ctx, T, 1, (const lj_expr *const *)&A));
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "'A' is a constant"));
    ck_assert_ptr_null(lj_jacplan_new(ctx, NULL, 1, vars));
    ck_assert_ptr_null(lj_jacplan_eval(ctx, NULL, NULL));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_INVALID);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* A plan updates J in place when the caller released it: for the seeds'
 * forms and for each kind of recorded step (a copy of a value, an
 * elementwise derivative, a function's derivative, a product of Diags, a
 * dense product multiplied out), over several rounds of new values, the
 * same operator comes back with the numbers and the print of a fresh
 * build. */
START_TEST(test_jacobian_plan_in_place)
{
    env E = { lj_context_new(), 4242, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *leaves[] = { leaf(&E, "A", 4, 4, 1, true), leaf(&E, "B", 4, 4, 1, false), leaf(&E, "C", 4, 4, 1, false),
                          leaf(&E, "W", 4, 4, 0, true), leaf(&E, "Q", 4, 4, 0, false), leaf(&E, "X", 4, 4, 0, true),
                          leaf(&E, "x", 4, 1, 0, true), leaf(&E, "b", 4, 1, 0, false) };
    for (int i = 0; i < 8; i++) CK_OK(ctx, lj_symtab_add(ctx, t, leaves[i]));
    static const struct { const char *text, *wrt; } cases[] = {
        { "W*(A.*B)", "A" },            /* seed 000: (I ⊗ W)·Diag(vec B) */
        { "(x*x').*B", "x" },           /* seed 001 */
        { "sum(sum((Q.*W)*b))", "W" },  /* seed 002 */
        { "A*X + X*A' - X*B*X", "X" }, /* seed 003: (X^T·B^T) ⊗ I multiplied out */
        { "exp(A).*B", "A" },           /* a product of Diags */
        { "A.*B.*C", "A" },
        { "(A.^3)./B", "A" },
        { "sin(A)*B", "A" },
        { "max(A,B)", "A" },
        { "B./A", "A" },
        { "A.*C + C.*A", "A" },         /* like terms of one value */
        { "x'*x", "x" },
        { "X*X'", "X" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lj_expr *f = lj_parse(ctx, cases[i].text, t, NULL);
        CK_NN(ctx, f);
        lj_expr *x = lj_symtab_get(t, cases[i].wrt);
        int64_t m = lj_expr_nvalues(f), n = lj_expr_nvalues(x), r, c;
        lj_jacplan *p = lj_jacplan_new(ctx, f, 1, (const lj_expr *const *)&x);
        CK_NN(ctx, p);
        const lj_op *first = NULL;
        double *v0;
        CK_OK(ctx, lj_expr_eval(ctx, x, &r, &c, &v0));
        for (int round = 0; round < 4; round++) {
            double val[16];
            lj_op *J = lj_jacplan_eval(ctx, p, val);
            CK_NN(ctx, J);
            const char *why;
            ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), round == 0);
            if (round == 0) first = J;
            ck_assert_msg(J == first, "%s: round %d built J anew: %s", cases[i].text, round, why);
            lj_op *K = lj_expr_jacobian(ctx, f, x);
            CK_NN(ctx, K);
            tmat a = tm_new(m, n), k = tm_new(m, n);
            CK_OK(ctx, lj_op_to_dense(ctx, J, a.a, m));
            CK_OK(ctx, lj_op_to_dense(ctx, K, k.a, m));
            ck_assert_msg(memcmp(a.a, k.a, sizeof(double) * (size_t)(m * n)) == 0, "%s: round %d differs by %g",
                          cases[i].text, round, tm_maxdiff(a, k));
            char *pj = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *pk = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
            ck_assert_str_eq(pj, pk);
            double rel;
            CK_OK(ctx, lj_op_check(ctx, J, 3, &rel)); /* apply, transpose-apply and CSC agree after the update */
            ck_assert(rel < 1e-12);
            double *ev;
            CK_OK(ctx, lj_expr_eval(ctx, f, &r, &c, &ev));
            ck_assert(memcmp(ev, val, sizeof(double) * (size_t)m) == 0);
            lj_free(ev);
            lj_free(pj);
            lj_free(pk);
            tm_free(&a);
            tm_free(&k);
            lj_op_free(&K);
            lj_op_free(&J);
            double nv[16];
            for (int64_t q = 0; q < n; q++) nv[q] = v0[q] * (1.0 + 0.05 * urand(&E.seed)) + (round == 1 ? 0.01 : 0);
            CK_OK(ctx, lj_expr_set_value(ctx, x, nv));
        }
        int64_t builds, updates;
        CK_OK(ctx, lj_jacplan_counts(ctx, p, &builds, &updates));
        ck_assert_int_eq(builds, 1);
        ck_assert_int_eq(updates, 3);
        CK_OK(ctx, lj_expr_set_value(ctx, x, v0));
        lj_free(v0);
        lj_jacplan_free(&p);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* When a plan cannot update J in place it builds J anew, says why, and
 * the result is still exact: a J the caller holds (which must not change),
 * a Diag of ones that stops being ones and becomes ones again, a value
 * leaving a derivative's domain, a derivative with no recorded step. */
START_TEST(test_jacobian_plan_rebuilds)
{
    env E = { lj_context_new(), 99, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *A = leaf(&E, "A", 3, 3, 1, true), *W = leaf(&E, "W", 3, 3, 0, false);
    static const double ones[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, other[9] = { 1, 2, 1, 1, 1, 1, 1, 1, 1 };
    lj_expr *U = keep(&E, lj_expr_const(ctx, "U", 3, 3, ones));
    lj_expr *AU = keep(&E, lj_expr_hadamard(ctx, A, U)), *F = keep(&E, lj_expr_mul(ctx, W, AU));
    lj_jacplan *p = lj_jacplan_new(ctx, F, 1, (const lj_expr *const *)&A);
    const char *why;
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), -1);
    lj_op *J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    char *s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "I_3 ⊗ W"); /* Diag(vec U) of ones is I */
    lj_free(s);
    /* J1 held: the next J is another operator, and J1 keeps its numbers */
    tmat d1 = tm_new(9, 9), d1b = tm_new(9, 9);
    CK_OK(ctx, lj_op_to_dense(ctx, J1, d1.a, 9));
    double a2[9];
    for (int i = 0; i < 9; i++) a2[i] = 1.0 + 0.1 * i;
    CK_OK(ctx, lj_expr_set_value(ctx, A, a2));
    lj_op *J2 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J2);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "the previous J was still held");
    ck_assert_ptr_ne(J1, J2);
    CK_OK(ctx, lj_op_to_dense(ctx, J1, d1b.a, 9));
    ck_assert(tm_maxdiff(d1, d1b) == 0.0);
    lj_op_free(&J1);
    lj_op_free(&J2);
    /* U stops being all ones: a fresh build gives Diag(vec U) */
    CK_OK(ctx, lj_expr_set_value(ctx, U, other));
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_ptr_nonnull(strstr(why, "ones"));
    s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "(I_3 ⊗ W)·Diag(vec U)");
    lj_free(s);
    lj_op_free(&J1);
    J1 = lj_jacplan_eval(ctx, p, NULL); /* unchanged: in place */
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 0);
    lj_op_free(&J1);
    /* and back to ones: the Diag is I again */
    CK_OK(ctx, lj_expr_set_value(ctx, U, ones));
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "a Diag's entries became all ones (a fresh build makes it I)");
    s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "I_3 ⊗ W");
    lj_free(s);
    lj_op_free(&J1);
    lj_jacplan_free(&p);
    /* a caller who holds each J until the next is made (a PETSc shell
     * swapping its operator): from the third evaluation the plan updates
     * the J released before, and the one held never changes */
    CK_OK(ctx, lj_expr_set_value(ctx, U, other));
    p = lj_jacplan_new(ctx, F, 1, (const lj_expr *const *)&A);
    lj_op *prev = NULL;
    tmat held = tm_new(9, 9), now = tm_new(9, 9), fresh = tm_new(9, 9);
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < 9; i++) a2[i] = 1.0 + 0.1 * i + 0.01 * round;
        CK_OK(ctx, lj_expr_set_value(ctx, A, a2));
        lj_op *Jn = lj_jacplan_eval(ctx, p, NULL);
        CK_NN(ctx, Jn);
        ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), round < 2);
        if (prev) {
            CK_OK(ctx, lj_op_to_dense(ctx, prev, now.a, 9));
            ck_assert(tm_maxdiff(held, now) == 0.0); /* the held J kept its numbers */
        }
        lj_op *K = lj_expr_jacobian(ctx, F, A);
        CK_OK(ctx, lj_op_to_dense(ctx, K, fresh.a, 9));
        CK_OK(ctx, lj_op_to_dense(ctx, Jn, held.a, 9));
        ck_assert(memcmp(held.a, fresh.a, sizeof(double) * 81) == 0);
        lj_op_free(&K);
        lj_op_free(&prev);
        prev = Jn;
    }
    lj_op_free(&prev);
    lj_jacplan_free(&p);
    tm_free(&held);
    tm_free(&now);
    tm_free(&fresh);
    /* two terms of a sum that become equal: a fresh build merges them */
    lj_expr *AW = keep(&E, lj_expr_hadamard(ctx, A, W)), *AU2 = keep(&E, lj_expr_hadamard(ctx, A, U));
    lj_expr *S2 = keep(&E, lj_expr_add(ctx, AW, AU2));
    p = lj_jacplan_new(ctx, S2, 1, (const lj_expr *const *)&A);
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "Diag(vec W) + Diag(vec U)");
    lj_free(s);
    lj_op_free(&J1);
    int64_t wr, wc;
    double *wv;
    CK_OK(ctx, lj_expr_eval(ctx, W, &wr, &wc, &wv));
    CK_OK(ctx, lj_expr_set_value(ctx, U, wv));
    lj_free(wv);
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "two terms of a sum became equal (a fresh build merges them)");
    lj_op *K2 = lj_expr_jacobian(ctx, S2, A);
    char *s1 = lj_op_print(ctx, J1, LJ_PRINT_UNICODE), *s2 = lj_op_print(ctx, K2, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s1, s2);
    lj_free(s1);
    lj_free(s2);
    lj_op_free(&K2);
    lj_op_free(&J1);
    lj_jacplan_free(&p);
    CK_OK(ctx, lj_expr_set_value(ctx, U, other));
    /* sqrt'(0) does not exist: updating in place must not hide it */
    lj_expr *R = keep(&E, lj_expr_func(ctx, LJ_FN_SQRT, A));
    p = lj_jacplan_new(ctx, R, 1, (const lj_expr *const *)&A);
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    lj_op_free(&J1);
    a2[4] = 0.0;
    CK_OK(ctx, lj_expr_set_value(ctx, A, a2));
    ck_assert_ptr_null(lj_jacplan_eval(ctx, p, NULL));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_DOMAIN);
    a2[4] = 2.0;
    CK_OK(ctx, lj_expr_set_value(ctx, A, a2));
    J1 = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J1);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    lj_op_free(&J1);
    J1 = lj_jacplan_eval(ctx, p, NULL);
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 0);
    lj_op_free(&J1);
    lj_jacplan_free(&p);
    /* s·x: the scaling is a value, no step recomputes it; built every time */
    lj_expr *x = leaf(&E, "x", 3, 1, 0, true), *sc = leaf(&E, "s", 1, 1, 1, true);
    lj_expr *xs = keep(&E, lj_expr_mul(ctx, x, sc));
    p = lj_jacplan_new(ctx, xs, 1, (const lj_expr *const *)&x);
    for (int round = 0; round < 2; round++) {
        J1 = lj_jacplan_eval(ctx, p, NULL);
        CK_NN(ctx, J1);
        ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
        if (round) ck_assert_str_eq(why, "a local Jacobian computed from values by hand");
        lj_op_free(&J1);
    }
    int64_t builds = -1, updates = -1;
    CK_OK(ctx, lj_jacplan_counts(ctx, p, &builds, NULL));
    CK_OK(ctx, lj_jacplan_counts(ctx, p, NULL, &updates));
    ck_assert_int_eq(builds, 2);
    ck_assert_int_eq(updates, 0);
    lj_jacplan_free(&p);
    /* errors */
    ck_assert_int_eq(lj_jacplan_rebuilt(NULL, &why), -1);
    ck_assert_str_eq(why, "NULL plan");
    ck_assert_int_eq(lj_jacplan_rebuilt(NULL, NULL), -1);
    ck_assert_int_eq(lj_jacplan_counts(ctx, NULL, &builds, &updates), LJ_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "jacplan_counts: NULL plan"));
    ck_assert_int_eq(lj_jacplan_counts(NULL, NULL, NULL, NULL), LJ_ERR_INVALID);
    tm_free(&d1);
    tm_free(&d1b);
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* A symbol table of random variables A, B (3×3), x (3×1), and X (3×3)
 * where withX. */
static lj_symtab *symtab_3x3(lj_context *ctx, uint64_t seed, bool withX)
{
    lj_symtab *t = lj_symtab_new(ctx);
    const struct { const char *name; int64_t r, c; } decl[] = { { "A", 3, 3 }, { "X", 3, 3 }, { "B", 3, 3 }, { "x", 3, 1 } };
    for (int i = 0; i < 4; i++) {
        if (i == 1 && !withX) continue;
        tmat m = tm_rand(decl[i].r, decl[i].c, &seed);
        lj_expr *e = lj_expr_var(ctx, decl[i].name, decl[i].r, decl[i].c, m.a);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    return t;
}

/* u and p (freed here) are the Unicode and plain forms wanted for expr */
static void forms_are(char *u, char *p, const char *uni, const char *plain, const char *expr)
{
    ck_assert_msg(u && strcmp(u, uni) == 0, "%s: '%s', want '%s'", expr, u ? u : "(null)", uni);
    ck_assert_msg(p && strcmp(p, plain) == 0, "%s: '%s', want '%s'", expr, p ? p : "(null)", plain);
    lj_free(u);
    lj_free(p);
}

/* Gradients print as matrices where the structure allows. */
START_TEST(test_gradient_forms)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 5, true);
    const struct { const char *expr, *wrt, *uni, *plain; } cases[] = {
        { "tr(A*X*B)", "X", "A^T B^T", "A'*B'" },
        { "sum(A.*X)", "X", "A", "A" },
        { "x'*A*x", "x", "A·x + A^T·x", "A*x + A'*x" }, /* the value's row (x^T·A) transposed: A^T·x */
        { "2*sum(X)", "X", "2·(1_3 1_3^T)", "2*(1_3*1_3')" },
        { "tr(X)", "X", "I_3", "I_3" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t pos;
        lj_expr *f = lj_parse(ctx, cases[i].expr, t, &pos), *x = lj_symtab_get(t, cases[i].wrt);
        CK_NN(ctx, f);
        lj_op *J = lj_expr_jacobian(ctx, f, x);
        char *u = lj_op_print_gradient(ctx, J, lj_expr_rows(x), lj_expr_cols(x), LJ_PRINT_UNICODE);
        char *p = lj_op_print_gradient(ctx, J, lj_expr_rows(x), lj_expr_cols(x), LJ_PRINT_PLAIN);
        forms_are(u, p, cases[i].uni, cases[i].plain, cases[i].expr);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* expr parsed over t (returned), its J with respect to wrt printed as uni
 * and plain, and right against central differences */
static lj_expr *jacobian_forms_ok(lj_context *ctx, lj_symtab *t, const char *expr, const char *wrt, const char *uni,
                                  const char *plain)
{
    int64_t pos;
    lj_expr *f = lj_parse(ctx, expr, t, &pos), *x = lj_symtab_get(t, wrt);
    CK_NN(ctx, f);
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    char *u = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *p = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
    forms_are(u, p, uni, plain, expr);
    double maxrel = -1, fro = -1;
    CK_OK(ctx, lj_expr_fd_check(ctx, f, x, NULL, 0, &maxrel, &fro));
    ck_assert_msg(maxrel < 1e-6, "%s: finite differences differ by %g", expr, maxrel);
    lj_op_free(&J);
    return f;
}

/* the same, and a plan's J after wrt moved against a fresh one (seed: the
 * move's) */
static void jacobian_forms_plan_ok(lj_context *ctx, lj_symtab *t, const char *expr, const char *wrt,
                                   const char *uni, const char *plain, uint64_t seed)
{
    lj_expr *f = jacobian_forms_ok(ctx, t, expr, wrt, uni, plain);
    env E = { ctx, seed, { 0 }, 0 };
    plan_ok(&E, f, lj_symtab_get(t, wrt), expr);
    lj_expr_free(&f);
}

/* A Kronecker product multiplies into a sum whose terms begin (end) with
 * Kronecker products it folds with (all but at most one): J reads as the
 * Cookbook's sum of Kronecker products, and applies fewer of them. A
 * product of labelled factors prints flat. Each J against central
 * differences, and a plan's J after X moved against a fresh one. */
START_TEST(test_kron_into_sums)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 23, true);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        /* transposed powers of one matrix multiply out as one: (X^2)^T; a
         * value X*X is labelled X^2 as well */
        { "X*X*X", "((X^2)^T ⊗ I_3) + (X^T ⊗ X) + (I_3 ⊗ X^2)", "((X^2)' kron I_3) + (X' kron X) + (I_3 kron X^2)" },
        { "X*X*X*X", "((X^3)^T ⊗ I_3) + ((X^2)^T ⊗ X) + (X^T ⊗ X^2) + (I_3 ⊗ X^3)",
          "((X^3)' kron I_3) + ((X^2)' kron X) + (X' kron X^2) + (I_3 kron X^3)" },
        /* a value's atomic label without brackets: X^2 ⊗ …, was (X^2) */
        { "X^4", "((X^3)^T ⊗ I_3) + ((X^2)^T ⊗ X) + (X^T ⊗ X^2) + (I_3 ⊗ X^3)",
          "((X^3)' kron I_3) + ((X^2)' kron X) + (X' kron X^2) + (I_3 kron X^3)" },
        { "X^5", "((X^4)^T ⊗ I_3) + ((X^3)^T ⊗ X) + ((X^2)^T ⊗ X^2) + (X^T ⊗ X^3) + (I_3 ⊗ X^4)",
          "((X^4)' kron I_3) + ((X^3)' kron X) + ((X^2)' kron X^2) + (X' kron X^3) + (I_3 kron X^4)" },
        { "X'*X'*X", "((X^T·X) ⊗ I_3)·K_{3,3} + (X^T ⊗ X^T)·K_{3,3} + (I_3 ⊗ (X^T)^2)",
          "((X'*X) kron I_3)*K_{3,3} + (X' kron X')*K_{3,3} + (I_3 kron (X')^2)" },
        /* a term ending with a commutation folds too */
        { "A*X'*X*B", "((B^T·X^T) ⊗ A)·K_{3,3} + (B^T ⊗ (A·X^T))", "((B'*X') kron A)*K_{3,3} + (B' kron (A*X'))" },
        { "(A*X)*(B*X)", "((B·X)^T ⊗ A) + (I_3 ⊗ (A·X·B))", "((B*X)' kron A) + (I_3 kron (A*X*B))" },
        /* a product's brackets go inside a factor: X·(A + X^T·X)^{-T}·X^T */
        { "X*inv(A+X'*X)*X'",
          "((X·(A + X^T·X)^{-T}) ⊗ I_3) − ((X·(A + X^T·X)^{-T}·X^T) ⊗ (X·(A + X^T·X)^{-1}))·K_{3,3} − "
          "((X·(A + X^T·X)^{-T}) ⊗ (X·(A + X^T·X)^{-1}·X^T)) + (I_3 ⊗ (X·(A + X^T·X)^{-1}))·K_{3,3}",
          "((X*(A + X'*X)^{-T}) kron I_3) - ((X*(A + X'*X)^{-T}*X') kron (X*(A + X'*X)^{-1}))*K_{3,3} - "
          "((X*(A + X'*X)^{-T}) kron (X*(A + X'*X)^{-1}*X')) + (I_3 kron (X*(A + X'*X)^{-1}))*K_{3,3}" },
        /* a Diag term does not fold: the Kronecker product stays before the sum */
        { "X*(X.*A + X)", "((X ∘ A + X)^T ⊗ I_3) + (I_3 ⊗ X)·(Diag(vec A) + I_9)",
          "((X .* A + X)' kron I_3) + (I_3 kron X)*(Diag(vec A) + I_9)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "X", cases[i].uni, cases[i].plain, 400 + i);
    /* a sum of a transpose's entries sees no commutation: its Diag passes
     * it transposed (was (vec A)^T·K_{3,3}, (exp(vec(X^T)))^T·K_{3,3}) */
    const struct { const char *expr, *uni, *plain; } rows[] = {
        { "sum(sum(X'))", "1_9^T", "1_9'" },
        { "sum(sum(X'.*A))", "(vec(A^T))^T", "(vec(A'))'" },
        { "sum(sum(exp(X')))", "exp(vec X)^T", "exp(vec X)'" },
        { "sum(sum((X.*A')'))", "(vec(A^T))^T", "(vec(A'))'" },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        jacobian_forms_plan_ok(ctx, t, rows[i].expr, "X", rows[i].uni, rows[i].plain, 420 + i);
    /* the power's J applies fewer flops than the nested form did (1890) */
    int64_t pos;
    lj_expr *P = lj_parse(ctx, "X^16", t, &pos);
    CK_NN(ctx, P);
    lj_op *J = lj_expr_jacobian(ctx, P, lj_symtab_get(t, "X"));
    CK_NN(ctx, J);
    double flops, bytes;
    CK_OK(ctx, lj_op_cost(ctx, J, &flops, &bytes));
    ck_assert_msg(flops < 1890, "X^16: %g flops", flops);
    lj_op_free(&J);
    lj_expr_free(&P);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A Jacobian that several terms share is taken out of their sum once:
 * J of Y^2 is ((Y^T ⊗ I) + (I ⊗ Y))·J_Y, the Cookbook's form, not (Y^T ⊗
 * I)·J_Y + (I ⊗ Y)·J_Y. Each J against central differences and a plan's
 * J after X moved; then expressions that share a subexpression at every
 * level, whose J written out term by term would have 2^24 paths, built,
 * applied and checked in linear time. */
START_TEST(test_shared_inner_jacobians)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 29, true);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "sin(X)^2", "((sin(X)^T ⊗ I_3) + (I_3 ⊗ sin(X)))·Diag(cos(vec X))",
          "((sin(X)' kron I_3) + (I_3 kron sin(X)))*Diag(cos(vec X))" },
        /* powers of a compound base: (X^T + X)^2, sin(X)^2, not products */
        { "sin(X)^3", "(((sin(X)^2)^T ⊗ I_3) + (sin(X)^T ⊗ sin(X)) + (I_3 ⊗ sin(X)^2))·Diag(cos(vec X))",
          "(((sin(X)^2)' kron I_3) + (sin(X)' kron sin(X)) + (I_3 kron sin(X)^2))*Diag(cos(vec X))" },
        { "(X*X+X)^2", "(((X^2 + X)^T ⊗ I_3) + (I_3 ⊗ (X^2 + X)))·((X^T ⊗ I_3) + (I_3 ⊗ X) + I_9)",
          "(((X^2 + X)' kron I_3) + (I_3 kron (X^2 + X)))*((X' kron I_3) + (I_3 kron X) + I_9)" },
        { "(X'+X)^3", "((((X^T + X)^2)^T ⊗ I_3) + ((X^T + X)^T ⊗ (X^T + X)) + (I_3 ⊗ (X^T + X)^2))·(K_{3,3} + I_9)",
          "((((X' + X)^2)' kron I_3) + ((X' + X)' kron (X' + X)) + (I_3 kron (X' + X)^2))*(K_{3,3} + I_9)" },
        /* a group or a call written twice is one node, whose J the terms
         * share: sin(X)*sin(X) reads as sin(X)^2 does, blanks aside */
        { "sin( X )*sin(X)", "((sin(X)^T ⊗ I_3) + (I_3 ⊗ sin(X)))·Diag(cos(vec X))",
          "((sin(X)' kron I_3) + (I_3 kron sin(X)))*Diag(cos(vec X))" },
        { "(X+A)*(X+A)", "((X + A)^T ⊗ I_3) + (I_3 ⊗ (X + A))", "((X + A)' kron I_3) + (I_3 kron (X + A))" },
        { "exp(X).*exp(X)", "2·Diag(vec(exp(X).^2))", "2*Diag(vec(exp(X).^2))" },
        /* a bare eye takes its size where it stands: never one node */
        { "(2*eye)*X*(2*eye)+sin(X)*(eye*2)", "4·I_9 + 2·Diag(cos(vec X))", "4*I_9 + 2*Diag(cos(vec X))" },
        /* a transposed power of a function's value reads as the power */
        { "(sin(X)')^2", "((sin(X) ⊗ I_3) + (I_3 ⊗ sin(X)^T))·K_{3,3}·Diag(cos(vec X))",
          "((sin(X) kron I_3) + (I_3 kron sin(X)'))*K_{3,3}*Diag(cos(vec X))" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "X", cases[i].uni, cases[i].plain, 440 + i);
    lj_expr *X = lj_symtab_get(t, "X");
    for (int variant = 0; variant < 2; variant++) {
        /* Y <- tanh(Y + Y·Y), 24 times; and Y <- Y + 0.1·Y·Y, 6 times (J_Y
         * a sum, added term by term and taken out again) */
        lj_expr *Y = lj_expr_retain(X);
        int levels = variant ? 6 : 24;
        for (int k = 0; k < levels; k++) {
            lj_expr *YY = lj_expr_mul(ctx, Y, Y);
            lj_expr *s = variant ? lj_expr_scale(ctx, 0.1, YY) : lj_expr_retain(YY);
            lj_expr *sum = lj_expr_add(ctx, Y, s);
            lj_expr *next = variant ? lj_expr_retain(sum) : lj_expr_func(ctx, LJ_FN_TANH, sum);
            CK_NN(ctx, next);
            lj_expr_free(&YY);
            lj_expr_free(&s);
            lj_expr_free(&sum);
            lj_expr_free(&Y);
            Y = next;
        }
        lj_op *J = lj_expr_jacobian(ctx, Y, X);
        CK_NN(ctx, J);
        double flops, bytes;
        CK_OK(ctx, lj_op_cost(ctx, J, &flops, &bytes));
        ck_assert_msg(flops < 1000.0 * levels, "%d levels: %g flops a vector", levels, flops);
        double maxrel = -1, fro = -1;
        CK_OK(ctx, lj_expr_fd_check(ctx, Y, X, J, 0, &maxrel, &fro));
        ck_assert_msg(maxrel < 1e-6, "%d levels: finite differences differ by %g", levels, maxrel);
        cholmod_sparse *S = lj_op_to_sparse(ctx, J);
        CK_NN(ctx, S);
        lj_sparse_free(ctx, &S);
        env E = { ctx, 460 + (uint64_t)variant, { 0 }, 0 };
        plan_ok(&E, Y, X, variant ? "Y + 0.1·Y·Y" : "tanh(Y + Y·Y)");
        lj_op_free(&J);
        lj_expr_free(&Y);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A value's label "(x^T·A)" prints without its own brackets as the whole
 * or a term of a sum, after a minus sign too unless a sum is inside; in
 * products it keeps them; "(−x^T·A)" as a term is "− x^T·A". Each J also
 * against central differences. */
START_TEST(test_value_label_brackets)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 9, false);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "x'*A*x", "x^T·A^T + x^T·A", "x'*A' + x'*A" },
        { "x'*A*x - x'*B*x", "x^T·A^T + x^T·A − x^T·B^T − x^T·B", "x'*A' + x'*A - x'*B' - x'*B" },
        { "A*x - (A+B)*x", "A − (A + B)", "A - (A + B)" },
        { "A*x - (A-B)*x", "A − (A − B)", "A - (A - B)" },
        { "x'*(A*B)*x", "x^T·(A·B)^T + x^T·(A·B)", "x'*(A*B)' + x'*(A*B)" },
        /* a value "(−x^T·A)" gives its minus sign to the term; one with a
         * sum inside keeps its brackets */
        { "-x'*A*x", "−x^T·A^T − x^T·A", "-x'*A' - x'*A" },
        { "-x'*(A+B)*x", "−x^T·(A + B)^T − x^T·(A + B)", "-x'*(A + B)' - x'*(A + B)" },
        { "(-x'*A - x'*B)*x", "x^T·(−A^T − B^T) + (−x^T·A − x^T·B)", "x'*(-A' - B') + (-x'*A - x'*B)" },
        /* a right operand that starts with a minus sign is bracketed, a
         * product's with the product (was A − −B·A); negated factors of a
         * product give their signs to its front, two cancel */
        { "(A - (-B)*A)*x", "A − (−B·A)", "A - (-B*A)" },
        { "x'*(-A)*(-B)*x", "x^T·B^T·A^T + x^T·A·B", "x'*B'*A' + x'*A*B" },
        { "x'*(-(-A))*x", "x^T·A^T + x^T·A", "x'*A' + x'*A" },
        { "(-x')*A*(-(-B))*x", "−x^T·B^T·A^T − x^T·A·B", "-x'*B'*A' - x'*A*B" },
        /* an inverse in a label as the operators write it: A^{-1}, A^{-T} */
        { "x'*inv(A)*x", "x^T·A^{-T} + x^T·A^{-1}", "x'*A^{-T} + x'*A^{-1}" },
        { "inv(A')*x", "A^{-T}", "A^{-T}" },
        /* a value's row and the transpose of its column are one node kind
         * (a dense row over the same numbers): like terms */
        { "(x'*A)*(A'*x)", "2·(x^T·A)·A^T", "2*(x'*A)*A'" },
        /* a Hadamard product before a matrix product is bracketed: a
         * label's factors are read with · binding tighter than ∘, and
         * A ∘ B·x would be A ∘ (B·x) (J of ((C.*B)*D).*A^2 printed
         * Diag(vec(2·C ∘ (B·D) ∘ A)), a wrong J) */
        { "((A.*B)*x).*x", "Diag(x)·(A ∘ B) + Diag((A ∘ B)·x)", "Diag(x)*(A .* B) + Diag((A .* B)*x)" },
        { "((A.*B)*x).*x.^2", "Diag(x.^2)·(A ∘ B) + Diag(2·x ∘ ((A ∘ B)·x))", "Diag(x.^2)*(A .* B) + Diag(2*x .* ((A .* B)*x))" },
        { "(-(A.*B)*x).*x", "−Diag(x)·(A ∘ B) − Diag((A ∘ B)·x)", "-Diag(x)*(A .* B) - Diag((A .* B)*x)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lj_expr *f = jacobian_forms_ok(ctx, t, cases[i].expr, "x", cases[i].uni, cases[i].plain);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* src, a printed J of expr w.r.t. wrt in the language, evaluates to J's
 * entries (J at most 81 entries) */
static void plain_form_is_j(lj_context *ctx, lj_symtab *t, const char *expr, const char *wrt, const char *src)
{
    int64_t pos, r, c;
    lj_expr *f = lj_parse(ctx, expr, t, &pos);
    CK_NN(ctx, f);
    lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, wrt));
    CK_NN(ctx, J);
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    ck_assert(m * n <= 81);
    lj_expr *back = lj_parse(ctx, src, t, &pos);
    ck_assert_msg(back != NULL, "%s: '%s' does not parse: %s", expr, src, lj_context_message(ctx));
    double *v = NULL, d[81];
    CK_OK(ctx, lj_expr_eval(ctx, back, &r, &c, &v));
    ck_assert_msg(r * c == m * n && (r == m || m == 1), "%s: '%s' is %lld×%lld", expr, src, (long long)r, (long long)c);
    CK_OK(ctx, lj_op_to_dense(ctx, J, d, m));
    for (int64_t k = 0; k < m * n; k++)
        ck_assert_msg(fabs(v[k] - d[k]) <= 1e-12 * (1 + fabs(d[k])), "%s: '%s' entry %lld: %.17g against J's %.17g",
                      expr, src, (long long)k, v[k], d[k]);
    lj_free(v);
    lj_expr_free(&back);
    lj_op_free(&J);
    lj_expr_free(&f);
}

/* Numbers print as what they are: the user's as written, a fraction whose
 * decimals do not end as one ((1/3), (2/3), x.^(−2/3)), a rounding
 * residue not at all (0.3 for 0.1·3); the plain form evaluates to J. Six
 * digits (0.333333) had put a printed J 7.5·10^-7 away (a fuzz finding). */
static char *plain_in_language(const char *p);

START_TEST(test_numbers_read_back)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    uint64_t seed = 41;
    for (int i = 0; i < 3; i++) {
        tmat m = tm_rand(i < 2 ? 3 : 1, 1, &seed);
        lj_expr *e = lj_expr_var(ctx, i == 2 ? "s" : i ? "y" : "x", i < 2 ? 3 : 1, 1, m.a);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    const struct { const char *expr, *wrt, *uni, *plain; } cases[] = {
        /* a quotient in a chain of products is no power: s/s·x, not s^2·x
         * (a fuzz finding: that printed J was 0.19 away from J) */
        { "exp(((s/s)*x)./((x'*x)*s))", "x",
          "Diag(exp(s/s·x ⊘ (x^T·x·s)))·((1/(x^T·x·s))·(s/s)·I_3 − 2·s·((s/s·x)./(x^T·x·s).^2)·x^T)",
          "Diag(exp(s/s*x ./ (x'*x*s)))*((1/(x'*x*s))*(s/s)*I_3 - 2*s*((s/s*x)./(x'*x*s).^2)*x')" },
        { "(s*s/s*s)*x", "x", "(s·s/s·s)·I_3", "(s*s/s*s)*I_3" },
        { "(1+x.^2).^(1/3)", "x", "Diag((2/3)·(1 + x.^2).^(−2/3) ∘ x)", "Diag((2/3)*(1 + x.^2).^(-2/3) .* x)" },
        { "sin((1+x.^2).^(1/3))", "x", "Diag((2/3)·cos((1 + x.^2).^(1/3)) ∘ (1 + x.^2).^(−2/3) ∘ x)",
          "Diag((2/3)*cos((1 + x.^2).^(1/3)) .* (1 + x.^2).^(-2/3) .* x)" },
        { "(1+x.^2).^(-1/3)", "x", "Diag(−(2/3)·(1 + x.^2).^(−4/3) ∘ x)", "Diag(-(2/3)*(1 + x.^2).^(-4/3) .* x)" },
        { "sin(1.23456789*x)", "x", "1.23456789·Diag(cos(1.23456789·x))", "1.23456789*Diag(cos(1.23456789*x))" },
        { "(x/3).^2", "x", "(2/3)·Diag(x/3)", "(2/3)*Diag(x/3)" },
        { "x*0.1*3", "x", "0.3·I_3", "0.30000000000000004*I_3" },
        /* a Diag of a fraction is that number times I, and meets the
         * coefficient: was 2·Diag(1/3), a wrong J (CI's fuzz run) */
        { "((y.*x) - x)'*((x.*x)./(3*x))", "x",
          "(x ∘ x ⊘ (3·x))^T·(Diag(y) − I_3) + (y ∘ x − x)^T·((2/3)·I_3 − 3·Diag((x ∘ x)./(3·x).^2))",
          "(x .* x ./ (3*x))'*(Diag(y) - I_3) + (y .* x - x)'*((2/3)*I_3 - 3*Diag((x .* x)./(3*x).^2))" },
        { "(x/3)*2", "x", "(2/3)·I_3", "(2/3)*I_3" },
        /* the plain form reads back exactly: 2·(1/3) + 1 is not 5/3 there */
        { "(x/3)*2 + x", "x", "(5/3)·I_3", "1.6666666666666665*I_3" },
        /* (1/3) meets the 3 in front: was 3·Diag(0.333333·y ∘ …) */
        { "((3*((-y)./x))./((3*(y./y))./x))", "x",
          "Diag(y ∘ 1./((y ⊘ y) ⊘ x) ∘ 1./x.^2) + Diag(9·(−y ⊘ x) ∘ (y ⊘ y) ∘ 1./(3·(y ⊘ y) ⊘ x).^2 ∘ 1./x.^2)",
          "Diag(y .* 1./((y ./ y) ./ x) .* 1./x.^2) + Diag(9*(-y ./ x) .* (y ./ y) .* 1./(3*(y ./ y) ./ x).^2 .* 1./x.^2)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) { /* each also against central differences */
        lj_expr *f = jacobian_forms_ok(ctx, t, cases[i].expr, cases[i].wrt, cases[i].uni, cases[i].plain);
        char *src = plain_in_language(cases[i].plain);
        plain_form_is_j(ctx, t, cases[i].expr, cases[i].wrt, src);
        free(src);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A plain form of a 3×3 J written in the language (malloc'd): Diag( as
 * diag(, I_3 as eye(3), 1_3' as ones(3,1)' */
static char *plain_in_language(const char *p)
{
    char *src = malloc(3 * strlen(p) + 16), *w = src;
    ck_assert(src != NULL);
    for (const char *s = p; *s;) {
        if (!strncmp(s, "Diag(", 5)) w += sprintf(w, "diag("), s += 5;
        else if (!strncmp(s, "I_3", 3)) w += sprintf(w, "eye(3)"), s += 3;
        else if (!strncmp(s, "1_3'", 4)) w += sprintf(w, "ones(3,1)'"), s += 4;
        else if (!strncmp(s, "0_{3x3}", 7)) w += sprintf(w, "zeros(3,3)"), s += 7;
        else *w++ = *s++;
    }
    *w = '\0';
    return src;
}

/* A random elementwise expression in x (and A·x), depth d, into w. */
static char *random_ew(char *w, const char *end, int d, uint64_t *seed)
{
    static const char *leaf[] = { "x", "x", "x", "(A*x)", "(1+x.^2)", "exp(x)", "sin(x)", "(x+2)" };
    static const char *fn[] = { "exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "atan", "log1p" };
    if (end - w < 64) return w + snprintf(w, (size_t)(end - w), "x");
    double r = tm_uniform(seed);
    if (d <= 0) return w + snprintf(w, (size_t)(end - w), "%s", leaf[(int)(8 * tm_uniform(seed)) & 7]);
    if (r < 0.25) {
        const char *f = fn[(int)(9 * tm_uniform(seed)) % 9];
        bool pos = !strcmp(f, "log") || !strcmp(f, "sqrt"); /* log(1+u.^2), sqrt(1+u.^2) */
        w += snprintf(w, (size_t)(end - w), pos ? "%s((1+" : "%s(", f);
        w = random_ew(w, end, d - 1, seed);
        return w + snprintf(w, (size_t)(end - w), pos ? ").^2)" : ")");
    }
    const char *op = r < 0.45 ? ".*" : r < 0.6 ? "./(1+" : r < 0.75 ? "^" : r < 0.85 ? " + " : r < 0.92 ? "k" : "log";
    if (!strcmp(op, "^")) {
        w += snprintf(w, (size_t)(end - w), "(");
        w = random_ew(w, end, d - 1, seed);
        return w + snprintf(w, (size_t)(end - w), ").^%d", tm_uniform(seed) < 0.5 ? 2 : 3);
    }
    if (!strcmp(op, "k") || !strcmp(op, "log")) { /* (2*u), (u/3), log(u.^2) */
        bool k = op[0] == 'k';
        double kr = tm_uniform(seed);
        w += !k ? snprintf(w, (size_t)(end - w), "log((")
             : kr < 0.25 ? snprintf(w, (size_t)(end - w), "(")
                         : snprintf(w, (size_t)(end - w), "(%d*", kr < 0.6 ? 2 : 3);
        w = random_ew(w, end, d - 1, seed);
        return w + snprintf(w, (size_t)(end - w), !k ? ").^2)" : kr < 0.25 ? "/3)" : ")");
    }
    bool quot = op[1] == '/';
    w = random_ew(w, end, d - 1, seed);
    w += snprintf(w, (size_t)(end - w), "%s", op);
    if (quot) w += snprintf(w, (size_t)(end - w), "(");
    w = random_ew(w, end, d - 1, seed);
    return w + snprintf(w, (size_t)(end - w), quot ? ").^2)" : "");
}

/* The plain form of J, written in the language (Diag( as diag(, I_3 as
 * eye(3), 1_3' as ones(3,1)'), evaluates to J, on random elementwise
 * expressions: a label's rewriting (numbers, powers that meet, σ) never
 * changes what J is. Forms the language cannot write (a cut label) are
 * counted and must stay few. It found 2·a + b read as 2·(a + b) when a
 * Diag labelled so met another. */
START_TEST(test_random_printed_j_evaluates)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 77, false);
    uint64_t seed = 2026;
    int checked = 0, unwritable = 0;
    const int total = 600;
    for (int i = 0; i < total; i++) {
        char expr[2048];
        int depth = 1 + (int)(3 * tm_uniform(&seed));
        random_ew(expr, expr + sizeof expr, depth, &seed);
        int64_t pos, r, c;
        lj_expr *f = lj_parse(ctx, expr, t, &pos);
        ck_assert_msg(f != NULL, "%s: %s", expr, lj_context_message(ctx));
        lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x"));
        if (!J) { /* a value out of a function's domain */
            lj_expr_free(&f);
            continue;
        }
        char *p = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
        CK_NN(ctx, p);
        char *src = plain_in_language(p);
        lj_expr *back = lj_parse(ctx, src, t, &pos);
        if (!back) unwritable++;
        else {
            double *v = NULL, d[9];
            CK_OK(ctx, lj_expr_eval(ctx, back, &r, &c, &v));
            ck_assert_msg(r * c == 9, "%s: '%s' is %lld×%lld", expr, p, (long long)r, (long long)c);
            CK_OK(ctx, lj_op_to_dense(ctx, J, d, 3));
            for (int k = 0; k < 9; k++)
                ck_assert_msg(fabs(v[k] - d[k]) <= 1e-9 * (1 + fabs(d[k])), "%s: J prints '%s', which is %.17g at %d, J %.17g",
                              expr, p, v[k], k, d[k]);
            checked++;
            lj_free(v);
            lj_expr_free(&back);
        }
        free(src);
        lj_free(p);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    ck_assert_msg(checked >= total * 9 / 10, "only %d of %d printed Js evaluated (%d not in the language)", checked, total,
                  unwritable);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Two products with a Diag at the same end whose other factors differ,
 * u^T·Diag(a) + w^T·Diag(b): where w becomes u a fresh build merges them
 * into u^T·Diag(a + b), so a plan built while they differed rebuilds
 * instead of keeping both (its J would then differ from a fresh one by
 * rounding, and in print). */
START_TEST(test_plan_factors_become_equal)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    double xv[3] = { 0.6, -0.3, 0.8 }, uv[3] = { 0.4, 0.9, -0.2 }, wv[3] = { 0.1, 0.7, 0.3 };
    double av[3] = { 0.3, 0.7, 1.1 }, bv[3] = { 1.7, 0.2, 0.9 };
    const char *names[] = { "x", "u", "w", "a", "b" };
    double *vals[] = { xv, uv, wv, av, bv };
    for (int i = 0; i < 5; i++) {
        lj_expr *e = i ? lj_expr_const(ctx, names[i], 3, 1, vals[i]) : lj_expr_var(ctx, names[i], 3, 1, vals[i]);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
    }
    int64_t pos;
    lj_expr *f = lj_parse(ctx, "u'*(x.*a) + w'*(x.*b)", t, &pos), *x = lj_symtab_get(t, "x");
    CK_NN(ctx, f);
    lj_jacplan *p = lj_jacplan_new(ctx, f, 1, (const lj_expr *const *)&x);
    lj_op *J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J);
    char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "u^T·Diag(a) + w^T·Diag(b)");
    lj_free(s);
    lj_op_free(&J);
    CK_OK(ctx, lj_expr_set_value(ctx, lj_symtab_get(t, "w"), uv));
    J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J);
    const char *why;
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "two terms of a sum became equal (a fresh build merges them)");
    lj_op *K = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, K);
    char *sj = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *sk = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
    ck_assert_str_eq(sj, sk);
    double dj[3], dk[3];
    CK_OK(ctx, lj_op_to_dense(ctx, J, dj, 1));
    CK_OK(ctx, lj_op_to_dense(ctx, K, dk, 1));
    ck_assert(memcmp(dj, dk, sizeof dj) == 0);
    lj_free(sj);
    lj_free(sk);
    lj_op_free(&K);
    lj_op_free(&J);
    lj_jacplan_free(&p);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* J printed (Unicode) with every allocation failing in turn: NOMEM and a
 * message, or the whole form want; the whole form only after more than
 * min_ok allocations */
static void print_fmt_under_alloc_failures(lj_context *ctx, const lj_op *J, lj_print_format fmt, const char *want,
                                           int min_ok)
{
    int ok_at = 0;
    for (int n = 1; n < 400 && !ok_at; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        char *p = lj_op_print(ctx, J, fmt);
        lj_context_fail_alloc(ctx, 0, 0);
        if (p) {
            ok_at = n;
            ck_assert_str_eq(p, want);
            ck_assert_msg(lj_context_status(ctx) == LJ_OK, "%s n=%d: %s", want, n, lj_context_message(ctx));
        } else {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: %s", n, lj_context_message(ctx));
            ck_assert_msg(lj_context_message(ctx)[0], "n=%d: no message", n);
            lj_context_clear(ctx);
        }
        lj_free(p);
    }
    ck_assert_msg(ok_at > min_ok, "%s: printed at the %dth allocation failing", want, ok_at);
}

static void print_under_alloc_failures(lj_context *ctx, const lj_op *J, const char *want, int min_ok)
{
    print_fmt_under_alloc_failures(ctx, J, LJ_PRINT_UNICODE, want, min_ok);
}

/* J of expr w.r.t. wrt built with every allocation failing in turn:
 * NOMEM and a message, or J printing as want */
static void built_under_alloc_failures(lj_context *ctx, lj_symtab *t, const char *expr, const char *wrt,
                                       const char *want)
{
    int64_t pos;
    lj_expr *f = lj_parse(ctx, expr, t, &pos);
    CK_NN(ctx, f);
    int ok_at = 0;
    for (int n = 1; n < 400 && !ok_at; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, wrt));
        lj_context_fail_alloc(ctx, 0, 0);
        if (J) {
            ok_at = n;
            ck_assert_msg(lj_context_status(ctx) == LJ_OK, "%s n=%d: %s", expr, n, lj_context_message(ctx));
            char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
            ck_assert_str_eq(p, want);
            lj_free(p);
            lj_op_free(&J);
        } else {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "%s n=%d: %s", expr, n, lj_context_message(ctx));
            ck_assert_msg(lj_context_message(ctx)[0], "n=%d: no message", n);
            lj_context_clear(ctx);
        }
    }
    ck_assert_msg(ok_at > 3, "%s: built at the %dth allocation failing", expr, ok_at);
    lj_expr_free(&f);
}

/* Terms of a sum that print alike are one term, their coefficients
 * added: x^T·S^{-1} and (S^{-1}·x)^T hold the same matrix with numbers
 * that differ by rounding, so J keeps both, and prints 2·x^T·S^{-1}. A
 * Hadamard product's label puts a number first and drops a value's
 * brackets where nothing is inside them; max's indicator of a column has
 * no vec. Each J against central differences and a plan's; printed with
 * every allocation failing in turn, NOMEM and a message or the whole
 * form. */
START_TEST(test_sum_and_hadamard_labels)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 77, true);
    const struct { const char *expr, *wrt, *uni, *plain; } cases[] = {
        { "x'*inv(X'*X)*x", "x", "2·x^T·(X^T·X)^{-1}", "2*x'*(X'*X)^{-1}" },
        { "x'*inv(X'*X)*x - x'*A*x", "x", "2·x^T·(X^T·X)^{-1} − x^T·A^T − x^T·A", "2*x'*(X'*X)^{-1} - x'*A' - x'*A" },
        { "x'*A*x", "x", "x^T·A^T + x^T·A", "x'*A' + x'*A" }, /* A is not symmetric: two terms */
        { "log(x.^2+1)", "x", "Diag(2·x ∘ 1./(x.^2 + 1))", "Diag(2*x .* 1./(x.^2 + 1))" },
        { "x.^2.*sin(x)", "x", "Diag(2·x ∘ sin(x)) + Diag(x.^2 ∘ cos(x))", "Diag(2*x .* sin(x)) + Diag(x.^2 .* cos(x))" },
        { "(A*x).*sin(x)", "x", "Diag(sin(x))·A + Diag((A·x) ∘ cos(x))", "Diag(sin(x))*A + Diag((A*x) .* cos(x))" },
        { "max(x,-(A*x))", "x", "Diag([x > −(A·x)]) − Diag([−(A·x) > x])·A", "Diag([x > -(A*x)]) - Diag([-(A*x) > x])*A" },
        { "max(X,B)", "X", "Diag(vec[X > B])", "Diag(vec[X > B])" },
        /* numbers in front of a Hadamard product's label, a reciprocal's
         * where they cancel */
        { "sqrt(x.^2+1)", "x", "Diag(x ∘ 1./sqrt(x.^2 + 1))", "Diag(x .* 1./sqrt(x.^2 + 1))" },
        { "sqrt(exp(x)).*x", "x", "Diag(x ∘ 1./(2·sqrt(exp(x))) ∘ exp(x)) + Diag(sqrt(exp(x)))",
          "Diag(x .* 1./(2*sqrt(exp(x))) .* exp(x)) + Diag(sqrt(exp(x)))" },
        { "exp(3*x.^2)", "x", "6·Diag(x ∘ exp(3·x.^2))", "6*Diag(x .* exp(3*x.^2))" },
        /* vecs of matrices of one shape gathered, vec(A ∘ exp(X)), a product
         * bracketed inside, and folded past Kronecker products as rows */
        { "sum(sum(A.*exp(X)))", "X", "(vec(A ∘ exp(X)))^T", "(vec(A .* exp(X)))'" },
        { "sum(sum(A.*exp(X*B)))", "X", "(vec((A ∘ exp(X·B))·B^T))^T", "(vec((A .* exp(X*B))*B'))'" },
        { "(X*B).*exp(X)", "X", "Diag(vec exp(X))·(B^T ⊗ I_3) + Diag(vec((X·B) ∘ exp(X)))",
          "Diag(vec exp(X))*(B' kron I_3) + Diag(vec((X*B) .* exp(X)))" },
        /* with a transpose inside, each vec its own, as commuted Diags read them */
        { "exp(X').*A", "X", "Diag(vec A ∘ exp(vec(X^T)))·K_{3,3}", "Diag(vec A .* exp(vec(X')))*K_{3,3}" },
        { "x'*A'*A*((B*x)./x)", "A", "(vec(A·(B·x ⊘ x)·x^T))^T + (vec(A·x·(B·x ⊘ x)^T))^T",
          "(vec(A*(B*x ./ x)*x'))' + (vec(A*x*(B*x ./ x)'))'" },
        /* a transpose's power is bracketed in labels, and transposed a
         * name's power is the power of its transpose: ((X^T)^2)^T is X^2
         * (it printed X^T^2^T, which the language reads as X'^(2')) */
        { "norm2(X'^2)", "X", "(1/norm2((X^T)^2))·((vec(X^T·X^2))^T + (vec(X^2·X^T))^T)",
          "(1/norm2((X')^2))*((vec(X'*X^2))' + (vec(X^2*X'))')" },
        /* powers meet under vec too: vec(2./X), vec(σ(X)) */
        { "log(X.^2)", "X", "Diag(vec(2./X))", "Diag(vec(2./X))" },
        { "exp(X)./(1+exp(X))", "X", "Diag(vec(σ(X))) − Diag(vec(σ(X).^2))",
          "Diag(vec(sigmoid(X))) - Diag(vec(sigmoid(X).^2))" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, cases[i].wrt, cases[i].uni, cases[i].plain, 400 + i);
    /* the rows' plain forms, in the language, are J */
    plain_form_is_j(ctx, t, "sum(sum(A.*exp(X)))", "X", "vec(A .* exp(X))'");
    plain_form_is_j(ctx, t, "sum(sum(A.*exp(X*B)))", "X", "vec((A .* exp(X*B))*B')'");
    plain_form_is_j(ctx, t, "sqrt(x.^2+1)", "x", "diag(x .* 1./sqrt(x.^2 + 1))");
    /* a quotient's value label keeps its brackets inside a trace row's
     * product: A·(B·x ⊘ x)·x^T, not A·B·x ⊘ x·x^T (found by the fuzz
     * harness's evaluation of printed Jacobians) */
    plain_form_is_j(ctx, t, "x'*A'*A*((B*x)./x)", "A", "(vec(A*(B*x ./ x)*x'))' + (vec(A*x*(B*x ./ x)'))'");
    plain_form_is_j(ctx, t, "norm2(X'^2)", "X", "(1/norm2((X')^2))*((vec(X'*X^2))' + (vec(X^2*X'))')");
    plain_form_is_j(ctx, t, "log(X.^2)", "X", "diag(vec(2./X))");
    /* a sum's leading minus sign is its first term's: vec(−B + X ∘ X) met
     * with vec B kept it (it was read as −vec(B + X ∘ X)) */
    lj_expr *g = jacobian_forms_ok(ctx, t, "((-B) + (X .* X)) .* (B.*X)", "X",
                                   "2·Diag(vec(B ∘ X.^2)) + Diag(vec((−B + X ∘ X) ∘ B))",
                                   "2*Diag(vec(B .* X.^2)) + Diag(vec((-B + X .* X) .* B))");
    lj_expr_free(&g);
    plain_form_is_j(ctx, t, "((-B) + (X .* X)) .* (B.*X)", "X", "2*diag(vec(B .* X.^2)) + diag(vec((-B + X .* X) .* B))");
    plain_form_is_j(ctx, t, "exp(X)./(1+exp(X))", "X", "diag(vec(sigmoid(X))) - diag(vec(sigmoid(X).^2))");
    int64_t pos;
    lj_expr *f = lj_parse(ctx, cases[1].expr, t, &pos);
    lj_op *J = f ? lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x")) : NULL;
    CK_NN(ctx, J);
    print_under_alloc_failures(ctx, J, cases[1].uni, 3);
    lj_op_free(&J);
    lj_expr_free(&f);
    /* built with every allocation failing in turn: NOMEM and a message, or
     * the whole form */
    built_under_alloc_failures(ctx, t, "sqrt(x.^2+1)", "x", "Diag(x ∘ 1./sqrt(x.^2 + 1))");
    built_under_alloc_failures(ctx, t, "sum(sum(A.*exp(X)))", "X", "(vec(A ∘ exp(X)))^T");
    /* in LaTeX too, whose two terms space their products differently */
    f = lj_parse(ctx, cases[0].expr, t, &pos);
    J = f ? lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x")) : NULL;
    CK_NN(ctx, J);
    char *tex = lj_op_print(ctx, J, LJ_PRINT_LATEX);
    CK_NN(ctx, tex);
    ck_assert_str_eq(tex, "2 \\cdot x^{\\top} \\cdot (X^{\\top}\\cdot X)^{-1}");
    lj_free(tex);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* LaTeX writes the labels' language as LaTeX: x.^2 as x^{\circ 2}, 1./u
 * as 1 \oslash u, sqrt(u) as \sqrt{u}, exp and tan as \exp and \tan,
 * norms as \|u\|, 1_3 as \mathbf{1}_{3}, X^{-T} as X^{-\top}; the plain
 * form the language's (tan(x).^2, not tan²(x)); both ASCII with their
 * brackets balanced. Each J against central differences. */
START_TEST(test_latex_labels)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 61, true);
    const struct { const char *expr, *wrt, *uni, *plain, *latex; } cases[] = {
        { "x.^3", "x", "Diag(3·x.^2)", "Diag(3*x.^2)", "\\operatorname{Diag}(3\\cdot x^{\\circ 2})" },
        { "sqrt(x.^2+1)", "x", "Diag(x ∘ 1./sqrt(x.^2 + 1))", "Diag(x .* 1./sqrt(x.^2 + 1))",
          "\\operatorname{Diag}(x \\circ 1 \\oslash \\sqrt{x^{\\circ 2} + 1})" },
        { "tan(x)", "x", "Diag(1 + tan²(x))", "Diag(1 + tan(x).^2)", "\\operatorname{Diag}(1 + \\tan^2(x))" },
        { "tanh(A*x)", "x", "Diag(1 − tanh²(A·x))·A", "Diag(1 - tanh(A*x).^2)*A",
          "\\operatorname{Diag}(1 - \\tanh^2(A\\cdot x)) \\cdot A" },
        { "atan(x)", "x", "Diag(1./(1 + x.^2))", "Diag(1./(1 + x.^2))",
          "\\operatorname{Diag}(1 \\oslash (1 + x^{\\circ 2}))" },
        { "log1p(x.^2)", "x", "Diag(2·x ∘ 1./(1 + x.^2))", "Diag(2*x .* 1./(1 + x.^2))",
          "\\operatorname{Diag}(2\\cdot x \\circ 1 \\oslash (1 + x^{\\circ 2}))" },
        { "exp(A'*x)", "x", "Diag(exp(A^T·x))·A^T", "Diag(exp(A'*x))*A'",
          "\\operatorname{Diag}(\\exp(A^{\\top}\\cdot x)) \\cdot A^{\\top}" },
        { "exp(x/norm1(x))", "x", "Diag(exp(x/norm1(x)))·((1/norm1(x))·I_3 − (1/norm1(x)^2)·x·sign(x)^T)",
          "Diag(exp(x/norm1(x)))*((1/norm1(x))*I_3 - (1/norm1(x)^2)*x*sign(x)')",
          "\\operatorname{Diag}(\\exp(x/\\|x\\|_1)) \\cdot ((1/\\|x\\|_1) \\cdot I_{3} - (1/\\|x\\|_1^2) \\cdot x \\cdot "
          "\\operatorname{sign}(x)^{\\top})" },
        { "sum(x)", "x", "1_3^T", "1_3'", "\\mathbf{1}_{3}^{\\top}" },
        /* a quotient's second term: its powers meet, its operands lose the
         * brackets a power needs none of; a reciprocal's too */
        { "x.^3./(1+x.^2).^2", "x", "Diag(3·x.^2 ∘ 1./(1 + x.^2).^2) − Diag(4·x.^4 ∘ 1./(1 + x.^2).^3)",
          "Diag(3*x.^2 .* 1./(1 + x.^2).^2) - Diag(4*x.^4 .* 1./(1 + x.^2).^3)",
          "\\operatorname{Diag}(3\\cdot x^{\\circ 2} \\circ 1 \\oslash (1 + x^{\\circ 2})^{\\circ 2}) - "
          "\\operatorname{Diag}(4\\cdot x^{\\circ 4} \\circ 1 \\oslash (1 + x^{\\circ 2})^{\\circ 3})" },
        { "log(x.^2+1)", "x", "Diag(2·x ∘ 1./(x.^2 + 1))", "Diag(2*x .* 1./(x.^2 + 1))",
          "\\operatorname{Diag}(2\\cdot x \\circ 1 \\oslash (x^{\\circ 2} + 1))" },
        /* powers of one base meet across a Diag's factors, to a number
         * times I where nothing is left */
        { "log(exp(x).^2)", "x", "2·I_3", "2*I_3", "2 \\cdot I_{3}" },
        { "inv(X)", "X", "−(X^{-T} ⊗ X^{-1})", "-(X^{-T} kron X^{-1})", "-(X^{-\\top} \\otimes X^{-1})" },
        { "X.^(-2)", "X", "Diag(−2·(vec X).^(−3))", "Diag(-2*(vec X).^(-3))",
          "\\operatorname{Diag}(-2\\cdot (\\operatorname{vec} X)^{\\circ -3})" },
        { "sum(sum(A.*exp(X)))", "X", "(vec(A ∘ exp(X)))^T", "(vec(A .* exp(X)))'",
          "(\\operatorname{vec}(A \\circ \\exp(X)))^{\\top}" },
        /* the language's fills, as matrices of ones print, their
         * transposes with the sizes swapped */
        { "ones(3,3)*(x.^2)", "x", "1_{3×3}·Diag(2·x)", "1_{3x3}*Diag(2*x)",
          "\\mathbf{1}_{3\\times 3} \\cdot \\operatorname{Diag}(2\\cdot x)" },
        { "ones(3,3)'*X", "X", "I_3 ⊗ 1_{3×3}", "I_3 kron 1_{3x3}", "I_{3} \\otimes \\mathbf{1}_{3\\times 3}" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lj_expr *f = jacobian_forms_ok(ctx, t, cases[i].expr, cases[i].wrt, cases[i].uni, cases[i].plain);
        lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, cases[i].wrt));
        CK_NN(ctx, J);
        char *tex = lj_op_print(ctx, J, LJ_PRINT_LATEX), *plain = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
        CK_NN(ctx, tex);
        CK_NN(ctx, plain);
        ck_assert_str_eq(tex, cases[i].latex);
        for (int k = 0; k < 2; k++) {
            const char *s = k ? plain : tex;
            int round = 0, curly = 0;
            for (const char *c = s; *c; c++) {
                ck_assert_msg((unsigned char)*c < 0x80, "%s: '%s' is not ASCII", cases[i].expr, s);
                round += *c == '(' ? 1 : *c == ')' ? -1 : 0;
                curly += *c == '{' ? 1 : *c == '}' ? -1 : 0;
                ck_assert_msg(round >= 0 && curly >= 0, "%s: '%s' closes a bracket it did not open", cases[i].expr, s);
            }
            ck_assert_msg(!round && !curly, "%s: '%s' leaves a bracket open", cases[i].expr, s);
        }
        if (i == 1 || i == 7) /* with every allocation failing in turn: NOMEM and a message, or the whole form */
            print_fmt_under_alloc_failures(ctx, J, LJ_PRINT_LATEX, cases[i].latex, 1);
        lj_free(tex);
        lj_free(plain);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    /* the functions of the language read the same in an expression's
     * LaTeX and in a J's labels (one table for both: max was \operatorname{max}
     * in one and \max in the other) */
    const struct { const char *expr, *latex; } fns[] = {
        { "exp(max(x, A*x))", "\\max" },       { "exp(min(x, A*x))", "\\min" },
        { "sigmoid(x)", "\\sigma" },           { "exp(logdet(X))*x", "\\log\\det" },
        { "exp(tr(X))*x", "\\operatorname{tr}" }, { "exp(asin(x/9))", "\\arcsin" },
        { "exp(det(X))*x", "\\det" },          { "exp(softplus(x))", "\\operatorname{softplus}" },
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        lj_expr *f = lj_parse(ctx, fns[i].expr, t, NULL);
        CK_NN(ctx, f);
        lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x"));
        CK_NN(ctx, J);
        char *tex = lj_op_print(ctx, J, LJ_PRINT_LATEX), *etex = lj_expr_print_math(ctx, f, NULL, LJ_PRINT_LATEX);
        CK_NN(ctx, tex);
        CK_NN(ctx, etex);
        char want[64], ewant[64];
        snprintf(want, sizeof want, "%s(", fns[i].latex);
        snprintf(ewant, sizeof ewant, "%s\\left(", fns[i].latex);
        ck_assert_msg(strstr(tex, want), "%s: J '%s' lacks '%s'", fns[i].expr, tex, want);
        ck_assert_msg(strstr(etex, ewant), "%s: '%s' lacks '%s'", fns[i].expr, etex, ewant);
        lj_free(tex);
        lj_free(etex);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    /* a value's label cut short at its length limit is cut before a braced
     * group it would end inside, and before the group's ^ (X^{-1} as X,
     * not X^{- or X^) */
    for (int k = 8; k <= 17; k++) {
        char src[256], *w = src;
        w += sprintf(w, "exp(");
        for (int i = 0; i < k; i++) w += sprintf(w, "A*");
        sprintf(w, "inv(X)*inv(X)*inv(X)*x)");
        int64_t pos;
        lj_expr *f = lj_parse(ctx, src, t, &pos);
        lj_op *J = f ? lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x")) : NULL;
        CK_NN(ctx, J);
        for (int fmt = 0; fmt < 3; fmt++) {
            char *p = lj_op_print(ctx, J, (lj_print_format)fmt);
            CK_NN(ctx, p);
            int curly = 0;
            for (const char *c = p; *c; c++) curly += *c == '{' ? 1 : *c == '}' ? -1 : 0;
            ck_assert_msg(!curly && !strstr(p, "^…") && !strstr(p, "^\\ldots") && !strstr(p, "^..."),
                          "%s: '%s' is cut inside a group", src, p);
            lj_free(p);
        }
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* The sign of a negated base comes out of an integer power's derivative,
 * a Diag's sign goes in front of the product or term it is a factor of,
 * and meets a minus sign there: the derivative of (−x).^2 reads
 * Diag(2·x), not −Diag(2·(−x)), of x.*cos(x) Diag(cos(x)) − Diag(x ∘
 * sin(x)), not Diag(cos(x)) + Diag(x ∘ −sin(x)); vec(x^T) is x. Each J
 * against central differences, a plan's too, and the plain form parsed
 * back (Diag(d) as diag(d), I_3 as eye(3)) against J's entries. */
START_TEST(test_negated_power_labels)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 57, false);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "(-x).^2", "Diag(2·x)", "Diag(2*x)" },
        { "(-x)'.^2", "Diag(2·x)", "Diag(2*x)" },
        { "x'.^2", "Diag(2·x)", "Diag(2*x)" },
        { "sin(x')", "Diag(cos(x))", "Diag(cos(x))" },
        { "(-x).^3", "−Diag(3·x.^2)", "-Diag(3*x.^2)" },
        { "(-x).^(-1)", "Diag(x.^(−2))", "Diag(x.^(-2))" },
        { "(-x).^(-2)", "−Diag(2·x.^(−3))", "-Diag(2*x.^(-3))" },
        { "(-(-x)).^2", "Diag(2·x)", "Diag(2*x)" },
        { "A*(-x).^2", "A·Diag(2·x)", "A*Diag(2*x)" },
        { "(-(A*x)).^2", "Diag(2·(A·x))·A", "Diag(2*(A*x))*A" },
        { "x - (-x).^2", "I_3 − Diag(2·x)", "I_3 - Diag(2*x)" },
        { "x - 3*(-x).^2", "I_3 − 6·Diag(x)", "I_3 - 6*Diag(x)" }, /* the numbers meet */
        { "x + (-x).^3", "I_3 − Diag(3·x.^2)", "I_3 - Diag(3*x.^2)" },
        { "A*(-x).^2 - x", "A·Diag(2·x) − I_3", "A*Diag(2*x) - I_3" },
        /* a Hadamard product's factors' signs in front of its Diag, and so
         * in front of the term */
        { "x.*cos(x)", "Diag(cos(x)) − Diag(x ∘ sin(x))", "Diag(cos(x)) - Diag(x .* sin(x))" },
        { "cos(x).*x", "−Diag(x ∘ sin(x)) + Diag(cos(x))", "-Diag(x .* sin(x)) + Diag(cos(x))" },
        { "cos(x).*cos(x)", "−2·Diag(cos(x) ∘ sin(x))", "-2*Diag(cos(x) .* sin(x))" },
        { "(-x).*sin(x)", "−Diag(sin(x)) − Diag(x ∘ cos(x))", "-Diag(sin(x)) - Diag(x .* cos(x))" },
        { "2*(-x).^2", "4·Diag(x)", "4*Diag(x)" },
        { "x + 3*x.^3", "I_3 + 9·Diag(x.^2)", "I_3 + 9*Diag(x.^2)" },
        { "x + x.^3", "I_3 + Diag(3·x.^2)", "I_3 + Diag(3*x.^2)" }, /* no number outside to meet */
        /* a sign that is not one term's stays where it is */
        { "-sin(x)", "−Diag(cos(x))", "-Diag(cos(x))" },
        { "(x - A*x).^2", "Diag(2·(x − A·x))·(I_3 − A)", "Diag(2*(x - A*x))*(I_3 - A)" },
        /* powers of one base meet across a Diag's factors: gathered,
         * cancelled, exp(x) over 1 + exp(x) read as σ(x), and where nothing
         * is left the number times I */
        { "log(x.^2)", "Diag(2./x)", "Diag(2./x)" },
        { "log(sin(x).^2)", "Diag(2·cos(x) ∘ 1./sin(x))", "Diag(2*cos(x) .* 1./sin(x))" },
        { "x./(1+x.^2)", "Diag(1./(1 + x.^2)) − Diag(2·x.^2 ∘ 1./(1 + x.^2).^2)",
          "Diag(1./(1 + x.^2)) - Diag(2*x.^2 .* 1./(1 + x.^2).^2)" },
        { "exp(x)./(1+exp(x))", "Diag(σ(x)) − Diag(σ(x).^2)", "Diag(sigmoid(x)) - Diag(sigmoid(x).^2)" },
        { "exp(x).^2./(1+exp(x)).^2", "Diag(2·σ(x).^2) − Diag(2·σ(x).^3)",
          "Diag(2*sigmoid(x).^2) - Diag(2*sigmoid(x).^3)" },
        { "log(exp(x).^2)", "2·I_3", "2*I_3" },
        { "A*log(exp(x).^2)", "2·A", "2*A" },
        { "3*log(exp(x).^2) + x", "7·I_3", "7*I_3" },
        { "-log(exp(x).^2)", "−2·I_3", "-2*I_3" },
        { "(2*x).*log(x.^2)", "2·Diag(log(x.^2)) + 4·I_3", "2*Diag(log(x.^2)) + 4*I_3" },
        { "log(x.^2).*x.^2", "Diag(2·x) + Diag(2·x ∘ log(x.^2))", "Diag(2*x) + Diag(2*x .* log(x.^2))" },
        { "log(cos(x).^2)", "Diag(−2·sin(x) ∘ 1./cos(x))", "Diag(-2*sin(x) .* 1./cos(x))" },
        { "(((A*x)).^2).^3", "Diag(6·(A·x).^5)·A", "Diag(6*(A*x).^5)*A" },
        { "log((((A*x)).^3).^2)", "Diag(6./(A·x))·A", "Diag(6./(A*x))*A" },
        /* −Diag(−2) is 2·I_3, and meets I_3 as a like term; a sum left
         * with I_3 leaves the product, and one that cancels makes it 0 */
        { "((-x).^2) ./ x", "I_3", "I_3" },
        { "A*(((-x).^2) ./ x)", "A", "A" },
        { "x'*A*(x.^2./x)", "(x.^2 ⊘ x)^T·A^T + x^T·A", "(x.^2 ./ x)'*A' + x'*A" },
        { "A*(x.*x - x.^2)", "0_{3×3}", "0_{3x3}" },
        /* a whole number a factor's one term leads with goes in front of
         * the product (was Diag(x)·4·Diag(x.^3)) */
        { "x.^3.*x.*x", "4·Diag(x)·Diag(x.^3) + Diag(x.^3 ∘ x)", "4*Diag(x)*Diag(x.^3) + Diag(x.^3 .* x)" },

        /* a coefficient 1/k whose decimals do not end reads as written */
        { "x/3", "(1/3)·I_3", "(1/3)*I_3" },
        { "asin(x/9)", "(1/9)·Diag(1./sqrt(1 − (x/9).^2))", "(1/9)*Diag(1./sqrt(1 - (x/9).^2))" },
        { "x/4", "0.25·I_3", "0.25*I_3" },
        /* a number inside a reciprocal's brackets meets the others:
         * 2·(x + 2) ∘ 1./(2·sqrt(…)) is (x + 2) ∘ 1./sqrt(…) */
        { "sqrt(1+(x+2).^2)", "Diag((x + 2) ∘ 1./sqrt(1 + (x + 2).^2))", "Diag((x + 2) .* 1./sqrt(1 + (x + 2).^2))" },
        { "sqrt(1+(A*x).^2)", "Diag((A·x) ∘ 1./sqrt(1 + (A·x).^2))·A", "Diag((A*x) .* 1./sqrt(1 + (A*x).^2))*A" },
        /* a value's number in its brackets goes in front where labels meet:
         * 3·x ∘ 1./(1 + x), not (3·x) ∘ 1./(1 + x) */
        { "(3*x).*log1p(x)", "3·Diag(log1p(x)) + Diag(3·x ∘ 1./(1 + x))", "3*Diag(log1p(x)) + Diag(3*x .* 1./(1 + x))" },
        /* a whole number before a reciprocal in a Diag's sum: 3./R, not 3·1./R */
        { "(3*(A*x))./(1+(A*x).^2)", "Diag(3./(1 + (A·x).^2) − 6·(A·x).^2 ∘ 1./(1 + (A·x).^2).^2)·A",
          "Diag(3./(1 + (A*x).^2) - 6*(A*x).^2 .* 1./(1 + (A*x).^2).^2)*A" },
        /* like terms of a Diag's sum meet, k·P and k·(P) alike (their sum
         * 2·A·x + 2·(A·x) had lent its first term's number to the whole
         * when it met sin(x): 2·(A·x + 2·(A·x)) ∘ sin(x), a wrong J) */
        { "(2*(A*x)).*(A*x)", "Diag(4·A·x)·A", "Diag(4*A*x)*A" },
        { "(2*(A*x)).*(A*x).*sin(x)", "Diag(4·(A·x) ∘ sin(x))·A + Diag(2·(A·x).^2 ∘ cos(x))",
          "Diag(4*(A*x) .* sin(x))*A + Diag(2*(A*x).^2 .* cos(x))" },
        /* a bare Diag's number leaves it where the rest is another term:
         * 9·Diag(x) + Diag(3·x) is 12·Diag(x); and like terms that cancel
         * are no term (the operator keeps both: their entries may differ
         * by rounding) */
        { "3*(x.*x) + (3*x).*x", "12·Diag(x)", "12*Diag(x)" },
        { "x.*x + (2*x).*x", "6·Diag(x)", "6*Diag(x)" },
        { "x.*x - x.^2 + x", "I_3", "I_3" },
        { "x.*x - x.^2", "0_{3×3}", "0_{3x3}" },
        { "x.*x + 3*x", "2·Diag(x) + 3·I_3", "2*Diag(x) + 3*I_3" },

    };
    lj_expr *x = lj_symtab_get(t, "x");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "x", cases[i].uni, cases[i].plain, 300 + i);
        char *src = plain_in_language(cases[i].plain);
        plain_form_is_j(ctx, t, cases[i].expr, "x", src);
        free(src);
    }
    /* the transpose of a matrix's negation is the negated transpose: its
     * sign leaves the power's vec as well, vec(X^T) */
    lj_symtab *tX = symtab_3x3(ctx, 58, true);
    const struct { const char *expr, *uni, *plain; } mcases[] = {
        { "((-X)').^2", "Diag(2·vec(X^T))·K_{3,3}", "Diag(2*vec(X'))*K_{3,3}" },
        { "(-(X')).^2", "Diag(2·vec(X^T))·K_{3,3}", "Diag(2*vec(X'))*K_{3,3}" },
        { "((-X)').^3", "−Diag(3·vec(X^T).^2)·K_{3,3}", "-Diag(3*vec(X').^2)*K_{3,3}" },
        { "((-(A*X))').^2", "Diag(2·vec((A·X)^T))·K_{3,3}·(I_3 ⊗ A)", "Diag(2*vec((A*X)'))*K_{3,3}*(I_3 kron A)" },
        { "((-X)').^(-1)", "Diag(vec(X^T).^(−2))·K_{3,3}", "Diag(vec(X').^(-2))*K_{3,3}" },
    };
    for (size_t i = 0; i < sizeof mcases / sizeof mcases[0]; i++)
        jacobian_forms_plan_ok(ctx, tX, mcases[i].expr, "X", mcases[i].uni, mcases[i].plain, 340 + i);
    /* a Hadamard product before a matrix product keeps its brackets when
     * labels' factors meet (was Diag(vec(2·A ∘ (B·A) ∘ X)), a wrong J) */
    jacobian_forms_plan_ok(ctx, tX, "((A.*B)*A).*(X.^2)", "X", "Diag(vec(2·((A ∘ B)·A) ∘ X))",
                           "Diag(vec(2*((A .* B)*A) .* X))", 348);
    /* a matrix of ones in a transposed product is a factor, not a number
     * (its 1 had been kept in front: the first term printed
     * x^T·(1_{3×3}·(B·A)·A^T), a wrong J) */
    jacobian_forms_plan_ok(ctx, tX, "x'*((ones(3,3)*A)*(B*A)')*x", "x",
                           "x^T·(1_{3×3}·A·(B·A)^T)^T + x^T·(1_{3×3}·A·(B·A)^T)",
                           "x'*(1_{3x3}*A*(B*A)')' + x'*(1_{3x3}*A*(B*A)')", 346);
    /* a sign inside vec(…) folds with the one outside */
    jacobian_forms_plan_ok(ctx, tX, "B - (-(A.*B)*A).*X", "X", "Diag(vec((A ∘ B)·A))", "Diag(vec((A .* B)*A))", 347);
    /* a term that prints as 0 is no term (its product's factor cancelled) */
    jacobian_forms_plan_ok(ctx, tX, "A*(x.*x - x.^2)*sin(x)'*x", "x",
                           "(x^T ⊗ I_3)·(I_3 ⊗ (A·(x ∘ x − x.^2)))·Diag(cos(x)) + A·(x ∘ x − x.^2)·sin(x)^T",
                           "(x' kron I_3)*(I_3 kron (A*(x .* x - x.^2)))*Diag(cos(x)) + A*(x .* x - x.^2)*sin(x)'", 349);
    lj_symtab_free(&tX);
    /* printed with every allocation failing in turn: NOMEM and a message,
     * or the whole form */
    int64_t pos;
    lj_expr *f = lj_parse(ctx, "x - A*(-x).^2", t, &pos);
    lj_op *J = f ? lj_expr_jacobian(ctx, f, x) : NULL;
    CK_NN(ctx, J);
    print_under_alloc_failures(ctx, J, "I_3 − A·Diag(2·x)", 3);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* An elementwise function of a scalar has a scalar derivative, printed as
 * its symbol (cos(s), 1/(x^T·x)), not Diag(f'(vec s)); and s·(1/s) is 1,
 * so log det X reads (vec X^{-T})^T, as the Cookbook writes its gradient.
 * Each J also against central differences, and a plan's after x moved
 * against a fresh one. */
START_TEST(test_scalar_function_symbols)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    uint64_t seed = 41;
    const struct { const char *name; int64_t r, c; } decl[] = { { "X", 3, 3 }, { "x", 3, 1 }, { "a", 3, 1 }, { "s", 1, 1 } };
    for (int i = 0; i < 4; i++) {
        tmat m = tm_rand(decl[i].r, decl[i].c, &seed);
        for (int64_t k = 0; k < m.r * m.c; k++) m.a[k] *= 0.3;
        if (i == 0)
            for (int k = 0; k < 3; k++) m.a[4 * k] += 2.0; /* det X > 0 */
        if (i == 3) m.a[0] = 0.7;                           /* s > 0 */
        lj_expr *e = lj_expr_var(ctx, decl[i].name, decl[i].r, decl[i].c, m.a);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    const struct { const char *expr, *wrt, *uni, *plain; } cases[] = {
        { "log(det(X))", "X", "(vec X^{-T})^T", "(vec X^{-T})'" },
        { "log(s*det(X))", "X", "(vec X^{-T})^T", "(vec X^{-T})'" },
        { "exp(tr(X))", "X", "exp(tr(X))·(vec I_3)^T", "exp(tr(X))*(vec I_3)'" },
        { "log(x'*x)", "x", "2·(1/(x^T·x))·x^T", "2*(1/(x'*x))*x'" },
        { "atan(a'*x)", "x", "(1/(1 + (a^T·x)^2))·a^T", "(1/(1 + (a'*x)^2))*a'" },
        { "relu(a'*x)", "x", "[a^T·x > 0]·a^T", "[a'*x > 0]*a'" },
        { "sin(s)", "s", "cos(s)", "cos(s)" },
        { "atan(s)", "s", "1/(1 + s^2)", "1/(1 + s^2)" },
        { "sqrt(s)*x", "s", "0.5·(1/sqrt(s))·x", "0.5*(1/sqrt(s))*x" },
        { "sqrt(x'*x)", "x", "(1/sqrt(x^T·x))·x^T", "(1/sqrt(x'*x))*x'" }, /* the ½ meets the 2 */
        { "s*x'*x", "x", "2·s·x^T", "2*s*x'" }, /* s·x^T read as an operator, one term */
        { "tanh(s*x'*x)", "x", "2·(1 − tanh²(s·x^T·x))·s·x^T", "2*(1 - tanh(s*x'*x).^2)*s*x'" }, /* plain: the language's */
        { "sigmoid(a'*x)", "x", "σ(a^T·x)·(1 − σ(a^T·x))·a^T", "sigmoid(a'*x)*(1 - sigmoid(a'*x))*a'" },
        { "norm2(x)", "x", "(1/norm2(x))·x^T", "(1/norm2(x))*x'" },
        { "norm2(X)^2", "X", "2·(vec X)^T", "2*(vec X)'" }, /* norm2(X) meets 1/norm2(X) */
        { "norm2(x)^3", "x", "3·norm2(x)·x^T", "3*norm2(x)*x'" }, /* norm2(x)^2·(1/norm2(x)) */
        { "det(X)^2", "X", "2·det(X)^2·(vec X^{-T})^T", "2*det(X)^2*(vec X^{-T})'" },  /* det(X)·det(X) */
        { "det(X)^3", "X", "3·det(X)^3·(vec X^{-T})^T", "3*det(X)^3*(vec X^{-T})'" },  /* det(X)^2·det(X) */
        { "norm2(X*x - a)^2", "x", "2·(X·x − a)^T·X", "2*(X*x - a)'*X" },
        { "sin(x)", "x", "Diag(cos(x))", "Diag(cos(x))" }, /* not a scalar: a Diag still */
        { "sum(sum(X.*X))", "X", "2·(vec X)^T", "2*(vec X)'" }, /* the sum of a number: no 1_1^T */
        { "tr(sum(X))", "X", "1_9^T", "1_9'" },                 /* the trace of a number: no (vec I_1)^T */
        /* a number the child's print leads with meets the scalar in front */
        { "3*sum(sum(X.^2))", "X", "6·(vec X)^T", "6*(vec X)'" },
        { "-3*sum(sum(X.^2))", "X", "−6·(vec X)^T", "-6*(vec X)'" },
        { "exp(sum(sum(X.^2)))", "X", "2·exp(sum(sum(X.^2)))·(vec X)^T", "2*exp(sum(sum(X.^2)))*(vec X)'" },
        { "sqrt(sum(sum(X.^2)))", "X", "(1/sqrt(sum(sum(X.^2))))·(vec X)^T", "(1/sqrt(sum(sum(X.^2))))*(vec X)'" },
        { "sum(x.^2)*s", "x", "2·s·x^T", "2*s*x'" },
        { "sum(sum(X.^2)) + 3*sum(sum(X.^2))", "X", "8·(vec X)^T", "8*(vec X)'" }, /* terms alike once folded */
        /* a named matrix's vec in a value's label is vec X, bracketed where
         * something binds tighter */
        { "vec(X)'*vec(X)", "X", "2·(vec X)^T", "2*(vec X)'" },
        { "exp(vec(X)'*vec(X))", "X", "2·exp((vec X)^T·vec X)·(vec X)^T", "2*exp((vec X)'*vec X)*(vec X)'" },
        { "exp(vec(X).^2)", "X", "Diag(2·vec X ∘ exp((vec X).^2))", "Diag(2*vec X .* exp((vec X).^2))" },
        { "s*sum(sum(X.^2)) - 3*sum(sum(X.^2))", "X", "2·s·(vec X)^T − 6·(vec X)^T", "2*s*(vec X)' - 6*(vec X)'" },
        { "sin(sum(s))", "s", "cos(sum(s))", "cos(sum(s))" },
        /* a symbol's own minus sign goes with the number in front, its
         * brackets where no sign is inside; x·(−sum(…)) after a plus sign
         * reads as a minus sign */
        { "(-s)*x", "x", "−s·I_3", "-s*I_3" },
        { "(-2*s)*x", "x", "−2·s·I_3", "-2*s*I_3" },
        { "2*s*x", "x", "2·s·I_3", "2*s*I_3" },
        { "(-s)*x + 2*s*x", "x", "s·I_3", "s*I_3" },
        { "(-(s+1))*x", "x", "−(s + 1)·I_3", "-(s + 1)*I_3" },
        { "(-sum(x.^2))*x", "x", "−2·x·x^T − sum(x.^2)·I_3", "-2*x*x' - sum(x.^2)*I_3" },
        { "sum(sum(X.^2))*X", "X", "2·vec X·(vec X)^T + sum(sum(X.^2))·I_9", "2*vec X*(vec X)' + sum(sum(X.^2))*I_9" },
        { "sum((X*a).^2)*X", "X", "vec X·(vec(2·(X·a)·a^T))^T + sum((X·a).^2)·I_9",
          "vec X*(vec(2*(X*a)*a'))' + sum((X*a).^2)*I_9" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, cases[i].wrt, cases[i].uni, cases[i].plain, 43 + i);
    /* and the printed forms are J, the symbols' values put in */
    plain_form_is_j(ctx, t, "(-s)*x", "x", "-s*eye(3)");
    plain_form_is_j(ctx, t, "(-2*s)*x", "x", "-2*s*eye(3)");
    plain_form_is_j(ctx, t, "2*s*x", "x", "2*s*eye(3)");
    plain_form_is_j(ctx, t, "(-s)*x + 2*s*x", "x", "s*eye(3)");
    plain_form_is_j(ctx, t, "(-(s+1))*x", "x", "-(s + 1)*eye(3)");
    plain_form_is_j(ctx, t, "(-sum(x.^2))*x", "x", "-2*x*x' - sum(x.^2)*eye(3)");
    plain_form_is_j(ctx, t, "3*sum(sum(X.^2))", "X", "6*vec(X)'");
    /* a row's number moves to the front where it ends the product, and is
     * written once where the trace's chain folds a Kronecker product */
    plain_form_is_j(ctx, t, "sum(sum(X.^2))*X", "X", "2*vec(X)*vec(X)' + sum(sum(X.^2))*eye(9)");
    plain_form_is_j(ctx, t, "sum((X*a).^2)*X", "X", "vec(X)*vec(2*(X*a)*a')' + sum((X*a).^2)*eye(9)");
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Numbers stay numbers and fold: a number exponent, a numerator, a minus
 * sign or a number factor of an operand read as an operator (−x^T·x:
 * −2·x^T, not −x^T + (−x^T)); a right operand that starts with a minus
 * sign is bracketed in a value's label (x^T·(−A)). Each J against central
 * differences, and a plan's after x moved against a fresh one. */
START_TEST(test_number_factors_fold)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 47, false);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "(x'*x)^2", "4·(x^T·x)·x^T", "4*(x'*x)*x'" },
        { "(x'*x)^3", "6·(x^T·x)^2·x^T", "6*(x'*x)^2*x'" },
        { "1/(x'*x)", "−2·(1/(x^T·x)^2)·x^T", "-2*(1/(x'*x)^2)*x'" },
        { "-x'*x", "−2·x^T", "-2*x'" },
        { "(2*x')*x", "4·x^T", "4*x'" },
        { "(-x')*(-x)", "2·x^T", "2*x'" },
        { "x'*(-2)", "−2·I_3", "-2*I_3" },
        { "exp(-x'*x)", "−2·exp(−x^T·x)·x^T", "-2*exp(-x'*x)*x'" },
        { "x'*(-A)*x", "−x^T·A^T − x^T·A", "-x'*A' - x'*A" }, /* the label (x^T·(−A)) reads −x^T·A */
        { "(-x')*(-A)*x", "x^T·A^T + x^T·A", "x'*A' + x'*A" },
        { "x'*(-2*A)*x", "−2·x^T·A^T + x^T·(−2·A)", "-2*x'*A' + x'*(-2*A)" },
        { "x'*((-(2))*A)", "−2·A^T", "-2*A'" }, /* the number an interior node, read for the operator */
        { "((-2*A)*A)*x", "−2·A·A", "-2*A*A" }, /* a negative number in a value's label: − as elsewhere */
        { "(A*(-2*A))*x", "A·(−2·A)", "A*(-2*A)" },
        /* a value's row in J (one-off) and its column's transpose (a plan's
         * J, whose numbers are its own) print alike */
        { "(-(-(-x)))'*(-(-(A'*x)))", "−x^T·A − x^T·A^T", "-x'*A - x'*A'" },
        /* a transpose of a negation reads −x^T, its minus sign in front of
         * the product, two of them none (was exp(−(−x)^T·A·x)·(x^T·A^T −
         * (−x)^T·A)) */
        { "exp((-x)'*A*(-x))", "exp(x^T·A·x)·(x^T·A^T + x^T·A)", "exp(x'*A*x)*(x'*A' + x'*A)" },
        { "sin((-x)'*A*x)", "cos(−x^T·A·x)·(−x^T·A^T − x^T·A)", "cos(-x'*A*x)*(-x'*A' - x'*A)" },
        { "exp((-(-x))'*A*x)", "exp(x^T·A·x)·(x^T·A^T + x^T·A)", "exp(x'*A*x)*(x'*A' + x'*A)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "x", cases[i].uni, cases[i].plain, 53 + i);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* 1_n^T·Diag(d) prints as the row d^T (the sum of an elementwise
 * function: J of sum(exp(A*x)) reads exp(A·x)^T·A); the operator is
 * unchanged, so each J also against central differences */
START_TEST(test_ones_row_prints)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 61, true);
    double one[3] = { 1, 1, 1 };
    lj_expr *o = lj_expr_const(ctx, "o", 3, 1, one);
    CK_OK(ctx, lj_symtab_add(ctx, t, o));
    lj_expr_free(&o);
    const struct { const char *expr, *wrt, *uni, *plain; } cases[] = {
        { "o'*exp(A*x)", "x", "exp(A·x)^T·A", "exp(A*x)'*A" }, /* 1_3^T a row over the leaf's ones */
        { "sum(A.*X)", "X", "(vec A)^T", "(vec A)'" },
        { "sum(X.^2)", "X", "2·(vec X)^T", "2*(vec X)'" }, /* the number in front of the row */
        { "sum(X.^3)", "X", "3·((vec X).^2)^T", "3*((vec X).^2)'" },
        { "sum((-X).^2)", "X", "2·(vec X)^T", "2*(vec X)'" }, /* −(−2·(vec X)^T) */
        { "sum(sum((X*A).^2))", "X", "2·(vec(X·A·A^T))^T", "2*(vec(X*A*A'))'" }, /* and past a Kronecker product */
        { "-sum(x.^2)", "x", "−2·x^T", "-2*x'" },
        { "sum(exp(A*x))", "x", "exp(A·x)^T·A", "exp(A*x)'*A" },
        { "sum(x)", "x", "1_3^T", "1_3'" }, /* no Diag: the row of ones itself */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lj_expr *f = jacobian_forms_ok(ctx, t, cases[i].expr, cases[i].wrt, cases[i].uni, cases[i].plain);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Products of three whose middle factor alone depends on the variable
 * take their rule from the middle at once (vec(A·H·B) = (B^T ⊗ A)·vec H),
 * with the inner product skipped. Printed forms, central differences and
 * a plan's J after X moved, for: H the variable or an interior node, the
 * variable on either side of the inner product, nested products of three
 * (only the inner one skipped: a·(b·h·c)·o), an inner product that a sum
 * reads again (not skipped), and J with respect to X and A at once
 * against the two built one by one. */
START_TEST(test_products_of_three)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 83, true);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "A*X*B", "B^T ⊗ A", "B' kron A" },
        { "B*(X*A)", "A^T ⊗ B", "A' kron B" },
        { "A*exp(X)*B", "(B^T ⊗ A)·Diag(exp(vec X))", "(B' kron A)*Diag(exp(vec X))" },
        { "A*X'*B", "(B^T ⊗ A)·K_{3,3}", "(B' kron A)*K_{3,3}" },
        { "A*((X - B)*A)*B", "(B^T·A^T) ⊗ A", "(B'*A') kron A" },
        { "A*(B*X*A)*B", "(B^T·A^T) ⊗ (A·B)", "(B'*A') kron (A*B)" },
        { "x'*(X.*A)*x", "(x^T ⊗ x^T)·Diag(vec A)", "(x' kron x')*Diag(vec A)" },
        { "(A*X)*B + A*X", "(B^T ⊗ A) + (I_3 ⊗ A)", "(B' kron A) + (I_3 kron A)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "X", cases[i].uni, cases[i].plain, 90 + i);
    int64_t pos;
    lj_expr *f = lj_parse(ctx, "A*exp(X)*B", t, &pos);
    const lj_expr *vars[2] = { lj_symtab_get(t, "X"), lj_symtab_get(t, "A") };
    CK_NN(ctx, f);
    lj_op *Jn = lj_expr_jacobian_n(ctx, f, 2, vars), *J0 = lj_expr_jacobian(ctx, f, vars[0]);
    lj_op *J1 = lj_expr_jacobian(ctx, f, vars[1]);
    CK_NN(ctx, Jn);
    CK_NN(ctx, J0);
    CK_NN(ctx, J1);
    double dn[9 * 18], d01[9 * 18];
    CK_OK(ctx, lj_op_to_dense(ctx, Jn, dn, 9));
    CK_OK(ctx, lj_op_to_dense(ctx, J0, d01, 9));
    CK_OK(ctx, lj_op_to_dense(ctx, J1, d01 + 81, 9));
    ck_assert(memcmp(dn, d01, sizeof dn) == 0);
    double maxrel = -1, fro = -1;
    CK_OK(ctx, lj_expr_fd_check(ctx, f, lj_symtab_get(t, "A"), NULL, 0, &maxrel, &fro));
    ck_assert_msg(maxrel < 1e-6, "J of A*exp(X)*B w.r.t. A: finite differences differ by %g", maxrel);
    lj_op_free(&Jn);
    lj_op_free(&J0);
    lj_op_free(&J1);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A value's row labelled as a product, transposed in J, prints as the
 * product of the transposed factors where that writes no more ^T:
 * (x^T·A)^T is A^T·x, ((A + B)^T·x) stays bracketed as a factor, and
 * (x^T·A·B)^T keeps its form (B^T·A^T·x writes more). Each J also against
 * central differences and a plan's after X moved. */
START_TEST(test_transposed_value_labels)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 97, true);
    const struct { const char *expr, *uni, *plain; } cases[] = {
        { "(X*x)*(x'*A)", "((A^T·x)·x^T) ⊗ I_3", "((A'*x)*x') kron I_3" },
        { "(X*x)*(x'*(A+B))", "(((A + B)^T·x)·x^T) ⊗ I_3", "(((A + B)'*x)*x') kron I_3" },
        { "(X*x)*(x'*A*B)", "((x^T·A·B)^T·x^T) ⊗ I_3", "((x'*A*B)'*x') kron I_3" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "X", cases[i].uni, cases[i].plain, 120 + i);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Jacobians' printed forms (each also against central differences and a
 * plan's J after its variable moved), over symtab_3x3's A, X, B and x */
typedef struct { const char *expr, *wrt, *uni, *plain; } jform;

static void jforms_ok(uint64_t symseed, const jform *c, size_t n, uint64_t seed)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, symseed, true);
    for (size_t i = 0; i < n; i++) jacobian_forms_plan_ok(ctx, t, c[i].expr, c[i].wrt, c[i].uni, c[i].plain, seed + i);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

/* The plain form of a row "(vec M)'" in the language, vec's argument
 * bracketed: "(vec A')'" as "(vec(A'))'" (new; the rest as it is) */
static char *vec_called(const char *plain)
{
    size_t n = strlen(plain);
    char *o = malloc(2 * n + 1), *w = o;
    ck_assert_ptr_nonnull(o);
    for (const char *s = plain; *s;) {
        if (!strncmp(s, "vec ", 4)) { /* "vec TOKEN": to the bracket that closes the row */
            memcpy(w, "vec(", 4), w += 4, s += 4;
            for (int depth = 0; *s && (depth || *s != ')'); s++) {
                depth += *s == '(' ? 1 : *s == ')' ? -1 : 0;
                *w++ = *s;
            }
            *w++ = ')';
        } else
            *w++ = *s++;
    }
    *w = '\0';
    return o;
}

/* (vec I)^T·(P ⊗ Q), the derivative of a trace, prints as the row
 * (vec(Q^T·P))^T it is, a commutation after it taken in, further
 * Kronecker factors too, a last sum as a sum of rows with equal ones
 * gathered, and a row (vec C)^T the same way, (vec(Q^T·C·P))^T: the
 * Cookbook's gradients, transposed; a vector's row x^T, the row of ones
 * and 1^T·Diag(d) too. Each J against central
 * differences and a plan's; and where the plain form is in the language
 * (no I_n, X^{-T}), it parses back to J's own numbers. */
START_TEST(test_trace_rows)
{
    static const struct { const char *expr, *uni, *plain; bool parses; } cases[] = {
        { "tr(A*X)", "(vec A^T)^T", "(vec A')'", true },
        { "tr(X'*A)", "(vec A)^T", "(vec A)'", true },
        { "tr(A*X*B)", "(vec(A^T·B^T))^T", "(vec(A'*B'))'", true },
        { "tr(X'*X)", "2·(vec X)^T", "2*(vec X)'", true },
        { "tr(X*X)", "2·(vec X^T)^T", "2*(vec X')'", true },
        { "-tr(X'*X)", "−2·(vec X)^T", "-2*(vec X)'", true },
        { "tr(X*A*X')", "(vec(X·A^T))^T + (vec(X·A))^T", "(vec(X*A'))' + (vec(X*A))'", true },
        { "tr(X'*A*X)", "(vec(A·X))^T + (vec(A^T·X))^T", "(vec(A*X))' + (vec(A'*X))'", true },
        { "tr(A*X*B*X)", "(vec(A^T·X^T·B^T))^T + (vec((A·X·B)^T))^T", "(vec(A'*X'*B'))' + (vec((A*X*B)'))'",
          true },
        { "tr(X*A*X') - tr(X'*X)", "(vec(X·A^T))^T + (vec(X·A))^T − 2·(vec X)^T",
          "(vec(X*A'))' + (vec(X*A))' - 2*(vec X)'", true },
        { "sin(tr(X*A*X'))", "cos(tr(X·A·X^T))·((vec(X·A^T))^T + (vec(X·A))^T)",
          "cos(tr(X*A*X'))*((vec(X*A'))' + (vec(X*A))')", true },
        { "tr(inv(X)*A)", "−(vec(X^{-T}·A^T·X^{-T}))^T", "-(vec(X^{-T}*A'*X^{-T}))'", false },
        { "tr(X)", "(vec I_3)^T", "(vec I_3)'", false }, /* the row alone stays */
        /* a row (vec C)^T of logdet, det, a squared norm the same way */
        { "norm2(A*X*B - A)^2", "2·(vec(A^T·(A·X·B − A)·B^T))^T", "2*(vec(A'*(A*X*B - A)*B'))'", true },
        { "norm2(X*B)^2", "2·(vec(X·B·B^T))^T", "2*(vec(X*B*B'))'", true },
        { "det(A*X)", "det(A·X)·(vec(A^T·(A·X)^{-T}))^T", "det(A*X)*(vec(A'*(A*X)^{-T}))'", false },
        /* (X^T·X)^{-1} is its own transpose: the two rows are one */
        { "log(det(X'*X))", "2·(vec(X·(X^T·X)^{-1}))^T", "2*(vec(X*(X'*X)^{-1}))'", false },
        { "tr(inv(X'*X))", "−2·(vec(X·(X^T·X)^{-1}·(X^T·X)^{-1}))^T", "-2*(vec(X*(X'*X)^{-1}*(X'*X)^{-1}))'", false },
        { "log(det(X'*A*X))", "(vec(A·X·(X^T·A·X)^{-1}))^T + (vec(A^T·X·(X^T·A·X)^{-T}))^T",
          "(vec(A*X*(X'*A*X)^{-1}))' + (vec(A'*X*(X'*A*X)^{-T}))'", false },
        /* a vector's row x^T (C the column x or the row x^T, as the
         * factor's shape says) and the row of ones (C a matrix of ones) */
        { "x'*X'*X*x", "2·(vec(X·x·x^T))^T", "2*(vec(X*x*x'))'", true },
        { "x'*A*X*X*x", "(vec(A^T·x·x^T·X^T))^T + (vec((x^T·A·X)^T·x^T))^T",
          "(vec(A'*x*x'*X'))' + (vec((x'*A*X)'*x'))'", true },
        { "sum(sum(A*X))", "(vec(A^T·1_{3×3}))^T", "(vec(A'*1_{3x3}))'", false },
        /* 1^T·Diag(d), the row d^T, the same */
        { "sum(exp(X*x))", "(vec(exp(X·x)·x^T))^T", "(vec(exp(X*x)*x'))'", true },
        { "sum(exp(A*X*x))", "(vec(A^T·exp(A·X·x)·x^T))^T", "(vec(A'*exp(A*X*x)*x'))'", true },
    };
    lj_context *ctx = lj_context_new();
    lj_symtab *t = symtab_3x3(ctx, 191, true);
    lj_expr *X = lj_symtab_get(t, "X");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        jacobian_forms_plan_ok(ctx, t, cases[i].expr, "X", cases[i].uni, cases[i].plain, 200 + i);
        if (!cases[i].parses) continue;
        char *src = vec_called(cases[i].plain);
        plain_form_is_j(ctx, t, cases[i].expr, "X", src);
        free(src);
    }
    /* printed with every allocation failing in turn: NOMEM and a message,
     * or the whole form */
    const char *fold[] = { "tr(X*A*X') - tr(X'*X)", "norm2(A*X*B - A)^2", "tr(inv(X'*X))" };
    for (int e = 0; e < 3; e++) {
        int64_t pos;
        lj_expr *f = lj_parse(ctx, fold[e], t, &pos);
        lj_op *J = f ? lj_expr_jacobian(ctx, f, X) : NULL;
        CK_NN(ctx, J);
        char *want = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
        CK_NN(ctx, want);
        print_under_alloc_failures(ctx, J, want, 1);
        lj_free(want);
        lj_op_free(&J);
        lj_expr_free(&f);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* (−u) ∘ X differentiates to −Diag(vec u), not Diag(vec(−u)), so that its
 * sign meets J's others; u interior too. Plans print and evaluate alike. */
START_TEST(test_negated_hadamard_factor)
{
    static const jform cases[] = {
        { "(-x).*(X*x)", "X", "−Diag(x)·(x^T ⊗ I_3)", "-Diag(x)*(x' kron I_3)" },
        { "(X*x).*(-x)", "X", "−Diag(x)·(x^T ⊗ I_3)", "-Diag(x)*(x' kron I_3)" },
        { "(-(A*x)).*(X*x)", "X", "−Diag(A·x)·(x^T ⊗ I_3)", "-Diag(A*x)*(x' kron I_3)" },
        { "-((-x).*(X*x))", "X", "Diag(x)·(x^T ⊗ I_3)", "Diag(x)*(x' kron I_3)" },
    };
    jforms_ok(131, cases, sizeof cases / sizeof cases[0], 140);
}
END_TEST

/* sigmoid's value in a label is σ(…), as its derivative's is (the plain
 * form writes sigmoid), and stays atomic: σ(X)^T, not (σ(X))^T */
START_TEST(test_sigmoid_labels)
{
    static const jform cases[] = {
        { "X*sigmoid(X)", "X", "(σ(X)^T ⊗ I_3) + (I_3 ⊗ X)·Diag(σ(vec X) ∘ (1 − σ(vec X)))",
          "(sigmoid(X)' kron I_3) + (I_3 kron X)*Diag(sigmoid(vec X) .* (1 - sigmoid(vec X)))" },
        { "sigmoid(x)'*A*x", "x", "x^T·A^T·Diag(σ(x) ∘ (1 − σ(x))) + σ(x)^T·A",
          "x'*A'*Diag(sigmoid(x) .* (1 - sigmoid(x))) + sigmoid(x)'*A" },
    };
    jforms_ok(151, cases, sizeof cases / sizeof cases[0], 160);
}
END_TEST

/* Diag(a)·Diag(b)'s label: a factor 1./F of either cancels a factor F of
 * the other, and 1./(1 + exp(M)) ∘ exp(M) is σ(M); the numbers are the
 * product's (each J against central differences and a plan's) */
START_TEST(test_diag_label_cancelled)
{
    static const jform cases[] = {
        { "log(sigmoid(x))", "x", "Diag(1 − σ(x))", "Diag(1 - sigmoid(x))" },
        { "log(1-sigmoid(x))", "x", "−Diag(σ(x))", "-Diag(sigmoid(x))" },
        { "log(1+exp(x))", "x", "Diag(σ(x))", "Diag(sigmoid(x))" },
        { "log(exp(x)+1)", "x", "Diag(σ(x))", "Diag(sigmoid(x))" },
        { "log(1+exp(A*x))", "x", "Diag(σ(A·x))·A", "Diag(sigmoid(A*x))*A" },
        /* nothing cancels: the product of the two labels */
        { "log(2+exp(x))", "x", "Diag(1./(2 + exp(x)) ∘ exp(x))", "Diag(1./(2 + exp(x)) .* exp(x))" },
        { "log(1+exp(x).*x)", "x", "Diag(1./(1 + exp(x) ∘ x))·(Diag(x ∘ exp(x)) + Diag(exp(x)))",
          "Diag(1./(1 + exp(x) .* x))*(Diag(x .* exp(x)) + Diag(exp(x)))" },
        /* terms that differ in a Diag: the coefficients inside it */
        { "x.*(A*x)*2 - 3*(x.*x).*(A*x)", "x", "2·Diag(A·x) + Diag(2·x − 3·(x ∘ x))·A − 6·Diag((A·x) ∘ x)",
          "2*Diag(A*x) + Diag(2*x - 3*(x .* x))*A - 6*Diag((A*x) .* x)" },
    };
    jforms_ok(171, cases, sizeof cases / sizeof cases[0], 180);
}
END_TEST

/* A vector leaf transposed in J prints as its name with ^T, whatever the
 * name (the names of letters, digits and '_' take a shorter path than
 * other labels); a name that starts with "vec" is bracketed, so that it
 * does not read as vec of something */
START_TEST(test_transposed_name_labels)
{
    lj_context *ctx = lj_context_new();
    double o[4] = { 1, 1, 1, 1 }, W[12], b[3] = { 1, 2, 3 }, Q[12];
    for (int i = 0; i < 12; i++) W[i] = i + 1, Q[i] = 0.5 * i;
    const struct { const char *name, *want; } cases[] = {
        { "b", "(b^T ⊗ 1_4^T)·Diag(vec W)" },
        { "b_2", "(b_2^T ⊗ 1_4^T)·Diag(vec W)" },
        { "x1", "(x1^T ⊗ 1_4^T)·Diag(vec W)" },
        { "_", "(_^T ⊗ 1_4^T)·Diag(vec W)" },
        { "vecb", "((vecb)^T ⊗ 1_4^T)·Diag(vec W)" },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        lj_expr *one = lj_expr_const(ctx, "o", 4, 1, o), *w = lj_expr_const(ctx, "W", 4, 3, W);
        lj_expr *bc = lj_expr_const(ctx, cases[k].name, 3, 1, b), *q = lj_expr_var(ctx, "Q", 4, 3, Q);
        lj_expr *ot = lj_expr_transpose(ctx, one), *h = lj_expr_hadamard(ctx, q, w);
        lj_expr *l = lj_expr_mul(ctx, ot, h), *e = lj_expr_mul(ctx, l, bc);
        CK_NN(ctx, e);
        lj_op *J = lj_expr_jacobian(ctx, e, q);
        CK_NN(ctx, J);
        char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
        CK_NN(ctx, s);
        ck_assert_msg(!strcmp(s, cases[k].want), "'%s' printed '%s', want '%s'", cases[k].name, s, cases[k].want);
        lj_free(s);
        lj_op_free(&J);
        lj_expr *fr[] = { one, w, bc, q, ot, h, l, e };
        for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) lj_expr_free(&fr[i]);
    }
    lj_context_free(&ctx);
}
END_TEST

/* A vector of ones reads 1_n in J while its values are ones: its label
 * follows lj_expr_set_value both ways (the check is made once for each
 * version of the values), and J's numbers are those of the values. */
START_TEST(test_ones_label_follows_values)
{
    lj_context *ctx = lj_context_new();
    double o[4] = { 1, 1, 1, 1 }, o2[4] = { 1, 2, 1, 1 }, W[12], b[3] = { 1, 2, 3 }, Q[12], v[12];
    for (int i = 0; i < 12; i++) W[i] = i + 1, Q[i] = 0.5 * i, v[i] = 1.0 / (i + 2);
    lj_expr *one = lj_expr_const(ctx, "o", 4, 1, o), *w = lj_expr_const(ctx, "W", 4, 3, W);
    lj_expr *bc = lj_expr_const(ctx, "b", 3, 1, b), *q = lj_expr_var(ctx, "Q", 4, 3, Q);
    lj_expr *ot = lj_expr_transpose(ctx, one), *h = lj_expr_hadamard(ctx, q, w);
    lj_expr *l = lj_expr_mul(ctx, ot, h), *e = lj_expr_mul(ctx, l, bc);
    CK_NN(ctx, e);
    const struct { const double *o; const char *want; } steps[] = {
        { o, "(b^T ⊗ 1_4^T)·Diag(vec W)" }, { o, "(b^T ⊗ 1_4^T)·Diag(vec W)" },
        { o2, "(b^T ⊗ o^T)·Diag(vec W)" },  { o2, "(b^T ⊗ o^T)·Diag(vec W)" },
        { o, "(b^T ⊗ 1_4^T)·Diag(vec W)" },
    };
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        if (k > 0 && steps[k].o != steps[k - 1].o) CK_OK(ctx, lj_expr_set_value(ctx, one, steps[k].o));
        lj_op *J = lj_expr_jacobian(ctx, e, q);
        CK_NN(ctx, J);
        char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
        CK_NN(ctx, s);
        ck_assert_msg(!strcmp(s, steps[k].want), "step %zu printed '%s', want '%s'", k, s, steps[k].want);
        lj_free(s);
        double y, want = 0;
        CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, v, 0.0, &y));
        for (int c = 0; c < 3; c++)
            for (int r = 0; r < 4; r++) want += steps[k].o[r] * W[r + 4 * c] * b[c] * v[r + 4 * c];
        ck_assert_msg(fabs(y - want) <= 1e-13 * fabs(want), "step %zu: J·v %.17g, want %.17g", k, y, want);
        lj_op_free(&J);
    }
    lj_expr *fr[] = { one, w, bc, q, ot, h, l, e };
    for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) lj_expr_free(&fr[i]);
    lj_context_free(&ctx);
}
END_TEST

/* ---- the seeds ---------------------------------------------------------------- */

static lj_expr *load(lj_context *ctx, lj_symtab *t, const char *seed, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s/%s.mtx", LJ_CASES_DIR, seed, name);
    int64_t r, c;
    double *v;
    CK_OK(ctx, lj_read_dense_mtx(ctx, path, &r, &c, &v));
    lj_expr *e = lj_expr_var(ctx, name, r, c, v);
    lj_free(v);
    CK_OK(ctx, lj_symtab_add(ctx, t, e));
    return e;
}

static void seed_case(const char *seed, const char *text, const char *wrt, const char *const *names,
                      int nnames, const char *want, bool gradient)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *x = NULL;
    for (int i = 0; i < nnames; i++) {
        lj_expr *e = load(ctx, t, seed, names[i]);
        if (!strcmp(names[i], wrt)) x = e;
        else lj_expr_free(&e);
    }
    int64_t pos;
    lj_expr *f = lj_parse(ctx, text, t, &pos);
    CK_NN(ctx, f);
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    int64_t m = lj_expr_rows(x), n = lj_expr_cols(x);
    char *s = gradient ? lj_op_print_gradient(ctx, J, m, n, LJ_PRINT_UNICODE) : lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_msg(strcmp(s, want) == 0, "%s printed '%s', the accepted answer is '%s'", seed, s, want);
    lj_free(s);
    /* the value of the expression */
    char path[512];
    snprintf(path, sizeof path, "%s/%s/value.mtx", LJ_CASES_DIR, seed);
    int64_t vr, vc, er, ec;
    double *ref, *val;
    CK_OK(ctx, lj_read_dense_mtx(ctx, path, &vr, &vc, &ref));
    CK_OK(ctx, lj_expr_eval(ctx, f, &er, &ec, &val));
    ck_assert(vr * vc == er * ec);
    for (int64_t i = 0; i < vr * vc; i++) ck_assert(fabs(ref[i] - val[i]) <= 1e-12 * (1 + fabs(ref[i])));
    lj_free(ref);
    lj_free(val);
    /* the Jacobian (or gradient) against the independent reference */
    snprintf(path, sizeof path, "%s/%s/%s.mtx", LJ_CASES_DIR, seed, gradient ? "gradient" : "jacobian");
    CK_OK(ctx, lj_read_dense_mtx(ctx, path, &vr, &vc, &ref));
    tmat Jd = tm_new(lj_op_rows(J), lj_op_cols(J));
    CK_OK(ctx, lj_op_to_dense(ctx, J, Jd.a, Jd.r));
    if (gradient) {
        ck_assert(vr == m && vc == n);
        double *g = malloc(sizeof(double) * (size_t)(m * n));
        CK_OK(ctx, lj_expr_gradient(ctx, f, x, g));
        for (int64_t i = 0; i < m * n; i++) ck_assert(fabs(ref[i] - g[i]) <= 1e-12 * (1 + fabs(ref[i])));
        free(g);
    } else {
        ck_assert(vr == Jd.r && vc == Jd.c);
        for (int64_t i = 0; i < vr * vc; i++) ck_assert(fabs(ref[i] - Jd.a[i]) <= 1e-12 * (1 + fabs(ref[i])));
    }
    double maxrel;
    CK_OK(ctx, lj_expr_fd_check(ctx, f, x, J, 0, &maxrel, NULL));
    ck_assert_msg(maxrel < 1e-8, "%s: finite differences %g", seed, maxrel);
    lj_free(ref);
    tm_free(&Jd);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_expr_free(&x);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

START_TEST(test_seed000)
{
    const char *n[] = { "W", "A", "B" };
    seed_case("seed000", "W*(A.*B)", "A", n, 3, "(I_5 ⊗ W)·Diag(vec B)", false);
}
END_TEST

START_TEST(test_seed001)
{
    const char *n[] = { "x", "A" };
    seed_case("seed001", "(x*x').*A", "x", n, 2, "Diag(vec A)·((x ⊗ I_4) + (I_4 ⊗ x))", false);
}
END_TEST

START_TEST(test_seed002)
{
    const char *n[] = { "ones", "Q", "W", "b" };
    seed_case("seed002", "ones'*(Q.*W)*b", "Q", n, 4, "(1_3 b^T) ∘ W", true);
}
END_TEST

START_TEST(test_seed003)
{
    const char *n[] = { "A", "H", "W" };
    seed_case("seed003", "A*H*W", "H", n, 3, "W^T ⊗ A", false);
}
END_TEST

/* ---- errors ------------------------------------------------------------------- */


START_TEST(test_errors)
{
    env E = { lj_context_new(), 700, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *A = leaf(&E, "A", 3, 4, 0, true), *B = leaf(&E, "B", 5, 2, 0, true), *S = leaf(&E, "S", 3, 3, 0, true);
    ck_assert_ptr_null(lj_expr_mul(ctx, A, B));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "mul: inner dimensions differ: (3×4)·(5×2)");
    ck_assert_ptr_null(lj_expr_add(ctx, A, B));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "add: shapes differ: (3×4) + (5×2)");
    ck_assert_ptr_null(lj_expr_hadamard(ctx, A, B));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "hadamard: shapes differ");
    ck_assert_ptr_null(lj_expr_inv(ctx, A));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "inv: matrix must be square, not (3×4)");
    ck_assert_ptr_null(lj_expr_det(ctx, A));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "det: matrix must be square");
    ck_assert_ptr_null(lj_expr_trace(ctx, A));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "tr: matrix must be square");
    ck_assert_ptr_null(lj_expr_logdet(ctx, B));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "logdet");
    ck_assert_ptr_null(lj_expr_div_scalar(ctx, A, A));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "div");
    ck_assert_ptr_null(lj_expr_diag(ctx, A));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "diag: needs a vector or a square matrix");
    ck_assert_ptr_null(lj_expr_pow(ctx, A, NAN));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "pow");
    ck_assert_ptr_null(lj_expr_var(ctx, "2x", 1, 1, NULL));
    ASSERT_ERR(ctx, LJ_ERR_NAME, "not a valid name");
    ck_assert_ptr_null(lj_expr_var(ctx, "v", -1, 1, NULL));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "bad shape");
    ck_assert_ptr_null(lj_expr_var(ctx, "v", INT64_MAX / 2, 4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_OVERFLOW, "bad shape");
    ck_assert_ptr_null(lj_expr_kron(ctx, NULL, A));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "kron: operand 1 is NULL");
    ck_assert_ptr_null(lj_expr_func(ctx, (lj_func)99, A));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "unknown function");
    /* singular matrices */
    double sing[9] = { 1, 2, 3, 2, 4, 6, 0, 0, 1 };
    lj_expr *Z = keep(&E, lj_expr_var(ctx, "Z", 3, 3, sing));
    lj_expr *iz = keep(&E, lj_expr_inv(ctx, Z)), *dz = keep(&E, lj_expr_det(ctx, Z)), *lz = keep(&E, lj_expr_logdet(ctx, Z));
    double *v = NULL;
    int64_t r, c;
    ck_assert_int_eq(lj_expr_eval(ctx, iz, &r, &c, &v), LJ_ERR_SINGULAR);
    ASSERT_ERR(ctx, LJ_ERR_SINGULAR, "inv: matrix (3×3) is singular");
    CK_OK(ctx, lj_expr_eval(ctx, dz, &r, &c, &v));
    ck_assert(v[0] == 0.0);
    lj_free(v);
    ck_assert_ptr_null(lj_expr_jacobian(ctx, dz, Z));
    ASSERT_ERR(ctx, LJ_ERR_SINGULAR, "det");
    ck_assert_int_eq(lj_expr_eval(ctx, lz, &r, &c, &v), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "logdet: determinant of (3×3) is zero");
    double negdet[4] = { 0, 1, 1, 0 };
    lj_expr *N = keep(&E, lj_expr_var(ctx, "N", 2, 2, negdet)), *ln = keep(&E, lj_expr_logdet(ctx, N));
    ck_assert_int_eq(lj_expr_eval(ctx, ln, &r, &c, &v), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "negative");
    double negs[2] = { -1, 2 };
    lj_expr *q = keep(&E, lj_expr_var(ctx, "q", 2, 1, negs));
    lj_expr *lq = keep(&E, lj_expr_func(ctx, LJ_FN_LOG, q)), *sq = keep(&E, lj_expr_func(ctx, LJ_FN_SQRT, q));
    ck_assert_int_eq(lj_expr_eval(ctx, lq, &r, &c, &v), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "log: argument -1 is not positive");
    ck_assert_int_eq(lj_expr_eval(ctx, sq, &r, &c, &v), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "sqrt");
    /* gradient of a non-scalar */
    double g[12];
    ck_assert_int_eq(lj_expr_gradient(ctx, A, A, g), LJ_ERR_NOT_SCALAR);
    ASSERT_ERR(ctx, LJ_ERR_NOT_SCALAR, "gradient: expression is (3×4), not a scalar");
    /* Jacobian with respect to a constant or an expression */
    lj_expr *K = keep(&E, lj_expr_const(ctx, "K", 3, 3, NULL));
    ck_assert_ptr_null(lj_expr_jacobian(ctx, S, K));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "'K' is a constant");
    ck_assert_ptr_null(lj_expr_jacobian(ctx, S, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "jacobian");
    ck_assert_ptr_null(lj_expr_jacobian_n(ctx, S, 0, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "no variables");
    ck_assert_int_eq(lj_expr_eval(ctx, NULL, &r, &c, &v), LJ_ERR_INVALID);
    lj_context_clear(ctx);
    ck_assert_int_eq(lj_expr_set_value(ctx, iz, sing), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "not a leaf");
    ck_assert_int_eq(lj_expr_fd_check(ctx, S, K, NULL, 0, NULL, NULL), LJ_ERR_INVALID);
    lj_context_clear(ctx);
    ck_assert_int_eq(lj_expr_rows(NULL), -1);
    ck_assert_ptr_null(lj_expr_name(NULL));
    ck_assert(!lj_expr_is_var(K));
    env_free(&E);
    lj_context_free(&ctx);
}
END_TEST

/* Every constructor given a NULL operand: NULL out, and a message naming it. */
START_TEST(test_null_operands)
{
    lj_context *ctx = lj_context_new();
    lj_expr *a = lj_expr_var(ctx, "a", 2, 2, NULL);
    struct { const char *name; lj_expr *r; } un[] = {
        { "neg", lj_expr_neg(ctx, NULL) },         { "scale", lj_expr_scale(ctx, 2, NULL) },
        { "pow", lj_expr_pow(ctx, NULL, 2) },       { "transpose", lj_expr_transpose(ctx, NULL) },
        { "tr", lj_expr_trace(ctx, NULL) },         { "sum", lj_expr_sum(ctx, NULL) },
        { "vec", lj_expr_vec(ctx, NULL) },          { "diag", lj_expr_diag(ctx, NULL) },
        { "func", lj_expr_func(ctx, LJ_FN_EXP, NULL) }, { "inv", lj_expr_inv(ctx, NULL) },
        { "det", lj_expr_det(ctx, NULL) },          { "logdet", lj_expr_logdet(ctx, NULL) },
        { "norm2", lj_expr_norm2(ctx, NULL) },      { "add", lj_expr_add(ctx, a, NULL) },
        { "sub", lj_expr_sub(ctx, NULL, a) },       { "mul", lj_expr_mul(ctx, a, NULL) },
        { "hadamard", lj_expr_hadamard(ctx, NULL, a) }, { "hdiv", lj_expr_hdiv(ctx, a, NULL) },
        { "div", lj_expr_div_scalar(ctx, a, NULL) }, { "kron", lj_expr_kron(ctx, a, NULL) },
    };
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) {
        ck_assert_msg(un[i].r == NULL, "%s accepted NULL", un[i].name);
        lj_expr_free(&un[i].r);
    }
    /* the message of the last one, and of each in turn */
    for (size_t i = 0; i < sizeof un / sizeof un[0]; i++) {
        lj_context_clear(ctx);
        lj_expr *r = NULL;
        switch (i) {
        case 0: r = lj_expr_neg(ctx, NULL); break;
        case 1: r = lj_expr_scale(ctx, 2, NULL); break;
        case 2: r = lj_expr_pow(ctx, NULL, 2); break;
        case 3: r = lj_expr_transpose(ctx, NULL); break;
        case 4: r = lj_expr_trace(ctx, NULL); break;
        case 5: r = lj_expr_sum(ctx, NULL); break;
        case 6: r = lj_expr_vec(ctx, NULL); break;
        case 7: r = lj_expr_diag(ctx, NULL); break;
        case 8: r = lj_expr_func(ctx, LJ_FN_EXP, NULL); break;
        case 9: r = lj_expr_inv(ctx, NULL); break;
        case 10: r = lj_expr_det(ctx, NULL); break;
        case 11: r = lj_expr_logdet(ctx, NULL); break;
        case 12: r = lj_expr_norm2(ctx, NULL); break;
        case 13: r = lj_expr_add(ctx, a, NULL); break;
        case 14: r = lj_expr_sub(ctx, NULL, a); break;
        case 15: r = lj_expr_mul(ctx, a, NULL); break;
        case 16: r = lj_expr_hadamard(ctx, NULL, a); break;
        case 17: r = lj_expr_hdiv(ctx, a, NULL); break;
        case 18: r = lj_expr_div_scalar(ctx, a, NULL); break;
        default: r = lj_expr_kron(ctx, a, NULL); break;
        }
        ck_assert_ptr_null(r);
        ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_INVALID);
        ck_assert_msg(strncmp(lj_context_message(ctx), un[i].name, strlen(un[i].name)) == 0,
                      "message '%s' does not start with '%s'", lj_context_message(ctx), un[i].name);
    }
    ck_assert_ptr_null(lj_expr_scalar(ctx, INFINITY));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "scalar: value is not finite");
    ck_assert_ptr_null(lj_expr_scale(ctx, NAN, a));
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "scale: factor is not finite");
    ck_assert_ptr_null(lj_expr_print(ctx, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "expr_print");
    ck_assert_ptr_null(lj_expr_const(ctx, "bad name", 1, 1, NULL));
    ASSERT_ERR(ctx, LJ_ERR_NAME, "not a valid name");
    ck_assert_ptr_null(lj_expr_var(ctx, NULL, 1, 1, NULL));
    ASSERT_ERR(ctx, LJ_ERR_NAME, "a variable needs a name");
    /* operator constructors too */
    const lj_op *none[2] = { NULL, NULL };
    ck_assert_ptr_null(lj_op_kron_n(ctx, 0, none));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "kron: no operands");
    ck_assert_ptr_null(lj_op_mul(ctx, NULL, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "mul: operand 1 is NULL");
    ck_assert_ptr_null(lj_op_sub(ctx, NULL, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "lincomb");
    ck_assert_ptr_null(lj_op_dense_borrow(ctx, 2, 2, NULL, 2, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "dense_borrow: NULL values");
    lj_op *I = lj_op_identity(ctx, 2);
    const lj_op *ii[2] = { I, I };
    double bad[2] = { 1, NAN };
    ck_assert_ptr_null(lj_op_lincomb(ctx, 2, bad, ii));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "lincomb: coefficient 2 is not finite");
    lj_op_free(&I);
    lj_expr_free(&a);
    lj_context_free(&ctx);
}
END_TEST

/* Every allocation inside Jacobian construction fails in turn. */
/* Whole workflows with an allocation failure injected at every allocation
 * in turn: each run fails cleanly (a status and a message, nothing leaked,
 * which ASan and valgrind check, and no file left behind) or succeeds. */
static char wf_dir[64];

static bool dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return false;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n == 0;
}

/* parse → Jacobian → apply both ways → materialise → CSR → normal
 * diagonal → write (Matrix Market, Rutherford-Boeing) → read back */
static lj_status workflow_files(lj_context *ctx)
{
    static const double w[12] = { 1, 2, 3, -1, 0.5, 2, 1, 1, -2, 3, 1, 0.25 }, a[15] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6 };
    char mtx[128], rb[128];
    snprintf(mtx, sizeof mtx, "%s/J.mtx", wf_dir);
    snprintf(rb, sizeof rb, "%s/J.rb", wf_dir);
    lj_status st = LJ_OK;
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *W = lj_expr_const(ctx, "W", 4, 3, w), *A = lj_expr_var(ctx, "A", 3, 5, a), *B = lj_expr_const(ctx, "B", 3, 5, a);
    lj_expr *f = NULL;
    lj_op *J = NULL;
    cholmod_sparse *S = NULL, *R = NULL;
    lj_csr *C = NULL;
    double x[15] = { 0 }, y[20] = { 0 }, d[15];
    if (!t || !W || !A || !B || lj_symtab_add(ctx, t, W) || lj_symtab_add(ctx, t, A) || lj_symtab_add(ctx, t, B) ||
        !(f = lj_parse(ctx, "tanh(W*(A.*B)) + 2*W*A", t, NULL)) || !(J = lj_expr_jacobian(ctx, f, A)) ||
        lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) || lj_op_apply(ctx, J, 1, 1.0, y, 0.0, x) ||
        !(S = lj_op_to_sparse(ctx, J)) || !(C = lj_op_to_csr(ctx, J)) || lj_op_normal_diag(ctx, J, d) ||
        lj_op_write_mtx(ctx, J, mtx) || !(R = lj_read_sparse_mtx(ctx, mtx)) ||
        lj_op_write_rb(ctx, J, rb, NULL, NULL))
        st = lj_context_status(ctx);
    cholmod_sparse *R2 = st == LJ_OK ? lj_read_sparse_rb(ctx, rb) : NULL;
    if (st == LJ_OK && !R2) st = lj_context_status(ctx);
    unlink(mtx);
    unlink(rb);
    lj_sparse_free(ctx, &S);
    lj_sparse_free(ctx, &R);
    lj_sparse_free(ctx, &R2);
    lj_csr_free(&C);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_expr_free(&W);
    lj_expr_free(&A);
    lj_expr_free(&B);
    lj_symtab_free(&t);
    return st;
}

/* a Jacobian plan evaluated twice as a leaf changes */
static lj_status workflow_plan(lj_context *ctx)
{
    static const double u[6] = { 1, 2, 3, 4, 5, 6 }, v[8] = { 1, -1, 2, 0.5, 3, 1, 1, 2 };
    lj_expr *U = lj_expr_var(ctx, "U", 3, 2, u), *V = lj_expr_var(ctx, "V", 4, 2, v);
    lj_expr *Vt = lj_expr_transpose(ctx, V), *UV = lj_expr_mul(ctx, U, Vt), *F = lj_expr_func(ctx, LJ_FN_SIN, UV);
    const lj_expr *vars[2] = { U, V };
    lj_jacplan *p = F ? lj_jacplan_new(ctx, F, 2, vars) : NULL;
    double val[12];
    lj_op *J1 = p ? lj_jacplan_eval(ctx, p, val) : NULL, *J2 = NULL;
    if (J1 && lj_expr_set_value(ctx, U, v) == LJ_OK) J2 = lj_jacplan_eval(ctx, p, NULL);
    lj_status st = J2 ? LJ_OK : lj_context_status(ctx);
    lj_op_free(&J1);
    lj_op_free(&J2);
    lj_jacplan_free(&p);
    lj_expr *all[] = { U, V, Vt, UV, F };
    for (size_t i = 0; i < 5; i++) lj_expr_free(&all[i]);
    return st;
}

/* J = (I_2 ⊗ W)·Diag(vec B) of F = W(A∘B) at W, B, entry by entry */
static void seed000_dense(const double *w, const double *b, double *J)
{
    memset(J, 0, sizeof(double) * 8 * 6);
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 4; i++)
            for (int r = 0; r < 3; r++) J[(i + 4 * c) + 8 * (r + 3 * c)] = w[i + 4 * r] * b[r + 3 * c];
}

/* A Jacobian built once reads its leaves' numbers in place (no copy): it
 * keeps them when the leaves change, a failed set_value changes neither,
 * and a plan that recorded its J follows the leaves to their new numbers
 * (the old ones freed once the one-off J is: ASan and valgrind see any
 * read of them). */
START_TEST(test_jacobian_reads_leaves_in_place)
{
    lj_context *ctx = lj_context_new();
    double w[12], b[6], a[6], w2[12], b2[6], J[48], K[48], want[48];
    for (int i = 0; i < 12; i++) w[i] = 0.5 + 0.25 * i, w2[i] = 2.0 - 0.125 * i;
    for (int i = 0; i < 6; i++) b[i] = 1.5 + i, b2[i] = -0.5 * i - 0.25, a[i] = 0.1 * i;
    lj_expr *W = lj_expr_const(ctx, "W", 4, 3, w), *B = lj_expr_const(ctx, "B", 3, 2, b);
    lj_expr *A = lj_expr_var(ctx, "A", 3, 2, a), *AB = lj_expr_hadamard(ctx, A, B), *F = lj_expr_mul(ctx, W, AB);
    CK_NN(ctx, F);
    lj_jacplan *p = lj_jacplan_new(ctx, F, 1, (const lj_expr *const *)&A);
    lj_op *P = lj_jacplan_eval(ctx, p, NULL); /* records the plan's tape */
    CK_NN(ctx, P);
    lj_op_free(&P);
    lj_op *J1 = lj_expr_jacobian(ctx, F, A);
    CK_NN(ctx, J1);
    char *s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "(I_2 ⊗ W)·Diag(vec B)");
    lj_free(s);
    /* W and B move while J1 reads them: J1 keeps the numbers it was built with */
    CK_OK(ctx, lj_expr_set_value(ctx, W, w2));
    CK_OK(ctx, lj_expr_set_value(ctx, B, b2));
    CK_OK(ctx, lj_op_to_dense(ctx, J1, J, 8));
    seed000_dense(w, b, want);
    ck_assert(memcmp(J, want, sizeof J) == 0);
    lj_op *J2 = lj_expr_jacobian(ctx, F, A);
    CK_NN(ctx, J2);
    CK_OK(ctx, lj_op_to_dense(ctx, J2, K, 8));
    seed000_dense(w2, b2, want);
    ck_assert(memcmp(K, want, sizeof K) == 0);
    lj_op_free(&J1); /* the first numbers of W and B go with it */
    /* the plan updates its J in place from where W and B are now */
    P = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, P);
    const char *why;
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 0);
    memset(J, 0, sizeof J);
    CK_OK(ctx, lj_op_to_dense(ctx, P, J, 8));
    ck_assert(memcmp(J, want, sizeof J) == 0);
    lj_op_free(&P);
    /* W shared with J2: set_value needs a new block, and without one
     * neither W nor J2 changes */
    lj_context_fail_alloc(ctx, 1, 1);
    ck_assert_int_eq(lj_expr_set_value(ctx, W, w), LJ_ERR_NOMEM);
    lj_context_fail_alloc(ctx, 0, 0);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "set_value"));
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "'W' (4×3)"));
    lj_context_clear(ctx);
    int64_t r, c;
    double *v = NULL;
    CK_OK(ctx, lj_expr_eval(ctx, W, &r, &c, &v));
    ck_assert(memcmp(v, w2, sizeof w2) == 0);
    lj_free(v);
    CK_OK(ctx, lj_op_to_dense(ctx, J2, J, 8));
    ck_assert(memcmp(J, want, sizeof J) == 0);
    /* W its own again: its values are written in place, nothing allocated */
    lj_op_free(&J2);
    lj_context_fail_alloc(ctx, 1, 1);
    CK_OK(ctx, lj_expr_set_value(ctx, W, w));
    lj_context_fail_alloc(ctx, 0, 0);
    /* the finite-difference check perturbs the variable's numbers in
     * place: a J that reads them ((x x^T)∘C holds x) is not disturbed */
    double xv[3] = { 0.3, -1.2, 0.7 }, cv[9];
    for (int i = 0; i < 9; i++) cv[i] = 1.0 + 0.5 * i;
    lj_expr *x = lj_expr_var(ctx, "x", 3, 1, xv), *C = lj_expr_const(ctx, "C", 3, 3, cv);
    lj_expr *xt = lj_expr_transpose(ctx, x), *o = lj_expr_mul(ctx, x, xt), *G = lj_expr_hadamard(ctx, o, C);
    lj_op *JG = lj_expr_jacobian(ctx, G, x);
    CK_NN(ctx, JG);
    double g0[27], g1[27], maxrel = 1;
    CK_OK(ctx, lj_op_to_dense(ctx, JG, g0, 9));
    CK_OK(ctx, lj_expr_fd_check(ctx, G, x, JG, 0, &maxrel, NULL));
    ck_assert(maxrel < 1e-7);
    CK_OK(ctx, lj_op_to_dense(ctx, JG, g1, 9));
    ck_assert(memcmp(g0, g1, sizeof g0) == 0);
    CK_OK(ctx, lj_expr_eval(ctx, x, &r, &c, &v));
    ck_assert(memcmp(v, xv, sizeof xv) == 0);
    lj_free(v);
    /* and when it cannot have numbers of its own, it says so and changes nothing */
    lj_context_fail_alloc(ctx, 4, 1); /* its three work arrays, then the copy */
    ck_assert_int_eq(lj_expr_fd_check(ctx, G, x, JG, 0, &maxrel, NULL), LJ_ERR_NOMEM);
    lj_context_fail_alloc(ctx, 0, 0);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "fd_check"));
    lj_context_clear(ctx);
    CK_OK(ctx, lj_expr_eval(ctx, x, &r, &c, &v));
    ck_assert(memcmp(v, xv, sizeof xv) == 0);
    lj_free(v);
    lj_op *ops[] = { JG };
    lj_expr *es[] = { W, B, A, AB, F, x, C, xt, o, G };
    for (size_t i = 0; i < sizeof ops / sizeof *ops; i++) lj_op_free(&ops[i]);
    for (size_t i = 0; i < sizeof es / sizeof *es; i++) lj_expr_free(&es[i]);
    lj_jacplan_free(&p);
    lj_context_free(&ctx);
}
END_TEST

/* J of (A·X)∘(B·X) by hand: d F_ik / d X_jl = δ_kl (A_ij (BX)_ik + B_ij (AX)_ik),
 * A and B 4×3, X 3×2, rows of J vec F (i + 4k), columns vec X (j + 3l) */
static void products_dense(const double *a, const double *b, const double *x, double *J)
{
    double ax[8] = { 0 }, bx[8] = { 0 };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) {
                ax[i + 4 * k] += a[i + 4 * j] * x[j + 3 * k];
                bx[i + 4 * k] += b[i + 4 * j] * x[j + 3 * k];
            }
    memset(J, 0, sizeof(double) * 8 * 6);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++)
                J[(i + 4 * k) + 8 * (j + 3 * k)] = a[i + 4 * j] * bx[i + 4 * k] + b[i + 4 * j] * ax[i + 4 * k];
}

/* A Jacobian built once holds the values of interior nodes it needs (A·X
 * and B·X in Diag(vec(B·X)) and Diag(vec(A·X))) in the buffers they were
 * computed into, not in copies: J stays right after every expression is
 * freed (ASan and valgrind see any read of a freed buffer) and after X
 * changes, and equals the J of a plan, whose operators have numbers of
 * their own, bit for bit. */
/* J of f w.r.t. x prints as want (Unicode) */
static void jacobian_prints(lj_context *ctx, lj_expr *f, lj_expr *x, const char *want)
{
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, want);
    lj_free(s);
    lj_op_free(&J);
}

/* K_{m,n}·Diag(vec M)·K_{n,m} = Diag(vec M^T): d(X^T ∘ A)^T/dX prints as
 * the Cookbook writes it, and a plan whose Diag is X's moves it in place */
START_TEST(test_commuted_diag)
{
    env E = { lj_context_new(), 901, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 2, 3, 0, true), *A = leaf(&E, "A", 3, 2, 0, false);
    lj_expr *Xt = keep(&E, lj_expr_transpose(ctx, X)), *XtA = keep(&E, lj_expr_hadamard(ctx, Xt, A));
    lj_expr *F = keep(&E, lj_expr_transpose(ctx, XtA));
    lj_op *J = lj_expr_jacobian(ctx, F, X);
    CK_NN(ctx, J);
    char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "Diag(vec(A^T))");
    lj_free(s);
    s = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
    ck_assert_str_eq(s, "Diag(vec(A'))");
    lj_free(s);
    /* the entries are A's, transposed */
    double a[6], d[36];
    int64_t r, c;
    double *av;
    CK_OK(ctx, lj_expr_eval(ctx, A, &r, &c, &av));
    memcpy(a, av, sizeof a);
    lj_free(av);
    CK_OK(ctx, lj_op_to_dense(ctx, J, d, 6));
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) /* X(i, j) is entry i + 2j of vec X and meets A(j, i) */
            ck_assert_double_eq(d[(i + 2 * j) * 7], a[j + 3 * i]);
    lj_op_free(&J);
    fd_ok(&E, F, X, 1e-7, "(X^T ∘ A)^T");
    /* (X^T ∘ B^T)^T = X ∘ B: vec((B^T)^T) is vec B */
    lj_expr *B = leaf(&E, "B", 2, 3, 0, false), *Bt = keep(&E, lj_expr_transpose(ctx, B));
    lj_expr *G = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_hadamard(ctx, Xt, Bt))));
    jacobian_prints(ctx, G, X, "Diag(vec B)");
    /* a product of Diags: each vec in its label transposed */
    lj_expr *S = keep(&E, lj_expr_func(ctx, LJ_FN_SIN, Xt));
    lj_expr *SA = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_hadamard(ctx, S, A))));
    jacobian_prints(ctx, SA, X, "Diag(vec(A^T) ∘ cos(vec X))");
    fd_ok(&E, SA, X, 1e-6, "(sin(X^T) ∘ A)^T");
    /* Diags of X's own values: a plan's tape transposes their new entries */
    lj_expr *H = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_hadamard(ctx, Xt, Xt))));
    jacobian_prints(ctx, H, X, "2·Diag(vec X)");
    int before = plan_updates;
    fd_ok(&E, H, X, 1e-6, "(X^T ∘ X^T)^T");
    ck_assert_int_gt(plan_updates, before);
    env_free(&E);
    lj_context_free(&E.ctx);
}
END_TEST

/* The derivative of a transposed sum whose terms carry the inverse
 * commutation: K·(Diag·K + Diag·K·(I ⊗ A)) multiplied out term by term,
 * no commutation left; commutations that pass a Diag; and labels of
 * (X^T)^T that read X. */
START_TEST(test_commutation_through_sums)
{
    env E = { lj_context_new(), 907, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 2, 3, 0, true), *A = leaf(&E, "A", 2, 2, 0, false), *C = leaf(&E, "C", 3, 2, 0, false);
    lj_expr *Xt = keep(&E, lj_expr_transpose(ctx, X)), *AX = keep(&E, lj_expr_mul(ctx, A, X));
    lj_expr *AXt = keep(&E, lj_expr_transpose(ctx, AX));
    /* (X^T ∘ (A·X)^T)^T = X ∘ (A·X) */
    lj_expr *F = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_hadamard(ctx, Xt, AXt))));
    jacobian_prints(ctx, F, X, "Diag(vec(A·X)) + Diag(vec X)·(I_3 ⊗ A)");
    fd_ok(&E, F, X, 1e-6, "(X^T ∘ (A·X)^T)^T");
    /* (X^T ∘ C + (A·X)^T)^T */
    lj_expr *G = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_add(ctx, keep(&E, lj_expr_hadamard(ctx, Xt, C)), AXt))));
    jacobian_prints(ctx, G, X, "Diag(vec(C^T)) + (I_3 ⊗ A)");
    fd_ok(&E, G, X, 1e-6, "(X^T ∘ C + (A·X)^T)^T");
    /* a term whose commutations pass its Diag, ((X^T·A) ∘ C)^T = (A^T·X) ∘ C^T */
    lj_expr *XtA = keep(&E, lj_expr_mul(ctx, Xt, A));
    lj_expr *H = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_add(ctx, keep(&E, lj_expr_hadamard(ctx, XtA, C)), Xt))));
    jacobian_prints(ctx, H, X, "Diag(vec(C^T))·(I_3 ⊗ A^T) + I_6");
    fd_ok(&E, H, X, 1e-6, "((X^T·A) ∘ C + X^T)^T");
    /* sin((X^T)^T): the label reads vec X */
    lj_expr *S = keep(&E, lj_expr_func(ctx, LJ_FN_SIN, keep(&E, lj_expr_transpose(ctx, Xt))));
    jacobian_prints(ctx, S, X, "Diag(cos(vec X))");
    fd_ok(&E, S, X, 1e-6, "sin((X^T)^T)");
    /* inside a label a chain of transposes reads as its base, transposed
     * when the chain is odd, bracketed where the transpose would be:
     * sin(((X^T)^T)^T·A) and sin(((A·X)^T)^T·C) */
    lj_expr *Xttt = keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_transpose(ctx, Xt))));
    lj_expr *T3 = keep(&E, lj_expr_func(ctx, LJ_FN_SIN, keep(&E, lj_expr_mul(ctx, Xttt, A))));
    jacobian_prints(ctx, T3, X, "Diag(cos(vec(X^T·A)))·(A^T ⊗ I_3)·K_{2,3}");
    fd_ok(&E, T3, X, 1e-6, "sin(((X^T)^T)^T·A)");
    lj_expr *T2 = keep(&E, lj_expr_func(ctx, LJ_FN_SIN, keep(&E, lj_expr_mul(ctx, keep(&E, lj_expr_transpose(ctx, AXt)), C))));
    jacobian_prints(ctx, T2, X, "Diag(cos(vec((A·X)·C)))·(C^T ⊗ A)");
    fd_ok(&E, T2, X, 1e-6, "sin(((A·X)^T)^T·C)");
    /* X^T·a and c^T·X^T: the commutation goes into the Kronecker
     * product, whose vector factor makes the other commutation I */
    lj_expr *a = leaf(&E, "a", 2, 1, 0, false), *c = leaf(&E, "c", 3, 1, 0, false);
    lj_expr *Xta = keep(&E, lj_expr_mul(ctx, Xt, a));
    jacobian_prints(ctx, Xta, X, "I_3 ⊗ a^T");
    fd_ok(&E, Xta, X, 1e-7, "X^T·a");
    lj_expr *ctXt = keep(&E, lj_expr_mul(ctx, keep(&E, lj_expr_transpose(ctx, c)), Xt));
    jacobian_prints(ctx, ctXt, X, "c^T ⊗ I_2");
    fd_ok(&E, ctXt, X, 1e-7, "c^T·X^T");
    lj_expr *sXta = keep(&E, lj_expr_func(ctx, LJ_FN_SIN, Xta));
    jacobian_prints(ctx, sXta, X, "Diag(cos(X^T·a))·(I_3 ⊗ a^T)");
    fd_ok(&E, sXta, X, 1e-7, "sin(X^T·a)");
    env_free(&E);
    lj_context_free(&E.ctx);
}
END_TEST

/* Labels through commutations: f(A^T)^T is f(A) for an elementwise f (not
 * where the ^T is one factor's, C·X^T), and a scaled commutation in a sum
 * absorbs another one. */
START_TEST(test_commuted_labels)
{
    env E = { lj_context_new(), 919, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 2, 3, 0, true), *A = leaf(&E, "A", 2, 2, 0, false), *B = leaf(&E, "B", 2, 2, 0, false);
    lj_expr *C = leaf(&E, "C", 3, 3, 0, false), *D = leaf(&E, "D", 3, 2, 0, false);
    lj_expr *Xt = keep(&E, lj_expr_transpose(ctx, X));
    lj_expr *F = keep(&E, lj_expr_transpose(
                              ctx, keep(&E, lj_expr_hadamard(ctx, keep(&E, lj_expr_func(ctx, LJ_FN_SIN, Xt)),
                                                              keep(&E, lj_expr_mul(ctx, Xt, B))))));
    jacobian_prints(ctx, F, X, "Diag(vec((X^T·B)^T) ∘ cos(vec X)) + Diag(vec sin(X))·(I_3 ⊗ B^T)");
    fd_ok(&E, F, X, 1e-6, "(sin(X^T) ∘ (X^T·B))^T");
    lj_expr *G = keep(&E, lj_expr_transpose(
                              ctx, keep(&E, lj_expr_hadamard(
                                                ctx, keep(&E, lj_expr_func(ctx, LJ_FN_SIN, keep(&E, lj_expr_mul(ctx, C, Xt)))), D))));
    jacobian_prints(ctx, G, X, "Diag(vec(D^T) ∘ cos(vec((C·X^T)^T)))·(C ⊗ I_2)");
    fd_ok(&E, G, X, 1e-6, "(sin(C·X^T) ∘ D)^T");
    lj_expr *H = keep(&E, lj_expr_transpose(
                              ctx, keep(&E, lj_expr_add(ctx, keep(&E, lj_expr_scale(ctx, 2.0, Xt)),
                                                         keep(&E, lj_expr_transpose(ctx, keep(&E, lj_expr_mul(ctx, A, X))))))));
    jacobian_prints(ctx, H, X, "2·I_6 + (I_3 ⊗ A)");
    fd_ok(&E, H, X, 1e-6, "(2·X^T + (A·X)^T)^T");
    env_free(&E);
    lj_context_free(&E.ctx);
}
END_TEST

/* A DAG past the order's inline room (LJI_TOPO_INLINE nodes): X and A
 * shared by every term, found again through the order's map once it has
 * one, and the Jacobian still right against central differences. */
START_TEST(test_large_shared_dag)
{
    env E = { lj_context_new(), 913, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 2, 2, 0, true), *A = leaf(&E, "A", 2, 2, 0, false);
    lj_expr *c = lj_expr_retain(X);
    for (int i = 0; i < 40; i++) { /* c <- c + sin(A·X) ∘ X, 4 nodes a step */
        lj_expr *ax = lj_expr_mul(ctx, A, X), *sn = lj_expr_func(ctx, LJ_FN_SIN, ax);
        lj_expr *t = lj_expr_hadamard(ctx, sn, X), *n = lj_expr_add(ctx, c, t);
        lj_expr_free(&ax);
        lj_expr_free(&sn);
        lj_expr_free(&t);
        lj_expr_free(&c);
        c = n;
    }
    keep(&E, c);
    fd_ok(&E, c, X, 1e-5, "X + 40 terms sin(A·X) ∘ X");
    env_free(&E);
    lj_context_free(&E.ctx);
}
END_TEST

/* Around the order's inline room: chains of 28 to 36 nodes (as deep as
 * they are long) and DAGs of as many nodes but shallow (a sum of terms
 * that share X), taken the small way up to LJI_TOPO_INLINE nodes and
 * the general way past it; every Jacobian right against central
 * differences. */
START_TEST(test_topo_inline_edge)
{
    env E = { lj_context_new(), 917, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 2, 1, 0, true), *A = leaf(&E, "A", 2, 2, 0, false);
    for (int len = 28; len <= 36; len++) {
        lj_expr *c = lj_expr_retain(X); /* X and len − 1 functions: len nodes */
        for (int i = 1; i < len; i++) {
            lj_expr *n = lj_expr_func(ctx, i % 2 ? LJ_FN_SIN : LJ_FN_TANH, c);
            lj_expr_free(&c);
            c = n;
        }
        keep(&E, c);
        fd_ok(&E, c, X, 1e-5, "a chain around the inline order's size");
        lj_op *J = lj_expr_jacobian(ctx, c, X);
        CK_NN(ctx, J);
        ck_assert_int_eq(lj_op_kind_of(J), LJ_OP_DIAG);
        lj_op_free(&J);
        /* X, A, then (A·X) ∘ X and a sum for each further term: 3 + 4k */
        lj_expr *s = NULL;
        int64_t nodes = 2;
        while (nodes + 4 <= len + 2) {
            lj_expr *ax = lj_expr_mul(ctx, A, X), *sn = lj_expr_func(ctx, LJ_FN_SIN, ax);
            lj_expr *t = lj_expr_hadamard(ctx, sn, X), *n = s ? lj_expr_add(ctx, s, t) : lj_expr_retain(t);
            nodes += s ? 4 : 3;
            lj_expr_free(&ax);
            lj_expr_free(&sn);
            lj_expr_free(&t);
            lj_expr_free(&s);
            s = n;
        }
        keep(&E, s);
        fd_ok(&E, s, X, 1e-5, "a shallow DAG around the inline order's size");
    }
    env_free(&E);
    lj_context_free(&E.ctx);
}
END_TEST

START_TEST(test_jacobian_keeps_interior_values)
{
    lj_context *ctx = lj_context_new();
    double a[12], b[12], x[6], x2[6], J[48], K[48], want[48];
    for (int i = 0; i < 12; i++) a[i] = 0.5 + 0.25 * i, b[i] = 1.75 - 0.375 * i;
    for (int i = 0; i < 6; i++) x[i] = 0.3 * i - 0.6, x2[i] = 1.1 - 0.2 * i;
    lj_expr *A = lj_expr_const(ctx, "A", 4, 3, a), *B = lj_expr_const(ctx, "B", 4, 3, b);
    lj_expr *X = lj_expr_var(ctx, "X", 3, 2, x), *AX = lj_expr_mul(ctx, A, X), *BX = lj_expr_mul(ctx, B, X);
    lj_expr *F = lj_expr_hadamard(ctx, AX, BX);
    CK_NN(ctx, F);
    lj_op *J1 = lj_expr_jacobian(ctx, F, X);
    CK_NN(ctx, J1);
    char *s = lj_op_print(ctx, J1, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "Diag(vec(B·X))·(I_2 ⊗ A) + Diag(vec(A·X))·(I_2 ⊗ B)");
    lj_free(s);
    lj_jacplan *p = lj_jacplan_new(ctx, F, 1, (const lj_expr *const *)&X);
    lj_op *P = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, P);
    CK_OK(ctx, lj_op_to_dense(ctx, J1, J, 8));
    CK_OK(ctx, lj_op_to_dense(ctx, P, K, 8));
    ck_assert(memcmp(J, K, sizeof J) == 0);
    products_dense(a, b, x, want);
    for (int i = 0; i < 48; i++) ck_assert_double_eq_tol(J[i], want[i], 1e-13);
    lj_op_free(&P);
    lj_jacplan_free(&p);
    /* X moves: a new J follows, J1 keeps its numbers */
    CK_OK(ctx, lj_expr_set_value(ctx, X, x2));
    lj_op *J2 = lj_expr_jacobian(ctx, F, X);
    CK_NN(ctx, J2);
    /* nothing of the expressions left: J1 and J2 hold what they read */
    lj_expr *es[] = { A, B, X, AX, BX, F };
    for (size_t i = 0; i < sizeof es / sizeof *es; i++) lj_expr_free(&es[i]);
    memset(K, 0, sizeof K);
    CK_OK(ctx, lj_op_to_dense(ctx, J1, K, 8));
    ck_assert(memcmp(J, K, sizeof J) == 0);
    CK_OK(ctx, lj_op_to_dense(ctx, J2, K, 8));
    products_dense(a, b, x2, want);
    for (int i = 0; i < 48; i++) ck_assert_double_eq_tol(K[i], want[i], 1e-13);
    /* and they apply both ways as their matrices say */
    double v[6], y[8], w[8], g[6];
    for (int i = 0; i < 6; i++) v[i] = 0.5 - 0.25 * i;
    for (int i = 0; i < 8; i++) w[i] = 0.125 * i - 0.5;
    CK_OK(ctx, lj_op_apply(ctx, J2, 0, 1.0, v, 0.0, y));
    CK_OK(ctx, lj_op_apply(ctx, J2, 1, 1.0, w, 0.0, g));
    for (int r = 0; r < 8; r++) {
        double t = 0;
        for (int c = 0; c < 6; c++) t += K[r + 8 * c] * v[c];
        ck_assert_double_eq_tol(y[r], t, 1e-12);
    }
    for (int c = 0; c < 6; c++) {
        double t = 0;
        for (int r = 0; r < 8; r++) t += K[r + 8 * c] * w[r];
        ck_assert_double_eq_tol(g[c], t, 1e-12);
    }
    lj_op_free(&J1);
    lj_op_free(&J2);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_alloc_failure_workflows)
{
    snprintf(wf_dir, sizeof wf_dir, "/tmp/lj_wf_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(wf_dir));
    lj_status (*flows[])(lj_context *) = { workflow_files, workflow_plan };
    const char *names[] = { "files", "plan" };
    int64_t tried = 0;
    for (int w = 0; w < 2; w++) {
        lj_context *ctx = lj_context_new(); /* a fresh context each run: its workspace grows too */
        lj_context_fail_alloc(ctx, 0, 0);
        CK_OK(ctx, flows[w](ctx));
        int64_t n = lj_context_fail_alloc(ctx, 0, 0); /* allocations of one clean run */
        lj_context_free(&ctx);
        ck_assert_int_gt(n, 20);
        for (int64_t k = 1; k <= n; k++) {
            ctx = lj_context_new();
            lj_context_fail_alloc(ctx, k, 1);
            lj_status st = flows[w](ctx);
            ck_assert_msg(st != LJ_OK, "%s: allocation %lld of %lld failed, yet the run succeeded", names[w],
                          (long long)k, (long long)n);
            ck_assert_msg(lj_context_message(ctx)[0] != '\0', "%s: failure %lld has no message", names[w], (long long)k);
            ck_assert_msg(dir_is_empty(wf_dir), "%s: failure %lld left a file behind", names[w], (long long)k);
            lj_context_free(&ctx);
        }
        tried += n;
    }
    ck_assert_int_gt(tried, 100);
    rmdir(wf_dir);
}
END_TEST

START_TEST(test_alloc_failure_jacobian)
{
    env E = { lj_context_new(), 800, { 0 }, 0 };
    lj_context *ctx = E.ctx;
    lj_expr *X = leaf(&E, "X", 3, 2, 0, true), *W = leaf(&E, "W", 4, 3, 0, false), *S = leaf(&E, "S", 2, 2, 3, false);
    lj_expr *WX = keep(&E, lj_expr_mul(ctx, W, X)), *T = keep(&E, lj_expr_func(ctx, LJ_FN_TANH, WX));
    lj_expr *XS = keep(&E, lj_expr_mul(ctx, X, S)), *K = keep(&E, lj_expr_kron(ctx, T, XS));
    lj_expr *F = keep(&E, lj_expr_sum(ctx, K));
    /* and a product of three, W·tanh(X)·S, its rule taken from the middle */
    lj_expr *TX = keep(&E, lj_expr_func(ctx, LJ_FN_TANH, X)), *WT = keep(&E, lj_expr_mul(ctx, W, TX));
    lj_expr *WTS = keep(&E, lj_expr_mul(ctx, WT, S)), *F2 = keep(&E, lj_expr_sum(ctx, WTS));
    lj_expr *Fs[2] = { F, F2 };
    for (int f = 0; f < 2; f++) {
        int ok_at = 0;
        for (int n = 1; n < 3000; n++) {
            lj_context_fail_alloc(ctx, n, 0);
            lj_op *J = lj_expr_jacobian(ctx, Fs[f], X);
            double g[6];
            lj_status st = J ? lj_expr_gradient(ctx, Fs[f], X, g) : LJ_ERR_NOMEM;
            if (J && st == LJ_OK) {
                ok_at = n;
                lj_op_free(&J);
                break;
            }
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: %s", n, lj_context_message(ctx));
            lj_context_clear(ctx);
            lj_op_free(&J);
        }
        ck_assert_int_gt(ok_at, f ? 8 : 20);
    }
    lj_context_fail_alloc(ctx, 0, 0);
    env_free(&E);
    lj_context_free(&ctx);
}

/* An expression of more nodes than a topological order holds inline: an
 * allocation failure while the order grows (its nodes, operand indices or
 * map) is reported like any other, and leaks nothing (ASan, valgrind). */
START_TEST(test_alloc_failure_long_expression)
{
    lj_context *ctx = lj_context_new();
    double xv[6] = { 0.1, -0.2, 0.3, 0.4, -0.5, 0.6 };
    lj_expr *X = lj_expr_var(ctx, "X", 3, 2, xv), *c = lj_expr_retain(X);
    for (int i = 0; i < 40; i++) {
        lj_expr *n = lj_expr_func(ctx, i % 2 ? LJ_FN_SIN : LJ_FN_TANH, c);
        lj_expr_free(&c);
        c = n;
    }
    CK_NN(ctx, c);
    int ok_at = 0;
    for (int n = 1; n < 3000; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *J = lj_expr_jacobian(ctx, c, X);
        int64_t r, k;
        double *v = NULL;
        lj_status st = J ? lj_expr_eval(ctx, c, &r, &k, &v) : LJ_ERR_NOMEM;
        lj_free(v);
        if (J && st == LJ_OK) {
            ok_at = n;
            lj_op_free(&J);
            break;
        }
        ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: %s", n, lj_context_message(ctx));
        ck_assert_msg(strlen(lj_context_message(ctx)) > 0, "n=%d: no message", n);
        lj_context_clear(ctx);
        lj_op_free(&J);
    }
    ck_assert_int_gt(ok_at, 5);
    lj_context_fail_alloc(ctx, 0, 0);
    lj_expr_free(&c);
    lj_expr_free(&X);
    lj_context_free(&ctx);
}
END_TEST

/* ---- sparse leaves ------------------------------------------------------------------- */

/* The dense matrix of an operator, column by column. */
static tmat op_dense(lj_context *ctx, const lj_op *J)
{
    tmat D = tm_new(lj_op_rows(J), lj_op_cols(J));
    double *e = calloc((size_t)(D.c ? D.c : 1), sizeof *e);
    for (int64_t j = 0; j < D.c; j++) {
        e[j] = 1.0;
        CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, e, 0.0, D.a + j * D.r));
        e[j] = 0.0;
    }
    free(e);
    return D;
}

/* positions in vec of the stored entries of a CSC matrix */
static int64_t *positions(const cholmod_sparse *S, int64_t *n)
{
    const int64_t *p = S->p, *i = S->i;
    *n = p[S->ncol];
    int64_t *pos = malloc((size_t)(*n ? *n : 1) * sizeof *pos);
    for (size_t j = 0; j < S->ncol; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++) pos[q] = i[q] + (int64_t)j * (int64_t)S->nrow;
    return pos;
}

/* Each operation with sparse operands against the same expression on the
 * dense copies: the value; J in the sparse coordinates (rows: the result's
 * stored entries, columns: a sparse variable's) equals P_e·J_dense·P_S^T,
 * with J_dense zero outside the result's pattern; J three ways; central
 * differences. */
START_TEST(test_sparse_against_dense)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 4242 + (uint64_t)_i;
    lj_symtab *ts = lj_symtab_new(ctx), *td = lj_symtab_new(ctx);
    const struct { const char *name; int64_t r, c; double dens; } sp[] = {
        { "S", 4, 3, 0.5 }, { "T", 4, 3, 0.5 }, { "Q", 3, 3, 0.6 }, { "E", 0, 3, 0.5 }, { "Z", 4, 3, 0.0 },
    };
    cholmod_sparse *keep[5];
    for (int k = 0; k < 5; k++) {
        tmat ref;
        keep[k] = tm_rand_sparse(ctx, sp[k].r, sp[k].c, sp[k].dens, &seed, &ref);
        lj_expr *a = lj_expr_var_sparse(ctx, sp[k].name, keep[k]);
        lj_expr *b = lj_expr_var(ctx, sp[k].name, ref.r, ref.c, ref.a);
        CK_NN(ctx, a);
        ck_assert(lj_expr_is_sparse(a) && !lj_expr_is_sparse(b));
        CK_OK(ctx, lj_symtab_add(ctx, ts, a));
        CK_OK(ctx, lj_symtab_add(ctx, td, b));
        lj_expr_free(&a);
        lj_expr_free(&b);
        tm_free(&ref);
    }
    const struct { const char *name; int64_t r, c; } dn[] = { { "X", 3, 2 }, { "Y", 4, 3 }, { "s", 1, 1 },
                                                              { "U", 4, 2 }, { "V", 3, 2 } };
    for (int k = 0; k < 5; k++) {
        tmat v = tm_rand(dn[k].r, dn[k].c, &seed);
        for (int64_t q = 0; q < v.r * v.c; q++) v.a[q] += v.a[q] >= 0 ? 0.5 : -0.5; /* away from 0 */
        lj_expr *a = lj_expr_var(ctx, dn[k].name, v.r, v.c, v.a), *b = lj_expr_var(ctx, dn[k].name, v.r, v.c, v.a);
        CK_OK(ctx, lj_symtab_add(ctx, ts, a));
        CK_OK(ctx, lj_symtab_add(ctx, td, b));
        lj_expr_free(&a);
        lj_expr_free(&b);
        tm_free(&v);
    }
    static const struct { const char *text; bool sparse; } cases[] = {
        { "S'", true }, { "-S", true }, { "2*S", true }, { "S/s", true }, { "S.^2", true }, { "sin(S)", true },
        { "abs(S) .* S", true }, { "vec(S)", true }, { "S .* Y", true }, { "Y .* S", true }, { "S .* T", true },
        { "S ./ Y", true }, { "s*S", true }, { "S*s", true }, { "S + T", true }, { "S - T", true },
        { "S*X", false }, { "Y'*S", false }, { "Q*Q", true }, { "S*Q", true }, { "tr(Q)", false },
        { "diag(Q)", false }, { "sum(S)", false }, { "norm2(S)", false }, { "norm1(S)", false },
        { "exp(S)", false }, { "S + Y", false }, { "inv(Q + 3*eye)", false }, { "tr(X'*Q*X)", false },
        { "sum(S .* (Y*2)) + norm2(S - T)", false }, { "(Y*(S'*Y)) .* S", true }, { "E'*E", true },
        { "E .* E", true }, { "sum(Z .* Y)", false }, { "Z' + Z'", true }, { "kron(Q, X)", false },
        { "S' * (S .* T)", true }, { "diag(vec(Q))", false }, { "tanh(S) ./ s", true }, { "abs(S).^1.5 .* S", true },
        /* products sampled on a pattern */
        { "S .* (U*V')", true }, { "(U*V') .* S", true }, { "S .* (U*V' - T)", true }, { "S .* (2*(U*V'))", true },
        { "S .* (T - (U*V')/s)", true }, { "S .* (U*V' - Y)", true }, { "sum(S .* (U*V'))", false },
        { "Z .* (U*V')", true }, { "Q .* (X*X')", true }, { "S .* (U*V' + U*V')", true },
        { "norm2(S .* (U*V') - T)", false }, { "S .* (U*V') .* (U*V')", true },
    };
    const char *vars[] = { "S", "T", "Q", "E", "Z", "X", "Y", "s", "U", "V" };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t pos;
        const char *text = cases[c].text;
        lj_expr *fs = lj_parse(ctx, text, ts, &pos), *fd = lj_parse(ctx, text, td, &pos);
        ck_assert_msg(fs && fd, "%s: %s", text, lj_context_message(ctx));
        ck_assert_msg(lj_expr_is_sparse(fs) == cases[c].sparse, "%s: sparse %d", text, lj_expr_is_sparse(fs));
        /* the value */
        tmat vs, vd;
        CK_OK(ctx, lj_expr_eval(ctx, fs, &vs.r, &vs.c, &vs.a));
        CK_OK(ctx, lj_expr_eval(ctx, fd, &vd.r, &vd.c, &vd.a));
        ck_assert_msg(vs.r == vd.r && vs.c == vd.c && tm_maxdiff(vs, vd) < 1e-12, "%s: values differ by %g", text,
                      tm_maxdiff(vs, vd));
        int64_t ne = vs.r * vs.c, *epos = NULL;
        cholmod_sparse *V = NULL;
        if (cases[c].sparse) {
            CK_NN(ctx, V = lj_expr_eval_sparse(ctx, fs));
            epos = positions(V, &ne);
            ck_assert_int_eq(ne, lj_expr_nvalues(fs));
        } else {
            ck_assert_ptr_null(lj_expr_eval_sparse(ctx, fs));
            lj_context_clear(ctx);
        }
        for (size_t w = 0; w < sizeof vars / sizeof vars[0]; w++) {
            if (!strstr(text, vars[w])) continue;
            lj_expr *xs = lj_symtab_get(ts, vars[w]), *xd = lj_symtab_get(td, vars[w]);
            lj_op *Js = lj_expr_jacobian(ctx, fs, xs), *Jd = lj_expr_jacobian(ctx, fd, xd);
            ck_assert_msg(Js && Jd, "%s w.r.t. %s: %s", text, vars[w], lj_context_message(ctx));
            int64_t nv = lj_expr_nvalues(xs), *vpos = NULL;
            int k = (int)(strchr("STQEZ", vars[w][0]) && vars[w][0] ? strchr("STQEZ", vars[w][0]) - "STQEZ" : -1);
            if (vars[w][0] == 's' || vars[w][0] == 'X' || vars[w][0] == 'Y') k = -1;
            if (k >= 0) vpos = positions(keep[k], &nv);
            ck_assert_msg(lj_op_rows(Js) == ne && lj_op_cols(Js) == nv, "%s w.r.t. %s: J is %lldx%lld, want %lldx%lld",
                          text, vars[w], (long long)lj_op_rows(Js), (long long)lj_op_cols(Js), (long long)ne,
                          (long long)nv);
            tmat D = op_dense(ctx, Jd), R = tm_new(ne, nv);
            for (int64_t i = 0; i < ne; i++)
                for (int64_t j = 0; j < nv; j++) R.a[i + j * ne] = D.a[(epos ? epos[i] : i) + (vpos ? vpos[j] : j) * D.r];
            if (epos) { /* nothing outside the result's pattern */
                char *in = calloc((size_t)(D.r ? D.r : 1), 1);
                for (int64_t i = 0; i < ne; i++) in[epos[i]] = 1;
                for (int64_t i = 0; i < D.r; i++)
                    for (int64_t j = 0; j < nv && !in[i]; j++)
                        ck_assert_msg(D.a[i + (vpos ? vpos[j] : j) * D.r] == 0.0, "%s: J off the pattern", text);
                free(in);
            }
            char what[160];
            snprintf(what, sizeof what, "%s w.r.t. %s", text, vars[w]);
            check_op_against(ctx, Js, R, 1e-10, what);
            double maxrel, fro;
            CK_OK(ctx, lj_expr_fd_check(ctx, fs, xs, Js, 0, &maxrel, &fro));
            ck_assert_msg(maxrel < 1e-6, "%s: finite differences %g", what, maxrel);
            char *pr = lj_op_print(ctx, Js, LJ_PRINT_UNICODE);
            CK_NN(ctx, pr);
            lj_free(pr);
            tm_free(&D);
            tm_free(&R);
            free(vpos);
            lj_op_free(&Js);
            lj_op_free(&Jd);
        }
        free(epos);
        lj_sparse_free(ctx, &V);
        tm_free(&vs);
        tm_free(&vd);
        lj_expr_free(&fs);
        lj_expr_free(&fd);
    }
    for (int k = 0; k < 5; k++) lj_sparse_free(ctx, &keep[k]);
    lj_symtab_free(&ts);
    lj_symtab_free(&td);
    lj_context_free(&ctx);
}
END_TEST

/* S .* (U*V') at 200000×200000 (the product would need 320 GB): the value,
 * J U-applies and their transposes come from the stored entries alone. */
START_TEST(test_sparse_sampled_scale)
{
    lj_context *ctx = lj_context_new();
    const int64_t m = 200000, n = 200000, r = 2, nz = 3000;
    cholmod_common cc;
    cholmod_l_start(&cc);
    cholmod_triplet *T = cholmod_l_allocate_triplet((size_t)m, (size_t)n, (size_t)nz, 0, CHOLMOD_REAL, &cc);
    int64_t *ti = T->i, *tj = T->j;
    double *tx = T->x;
    uint64_t seed = 5;
    for (int64_t k = 0; k < nz; k++) {
        ti[k] = (int64_t)(tm_uniform(&seed) * (double)m);
        tj[k] = (int64_t)(tm_uniform(&seed) * (double)n);
        tx[k] = 1.0 + tm_uniform(&seed);
    }
    T->nnz = (size_t)nz;
    cholmod_sparse *S = cholmod_l_triplet_to_sparse(T, (size_t)nz, &cc);
    cholmod_l_free_triplet(&T, &cc);
    ck_assert_ptr_nonnull(S);
    tmat u = tm_rand(m, r, &seed), v = tm_rand(n, r, &seed);
    lj_expr *Se = lj_expr_const_sparse(ctx, "S", S), *U = lj_expr_var(ctx, "U", m, r, u.a),
            *V = lj_expr_var(ctx, "V", n, r, v.a);
    lj_expr *Vt = lj_expr_transpose(ctx, V), *UV = lj_expr_mul(ctx, U, Vt), *F = lj_expr_hadamard(ctx, Se, UV);
    CK_NN(ctx, F);
    ck_assert(lj_expr_is_sparse(F));
    cholmod_sparse *Fv = lj_expr_eval_sparse(ctx, F);
    CK_NN(ctx, Fv);
    int64_t snz = ((int64_t *)S->p)[n], *sp = S->p, *si = S->i;
    const double *sx = S->x, *fx = Fv->x;
    ck_assert_int_eq(((int64_t *)Fv->p)[n], snz);
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = sp[j]; q < sp[j + 1]; q++) {
            double want = 0;
            for (int64_t l = 0; l < r; l++) want += u.a[si[q] + l * m] * v.a[j + l * n];
            want *= sx[q];
            ck_assert_msg(fabs(fx[q] - want) <= 1e-14 * (1 + fabs(want)), "entry %lld", (long long)q);
        }
    /* the dense value is refused, not attempted */
    double *dense = NULL;
    ck_assert_int_eq(lj_expr_eval(ctx, F, NULL, NULL, &dense), LJ_ERR_NOMEM);
    lj_context_clear(ctx);
    lj_op *J = lj_expr_jacobian(ctx, F, U);
    CK_NN(ctx, J);
    int exact;
    ck_assert_int_eq(lj_op_nnz(ctx, J, &exact), r * snz);
    ck_assert(exact);
    tmat x = tm_rand(m * r, 1, &seed), y = tm_new(snz, 1), w = tm_rand(snz, 1, &seed), z = tm_new(m * r, 1);
    CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, x.a, 0.0, y.a));
    CK_OK(ctx, lj_op_apply(ctx, J, 1, 1.0, w.a, 0.0, z.a));
    tmat zref = tm_new(m * r, 1);
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = sp[j]; q < sp[j + 1]; q++) {
            double want = 0;
            for (int64_t l = 0; l < r; l++) {
                want += x.a[si[q] + l * m] * v.a[j + l * n];
                zref.a[si[q] + l * m] += sx[q] * w.a[q] * v.a[j + l * n];
            }
            want *= sx[q];
            ck_assert_msg(fabs(y.a[q] - want) <= 1e-13 * (1 + fabs(want)), "J x entry %lld", (long long)q);
        }
    ck_assert_msg(tm_maxdiff(z, zref) <= 1e-13, "J^T w differs by %g", tm_maxdiff(z, zref));
    tmat bufs[] = { u, v, x, y, w, z, zref };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) tm_free(&bufs[i]);
    lj_op_free(&J);
    lj_expr *es[] = { Se, U, V, Vt, UV, F };
    for (size_t i = 0; i < sizeof es / sizeof es[0]; i++) lj_expr_free(&es[i]);
    lj_sparse_free(ctx, &Fv);
    cholmod_l_free_sparse(&S, &cc);
    cholmod_l_finish(&cc);
    lj_context_free(&ctx);
}
END_TEST

/* Structure: nnz stays exact and the forms print as the Cookbook writes
 * them with the pattern's selection. */
START_TEST(test_sparse_structure)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 99;
    tmat ref;
    cholmod_sparse *S = tm_rand_sparse(ctx, 30, 30, 0.1, &seed, &ref);
    int64_t nz = ((int64_t *)S->p)[30];
    lj_expr *Sc = lj_expr_const_sparse(ctx, "S", S), *Sv = lj_expr_var_sparse(ctx, "W", S);
    tmat xv = tm_rand(30, 4, &seed);
    lj_expr *X = lj_expr_var(ctx, "X", 30, 4, xv.a), *Y = lj_expr_var(ctx, "Y", 30, 30, ref.a);
    lj_expr *Xt = lj_expr_transpose(ctx, X);
    lj_expr *U = lj_expr_var(ctx, "U", 30, 4, xv.a), *V = lj_expr_var(ctx, "V", 30, 4, xv.a);
    lj_expr *Vt = lj_expr_transpose(ctx, V), *UVt = lj_expr_mul(ctx, U, Vt);
    tmat gv = tm_rand(4, 30, &seed);
    lj_expr *SY = lj_expr_hadamard(ctx, Sc, Y), *Xtt = lj_expr_transpose(ctx, Xt), *XtY = lj_expr_mul(ctx, Xt, Y);
    lj_expr *XtYt = lj_expr_transpose(ctx, XtY), *G = lj_expr_var(ctx, "G", 4, 30, gv.a), *Gt = lj_expr_transpose(ctx, G);
    const struct { lj_expr *e; lj_expr *w; int64_t nnz; const char *print; } cases[] = {
        { lj_expr_mul(ctx, Sc, X), X, 4 * nz, "I_4 ⊗ S" },
        { lj_expr_mul(ctx, Xt, Sc), X, 4 * nz, NULL },
        { lj_expr_hadamard(ctx, Sc, Y), Y, nz, "P_S·Diag(vec S)" },
        { lj_expr_hadamard(ctx, Y, Sv), Sv, nz, "Diag(P_W vec Y)" },
        { lj_expr_mul(ctx, Sv, X), Sv, 4 * nz, "(X^T ⊗ I_30)·P_W^T" },
        { lj_expr_trace(ctx, Sv), Sv, -1, "(P_W vec I_30)^T" },
        { lj_expr_transpose(ctx, Sv), Sv, nz, "P_{W^T}·K_{30,30}·P_W^T" },
        /* a product sampled on S: one sampled Kronecker product, 4 entries a row */
        { lj_expr_hadamard(ctx, Sc, UVt), U, 4 * nz, "Diag(P_S vec S)·P_S·(V ⊗ I_30)" },
        { lj_expr_hadamard(ctx, UVt, Sc), V, 4 * nz, "Diag(P_S vec S)·P_S·(I_30 ⊗ U)·K_{30,4}" },
        { lj_expr_hadamard(ctx, Sv, UVt), Sv, nz, "Diag(P_W vec(U·V^T))" },
        /* a sparse value's selection named by the leaf whose pattern it has,
         * Kronecker factors without parentheses that say nothing */
        { lj_expr_mul(ctx, Xt, SY), Y, -1, "(I_30 ⊗ X^T)·P_S^T·P_S·Diag(vec S)" },
        { lj_expr_mul(ctx, SY, Xtt), Y, -1, "(X^T ⊗ I_30)·P_S^T·P_S·Diag(vec S)" },
        { lj_expr_mul(ctx, SY, Gt), Y, -1, "(G ⊗ I_30)·P_S^T·P_S·Diag(vec S)" }, /* (G^T)^T = G */
        { lj_expr_mul(ctx, SY, XtYt), Y, -1, "((X^T·Y) ⊗ I_30)·P_S^T·P_S·Diag(vec S) + (X^T ⊗ (S ∘ Y))·K_{30,30}" },
        /* the derivative of a norm is a symbol, never the number 1/‖·‖ */
        { lj_expr_norm2(ctx, SY), Y, -1, "(1/norm2(S ∘ Y))·(vec(S ∘ Y))^T·P_S·Diag(vec S)" },
        { lj_expr_norm2(ctx, XtY), Y, -1, "(1/norm2(X^T·Y))·(vec(X·X^T·Y))^T" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        CK_NN(ctx, cases[c].e);
        lj_op *J = lj_expr_jacobian(ctx, cases[c].e, cases[c].w);
        CK_NN(ctx, J);
        char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
        if (cases[c].print) ck_assert_msg(strcmp(p, cases[c].print) == 0, "case %zu prints %s", c, p);
        if (cases[c].nnz >= 0) {
            int exact;
            ck_assert_int_eq(lj_op_nnz(ctx, J, &exact), cases[c].nnz);
            ck_assert(exact);
            cholmod_sparse *M = lj_op_to_sparse(ctx, J);
            CK_NN(ctx, M);
            ck_assert_int_eq(((int64_t *)M->p)[M->ncol], cases[c].nnz);
            lj_sparse_free(ctx, &M);
        }
        lj_free(p);
        lj_op_free(&J);
    }
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) lj_expr_free((lj_expr **)&cases[c].e);
    lj_expr_free(&Sc);
    lj_expr_free(&Sv);
    lj_expr_free(&Xt);
    lj_expr_free(&X);
    lj_expr_free(&Y);
    lj_expr_free(&U);
    lj_expr_free(&V);
    lj_expr_free(&Vt);
    lj_expr_free(&UVt);
    lj_expr *tmp[] = { SY, Xtt, XtY, XtYt, G, Gt };
    tm_free(&gv);
    for (size_t k = 0; k < sizeof tmp / sizeof tmp[0]; k++) lj_expr_free(&tmp[k]);
    tm_free(&xv);
    tm_free(&ref);
    lj_sparse_free(ctx, &S);
    lj_context_free(&ctx);
}
END_TEST

/* Bad sparse input: duplicates, borrowed unsorted matrices, NULL, and the
 * errors of operations as on dense data. */
START_TEST(test_sparse_errors)
{
    lj_context *ctx = lj_context_new();
    cholmod_sparse *S = cholmod_l_allocate_sparse(3, 2, 4, 0, 1, 0, CHOLMOD_REAL, lj_context_cholmod(ctx));
    int64_t *p = S->p, *i = S->i;
    double *x = S->x;
    p[0] = 0; p[1] = 2; p[2] = 3;
    i[0] = 1; i[1] = 1; i[2] = 0;
    x[0] = 1; x[1] = 2; x[2] = 3;
    ck_assert_ptr_null(lj_expr_const_sparse(ctx, "S", S));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "const_sparse: a duplicate entry at (2,1) of (3×2); sum duplicates first");
    ck_assert_ptr_null(lj_expr_var_sparse_borrow(ctx, "S", S));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "var_sparse_borrow: a borrowed matrix must be packed, sorted");
    ck_assert_ptr_null(lj_expr_const_sparse(ctx, "S", NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "const_sparse: NULL matrix");
    ck_assert_ptr_null(lj_expr_var_sparse(ctx, NULL, S));
    ASSERT_ERR(ctx, LJ_ERR_NAME, "var_sparse: a variable needs a name");
    ck_assert_ptr_null(lj_expr_var_sparse(ctx, "1x", S));
    ASSERT_ERR(ctx, LJ_ERR_NAME, "'1x' is not a valid name");
    /* unsorted columns are sorted when copied; the borrowed form reads in place */
    i[0] = 2; i[1] = 0; /* column 0 holds rows 2, 0: out of order */
    S->sorted = 0;
    lj_expr *A = lj_expr_const_sparse(ctx, "A", S);
    CK_NN(ctx, A);
    double *v;
    int64_t r, c;
    CK_OK(ctx, lj_expr_eval(ctx, A, &r, &c, &v));
    ck_assert(v[0] == 2 && v[2] == 1 && v[3] == 3 && v[1] == 0);
    lj_free(v);
    i[0] = 0; i[1] = 2; x[0] = 2; x[1] = 1;
    S->sorted = 1;
    lj_expr *B = lj_expr_var_sparse_borrow(ctx, "B", S);
    CK_NN(ctx, B);
    double nv[3] = { 7, 8, 9 };
    CK_OK(ctx, lj_expr_set_value(ctx, B, nv));
    ck_assert(x[0] == 7 && x[2] == 9); /* written through to S */
    ck_assert_int_eq(lj_expr_nvalues(B), 3);
    /* shapes as on dense data */
    lj_expr *X = lj_expr_var(ctx, "X", 3, 3, NULL);
    ck_assert_ptr_null(lj_expr_mul(ctx, A, X));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "mul: inner dimensions differ: (3×2)·(3×3)");
    ck_assert_ptr_null(lj_expr_add(ctx, A, X));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "add");
    ck_assert_ptr_null(lj_expr_eval_sparse(ctx, X));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "eval_sparse: the value of (3×3) is dense");
    ck_assert_ptr_null(lj_expr_eval_sparse(ctx, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "eval_sparse: expression is NULL");
    ck_assert_int_eq(lj_expr_nvalues(NULL), -1);
    ck_assert_int_eq(lj_expr_is_sparse(NULL), 0);
    /* a division by a stored zero names the entry */
    lj_expr *Z = lj_expr_const(ctx, "Z", 3, 2, NULL);
    lj_expr *q = lj_expr_hdiv(ctx, A, Z);
    CK_NN(ctx, q);
    ck_assert(lj_expr_is_sparse(q));
    ck_assert_int_ne(lj_expr_eval(ctx, q, &r, &c, &v), LJ_OK);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "hdiv: division by zero at entry (1,1) of (3×2)");
    /* an operation that needs a huge sparse matrix dense says so */
    cholmod_sparse *H = cholmod_l_allocate_sparse(1u << 20, 1u << 20, 1, 1, 1, 0, CHOLMOD_REAL,
                                                  lj_context_cholmod(ctx));
    memset(H->p, 0, ((1u << 20) + 1) * sizeof(int64_t));
    lj_expr *Hc = lj_expr_const_sparse(ctx, "H", H), *eH = lj_expr_func(ctx, LJ_FN_EXP, Hc);
    CK_NN(ctx, eH);
    ck_assert_int_ne(lj_expr_eval(ctx, eH, &r, &c, &v), LJ_OK);
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_NOMEM);
    lj_context_clear(ctx);
    lj_expr_free(&eH);
    lj_expr_free(&Hc);
    lj_sparse_free(ctx, &H);
    lj_expr_free(&q);
    lj_expr_free(&Z);
    lj_expr_free(&X);
    lj_expr_free(&A);
    lj_expr_free(&B);
    lj_sparse_free(ctx, &S);
    lj_context_free(&ctx);
}
END_TEST
END_TEST

Suite *make_expr_suite(void)
{
    Suite *s = suite_create("expr");
    TCase *rules = tcase_create("rules");
    tcase_set_timeout(rules, 120);
    tcase_add_loop_test(rules, test_rule_products, 0, NSH);
    tcase_add_loop_test(rules, test_rule_structural, 0, NSH);
    tcase_add_loop_test(rules, test_rule_elementwise, 0, NSH);
    tcase_add_loop_test(rules, test_rule_inverse_det, 0, 5);
    tcase_add_test(rules, test_selections_sparse);
    tcase_add_test(rules, test_composites);
    tcase_add_test(rules, test_shared_subexpressions);
    tcase_add_test(rules, test_jacobian_plan);
    tcase_add_test(rules, test_jacobian_plan_in_place);
    tcase_add_test(rules, test_jacobian_plan_rebuilds);
    tcase_add_test(rules, test_jacobian_reads_leaves_in_place);
    tcase_add_test(rules, test_jacobian_keeps_interior_values);
    tcase_add_test(rules, test_commuted_diag);
    tcase_add_test(rules, test_commutation_through_sums);
    tcase_add_test(rules, test_large_shared_dag);
    tcase_add_test(rules, test_topo_inline_edge);
    tcase_add_test(rules, test_scalar_function_symbols);
    tcase_add_test(rules, test_number_factors_fold);
    tcase_add_test(rules, test_ones_row_prints);
    tcase_add_test(rules, test_products_of_three);
    tcase_add_test(rules, test_transposed_value_labels);
    tcase_add_test(rules, test_transposed_name_labels);
    tcase_add_test(rules, test_ones_label_follows_values);
    tcase_add_test(rules, test_negated_hadamard_factor);
    tcase_add_test(rules, test_sigmoid_labels);
    tcase_add_test(rules, test_diag_label_cancelled);
    tcase_add_test(rules, test_trace_rows);
    tcase_add_test(rules, test_commuted_labels);
    tcase_add_test(rules, test_jacobian_without_value);
    tcase_add_loop_test(rules, test_functions, 0, LJ_FN_EXPM1 + 1);
    tcase_add_test(rules, test_kink_conventions);
    tcase_add_test(rules, test_matrixcalculus_examples);
    tcase_add_test(rules, test_power_and_eye);
    tcase_add_test(rules, test_gradient_forms);
    tcase_add_test(rules, test_value_label_brackets);
    tcase_add_test(rules, test_kron_into_sums);
    tcase_add_test(rules, test_shared_inner_jacobians);
    tcase_add_test(rules, test_negated_power_labels);
    tcase_add_test(rules, test_latex_labels);
    tcase_add_test(rules, test_random_printed_j_evaluates);
    tcase_add_test(rules, test_numbers_read_back);
    tcase_add_test(rules, test_sum_and_hadamard_labels);
    tcase_add_test(rules, test_plan_factors_become_equal);
    suite_add_tcase(s, rules);
    TCase *sparse = tcase_create("sparse");
    tcase_add_loop_test(sparse, test_sparse_against_dense, 0, 3);
    tcase_add_test(sparse, test_sparse_structure);
    tcase_add_test(sparse, test_sparse_sampled_scale);
    tcase_add_test(sparse, test_sparse_errors);
    suite_add_tcase(s, sparse);
    TCase *seeds = tcase_create("seeds");
    tcase_add_test(seeds, test_seed000);
    tcase_add_test(seeds, test_seed001);
    tcase_add_test(seeds, test_seed002);
    tcase_add_test(seeds, test_seed003);
    suite_add_tcase(s, seeds);
    TCase *errors = tcase_create("errors");
    tcase_set_timeout(errors, 120);
    tcase_add_test(errors, test_errors);
    tcase_add_test(errors, test_null_operands);
    tcase_add_test(errors, test_alloc_failure_jacobian);
    tcase_add_test(errors, test_alloc_failure_long_expression);
    tcase_add_test(errors, test_alloc_failure_workflows);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    return run_suite(make_expr_suite());
}
