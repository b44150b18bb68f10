/* Leaves (variables, constants, the identity eye(n)) and the reductions
 * and selections: tr, sum, norm1, norm2, vec, diag. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

/* ---- leaves ------------------------------------------------------------------------ */

static void leaf_write(lji_buf *b, const lj_expr *e)
{
    double v = e->value[0];
    if (e->name) lji_buf_puts(b, e->name);
    else lji_put_number(b, v, b->math ? LJ_PRINT_UNICODE : LJ_PRINT_PLAIN); /* −2, the minus sign of the other labels */
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
    if (n == 1) return lj_op_identity(d->ctx, 1); /* the trace of a number: not (vec I_1)^T */
    char tmp[48];
    snprintf(tmp, sizeof tmp, "vec I_%" PRId64, n);
    return lji_d_transposed(d->ctx, lji_d_selection(d->ctx, n * n, n, 1, tmp));
}

static lj_op *sum_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    int64_t n = lji_d_len(d, e->a);
    /* the sum of one number is that number: I_1, not 1_1^T, which would
     * print as noise (J of sum(sum(X.*X)) is 2·(vec X)^T) */
    if (n == 1) return lj_op_identity(d->ctx, 1);
    return lji_d_transposed(d->ctx, lji_d_ones(d->ctx, n));
}

/* (1/‖A‖)·(vec A)^T, the factor the symbol it is, never the number 1/‖A‖,
 * and one that meets ‖A‖ from outside as 1: J of ‖A‖^2 is 2·(vec A)^T */
static lj_op *norm2_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    double nv = lji_d_val(d, e)[0];
    if (nv == 0.0) {
        lji_error(d->ctx, LJ_ERR_DOMAIN, "norm2: not differentiable at the zero matrix");
        return NULL;
    }
    return lji_d_scaled_by(d, e, 1.0 / nv, "1/", "", lji_d_transposed(d->ctx, lji_d_vec(d, e->a)));
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
    lj_op *r = l ? lji_d_elem(d, an, e->a, NULL, 0, f_sign, l, true) : NULL;
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

/* ---- adjoints (reverse mode, grad.c) ------------------------------------------------ */

/* tr A: G·I_n */
static void trace_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lj_expr *I = lji_g_node(g, lj_expr_eye(g->ctx, e->a->rows));
    if (I) lji_poly_mul_expr(g, out, 1.0, G, I, false, false);
    lj_expr_free(&I);
}

/* sum A: G·1_{m×n} */
static void sum_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lj_expr *one = lji_g_node(g, lji_expr_fill(g->ctx, e->a->rows, e->a->cols, 1.0));
    if (one) lji_poly_mul_expr(g, out, 1.0, G, one, false, false);
    lj_expr_free(&one);
}

/* ‖A‖_1: G·sign(A) */
static void norm1_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lj_expr *s = lji_g_node(g, lj_expr_func(g->ctx, LJ_FN_SIGN, e->a));
    if (s) lji_poly_mul_expr(g, out, 1.0, G, s, false, false);
    lj_expr_free(&s);
}

/* ‖A‖_F: G·A / ‖A‖_F */
static void norm2_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lji_poly t;
    lji_poly_init(&t, e->a->rows, e->a->cols);
    lji_poly_mul_expr(g, &t, 1.0, G, e->a, false, false);
    lji_poly_div_scalar(g, out, 1.0, &t, e);
    lji_poly_free(&t);
}

/* an operation applied to G's expression as a whole */
static void whole(lji_gctx *g, lji_poly *out, lj_expr *made)
{
    lj_expr *x = lji_g_node(g, made);
    if (x) lji_poly_add_expr(g, out, 1.0, x);
    lj_expr_free(&x);
}

/* vec A: reshape(G, m, n) (G itself for a column A) */
static void vec_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    if (e->a->cols == 1) {
        lji_poly_add(g, out, 1.0, G);
        return;
    }
    lj_expr *ge = lji_poly_expr(g, G);
    if (ge && ge->def == &lji_op_fill) /* a constant keeps its value */
        whole(g, out, lji_expr_fill(g->ctx, e->a->rows, e->a->cols, ge->p));
    else if (ge)
        whole(g, out, lji_expr_reshape(g->ctx, ge, e->a->rows, e->a->cols));
    lj_expr_free(&ge);
}

/* diag: diag(G) (the diagonal matrix of a vector G, the diagonal of a matrix G) */
static void diag_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    if (lji_is_scalar(e->a)) {
        lji_poly_add(g, out, 1.0, G);
        return;
    }
    lj_expr *ge = lji_poly_expr(g, G);
    if (ge) whole(g, out, lj_expr_diag(g->ctx, ge));
    lj_expr_free(&ge);
}

