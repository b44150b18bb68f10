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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
/* Products of up to this many multiply-adds (8×8×8) go to the AVX2 kernel
 * below where the CPU has AVX2 and FMA. Measured against OpenBLAS 0.3.21's
 * dgemm (its AVX-512 kernels) on an Ice Lake Xeon: a 4×4×4 product called
 * in a loop takes 17 ns against 28–30; timed call by call (clock reads
 * included), 8×8×8 60–97 ns against 100–109, and 16×8×16 250–268 against
 * 153–191, where the fixed cost no longer matters and 512-bit vectors do. */
#define LJI_SMALL_GEMM_AVX2 512
#define LJI_PACK_MAX 1024 /* doubles in each of the packed copies */

#define LJI_AVX2 __attribute__((target("avx2,fma")))

LJI_AVX2 static inline void avx2_put(double *c, __m256d v, __m256d va, __m256d vb, bool acc)
{
    v = _mm256_mul_pd(va, v);
    if (acc) v = _mm256_fmadd_pd(vb, _mm256_loadu_pd(c), v);
    _mm256_storeu_pd(c, v);
}

/* C <- alpha·A·op(B) + beta·C with m a multiple of 4: blocks of 8 (or 4)
 * rows × 4 columns of C held in registers, one column of A's block loaded
 * and op(B)'s four entries broadcast per step of the inner dimension. */
LJI_AVX2 static void avx2_gemm4(bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *restrict A,
                                int64_t lda, const double *restrict B, int64_t ldb, double beta, double *restrict C,
                                int64_t ldc)
{
    const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
    const bool acc = beta != 0.0;
    /* op(B)'s entry (l, j): element sl·l + sj·j */
    const int64_t sl = tb ? ldb : 1, sj = tb ? 1 : ldb;
#define BQ(l, j) _mm256_broadcast_sd(B + (l) * sl + (j) * sj)
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        int64_t i = 0;
        for (; i + 8 <= m; i += 8) {
            __m256d c00 = _mm256_setzero_pd(), c01 = c00, c02 = c00, c03 = c00;
            __m256d c10 = c00, c11 = c00, c12 = c00, c13 = c00;
            for (int64_t l = 0; l < k; l++) {
                const __m256d a0 = _mm256_loadu_pd(A + i + l * lda), a1 = _mm256_loadu_pd(A + i + 4 + l * lda);
                __m256d b = BQ(l, j);
                c00 = _mm256_fmadd_pd(a0, b, c00), c10 = _mm256_fmadd_pd(a1, b, c10);
                b = BQ(l, j + 1);
                c01 = _mm256_fmadd_pd(a0, b, c01), c11 = _mm256_fmadd_pd(a1, b, c11);
                b = BQ(l, j + 2);
                c02 = _mm256_fmadd_pd(a0, b, c02), c12 = _mm256_fmadd_pd(a1, b, c12);
                b = BQ(l, j + 3);
                c03 = _mm256_fmadd_pd(a0, b, c03), c13 = _mm256_fmadd_pd(a1, b, c13);
            }
            double *c = C + i + j * ldc;
            avx2_put(c, c00, va, vb, acc), avx2_put(c + 4, c10, va, vb, acc);
            avx2_put(c + ldc, c01, va, vb, acc), avx2_put(c + ldc + 4, c11, va, vb, acc);
            avx2_put(c + 2 * ldc, c02, va, vb, acc), avx2_put(c + 2 * ldc + 4, c12, va, vb, acc);
            avx2_put(c + 3 * ldc, c03, va, vb, acc), avx2_put(c + 3 * ldc + 4, c13, va, vb, acc);
        }
        for (; i < m; i += 4) {
            __m256d c0 = _mm256_setzero_pd(), c1 = c0, c2 = c0, c3 = c0;
            for (int64_t l = 0; l < k; l++) {
                const __m256d a0 = _mm256_loadu_pd(A + i + l * lda);
                c0 = _mm256_fmadd_pd(a0, BQ(l, j), c0), c1 = _mm256_fmadd_pd(a0, BQ(l, j + 1), c1);
                c2 = _mm256_fmadd_pd(a0, BQ(l, j + 2), c2), c3 = _mm256_fmadd_pd(a0, BQ(l, j + 3), c3);
            }
            double *c = C + i + j * ldc;
            avx2_put(c, c0, va, vb, acc), avx2_put(c + ldc, c1, va, vb, acc);
            avx2_put(c + 2 * ldc, c2, va, vb, acc), avx2_put(c + 3 * ldc, c3, va, vb, acc);
        }
    }
    for (; j < n; j++)
        for (int64_t i = 0; i < m; i += 4) {
            __m256d c0 = _mm256_setzero_pd();
            for (int64_t l = 0; l < k; l++) c0 = _mm256_fmadd_pd(_mm256_loadu_pd(A + i + l * lda), BQ(l, j), c0);
            avx2_put(C + i + j * ldc, c0, va, vb, acc);
        }
