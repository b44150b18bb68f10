/* The transpose kernel: B <- alpha·A^T + beta·B (A r×c, B c×r), in 8×8
 * register tiles, the tiles ordered for the memory system.
 *
 * Why not a plain loop over a 32×32 block: a transpose reads one of its two
 * matrices across its columns. With a power-of-two leading dimension those
 * columns fall into the same cache sets, and a loop that walks a block
 * element by element fetches each line several times (its neighbours evict
 * it before the next row of the block reads it); and the strided addresses
 * defeat the hardware prefetcher, so every line costs a full memory latency.
 * Here every tile reads eight whole 64-byte runs (one from each of eight
 * columns of A) and writes eight whole runs of B, so no line is needed
 * twice, and the order of the tiles gives the prefetchers sequential streams
 * (TRANSPOSE_TILES, below). Where a leading dimension still crowds a few
 * cache sets, the bands are lower and the runs realigned to whole lines
 * (band_rows, lji_transpose). Cores differ in what else they want (the
 * tuning, below: Intel's want the lines of B fetched ahead of the stores).
 * The ratios to memcpy of the same bytes are in bench/bench_apply and the
 * README.
 *
 * Two tile kernels: one with AVX intrinsics (a 4×4 transpose as four
 * 16-byte loads inserted into the upper halves of four others and four
 * in-lane unpacks: no cross-lane shuffle, which would queue on one port),
 * chosen at run time where the CPU has AVX; and a portable one in the
 * compiler's 16-byte vector extensions (2×2 unpacks), which every target
 * with SSE2 or NEON runs as vector code. */
#include "config.h"
#include "lji.h"
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define LJI_X86 1
#endif

/* Outputs larger than this many bytes, written with beta = 0, use
 * non-temporal stores (on all but Intel cores, whose threshold is the
 * tuning's, below): well beyond a core's caches, where the output's
 * lines would be evicted before anything reads them, and fetching them
 * before overwriting them (a third of the memory traffic) is waste. */
#ifndef LJI_NT_BYTES
#define LJI_NT_BYTES ((size_t)16 << 20)
#endif

/* Bands of rows of A, 32 rows (four tiles) tall with cached stores, and
 * with streaming stores on all but Intel cores (measured on the
 * benchmark's shapes, on an AMD Zen 5 core and an Ice Lake Xeon; the
 * streaming band's height is the tuning's, below). A band's tiles write
 * into 32 columns of B, each typically on a page of its own: on the Zen 5
 * core bands of 256 rows walked 256 pages of B for every eight columns of
 * A, more than the first-level TLB holds, and the 4096×4096 transpose
 * took 2.5× a memcpy of its bytes (1.3× with 32). */
#ifndef LJI_TB
#define LJI_TB 32
#endif

/* The band's height: LJI_TB, or less where a band's lines would crowd a
 * few cache sets. A band reads LJI_TB/8 + 1 lines from each of eight
 * columns of A and writes one or two lines (two where runs of B do not
 * start a line) into each of LJI_TB columns of B. Where a leading
 * dimension is within a few elements of a multiple of 512 (4 KiB), those
 * columns' lines fall into a handful of the first-level cache's 64 sets,
 * more lines than a set has ways, and lines are evicted before the band's
 * next tiles complete them. Measured against memcpy of the same bytes on
 * the Zen 5 core, 64-byte-aligned arrays (bench/bench_apply prints four
 * of these shapes, on malloc's arrays): bands of 32 rows took 4.7× at
 * 512×512, 5.3× at 1024×1024, 3.9× at 2047×2049, 3.3× at 4095×4097;
 * bands of 8 rows 1.7×, 2.0×, 2.1× and 2.1×. Eight rows are slower where
 * the matrix fits the second-level cache (256×256: 3.0× against 2.4× with
 * 16) and where it streams from memory with A's columns conflicting too
 * (4096×4095: 2.3× against 1.9× with 16): there 16. Strides that spread
 * their columns over the sets keep 32 (16 was a little slower: 1.52×
 * against 1.44× at 3001×2001), and so do streaming stores, which keep B's
 * lines out of the cache. */
