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

/* the first Diag among P's factors (P itself, or a factor of its
 * products) that lji_diag_print_negated writes; NULL when none */
static const lj_op *negatable_diag(const lj_op *P, int depth)
{
    if (lji_is(P, &lji_kind_diag)) return P->label ? P : NULL;
    if (!lji_is(P, &lji_kind_compose) || depth > 8) return NULL;
    for (int i = 0; i < P->nchild; i++) {
        const lj_op *d = negatable_diag(P->child[i], depth + 1);
        if (d) return d;
    }
    return NULL;
}

/* where `lead` stands in `whole` as a factor of its top-level product
 * (depth 0, between "·" or the ends), or NULL */
static const char *top_factor(const char *whole, const char *lead, const char *dot)
{
    size_t nl = strlen(lead), nd = strlen(dot);
    int depth = 0;
    for (const char *p = whole; *p; p++) {
        if (depth == 0 && !strncmp(p, lead, nl) && (p == whole || (p - whole >= (ptrdiff_t)nd && !strncmp(p - nd, dot, nd))) &&
            (p[nl] == '\0' || !strncmp(p + nl, dot, nd)))
            return p;
        if (*p == '(' || *p == '{') depth++;
        else if (*p == ')' || *p == '}') depth--;
    }
    return NULL;
}

char *lji_print_negated(const lji_buf *like, const lj_op *P, lj_print_format fmt, lji_place where, bool *failed)
{
    lj_context *ctx = like->ctx;
    *failed = false;
    const lj_op *D = negatable_diag(P, 0);
    if (!D) return NULL;
    lji_buf whole, lead, neg; /* a cut print is not compared */
    lji_buf_init_room(&whole, like, 0);
    lji_buf_init_room(&lead, like, 0);
    lji_buf_init_room(&neg, like, 0);
    char *r = NULL;
    if (lji_diag_print_negated(&neg, D, fmt)) {
        lji_print(&whole, P, fmt, where);
        lji_print(&lead, D, fmt, LJI_AT_COMPOSE);
        *failed = whole.failed || lead.failed || neg.failed;
        bool cut = whole.truncated || lead.truncated || neg.truncated;
        const char *at = *failed || cut || lji_label_is_sum(whole.s) ? NULL : top_factor(whole.s, lead.s, lji_sym_dot(fmt));
        if (at) {
            lji_buf out;
            lji_buf_init(&out, ctx);
            lji_buf_putn(&out, whole.s, (size_t)(at - whole.s));
            lji_buf_puts(&out, neg.s);
            lji_buf_puts(&out, at + lead.len);
            *failed = out.failed;
            r = out.failed ? (lji_buf_discard(&out), NULL) : out.s;
        }
    }
    lji_buf_discard(&whole);
    lji_buf_discard(&lead);
    lji_buf_discard(&neg);
    return r;
}

