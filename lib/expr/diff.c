/* Structured Jacobians by the chain rule: each node's local Jacobians from
 * DESIGN.md's table, composed forward along the DAG, every node's Jacobian
 * built once and released as soon as its last parent has used it. */
#include "config.h"
#include "ops.h"
#include "../core/lji_blas.h"
#include <inttypes.h>
#include <math.h>
#include <stddef.h>

typedef lji_dctx dctx;

/* ---- recording: the steps that let a plan update J in place (op.h) ---- */

static lji_step step_init(int type)
{
    lji_step st = { .type = type, .node = { -1, -1 }, .src = { -1, -1 } };
    return st;
}

/* The numbers of r (a dense block or Diag just made from e's value, or I
 * when they were all ones) are a copy of e's value. */
static void record_copy(lji_dctx *d, const lj_expr *e, const lj_op *r)
{
    lj_context *ctx = d->ctx;
    if (!r || !lji_tape_on(ctx)) return;
    int64_t i = lji_topo_find(d->t, e);
    lji_step st = step_init(LJI_STEP_COPY);
    st.node[0] = i;
    st.x = d->vals[i];
    if (lji_is(r, &lji_kind_identity)) { /* Diag(vec e) of ones: it stays I while they stay ones */
        lji_tape_guard_ones(ctx, d->vals[i], r->rows, i, -1, true);
        return;
    }
    if (lji_is(r, &lji_kind_diag)) {
        st.rows = r->rows, st.cols = 1, st.ldd = st.ldx = r->rows;
    } else if (lji_is(r, &lji_kind_dense) && !r->borrowed) {
        st.rows = r->rows, st.cols = r->cols, st.ldd = r->ld, st.ldx = r->rows > 0 ? r->rows : 1;
    } else {
        lji_tape_break(ctx, "a value's operator of another kind");
        return;
    }
    st.dst = r->data;
    int k = lji_tape_add(ctx, &st, r, NULL);
    if (k >= 0 && lji_is(r, &lji_kind_diag)) /* a fresh build makes Diag(1,…,1) the identity */
        lji_tape_guard_ones(ctx, r->data, r->rows, -1, k, false);
}

/* The value block of e when an operator may read e's numbers in place
 * instead of copying them: a dense leaf that owns its block, or an
 * interior value a one-off build computed into a block (oneoff_blocks),
 * in a build no tape records (a plan's tape writes its operators'
 * numbers, which must then be their own); else NULL. */
static lji_vblock *shareable(lji_dctx *d, const lj_expr *e)
{
    if (e->pat || d->raw || lji_tape_on(d->ctx)) return NULL;
    if (lji_is_leaf(e)) return e->vblk;
    return d->blk ? d->blk[lji_topo_find(d->t, e)] : NULL;
}

/* e's value v (rows×cols, leading dimension rows) as a dense block labelled
 * l: read in place where e is a leaf that may share its numbers */
static lj_op *value_dense(lji_dctx *d, const lj_expr *e, int64_t rows, int64_t cols, const double *v,
                          const char *l)
{
    lji_vblock *blk = shareable(d, e);
    int64_t ld = rows > 0 ? rows : 1;
    return blk ? lji_op_dense_shared(d->ctx, rows, cols, v, ld, l, blk) : lj_op_dense(d->ctx, rows, cols, v, ld, l);
}

/* e's value for rules that record how they use it themselves */
static double *val_of(lji_dctx *d, const lj_expr *e)
{
    int64_t i = lji_topo_find(d->t, e);
    if (!e->pat || d->raw) return d->vals[i];
    /* a dense rule reading a sparse value: scattered once, kept for the plan */
    if (!d->dense[i]) d->dense[i] = lji_scatter(d->ctx, e, d->vals[i], "jacobian");
    return d->dense[i];
}

double *lji_d_val(lji_dctx *d, const lj_expr *e)
{
    /* what a rule computes from the numbers by hand has no step */
    lji_tape_break(d->ctx, "a local Jacobian computed from values by hand");
    return val_of(d, e);
}

const double *lji_d_val_recorded(lji_dctx *d, const lj_expr *e)
{
    return val_of(d, e);
}

void lji_d_record_func(lji_dctx *d, const lj_op *r, const lj_expr *a, double (*df)(double),
                       bool (*ok1)(double), bool (*ok2)(double))
{
    lj_context *ctx = d->ctx;
    if (!r || !lji_tape_on(ctx)) return;
    if (!lji_is(r, &lji_kind_diag)) {
        lji_tape_break(ctx, "a derivative of ones is I");
        return;
    }
    int64_t i = lji_topo_find(d->t, a);
    lji_step st = step_init(LJI_STEP_FUNC);
    st.node[0] = i;
    st.x = d->vals[i];
    st.rows = r->rows;
    st.dst = r->data;
    st.f1 = df;
    st.ok1 = ok1;
    st.ok2 = ok2;
    int k = lji_tape_add(ctx, &st, r, NULL);
    if (k >= 0) lji_tape_guard_ones(ctx, r->data, r->rows, -1, k, false);
}

int64_t lji_d_len(lji_dctx *d, const lj_expr *e)
{
    return d->raw ? lji_vlen(e) : e->rows * e->cols;
}

static bool all_ones(const double *v, int64_t n)
{
    /* 1.0 has one bit pattern: the words' differences from it, OR-ed
     * eight at a time (in 16-byte vectors where the compiler has them),
     * with no branch for each */
    const uint64_t one = 0x3ff0000000000000ull;
    int64_t i = 0;
#if defined(__GNUC__) || defined(__clang__)
    typedef uint64_t u2 __attribute__((vector_size(16)));
    const u2 ones = { one, one };
    for (; i + 8 <= n; i += 8) {
        u2 w[4];
        memcpy(w, v + i, sizeof w);
        u2 off = (w[0] ^ ones) | (w[1] ^ ones) | (w[2] ^ ones) | (w[3] ^ ones);
        if (off[0] | off[1]) return false;
    }
#endif
    for (; i < n; i++)
        if (v[i] != 1.0) return false;
    return n > 0;
}

/* Whether leaf e's mn values are all ones: the check is made once for
 * each version of a leaf's values (a loop that builds J again at new
 * values of its variable labels its constant vectors of ones at no cost),
 * and every time for a borrowed leaf, whose values may change unseen */
static bool leaf_all_ones(const lj_expr *e, int64_t mn)
{
    if (e->borrowed) return all_ones(e->value, mn);
    _Atomic uint64_t *seen = (_Atomic uint64_t *)&e->ones_seen; /* a cache: written by readers */
    uint64_t s = atomic_load_explicit(seen, memory_order_relaxed), v = e->version + 1;
    if (s >> 1 == v) return s & 1;
    bool ones = all_ones(e->value, mn);
    atomic_store_explicit(seen, (v << 1) | (uint64_t)ones, memory_order_relaxed);
    return ones;
}

/* "1_n", or "1_n^T" when transposed, into buf (32 bytes), written by hand:
 * snprintf cost a tenth of building seed 002's J */
static void ones_label(char *buf, int64_t n, bool transposed)
{
    char digits[24];
    int nd = 0;
    for (uint64_t v = (uint64_t)n; v || !nd; v /= 10) digits[nd++] = (char)('0' + v % 10);
    size_t k = 0;
    buf[k++] = '1';
    buf[k++] = '_';
    while (nd) buf[k++] = digits[--nd];
    if (transposed) {
        buf[k++] = '^';
        buf[k++] = 'T';
    }
    buf[k] = '\0';
}

/* "A" for leaves, "(A*B)" for compound expressions, "1_n" for a vector of
 * ones (other than the variable itself), without a copy where it can: a
 * named leaf's label is its name and a vector of ones' is written into
 * tmp, and *own is NULL; else *own is the label, the caller's to free
 * (NULL returned, with *own, when it could not be made). */
