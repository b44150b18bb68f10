/* The context: status and message, CHOLMOD's common, allocation with
 * failure injection, workspace arena, string buffers. */
#include "config.h"
#include "lji.h"
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/sysinfo.h>

static const char lji_nomem_msg[] = "out of memory";

/* CHOLMOD's error handler has no user pointer: it writes the message to a
 * per-thread buffer, which lji_cholmod_check copies into the context that
 * made the call (a context is used by one thread at a time). */
static _Thread_local char lji_cholmod_msg[256];

static void lji_cholmod_handler(int status, const char *file, int line, const char *message)
{
    LJI_UNUSED(file);
    LJI_UNUSED(line);
    snprintf(lji_cholmod_msg, sizeof lji_cholmod_msg, "%s (CHOLMOD status %d)",
             message ? message : "?", status);
}

void lj_version(int *major, int *minor, int *patch)
{
    if (major) *major = LJI_VERSION_MAJOR;
    if (minor) *minor = LJI_VERSION_MINOR;
    if (patch) *patch = LJI_VERSION_PATCH;
}

const char *lj_version_string(void)
{
    return PACKAGE_VERSION;
}

const char *lj_status_string(lj_status s)
{
    switch (s) {
    case LJ_OK: return "success";
    case LJ_ERR_NOMEM: return "out of memory";
    case LJ_ERR_INVALID: return "invalid argument";
    case LJ_ERR_SHAPE: return "shape mismatch";
    case LJ_ERR_OVERFLOW: return "size overflow";
    case LJ_ERR_SINGULAR: return "singular matrix";
    case LJ_ERR_DOMAIN: return "domain error";
    case LJ_ERR_IO: return "input/output error";
    case LJ_ERR_FORMAT: return "malformed file";
    case LJ_ERR_PARSE: return "parse error";
    case LJ_ERR_NAME: return "name error";
    case LJ_ERR_UNSUPPORTED: return "not supported";
    case LJ_ERR_CHOLMOD: return "CHOLMOD error";
    case LJ_ERR_NOT_SCALAR: return "not a scalar";
    case LJ_ERR_EXTERNAL: return "external library error";
    }
    return "unknown status";
}

lj_context *lj_context_new(void)
{
    lj_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return NULL;
    ctx->magic = LJI_CTX_MAGIC;
    if (!cholmod_l_start(&ctx->cc)) {
        free(ctx);
        return NULL;
    }
    ctx->cc_started = 1;
    ctx->cc.print = 0;
    ctx->cc.error_handler = lji_cholmod_handler;
    ctx->nthreads = lji_env_threads();
    return ctx;
}

static void lji_work_free_all(lj_context *ctx)
{
    lji_block *b = ctx->work;
    while (b) {
        lji_block *p = b->prev;
        free(b);
        b = p;
    }
    ctx->work = NULL;
    ctx->work_total = 0;
}

void lj_context_free(lj_context **pctx)
{
    if (!pctx || !*pctx) return;
    lj_context *ctx = *pctx;
    if (ctx->magic == LJI_CTX_MAGIC) {
        if (ctx->cache_free) ctx->cache_free(ctx);
        lji_release_kept(ctx);
        for (int i = 0; i < ctx->nhelper; i++) lj_context_free(&ctx->helper[i]);
        free(ctx->helper);
        if (ctx->cc_started) cholmod_l_finish(&ctx->cc);
        lji_work_free_all(ctx);
        ctx->magic = LJI_DEAD_MAGIC;
        free(ctx);
    }
    *pctx = NULL;
}

lj_status lj_context_status(const lj_context *ctx)
{
    return lji_ctx_ok(ctx) ? ctx->status : LJ_ERR_INVALID;
}

const char *lj_context_message(const lj_context *ctx)
{
    if (!ctx) return "context: NULL context";
    if (ctx->magic != LJI_CTX_MAGIC) return "context: invalid or freed context";
    return ctx->msg;
}

