/* Expressions in mathematical notation, in the three formats of printed
 * operators: Unicode (A^T·x, X^{-T}, A ∘ B, ‖A‖_F, 1_{3×4}), plain ASCII in
 * the syntax of the expression language where it has one (A'*x, inv(X)',
 * A.*B, norm2(A), ones(3,4)) and LaTeX (A^{\top} \cdot x, X^{-\top}).
 * Gradient expressions print through here; so may any expression. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

/* levels: 1 sum, 2 product, 3 unary minus, 4 power, 5 postfix, 6 primary */
typedef struct {
    lji_buf *b;
    lj_print_format fmt;
    int depth;
    const lj_expr *wrt;
} mp;

#define MP_MAX_DEPTH 4000

static void w(mp *m, const lj_expr *e, int level);

static void puts3(mp *m, const char *u, const char *plain, const char *latex)
{
    lji_buf_puts(m->b, m->fmt == LJ_PRINT_UNICODE ? u : m->fmt == LJ_PRINT_PLAIN ? plain : latex);
}

static bool all_ones(const lj_expr *e)
{
    int64_t n = e->rows * e->cols;
    if (e->pat || n < 2) return false;
    for (int64_t i = 0; i < n; i++)
        if (e->value[i] != 1.0) return false;
    return true;
}

static bool is_num(const lj_expr *e)
{
    return e->def == &lji_op_const && !e->name && e->rows == 1 && e->cols == 1;
}

static int level_of(const lj_expr *e, lj_print_format fmt)
{
    const lji_opdef *d = e->def;
    if (e->pbase) return 4;
    if (is_num(e)) return e->value[0] < 0 ? 3 : 6;
    if (d == &lji_op_add || d == &lji_op_sub) return 1;
    if (d == &lji_op_mul || d == &lji_op_hadamard || d == &lji_op_hdiv || d == &lji_op_divs || d == &lji_op_kron)
        return 2;
    if (d == &lji_op_scale) return 2; /* c·x is a product, signed or not */
    /* −x binds like x when x is a product: −B·A reads (−B)·A, so it is
     * parenthesised where a product would be (S ⊘ (−B·A)) */
    if (d == &lji_op_neg) return level_of(e->a, fmt) == 2 ? 2 : 3;
    if (d == &lji_op_pow) return e->p == -1 && !(e->rows == 1 && e->cols == 1) ? 2 : 4;
    if (d == &lji_op_power) return 4;
    if (d == &lji_op_transpose) return 5;
    if (d == &lji_op_inv) return fmt == LJ_PRINT_PLAIN ? 6 : 5;
    return 6;
}

static void size_sub(mp *m, int64_t r, int64_t c)
{
    if (c == 1) {
        lji_buf_printf(m->b, m->fmt == LJ_PRINT_LATEX ? "_{%" PRId64 "}" : "_%" PRId64, r);
        return;
    }
    lji_buf_printf(m->b, m->fmt == LJ_PRINT_LATEX ? "_{%" PRId64 "\\times %" PRId64 "}" : "_{%" PRId64 "×%" PRId64 "}",
                   r, c);
}

static void func(mp *m, const char *u, const char *latex, const lj_expr *a, const lj_expr *b)
{
    lji_buf_puts(m->b, m->fmt == LJ_PRINT_LATEX ? latex : u);
    lji_buf_puts(m->b, m->fmt == LJ_PRINT_LATEX ? "\\left(" : "(");
    w(m, a, 1);
    if (b) {
        lji_buf_puts(m->b, ", ");
        w(m, b, 1);
    }
    lji_buf_puts(m->b, m->fmt == LJ_PRINT_LATEX ? "\\right)" : ")");
}

/* the operand of a product: a different product kind is parenthesised */
static int operand_level(const lj_expr *parent, const lj_expr *child, bool right, lj_print_format fmt)
{
    const lji_opdef *p = parent->def, *c = child->def;
    if (level_of(child, fmt) != 2) return right && p != &lji_op_mul && p != &lji_op_hadamard ? 3 : 2;
    if (p == c && !right && p != &lji_op_divs && p != &lji_op_hdiv) return 2;
    if (p == c && (p == &lji_op_mul || p == &lji_op_hadamard)) return 2;
    if (p == &lji_op_mul && c == &lji_op_scale) return 2;
    return 3;
}

