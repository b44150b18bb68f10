/* Sampled Kronecker products P_Ω·Diag(w)·(C ⊗ D).
 *
 * Row k reads entry (i[k], j[k]) of D X C^T (D m×p, C n×q, X p×q) and
 * scales it by w[k]: the Jacobian of a product sampled on a sparse pattern
 * (S .* (U V^T) w.r.t. U is P_S·Diag(vec S)·(V ⊗ I)). C and D are each an
 * identity or a dense block; a dense one is kept transposed, so that every
 * entry is one contiguous dot product of length p or q. Neither C ⊗ D nor
 * the m×n product D X C^T is ever formed: an apply costs O(nnz·r) plus at
 * most one GEMM with the small factor, its transpose the same with a
 * scatter. With both factors identities the node is a weighted selection of
 * entries of vec X. */
#include "config.h"
#include "op.h"
#include "../core/lji_blas.h"
#include <inttypes.h>

/* A factor the kind can hold: an identity, a dense block or its transpose. */
static bool plain(const lj_op *a)
{
    return lji_is_identity(a) || lji_is(a, &lji_kind_dense) ||
           (lji_is(a, &lji_kind_transpose) && lji_is(a->child[0], &lji_kind_dense));
}

/* The shape of the sampled node's parts. */
typedef struct {
    int64_t nz, m, p, n, q;
    const int64_t *ri, *cj;
    const double *w, *Dt, *Ct; /* Dt p×m, Ct q×n (NULL for identities) */
    bool dd, cd;               /* D, C dense (not identities) */
} parts;

static parts parts_of(const lj_op *J)
{
    const lj_op *C = J->child[0], *D = J->child[1];
    parts s = { .nz = J->rows, .m = D->rows, .p = D->cols, .n = C->rows, .q = C->cols };
    s.ri = J->idx;
    s.cj = J->idx + J->rows;
    s.w = J->data;
    const double *t = J->data2;
    s.dd = !lji_is_identity(D);
    s.cd = !lji_is_identity(C);
    if (s.dd) {
        s.Dt = t;
        if (t) t += s.m * s.p; /* NULL + 0 is undefined */
    }
    if (s.cd) s.Ct = t;
    return s;
}

static inline double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t l = 0; l < n; l++) s += a[l] * b[l];
    return s;
}

static inline void axpy(double c, const double *x, double *y, int64_t n)
{
    for (int64_t l = 0; l < n; l++) y[l] += c * x[l];
}

/* true: through T = D X (m×q, kept as its transpose) rather than X C^T */
static bool left_first(const parts *s)
{
    double c1 = (double)s->m * (double)s->p * (double)s->q + (double)s->nz * (double)s->q;
    double c2 = (double)s->p * (double)s->q * (double)s->n + (double)s->nz * (double)s->p;
    return c1 <= c2;
}

static inline double put(double alpha, double v, double beta, double y)
{
    return beta == 0.0 ? alpha * v : alpha * v + beta * y;
}

/* An r×c panel from the context's workspace (*tn entries), or NULL with
 * the error recorded. */
static double *workspace(lj_context *ctx, int64_t r, int64_t c, int64_t *tn)
{
    if (!lji_size_ok(r, c, tn)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "apply: sampled workspace " LJI_SHP " overflows", r, c);
        return NULL;
    }
    double *T = lji_work_push(ctx, *tn);
    if (!T) lji_nomem(ctx, "apply");
    return T;
}