void lj_context_trim(lj_context *ctx)
{
    if (lji_ctx_ok(ctx)) lji_release_kept(ctx);
}

void lj_context_clear(lj_context *ctx)
{
    if (!lji_ctx_ok(ctx)) return;
    ctx->status = LJ_OK;
    ctx->msg[0] = '\0';
}

cholmod_common *lj_context_cholmod(lj_context *ctx)
{
    return lji_ctx_ok(ctx) ? &ctx->cc : NULL;
}

int64_t lj_context_fail_alloc(lj_context *ctx, int64_t n, int sticky)
{
    if (!lji_ctx_ok(ctx)) return -1;
    int64_t made = ctx->alloc_count;
    ctx->alloc_count = 0;
    ctx->fail_at = n > 0 ? n : 0;
    ctx->fail_sticky = sticky;
    return made;
}

void lj_free(void *p)
{
    free(p);
}

lj_status lji_error(lj_context *ctx, lj_status code, const char *fmt, ...)
{
    if (!lji_ctx_ok(ctx)) return code;
    ctx->status = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    return code;
}

lj_status lj_context_set_error(lj_context *ctx, lj_status code, const char *fmt, ...)
{
    if (!lji_ctx_ok(ctx)) return code == LJ_OK ? LJ_ERR_INVALID : code;
    if (code == LJ_OK) {
        lj_context_clear(ctx);
        return LJ_OK;
    }
    ctx->status = code;
    va_list ap;
    va_start(ap, fmt);
    if (fmt) vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    else ctx->msg[0] = '\0';
    va_end(ap);
    return code;
}

lj_status lji_nomem(lj_context *ctx, const char *op)
{
    /* never allocates: the message is written into the fixed buffer */
    return lji_error(ctx, LJ_ERR_NOMEM, "%s: %s", op, lji_nomem_msg);
}

lj_status lji_invalid_ctx(const lj_context *ctx)
{
    LJI_UNUSED(ctx);
    return LJ_ERR_INVALID;
}

/* One step of the failure-injection counter: true if this allocation fails. */
static bool lji_should_fail(lj_context *ctx)
{
    if (!lji_ctx_ok(ctx)) return false;
    ctx->alloc_count++;
    if (ctx->fail_at <= 0) return false;
    if (ctx->alloc_count == ctx->fail_at) return true;
    return ctx->fail_sticky && ctx->alloc_count > ctx->fail_at;
}

size_t lji_machine_bytes(void)
{
    static _Atomic size_t cached;
    size_t v = atomic_load(&cached);
    if (v) return v;
    struct sysinfo si;
    unsigned long long t = 0;
    if (sysinfo(&si) == 0)
        t = ((unsigned long long)si.totalram + (unsigned long long)si.totalswap) * (si.mem_unit ? si.mem_unit : 1);
    v = (t == 0 || t > SIZE_MAX) ? SIZE_MAX : (size_t)t;
    atomic_store(&cached, v);
    return v;
}

int64_t lji_reader_structure_limit(int64_t file_bytes)
{
    const int64_t floor_bytes = (int64_t)64 << 20;
    if (file_bytes < 0 || file_bytes > INT64_MAX / 64) return INT64_MAX;
    return file_bytes * 64 > floor_bytes ? file_bytes * 64 : floor_bytes;
}

static bool too_large(size_t nbytes)
{
    return nbytes > lji_machine_bytes();
}

void *lji_malloc(lj_context *ctx, size_t nbytes)
{
    if (lji_should_fail(ctx) || too_large(nbytes)) return NULL;
    return malloc(nbytes ? nbytes : 1);
}

void *lji_malloc_aligned(lj_context *ctx, size_t align, size_t nbytes)
{
    void *p = NULL;
    if (lji_should_fail(ctx) || too_large(nbytes)) return NULL;
    return posix_memalign(&p, align, nbytes ? nbytes : 1) ? NULL : p;
}

