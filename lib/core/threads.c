/* How many threads lazyjac's own loops may use: Kronecker materialisation,
 * the transpose kernel, multi-vector applies. One setting per context; the
 * default comes from LJ_NUM_THREADS (read when the context is made), else
 * from OMP_NUM_THREADS, else it is one thread where OpenBLAS runs a thread
 * pool of its own and one per core where it does not. Never more than one
 * inside a parallel region: nested loops run on the thread they are on. */
#include "config.h"
#include "lji.h"
#include <inttypes.h>
#include <string.h>
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(HAVE_OPENBLAS_GET_PARALLEL) && defined(HAVE_OPENBLAS_GET_NUM_THREADS)
/* OpenBLAS's own (its cblas.h has them; another BLAS's header may not) */
int openblas_get_parallel(void);
int openblas_get_num_threads(void);
#endif

unsigned lji_cpu(void)
{
    static atomic_uint known = 0; /* 0 unknown, else the word with LJI_CPU_KNOWN */
    unsigned k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k == 0) {
        k = LJI_CPU_KNOWN;
        const char *simd = getenv("LJ_SIMD");
        const bool simd_on = !(simd && !strcmp(simd, "none"));
        const char *t = getenv("LJ_TRANSPOSE_TUNING");
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        if (simd_on && __builtin_cpu_supports("avx")) k |= LJI_CPU_AVX;
        if (simd_on && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            k |= LJI_CPU_AVX2_FMA;
        if (__builtin_cpu_is("intel")) k |= LJI_CPU_INTEL;
#else
        (void)simd_on;
#endif
        if (t && !strcmp(t, "intel")) k |= LJI_CPU_INTEL;
        else if (t && !strcmp(t, "other")) k &= ~(unsigned)LJI_CPU_INTEL;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

int lji_env_threads(void)
{
    const char *s = getenv("LJ_NUM_THREADS");
    if (!s || !*s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 1) return 0; /* not a count: the OpenMP default */
    return v > 1024 ? 1024 : (int)v;
}

#ifdef _OPENMP
/* OMP_NUM_THREADS set (OpenMP reads it once, at start-up; so does this) */
static bool omp_count_set(void)
{
    static atomic_int known = 0; /* 0 unknown, 1 unset, 2 set */
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k == 0) {
        const char *s = getenv("OMP_NUM_THREADS");
        k = s && *s ? 2 : 1;
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k == 2;
}

/* OpenBLAS with a pool of its own pthreads, more than one. Its idle
 * threads spin (yielding) for a while after every BLAS call and after
 * start-up; OpenMP's idle threads spin too, and on cores shared by both
 * a parallel region of lazyjac's waited for a scheduler time slice: on 2
 * cores, a Kronecker materialisation of 0.075 ms on two threads took 8 ms
 * in every run after a threaded dgemm (0.075–0.08 with
 * OPENBLAS_NUM_THREADS=1; 0.15–0.2 with OMP_WAIT_POLICY=passive, whose
 * threads sleep and are woken at every region). OpenBLAS built on OpenMP
 * shares OpenMP's threads and has no such pool. */
static bool blas_own_threads(void)
{
#if defined(HAVE_OPENBLAS_GET_PARALLEL) && defined(HAVE_OPENBLAS_GET_NUM_THREADS)
    return openblas_get_parallel() == 1 && openblas_get_num_threads() > 1;
#else
    return false;
#endif
}
#endif

int lji_threads(const lj_context *ctx)
{
#ifdef _OPENMP
    if (omp_in_parallel()) return 1;
    if (ctx && ctx->nthreads > 0) return ctx->nthreads;
    /* the default: OpenMP's count when it was asked for one, else one
     * thread where BLAS keeps a pool of its own (see above), else OpenMP's
     * (one per core) */
    if (!omp_count_set() && blas_own_threads()) return 1;
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    LJI_UNUSED(ctx);
    return 1;
#endif
}

lj_status lj_context_set_threads(lj_context *ctx, int n)
{
    if (!lji_ctx_ok(ctx)) return lji_invalid_ctx(ctx);
    if (n < 0) return lji_error(ctx, LJ_ERR_INVALID, "context_set_threads: negative thread count %d", n);
    ctx->nthreads = n > 0 ? n : lji_env_threads();
    return LJ_OK;
}

int lj_context_threads(const lj_context *ctx)
{
    if (!lji_ctx_ok(ctx)) return -1;
    return lji_threads(ctx);
}

int lji_helpers(lj_context *ctx, int n)
{
    if (n <= 1) return 1;
    if (ctx->nhelper < n - 1) {
        if (!lji_alloc_gate(ctx)) return ctx->nhelper + 1;
        lj_context **h = realloc(ctx->helper, sizeof *h * (size_t)(n - 1));
        if (!h) return ctx->nhelper + 1;
        ctx->helper = h;
        while (ctx->nhelper < n - 1) {
            if (!lji_alloc_gate(ctx)) break;
            lj_context *c = lj_context_new();
            if (!c) break;
            c->nthreads = 1;
            h[ctx->nhelper++] = c;
        }
    }
    return ctx->nhelper + 1 < n ? ctx->nhelper + 1 : n;
}

lj_status lji_helpers_join(lj_context *ctx, int n, lj_status st)
{
    for (int i = 0; i < n - 1 && i < ctx->nhelper; i++) {
        lj_context *h = ctx->helper[i];
        if (h->status != LJ_OK && st == LJ_OK) {
            ctx->status = st = h->status;
            memcpy(ctx->msg, h->msg, sizeof ctx->msg);
        }
        h->status = LJ_OK;
        h->msg[0] = '\0';
    }
    return st;
}
