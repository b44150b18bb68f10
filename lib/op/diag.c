/* Diag(d): the diagonal matrix of a vector. */
#include "config.h"
#include "op.h"
#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <stdio.h>

static lj_status diag_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    const double *d = J->data;
    for (int64_t j = 0; j < k; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        if (beta == 0.0)
            for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * d[i] * x[i];
        else
            for (int64_t i = 0; i < J->rows; i++) y[i] = alpha * d[i] * x[i] + beta * y[i];
    }
    return LJ_OK;
}

static cholmod_sparse *diag_to_sparse(lj_context *ctx, const lj_op *J)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, J->rows, J->cols, J->rows, "to_sparse");
    if (!s) return NULL;
    int64_t *p = s->p, *i = s->i;
    double *x = s->x;
    for (int64_t j = 0; j < J->cols; j++) {
        p[j] = j;
        i[j] = j;
        x[j] = J->data[j];
    }
    p[J->cols] = J->cols;
    return s;
}

static int64_t diag_nnz(const lj_op *J, bool *exact)
{
    *exact = true;
    return J->rows;
}

static void diag_cost(const lj_op *J, double *flops, double *bytes)
{
    *flops = 2.0 * (double)J->rows;
    *bytes = 24.0 * (double)J->rows;
}

bool lji_diag_is_number(const lj_op *D, double *k)
{
    if (!lji_is(D, &lji_kind_diag) || !D->label) return false;
    const char *l = D->label, *minus = "−";
    bool neg = !strncmp(l, minus, strlen(minus));
    if (neg) l += strlen(minus);
    size_t n = strlen(l), w = lji_label_number_at(l, n, k); /* 2, (1/3), as numbers print */
    if (!w || w != n) return false;
    if (neg) *k = -*k;
    return *k != 0;
}

static void diag_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    double k;
    if (lji_diag_is_number(J, &k)) {
        /* a label that is a number (its factors cancelled: J of
         * log(exp(x).^2)): that number times I, 2·I_3, not Diag(2) */
        bool paren = k != 1 && (where == LJI_AT_KRON || where == LJI_AT_TIGHT);
        lji_put_open(b, paren);
        lji_put_signed_coef(b, k, true, fmt);
        lji_buf_printf(b, fmt == LJ_PRINT_LATEX ? "I_{%" PRId64 "}" : "I_%" PRId64, J->rows);
        lji_put_close(b, paren);
        return;
    }
    lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? "\\operatorname{Diag}(" : "Diag(");
    const char *l = J->label ? J->label : "d";
    if (lji_label_is_wrapped(l)) /* Diag(B·x), not Diag((B·x)) */
        lji_put_label_n(b, l + 1, strlen(l) - 2, fmt);
    else
        lji_put_label(b, l, fmt);
    lji_buf_puts(b, ")");
}

/* "Diag(l)" for the first n bytes of l, without l's own brackets */
static void put_diag_of(lji_buf *b, const char *l, size_t n, lj_print_format fmt)
{
    lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? "\\operatorname{Diag}(" : "Diag(");
    bool wrapped = lji_label_is_wrapped_n(l, n); /* Diag(a + b), not Diag((a + b)) */
    lji_put_label_n(b, l + wrapped, n - 2 * wrapped, fmt);
    lji_buf_puts(b, ")");
}

bool lji_diag_print_negated(lji_buf *b, const lj_op *D, lj_print_format fmt)
{
    const char *l = D->label;
    if (!l || !lji_is(D, &lji_kind_diag)) return false;
    size_t n = strlen(l), skip = lji_label_minus_product(l), m = lji_label_negated_term(l);
    if (!skip && !m && !strncmp(l, "vec(", 4) && lji_label_is_wrapped(l + 3)) { /* "vec(−M)": Diag(vec(M)) */
        size_t mv = lji_label_minus_len(l + 4);
        if (!mv || lji_label_minus_len(l + 4 + mv) || lji_label_is_sum_n(l + 4, n - 5)) return false;
        lji_buf v;
        lji_buf_init(&v, b->ctx);
        lji_buf_puts(&v, "vec(");
        lji_buf_putn(&v, l + 4 + mv, n - 5 - mv);
        lji_buf_puts(&v, ")");
        if (v.failed) {
            b->failed = true;
            lji_buf_discard(&v);
            return true;
        }
        put_diag_of(b, v.s, v.len, fmt);
        lji_buf_discard(&v);
        return true;
    }
    if (skip) /* "(−x·y)" */
        l += skip, n -= skip + 1;
    else if (m) /* "−2·x" */
        l += m, n -= m;
    else
        return false;
    char num[32], *end;
    if (n < sizeof num && isdigit((unsigned char)l[0])) { /* −Diag(−2) is 2·I */
        memcpy(num, l, n);
        num[n] = '\0';
        double k = strtod(num, &end);
        if (!*end && k > 0) {
            lji_put_signed_coef(b, k, true, fmt);
            lji_buf_printf(b, fmt == LJ_PRINT_LATEX ? "I_{%" PRId64 "}" : "I_%" PRId64, D->rows);
            return true;
        }
    }
    put_diag_of(b, l, n, fmt);
    return true;
}

