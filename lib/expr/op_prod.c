/* Products and rearrangements: the matrix product (and scalar multiples),
 * the Kronecker product, the transpose. */
#include "config.h"
#include "ops.h"
#include "../core/lji_blas.h"
#include <inttypes.h>

static lj_status mul_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c)
{
    LJI_UNUSED(d);
    if (lji_is_scalar(a) || lji_is_scalar(b)) { /* a scalar multiple */
        const lj_expr *m = lji_is_scalar(a) ? b : a;
        *r = m->rows;
        *c = m->cols;
        return LJ_OK;
    }
    if (a->cols != b->rows)
        return lji_error(ctx, LJ_ERR_SHAPE, "mul: inner dimensions differ: " LJI_SHP "·" LJI_SHP, a->rows,
                         a->cols, b->rows, b->cols);
    *r = a->rows;
    *c = b->cols;
    return LJ_OK;
}

/* A dense product with a sparse factor: S·X through CHOLMOD's sdmult, X·S
 * column by column of S (out[:, j] = Σ X[:, l]·s_lj). */
static lj_status mul_sparse_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double alpha,
                                 double *out)
{
    const lj_expr *a = e->a, *b = e->b;
    int64_t m = e->rows, n = e->cols;
    if (a->pat) {
        cholmod_sparse S;
        lji_pat_view(a->pat, A, &S);
        int64_t xn = b->rows * n, yn = m * n;
        cholmod_dense X = { .nrow = (size_t)b->rows, .ncol = (size_t)n, .nzmax = (size_t)(xn > 0 ? xn : 1),
                            .d = (size_t)(b->rows > 0 ? b->rows : 1), .x = (double *)B, .xtype = CHOLMOD_REAL,
                            .dtype = CHOLMOD_DOUBLE };
        cholmod_dense Y = { .nrow = (size_t)m, .ncol = (size_t)n, .nzmax = (size_t)(yn > 0 ? yn : 1),
                            .d = (size_t)(m > 0 ? m : 1), .x = out, .xtype = CHOLMOD_REAL, .dtype = CHOLMOD_DOUBLE };
        double al[2] = { alpha, 0 }, zero[2] = { 0, 0 };
        if (!cholmod_l_sdmult(&S, 0, al, zero, &X, &Y, &ctx->cc)) return lji_cholmod_check(ctx, "mul");
        return LJ_OK;
    }
    const lji_pat *p = b->pat;
    memset(out, 0, (size_t)(m * n) * sizeof *out);
    for (int64_t j = 0; j < n; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
            const double *x = A + p->i[q] * m, s = alpha * B[q];
            double *y = out + j * m;
            for (int64_t i = 0; i < m; i++) y[i] += s * x[i];
        }
    return LJ_OK;
}

/* a 1×1 operand's value: a sparse one is its entry or 0 */
static double scalar_of(const lj_expr *x, const double *X)
{
    return x->pat && x->pat->nnz == 0 ? 0.0 : X[0];
}

/* alpha·A·B of a dense product (lji_mul_fusable): alpha rides in the GEMM or
 * the sdmult */
bool lji_mul_fusable(const lj_expr *e)
{
    return e->def == &lji_op_mul && !e->pat && !lji_is_scalar(e->a) && !lji_is_scalar(e->b) &&
           !(e->a->pat && e->b->pat);
}

lj_status lji_mul_eval_scaled(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double alpha,
                              double *out)
{
    return lji_mul_eval_t(ctx, e, A, false, B, false, alpha, out);
}

/* A dense operand's transpose node, read through by the product: its
 * operand's value, multiplied transposed */
bool lji_mul_reads_through(const lj_expr *e, int which)
{
    const lj_expr *c = which ? e->b : e->a;
    return lji_mul_fusable(e) && !e->a->pat && !e->b->pat && c->def == &lji_op_transpose && !c->a->pat;
}