/* y (nz) <- alpha·J x + beta·y for one vector x (p×q) */
static lj_status forward(lj_context *ctx, const parts *s, double alpha, const double *x, double beta, double *y)
{
    int64_t nz = s->nz;
    const double *w = s->w;
    if (!s->dd && !s->cd) {
        for (int64_t k = 0; k < nz; k++)
            y[k] = put(alpha * (w ? w[k] : 1.0), x[s->ri[k] + s->cj[k] * s->m], beta, y[k]);
        return LJ_OK;
    }
    if (s->dd && !s->cd) { /* D[i,:]·X[:, j] */
        for (int64_t k = 0; k < nz; k++)
            y[k] = put(alpha * (w ? w[k] : 1.0), dot(s->Dt + s->ri[k] * s->p, x + s->cj[k] * s->p, s->p), beta, y[k]);
        return LJ_OK;
    }
    /* rows of L (length r) for i, of R for j: L = X^T or (D X)^T, R = C^T,
     * or L = D^T, R = X C^T */
    bool lf = !s->dd || left_first(s);
    int64_t r = lf ? s->q : s->p, tn;
    lji_mark mk = lji_work_mark(ctx);
    double *T = workspace(ctx, r, lf ? s->m : s->n, &tn);
    if (!T) {
        lji_work_pop(ctx, mk);
        return ctx->status;
    }
    lj_status st = LJ_OK;
    const double *L, *R;
    if (!s->dd) { /* X^T, q×m */
        lji_transpose(s->m, s->q, 1.0, x, s->m, 0.0, T, s->q);
        L = T;
        R = s->Ct;
    } else if (lf) { /* (D X)^T = X^T D^T, q×m */
        st = lji_gemm(ctx, "apply", true, false, s->q, s->m, s->p, 1.0, x, s->p, s->Dt, s->p, 0.0, T, s->q);
        L = T;
        R = s->Ct;
    } else { /* X C^T, p×n */
        st = lji_gemm(ctx, "apply", false, false, s->p, s->n, s->q, 1.0, x, s->p, s->Ct, s->q, 0.0, T, s->p);
        L = s->Dt;
        R = T;
    }
    if (st == LJ_OK)
        for (int64_t k = 0; k < nz; k++)
            y[k] = put(alpha * (w ? w[k] : 1.0), dot(L + s->ri[k] * r, R + s->cj[k] * r, r), beta, y[k]);
    lji_work_pop(ctx, mk);
    return st;
}

/* out (p×q) <- alpha·J^T y + beta·out for one vector y (nz) */
static lj_status backward(lj_context *ctx, const parts *s, double alpha, const double *y, double beta, double *out)
{
    int64_t nz = s->nz;
    const double *w = s->w;
    if (!s->cd) { /* identity C: scatter into out directly */
        lji_scale_block(s->p * s->q, 1, beta, out, s->p * s->q);
        for (int64_t k = 0; k < nz; k++) {
            double c = alpha * (w ? w[k] : 1.0) * y[k];
            if (!s->dd) out[s->ri[k] + s->cj[k] * s->m] += c;
            else axpy(c, s->Dt + s->ri[k] * s->p, out + s->cj[k] * s->p, s->p);
        }
        return LJ_OK;
    }
    /* G^T = (W C)^T (q×m), W the m×n matrix of the entries w∘y; or, with D
     * dense and cheaper, H = D^T W (p×n) */
    bool lf = !s->dd || left_first(s);
    int64_t r = lf ? s->q : s->p, tn;
    lji_mark mk = lji_work_mark(ctx);
    double *T = workspace(ctx, r, lf ? s->m : s->n, &tn);
    if (!T) {
        lji_work_pop(ctx, mk);
        return ctx->status;
    }
    memset(T, 0, (size_t)tn * sizeof *T);
    for (int64_t k = 0; k < nz; k++) {
        double c = (w ? w[k] : 1.0) * y[k];
        if (lf) axpy(c, s->Ct + s->cj[k] * r, T + s->ri[k] * r, r);
        else axpy(c, s->Dt + s->ri[k] * r, T + s->cj[k] * r, r);
    }
    lj_status st = LJ_OK;
    if (!s->dd) /* out = alpha (G^T)^T + beta out */
        lji_transpose(s->q, s->m, alpha, T, s->q, beta, out, s->m);
    else if (lf) /* out = D^T G = Dt·(G^T)^T */
        st = lji_gemm(ctx, "apply", false, true, s->p, s->q, s->m, alpha, s->Dt, s->p, T, s->q, beta, out, s->p);
    else /* out = H C = H·Ct^T */
        st = lji_gemm(ctx, "apply", false, true, s->p, s->q, s->n, alpha, T, s->p, s->Ct, s->q, beta, out, s->p);
    lji_work_pop(ctx, mk);
    return st;
}

static lj_status sampled_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                               const double *X, int64_t ldx, double beta, double *Y, int64_t ldy)
{
    parts s = parts_of(J);
    lj_status st = LJ_OK;
    for (int64_t v = 0; v < k && st == LJ_OK; v++)
        st = trans ? backward(ctx, &s, alpha, X + v * ldx, beta, Y + v * ldy)
                   : forward(ctx, &s, alpha, X + v * ldx, beta, Y + v * ldy);
    return st;
}

