/* Expression nodes: constructors with shape checks, reference counting,
 * printing in the expression language, and the topological order. */
#include "config.h"
#include "expr.h"
#include <inttypes.h>
#include <math.h>

static lj_expr *node_new(lj_context *ctx, lji_eop op, int64_t rows, int64_t cols, lj_expr *a,
                         lj_expr *b, const char *opname)
{
    lj_expr *e = lji_calloc(ctx, 1, sizeof *e);
    if (!e) {
        lji_nomem(ctx, opname);
        return NULL;
    }
    e->magic = LJI_EXPR_MAGIC;
    atomic_init(&e->refs, 1);
    e->op = op;
    e->rows = rows;
    e->cols = cols;
    e->a = a ? lj_expr_retain(a) : NULL;
    e->b = b ? lj_expr_retain(b) : NULL;
    return e;
}

lj_expr *lj_expr_retain(lj_expr *e)
{
    if (lji_expr_ok(e)) atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return e;
}

/* Iterative, so that freeing a long chain does not recurse deeply: dying
 * nodes are kept on a work list linked through `next`. */
void lj_expr_free(lj_expr **pe)
{
    if (!pe || !*pe) return;
    lj_expr *e = *pe;
    *pe = NULL;
    if (!lji_expr_ok(e)) return;
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) != 1) return;
    e->next = NULL;
    lj_expr *work = e;
    while (work) {
        lj_expr *x = work;
        work = x->next;
        lj_expr *children[2] = { x->a, x->b };
        for (int i = 0; i < 2; i++) {
            lj_expr *c = children[i];
            if (c && lji_expr_ok(c) &&
                atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
                c->next = work;
                work = c;
            }
        }
        free(x->name);
        free(x->value);
        x->magic = LJI_DEAD_MAGIC;
        free(x);
    }
}

int64_t lj_expr_rows(const lj_expr *e) { return lji_expr_ok(e) ? e->rows : -1; }
int64_t lj_expr_cols(const lj_expr *e) { return lji_expr_ok(e) ? e->cols : -1; }
const char *lj_expr_name(const lj_expr *e) { return lji_expr_ok(e) ? e->name : NULL; }
int lj_expr_is_var(const lj_expr *e) { return lji_expr_ok(e) && e->op == LJI_E_VAR; }

static lj_status check_in(lj_context *ctx, const char *op, const lj_expr *a, const lj_expr *b, int n)
{
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    const lj_expr *x[2] = { a, b };
    for (int i = 0; i < n; i++)
        if (!lji_expr_ok(x[i]))
            return lji_error(ctx, LJ_ERR_INVALID, "%s: operand %d is %s", op, i + 1,
                             x[i] ? "not a live expression" : "NULL");
    return LJ_OK;
}

