/* The operator object: allocation, reference counting, the public entry
 * points that check handles and shapes once and then dispatch to the kind's
 * table, and helpers shared by the kinds. */
#include "config.h"
#include "op.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../core/lji_blas.h"
#include <inttypes.h>
#include <ctype.h>
#include <float.h>
#include <math.h>

/* ---- life cycle ---------------------------------------------------------- */

lj_op *lji_op_new_ext(lj_context *ctx, const lji_kind *k, int64_t rows, int64_t cols, int nchild,
                      size_t extra, const char *op)
{
    /* one allocation: the header, the child pointers, then `extra` bytes
     * 64-byte aligned for the node's data and labels */
    size_t head = sizeof(lj_op) + (size_t)(nchild > 0 ? nchild : 0) * sizeof(lj_op *);
    size_t off = (head + 63) & ~(size_t)63;
    if (extra > SIZE_MAX - off - 64) {
        lji_nomem(ctx, op);
        return NULL;
    }
    size_t total = extra ? off + extra : head;
    lj_op *a = extra ? lji_malloc(ctx, total) : lji_calloc(ctx, 1, total);
    if (!a) {
        lji_nomem(ctx, op);
        return NULL;
    }
    if (extra) memset(a, 0, head); /* the data part is the caller's to fill */
    if (extra) lji_advise_huge((char *)a + off, extra);
    a->block_end = (char *)a + total;
    a->extra = extra ? (char *)a + off : NULL;
    if (nchild > 0) a->child = (lj_op **)(a + 1);
    a->magic = LJI_OP_MAGIC;
    atomic_init(&a->refs, 1);
    a->kind = k;
    a->rows = rows;
    a->cols = cols;
    a->nchild = nchild;
    return a;
}

lj_op *lji_op_new(lj_context *ctx, const lji_kind *k, int64_t rows, int64_t cols, int nchild,
                  const char *op)
{
    return lji_op_new_ext(ctx, k, rows, cols, nchild, 0, op);
}

char *lji_op_put_label(lj_op *a, char **at, const char *label)
{
    if (!label) return NULL;
    size_t n = strlen(label) + 1;
    char *d = *at;
    memcpy(d, label, n);
    *at += n;
    return d;
}

#define LJI_HASH_SAMPLES 16

/* n entries of `size` bytes at p, hashed by at most LJI_HASH_SAMPLES of
 * them, evenly spaced, the last included. */
static uint64_t hash_sample(uint64_t h, const void *p, int64_t n, size_t size)
{
    const char *c = p;
    h = lji_hash_u64(h, (uint64_t)n);
    if (n <= LJI_HASH_SAMPLES) return lji_hash_bytes(h, c, (size_t)n * size);
    int64_t step = (n - 1) / (LJI_HASH_SAMPLES - 1);
    for (int64_t i = 0; i < n; i += step) h = lji_hash_bytes(h, c + (size_t)i * size, size);
    return lji_hash_bytes(h, c + (size_t)(n - 1) * size, size);
}

static uint64_t op_hash(const lj_op *a)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = lji_hash_u64(h, (uint64_t)a->kind->id);
    h = lji_hash_u64(h, (uint64_t)a->rows);
    h = lji_hash_u64(h, (uint64_t)a->cols);
    h = lji_hash_u64(h, (uint64_t)a->m);
    h = lji_hash_u64(h, (uint64_t)a->n);
    for (int i = 0; i < a->nchild; i++) {
        h = lji_hash_u64(h, lji_op_hash(a->child[i]));
        if (a->coef) h = lji_hash_bytes(h, &a->coef[i], sizeof(double));
    }
    if (lji_is(a, &lji_kind_scaled)) h = lji_hash_bytes(h, &a->alpha, sizeof a->alpha);
    /* numeric data by a sample of at most LJI_HASH_SAMPLES entries: the
     * hash only filters candidates for lji_equal, which compares all of
     * it, and building an operator must not cost a pass over its data */
    if (a->data && lji_is(a, &lji_kind_dense))
        for (int64_t j = 0; j < a->cols; j += a->cols / 4 + 1)
            h = hash_sample(h, a->data + j * a->ld, a->rows, sizeof(double));
    else if (a->data && lji_is(a, &lji_kind_diag))
        h = hash_sample(h, a->data, a->rows, sizeof(double));
    else if (lji_is(a, &lji_kind_rank1)) {
        h = hash_sample(h, a->data, a->rows, sizeof(double));
        h = hash_sample(h, a->data2, a->cols, sizeof(double));
    }
    if (a->idx) h = hash_sample(h, a->idx, a->rows, sizeof(int64_t));
    if (lji_is(a, &lji_kind_sparse)) {
        int64_t nz = ((int64_t *)a->sp.p)[a->cols];
        h = hash_sample(h, a->sp.i, nz, sizeof(int64_t));
        h = hash_sample(h, a->sp.x, nz, sizeof(double));
    }
    return h ? h : 1; /* 0 stands for not computed yet */
}

/* Threads that share a node may compute its hash at the same time: they
 * compute the same number, and the relaxed atomic store makes that safe. */
uint64_t lji_op_hash(const lj_op *a)
{
    uint64_t h = atomic_load_explicit(&a->hash, memory_order_relaxed);
    if (!h) {
        h = op_hash(a);
        atomic_store_explicit(&((lj_op *)a)->hash, h, memory_order_relaxed);
    }
    return h;
}

void lji_op_rehash(lj_op *a)
{
    atomic_store_explicit(&a->hash, 0, memory_order_relaxed); /* computed again when asked for */
    lji_refresh_kernel(a);
}

void lji_op_seal(lj_op *a)
{
    bool ex = true;
    int64_t n = a->kind->nnz(a, &ex), full;
    if (!lji_mul_ok(a->rows, a->cols, &full)) full = INT64_MAX;
    if (n > full || n < 0) {
        n = full;
        ex = false;
    }
    a->nnz = n;
    a->nnz_exact = ex;
    a->kind->cost(a, &a->flops, &a->bytes);
}

lj_op *lj_op_retain(const lj_op *ca)
{
    lj_op *a = (lj_op *)ca;
    if (lji_op_ok(a)) atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    return a;
}

/* Iterative: dying nodes go on a work list, so that freeing a deep tree
 * does not recurse. */
void lj_op_free(lj_op **pa)
{
    if (!pa || !*pa) return;
    lj_op *a = *pa;
    *pa = NULL;
    if (!lji_op_ok(a)) return;
    if (!lji_unref(&a->refs)) return;
    a->next_dead = NULL;
    lj_op *work = a;
    while (work) {
        lj_op *x = work;
        work = x->next_dead;
        for (int i = 0; i < x->nchild; i++) {
            lj_op *c = x->child[i];
            if (c && lji_op_ok(c) && lji_unref(&c->refs)) {
                c->next_dead = work;
                work = c;
            }
        }
        /* parts inside the node's own allocation are not freed apart; most
         * parts of most nodes are absent, and a call for each costs more
         * than the test */
#define LJI_OWN(x, p) ((uintptr_t)(p) >= (uintptr_t)(x) && (uintptr_t)(p) < (uintptr_t)(x)->block_end)
#define LJI_DROP(p) do { if (p) free(p); } while (0)
        if (!LJI_OWN(x, x->child)) LJI_DROP(x->child);
        if (!LJI_OWN(x, x->label)) LJI_DROP(x->label);
        if (!x->borrowed && !LJI_OWN(x, x->data)) LJI_DROP(x->data);
        lji_vblock_release(&x->keep);
        /* the parts few kinds have, asked once */
        if ((uintptr_t)x->coef | (uintptr_t)x->label2 | (uintptr_t)x->data2 | (uintptr_t)x->idx |
            (uintptr_t)x->sp.p | (uintptr_t)x->sp.i | (uintptr_t)x->sp.x) {
            LJI_DROP(x->coef);
            if (!LJI_OWN(x, x->label2)) LJI_DROP(x->label2);
            if (!LJI_OWN(x, x->data2)) LJI_DROP(x->data2);
            LJI_DROP(x->idx);
            LJI_DROP(x->sp.p);
            LJI_DROP(x->sp.i);
            LJI_DROP(x->sp.x);
        }
#undef LJI_DROP
#undef LJI_OWN
        lji_kernel_free(x);
        x->magic = LJI_DEAD_MAGIC;
        free(x);
    }
}

lj_status lji_check_args(lj_context *ctx, const char *op, int n, const lj_op *const *ops)
{
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (n < 0 || (n > 0 && !ops)) return lji_error(ctx, LJ_ERR_INVALID, "%s: no operands", op);
    for (int i = 0; i < n; i++) {
        if (!ops[i]) return lji_error(ctx, LJ_ERR_INVALID, "%s: operand %d is NULL", op, i + 1);
        if (!lji_op_ok(ops[i]))
            return lji_error(ctx, LJ_ERR_INVALID, "%s: operand %d is not a live operator", op,
                             i + 1);
    }
    return LJ_OK;
}

/* ---- queries ------------------------------------------------------------- */

int64_t lj_op_rows(const lj_op *a) { return lji_op_ok(a) ? a->rows : -1; }
int64_t lj_op_cols(const lj_op *a) { return lji_op_ok(a) ? a->cols : -1; }
int lj_op_kind_of(const lj_op *a) { return lji_op_ok(a) ? (int)a->kind->id : -1; }
const char *lj_op_kind_name(const lj_op *a) { return lji_op_ok(a) ? a->kind->name : "invalid"; }
int lj_op_n_children(const lj_op *a) { return lji_op_ok(a) ? a->nchild : 0; }

