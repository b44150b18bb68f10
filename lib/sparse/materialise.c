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
    bool mine;
    if ((st = lji_memo_open(ctx, J, op, &mine)) != LJ_OK) return st;
    lji_mark mk = lji_work_mark(ctx);
    lj_status s = lji_to_dense(ctx, J, a, ld);
    lji_work_pop(ctx, mk);
    lji_memo_close(ctx, mine);
    return s;
}

void lji_zero_block(int64_t r, int64_t c, double *a, int64_t ld)
{
    for (int64_t j = 0; j < c; j++) memset(a + j * ld, 0, (size_t)r * sizeof(double));
}

/* J's CSC scattered into a: the exact materialisation, for kinds with no
 * dense writer of their own, and for lj_op_check (which compares the
 * applies with it). */
static lj_status dense_from_csc(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
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

lj_status lji_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    if (J->rows == 0 || J->cols == 0) return LJ_OK;
    return J->kind->to_dense ? J->kind->to_dense(ctx, J, a, ld) : dense_from_csc(ctx, J, a, ld);
}

lj_csr *lj_op_to_csr(lj_context *ctx, const lj_op *J)
{
    const char *op = "to_csr";
    if (lji_check_args(ctx, op, 1, &J) != LJ_OK) return NULL;
    /* CSR of J is CSC of J^T */
    lj_op *T = lj_op_transpose(ctx, J);
    if (!T) return NULL;
    bool mine;
    cholmod_sparse *s = lji_memo_open(ctx, T, op, &mine) == LJ_OK ? lji_to_sparse(ctx, T) : NULL;
    lji_memo_close(ctx, mine);
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
    /* the applies against the exact sparse materialisation, not against
     * another dense writer */
    if ((st = dense_from_csc(ctx, J, D, m > 0 ? m : 1)) != LJ_OK) goto done;
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

/* ---- normal equations ---------------------------------------------------------- */

lj_op *lj_op_normal(lj_context *ctx, const lj_op *J)
{
    if (lji_check_args(ctx, "normal", 1, &J) != LJ_OK) return NULL;
    lj_op *t = lj_op_transpose(ctx, J);
    lj_op *r = t ? lj_op_mul(ctx, t, J) : NULL;
    lj_op_free(&t);
    return r;
}

/* Squared column norms of A into d, from the structure where it allows. */
static lj_status colnorms2(lj_context *ctx, const lj_op *A, double *d)
{
    const lji_kind *k = A->kind;
    int64_t n = A->cols;
    if (k == &lji_kind_identity || k == &lji_kind_perm || k == &lji_kind_commutation) {
        for (int64_t j = 0; j < n; j++) d[j] = 1.0;
        return LJ_OK;
    }
    if (k == &lji_kind_zero) {
        for (int64_t j = 0; j < n; j++) d[j] = 0.0;
        return LJ_OK;
    }
    if (k == &lji_kind_diag) {
        for (int64_t j = 0; j < n; j++) d[j] = A->data[j] * A->data[j];
        return LJ_OK;
    }
    if (k == &lji_kind_dense) {
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            const double *c = A->data + j * A->ld;
            for (int64_t i = 0; i < A->rows; i++) s += c[i] * c[i];
            d[j] = s;
        }
        return LJ_OK;
    }
    if (k == &lji_kind_scaled) {
        lj_status st = colnorms2(ctx, A->child[0], d);
        for (int64_t j = 0; st == LJ_OK && j < n; j++) d[j] *= A->alpha * A->alpha;
        return st;
    }
    if (k == &lji_kind_kron) {
        /* ‖(A⊗B)(e_ja ⊗ e_jb)‖² = ‖A e_ja‖² ‖B e_jb‖² */
        const lj_op *a = A->child[0], *b = A->child[1];
        double *da = lji_malloc(ctx, (size_t)(a->cols + 1) * sizeof *da);
        double *db = lji_malloc(ctx, (size_t)(b->cols + 1) * sizeof *db);
        lj_status st = (!da || !db) ? lji_nomem(ctx, "normal_diag") : colnorms2(ctx, a, da);
        if (st == LJ_OK) st = colnorms2(ctx, b, db);
        for (int64_t ja = 0; st == LJ_OK && ja < a->cols; ja++)
            for (int64_t jb = 0; jb < b->cols; jb++) d[ja * b->cols + jb] = da[ja] * db[jb];
        free(da);
        free(db);
        return st;
    }
    if (k == &lji_kind_sampled) {
        lji_sampled_colnorms2(A, d);
        return LJ_OK;
    }
    if (k == &lji_kind_hstack) {
        int64_t off = 0;
        for (int i = 0; i < A->nchild; i++) {
            lj_status st = colnorms2(ctx, A->child[i], d + off);
            if (st != LJ_OK) return st;
            off += A->child[i]->cols;
        }
        return LJ_OK;
    }
    if (k == &lji_kind_vstack) {
        double *t = lji_malloc(ctx, (size_t)(n + 1) * sizeof *t);
        if (!t) return lji_nomem(ctx, "normal_diag");
        for (int64_t j = 0; j < n; j++) d[j] = 0.0;
        for (int i = 0; i < A->nchild; i++) {
            lj_status st = colnorms2(ctx, A->child[i], t);
            if (st != LJ_OK) {
                free(t);
                return st;
            }
            for (int64_t j = 0; j < n; j++) d[j] += t[j];
        }
        free(t);
        return LJ_OK;
    }
    if (k == &lji_kind_compose && A->nchild >= 2 &&
        (lji_is(A->child[A->nchild - 1], &lji_kind_perm) || lji_is(A->child[A->nchild - 1], &lji_kind_commutation))) {
        /* a trailing permutation Q moves columns: diag(Q^T B^T B Q) = Q^T diag(B^T B) */
        const lj_op *last = A->child[A->nchild - 1];
        lj_op *rest = lj_op_compose(ctx, A->nchild - 1, (const lj_op *const *)A->child);
        double *t = rest ? lji_malloc(ctx, (size_t)(n + 1) * sizeof *t) : NULL;
        lj_status st = !rest ? ctx->status : !t ? lji_nomem(ctx, "normal_diag") : colnorms2(ctx, rest, t);
        if (st == LJ_OK) st = lji_apply(ctx, last, true, 1, 1.0, t, n, 0.0, d, n);
        free(t);
        lj_op_free(&rest);
        return st;
    }
    if (k == &lji_kind_compose && A->nchild >= 2) {
        /* a trailing Diag scales columns; leading monomial factors of unit
         * entries (identity, permutation, commutation) keep them */
        const lj_op *last = A->child[A->nchild - 1], *first = A->child[0];
        bool first_unit = lji_is(first, &lji_kind_perm) || lji_is(first, &lji_kind_commutation);
        if (lji_is(last, &lji_kind_diag) || first_unit) {
            int lo = first_unit ? 1 : 0, hi = lji_is(last, &lji_kind_diag) ? A->nchild - 1 : A->nchild;
            lj_op *rest = lo < hi ? lj_op_compose(ctx, hi - lo, (const lj_op *const *)A->child + lo) : NULL;
            if (!rest) return ctx->status;
            lj_status st = colnorms2(ctx, rest, d);
            lj_op_free(&rest);
            if (st == LJ_OK && lji_is(last, &lji_kind_diag))
                for (int64_t j = 0; j < n; j++) d[j] *= last->data[j] * last->data[j];
            return st;
        }
    }
    /* the rest: from the exact materialisation of this part */
    cholmod_sparse *s = lji_to_sparse(ctx, A);
    if (!s) return ctx->status;
    const int64_t *p = s->p;
    const double *x = s->x;
    for (int64_t j = 0; j < n; j++) {
        double t = 0;
        for (int64_t q = p[j]; q < p[j + 1]; q++) t += x[q] * x[q];
        d[j] = t;
    }
    cholmod_l_free_sparse(&s, &ctx->cc);
    return LJ_OK;
}

lj_status lj_op_normal_diag(lj_context *ctx, const lj_op *J, double *d)
{
    lj_status st = lji_check_args(ctx, "normal_diag", 1, &J);
    if (st != LJ_OK) return st;
    if (!d && J->cols > 0) return lji_error(ctx, LJ_ERR_INVALID, "normal_diag: NULL output");
    return colnorms2(ctx, J, d);
}
