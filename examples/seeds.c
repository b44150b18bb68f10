/* The four questions lazyjac exists to answer (shared/seeds), each built
 * from the expression API, printed in structured form and checked against
 * central finite differences. */
#include <lazyjac.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double *randm(int64_t n, unsigned *s)
{
    double *v = malloc(sizeof *v * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        *s = *s * 1103515245u + 12345u;
        v[i] = ((*s >> 8) & 0xffff) / 32768.0 - 1.0;
    }
    return v;
}

/* Prints J, its shape and nnz, and the finite-difference check; returns 0
 * when the check passes. */
static int report(lj_context *ctx, const char *question, lj_expr *f, lj_expr *x, int gradient)
{
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    if (!J) {
        fprintf(stderr, "seeds: %s\n", lj_context_message(ctx));
        return 1;
    }
    char *s = gradient ? lj_op_print_gradient(ctx, J, lj_expr_rows(x), lj_expr_cols(x), LJ_PRINT_UNICODE)
                       : lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    int exact;
    int64_t nnz = lj_op_nnz(ctx, J, &exact);
    double maxrel = INFINITY, fro = INFINITY;
    lj_expr_fd_check(ctx, f, x, J, 0, &maxrel, &fro);
    printf("%s\n  %s = %s\n  J: %lld×%lld, nnz %s%lld; finite differences: max rel. error %.2e\n\n",
           question, gradient ? "gradient" : "J", s, (long long)lj_op_rows(J), (long long)lj_op_cols(J),
           exact ? "" : "≤ ", (long long)nnz, maxrel);
    lj_free(s);
    lj_op_free(&J);
    return maxrel < 1e-6 ? 0 : 1;
}

int main(void)
{
    lj_context *ctx = lj_context_new();
    unsigned seed = 1;
    int bad = 0;
    {   /* 000: W (A ∘ B) w.r.t. A; W 4×3, A and B 3×5 */
        double *w = randm(12, &seed), *a = randm(15, &seed), *b = randm(15, &seed);
        lj_expr *W = lj_expr_const(ctx, "W", 4, 3, w), *A = lj_expr_var(ctx, "A", 3, 5, a);
        lj_expr *B = lj_expr_const(ctx, "B", 3, 5, b);
        lj_expr *AB = lj_expr_hadamard(ctx, A, B), *F = lj_expr_mul(ctx, W, AB);
        bad |= report(ctx, "000  d vec(W (A ∘ B)) / d vec A", F, A, 0);
        lj_expr *all[] = { W, A, B, AB, F };
        for (int i = 0; i < 5; i++) lj_expr_free(&all[i]);
        free(w); free(a); free(b);
    }
    {   /* 001: (x x^T) ∘ A w.r.t. x; x 4×1, A 4×4 */
        double *xv = randm(4, &seed), *a = randm(16, &seed);
        lj_expr *x = lj_expr_var(ctx, "x", 4, 1, xv), *A = lj_expr_const(ctx, "A", 4, 4, a);
        lj_expr *xt = lj_expr_transpose(ctx, x), *xx = lj_expr_mul(ctx, x, xt), *F = lj_expr_hadamard(ctx, xx, A);
        bad |= report(ctx, "001  d vec((x x^T) ∘ A) / d x", F, x, 0);
        lj_expr *all[] = { x, A, xt, xx, F };
        for (int i = 0; i < 5; i++) lj_expr_free(&all[i]);
        free(xv); free(a);
    }
    {   /* 002: 1_p^T (Q ∘ W) b w.r.t. Q; Q and W 3×4, b 4×1 */
        double ones[3] = { 1, 1, 1 }, *q = randm(12, &seed), *w = randm(12, &seed), *bv = randm(4, &seed);
        lj_expr *o = lj_expr_const(ctx, "ones", 3, 1, ones), *Q = lj_expr_var(ctx, "Q", 3, 4, q);
        lj_expr *W = lj_expr_const(ctx, "W", 3, 4, w), *b = lj_expr_const(ctx, "b", 4, 1, bv);
        lj_expr *ot = lj_expr_transpose(ctx, o), *QW = lj_expr_hadamard(ctx, Q, W);
        lj_expr *l = lj_expr_mul(ctx, ot, QW), *F = lj_expr_mul(ctx, l, b);
        bad |= report(ctx, "002  d (1_p^T (Q ∘ W) b) / d Q", F, Q, 1);
        lj_expr *all[] = { o, Q, W, b, ot, QW, l, F };
        for (int i = 0; i < 8; i++) lj_expr_free(&all[i]);
        free(q); free(w); free(bv);
    }
    {   /* 003: A H W w.r.t. H; A 5×5, H 5×3, W 3×2 */
        double *a = randm(25, &seed), *h = randm(15, &seed), *w = randm(6, &seed);
        lj_expr *A = lj_expr_const(ctx, "A", 5, 5, a), *H = lj_expr_var(ctx, "H", 5, 3, h);
        lj_expr *W = lj_expr_const(ctx, "W", 3, 2, w);
        lj_expr *AH = lj_expr_mul(ctx, A, H), *F = lj_expr_mul(ctx, AH, W);
        bad |= report(ctx, "003  d vec(A H W) / d vec H", F, H, 0);
        lj_expr *all[] = { A, H, W, AH, F };
        for (int i = 0; i < 5; i++) lj_expr_free(&all[i]);
        free(a); free(h); free(w);
    }
    lj_context_free(&ctx);
    return bad;
}
