/* Sparse values in expressions.
 *
 * A sparse leaf holds a CHOLMOD matrix: its pattern (shared by reference)
 * and its stored values in CSC order. An operation whose result stays on a
 * pattern gets that pattern when it is built (lji_sparse_node): a transpose,
 * a scaling, an elementwise function with f(0) = 0, S .* X (on S's pattern),
 * S + T (the union), S * T (CHOLMOD's product pattern), s * S. Its value is
 * then the array of those entries, and Jacobians are taken in the same
 * coordinates: a sparse variable's columns of J are its stored entries, a
 * sparse result's rows of J are its stored entries.
 *
 * Operations with a sparse operand and a dense result (S * X, X * S, tr,
 * sum, norm1, norm2, diag) evaluate and differentiate from the pattern in
 * their own entries. Any other operation (exp(S), S + X, inv(S)) has a dense
 * result as large as the operand; it reads the operand scattered into a
 * dense array, and its Jacobian is its dense one composed with the pattern's
 * selection P_S (J·P_S^T, and P_R·J for a sparse result R). */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

/* ---- patterns --------------------------------------------------------------------- */

lji_pat *lji_pat_retain(lji_pat *p)
{
    if (p) atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
    return p;
}

void lji_pat_free(lji_pat **pp)
{
    if (!pp || !*pp) return;
    lji_pat *p = *pp;
    *pp = NULL;
    if (!lji_unref(&p->refs)) return;
    if (!p->borrowed) {
        free(p->p);
        free(p->i);
    }
    free(p);
}

static lji_pat *pat_new(lj_context *ctx, int64_t nrow, int64_t ncol, int64_t nnz, const char *op)
{
    lji_pat *p = lji_calloc(ctx, 1, sizeof *p);
    if (p) {
        atomic_init(&p->refs, 1);
        p->nrow = nrow;
        p->ncol = ncol;
        p->nnz = nnz;
        p->p = lji_malloc(ctx, (size_t)(ncol + 1) * sizeof(int64_t));
        p->i = lji_malloc(ctx, (size_t)(nnz ? nnz : 1) * sizeof(int64_t));
    }
    if (!p || !p->p || !p->i) {
        lji_pat_free(&p);
        lji_error(ctx, LJ_ERR_NOMEM, "%s: out of memory for a pattern of %" PRId64 " entries (" LJI_SHP ")", op,
                  nnz, nrow, ncol);
        return NULL;
    }
    return p;
}

void lji_pat_view(const lji_pat *p, const double *x, cholmod_sparse *v)
{
    memset(v, 0, sizeof *v);
    v->nrow = (size_t)p->nrow;
    v->ncol = (size_t)p->ncol;
    v->nzmax = (size_t)(p->nnz ? p->nnz : 1);
    v->p = p->p;
    v->i = p->i;
    v->x = (double *)x;
    v->stype = 0;
    v->itype = CHOLMOD_LONG;
    v->xtype = CHOLMOD_REAL;
    v->dtype = CHOLMOD_DOUBLE;
    v->sorted = 1;
    v->packed = 1;
}

void lji_pat_entry(const lji_pat *p, int64_t k, int64_t *row, int64_t *col)
{
    int64_t lo = 0, hi = p->ncol; /* the column j with p[j] <= k < p[j+1] */
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (p->p[mid] <= k) lo = mid;
        else hi = mid;
    }
    *row = p->i[k];
    *col = lo;
}

