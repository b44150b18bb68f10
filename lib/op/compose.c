/* Composition ops[0]·ops[1]···ops[n-1], applied right to left through two
 * workspace panels, and the product rules of DESIGN.md, with the commutation
 * rules grown since (a Diag between two commutations, a commutation passing
 * a Diag, one entering a sum whose terms absorb it, and one swapping a
 * Kronecker product with a vector factor by itself). */
#include "config.h"
#include "op.h"
#include <ctype.h>
#include <inttypes.h>
#include <math.h>

/* Intermediate panels of a multi-vector apply are kept within a cache:
 * more vectors go in chunks, so that each factor's output is still in
 * cache when the next factor reads it. Each chunk reads the factors' own
 * data again, so the panel is the first-level cache's size when that data
 * is small (a chunk then costs what single applies cost), and the
 * second-level cache's when it is not (a large dense factor is read once
 * for many vectors). */
#define LJI_PANEL_L1 ((int64_t)1 << 12)
#define LJI_PANEL_L2 ((int64_t)1 << 16)
#define LJI_SMALL_DATA 1e6 /* bytes of one apply */

static lj_status compose_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k,
                               double alpha, const double *X, int64_t ldx, double beta, double *Y,
                               int64_t ldy)
{
    int n = J->nchild;
    int64_t maxd = 1;
    for (int i = 1; i < n; i++)
        if (J->child[i]->rows > maxd) maxd = J->child[i]->rows;
    int64_t chunk = (J->bytes <= LJI_SMALL_DATA ? LJI_PANEL_L1 : LJI_PANEL_L2) / maxd;
    if (chunk < 1) chunk = 1;
    if (k > chunk) {
        lj_status st = LJ_OK;
        for (int64_t j0 = 0; j0 < k && st == LJ_OK; j0 += chunk)
            st = compose_apply(ctx, J, trans, k - j0 < chunk ? k - j0 : chunk, alpha, X + j0 * ldx, ldx, beta,
                               Y + j0 * ldy, ldy);
        return st;
    }
    int64_t tn;
    if (!lji_size_ok(maxd, k, &tn))
        return lji_error(ctx, LJ_ERR_OVERFLOW, "apply: composition workspace overflows");
    lji_mark mk = lji_work_mark(ctx);
    double *buf[2] = { lji_work_push(ctx, tn), lji_work_push(ctx, tn) };
    if (!buf[0] || !buf[1]) {
        lji_work_pop(ctx, mk);
        return lji_nomem(ctx, "apply");
    }
    /* J x: apply ops[n-1] first; J^T x: apply ops[0]^T first */
    const double *in = X;
    int64_t ldin = ldx;
    lj_status st = LJ_OK;
    for (int s = 0; s < n && st == LJ_OK; s++) {
        const lj_op *F = trans ? J->child[s] : J->child[n - 1 - s];
        int64_t out = trans ? F->cols : F->rows;
        if (s == n - 1) {
            st = lji_apply(ctx, F, trans, k, alpha, in, ldin, beta, Y, ldy);
        } else {
            double *o = buf[s & 1];
            int64_t ldo = out > 0 ? out : 1;
            st = lji_apply(ctx, F, trans, k, 1.0, in, ldin, 0.0, o, ldo);
            in = o;
            ldin = ldo;
        }
    }
    lji_work_pop(ctx, mk);
    return st;
}

/* Estimated cost and nnz of multiplying sparse factors, for the chain order. */
typedef struct { double nnz, rows, cols; } chain_est;

static cholmod_sparse *multiply_range(lj_context *ctx, cholmod_sparse **S, int *split, int n,
                                      int i, int j)
{
    if (i == j) {
        cholmod_sparse *c = S[i];
        S[i] = NULL; /* ownership moves to the caller */
        return c;
    }
    int s = split[i * n + j];
    cholmod_sparse *L = multiply_range(ctx, S, split, n, i, s);
    if (!L) return NULL;
    cholmod_sparse *R = multiply_range(ctx, S, split, n, s + 1, j);
    if (!R) {
        cholmod_l_free_sparse(&L, &ctx->cc);
        return NULL;
    }
    cholmod_sparse *P = NULL;
    if (lji_alloc_gate(ctx)) {
        P = cholmod_l_ssmult(L, R, 0, 1, 1, &ctx->cc);
        if (!P) lji_cholmod_check(ctx, "to_sparse");
    } else
        lji_nomem(ctx, "to_sparse");
    if (!P && ctx->status == LJ_OK) lji_nomem(ctx, "to_sparse");
    cholmod_l_free_sparse(&L, &ctx->cc);
    cholmod_l_free_sparse(&R, &ctx->cc);
    return lji_sparse_canon(ctx, P, "to_sparse");
}

static bool is_monomial(const lj_op *a);
static int sole_other_factor(const lj_op *J);

/* A monomial factor M (square, one entry a column) as where each column's
 * entry lies and its value: M = Σ_c w[c]·e_{to[c]}·e_c^T. A permutation is
 * read directly; a Kronecker product or a transpose off M's own CSC (a
 * Diag, the identity, a commutation and multiples are composed directly
 * by compose_map). False where a column of that CSC holds no entry or
 * more than one (the caller then multiplies), or on failure (*failed). */
static bool monomial_map(lj_context *ctx, const lj_op *M, int64_t *to, double *w, bool *failed)
{
    if (lji_is(M, &lji_kind_perm)) { /* row i has its one at column idx[i] */
        for (int64_t i = 0; i < M->rows; i++) to[M->idx[i]] = i, w[M->idx[i]] = 1.0;
        return true;
    }
    cholmod_sparse *S = lji_to_sparse(ctx, M);
    if (!S) {
        *failed = true;
        return false;
    }
    const int64_t *p = S->p, *i = S->i;
    const double *x = S->x;
    bool one = true;
    for (int64_t c = 0; c < (int64_t)S->ncol && one; c++) {
        one = p[c + 1] - p[c] == 1;
        if (one) to[c] = i[p[c]], w[c] = x[p[c]];
    }
    cholmod_l_free_sparse(&S, &ctx->cc);
    return one;
}

/* The monomial M composed into a map of len pairs: each (t, s) becomes
 * (to[t], s·w[t]) for M's (to, w) of monomial_map. A Diag, the identity,
 * a commutation and multiples of them are applied directly; other kinds
 * through monomial_map into *to and *w (allocated here at first need,
 * big entries). False as monomial_map. */
static bool compose_map(lj_context *ctx, const lj_op *M, lji_map *map, int64_t len, int64_t **to, double **w,
                        int64_t big, bool *failed)
{
    if (lji_is(M, &lji_kind_diag)) {
        for (int64_t i = 0; i < len; i++) map[i].w *= M->data[map[i].to];
        return true;
    }
    if (lji_is_identity(M)) return true;
    if (lji_is(M, &lji_kind_commutation)) { /* column a + b·m at row b + a·n */
        const int64_t km = M->m, kn = M->n;
        for (int64_t i = 0; i < len; i++) {
            const int64_t t = map[i].to, b = t / km;
            map[i].to = b + (t - b * km) * kn;
        }
        return true;
    }
    if (lji_is(M, &lji_kind_scaled)) {
        if (!compose_map(ctx, M->child[0], map, len, to, w, big, failed)) return false;
        for (int64_t i = 0; i < len; i++) map[i].w *= M->alpha;
        return true;
    }
    if (!*to && !(*to = lji_malloc_large(ctx, (size_t)big * sizeof **to))) {
        *failed = true;
        return false;
    }
    if (!*w && !(*w = lji_malloc_large(ctx, (size_t)big * sizeof **w))) {
        *failed = true;
        return false;
    }
    if (!monomial_map(ctx, M, *to, *w, failed)) return false;
    const int64_t *t = *to;
    const double *v = *w;
    for (int64_t i = 0; i < len; i++) map[i] = (lji_map){ t[map[i].to], map[i].w * v[map[i].to] };
    return true;
}

/* L_1···L_a·X·R_1···R_b with monomial L and R (Diag, permutation,
 * commutation and Kronecker products of them) and any X: X's pattern
 * written once, each entry moved to its row and column and scaled as it
 * is written, instead of a product through cholmod_l_ssmult per factor.
 * X is read in place where it is a sparse leaf; a Kronecker product is
 * written with its columns in place and scaled (lji_kron_to_sparse_mapped),
 * and rows that move are then moved in place; another X is materialised,
 * and rewritten in place where no column moves. A column whose rows moved is
 * sorted again as soon as it is written, in place. The rows' map is read
 * at random (X's rows, in any order): it is packed to what the rows need
 * (their scales alone, or 32-bit rows), so that a large X's entries touch
 * as few of its cache lines as can be. NULL with *handled false where a
 * factor is not of that form (the caller multiplies). */
static cholmod_sparse *monomial_sides_to_sparse(lj_context *ctx, const lj_op *J, int x, bool *handled)
{
    const char *op = "to_sparse";
    const int n = J->nchild;
    const lj_op *X = J->child[x];
    const int64_t m = X->rows, nc = X->cols, big = (m > nc ? m : nc) + 1;
    *handled = true;
    /* the maps of the sides that have factors */
    lji_map *rm = x > 0 ? lji_malloc_large(ctx, (size_t)(m ? m : 1) * sizeof *rm) : NULL;
    lji_map *cm = x < n - 1 ? lji_malloc_large(ctx, (size_t)(nc ? nc : 1) * sizeof *cm) : NULL;
    int64_t *to = NULL;
    double *w = NULL;
    cholmod_sparse *own = NULL, *R = NULL;
    int64_t *swi = NULL;
    double *swx = NULL;
    bool failed = false, rows_moved = false, rows_scaled = false, cols_moved = false, cols_scaled = false;
    if ((x > 0 && !rm) || (x < n - 1 && !cm)) {
        lji_nomem(ctx, op);
        goto done;
    }
    /* X's row i ends in row rm[i].to, times rm[i].w: the left factors from
     * the one next to X outwards (L·Y moves Y's row c to to[c], times w[c]) */
    if (rm) {
        for (int64_t i = 0; i < m; i++) rm[i] = (lji_map){ i, 1.0 };
        for (int k = x - 1; k >= 0; k--)
            if (!compose_map(ctx, J->child[k], rm, m, &to, &w, big, &failed)) goto declined;
        for (int64_t i = 0; i < m; i++) rows_moved |= rm[i].to != i, rows_scaled |= rm[i].w != 1.0;
    }
    /* the result's column c is X's column cm[c].to, times cm[c].w: the
     * right factors from the outermost inwards (Y·R's column c is Y's
     * column to[c], times w[c]) */
    if (cm) {
        for (int64_t c = 0; c < nc; c++) cm[c] = (lji_map){ c, 1.0 };
        for (int k = n - 1; k > x; k--)
            if (!compose_map(ctx, J->child[k], cm, nc, &to, &w, big, &failed)) goto declined;
        for (int64_t c = 0; c < nc; c++) cols_moved |= cm[c].to != c, cols_scaled |= cm[c].w != 1.0;
    }
    free(to);
    free(w);
    to = NULL, w = NULL;
    /* the map packed over itself to what the rows need, each packed value
     * stored by memcpy (byte stores, which may alias the pairs still to be
     * read: nothing is reordered across them) */
    double *rw = (double *)(void *)rm;
    int32_t *rto32 = (int32_t *)(void *)rm;
    const bool narrow = rows_moved && !rows_scaled && m <= INT32_MAX;
    if (!rows_moved && rows_scaled)
        for (int64_t i = 0; i < m; i++) {
            const double v = rm[i].w;
            memcpy((char *)rm + (size_t)i * sizeof v, &v, sizeof v);
        }
    if (narrow)
        for (int64_t i = 0; i < m; i++) {
            const int32_t v = (int32_t)rm[i].to;
            memcpy((char *)rm + (size_t)i * sizeof v, &v, sizeof v);
        }
    const cholmod_sparse *V; /* X's CSC */
    if (lji_is(X, &lji_kind_kron) && (cols_moved || cols_scaled || !rows_moved)) {
        /* a Kronecker product written with its columns in place and its
         * rows scaled (where they stay): the result, or X·R_1···R_b for
         * the pass below to move its rows in place */
        own = lji_kron_to_sparse_mapped(ctx, X, rows_moved || !rows_scaled ? NULL : rw,
                                        cols_moved || cols_scaled ? cm : NULL);
        if (!own || !rows_moved) {
            R = own, own = NULL;
            goto done;
        }
        free(cm);
        cm = NULL, cols_moved = cols_scaled = false;
        V = own;
    } else if (lji_is(X, &lji_kind_sparse))
        V = &X->sp;
    else if (!(V = own = lji_to_sparse(ctx, X)))
        goto done;
    const int64_t *vp = V->p, *vi = V->i;
    const double *vx = V->x;
    R = own && !cols_moved ? own : lji_sparse_alloc(ctx, J->rows, J->cols, vp[nc], op);
    if (!R) goto done;
    if (R == own) own = NULL;
    int64_t *p = R->p, *ii = R->i, q = 0;
    double *xx = R->x;
    if (rows_moved) { /* room to sort X's longest column */
        int64_t longest = 0;
        for (int64_t c = 0; c < nc; c++)
            if (vp[c + 1] - vp[c] > longest) longest = vp[c + 1] - vp[c];
        if (longest > 32) {
            swi = lji_malloc_large(ctx, (size_t)longest * sizeof *swi);
            swx = lji_malloc_large(ctx, (size_t)longest * sizeof *swx);
            if (!swi || !swx) {
                lji_nomem(ctx, op);
                cholmod_l_free_sparse(&R, &ctx->cc);
                goto done;
            }
        }
    }
    for (int64_t c = 0; c < nc; c++) {
        const int64_t f = cm ? cm[c].to : c, e = vp[f + 1];
        const double s = cm ? cm[c].w : 1.0;
        p[c] = q;
        if (rows_moved) {
            if (narrow)
                for (int64_t t = vp[f]; t < e; t++, q++) {
                    const int64_t to_row = rto32[vi[t]]; /* read first: in place, ii is vi */
                    ii[q] = to_row;
                    xx[q] = vx[t] * s;
                }
            else
                for (int64_t t = vp[f]; t < e; t++, q++) {
                    const lji_map r = rm[vi[t]];
                    ii[q] = r.to;
                    xx[q] = r.w * vx[t] * s;
                }
            /* sorted again while in cache */
            lji_sort_column(ii + p[c], xx + p[c], q - p[c], swi, swx);
        } else if (rows_scaled) {
            if (ii != vi)
                for (int64_t t = vp[f]; t < e; t++, q++) {
                    const int64_t i = vi[t];
                    ii[q] = i;
                    xx[q] = rw[i] * vx[t] * s;
                }
            else
                for (int64_t t = vp[f]; t < e; t++, q++) xx[q] = rw[vi[t]] * vx[t] * s;
        } else if (cols_scaled || ii != vi) {
            if (ii != vi) memcpy(ii + q, vi + vp[f], (size_t)(e - vp[f]) * sizeof *ii);
            for (int64_t t = vp[f]; t < e; t++, q++) xx[q] = vx[t] * s;
        } else
            q = e; /* in place, nothing moves or scales */
    }
    p[nc] = q;
    R->sorted = 1;
    goto done;
declined:
    if (failed && ctx->status == LJ_OK) lji_nomem(ctx, op);
    *handled = failed;
done:
    free(swi);
    free(swx);
    cholmod_l_free_sparse(&own, &ctx->cc);
    free(rm);
    free(cm);
    free(to);
    free(w);
    return R;
}

/* Materialise each factor, then multiply in the order that the matrix-chain
 * recurrence finds cheapest, with flops(AB) ≈ nnz(A)·nnz(B)/inner. */
