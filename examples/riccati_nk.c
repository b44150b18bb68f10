/* Newton-Krylov for the nonlinear matrix equation (a Riccati-type equation)
 *
 *     F(X) = X A X + B X − C = 0,    X n×n,
 *
 * Newton's step J δ = −vec F(X) is solved by restarted GMRES, which uses the
 * Jacobian J = d vec F / d vec X only through J v: lazyjac builds it from
 * the expression at each iterate as
 *     (X^T A^T ⊗ I_n) + (I_n ⊗ X A) + (I_n ⊗ B)      (printed below)
 * and never forms it. Inexact Newton: GMRES stops at a relative residual
 * η_k = min(0.1, ‖F‖).
 *
 *   riccati_nk [n]     (default 12; try 150)
 * Exit status 0 when ‖F(X)‖ ≤ 1e-10 ‖C‖ with quadratic convergence at the end. */
#include <lazyjac.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static double nrm(const double *a, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

static void fail(lj_context *ctx, const char *what)
{
    fprintf(stderr, "riccati_nk: %s: %s\n", what, lj_context_message(ctx));
    exit(1);
}

/* GMRES(restart) for J x = b, x = 0 initially; returns the iterations used. */
static int gmres(lj_context *ctx, const lj_op *J, const double *b, double *x, int64_t N, double rtol,
                 int restart, int maxit)
{
    double *V = malloc(sizeof *V * (size_t)(N * (restart + 1)));
    double *H = calloc((size_t)((restart + 1) * restart), sizeof *H);
    double *cs = malloc(sizeof *cs * (size_t)restart), *sn = malloc(sizeof *sn * (size_t)restart);
    double *g = malloc(sizeof *g * (size_t)(restart + 1)), *w = malloc(sizeof *w * (size_t)N), *y = malloc(sizeof *y * (size_t)restart);
    memset(x, 0, sizeof *x * (size_t)N);
    double bn = nrm(b, N);
    int total = 0;
    while (total < maxit) {
        /* r = b − J x */
        if (lj_op_apply(ctx, J, 0, -1.0, x, 0.0, w) != LJ_OK) fail(ctx, "apply");
        for (int64_t i = 0; i < N; i++) w[i] += b[i];
        double beta = nrm(w, N);
        if (beta <= rtol * bn) break;
        for (int64_t i = 0; i < N; i++) V[i] = w[i] / beta;
        memset(g, 0, sizeof *g * (size_t)(restart + 1));
        g[0] = beta;
        int k;
        for (k = 0; k < restart && total < maxit; k++, total++) {
            double *vk1 = V + (k + 1) * N;
            if (lj_op_apply(ctx, J, 0, 1.0, V + k * N, 0.0, vk1) != LJ_OK) fail(ctx, "apply");
            for (int i = 0; i <= k; i++) { /* modified Gram-Schmidt */
                double h = 0;
                for (int64_t t = 0; t < N; t++) h += vk1[t] * V[i * N + t];
                H[i + k * (restart + 1)] = h;
                for (int64_t t = 0; t < N; t++) vk1[t] -= h * V[i * N + t];
            }
            double hn = nrm(vk1, N);
            H[k + 1 + k * (restart + 1)] = hn;
            if (hn > 0)
                for (int64_t t = 0; t < N; t++) vk1[t] /= hn;
            for (int i = 0; i < k; i++) { /* apply the previous rotations */
                double *a = &H[i + k * (restart + 1)], *c = &H[i + 1 + k * (restart + 1)];
                double t = cs[i] * *a + sn[i] * *c;
                *c = -sn[i] * *a + cs[i] * *c;
                *a = t;
            }
            double a = H[k + k * (restart + 1)], c = H[k + 1 + k * (restart + 1)], d = hypot(a, c);
            cs[k] = a / d;
            sn[k] = c / d;
            H[k + k * (restart + 1)] = d;
            H[k + 1 + k * (restart + 1)] = 0;
            g[k + 1] = -sn[k] * g[k];
            g[k] = cs[k] * g[k];
            if (fabs(g[k + 1]) <= rtol * bn) {
                k++;
                total++;
                break;
            }
        }
        for (int i = k - 1; i >= 0; i--) { /* back substitution */
            double s = g[i];
            for (int j = i + 1; j < k; j++) s -= H[i + j * (restart + 1)] * y[j];
            y[i] = s / H[i + i * (restart + 1)];
        }
        for (int i = 0; i < k; i++)
            for (int64_t t = 0; t < N; t++) x[t] += y[i] * V[i * N + t];
    }
    free(V); free(H); free(cs); free(sn); free(g); free(w); free(y);
    return total;
}

