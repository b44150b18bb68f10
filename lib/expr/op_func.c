/* Elementwise functions: one entry each, holding the scalar function, its
 * derivative, its domain and the label of its derivative in printed
 * Jacobians; evaluation and the local Jacobian Diag(f'(vec A)) are shared
 * (f'(a) as a symbol, for a scalar a).
 *
 * At points where f is not differentiable the derivative follows PyTorch:
 * abs'(0) = 0 and relu'(0) = 0 (the subgradient 0), sign' = 0 everywhere;
 * sqrt at 0 and asin, acos at ±1, where the derivative is infinite, are
 * errors (LJ_ERR_DOMAIN) rather than infinities in J. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

static double d_exp(double x) { return exp(x); }
static double d_log(double x) { return 1.0 / x; }
static double d_sin(double x) { return cos(x); }
static double d_cos(double x) { return -sin(x); }
static double d_tanh(double x) { double t = tanh(x); return 1 - t * t; }
static double d_sqrt(double x) { return 0.5 / sqrt(x); }
static double f_sign(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : 0.0; }
static double d_zero(double x) { LJI_UNUSED(x); return 0.0; }
static double f_relu(double x) { return x > 0 ? x : 0.0; }
static double d_relu(double x) { return x > 0 ? 1.0 : 0.0; }
static double d_tan(double x) { double t = tan(x); return 1 + t * t; }
static double d_asin(double x) { return 1.0 / sqrt(1 - x * x); }
static double d_acos(double x) { return -1.0 / sqrt(1 - x * x); }
static double d_atan(double x) { return 1.0 / (1 + x * x); }
static double f_sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double t = exp(x);
    return t / (1.0 + t);
}
static double d_sigmoid(double x) { double s = f_sigmoid(x); return s * (1 - s); }
static double f_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }
static double d_log1p(double x) { return 1.0 / (1 + x); }

static bool positive(double x) { return x > 0; }
static bool nonnegative(double x) { return x >= 0; }
static bool unit_interval(double x) { return x >= -1 && x <= 1; }
static bool above_minus_one(double x) { return x > -1; }
static bool nonzero(double x) { return x != 0; }
static bool inside_unit(double x) { return x > -1 && x < 1; }

static lj_status func_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(B);
    const lji_opdef *d = e->def;
    for (int64_t i = 0; i < lji_vlen(e); i++) {
        if (d->in_domain && !d->in_domain(A[i])) {
            int64_t r = i % (e->rows ? e->rows : 1), c = i / (e->rows ? e->rows : 1);
            if (e->pat) lji_pat_entry(e->pat, i, &r, &c);
            return lji_error(ctx, LJ_ERR_DOMAIN, "%s: argument %g is %s at entry (%" PRId64 ",%" PRId64 ")",
                             d->name, A[i], d->domain, r + 1, c + 1);
        }
        out[i] = d->f(A[i]);
    }
    return LJ_OK;
}

/* A derivative's label: the template tmpl with the operand's label l for
 * each '@', without l's own brackets inside a call's ("exp(A·x)", not
 * "exp((A·x))"). For a scalar operand, scalar operations for elementwise
 * ones: "1./@" → "1/det(X)", "1./(1 + (@).^2)" → "1/(1 + s^2)",
 * "σ(@) ∘ (1 − σ(@))" → "σ(s)·(1 − σ(s))". */
static char *expand_dlabel(lji_dctx *d, const char *tmpl, const char *l, bool scalar)
{
    bool wrapped = lji_label_is_wrapped(l), atomic = !wrapped && lji_label_is_atomic(l);
    const char *inner = wrapped ? l + 1 : l;
    size_t ni = strlen(l) - (wrapped ? 2 : 0);
    static const char hadamard[] = " ∘ ";
    lji_buf b;
    lji_buf_init(&b, d->ctx);
    for (const char *s = tmpl; *s; s++) {
        bool grouping = *s == '(' && (s == tmpl || s[-1] == ' ' || s[-1] == '('); /* not a call's */
        if (grouping && s[1] == '@' && s[2] == ')' && atomic) { /* "(@).^2" → "x.^2", "s^2" */
            lji_buf_puts(&b, l);
            s += 2;
        } else if (*s == '@') {
            bool term = s - tmpl >= 2 && !strncmp(s - 2, "+ ", 2) && s[1] == ')' && wrapped &&
                        lji_label_is_atomic_n(inner, ni); /* 1 + x.^2, but 1 + (1 + x.^2) */
            /* 1./x.^2, not 1./(x.^2): a power needs no brackets after ./ */
            bool recip = s - tmpl >= 2 && !strncmp(s - 2, "./", 2) && !s[1] && wrapped && lji_label_is_atomic_n(inner, ni);
            if (s > tmpl && ((s[-1] == '(' && s[1] == ')') || s[-1] == '[' || term || recip)) /* inside "f(…)", "[… > 0]", "(1 + …)" */
                lji_buf_putn(&b, inner, ni);
            else
                lji_buf_puts(&b, l);
        } else if (scalar && s[0] == '.' && (s[1] == '/' || s[1] == '^')) { /* "./" → "/", ".^" → "^" */
        } else if (scalar && !strncmp(s, hadamard, sizeof hadamard - 1)) {
            lji_buf_puts(&b, "·");
            s += sizeof hadamard - 2;
        } else
            lji_buf_putn(&b, s, 1);
    }
    return lji_buf_finish(&b, "jacobian");
}

