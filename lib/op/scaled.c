/* Scaled αA. */
#include "config.h"
#include "op.h"
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

static lj_status scaled_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                              const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[0], trans, k, alpha * J->alpha, X, ldx, beta, Y, ldy);
}

static cholmod_sparse *scaled_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_to_sparse(ctx, J->child[0]);
    if (!s) return NULL;
    int64_t nz = ((int64_t *)s->p)[s->ncol];
    double *x = s->x;
    for (int64_t q = 0; q < nz; q++) x[q] *= J->alpha;
    return s;
}

static int64_t child_nnz(const lj_op *J, bool *exact)
{
    return lji_nnz(J->child[0], exact);
}

static void scaled_cost(const lj_op *J, double *flops, double *bytes)
{
    lji_cost(J->child[0], flops, bytes);
}

static bool coef_is_factor(const char *s);

static void scaled_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (J->label && J->rows == 1 && lji_is_identity(J->child[0])) { /* s·I_1 is the scalar s */
        bool wrap = where != LJI_AT_TOP && where != LJI_AT_SUM && !coef_is_factor(J->label);
        lji_put_open(b, wrap);
        lji_put_label(b, J->label, fmt);
        lji_put_close(b, wrap);
        return;
    }
    bool paren = where == LJI_AT_KRON || where == LJI_AT_TIGHT;
    lji_put_open(b, paren);
    if (J->label) { /* a symbol's value: the symbol */
        lji_put_coef_label(b, J->label, fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
    } else if (J->alpha == -1.0)
        lji_buf_puts(b, lji_sym_minus(fmt));
    else {
        lji_put_number(b, J->alpha, fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
    }
    lji_print(b, J->child[0], fmt, LJI_AT_COMPOSE);
    lji_put_close(b, paren);
}

static bool scaled_equal(const lj_op *a, const lj_op *b)
{
    /* s·A and t·A are different terms even while s and t are equal */
    return a->alpha == b->alpha && (!a->label) == (!b->label) && (!a->label || !strcmp(a->label, b->label));
}

static lj_status scaled_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lj_status st = lji_to_dense(ctx, J->child[0], a, ld);
    for (int64_t j = 0; st == LJ_OK && j < J->cols; j++)
        for (int64_t i = 0; i < J->rows; i++) a[i + j * ld] *= J->alpha;
    return st;
}

static lj_op *scaled_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    lj_op *c = lji_rows(ctx, J->child[0], r0, r1), *r = c ? lji_scale_sym(ctx, J->alpha, J->label, c) : NULL;
    lj_op_free(&c);
    return r;
}

const lji_kind lji_kind_scaled = {
    .id = LJ_OP_SCALED,
    .name = "scaled",
    .apply = scaled_apply,
    .to_sparse = scaled_to_sparse,
    .rows = scaled_rows,
    .to_dense = scaled_to_dense,
    .nnz = child_nnz,
    .cost = scaled_cost,
    .print = scaled_print,
    .equal = scaled_equal,
};

/* ---- coefficients that are symbols ----------------------------------------- */

/* a coefficient's label reads as one factor before "·": a product of
 * symbols does ("2·s"), a sum or a quotient does not */
static bool coef_is_factor(const char *s)
{
    int depth = 0;
    for (; *s; s++) {
        if (*s == '(' || *s == '{' || *s == '[') depth++;
        else if (*s == ')' || *s == '}' || *s == ']') depth--;
        else if (depth == 0 && (strchr(" +-*/", *s) || !strncmp(s, "−", strlen("−")))) return false;
    }
    return true;
}

void lji_put_coef_label(lji_buf *b, const char *label, lj_print_format fmt)
{
    bool wrap = !coef_is_factor(label);
    lji_put_open(b, wrap);
    lji_put_label(b, label, fmt);
    lji_put_close(b, wrap);
}

/* Symbols are labels; a product of them is multiplied out where the labels
 * say how: s·(1/s) is 1, s·s is s^2, s^2·s is s^3 and s^2·(1/s) is s,
 * each only where the values agree (two different values of one label
 * stay apart). */

