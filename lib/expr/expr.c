/* Expression nodes: constructors with shape checks, reference counting,
 * printing in the expression language, and the topological order. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

lj_expr *lji_node_new(lj_context *ctx, const lji_opdef *def, int64_t rows, int64_t cols, lj_expr *a,
                      lj_expr *b)
{
    lj_expr *e = lji_calloc(ctx, 1, sizeof *e);
    if (!e) {
        lji_nomem(ctx, def->name);
        return NULL;
    }
    e->magic = LJI_EXPR_MAGIC;
    atomic_init(&e->refs, 1);
    e->def = def;
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
    if (!lji_unref(&e->refs)) return;
    e->next = NULL;
    lj_expr *work = e;
    while (work) {
        lj_expr *x = work;
        work = x->next;
        lj_expr *children[2] = { x->a, x->b };
        for (int i = 0; i < 2; i++) {
            lj_expr *c = children[i];
            if (c && lji_expr_ok(c) && lji_unref(&c->refs)) {
                c->next = work;
                work = c;
            }
        }
        free(x->name);
        free(x->plabel);
        if (x->vblk) lji_vblock_release(&x->vblk);
        else if (!x->borrowed) free(x->value);
        lji_pat_free(&x->pat);
        free(x->map[0]);
        free(x->map[1]);
        x->magic = LJI_DEAD_MAGIC;
        free(x);
    }
}

int64_t lj_expr_rows(const lj_expr *e) { return lji_expr_ok(e) ? e->rows : -1; }
int64_t lj_expr_cols(const lj_expr *e) { return lji_expr_ok(e) ? e->cols : -1; }
const char *lj_expr_name(const lj_expr *e) { return lji_expr_ok(e) ? e->name : NULL; }
int lj_expr_is_var(const lj_expr *e) { return lji_expr_ok(e) && lji_is_var(e); }

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

lj_expr *lji_leaf_shell(lj_context *ctx, const lji_opdef *def, const char *opname, const char *name,
                        int64_t rows, int64_t cols)
{
    bool var = def == &lji_op_var;
    if (name && !valid_name(name)) {
        lji_error(ctx, LJ_ERR_NAME, "%s: '%s' is not a valid name", opname, name);
        return NULL;
    }
    if (var && !name) {
        lji_error(ctx, LJ_ERR_NAME, "%s: a variable needs a name", opname);
        return NULL;
    }
    lj_expr *e = lji_node_new(ctx, def, rows, cols, NULL, NULL);
    if (!e) return NULL;
    e->name = name ? lji_strdup(ctx, name) : NULL;
    if (name && !e->name) {
        lj_expr_free(&e);
        lji_nomem(ctx, opname);
        return NULL;
    }
    return e;
}

static lj_expr *leaf(lj_context *ctx, const lji_opdef *def, const char *name, int64_t rows,
                     int64_t cols, const double *values)
{
    const char *opname = def->name;
    if (!lji_ctx_ok(ctx)) return NULL;
    int64_t n;
    if (rows < 0 || cols < 0 || !lji_size_ok(rows, cols, &n)) {
        if (name && !valid_name(name)) {
            lji_error(ctx, LJ_ERR_NAME, "%s: '%s' is not a valid name", opname, name);
            return NULL;
        }
        lji_error(ctx, rows < 0 || cols < 0 ? LJ_ERR_SHAPE : LJ_ERR_OVERFLOW,
                  "%s: bad shape " LJI_SHP " for '%s'", opname, rows, cols, name ? name : "?");
        return NULL;
    }
    lj_expr *e = lji_leaf_shell(ctx, def, opname, name, rows, cols);
    if (!e) return NULL;
    e->vblk = lji_vblock_new(ctx, n);
    e->value = e->vblk ? lji_vblock_data(e->vblk) : NULL;
    if (!e->value) {
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
    return leaf(ctx, &lji_op_var, name, rows, cols, values);
}

lj_expr *lj_expr_const(lj_context *ctx, const char *name, int64_t rows, int64_t cols,
                       const double *values)
{
    return leaf(ctx, &lji_op_const, name, rows, cols, values);
}

lj_expr *lj_expr_scalar(lj_context *ctx, double value)
{
    if (lji_ctx_ok(ctx) && !isfinite(value)) {
        lji_error(ctx, LJ_ERR_DOMAIN, "scalar: value is not finite");
        return NULL;
    }
    return leaf(ctx, &lji_op_const, NULL, 1, 1, &value);
}

lj_status lj_expr_set_value(lj_context *ctx, lj_expr *e, const double *values)
{
    lj_status st = check_in(ctx, "set_value", e, NULL, 1);
    if (st != LJ_OK) return st;
    if (!lji_is_leaf(e)) return lji_error(ctx, LJ_ERR_INVALID, "set_value: not a leaf");
    int64_t mn = lji_vlen(e);
    if (!values && mn > 0)
        return lji_error(ctx, LJ_ERR_INVALID, "set_value: NULL values for '%s'", e->name ? e->name : "?");
    int64_t bad[2];
    if (e->symm && !lji_values_symmetric(e, values, bad))
        return lji_error(ctx, LJ_ERR_INVALID, "set_value: '%s' " LJI_SHP " is declared symmetric, the new values "
                         "are not (entries (%" PRId64 ",%" PRId64 ") and (%" PRId64 ",%" PRId64 ") differ); "
                         "values unchanged", e->name ? e->name : "?", e->rows, e->cols, bad[0], bad[1], bad[1],
                         bad[0]);
    if (mn > 0 && values != e->value) {
        /* operators reading the old values in place keep them */
        st = lji_leaf_own(ctx, e, "set_value");
        if (st != LJ_OK) return st;
        memmove(e->value, values, (size_t)mn * sizeof(double));
    }
    e->version++;
    return LJ_OK;
}