lj_status lji_mul_eval_t(lj_context *ctx, const lj_expr *e, const double *A, bool ta, const double *B, bool tb,
                         double alpha, double *out)
{
    const lj_expr *a = e->a, *b = e->b;
    int64_t m = e->rows, n = e->cols;
    if (a->pat || b->pat) return mul_sparse_eval(ctx, e, A, B, alpha, out);
    /* op(A) is a->rows × a->cols; A itself its transpose when ta */
    int64_t lda = ta ? a->cols : a->rows, ldb = tb ? b->cols : b->rows;
    return lji_gemm(ctx, "mul", ta, tb, m, n, a->cols, alpha, A, lda > 0 ? lda : 1, B, ldb > 0 ? ldb : 1, 0.0, out,
                    m > 0 ? m : 1);
}

static lj_status mul_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    const lj_expr *a = e->a, *b = e->b;
    int64_t mn = e->rows * e->cols;
    if (!lji_is_scalar(a) && !lji_is_scalar(b)) return lji_mul_eval_scaled(ctx, e, A, B, 1.0, out);
    if ((a->pat || b->pat) && lji_is_scalar(a) && lji_is_scalar(b)) {
        out[0] = scalar_of(a, A) * scalar_of(b, B);
        return LJ_OK;
    }
    if (a->pat || b->pat) { /* a 1×1 sparse factor of a dense matrix */
        double s = lji_is_scalar(a) ? scalar_of(a, A) : scalar_of(b, B);
        const double *M = lji_is_scalar(a) ? B : A;
        for (int64_t i = 0; i < mn; i++) out[i] = s * M[i];
        return LJ_OK;
    }
    /* a 1×1 dense factor */
    const double *s = lji_is_scalar(a) ? A : B, *M = lji_is_scalar(a) ? B : A;
    bool both = lji_is_scalar(a) && lji_is_scalar(b);
    for (int64_t i = 0; i < mn; i++) out[i] = both ? A[0] * B[0] : s[0] * M[i];
    return LJ_OK;
}

/* J of S·X (or X·S) w.r.t. the stored entries of a sparse S, the other
 * factor dense: (X^T ⊗ I_m)·P_S^T (or (I_n ⊗ X)·P_S^T) written out, with
 * p entries per stored entry (p the columns of X, or its rows). */
static lj_op *mul_sparse_local(lji_dctx *d, const lj_expr *e, int which)
{
    lj_context *ctx = d->ctx;
    const lj_expr *c = which ? e->b : e->a, *o = which ? e->a : e->b;
    if (lji_is_scalar(c) || lji_is_scalar(o) || o->pat) return NULL; /* the general rule */
    const lji_pat *p = c->pat;
    const double *X = lji_d_val(d, o);
    int64_t m = e->rows, n = e->cols, per = which ? m : n, nz;
    if (!lji_mul_ok(p->nnz, per, &nz)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "jacobian: mul: %" PRId64 "·%" PRId64 " entries overflow", p->nnz, per);
        return NULL;
    }
    cholmod_sparse *s = lji_sparse_alloc(ctx, m * n, p->nnz, nz, "jacobian");
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i, k = 0;
    double *sx = s->x;
    for (int64_t j = 0; j < p->ncol; j++)
        for (int64_t q = p->p[j]; q < p->p[j + 1]; q++) {
            int64_t i = p->i[q]; /* entry (i, j) of S */
            sp[q] = k;
            if (!which) /* d(S X)[i, t] / dS[i, j] = X[j, t] */
                for (int64_t t = 0; t < n; t++) {
                    si[k] = i + t * m;
                    sx[k++] = X[j + t * o->rows];
                }
            else /* d(X S)[t, j] / dS[i, j] = X[t, i] */
                for (int64_t t = 0; t < m; t++) {
                    si[k] = t + j * m;
                    sx[k++] = X[t + i * m];
                }
        }
    sp[p->nnz] = k;
    char *lo = lji_d_factor_label(d, o, !which), *lc = lji_d_pattern_name(d, c);
    lji_buf b;
    lji_buf_init(&b, ctx);
    if (!which) lji_buf_printf(&b, "(%s ⊗ I_%" PRId64 ")·", lo ? lo : "?", m);
    else lji_buf_printf(&b, "(I_%" PRId64 " ⊗ %s)·", n, lo ? lo : "?");
    lji_buf_printf(&b, "%s^T", lc ? lc : "?");
    char *label = lji_buf_finish(&b, "jacobian");
    lj_op *r = label && lo && lc ? lj_op_sparse(ctx, s, label) : NULL;
    if (!r && ctx->status == LJ_OK) lji_nomem(ctx, "jacobian");
    free(lo);
    free(lc);
    free(label);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return r;
}

