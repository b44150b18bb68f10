/* libFuzzer target for the whole differentiation pipeline. The bytes choose
 * an expression, production by production, over a fixed table of small
 * leaves (dense and sparse, variables and constants) using every operation
 * and function of the language, shapes kept consistent; then:
 *
 *   parse → evaluate → print → re-parse → the same values;
 *   for each variable: J → lj_op_check (apply, transpose-apply and the
 *   materialised matrix agree) → its plain form, written in the language
 *   where it can be, evaluates to J → central differences at two step
 *   sizes;
 *   for a scalar: the gradient expression, lj_expr_gradient and J^T·1 agree,
 *   its plain form re-parses to the same values when it parses, and the
 *   Hessian passes lj_op_check, is symmetric and agrees with differences
 *   of the gradient.
 *
 * A disagreement aborts with a message, so the fuzzer finds wrong answers,
 * not only memory errors. Differences are trusted only where the
 * expression is smooth (no abs, sign, relu, max, min, norm1), every
 * argument of sin, cos and tan below 1e5 in size, and only when
 * the error is the same at both step sizes and the two steps' quotients
 * agree with each other (the mark of a wrong derivative, where truncation
 * and rounding errors change with the step). */
#include <lazyjac.h>
#include <float.h>
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the expression the bytes choose -------------------------------------------------- */

typedef struct {
    const uint8_t *d;
    size_t n, at;
    char text[4096];
    size_t len;
    bool smooth;
    /* the arguments of inv, det and logdet (spans of text), whose
     * conditioning decides whether the numbers can be compared */
    size_t arg[16][2];
    int nargs;
    /* the arguments of sin, cos and tan, whose size decides whether
     * differences can resolve them */
    size_t parg[16][2];
    int npargs;
    /* the divisors and the arguments of log, whose distance from zero
     * decides whether derivatives, which divide by them, mean anything */
    size_t qarg[16][2];
    int nqargs;
} gen;

static unsigned next(gen *g) { return g->at < g->n ? g->d[g->at++] : 0; }

__attribute__((format(printf, 2, 3))) static void put(gen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(g->text + g->len, sizeof g->text - g->len, fmt, ap);
    va_end(ap);
    if (k > 0) g->len = g->len + (size_t)k < sizeof g->text ? g->len + (size_t)k : sizeof g->text - 1;
}

static const char *const fns[] = { "exp", "log", "sin", "cos", "tan", "tanh", "sqrt", "abs", "sign", "relu",
                                   "asin", "acos", "atan", "sinh", "cosh", "sigmoid", "softplus", "log1p",
                                   "expm1" };
static const char *const numbers[] = { "2", "0.5", "-1.5", "3", "0.25" };

typedef enum { MAT, VEC, SCAL } shape; /* 3×3, 3×1, 1×1 */

static void expr(gen *g, shape s, int depth);

static void fn(gen *g, shape s, int depth)
{
    unsigned k = next(g) % (sizeof fns / sizeof fns[0]);
    if (k >= 7 && k <= 9) g->smooth = false; /* abs, sign, relu */
    put(g, "%s(", fns[k]);
    size_t from = g->len;
    expr(g, s, depth + 1);
    if (k >= 2 && k <= 4 && g->npargs < 16) { /* sin, cos, tan */
        g->parg[g->npargs][0] = from;
        g->parg[g->npargs++][1] = g->len;
    }
    if (k == 1 && g->nqargs < 16) { /* log */
        g->qarg[g->nqargs][0] = from;
        g->qarg[g->nqargs++][1] = g->len;
    }
    put(g, ")");
}

static void bin(gen *g, shape a, const char *op, shape b, int depth)
{
    put(g, "(");
    expr(g, a, depth + 1);
    put(g, "%s", op);
    size_t from = g->len;
    expr(g, b, depth + 1);
    if (strchr(op, '/') && g->nqargs < 16) { /* ./ and / */
        g->qarg[g->nqargs][0] = from;
        g->qarg[g->nqargs++][1] = g->len;
    }
    put(g, ")");
}

static void call2(gen *g, const char *name, shape a, shape b, int depth)
{
    put(g, "%s(", name);
    expr(g, a, depth + 1);
    put(g, ", ");
    expr(g, b, depth + 1);
    put(g, ")");
}

static void call1(gen *g, const char *name, shape a, int depth)
{
    put(g, "%s(", name);
    size_t from = g->len;
    expr(g, a, depth + 1);
    if (a == MAT && (!strcmp(name, "inv") || !strcmp(name, "det") || !strcmp(name, "logdet")) && g->nargs < 16) {
        g->arg[g->nargs][0] = from;
        g->arg[g->nargs++][1] = g->len;
    }
    put(g, ")");
}

