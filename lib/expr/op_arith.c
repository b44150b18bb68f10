/* Arithmetic: + − (unary −) scaling .* ./ / .^ max min and the scalar
 * power a^b. A 1×1 operand broadcasts in the elementwise binary ones. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <ctype.h>
#include <math.h>

/* ---- shapes --------------------------------------------------------------------- */

bool lji_is_scalar(const lj_expr *e)
{
    return e->rows == 1 && e->cols == 1;
}

bool lji_is_number(const lj_expr *e)
{
    while (e->def == &lji_op_neg || e->def == &lji_op_scale) e = e->a; /* −2 parses as −(2) */
    return e->def == &lji_op_const && !e->name && lji_is_scalar(e) && !e->pat;
}

double lji_number_value(const lj_expr *e)
{
    double s = 1.0;
    for (; e->def == &lji_op_neg || e->def == &lji_op_scale; e = e->a) s *= e->def == &lji_op_neg ? -1.0 : e->p;
    return s * e->value[0];
}

int lji_scalar_times(const lj_expr *e)
{
    if (e->def != &lji_op_mul) return -1;
    if (lji_is_scalar(e->a) && !e->a->pat) return 1;
    return lji_is_scalar(e->b) && !e->b->pat ? 0 : -1;
}

lj_status lji_shape_same(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                         int64_t *r, int64_t *c)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(d);
    LJI_UNUSED(b);
    *r = a->rows;
    *c = a->cols;
    return LJ_OK;
}

lj_status lji_shape_broadcast(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                              int64_t *r, int64_t *c)
{
    const lj_expr *s = lji_is_scalar(a) ? b : a;
    if (!lji_is_scalar(a) && !lji_is_scalar(b) && (a->rows != b->rows || a->cols != b->cols))
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: shapes differ: " LJI_SHP " %s " LJI_SHP, d->name, a->rows,
                         a->cols, d->sym, b->rows, b->cols);
    *r = s->rows;
    *c = s->cols;
    return LJ_OK;
}

lj_status lji_shape_scalar(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(d);
    LJI_UNUSED(a);
    LJI_UNUSED(b);
    *r = *c = 1;
    return LJ_OK;
}

static lj_status divs_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *s,
                            int64_t *r, int64_t *c)
{
    if (!lji_is_scalar(s))
        return lji_error(ctx, LJ_ERR_SHAPE, "div: '/' divides by a scalar, not " LJI_SHP " (use ./)",
                         s->rows, s->cols);
    return lji_shape_same(ctx, d, a, s, r, c);
}

static lj_status power_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                             int64_t *r, int64_t *c)
{
    if (!lji_is_scalar(a) || !lji_is_scalar(b))
        return lji_error(ctx, LJ_ERR_SHAPE, "power: '^' needs 1×1 operands (or a square matrix and an "
                         "integer), not " LJI_SHP "^" LJI_SHP " (use .^)", a->rows, a->cols, b->rows, b->cols);
    return lji_shape_scalar(ctx, d, a, b, r, c);
}

/* ---- values --------------------------------------------------------------------- */

/* The elementwise binary operations, x and y with broadcasting. */
static lj_status binary_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B,
                             double *out)
{
    int64_t m = e->rows, mn = e->rows * e->cols;
    int64_t an = e->a->rows * e->a->cols, bn = e->b->rows * e->b->cols;
    const lji_opdef *d = e->def;
    for (int64_t i = 0; i < mn; i++) {
        double x = A[an == 1 ? 0 : i], y = B[bn == 1 ? 0 : i];
        if (d == &lji_op_add) out[i] = x + y;
        else if (d == &lji_op_sub) out[i] = x - y;
        else if (d == &lji_op_hadamard) out[i] = x * y;
        else if (d == &lji_op_max) out[i] = x >= y ? x : y;
        else if (d == &lji_op_min) out[i] = x <= y ? x : y;
        else if (d == &lji_op_gt) out[i] = d->bin(x, y);
        else if (y == 0.0)
            return lji_error(ctx, LJ_ERR_DOMAIN, "hdiv: division by zero at entry (%" PRId64 ",%" PRId64
                             ") of " LJI_SHP, i % m + 1, i / m + 1, e->b->rows, e->b->cols);
        else out[i] = x / y;
    }
    return LJ_OK;
}