static bool valid_name(const char *s)
{
    if (!s || !*s) return false;
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static lj_expr *leaf(lj_context *ctx, lji_eop op, const char *name, int64_t rows, int64_t cols,
                     const double *values)
{
    const char *opname = op == LJI_E_VAR ? "var" : "const";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (name && !valid_name(name)) {
        lji_error(ctx, LJ_ERR_NAME, "%s: '%s' is not a valid name", opname, name);
        return NULL;
    }
    if (op == LJI_E_VAR && !name) {
        lji_error(ctx, LJ_ERR_NAME, "%s: a variable needs a name", opname);
        return NULL;
    }
    int64_t n;
    if (rows < 0 || cols < 0 || !lji_size_ok(rows, cols, &n)) {
        lji_error(ctx, rows < 0 || cols < 0 ? LJ_ERR_SHAPE : LJ_ERR_OVERFLOW,
                  "%s: bad shape " LJI_SHP " for '%s'", opname, rows, cols, name ? name : "?");
        return NULL;
    }
    lj_expr *e = node_new(ctx, op, rows, cols, NULL, NULL, opname);
    if (!e) return NULL;
    e->name = name ? lji_strdup(ctx, name) : NULL;
    e->value = lji_calloc(ctx, (size_t)(n ? n : 1), sizeof(double));
    if ((name && !e->name) || !e->value) {
        lj_expr_free(&e);
        lji_nomem(ctx, opname);
        return NULL;
    }
    if (values && n) memcpy(e->value, values, (size_t)n * sizeof(double));
    return e;
}

lj_expr *lj_expr_var(lj_context *ctx, const char *name, int64_t rows, int64_t cols,
                     const double *values)
{
    return leaf(ctx, LJI_E_VAR, name, rows, cols, values);
}

lj_expr *lj_expr_const(lj_context *ctx, const char *name, int64_t rows, int64_t cols,
                       const double *values)
{
    return leaf(ctx, LJI_E_CONST, name, rows, cols, values);
}

lj_expr *lj_expr_scalar(lj_context *ctx, double value)
{
    if (lji_ctx_ok(ctx) && !isfinite(value)) {
        lji_error(ctx, LJ_ERR_DOMAIN, "scalar: value is not finite");
        return NULL;
    }
    return leaf(ctx, LJI_E_CONST, NULL, 1, 1, &value);
}

lj_status lj_expr_set_value(lj_context *ctx, lj_expr *e, const double *values)
{
    lj_status st = check_in(ctx, "set_value", e, NULL, 1);
    if (st != LJ_OK) return st;
    if (e->op != LJI_E_VAR && e->op != LJI_E_CONST)
        return lji_error(ctx, LJ_ERR_INVALID, "set_value: not a leaf");
    if (!values && e->rows * e->cols > 0)
        return lji_error(ctx, LJ_ERR_INVALID, "set_value: NULL values for '%s'", e->name ? e->name : "?");
    int64_t mn = e->rows * e->cols;
    if (mn > 0) memcpy(e->value, values, (size_t)mn * sizeof(double));
    return LJ_OK;
}

static bool is_scalar(const lj_expr *e)
{
    return e->rows == 1 && e->cols == 1;
}

/* elementwise binary ops: equal shapes, or one side 1×1 */
static lj_expr *elementwise(lj_context *ctx, lji_eop op, const char *name, const char *sym,
                            lj_expr *a, lj_expr *b)
{
    if (check_in(ctx, name, a, b, 2) != LJ_OK) return NULL;
    int64_t r = a->rows, c = a->cols;
    if (is_scalar(a)) {
        r = b->rows;
        c = b->cols;
    } else if (!is_scalar(b) && (a->rows != b->rows || a->cols != b->cols)) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: shapes differ: " LJI_SHP " %s " LJI_SHP, name, a->rows,
                  a->cols, sym, b->rows, b->cols);
        return NULL;
    }
    return node_new(ctx, op, r, c, a, b, name);
}

lj_expr *lj_expr_add(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    return elementwise(ctx, LJI_E_ADD, "add", "+", a, b);
}
lj_expr *lj_expr_sub(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    return elementwise(ctx, LJI_E_SUB, "sub", "-", a, b);
}
lj_expr *lj_expr_hadamard(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    return elementwise(ctx, LJI_E_HAD, "hadamard", ".*", a, b);
}
lj_expr *lj_expr_hdiv(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    return elementwise(ctx, LJI_E_HDIV, "hdiv", "./", a, b);
}

lj_expr *lj_expr_neg(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "neg", a, NULL, 1) != LJ_OK) return NULL;
    return node_new(ctx, LJI_E_NEG, a->rows, a->cols, a, NULL, "neg");
}

lj_expr *lj_expr_scale(lj_context *ctx, double alpha, lj_expr *a)
{
    if (check_in(ctx, "scale", a, NULL, 1) != LJ_OK) return NULL;
    if (!isfinite(alpha)) {
        lji_error(ctx, LJ_ERR_DOMAIN, "scale: factor is not finite");
        return NULL;
    }
    lj_expr *e = node_new(ctx, LJI_E_SCALE, a->rows, a->cols, a, NULL, "scale");
    if (e) e->p = alpha;
    return e;
}

lj_expr *lj_expr_mul(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    if (check_in(ctx, "mul", a, b, 2) != LJ_OK) return NULL;
    if (is_scalar(a) || is_scalar(b)) {
        const lj_expr *m = is_scalar(a) ? b : a;
        return node_new(ctx, LJI_E_MUL, m->rows, m->cols, a, b, "mul");
    }
    if (a->cols != b->rows) {
        lji_error(ctx, LJ_ERR_SHAPE, "mul: inner dimensions differ: " LJI_SHP "·" LJI_SHP, a->rows,
                  a->cols, b->rows, b->cols);
        return NULL;
    }
    return node_new(ctx, LJI_E_MUL, a->rows, b->cols, a, b, "mul");
}

lj_expr *lj_expr_div_scalar(lj_context *ctx, lj_expr *a, lj_expr *s)
{
    if (check_in(ctx, "div", a, s, 2) != LJ_OK) return NULL;
    if (!is_scalar(s)) {
        lji_error(ctx, LJ_ERR_SHAPE, "div: '/' divides by a scalar, not " LJI_SHP " (use ./)", s->rows,
                  s->cols);
        return NULL;
    }
    return node_new(ctx, LJI_E_DIVS, a->rows, a->cols, a, s, "div");
}

