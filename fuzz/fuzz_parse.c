/* libFuzzer target for the expression language: any input either parses or
 * fails with a status; what parses is printed, re-parsed, evaluated and
 * differentiated without a crash or a sanitizer report. */
#include <lazyjac.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
            lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, "A"));
            if (J) {
                char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
                lj_free(p);
            }
            lj_op_free(&J);
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
