/* Sparse blocks: a CSC matrix this node owns, applied with cholmod_l_sdmult. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

static lj_status sparse_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k,
                              double alpha, const double *X, int64_t ldx, double beta, double *Y,
                              int64_t ldy)
{
    int64_t in = trans ? J->rows : J->cols, out = trans ? J->cols : J->rows;
    cholmod_dense dx = { .nrow = (size_t)in, .ncol = (size_t)k, .nzmax = (size_t)(ldx * k),
                         .d = (size_t)ldx, .x = (double *)X, .xtype = CHOLMOD_REAL,
                         .dtype = CHOLMOD_DOUBLE };
    cholmod_dense dy = { .nrow = (size_t)out, .ncol = (size_t)k, .nzmax = (size_t)(ldy * k),
                         .d = (size_t)ldy, .x = Y, .xtype = CHOLMOD_REAL,
                         .dtype = CHOLMOD_DOUBLE };
    if (beta == 0.0) lji_scale_block(out, k, 0.0, Y, ldy); /* NaN in Y must not leak */
    double al[2] = { alpha, 0 }, be[2] = { beta, 0 };
    cholmod_sparse A = J->sp;
    /* sdmult's workspace lives in the context's cholmod_common and is kept
     * between calls, so repeated applies do not allocate */
    cholmod_l_sdmult(&A, trans ? 1 : 0, al, be, &dx, &dy, &ctx->cc);
    return lji_cholmod_check(ctx, "apply");
}

static cholmod_sparse *sparse_to_sparse(lj_context *ctx, const lj_op *J)
{
    int64_t nz = ((int64_t *)J->sp.p)[J->cols];
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, nz, "to_sparse");
    if (!s) return NULL;
    memcpy(s->p, J->sp.p, (size_t)(J->cols + 1) * sizeof(int64_t));
    memcpy(s->i, J->sp.i, (size_t)nz * sizeof(int64_t));
    memcpy(s->x, J->sp.x, (size_t)nz * sizeof(double));
    return s;
}

static int64_t sparse_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return ((int64_t *)J->sp.p)[J->cols];
}

static void sparse_cost(const lj_op *J, double *flops, double *bytes)
{
    double nz = (double)((int64_t *)J->sp.p)[J->cols];
    *flops = 2.0 * nz;
    *bytes = 16.0 * nz + 8.0 * (double)(J->rows + 2 * J->cols);
}

static void sparse_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (J->label)
        lji_put_label(b, J->label, fmt);
    else if (fmt == LJ_PRINT_UNICODE)
        lji_buf_printf(b, "S_{%" PRId64 "×%" PRId64 "}", J->rows, J->cols);
    else
        lji_buf_printf(b, "S_{%" PRId64 "%s%" PRId64 "}", J->rows,
                       fmt == LJ_PRINT_LATEX ? "\\times " : "x", J->cols);
}

static bool sparse_equal(const lj_op *a, const lj_op *b)
{
    int64_t nz = ((int64_t *)a->sp.p)[a->cols];
    return memcmp(a->sp.p, b->sp.p, (size_t)(a->cols + 1) * sizeof(int64_t)) == 0 &&
           memcmp(a->sp.i, b->sp.i, (size_t)nz * sizeof(int64_t)) == 0 &&
           memcmp(a->sp.x, b->sp.x, (size_t)nz * sizeof(double)) == 0;
}

static lj_status sparse_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    const int64_t *p = J->sp.p, *ii = J->sp.i;
    const double *x = J->sp.x;
    lji_zero_block(J->rows, J->cols, a, ld);
    for (int64_t j = 0; j < J->cols; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++) a[ii[q] + j * ld] = x[q];
    return LJ_OK;
}

static lj_op *sparse_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    cholmod_sparse *s = lji_csc_rows(ctx, &J->sp, r0, r1);
    char *l = s ? lji_rows_label(ctx, J->label, r0, r1, false) : NULL;
    lj_op *r = s && (l || !J->label) ? lj_op_sparse(ctx, s, l) : NULL;
    if (s && J->label && !l) lji_nomem(ctx, "rows");
    free(l);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return r;
}

const lji_kind lji_kind_sparse = {
    .id = LJ_OP_SPARSE,
    .name = "sparse",
    .apply = sparse_apply,
    .to_sparse = sparse_to_sparse,
    .rows = sparse_rows,
    .to_dense = sparse_to_dense,
    .nnz = sparse_nnz,
    .cost = sparse_cost,
    .print = sparse_print,
    .equal = sparse_equal,
};

/* Sort each column's entries by row (insertion sort: columns are short) and
 * sum duplicates. */
static void sparse_sort_columns(int64_t ncol, int64_t *p, int64_t *ii, double *x)
{
    int64_t q = 0;
    for (int64_t j = 0; j < ncol; j++) {
        int64_t s = p[j], e = p[j + 1];
        for (int64_t a = s + 1; a < e; a++) {
            int64_t r = ii[a];
            double v = x[a];
            int64_t b = a - 1;
            while (b >= s && ii[b] > r) {
                ii[b + 1] = ii[b];
                x[b + 1] = x[b];
                b--;
            }
            ii[b + 1] = r;
            x[b + 1] = v;
        }
        p[j] = q;
        for (int64_t a = s; a < e; a++) {
            if (q > p[j] && ii[q - 1] == ii[a])
                x[q - 1] += x[a];
            else {
                ii[q] = ii[a];
                x[q] = x[a];
                q++;
            }
        }
    }
    p[ncol] = q;
}

