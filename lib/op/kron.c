/* Kronecker products A ⊗ B of any two operators.
 * (A ⊗ B) vec(X) = vec(B X A^T): applied with multi-vector applies of the
 * factors (BLAS-3 for dense ones), in the cheaper association; the product
 * is never formed. */
#include "config.h"
#include "op.h"
#include <inttypes.h>

/* Kronecker products with fewer entries than this are materialised on one
 * thread. */
#define LJI_KRON_MT_MIN ((int64_t)1 << 18)

/* Flops of applying op(A) (one vector) */
static double flops_of(const lj_op *a)
{
    double f, b;
    lji_cost(a, &f, &b);
    return f;
}

/* true: apply B first (T = op(B) X, then Y = T op(A)^T) */
static bool kron_b_first(const lj_op *J, bool trans)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    double ar = (double)(trans ? A->cols : A->rows), ac = (double)(trans ? A->rows : A->cols);
    double br = (double)(trans ? B->cols : B->rows), bc = (double)(trans ? B->rows : B->cols);
    double fa = flops_of(A), fb = flops_of(B);
    /* cost1 = ac·f_B + br·f_A;  cost2 = bc·f_A + ar·f_B  (DESIGN: compare both) */
    return ac * fb + br * fa <= bc * fa + ar * fb;
}

static lj_status kron_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    int64_t ar = trans ? A->cols : A->rows, ac = trans ? A->rows : A->cols;
    int64_t br = trans ? B->cols : B->rows, bc = trans ? B->rows : B->cols;
    lj_status st = LJ_OK;
    if (lji_is_identity(A)) {
        /* (I ⊗ B) vec X = vec(B X): one multi-apply, all k vectors at once
         * when they are contiguous */
        if (ldx == ac * bc && ldy == ar * br)
            return lji_apply(ctx, B, trans, k * ac, alpha, X, bc, beta, Y, br);
        for (int64_t j = 0; j < k && st == LJ_OK; j++)
            st = lji_apply(ctx, B, trans, ac, alpha, X + j * ldx, bc, beta, Y + j * ldy, br);
        return st;
    }
    if (lji_is_identity(B)) {
        for (int64_t j = 0; j < k && st == LJ_OK; j++)
            st = lji_apply_right(ctx, A, trans, bc, alpha, X + j * ldx, bc, beta, Y + j * ldy, br);
        return st;
    }
    bool bfirst = kron_b_first(J, trans);
    int64_t tn;
    if (!lji_size_ok(bfirst ? br : bc, bfirst ? ac : ar, &tn))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "apply: Kronecker workspace overflows");
    lji_mark mk = lji_work_mark(ctx);
    double *T = lji_work_push(ctx, tn);
    if (!T) {
        lji_work_pop(ctx, mk);
        return lji_nomem(ctx, "apply");
    }
    for (int64_t j = 0; j < k && st == LJ_OK; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        if (bfirst) {
            st = lji_apply(ctx, B, trans, ac, 1.0, x, bc, 0.0, T, br);
            if (st == LJ_OK) st = lji_apply_right(ctx, A, trans, br, alpha, T, br, beta, y, br);
        } else {
            st = lji_apply_right(ctx, A, trans, bc, 1.0, x, bc, 0.0, T, bc);
            if (st == LJ_OK) st = lji_apply(ctx, B, trans, ar, alpha, T, bc, beta, y, br);
        }
    }
    lji_work_pop(ctx, mk);
    return st;
}

/* The exact pattern of A ⊗ B in one pass (lji_kron_to_sparse_scaled with
 * no scalings): column ja·nb + jb holds, for each
 * entry (ia, a) of A's column ja and (ib, b) of B's column jb, the entry
 * (ia·mb + ib, a·b), already in row order. */
static cholmod_sparse *kron_to_sparse(lj_context *ctx, const lj_op *J)
{
    return lji_kron_to_sparse_scaled(ctx, J, NULL, NULL);
}

/* The first column of A whose entries start at or after the t-th of nt
 * equal shares of A's nnz (na for t = nt). */