/* base, bracketed where it is no single factor or has a power of its own */
static bool sym_bracketed(const char *base, size_t n)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = base[i];
        if (ch == '(' || ch == '{' || ch == '[') depth++;
        else if (ch == ')' || ch == '}' || ch == ']') depth--;
        else if (depth == 0 && (strchr(" +-*/^'", ch) || (unsigned char)ch >= 0x80)) return true;
    }
    return false;
}

/* k when p is base^k (k = 1: base itself; "(base)^k" where base is
 * bracketed), else 0 */
static long sym_power(const char *p, const char *base, size_t nb)
{
    if (strlen(p) == nb && !strncmp(p, base, nb)) return 1;
    bool br = sym_bracketed(base, nb);
    if (br ? (p[0] != '(' || strncmp(p + 1, base, nb) || p[nb + 1] != ')') : strncmp(p, base, nb)) return 0;
    const char *e = p + nb + (br ? 2 : 0);
    if (e[0] != '^' || !isdigit((unsigned char)e[1])) return 0;
    char *end;
    long k = strtol(e + 1, &end, 10);
    return *end || k < 2 || k > 1000 ? 0 : k;
}

/* the base of a reciprocal "1/base" or "1/(base)", its length in *nb; else NULL */
static const char *sym_reciprocal_of(const char *t, size_t *nb)
{
    if (strncmp(t, "1/", 2)) return NULL;
    size_t n = strlen(t + 2);
    if (n > 2 && t[2] == '(' && t[n + 1] == ')' && lji_label_is_wrapped(t + 2)) {
        *nb = n - 2;
        return t + 3;
    }
    *nb = n;
    return t + 2;
}

/* base^k into a new string */
static char *sym_pow(lj_context *ctx, const char *base, size_t nb, long k)
{
    lji_buf b;
    lji_buf_init(&b, ctx);
    bool br = sym_bracketed(base, nb);
    lji_buf_printf(&b, br ? "(%.*s)" : "%.*s", (int)nb, base);
    if (k != 1) lji_buf_printf(&b, "^%ld", k);
    return lji_buf_finish(&b, "scale");
}

static bool sym_agrees(double x, double want)
{
    return fabs(x - want) <= 1e-12 * fabs(want);
}

/* P·S multiplied out where the labels say how (P with value pa, S with
 * sa): true, *out the product's label (NULL for 1, or out of memory with
 * *failed); else false */
static bool sym_times(lj_context *ctx, const char *P, double pa, const char *S, double sa, char **out, bool *failed)
{
    *out = NULL;
    size_t np, ns;
    const char *bp = sym_reciprocal_of(P, &np), *bs = sym_reciprocal_of(S, &ns);
    if (bp && bs && pa != 0 && sa != 0) { /* (1/u)·(1/v) = 1/(u·v), where u·v multiplies out */
        char *u = lji_strndup(ctx, bp, np), *v = lji_strndup(ctx, bs, ns), *uv = NULL;
        bool done = u && v && sym_times(ctx, u, 1.0 / pa, v, 1.0 / sa, &uv, failed) && uv;
        if (done) {
            lji_buf b;
            lji_buf_init(&b, ctx);
            lji_buf_printf(&b, lji_label_is_atomic(uv) ? "1/%s" : "1/(%s)", uv); /* 1/s^3 */
            if (!(*out = lji_buf_finish(&b, "scale"))) *failed = true;
        }
        free(u);
        free(v);
        free(uv);
        if (!u || !v) *failed = true;
        if (done || !u || !v) return true;
    }
    for (int turn = 0; turn < 2; turn++) {
        const char *p = turn ? S : P, *s = turn ? P : S;
        double pv = turn ? sa : pa, sv = turn ? pa : sa;
        size_t nb;
        const char *base = sym_reciprocal_of(s, &nb);
        long k;
        if (base && (k = sym_power(p, base, nb)) > 0 && sym_agrees(pv * pow(sv, (double)k), 1.0)) {
            if (k > 1 && !(*out = sym_pow(ctx, base, nb, k - 1))) *failed = true; /* base^k·(1/base) */
            return true;
        }
        if ((k = sym_power(p, s, strlen(s))) > 0 && sym_agrees(pv, pow(sv, (double)k))) { /* s^k·s */
            if (!(*out = sym_pow(ctx, s, strlen(s), k + 1))) *failed = true;
            return true;
        }
    }
    return false;
}

