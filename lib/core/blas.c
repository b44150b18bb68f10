/* Thin CBLAS/LAPACK helpers: every size is checked against BLAS's 32-bit
 * integer before the call, and GEMMs are split by columns when that is the
 * only dimension too large. */
#include "config.h"
#include "lji_blas.h"
#include <inttypes.h>
#include <limits.h>

/* LAPACK's Fortran interface (OpenBLAS and reference LAPACK alike). */
extern void dgetrf_(const blasint *m, const blasint *n, double *a, const blasint *lda,
                    blasint *ipiv, blasint *info);
extern void dgetri_(const blasint *n, double *a, const blasint *lda, const blasint *ipiv,
                    double *work, const blasint *lwork, blasint *info);

bool lji_blas_int_ok(int64_t n)
{
    return n >= 0 && n <= (int64_t)INT_MAX;
}

/* Products this small (m·n·k multiply-adds) are computed here: a BLAS
 * call's fixed cost (argument checks, a buffer from its pool under a lock,
 * packing) is larger than the arithmetic, and the tiny factors of Kronecker
 * products (the Jacobians of small matrices) are applied this way. */
#define LJI_SMALL_GEMM_M 64 /* rows of C at most */
#ifndef LJI_SMALL_GEMM
#define LJI_SMALL_GEMM 128
#endif

