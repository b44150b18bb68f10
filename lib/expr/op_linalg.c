/* Linear algebra: the inverse, the determinant and its logarithm, through
 * LU factorisations. */
#include "config.h"
#include "ops.h"
#include "../core/lji_blas.h"
#include <inttypes.h>
#include <math.h>

/* LU-based determinant: *logabs = log|det|, *sign in {-1, 0, 1}. */
static lj_status lu_det(lj_context *ctx, const char *op, int64_t n, const double *a, double *logabs,
                        int *sign)
{
    int64_t nn;
    if (!lji_size_ok(n, n, &nn)) return lji_error(ctx, LJ_ERR_OVERFLOW, "%s: size overflows", op);
    double *lu = lji_malloc(ctx, (size_t)(nn ? nn : 1) * sizeof *lu);
    if (!lu) return lji_nomem(ctx, op);
    memcpy(lu, a, (size_t)nn * sizeof *lu);
    int s = 1;
    lj_status st = lji_lu(ctx, op, n, lu, n > 0 ? n : 1, NULL, &s);
    if (st == LJ_ERR_SINGULAR) {
        lj_context_clear(ctx);
        *sign = 0;
        *logabs = -INFINITY;
        free(lu);
        return LJ_OK;
    }
    double la = 0;
    for (int64_t i = 0; i < n && st == LJ_OK; i++) {
        double u = lu[i + i * n];
        if (u < 0) s = -s;
        la += log(fabs(u));
    }
    free(lu);
    *sign = s;
    *logabs = la;
    return st;
}

static lj_status inv_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(B);
    int64_t m = e->rows;
    memcpy(out, A, (size_t)(m * m) * sizeof *out);
    return lji_inverse(ctx, "inv", m, out, m > 0 ? m : 1);
}

static lj_status det_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(B);
    double la = 0;
    int s = 1;
    lj_status st = lu_det(ctx, e->def->name, e->a->rows, A, &la, &s);
    if (st != LJ_OK) return st;
    if (e->def == &lji_op_det) {
        out[0] = s == 0 ? 0.0 : s * exp(la);
        return LJ_OK;
    }
    if (s <= 0)
        return lji_error(ctx, LJ_ERR_DOMAIN, "logdet: determinant of " LJI_SHP " is %s", e->a->rows,
                         e->a->cols, s == 0 ? "zero (singular matrix)" : "negative");
    out[0] = la;
    return LJ_OK;
}

/* −(A^{-T} ⊗ A^{-1}) */
static lj_op *inv_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    const double *Ai = lji_d_val(d, e);
    int64_t n = e->a->rows;
    char *la = lji_d_label(d, e->a);
    if (!la) return NULL;
    char li[300], lt[300];
    snprintf(li, sizeof li, "%s^{-1}", la);
    snprintf(lt, sizeof lt, lji_expr_symmetric(e->a) ? "%s^{-1}" : "%s^{-T}", la); /* (X^T·X)^{-1} is its transpose */
    free(la);
    double *At = lji_malloc(d->ctx, (size_t)(n > 0 ? n * n : 1) * sizeof *At);
    if (!At) {
        lji_nomem(d->ctx, "jacobian");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) At[j + i * n] = Ai[i + j * n];
    lj_op *kt = lj_op_dense(d->ctx, n, n, At, n > 0 ? n : 1, lt);
    lj_op *ki = lj_op_dense(d->ctx, n, n, Ai, n > 0 ? n : 1, li);
    free(At);
    return lji_d_scaled(d->ctx, -1.0, lji_d_kron(d->ctx, kt, ki));
}

