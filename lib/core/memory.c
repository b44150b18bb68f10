/* Fresh memory for large results, backed by transparent huge pages where
 * the kernel offers them.
 *
 * Writing a freshly allocated array costs a page fault every 4 KiB; for a
 * large materialised matrix those faults, not the arithmetic, set the pace
 * (under some hypervisors a 4 KiB fault costs 10–15 µs: fresh memory then
 * fills at 0.3 GB/s). With a 2 MiB page a fault covers 512 times as much.
 *
 * Two ways to get there, both without a process-wide setting:
 * - lji_advise_huge gives the advice for the 2 MiB-aligned interior of an
 *   array the allocator placed anywhere (its first and last partial 2 MiB
 *   stay on 4 KiB pages);
 * - lji_malloc_huge allocates the array 2 MiB-aligned and advises all of
 *   it: every 2 MiB of it is a huge page. Rounded up to whole 2 MiB pages
 *   there is no 4 KiB page at all, for at most 2 MiB of memory an array
 *   (the last page's tail, never touched and, without huge pages, never
 *   backed): lji_huge_bytes rounds where that is small next to what is
 *   written at once, and leaves the last partial 2 MiB on 4 KiB pages
 *   elsewhere. Alignment itself costs address space only.
 * Any refusal (no THP in the kernel, "never" in its settings, another
 * system) is silently the ordinary 4 KiB path. */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include "config.h"
#include "lji.h"
#include <stdint.h>
#include <string.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

#define LJI_HUGE_PAGE ((size_t)2 << 20)
#if defined(__linux__) && defined(MADV_HUGEPAGE)
#define LJI_HAVE_HUGE 1
#else
#define LJI_HAVE_HUGE 0
#endif

void lji_zero(void *p, size_t n)
{
    memset(p, 0, n);
}

void lji_advise_huge(void *p, size_t nbytes)
{
#if LJI_HAVE_HUGE
    if (!p || nbytes < LJI_HUGE_MIN) return;
    uintptr_t a = ((uintptr_t)p + LJI_HUGE_PAGE - 1) & ~(LJI_HUGE_PAGE - 1);
    uintptr_t b = ((uintptr_t)p + nbytes) & ~(LJI_HUGE_PAGE - 1);
    if (b > a) (void)madvise((void *)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
    LJI_UNUSED(p);
    LJI_UNUSED(nbytes);
#endif
}

size_t lji_huge_bytes(size_t nbytes, size_t total)
{
#if LJI_HAVE_HUGE
    if (nbytes < LJI_HUGE_PAGE || nbytes > SIZE_MAX - LJI_HUGE_PAGE) return 0;
    size_t r = (nbytes + LJI_HUGE_PAGE - 1) & ~(LJI_HUGE_PAGE - 1);
    return (r - nbytes) <= total / 16 ? r : nbytes;
#else
    LJI_UNUSED(nbytes);
    LJI_UNUSED(total);
    return 0;
#endif
}

void *lji_malloc_huge(lj_context *ctx, size_t nbytes)
{
    void *p = lji_malloc_aligned(ctx, LJI_HUGE_PAGE, nbytes);
#if LJI_HAVE_HUGE
    if (p) (void)madvise(p, nbytes, MADV_HUGEPAGE);
#endif
    return p;
}

void *lji_malloc_large(lj_context *ctx, size_t nbytes)
{
    size_t r = lji_huge_bytes(nbytes, nbytes);
    return r ? lji_malloc_huge(ctx, r) : lji_malloc(ctx, nbytes);
}

bool lji_cholmod_frees_with_free(void)
{
#if defined(HAVE_SUITESPARSE_CONFIG_FREE_FUNC_GET)
    return SuiteSparse_config_free_func_get() == free;
#elif defined(SUITESPARSE_MAIN_VERSION) && SUITESPARSE_MAIN_VERSION < 7
    return SuiteSparse_config.free_func == free;
#else
    return false; /* not known: CHOLMOD allocates its results itself */
#endif
}

/* ---- arrays kept for reuse ------------------------------------------------
 *
 * Fresh memory costs a page fault and the kernel's zeroing for every page
 * before a result is written into it: materialising a large Jacobian runs
 * at the speed the kernel hands out new pages, about half what writing the
 * same bytes into memory the process already has costs. A solver that
 * materialises J at every iteration frees the last one first; the context
 * keeps the large arrays of the last matrix freed with lj_sparse_free and
 * writes the next large result into them. What is kept is bounded (one
 * matrix's arrays, at most an eighth of the machine's memory) and given
 * back by lj_context_trim and lj_context_free. */

void lji_release_kept(lj_context *ctx)
{
    for (int k = 0; k < 3; k++) {
        free(ctx->kept[k].p);
        ctx->kept[k].p = NULL;
        ctx->kept[k].bytes = 0;
    }
}

void lji_keep_sparse(lj_context *ctx, cholmod_sparse *S)
{
    /* only where large results take huge pages (lji_sparse_alloc), the
     * only path that takes them again, and where CHOLMOD frees with free() */
    if (!LJI_HAVE_HUGE || !lji_cholmod_frees_with_free() || S->itype != CHOLMOD_LONG ||
        S->xtype != CHOLMOD_REAL || S->dtype != CHOLMOD_DOUBLE || S->z || !S->i || !S->x)
        return;
    const size_t xb = S->nzmax * sizeof(double), pb = (S->ncol + 1) * sizeof(int64_t);
    const bool withp = S->p && pb >= LJI_HUGE_PAGE / 8;
    const size_t total = 2 * xb + (withp ? pb : 0);
    if (xb < LJI_HUGE_PAGE || total > lji_machine_bytes() / 8) return;
    lji_release_kept(ctx);
    ctx->kept[0] = (struct lji_kept){ S->i, xb };
    ctx->kept[1] = (struct lji_kept){ S->x, xb };
    if (withp) ctx->kept[2] = (struct lji_kept){ S->p, pb };
    /* out of CHOLMOD's bookkeeping as they leave its matrix */
    ctx->cc.malloc_count -= withp ? 3 : 2;
    ctx->cc.memory_inuse -= total;
    S->i = S->x = NULL;
    if (withp) S->p = NULL;
}

void *lji_take_array(lj_context *ctx, size_t nbytes, bool *fail)
{
    int best = -1;
    *fail = false;
    for (int k = 0; k < 3; k++)
        if (ctx->kept[k].p && ctx->kept[k].bytes >= nbytes && ctx->kept[k].bytes / 2 <= nbytes &&
            (best < 0 || ctx->kept[k].bytes < ctx->kept[best].bytes))
            best = k;
    if (best < 0) return NULL;
    if (!lji_alloc_gate(ctx)) { /* failed on request, like any allocation */
        *fail = true;
        return NULL;
    }
    void *p = ctx->kept[best].p;
    ctx->kept[best].p = NULL;
    ctx->kept[best].bytes = 0;
    return p;
}
