/* Linear combinations Σ α_i A_i: flattened, like terms collected. */
#include "config.h"
#include "op.h"
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

static lj_status sum_term(lj_context *ctx, const lj_op *J, int i, bool trans, int64_t k, double alpha,
                          const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    return lji_apply(ctx, J->child[i], trans, k, alpha * J->coef[i], X, ldx, beta, Y, ldy);
}

static lj_status sum_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                           const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    lj_status st = LJ_OK;
    if (lji_apply_terms(ctx, J, J->nchild, sum_term, trans, k, alpha, X, ldx, beta, Y, ldy, &st)) return st;
    for (int i = 0; i < J->nchild && st == LJ_OK; i++)
        st = lji_apply(ctx, J->child[i], trans, k, alpha * J->coef[i], X, ldx, i ? 1.0 : beta, Y,
                       ldy);
    return st;
}

/* alpha·A + beta·B for canonical CSC A and B of one shape: a merge of
 * each column's sorted rows, counted first so that the result is allocated
 * once, exactly, and written in one pass (sorted and packed as it is
 * written, its arrays advised for huge pages: lji_sparse_alloc). */
static cholmod_sparse *sparse_add(lj_context *ctx, const cholmod_sparse *A, double alpha,
                                  const cholmod_sparse *B, double beta)
{
    const int64_t n = (int64_t)A->ncol, *Ap = A->p, *Ai = A->i, *Bp = B->p, *Bi = B->i;
    const double *Ax = A->x, *Bx = B->x;
    int64_t nz = 0;
    for (int64_t j = 0; j < n; j++) {
        int64_t p = Ap[j], q = Bp[j], pe = Ap[j + 1], qe = Bp[j + 1];
        while (p < pe && q < qe) {
            int64_t a = Ai[p], b = Bi[q];
            p += a <= b;
            q += b <= a;
            nz++;
        }
        nz += (pe - p) + (qe - q);
    }
    cholmod_sparse *S = lji_sparse_alloc(ctx, (int64_t)A->nrow, n, nz, "to_sparse");
    if (!S) return NULL;
    int64_t *Sp = S->p, *Si = S->i, w = 0;
    double *Sx = S->x;
    for (int64_t j = 0; j < n; j++) {
        Sp[j] = w;
        int64_t p = Ap[j], q = Bp[j], pe = Ap[j + 1], qe = Bp[j + 1];
        while (p < pe && q < qe) {
            int64_t a = Ai[p], b = Bi[q];
            if (a == b) {
                Si[w] = a;
                Sx[w++] = alpha * Ax[p++] + beta * Bx[q++];
            } else if (a < b) {
                Si[w] = a;
                Sx[w++] = alpha * Ax[p++];
            } else {
                Si[w] = b;
                Sx[w++] = beta * Bx[q++];
            }
        }
        for (; p < pe; p++, w++) Si[w] = Ai[p], Sx[w] = alpha * Ax[p];
        for (; q < qe; q++, w++) Si[w] = Bi[q], Sx[w] = beta * Bx[q];
    }
    Sp[n] = w;
    return S;
}

static cholmod_sparse *sum_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *acc = NULL;
    for (int i = 0; i < J->nchild; i++) {
        cholmod_sparse *t = lji_to_sparse(ctx, J->child[i]);
        if (!t) goto fail;
        if (!acc) {
            int64_t nz = ((int64_t *)t->p)[t->ncol];
            double *x = t->x;
            if (J->coef[i] != 1.0)
                for (int64_t q = 0; q < nz; q++) x[q] *= J->coef[i];
            acc = t;
            continue;
        }
        cholmod_sparse *s = sparse_add(ctx, acc, 1.0, t, J->coef[i]);
        cholmod_l_free_sparse(&t, &ctx->cc);
        cholmod_l_free_sparse(&acc, &ctx->cc);
        if (!s) goto fail;
        acc = s;
    }
    return acc;
fail:
    cholmod_l_free_sparse(&acc, &ctx->cc);
    return NULL;
}

static int64_t sum_nnz(const lj_op *J, bool *exact)
{
    int64_t t = 0;
    bool e;
    for (int i = 0; i < J->nchild; i++)
        if (!lji_add_ok(t, lji_nnz(J->child[i], &e), &t)) t = INT64_MAX;
    *exact = false; /* patterns may overlap */
    return t;
}

static void sum_cost(const lj_op *J, double *flops, double *bytes)
{
    double f = 0, b = 0;
    for (int i = 0; i < J->nchild; i++) {
        double fi, bi;
        lji_cost(J->child[i], &fi, &bi);
        f += fi + (double)J->rows;
        b += bi;
    }
    *flops = f;
    *bytes = b;
}

