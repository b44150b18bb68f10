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
/* lji_gemm with the small-product kernel tried first, without lji_gemm's
 * other checks: for callers whose products are small and non-empty
 * (m, n, k > 0), as the fused Kronecker kernel's are. */
lj_status lji_gemm_small(lj_context *ctx, const char *op, bool ta, bool tb, int64_t m, int64_t n,
                         int64_t k, double alpha, const double *a, int64_t lda, const double *b,
                         int64_t ldb, double beta, double *c, int64_t ldc);
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
