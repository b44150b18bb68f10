/* Dense blocks, applied with BLAS (GEMV for one vector, GEMM for several). */
#include "config.h"
#include "op.h"
#include "../core/lji_blas.h"
#include <inttypes.h>

static lj_status dense_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                             const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    if (k == 1)
        return lji_gemv(ctx, "apply", trans, J->rows, J->cols, alpha, J->data, J->ld, X, beta, Y);
    int64_t m = trans ? J->cols : J->rows, inner = trans ? J->rows : J->cols;
    return lji_gemm(ctx, "apply", trans, false, m, k, inner, alpha, J->data, J->ld, X, ldx, beta,
                    Y, ldy);
}

static cholmod_sparse *dense_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_full(ctx, J, "dense");
    if (!s) return NULL;
    double *x = s->x;
    for (int64_t j = 0; j < J->cols; j++)
        memcpy(x + j * J->rows, J->data + j * J->ld, (size_t)J->rows * sizeof(double));
    return s;
}

static int64_t dense_nnz(const lj_op *J, bool *exact)
{
    int64_t n;
    *exact = lji_mul_ok(J->rows, J->cols, &n);
    return *exact ? n : INT64_MAX;
}

static void dense_cost(const lj_op *J, double *flops, double *bytes)
{
    double mn = (double)J->rows * (double)J->cols;
    *flops = 2.0 * mn;
    *bytes = 8.0 * (mn + (double)J->rows + (double)J->cols);
}

static void dense_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    /* a value's label "(x^T·A)" needs no brackets of its own where the
     * whole or a term of a sum is printed: J = x^T·A^T + x^T·A, J =
     * −2·A·A (a term after a minus sign is printed as a factor, and keeps
     * them; a sum gives a term's own minus sign to the term) */
    const char *l = J->label;
    if (l)
        lji_put_value_label(b, l, fmt, where);
    else if (fmt == LJ_PRINT_UNICODE)
        lji_buf_printf(b, "M_{%" PRId64 "×%" PRId64 "}", J->rows, J->cols);
    else if (fmt == LJ_PRINT_LATEX)
        lji_buf_printf(b, "M_{%" PRId64 "\\times %" PRId64 "}", J->rows, J->cols);
    else
        lji_buf_printf(b, "M_{%" PRId64 "x%" PRId64 "}", J->rows, J->cols);
}

static bool dense_equal(const lj_op *a, const lj_op *b)
{
    for (int64_t j = 0; j < a->cols; j++)
        if (memcmp(a->data + j * a->ld, b->data + j * b->ld, (size_t)a->rows * sizeof(double)))
            return false;
    return true;
}

static lj_status dense_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    for (int64_t j = 0; j < J->cols; j++)
        memcpy(a + j * ld, J->data + j * J->ld, (size_t)J->rows * sizeof(double));
    return LJ_OK;
}

static lj_op *dense_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    char *l = lji_rows_label(ctx, J->label, r0, r1, false);
    if (J->label && !l) return NULL;
    lj_op *r = lj_op_dense(ctx, r1 - r0, J->cols, J->data + r0, J->ld, l);
    free(l);
    return r;
}

const lji_kind lji_kind_dense = {
    .id = LJ_OP_DENSE,
    .name = "dense",
    .apply = dense_apply,
    .to_sparse = dense_to_sparse,
    .rows = dense_rows,
    .to_dense = dense_to_dense,
    .nnz = dense_nnz,
    .cost = dense_cost,
    .print = dense_print,
    .equal = dense_equal,
};

static lj_op *dense_make(lj_context *ctx, int64_t rows, int64_t cols, const double *a, int64_t lda,
                         const char *label, bool borrow)
{
    const char *op = borrow ? "dense_borrow" : "dense";
    if (!lji_ctx_ok(ctx)) return NULL;
    int64_t n;
    if (rows < 0 || cols < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: negative shape " LJI_SHP, op, rows, cols);
        return NULL;
    }
    if (!lji_size_ok(rows, cols, &n)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "%s: " LJI_SHP " overflows", op, rows, cols);
        return NULL;
    }
    if (n > 0 && !a) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL values for " LJI_SHP, op, rows, cols);
        return NULL;
    }
    if (lda < (rows > 1 ? rows : 1)) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: leading dimension %" PRId64 " < rows of " LJI_SHP, op,
                  lda, rows, cols);
        return NULL;
    }
    /* one allocation: the node, its data (unless borrowed) and its label */
    size_t db = borrow ? 0 : (size_t)n * sizeof(double), lb = label ? strlen(label) + 1 : 0;
    lj_op *J = lji_op_new_ext(ctx, &lji_kind_dense, rows, cols, 0, db + lb + 8, op);
    if (!J) return NULL;
    char *at = J->extra;
    if (borrow) {
        J->data = (double *)a;
        J->ld = lda;
        J->borrowed = true;
    } else {
        J->ld = rows > 1 ? rows : 1;
        J->data = (double *)(void *)at; /* never NULL, even when empty */
        at += db;
        if (lda == J->ld) /* contiguous: one copy, not one per column */
            memcpy(J->data, a, db);
        else if (rows == 1)
            for (int64_t j = 0; j < cols; j++) J->data[j] = a[j * lda];
        else
            for (int64_t j = 0; j < cols; j++)
                memcpy(J->data + j * J->ld, a + j * lda, (size_t)rows * sizeof(double));
    }
    J->label = lji_op_put_label(J, &at, label);
    lji_op_seal(J);
    return J;
}

lj_op *lj_op_dense(lj_context *ctx, int64_t rows, int64_t cols, const double *a, int64_t lda,
                   const char *label)
{
    return dense_make(ctx, rows, cols, a, lda, label, false);
}

lj_op *lj_op_dense_borrow(lj_context *ctx, int64_t rows, int64_t cols, const double *a,
                          int64_t lda, const char *label)
{
    return dense_make(ctx, rows, cols, a, lda, label, true);
}

lj_op *lji_op_dense_shared(lj_context *ctx, int64_t rows, int64_t cols, const double *a, int64_t lda,
                           const char *label, lji_vblock *keep)
{
    lj_op *J = dense_make(ctx, rows, cols, a, lda, label, true);
    if (J) J->keep = lji_vblock_retain(keep);
    return J;
}
