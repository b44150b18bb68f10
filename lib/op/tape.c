/* Tapes: the steps that recompute a Jacobian's numbers in place (op.h).
 *
 * A Jacobian plan records one while it builds J. Replaying it costs what
 * the numbers cost (a copy of the values that changed, an elementwise
 * derivative, a product that was multiplied out), not what building the
 * tree costs (allocations, labels, rewriting). The tape is only ever
 * replayed on the tree it was recorded with, and only when nothing but the
 * plan holds a node the replay changes: operators are immutable for
 * everybody else. */
#include "config.h"
#include "op.h"
#include <stdatomic.h>
#include <stdlib.h>

struct lji_tape {
    uint64_t gen; /* tells this recording's nodes from any other's */
    lji_step *s;
    int n, cap;
    lj_op **held; /* the nodes the steps write or read */
    int nheld, capheld;
    lj_op **mut;  /* sealed: the nodes of J the steps change, children first */
    long *mref;   /* and their reference counts when sealed */
    int64_t nmut;
    bool broken;
    bool nomem; /* an allocation failed (the evaluation fails) */
    const char *why;
};

static atomic_uint_fast64_t tape_generation = 1;

lji_tape *lji_tape_new(lj_context *ctx)
{
    lji_tape *t = lji_calloc(ctx, 1, sizeof *t);
    if (!t) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    t->gen = atomic_fetch_add(&tape_generation, 1);
    return t;
}

void lji_tape_free(lji_tape **pt)
{
    if (!pt || !*pt) return;
    lji_tape *t = *pt;
    *pt = NULL;
    for (int i = 0; i < t->nheld; i++) lj_op_free(&t->held[i]);
    free(t->held);
    free(t->s);
    free(t->mut);
    free(t->mref);
    free(t);
}

lji_tape *lji_tape_on(const lj_context *ctx)
{
    return ctx->tape && !ctx->tape->broken ? ctx->tape : NULL;
}

void lji_tape_break(lj_context *ctx, const char *why)
{
    lji_tape *t = ctx->tape;
    if (!t || t->broken) return;
    t->broken = true;
    t->why = why;
}

bool lji_tape_broken(const lji_tape *t, const char **why)
{
    if (why) *why = t->why;
    return t->broken;
}

bool lji_tape_nomem(const lji_tape *t)
{
    return t->nomem;
}

bool lji_tape_vol(const lj_context *ctx, const lj_op *a)
{
    return ctx->tape && a->tgen == ctx->tape->gen;
}

int lji_tape_step_of(const lj_context *ctx, const lj_op *a)
{
    return lji_tape_vol(ctx, a) ? a->tstep : -1;
}

bool lji_tape_reaches(const lj_context *ctx, const lj_op *a)
{
    if (!ctx->tape) return false;
    /* a small explicit stack: the trees compared by like-term collection
     * are terms of a sum, and this runs only when two compared equal */
    const lj_op *stack[64];
    int n = 0;
    stack[n++] = a;
    while (n > 0) {
        const lj_op *x = stack[--n];
        if (x->tgen == ctx->tape->gen) return true;
        for (int i = 0; i < x->nchild; i++) {
            if (n == 64) return true; /* too deep to tell: say yes, the tape breaks */
            stack[n++] = x->child[i];
        }
    }
    return false;
}

/* Two steps computing the same numbers from the same values: Diag(vec C)
 * made twice from one C. */
static bool same_step(const lji_step *x, const lji_step *y)
{
    return x->type == y->type && x->type != LJI_STEP_DENSE && x->type != LJI_STEP_DIAGPROD &&
           x->node[0] == y->node[0] && x->node[1] == y->node[1] && x->src[0] < 0 && y->src[0] < 0 &&
           x->rows == y->rows && x->cols == y->cols && x->ldx == y->ldx && x->xn == y->xn && x->yn == y->yn &&
           x->f == y->f && x->f1 == y->f1 && (x->p == y->p || (x->p != x->p && y->p != y->p)) &&
           (x->q == y->q || (x->q != x->q && y->q != y->q));
}