/* Position of entry (r, c) in p, or -1. */
int64_t lji_pat_find(const lji_pat *p, int64_t r, int64_t c)
{
    int64_t lo = p->p[c], hi = p->p[c + 1] - 1;
    while (lo <= hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (p->i[mid] == r) return mid;
        if (p->i[mid] < r) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

/* The pattern of a caller's matrix: copied (sorted, symmetric expanded), or
 * borrowed as it stands (then it must be packed, sorted, unsymmetric). The
 * values come back in *values (copied, or S->x when borrowed). */
static lji_pat *pat_from(lj_context *ctx, const cholmod_sparse *S, bool borrow, const char *op, double **values)
{
    if (S->itype != CHOLMOD_LONG || S->xtype != CHOLMOD_REAL || S->dtype != CHOLMOD_DOUBLE) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: the matrix must be real double with int64 indices (cholmod_l_*)", op);
        return NULL;
    }
    int64_t m = (int64_t)S->nrow, n = (int64_t)S->ncol, mn;
    if (m < 0 || n < 0 || !lji_mul_ok(m, n, &mn)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "%s: shape " LJI_SHP " overflows", op, m, n);
        return NULL;
    }
    cholmod_sparse *T = NULL;
    const cholmod_sparse *src = S;
    bool plain = S->stype == 0 && S->packed && S->sorted;
    if (!plain) {
        if (borrow) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: a borrowed matrix must be packed, sorted and unsymmetric "
                      "(stype 0); copy it instead", op);
            return NULL;
        }
        T = lji_alloc_gate(ctx) ? cholmod_l_copy((cholmod_sparse *)S, 0, 1, &ctx->cc) : NULL;
        if (!T) {
            if (ctx->cc.status < 0) lji_cholmod_check(ctx, op);
            if (ctx->status == LJ_OK) lji_nomem(ctx, op);
            return NULL;
        }
        if (!(T = lji_sparse_canon(ctx, T, op))) return NULL;
        src = T;
    }
    const int64_t *sp = src->p, *si = src->i;
    int64_t nnz = sp[n];
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = sp[j]; q < sp[j + 1]; q++)
            if (si[q] < 0 || si[q] >= m || (q > sp[j] && si[q] <= si[q - 1])) {
                bool dup = si[q] >= 0 && si[q] < m;
                lji_error(ctx, LJ_ERR_INVALID, "%s: %s at (%" PRId64 ",%" PRId64 ") of " LJI_SHP "%s", op,
                          dup ? (si[q] == si[q - 1] ? "a duplicate entry" : "rows out of order")
                              : "a row index out of range",
                          si[q] + 1, j + 1, m, n, dup && si[q] == si[q - 1] ? "; sum duplicates first" : "");
                cholmod_l_free_sparse(&T, &ctx->cc);
                return NULL;
            }
    lji_pat *p = NULL;
    if (borrow) {
        p = lji_calloc(ctx, 1, sizeof *p);
        if (!p) {
            lji_nomem(ctx, op);
            return NULL;
        }
        atomic_init(&p->refs, 1);
        p->nrow = m;
        p->ncol = n;
        p->nnz = nnz;
        p->p = S->p;
        p->i = S->i;
        p->borrowed = true;
        *values = S->x;
        return p;
    }
    p = pat_new(ctx, m, n, nnz, op);
    double *x = p ? lji_malloc(ctx, (size_t)(nnz ? nnz : 1) * sizeof *x) : NULL;
    if (!x) {
        if (p) lji_nomem(ctx, op);
        lji_pat_free(&p);
        cholmod_l_free_sparse(&T, &ctx->cc);
        return NULL;
    }
    memcpy(p->p, sp, (size_t)(n + 1) * sizeof(int64_t));
    if (nnz) {
        memcpy(p->i, si, (size_t)nnz * sizeof(int64_t));
        memcpy(x, src->x, (size_t)nnz * sizeof(double));
    }
    cholmod_l_free_sparse(&T, &ctx->cc);
    *values = x;
    return p;
}

static lj_expr *lji_sparse_leaf(lj_context *ctx, const lji_opdef *def, const char *name, const cholmod_sparse *S,
                         bool borrow)
{
    const char *op = borrow ? (def == &lji_op_var ? "var_sparse_borrow" : "const_sparse_borrow")
                            : (def == &lji_op_var ? "var_sparse" : "const_sparse");
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!S) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL matrix", op);
        return NULL;
    }
    lj_expr *e = lji_leaf_shell(ctx, def, op, name, (int64_t)S->nrow, (int64_t)S->ncol);
    if (!e) return NULL;
    double *x = NULL;
    e->pat = pat_from(ctx, S, borrow, op, &x);
    if (!e->pat) {
        lj_expr_free(&e);
        return NULL;
    }
    e->value = x;
    e->borrowed = borrow;
    /* a symmetric CHOLMOD matrix (stype != 0) says what it is: its expanded
     * copy is a constant declared symmetric */
    e->symm = S->stype != 0 && def == &lji_op_const;
    return e;
}

lj_expr *lj_expr_const_sparse(lj_context *ctx, const char *name, const cholmod_sparse *S)
{
    return lji_sparse_leaf(ctx, &lji_op_const, name, S, false);
}
lj_expr *lj_expr_const_sparse_borrow(lj_context *ctx, const char *name, cholmod_sparse *S)
{
    return lji_sparse_leaf(ctx, &lji_op_const, name, S, true);
}
lj_expr *lj_expr_var_sparse(lj_context *ctx, const char *name, const cholmod_sparse *S)
{
    return lji_sparse_leaf(ctx, &lji_op_var, name, S, false);
}
lj_expr *lj_expr_var_sparse_borrow(lj_context *ctx, const char *name, cholmod_sparse *S)
{
    return lji_sparse_leaf(ctx, &lji_op_var, name, S, true);
}

int lj_expr_is_sparse(const lj_expr *e) { return lji_expr_ok(e) && e->pat != NULL; }
int64_t lj_expr_nvalues(const lj_expr *e) { return lji_expr_ok(e) ? lji_vlen(e) : -1; }

/* ---- patterns of operations ---------------------------------------------------------- */

/* map[k] for a dense operand o read at e's entry k (0 for a broadcast scalar) */
static int64_t *dense_map(lj_context *ctx, const lji_pat *p, const lj_expr *o)
{
    int64_t *map = lji_malloc(ctx, (size_t)(p->nnz ? p->nnz : 1) * sizeof *map);
    if (!map) return NULL;
    bool scalar = o->rows == 1 && o->cols == 1;
    for (int64_t j = 0; j < p->ncol; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) map[q] = scalar ? 0 : p->i[q] + j * o->rows;
    return map;
}