static int64_t share_start(const int64_t *Ap, int64_t na, int t, int nt)
{
    if (t <= 0) return 0;
    if (t >= nt) return na;
    const int64_t nza = Ap[na], target = nza / nt * t + nza % nt * t / nt; /* no overflow */
    int64_t lo = 0, hi = na; /* the first ja with Ap[ja] >= target */
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (Ap[mid] < target) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* One run of a Kronecker column: a·B(:, jb) at rows r0 + B's rows, times
 * rs at those rows where rs is given (Diag(rs)·(A ⊗ B)·Diag(cs), scaled as
 * written). Without rs the loops are vector loops, and a full column of B
 * (rows 0 … mb-1, a dense factor's) has its row indices counted, not read. */
static inline void kron_run(int64_t *restrict si, double *restrict sx, int64_t r0, double a,
                            const int64_t *restrict bi, const double *restrict bx, int64_t len, int64_t mb,
                            const double *rs)
{
    if (!rs && len == mb) {
        LJI_SIMD
        for (int64_t t = 0; t < len; t++) {
            si[t] = r0 + t;
            sx[t] = a * bx[t];
        }
    } else if (!rs) {
        LJI_SIMD
        for (int64_t t = 0; t < len; t++) {
            si[t] = r0 + bi[t];
            sx[t] = a * bx[t];
        }
    } else
        for (int64_t t = 0; t < len; t++) {
            si[t] = r0 + bi[t];
            sx[t] = a * bx[t] * rs[r0 + bi[t]];
        }
}

/* Diag(rs)·(A ⊗ B)·Diag(cs), or with cm the columns of Diag(rs)·(A ⊗ B)
 * taken in cm's order and scaled (column c is column cm[c].to, times
 * cm[c].w), in one pass */
static cholmod_sparse *kron_sparse(lj_context *ctx, const lj_op *J, const double *rs, const double *cs,
                                   const lji_map *cm)
{
    /* a sparse leaf factor is read in place, another materialised */
    const lj_op *FA = J->child[0], *FB = J->child[1];
    cholmod_sparse *OA = lji_is(FA, &lji_kind_sparse) ? NULL : lji_to_sparse(ctx, FA);
    if (!OA && !lji_is(FA, &lji_kind_sparse)) return NULL;
    cholmod_sparse *OB = lji_is(FB, &lji_kind_sparse) ? NULL : lji_to_sparse(ctx, FB);
    if (!OB && !lji_is(FB, &lji_kind_sparse)) {
        cholmod_l_free_sparse(&OA, &ctx->cc);
        return NULL;
    }
    const cholmod_sparse *SA = OA ? OA : &FA->sp, *SB = OB ? OB : &FB->sp;
    const int64_t *Ap = SA->p, *Ai = SA->i, *Bp = SB->p, *Bi = SB->i;
    const double *Ax = SA->x, *Bx = SB->x;
    int64_t na = (int64_t)SA->ncol, nb = (int64_t)SB->ncol, mb = (int64_t)SB->nrow;
    int64_t nz;
    cholmod_sparse *S = NULL;
    if (!lji_mul_ok(Ap[na], Bp[nb], &nz) || nz > (int64_t)(SIZE_MAX / 16)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "to_sparse: Kronecker product " LJI_SHP " overflows",
                  J->rows, J->cols);
        goto done;
    }
    S = lji_sparse_alloc(ctx, J->rows, J->cols, nz, "to_sparse");
    if (!S) goto done;
    int64_t *restrict Sp = S->p, *restrict Si = S->i;
    double *restrict Sx = S->x;
    /* column ja·nb + jb starts at Ap[ja]·nnz(B) + len_A(ja)·Bp[jb]: every
     * column's place is known, so threads take columns of A independently
     * and the result is the same whatever their number. Thread t takes
     * the columns of A that hold the t-th of nt equal shares of A's
     * entries, and so writes one contiguous share of the result: threads
     * that took columns in turn wrote next to each other and met in the
     * same fresh pages, where one waits while the other's fault is served
     * (into fresh memory two threads gained 1.26× over one, 1.6–1.8× with
     * shares) */
    const int64_t nzb = Bp[nb];
    int nt = nz >= LJI_KRON_MT_MIN ? lji_threads(ctx) : 1;
    if (cm) {
        /* columns in cm's order: their places counted first, then shares
         * of the result's entries taken by the threads as below */
        const int64_t nc = J->cols;
        int64_t q = 0;
        for (int64_t c = 0; c < nc; c++) {
            const int64_t f = cm[c].to, ja = f / nb, jb = f - ja * nb;
            Sp[c] = q;
            q += (Ap[ja + 1] - Ap[ja]) * (Bp[jb + 1] - Bp[jb]);
        }
        Sp[nc] = q;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
        for (int share = 0; share < nt; share++) {
            const int64_t c0 = share_start(Sp, nc, share, nt), c1 = share_start(Sp, nc, share + 1, nt);
            for (int64_t c = c0; c < c1; c++) {
                const int64_t f = cm[c].to, ja = f / nb, jb = f - ja * nb;
                const int64_t b0 = Bp[jb], len = Bp[jb + 1] - b0;
                int64_t qc = Sp[c];
                for (int64_t pa = Ap[ja]; pa < Ap[ja + 1]; pa++, qc += len)
                    kron_run(Si + qc, Sx + qc, Ai[pa] * mb, Ax[pa] * cm[c].w, Bi + b0, Bx + b0, len, mb, rs);
            }
        }
        goto done;
    }
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static, 1) if (nt > 1)
#endif
    for (int share = 0; share < nt; share++) {
        const int64_t ja0 = share_start(Ap, na, share, nt), ja1 = share_start(Ap, na, share + 1, nt);
        for (int64_t ja = ja0; ja < ja1; ja++) {
            const int64_t a0 = Ap[ja], la = Ap[ja + 1] - a0;
            for (int64_t jb = 0; jb < nb; jb++) {
                int64_t q = a0 * nzb + la * Bp[jb];
                Sp[ja * nb + jb] = q;
                const int64_t b0 = Bp[jb], len = Bp[jb + 1] - b0;
                const int64_t *restrict bi = Bi + b0;
                const double *restrict bx = Bx + b0;
                for (int64_t pa = a0; pa < a0 + la; pa++, q += len)
                    kron_run(Si + q, Sx + q, Ai[pa] * mb, cs ? Ax[pa] * cs[ja * nb + jb] : Ax[pa], bi, bx, len,
                             mb, rs);
            }
        }
    }
    Sp[J->cols] = nz;
done:
    cholmod_l_free_sparse(&OA, &ctx->cc);
    cholmod_l_free_sparse(&OB, &ctx->cc);
    return S;
}

