/* The expression language (DESIGN.md): a recursive-descent parser over a
 * table of declared names, with byte positions for every error.
 *
 *   expr    := term (('+' | '-') term)*
 *   term    := unary (('*' | '.*' | './' | '/') unary)*
 *   unary   := '-' unary | power
 *   power   := postfix (('.^' | '^') unary)?
 *   postfix := primary "'"*
 *   primary := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
 *
 * As in MATLAB, a number directly followed by '.*', './' or '.^' is the
 * number and then that operator: "X.^2.*X" is (X.^2).*X. Function names
 * come from the table of operations (lji_language_functions). `a^b` is a
 * scalar power for 1×1 operands and a matrix power (lj_expr_mpower) for a square
 * matrix and a constant integer. `eye` without an argument is an identity
 * whose size follows from the operation it stands in (A + eye, eye*B).
 * `ones(m,n)` and `zeros(m,n)` (constant sizes) are the fills that the
 * plain form of a gradient writes, so that it parses again.
 */
#include "config.h"
#include "../expr/ops.h"
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
        !lji_is_leaf(leaf))
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

/* a group or a function call parsed before: its text without blanks */
typedef struct {
    char *text;
    uint64_t hash;
    lj_expr *e;
} seen_part;

typedef struct {
    lj_context *ctx;
    const char *s;
    size_t pos;
    const lj_symtab *t;
    int64_t errpos;
    int depth;
    seen_part *seen; /* open addressing on the texts' hashes, at most half full */
    int nseen, capseen;
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

/* s starts with an unsigned number and then, after blanks, ',' or ')' */
static bool lone_number(const char *s)
{
    size_t i = 0;
    while (isdigit((unsigned char)s[i]) || s[i] == '.') i++;
    if (i == 0) return false;
    if (s[i] == 'e' || s[i] == 'E') {
        i++;
        if (s[i] == '+' || s[i] == '-') i++;
        if (!isdigit((unsigned char)s[i])) return false;
        while (isdigit((unsigned char)s[i])) i++;
    }
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') i++;
    return s[i] == ',' || s[i] == ')';
}
static lj_expr *parse_unary(parser *p);

/* A bare `eye`: an identity whose size the operation it stands in gives.
 * Until then it is a placeholder, a node of shape (-1×-1): eye itself, or
 * a scalar multiple of placeholders (2*eye, -eye, eye/s). */
static bool is_bare_eye(const lj_expr *e)
{
    return e && e->rows < 0;
}

static lj_expr *bare_eye(parser *p)
{
    return lji_node_new(p->ctx, &lji_op_eye, -1, -1, NULL, NULL);
}

/* The placeholder e with eye of size n in place of each bare eye. */
static lj_expr *resolve_eye(parser *p, const lj_expr *e, int64_t n, size_t at)
{
    if (!is_bare_eye(e)) return lj_expr_retain((lj_expr *)e);
    if (e->def == &lji_op_eye) return checked(p, at, lj_expr_eye(p->ctx, n));
    lj_expr *a = resolve_eye(p, e->a, n, at), *b = e->b ? resolve_eye(p, e->b, n, at) : NULL;
    lj_expr *r = NULL;
    if (a && (b || !e->b))
        r = checked(p, at, e->b ? lji_expr_binary(p->ctx, e->def, a, b) : lji_expr_unary(p->ctx, e->def, a));
    lj_expr_free(&a);
    lj_expr_free(&b);
    return r;
}

/* A bare eye where its size cannot be inferred: an error at `at`. */
static lj_expr *no_bare_eye(parser *p, size_t at, lj_expr *e)
{
    if (!is_bare_eye(e)) return e;
    lj_expr_free(&e);
    return fail(p, at, LJ_ERR_SHAPE, "eye: its size cannot be inferred here; write eye(n)");
}

/* The value of a constant scalar expression (no variables), or false. */
static bool constant_value(parser *p, const lj_expr *x, double *v);

static const lji_opdef *find_function(const char *name)
{
    for (int i = 0; lji_language_functions[i]; i++)
        if (!strcmp(lji_language_functions[i]->name, name)) return lji_language_functions[i];
    return NULL;
}

static lj_expr *apply_function(parser *p, const lji_opdef *f, lj_expr **args, int nargs, size_t at)
{
    for (int i = 0; i < nargs; i++)
        if (is_bare_eye(args[i])) return fail(p, at, LJ_ERR_SHAPE, "eye: its size cannot be inferred here; write eye(n)");
    if (f == &lji_op_eye) { /* eye(n): n a constant integer */
        double n;
        if (!constant_value(p, args[0], &n) || n != floor(n) || n < 0 || n > 1e15)
            return fail(p, at, LJ_ERR_PARSE, "parse: eye(n) needs a constant non-negative integer n");
        return checked(p, at, lj_expr_eye(p->ctx, (int64_t)n));
    }
    if (f == &lji_op_ones || f == &lji_op_zeros) { /* ones(m,n), zeros(m,n): constant integers */
        double m, n;
        if (!constant_value(p, args[0], &m) || !constant_value(p, args[1], &n) || m != floor(m) ||
            n != floor(n) || m < 0 || n < 0 || m > 1e15 || n > 1e15)
            return fail(p, at, LJ_ERR_PARSE, "parse: %s(m,n) needs constant non-negative integers m and n",
                        f->name);
        return checked(p, at, lji_expr_fill(p->ctx, (int64_t)m, (int64_t)n, f == &lji_op_ones ? 1.0 : 0.0));
    }
    return checked(p, at, f->arity == 1 ? lji_expr_unary(p->ctx, f, args[0])
                                        : lji_expr_binary(p->ctx, f, args[0], args[1]));
}

static lj_expr *parse_primary_once(parser *p);

/* The longest text of a group or a call that is looked up as one seen
 * before: a repeated operand is rarely longer, and the table's texts stay
 * bounded by that times the parts */
#define LJI_SEEN_TEXT_MAX 256

/* A primary. A bracketed group or a function call written twice, such as
 * sin(X) in sin(X)*sin(X), is one node: its value is computed once, its
 * Jacobian is one node, which the chain rule's terms then share (J reads
 * ((sin(X)^T ⊗ I) + (I ⊗ sin(X)))·Diag(cos(vec X))) and its label prints
 * as a power (sin(X)^2). The same text means the same expression: names
 * are the table's, and a bare eye, whose size its context gives, is not
 * looked up. */
static lj_expr *parse_primary(parser *p)
{
    skip(p);
    size_t at = p->pos;
    lj_expr *e = parse_primary_once(p);
    const char *s = p->s + at;
    size_t n = p->pos - at;
    if (!e || is_bare_eye(e) || n > LJI_SEEN_TEXT_MAX || (s[0] != '(' && s[n - 1] != ')')) return e;
    char text[LJI_SEEN_TEXT_MAX + 1];
    size_t k = 0;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') {
            text[k++] = s[i];
            h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
        }
    text[k] = '\0';
    if (2 * (p->nseen + 1) > p->capseen) { /* grown, and the parts placed again */
        int cap = p->capseen ? 2 * p->capseen : 16;
        seen_part *ns = lji_calloc(p->ctx, (size_t)cap, sizeof *ns);
        if (!ns) {
            lj_expr_free(&e);
            lji_nomem(p->ctx, "parse");
            return NULL;
        }
        for (int i = 0; i < p->capseen; i++) {
            if (!p->seen[i].text) continue;
            uint64_t j = p->seen[i].hash & (uint64_t)(cap - 1);
            while (ns[j].text) j = (j + 1) & (uint64_t)(cap - 1);
            ns[j] = p->seen[i];
        }
        free(p->seen);
        p->seen = ns;
        p->capseen = cap;
    }
    uint64_t j = h & (uint64_t)(p->capseen - 1);
    for (; p->seen[j].text; j = (j + 1) & (uint64_t)(p->capseen - 1))
        if (p->seen[j].hash == h && !strcmp(p->seen[j].text, text) && p->seen[j].e->rows == e->rows &&
            p->seen[j].e->cols == e->cols) {
            lj_expr_free(&e);
            return lj_expr_retain(p->seen[j].e);
        }
    char *copy = lji_strndup(p->ctx, text, k);
    if (!copy) {
        lj_expr_free(&e);
        lji_nomem(p->ctx, "parse");
        return NULL;
    }
    p->seen[j] = (seen_part){ copy, h, lj_expr_retain(e) };
    p->nseen++;
    return e;
}