/* For a value labelled "(−M)", M a product: the bytes before M; else 0 */
/* Term t of a sum, with coefficient c, as it prints after its sign and
 * number (new memory; NULL on failure), *cout the coefficient it then
 * has: a value "(−x^T·A)" gives its minus sign to the term (x^T·A^T −
 * x^T·A, not x^T·A^T + (−x^T·A)), and so does a Diag among its factors; a
 * value's transpose prints as the value of its transposed label would. At
 * most like's limit is written (*cut when that cut it). */
static char *term_text(const lji_buf *like, size_t used, const lj_op *t, double c, lj_print_format fmt, double *cout,
                       bool *cut)
{
    lji_buf o;
    lji_buf_init_room(&o, like, used);
    /* a whole number in a Diag's label meets a coefficient other than ±1:
     * 4·Diag(x.^2), not 2·Diag(2·x.^2); I − Diag(2·x) stays */
    double k;
    if (fabs(c) != 1.0 && lji_diag_print_times(&o, t, fmt, &k)) {
        *cout = c * k;
        *cut = o.truncated;
        return lji_buf_finish(&o, "print");
    }
    char tbuf[64], *own = NULL;
    const char *vl = t->label && lji_is(t, &lji_kind_dense) ? t->label : NULL;
    if (lji_is(t, &lji_kind_transpose) && lji_is(t->child[0], &lji_kind_dense) && t->child[0]->label) {
        vl = lji_label_transposed_to(like->ctx, t->child[0]->label, tbuf, sizeof tbuf, &own);
        if (!vl) o.failed = true;
    }
    size_t skip = vl ? lji_label_minus_product(vl) : 0;
    if (skip) c = -c;
    double a = fabs(c);
    bool nf = false;
    char *neg = !skip && !o.failed ? lji_print_negated(&o, t, fmt, a != 1.0 ? LJI_AT_COMPOSE : LJI_AT_SUM, &nf) : NULL;
    o.failed |= nf;
    if (neg) c = -c;
    /* a term after a scalar or a minus sign is printed as a factor; a
     * value's label with no sum inside needs no brackets after a minus
     * either ("x^T·A − x^T·B") */
    bool bare = a == 1.0 && vl && !lji_label_is_sum_inside(vl);
    if (skip) /* the product after the value's minus sign */
        lji_put_label_n(&o, vl + skip, strlen(vl) - skip - 1, fmt);
    else if (neg) {
        lji_buf_puts(&o, neg);
        double lead = 1; /* −Diag(−2) is 2·I_3, its 2 the term's */
        size_t m = o.s && !o.failed && !o.truncated ? lji_leading_number(o.s, fmt, &lead) : 0;
        if (m) {
            memmove(o.s, o.s + m, o.len - m + 1);
            o.len -= m;
            c *= lead;
        }
    } else {
        lji_print(&o, t, fmt, a != 1.0 || (c < 0 && !bare) ? LJI_AT_COMPOSE : LJI_AT_SUM);
        /* a number the term's print leads with meets its coefficient: 3
         * times 2·(vec X)^T is 6·(vec X)^T, and alike with the others */
        double lead = 1;
        bool whole = o.s && !o.failed && !o.truncated;
        size_t m = whole ? lji_leading_number(o.s, fmt, &lead) : 0;
        if (!m && whole && lji_label_minus_len(o.s) && !lji_label_is_sum(o.s)) { /* + −s·I_3 is − s·I_3 */
            m = lji_label_minus_len(o.s);
            lead = -1;
        }
        if (m) {
            memmove(o.s, o.s + m, o.len - m + 1);
            o.len -= m;
            c *= lead;
        }
    }
    free(own);
    free(neg);
    *cout = c;
    *cut = o.truncated;
    return lji_buf_finish(&o, "print");
}

/* whether a and b are the same text but for spaces (LaTeX writes
 * "x^{\top} \cdot" and "x^{\top}\cdot" for the same product) */
static bool same_text(const char *a, const char *b)
{
    for (;; a++, b++) {
        while (*a == ' ') a++;
        while (*b == ' ') b++;
        if (*a != *b) return false;
        if (!*a) return true;
    }
}

/* The terms in order, each with its sign and number; terms that print
 * alike are one, their coefficients added (x^T·S^{-1} + x^T·S^{-1} is
 * 2·x^T·S^{-1}: their numbers differ by rounding, so the operator keeps
 * both, but they are the same matrix). */