static void scaled_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    if (J->label && J->rows == 1 && lji_is_identity(J->child[0])) { /* s·I_1 is the scalar s */
        bool wrap = where != LJI_AT_TOP && where != LJI_AT_SUM && !coef_is_factor(J->label);
        lji_put_open(b, wrap);
        lji_put_label(b, J->label, fmt);
        lji_put_close(b, wrap);
        return;
    }
    bool paren = where == LJI_AT_KRON || where == LJI_AT_TIGHT, failed;
    /* a whole number in a Diag's label meets the scalar: 4·Diag(3·x.^2) is
     * 12·Diag(x.^2); −Diag(2·x) stays */
    lji_buf t;
    lji_buf_init_room(&t, b, 0);
    double k;
    if (!J->label && fabs(J->alpha) != 1.0 && lji_diag_print_times(&t, J->child[0], fmt, &k)) {
        b->failed |= t.failed;
        lji_put_open(b, paren);
        double c = J->alpha * k;
        if (c == -1.0) lji_buf_puts(b, lji_sym_minus(fmt));
        else if (c != 1.0) {
            lji_put_number(b, c, fmt);
            lji_buf_puts(b, lji_sym_dot(fmt));
        }
        if (t.s) lji_buf_puts(b, t.s);
        lji_put_close(b, paren);
        lji_buf_discard(&t);
        return;
    }
    lji_buf_discard(&t);
    /* a Diag's sign in front: −Diag(−2·x)·A is Diag(2·x)·A, 2·Diag(−x) −2·Diag(x) */
    char *neg = !J->label ? lji_print_negated(b, J->child[0], fmt, LJI_AT_COMPOSE, &failed) : NULL;
    if (neg || (!J->label && failed)) {
        b->failed |= failed;
        lji_put_open(b, paren);
        if (J->alpha > 0) lji_buf_puts(b, lji_sym_minus(fmt));
        if (fabs(J->alpha) != 1.0) {
            lji_put_number(b, fabs(J->alpha), fmt);
            lji_buf_puts(b, lji_sym_dot(fmt));
        }
        if (neg) lji_buf_puts(b, neg);
        lji_put_close(b, paren);
        free(neg);
        return;
    }
    /* the child printed once: its leading number meets the scalar
     * (3·(2·(vec X)^T) is 6·(vec X)^T, s·(2·…) is 2·s·…), and −1 times a
     * term that starts with a minus sign drops both (−(−2·(vec X)^T) is
     * 2·(vec X)^T) */
    lji_buf c;
    lji_buf_init_room(&c, b, 0);
    lji_print(&c, J->child[0], fmt, LJI_AT_COMPOSE);
    b->failed |= c.failed;
    bool whole = c.s && !c.failed && !c.truncated;
    double lead = 1.0;
    size_t m = 0;
    lji_put_open(b, paren);
    if (J->label) { /* a symbol's value: the symbol, after a number the child leads with */
        if (whole) m = lji_leading_number(c.s, fmt, &lead);
        /* −s·A and 2·s·A, not (−s)·A and (2·s)·A: the label's minus sign
         * goes with the number, its brackets where no sign is inside */
        const char *l = J->label;
        size_t nl = strlen(l), w = lji_label_is_wrapped(l), lm = lji_label_minus_len(l + w);
        char inner[64];
        if ((lm || w) && nl - 2 * w - lm < sizeof inner) {
            memcpy(inner, l + w + lm, nl - 2 * w - lm);
            inner[nl - 2 * w - lm] = '\0';
            double nk; /* a number in front, 2·s */
            if (lji_label_is_atomic(lji_label_number(inner, &nk))) { /* one symbol: −s, 2·s, −(s + 1) */
                if (lm) lead = -lead;
                l = inner;
            }
        }
        lji_put_signed_coef(b, lead, true, fmt);
        lji_put_coef_label(b, l, fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
    } else if (J->alpha == -1.0) {
        m = whole ? lji_label_negated_term(c.s) : 0;
        if (!m) lji_buf_puts(b, lji_sym_minus(fmt));
    } else {
        if (whole) m = lji_leading_number(c.s, fmt, &lead);
        lji_put_signed_coef(b, J->alpha * lead, true, fmt);
    }
    if (c.s && !c.failed) lji_buf_puts(b, c.s + m);
    if (c.truncated) b->truncated = true;
    lji_buf_discard(&c);
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
 * say how: each reads as core^k (k a number, negative for "1/…"), and
 * two of one core multiply to core^(k1 + k2): s·(1/s) is 1, s·s is s^2,
 * s^2·(1/s) is s, (1/s^2)·(1/s) is 1/s^3 and ((u)^2)^2·u is u^5;
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

/* t[0, n) is one bracket pair around the rest: "(a)·(b)" is not */
static bool sym_wrapped(const char *t, size_t n)
{
    if (n < 2 || t[0] != '(' || t[n - 1] != ')') return false;
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] == '(') depth++;
        else if (t[i] == ')' && --depth == 0) return i == n - 1;
    }
    return false;
}

/* t[0, n) ends in ^j or ^(−j), j a number of at most 8 characters (2,
 * 1.5): true, with the length before the ^ in *cn and the exponent
 * (negative for ^(−j), as labels write one) in *j */
static bool sym_exponent(const char *t, size_t n, size_t *cn, double *j)
{
    static const char neg[] = "^(−";
    bool minus = n > 0 && t[n - 1] == ')';
    size_t last = minus ? n - 1 : n, e = last;
    while (e > 0 && last - e < 8 && (isdigit((unsigned char)t[e - 1]) || t[e - 1] == '.')) e--;
    if (e == last || !isdigit((unsigned char)t[e])) return false;
    size_t mark = minus ? sizeof neg - 1 : 1;
    if (e < mark + 1 || strncmp(t + e - mark, minus ? neg : "^", mark)) return false;
    char num[16], *end;
    memcpy(num, t + e, last - e);
    num[last - e] = '\0';
    double v = strtod(num, &end);
    if (*end || !(v > 0)) return false;
    *cn = e - mark;
    *j = minus ? -v : v;
    return true;
}

/* t[0, n) as core^k: "1/B" is B's with −k, "(B)" is B's, and "C^j" or
 * "C^(−j)" (C bracketed or a single factor) is C's times j or −j;
 * anything else is itself to the power 1 */
