/* Using the library: F = tanh(W X) for data X, the Jacobian with respect to
 * the weights W, applied lazily, materialised, and exported. */
#include <lazyjac.h>
#include <stdio.h>

int main(void)
{
    lj_context *ctx = lj_context_new();
    double w[6] = { 0.5, -1.0, 0.25, 2.0, 1.5, -0.5 };   /* W: 2×3, column-major */
    double x[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
    for (int i = 0; i < 12; i++) x[i] /= 10;              /* X: 3×4 */

    /* the expression, built from the API (lj_parse("tanh(W*X)") does the same) */
    lj_expr *W = lj_expr_var(ctx, "W", 2, 3, w);
    lj_expr *X = lj_expr_const(ctx, "X", 3, 4, x);
    lj_expr *WX = lj_expr_mul(ctx, W, X);
    lj_expr *F = lj_expr_func(ctx, LJ_FN_TANH, WX);

    /* J = d vec F / d vec W, an 8×6 structured operator */
    lj_op *J = lj_expr_jacobian(ctx, F, W);
    if (!J) {
        fprintf(stderr, "error: %s\n", lj_context_message(ctx));
        return 1;
    }
    char *form = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    printf("J = %s   (%lld×%lld)\n", form, (long long)lj_op_rows(J), (long long)lj_op_cols(J));
    lj_free(form);

    /* J v and J^T u, without forming J */
    double v[6] = { 1, 0, 0, 0, 0, 0 }, Jv[8], u[8] = { 1, 1, 1, 1, 1, 1, 1, 1 }, Jtu[6];
    lj_op_apply(ctx, J, 0, 1.0, v, 0.0, Jv);
    lj_op_apply(ctx, J, 1, 1.0, u, 0.0, Jtu);
    printf("J e_1 = [%.4f %.4f ...],  J^T 1 = [%.4f %.4f ...]\n", Jv[0], Jv[1], Jtu[0], Jtu[1]);

    /* the exact sparse matrix, and a Matrix Market file for MATLAB or SciPy */
    cholmod_sparse *S = lj_op_to_sparse(ctx, J);
    printf("materialised: %zu×%zu with %lld stored entries\n", S->nrow, S->ncol,
           (long long)((SuiteSparse_long *)S->p)[S->ncol]);
    if (lj_op_write_mtx(ctx, J, "J.mtx") != LJ_OK)
        fprintf(stderr, "error: %s\n", lj_context_message(ctx));

    lj_sparse_free(ctx, &S);
    lj_op_free(&J);
    lj_expr_free(&F);
    lj_expr_free(&WX);
    lj_expr_free(&X);
    lj_expr_free(&W);
    lj_context_free(&ctx);
    return 0;
}
