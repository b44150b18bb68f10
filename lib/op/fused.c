/* Fused apply kernels, chosen at a node's first apply (the structure is
 * immutable, so the choice is made once, not at every apply; the nodes a
 * build makes and drops on its way to J are never applied and never pay
 * for it; lji_kernel publishes the choice atomically, as one operator may
 * be applied from many threads at once). Each one does
 * in one pass over the data what the node's children would do in several,
 * streaming intermediates through temporaries:
 *
 *   vector-sided Kronecker factors   u ⊗ I_n, I_n ⊗ u, u^T ⊗ I_n, I_n ⊗ u^T
 *       (a loop: an outer product or a set of dot products, not a GEMM
 *       with an inner dimension of one);
 *   Diag(d)·Σ_t α_t K_t             with each K_t one of the above on the
 *       same R×C grid (seed 001: Diag(vec A)·((x ⊗ I) + (I ⊗ x)));
 *   (b^T ⊗ u^T)·Diag(d)             a one-row operator (seed 002's
 *       gradient form), and without the Diag;
 *   A ⊗ B of small dense factors     (either one transposed): the two
 *       products straight to their kernels (lji_gemm_kernel's choice for
 *       their shapes, made here), the intermediate on the stack, the
 *       association chosen here (the Jacobians of small matrices, where
 *       the generic path's dispatch cost more than its arithmetic).
 *
 * The node's own children stay what they are: printing, materialisation and
 * every query see the structure; only apply takes the short way. Each
 * kernel computes exactly what the children compute, to rounding; the
 * three-way checks in tests/check_op.c cover the fused nodes like any.
 * No kernel takes workspace from the context: lj_op_apply calls them
 * without a workspace mark. */
#include "config.h"
#include "op.h"
#include "../core/lji_blas.h"
#include <stdatomic.h>
#include <stdlib.h>

/* A vector-sided Kronecker factor: the vector, the identity's size, and
 * which of the four forms. On the R×C grid of vec(Y) (Y R×C) it is:
 *   OUTER_LEFT  u ⊗ I_R   (u C×1):  Y = v u^T,   Y(r,c) = v[r]·u[c]
 *   OUTER_RIGHT I_C ⊗ u   (u R×1):  Y = u v^T,   Y(r,c) = u[r]·v[c]
 * and its transposes map vec(Y) back to a vector. */
enum { OUTER_LEFT = 1, OUTER_RIGHT = 2 };

typedef struct {
    int form;        /* OUTER_LEFT or OUTER_RIGHT */
    const double *u; /* the vector */
    double c;        /* its coefficient in the sum */
} vterm;

struct lji_fused {
    lji_apply_fn apply; /* the kernel */
    int64_t R, C; /* the grid of the long side */
    const double *d; /* Diag on the long side, or NULL */
    int nt;
    vterm t[LJI_FUSED_TERMS];
    const double *b, *u; /* the row kernel: (b^T ⊗ u^T)·Diag(d) on an R×C grid */
    double c;
    bool u_ones;         /* u is a vector of ones (1_p^T of seed 002) */
    /* small dense Kronecker factors: op(A) ⊗ op(B), op(D) = D^T where t */
    const double *ka, *kb;
    int64_t lda, ldb;
    bool ta, tb;
    struct kron_shape {  /* for J and J^T: */
        int64_t ar, ac, br, bc; /* op(A)' and op(B)' as applied */
        bool bfirst;            /* op(B)' applied first */
        lji_gemm_fn k0, k1;     /* the kernels of the two products */
    } ks[2];
};

/* J's kernel, once lji_kernel has chosen it */
static const struct lji_fused *kernel_of(const lj_op *J)
{
    return atomic_load_explicit(&((lj_op *)J)->fused, memory_order_acquire);
}

/* a under its scalings α(β(…A)): A, with the product of the factors
 * multiplied into *s */
static const lj_op *unscaled(const lj_op *a, double *s)
{
    while (lji_is(a, &lji_kind_scaled)) {
        *s *= a->alpha;
        a = a->child[0];
    }
    return a;
}