static const char *label_ref(lji_dctx *d, const lj_expr *e, char tmp[32], char **own)
{
    *own = NULL;
    while (e->def == &lji_op_transpose && e->a->def == &lji_op_transpose) e = e->a->a; /* (X^T)^T is X */
    int64_t mn = e->rows * e->cols;
    bool vec = lji_is_leaf(e) && !e->pat && e != d->var && (e->rows == 1 || e->cols == 1) && mn > 1;
    bool ones = vec && leaf_all_ones(e, mn);
    if (vec && lji_tape_on(d->ctx)) /* the label says "1_n" while they stay ones, "x" while they do not */
        lji_tape_guard_ones(d->ctx, e->value, mn, lji_topo_find(d->t, e), -1, ones);
    if (ones) {
        ones_label(tmp, mn, e->cols != 1);
        return tmp;
    }
    if (lji_is_leaf(e) && e->name) return e->name;
    return *own = lji_expr_label(d->ctx, e);
}

char *lji_d_label(lji_dctx *d, const lj_expr *e)
{
    char tmp[32], *own;
    const char *l = label_ref(d, e, tmp, &own);
    if (own || !l) return own;
    char *r = lji_strdup(d->ctx, l);
    if (!r) lji_nomem(d->ctx, "label");
    return r;
}

char *lji_d_factor_label(lji_dctx *d, const lj_expr *e, bool transposed)
{
    if (transposed && e->def == &lji_op_transpose) return lji_d_factor_label(d, e->a, false); /* (A^T)^T = A */
    char *l = lji_d_label(d, e);
    if (!l) return NULL;
    size_t n = strlen(l);
    if (lji_label_is_wrapped(l)) { /* "(A^T)": the parentheses say nothing inside ⊗; "(A·B)" keeps them */
        l[n - 1] = '\0';
        if (lji_label_is_atomic(l + 1)) memmove(l, l + 1, n - 1);
        else l[n - 1] = ')';
    }
    if (!transposed) return l;
    lji_buf b;
    lji_buf_init(&b, d->ctx);
    lji_buf_printf(&b, strchr(l, '^') && l[0] != '(' ? "(%s)^T" : "%s^T", l); /* X^{-1} → (X^{-1})^T */
    free(l);
    return lji_buf_finish(&b, "jacobian");
}

/* "vec A" or "vec(A*B)", between prefix and suffix: written into buf (cap
 * bytes) when it fits, else into new memory, *own (NULL when none) */
const char *lji_d_vec_label_to(lji_dctx *d, const lj_expr *e, const char *prefix, const char *suffix, char *buf,
                               size_t cap, char **own)
{
    *own = NULL;
    /* a row that is a column transposed is that column: vec(x^T) = x,
     * vec(−x^T) = (−x) */
    bool neg = e->def == &lji_op_neg && e->a->def == &lji_op_transpose;
    const lj_expr *col = neg ? e->a->a : e->def == &lji_op_transpose ? e->a : NULL;
    if (col && (col->cols != 1 || col->rows == 1 || col->pat)) col = NULL;
    char tmp[32], *lown;
    const char *l = label_ref(d, col ? col : e, tmp, &lown);
    if (l && col && neg && !lji_label_is_atomic(l) && !lji_label_is_wrapped(l)) { /* "(−a·b)" would not read right */
        free(lown);
        col = NULL;
        l = label_ref(d, e, tmp, &lown);
    }
    if (!l) return NULL;
    /* a column is its own vec: "x", "(A·x − b)" */
    const char *vec = col && neg ? "(−" : (e->cols == 1 || col) && !e->pat ? "" : l[0] == '(' ? "vec" : "vec ";
    size_t nl = strlen(l);
    /* after a reciprocal's "1./" a power needs no brackets of its own:
     * 1./(1 + x).^3, not 1./((1 + x).^3) */
    bool unwrap = !*vec && !strcmp(prefix, "1./") && lji_label_is_wrapped(l) && lji_label_is_atomic_n(l + 1, nl - 2);
    const char *close = col && neg ? ")" : "";
    const char *body = l + unwrap;
    nl -= 2 * unwrap;
    size_t np = strlen(prefix), nv = strlen(vec), nc = strlen(close), ns = strlen(suffix);
    size_t total = np + nv + nl + nc + ns + 1;
    char *r = total <= cap ? buf : (*own = lji_malloc(d->ctx, total)); /* no buffer growing */
    if (r) {
        memcpy(r, prefix, np);
        memcpy(r + np, vec, nv);
        memcpy(r + np + nv, body, nl);
        memcpy(r + np + nv + nl, close, nc);
        memcpy(r + np + nv + nl + nc, suffix, ns + 1);
    } else
        lji_nomem(d->ctx, "jacobian");
    free(lown);
    return r;
}

char *lji_d_vec_label(lji_dctx *d, const lj_expr *e, const char *prefix, const char *suffix)
{
    char *own;
    lji_d_vec_label_to(d, e, prefix, suffix, NULL, 0, &own);
    return own;
}

/* e's value transposed as an operator (new reference). A vector's value
 * is the vector of the other orientation (x^T, one node over the same
 * numbers or a recorded copy of them, as lji_d_opval's column would be),
 * made at once, not x made and then transposed; the same in a one-off
 * build and a plan, so that both print alike. */
lj_op *lji_d_opval_transposed(lji_dctx *d, const lj_expr *e)
{
    int64_t i = lji_topo_find(d->t, e);
    bool vector = !e->pat && (e->rows == 1 || e->cols == 1) && e->rows * e->cols > 1 && !d->opval[i] &&
                  e->def != &lji_op_transpose && e->def != &lji_op_neg && e->def != &lji_op_scale &&
                  e->def != &lji_op_eye && lji_scalar_times(e) < 0; /* what lji_d_opval reads as a value */
    if (!vector) return lji_d_transposed(d->ctx, lji_d_opval(d, e));
    char tmp[32], tbuf[64], *own, *town = NULL;
    const char *l = label_ref(d, e, tmp, &own);
    const char *lt = l ? lji_label_transposed_to(d->ctx, l, tbuf, sizeof tbuf, &town) : NULL;
    lj_op *r = lt ? value_dense(d, e, e->cols, e->rows, d->vals[i], lt) : NULL;
    free(own);
    free(town);
    record_copy(d, e, r);
    return r;
}

/* The value of e as an operator (new reference); transposes, negations
 * and multiples by a scalar stay lazy, so that (x')^T prints as x and
 * −x^T + (−x^T) is −2·x^T. */
lj_op *lji_d_opval(lji_dctx *d, const lj_expr *e)
{
    int64_t i = lji_topo_find(d->t, e);
    if (d->opval[i]) return lj_op_retain(d->opval[i]);
    lj_op *r = NULL;
    int w;
    if (e->def == &lji_op_transpose) {
        r = lji_d_opval_transposed(d, e->a);
    } else if (e->def == &lji_op_neg || e->def == &lji_op_scale) { /* −A and 2·A as −1 and 2 times A's */
        r = lji_d_scaled(d->ctx, e->def == &lji_op_neg ? -1.0 : e->p, lji_d_opval(d, e->a));
    } else if ((w = lji_scalar_times(e)) >= 0) { /* 2*A, A*2 and s*A likewise: a number, or s as a symbol */
        const lj_expr *s = w ? e->a : e->b;
        r = lji_d_scaled_by(d, s, lji_d_val(d, s)[0], "", "", lji_d_opval(d, w ? e->b : e->a));
    } else if (e->def == &lji_op_eye) {
        r = lj_op_identity(d->ctx, e->rows);
    } else if (e->pat) { /* a sparse value stays a sparse operator */
        lji_tape_break(d->ctx, "sparse values");
        char tmp[32], *own;
        const char *l = label_ref(d, e, tmp, &own);
        if (!l) return NULL;
        cholmod_sparse v;
        lji_pat_view(e->pat, d->vals[i], &v);
        r = lj_op_sparse(d->ctx, &v, l);
        free(own);
    } else {
        char tmp[32], *own;
        const char *l = label_ref(d, e, tmp, &own);
        if (!l) return NULL;
        r = value_dense(d, e, e->rows, e->cols, d->vals[i], l);
        free(own);
        record_copy(d, e, r);
    }
    if (r && d->uses[i] > 1) d->opval[i] = lj_op_retain(r); /* a reference is two atomic counts */
    return r;
}

