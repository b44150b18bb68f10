/* The expression language (DESIGN.md): a recursive-descent parser over a
 * table of declared names, with byte positions for every error.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '.*' | './' | '/') unary)*
 *   unary   := '-' unary | power
 *   power   := postfix ('.^' unary)?
 *   postfix := primary "'"*
 *   primary := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
 *
 * As in MATLAB, a number directly followed by '.*', './' or '.^' is the
 * number and then that operator: "X.^2.*X" is (X.^2).*X.
 */
#include "config.h"
#include "../expr/expr.h"
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

struct lj_symtab {
    lj_context *ctx;
    lj_expr **e;
    int n, cap;
};

lj_symtab *lj_symtab_new(lj_context *ctx)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    lj_symtab *t = lji_calloc(ctx, 1, sizeof *t);
    if (!t) lji_nomem(ctx, "symtab");
    else t->ctx = ctx;
    return t;
}

void lj_symtab_free(lj_symtab **pt)
{
    if (!pt || !*pt) return;
    for (int i = 0; i < (*pt)->n; i++) lj_expr_free(&(*pt)->e[i]);
    free((*pt)->e);
    free(*pt);
    *pt = NULL;
}

lj_expr *lj_symtab_get(const lj_symtab *t, const char *name)
{
    if (!t || !name) return NULL;
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->e[i]->name, name) == 0) return t->e[i];
    return NULL;
}

int lj_symtab_size(const lj_symtab *t) { return t ? t->n : 0; }
lj_expr *lj_symtab_at(const lj_symtab *t, int i) { return t && i >= 0 && i < t->n ? t->e[i] : NULL; }

lj_status lj_symtab_add(lj_context *ctx, lj_symtab *t, lj_expr *leaf)
{
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!t) return lji_error(ctx, LJ_ERR_INVALID, "symtab_add: NULL table");
    if (!lji_expr_ok(leaf) || !leaf->name ||
        (leaf->op != LJI_E_VAR && leaf->op != LJI_E_CONST))
        return lji_error(ctx, LJ_ERR_INVALID, "symtab_add: not a named leaf");
    if (lj_symtab_get(t, leaf->name))
        return lji_error(ctx, LJ_ERR_NAME, "'%s' is declared twice", leaf->name);
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 8;
        lj_expr **e = lji_realloc(ctx, t->e, (size_t)cap * sizeof *e);
        if (!e) return lji_nomem(ctx, "symtab_add");
        t->e = e;
        t->cap = cap;
    }
    t->e[t->n++] = lj_expr_retain(leaf);
    return LJ_OK;
}

/* ---- parser ---------------------------------------------------------------------- */

typedef struct {
    lj_context *ctx;
    const char *s;
    size_t pos;
    const lj_symtab *t;
    int64_t errpos;
    int depth;
} parser;

#define MAX_DEPTH 200