static void expr(gen *g, shape s, int depth)
{
    unsigned c = next(g);
    bool leaf = depth >= 4 || g->len > 1500;
    if (s == MAT) {
        static const char *const leaves[] = { "A", "B", "S", "M", "eye(3)", "ones(3,3)" };
        if (leaf || c % 24 < 5) { /* (ones only at the depth limit) */
            put(g, "%s", leaves[leaf ? c % 6 : c % 24]);
            return;
        }
        switch (c % 24) {
        case 5: bin(g, MAT, " + ", MAT, depth); break;
        case 6: bin(g, MAT, " - ", MAT, depth); break;
        case 7: bin(g, MAT, " .* ", MAT, depth); break;
        case 8: bin(g, MAT, " * ", MAT, depth); break;
        case 9: put(g, "("), expr(g, MAT, depth + 1), put(g, ")'"); break;
        case 10: put(g, "(-"), expr(g, MAT, depth + 1), put(g, ")"); break;
        case 11: put(g, "(%s * ", numbers[next(g) % 5]), expr(g, MAT, depth + 1), put(g, ")"); break;
        case 12: fn(g, MAT, depth); break;
        case 13: call1(g, "inv", MAT, depth); break;
        case 14: put(g, "("), expr(g, MAT, depth + 1), put(g, "^%u)", 2 + next(g) % 2); break;
        case 15: put(g, "("), expr(g, MAT, depth + 1), put(g, ".^2)"); break;
        case 16: put(g, "("), expr(g, VEC, depth + 1), put(g, " * ("), expr(g, VEC, depth + 1), put(g, ")')"); break;
        case 17: call1(g, "diag", VEC, depth); break;
        case 18: g->smooth = false, call2(g, "max", MAT, MAT, depth); break;
        case 19: g->smooth = false, call2(g, "min", MAT, MAT, depth); break;
        case 20: bin(g, MAT, " / ", SCAL, depth); break;
        case 21: bin(g, SCAL, " * ", MAT, depth); break;
        case 22: bin(g, MAT, " ./ ", MAT, depth); break;
        default: put(g, "kron(("), expr(g, VEC, depth + 1), put(g, ")', "), expr(g, VEC, depth + 1), put(g, ")");
        }
        return;
    }
    if (s == VEC) {
        if (leaf || c % 13 < 2) {
            put(g, "%s", c % 2 ? "x" : "y");
            return;
        }
        switch (c % 13) {
        case 2: bin(g, MAT, " * ", VEC, depth); break;
        case 3: bin(g, VEC, " + ", VEC, depth); break;
        case 4: bin(g, VEC, " .* ", VEC, depth); break;
        case 5: fn(g, VEC, depth); break;
        case 6: call1(g, "diag", MAT, depth); break;
        case 7: bin(g, SCAL, " * ", VEC, depth); break;
        case 8: put(g, "(-"), expr(g, VEC, depth + 1), put(g, ")"); break;
        case 9: put(g, "(("), expr(g, MAT, depth + 1), put(g, ")' * "), expr(g, VEC, depth + 1), put(g, ")"); break;
        case 10: g->smooth = false, call2(g, "max", VEC, VEC, depth); break;
        case 11: bin(g, VEC, " - ", VEC, depth); break;
        default: bin(g, VEC, " ./ ", VEC, depth);
        }
        return;
    }
    if (leaf || c % 19 < 2) {
        if (c % 2) put(g, "s");
        else put(g, "%s", numbers[(c / 2) % 5]);
        return;
    }
    switch (c % 19) {
    case 2: call1(g, "tr", MAT, depth); break;
    case 3: call1(g, "sum", MAT, depth); break;
    case 4: call1(g, "norm2", MAT, depth); break;
    case 5: g->smooth = false, call1(g, "norm1", VEC, depth); break;
    case 6: call1(g, "det", MAT, depth); break;
    case 7: call1(g, "logdet", MAT, depth); break;
    case 8: put(g, "(("), expr(g, VEC, depth + 1), put(g, ")' * "), expr(g, VEC, depth + 1), put(g, ")"); break;
    case 9:
        put(g, "(("), expr(g, VEC, depth + 1), put(g, ")' * "), expr(g, MAT, depth + 1), put(g, " * "),
            expr(g, VEC, depth + 1), put(g, ")");
        break;
    case 10: bin(g, SCAL, " * ", SCAL, depth); break;
    case 11: bin(g, SCAL, " + ", SCAL, depth); break;
    case 12: put(g, "("), expr(g, SCAL, depth + 1), put(g, "^2)"); break;
    case 13: fn(g, SCAL, depth); break;
    case 14: call1(g, "sum", VEC, depth); break;
    case 15: bin(g, SCAL, " / ", SCAL, depth); break;
    case 16: bin(g, SCAL, " - ", SCAL, depth); break;
    case 17: put(g, "sum(vec("), expr(g, MAT, depth + 1), put(g, "))"); break;
    default: put(g, "tr(kron("), expr(g, MAT, depth + 1), put(g, ", "), expr(g, MAT, depth + 1), put(g, "))");
    }
}

/* ---- the checks ----------------------------------------------------------------------- */

static const char *input_text;

/* S's stored entries (0-based row, column), CSC order */
static const int64_t s_row[4] = { 0, 2, 1, 2 }, s_col[4] = { 0, 0, 1, 2 };

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_pipeline: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n  expression: %s\n", input_text);
    va_end(ap);
    abort();
}

/* max |a - b| relative to max(1, |b|, scale), or -1 where a value is not
 * finite or is 1e8 or more */
static double gap_scaled(const double *a, const double *b, int64_t n, double scale)
{
    double d = 0, big = scale > 1 ? scale : 1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i]) || fabs(b[i]) > 1e8 || fabs(a[i]) > 1e8) return -1;
        d = fmax(d, fabs(a[i] - b[i]));
        big = fmax(big, fabs(b[i]));
    }
    return d / big;
}

static double gap(const double *a, const double *b, int64_t n)
{
    return gap_scaled(a, b, n, 1);
}

static double *values(lj_context *ctx, const lj_expr *e)
{
    int64_t r, c;
    double *v = NULL;
    if (lj_expr_eval(ctx, e, &r, &c, &v) != LJ_OK) {
        lj_context_clear(ctx);
        return NULL;
    }
    return v;
}

/* The central differences of f w.r.t. the variable v at the two steps
 * agree with each other, entry by entry, to within tol (a sixteenth of
 * their error against J) and to 10⁻³ of their own size (plus their
 * rounding): they have converged, so that an error both make against J is
 * J's. A function that varies within the step (sin(exp(tr(kron(s*B,
 * 2*A)))), the sine of a large exponential) gives quotients that differ
 * at each step, both far from J (205 and 20 515 against J's 388 000).
 * A sparse variable (S) is perturbed in its stored entries. True where
 * this cannot be told (a failed evaluation). */