lj_status lji_leaf_own(lj_context *ctx, lj_expr *e, const char *op)
{
    if (!e->vblk || !lji_vblock_shared(e->vblk)) return LJ_OK;
    lji_vblock *b = lji_vblock_new(ctx, e->vblk->n);
    if (!b)
        return lji_error(ctx, LJ_ERR_NOMEM, "%s: out of memory for a copy of the values of '%s' " LJI_SHP
                         " (operators hold the old ones)", op, e->name ? e->name : "?", e->rows, e->cols);
    double *x = lji_vblock_data(b);
    if (b->n) memcpy(x, e->value, (size_t)b->n * sizeof *x);
    lji_vblock_release(&e->vblk);
    e->vblk = b;
    e->value = x;
    return LJ_OK;
}

bool lji_values_symmetric(const lj_expr *e, const double *x, int64_t bad[2])
{
    int64_t n = e->rows;
    if (e->pat) {
        const lji_pat *p = e->pat;
        for (int64_t j = 0; j < n; j++)
            for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
                int64_t i = p->i[q];
                if (i == j) continue;
                int64_t t = lji_pat_find(p, j, i);
                if (t < 0 || !(x[t] == x[q])) {
                    bad[0] = i + 1, bad[1] = j + 1;
                    return false;
                }
            }
        return true;
    }
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = j + 1; i < n; i++)
            if (!(x[i + j * n] == x[j + i * n])) {
                bad[0] = i + 1, bad[1] = j + 1;
                return false;
            }
    return true;
}

lj_status lj_expr_declare_symmetric(lj_context *ctx, lj_expr *e)
{
    const char *op = "declare_symmetric";
    lj_status st = check_in(ctx, op, e, NULL, 1);
    if (st != LJ_OK) return st;
    if (!lji_is_leaf(e) || lji_is_var(e))
        return lji_error(ctx, LJ_ERR_INVALID, "%s: %s is not a constant leaf", op,
                         lji_is_var(e) ? "a variable" : "an operation");
    if (e->rows != e->cols)
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: '%s' is " LJI_SHP ", not square", op, e->name ? e->name : "?",
                         e->rows, e->cols);
    int64_t bad[2];
    if (!lji_values_symmetric(e, e->value, bad))
        return lji_error(ctx, LJ_ERR_INVALID, "%s: '%s' " LJI_SHP " is not symmetric: entries (%" PRId64 ",%" PRId64
                         ") and (%" PRId64 ",%" PRId64 ") differ", op, e->name ? e->name : "?", e->rows, e->cols,
                         bad[0], bad[1], bad[1], bad[0]);
    e->symm = true;
    return LJ_OK;
}

int lj_expr_is_symmetric(const lj_expr *e) { return lji_expr_ok(e) && e->symm; }

lj_expr *lji_expr_unary(lj_context *ctx, const lji_opdef *d, lj_expr *a)
{
    return lji_expr_binary(ctx, d, a, NULL);
}