static void sum_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    int n = J->nchild;
    char **text = lji_calloc(b->ctx, (size_t)(n ? n : 1), sizeof *text);
    double *c = lji_malloc(b->ctx, (size_t)(n ? n : 1) * sizeof *c);
    bool failed = !text || !c, cut = false;
    size_t used = 0; /* by the terms before: what is left of b's room is the next one's */
    for (int i = 0; i < n && !failed && !cut; i++) { /* after a cut term, nothing more is written */
        failed = !(text[i] = term_text(b, used, J->child[i], J->coef[i], fmt, &c[i], &cut));
        if (!failed) used += strlen(text[i]);
    }
    if (failed) {
        b->failed = true;
        n = 0;
    }
    /* a Diag whose label leads with a whole number keeps it inside beside
     * a coefficient of ±1 (I − Diag(2·x)), but gives it up where the rest
     * is another term's: 9·Diag(x) + Diag(3·x) is 12·Diag(x) */
    for (int i = 0; i < n && !cut && !b->failed; i++) {
        double k;
        lji_buf o;
        if (fabs(J->coef[i]) != 1.0 || !lji_is(J->child[i], &lji_kind_diag)) continue;
        lji_buf_init_room(&o, b, 0);
        bool alt = lji_diag_print_times(&o, J->child[i], fmt, &k) && !o.failed && !o.truncated && o.s;
        for (int j = 0; alt && j < n; j++)
            if (j != i && same_text(o.s, text[j])) {
                free(text[i]);
                text[i] = lji_buf_finish(&o, "print");
                c[i] = J->coef[i] * k;
                if (!text[i]) b->failed = true, n = 0;
                break;
            }
        lji_buf_discard(&o);
    }
    /* the terms into o first: where like terms leave one, the sum needs no
     * brackets of its own (A·I_3, not A·(I_3), for A·(2·I_3 − I_3)) */
    lji_buf o;
    lji_buf_init_room(&o, b, 0);
    int terms = 0;
    double single = 1;
    bool single_sum = false;
    bool *gone = lji_calloc(b->ctx, (size_t)(n ? n : 1), sizeof *gone);
    if (!gone) b->failed = true, n = 0;
    for (int i = 0, first = 1; i < n && text[i]; i++) {
        if (gone[i] || (!cut && lji_text_is_zero(text[i]))) continue; /* taken into a term before it; 0 */
        double sum = c[i];
        bool alike = false;
        for (int j = i + 1; j < n && text[j] && !cut; j++)
            if (same_text(text[i], text[j])) sum += c[j], alike = true;
        for (int j = i + 1; j < n && text[j] && alike; j++)
            if (same_text(text[i], text[j])) gone[j] = true;
        if (alike && sum == 0) continue; /* 2·Diag(x) − Diag(2·x) is no term */
        lji_put_signed_coef(&o, sum, first, fmt);
        first = 0;
        bool wrap = alike && lji_label_is_sum(text[i]); /* 2·(a + b) */
        lji_put_open(&o, wrap);
        lji_buf_puts(&o, text[i]);
        lji_put_close(&o, wrap);
        terms++, single = sum, single_sum = lji_label_is_sum(text[i]);
    }
    free(gone);
    if (!terms && n && !cut && !o.failed) { /* every term met its opposite */
        lji_buf_discard(&o);
        lji_kind_zero.print(b, J, fmt, where);
        for (int i = 0; i < J->nchild; i++) free(text[i]);
        free(text);
        free(c);
        return;
    }
    bool paren = where != LJI_AT_TOP &&
                 !(terms == 1 && !cut && !single_sum &&
                   (single == 1 || (single > 0 && where != LJI_AT_KRON && where != LJI_AT_TIGHT)));
    lji_put_open(b, paren);
    b->failed |= o.failed;
    b->truncated |= o.truncated;
    if (o.s) lji_buf_puts(b, o.s);
    lji_buf_discard(&o);
    lji_put_close(b, paren);
    if (cut) b->truncated = true;
    for (int i = 0; text && i < J->nchild; i++) free(text[i]);
    free(text);
    free(c);
}

/* the first term into a, each next one into workspace and added in order */
static lj_status sum_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    int64_t n;
    if (!lji_size_ok(J->rows, J->cols, &n)) return lji_error(ctx, LJ_ERR_OVERFLOW, "to_dense: workspace overflows");
    int64_t r = J->rows, ldt = r > 1 ? r : 1;
    lji_mark mk = lji_work_mark(ctx);
    double *t = J->nchild > 1 ? lji_work_push(ctx, n) : NULL;
    lj_status st = J->nchild > 1 && !t ? lji_nomem(ctx, "to_dense") : LJ_OK;
    if (J->nchild == 0) lji_zero_block(J->rows, J->cols, a, ld);
    for (int i = 0; st == LJ_OK && i < J->nchild; i++) {
        double c = J->coef[i];
        if (i == 0) {
            st = lji_to_dense(ctx, J->child[0], a, ld);
            if (c != 1.0)
                for (int64_t j = 0; st == LJ_OK && j < J->cols; j++)
                    for (int64_t q = 0; q < r; q++) a[q + j * ld] *= c;
            continue;
        }
        st = lji_to_dense(ctx, J->child[i], t, ldt);
        for (int64_t j = 0; st == LJ_OK && j < J->cols; j++)
            for (int64_t q = 0; q < r; q++) a[q + j * ld] += c * t[q + j * ldt];
    }
    lji_work_pop(ctx, mk);
    return st;
}