#define LJI_TB_SETS_MIN_BYTES ((size_t)256 << 10)
#define LJI_TB8_MIN_BYTES ((size_t)1 << 20)
#define LJI_TB8_MAX_BYTES ((size_t)64 << 20)

/* how many of the first-level cache's 64 sets n columns ld apart start in */
static int cache_sets(int64_t ld, int n)
{
    uint64_t seen = 0;
    for (int i = 0; i < n; i++) seen |= (uint64_t)1 << (((uint64_t)i * (uint64_t)ld >> 3) & 63);
    int sets = 0;
    for (; seen; seen &= seen - 1) sets++;
    return sets;
}

static int64_t band_rows(int64_t r, int64_t c, int64_t lda, int64_t ldb)
{
    size_t bytes = (size_t)r * (size_t)c * sizeof(double);
    /* below a quarter of a second-level cache the question costs more
     * than the answer saves (128×128: 2.07× with 32, 2.13× with 16) */
    if (bytes < LJI_TB_SETS_MIN_BYTES ||
        (cache_sets(ldb, LJI_TB) >= LJI_TB / 2 && cache_sets(lda, 8) >= 4))
        return LJI_TB;
    return bytes >= LJI_TB8_MIN_BYTES && bytes <= LJI_TB8_MAX_BYTES ? LJI_TB / 4 : LJI_TB / 2;
}

/* Scalar edges: rows [i0, i1) and columns [j0, j1) of A. */
static void block_scalar(int64_t i0, int64_t i1, int64_t j0, int64_t j1, double alpha,
                         const double *restrict A, int64_t lda, double beta,
                         double *restrict B, int64_t ldb)
{
    if (beta == 0.0 && alpha == 1.0) {
        for (int64_t j = j0; j < j1; j++) { /* columns of A down, rows of B across */
            const double *restrict a = A + j * lda;
            double *restrict b = B + j;
            for (int64_t i = i0; i < i1; i++) b[i * ldb] = a[i];
        }
    } else if (beta == 0.0) {
        for (int64_t j = j0; j < j1; j++) {
            const double *restrict a = A + j * lda;
            double *restrict b = B + j;
            for (int64_t i = i0; i < i1; i++) b[i * ldb] = alpha * a[i];
        }
    } else {
        for (int64_t i = i0; i < i1; i++)
            for (int64_t j = j0; j < j1; j++)
                B[j + i * ldb] = alpha * A[i + j * lda] + beta * B[j + i * ldb];
    }
}

/* Blocks of LJI_JB columns of A, each done band by band. Without them a
 * band of 32 rows read one run from every column of A: where a column
 * spans a page or more (r >= 512), every band walked c pages of A, and
 * the next band the same pages again, more than the second-level TLB
 * holds once c is in the thousands (4096×4096: 4096 pages a band, a page
 * walk for nearly every run). A block keeps the band's pages of A at 512,
 * revisited by the next band while still in the TLB; the 4096×4096
 * transpose took 10.0 ms instead of 12.0–12.4 (on the Zen 5 core; 256 was
 * the same, 128 and 1024 slower). Matrices of up to 512 columns are one
 * block, as before. */
#ifndef LJI_JB
#define LJI_JB 512
#endif