static bool same_nodes(const lji_tape *t, const lj_op *a, const lj_op *b, int depth)
{
    if (a == b) return true;
    bool va = a->tgen == t->gen, vb = b->tgen == t->gen;
    if (va || vb) return va && vb && same_step(&t->s[a->tstep], &t->s[b->tstep]);
    if (depth > 64 || a->nchild != b->nchild) return false;
    for (int i = 0; i < a->nchild; i++)
        if (!same_nodes(t, a->child[i], b->child[i], depth + 1)) return false;
    return true; /* numbers outside the tape are constants */
}

bool lji_tape_same_nodes(const lj_context *ctx, const lj_op *a, const lj_op *b)
{
    return !ctx->tape || same_nodes(ctx->tape, a, b, 0);
}

static bool hold(lj_context *ctx, lji_tape *t, const lj_op *a);

void lji_tape_guard_ones(lj_context *ctx, const double *x, int64_t n, int64_t node, int src, bool expect)
{
    lji_step g = { .type = LJI_STEP_ONES, .x = x, .rows = n, .node = { node, -1 }, .src = { src, -1 },
                   .expect = expect };
    lji_tape_add(ctx, &g, NULL, NULL);
}

/* a and b equal now (numbers compared, hashes not trusted: a node the
 * tape rewrote outside J keeps its old hash), or, with `gen`, equal but
 * for numbers that steps of that tape write; too deep to tell: true */
static bool alike(uint64_t gen, const lj_op *a, const lj_op *b, int depth)
{
    if (a == b) return true;
    if (depth > 64) return true;
    if (a->kind != b->kind || a->rows != b->rows || a->cols != b->cols || a->nchild != b->nchild) return false;
    if (gen && (a->tgen == gen || b->tgen == gen)) return true;
    for (int i = 0; i < a->nchild; i++) {
        if (a->coef && a->coef[i] != b->coef[i]) return false;
        if (!alike(gen, a->child[i], b->child[i], depth + 1)) return false;
    }
    return a->kind->equal ? a->kind->equal(a, b) : true;
}

void lji_tape_guard_unequal(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    lji_tape *t = lji_tape_on(ctx);
    if (!t || !alike(t->gen, a, b, 0)) return; /* they can never be equal */
    lji_step st = { .type = LJI_STEP_UNEQUAL, .op = a, .op2 = b, .node = { -1, -1 }, .src = { -1, -1 } };
    if (lji_tape_add(ctx, &st, NULL, a) >= 0 && !hold(ctx, t, b)) {
        lji_nomem(ctx, "jacobian");
        t->nomem = true;
        lji_tape_break(ctx, "no memory for the tape");
    }
}

void lji_tape_diag_of_two(lj_context *ctx, lji_step *st, const lj_op *x, const lj_op *y, const lj_op *r,
                          const char *why)
{
    if (!lji_is(r, &lji_kind_diag)) {
        lji_tape_break(ctx, why);
        return;
    }
    st->dst = r->data;
    st->rows = r->rows;
    st->x = x->data;
    st->y = y->data;
    st->node[0] = st->node[1] = -1;
    st->src[0] = lji_tape_step_of(ctx, x);
    st->src[1] = lji_tape_step_of(ctx, y);
    /* the tape holds x and y (y through the guard's keep) */
    int k = lji_tape_add(ctx, st, r, x);
    lji_step g = { .type = LJI_STEP_ONES, .x = r->data, .rows = r->rows, .node = { -1, -1 }, .src = { k, -1 } };
    if (k >= 0) lji_tape_add(ctx, &g, NULL, y);
}

static bool hold(lj_context *ctx, lji_tape *t, const lj_op *a)
{
    if (t->nheld == t->capheld) {
        int cap = t->capheld ? 2 * t->capheld : 16;
        lj_op **h = lji_realloc(ctx, t->held, (size_t)cap * sizeof *h);
        if (!h) return false;
        t->held = h;
        t->capheld = cap;
    }
    t->held[t->nheld++] = lj_op_retain(a);
    return true;
}