static lj_status neg_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    for (int64_t i = 0; i < lji_vlen(e); i++) out[i] = -A[i];
    return LJ_OK;
}

static lj_status scale_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    for (int64_t i = 0; i < lji_vlen(e); i++) out[i] = e->p * A[i];
    return LJ_OK;
}

static lj_status divs_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    if (B[0] == 0.0) return lji_error(ctx, LJ_ERR_DOMAIN, "div: division by zero");
    for (int64_t i = 0; i < lji_vlen(e); i++) out[i] = A[i] / B[0];
    return LJ_OK;
}

static bool pow_defined(double x, double p)
{
    return !((x < 0 && p != floor(p)) || (x == 0 && p < 0));
}

static lj_status pow_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(B);
    for (int64_t i = 0; i < lji_vlen(e); i++) {
        if (!pow_defined(A[i], e->p)) {
            int64_t r = i % (e->rows ? e->rows : 1), c = i / (e->rows ? e->rows : 1);
            if (e->pat) lji_pat_entry(e->pat, i, &r, &c);
            return lji_error(ctx, LJ_ERR_DOMAIN, "pow: %g .^ %g is undefined at entry (%" PRId64 ",%" PRId64 ")",
                             A[i], e->p, r + 1, c + 1);
        }
        out[i] = pow(A[i], e->p);
    }
    return LJ_OK;
}

static lj_status power_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(e);
    if (!pow_defined(A[0], B[0]))
        return lji_error(ctx, LJ_ERR_DOMAIN, "power: %g^%g is undefined", A[0], B[0]);
    out[0] = pow(A[0], B[0]);
    return LJ_OK;
}

/* ---- local Jacobians -------------------------------------------------------------- */

static lj_op *sum_local(lji_dctx *d, const lj_expr *e, int which)
{
    double s = (e->def == &lji_op_sub && which) ? -1.0 : 1.0;
    const lj_expr *c = which ? e->b : e->a;
    int64_t mn = e->rows * e->cols;
    if (lji_is_scalar(c) && mn != 1) /* a broadcast scalar: d/ds (s·1) = 1_{mn} */
        return lji_d_scaled(d->ctx, s, lji_d_ones(d->ctx, mn));
    return lji_d_scaled(d->ctx, s, lji_d_identity(d->ctx, mn));
}

static lj_op *neg_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    return lji_d_scaled(d->ctx, -1.0, lji_d_identity(d->ctx, lji_d_len(d, e)));
}

static lj_op *scale_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    return lji_d_scaled(d->ctx, e->p, lji_d_identity(d->ctx, lji_d_len(d, e)));
}

/* Diag(vec B) dA, with a broadcast operand's own cases */
/* Diag(vec o); for o = −u, −Diag(vec u), whose sign meets the others of
 * J (the logistic Hessian's y ∘ … ∘ (−y) under a minus is y ∘ … ∘ y) */
static lj_op *hadamard_local_of(lji_dctx *d, const lj_expr *o)
{
    if (o->def == &lji_op_neg && !o->pat && !o->a->pat && o->a->rows == o->rows && o->a->cols == o->cols)
        return lji_d_scaled(d->ctx, -1.0, hadamard_local_of(d, o->a));
    char buf[128], *own;
    const char *l = lji_d_vec_label_to(d, o, "", "", buf, sizeof buf, &own);
    lj_op *r = l ? lji_d_diag(d, o, l) : NULL;
    free(own);
    return r;
}

static lj_op *hadamard_local(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a, *o = which ? e->a : e->b;
    int64_t mn = e->rows * e->cols;
    if (lji_is_scalar(c) && mn != 1) return lji_d_vec(d, o);
    if (lji_is_scalar(o) && mn != 1) return lji_d_scaled_by(d, o, lji_d_val(d, o)[0], "", "", lji_d_identity(d->ctx, mn));
    return hadamard_local_of(d, o);
}

static double f_recip(double x, double y, double p) { LJI_UNUSED(x); LJI_UNUSED(p); return 1.0 / y; }
static double f_quot2(double x, double y, double p) { LJI_UNUSED(p); return x / (y * y); }