/* ---- internal leaves and reshape, for gradient expressions ----------------------------- */

static lj_status fill_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(A);
    LJI_UNUSED(B);
    for (int64_t i = 0; i < e->rows * e->cols; i++) out[i] = e->p;
    return LJ_OK;
}

static void fill_write(lji_buf *b, const lj_expr *e)
{
    if (b->math) /* a label: 1_{2×3}, as a matrix of ones prints */
        lji_buf_printf(b, "%s_{%" PRId64 "×%" PRId64 "}", e->p == 0 ? "0" : "1", e->rows, e->cols);
    else
        lji_buf_printf(b, "%s(%" PRId64 ",%" PRId64 ")", e->p == 0 ? "zeros" : "ones", e->rows, e->cols);
}

lj_expr *lji_expr_fill(lj_context *ctx, int64_t rows, int64_t cols, double x)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (rows < 0 || cols < 0 || !lji_size_ok(rows, cols, NULL)) {
        lji_error(ctx, LJ_ERR_SHAPE, "fill: bad size " LJI_SHP, rows, cols);
        return NULL;
    }
    lj_expr *e = lji_node_new(ctx, &lji_op_fill, rows, cols, NULL, NULL);
    if (e) e->p = x;
    return e;
}

static lj_status reshape_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B,
                              double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    memcpy(out, A, (size_t)(e->rows * e->cols) * sizeof *out);
    return LJ_OK;
}

static void reshape_write(lji_buf *b, const lj_expr *e)
{
    lji_buf_puts(b, "reshape(");
    lji_expr_write(b, e->a, 1);
    lji_buf_printf(b, ", %" PRId64 ", %" PRId64 ")", e->rows, e->cols);
}

lj_expr *lji_expr_reshape(lj_context *ctx, lj_expr *a, int64_t rows, int64_t cols)
{
    if (!lji_ctx_ok(ctx) || !lji_expr_ok(a)) return NULL;
    if (rows < 0 || cols < 0 || rows * cols != a->rows * a->cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "reshape: " LJI_SHP " has not " LJI_SHP " entries", a->rows, a->cols, rows,
                  cols);
        return NULL;
    }
    return lji_node_new(ctx, &lji_op_reshape, rows, cols, a, NULL);
}

/* ---- the entries --------------------------------------------------------------------- */

/* the reductions and diag read a sparse operand's entries themselves */
#define FUNCTION1(nm, shp, ev, loc, rd, adj)                                                     \
    { .name = nm, .arity = 1, .function = true, .level = 6, .shape = shp, .eval = ev,            \
      .local = loc, .reads = { rd, 0 }, .sparse_eval = true, .sparse_local = true, .adjoint = adj }

const lji_opdef lji_op_trace = FUNCTION1("tr", lji_shape_square, reduce_eval, trace_local, 0, trace_adjoint);
const lji_opdef lji_op_sum = FUNCTION1("sum", lji_shape_scalar, reduce_eval, sum_local, 0, sum_adjoint);
const lji_opdef lji_op_norm1 = FUNCTION1("norm1", lji_shape_scalar, reduce_eval, norm1_local, LJI_READ_OPERAND,
                                             norm1_adjoint);
const lji_opdef lji_op_norm2 = { .name = "norm2", .arity = 1, .function = true, .level = 6,
                                 .shape = lji_shape_scalar, .eval = reduce_eval, .local = norm2_local,
                                 .reads = { LJI_READ_OPERAND | LJI_READ_NODE, 0 }, .sparse_eval = true,
                                 .sparse_local = true, .adjoint = norm2_adjoint };
const lji_opdef lji_op_vec = { .name = "vec", .arity = 1, .function = true, .level = 6, .shape = vec_shape,
                               .eval = vec_eval, .local = vec_local, .sparse = LJI_SP_VEC,
                               .adjoint = vec_adjoint };
const lji_opdef lji_op_fill = { .name = "fill", .level = 6, .eval = fill_eval, .write = fill_write };
/* the language's names for fills, ones(m,n) and zeros(m,n), as the plain
 * form writes them: the parser makes a fill of each (no node has them) */
const lji_opdef lji_op_ones = { .name = "ones", .arity = 2, .function = true, .level = 6 },
                lji_op_zeros = { .name = "zeros", .arity = 2, .function = true, .level = 6 };
const lji_opdef lji_op_reshape = { .name = "reshape", .arity = 1, .level = 6, .eval = reshape_eval,
                                   .local = vec_local, .write = reshape_write };
const lji_opdef lji_op_diag = FUNCTION1("diag", diag_shape, diag_eval, diag_local, 0, diag_adjoint);