/* What differs between the cores the kernel was measured on, chosen once
 * per process by the CPU's vendor (LJ_TRANSPOSE_TUNING=intel or =other
 * overrides it, for measuring one on the other's hardware):
 *   - Intel cores (an Ice Lake Xeon, and an older Xeon before it) fetch
 *     the lines of B ahead of the stores: a band's 32 columns of B are
 *     more write streams than their prefetchers follow, and every store
 *     waited for its line. Asking for the lines the tile eight columns on
 *     will write (one prefetch per run) took K_{1000,1000} from 4.8–7.9×
 *     a memcpy of its bytes to 1.1–1.2×, 700×700 from 2.2–2.8× to 1.1×,
 *     100×100 from 2.5× to 1.5×. Their streaming stores want bands of 128
 *     rows: 3000×2000 1.7× with 32, 1.2–1.3× with 128; 4096×4096 1.7–2.2×
 *     against 1.2–1.3×. And they pay for every line a cached store fetches
 *     beyond their second-level cache (1.25 MiB): outputs from 2 MiB are
 *     streamed (1000×1000 1.1× instead of 1.3×, 1200×1200 0.8× instead of
 *     1.8×, where memcpy itself fetches the lines it overwrites).
 *   - AMD Zen 5 cores: the same prefetches cost time, and bands of 128
 *     rows with streaming stores walk more pages of B than the first-level
 *     TLB holds (4096×4096 2.5× a memcpy with 256 rows, 1.3× with 32).
 * Other vendors take the Zen 5 choices. */
typedef struct {
    size_t nt_bytes;  /* streaming stores for outputs larger than this */
    int64_t nt_band;  /* band height with streaming stores */
    bool prefetch_b;  /* prefetch B's lines ahead of cached stores */
} lji_tuning;

static const lji_tuning tuning_intel = { (size_t)2 << 20, 128, true },
                        tuning_other = { LJI_NT_BYTES, LJI_TB, false };

static const lji_tuning *tuning(void)
{
    return lji_cpu() & LJI_CPU_INTEL ? &tuning_intel : &tuning_other;
}

/* The order of the tiles, shared by both kernels (TILE8(i, j) transposes
 * the 8×8 tile at rows i.., columns j.. of A; BAND_EDGE(i0, i1) does the
 * band's last c - c8 columns). Blocks of columns of A; in each, bands of
 * rows of A (columns of B); within a band the tiles go down eight columns
 * of A at a time, so that A is read as eight sequential streams, and each
 * tile writes eight whole runs of B. Where the tuning asks for it (Intel
 * cores, below), each tile with cached stores first asks for the lines of
 * B that the tile eight columns on will write. */
#define TRANSPOSE_TILES(r8, c8, TILE8, BAND_EDGE)                                       \
    for (int64_t j0 = 0; j0 < (c8) || j0 == 0; j0 += LJI_JB) {                          \
        const int64_t j1 = j0 + LJI_JB < (c8) ? j0 + LJI_JB : (c8);                     \
        for (int64_t i0 = 0; i0 < (r8); i0 += tb) {                                    \
            const int64_t i1 = i0 + tb < (r8) ? i0 + tb : (r8);                         \
            for (int64_t j = j0; j < j1; j += 8)                                        \
                for (int64_t i = i0; i < i1; i += 8) {                                  \
                    if (pf && j + 8 < c) PREFETCH_B(i, j + 8); /* (the edge columns too) */ \
                    TILE8(i, j);                                                        \
                }                                                                       \
            if (j1 == (c8)) BAND_EDGE(i0, i1); /* the last c - c8 columns */            \
        }                                                                               \
    }

/* the eight lines of B (one per run, where its first element lies) that
 * the tile at rows i.., columns j.. of A writes, asked for to be written */
#define PREFETCH_B(i, j)                                                                \
    do {                                                                                \
        double *pb_ = B + (j) + (i) * ldb;                                              \
        for (int q_ = 0; q_ < 8; q_++) __builtin_prefetch(pb_ + q_ * ldb, 1, 3);         \
    } while (0)

/* ---- AVX -------------------------------------------------------------------- */
#ifdef LJI_X86
#define LJI_AVX __attribute__((target("avx,prfchw"))) static inline __attribute__((always_inline))