static lj_expr *parse_primary_once(parser *p)
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
            const lji_opdef *fd = find_function(name);
            if (!fd) return fail(p, at, LJ_ERR_PARSE, "parse: unknown function '%s'", name);
            int nargs = fd == &lji_op_eye ? 1 : fd->arity;
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
                /* an argument that is a lone number (eye(3), which the
                 * printer writes for A^0) adds no depth, as "(-…)" below:
                 * its parse recurses no further */
                bool lone = lone_number(s + argat);
                p->depth -= lone;
                lj_expr *a = parse_expr(p);
                p->depth += lone;
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
                r = apply_function(p, fd, args, nargs, at);
            lj_expr_free(&args[0]);
            lj_expr_free(&args[1]);
            return r;
        }
        lj_expr *v = lj_symtab_get(p->t, name);
        if (!v && !strcmp(name, "eye")) return checked(p, at, bare_eye(p));
        if (!v) return fail(p, at, LJ_ERR_NAME, "'%s' is not declared", name);
        return lj_expr_retain(v);
    }
    if (s[at] == '(') {
        p->pos++;
        /* "(-…)": the brackets the printer puts around an operand that
         * starts with a minus sign (x - (-y), x*(-2*A)) add no depth, so
         * that what it prints of an expression at the limit parses again;
         * the minus sign inside counts, so nesting stays bounded */
        skip(p);
        bool minus = s[p->pos] == '-';
        p->depth -= minus;
        lj_expr *e = parse_expr(p);
        p->depth += minus;
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
        if (is_bare_eye(e)) continue; /* eye' is eye */
        lj_expr *t = checked(p, at, lj_expr_transpose(p->ctx, e));
        lj_expr_free(&e);
        e = t;
    }
    return e;
}

