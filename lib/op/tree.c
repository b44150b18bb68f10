/* The operator tree as text (check-and-print) and as Graphviz DOT, and the
 * matrix form of a gradient J^T·1. */
#include "config.h"
#include "op.h"
#include <inttypes.h>
#include <math.h>

/* Validates one node's invariants; a message names the first bad node. */
static bool node_valid(lj_context *ctx, const lj_op *a, const char *path)
{
    if (!lji_op_ok(a)) {
        lji_error(ctx, LJ_ERR_INVALID, "tree: node %s is not a live operator", path);
        return false;
    }
    const lji_kind *k = a->kind;
    bool ok = a->rows >= 0 && a->cols >= 0 && atomic_load(&a->refs) > 0;
    if (k == &lji_kind_kron)
        ok = ok && a->nchild == 2 && a->rows == a->child[0]->rows * a->child[1]->rows &&
             a->cols == a->child[0]->cols * a->child[1]->cols;
    else if (k == &lji_kind_compose) {
        ok = ok && a->nchild >= 2 && a->rows == a->child[0]->rows &&
             a->cols == a->child[a->nchild - 1]->cols;
        for (int i = 0; ok && i + 1 < a->nchild; i++)
            ok = a->child[i]->cols == a->child[i + 1]->rows;
    } else if (k == &lji_kind_sum) {
        ok = ok && a->nchild >= 2 && a->coef;
        for (int i = 0; ok && i < a->nchild; i++)
            ok = a->child[i]->rows == a->rows && a->child[i]->cols == a->cols;
    } else if (k == &lji_kind_transpose)
        ok = ok && a->nchild == 1 && a->rows == a->child[0]->cols && a->cols == a->child[0]->rows;
    else if (k == &lji_kind_scaled)
        ok = ok && a->nchild == 1 && a->rows == a->child[0]->rows && a->cols == a->child[0]->cols;
    else if (k == &lji_kind_commutation)
        ok = ok && a->rows == a->m * a->n && a->cols == a->rows;
    else if (k == &lji_kind_identity || k == &lji_kind_diag || k == &lji_kind_perm)
        ok = ok && a->rows == a->cols;
    if (!ok) lji_error(ctx, LJ_ERR_INVALID, "tree: node %s (%s " LJI_SHP ") breaks its invariants",
                       path, k->name, a->rows, a->cols);
    return ok;
}

/* One line per node, its children below it, indented. A sum's term with a
 * coefficient other than 1 says so before its own form ("term ×(−3): I_3"),
 * so that the lines add up to the sum's value. */
static bool tree_walk(lj_context *ctx, lji_buf *b, const lj_op *a, int depth, const char *path,
                      const double *coef)
{
    if (b->truncated) return true; /* the length cap was reached */
    if (!node_valid(ctx, a, path)) return false;
    bool exact;
    int64_t nz = lji_nnz(a, &exact);
    double f, by;
    lji_cost(a, &f, &by);
    for (int i = 0; i < depth; i++) lji_buf_puts(b, "  ");
    lji_buf_printf(b, "%s %" PRId64 "×%" PRId64 "  nnz %s%" PRId64 "  cost %.3g flops, %.3g bytes  ",
                   a->kind->name, a->rows, a->cols, exact ? "" : "≤", nz, f, by);
    if (coef && *coef != 1.0) {
        lji_buf_puts(b, "term ×(");
        lji_put_number(b, *coef, LJ_PRINT_UNICODE);
        lji_buf_puts(b, "): ");
    }
    if (lji_is(a, &lji_kind_sum)) {
        lji_buf_puts(b, "Σ");
    } else if (lji_is(a, &lji_kind_scaled)) {
        if (a->label) lji_put_coef_label(b, a->label, LJ_PRINT_UNICODE);
        else lji_put_number(b, a->alpha, LJ_PRINT_UNICODE);
        lji_buf_puts(b, "·");
    } else
        lji_print(b, a, LJ_PRINT_UNICODE, LJI_AT_TOP);
    lji_buf_puts(b, "\n");
    for (int i = 0; i < a->nchild; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%d", path, i + 1);
        if (!tree_walk(ctx, b, a->child[i], depth + 1, sub, a->coef ? &a->coef[i] : NULL)) return false;
    }
    return true;
}

