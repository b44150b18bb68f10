/* Scaled αA. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

static lj_status scaled_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                              const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[0], trans, k, alpha * J->alpha, X, ldx, beta, Y, ldy);
}

static cholmod_sparse *scaled_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_to_sparse(ctx, J->child[0]);
    if (!s) return NULL;
    int64_t nz = ((int64_t *)s->p)[s->ncol];
    double *x = s->x;
    for (int64_t q = 0; q < nz; q++) x[q] *= J->alpha;
    return s;
}

static int64_t child_nnz(const lj_op *J, bool *exact)
{
    return lji_nnz(J->child[0], exact);
}

static void scaled_cost(const lj_op *J, double *flops, double *bytes)
{
    lji_cost(J->child[0], flops, bytes);
}

static void scaled_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    bool paren = where == LJI_AT_KRON || where == LJI_AT_TIGHT;
    lji_put_open(b, paren);
    if (J->alpha == -1.0)
        lji_buf_puts(b, lji_sym_minus(fmt));
    else {
        lji_put_number(b, J->alpha, fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
    }
    lji_print(b, J->child[0], fmt, LJI_AT_COMPOSE);
    lji_put_close(b, paren);
}

static bool scaled_equal(const lj_op *a, const lj_op *b)
{
    return a->alpha == b->alpha;
}

static lj_status scaled_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lj_status st = lji_to_dense(ctx, J->child[0], a, ld);
    for (int64_t j = 0; st == LJ_OK && j < J->cols; j++)
        for (int64_t i = 0; i < J->rows; i++) a[i + j * ld] *= J->alpha;
    return st;
}

static lj_op *scaled_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    lj_op *c = lji_rows(ctx, J->child[0], r0, r1), *r = c ? lj_op_scale(ctx, J->alpha, c) : NULL;
    lj_op_free(&c);
    return r;
}

const lji_kind lji_kind_scaled = {
    .id = LJ_OP_SCALED,
    .name = "scaled",
    .apply = scaled_apply,
    .to_sparse = scaled_to_sparse,
    .rows = scaled_rows,
    .to_dense = scaled_to_dense,
    .nnz = child_nnz,
    .cost = scaled_cost,
    .print = scaled_print,
    .equal = scaled_equal,
};

lj_op *lj_op_scale(lj_context *ctx, double alpha, const lj_op *a)
{
    if (lji_check_args(ctx, "scale", 1, &a) != LJ_OK) return NULL;
    if (alpha == 1.0) return lji_take_ref(ctx, a);
    if (alpha == 0.0 || lji_is_zero(a)) return lj_op_zero(ctx, a->rows, a->cols);
    if (lji_is(a, &lji_kind_scaled)) return lj_op_scale(ctx, alpha * a->alpha, a->child[0]);
    lj_op *J = lji_op_new(ctx, &lji_kind_scaled, a->rows, a->cols, 1, "scale");
    if (!J) return NULL;
    J->alpha = alpha;
    J->child[0] = lji_take_ref(ctx, a);
    lji_op_seal(J);
    return J;
}