const lj_op *lj_op_child(const lj_op *a, int i)
{
    if (!lji_op_ok(a) || i < 0 || i >= a->nchild) return NULL;
    return a->child[i];
}


/* Equality walks two DAGs side by side; distinct but equal operators that
 * share their subtrees (the Jacobians of nested matrix powers) would meet
 * the same pair of nodes along many paths. Past a few hundred steps of one
 * comparison, the pairs already compared are remembered (a table of the
 * calling thread), so each pair is compared once. */
typedef struct {
    const lj_op *a, *b;
    bool equal;
} eq_slot;

static _Thread_local struct {
    eq_slot *slot;
    size_t cap, used;
    int64_t steps;
    int depth;
} eqm;

static eq_slot *eq_find(const lj_op *a, const lj_op *b, bool create)
{
    if (create && (eqm.used + 1) * 2 > eqm.cap) {
        size_t cap = eqm.cap ? eqm.cap * 2 : 1024;
        eq_slot *s = calloc(cap, sizeof *s);
        if (!s) return NULL;
        for (size_t k = 0; k < eqm.cap; k++)
            if (eqm.slot[k].a) {
                uint64_t h = ((uint64_t)(uintptr_t)eqm.slot[k].a * 31 + (uint64_t)(uintptr_t)eqm.slot[k].b) *
                             0x9e3779b97f4a7c15ull;
                size_t i = (size_t)(h >> 17) & (cap - 1);
                while (s[i].a) i = (i + 1) & (cap - 1);
                s[i] = eqm.slot[k];
            }
        free(eqm.slot);
        eqm.slot = s;
        eqm.cap = cap;
    }
    if (!eqm.cap) return NULL;
    uint64_t h = ((uint64_t)(uintptr_t)a * 31 + (uint64_t)(uintptr_t)b) * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 17) & (eqm.cap - 1);
    while (eqm.slot[i].a && !(eqm.slot[i].a == a && eqm.slot[i].b == b)) i = (i + 1) & (eqm.cap - 1);
    if (eqm.slot[i].a) return &eqm.slot[i];
    if (!create) return NULL;
    eqm.slot[i].a = a;
    eqm.slot[i].b = b;
    eqm.used++;
    return &eqm.slot[i];
}

static bool equal_rec(const lj_op *a, const lj_op *b)
{
    if (a == b) return true;
    if (a->kind != b->kind || a->rows != b->rows || a->cols != b->cols || a->nchild != b->nchild ||
        lji_op_hash(a) != lji_op_hash(b))
        return false;
    bool memo = a->nchild > 0 && ++eqm.steps > 256;
    eq_slot *m = memo ? eq_find(a, b, false) : NULL;
    if (m) return m->equal;
    bool eq = true;
    for (int i = 0; eq && i < a->nchild; i++) {
        if (!equal_rec(a->child[i], b->child[i])) eq = false;
        else if (a->coef && a->coef[i] != b->coef[i]) eq = false;
    }
    if (eq) eq = a->kind->equal ? a->kind->equal(a, b) : true;
    if (memo && (m = eq_find(a, b, true))) m->equal = eq;
    return eq;
}

bool lji_equal(const lj_op *a, const lj_op *b)
{
    if (a == b) return true;
    if (eqm.depth++ == 0) eqm.steps = 0;
    bool eq = equal_rec(a, b);
    if (--eqm.depth == 0 && eqm.slot) {
        free(eqm.slot);
        eqm.slot = NULL;
        eqm.cap = eqm.used = 0;
    }
    return eq;
}

int lj_op_equal(const lj_op *a, const lj_op *b)
{
    if (!lji_op_ok(a) || !lji_op_ok(b)) return 0;
    return lji_equal(a, b);
}

int64_t lji_nnz(const lj_op *J, bool *exact)
{
    if (exact) *exact = J->nnz_exact;
    return J->nnz;
}

int64_t lj_op_nnz(lj_context *ctx, const lj_op *a, int *exact)
{
    if (lji_check_args(ctx, "nnz", 1, &a) != LJ_OK) return -1;
    bool ex;
    int64_t n = lji_nnz(a, &ex);
    if (exact) *exact = ex;
    return n;
}

void lji_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = J->flops;
    *bytes = J->bytes;
}

lj_status lj_op_cost(lj_context *ctx, const lj_op *a, double *flops, double *bytes)
{
    lj_status st = lji_check_args(ctx, "cost", 1, &a);
    if (st != LJ_OK) return st;
    double f, b;
    lji_cost(a, &f, &b);
    if (flops) *flops = f;
    if (bytes) *bytes = b;
    return LJ_OK;
}

/* ---- apply ----------------------------------------------------------------- */

void lji_scale_block(int64_t r, int64_t k, double beta, double *Y, int64_t ldy)
{
    if (beta == 1.0) return;
    for (int64_t j = 0; j < k; j++) {
        double *y = Y + j * ldy;
        if (beta == 0.0)
            for (int64_t i = 0; i < r; i++) y[i] = 0.0;
        else
            for (int64_t i = 0; i < r; i++) y[i] *= beta;
    }
}

/* Sums and stacks with less work than this (flops plus bytes of one apply
 * of all vectors) are applied term by term on one thread; at most this
 * many doubles of group buffers are taken from the workspace. */
#define LJI_TERMS_MT_MIN 4e6
#define LJI_TERMS_BUF_MAX ((int64_t)1 << 24)

int lji_apply_terms(lj_context *ctx, const lj_op *J, int n, lji_term_fn term, bool trans, int64_t k, double alpha,
                    const double *X, int64_t ldx, double beta, double *Y, int64_t ldy, lj_status *st)
{
    const int64_t out = trans ? J->cols : J->rows;
    const int ng = n < LJI_TERM_GROUPS ? n : LJI_TERM_GROUPS;
    if (ng < 2 || (J->flops + J->bytes) * (double)k < LJI_TERMS_MT_MIN || out * k * (ng - 1) > LJI_TERMS_BUF_MAX ||
        out * k < 4096)
        return 0;
    /* the grouping depends on the sizes alone, so its results are the same
     * on any number of threads; the threads it runs on are what there are */
    int nt = lji_threads(ctx);
    if (nt > ng) nt = ng;
    if (nt > 1) nt = lji_helpers(ctx, nt);
    lji_mark mk[LJI_TERM_GROUPS];
    double *buf[LJI_TERM_GROUPS] = { NULL };
    lj_status gst[LJI_TERM_GROUPS];
    for (int g = 0; g < ng; g++) gst[g] = LJ_OK;
    lji_mark m0 = lji_work_mark(ctx);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int t = 0; t < nt; t++) {
        lj_context *c = t == 0 ? ctx : ctx->helper[t - 1];
        if (t > 0) mk[t] = lji_work_mark(c);
        for (int g = t; g < ng; g += nt) {
            int i0 = (int)((int64_t)n * g / ng), i1 = (int)((int64_t)n * (g + 1) / ng);
            double *y = Y;
            int64_t ld = ldy;
            double b = beta;
            if (g > 0) {
                y = buf[g] = lji_work_push(c, out * k);
                ld = out;
                b = 0.0;
                if (!y) {
                    gst[g] = lji_nomem(c, "apply");
                    continue;
                }
            }
            for (int i = i0; i < i1 && gst[g] == LJ_OK; i++)
                gst[g] = term(c, J, i, trans, k, alpha, X, ldx, i == i0 ? b : 1.0, y, ld);
        }
    }
    lj_status s = LJ_OK;
    for (int g = 0; g < ng && s == LJ_OK; g++) s = gst[g];
    s = lji_helpers_join(ctx, nt, s);
    for (int g = 1; g < ng && s == LJ_OK; g++) /* the groups added in order */
        for (int64_t j = 0; j < k; j++) {
            double *restrict y = Y + j * ldy;
            const double *restrict b = buf[g] + j * out;
            for (int64_t i = 0; i < out; i++) y[i] += b[i];
        }
    for (int t = 1; t < nt; t++) lji_work_pop(ctx->helper[t - 1], mk[t]);
    lji_work_pop(ctx, m0);
    *st = s;
    return 1;
}

int lji_apply_blocks(lj_context *ctx, const lj_op *J, int n, lji_term_fn block, bool trans, int64_t k,
                     double alpha, const double *X, int64_t ldx, double beta, double *Y, int64_t ldy,
                     lj_status *st)
{
    int nt = n >= 2 && (J->flops + J->bytes) * (double)k >= LJI_TERMS_MT_MIN ? lji_threads(ctx) : 1;
    if (nt > n) nt = n;
    if (nt > 1) nt = lji_helpers(ctx, nt);
    if (nt <= 1) return 0;
    lj_status s = LJ_OK;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (int i = 0; i < n; i++) {
#ifdef _OPENMP
        int t = omp_get_thread_num();
#else
        int t = 0;
#endif
        lj_context *c = t == 0 ? ctx : ctx->helper[t - 1];
        lji_mark mk = lji_work_mark(c);
        lj_status r = block(c, J, i, trans, k, alpha, X, ldx, beta, Y, ldy);
        lji_work_pop(c, mk);
        if (t == 0 && r != LJ_OK) s = r;
    }
    *st = lji_helpers_join(ctx, nt, s);
    return 1;
}

lj_status lji_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                    const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    int64_t out = trans ? J->cols : J->rows;
    if (k == 0 || out == 0) return LJ_OK;
    if (alpha == 0.0 || (trans ? J->rows : J->cols) == 0) {
        lji_scale_block(out, k, beta, Y, ldy);
        return LJ_OK;
    }
    lji_apply_fn fast = lji_kernel(J);
    return (fast ? fast : J->kind->apply)(ctx, J, trans, k, alpha, X, ldx, beta, Y, ldy);
}