lj_expr *lj_expr_pow(lj_context *ctx, lj_expr *a, double p)
{
    if (check_in(ctx, "pow", a, NULL, 1) != LJ_OK) return NULL;
    if (!isfinite(p)) {
        lji_error(ctx, LJ_ERR_DOMAIN, "pow: exponent is not finite");
        return NULL;
    }
    lj_expr *e = node_new(ctx, LJI_E_POW, a->rows, a->cols, a, NULL, "pow");
    if (e) e->p = p;
    return e;
}

lj_expr *lj_expr_kron(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    if (check_in(ctx, "kron", a, b, 2) != LJ_OK) return NULL;
    int64_t r, c;
    if (!lji_mul_ok(a->rows, b->rows, &r) || !lji_mul_ok(a->cols, b->cols, &c) || !lji_size_ok(r, c, NULL)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "kron: " LJI_SHP " ⊗ " LJI_SHP " overflows", a->rows, a->cols,
                  b->rows, b->cols);
        return NULL;
    }
    return node_new(ctx, LJI_E_KRON, r, c, a, b, "kron");
}

lj_expr *lj_expr_transpose(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "transpose", a, NULL, 1) != LJ_OK) return NULL;
    return node_new(ctx, LJI_E_T, a->cols, a->rows, a, NULL, "transpose");
}

static lj_expr *square_op(lj_context *ctx, lji_eop op, const char *name, lj_expr *a, bool scalar_out)
{
    if (check_in(ctx, name, a, NULL, 1) != LJ_OK) return NULL;
    if (a->rows != a->cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: matrix must be square, not " LJI_SHP, name, a->rows, a->cols);
        return NULL;
    }
    return node_new(ctx, op, scalar_out ? 1 : a->rows, scalar_out ? 1 : a->cols, a, NULL, name);
}

lj_expr *lj_expr_trace(lj_context *ctx, lj_expr *a) { return square_op(ctx, LJI_E_TR, "tr", a, true); }
lj_expr *lj_expr_inv(lj_context *ctx, lj_expr *a) { return square_op(ctx, LJI_E_INV, "inv", a, false); }
lj_expr *lj_expr_det(lj_context *ctx, lj_expr *a) { return square_op(ctx, LJI_E_DET, "det", a, true); }
lj_expr *lj_expr_logdet(lj_context *ctx, lj_expr *a)
{
    return square_op(ctx, LJI_E_LOGDET, "logdet", a, true);
}

lj_expr *lj_expr_sum(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "sum", a, NULL, 1) != LJ_OK) return NULL;
    return node_new(ctx, LJI_E_SUM, 1, 1, a, NULL, "sum");
}

lj_expr *lj_expr_norm2(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "norm2", a, NULL, 1) != LJ_OK) return NULL;
    return node_new(ctx, LJI_E_NORM2, 1, 1, a, NULL, "norm2");
}

lj_expr *lj_expr_vec(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "vec", a, NULL, 1) != LJ_OK) return NULL;
    return node_new(ctx, LJI_E_VEC, a->rows * a->cols, 1, a, NULL, "vec");
}

lj_expr *lj_expr_diag(lj_context *ctx, lj_expr *a)
{
    if (check_in(ctx, "diag", a, NULL, 1) != LJ_OK) return NULL;
    if (a->rows == 1 || a->cols == 1) {
        int64_t n = a->rows * a->cols;
        if (!lji_size_ok(n, n, NULL)) {
            lji_error(ctx, LJ_ERR_OVERFLOW, "diag: (%" PRId64 "×%" PRId64 ") overflows", n, n);
            return NULL;
        }
        return node_new(ctx, LJI_E_DIAG, n, n, a, NULL, "diag");
    }
    if (a->rows != a->cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "diag: needs a vector or a square matrix, not " LJI_SHP, a->rows,
                  a->cols);
        return NULL;
    }
    return node_new(ctx, LJI_E_DIAG, a->rows, 1, a, NULL, "diag");
}