int lji_tape_add(lj_context *ctx, const lji_step *st, const lj_op *owner, const lj_op *keep)
{
    lji_tape *t = lji_tape_on(ctx);
    if (!t) return -1;
    if (owner && lji_tape_vol(ctx, owner)) { /* two steps for one node: not a tape this code makes */
        lji_tape_break(ctx, "a node recomputed twice");
        return -1;
    }
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 16;
        lji_step *s = lji_realloc(ctx, t->s, (size_t)cap * sizeof *s);
        if (!s) {
            lji_nomem(ctx, "jacobian");
            t->nomem = true;
            lji_tape_break(ctx, "no memory for the tape");
            return -1;
        }
        t->s = s;
        t->cap = cap;
    }
    if ((owner && !hold(ctx, t, owner)) || (keep && !hold(ctx, t, keep))) {
        lji_nomem(ctx, "jacobian");
        t->nomem = true;
        lji_tape_break(ctx, "no memory for the tape");
        return -1;
    }
    int k = t->n++;
    t->s[k] = *st;
    if (owner) {
        lj_op *o = (lj_op *)owner;
        o->tgen = t->gen;
        o->tstep = k;
    }
    return k;
}

/* ---- sealing: which nodes of J a replay changes ---------------------------- */

/* a set of node pointers, open addressing */
typedef struct {
    const lj_op **k;
    signed char *v; /* 1: changes, 0: does not */
    size_t cap, n;
} nodeset;

static size_t slot(const nodeset *s, const lj_op *a)
{
    size_t h = (size_t)((uintptr_t)a >> 4) * 0x9e3779b97f4a7c15ull, m = s->cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m)
        if (!s->k[i] || s->k[i] == a) return i;
}

static bool set_grow(lj_context *ctx, nodeset *s)
{
    nodeset g = { NULL, NULL, s->cap ? 2 * s->cap : 64, 0 };
    g.k = lji_calloc(ctx, g.cap, sizeof *g.k);
    g.v = lji_calloc(ctx, g.cap, 1);
    if (!g.k || !g.v) {
        free(g.k);
        free(g.v);
        return false;
    }
    for (size_t i = 0; i < s->cap; i++)
        if (s->k[i]) {
            size_t j = slot(&g, s->k[i]);
            g.k[j] = s->k[i];
            g.v[j] = s->v[i];
            g.n++;
        }
    free(s->k);
    free(s->v);
    *s = g;
    return true;
}

lj_status lji_tape_seal(lj_context *ctx, lji_tape *t, const lj_op *J)
{
    /* post-order walk of J's DAG, each node once: a node changes when a
     * step writes it or one of its children changes */
    nodeset seen = { 0 };
    typedef struct { const lj_op *a; int next; } frame;
    frame *st = NULL;
    int64_t nst = 0, cst = 0;
    lj_status rc = LJ_OK;
    if (!set_grow(ctx, &seen)) goto nomem;
    cst = 64;
    st = lji_malloc(ctx, (size_t)cst * sizeof *st);
    if (!st) goto nomem;
    st[nst++] = (frame){ J, 0 };
    while (nst > 0) {
        frame *f = &st[nst - 1];
        if (f->next < f->a->nchild) {
            const lj_op *c = f->a->child[f->next++];
            if (seen.k[slot(&seen, c)] == c) continue;
            if (nst == cst) {
                frame *g = lji_realloc(ctx, st, (size_t)(2 * cst) * sizeof *st);
                if (!g) goto nomem;
                st = g;
                cst *= 2;
            }
            st[nst++] = (frame){ c, 0 };
            continue;
        }
        const lj_op *a = f->a;
        nst--;
        bool ch = a->tgen == t->gen;
        for (int i = 0; i < a->nchild && !ch; i++) ch = seen.v[slot(&seen, a->child[i])] == 1;
        if (2 * (seen.n + 1) > seen.cap && !set_grow(ctx, &seen)) goto nomem;
        size_t j = slot(&seen, a);
        seen.k[j] = a;
        seen.v[j] = ch;
        seen.n++;
        if (!ch) continue;
        if (t->nmut % 64 == 0) {
            lj_op **m = lji_realloc(ctx, t->mut, (size_t)(t->nmut + 64) * sizeof *m);
            if (!m) goto nomem;
            t->mut = m;
            long *r = lji_realloc(ctx, t->mref, (size_t)(t->nmut + 64) * sizeof *r);
            if (!r) goto nomem;
            t->mref = r;
        }
        t->mut[t->nmut] = (lj_op *)a;
        t->mref[t->nmut] = atomic_load(&a->refs) - (a == J ? 1 : 0); /* J's own reference is the caller's */
        t->nmut++;
    }
    goto done;
nomem:
    rc = lji_nomem(ctx, "jacobian");
done:
    free(st);
    free(seen.k);
    free(seen.v);
    return rc;
}