/* Dense (or transposed dense) A is handled by one GEMM; anything else by
 * transposing X, multi-applying op(A) and transposing back. */
lj_status lji_apply_right(lj_context *ctx, const lj_op *A, bool trans, int64_t r, double alpha,
                          const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    int64_t oc = trans ? A->rows : A->cols; /* columns of X */
    int64_t orow = trans ? A->cols : A->rows; /* columns of Y */
    if (r == 0 || orow == 0) return LJ_OK;
    const lj_op *D = A;
    bool t = trans;
    if (lji_is(D, &lji_kind_transpose) && lji_is(D->child[0], &lji_kind_dense)) {
        D = D->child[0];
        t = !t;
    }
    if (lji_is(D, &lji_kind_dense)) {
        /* Y = alpha·X·op(D)^T: op(D)^T is D^T when t = 0 */
        return lji_gemm(ctx, "apply", false, !t, r, orow, oc, alpha, X, ldx, D->data, D->ld, beta,
                        Y, ldy);
    }
    if (lji_is(A, &lji_kind_identity)) {
        for (int64_t j = 0; j < orow; j++) {
            const double *x = X + j * ldx;
            double *y = Y + j * ldy;
            if (beta == 0.0)
                for (int64_t i = 0; i < r; i++) y[i] = alpha * x[i];
            else
                for (int64_t i = 0; i < r; i++) y[i] = alpha * x[i] + beta * y[i];
        }
        return LJ_OK;
    }
    lji_mark mk = lji_work_mark(ctx);
    int64_t n1, n2;
    if (!lji_size_ok(oc, r, &n1) || !lji_size_ok(orow, r, &n2)) {
        lji_work_pop(ctx, mk);
        return lji_error(ctx, LJ_ERR_OVERFLOW, "apply: workspace of (%" PRId64 "×%" PRId64
                         ") overflows", oc > orow ? oc : orow, r);
    }
    double *Xt = lji_work_push(ctx, n1);
    double *Zt = lji_work_push(ctx, n2);
    if (!Xt || !Zt) {
        lji_work_pop(ctx, mk);
        return lji_nomem(ctx, "apply");
    }
    lji_transpose(r, oc, 1.0, X, ldx, 0.0, Xt, oc);
    lj_status st = lji_apply(ctx, A, trans, r, 1.0, Xt, oc, 0.0, Zt, orow);
    if (st == LJ_OK) lji_transpose(orow, r, alpha, Zt, orow, beta, Y, ldy);
    lji_work_pop(ctx, mk);
    return st;
}

/* Multi-vector applies with less work than this (flops plus bytes of the
 * cost estimate, all vectors) stay on one thread. */
#define LJI_APPLY_MT_MIN 4e6

/* Vectors [k·t/nt, k·(t+1)/nt) on thread t, with ctx (t = 0) or a helper
 * context: each thread's columns are computed as one thread would compute
 * that many vectors. */
static lj_status apply_parallel(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                                const double *X, int64_t ldx, double beta, double *Y, int64_t ldy,
                                int nt)
{
    lj_status st = LJ_OK;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static)
#endif
    for (int t = 0; t < nt; t++) {
        lj_context *c = t == 0 ? ctx : ctx->helper[t - 1];
        int64_t k0 = k * t / nt, k1 = k * (t + 1) / nt;
        lji_mark mk = lji_work_mark(c);
        lj_status s = lji_apply(c, J, trans, k1 - k0, alpha, X + k0 * ldx, ldx, beta, Y + k0 * ldy, ldy);
        lji_work_pop(c, mk);
        if (t == 0) st = s;
    }
    return lji_helpers_join(ctx, nt, st);
}

static lj_status lji_apply_checked(lj_context *ctx, const char *op, const lj_op *J, int trans,
                                   int64_t k, double alpha, const double *X, int64_t ldx,
                                   double beta, double *Y, int64_t ldy)
{
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    int64_t in = trans ? J->rows : J->cols, out = trans ? J->cols : J->rows;
    if (k < 0) return lji_error(ctx, LJ_ERR_INVALID, "%s: negative vector count %" PRId64, op, k);
    if (k > 0 && ((in > 0 && !X) || (out > 0 && !Y)))
        return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL vector for %s" LJI_SHP, op,
                         trans ? "J^T " : "J ", J->rows, J->cols);
    if (ldx < (in > 1 ? in : 1) || ldy < (out > 1 ? out : 1))
        return lji_error(ctx, LJ_ERR_SHAPE,
                         "%s: leading dimensions %" PRId64 ", %" PRId64 " too small for %s" LJI_SHP,
                         op, ldx, ldy, trans ? "J^T, J " : "J ", J->rows, J->cols);
    if (k > 0 && out > 0 && X && Y) {
        const char *xs = (const char *)X, *xe = (const char *)(X + (k - 1) * ldx + in);
        const char *ys = (const char *)Y, *ye = (const char *)(Y + (k - 1) * ldy + out);
        if (in > 0 && xs < ye && ys < xe)
            return lji_error(ctx, LJ_ERR_INVALID, "%s: x and y overlap", op);
    }
    int nt = k >= 2 ? lji_threads(ctx) : 1;
    if (nt > 1) {
        /* several vectors and enough work: the vectors split among threads,
         * each applying its share with its own context */
        if ((J->flops + J->bytes) * (double)k < LJI_APPLY_MT_MIN) nt = 1;
        if (nt > k / 2) nt = (int)(k / 2); /* two vectors or more each */
        if (nt > 1) nt = lji_helpers(ctx, nt);
    }
    if (nt > 1) return apply_parallel(ctx, J, trans != 0, k, alpha, X, ldx, beta, Y, ldy, nt);
    lji_mark mk = lji_work_mark(ctx);
    st = lji_apply(ctx, J, trans != 0, k, alpha, X, ldx, beta, Y, ldy);
    lji_work_pop(ctx, mk);
    return st;
}

lj_status lj_op_apply(lj_context *ctx, const lj_op *J, int trans, double alpha, const double *x,
                      double beta, double *y)
{
    if (!lji_op_ok(J)) return lji_check_args(ctx, "apply", 1, &J);
    int64_t in = trans ? J->rows : J->cols, out = trans ? J->cols : J->rows;
    /* The common case of a node with a fused kernel straight to it: the
     * checks lji_apply_checked makes, all passed (else it reports which
     * failed), and no workspace mark (fused kernels take none). For small
     * operators this is most of an apply's fixed cost. */
    if (x && y && in > 0 && out > 0 && alpha != 0.0 && (x + in <= y || y + out <= x) && lji_ctx_ok(ctx)) {
        lji_apply_fn f = lji_kernel(J);
        if (f) return f(ctx, J, trans != 0, 1, alpha, x, in, beta, y, out);
    }
    return lji_apply_checked(ctx, "apply", J, trans, 1, alpha, x, in > 1 ? in : 1, beta, y,
                             out > 1 ? out : 1);
}

lj_status lj_op_apply_multi(lj_context *ctx, const lj_op *J, int trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply_checked(ctx, "apply_multi", J, trans, k, alpha, X, ldx, beta, Y, ldy);
}

/* ---- materialisation ------------------------------------------------------- */

/* Puts an array of n int64s or doubles of 2 MiB pages (hb bytes, from
 * lji_huge_bytes) where CHOLMOD's one-item array *arr was, with CHOLMOD's
 * own bookkeeping (cholmod_l_free_sparse frees it as its own). */
static bool swap_in_huge(lj_context *ctx, void **arr, size_t n, size_t hb)
{
    bool fail;
    void *h = lji_take_array(ctx, n * sizeof(int64_t), &fail); /* pages the process has: lj_sparse_free */
    if (!h && !fail) h = lji_malloc_huge(ctx, hb);
    if (!h) return false;
    cholmod_l_free(1, sizeof(int64_t), *arr, &ctx->cc);
    *arr = h;
    ctx->cc.malloc_count++;
    ctx->cc.memory_inuse += n * sizeof(int64_t);
    if (ctx->cc.memory_usage < ctx->cc.memory_inuse) ctx->cc.memory_usage = ctx->cc.memory_inuse;
    return true;
}