lj_op *lj_op_sparse(lj_context *ctx, const cholmod_sparse *s, const char *label)
{
    const char *op = "sparse";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!s) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL matrix", op);
        return NULL;
    }
    if (s->itype != CHOLMOD_LONG || s->xtype != CHOLMOD_REAL || s->dtype != CHOLMOD_DOUBLE ||
        !s->p || !s->i || !s->x || (!s->packed && !s->nz)) {
        lji_error(ctx, LJ_ERR_INVALID,
                  "%s: matrix must be real double with long indices (itype %d, xtype %d)", op,
                  s->itype, s->xtype);
        return NULL;
    }
    int64_t rows = (int64_t)s->nrow, cols = (int64_t)s->ncol;
    if (rows < 0 || cols < 0 || !lji_size_ok(cols + 1, 1, NULL)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "%s: shape overflows", op);
        return NULL;
    }
    const int64_t *P = s->p, *I = s->i, *NZ = s->nz;
    const double *X = s->x;
    /* count entries (both triangles of a symmetric matrix) and validate */
    int64_t total = 0;
    for (int64_t j = 0; j < cols; j++) {
        int64_t a = P[j], e = s->packed ? P[j + 1] : P[j] + NZ[j];
        if (e < a) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: column %" PRId64 " has a negative count", op, j);
            return NULL;
        }
        for (int64_t q = a; q < e; q++) {
            int64_t i = I[q];
            if (i < 0 || i >= rows) {
                lji_error(ctx, LJ_ERR_INVALID,
                          "%s: row index %" PRId64 " out of range in column %" PRId64
                          " of " LJI_SHP, op, i, j, rows, cols);
                return NULL;
            }
            if ((s->stype > 0 && i > j) || (s->stype < 0 && i < j)) continue;
            total += (s->stype != 0 && i != j) ? 2 : 1;
        }
    }
    if (s->stype != 0 && rows != cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: symmetric matrix must be square, not " LJI_SHP, op, rows,
                  cols);
        return NULL;
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_sparse, rows, cols, 0, op);
    if (!J) return NULL;
    int64_t *np = lji_calloc(ctx, (size_t)cols + 2, sizeof(int64_t));
    int64_t *ni = lji_malloc(ctx, (size_t)(total ? total : 1) * sizeof(int64_t));
    double *nx = lji_malloc(ctx, (size_t)(total ? total : 1) * sizeof(double));
    J->label = label ? lji_strdup(ctx, label) : NULL;
    J->sp.p = np;
    J->sp.i = ni;
    J->sp.x = nx;
    if (!np || !ni || !nx || (label && !J->label)) {
        lj_op_free(&J);
        lji_nomem(ctx, op);
        return NULL;
    }
    /* counting pass then scatter */
    for (int64_t j = 0; j < cols; j++) {
        int64_t a = P[j], e = s->packed ? P[j + 1] : P[j] + NZ[j];
        for (int64_t q = a; q < e; q++) {
            int64_t i = I[q];
            if ((s->stype > 0 && i > j) || (s->stype < 0 && i < j)) continue;
            np[j + 1]++;
            if (s->stype != 0 && i != j) np[i + 1]++;
        }
    }
    for (int64_t j = 0; j < cols; j++) np[j + 1] += np[j];
    int64_t *fill = lji_malloc(ctx, (size_t)(cols ? cols : 1) * sizeof(int64_t));
    if (!fill) {
        lj_op_free(&J);
        lji_nomem(ctx, op);
        return NULL;
    }
    memcpy(fill, np, (size_t)cols * sizeof(int64_t));
    for (int64_t j = 0; j < cols; j++) {
        int64_t a = P[j], e = s->packed ? P[j + 1] : P[j] + NZ[j];
        for (int64_t q = a; q < e; q++) {
            int64_t i = I[q];
            if ((s->stype > 0 && i > j) || (s->stype < 0 && i < j)) continue;
            ni[fill[j]] = i;
            nx[fill[j]++] = X[q];
            if (s->stype != 0 && i != j) {
                ni[fill[i]] = j;
                nx[fill[i]++] = X[q];
            }
        }
    }
    free(fill);
    sparse_sort_columns(cols, np, ni, nx);
    J->sp.nrow = (size_t)rows;
    J->sp.ncol = (size_t)cols;
    J->sp.nzmax = (size_t)(total ? total : 1);
    J->sp.stype = 0;
    J->sp.itype = CHOLMOD_LONG;
    J->sp.xtype = CHOLMOD_REAL;
    J->sp.dtype = CHOLMOD_DOUBLE;
    J->sp.sorted = 1;
    J->sp.packed = 1;
    lji_op_seal(J);
    return J;
}