static lj_op *sum_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    lj_op **t = lji_calloc(ctx, (size_t)J->nchild, sizeof *t);
    if (!t) {
        lji_nomem(ctx, "rows");
        return NULL;
    }
    int i;
    for (i = 0; i < J->nchild; i++)
        if (!(t[i] = lji_rows(ctx, J->child[i], r0, r1))) break;
    lj_op *r = i == J->nchild ? lj_op_lincomb(ctx, J->nchild, J->coef, (const lj_op *const *)t) : NULL;
    for (int k = 0; k < J->nchild; k++) lj_op_free(&t[k]);
    free(t);
    return r;
}

const lji_kind lji_kind_sum = {
    .id = LJ_OP_SUM,
    .name = "sum",
    .apply = sum_apply,
    .to_sparse = sum_to_sparse,
    .rows = sum_rows,
    .to_dense = sum_to_dense,
    .nnz = sum_nnz,
    .cost = sum_cost,
    .print = sum_print,
    .equal = NULL, /* coefficients and children are compared by lji_equal */
};

typedef struct {
    lj_context *ctx;
    lj_op **t;
    double *c;
    int n, cap;
    bool failed;
} terms;

/* x and y the same factor: 1 one node, 2 equal numbers (a merge then
 * depends on them, which a plan's tape cannot follow), 0 neither */
static int same_factor(const lj_op *x, const lj_op *y)
{
    if (x == y) return 1;
    return lji_op_hash(x) == lji_op_hash(y) && lji_equal(x, y) ? 2 : 0;
}

/* Which end of the products t and a is a Diag while the rest are the same
 * factors (0 the left, 1 the right), or -1. With guard, at each end with
 * Diags the first factors that differ are guarded: should they become
 * equal, a fresh build merges the two terms, so a plan must not keep them
 * apart. */
static int diag_end(lj_context *ctx, const lj_op *t, const lj_op *a, bool guard)
{
    if (!lji_is(t, &lji_kind_compose) || !lji_is(a, &lji_kind_compose) || t->nchild != a->nchild) return -1;
    int n = t->nchild;
    for (int end = 0; end < 2; end++) {
        int s = end ? n - 1 : 0, k = end ? 0 : 1, stop = end ? n - 1 : n, by_numbers = 0;
        if (!lji_is(t->child[s], &lji_kind_diag) || !lji_is(a->child[s], &lji_kind_diag)) continue;
        for (; k < stop; k++) {
            int same = same_factor(t->child[k], a->child[k]);
            if (!same) break;
            if (same == 2 && !lji_tape_same_nodes(ctx, t->child[k], a->child[k])) by_numbers = 1;
        }
        if (k < stop) {
            if (guard) lji_tape_guard_unequal(ctx, t->child[k], a->child[k]);
            continue;
        }
        if (by_numbers) lji_tape_break(ctx, "terms merged by their factors' numbers");
        return end;
    }
    return -1;
}


/* A term of a Diag's sum label: the label without the parentheses that
 * wrap a whole product ("(2·(A·x))" is 2·(A·x)), and a leading minus sign
 * of a product moved into its coefficient *c; *sum whether what is left
 * has a sum at its top. */
typedef struct {
    const char *s;
    size_t n;
    bool sum;
} term_label;

static term_label term_label_of(const char *l, double *c)
{
    term_label t = { l, strlen(l), lji_label_is_sum_inside(l) };
    if (!t.sum && lji_label_is_wrapped(l)) {
        t.s++;
        t.n -= 2;
    }
    size_t minus = t.sum ? 0 : lji_label_minus_len(t.s);
    if (minus && minus < t.n) {
        t.s += minus;
        t.n -= minus;
        *c = -*c;
    }
    return t;
}


/* c·t into b, a term of a sum (first: the sum's first): its sign and
 * number, and t; a whole number before a reciprocal 1./R as k./R */
static void put_coef_term(lji_buf *b, double c, bool first, const char *t, size_t n)
{
    double a = fabs(c);
    if (a != 1.0 && a == floor(a) && a < 1e6 && n > 3 && !strncmp(t, "1./", 3)) {
        lji_put_signed_coef(b, c < 0 ? -1.0 : 1.0, first, LJ_PRINT_UNICODE);
        lji_buf_printf(b, "%.0f", a);
        lji_buf_putn(b, t + 1, n - 1); /* 3./R */
        return;
    }
    lji_put_signed_coef(b, c, first, LJ_PRINT_UNICODE);
    lji_buf_putn(b, t, n);
}