/* (B^T ⊗ I_m) dA + (I_q ⊗ A) dB; scalar factors by their own rules */
static lj_op *mul_local(lji_dctx *d, const lj_expr *e, int which)
{
    lj_context *ctx = d->ctx;
    if (d->raw) return mul_sparse_local(d, e, which); /* w.r.t. a sparse factor */
    const lj_expr *a = e->a, *b = e->b, *c = which ? b : a, *o = which ? a : b;
    int64_t mn = e->rows * e->cols;
    if (lji_is_scalar(c) && !lji_is_scalar(o)) return lji_d_vec(d, o); /* d(s·M)/ds = vec M */
    if (lji_is_scalar(o)) return lji_d_scaled_by(d, o, lji_d_val(d, o)[0], "", "", lji_d_identity(ctx, mn));
    if (!which) return lji_d_kron(ctx, lji_d_opval_transposed(d, b), lji_d_identity(ctx, a->rows));
    return lji_d_kron(ctx, lji_d_identity(ctx, b->cols), lji_d_opval(d, a));
}

/* The rule for a product of three whose middle factor alone depends on the
 * variable, e = x·o with x = a·h (side 0) or e = o·x with x = h·a (side
 * 1): vec(a·h·o) = (o^T ⊗ a)·vec h and vec(o·h·a) = (a^T ⊗ o)·vec h, the
 * product of the two rules above (mixed product), made at once. */
lj_op *lji_mul3_local(lji_dctx *d, const lj_expr *e, const lj_expr *x, int side)
{
    const lj_expr *o = side ? e->a : e->b, *a = side ? x->b : x->a;
    lj_context *ctx = d->ctx;
    if (!side) return lji_d_kron(ctx, lji_d_opval_transposed(d, o), lji_d_opval(d, a));
    return lji_d_kron(ctx, lji_d_opval_transposed(d, a), lji_d_opval(d, o));
}

static lj_status kron_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                            int64_t *r, int64_t *c)
{
    LJI_UNUSED(d);
    if (!lji_mul_ok(a->rows, b->rows, r) || !lji_mul_ok(a->cols, b->cols, c) || !lji_size_ok(*r, *c, NULL))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "kron: " LJI_SHP " ⊗ " LJI_SHP " overflows", a->rows, a->cols,
                         b->rows, b->cols);
    return LJ_OK;
}

static lj_status kron_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out)
{
    LJI_UNUSED(ctx);
    int64_t ar = e->a->rows, ac = e->a->cols, br = e->b->rows, bc = e->b->cols, m = e->rows;
    for (int64_t ja = 0; ja < ac; ja++)
        for (int64_t jb = 0; jb < bc; jb++)
            for (int64_t ia = 0; ia < ar; ia++)
                for (int64_t ib = 0; ib < br; ib++)
                    out[(ia * br + ib) + (ja * bc + jb) * m] = A[ia + ja * ar] * B[ib + jb * br];
    return LJ_OK;
}

