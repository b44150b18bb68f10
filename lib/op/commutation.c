/* Commutation matrices K_{m,n}: no index array; applying one is a blocked
 * transpose. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

/* ---- commutation ------------------------------------------------------------ */

static lj_status comm_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    /* K_{m,n} vec(A) = vec(A^T), A m×n; K_{m,n}^T = K_{n,m} */
    int64_t m = trans ? J->n : J->m, n = trans ? J->m : J->n;
    int nt = lji_threads(ctx);
    for (int64_t j = 0; j < k; j++)
        lji_transpose_nt(nt, m, n, alpha, X + j * ldx, m, beta, Y + j * ldy, n);
    return LJ_OK;
}

static int64_t comm_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return J->rows;
}

static cholmod_sparse *comm_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, J->rows, "to_sparse");
    if (!s) return NULL;
    int64_t *p = s->p, *ii = s->i;
    double *x = s->x;
    int64_t m = J->m, n = J->n;
    /* column i + j·m holds one entry, at row j + i·n */
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < m; i++) {
            int64_t c = i + j * m;
            p[c] = c;
            ii[c] = j + i * n;
            x[c] = 1.0;
        }
    p[J->cols] = J->cols;
    return s;
}

static void comm_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = 0;
    *bytes = 16.0 * (double)J->rows;
}

static void comm_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    lji_buf_printf(b, "K_{%" PRId64 ",%" PRId64 "}", J->m, J->n);
}

static bool comm_equal(const lj_op *a, const lj_op *b)
{
    return a->m == b->m && a->n == b->n;
}

static lj_status comm_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lji_zero_block(J->rows, J->cols, a, ld);
    for (int64_t j = 0; j < J->n; j++) /* column i + j·m has its one at row j + i·n */
        for (int64_t i = 0; i < J->m; i++) a[(j + i * J->n) + (i + j * J->m) * ld] = 1.0;
    return LJ_OK;
}

static lj_op *comm_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    /* row j + i·n of K_{m,n} has its one at column i + j·m */
    int64_t r = r1 - r0, *col = lji_malloc(ctx, (size_t)r * sizeof *col);
    if (!col) {
        lji_nomem(ctx, "rows");
        return NULL;
    }
    for (int64_t t = 0; t < r; t++) {
        int64_t row = r0 + t, j = row % J->n, i = row / J->n;
        col[t] = i + j * J->m;
    }
    char label[96];
    snprintf(label, sizeof label, "K_{%" PRId64 ",%" PRId64 "}(%" PRId64 ":%" PRId64 ",:)", J->m, J->n, r0 + 1, r1);
    lj_op *o = lji_rows_one_per_row(ctx, r, J->cols, col, NULL, label);
    free(col);
    return o;
}

const lji_kind lji_kind_commutation = {
    .id = LJ_OP_COMMUTATION,
    .name = "commutation",
    .apply = comm_apply,
    .to_sparse = comm_to_sparse,
    .rows = comm_rows,
    .to_dense = comm_to_dense,
    .nnz = comm_nnz,
    .cost = comm_cost,
    .print = comm_print,
    .equal = comm_equal,
};

lj_op *lj_op_commutation(lj_context *ctx, int64_t m, int64_t n)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    int64_t mn;
    if (m < 0 || n < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "commutation: negative size K_{%" PRId64 ",%" PRId64 "}", m, n);
        return NULL;
    }
    if (!lji_size_ok(m, n, &mn)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "commutation: K_{%" PRId64 ",%" PRId64 "} overflows", m, n);
        return NULL;
    }
    if (m <= 1 || n <= 1) return lj_op_identity(ctx, mn); /* K_{m,1} = K_{1,n} = I */
    lj_op *J = lji_op_new(ctx, &lji_kind_commutation, mn, mn, 0, "commutation");
    if (!J) return NULL;
    J->m = m;
    J->n = n;
    lji_op_seal(J);
    return J;
}