/* rows 0..3 of columns 0..3 at A: out[q] is row q */
LJI_AVX void avx_tile4(const double *A, int64_t lda, __m256d out[4])
{
    const double *a0 = A, *a1 = A + lda, *a2 = A + 2 * lda, *a3 = A + 3 * lda;
    __m256d t0 = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(a0)), _mm_loadu_pd(a2), 1);
    __m256d t1 = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(a1)), _mm_loadu_pd(a3), 1);
    __m256d t2 = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(a0 + 2)),
                                      _mm_loadu_pd(a2 + 2), 1);
    __m256d t3 = _mm256_insertf128_pd(_mm256_castpd128_pd256(_mm_loadu_pd(a1 + 2)),
                                      _mm_loadu_pd(a3 + 2), 1);
    out[0] = _mm256_unpacklo_pd(t0, t1);
    out[1] = _mm256_unpackhi_pd(t0, t1);
    out[2] = _mm256_unpacklo_pd(t2, t3);
    out[3] = _mm256_unpackhi_pd(t2, t3);
}

/* four doubles to d: alpha·t (+ beta·d) */
LJI_AVX void avx_put4(double *d, __m256d t, __m256d va, __m256d vb, bool scale, bool acc, bool nt)
{
    if (acc) t = _mm256_add_pd(_mm256_mul_pd(va, t), _mm256_mul_pd(vb, _mm256_loadu_pd(d)));
    else if (scale) t = _mm256_mul_pd(va, t);
    if (nt) _mm256_stream_pd(d, t);
    else _mm256_storeu_pd(d, t);
}

/* four 8-long runs of B (columns 0..3 at d), each the halves l[q], h[q] */
LJI_AVX void avx_put_rows4(double *d, int64_t ldb, const __m256d l[4], const __m256d h[4], __m256d va, __m256d vb,
                           bool scale, bool acc, bool nt)
{
    avx_put4(d, l[0], va, vb, scale, acc, nt);
    avx_put4(d + 4, h[0], va, vb, scale, acc, nt);
    avx_put4(d + ldb, l[1], va, vb, scale, acc, nt);
    avx_put4(d + ldb + 4, h[1], va, vb, scale, acc, nt);
    avx_put4(d + 2 * ldb, l[2], va, vb, scale, acc, nt);
    avx_put4(d + 2 * ldb + 4, h[2], va, vb, scale, acc, nt);
    avx_put4(d + 3 * ldb, l[3], va, vb, scale, acc, nt);
    avx_put4(d + 3 * ldb + 4, h[3], va, vb, scale, acc, nt);
}

LJI_AVX void avx_tile8(const double *A, int64_t lda, double *B, int64_t ldb, __m256d va, __m256d vb,
                       bool scale, bool acc, bool nt)
{
    /* written out (no loops), so that the sixteen vectors stay in registers */
    __m256d l[4], h[4];
    avx_tile4(A, lda, l);           /* rows 0..3, columns 0..3 */
    avx_tile4(A + 4 * lda, lda, h); /* rows 0..3, columns 4..7 */
    avx_put_rows4(B, ldb, l, h, va, vb, scale, acc, nt);
    avx_tile4(A + 4, lda, l);           /* rows 4..7, columns 0..3 */
    avx_tile4(A + 4 + 4 * lda, lda, h); /* rows 4..7, columns 4..7 */
    avx_put_rows4(B + 4 * ldb, ldb, l, h, va, vb, scale, acc, nt);
}

/* Rows [i0, i1) (a multiple of 4 long) of columns [c8, c): four columns
 * in 4×4 tiles, the last one to three element by element. */
LJI_AVX void avx_edge_cols(int64_t i0, int64_t i1, int64_t c8, int64_t c4, int64_t c, double alpha,
                           const double *restrict A, int64_t lda, double beta, double *restrict B,
                           int64_t ldb, __m256d va, __m256d vb, bool scale, bool acc)
{
    for (int64_t i = i0; c8 < c4 && i < i1; i += 4) {
        __m256d t[4];
        avx_tile4(A + i + c8 * lda, lda, t);
        for (int q = 0; q < 4; q++) avx_put4(B + c8 + (i + q) * ldb, t[q], va, vb, scale, acc, false);
    }
    /* the last one to three columns element by element: a masked store
     * (vmaskmovpd) costs tens of cycles on AMD cores, and one such column
     * had made the 1000×37 transpose 15% slower than the 1000×36 one */
    if (c4 < c) block_scalar(i0, i1, c4, c, alpha, A, lda, beta, B, ldb);
}