/* e's printed form starts with a minus sign (−y, −2, −2·x, −y ∘ x):
 * bracketed as a right operand, so that no two signs meet (u − (−y),
 * y ∘ (−y), not u − −y, y ∘ −y) */
static bool starts_minus(const lj_expr *e, lj_print_format fmt)
{
    for (int depth = 0; depth < 64; depth++) {
        const lji_opdef *d = e->def;
        if (e->pbase) return false;
        if (is_num(e)) return e->value[0] < 0;
        if (d == &lji_op_neg) return true;
        if (d == &lji_op_scale) return e->p < 0;
        if (d == &lji_op_add || d == &lji_op_sub) {
            e = e->a;
            continue;
        }
        if (d == &lji_op_mul || d == &lji_op_hadamard || d == &lji_op_hdiv || d == &lji_op_kron ||
            d == &lji_op_divs) {
            if (level_of(e->a, fmt) < operand_level(e, e->a, false, fmt)) return false; /* "(−a)·b" */
            e = e->a;
            continue;
        }
        return false;
    }
    return false;
}

static void number(mp *m, double x)
{
    lji_put_number(m->b, x, m->fmt);
}

/* name(a, b) with the forms of lji_fn_form_of, else \operatorname{name} */
static void named_fn(mp *m, const char *n, const lj_expr *a, const lj_expr *b)
{
    if (!strcmp(n, "sqrt") && m->fmt == LJ_PRINT_LATEX && !b) {
        lji_buf_puts(m->b, "\\sqrt{");
        w(m, a, 1);
        lji_buf_puts(m->b, "}");
        return;
    }
    const lji_fn_form *f = lji_fn_form_of(n, strlen(n));
    if (f) {
        func(m, m->fmt == LJ_PRINT_UNICODE ? f->unicode : f->name, f->latex, a, b);
        return;
    }
    char latex[64];
    snprintf(latex, sizeof latex, "\\operatorname{%s}", n);
    func(m, n, latex, a, b);
}