/* The transpose of p, with map[k] = the entry of p that entry k of p^T is. */
static lji_pat *pat_transpose(lj_context *ctx, const lji_pat *p, int64_t **pmap)
{
    lji_pat *t = pat_new(ctx, p->ncol, p->nrow, p->nnz, "transpose");
    int64_t *map = t ? lji_malloc(ctx, (size_t)(p->nnz ? p->nnz : 1) * sizeof *map) : NULL;
    int64_t *cnt = t ? lji_calloc(ctx, (size_t)(p->nrow + 1), sizeof *cnt) : NULL;
    if (!map || !cnt) {
        free(map);
        free(cnt);
        lji_pat_free(&t);
        return NULL;
    }
    for (int64_t q = 0; q < p->nnz; q++) cnt[p->i[q] + 1]++;
    for (int64_t r = 0; r < p->nrow; r++) cnt[r + 1] += cnt[r];
    memcpy(t->p, cnt, (size_t)(p->nrow + 1) * sizeof *cnt);
    for (int64_t j = 0; j < p->ncol; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
            int64_t k = cnt[p->i[q]]++;
            t->i[k] = j;
            map[k] = q;
        }
    free(cnt);
    *pmap = map;
    return t;
}

/* The union (or intersection) of a and b, with each result entry's place
 * in a and in b (-1 where absent). */
static lji_pat *pat_merge(lj_context *ctx, const lji_pat *a, const lji_pat *b, bool unite, int64_t **ma,
                          int64_t **mb, const char *op)
{
    int64_t n = a->ncol, cap = unite ? a->nnz + b->nnz : (a->nnz < b->nnz ? a->nnz : b->nnz);
    lji_pat *r = pat_new(ctx, a->nrow, n, cap, op);
    int64_t *xa = r ? lji_malloc(ctx, (size_t)(cap ? cap : 1) * sizeof *xa) : NULL;
    int64_t *xb = xa ? lji_malloc(ctx, (size_t)(cap ? cap : 1) * sizeof *xb) : NULL;
    if (!xb) {
        free(xa);
        lji_pat_free(&r);
        return NULL;
    }
    int64_t k = 0;
    for (int64_t j = 0; j < n; j++) {
        r->p[j] = k;
        int64_t qa = a->p[j], qb = b->p[j];
        while (qa < a->p[j + 1] || qb < b->p[j + 1]) {
            int64_t ra = qa < a->p[j + 1] ? a->i[qa] : INT64_MAX, rb = qb < b->p[j + 1] ? b->i[qb] : INT64_MAX;
            int64_t row = ra < rb ? ra : rb;
            int64_t pa = ra == row ? qa++ : -1, pb = rb == row ? qb++ : -1;
            if (!unite && (pa < 0 || pb < 0)) continue;
            r->i[k] = row;
            xa[k] = pa;
            xb[k++] = pb;
        }
    }
    r->p[n] = k;
    r->nnz = k;
    *ma = xa;
    *mb = xb;
    return r;
}

/* The pattern of a·b through CHOLMOD's symbolic product. */
static lji_pat *pat_product(lj_context *ctx, const lji_pat *a, const lji_pat *b)
{
    cholmod_sparse va, vb;
    lji_pat_view(a, NULL, &va);
    lji_pat_view(b, NULL, &vb);
    va.xtype = vb.xtype = CHOLMOD_PATTERN;
    cholmod_sparse *c = lji_alloc_gate(ctx) ? cholmod_l_ssmult(&va, &vb, 0, 0, 1, &ctx->cc) : NULL;
    if (!c) {
        if (ctx->cc.status < 0) lji_cholmod_check(ctx, "mul");
        if (ctx->status == LJ_OK) lji_nomem(ctx, "mul");
        return NULL;
    }
    int64_t n = (int64_t)c->ncol, *cp = c->p, *ci = c->i;
    /* sorted and packed, as lji_sparse_canon makes CHOLMOD's results */
    lji_pat *r = NULL;
    if ((c = lji_sparse_canon(ctx, c, "mul"))) {
        cp = c->p;
        ci = c->i;
        r = pat_new(ctx, (int64_t)c->nrow, n, cp[n], "mul");
        if (r) {
            memcpy(r->p, cp, (size_t)(n + 1) * sizeof *cp);
            if (cp[n]) memcpy(r->i, ci, (size_t)cp[n] * sizeof *ci);
        }
    }
    cholmod_l_free_sparse(&c, &ctx->cc);
    return r;
}

/* the (mn)×1 pattern of vec S: the same entries in the same order */
static lji_pat *pat_vec(lj_context *ctx, const lji_pat *p)
{
    lji_pat *r = pat_new(ctx, p->nrow * p->ncol, 1, p->nnz, "vec");
    if (!r) return NULL;
    r->p[0] = 0;
    r->p[1] = p->nnz;
    for (int64_t j = 0; j < p->ncol; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) r->i[q] = p->i[q] + j * p->nrow;
    return r;
}

static bool scalar(const lj_expr *e) { return e->rows == 1 && e->cols == 1; }

/* Sampling: S .* X needs X only on S's pattern. Where X is a matrix
 * product of dense operands (or sums, differences, negations and scalings
 * of such products with sparse terms), the node gets, in place of X, a copy
 * of X's operations on that pattern: the product's entries are computed
 * there alone (a sampled dense-dense product), so S .* (U*V') costs
 * O(nnz(S)·r) and never holds the m×n product. The copies print as X does.
 * Returns a new node, or NULL when X is not worth sampling (or on error,
 * with ctx->status set). */