/* Diag(vec 1./B) dA − Diag(vec A./B.^2) dB */
static lj_op *hdiv_local(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *a = e->a, *b = e->b, *c = which ? b : a;
    int64_t mn = e->rows * e->cols;
    bool column = lji_is_scalar(c) && mn != 1;
    if (!which) {
        if (!column && lji_is_scalar(b) && mn != 1) /* A ./ s: (1/s)·I */
            return lji_d_scaled_by(d, b, 1.0 / lji_d_val(d, b)[0], "1/", "", lji_d_identity(d->ctx, mn));
        char *l = lji_d_vec_label(d, b, "1./", "");
        lj_op *r = l ? lji_d_elem(d, mn, NULL, b, 0, f_recip, l, column) : NULL;
        free(l);
        return r;
    }
    char *la = lji_d_label(d, a), *lb = lji_d_label(d, b);
    lji_buf bb;
    lji_buf_init(&bb, d->ctx);
    /* a column is its vec; x.^3./(1 + x.^2).^4, not (x.^3)./((1 + x.^2).^2).^2 */
    lji_buf_puts(&bb, e->cols == 1 && !e->pat ? "(" : "vec(");
    const char *sa = la ? la : "?", *sb = lb ? lb : "?";
    bool wa = lji_label_is_wrapped(sa) && lji_label_is_atomic_n(sa + 1, strlen(sa) - 2);
    lji_buf_putn(&bb, sa + wa, strlen(sa) - 2 * wa);
    lji_buf_puts(&bb, "./");
    size_t nb = strlen(sb);
    bool wb = lji_label_is_wrapped(sb) && lji_label_is_atomic_n(sb + 1, nb - 2);
    const char *ib = sb + wb, *pw = NULL;
    size_t ni = nb - 2 * wb;
    for (size_t k = ni; wb && k > 2; k--) /* b = u.^k: u.^(2k) */
        if (!isdigit((unsigned char)ib[k - 1])) {
            if (k < ni && ib[k - 1] == '^' && ib[k - 2] == '.' && ib[k] != '0') pw = ib + k;
            break;
        }
    long kb = pw ? strtol(pw, NULL, 10) : 0;
    if (pw && kb > 0 && kb < 1000000) {
        lji_buf_putn(&bb, ib, (size_t)(pw - ib));
        lji_buf_printf(&bb, "%ld", 2 * kb);
    } else {
        lji_buf_puts(&bb, sb);
        lji_buf_puts(&bb, ".^2");
    }
    lji_buf_puts(&bb, ")");
    free(la);
    free(lb);
    char *l = lji_buf_finish(&bb, "jacobian");
    lj_op *r = l ? lji_d_elem(d, mn, a, b, 0, f_quot2, l, column) : NULL;
    free(l);
    return lji_d_scaled(d->ctx, -1.0, r);
}

/* a number, or a symbol whose label is a power of b's (u = s^2 for b = s):
 * then u·(1/b^2) multiplies out, where u and another symbol would not */
static bool same_core(lji_dctx *d, const lj_expr *u, const lj_expr *b)
{
    if (lji_is_number(u)) return true;
    char *lu = lji_d_label(d, u), *lb = lji_d_label(d, b);
    bool same = lu && lb && lji_sym_same_core(lu, lb);
    free(lu);
    free(lb);
    return same;
}

static lj_op *divs_local(lji_dctx *d, const lj_expr *e, int which)
{
    double s = lji_d_val(d, e->b)[0];
    if (!which) return lji_d_scaled_by(d, e->b, 1.0 / s, "1/", "", lji_d_identity(d->ctx, lji_d_len(d, e)));
    if (lji_is_scalar(e->a) && !e->a->pat && same_core(d, e->a, e->b)) /* u/s: −(1/s^2)·u, a power of s */
        return lji_d_scaled(d->ctx, -1.0,
                            lji_d_scaled_by(d, e->b, 1.0 / (s * s), "1/", "^2",
                                            lji_d_scaled_by(d, e->a, lji_d_val(d, e->a)[0], "", "",
                                                            lji_d_identity(d->ctx, 1))));
    return lji_d_scaled(d->ctx, -1.0, lji_d_scaled_by(d, e->b, 1.0 / (s * s), "1/", "^2", lji_d_vec(d, e->a)));
}

static double f_pow(double x, double y, double p) { LJI_UNUSED(y); return p * pow(x, p - 1); }

/* Diag(p·(vec A).^(p−1)) */
static lj_op *number_power_local(lji_dctx *d, const lj_expr *a, double b);

