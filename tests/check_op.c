/* The operator layer: every kind checked three ways against dense references
 * built here, the rewriting rules, printing, error paths, allocation
 * failure and concurrent applies. */
#define _GNU_SOURCE /* sched_getaffinity: the cores OpenMP counts */
#include "testutil.h"
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>

static const int64_t shapes[][2] = { { 1, 1 }, { 4, 1 }, { 1, 5 }, { 3, 4 }, { 5, 2 }, { 0, 3 }, { 3, 0 }, { 6, 6 } };
#define NSHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static lj_op *dense_of(lj_context *ctx, tmat m, const char *label)
{
    return lj_op_dense(ctx, m.r, m.c, m.a, m.r > 0 ? m.r : 1, label);
}

/* A random sparse matrix (about 40% dense) as a CHOLMOD matrix and as tmat. */
static cholmod_sparse *rand_sparse(lj_context *ctx, int64_t r, int64_t c, uint64_t *seed, tmat *ref)
{
    return tm_rand_sparse(ctx, r, c, 0.4, seed, ref);
}

static char *pr(lj_context *ctx, const lj_op *a)
{
    char *s = lj_op_print(ctx, a, LJ_PRINT_UNICODE);
    CK_NN(ctx, s);
    return s;
}

#define ASSERT_PRINTS(ctx, op, want)                                                  \
    do {                                                                              \
        char *s_ = pr(ctx, op);                                                       \
        ck_assert_msg(strcmp(s_, want) == 0, "printed '%s', want '%s'", s_, want);    \
        lj_free(s_);                                                                  \
    } while (0)

/* ---- leaves ------------------------------------------------------------------- */

START_TEST(test_identity_zero)
{
    lj_context *ctx = lj_context_new();
    for (int64_t n = 0; n < 5; n++) {
        lj_op *I = lj_op_identity(ctx, n);
        tmat D = tm_eye(n);
        check_op_against(ctx, I, D, 1e-15, "identity");
        tm_free(&D);
        lj_op_free(&I);
    }
    for (int s = 0; s < NSHAPES; s++) {
        lj_op *Z = lj_op_zero(ctx, shapes[s][0], shapes[s][1]);
        tmat D = tm_new(shapes[s][0], shapes[s][1]);
        check_op_against(ctx, Z, D, 0, "zero");
        tm_free(&D);
        lj_op_free(&Z);
    }
    /* identities are kept on the context for reuse (the last eight sizes):
     * one outlives its context, and more sizes than are kept stay right */
    lj_op *keep = lj_op_identity(ctx, 7), *again = lj_op_identity(ctx, 7);
    ck_assert_ptr_eq(keep, again);
    lj_op_free(&again);
    for (int64_t n = 1; n <= 20; n++) {
        lj_op *I = lj_op_identity(ctx, n);
        ck_assert_int_eq(lj_op_rows(I), n);
        ck_assert_int_eq(lj_op_kind_of(I), LJ_OP_IDENTITY);
        lj_op_free(&I);
    }
    lj_context_free(&ctx);
    ctx = lj_context_new();
    tmat D = tm_eye(7);
    check_op_against(ctx, keep, D, 1e-15, "identity made on a context since freed");
    tm_free(&D);
    lj_op_free(&keep);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_diag_dense_sparse)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 11;
    for (int s = 0; s < NSHAPES; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1];
        tmat A = tm_rand(m, n, &seed);
        lj_op *d = dense_of(ctx, A, "A");
        check_op_against(ctx, d, A, 1e-14, "dense");
        /* borrowed, with a padded leading dimension */
        tmat P = tm_rand(m + 3, n, &seed);
        lj_op *b = lj_op_dense_borrow(ctx, m, n, P.a, m + 3, "P");
        tmat Pm = tm_new(m, n);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) Pm.a[i + j * m] = P.a[i + j * (m + 3)];
        check_op_against(ctx, b, Pm, 1e-14, "dense_borrow");
        /* copied from a padded array (a 1×n row is gathered with a stride) */
        lj_op *c = lj_op_dense(ctx, m, n, P.a, m + 3, "P");
        check_op_against(ctx, c, Pm, 1e-14, "dense from a padded array");
        lj_op_free(&c);
        tmat R;
        cholmod_sparse *S = rand_sparse(ctx, m, n, &seed, &R);
        lj_op *sp = lj_op_sparse(ctx, S, "S");
        CK_NN(ctx, sp);
        check_op_against(ctx, sp, R, 1e-14, "sparse");
        lj_op *spt = lj_op_transpose(ctx, sp);
        tmat Rt = tm_transpose(R);
        check_op_against(ctx, spt, Rt, 1e-14, "sparse^T");
        lj_op *dt = lj_op_transpose(ctx, d);
        tmat At = tm_transpose(A);
        check_op_against(ctx, dt, At, 1e-14, "dense^T");
        ASSERT_PRINTS(ctx, dt, "A^T");
        cholmod_l_free_sparse(&S, lj_context_cholmod(ctx));
        lj_op_free(&d);
        lj_op_free(&b);
        lj_op_free(&sp);
        lj_op_free(&spt);
        lj_op_free(&dt);
        tm_free(&A);
        tm_free(&P);
        tm_free(&Pm);
        tm_free(&R);
        tm_free(&Rt);
        tm_free(&At);
    }
    for (int64_t n = 0; n < 6; n++) {
        tmat v = tm_rand(n, 1, &seed);
        lj_op *D = lj_op_diag(ctx, n, v.a, "vec B");
        tmat ref = tm_new(n, n);
        for (int64_t i = 0; i < n; i++) ref.a[i + i * n] = v.a[i];
        check_op_against(ctx, D, ref, 1e-15, "diag");
        if (n > 0) ASSERT_PRINTS(ctx, D, "Diag(vec B)");
        lj_op_free(&D);
        tm_free(&v);
        tm_free(&ref);
    }
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_sparse_unsorted_symmetric)
{
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    /* unsorted columns with a duplicate, stored upper triangle (stype > 0) */
    cholmod_sparse *s = cholmod_l_allocate_sparse(3, 3, 6, 0, 1, 1, CHOLMOD_REAL, cc);
    int64_t *p = s->p, *ii = s->i;
    double *x = s->x;
    int64_t P[] = { 0, 1, 3, 6 }, I[] = { 0, 1, 0, 2, 0, 2 };
    double X[] = { 1, 2, 3, 4, 5, 1 };
    memcpy(p, P, sizeof P);
    memcpy(ii, I, sizeof I);
    memcpy(x, X, sizeof X);
    lj_op *a = lj_op_sparse(ctx, s, "S");
    CK_NN(ctx, a);
    tmat ref = tm_new(3, 3);
    ref.a[0] = 1;
    ref.a[4] = 2;
    ref.a[0 + 3 * 1] = 3;
    ref.a[1 + 3 * 0] = 3;
    ref.a[2 + 3 * 2] = 5;
    ref.a[0 + 3 * 2] = 5;
    ref.a[2 + 3 * 0] = 5;
    ref.a[2 + 3 * 2] = 5; /* entries (2,2): 4 then 1 → duplicate summed */
    ref.a[2 + 3 * 2] = 4 + 1;
    check_op_against(ctx, a, ref, 1e-15, "sparse symmetric unsorted");
    lj_op_free(&a);
    tm_free(&ref);
    /* a bad row index */
    ii[1] = 7;
    ck_assert_ptr_null(lj_op_sparse(ctx, s, NULL));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "out of range"));
    cholmod_l_free_sparse(&s, cc);
    ck_assert_ptr_null(lj_op_sparse(ctx, NULL, NULL));
    lj_context_free(&ctx);
}
END_TEST

/* The dense matrix of an operator (each factor of the products below is
 * checked on its own elsewhere) */
static tmat dense_matrix(lj_context *ctx, const lj_op *a)
{
    tmat m = tm_new(lj_op_rows(a), lj_op_cols(a));
    CK_OK(ctx, lj_op_to_dense(ctx, a, m.a, m.r > 0 ? m.r : 1));
    return m;
}

/* The dense product of n factors' matrices */
static tmat dense_product(lj_context *ctx, int n, const lj_op *const *f)
{
    tmat R = dense_matrix(ctx, f[0]);
    for (int k = 1; k < n; k++) {
        tmat F = dense_matrix(ctx, f[k]), T = tm_mul(R, F);
        tm_free(&R);
        tm_free(&F);
        R = T;
    }
    return R;
}

/* Monomial factors (Diag, permutation, commutation, Kronecker products
 * and multiples of them) on either side of one other factor, a sparse
 * leaf or a dense block: materialised by moving and scaling the other
 * factor's entries as they are written (compose.c, monomial_sides), each
 * product checked three ways against the product of its factors' dense
 * matrices; a Diag with a zero on its diagonal too. */
START_TEST(test_monomial_sides_materialised)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 61;
    tmat Sr, W = tm_rand(6, 6, &seed), d1 = tm_rand(6, 1, &seed), d2 = tm_rand(6, 1, &seed);
    cholmod_sparse *cs = rand_sparse(ctx, 6, 6, &seed, &Sr);
    int64_t p6[6] = { 3, 0, 5, 1, 4, 2 }, q6[6] = { 5, 4, 0, 2, 3, 1 }, p2[2] = { 1, 0 };
    double dz[6] = { 1.5, 0.0, -2.0, 0.5, 0.0, 3.0 }, d3[3] = { 2.0, -1.0, 0.25 };
    lj_op *S = lj_op_sparse(ctx, cs, "S"), *w = dense_of(ctx, W, "W");
    lj_op *D1 = lj_op_diag(ctx, 6, d1.a, "d"), *D2 = lj_op_diag(ctx, 6, d2.a, "e"), *Dz = lj_op_diag(ctx, 6, dz, "z");
    lj_op *P = lj_op_perm(ctx, 6, p6, "P"), *Q = lj_op_perm(ctx, 6, q6, "Q");
    lj_op *K32 = lj_op_commutation(ctx, 3, 2), *K23 = lj_op_commutation(ctx, 2, 3);
    lj_op *P2 = lj_op_perm(ctx, 2, p2, "P2"), *D3 = lj_op_diag(ctx, 3, d3, "f"), *PD = lj_op_kron(ctx, P2, D3);
    lj_op *sP = lj_op_scale(ctx, -2.0, P), *Pt = lj_op_transpose(ctx, Q);
    tmat Ar = tm_rand(3, 3, &seed), Br = tm_rand(2, 2, &seed);
    lj_op *a = dense_of(ctx, Ar, "A"), *b = dense_of(ctx, Br, "B"), *AB = lj_op_kron(ctx, a, b), *SW = lj_op_add(ctx, S, w);
    tmat S3r; /* a Kronecker factor with columns of different lengths */
    cholmod_sparse *cs3 = tm_rand_sparse(ctx, 3, 3, 0.5, &seed, &S3r);
    lj_op *s3 = lj_op_sparse(ctx, cs3, "S3"), *S3B = lj_op_kron(ctx, s3, b);
    CK_NN(ctx, S3B);
    CK_NN(ctx, PD);
    CK_NN(ctx, Pt);
    CK_NN(ctx, AB);
    CK_NN(ctx, SW);
    const struct { const char *what; int n; const lj_op *f[5]; } cases[] = {
        { "Diag·S", 2, { D1, S } },
        { "S·Diag", 2, { S, D1 } },
        { "P·S", 2, { P, S } },
        { "S·P", 2, { S, P } },
        { "Diag·S·Diag", 3, { D1, S, D2 } },
        { "K·Diag·S·P·Diag", 5, { K32, D1, S, P, D2 } },
        { "(P2 ⊗ Diag)·S·K", 3, { PD, S, K23 } },
        { "(−2·P)·S·Q^T", 3, { sP, S, Pt } },
        { "Diag·W", 2, { D1, w } },
        { "Diag·W·P", 3, { D1, w, P } },
        { "P·W·Diag", 3, { P, w, D2 } },
        { "Diag with zeros·S·Q", 3, { Dz, S, Q } },
        /* other factors materialised and rewritten in place, rows moved */
        { "P·(A ⊗ B)", 2, { P, AB } },
        { "K·(A ⊗ B)·Diag", 3, { K32, AB, D2 } },
        { "P·(S + W)·Q", 3, { P, SW, Q } },
        { "Diag·(S + W)·Diag", 3, { D1, SW, D2 } },
        { "Diag·P·(A ⊗ B)", 3, { D1, P, AB } },
        { "K·Diag·(S + W)", 3, { K32, D1, SW } },
        { "S·Diag with zeros", 2, { S, Dz } },
        /* a Kronecker product written with its columns moved and scaled */
        { "(A ⊗ B)·P", 2, { AB, P } },
        { "Diag·(A ⊗ B)·Q", 3, { D1, AB, Q } },
        { "P·(A ⊗ B)·K", 3, { P, AB, K23 } },
        { "(S3 ⊗ B)·(−2·P)", 2, { S3B, sP } },
        { "Diag·(S3 ⊗ B)·Q^T·Diag", 4, { D1, S3B, Pt, D2 } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lj_op *J = lj_op_compose(ctx, cases[c].n, cases[c].f);
        CK_NN(ctx, J);
        tmat R = dense_product(ctx, cases[c].n, cases[c].f);
        check_op_against(ctx, J, R, 1e-14, cases[c].what);
        /* the materialised matrix keeps the other factor's entries, no more */
        cholmod_sparse *M = lj_op_to_sparse(ctx, J);
        CK_NN(ctx, M);
        int64_t nz = ((int64_t *)M->p)[M->ncol], want = strchr(cases[c].what, 'W') || strchr(cases[c].what, 'B') ? 36 : (int64_t)((int64_t *)cs->p)[6];
        ck_assert_msg(nz <= want, "%s: %lld entries, the other factor has %lld", cases[c].what, (long long)nz,
                      (long long)want);
        lj_sparse_free(ctx, &M);
        tm_free(&R);
        lj_op_free(&J);
    }
    lj_op *all[] = { S, w, D1, D2, Dz, P, Q, K32, K23, P2, D3, PD, sP, Pt, a, b, AB, SW, s3, S3B };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    cholmod_l_free_sparse(&cs3, lj_context_cholmod(ctx));
    tmat ms[] = { Sr, W, d1, d2, Ar, Br, S3r };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

/* The same with columns longer than the in-place sort's insertion limit
 * (32 entries): moved rows are sorted again column by column, by merging
 * through room for one column; and every allocation of the path failing
 * in turn gives a clean NOMEM and leaks nothing. */
START_TEST(test_monomial_sides_long_columns)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 67;
    tmat Sr, d1 = tm_rand(120, 1, &seed), d2 = tm_rand(40, 1, &seed);
    cholmod_sparse *cs = tm_rand_sparse(ctx, 120, 40, 0.7, &seed, &Sr);
    int64_t p120[120], q40[40];
    for (int64_t i = 0; i < 120; i++) p120[i] = (i * 37 + 11) % 120;
    for (int64_t i = 0; i < 40; i++) q40[i] = (i * 13 + 5) % 40;
    lj_op *S = lj_op_sparse(ctx, cs, "S"), *D1 = lj_op_diag(ctx, 120, d1.a, "d"), *D2 = lj_op_diag(ctx, 40, d2.a, "e");
    lj_op *P = lj_op_perm(ctx, 120, p120, "P"), *Q = lj_op_perm(ctx, 40, q40, "Q");
    lj_op *K = lj_op_commutation(ctx, 10, 12);
    CK_NN(ctx, K);
    const struct { const char *what; int n; const lj_op *f[4]; } cases[] = {
        { "P·S", 2, { P, S } },
        { "K·S·Diag", 3, { K, S, D2 } },
        { "Diag·P·S·Q", 4, { D1, P, S, Q } },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        lj_op *J = lj_op_compose(ctx, cases[c].n, cases[c].f);
        CK_NN(ctx, J);
        tmat R = dense_product(ctx, cases[c].n, cases[c].f);
        check_op_against(ctx, J, R, 1e-14, cases[c].what);
        tm_free(&R);
        /* every allocation failing in turn */
        int ok_at = 0;
        for (int n = 1; n < 100 && !ok_at; n++) {
            lj_context_fail_alloc(ctx, n, 0);
            cholmod_sparse *M = lj_op_to_sparse(ctx, J);
            if (M)
                ok_at = n;
            else {
                ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "%s, n=%d: status %d (%s)", cases[c].what, n,
                              (int)lj_context_status(ctx), lj_context_message(ctx));
                ck_assert_msg(strstr(lj_context_message(ctx), "to_sparse") != NULL, "%s", lj_context_message(ctx));
                lj_context_clear(ctx);
            }
            lj_sparse_free(ctx, &M);
        }
        lj_context_fail_alloc(ctx, 0, 0);
        ck_assert_msg(ok_at > 3, "%s: succeeded at allocation %d", cases[c].what, ok_at);
        lj_op_free(&J);
    }
    lj_op *all[] = { S, D1, D2, P, Q, K };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    tmat ms[] = { Sr, d1, d2 };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_perm_commutation_rank1)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 5;
    int64_t perm[6] = { 3, 0, 5, 1, 4, 2 };
    lj_op *P = lj_op_perm(ctx, 6, perm, "P");
    tmat ref = tm_new(6, 6);
    for (int64_t i = 0; i < 6; i++) ref.a[i + perm[i] * 6] = 1;
    check_op_against(ctx, P, ref, 0, "perm");
    lj_op *Pt = lj_op_transpose(ctx, P);
    tmat reft = tm_transpose(ref);
    check_op_against(ctx, Pt, reft, 0, "perm^T");
    lj_op_free(&P);
    lj_op_free(&Pt);
    tm_free(&ref);
    tm_free(&reft);
    const int64_t kd[][2] = { { 2, 3 }, { 3, 2 }, { 4, 1 }, { 1, 4 }, { 5, 7 }, { 33, 35 } };
    for (size_t t = 0; t < sizeof kd / sizeof kd[0]; t++) {
        lj_op *K = lj_op_commutation(ctx, kd[t][0], kd[t][1]);
        tmat R = tm_commutation(kd[t][0], kd[t][1]);
        check_op_against(ctx, K, R, 0, "commutation");
        /* the definition: K vec(A) = vec(A^T) */
        tmat A = tm_rand(kd[t][0], kd[t][1], &seed), At = tm_transpose(A);
        tmat y = tm_new(kd[t][0] * kd[t][1], 1);
        CK_OK(ctx, lj_op_apply(ctx, K, 0, 1.0, A.a, 0.0, y.a));
        for (int64_t i = 0; i < y.r; i++) ck_assert(y.a[i] == At.a[i]);
        if (kd[t][0] > 1 && kd[t][1] > 1) {
            char want[64];
            snprintf(want, sizeof want, "K_{%lld,%lld}", (long long)kd[t][0], (long long)kd[t][1]);
            ASSERT_PRINTS(ctx, K, want);
        } else
            ck_assert_int_eq(lj_op_kind_of(K), LJ_OP_IDENTITY);
        lj_op_free(&K);
        tm_free(&R);
        tm_free(&A);
        tm_free(&At);
        tm_free(&y);
    }
    for (int s = 0; s < NSHAPES; s++) {
        int64_t m = shapes[s][0], n = shapes[s][1];
        tmat u = tm_rand(m, 1, &seed), v = tm_rand(n, 1, &seed);
        lj_op *r = lj_op_rank1(ctx, m, u.a, "u", n, v.a, "v");
        tmat vt = tm_transpose(v), R = tm_mul(u, vt);
        check_op_against(ctx, r, R, 1e-15, "rank1");
        ASSERT_PRINTS(ctx, r, "u v^T");
        lj_op *rt = lj_op_transpose(ctx, r);
        ASSERT_PRINTS(ctx, rt, "v u^T");
        lj_op_free(&r);
        lj_op_free(&rt);
        tm_free(&u);
        tm_free(&v);
        tm_free(&vt);
        tm_free(&R);
    }
    lj_context_free(&ctx);
}
END_TEST

/* The transpose kernel behind K_{m,n}: every edge case of its 8×8 and
 * 4×4 tiles (sizes around multiples of 4 and 8), power-of-two leading
 * dimensions, alpha and beta, several vectors with padded leading
 * dimensions, outputs at every alignment, and outputs large enough for the
 * streaming stores (beyond 16 MiB), all against the definition
 * y = alpha·vec(A^T) + beta·y0, exactly. */