/* Whether e depends on a variable (iteratively: an exponent read from a
 * file may nest deeply). */
static bool has_leaf_var(parser *p, const lj_expr *e)
{
    lji_topo t;
    if (lji_topo_build(p->ctx, e, &t) != LJ_OK) return true;
    bool any = false;
    for (int64_t i = 0; i < t.n && !any; i++) any = lji_is_var(t.node[i]);
    lji_topo_free(&t);
    return any;
}

static bool constant_value(parser *p, const lj_expr *x, double *v)
{
    if (!x || x->rows != 1 || x->cols != 1 || has_leaf_var(p, x)) return false;
    int64_t r, c;
    double *val = NULL;
    bool ok = lj_expr_eval(p->ctx, x, &r, &c, &val) == LJ_OK;
    if (ok) *v = val[0];
    lj_free(val);
    return ok;
}

static lj_expr *parse_power(parser *p)
{
    lj_expr *e = parse_postfix(p);
    if (!e) return NULL;
    skip(p);
    bool dot = p->s[p->pos] == '.' && p->s[p->pos + 1] == '^';
    if (!dot && p->s[p->pos] != '^') return e;
    size_t at = p->pos;
    p->pos += dot ? 2 : 1;
    skip(p);
    size_t expat = p->pos;
    lj_expr *x = parse_unary(p);
    if (!x || !(e = no_bare_eye(p, at, e)) || !(x = no_bare_eye(p, expat, x))) {
        lj_expr_free(&e);
        lj_expr_free(&x);
        return NULL;
    }
    lj_expr *r = NULL;
    double v;
    if (dot) { /* the exponent of .^ is a constant scalar expression */
        if (constant_value(p, x, &v)) r = checked(p, at, lj_expr_pow(p->ctx, e, v));
        else if (lj_context_status(p->ctx) != LJ_OK) checked(p, expat, NULL);
        else fail(p, expat, LJ_ERR_PARSE, "parse: the exponent of '.^' must be a constant number");
    } else if (lji_is_scalar(e) && lji_is_scalar(x)) {
        r = checked(p, at, lj_expr_power(p->ctx, e, x));
    } else if (e->rows == e->cols && constant_value(p, x, &v) && v == floor(v) && fabs(v) <= LJ_MPOWER_MAX) {
        r = checked(p, at, lj_expr_mpower(p->ctx, e, (int64_t)v));
    } else {
        lj_context_clear(p->ctx);
        fail(p, at, LJ_ERR_SHAPE, "power: '^' needs 1×1 operands or a square matrix and a constant integer "
             "from -1024 to 1024, not " LJI_SHP "^" LJI_SHP " (use .^ for elementwise powers)",
             e->rows, e->cols, x->rows, x->cols);
    }
    lj_expr_free(&x);
    lj_expr_free(&e);
    return r;
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
        lj_expr *r = is_bare_eye(a) ? lji_node_new(p->ctx, &lji_op_neg, -1, -1, a, NULL) /* -eye */
                                    : checked(p, at, lj_expr_neg(p->ctx, a));
        lj_expr_free(&a);
        return r;
    }
    return parse_power(p);
}