cholmod_sparse *lji_sparse_alloc(lj_context *ctx, int64_t rows, int64_t cols, int64_t nz,
                                 const char *op)
{
    if (!lji_alloc_gate(ctx)) {
        lji_nomem(ctx, op);
        return NULL;
    }
    /* A result is written whole at once: where CHOLMOD frees with free(),
     * its arrays of 2 MiB or more are 2 MiB pages from their start
     * (lji_huge_bytes, lji_malloc_huge); the others are CHOLMOD's, advised
     * inside when large (lji_advise_huge). */
    bool sizes_ok = cols >= 0 && nz >= 0 && (uint64_t)cols < SIZE_MAX / 32 && (uint64_t)nz < SIZE_MAX / 32;
    size_t pb = sizes_ok ? ((size_t)cols + 1) * sizeof(int64_t) : 0, xb = sizes_ok ? (size_t)nz * sizeof(double) : 0;
    size_t total = pb + 2 * xb, hp = 0, hx = 0;
    if (total >= ((size_t)2 << 20) && lji_cholmod_frees_with_free()) {
        hp = lji_huge_bytes(pb, total);
        hx = lji_huge_bytes(xb, total);
    }
    cholmod_sparse *s = cholmod_l_allocate_sparse((size_t)rows, hp ? 0 : (size_t)cols, hx ? 0 : (size_t)nz,
                                                  1, 1, 0, CHOLMOD_REAL, &ctx->cc);
    if (!s) {
        lji_cholmod_check(ctx, op);
        if (ctx->status == LJ_OK) lji_nomem(ctx, op);
        return NULL;
    }
    if (hp) {
        if (!swap_in_huge(ctx, &s->p, (size_t)cols + 1, hp)) goto nomem;
        s->ncol = (size_t)cols;
        memset(s->p, 0, pb); /* CHOLMOD's own p starts all zero */
    } else
        lji_advise_huge(s->p, pb);
    if (hx) {
        /* i first: the struct is consistent (nzmax 1) until both are in */
        if (!swap_in_huge(ctx, &s->i, (size_t)nz, hx)) goto nomem;
        if (!swap_in_huge(ctx, &s->x, (size_t)nz, hx)) {
            /* give i back as CHOLMOD's size for nzmax 1 would not match */
            free(s->i);
            ctx->cc.malloc_count--;
            ctx->cc.memory_inuse -= (size_t)nz * sizeof(int64_t);
            s->i = NULL;
            goto nomem;
        }
        s->nzmax = (size_t)nz;
    } else {
        lji_advise_huge(s->i, xb);
        lji_advise_huge(s->x, xb);
    }
    return s;
nomem:
    cholmod_l_free_sparse(&s, &ctx->cc);
    lji_nomem(ctx, op);
    return NULL;
}

/* Column j's rows ascending, its values with them: insertion where short,
 * else a merge sort through wi/wx (room for the column). */
void lji_sort_column(int64_t *ii, double *xx, int64_t len, int64_t *wi, double *wx)
{
    if (len <= 32) {
        for (int64_t a = 1; a < len; a++) {
            int64_t r = ii[a], b = a;
            double v = xx[a];
            for (; b > 0 && ii[b - 1] > r; b--) ii[b] = ii[b - 1], xx[b] = xx[b - 1];
            ii[b] = r, xx[b] = v;
        }
        return;
    }
    /* runs of 16 by insertion, then merged pairwise back and forth */
    const int64_t run = 16;
    for (int64_t a = 0; a < len; a += run) lji_sort_column(ii + a, xx + a, len - a < run ? len - a : run, wi, wx);
    int64_t *si = ii, *di = wi;
    double *sx = xx, *dx = wx;
    for (int64_t w = run; w < len; w *= 2) {
        for (int64_t a = 0; a < len; a += 2 * w) {
            int64_t m = a + w < len ? a + w : len, e = a + 2 * w < len ? a + 2 * w : len, l = a, r = m, o = a;
            while (l < m && r < e) {
                bool left = si[l] <= si[r];
                int64_t from = left ? l++ : r++;
                di[o] = si[from], dx[o++] = sx[from];
            }
            for (; l < m; l++) di[o] = si[l], dx[o++] = sx[l];
            for (; r < e; r++) di[o] = si[r], dx[o++] = sx[r];
        }
        int64_t *ti = si;
        double *tx = sx;
        si = di, sx = dx, di = ti, dx = tx;
    }
    if (si != ii) {
        memcpy(ii, si, (size_t)len * sizeof *ii);
        memcpy(xx, sx, (size_t)len * sizeof *xx);
    }
}

cholmod_sparse *lji_sparse_canon(lj_context *ctx, cholmod_sparse *s, const char *op)
{
    if (!s) return NULL;
    if (s->packed) {
        /* each unsorted column sorted in place, with room for the longest
         * (CHOLMOD's cholmod_l_sort transposes twice: a second matrix) */
        int64_t *p = s->p, *ii = s->i, longest = 0;
        for (size_t j = 0; j < s->ncol; j++)
            for (int64_t q = p[j] + 1; q < p[j + 1]; q++)
                if (ii[q] <= ii[q - 1]) {
                    if (p[j + 1] - p[j] > longest) longest = p[j + 1] - p[j];
                    break;
                }
        if (longest > 32) {
            int64_t *wi = lji_malloc(ctx, (size_t)longest * sizeof *wi);
            double *wx = lji_malloc(ctx, (size_t)longest * sizeof *wx);
            if (!wi || !wx) {
                free(wi);
                free(wx);
                lji_nomem(ctx, op);
                cholmod_l_free_sparse(&s, &ctx->cc);
                return NULL;
            }
            lji_sparse_sort_columns(s, wi, wx);
            free(wi);
            free(wx);
        } else if (longest > 0)
            lji_sparse_sort_columns(s, NULL, NULL);
        s->sorted = 1;
        return s;
    }
    /* cholmod_l_sort sorts and packs (a double transpose); duplicates
     * never occur in CHOLMOD's results */
    if (!lji_alloc_gate(ctx) || !cholmod_l_sort(s, &ctx->cc)) {
        if (ctx->cc.status < 0) lji_cholmod_check(ctx, op);
        if (ctx->status == LJ_OK) lji_nomem(ctx, op);
        cholmod_l_free_sparse(&s, &ctx->cc);
        return NULL;
    }
    s->sorted = 1;
    return s;
}

void lji_sparse_sort_columns(cholmod_sparse *s, int64_t *wi, double *wx)
{
    int64_t *p = s->p, *ii = s->i;
    double *xx = s->x;
    for (size_t j = 0; j < s->ncol; j++)
        for (int64_t q = p[j] + 1; q < p[j + 1]; q++)
            if (ii[q] <= ii[q - 1]) {
                lji_sort_column(ii + p[j], xx + p[j], p[j + 1] - p[j], wi, wx);
                break;
            }
}

cholmod_sparse *lji_sparse_full(lj_context *ctx, const lj_op *J, const char *what)
{
    int64_t nz;
    if (!lji_size_ok(J->rows, J->cols, &nz)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "to_sparse: %s " LJI_SHP " overflows", what, J->rows, J->cols);
        return NULL;
    }
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, nz, "to_sparse");
    if (!s) return NULL;
    int64_t *p = s->p, *ii = s->i, q = 0;
    for (int64_t j = 0; j < J->cols; j++) {
        p[j] = q;
        for (int64_t i = 0; i < J->rows; i++) ii[q++] = i;
    }
    p[J->cols] = q;
    return s;
}

void lji_cost_of_children(const lj_op *J, double *flops, double *bytes)
{
    double f = 0, b = 0;
    for (int i = 0; i < J->nchild; i++) {
        double fi, bi;
        lji_cost(J->child[i], &fi, &bi);
        f += fi;
        b += bi;
    }
    *flops = f;
    *bytes = b;
}

/* Materialising a shared subtree once. J is a DAG: a Jacobian's inner
 * Jacobian is one node that the terms of a sum may each multiply, and a
 * walk of J as a tree materialises it once per path (2^k times for k
 * nested sums). lj_op_to_sparse first counts each node's parents in J;
 * a node with two or more and children of its own is materialised once
 * and kept for the call, its other parents given copies. The kept
 * matrices hold at most LJI_MEMO_ENTRIES entries: past that, nodes are
 * materialised as often as they are reached, as before. */
#define LJI_MEMO_ENTRIES ((int64_t)1 << 24)

typedef struct {
    const lj_op *node;
    int parents;
    cholmod_sparse *s; /* kept, once materialised */
} memo_slot;

struct lji_memo {
    memo_slot *slot;
    int64_t cap, entries;
};

static memo_slot *memo_find(struct lji_memo *m, const lj_op *a, bool add)
{
    uint64_t h = ((uint64_t)(uintptr_t)a >> 4) * 0x9E3779B97F4A7C15ull;
    for (int64_t j = (int64_t)(h >> 20) & (m->cap - 1);; j = (j + 1) & (m->cap - 1)) {
        if (m->slot[j].node == a) return &m->slot[j];
        if (!m->slot[j].node) {
            if (!add) return NULL;
            m->slot[j].node = a;
            return &m->slot[j];
        }
    }
}

static void memo_free(lj_context *ctx, struct lji_memo *m)
{
    for (int64_t j = 0; m->slot && j < m->cap; j++)
        if (m->slot[j].s) cholmod_l_free_sparse(&m->slot[j].s, &ctx->cc);
    free(m->slot);
}

/* each node's parents in J counted (a node's first visit walks its
 * children); false when out of memory, or when J is too large to count
 * (then no node is kept) */
static bool memo_count(lj_context *ctx, struct lji_memo *m, const lj_op *J)
{
    int64_t n = 0, capst = 64, sp = 0;
    const lj_op **st = lji_malloc(ctx, (size_t)capst * sizeof *st);
    if (!st) return false;
    m->cap = 64;
    m->slot = lji_calloc(ctx, (size_t)m->cap, sizeof *m->slot);
    bool ok = m->slot != NULL;
    if (ok) st[sp++] = J, memo_find(m, J, true);
    while (ok && sp > 0) {
        const lj_op *a = st[--sp];
        for (int i = 0; i < a->nchild && ok; i++) {
            const lj_op *c = a->child[i];
            if (2 * (n + 2) > m->cap) { /* at most half full: doubled */
                struct lji_memo g = { lji_calloc(ctx, (size_t)(2 * m->cap), sizeof *g.slot), 2 * m->cap, 0 };
                if (!(ok = g.slot != NULL)) break;
                for (int64_t j = 0; j < m->cap; j++)
                    if (m->slot[j].node) *memo_find(&g, m->slot[j].node, true) = m->slot[j];
                free(m->slot);
                *m = g;
            }
            memo_slot *e = memo_find(m, c, true);
            if (e->parents++ > 0) continue; /* seen: its children are counted */
            n++;
            if (sp == capst) {
                const lj_op **ns = lji_realloc(ctx, st, (size_t)(2 * capst) * sizeof *ns);
                if (!(ok = ns != NULL)) break;
                st = ns;
                capst *= 2;
            }
            st[sp++] = c;
        }
    }
    free(st);
    if (!ok) {
        memo_free(ctx, m);
        m->slot = NULL;
    }
    return ok;
}