static lj_op *pow_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    if (lji_is_scalar(e->a) && !e->a->pat) return number_power_local(d, e->a, e->p); /* a symbol, no 1×1 Diag */
    /* an integer power of −a: p·a.^(p−1) with the sign (−1)^(p−1) taken
     * out, (−x).^2 → −2·x; a vector's transpose has the same vec */
    const lj_expr *a = e->a;
    double c = e->p;
    bool integer = e->p == nearbyint(e->p) && fabs(e->p) < 0x1p52, transposed = false;
    for (bool more = integer; more;) {
        more = false;
        if (a->def == &lji_op_neg) {
            a = a->a, more = true;
            if (fmod(e->p - 1, 2) != 0) c = -c;
        } else if (a->def == &lji_op_transpose && (a->rows == 1 || a->cols == 1) && !a->pat) {
            a = a->a, more = true;
        } else if (a->def == &lji_op_transpose && !transposed && a->a->def == &lji_op_neg && !a->pat) {
            a = a->a, more = transposed = true; /* (−X)^T is −X^T: vec(X^T), the sign out */
        }
    }
    char *v = NULL;
    if (transposed && a->rows != 1 && a->cols != 1) { /* vec(X^T), vec((A·B)^T) */
        char *la = lji_d_label(d, a), tb[64], *town = NULL;
        const char *lt = la ? lji_label_transposed_to(d->ctx, la, tb, sizeof tb, &town) : NULL;
        if (lt) {
            lji_buf vb;
            lji_buf_init(&vb, d->ctx);
            lji_buf_printf(&vb, lji_label_is_wrapped(lt) ? "vec%s" : "vec(%s)", lt);
            v = lji_buf_finish(&vb, "jacobian");
        }
        free(la);
        free(town);
    } else
        v = lji_d_vec_label(d, a, "", "");
    if (!v) return NULL;
    lji_buf bb;
    lji_buf_init(&bb, d->ctx);
    if (c == -1 || c == 1) lji_buf_puts(&bb, c < 0 ? "−" : "");
    else {
        lji_put_number(&bb, c, LJ_PRINT_UNICODE);
        lji_buf_puts(&bb, "·");
    }
    if (e->p == 2) lji_buf_puts(&bb, v);
    else { /* −2·(vec X).^(−3), −x.^(−2) */
        lji_buf_printf(&bb, lji_label_is_atomic(v) || lji_label_is_wrapped(v) ? "%s.^" : "(%s).^", v);
        lji_put_exponent(&bb, e->p - 1, LJ_PRINT_UNICODE);
    }
    free(v);
    char *l = lji_buf_finish(&bb, "jacobian");
    int64_t mn = lji_d_len(d, e);
    lj_op *r = l ? lji_d_elem(d, mn, e->a, NULL, e->p, f_pow, l, false) : NULL;
    free(l);
    return r;
}

/* max and min: 1 where the operand is the one taken, 0 where it is not, and
 * ½ at ties (PyTorch's convention for maximum and minimum: the gradient is
 * shared evenly). */
static double f_takes_max(double x, double y, double p) { LJI_UNUSED(p); return x > y ? 1.0 : x < y ? 0.0 : 0.5; }
static double f_takes_min(double x, double y, double p) { LJI_UNUSED(p); return x < y ? 1.0 : x > y ? 0.0 : 0.5; }

static lj_op *maxmin_local(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a, *o = which ? e->a : e->b;
    int64_t mn = e->rows * e->cols;
    bool max = e->def == &lji_op_max;
    char *lc = lji_d_label(d, c), *lo = lji_d_label(d, o);
    lji_buf bb;
    lji_buf_init(&bb, d->ctx);
    /* a column is its own vec; inside the brackets a label needs none of
     * its own: [x > A·x] */
    const char *sc = lc ? lc : "?", *so = lo ? lo : "?";
    int nc = (int)strlen(sc), no = (int)strlen(so), wc = lji_label_is_wrapped(sc), wo = lji_label_is_wrapped(so);
    lji_buf_printf(&bb, e->cols == 1 ? "[%.*s %s %.*s]" : "vec[%.*s %s %.*s]", nc - 2 * wc, sc + wc,
                   max ? ">" : "<", no - 2 * wo, so + wo);
    free(lc);
    free(lo);
    char *l = lji_buf_finish(&bb, "jacobian");
    lj_op *r = l ? lji_d_elem(d, mn, c, o, 0, max ? f_takes_max : f_takes_min, l, lji_is_scalar(c) && mn != 1)
                 : NULL;
    free(l);
    return r;
}