static lj_expr *sample_on(lj_context *ctx, const lj_expr *o, lji_pat *pat, const char *plabel, bool *fail)
{
    if (o->pat || scalar(o)) return NULL;
    const lji_opdef *d = o->def;
    lj_expr *n = NULL;
    if (d == &lji_op_mul && !scalar(o->a) && !scalar(o->b) && !o->a->pat && !o->b->pat) {
        n = lji_node_new(ctx, d, o->rows, o->cols, o->a, o->b);
        if (n) {
            n->pbase = o->pbase;
            n->pn = o->pn;
            n->pat = lji_pat_retain(pat);
            n->skind = LJI_SK_SAMPLED;
            if (!(n->plabel = lji_strdup(ctx, plabel))) lj_expr_free(&n);
        }
        *fail = !n;
        return n;
    }
    bool unary = d == &lji_op_neg || d == &lji_op_scale;
    if (!unary && d->sparse != LJI_SP_UNION) return NULL;
    lj_expr *sa = sample_on(ctx, o->a, pat, plabel, fail), *sb = NULL;
    if (*fail) return NULL;
    if (!unary) {
        sb = sample_on(ctx, o->b, pat, plabel, fail);
        /* worth it when one side samples and the other is sparse or samples */
        if (*fail || (!sa && !sb) || (!sa && !o->a->pat) || (!sb && !o->b->pat)) {
            lj_expr_free(&sa);
            lj_expr_free(&sb);
            return NULL;
        }
    } else if (!sa)
        return NULL;
    n = lji_node_new(ctx, d, o->rows, o->cols, sa ? sa : o->a, unary ? o->b : sb ? sb : o->b);
    lj_expr_free(&sa);
    lj_expr_free(&sb);
    if (n) n->p = o->p;
    if (n && (lji_sparse_node(ctx, n) != LJ_OK || !n->pat)) lj_expr_free(&n);
    *fail = !n;
    return n;
}

lj_status lji_sparse_node(lj_context *ctx, lj_expr *e)
{
    const lj_expr *a = e->a, *b = e->b;
    bool sa = a && a->pat, sb = b && b->pat;
    if (e->pat || (!sa && !sb)) return LJ_OK;
    const lji_opdef *d = e->def;
    int64_t *m0 = NULL, *m1 = NULL;
    switch (d->sparse) {
    case LJI_SP_SAME: /* neg, scale, a / s: a's pattern, a scalar b dense */
        if (!sa || sb) return LJ_OK;
        e->pat = lji_pat_retain(a->pat);
        e->skind = LJI_SK_UNARY;
        return LJ_OK;
    case LJI_SP_ZERO: /* f(0) = 0 keeps the pattern: sin, sqrt, .^p for p > 0 */
        if (!(d->f ? d->f(0.0) == 0.0 : e->p > 0)) return LJ_OK;
        e->pat = lji_pat_retain(a->pat);
        e->skind = LJI_SK_UNARY;
        return LJ_OK;
    case LJI_SP_VEC:
        if (!(e->pat = pat_vec(ctx, a->pat))) return ctx->status;
        e->skind = LJI_SK_UNARY;
        return LJ_OK;
    case LJI_SP_TRANSPOSE:
        if (!(e->pat = pat_transpose(ctx, a->pat, &e->map[0]))) return ctx->status ? ctx->status : lji_nomem(ctx, "transpose");
        e->skind = LJI_SK_GATHER;
        return LJ_OK;
    case LJI_SP_PRODUCT: /* a .* b, s * S: the sparse side's pattern, both sparse: the intersection */
    case LJI_SP_QUOTIENT: /* S ./ X: S's pattern (X dense, or a scalar) */
        if (d->sparse == LJI_SP_QUOTIENT && (!sa || sb)) return LJ_OK;
        if (d == &lji_op_mul && !(scalar(a) || scalar(b))) { /* a matrix product */
            if (!sa || !sb) return LJ_OK; /* a dense result, through sdmult */
            if (!(e->pat = pat_product(ctx, a->pat, b->pat))) return ctx->status;
            e->skind = LJI_SK_OWN;
            return LJ_OK;
        }
        if (sa && sb) {
            if (scalar(a) != scalar(b)) return LJ_OK; /* a 1×1 sparse broadcast: dense */
            if (a->pat == b->pat) e->pat = lji_pat_retain(a->pat); /* S .* (a product sampled on S) */
            else e->pat = pat_merge(ctx, a->pat, b->pat, false, &m0, &m1, d->name);
        } else {
            const lj_expr *s = sa ? a : b, *o = sa ? b : a;
            if (scalar(s) && !scalar(o)) return LJ_OK;
            if (d == &lji_op_hadamard) {
                char *l = s->plabel ? lji_strdup(ctx, s->plabel) : lji_expr_label(ctx, s); /* P_S: "S" */
                bool fail = !l;
                lj_expr *so = l ? sample_on(ctx, o, s->pat, l, &fail) : NULL;
                free(l);
                if (fail) return ctx->status != LJ_OK ? ctx->status : lji_nomem(ctx, d->name);
                if (so) { /* the operand replaced by its sampled copy */
                    lj_expr **slot = sa ? &e->b : &e->a;
                    lj_expr_free(slot);
                    *slot = so;
                    return lji_sparse_node(ctx, e);
                }
            }
            e->pat = lji_pat_retain(s->pat);
            if (!(sa ? (m1 = dense_map(ctx, s->pat, o)) : (m0 = dense_map(ctx, s->pat, o)))) {
                lji_pat_free(&e->pat);
                return lji_nomem(ctx, d->name);
            }
        }
        break;
    case LJI_SP_UNION: /* S ± T */
        if (!sa || !sb || scalar(a) != scalar(b)) return LJ_OK;
        e->pat = pat_merge(ctx, a->pat, b->pat, true, &m0, &m1, d->name);
        break;
    default:
        return LJ_OK;
    }
    if (!e->pat) return ctx->status ? ctx->status : lji_nomem(ctx, d->name);
    /* an identity map is left NULL */
    int64_t *maps[2] = { m0, m1 };
    const lj_expr *ops[2] = { a, b };
    for (int w = 0; w < 2; w++) {
        bool ident = maps[w] && ops[w]->pat && ops[w]->pat->nnz == e->pat->nnz;
        for (int64_t k = 0; ident && k < e->pat->nnz; k++) ident = maps[w][k] == k;
        if (ident) {
            free(maps[w]);
            maps[w] = NULL;
        }
        e->map[w] = maps[w];
    }
    e->skind = LJI_SK_BINARY;
    return LJ_OK;
}

