/* libFuzzer target for the expression language: any input either parses or
 * fails with a status; what parses is printed, re-parsed, evaluated and
 * differentiated without a crash or a sanitizer report. */
#include <lazyjac.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A power above 12 in the text: the leaves' values reach 4, so such a power
 * holds intermediates beyond 4^12 ≈ 1.7·10⁷ even where the result is small,
 * and two correct evaluation orders may differ by their cancellation
 * (A^403 ./ A^403 has entries near 10^242: its Jacobian's chain rule
 * cancels terms of that size, the simplified gradient does not). */
static bool large_power(const char *text)
{
    for (const char *s = strchr(text, '^'); s; s = strchr(s + 1, '^')) {
        const char *d = s + 1;
        while (*d == ' ' || *d == '(' || *d == '+') d++;
        if (*d >= '0' && *d <= '9' && strtod(d, NULL) > 12) return true;
    }
    return false;
}

/* The gradient of a scalar f with respect to A as an expression: printed in
 * the three formats, and where both the expression and J^T·1 evaluate, the
 * same numbers, and lj_expr_gradient's too (a wrong adjoint rule or
 * simplification aborts), unless `compare` is false (large intermediates). */
static void gradient_as_expression(lj_context *ctx, const lj_expr *f, lj_symtab *t, bool compare)
{
    lj_expr *A = lj_symtab_get(t, "A");
    lj_expr *g = lj_expr_gradient_expr(ctx, f, A);
    if (!g) {
        lj_context_clear(ctx);
        return;
    }
    for (int k = 0; k < 3; k++) lj_free(lj_expr_print_math(ctx, g, A, (lj_print_format)k));
    int64_t r, c;
    double *gv = NULL, ref[9], lg[9], one = 1.0;
    lj_op *J = lj_expr_jacobian(ctx, f, A);
    /* J^T·1 only when cheap, as below: the apply of a power of a power's J
     * walks every product of both chains (95·93·… of them) */
    double flops = 0, bytes = 0;
    bool cheap = J && lj_op_cost(ctx, J, &flops, &bytes) == LJ_OK && flops <= 1e6;
    if (cheap && lj_expr_eval(ctx, g, &r, &c, &gv) == LJ_OK && lj_op_apply(ctx, J, 1, 1.0, &one, 0.0, ref) == LJ_OK) {
        bool have = lj_expr_gradient(ctx, f, A, lg) == LJ_OK;
        double big = 1, diff = 0;
        bool finite = true;
        for (int i = 0; i < 9; i++) {
            finite = finite && isfinite(gv[i]) && isfinite(ref[i]) && (!have || isfinite(lg[i]));
            big = fmax(big, fmax(fabs(gv[i]), fabs(ref[i])));
            diff = fmax(diff, fabs(gv[i] - ref[i]));
            if (have) diff = fmax(diff, fabs(lg[i] - ref[i]));
        }
        if (compare && finite && big < 1e8 && diff > 1e-6 * big) abort();
    }
    lj_op_free(&J);
    lj_free(gv);
    lj_op *H = lj_expr_hessian(ctx, f, A);
    lj_op_free(&H);
    lj_context_clear(ctx);
    lj_expr_free(&g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256) return 0; /* long inputs only make evaluation slow */
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    double v[9] = { 2, 0.5, -1, 0.25, 3, 0.5, 1, -0.5, 4 };
    const struct { const char *name; int r, c; } decl[] = { { "A", 3, 3 }, { "B", 3, 3 }, { "x", 3, 1 }, { "s", 1, 1 } };
    for (int i = 0; i < 4; i++) {
        lj_expr *e = lj_expr_var(ctx, decl[i].name, decl[i].r, decl[i].c, v);
        lj_symtab_add(ctx, t, e);
        lj_expr_free(&e);
    }
    /* sparse leaves: S 3×3 with 4 entries (a variable), E 3×2 with none */
    cholmod_sparse *S = cholmod_l_allocate_sparse(3, 3, 4, 1, 1, 0, CHOLMOD_REAL, lj_context_cholmod(ctx));
    cholmod_sparse *E = cholmod_l_allocate_sparse(3, 2, 1, 1, 1, 0, CHOLMOD_REAL, lj_context_cholmod(ctx));
    if (S && E) {
        int64_t sp[4] = { 0, 2, 3, 4 }, si[4] = { 0, 2, 1, 2 };
        double sx[4] = { 1.5, -2, 0.5, 3 };
        memcpy(S->p, sp, sizeof sp);
        memcpy(S->i, si, sizeof si);
        memcpy(S->x, sx, sizeof sx);
        memset(E->p, 0, 3 * sizeof(int64_t));
        lj_expr *a = lj_expr_var_sparse(ctx, "S", S), *b = lj_expr_const_sparse(ctx, "E", E);
        lj_symtab_add(ctx, t, a);
        lj_symtab_add(ctx, t, b);
        lj_expr_free(&a);
        lj_expr_free(&b);
    }
    cholmod_l_free_sparse(&S, lj_context_cholmod(ctx));
    cholmod_l_free_sparse(&E, lj_context_cholmod(ctx));
    int64_t pos;
    lj_expr *f = lj_parse(ctx, text, t, &pos);
    if (f) {
        char *s = lj_expr_print(ctx, f);
        lj_expr *g = s ? lj_parse(ctx, s, t, &pos) : NULL;
        if (s && !g) abort(); /* what we print must parse again */
        lj_expr_free(&g);
        lj_free(s);
        int64_t r, c;
        double *val = NULL;
        if (lj_expr_rows(f) * lj_expr_cols(f) <= 4096 && lj_expr_eval(ctx, f, &r, &c, &val) == LJ_OK) {
            const char *wrt[2] = { "A", "S" };
            for (int w = 0; w < 2; w++) {
                lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, wrt[w]));
                if (J) {
                    char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
                    lj_free(p);
                    /* J applied both ways to ones, when cheap: the apply of a
                     * power's J walks every product of its chain */
                    int64_t r2 = lj_op_rows(J), c2 = lj_op_cols(J);
                    double flops = 0, bytes = 0;
                    if (r2 * c2 <= 65536 && lj_op_cost(ctx, J, &flops, &bytes) == LJ_OK && flops <= 1e6) {
                        double *x = calloc((size_t)(c2 + r2 + 2), sizeof *x);
                        if (x) {
                            for (int64_t k = 0; k < c2 + r2 + 2; k++) x[k] = 1.0;
                            lj_op_apply(ctx, J, 0, 1.0, x, 0.0, x + c2 + 1);
                            lj_op_apply(ctx, J, 1, 1.0, x + c2 + 1, 0.0, x);
                            free(x);
                        }
                    }
                    lj_context_clear(ctx);
                }
                lj_op_free(&J);
            }
            if (lj_expr_rows(f) == 1 && lj_expr_cols(f) == 1) gradient_as_expression(ctx, f, t, !large_power(text));
            if (lj_expr_is_sparse(f)) {
                cholmod_sparse *V = lj_expr_eval_sparse(ctx, f);
                lj_sparse_free(ctx, &V);
            }
        }
        lj_free(val);
        lj_expr_free(&f);
    } else if (pos >= 0) {
        char *c = lj_caret(text, pos);
        lj_free(c);
    }
    lj_symtab_free(&t);
    lj_context_free(&ctx);
    free(text);
    return 0;
}