/* d(a^b) = b·a^(b−1) da + a^b·log(a) db */
/* b·a^(b − 1), the derivative of a^b for a 1×1 a and a number b: a^(b − 1)
 * a symbol, b a number outside it, so that it folds with the others (a^2
 * gives 2·a, a^3 3·a^2, a^−2 −2·(1/a^3), a^0.5 0.5·(1/a^0.5)); b = 0 and
 * 1 give 0 and 1 */
static lj_op *number_power_local(lji_dctx *d, const lj_expr *a, double b)
{
    if (b == 0) return lj_op_zero(d->ctx, 1, 1);
    if (b == 1) return lj_op_identity(d->ctx, 1);
    char *la = lji_d_label(d, a), q[64];
    if (!la) return NULL;
    lji_format_number(q, sizeof q, fabs(b - 1), LJ_PRINT_UNICODE);
    lji_buf bb;
    lji_buf_init(&bb, d->ctx);
    if (b == 2) lji_buf_puts(&bb, la);
    else lji_buf_printf(&bb, b > 1 ? "%s^%s" : "1/%s^%s", la, q);
    free(la);
    char *l = lji_buf_finish(&bb, "jacobian");
    lj_op *I = l ? lj_op_identity(d->ctx, 1) : NULL;
    lj_op *r = I ? lji_scale_sym(d->ctx, pow(lji_d_val(d, a)[0], b - 1), l, I) : NULL;
    lj_op_free(&I);
    free(l);
    return lji_d_scaled(d->ctx, b, r);
}

static lj_op *power_local(lji_dctx *d, const lj_expr *e, int which)
{
    double a = lji_d_val(d, e->a)[0], b = lji_d_val(d, e->b)[0], g;
    if (!which && lji_is_number(e->b)) return number_power_local(d, e->a, b);
    char *la = lji_d_label(d, e->a), *lb = lji_d_label(d, e->b);
    lji_buf bb;
    lji_buf_init(&bb, d->ctx);
    if (!which) {
        g = b * pow(a, b - 1);
        lji_buf_printf(&bb, "%s·%s^(%s − 1)", lb ? lb : "?", la ? la : "?", lb ? lb : "?");
    } else {
        g = pow(a, b) * log(a);
        lji_buf_printf(&bb, "%s^%s·log %s", la ? la : "?", lb ? lb : "?", la ? la : "?");
    }
    free(la);
    free(lb);
    char *l = lji_buf_finish(&bb, "jacobian");
    if (which && !(a > 0)) {
        free(l);
        lji_error(d->ctx, LJ_ERR_DOMAIN, "power: d(a^b)/db needs a > 0, not a = %g", a);
        return NULL;
    }
    lj_op *I = l ? lj_op_identity(d->ctx, 1) : NULL, *r = I ? lji_scale_sym(d->ctx, g, l, I) : NULL;
    lj_op_free(&I);
    free(l);
    return r;
}

/* ---- printing --------------------------------------------------------------------- */

static void neg_write(lji_buf *b, const lj_expr *e)
{
    lji_buf_puts(b, b->math ? "−" : "-");
    lji_expr_write(b, e->a, b->math && lji_expr_writes_minus(b, e->a) ? 4 : 3); /* a label's −(−B); the language's --B */
}

static void scale_write(lji_buf *b, const lj_expr *e)
{
    lji_put_number(b, e->p, b->math ? LJ_PRINT_UNICODE : LJ_PRINT_PLAIN); /* −2·, the minus sign of the other labels */
    lji_buf_puts(b, b->math ? "·" : "*");
    lji_expr_write(b, e->a, 3);
}

/* the base of a power: a transpose bracketed in labels, (s^T)^3 */
static void power_base_write(lji_buf *b, const lj_expr *a)
{
    bool wrap = b->math && a->def == &lji_op_transpose;
    lji_put_open(b, wrap);
    lji_expr_write(b, a, 5);
    lji_put_close(b, wrap);
}

static void pow_write(lji_buf *b, const lj_expr *e)
{
    power_base_write(b, e->a);
    /* a scalar's power reads s^2 (the language keeps .^, which parses back to this node) */
    const char *op = b->math && e->a->rows == 1 && e->a->cols == 1 ? "^" : ".^";
    lji_buf_puts(b, op); /* a label's .^(−1), .^(1/3) */
    lji_put_exponent(b, e->p, b->math ? LJ_PRINT_UNICODE : LJ_PRINT_PLAIN);
}