static int64_t sampled_nnz(const lj_op *J, bool *exact)
{
    const lj_op *C = J->child[0], *D = J->child[1];
    int64_t per = 1, r;
    *exact = lji_mul_ok(lji_is_identity(D) ? 1 : D->cols, lji_is_identity(C) ? 1 : C->cols, &per) &&
             lji_mul_ok(J->rows, per, &r);
    return *exact ? r : INT64_MAX;
}

/* Row k of J has the entries w[k]·D[i,a]·C[j,b] at columns a + b·p: J^T is
 * built column by column (rows ascending), then transposed by CHOLMOD. */
static cholmod_sparse *sampled_to_sparse(lj_context *ctx, const lj_op *J)
{
    parts s = parts_of(J);
    bool exact;
    int64_t nz = sampled_nnz(J, &exact);
    if (!exact) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "to_sparse: the entries of a sampled " LJI_SHP " overflow", J->rows, J->cols);
        return NULL;
    }
    int64_t ra = s.dd ? s.p : 1, rb = s.cd ? s.q : 1;
    cholmod_sparse *T = lji_sparse_alloc(ctx, J->cols, J->rows, nz, "to_sparse");
    if (!T) return NULL;
    int64_t *tp = T->p, *ti = T->i, e = 0;
    double *tx = T->x;
    for (int64_t k = 0; k < s.nz; k++) {
        tp[k] = e;
        int64_t i = s.ri[k], j = s.cj[k];
        double wk = s.w ? s.w[k] : 1.0;
        for (int64_t b = 0; b < rb; b++) {
            int64_t cb = s.cd ? b : j;
            double vb = s.cd ? s.Ct[b + j * s.q] : 1.0;
            for (int64_t a = 0; a < ra; a++) {
                int64_t ca = s.dd ? a : i;
                double va = s.dd ? s.Dt[a + i * s.p] : 1.0;
                ti[e] = ca + cb * s.p;
                tx[e++] = wk * va * vb;
            }
        }
    }
    tp[s.nz] = e;
    if (!lji_alloc_gate(ctx)) {
        cholmod_l_free_sparse(&T, &ctx->cc);
        lji_nomem(ctx, "to_sparse");
        return NULL;
    }
    cholmod_sparse *R = cholmod_l_transpose(T, 1, &ctx->cc);
    cholmod_l_free_sparse(&T, &ctx->cc);
    if (!R) lji_cholmod_check(ctx, "to_sparse");
    return lji_sparse_canon(ctx, R, "to_sparse");
}

static void sampled_cost(const lj_op *J, double *flops, double *bytes)
{
    parts s = parts_of(J);
    double nz = (double)s.nz, m = (double)s.m, n = (double)s.n, p = (double)s.p, q = (double)s.q;
    double f, b = 24.0 * nz + 8.0 * p * q;
    if (!s.dd && !s.cd) f = nz;
    else if (!s.cd) f = 2.0 * nz * p, b += 8.0 * m * p;
    else if (!s.dd) f = 2.0 * nz * q, b += 8.0 * (n * q + m * q);
    else if (left_first(&s)) f = 2.0 * (m * p * q + nz * q), b += 8.0 * (m * p + n * q + m * q);
    else f = 2.0 * (p * q * n + nz * p), b += 8.0 * (m * p + n * q + p * n);
    *flops = f;
    *bytes = b;
}

static void sampled_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    const lj_op *C = J->child[0], *D = J->child[1];
    bool kron = !lji_is_identity(C) || !lji_is_identity(D);
    bool paren = kron && (where == LJI_AT_KRON || where == LJI_AT_TIGHT);
    lji_put_open(b, paren);
    if (J->label) lji_put_label(b, J->label, fmt);
    else {
        lji_buf_puts(b, fmt == LJ_PRINT_LATEX ? "P_{\\Omega}" : fmt == LJ_PRINT_PLAIN ? "P_Omega" : "P_Ω");
        if (J->data) lji_buf_printf(b, "%sDiag(w)", lji_sym_dot(fmt));
    }
    if (kron) {
        lji_buf_puts(b, lji_sym_dot(fmt));
        lji_buf_puts(b, "(");
        lji_print(b, C, fmt, LJI_AT_KRON);
        lji_buf_puts(b, lji_sym_kron(fmt));
        lji_print(b, D, fmt, LJI_AT_KRON);
        lji_buf_puts(b, ")");
    }
    lji_put_close(b, paren);
}