char *lj_op_tree(lj_context *ctx, const lj_op *a)
{
    if (lji_check_args(ctx, "tree", 1, &a) != LJ_OK) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    b.limit = LJ_PRINT_MAX;
    bool ok = tree_walk(ctx, &b, a, 0, "1", NULL);
    if (!ok) {
        lji_buf_discard(&b);
        return NULL;
    }
    return lji_buf_finish_capped(&b, "tree", LJ_PRINT_UNICODE);
}

static void dot_escape(lji_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') lji_buf_puts(b, "\\");
        char c[2] = { *s, 0 };
        lji_buf_puts(b, c);
    }
}

static int dot_walk(lji_buf *b, const lj_op *a, int *next)
{
    int id = (*next)++;
    lji_buf_printf(b, "  n%d [label=\"%s %" PRId64 "×%" PRId64 "\\n", id, a->kind->name, a->rows,
                   a->cols);
    lji_buf inner;
    lji_buf_init(&inner, b->ctx);
    if (a->nchild == 0)
        lji_print(&inner, a, LJ_PRINT_UNICODE, LJI_AT_TOP);
    else if (lji_is(a, &lji_kind_scaled) && a->label)
        lji_put_coef_label(&inner, a->label, LJ_PRINT_UNICODE);
    else if (lji_is(a, &lji_kind_scaled))
        lji_put_number(&inner, a->alpha, LJ_PRINT_UNICODE);
    else if (lji_is(a, &lji_kind_kron))
        lji_buf_puts(&inner, "⊗");
    else if (lji_is(a, &lji_kind_compose))
        lji_buf_puts(&inner, "·");
    else if (lji_is(a, &lji_kind_sum))
        lji_buf_puts(&inner, "+");
    else if (lji_is(a, &lji_kind_transpose))
        lji_buf_puts(&inner, "^T");
    else
        lji_buf_puts(&inner, a->kind->name);
    if (inner.failed) b->failed = true;
    if (inner.s) dot_escape(b, inner.s);
    lji_buf_discard(&inner);
    lji_buf_puts(b, "\"];\n");
    for (int i = 0; i < a->nchild; i++) {
        int c = dot_walk(b, a->child[i], next);
        if (a->coef && a->coef[i] != 1.0)
            lji_buf_printf(b, "  n%d -> n%d [label=\"%.6g\"];\n", id, c, a->coef[i]);
        else
            lji_buf_printf(b, "  n%d -> n%d;\n", id, c);
    }
    return id;
}

char *lj_op_dot(lj_context *ctx, const lj_op *a)
{
    if (lji_check_args(ctx, "dot", 1, &a) != LJ_OK) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    lji_buf_puts(&b, "digraph lazyjac {\n  node [shape=box, fontname=\"monospace\"];\n");
    int next = 0;
    dot_walk(&b, a, &next);
    lji_buf_puts(&b, "}\n");
    return lji_buf_finish(&b, "dot");
}

/* ---- gradients as matrices ----------------------------------------------------
 * G is an (mn)×1 operator (J^T of a scalar's Jacobian); its value is vec of
 * an m×n matrix, written here in matrix notation where the structure allows:
 *   u ⊗ v        (u n×1, v m×1)   → v u^T
 *   Diag(vec W)·g                 → (g) ∘ W
 *   (A ⊗ B)·g                     → B (g) A^T
 *   α·g, Σ                        → α·(g), sums
 *   a dense or sparse vector labelled vec X → X
 * and reshape(…) otherwise. */
static void grad_render(lji_buf *b, lj_context *ctx, const lj_op *g, int64_t m, int64_t n,
                        lj_print_format fmt, bool inner);