static cholmod_sparse *compose_to_sparse(lj_context *ctx, const lj_op *J)
{
    int n = J->nchild;
    /* Diag·(A ⊗ B), (A ⊗ B)·Diag and Diag·(A ⊗ B)·Diag (seed 000's
     * (I ⊗ W)·Diag(vec B)): the scalings written with the Kronecker
     * product, in one pass, with no intermediate matrix */
    if (n >= 2 && n <= 3) {
        const lj_op *D0 = lji_is(J->child[0], &lji_kind_diag) ? J->child[0] : NULL;
        const lj_op *D1 = lji_is(J->child[n - 1], &lji_kind_diag) ? J->child[n - 1] : NULL;
        const lj_op *K = J->child[D0 ? 1 : 0];
        if (lji_is(K, &lji_kind_kron) && (D0 != NULL) + (D1 != NULL) + 1 == n)
            return lji_kron_to_sparse_scaled(ctx, K, D0 ? D0->data : NULL, D1 ? D1->data : NULL);
    }
    /* monomial factors round one other: its pattern moved and scaled */
    int other = sole_other_factor(J);
    if (other >= 0 && n >= 2) {
        bool handled;
        cholmod_sparse *R = monomial_sides_to_sparse(ctx, J, other, &handled);
        if (handled) return R;
    }
    cholmod_sparse **S = lji_calloc(ctx, (size_t)n, sizeof *S);
    double *cost = lji_calloc(ctx, (size_t)n * (size_t)n, sizeof *cost);
    chain_est *est = lji_calloc(ctx, (size_t)n * (size_t)n, sizeof *est);
    int *split = lji_calloc(ctx, (size_t)n * (size_t)n, sizeof *split);
    cholmod_sparse *R = NULL;
    if (!S || !cost || !est || !split) {
        lji_nomem(ctx, "to_sparse");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        S[i] = lji_to_sparse(ctx, J->child[i]);
        if (!S[i]) goto done;
        est[i * n + i] = (chain_est){ (double)((int64_t *)S[i]->p)[S[i]->ncol],
                                      (double)S[i]->nrow, (double)S[i]->ncol };
    }
    for (int len = 2; len <= n; len++)
        for (int i = 0; i + len - 1 < n; i++) {
            int j = i + len - 1;
            double best = INFINITY;
            for (int s = i; s < j; s++) {
                chain_est l = est[i * n + s], r = est[(s + 1) * n + j];
                double inner = l.cols > 0 ? l.cols : 1;
                double f = l.nnz * r.nnz / inner;
                double c = cost[i * n + s] + cost[(s + 1) * n + j] + f;
                if (c < best) {
                    best = c;
                    split[i * n + j] = s;
                    double full = l.rows * r.cols;
                    est[i * n + j] = (chain_est){ f < full ? f : full, l.rows, r.cols };
                }
            }
            cost[i * n + j] = best;
        }
    R = multiply_range(ctx, S, split, n, 0, n - 1);
done:
    if (S)
        for (int i = 0; i < n; i++) cholmod_l_free_sparse(&S[i], &ctx->cc);
    free(S);
    free(cost);
    free(est);
    free(split);
    return R;
}

/* Square operators with exactly one entry in each row and column (a
 * permutation times a diagonal): multiplying by one moves entries of the
 * other factor without merging them. Kronecker products, transposes and
 * multiples of such operators are such operators. */
static bool is_monomial(const lj_op *a)
{
    if (lji_is(a, &lji_kind_diag) || lji_is(a, &lji_kind_perm) || lji_is(a, &lji_kind_commutation) ||
        lji_is_identity(a))
        return true;
    if (lji_is(a, &lji_kind_kron)) return is_monomial(a->child[0]) && is_monomial(a->child[1]);
    if (lji_is(a, &lji_kind_scaled) || lji_is(a, &lji_kind_transpose)) return is_monomial(a->child[0]);
    return false;
}

/* The one factor of J that is not monomial: its index, -1 where every
 * factor is monomial, -2 where several are not. */
static int sole_other_factor(const lj_op *J)
{
    int other = -1;
    for (int i = 0; i < J->nchild; i++)
        if (!is_monomial(J->child[i])) {
            if (other >= 0) return -2;
            other = i;
        }
    return other;
}

static int64_t compose_nnz(const lj_op *J, bool *exact)
{
    int other = sole_other_factor(J);
    if (other == -1) {
        *exact = true;
        return J->rows;
    }
    if (other >= 0) /* monomial factors move entries, they do not merge them */
        return lji_nnz(J->child[other], exact);
    /* bound: nnz(AB) <= min(nnz(A)·maxcol..., rows·cols) */
    *exact = false;
    bool e;
    int64_t bound = lji_nnz(J->child[0], &e);
    for (int i = 1; i < J->nchild; i++) {
        int64_t b = lji_nnz(J->child[i], &e), r;
        if (!lji_mul_ok(bound, b, &r)) return INT64_MAX;
        bound = r;
    }
    return bound;
}

/* a is a vector of ones: with `row`, 1_n^T (the transpose of a column of
 * ones, or the row of ones over its numbers, lji_d_opval_transposed);
 * else 1_n, a column */
static bool is_ones(const lj_op *a, bool row)
{
    const lj_op *c = row && lji_is(a, &lji_kind_transpose) ? a->child[0] : a;
    bool bare_row = row && c == a; /* a row of its own, labelled 1_n^T */
    if (!lji_is(c, &lji_kind_dense) || (bare_row ? c->rows : c->cols) != 1 || !c->label || strncmp(c->label, "1_", 2))
        return false;
    if (bare_row && (c->ld != 1 || strcmp(c->label + strlen(c->label) - 2, "^T"))) return false;
    if (!row && strchr(c->label, '^')) return false; /* 1_n, not a row's label */
    for (int64_t i = 0; i < c->rows * c->cols; i++)
        if (c->data[i] != 1.0) return false;
    return true;
}

static bool is_ones_row(const lj_op *a) { return is_ones(a, true); }
static bool is_ones_col(const lj_op *a) { return is_ones(a, false); }

const char *lji_label_number(const char *label, double *k)
{
    *k = 1;
    if (lji_label_is_sum(label)) return label; /* 2·a + b is no number times a label */
    size_t m = lji_label_negated_term(label);
    const char *dot = "·";
    double f;
    size_t w = lji_label_number_at(label + m, strlen(label + m), &f); /* 2·x, (1/3)·x */
    if (!w || strncmp(label + m + w, dot, strlen(dot))) return label;
    *k = m ? -f : f;
    return label + m + w + strlen(dot);
}

/* ---- the trace's row before Kronecker products, printed as the Cookbook
 * writes the derivative of a trace ---- */

/* a is (vec I_n)^T: the transpose of a sparse column of ones at the
 * diagonal's positions of an n×n matrix, labelled so (tr's local J) */
static bool is_trace_row(const lj_op *a)
{
    if (!lji_is(a, &lji_kind_transpose)) return false;
    const lj_op *c = a->child[0];
    if (!lji_is(c, &lji_kind_sparse) || c->cols != 1 || !c->label || strncmp(c->label, "vec I_", 6)) return false;
    char *end;
    long long n = strtoll(c->label + 6, &end, 10);
    if (*end || n <= 0 || n > 3037000499LL || n * n != c->rows) return false;
    const int64_t *p = c->sp.p, *i = c->sp.i;
    const double *x = c->sp.x;
    if (p[1] - p[0] != n) return false;
    for (int64_t k = 0; k < n; k++)
        if (i[p[0] + k] != k + k * n || x[p[0] + k] != 1.0) return false;
    return true;
}

/* an identity, or a labelled dense block or its transpose */
static bool labelled_factor(const lj_op *F)
{
    if (lji_is(F, &lji_kind_identity)) return true;
    const lj_op *c = lji_is(F, &lji_kind_transpose) ? F->child[0] : F;
    return lji_is(c, &lji_kind_dense) && c->label;
}

/* T is P ⊗ Q of two such factors (*K NULL), or (P ⊗ Q)·K_{m,n} (*K the
 * commutation) */
static bool trace_kron_term(const lj_op *T, const lj_op **kr, const lj_op **K)
{
    *K = NULL;
    if (lji_is(T, &lji_kind_compose) && T->nchild == 2 && lji_is(T->child[1], &lji_kind_commutation)) {
        *K = T->child[1];
        T = T->child[0];
    }
    *kr = T;
    return lji_is(T, &lji_kind_kron) && T->nchild == 2 && labelled_factor(T->child[0]) &&
           labelled_factor(T->child[1]);
}

/* F's label (transposed where t), as a new string: "" for an identity */
static char *factor_label(lj_context *ctx, const lj_op *F, bool t)
{
    if (lji_is(F, &lji_kind_identity)) return lji_strdup(ctx, "");
    const lj_op *c = F;
    if (lji_is(F, &lji_kind_transpose)) c = F->child[0], t = !t;
    if (!t) return lji_strdup(ctx, c->label);
    char tbuf[64], *own = NULL;
    const char *l = lji_label_transposed_to(ctx, c->label, tbuf, sizeof tbuf, &own);
    char *r = l ? lji_strdup(ctx, l) : NULL;
    free(own);
    return r;
}

/* whether op (" ∘ ") stands in l outside all brackets */
static bool top_level_has(const char *l, const char *op)
{
    size_t n = strlen(op);
    int depth = 0;
    for (const char *s = l; *s; s++) {
        if (*s == '(' || *s == '{') depth++;
        else if (*s == ')' || *s == '}') depth--;
        else if (depth == 0 && !strncmp(s, op, n)) return true;
    }
    return false;
}

/* l has at its top level an operator other than a product's ·, which
 * binds no tighter than · does: ∘, ⊘, ⊗ or / */
static bool not_product(const char *l)
{
    return top_level_has(l, " ∘ ") || top_level_has(l, " ⊘ ") || top_level_has(l, " ⊗ ") || top_level_has(l, "/");
}

/* a·b·c as a new label, an identity's "" dropping out: a product's
 * wrapping parentheses go; a sum, or a minus sign after the first
 * factor, is bracketed */
static char *label_product3(lj_context *ctx, const char *a, const char *b, const char *c)
{
    lji_buf o;
    lji_buf_init(&o, ctx);
    const char *f[3] = { a, b, c };
    for (int i = 0, k = 0; i < 3; i++) {
        const char *l = f[i];
        if (!l) {
            lji_buf_discard(&o);
            return NULL;
        }
        if (!*l) continue;
        if (k++) lji_buf_puts(&o, "·");
        size_t n = strlen(l);
        bool minus = lji_label_minus_len(l) || (lji_label_is_wrapped(l) && lji_label_minus_len(l + 1));
        bool hadamard = not_product(l); /* (A ∘ B)·C, (M·y ⊘ y)·x^T */
        if (lji_label_is_wrapped(l) && !lji_label_is_sum_inside(l) && !(minus && k > 1) && !not_product(l + 1))
            lji_buf_putn(&o, l + 1, n - 2);
        else if (!lji_label_is_wrapped(l) && (lji_label_is_sum(l) || (minus && k > 1) || hadamard)) {
            lji_buf_puts(&o, "(");
            lji_buf_puts(&o, l);
            lji_buf_puts(&o, ")");
        } else
            lji_buf_puts(&o, l);
    }
    return lji_buf_finish(&o, "print");
}

/* The row so far: (vec C)^T with C and C^T as labels ("" for I_n, the
 * trace's own row); or a vector's transpose v^T (c the column's label v,
 * ct the row's), which reads as (vec C)^T for C the column v or the row
 * v^T, as the next factor's shape says; or 1^T (no labels), C the matrix
 * of ones of that shape. */
enum { ROW_MATRIX, ROW_VECTOR, ROW_ONES };
typedef struct {
    int kind;
    char *c, *ct;
} trace_row;

/* C and C^T for the term P ⊗ Q after the row (C is Q's rows × P's rows),
 * new strings (NULL for no memory); false where a vector's row is neither
 * a column nor a row of that shape */
static bool row_matrix(lj_context *ctx, const trace_row *r, const lj_op *kr, char **c, char **ct)
{
    int64_t pr = kr->child[0]->rows, qr = kr->child[1]->rows;
    *c = *ct = NULL;
    if (r->kind == ROW_ONES) {
        lji_buf a, b;
        lji_buf_init(&a, ctx);
        lji_buf_init(&b, ctx);
        if (pr == 1 || qr == 1) { /* a column or a row of ones */
            lji_buf_printf(&a, pr == 1 ? "1_%" PRId64 : "1_%" PRId64 "^T", pr == 1 ? qr : pr);
            lji_buf_printf(&b, pr == 1 ? "1_%" PRId64 "^T" : "1_%" PRId64, pr == 1 ? qr : pr);
        } else {
            lji_buf_printf(&a, "1_{%" PRId64 "×%" PRId64 "}", qr, pr);
            lji_buf_printf(&b, "1_{%" PRId64 "×%" PRId64 "}", pr, qr);
        }
        *c = lji_buf_finish(&a, "print");
        *ct = lji_buf_finish(&b, "print");
        return true;
    }
    bool swap = false;
    if (r->kind == ROW_VECTOR) {
        if (pr != 1 && qr != 1) return false;
        swap = pr != 1; /* the row v^T, not the column v */
    }
    const char *x = swap ? r->ct : r->c, *y = swap ? r->c : r->ct;
    *c = x ? lji_strdup(ctx, x) : NULL;
    *ct = y ? lji_strdup(ctx, y) : NULL;
    return true;
}

/* (vec C)^T·(P ⊗ Q) is (vec(Q^T·C·P))^T, and (vec C)^T·(P ⊗ Q)·K_{m,n},
 * where Q^T·C·P is n×m, (vec(P^T·C^T·Q))^T: the row after a term, a new
 * one (NULL members for no memory) */
static trace_row trace_step(lj_context *ctx, const char *c, const char *ct, const lj_op *kr, const lj_op *K)
{
    const lj_op *P = kr->child[0], *Q = kr->child[1];
    char *ps = factor_label(ctx, P, false), *pt = factor_label(ctx, P, true);
    char *qs = factor_label(ctx, Q, false), *qt = factor_label(ctx, Q, true);
    char *m = label_product3(ctx, qt, c, ps), *mt = label_product3(ctx, pt, ct, qs);
    free(ps), free(pt), free(qs), free(qt);
    trace_row n = { ROW_MATRIX, K ? mt : m, K ? m : mt };
    return n;
}

/* the row folded past the term P ⊗ Q (and K): false where it does not
 * fold; *r the new row, the old one freed */
static bool row_fold(lj_context *ctx, trace_row *r, const lj_op *kr, const lj_op *K)
{
    char *c, *ct;
    if (!row_matrix(ctx, r, kr, &c, &ct)) return false;
    trace_row n = c && ct ? trace_step(ctx, c, ct, kr, K) : (trace_row){ ROW_MATRIX, NULL, NULL };
    free(c), free(ct), free(r->c), free(r->ct);
    *r = n;
    return true;
}

static bool row_ok(const trace_row *r)
{
    return r->kind == ROW_ONES || (r->c && r->ct);
}

/* K_{m,n} after (P ⊗ Q) takes the row to its transpose where Q^T·C·P is n×m */
static bool trace_k_fits(const lj_op *kr, const lj_op *K)
{
    return K->n == kr->child[1]->cols && K->m == kr->child[0]->cols;
}

/* the row's label, "(vec C)^T" or "(vec(C))^T", new */
static char *trace_row_label(lj_context *ctx, const char *c)
{
    if (!c) return NULL;
    lji_buf v;
    lji_buf_init(&v, ctx);
    lji_buf_printf(&v, lji_label_is_atomic(c) && c[0] != '(' ? "vec %s" : "vec(%s)", c);
    char *vl = lji_buf_finish(&v, "print"), tbuf[64], *own = NULL;
    const char *t = vl ? lji_label_transposed_to(ctx, vl, tbuf, sizeof tbuf, &own) : NULL;
    char *r = t ? lji_strdup(ctx, t) : NULL;
    free(own);
    free(vl);
    return r;
}

/* a is a row (vec C)^T: the transpose of a dense column labelled "vec C"
 * or "vec(C)" (the derivative of logdet, det, a squared norm); C's label
 * into *c, new (NULL for no memory) */