cholmod_sparse *lji_kron_to_sparse_scaled(lj_context *ctx, const lj_op *J, const double *rs, const double *cs)
{
    return kron_sparse(ctx, J, rs, cs, NULL);
}

cholmod_sparse *lji_kron_to_sparse_mapped(lj_context *ctx, const lj_op *J, const double *rs, const lji_map *cm)
{
    return kron_sparse(ctx, J, rs, NULL, cm);
}

static int64_t kron_nnz(const lj_op *J, bool *exact)
{
    bool ea, eb;
    int64_t a = lji_nnz(J->child[0], &ea), b = lji_nnz(J->child[1], &eb), r;
    if (!lji_mul_ok(a, b, &r)) {
        *exact = false;
        return INT64_MAX;
    }
    *exact = ea && eb;
    return r;
}

static void kron_cost(const lj_op *J, double *flops, double *bytes)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    double fa, ba, fb, bb;
    lji_cost(A, &fa, &ba);
    lji_cost(B, &fb, &bb);
    double ar = (double)A->rows, ac = (double)A->cols, br = (double)B->rows, bc = (double)B->cols;
    if (lji_is_identity(A)) {
        *flops = ac * fb;
        *bytes = ac * bb;
    } else if (lji_is_identity(B)) {
        *flops = bc * fa;
        *bytes = bc * ba;
    } else if (kron_b_first(J, false)) {
        *flops = ac * fb + br * fa;
        *bytes = ac * bb + br * ba;
    } else {
        *flops = bc * fa + ar * fb;
        *bytes = bc * ba + ar * bb;
    }
}

