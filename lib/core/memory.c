/* Fresh memory for large results, backed by transparent huge pages where
 * the kernel offers them.
 *
 * Writing a freshly allocated array costs a page fault every 4 KiB; for a
 * large materialised matrix those faults, not the arithmetic, set the pace.
 * With a 2 MiB page a fault covers 512 times as much. The advice is given
 * only for the 2 MiB-aligned interior of an array lazyjac has just
 * allocated and not yet touched (the allocator's bookkeeping before and
 * after it is left alone), never through a process-wide setting, and any
 * refusal (no THP in the kernel, "never" in its settings, another system)
 * is silently the ordinary 4 KiB path. */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include "config.h"
#include "lji.h"
#include <stdint.h>
#ifdef __linux__
#include <sys/mman.h>
#endif

void lji_advise_huge(void *p, size_t nbytes)
{
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (!p || nbytes < LJI_HUGE_MIN) return;
    uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
    uintptr_t b = ((uintptr_t)p + nbytes) & ~(huge - 1);
    if (b > a) (void)madvise((void *)a, (size_t)(b - a), MADV_HUGEPAGE);
#else
    LJI_UNUSED(p);
    LJI_UNUSED(nbytes);
#endif
}

void *lji_malloc_large(lj_context *ctx, size_t nbytes)
{
    void *p = lji_malloc(ctx, nbytes);
    lji_advise_huge(p, nbytes);
    return p;
}
