/* Gradients as expressions: a reverse pass over the DAG in which every
 * adjoint is a polynomial of expressions (grad.h), each operation's rule
 * from its table entry, and the result turned back into one simplified
 * expression. Hessians are the Jacobians of these expressions. */
#include "config.h"
#include "ops.h"
#include <inttypes.h>
#include <math.h>

/* ---- failures ---------------------------------------------------------------------- */

static void g_nomem(lji_gctx *g)
{
    if (!g->failed) lji_nomem(g->ctx, "gradient_expr");
    g->failed = true;
}

lj_expr *lji_g_node(lji_gctx *g, lj_expr *made)
{
    if (!made) g->failed = true; /* the constructor recorded why */
    return made;
}

/* ---- structural equality ----------------------------------------------------------- */

static bool is_number(const lj_expr *e)
{
    return e->def == &lji_op_const && !e->name && e->rows == 1 && e->cols == 1;
}

bool lji_expr_equal(const lj_expr *a, const lj_expr *b)
{
    for (;;) {
        if (a == b) return true;
        if (!a || !b || a->def != b->def || a->rows != b->rows || a->cols != b->cols) return false;
        if (lji_is_leaf(a)) return is_number(a) && is_number(b) && a->value[0] == b->value[0];
        if (a->p != b->p || a->skind != b->skind || a->pat != b->pat) return false;
        if (a->def->arity == 0) return true; /* eye, fill: shape and p */
        if (a->b && !lji_expr_equal(a->b, b->b)) return false;
        a = a->a; /* the left operand without recursion: long left spines */
        b = b->a;
    }
}

/* ---- lists of factors ---------------------------------------------------------------- */