static bool sampled_equal(const lj_op *a, const lj_op *b)
{
    if (!!a->data != !!b->data) return false;
    if (memcmp(a->idx, b->idx, 2 * (size_t)a->rows * sizeof(int64_t))) return false;
    return !a->data || memcmp(a->data, b->data, (size_t)a->rows * sizeof(double)) == 0;
}

static lj_op *build(lj_context *ctx, int64_t nz, const int64_t *i, const int64_t *j, const double *w,
                    const lj_op *C, const lj_op *D, const char *label);

static lj_op *sampled_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    /* row k is the entry (i[k], j[k]): the entries r0..r1-1 */
    char *l = lji_rows_label(ctx, J->label, r0, r1, false);
    if (J->label && !l) return NULL;
    lj_op *r = build(ctx, r1 - r0, J->idx + r0, J->idx + J->rows + r0, J->data ? J->data + r0 : NULL, J->child[0],
                     J->child[1], l);
    free(l);
    return r;
}

const lji_kind lji_kind_sampled = {
    .id = LJ_OP_SAMPLED,
    .name = "sampled",
    .apply = sampled_apply,
    .to_sparse = sampled_to_sparse,
    .rows = sampled_rows,
    .nnz = sampled_nnz,
    .cost = sampled_cost,
    .print = sampled_print,
    .equal = sampled_equal,
};

/* X^T (X rows×cols, dense or a transposed dense) into t, cols×rows */
static void transposed_copy(const lj_op *X, double *t)
{
    if (lji_is(X, &lji_kind_dense)) {
        lji_transpose(X->rows, X->cols, 1.0, X->data, X->ld, 0.0, t, X->cols);
        return;
    }
    const lj_op *E = X->child[0]; /* X = E^T: X^T = E, cols×rows */
    for (int64_t c = 0; c < E->cols; c++) memcpy(t + c * E->rows, E->data + c * E->ld, (size_t)E->rows * sizeof(double));
}

/* The node with entries (i, j) and weights w over the factors C, D (checked
 * by the caller). */
static lj_op *build(lj_context *ctx, int64_t nz, const int64_t *i, const int64_t *j, const double *w,
                    const lj_op *C, const lj_op *D, const char *label)
{
    const char *op = "sampled";
    int64_t cols, dn = 0, cn = 0, tn;
    if (!lji_mul_ok(C->cols, D->cols, &cols) || !lji_size_ok(nz, 2, NULL) ||
        (!lji_is_identity(D) && !lji_mul_ok(D->rows, D->cols, &dn)) ||
        (!lji_is_identity(C) && !lji_mul_ok(C->rows, C->cols, &cn)) || !lji_size_ok(dn + cn, 1, &tn)) {
        lji_error(ctx, LJ_ERR_OVERFLOW, "%s: %" PRId64 " entries of (" LJI_SHP " ⊗ " LJI_SHP ") overflow", op, nz,
                  C->rows, C->cols, D->rows, D->cols);
        return NULL;
    }
    lj_op *J = lji_op_new(ctx, &lji_kind_sampled, nz, cols, 2, op);
    if (!J) return NULL;
    J->child[0] = lj_op_retain(C);
    J->child[1] = lj_op_retain(D);
    J->idx = lji_malloc(ctx, 2 * (size_t)(nz ? nz : 1) * sizeof(int64_t));
    J->data = w ? lji_malloc(ctx, (size_t)(nz ? nz : 1) * sizeof(double)) : NULL;
    J->data2 = tn ? lji_malloc(ctx, (size_t)tn * sizeof(double)) : NULL;
    J->label = label ? lji_strdup(ctx, label) : NULL;
    if (!J->idx || (w && !J->data) || (tn && !J->data2) || (label && !J->label)) {
        lj_op_free(&J);
        lji_nomem(ctx, op);
        return NULL;
    }
    if (nz) {
        memcpy(J->idx, i, (size_t)nz * sizeof(int64_t));
        memcpy(J->idx + nz, j, (size_t)nz * sizeof(int64_t));
        if (w) memcpy(J->data, w, (size_t)nz * sizeof(double));
    }
    if (dn) transposed_copy(D, J->data2);
    if (cn) transposed_copy(C, J->data2 + dn);
    lji_op_seal(J);
    return J;
}