static bool quotients_agree(lj_context *ctx, const lj_expr *f, lj_expr *v, double tol, double rounding)
{
    int64_t n = lj_expr_nvalues(v), nf = lj_expr_nvalues(f), rows = lj_expr_rows(v);
    bool sparse = lj_expr_is_sparse(v);
    if (sparse ? n != 4 || rows != 3 : n != rows * lj_expr_cols(v)) return true;
    double *x0 = values(ctx, v), *x = x0 ? malloc(sizeof *x * (size_t)n) : NULL;
    if (sparse && x) /* S's stored entries, from its dense values */
        for (int64_t k = 0; k < n; k++) x[k] = x0[s_row[k] + rows * s_col[k]];
    if (sparse && x) memcpy(x0, x, sizeof *x * (size_t)n);
    double *q[4];
    bool agree = x != NULL, done;
    for (int s = 0; s < 4; s++) agree &= (q[s] = malloc(sizeof(double) * (size_t)(nf + 1))) != NULL;
    done = agree;
    for (int64_t j = 0; j < n && agree && done; j++) {
        /* the two steps, and two larger ones: a function beyond the
         * resolution of its own arguments (sin(exp(tr(kron(A, A))) +
         * x'*A*y), exp(…) so large that x'*A*y's change is lost in its
         * rounding) is frozen at the small steps (unchanged, or changed in
         * its smooth parts only) and jumps at 10⁻³ or 0.5; a smooth one
         * gives at 10⁻³ what it gives at 10⁻⁵, to truncation, far within
         * a wrong derivative's error (the Hessian of sin(exp(tr(kron(A,
         * A))) + y'*A*x/(s + s)) w.r.t. s: 0.300109 at the small steps,
         * 0.297521 at 10⁻³, its error against H 0.0023) */
        const double hs[4] = { 1e-5, 2.5e-6, 1e-3, 0.5 };
        for (int s = 0; s < 4 && done; s++) {
            double *fp = NULL, *fm = NULL;
            memcpy(x, x0, sizeof *x * (size_t)n);
            x[j] = x0[j] + hs[s];
            if (lj_expr_set_value(ctx, v, x) == LJ_OK) fp = values(ctx, f);
            x[j] = x0[j] - hs[s];
            if (fp && lj_expr_set_value(ctx, v, x) == LJ_OK) fm = values(ctx, f);
            if (s < 2) done = fp && fm; /* a large step may fail (log of a negative): then it tells nothing */
            for (int64_t k = 0; done && k < nf; k++) q[s][k] = fp && fm ? (fp[k] - fm[k]) / (2 * hs[s]) : 0;
            free(fp);
            free(fm);
        }
        for (int64_t k = 0; done && k < nf && agree; k++) {
            const double d = fabs(q[0][k] - q[1][k]);
            agree = d <= tol && d <= 1e-3 * fmax(fabs(q[0][k]), fabs(q[1][k])) + rounding &&
                    fabs(q[2][k] - q[0][k]) <= tol + rounding &&
                    !(q[0][k] == 0 && q[1][k] == 0 && q[3][k] != 0);
        }
    }
    if (x0 && lj_expr_set_value(ctx, v, x0) != LJ_OK) fail("differences: set_value: %s", lj_context_message(ctx));
    lj_context_clear(ctx);
    free(x0);
    free(x);
    for (int s = 0; s < 4; s++) free(q[s]);
    return agree || !done;
}

/* J (largest entry jbig) against central differences at two steps: an
 * error above 1e-4 (of max(1, |J|)) that is the same at both is a wrong
 * derivative, once the rounding of f's own values is allowed for: a
 * difference of two values near |f| is good to about eps·|f| only, so
 * sum(0.25*A - S') + sinh(sinh(sinh(2))), whose values are 7.3e7, gives
 * 3.4e-4 at both steps with a J that is exact (the steps' quotients of
 * whole ulps happened to err alike) */
static void differences(lj_context *ctx, const lj_expr *f, lj_expr *v, const lj_op *J, double jbig,
                        const char *what)
{
    double m1, f1, m2, f2;
    if (lj_expr_fd_check(ctx, f, v, J, 1e-5, &m1, &f1) != LJ_OK ||
        lj_expr_fd_check(ctx, f, v, J, 2.5e-6, &m2, &f2) != LJ_OK) {
        lj_context_clear(ctx);
        return;
    }
    (void)f1, (void)f2; /* relative to ‖J‖, meaningless where J is 0 to rounding */
    double *fv = values(ctx, f), fbig = 0;
    for (int64_t k = 0; fv && k < lj_expr_nvalues(f); k++) fbig = fmax(fbig, fabs(fv[k]));
    free(fv);
    /* the quotient's rounding, relative to max(1, |J|), at each step */
    double r1 = 16 * DBL_EPSILON * fbig / (2 * 1e-5) / fmax(1, jbig), r2 = r1 * 4;
    if (m1 > 1e-4 + r1 && m2 > 1e-4 + r2 && m2 / m1 > 0.7 && m2 / m1 < 1.4 &&
        quotients_agree(ctx, f, v, fmin(m1, m2) / 16 * fmax(1, jbig), r2 * fmax(1, jbig)))
        fail("%s: differs from central differences by %.3g (h = 1e-5) and %.3g (h = 2.5e-6), relative to "
             "max(1, |J|)", what, m1, m2);
}

/* A materialised (m·n small) into a new array, or NULL */
static double *dense_abs(lj_context *ctx, const lj_op *A)
{
    int64_t m = lj_op_rows(A), n = lj_op_cols(A);
    if (m * n > 1 << 16) return NULL;
    double *D = malloc(sizeof *D * (size_t)(m * n + 1));
    if (D && lj_op_to_dense(ctx, A, D, m > 0 ? m : 1) == LJ_OK) {
        for (int64_t k = 0; k < m * n; k++) D[k] = fabs(D[k]);
    } else {
        free(D);
        D = NULL;
    }
    lj_context_clear(ctx);
    return D;
}

/* |J x| / |C x| at the entry where |C x| is largest, x a fixed vector:
 * the size of the scalar in J = alpha·C; -1 where C x is zero or an apply
 * fails */
static double applied_ratio(lj_context *ctx, const lj_op *J, const lj_op *C)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    double *x = malloc(sizeof *x * (size_t)(n + 1)), *y = malloc(sizeof *y * (size_t)(m + 1));
    double *z = malloc(sizeof *z * (size_t)(m + 1)), r = -1;
    if (x && y && z) {
        for (int64_t j = 0; j < n; j++) x[j] = sin(1.0 + (double)j);
        if (lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) == LJ_OK && lj_op_apply(ctx, C, 0, 1.0, x, 0.0, z) == LJ_OK) {
            int64_t at = -1;
            for (int64_t i = 0; i < m; i++)
                if (fabs(z[i]) > 0 && (at < 0 || fabs(z[i]) > fabs(z[at]))) at = i;
            if (at >= 0) r = fabs(y[at] / z[at]);
        }
    }
    lj_context_clear(ctx);
    free(x), free(y), free(z);
    return r;
}

/* An entrywise bound on J's terms before they cancel, |F1|·|F2| for a
 * product F1·F2, |T1| + |T2| for a sum, |A| ⊗ |B|, |A|^T and stacks
 * likewise, |J| for the rest (m×n, column-major, a new array), or NULL.
 * Rounding in an apply or a materialisation is relative to it, not to J's
 * own entries, which may have cancelled to nothing. A sum's coefficients
 * are not read (its scaled terms' are, off the materialised terms or, where
 * those are zero, off the applied ones). */