/* ---- values -------------------------------------------------------------------------- */

double *lji_scatter(lj_context *ctx, const lj_expr *e, const double *x, const char *op)
{
    int64_t mn;
    if (!lji_size_ok(e->rows, e->cols, &mn) || (uint64_t)mn * sizeof(double) > lji_machine_bytes()) {
        lji_error(ctx, LJ_ERR_NOMEM, "%s: needs its sparse operand " LJI_SHP " dense (%.3g GB), more than "
                  "this machine holds", op, e->rows, e->cols, (double)e->rows * (double)e->cols * 8e-9);
        return NULL;
    }
    double *D = lji_calloc(ctx, (size_t)(mn ? mn : 1), sizeof *D);
    if (!D) {
        lji_error(ctx, LJ_ERR_NOMEM, "%s: out of memory for its sparse operand " LJI_SHP " made dense", op,
                  e->rows, e->cols);
        return NULL;
    }
    const lji_pat *p = e->pat;
    for (int64_t j = 0; j < p->ncol; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) D[p->i[q] + j * e->rows] = x[q];
    return D;
}

static inline double at(const double *v, const int64_t *map, int64_t k)
{
    if (!map) return v[k];
    return map[k] < 0 ? 0.0 : v[map[k]];
}

/* S * T on a pattern fixed when the node was built: CHOLMOD's product,
 * placed into that pattern */
static lj_status product_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    cholmod_sparse va, vb;
    lji_pat_view(e->a->pat, A, &va);
    lji_pat_view(e->b->pat, B, &vb);
    cholmod_sparse *c = lji_alloc_gate(ctx) ? cholmod_l_ssmult(&va, &vb, 0, 1, 1, &ctx->cc) : NULL;
    if (!c) {
        if (ctx->cc.status < 0) lji_cholmod_check(ctx, "mul");
        return ctx->status != LJ_OK ? ctx->status : lji_nomem(ctx, "mul");
    }
    if (!(c = lji_sparse_canon(ctx, c, "mul"))) return ctx->status;
    const lji_pat *p = e->pat;
    const int64_t *cp = c->p, *ci = c->i;
    const double *cx = c->x;
    memset(out, 0, (size_t)(p->nnz ? p->nnz : 1) * sizeof *out);
    for (int64_t j = 0; j < p->ncol; j++) {
        int64_t q = p->p[j];
        for (int64_t r = cp[j]; r < cp[j + 1]; r++) {
            while (q < p->p[j + 1] && p->i[q] < ci[r]) q++;
            if (q < p->p[j + 1] && p->i[q] == ci[r]) out[q] = cx[r];
        }
    }
    cholmod_l_free_sparse(&c, &ctx->cc);
    return LJ_OK;
}

/* A·B (A m×r, B r×n, dense) on e's pattern only: entry (i, j) is row i of A
 * (kept transposed, contiguous) against column j of B. */
static lj_status sampled_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    const lji_pat *p = e->pat;
    int64_t m = e->a->rows, r = e->a->cols;
    double *At = lji_malloc(ctx, (size_t)(m * r > 0 ? m * r : 1) * sizeof *At);
    if (!At) return lji_error(ctx, LJ_ERR_NOMEM, "mul: out of memory for a sampled product's " LJI_SHP " factor", m, r);
    if (m * r > 0) lji_transpose(m, r, 1.0, A, m, 0.0, At, r);
    for (int64_t j = 0; j < p->ncol; j++) {
        const double *bj = B + j * r;
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
            const double *ai = At + p->i[q] * r;
            double t = 0.0;
            for (int64_t l = 0; l < r; l++) t += ai[l] * bj[l];
            out[q] = t;
        }
    }
    free(At);
    return LJ_OK;
}