/* "q·a + p·b" for the Diag of q·x + p·y (q, p the two terms' coefficients,
 * la, lb the labels of x and y): no coefficient of 1 written, a − for a
 * negative one, sums bracketed where a number or a minus sign multiplies
 * them, and the head and "…" beyond LJI_DIAG_LABEL_MAX */
static char *diag_sum_label(lj_context *ctx, const char *la, double q, const char *lb, double p)
{
    lji_buf b;
    lji_buf_init(&b, ctx);
    term_label a = term_label_of(la, &q), t = term_label_of(lb, &p);
    bool whole = a.n + t.n <= LJI_DIAG_LABEL_MAX;
    if (whole && !a.sum && !t.sum) { /* like terms, k·P and k·(P) alike: 2·A·x + 2·(A·x) is 4·A·x */
        char sa[LJI_DIAG_LABEL_MAX + 1], st[LJI_DIAG_LABEL_MAX + 1];
        memcpy(sa, a.s, a.n), sa[a.n] = '\0';
        memcpy(st, t.s, t.n), st[t.n] = '\0';
        double ka, kt;
        const char *ra = lji_label_number(sa, &ka), *rt = lji_label_number(st, &kt);
        size_t na = strlen(ra), nt = strlen(rt);
        if (lji_label_is_wrapped(ra) && !lji_label_is_sum_inside(ra)) ra++, na -= 2;
        if (lji_label_is_wrapped(rt) && !lji_label_is_sum_inside(rt)) rt++, nt -= 2;
        double c = q * ka + p * kt;
        if (na == nt && !strncmp(ra, rt, na) && c != 0.0 && !lji_label_minus_len(ra)) {
            lji_put_signed_coef(&b, c, true, LJ_PRINT_UNICODE);
            lji_buf_putn(&b, ra, na);
            return lji_buf_finish(&b, "lincomb");
        }
    }
    bool wrap = q != 1.0 && (a.sum || !whole); /* −(a + b), 2·(a + b) */
    if (whole && !wrap) { /* q·a, 3./R */
        put_coef_term(&b, q, true, a.s, a.n);
        goto second;
    }
    lji_put_signed_coef(&b, q, true, LJ_PRINT_UNICODE);
    if (wrap) lji_buf_puts(&b, "(");
    if (!whole) {
        char *head = lji_strndup(ctx, a.s, a.n);
        if (!head) {
            lji_buf_discard(&b);
            return NULL;
        }
        lji_put_label_head(&b, head, wrap ? "…" : "");
        free(head);
        if (wrap) lji_buf_puts(&b, ")");
        lji_buf_puts(&b, p < 0 ? " − …" : " + …");
        return lji_buf_finish(&b, "lincomb");
    }
    lji_buf_putn(&b, a.s, a.n);
    if (wrap) lji_buf_puts(&b, ")");
second:
    wrap = p != 1.0 && t.sum; /* a − (b + c) */
    if (wrap) {
        lji_put_signed_coef(&b, p, false, LJ_PRINT_UNICODE);
        lji_buf_puts(&b, "(");
        lji_buf_putn(&b, t.s, t.n);
        lji_buf_puts(&b, ")");
    } else
        put_coef_term(&b, p, false, t.s, t.n);
    return lji_buf_finish(&b, "lincomb");
}

/* q·Diag(x)·R + p·Diag(y)·R = Diag(q·x + p·y)·R (and R·Diag at the right
 * end): R is applied, and materialised, once. The coefficients go inside,
 * where the user's numbers are, so that the label shows no ratio of them
 * (Diag(2·x − 3·(x ∘ x))·A, not 2·Diag(x − 1.5·(x ∘ x))·A). A plan's tape
 * forms q·x + p·y again, and while it is not all ones the sum stays a
 * Diag. NULL with *fail when out of memory.
 *
 * Two bare Diags stay two terms: merged, their entries may cancel to
 * rounding residues (J of x./x is Diag(1./x) − Diag(x./x.^2)), and the
 * sizes of the terms that cancelled, which say what rounding to expect
 * of J, would be lost to anyone checking it. */