static double *term_bound(lj_context *ctx, const lj_op *J)
{
    int kind = lj_op_kind_of(J), nc = lj_op_n_children(J);
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    if (m * n > 1 << 16) return NULL;
    if (kind != LJ_OP_COMPOSE && kind != LJ_OP_KRON && kind != LJ_OP_SUM && kind != LJ_OP_TRANSPOSE &&
        kind != LJ_OP_HSTACK && kind != LJ_OP_VSTACK && kind != LJ_OP_SCALED)
        return dense_abs(ctx, J);
    double *B = NULL, *C[16] = { NULL };
    if (nc > 16) return NULL;
    bool ok = true;
    for (int i = 0; i < nc && ok; i++) ok = (C[i] = term_bound(ctx, lj_op_child(J, i))) != NULL;
    if (ok) B = calloc((size_t)(m * n + 1), sizeof *B);
    if (B && kind == LJ_OP_COMPOSE) { /* left to right: P = |F1|·…·|Fi| */
        int64_t pr = lj_op_rows(lj_op_child(J, 0)), pc = lj_op_cols(lj_op_child(J, 0));
        double *P = C[0];
        C[0] = NULL;
        for (int i = 1; i < nc && P; i++) {
            int64_t fc = lj_op_cols(lj_op_child(J, i));
            double *Q = calloc((size_t)(pr * fc + 1), sizeof *Q);
            if (Q)
                for (int64_t j = 0; j < fc; j++)
                    for (int64_t k = 0; k < pc; k++)
                        for (int64_t r = 0; r < pr; r++) Q[r + j * pr] += P[r + k * pr] * C[i][k + j * pc];
            free(P);
            P = Q, pc = fc;
        }
        if (P) memcpy(B, P, sizeof *B * (size_t)(m * n));
        else ok = false;
        free(P);
    } else if (B && kind == LJ_OP_KRON) { /* two factors at a time */
        const lj_op *c0 = lj_op_child(J, 0);
        int64_t ar = lj_op_rows(c0), ac = lj_op_cols(c0);
        double *P = C[0];
        C[0] = NULL;
        for (int i = 1; i < nc && P; i++) {
            const lj_op *ci = lj_op_child(J, i);
            int64_t br = lj_op_rows(ci), bc = lj_op_cols(ci), r = ar * br;
            double *Q = calloc((size_t)(r * ac * bc + 1), sizeof *Q);
            if (Q)
                for (int64_t ja = 0; ja < ac; ja++)
                    for (int64_t jb = 0; jb < bc; jb++)
                        for (int64_t ia = 0; ia < ar; ia++)
                            for (int64_t ib = 0; ib < br; ib++)
                                Q[(ia * br + ib) + (ja * bc + jb) * r] = P[ia + ja * ar] * C[i][ib + jb * br];
            free(P);
            P = Q, ar = r, ac *= bc;
        }
        if (P) memcpy(B, P, sizeof *B * (size_t)(m * n));
        else ok = false;
        free(P);
    } else if (B && kind == LJ_OP_SUM) {
        for (int i = 0; i < nc; i++)
            for (int64_t k = 0; k < m * n; k++) B[k] += C[i][k];
    } else if (B && kind == LJ_OP_TRANSPOSE) {
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < m; i++) B[i + j * m] = C[0][j + i * n];
    } else if (B && kind == LJ_OP_HSTACK) {
        for (int i = 0, off = 0; i < nc; i++) {
            int64_t w = lj_op_cols(lj_op_child(J, i));
            memcpy(B + (int64_t)off * m, C[i], sizeof *B * (size_t)(m * w));
            off += (int)w;
        }
    } else if (B && kind == LJ_OP_VSTACK) {
        for (int i = 0, off = 0; i < nc; i++) {
            int64_t h = lj_op_rows(lj_op_child(J, i));
            for (int64_t j = 0; j < n; j++) memcpy(B + off + j * m, C[i] + j * h, sizeof *B * (size_t)h);
            off += (int)h;
        }
    } else if (B && kind == LJ_OP_SCALED) { /* |alpha| off the two materialised, else applied */
        double *D = dense_abs(ctx, J), *E = dense_abs(ctx, lj_op_child(J, 0)), alpha = -1;
        for (int64_t k = 0; D && E && k < m * n && alpha < 0; k++)
            if (E[k] > 0) alpha = D[k] / E[k];
        /* a child that materialises to zeros (terms that cancel exactly,
         * tr(P) of a P whose diagonal sums to 0) may apply to rounding
         * noise, which alpha (1/tr(…), huge) multiplies */
        if (D && E && alpha < 0) alpha = applied_ratio(ctx, J, lj_op_child(J, 0));
        ok = D && E && alpha >= 0;
        for (int64_t k = 0; k < m * n; k++) B[k] = alpha * C[0][k];
        free(D), free(E);
    }
    for (int i = 0; i < nc; i++) free(C[i]);
    if (!ok) {
        free(B);
        B = NULL;
    }
    return B;
}

/* a plain or LaTeX form: ASCII, its braces balanced (a label cut short
 * may leave a parenthesis open, not a brace) */
static void ascii_form(const char *what, const char *p)
{
    int curly = 0;
    for (const char *c = p; *c; c++) {
        if ((unsigned char)*c >= 0x80) fail("%s: '%s' is not ASCII", what, p);
        curly += *c == '{' ? 1 : *c == '}' ? -1 : 0;
        if (curly < 0) fail("%s: '%s' closes a brace it did not open", what, p);
    }
    if (curly) fail("%s: '%s' leaves a brace open", what, p);
}

/* J's plain form written in the language (Diag( as diag(, I_n as eye(n),
 * 1_n as ones(n,1), 0_{rxc} and 1_{rxc} as zeros(r,c) and ones(r,c)),
 * where it parses, evaluates to J: a label's rewriting (numbers met,
 * powers gathered and cancelled, σ, like terms met) never changes what J
 * is. Forms the language cannot write (K, P_S, a cut label, vec X) are
 * skipped. Compared relative to J's terms (terms: operator_check's), as
 * J^T·1 is against the gradient: the form evaluates in its own order. */