/* a copy of a kept matrix, for one more parent */
static cholmod_sparse *memo_copy(lj_context *ctx, const cholmod_sparse *s)
{
    int64_t nz = ((const int64_t *)s->p)[s->ncol];
    cholmod_sparse *c = lji_sparse_alloc(ctx, (int64_t)s->nrow, (int64_t)s->ncol, nz, "to_sparse");
    if (!c) return NULL;
    memcpy(c->p, s->p, (s->ncol + 1) * sizeof(int64_t));
    memcpy(c->i, s->i, (size_t)nz * sizeof(int64_t));
    memcpy(c->x, s->x, (size_t)nz * sizeof(double));
    return c;
}

cholmod_sparse *lji_to_sparse(lj_context *ctx, const lj_op *J)
{
    struct lji_memo *m = ctx->memo;
    memo_slot *e = m && J->nchild > 0 ? memo_find(m, J, false) : NULL;
    if (!e || e->parents < 2) return J->kind->to_sparse(ctx, J);
    if (e->s) return memo_copy(ctx, e->s);
    cholmod_sparse *s = J->kind->to_sparse(ctx, J);
    if (!s) return NULL;
    int64_t nz = ((const int64_t *)s->p)[s->ncol];
    if (s->packed && m->entries + nz <= LJI_MEMO_ENTRIES && (e->s = memo_copy(ctx, s))) m->entries += nz;
    else if (ctx->status != LJ_OK) {
        cholmod_l_free_sparse(&s, &ctx->cc);
        return NULL;
    }
    return s;
}

cholmod_sparse *lj_op_to_sparse(lj_context *ctx, const lj_op *J)
{
    if (lji_check_args(ctx, "to_sparse", 1, &J) != LJ_OK) return NULL;
    bool exact;
    int64_t nz = lji_nnz(J, &exact);
    if (exact && nz >= (int64_t)(SIZE_MAX / 16)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "to_sparse: %" PRId64 " entries of " LJI_SHP " overflow",
                  nz, J->rows, J->cols);
        return NULL;
    }
    bool mine;
    if (lji_memo_open(ctx, J, "to_sparse", &mine) != LJ_OK) return NULL;
    cholmod_sparse *s = lji_to_sparse(ctx, J);
    lji_memo_close(ctx, mine);
    return s;
}

lj_status lji_memo_open(lj_context *ctx, const lj_op *J, const char *op, bool *mine)
{
    *mine = false;
    if (ctx->memo) return LJ_OK; /* inside another's walk: its memo serves */
    struct lji_memo *m = lji_calloc(ctx, 1, sizeof *m);
    if (!m || !memo_count(ctx, m, J)) {
        free(m);
        return lji_nomem(ctx, op);
    }
    ctx->memo = m;
    *mine = true;
    return LJ_OK;
}

void lji_memo_close(lj_context *ctx, bool mine)
{
    if (!mine) return;
    memo_free(ctx, ctx->memo);
    free(ctx->memo);
    ctx->memo = NULL;
}

void lj_sparse_free(lj_context *ctx, cholmod_sparse **s)
{
    if (!s || !*s) return;
    cholmod_sparse *S = *s;
    /* the context keeps the large arrays for the next large result
     * (lib/core/memory.c) */
    if (lji_ctx_ok(ctx)) lji_keep_sparse(ctx, S);
    if (lji_ctx_ok(ctx)) cholmod_l_free_sparse(s, &ctx->cc);
    *s = NULL;
}

/* ---- printing -------------------------------------------------------------- */

const char *lji_sym_kron(lj_print_format fmt)
{
    return fmt == LJ_PRINT_UNICODE ? " ⊗ " : fmt == LJ_PRINT_LATEX ? " \\otimes " : " kron ";
}
const char *lji_sym_dot(lj_print_format fmt)
{
    return fmt == LJ_PRINT_UNICODE ? "·" : fmt == LJ_PRINT_LATEX ? " \\cdot " : "*";
}
const char *lji_sym_transpose(lj_print_format fmt)
{
    return fmt == LJ_PRINT_LATEX ? "^{\\top}" : fmt == LJ_PRINT_PLAIN ? "'" : "^T";
}
const char *lji_sym_minus(lj_print_format fmt)
{
    return fmt == LJ_PRINT_UNICODE ? "−" : "-";
}

const char *lji_sym_ellipsis(lj_print_format fmt)
{
    return fmt == LJ_PRINT_UNICODE ? "…" : fmt == LJ_PRINT_PLAIN ? "..." : "\\ldots";
}

size_t lji_leading_number(const char *s, lj_print_format fmt, double *k)
{
    const char *dot = lji_sym_dot(fmt);
    size_t m = lji_label_minus_len(s), nd = strlen(dot);
    const char *p = s + m;
    double v;
    if (fmt == LJ_PRINT_LATEX && p[0] == '(') return 0; /* LaTeX writes fractions \frac */
    size_t w = lji_label_number_at(p, strlen(p), &v);
    if (!w || w >= 64 || strncmp(p + w, dot, nd) || lji_label_is_sum(s)) return 0;
    if (p[0] != '(' && (v != floor(v) || v > 0x1p31)) return 0; /* a whole number, or a fraction */
    char back[64]; /* written exactly as this number prints */
    lji_format_number(back, sizeof back, v, fmt);
    if (strlen(back) != w || strncmp(back, p, w)) return 0;
    *k = m ? -v : v;
    return m + w + nd;
}

void lji_put_signed_coef(lji_buf *b, double c, bool first, lj_print_format fmt)
{
    if (!first) lji_buf_puts(b, c < 0 ? (fmt == LJ_PRINT_UNICODE ? " − " : " - ") : " + ");
    else if (c < 0)
        lji_buf_puts(b, lji_sym_minus(fmt));
    if (fabs(c) != 1.0) { /* (1/9)·Diag(…) for x/9, as lji_put_number writes fractions */
        lji_put_number(b, fabs(c), fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
    }
}

void lji_put_open(lji_buf *b, bool paren)
{
    if (paren) lji_buf_puts(b, "(");
}
void lji_put_close(lji_buf *b, bool paren)
{
    if (paren) lji_buf_puts(b, ")");
}

/* Labels are written in the Unicode notation ("vec B", "1_3", "x ∘ y");
 * LaTeX and plain forms translate the few symbols they use. */
void lji_put_label(lji_buf *b, const char *label, lj_print_format fmt)
{
    lji_put_label_n(b, label, strlen(label), fmt);
}

/* the end of the bracketed group that starts at s ('(' or '['), or NULL
 * where it does not close before end (a label cut short) */
static const char *group_end(const char *s, const char *end)
{
    int depth = 0;
    for (; s < end; s++) {
        depth += *s == '(' || *s == '[' ? 1 : *s == ')' || *s == ']' ? -1 : 0;
        if (!depth) return s + 1;
    }
    return NULL;
}

static bool name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* calls and groups nest at most this deep in LaTeX, in labels of at most
 * LABEL_GROUPS_MAX bytes (a label may be the caller's own, of any length,
 * and each group is scanned for its end); beyond, they are written as
 * they stand */
#define LABEL_NEST_MAX 64
#define LABEL_GROUPS_MAX 4096

static void put_label(lji_buf *b, const char *label, size_t len, lj_print_format fmt, int depth);

/* The functions of the language, as each notation writes them: the one
 * table both printers read (lj_expr_print_math for expressions, and
 * put_label for the labels derived from them). */
static const lji_fn_form fn_forms[] = {
    { "exp", "exp", "\\exp" },         { "log", "log", "\\log" },         { "sin", "sin", "\\sin" },
    { "cos", "cos", "\\cos" },         { "tan", "tan", "\\tan" },         { "sinh", "sinh", "\\sinh" },
    { "cosh", "cosh", "\\cosh" },      { "tanh", "tanh", "\\tanh" },      { "asin", "asin", "\\arcsin" },
    { "acos", "acos", "\\arccos" },    { "atan", "atan", "\\arctan" },    { "sigmoid", "σ", "\\sigma" },
    { "det", "det", "\\det" },         { "logdet", "log det", "\\log\\det" },
    { "max", "max", "\\max" },         { "min", "min", "\\min" },
    { "tr", "tr", "\\operatorname{tr}" }, { "sum", "sum", "\\operatorname{sum}" },
    { "diag", "diag", "\\operatorname{diag}" }, { "sign", "sign", "\\operatorname{sign}" },
    { "abs", "abs", "\\operatorname{abs}" }, { "relu", "relu", "\\operatorname{relu}" },
    { "softplus", "softplus", "\\operatorname{softplus}" }, { "log1p", "log1p", "\\operatorname{log1p}" },
    { "expm1", "expm1", "\\operatorname{expm1}" }, { "reshape", "reshape", "\\operatorname{reshape}" },
};

const lji_fn_form *lji_fn_form_of(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof fn_forms / sizeof fn_forms[0]; i++)
        if (strlen(fn_forms[i].name) == n && !strncmp(name, fn_forms[i].name, n)) return &fn_forms[i];
    return NULL;
}

