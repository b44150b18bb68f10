/* The Jacobian of A H W with respect to H, built by hand as W^T ⊗ A, applied
 * to one vector and printed. */
#include <lazyjac.h>
#include <stdio.h>

int main(void)
{
    lj_context *ctx = lj_context_new();
    double A[4] = { 1, 2, 3, 4 }, W[6] = { 1, 0, 2, 1, 0, 3 }; /* A 2×2, W 3×2 */
    lj_op *a = lj_op_dense(ctx, 2, 2, A, 2, "A");
    lj_op *w = lj_op_dense(ctx, 3, 2, W, 3, "W");
    lj_op *wt = lj_op_transpose(ctx, w);
    lj_op *J = lj_op_kron(ctx, wt, a);
    if (!J) {
        fprintf(stderr, "hello: %s\n", lj_context_message(ctx));
        return 1;
    }
    char *s = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    double h[6] = { 1, 1, 1, 1, 1, 1 }, z[4];
    lj_op_apply(ctx, J, 0, 1.0, h, 0.0, z);
    printf("J = %s  (%lld×%lld)\nJ·1 = [%g %g %g %g]\n", s, (long long)lj_op_rows(J),
           (long long)lj_op_cols(J), z[0], z[1], z[2], z[3]);
    lj_free(s);
    lj_op_free(&J);
    lj_op_free(&wt);
    lj_op_free(&w);
    lj_op_free(&a);
    lj_context_free(&ctx);
    return 0;
}
