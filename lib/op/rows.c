/* Row blocks J[r0:r1, :] as operators: each kind gives its rows without the
 * rest (a Kronecker product the Kronecker products of its factors' rows, a
 * product its first factor's rows times the rest, a sum its terms' rows, a
 * Diag or an identity a block [0 D 0]), so that applying a row block costs
 * about its share of the whole, and materialising it (lj_op_to_sparse of
 * lj_op_row_block) writes only those rows. A kind without a rule is a selection
 * [0 I 0] composed with J: exact, lazy, but as costly as J. This is what a
 * rank of a distributed Jacobian owns (petsc/, DESIGN.md's PETSc layer). */
#include "config.h"
#include "op.h"
#include <inttypes.h>
#include <stdio.h>

/* "W(4:7,:)": rows r0..r1-1 of a labelled leaf, 1-based and inclusive as
 * MATLAB writes them (NULL for a NULL label). */
char *lji_rows_label(lj_context *ctx, const char *label, int64_t r0, int64_t r1, bool cols)
{
    if (!label) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    bool wrap = !lji_label_is_atomic(label);
    lji_buf_printf(&b, cols ? "%s%s%s(:,%" PRId64 ":%" PRId64 ")" : "%s%s%s(%" PRId64 ":%" PRId64 ",:)",
                   wrap ? "(" : "", label, wrap ? ")" : "", r0 + 1, r1);
    return lji_buf_finish(&b, "rows");
}

/* [0_{r×r0}, M, 0_{r×(n-r1)}]: M placed at columns r0..r1-1 of an r×n
 * block (M new, consumed). */
lj_op *lji_place_cols(lj_context *ctx, lj_op *M, int64_t r0, int64_t r1, int64_t n)
{
    if (!M) return NULL;
    lj_op *parts[3];
    int np = 0;
    lj_op *z0 = r0 > 0 ? lj_op_zero(ctx, M->rows, r0) : NULL, *z1 = r1 < n ? lj_op_zero(ctx, M->rows, n - r1) : NULL;
    if ((r0 > 0 && !z0) || (r1 < n && !z1)) {
        lj_op_free(&z0);
        lj_op_free(&z1);
        lj_op_free(&M);
        return NULL;
    }
    if (z0) parts[np++] = z0;
    parts[np++] = M;
    if (z1) parts[np++] = z1;
    lj_op *r = lj_op_hstack(ctx, np, (const lj_op *const *)parts);
    for (int i = 0; i < np; i++) lj_op_free(&parts[i]);
    return r;
}

const lj_op *lji_placed_middle(const lj_op *a, int64_t *c0, int64_t *c1)
{
    if (!lji_is(a, &lji_kind_hstack) || a->nchild < 2 || a->nchild > 3) return NULL;
    int i = lji_is_zero(a->child[0]) ? 1 : 0;
    if (i + 1 < a->nchild && !lji_is_zero(a->child[a->nchild - 1])) return NULL;
    if (i == 0 && a->nchild != 2) return NULL;
    if (lji_is_zero(a->child[i])) return NULL;
    *c0 = i ? a->child[0]->cols : 0;
    *c1 = *c0 + a->child[i]->cols;
    return a->child[i];
}

lj_op *lji_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    if (r0 == 0 && r1 == J->rows) return lj_op_retain(J);
    if (r1 == r0) return lj_op_zero(ctx, 0, J->cols);
    if (J->kind->rows) return J->kind->rows(ctx, J, r0, r1);
    /* no rule: the selection [0 I 0] times J */
    lj_op *I = lj_op_identity(ctx, r1 - r0), *S = lji_place_cols(ctx, I, r0, r1, J->rows);
    lj_op *r = S ? lj_op_mul(ctx, S, J) : NULL;
    lj_op_free(&S);
    return r;
}

lj_op *lj_op_row_block(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    if (lji_check_args(ctx, "row_block", 1, &J) != LJ_OK) return NULL;
    if (r0 < 0 || r1 < r0 || r1 > J->rows) {
        lji_error(ctx, LJ_ERR_SHAPE, "row_block: [%" PRId64 ", %" PRId64 ") is not a range of rows of " LJI_SHP, r0, r1,
                  J->rows, J->cols);
        return NULL;
    }
    return lji_rows(ctx, J, r0, r1);
}

/* A CSC block holding rows [r0, r1) of s, shifted to start at 0. */
cholmod_sparse *lji_csc_rows(lj_context *ctx, const cholmod_sparse *s, int64_t r0, int64_t r1)
{
    const int64_t *p = s->p, *ii = s->i;
    const double *x = s->x;
    int64_t n = (int64_t)s->ncol, nz = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++) nz += ii[q] >= r0 && ii[q] < r1;
    cholmod_sparse *t = lji_sparse_alloc(ctx, r1 - r0, n, nz, "rows");
    if (!t) return NULL;
    int64_t *tp = t->p, *ti = t->i, w = 0;
    double *tx = t->x;
    for (int64_t j = 0; j < n; j++) {
        tp[j] = w;
        for (int64_t q = p[j]; q < p[j + 1]; q++)
            if (ii[q] >= r0 && ii[q] < r1) {
                ti[w] = ii[q] - r0;
                tx[w++] = x[q];
            }
    }
    tp[n] = w;
    return t;
}

/* A sparse r×n operator with one entry a row: row t has value v[t] (or 1)
 * at column col[t]; the columns need not be distinct (a selection). */
lj_op *lji_rows_one_per_row(lj_context *ctx, int64_t r, int64_t n, const int64_t *col, const double *v,
                            const char *label)
{
    cholmod_sparse *s = lji_sparse_alloc(ctx, r, n, r, "rows");
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i;
    double *sx = s->x;
    /* counting sort of the rows by column: each column's rows ascending */
    for (int64_t j = 0; j <= n; j++) sp[j] = 0;
    for (int64_t t = 0; t < r; t++) sp[col[t] + 1]++;
    for (int64_t j = 0; j < n; j++) sp[j + 1] += sp[j];
    for (int64_t t = 0; t < r; t++) { /* sp[j] runs ahead as column j fills */
        int64_t q = sp[col[t]]++;
        si[q] = t;
        sx[q] = v ? v[t] : 1.0;
    }
    for (int64_t j = n; j > 0; j--) sp[j] = sp[j - 1];
    sp[0] = 0;
    lj_op *o = lj_op_sparse(ctx, s, label);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return o;
}