/* (I_n ⊗ K_{q,m} ⊗ I_p)[(I_{mn} ⊗ vec B) dA + (vec A ⊗ I_{pq}) dB] */
static lj_op *kron_local(lji_dctx *d, const lj_expr *e, int which)
{
    lj_context *ctx = d->ctx;
    int64_t m = e->a->rows, n = e->a->cols, p = e->b->rows, q = e->b->cols;
    lj_op *In = lj_op_identity(ctx, n), *K = lj_op_commutation(ctx, q, m), *Ip = lj_op_identity(ctx, p);
    const lj_op *three[3] = { In, K, Ip };
    lj_op *P = (In && K && Ip) ? lj_op_kron_n(ctx, 3, three) : NULL;
    lj_op_free(&In);
    lj_op_free(&K);
    lj_op_free(&Ip);
    lj_op *inner = !which ? lji_d_kron(ctx, lji_d_identity(ctx, m * n), lji_d_vec(d, e->b))
                          : lji_d_kron(ctx, lji_d_vec(d, e->a), lji_d_identity(ctx, p * q));
    return lji_d_mul(ctx, P, inner);
}

static lj_status transpose_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *a,
                                 const lj_expr *b, int64_t *r, int64_t *c)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(d);
    LJI_UNUSED(b);
    *r = a->cols;
    *c = a->rows;
    return LJ_OK;
}

static lj_status transpose_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B,
                                double *out)
{
    LJI_UNUSED(ctx);
    LJI_UNUSED(B);
    int64_t m = e->a->rows, n = e->a->cols;
    if (m == 1 || n == 1) { /* a vector's transpose has its numbers in the same order */
        memcpy(out, A, (size_t)(m * n) * sizeof *out);
        return LJ_OK;
    }
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) out[j + i * n] = A[i + j * m];
    return LJ_OK;
}

static lj_op *transpose_local(lji_dctx *d, const lj_expr *e, int which)
{
    LJI_UNUSED(which);
    return lj_op_commutation(d->ctx, e->a->rows, e->a->cols);
}

/* ---- adjoints (reverse mode, grad.c) ---------------------------------------------- */

/* a·b: G·b^T and a^T·G; a scalar factor s of s·M gets sum(G ∘ M) */
static void mul_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    const lj_expr *a = e->a, *b = e->b, *c = which ? b : a, *o = which ? a : b;
    if (lji_is_scalar(c) && !lji_is_scalar(o)) {
        lji_poly t;
        lji_poly_init(&t, e->rows, e->cols);
        lji_poly_hadamard(g, &t, 1.0, G, o, false);
        lji_poly_sum(g, out, 1.0, &t);
        lji_poly_free(&t);
    } else if (lji_is_scalar(o) && !lji_is_scalar(c))
        lji_poly_mul_expr(g, out, 1.0, G, o, true, false);
    else if (!which)
        lji_poly_mul_expr(g, out, 1.0, G, b, false, true);
    else
        lji_poly_mul_expr(g, out, 1.0, G, a, true, true);
}

static void transpose_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    LJI_UNUSED(e);
    LJI_UNUSED(which);
    lji_poly_transpose(g, out, 1.0, G);
}

/* A ⊗ B: the partial contractions of G with B (for A) and with A (for B) */
static void kron_adjoint(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out)
{
    lj_expr *ge = lji_poly_expr(g, G);
    lj_expr *x = ge ? lji_g_node(g, lji_expr_binary(g->ctx, which ? &lji_op_kron_cb : &lji_op_kron_ca, ge,
                                                    which ? e->a : e->b))
                    : NULL;
    if (x) lji_poly_add_expr(g, out, 1.0, x);
    lj_expr_free(&ge);
    lj_expr_free(&x);
}

/* The contractions: for G of the shape of A ⊗ B (ma·mb × na·nb),
 * kron_ca(G, B)[i, j] = Σ_{k,l} G[i·mb + k, j·nb + l]·B[k, l] (A's shape) and
 * kron_cb(G, A)[k, l] = Σ_{i,j} G[i·mb + k, j·nb + l]·A[i, j] (B's shape). */