static void check_commutation_apply(lj_context *ctx, int64_t m, int64_t n, int64_t k, int64_t pad,
                                    int64_t shift, double alpha, double beta, uint64_t *seed)
{
    int64_t mn = m * n, ld = mn + pad;
    double *x = malloc(sizeof *x * (size_t)(ld * k + 8)), *y = malloc(sizeof *y * (size_t)(ld * k + 8));
    double *y0 = malloc(sizeof *y0 * (size_t)(ld * k));
    ck_assert(x && y && y0);
    double *yy = y + shift; /* every alignment of the output */
    double *xx = x + (shift + 3) % 8; /* and of the input, another one */
    for (int64_t t = 0; t < ld * k; t++) {
        xx[t] = urand(seed);
        yy[t] = y0[t] = urand(seed);
    }
    lj_op *K = lj_op_commutation(ctx, m, n);
    CK_NN(ctx, K);
    CK_OK(ctx, lj_op_apply_multi(ctx, K, 0, k, alpha, xx, ld, beta, yy, ld));
    /* one assertion for the whole result: Check records each it makes */
    int64_t bi = -1, bj = -1, bv = -1, pad_bad = -1;
    for (int64_t v = 0; v < k && bv < 0; v++)
        for (int64_t j = 0; j < n && bv < 0; j++)
            for (int64_t i = 0; i < m; i++) {
                double want = alpha * xx[i + j * m + v * ld];
                if (beta != 0.0) want += beta * y0[j + i * n + v * ld];
                if (yy[j + i * n + v * ld] != want) {
                    bi = i, bj = j, bv = v;
                    break;
                }
            }
    ck_assert_msg(bv < 0, "K_{%lld,%lld}: entry (%lld,%lld) of vector %lld", (long long)m, (long long)n,
                  (long long)bi, (long long)bj, (long long)bv);
    for (int64_t v = 0; v < k; v++) /* padding untouched */
        for (int64_t t = mn; t < ld; t++)
            if (yy[t + v * ld] != y0[t + v * ld]) pad_bad = t;
    ck_assert_msg(pad_bad < 0, "K_{%lld,%lld}: padding entry %lld written", (long long)m, (long long)n,
                  (long long)pad_bad);
    /* and back: K_{m,n}^T = K_{n,m} */
    CK_OK(ctx, lj_op_apply_multi(ctx, K, 1, k, 1.0, yy, ld, 0.0, xx, ld));
    lj_op_free(&K);
    free(x);
    free(y);
    free(y0);
}

START_TEST(test_commutation_kernel)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 17;
    const int64_t sz[] = { 2, 3, 4, 5, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 64, 100 };
    const int nsz = (int)(sizeof sz / sizeof sz[0]);
    for (int a = 0; a < nsz; a++)
        for (int b = 0; b < nsz; b++) {
            int64_t m = sz[a], n = sz[b];
            check_commutation_apply(ctx, m, n, 1, 0, (a + b) % 8, 1.0, 0.0, &seed);
            if ((a + b) % 3 == 0) check_commutation_apply(ctx, m, n, 3, 5, a % 8, -0.5, 0.0, &seed);
            if ((a + b) % 3 == 1) check_commutation_apply(ctx, m, n, 2, 1, b % 8, 2.0, 0.25, &seed);
        }
    /* power-of-two leading dimensions, and a narrow matrix */
    check_commutation_apply(ctx, 512, 256, 1, 0, 0, 1.0, 0.0, &seed);
    check_commutation_apply(ctx, 1000, 37, 1, 0, 1, 1.0, 0.0, &seed);
    check_commutation_apply(ctx, 37, 1000, 1, 0, 2, 1.0, 1.0, &seed);
    /* more columns than one block of the tile order (LJI_JB), the last
     * block partial and the edge columns after it */
    check_commutation_apply(ctx, 21, 1029, 2, 3, 4, -0.5, 0.25, &seed);
    check_commutation_apply(ctx, 64, 1544, 1, 0, 0, 1.0, 0.0, &seed);
    /* leading dimensions near a multiple of 512, which crowd a few cache
     * sets: the lower bands (16 rows from 256 KiB, 8 from 1 MiB), with
     * edges, accumulation, and inputs and outputs off their lines, which
     * the kernel's lead rows and columns realign */
    check_commutation_apply(ctx, 256, 256, 1, 0, 1, 1.0, 0.0, &seed);
    check_commutation_apply(ctx, 1023, 1025, 1, 0, 6, -0.5, 0.0, &seed);
    check_commutation_apply(ctx, 512, 512, 2, 0, 2, 2.0, 0.25, &seed);
    /* beyond 16 MiB: streaming stores, at an aligned and unaligned start,
     * with a leading dimension of B that allows them (n % 8 == 0) and one
     * that does not */
    check_commutation_apply(ctx, 1536, 1400, 1, 0, 0, 1.0, 0.0, &seed);
    check_commutation_apply(ctx, 1533, 1400, 1, 0, 3, -1.0, 0.0, &seed);
    check_commutation_apply(ctx, 1400, 1539, 1, 0, 5, 1.0, 0.0, &seed);
    /* 2–16 MiB: streaming stores in bands of 128 rows with the Intel
     * tuning, cached stores with prefetches there too, cached stores
     * alone with the other (tests/tuning.sh runs this test under both,
     * and with the portable tiles) */
    check_commutation_apply(ctx, 701, 504, 1, 0, 3, 1.0, 0.0, &seed);
    check_commutation_apply(ctx, 700, 504, 1, 0, 6, -0.5, 0.0, &seed);
    check_commutation_apply(ctx, 700, 503, 1, 0, 1, 1.0, 0.0, &seed);
    lj_context_free(&ctx);
}
END_TEST

/* Small products (the AVX2 kernel of lib/core/blas.c where the CPU has
 * it, plain loops under LJ_SIMD=none): a dense block applied to 1–9
 * vectors, both ways, at every row count modulo 4, with alpha and beta,
 * and with beta = 0 over NaN; and Kronecker products of small dense
 * factors, either transposed (the fused kernel), three ways. */
START_TEST(test_small_products)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 41;
    const int64_t nv[] = { 1, 2, 3, 4, 5, 8, 9 };
    for (int64_t m = 1; m <= 9; m++)
        for (int64_t kk = 1; kk <= 9; kk++) {
            tmat D = tm_rand(m, kk, &seed);
            lj_op *d = dense_of(ctx, D, "D");
            for (size_t v = 0; v < sizeof nv / sizeof nv[0]; v++)
                for (int trans = 0; trans < 2; trans++) {
                    const int64_t k = nv[v], in = trans ? m : kk, out = trans ? kk : m;
                    const int64_t ldx = in + 1, ldy = out + 2;
                    tmat X = tm_rand(ldx, k, &seed), Y0 = tm_rand(ldy, k, &seed), Y = tm_new(ldy, k);
                    for (int b = 0; b < 2; b++) {
                        const double alpha = b ? 0.75 : -1.5, beta = b ? -0.5 : 0.0;
                        for (int64_t t = 0; t < ldy * k; t++) Y.a[t] = b ? Y0.a[t] : NAN;
                        CK_OK(ctx, lj_op_apply_multi(ctx, d, trans, k, alpha, X.a, ldx, beta, Y.a, ldy));
                        for (int64_t c = 0; c < k; c++) {
                            for (int64_t i = 0; i < out; i++) {
                                double r = b ? beta * Y0.a[i + c * ldy] : 0.0;
                                for (int64_t j = 0; j < in; j++)
                                    r += alpha * (trans ? D.a[j + i * m] : D.a[i + j * m]) * X.a[j + c * ldx];
                                ck_assert_msg(fabs(r - Y.a[i + c * ldy]) <= 1e-14 * (in + 1) * 4,
                                              "D %lld×%lld%s, %lld vectors, beta %g: row %lld col %lld: %g vs %g",
                                              (long long)m, (long long)kk, trans ? "^T" : "", (long long)k, beta,
                                              (long long)i, (long long)c, Y.a[i + c * ldy], r);
                            }
                            for (int64_t i = out; i < ldy; i++) /* the padding is left alone */
                                ck_assert(b ? Y.a[i + c * ldy] == Y0.a[i + c * ldy] : isnan(Y.a[i + c * ldy]));
                        }
                    }
                    tm_free(&X), tm_free(&Y0), tm_free(&Y);
                }
            lj_op_free(&d);
            tm_free(&D);
        }
    /* op(A) ⊗ op(B) of small dense factors, the temporaries' sizes on
     * either side of the fused kernel's stack limit (448) */
    const int64_t sz[][4] = { { 2, 2, 4, 4 }, { 3, 5, 2, 7 }, { 4, 3, 5, 1 }, { 1, 6, 6, 1 },
                              { 8, 4, 8, 8 }, { 16, 8, 16, 16 }, { 20, 30, 20, 25 } };
    for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                tmat A = tm_rand(sz[t][0], sz[t][1], &seed), B = tm_rand(sz[t][2], sz[t][3], &seed);
                lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B");
                lj_op *fa = ta ? lj_op_transpose(ctx, a) : lj_op_retain(a);
                lj_op *fb = tb ? lj_op_transpose(ctx, b) : lj_op_retain(b);
                lj_op *kr = lj_op_kron(ctx, fa, fb);
                CK_NN(ctx, kr);
                tmat At = tm_transpose(A), Bt = tm_transpose(B);
                tmat R = tm_kron(ta ? At : A, tb ? Bt : B);
                check_op_against(ctx, kr, R, 1e-13, "op(A) ⊗ op(B), small");
                lj_op *ops[] = { a, b, fa, fb, kr };
                for (int q = 0; q < 5; q++) lj_op_free(&ops[q]);
                tm_free(&A), tm_free(&B), tm_free(&At), tm_free(&Bt), tm_free(&R);
            }
    lj_context_free(&ctx);
}
END_TEST

/* lj_op_apply's short way to a node's fused kernel (op.c): alpha, beta and
 * NaN in y as the long way has them, both ways, on a small dense Kronecker
 * product and a one-row kernel; and each check it makes before taking it
 * (a NULL context, vector or operator, x and y overlapping) still reported. */
START_TEST(test_apply_short_path)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 43;
    tmat A = tm_rand(3, 4, &seed), B = tm_rand(2, 5, &seed), U = tm_rand(1, 4, &seed), V = tm_rand(1, 5, &seed);
    tmat D = tm_rand(20, 1, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *u = dense_of(ctx, U, "u"), *v = dense_of(ctx, V, "v");
    lj_op *kab = lj_op_kron(ctx, a, b), *kuv = lj_op_kron(ctx, u, v), *d = lj_op_diag(ctx, 20, D.a, "d");
    const lj_op *fs[] = { kuv, d };
    lj_op *row = lj_op_compose(ctx, 2, fs);
    CK_NN(ctx, row);
    tmat Rk = tm_kron(A, B), Ru = tm_kron(U, V); /* 6×20 and 1×20 */
    for (int64_t j = 0; j < 20; j++) Ru.a[j] *= D.a[j];
    const lj_op *ops[] = { kab, row };
    const tmat *refs[] = { &Rk, &Ru };
    double x[40], y[40], y0[40];
    for (int q = 0; q < 2; q++)
        for (int trans = 0; trans < 2; trans++) {
            const tmat *R = refs[q];
            const int64_t in = trans ? R->r : R->c, out = trans ? R->c : R->r;
            const double ab[][2] = { { 1.0, 0.0 }, { -0.5, 2.0 }, { 0.0, 0.5 }, { 1.5, 1.0 } };
            for (size_t c = 0; c < sizeof ab / sizeof ab[0]; c++) {
                const double alpha = ab[c][0], beta = ab[c][1];
                for (int64_t i = 0; i < in; i++) x[i] = tm_uniform(&seed);
                for (int64_t i = 0; i < out; i++) y[i] = y0[i] = beta == 0.0 ? NAN : tm_uniform(&seed);
                CK_OK(ctx, lj_op_apply(ctx, ops[q], trans, alpha, x, beta, y));
                for (int64_t i = 0; i < out; i++) {
                    double r = beta == 0.0 ? 0.0 : beta * y0[i];
                    for (int64_t j = 0; j < in; j++)
                        r += alpha * (trans ? R->a[j + i * R->r] : R->a[i + j * R->r]) * x[j];
                    ck_assert_msg(fabs(y[i] - r) <= 1e-13, "operator %d%s, alpha %g, beta %g: entry %lld %g vs %g", q,
                                  trans ? "^T" : "", alpha, beta, (long long)i, y[i], r);
                }
            }
        }
    /* the checks, on a node whose kernel has been chosen */
    ck_assert_int_eq(lj_op_apply(NULL, kab, 0, 1, x, 0, y), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_op_apply(ctx, kab, 0, 1, NULL, 0, y), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "apply: NULL vector");
    ck_assert_int_eq(lj_op_apply(ctx, kab, 1, 1, x, 0, NULL), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "apply: NULL vector");
    ck_assert_int_eq(lj_op_apply(ctx, kab, 0, 1, x, 0, x + 19), LJ_ERR_INVALID); /* in = 20 */
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "overlap");
    ck_assert_int_eq(lj_op_apply(ctx, kab, 1, 1, x + 5, 0, x), LJ_ERR_INVALID); /* out = 20 */
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "overlap");
    CK_OK(ctx, lj_op_apply(ctx, kab, 0, 1, x, 0, x + 20)); /* adjacent, not overlapping */
    CK_OK(ctx, lj_op_apply(ctx, kab, 1, 1, x + 20, 0, x));
    ck_assert_int_eq(lj_op_apply(ctx, NULL, 0, 1, x, 0, y), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "apply");
    lj_op *all[] = { a, b, u, v, kab, kuv, d, row };
    for (int q = 0; q < 8; q++) lj_op_free(&all[q]);
    tm_free(&A), tm_free(&B), tm_free(&U), tm_free(&V), tm_free(&D), tm_free(&Rk), tm_free(&Ru);
    lj_context_free(&ctx);
}
END_TEST

/* The fused kernels (lib/op/fused.c) against dense references: vector-sided
 * Kronecker factors alone and under a Diag and in sums, and the one-row
 * (b^T ⊗ u^T)·Diag(d), with non-square grids, coefficients, and the
 * scaled Kronecker materialisation Diag·(A ⊗ B)·Diag. Each is checked
 * three ways (apply, transpose-apply, materialised) with alpha and beta. */
static tmat diag_ref(const double *d, int64_t n)
{
    tmat D = tm_new(n, n);
    for (int64_t i = 0; i < n; i++) D.a[i + i * n] = d[i];
    return D;
}

START_TEST(test_fused_kernels)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 99;
    const int64_t grids[][2] = { { 5, 5 }, { 3, 7 }, { 8, 2 }, { 1, 6 } };
    for (size_t g = 0; g < sizeof grids / sizeof grids[0]; g++) {
        int64_t R = grids[g][0], C = grids[g][1];
        tmat u = tm_rand(C, 1, &seed), w = tm_rand(R, 1, &seed), IR = tm_eye(R), IC = tm_eye(C);
        lj_op *uo = dense_of(ctx, u, "u"), *wo = dense_of(ctx, w, "w");
        lj_op *Ir = lj_op_identity(ctx, R), *Ic = lj_op_identity(ctx, C);
        /* u ⊗ I_R (grid R×C) and I_C ⊗ w (grid R×C) */
        lj_op *L = lj_op_kron(ctx, uo, Ir), *Rt = lj_op_kron(ctx, Ic, wo);
        tmat Lr = tm_kron(u, IR), Rr = tm_kron(IC, w);
        check_op_against(ctx, L, Lr, 1e-14, "u ⊗ I");
        check_op_against(ctx, Rt, Rr, 1e-14, "I ⊗ w");
        double *d = malloc(sizeof *d * (size_t)(R * C));
        for (int64_t i = 0; i < R * C; i++) d[i] = urand(&seed);
        lj_op *D = lj_op_diag(ctx, R * C, d, "d");
        tmat Dr = diag_ref(d, R * C);
        /* Diag(d)·(2.5·(u ⊗ I) - 0.5·(u' ⊗ I)): same forms, any grid */
        tmat u2 = tm_rand(C, 1, &seed);
        lj_op *u2o = dense_of(ctx, u2, "v"), *L2 = lj_op_kron(ctx, u2o, Ir);
        const lj_op *ts[2] = { L, L2 };
        double cf[2] = { 2.5, -0.5 };
        lj_op *S = lj_op_lincomb(ctx, 2, cf, ts), *DS = lj_op_mul(ctx, D, S);
        tmat L2r = tm_kron(u2, IR), Sr = tm_add(2.5, Lr, -0.5, L2r), DSr = tm_mul(Dr, Sr);
        check_op_against(ctx, DS, DSr, 1e-13, "Diag·(a(u ⊗ I) + b(v ⊗ I))");
        if (R == C) {
            /* seed 001's form: Diag(d)·((u ⊗ I) + 3·(I ⊗ w)), and three terms */
            lj_op *R3 = lj_op_scale(ctx, 3.0, Rt);
            const lj_op *t2[2] = { L, R3 };
            lj_op *S2 = lj_op_lincomb(ctx, 2, NULL, t2), *DS2 = lj_op_mul(ctx, D, S2);
            tmat S2r = tm_add(1.0, Lr, 3.0, Rr), DS2r = tm_mul(Dr, S2r);
            check_op_against(ctx, DS2, DS2r, 1e-13, "Diag·((u ⊗ I) + 3(I ⊗ w))");
            check_op_against(ctx, S2, S2r, 1e-13, "(u ⊗ I) + 3(I ⊗ w)");
            const lj_op *t3[3] = { L, Rt, L2 };
            lj_op *S3 = lj_op_lincomb(ctx, 3, NULL, t3), *DS3 = lj_op_mul(ctx, D, S3);
            tmat t = tm_add(1.0, Lr, 1.0, Rr), S3r = tm_add(1.0, t, 1.0, L2r), DS3r = tm_mul(Dr, S3r);
            check_op_against(ctx, DS3, DS3r, 1e-13, "Diag·(three terms)");
            lj_op *fr[] = { R3, S2, DS2, S3, DS3 };
            for (int i = 0; i < 5; i++) lj_op_free(&fr[i]);
            tmat ft[] = { S2r, DS2r, t, S3r, DS3r };
            for (int i = 0; i < 5; i++) tm_free(&ft[i]);
        }
        /* the one-row form (b^T ⊗ w^T)·Diag(d), with w of ones and not */
        for (int ones = 0; ones < 2; ones++) {
            tmat b = tm_rand(C, 1, &seed), v = tm_rand(R, 1, &seed);
            if (ones)
                for (int64_t i = 0; i < R; i++) v.a[i] = 1.0;
            lj_op *bo = dense_of(ctx, b, "b"), *vo = dense_of(ctx, v, "v");
            lj_op *bt = lj_op_transpose(ctx, bo), *vt = lj_op_transpose(ctx, vo), *K = lj_op_kron(ctx, bt, vt);
            lj_op *KD = lj_op_mul(ctx, K, D), *KD2 = lj_op_scale(ctx, -2.0, KD);
            tmat btr = tm_transpose(b), vtr = tm_transpose(v), Kr = tm_kron(btr, vtr), KDr = tm_mul(Kr, Dr);
            tmat KD2r = tm_add(-2.0, KDr, 0.0, KDr);
            check_op_against(ctx, K, Kr, 1e-14, "b^T ⊗ w^T");
            check_op_against(ctx, KD, KDr, 1e-13, "(b^T ⊗ w^T)·Diag(d)");
            check_op_against(ctx, KD2, KD2r, 1e-13, "-2(b^T ⊗ w^T)·Diag(d)");
            lj_op *fr[] = { bo, vo, bt, vt, K, KD, KD2 };
            for (int i = 0; i < 7; i++) lj_op_free(&fr[i]);
            tmat ft[] = { b, v, btr, vtr, Kr, KDr, KD2r };
            for (int i = 0; i < 7; i++) tm_free(&ft[i]);
        }
        /* Diag·(A ⊗ B)·Diag materialised in one pass (and applied) */
        tmat A = tm_rand(3, 2, &seed), B = tm_rand(R, C, &seed);
        lj_op *ao = dense_of(ctx, A, "A"), *bo = dense_of(ctx, B, "B"), *AB = lj_op_kron(ctx, ao, bo);
        double *dl = malloc(sizeof *dl * (size_t)(3 * R)), *dr = malloc(sizeof *dr * (size_t)(2 * C));
        for (int64_t i = 0; i < 3 * R; i++) dl[i] = urand(&seed);
        for (int64_t i = 0; i < 2 * C; i++) dr[i] = urand(&seed);
        lj_op *Dl = lj_op_diag(ctx, 3 * R, dl, "l"), *Dr2 = lj_op_diag(ctx, 2 * C, dr, "r");
        const lj_op *ch[3] = { Dl, AB, Dr2 };
        lj_op *DKD = lj_op_compose(ctx, 3, ch), *KDr2 = lj_op_mul(ctx, AB, Dr2), *DlK = lj_op_mul(ctx, Dl, AB);
        tmat ABr = tm_kron(A, B), Dlr = diag_ref(dl, 3 * R), Drr = diag_ref(dr, 2 * C), t1 = tm_mul(Dlr, ABr);
        tmat DKDr = tm_mul(t1, Drr), KDrr = tm_mul(ABr, Drr);
        check_op_against(ctx, DKD, DKDr, 1e-13, "Diag·(A ⊗ B)·Diag");
        check_op_against(ctx, KDr2, KDrr, 1e-13, "(A ⊗ B)·Diag");
        check_op_against(ctx, DlK, t1, 1e-13, "Diag·(A ⊗ B)");
        lj_op *fr[] = { uo, wo, Ir, Ic, L, Rt, D, u2o, L2, S, DS, ao, bo, AB, Dl, Dr2, DKD, KDr2, DlK };
        for (size_t i = 0; i < sizeof fr / sizeof fr[0]; i++) lj_op_free(&fr[i]);
        tmat ft[] = { u, w, IR, IC, Lr, Rr, Dr, u2, L2r, Sr, DSr, A, B, ABr, Dlr, Drr, t1, DKDr, KDrr };
        for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++) tm_free(&ft[i]);
        free(d);
        free(dl);
        free(dr);
    }
    lj_context_free(&ctx);
}
END_TEST