static void skip(parser *p)
{
    while (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r')
        p->pos++;
}

static lj_expr *fail(parser *p, size_t at, lj_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static lj_expr *fail(parser *p, size_t at, lj_status code, const char *fmt, ...)
{
    if (p->errpos < 0) {
        p->errpos = (int64_t)at;
        char msg[300];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        lji_error(p->ctx, code, "%s", msg);
    }
    return NULL;
}

/* A failure from an expression constructor (shapes, overflow): keep its
 * message, record where. */
static lj_expr *checked(parser *p, size_t at, lj_expr *e)
{
    if (!e && p->errpos < 0) p->errpos = (int64_t)at;
    return e;
}

static const char *describe(const parser *p, char *buf, size_t n)
{
    char c = p->s[p->pos];
    if (!c) return "end of expression";
    if (isprint((unsigned char)c)) snprintf(buf, n, "'%c'", c);
    else snprintf(buf, n, "byte 0x%02x", (unsigned char)c);
    return buf;
}

static lj_expr *parse_expr(parser *p);
static lj_expr *parse_unary(parser *p);

static const struct { const char *name; int nargs; } functions[] = {
    { "tr", 1 }, { "sum", 1 }, { "exp", 1 }, { "log", 1 }, { "sin", 1 }, { "cos", 1 },
    { "tanh", 1 }, { "sqrt", 1 }, { "inv", 1 }, { "det", 1 }, { "logdet", 1 }, { "kron", 2 },
    { "diag", 1 }, { "vec", 1 }, { "norm2", 1 },
};

static lj_expr *apply_function(parser *p, const char *f, lj_expr **args, size_t at)
{
    lj_context *ctx = p->ctx;
    lj_expr *a = args[0];
    lj_expr *r = NULL;
    if (!strcmp(f, "tr")) r = lj_expr_trace(ctx, a);
    else if (!strcmp(f, "sum")) r = lj_expr_sum(ctx, a);
    else if (!strcmp(f, "exp")) r = lj_expr_func(ctx, LJ_FN_EXP, a);
    else if (!strcmp(f, "log")) r = lj_expr_func(ctx, LJ_FN_LOG, a);
    else if (!strcmp(f, "sin")) r = lj_expr_func(ctx, LJ_FN_SIN, a);
    else if (!strcmp(f, "cos")) r = lj_expr_func(ctx, LJ_FN_COS, a);
    else if (!strcmp(f, "tanh")) r = lj_expr_func(ctx, LJ_FN_TANH, a);
    else if (!strcmp(f, "sqrt")) r = lj_expr_func(ctx, LJ_FN_SQRT, a);
    else if (!strcmp(f, "inv")) r = lj_expr_inv(ctx, a);
    else if (!strcmp(f, "det")) r = lj_expr_det(ctx, a);
    else if (!strcmp(f, "logdet")) r = lj_expr_logdet(ctx, a);
    else if (!strcmp(f, "kron")) r = lj_expr_kron(ctx, a, args[1]);
    else if (!strcmp(f, "diag")) r = lj_expr_diag(ctx, a);
    else if (!strcmp(f, "vec")) r = lj_expr_vec(ctx, a);
    else if (!strcmp(f, "norm2")) r = lj_expr_norm2(ctx, a);
    return checked(p, at, r);
}

static lj_expr *parse_primary(parser *p)
{
    skip(p);
    size_t at = p->pos;
    const char *s = p->s;
    char buf[32];
    if (isdigit((unsigned char)s[at]) || (s[at] == '.' && isdigit((unsigned char)s[at + 1]))) {
        char *end;
        double v = strtod(s + at, &end);
        if (end == s + at || !isfinite(v)) return fail(p, at, LJ_ERR_PARSE, "parse: bad number");
        /* "2.*X": the '.' belongs to the elementwise operator, not to 2 */
        if (end[-1] == '.' && (end[0] == '*' || end[0] == '/' || end[0] == '^') && end - 1 > s + at)
            end--;
        p->pos = (size_t)(end - s);
        return checked(p, at, lj_expr_scalar(p->ctx, v));
    }
    if (isalpha((unsigned char)s[at]) || s[at] == '_') {
        size_t e = at;
        while (isalnum((unsigned char)s[e]) || s[e] == '_') e++;
        char name[128];
        if (e - at >= sizeof name) return fail(p, at, LJ_ERR_PARSE, "parse: name too long");
        memcpy(name, s + at, e - at);
        name[e - at] = '\0';
        p->pos = e;
        skip(p);
        if (s[p->pos] == '(') {
            int nargs = -1;
            for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++)
                if (!strcmp(functions[i].name, name)) nargs = functions[i].nargs;
            if (nargs < 0) return fail(p, at, LJ_ERR_PARSE, "parse: unknown function '%s'", name);
            p->pos++;
            lj_expr *args[2] = { NULL, NULL };
            int got = 0;
            bool ok = true;
            skip(p);
            if (s[p->pos] == ')') {
                ok = false;
                char m[300];
                snprintf(m, sizeof m, "parse: '%s' takes %d argument%s, got 0", name, nargs, nargs > 1 ? "s" : "");
                fail(p, p->pos, LJ_ERR_PARSE, "%s", m);
            }
            while (ok) {
                skip(p);
                size_t argat = p->pos;
                lj_expr *a = parse_expr(p);
                if (!a) {
                    ok = false;
                    break;
                }
                if (got < 2) args[got] = a;
                else lj_expr_free(&a);
                got++;
                if (got > nargs) {
                    char m[300];
                    snprintf(m, sizeof m, "parse: '%s' takes %d argument%s, got more", name, nargs,
                             nargs > 1 ? "s" : "");
                    fail(p, argat, LJ_ERR_PARSE, "%s", m);
                    ok = false;
                    break;
                }
                skip(p);
                if (s[p->pos] == ',') {
                    p->pos++;
                    continue;
                }
                if (s[p->pos] == ')') {
                    p->pos++;
                    break;
                }
                fail(p, p->pos, LJ_ERR_PARSE, "parse: expected ',' or ')' but found %s", describe(p, buf, sizeof buf));
                ok = false;
            }
            lj_expr *r = NULL;
            if (ok && got != nargs) {
                char m[300];
                snprintf(m, sizeof m, "parse: '%s' takes %d argument%s, got %d", name, nargs,
                         nargs > 1 ? "s" : "", got);
                fail(p, at, LJ_ERR_PARSE, "%s", m);
            } else if (ok)
                r = apply_function(p, name, args, at);
            lj_expr_free(&args[0]);
            lj_expr_free(&args[1]);
            return r;
        }
        lj_expr *v = lj_symtab_get(p->t, name);
        if (!v) return fail(p, at, LJ_ERR_NAME, "'%s' is not declared", name);
        return lj_expr_retain(v);
    }
    if (s[at] == '(') {
        p->pos++;
        lj_expr *e = parse_expr(p);
        if (!e) return NULL;
        skip(p);
        if (s[p->pos] != ')') {
            lj_expr_free(&e);
            return fail(p, p->pos, LJ_ERR_PARSE, "parse: expected ')' but found %s", describe(p, buf, sizeof buf));
        }
        p->pos++;
        return e;
    }
    if (!s[at]) return fail(p, at, LJ_ERR_PARSE, "parse: unexpected end of expression");
    return fail(p, at, LJ_ERR_PARSE, "parse: unexpected %s", describe(p, buf, sizeof buf));
}

static lj_expr *parse_postfix(parser *p)
{
    lj_expr *e = parse_primary(p);
    while (e) {
        skip(p);
        if (p->s[p->pos] != '\'') break;
        size_t at = p->pos++;
        lj_expr *t = checked(p, at, lj_expr_transpose(p->ctx, e));
        lj_expr_free(&e);
        e = t;
    }
    return e;
}

static bool has_leaf_var(const lj_expr *e)
{
    if (!e) return false;
    if (e->op == LJI_E_VAR) return true;
    return has_leaf_var(e->a) || has_leaf_var(e->b);
}

static lj_expr *parse_power(parser *p)
{
    lj_expr *e = parse_postfix(p);
    if (!e) return NULL;
    skip(p);
    if (p->s[p->pos] == '.' && p->s[p->pos + 1] == '^') {
        size_t at = p->pos;
        p->pos += 2;
        skip(p);
        size_t expat = p->pos;
        lj_expr *x = parse_unary(p);
        if (!x) {
            lj_expr_free(&e);
            return NULL;
        }
        /* the exponent is a constant scalar expression */
        lj_expr *r = NULL;
        if (x->rows != 1 || x->cols != 1 || has_leaf_var(x)) {
            fail(p, expat, LJ_ERR_PARSE, "parse: the exponent of '.^' must be a constant number");
        } else {
            int64_t rr, cc;
            double *v = NULL;
            if (lj_expr_eval(p->ctx, x, &rr, &cc, &v) == LJ_OK) r = checked(p, at, lj_expr_pow(p->ctx, e, v[0]));
            else checked(p, expat, NULL);
            lj_free(v);
        }
        lj_expr_free(&x);
        lj_expr_free(&e);
        return r;
    }
    return e;
}

static lj_expr *parse_unary(parser *p)
{
    skip(p);
    if (p->s[p->pos] == '-') {
        size_t at = p->pos++;
        if (++p->depth > MAX_DEPTH) return fail(p, at, LJ_ERR_PARSE, "parse: expression nests too deeply");
        lj_expr *a = parse_unary(p);
        p->depth--;
        if (!a) return NULL;
        lj_expr *r = checked(p, at, lj_expr_neg(p->ctx, a));
        lj_expr_free(&a);
        return r;
    }
    return parse_power(p);
}

static lj_expr *parse_term(parser *p)
{
    lj_expr *e = parse_unary(p);
    while (e) {
        skip(p);
        const char *s = p->s + p->pos;
        int kind = 0;
        size_t len = 1;
        if (s[0] == '*') kind = 1;
        else if (s[0] == '.' && s[1] == '*') kind = 2, len = 2;
        else if (s[0] == '.' && s[1] == '/') kind = 3, len = 2;
        else if (s[0] == '/') kind = 4;
        if (!kind) break;
        size_t at = p->pos;
        p->pos += len;
        lj_expr *b = parse_unary(p);
        if (!b) {
            lj_expr_free(&e);
            return NULL;
        }
        lj_expr *r = kind == 1 ? lj_expr_mul(p->ctx, e, b)
                   : kind == 2 ? lj_expr_hadamard(p->ctx, e, b)
                   : kind == 3 ? lj_expr_hdiv(p->ctx, e, b)
                               : lj_expr_div_scalar(p->ctx, e, b);
        checked(p, at, r);
        lj_expr_free(&e);
        lj_expr_free(&b);
        e = r;
    }
    return e;
}

static lj_expr *parse_expr(parser *p)
{
    if (++p->depth > MAX_DEPTH) return fail(p, p->pos, LJ_ERR_PARSE, "parse: expression nests too deeply");
    lj_expr *e = parse_term(p);
    while (e) {
        skip(p);
        char c = p->s[p->pos];
        if (c != '+' && c != '-') break;
        size_t at = p->pos++;
        lj_expr *b = parse_term(p);
        if (!b) {
            lj_expr_free(&e);
            break;
        }
        lj_expr *r = checked(p, at, c == '+' ? lj_expr_add(p->ctx, e, b) : lj_expr_sub(p->ctx, e, b));
        lj_expr_free(&e);
        lj_expr_free(&b);
        e = r;
    }
    p->depth--;
    return e;
}

lj_expr *lj_parse(lj_context *ctx, const char *text, const lj_symtab *t, int64_t *errpos)
{
    if (errpos) *errpos = -1;
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!text) {
        lji_error(ctx, LJ_ERR_INVALID, "parse: NULL text");
        return NULL;
    }
    parser p = { ctx, text, 0, t, -1, 0 };
    skip(&p);
    if (!text[p.pos]) {
        fail(&p, p.pos, LJ_ERR_PARSE, "parse: empty expression");
        if (errpos) *errpos = p.errpos;
        return NULL;
    }
    lj_expr *e = parse_expr(&p);
    if (e) {
        skip(&p);
        if (text[p.pos]) {
            char buf[32];
            fail(&p, p.pos, LJ_ERR_PARSE,
                 text[p.pos] == ')' ? "parse: unbalanced %s" : "parse: unexpected %s",
                 describe(&p, buf, sizeof buf));
            lj_expr_free(&e);
        }
    }
    if (!e && errpos) {
        /* syntax and name errors, and the failures of the operation at a
         * place (shapes, sizes, values of constant exponents), have a place;
         * running out of memory has none */
        lj_status st = ctx->status;
        *errpos = (st == LJ_ERR_NOMEM || st == LJ_ERR_INVALID) ? -1 : p.errpos;
    }
    return e;
}