static lj_status kc_shape(lj_context *ctx, const lji_opdef *d, const lj_expr *G, const lj_expr *f, int64_t *r,
                          int64_t *c)
{
    if (f->rows == 0 || f->cols == 0 || G->rows % f->rows || G->cols % f->cols)
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: " LJI_SHP " is not a Kronecker product with a " LJI_SHP " factor",
                         d->name, G->rows, G->cols, f->rows, f->cols);
    *r = G->rows / f->rows;
    *c = G->cols / f->cols;
    return LJ_OK;
}

/* the four index ranges (ma, na, mb, nb) of a contraction node */
static void kc_dims(const lj_expr *e, int64_t *ma, int64_t *na, int64_t *mb, int64_t *nb)
{
    bool ca = e->def == &lji_op_kron_ca;
    *ma = ca ? e->rows : e->b->rows;
    *na = ca ? e->cols : e->b->cols;
    *mb = ca ? e->b->rows : e->rows;
    *nb = ca ? e->b->cols : e->cols;
}

static lj_status kc_eval(lj_context *ctx, const lj_expr *e, const double *G, const double *F, double *out)
{
    LJI_UNUSED(ctx);
    int64_t ma, na, mb, nb;
    kc_dims(e, &ma, &na, &mb, &nb);
    bool ca = e->def == &lji_op_kron_ca;
    int64_t m = ma * mb;
    memset(out, 0, (size_t)(e->rows * e->cols) * sizeof *out);
    for (int64_t j = 0; j < na; j++)
        for (int64_t l = 0; l < nb; l++)
            for (int64_t i = 0; i < ma; i++)
                for (int64_t k = 0; k < mb; k++) {
                    double gv = G[(i * mb + k) + (j * nb + l) * m];
                    if (ca) out[i + j * ma] += gv * F[k + l * mb];
                    else out[k + l * mb] += gv * F[i + j * ma];
                }
    return LJ_OK;
}

/* Linear in each operand: w.r.t. G each of G's entries feeds one entry of
 * the result (a sparse selection with the other factor's values); w.r.t. the
 * factor, the dense matrix of G's entries. */
static lj_op *kc_local(lji_dctx *d, const lj_expr *e, int which)
{
    lj_context *ctx = d->ctx;
    int64_t ma, na, mb, nb;
    kc_dims(e, &ma, &na, &mb, &nb);
    bool ca = e->def == &lji_op_kron_ca;
    int64_t m = ma * mb, gn = m * na * nb, rn = e->rows * e->cols;
    const double *G = lji_d_val(d, e->a), *F = lji_d_val(d, e->b);
    if (!G || !F) return NULL;
    if (!which) {
        cholmod_sparse *s = lji_sparse_alloc(ctx, rn, gn, gn, "jacobian");
        if (!s) return NULL;
        int64_t *sp = s->p, *si = s->i;
        double *sx = s->x;
        for (int64_t q = 0; q < gn; q++) {
            int64_t gi = q % (m ? m : 1), gj = q / (m ? m : 1), i = gi / mb, k = gi % mb, j = gj / nb, l = gj % nb;
            sp[q] = q;
            si[q] = ca ? i + j * ma : k + l * mb;
            sx[q] = ca ? F[k + l * mb] : F[i + j * ma];
        }
        sp[gn] = gn;
        lj_op *r = lj_op_sparse(ctx, s, ca ? "∂kron_ca/∂G" : "∂kron_cb/∂G");
        cholmod_l_free_sparse(&s, &ctx->cc);
        return r;
    }
    int64_t fn = e->b->rows * e->b->cols;
    double *J = lji_calloc(ctx, (size_t)(rn * fn > 0 ? rn * fn : 1), sizeof *J);
    if (!J) {
        lji_nomem(ctx, "jacobian");
        return NULL;
    }
    for (int64_t j = 0; j < na; j++)
        for (int64_t l = 0; l < nb; l++)
            for (int64_t i = 0; i < ma; i++)
                for (int64_t k = 0; k < mb; k++) {
                    int64_t ra = i + j * ma, rb = k + l * mb;
                    double gv = G[(i * mb + k) + (j * nb + l) * m];
                    if (ca) J[ra + rb * rn] = gv; /* d out[ra] / d B[rb] */
                    else J[rb + ra * rn] = gv;    /* d out[rb] / d A[ra] */
                }
    lj_op *r = lj_op_dense(ctx, rn, fn, J, rn > 0 ? rn : 1, ca ? "∂kron_ca/∂B" : "∂kron_cb/∂A");
    free(J);
    return r;
}