lj_op *lji_d_vec(lji_dctx *d, const lj_expr *e)
{
    char buf[128], *own;
    const char *l = lji_d_vec_label_to(d, e, "", "", buf, sizeof buf, &own);
    if (!l) return NULL;
    int64_t mn = lji_d_len(d, e);
    if (e->pat || d->raw) lji_tape_break(d->ctx, "sparse values");
    const double *v = val_of(d, e);
    lj_op *r = v ? value_dense(d, e, mn, 1, v, l) : NULL;
    free(own);
    if (!e->pat && !d->raw) record_copy(d, e, r);
    return r;
}

lj_op *lji_d_diag(lji_dctx *d, const lj_expr *e, const char *label)
{
    if (e->pat || d->raw) lji_tape_break(d->ctx, "sparse values");
    const double *v = val_of(d, e);
    lji_vblock *blk = shareable(d, e);
    lj_op *r = !v     ? NULL
               : blk ? lji_op_diag_shared(d->ctx, lji_d_len(d, e), v, label, blk)
                     : lj_op_diag(d->ctx, lji_d_len(d, e), v, label);
    if (!e->pat && !d->raw) record_copy(d, e, r);
    return r;
}

lj_op *lji_d_elem(lji_dctx *d, int64_t mn, const lj_expr *ex, const lj_expr *ey, double p, lji_elem_fn f,
                  const char *label, bool as_column)
{
    lj_context *ctx = d->ctx;
    const double *x = ex ? val_of(d, ex) : NULL, *y = ey ? val_of(d, ey) : NULL;
    int64_t xn = ex ? ex->rows * ex->cols : 0, yn = ey ? ey->rows * ey->cols : 0; /* 1: broadcast */
    if ((ex && !x) || (ey && !y)) return NULL;
    double *g = lji_malloc(ctx, (size_t)(mn ? mn : 1) * sizeof *g);
    if (!g) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    for (int64_t i = 0; i < mn; i++) g[i] = f(x ? x[xn == 1 ? 0 : i] : 0, y ? y[yn == 1 ? 0 : i] : 0, p);
    lj_op *r = as_column ? lj_op_dense(ctx, mn, 1, g, mn > 0 ? mn : 1, label) : lj_op_diag(ctx, mn, g, label);
    free(g);
    if (r && lji_tape_on(ctx)) {
        if ((ex && ex->pat) || (ey && ey->pat) || d->raw) lji_tape_break(ctx, "sparse values");
        else if (!lji_is(r, &lji_kind_diag) && !lji_is(r, &lji_kind_dense))
            lji_tape_break(ctx, "a derivative of ones is I");
        else {
            lji_step st = step_init(LJI_STEP_ELEM);
            st.dst = r->data;
            st.rows = mn;
            st.x = x, st.y = y, st.xn = xn, st.yn = yn, st.p = p, st.f = f;
            if (ex) st.node[0] = lji_topo_find(d->t, ex);
            if (ey) st.node[1] = lji_topo_find(d->t, ey);
            int k = lji_tape_add(ctx, &st, r, NULL);
            if (k >= 0 && lji_is(r, &lji_kind_diag)) lji_tape_guard_ones(ctx, r->data, mn, -1, k, false);
        }
    }
    return r;
}

/* What the helpers below make of the operators they take. */
typedef enum { TAKE_MUL, TAKE_KRON, TAKE_ADD, TAKE_SCALE, TAKE_TRANSPOSE } take_op;

/* f(a, b), or f(s, a) for the one-operand ones (b NULL), the caller's
 * references handed over to f: what f does not keep is freed here */
static lj_op *take(lj_context *ctx, take_op f, double s, lj_op *a, lj_op *b)
{
    lj_op *r = NULL;
    bool one = f == TAKE_SCALE || f == TAKE_TRANSPOSE;
    if (a && (b || one)) {
        bool offered = lji_hand_over(ctx, a, b);
        switch (f) {
        case TAKE_MUL: r = lji_op_mul_nc(ctx, a, b); break;
        case TAKE_KRON: r = lji_op_kron_nc(ctx, a, b); break;
        case TAKE_ADD: r = lj_op_add(ctx, a, b); break;
        case TAKE_SCALE: r = lj_op_scale(ctx, s, a); break;
        case TAKE_TRANSPOSE: r = lji_op_transpose_nc(ctx, a); break;
        }
        lji_hand_back(ctx, offered, &a, &b);
    }
    lj_op_free(&a);
    lj_op_free(&b);
    return r;
}

lj_op *lji_d_mul(lj_context *ctx, lj_op *a, lj_op *b) { return take(ctx, TAKE_MUL, 0.0, a, b); }
lj_op *lji_d_kron(lj_context *ctx, lj_op *a, lj_op *b) { return take(ctx, TAKE_KRON, 0.0, a, b); }
lj_op *lji_d_add(lj_context *ctx, lj_op *a, lj_op *b) { return take(ctx, TAKE_ADD, 0.0, a, b); }
lj_op *lji_d_scaled(lj_context *ctx, double s, lj_op *a) { return take(ctx, TAKE_SCALE, s, a, NULL); }

/* e is made of numbers alone, (2/3) or 2^3: no name, no pattern, in a
 * subtree no deeper than a label would show */
static bool only_numbers(const lj_expr *e, int depth)
{
    if (depth > 32 || e->pat) return false;
    if (lji_is_leaf(e)) return e->def == &lji_op_const && !e->name;
    return (!e->a || only_numbers(e->a, depth + 1)) && (!e->b || only_numbers(e->b, depth + 1));
}

lj_op *lji_d_scaled_by(lji_dctx *d, const lj_expr *e, double s, const char *pre, const char *post, lj_op *a)
{
    /* a number is no symbol: (2/3)·X's J is (2/3)·I, which a Diag's own
     * number meets (J of (2/3)*X.^3 is 2·Diag((vec X).^2)) */
    if (!a || lji_is_number(e) || (lji_is_scalar(e) && only_numbers(e, 0))) return lji_d_scaled(d->ctx, s, a);
    char *l = lji_d_label(d, e), *sym = NULL;
    if (l) {
        lji_buf b;
        lji_buf_init(&b, d->ctx);
        lji_buf_printf(&b, "%s%s%s", pre, l, post);
        sym = lji_buf_finish(&b, "jacobian");
    }
    lj_op *r = sym ? lji_scale_sym(d->ctx, s, sym, a) : NULL;
    free(l);
    free(sym);
    lj_op_free(&a);
    return r;
}
lj_op *lji_d_transposed(lj_context *ctx, lj_op *a) { return take(ctx, TAKE_TRANSPOSE, 0.0, a, NULL); }
lj_op *lji_d_identity(lj_context *ctx, int64_t n) { return lj_op_identity(ctx, n); }

lj_op *lji_d_ones(lj_context *ctx, int64_t n)
{
    double *ones = lji_malloc(ctx, (size_t)(n ? n : 1) * sizeof *ones);
    if (!ones) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0;
    char tmp[32];
    ones_label(tmp, n, false);
    lj_op *r = lj_op_dense(ctx, n, 1, ones, n > 0 ? n : 1, tmp);
    free(ones);
    return r;
}

