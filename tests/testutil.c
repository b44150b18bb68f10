/* Dense references and the three-way operator check. */
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

double urand(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__ 1
#endif
#if __has_feature(thread_sanitizer) && !defined(__SANITIZE_THREAD__)
#define __SANITIZE_THREAD__ 1
#endif
#endif

const char *tm_memory_tool(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return "AddressSanitizer";
#elif defined(__SANITIZE_THREAD__)
    return "ThreadSanitizer";
#else
    const char *t = getenv("LJ_TEST_MEMORY_TOOL");
    return t && *t ? t : NULL;
#endif
}

double tm_uniform(uint64_t *seed)
{
    return (urand(seed) + 1.0) / 2.0;
}

tmat tm_new(int64_t r, int64_t c)
{
    tmat m = { r, c, calloc((size_t)(r * c > 0 ? r * c : 1), sizeof(double)) };
    return m;
}

tmat tm_rand(int64_t r, int64_t c, uint64_t *seed)
{
    tmat m = tm_new(r, c);
    for (int64_t i = 0; i < r * c; i++) m.a[i] = urand(seed);
    return m;
}

cholmod_sparse *tm_rand_sparse(lj_context *ctx, int64_t r, int64_t c, double density, uint64_t *seed,
                               tmat *ref)
{
    *ref = tm_new(r, c);
    cholmod_sparse *s = cholmod_l_allocate_sparse((size_t)r, (size_t)c, (size_t)(r * c + 1), 1, 1, 0,
                                                  CHOLMOD_REAL, lj_context_cholmod(ctx));
    int64_t *p = s->p, *ii = s->i, q = 0;
    double *x = s->x;
    for (int64_t j = 0; j < c; j++) {
        p[j] = q;
        for (int64_t i = 0; i < r; i++)
            if ((urand(seed) + 1) / 2 < density) {
                ii[q] = i;
                x[q++] = ref->a[i + j * r] = urand(seed);
            }
    }
    p[c] = q;
    return s;
}

void tm_free(tmat *m)
{
    free(m->a);
    m->a = NULL;
}

tmat tm_eye(int64_t n)
{
    tmat m = tm_new(n, n);
    for (int64_t i = 0; i < n; i++) m.a[i + i * n] = 1.0;
    return m;
}

tmat tm_mul(tmat a, tmat b)
{
    ck_assert_int_eq(a.c, b.r);
    tmat m = tm_new(a.r, b.c);
    for (int64_t j = 0; j < b.c; j++)
        for (int64_t k = 0; k < a.c; k++)
            for (int64_t i = 0; i < a.r; i++) m.a[i + j * a.r] += a.a[i + k * a.r] * b.a[k + j * b.r];
    return m;
}

tmat tm_kron(tmat a, tmat b)
{
    tmat m = tm_new(a.r * b.r, a.c * b.c);
    for (int64_t ia = 0; ia < a.r; ia++)
        for (int64_t ja = 0; ja < a.c; ja++)
            for (int64_t ib = 0; ib < b.r; ib++)
                for (int64_t jb = 0; jb < b.c; jb++)
                    m.a[(ia * b.r + ib) + (ja * b.c + jb) * m.r] =
                        a.a[ia + ja * a.r] * b.a[ib + jb * b.r];
    return m;
}

tmat tm_transpose(tmat a)
{
    tmat m = tm_new(a.c, a.r);
    for (int64_t i = 0; i < a.r; i++)
        for (int64_t j = 0; j < a.c; j++) m.a[j + i * a.c] = a.a[i + j * a.r];
    return m;
}

tmat tm_add(double alpha, tmat a, double beta, tmat b)
{
    ck_assert(a.r == b.r && a.c == b.c);
    tmat m = tm_new(a.r, a.c);
    for (int64_t i = 0; i < a.r * a.c; i++) m.a[i] = alpha * a.a[i] + beta * b.a[i];
    return m;
}

/* K_{m,n} vec(A) = vec(A^T), A m×n: built entry by entry from the definition */
tmat tm_commutation(int64_t m, int64_t n)
{
    tmat k = tm_new(m * n, m * n);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) k.a[(j + i * n) + (i + j * m) * (m * n)] = 1.0;
    return k;
}