static void transpose_write(lji_buf *b, const lj_expr *e)
{
    if (!b->math) { /* X'' in the plain syntax, as written */
        lji_expr_write(b, e->a, 5);
        lji_buf_puts(b, "'");
        return;
    }
    /* in a label a chain of transposes reads as its base, transposed when
     * the chain is odd: ((X^T)^T)^T is X^T, (X^T)^T is X (in the chain's
     * place, so bracketed as the transpose would be) */
    const lj_expr *x = e->a;
    int n = 1;
    for (; x->def == &lji_op_transpose && !x->pbase; x = x->a) n++;
    /* and a negation under it reads in front, (−x)^T as −x^T, unless the
     * product it is in writes that minus sign (drop_minus) */
    int negs = 0;
    for (; x->def == &lji_op_neg && !x->pbase; x = x->a) negs++;
    if (negs % 2 && !b->drop_minus) lji_buf_puts(b, "−");
    b->drop_minus = false;
    if (n % 2 && x->def == &lji_op_inv && !x->pbase) { /* A^{-T}; (X^T·X)^{-1}, its own transpose */
        lji_expr_write(b, x->a, 6);
        lji_buf_puts(b, lji_expr_symmetric(x->a) ? "^{-1}" : "^{-T}");
        return;
    }
    lji_expr_write(b, x, 5);
    if (n % 2) lji_buf_puts(b, "^T");
}

const lji_opdef lji_op_mul = { .name = "mul", .arity = 2, .level = 2, .sym = "*", .msym = "·",
                               .shape = mul_shape, .eval = mul_eval, .local = mul_local,
                               .reads = { LJI_READ_OTHER, LJI_READ_OTHER }, .sparse = LJI_SP_PRODUCT,
                               .sparse_eval = true, .sparse_local = true, .bin = lji_k_mul, .dbin = lji_dk_mul,
                               .adjoint = mul_adjoint };
const lji_opdef lji_op_kron = { .name = "kron", .arity = 2, .function = true, .level = 6, .sym = "⊗",
                                .shape = kron_shape, .eval = kron_eval, .local = kron_local,
                                .reads = { LJI_READ_OTHER, LJI_READ_OTHER }, .adjoint = kron_adjoint };
const lji_opdef lji_op_kron_ca = { .name = "kron_ca", .arity = 2, .function = true, .level = 6,
                                   .shape = kc_shape, .eval = kc_eval, .local = kc_local,
                                   .reads = { LJI_READ_OTHER, LJI_READ_OTHER } };
const lji_opdef lji_op_kron_cb = { .name = "kron_cb", .arity = 2, .function = true, .level = 6,
                                   .shape = kc_shape, .eval = kc_eval, .local = kc_local,
                                   .reads = { LJI_READ_OTHER, LJI_READ_OTHER } };
const lji_opdef lji_op_transpose = { .name = "transpose", .arity = 1, .level = 5, .shape = transpose_shape,
                                     .eval = transpose_eval, .local = transpose_local,
                                     .write = transpose_write, .sparse = LJI_SP_TRANSPOSE,
                                     .adjoint = transpose_adjoint };