static lj_op *diag_merge(lj_context *ctx, const lj_op *t, const lj_op *a, int end, double q, double p,
                         bool *fail)
{
    int n = t->nchild, s = end ? n - 1 : 0;
    const lj_op *x = t->child[s], *y = a->child[s];
    int64_t m = x->rows;
    double *d = lji_malloc(ctx, (size_t)(m ? m : 1) * sizeof *d);
    char *label = d ? diag_sum_label(ctx, x->label ? x->label : "a", q, y->label ? y->label : "b", p) : NULL;
    lj_op *D = NULL, *r = NULL;
    if (label) {
        for (int64_t i = 0; i < m; i++) d[i] = q * x->data[i] + p * y->data[i];
        D = lj_op_diag(ctx, m, d, label);
    }
    if (D && (lji_tape_vol(ctx, x) || lji_tape_vol(ctx, y))) {
        lji_step st = { .type = LJI_STEP_LINCOMB, .xn = m, .yn = m, .q = q, .p = p };
        lji_tape_diag_of_two(ctx, &st, x, y, D, "a sum of Diags is I");
    }
    if (D) {
        const lj_op *f[LJI_FLATTEN_MAX + 1];
        const lj_op **fs = n <= LJI_FLATTEN_MAX + 1 ? f : lji_malloc(ctx, (size_t)n * sizeof *fs);
        if (fs) {
            for (int k = 0; k < n; k++) fs[k] = k == s ? D : t->child[k];
            r = lj_op_compose(ctx, n, fs);
            if (fs != f) free(fs);
        }
    }
    if (!r && ctx->status == LJ_OK) lji_nomem(ctx, "lincomb");
    *fail = !r;
    lj_op_free(&D);
    free(d);
    free(label);
    return r;
}

/* Add c·a (a borrowed), flattening sums and scalars, merging like terms. */
static void terms_add(terms *ts, double c, const lj_op *a)
{
    if (ts->failed || c == 0.0 || lji_is_zero(a)) return;
    if (lji_is(a, &lji_kind_sum) && a->nchild <= LJI_FLATTEN_MAX) {
        for (int i = 0; i < a->nchild; i++) terms_add(ts, c * a->coef[i], a->child[i]);
        return;
    }
    if (lji_is(a, &lji_kind_scaled) && !a->label) { /* s·A with a symbol s stays a term of its own */
        terms_add(ts, c * a->alpha, a->child[0]);
        return;
    }
    for (int i = 0; i < ts->n; i++)
        if (lji_op_hash(ts->t[i]) == lji_op_hash(a) && lji_equal(ts->t[i], a)) {
            /* like terms by their numbers: the structure depends on them */
            if (!lji_tape_same_nodes(ts->ctx, ts->t[i], a)) lji_tape_break(ts->ctx, "like terms merged by their numbers");
            ts->c[i] += c;
            return;
        }
    for (int i = 0; i < ts->n; i++) {
        int end = diag_end(ts->ctx, ts->t[i], a, false);
        if (end < 0) continue;
        /* should the two become equal, a fresh build collects them as like
         * terms (c_i + c)·t: a plan's J must not keep Diag(x − x) */
        lji_tape_guard_unequal(ts->ctx, ts->t[i], a);
        bool fail;
        lj_op *m = diag_merge(ts->ctx, ts->t[i], a, end, ts->c[i], c, &fail);
        if (fail) {
            ts->failed = true;
            return;
        }
        lj_op_free(&ts->t[i]);
        ts->t[i] = m;
        ts->c[i] = 1.0; /* inside the Diag now */
        return;
    }
    for (int i = 0; i < ts->n; i++) {
        lji_tape_guard_unequal(ts->ctx, ts->t[i], a); /* and they stay unlike */
        diag_end(ts->ctx, ts->t[i], a, true); /* no end merges here: the factors that differ guarded */
    }
    if (ts->n == ts->cap) {
        int cap = ts->cap ? 2 * ts->cap : 8;
        lj_op **t = lji_realloc(ts->ctx, ts->t, (size_t)cap * sizeof *t);
        if (!t) {
            ts->failed = true;
            return;
        }
        ts->t = t;
        double *cc = lji_realloc(ts->ctx, ts->c, (size_t)cap * sizeof *cc);
        if (!cc) {
            ts->failed = true;
            return;
        }
        ts->c = cc;
        ts->cap = cap;
    }
    ts->t[ts->n] = lji_take_ref(ts->ctx, a);
    ts->c[ts->n++] = c;
}

/* The factors of a term from the left: a product's, or the term itself */
static int factors_of(const lj_op *const *t, const lj_op *const **f)
{
    if (lji_is(*t, &lji_kind_compose)) {
        *f = (const lj_op *const *)(*t)->child;
        return (*t)->nchild;
    }
    *f = t;
    return 1;
}

/* Whether a shared factor is worth taking out of the terms: anything but
 * a commutation or a permutation (under transposes and scalings), which
 * cost nothing to walk again and which the rules that carry commutations
 * through sums need in each term */
