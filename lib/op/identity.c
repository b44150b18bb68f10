/* Identity I_n. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

static lj_status identity_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k,
                                double alpha, const double *X, int64_t ldx, double beta,
                                double *Y, int64_t ldy)
{
    for (int64_t j = 0; j < k; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        if (beta == 0.0)
            for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * x[i];
        else
            for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * x[i] + beta * y[i];
    }
    return LJ_OK;
}

static cholmod_sparse *identity_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, J->rows, "to_sparse");
    if (!s) return NULL;
    int64_t *p = s->p, *i = s->i;
    double *x = s->x;
    for (int64_t j = 0; j < J->cols; j++) {
        p[j] = j;
        i[j] = j;
        x[j] = 1.0;
    }
    p[J->cols] = J->cols;
    return s;
}

static int64_t identity_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return J->rows;
}

static void identity_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = (double)J->rows;
    *bytes = 16.0 * (double)J->rows;
}

static void identity_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (fmt == LJ_PRINT_LATEX)
        lji_buf_printf(b, "I_{%" PRId64 "}", J->rows);
    else
        lji_buf_printf(b, "I_%" PRId64, J->rows);
}

static lj_status identity_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lji_zero_block(J->rows, J->cols, a, ld);
    for (int64_t i = 0; i < J->rows; i++) a[i + i * ld] = 1.0;
    return LJ_OK;
}

static lj_op *identity_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    return lji_place_cols(ctx, lj_op_identity(ctx, r1 - r0), r0, r1, J->cols); /* [0 I 0] */
}

const lji_kind lji_kind_identity = {
    .id = LJ_OP_IDENTITY,
    .name = "identity",
    .apply = identity_apply,
    .to_sparse = identity_to_sparse,
    .rows = identity_rows,
    .to_dense = identity_to_dense,
    .nnz = identity_nnz,
    .cost = identity_cost,
    .print = identity_print,
    .equal = NULL,
};

static void release_identities(lj_context *ctx)
{
    for (int i = 0; i < 8; i++) lj_op_free(&ctx->ident[i]);
}

lj_op *lj_op_identity(lj_context *ctx, int64_t n)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (n < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "identity: negative size %" PRId64, n);
        return NULL;
    }
    for (int i = 0; i < 8; i++)
        if (ctx->ident[i] && ctx->ident[i]->rows == n) return lj_op_retain(ctx->ident[i]);
    lj_op *a = lji_op_new(ctx, &lji_kind_identity, n, n, 0, "identity");
    if (!a) return NULL;
    lji_op_seal(a);
    /* the context keeps the last eight sizes, the oldest making room */
    lj_op_free(&ctx->ident[7]);
    memmove(ctx->ident + 1, ctx->ident, 7 * sizeof *ctx->ident);
    ctx->ident[0] = lj_op_retain(a);
    ctx->cache_free = release_identities;
    return a;
}