/* A dense column vector (or the transpose of a dense row) under any
 * scalings: its data and the product of the scalings. */
static const double *dense_vector(const lj_op *a, int64_t *len, double *scale, bool *row)
{
    double s = 1.0;
    a = unscaled(a, &s);
    bool t = false;
    if (lji_is(a, &lji_kind_transpose)) {
        t = true;
        a = a->child[0];
    }
    if (!lji_is(a, &lji_kind_dense) || (a->cols != 1 && a->rows != 1)) return NULL;
    if (a->cols != 1 && a->ld != 1) return NULL; /* a row with a stride: not contiguous */
    bool is_row = (a->rows == 1) != t;           /* the operator is a row */
    *len = a->rows * a->cols;
    *scale = s;
    *row = is_row;
    return a->data;
}

/* Is a (under scalings) u ⊗ I or I ⊗ u with u a dense column? */
static bool vector_kron(const lj_op *a, vterm *t, int64_t *R, int64_t *C)
{
    double s = 1.0;
    a = unscaled(a, &s);
    if (!lji_is(a, &lji_kind_kron)) return false;
    const lj_op *A = a->child[0], *B = a->child[1];
    int64_t len;
    double vs;
    bool row;
    const double *u;
    if (lji_is_identity(B) && (u = dense_vector(A, &len, &vs, &row)) && !row) {
        /* (u ⊗ I_R) v = vec(v u^T): grid R×C with C = len(u) */
        *t = (vterm){ OUTER_LEFT, u, s * vs };
        *R = B->rows;
        *C = len;
        return true;
    }
    if (lji_is_identity(A) && (u = dense_vector(B, &len, &vs, &row)) && !row) {
        /* (I_C ⊗ u) v = vec(u v^T): grid R×C with R = len(u) */
        *t = (vterm){ OUTER_RIGHT, u, s * vs };
        *R = len;
        *C = A->rows;
        return true;
    }
    return false;
}

/* ---- Diag(d)·Σ α_t K_t ----------------------------------------------------- */