static void el_push(lji_gctx *g, lji_elist *l, const lj_expr *e)
{
    if (g->failed) return;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 4;
        lj_expr **v = lji_realloc(g->ctx, l->v, (size_t)cap * sizeof *v);
        if (!v) {
            g_nomem(g);
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = lj_expr_retain((lj_expr *)e);
}

static void el_pop(lji_elist *l)
{
    lj_expr_free(&l->v[--l->n]);
}

static void el_remove(lji_elist *l, int k)
{
    lj_expr_free(&l->v[k]);
    memmove(l->v + k, l->v + k + 1, (size_t)(l->n - k - 1) * sizeof *l->v);
    l->n--;
}

static void el_free(lji_elist *l)
{
    for (int i = 0; i < l->n; i++) lj_expr_free(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static void el_copy(lji_gctx *g, lji_elist *dst, const lji_elist *src)
{
    for (int i = 0; i < src->n; i++) el_push(g, dst, src->v[i]);
}

static int el_find(const lji_elist *l, const lj_expr *e)
{
    for (int i = 0; i < l->n; i++)
        if (lji_expr_equal(l->v[i], e)) return i;
    return -1;
}

/* how many of l's entries equal e */
static int el_count(const lji_elist *l, const lj_expr *e)
{
    int k = 0;
    for (int i = 0; i < l->n; i++) k += lji_expr_equal(l->v[i], e);
    return k;
}

/* a[0..n) and b[0..n) are the same expressions in any order (n <= 64) */
static bool same_multiset(const lj_expr *const *a, const lj_expr *const *b, int n)
{
    bool used[64] = { false };
    if (n > 64) return false;
    for (int i = 0; i < n; i++) {
        int k = -1;
        for (int j = 0; j < n && k < 0; j++)
            if (!used[j] && lji_expr_equal(a[i], b[j])) k = j;
        if (k < 0) return false;
        used[k] = true;
    }
    return true;
}

/* the same factors in any order */
static bool el_same_set(const lji_elist *a, const lji_elist *b)
{
    return a->n == b->n && same_multiset((const lj_expr *const *)a->v, (const lj_expr *const *)b->v, a->n);
}

static bool el_same_seq(const lji_elist *a, const lji_elist *b)
{
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++)
        if (!lji_expr_equal(a->v[i], b->v[i])) return false;
    return true;
}

/* ---- monomials ----------------------------------------------------------------------- */

static void mono_free(lji_mono *m)
{
    el_free(&m->s);
    el_free(&m->d);
    el_free(&m->m);
}

static void mono_copy(lji_gctx *g, lji_mono *dst, const lji_mono *src)
{
    memset(dst, 0, sizeof *dst);
    dst->c = src->c;
    el_copy(g, &dst->s, &src->s);
    el_copy(g, &dst->d, &src->d);
    el_copy(g, &dst->m, &src->m);
}

static bool mono_same(const lji_mono *a, const lji_mono *b)
{
    return el_same_seq(&a->m, &b->m) && el_same_set(&a->s, &b->s) && el_same_set(&a->d, &b->d);
}

/* a scalar factor (or divisor): cancelled against an equal divisor (factor) */
static void put_scalar_atom(lji_gctx *g, lji_mono *m, const lj_expr *e, bool div)
{
    lji_elist *other = div ? &m->s : &m->d;
    int k = el_find(other, e);
    if (k >= 0) el_remove(other, k);
    else el_push(g, div ? &m->d : &m->s, e);
}

static void put_scalar(lji_gctx *g, lji_mono *m, const lj_expr *e, bool div)
{
    const lji_opdef *d = e->def;
    double k;
    if (is_number(e)) {
        if (div) m->c /= e->value[0];
        else m->c *= e->value[0];
    } else if (d == &lji_op_eye || (d == &lji_op_fill && e->p == 1.0)) {
        /* 1 */
    } else if (d == &lji_op_neg) {
        m->c = -m->c;
        put_scalar(g, m, e->a, div);
    } else if (d == &lji_op_scale) {
        if (div) m->c /= e->p;
        else m->c *= e->p;
        put_scalar(g, m, e->a, div);
    } else if (d == &lji_op_transpose) {
        put_scalar(g, m, e->a, div);
    } else if ((k = d == &lji_op_pow                                ? e->p
                    : d == &lji_op_power && lji_is_number(e->b) ? lji_number_value(e->b)
                                                                 : 0) != 0 &&
               k == floor(k) && k >= -8 && k <= 8) {
        /* a^k as k factors (or divisors), so that they cancel and merge */
        for (int j = 0; j < (int)fabs(k); j++) put_scalar(g, m, e->a, k < 0 ? !div : div);
    } else if (k < 0 && d == &lji_op_pow) { /* a^(−0.5) as a divisor a^0.5 */
        lj_expr *r = lji_g_node(g, lj_expr_pow(g->ctx, e->a, -k));
        if (r) put_scalar_atom(g, m, r, !div);
        lj_expr_free(&r);
    } else if (d == &lji_op_mul && e->a->rows * e->a->cols == 1 && e->b->rows * e->b->cols == 1 &&
               !e->pat) {
        put_scalar(g, m, e->a, div);
        put_scalar(g, m, e->b, div);
    } else if ((d == &lji_op_divs || d == &lji_op_hdiv) && e->a->rows * e->a->cols == 1 &&
               e->b->rows * e->b->cols == 1) {
        put_scalar(g, m, e->a, div);
        put_scalar(g, m, e->b, !div);
    } else
        put_scalar_atom(g, m, e, div);
}

static bool is_inv(const lj_expr *e) { return e->def == &lji_op_inv; }
static bool is_tr(const lj_expr *e) { return e->def == &lji_op_transpose; }

/* x·y = I: X^{-1}·X, X·X^{-1}, X^{-T}·X^T, X^T·X^{-T} */
static bool cancels(const lj_expr *x, const lj_expr *y)
{
    if (is_inv(x) && lji_expr_equal(x->a, y)) return true;
    if (is_inv(y) && lji_expr_equal(y->a, x)) return true;
    if (is_tr(x) && is_tr(y)) {
        if (is_inv(x->a) && lji_expr_equal(x->a->a, y->a)) return true;
        if (is_inv(y->a) && lji_expr_equal(y->a->a, x->a)) return true;
    }
    return false;
}

/* appends one matrix factor to the chain */
static lj_expr *ew_gathered(lji_gctx *g, const lj_expr *f);

static void push_factor(lji_gctx *g, lji_mono *m, const lj_expr *f)
{
    /* an elementwise product with equal factors as its powers (x ∘ x ∘ x
     * is x.^3), so that it is written as the Cookbook writes it and meets
     * the terms whose products were gathered as they were made */
    lj_expr *gathered = ew_gathered(g, f);
    if (gathered) f = gathered;
    lji_elist *l = &m->m;
    if (l->n && l->v[l->n - 1]->def == &lji_op_eye) el_pop(l);
    if (f->def == &lji_op_eye && l->n) {
        lj_expr_free(&gathered);
        return;
    }
    if (l->n && cancels(l->v[l->n - 1], f))
        el_pop(l);
    else
        el_push(g, l, f);
    lj_expr_free(&gathered);
}

/* Symmetric by construction: I, M^T·M, M·M^T, S + T and S ∘ T of
 * symmetric terms, c·S, S^{-1}, S^k, and constants declared symmetric. */
static bool symmetric(const lj_expr *e, int depth);
bool lji_expr_symmetric(const lj_expr *e) { return symmetric(e, 0); }

static bool symmetric(const lj_expr *e, int depth)
{
    const lji_opdef *d = e->def;
    if (e->rows != e->cols || depth > 8) return false;
    if (e->rows == 1 || d == &lji_op_eye || (d == &lji_op_fill) || e->symm) return true;
    if (d == &lji_op_mul && !e->pat) {
        if (e->pbase) return symmetric(e->pbase, depth + 1);
        const lj_expr *a = e->a, *b = e->b;
        if (lji_is_scalar(a)) return symmetric(b, depth + 1);
        if (lji_is_scalar(b)) return symmetric(a, depth + 1);
        if (a->def == &lji_op_transpose && lji_expr_equal(a->a, b)) return true;
        if (b->def == &lji_op_transpose && lji_expr_equal(b->a, a)) return true;
        return false;
    }
    if (d == &lji_op_add || d == &lji_op_sub || d == &lji_op_hadamard) {
        if (symmetric(e->a, depth + 1) && symmetric(e->b, depth + 1)) return true;
        /* A + A^T */
        return d == &lji_op_add && ((e->b->def == &lji_op_transpose && lji_expr_equal(e->b->a, e->a)) ||
                                    (e->a->def == &lji_op_transpose && lji_expr_equal(e->a->a, e->b)));
    }
    if (d == &lji_op_neg || d == &lji_op_scale || d == &lji_op_inv || (d->f && d->arity == 1) ||
        d == &lji_op_pow)
        return symmetric(e->a, depth + 1);
    return false;
}

static lj_expr *fresh_transpose(lji_gctx *g, const lj_expr *e)
{
    return lji_g_node(g, lj_expr_transpose(g->ctx, (lj_expr *)e));
}

/* A matrix power X^k is flattened into k factors of the chain (so that
 * tr(X^3) gives 3·(X^T)^2) only for small k; a larger power is one factor,
 * or the terms of its adjoint would have k factors each. */
#define LJI_FLAT_POWER 8
/* An adjoint with more terms than this becomes one opaque term (its
 * expression): the terms of products of sums multiply. */
#define LJI_MAX_TERMS 64

/* Appends e (transposed when T) in normal form: numbers into c, scalars into
 * the scalar factors, products and transposes flattened into the chain. A
 * product on a sparsity pattern (a sampled product, a sparse product) is
 * one factor: its value is not the dense product. */
/* e^T with the transpose taken into an elementwise expression down to
 * its transposes, scalars and symmetric factors: f(M^T)^T is f(M), and
 * (A^T ∘ cos(X^T))^T is A ∘ cos(X) (the gradient of tr(A·sin(X^T)));
 * NULL where some other operand would take a transpose of its own, or on
 * failure (g->failed). */
static lj_expr *pushed_transpose(lji_gctx *g, const lj_expr *e, int depth)
{
    const lji_opdef *d = e->def;
    if (depth > 8 || e->pat) return NULL;
    if (d == &lji_op_transpose) return lj_expr_retain(e->a);
    if ((e->rows == 1 && e->cols == 1) || symmetric(e, 0)) return lj_expr_retain((lj_expr *)e);
    if (!d->f && d->shape != lji_shape_broadcast) return NULL;
    lj_expr *a = pushed_transpose(g, e->a, depth + 1), *b = NULL, *r = NULL;
    if (a && d->f) r = lji_g_node(g, lji_expr_unary(g->ctx, d, a));
    else if (a && (b = pushed_transpose(g, e->b, depth + 1)))
        r = lji_g_node(g, lji_expr_binary(g->ctx, d, a, b));
    lj_expr_free(&a);
    lj_expr_free(&b);
    return r;
}

static void put(lji_gctx *g, lji_mono *m, const lj_expr *e, bool T)
{
    if (g->failed) return;
    const lji_opdef *d = e->def;
    lj_expr *pushed;
    if (d == &lji_op_fill && e->p == 0) { /* a factor of zeros: no term (add_term drops it) */
        m->c = 0;
        return;
    }
    if (e->rows == 1 && e->cols == 1) {
        put_scalar(g, m, e, false);
        return;
    }
    if (d == &lji_op_transpose) {
        put(g, m, e->a, !T);
    } else if (d == &lji_op_neg) {
        m->c = -m->c;
        put(g, m, e->a, T);
    } else if (d == &lji_op_scale) {
        m->c *= e->p;
        put(g, m, e->a, T);
    } else if (d == &lji_op_mul && !e->pat && (!e->pbase || e->pn <= LJI_FLAT_POWER)) {
        if (T) {
            put(g, m, e->b, true);
            put(g, m, e->a, true);
        } else {
            put(g, m, e->a, false);
            put(g, m, e->b, false);
        }
    } else if (!T || symmetric(e, 0)) {
        push_factor(g, m, e);
    } else if (d == &lji_op_eye) {
        push_factor(g, m, e);
    } else if (d == &lji_op_fill) {
        lj_expr *f = lji_g_node(g, lji_expr_fill(g->ctx, e->cols, e->rows, e->p));
        if (f) push_factor(g, m, f);
        lj_expr_free(&f);
    } else if ((d->f || d->shape == lji_shape_broadcast) && !g->failed && (pushed = pushed_transpose(g, e, 0))) {
        push_factor(g, m, pushed);
        lj_expr_free(&pushed);
    } else {
        lj_expr *t = fresh_transpose(g, e);
        if (t) push_factor(g, m, t);
        lj_expr_free(&t);
    }
}

/* ---- polynomials --------------------------------------------------------------------- */

void lji_poly_init(lji_poly *p, int64_t rows, int64_t cols)
{
    memset(p, 0, sizeof *p);
    p->rows = rows;
    p->cols = cols;
}

void lji_poly_free(lji_poly *p)
{
    for (int i = 0; i < p->n; i++) mono_free(&p->t[i]);
    free(p->t);
    p->t = NULL;
    p->n = p->cap = 0;
}

bool lji_poly_is_zero(const lji_poly *p)
{
    return p->n == 0;
}

/* adds a term, taking ownership of m (merged into an equal term if any) */
static void add_term(lji_gctx *g, lji_poly *p, lji_mono *m)
{
    if (g->failed || m->c == 0) {
        mono_free(m);
        return;
    }
    for (int i = 0; i < p->n; i++)
        if (mono_same(&p->t[i], m)) {
            p->t[i].c += m->c;
            mono_free(m);
            if (p->t[i].c == 0) {
                mono_free(&p->t[i]);
                memmove(p->t + i, p->t + i + 1, (size_t)(p->n - i - 1) * sizeof *p->t);
                p->n--;
            }
            return;
        }
    if (p->n == p->cap) {
        int cap = p->cap ? 2 * p->cap : 4;
        lji_mono *t = lji_realloc(g->ctx, p->t, (size_t)cap * sizeof *t);
        if (!t) {
            mono_free(m);
            g_nomem(g);
            return;
        }
        p->t = t;
        p->cap = cap;
    }
    p->t[p->n++] = *m;
}

void lji_poly_add_expr(lji_gctx *g, lji_poly *p, double c, const lj_expr *e)
{
    if (g->failed) return;
    lji_mono m = { .c = c };
    put(g, &m, e, false);
    add_term(g, p, &m);
}

void lji_poly_add(lji_gctx *g, lji_poly *p, double c, const lji_poly *q)
{
    for (int i = 0; i < q->n && !g->failed; i++) {
        lji_mono m;
        mono_copy(g, &m, &q->t[i]);
        m.c *= c;
        add_term(g, p, &m);
    }
}

/* The chain of m as a product (NULL for an empty chain; runs of an equal
 * square factor as powers). */
static lj_expr *chain_expr(lji_gctx *g, const lji_elist *l)
{
    lj_expr *acc = NULL;
    for (int i = 0; i < l->n && !g->failed;) {
        int k = 1;
        if (l->v[i]->rows == l->v[i]->cols)
            while (i + k < l->n && lji_expr_equal(l->v[i], l->v[i + k])) k++;
        lj_expr *f = k > 1 ? lji_g_node(g, lj_expr_mpower(g->ctx, l->v[i], k)) : lj_expr_retain(l->v[i]);
        if (f && acc) {
            lj_expr *x = lji_g_node(g, lj_expr_mul(g->ctx, acc, f));
            lj_expr_free(&acc);
            lj_expr_free(&f);
            acc = x;
        } else if (f)
            acc = f;
        i += k;
    }
    if (g->failed) lj_expr_free(&acc);
    return acc;
}

/* The product of scalar factors, equal factors as one power (det(X)^2). */
static lj_expr *product_of(lji_gctx *g, const lji_elist *l)
{
    lj_expr *acc = NULL;
    bool *done = l->n ? lji_calloc(g->ctx, (size_t)l->n, sizeof *done) : NULL;
    if (l->n && !done) {
        g_nomem(g);
        return NULL;
    }
    for (int i = 0; i < l->n && !g->failed; i++) {
        if (done[i]) continue;
        int k = 1;
        for (int j = i + 1; j < l->n; j++)
            if (!done[j] && lji_expr_equal(l->v[i], l->v[j])) done[j] = true, k++;
        lj_expr *f = k > 1 ? lji_g_node(g, lj_expr_pow(g->ctx, l->v[i], (double)k)) : lj_expr_retain(l->v[i]);
        if (f && acc) {
            lj_expr *x = lji_g_node(g, lj_expr_mul(g->ctx, acc, f));
            lj_expr_free(&acc);
            lj_expr_free(&f);
            acc = x;
        } else if (f)
            acc = f;
    }
    free(done);
    if (g->failed) lj_expr_free(&acc);
    return acc;
}

/* term m of a rows×cols polynomial, without its coefficient's sign when
 * `abs`; *neg reports the sign left out */
static lj_expr *mono_expr(lji_gctx *g, const lji_mono *m, int64_t rows, int64_t cols, bool abs, bool *neg)
{
    lj_context *ctx = g->ctx;
    double c = m->c;
    if (neg) *neg = abs && c < 0;
    if (abs) c = fabs(c);
    lj_expr *body = chain_expr(g, &m->m);
    if (!body && !(rows == 1 && cols == 1) && !g->failed) body = lji_g_node(g, lj_expr_eye(ctx, rows));
    if (body && body->rows * body->cols == 1 && !(rows == 1 && cols == 1) && !g->failed) {
        /* a scalar chain in a matrix term cannot happen; keep shapes honest */
        lj_expr_free(&body);
        g->failed = true;
        lji_error(ctx, LJ_ERR_INVALID, "gradient_expr: scalar chain in a (%" PRId64 "×%" PRId64 ") term", rows,
                  cols);
        return NULL;
    }
    lj_expr *S = product_of(g, &m->s), *D = product_of(g, &m->d);
    if (S && body) {
        lj_expr *x = lji_g_node(g, lj_expr_mul(ctx, S, body));
        lj_expr_free(&body);
        body = x;
    } else if (S)
        body = lj_expr_retain(S);
    lj_expr_free(&S);
    if (D) {
        if (!body && !g->failed) {
            body = lji_g_node(g, lj_expr_scalar(ctx, c));
            c = 1;
        }
        lj_expr *x = body ? lji_g_node(g, lj_expr_div_scalar(ctx, body, D)) : NULL;
        lj_expr_free(&body);
        body = x;
    }
    lj_expr_free(&D);
    if (g->failed) {
        lj_expr_free(&body);
        return NULL;
    }
    if (!body) return lji_g_node(g, lj_expr_scalar(ctx, c));
    if (c == 1) return body;
    lj_expr *x = lji_g_node(g, c == -1 ? lj_expr_neg(ctx, body) : lj_expr_scale(ctx, c, body));
    lj_expr_free(&body);
    return x;
}

/* ---- sums of elementwise products, expanded where terms cancel -------------------- */

/* A sum of elementwise products of atoms, each with a coefficient:
 * (1 − y) ∘ σ − y ∘ (1 − σ) is σ − y∘σ − y + y∘σ, which collects to σ − y.
 * Sums, differences, negations, multiples and numbers inside elementwise
 * products are multiplied out; anything else is an atom (a quotient too).
 * Bounded: past LJI_EW_TERMS terms or LJI_EW_MAX atoms a term, nothing is
 * simplified. */
#define LJI_EW_TERMS 32
#define LJI_EW_MAX 16 /* atoms of one elementwise product */
typedef struct {
    double c;
    int n;
    const lj_expr *f[LJI_EW_MAX];
} ew_term;

typedef struct {
    int n;
    bool over;
    ew_term t[LJI_EW_TERMS];
} ew_sum;

/* how deep the walks below go into an expression before giving up */
#define LJI_EW_DEPTH 64

/* out = c·x expanded (out empty on entry) */
static void ew_expand(const lj_expr *x, double c, ew_sum *out, int depth)
{
    if (out->over) return;
    if (depth > LJI_EW_DEPTH) {
        out->over = true;
        return;
    }
    if (x->pat) goto atom;
    if (is_number(x)) {
        out->t[0] = (ew_term){ .c = c * x->value[0], .n = 0 };
        out->n = 1;
        return;
    }
    if (x->def == &lji_op_neg || x->def == &lji_op_scale) {
        ew_expand(x->a, x->def == &lji_op_neg ? -c : c * x->p, out, depth + 1);
        return;
    }
    if (x->def == &lji_op_add || x->def == &lji_op_sub) {
        ew_sum *b = malloc(sizeof *b);
        if (!b) {
            out->over = true;
            return;
        }
        b->n = 0, b->over = false;
        ew_expand(x->a, c, out, depth + 1);
        ew_expand(x->b, x->def == &lji_op_sub ? -c : c, b, depth + 1);
        if (out->n + b->n > LJI_EW_TERMS || b->over) out->over = true;
        else {
            memcpy(&out->t[out->n], b->t, (size_t)b->n * sizeof b->t[0]);
            out->n += b->n;
        }
        free(b);
        return;
    }
    if (x->def == &lji_op_hadamard) {
        ew_sum *a = malloc(sizeof *a), *b = malloc(sizeof *b);
        if (!a || !b) {
            out->over = true;
            free(a), free(b);
            return;
        }
        a->n = b->n = 0, a->over = b->over = false;
        ew_expand(x->a, c, a, depth + 1);
        ew_expand(x->b, 1.0, b, depth + 1);
        if (a->over || b->over || a->n * b->n > LJI_EW_TERMS) out->over = true;
        for (int i = 0; i < a->n && !out->over; i++)
            for (int j = 0; j < b->n && !out->over; j++) {
                const ew_term *u = &a->t[i], *v = &b->t[j];
                if (u->n + v->n > LJI_EW_MAX) {
                    out->over = true;
                    break;
                }
                ew_term *w = &out->t[out->n++];
                w->c = u->c * v->c;
                w->n = u->n + v->n;
                memcpy(w->f, u->f, (size_t)u->n * sizeof u->f[0]);
                memcpy(w->f + u->n, v->f, (size_t)v->n * sizeof v->f[0]);
            }
        free(a), free(b);
        return;
    }
atom:
    out->t[0] = (ew_term){ .c = c, .n = 1, .f = { x } };
    out->n = 1;
}

/* the atoms of x, counted as ew_expand would see them unexpanded (as
 * deep as ew_expand goes) */
static int ew_atoms(const lj_expr *x, int depth)
{
    if (x->pat || depth > LJI_EW_DEPTH) return 1;
    if (is_number(x)) return 1;
    if (x->def == &lji_op_neg || x->def == &lji_op_scale) return ew_atoms(x->a, depth + 1);
    if (x->def == &lji_op_add || x->def == &lji_op_sub || x->def == &lji_op_hadamard)
        return ew_atoms(x->a, depth + 1) + ew_atoms(x->b, depth + 1);
    return 1;
}

/* u and v have the same atoms, in any order */
static bool ew_same_atoms(const ew_term *u, const ew_term *v)
{
    return u->n == v->n && same_multiset(u->f, v->f, u->n);
}

/* Σ c_i·x_i (x_i rows×cols elementwise expressions), expanded and collected
 * when that leaves fewer atoms than the terms have as they are; else NULL
 * (nothing made). */
static lj_expr *ew_collected(lji_gctx *g, const double *c, lj_expr *const *x, int n, int64_t rows, int64_t cols)
{
    ew_sum *sum = malloc(sizeof *sum), *one = malloc(sizeof *one);
    lj_expr *r = NULL;
    if (!sum || !one) goto done;
    sum->n = 0, sum->over = false;
    int before = 0;
    for (int i = 0; i < n && !sum->over; i++) {
        before += ew_atoms(x[i], 0);
        one->n = 0, one->over = false;
        ew_expand(x[i], c[i], one, 0);
        if (one->over || sum->n + one->n > LJI_EW_TERMS) sum->over = true;
        /* like terms collected as they come */
        for (int k = 0; k < one->n && !sum->over; k++) {
            int j = 0;
            while (j < sum->n && !ew_same_atoms(&sum->t[j], &one->t[k])) j++;
            if (j < sum->n) sum->t[j].c += one->t[k].c;
            else sum->t[sum->n++] = one->t[k];
        }
    }
    if (sum->over) goto done;
    int after = 0, kept = 0;
    bool full = false; /* a term keeps the sum's shape */
    for (int j = 0; j < sum->n; j++) {
        if (sum->t[j].c == 0) continue;
        kept++;
        after += sum->t[j].n ? sum->t[j].n : 1;
        for (int i = 0; i < sum->t[j].n; i++)
            full |= sum->t[j].f[i]->rows == rows && sum->t[j].f[i]->cols == cols;
    }
    if (!kept || !full || after >= before) goto done;
    lj_context *ctx = g->ctx;
    for (int j = 0; j < sum->n && !g->failed; j++) {
        const ew_term *t = &sum->t[j];
        if (t->c == 0) continue;
        bool first = !r;
        double a = first ? t->c : fabs(t->c);
        lj_expr *body = t->n ? lj_expr_retain((lj_expr *)t->f[0]) : lji_g_node(g, lj_expr_scalar(ctx, a));
        for (int i = 1; i < t->n && body; i++) {
            lj_expr *h = lji_g_node(g, lj_expr_hadamard(ctx, body, (lj_expr *)t->f[i]));
            lj_expr_free(&body);
            body = h;
        }
        if (body && t->n && a != 1) {
            lj_expr *h = lji_g_node(g, a == -1 ? lj_expr_neg(ctx, body) : lj_expr_scale(ctx, a, body));
            lj_expr_free(&body);
            body = h;
        }
        if (!body) break;
        if (first) {
            r = body;
            continue;
        }
        lj_expr *s = lji_g_node(g, t->c < 0 ? lj_expr_sub(ctx, r, body) : lj_expr_add(ctx, r, body));
        lj_expr_free(&r);
        lj_expr_free(&body);
        r = s;
    }
    if (g->failed) lj_expr_free(&r);
done:
    free(sum);
    free(one);
    return r;
}

/* A plain sum whose terms are each a coefficient times one expression
 * (no scalar factors or divisors), expanded and collected (ew_collected)
 * where terms cancel; else NULL. */
static lj_expr *plain_collected(lji_gctx *g, const lji_mono *t, int n, int64_t rows, int64_t cols)
{
    if (n > LJI_EW_TERMS || (rows == 1 && cols == 1)) return NULL;
    double c[LJI_EW_TERMS];
    lj_expr *x[LJI_EW_TERMS];
    for (int i = 0; i < n; i++) {
        if (t[i].s.n || t[i].d.n || t[i].m.n != 1 || t[i].m.v[0]->rows != rows || t[i].m.v[0]->cols != cols)
            return NULL;
        c[i] = t[i].c;
        x[i] = t[i].m.v[0];
    }
    return ew_collected(g, c, x, n, rows, cols);
}

/* An expression for the sum of terms t[0..n), common factors taken out:
 * a common coefficient, common scalar factors and divisors, a common last
 * or first factor of the chains (A·x + A^T·x = (A + A^T)·x). */
static lj_expr *sum_expr(lji_gctx *g, lji_mono *t, int n, int64_t rows, int64_t cols)
{
    lj_context *ctx = g->ctx;
    if (g->failed) return NULL;
    if (n == 1) return mono_expr(g, &t[0], rows, cols, false, NULL);
    lji_mono *u = lji_calloc(ctx, (size_t)n, sizeof *u);
    if (!u) {
        g_nomem(g);
        return NULL;
    }
    lj_expr *r = NULL;
    enum { NONE, COEF, SCALAR, DIVISOR, RIGHT, LEFT } how = NONE;
    const lj_expr *common = NULL;
    bool same_c = true, right = true, left = true;
    for (int i = 1; i < n; i++) same_c = same_c && t[i].c == t[0].c;
    for (int i = 0; i < n; i++) {
        right = right && t[i].m.n >= 2 && lji_expr_equal(t[i].m.v[t[i].m.n - 1], t[0].m.v[t[0].m.n - 1]);
        left = left && t[i].m.n >= 2 && lji_expr_equal(t[i].m.v[0], t[0].m.v[0]);
    }
    if (same_c && t[0].c != 1) how = COEF;
    for (int k = 0; how == NONE && k < t[0].s.n; k++) {
        bool all = true;
        for (int i = 1; i < n && all; i++) all = el_find(&t[i].s, t[0].s.v[k]) >= 0;
        if (all) how = SCALAR, common = t[0].s.v[k];
    }
    for (int k = 0; how == NONE && k < t[0].d.n; k++) {
        bool all = true;
        for (int i = 1; i < n && all; i++) all = el_find(&t[i].d, t[0].d.v[k]) >= 0;
        if (all) how = DIVISOR, common = t[0].d.v[k];
    }
    if (how == NONE && right) how = RIGHT, common = t[0].m.v[t[0].m.n - 1];
    if (how == NONE && left) how = LEFT, common = t[0].m.v[0];
    int64_t ir = rows, ic = cols; /* the inner sum's shape */
    int times = 1; /* a common scalar factor or divisor as often as every term has it: s^2·(a + b) */
    for (int i = 0; (how == SCALAR || how == DIVISOR) && i < n; i++) {
        int k = el_count(how == SCALAR ? &t[i].s : &t[i].d, common);
        if (i == 0 || k < times) times = k;
    }
    if (how != NONE) {
        for (int i = 0; i < n; i++) mono_copy(g, &u[i], &t[i]);
        for (int i = 0; i < n && !g->failed; i++) {
            if (how == COEF) u[i].c = 1;
            else if (how == SCALAR)
                for (int k = 0; k < times; k++) el_remove(&u[i].s, el_find(&u[i].s, common));
            else if (how == DIVISOR)
                for (int k = 0; k < times; k++) el_remove(&u[i].d, el_find(&u[i].d, common));
            else if (how == RIGHT) el_pop(&u[i].m);
            else {
                el_remove(&u[i].m, 0);
            }
        }
        if (how == RIGHT) ic = common->rows;
        if (how == LEFT) ir = common->cols;
        lj_expr *inner = sum_expr(g, u, n, ir, ic);
        lj_expr *cp = !common   ? NULL
                      : times > 1 ? lji_g_node(g, lj_expr_pow(ctx, (lj_expr *)common, (double)times))
                                  : lj_expr_retain((lj_expr *)common);
        if (inner && (cp || !common)) {
            if (how == COEF) r = t[0].c == -1 ? lj_expr_neg(ctx, inner) : lj_expr_scale(ctx, t[0].c, inner);
            else if (how == SCALAR) r = lj_expr_mul(ctx, cp, inner);
            else if (how == DIVISOR) r = lj_expr_div_scalar(ctx, inner, cp);
            else if (how == RIGHT) r = lj_expr_mul(ctx, inner, (lj_expr *)common);
            else r = lj_expr_mul(ctx, (lj_expr *)common, inner);
            r = lji_g_node(g, r);
        }
        lj_expr_free(&cp);
        lj_expr_free(&inner);
        for (int i = 0; i < n; i++) mono_free(&u[i]);
    } else { /* a plain sum, a negative coefficient written as a difference */
        lj_expr *col = plain_collected(g, t, n, rows, cols);
        /* a positive term first where there is one: exp(Z·w) − y, not −y + exp(Z·w) */
        int first = 0;
        while (first < n - 1 && t[first].c < 0) first++;
        if (t[first].c < 0) first = 0;
        r = col || g->failed ? col : mono_expr(g, &t[first], rows, cols, false, NULL);
        for (int k = 1; k < n && r && !col; k++) {
            int i = k <= first ? k - 1 : k; /* the terms before the first one, then those after it */
            bool neg;
            lj_expr *x = mono_expr(g, &t[i], rows, cols, true, &neg);
            lj_expr *s = x ? lji_g_node(g, neg ? lj_expr_sub(ctx, r, x) : lj_expr_add(ctx, r, x)) : NULL;
            lj_expr_free(&x);
            lj_expr_free(&r);
            r = s;
        }
    }
    free(u);
    if (g->failed) lj_expr_free(&r);
    return r;
}

lj_expr *lji_poly_expr(lji_gctx *g, const lji_poly *p)
{
    if (g->failed) return NULL;
    if (p->n == 0) return lji_g_node(g, lji_expr_fill(g->ctx, p->rows, p->cols, 0.0));
    return sum_expr(g, p->t, p->n, p->rows, p->cols);
}

/* ---- algebra on polynomials ---------------------------------------------------------- */

static bool is_scalar_shape(int64_t r, int64_t c) { return r == 1 && c == 1; }

/* m times the 1×1 term s (as scalars) */
static void times_scalar_term(lji_gctx *g, lji_mono *m, const lji_mono *s)
{
    m->c *= s->c;
    for (int i = 0; i < s->s.n; i++) put_scalar_atom(g, m, s->s.v[i], false);
    for (int i = 0; i < s->d.n; i++) put_scalar_atom(g, m, s->d.v[i], true);
    if (s->m.n) { /* a 1×1 chain (x^T·y) is one scalar factor */
        lj_expr *x = chain_expr(g, &s->m);
        if (x) put_scalar(g, m, x, false);
        lj_expr_free(&x);
    }
}

/* out += c·a·b */
static void poly_mul_into(lji_gctx *g, lji_poly *out, double c, const lji_poly *a, const lji_poly *b)
{
    bool as = is_scalar_shape(a->rows, a->cols), bs = is_scalar_shape(b->rows, b->cols);
    for (int i = 0; i < a->n && !g->failed; i++)
        for (int j = 0; j < b->n && !g->failed; j++) {
            lji_mono m;
            if (as && !bs) {
                mono_copy(g, &m, &b->t[j]);
                times_scalar_term(g, &m, &a->t[i]);
            } else if (bs) {
                mono_copy(g, &m, &a->t[i]);
                times_scalar_term(g, &m, &b->t[j]);
                if (as && m.m.n) { /* two scalars: the chain of a is a scalar factor too */
                    lj_expr *x = chain_expr(g, &m.m);
                    el_free(&m.m);
                    if (x) put_scalar(g, &m, x, false);
                    lj_expr_free(&x);
                }
            } else {
                mono_copy(g, &m, &a->t[i]);
                m.c *= b->t[j].c;
                for (int k = 0; k < b->t[j].s.n; k++) put_scalar_atom(g, &m, b->t[j].s.v[k], false);
                for (int k = 0; k < b->t[j].d.n; k++) put_scalar_atom(g, &m, b->t[j].d.v[k], true);
                for (int k = 0; k < b->t[j].m.n; k++) push_factor(g, &m, b->t[j].m.v[k]);
            }
            m.c *= c;
            add_term(g, out, &m);
        }
}

/* p as one opaque term (its expression), when distributing would multiply
 * the number of terms */
static void collapse(lji_gctx *g, lji_poly *dst, const lji_poly *p)
{
    lji_poly_init(dst, p->rows, p->cols);
    lj_expr *x = lji_poly_expr(g, p);
    if (x) {
        lji_mono m = { .c = 1 };
        if (is_scalar_shape(x->rows, x->cols)) put_scalar_atom(g, &m, x, false);
        else push_factor(g, &m, x);
        add_term(g, dst, &m);
    }
    lj_expr_free(&x);
}

void lji_poly_mul_expr(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *e, bool left,
                       bool transposed)
{
    if (g->failed) return;
    lji_poly E, Gc;
    lji_poly_init(&E, transposed ? e->cols : e->rows, transposed ? e->rows : e->cols);
    lji_mono m = { .c = 1 };
    put(g, &m, e, transposed);
    add_term(g, &E, &m);
    const lji_poly *gp = G;
    if (G->n > 1 && E.n > 1 && G->n * E.n > 8) {
        collapse(g, &Gc, G);
        gp = &Gc;
    }
    if (left) poly_mul_into(g, out, c, &E, gp);
    else poly_mul_into(g, out, c, gp, &E);
    if (gp == &Gc) lji_poly_free(&Gc);
    lji_poly_free(&E);
}

void lji_poly_transpose(lji_gctx *g, lji_poly *out, double c, const lji_poly *G)
{
    for (int i = 0; i < G->n && !g->failed; i++) {
        const lji_mono *t = &G->t[i];
        lji_mono m = { .c = c * t->c };
        el_copy(g, &m.s, &t->s);
        el_copy(g, &m.d, &t->d);
        for (int k = t->m.n - 1; k >= 0; k--) put(g, &m, t->m.v[k], true);
        add_term(g, out, &m);
    }
}

static bool is_ones_term(const lji_mono *t)
{
    return t->m.n == 1 && t->m.v[0]->def == &lji_op_fill && t->m.v[0]->p == 1.0;
}

/* ---- elementwise products and quotients, simplified ---------------------------------- */

/* The factors of an elementwise product and quotient: x ∘ y ⊘ z as
 * numerator {x, y} and denominator {z}. Products, quotients and .^-1 are
 * opened; anything else is one factor. */
typedef struct {
    const lj_expr *f[2][LJI_EW_MAX]; /* [0] numerator, [1] denominator */
    int n[2];
    bool full;                       /* more factors than fit: not simplified */
} ew_factors;

static void ew_open(ew_factors *w, const lj_expr *x, int side, int depth)
{
    if (w->full || depth > LJI_EW_MAX) { /* a long chain is not walked to its end */
        w->full = true;
        return;
    }
    if (!x->pat && (x->def == &lji_op_hadamard || x->def == &lji_op_hdiv)) {
        ew_open(w, x->a, side, depth + 1);
        ew_open(w, x->b, x->def == &lji_op_hdiv ? 1 - side : side, depth + 1);
        return;
    }
    if (!x->pat && x->def == &lji_op_pow && x->p == -1.0) {
        ew_open(w, x->a, 1 - side, depth + 1);
        return;
    }
    /* a whole power as its factors, so that it cancels against them:
     * x ⊘ x.^2 is 1 ⊘ x (ew_product gathers what is left again) */
    if (!x->pat && x->def == &lji_op_pow && x->p >= 2 && x->p <= 8 && x->p == floor(x->p) &&
        w->n[side] + (int)x->p <= LJI_EW_MAX) {
        for (int k = 0; k < (int)x->p; k++) ew_open(w, x->a, side, depth + 1);
        return;
    }
    if (w->n[side] == LJI_EW_MAX) w->full = true;
    else w->f[side][w->n[side]++] = x;
}

static void ew_remove(ew_factors *w, int side, int k)
{
    memmove(&w->f[side][k], &w->f[side][k + 1], (size_t)(w->n[side] - k - 1) * sizeof w->f[side][0]);
    w->n[side]--;
}

/* u is exp(m) and v is 1 + exp(m) or exp(m) + 1 (the same m): u ⊘ v is σ(m) */
static bool is_sigmoid_pair(const lj_expr *u, const lj_expr *v)
{
    const lj_expr *one;
    if (u->def != lji_func_defs[LJ_FN_EXP] || v->def != &lji_op_add || v->pat) return false;
    if (lji_expr_equal(v->b, u)) one = v->a;
    else if (lji_expr_equal(v->a, u)) one = v->b;
    else return false;
    return is_number(one) && one->value[0] == 1.0;
}

/* f as base.^k: a whole power of 2 to 64 written .^k, else f itself once */
static const lj_expr *ew_base(const lj_expr *f, int *k)
{
    if (!f->pat && f->def == &lji_op_pow && f->p >= 2 && f->p <= 64 && f->p == floor(f->p)) {
        *k = (int)f->p;
        return f->a;
    }
    *k = 1;
    return f;
}

/* The product of the n factors f, its equal factors gathered into powers
 * as the Matrix Cookbook writes them (x ∘ x ∘ exp(x) is x.^2 ∘ exp(x),
 * x.^2 ∘ x is x.^3), in the order they first stand; *merged says whether
 * two were equal. NULL for no factors. */
static lj_expr *ew_product(lji_gctx *g, const lj_expr *const *fs, int n, bool *merged)
{
    const lj_expr *base[LJI_EW_MAX];
    int pw[LJI_EW_MAX], nb = 0;
    *merged = false;
    for (int i = 0; i < n; i++) {
        int k, j;
        const lj_expr *b = ew_base(fs[i], &k);
        for (j = 0; j < nb && !lji_expr_equal(base[j], b); j++) {}
        if (j < nb) {
            pw[j] += k;
            *merged = true;
        } else
            base[nb] = b, pw[nb++] = k;
    }
    lj_context *ctx = g->ctx;
    lj_expr *r = NULL;
    for (int j = 0; j < nb && !g->failed; j++) {
        lj_expr *f = pw[j] == 1 ? lj_expr_retain((lj_expr *)base[j])
                                : lji_g_node(g, lj_expr_pow(ctx, (lj_expr *)base[j], (double)pw[j]));
        if (!f) break;
        if (!r) {
            r = f;
            continue;
        }
        lj_expr *h = lji_g_node(g, lj_expr_hadamard(ctx, r, f));
        lj_expr_free(&r);
        lj_expr_free(&f);
        r = h;
    }
    if (g->failed) lj_expr_free(&r);
    return r;
}

/* whether two of the n factors f are powers of one base (x and x.^2) */
static bool ew_has_equal(const lj_expr *const *fs, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            int k;
            if (lji_expr_equal(ew_base(fs[i], &k), ew_base(fs[j], &k))) return true;
        }
    return false;
}

/* A product of factors with no divisor with its equal factors gathered
 * into powers (ew_product); NULL where no two factors are equal. */
static lj_expr *ew_powers(lji_gctx *g, const ew_factors *w)
{
    bool merged;
    lj_expr *r = ew_product(g, w->f[0], w->n[0], &merged);
    if (!merged) lj_expr_free(&r);
    return r;
}

/* f, an elementwise product with no divisor, with its equal factors
 * gathered into powers (ew_powers); NULL where f is not such a product or
 * has no two equal factors */
static lj_expr *ew_gathered(lji_gctx *g, const lj_expr *f)
{
    if (f->pat || f->def != &lji_op_hadamard || g->failed) return NULL;
    ew_factors w = { .n = { 0, 0 }, .full = false };
    ew_open(&w, f, 0, 0);
    return w.full || w.n[1] ? NULL : ew_powers(g, &w);
}

/* x ∘ e (or x ⊘ e when divide), of shape rows×cols, with the factors that
 * a divisor cancels taken out ((y ⊘ σ) ∘ σ ∘ (1 − σ) is y ∘ (1 − σ)) and
 * exp(m) ⊘ (1 + exp(m)) written σ(m) (the gradient of log(1 + exp(m))),
 * and without a divisor equal factors gathered into powers (ew_powers).
 * NULL (and nothing made) when nothing simplifies; the caller then builds
 * the product as it is. Where no factor of the product's shape is left,
 * ones of it stand first. Dense operands only; a factor cancels only
 * against a structurally equal divisor. */
static lj_expr *ew_simplified(lji_gctx *g, const lj_expr *x, const lj_expr *e, bool divide, int64_t rows,
                              int64_t cols)
{
    if (x->pat || e->pat) return NULL;
    ew_factors w = { .n = { 0, 0 }, .full = false };
    ew_open(&w, x, 0, 0);
    ew_open(&w, e, divide ? 1 : 0, 0);
    if (w.full) return NULL;
    if (!w.n[1]) return ew_powers(g, &w);
    bool sig[LJI_EW_MAX] = { false }; /* numerator factor exp(m) to be written σ(m) */
    int changed = 0;
    for (int k = 0; k < w.n[1];) {
        const lj_expr *d = w.f[1][k];
        int hit = -1;
        for (int i = 0; i < w.n[0] && hit < 0; i++)
            if (!sig[i] && lji_expr_equal(w.f[0][i], d)) hit = i;
        if (hit >= 0) {
            memmove(&sig[hit], &sig[hit + 1], (size_t)(w.n[0] - hit - 1) * sizeof sig[0]);
            ew_remove(&w, 0, hit);
        } else {
            for (int i = 0; i < w.n[0] && hit < 0; i++)
                if (!sig[i] && is_sigmoid_pair(w.f[0][i], d)) hit = i;
            if (hit < 0) {
                k++;
                continue;
            }
            sig[hit] = true;
        }
        ew_remove(&w, 1, k);
        changed++;
    }
    bool full = false; /* a factor left keeps the product's shape */
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < w.n[side]; i++) full |= w.f[side][i]->rows == rows && w.f[side][i]->cols == cols;
    if (!changed && !ew_has_equal(w.f[0], w.n[0]) && !ew_has_equal(w.f[1], w.n[1])) return NULL;
    lj_context *ctx = g->ctx;
    /* each side's equal factors gathered into powers, σ(m) for exp(m) ⊘
     * (1 + exp(m)): x.^2 ∘ x ⊘ (u ∘ u) is x.^3 ⊘ u.^2 (the quotient rule's
     * second term) */
    lj_expr *side_of[2] = { NULL, NULL }, *made[LJI_EW_MAX] = { NULL };
    bool merged[2];
    for (int i = 0; i < w.n[0] && !g->failed; i++)
        if (sig[i] && (made[i] = lji_g_node(g, lj_expr_func(ctx, LJ_FN_SIGMOID, w.f[0][i]->a))))
            w.f[0][i] = made[i];
    for (int side = 0; side < 2 && !g->failed; side++)
        side_of[side] = ew_product(g, w.f[side], w.n[side], &merged[side]);
    for (int i = 0; i < w.n[0]; i++) lj_expr_free(&made[i]);
    /* no factor of the product's shape left (exp(x) ⊘ exp(x)): ones of it first */
    lj_expr *num = side_of[0], *den = side_of[1];
    if (!full && !g->failed) {
        lj_expr *ones = lji_g_node(g, lji_expr_fill(ctx, rows, cols, 1.0));
        lj_expr *h = ones && num ? lji_g_node(g, lj_expr_hadamard(ctx, ones, num)) : lj_expr_retain(ones);
        lj_expr_free(&ones);
        lj_expr_free(&num);
        num = h;
    }
    lj_expr *r = NULL; /* num ⊘ den, num, or 1 ⊘ den as den.^-1 */
    if (!g->failed)
        r = num && den ? lji_g_node(g, lj_expr_hdiv(ctx, num, den))
            : num      ? lj_expr_retain(num)
                       : lji_g_node(g, lj_expr_pow(ctx, den, -1.0));
    lj_expr_free(&num);
    lj_expr_free(&den);
    return r;
}