tmat tm_hstack(tmat a, tmat b)
{
    tmat m = tm_new(a.r, a.c + b.c);
    memcpy(m.a, a.a, (size_t)(a.r * a.c) * sizeof(double));
    memcpy(m.a + a.r * a.c, b.a, (size_t)(b.r * b.c) * sizeof(double));
    return m;
}

tmat tm_vstack(tmat a, tmat b)
{
    tmat m = tm_new(a.r + b.r, a.c);
    for (int64_t j = 0; j < a.c; j++) {
        memcpy(m.a + j * m.r, a.a + j * a.r, (size_t)a.r * sizeof(double));
        memcpy(m.a + j * m.r + a.r, b.a + j * b.r, (size_t)b.r * sizeof(double));
    }
    return m;
}

double tm_maxdiff(tmat a, tmat b)
{
    ck_assert_msg(a.r == b.r && a.c == b.c, "shape (%lld×%lld) vs (%lld×%lld)", (long long)a.r,
                  (long long)a.c, (long long)b.r, (long long)b.c);
    double d = 0;
    for (int64_t i = 0; i < a.r * a.c; i++) {
        double e = fabs(a.a[i] - b.a[i]);
        if (e > d || isnan(e)) d = isnan(e) ? INFINITY : e;
    }
    return d;
}

double tm_maxabs(tmat a)
{
    double d = 0;
    for (int64_t i = 0; i < a.r * a.c; i++)
        if (fabs(a.a[i]) > d) d = fabs(a.a[i]);
    return d;
}