static bool vec_label_matrix(lj_context *ctx, const char *label, char **c);

static bool vec_row_matrix(lj_context *ctx, const lj_op *a, char **c)
{
    if (!lji_is(a, &lji_kind_transpose)) return false;
    const lj_op *v = a->child[0];
    return lji_is(v, &lji_kind_dense) && v->cols == 1 && v->label && vec_label_matrix(ctx, v->label, c);
}

/* label is "vec C" or "vec(C)": C into *c, new (NULL for no memory) */
static bool vec_label_matrix(lj_context *ctx, const char *label, char **c)
{
    if (strncmp(label, "vec", 3)) return false;
    const char *l = label + 3;
    size_t n = strlen(l);
    if (l[0] == ' ' && n > 1) { /* "vec X^{-T}"; "vec A ∘ exp(vec X)" is not vec of one matrix */
        if (!lji_label_is_atomic(l + 1)) return false;
        *c = lji_strdup(ctx, l + 1);
        return true;
    }
    if (l[0] != '(' || n < 3 || l[n - 1] != ')') return false;
    int depth = 0; /* nor is "vec(A)·(B)" */
    for (size_t k = 0; k + 1 < n; k++) {
        depth += l[k] == '(' ? 1 : l[k] == ')' ? -1 : 0;
        if (!depth) return false;
    }
    *c = lji_strndup(ctx, l + 1, n - 2);
    return true;
}

/* a is a vector's transpose v^T: a dense row, or the transpose of a dense
 * column, labelled (not "vec …", not ones); the column's label v and the
 * row's into *v and *vt, new (NULL for no memory) */
static bool vector_row(lj_context *ctx, const lj_op *a, char **v, char **vt)
{
    const lj_op *d = lji_is(a, &lji_kind_transpose) ? a->child[0] : a;
    bool column = d != a;
    if (!lji_is(d, &lji_kind_dense) || !d->label || (column ? d->cols : d->rows) != 1 || !strncmp(d->label, "vec", 3))
        return false;
    char tbuf[64], *own = NULL;
    const char *t = lji_label_transposed_to(ctx, d->label, tbuf, sizeof tbuf, &own);
    char *l = lji_strdup(ctx, d->label), *tl = t ? lji_strdup(ctx, t) : NULL;
    free(own);
    *v = column ? l : tl;
    *vt = column ? tl : l;
    return true;
}

/* Children [i, …) of J from the trace's row (vec I_n)^T on, folded as the
 * Cookbook writes the derivative of a trace: each Kronecker product P ⊗ Q
 * of identities and labelled dense blocks (and a commutation after it)
 * taken into the row, (vec I)^T·(P ⊗ Q) = (vec(Q^T·P))^T, and a last sum
 * of such terms into a sum of rows, equal rows gathered: J of tr(A·X)
 * reads (vec A^T)^T, of tr(X^T·X) 2·(vec X)^T, of tr(X^{-1}·A)
 * −(vec(X^{-T}·A^T·X^{-T}))^T. Printed, the index of the last child
 * taken; -1 (nothing printed) where no child after the row folds. The
 * operator keeps its factors. */
static int put_trace_chain(lji_buf *b, const lj_op *J, int i, lj_print_format fmt, bool alone)
{
    lj_context *ctx = b->ctx;
    trace_row r = { ROW_MATRIX, NULL, NULL };
    const lj_op *a = J->child[i], *d = i + 2 < J->nchild ? J->child[i + 1] : NULL;
    int j = i + 1, last = -1;
    double rowk = 1; /* a number in front of the row */
    bool ones_diag = d && is_ones_row(a) && lji_is(d, &lji_kind_diag) && d->label &&
                     lji_is(J->child[i + 2], &lji_kind_kron);
    const char *dl = ones_diag ? lji_label_number(d->label, &rowk) : NULL;
    if (ones_diag && vec_label_matrix(ctx, dl, &r.c)) { /* 1^T·Diag(k·vec C) is the row k·(vec C)^T */
        char tbuf[64], *own = NULL;
        const char *t = r.c ? lji_label_transposed_to(ctx, r.c, tbuf, sizeof tbuf, &own) : NULL;
        r.ct = t ? lji_strdup(ctx, t) : NULL;
        free(own);
        j = i + 2;
    } else if (ones_diag && !strstr(d->label, "vec")) { /* 1^T·Diag(d) is the row d^T */
        rowk = 1;
        char tbuf[64], *own = NULL;
        const char *t = lji_label_transposed_to(ctx, d->label, tbuf, sizeof tbuf, &own);
        r.kind = ROW_VECTOR;
        r.c = lji_strdup(ctx, d->label);
        r.ct = t ? lji_strdup(ctx, t) : NULL;
        free(own);
        j = i + 2;
    } else if (is_trace_row(a)) {
        r.c = lji_strdup(ctx, "");
        r.ct = lji_strdup(ctx, "");
    } else if (is_ones_row(a)) {
        r.kind = ROW_ONES;
    } else if (vec_row_matrix(ctx, a, &r.c)) { /* (vec C)^T: C^T too */
        char tbuf[64], *own = NULL;
        const char *t = r.c ? lji_label_transposed_to(ctx, r.c, tbuf, sizeof tbuf, &own) : NULL;
        r.ct = t ? lji_strdup(ctx, t) : NULL;
        free(own);
    } else if (vector_row(ctx, a, &r.c, &r.ct)) {
        r.kind = ROW_VECTOR;
    } else
        return -1;
    while (j < J->nchild && row_ok(&r)) {
        const lj_op *T = J->child[j], *K = j + 1 < J->nchild ? J->child[j + 1] : NULL, *kr, *K0;
        if (!lji_is(T, &lji_kind_kron) || !trace_kron_term(T, &kr, &K0)) break;
        if (K && !(lji_is(K, &lji_kind_commutation) && trace_k_fits(kr, K))) K = NULL;
        if (!row_fold(ctx, &r, kr, K)) break;
        last = j = K ? j + 2 : j + 1;
        last--;
    }
    /* a sum of terms last: a sum of rows */
    const lj_op *S = j == J->nchild - 1 ? J->child[j] : NULL, *kr, *K;
    bool sum = S && lji_is(S, &lji_kind_sum) && row_ok(&r);
    for (int t = 0; sum && t < S->nchild; t++) {
        char *c0 = NULL, *c1 = NULL;
        sum = trace_kron_term(S->child[t], &kr, &K) && (!K || trace_k_fits(kr, K)) &&
              row_matrix(ctx, &r, kr, &c0, &c1); /* (each term's shape) */
        free(c0), free(c1);
    }
    if (sum) {
        int n = S->nchild;
        char **lab = lji_calloc(ctx, (size_t)n, sizeof *lab);
        double *c = lji_malloc(ctx, (size_t)n * sizeof *c);
        bool ok = lab && c;
        for (int t = 0; ok && t < n; t++) {
            trace_kron_term(S->child[t], &kr, &K);
            trace_row m = { r.kind, r.c ? lji_strdup(ctx, r.c) : NULL, r.ct ? lji_strdup(ctx, r.ct) : NULL };
            if (!row_fold(ctx, &m, kr, K)) { /* (not so: checked above) */
                free(m.c), free(m.ct);
                m.c = m.ct = NULL;
            }
            lab[t] = trace_row_label(ctx, m.c);
            ok = lab[t] && m.ct; /* (either failing is out of memory) */
            free(m.c), free(m.ct);
            c[t] = rowk * S->coef[t];
        }
        /* equal rows gathered, where their coefficients do not cancel */
        for (int t = 0; ok && t < n; t++)
            for (int u = t + 1; lab[t] && u < n; u++)
                if (lab[u] && !strcmp(lab[t], lab[u]) && c[t] + c[u] != 0.0) {
                    c[t] += c[u];
                    free(lab[u]);
                    lab[u] = NULL;
                }
        if (ok) {
            int terms = 0;
            bool minus = false; /* the first term's sign */
            for (int t = 0; t < n; t++)
                if (lab[t] && !terms++) minus = c[t] < 0;
            bool paren = !alone && (terms > 1 || minus);
            lji_put_open(b, paren);
            for (int t = 0, k = 0; t < n; t++) {
                if (!lab[t]) continue;
                lji_put_signed_coef(b, c[t], !k++, fmt);
                lji_put_value_label(b, lab[t], fmt, fabs(c[t]) != 1.0 || terms > 1 ? LJI_AT_SUM : LJI_AT_COMPOSE);
            }
            lji_put_close(b, paren);
            last = J->nchild - 1;
        } else
            b->failed = true;
        for (int t = 0; lab && t < n; t++) free(lab[t]);
        free(lab);
        free(c);
    } else if (last >= 0) {
        char *l = trace_row_label(ctx, r.c);
        bool paren = rowk != 1 && !alone;
        lji_put_open(b, paren);
        lji_put_signed_coef(b, rowk, true, fmt);
        if (l) lji_put_value_label(b, l, fmt, LJI_AT_COMPOSE);
        else b->failed = true;
        lji_put_close(b, paren);
        free(l);
    }
    if (!row_ok(&r)) b->failed = true;
    free(r.c), free(r.ct);
    return last;
}

/* 1_n^T·Diag(d) prints as the row it is, d^T: J of sum(f(X·w)) reads
 * f'(vec(X·w))^T·X, not 1^T·Diag(f'(vec(X·w)))·X (the operator keeps both) */
/* products of more factors than this print their number-labelled Diags as they are */
#define LJI_PRINT_SKIP_MAX 64

/* whether s is an identity as printed: I_3, I_{3} */
static bool prints_identity(const char *s)
{
    if (strncmp(s, "I_", 2)) return false;
    s += 2;
    bool brace = *s == '{';
    s += brace;
    if (!isdigit((unsigned char)*s)) return false;
    while (isdigit((unsigned char)*s)) s++;
    return !strcmp(s, brace ? "}" : "");
}

/* a sum of Diags and identities (scaled or not): what may print as I, 0
 * or k·Diag(…), and prints in time linear in its labels */
static bool flat_sum(const lj_op *s)
{
    if (!lji_is(s, &lji_kind_sum)) return false;
    for (int i = 0; i < s->nchild; i++) {
        const lj_op *t = lji_is(s->child[i], &lji_kind_scaled) ? s->child[i]->child[0] : s->child[i];
        if (!lji_is(t, &lji_kind_diag) && !lji_is_identity(t)) return false;
    }
    return true;
}

/* The sums of Diags and identities among J's factors as they print in a
 * product (texts[i], new memory; NULL for other factors, which print in
 * their turn): a sum whose terms met into the identity is left out of the
 * product (A·I_3 is A), and one whose terms all cancelled makes the
 * product zero (*zero). False when out of memory. */
static bool sum_factor_texts(lji_buf *b, const lj_op *J, lj_print_format fmt, char **texts, bool *skip,
                             bool *zero)
{
    int left = J->nchild;
    *zero = false;
    /* within what b has room for: past it the texts would be cut anyway,
     * and printing them whole would cost the size of the whole form (of
     * sums nested in products nested in sums, exponential in the depth
     * where subtrees are shared) */
    if (b->limit && b->limit <= b->len) return true;
    size_t used = 0; /* by the texts before */
    for (int i = 0; i < J->nchild; i++) {
        if (!flat_sum(J->child[i])) continue;
        lji_buf t;
        lji_buf_init_room(&t, b, used);
        lji_print(&t, J->child[i], fmt, LJI_AT_COMPOSE);
        bool whole = !t.truncated;
        size_t len = t.len;
        if (!(texts[i] = lji_buf_finish(&t, "print"))) return false;
        if (whole && lji_text_is_zero(texts[i])) *zero = true;
        else if (whole && left > 1 && prints_identity(texts[i])) skip[i] = true, left--;
        used += len;
        if (!whole || (b->limit && b->len + used >= b->limit)) break; /* the rest print directly, into a full b */
    }
    return true;
}

static void compose_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where)
{
    char *texts[LJI_PRINT_SKIP_MAX] = { NULL };
    bool skip[LJI_PRINT_SKIP_MAX] = { false }, zero = false;
    if (J->nchild <= LJI_PRINT_SKIP_MAX && !sum_factor_texts(b, J, fmt, texts, skip, &zero)) b->failed = true;
    if (zero || b->failed) { /* a factor of zeros: 0_{m×n} */
        if (!b->failed) lji_kind_zero.print(b, J, fmt, where);
        for (int i = 0; i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) free(texts[i]);
        return;
    }
    int left = J->nchild, one = 0;
    for (int i = 0; i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) left -= skip[i], one = skip[i] ? one : i;
    if (left == 1) { /* the one factor left, placed as the product was (a sum as printed above) */
        if (texts[one]) lji_buf_puts(b, texts[one]);
        else lji_print(b, J->child[one], fmt, where);
        for (int i = 0; i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) free(texts[i]);
        return;
    }
    bool paren = where == LJI_AT_KRON || where == LJI_AT_TIGHT;
    lji_put_open(b, paren);
    /* a number of a row 1^T·Diag(k·d) that ends the product, after its
     * first factor, goes in front: vec X·1^T·Diag(2·vec X) reads
     * 2·vec X·(vec X)^T (a row before Kronecker products is the trace
     * chain's, which writes its number itself) */
    int moved = -1;
    double front = 1;
    const lj_op *dn = J->nchild > 2 ? J->child[J->nchild - 1] : NULL;
    if (dn && lji_is(dn, &lji_kind_diag) && dn->label && is_ones_row(J->child[J->nchild - 2]) &&
        lji_label_number(dn->label, &front) != dn->label)
        moved = J->nchild - 2;
    const lj_op *d0 = J->nchild > 1 ? J->child[1] : NULL;
    if (moved > 0 && J->child[0]->rows == 1) moved = -1; /* a row first keeps its own rules */
    if (moved > 0 && d0 && lji_is(d0, &lji_kind_diag) && d0->label && is_ones_row(J->child[0])) moved = -1;
    if (moved > 0) lji_put_signed_coef(b, front, true, fmt);
    /* a Diag labelled with a number k is k·I: its number goes in front and
     * it is left out (A·Diag(2) reads 2·A, x·1^T·Diag(2) 2·x·1^T), where no
     * row other than 1^T is before it */
    double kd = 1;
    int skipped = 0;
    for (int i = 0; i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) skipped += skip[i];
    for (int i = 0; moved < 0 && i < J->nchild && J->nchild <= LJI_PRINT_SKIP_MAX; i++) {
        double k;
        if (!skip[i] && lji_diag_is_number(J->child[i], &k) &&
            (i == 0 || J->child[i - 1]->rows != 1 || is_ones_row(J->child[i - 1])) &&
            skipped + 1 < J->nchild)
            skip[i] = true, kd *= k, skipped++;
    }
    /* so does a whole number a sum's one term leads with: Diag(x)·4·Diag(x.^3)
     * reads 4·Diag(x)·Diag(x.^3) (not after a row: the trace chain's) */
    for (int i = 0; moved < 0 && i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) {
        double lead = 1;
        size_t m = texts[i] && !skip[i] && (i == 0 || J->child[i - 1]->rows != 1)
                       ? lji_leading_number(texts[i], fmt, &lead) : 0;
        if (m && texts[i][m]) {
            memmove(texts[i], texts[i] + m, strlen(texts[i] + m) + 1);
            kd *= lead;
        }
    }
    if (kd != 1) lji_put_signed_coef(b, kd, true, fmt);
    bool wrote = false;
    for (int i = 0; i < J->nchild; i++) {
        if (skip[i]) continue;
        if (wrote) lji_buf_puts(b, lji_sym_dot(fmt));
        wrote = true;
        const lj_op *d = i + 1 < J->nchild && !skip[i + 1] ? J->child[i + 1] : NULL;
        const lj_op *a = J->child[i];
        if (d && i != moved && a->rows == 1 && (lji_is(a, &lji_kind_transpose) || lji_is(a, &lji_kind_dense))) { /* a row */
            int last = put_trace_chain(b, J, i, fmt, i == 0 && !paren && (where == LJI_AT_TOP || where == LJI_AT_SUM));
            if (last > i) {
                i = last;
                continue;
            }
        }
        double kn;
        if (d && is_ones_row(J->child[i]) && lji_diag_is_number(d, &kn)) { /* 1^T·Diag(2) is 2·1^T */
            lji_put_signed_coef(b, kn, true, fmt);
            lji_print(b, J->child[i], fmt, LJI_AT_COMPOSE);
            i++;
            continue;
        }
        if (d && lji_is(d, &lji_kind_diag) && d->label && is_ones_row(J->child[i])) {
            double k = 1; /* first, a number in front: 1^T·Diag(2·vec X) is 2·(vec X)^T */
            const char *l = i == 0 ? lji_label_number(d->label, &k) : d->label;
            if (i == moved) l = lji_label_number(d->label, &k), k = 1; /* its number went in front */
            lji_put_signed_coef(b, k, true, fmt);
            bool br = !lji_label_transposes_bare(l) || strchr(l, '^'); /* ((vec X).^2)^T */
            lji_put_open(b, br);
            lji_put_label(b, l, fmt);
            lji_put_close(b, br);
            lji_buf_puts(b, lji_sym_transpose(fmt));
            i++;
            continue;
        }
        if (i < LJI_PRINT_SKIP_MAX && texts[i]) lji_buf_puts(b, texts[i]); /* a sum, printed above */
        else lji_print(b, J->child[i], fmt, LJI_AT_COMPOSE);
    }
    lji_put_close(b, paren);
    for (int i = 0; i < J->nchild && i < LJI_PRINT_SKIP_MAX; i++) free(texts[i]);
}