void lji_poly_hadamard(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *e, bool divide)
{
    if (g->failed) return;
    lj_context *ctx = g->ctx;
    bool es = is_scalar_shape(e->rows, e->cols), gs = is_scalar_shape(G->rows, G->cols);
    if (es) { /* G times (or over) the scalar e */
        for (int i = 0; i < G->n && !g->failed; i++) {
            lji_mono m;
            mono_copy(g, &m, &G->t[i]);
            m.c *= c;
            put_scalar(g, &m, e, divide);
            if (gs && m.m.n) {
                lj_expr *x = chain_expr(g, &m.m);
                el_free(&m.m);
                if (x) put_scalar(g, &m, x, false);
                lj_expr_free(&x);
            }
            add_term(g, out, &m);
        }
        return;
    }
    /* signs and numbers of e come out: G ∘ (−y) = −(G ∘ y) */
    while (e->def == &lji_op_neg || e->def == &lji_op_scale) {
        double k = e->def == &lji_op_neg ? -1.0 : e->p;
        c = divide ? c / k : c * k;
        e = e->a;
    }
    /* 1 ⊘ e is e.^-1 */
    lj_expr *ed = divide ? lji_g_node(g, lj_expr_pow(ctx, (lj_expr *)e, -1.0)) : lj_expr_retain((lj_expr *)e);
    if (!ed) return;
    for (int i = 0; i < G->n && !g->failed; i++) {
        const lji_mono *t = &G->t[i];
        lji_mono m = { .c = c * t->c };
        el_copy(g, &m.s, &t->s);
        el_copy(g, &m.d, &t->d);
        if (gs) { /* a broadcast scalar times e */
            if (t->m.n) {
                lj_expr *x = chain_expr(g, &t->m);
                if (x) put_scalar(g, &m, x, false);
                lj_expr_free(&x);
            }
            put(g, &m, ed, false);
        } else if (is_ones_term(t)) {
            put(g, &m, ed, false);
        } else if (!divide && t->m.n == 1 && t->m.v[0]->def == &lji_op_pow && t->m.v[0]->p == -1) {
            /* (1 ⊘ D) ∘ e = e ⊘ D */
            lj_expr *h = ew_simplified(g, t->m.v[0], e, false, G->rows, G->cols);
            if (!h && !g->failed) h = lji_g_node(g, lj_expr_hdiv(ctx, (lj_expr *)e, t->m.v[0]->a));
            if (h) push_factor(g, &m, h);
            lj_expr_free(&h);
        } else {
            /* an empty chain in a matrix term is the identity */
            lj_expr *x = t->m.n ? chain_expr(g, &t->m) : lji_g_node(g, lj_expr_eye(ctx, G->rows));
            lj_expr *h = x && t->m.n ? ew_simplified(g, x, e, divide, G->rows, G->cols) : NULL;
            if (x && !h && !g->failed)
                h = lji_g_node(g, divide ? lj_expr_hdiv(ctx, x, (lj_expr *)e) : lj_expr_hadamard(ctx, x, ed));
            if (h) push_factor(g, &m, h);
            lj_expr_free(&x);
            lj_expr_free(&h);
        }
        add_term(g, out, &m);
    }
    lj_expr_free(&ed);
}