static void power_write(lji_buf *b, const lj_expr *e)
{
    power_base_write(b, e->a);
    lji_buf_puts(b, "^");
    lji_expr_write(b, e->b, 4);
}

/* ---- scalar kernels of the elementwise binary operations (sparse values) ---- */

static double k_add(double x, double y) { return x + y; }
static double k_sub(double x, double y) { return x - y; }
double lji_k_mul(double x, double y) { return x * y; }
static double k_div(double x, double y) { return x / y; }
static double dk_add(double x, double y, int w) { LJI_UNUSED(x); LJI_UNUSED(y); LJI_UNUSED(w); return 1.0; }
static double dk_sub(double x, double y, int w) { LJI_UNUSED(x); LJI_UNUSED(y); return w ? -1.0 : 1.0; }
double lji_dk_mul(double x, double y, int w) { return w ? x : y; }
static double dk_div(double x, double y, int w) { return w ? -x / (y * y) : 1.0 / y; }

/* ---- adjoints (reverse mode, grad.c) ---------------------------------------------- */

/* out += c·G, summed to a scalar for a broadcast operand */
static void to_operand(lji_gctx *g, const lj_expr *e, const lj_expr *o, double c, const lji_poly *G,
                       lji_poly *out)
{
    if (lji_is_scalar(o) && !lji_is_scalar(e)) lji_poly_sum(g, out, c, G);
    else lji_poly_add(g, out, c, G);
}

/* out += c·(G ∘ x) (or ⊘ x), summed for a broadcast operand o */
static void hadamard_to(lji_gctx *g, const lj_expr *e, const lj_expr *o, double c, const lji_poly *G,
                        const lj_expr *x, bool divide, lji_poly *out)
{
    lji_poly t;
    lji_poly_init(&t, e->rows, e->cols);
    lji_poly_hadamard(g, &t, 1.0, G, x, divide);
    to_operand(g, e, o, c, &t, out);
    lji_poly_free(&t);
}

static void sum_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    to_operand(g, e, which ? e->b : e->a, which && e->def == &lji_op_sub ? -1.0 : 1.0, G, out);
}

static void neg_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(e);
    LJI_UNUSED(which);
    lji_poly_add(g, out, -1.0, G);
}

static void scale_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    lji_poly_add(g, out, e->p, G);
}

/* a ∘ b: G ∘ b, G ∘ a */
static void hadamard_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    hadamard_to(g, e, which ? e->b : e->a, 1.0, G, which ? e->a : e->b, false, out);
}

/* a ⊘ b: G ⊘ b, −(G ∘ e) ⊘ b */
static void hdiv_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    if (!which) {
        hadamard_to(g, e, e->a, 1.0, G, e->b, true, out);
        return;
    }
    lji_poly t;
    lji_poly_init(&t, e->rows, e->cols);
    lji_poly_hadamard(g, &t, 1.0, G, e, false);
    hadamard_to(g, e, e->b, -1.0, &t, e->b, true, out);
    lji_poly_free(&t);
}

/* a / s: G / s, −sum(G ∘ e) / s */
static void divs_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    if (!which) {
        lji_poly_div_scalar(g, out, 1.0, G, e->b);
        return;
    }
    lji_poly t, u;
    lji_poly_init(&t, e->rows, e->cols);
    lji_poly_init(&u, 1, 1);
    lji_poly_hadamard(g, &t, 1.0, G, e, false);
    lji_poly_sum(g, &u, 1.0, &t);
    lji_poly_div_scalar(g, out, -1.0, &u, e->b);
    lji_poly_free(&t);
    lji_poly_free(&u);
}