int main(int argc, char **argv)
{
    int64_t n = argc > 1 ? atoll(argv[1]) : 12, N = n * n;
    if (n < 1) {
        fprintf(stderr, "usage: riccati_nk [n]\n");
        return 2;
    }
    lj_context *ctx = lj_context_new();
    unsigned long long seed = 7;
    /* a problem with a known solution X*: C = X* A X* + B X* */
    double *Xs = malloc(sizeof(double) * (size_t)N), *A = malloc(sizeof(double) * (size_t)N);
    double *B = malloc(sizeof(double) * (size_t)N), *X = malloc(sizeof(double) * (size_t)N);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < n; i++) {
            Xs[i + j * n] = (i == j) + 0.3 * urand(&seed) / sqrt((double)n);
            A[i + j * n] = 0.5 * urand(&seed) / sqrt((double)n);
            B[i + j * n] = 2.0 * (i == j) + 0.5 * urand(&seed) / sqrt((double)n);
        }
    lj_expr *Xe = lj_expr_var(ctx, "X", n, n, Xs), *Ae = lj_expr_const(ctx, "A", n, n, A);
    lj_expr *Be = lj_expr_const(ctx, "B", n, n, B);
    lj_expr *XA = lj_expr_mul(ctx, Xe, Ae), *XAX = lj_expr_mul(ctx, XA, Xe), *BX = lj_expr_mul(ctx, Be, Xe);
    lj_expr *lhs = lj_expr_add(ctx, XAX, BX);
    double *C;
    int64_t r, c;
    if (!lhs || lj_expr_eval(ctx, lhs, &r, &c, &C) != LJ_OK) fail(ctx, "setup");
    lj_expr *Ce = lj_expr_const(ctx, "C", n, n, C), *F = lj_expr_sub(ctx, lhs, Ce);
    double cn = nrm(C, N);
    /* start away from X*: X0 = X* + perturbation */
    for (int64_t i = 0; i < N; i++) X[i] = Xs[i] + 0.2 * urand(&seed) / sqrt((double)n);
    printf("Newton-Krylov for X A X + B X − C = 0, X %lld×%lld (%lld unknowns)\n", (long long)n, (long long)n,
           (long long)N);
    double *Fv = NULL, *delta = malloc(sizeof(double) * (size_t)N), *rhs = malloc(sizeof(double) * (size_t)N);
    double prev = INFINITY, fn = 0, first = 0;
    int ok_quadratic = 0;
    for (int k = 0; k < 30; k++) {
        if (lj_expr_set_value(ctx, Xe, X) != LJ_OK) fail(ctx, "set_value");
        lj_free(Fv);
        if (lj_expr_eval(ctx, F, &r, &c, &Fv) != LJ_OK) fail(ctx, "eval");
        fn = nrm(Fv, N);
        if (k == 0) first = fn;
        double ratio = fn / (prev * prev);
        printf("  Newton %2d: ‖F‖ = %.3e", k, fn);
        if (k > 0) printf("   (‖F_k‖/‖F_{k-1}‖² = %.2g)", ratio);
        if (k > 0 && fn < 1e-6 * cn && fn < prev) ok_quadratic = ratio < 1e3;
        if (fn <= 1e-10 * cn) {
            printf("\n");
            break;
        }
        lj_op *J = lj_expr_jacobian(ctx, F, Xe); /* rebuilt at the iterate */
        if (!J) fail(ctx, "jacobian");
        if (k == 0) {
            char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
            printf("\n  J = %s", s);
            lj_free(s);
        }
        for (int64_t i = 0; i < N; i++) rhs[i] = -Fv[i];
        double eta = fmin(0.1, fn / cn);
        int its = gmres(ctx, J, rhs, delta, N, eta, 40, 2000);
        printf("   GMRES: %d iterations to %.1e\n", its, eta);
        for (int64_t i = 0; i < N; i++) X[i] += delta[i];
        lj_op_free(&J);
        prev = fn;
    }
    double err = 0, xn = nrm(Xs, N);
    for (int64_t i = 0; i < N; i++) err += (X[i] - Xs[i]) * (X[i] - Xs[i]);
    err = sqrt(err) / xn;
    int ok = fn <= 1e-10 * cn && fn < 1e-6 * first && err < 1e-8 && ok_quadratic;
    printf("‖F‖/‖C‖ = %.2e, ‖X − X*‖/‖X*‖ = %.2e; %s\n", fn / cn, err, ok ? "converged" : "NOT converged");
    lj_expr *all[] = { Xe, Ae, Be, XA, XAX, BX, lhs, Ce, F };
    for (int i = 0; i < 9; i++) lj_expr_free(&all[i]);
    lj_free(C);
    lj_free(Fv);
    free(Xs); free(A); free(B); free(X); free(delta); free(rhs);
    lj_context_free(&ctx);
    return ok ? 0 : 1;
}