/* Row blocks: every kind and composites (Kronecker products of non-square
 * factors of four sizes, whose ranges cut their factors' blocks; products,
 * sums, stacks, transposes), several ranges each: the block checked three
 * ways against the rows of J's dense form, and its materialisation equal,
 * entry for entry, to the rows of J's. */
static void check_row_blocks(lj_context *ctx, const lj_op *J, const char *what)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    tmat D = tm_new(m, n);
    CK_OK(ctx, lj_op_to_dense(ctx, J, D.a, m > 0 ? m : 1));
    cholmod_sparse *S = lj_op_to_sparse(ctx, J);
    CK_NN(ctx, S);
    const int64_t ranges[][2] = { { 0, 1 }, { 1, m - 1 }, { m / 3, 2 * m / 3 + 1 }, { m - 1, m }, { 0, m }, { m / 2, m / 2 } };
    for (size_t t = 0; t < sizeof ranges / sizeof ranges[0]; t++) {
        int64_t r0 = ranges[t][0], r1 = ranges[t][1];
        if (r0 < 0 || r1 > m || r1 < r0) continue;
        lj_op *B = lj_op_row_block(ctx, J, r0, r1);
        CK_NN(ctx, B);
        tmat R = tm_new(r1 - r0, n);
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = r0; i < r1; i++) R.a[(i - r0) + j * (r1 - r0)] = D.a[i + j * m];
        char w[160];
        snprintf(w, sizeof w, "%s rows [%lld, %lld)", what, (long long)r0, (long long)r1);
        check_op_against(ctx, B, R, 1e-13, w);
        cholmod_sparse *T = lj_op_to_sparse(ctx, B);
        CK_NN(ctx, T);
        /* the same entries as J's materialisation, in those rows */
        const int64_t *sp = S->p, *si = S->i, *tp = T->p, *ti = T->i;
        const double *sx = S->x, *tx = T->x;
        bool same = T->nrow == (size_t)(r1 - r0) && T->ncol == (size_t)n;
        for (int64_t j = 0; same && j < n; j++) {
            int64_t q = tp[j];
            for (int64_t p = sp[j]; p < sp[j + 1] && same; p++) {
                if (si[p] < r0 || si[p] >= r1) continue;
                same = q < tp[j + 1] && ti[q] == si[p] - r0 && fabs(tx[q] - sx[p]) <= 1e-13 * (1 + fabs(sx[p]));
                q++;
            }
            same = same && q == tp[j + 1];
        }
        ck_assert_msg(same, "%s: materialised block differs from J's rows", w);
        lj_sparse_free(ctx, &T);
        lj_op_free(&B);
        tm_free(&R);
    }
    lj_sparse_free(ctx, &S);
    tm_free(&D);
}

START_TEST(test_row_blocks)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 321;
    tmat A = tm_rand(3, 2, &seed), B = tm_rand(4, 5, &seed), C = tm_rand(5, 3, &seed), Rr;
    cholmod_sparse *cs = tm_rand_sparse(ctx, 6, 5, 0.5, &seed, &Rr);
    double d[12], u[6], v[5];
    for (int i = 0; i < 12; i++) d[i] = urand(&seed);
    for (int i = 0; i < 6; i++) u[i] = urand(&seed);
    for (int i = 0; i < 5; i++) v[i] = urand(&seed);
    int64_t perm[6] = { 3, 0, 5, 1, 4, 2 }, si[7] = { 0, 3, 1, 3, 2, 0, 1 }, sj[7] = { 0, 1, 2, 2, 0, 1, 1 };
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C");
    lj_op *s = lj_op_sparse(ctx, cs, "S"), *I6 = lj_op_identity(ctx, 6), *K = lj_op_commutation(ctx, 3, 4);
    lj_op *Dg = lj_op_diag(ctx, 12, d, "d"), *P = lj_op_perm(ctx, 6, perm, "P"), *r1 = lj_op_rank1(ctx, 6, u, "u", 5, v, "v");
    lj_op *ab = lj_op_kron(ctx, a, b), *bc = lj_op_mul(ctx, b, c), *st = lj_op_transpose(ctx, s), *at = lj_op_transpose(ctx, a);
    lj_op *kt = lj_op_transpose(ctx, ab), *I2 = lj_op_identity(ctx, 2), *I2B = lj_op_kron(ctx, I2, b);
    const lj_op *sumt[3] = { s, r1, P };
    lj_op *P65 = lj_op_mul(ctx, P, s), *sm = lj_op_lincomb(ctx, 2, NULL, sumt);
    const lj_op *hs[2] = { s, r1 }, *vs[3] = { s, r1, P65 };
    lj_op *H = lj_op_hstack(ctx, 2, hs), *V = lj_op_vstack(ctx, 3, vs), *Z = lj_op_zero(ctx, 4, 3);
    lj_op *DK = lj_op_mul(ctx, Dg, K), *Ksc = lj_op_scale(ctx, -2.0, K);
    lj_op *I3 = lj_op_identity(ctx, 3), *Sm = lj_op_sampled(ctx, 7, si, sj, NULL, I3, b, "P_Ω");
    lj_op *kab = lj_op_kron(ctx, ab, at); /* a three-factor product: blocks cut at two levels */
    lj_op *ops[] = { a, s, I6, K, Dg, P, r1, ab, bc, st, at, kt, I2B, sm, H, V, Z, DK, Ksc, Sm, kab };
    const char *names[] = { "dense", "sparse", "identity", "commutation", "Diag", "perm", "rank1", "A ⊗ B", "B·C",
                            "S^T", "A^T", "(A ⊗ B)^T", "I ⊗ B", "S + u v^T", "[S, u v^T]", "[S; u v^T; P·S]",
                            "zero", "Diag·K", "-2K", "sampled", "A ⊗ B ⊗ A^T" };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        CK_NN(ctx, ops[i]);
        check_row_blocks(ctx, ops[i], names[i]);
    }
    /* errors: ranges outside the rows, NULL */
    ck_assert_ptr_null(lj_op_row_block(ctx, ab, 3, 2));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "row_block: [3, 2) is not a range of rows of (12×10)");
    ck_assert_ptr_null(lj_op_row_block(ctx, ab, -1, 2));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "row_block");
    ck_assert_ptr_null(lj_op_row_block(ctx, ab, 0, 13));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "row_block");
    ck_assert_ptr_null(lj_op_row_block(ctx, NULL, 0, 1));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "row_block");
    /* printing: the blocks of labelled leaves are named */
    lj_op *blk = lj_op_row_block(ctx, ab, 2, 7);
    char *pb = lj_op_print(ctx, blk, LJ_PRINT_UNICODE);
    ck_assert_msg(strstr(pb, "A(1:1,:) ⊗ B(3:4,:)") != NULL, "printed %s", pb);
    lj_free(pb);
    lj_op_free(&blk);
    /* allocation failure at every point of a block of a composite */
    for (int64_t k = 1; k < 200; k++) {
        lj_context_fail_alloc(ctx, k, 0);
        lj_op *x = lj_op_row_block(ctx, kab, 5, 19);
        cholmod_sparse *xs = x ? lj_op_to_sparse(ctx, x) : NULL;
        bool done = x && xs;
        if (!done) {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "k=%lld: %s", (long long)k, lj_context_message(ctx));
            lj_context_clear(ctx);
        }
        lj_sparse_free(ctx, &xs);
        lj_op_free(&x);
        if (done) break;
    }
    lj_context_fail_alloc(ctx, 0, 0);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) lj_op_free(&ops[i]);
    lj_op *more[] = { I2, I3, P65, b, c };
    for (int i = 0; i < 5; i++) lj_op_free(&more[i]);
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    tm_free(&A);
    tm_free(&B);
    tm_free(&C);
    tm_free(&Rr);
    lj_context_free(&ctx);
}
END_TEST

/* A Kronecker product of products multiplied out keeps a bounded label: a
 * power of one factor reads as the power (the Jacobian of M(M(…(M X))) is
 * I ⊗ M^N), and a long mixed product is cut, so that building long chains
 * stays linear. */
START_TEST(test_product_labels)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 5;
    tmat Mm = tm_rand(4, 4, &seed), Nm = tm_rand(4, 4, &seed);
    lj_op *M = dense_of(ctx, Mm, "M"), *N = dense_of(ctx, Nm, "N"), *I3 = lj_op_identity(ctx, 3);
    lj_op *IM = lj_op_kron(ctx, I3, M), *IN = lj_op_kron(ctx, I3, N);
    lj_op *P = lj_op_retain(IM);
    for (int i = 1; i < 300; i++) {
        lj_op *t = lj_op_mul(ctx, IM, P);
        lj_op_free(&P);
        P = t;
    }
    ASSERT_PRINTS(ctx, P, "I_3 ⊗ M^300");
    lj_op *Q = lj_op_retain(IN);
    for (int i = 0; i < 60; i++) {
        lj_op *t = lj_op_mul(ctx, i % 2 ? IN : IM, Q);
        lj_op_free(&Q);
        Q = t;
    }
    char *q = pr(ctx, Q);
    ck_assert_msg(strlen(q) < 120 && strstr(q, "…"), "a long mixed product prints '%s'", q);
    lj_free(q);
    /* the value is the product's all the same */
    tmat R = tm_eye(4);
    for (int i = 0; i < 300; i++) {
        tmat t = tm_mul(Mm, R);
        tm_free(&R);
        R = t;
    }
    tmat I3r = tm_eye(3), K = tm_kron(I3r, R);
    check_op_against(ctx, P, K, 1e-10, "I ⊗ M^300");
    lj_op *fr[] = { M, N, I3, IM, IN, P, Q };
    for (int i = 0; i < 7; i++) lj_op_free(&fr[i]);
    tmat ft[] = { Mm, Nm, R, I3r, K };
    for (int i = 0; i < 5; i++) tm_free(&ft[i]);
    lj_context_free(&ctx);
}
END_TEST

/* ---- sampled Kronecker products -------------------------------------------------- */

/* C or D of the sampled kind: 0 identity, 1 dense, 2 a transposed dense */
static lj_op *sampled_factor(lj_context *ctx, int kind, int64_t r, int64_t c, uint64_t *seed, tmat *ref,
                             const char *label)
{
    if (kind == 0) {
        *ref = tm_eye(r);
        return lj_op_identity(ctx, r);
    }
    if (kind == 1) {
        *ref = tm_rand(r, c, seed);
        return dense_of(ctx, *ref, label);
    }
    tmat t = tm_rand(c, r, seed);
    *ref = tm_transpose(t);
    lj_op *d = dense_of(ctx, t, label), *dt = lj_op_transpose(ctx, d);
    lj_op_free(&d);
    tm_free(&t);
    return dt;
}

START_TEST(test_sampled)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 17;
    /* m, p, n, q: D m×p, C n×q; the both-dense ones favour each order */
    const int64_t sh[][4] = { { 5, 3, 4, 2 }, { 7, 2, 3, 4 }, { 2, 4, 9, 3 }, { 30, 2, 3, 5 },
                              { 3, 5, 30, 2 }, { 0, 2, 3, 2 }, { 4, 3, 0, 2 }, { 4, 0, 3, 2 } };
    for (size_t t = 0; t < sizeof sh / sizeof sh[0]; t++)
        for (int kc = 0; kc < 3; kc++)
            for (int kd = 0; kd < 3; kd++)
                for (int weighted = 0; weighted < 2; weighted++) {
                    int64_t m = sh[t][0], p = kd ? sh[t][1] : m, n = sh[t][2], q = kc ? sh[t][3] : n;
                    tmat Cr, Dr;
                    lj_op *C = sampled_factor(ctx, kc, n, q, &seed, &Cr, "V");
                    lj_op *D = sampled_factor(ctx, kd, m, p, &seed, &Dr, "U");
                    CK_NN(ctx, C);
                    CK_NN(ctx, D);
                    /* entries with a repeat, in no particular order */
                    int64_t nz = m * n > 0 ? 1 + (int64_t)(tm_uniform(&seed) * (double)(m * n)) : 0;
                    int64_t *ii = malloc(sizeof(int64_t) * (size_t)(nz + 1)), *jj = malloc(sizeof(int64_t) * (size_t)(nz + 1));
                    tmat w = tm_rand(nz + 1, 1, &seed);
                    for (int64_t k = 0; k < nz; k++) {
                        ii[k] = (int64_t)(tm_uniform(&seed) * (double)m) % m;
                        jj[k] = (int64_t)(tm_uniform(&seed) * (double)n) % n;
                    }
                    if (nz > 1) {
                        ii[nz - 1] = ii[0];
                        jj[nz - 1] = jj[0];
                    }
                    lj_op *J = lj_op_sampled(ctx, nz, ii, jj, weighted ? w.a : NULL, C, D, weighted ? "P_S·Diag(w)" : NULL);
                    CK_NN(ctx, J);
                    ck_assert_int_eq(lj_op_kind_of(J), LJ_OP_SAMPLED);
                    tmat K = tm_kron(Cr, Dr), R = tm_new(nz, p * q);
                    for (int64_t k = 0; k < nz; k++)
                        for (int64_t c = 0; c < p * q; c++)
                            R.a[k + c * nz] = (weighted ? w.a[k] : 1.0) * K.a[ii[k] + jj[k] * m + c * (m * n)];
                    char what[96];
                    snprintf(what, sizeof what, "sampled %lldx%lld (x) %lldx%lld kinds %d%d w%d", (long long)n,
                             (long long)q, (long long)m, (long long)p, kc, kd, weighted);
                    check_op_against(ctx, J, R, 1e-14, what);
                    int ex = 0;
                    ck_assert_int_eq(lj_op_nnz(ctx, J, &ex), nz * (kd ? p : 1) * (kc ? q : 1));
                    ck_assert(ex);
                    lj_op_free(&J);
                    free(ii);
                    free(jj);
                    tm_free(&w);
                    tm_free(&K);
                    tm_free(&R);
                    tm_free(&Cr);
                    tm_free(&Dr);
                    lj_op_free(&C);
                    lj_op_free(&D);
                }
    lj_context_free(&ctx);
}
END_TEST

/* A selection times a Kronecker product is one sampled node; it prints as
 * the product it is. */