/* a.^p: p·G ∘ a.^(p−1) (a for p = 2, ⊘ a.^(1−p) for p < 1) */
static void pow_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    double p = e->p, q = p - 1;
    if (p == 0) return;
    if (q == 0) {
        lji_poly_add(g, out, 1.0, G);
        return;
    }
    bool divide = q < 0;
    double k = divide ? -q : q, c = p;
    /* (−a).^k is ±a.^k for an integer k, and (a^T).^k is (a.^k)^T:
     * −3·x^{∘2}, not −3·(−x)^{∘2}; X^{∘2}, not ((X^T)^{∘2})^T */
    const lj_expr *a = e->a;
    bool T = false;
    for (bool more = k == nearbyint(k) && k < 0x1p52; more;) {
        more = false;
        if (a->def == &lji_op_neg) {
            a = a->a, more = true;
            if (fmod(k, 2) != 0) c = -c;
        } else if (a->def == &lji_op_transpose && !a->pat)
            a = a->a, more = true, T = !T;
    }
    lj_expr *x = k == 1 ? lj_expr_retain((lj_expr *)a) : lji_g_node(g, lj_expr_pow(g->ctx, (lj_expr *)a, k));
    if (x && T) {
        lj_expr *xt = lji_g_node(g, lj_expr_transpose(g->ctx, x));
        lj_expr_free(&x);
        x = xt;
    }
    if (x) lji_poly_hadamard(g, out, c, G, x, divide);
    lj_expr_free(&x);
}

/* max: G ∘ [a > b] (½ at ties); min: G ∘ [a < b] */
static void maxmin_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    const lj_expr *c = which ? e->b : e->a, *o = which ? e->a : e->b;
    bool max = e->def == &lji_op_max;
    lj_expr *ind = lji_g_node(g, max ? lji_expr_binary(g->ctx, &lji_op_gt, (lj_expr *)c, (lj_expr *)o)
                                     : lji_expr_binary(g->ctx, &lji_op_gt, (lj_expr *)o, (lj_expr *)c));
    if (ind) hadamard_to(g, e, c, 1.0, G, ind, false, out);
    lj_expr_free(&ind);
}

/* a^b (scalars): G·b·a^(b−1), G·a^b·log(a) */
static void power_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    lj_context *ctx = g->ctx;
    lji_poly t;
    lji_poly_init(&t, 1, 1);
    lj_expr *x = NULL, *y = NULL;
    if (!which) {
        x = lj_expr_retain(e->b);
        if (lji_is_number(e->b)) { /* a number (−2 too): a^(b−1) folded */
            double q = lji_number_value(e->b) - 1;
            y = q == 0 ? lji_g_node(g, lj_expr_scalar(ctx, 1.0))
                : q == 1 ? lj_expr_retain(e->a) : lji_g_node(g, lj_expr_pow(ctx, e->a, q));
        } else {
            lj_expr *one = lji_g_node(g, lj_expr_scalar(ctx, 1.0));
            lj_expr *bm1 = one ? lji_g_node(g, lj_expr_sub(ctx, e->b, one)) : NULL;
            y = bm1 ? lji_g_node(g, lj_expr_power(ctx, e->a, bm1)) : NULL;
            lj_expr_free(&one);
            lj_expr_free(&bm1);
        }
    } else {
        x = lj_expr_retain((lj_expr *)e);
        y = lji_g_node(g, lj_expr_func(ctx, LJ_FN_LOG, e->a));
    }
    if (x && y) {
        lji_poly_mul_expr(g, &t, 1.0, G, x, false, false);
        lji_poly_mul_expr(g, out, 1.0, &t, y, false, false);
    }
    lj_expr_free(&x);
    lj_expr_free(&y);
    lji_poly_free(&t);
}

/* [a > b], ½ at ties: the derivative of max and min, 0 almost everywhere */
static double k_gt(double x, double y) { return x > y ? 1.0 : x < y ? 0.0 : 0.5; }
static double dk_zero(double x, double y, int w) { LJI_UNUSED(x); LJI_UNUSED(y); LJI_UNUSED(w); return 0.0; }
static lj_op *gt_local(lji_dctx *d, const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a;
    return lj_op_zero(d->ctx, e->rows * e->cols, c->rows * c->cols);
}
static void gt_write(lji_buf *b, const lj_expr *e)
{
    lji_buf_puts(b, "(");
    lji_expr_write(b, e->a, 2);
    lji_buf_puts(b, " > ");
    lji_expr_write(b, e->b, 2);
    lji_buf_puts(b, ")");
}

/* ---- the entries ------------------------------------------------------------------ */

#define ELEMENTWISE(nm, s, ms, loc, rd0, rd1, fail, sp, k, dk, adj)                                  \
    { .name = nm, .arity = 2, .level = 2, .sym = s, .msym = ms, .shape = lji_shape_broadcast,     \
      .eval = binary_eval, .local = loc, .reads = { rd0, rd1 }, .can_fail = fail, .sparse = sp,     \
      .bin = k, .dbin = dk, .adjoint = adj }