lj_op *lji_d_selection(lj_context *ctx, int64_t nn, int64_t n, int64_t cols, const char *label)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, nn, cols, n, "jacobian");
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i;
    double *sx = s->x;
    for (int64_t i = 0; i < n; i++) {
        si[i] = i + i * n;
        sx[i] = 1.0;
    }
    for (int64_t j = 0; j < cols; j++) sp[j] = cols == 1 ? 0 : j;
    sp[cols] = n;
    lj_op *r = lj_op_sparse(ctx, s, label);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return r;
}

/* Operations whose value can fail (a domain error, a singular matrix) are
 * always evaluated, so that J is built exactly where e is defined. */
static bool can_fail(const lj_expr *e)
{
    return e->def->can_fail;
}

/* ---- plans: the analysis of an expression for given variables, made once ---- */

struct lj_jacplan {
    uint32_t magic;
    lj_expr *root;
    int nvars;
    lj_expr **vars;       /* retained (root too) unless borrowed */
    int64_t *vi;          /* topological index of each variable, or -1 */
    unsigned char *dep;   /* dep[v·n + i]: node i depends on variable v */
    int64_t *uses;        /* number of parents of each node */
    unsigned char *need;  /* the nodes whose values J needs (closed under operands) */
    double **vals;        /* value buffers: the needed nodes', all once a value was asked for */
    lji_vblock **blk;     /* a one-off build's: the blocks its interior values are in (J may keep them) */
    /* updating J in place: the tape recorded with the J it builds (NULL:
     * the next evaluation builds), each leaf's version when last seen,
     * which nodes changed since, and how evaluations went */
    lji_tape *tape[2];
    lj_op *J[2];
    int last;             /* the slot of the last J */
    uint64_t *seen;       /* [2][n] */
    unsigned char *changed;
    bool record;          /* false: a one-off Jacobian, or sparse values */
    bool borrowed;        /* root and vars not retained: a one-off Jacobian's, whose caller holds them */
    bool block_lent;      /* the block at vars is the caller's (a one-off build's, on its stack) */
    bool heap_vals;       /* lji_vals_alloc made some of vals (a one-off build's are in blk, mostly) */
    bool interior;        /* a one-off build's: some interior value is needed (oneoff_blocks) */
    int64_t builds, updates;
    int last_built;
    const char *why;      /* why the last evaluation built J */
    const char *broke;    /* why the next one must: what J's numbers have no step for */
    lji_topo t;           /* last: lji_topo_build sets it, the rest is zeroed */
};

#define LJI_PLAN_MAGIC 0x4c4a504cu /* "LJPL" */
/* a one-off build's arrays up to this size live on its stack */
#define LJI_PLAN_SMALL_BYTES 2048

/* What plan p holds, released; p itself is the caller's */
static void plan_release(lj_jacplan *p)
{
    for (int k = 0; k < 2; k++) {
        lji_tape_free(&p->tape[k]);
        lj_op_free(&p->J[k]);
    }
    for (int64_t i = 0; p->blk && i < p->t.n; i++)
        if (p->blk[i]) { /* J's operators may hold it still */
            p->vals[i] = NULL;
            lji_vblock_release(&p->blk[i]);
        }
    free(p->blk);
    if (p->heap_vals) lji_vals_clear(&p->t, p->vals); /* the array is in the plan's block */
    if (!p->borrowed) {
        for (int v = 0; v < p->nvars && p->vars; v++) lj_expr_free(&p->vars[v]);
        lj_expr_free(&p->root);
    }
    lji_topo_free(&p->t);
    if (!p->block_lent) free(p->vars); /* the block of vars, vi, uses, seen, dep, need and changed */
    p->magic = LJI_DEAD_MAGIC;
}

void lj_jacplan_free(lj_jacplan **pp)
{
    if (!pp || !*pp) return;
    lj_jacplan *p = *pp;
    *pp = NULL;
    if (p->magic != LJI_PLAN_MAGIC) return;
    plan_release(p);
    free(p);
}

/* The values lji_d_opval reads for node i, marked needed: a transpose,
 * a negation or a multiple is taken of its operand's operator (and the
 * scalar of a multiple is read), and an identity has no value to read. */
static void need_opval(const lji_topo *t, unsigned char *need, int64_t i)
{
    for (;;) {
        const lj_expr *x = t->node[i];
        int w = lji_scalar_times(x);
        if (x->def == &lji_op_transpose || x->def == &lji_op_neg || x->def == &lji_op_scale)
            i = lji_topo_kid(t, i, 0);
        else if (w >= 0) {
            need[lji_topo_kid(t, i, 1 - w)] = 1;
            i = lji_topo_kid(t, i, w);
        } else
            break;
    }
    if (t->node[i]->def != &lji_op_eye) need[i] = 1;
}

/* Node j of x's operands, read by x's local Jacobian for the other one: a
 * product's rule reads a matrix operand as an operator (lji_d_opval), so
 * that the value of X' in X'·u is never formed (for a 20000×1000 X, a
 * 160 MB transpose); with a scalar operand it reads numbers. */
static void need_other(const lji_topo *t, unsigned char *need, const lj_expr *x, int64_t j)
{
    if (x->def == &lji_op_mul && !lji_is_scalar(x->a) && !lji_is_scalar(x->b)) need_opval(t, need, j);
    else need[j] = 1;
}

/* The plan's counts along the order (operands come before their
 * parents): uses[i], the parents of node i, and the values the rules on
 * sparse values read; then, a pass for each variable v, dep[v·n + i],
 * node i depends on v, and need[i], node i's value is read by some local
 * Jacobian (or its operation can fail); then, backwards, everything a
 * needed value is computed from. Whether any value is sparse, returned.
 * The arrays are read through locals: a store to a byte array may alias
 * anything, and the plan's fields would be loaded again after each. */
static bool plan_counts(lj_jacplan *p)
{
    const lji_topo *t = &p->t;
    const int64_t n = t->n;
    const int nvars = p->nvars;
    const lj_expr *const *node = t->node;
    const int64_t(*kid)[2] = (const int64_t(*)[2])t->kid;
    const int64_t *vi = p->vi;
    int64_t *uses = p->uses;
    unsigned char *need = p->need, *dep = p->dep;
    bool any_sparse = false;
    for (int64_t i = 0; i < n; i++) {
        const lj_expr *x = node[i];
        const int64_t k0 = kid[i][0], k1 = kid[i][1];
        const lj_expr *xa = x->a, *xb = x->b;
        if (k0 >= 0) uses[k0]++;
        if (k1 >= 0) uses[k1]++;
        if (can_fail(x)) need[i] = 1;
        /* the rules on sparse values read both operands (their kernels'
         * partial derivatives, the patterns' values) */
        if (x->pat || (xa && xa->pat) || (xb && xb->pat)) {
            any_sparse |= x->pat != NULL;
            if (k0 >= 0) need[k0] = 1;
            if (k1 >= 0) need[k1] = 1;
        }
    }
    for (int v = 0; v < nvars; v++) {
        unsigned char *d = dep + (size_t)v * (size_t)n;
        const int64_t var = vi[v];
        for (int64_t i = 0; i < n; i++) {
            const int64_t k[2] = { kid[i][0], kid[i][1] };
            const bool dk[2] = { k[0] >= 0 && d[k[0]], k[1] >= 0 && d[k[1]] };
            d[i] = i == var || dk[0] || dk[1];
            if (!(dk[0] | dk[1])) continue;
            const lj_expr *x = node[i];
            for (int w = 0; w < 2; w++) {
                if (!dk[w]) continue;
                unsigned r = x->def->reads[w];
                if (r & LJI_READ_NODE) need[i] = 1;
                if (r & LJI_READ_OPERAND) need[k[w]] = 1;
                if ((r & LJI_READ_OTHER) && k[1 - w] >= 0) need_other(t, need, x, k[1 - w]);
            }
        }
    }
    for (int64_t i = n - 1; i >= 0; i--) {
        if (!need[i]) continue;
        if (kid[i][0] >= 0) need[kid[i][0]] = 1;
        if (kid[i][1] >= 0) need[kid[i][1]] = 1;
    }
    return any_sparse;
}

