/* Numeric evaluation of an expression DAG, each node once, in topological
 * order, by each operation's own evaluation (ops.h). */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

void lji_vals_clear(const lji_topo *t, double **vals)
{
    if (!vals) return;
    for (int64_t i = 0; i < t->n; i++)
        if (vals[i] && !lji_is_leaf(t->node[i])) free(vals[i]);
}

void lji_vals_free(const lji_topo *t, double **vals)
{
    lji_vals_clear(t, vals);
    free(vals);
}

lj_status lji_vals_alloc(lj_context *ctx, const lji_topo *t, const unsigned char *need,
                         double ***pvals)
{
    bool fresh = *pvals == NULL;
    double **vals = fresh ? lji_calloc(ctx, (size_t)(t->n ? t->n : 1), sizeof *vals) : *pvals;
    if (!vals) return lji_nomem(ctx, "eval");
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *e = t->node[i];
        if (lji_is_leaf(e)) {
            vals[i] = e->value; /* leaves are read in place (lji_eval_into looks again) */
            continue;
        }
        if (vals[i] || (need && !need[i])) continue;
        int64_t mn = lji_vlen(e);
        vals[i] = lji_malloc_large(ctx, (size_t)(mn ? mn : 1) * sizeof(double));
        if (!vals[i]) {
            if (fresh) lji_vals_free(t, vals);
            return lji_error(ctx, LJ_ERR_NOMEM, "eval: out of memory for the value of " LJI_SHP,
                             e->rows, e->cols);
        }
    }
    *pvals = vals;
    return LJ_OK;
}

/* One node's value from its operands' (sparse operands or results through sparse.c). */
static lj_status eval_node(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    bool sparse = e->pat || (e->a && e->a->pat) || (e->b && e->b->pat);
    return sparse ? lji_sparse_eval(ctx, e, A, B, out) : e->def->eval(ctx, e, A, B, out);
}

lj_status lji_eval_into(lj_context *ctx, const lji_topo *t, const unsigned char *need, double **vals)
{
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *e = t->node[i];
        if (lji_is_leaf(e)) { /* where its values are now (a leaf's block moves: lji_leaf_own) */
            vals[i] = e->value;
            continue;
        }
        if (need && !need[i]) continue;
        const double *A = e->a ? vals[lji_topo_kid(t, i, 0)] : NULL;
        const double *B = e->b ? vals[lji_topo_kid(t, i, 1)] : NULL;
        lj_status st = eval_node(ctx, e, A, B, vals[i]);
        if (st != LJ_OK) return st;
    }
    return LJ_OK;
}

lj_status lji_eval_all(lj_context *ctx, const lji_topo *t, double ***pvals)
{
    *pvals = NULL;
    lj_status st = lji_vals_alloc(ctx, t, NULL, pvals);
    if (st != LJ_OK) return st;
    st = lji_eval_into(ctx, t, NULL, *pvals);
    if (st != LJ_OK) {
        lji_vals_free(t, *pvals);
        *pvals = NULL;
    }
    return st;
}