static void printed_j_check(lj_context *ctx, const lj_op *J, const lj_symtab *t, const char *what, double terms)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J), r, c, pos;
    if (m * n > 4096 || terms < 0 || terms >= 1e6) return;
    char *p = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
    if (!p) fail("%s: printing failed: %s", what, lj_context_message(ctx));
    char *src = malloc(4 * strlen(p) + 16), *w = src;
    if (!src) fail("out of memory");
    for (const char *q = p; *q;) {
        bool word = q == p || !(isalnum((unsigned char)q[-1]) || q[-1] == '_');
        if (word && !strncmp(q, "Diag(", 5)) w += sprintf(w, "diag("), q += 5;
        else if (word && (!strncmp(q, "I_", 2) || !strncmp(q, "1_", 2)) && isdigit((unsigned char)q[2])) {
            char *end;
            long k = strtol(q + 2, &end, 10);
            w += q[0] == 'I' ? sprintf(w, "eye(%ld)", k) : sprintf(w, "ones(%ld,1)", k);
            q = end;
        } else if (word && (q[0] == '0' || q[0] == '1') && !strncmp(q + 1, "_{", 2) && isdigit((unsigned char)q[3])) {
            /* 0_{3x2}, 1_{3x2} */
            char *x, *end;
            long r0 = strtol(q + 3, &x, 10), c0 = *x == 'x' ? strtol(x + 1, &end, 10) : -1;
            if (c0 < 0 || *end != '}') {
                *w++ = *q++;
                continue;
            }
            w += sprintf(w, q[0] == '0' ? "zeros(%ld,%ld)" : "ones(%ld,%ld)", r0, c0);
            q = end + 1;
        } else
            *w++ = *q++;
    }
    *w = '\0';
    lj_expr *back = lj_parse(ctx, src, t, &pos);
    double *bv = NULL, *D = malloc(sizeof *D * (size_t)(m * n + 1));
    if (!D) fail("out of memory");
    if (back && lj_expr_eval(ctx, back, &r, &c, &bv) == LJ_OK && r * c == m * n && lj_op_to_dense(ctx, J, D, m) == LJ_OK) {
        double d = gap_scaled(bv, D, m * n, fmax(1, terms));
        if (d > 1e-7) fail("%s: printed '%s', which evaluates %.3g away from J", what, p, d);
    }
    lj_context_clear(ctx);
    lj_free(bv);
    lj_expr_free(&back);
    free(D);
    free(src);
    lj_free(p);
}

/* J x and J^T y against the materialised matrix D, each error measured
 * against max(1, max |D|, max of the bound on J's terms)·‖x‖₁ with a tolerance
 * of 1e-7: an operator whose terms cancel to rounding (Diag(1 ⊘ A) −
 * Diag(A ⊘ A^2), or Diag(exp(…))·(T1 − T2) whose T1 and T2 are equal
 * and the exponential large) or that chains many products (the Hessian
 * of logdet(A^18)) is applied and materialised in different orders, and
 * the leaves here are of order 1; a wrong operator is off by far more.
 * Where the terms exceed 1e8, rounding says nothing. The largest entry of
 * the bound goes to *terms_out. */
static double operator_check(lj_context *ctx, const lj_op *J, const char *what, double *terms_out)
{
    double largest = -1; /* max |D|, or -1: not materialised or not finite */
    *terms_out = -1;     /* max of the bound on J's terms, or -1: not known */
    char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    if (!p) fail("%s: printing failed: %s", what, lj_context_message(ctx));
    lj_free(p);
    for (int k = LJ_PRINT_PLAIN; k <= LJ_PRINT_LATEX; k++) {
        p = lj_op_print(ctx, J, (lj_print_format)k);
        if (!p) fail("%s: printing failed: %s", what, lj_context_message(ctx));
        ascii_form(what, p);
        lj_free(p);
    }
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    if (m * n > 1 << 16) return largest;
    double *D = malloc(sizeof *D * (size_t)(m * n + 1)), *x = malloc(sizeof *x * (size_t)(n + 1));
    double *y = malloc(sizeof *y * (size_t)(m + 1)), *u = malloc(sizeof *u * (size_t)(m + 1));
    double *v = malloc(sizeof *v * (size_t)(n + 1));
    if (D && x && y && u && v && lj_op_to_dense(ctx, J, D, m > 0 ? m : 1) == LJ_OK) {
        for (int64_t j = 0; j < n; j++) x[j] = sin(1.0 + (double)j);
        for (int64_t i = 0; i < m; i++) u[i] = cos(2.0 + (double)i);
        if (lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) == LJ_OK && lj_op_apply(ctx, J, 1, 1.0, u, 0.0, v) == LJ_OK) {
            bool finite = true;
            double big = 1, sx = 0, su = 0;
            for (int64_t k = 0; k < m * n; k++) {
                finite = finite && isfinite(D[k]) && fabs(D[k]) < 1e8;
                big = fmax(big, fabs(D[k]));
            }
            if (finite) largest = big;
            double *T = finite ? term_bound(ctx, J) : NULL, terms = 0;
            bool bounded = T != NULL;
            for (int64_t k = 0; bounded && k < m * n; k++) terms = fmax(terms, T[k]);
            free(T);
            if (bounded) *terms_out = terms;
            if (!bounded || !(terms < 1e8)) finite = false;
            else big = fmax(big, terms);
            for (int64_t j = 0; j < n; j++) sx += fabs(x[j]);
            for (int64_t i = 0; i < m; i++) su += fabs(u[i]);
            for (int64_t i = 0; i < m && finite; i++) {
                double s = 0;
                for (int64_t j = 0; j < n; j++) s += D[i + j * m] * x[j];
                if (fabs(y[i] - s) > 1e-7 * big * sx)
                    fail("%s: J x differs from the materialised matrix in row %lld: %.17g against %.17g", what,
                         (long long)i, y[i], s);
            }
            for (int64_t j = 0; j < n && finite; j++) {
                double s = 0;
                for (int64_t i = 0; i < m; i++) s += D[i + j * m] * u[i];
                if (fabs(v[j] - s) > 1e-7 * big * su)
                    fail("%s: J^T y differs from the materialised matrix in column %lld: %.17g against %.17g",
                         what, (long long)j, v[j], s);
            }
        }
    }
    lj_context_clear(ctx);
    free(D), free(x), free(y), free(u), free(v);
    return largest;
}