void *lji_calloc(lj_context *ctx, size_t n, size_t size)
{
    if (lji_should_fail(ctx)) return NULL;
    if (n == 0 || size == 0) return calloc(1, 1);
    if (n > SIZE_MAX / size || too_large(n * size)) return NULL;
    if (n * size <= LJI_SMALL_BYTES) return lji_zalloc_small(n * size);
    return calloc(n, size);
}

_Static_assert(sizeof(lji_vblock) == 16, "a value block's numbers start 16 bytes in");

static lji_vblock *vblock_new(lj_context *ctx, int64_t n, bool large)
{
    if (n < 0 || (uint64_t)n > (SIZE_MAX - sizeof(lji_vblock)) / sizeof(double)) return NULL;
    size_t nb = sizeof(lji_vblock) + (size_t)n * sizeof(double);
    lji_vblock *b = large ? lji_malloc_large(ctx, nb) : lji_calloc(ctx, 1, nb);
    if (!b) return NULL;
    atomic_init(&b->refs, 1);
    b->n = n;
    return b;
}

lji_vblock *lji_vblock_new(lj_context *ctx, int64_t n)
{
    return vblock_new(ctx, n, false);
}

lji_vblock *lji_vblock_new_large(lj_context *ctx, int64_t n)
{
    return vblock_new(ctx, n, true);
}

void *lji_realloc(lj_context *ctx, void *p, size_t nbytes)
{
    if (lji_should_fail(ctx) || too_large(nbytes)) return NULL;
    return realloc(p, nbytes ? nbytes : 1);
}