lj_status lji_eval_to(lj_context *ctx, const lj_expr *e, double *out)
{
    lji_topo t;
    lj_status st = lji_topo_build(ctx, e, &t);
    if (st != LJ_OK) return st;
    int64_t n = t.n, root = n - 1;
    double **vals = lji_calloc(ctx, (size_t)n, sizeof *vals);
    int64_t *uses = lji_calloc(ctx, (size_t)n, sizeof *uses);
    /* fused[i]: 1, node i is a scaling or negation whose operand, a product
     * read by nothing else (2), is computed with the factor into i's
     * buffer; 3, node i is a transpose that its one reader, a product,
     * reads through */
    unsigned char *fused = lji_calloc(ctx, (size_t)n, 1);
    if (!vals || !uses || !fused) {
        st = lji_nomem(ctx, "eval");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const lj_expr *x = t.node[i];
        if (x->a) uses[lji_topo_kid(&t, i, 0)]++;
        if (x->b) uses[lji_topo_kid(&t, i, 1)]++;
    }
    for (int64_t i = 0; i < n; i++) {
        const lj_expr *x = t.node[i];
        if ((x->def == &lji_op_scale || x->def == &lji_op_neg) && !x->pat && lji_mul_fusable(x->a) &&
            uses[lji_topo_kid(&t, i, 0)] == 1) {
            fused[i] = 1;
            fused[lji_topo_kid(&t, i, 0)] = 2; /* computed by its scaling */
        }
        /* a transpose read by nothing but a product: the product reads its
         * operand transposed (X'·u is one GEMV, X' never formed) */
        for (int w = 0; w < 2 && x->def == &lji_op_mul; w++) {
            int64_t j = lji_topo_kid(&t, i, w);
            if (uses[j] == 1 && lji_mul_reads_through(x, w)) fused[j] = 3;
        }
    }
    for (int64_t i = 0; i < n && st == LJ_OK; i++) {
        const lj_expr *x = t.node[i];
        if (lji_is_leaf(x)) {
            vals[i] = x->value;
            if (i == root && lji_vlen(x)) memcpy(out, x->value, (size_t)lji_vlen(x) * sizeof *out);
            continue;
        }
        if (fused[i] >= 2) continue; /* computed by its scaling, or read through */
        int64_t len = lji_vlen(x);
        double *buf = i == root ? out : lji_malloc_large(ctx, (size_t)(len ? len : 1) * sizeof *buf);
        if (!buf) {
            st = lji_error(ctx, LJ_ERR_NOMEM, "eval: out of memory for the value of " LJI_SHP, x->rows, x->cols);
            break;
        }
        if (i != root) vals[i] = buf;
        /* the node whose operands are read, and its index */
        const int64_t si = fused[i] == 1 ? lji_topo_kid(&t, i, 0) : i;
        const lj_expr *src = t.node[si];
        /* an operand read through: its own operand's value, transposed */
        int64_t ka = src->a ? lji_topo_kid(&t, si, 0) : -1, kb = src->b ? lji_topo_kid(&t, si, 1) : -1;
        bool ta = ka >= 0 && fused[ka] == 3, tb = kb >= 0 && fused[kb] == 3;
        const double *A = ka < 0 ? NULL : vals[ta ? lji_topo_kid(&t, ka, 0) : ka];
        const double *B = kb < 0 ? NULL : vals[tb ? lji_topo_kid(&t, kb, 0) : kb];
        if (fused[i] == 1 || ta || tb)
            st = lji_mul_eval_t(ctx, src, A, ta, B, tb, fused[i] == 1 ? (x->def == &lji_op_neg ? -1.0 : x->p) : 1.0,
                                buf);
        else
            st = eval_node(ctx, x, A, B, buf);
        /* operands read for the last time give their buffers back (an
         * operand read through, its operand's) */
        for (int k = 0; k < 2; k++) {
            int64_t j = k ? kb : ka;
            if (j < 0) continue;
            if (fused[j] == 3) {
                uses[j]--;
                j = lji_topo_kid(&t, j, 0);
            }
            if (--uses[j] == 0 && !lji_is_leaf(t.node[j])) {
                free(vals[j]);
                vals[j] = NULL;
            }
        }
    }
done:
    if (vals)
        for (int64_t i = 0; i < n; i++)
            if (i != root && !lji_is_leaf(t.node[i])) free(vals[i]);
    free(vals);
    free(uses);
    free(fused);
    lji_topo_free(&t);
    return st;
}

lj_status lji_eval_raw(lj_context *ctx, const lj_expr *e, double **out)
{
    int64_t n = lji_vlen(e);
    double *x = lji_malloc_large(ctx, (size_t)(n ? n : 1) * sizeof *x);
    if (!x) return lji_nomem(ctx, "eval");
    lj_status st = lji_eval_to(ctx, e, x);
    if (st == LJ_OK) *out = x;
    else free(x);
    return st;
}

lj_status lj_expr_eval(lj_context *ctx, const lj_expr *e, int64_t *rows, int64_t *cols,
                       double **values)
{
    const char *op = "eval";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!lji_expr_ok(e)) return lji_error(ctx, LJ_ERR_INVALID, "%s: expression is %s", op, e ? "not live" : "NULL");
    if (!values) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    double *x = NULL;
    lj_status st = lji_eval_raw(ctx, e, &x);
    if (st != LJ_OK) return st;
    if (e->pat) { /* the caller asked for the dense array */
        double *D = lji_scatter(ctx, e, x, op);
        free(x);
        if (!D) return ctx->status;
        x = D;
    }
    *values = x;
    if (rows) *rows = e->rows;
    if (cols) *cols = e->cols;
    return LJ_OK;
}