static void hessian_symmetric(lj_context *ctx, const lj_op *H, const char *what)
{
    int64_t n = lj_op_rows(H);
    if (lj_op_cols(H) != n) fail("%s: not square, %lld×%lld", what, (long long)n, (long long)lj_op_cols(H));
    double *d = malloc(sizeof *d * (size_t)(n * n + 1));
    if (d && lj_op_to_dense(ctx, H, d, n) == LJ_OK) {
        double big = 1, asym = 0;
        for (int64_t j = 0; j < n; j++)
            for (int64_t i = 0; i < n; i++) {
                big = fmax(big, fabs(d[i + j * n]));
                asym = fmax(asym, fabs(d[i + j * n] - d[j + i * n]));
            }
        /* to 1e-6: long product chains round (the Hessian of logdet(A^18)
         * is asymmetric to 3e-7 in floating point) */
        if (isfinite(big) && big < 1e8 && asym > 1e-6 * big) fail("%s: not symmetric (%.3g)", what, asym / big);
    }
    lj_context_clear(ctx);
    free(d);
}

static void scalar_checks(lj_context *ctx, const lj_expr *f, lj_expr *v, const lj_op *J, double jterms,
                          lj_symtab *t, bool smooth, bool kinks, bool second, const char *name)
{
    char what[64];
    snprintf(what, sizeof what, "gradient w.r.t. %s", name);
    lj_expr *ge = lj_expr_gradient_expr(ctx, f, v);
    if (!ge) fail("%s: %s", what, lj_context_message(ctx));
    /* values as dense arrays: a sparse variable's gradient scattered from
     * its stored entries (S's pattern) */
    int64_t n = lj_expr_rows(v) * lj_expr_cols(v), nv = lj_expr_nvalues(v);
    double *jt = calloc((size_t)n, sizeof *jt), *lg = calloc((size_t)n, sizeof *lg), one = 1.0;
    double *gv = values(ctx, ge);
    if (gv && lj_op_apply(ctx, J, 1, 1.0, &one, 0.0, jt) == LJ_OK) {
        bool have = lj_expr_gradient(ctx, f, v, lg) == LJ_OK;
        if (lj_expr_is_sparse(v))
            for (int64_t k = nv - 1; k >= 0; k--) { /* entry k of S is (s_row[k], s_col[k]) */
                jt[s_row[k] + 3 * s_col[k]] = jt[k], lg[s_row[k] + 3 * s_col[k]] = lg[k];
                if (s_row[k] + 3 * s_col[k] != k) jt[k] = lg[k] = 0;
            }
        /* relative to J's terms before they cancel as well: exp(tr(kron((x./x)*(y./y)', A)))
         * has a gradient of 0 w.r.t. x, which J^T·1 gives as rounding residues of
         * exp(…)·(1./x − x./x.^2), 1.5e-8 where exp(…) is 2.4e7 (jterms: operator_check's) */
        double terms = fmax(1, jterms);
        double d = terms < 1e8 ? gap_scaled(gv, jt, n, terms) : -1;
        if (d > 1e-8) fail("%s: the expression's value differs from J^T·1 by %.3g", what, d);
        if (have && terms < 1e8 && (d = gap_scaled(lg, jt, n, terms)) > 1e-8)
            fail("%s: lj_expr_gradient differs from J^T·1 by %.3g", what, d);
    }
    lj_context_clear(ctx);
    /* printed in three formats; the plain form, where it parses, means the same */
    for (int k = 0; k < 3; k++) {
        char *s = lj_expr_print_math(ctx, ge, v, (lj_print_format)k);
        if (!s) fail("%s: printing failed: %s", what, lj_context_message(ctx));
        if (k != LJ_PRINT_UNICODE) ascii_form(what, s);
        /* (not where the expression has kinks: sign(u) of a u that is 0 in
         * one order of evaluation and a rounding residue in the other, as
         * in norm1(s*((B - M)*(y - x))) with y equal to x, is 0 and ±1) */
        if (k == LJ_PRINT_PLAIN && gv && !kinks) {
            int64_t pos;
            lj_expr *back = lj_parse(ctx, s, t, &pos);
            double *bv = back ? values(ctx, back) : NULL, d;
            /* numbers print with six significant digits */
            if (bv && (d = gap(bv, gv, n)) > 1e-5) fail("%s: plain form '%s' re-parses to values %.3g away", what, s, d);
            lj_free(bv);
            lj_expr_free(&back);
            lj_context_clear(ctx);
        }
        lj_free(s);
    }
    lj_op *H = lj_expr_hessian(ctx, f, v);
    if (H && second) {
        snprintf(what, sizeof what, "Hessian w.r.t. %s", name);
        double hterms, hbig = operator_check(ctx, H, what, &hterms);
        /* differences resolve derivatives of moderate size only */
        if (smooth && gv && gap(gv, gv, n) >= 0 && hbig >= 0 && hbig < 1e6) {
            hessian_symmetric(ctx, H, what);
            differences(ctx, ge, v, H, hbig, what);
        }
    }
    lj_context_clear(ctx);
    lj_op_free(&H);
    lj_free(gv);
    free(jt);
    free(lg);
    lj_expr_free(&ge);
}

/* ---- the leaves ----------------------------------------------------------------------- */

static lj_symtab *leaves(lj_context *ctx)
{
    lj_symtab *t = lj_symtab_new(ctx);
    double a[9] = { 2, 0.1, -0.4, 0.5, 1.5, 0.3, -0.3, 0.2, 1.8 }, b[9] = { 0.7, -0.2, 0.4, 1.1, 0.3, -0.6, 0.2, 0.9, 0.5 };
    double x[3] = { 0.6, -0.3, 0.8 }, y[3] = { 0.4, 0.9, -0.2 }, s = 0.7;
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *S = cholmod_l_allocate_sparse(3, 3, 4, 1, 1, 0, CHOLMOD_REAL, cc);
    cholmod_sparse *M = cholmod_l_allocate_sparse(3, 3, 5, 1, 1, 0, CHOLMOD_REAL, cc);
    if (!t || !S || !M) {
        cholmod_l_free_sparse(&S, cc);
        cholmod_l_free_sparse(&M, cc);
        lj_symtab_free(&t);
        return NULL;
    }
    int64_t sp[4] = { 0, 2, 3, 4 }, si[4] = { 0, 2, 1, 2 }, mp[4] = { 0, 2, 3, 5 }, mi[5] = { 0, 1, 1, 0, 2 };
    double sx[4] = { 1.5, -0.5, 0.8, 1.2 }, mx[5] = { 1.1, 0.4, 0.9, -0.3, 1.3 };
    memcpy(S->p, sp, sizeof sp), memcpy(S->i, si, sizeof si), memcpy(S->x, sx, sizeof sx);
    memcpy(M->p, mp, sizeof mp), memcpy(M->i, mi, sizeof mi), memcpy(M->x, mx, sizeof mx);
    lj_expr *e[] = { lj_expr_var(ctx, "A", 3, 3, a), lj_expr_const(ctx, "B", 3, 3, b),
                     lj_expr_var(ctx, "x", 3, 1, x),  lj_expr_const(ctx, "y", 3, 1, y),
                     lj_expr_var(ctx, "s", 1, 1, &s), lj_expr_var_sparse(ctx, "S", S),
                     lj_expr_const_sparse(ctx, "M", M) };
    bool ok = true;
    for (size_t k = 0; k < sizeof e / sizeof e[0]; k++) {
        ok = ok && e[k] && lj_symtab_add(ctx, t, e[k]) == LJ_OK;
        lj_expr_free(&e[k]);
    }
    cholmod_l_free_sparse(&S, cc);
    cholmod_l_free_sparse(&M, cc);
    if (!ok) lj_symtab_free(&t);
    return t;
}