lj_op *lj_op_sampled(lj_context *ctx, int64_t nnz, const int64_t *i, const int64_t *j, const double *w,
                     const lj_op *C, const lj_op *D, const char *label)
{
    const char *op = "sampled";
    const lj_op *cd[2] = { C, D };
    if (lji_check_args(ctx, op, 2, cd) != LJ_OK) return NULL;
    if (nnz < 0) {
        lji_error(ctx, LJ_ERR_SHAPE, "%s: bad number of entries %" PRId64, op, nnz);
        return NULL;
    }
    if (nnz > 0 && (!i || !j)) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL index array for %" PRId64 " entries", op, nnz);
        return NULL;
    }
    for (int f = 0; f < 2; f++)
        if (!plain(cd[f])) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: factor %s " LJI_SHP " must be an identity or a dense block, not %s",
                      op, f ? "D" : "C", cd[f]->rows, cd[f]->cols, cd[f]->kind->name);
            return NULL;
        }
    for (int64_t k = 0; k < nnz; k++)
        if (i[k] < 0 || i[k] >= D->rows || j[k] < 0 || j[k] >= C->rows) {
            lji_error(ctx, LJ_ERR_INVALID, "%s: entry %" PRId64 " at (%" PRId64 ",%" PRId64 ") is outside the "
                      LJI_SHP " product of (" LJI_SHP " ⊗ " LJI_SHP ")", op, k, i[k], j[k], D->rows, C->rows,
                      C->rows, C->cols, D->rows, D->cols);
            return NULL;
        }
    return build(ctx, nnz, i, j, w, C, D, label);
}

/* P_Ω·Diag(w)·(C ⊗ D)·(E ⊗ F) = P_Ω·Diag(w)·(CE ⊗ DF) when both products
 * are identities or dense blocks; NULL (no error) when they are not. */
lj_op *lji_sampled_times_kron(lj_context *ctx, const lj_op *x, const lj_op *y, bool *fail)
{
    *fail = false;
    const lj_op *C = x->child[0], *D = x->child[1], *E = y->child[0], *F = y->child[1];
    if (C->cols != E->rows || D->cols != F->rows) return NULL;
    const lj_op *ce[2] = { C, E }, *df[2] = { D, F };
    lj_op *CE = lj_op_compose(ctx, 2, ce), *DF = CE ? lj_op_compose(ctx, 2, df) : NULL, *r = NULL;
    if (CE && DF && plain(CE) && plain(DF)) {
        if (lji_tape_reaches(ctx, CE) || lji_tape_reaches(ctx, DF)) lji_tape_break(ctx, "a sampled product's factors");
        r = build(ctx, x->rows, x->idx, x->idx + x->rows, x->data, CE, DF, x->label);
        *fail = !r;
    } else
        *fail = !CE || !DF;
    lj_op_free(&CE);
    lj_op_free(&DF);
    return r;
}

/* Squared column norms: column a + b·p holds w[k]·D[i,a]·C[j,b] in row k. */
void lji_sampled_colnorms2(const lj_op *J, double *d)
{
    parts s = parts_of(J);
    int64_t ra = s.dd ? s.p : 1, rb = s.cd ? s.q : 1;
    memset(d, 0, (size_t)J->cols * sizeof *d);
    for (int64_t k = 0; k < s.nz; k++) {
        int64_t i = s.ri[k], j = s.cj[k];
        double w2 = s.w ? s.w[k] * s.w[k] : 1.0;
        for (int64_t b = 0; b < rb; b++) {
            double vb = s.cd ? s.Ct[b + j * s.q] : 1.0, cb = w2 * vb * vb;
            int64_t col = (s.cd ? b : j) * s.p;
            if (s.dd)
                for (int64_t a = 0; a < ra; a++) d[col + a] += cb * s.Dt[a + i * s.p] * s.Dt[a + i * s.p];
            else
                d[col + i] += cb;
        }
    }
}