static lj_op *compose_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1)
{
    /* (A·B·C)(rows) = A(rows)·B·C, and when A(rows) = [0 M 0] (the rows
     * meet only columns [c0, c1) of A), M·(B·C)(c0:c1): the restriction
     * goes down the chain, so that each factor does its share */
    lj_op *first = lji_rows(ctx, J->child[0], r0, r1);
    if (!first) return NULL;
    int64_t c0, c1;
    const lj_op *mid = lji_placed_middle(first, &c0, &c1);
    if (mid) {
        lj_op *rest = lj_op_compose(ctx, J->nchild - 1, (const lj_op *const *)J->child + 1);
        lj_op *rr = rest ? lji_rows(ctx, rest, c0, c1) : NULL;
        lj_op *r = rr ? lj_op_mul(ctx, mid, rr) : NULL;
        lj_op_free(&rest);
        lj_op_free(&rr);
        lj_op_free(&first);
        return r;
    }
    const lj_op **f = lji_malloc(ctx, (size_t)J->nchild * sizeof *f);
    if (!f) {
        lj_op_free(&first);
        lji_nomem(ctx, "rows");
        return NULL;
    }
    f[0] = first;
    for (int i = 1; i < J->nchild; i++) f[i] = J->child[i];
    lj_op *r = lj_op_compose(ctx, J->nchild, f);
    free(f);
    lj_op_free(&first);
    return r;
}

const lji_kind lji_kind_compose = {
    .id = LJ_OP_COMPOSE,
    .name = "compose",
    .apply = compose_apply,
    .to_sparse = compose_to_sparse,
    .rows = compose_rows,
    .nnz = compose_nnz,
    .cost = lji_cost_of_children,
    .print = compose_print,
    .equal = NULL,
};

/* ---- the constructor and its rules ------------------------------------------ */

#define LJI_FACTORS_ROOM 8 /* factors held without an allocation */
typedef struct {
    lj_context *ctx;
    lj_op **f; /* room, or the heap past it */
    int n, cap;
    lji_coef coef; /* the scalings folded out of the factors */
    bool zero, failed;
    lj_op *room[LJI_FACTORS_ROOM];
} factors;

/* Append a (a new reference, consumed) at position `at`, flattening products,
 * pulling out scalars and dropping identities. */
static void factors_insert(factors *fs, int at, lj_op *a)
{
    if (!a) {
        fs->failed = true;
        return;
    }
    if (lji_is(a, &lji_kind_compose) && a->nchild <= LJI_FLATTEN_MAX) {
        /* a product held nowhere else (a Jacobian's chain rule passes on
         * L·J[c] at its last use): its factors' references move here, no
         * count changed; else each factor gets a new one */
        bool sole = atomic_load_explicit(&a->refs, memory_order_acquire) == 1;
        int pos = at;
        for (int i = 0; i < a->nchild; i++) {
            int before = fs->n;
            lj_op *c = a->child[i];
            if (sole) a->child[i] = NULL;
            else lj_op_retain(c);
            factors_insert(fs, pos, c);
            pos += fs->n - before;
        }
        lj_op_free(&a);
        return;
    }
    if (lji_is(a, &lji_kind_scaled)) {
        if (lji_tape_vol(fs->ctx, a)) lji_tape_break(fs->ctx, "a scaling folded into a product");
        lji_coef_take(fs->ctx, &fs->coef, a);
        lj_op *c = lj_op_retain(a->child[0]);
        lj_op_free(&a);
        factors_insert(fs, at, c);
        return;
    }
    if (lji_is_zero(a)) fs->zero = true;
    if (lji_is_identity(a)) {
        lj_op_free(&a);
        return;
    }
    if (fs->n == fs->cap) { /* past the factors' own room: the heap */
        int cap = 2 * fs->cap;
        lj_op **f = fs->f == fs->room ? lji_malloc(fs->ctx, (size_t)cap * sizeof *f)
                                      : lji_realloc(fs->ctx, fs->f, (size_t)cap * sizeof *f);
        if (!f) {
            lj_op_free(&a);
            fs->failed = true;
            return;
        }
        if (fs->f == fs->room) memcpy(f, fs->room, sizeof fs->room);
        fs->f = f;
        fs->cap = cap;
    }
    memmove(fs->f + at + 1, fs->f + at, (size_t)(fs->n - at) * sizeof *fs->f);
    fs->f[at] = a;
    fs->n++;
}

/* Remove `count` factors at `at` and insert r there (flattened). */
static void factors_replace(factors *fs, int at, int count, lj_op *r)
{
    for (int i = 0; i < count; i++) lj_op_free(&fs->f[at + i]);
    memmove(fs->f + at, fs->f + at + count, (size_t)(fs->n - at - count) * sizeof *fs->f);
    fs->n -= count;
    factors_insert(fs, at, r);
}

static bool is_plain_block(const lj_op *a)
{
    return lji_is(a, &lji_kind_dense) || lji_is(a, &lji_kind_rank1) ||
           (lji_is(a, &lji_kind_transpose) && lji_is(a->child[0], &lji_kind_dense));
}

static lj_op *compose_checked(lj_context *ctx, int n, const lj_op *const *ops);

/* a·b inside a rule, of operands already checked; a factor I returns the
 * other as it is (what the product would reduce it to, without building
 * and dissolving a list of factors) */
static lj_op *mul2(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    if (lji_is_identity(b)) return lj_op_retain((lj_op *)a);
    if (lji_is_identity(a)) return lj_op_retain((lj_op *)b);
    const lj_op *ab[2] = { a, b };
    return compose_checked(ctx, 2, ab);
}

static bool is_dense_block(const lj_op *a)
{
    return lji_is(a, &lji_kind_dense) || (lji_is(a, &lji_kind_transpose) && lji_is(a->child[0], &lji_kind_dense));
}

/* "B^k" for a label that is a base B alone (k = 1) or its power ("M^3",
 * "(M^3)", "sin(X)^2", "(X + Y)^2"), or the transpose of either ("M^T",
 * "(M^3)^T", *t): where the base starts (*base), its length and k, and
 * whether a power of it needs parentheses around it (*wrap: the base is a
 * sum, a product, a power or a negation, given without them); 0 for a
 * label cut short. */
static size_t power_base(const char *label, const char **base, long *k, bool *t, bool *wrap)
{
    const char *s = label;
    size_t n = strlen(s);
    *t = n > 2 && !strcmp(s + n - 2, "^T");
    if (*t) n -= 2;
    if (lji_label_is_wrapped_n(s, n)) s++, n -= 2;
    if (n == 0) return 0;
    size_t caret = n; /* the last '^' outside brackets */
    for (size_t i = 0, depth = 0; i < n; i++) {
        if (i + 3 <= n && !strncmp(s + i, "…", 3)) return 0;
        if (s[i] == '(' || s[i] == '{') depth++;
        else if ((s[i] == ')' || s[i] == '}') && depth) depth--;
        else if (s[i] == '^' && depth == 0) caret = i;
    }
    *k = 1;
    size_t b = n;
    if (caret + 1 < n && isdigit((unsigned char)s[caret + 1])) {
        char *end;
        long v = strtol(s + caret + 1, &end, 10);
        if (end == s + n && v >= 1 && caret > 0 && lji_label_is_atomic_n(s, caret)) {
            *k = v;
            b = caret;
        }
    }
    *wrap = false;
    if (lji_label_is_wrapped_n(s, b)) s++, b -= 2, *wrap = true;
    if (*wrap && b > 2 && !strncmp(s + b - 2, "^T", 2) && lji_label_is_atomic_n(s, b - 2) && !memchr(s, '^', b - 2)) {
        b -= 2; /* (B^T)^k: the transpose of B^k */
        *t = !*t;
        *wrap = lji_label_is_wrapped_n(s, b);
        if (*wrap) s++, b -= 2;
    }
    if (!lji_label_is_atomic_n(s, b) || memchr(s, '^', b)) *wrap = true; /* (X^T·X)^2, (X^{-1})^2 */
    *base = s;
    return b;
}

/* The label of a multiplied-out product l = a·c: "M^(j+k)" when a and c
 * are powers of one base, or both transposes of such ("(M^(j+k))^T":
 * powers of M commute), so that the Jacobian of M(M(…(M X))) is I ⊗ M^N
 * and J of X^16 has (X^15)^T ⊗ I, not a label as long as the chain; else
 * l's printed form (a product's brackets dropped: X·M·X^T) cut to a
 * bounded length, so that building long chains stays linear. */
static char *product_label(lj_context *ctx, const lj_op *l)
{
    const lj_op *a = l->nchild == 2 ? l->child[0] : NULL, *c = l->nchild == 2 ? l->child[1] : NULL;
    char *p = NULL;
    if (a && c && lji_is(l, &lji_kind_compose) && labelled_factor(a) && labelled_factor(c)) {
        char *la = factor_label(ctx, a, false), *lc = factor_label(ctx, c, false);
        const char *ba, *bc;
        long ka, kc;
        bool ta, tc, wa, wc;
        size_t na = la ? power_base(la, &ba, &ka, &ta, &wa) : 0, nc = lc ? power_base(lc, &bc, &kc, &tc, &wc) : 0;
        if (na && na == nc && ta == tc && !memcmp(ba, bc, na) && ka < 1000000000L && kc < 1000000000L) {
            lji_buf b;
            lji_buf_init(&b, ctx);
            lji_buf_printf(&b, ta ? (wa ? "((%.*s)^%ld)^T" : "(%.*s^%ld)^T") : wa ? "(%.*s)^%ld" : "%.*s^%ld", (int)na, ba,
                           ka + kc);
            p = lji_buf_finish(&b, "compose");
        } else if (la && lc) /* a product's wrapping parentheses go: X·(M·X^T) is X·M·X^T */
            p = label_product3(ctx, la, lc, "");
        free(la);
        free(lc);
        if (!p) {
            lji_nomem(ctx, "compose");
            return NULL;
        }
    } else
        p = lj_op_print(ctx, l, LJ_PRINT_UNICODE);
    if (!p || strlen(p) <= 64) return p;
    size_t hn = lji_utf8_prefix(p, 40);
    char *q = lji_malloc(ctx, hn + 8);
    if (q) {
        memcpy(q, p, hn);
        strcpy(q + hn, strstr(p, "…") ? "" : "·…");
    } else
        lji_nomem(ctx, "compose");
    lj_free(p);
    return q;
}

/* a·c for a factor of a Kronecker product: two dense blocks whose product
 * is no larger than they are (a Gram matrix B·B^T) are multiplied once, so
 * that the Kronecker product applies with plain GEMMs; otherwise the
 * product stays lazy. The label is the lazy product's. */
static lj_op *factor_product(lj_context *ctx, const lj_op *a, const lj_op *c)
{
    lj_op *l = mul2(ctx, a, c);
    if (!l || !is_dense_block(a) || !is_dense_block(c)) return l;
    int64_t m = a->rows, k = a->cols, n = c->cols;
    if (m * n > k * (m + n) || m * n > ((int64_t)1 << 24)) return l;
    double *D = lji_malloc(ctx, (size_t)(m * n > 0 ? m * n : 1) * sizeof *D);
    char *label = D ? product_label(ctx, l) : NULL;
    char *wrapped = NULL;
    if (label && !lji_label_is_atomic(label)) { /* labels of compound values carry their parentheses */
        lji_buf b;
        lji_buf_init(&b, ctx);
        lji_buf_printf(&b, "(%s)", label);
        wrapped = lji_buf_finish(&b, "compose");
    }
    const char *lb = wrapped ? wrapped : label && lji_label_is_atomic(label) ? label : NULL;
    lj_op *r = lb && lj_op_to_dense(ctx, l, D, m > 0 ? m : 1) == LJ_OK ? lj_op_dense(ctx, m, n, D, m > 0 ? m : 1, lb)
                                                                        : NULL;
    const lj_op *da = lji_is(a, &lji_kind_transpose) ? a->child[0] : a, *dc = lji_is(c, &lji_kind_transpose) ? c->child[0] : c;
    if (r && (lji_tape_vol(ctx, da) || lji_tape_vol(ctx, dc))) { /* a plan's tape multiplies it out again */
        lji_step st = { .type = LJI_STEP_DENSE, .dst = r->data, .rows = m, .cols = n, .ldd = r->ld, .op = l,
                        .node = { -1, -1 }, .src = { lji_tape_step_of(ctx, da), lji_tape_step_of(ctx, dc) } };
        lji_tape_add(ctx, &st, r, l);
    }
    if (!D) lji_nomem(ctx, "compose");
    free(D);
    free(wrapped);
    free(label);
    lj_op_free(&l);
    return r;
}

static lj_op *kron_of_products(lj_context *ctx, const lj_op *a, const lj_op *c, const lj_op *b,
                               const lj_op *d)
{
    /* (a ⊗ b)(c ⊗ d) = (a c) ⊗ (b d); NULL a or b stands for I_1 */
    lj_op *l = a ? factor_product(ctx, a, c) : lj_op_retain(c);
    lj_op *r = b ? (d ? factor_product(ctx, b, d) : lj_op_retain(b)) : lj_op_retain(d);
    lj_op *k = (l && r) ? lji_op_kron_nc(ctx, l, r) : NULL;
    lj_op_free(&l);
    lj_op_free(&r);
    return k;
}

/* One rewriting step on the adjacent pair (x, y); NULL when no rule applies
 * (or on failure, with ctx->status set). */
static lj_op *distribute_past(lj_context *ctx, const lj_op *K, const lj_op *P, const lj_op *S, bool left,
                              bool *fail);

/* The top-level factors of a label "a ∘ b ∘ (c − d)", at most max of them
 * (each a start and a length); 0 where the label is a sum at its top level
 * or has more factors. */
enum { LJI_HFACTORS = 16 };
static int hadamard_factors(const char *l, const char **f, size_t *n)
{
    static const char sep[] = " ∘ ";
    const size_t ns = sizeof sep - 1;
    if (lji_label_is_sum(l)) return 0;
    int k = 0, depth = 0;
    const char *start = l;
    for (const char *s = l;; s++) {
        if (*s == '(' || *s == '{') depth++;
        else if (*s == ')' || *s == '}') depth--;
        if (*s == '\0' || (depth == 0 && !strncmp(s, sep, ns))) {
            if (k == LJI_HFACTORS) return 0;
            f[k] = start, n[k++] = (size_t)(s - start);
            if (*s == '\0') return k;
            start = s + ns;
            s += ns - 1;
        }
    }
}

