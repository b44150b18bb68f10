/* Materialisation helpers on top of the kinds' to_sparse: dense copies, CSR
 * views, pruning; and the verification utilities built on them. */
#include "config.h"
#include "../op/op.h"
#include <inttypes.h>
#include <math.h>

lj_status lj_op_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    const char *op = "to_dense";
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    int64_t n;
    if (!lji_size_ok(J->rows, J->cols, &n))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "%s: " LJI_SHP " overflows", op, J->rows, J->cols);
    if (n > 0 && !a) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL output for " LJI_SHP, op, J->rows, J->cols);
    if (ld < (J->rows > 1 ? J->rows : 1))
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: leading dimension %" PRId64 " < rows of " LJI_SHP,
                         op, ld, J->rows, J->cols);
    cholmod_sparse *s = lji_to_sparse(ctx, J);
    if (!s) return ctx->status;
    const int64_t *p = s->p, *ii = s->i;
    const double *x = s->x;
    for (int64_t j = 0; j < J->cols; j++) {
        double *c = a + j * ld;
        for (int64_t i = 0; i < J->rows; i++) c[i] = 0.0;
        for (int64_t q = p[j]; q < p[j + 1]; q++) c[ii[q]] += x[q];
    }
    cholmod_l_free_sparse(&s, &ctx->cc);
    return LJ_OK;
}

lj_csr *lj_op_to_csr(lj_context *ctx, const lj_op *J)
{
    const char *op = "to_csr";
    if (lji_check_args(ctx, op, 1, &J) != LJ_OK) return NULL;
    /* CSR of J is CSC of J^T */
    lj_op *T = lj_op_transpose(ctx, J);
    if (!T) return NULL;
    cholmod_sparse *s = lji_to_sparse(ctx, T);
    lj_op_free(&T);
    if (!s) return NULL;
    int64_t nz = ((int64_t *)s->p)[s->ncol];
    lj_csr *c = lji_calloc(ctx, 1, sizeof *c);
    if (c) {
        c->rowptr = lji_malloc(ctx, (size_t)(J->rows + 1) * sizeof(int64_t));
        c->colind = lji_malloc(ctx, (size_t)(nz ? nz : 1) * sizeof(int64_t));
        c->values = lji_malloc(ctx, (size_t)(nz ? nz : 1) * sizeof(double));
    }
    if (!c || !c->rowptr || !c->colind || !c->values) {
        lj_csr_free(&c);
        cholmod_l_free_sparse(&s, &ctx->cc);
        lji_nomem(ctx, op);
        return NULL;
    }
    c->rows = J->rows;
    c->cols = J->cols;
    c->nnz = nz;
    memcpy(c->rowptr, s->p, (size_t)(J->rows + 1) * sizeof(int64_t));
    if (nz) {
        memcpy(c->colind, s->i, (size_t)nz * sizeof(int64_t));
        memcpy(c->values, s->x, (size_t)nz * sizeof(double));
    }
    cholmod_l_free_sparse(&s, &ctx->cc);
    return c;
}

void lj_csr_free(lj_csr **pc)
{
    if (!pc || !*pc) return;
    free((*pc)->rowptr);
    free((*pc)->colind);
    free((*pc)->values);
    free(*pc);
    *pc = NULL;
}

lj_status lj_sparse_prune(lj_context *ctx, cholmod_sparse *s, double tol)
{
    const char *op = "sparse_prune";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!s) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL matrix", op);
    if (s->itype != CHOLMOD_LONG || s->xtype != CHOLMOD_REAL || !s->packed)
        return lji_error(ctx, LJ_ERR_INVALID, "%s: need a packed real matrix with long indices", op);
    if (!(tol >= 0)) return lji_error(ctx, LJ_ERR_INVALID, "%s: tolerance must be >= 0", op);
    int64_t *p = s->p, *ii = s->i, q = 0;
    double *x = s->x;
    for (int64_t j = 0; j < (int64_t)s->ncol; j++) {
        int64_t a = p[j], e = p[j + 1];
        p[j] = q;
        for (int64_t t = a; t < e; t++)
            if (fabs(x[t]) > tol) {
                ii[q] = ii[t];
                x[q++] = x[t];
            }
    }
    p[s->ncol] = q;
    return LJ_OK;
}