/* The size a bare eye takes beside `other` in `d`: the inner dimension of
 * a product, the other operand's (square) shape elsewhere; -1 if none. */
static int64_t eye_size(const lji_opdef *d, const lj_expr *other, bool eye_left)
{
    if (d == &lji_op_mul) return eye_left ? other->rows : other->cols;
    if (d == &lji_op_divs) return eye_left ? -1 : 1;
    return other->rows == other->cols ? other->rows : -1;
}

/* a `d` b at `at`, a bare eye taking its size from the other operand (a
 * scalar multiple of one stays a placeholder); consumes a and b */
static lj_expr *binary(parser *p, const lji_opdef *d, lj_expr *a, lj_expr *b, size_t at)
{
    bool ea = is_bare_eye(a), eb = is_bare_eye(b);
    lj_expr *res = NULL;
    if (ea && eb) {
        fail(p, at, LJ_ERR_SHAPE, "eye: its size cannot be inferred here; write eye(n)");
    } else if ((d == &lji_op_mul && ((ea && lji_is_scalar(b)) || (eb && lji_is_scalar(a)))) ||
               (d == &lji_op_divs && ea && lji_is_scalar(b))) {
        res = lji_node_new(p->ctx, d, -1, -1, a, b); /* s*eye: still a placeholder */
    } else if (ea || eb) {
        const lj_expr *other = ea ? b : a, *eye = ea ? a : b;
        int64_t n = eye_size(d, other, ea);
        lj_expr *r = n >= 0 ? resolve_eye(p, eye, n, at) : NULL;
        if (n < 0)
            fail(p, at, LJ_ERR_SHAPE, "eye: no identity fits beside " LJI_SHP " in '%s'; write eye(n)",
                 other->rows, other->cols, d->sym);
        if (r) res = checked(p, at, lji_expr_binary(p->ctx, d, ea ? r : a, ea ? b : r));
        lj_expr_free(&r);
    } else
        res = checked(p, at, lji_expr_binary(p->ctx, d, a, b));
    lj_expr_free(&a);
    lj_expr_free(&b);
    return res;
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
        const lji_opdef *d = kind == 1 ? &lji_op_mul : kind == 2 ? &lji_op_hadamard
                           : kind == 3 ? &lji_op_hdiv : &lji_op_divs;
        e = binary(p, d, e, b, at);
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
        e = binary(p, c == '+' ? &lji_op_add : &lji_op_sub, e, b, at);
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
    parser p = { ctx, text, 0, t, -1, 0, NULL, 0, 0 };
    skip(&p);
    if (!text[p.pos]) {
        fail(&p, p.pos, LJ_ERR_PARSE, "parse: empty expression");
        if (errpos) *errpos = p.errpos;
        return NULL;
    }
    lj_expr *e = no_bare_eye(&p, 0, parse_expr(&p));
    for (int i = 0; i < p.capseen; i++) {
        free(p.seen[i].text);
        if (p.seen[i].e) lj_expr_free(&p.seen[i].e);
    }
    free(p.seen);
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