void lji_poly_sum(lji_gctx *g, lji_poly *out, double c, const lji_poly *G)
{
    if (g->failed) return;
    if (is_scalar_shape(G->rows, G->cols)) {
        lji_poly_add(g, out, c, G);
        return;
    }
    for (int i = 0; i < G->n && !g->failed; i++) {
        const lji_mono *t = &G->t[i];
        lji_mono m = { .c = c * t->c };
        el_copy(g, &m.s, &t->s);
        el_copy(g, &m.d, &t->d);
        if (is_ones_term(t)) m.c *= (double)G->rows * (double)G->cols;
        else if (t->m.n == 0) m.c *= (double)G->rows; /* sum(I_n) = n */
        else {
            lj_expr *x = chain_expr(g, &t->m);
            lj_expr *s = x ? lji_g_node(g, lj_expr_sum(g->ctx, x)) : NULL;
            if (s) put_scalar_atom(g, &m, s, false);
            lj_expr_free(&x);
            lj_expr_free(&s);
        }
        add_term(g, out, &m);
    }
}

void lji_poly_div_scalar(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *s)
{
    for (int i = 0; i < G->n && !g->failed; i++) {
        lji_mono m;
        mono_copy(g, &m, &G->t[i]);
        m.c *= c;
        put_scalar(g, &m, s, true);
        add_term(g, out, &m);
    }
}