char *lji_strdup(lj_context *ctx, const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = lji_malloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

char *lji_strndup(lj_context *ctx, const char *s, size_t n)
{
    char *d = lji_malloc(ctx, n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

bool lji_alloc_gate(lj_context *ctx)
{
    lji_cholmod_msg[0] = '\0';
    return !lji_should_fail(ctx);
}

lj_status lji_cholmod_check(lj_context *ctx, const char *op)
{
    int st = ctx->cc.status;
    if (st == CHOLMOD_OK || st > 0) return LJ_OK; /* > 0 are warnings */
    ctx->cc.status = CHOLMOD_OK;
    if (st == CHOLMOD_OUT_OF_MEMORY) return lji_nomem(ctx, op);
    if (st == CHOLMOD_TOO_LARGE)
        return lji_error(ctx, LJ_ERR_OVERFLOW, "%s: CHOLMOD: problem too large", op);
    return lji_error(ctx, LJ_ERR_CHOLMOD, "%s: CHOLMOD: %s", op,
                     lji_cholmod_msg[0] ? lji_cholmod_msg : "error");
}

bool lji_size_ok(int64_t rows, int64_t cols, int64_t *n)
{
    int64_t r;
    if (rows < 0 || cols < 0 || !lji_mul_ok(rows, cols, &r)) return false;
    if ((uint64_t)r > SIZE_MAX / sizeof(double)) return false;
    if (n) *n = r;
    return true;
}

/* ---- workspace ---------------------------------------------------------- */

/* A workspace block of cap doubles, its data 64-byte aligned. */
static lji_block *block_alloc(size_t cap)
{
    size_t bytes = sizeof(lji_block) + cap * sizeof(double);
    bytes = (bytes + 63) & ~(size_t)63;
    return aligned_alloc(64, bytes);
}

lji_mark lji_work_mark(lj_context *ctx)
{
    if (ctx->work_depth == 0 && ctx->work && ctx->work->prev) {
        /* merge: replace all blocks by one holding their total */
        size_t total = ctx->work_total;
        lji_work_free_all(ctx);
        lji_block *b = block_alloc(total);
        if (b) {
            b->prev = NULL;
            b->cap = total;
            b->used = 0;
            ctx->work = b;
            ctx->work_total = total;
        }
    }
    ctx->work_depth++;
    lji_mark m = { ctx->work, ctx->work ? ctx->work->used : 0 };
    return m;
}

double *lji_work_push(lj_context *ctx, int64_t n)
{
    if (n < 0) return NULL;
    size_t need = (size_t)(n ? n : 1);
    need = (need + 7) & ~(size_t)7; /* keep 64-byte alignment of later pushes */
    lji_block *b = ctx->work;
    if (!b || b->cap - b->used < need) {
        size_t cap = need;
        if (cap < ctx->work_total) cap = ctx->work_total;
        if (cap < 4096) cap = 4096;
        if (cap > (SIZE_MAX - sizeof *b) / sizeof(double)) return NULL;
        if (lji_should_fail(ctx)) return NULL;
        lji_block *nb = block_alloc(cap);
        if (!nb) return NULL;
        nb->prev = b;
        nb->cap = cap;
        nb->used = 0;
        ctx->work = nb;
        ctx->work_total += cap;
        b = nb;
    }
    double *p = b->data + b->used;
    b->used += need;
    return p;
}

void lji_work_pop(lj_context *ctx, lji_mark m)
{
    /* blocks pushed after the mark stay allocated (they are merged at the
     * next top-level mark); they are simply emptied */
    for (lji_block *b = ctx->work; b && b != m.blk; b = b->prev) b->used = 0;
    if (m.blk) m.blk->used = m.used;
    if (ctx->work_depth > 0) ctx->work_depth--;
}

/* ---- string buffers ------------------------------------------------------ */

void lji_buf_init(lji_buf *b, lj_context *ctx)
{
    b->ctx = ctx;
    b->s = NULL;
    b->len = b->cap = 0;
    b->failed = false;
    b->limit = 0;
    b->truncated = false;
    b->math = false;
    b->drop_minus = false;
}

void lji_buf_init_room(lji_buf *t, const lji_buf *b, size_t used)
{
    lji_buf_init(t, b->ctx);
    if (b->limit) t->limit = b->limit > b->len + used + 1 ? b->limit - b->len - used : 1;
}

size_t lji_utf8_prefix(const char *s, size_t n)
{
    size_t len = strlen(s);
    if (len <= n) return len;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    /* not inside a braced group either (X^{-1} cut as X^{-), where LaTeX
     * would be left with a brace open: before the group and its ^ or _ */
    size_t open = n, depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '{' && !depth++) open = i;
        else if (s[i] == '}' && depth) depth--;
    }
    if (depth) n = open;
    if (n > 0 && (s[n - 1] == '^' || s[n - 1] == '_')) n--; /* "X^" */
    return n;
}

static bool lji_buf_reserve(lji_buf *b, size_t extra)
{
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap * 2 : 128;
    while (cap < b->len + extra + 1) cap *= 2;
    char *s = lji_realloc(b->ctx, b->s, cap);
    if (!s) {
        b->failed = true;
        return false;
    }
    b->s = s;
    b->cap = cap;
    return true;
}

void lji_buf_puts(lji_buf *b, const char *s)
{
    lji_buf_putn(b, s, strlen(s));
}

void lji_buf_putn(lji_buf *b, const char *s, size_t n)
{
    if (b->limit && b->len >= b->limit) {
        b->truncated = true;
        return;
    }
    if (!lji_buf_reserve(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void lji_buf_printf(lji_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp || b->limit) {
        lji_buf_puts(b, tmp); /* with a limit, long pieces are cut at 255 bytes */
        return;
    }
    if (!lji_buf_reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *lji_buf_finish(lji_buf *b, const char *op)
{
    if (!b->failed && !b->s) lji_buf_reserve(b, 0);
    if (b->failed) {
        free(b->s);
        b->s = NULL;
        lji_nomem(b->ctx, op);
        return NULL;
    }
    b->s[b->len] = '\0';
    char *s = b->s;
    b->s = NULL;
    return s;
}

void lji_buf_discard(lji_buf *b)
{
    free(b->s);
    b->s = NULL;
}