#undef BQ
}

/* The small product by avx2_gemm4 through packed copies, false when it
 * does not fit them: op(A) is copied with its rows padded to a multiple of
 * 4 (zeros below), and C computed into a padded copy where m is not one,
 * its first m rows then written out. (A function of its own: the copies'
 * stack frame is not set up for the common case.) */
LJI_AVX2 __attribute__((noinline)) static bool avx2_packed_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                                                                double alpha, const double *a, int64_t lda,
                                                                const double *b, int64_t ldb, double beta,
                                                                double *c, int64_t ldc)
{
    const int64_t mp = (m + 3) & ~(int64_t)3;
    if (mp * k > LJI_PACK_MAX || mp * n > LJI_PACK_MAX) return false;
    double ap[LJI_PACK_MAX], cp[LJI_PACK_MAX];
    for (int64_t l = 0; l < k; l++) {
        double *col = ap + l * mp;
        for (int64_t i = 0; i < m; i++) col[i] = ta ? a[l + i * lda] : a[i + l * lda];
        for (int64_t i = m; i < mp; i++) col[i] = 0.0;
    }
    if (mp == m) {
        avx2_gemm4(tb, m, n, k, alpha, ap, mp, b, ldb, beta, c, ldc);
        return true;
    }
    avx2_gemm4(tb, mp, n, k, alpha, ap, mp, b, ldb, 0.0, cp, mp);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++)
            c[i + j * ldc] = cp[i + j * mp] + (beta == 0.0 ? 0.0 : beta * c[i + j * ldc]);
    return true;
}

static inline bool have_avx2_fma(void)
{
    return lji_cpu() & LJI_CPU_AVX2_FMA;
}
#endif

/* the kernels lji_gemm_kernel chooses from, with one signature */
static void plain_kernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                         int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    small_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void lji_gemm_blas(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a, int64_t lda,
                   const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    lji_cblas_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

#ifdef LJI_SMALL_GEMM_AVX2
LJI_AVX2 static void avx2_kernel4(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double *a,
                                  int64_t lda, const double *b, int64_t ldb, double beta, double *c, int64_t ldc)
{
    (void)ta; /* chosen only for A not transposed */
    avx2_gemm4(tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void avx2_kernel_packed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                               const double *a, int64_t lda, const double *b, int64_t ldb, double beta,
                               double *c, int64_t ldc)
{
    (void)avx2_packed_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); /* chosen where it fits */
}
#endif

lji_gemm_fn lji_gemm_kernel(bool ta, bool tb, int64_t m, int64_t n, int64_t k)
{
    (void)tb;
#ifdef LJI_SMALL_GEMM_AVX2
    if (m <= LJI_SMALL_GEMM_AVX2 && n <= LJI_SMALL_GEMM_AVX2 && k <= LJI_SMALL_GEMM_AVX2 &&
        m * n * k <= LJI_SMALL_GEMM_AVX2 && have_avx2_fma()) {
        if (!ta && (m & 3) == 0) return avx2_kernel4;
        const int64_t mp = (m + 3) & ~(int64_t)3;
        if (mp * k <= LJI_PACK_MAX && mp * n <= LJI_PACK_MAX) return avx2_kernel_packed;
    }
#endif
    if (m <= LJI_SMALL_GEMM_M && n <= LJI_SMALL_GEMM && k <= LJI_SMALL_GEMM && m * n * k <= LJI_SMALL_GEMM)
        return plain_kernel;
    if (!lji_blas_int_ok(m) || !lji_blas_int_ok(n) || !lji_blas_int_ok(k)) return NULL;
    return lji_gemm_blas;
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
    lji_gemm_fn f = lji_gemm_kernel(ta, tb, m, n, k);
    if (f && f != lji_gemm_blas) {
        f(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
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
        lji_gemm_blas(ta, tb, m, nj, k, alpha, a, lda, bj, ldb, beta, c + j0 * ldc, ldc);
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