char *lj_caret(const char *text, int64_t pos)
{
    if (!text) return NULL;
    size_t n = strlen(text);
    if (pos < 0) pos = 0;
    if ((size_t)pos > n) pos = (int64_t)n;
    /* the line that holds pos */
    size_t b = (size_t)pos, e = (size_t)pos;
    while (b > 0 && text[b - 1] != '\n') b--;
    while (e < n && text[e] != '\n') e++;
    if (e > b && text[e - 1] == '\r') e--;
    /* a window of at most `width` characters (UTF-8 aware) around pos */
    enum { width = 100, before = 60 };
    size_t wb = b, we = e, chars = 0;
    for (size_t i = (size_t)pos; i > b; i--) /* step back `before` characters */
        if (((unsigned char)text[i - 1] & 0xC0) != 0x80 && ++chars >= before) {
            wb = i - 1;
            break;
        }
    chars = 0;
    for (size_t i = wb; i < e; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80 && ++chars > width) {
            we = i;
            break;
        }
    bool cut_left = wb > b, cut_right = we < e;
    size_t cols = cut_left ? 1 : 0; /* "…" is one column */
    for (size_t i = wb; i < (size_t)pos; i++)
        if (((unsigned char)text[i] & 0xC0) != 0x80) cols++;
    char *out = malloc((we - wb) + cols + 16);
    if (!out) return NULL;
    size_t k = 0;
    out[k++] = ' ';
    out[k++] = ' ';
    if (cut_left) k += (size_t)sprintf(out + k, "…");
    for (size_t i = wb; i < we; i++) out[k++] = (text[i] == '\t' || text[i] == '\r') ? ' ' : text[i];
    if (cut_right) k += (size_t)sprintf(out + k, "…");
    out[k++] = '\n';
    out[k++] = ' ';
    out[k++] = ' ';
    for (size_t i = 0; i < cols; i++) out[k++] = ' ';
    out[k++] = '^';
    out[k] = '\0';
    return out;
}