/* Rows [i0, i1) of the lead columns left of A (beta = 0): row by row, so
 * that each row's few elements go to one line of B. */
static inline void lead_cols(int64_t i0, int64_t i1, int64_t lead, double alpha, const double *restrict A,
                             int64_t lda, double *restrict B, int64_t ldb)
{
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = -lead; j < 0; j++) B[j + i * ldb] = alpha * A[i + j * lda];
}

/* lead (beta = 0 only): the first lead (< 8) columns of A, left of A (at
 * A - lead·lda, B - lead), which bring the rest of B's rows to a line's
 * start: done band by band with cached stores, next to the band's last
 * columns, whose lines they share (B's columns run on in memory). */
LJI_AVX void avx_body(int64_t r, int64_t c, double alpha, const double *restrict A, int64_t lda,
                      double beta, double *restrict B, int64_t ldb, bool scale, bool acc, bool nt,
                      int64_t lead, int64_t tb, bool pf)
{
    const __m256d va = _mm256_set1_pd(alpha), vb = _mm256_set1_pd(beta);
    const int64_t r8 = r & ~(int64_t)7, c8 = c & ~(int64_t)7;
    const int64_t r4 = r & ~(int64_t)3, c4 = c & ~(int64_t)3;
#define AVX_TILE8(i, j) avx_tile8(A + (i) + (j) * lda, lda, B + (j) + (i) * ldb, ldb, va, vb, scale, acc, nt)
#define AVX_BAND_EDGE(i0, i1)                                                                    \
    do {                                                                                         \
        if (lead) lead_cols(i0, i1, lead, alpha, A, lda, B, ldb);                                \
        avx_edge_cols(i0, i1, c8, c4, c, alpha, A, lda, beta, B, ldb, va, vb, scale, acc);       \
    } while (0)
    TRANSPOSE_TILES(r8, c8, AVX_TILE8, AVX_BAND_EDGE)
#undef AVX_TILE8
#undef AVX_BAND_EDGE
    if (nt) _mm_sfence();
    /* the last r - r8 rows: four in 4×4 tiles, the rest scalar */
    for (int64_t j = 0; r8 < r4 && j < c4; j += 4) {
        __m256d t[4];
        avx_tile4(A + r8 + j * lda, lda, t);
        for (int q = 0; q < 4; q++) avx_put4(B + j + (r8 + q) * ldb, t[q], va, vb, scale, acc, false);
    }
    if (r8 < r4 && c4 < c) block_scalar(r8, r4, c4, c, alpha, A, lda, beta, B, ldb);
    if (r4 < r) block_scalar(r4, r, 0, c, alpha, A, lda, beta, B, ldb);
    if (lead && r8 < r) lead_cols(r8, r, lead, alpha, A, lda, B, ldb);
}

__attribute__((target("avx,prfchw"))) static void transpose_avx(int64_t r, int64_t c, double alpha,
                                                                const double *A, int64_t lda, double beta,
                                                                double *B, int64_t ldb, bool nt,
                                                                int64_t lead, int64_t tb, bool pf)
{
    const bool scale = alpha != 1.0, acc = beta != 0.0;
    /* each case its own copy of the loops, its flags constant there
     * (streaming stores fetch no lines, so nothing is prefetched for them) */
    if (acc) avx_body(r, c, alpha, A, lda, beta, B, ldb, true, true, false, 0, tb, pf);
    else if (nt && scale) avx_body(r, c, alpha, A, lda, beta, B, ldb, true, false, true, lead, tb, false);
    else if (nt) avx_body(r, c, alpha, A, lda, beta, B, ldb, false, false, true, lead, tb, false);
    else if (scale) avx_body(r, c, alpha, A, lda, beta, B, ldb, true, false, false, lead, tb, pf);
    else avx_body(r, c, alpha, A, lda, beta, B, ldb, false, false, false, lead, tb, pf);
}