/* Operands checked, the entry's shape rule applied, the node made. */
lj_expr *lji_expr_binary(lj_context *ctx, const lji_opdef *d, lj_expr *a, lj_expr *b)
{
    if (check_in(ctx, d->name, a, b, d->arity) != LJ_OK) return NULL;
    int64_t r, c;
    if (d->shape(ctx, d, a, b, &r, &c) != LJ_OK) return NULL;
    lj_expr *e = lji_node_new(ctx, d, r, c, a, b);
    if (e && lji_sparse_node(ctx, e) != LJ_OK) lj_expr_free(&e);
    return e;
}

lj_expr *lj_expr_add(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_add, a, b); }
lj_expr *lj_expr_sub(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_sub, a, b); }
lj_expr *lj_expr_hadamard(lj_context *ctx, lj_expr *a, lj_expr *b)
{
    return lji_expr_binary(ctx, &lji_op_hadamard, a, b);
}
lj_expr *lj_expr_hdiv(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_hdiv, a, b); }
lj_expr *lj_expr_max(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_max, a, b); }
lj_expr *lj_expr_min(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_min, a, b); }
lj_expr *lj_expr_mul(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_mul, a, b); }
lj_expr *lj_expr_kron(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_kron, a, b); }
lj_expr *lj_expr_div_scalar(lj_context *ctx, lj_expr *a, lj_expr *s)
{
    return lji_expr_binary(ctx, &lji_op_divs, a, s);
}
lj_expr *lj_expr_power(lj_context *ctx, lj_expr *a, lj_expr *b) { return lji_expr_binary(ctx, &lji_op_power, a, b); }

/* The product for base^n, each of its nodes marked to print as a power. */
static lj_expr *power_mark(lj_expr *e, const lj_expr *base, int64_t n)
{
    if (e && e != base && !e->pbase && e->def == &lji_op_mul) {
        e->pbase = base;
        e->pn = n;
    }
    return e;
}

/* A^n by repeated squaring over shared nodes: at most 2·log2(n) products,
 * each printing as the power it holds (A^2, A^4, ...), so the whole prints
 * as A^n. A^0 is the identity; A^-n is inv(A)^n, printed A^-n. */
lj_expr *lj_expr_mpower(lj_context *ctx, lj_expr *a, int64_t n)
{
    if (check_in(ctx, "mpower", a, NULL, 1) != LJ_OK) return NULL;
    if (a->rows != a->cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "mpower: a matrix power needs a square matrix, not " LJI_SHP "^%" PRId64,
                  a->rows, a->cols, n);
        return NULL;
    }
    if (n < -LJ_MPOWER_MAX || n > LJ_MPOWER_MAX) {
        lji_error(ctx, LJ_ERR_SHAPE, "mpower: the exponent %" PRId64 " is outside %d..%d", n, -LJ_MPOWER_MAX,
                  LJ_MPOWER_MAX);
        return NULL;
    }
    if (n == 0) return lj_expr_eye(ctx, a->rows);
    lj_expr *base = n < 0 ? lj_expr_inv(ctx, a) : lj_expr_retain(a);
    if (!base) return NULL;
    int64_t sign = n < 0 ? -1 : 1;
    uint64_t k = (uint64_t)(n < 0 ? -n : n), have = 0, sqp = 1;
    lj_expr *result = NULL, *sq = lj_expr_retain(base);
    for (; k && sq; k >>= 1) {
        if (k & 1) {
            lj_expr *r = result ? lj_expr_mul(ctx, result, sq) : lj_expr_retain(sq);
            lj_expr_free(&result);
            have += sqp;
            if (!(result = power_mark(r, a, sign * (int64_t)have))) break;
        }
        if (k > 1) {
            lj_expr *s2 = lj_expr_mul(ctx, sq, sq);
            lj_expr_free(&sq);
            sqp *= 2;
            sq = power_mark(s2, a, sign * (int64_t)sqp);
        }
    }
    if (!sq) lj_expr_free(&result);
    lj_expr_free(&sq);
    lj_expr_free(&base);
    return result;
}

lj_expr *lj_expr_neg(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_neg, a); }
lj_expr *lj_expr_transpose(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_transpose, a); }
lj_expr *lj_expr_trace(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_trace, a); }
lj_expr *lj_expr_inv(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_inv, a); }
lj_expr *lj_expr_det(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_det, a); }
lj_expr *lj_expr_logdet(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_logdet, a); }
lj_expr *lj_expr_sum(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_sum, a); }
lj_expr *lj_expr_norm1(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_norm1, a); }
lj_expr *lj_expr_norm2(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_norm2, a); }
lj_expr *lj_expr_vec(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_vec, a); }
lj_expr *lj_expr_diag(lj_context *ctx, lj_expr *a) { return lji_expr_unary(ctx, &lji_op_diag, a); }