static void grad_fallback(lji_buf *b, const lj_op *g, int64_t m, int64_t n, lj_print_format fmt)
{
    if (n == 1) { /* a column is its own vec */
        lji_print(b, g, fmt, LJI_AT_COMPOSE);
        return;
    }
    lji_buf_puts(b, "reshape(");
    lji_print(b, g, fmt, LJI_AT_TOP);
    lji_buf_printf(b, ", %" PRId64 ", %" PRId64 ")", m, n);
}

/* a dense column of ones: vec of the all-ones matrix */
static bool is_ones(const lj_op *g)
{
    if (!lji_is(g, &lji_kind_dense) || g->cols != 1) return false;
    for (int64_t i = 0; i < g->rows; i++)
        if (g->data[i] != 1.0) return false;
    return g->rows > 0;
}

/* "I_k" exactly: an identity that a product can drop */
static bool is_identity_text(const char *s, size_t len)
{
    if (len < 3 || s[0] != 'I' || s[1] != '_') return false;
    for (size_t i = 2; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static void print_transposed(lji_buf *b, lj_context *ctx, const lj_op *a, lj_print_format fmt)
{
    lj_op *t = lj_op_transpose(ctx, a);
    if (!t) {
        b->failed = true;
        return;
    }
    lji_print(b, t, fmt, LJI_AT_COMPOSE);
    lj_op_free(&t);
}

static void grad_render(lji_buf *b, lj_context *ctx, const lj_op *g, int64_t m, int64_t n,
                        lj_print_format fmt, bool inner)
{
    const char *hada = fmt == LJ_PRINT_UNICODE ? " ∘ " : fmt == LJ_PRINT_LATEX ? " \\circ " : " .* ";
    if (lji_is(g, &lji_kind_kron) && g->child[0]->rows == n && g->child[0]->cols == 1 &&
        g->child[1]->rows == m && g->child[1]->cols == 1) {
        lji_put_open(b, inner);
        lji_print(b, g->child[1], fmt, LJI_AT_COMPOSE);
        lji_buf_puts(b, fmt == LJ_PRINT_PLAIN ? "*" : " ");
        print_transposed(b, ctx, g->child[0], fmt);
        lji_put_close(b, inner);
        return;
    }
    if (lji_is(g, &lji_kind_scaled)) {
        if (g->label) lji_put_coef_label(b, g->label, fmt);
        else lji_put_number(b, g->alpha, fmt);
        lji_buf_puts(b, lji_sym_dot(fmt));
        grad_render(b, ctx, g->child[0], m, n, fmt, true);
        return;
    }
    if (is_ones(g)) { /* vec of the m×n matrix of ones */
        if (n == 1)
            lji_buf_printf(b, fmt == LJ_PRINT_LATEX ? "1_{%" PRId64 "}" : "1_%" PRId64, m);
        else {
            lji_put_open(b, inner);
            lji_buf_printf(b, fmt == LJ_PRINT_LATEX ? "1_{%" PRId64 "}" : "1_%" PRId64, m);
            lji_buf_puts(b, fmt == LJ_PRINT_PLAIN ? "*" : " ");
            lji_buf_printf(b, fmt == LJ_PRINT_LATEX ? "1_{%" PRId64 "}" : "1_%" PRId64, n);
            lji_buf_puts(b, lji_sym_transpose(fmt));
            lji_put_close(b, inner);
        }
        return;
    }
    if ((lji_is(g, &lji_kind_dense) || lji_is(g, &lji_kind_sparse)) && g->label &&
        strncmp(g->label, "vec ", 4) == 0) {
        lji_put_label(b, g->label + 4, fmt);
        return;
    }
    if (lji_is(g, &lji_kind_compose)) {
        const lj_op *f = g->child[0];
        /* the rest of the product, as an operator of its own */
        lj_op *rest = lj_op_compose(ctx, g->nchild - 1, (const lj_op *const *)g->child + 1);
        if (!rest) {
            b->failed = true;
            return;
        }
        if (lji_is(f, &lji_kind_diag) && f->label && strncmp(f->label, "vec ", 4) == 0 && is_ones(rest)) {
            lji_put_label(b, f->label + 4, fmt); /* ones ∘ W = W */
        } else if (lji_is(f, &lji_kind_diag) && f->label && strncmp(f->label, "P_", 2) == 0 && is_ones(rest)) {
            lji_put_label(b, f->label, fmt); /* Diag(P_S vec X)·1 = P_S vec X, on a sparse pattern */
        } else if (lji_is(f, &lji_kind_diag) && f->label && strncmp(f->label, "vec ", 4) == 0) {
            lji_put_open(b, inner);
            grad_render(b, ctx, rest, m, n, fmt, true);
            lji_buf_puts(b, hada);
            lji_put_label(b, f->label + 4, fmt);
            lji_put_close(b, inner);
        } else if (lji_is(f, &lji_kind_kron) && rest->cols == 1 &&
                   f->child[1]->cols * f->child[0]->cols == rest->rows) {
            /* (A ⊗ B) vec R = vec(B R A^T), R of shape B.cols × A.cols */
            const lj_op *A = f->child[0], *B = f->child[1];
            const char *sep = fmt == LJ_PRINT_PLAIN ? "*" : " ";
            /* the middle factor first, so that an identity there is dropped */
            lji_buf mid;
            lji_buf_init(&mid, ctx);
            grad_render(&mid, ctx, rest, B->cols, A->cols, fmt, true);
            if (mid.failed) b->failed = true;
            bool drop = mid.s && is_identity_text(mid.s, mid.len);
            int parts = !lji_is_identity(B) + !drop + !lji_is_identity(A);
            lji_put_open(b, inner && parts > 1);
            bool any = false;
            if (!lji_is_identity(B)) {
                lji_print(b, B, fmt, LJI_AT_COMPOSE);
                any = true;
            }
            if (!drop && mid.s) {
                if (any) lji_buf_puts(b, sep);
                lji_buf_puts(b, mid.s);
                any = true;
            }
            if (!lji_is_identity(A)) {
                if (any) lji_buf_puts(b, sep);
                print_transposed(b, ctx, A, fmt);
            }
            lji_put_close(b, inner && parts > 1);
            lji_buf_discard(&mid);
        } else
            grad_fallback(b, g, m, n, fmt);
        lj_op_free(&rest);
        return;
    }
    if (lji_is(g, &lji_kind_sum)) {
        lji_put_open(b, inner);
        for (int i = 0; i < g->nchild; i++) {
            double c = g->coef[i];
            if (i) lji_buf_puts(b, c < 0 ? " - " : " + ");
            else if (c < 0)
                lji_buf_puts(b, lji_sym_minus(fmt));
            if (fabs(c) != 1.0) {
                lji_put_number(b, fabs(c), fmt);
                lji_buf_puts(b, lji_sym_dot(fmt));
            }
            const lj_op *t = g->child[i];
            bool value = (lji_is(t, &lji_kind_transpose) && lji_is(t->child[0], &lji_kind_dense)) ||
                         (lji_is(t, &lji_kind_dense) && t->label && strncmp(t->label, "vec", 3));
            if (n == 1 && fabs(c) == 1.0 && value)
                lji_print(b, t, fmt, LJI_AT_SUM); /* a value's row transposed, a term: A·x + A^T·x */
            else
                grad_render(b, ctx, t, m, n, fmt, true);
        }
        lji_put_close(b, inner);
        return;
    }
    grad_fallback(b, g, m, n, fmt);
}

char *lj_op_print_gradient(lj_context *ctx, const lj_op *J, int64_t m, int64_t n,
                           lj_print_format fmt)
{
    const char *op = "print_gradient";
    if (lji_check_args(ctx, op, 1, &J) != LJ_OK) return NULL;
    int64_t mn;
    if (J->rows != 1 || !lji_mul_ok(m, n, &mn) || m < 0 || n < 0 || mn != J->cols) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: a gradient needs J of shape (1×%" PRId64 "), not " LJI_SHP,
                  op, m * n, J->rows, J->cols);
        return NULL;
    }
    lj_op *g = lj_op_transpose(ctx, J);
    if (!g) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    grad_render(&b, ctx, g, m, n, fmt, false);
    lj_op_free(&g);
    return lji_buf_finish(&b, op);
}