lj_status lji_sparse_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    const lji_opdef *d = e->def;
    int64_t n = lji_vlen(e);
    switch (e->skind) {
    case LJI_SK_UNARY:
        return d->eval(ctx, e, A, B, out); /* the operation's own loop over the entries */
    case LJI_SK_GATHER:
        for (int64_t k = 0; k < n; k++) out[k] = A[e->map[0][k]];
        return LJ_OK;
    case LJI_SK_BINARY:
        for (int64_t k = 0; k < n; k++) {
            double x = at(A, e->map[0], k), y = at(B, e->map[1], k);
            if (d->sparse == LJI_SP_QUOTIENT && y == 0.0) {
                int64_t r, c;
                lji_pat_entry(e->pat, k, &r, &c);
                return lji_error(ctx, LJ_ERR_DOMAIN, "%s: division by zero at entry (%" PRId64 ",%" PRId64
                                 ") of " LJI_SHP, d->name, r + 1, c + 1, e->rows, e->cols);
            }
            out[k] = d->bin(x, y);
        }
        return LJ_OK;
    case LJI_SK_OWN:
        return product_eval(ctx, e, A, B, out);
    case LJI_SK_SAMPLED:
        return sampled_eval(ctx, e, A, B, out);
    default:
        break;
    }
    if (d->sparse_eval) return d->eval(ctx, e, A, B, out);
    /* a dense result as large as the operand: read it dense */
    double *Ad = NULL, *Bd = NULL;
    if (e->a && e->a->pat && !(Ad = lji_scatter(ctx, e->a, A, d->name))) return ctx->status;
    if (e->b && e->b->pat && !(Bd = lji_scatter(ctx, e->b, B, d->name))) {
        free(Ad);
        return ctx->status;
    }
    lj_status st = d->eval(ctx, e, Ad ? Ad : A, Bd ? Bd : B, out);
    free(Ad);
    free(Bd);
    return st;
}

/* ---- Jacobians ----------------------------------------------------------------------- */

/* "P_S" for an atomic label, "P_{...}" otherwise */
static char *pname(lj_context *ctx, const char *label)
{
    lji_buf b;
    lji_buf_init(&b, ctx);
    size_t n = strlen(label);
    bool wrapped = lji_label_is_wrapped(label);
    bool atom = lji_label_is_atomic(label) && !strchr(label, '(');
    if (wrapped) lji_buf_printf(&b, "P_{%.*s}", (int)(n - 2), label + 1);
    else lji_buf_printf(&b, atom ? "P_%s" : "P_{%s}", label);
    return lji_buf_finish(&b, "jacobian");
}

/* The selection of e's stored entries by name: P_M when a named sparse leaf
 * of the expression has that very pattern (M .* (A*X) is stored on M's, the
 * pattern constant P_S of a gradient on S's), else P_{e}. */
char *lji_d_pattern_name(lji_dctx *d, const lj_expr *e)
{
    const char *name = e->plabel;
    for (int64_t k = 0; !name && e->pat && k < d->t->n; k++) {
        const lj_expr *l = d->t->node[k];
        if (lji_is_leaf(l) && l->name && l->pat == e->pat) name = l->plabel ? l->plabel : l->name;
    }
    if (name) return pname(d->ctx, name);
    char *l = lji_d_label(d, e), *r = l ? pname(d->ctx, l) : NULL;
    free(l);
    return r;
}

/* P_Ω·Diag(w) (w NULL: ones) with entries (i[k], j[k]) of e's rows×cols: a
 * sampled node over identities, so that a Kronecker factor composed on its
 * right (a product's local Jacobian) joins it as one sampled product. */
static lj_op *sampled_identities(lj_context *ctx, const lj_expr *e, int64_t nz, const int64_t *i, const int64_t *j,
                                 const double *w, const char *label)
{
    lj_op *C = lj_op_identity(ctx, e->cols), *D = C ? lj_op_identity(ctx, e->rows) : NULL;
    lj_op *r = D ? lj_op_sampled(ctx, nz, i, j, w, C, D, label) : NULL;
    lj_op_free(&C);
    lj_op_free(&D);
    return r;
}

/* P_e: the nnz×(rows·cols) selection of e's stored entries from vec e */
static lj_op *selection(lji_dctx *d, const lj_expr *e)
{
    lj_context *ctx = d->ctx;
    const lji_pat *p = e->pat;
    int64_t *rc = lji_malloc(ctx, 2 * (size_t)(p->nnz ? p->nnz : 1) * sizeof *rc);
    char *pl = lji_d_pattern_name(d, e);
    lj_op *r = NULL;
    if (rc && pl) {
        for (int64_t j = 0; j < p->ncol; j++)
            for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
                rc[q] = p->i[q];
                rc[p->nnz + q] = j;
            }
        r = sampled_identities(ctx, e, p->nnz, rc, rc + p->nnz, NULL, pl);
    } else
        lji_nomem(ctx, "jacobian");
    free(rc);
    free(pl);
    return r;
}

/* tr and diag of a sparse square a: the selection of its stored diagonal,
 * (P_A vec I_n)^T (1×nnz) for tr, E_n^T·P_A^T (n×nnz) for diag. */