/* the operations with a number in the node */
static lj_expr *with_number(lj_context *ctx, const lji_opdef *d, double p, lj_expr *a, const char *what)
{
    if (check_in(ctx, d->name, a, NULL, 1) != LJ_OK) return NULL;
    if (!isfinite(p)) {
        lji_error(ctx, LJ_ERR_DOMAIN, "%s: %s is not finite", d->name, what);
        return NULL;
    }
    lj_expr *e = lji_expr_unary(ctx, d, a);
    if (e) e->p = p;
    if (e && lji_sparse_node(ctx, e) != LJ_OK) lj_expr_free(&e); /* .^p keeps a pattern for p > 0 */
    return e;
}

lj_expr *lj_expr_scale(lj_context *ctx, double alpha, lj_expr *a)
{
    return with_number(ctx, &lji_op_scale, alpha, a, "factor");
}

lj_expr *lj_expr_pow(lj_context *ctx, lj_expr *a, double p)
{
    return with_number(ctx, &lji_op_pow, p, a, "exponent");
}

lj_expr *lj_expr_func(lj_context *ctx, lj_func f, lj_expr *a)
{
    if (check_in(ctx, "func", a, NULL, 1) != LJ_OK) return NULL;
    if ((int)f < 0 || (int)f >= lji_n_funcs) {
        lji_error(ctx, LJ_ERR_INVALID, "func: unknown function %d", (int)f);
        return NULL;
    }
    return lji_expr_unary(ctx, lji_func_defs[f], a);
}

lj_expr *lj_expr_eye(lj_context *ctx, int64_t n)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (n < 0 || !lji_size_ok(n, n, NULL)) {
        lji_error(ctx, n < 0 ? LJ_ERR_SHAPE : LJ_ERR_OVERFLOW, "eye: bad size %" PRId64, n);
        return NULL;
    }
    return lji_node_new(ctx, &lji_op_eye, n, n, NULL, NULL);
}

/* ---- printing ------------------------------------------------------------------ */

/* An infix operation written at `level` without parentheses of its own. */
static bool same_infix_level(const lj_expr *e, int level)
{
    const lji_opdef *d = e->def;
    return !d->function && !d->write && d->arity == 2 && d->level == level;
}

/* In a label, a matrix product whose left operand is a Hadamard product
 * or quotient: that operand is bracketed, (C ∘ B)·D. The language reads
 * C.*B*D left to right, but a label's factors are read with · binding
 * tighter than ∘, and C ∘ B·D would be C ∘ (B·D). */
static bool mixed_left(const lji_buf *b, const lj_expr *x)
{
    if (!b->math || x->def != &lji_op_mul || (x->b->rows == 1 && x->b->cols == 1)) return false;
    const lj_expr *a = x->a;
    while (a->def == &lji_op_neg && !a->pbase) a = a->a; /* −(C ∘ B)·D */
    return (a->def == &lji_op_hadamard || a->def == &lji_op_hdiv) && !a->pbase;
}

/* the level e is written at */
static int written_level(const lj_expr *e)
{
    if (e->def == &lji_op_const && !e->name && e->value[0] < 0) return 3; /* a negative number */
    if (e->pbase) return 4;                                              /* a matrix power */
    return e->def->level;
}

/* In a label a transpose of a negation reads as a negation, (−x)^T as
 * −x^T: how many minus signs lie under e's chain of transposes (an odd
 * number writes one), 0 for other nodes and outside labels. */
static int lji_label_transposed_negs(const lji_buf *b, const lj_expr *e)
{
    if (!b->math || e->def != &lji_op_transpose || e->pbase) return 0;
    const lj_expr *x = e->a;
    while (x->def == &lji_op_transpose && !x->pbase) x = x->a;
    int k = 0;
    for (; x->def == &lji_op_neg && !x->pbase; x = x->a) k++;
    return k;
}

/* the level e is written at into b: −x^T is a unary minus, unless its
 * chain writes the minus sign (drop_minus) */
static int label_level(const lji_buf *b, const lj_expr *e)
{
    if (!b->drop_minus && lji_label_transposed_negs(b, e) % 2) return 3;
    if (b->math && e->def == &lji_op_vec && lji_is_leaf(e->a) && e->a->name) return 4; /* (vec X)^T, a·vec X */
    return written_level(e);
}

/* A chain of terms (a·b·c, a ∘ b / s): how many of its right operands are
 * negated, and its first operand in *first. In labels the minus signs
 * come out in front: x^T·(−A) reads −x^T·A, a·(−b)·(−c) a·b·c, and
 * A·(−x)^T −A·x^T. */