/* A one-off build's interior values, each in a block of its own, which
 * J's dense blocks and Diags then share (shareable) instead of copying:
 * a pass over each such value fewer, and no second array of it while J
 * is built. The plan is released as soon as J is made, and nothing
 * writes the values again. Sparse values keep their plain buffers. */
/* So the needed interior values get blocks, the sparse ones plain buffers
 * (lji_vals_alloc), and the leaves are read in place (set here).
 * p->interior says whether any interior value is needed: none, and there
 * is nothing to evaluate and nothing allocated (seed 002's J reads leaves
 * only). */
static lj_status oneoff_blocks(lj_context *ctx, lj_jacplan *p)
{
    bool loose = false;
    for (int64_t i = 0; i < p->t.n; i++) {
        const lj_expr *x = p->t.node[i];
        if (lji_is_leaf(x)) {
            p->vals[i] = x->value;
            continue;
        }
        if (!p->need[i]) continue;
        p->interior = true;
        if (x->pat) {
            loose = true;
            continue;
        }
        if (!p->blk && !(p->blk = lji_calloc(ctx, (size_t)p->t.n, sizeof *p->blk)))
            return lji_nomem(ctx, "jacobian");
        if (!(p->blk[i] = lji_vblock_new_large(ctx, lji_vlen(x))))
            return lji_error(ctx, LJ_ERR_NOMEM, "jacobian: out of memory for the value of " LJI_SHP, x->rows,
                             x->cols);
        p->vals[i] = lji_vblock_data(p->blk[i]);
    }
    if (!loose) return LJ_OK;
    p->heap_vals = true;
    return lji_vals_alloc(ctx, &p->t, p->need, &p->vals);
}

/* The analysis of e for vars into p (the caller's storage: a one-off
 * Jacobian's plan lives on its stack, and its 2 KiB inline order would
 * be a heap block too large for the allocator's per-thread cache). On
 * failure nothing is left to release. */
static lj_status plan_init(lj_context *ctx, lj_jacplan *p, const lj_expr *e, int nvars,
                           const lj_expr *const *vars, bool borrow, uint64_t *buf, size_t bufwords)
{
    const char *op = "jacobian";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!lji_expr_ok(e))
        return lji_error(ctx, LJ_ERR_INVALID, "%s: expression is %s", op, e ? "not live" : "NULL");
    if (nvars <= 0 || !vars) return lji_error(ctx, LJ_ERR_INVALID, "%s: no variables", op);
    for (int v = 0; v < nvars; v++) {
        const lj_expr *x = vars[v];
        if (!lji_expr_ok(x))
            return lji_error(ctx, LJ_ERR_INVALID, "%s: variable %d is %s", op, v + 1, x ? "not live" : "NULL");
        if (!lji_is_var(x))
            return lji_error(ctx, LJ_ERR_INVALID, "%s: '%s' is %s, not a variable", op, x->name ? x->name : "?",
                             x->def == &lji_op_const ? "a constant" : "an expression");
    }
    lji_zero(p, offsetof(lj_jacplan, t)); /* not the order's inline arrays */
    lj_status st = lji_topo_build(ctx, e, &p->t);
    if (st != LJ_OK) return st;
    p->magic = LJI_PLAN_MAGIC;
    int64_t n = p->t.n;
    p->borrowed = borrow;
    p->root = borrow ? (lj_expr *)e : lj_expr_retain((lj_expr *)e);
    p->nvars = nvars;
    /* the plan's arrays in one block of 8-byte words: vars, vi, uses,
     * seen, vals, then the bytes of dep, need and changed */
    size_t nv = (size_t)nvars, nn = (size_t)n;
    size_t words = 2 * nv + 4 * nn + (nv * nn + 2 * nn + 1 + 7) / 8;
    uint64_t *blk = words <= bufwords ? buf : lji_calloc(ctx, words, sizeof *blk);
    if (blk && blk == buf) lji_zero(buf, words * sizeof *buf);
    p->block_lent = blk == buf;
    if (!blk) {
        plan_release(p);
        return lji_nomem(ctx, op);
    }
    p->vars = (lj_expr **)(void *)blk;
    p->vi = (int64_t *)(blk + nv);
    p->uses = (int64_t *)(blk + 2 * nv);
    p->seen = blk + 2 * nv + nn;
    p->vals = (double **)(void *)(blk + 2 * nv + 3 * nn);
    p->dep = (unsigned char *)(blk + 2 * nv + 4 * nn);
    p->need = p->dep + nv * nn;
    p->changed = p->need + nn;
    for (int v = 0; v < nvars; v++) {
        p->vars[v] = borrow ? (lj_expr *)vars[v] : lj_expr_retain((lj_expr *)vars[v]);
        p->vi[v] = lji_topo_find(&p->t, vars[v]);
    }
    p->record = !plan_counts(p); /* sparse values: J is rebuilt at every evaluation */
    p->why = "not evaluated yet";
    p->broke = "a plan over sparse values builds J at every evaluation";
    p->heap_vals = !borrow;
    if ((borrow && (st = oneoff_blocks(ctx, p)) != LJ_OK) ||
        (!borrow && (st = lji_vals_alloc(ctx, &p->t, p->need, &p->vals)) != LJ_OK)) {
        plan_release(p);
        return st;
    }
    return LJ_OK;
}

static lj_jacplan *plan_new(lj_context *ctx, const lj_expr *e, int nvars, const lj_expr *const *vars, bool borrow)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    lj_jacplan *p = lji_malloc(ctx, sizeof *p);
    if (!p) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    if (plan_init(ctx, p, e, nvars, vars, borrow, NULL, 0) != LJ_OK) {
        free(p);
        return NULL;
    }
    return p;
}

lj_jacplan *lj_jacplan_new(lj_context *ctx, const lj_expr *e, int nvars, const lj_expr *const *vars)
{
    return plan_new(ctx, e, nvars, vars, false);
}

/* Forward accumulation along the topological order for variable v, with the
 * node values already in p->vals. A node with one operand that depends on
 * var passes L·J[c] on as a chain (lji_chain) where it would be a product
 * node that only its parent reads. */
/* Products of three, a·h·o, whose middle factor h alone depends on the
 * variable (dep), through an inner product x = a·h or h·a that nothing else
 * reads: node i's rule goes from h at once (lji_mul3_local), and x, whose
 * own rule would be I ⊗ a or a^T ⊗ I made only to be multiplied out, is
 * skipped. Returns x's index for such an i, with *side 0 for i = x·o and
 * 1 for i = o·x, else -1. Dense values only: the sparse rules stay per
 * product. An x that has the shape of such an i itself is not skipped
 * (in a·(b·h·c)·o, the inner product of three is; i has its own rule):
 * so no skipped node is the h whose Jacobian its user reads. */