static char *scalar_dlabel(lji_dctx *d, const char *tmpl, const lj_expr *a)
{
    char *l = lji_d_label(d, a), *r = l ? expand_dlabel(d, tmpl, l, true) : NULL;
    free(l);
    return r;
}

/* Diag(f'(vec A)), f'(a) for a scalar a; the zero operator for a
 * function whose derivative is 0 */
static lj_op *func_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    const lji_opdef *f = e->def;
    int64_t mn = lji_d_len(d, e);
    if (f->df == d_zero) return lj_op_zero(d->ctx, mn, mn);
    const double *A = lji_d_val_recorded(d, e->a);
    if (!A) return NULL;
    for (int64_t i = 0; i < mn; i++)
        if ((f->in_domain && !f->in_domain(A[i])) || (f->diff_at && !f->diff_at(A[i]))) {
            lji_error(d->ctx, LJ_ERR_DOMAIN, "%s: not differentiable at %g (entry %" PRId64 ")", f->name,
                      A[i], i + 1);
            return NULL;
        }
    if (mn == 1 && !e->a->pat && !d->raw) { /* f'(a) for a scalar a: a symbol, not Diag(f'(vec a)) */
        /* a number in front, "1./(2·sqrt(@))", stays a number: ½ times
         * the symbol 1/sqrt(a), to fold with the others */
        char tmpl[64];
        double k = 1.0;
        const char *t = f->dpre, *dot = "·";
        char *end = NULL;
        if (!strncmp(t, "1./(", 4) && (k = strtod(t + 4, &end)) > 0 && !strncmp(end, dot, strlen(dot)) &&
            strlen(t) < sizeof tmpl) {
            const char *rest = end + strlen(dot);
            snprintf(tmpl, sizeof tmpl, "1./%.*s", (int)(strlen(rest) - 1), rest); /* its ')' dropped */
            t = tmpl;
        } else
            k = 1.0;
        char *l = scalar_dlabel(d, t, e->a);
        lj_op *I = l ? lj_op_identity(d->ctx, 1) : NULL;
        lj_op *r = I ? lji_scale_sym(d->ctx, k * f->df(A[0]), l, I) : NULL;
        if (!l) lji_nomem(d->ctx, "jacobian");
        lji_tape_break(d->ctx, "a scalar function's derivative as a symbol");
        lj_op_free(&I);
        free(l);
        return k == 1.0 ? r : lji_d_scaled(d->ctx, 1.0 / k, r);
    }
    double *g = lji_malloc(d->ctx, (size_t)(mn ? mn : 1) * sizeof *g);
    char *v = lji_d_vec_label(d, e->a, "", "");
    lj_op *r = NULL;
    if (g && v) {
        for (int64_t i = 0; i < mn; i++) g[i] = f->df(A[i]);
        char *l = expand_dlabel(d, f->dpre, v, false); /* dpre with "vec A" for each '@' */
        if (l) r = lj_op_diag(d->ctx, mn, g, l);
        free(l);
        if (e->a->pat || d->raw) lji_tape_break(d->ctx, "sparse values");
        else lji_d_record_func(d, r, e->a, f->df, f->in_domain, f->diff_at);
    } else
        lji_nomem(d->ctx, "jacobian");
    free(g);
    free(v);
    return r;
}

/* ---- adjoints: G ∘ f'(A), f'(A) written with the functions themselves ---- */

/* f(a), a consumed */
static lj_expr *fn(lj_context *ctx, lj_func f, lj_expr *a)
{
    lj_expr *r = a ? lj_expr_func(ctx, f, a) : NULL;
    lj_expr_free(&a);
    return r;
}