static inline bool have_avx(void)
{
    return lji_cpu() & LJI_CPU_AVX;
}
#endif

/* ---- portable: 16-byte vectors ---------------------------------------------- */
#if defined(__GNUC__) || defined(__clang__)
typedef double lji_v2 __attribute__((vector_size(16), aligned(8)));
#define LJI_V static inline __attribute__((always_inline))

LJI_V lji_v2 v2_load(const double *p)
{
    lji_v2 v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* the 8×8 tile as 2×2 transposes: columns j, j+1 of rows i, i+1 of the
 * tile become rows of B's columns i, i+1 */
LJI_V void v2_tile8(const double *A, int64_t lda, double *B, int64_t ldb, double alpha, double beta,
                    bool scale, bool acc)
{
    for (int i = 0; i < 8; i += 2)
        for (int j = 0; j < 8; j += 2) {
            lji_v2 a = v2_load(A + i + j * lda), b = v2_load(A + i + (j + 1) * lda);
            lji_v2 lo = __builtin_shufflevector(a, b, 0, 2), hi = __builtin_shufflevector(a, b, 1, 3);
            double *d0 = B + j + i * ldb, *d1 = d0 + ldb;
            if (acc) {
                lo = alpha * lo + beta * v2_load(d0);
                hi = alpha * hi + beta * v2_load(d1);
            } else if (scale) {
                lo *= alpha;
                hi *= alpha;
            }
            memcpy(d0, &lo, sizeof lo);
            memcpy(d1, &hi, sizeof hi);
        }
}

LJI_V void v2_body(int64_t r, int64_t c, double alpha, const double *restrict A, int64_t lda,
                   double beta, double *restrict B, int64_t ldb, bool scale, bool acc)
{
    const int64_t r8 = r & ~(int64_t)7, c8 = c & ~(int64_t)7;
    const int64_t tb = band_rows(r, c, lda, ldb);
    const bool pf = tuning()->prefetch_b;
#define V2_TILE8(i, j) v2_tile8(A + (i) + (j) * lda, lda, B + (j) + (i) * ldb, ldb, alpha, beta, scale, acc)
#define V2_BAND_EDGE(i0, i1) \
    if (c8 < c) block_scalar(i0, i1, c8, c, alpha, A, lda, beta, B, ldb)
    TRANSPOSE_TILES(r8, c8, V2_TILE8, V2_BAND_EDGE)
#undef V2_TILE8
#undef V2_BAND_EDGE
    if (r8 < r) block_scalar(r8, r, 0, c, alpha, A, lda, beta, B, ldb);
}

static void transpose_portable(int64_t r, int64_t c, double alpha, const double *A, int64_t lda,
                               double beta, double *B, int64_t ldb)
{
    const bool scale = alpha != 1.0, acc = beta != 0.0;
    if (acc) v2_body(r, c, alpha, A, lda, beta, B, ldb, true, true);
    else if (scale) v2_body(r, c, alpha, A, lda, beta, B, ldb, true, false);
    else v2_body(r, c, alpha, A, lda, beta, B, ldb, false, false);
}
#else
static void transpose_portable(int64_t r, int64_t c, double alpha, const double *A, int64_t lda,
                               double beta, double *B, int64_t ldb)
{
    enum { T = 32 };
    for (int64_t i0 = 0; i0 < r; i0 += T)
        for (int64_t j0 = 0; j0 < c; j0 += T)
            block_scalar(i0, i0 + T < r ? i0 + T : r, j0, j0 + T < c ? j0 + T : c, alpha, A, lda,
                         beta, B, ldb);
}
#endif

/* Below this many elements one thread is faster than waking a second. */
#define LJI_TRANSPOSE_MT_MIN ((int64_t)1 << 17)

void lji_transpose_nt(int nt, int64_t r, int64_t c, double alpha, const double *A, int64_t lda,
                      double beta, double *B, int64_t ldb)
{
    if (nt <= 1 || r < 16 || r * c < LJI_TRANSPOSE_MT_MIN) {
        lji_transpose(r, c, alpha, A, lda, beta, B, ldb);
        return;
    }
    /* contiguous bands of rows of A, multiples of eight rows (whole tiles)
     * and of a band where there are enough of them */
    int64_t unit = r >= (int64_t)nt * LJI_TB ? LJI_TB : 8;
    int64_t units = (r + unit - 1) / unit;
    if (units < nt) nt = (int)units;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int t = 0; t < nt; t++) {
        int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
        int64_t r0 = u0 * unit, r1 = u1 * unit < r ? u1 * unit : r;
        if (r1 > r0) lji_transpose(r1 - r0, c, alpha, A + r0, lda, beta, B + r0 * ldb, ldb);
    }
}

