/* Internal core: the context layout, error recording, allocation, workspace,
 * string buffers and checked arithmetic shared by every layer. */
#ifndef LJI_H
#define LJI_H

#include "lazyjac.h"
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LJI_MSG_MAX 512

/* Workspace arena: a stack of doubles in blocks that never move, so that
 * pointers handed out stay valid while nested applies grow it. When the
 * stack is empty and has grown past one block, it is merged into one block
 * so that the next apply of the same operator does not allocate. */
typedef struct lji_block {
    struct lji_block *prev;
    size_t cap, used;
    _Alignas(64) double data[]; /* cache-line aligned: GEMM panels, streaming stores */
} lji_block;

struct lj_context {
    uint32_t magic;
    lj_status status;
    char msg[LJI_MSG_MAX];
    cholmod_common cc;
    int cc_started;
    /* allocation-failure injection */
    int64_t alloc_count, fail_at;
    int fail_sticky;
    /* workspace */
    lji_block *work;
    size_t work_total; /* doubles in all blocks */
    int work_depth;
    /* threads for lazyjac's own loops: > 0 a count, 0 OpenMP's default */
    int nthreads;
    /* contexts of the other threads of a parallel apply (workspace,
     * CHOLMOD's common and an error record each), made when first needed
     * and kept, so that repeated applies do not allocate */
    lj_context **helper;
    int nhelper;
    /* the tape a Jacobian plan records while it builds J (lib/op/tape.c) */
    struct lji_tape *tape;
    /* identities I_n made on this context, kept for reuse (operators are
     * immutable): building a Jacobian makes several; the op layer fills
     * it and says how to release it */
    struct lj_op *ident[8];
    void (*cache_free)(lj_context *ctx);
    /* references a caller hands over to the constructor it calls next
     * (lji_hand_over in lib/op/op.h); empty between calls */
    struct lj_op *handed[2];
    /* the large arrays of the last matrix freed with lj_sparse_free, kept
     * for the next large result (lib/core/memory.c): its pages are already
     * there, where fresh ones cost a fault and the kernel's zeroing each */
    struct lji_kept {
        void *p;
        size_t bytes;
    } kept[3];
    /* while lj_op_to_sparse runs: the materialised matrices of nodes that
     * two or more parents share (lib/op/op.c) */
    struct lji_memo *memo;
};

#define LJI_CTX_MAGIC 0x4c4a4358u  /* "LJCX" */
#define LJI_DEAD_MAGIC 0xdeadbeefu

/* Record an error (printf-style message, prefixed by nothing: callers start
 * with the operation name, "compose: inner dimensions differ: ..."). Returns
 * the code, so `return lji_error(ctx, LJ_ERR_SHAPE, ...)` reads well. */