static bool worth_sharing(const lj_op *a)
{
    while (lji_is(a, &lji_kind_transpose) || lji_is(a, &lji_kind_scaled)) a = a->child[0];
    return !lji_is(a, &lji_kind_commutation) && !lji_is(a, &lji_kind_perm);
}

/* c_1·L_1·R + … + c_k·L_k·R = (c_1·L_1 + … + c_k·L_k)·R, where R, the
 * factors at the right end that the terms share, is the same node in each
 * (L_i the identity where a term is R alone). Derivatives share their
 * inner Jacobians this way: the chain rule gives J of Y·Y (Y = A^3 − A)
 * as (Y^T ⊗ I)·J_Y + (I ⊗ Y)·J_Y, and the factored form
 * ((Y^T ⊗ I) + (I ⊗ Y))·J_Y applies, materialises and prints J_Y once.
 * Unfactored, a tree that shares J_Y is walked as often as the paths to
 * it: a few nested powers made a J of 580 nodes that apply walked as 10⁹.
 * Only one node shared counts, never equal numbers, so the structure does
 * not depend on the values (a plan's tape stays valid), and only where R
 * holds a factor worth_sharing. Terms at i and after; the group of term
 * i replaced by its product, the others dropped. false when out of
 * memory. */
static bool factor_right(terms *ts, int i)
{
    lj_context *ctx = ts->ctx;
    const lj_op *const *fi, *const *fj;
    int ni = factors_of((const lj_op *const *)&ts->t[i], &fi), s = ni, k = 1;
    int room[LJI_FLATTEN_MAX];
    int *g = ts->n - i <= LJI_FLATTEN_MAX ? room : lji_malloc(ctx, (size_t)(ts->n - i) * sizeof *g);
    if (!g) return false;
    g[0] = i;
    for (int j = i + 1; j < ts->n; j++) {
        int nj = factors_of((const lj_op *const *)&ts->t[j], &fj), c = 0;
        while (c < s && c < nj && fi[ni - 1 - c] == fj[nj - 1 - c]) c++;
        if (c == 0 || (c == ni && c == nj)) continue;
        s = c;
        g[k++] = j;
    }
    bool ok = true, worth = false;
    for (int q = ni - s; q < ni && k >= 2; q++) worth = worth || worth_sharing(fi[q]);
    if (worth) {
        /* the suffix of s factors is shared by all of the group */
        lj_op *L[LJI_FLATTEN_MAX], **l = k <= LJI_FLATTEN_MAX ? L : lji_calloc(ctx, (size_t)k, sizeof *l);
        double C[LJI_FLATTEN_MAX], *c = k <= LJI_FLATTEN_MAX ? C : lji_malloc(ctx, (size_t)k * sizeof *c);
        const lj_op **f = lji_malloc(ctx, (size_t)(s + 1) * sizeof *f);
        lj_op *sum = NULL, *r = NULL;
        int made = 0;
        if (l && c && f) {
            for (; made < k; made++) {
                int nj = factors_of((const lj_op *const *)&ts->t[g[made]], &fj);
                c[made] = ts->c[g[made]];
                l[made] = nj == s ? lj_op_identity(ctx, fi[ni - s]->rows)
                          : nj - s == 1 ? lj_op_retain(fj[0])
                                        : lj_op_compose(ctx, nj - s, fj);
                if (!l[made]) break;
            }
            if (made == k) sum = lj_op_lincomb(ctx, k, c, (const lj_op *const *)l);
            if (sum) {
                f[0] = sum;
                for (int q = 0; q < s; q++) f[q + 1] = fi[ni - s + q];
                r = lj_op_compose(ctx, s + 1, f);
            }
        }
        for (int q = 0; q < made; q++) lj_op_free(&l[q]);
        lj_op_free(&sum);
        if (l != L) free(l);
        if (c != C) free(c);
        free(f);
        ok = r != NULL;
        if (ok) {
            int w = i + 1, q = 1;
            for (int j = i + 1; j < ts->n; j++) {
                if (q < k && g[q] == j) {
                    lj_op_free(&ts->t[j]);
                    q++;
                    continue;
                }
                ts->t[w] = ts->t[j];
                ts->c[w++] = ts->c[j];
            }
            ts->n = w;
            lj_op_free(&ts->t[i]);
            ts->t[i] = r;
            ts->c[i] = 1.0;
        }
    }
    if (g != room) free(g);
    return ok;
}

/* A shared sum R that was added term by term (terms_add flattens sums)
 * while another term ends in R: its terms, found among ts's at c times
 * R's coefficients, go back into one term c·R, so that factor_right
 * takes R out once (J_Y + L·J_Y is (I + L)·J_Y, not J_Y's terms and L·J_Y
 * beside them). */