static void w(mp *m, const lj_expr *e, int level)
{
    lji_buf *b = m->b;
    if (b->failed || b->truncated) return;
    if (++m->depth > MP_MAX_DEPTH) {
        lji_buf_puts(b, "…");
        b->truncated = true;
        m->depth--;
        return;
    }
    const lji_opdef *d = e->def;
    int mine = level_of(e, m->fmt);
    bool paren = mine < level;
    if (paren) lji_buf_puts(b, m->fmt == LJ_PRINT_LATEX ? "\\left(" : "(");
    bool uni = m->fmt == LJ_PRINT_UNICODE, plain = m->fmt == LJ_PRINT_PLAIN, latex = m->fmt == LJ_PRINT_LATEX;
    if (e->pbase) { /* X^k */
        w(m, e->pbase, 6);
        lji_buf_printf(b, latex ? "^{%" PRId64 "}" : "^%" PRId64, e->pn);
    } else if (lji_is_leaf(e)) {
        if (e->name && !plain && e != m->wrt && (d == &lji_op_const || m->wrt) &&
            (e->cols == 1 || e->rows == 1) && all_ones(e)) {
            lji_buf_puts(b, latex ? "\\mathbf{1}" : "1");
            size_sub(m, e->rows * e->cols, 1);
            if (e->rows == 1) lji_buf_puts(b, lji_sym_transpose(m->fmt));
        } else if (e->name && latex)
            lji_put_name_latex(b, e->name, strlen(e->name));
        else if (e->name)
            lji_buf_puts(b, e->name);
        else
            number(m, e->value[0]);
    } else if (d == &lji_op_eye) {
        if (plain) lji_buf_printf(b, "eye(%" PRId64 ")", e->rows);
        else lji_buf_printf(b, latex ? "I_{%" PRId64 "}" : "I_%" PRId64, e->rows);
    } else if (d == &lji_op_fill) {
        if (e->rows == 1 && e->cols == 1) number(m, e->p);
        else if (plain) lji_buf_printf(b, "%s(%" PRId64 ",%" PRId64 ")", e->p == 0 ? "zeros" : "ones", e->rows, e->cols);
        else {
            lji_buf_puts(b, latex ? (e->p == 0 ? "\\mathbf{0}" : "\\mathbf{1}") : (e->p == 0 ? "0" : "1"));
            size_sub(m, e->rows, e->cols);
        }
    } else if (d == &lji_op_add && e->b->def == &lji_op_fill && e->b->p == 0 && e->a->pat && !e->pat) {
        w(m, e->a, 1); /* a sparse value stored dense (a dense variable's gradient): the zero is storage */
    } else if (d == &lji_op_add || d == &lji_op_sub) {
        w(m, e->a, 1);
        lji_buf_puts(b, d == &lji_op_add ? " + " : uni ? " − " : " - ");
        w(m, e->b, starts_minus(e->b, m->fmt) ? 7 : 2);
    } else if (d == &lji_op_neg) {
        lji_buf_puts(b, uni ? "−" : "-");
        w(m, e->a, starts_minus(e->a, m->fmt) ? 7 : 2); /* −(−y), not −−y */
    } else if (d == &lji_op_scale && e->a->def == &lji_op_pow && !e->a->pbase && e->a->p == -1 &&
               !(e->a->rows == 1 && e->a->cols == 1)) {
        number(m, e->p); /* k·(1 ⊘ x) is k ⊘ x */
        puts3(m, " ⊘ ", "./", " \\oslash ");
        w(m, e->a->a, 3);
    } else if (d == &lji_op_scale) {
        number(m, e->p);
        lji_buf_puts(b, lji_sym_dot(m->fmt));
        w(m, e->a, e->a->def == &lji_op_mul || e->a->def == &lji_op_scale ? 2 : 3);
    } else if (d == &lji_op_mul) {
        /* an outer product a b^T is written by juxtaposition, as in the Cookbook */
        bool outer = e->a->cols == 1 && e->a->rows > 1 && e->b->rows == 1 && e->b->cols > 1;
        w(m, e->a, operand_level(e, e->a, false, m->fmt));
        lji_buf_puts(b, outer && !plain ? " " : lji_sym_dot(m->fmt));
        w(m, e->b, starts_minus(e->b, m->fmt) ? 7 : operand_level(e, e->b, true, m->fmt));
    } else if (d == &lji_op_hadamard || d == &lji_op_hdiv || d == &lji_op_kron) {
        if (plain && d == &lji_op_kron) {
            func(m, "kron", "", e->a, e->b);
        } else {
            w(m, e->a, operand_level(e, e->a, false, m->fmt));
            if (d == &lji_op_hadamard) puts3(m, " ∘ ", ".*", " \\circ ");
            else if (d == &lji_op_hdiv) puts3(m, " ⊘ ", "./", " \\oslash ");
            else puts3(m, " ⊗ ", "", " \\otimes ");
            w(m, e->b, starts_minus(e->b, m->fmt) ? 7 : operand_level(e, e->b, true, m->fmt));
        }
    } else if (d == &lji_op_divs) {
        if (latex) {
            lji_buf_puts(b, "\\frac{");
            w(m, e->a, 1);
            lji_buf_puts(b, "}{");
            w(m, e->b, 1);
            lji_buf_puts(b, "}");
        } else {
            w(m, e->a, 2);
            lji_buf_puts(b, plain ? "/" : " / ");
            w(m, e->b, 3);
        }
    } else if (d == &lji_op_pow) {
        bool scalar = e->rows == 1 && e->cols == 1;
        if (e->p == -1 && !scalar) { /* 1 ⊘ A */
            puts3(m, "1 ⊘ ", "1./", "1 \\oslash ");
            w(m, e->a, 3);
        } else {
            w(m, e->a, 6);
            char num[64];
            lji_format_number(num, sizeof num, e->p, plain ? LJ_PRINT_PLAIN : LJ_PRINT_UNICODE);
            const char *minus = e->p < 0 && uni ? "−" : "", *digits = *minus ? num + 1 : num;
            if (plain) lji_buf_printf(b, scalar ? "^%s" : ".^%s", num);
            else if (latex) lji_buf_printf(b, scalar ? "^{%s}" : "^{\\circ %s}", num);
            else lji_buf_printf(b, scalar ? "^%s%s" : "^{∘%s%s}", minus, digits);
        }
    } else if (d == &lji_op_power) {
        w(m, e->a, 6);
        lji_buf_puts(b, "^");
        if (latex) {
            lji_buf_puts(b, "{");
            w(m, e->b, 1);
            lji_buf_puts(b, "}");
        } else
            w(m, e->b, 6);
    } else if (d == &lji_op_transpose) {
        if (e->a->def == &lji_op_inv && !plain) {
            w(m, e->a->a, 6);
            lji_buf_puts(b, latex ? "^{-\\top}" : "^{-T}");
        } else {
            w(m, e->a, 6);
            lji_buf_puts(b, lji_sym_transpose(m->fmt));
        }
    } else if (d == &lji_op_inv) {
        if (plain) func(m, "inv", "", e->a, NULL);
        else {
            w(m, e->a, 6);
            lji_buf_puts(b, "^{-1}");
        }
    } else if (d == &lji_op_norm2 || d == &lji_op_norm1) {
        bool two = d == &lji_op_norm2, vector = e->a->rows == 1 || e->a->cols == 1;
        if (plain) func(m, two ? "norm2" : "norm1", "", e->a, NULL);
        else {
            lji_buf_puts(b, latex ? "\\|" : "‖");
            w(m, e->a, 1);
            lji_buf_puts(b, latex ? "\\|" : "‖");
            lji_buf_puts(b, !two ? "_1" : vector ? "_2" : "_F");
        }
    } else if (d == &lji_op_step || d == &lji_op_gt) {
        lji_buf_puts(b, plain ? "(" : "[");
        w(m, e->a, 2);
        lji_buf_puts(b, " > ");
        if (e->b) w(m, e->b, 2);
        else lji_buf_puts(b, "0");
        lji_buf_puts(b, plain ? ")" : "]");
    } else if (d == &lji_op_reshape) {
        lji_buf_puts(b, latex ? "\\operatorname{reshape}\\left(" : "reshape(");
        w(m, e->a, 1);
        lji_buf_printf(b, ", %" PRId64 ", %" PRId64 "%s", e->rows, e->cols, latex ? "\\right)" : ")");
    } else { /* the elementwise functions, det, logdet, tr, sum, vec, diag, max, min, the
              * Kronecker contractions: name(args) */
        named_fn(m, d->name, e->a, e->b);
    }
    if (paren) lji_buf_puts(b, m->fmt == LJ_PRINT_LATEX ? "\\right)" : ")");
    m->depth--;
}

char *lj_expr_print_math(lj_context *ctx, const lj_expr *e, const lj_expr *wrt, lj_print_format fmt)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!lji_expr_ok(e)) {
        lji_error(ctx, LJ_ERR_INVALID, "expr_print_math: NULL or dead expression");
        return NULL;
    }
    if (fmt != LJ_PRINT_UNICODE && fmt != LJ_PRINT_PLAIN && fmt != LJ_PRINT_LATEX) {
        lji_error(ctx, LJ_ERR_INVALID, "expr_print_math: unknown format %d", (int)fmt);
        return NULL;
    }
    lji_buf b;
    lji_buf_init(&b, ctx);
    b.limit = LJ_PRINT_MAX;
    mp m = { .b = &b, .fmt = fmt, .wrt = wrt };
    w(&m, e, 1);
    if (b.truncated && !b.failed) {
        b.limit = 0;
        b.len = lji_utf8_prefix(b.s, b.len);
        lji_buf_puts(&b, lji_sym_ellipsis(fmt));
    }
    return lji_buf_finish(&b, "expr_print_math");
}