lj_status lji_error(lj_context *ctx, lj_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
lj_status lji_nomem(lj_context *ctx, const char *op);
lj_status lji_invalid_ctx(const lj_context *ctx);
/* true when ctx is a live context */
static inline bool lji_ctx_ok(const lj_context *ctx)
{
    return ctx && ctx->magic == LJI_CTX_MAGIC;
}

/* Allocation through the context (counts, and fails on request). A single
 * request larger than the machine's memory and swap fails at once, without
 * asking the allocator (which under overcommit or a sanitizer might accept
 * it and fail only when the pages are touched). */
void *lji_malloc(lj_context *ctx, size_t nbytes);
void *lji_calloc(lj_context *ctx, size_t n, size_t size);
/* Blocks up to this size are zeroed by hand after malloc rather than
 * calloc'ed: the small blocks of operator nodes, plans and kernels then
 * come from the allocator's per-thread cache (glibc's calloc never uses
 * it, and an expression's Jacobian allocates a dozen such blocks). */
#define LJI_SMALL_BYTES ((size_t)1024)
static inline void *lji_zalloc_small(size_t nbytes)
{
    void *p = malloc(nbytes);
    if (!p) return NULL;
#if defined(__GNUC__)
    __asm__("" : "+r"(p)); /* or the compiler folds malloc and memset into calloc again */
#endif
    return memset(p, 0, nbytes);
}
void *lji_realloc(lj_context *ctx, void *p, size_t nbytes);
char *lji_strdup(lj_context *ctx, const char *s);
/* the n bytes at s, and a NUL */
char *lji_strndup(lj_context *ctx, const char *s, size_t n);
/* nbytes at an address aligned to align (a power of two times the size
 * of a pointer), freed with free(); counted and failed on request like
 * lji_malloc. */
void *lji_malloc_aligned(lj_context *ctx, size_t align, size_t nbytes);
/* memset(p, 0, n) as a call into the C library, for the small structures
 * and arrays a Jacobian's build zeroes on its way: compilers expand a
 * memset whose size they can see into `rep stos`, whose start-up (tens of
 * cycles on AMD cores) cost a one-off build of seed 002's J about 3% of
 * its time (an A/B build); the library's memset uses vector stores at these
 * sizes. Defined in memory.c, so that it is not expanded again. */
void lji_zero(void *p, size_t n);
/* Arrays about to be written whole. lji_advise_huge asks for transparent
 * huge pages for the 2 MiB pages inside [p, p + nbytes) of an array of at
 * least LJI_HUGE_MIN bytes (call it before touching them; a no-op where
 * the system has none). lji_huge_bytes(n, total) says how to allocate an
 * array of n bytes among arrays of total bytes written at once (a
 * result's p, i and x): 0 for ordinary memory (under 2 MiB), else the
 * size to ask lji_malloc_huge for, n rounded up to whole 2 MiB pages when
 * that wastes at most a sixteenth of total, n itself otherwise (its last
 * partial 2 MiB then on 4 KiB pages). lji_malloc_huge allocates 2 MiB
 * aligned and advises the whole array; lji_malloc_large(n) is that where
 * lji_huge_bytes(n, n) says so and lji_malloc otherwise; both are freed
 * with free(). lji_cholmod_frees_with_free says whether CHOLMOD's free is
 * the C library's, so that such arrays may be handed to it. */
#define LJI_HUGE_MIN ((size_t)8 << 20)
void lji_advise_huge(void *p, size_t nbytes);
void *lji_malloc_large(lj_context *ctx, size_t nbytes);
size_t lji_huge_bytes(size_t nbytes, size_t total);
void *lji_malloc_huge(lj_context *ctx, size_t nbytes);
bool lji_cholmod_frees_with_free(void);
/* Arrays kept for reuse. lji_keep_sparse detaches the large arrays of S
 * (values of 2 MiB or more, with its row indices, and its column pointers
 * when they take 256 KiB or more) and keeps them in place of what ctx
 * kept, unless together they exceed an eighth of the machine's memory,
 * huge pages are not available, or CHOLMOD does not free with free();
 * lji_take_array hands one of at least nbytes (and at most twice that)
 * over to the caller, or NULL when none fits; taking one counts as an
 * allocation, and when that fails on request it returns NULL with *fail
 * set. lji_release_kept frees them all. */
void lji_keep_sparse(lj_context *ctx, cholmod_sparse *S);
void *lji_take_array(lj_context *ctx, size_t nbytes, bool *fail);
void lji_release_kept(lj_context *ctx);
/* Called before a CHOLMOD call that allocates: false means "fail it". */
bool lji_alloc_gate(lj_context *ctx);
/* Checks cc.status after a CHOLMOD call; records an error and returns it. */
lj_status lji_cholmod_check(lj_context *ctx, const char *op);

/* Drops one of an object's references and says whether it was the last.
 * A count of 1 is the caller's own reference: no other thread holds one it
 * could retain or drop meanwhile, so the last drop needs no atomic
 * read-modify-write (the same shortcut libstdc++'s shared_ptr takes). The
 * acquire load orders the caller's frees after other threads' earlier
 * drops, as the acq_rel subtraction does on the other path. */
static inline bool lji_unref(atomic_long *refs)
{
    if (atomic_load_explicit(refs, memory_order_acquire) == 1) return true;
    return atomic_fetch_sub_explicit(refs, 1, memory_order_acq_rel) == 1;
}

/* A block of numbers shared by reference: a dense leaf's values, which the
 * operators of a Jacobian built without a tape (lj_expr_jacobian) read in
 * place instead of copying (building J then costs no pass over the data,
 * and holds no second copy of it). Operators are immutable, so a leaf
 * whose block is shared takes a new one before its values change
 * (lj_expr_set_value, and the finite-difference check's perturbations):
 * the operators keep the old numbers. The numbers follow the 16-byte
 * header (so they are aligned as malloc's are). */
typedef struct lji_vblock {
    atomic_long refs;
    int64_t n; /* the number of doubles */
} lji_vblock;
static inline double *lji_vblock_data(lji_vblock *b)
{
    return (double *)(void *)(b + 1);
}
/* n doubles, zeroed; NULL when out of memory (nothing recorded) */
lji_vblock *lji_vblock_new(lj_context *ctx, int64_t n);
/* n doubles, not zeroed, a large block on huge pages (lji_malloc_large) */
lji_vblock *lji_vblock_new_large(lj_context *ctx, int64_t n);
static inline lji_vblock *lji_vblock_retain(lji_vblock *b)
{
    if (b) atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}
static inline void lji_vblock_release(lji_vblock **b)
{
    if (*b && lji_unref(&(*b)->refs)) free(*b);
    *b = NULL;
}
/* someone besides the caller holds a reference */
static inline bool lji_vblock_shared(const lji_vblock *b)
{
    return atomic_load_explicit(&((lji_vblock *)b)->refs, memory_order_acquire) > 1;
}

/* Overflow-checked arithmetic. */
static inline bool lji_mul_ok(int64_t a, int64_t b, int64_t *r)
{
    return !__builtin_mul_overflow(a, b, r);
}
static inline bool lji_add_ok(int64_t a, int64_t b, int64_t *r)
{
    return !__builtin_add_overflow(a, b, r);
}
/* rows*cols fits in int64 and in size_t bytes of doubles */
bool lji_size_ok(int64_t rows, int64_t cols, int64_t *n);
/* Bytes of memory and swap of this machine (cached; SIZE_MAX if unknown). */
size_t lji_machine_bytes(void);
/* The most bytes a file reader may allocate for structure a file declares
 * but does not hold (CSC column pointers of a matrix with few entries, a
 * library's per-row workspace): 64 MiB, or 64 bytes for every byte of the
 * file, whichever is larger. A small file can never take large memory. */
int64_t lji_reader_structure_limit(int64_t file_bytes);

/* Workspace: push n doubles (uninitialised), pop back to a mark. */
typedef struct { lji_block *blk; size_t used; } lji_mark;
lji_mark lji_work_mark(lj_context *ctx);
double *lji_work_push(lj_context *ctx, int64_t n);
void lji_work_pop(lj_context *ctx, lji_mark m);

/* Threads a call with ctx may use (1 inside a parallel region, and
 * without OpenMP); LJ_NUM_THREADS's value, 0 when unset or not a count. */
int lji_threads(const lj_context *ctx);
int lji_env_threads(void);
/* Helper contexts for threads 1..n-1 of a parallel loop (ctx itself is
 * thread 0): the number available, at most n, fewer where making one
 * failed (the loop then runs on fewer threads; not an error). */
int lji_helpers(lj_context *ctx, int n);
/* After a parallel loop: the first error a helper recorded, into ctx;
 * the helpers' records cleared. Returns ctx's status. */
lj_status lji_helpers_join(lj_context *ctx, int n, lj_status st);

/* The CPU facts the kernels choose by, read once (threads.c):
 * LJI_CPU_AVX the transpose's AVX tiles, LJI_CPU_AVX2_FMA the small
 * products' register tiles, LJI_CPU_INTEL the transpose's Intel tuning.
 * LJ_SIMD=none clears the first two (the portable kernels run, as
 * tests/tuning.sh does on any machine); LJ_TRANSPOSE_TUNING=intel|other
 * sets or clears the third. */
enum { LJI_CPU_KNOWN = 1u, LJI_CPU_AVX = 2u, LJI_CPU_AVX2_FMA = 4u, LJI_CPU_INTEL = 8u };
unsigned lji_cpu(void);

/* B <- alpha·A^T + beta·B for A r×c (leading dimension lda) and B c×r
 * (ldb); A and B must not overlap. beta = 0 ignores B's contents. Blocked
 * in 8×8 register tiles (transpose.c); large outputs with beta = 0 are
 * written with non-temporal stores. Single-threaded. */
void lji_transpose(int64_t r, int64_t c, double alpha, const double *A, int64_t lda, double beta,
                   double *B, int64_t ldb);
/* The same on up to nt threads (bands of rows of A, each thread its own;
 * the result is the same bit for bit). */
void lji_transpose_nt(int nt, int64_t r, int64_t c, double alpha, const double *A, int64_t lda,
                      double beta, double *B, int64_t ldb);

/* Growable string buffer; on allocation failure it remembers and later
 * appends are no-ops, so printers check once at the end. */
typedef struct {
    lj_context *ctx;
    char *s;
    size_t len, cap;
    bool failed;
    size_t limit;   /* 0: none; else appends stop once len reaches it */
    bool math;      /* expressions written in math notation (labels), not the language */
    bool truncated; /* an append was dropped because of the limit */
    bool drop_minus; /* labels: the transpose of a negation written next leaves out its minus sign,
                      * which its chain writes in front (lji_expr_write) */
} lji_buf;
void lji_buf_init(lji_buf *b, lj_context *ctx);
/* t for a piece of b's text (to be written into b, after `used` more
 * bytes): limited to the room b has left, so that a printer writing its
 * parts apart first does no more work than b will keep (of sums nested
 * in products nested in sums, with shared subtrees, the whole form is
 * exponential in the depth). Where b has no room, a limit of 1. */
void lji_buf_init_room(lji_buf *t, const lji_buf *b, size_t used);
void lji_buf_puts(lji_buf *b, const char *s);
/* the first n bytes of s */
void lji_buf_putn(lji_buf *b, const char *s, size_t n);
void lji_buf_printf(lji_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Returns the string (caller owns) or NULL with LJ_ERR_NOMEM recorded. */
char *lji_buf_finish(lji_buf *b, const char *op);
void lji_buf_discard(lji_buf *b);
/* Length of at most n bytes of s that ends on a UTF-8 character boundary
 * and outside a braced group ("^{-1}"). */
size_t lji_utf8_prefix(const char *s, size_t n);

/* Deterministic random numbers for tests and checks (splitmix64). */
static inline uint64_t lji_rand_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
/* uniform in [-1, 1) */
static inline double lji_rand_unif(uint64_t *s)
{
    return (double)(lji_rand_next(s) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

/* Dimensions formatted for messages: "(20×15)". */
#define LJI_SHP "(%" PRId64 "×%" PRId64 ")"

#define LJI_UNUSED(x) ((void)(x))
/* Before a loop the compiler should vectorise whatever its cost model at
 * -O2 says (GCC 12's "very cheap" model leaves loops of unknown length
 * scalar); the iterations must be independent. Needs OpenMP's simd
 * directive (-fopenmp, or -fopenmp-simd where configure found no OpenMP);
 * elsewhere a no-op. */
#if defined(_OPENMP) || defined(LJI_OPENMP_SIMD)
#define LJI_SIMD _Pragma("omp simd")
#else
#define LJI_SIMD
#endif

#endif /* LJI_H */
