/* Zero 0_{m×n}. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

/* ---- zero ----------------------------------------------------------------- */

static lj_status zero_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    lji_scale_block(trans ? J->cols : J->rows, k, beta, Y, ldy);
    return LJ_OK;
}

static cholmod_sparse *zero_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, 0, "to_sparse");
    if (s) memset(s->p, 0, (size_t)(J->cols + 1) * sizeof(int64_t));
    return s;
}

static int64_t zero_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return 0;
}

static void zero_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = 0;
    *bytes = 8.0 * (double)J->rows;
}

static void zero_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (fmt == LJ_PRINT_LATEX)
        lji_buf_printf(b, "0_{%" PRId64 "\\times %" PRId64 "}", J->rows, J->cols);
    else if (fmt == LJ_PRINT_UNICODE)
        lji_buf_printf(b, "0_{%" PRId64 "×%" PRId64 "}", J->rows, J->cols);
    else
        lji_buf_printf(b, "0_{%" PRId64 "x%" PRId64 "}", J->rows, J->cols);
}

static lj_status zero_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lji_zero_block(J->rows, J->cols, a, ld);
    return LJ_OK;
}

static lj_op *zero_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    return lj_op_zero(ctx, r1 - r0, J->cols);
}

const lji_kind lji_kind_zero = {
    .id = LJ_OP_ZERO,
    .name = "zero",
    .apply = zero_apply,
    .to_sparse = zero_to_sparse,
    .rows = zero_rows,
    .to_dense = zero_to_dense,
    .nnz = zero_nnz,
    .cost = zero_cost,
    .print = zero_print,
    .equal = NULL,
};

lj_op *lj_op_zero(lj_context *ctx, int64_t rows, int64_t cols)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (rows < 0 || cols < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "zero: negative shape " LJI_SHP, rows, cols);
        return NULL;
    }
    lj_op *a = lji_op_new(ctx, &lji_kind_zero, rows, cols, 0, "zero");
    if (a) lji_op_seal(a);
    return a;
}