lj_op *lji_d_diag_selection(lji_dctx *d, const lj_expr *a, bool trace)
{
    lj_context *ctx = d->ctx;
    const lji_pat *p = a->pat;
    int64_t n = a->rows, nd = 0;
    for (int64_t j = 0; j < p->ncol; j++) nd += lji_pat_find(p, j, j) >= 0;
    cholmod_sparse *s = trace ? lji_sparse_alloc(ctx, p->nnz, 1, nd, "jacobian")
                              : lji_sparse_alloc(ctx, n, p->nnz, nd, "jacobian");
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i, k = 0;
    double *sx = s->x;
    if (trace) {
        for (int64_t j = 0; j < p->ncol; j++) {
            int64_t q = lji_pat_find(p, j, j);
            if (q >= 0) {
                si[k] = q;
                sx[k++] = 1.0;
            }
        }
        sp[0] = 0;
        sp[1] = k;
    } else {
        for (int64_t j = 0; j < p->ncol; j++)
            for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
                sp[q] = k;
                if (p->i[q] == j) {
                    si[k] = j;
                    sx[k++] = 1.0;
                }
            }
        sp[p->nnz] = k;
    }
    char *pl = lji_d_pattern_name(d, a);
    lji_buf b;
    lji_buf_init(&b, ctx);
    if (trace) lji_buf_printf(&b, "%s vec I_%" PRId64, pl ? pl : "?", n);
    else lji_buf_printf(&b, "E_%" PRId64 "^T·%s^T", n, pl ? pl : "?");
    char *label = lji_buf_finish(&b, "jacobian");
    lj_op *r = label && pl ? lj_op_sparse(ctx, s, label) : NULL;
    free(pl);
    free(label);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return trace ? lji_d_transposed(ctx, r) : r;
}

/* The dense rule composed with the selections: P_e·L·P_c^T. */
static lj_op *adapted(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a;
    lj_op *L = e->def->local(d, e, which);
    if (L && c->pat) L = lji_d_mul(d->ctx, L, lji_d_transposed(d->ctx, selection(d, c)));
    if (L && e->pat) L = lji_d_mul(d->ctx, selection(d, e), L);
    return L;
}

/* Entries g[k] at (k, map[k]) of an nnz(e)×vlen(c) matrix (k where map is
 * the identity): the Jacobian of an elementwise operation on a pattern. */
