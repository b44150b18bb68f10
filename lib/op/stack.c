/* Block stacks: [A_1, A_2, …] side by side (several variables) and
 * [A_1; A_2; …] on top of each other (several outputs). */
#include "config.h"
#include "op.h"
#include <inttypes.h>

/* Side by side: J x = Σ A_i x_i;  J^T y = [A_1^T y; A_2^T y; …].
 * Stacked is the same with the roles of apply and transpose-apply swapped. */
/* The offset of block i in the split vector (input or output). */
static int64_t block_offset(const lj_op *J, int i, bool trans, bool split_in)
{
    int64_t off = 0;
    for (int t = 0; t < i; t++) {
        const lj_op *A = J->child[t];
        off += split_in ? (trans ? A->rows : A->cols) : (trans ? A->cols : A->rows);
    }
    return off;
}

/* Block i of a split input: a term of the sum Σ A_i x_i. */
static lj_status stack_term(lj_context *ctx, const lj_op *J, int i, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[i], trans, k, alpha, X + block_offset(J, i, trans, true), ldx, beta, Y, ldy);
}

/* Block i of a split output. */
static lj_status stack_block(lj_context *ctx, const lj_op *J, int i, bool trans, int64_t k, double alpha,
                             const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[i], trans, k, alpha, X, ldx, beta, Y + block_offset(J, i, trans, false), ldy);
}

static lj_status stack_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                             const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    bool split_in = lji_is(J, &lji_kind_hstack) != trans; /* input is split into blocks */
    int64_t off = 0;
    lj_status st = LJ_OK;
    if (split_in ? lji_apply_terms(ctx, J, J->nchild, stack_term, trans, k, alpha, X, ldx, beta, Y, ldy, &st)
                 : lji_apply_blocks(ctx, J, J->nchild, stack_block, trans, k, alpha, X, ldx, beta, Y, ldy, &st))
        return st;
    for (int i = 0; i < J->nchild && st == LJ_OK; i++) {
        const lj_op *A = J->child[i];
        if (split_in) {
            st = lji_apply(ctx, A, trans, k, alpha, X + off, ldx, i ? 1.0 : beta, Y, ldy);
            off += trans ? A->rows : A->cols;
        } else {
            st = lji_apply(ctx, A, trans, k, alpha, X, ldx, beta, Y + off, ldy);
            off += trans ? A->cols : A->rows;
        }
    }
    if (split_in && J->nchild == 0) lji_scale_block(trans ? J->cols : J->rows, k, beta, Y, ldy);
    return st;
}

static cholmod_sparse *stack_to_sparse(lj_context *ctx, const lj_op *J)
{
    int n = J->nchild;
    cholmod_sparse **S = lji_calloc(ctx, (size_t)n, sizeof *S);
    cholmod_sparse *R = NULL;
    if (!S) {
        lji_nomem(ctx, "to_sparse");
        return NULL;
    }
    int64_t nz = 0;
    for (int i = 0; i < n; i++) {
        S[i] = lji_to_sparse(ctx, J->child[i]);
        if (!S[i]) goto done;
        nz += ((int64_t *)S[i]->p)[S[i]->ncol];
    }
    R = lji_sparse_alloc(ctx, J->rows, J->cols, nz, "to_sparse");
    if (!R) goto done;
    int64_t *Rp = R->p, *Ri = R->i, q = 0;
    double *Rx = R->x;
    if (lji_is(J, &lji_kind_hstack)) {
        int64_t c0 = 0;
        for (int b = 0; b < n; b++) {
            const int64_t *p = S[b]->p, *ii = S[b]->i;
            const double *x = S[b]->x;
            for (int64_t j = 0; j < (int64_t)S[b]->ncol; j++) {
                Rp[c0 + j] = q;
                for (int64_t t = p[j]; t < p[j + 1]; t++, q++) {
                    Ri[q] = ii[t];
                    Rx[q] = x[t];
                }
            }
            c0 += (int64_t)S[b]->ncol;
        }
    } else {
        for (int64_t j = 0; j < J->cols; j++) {
            Rp[j] = q;
            int64_t r0 = 0;
            for (int b = 0; b < n; b++) {
                const int64_t *p = S[b]->p, *ii = S[b]->i;
                const double *x = S[b]->x;
                for (int64_t t = p[j]; t < p[j + 1]; t++, q++) {
                    Ri[q] = r0 + ii[t];
                    Rx[q] = x[t];
                }
                r0 += (int64_t)S[b]->nrow;
            }
        }
    }
    Rp[J->cols] = q;
done:
    for (int i = 0; i < n; i++) cholmod_l_free_sparse(&S[i], &ctx->cc);
    free(S);
    return R;
}

static int64_t stack_nnz(const lj_op *J, bool *exact)
{
    int64_t t = 0;
    bool all = true, e;
    for (int i = 0; i < J->nchild; i++) {
        if (!lji_add_ok(t, lji_nnz(J->child[i], &e), &t)) t = INT64_MAX;
        all = all && e;
    }
    *exact = all;
    return t;
}