START_TEST(test_sampled_rules)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 3;
    int64_t ii[4] = { 0, 3, 2, 3 }, jj[4] = { 0, 1, 4, 4 };
    tmat V = tm_rand(5, 2, &seed), U = tm_rand(4, 2, &seed);
    lj_op *I4 = lj_op_identity(ctx, 4), *I5 = lj_op_identity(ctx, 5), *Vo = dense_of(ctx, V, "V"),
          *Uo = dense_of(ctx, U, "U"), *I2 = lj_op_identity(ctx, 2);
    lj_op *P = lj_op_sampled(ctx, 4, ii, jj, NULL, I5, I4, "P_M");
    ASSERT_PRINTS(ctx, P, "P_M");
    lj_op *KV = lj_op_kron(ctx, Vo, I4), *KU = lj_op_kron(ctx, I5, Uo);
    lj_op *JU = lj_op_mul(ctx, P, KV), *JV = lj_op_mul(ctx, P, KU);
    CK_NN(ctx, JU);
    CK_NN(ctx, JV);
    ck_assert_int_eq(lj_op_kind_of(JU), LJ_OP_SAMPLED);
    ck_assert_int_eq(lj_op_kind_of(JV), LJ_OP_SAMPLED);
    ASSERT_PRINTS(ctx, JU, "P_M·(V ⊗ I_4)");
    ASSERT_PRINTS(ctx, JV, "P_M·(I_5 ⊗ U)");
    /* the same numbers as the product left lazy */
    tmat PR = tm_new(4, 20), R;
    for (int k = 0; k < 4; k++) PR.a[k + (ii[k] + jj[k] * 4) * 4] = 1;
    tmat E4 = tm_eye(4), KVr = tm_kron(V, E4);
    tm_free(&E4);
    R = tm_mul(PR, KVr);
    check_op_against(ctx, JU, R, 1e-14, "P·(V ⊗ I)");
    /* a product that is not plain stays a composition */
    tmat W = tm_rand(4, 3, &seed);
    lj_op *Wo = dense_of(ctx, W, "W"), *K2 = lj_op_kron(ctx, I2, Wo), *UU = lj_op_kron(ctx, Vo, Uo);
    lj_op *JUU = lj_op_mul(ctx, JU, K2);
    ck_assert_int_eq(lj_op_kind_of(JUU), LJ_OP_SAMPLED);
    ASSERT_PRINTS(ctx, JUU, "P_M·(V ⊗ W)");
    lj_op *JW = lj_op_mul(ctx, P, UU);
    ck_assert_int_eq(lj_op_kind_of(JW), LJ_OP_SAMPLED);
    ASSERT_PRINTS(ctx, JW, "P_M·(V ⊗ U)");
    /* allocation failure anywhere: building, fusing, materialising, applying */
    int ok_at = 0;
    for (int n = 1; n < 300 && !ok_at; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *P2 = lj_op_sampled(ctx, 4, ii, jj, NULL, I5, I4, "P");
        lj_op *J2 = P2 ? lj_op_mul(ctx, P2, UU) : NULL;
        cholmod_sparse *S2 = J2 ? lj_op_to_sparse(ctx, J2) : NULL;
        double x[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, y[8];
        lj_status st = S2 ? lj_op_apply(ctx, J2, 1, 1.0, x, 0.0, y) : LJ_ERR_NOMEM;
        if (st == LJ_OK) st = lj_op_apply(ctx, J2, 0, 1.0, x, 0.0, y);
        if (st == LJ_OK && J2 && lj_op_kind_of(J2) == LJ_OP_SAMPLED) ok_at = n;
        else {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: status %d (%s)", n,
                          (int)lj_context_status(ctx), lj_context_message(ctx));
            lj_context_clear(ctx);
        }
        lj_sparse_free(ctx, &S2);
        lj_op_free(&P2);
        lj_op_free(&J2);
    }
    lj_context_fail_alloc(ctx, 0, 0);
    ck_assert_int_gt(ok_at, 3);
    /* bad input */
    int64_t bad[4] = { 0, 4, 0, 0 };
    ck_assert_ptr_null(lj_op_sampled(ctx, 4, bad, jj, NULL, I5, I4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "sampled: entry 1 at (4,1) is outside the (4×5) product");
    lj_op *fine = lj_op_sampled(ctx, 4, ii, bad, NULL, Vo, I4, NULL); /* j < 5 rows of V */
    CK_NN(ctx, fine);
    ASSERT_PRINTS(ctx, fine, "P_Ω·(V ⊗ I_4)");
    lj_op_free(&fine);
    ck_assert_ptr_null(lj_op_sampled(ctx, 2, NULL, jj, NULL, I5, I4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "sampled: NULL index array");
    ck_assert_ptr_null(lj_op_sampled(ctx, -1, ii, jj, NULL, I5, I4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "sampled: bad number of entries -1");
    ck_assert_ptr_null(lj_op_sampled(ctx, 4, ii, jj, NULL, KV, I4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "sampled: factor C (20×8) must be an identity or a dense block, not kron");
    ck_assert_ptr_null(lj_op_sampled(ctx, 4, ii, jj, NULL, NULL, I4, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "sampled");
    ck_assert_ptr_null(lj_op_sampled(NULL, 4, ii, jj, NULL, I5, I4, NULL));
    lj_op *ops[] = { P, I4, I5, Vo, Uo, I2, KV, KU, JU, JV, K2, UU, JUU, JW, Wo };
    tm_free(&W);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) lj_op_free(&ops[i]);
    tm_free(&V);
    tm_free(&U);
    tm_free(&PR);
    tm_free(&KVr);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

/* ---- Kronecker products --------------------------------------------------------- */

START_TEST(test_kron_dense_factors)
{
    /* non-square factors of four different sizes, both orders, transposed */
    lj_context *ctx = lj_context_new();
    uint64_t seed = 3;
    const int64_t sz[][4] = { { 2, 3, 4, 5 }, { 5, 4, 3, 2 }, { 1, 3, 4, 1 }, { 3, 1, 1, 4 },
                              { 7, 2, 3, 6 }, { 0, 2, 3, 4 }, { 40, 30, 20, 50 } };
    for (size_t t = 0; t < sizeof sz / sizeof sz[0]; t++) {
        tmat A = tm_rand(sz[t][0], sz[t][1], &seed), B = tm_rand(sz[t][2], sz[t][3], &seed);
        lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B");
        lj_op *k = lj_op_kron(ctx, a, b);
        CK_NN(ctx, k);
        tmat R = tm_kron(A, B);
        check_op_against(ctx, k, R, 1e-13, "A ⊗ B");
        /* the defining identity (A ⊗ B) vec X = vec(B X A^T) */
        tmat X = tm_rand(sz[t][3], sz[t][1], &seed), At = tm_transpose(A);
        tmat BX = tm_mul(B, X), BXAt = tm_mul(BX, At);
        tmat y = tm_new(R.r, 1);
        CK_OK(ctx, lj_op_apply(ctx, k, 0, 1.0, X.a, 0.0, y.a));
        for (int64_t i = 0; i < R.r; i++) ck_assert(fabs(y.a[i] - BXAt.a[i]) < 1e-12);
        lj_op *kt = lj_op_transpose(ctx, k);
        tmat Rt = tm_transpose(R);
        check_op_against(ctx, kt, Rt, 1e-13, "(A ⊗ B)^T");
        if (sz[t][0] > 0) ASSERT_PRINTS(ctx, kt, "A^T ⊗ B^T");
        lj_op_free(&a);
        lj_op_free(&b);
        lj_op_free(&k);
        lj_op_free(&kt);
        tm_free(&A);
        tm_free(&B);
        tm_free(&R);
        tm_free(&Rt);
        tm_free(&X);
        tm_free(&At);
        tm_free(&BX);
        tm_free(&BXAt);
        tm_free(&y);
    }
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_kron_structured_factors)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 8;
    tmat A = tm_rand(3, 2, &seed), B = tm_rand(2, 5, &seed), S;
    cholmod_sparse *cs = rand_sparse(ctx, 4, 3, &seed, &S);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *s = lj_op_sparse(ctx, cs, "S");
    lj_op *I4 = lj_op_identity(ctx, 4), *K = lj_op_commutation(ctx, 2, 3);
    double d[3] = { 1, -2, 0.5 };
    lj_op *D = lj_op_diag(ctx, 3, d, "d");
    tmat Ir = tm_eye(4), Kr = tm_commutation(2, 3), Dr = tm_new(3, 3);
    for (int i = 0; i < 3; i++) Dr.a[i + 3 * i] = d[i];
    struct { lj_op *x, *y; tmat *rx, *ry; const char *name; } cases[] = {
        { I4, b, &Ir, &B, "I ⊗ B" },      { a, I4, &A, &Ir, "A ⊗ I" },
        { s, a, &S, &A, "S ⊗ A" },        { a, s, &A, &S, "A ⊗ S" },
        { K, D, &Kr, &Dr, "K ⊗ Diag" },  { D, b, &Dr, &B, "Diag ⊗ B" },
        { s, K, &S, &Kr, "S ⊗ K" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        lj_op *k = lj_op_kron(ctx, cases[t].x, cases[t].y);
        tmat R = tm_kron(*cases[t].rx, *cases[t].ry);
        check_op_against(ctx, k, R, 1e-13, cases[t].name);
        /* and a product of three */
        const lj_op *three[3] = { cases[t].x, cases[t].y, a };
        lj_op *k3 = lj_op_kron_n(ctx, 3, three);
        tmat R3 = tm_kron(R, A);
        check_op_against(ctx, k3, R3, 1e-13, "triple kron");
        tm_free(&R);
        tm_free(&R3);
        lj_op_free(&k);
        lj_op_free(&k3);
    }
    lj_op *kk = lj_op_kron(ctx, I4, b);
    ASSERT_PRINTS(ctx, kk, "I_4 ⊗ B");
    lj_op_free(&kk);
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    lj_op *all[] = { a, b, s, I4, K, D };
    for (size_t i = 0; i < 6; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&B);
    tm_free(&S);
    tm_free(&Ir);
    tm_free(&Kr);
    tm_free(&Dr);
    lj_context_free(&ctx);
}
END_TEST

/* ---- composition, sums, stacks ---------------------------------------------------- */

START_TEST(test_compose_sum_stack)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 21;
    tmat A = tm_rand(4, 3, &seed), B = tm_rand(3, 5, &seed), C = tm_rand(5, 2, &seed), S;
    cholmod_sparse *cs = rand_sparse(ctx, 3, 5, &seed, &S);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C");
    lj_op *s = lj_op_sparse(ctx, cs, "S");
    const lj_op *abc[3] = { a, b, c };
    lj_op *p = lj_op_compose(ctx, 3, abc);
    tmat AB = tm_mul(A, B), ABC = tm_mul(AB, C);
    check_op_against(ctx, p, ABC, 1e-13, "A·B·C");
    ASSERT_PRINTS(ctx, p, "A·B·C");
    lj_op *pt = lj_op_transpose(ctx, p);
    ASSERT_PRINTS(ctx, pt, "C^T·B^T·A^T");
    tmat ABCt = tm_transpose(ABC);
    check_op_against(ctx, pt, ABCt, 1e-13, "(ABC)^T");
    /* sum with scaling, and like terms collected */
    const lj_op *bsb[3] = { b, s, b };
    double coef[3] = { 1.0, -2.0, 0.5 };
    lj_op *sum = lj_op_lincomb(ctx, 3, coef, bsb);
    tmat BS = tm_add(1.5, B, -2.0, S);
    check_op_against(ctx, sum, BS, 1e-13, "1.5 B - 2 S");
    ASSERT_PRINTS(ctx, sum, "1.5·B − 2·S");
    ck_assert_int_eq(lj_op_n_children(sum), 2);
    /* sum inside a product: parenthesised */
    const lj_op *as[2] = { a, sum };
    lj_op *asum = lj_op_compose(ctx, 2, as);
    ASSERT_PRINTS(ctx, asum, "A·(1.5·B − 2·S)");
    tmat ABS = tm_mul(A, BS);
    check_op_against(ctx, asum, ABS, 1e-13, "A(1.5B - 2S)");
    /* stacks */
    const lj_op *hb[2] = { b, s };
    lj_op *h = lj_op_hstack(ctx, 2, hb);
    tmat Bt = tm_transpose(B), St = tm_transpose(S);
    tmat H = tm_hstack(B, S);
    check_op_against(ctx, h, H, 1e-14, "[B, S]");
    ASSERT_PRINTS(ctx, h, "[B, S]");
    const lj_op *vb[2] = { b, s };
    lj_op *v = lj_op_vstack(ctx, 2, vb);
    tmat V = tm_vstack(B, S);
    check_op_against(ctx, v, V, 1e-14, "[B; S]");
    lj_op *ht = lj_op_transpose(ctx, h);
    ck_assert_int_eq(lj_op_kind_of(ht), LJ_OP_VSTACK);
    tmat Ht = tm_transpose(H);
    check_op_against(ctx, ht, Ht, 1e-14, "[B, S]^T");
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    lj_op *all[] = { a, b, c, s, p, pt, sum, asum, h, v, ht };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, S, AB, ABC, ABCt, BS, ABS, Bt, St, H, V, Ht };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

/* Empty inner and outer dimensions through products, sums and stacks. */
START_TEST(test_empty_dimensions)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 31;
    tmat A = tm_rand(3, 0, &seed), B = tm_rand(0, 4, &seed), C = tm_rand(3, 4, &seed), E = tm_rand(0, 4, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C"), *e = dense_of(ctx, E, "E");
    lj_op *ab = lj_op_mul(ctx, a, b); /* (3×0)·(0×4): the zero matrix */
    tmat AB = tm_new(3, 4);
    check_op_against(ctx, ab, AB, 0, "(3×0)·(0×4)");
    lj_op *s = lj_op_add(ctx, ab, c);
    check_op_against(ctx, s, C, 1e-15, "0 + C");
    const lj_op *h[2] = { c, a };
    lj_op *hs = lj_op_hstack(ctx, 2, h);
    check_op_against(ctx, hs, C, 1e-15, "[C, (3×0)]");
    const lj_op *v[2] = { e, c };
    lj_op *vs = lj_op_vstack(ctx, 2, v);
    check_op_against(ctx, vs, C, 1e-15, "[(0×4); C]");
    lj_op *k = lj_op_kron(ctx, a, c);
    tmat K = tm_new(9, 0);
    check_op_against(ctx, k, K, 0, "(3×0) ⊗ C");
    lj_op *all[] = { a, b, c, e, ab, s, hs, vs, k };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, E, AB, K };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

/* Random trees of 3–6 nodes over random leaves, checked three ways. */
static lj_op *rand_tree(lj_context *ctx, int64_t r, int64_t c, int depth, uint64_t *seed, tmat *ref,
                        int *nodes)
{
    double u = urand(seed);
    (*nodes)++;
    if (depth == 0 || *nodes >= 6 || u < -0.6) {
        *ref = tm_rand(r, c, seed);
        if (r == c && urand(seed) < -0.5) {
            tm_free(ref);
            *ref = tm_new(r, r);
            double *d = malloc(sizeof(double) * (size_t)(r + 1));
            for (int64_t i = 0; i < r; i++) ref->a[i + i * r] = d[i] = urand(seed) + 2;
            lj_op *D = lj_op_diag(ctx, r, d, "d");
            free(d);
            return D;
        }
        return dense_of(ctx, *ref, "M");
    }
    if (u < -0.2) { /* product through a random inner dimension */
        int64_t k = 1 + (int64_t)((urand(seed) + 1) * 2.5);
        tmat L, R;
        lj_op *l = rand_tree(ctx, r, k, depth - 1, seed, &L, nodes);
        lj_op *q = rand_tree(ctx, k, c, depth - 1, seed, &R, nodes);
        lj_op *p = lj_op_mul(ctx, l, q);
        *ref = tm_mul(L, R);
        tm_free(&L);
        tm_free(&R);
        lj_op_free(&l);
        lj_op_free(&q);
        return p;
    }
    if (u < 0.2) { /* sum */
        tmat L, R;
        lj_op *l = rand_tree(ctx, r, c, depth - 1, seed, &L, nodes);
        lj_op *q = rand_tree(ctx, r, c, depth - 1, seed, &R, nodes);
        lj_op *p = lj_op_sub(ctx, l, q);
        *ref = tm_add(1, L, -1, R);
        tm_free(&L);
        tm_free(&R);
        lj_op_free(&l);
        lj_op_free(&q);
        return p;
    }
    if (u < 0.5) { /* transpose */
        tmat L;
        lj_op *l = rand_tree(ctx, c, r, depth - 1, seed, &L, nodes);
        lj_op *p = lj_op_transpose(ctx, l);
        *ref = tm_transpose(L);
        tm_free(&L);
        lj_op_free(&l);
        return p;
    }
    /* Kronecker product when the shape factors, else a scaled node */
    int64_t r1 = r % 2 == 0 ? 2 : 1, c1 = c % 3 == 0 ? 3 : 1;
    if (r1 * c1 > 1) {
        tmat L, R;
        lj_op *l = rand_tree(ctx, r1, c1, depth - 1, seed, &L, nodes);
        lj_op *q = rand_tree(ctx, r / r1, c / c1, depth - 1, seed, &R, nodes);
        lj_op *p = lj_op_kron(ctx, l, q);
        *ref = tm_kron(L, R);
        tm_free(&L);
        tm_free(&R);
        lj_op_free(&l);
        lj_op_free(&q);
        return p;
    }
    tmat L;
    lj_op *l = rand_tree(ctx, r, c, depth - 1, seed, &L, nodes);
    lj_op *p = lj_op_scale(ctx, -1.5, l);
    *ref = tm_add(-1.5, L, 0, L);
    tm_free(&L);
    lj_op_free(&l);
    return p;
}

START_TEST(test_random_compositions)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 1234 + (uint64_t)_i;
    const int64_t dims[] = { 1, 2, 3, 4, 6 };
    for (int t = 0; t < 25; t++) {
        int64_t r = dims[(int)((urand(&seed) + 1) * 2.49)], c = dims[(int)((urand(&seed) + 1) * 2.49)];
        tmat R;
        int nodes = 0;
        lj_op *J = rand_tree(ctx, r, c, 4, &seed, &R, &nodes);
        CK_NN(ctx, J);
        char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
        check_op_against(ctx, J, R, 1e-12, s);
        double rel;
        CK_OK(ctx, lj_op_check(ctx, J, 3, &rel));
        ck_assert_msg(rel < 1e-12, "%s: check %g", s, rel);
        char *tree = lj_op_tree(ctx, J);
        CK_NN(ctx, tree);
        lj_free(tree);
        lj_free(s);
        lj_op_free(&J);
        tm_free(&R);
    }
    lj_context_free(&ctx);
}
END_TEST

/* ---- rewriting rules --------------------------------------------------------------- */

START_TEST(test_rules_identity_zero_scalars)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 2;
    tmat A = tm_rand(3, 4, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *I3 = lj_op_identity(ctx, 3), *I4 = lj_op_identity(ctx, 4);
    const lj_op *iai[3] = { I3, a, I4 };
    lj_op *p = lj_op_compose(ctx, 3, iai);
    ck_assert(lj_op_equal(p, a)); /* I·A·I = A */
    lj_op *z = lj_op_zero(ctx, 4, 2);
    const lj_op *az[2] = { a, z };
    lj_op *pz = lj_op_compose(ctx, 2, az);
    ck_assert_int_eq(lj_op_kind_of(pz), LJ_OP_ZERO);
    ck_assert_int_eq(lj_op_rows(pz), 3);
    ck_assert_int_eq(lj_op_cols(pz), 2);
    lj_op *s1 = lj_op_scale(ctx, 2.0, a), *s2 = lj_op_scale(ctx, -3.0, s1);
    ck_assert_int_eq(lj_op_kind_of(s2), LJ_OP_SCALED);
    ck_assert(lj_op_child(s2, 0) == a);
    ASSERT_PRINTS(ctx, s2, "−6·A");
    tmat R = tm_add(-6, A, 0, A);
    check_op_against(ctx, s2, R, 1e-14, "-6A");
    lj_op *t1 = lj_op_transpose(ctx, a), *t2 = lj_op_transpose(ctx, t1);
    ck_assert(t2 == a); /* (A^T)^T = A */
    lj_op *s0 = lj_op_scale(ctx, 0.0, a);
    ck_assert_int_eq(lj_op_kind_of(s0), LJ_OP_ZERO);
    /* a negative number times a sum of negative terms: the terms' signs
     * change, −(−A − 2·B) = A + 2·B; with a positive term it stays */
    tmat Bm = tm_rand(3, 4, &seed);
    lj_op *bb = dense_of(ctx, Bm, "B");
    const lj_op *ab[2] = { a, bb };
    double neg[2] = { -1, -2 }, mixed[2] = { 1, -2 };
    lj_op *nsum = lj_op_lincomb(ctx, 2, neg, ab), *msum = lj_op_lincomb(ctx, 2, mixed, ab);
    lj_op *pos = lj_op_scale(ctx, -1.0, nsum), *kept = lj_op_scale(ctx, -1.0, msum);
    ASSERT_PRINTS(ctx, pos, "A + 2·B");
    ASSERT_PRINTS(ctx, kept, "−(A − 2·B)");
    tmat RP = tm_add(1, A, 2, Bm), RK = tm_add(-1, A, 2, Bm);
    check_op_against(ctx, pos, RP, 1e-14, "-(-A - 2B)");
    check_op_against(ctx, kept, RK, 1e-14, "-(A - 2B)");
    lj_op *all[] = { a, I3, I4, p, z, pz, s1, s2, t1, t2, s0, bb, nsum, msum, pos, kept };
    tm_free(&Bm);
    tm_free(&RP);
    tm_free(&RK);
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rules_transpose_leaves)
{
    lj_context *ctx = lj_context_new();
    double d[3] = { 1, 2, 3 };
    lj_op *D = lj_op_diag(ctx, 3, d, "d"), *K = lj_op_commutation(ctx, 2, 3), *I = lj_op_identity(ctx, 4);
    lj_op *Dt = lj_op_transpose(ctx, D), *Kt = lj_op_transpose(ctx, K), *It = lj_op_transpose(ctx, I);
    ck_assert(Dt == D);
    ck_assert(It == I);
    ASSERT_PRINTS(ctx, Kt, "K_{3,2}");
    const lj_op *kk[2] = { Kt, K };
    lj_op *KK = lj_op_compose(ctx, 2, kk); /* K_{3,2} K_{2,3} = I */
    ck_assert_int_eq(lj_op_kind_of(KK), LJ_OP_IDENTITY);
    ck_assert_int_eq(lj_op_rows(KK), 6);
    double e[3] = { 2, 0.5, -1 }, ones[3] = { 1, 1, 1 };
    lj_op *E = lj_op_diag(ctx, 3, e, "e");
    const lj_op *de[2] = { D, E };
    lj_op *DE = lj_op_compose(ctx, 2, de);
    ck_assert_int_eq(lj_op_kind_of(DE), LJ_OP_DIAG);
    ASSERT_PRINTS(ctx, DE, "Diag(d ∘ e)");
    tmat R = tm_new(3, 3);
    for (int i = 0; i < 3; i++) R.a[i + 3 * i] = d[i] * e[i];
    check_op_against(ctx, DE, R, 1e-15, "Diag·Diag");
    lj_op *O = lj_op_diag(ctx, 3, ones, "1");
    ck_assert_int_eq(lj_op_kind_of(O), LJ_OP_IDENTITY); /* Diag(1,…,1) = I */
    lj_op *all[] = { D, K, I, Dt, Kt, It, KK, E, DE, O };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

/* A transposed value prints as the value of its transposed label: x^T
 * of a block labelled x^T is x, (x^T·A)^T is A^T·x, (X^{-1})^T is X^{-T},
 * and in a sum after a minus sign as the value would (− A^T·x). Each
 * against the dense reference (apply, transpose-apply, materialised). */
START_TEST(test_rules_transpose_vectors)
{
    lj_context *ctx = lj_context_new();
    double x[4] = { 1, -2, 0.5, 3 };
    lj_op *R = lj_op_dense(ctx, 1, 4, x, 1, "x^T"), *Rt = lj_op_transpose(ctx, R);
    ck_assert_int_eq(lj_op_kind_of(Rt), LJ_OP_TRANSPOSE);
    ASSERT_PRINTS(ctx, Rt, "x");
    tmat C = tm_new(4, 1);
    memcpy(C.a, x, sizeof x);
    check_op_against(ctx, Rt, C, 1e-15, "(x^T)^T");
    lj_op *P = lj_op_dense(ctx, 1, 4, x, 1, "(x^T·A)"), *Pt = lj_op_transpose(ctx, P);
    ASSERT_PRINTS(ctx, Pt, "A^T·x");
    lj_op *Q = lj_op_dense(ctx, 4, 1, x, 4, "q");
    const lj_op *pq[2] = { Pt, Q };
    double c[2] = { -1, 1 };
    lj_op *S = lj_op_lincomb(ctx, 2, c, pq);
    ASSERT_PRINTS(ctx, S, "−A^T·x + q");
    double m[4] = { 2, 1, 0, 3 };
    lj_op *M = lj_op_dense(ctx, 2, 2, m, 2, "X^{-1}"), *Mt = lj_op_transpose(ctx, M);
    ASSERT_PRINTS(ctx, Mt, "X^{-T}");
    tmat MT = tm_new(2, 2);
    MT.a[0] = 2, MT.a[1] = 0, MT.a[2] = 1, MT.a[3] = 3;
    check_op_against(ctx, Mt, MT, 1e-15, "(X^{-1})^T");
    lj_op *all[] = { R, Rt, P, Pt, Q, S, M, Mt };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&C);
    tm_free(&MT);
    lj_context_free(&ctx);
}
END_TEST

/* K·(t_1 + t_2) = K·t_1 + K·t_2 where every term absorbs the commutation
 * (begins with its inverse, or with a Diag and then its inverse), and
 * (t_1 + t_2)·K alike at the right; a sum with a term that would keep a
 * commutation stays as it is. Each checked three ways against the dense
 * product. */
START_TEST(test_rules_commutation_sum)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 23;
    tmat M = tm_rand(3, 2, &seed), W = tm_rand(6, 6, &seed);
    lj_op *D = lj_op_diag(ctx, 6, M.a, "vec M"), *w = dense_of(ctx, W, "W");
    lj_op *K32 = lj_op_commutation(ctx, 3, 2), *K23 = lj_op_commutation(ctx, 2, 3);
    tmat Dr = tm_new(6, 6), K32r = tm_commutation(3, 2), K23r = tm_commutation(2, 3);
    for (int i = 0; i < 6; i++) Dr.a[i + 6 * i] = M.a[i];
    /* the left: K_{3,2}·(Diag(vec M)·K_{2,3} + K_{2,3}·W) */
    const lj_op *f1[2] = { D, K23 }, *f2[2] = { K23, w };
    lj_op *t1 = lj_op_compose(ctx, 2, f1), *t2 = lj_op_compose(ctx, 2, f2), *S = lj_op_add(ctx, t1, t2);
    lj_op *L = lj_op_mul(ctx, K32, S);
    CK_NN(ctx, L);
    ASSERT_PRINTS(ctx, L, "Diag(vec(M^T)) + W");
    tmat T1 = tm_mul(Dr, K23r), T2 = tm_mul(K23r, W), Sr = tm_add(1.0, T1, 1.0, T2), Lr = tm_mul(K32r, Sr);
    check_op_against(ctx, L, Lr, 1e-15, "K·(Diag·K + K·W)");
    /* the right: (W·K_{3,2} + K_{3,2}·Diag(vec M))·K_{2,3} */
    const lj_op *f3[2] = { w, K32 }, *f4[2] = { K32, D };
    lj_op *t3 = lj_op_compose(ctx, 2, f3), *t4 = lj_op_compose(ctx, 2, f4), *S2 = lj_op_lincomb(ctx, 2, (double[]){ 2.0, -1.0 }, (const lj_op *const[]){ t3, t4 });
    lj_op *R = lj_op_mul(ctx, S2, K23);
    CK_NN(ctx, R);
    ASSERT_PRINTS(ctx, R, "2·W − Diag(vec(M^T))");
    tmat T3 = tm_mul(W, K32r), T4 = tm_mul(K32r, Dr), S2r = tm_add(2.0, T3, -1.0, T4), Rr = tm_mul(S2r, K23r);
    check_op_against(ctx, R, Rr, 1e-15, "(W·K + K·Diag)·K");
    /* one term that keeps its commutation: it keeps it alone */
    lj_op *S3 = lj_op_add(ctx, t1, w), *N = lj_op_mul(ctx, K32, S3);
    CK_NN(ctx, N);
    ASSERT_PRINTS(ctx, N, "Diag(vec(M^T)) + K_{3,2}·W");
    tmat S3r = tm_add(1.0, T1, 1.0, W), Nr = tm_mul(K32r, S3r);
    check_op_against(ctx, N, Nr, 1e-15, "K·(Diag·K + W)");
    /* two such terms: nothing distributed */
    tmat V = tm_rand(6, 6, &seed);
    lj_op *v = dense_of(ctx, V, "V"), *S4 = lj_op_lincomb(ctx, 3, NULL, (const lj_op *const[]){ t1, w, v });
    lj_op *N2 = lj_op_mul(ctx, K32, S4);
    CK_NN(ctx, N2);
    ASSERT_PRINTS(ctx, N2, "K_{3,2}·(Diag(vec M)·K_{2,3} + W + V)");
    tmat S4r = tm_add(1.0, S3r, 1.0, V), N2r = tm_mul(K32r, S4r);
    check_op_against(ctx, N2, N2r, 1e-15, "K·(Diag·K + W + V)");
    lj_op *all[] = { D, w, K32, K23, t1, t2, S, L, t3, t4, S2, R, S3, N, v, S4, N2 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ms[] = { M, W, Dr, K32r, K23r, T1, T2, Sr, Lr, T3, T4, S2r, Rr, S3r, Nr, V, S4r, N2r };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

/* K·Diag(vec M)·(P ⊗ Q)·K' = Diag(vec M^T)·(Q ⊗ P), and K'·(P ⊗ Q)·Diag(vec
 * M)·K = (Q ⊗ P)·Diag(vec M^T): the commutation passes the Diag to meet
 * the other one; and it passes a Kronecker product into a sum whose terms
 * begin with the other. Each checked three ways against the dense
 * product. */
START_TEST(test_rules_commutation_past_diag)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 29;
    tmat M = tm_rand(3, 2, &seed), P = tm_rand(2, 2, &seed), Q = tm_rand(3, 3, &seed);
    lj_op *D = lj_op_diag(ctx, 6, M.a, "vec M"), *p = dense_of(ctx, P, "P"), *q = dense_of(ctx, Q, "Q");
    lj_op *K32 = lj_op_commutation(ctx, 3, 2), *K23 = lj_op_commutation(ctx, 2, 3), *PQ = lj_op_kron(ctx, p, q);
    tmat Dr = tm_new(6, 6), K32r = tm_commutation(3, 2), K23r = tm_commutation(2, 3), PQr = tm_kron(P, Q);
    for (int i = 0; i < 6; i++) Dr.a[i + 6 * i] = M.a[i];
    lj_op *L = lj_op_compose(ctx, 4, (const lj_op *const[]){ K32, D, PQ, K23 });
    CK_NN(ctx, L);
    ASSERT_PRINTS(ctx, L, "Diag(vec(M^T))·(Q ⊗ P)");
    tmat L1 = tm_mul(K32r, Dr), L2 = tm_mul(L1, PQr), Lr = tm_mul(L2, K23r);
    check_op_against(ctx, L, Lr, 1e-14, "K·Diag·(P ⊗ Q)·K");
    lj_op *R = lj_op_compose(ctx, 4, (const lj_op *const[]){ K32, PQ, D, K23 });
    CK_NN(ctx, R);
    ASSERT_PRINTS(ctx, R, "(Q ⊗ P)·Diag(vec(M^T))");
    tmat R1 = tm_mul(K32r, PQr), R2 = tm_mul(R1, Dr), Rr = tm_mul(R2, K23r);
    check_op_against(ctx, R, Rr, 1e-14, "K·(P ⊗ Q)·Diag·K");
    /* a Diag whose label is not of vec M: the commutations stay */
    lj_op *E = lj_op_diag(ctx, 6, M.a, "e"), *N = lj_op_compose(ctx, 4, (const lj_op *const[]){ K32, E, PQ, K23 });
    CK_NN(ctx, N);
    ASSERT_PRINTS(ctx, N, "K_{3,2}·Diag(e)·(P ⊗ Q)·K_{2,3}");
    check_op_against(ctx, N, Lr, 1e-14, "K·Diag(e)·(P ⊗ Q)·K");
    /* past a Kronecker product into a sum: K·(P ⊗ Q)·(K' + V) = (Q ⊗ P) +
     * K·(P ⊗ Q)·V, and (W·K + V)·(P ⊗ Q)·K' = W·(Q ⊗ P) + V·(P ⊗ Q)·K' */
    tmat V = tm_rand(6, 6, &seed), W = tm_rand(6, 6, &seed);
    lj_op *v = dense_of(ctx, V, "V"), *w = dense_of(ctx, W, "W");
    lj_op *S1 = lj_op_add(ctx, K23, v), *SL = lj_op_compose(ctx, 3, (const lj_op *const[]){ K32, PQ, S1 });
    CK_NN(ctx, SL);
    ASSERT_PRINTS(ctx, SL, "(Q ⊗ P) + K_{3,2}·(P ⊗ Q)·V");
    tmat S1r = tm_add(1.0, K23r, 1.0, V), SL1 = tm_mul(R1, S1r);
    check_op_against(ctx, SL, SL1, 1e-14, "K·(P ⊗ Q)·(K + V)");
    lj_op *WK = lj_op_mul(ctx, w, K32), *S2 = lj_op_add(ctx, WK, v);
    lj_op *SR = lj_op_compose(ctx, 3, (const lj_op *const[]){ S2, PQ, K23 });
    CK_NN(ctx, SR);
    ASSERT_PRINTS(ctx, SR, "W·(Q ⊗ P) + V·(P ⊗ Q)·K_{2,3}");
    tmat WKr = tm_mul(W, K32r), S2r = tm_add(1.0, WKr, 1.0, V), SR1 = tm_mul(S2r, PQr), SR2 = tm_mul(SR1, K23r);
    check_op_against(ctx, SR, SR2, 1e-14, "(W·K + V)·(P ⊗ Q)·K");
    lj_op *all[] = { D, p, q, K32, K23, PQ, L, R, E, N, v, w, S1, SL, WK, S2, SR };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ms[] = { M, P, Q, Dr, K32r, K23r, PQr, L1, L2, Lr, R1, R2, Rr, V, W, S1r, SL1, WKr, S2r, SR1, SR2 };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rules_kron)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 9;
    /* (A⊗B)(C⊗D) = (AC)⊗(BD), four different non-square sizes */
    tmat A = tm_rand(2, 3, &seed), B = tm_rand(4, 5, &seed), C = tm_rand(3, 6, &seed), D = tm_rand(5, 7, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C"), *d = dense_of(ctx, D, "D");
    lj_op *ab = lj_op_kron(ctx, a, b), *cd = lj_op_kron(ctx, c, d);
    lj_op *p = lj_op_mul(ctx, ab, cd);
    ck_assert_int_eq(lj_op_kind_of(p), LJ_OP_KRON);
    ASSERT_PRINTS(ctx, p, "(A·C) ⊗ (B·D)");
    tmat AB = tm_kron(A, B), CD = tm_kron(C, D), R = tm_mul(AB, CD);
    check_op_against(ctx, p, R, 1e-12, "mixed product");
    /* I_m ⊗ I_n = I_mn */
    lj_op *I2 = lj_op_identity(ctx, 2), *I3 = lj_op_identity(ctx, 3);
    lj_op *I6 = lj_op_kron(ctx, I2, I3);
    ck_assert_int_eq(lj_op_kind_of(I6), LJ_OP_IDENTITY);
    ck_assert_int_eq(lj_op_rows(I6), 6);
    /* (αA) ⊗ B = α(A ⊗ B) */
    lj_op *sa = lj_op_scale(ctx, 3.0, a), *sab = lj_op_kron(ctx, sa, b);
    ck_assert_int_eq(lj_op_kind_of(sab), LJ_OP_SCALED);
    ASSERT_PRINTS(ctx, sab, "3·(A ⊗ B)");
    /* (W^T ⊗ I)(I ⊗ A) = W^T ⊗ A, the seed 003 form */
    tmat W = tm_rand(3, 2, &seed), Aq = tm_rand(5, 5, &seed);
    lj_op *w = dense_of(ctx, W, "W"), *aq = dense_of(ctx, Aq, "A");
    lj_op *wt = lj_op_transpose(ctx, w), *I5 = lj_op_identity(ctx, 5);
    lj_op *l = lj_op_kron(ctx, wt, I5), *r = lj_op_kron(ctx, I3, aq);
    lj_op *lr = lj_op_mul(ctx, l, r);
    ASSERT_PRINTS(ctx, lr, "W^T ⊗ A");
    /* K_{p,m}(A⊗B)K_{n,q} = B⊗A for A m×n, B p×q */
    lj_op *Kpm = lj_op_commutation(ctx, 4, 2), *Knq = lj_op_commutation(ctx, 3, 5);
    const lj_op *kab[3] = { Kpm, ab, Knq };
    lj_op *swap = lj_op_compose(ctx, 3, kab);
    ASSERT_PRINTS(ctx, swap, "B ⊗ A");
    tmat Kr1 = tm_commutation(4, 2), Kr2 = tm_commutation(3, 5), T1 = tm_mul(Kr1, AB), T2 = tm_mul(T1, Kr2);
    check_op_against(ctx, swap, T2, 1e-12, "K(A⊗B)K");
    /* ... and with one commutation I, since A or B is a vector: (u^T ⊗ B)·K_{3,5}
     * = B ⊗ u^T (K_{4,1} = I), K_{4,2}·(v ⊗ B) = B ⊗ v (K_{1,5} = I); not
     * where neither is a vector, (A ⊗ B)·K_{3,5} */
    tmat U = tm_rand(3, 1, &seed), Vv = tm_rand(2, 1, &seed);
    lj_op *u = dense_of(ctx, U, "u"), *v = dense_of(ctx, Vv, "v"), *ut = lj_op_transpose(ctx, u);
    lj_op *utb = lj_op_kron(ctx, ut, b), *vb = lj_op_kron(ctx, v, b);
    lj_op *sw1 = lj_op_mul(ctx, utb, Knq), *sw2 = lj_op_mul(ctx, Kpm, vb), *kept = lj_op_mul(ctx, ab, Knq);
    ASSERT_PRINTS(ctx, sw1, "B ⊗ u^T");
    ASSERT_PRINTS(ctx, sw2, "B ⊗ v");
    ck_assert_int_eq(lj_op_kind_of(kept), LJ_OP_COMPOSE);
    ASSERT_PRINTS(ctx, kept, "(A ⊗ B)·K_{3,5}");
    tmat Ut = tm_transpose(U), UtB = tm_kron(Ut, B), VB = tm_kron(Vv, B);
    tmat S1 = tm_mul(UtB, Kr2), S2 = tm_mul(Kr1, VB), S3 = tm_mul(AB, Kr2);
    check_op_against(ctx, sw1, S1, 1e-13, "(u^T ⊗ B)·K");
    check_op_against(ctx, sw2, S2, 1e-13, "K·(v ⊗ B)");
    check_op_against(ctx, kept, S3, 1e-13, "(A ⊗ B)·K");
    lj_op *more[] = { u, v, ut, utb, vb, sw1, sw2, kept };
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) lj_op_free(&more[i]);
    tmat mt[] = { U, Vv, Ut, UtB, VB, S1, S2, S3 };
    for (size_t i = 0; i < sizeof mt / sizeof mt[0]; i++) tm_free(&mt[i]);
    /* (A⊗B)^T = A^T ⊗ B^T */
    lj_op *abt = lj_op_transpose(ctx, ab);
    ASSERT_PRINTS(ctx, abt, "A^T ⊗ B^T");
    lj_op *all[] = { a, b, c, d, ab, cd, p, I2, I3, I6, sa, sab, w, aq, wt, I5, l, r, lr, Kpm, Knq, swap, abt };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, D, AB, CD, R, W, Aq, Kr1, Kr2, T1, T2 };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

/* A Kronecker product multiplies into a sum whose terms are all
 * Kronecker products it folds with (or one and a commutation after it):
 * (A⊗B)·((C⊗D) + (E⊗F)·K) = (A·C ⊗ B·D) + (A·E ⊗ B·F)·K; a term that
 * does not fold leaves the sum alone, from either side. And a commutation between two
 * Kronecker products passes the second, which folds into the first:
 * (A⊗B)·K_{p,m}·(C⊗D) = (A·D ⊗ B·C)·K_{q,n}. Non-square factors of
 * different sizes; each checked three ways against the dense product. */
START_TEST(test_rules_kron_into_sum)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 31;
    /* A 2×3, B 4×5 on the left; C 3×2, D 5×3, E 3×3, F 5×2 on the right */
    tmat A = tm_rand(2, 3, &seed), B = tm_rand(4, 5, &seed), C = tm_rand(3, 2, &seed), D = tm_rand(5, 3, &seed);
    tmat E = tm_rand(3, 3, &seed), F = tm_rand(5, 2, &seed), G = tm_rand(15, 6, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C"), *d = dense_of(ctx, D, "D");
    lj_op *e = dense_of(ctx, E, "E"), *f = dense_of(ctx, F, "F"), *g = dense_of(ctx, G, "G");
    lj_op *ab = lj_op_kron(ctx, a, b), *cd = lj_op_kron(ctx, c, d), *ef = lj_op_kron(ctx, e, f);
    lj_op *K = lj_op_commutation(ctx, 3, 2), *efK = lj_op_mul(ctx, ef, K); /* (E⊗F)·K_{3,2}: 15×6 */
    lj_op *S = lj_op_lincomb(ctx, 2, (double[]){ 2.0, -1.0 }, (const lj_op *const[]){ cd, efK });
    lj_op *L = lj_op_mul(ctx, ab, S);
    CK_NN(ctx, L);
    ASSERT_PRINTS(ctx, L, "2·((A·C) ⊗ (B·D)) − ((A·E) ⊗ (B·F))·K_{3,2}");
    tmat ABr = tm_kron(A, B), CDr = tm_kron(C, D), EFr = tm_kron(E, F), Kr = tm_commutation(3, 2);
    tmat EFK = tm_mul(EFr, Kr), Sr = tm_add(2.0, CDr, -1.0, EFK), Lr = tm_mul(ABr, Sr);
    check_op_against(ctx, L, Lr, 1e-12, "(A⊗B)·(2(C⊗D) − (E⊗F)K)");
    /* from the right, a term that does not fold: ((A⊗B) + H)·(C⊗D) stays */
    tmat H = tm_rand(8, 15, &seed);
    lj_op *h = dense_of(ctx, H, "H"), *S2 = lj_op_add(ctx, ab, h), *R = lj_op_mul(ctx, S2, cd);
    CK_NN(ctx, R);
    ASSERT_PRINTS(ctx, R, "((A ⊗ B) + H)·(C ⊗ D)");
    tmat S2r = tm_add(1.0, ABr, 1.0, H), Rr = tm_mul(S2r, CDr);
    check_op_against(ctx, R, Rr, 1e-12, "((A⊗B) + H)·(C⊗D)");
    /* two terms that do not fold: nothing distributed */
    tmat G2 = tm_rand(15, 6, &seed);
    lj_op *g2 = dense_of(ctx, G2, "G2"), *S4 = lj_op_lincomb(ctx, 3, NULL, (const lj_op *const[]){ cd, g, g2 });
    lj_op *N = lj_op_mul(ctx, ab, S4);
    CK_NN(ctx, N);
    ASSERT_PRINTS(ctx, N, "(A ⊗ B)·((C ⊗ D) + G + G2)");
    tmat S4a = tm_add(1.0, CDr, 1.0, G), S4r = tm_add(1.0, S4a, 1.0, G2), Nr = tm_mul(ABr, S4r);
    check_op_against(ctx, N, Nr, 1e-12, "(A⊗B)·((C⊗D) + G + G2)");
    /* (A⊗B)·K_{3,5}·(Y⊗P), Y 5×2, P 3×5: (A·P ⊗ B·Y)·K_{5,2} */
    tmat P = tm_rand(3, 5, &seed), Y = tm_rand(5, 2, &seed);
    lj_op *pq = dense_of(ctx, P, "P"), *y = dense_of(ctx, Y, "Y");
    lj_op *yp = lj_op_kron(ctx, y, pq), *K35 = lj_op_commutation(ctx, 3, 5);
    lj_op *T = lj_op_compose(ctx, 3, (const lj_op *const[]){ ab, K35, yp });
    CK_NN(ctx, T);
    ASSERT_PRINTS(ctx, T, "((A·P) ⊗ (B·Y))·K_{5,2}");
    tmat YP = tm_kron(Y, P), K35r = tm_commutation(3, 5), T1 = tm_mul(ABr, K35r), Tr = tm_mul(T1, YP);
    check_op_against(ctx, T, Tr, 1e-12, "(A⊗B)·K·(Y⊗P)");
    lj_op *all[] = { a, b, c, d, e, f, g, ab, cd, ef, K, efK, S, L, h, S2, R, g2, S4, N, pq, y, yp, K35, T };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ms[] = { A, B, C, D, E, F, G, ABr, CDr, EFr, Kr, EFK, Sr, Lr, H, S2r, Rr, G2, S4a, S4r, Nr, P, Y, YP, K35r, T1, Tr };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

/* Terms that end in one shared node R, which branches, are one product:
 * c_1·L_1·R + c_2·L_2·R = (c_1·L_1 + c_2·L_2)·R, a term R alone as I·R,
 * the longest suffix the group shares taken out, other terms kept. A
 * shared commutation, or two equal nodes that are not one, stay apart.
 * Each checked three ways against the dense sum; then every allocation
 * of the factoring failed in turn. */
START_TEST(test_rules_shared_right_factor)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 41;
    tmat A = tm_rand(4, 4, &seed), B = tm_rand(4, 4, &seed), C = tm_rand(4, 5, &seed), P = tm_rand(4, 5, &seed);
    tmat Q = tm_rand(4, 5, &seed), E = tm_rand(4, 5, &seed), Dv = tm_rand(4, 1, &seed), Dr = tm_new(4, 4);
    for (int i = 0; i < 4; i++) Dr.a[i + 4 * i] = Dv.a[i] + 1.0;
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C");
    lj_op *p = dense_of(ctx, P, "P"), *q = dense_of(ctx, Q, "Q"), *e = dense_of(ctx, E, "E");
    double dg[4];
    for (int i = 0; i < 4; i++) dg[i] = Dr.a[i + 4 * i];
    lj_op *d = lj_op_diag(ctx, 4, dg, "d");
    lj_op *R = lj_op_add(ctx, p, q), *R2 = lj_op_add(ctx, p, q); /* R2 equal to R, another node */
    tmat Rr = tm_add(1.0, P, 1.0, Q), AR = tm_mul(A, Rr), BR = tm_mul(B, Rr);
    lj_op *aR = lj_op_mul(ctx, a, R), *bR = lj_op_mul(ctx, b, R);
    lj_op *S1 = lj_op_lincomb(ctx, 2, (double[]){ 2.0, -3.0 }, (const lj_op *const[]){ aR, bR });
    CK_NN(ctx, S1);
    ASSERT_PRINTS(ctx, S1, "(2·A − 3·B)·(P + Q)");
    ck_assert_str_eq(lj_op_kind_name(S1), "compose");
    tmat S1r = tm_add(2.0, AR, -3.0, BR);
    check_op_against(ctx, S1, S1r, 1e-12, "2·A·R − 3·B·R");
    /* R itself a term: (A + I)·R */
    lj_op *S2 = lj_op_add(ctx, aR, R);
    CK_NN(ctx, S2);
    ASSERT_PRINTS(ctx, S2, "(A + I_4)·(P + Q)");
    tmat S2r = tm_add(1.0, AR, 1.0, Rr);
    check_op_against(ctx, S2, S2r, 1e-12, "A·R + R");
    /* the longest suffix shared, d·R, and a third term kept: (A + B)·d·R + E */
    lj_op *adR = lj_op_compose(ctx, 3, (const lj_op *const[]){ a, d, R });
    lj_op *bdR = lj_op_compose(ctx, 3, (const lj_op *const[]){ b, d, R });
    lj_op *S3 = lj_op_lincomb(ctx, 3, NULL, (const lj_op *const[]){ adR, e, bdR });
    CK_NN(ctx, S3);
    ASSERT_PRINTS(ctx, S3, "(A + B)·Diag(d)·(P + Q) + E");
    tmat DR = tm_mul(Dr, Rr), ADR = tm_mul(A, DR), BDR = tm_mul(B, DR), S3a = tm_add(1.0, ADR, 1.0, E);
    tmat S3r = tm_add(1.0, S3a, 1.0, BDR);
    check_op_against(ctx, S3, S3r, 1e-12, "A·d·R + E + B·d·R");
    /* a group whose suffixes differ in length: A·d·R + B·R is (A·d + B)·R */
    lj_op *S4 = lj_op_add(ctx, adR, bR);
    CK_NN(ctx, S4);
    ASSERT_PRINTS(ctx, S4, "(A·Diag(d) + B)·(P + Q)");
    tmat S4r = tm_add(1.0, ADR, 1.0, BR);
    check_op_against(ctx, S4, S4r, 1e-12, "A·d·R + B·R");
    /* equal numbers in two nodes: not one factor (a plan's structure must
     * not depend on numbers) */
    lj_op *bR2 = lj_op_mul(ctx, b, R2), *S5 = lj_op_add(ctx, aR, bR2);
    CK_NN(ctx, S5);
    ASSERT_PRINTS(ctx, S5, "A·(P + Q) + B·(P + Q)");
    tmat S5r = tm_add(1.0, AR, 1.0, BR);
    check_op_against(ctx, S5, S5r, 1e-12, "A·R + B·R'");
    /* a shared commutation: the terms keep it, for the rules that carry
     * commutations through sums */
    tmat F = tm_rand(6, 6, &seed), G = tm_rand(6, 6, &seed), Kr = tm_commutation(2, 3);
    lj_op *f = dense_of(ctx, F, "F"), *g = dense_of(ctx, G, "G"), *K = lj_op_commutation(ctx, 2, 3);
    lj_op *fK = lj_op_mul(ctx, f, K), *gK = lj_op_mul(ctx, g, K), *S6 = lj_op_add(ctx, fK, gK);
    CK_NN(ctx, S6);
    ASSERT_PRINTS(ctx, S6, "F·K_{2,3} + G·K_{2,3}");
    tmat FK = tm_mul(F, Kr), GK = tm_mul(G, Kr), S6r = tm_add(1.0, FK, 1.0, GK);
    check_op_against(ctx, S6, S6r, 1e-14, "F·K + G·K");
    /* out of memory at each allocation of the factoring: a clear status,
     * nothing leaked, and then the same product */
    int ok_at = 0;
    for (int n = 1; n < 200 && !ok_at; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *r = lj_op_lincomb(ctx, 3, NULL, (const lj_op *const[]){ adR, e, bR });
        lj_context_fail_alloc(ctx, 0, 0);
        if (!r) {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: status %d (%s)", n,
                          (int)lj_context_status(ctx), lj_context_message(ctx));
            lj_context_clear(ctx);
            continue;
        }
        ASSERT_PRINTS(ctx, r, "(A·Diag(d) + B)·(P + Q) + E");
        ok_at = n;
        lj_op_free(&r);
    }
    ck_assert_int_gt(ok_at, 3);
    lj_op *all[] = { a, b, c, p, q, e, d, R, R2, aR, bR, S1, S2, adR, bdR, S3, S4, bR2, S5, f, g, K, fK, gK, S6 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ms[] = { A, B, C, P, Q, E, Dv, Dr, Rr, AR, BR, S1r, S2r, DR, ADR, BDR, S3a, S3r, S4r, S5r, F, G, Kr, FK, GK, S6r };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

/* A row (column) of ones does not see a commutation: 1^T·K = 1^T, K·1 =
 * 1, and a Diag between passes it transposed: 1^T·Diag(vec M)·K_{m,n} =
 * 1^T·Diag(vec M^T), K_{m,n}·Diag(vec M)·1 = Diag(vec M^T)·1. A Diag
 * whose label is not a vec keeps the commutation. Each checked three ways
 * against the dense product. */
START_TEST(test_rules_ones_past_commutation)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 37;
    tmat M = tm_rand(3, 2, &seed), One = tm_new(6, 1), Kr = tm_commutation(3, 2), Dr = tm_new(6, 6);
    for (int i = 0; i < 6; i++) One.a[i] = 1.0, Dr.a[i + 6 * i] = M.a[i];
    lj_op *one = dense_of(ctx, One, "1_6"), *onet = lj_op_transpose(ctx, one), *K = lj_op_commutation(ctx, 3, 2);
    lj_op *D = lj_op_diag(ctx, 6, M.a, "vec M"), *E = lj_op_diag(ctx, 6, M.a, "e");
    tmat Ot = tm_transpose(One), OK = tm_mul(Ot, Kr), KO = tm_mul(Kr, One);
    lj_op *r1 = lj_op_mul(ctx, onet, K), *c1 = lj_op_mul(ctx, K, one);
    CK_NN(ctx, r1);
    CK_NN(ctx, c1);
    ASSERT_PRINTS(ctx, r1, "1_6^T");
    ASSERT_PRINTS(ctx, c1, "1_6");
    check_op_against(ctx, r1, OK, 1e-15, "1^T·K");
    check_op_against(ctx, c1, KO, 1e-15, "K·1");
    lj_op *r2 = lj_op_compose(ctx, 3, (const lj_op *const[]){ onet, D, K });
    lj_op *c2 = lj_op_compose(ctx, 3, (const lj_op *const[]){ K, D, one });
    CK_NN(ctx, r2);
    CK_NN(ctx, c2);
    ASSERT_PRINTS(ctx, r2, "(vec(M^T))^T");
    ASSERT_PRINTS(ctx, c2, "Diag(vec(M^T))·1_6");
    tmat OD = tm_mul(Ot, Dr), ODK = tm_mul(OD, Kr), KD = tm_mul(Kr, Dr), KDO = tm_mul(KD, One);
    check_op_against(ctx, r2, ODK, 1e-14, "1^T·Diag·K");
    check_op_against(ctx, c2, KDO, 1e-14, "K·Diag·1");
    lj_op *r3 = lj_op_compose(ctx, 3, (const lj_op *const[]){ onet, E, K });
    CK_NN(ctx, r3);
    ASSERT_PRINTS(ctx, r3, "e^T·K_{3,2}");
    check_op_against(ctx, r3, ODK, 1e-14, "1^T·Diag(e)·K");
    lj_op *all[] = { one, onet, K, D, E, r1, c1, r2, c2, r3 };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ms[] = { M, One, Kr, Dr, Ot, OK, KO, OD, ODK, KD, KDO };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_rules_sums)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 4;
    tmat A = tm_rand(3, 3, &seed), B = tm_rand(3, 3, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B");
    lj_op *ab = lj_op_add(ctx, a, b), *abb = lj_op_add(ctx, ab, b);
    ASSERT_PRINTS(ctx, abb, "A + 2·B"); /* flattened, like terms collected */
    lj_op *z = lj_op_sub(ctx, a, a);
    ck_assert_int_eq(lj_op_kind_of(z), LJ_OP_ZERO);
    lj_op *neg = lj_op_sub(ctx, z, b);
    ASSERT_PRINTS(ctx, neg, "−B");
    tmat R = tm_add(1, A, 2, B);
    check_op_against(ctx, abb, R, 1e-14, "A + 2B");
    lj_op *all[] = { a, b, ab, abb, z, neg };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&B);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

/* Terms that differ only in a Diag at one end are one term: Diag(a)·X −
 * Diag(b)·X = Diag(a − b)·X (X applied and materialised once), at either
 * end, with any coefficients, three terms in turn; terms with other
 * factors stay apart. Values against dense references, every allocation
 * failing in turn. */
static lj_op *prod2(lj_context *ctx, const lj_op *x, const lj_op *y)
{
    lj_op *r = lj_op_mul(ctx, x, y);
    CK_NN(ctx, r);
    return r;
}

START_TEST(test_rules_diag_terms)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 41;
    tmat Xm = tm_rand(5, 3, &seed), Ym = tm_rand(5, 3, &seed), Wm = tm_rand(3, 4, &seed);
    tmat av = tm_rand(5, 1, &seed), bv = tm_rand(5, 1, &seed), ev = tm_rand(5, 1, &seed), kv = tm_rand(5, 1, &seed);
    tmat cv = tm_rand(3, 1, &seed), dv = tm_rand(3, 1, &seed);
    lj_op *X = dense_of(ctx, Xm, "X"), *Y = dense_of(ctx, Ym, "Y"), *W = dense_of(ctx, Wm, "W");
    lj_op *a = lj_op_diag(ctx, 5, av.a, "a"), *b = lj_op_diag(ctx, 5, bv.a, "b"), *e = lj_op_diag(ctx, 5, ev.a, "e");
    lj_op *k = lj_op_diag(ctx, 5, kv.a, "k"), *c = lj_op_diag(ctx, 3, cv.a, "c"), *d = lj_op_diag(ctx, 3, dv.a, "d");
    lj_op *aX = prod2(ctx, a, X), *bX = prod2(ctx, b, X), *eX = prod2(ctx, e, X), *bY = prod2(ctx, b, Y);
    lj_op *aXW = prod2(ctx, aX, W), *bXW = prod2(ctx, bX, W), *Xc = prod2(ctx, X, c), *Xd = prod2(ctx, X, d);
    tmat A = tm_new(5, 5), B = tm_new(5, 5), E = tm_new(5, 5), Kd = tm_new(5, 5), C = tm_new(3, 3), D = tm_new(3, 3);
    memset(A.a, 0, sizeof(double) * 25), memset(B.a, 0, sizeof(double) * 25), memset(E.a, 0, sizeof(double) * 25);
    memset(Kd.a, 0, sizeof(double) * 25), memset(C.a, 0, sizeof(double) * 9), memset(D.a, 0, sizeof(double) * 9);
    for (int i = 0; i < 5; i++) A.a[i * 6] = av.a[i], B.a[i * 6] = bv.a[i], E.a[i * 6] = ev.a[i], Kd.a[i * 6] = kv.a[i];
    for (int i = 0; i < 3; i++) C.a[i * 4] = cv.a[i], D.a[i * 4] = dv.a[i];

    /* a − b at the left end */
    lj_op *s1 = lj_op_sub(ctx, aX, bX);
    CK_NN(ctx, s1);
    ck_assert_int_eq(lj_op_kind_of(s1), LJ_OP_COMPOSE);
    ASSERT_PRINTS(ctx, s1, "Diag(a − b)·X");
    tmat AmB = tm_add(1, A, -1, B), R1 = tm_mul(AmB, Xm);
    check_op_against(ctx, s1, R1, 1e-14, "Diag(a)·X − Diag(b)·X");
    /* coefficients, inside the Diag: 2·Diag(a)·X·W + 3·Diag(b)·X·W =
     * Diag(2·a + 3·b)·X·W, no ratio of them */
    const lj_op *two[2] = { aXW, bXW };
    const double c23[2] = { 2, 3 };
    lj_op *s2 = lj_op_lincomb(ctx, 2, c23, two);
    CK_NN(ctx, s2);
    ASSERT_PRINTS(ctx, s2, "Diag(2·a + 3·b)·X·W");
    tmat A2B3 = tm_add(2, A, 3, B), t2 = tm_mul(A2B3, Xm), R2 = tm_mul(t2, Wm);
    check_op_against(ctx, s2, R2, 1e-13, "2·Diag(a)·X·W + 3·Diag(b)·X·W");
    /* the right end */
    lj_op *s3 = lj_op_add(ctx, Xc, Xd);
    CK_NN(ctx, s3);
    ASSERT_PRINTS(ctx, s3, "X·Diag(c + d)");
    tmat CpD = tm_add(1, C, 1, D), R3 = tm_mul(Xm, CpD);
    check_op_against(ctx, s3, R3, 1e-14, "X·Diag(c) + X·Diag(d)");
    /* three terms, and a sum subtracted: its label in parentheses */
    lj_op *s4 = lj_op_add(ctx, s1, eX);
    CK_NN(ctx, s4);
    ASSERT_PRINTS(ctx, s4, "Diag(a − b + e)·X");
    lj_op *bpe = lj_op_add(ctx, bX, eX), *s5 = bpe ? lj_op_sub(ctx, aX, bpe) : NULL;
    CK_NN(ctx, s5);
    ASSERT_PRINTS(ctx, s5, "Diag(a − (b + e))·X");
    tmat AmBpE = tm_add(1, AmB, -1, E), R5 = tm_mul(AmBpE, Xm);
    check_op_against(ctx, s5, R5, 1e-14, "Diag(a)·X − (Diag(b)·X + Diag(e)·X)");
    /* a Diag times the merged one: Diag(k ∘ (a − b)) */
    lj_op *s6 = prod2(ctx, k, s1);
    ASSERT_PRINTS(ctx, s6, "Diag(k ∘ (a − b))·X");
    tmat KAmB = tm_mul(Kd, AmB), R6 = tm_mul(KAmB, Xm);
    check_op_against(ctx, s6, R6, 1e-14, "Diag(k)·(Diag(a)·X − Diag(b)·X)");
    /* a label's parentheses round a product go, a leading minus sign
     * joins the coefficient, a sum multiplied keeps its parentheses */
    const double c2m3[2] = { 2, -3 };
    lj_op *bx = lj_op_diag(ctx, 5, av.a, "(B·x)"), *mm = lj_op_diag(ctx, 5, bv.a, "−m");
    lj_op *ub = lj_op_diag(ctx, 5, ev.a, "u + b");
    lj_op *bxX = prod2(ctx, bx, X), *mmX = prod2(ctx, mm, X), *ubX = prod2(ctx, ub, X);
    lj_op *s10 = lj_op_add(ctx, bxX, mmX), *s11 = lj_op_lincomb(ctx, 2, c2m3, (const lj_op *[]){ ubX, mmX });
    CK_NN(ctx, s10);
    CK_NN(ctx, s11);
    ASSERT_PRINTS(ctx, s10, "Diag(B·x − m)·X");
    ASSERT_PRINTS(ctx, s11, "Diag(2·(u + b) + 3·m)·X");
    tmat ApB = tm_add(1, A, 1, B), R10 = tm_mul(ApB, Xm), E2B3 = tm_add(2, E, -3, B), R11 = tm_mul(E2B3, Xm);
    check_op_against(ctx, s10, R10, 1e-14, "Diag(B·x)·X + Diag(−m)·X");
    check_op_against(ctx, s11, R11, 1e-14, "2·Diag(u + b)·X − 3·Diag(−m)·X");
    /* two bare Diags stay two terms */
    const lj_op *ab[2] = { a, b };
    lj_op *s9 = lj_op_lincomb(ctx, 2, c2m3, ab);
    CK_NN(ctx, s9);
    ck_assert_int_eq(lj_op_kind_of(s9), LJ_OP_SUM);
    ASSERT_PRINTS(ctx, s9, "2·Diag(a) − 3·Diag(b)");
    lj_op *more[] = { s9, bx, mm, ub, bxX, mmX, ubX, s10, s11 };
    for (int i = 0; i < 9; i++) lj_op_free(&more[i]);
    tmat more_m[] = { ApB, R10, E2B3, R11 };
    for (int i = 0; i < 4; i++) tm_free(&more_m[i]);
    /* other factors: two terms */
    lj_op *s7 = lj_op_add(ctx, aX, bY);
    CK_NN(ctx, s7);
    ck_assert_int_eq(lj_op_kind_of(s7), LJ_OP_SUM);
    ASSERT_PRINTS(ctx, s7, "Diag(a)·X + Diag(b)·Y");
    /* equal terms are like terms first: Diag(a)·X − Diag(a)·X = 0 */
    lj_op *s8 = lj_op_sub(ctx, aX, aX);
    CK_NN(ctx, s8);
    ck_assert_int_eq(lj_op_kind_of(s8), LJ_OP_ZERO);
    int ok_at;
    /* labels beyond LJI_DIAG_LABEL_MAX: their heads and "…" */
    char longl[201];
    memset(longl, 'a', 200);
    longl[200] = '\0';
    lj_op *la = lj_op_diag(ctx, 5, av.a, longl), *lb = lj_op_diag(ctx, 5, bv.a, longl + 100);
    lj_op *laX = prod2(ctx, la, X), *lbX = prod2(ctx, lb, X);
    lj_op *s12 = lj_op_lincomb(ctx, 2, c2m3, (const lj_op *[]){ laX, lbX });
    CK_NN(ctx, s12);
    char *p12 = lj_op_print(ctx, s12, LJ_PRINT_UNICODE);
    ck_assert_ptr_nonnull(p12);
    ck_assert_msg(!strncmp(p12, "Diag(2·(aaaa", strlen("Diag(2·(aaaa")) && strstr(p12, "…) − …)·X"), "%s", p12);
    lj_free(p12);
    tmat A2B3m = tm_add(2, A, -3, B), R12 = tm_mul(A2B3m, Xm);
    check_op_against(ctx, s12, R12, 1e-14, "2·Diag(a…)·X − 3·Diag(a…)·X");
    tm_free(&A2B3m);
    tm_free(&R12);
    lj_op *more2[] = { la, lb, laX, lbX, s12 };
    for (int i = 0; i < 5; i++) lj_op_free(&more2[i]);
    /* every allocation failing in turn, with coefficients of 1 and not:
     * NOMEM and a message, or the merge */
    for (int coefs = 0; coefs < 2; coefs++) {
        ok_at = 0;
        for (int n = 1; n < 200 && !ok_at; n++) {
            lj_context_fail_alloc(ctx, n, 0);
            lj_op *m = coefs ? lj_op_lincomb(ctx, 2, c23, two) : lj_op_sub(ctx, aX, bX);
            if (m) {
                ok_at = n;
                lj_context_fail_alloc(ctx, 0, 0);
                ASSERT_PRINTS(ctx, m, coefs ? "Diag(2·a + 3·b)·X·W" : "Diag(a − b)·X");
            } else {
                ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: %s", n, lj_context_message(ctx));
                ck_assert_msg(lj_context_message(ctx)[0], "n=%d: no message", n);
                lj_context_clear(ctx);
            }
            lj_op_free(&m);
        }
        lj_context_fail_alloc(ctx, 0, 0);
        ck_assert_int_gt(ok_at, 1);
    }
    lj_op *ops[] = { X, Y, W, a, b, e, k, c, d, aX, bX, eX, bY, aXW, bXW, Xc, Xd, s1, s2, s3, s4, bpe, s5, s6, s7, s8 };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) lj_op_free(&ops[i]);
    tmat ms[] = { Xm, Ym, Wm, av, bv, ev, kv, cv, dv, A, B, E, Kd, C, D, AmB, R1, A2B3, t2, R2, CpD, R3, AmBpE, R5, KAmB, R6 };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) tm_free(&ms[i]);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_print_formats)
{
    lj_context *ctx = lj_context_new();
    double w[6] = { 1, 2, 3, 4, 5, 6 }, b[15];
    for (int i = 0; i < 15; i++) b[i] = i + 2;
    lj_op *W = lj_op_dense(ctx, 3, 2, w, 3, "W"), *I5 = lj_op_identity(ctx, 5);
    lj_op *k = lj_op_kron(ctx, I5, W);
    lj_op *D = lj_op_diag(ctx, 10, b, "vec B");
    lj_op *J = lj_op_mul(ctx, k, D);
    ASSERT_PRINTS(ctx, J, "(I_5 ⊗ W)·Diag(vec B)");
    char *plain = lj_op_print(ctx, J, LJ_PRINT_PLAIN), *latex = lj_op_print(ctx, J, LJ_PRINT_LATEX);
    ck_assert_str_eq(plain, "(I_5 kron W)*Diag(vec B)");
    ck_assert_str_eq(latex, "(I_{5} \\otimes W) \\cdot \\operatorname{Diag}(\\operatorname{vec} B)");
    char *tree = lj_op_tree(ctx, J), *dot = lj_op_dot(ctx, J);
    ck_assert_ptr_nonnull(strstr(tree, "compose 15×10"));
    ck_assert_ptr_nonnull(strstr(tree, "  kron 15×10"));
    ck_assert_ptr_nonnull(strstr(tree, "nnz 30"));
    ck_assert_ptr_nonnull(strstr(dot, "digraph"));
    ck_assert_ptr_nonnull(strstr(dot, "->"));
    {
        /* a sum's terms say their coefficients, so that the lines add up */
        lj_op *I3 = lj_op_identity(ctx, 3), *D3 = lj_op_diag(ctx, 3, b, "x");
        const lj_op *terms[] = { D3, I3 };
        const double co[] = { 1.0, -3.0 };
        lj_op *S = lj_op_lincomb(ctx, 2, co, terms);
        char *ts = lj_op_tree(ctx, S), *ds = lj_op_dot(ctx, S);
        CK_NN(ctx, ts);
        ck_assert_msg(strstr(ts, "  diag 3×3  nnz 3  cost 6 flops, 72 bytes  Diag(x)\n") != NULL, "%s", ts);
        ck_assert_msg(strstr(ts, "  identity 3×3  nnz 3  cost 3 flops, 48 bytes  term ×(−3): I_3\n") != NULL, "%s", ts);
        ck_assert_msg(strstr(ds, "[label=\"-3\"]") != NULL, "%s", ds);
        lj_free(ts);
        lj_free(ds);
        lj_op_free(&S);
        lj_op_free(&D3);
        lj_op_free(&I3);
    }
    ck_assert_ptr_null(lj_op_print(ctx, J, (lj_print_format)7));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_INVALID);
    lj_free(plain);
    lj_free(latex);
    lj_free(tree);
    lj_free(dot);
    lj_op *all[] = { W, I5, k, D, J };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    /* a caller's label in the labels' language, as LaTeX: calls nested 100
     * deep (the first 64 translated, the rest as they stand, brackets
     * balanced), and 10^5 calls left open, in linear time */
    size_t n = 100, big = 100000;
    char *l = malloc(6 * big + 16), *want = malloc(12 * n + 64);
    char *p = l, *q = want;
    for (size_t i = 0; i < n; i++) p += sprintf(p, "sqrt("), q += sprintf(q, i < 64 ? "\\sqrt{" : "sqrt(");
    p += sprintf(p, "x.^2");
    q += sprintf(q, "x^{\\circ 2}");
    for (size_t i = n; i-- > 0;) p += sprintf(p, ")"), q += sprintf(q, i < 64 ? "}" : ")");
    double one = 1.0;
    lj_op *u = lj_op_dense(ctx, 1, 1, &one, 1, l);
    CK_NN(ctx, u);
    latex = lj_op_print(ctx, u, LJ_PRINT_LATEX);
    CK_NN(ctx, latex);
    ck_assert_str_eq(latex, want);
    lj_free(latex);
    lj_op_free(&u);
    p = l;
    for (size_t i = 0; i < big; i++) p += sprintf(p, "exp(");
    sprintf(p, "x");
    u = lj_op_dense(ctx, 1, 1, &one, 1, l);
    CK_NN(ctx, u);
    latex = lj_op_print(ctx, u, LJ_PRINT_LATEX);
    CK_NN(ctx, latex);
    ck_assert_str_eq(latex, l); /* past the length whose groups are read: as it stands */
    lj_free(latex);
    lj_op_free(&u);
    free(l);
    free(want);
    /* the labels' other symbols: partial derivatives, a σ or a square left
     * by a cut, names with subscripts */
    const struct { const char *label, *plain, *latex; } sym[] = {
        { "∂kron_cb/∂G", "dkron_cb/dG", "\\partial kron_{cb}/\\partial G" },
        { "1 − σ…", "1 - sigmoid...", "1 - \\sigma \\ldots " },
        { "1 − tanh²…", "1 - tanh^2...", "1 - tanh^2\\ldots " },
        { "W_12·x_1", "W_12*x_1", "W_{12}\\cdot x_1" },
    };
    for (size_t i = 0; i < sizeof sym / sizeof sym[0]; i++) {
        u = lj_op_dense(ctx, 1, 1, &one, 1, sym[i].label);
        CK_NN(ctx, u);
        plain = lj_op_print(ctx, u, LJ_PRINT_PLAIN);
        latex = lj_op_print(ctx, u, LJ_PRINT_LATEX);
        CK_NN(ctx, plain);
        CK_NN(ctx, latex);
        ck_assert_str_eq(plain, sym[i].plain);
        ck_assert_str_eq(latex, sym[i].latex);
        lj_free(plain);
        lj_free(latex);
        lj_op_free(&u);
    }
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_nnz_and_cost)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 6;
    tmat A = tm_rand(30, 20, &seed), B = tm_rand(40, 50, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B");
    lj_op *k = lj_op_kron(ctx, a, b);
    int exact = 0;
    ck_assert_int_eq(lj_op_nnz(ctx, k, &exact), 600 * 2000);
    ck_assert(exact);
    double f, by;
    CK_OK(ctx, lj_op_cost(ctx, k, &f, &by));
    /* the cheaper association of the two: m_b·n_a·(n_b+m_a) vs m_a·n_b·(n_a+m_b), ×2 flops */
    double c1 = 2.0 * 40 * 20 * (50 + 30), c2 = 2.0 * 30 * 50 * (20 + 40);
    ck_assert(fabs(f - (c1 < c2 ? c1 : c2)) < 1);
    ck_assert(by > 0);
    lj_op *I = lj_op_identity(ctx, 7), *ki = lj_op_kron(ctx, I, b);
    CK_OK(ctx, lj_op_cost(ctx, ki, &f, &by));
    ck_assert(fabs(f - 7 * 2.0 * 40 * 50) < 1); /* one GEMM */
    ck_assert_int_eq(lj_op_nnz(ctx, NULL, NULL), -1);
    lj_op *all[] = { a, b, k, I, ki };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&B);
    lj_context_free(&ctx);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------- */