/* J densely (m·n small), or NULL */
static double *dense_of(lj_context *ctx, const lj_op *J)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    double *D = malloc(sizeof *D * (size_t)(m * n + 1));
    if (D && lj_op_to_dense(ctx, J, D, m > 0 ? m : 1) != LJ_OK) {
        free(D);
        fail("materialising J failed: %s", lj_context_message(ctx));
    }
    return D;
}

/* A Jacobian plan for v, evaluated, released, v moved (each entry by a
 * fixed small factor), evaluated again: updated in place or built anew,
 * its J is a fresh Jacobian's at the new values, bit for bit and in
 * print, and it fails exactly where a fresh build fails. v's values are
 * put back. */
static void plan_check(lj_context *ctx, const lj_expr *f, lj_expr *v, const char *what)
{
    int64_t nv = lj_expr_nvalues(v);
    lj_jacplan *p = lj_jacplan_new(ctx, f, 1, (const lj_expr *const *)&v);
    if (!p) fail("%s: plan: %s", what, lj_context_message(ctx));
    lj_op *J = lj_jacplan_eval(ctx, p, NULL);
    if (!J) {
        lj_context_clear(ctx);
        lj_jacplan_free(&p);
        return;
    }
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    lj_op_free(&J);
    double *v0 = malloc(sizeof *v0 * (size_t)(nv + 1)), *v1 = malloc(sizeof *v1 * (size_t)(nv + 1));
    if (lj_expr_is_sparse(v)) {
        cholmod_sparse *S = lj_expr_eval_sparse(ctx, v);
        if (!S) fail("%s: values of the variable: %s", what, lj_context_message(ctx));
        memcpy(v0, S->x, sizeof *v0 * (size_t)nv);
        lj_sparse_free(ctx, &S);
    } else {
        double *x = values(ctx, v);
        if (!x) fail("%s: values of the variable", what);
        memcpy(v0, x, sizeof *v0 * (size_t)nv);
        lj_free(x);
    }
    for (int64_t i = 0; i < nv; i++) v1[i] = v0[i] * (1.0 + 0.001 * (double)((i % 5) + 1));
    if (lj_expr_set_value(ctx, v, v1) != LJ_OK) fail("%s: set_value: %s", what, lj_context_message(ctx));
    J = lj_jacplan_eval(ctx, p, NULL);
    const char *why;
    int rebuilt = lj_jacplan_rebuilt(p, &why);
    lj_status sj = J ? LJ_OK : lj_context_status(ctx);
    lj_context_clear(ctx);
    lj_op *K = lj_expr_jacobian(ctx, f, v);
    lj_status sk = K ? LJ_OK : lj_context_status(ctx);
    lj_context_clear(ctx);
    if (sj != sk)
        fail("%s after the variable moved: the plan gives status %d (%s), a fresh build %d", what, (int)sj,
             rebuilt ? why : "updated in place", (int)sk);
    if (J && K && m * n <= 1 << 16) {
        double *a = dense_of(ctx, J), *b = dense_of(ctx, K);
        if (a && b && memcmp(a, b, sizeof *a * (size_t)(m * n)))
            fail("%s after the variable moved: the plan's J (%s) differs from a fresh one", what,
                 rebuilt ? why : "updated in place");
        char *pa = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *pb = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
        if (!pa || !pb || strcmp(pa, pb))
            fail("%s after the variable moved: the plan's J prints %s (%s), a fresh one %s", what, pa ? pa : "?",
                 rebuilt ? why : "updated in place", pb ? pb : "?");
        lj_free(pa);
        lj_free(pb);
        free(a);
        free(b);
    }
    lj_op_free(&J);
    lj_op_free(&K);
    lj_jacplan_free(&p);
    if (lj_expr_set_value(ctx, v, v0) != LJ_OK) fail("%s: set_value: %s", what, lj_context_message(ctx));
    free(v0);
    free(v1);
}

/* The values of the subexpression at span (a range of g's text) over t,
 * its entry count in *n: NULL where it does not parse or evaluate */
static double *span_values(lj_context *ctx, const gen *g, const size_t span[2], lj_symtab *t, int64_t *n)
{
    char sub[4096];
    size_t len = span[1] - span[0];
    memcpy(sub, g->text + span[0], len);
    sub[len] = '\0';
    int64_t pos;
    lj_expr *b = lj_parse(ctx, sub, t, &pos);
    *n = b ? lj_expr_rows(b) * lj_expr_cols(b) : 0;
    double *v = b ? values(ctx, b) : NULL;
    lj_expr_free(&b);
    lj_context_clear(ctx);
    return v;
}

/* The worst conditioning of the arguments of inv, det and logdet at the
 * point (‖B‖_F·‖B^{-1}‖_F by cofactors; infinite where |det B| is below
 * 1e-8·‖B‖_F³, or where one cannot be evaluated): near a singular matrix
 * the derivatives are rounding noise, and comparing them means nothing.
 * First derivatives are compared below 1e6; second derivatives, which
 * hold the inverse twice (X^{-T} ⊗ X^{-1}) and so its conditioning
 * squared, below 1e4. */