void lji_transpose(int64_t r, int64_t c, double alpha, const double *A, int64_t lda, double beta,
                   double *B, int64_t ldb)
{
    if (r <= 0 || c <= 0) return;
    if (r == 1 || c == 1) {
        /* a row or a column: a strided copy */
        int64_t n = r == 1 ? c : r, sa = r == 1 ? lda : 1, sb = r == 1 ? 1 : ldb;
        if (beta == 0.0)
            for (int64_t t = 0; t < n; t++) B[t * sb] = alpha * A[t * sa];
        else
            for (int64_t t = 0; t < n; t++) B[t * sb] = alpha * A[t * sa] + beta * B[t * sb];
        return;
    }
#ifdef LJI_X86
    if (have_avx()) {
        /* Strides that crowd a few cache sets (band_rows) want every run
         * a tile reads or writes to be one whole line, not parts of two
         * lines, each part in a crowded set. Where lda is a multiple of
         * 8, the first io (< 8) rows of A, which bring A + io to a line,
         * go first, element by element (whole columns of B, written in
         * order). At 1024×1024 from and into malloc's memory (16 bytes
         * past a line) that took the transpose from 2.52× a memcpy of its
         * bytes to 2.01×; 2048×2048 from 1.56× to 1.43×. */
        const int64_t tb = band_rows(r, c, lda, ldb); /* (once: for the shifts too) */
        const bool crowded = tb < LJI_TB;
        if (crowded && (lda & 7) == 0 && ((uintptr_t)A & 7) == 0 && ((uintptr_t)A & 63) && r >= 16) {
            int64_t io = (int64_t)((64 - ((uintptr_t)A & 63)) / 8);
            for (int64_t j = 0; j < c; j++)
                for (int64_t i = 0; i < io; i++)
                    B[j + i * ldb] = alpha * A[i + j * lda] + (beta == 0.0 ? 0.0 : beta * B[j + i * ldb]);
            A += io;
            B += io * ldb;
            r -= io;
        }
        /* The same for B where ldb is a multiple of 8 and nothing is
         * accumulated: the tiles' columns are shifted by the jo (< 8)
         * lead columns that bring B + jo to a line, done band by band
         * (avx_body). Streaming stores need it (they write whole lines
         * only); crowded strides gain (1024×1024 as above: 2.64× to
         * 2.50×); other strides lose more to the lead columns' scattered
         * elements than they gain (1000×1000: 1.34× to 1.40×). */
        const bool line_runs = beta == 0.0 && (ldb & 7) == 0 && ((uintptr_t)B & 7) == 0 && c >= 16;
        const lji_tuning *T = tuning();
        const bool nt = line_runs && (size_t)r * (size_t)c * sizeof(double) > T->nt_bytes;
        int64_t jo = 0;
        if (nt || (line_runs && crowded)) {
            jo = (int64_t)(((64 - ((uintptr_t)B & 63)) & 63) / 8);
            A += jo * lda;
            B += jo;
            c -= jo;
        }
        transpose_avx(r, c, alpha, A, lda, beta, B, ldb, nt, jo, nt ? T->nt_band : tb, T->prefetch_b);
        return;
    }
#endif
    transpose_portable(r, c, alpha, A, lda, beta, B, ldb);
}
