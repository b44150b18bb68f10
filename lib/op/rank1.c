/* Rank one u v^T. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

static lj_status rank1_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                             const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    /* J x = u (v^T x);  J^T x = v (u^T x) */
    const double *in = trans ? J->data : J->data2, *out = trans ? J->data2 : J->data;
    int64_t nin = trans ? J->rows : J->cols, nout = trans ? J->cols : J->rows;
    for (int64_t j = 0; j < k; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        double s = 0;
        for (int64_t i = 0; i < nin; i++) s += in[i] * x[i];
        s *= alpha;
        if (beta == 0.0)
            for (int64_t i = 0; i < nout; i++) y[i] = s * out[i];
        else
            for (int64_t i = 0; i < nout; i++) y[i] = s * out[i] + beta * y[i];
    }
    return LJ_OK;
}

static cholmod_sparse *rank1_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_full(ctx, J, "rank one");
    if (!s) return NULL;
    double *x = s->x;
    for (int64_t j = 0; j < J->cols; j++)
        for (int64_t i = 0; i < J->rows; i++) x[i + j * J->rows] = J->data[i] * J->data2[j];
    return s;
}

static int64_t rank1_nnz(const lj_op *J, bool *exact)
{
    int64_t n;
    *exact = lji_mul_ok(J->rows, J->cols, &n);
    return *exact ? n : INT64_MAX;
}

static void rank1_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = 2.0 * (double)(J->rows + J->cols);
    *bytes = 16.0 * (double)(J->rows + J->cols);
}

static void rank1_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    bool paren = where == LJI_AT_KRON || where == LJI_AT_TIGHT;
    lji_put_open(b, paren);
    lji_put_label(b, J->label ? J->label : "u", fmt);
    lji_buf_puts(b, " ");
    lji_put_label(b, J->label2 ? J->label2 : "v", fmt);
    lji_buf_puts(b, lji_sym_transpose(fmt));
    lji_put_close(b, paren);
}

static bool rank1_equal(const lj_op *a, const lj_op *b)
{
    return memcmp(a->data, b->data, (size_t)a->rows * sizeof(double)) == 0 &&
           memcmp(a->data2, b->data2, (size_t)a->cols * sizeof(double)) == 0;
}

static lj_status rank1_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    for (int64_t j = 0; j < J->cols; j++)
        for (int64_t i = 0; i < J->rows; i++) a[i + j * ld] = J->data[i] * J->data2[j];
    return LJ_OK;
}

static lj_op *rank1_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    char *l = lji_rows_label(ctx, J->label, r0, r1, false);
    if (J->label && !l) return NULL;
    lj_op *r = lj_op_rank1(ctx, r1 - r0, J->data + r0, l, J->cols, J->data2, J->label2);
    free(l);
    return r;
}

const lji_kind lji_kind_rank1 = {
    .id = LJ_OP_RANK1,
    .name = "rank1",
    .apply = rank1_apply,
    .to_sparse = rank1_to_sparse,
    .rows = rank1_rows,
    .to_dense = rank1_to_dense,
    .nnz = rank1_nnz,
    .cost = rank1_cost,
    .print = rank1_print,
    .equal = rank1_equal,
};

lj_op *lj_op_rank1(lj_context *ctx, int64_t m, const double *u, const char *ulabel, int64_t n,
                   const double *v, const char *vlabel)
{
    const char *op = "rank1";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (m < 0 || n < 0 || !lji_size_ok(m + 1, 1, NULL) || !lji_size_ok(n + 1, 1, NULL)) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: bad shape " LJI_SHP, op, m, n);
        return NULL;
    }
    if ((m > 0 && !u) || (n > 0 && !v)) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL vector for u v^T of " LJI_SHP, op, m, n);
        return NULL;
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_rank1, m, n, 0, op);
    if (!J) return NULL;
    J->data = lji_malloc(ctx, (size_t)(m ? m : 1) * sizeof(double));
    J->data2 = lji_malloc(ctx, (size_t)(n ? n : 1) * sizeof(double));
    J->label = ulabel ? lji_strdup(ctx, ulabel) : NULL;
    J->label2 = vlabel ? lji_strdup(ctx, vlabel) : NULL;
    if (!J->data || !J->data2 || (ulabel && !J->label) || (vlabel && !J->label2)) {
        lj_op_free(&J);
        lji_nomem(ctx, op);
        return NULL;
    }
    if (m) memcpy(J->data, u, (size_t)m * sizeof(double));
    if (n) memcpy(J->data2, v, (size_t)n * sizeof(double));
    lji_op_seal(J);
    return J;
}