static void stack_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    bool h = lji_is(J, &lji_kind_hstack);
    lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? "\\begin{bmatrix}" : "[");
    for (int i = 0; i < J->nchild; i++) {
        if (i) lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? (h ? " & " : " \\\\ ") : (h ? ", " : "; "));
        lji_print(b, J->child[i], fmt, LJI_AT_TOP);
    }
    lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? "\\end{bmatrix}" : "]");
}

/* each block written into its place in a */
static lj_status stack_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    bool h = lji_is(J, &lji_kind_hstack);
    int64_t off = 0;
    lj_status st = LJ_OK;
    for (int i = 0; st == LJ_OK && i < J->nchild; i++) {
        const lj_op *A = J->child[i];
        st = lji_to_dense(ctx, A, h ? a + off * ld : a + off, ld);
        off += h ? A->cols : A->rows;
    }
    if (J->nchild == 0) lji_zero_block(J->rows, J->cols, a, ld);
    return st;
}

/* hstack: each block's rows side by side; vstack: the blocks that overlap
 * the range, each cut to it */
static lj_op *stack_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    bool h = lji_is(J, &lji_kind_hstack);
    lj_op **t = lji_calloc(ctx, (size_t)J->nchild, sizeof *t);
    if (!t) {
        lji_nomem(ctx, "rows");
        return NULL;
    }
    int n = 0;
    bool fail = false;
    int64_t off = 0;
    for (int i = 0; i < J->nchild && !fail; i++) {
        const lj_op *A = J->child[i];
        if (h)
            fail = !(t[n++] = lji_rows(ctx, A, r0, r1));
        else {
            int64_t a0 = r0 > off ? r0 - off : 0, a1 = r1 - off < A->rows ? r1 - off : A->rows;
            if (a1 > a0) fail = !(t[n++] = lji_rows(ctx, A, a0, a1));
            off += A->rows;
        }
    }
    lj_op *r = fail ? NULL : h ? lj_op_hstack(ctx, n, (const lj_op *const *)t) : lj_op_vstack(ctx, n, (const lj_op *const *)t);
    for (int k = 0; k < n; k++) lj_op_free(&t[k]);
    free(t);
    return r;
}

const lji_kind lji_kind_hstack = {
    .id = LJ_OP_HSTACK,
    .name = "hstack",
    .apply = stack_apply,
    .to_sparse = stack_to_sparse,
    .rows = stack_rows,
    .to_dense = stack_to_dense,
    .nnz = stack_nnz,
    .cost = lji_cost_of_children,
    .print = stack_print,
    .equal = NULL,
};

const lji_kind lji_kind_vstack = {
    .id = LJ_OP_VSTACK,
    .name = "vstack",
    .apply = stack_apply,
    .to_sparse = stack_to_sparse,
    .rows = stack_rows,
    .to_dense = stack_to_dense,
    .nnz = stack_nnz,
    .cost = lji_cost_of_children,
    .print = stack_print,
    .equal = NULL,
};

static lj_op *stack_make(lj_context *ctx, bool h, int n, const lj_op *const *ops)
{
    const char *op = h ? "hstack" : "vstack";
    if (lji_check_args(ctx, op, n, ops) != LJ_OK) return NULL;
    if (n == 0) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: no blocks", op);
        return NULL;
    }
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        int64_t same = h ? ops[i]->rows : ops[i]->cols, ref = h ? ops[0]->rows : ops[0]->cols;
        if (same != ref) {
            lji_error(ctx, LJ_ERR_SHAPE, "%s: block %d is " LJI_SHP ", block 1 is " LJI_SHP
                      " (%s must agree)", op, i + 1, ops[i]->rows, ops[i]->cols, ops[0]->rows,
                      ops[0]->cols, h ? "rows" : "columns");
            return NULL;
        }
        if (!lji_add_ok(total, h ? ops[i]->cols : ops[i]->rows, &total)) {
            lji_error(ctx, LJ_ERR_OVERFLOW, "%s: total size overflows", op);
            return NULL;
        }
    }
    if (n == 1) return lj_op_retain(ops[0]);
    lj_op *J = lji_op_new(ctx, h ? &lji_kind_hstack : &lji_kind_vstack, h ? ops[0]->rows : total,
                          h ? total : ops[0]->cols, n, op);
    if (!J) return NULL;
    for (int i = 0; i < n; i++) J->child[i] = lj_op_retain(ops[i]);
    lji_op_seal(J);
    return J;
}

lj_op *lj_op_hstack(lj_context *ctx, int n, const lj_op *const *ops)
{
    return stack_make(ctx, true, n, ops);
}

lj_op *lj_op_vstack(lj_context *ctx, int n, const lj_op *const *ops)
{
    return stack_make(ctx, false, n, ops);
}