static void regroup_sums(terms *ts)
{
    for (int i = 0; i < ts->n; i++) {
        const lj_op *t = ts->t[i];
        if (!lji_is(t, &lji_kind_compose)) continue;
        const lj_op *R = t->child[t->nchild - 1];
        if (!lji_is(R, &lji_kind_sum) || R->nchild > LJI_FLATTEN_MAX) continue;
        int at[LJI_FLATTEN_MAX] = { 0 }, k = 0;
        double c = 0.0;
        for (; k < R->nchild; k++) {
            int j = 0;
            while (j < ts->n && ts->t[j] != R->child[k]) j++;
            if (j == ts->n) break;
            double cj = ts->c[j] / R->coef[k];
            if (k == 0) c = cj;
            else if (fabs(cj - c) > 4 * DBL_EPSILON * fabs(c)) break;
            at[k] = j;
        }
        if (k < R->nchild) continue;
        /* R's terms out, c·R in at the first of them */
        int first = at[0];
        for (int q = 1; q < k; q++) first = at[q] < first ? at[q] : first;
        lj_op_free(&ts->t[first]);
        ts->t[first] = lji_take_ref(ts->ctx, R);
        ts->c[first] = c;
        int w = 0;
        for (int j = 0; j < ts->n; j++) {
            bool gone = false;
            for (int q = 0; q < k && !gone; q++) gone = at[q] == j && j != first;
            if (gone) {
                lj_op_free(&ts->t[j]);
                if (j < i) i--;
                continue;
            }
            ts->t[w] = ts->t[j];
            ts->c[w++] = ts->c[j];
        }
        ts->n = w;
    }
}

lj_op *lj_op_lincomb(lj_context *ctx, int n, const double *coef, const lj_op *const *ops)
{
    const char *op = "lincomb";
    if (lji_check_args(ctx, op, n, ops) != LJ_OK) return NULL;
    if (n == 0) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: no operands", op);
        return NULL;
    }
    for (int i = 1; i < n; i++)
        if (ops[i]->rows != ops[0]->rows || ops[i]->cols != ops[0]->cols) {
            lji_error(ctx, LJ_ERR_SHAPE, "%s: shapes differ: " LJI_SHP " + " LJI_SHP " (term %d)", op,
                      ops[0]->rows, ops[0]->cols, ops[i]->rows, ops[i]->cols, i + 1);
            return NULL;
        }
    for (int i = 0; coef && i < n; i++)
        if (!isfinite(coef[i])) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: coefficient %d is not finite", op, i + 1);
            return NULL;
        }
    int64_t rows = ops[0]->rows, cols = ops[0]->cols;
    terms ts = { .ctx = ctx };
    for (int i = 0; i < n; i++) terms_add(&ts, coef ? coef[i] : 1.0, ops[i]);
    lj_op *J = NULL;
    if (ts.failed) {
        lji_nomem(ctx, op);
        goto done;
    }
    /* drop terms whose coefficients cancelled */
    int m = 0;
    for (int i = 0; i < ts.n; i++) {
        if (ts.c[i] == 0.0) {
            lj_op_free(&ts.t[i]);
            continue;
        }
        ts.t[m] = ts.t[i];
        ts.c[m++] = ts.c[i];
    }
    ts.n = m;
    regroup_sums(&ts);
    for (int i = 0; i < ts.n; i++)
        if (!factor_right(&ts, i)) {
            if (ctx->status == LJ_OK) lji_nomem(ctx, op);
            goto done;
        }
    m = ts.n;
    if (m == 0)
        J = lj_op_zero(ctx, rows, cols);
    else if (m == 1)
        J = lj_op_scale(ctx, ts.c[0], ts.t[0]);
    else {
        J = lji_op_new(ctx, &lji_kind_sum, rows, cols, m, op);
        if (J) {
            J->coef = lji_malloc(ctx, (size_t)m * sizeof(double));
            if (!J->coef) {
                lj_op_free(&J);
                lji_nomem(ctx, op);
                goto done;
            }
            for (int i = 0; i < m; i++) {
                J->child[i] = lj_op_retain(ts.t[i]);
                J->coef[i] = ts.c[i];
            }
            lji_op_seal(J);
        }
    }
done:
    for (int i = 0; i < ts.n; i++) lj_op_free(&ts.t[i]);
    free(ts.t);
    free(ts.c);
    return J;
}

lj_op *lj_op_add(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const lj_op *ab[2] = { a, b };
    return lj_op_lincomb(ctx, 2, NULL, ab);
}

lj_op *lj_op_sub(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const lj_op *ab[2] = { a, b };
    const double c[2] = { 1.0, -1.0 };
    return lj_op_lincomb(ctx, 2, c, ab);
}