/* 1 ± a (a consumed) */
static lj_expr *one_pm(lj_context *ctx, lj_expr *a, bool plus)
{
    lj_expr *one = a ? lj_expr_scalar(ctx, 1.0) : NULL;
    lj_expr *r = one ? (plus ? lj_expr_add(ctx, one, a) : lj_expr_sub(ctx, one, a)) : NULL;
    lj_expr_free(&one);
    lj_expr_free(&a);
    return r;
}

static lj_expr *sq(lj_context *ctx, lj_expr *a) { return lj_expr_pow(ctx, a, 2.0); }

static lj_expr *take1(lj_expr *made, lj_expr *consumed)
{
    lj_expr_free(&consumed);
    return made;
}

#define DX(nm) static lj_expr *nm(lj_context *ctx, lj_expr *a, lj_expr *e, double *scale, bool *divide)
#define DX_UNUSED LJI_UNUSED(ctx); LJI_UNUSED(a); LJI_UNUSED(e); LJI_UNUSED(scale); LJI_UNUSED(divide)
DX(dx_exp) { DX_UNUSED; return lj_expr_retain(e); }                       /* exp(A) */
DX(dx_log) { DX_UNUSED; *divide = true; return lj_expr_retain(a); }       /* ⊘ A */
DX(dx_sin) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_COS, a); }
DX(dx_cos) { DX_UNUSED; *scale = -1; return lj_expr_func(ctx, LJ_FN_SIN, a); }
DX(dx_tanh) { DX_UNUSED; return one_pm(ctx, sq(ctx, e), false); }        /* 1 − tanh(A).^2 */
DX(dx_sqrt) { DX_UNUSED; *scale = 0.5; *divide = true; return lj_expr_retain(e); }
DX(dx_abs) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_SIGN, a); }
DX(dx_zero) { DX_UNUSED; return NULL; }
DX(dx_relu) { DX_UNUSED; return lji_expr_unary(ctx, &lji_op_step, a); }
DX(dx_tan) { DX_UNUSED; return one_pm(ctx, sq(ctx, e), true); }         /* 1 + tan(A).^2 */
DX(dx_asin) { DX_UNUSED; *divide = true; return fn(ctx, LJ_FN_SQRT, one_pm(ctx, sq(ctx, a), false)); }
DX(dx_acos) { DX_UNUSED; *scale = -1; *divide = true; return fn(ctx, LJ_FN_SQRT, one_pm(ctx, sq(ctx, a), false)); }
DX(dx_atan) { DX_UNUSED; *divide = true; return one_pm(ctx, sq(ctx, a), true); }
DX(dx_sinh) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_COSH, a); }
DX(dx_cosh) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_SINH, a); }
DX(dx_sigmoid) /* σ(A) ∘ (1 − σ(A)) */
{
    DX_UNUSED;
    lj_expr *r = one_pm(ctx, lj_expr_retain(e), false);
    return r ? take1(lj_expr_hadamard(ctx, e, r), r) : NULL;
}
DX(dx_softplus) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_SIGMOID, a); }
DX(dx_log1p) { DX_UNUSED; *divide = true; return one_pm(ctx, lj_expr_retain(a), true); }
DX(dx_expm1) { DX_UNUSED; return lj_expr_func(ctx, LJ_FN_EXP, a); }

static void func_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(which);
    double scale = 1;
    bool divide = false;
    lj_status before = g->ctx->status;
    lj_expr *D = e->def->dexpr(g->ctx, e->a, (lj_expr *)e, &scale, &divide);
    if (!D) {
        if (g->ctx->status != before || e->def->dexpr != dx_zero) g->failed = true;
        return;
    }
    lji_poly_hadamard(g, out, scale, G, D, divide);
    lj_expr_free(&D);
}

/* One entry: the label template writes '@' for "vec A". */
#define FUNC(nm, F, DF, INDOM, OUTSIDE, DIFFAT, LABEL, DXF)                                       \
    { .name = nm, .arity = 1, .function = true, .level = 6, .shape = lji_shape_same,               \
      .eval = func_eval, .local = func_local, .reads = { LJI_READ_OPERAND, 0 },                    \
      .can_fail = INDOM != NULL, .f = F, .df = DF, .in_domain = INDOM, .domain = OUTSIDE,           \
      .diff_at = DIFFAT, .dpre = LABEL, .sparse = LJI_SP_ZERO, .adjoint = func_adjoint, .dexpr = DXF }