START_TEST(test_errors)
{
    lj_context *ctx = lj_context_new();
    double v[300] = { 0 };
    lj_op *a = lj_op_dense(ctx, 20, 15, v, 20, "A"), *b = lj_op_dense(ctx, 12, 15, v, 12, "B");
    ck_assert_ptr_null(lj_op_mul(ctx, a, b));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "compose: inner dimensions differ: (20×15)·(12×15)");
    ck_assert_ptr_null(lj_op_add(ctx, a, b));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "lincomb: shapes differ: (20×15) + (12×15)");
    const lj_op *ab[2] = { a, b };
    ck_assert_ptr_null(lj_op_hstack(ctx, 2, ab));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "hstack: block 2 is (12×15)");
    ck_assert_ptr_null(lj_op_compose(ctx, 0, ab));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "compose: no operands");
    ck_assert_ptr_null(lj_op_dense(ctx, INT64_MAX / 2, 4, v, INT64_MAX / 2, NULL));
    ASSERT_ERR(ctx, LJ_ERR_OVERFLOW, "dense");
    ck_assert_ptr_null(lj_op_dense(ctx, 3, 3, v, 2, NULL));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "leading dimension");
    ck_assert_ptr_null(lj_op_dense(ctx, 3, 3, NULL, 3, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "NULL values");
    lj_op *big = lj_op_identity(ctx, INT64_MAX / 4);
    ck_assert_ptr_null(lj_op_kron(ctx, big, big));
    ASSERT_ERR(ctx, LJ_ERR_OVERFLOW, "kron");
    int64_t bad[3] = { 0, 0, 2 };
    ck_assert_ptr_null(lj_op_perm(ctx, 3, bad, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "perm: entry 1");
    ck_assert_ptr_null(lj_op_diag(ctx, 3, NULL, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "diag");
    ck_assert_ptr_null(lj_op_rank1(ctx, 2, NULL, NULL, 2, v, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "rank1");
    ck_assert_ptr_null(lj_op_zero(ctx, -1, 2));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "zero");
    ck_assert_ptr_null(lj_op_commutation(ctx, -1, 2));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "commutation");
    /* NULL in, NULL out */
    ck_assert_ptr_null(lj_op_transpose(ctx, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "transpose: operand 1 is NULL");
    ck_assert_ptr_null(lj_op_scale(ctx, 2, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "scale");
    ck_assert_ptr_null(lj_op_vstack(ctx, 1, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "vstack");
    /* apply */
    double x[20], y[20];
    ck_assert_int_eq(lj_op_apply(ctx, a, 0, 1, NULL, 0, y), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "apply: NULL vector");
    ck_assert_int_eq(lj_op_apply(ctx, NULL, 0, 1, x, 0, y), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "apply");
    ck_assert_int_eq(lj_op_apply_multi(ctx, a, 0, 2, 1, v, 10, 0, y, 20), LJ_ERR_SHAPE);
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "apply_multi: leading dimensions");
    ck_assert_int_eq(lj_op_apply_multi(ctx, a, 0, -1, 1, v, 15, 0, y, 20), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "negative");
    ck_assert_int_eq(lj_op_apply(ctx, b, 0, 1, v, 0, v + 3), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "overlap");
    ck_assert_int_eq(lj_op_cost(ctx, NULL, NULL, NULL), LJ_ERR_INVALID);
    lj_context_clear(ctx);
    ck_assert_ptr_null(lj_op_tree(ctx, NULL));
    ck_assert_ptr_null(lj_op_dot(ctx, NULL));
    ck_assert_ptr_null(lj_op_print_gradient(ctx, a, 3, 100, LJ_PRINT_UNICODE));
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "print_gradient");
    ck_assert_int_eq(lj_op_dot_test(ctx, NULL, 1, NULL), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_op_check(ctx, big, 1, NULL), LJ_ERR_OVERFLOW);
    lj_context_clear(ctx);
    ck_assert_int_eq(lj_op_rows(NULL), -1);
    ck_assert_int_eq(lj_op_kind_of(NULL), -1);
    ck_assert_str_eq(lj_op_kind_name(NULL), "invalid");
    ck_assert_ptr_null(lj_op_child(a, 0));
    ck_assert(!lj_op_equal(a, NULL));
    lj_op_free(&a);
    lj_op_free(&b);
    lj_op_free(&big);
    lj_context_free(&ctx);
}
END_TEST

/* Every allocation of a rule-rewriting constructor, of materialisation and of
 * apply fails in turn: each returns a clean error and leaks nothing. */
START_TEST(test_alloc_failure_everywhere)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 12;
    tmat A = tm_rand(3, 2, &seed), B = tm_rand(2, 4, &seed), C = tm_rand(2, 3, &seed), D = tm_rand(4, 2, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C"), *d = dense_of(ctx, D, "D");
    double dg[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    lj_op *dd = lj_op_diag(ctx, 8, dg, "vec G");
    lj_op *ab = lj_op_kron(ctx, a, b), *cd = lj_op_kron(ctx, c, d);
    int ok_at = 0;
    for (int n = 1; n < 500; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        /* a product with a mixed-product rewrite and a sum */
        lj_op *p = lj_op_mul(ctx, ab, cd);
        lj_op *q = p ? lj_op_add(ctx, p, p) : NULL;
        lj_op *t = q ? lj_op_transpose(ctx, q) : NULL;
        const lj_op *ops[2] = { ab, dd };
        lj_op *r = t ? lj_op_compose(ctx, 2, ops) : NULL;
        cholmod_sparse *S = r ? lj_op_to_sparse(ctx, r) : NULL;
        char *s = S ? lj_op_print(ctx, t, LJ_PRINT_LATEX) : NULL;
        double x[12] = { 1 }, y[12], full[64];
        lj_status st = s ? lj_op_apply(ctx, t, 1, 1.0, x, 0.0, y) : LJ_ERR_NOMEM;
        /* written densely: a transpose of a sum of products, through workspace */
        if (st == LJ_OK) st = lj_op_to_dense(ctx, t, full, lj_op_rows(t));
        bool all = p && q && t && r && S && s && st == LJ_OK;
        if (!all) {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: status %d (%s)", n,
                          (int)lj_context_status(ctx), lj_context_message(ctx));
            lj_context_clear(ctx);
        }
        lj_free(s);
        lj_sparse_free(ctx, &S);
        lj_op_free(&p);
        lj_op_free(&q);
        lj_op_free(&t);
        lj_op_free(&r);
        if (all) {
            ok_at = n;
            break;
        }
    }
    ck_assert_int_gt(ok_at, 10);
    lj_context_fail_alloc(ctx, 0, 0);
    lj_op *all[] = { a, b, c, d, dd, ab, cd };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, D };
    for (size_t i = 0; i < 4; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

/* One operator applied from two threads at once, each with its own context. */
typedef struct { const lj_op *J; double *x, *y; int ok; } thread_job;

static void *apply_many(void *arg)
{
    thread_job *j = arg;
    lj_context *ctx = lj_context_new();
    j->ok = 1;
    for (int r = 0; r < 50; r++)
        if (lj_op_apply(ctx, j->J, r & 1, 1.0, j->x, 0.0, j->y) != LJ_OK) j->ok = 0;
    lj_context_free(&ctx);
    return NULL;
}

START_TEST(test_threads)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 77;
    tmat A = tm_rand(30, 30, &seed), B = tm_rand(30, 30, &seed), x = tm_rand(900, 1, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *K = lj_op_commutation(ctx, 30, 30);
    lj_op *k = lj_op_kron(ctx, a, b), *J = lj_op_mul(ctx, k, K);
    tmat ref = tm_new(900, 1);
    CK_OK(ctx, lj_op_apply(ctx, J, 1, 1.0, x.a, 0.0, ref.a)); /* 50 applies end on trans = 1 */
    thread_job jobs[2];
    pthread_t th[2];
    tmat ys[2] = { tm_new(900, 1), tm_new(900, 1) };
    for (int i = 0; i < 2; i++) {
        jobs[i] = (thread_job){ J, x.a, ys[i].a, 0 };
        pthread_create(&th[i], NULL, apply_many, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert(jobs[i].ok);
        ck_assert(tm_maxdiff(ys[i], ref) == 0.0);
    }
    lj_op *all[] = { a, b, K, k, J };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, x, ref, ys[0], ys[1] };
    for (size_t i = 0; i < 6; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

/* One operator of every kind, each applied (one vector and several, both
 * ways), materialised, printed and queried from 8 threads at once, each
 * thread with its own context; every result equals the one computed alone.
 * CI runs this case under ThreadSanitizer. */
#define NKINDS 16
#define NTHREADS 8
typedef struct {
    lj_op *op[NKINDS];
    double *y[NKINDS][2], *Y[NKINDS];  /* reference J x, J^T w, J X */
    char *text[NKINDS];                /* reference printing and tree */
    int64_t nnz[NKINDS];
    double *x, *w, *X;                 /* inputs, long enough for every operator */
    pthread_barrier_t *go;
} kinds_ref;

/* ysum: (J + J) x, J's hash (computed when first asked for, here by the
 * sum's like-term test) asked for by all threads at once */
typedef struct { const kinds_ref *r; int ok; char why[200]; double ysum[NKINDS][64]; } kinds_job;

static void *use_every_kind(void *arg)
{
    kinds_job *j = arg;
    const kinds_ref *r = j->r;
    lj_context *ctx = lj_context_new();
    double y[64], Y[64 * 3];
    j->ok = ctx != NULL;
    /* all threads at once: the operators' hashes, not asked for before,
     * computed by whichever thread comes first while the others read them */
    pthread_barrier_wait(r->go);
    for (int k = 0; k < NKINDS && j->ok; k++) {
        lj_op *sum = lj_op_add(ctx, r->op[k], r->op[k]);
        j->ok = sum && lj_op_apply(ctx, sum, 0, 1.0, r->x, 0.0, j->ysum[k]) == LJ_OK;
        lj_op_free(&sum);
        if (!j->ok) snprintf(j->why, sizeof j->why, "J + J of %s: %s", lj_op_kind_name(r->op[k]), lj_context_message(ctx));
    }
    for (int round = 0; round < 10 && j->ok; round++)
        for (int k = 0; k < NKINDS && j->ok; k++) {
            const lj_op *J = r->op[k];
            int64_t m = lj_op_rows(J), n = lj_op_cols(J);
            bool same = lj_op_apply(ctx, J, 0, 1.0, r->x, 0.0, y) == LJ_OK && !memcmp(y, r->y[k][0], (size_t)m * 8);
            same = same && lj_op_apply(ctx, J, 1, 1.0, r->w, 0.0, y) == LJ_OK && !memcmp(y, r->y[k][1], (size_t)n * 8);
            same = same && lj_op_apply_multi(ctx, J, 0, 3, 1.0, r->X, n > 0 ? n : 1, 0.0, Y, m > 0 ? m : 1) == LJ_OK &&
                   !memcmp(Y, r->Y[k], (size_t)(3 * m) * 8);
            char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *t = lj_op_tree(ctx, J);
            same = same && p && t && !strncmp(r->text[k], p, strlen(p)) && strstr(r->text[k], t);
            lj_free(p);
            lj_free(t);
            cholmod_sparse *S = lj_op_to_sparse(ctx, J);
            int exact;
            same = same && S && ((int64_t *)S->p)[S->ncol] == r->nnz[k] && lj_op_nnz(ctx, J, &exact) >= 0 &&
                   lj_op_equal(J, r->op[k]);
            lj_sparse_free(ctx, &S);
            double f, b;
            same = same && lj_op_cost(ctx, J, &f, &b) == LJ_OK;
            if (!same) {
                j->ok = 0;
                snprintf(j->why, sizeof j->why, "kind %s differs in a thread: %s", lj_op_kind_name(J),
                         lj_context_message(ctx));
            }
        }
    lj_context_free(&ctx);
    return NULL;
}

START_TEST(test_threads_every_kind)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 808;
    tmat A = tm_rand(6, 4, &seed), B = tm_rand(6, 5, &seed), C = tm_rand(5, 4, &seed), P = tm_rand(2, 2, &seed);
    tmat Q = tm_rand(3, 2, &seed), R, T = tm_rand(4, 6, &seed), u = tm_rand(6, 1, &seed), v = tm_rand(4, 1, &seed);
    cholmod_sparse *cs = rand_sparse(ctx, 6, 4, &seed, &R);
    double d[6] = { 1, -2, 3, 0.5, 4, -1 };
    int64_t perm[6] = { 3, 0, 5, 1, 4, 2 }, si[5] = { 0, 1, 1, 0, 1 }, sj[5] = { 0, 4, 2, 2, 4 };
    lj_op *a = dense_of(ctx, A, "A"), *s = lj_op_sparse(ctx, cs, "S");
    lj_op *b = dense_of(ctx, B, "B"), *c = dense_of(ctx, C, "C"), *t = dense_of(ctx, T, "T");
    lj_op *p = dense_of(ctx, P, "P"), *q = dense_of(ctx, Q, "Q");
    const lj_op *aa[2] = { a, a };
    kinds_ref r = { .op = { lj_op_identity(ctx, 6), lj_op_zero(ctx, 6, 4), lj_op_scale(ctx, 2.5, a),
                      lj_op_diag(ctx, 6, d, "d"), lj_op_retain(a), lj_op_retain(s), lj_op_perm(ctx, 6, perm, "P"),
                      lj_op_commutation(ctx, 2, 3), lj_op_kron(ctx, p, q), lj_op_mul(ctx, b, c),
                      lj_op_add(ctx, a, s), lj_op_transpose(ctx, t), lj_op_hstack(ctx, 2, aa),
                      lj_op_vstack(ctx, 2, aa), lj_op_rank1(ctx, 6, u.a, "u", 4, v.a, "v"),
                      lj_op_sampled(ctx, 5, si, sj, d, c, p, "P_Ω") } };
    bool seen[NKINDS] = { false };
    r.x = calloc(64, 8);
    r.w = calloc(64, 8);
    r.X = calloc(64 * 3, 8);
    for (int i = 0; i < 64 * 3; i++) r.X[i] = sin(i + 1.0);
    for (int i = 0; i < 64; i++) r.x[i] = cos(i + 0.5), r.w[i] = sin(2.0 * i);
    for (int k = 0; k < NKINDS; k++) {
        const lj_op *J = r.op[k];
        CK_NN(ctx, J);
        seen[lj_op_kind_of(J)] = true;
        int64_t m = lj_op_rows(J), n = lj_op_cols(J);
        r.y[k][0] = calloc(64, 8);
        r.y[k][1] = calloc(64, 8);
        r.Y[k] = calloc(64 * 3, 8);
        CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, r.x, 0.0, r.y[k][0]));
        CK_OK(ctx, lj_op_apply(ctx, J, 1, 1.0, r.w, 0.0, r.y[k][1]));
        CK_OK(ctx, lj_op_apply_multi(ctx, J, 0, 3, 1.0, r.X, n > 0 ? n : 1, 0.0, r.Y[k], m > 0 ? m : 1));
        char *pu = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *tr = lj_op_tree(ctx, J);
        size_t len = strlen(pu) + strlen(tr) + 2;
        r.text[k] = malloc(len);
        snprintf(r.text[k], len, "%s\n%s", pu, tr);
        lj_free(pu);
        lj_free(tr);
        cholmod_sparse *S = lj_op_to_sparse(ctx, J);
        CK_NN(ctx, S);
        r.nnz[k] = ((int64_t *)S->p)[S->ncol];
        lj_sparse_free(ctx, &S);
    }
    for (int k = 0; k < NKINDS; k++) ck_assert_msg(seen[k], "no operator of kind %d in the thread test", k);
    kinds_job jobs[NTHREADS];
    pthread_t th[NTHREADS];
    pthread_barrier_t go;
    ck_assert_int_eq(pthread_barrier_init(&go, NULL, NTHREADS), 0);
    r.go = &go;
    for (int i = 0; i < NTHREADS; i++) {
        jobs[i] = (kinds_job){ .r = &r };
        ck_assert_int_eq(pthread_create(&th[i], NULL, use_every_kind, &jobs[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(jobs[i].ok, "thread %d: %s", i, jobs[i].why);
    }
    for (int k = 0; k < NKINDS; k++) {
        lj_op *sum = lj_op_add(ctx, r.op[k], r.op[k]);
        CK_NN(ctx, sum);
        double ys[64];
        CK_OK(ctx, lj_op_apply(ctx, sum, 0, 1.0, r.x, 0.0, ys));
        for (int i = 0; i < NTHREADS; i++)
            ck_assert_msg(!memcmp(ys, jobs[i].ysum[k], (size_t)lj_op_rows(sum) * 8), "thread %d: (J + J) x of %s differs", i,
                          lj_op_kind_name(r.op[k]));
        lj_op_free(&sum);
    }
    pthread_barrier_destroy(&go);
    for (int k = 0; k < NKINDS; k++) {
        lj_op_free(&r.op[k]);
        free(r.y[k][0]);
        free(r.y[k][1]);
        free(r.Y[k]);
        free(r.text[k]);
    }
    free(r.x);
    free(r.w);
    free(r.X);
    lj_op *all[] = { a, s, b, c, t, p, q };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, P, Q, R, T, u, v };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tm_free(&ts[i]);
    lj_sparse_free(ctx, &cs);
    lj_context_free(&ctx);
}
END_TEST

/* Repeated applies reuse the context's workspace: no allocation after the first. */
/* lazyjac's own threads (OpenMP): the same operators applied and
 * materialised with one, two and three threads a context give the same
 * bits where lazyjac's kernels do the work (transposes, Kronecker
 * materialisation, sparse, diagonal, permutation and sampled applies), and
 * the same to rounding where BLAS does (it may sum a GEMM's columns
 * differently for different column counts). */
static void same_bits(const double *a, const double *b, int64_t n, double tol, const char *what)
{
    /* one assertion at the end: Check records every assertion it makes */
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
        bool same = tol == 0.0 ? (a[i] == b[i] || (a[i] != a[i] && b[i] != b[i]))
                               : fabs(a[i] - b[i]) <= tol * (1.0 + fabs(a[i]));
        if (!same) bad = i;
    }
    ck_assert_msg(bad < 0, "%s: entry %lld differs: %.17g %.17g", what, (long long)bad, bad < 0 ? 0 : a[bad],
                  bad < 0 ? 0 : b[bad]);
}

START_TEST(test_threads_openmp)
{
    lj_context *c[3];
    for (int t = 0; t < 3; t++) {
        c[t] = lj_context_new();
        CK_OK(c[t], lj_context_set_threads(c[t], t + 1));
        ck_assert_int_le(lj_context_threads(c[t]), t + 1);
    }
    lj_context *ctx = c[0];
    ck_assert_int_eq(lj_context_threads(ctx), 1);
    ck_assert_int_eq(lj_context_set_threads(ctx, -1), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "negative thread count -1");
    ck_assert_int_eq(lj_context_threads(NULL), -1);
    ck_assert_int_eq(lj_context_set_threads(NULL, 1), LJ_ERR_INVALID);
    uint64_t seed = 4242;
    tmat dummy;
    /* operators: a large commutation, a sparse Kronecker product, a
     * composition of monomial and sparse factors, a sampled product, and a
     * dense Kronecker product (BLAS) */
    cholmod_sparse *sa = tm_rand_sparse(ctx, 150, 150, 0.05, &seed, &dummy);
    tm_free(&dummy);
    cholmod_sparse *sb = tm_rand_sparse(ctx, 140, 160, 0.05, &seed, &dummy);
    tm_free(&dummy);
    cholmod_sparse *ss = tm_rand_sparse(ctx, 400, 400, 0.01, &seed, &dummy);
    tm_free(&dummy);
    tmat W = tm_rand(60, 50, &seed), A = tm_rand(40, 30, &seed), U = tm_rand(300, 4, &seed);
    lj_op *a = lj_op_sparse(ctx, sa, "A"), *b = lj_op_sparse(ctx, sb, "B"), *S = lj_op_sparse(ctx, ss, "S");
    lj_op *w = dense_of(ctx, W, "W"), *aa = dense_of(ctx, A, "A"), *u = dense_of(ctx, U, "U");
    lj_op *I30 = lj_op_identity(ctx, 30), *K = lj_op_commutation(ctx, 1500, 700);
    lj_op *IS = lj_op_kron(ctx, I30, S), *Kss = lj_op_commutation(ctx, 400, 30);
    int64_t n = 12000, *perm = malloc(sizeof *perm * (size_t)n), *si = malloc(sizeof *si * 50000),
            *sj = malloc(sizeof *sj * 50000);
    double *d = malloc(sizeof *d * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        perm[i] = (i * 7919) % n;
        d[i] = urand(&seed);
    }
    for (int i = 0; i < 50000; i++) {
        si[i] = (int64_t)(tm_uniform(&seed) * 300);
        sj[i] = (int64_t)(tm_uniform(&seed) * 300);
    }
    lj_op *P = lj_op_perm(ctx, n, perm, "P"), *D = lj_op_diag(ctx, n, d, "d");
    const lj_op *chain[] = { D, P, IS, Kss };
    lj_op *C = lj_op_compose(ctx, 4, chain);
    lj_op *I4 = lj_op_identity(ctx, 4), *Ut = lj_op_transpose(ctx, u);
    lj_op *I300 = lj_op_identity(ctx, 300), *Sm = lj_op_sampled(ctx, 50000, si, sj, NULL, u, I300, "P_Ω");
    lj_op *wt = lj_op_transpose(ctx, w), *Kd = lj_op_kron(ctx, wt, aa);
    /* sums and stacks of large terms: applied in groups of terms, on
     * several threads where there are */
    lj_op *ISb = lj_op_kron(ctx, I30, S), *Kt = lj_op_transpose(ctx, Kss);
    const lj_op *terms[] = { IS, Kss, ISb, Kt, D };
    double coef[] = { 1.0, -0.5, 2.0, 0.25, 3.0 };
    lj_op *Sum = lj_op_lincomb(ctx, 5, coef, terms);
    const lj_op *blocks[] = { IS, Kss, D };
    lj_op *Hs = lj_op_hstack(ctx, 3, blocks), *Vs = lj_op_vstack(ctx, 3, blocks);
    lj_op *ops[] = { K, C, Sm, Kd, Sum, Hs, Vs };
    const char *names[] = { "K_{1500,700}", "D·P·(I ⊗ S)·K", "sampled", "W^T ⊗ A", "sum", "hstack", "vstack" };
    const double tols[] = { 0.0, 0.0, 0.0, 1e-13, 0.0, 0.0, 0.0 };
    for (int o = 0; o < 7; o++) {
        const lj_op *J = ops[o];
        CK_NN(ctx, J);
        for (int trans = 0; trans < 2; trans++) {
            int64_t in = trans ? lj_op_rows(J) : lj_op_cols(J), out = trans ? lj_op_cols(J) : lj_op_rows(J);
            const int64_t k = 8;
            double *X = malloc(sizeof *X * (size_t)(in * k)), *Y[3], *y[3];
            for (int64_t i = 0; i < in * k; i++) X[i] = urand(&seed);
            for (int t = 0; t < 3; t++) {
                Y[t] = malloc(sizeof *Y[t] * (size_t)(out * k));
                y[t] = malloc(sizeof *y[t] * (size_t)out);
                for (int64_t i = 0; i < out * k; i++) Y[t][i] = 0.5;
                CK_OK(c[t], lj_op_apply_multi(c[t], J, trans, k, 1.5, X, in, 0.25, Y[t], out));
                if (t > 0) same_bits(Y[0], Y[t], out * k, tols[o], names[o]);
                /* one vector, too (a transpose on several threads) */
                CK_OK(c[t], lj_op_apply(c[t], J, trans, 1.0, X, 0.0, y[t]));
                if (t > 0) same_bits(y[0], y[t], out, tols[o], names[o]);
            }
            /* against term-by-term applies, to rounding (the sums' terms
             * are grouped) */
            if (o >= 4) {
                const lj_op *const *parts = o == 4 ? terms : blocks;
                int np = o == 4 ? 5 : 3;
                double *R = calloc((size_t)(out * k), sizeof *R);
                int64_t xo = 0, yo = 0;
                for (int i = 0; i < np; i++) {
                    const lj_op *T = parts[i];
                    int64_t ti = trans ? lj_op_rows(T) : lj_op_cols(T), to = trans ? lj_op_cols(T) : lj_op_rows(T);
                    bool split_in = o == 4 || ((o == 5) != (trans != 0));
                    double c0 = o == 4 ? coef[i] : 1.0;
                    const double *xs = o == 4 || !split_in ? X : X + xo;
                    double *ys = o == 4 || split_in ? R : R + yo;
                    CK_OK(ctx, lj_op_apply_multi(ctx, T, trans, k, 1.5 * c0, xs, in, 1.0, ys, out));
                    xo += ti;
                    yo += to;
                }
                for (int64_t i = 0; i < out * k; i++) R[i] += 0.25 * 0.5;
                same_bits(R, Y[0], out * k, 1e-12, names[o]);
                free(R);
            }
            free(X);
            for (int t = 0; t < 3; t++) {
                free(Y[t]);
                free(y[t]);
            }
        }
    }
    /* one vector through a sum and a vstack of large terms: the groups of
     * terms on several threads */
    {
        cholmod_sparse *sl = tm_rand_sparse(ctx, 2000, 2000, 0.005, &seed, &dummy);
        tm_free(&dummy);
        lj_op *L = lj_op_sparse(ctx, sl, "L"), *I100 = lj_op_identity(ctx, 100), *IL = lj_op_kron(ctx, I100, L);
        lj_op *Kl = lj_op_commutation(ctx, 2000, 100), *ILt = lj_op_transpose(ctx, IL);
        const lj_op *tl[] = { IL, Kl, ILt };
        lj_op *Sl = lj_op_lincomb(ctx, 3, NULL, tl), *Vl = lj_op_vstack(ctx, 3, tl), *Hl = lj_op_hstack(ctx, 3, tl);
        const lj_op *big[] = { Sl, Vl, Hl };
        for (int o = 0; o < 3; o++)
            for (int trans = 0; trans < 2; trans++) {
                const lj_op *J = big[o];
                int64_t in = trans ? lj_op_rows(J) : lj_op_cols(J), out = trans ? lj_op_cols(J) : lj_op_rows(J);
                double *x = malloc(sizeof *x * (size_t)in), *y[3];
                for (int64_t i = 0; i < in; i++) x[i] = urand(&seed);
                for (int t = 0; t < 3; t++) {
                    y[t] = malloc(sizeof *y[t] * (size_t)out);
                    CK_OK(c[t], lj_op_apply(c[t], J, trans, 1.0, x, 0.0, y[t]));
                    if (t > 0) same_bits(y[0], y[t], out, 0.0, "a large sum or stack, one vector");
                }
                free(x);
                for (int t = 0; t < 3; t++) free(y[t]);
            }
        lj_op *bo[] = { L, I100, IL, Kl, ILt, Sl, Vl, Hl };
        for (int i = 0; i < 8; i++) lj_op_free(&bo[i]);
        cholmod_l_free_sparse(&sl, lj_context_cholmod(ctx));
    }
    /* materialisation: a Kronecker product of 1.3·10^6 entries, and the
     * composition; and A ⊗ B for an A of three columns, the first empty
     * (fewer columns with entries than threads: the threads' shares of
     * A's entries fall inside one column, or are empty) */
    lj_op *ab = lj_op_kron(ctx, a, b);
    cholmod_sparse *s3 = cholmod_l_allocate_sparse(400, 3, 800, 1, 1, 0, CHOLMOD_REAL, lj_context_cholmod(ctx));
    ck_assert_ptr_nonnull(s3);
    {
        int64_t *p3 = s3->p, *i3 = s3->i;
        double *x3 = s3->x;
        p3[0] = p3[1] = 0;
        for (int64_t q = 0; q < 800; q++) {
            i3[q] = q % 400;
            x3[q] = urand(&seed);
        }
        p3[2] = 400;
        p3[3] = 800;
    }
    lj_op *a3 = lj_op_sparse(ctx, s3, "A3"), *a3b = lj_op_kron(ctx, a3, b);
    const lj_op *mats[] = { ab, C, a3b };
    for (int o = 0; o < 3; o++) {
        cholmod_sparse *M[3];
        for (int t = 0; t < 3; t++) {
            M[t] = lj_op_to_sparse(c[t], mats[o]);
            CK_NN(c[t], M[t]);
        }
        for (int t = 1; t < 3; t++) {
            int64_t nz = ((int64_t *)M[0]->p)[M[0]->ncol];
            ck_assert(M[t]->ncol == M[0]->ncol && ((int64_t *)M[t]->p)[M[t]->ncol] == nz);
            ck_assert(!memcmp(M[t]->p, M[0]->p, sizeof(int64_t) * (M[0]->ncol + 1)));
            ck_assert(!memcmp(M[t]->i, M[0]->i, sizeof(int64_t) * (size_t)nz));
            same_bits(M[0]->x, M[t]->x, nz, 0.0, "materialised");
        }
        for (int t = 0; t < 3; t++) lj_sparse_free(c[t], &M[t]);
    }
    cholmod_l_free_sparse(&s3, lj_context_cholmod(ctx));
    lj_op *all[] = { a, b, S, w, aa, u, I30, K, IS, Kss, P, D, C, I4, Ut, I300, Sm, wt, Kd, ab, ISb, Kt, Sum, Hs, Vs, a3, a3b };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    cholmod_l_free_sparse(&sa, lj_context_cholmod(ctx));
    cholmod_l_free_sparse(&sb, lj_context_cholmod(ctx));
    cholmod_l_free_sparse(&ss, lj_context_cholmod(ctx));
    tm_free(&W);
    tm_free(&A);
    tm_free(&U);
    free(perm);
    free(si);
    free(sj);
    free(d);
    for (int t = 0; t < 3; t++) lj_context_free(&c[t]);
}
END_TEST

START_TEST(test_apply_does_not_allocate)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 1;
    tmat A = tm_rand(6, 5, &seed), B = tm_rand(4, 3, &seed), x = tm_rand(15, 1, &seed);
    lj_op *a = dense_of(ctx, A, "A"), *b = dense_of(ctx, B, "B"), *k = lj_op_kron(ctx, a, b);
    lj_op *kt = lj_op_transpose(ctx, k), *K = lj_op_commutation(ctx, 4, 6);
    tmat R;
    cholmod_sparse *cs = rand_sparse(ctx, 15, 15, &seed, &R);
    lj_op *S = lj_op_sparse(ctx, cs, "S");
    cholmod_l_free_sparse(&cs, lj_context_cholmod(ctx));
    const lj_op *f[4] = { kt, K, k, S };
    lj_op *J = lj_op_compose(ctx, 4, f);
    double y[15], Y[45], X[45];
    for (int i = 0; i < 45; i++) X[i] = urand(&seed);
    CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, x.a, 0.0, y));
    CK_OK(ctx, lj_op_apply(ctx, J, 1, 1.0, x.a, 0.0, y));
    CK_OK(ctx, lj_op_apply_multi(ctx, J, 0, 3, 1.0, X, 15, 0.0, Y, 15));
    CK_OK(ctx, lj_op_apply_multi(ctx, J, 1, 3, 1.0, X, 15, 0.0, Y, 15));
    lj_context_fail_alloc(ctx, 1, 1); /* any allocation from now on fails */
    for (int r = 0; r < 5; r++) {
        CK_OK(ctx, lj_op_apply(ctx, J, r & 1, 1.0, x.a, 0.0, y));
        CK_OK(ctx, lj_op_apply_multi(ctx, J, r & 1, 3, 1.0, X, 15, 0.0, Y, 15));
    }
    ck_assert_int_eq(lj_context_fail_alloc(ctx, 0, 0), 0);
    lj_op *all[] = { a, b, k, kt, K, J, S };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&B);
    tm_free(&x);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

