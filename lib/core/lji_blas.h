/* Checked BLAS/LAPACK helpers (see blas.c). */
#ifndef LJI_BLAS_H
#define LJI_BLAS_H
#include "lji.h"
#include <cblas.h>

bool lji_blas_int_ok(int64_t n);
/* C <- alpha·op(A)·op(B) + beta·C, C m×n, op(A) m×k. */
lj_status lji_gemm(lj_context *ctx, const char *op, bool ta, bool tb, int64_t m, int64_t n,
                   int64_t k, double alpha, const double *a, int64_t lda, const double *b,
                   int64_t ldb, double beta, double *c, int64_t ldc);
/* A product kernel for fixed shapes, chosen once by lji_gemm_kernel: it
 * computes C <- alpha·op(A)·op(B) + beta·C for those ta, tb, m, n, k (all
 * sizes positive, alpha not 0, leading dimensions within BLAS's integers)
 * without lji_gemm's checks. The choice is lji_gemm's own: a register-tiled
 * AVX2 kernel, plain loops, or the BLAS; NULL where the BLAS's integers do
 * not hold the sizes (lji_gemm then reports it). For callers that apply
 * the same small shapes many times (the fused Kronecker kernel). */
typedef void (*lji_gemm_fn)(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                            int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc);
lji_gemm_fn lji_gemm_kernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k);
/* cblas_dgemm in lazyjac's terms (sizes within BLAS's integers) */
static inline void lji_cblas_dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                                   int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    cblas_dgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m,
                (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}
/* the BLAS's kernel (lji_cblas_dgemm), which a caller may recognise and
 * call inline */
void lji_gemm_blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a, int64_t lda,
                   const double *b, int64_t ldb, double beta, double *c, int64_t ldc);
/* y <- alpha·op(A)·x + beta·y, A m×n. */
lj_status lji_gemv(lj_context *ctx, const char *op, bool ta, int64_t m, int64_t n, double alpha,
                   const double *a, int64_t lda, const double *x, double beta, double *y);
/* In-place LU of a square matrix; piv_out (may be NULL) gets 0-based pivots,
 * *sign the permutation's sign. LJ_ERR_SINGULAR on a zero pivot. */
lj_status lji_lu(lj_context *ctx, const char *op, int64_t n, double *a, int64_t lda,
                 int64_t *piv_out, int *sign);
/* In-place inverse. */
lj_status lji_inverse(lj_context *ctx, const char *op, int64_t n, double *a, int64_t lda);
#endif