static const lji_opdef fn_exp = FUNC("exp", exp, d_exp, NULL, NULL, NULL, "exp(@)", dx_exp);
static const lji_opdef fn_log = FUNC("log", log, d_log, positive, "not positive", NULL, "1./@", dx_log);
static const lji_opdef fn_sin = FUNC("sin", sin, d_sin, NULL, NULL, NULL, "cos(@)", dx_sin);
static const lji_opdef fn_cos = FUNC("cos", cos, d_cos, NULL, NULL, NULL, "−sin(@)", dx_cos);
static const lji_opdef fn_tanh = FUNC("tanh", tanh, d_tanh, NULL, NULL, NULL, "1 − tanh²(@)", dx_tanh);
static const lji_opdef fn_sqrt = FUNC("sqrt", sqrt, d_sqrt, nonnegative, "negative", nonzero,
                                      "1./(2·sqrt(@))", dx_sqrt);
static const lji_opdef fn_abs = FUNC("abs", fabs, f_sign, NULL, NULL, NULL, "sign(@)", dx_abs);
static const lji_opdef fn_sign = FUNC("sign", f_sign, d_zero, NULL, NULL, NULL, "0", dx_zero);
static const lji_opdef fn_relu = FUNC("relu", f_relu, d_relu, NULL, NULL, NULL, "[@ > 0]", dx_relu);
static const lji_opdef fn_tan = FUNC("tan", tan, d_tan, NULL, NULL, NULL, "1 + tan²(@)", dx_tan);
static const lji_opdef fn_asin = FUNC("asin", asin, d_asin, unit_interval, "outside [-1, 1]", inside_unit,
                                      "1./sqrt(1 − (@).^2)", dx_asin);
static const lji_opdef fn_acos = FUNC("acos", acos, d_acos, unit_interval, "outside [-1, 1]", inside_unit,
                                      "−1./sqrt(1 − (@).^2)", dx_acos);
static const lji_opdef fn_atan = FUNC("atan", atan, d_atan, NULL, NULL, NULL, "1./(1 + (@).^2)", dx_atan);
static const lji_opdef fn_sinh = FUNC("sinh", sinh, cosh, NULL, NULL, NULL, "cosh(@)", dx_sinh);
static const lji_opdef fn_cosh = FUNC("cosh", cosh, sinh, NULL, NULL, NULL, "sinh(@)", dx_cosh);
static const lji_opdef fn_sigmoid = FUNC("sigmoid", f_sigmoid, d_sigmoid, NULL, NULL, NULL,
                                         "σ(@) ∘ (1 − σ(@))", dx_sigmoid);
static const lji_opdef fn_softplus = FUNC("softplus", f_softplus, f_sigmoid, NULL, NULL, NULL, "σ(@)", dx_softplus);
static const lji_opdef fn_log1p = FUNC("log1p", log1p, d_log1p, above_minus_one, "not above -1", NULL,
                                       "1./(1 + @)", dx_log1p);
static const lji_opdef fn_expm1 = FUNC("expm1", expm1, d_exp, NULL, NULL, NULL, "exp(@)", dx_expm1);

/* [A > 0] (relu'), inside gradient expressions; its derivative is 0 */
const lji_opdef lji_op_step = FUNC("step", d_relu, d_zero, NULL, NULL, NULL, "0", dx_zero);

/* in the order of lj_func */
const lji_opdef *const lji_func_defs[] = {
    &fn_exp, &fn_log, &fn_sin, &fn_cos, &fn_tanh, &fn_sqrt, &fn_abs, &fn_sign, &fn_relu, &fn_tan,
    &fn_asin, &fn_acos, &fn_atan, &fn_sinh, &fn_cosh, &fn_sigmoid, &fn_softplus, &fn_log1p, &fn_expm1,
};
const int lji_n_funcs = (int)(sizeof lji_func_defs / sizeof lji_func_defs[0]);

const lji_opdef *const lji_language_functions[] = {
    &lji_op_trace, &lji_op_sum, &fn_exp, &fn_log, &fn_sin, &fn_cos, &fn_tanh, &fn_sqrt, &fn_abs,
    &fn_sign, &fn_relu, &fn_tan, &fn_asin, &fn_acos, &fn_atan, &fn_sinh, &fn_cosh, &fn_sigmoid,
    &fn_softplus, &fn_log1p, &fn_expm1, &lji_op_inv, &lji_op_det, &lji_op_logdet, &lji_op_kron,
    &lji_op_diag, &lji_op_vec, &lji_op_norm1, &lji_op_norm2, &lji_op_max, &lji_op_min, &lji_op_eye,
    &lji_op_ones, &lji_op_zeros, NULL,
};