static double conditioning(lj_context *ctx, const gen *g, lj_symtab *t)
{
    double worst = 1.0;
    for (int k = 0; k < g->nargs; k++) {
        int64_t nv;
        double *v = span_values(ctx, g, g->arg[k], t, &nv);
        if (!v) return INFINITY;
        double c[9], det, nb = 0, ni = 0;
        for (int j = 0; j < 3; j++)
            for (int i = 0; i < 3; i++) { /* cofactor of (i, j), 0-based */
                int r0 = (i + 1) % 3, r1 = (i + 2) % 3, c0 = (j + 1) % 3, c1 = (j + 2) % 3;
                c[i + 3 * j] = v[r0 + 3 * c0] * v[r1 + 3 * c1] - v[r0 + 3 * c1] * v[r1 + 3 * c0];
            }
        det = v[0] * c[0] + v[3] * c[3] + v[6] * c[6];
        for (int i = 0; i < 9; i++) nb += v[i] * v[i], ni += c[i] * c[i];
        lj_free(v);
        /* rank one: the cofactors vanish with the determinant, so their
         * ratio says nothing; |det| against ‖B‖³ does */
        if (!isfinite(det) || !(fabs(det) > 1e-8 * nb * sqrt(nb))) return INFINITY;
        double kc = sqrt(nb) * sqrt(ni) / fabs(det);
        if (!(kc <= worst)) worst = isnan(kc) ? INFINITY : kc;
    }
    return worst;
}

/* whether the n spans evaluate, every entry between lo and hi in size */
static bool spans_within(lj_context *ctx, const gen *g, const size_t span[][2], int n, lj_symtab *t, double lo,
                         double hi)
{
    for (int k = 0; k < n; k++) {
        int64_t nb;
        double *v = span_values(ctx, g, span[k], t, &nb);
        bool ok = v != NULL;
        for (int64_t i = 0; ok && i < nb; i++) ok = fabs(v[i]) >= lo && fabs(v[i]) <= hi;
        lj_free(v);
        if (!ok) return false;
    }
    return true;
}

/* Whether every argument of sin, cos and tan is below 1e5 in size (and
 * evaluates): beyond it a periodic function is past the resolution of its
 * own argument. sin(exp(tr(kron(A, A))) + y'*y/sum(S)), exp(…) near 1e17,
 * loses the change that a step makes in y'*y/sum(S) to the rounding of
 * the sum, so its cosine is the same at every step up to 0.5, and the
 * differences of its gradient miss the term of the Hessian that moves it
 * (consistently, at every step: no comparison of quotients can tell).
 * Below 1e5 a step of 2.5e-6 is still 1.7e5 ulps of the argument. The
 * differences are then not taken; every other check still is. */
static bool periodic_resolved(lj_context *ctx, const gen *g, lj_symtab *t)
{
    return spans_within(ctx, g, g->parg, g->npargs, t, 0, 1e5);
}

/* Whether every divisor and every argument of log is at least 1e-8 in
 * size (and evaluates) at every entry. The leaves are of order 1; an entry
 * below that is a residue of cancellation (inv(A)*A off its diagonal, a
 * trace that sums to 0), and a derivative that divides by it, or by its
 * square, is rounding noise: the Hessian of
 * sum((inv(A)*(A+A))./(inv(A)*A)), a sum of ratios 0/0 off the diagonal,
 * is asymmetric by 23%. Differences and a Hessian's symmetry are then not
 * compared; every other check still is. */
static bool quotients_resolved(lj_context *ctx, const gen *g, lj_symtab *t)
{
    return spans_within(ctx, g, g->qarg, g->nqargs, t, 1e-8, INFINITY);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 200) return 0;
    static gen g;
    memset(&g, 0, sizeof g);
    g.d = data, g.n = size, g.smooth = true;
    unsigned top = next(&g) % 4;
    expr(&g, top == 0 ? MAT : top == 1 ? VEC : SCAL, 0);
    input_text = g.text;

    lj_context *ctx = lj_context_new();
    lj_symtab *t = ctx ? leaves(ctx) : NULL;
    if (!t) fail("setting up the leaves failed");
    int64_t pos;
    lj_expr *f = lj_parse(ctx, g.text, t, &pos);
    if (!f) fail("does not parse: %s", lj_context_message(ctx));
    double *fv = values(ctx, f);
    int64_t nf = lj_expr_rows(f) * lj_expr_cols(f);
    double cond = fv && gap(fv, fv, nf) >= 0 ? conditioning(ctx, &g, t) : INFINITY;
    if (cond < 1e6) {
        /* printed and parsed back: the same values */
        char *p = lj_expr_print(ctx, f);
        lj_expr *back = p ? lj_parse(ctx, p, t, &pos) : NULL;
        if (!back) fail("its printed form '%s' does not parse: %s", p ? p : "(none)", lj_context_message(ctx));
        double *bv = values(ctx, back), d;
        if (bv && (d = gap(bv, fv, nf)) > 1e-12) fail("printed as '%s', re-parsed to values %.3g away", p, d);
        lj_free(bv);
        lj_expr_free(&back);
        lj_free(p);
        const bool fd = g.smooth && periodic_resolved(ctx, &g, t) && quotients_resolved(ctx, &g, t); /* differences compared */
        const char *vars[] = { "A", "x", "s", "S" };
        for (int k = 0; k < 4; k++) {
            lj_expr *v = lj_symtab_get(t, vars[k]);
            lj_op *J = lj_expr_jacobian(ctx, f, v);
            if (!J) {
                lj_status st = lj_context_status(ctx);
                if (st == LJ_ERR_INVALID || st == LJ_ERR_SHAPE)
                    fail("J w.r.t. %s: %s", vars[k], lj_context_message(ctx));
                lj_context_clear(ctx);
                continue;
            }
            char what[32];
            snprintf(what, sizeof what, "J w.r.t. %s", vars[k]);
            double jterms, jbig = operator_check(ctx, J, what, &jterms);
            if (jbig >= 0 && g.smooth) printed_j_check(ctx, J, t, what, fmax(jbig, jterms)); /* (kinks: as below) */
            if (fd && jbig >= 0 && jbig < 1e6) differences(ctx, f, v, J, jbig, what);
            if (nf == 1) scalar_checks(ctx, f, v, J, jterms, t, fd, !g.smooth, cond < 1e4, vars[k]);
            lj_op_free(&J);
            plan_check(ctx, f, v, what);
        }
    }
    lj_free(fv);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
    return 0;
}