/* hadamard_factors of the n bytes at l, none of them a sum at its top
 * level: 0 where one is, or where there are more than LJI_HFACTORS */
static int hadamard_factors_n(const char *l, size_t n, const char **f, size_t *fl)
{
    static const char sep[] = " ∘ ";
    const size_t ns = sizeof sep - 1;
    int k = 0, depth = 0;
    const char *start = l;
    for (size_t i = 0;; i++) {
        if (i < n && (l[i] == '(' || l[i] == '{')) depth++;
        else if (i < n && (l[i] == ')' || l[i] == '}')) depth--;
        if (i < n && depth == 0 && i > 0 && (l[i] == '+' || (l[i] == '-' && l[i - 1] == ' ') ||
                                              (i + strlen("−") <= n && !strncmp(l + i, "−", strlen("−")) &&
                                               l[i - 1] == ' ')))
            return 0; /* a sum */
        if (i == n || (depth == 0 && i + ns <= n && !strncmp(l + i, sep, ns))) {
            if (k == LJI_HFACTORS) return 0;
            f[k] = start, fl[k++] = (size_t)(l + i - start);
            if (i == n) return k;
            start = l + i + ns;
            i += ns - 1;
        }
    }
}

/* factor r is "1./(1 + exp(M))" or "1./(exp(M) + 1)" and factor q
 * "exp(M)": together σ(M) */
static bool sigmoid_of(const char *r, size_t nr, const char *q, size_t nq)
{
    static const char pre[] = "1./(1 + ", pre2[] = "1./(", post2[] = " + 1)";
    const size_t np = sizeof pre - 1, np2 = sizeof pre2 - 1, ns2 = sizeof post2 - 1;
    if (nq < 6 || strncmp(q, "exp(", 4) || q[nq - 1] != ')') return false;
    bool one_first = nr == np + nq + 1 && !strncmp(r, pre, np) && !strncmp(r + np, q, nq) && r[nr - 1] == ')';
    bool one_last = nr == np2 + nq + ns2 && !strncmp(r, pre2, np2) && !strncmp(r + np2, q, nq) &&
                    !strncmp(r + np2 + nq, post2, ns2);
    if (!one_first && !one_last) return false;
    int depth = 0; /* exp(M) is one call: its bracket closes at its end */
    for (size_t k = 3; k + 1 < nq; k++) {
        depth += q[k] == '(' ? 1 : q[k] == ')' ? -1 : 0;
        if (depth == 0) return false;
    }
    return true;
}

/* A factor of a Hadamard label read as k·B.^e: its number k (1 where it
 * has none), its base B without brackets round the whole of it, and its
 * whole exponent e, negative for a reciprocal 1./B.^e ("2·x" is 2, x, 1;
 * "1./x.^2" is 1, x, −2; "(1 + x).^3" is 1, 1 + x, 3). false for a factor
 * with a minus sign. */
typedef struct {
    const char *b;
    size_t nb;
    int e;
    double k;
    bool vec;     /* of vec B: vec X, vec(X.^2) */
    char own[64]; /* B where it is not in the label as it stands: exp(X) of exp(vec X) */
} hpower;

/* the n bytes at f can take .^k as they stand: a name, a call f(…) or a
 * bracketed group (not A·x, vec X or u.^3) */
static bool ew_power_base(const char *f, size_t n)
{
    if (!n) return false;
    if (lji_label_is_wrapped_n(f, n)) return true;
    size_t i = 0;
    while (i < n) {
        if (isalnum((unsigned char)f[i]) || f[i] == '_') i++;
        else if (n - i >= strlen("σ") && !strncmp(f + i, "σ", strlen("σ"))) i += strlen("σ");
        else break;
    }
    return i == n || (i > 0 && lji_label_is_wrapped_n(f + i, n - i));
}

static bool hadamard_power(const char *f, size_t n, hpower *p)
{
    static const char dot[] = "·";
    const size_t nd = sizeof dot - 1;
    if (lji_label_is_sum_n(f, n)) { /* −M + A: a base as it stands (its sign and number are its first term's) */
        p->k = 1, p->e = 1, p->b = f, p->nb = n, p->vec = false;
        return n > 0;
    }
    double neg = 1; /* −2·x, −x: the sign goes with the number */
    if (n > 1 && f[0] == '-') neg = -1, f++, n--;
    else if (n > strlen("−") && !strncmp(f, "−", strlen("−"))) neg = -1, f += strlen("−"), n -= strlen("−");
    if (!n || f[0] == '-' || !strncmp(f, "−", strlen("−"))) return false;
    p->vec = false;
    const char *sf[LJI_HFACTORS];
    size_t sn[LJI_HFACTORS];
    if (lji_label_is_wrapped_n(f, n) && hadamard_factors_n(f + 1, n - 2, sf, sn) == 1) {
        /* (x.^2), (2·x): what is inside; (a + b) stays a base */
        bool ok = hadamard_power(f + 1, n - 2, p);
        p->k *= neg;
        return ok;
    }
    p->k = 1;
    double fk;
    size_t fw = lji_label_number_at(f, n, &fk); /* 2·x, (1/3)·x */
    if (fw && fw + nd < n && !strncmp(f + fw, dot, nd)) {
        p->k = fk;
        f += fw + nd, n -= fw + nd;
    }
    size_t w = 0; /* the k. of k./x */
    while (w < n && (isdigit((unsigned char)f[w]) || f[w] == '.')) w++;
    int sign = 1;
    if (n > 3 && !strncmp(f, "1./", 3)) sign = -1, f += 3, n -= 3;
    else if (p->k == 1 && w >= 2 && w < 8 && f[w - 1] == '.' && w + 1 < n && f[w] == '/') { /* 2./x */
        p->k = strtod(f, NULL);
        sign = -1, f += w + 1, n -= w + 1;
    }
    if (n > 4 && !strncmp(f, "vec ", 4) && ew_power_base(f + 4, n - 4) && !lji_label_is_wrapped_n(f + 4, n - 4)) {
        p->k *= neg, p->e = sign, p->b = f + 4, p->nb = n - 4, p->vec = true; /* vec X */
        return true;
    }
    if (n > 5 && !strncmp(f, "vec(", 4) && lji_label_is_wrapped_n(f + 3, n - 3) &&
        hadamard_factors_n(f + 4, n - 5, sf, sn) <= 1) { /* vec(X.^2), 1./vec(1 + X): what is inside, of vec */
        hpower in;
        if (!hadamard_power(f + 4, n - 5, &in) || in.vec) return false;
        p->k *= neg * (sign > 0 ? in.k : 1 / in.k);
        p->e = in.e * sign, p->b = in.b, p->nb = in.nb, p->vec = in.nb > 0;
        if (in.b == in.own) {
            memcpy(p->own, in.own, in.nb);
            p->b = p->own;
        }
        return true;
    }
    p->e = 1;
    for (;;) { /* B.^e, e whole, of at most three digits; (B.^i).^j is B.^(i·j) */
        size_t d = n;
        while (d > 0 && isdigit((unsigned char)f[d - 1])) d--;
        if (!(d < n && n - d <= 3 && d > 2 && f[d - 1] == '^' && f[d - 2] == '.' && ew_power_base(f, d - 2))) break;
        int j = atoi(f + d);
        if (j == 0 || p->e * j > 999) return false;
        p->e *= j;
        n = d - 2;
        if (lji_label_is_wrapped_n(f, n)) f++, n -= 2;
    }
    p->e *= sign;
    if (lji_label_is_wrapped_n(f, n)) {
        f++, n -= 2;
        size_t wk = 0; /* (2·B).^e, 1./(2·B): 2.^e·B.^e */
        while (wk < n && wk < 8 && isdigit((unsigned char)f[wk])) wk++;
        if (wk && wk + nd < n && !strncmp(f + wk, dot, nd) && !lji_label_is_sum_n(f, n) &&
            hadamard_factors_n(f + wk + nd, n - wk - nd, sf, sn) == 1) {
            p->k *= pow(strtod(f, NULL), p->e);
            f += wk + nd, n -= wk + nd;
        }
    }
    if (n > 4 && !strncmp(f, "vec ", 4) && ew_power_base(f + 4, n - 4) && !lji_label_is_wrapped_n(f + 4, n - 4))
        f += 4, n -= 4, p->vec = true; /* (vec X).^2 */
    p->b = f, p->nb = n;
    p->k *= neg;
    size_t fnl = 0; /* f(vec X), an elementwise function of a vec, is vec f(X) */
    while (fnl < n && isalpha((unsigned char)f[fnl])) fnl++;
    if (!strncmp(f, "σ(", strlen("σ("))) fnl = strlen("σ");
    if (fnl && fnl + 6 < n && n < sizeof p->own + 4 && !strncmp(f + fnl, "(vec ", 5) && f[n - 1] == ')' &&
        (f[0] != 'v' || strncmp(f, "vec", 3)) && ew_power_base(f + fnl + 5, n - fnl - 6) &&
        !lji_label_is_wrapped_n(f + fnl + 5, n - fnl - 6)) {
        size_t r = n - fnl - 5; /* "X)" */
        memcpy(p->own, f, fnl + 1);
        memcpy(p->own + fnl + 1, f + fnl + 5, r);
        p->b = p->own, p->nb = fnl + 1 + r, p->vec = true;
        return true;
    }
    char num[16], *end = num;
    double v = 0;
    if (n && n < sizeof num && isdigit((unsigned char)f[0])) { /* (strtod alone would read on: "2./x") */
        memcpy(num, f, n);
        num[n] = '\0';
        v = strtod(num, &end);
    }
    if (v > 0 && end == num + n) { /* a number alone, 2 or 1./2: in k, no base */
        p->k *= p->e > 0 ? pow(v, p->e) : 1 / pow(v, -p->e);
        p->nb = 0, p->e = 0;
        return true;
    }
    return n > 0;
}

/* A factor "(P./Q)" or "P./Q" (not 1./Q) read as P and 1./Q, each a power
 * as hadamard_power reads it: true with both in q[0], q[1]. */
static bool hadamard_quotient(const char *f, size_t n, hpower q[2], bool vec)
{
    if (lji_label_is_wrapped_n(f, n)) f++, n -= 2;
    if (lji_label_is_sum_n(f, n)) return false; /* a./b + c */
    if (n > 3 && !strncmp(f, "1./", 3)) return false;
    size_t at = 0;
    int depth = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        depth += f[i] == '(' ? 1 : f[i] == ')' ? -1 : 0;
        if (depth == 0 && f[i] == '.' && f[i + 1] == '/') {
            if (at) return false; /* one quotient only */
            at = i;
        }
    }
    if (!at || !hadamard_power(f, at, &q[0]) || q[0].e < 0 || !hadamard_power(f + at + 2, n - at - 2, &q[1]) ||
        q[1].e < 0 || q[1].k != 1 || q[0].vec || q[1].vec)
        return false;
    q[1].e = -q[1].e;
    q[0].vec = q[1].vec = vec;
    return true;
}

/* k in front of a factor of a label: "2·", "−", nothing for 1; before a
 * reciprocal "2./", "−1./", "1./" */
static void put_coef_before(lji_buf *b, double k, bool recip)
{
    if (k == 1) lji_buf_puts(b, recip ? "1./" : "");
    else if (k == -1) lji_buf_puts(b, recip ? "−1./" : "−");
    else {
        lji_put_number(b, k, LJ_PRINT_UNICODE);
        lji_buf_puts(b, recip ? "./" : "·");
    }
}

/* The label of Diag(a)·Diag(b) where powers of one base in a and b meet
 * (gathered: 2·x ∘ x is 2·x.^2, and cancelled): 2·x ∘ 1./x.^2 is 2./x (J of log(x.^2)), 2·sin(x) ∘ cos(x) ∘ 1./sin(x).^2
 * is 2·cos(x) ∘ 1./sin(x), 4·(1 + x.^2) ∘ x ∘ (x.^3./(1 + x.^2).^4) is
 * 4·x.^4 ∘ 1./(1 + x.^2).^3, and a label whose factors all cancel is the
 * number left, 2 for 2·exp(x) ∘ exp(x) ∘ 1./exp(x).^2 (a Diag labelled
 * with a number prints as that number times I). Positive powers are
 * written first, in the order they came, then the reciprocals. New
 * memory, or NULL where no base occurs twice. */