static void sym_parse(const char *t, size_t n, const char **core, size_t *nc, double *k)
{
    double mult = 1, j;
    size_t cn;
    for (;;) {
        if (n > 2 && !strncmp(t, "1/", 2)) {
            t += 2, n -= 2, mult = -mult;
            continue;
        }
        if (sym_wrapped(t, n)) {
            t++, n -= 2;
            continue;
        }
        if (sym_exponent(t, n, &cn, &j) && fabs(mult * j) <= 1e4 && (sym_wrapped(t, cn) || !sym_bracketed(t, cn))) {
            mult *= j, n = cn;
            continue;
        }
        break;
    }
    *core = t, *nc = n, *k = mult;
}

/* core^k, k ≠ 0, into a new string: s, s^2, (u·v)^1.5, 1/s, 1/(u·v)^3 */
static char *sym_pow(lj_context *ctx, const char *core, size_t nc, double k)
{
    lji_buf b;
    lji_buf_init(&b, ctx);
    if (k < 0) lji_buf_puts(&b, "1/");
    bool br = sym_bracketed(core, nc);
    lji_buf_printf(&b, br ? "(%.*s)" : "%.*s", (int)nc, core);
    if (fabs(k) != 1) {
        char q[64];
        lji_format_number(q, sizeof q, fabs(k), LJ_PRINT_UNICODE);
        lji_buf_printf(&b, "^%s", q);
    }
    return lji_buf_finish(&b, "scale");
}

static bool sym_agrees(double x, double want)
{
    return fabs(x - want) <= 1e-12 * fabs(want);
}

bool lji_sym_same_core(const char *p, const char *q)
{
    const char *cp, *cq;
    size_t np, nq;
    double kp, kq;
    sym_parse(p, strlen(p), &cp, &np, &kp);
    sym_parse(q, strlen(q), &cq, &nq, &kq);
    return np == nq && !strncmp(cp, cq, np);
}

/* P·S multiplied out where the labels say how (P with value pa, S with
 * sa): true, *out the product's label (NULL for 1, or out of memory with
 * *failed); else false */
static bool sym_times(lj_context *ctx, const char *P, double pa, const char *S, double sa, char **out, bool *failed)
{
    *out = NULL;
    const char *cp, *cs;
    size_t np, ns;
    double kp, ks;
    sym_parse(P, strlen(P), &cp, &np, &kp);
    sym_parse(S, strlen(S), &cs, &ns, &ks);
    /* one core, and values that agree with it: pa = v^kp, sa = v^ks */
    if (np != ns || strncmp(cp, cs, np) || !sym_agrees(pow(pa, ks), pow(sa, kp))) return false;
    double k = kp + ks;
    if (fabs(k) < 1e-12) return true;
    if (!(*out = sym_pow(ctx, cp, np, k))) *failed = true;
    return true;
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

static lj_op *scale_sym(lj_context *ctx, double alpha, const char *sym, const lj_op *a);

lj_op *lji_scale_sym(lj_context *ctx, double alpha, const char *sym, const lj_op *a)
{
    if (!sym || strncmp(sym, "1/", 2)) return scale_sym(ctx, alpha, sym, a);
    /* a reciprocal in its plain form: 1/((u)^2) is 1/u^2, 1/(1/s) is s */
    const char *c;
    size_t nc;
    double k;
    sym_parse(sym, strlen(sym), &c, &nc, &k);
    char *canon = sym_pow(ctx, c, nc, k);
    lj_op *r = canon ? scale_sym(ctx, alpha, canon, a) : NULL;
    if (!canon) lji_nomem(ctx, "scale");
    free(canon);
    return r;
}

static lj_op *scale_sym(lj_context *ctx, double alpha, const char *sym, const lj_op *a)
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
    if (lji_is(a, &lji_kind_sum) && alpha < 0 && a->nchild <= 64) { /* −(−A − B) is A + B */
        bool all = true;
        for (int i = 0; i < a->nchild && all; i++) all = a->coef[i] < 0;
        if (all) {
            double c[64];
            for (int i = 0; i < a->nchild; i++) c[i] = alpha * a->coef[i];
            return lj_op_lincomb(ctx, a->nchild, c, (const lj_op *const *)a->child);
        }
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_scaled, a->rows, a->cols, 1, "scale");
    if (!J) return NULL;
    J->alpha = alpha;
    J->child[0] = lji_take_ref(ctx, a);
    lji_op_seal(J);
    return J;
}