void check_op_against(lj_context *ctx, const lj_op *J, tmat D, double tol, const char *what)
{
    int64_t m = D.r, n = D.c;
    ck_assert_msg(lj_op_rows(J) == m && lj_op_cols(J) == n, "%s: shape %lld×%lld, want %lld×%lld",
                  what, (long long)lj_op_rows(J), (long long)lj_op_cols(J), (long long)m,
                  (long long)n);
    double scale = tm_maxabs(D) > 1 ? tm_maxabs(D) : 1;
    uint64_t seed = 99;
    const int64_t k = 3, pad = 2;
    int64_t ldx = n + pad, ldy = m + pad, ldxt = m + pad, ldyt = n + pad;
    tmat X = tm_rand(ldx, k, &seed), Y0 = tm_rand(ldy, k, &seed);
    tmat Xt = tm_rand(ldxt, k, &seed), Yt0 = tm_rand(ldyt, k, &seed);
    double alpha = 0.75, beta = -0.5;
    /* apply, k vectors: Y = alpha D X + beta Y0 */
    tmat Y = tm_new(ldy, k);
    memcpy(Y.a, Y0.a, sizeof(double) * (size_t)(ldy * k));
    CK_OK(ctx, lj_op_apply_multi(ctx, J, 0, k, alpha, X.a, ldx, beta, Y.a, ldy));
    double sX = 1;
    for (int64_t c = 0; c < k; c++)
        for (int64_t i = 0; i < m; i++) {
            double r = beta * Y0.a[i + c * ldy];
            for (int64_t j = 0; j < n; j++) r += alpha * D.a[i + j * m] * X.a[j + c * ldx];
            ck_assert_msg(fabs(r - Y.a[i + c * ldy]) <= tol * scale * (n + 1) * sX,
                          "%s: apply row %lld col %lld: %g vs %g", what, (long long)i,
                          (long long)c, Y.a[i + c * ldy], r);
        }
    /* padding untouched */
    for (int64_t c = 0; c < k; c++)
        for (int64_t i = m; i < ldy; i++)
            ck_assert_msg(Y.a[i + c * ldy] == Y0.a[i + c * ldy], "%s: apply wrote past rows", what);
    /* transpose apply */
    tmat Yt = tm_new(ldyt, k);
    memcpy(Yt.a, Yt0.a, sizeof(double) * (size_t)(ldyt * k));
    CK_OK(ctx, lj_op_apply_multi(ctx, J, 1, k, alpha, Xt.a, ldxt, beta, Yt.a, ldyt));
    for (int64_t c = 0; c < k; c++)
        for (int64_t j = 0; j < n; j++) {
            double r = beta * Yt0.a[j + c * ldyt];
            for (int64_t i = 0; i < m; i++) r += alpha * D.a[i + j * m] * Xt.a[i + c * ldxt];
            ck_assert_msg(fabs(r - Yt.a[j + c * ldyt]) <= tol * scale * (m + 1),
                          "%s: apply_t row %lld: %g vs %g", what, (long long)j, Yt.a[j + c * ldyt], r);
        }
    /* single-vector apply with beta = 0 over NaN garbage */
    double *y1 = malloc(sizeof(double) * (size_t)(m + 1));
    for (int64_t i = 0; i < m; i++) y1[i] = NAN;
    CK_OK(ctx, lj_op_apply(ctx, J, 0, 1.0, X.a, 0.0, y1));
    for (int64_t i = 0; i < m; i++) {
        double r = 0;
        for (int64_t j = 0; j < n; j++) r += D.a[i + j * m] * X.a[j];
        ck_assert_msg(fabs(r - y1[i]) <= tol * scale * (n + 1), "%s: apply(beta=0) row %lld: %g vs %g",
                      what, (long long)i, y1[i], r);
    }
    free(y1);
    /* materialised matrix */
    tmat M = tm_new(m, n);
    CK_OK(ctx, lj_op_to_dense(ctx, J, M.a, m > 0 ? m : 1));
    ck_assert_msg(tm_maxdiff(M, D) <= tol * scale, "%s: to_dense differs by %g", what, tm_maxdiff(M, D));
    {   /* and into a padded array: the padding is left alone */
        int64_t ldm = m + 3;
        double *P = malloc(sizeof *P * (size_t)(ldm * (n > 0 ? n : 1)));
        for (int64_t t = 0; t < ldm * n; t++) P[t] = -7.25;
        CK_OK(ctx, lj_op_to_dense(ctx, J, P, ldm));
        double worst = 0;
        int pad_ok = 1;
        for (int64_t j = 0; j < n; j++) {
            for (int64_t i = 0; i < m; i++) {
                double dd = fabs(P[i + j * ldm] - D.a[i + j * m]);
                if (dd > worst) worst = dd;
            }
            for (int64_t i = m; i < ldm; i++) pad_ok &= P[i + j * ldm] == -7.25;
        }
        free(P);
        ck_assert_msg(worst <= tol * scale && pad_ok, "%s: to_dense with ld %lld: differs by %g, padding %s", what,
                      (long long)ldm, worst, pad_ok ? "kept" : "written");
    }
    cholmod_sparse *S = lj_op_to_sparse(ctx, J);
    CK_NN(ctx, S);
    ck_assert(S->nrow == (size_t)m && S->ncol == (size_t)n && S->sorted && S->packed);
    int64_t *p = S->p, *ii = S->i;
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = p[j] + 1; q < p[j + 1]; q++)
            ck_assert_msg(ii[q - 1] < ii[q], "%s: column %lld not sorted", what, (long long)j);
    int exact = 0;
    int64_t nz = lj_op_nnz(ctx, J, &exact);
    if (exact) ck_assert_msg(nz == p[n], "%s: nnz %lld but materialised %lld", what, (long long)nz,
                             (long long)p[n]);
    else ck_assert_msg(nz >= p[n], "%s: nnz bound %lld below %lld", what, (long long)nz, (long long)p[n]);
    /* every structural zero of the reference is absent or zero in S */
    lj_sparse_free(ctx, &S);
    double gap;
    CK_OK(ctx, lj_op_dot_test(ctx, J, 7, &gap));
    ck_assert_msg(gap <= 1e-13, "%s: dot test gap %g", what, gap);
    tm_free(&M);
    tm_free(&X);
    tm_free(&Y0);
    tm_free(&Xt);
    tm_free(&Yt0);
    tm_free(&Y);
    tm_free(&Yt);
}

int run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
