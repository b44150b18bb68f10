/* Numeric evaluation of an expression DAG, each node once, in topological
 * order; LU factorisations for inverses and determinants. */
#include "config.h"
#include "expr.h"
#include "../core/lji_blas.h"
#include <inttypes.h>
#include <math.h>

static bool is_leaf(const lj_expr *e)
{
    return e->op == LJI_E_VAR || e->op == LJI_E_CONST;
}

void lji_vals_free(const lji_topo *t, double **vals)
{
    if (!vals) return;
    for (int64_t i = 0; i < t->n; i++)
        if (!is_leaf(t->node[i])) free(vals[i]);
    free(vals);
}

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

static lj_status eval_node(lj_context *ctx, const lj_expr *e, const double *A, const double *B,
                           double *out)
{
    int64_t m = e->rows, n = e->cols, mn = m * n;
    const lj_expr *a = e->a, *b = e->b;
    int64_t an = a ? a->rows * a->cols : 0, bn = b ? b->rows * b->cols : 0;
    switch (e->op) {
    case LJI_E_ADD: case LJI_E_SUB: case LJI_E_HAD: case LJI_E_HDIV:
        for (int64_t i = 0; i < mn; i++) {
            double x = A[an == 1 ? 0 : i], y = B[bn == 1 ? 0 : i];
            switch (e->op) {
            case LJI_E_ADD: out[i] = x + y; break;
            case LJI_E_SUB: out[i] = x - y; break;
            case LJI_E_HAD: out[i] = x * y; break;
            default:
                if (y == 0.0)
                    return lji_error(ctx, LJ_ERR_DOMAIN, "hdiv: division by zero at entry (%" PRId64
                                     ",%" PRId64 ") of " LJI_SHP, i % m + 1, i / m + 1, b->rows, b->cols);
                out[i] = x / y;
            }
        }
        return LJ_OK;
    case LJI_E_NEG:
        for (int64_t i = 0; i < mn; i++) out[i] = -A[i];
        return LJ_OK;
    case LJI_E_SCALE:
        for (int64_t i = 0; i < mn; i++) out[i] = e->p * A[i];
        return LJ_OK;
    case LJI_E_DIVS:
        if (B[0] == 0.0) return lji_error(ctx, LJ_ERR_DOMAIN, "div: division by zero");
        for (int64_t i = 0; i < mn; i++) out[i] = A[i] / B[0];
        return LJ_OK;
    case LJI_E_MUL:
        if (an == 1) {
            for (int64_t i = 0; i < mn; i++) out[i] = A[0] * B[bn == 1 ? 0 : i];
            return LJ_OK;
        }
        if (bn == 1) {
            for (int64_t i = 0; i < mn; i++) out[i] = A[i] * B[0];
            return LJ_OK;
        }
        return lji_gemm(ctx, "mul", false, false, m, n, a->cols, 1.0, A, a->rows > 0 ? a->rows : 1,
                        B, b->rows > 0 ? b->rows : 1, 0.0, out, m > 0 ? m : 1);
    case LJI_E_POW:
        for (int64_t i = 0; i < mn; i++) {
            double x = A[i];
            if ((x < 0 && e->p != floor(e->p)) || (x == 0 && e->p < 0))
                return lji_error(ctx, LJ_ERR_DOMAIN, "pow: %g .^ %g is undefined at entry (%" PRId64
                                 ",%" PRId64 ")", x, e->p, i % m + 1, i / m + 1);
            out[i] = pow(x, e->p);
        }
        return LJ_OK;
    case LJI_E_KRON: {
        int64_t ar = a->rows, ac = a->cols, br = b->rows, bc = b->cols;
        for (int64_t ja = 0; ja < ac; ja++)
            for (int64_t jb = 0; jb < bc; jb++)
                for (int64_t ia = 0; ia < ar; ia++)
                    for (int64_t ib = 0; ib < br; ib++)
                        out[(ia * br + ib) + (ja * bc + jb) * m] = A[ia + ja * ar] * B[ib + jb * br];
        return LJ_OK;
    }
    case LJI_E_T:
        for (int64_t i = 0; i < a->rows; i++)
            for (int64_t j = 0; j < a->cols; j++) out[j + i * a->cols] = A[i + j * a->rows];
        return LJ_OK;
    case LJI_E_TR: {
        double s = 0;
        for (int64_t i = 0; i < a->rows; i++) s += A[i + i * a->rows];
        out[0] = s;
        return LJ_OK;
    }
    case LJI_E_SUM: {
        double s = 0;
        for (int64_t i = 0; i < an; i++) s += A[i];
        out[0] = s;
        return LJ_OK;
    }
    case LJI_E_NORM2: {
        double s = 0;
        for (int64_t i = 0; i < an; i++) s += A[i] * A[i];
        out[0] = sqrt(s);
        return LJ_OK;
    }
    case LJI_E_VEC:
        memcpy(out, A, (size_t)an * sizeof *out);
        return LJ_OK;
    case LJI_E_DIAG:
        if (e->cols == 1 && !(a->rows == 1 || a->cols == 1)) {
            for (int64_t i = 0; i < m; i++) out[i] = A[i + i * a->rows];
        } else if (e->cols == 1 && an == 1) { /* diag of a 1×1 is itself */
            out[0] = A[0];
        } else {
            memset(out, 0, (size_t)mn * sizeof *out);
            for (int64_t i = 0; i < m; i++) out[i + i * m] = A[i];
        }
        return LJ_OK;
    case LJI_E_FUNC:
        for (int64_t i = 0; i < mn; i++) {
            double x = A[i];
            switch (e->fn) {
            case LJ_FN_EXP: out[i] = exp(x); break;
            case LJ_FN_LOG:
                if (!(x > 0))
                    return lji_error(ctx, LJ_ERR_DOMAIN, "log: argument %g is not positive at entry (%"
                                     PRId64 ",%" PRId64 ")", x, i % m + 1, i / m + 1);
                out[i] = log(x);
                break;
            case LJ_FN_SIN: out[i] = sin(x); break;
            case LJ_FN_COS: out[i] = cos(x); break;
            case LJ_FN_TANH: out[i] = tanh(x); break;
            case LJ_FN_SQRT:
                if (x < 0)
                    return lji_error(ctx, LJ_ERR_DOMAIN, "sqrt: argument %g is negative at entry (%"
                                     PRId64 ",%" PRId64 ")", x, i % m + 1, i / m + 1);
                out[i] = sqrt(x);
                break;
            }
        }
        return LJ_OK;
    case LJI_E_INV:
        memcpy(out, A, (size_t)mn * sizeof *out);
        return lji_inverse(ctx, "inv", m, out, m > 0 ? m : 1);
    case LJI_E_DET: case LJI_E_LOGDET: {
        double la = 0;
        int s = 1;
        const char *op = e->op == LJI_E_DET ? "det" : "logdet";
        lj_status st = lu_det(ctx, op, a->rows, A, &la, &s);
        if (st != LJ_OK) return st;
        if (e->op == LJI_E_DET) {
            out[0] = s == 0 ? 0.0 : s * exp(la);
            return LJ_OK;
        }
        if (s <= 0)
            return lji_error(ctx, LJ_ERR_DOMAIN, "logdet: determinant of " LJI_SHP " is %s", a->rows,
                             a->cols, s == 0 ? "zero (singular matrix)" : "negative");
        out[0] = la;
        return LJ_OK;
    }
    default:
        return lji_error(ctx, LJ_ERR_INVALID, "eval: unknown node");
    }
}