static lj_op *placed(lj_context *ctx, const lj_expr *e, const lj_expr *c, const int64_t *map, const double *g,
                     const char *label)
{
    int64_t n = lji_vlen(e), cn = lji_vlen(c);
    if (!map && n == cn) {
        bool ones = true;
        for (int64_t k = 0; k < n && ones; k++) ones = g[k] == g[0];
        if (ones && n > 0) return g[0] == 1.0 ? lj_op_identity(ctx, n) : lji_d_scaled(ctx, g[0], lj_op_identity(ctx, n));
        return lj_op_diag(ctx, n, g, label);
    }
    if (map && !c->pat) { /* a dense operand read on the pattern: P·Diag(g) */
        int64_t *rc = lji_malloc(ctx, 2 * (size_t)(n ? n : 1) * sizeof *rc);
        if (!rc) {
            lji_nomem(ctx, "jacobian");
            return NULL;
        }
        int64_t cr = c->rows > 0 ? c->rows : 1;
        for (int64_t k = 0; k < n; k++) {
            rc[k] = map[k] % cr;
            rc[n + k] = map[k] / cr;
        }
        lj_op *r = sampled_identities(ctx, c, n, rc, rc + n, g, label);
        free(rc);
        return r;
    }
    int64_t nz = 0;
    for (int64_t k = 0; k < n; k++) nz += !map || map[k] >= 0;
    cholmod_sparse *s = lji_sparse_alloc(ctx, n, cn, nz, "jacobian");
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i;
    double *sx = s->x;
    memset(sp, 0, (size_t)(cn + 1) * sizeof *sp);
    for (int64_t k = 0; k < n; k++)
        if (!map || map[k] >= 0) sp[(map ? map[k] : k) + 1]++;
    for (int64_t j = 0; j < cn; j++) sp[j + 1] += sp[j];
    int64_t *next = lji_malloc(ctx, (size_t)(cn ? cn : 1) * sizeof *next);
    if (!next) {
        cholmod_l_free_sparse(&s, &ctx->cc);
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    memcpy(next, sp, (size_t)cn * sizeof *next);
    for (int64_t k = 0; k < n; k++) /* k ascending: rows sorted in every column */
        if (!map || map[k] >= 0) {
            int64_t q = next[map ? map[k] : k]++;
            si[q] = k;
            sx[q] = g[k];
        }
    free(next);
    lj_op *r = lj_op_sparse(ctx, s, label);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return r;
}

/* The Jacobian of an elementwise binary operation on e's pattern w.r.t.
 * operand `which`, with its label in terms of the selections P. */
static lj_op *binary_local(lji_dctx *d, const lj_expr *e, int which)
{
    lj_context *ctx = d->ctx;
    const lj_expr *c = which ? e->b : e->a, *o = which ? e->a : e->b;
    const double *A = d->vals[lji_topo_find(d->t, e->a)], *B = d->vals[lji_topo_find(d->t, e->b)];
    int64_t n = lji_vlen(e);
    double *g = lji_malloc(ctx, (size_t)(n ? n : 1) * sizeof *g);
    char *le = lji_d_label(d, e), *lo = lji_d_label(d, o), *lc = lji_d_label(d, c);
    char *pe = lji_d_pattern_name(d, e), *pc = lji_d_pattern_name(d, c), *po = lji_d_pattern_name(d, o);
    lj_op *r = NULL;
    if (!g || !pe || !pc || !po) {
        lji_nomem(ctx, "jacobian");
        goto done;
    }
    bool ones = true;
    for (int64_t k = 0; k < n; k++) {
        g[k] = e->def->dbin(at(A, e->map[0], k), at(B, e->map[1], k), which);
        ones = ones && g[k] == 1.0;
    }
    lji_buf b;
    lji_buf_init(&b, ctx);
    const lji_opdef *def = e->def;
    if (scalar(c) && !scalar(e)) /* d(s·S)/ds: the column of S's entries */
        lji_buf_printf(&b, "vec %s", lo);
    else if (def->sparse == LJI_SP_UNION)
        lji_buf_printf(&b, "%s·%s^T", pe, pc);
    else if (!c->pat) /* a dense operand read on the pattern: S .* X w.r.t. X */
        lji_buf_printf(&b, ones ? "%s" : "%s·Diag(vec %s)", po, lo);
    else if (!o->pat) /* the sparse operand, the other dense */
        lji_buf_printf(&b, def->sparse == LJI_SP_QUOTIENT ? "%s vec(1 ⊘ %s)" : "%s vec %s", pc, lo);
    else if (!e->map[0] && !e->map[1]) { /* one pattern: the other's stored entries */
        lji_buf_printf(&b, lo[0] == '(' ? "%s vec%s" : "%s vec %s", po, lo); /* Diag(…) around it */
    } else
        lji_buf_printf(&b, "%s·Diag(vec %s)·%s^T", pe, lo, pc);
    char *label = lji_buf_finish(&b, "jacobian");
    if (!label) goto done;
    if (!c->pat && def->sparse == LJI_SP_QUOTIENT && which == 1) { /* −P_S·Diag(vec(S ⊘ X^2)) */
        lji_buf_init(&b, ctx);
        lji_buf_printf(&b, "%s·Diag(vec(%s ⊘ %s^2))", po, lo, lc);
        free(label);
        if (!(label = lji_buf_finish(&b, "jacobian"))) goto done;
    }
    bool neg = which == 1 && (def == &lji_op_sub || def->sparse == LJI_SP_QUOTIENT);
    if (neg) /* S − T w.r.t. T, S ./ X w.r.t. X: the sign outside */
        for (int64_t k = 0; k < n; k++) g[k] = -g[k];
    r = placed(ctx, e, c, e->map[which], g, label);
    if (neg) r = lji_d_scaled(ctx, -1.0, r);
    free(label);
done:
    free(g);
    free(le);
    free(lo);
    free(lc);
    free(pe);
    free(pc);
    free(po);
    return r;
}

lj_op *lji_local(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a;
    if (!e->pat && !c->pat) return e->def->local(d, e, which);
    lj_op *r = NULL;
    switch (e->skind) {
    case LJI_SK_UNARY: /* same formulas, on the stored entries */
        d->raw = true;
        r = e->def->local(d, e, which);
        d->raw = false;
        return r;
    case LJI_SK_GATHER: {
        char *pc = lji_d_pattern_name(d, c), *pe = lji_d_pattern_name(d, e);
        lji_buf b;
        lji_buf_init(&b, d->ctx);
        lji_buf_printf(&b, "%s·K_{%" PRId64 ",%" PRId64 "}·%s^T", pe ? pe : "?", c->rows, c->cols, pc ? pc : "?");
        char *label = lji_buf_finish(&b, "jacobian");
        if (label && pc && pe) r = lj_op_perm(d->ctx, lji_vlen(e), e->map[0], label);
        else lji_nomem(d->ctx, "jacobian");
        free(pc);
        free(pe);
        free(label);
        return r;
    }
    case LJI_SK_BINARY:
        return binary_local(d, e, which);
    case LJI_SK_SAMPLED: /* P_S·(the product's own rule): one sampled product */
        return adapted(d, e, which);
    default:
        break;
    }
    if (e->def->sparse_local) {
        d->raw = true;
        r = e->def->local(d, e, which);
        d->raw = false;
        if (r || d->ctx->status != LJ_OK) return r;
    }
    return adapted(d, e, which);
}

/* ---- evaluation to the caller ---------------------------------------------------- */

cholmod_sparse *lj_expr_eval_sparse(lj_context *ctx, const lj_expr *e)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!lji_expr_ok(e)) {
        lji_error(ctx, LJ_ERR_INVALID, "eval_sparse: expression is %s", e ? "not live" : "NULL");
        return NULL;
    }
    if (!e->pat) {
        lji_error(ctx, LJ_ERR_INVALID, "eval_sparse: the value of " LJI_SHP " is dense (lj_expr_eval)", e->rows,
                  e->cols);
        return NULL;
    }
    double *x = NULL;
    if (lji_eval_raw(ctx, e, &x) != LJ_OK) return NULL;
    const lji_pat *p = e->pat;
    cholmod_sparse *s = lji_sparse_alloc(ctx, p->nrow, p->ncol, p->nnz, "eval_sparse");
    if (s) {
        memcpy(s->p, p->p, (size_t)(p->ncol + 1) * sizeof(int64_t));
        if (p->nnz) {
            memcpy(s->i, p->i, (size_t)p->nnz * sizeof(int64_t));
            memcpy(s->x, x, (size_t)p->nnz * sizeof(double));
        }
        s->sorted = 1;
    }
    free(x);
    return s;
}