static char *diag_label_powers(lj_context *ctx, const char **f, const size_t *n, int total, bool *failed)
{
    enum { MAXP = 4 * LJI_HFACTORS };
    hpower p[MAXP];
    /* a bracketed product among the factors, (a ∘ b), is its factors */
    /* and vec(a ∘ b) is vec a ∘ vec b */
    const int given = total;
    const char *ff[MAXP];
    size_t fn[MAXP];
    bool fv[MAXP];
    int nf = 0;
    for (int j = 0; j < total; j++) {
        int got = 0;
        const char *fj = f[j];
        size_t nj = n[j], w = 0; /* k·vec(a ∘ b), k·(a ∘ b): k a factor of its own */
        while (w < nj && isdigit((unsigned char)fj[w])) w++;
        if (w && w < 8 && nj > w + strlen("·") && !strncmp(fj + w, "·", strlen("·")) && nf + 1 < MAXP) {
            const char *rest = fj + w + strlen("·");
            size_t nr = nj - w - strlen("·");
            if ((nr > 5 && !strncmp(rest, "vec(", 4) && lji_label_is_wrapped_n(rest + 3, nr - 3)) ||
                lji_label_is_wrapped_n(rest, nr)) {
                ff[nf] = fj, fn[nf] = w, fv[nf++] = false;
                fj = rest, nj = nr;
            }
        }
        bool vec = nj > 5 && !strncmp(fj, "vec(", 4) && lji_label_is_wrapped_n(fj + 3, nj - 3);
        if ((vec || lji_label_is_wrapped_n(fj, nj)) && nf + LJI_HFACTORS <= MAXP)
            got = vec ? hadamard_factors_n(fj + 4, nj - 5, ff + nf, fn + nf)
                      : hadamard_factors_n(fj + 1, nj - 2, ff + nf, fn + nf);
        for (int q = 0; q < got; q++) fv[nf + q] = vec;
        if (got > 1 || (vec && got == 1)) nf += got;
        else ff[nf] = fj, fn[nf] = nj, fv[nf++] = false;
    }
    f = ff, n = fn, total = nf;
    int from[MAXP], np = 0; /* p[i] reads factor from[i]; -1 - j for factor j as it stands */
    for (int j = 0; j < total; j++) {
        if (hadamard_quotient(f[j], n[j], &p[np], fv[j])) from[np] = from[np + 1] = j, np += 2;
        else if (hadamard_power(f[j], n[j], &p[np]) && !(fv[j] && p[np].vec)) {
            p[np].vec |= fv[j];
            from[np++] = j;
        } else
            from[np++] = -1 - j;
    }
    /* every factor of vec: the label is vec of the product, vec(2./X) */
    bool all_vec = true;
    int vecs = 0;
    for (int i = 0; i < np; i++) {
        all_vec = all_vec && from[i] >= 0 && (p[i].vec || !p[i].nb);
        vecs += from[i] >= 0 && p[i].vec;
    }
    int sum[MAXP], first[MAXP];
    bool cancels = all_vec && given > 1 && vecs > 1; /* vec a ∘ vec b, written vec(a ∘ b) */
    double k = 1;
    for (int i = 0; i < np; i++) {
        if (from[i] < 0) continue;
        k *= p[i].k;
        if (p[i].k != 1 && f[from[i]][0] == '(') cancels = true; /* (2·x) ∘ y: its number goes in front */
        first[i] = i, sum[i] = p[i].e;
        if (!p[i].nb) cancels = true; /* a number among the factors goes in front */
        for (int j = 0; j < i && p[i].nb; j++)
            if (from[j] >= 0 && p[j].nb == p[i].nb && p[j].vec == p[i].vec && !strncmp(p[j].b, p[i].b, p[i].nb)) {
                first[i] = first[j];
                cancels = true;
                sum[first[j]] += p[i].e;
                break;
            }
    }
    /* exp(M).^e ∘ 1./(1 + exp(M)).^e is σ(M).^e */
    int sig[MAXP] = { 0 };
    for (int i = 0; i < np; i++) {
        if (from[i] < 0 || first[i] != i || sum[i] <= 0) continue;
        for (int j = 0; j < np; j++) {
            if (from[j] < 0 || first[j] != j || sum[j] >= 0 || p[j].vec != p[i].vec) continue;
            const size_t rn = p[j].nb + 5; /* "1./(" + … + ")": sigmoid_of's reading */
            char r[4 * LJI_DIAG_LABEL_MAX];
            if (rn >= sizeof r) continue;
            snprintf(r, sizeof r, "1./(%.*s)", (int)p[j].nb, p[j].b);
            if (!sigmoid_of(r, rn, p[i].b, p[i].nb)) continue;
            int t = sum[i] < -sum[j] ? sum[i] : -sum[j];
            sig[i] = t, sum[i] -= t, sum[j] += t;
            cancels = true;
            break;
        }
    }
    if (!cancels || !(fabs(k) > 0 && fabs(k) < 1e6)) return NULL;
    bool negated = all_vec && k < 0 && vecs > 0; /* −vec(…), its sign outside */
    if (negated) k = -k;
    lji_buf b;
    lji_buf_init(&b, ctx);
    int written = 0;
    for (int pass = 0; pass < 2; pass++) /* the powers and the factors as they stand, then the reciprocals */
        for (int i = 0; i < np; i++) {
            bool own_vec = p[i].vec && !all_vec; /* vec written with the factor: vec(X.^2) */
            if (pass == 0 && sig[i]) { /* σ(M), from exp(M) */
                if (written++) lji_buf_puts(&b, " ∘ ");
                put_coef_before(&b, k, false);
                k = 1;
                lji_buf_puts(&b, own_vec ? "vec(" : "");
                lji_buf_printf(&b, "σ(%.*s", (int)p[i].nb - 4, p[i].b + 4);
                if (sig[i] > 1) lji_buf_printf(&b, ".^%d", sig[i]);
                lji_buf_puts(&b, own_vec ? ")" : "");
            }
            if (from[i] >= 0 && (first[i] != i || sum[i] == 0 || (sum[i] < 0) != (pass == 1))) continue;
            if (from[i] < 0 && pass == 1) continue;
            if (written++) lji_buf_puts(&b, " ∘ ");
            if (from[i] < 0) { /* the number in front: 2·cos(x) */
                int j = -1 - from[i];
                put_coef_before(&b, k, false);
                k = 1;
                lji_buf_printf(&b, "%.*s", (int)n[j], f[j]);
                continue;
            }
            int e = sum[i];
            put_coef_before(&b, k, e < 0); /* 2./x, 2·x.^2 */
            k = 1;
            bool power = e > 1 || e < -1;
            bool bare = power ? ew_power_base(p[i].b, p[i].nb) : lji_label_is_atomic_n(p[i].b, p[i].nb);
            if (own_vec && !power && bare) lji_buf_puts(&b, "vec "); /* vec X */
            else if (own_vec) lji_buf_puts(&b, "vec(");
            lji_buf_printf(&b, bare ? "%.*s" : "(%.*s)", (int)p[i].nb, p[i].b);
            if (power) lji_buf_printf(&b, ".^%d", e < 0 ? -e : e);
            if (own_vec && (power || !bare)) lji_buf_puts(&b, ")");
        }
    if (!written) {
        lji_put_number(&b, negated ? -k : k, LJ_PRINT_UNICODE); /* everything cancelled */
        char *r = lji_buf_finish(&b, "compose");
        *failed = !r;
        return r;
    }
    char *body = lji_buf_finish(&b, "compose");
    *failed = !body;
    if (!all_vec || !body) return body;
    lji_buf_init(&b, ctx); /* vec of the product: vec X, vec(2./X), −vec(sin(X).^2) */
    size_t nb = strlen(body), w = 0;
    while (w < nb && (isalnum((unsigned char)body[w]) || body[w] == '_')) w++;
    lji_buf_puts(&b, negated ? "−" : "");
    lji_buf_printf(&b, w == nb ? "vec %s" : "vec(%s)", body);
    free(body);
    char *r = lji_buf_finish(&b, "compose");
    *failed = !r;
    return r;
}

/* The label of Diag(a)·Diag(b), "a ∘ b", its factors read as powers and
 * met (diag_label_powers): a factor 1./F of either taken out against a
 * factor F of the other (J of log(σ(x)) reads Diag(1 − σ(x)), not
 * Diag(1./σ(x) ∘ σ(x) ∘ (1 − σ(x)))), and 1./(1 + exp(M)) ∘ exp(M)
 * written σ(M) (J of log(1 + exp(x))): new memory, or NULL when nothing
 * changes (the numbers are the product's either way; the label says what
 * they are). */
static char *diag_label_cancelled(lj_context *ctx, const char *la, const char *lb, bool *failed)
{
    *failed = false;
    if (strstr(la, "…") || strstr(lb, "…")) return NULL;
    const char *f[2 * LJI_HFACTORS];
    size_t n[2 * LJI_HFACTORS];
    int na = hadamard_factors(la, f, n), nb = na ? hadamard_factors(lb, f + na, n + na) : 0;
    if (!na || !nb) return NULL;
    return diag_label_powers(ctx, f, n, na + nb, failed);
}

/* a factor of a label "a ∘ b": a sum or a product in brackets, (a − b) ∘
 * c, (X·B) ∘ c; a value's
 * bracketed label without them where nothing is inside, x.^2 ∘ cos(x) */
static void put_hadamard_factor(lji_buf *b, const char *l)
{
    size_t n = strlen(l);
    if (lji_label_is_sum(l) || top_level_has(l, "·") || top_level_has(l, " ⊗ ")) lji_buf_printf(b, "(%s)", l);
    else if (lji_label_is_wrapped(l) && lji_label_is_atomic_n(l + 1, n - 2)) lji_buf_putn(b, l + 1, n - 2);
    else lji_buf_puts(b, l);
}

static bool commutes_with_transpose(const char *name, size_t n);

/* l as the matrix it is the vec of, new memory: "vec M" and "vec(M)" as
 * M, "f(vec M)" as f(M) for an elementwise f; NULL for any other label
 * (a column's own label among them: its shape is not known here), or on
 * failure to allocate (*nomem) */
static char *unvec(lj_context *ctx, const char *l, bool *nomem)
{
    size_t n = strlen(l), f = 0;
    bool plain = !strncmp(l, "vec ", 4) && lji_label_is_atomic(l + 4);
    if (plain || (!strncmp(l, "vec(", 4) && lji_label_is_wrapped(l + 3))) {
        char *m = plain ? lji_strdup(ctx, l + 4) : lji_strndup(ctx, l + 4, n - 5);
        if (!m) *nomem = true;
        return m;
    }
    while (isalpha((unsigned char)l[f])) f++;
    if (!strncmp(l, "σ(", strlen("σ("))) f = strlen("σ");
    if (!f || l[f] != '(' || !lji_label_is_wrapped(l + f) || (l[0] != '\xcf' && !commutes_with_transpose(l, f)) ||
        !strncmp(l, "inv", 3))
        return NULL;
    char *arg = lji_strndup(ctx, l + f + 1, n - f - 2);
    char *m = arg ? unvec(ctx, arg, nomem) : NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    if (m) lji_buf_printf(&b, "%.*s(%s)", (int)f, l, m);
    char *r = m ? lji_buf_finish(&b, "compose") : NULL;
    if (!arg || (m && !r)) *nomem = true;
    free(arg);
    free(m);
    return r;
}

/* "1./(k·R)", a reciprocal with a number inside, as "1./R" (new memory,
 * R bracketed unless atomic), *k = 1/k; "k./R" as "1./R", *k = k; NULL
 * and *k = 1 for any other
 * label, or on failure to allocate (*failed) */
static char *reciprocal_number(lj_context *ctx, const char *l, double *k, bool *failed)
{
    *k = 1;
    size_t n = strlen(l), w = 0;
    while (isdigit((unsigned char)l[w]) && w < 7) w++;
    if (w && !(w == 1 && l[0] == '1') && !strncmp(l + w, "./", 2) && l[w + 2] && !lji_label_is_sum(l)) {
        /* "k./R" (diag_label_powers writes 2./x) as k times "1./R" */
        lji_buf b;
        lji_buf_init(&b, ctx);
        lji_buf_printf(&b, "1./%s", l + w + 2);
        char *out = lji_buf_finish(&b, "compose");
        if (out) *k = strtod(l, NULL);
        else *failed = true;
        return out;
    }
    if (strncmp(l, "1./(", 4) || l[n - 1] != ')') return NULL;
    for (size_t i = 4, depth = 1; i + 1 < n; i++) { /* the bracket closes at the end */
        depth += l[i] == '(' ? 1 : l[i] == ')' ? (size_t)-1 : 0;
        if (!depth) return NULL;
    }
    double q;
    const char *r = lji_label_number(l + 4, &q);
    size_t nr = (size_t)(l + n - 1 - r);
    if (r == l + 4 || !(q > 0) || lji_label_minus_len(l + 4) || lji_label_is_sum(r)) return NULL;
    lji_buf b;
    lji_buf_init(&b, ctx);
    bool atomic = lji_label_is_atomic_n(r, nr);
    lji_buf_printf(&b, atomic ? "1./%.*s" : "1./(%.*s)", (int)nr, r);
    char *out = lji_buf_finish(&b, "compose");
    if (out) *k = 1 / q;
    else *failed = true;
    return out;
}

/* whether a label starts with a number times something: "2·x", "0.5·(a + b)" */
static bool number_times(const char *l)
{
    double k;
    return !lji_label_minus_len(l) && lji_label_number(l, &k) != l;
}

static lj_op *pair_rule(lj_context *ctx, const lj_op *x, const lj_op *y, bool *fail)
{
    *fail = false;
    lj_op *r = NULL;
    if (lji_is(x, &lji_kind_diag) && lji_is(y, &lji_kind_diag)) {
        /* Diag(a)·Diag(b) = Diag(a∘b) */
        int64_t n = x->rows;
        double *d = lji_malloc(ctx, (size_t)(n ? n : 1) * sizeof *d);
        /* the label "a ∘ b", cut to a bounded length so that long chains of
         * diagonal factors stay linear */
        const char *la = x->label ? x->label : "a", *lb2 = y->label ? y->label : "b";
        lji_buf lb;
        lji_buf_init(&lb, ctx);
        bool cfail = false;
        char *cancelled = x->label && y->label ? diag_label_cancelled(ctx, la, lb2, &cfail) : NULL;
        lb.failed |= cfail;
        double kx, ky;
        bool nx = lji_diag_is_number(x, &kx), ny = lji_diag_is_number(y, &ky);
        if (nx && ny) /* k·I times k'·I */
            lji_put_number(&lb, kx * ky, LJ_PRINT_UNICODE);
        else if ((nx || ny) && !cancelled) { /* k·I times Diag(d): k·d, its numbers met */
            const char *o = nx ? lb2 : la;
            size_t m = lji_label_negated_term(o);
            double ko, kt;
            const char *rest = lji_label_number(o + m, &ko);
            kt = (nx ? kx : ky) * ko * (m ? -1 : 1);
            if (kt == -1) lji_buf_puts(&lb, "−");
            else if (kt != 1) {
                lji_put_number(&lb, kt, LJ_PRINT_UNICODE);
                lji_buf_puts(&lb, "·");
            }
            if (kt == 1) lji_buf_puts(&lb, rest);
            else put_hadamard_factor(&lb, rest);
        } else if (cancelled) {
            lji_buf_puts(&lb, cancelled);
            free(cancelled);
        } else if (strlen(la) + strlen(lb2) <= LJI_DIAG_LABEL_MAX) { /* a sum's label in parentheses: (a − b) ∘ c */
            /* the factors' own minus signs in front: −x ∘ sin(x), not x ∘ −sin(x) */
            size_t ma = lji_label_negated_term(la), mb = lji_label_negated_term(lb2);
            if ((ma != 0) != (mb != 0)) lji_buf_puts(&lb, "−");
            la += ma, lb2 += mb;
            if (number_times(lb2) && !number_times(la)) { /* numbers first: 2·x ∘ exp(x) */
                const char *tmp = la;
                la = lb2, lb2 = tmp;
            }
            /* the numbers of both in front, and a reciprocal's where they
             * cancel: 2·x ∘ 1./(2·sqrt(u)) is x ∘ 1./sqrt(u) */
            double ka, kb, ra, rb;
            const char *na = lji_label_number(la, &ka), *nb = lji_label_number(lb2, &kb);
            bool nomem = false;
            char *qa = reciprocal_number(ctx, na, &ra, &nomem), *qb = reciprocal_number(ctx, nb, &rb, &nomem);
            lb.failed |= nomem;
            double k = ka * kb * ra * rb;
            if ((qa || qb) && k != floor(k)) { /* a reciprocal's number stays unless it cancels to a whole
                                                 * one: x ∘ 1./(2·sqrt(u)), but 2·x ∘ 1./sqrt(u) for 4·x ∘
                                                 * 1./(2·sqrt(u)) and (x + 2) ∘ 2./x for 2·(x + 2) ∘ 1./x */
                free(qa), free(qb);
                qa = qb = NULL;
                k = ka * kb;
            }
            if (qa || qb || ka != 1 || kb != 1) {
                if (k != 1) {
                    lji_put_number(&lb, k, LJ_PRINT_UNICODE);
                    lji_buf_puts(&lb, "·");
                }
                la = qa ? qa : na, lb2 = qb ? qb : nb;
            }
            /* vecs of matrices of one shape: vec A ∘ exp(vec X) is vec(A ∘
             * exp(X)); with a transpose inside, each vec stays its own, as
             * the labels of commuted Diags (vec_label_transposed) read them */
            bool tr = strstr(la, "^T") || strstr(lb2, "^T");
            char *ua = tr ? NULL : unvec(ctx, la, &nomem), *ub = ua ? unvec(ctx, lb2, &nomem) : NULL;
            lb.failed |= nomem;
            if (ua && ub) lji_buf_puts(&lb, "vec(");
            if (!(ua && ub) && k != 1 && !strncmp(la, "1./", 3) && lb.len >= strlen("·") &&
                !strcmp(lb.s + lb.len - strlen("·"), "·")) { /* 2./x ∘ …, not 2·1./x ∘ … */
                lb.len -= strlen("·");
                lb.s[lb.len] = '\0';
                lji_buf_puts(&lb, "./");
                lji_buf_puts(&lb, la + 3);
            } else
                put_hadamard_factor(&lb, ua && ub ? ua : la);
            lji_buf_puts(&lb, " ∘ ");
            put_hadamard_factor(&lb, ua && ub ? ub : lb2);
            if (ua && ub) lji_buf_puts(&lb, ")");
            free(qa), free(qb), free(ua), free(ub);
        } else
            lji_put_label_head(&lb, la, " ∘ …");
        char *label = lji_buf_finish(&lb, "compose");
        if (d && label) {
            for (int64_t i = 0; i < n; i++) d[i] = x->data[i] * y->data[i];
            r = lj_op_diag(ctx, n, d, label);
            if (r && (lji_tape_vol(ctx, x) || lji_tape_vol(ctx, y))) {
                lji_step st = { .type = LJI_STEP_DIAGPROD }; /* Diag(x∘y) while not all ones */
                lji_tape_diag_of_two(ctx, &st, x, y, r, "a product of Diags is I");
            }
        } else
            lji_nomem(ctx, "compose");
        free(d);
        free(label);
        *fail = !r;
        return r;
    }
    if (lji_is(x, &lji_kind_commutation) && lji_is(y, &lji_kind_commutation) && x->m == y->n &&
        x->n == y->m) {
        r = lj_op_identity(ctx, x->rows); /* K_{n,m} K_{m,n} = I */
        *fail = !r;
        return r;
    }
    bool ones_x = is_ones_row(x);
    if ((ones_x && lji_is(y, &lji_kind_commutation)) || (lji_is(x, &lji_kind_commutation) && is_ones_col(y))) {
        r = lj_op_retain((lj_op *)(ones_x ? x : y)); /* 1^T·K = 1^T, K·1 = 1 */
        *fail = !r;
        return r;
    }
    if (lji_is(x, &lji_kind_commutation) && lji_is(y, &lji_kind_sum)) return distribute_past(ctx, x, NULL, y, true, fail);
    if (lji_is(x, &lji_kind_sum) && lji_is(y, &lji_kind_commutation)) return distribute_past(ctx, y, NULL, x, false, fail);
    bool kx = lji_is(x, &lji_kind_kron), ky = lji_is(y, &lji_kind_kron);
    if (kx && lji_is(y, &lji_kind_sum)) return distribute_past(ctx, x, NULL, y, true, fail);
    if (lji_is(x, &lji_kind_sum) && ky) return distribute_past(ctx, y, NULL, x, false, fail);
    if ((kx && lji_is(y, &lji_kind_commutation)) || (ky && lji_is(x, &lji_kind_commutation))) {
        /* K_{p,m}(A ⊗ B)K_{n,q} = B ⊗ A (A m×n, B p×q) where one of the
         * two commutations is I, because p or m (n or q) is 1 */
        const lj_op *k = kx ? y : x, *A = (kx ? x : y)->child[0], *B = (kx ? x : y)->child[1];
        bool swaps = kx ? (A->rows == 1 || B->rows == 1) && k->m == A->cols && k->n == B->cols
                        : (A->cols == 1 || B->cols == 1) && k->m == B->rows && k->n == A->rows;
        if (swaps) {
            r = lji_op_kron_nc(ctx, B, A);
            *fail = !r;
        }
        return r;
    }
    if (ky && lji_is(x, &lji_kind_sampled)) /* P·(C ⊗ D)(E ⊗ F) = P·(CE ⊗ DF) */
        return lji_sampled_times_kron(ctx, x, y, fail);
    if (kx && ky) {
        const lj_op *A = x->child[0], *B = x->child[1], *C = y->child[0], *D = y->child[1];
        if (A->cols == C->rows && B->cols == D->rows) {
            r = kron_of_products(ctx, A, C, B, D);
            *fail = !r;
        }
        return r;
    }
    if (!kx && ky && is_plain_block(x)) {
        /* X = X ⊗ I_1 (or I_1 ⊗ X) when the other factor has one row */
        const lj_op *C = y->child[0], *D = y->child[1];
        if (D->rows == 1 && x->cols == C->rows) {
            lj_op *l = mul2(ctx, x, C);
            r = l ? lji_op_kron_nc(ctx, l, D) : NULL;
            lj_op_free(&l);
            *fail = !r;
        } else if (C->rows == 1 && x->cols == D->rows) {
            lj_op *l = mul2(ctx, x, D);
            r = l ? lji_op_kron_nc(ctx, C, l) : NULL;
            lj_op_free(&l);
            *fail = !r;
        }
        return r;
    }
    if (kx && !ky && is_plain_block(y)) {
        const lj_op *A = x->child[0], *B = x->child[1];
        if (B->cols == 1 && A->cols == y->rows) {
            lj_op *l = mul2(ctx, A, y);
            r = l ? lji_op_kron_nc(ctx, l, B) : NULL;
            lj_op_free(&l);
            *fail = !r;
        } else if (A->cols == 1 && B->cols == y->rows) {
            lj_op *l = mul2(ctx, B, y);
            r = l ? lji_op_kron_nc(ctx, A, l) : NULL;
            lj_op_free(&l);
            *fail = !r;
        }
        return r;
    }
    return NULL;
}