static int64_t negated_operands(const lji_buf *b, const lj_expr *e, const lj_expr **first)
{
    int64_t k = 0;
    for (;; e = e->a) {
        const lj_expr *r = e->b;
        for (; r->def == &lji_op_neg; r = r->a) k++;
        k += lji_label_transposed_negs(b, r) % 2;
        if (!same_infix_level(e->a, 2) || e->a->pbase || mixed_left(b, e)) break;
    }
    *first = e->a;
    return k;
}

/* Whether e, written into b, starts with a minus sign: −A, −2, −2·A, and
 * a chain whose first operand does (−A·B + C), or in labels a chain of
 * terms with an odd number of negated operands. A right operand that does
 * is bracketed: A − (−B·A), x^T·(−A). */
/* whether a chain of terms ends (down its left spine) in a bracketed
 * Hadamard operand of a matrix product (mixed_left), and so writes the
 * minus signs of that operand only (*minus: an odd number of them); the
 * others stay where they are */
static bool chain_bottom_mixed(const lji_buf *b, const lj_expr *e, bool *minus)
{
    for (;; e = e->a) {
        if (mixed_left(b, e)) {
            int n = 0;
            for (const lj_expr *a = e->a; a->def == &lji_op_neg; a = a->a) n++;
            *minus = n % 2;
            return true;
        }
        if (!same_infix_level(e->a, 2) || e->a->pbase) return false;
    }
}

bool lji_expr_writes_minus(const lji_buf *b, const lj_expr *e)
{
    for (;;) {
        const lji_opdef *d = e->def;
        if (d == &lji_op_neg || (d == &lji_op_scale && e->p < 0) || (d == &lji_op_const && !e->name && e->value[0] < 0) ||
            lji_label_transposed_negs(b, e) % 2)
            return true;
        if (e->pbase || !same_infix_level(e, d->level)) return false;
        const lj_expr *first = e->a;
        bool minus;
        if (b->math && d->level == 2 && chain_bottom_mixed(b, e, &minus)) return minus; /* −(a ∘ b)·D */
        if (b->math && d->level == 2 && negated_operands(b, e, &first) % 2) return true;
        if (label_level(b, first) < d->level) return false; /* bracketed */
        e = first;
    }
}

/* The operand of a chain of products at position i from the left (spine
 * as lji_expr_write walks it: spine[depth] the innermost product) */
static const lj_expr *chain_operand(const lj_expr *e, const lj_expr *const *spine, int64_t depth, int64_t i)
{
    if (i == 0) return spine ? spine[depth]->a : e->a;
    return spine ? spine[depth - (i - 1)]->b : e->b;
}

/* one operand twice: one node, or transposes of one node (X' written twice) */
static bool same_operand(const lj_expr *a, const lj_expr *b)
{
    return a == b || (a->def == &lji_op_transpose && b->def == &lji_op_transpose && !a->pbase && !b->pbase && a->a == b->a);
}

/* In a label, a chain of products with one operand twice or more in a
 * row writes it as a power: J of X*X*X has X^2 ⊗ …, as the products it
 * multiplies out print (X·X·X would stand beside (X^2)^T). false, and
 * nothing written, where no operand repeats. */
static bool write_powers(lji_buf *b, const lj_expr *e, const lj_expr *const *spine, int64_t depth, int mine)
{
    int64_t n = depth + 2;
    for (int64_t k = 0; k <= depth && spine; k++)
        if (spine[k]->def != &lji_op_mul) return false; /* s/s·x: a quotient in the chain */
    bool repeats = false;
    for (int64_t i = 1; i < n && !repeats; i++)
        repeats = same_operand(chain_operand(e, spine, depth, i), chain_operand(e, spine, depth, i - 1));
    if (!repeats) return false;
    for (int64_t i = 0; i < n && !b->truncated;) {
        const lj_expr *o = chain_operand(e, spine, depth, i);
        int64_t k = 1;
        while (i + k < n && same_operand(chain_operand(e, spine, depth, i + k), o)) k++;
        if (i) lji_buf_puts(b, "·");
        if (k > 1) { /* X^2, sin(X)^2, (A + B)^2, (X^T)^2 */
            lji_expr_write(b, o, 6);
            lji_buf_printf(b, "^%" PRId64, k);
        } else
            lji_expr_write(b, o, i == 0 ? mine : lji_expr_writes_minus(b, o) ? 4 : mine + 1);
        i += k;
    }
    return true;
}