static int64_t mul3_shape(const lj_jacplan *p, const unsigned char *dep, int64_t i, int *side)
{
    const lji_topo *t = &p->t;
    const lj_expr *e = t->node[i];
    if (e->def != &lji_op_mul || e->pat) return -1;
    int64_t k0 = lji_topo_kid(t, i, 0), k1 = lji_topo_kid(t, i, 1);
    if (dep[k0] == dep[k1]) return -1;
    int w = dep[k1] != 0;
    int64_t xi = w ? k1 : k0;
    const lj_expr *x = t->node[xi];
    if (x->def != &lji_op_mul || x->pat || p->uses[xi] != 1) return -1;
    int64_t h = lji_topo_kid(t, xi, 1 - w), a = lji_topo_kid(t, xi, w);
    if (!dep[h] || dep[a]) return -1; /* i = (a·h)·o or o·(h·a) */
    const lj_expr *f[4] = { e->a, e->b, x->a, x->b };
    for (int k = 0; k < 4; k++) /* scalar factors have rules of their own */
        if (f[k]->pat || (f[k]->rows == 1 && f[k]->cols == 1)) return -1;
    *side = w;
    return xi;
}

/* Whether node xi is the inner product of a product of three (mul3_shape)
 * that its one user, found within a short look ahead, will take whole.
 * Its user then finds it skipped: a node that depends on the variable and
 * was taken has its Jacobian or chain set. *user and *side say which node
 * that is and its side, so that its own visit need not ask again. */
static bool mul3_skipped(const lj_jacplan *p, const unsigned char *dep, int64_t xi, int64_t *user, int *side)
{
    const lji_topo *t = &p->t;
    if (t->node[xi]->def != &lji_op_mul || p->uses[xi] != 1) return false;
    for (int64_t j = xi + 1; j < t->n && j <= xi + 64; j++)
        if (lji_topo_kid(t, j, 0) == xi || lji_topo_kid(t, j, 1) == xi) {
            int s, s2;
            if (mul3_shape(p, dep, j, &s) != xi || mul3_shape(p, dep, xi, &s2) >= 0) return false;
            *user = j, *side = s;
            return true;
        }
    return false;
}

static lj_op *plan_jacobian(lj_context *ctx, lj_jacplan *p, int v)
{
    const char *op = "jacobian";
    const lji_topo *t = &p->t;
    const lj_expr *var = p->vars[v], *e = p->root;
    int64_t vn = lji_vlen(var), en = lji_vlen(e), vi = p->vi[v];
    if (vi < 0) return lj_op_zero(ctx, en, vn); /* e does not depend on var */
    const unsigned char *dep = p->dep + (size_t)v * (size_t)t->n;
    lj_op *result = NULL;
    /* J, ov, dense and uses, then the chains: one block, on the stack for
     * a small expression (a one-off build's allocations are much of its
     * cost) */
    size_t n = (size_t)t->n, head = (4 * n + 1) * sizeof(void *), bytes = head + n * sizeof(lji_chain);
    _Alignas(lji_chain) unsigned char small[LJI_PLAN_SMALL_BYTES];
    void **blk = bytes <= sizeof small ? small : lji_malloc(ctx, bytes);
    lj_op **J = (lj_op **)blk, **ov = blk ? (lj_op **)(blk + t->n) : NULL;
    double **dense = blk ? (double **)(blk + 2 * t->n) : NULL;
    int64_t *uses = blk ? (int64_t *)(blk + 3 * t->n) : NULL;
    lji_chain *chain = blk ? (lji_chain *)(void *)((char *)blk + head) : NULL;
    if (!blk) {
        lji_nomem(ctx, op);
        goto done;
    }
    lji_zero(blk, 3 * n * sizeof(void *)); /* J, ov and dense; a chain's factors count from its n */
    memcpy(uses, p->uses, n * sizeof *uses);
    for (size_t i = 0; i < n; i++) chain[i].n = 0;
    dctx d = { ctx, t, p->vals, var, ov, false, dense, p->blk, p->uses };
    int64_t m3_user = -1, m3_inner = -1; /* the last inner product skipped, and its user */
    int m3_side = 0;
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *x = t->node[i];
        if (!dep[i]) continue;
        if (i == vi) continue; /* J[vi] = I, left implicit: L·I is L */
        if (mul3_skipped(p, dep, i, &m3_user, &m3_side)) { /* its user's rule covers it; its operands stay */
            m3_inner = i;
            continue;
        }
        const lj_expr *kids[2] = { x->a, x->b };
        int64_t kid[2] = { -1, -1 };
        int nd = 0;
        for (int w = 0; w < 2; w++)
            if (kids[w] && dep[kid[w] = lji_topo_kid(t, i, w)]) nd++;
        /* a product of three when its inner product was skipped */
        int side = 0;
        int64_t xi = nd != 1 ? -1 : i == m3_user ? (side = m3_side, m3_inner) : mul3_shape(p, dep, i, &side);
        if (xi >= 0 && (J[xi] || chain[xi].n)) xi = -1;
        lj_op *terms[2] = { NULL, NULL };
        int nt = 0;
        for (int w = 0; w < 2; w++) {
            int64_t ci = kid[w];
            if (!kids[w] || !dep[ci]) continue;
            lj_op *L;
            if (xi >= 0) { /* from the middle factor h */
                L = lji_mul3_local(&d, x, t->node[xi], side);
                ci = lji_topo_kid(t, xi, 1 - side);
            } else
                L = lji_local(&d, x, w);
            if (ci == vi) {
                if (!L) goto fail_terms;
                terms[nt++] = L;
                continue;
            }
            /* the factors right of L: the chain c leaves, where x is its
             * only user; else J[ci] (its chain made a node first, since c's
             * other users read it too), whose reference moves at its last
             * use (x is its only parent left), else a new one goes */
            lj_op *f[1 + LJI_CHAIN_MAX];
            int k = 1;
            if (nd == 1 && uses[ci] == 1 && chain[ci].n > 0) {
                memcpy(f + 1, chain[ci].f, (size_t)chain[ci].n * sizeof *f);
                k += chain[ci].n;
                chain[ci].n = 0;
            } else {
                if (chain[ci].n > 0 && !(J[ci] = lji_chain_finish(ctx, &chain[ci]))) {
                    lj_op_free(&L);
                    goto fail_terms;
                }
                f[k++] = J[ci];
                if (uses[ci] == 1) J[ci] = NULL;
                else lj_op_retain(f[1]);
            }
            if (!L) {
                for (int q = 1; q < k; q++) lj_op_free(&f[q]);
                goto fail_terms;
            }
            if (nd == 1) { /* L·(the factors): one product, itself a chain where it may be */
                f[0] = L;
                J[i] = lji_compose_chain(ctx, k, f, &chain[i]);
                if (!J[i] && !chain[i].n) goto fail_terms;
                nt = -1; /* J[i] or chain[i] is set */
                continue;
            }
            lj_op *T = lji_d_mul(ctx, L, f[1]);
            if (!T) goto fail_terms;
            terms[nt++] = T;
        }
        /* the terms' references move into J[i] */
        if (nt == 1) J[i] = terms[0];
        else if (nt == 2 && !(J[i] = lji_d_add(ctx, terms[0], terms[1]))) goto done;
        /* release operands' Jacobians whose last user this was (and the
         * skipped inner product's operands) */
        for (int w = 0; w < (xi >= 0 ? 4 : 2); w++)
            if (w >= 2 || kids[w]) {
                int64_t ci = lji_topo_kid(t, w < 2 ? i : xi, w & 1);
                if (--uses[ci] == 0) { /* most are empty: no calls for them */
                    if (J[ci]) lj_op_free(&J[ci]);
                    if (chain[ci].n) lji_chain_free(&chain[ci]);
                    if (ov[ci]) lj_op_free(&ov[ci]);
                    if (dense[ci]) free(dense[ci]);
                    dense[ci] = NULL;
                }
            }
        continue;
    fail_terms:
        for (int k = 0; k < nt; k++) lj_op_free(&terms[k]);
        goto done;
    }
    if (vi == t->n - 1) result = lj_op_identity(ctx, vn);
    else if (chain[t->n - 1].n > 0) result = lji_chain_finish(ctx, &chain[t->n - 1]);
    else {
        result = J[t->n - 1]; /* its reference moves to the caller */
        J[t->n - 1] = NULL;
    }