/* One vec in a Diag's label, transposed: its operand (in[0..k), what
 * follows "vec ", or "(…)" after "vec" when wrapped) loses its ^T where it
 * has one, else gains one: A → vec(A^T), A^T → vec A, (E^T) → vec(E) or
 * vec E, A·B → vec((A·B)^T) */
/* The elementwise functions of the expression language, and inv: f(A^T)
 * = f(A)^T for each. (Not sum, max or min, which reduce along one
 * dimension, nor vec.) */
static bool commutes_with_transpose(const char *name, size_t n)
{
    static const char *const names[] = { "exp",  "log",  "sin",     "cos",      "tanh",  "sqrt",  "abs",
                                         "sign", "relu", "tan",     "asin",     "acos",  "atan",  "sinh",
                                         "cosh", "sigmoid", "softplus", "log1p", "expm1", "inv" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == n && !strncmp(names[i], name, n)) return true;
    return false;
}

/* tmp = "f(A^T)" for such an f and an atomic or parenthesised A: "f(A)"
 * in place, true (f(A^T)^T = f(A)); else false, tmp as it was */
static bool drop_inner_transpose(char *tmp)
{
    size_t k = strlen(tmp), n = 0;
    while (isalnum((unsigned char)tmp[n])) n++;
    if (!n || tmp[n] != '(' || k < n + 5 || tmp[k - 1] != ')' || !commutes_with_transpose(tmp, n)) return false;
    int depth = 0; /* the call's parentheses close at the end */
    for (size_t i = n; i + 1 < k; i++) {
        depth += tmp[i] == '(' ? 1 : tmp[i] == ')' ? -1 : 0;
        if (depth == 0) return false;
    }
    char *arg = tmp + n + 1;
    size_t na = k - n - 2;
    if (na < 3 || strncmp(arg + na - 2, "^T", 2)) return false;
    char base[LJI_DIAG_LABEL_MAX + 8];
    memcpy(base, arg, na - 2);
    base[na - 2] = '\0';
    bool wrapped = lji_label_is_wrapped(base);
    if (!wrapped && !lji_label_is_atomic(base)) return false; /* A·B^T: the ^T is B's alone */
    size_t nb = strlen(base);
    const char *in = wrapped ? base + 1 : base;
    size_t ni = wrapped ? nb - 2 : nb;
    memcpy(arg, in, ni);
    arg[ni] = ')';
    arg[ni + 1] = '\0';
    return true;
}

static void put_vec_transposed(lji_buf *b, const char *in, size_t k, bool wrapped)
{
    char tmp[LJI_DIAG_LABEL_MAX + 8];
    const char *body = in;
    if (wrapped) body++, k -= 2; /* inside the parentheses */
    if (k >= sizeof tmp) k = sizeof tmp - 1; /* (labels are capped before this) */
    memcpy(tmp, body, k);
    tmp[k] = '\0';
    if (drop_inner_transpose(tmp)) { /* vec f(A^T) → vec f(A) */
        lji_buf_printf(b, "vec %s", tmp);
        return;
    }
    bool tr = k > 2 && !strcmp(tmp + k - 2, "^T");
    if (tr) tmp[k - 2] = '\0'; /* (M^T)^T = M */
    if (tr && lji_label_is_wrapped(tmp)) lji_buf_printf(b, "vec%s", tmp);
    else if (tr && lji_label_is_atomic(tmp)) lji_buf_printf(b, "vec %s", tmp);
    else {
        if (tr) tmp[k - 2] = '^';
        lji_buf_printf(b, lji_label_is_atomic(tmp) ? "vec(%s^T)" : "vec((%s)^T)", tmp);
    }
}

/* The label of Diag(vec M^T) from Diag(vec M)'s, M m×n: each "vec X" in
 * it transposed (the label is elementwise in vecs of m×n matrices, and
 * elementwise operations commute with the permutation), "vec A ∘
 * cos(vec(X^T))" → "vec(A^T) ∘ cos(vec X)". false (*out NULL) for a label
 * without one, one cut short ("…"), or out of memory (*nomem). */
static bool vec_label_transposed(lj_context *ctx, const char *l, char **out, bool *nomem)
{
    *out = NULL;
    *nomem = false;
    if (strstr(l, "…") || strlen(l) > LJI_DIAG_LABEL_MAX) return false;
    lji_buf b;
    lji_buf_init(&b, ctx);
    int found = 0;
    const char *s = l;
    while (*s) {
        bool boundary = s == l || !(isalnum((unsigned char)s[-1]) || s[-1] == '_');
        if (boundary && !strncmp(s, "vec ", 4)) {
            /* the atom after it: up to a space or a closing parenthesis outside its own */
            const char *e = s + 4;
            int depth = 0;
            while (*e && !(depth == 0 && (*e == ' ' || *e == ')' || *e == '}'))) {
                if (*e == '(' || *e == '{') depth++;
                else if (*e == ')' || *e == '}') depth--;
                e++;
            }
            if (e == s + 4) break; /* "vec " and nothing: not a label this reads */
            put_vec_transposed(&b, s + 4, (size_t)(e - s - 4), false);
            found++;
            s = e;
            continue;
        }
        if (boundary && !strncmp(s, "vec(", 4)) {
            const char *e = s + 3;
            int depth = 0;
            do {
                if (*e == '(') depth++;
                else if (*e == ')') depth--;
                e++;
            } while (*e && depth > 0);
            if (depth != 0) break; /* unbalanced: not a label this reads */
            put_vec_transposed(&b, s + 3, (size_t)(e - s - 3), true);
            found++;
            s = e;
            continue;
        }
        char c[2] = { *s++, 0 };
        lji_buf_puts(&b, c);
    }
    char *r = lji_buf_finish(&b, "compose");
    if (!r) {
        *nomem = true;
        return false;
    }
    if (!found || *s) { /* nothing to transpose, or a label it could not read to the end */
        free(r);
        return false;
    }
    *out = r;
    return true;
}

/* K_{m,n}·Diag(vec M)·K_{n,m} = Diag(vec M^T) for M m×n: the Diag's
 * entries as the m×n array they are, transposed. NULL where the Diag's
 * label is not one of vec M (the commutations then stay). */
static lj_op *commuted_diag(lj_context *ctx, const lj_op *x, const lj_op *y, bool *fail)
{
    int64_t m = x->m, n = x->n;
    char *label;
    bool nomem = false;
    if (!y->label || !vec_label_transposed(ctx, y->label, &label, &nomem)) {
        if (nomem) *fail = true;
        return NULL;
    }
    double *d = lji_malloc(ctx, (size_t)(m * n > 0 ? m * n : 1) * sizeof *d);
    lj_op *r = NULL;
    if (d) {
        lji_transpose(m, n, 1.0, y->data, m, 0.0, d, n);
        r = lj_op_diag(ctx, m * n, d, label);
    } else
        lji_nomem(ctx, "compose");
    free(d);
    free(label);
    *fail = !r;
    if (r && lji_tape_vol(ctx, y)) { /* a plan's tape permutes the Diag's new numbers again */
        if (!lji_is(r, &lji_kind_diag)) {
            lji_tape_break(ctx, "a permuted Diag of ones is I");
            return r;
        }
        lji_step st = { .type = LJI_STEP_TRANSPOSE, .dst = r->data, .rows = m, .cols = n, .x = y->data, .ldx = m,
                        .ldd = n, .node = { -1, -1 }, .src = { lji_tape_step_of(ctx, y), -1 } };
        lji_tape_add(ctx, &st, r, y);
    }
    return r;
}

/* K_{p,m}(A⊗B)K_{n,q} = B⊗A for A m×n, B p×q; K_{m,n}·Diag(vec M)·K_{n,m}
 * = Diag(vec M^T). */
static lj_op *triple_rule(lj_context *ctx, const lj_op *x, const lj_op *y, const lj_op *z,
                          bool *fail)
{
    *fail = false;
    if (lji_is(x, &lji_kind_commutation) && lji_is(y, &lji_kind_diag) && lji_is(z, &lji_kind_commutation) &&
        z->m == x->n && z->n == x->m)
        return commuted_diag(ctx, x, y, fail);
    if (!lji_is(x, &lji_kind_commutation) || !lji_is(y, &lji_kind_kron) ||
        !lji_is(z, &lji_kind_commutation))
        return NULL;
    const lj_op *A = y->child[0], *B = y->child[1];
    if (x->m != B->rows || x->n != A->rows || z->m != A->cols || z->n != B->cols) return NULL;
    lj_op *r = lji_op_kron_nc(ctx, B, A);
    *fail = !r;
    return r;
}

/* x·y = I for two commutations */
static bool commutations_cancel(const lj_op *x, const lj_op *y)
{
    return lji_is(x, &lji_kind_commutation) && lji_is(y, &lji_kind_commutation) && x->m == y->n && x->n == y->m;
}

/* Whether triple_rule turns x·y·z into one factor (without building it):
 * its shape conditions, and a Diag label it can transpose. */
/* K_{p,m}·(C ⊗ D) = (D ⊗ C)·K_{q,n} (C m×n, D p×q): whether the
 * commutation K and the Kronecker product P have those shapes */
static bool commutation_passes(const lj_op *K, const lj_op *P)
{
    return K->m == P->child[1]->rows && K->n == P->child[0]->rows;
}

static bool triple_cancels(lj_context *ctx, const lj_op *x, const lj_op *y, const lj_op *z, bool *fail)
{
    if (!lji_is(x, &lji_kind_commutation) || !lji_is(z, &lji_kind_commutation)) return false;
    if (lji_is(y, &lji_kind_diag)) {
        if (z->m != x->n || z->n != x->m || !y->label) return false;
        char *label;
        bool nomem, ok = vec_label_transposed(ctx, y->label, &label, &nomem);
        free(label);
        *fail = *fail || nomem;
        return ok;
    }
    if (!lji_is(y, &lji_kind_kron)) return false;
    const lj_op *A = y->child[0], *B = y->child[1];
    return commutation_passes(x, y) && z->m == A->cols && z->n == B->cols;
}

/* Whether x·y, two Kronecker products, is one by the mixed product
 * (x_0 ⊗ x_1)(y_0 ⊗ y_1) = x_0·y_0 ⊗ x_1·y_1 (pair_rule) */
static bool krons_fold(const lj_op *x, const lj_op *y)
{
    return lji_is(x, &lji_kind_kron) && lji_is(y, &lji_kind_kron) && x->child[0]->cols == y->child[0]->rows &&
           x->child[1]->cols == y->child[1]->rows;
}

/* Whether K·t (left) or t·K has no commutation left once multiplied out:
 * t begins (ends) with the commutation that cancels K, or with a Diag or
 * a Kronecker product and then that commutation (triple_rule). K a
 * Kronecker product instead: whether K·t (t·K) has one Kronecker product
 * fewer, t beginning (ending) with one that K folds into (krons_fold). */
static bool absorbs(lj_context *ctx, const lj_op *K, const lj_op *t, bool left, bool *fail)
{
    if (lji_is(t, &lji_kind_scaled)) t = t->child[0]; /* the product folds the scaling out */
    if (lji_is(K, &lji_kind_kron)) { /* t: P ⊗ Q, or (P ⊗ Q)·K' (left), K'·(P ⊗ Q) (right) */
        if (lji_is(t, &lji_kind_compose)) {
            const lj_op *c = t->child[left ? 1 : 0];
            if (t->nchild != 2 || !lji_is(c, &lji_kind_commutation)) return false;
            t = t->child[left ? 0 : 1];
        }
        return left ? krons_fold(K, t) : krons_fold(t, K);
    }
    if (commutations_cancel(left ? K : t, left ? t : K)) return true;
    if (!lji_is(t, &lji_kind_compose)) return false;
    int n = t->nchild;
    if (left)
        return commutations_cancel(K, t->child[0]) ||
               (n >= 2 && triple_cancels(ctx, K, t->child[0], t->child[1], fail));
    return commutations_cancel(t->child[n - 1], K) ||
           (n >= 2 && triple_cancels(ctx, t->child[n - 2], t->child[n - 1], K, fail));
}

/* Whether K·P·t (left) or t·P·K, P a Kronecker product, has no
 * commutation left: t begins (ends) with the commutation K' that makes
 * K·P·K' one Kronecker product (triple_rule). */
