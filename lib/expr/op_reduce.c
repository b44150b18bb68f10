/* Leaves (variables, constants, the identity eye(n)) and the reductions
 * and selections: tr, sum, norm1, norm2, vec, diag. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

/* ---- leaves ------------------------------------------------------------------------ */

static void leaf_write(lji_buf *b, const lj_expr *e)
{
    if (e->name) lji_buf_puts(b, e->name);
    else lji_buf_printf(b, b->math ? "%.6g" : "%.17g", e->value[0]);
}

static lj_status eye_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(A);
    LJI_UNUSED(B);
    int64_t n = e->rows;
    memset(out, 0, (size_t)(n * n) * sizeof *out);
    for (int64_t i = 0; i < n; i++) out[i + i * n] = 1.0;
    return LJ_OK;
}

static void eye_write(lji_buf *b, const lj_expr *e)
{
    lji_buf_printf(b, b->math ? "I_%" PRId64 : "eye(%" PRId64 ")", e->rows);
}

const lji_opdef lji_op_var = { .name = "var", .level = 6, .write = leaf_write };
const lji_opdef lji_op_const = { .name = "const", .level = 6, .write = leaf_write };
const lji_opdef lji_op_eye = { .name = "eye", .function = true, .level = 6, .eval = eye_eval,
                               .write = eye_write };

/* ---- shapes ------------------------------------------------------------------------ */

lj_status lji_shape_square(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c)
{
    LJI_UNUSED(b);
    if (a->rows != a->cols)
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: matrix must be square, not " LJI_SHP, d->name, a->rows,
                         a->cols);
    bool scalar_out = d != &lji_op_inv;
    *r = scalar_out ? 1 : a->rows;
    *c = scalar_out ? 1 : a->cols;
    return LJ_OK;
}

static lj_status vec_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(d);
    LJI_UNUSED(b);
    *r = a->rows * a->cols;
    *c = 1;
    return LJ_OK;
}

/* a vector gives the diagonal matrix, a square matrix its diagonal */
static lj_status diag_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                            int64_t *r, int64_t *c)
{
    LJI_UNUSED(d);
    LJI_UNUSED(b);
    if (a->rows == 1 || a->cols == 1) {
        int64_t n = a->rows * a->cols;
        if (!lji_size_ok(n, n, NULL))
            return lji_error(ctx, LJ_ERR_OVERFLOW, "diag: (%" PRId64 "×%" PRId64 ") overflows", n, n);
        *r = *c = n;
        return LJ_OK;
    }
    if (a->rows != a->cols)
        return lji_error(ctx, LJ_ERR_SHAPE, "diag: needs a vector or a square matrix, not " LJI_SHP,
                         a->rows, a->cols);
    *r = a->rows;
    *c = 1;
    return LJ_OK;
}

/* ---- values ------------------------------------------------------------------------ */

static lj_status reduce_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B,
                             double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    const lj_expr *a = e->a;
    int64_t an = lji_vlen(a); /* a sparse operand: its stored entries */
    double s = 0;
    if (e->def == &lji_op_trace && a->pat)
        for (int64_t j = 0; j < a->cols; j++) {
            int64_t q = lji_pat_find(a->pat, j, j);
            if (q >= 0) s += A[q];
        }
    else if (e->def == &lji_op_trace)
        for (int64_t i = 0; i < a->rows; i++) s += A[i + i * a->rows];
    else if (e->def == &lji_op_sum)
        for (int64_t i = 0; i < an; i++) s += A[i];
    else if (e->def == &lji_op_norm1)
        for (int64_t i = 0; i < an; i++) s += fabs(A[i]);
    else {
        for (int64_t i = 0; i < an; i++) s += A[i] * A[i];
        s = sqrt(s);
    }
    out[0] = s;
    return LJ_OK;
}

static lj_status vec_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    memcpy(out, A, (size_t)lji_vlen(e) * sizeof *out);
    return LJ_OK;
}

static lj_status diag_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    const lj_expr *a = e->a;
    int64_t m = e->rows, an = a->rows * a->cols;
    if (a->pat) { /* a sparse operand's entries placed (out is dense) */
        const lji_pat *p = a->pat;
        bool to_matrix = !(e->cols == 1 && (!(a->rows == 1 || a->cols == 1) || an == 1));
        memset(out, 0, (size_t)(m * e->cols) * sizeof *out);
        for (int64_t j = 0; j < p->ncol; j++)
            for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
                int64_t i = p->i[q], k = i + j * a->rows; /* position in vec a */
                if (to_matrix) out[k + k * m] = A[q];
                else if (i == j) out[i] = A[q];
            }
        return LJ_OK;
    }
    if (e->cols == 1 && !(a->rows == 1 || a->cols == 1)) {
        for (int64_t i = 0; i < m; i++) out[i] = A[i + i * a->rows];
    } else if (e->cols == 1 && an == 1) { /* diag of a 1×1 is itself */
        out[0] = A[0];
    } else {
        memset(out, 0, (size_t)(m * e->cols) * sizeof *out);
        for (int64_t i = 0; i < m; i++) out[i + i * m] = A[i];
    }
    return LJ_OK;
}