static void kron_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    bool paren = where != LJI_AT_TOP && where != LJI_AT_KRON;
    lji_put_open(b, paren);
    lji_print(b, J->child[0], fmt, LJI_AT_KRON);
    lji_buf_puts(b, lji_sym_kron(fmt));
    lji_print(b, J->child[1], fmt, LJI_AT_KRON);
    lji_put_close(b, paren);
}

/* A and B written densely into workspace, then each column ja·nb + jb of
 * A ⊗ B as the blocks a(ia, ja)·B(:, jb) */
static lj_status kron_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    int64_t na, nb;
    if (!lji_size_ok(A->rows, A->cols, &na) || !lji_size_ok(B->rows, B->cols, &nb) || !lji_add_ok(na, nb, &na))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "to_dense: workspace overflows");
    lji_mark mk = lji_work_mark(ctx);
    double *ta = lji_work_push(ctx, na);
    double *tb = ta ? ta + A->rows * A->cols : NULL;
    int64_t lda = A->rows > 1 ? A->rows : 1, ldb = B->rows > 1 ? B->rows : 1;
    lj_status st = ta ? lji_to_dense(ctx, A, ta, lda) : lji_nomem(ctx, "to_dense");
    if (st == LJ_OK) st = lji_to_dense(ctx, B, tb, ldb);
    for (int64_t ja = 0; st == LJ_OK && ja < A->cols; ja++)
        for (int64_t jb = 0; jb < B->cols; jb++) {
            double *col = a + (ja * B->cols + jb) * ld;
            const double *bc = tb + jb * ldb;
            for (int64_t ia = 0; ia < A->rows; ia++) {
                const double s = ta[ia + ja * lda];
                double *c = col + ia * B->rows;
                for (int64_t ib = 0; ib < B->rows; ib++) c[ib] = s * bc[ib];
            }
        }
    lji_work_pop(ctx, mk);
    return st;
}

/* rows [r0, r1) of A ⊗ B (row ia·mb + ib): whole blocks of B's rows for
 * the rows of A in the middle, and partial ones at the two ends */
static lj_op *kron_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    const int64_t mb = B->rows, ia0 = r0 / mb, ib0 = r0 % mb, ia1 = (r1 - 1) / mb, ib1 = (r1 - 1) % mb;
    lj_op *part[3] = { NULL, NULL, NULL };
    int np = 0;
    bool fail = false;
    /* (a0, a1, b0, b1): rows [a0, a1) of A with rows [b0, b1) of B */
    int64_t spec[3][4];
    if (ia0 == ia1)
        spec[np++][0] = ia0, spec[0][1] = ia0 + 1, spec[0][2] = ib0, spec[0][3] = ib1 + 1;
    else {
        int64_t lo = ib0 == 0 ? ia0 : ia0 + 1, hi = ib1 == mb - 1 ? ia1 + 1 : ia1;
        if (ib0 != 0) spec[np][0] = ia0, spec[np][1] = ia0 + 1, spec[np][2] = ib0, spec[np][3] = mb, np++;
        if (hi > lo) spec[np][0] = lo, spec[np][1] = hi, spec[np][2] = 0, spec[np][3] = mb, np++;
        if (ib1 != mb - 1) spec[np][0] = ia1, spec[np][1] = ia1 + 1, spec[np][2] = 0, spec[np][3] = ib1 + 1, np++;
    }
    for (int t = 0; t < np && !fail; t++) {
        lj_op *a = lji_rows(ctx, A, spec[t][0], spec[t][1]), *b = a ? lji_rows(ctx, B, spec[t][2], spec[t][3]) : NULL;
        int64_t c0, c1;
        const lj_op *mid = a ? lji_placed_middle(a, &c0, &c1) : NULL;
        if (b && mid) /* [0 M 0] ⊗ B = [0, M ⊗ B, 0]: the zero blocks outside, so
                       * that applying the block touches only its columns */
            part[t] = lji_place_cols(ctx, lj_op_kron(ctx, mid, b), c0 * B->cols, c1 * B->cols, A->cols * B->cols);
        else
            part[t] = b ? lj_op_kron(ctx, a, b) : NULL;
        fail = !part[t];
        lj_op_free(&a);
        lj_op_free(&b);
    }
    lj_op *r = fail ? NULL : lj_op_vstack(ctx, np, (const lj_op *const *)part);
    for (int t = 0; t < np; t++) lj_op_free(&part[t]);
    return r;
}