/* det(A)·vec(A^{-T})^T, or vec(A^{-T})^T for logdet */
static lj_op *det_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    int64_t n = e->a->rows;
    double *Ait = lji_malloc(d->ctx, (size_t)(n > 0 ? n * n : 1) * sizeof *Ait);
    if (!Ait) {
        lji_nomem(d->ctx, "jacobian");
        return NULL;
    }
    memcpy(Ait, lji_d_val(d, e->a), (size_t)(n * n) * sizeof *Ait);
    if (lji_inverse(d->ctx, e->def->name, n, Ait, n > 0 ? n : 1) != LJ_OK) {
        free(Ait);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) /* transpose in place */
        for (int64_t j = i + 1; j < n; j++) {
            double t = Ait[i + j * n];
            Ait[i + j * n] = Ait[j + i * n];
            Ait[j + i * n] = t;
        }
    char *la = lji_d_label(d, e->a);
    char lt[300];
    snprintf(lt, sizeof lt, lji_expr_symmetric(e->a) ? "vec %s^{-1}" : "vec %s^{-T}", la ? la : "?");
    free(la);
    lj_op *r = lji_d_transposed(d->ctx, lj_op_dense(d->ctx, n * n, 1, Ait, n > 0 ? n * n : 1, lt));
    free(Ait);
    return e->def == &lji_op_det ? lji_d_scaled_by(d, e, lji_d_val(d, e)[0], "", "", r) : r;
}

/* ---- adjoints (reverse mode, grad.c) ------------------------------------------------ */

/* inv(A), with inv(inv(X)) = X */
static lj_expr *inverse_of(lji_gctx *g, const lj_expr *a)
{
    if (a->def == &lji_op_inv) return lj_expr_retain(a->a);
    return lji_g_node(g, lj_expr_inv(g->ctx, (lj_expr *)a));
}

/* inv(A) = Y: −Y^T·G·Y^T */
static void inv_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lji_poly t;
    lji_poly_init(&t, e->rows, e->cols);
    lji_poly_mul_expr(g, &t, 1.0, G, e, true, true);
    lji_poly_mul_expr(g, out, -1.0, &t, e, false, true);
    lji_poly_free(&t);
}

/* det A: G·det(A)·A^{-T}; log det A: G·A^{-T} */
static void det_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lj_expr *y = inverse_of(g, e->a);
    if (!y) return;
    if (e->def == &lji_op_det) {
        lji_poly t;
        lji_poly_init(&t, 1, 1);
        lji_poly_mul_expr(g, &t, 1.0, G, e, false, false);
        lji_poly_mul_expr(g, out, 1.0, &t, y, false, true);
        lji_poly_free(&t);
    } else
        lji_poly_mul_expr(g, out, 1.0, G, y, false, true);
    lj_expr_free(&y);
}

/* inv(A) in the language; in a label A^{-1}, as the operators print it */
static void inv_write(lji_buf *b, const lj_expr *e)
{
    if (!b->math) {
        lji_buf_puts(b, "inv(");
        lji_expr_write(b, e->a, 1);
        lji_buf_puts(b, ")");
        return;
    }
    bool t = e->a->def == &lji_op_transpose && !e->a->pbase; /* (A^T)^{-1} is A^{-T} */
    lji_expr_write(b, t ? e->a->a : e->a, 6);
    lji_buf_puts(b, t ? "^{-T}" : "^{-1}");
}

const lji_opdef lji_op_inv = { .name = "inv", .arity = 1, .function = true, .level = 6, .write = inv_write,
                               .shape = lji_shape_square, .eval = inv_eval, .local = inv_local,
                               .reads = { LJI_READ_NODE, 0 }, .can_fail = true, .adjoint = inv_adjoint };
const lji_opdef lji_op_det = { .name = "det", .arity = 1, .function = true, .level = 6,
                               .shape = lji_shape_square, .eval = det_eval, .local = det_local,
                               .reads = { LJI_READ_OPERAND | LJI_READ_NODE, 0 }, .adjoint = det_adjoint };
const lji_opdef lji_op_logdet = { .name = "logdet", .arity = 1, .function = true, .level = 6,
                                  .shape = lji_shape_square, .eval = det_eval, .local = det_local,
                                  .reads = { LJI_READ_OPERAND, 0 }, .can_fail = true, .adjoint = det_adjoint };