lj_expr *lj_expr_func(lj_context *ctx, lj_func f, lj_expr *a)
{
    if (check_in(ctx, "func", a, NULL, 1) != LJ_OK) return NULL;
    if ((int)f < LJ_FN_EXP || (int)f > LJ_FN_SQRT) {
        lji_error(ctx, LJ_ERR_INVALID, "func: unknown function %d", (int)f);
        return NULL;
    }
    lj_expr *e = node_new(ctx, LJI_E_FUNC, a->rows, a->cols, a, NULL, "func");
    if (e) e->fn = f;
    return e;
}

/* ---- printing ------------------------------------------------------------------ */

static const char *fn_name(lj_func f)
{
    static const char *n[] = { "exp", "log", "sin", "cos", "tanh", "sqrt" };
    return n[f];
}

/* levels: 1 sum, 2 term, 3 unary, 4 power, 5 postfix, 6 primary */
void lji_expr_write(lji_buf *b, const lj_expr *e, int level)
{
    if (b->truncated) return; /* a label's length limit was reached: stop the walk */
    int mine;
    switch (e->op) {
    case LJI_E_ADD: case LJI_E_SUB: mine = 1; break;
    case LJI_E_MUL: case LJI_E_HAD: case LJI_E_HDIV: case LJI_E_DIVS: case LJI_E_SCALE: mine = 2; break;
    case LJI_E_NEG: mine = 3; break;
    case LJI_E_POW: mine = 4; break;
    case LJI_E_T: mine = 5; break;
    case LJI_E_CONST: mine = e->name ? 6 : (e->value[0] < 0 ? 3 : 6); break;
    default: mine = 6;
    }
    bool paren = mine < level;
    lji_put_open(b, paren);
    switch (e->op) {
    case LJI_E_VAR:
    case LJI_E_CONST:
        if (e->name) lji_buf_puts(b, e->name);
        else lji_buf_printf(b, b->math ? "%.6g" : "%.17g", e->value[0]);
        break;
    case LJI_E_ADD:
    case LJI_E_SUB:
        lji_expr_write(b, e->a, 1);
        lji_buf_puts(b, e->op == LJI_E_ADD ? " + " : b->math ? " − " : " - ");
        lji_expr_write(b, e->b, 2);
        break;
    case LJI_E_MUL: case LJI_E_HAD: case LJI_E_HDIV: case LJI_E_DIVS: {
        /* math notation (labels of printed operators) or the language */
        const char *s = b->math ? (e->op == LJI_E_MUL ? "·" : e->op == LJI_E_HAD ? " ∘ " : e->op == LJI_E_HDIV ? " ⊘ " : "/")
                                : (e->op == LJI_E_MUL ? "*" : e->op == LJI_E_HAD ? ".*" : e->op == LJI_E_HDIV ? "./" : "/");
        lji_expr_write(b, e->a, 2);
        lji_buf_puts(b, s);
        lji_expr_write(b, e->b, 3);
        break;
    }
    case LJI_E_SCALE:
        lji_buf_printf(b, b->math ? "%.6g·" : "%.17g*", e->p);
        lji_expr_write(b, e->a, 3);
        break;
    case LJI_E_NEG:
        lji_buf_puts(b, b->math ? "−" : "-");
        lji_expr_write(b, e->a, 3);
        break;
    case LJI_E_POW:
        lji_expr_write(b, e->a, 5);
        lji_buf_printf(b, e->p < 0 ? ".^(%.17g)" : ".^%.17g", e->p);
        break;
    case LJI_E_T:
        lji_expr_write(b, e->a, 5);
        lji_buf_puts(b, b->math ? "^T" : "'");
        break;
    case LJI_E_KRON:
        lji_buf_puts(b, "kron(");
        lji_expr_write(b, e->a, 1);
        lji_buf_puts(b, ", ");
        lji_expr_write(b, e->b, 1);
        lji_buf_puts(b, ")");
        break;
    default: {
        const char *f = e->op == LJI_E_TR ? "tr" : e->op == LJI_E_SUM ? "sum" : e->op == LJI_E_VEC ? "vec"
                      : e->op == LJI_E_DIAG ? "diag" : e->op == LJI_E_INV ? "inv" : e->op == LJI_E_DET ? "det"
                      : e->op == LJI_E_LOGDET ? "logdet" : e->op == LJI_E_NORM2 ? "norm2" : fn_name(e->fn);
        lji_buf_printf(b, "%s(", f);
        lji_expr_write(b, e->a, 1);
        lji_buf_puts(b, ")");
    }
    }
    lji_put_close(b, paren);
}

char *lj_expr_print(lj_context *ctx, const lj_expr *e)
{
    if (check_in(ctx, "expr_print", e, NULL, 1) != LJ_OK) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    lji_expr_write(&b, e, 1);
    return lji_buf_finish(&b, "expr_print");
}