/* LaTeX for a call name(…) of the language at s, whose name is n bytes
 * and whose group runs to g; false where the name is not a function's */
static bool latex_call(lji_buf *b, const char *s, size_t n, const char *g, int depth)
{
    const char *a = s + n + 1, *z = g - 1; /* the arguments, without the brackets */
    if ((n == 4 && !strncmp(s, "sqrt", 4)) || (n == 5 && (!strncmp(s, "norm2", 5) || !strncmp(s, "norm1", 5)))) {
        bool root = n == 4;
        lji_buf_puts(b, root ? "\\sqrt{" : "\\|");
        put_label(b, a, (size_t)(z - a), LJ_PRINT_LATEX, depth + 1);
        lji_buf_puts(b, root ? "}" : s[4] == '1' ? "\\|_1" : "\\|");
        return true;
    }
    if (n == 4 && !strncmp(s, "kron", 4)) { /* kron(a, b): (a ⊗ b) */
        int open = 0;
        for (const char *c = a; c < z; c++) {
            open += *c == '(' || *c == '[' ? 1 : *c == ')' || *c == ']' ? -1 : 0;
            if (!open && c[0] == ',' && c[1] == ' ') {
                lji_buf_puts(b, "(");
                put_label(b, a, (size_t)(c - a), LJ_PRINT_LATEX, depth + 1);
                lji_buf_puts(b, " \\otimes ");
                put_label(b, c + 2, (size_t)(z - c - 2), LJ_PRINT_LATEX, depth + 1);
                lji_buf_puts(b, ")");
                return true;
            }
        }
        return false;
    }
    const lji_fn_form *f = lji_fn_form_of(s, n);
    if (f) {
        lji_buf_puts(b, f->latex);
        put_label(b, s + n, (size_t)(g - s - n), LJ_PRINT_LATEX, depth + 1); /* "(…)" */
        return true;
    }
    return false;
}

/* a name in LaTeX: what follows its first '_' is its subscript, braced
 * when longer than a character (x_12 as x_{12}, kron_cb as kron_{cb}) */
void lji_put_name_latex(lji_buf *b, const char *name, size_t len)
{
    const char *u = memchr(name, '_', len);
    size_t k = u ? (size_t)(u - name) : len;
    if (!u || len - k <= 2) {
        lji_buf_putn(b, name, len);
        return;
    }
    lji_buf_putn(b, name, k + 1);
    lji_buf_puts(b, "{");
    lji_buf_putn(b, u + 1, len - k - 1);
    lji_buf_puts(b, "}");
}

void lji_put_label_n(lji_buf *b, const char *label, size_t len, lj_print_format fmt)
{
    put_label(b, label, len, fmt, 0);
}

static void put_label(lji_buf *b, const char *label, size_t len, lj_print_format fmt, int depth)
{
    const char *end = label + len;
    if (fmt == LJ_PRINT_UNICODE) {
        lji_buf_putn(b, label, len);
        return;
    }
    bool latex = fmt == LJ_PRINT_LATEX, nest = depth < LABEL_NEST_MAX && len <= LABEL_GROUPS_MAX;
    static const struct { const char *u, *plain, *latex; } map[] = {
        { "vec ", "vec ", "\\operatorname{vec} " },
        { "vec(", "vec(", "\\operatorname{vec}(" },
        { "∘", ".*", "\\circ" },
        { "⊘", "./", "\\oslash" },
        { "⊗", "kron", "\\otimes" },
        { "−", "-", "-" },
        { "·", "*", "\\cdot " },
        { "×", "x", "\\times " }, /* 1_{3×3} */
        { "^{-T}", "^{-T}", "^{-\\top}" },
        { "^T", "'", "^{\\top}" },
        { "σ(", "sigmoid(", "\\sigma(" },
        { "…", "...", "\\ldots " },
        { "∂", "d", "\\partial " }, /* ∂kron_cb/∂G */
        { "σ", "sigmoid", "\\sigma " }, /* and those of a label cut short: σ…, tanh²… */
        { "²", "^2", "^2" },
    };
    static const struct { const char *u, *name; } squared[] = { { "tanh²(", "tanh" }, { "tan²(", "tan" } };
    const char *s = label;
    while (s < end) {
        bool hit = false;
        for (size_t i = 0; i < sizeof squared / sizeof squared[0] && !hit; i++) {
            size_t n = strlen(squared[i].u);
            if ((size_t)(end - s) < n || strncmp(s, squared[i].u, n)) continue;
            /* tanh²(u): tanh(u).^2 in the language, \tanh^2(u) in LaTeX */
            const char *a = s + n, *e = group_end(a - 1, end);
            if (!e || !nest) continue;
            lji_buf_printf(b, latex ? "\\%s^2(" : "%s(", squared[i].name);
            put_label(b, a, (size_t)(e - a), fmt, depth + 1); /* the argument and its ')' */
            if (!latex) lji_buf_puts(b, ".^2");
            s = e;
            hit = true;
        }
        for (size_t i = 0; i < sizeof map / sizeof map[0] && !hit; i++) {
            size_t n = strlen(map[i].u);
            if ((size_t)(end - s) >= n && strncmp(s, map[i].u, n) == 0) {
                lji_buf_puts(b, latex ? map[i].latex : map[i].plain);
                s += n;
                hit = true;
            }
        }
        if (hit) continue;
        bool start = s == label || !name_char(s[-1]);
        if (latex && s[0] == '.' && s[1] == '^' && s + 2 < end) { /* x.^2: x^{∘2} */
            const char *a = s + 2, *e = a;
            if (*a == '(') e = nest && group_end(a, end) ? group_end(a, end) : a;
            else
                while (e < end && (isdigit((unsigned char)*e) || (*e == '.' && e + 1 < end && isdigit((unsigned char)e[1]))))
                    e++; /* x.^2./y: the 2, not "2." */
            bool grouped = *a == '(' && e > a;
            if (e == a) { /* nothing to raise to: as it stands */
                lji_buf_putn(b, s, 2);
                s += 2;
                continue;
            }
            lji_buf_puts(b, "^{\\circ ");
            put_label(b, a + grouped, (size_t)(e - a - 2 * grouped), fmt, depth + 1);
            lji_buf_puts(b, "}");
            s = e;
        } else if (latex && s[0] == '.' && s[1] == '/') { /* 1./u: 1 ⊘ u */
            lji_buf_puts(b, " \\oslash ");
            s += 2;
        } else if (latex && start && (s[0] == '1' || s[0] == 'I') && s[1] == '_' && isdigit((unsigned char)s[2])) {
            const char *e = s + 2; /* 1_12: \mathbf{1}_{12}, as the expressions print it; I_12: I_{12} */
            while (e < end && isdigit((unsigned char)*e)) e++;
            if (e < end && name_char(*e)) { /* a longer name */
                lji_buf_putn(b, s, (size_t)(e - s));
            } else {
                lji_buf_printf(b, "%s_{%.*s}", s[0] == '1' ? "\\mathbf{1}" : "I", (int)(e - s - 2), s + 2);
            }
            s = e;
        } else if (latex && start && (s[0] == '0' || s[0] == '1') && s[1] == '_' && s[2] == '{') {
            lji_buf_puts(b, s[0] == '1' ? "\\mathbf{1}_" : "\\mathbf{0}_"); /* 1_{2×3}: a matrix of ones */
            s += 2;
        } else if (latex && start && isalpha((unsigned char)s[0])) { /* a name, or a call of a function */
            const char *e = s;
            while (e < end && name_char(*e)) e++;
            const char *g = nest && e < end && *e == '(' ? group_end(e, end) : NULL;
            if (g && latex_call(b, s, (size_t)(e - s), g, depth)) e = g;
            else lji_put_name_latex(b, s, (size_t)(e - s));
            s = e;
        } else {
            lji_buf_putn(b, s, 1);
            s++;
        }
    }
}

/* whether a, read back, stands for x: within four units in its last
 * place, so that 0.1 + 0.2 reads 0.3 (the plain form: exactly) */
static bool reads_as(double a, double x, lj_print_format fmt)
{
    return fmt == LJ_PRINT_PLAIN ? a == x : fabs(a - x) <= 4 * DBL_EPSILON * fabs(x);
}

bool lji_fraction(double x, lj_print_format fmt, long *p, long *q)
{
    char dec[32];
    snprintf(dec, sizeof dec, "%.6g", x);
    if (!isfinite(x) || x == floor(x) || reads_as(strtod(dec, NULL), x, fmt) || fabs(x) > 1e6 || fabs(x) < 1e-6)
        return false;
    for (long d = 2; d <= 1000; d++) {
        double k = round(x * d);
        if (k != 0 && fabs(k) <= 1e9 && reads_as(k / (double)d, x, fmt)) {
            *p = (long)k, *q = d;
            return true;
        }
    }
    return false;
}

void lji_format_number(char *tmp, size_t n, double x, lj_print_format fmt)
{
    /* Every printed number is read back: a label's becomes the plain form,
     * which is the language, and J printed is J. So a number takes the
     * fewest significant digits, from six, that stand for it (2, 0.5,
     * 1.23456789 as written, 0.3 for 0.1 + 0.2), and a fraction of small
     * terms whose decimals do not end is written as one: (2/3), not
     * 0.666667, which is 5·10^-7 away, or 0.6666666666666666. */
    long p, q;
    if (lji_fraction(x, fmt, &p, &q)) {
        const char *minus = p < 0 ? "-" : "";
        if (fmt == LJ_PRINT_LATEX) snprintf(tmp, n, "%s\\frac{%ld}{%ld}", minus, labs(p), q);
        else snprintf(tmp, n, "%s(%ld/%ld)", minus, labs(p), q);
        return;
    }
    snprintf(tmp, n, "%.6g", x);
    for (int d = 7; d <= 17 && !reads_as(strtod(tmp, NULL), x, fmt); d++) snprintf(tmp, n, "%.*g", d, x);
}