/* ---- local Jacobians ----------------------------------------------------------------- */

/* (vec I_n)^T: a selection of the n diagonal entries */
static lj_op *trace_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    int64_t n = e->a->rows;
    if (d->raw) return lji_d_diag_selection(d, e->a, true); /* a sparse operand */
    char tmp[48];
    snprintf(tmp, sizeof tmp, "vec I_%" PRId64, n);
    return lji_d_transposed(d->ctx, lji_d_selection(d->ctx, n * n, n, 1, tmp));
}

static lj_op *sum_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    return lji_d_transposed(d->ctx, lji_d_ones(d->ctx, lji_d_len(d, e->a)));
}

/* vec(A)^T / ‖A‖ */
static lj_op *norm2_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    double nv = lji_d_val(d, e)[0];
    if (nv == 0.0) {
        lji_error(d->ctx, LJ_ERR_DOMAIN, "norm2: not differentiable at the zero matrix");
        return NULL;
    }
    return lji_d_scaled(d->ctx, 1.0 / nv, lji_d_transposed(d->ctx, lji_d_vec(d, e->a)));
}

static double f_sign(double x, double y, double p)
{
    LJI_UNUSED(y);
    LJI_UNUSED(p);
    return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0;
}

/* sign(vec A)^T, with sign(0) = 0 (the subgradient PyTorch takes) */
static lj_op *norm1_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    int64_t an = lji_d_len(d, e->a);
    char *l = lji_d_vec_label(d, e->a, "sign(", ")");
    lj_op *r = l ? lji_d_elem(d, an, lji_d_val(d, e->a), an, NULL, 0, 0, f_sign, l, true) : NULL;
    free(l);
    return lji_d_transposed(d->ctx, r);
}

static lj_op *vec_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    return lji_d_identity(d->ctx, lji_d_len(d, e));
}

/* the selection E with E v = vec(diag(v)): entry (i + i·n, i) */
static lj_op *diag_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    int64_t cn = e->a->rows * e->a->cols;
    bool to_matrix = e->cols != 1 || cn == 1;
    if (d->raw) /* a sparse operand */
        return to_matrix ? NULL : lji_d_diag_selection(d, e->a, false);
    int64_t n = to_matrix ? e->rows : e->a->rows;
    char tmp[48];
    snprintf(tmp, sizeof tmp, "E_%" PRId64, n);
    lj_op *r = lji_d_selection(d->ctx, n * n, n, n, tmp);
    return to_matrix ? r : lji_d_transposed(d->ctx, r);
}

/* ---- the entries --------------------------------------------------------------------- */

/* the reductions and diag read a sparse operand's entries themselves */
#define FUNCTION1(nm, shp, ev, loc, rd)                                                          \
    { .name = nm, .arity = 1, .function = true, .level = 6, .shape = shp, .eval = ev,            \
      .local = loc, .reads = { rd, 0 }, .sparse_eval = true, .sparse_local = true }

const lji_opdef lji_op_trace = FUNCTION1("tr", lji_shape_square, reduce_eval, trace_local, 0);
const lji_opdef lji_op_sum = FUNCTION1("sum", lji_shape_scalar, reduce_eval, sum_local, 0);
const lji_opdef lji_op_norm1 = FUNCTION1("norm1", lji_shape_scalar, reduce_eval, norm1_local, LJI_READ_OPERAND);
const lji_opdef lji_op_norm2 = { .name = "norm2", .arity = 1, .function = true, .level = 6,
                                 .shape = lji_shape_scalar, .eval = reduce_eval, .local = norm2_local,
                                 .reads = { LJI_READ_OPERAND | LJI_READ_NODE, 0 }, .sparse_eval = true,
                                 .sparse_local = true };
const lji_opdef lji_op_vec = { .name = "vec", .arity = 1, .function = true, .level = 6, .shape = vec_shape,
                               .eval = vec_eval, .local = vec_local, .sparse = LJI_SP_VEC };
const lji_opdef lji_op_diag = FUNCTION1("diag", diag_shape, diag_eval, diag_local, 0);