done:
    for (int64_t i = 0; blk && i < t->n; i++) { /* what a failure left */
        if (J[i]) lj_op_free(&J[i]);
        if (chain[i].n) lji_chain_free(&chain[i]);
        if (ov[i]) lj_op_free(&ov[i]);
        if (dense[i]) free(dense[i]);
    }
    if ((void *)blk != (void *)small) free(blk);
    return result;
}

/* J from the values in p->vals, built anew */
static lj_op *plan_build(lj_context *ctx, lj_jacplan *p)
{
    if (p->nvars == 1) return plan_jacobian(ctx, p, 0);
    lj_op **J = lji_calloc(ctx, (size_t)p->nvars, sizeof *J);
    if (!J) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    lj_op *r = NULL;
    int v;
    for (v = 0; v < p->nvars; v++)
        if (!(J[v] = plan_jacobian(ctx, p, v))) break;
    if (v == p->nvars) r = lj_op_hstack(ctx, p->nvars, (const lj_op *const *)J);
    for (int k = 0; k < p->nvars; k++) lj_op_free(&J[k]);
    free(J);
    return r;
}

/* which nodes changed since slot k's J was last brought up to date: a
 * leaf whose version moved (a borrowed leaf always may have), and
 * everything above it */
static void plan_changes(lj_jacplan *p, int k)
{
    const lji_topo *t = &p->t;
    uint64_t *seen = p->seen + (size_t)k * (size_t)t->n;
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *x = t->node[i];
        if (lji_is_leaf(x))
            p->changed[i] = x->borrowed || x->version != seen[i];
        else
            p->changed[i] = (x->a && p->changed[lji_topo_kid(t, i, 0)]) || (x->b && p->changed[lji_topo_kid(t, i, 1)]);
    }
}

/* slot k's J now has the leaves' current values */
static void plan_seen(lj_jacplan *p, int k)
{
    uint64_t *seen = p->seen + (size_t)k * (size_t)p->t.n;
    for (int64_t i = 0; i < p->t.n; i++)
        if (lji_is_leaf(p->t.node[i])) seen[i] = p->t.node[i]->version;
}

static void plan_drop(lj_jacplan *p, int k)
{
    lji_tape_free(&p->tape[k]);
    lj_op_free(&p->J[k]);
}

lj_op *lj_jacplan_eval(lj_context *ctx, lj_jacplan *p, double *value)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!p || p->magic != LJI_PLAN_MAGIC) {
        lji_error(ctx, LJ_ERR_INVALID, "jacplan_eval: %s plan", p ? "not a live" : "NULL");
        return NULL;
    }
    if (value) { /* every node's value: the array holds them from now on */
        p->heap_vals = true;
        if (lji_vals_alloc(ctx, &p->t, NULL, &p->vals) != LJ_OK) return NULL;
    }
    /* e's value straight into the caller's array when no local Jacobian
     * reads it (J's numbers never point at it) */
    int64_t root = p->t.n - 1, en = lji_vlen(p->root);
    bool direct = value && en > 0 && !p->need[root] && !lji_is_leaf(p->root);
    double *own = p->vals[root];
    if (direct) p->vals[root] = value;
    lj_status st = lji_eval_into(ctx, &p->t, value ? NULL : p->need, p->vals);
    p->vals[root] = own;
    if (st != LJ_OK) {
        plan_drop(p, 0); /* the values are not the Js' any more */
        plan_drop(p, 1);
        return NULL;
    }
    if (value && !direct && en) memcpy(value, p->vals[root], (size_t)en * sizeof *value);
    /* the same structure: the numbers of an earlier J, updated in place,
     * when nobody but the plan holds it. Two are kept, the last and the one
     * before, so that a caller who holds J until the next one is made (a
     * PETSc shell swapping its operator) still gets updates. */
    bool held = false;
    const char *why = NULL; /* why J is built anew */
    for (int w = 0; w < 2; w++) {
        int k = w ? 1 - p->last : p->last;
        if (!p->tape[k]) continue;
        if (!lji_tape_free_to_write(p->tape[k])) {
            held = true;
            continue;
        }
        plan_changes(p, k);
        int rc = lji_tape_run(ctx, p->tape[k], p->changed, p->vals, &why);
        if (rc == LJ_OK) {
            plan_seen(p, k);
            p->updates++;
            p->last_built = 0;
            p->last = k;
            p->why = "updated in place";
            return lj_op_retain(p->J[k]);
        }
        /* a guard failed (the structure changes) or a step failed */
        plan_drop(p, 0);
        plan_drop(p, 1);
        if (rc < 0) return NULL;
        held = false;
        break;
    }
    p->why = p->builds == 0 ? "the first evaluation"
             : why          ? why
             : held         ? "the previous J was still held"
                            : p->broke; /* no J to update: the last build could not be recorded */
    /* the slot for the new J: an empty one, else the older one (the plan
     * lets go of it; the caller's J stays as it is) */
    int k = !p->tape[1 - p->last] ? 1 - p->last : !p->tape[p->last] ? p->last : 1 - p->last;
    plan_drop(p, k);
    lji_tape *tape = NULL;
    if (p->record && !(tape = lji_tape_new(ctx))) return NULL;
    ctx->tape = tape;
    lj_op *J = plan_build(ctx, p);
    ctx->tape = NULL;
    p->builds++;
    p->last_built = 1;
    const char *broke = NULL;
    if (J && tape && lji_tape_nomem(tape)) lj_op_free(&J); /* out of memory, reported as such */
    if (!J || (tape && lji_tape_broken(tape, &broke))) {
        p->broke = broke ? broke : "the last evaluation failed";
        lji_tape_free(&tape);
        return J;
    }
    if (tape) {
        p->tape[k] = tape;
        p->J[k] = lj_op_retain(J);
        p->last = k;
        plan_seen(p, k);
        if (lji_tape_seal(ctx, tape, J) != LJ_OK) {
            plan_drop(p, k);
            lj_op_free(&J);
        }
    }
    return J;
}

int lj_jacplan_rebuilt(const lj_jacplan *p, const char **why)
{
    if (!p || p->magic != LJI_PLAN_MAGIC) {
        if (why) *why = p ? "not a live plan" : "NULL plan";
        return -1;
    }
    if (why) *why = p->why;
    return p->builds == 0 ? -1 : p->last_built;
}

lj_status lj_jacplan_counts(lj_context *ctx, const lj_jacplan *p, int64_t *builds, int64_t *updates)
{
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!p || p->magic != LJI_PLAN_MAGIC)
        return lji_error(ctx, LJ_ERR_INVALID, "jacplan_counts: %s plan", p ? "not a live" : "NULL");
    if (builds) *builds = p->builds;
    if (updates) *updates = p->updates;
    return LJ_OK;
}

static lj_op *jacobian_once(lj_context *ctx, const lj_expr *e, int nvars, const lj_expr *const *vars)
{
    lj_jacplan p; /* released before returning: borrows e and vars */
    uint64_t buf[LJI_PLAN_SMALL_BYTES / 8]; /* its arrays, where they fit */
    if (plan_init(ctx, &p, e, nvars, vars, true, buf, sizeof buf / sizeof buf[0]) != LJ_OK) return NULL;
    p.record = false; /* one J: nothing to update later, no tape */
    lj_op *J = !p.interior || lji_eval_into(ctx, &p.t, p.need, p.vals) == LJ_OK ? plan_build(ctx, &p) : NULL;
    plan_release(&p);
    return J;
}

