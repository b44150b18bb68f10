/* The lazy transpose A^T, and the rules that push it to the leaves. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

/* ---- transpose ------------------------------------------------------------- */

static int64_t transpose_nnz(const lj_op *J, bool *exact)
{
    return lji_nnz(J->child[0], exact);
}

static void transpose_cost(const lj_op *J, double *flops, double *bytes)
{
    lji_cost(J->child[0], flops, bytes);
}

static lj_status transpose_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k,
                                 double alpha, const double *X, int64_t ldx, double beta,
                                 double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[0], !trans, k, alpha, X, ldx, beta, Y, ldy);
}

static cholmod_sparse *transpose_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_to_sparse(ctx, J->child[0]);
    if (!s) return NULL;
    if (!lji_alloc_gate(ctx)) {
        cholmod_l_free_sparse(&s, &ctx->cc);
        lji_nomem(ctx, "to_sparse");
        return NULL;
    }
    cholmod_sparse *t = cholmod_l_transpose(s, 1, &ctx->cc);
    cholmod_l_free_sparse(&s, &ctx->cc);
    if (!t) lji_cholmod_check(ctx, "to_sparse");
    return lji_sparse_canon(ctx, t, "to_sparse");
}

static void transpose_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    const lj_op *c = J->child[0];
    if ((lji_is(c, &lji_kind_dense) || lji_is(c, &lji_kind_sparse)) && c->label) {
        /* as the value of the transposed label: (x^T·A)^T as A^T·x, X^{-1}
         * as X^{-T}, x^T as x (what a vector over the same numbers prints) */
        char tbuf[64], *own;
        const char *t = lji_label_transposed_to(b->ctx, c->label, tbuf, sizeof tbuf, &own);
        if (t) lji_put_value_label(b, t, fmt, where);
        else b->failed = true;
        free(own);
        return;
    }
    bool atom = lji_is(c, &lji_kind_dense) || lji_is(c, &lji_kind_sparse) ||
                lji_is(c, &lji_kind_perm) || lji_is(c, &lji_kind_diag) ||
                lji_is(c, &lji_kind_identity) || lji_is(c, &lji_kind_commutation);
    if (atom && c->label && !lji_label_transposes_bare(c->label)) atom = false;
    lji_put_open(b, !atom);
    lji_print(b, c, fmt, LJI_AT_TIGHT);
    lji_put_close(b, !atom);
    lji_buf_puts(b, lji_sym_transpose(fmt));
}

/* the child (cols×rows) into workspace, then transposed into a */
static lj_status transpose_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    const lj_op *A = J->child[0];
    int64_t n;
    if (!lji_size_ok(A->rows, A->cols, &n)) return lji_error(ctx, LJ_ERR_OVERFLOW, "to_dense: workspace overflows");
    lji_mark mk = lji_work_mark(ctx);
    double *t = lji_work_push(ctx, n);
    lj_status st = t ? lji_to_dense(ctx, A, t, A->rows > 1 ? A->rows : 1) : lji_nomem(ctx, "to_dense");
    if (st == LJ_OK) lji_transpose(A->rows, A->cols, 1.0, t, A->rows > 1 ? A->rows : 1, 0.0, a, ld);
    lji_work_pop(ctx, mk);
    return st;
}

/* rows of A^T are columns of A: taken from a dense, sparse or Diag leaf
 * directly, else a selection times A^T */
static lj_op *transpose_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    const lj_op *A = J->child[0];
    lj_op *c = NULL;
    if (lji_is(A, &lji_kind_dense)) {
        char *l = lji_rows_label(ctx, A->label, r0, r1, true);
        if (A->label && !l) return NULL;
        c = lj_op_dense(ctx, A->rows, r1 - r0, A->data + r0 * A->ld, A->ld, l);
        free(l);
    } else if (lji_is(A, &lji_kind_sparse)) {
        const int64_t *p = A->sp.p;
        cholmod_sparse v = A->sp; /* a view of columns r0..r1-1 */
        v.ncol = (size_t)(r1 - r0);
        v.p = (int64_t *)p + r0;
        int64_t base = p[r0];
        cholmod_sparse *s = NULL;
        if (base == 0) s = cholmod_l_copy_sparse(&v, &ctx->cc); /* column pointers start at 0 */
        else {
            s = lji_sparse_alloc(ctx, A->rows, r1 - r0, p[r1] - base, "rows");
            if (s) {
                int64_t *sp = s->p;
                for (int64_t j = 0; j <= r1 - r0; j++) sp[j] = p[r0 + j] - base;
                memcpy(s->i, (int64_t *)A->sp.i + base, (size_t)(p[r1] - base) * sizeof(int64_t));
                memcpy(s->x, (double *)A->sp.x + base, (size_t)(p[r1] - base) * sizeof(double));
            }
        }
        if (!s) {
            if (ctx->status == LJ_OK) lji_nomem(ctx, "rows");
            return NULL;
        }
        char *l = lji_rows_label(ctx, A->label, r0, r1, true);
        c = (l || !A->label) ? lj_op_sparse(ctx, s, l) : NULL;
        if (A->label && !l) lji_nomem(ctx, "rows");
        free(l);
        cholmod_l_free_sparse(&s, &ctx->cc);
    } else {
        lj_op *I = lj_op_identity(ctx, r1 - r0), *S = lji_place_cols(ctx, I, r0, r1, J->rows);
        lj_op *r = S ? lj_op_mul(ctx, S, J) : NULL;
        lj_op_free(&S);
        return r;
    }
    lj_op *r = c ? lj_op_transpose(ctx, c) : NULL;
    lj_op_free(&c);
    return r;
}