size_t lji_label_number_at(const char *s, size_t n, double *k)
{
    double f;
    size_t fw = lji_label_fraction(s, &f);
    if (fw && fw <= n) {
        *k = f;
        return fw;
    }
    size_t w = 0;
    while (w < n && (isdigit((unsigned char)s[w]) || s[w] == '.')) w++;
    if (w == 0 || !isdigit((unsigned char)s[0]) || s[w - 1] == '.') return 0;
    if (w + 1 < n && s[w] == 'e' && (isdigit((unsigned char)s[w + 1]) ||
                                     ((s[w + 1] == '+' || s[w + 1] == '-') && w + 2 < n && isdigit((unsigned char)s[w + 2])))) {
        w += 2; /* 1e+06, as %g writes it */
        while (w < n && isdigit((unsigned char)s[w])) w++;
    }
    char num[64], *end;
    if (w >= sizeof num) return 0;
    memcpy(num, s, w);
    num[w] = '\0';
    double v = strtod(num, &end);
    if (*end) return 0; /* 1.2.3 */
    *k = v;
    return w;
}

size_t lji_label_fraction(const char *s, double *k)
{
    if (s[0] != '(' || !isdigit((unsigned char)s[1])) return 0;
    char *e;
    long p = strtol(s + 1, &e, 10);
    if (*e != '/' || !isdigit((unsigned char)e[1])) return 0;
    long q = strtol(e + 1, &e, 10);
    if (*e != ')' || q < 2) return 0;
    *k = (double)p / (double)q;
    return (size_t)(e + 1 - s);
}

void lji_put_exponent(lji_buf *b, double e, lj_print_format fmt)
{
    const char *minus = lji_sym_minus(fmt);
    long p, q;
    if (lji_fraction(e, fmt, &p, &q))
        lji_buf_printf(b, "(%s%ld/%ld)", p < 0 ? minus : "", labs(p), q);
    else if (e < 0) {
        lji_buf_printf(b, "(%s", minus);
        lji_put_number(b, -e, fmt);
        lji_buf_puts(b, ")");
    } else
        lji_put_number(b, e, fmt);
}

void lji_put_number(lji_buf *b, double x, lj_print_format fmt)
{
    char tmp[64];
    lji_format_number(tmp, sizeof tmp, x, fmt);
    if (x < 0 && fmt == LJ_PRINT_UNICODE) {
        lji_buf_puts(b, "−");
        lji_buf_puts(b, tmp + 1);
    } else
        lji_buf_puts(b, tmp);
}

bool lji_label_is_atomic(const char *label) { return lji_label_is_atomic_n(label, strlen(label)); }

bool lji_label_is_atomic_n(const char *label, size_t n)
{
    int depth = 0;
    for (const char *s = label; s < label + n && *s; s++) {
        if ((unsigned char)s[0] == 0xCF && (unsigned char)s[1] == 0x83 && s[2] == '(') s++; /* σ(x): a name */
        else if (*s == '(' || *s == '{') depth++;
        else if (*s == ')' || *s == '}') depth--;
        else if (depth == 0 && (strchr(" +-*/'", *s) || (unsigned char)*s >= 0x80)) return false;
    }
    return true;
}

/* A combined label past LJI_DIAG_LABEL_MAX: the head of the first one's
 * (whole characters) and then `more` (" ∘ …"), unless the head was cut
 * before */
void lji_put_label_head(lji_buf *b, const char *label, const char *more)
{
    char head[64];
    size_t hn = lji_utf8_prefix(label, 40);
    memcpy(head, label, hn);
    head[hn] = '\0';
    lji_buf_puts(b, head);
    if (!strstr(head, "…")) lji_buf_puts(b, more);
}

/* a sum or a difference at the top level of the first n bytes of label
 * ("a + b", "a − b"): what a tighter operator around it must put in
 * parentheses */
bool lji_label_is_sum_n(const char *label, size_t n)
{
    int depth = 0;
    for (const char *s = label; s < label + n; s++) {
        if (*s == '(' || *s == '{') depth++;
        else if (*s == ')' || *s == '}') depth--;
        else if (depth == 0 && s[0] == ' ' &&
                 (((s[1] == '+' || s[1] == '-') && s[2] == ' ') || !strncmp(s + 1, "− ", strlen("− "))))
            return true;
    }
    return false;
}

size_t lji_label_minus_len(const char *s)
{
    const char *minus = "−";
    return s[0] == '-' ? 1 : !strncmp(s, minus, strlen(minus)) ? strlen(minus) : 0;
}

bool lji_text_is_zero(const char *s)
{
    const char *close = strchr(s, '}');
    return !strncmp(s, "0_{", 3) && close && !close[1];
}

size_t lji_label_negated_term(const char *label)
{
    size_t m = lji_label_minus_len(label);
    return m && !lji_label_minus_len(label + m) && !lji_label_is_sum(label + m) ? m : 0;
}

size_t lji_label_minus_product(const char *label)
{
    size_t n = strlen(label);
    if (!lji_label_is_wrapped(label)) return 0;
    size_t skip = lji_label_minus_len(label + 1);
    if (!skip || lji_label_minus_len(label + 1 + skip)) return 0; /* no sign of its own */
    skip += 1;
    return lji_label_is_sum_n(label + skip, n - skip - 1) ? 0 : skip;
}

bool lji_label_transposes_bare(const char *label)
{
    return lji_label_is_atomic(label) && strncmp(label, "vec", 3) != 0;
}

/* whether f (k bytes) is "(P)^{-1}" or "(P)^{-T}" with a product P that
 * is its own transpose as written, X^T·X or A·A^T: the inverse of a
 * symmetric matrix, whose transpose is itself */
static bool symmetric_inverse(lj_context *ctx, const char *f, size_t k, bool *failed)
{
    *failed = false;
    if (k < 8 || (strncmp(f + k - 5, "^{-1}", 5) && strncmp(f + k - 5, "^{-T}", 5)) || f[0] != '(') return false;
    char base[128];
    size_t nb = k - 5;
    if (nb >= sizeof base) return false;
    memcpy(base, f, nb);
    base[nb] = '\0';
    char *t = lji_label_product_transposed(ctx, base, failed);
    bool same = t && !strcmp(t, base);
    free(t);
    return same;
}

char *lji_label_product_transposed(lj_context *ctx, const char *label, bool *failed)
{
    enum { MAXF = 16 };
    const char *dot = "·", *fs[MAXF];
    size_t nd = strlen(dot), fn[MAXF], n = strlen(label);
    *failed = false;
    if (!lji_label_is_wrapped(label)) return NULL;
    const char *s = label + 1, *end = label + n - 1;
    size_t minus = lji_label_minus_len(s);
    s += minus;
    /* the factors, at the top level's "·"; any other operator there: none */
    int nf = 0, depth = 0;
    const char *start = s;
    for (const char *p = s; p < end;) {
        if (*p == '(' || *p == '{') depth++, p++;
        else if (*p == ')' || *p == '}') depth--, p++;
        else if (depth == 0 && !strncmp(p, dot, nd)) {
            if (nf == MAXF - 1) return NULL;
            fs[nf] = start, fn[nf++] = (size_t)(p - start);
            p += nd, start = p;
        } else if (depth == 0 && (strchr(" +-*/'", *p) || (unsigned char)*p >= 0x80))
            return NULL;
        else
            p++;
    }
    fs[nf] = start, fn[nf++] = (size_t)(end - start);
    if (nf < 2) return NULL;
    int gains = 0, losses = 0;
    lji_buf b;
    lji_buf_init(&b, ctx);
    lji_buf_printf(&b, "(%.*s", (int)minus, label + 1);
    /* numbers first: 0.5·(C^T + C)^T·a (a number all digits: 1_3 and
     * 1_{3×3}, vectors and matrices of ones, are factors to transpose) */
#define LJI_IS_NUMBER_FACTOR(f, k) ((k) && isdigit((unsigned char)(f)[0]) && strspn((f), "0123456789.") >= (size_t)(k))
    for (int i = 0; i < nf; i++)
        if (LJI_IS_NUMBER_FACTOR(fs[i], fn[i])) lji_buf_printf(&b, "%.*s%s", (int)fn[i], fs[i], dot);
    for (int i = nf - 1, any = 0; i >= 0; i--) {
        const char *f = fs[i];
        int k = (int)fn[i];
        if (LJI_IS_NUMBER_FACTOR(f, k)) continue;
        if (any++) lji_buf_puts(&b, dot);
        if (k == 0) gains = nf + 1; /* "(·A)": no product */
        else if (k > 2 && !strncmp(f + k - 2, "^T", 2)) lji_buf_printf(&b, "%.*s", k - 2, f), losses++;
        else if (symmetric_inverse(ctx, f, (size_t)k, failed)) lji_buf_printf(&b, "%.*s", k, f);
        else if (*failed) break;
        else if (k > 5 && !strncmp(f + k - 5, "^{-1}", 5)) lji_buf_printf(&b, "%.*s^{-T}", k - 5, f);
        else if (k > 5 && !strncmp(f + k - 5, "^{-T}", 5)) lji_buf_printf(&b, "%.*s^{-1}", k - 5, f);
        else {
            bool wrapped = f[0] == '(' && f[k - 1] == ')'; /* a factor is one: "(A)·(B)" splits */
            bool bare = wrapped || (strncmp(f, "vec", 3) != 0 && !memchr(f, '^', (size_t)k)); /* (s^2)^T */
            lji_buf_printf(&b, bare ? "%.*s^T" : "(%.*s)^T", k, f);
            gains++;
        }
    }
    lji_buf_puts(&b, ")");
    if (gains > losses || *failed) {
        lji_buf_discard(&b);
        return NULL;
    }
    char *r = lji_buf_finish(&b, "print");
    if (!r) *failed = true;
    return r;
}
#undef LJI_IS_NUMBER_FACTOR