/* c times the value alpha of the symbol sym */
static void coef_times_sym(lj_context *ctx, lji_coef *c, double alpha, const char *sym)
{
    char *m;
    if (c->sym && sym_times(ctx, c->sym, c->salpha, sym, alpha, &m, &c->failed)) {
        free(c->sym);
        c->sym = m;
        c->salpha = m ? c->salpha * alpha : 1.0;
        return;
    }
    c->salpha *= alpha;
    if (!c->sym) {
        if (!(c->sym = lji_strdup(ctx, sym))) c->failed = true;
        return;
    }
    lji_buf b;
    lji_buf_init(&b, ctx);
    lji_buf_printf(&b, coef_is_factor(c->sym) ? "%s·" : "(%s)·", c->sym);
    lji_buf_printf(&b, coef_is_factor(sym) ? "%s" : "(%s)", sym);
    free(c->sym);
    if (!(c->sym = lji_buf_finish(&b, "scale"))) c->failed = true;
}

void lji_coef_take(lj_context *ctx, lji_coef *c, const lj_op *s)
{
    if (s->label) coef_times_sym(ctx, c, s->alpha, s->label);
    else c->num *= s->alpha;
}

lj_op *lji_coef_apply(lj_context *ctx, lji_coef *c, const lj_op *a)
{
    lj_op *r = NULL;
    if (c->failed) lji_nomem(ctx, "scale");
    else if (!c->sym) r = lj_op_scale(ctx, c->num, a);
    else {
        lj_op *t = lji_scale_sym(ctx, c->salpha, c->sym, a);
        r = t ? lj_op_scale(ctx, c->num, t) : NULL;
        lj_op_free(&t);
    }
    free(c->sym);
    c->sym = NULL;
    return r;
}

lj_op *lji_scale_sym(lj_context *ctx, double alpha, const char *sym, const lj_op *a)
{
    if (!sym) return lj_op_scale(ctx, alpha, a);
    if (lji_check_args(ctx, "scale", 1, &a) != LJ_OK) return NULL;
    if (lji_is_zero(a)) return lj_op_zero(ctx, a->rows, a->cols);
    if (lji_is(a, &lji_kind_scaled)) { /* s·(c·A) = c·(s·A), s·(t·A) = (s·t)·A */
        lji_coef c = { .num = 1.0, .salpha = 1.0 };
        coef_times_sym(ctx, &c, alpha, sym);
        lji_coef_take(ctx, &c, a);
        return lji_coef_apply(ctx, &c, a->child[0]);
    }
    /* a symbol's value keeps its node even when it is 1 or 0 */
    lj_op *J = lji_op_new(ctx, &lji_kind_scaled, a->rows, a->cols, 1, "scale");
    if (!J) return NULL;
    J->alpha = alpha;
    if (!(J->label = lji_strdup(ctx, sym))) {
        lji_nomem(ctx, "scale");
        lj_op_free(&J);
        return NULL;
    }
    J->child[0] = lji_take_ref(ctx, a);
    lji_op_seal(J);
    return J;
}

lj_op *lj_op_scale(lj_context *ctx, double alpha, const lj_op *a)
{
    if (lji_check_args(ctx, "scale", 1, &a) != LJ_OK) return NULL;
    if (alpha == 1.0) return lji_take_ref(ctx, a);
    if (alpha == 0.0 || lji_is_zero(a)) return lj_op_zero(ctx, a->rows, a->cols);
    /* a number times a symbol's scaling stays outside it (c·(s·A)), so that
     * s·A − s·A are like terms that cancel */
    if (lji_is(a, &lji_kind_scaled) && !a->label) return lj_op_scale(ctx, alpha * a->alpha, a->child[0]);
    lj_op *J = lji_op_new(ctx, &lji_kind_scaled, a->rows, a->cols, 1, "scale");
    if (!J) return NULL;
    J->alpha = alpha;
    J->child[0] = lji_take_ref(ctx, a);
    lji_op_seal(J);
    return J;
}