const lji_kind lji_kind_transpose = {
    .id = LJ_OP_TRANSPOSE,
    .name = "transpose",
    .apply = transpose_apply,
    .to_sparse = transpose_to_sparse,
    .rows = transpose_rows,
    .to_dense = transpose_to_dense,
    .nnz = transpose_nnz,
    .cost = transpose_cost,
    .print = transpose_print,
    .equal = NULL,
};

/* The rules push the transpose to the leaves; only dense, sparse and
 * permutation leaves keep a lazy transpose node (the others have a transposed
 * form of their own kind). */
lj_op *lj_op_transpose(lj_context *ctx, const lj_op *a)
{
    if (lji_check_args(ctx, "transpose", 1, &a) != LJ_OK) return NULL;
    return lji_op_transpose_nc(ctx, a);
}

/* The transposes made in one call, of nodes with children: J is a DAG,
 * and a node that several parents share is transposed once (pushed
 * through sums and products as a tree, a DAG of k nested shared sums made
 * 2^k nodes). A few on the stack, then on the heap. */
typedef struct {
    const lj_op *from[16];
    lj_op *to[16];
    const lj_op **hfrom;
    lj_op **hto;
    int n, cap;
} tmemo;

static lj_op *tmemo_get(const tmemo *m, const lj_op *a)
{
    for (int i = 0; i < m->n; i++)
        if ((i < 16 ? m->from[i] : m->hfrom[i - 16]) == a) return i < 16 ? m->to[i] : m->hto[i - 16];
    return NULL;
}

static void tmemo_put(lj_context *ctx, tmemo *m, const lj_op *a, lj_op *t)
{
    if (m->n < 16) {
        m->from[m->n] = a;
        m->to[m->n++] = t;
        return;
    }
    if (m->n - 16 == m->cap) {
        int cap = m->cap ? 2 * m->cap : 64;
        const lj_op **f = lji_realloc(ctx, m->hfrom, (size_t)cap * sizeof *f);
        if (f) m->hfrom = f;
        lj_op **g = f ? lji_realloc(ctx, m->hto, (size_t)cap * sizeof *g) : NULL;
        if (g) m->hto = g;
        if (!f || !g) { /* not kept: transposed again where met again */
            lj_op_free(&t);
            return;
        }
        m->cap = cap;
    }
    m->hfrom[m->n - 16] = a;
    m->hto[m->n++ - 16] = t;
}

static lj_op *transpose_rec(lj_context *ctx, const lj_op *a, tmemo *m);

lj_op *lji_op_transpose_nc(lj_context *ctx, const lj_op *a)
{
    tmemo m = { .n = 0 };
    lj_op *r = transpose_rec(ctx, a, &m);
    for (int i = 0; i < m.n; i++) lj_op_free(i < 16 ? &m.to[i] : &m.hto[i - 16]);
    free(m.hfrom);
    free(m.hto);
    return r;
}

static lj_op *transpose_rec(lj_context *ctx, const lj_op *a, tmemo *m)
{
    const char *op = "transpose";
    const lji_kind *k = a->kind;
    if (k == &lji_kind_identity || k == &lji_kind_diag) return lji_take_ref(ctx, a);
    if (k == &lji_kind_zero) return lj_op_zero(ctx, a->cols, a->rows);
    if (k == &lji_kind_commutation) return lj_op_commutation(ctx, a->n, a->m);
    if (k == &lji_kind_transpose) return lj_op_retain(a->child[0]);
    if (k == &lji_kind_rank1)
        return lj_op_rank1(ctx, a->cols, a->data2, a->label2, a->rows, a->data, a->label);
    if (k == &lji_kind_scaled || k == &lji_kind_kron || k == &lji_kind_compose ||
        k == &lji_kind_sum || k == &lji_kind_hstack || k == &lji_kind_vstack) {
        lj_op *seen = tmemo_get(m, a);
        if (seen) return lj_op_retain(seen);
        int n = a->nchild;
        lj_op **t = lji_calloc(ctx, (size_t)n, sizeof *t);
        if (!t) {
            lji_nomem(ctx, op);
            return NULL;
        }
        lj_op *r = NULL;
        int i;
        for (i = 0; i < n; i++) {
            /* (AB)^T = B^T A^T: a product's factors reverse */
            int src = k == &lji_kind_compose ? n - 1 - i : i;
            t[i] = transpose_rec(ctx, a->child[src], m);
            if (!t[i]) break;
        }
        if (i == n) {
            const lj_op *const *ct = (const lj_op *const *)t;
            if (k == &lji_kind_scaled) r = lji_scale_sym(ctx, a->alpha, a->label, t[0]);
            else if (k == &lji_kind_kron) r = lj_op_kron_n(ctx, n, ct);
            else if (k == &lji_kind_compose) r = lj_op_compose(ctx, n, ct);
            else if (k == &lji_kind_sum) r = lj_op_lincomb(ctx, n, a->coef, ct);
            else if (k == &lji_kind_hstack) r = lj_op_vstack(ctx, n, ct);
            else r = lj_op_hstack(ctx, n, ct);
        }
        for (int j = 0; j < n; j++) lj_op_free(&t[j]);
        free(t);
        if (r && a->nchild > 0) tmemo_put(ctx, m, a, lj_op_retain(r));
        return r;
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_transpose, a->cols, a->rows, 1, op);
    if (!J) return NULL;
    J->child[0] = lji_take_ref(ctx, a);
    lji_op_seal(J);
    return J;
}