lj_status lji_vals_alloc(lj_context *ctx, const lji_topo *t, const unsigned char *need,
                         double ***pvals)
{
    bool fresh = *pvals == NULL;
    double **vals = fresh ? lji_calloc(ctx, (size_t)(t->n ? t->n : 1), sizeof *vals) : *pvals;
    if (!vals) return lji_nomem(ctx, "eval");
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *e = t->node[i];
        if (is_leaf(e)) {
            vals[i] = e->value; /* leaves are read in place: set_value keeps the buffer */
            continue;
        }
        if (vals[i] || (need && !need[i])) continue;
        int64_t mn = e->rows * e->cols;
        vals[i] = lji_malloc(ctx, (size_t)(mn ? mn : 1) * sizeof(double));
        if (!vals[i]) {
            if (fresh) lji_vals_free(t, vals);
            return lji_error(ctx, LJ_ERR_NOMEM, "eval: out of memory for the value of " LJI_SHP,
                             e->rows, e->cols);
        }
    }
    *pvals = vals;
    return LJ_OK;
}

lj_status lji_eval_into(lj_context *ctx, const lji_topo *t, const unsigned char *need, double **vals)
{
    for (int64_t i = 0; i < t->n; i++) {
        const lj_expr *e = t->node[i];
        if (is_leaf(e) || (need && !need[i])) continue;
        const double *A = e->a ? vals[lji_topo_find(t, e->a)] : NULL;
        const double *B = e->b ? vals[lji_topo_find(t, e->b)] : NULL;
        lj_status st = eval_node(ctx, e, A, B, vals[i]);
        if (st != LJ_OK) return st;
    }
    return LJ_OK;
}

lj_status lji_eval_all(lj_context *ctx, const lji_topo *t, double ***pvals)
{
    *pvals = NULL;
    lj_status st = lji_vals_alloc(ctx, t, NULL, pvals);
    if (st != LJ_OK) return st;
    st = lji_eval_into(ctx, t, NULL, *pvals);
    if (st != LJ_OK) {
        lji_vals_free(t, *pvals);
        *pvals = NULL;
    }
    return st;
}

lj_status lj_expr_eval(lj_context *ctx, const lj_expr *e, int64_t *rows, int64_t *cols,
                       double **values)
{
    const char *op = "eval";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!lji_expr_ok(e)) return lji_error(ctx, LJ_ERR_INVALID, "%s: expression is %s", op, e ? "not live" : "NULL");
    if (!values) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    lji_topo t;
    lj_status st = lji_topo_build(ctx, e, &t);
    if (st != LJ_OK) return st;
    double **vals;
    st = lji_eval_all(ctx, &t, &vals);
    if (st == LJ_OK) {
        int64_t mn = e->rows * e->cols;
        double *out = lji_malloc(ctx, (size_t)(mn ? mn : 1) * sizeof *out);
        if (!out)
            st = lji_nomem(ctx, op);
        else {
            memcpy(out, vals[t.n - 1], (size_t)mn * sizeof *out);
            *values = out;
            if (rows) *rows = e->rows;
            if (cols) *cols = e->cols;
        }
        lji_vals_free(&t, vals);
    }
    lji_topo_free(&t);
    return st;
}