bool lji_tape_free_to_write(const lji_tape *t)
{
    for (int64_t i = 0; i < t->nmut; i++)
        if (atomic_load(&t->mut[i]->refs) != t->mref[i]) return false;
    return true;
}

/* ---- replay ----------------------------------------------------------------- */

static bool all_ones(const double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 1.0) return false;
    return true;
}

int lji_tape_run(lj_context *ctx, lji_tape *t, const unsigned char *changed, double *const *vals,
                 const char **why)
{
    bool any = false;
    for (int k = 0; k < t->n; k++) {
        lji_step *s = &t->s[k];
        bool d = false;
        for (int w = 0; w < 2; w++) {
            if (s->node[w] >= 0 && changed[s->node[w]]) d = true;
            if (s->src[w] >= 0 && t->s[s->src[w]].dirty) d = true;
        }
        s->dirty = d;
        if (!d) continue;
        any = true;
        /* a plan node's values where they are now: a leaf's block moves
         * when operators held the old one (lji_leaf_own) */
        const double *sx = s->node[0] >= 0 ? vals[s->node[0]] : s->x;
        const double *sy = s->node[1] >= 0 ? vals[s->node[1]] : s->y;
        switch (s->type) {
        case LJI_STEP_COPY:
            for (int64_t j = 0; j < s->cols; j++)
                memcpy(s->dst + j * s->ldd, sx + j * s->ldx, (size_t)s->rows * sizeof(double));
            break;
        case LJI_STEP_ELEM:
            for (int64_t i = 0; i < s->rows; i++)
                s->dst[i] = s->f(sx ? sx[s->xn == 1 ? 0 : i] : 0, sy ? sy[s->yn == 1 ? 0 : i] : 0, s->p);
            break;
        case LJI_STEP_LINCOMB:
            for (int64_t i = 0; i < s->rows; i++) s->dst[i] = s->q * sx[i] + s->p * sy[i];
            break;
        case LJI_STEP_FUNC:
            for (int64_t i = 0; i < s->rows; i++) {
                double x = sx[i];
                if ((s->ok1 && !s->ok1(x)) || (s->ok2 && !s->ok2(x))) {
                    *why = "a value left the derivative's domain (a fresh build reports it)";
                    return 1;
                }
                s->dst[i] = s->f1(x);
            }
            break;
        case LJI_STEP_DIAGPROD:
            for (int64_t i = 0; i < s->rows; i++) s->dst[i] = s->x[i] * s->y[i];
            break;
        case LJI_STEP_TRANSPOSE:
            lji_transpose(s->rows, s->cols, 1.0, sx, s->ldx, 0.0, s->dst, s->ldd);
            break;
        case LJI_STEP_DENSE: {
            lj_status st = lji_to_dense(ctx, s->op, s->dst, s->ldd);
            if (st != LJ_OK) return st;
            break;
        }
        case LJI_STEP_UNEQUAL: /* after the numbers are all in place, below */
            break;
        case LJI_STEP_ONES:
            if (all_ones(sx, s->rows) != s->expect) {
                *why = s->expect ? "a vector of ones changed (a label or an identity no longer holds)"
                                 : "a Diag's entries became all ones (a fresh build makes it I)";
                return 1;
            }
            break;
        }
    }
    if (!any) return LJ_OK;
    for (int k = 0; k < t->n; k++)
        if (t->s[k].type == LJI_STEP_UNEQUAL && alike(0, t->s[k].op, t->s[k].op2, 0)) {
            *why = "two terms of a sum became equal (a fresh build merges them)";
            return 1;
        }
    for (int64_t i = 0; i < t->nmut; i++) lji_op_rehash(t->mut[i]);
    return LJ_OK;
}