/* Labels are capped, so that the labels of a deep expression's nodes cost
 * constant time each; a cut label ends in "…". */
#define LJI_LABEL_MAX 48

char *lji_expr_label(lj_context *ctx, const lj_expr *e)
{
    lji_buf b;
    lji_buf_init(&b, ctx);
    bool compound = !(e->op == LJI_E_VAR || (e->op == LJI_E_CONST && e->name));
    lji_put_open(&b, compound);
    b.math = true;
    b.limit = LJI_LABEL_MAX;
    lji_expr_write(&b, e, 1);
    bool cut = b.truncated;
    b.limit = 0;
    if (cut && !b.failed) {
        b.len = lji_utf8_prefix(b.s, LJI_LABEL_MAX);
        b.s[b.len] = '\0';
        lji_buf_puts(&b, "…");
    }
    lji_put_close(&b, compound);
    return lji_buf_finish(&b, "label");
}

/* ---- topological order --------------------------------------------------------- */

static uint64_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

int64_t lji_topo_find(const lji_topo *t, const lj_expr *e)
{
    uint64_t h = ptr_hash(e) & (uint64_t)(t->cap - 1);
    while (t->key[h]) {
        if (t->key[h] == e) return t->idx[h];
        h = (h + 1) & (uint64_t)(t->cap - 1);
    }
    return -1;
}

static bool topo_insert(lj_context *ctx, lji_topo *t, const lj_expr *e)
{
    if (2 * (t->n + 1) > t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 64;
        const lj_expr **key = lji_calloc(ctx, (size_t)cap, sizeof *key);
        int64_t *idx = lji_calloc(ctx, (size_t)cap, sizeof *idx);
        const lj_expr **node = lji_realloc(ctx, t->node, (size_t)cap * sizeof *node);
        if (!key || !idx || !node) {
            free(key);
            free(idx);
            if (node) t->node = node;
            return false;
        }
        t->node = node;
        for (int64_t i = 0; i < t->cap; i++)
            if (t->key[i]) {
                uint64_t h = ptr_hash(t->key[i]) & (uint64_t)(cap - 1);
                while (key[h]) h = (h + 1) & (uint64_t)(cap - 1);
                key[h] = t->key[i];
                idx[h] = t->idx[i];
            }
        free(t->key);
        free(t->idx);
        t->key = key;
        t->idx = idx;
        t->cap = cap;
    }
    uint64_t h = ptr_hash(e) & (uint64_t)(t->cap - 1);
    while (t->key[h]) h = (h + 1) & (uint64_t)(t->cap - 1);
    t->key[h] = e;
    t->idx[h] = t->n;
    t->node[t->n++] = e;
    return true;
}

/* Iterative post-order walk with an explicit stack (long chains must not
 * exhaust the C stack). */
lj_status lji_topo_build(lj_context *ctx, const lj_expr *e, lji_topo *t)
{
    memset(t, 0, sizeof *t);
    typedef struct { const lj_expr *e; int state; } frame;
    int64_t cap = 64, sp = 0;
    frame *st = lji_malloc(ctx, (size_t)cap * sizeof *st);
    if (!st) return lji_nomem(ctx, "topo");
    st[sp++] = (frame){ e, 0 };
    while (sp > 0) {
        frame *f = &st[sp - 1];
        if (f->state == 0 && t->cap && lji_topo_find(t, f->e) >= 0) {
            sp--;
            continue;
        }
        const lj_expr *child = NULL;
        if (f->state == 0) child = f->e->a;
        else if (f->state == 1) child = f->e->b;
        f->state++;
        if (f->state <= 2) {
            if (child && (!t->cap || lji_topo_find(t, child) < 0)) {
                if (sp == cap) {
                    frame *ns = lji_realloc(ctx, st, (size_t)(2 * cap) * sizeof *ns);
                    if (!ns) goto nomem;
                    st = ns;
                    cap *= 2;
                }
                st[sp++] = (frame){ child, 0 };
            }
            continue;
        }
        if (!topo_insert(ctx, t, f->e)) goto nomem;
        sp--;
    }
    free(st);
    return LJ_OK;
nomem:
    free(st);
    lji_topo_free(t);
    return lji_nomem(ctx, "topo");
}

void lji_topo_free(lji_topo *t)
{
    free(t->node);
    free(t->key);
    free(t->idx);
    memset(t, 0, sizeof *t);
}