/* label's length where it is a name of ASCII letters, digits and '_'
 * (whatever the locale), else 0 */
static size_t label_name_len(const char *label)
{
    size_t n = 0;
    for (char ch; (ch = label[n]); n++)
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
            return 0;
    return n;
}

const char *lji_label_transposed_to(lj_context *ctx, const char *label, char *buf, size_t cap, char **own)
{
    *own = NULL;
    /* a name ("b", "1_64"): name^T, without the scans below (a vector
     * leaf's transpose, made in most builds of J) */
    size_t w = label_name_len(label);
    if (w > 0 && w + 3 <= cap && strncmp(label, "vec", 3) != 0) {
        memcpy(buf, label, w);
        memcpy(buf + w, "^T", 3);
        return buf;
    }
    /* a matrix of ones or zeros, 1_{2×3}: 1_{3×2} */
    if ((label[0] == '0' || label[0] == '1') && label[1] == '_' && label[2] == '{') {
        char *x, *e;
        long long rr = strtoll(label + 3, &x, 10), cc = !strncmp(x, "×", strlen("×")) ? strtoll(x + strlen("×"), &e, 10) : -1;
        if (cc >= 0 && isdigit((unsigned char)label[3]) && e[0] == '}' && !e[1] && strlen(label) + 1 <= cap) {
            snprintf(buf, cap, "%c_{%lld×%lld}", label[0], cc, rr);
            return buf;
        }
    }
    size_t n0 = strlen(label);
    size_t dk = n0 > 2 ? n0 - 1 : 0; /* ((B^T)^k): where k starts */
    while (dk > 0 && isdigit((unsigned char)label[dk - 1])) dk--;
    bool tpower = dk > 5 && dk < n0 - 1 && label[dk - 1] == '^' && !strncmp(label + dk - 4, "^T)", 3);
    bool inverse = n0 > 7 && (!strncmp(label + n0 - 6, "^{-1})", 6) || !strncmp(label + n0 - 6, "^{-T})", 6));
    if ((tpower || inverse) && lji_label_is_wrapped(label) && lji_label_is_atomic_n(label + 1, n0 - 2)) {
        /* ((B^T)^k) as B^k, (X^{-1}) as X^{-T} */
        char *inner = lji_strndup(ctx, label + 1, n0 - 2), *in_own;
        if (!inner) {
            lji_nomem(ctx, "transpose");
            return NULL;
        }
        const char *t = lji_label_transposed_to(ctx, inner, buf, cap, &in_own); /* in buf or in_own */
        free(inner);
        *own = in_own;
        return t;
    }
    bool failed;
    char *product = lji_label_product_transposed(ctx, label, &failed); /* (x^T·A)^T: (A^T·x) */
    if (product || failed) return *own = product;
    size_t n = strlen(label), total = n + 5;
    char *r = total <= cap ? buf : (*own = lji_malloc(ctx, total));
    if (!r) {
        lji_nomem(ctx, "transpose");
        return NULL;
    }
    /* a power: N^k is (N^T)^k and (N^T)^k is N^k, for a name N; others
     * bracketed, ((A·B)^2)^T (A^T^2^T would read as A^T^(2^T)) */
    size_t d = n;
    while (d > 0 && isdigit((unsigned char)label[d - 1])) d--;
    bool power = d < n && d > 1 && label[d - 1] == '^';
    if (power) {
        size_t nm = 0;
        while (nm < d - 1 && (isalnum((unsigned char)label[nm]) || label[nm] == '_')) nm++;
        if (nm && nm == d - 1 && strncmp(label, "vec", 3)) { /* N^k: (N^T)^k */
            snprintf(r, total, "(%.*s^T)%s", (int)nm, label, label + d - 1);
            return r;
        }
        size_t in = 0;
        while (label[0] == '(' && 1 + in < d && (isalnum((unsigned char)label[1 + in]) || label[1 + in] == '_')) in++;
        if (label[0] == '(' && in && d == in + 5 && !strncmp(label + 1 + in, "^T)", 3) && strncmp(label + 1, "vec", 3)) {
            snprintf(r, total, "%.*s%s", (int)in, label + 1, label + d - 1); /* (N^T)^k: N^k */
            return r;
        }
        /* (B^T)^k: B^k, for a base B that needs no brackets to its power
         * (sin(X), or a bracketed one) */
        size_t nb = d - 5; /* B's length in "(B^T)^" */
        if (d > 5 && lji_label_is_wrapped_n(label, d - 1) && !strncmp(label + d - 4, "^T)", 3) &&
            lji_label_is_atomic_n(label + 1, nb) && !memchr(label + 1, '^', nb) && strncmp(label + 1, "vec", 3)) {
            snprintf(r, total, "%.*s%s", (int)nb, label + 1, label + d - 1);
            return r;
        }
    }
    bool bare = lji_label_transposes_bare(label) && !power;
    if (bare && n > 2 && !strcmp(label + n - 2, "^T")) { /* X^T, (A·B)^T: X, (A·B) */
        memcpy(r, label, n - 2);
        r[n - 2] = '\0';
        return r;
    }
    if (bare && n > 5 && (!strcmp(label + n - 5, "^{-1}") || !strcmp(label + n - 5, "^{-T}"))) { /* X^{-1}: X^{-T} */
        memcpy(r, label, n + 1);
        bool sym = symmetric_inverse(ctx, label, n, &failed);
        if (failed) {
            free(*own);
            return *own = NULL;
        }
        if (!sym) r[n - 2] = label[n - 2] == '1' ? 'T' : '1'; /* (X^T·X)^{-1} stays */
        return r;
    }
    char *at = r; /* X^T, (vec x)^T */
    if (!bare) *at++ = '(';
    memcpy(at, label, n);
    at += n;
    if (!bare) *at++ = ')';
    memcpy(at, "^T", 3);
    return r;
}

void lji_put_value_label(lji_buf *b, const char *l, lj_print_format fmt, lji_place where)
{
    bool minus = l[0] == '(' && lji_label_minus_len(l + 1), wrapped = lji_label_is_wrapped(l);
    /* an atomic value needs none anywhere: X^2 ⊗ I_3, as X^3 ⊗ I_3 */
    if (wrapped && lji_label_is_atomic_n(l + 1, strlen(l) - 2)) where = LJI_AT_TOP;
    if ((where == LJI_AT_TOP || (where == LJI_AT_SUM && !minus)) && wrapped)
        lji_put_label_n(b, l + 1, strlen(l) - 2, fmt);
    else
        lji_put_label(b, l, fmt);
}

bool lji_label_is_sum(const char *label)
{
    return lji_label_is_sum_n(label, strlen(label));
}

bool lji_label_is_sum_inside(const char *label)
{
    size_t n = strlen(label);
    return lji_label_is_wrapped(label) ? lji_label_is_sum_n(label + 1, n - 2) : lji_label_is_sum_n(label, n);
}

bool lji_label_is_wrapped(const char *label) { return lji_label_is_wrapped_n(label, strlen(label)); }

bool lji_label_is_wrapped_n(const char *label, size_t n)
{
    bool wrapped = n > 1 && label[0] == '(' && label[n - 1] == ')';
    for (size_t k = 1, depth = 1; wrapped && k + 1 < n; k++) { /* "(A)·(B)" is not wrapped */
        depth += label[k] == '(' ? 1 : label[k] == ')' ? (size_t)-1 : 0;
        if (depth == 0) wrapped = false;
    }
    return wrapped;
}

void lji_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (b->truncated) return; /* the length cap was reached: stop the walk */
    J->kind->print(b, J, fmt, where);
}

/* Ends a capped print: a cut form ends in an ellipsis ("…", "..." or
 * "\ldots") at a character boundary. */
char *lji_buf_finish_capped(lji_buf *b, const char *op, lj_print_format fmt)
{
    bool cut = b->truncated && !b->failed && b->s;
    b->limit = 0;
    if (cut) {
        b->len = lji_utf8_prefix(b->s, LJ_PRINT_MAX);
        b->s[b->len] = '\0';
        lji_buf_puts(b, lji_sym_ellipsis(fmt));
    }
    return lji_buf_finish(b, op);
}

char *lj_op_print(lj_context *ctx, const lj_op *a, lj_print_format fmt)
{
    if (lji_check_args(ctx, "print", 1, &a) != LJ_OK) return NULL;
    if (fmt != LJ_PRINT_UNICODE && fmt != LJ_PRINT_PLAIN && fmt != LJ_PRINT_LATEX) {
        lji_error(ctx, LJ_ERR_INVALID, "print: unknown format %d", (int)fmt);
        return NULL;
    }
    lji_buf b;
    lji_buf_init(&b, ctx);
    b.limit = LJ_PRINT_MAX;
    lji_print(&b, a, fmt, LJI_AT_TOP);
    return lji_buf_finish_capped(&b, "print", fmt);
}
