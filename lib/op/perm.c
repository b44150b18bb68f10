/* Permutations (P x)[i] = x[perm[i]]. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

static lj_status perm_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    const int64_t *p = J->idx;
    for (int64_t j = 0; j < k; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        if (!trans) {
            if (beta == 0.0)
                for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * x[p[i]];
            else
                for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * x[p[i]] + beta * y[i];
        } else {
            if (beta == 0.0)
                for (int64_t i = 0; i < J->rows; i++) y[p[i]] = alpha * x[i];
            else
                for (int64_t i = 0; i < J->rows; i++) y[p[i]] = alpha * x[i] + beta * y[p[i]];
        }
    }
    return LJ_OK;
}

static cholmod_sparse *perm_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, J->rows, "to_sparse");
    if (!s) return NULL;
    int64_t *p = s->p, *ii = s->i;
    double *x = s->x;
    /* row i has its one at column perm[i] */
    for (int64_t i = 0; i < J->rows; i++) {
        ii[J->idx[i]] = i;
        x[i] = 1.0;
    }
    for (int64_t j = 0; j <= J->cols; j++) p[j] = j;
    return s;
}

static int64_t perm_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return J->rows;
}

static void perm_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = 0;
    *bytes = 24.0 * (double)J->rows;
}

static void perm_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (J->label)
        lji_put_label(b, J->label, fmt);
    else if (fmt == LJ_PRINT_LATEX)
        lji_buf_printf(b, "P_{%" PRId64 "}", J->rows);
    else
        lji_buf_printf(b, "P_%" PRId64, J->rows);
}

static bool perm_equal(const lj_op *a, const lj_op *b)
{
    return memcmp(a->idx, b->idx, (size_t)a->rows * sizeof(int64_t)) == 0;
}

static lj_status perm_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lji_zero_block(J->rows, J->cols, a, ld);
    for (int64_t i = 0; i < J->rows; i++) a[i + J->idx[i] * ld] = 1.0; /* (P x)[i] = x[perm[i]] */
    return LJ_OK;
}

static lj_op *perm_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    /* (P x)[i] = x[perm[i]]: row i has its one at column perm[i] */
    char *l = lji_rows_label(ctx, J->label, r0, r1, false);
    if (J->label && !l) return NULL;
    lj_op *r = lji_rows_one_per_row(ctx, r1 - r0, J->cols, J->idx + r0, NULL, l);
    free(l);
    return r;
}

const lji_kind lji_kind_perm = {
    .id = LJ_OP_PERM,
    .name = "perm",
    .apply = perm_apply,
    .to_sparse = perm_to_sparse,
    .rows = perm_rows,
    .to_dense = perm_to_dense,
    .nnz = perm_nnz,
    .cost = perm_cost,
    .print = perm_print,
    .equal = perm_equal,
};

lj_op *lj_op_perm(lj_context *ctx, int64_t n, const int64_t *perm, const char *label)
{
    const char *op = "perm";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (n < 0 || !lji_size_ok(n, 1, NULL)) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: bad size %" PRId64, op, n);
        return NULL;
    }
    if (n > 0 && !perm) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL index array of length %" PRId64, op, n);
        return NULL;
    }
    unsigned char *seen = lji_calloc(ctx, (size_t)(n ? n : 1), 1);
    if (!seen) {
        lji_nomem(ctx, op);
        return NULL;
    }
    bool ident = true;
    for (int64_t i = 0; i < n; i++) {
        int64_t v = perm[i];
        if (v < 0 || v >= n || seen[v]) {
            free(seen);
            lji_error(ctx, LJ_ERR_INVALID,
                      "%s: entry %" PRId64 " = %" PRId64 " is out of range or repeated (n = %" PRId64
                      ")", op, i, v, n);
            return NULL;
        }
        seen[v] = 1;
        ident = ident && v == i;
    }
    free(seen);
    if (ident) return lj_op_identity(ctx, n);
    lj_op *J = lji_op_new(ctx, &lji_kind_perm, n, n, 0, op);
    if (!J) return NULL;
    J->idx = lji_malloc(ctx, (size_t)n * sizeof(int64_t));
    J->label = label ? lji_strdup(ctx, label) : NULL;
    if (!J->idx || (label && !J->label)) {
        lj_op_free(&J);
        lji_nomem(ctx, op);
        return NULL;
    }
    memcpy(J->idx, perm, (size_t)n * sizeof(int64_t));
    lji_op_seal(J);
    return J;
}