static lj_op *jacobian(lj_context *ctx, const lj_expr *e, const lj_expr *var)
{
    return jacobian_once(ctx, e, 1, &var);
}

lj_op *lj_expr_jacobian(lj_context *ctx, const lj_expr *e, const lj_expr *var)
{
    return jacobian(ctx, e, var);
}

lj_op *lj_expr_jacobian_n(lj_context *ctx, const lj_expr *e, int nvars, const lj_expr *const *vars)
{
    return jacobian_once(ctx, e, nvars, vars);
}

/* Whether every operation in e is one whose gradient expression is built of
 * products, sums, transposes, reductions and Kronecker contractions only (no
 * division, no function): finite wherever e's operands are. */
static bool gradient_stays_finite(lj_context *ctx, const lj_expr *e, bool *ok)
{
    static const lji_opdef *const plain[] = { &lji_op_var, &lji_op_const, &lji_op_eye, &lji_op_add, &lji_op_sub,
                                              &lji_op_neg, &lji_op_scale, &lji_op_hadamard, &lji_op_mul,
                                              &lji_op_kron, &lji_op_transpose, &lji_op_trace, &lji_op_sum,
                                              &lji_op_vec, &lji_op_diag };
    lji_topo t;
    *ok = lji_topo_build(ctx, e, &t) == LJ_OK;
    if (!*ok) return false;
    bool finite = true;
    for (int64_t i = 0; i < t.n && finite; i++) {
        bool found = false;
        for (size_t k = 0; k < sizeof plain / sizeof plain[0] && !found; k++) found = t.node[i]->def == plain[k];
        finite = found;
    }
    lji_topo_free(&t);
    return finite;
}

/* The gradient as lj_expr_gradient_expr derives it, evaluated into g: one
 * product where J^T·1 would build and apply the whole Jacobian (the
 * gradient of tr(X'*L*X) for a symmetric L is one sdmult, 2·L·X). A
 * derivative that is not finite where e is (sqrt at 0, a division by
 * zero in a derivative) is an error here; the caller then asks J^T·1,
 * which says which operation is not differentiable. */
static lj_status gradient_by_expression(lj_context *ctx, const lj_expr *e, const lj_expr *var, double *g)
{
    bool ok;
    bool finite = gradient_stays_finite(ctx, e, &ok);
    if (!ok) return ctx->status;
    lj_expr *ge = lj_expr_gradient_expr(ctx, e, var);
    if (!ge) return ctx->status;
    lj_status st = lji_eval_to(ctx, ge, g); /* ge has var's values, on var's pattern (gradient_expr) */
    lj_expr_free(&ge);
    for (int64_t i = 0, n = lji_vlen(var); st == LJ_OK && !finite && i < n; i++)
        if (!isfinite(g[i])) st = lji_error(ctx, LJ_ERR_DOMAIN, "gradient: not finite at entry %" PRId64, i + 1);
    return st;
}

lj_status lj_expr_gradient(lj_context *ctx, const lj_expr *e, const lj_expr *var, double *g)
{
    const char *op = "gradient";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (lji_expr_ok(e) && (e->rows != 1 || e->cols != 1))
        return lji_error(ctx, LJ_ERR_NOT_SCALAR, "%s: expression is " LJI_SHP ", not a scalar", op,
                         e->rows, e->cols);
    if (!g) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    if (lji_expr_ok(e) && lji_expr_ok(var) && lji_is_var(var)) {
        lj_status st = gradient_by_expression(ctx, e, var, g);
        if (st == LJ_OK || st == LJ_ERR_NOMEM) return st;
        lj_context_clear(ctx); /* J^T·1 says what is wrong, in its words */
    }
    lj_op *J = jacobian(ctx, e, var);
    if (!J) return ctx->status;
    double one = 1.0;
    lj_status st = lj_op_apply(ctx, J, 1, 1.0, &one, 0.0, g); /* g = J^T·1 */
    lj_op_free(&J);
    return st;
}

lj_status lj_expr_fd_check(lj_context *ctx, const lj_expr *e, lj_expr *var, const lj_op *Jin,
                           double h, double *max_rel, double *fro_rel)
{
    const char *op = "fd_check";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!lji_expr_ok(e) || !lji_expr_ok(var))
        return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL or dead expression", op);
    if (!lji_is_var(var)) return lji_error(ctx, LJ_ERR_INVALID, "%s: not a variable", op);
    int64_t vn = lji_vlen(var), en = lji_vlen(e);
    lj_op *J = Jin ? lj_op_retain(Jin) : jacobian(ctx, e, var);
    if (!J) return ctx->status;
    if (lj_op_rows(J) != en || lj_op_cols(J) != vn) {
        lj_op_free(&J);
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: J is " LJI_SHP ", expected (%" PRId64 "×%" PRId64 ")",
                         op, lj_op_rows(J), lj_op_cols(J), en, vn);
    }
    lj_status st = LJ_OK;
    double *x0 = lji_malloc(ctx, (size_t)(vn ? vn : 1) * sizeof *x0);
    double *ej = lji_calloc(ctx, (size_t)(vn ? vn : 1), sizeof *ej);
    double *col = lji_malloc(ctx, (size_t)(en ? en : 1) * sizeof *col);
    double *fp = NULL, *fm = NULL;
    double jmax = 0, worst = 0, dsum = 0, jsum = 0;
    if (!x0 || !ej || !col) {
        st = lji_nomem(ctx, op);
        goto done;
    }
    memcpy(x0, var->value, (size_t)vn * sizeof *x0);
    /* the perturbations below write var's values in place: operators that
     * read them (J's among them) keep their own */
    st = lji_leaf_own(ctx, var, op);
    if (st != LJ_OK) goto done;
    /* first pass: J's largest entry, for the relative scale */
    double *cols = lji_malloc(ctx, (size_t)(en ? en : 1) * (size_t)(vn ? vn : 1) * sizeof *cols);
    if (!cols) {
        st = lji_nomem(ctx, op);
        goto done;
    }
    for (int64_t j = 0; j < vn; j++) {
        ej[j] = 1.0;
        st = lj_op_apply(ctx, J, 0, 1.0, ej, 0.0, cols + j * en);
        ej[j] = 0.0;
        if (st != LJ_OK) break;
        for (int64_t i = 0; i < en; i++) {
            double v = fabs(cols[i + j * en]);
            if (v > jmax) jmax = v;
            jsum += v * v;
        }
    }
    for (int64_t j = 0; j < vn && st == LJ_OK; j++) {
        double hj = h > 0 ? h : cbrt(2.220446049250313e-16) * fmax(1.0, fabs(x0[j]));
        var->value[j] = x0[j] + hj;
        st = lji_eval_raw(ctx, e, &fp);
        var->value[j] = x0[j] - hj;
        if (st == LJ_OK) st = lji_eval_raw(ctx, e, &fm);
        var->value[j] = x0[j];
        if (st != LJ_OK) break;
        for (int64_t i = 0; i < en; i++) {
            double fd = (fp[i] - fm[i]) / (2 * hj), diff = fabs(fd - cols[i + j * en]);
            double rel = diff / fmax(1.0, jmax);
            if (rel > worst || isnan(rel)) worst = isnan(rel) ? INFINITY : rel;
            dsum += diff * diff;
        }
        free(fp);
        free(fm);
        fp = fm = NULL;
    }
    free(cols);
    if (st == LJ_OK) {
        if (max_rel) *max_rel = worst;
        if (fro_rel) *fro_rel = sqrt(dsum) / fmax(sqrt(jsum), 1e-300);
    }
done:
    if (x0 && st != LJ_OK) memcpy(var->value, x0, (size_t)vn * sizeof *x0);
    free(x0);
    free(ej);
    free(col);
    free(fp);
    free(fm);
    lj_op_free(&J);
    return st;
}