/* lazyjac's default thread count: one thread where OpenBLAS runs a pool
 * of pthreads of its own (their idle spinning and OpenMP's stalled
 * lazyjac's parallel regions), one per core where BLAS is on one thread;
 * an explicit count stays what it is. OpenBLAS's functions are weak: with
 * another BLAS only the explicit counts are checked. */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);
int openblas_get_parallel(void);
#pragma weak openblas_set_num_threads
#pragma weak openblas_get_num_threads
#pragma weak openblas_get_parallel

START_TEST(test_threads_default_beside_blas)
{
    lj_context *ctx = lj_context_new();
    CK_OK(ctx, lj_context_set_threads(ctx, 3));
    bool omp = lj_context_threads(ctx) == 3; /* built with OpenMP */
    const char *lj = getenv("LJ_NUM_THREADS"), *om = getenv("OMP_NUM_THREADS");
    bool env = (lj && *lj) || (om && *om);
    bool openblas = openblas_set_num_threads && openblas_get_num_threads && openblas_get_parallel &&
                    openblas_get_parallel() == 1;
    if (openblas) {
        int blas0 = openblas_get_num_threads();
        openblas_set_num_threads(2);
        if (openblas_get_num_threads() == 2) {
            CK_OK(ctx, lj_context_set_threads(ctx, 0));
            if (!env) ck_assert_int_eq(lj_context_threads(ctx), 1);
            CK_OK(ctx, lj_context_set_threads(ctx, 2)); /* asked for: kept */
            ck_assert_int_eq(lj_context_threads(ctx), omp ? 2 : 1);
        }
        openblas_set_num_threads(1);
        CK_OK(ctx, lj_context_set_threads(ctx, 0));
        if (!env && omp) {
            cpu_set_t cs;
            ck_assert_int_eq(sched_getaffinity(0, sizeof cs, &cs), 0);
            ck_assert_int_eq(lj_context_threads(ctx), CPU_COUNT(&cs));
        }
        openblas_set_num_threads(blas0);
    }
    CK_OK(ctx, lj_context_set_threads(ctx, 0));
    ck_assert_int_ge(lj_context_threads(ctx), 1);
    if (!omp) ck_assert_int_eq(lj_context_threads(ctx), 1);
    lj_context_free(&ctx);
}
END_TEST