bool lji_diag_print_times(lji_buf *b, const lj_op *D, lj_print_format fmt, double *k)
{
    const char *l = D->label, *dot = "·";
    if (!l || !lji_is(D, &lji_kind_diag)) return false;
    size_t n = strlen(l);
    if (lji_label_is_wrapped(l)) /* "(3·x)" as "3·x" */
        l++, n -= 2;
    size_t m = lji_label_minus_len(l); /* "−2·x" too */
    if (m && lji_label_minus_len(l + m)) m = 0;
    double f = 0;
    size_t nw = lji_label_number_at(l + m, n - m, &f), w = m + nw; /* "3·x", "(1/3)·x" */
    /* "3·x.^2", not "2.5·x", "2·x + y" */
    bool whole = l[m] == '(' || (strspn(l + m, "0123456789") == nw && nw <= 7);
    if (!nw || !whole || w + strlen(dot) >= n || strncmp(l + w, dot, strlen(dot)) || lji_label_is_sum_n(l + m, n - m))
        return false;
    *k = m ? -f : f;
    put_diag_of(b, l + w + strlen(dot), n - w - strlen(dot), fmt);
    return true;
}

static bool diag_equal(const lj_op *a, const lj_op *b)
{
    return memcmp(a->data, b->data, (size_t)a->rows * sizeof(double)) == 0;
}

static lj_status diag_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    lji_zero_block(J->rows, J->cols, a, ld);
    for (int64_t i = 0; i < J->rows; i++) a[i + i * ld] = J->data[i];
    return LJ_OK;
}

static lj_op *diag_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    char *l = lji_rows_label(ctx, J->label, r0, r1, false);
    if (J->label && !l) return NULL;
    lj_op *D = lj_op_diag(ctx, r1 - r0, J->data + r0, l); /* [0 Diag(d(r0:r1)) 0] */
    free(l);
    return lji_place_cols(ctx, D, r0, r1, J->cols);
}

const lji_kind lji_kind_diag = {
    .id = LJ_OP_DIAG,
    .name = "diag",
    .apply = diag_apply,
    .to_sparse = diag_to_sparse,
    .rows = diag_rows,
    .to_dense = diag_to_dense,
    .nnz = diag_nnz,
    .cost = diag_cost,
    .print = diag_print,
    .equal = diag_equal,
};

static lj_op *diag_make(lj_context *ctx, int64_t n, const double *d, const char *label, lji_vblock *keep)
{
    if (!lji_ctx_ok(ctx)) return NULL;
    if (n < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "diag: negative size %" PRId64, n);
        return NULL;
    }
    int64_t nb;
    if (!lji_size_ok(n, 1, &nb)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "diag: size %" PRId64 " overflows", n);
        return NULL;
    }
    if (n > 0 && !d) {
        lji_error(ctx, LJ_ERR_INVALID, "diag: NULL values for Diag of length %" PRId64, n);
        return NULL;
    }
    bool ones = true;
    for (int64_t i = 0; i < n && ones; i++) ones = d[i] == 1.0;
    if (ones) return lj_op_identity(ctx, n); /* Diag(1,…,1) = I */
    /* one allocation: the node, its numbers (unless read in place) and its label */
    size_t db = keep ? 0 : (size_t)n * sizeof(double), lb = label ? strlen(label) + 1 : 0;
    lj_op *a = lji_op_new_ext(ctx, &lji_kind_diag, n, n, 0, db + lb + 8, "diag");
    if (!a) return NULL;
    char *at = a->extra;
    if (keep) {
        a->data = (double *)d;
        a->borrowed = true;
        a->keep = lji_vblock_retain(keep);
    } else {
        a->data = (double *)(void *)at; /* never NULL, even when empty */
        at += db;
        if (n) memcpy(a->data, d, db);
    }
    a->label = lji_op_put_label(a, &at, label);
    lji_op_seal(a);
    return a;
}

lj_op *lj_op_diag(lj_context *ctx, int64_t n, const double *d, const char *label)
{
    return diag_make(ctx, n, d, label, NULL);
}

lj_op *lji_op_diag_shared(lj_context *ctx, int64_t n, const double *d, const char *label, lji_vblock *keep)
{
    return diag_make(ctx, n, d, label, keep);
}