/* ---- the reverse pass ---------------------------------------------------------------- */

static bool same_pattern(const lji_pat *a, const lji_pat *b)
{
    if (a == b) return true;
    if (a->nrow != b->nrow || a->ncol != b->ncol || a->nnz != b->nnz) return false;
    return !memcmp(a->p, b->p, (size_t)(a->ncol + 1) * sizeof *a->p) &&
           (!a->nnz || !memcmp(a->i, b->i, (size_t)a->nnz * sizeof *a->i));
}

static lj_expr *gradient_expr(lj_context *ctx, const lj_expr *f, const lj_expr *x, const char *op)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!lji_expr_ok(f) || !lji_expr_ok(x)) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL or dead expression", op);
        return NULL;
    }
    if (!lji_is_var(x)) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: '%s' is not a variable", op, x->name ? x->name : "?");
        return NULL;
    }
    if (f->rows != 1 || f->cols != 1) {
        lji_error(ctx, LJ_ERR_NOT_SCALAR, "%s: expression is " LJI_SHP ", not a scalar", op, f->rows, f->cols);
        return NULL;
    }
    lji_topo t;
    if (lji_topo_build(ctx, f, &t) != LJ_OK) return NULL;
    lji_gctx g = { .ctx = ctx };
    lj_expr *r = NULL;
    int64_t n = t.n, xi = lji_topo_find(&t, x);
    unsigned char *dep = lji_calloc(ctx, (size_t)(n ? n : 1), 1);
    lji_poly *adj = lji_calloc(ctx, (size_t)(n ? n : 1), sizeof *adj);
    if (!dep || !adj) {
        g_nomem(&g);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const lj_expr *e = t.node[i];
        dep[i] = i == xi || (e->a && dep[lji_topo_kid(&t, i, 0)]) || (e->b && dep[lji_topo_kid(&t, i, 1)]);
        lji_poly_init(&adj[i], e->rows, e->cols);
    }
    if (xi >= 0 && dep[n - 1]) {
        lji_mono one = { .c = 1 };
        add_term(&g, &adj[n - 1], &one);
    }
    for (int64_t i = n - 1; i >= 0 && !g.failed; i--) {
        const lj_expr *e = t.node[i];
        if (i == xi || !dep[i] || adj[i].n == 0) continue;
        for (int which = 0; which < e->def->arity && !g.failed; which++) {
            const lj_expr *o = which ? e->b : e->a;
            int64_t oi = lji_topo_find(&t, o);
            if (!dep[oi]) continue;
            if (!e->def->adjoint) {
                lji_error(ctx, LJ_ERR_INVALID, "%s: %s has no adjoint rule", op, e->def->name);
                g.failed = true;
                break;
            }
            lji_poly part;
            lji_poly_init(&part, o->rows, o->cols);
            e->def->adjoint(&g, e, which, &adj[i], &part);
            lji_poly_add(&g, &adj[oi], 1.0, &part);
            lji_poly_free(&part);
            if (adj[oi].n > LJI_MAX_TERMS) {
                lji_poly one;
                collapse(&g, &one, &adj[oi]);
                lji_poly_free(&adj[oi]);
                adj[oi] = one;
            }
        }
        lji_poly_free(&adj[i]); /* every parent of an operand comes before it */
    }
    if (!g.failed) r = xi >= 0 ? lji_poly_expr(&g, &adj[xi]) : lji_g_node(&g, lji_expr_fill(ctx, x->rows, x->cols, 0.0));
    if (r && r->pat && !(x->pat && same_pattern(r->pat, x->pat))) {
        /* a gradient on a sparse pattern (sum(S ./ X) gives −S ⊘ X^{∘2})
         * for a dense variable is stored dense, one value per entry of x,
         * as its Hessian's rows must be: G + 0 (printed G); for a sparse
         * variable with another pattern, the same, then P_X ∘ (G + 0) */
        lj_expr *z = lji_g_node(&g, lji_expr_fill(ctx, x->rows, x->cols, 0.0));
        lj_expr *d = z ? lji_g_node(&g, lj_expr_add(ctx, r, z)) : NULL;
        lj_expr_free(&z);
        lj_expr_free(&r);
        r = d;
    }