Suite *make_op_suite(void)
{
    Suite *s = suite_create("op");
    TCase *kinds = tcase_create("kinds");
    tcase_set_timeout(kinds, 120);
    tcase_add_test(kinds, test_identity_zero);
    tcase_add_test(kinds, test_diag_dense_sparse);
    tcase_add_test(kinds, test_sparse_unsorted_symmetric);
    tcase_add_test(kinds, test_perm_commutation_rank1);
    tcase_add_test(kinds, test_monomial_sides_materialised);
    tcase_add_test(kinds, test_monomial_sides_long_columns);
    tcase_add_test(kinds, test_fused_kernels);
    tcase_add_test(kinds, test_row_blocks);
    tcase_add_test(kinds, test_sampled);
    tcase_add_test(kinds, test_sampled_rules);
    tcase_add_test(kinds, test_kron_dense_factors);
    tcase_add_test(kinds, test_kron_structured_factors);
    tcase_add_test(kinds, test_compose_sum_stack);
    tcase_add_test(kinds, test_empty_dimensions);
    tcase_add_loop_test(kinds, test_random_compositions, 0, 8);
    suite_add_tcase(s, kinds);
    /* on their own, for tests/tuning.sh (CK_RUN_CASE=kernels) */
    TCase *kernels = tcase_create("kernels");
    tcase_set_timeout(kernels, 60);
    tcase_add_test(kernels, test_commutation_kernel);
    tcase_add_test(kernels, test_small_products);
    tcase_add_test(kernels, test_apply_short_path);
    suite_add_tcase(s, kernels);
    TCase *rules = tcase_create("rules");
    tcase_add_test(rules, test_rules_identity_zero_scalars);
    tcase_add_test(rules, test_rules_transpose_leaves);
    tcase_add_test(rules, test_rules_transpose_vectors);
    tcase_add_test(rules, test_rules_commutation_sum);
    tcase_add_test(rules, test_rules_commutation_past_diag);
    tcase_add_test(rules, test_rules_kron);
    tcase_add_test(rules, test_rules_kron_into_sum);
    tcase_add_test(rules, test_rules_ones_past_commutation);
    tcase_add_test(rules, test_rules_shared_right_factor);
    tcase_add_test(rules, test_rules_sums);
    tcase_add_test(rules, test_rules_diag_terms);
    tcase_add_test(rules, test_product_labels);
    tcase_add_test(rules, test_print_formats);
    tcase_add_test(rules, test_nnz_and_cost);
    suite_add_tcase(s, rules);
    TCase *limits = tcase_create("limits");
    tcase_set_timeout(limits, 120);
    tcase_add_test(limits, test_errors);
    tcase_add_test(limits, test_alloc_failure_everywhere);
    tcase_add_test(limits, test_apply_does_not_allocate);
    suite_add_tcase(s, limits);
    TCase *threads = tcase_create("threads");
    tcase_set_timeout(threads, 300);
    tcase_add_test(threads, test_threads);
    tcase_add_test(threads, test_threads_every_kind);
    tcase_add_test(threads, test_threads_openmp);
    tcase_add_test(threads, test_threads_default_beside_blas);
    suite_add_tcase(s, threads);
    return s;
}

int main(void)
{
    return run_suite(make_op_suite());
}