static bool absorbs_past(lj_context *ctx, const lj_op *K, const lj_op *P, const lj_op *t, bool left, bool *fail)
{
    if (lji_is(t, &lji_kind_scaled)) t = t->child[0];
    const lj_op *end = t;
    if (lji_is(t, &lji_kind_compose)) end = t->child[left ? 0 : t->nchild - 1];
    return left ? triple_cancels(ctx, K, P, end, fail) : triple_cancels(ctx, end, P, K, fail);
}

/* K·(t_1 + … + t_k) = K·t_1 + … + K·t_k (and (Σ t_i)·K alike) where all
 * terms but at most one absorb K: the derivative of a transpose of a sum
 * whose terms carry the inverse commutation, (X^T ∘ (A·X)^T)^T, reads
 * Diag(vec(A·X)) + Diag(vec X)·(I ⊗ A) instead of K·(Diag(vec((A·X)^T))·K
 * + …). A term that does not absorb K keeps it, as the sum did: neither
 * the commutations printed nor those applied grow. K a Kronecker product
 * alike, where every term is a Kronecker product it folds with (or one
 * and a commutation, after it): J of X·X·X reads (X^T·X^T ⊗ I) + (X^T ⊗
 * X) + (I ⊗ X·X), the Cookbook's form, instead of (X^T ⊗ I)·((X^T ⊗ I) +
 * (I ⊗ X)) + (I ⊗ X·X), and applies one Kronecker product fewer. NULL where two terms
 * or more would keep one. With a Kronecker product P between K and the
 * sum (P NULL: none), K·P·(t_1 + … + t_k) = K·P·t_1 + … + K·P·t_k alike,
 * where the terms absorb K past P: K·(I ⊗ A)·(I + K) reads K·(I ⊗ A) +
 * (A ⊗ I). */
static lj_op *distribute_past(lj_context *ctx, const lj_op *K, const lj_op *P, const lj_op *S, bool left,
                              bool *fail)
{
    int k = S->nchild, keeps = 0;
    /* a Kronecker product K folds into every term or none: the terms are
     * Kronecker products (and a commutation), and the sum stays flat (a
     * kept term with K in front of a deeper product would give shared
     * subtrees more parents, each one more walk for printing and
     * materialising) */
    const int most = lji_is(K, &lji_kind_kron) ? 1 : 2;
    for (int i = 0; i < k && keeps < most; i++)
        if (!(P ? absorbs_past(ctx, K, P, S->child[i], left, fail) : absorbs(ctx, K, S->child[i], left, fail)))
            keeps++;
    if (keeps >= most) return NULL;
    if (*fail) {
        lji_nomem(ctx, "compose");
        return NULL;
    }
    lj_op *room[8], **t = k <= 8 ? room : lji_calloc(ctx, (size_t)k, sizeof *t);
    lj_op *r = NULL;
    if (!t) {
        *fail = true;
        return NULL;
    }
    int made = 0;
    for (; made < k; made++) {
        const lj_op *f[3] = { K, P, S->child[made] };
        if (!left) f[0] = S->child[made], f[2] = K;
        if (!(t[made] = P ? compose_checked(ctx, 3, f) : mul2(ctx, f[0], f[2]))) break;
    }
    if (made == k) r = lj_op_lincomb(ctx, k, S->coef, (const lj_op *const *)t);
    for (int i = 0; i < made; i++) lj_op_free(&t[i]);
    if (t != room) free(t);
    *fail = !r;
    return r;
}

/* K·Diag(vec M)·(A ⊗ B)·K' = Diag(vec M^T)·(B ⊗ A) where K·(A ⊗ B)·K' is
 * B ⊗ A (triple_rule): the commutation passes the Diag, whose entries
 * it permutes (K·D = (K·D·K^T)·K), and meets the other; and K'·(A ⊗
 * B)·Diag(vec M)·K alike from the right. f: four factors. NULL where the
 * Diag's label cannot be transposed, or the factors are not of that form. */
static lj_op *commute_past_diag(lj_context *ctx, lj_op *const *f, bool *fail)
{
    *fail = false;
    lj_op *Dt = NULL, *kr = NULL, *r = NULL;
    if (lji_is(f[1], &lji_kind_diag) && lji_is(f[2], &lji_kind_kron) && triple_cancels(ctx, f[0], f[2], f[3], fail)) {
        if (!(Dt = commuted_diag(ctx, f[0], f[1], fail))) return NULL;
        kr = triple_rule(ctx, f[0], f[2], f[3], fail);
        r = kr ? mul2(ctx, Dt, kr) : NULL;
    } else if (lji_is(f[2], &lji_kind_diag) && lji_is(f[1], &lji_kind_kron) &&
               triple_cancels(ctx, f[0], f[1], f[3], fail)) {
        /* D·K_{a,b} = K_{a,b}·(K_{b,a}·D·K_{a,b}) */
        lj_op *Kt = lj_op_commutation(ctx, f[3]->n, f[3]->m);
        if (!Kt) {
            *fail = true;
            return NULL;
        }
        Dt = commuted_diag(ctx, Kt, f[2], fail);
        lj_op_free(&Kt);
        if (!Dt) return NULL;
        kr = triple_rule(ctx, f[0], f[1], f[3], fail);
        r = kr ? mul2(ctx, kr, Dt) : NULL;
    } else
        return NULL;
    lj_op_free(&Dt);
    lj_op_free(&kr);
    *fail = !r;
    return r;
}

/* K·P·S and S·P·K, P a Kronecker product, S a sum (distribute_past) */
static lj_op *sum_past_kron(lj_context *ctx, lj_op *const *f, bool *fail)
{
    *fail = false;
    if (!lji_is(f[1], &lji_kind_kron)) return NULL;
    if (lji_is(f[0], &lji_kind_commutation) && lji_is(f[2], &lji_kind_sum))
        return distribute_past(ctx, f[0], f[1], f[2], true, fail);
    if (lji_is(f[0], &lji_kind_sum) && lji_is(f[2], &lji_kind_commutation))
        return distribute_past(ctx, f[2], f[1], f[0], false, fail);
    return NULL;
}

static lj_op *triple_at(lj_context *ctx, lj_op *const *f, bool *fail)
{
    return triple_rule(ctx, f[0], f[1], f[2], fail);
}

/* 1^T·Diag(vec M)·K_{m,n} = 1^T·Diag(vec M^T), and K_{m,n}·Diag(vec M)·1
 * = Diag(vec M^T)·1: a row (column) of ones does not see the permutation
 * (1^T·K = 1^T), which the Diag passes transposed (D·K = K·(K^T·D·K)).
 * J of sum(sum(X'.*A)) reads (vec(A^T))^T, of sum(sum(exp(X'))) (exp(vec
 * X))^T, not (vec A)^T·K_{2,3}. NULL where the Diag's label cannot be
 * transposed. */
static lj_op *ones_past_commutation(lj_context *ctx, lj_op *const *f, bool *fail)
{
    *fail = false;
    bool row = is_ones_row(f[0]) && lji_is(f[1], &lji_kind_diag) && lji_is(f[2], &lji_kind_commutation);
    if (!row && !(lji_is(f[0], &lji_kind_commutation) && lji_is(f[1], &lji_kind_diag) && is_ones_col(f[2])))
        return NULL;
    const lj_op *K = row ? f[2] : f[0], *D = f[1];
    /* the Diag's entries moved as K^T·D·K (row) or K·D·K^T (column) moves them */
    lj_op *Kd = row ? lj_op_commutation(ctx, K->n, K->m) : lj_op_retain((lj_op *)K);
    if (!Kd) {
        *fail = true;
        return NULL;
    }
    lj_op *Dt = commuted_diag(ctx, Kd, D, fail);
    lj_op_free(&Kd);
    if (!Dt) return NULL;
    lj_op *r = row ? mul2(ctx, f[0], Dt) : mul2(ctx, Dt, f[2]);
    lj_op_free(&Dt);
    *fail = !r;
    return r;
}

/* (A ⊗ B)·K_{p,m}·(C ⊗ D) = (A·D ⊗ B·C)·K_{q,n} (C m×n, D p×q), where A
 * and D, B and C multiply: the commutation passes C ⊗ D (K_{p,m}(C ⊗ D)
 * = (D ⊗ C)·K_{q,n}, triple_rule's identity) and the two Kronecker
 * products fold. The Hessian of tr(X^{-1}) reads (X^{-1}·X^{-1} ⊗
 * X^{-T})·K + …, one Kronecker product fewer to apply. */
static lj_op *kron_past_commutation(lj_context *ctx, lj_op *const *f, bool *fail)
{
    *fail = false;
    const lj_op *P = f[0], *K = f[1], *Q = f[2];
    if (!lji_is(P, &lji_kind_kron) || !lji_is(K, &lji_kind_commutation) || !lji_is(Q, &lji_kind_kron)) return NULL;
    const lj_op *A = P->child[0], *B = P->child[1], *C = Q->child[0], *D = Q->child[1];
    if (!commutation_passes(K, Q) || A->cols != D->rows || B->cols != C->rows) return NULL;
    lj_op *kr = kron_of_products(ctx, A, D, B, C), *Kq = kr ? lj_op_commutation(ctx, D->cols, C->cols) : NULL;
    lj_op *r = Kq ? mul2(ctx, kr, Kq) : NULL;
    lj_op_free(&kr);
    lj_op_free(&Kq);
    *fail = !r;
    return r;
}

static lj_op *pair_at(lj_context *ctx, lj_op *const *f, bool *fail)
{
    return pair_rule(ctx, f[0], f[1], fail);
}

/* The product rules, each tried at every position of the factors before
 * the next, until none applies: n factors become one. */
static const struct {
    int n;
    lj_op *(*rule)(lj_context *ctx, lj_op *const *f, bool *fail);
} rules[] = { { 3, triple_at }, { 3, kron_past_commutation }, { 3, ones_past_commutation }, { 3, sum_past_kron }, { 4, commute_past_diag }, { 2, pair_at } };

/* lj_op_compose once its operands are checked */
/* The product of ops[0..n), checked. take: the caller's references to the
 * operands pass to it (freed on failure as well); else it retains them (or
 * takes those handed over). out (may be NULL): where the product would be
 * a new product node of up to LJI_CHAIN_MAX factors and no coefficient,
 * its factors go to *out instead, NULL is returned, and out->n > 0; else
 * out->n = 0. */
static lj_op *compose_core(lj_context *ctx, int n, const lj_op *const *ops, bool take, lji_chain *out)
{
    const char *op = "compose";
    if (out) out->n = 0;
    if (n == 0) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: no operands", op);
        return NULL;
    }
    for (int i = 0; i + 1 < n; i++)
        if (ops[i]->cols != ops[i + 1]->rows) {
            lji_error(ctx, LJ_ERR_SHAPE,
                      "%s: inner dimensions differ: " LJI_SHP "·" LJI_SHP " (factors %d and %d)",
                      op, ops[i]->rows, ops[i]->cols, ops[i + 1]->rows, ops[i + 1]->cols, i + 1,
                      i + 2);
            for (int k = 0; take && k < n; k++) {
                lj_op *a = (lj_op *)ops[k];
                lj_op_free(&a);
            }
            return NULL;
        }
    int64_t rows = ops[0]->rows, cols = ops[n - 1]->cols;
    factors fs; /* field by field: an initialiser would zero the room too, by `rep stos` (lji_zero) */
    fs.ctx = ctx, fs.f = fs.room, fs.n = 0, fs.cap = LJI_FACTORS_ROOM;
    fs.coef = (lji_coef){ .num = 1.0, .salpha = 1.0 };
    fs.zero = fs.failed = false;
    int next = 0;
    for (; next < n && !fs.failed; next++)
        factors_insert(&fs, fs.n, take ? (lj_op *)ops[next] : lji_take_ref(ctx, ops[next]));
    for (; take && next < n; next++) { /* what a failure left */
        lj_op *a = (lj_op *)ops[next];
        lj_op_free(&a);
    }
    lj_op *J = NULL;
    if (fs.failed) {
        lji_nomem(ctx, op);
        goto done;
    }
    if (fs.zero || fs.coef.num == 0.0) {
        J = lj_op_zero(ctx, rows, cols);
        goto done;
    }
    bool changed = true;
    while (changed && !fs.failed) {
        changed = false;
        for (int k = 0; k < (int)(sizeof rules / sizeof rules[0]) && !changed; k++)
            for (int i = 0; i + rules[k].n <= fs.n && !changed; i++) {
                bool fail;
                lj_op *r = rules[k].rule(ctx, fs.f + i, &fail);
                if (fail) goto fail;
                if (r) {
                    factors_replace(&fs, i, rules[k].n, r);
                    changed = true;
                }
            }
        if (fs.zero) {
            J = lj_op_zero(ctx, rows, cols);
            goto done;
        }
    }
    if (fs.failed) {
        lji_nomem(ctx, op);
        goto done;
    }
    /* the factors' references pass to the result (each reference count
     * changed is an atomic read-modify-write, and a Jacobian's build makes
     * dozens of products) */
    lj_op *core = NULL;
    if (fs.n == 0)
        core = lj_op_identity(ctx, rows);
    else if (fs.n == 1) {
        core = fs.f[0];
        fs.f[0] = NULL;
    } else if (out && fs.n <= LJI_CHAIN_MAX && fs.coef.num == 1.0 && !fs.coef.sym && !fs.coef.failed) {
        out->n = fs.n;
        out->rows = rows;
        out->cols = cols;
        for (int k = 0; k < fs.n; k++) {
            out->f[k] = fs.f[k];
            fs.f[k] = NULL;
        }
        goto done;
    } else {
        core = lji_op_new(ctx, &lji_kind_compose, rows, cols, fs.n, op);
        if (core) {
            for (int i = 0; i < fs.n; i++) {
                core->child[i] = fs.f[i];
                fs.f[i] = NULL;
            }
            lji_op_seal(core);
        }
    }
    if (core && (fs.coef.num != 1.0 || fs.coef.sym || fs.coef.failed)) {
        J = lji_coef_apply(ctx, &fs.coef, core);
        lj_op_free(&core);
    } else
        J = core;
    goto done;
fail:
    J = NULL;
done:
    for (int i = 0; i < fs.n; i++) lj_op_free(&fs.f[i]);
    if (fs.f != fs.room) free(fs.f);
    free(fs.coef.sym);
    return J;
}

static lj_op *compose_checked(lj_context *ctx, int n, const lj_op *const *ops)
{
    return compose_core(ctx, n, ops, false, NULL);
}

lj_op *lji_compose_chain(lj_context *ctx, int n, lj_op *const *ops, lji_chain *out)
{
    return compose_core(ctx, n, (const lj_op *const *)ops, true, out);
}

lj_op *lji_chain_finish(lj_context *ctx, lji_chain *c)
{
    /* the node compose_core would have made of them */
    lj_op *core = lji_op_new(ctx, &lji_kind_compose, c->rows, c->cols, c->n, "compose");
    if (!core) {
        lji_chain_free(c);
        return NULL;
    }
    for (int k = 0; k < c->n; k++) core->child[k] = c->f[k];
    c->n = 0;
    lji_op_seal(core);
    return core;
}

void lji_chain_free(lji_chain *c)
{
    for (int k = 0; k < c->n; k++) lj_op_free(&c->f[k]);
    c->n = 0;
}

lj_op *lj_op_compose(lj_context *ctx, int n, const lj_op *const *ops)
{
    if (lji_check_args(ctx, "compose", n, ops) != LJ_OK) return NULL;
    return compose_checked(ctx, n, ops);
}

lj_op *lj_op_mul(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const lj_op *ab[2] = { a, b };
    if (lji_check_args(ctx, "mul", 2, ab) != LJ_OK) return NULL;
    return compose_checked(ctx, 2, ab);
}

lj_op *lji_op_mul_nc(lj_context *ctx, const lj_op *a, const lj_op *b)
{
    const lj_op *ab[2] = { a, b };
    return compose_checked(ctx, 2, ab);
}