/* ---- verification ------------------------------------------------------------ */

static double dotp(const double *a, const double *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double norm2(const double *a, int64_t n)
{
    return sqrt(dotp(a, a, n));
}

lj_status lj_op_dot_test(lj_context *ctx, const lj_op *J, uint64_t seed, double *relgap)
{
    const char *op = "dot_test";
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    int64_t m = J->rows, n = J->cols;
    double *x = lji_malloc(ctx, (size_t)(n + 1) * sizeof *x), *y = lji_malloc(ctx, (size_t)(m + 1) * sizeof *y);
    double *jx = lji_malloc(ctx, (size_t)(m + 1) * sizeof *jx), *jty = lji_malloc(ctx, (size_t)(n + 1) * sizeof *jty);
    if (!x || !y || !jx || !jty) {
        st = lji_nomem(ctx, op);
        goto done;
    }
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) x[i] = lji_rand_unif(&s);
    for (int64_t i = 0; i < m; i++) y[i] = lji_rand_unif(&s);
    if ((st = lj_op_apply(ctx, J, 0, 1.0, x, 0.0, jx)) != LJ_OK) goto done;
    if ((st = lj_op_apply(ctx, J, 1, 1.0, y, 0.0, jty)) != LJ_OK) goto done;
    double a = dotp(jx, y, m), b = dotp(x, jty, n);
    double scale = norm2(jx, m) * norm2(y, m) + norm2(x, n) * norm2(jty, n);
    if (relgap) *relgap = scale > 0 ? fabs(a - b) / scale : fabs(a - b);
done:
    free(x);
    free(y);
    free(jx);
    free(jty);
    return st;
}

lj_status lj_op_check(lj_context *ctx, const lj_op *J, uint64_t seed, double *maxrel)
{
    const char *op = "check";
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    int64_t m = J->rows, n = J->cols, mn;
    if (!lji_size_ok(m, n, &mn) || mn > ((int64_t)1 << 24))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "%s: " LJI_SHP " is too large for a dense check", op, m, n);
    double *D = lji_malloc(ctx, (size_t)(mn + 1) * sizeof *D);
    double *x = lji_malloc(ctx, (size_t)(n + 1) * sizeof *x), *y = lji_malloc(ctx, (size_t)(m + 1) * sizeof *y);
    double *jx = lji_malloc(ctx, (size_t)(m + 1) * sizeof *jx), *jty = lji_malloc(ctx, (size_t)(n + 1) * sizeof *jty);
    double worst = 0;
    if (!D || !x || !y || !jx || !jty) {
        st = lji_nomem(ctx, op);
        goto done;
    }
    if ((st = lj_op_to_dense(ctx, J, D, m > 0 ? m : 1)) != LJ_OK) goto done;
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) x[i] = lji_rand_unif(&s);
    for (int64_t i = 0; i < m; i++) y[i] = lji_rand_unif(&s);
    if ((st = lj_op_apply(ctx, J, 0, 1.0, x, 0.0, jx)) != LJ_OK) goto done;
    if ((st = lj_op_apply(ctx, J, 1, 1.0, y, 0.0, jty)) != LJ_OK) goto done;
    for (int64_t i = 0; i < m; i++) {
        double r = 0, sc = 0;
        for (int64_t j = 0; j < n; j++) {
            r += D[i + j * m] * x[j];
            sc += fabs(D[i + j * m] * x[j]);
        }
        double e = fabs(r - jx[i]) / (sc > 1e-300 ? sc : 1.0);
        if (e > worst) worst = e;
    }
    for (int64_t j = 0; j < n; j++) {
        double r = 0, sc = 0;
        for (int64_t i = 0; i < m; i++) {
            r += D[i + j * m] * y[i];
            sc += fabs(D[i + j * m] * y[i]);
        }
        double e = fabs(r - jty[j]) / (sc > 1e-300 ? sc : 1.0);
        if (e > worst) worst = e;
    }
    double gap;
    if ((st = lj_op_dot_test(ctx, J, seed + 1, &gap)) != LJ_OK) goto done;
    if (gap > worst) worst = gap;
    if (maxrel) *maxrel = worst;
done:
    free(D);
    free(x);
    free(y);
    free(jx);
    free(jty);
    return st;
}