/* levels: 1 sum, 2 term, 3 unary, 4 power, 5 postfix, 6 primary */
void lji_expr_write(lji_buf *b, const lj_expr *e, int level)
{
    if (b->truncated) return; /* a label's length limit was reached: stop the walk */
    const lji_opdef *d = e->def;
    int mine = label_level(b, e);
    bool paren = mine < level;
    lji_put_open(b, paren);
    if (e->pbase) {
        /* in labels a transpose's power is bracketed, (A^T)^2: A^T^2 reads
         * as a double exponent, and its transpose A^T^2^T as A^T^(2^T) */
        lji_expr_write(b, e->pbase, b->math && e->pbase->def == &lji_op_transpose && !e->pbase->pbase ? 6 : 5);
        lji_buf_printf(b, "^%" PRId64, e->pn);
    } else if (d->write)
        d->write(b, e);
    else if (b->math && d == &lji_op_vec && lji_is_leaf(e->a) && e->a->name) { /* vec X in labels */
        lji_buf_printf(b, "vec %s", e->a->name);
    } else if (d->function) { /* name(a) or name(a, b); σ(a) in labels, as the derivatives' */
        lji_buf_printf(b, "%s(", b->math && d == lji_func_defs[LJ_FN_SIGMOID] ? "σ" : d->name);
        lji_expr_write(b, e->a, 1);
        if (e->b) {
            lji_buf_puts(b, ", ");
            lji_expr_write(b, e->b, 1);
        }
        lji_buf_puts(b, ")");
    } else { /* infix: left-associative, the right operand binds one level tighter */
        /* a left-deep chain (a long sum or product) is walked down its left
         * spine without recursion, then written from its bottom up */
        int64_t depth = 0;
        for (const lj_expr *x = e; same_infix_level(x->a, mine) && !x->a->pbase && !mixed_left(b, x); x = x->a)
            depth++; /* X^3·A */
        const lj_expr **spine = depth ? lji_malloc(b->ctx, (size_t)(depth + 1) * sizeof *spine) : NULL;
        if (depth && !spine) {
            b->failed = true;
            return;
        }
        const lj_expr *x = e;
        for (int64_t k = 0; k < depth; k++, x = x->a) spine[k] = x;
        if (spine) spine[depth] = x;
        /* in a label, a chain of terms writes its negated operands' minus
         * signs in front (one, or none for two), unless its first operand
         * has one of its own and the count is odd */
        bool strip = false, drop = false, mixed = mixed_left(b, x);
        const lj_expr *first = x->a;
        if (b->math && mine == 2 && !mixed) {
            int64_t k = negated_operands(b, e, &first);
            bool own = label_level(b, first) >= mine && lji_expr_writes_minus(b, first);
            while (own && first->def == &lji_op_neg) { /* (−a)·(−b) is a·b */
                first = first->a, k++;
                own = label_level(b, first) >= mine && lji_expr_writes_minus(b, first);
            }
            if (own && lji_label_transposed_negs(b, first) % 2) { /* (−x)^T·A is −x^T·A */
                k++;
                own = false;
                drop = true;
            }
            strip = k > 0 && (k % 2 == 0 || !own);
            if (strip && k % 2) lji_buf_puts(b, "−");
            if (!strip) first = x->a, drop = false;
        }
        if (mixed) { /* (C ∘ B)·D, its minus signs in front: −(C ∘ B)·D */
            int n = 0;
            for (; first->def == &lji_op_neg; first = first->a) n++;
            if (n % 2) lji_buf_puts(b, "−");
        }
        if (b->math && d == &lji_op_mul && !strip && !mixed && write_powers(b, e, spine, depth, mine)) {
            free(spine);
            lji_put_close(b, paren);
            return;
        }
        b->drop_minus = drop;
        lji_expr_write(b, first, mixed ? mine + 1 : mine);
        for (int64_t k = depth; k >= 0 && !b->truncated; k--) {
            x = spine ? spine[k] : e;
            if (b->math) lji_buf_puts(b, x->def->msym);
            else if (mine == 1) lji_buf_printf(b, " %s ", x->def->sym);
            else lji_buf_puts(b, x->def->sym);
            /* a right operand that starts with a minus sign is bracketed:
             * x^T·(−A), a + (−2), A − (−B·A) */
            const lj_expr *r = x->b;
            while (strip && r->def == &lji_op_neg) r = r->a;
            bool drop_r = strip && lji_label_transposed_negs(b, r) % 2;
            int lr = !drop_r && lji_expr_writes_minus(b, r) ? 4 : mine + 1;
            b->drop_minus = drop_r;
            lji_expr_write(b, r, lr);
        }
        free(spine);
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
    /* a named leaf is its name, whole (what the walk below writes for it) */
    if (lji_is_leaf(e) && e->name) {
        char *l = lji_strdup(ctx, e->name);
        if (!l) lji_nomem(ctx, "label");
        return l;
    }
    lji_buf b;
    lji_buf_init(&b, ctx);
    bool number = e->def == &lji_op_const && !e->name && e->value[0] >= 0;
    /* a function call (inv(X)) is atomic as it stands, unless it was cut */
    bool call = e->def->function && (!e->def->write || e->def == &lji_op_inv) && !e->pbase; /* A^{-1} too */
    bool compound = !(lji_is_var(e) || (e->def == &lji_op_const && e->name) || number || e->def == &lji_op_fill);
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
    char *body = lji_buf_finish(&b, "label");
    if (!body || !compound || (call && !cut)) return body;
    lji_buf_init(&b, ctx);
    lji_buf_printf(&b, "(%s)", body);
    free(body);
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
    if (!t->key) { /* the inline order: a scan */
        for (int64_t i = 0; i < t->n; i++)
            if (t->node[i] == e) return i;
        return -1;
    }
    uint64_t h = ptr_hash(e) & (uint64_t)(t->cap - 1);
    while (t->key[h]) {
        if (t->key[h] == e) return t->idx[h];
        h = (h + 1) & (uint64_t)(t->cap - 1);
    }
    return -1;
}

/* key[h] <- e, idx[h] <- i, in a map of cap slots */
static void map_put(const lj_expr **key, int64_t *idx, int64_t cap, const lj_expr *e, int64_t i)
{
    uint64_t h = ptr_hash(e) & (uint64_t)(cap - 1);
    while (key[h]) h = (h + 1) & (uint64_t)(cap - 1);
    key[h] = e;
    idx[h] = i;
}

/* e, whose operands are in already at indices ka and kb (-1: none) */
static bool topo_insert(lj_context *ctx, lji_topo *t, const lj_expr *e, int64_t ka, int64_t kb)
{
    if (!t->node) { /* the struct's own arrays */
        t->node = t->node_in;
        t->kid = t->kid_in;
    }
    if (t->n == LJI_TOPO_INLINE && !t->key) { /* out of the inline arrays: to the heap, with a map */
        int64_t cap = 4 * LJI_TOPO_INLINE;
        const lj_expr **key = lji_calloc(ctx, (size_t)cap, sizeof *key);
        int64_t *idx = lji_calloc(ctx, (size_t)cap, sizeof *idx);
        const lj_expr **node = lji_malloc(ctx, (size_t)cap * sizeof *node);
        int64_t(*kid)[2] = lji_malloc(ctx, (size_t)cap * sizeof *kid);
        if (!key || !idx || !node || !kid) {
            free(key);
            free(idx);
            free(node);
            free(kid);
            return false;
        }
        memcpy(node, t->node_in, sizeof t->node_in);
        memcpy(kid, t->kid_in, sizeof t->kid_in);
        for (int64_t i = 0; i < t->n; i++) map_put(key, idx, cap, node[i], i);
        t->node = node;
        t->kid = kid;
        t->key = key;
        t->idx = idx;
        t->cap = cap;
    } else if (t->key && 2 * (t->n + 1) > t->cap) { /* the map at most half full */
        int64_t cap = 2 * t->cap;
        const lj_expr **key = lji_calloc(ctx, (size_t)cap, sizeof *key);
        int64_t *idx = lji_calloc(ctx, (size_t)cap, sizeof *idx);
        const lj_expr **node = lji_realloc(ctx, t->node, (size_t)cap * sizeof *node);
        if (node) t->node = node;
        int64_t(*kid)[2] = lji_realloc(ctx, t->kid, (size_t)cap * sizeof *kid);
        if (kid) t->kid = kid;
        if (!key || !idx || !node || !kid) {
            free(key);
            free(idx);
            return false;
        }
        for (int64_t i = 0; i < t->n; i++) map_put(key, idx, cap, t->node[i], i);
        free(t->key);
        free(t->idx);
        t->key = key;
        t->idx = idx;
        t->cap = cap;
    }
    t->kid[t->n][0] = ka;
    t->kid[t->n][1] = kb;
    if (t->key) map_put(t->key, t->idx, t->cap, e, t->n);
    t->node[t->n++] = e;
    return true;
}

/* Index of e in the inline arrays, appended with operands ka and kb where
 * it is not there yet; -2 when they are full */
static inline int64_t topo_small_put(lji_topo *t, const lj_expr *e, int64_t ka, int64_t kb)
{
    if (t->n == LJI_TOPO_INLINE) return -2;
    t->kid_in[t->n][0] = ka;
    t->kid_in[t->n][1] = kb;
    t->node_in[t->n] = e;
    return t->n++;
}

static inline int64_t topo_small_find(const lji_topo *t, const lj_expr *e)
{
    for (int64_t i = 0; i < t->n; i++)
        if (t->node_in[i] == e) return i;
    return -1;
}

/* The order of a small DAG, straight into the inline arrays: index of e,
 * or -2 when the DAG is deeper or larger than they hold (the caller then
 * walks it the general way; so the recursion is at most
 * LJI_TOPO_INLINE deep). Operands without operands of their own (the
 * leaves, half of most DAGs) are put in here, without a call. */
static int64_t topo_small(lji_topo *t, const lj_expr *e, int depth)
{
    int64_t k = topo_small_find(t, e);
    if (k >= 0) return k;
    if (depth == LJI_TOPO_INLINE) return -2;
    int64_t kid[2] = { -1, -1 };
    const lj_expr *op[2] = { e->a, e->b };
    for (int w = 0; w < 2; w++) {
        const lj_expr *c = op[w];
        if (!c) continue;
        if (c->a || c->b) kid[w] = topo_small(t, c, depth + 1);
        else if ((kid[w] = topo_small_find(t, c)) < 0) kid[w] = topo_small_put(t, c, -1, -1);
        if (kid[w] == -2) return -2;
    }
    return topo_small_put(t, e, kid[0], kid[1]);
}

/* A small DAG by topo_small; else an iterative post-order walk with an
 * explicit stack (long chains must not exhaust the C stack). A node goes
 * on the stack only when the map does not hold it, and is done before
 * anything else is inserted, so the map is asked once for each operand;
 * each frame collects its operands' indices as they are found or
 * inserted. */
lj_status lji_topo_build(lj_context *ctx, const lj_expr *e, lji_topo *t)
{
    t->key = NULL, t->idx = NULL;
    t->n = t->cap = 0;
    if (topo_small(t, e, 0) >= 0) {
        t->node = t->node_in;
        t->kid = t->kid_in;
        return LJ_OK;
    }
    /* the inline arrays are set as they are used */
    t->node = NULL, t->kid = NULL;
    t->n = 0;
    typedef struct { const lj_expr *e; int state; int64_t kid[2]; } frame;
    frame st_in[64]; /* on the C stack while the DAG is shallow */
    int64_t cap = 64, sp = 0;
    frame *st = st_in;
    st[sp++] = (frame){ e, 0, { -1, -1 } };
    while (sp > 0) {
        frame *f = &st[sp - 1];
        if (f->state < 2) {
            int w = f->state++;
            const lj_expr *child = w == 0 ? f->e->a : f->e->b;
            if (!child) continue;
            int64_t k = lji_topo_find(t, child);
            if (k >= 0) {
                f->kid[w] = k;
                continue;
            }
            if (sp == cap) {
                frame *ns = st == st_in ? lji_malloc(ctx, (size_t)(2 * cap) * sizeof *ns)
                                        : lji_realloc(ctx, st, (size_t)(2 * cap) * sizeof *ns);
                if (!ns) goto nomem;
                if (st == st_in) memcpy(ns, st_in, sizeof st_in);
                st = ns;
                cap *= 2;
            }
            st[sp++] = (frame){ child, 0, { -1, -1 } };
            continue;
        }
        if (!topo_insert(ctx, t, f->e, f->kid[0], f->kid[1])) goto nomem;
        sp--;
        if (sp > 0) st[sp - 1].kid[st[sp - 1].state - 1] = t->n - 1; /* the operand just inserted */
    }
    if (st != st_in) free(st);
    return LJ_OK;
nomem:
    if (st != st_in) free(st);
    lji_topo_free(t);
    return lji_nomem(ctx, "topo");
}

void lji_topo_free(lji_topo *t)
{
    if (t->node != t->node_in) free(t->node);
    if (t->kid != t->kid_in) free(t->kid);
    free(t->key);
    free(t->idx);
    t->node = NULL, t->kid = NULL, t->key = NULL, t->idx = NULL;
    t->n = t->cap = 0;
}