static lj_status vsum_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                            const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    (void)ctx;
    const struct lji_fused *f = kernel_of(J);
    const int64_t R = f->R, C = f->C;
    const double *restrict d = f->d;
    for (int64_t v = 0; v < k; v++) {
        const double *restrict x = X + v * ldx;
        double *restrict y = Y + v * ldy;
        if (!trans) {
            /* y(r,c) = alpha·d(r,c)·Σ_t c_t·(v[r]u_t[c] or u_t[r]v[c]) + beta·y(r,c) */
            if (f->nt == 2 && f->t[0].form != f->t[1].form) { /* u ⊗ I + I ⊗ w: seed 001 */
                const vterm *l = f->t[0].form == OUTER_LEFT ? &f->t[0] : &f->t[1];
                const vterm *r = f->t[0].form == OUTER_LEFT ? &f->t[1] : &f->t[0];
                const double *restrict ul = l->u, *restrict ur = r->u;
                const double cl = alpha * l->c, cr = alpha * r->c;
                for (int64_t c = 0; c < C; c++) {
                    const double a = cl * ul[c], b = cr * x[c];
                    double *restrict yc = y + c * R;
                    const double *restrict dc = d ? d + c * R : NULL;
                    if (beta == 0.0) {
                        if (dc) {
                            LJI_SIMD
                            for (int64_t i = 0; i < R; i++) yc[i] = dc[i] * (a * x[i] + b * ur[i]);
                        } else {
                            LJI_SIMD
                            for (int64_t i = 0; i < R; i++) yc[i] = a * x[i] + b * ur[i];
                        }
                    } else {
                        LJI_SIMD
                        for (int64_t i = 0; i < R; i++)
                            yc[i] = (dc ? dc[i] : 1.0) * (a * x[i] + b * ur[i]) + beta * yc[i];
                    }
                }
                continue;
            }
            for (int64_t c = 0; c < C; c++) {
                double *restrict yc = y + c * R;
                for (int64_t i = 0; i < R; i++) {
                    double s = 0.0;
                    for (int t = 0; t < f->nt; t++) {
                        const vterm *w = &f->t[t];
                        s += w->c * (w->form == OUTER_LEFT ? x[i] * w->u[c] : w->u[i] * x[c]);
                    }
                    double val = alpha * (d ? d[i + c * R] : 1.0) * s;
                    yc[i] = beta == 0.0 ? val : val + beta * yc[i];
                }
            }
        } else {
            /* z = d ∘ w on the grid; OUTER_LEFT^T: out[r] += c·Σ_c u[c] z(r,c);
             * OUTER_RIGHT^T: out[c] += c·Σ_r u[r] z(r,c). out has R = C entries
             * (the terms share the variable) */
            const int64_t n = f->t[0].form == OUTER_LEFT ? R : C;
            if (beta == 0.0)
                for (int64_t i = 0; i < n; i++) y[i] = 0.0;
            else if (beta != 1.0)
                for (int64_t i = 0; i < n; i++) y[i] *= beta;
            if (f->nt == 2 && f->t[0].form != f->t[1].form) { /* seed 001: one pass */
                const vterm *l = f->t[0].form == OUTER_LEFT ? &f->t[0] : &f->t[1];
                const vterm *r = f->t[0].form == OUTER_LEFT ? &f->t[1] : &f->t[0];
                const double *restrict ul = l->u, *restrict ur = r->u;
                for (int64_t c = 0; c < C; c++) {
                    const double *restrict xc = x + c * R;
                    const double *restrict dc = d ? d + c * R : NULL;
                    const double a = alpha * l->c * ul[c];
                    double s = 0.0;
                    if (dc)
                        for (int64_t i = 0; i < R; i++) {
                            const double z = dc[i] * xc[i];
                            y[i] += a * z;
                            s += ur[i] * z;
                        }
                    else
                        for (int64_t i = 0; i < R; i++) {
                            y[i] += a * xc[i];
                            s += ur[i] * xc[i];
                        }
                    y[c] += alpha * r->c * s;
                }
                continue;
            }
            for (int64_t c = 0; c < C; c++) {
                const double *restrict xc = x + c * R;
                const double *restrict dc = d ? d + c * R : NULL;
                for (int t = 0; t < f->nt; t++) {
                    const vterm *w = &f->t[t];
                    const double *restrict u = w->u;
                    if (w->form == OUTER_LEFT) {
                        const double a = alpha * w->c * u[c];
                        if (dc) {
                            LJI_SIMD
                            for (int64_t i = 0; i < R; i++) y[i] += a * dc[i] * xc[i];
                        } else {
                            LJI_SIMD
                            for (int64_t i = 0; i < R; i++) y[i] += a * xc[i];
                        }
                    } else {
                        double s = 0.0;
                        if (dc)
                            for (int64_t i = 0; i < R; i++) s += u[i] * dc[i] * xc[i];
                        else
                            for (int64_t i = 0; i < R; i++) s += u[i] * xc[i];
                        y[c] += alpha * w->c * s;
                    }
                }
            }
        }
    }
    return LJ_OK;
}

/* ---- (b^T ⊗ u^T)·Diag(d): one row ------------------------------------------- */

/* Σ_i a[i]·x[i] (·w[i] when w) in four independent sums: the adds of one
 * running sum wait for each other (a latency each), four keep the
 * floating-point units busy whatever the loop's place in memory */
static inline double dot4(int64_t n, const double *restrict a, const double *restrict x, const double *restrict w)
{
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    int64_t i = 0;
    if (w)
        for (; i + 4 <= n; i += 4) {
            t0 += w[i] * a[i] * x[i];
            t1 += w[i + 1] * a[i + 1] * x[i + 1];
            t2 += w[i + 2] * a[i + 2] * x[i + 2];
            t3 += w[i + 3] * a[i + 3] * x[i + 3];
        }
    else
        for (; i + 4 <= n; i += 4) {
            t0 += a[i] * x[i];
            t1 += a[i + 1] * x[i + 1];
            t2 += a[i + 2] * x[i + 2];
            t3 += a[i + 3] * x[i + 3];
        }
    for (; i < n; i++) t0 += (w ? w[i] : 1.0) * a[i] * x[i];
    return (t0 + t1) + (t2 + t3);
}