done:
    if (adj)
        for (int64_t i = 0; i < n; i++) lji_poly_free(&adj[i]);
    free(adj);
    free(dep);
    lji_topo_free(&t);
    if (g.failed) lj_expr_free(&r);
    return r;
}

/* P_X: the constant with X's pattern and ones on it (X sparse) */
static lj_expr *pattern_of(lj_context *ctx, const lj_expr *x)
{
    char name[160];
    snprintf(name, sizeof name, "P_%s", x->name ? x->name : "X");
    lj_expr *p = lji_leaf_shell(ctx, &lji_op_const, "gradient_expr", name, x->rows, x->cols);
    if (!p) return NULL;
    int64_t nz = x->pat->nnz;
    p->value = lji_malloc(ctx, (size_t)(nz ? nz : 1) * sizeof *p->value);
    if (!p->value) {
        lj_expr_free(&p);
        lji_nomem(ctx, "gradient_expr");
        return NULL;
    }
    for (int64_t k = 0; k < nz; k++) p->value[k] = 1.0;
    p->pat = lji_pat_retain(x->pat);
    if (!(p->plabel = lji_strdup(ctx, x->name ? x->name : "X"))) lj_expr_free(&p); /* its selection is P_X */
    return p;
}

lj_expr *lj_expr_gradient_expr(lj_context *ctx, const lj_expr *f, const lj_expr *x)
{
    lj_expr *g = gradient_expr(ctx, f, x, "gradient_expr");
    if (!g || !x->pat) return g;
    /* a sparse variable: the gradient on its pattern, P_X ∘ G (a product in
     * G is then computed on the pattern alone) */
    lj_expr *P = pattern_of(ctx, x);
    lj_expr *r = P ? lj_expr_hadamard(ctx, P, g) : NULL;
    lj_expr_free(&P);
    lj_expr_free(&g);
    return r;
}

