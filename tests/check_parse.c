/* The expression language: precedence, printing round trips, values,
 * broadcasting, error positions, the caret rendering, the symbol table. */
#include "testutil.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lj_context *ctx;
    lj_symtab *t;
} fixture;

static fixture setup(void)
{
    fixture f = { lj_context_new(), NULL };
    f.t = lj_symtab_new(f.ctx);
    uint64_t seed = 3;
    const struct { const char *name; int64_t r, c; } decl[] = {
        { "A", 3, 3 }, { "B", 3, 3 }, { "C", 3, 3 }, { "x", 3, 1 }, { "s", 1, 1 }, { "exp", 2, 2 }, { "R", 2, 3 },
    };
    for (size_t i = 0; i < sizeof decl / sizeof decl[0]; i++) {
        tmat m = tm_rand(decl[i].r, decl[i].c, &seed);
        for (int64_t k = 0; k < m.r * m.c; k++) m.a[k] += 2.0; /* positive, for log and sqrt */
        lj_expr *e = lj_expr_var(f.ctx, decl[i].name, decl[i].r, decl[i].c, m.a);
        CK_OK(f.ctx, lj_symtab_add(f.ctx, f.t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    return f;
}

static void teardown(fixture *f)
{
    lj_symtab_free(&f->t);
    lj_context_free(&f->ctx);
}

static tmat value(fixture *f, const char *text)
{
    int64_t pos;
    lj_expr *e = lj_parse(f->ctx, text, f->t, &pos);
    ck_assert_msg(e != NULL, "'%s': %s", text, lj_context_message(f->ctx));
    tmat m;
    CK_OK(f->ctx, lj_expr_eval(f->ctx, e, &m.r, &m.c, &m.a));
    lj_expr_free(&e);
    return m;
}

static tmat leafv(fixture *f, const char *name)
{
    lj_expr *e = lj_symtab_get(f->t, name);
    tmat m;
    CK_OK(f->ctx, lj_expr_eval(f->ctx, e, &m.r, &m.c, &m.a));
    return m;
}

START_TEST(test_round_trip)
{
    fixture f = setup();
    const struct { const char *in, *out; } cases[] = {
        { "A*B + C", "A*B + C" },
        { "A * (B + C)", "A*(B + C)" },
        { "(A*B)*C", "A*B*C" },
        { "A*(B*C)", "A*(B*C)" },
        { "A - (B - C)", "A - (B - C)" },
        { "(A - B) - C", "A - B - C" },
        { "-A.^2", "-A.^2" },
        { "(-A).^2", "(-A).^2" },
        { "A.^-1", "A.^(-1)" },
        { "(A + B)'", "(A + B)'" },
        { "x'''", "x'''" },
        { "A'*B'", "A'*B'" },
        { "2*A/s", "2*A/s" },
        { "A./(B.*C)", "A./(B.*C)" },
        { "kron(x, x')", "kron(x, x')" },
        { "tr(inv(A)) + logdet(A'*A) + det(B)", "tr(inv(A)) + logdet(A'*A) + det(B)" },
        { "sum(exp(A) .* log(B)) - norm2(vec(C))", "sum(exp(A).*log(B)) - norm2(vec(C))" },
        { "diag(diag(A)) + sqrt(A) + sin(A) + cos(A) + tanh(A)", "diag(diag(A)) + sqrt(A) + sin(A) + cos(A) + tanh(A)" },
        { " \tA\n+ B ", "A + B" },
        { "exp + exp(exp)", "exp + exp(exp)" },
        { "1e-3*A + .5*B", "0.001*A + 0.5*B" },
        { "0..^2 + 2 .* A - 3 ./ A", "0.^2 + 2.*A - 3./A" },
        /* MATLAB's reading: a number, then the elementwise operator */
        { "A.^2.*A", "A.^2.*A" },
        { "2.*A + 3./A - 2.^2", "2.*A + 3./A - 2.^2" },
        { "1.5.*A + 2.e1*x'*x", "1.5.*A + 20*x'*x" },
        /* the fills a gradient's plain form writes */
        { "A + ones(3,3) - 2*zeros(3, 3)", "A + ones(3,3) - 2*zeros(3,3)" },
        { "ones(2*1+1, 3)*x", "ones(3,3)*x" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t pos;
        lj_expr *e = lj_parse(f.ctx, cases[i].in, f.t, &pos);
        ck_assert_msg(e != NULL, "'%s': %s", cases[i].in, lj_context_message(f.ctx));
        char *s = lj_expr_print(f.ctx, e);
        ck_assert_msg(strcmp(s, cases[i].out) == 0, "'%s' printed '%s', want '%s'", cases[i].in, s, cases[i].out);
        /* printing then parsing again gives the same text */
        lj_expr *e2 = lj_parse(f.ctx, s, f.t, &pos);
        ck_assert_msg(e2 != NULL, "reparse '%s': %s", s, lj_context_message(f.ctx));
        char *s2 = lj_expr_print(f.ctx, e2);
        ck_assert_str_eq(s, s2);
        lj_free(s);
        lj_free(s2);
        lj_expr_free(&e);
        lj_expr_free(&e2);
    }
    teardown(&f);
}
END_TEST

START_TEST(test_values_and_broadcast)
{
    fixture f = setup();
    tmat A = leafv(&f, "A"), B = leafv(&f, "B"), C = leafv(&f, "C"), s = leafv(&f, "s");
    tmat AB = tm_mul(A, B), want = tm_add(1, AB, 1, C), got = value(&f, "A*B + C");
    ck_assert(tm_maxdiff(got, want) < 1e-13);
    tmat neg = value(&f, "-A.^2");
    for (int i = 0; i < 9; i++) ck_assert(fabs(neg.a[i] + A.a[i] * A.a[i]) < 1e-13);
    tmat bc = value(&f, "A + 1 - s .* B ./ 2");
    for (int i = 0; i < 9; i++) ck_assert(fabs(bc.a[i] - (A.a[i] + 1 - s.a[0] * B.a[i] / 2)) < 1e-13);
    tmat sc = value(&f, "s*A*2");
    for (int i = 0; i < 9; i++) ck_assert(fabs(sc.a[i] - 2 * s.a[0] * A.a[i]) < 1e-13);
    tmat t = value(&f, "(A*B)'"), ABt = tm_transpose(AB);
    ck_assert(tm_maxdiff(t, ABt) < 1e-13);
    /* X.^2.*X is (X.^2).*X, as MATLAB and Octave read it */
    tmat cube = value(&f, "A.^2.*A"), half = value(&f, "2./A"), four = value(&f, "2.^2*A");
    for (int i = 0; i < 9; i++) {
        ck_assert(fabs(cube.a[i] - A.a[i] * A.a[i] * A.a[i]) < 1e-12);
        ck_assert(fabs(half.a[i] - 2 / A.a[i]) < 1e-13);
        ck_assert(fabs(four.a[i] - 4 * A.a[i]) < 1e-13);
    }
    tmat fill = value(&f, "ones(3,3) - 2*zeros(3,3) + A"); /* the language's fills */
    for (int i = 0; i < 9; i++) ck_assert(fabs(fill.a[i] - (1 + A.a[i])) < 1e-13);
    tmat tm[] = { A, B, C, s, AB, want, got, neg, bc, sc, t, ABt, cube, half, four, fill };
    for (size_t i = 0; i < sizeof tm / sizeof tm[0]; i++) tm_free(&tm[i]);
    teardown(&f);
}
END_TEST

/* prefix, k minus signs and suffix, for k from 150 to 210: parsed up to
 * the limit, and then printed (with frag) and parsed again */
static void reparse_at_limit(fixture *f, const char *prefix, const char *suffix, const char *frag)
{
    char text[512];
    int64_t pos;
    for (int k = 150; k <= 210; k++) {
        int len = snprintf(text, sizeof text, "%s", prefix);
        memset(text + len, '-', (size_t)k);
        snprintf(text + len + k, sizeof text - (size_t)(len + k), "%s", suffix);
        lj_expr *e = lj_parse(f->ctx, text, f->t, &pos);
        if (!e) {
            ck_assert_msg(k > 190, "%d minus signs did not parse: %s", k, lj_context_message(f->ctx));
            continue;
        }
        char *s = lj_expr_print(f->ctx, e);
        ck_assert_ptr_nonnull(s);
        ck_assert_msg(strstr(s, frag) != NULL, "%d: %s printed without '%s'", k, suffix, frag);
        lj_expr *g = lj_parse(f->ctx, s, f->t, &pos);
        ck_assert_msg(g != NULL, "%s%d minus signs%s: the print does not parse again (%s)", prefix, k, suffix,
                      lj_context_message(f->ctx));
        lj_expr_free(&g);
        lj_free(s);
        lj_expr_free(&e);
    }
}

START_TEST(test_errors_and_positions)
{
    fixture f = setup();
    const struct { const char *text; lj_status code; int64_t pos; const char *frag; } bad[] = {
        { "", LJ_ERR_PARSE, 0, "empty expression" },
        { "   ", LJ_ERR_PARSE, 3, "empty expression" },
        { "A*(B", LJ_ERR_PARSE, 4, "expected ')' but found end of expression" },
        { "A*B)", LJ_ERR_PARSE, 3, "unbalanced ')'" },
        { "A # B", LJ_ERR_PARSE, 2, "unexpected '#'" },
        { "foo(A)", LJ_ERR_PARSE, 0, "unknown function 'foo'" },
        { "kron(A)", LJ_ERR_PARSE, 0, "'kron' takes 2 arguments, got 1" },
        { "tr(A, B)", LJ_ERR_PARSE, 6, "'tr' takes 1 argument, got more" },
        { "tr()", LJ_ERR_PARSE, 3, "got 0" },
        { "A + Q", LJ_ERR_NAME, 4, "'Q' is not declared" },
        { "A +", LJ_ERR_PARSE, 3, "unexpected end of expression" },
        { "A.^B", LJ_ERR_PARSE, 3, "exponent" },
        { "A*R*x", LJ_ERR_SHAPE, 1, "mul: inner dimensions differ: (3×3)·(2×3)" },
        { "A + R", LJ_ERR_SHAPE, 2, "add: shapes differ" },
        { "tr(R)", LJ_ERR_SHAPE, 0, "tr: matrix must be square" },
        { "A/B", LJ_ERR_SHAPE, 1, "div" },
        { "1e999*A", LJ_ERR_PARSE, 0, "bad number" },
        { "A(B)", LJ_ERR_PARSE, 0, "unknown function 'A'" },
        { "kron(A, B,", LJ_ERR_PARSE, 10, "unexpected end of expression" },
        { "kron(A, B, C)", LJ_ERR_PARSE, 11, "got more" },
        { "sum(A B)", LJ_ERR_PARSE, 6, "expected ',' or ')' but found 'B'" },
        { "A + x.*R", LJ_ERR_SHAPE, 5, "hadamard" },
        { "A*x + 2.*R'", LJ_ERR_SHAPE, 4, "add: shapes differ" },
        { "kron(A, x) - R", LJ_ERR_SHAPE, 11, "sub: shapes differ" },
        { "logdet(R*R'*x)", LJ_ERR_SHAPE, 11, "mul" },
        { "ones(3)", LJ_ERR_PARSE, 0, "'ones' takes 2 arguments, got 1" },
        { "A + ones(3,A)", LJ_ERR_PARSE, 4, "ones(m,n) needs constant non-negative integers m and n" },
        { "zeros(-1,3)", LJ_ERR_PARSE, 0, "zeros(m,n) needs constant" },
        { "zeros(1.5,3)", LJ_ERR_PARSE, 0, "zeros(m,n) needs constant" },
        { "A + ones(2,3)", LJ_ERR_SHAPE, 2, "add: shapes differ" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t pos = 99;
        lj_context_clear(f.ctx);
        lj_expr *e = lj_parse(f.ctx, bad[i].text, f.t, &pos);
        ck_assert_msg(e == NULL, "'%s' parsed", bad[i].text);
        ck_assert_msg(lj_context_status(f.ctx) == bad[i].code, "'%s': status %d (%s)", bad[i].text,
                      (int)lj_context_status(f.ctx), lj_context_message(f.ctx));
        ck_assert_msg(strstr(lj_context_message(f.ctx), bad[i].frag) != NULL, "'%s': '%s' lacks '%s'",
                      bad[i].text, lj_context_message(f.ctx), bad[i].frag);
        int64_t want = bad[i].pos; /* shape errors point at the operator too */
        ck_assert_msg(pos == want, "'%s': error position %lld, want %lld", bad[i].text, (long long)pos,
                      (long long)want);
    }
    /* nesting far deeper than any real expression fails cleanly */
    char deep[8192];
    memset(deep, '(', 3000);
    strcpy(deep + 3000, "A");
    int64_t pos;
    ck_assert_ptr_null(lj_parse(f.ctx, deep, f.t, &pos));
    ck_assert_ptr_nonnull(strstr(lj_context_message(f.ctx), "nests too deeply"));
    memset(deep, '-', 3000);
    ck_assert_ptr_null(lj_parse(f.ctx, deep, f.t, &pos));
    /* "(-" costs one level, its bracket none (the printer's brackets) */
    for (int k = 0; k < 1500; k++) deep[2 * k] = '(', deep[2 * k + 1] = '-';
    strcpy(deep + 3000, "A");
    memset(deep + 3001, ')', 1500);
    deep[4501] = '\0';
    ck_assert_ptr_null(lj_parse(f.ctx, deep, f.t, &pos));
    ck_assert_ptr_nonnull(strstr(lj_context_message(f.ctx), "nests too deeply"));
    /* what lazyjac prints of an expression parses again, at the limit too:
     * A - ---…A is printed A - (---…A), its minus signs bracketed; ---…A^0
     * - 84 is printed ---…eye(3) - 84, a lone number as a function's
     * argument adding no depth either */
    reparse_at_limit(&f, "A - ", "A^3", "(-");
    reparse_at_limit(&f, "", "A^0-84", "eye(3)");
    /* eye(eye(…)) still counts: only a lone number is free */
    strcpy(deep, "eye(");
    for (int k = 1; k < 400; k++) memcpy(deep + 4 * k, "eye(", 4);
    strcpy(deep + 1600, "3");
    memset(deep + 1601, ')', 400);
    deep[2001] = '\0';
    ck_assert_ptr_null(lj_parse(f.ctx, deep, f.t, &pos));
    ck_assert_ptr_nonnull(strstr(lj_context_message(f.ctx), "nests too deeply"));
    ck_assert_ptr_null(lj_parse(f.ctx, NULL, f.t, &pos));
    ck_assert_int_eq(lj_context_status(f.ctx), LJ_ERR_INVALID);
    ck_assert_ptr_null(lj_parse(NULL, "A", f.t, &pos));
    /* without a table every name is undeclared */
    ck_assert_ptr_null(lj_parse(f.ctx, "A", NULL, &pos));
    ck_assert_int_eq(lj_context_status(f.ctx), LJ_ERR_NAME);
    teardown(&f);
}
END_TEST

START_TEST(test_caret)
{
    char *c = lj_caret("A*(B", 4);
    ck_assert_str_eq(c, "  A*(B\n      ^");
    lj_free(c);
    c = lj_caret("x ∘ y #", 8); /* UTF-8: the caret counts characters */
    ck_assert_str_eq(c, "  x ∘ y #\n        ^");
    lj_free(c);
    c = lj_caret("ab", 99);
    ck_assert_str_eq(c, "  ab\n    ^");
    lj_free(c);
    /* a multi-line text shows the line that holds pos */
    c = lj_caret("A +\n  B *\r\n  Q + C", 13);
    ck_assert_str_eq(c, "    Q + C\n    ^");
    lj_free(c);
    /* a long line is shown as a window around pos */
    char longl[1001];
    for (int i = 0; i < 1000; i++) longl[i] = (char)('a' + i % 26);
    longl[1000] = '\0';
    c = lj_caret(longl, 500);
    char *nl = strchr(c, '\n');
    ck_assert_ptr_nonnull(nl);
    ck_assert(strncmp(c, "  …", 5) == 0);           /* cut on the left */
    ck_assert(strncmp(nl - 3, "…", 3) == 0);        /* and on the right */
    ck_assert(nl - c < 120);
    /* the caret stands under the character at 500 */
    const char *caret = strchr(nl, '^');
    size_t col = (size_t)(caret - nl - 1);         /* columns before the caret */
    size_t k = 0, chars = 0;
    while (chars < col) { /* walk the first line by characters */
        if (((unsigned char)c[k] & 0xC0) != 0x80) chars++;
        k++;
    }
    while (((unsigned char)c[k] & 0xC0) == 0x80) k++;
    ck_assert_int_eq(c[k], longl[500]);
    lj_free(c);
    ck_assert_ptr_null(lj_caret(NULL, 0));
}
END_TEST

START_TEST(test_symtab)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = lj_symtab_new(ctx);
    lj_expr *a = lj_expr_var(ctx, "a", 1, 1, NULL), *a2 = lj_expr_const(ctx, "a", 2, 2, NULL);
    lj_expr *anon = lj_expr_scalar(ctx, 3.0);
    CK_OK(ctx, lj_symtab_add(ctx, t, a));
    ck_assert_int_eq(lj_symtab_add(ctx, t, a2), LJ_ERR_NAME);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "'a' is declared twice"));
    ck_assert_int_eq(lj_symtab_add(ctx, t, anon), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_symtab_add(ctx, NULL, a), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_symtab_size(t), 1);
    ck_assert_ptr_eq(lj_symtab_at(t, 0), a);
    ck_assert_ptr_null(lj_symtab_at(t, 1));
    ck_assert_ptr_eq(lj_symtab_get(t, "a"), a);
    ck_assert_ptr_null(lj_symtab_get(t, "b"));
    ck_assert_ptr_null(lj_symtab_get(NULL, "a"));
    lj_expr_free(&a);
    lj_expr_free(&a2);
    lj_expr_free(&anon);
    /* the table keeps its own reference */
    ck_assert_int_eq(lj_expr_rows(lj_symtab_get(t, "a")), 1);
    lj_symtab_free(&t);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_alloc_failure_parse)
{
    fixture f = setup();
    int ok_at = 0;
    for (int n = 1; n < 500; n++) {
        lj_context_fail_alloc(f.ctx, n, 0);
        int64_t pos;
        lj_expr *e = lj_parse(f.ctx, "tr(inv(A*B' + C)) + sum(kron(x, x') .* A)", f.t, &pos);
        if (e) {
            ok_at = n;
            lj_expr_free(&e);
            break;
        }
        ck_assert_msg(lj_context_status(f.ctx) == LJ_ERR_NOMEM, "n=%d: %s", n, lj_context_message(f.ctx));
        ck_assert_int_eq(pos, -1);
        lj_context_clear(f.ctx);
    }
    ck_assert_int_gt(ok_at, 10);
    lj_context_fail_alloc(f.ctx, 0, 0);
    teardown(&f);
}
END_TEST

Suite *make_parse_suite(void)
{
    Suite *s = suite_create("parse");
    TCase *normal = tcase_create("normal");
    tcase_add_test(normal, test_round_trip);
    tcase_add_test(normal, test_values_and_broadcast);
    tcase_add_test(normal, test_caret);
    tcase_add_test(normal, test_symtab);
    suite_add_tcase(s, normal);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_errors_and_positions);
    tcase_add_test(errors, test_alloc_failure_parse);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    return run_suite(make_parse_suite());
}