const lji_opdef lji_op_add = { .name = "add", .arity = 2, .level = 1, .sym = "+", .msym = " + ",
                               .shape = lji_shape_broadcast, .eval = binary_eval, .local = sum_local,
                               .sparse = LJI_SP_UNION, .bin = k_add, .dbin = dk_add, .adjoint = sum_adjoint };
const lji_opdef lji_op_sub = { .name = "sub", .arity = 2, .level = 1, .sym = "-", .msym = " − ",
                               .shape = lji_shape_broadcast, .eval = binary_eval, .local = sum_local,
                               .sparse = LJI_SP_UNION, .bin = k_sub, .dbin = dk_sub, .adjoint = sum_adjoint };
const lji_opdef lji_op_hadamard = ELEMENTWISE("hadamard", ".*", " ∘ ", hadamard_local, LJI_READ_OTHER,
                                              LJI_READ_OTHER, false, LJI_SP_PRODUCT, lji_k_mul, lji_dk_mul,
                                              hadamard_adjoint);
const lji_opdef lji_op_hdiv = ELEMENTWISE("hdiv", "./", " ⊘ ", hdiv_local, LJI_READ_OTHER,
                                          LJI_READ_OPERAND | LJI_READ_OTHER, true, LJI_SP_QUOTIENT, k_div, dk_div,
                                          hdiv_adjoint);
const lji_opdef lji_op_divs = { .name = "div", .arity = 2, .level = 2, .sym = "/", .msym = "/",
                                .shape = divs_shape, .eval = divs_eval, .local = divs_local,
                                .reads = { LJI_READ_OTHER, LJI_READ_OPERAND | LJI_READ_OTHER },
                                .can_fail = true, .sparse = LJI_SP_SAME, .adjoint = divs_adjoint };
const lji_opdef lji_op_neg = { .name = "neg", .arity = 1, .level = 3, .shape = lji_shape_same,
                               .eval = neg_eval, .local = neg_local, .write = neg_write, .sparse = LJI_SP_SAME,
                               .adjoint = neg_adjoint };
const lji_opdef lji_op_scale = { .name = "scale", .arity = 1, .level = 2, .shape = lji_shape_same,
                                 .eval = scale_eval, .local = scale_local, .write = scale_write,
                                 .sparse = LJI_SP_SAME, .adjoint = scale_adjoint };
const lji_opdef lji_op_pow = { .name = "pow", .arity = 1, .level = 4, .shape = lji_shape_same,
                               .eval = pow_eval, .local = pow_local, .reads = { LJI_READ_OPERAND, 0 },
                               .can_fail = true, .write = pow_write, .sparse = LJI_SP_ZERO,
                               .adjoint = pow_adjoint };
const lji_opdef lji_op_max = { .name = "max", .arity = 2, .function = true, .level = 6, .sym = "and",
                               .shape = lji_shape_broadcast, .eval = binary_eval, .local = maxmin_local,
                               .reads = { LJI_READ_OPERAND | LJI_READ_OTHER, LJI_READ_OPERAND | LJI_READ_OTHER },
                               .adjoint = maxmin_adjoint };
const lji_opdef lji_op_min = { .name = "min", .arity = 2, .function = true, .level = 6, .sym = "and",
                               .shape = lji_shape_broadcast, .eval = binary_eval, .local = maxmin_local,
                               .reads = { LJI_READ_OPERAND | LJI_READ_OTHER, LJI_READ_OPERAND | LJI_READ_OTHER },
                               .adjoint = maxmin_adjoint };
const lji_opdef lji_op_power = { .name = "power", .arity = 2, .level = 4, .sym = "^", .msym = "^",
                                 .shape = power_shape, .eval = power_eval, .local = power_local,
                                 .reads = { LJI_READ_OPERAND | LJI_READ_OTHER, LJI_READ_OPERAND | LJI_READ_OTHER },
                                 .can_fail = true, .write = power_write, .adjoint = power_adjoint };
const lji_opdef lji_op_gt = { .name = "gt", .arity = 2, .level = 6, .shape = lji_shape_broadcast,
                              .eval = binary_eval, .local = gt_local, .write = gt_write, .bin = k_gt,
                              .dbin = dk_zero };