static lj_status row_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                           const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    (void)ctx;
    const struct lji_fused *f = kernel_of(J);
    const int64_t R = f->R, C = f->C;
    const double *restrict d = f->d, *restrict b = f->b, *restrict u = f->u;
    for (int64_t v = 0; v < k; v++) {
        const double *restrict x = X + v * ldx;
        double *restrict y = Y + v * ldy;
        if (!trans) { /* y = alpha·c·Σ_c b[c] Σ_r u[r] d(r,c) x(r,c) + beta·y */
            double s = 0.0;
            for (int64_t c = 0; c < C; c++) {
                const double *restrict xc = x + c * R, *restrict dc = d ? d + c * R : NULL;
                double t;
                if (dc && f->u_ones)
                    t = dot4(R, dc, xc, NULL);
                else if (dc)
                    t = dot4(R, dc, xc, u);
                else
                    t = dot4(R, u, xc, NULL);
                s += b[c] * t;
            }
            y[0] = alpha * f->c * s + (beta == 0.0 ? 0.0 : beta * y[0]);
        } else { /* y(r,c) = alpha·c·x·b[c]·u[r]·d(r,c) + beta·y(r,c) */
            const double s = alpha * f->c * x[0];
            for (int64_t c = 0; c < C; c++) {
                double *restrict yc = y + c * R;
                const double *restrict dc = d ? d + c * R : NULL;
                const double a = s * b[c];
                /* elementwise runs, vectorised whatever -O2's cost model says */
                if (beta == 0.0) {
                    if (dc && f->u_ones) {
                        LJI_SIMD
                        for (int64_t i = 0; i < R; i++) yc[i] = a * dc[i];
                    } else if (dc) {
                        LJI_SIMD
                        for (int64_t i = 0; i < R; i++) yc[i] = a * u[i] * dc[i];
                    } else {
                        LJI_SIMD
                        for (int64_t i = 0; i < R; i++) yc[i] = a * u[i];
                    }
                } else {
                    LJI_SIMD
                    for (int64_t i = 0; i < R; i++) yc[i] = a * u[i] * (dc ? dc[i] : 1.0) + beta * yc[i];
                }
            }
        }
    }
    return LJ_OK;
}

/* Is a (under scalings) b^T ⊗ u^T with b, u dense vectors? */
static bool row_kron(const lj_op *a, struct lji_fused *f)
{
    double s = 1.0;
    a = unscaled(a, &s);
    if (!lji_is(a, &lji_kind_kron) || a->rows != 1) return false;
    int64_t lb, lu;
    double sb, su;
    bool rb, ru;
    const double *b = dense_vector(a->child[0], &lb, &sb, &rb), *u = dense_vector(a->child[1], &lu, &su, &ru);
    if (!b || !u || !rb || !ru) return false;
    f->b = b;
    f->u = u;
    f->c = s * sb * su;
    f->u_ones = true; /* a vector, not the data of a large operator: read once here */
    for (int64_t i = 0; i < lu && f->u_ones; i++) f->u_ones = u[i] == 1.0;
    f->R = lu;
    f->C = lb;
    return true;
}

/* ---- small dense Kronecker factors ------------------------------------------ */

/* temporaries of up to this many doubles: on the stack, within one page
 * (a larger frame is probed page by page) */
#define LJI_KRON_SMALL_T 448

/* one of kron_small_apply's products, by the kernel chosen for its shape;
 * OpenBLAS's called directly where that is the choice */