/* C <- alpha·op(A)·op(B) + beta·C by plain loops: each column of C an
 * axpy over op(B)'s column (op(A) = A), or dot products (op(A) = A^T). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3")))
#endif
static void small_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                       const double *restrict a, int64_t lda, const double *restrict b, int64_t ldb,
                       double beta, double *restrict c, int64_t ldc)
{
    for (int64_t j = 0; j < n; j++) {
        double *restrict cj = c + j * ldc;
        if (!ta) {
            double acc[LJI_SMALL_GEMM_M];
            for (int64_t i = 0; i < m; i++) acc[i] = 0.0;
            for (int64_t l = 0; l < k; l++) {
                const double blj = tb ? b[j + l * ldb] : b[l + j * ldb];
                const double *restrict al = a + l * lda;
                for (int64_t i = 0; i < m; i++) acc[i] += al[i] * blj;
            }
            for (int64_t i = 0; i < m; i++) cj[i] = alpha * acc[i] + (beta == 0.0 ? 0.0 : beta * cj[i]);
        } else {
            for (int64_t i = 0; i < m; i++) {
                const double *restrict ai = a + i * lda;
                double s = 0.0;
                if (tb)
                    for (int64_t l = 0; l < k; l++) s += ai[l] * b[j + l * ldb];
                else
                    for (int64_t l = 0; l < k; l++) s += ai[l] * b[l + j * ldb];
                cj[i] = alpha * s + (beta == 0.0 ? 0.0 : beta * cj[i]);
            }
        }
    }
}

lj_status lji_gemm(lj_context *ctx, const char *op, bool ta, bool tb, int64_t m, int64_t n,
                   int64_t k, double alpha, const double *a, int64_t lda, const double *b,
                   int64_t ldb, double beta, double *c, int64_t ldc)
{
    if (m == 0 || n == 0) return LJ_OK;
    if (k == 0 || alpha == 0.0) {
        for (int64_t j = 0; j < n; j++) {
            double *cj = c + j * ldc;
            if (beta == 0.0)
                for (int64_t i = 0; i < m; i++) cj[i] = 0.0;
            else if (beta != 1.0)
                for (int64_t i = 0; i < m; i++) cj[i] *= beta;
        }
        return LJ_OK;
    }
    if (m <= LJI_SMALL_GEMM_M && n <= LJI_SMALL_GEMM && k <= LJI_SMALL_GEMM && m * n * k <= LJI_SMALL_GEMM) {
        small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return LJ_OK;
    }
    if (!lji_blas_int_ok(m) || !lji_blas_int_ok(k) || !lji_blas_int_ok(lda) ||
        !lji_blas_int_ok(ldb) || !lji_blas_int_ok(ldc))
        return lji_error(ctx, LJ_ERR_OVERFLOW,
                         "%s: GEMM of (%" PRId64 "×%" PRId64 ")·(%" PRId64 "×%" PRId64
                         ") exceeds BLAS's 32-bit integers", op, m, k, k, n);
    const int64_t chunk = INT_MAX;
    for (int64_t j0 = 0; j0 < n; j0 += chunk) {
        int64_t nj = n - j0 < chunk ? n - j0 : chunk;
        const double *bj = tb ? b + j0 : b + j0 * ldb;
        cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (blasint)m, (blasint)nj, (blasint)k, alpha, a, (blasint)lda, bj,
                    (blasint)ldb, beta, c + j0 * ldc, (blasint)ldc);
    }
    return LJ_OK;
}

lj_status lji_gemv(lj_context *ctx, const char *op, bool ta, int64_t m, int64_t n, double alpha,
                   const double *a, int64_t lda, const double *x, double beta, double *y)
{
    int64_t ylen = ta ? n : m;
    if (ylen == 0) return LJ_OK;
    if (m == 0 || n == 0 || alpha == 0.0) {
        if (beta == 0.0)
            for (int64_t i = 0; i < ylen; i++) y[i] = 0.0;
        else if (beta != 1.0)
            for (int64_t i = 0; i < ylen; i++) y[i] *= beta;
        return LJ_OK;
    }
    if (!lji_blas_int_ok(m) || !lji_blas_int_ok(n) || !lji_blas_int_ok(lda))
        return lji_error(ctx, LJ_ERR_OVERFLOW,
                         "%s: GEMV of (%" PRId64 "×%" PRId64 ") exceeds BLAS's 32-bit integers",
                         op, m, n);
    cblas_dgemv(CblasColMajor, ta ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, alpha, a,
                (blasint)lda, x, 1, beta, y, 1);
    return LJ_OK;
}

lj_status lji_lu(lj_context *ctx, const char *op, int64_t n, double *a, int64_t lda,
                 int64_t *piv_out, int *sign)
{
    if (!lji_blas_int_ok(n) || !lji_blas_int_ok(lda))
        return lji_error(ctx, LJ_ERR_OVERFLOW,
                         "%s: LU of (%" PRId64 "×%" PRId64 ") exceeds LAPACK's 32-bit integers",
                         op, n, n);
    if (n == 0) {
        if (sign) *sign = 1;
        return LJ_OK;
    }
    blasint *ipiv = lji_malloc(ctx, (size_t)n * sizeof *ipiv);
    if (!ipiv) return lji_nomem(ctx, op);
    blasint nn = (blasint)n, ld = (blasint)lda, info = 0;
    dgetrf_(&nn, &nn, a, &ld, ipiv, &info);
    int s = 1;
    for (int64_t i = 0; i < n; i++) {
        if (ipiv[i] != (blasint)(i + 1)) s = -s;
        if (piv_out) piv_out[i] = ipiv[i] - 1;
    }
    free(ipiv);
    if (sign) *sign = s;
    if (info > 0)
        return lji_error(ctx, LJ_ERR_SINGULAR,
                         "%s: matrix (%" PRId64 "×%" PRId64 ") is singular (zero pivot %d)", op, n,
                         n, (int)info);
    if (info < 0) return lji_error(ctx, LJ_ERR_INVALID, "%s: LAPACK dgetrf argument %d", op, (int)-info);
    return LJ_OK;
}

lj_status lji_inverse(lj_context *ctx, const char *op, int64_t n, double *a, int64_t lda)
{
    if (!lji_blas_int_ok(n) || !lji_blas_int_ok(lda))
        return lji_error(ctx, LJ_ERR_OVERFLOW,
                         "%s: inverse of (%" PRId64 "×%" PRId64 ") exceeds LAPACK's 32-bit integers",
                         op, n, n);
    if (n == 0) return LJ_OK;
    blasint *ipiv = lji_malloc(ctx, (size_t)n * sizeof *ipiv);
    double *work = lji_malloc(ctx, (size_t)n * 64 * sizeof *work);
    if (!ipiv || !work) {
        free(ipiv);
        free(work);
        return lji_nomem(ctx, op);
    }
    blasint nn = (blasint)n, ld = (blasint)lda, info = 0, lwork = (blasint)(n * 64 > INT_MAX ? n : n * 64);
    dgetrf_(&nn, &nn, a, &ld, ipiv, &info);
    lj_status st = LJ_OK;
    if (info > 0)
        st = lji_error(ctx, LJ_ERR_SINGULAR,
                       "%s: matrix (%" PRId64 "×%" PRId64 ") is singular (zero pivot %d)", op, n, n,
                       (int)info);
    else {
        dgetri_(&nn, a, &ld, ipiv, work, &lwork, &info);
        if (info > 0)
            st = lji_error(ctx, LJ_ERR_SINGULAR,
                           "%s: matrix (%" PRId64 "×%" PRId64 ") is singular", op, n, n);
    }
    free(ipiv);
    free(work);
    return st;
}