/* ---- Hessians -------------------------------------------------------------------------- */

lj_op *lj_expr_hessian_n(lj_context *ctx, const lj_expr *f, int nvars, const lj_expr *const *vars)
{
    const char *op = "hessian";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (nvars < 1 || !vars) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: %d variables%s", op, nvars, vars ? "" : " (NULL list)");
        return NULL;
    }
    for (int i = 0; i < nvars; i++)
        if (!lji_expr_ok(vars[i])) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: variable %d is NULL or dead", op, i + 1);
            return NULL;
        }
    lj_op **rows = lji_calloc(ctx, (size_t)nvars, sizeof *rows);
    if (!rows) {
        lji_nomem(ctx, op);
        return NULL;
    }
    lj_op *H = NULL;
    bool ok = true;
    for (int i = 0; i < nvars && ok; i++) {
        lj_expr *g = gradient_expr(ctx, f, vars[i], op);
        if (g && vars[i]->pat) { /* on the pattern, as lj_expr_gradient_expr */
            lj_expr *P = pattern_of(ctx, vars[i]);
            lj_expr *h = P ? lj_expr_hadamard(ctx, P, g) : NULL;
            lj_expr_free(&P);
            lj_expr_free(&g);
            g = h;
        }
        rows[i] = g ? (nvars == 1 ? lj_expr_jacobian(ctx, g, vars[0]) : lj_expr_jacobian_n(ctx, g, nvars, vars))
                    : NULL;
        ok = rows[i] != NULL;
        lj_expr_free(&g);
    }
    if (ok) H = nvars == 1 ? lj_op_retain(rows[0]) : lj_op_vstack(ctx, nvars, (const lj_op *const *)rows);
    for (int i = 0; i < nvars; i++) lj_op_free(&rows[i]);
    free(rows);
    return H;
}

lj_op *lj_expr_hessian(lj_context *ctx, const lj_expr *f, const lj_expr *x)
{
    return lj_expr_hessian_n(ctx, f, 1, &x);
}