static inline void kron_prod(lji_gemm_fn fn, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                             const double *a, int64_t lda, const double *b, int64_t ldb, double beta, double *c,
                             int64_t ldc)
{
    if (fn == lji_gemm_blas)
        lji_cblas_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    else
        fn(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

/* (op(A) ⊗ op(B)) vec X = vec(op(B)·X·op(A)^T), for each of k vectors;
 * J^T the same with A^T ⊗ B^T. */
static lj_status kron_small_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                                  const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    const struct lji_fused *f = kernel_of(J);
    const struct kron_shape *s = &f->ks[trans];
    /* op(A)' and op(B)': shapes and transposition as applied */
    const int64_t ar = s->ar, ac = s->ac, br = s->br, bc = s->bc;
    const bool ta = f->ta != trans, tb = f->tb != trans;
    double T[LJI_KRON_SMALL_T];
    (void)ctx; /* no workspace, no errors: the kernels were chosen with the shapes */
    for (int64_t j = 0; j < k; j++) {
        const double *x = X + j * ldx;
        double *y = Y + j * ldy;
        if (s->bfirst) { /* T = op(B)'·X (br×ac), Y = alpha·T·op(A)'^T + beta·Y */
            kron_prod(s->k0, tb, false, br, ac, bc, 1.0, f->kb, f->ldb, x, bc, 0.0, T, br);
            kron_prod(s->k1, false, !ta, br, ar, ac, alpha, T, br, f->ka, f->lda, beta, y, br);
        } else { /* T = X·op(A)'^T (bc×ar), Y = alpha·op(B)'·T + beta·Y */
            kron_prod(s->k0, false, !ta, bc, ar, ac, 1.0, x, bc, f->ka, f->lda, 0.0, T, bc);
            kron_prod(s->k1, tb, false, br, ar, bc, alpha, f->kb, f->ldb, T, bc, beta, y, br);
        }
    }
    return LJ_OK;
}

/* a dense block or the transpose of one: its data, and whether transposed */
static bool dense_ref(const lj_op *a, const double **d, int64_t *ld, bool *t)
{
    *t = false;
    if (lji_is(a, &lji_kind_transpose)) {
        a = a->child[0];
        *t = true;
    }
    if (!lji_is(a, &lji_kind_dense)) return false;
    *d = a->data;
    *ld = a->ld;
    return true;
}

/* Is J op(A) ⊗ op(B) of dense factors whose intermediates fit the stack? */
static bool kron_small(const lj_op *J, struct lji_fused *f)
{
    const lj_op *A = J->child[0], *B = J->child[1];
    if (!dense_ref(A, &f->ka, &f->lda, &f->ta) || !dense_ref(B, &f->kb, &f->ldb, &f->tb)) return false;
    if (!lji_blas_int_ok(f->lda) || !lji_blas_int_ok(f->ldb)) return false;
    for (int trans = 0; trans < 2; trans++) {
        struct kron_shape *s = &f->ks[trans];
        s->ar = trans ? A->cols : A->rows, s->ac = trans ? A->rows : A->cols;
        s->br = trans ? B->cols : B->rows, s->bc = trans ? B->rows : B->cols;
        const double ar = (double)s->ar, ac = (double)s->ac, br = (double)s->br, bc = (double)s->bc;
        const double fa = 2.0 * ar * ac, fb = 2.0 * br * bc; /* the generic path's rule (kron.c) */
        s->bfirst = ac * fb + br * fa <= bc * fa + ar * fb;
        if (ar * ac * br * bc == 0 || (s->bfirst ? br * ac : bc * ar) > LJI_KRON_SMALL_T) return false;
        /* the products' kernels, as kron_small_apply calls them */
        const bool ta = f->ta != trans, tb = f->tb != trans;
        if (s->bfirst) {
            s->k0 = lji_gemm_kernel(tb, false, s->br, s->ac, s->bc);
            s->k1 = lji_gemm_kernel(false, !ta, s->br, s->ar, s->ac);
        } else {
            s->k0 = lji_gemm_kernel(false, !ta, s->bc, s->ar, s->ac);
            s->k1 = lji_gemm_kernel(tb, false, s->br, s->ar, s->bc);
        }
        if (!s->k0 || !s->k1) return false;
    }
    return true;
}

/* ---- the choice ------------------------------------------------------------- */

/* Terms of a sum (or a single factor) as vector-sided Kronecker factors on
 * one grid. */
static bool vector_terms(const lj_op *a, struct lji_fused *f)
{
    int64_t R = -1, C = -1;
    const lj_op *const *terms = &a;
    const double *coef = NULL;
    int n = 1;
    if (lji_is(a, &lji_kind_sum)) {
        terms = (const lj_op *const *)a->child;
        coef = a->coef;
        n = a->nchild;
    }
    if (n > LJI_FUSED_TERMS) return false;
    for (int i = 0; i < n; i++) {
        int64_t r, c;
        if (!vector_kron(terms[i], &f->t[i], &r, &c)) return false;
        if (coef) f->t[i].c *= coef[i];
        if (R >= 0 && (r != R || c != C)) return false; /* one grid */
        R = r;
        C = c;
    }
    /* every term maps the same variable: the short sides agree */
    for (int i = 1; i < n; i++) {
        int64_t ni = f->t[i].form == OUTER_LEFT ? R : C, n0 = f->t[0].form == OUTER_LEFT ? R : C;
        if (ni != n0) return false;
    }
    f->nt = n;
    f->R = R;
    f->C = C;
    return true;
}

/* "chosen: none" */
static struct lji_fused no_kernel;

/* J's structure's kernel into *f (f->apply NULL: none) */
static void choose(const lj_op *J, struct lji_fused *f)
{
    if (lji_is(J, &lji_kind_kron)) {
        if (vector_terms(J, f)) f->apply = vsum_apply;
        else if (row_kron(J, f)) f->apply = row_apply;
        else if (kron_small(J, f)) f->apply = kron_small_apply;
    } else if (lji_is(J, &lji_kind_sum)) {
        if (vector_terms(J, f)) f->apply = vsum_apply;
    } else if (lji_is(J, &lji_kind_compose) && J->nchild == 2) {
        const lj_op *L = J->child[0], *Rt = J->child[1];
        if (lji_is(L, &lji_kind_diag) && vector_terms(Rt, f)) {
            f->d = L->data;
            f->apply = vsum_apply;
        } else if (lji_is(Rt, &lji_kind_diag) && row_kron(L, f)) {
            f->d = Rt->data;
            f->apply = row_apply;
        }
    }
}

lji_apply_fn lji_kernel(const lj_op *cJ)
{
    const struct lji_fused *f = kernel_of(cJ);
    if (!f) {
        struct lji_fused tmp = { 0 };
        choose(cJ, &tmp);
        struct lji_fused *mine = &no_kernel, *expected = NULL;
        if (tmp.apply) {
            mine = malloc(sizeof *mine); /* written whole below */
            if (!mine) return NULL; /* no memory: applied as its kind does, chosen again next time */
            *mine = tmp;
        }
        /* the first thread's choice stands; the same choice from another
         * thread at once is dropped */
        if (atomic_compare_exchange_strong_explicit(&((lj_op *)cJ)->fused, &expected, mine, memory_order_acq_rel,
                                                    memory_order_acquire))
            f = mine;
        else {
            if (mine != &no_kernel) free(mine);
            f = expected;
        }
    }
    return f->apply;
}

void lji_kernel_free(lj_op *J)
{
    struct lji_fused *f = atomic_load_explicit(&J->fused, memory_order_relaxed);
    if (f && f != &no_kernel) free(f);
    atomic_store_explicit(&J->fused, NULL, memory_order_relaxed);
}

/* After a Jacobian plan rewrote numbers in place: the kernel's parameters
 * that are numbers, read again. Its pointers are to the same arrays; its
 * coefficients come from scalings and sums, whose numbers a plan's tape
 * never rewrites (lji_tape_break); whether u is all ones is read anew. */
void lji_refresh_kernel(lj_op *J)
{
    struct lji_fused *f = atomic_load_explicit(&J->fused, memory_order_acquire);
    if (!f || f->apply != row_apply) return; /* not chosen yet: read when it is */
    f->u_ones = true;
    for (int64_t i = 0; i < f->R && f->u_ones; i++) f->u_ones = f->u[i] == 1.0;
}