const lji_kind lji_kind_kron = {
    .id = LJ_OP_KRON,
    .name = "kron",
    .apply = kron_apply,
    .to_sparse = kron_to_sparse,
    .rows = kron_rows,
    .to_dense = kron_to_dense,
    .nnz = kron_nnz,
    .cost = kron_cost,
    .print = kron_print,
    .equal = NULL,
};

lj_op *lj_op_kron(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const lj_op *ab[2] = { a, b };
    if (lji_check_args(ctx, "kron", 2, ab) != LJ_OK) return NULL;
    return lji_op_kron_nc(ctx, a, b);
}

lj_op *lji_op_kron_nc(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const char *op = "kron";
    int64_t rows, cols;
    if (!lji_mul_ok(a->rows, b->rows, &rows) || !lji_mul_ok(a->cols, b->cols, &cols)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "%s: " LJI_SHP " ⊗ " LJI_SHP " overflows int64", op, a->rows,
                  a->cols, b->rows, b->cols);
        return NULL;
    }
    if (lji_is_zero(a) || lji_is_zero(b)) return lj_op_zero(ctx, rows, cols);
    if (lji_is_identity(a) && lji_is_identity(b)) return lj_op_identity(ctx, rows); /* I⊗I = I */
    if (lji_is_identity(a) && a->rows == 1) return lji_take_ref(ctx, b);
    if (lji_is_identity(b) && b->rows == 1) return lji_take_ref(ctx, a);
    if (lji_is(a, &lji_kind_scaled) || lji_is(b, &lji_kind_scaled)) {
        /* (αA) ⊗ B = α(A ⊗ B), a symbol α staying one */
        lji_coef c = { .num = 1.0, .salpha = 1.0 };
        if (lji_is(a, &lji_kind_scaled)) {
            lji_coef_take(ctx, &c, a);
            a = a->child[0];
        }
        if (lji_is(b, &lji_kind_scaled)) {
            lji_coef_take(ctx, &c, b);
            b = b->child[0];
        }
        lj_op *k = lji_op_kron_nc(ctx, a, b);
        lj_op *r = k ? lji_coef_apply(ctx, &c, k) : NULL;
        free(c.sym);
        lj_op_free(&k);
        return r;
    }
    if (lji_is(a, &lji_kind_kron)) {
        /* (A1 ⊗ A2) ⊗ B = A1 ⊗ (A2 ⊗ B): one association, so that equal
         * products compare equal */
        lj_op *inner = lji_op_kron_nc(ctx, a->child[1], b);
        lj_op *r = inner ? lji_op_kron_nc(ctx, a->child[0], inner) : NULL;
        lj_op_free(&inner);
        return r;
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_kron, rows, cols, 2, op);
    if (!J) return NULL;
    J->child[0] = lji_take_ref(ctx, a);
    J->child[1] = lji_take_ref(ctx, b);
    lji_op_seal(J);
    return J;
}

lj_op *lj_op_kron_n(lj_context *ctx, int n, const lj_op *const *ops)
{
    if (lji_check_args(ctx, "kron", n, ops) != LJ_OK) return NULL;
    if (n == 0) {
        lji_error(ctx, LJ_ERR_INVALID, "kron: no operands");
        return NULL;
    }
    lj_op *r = lj_op_retain(ops[n - 1]);
    for (int i = n - 2; i >= 0 && r; i--) {
        lj_op *t = lj_op_kron(ctx, ops[i], r);
        lj_op_free(&r);
        r = t;
    }
    return r;
}
