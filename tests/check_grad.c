/* Derivatives as expressions: symbolic gradients (their printed forms
 * against the Matrix Cookbook's, their values against the closed forms
 * written independently here and against lj_expr_gradient), structured
 * Hessians (against central differences of the gradient, symmetric, the
 * three-way operator check), mathematical printing, and every error path. */
#include "testutil.h"
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* A table of variables from "A=3x4 X=3x3 P=2x2 a=1x1+": random values; a
 * square variable named X is made well-conditioned with a positive
 * determinant, one named P or declared with a trailing + has positive
 * entries, one named ones is all ones. */
static lj_symtab *declare(lj_context *ctx, const char *decls, uint64_t seed)
{
    lj_symtab *t = lj_symtab_new(ctx);
    ck_assert_ptr_nonnull(t);
    char buf[512];
    snprintf(buf, sizeof buf, "%s", decls);
    for (char *tok = strtok(buf, " "); tok; tok = strtok(NULL, " ")) {
        char name[32];
        long long r, c;
        ck_assert_msg(sscanf(tok, "%31[^=]=%lldx%lld", name, &r, &c) == 3, "bad declaration %s", tok);
        tmat m = tm_rand(r, c, &seed);
        bool positive = name[0] == 'P' || tok[strlen(tok) - 1] == '+';
        for (int64_t k = 0; k < m.r * m.c; k++) {
            if (!strcmp(name, "X") && r == c && k % (r + 1) == 0) m.a[k] += 4.0;
            if (positive) m.a[k] = 0.5 + fabs(m.a[k]);
            if (!strcmp(name, "ones")) m.a[k] = 1.0;
        }
        lj_expr *e = lj_expr_var(ctx, name, r, c, m.a);
        CK_OK(ctx, lj_symtab_add(ctx, t, e));
        lj_expr_free(&e);
        tm_free(&m);
    }
    return t;
}

static lj_expr *parse(lj_context *ctx, lj_symtab *t, const char *text)
{
    int64_t pos;
    lj_expr *f = lj_parse(ctx, text, t, &pos);
    ck_assert_msg(f != NULL, "%s: %s", text, lj_context_message(ctx));
    return f;
}

static double *value(lj_context *ctx, const lj_expr *e, int64_t *n)
{
    int64_t r, c;
    double *v = NULL;
    CK_OK(ctx, lj_expr_eval(ctx, e, &r, &c, &v));
    *n = r * c;
    return v;
}

static double rel_diff(const double *a, const double *b, int64_t n)
{
    double d = 0, s = 1e-300;
    for (int64_t i = 0; i < n; i++) {
        d = fmax(d, fabs(a[i] - b[i]));
        s = fmax(s, fabs(b[i]));
    }
    return d / fmax(s, 1.0);
}

typedef struct {
    const char *f, *wrt, *decls;
    const char *unicode; /* the printed gradient */
    const char *closed;  /* the same, written in the language, evaluated independently */
} gcase;

/* The value of the gradient expression against J^T·1 of the lazy Jacobian
 * and against the closed form, lj_expr_gradient against J^T·1; the printed
 * form. */
/* J^T·1 through the lazy Jacobian: the reference lj_expr_gradient was
 * before it evaluated the gradient expression */
static void jt_one(lj_context *ctx, const lj_expr *f, const lj_expr *x, double *g)
{
    lj_op *J = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, J);
    double one = 1.0;
    CK_OK(ctx, lj_op_apply(ctx, J, 1, 1.0, &one, 0.0, g));
    lj_op_free(&J);
}

static void check_case(const gcase *c, uint64_t seed)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, c->decls, seed);
    lj_expr *f = parse(ctx, t, c->f), *x = lj_symtab_get(t, c->wrt);
    lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
    CK_NN(ctx, g);
    ck_assert_int_eq(lj_expr_rows(g), lj_expr_rows(x));
    ck_assert_int_eq(lj_expr_cols(g), lj_expr_cols(x));
    char *u = lj_expr_print_math(ctx, g, x, LJ_PRINT_UNICODE);
    CK_NN(ctx, u);
    ck_assert_msg(!strcmp(u, c->unicode), "gradient of %s w.r.t. %s prints '%s', want '%s'", c->f, c->wrt, u,
                  c->unicode);
    int64_t n, n2;
    double *gv = value(ctx, g, &n);
    double *ref = malloc(sizeof *ref * (size_t)n), *lg = malloc(sizeof *lg * (size_t)n);
    jt_one(ctx, f, x, ref);
    double e1 = rel_diff(gv, ref, n);
    ck_assert_msg(e1 < 1e-10, "%s: gradient expression differs from J^T·1 by %g", c->f, e1);
    CK_OK(ctx, lj_expr_gradient(ctx, f, x, lg));
    e1 = rel_diff(lg, ref, n);
    ck_assert_msg(e1 < 1e-10, "%s: lj_expr_gradient differs from J^T·1 by %g", c->f, e1);
    free(lg);
    lj_expr *cf = parse(ctx, t, c->closed);
    double *cv = value(ctx, cf, &n2);
    ck_assert_int_eq(n, n2);
    double e2 = rel_diff(gv, cv, n);
    ck_assert_msg(e2 < 1e-10, "%s: gradient differs from the closed form %s by %g", c->f, c->closed, e2);
    lj_free(cv);
    lj_free(gv);
    free(ref);
    lj_free(u);
    lj_expr_free(&cf);
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

/* Matrix Cookbook (Petersen & Pedersen) identities; the printed forms are
 * the Cookbook's up to the order of factors and terms. */
static const gcase cookbook[] = {
    { "tr(A*X)", "X", "A=3x4 X=4x3", "A^T", "A'" },                                        /* (100) */
    { "tr(X*A)", "X", "A=3x4 X=4x3", "A^T", "A'" },                                        /* (101) */
    { "tr(A*X*B)", "X", "A=3x4 X=4x2 B=2x3", "A^T·B^T", "A'*B'" },                         /* (102) */
    { "tr(A*X'*B)", "X", "A=3x2 X=4x2 B=4x3", "B·A", "B*A" },                              /* (103) */
    { "tr(X'*A)", "X", "A=4x3 X=4x3", "A", "A" },                                          /* (101) */
    { "tr(X'*X)", "X", "X=4x3", "2·X", "2*X" },                                            /* (113) */
    { "tr(X*X)", "X", "X=3x3", "2·X^T", "2*X'" },                                          /* (111) */
    { "tr(X'*A*X)", "X", "A=4x4 X=4x3", "(A^T + A)·X", "A*X + A'*X" },                     /* (117) */
    { "tr(X*A*X')", "X", "A=3x3 X=4x3", "X·(A + A^T)", "X*A' + X*A" },                     /* (116) */
    { "tr(A*X'*B*X*C)", "X", "A=2x3 X=4x3 B=4x4 C=3x2", "B^T·X·A^T·C^T + B·X·C·A",
      "B*X*C*A + B'*X*A'*C'" },                                                            /* (119) */
    { "tr(A*X*B*X)", "X", "A=3x3 B=3x3 X=3x3", "B^T·X^T·A^T + A^T·X^T·B^T", "A'*X'*B' + B'*X'*A'" }, /* (118) */
    { "tr(X^3)", "X", "X=3x3", "3·(X^T)^2", "3*(X*X)'" },                                  /* (121) */
    { "a'*X*b", "X", "a=3x1 X=3x4 b=4x1", "a b^T", "a*b'" },                               /* (70) */
    { "a'*X'*b", "X", "a=4x1 X=3x4 b=3x1", "b a^T", "b*a'" },                              /* (71) */
    { "a'*X*a", "X", "a=3x1 X=3x3", "a a^T", "a*a'" },                                     /* (72) */
    { "b'*X'*X*c", "X", "b=3x1 X=4x3 c=3x1", "X·(b c^T + c b^T)", "X*(b*c' + c*b')" },     /* (77) */
    { "(X*b+c)'*D*(X*b+c)", "X", "b=3x1 X=4x3 c=4x1 D=4x4", "(D^T + D)·(X·b + c) b^T",
      "(D + D')*(X*b + c)*b'" },                                                           /* (79) */
    { "x'*A*x", "x", "x=3x1 A=3x3", "(A^T + A)·x", "(A + A')*x" },                         /* (81) */
    { "x'*x", "x", "x=3x1", "2·x", "2*x" },
    { "(A*x+b)'*(A*x+b)", "x", "A=4x3 x=3x1 b=4x1", "2·A^T·(A·x + b)", "2*A'*(A*x + b)" }, /* (85) */
    { "norm2(x)^2", "x", "x=3x1", "2·x", "2*x" },                                          /* (131) */
    { "norm2(A*x-y)^2", "x", "A=4x3 x=3x1 y=4x1", "2·A^T·(A·x − y)", "2*A'*(A*x - y)" },   /* (84) */
    { "norm2(X)", "X", "X=3x4", "X / ‖X‖_F", "X/sqrt(tr(X'*X))" },
    { "norm2(X)^2", "X", "X=3x4", "2·X", "2*X" },                                          /* (127) */
    { "det(X)", "X", "X=3x3", "det(X)·X^{-T}", "det(X)*inv(X')" },                         /* (49) */
    { "log(det(X))", "X", "X=3x3", "X^{-T}", "inv(X')" },                                  /* (57) */
    { "logdet(X)", "X", "X=3x3", "X^{-T}", "inv(X)'" },                                    /* (57) */
    { "log(det(X'*X))", "X", "X=4x3", "2·X·(X^T·X)^{-1}", "2*X*inv(X'*X)" },               /* (55) */
    { "tr(inv(X)*A)", "X", "X=3x3 A=3x3", "−X^{-T}·A^T·X^{-T}", "-(inv(X)*A*inv(X))'" },   /* (63) */
    { "tr(A*inv(X)*B)", "X", "A=3x3 X=3x3 B=3x3", "−X^{-T}·A^T·B^T·X^{-T}", "-(inv(X)*B*A*inv(X))'" }, /* (124) */
    { "tr(inv(X))", "X", "X=3x3", "−(X^{-T})^2", "-(inv(X)*inv(X))'" },
    { "a'*inv(X)*b", "X", "a=3x1 X=3x3 b=3x1", "−X^{-T}·a b^T·X^{-T}", "-inv(X)'*a*b'*inv(X)'" }, /* (61) */
    { "sum(X.*A)", "X", "X=3x4 A=3x4", "A", "A" },
    { "sum(exp(X))", "X", "X=3x4", "exp(X)", "exp(X)" },
    { "sum(log(P))", "P", "P=3x4", "1 ⊘ P", "1./P" },
    { "sum(sqrt(P))", "P", "P=3x4", "0.5 ⊘ sqrt(P)", "0.5./sqrt(P)" },
    { "sum(X.^3)", "X", "X=3x4", "3·X^{∘2}", "3*X.*X" },
    /* equal elementwise factors gathered into powers, as the Cookbook writes them */
    { "x'*(x.*x.*x)", "x", "x=4x1", "4·x^{∘3}", "4*x.*x.*x" },
    { "sum(exp(X).*X.*X)", "X", "X=3x4", "2·(exp(X) ∘ X) + X^{∘2} ∘ exp(X)", "(2*X + X.*X).*exp(X)" },
    { "sum(sin(X))", "X", "X=3x4", "cos(X)", "cos(X)" },
    { "norm1(X)", "X", "X=3x4", "sign(X)", "sign(X)" },
    { "sum(X)", "X", "X=3x4", "1_{3×4}", "X.^0" },
    { "exp(x'*A*x)", "x", "x=3x1 A=3x3", "exp(x^T·A·x)·(A^T + A)·x", "exp(x'*A*x)*(A + A')*x" },
    { "tr(X'*X)^2", "X", "X=3x2", "4·tr(X^T·X)·X", "4*tr(X'*X)*X" },
    { "norm2(X)^3", "X", "X=3x2", "3·‖X‖_F·X", "3*norm2(X)*X" },
    { "det(X)^2", "X", "X=3x3", "2·det(X)^2·X^{-T}", "2*det(X)^2*inv(X)'" },
    { "1/det(X)", "X", "X=3x3", "−X^{-T} / det(X)", "-inv(X)'/det(X)" },                   /* (50) */
    { "sum(vec(X'))", "X", "X=3x2", "1_{3×2}", "X.^0" },
    /* a transpose taken into an elementwise function: exp(X^T)^T is exp(X) */
    { "sum(sum(exp(X')))", "X", "X=3x2", "exp(X)", "exp(X)" },
    { "tr(A*sin(X'))", "X", "A=3x2 X=3x2", "A ∘ cos(X)", "A.*cos(X)" },
    /* powers of one scalar multiply out, a negative power is a divisor */
    { "1/(x'*x)^2", "x", "x=3x1", "−4·(x / (x^T·x)^3)", "-4*x/(x'*x)^3" },
    { "(x'*x)^-0.5", "x", "x=3x1", "−x / (x^T·x)^1.5", "-x/(x'*x)^1.5" },
    { "(x'*x)^0.5", "x", "x=3x1", "x / (x^T·x)^0.5", "x/sqrt(x'*x)" },
    { "((x'*x)^2)^2", "x", "x=3x1", "8·(x^T·x)^3·x", "8*(x'*x)^3*x" },
    { "(x'*P*x)^-1", "x", "x=3x1+ P=3x3", "−(P^T + P)·x / (x^T·P·x)^2", "-(P + P')*x/(x'*P*x)^2" },
};

START_TEST(test_cookbook)
{
    check_case(&cookbook[_i], 100 + (uint64_t)_i);
}
END_TEST

/* matrixcalculus.org's documentation examples, in the forms that site shows
 * (A*exp(x) is vector-valued: its Jacobian, below), but for the logistic
 * loss: exp(m) ⊘ (exp(m) + 1), which the site prints, is σ(m) here. */
static const gcase mc_examples[] = {
    { "0.5*x'*A*x", "x", "x=4x1 A=4x4", "0.5·(A^T + A)·x", "0.5*(A*x + A'*x)" },
    { "(y.*v)'*x", "x", "x=4x1 y=4x1 v=4x1", "y ∘ v", "y.*v" },
    { "a^b", "a", "a=1x1+ b=1x1", "b·a^(b − 1)", "b*a^(b-1)" },
    { "norm1(A*x-y)", "x", "A=4x4 x=4x1 y=4x1", "A^T·sign(A·x − y)", "A'*sign(A*x - y)" },
    { "norm2(A*x-y)^2", "x", "A=4x4 x=4x1 y=4x1", "2·A^T·(A·x − y)", "2*A'*(A*x - y)" },
    { "sum(log(exp(-y.*(Z*w)) + 1))", "w", "y=4x1 Z=4x3 w=3x1",
      "−Z^T·(σ(−y ∘ (Z·w)) ∘ y)",
      "-Z'*(y.*exp(-y.*(Z*w))./(1 + exp(-y.*(Z*w))))" },
    { "tr(A*X'*B*X*C)", "X", "A=4x4 X=4x4 B=4x4 C=4x4", "B^T·X·A^T·C^T + B·X·C·A", "B'*X*A'*C' + B*X*C*A" },
    { "log(det(inv(X)))", "X", "X=4x4", "−X^{-T}", "-inv(X)'" },
};

START_TEST(test_matrixcalculus)
{
    check_case(&mc_examples[_i], 300 + (uint64_t)_i);
}
END_TEST

/* Elementwise products and quotients simplified: a factor cancels against
 * an equal divisor, exp(m) ⊘ (1 + exp(m)) is σ(m), and a sum of
 * elementwise products whose terms cancel when multiplied out is
 * collected ((1 − y) ∘ σ − y ∘ (1 − σ) is σ − y); and how signs print.
 * Each against J^T·1 and a closed form. */
static const gcase ew_simplified[] = {
    { "-sum(y.*log(sigmoid(Z*w)) + (1-y).*log(1-sigmoid(Z*w)))", "w", "y=5x1 Z=5x3 w=3x1", "Z^T·(σ(Z·w) − y)",
      "Z'*(sigmoid(Z*w) - y)" },
    { "sum(y.*log(sigmoid(x)))", "x", "x=4x1 y=4x1", "y ∘ (1 − σ(x))", "y.*(1 - sigmoid(x))" },
    { "sum(log(1+exp(x)).*y)", "x", "x=4x1 y=4x1", "y ∘ σ(x)", "y.*sigmoid(x)" },
    { "sum(log(exp(X)+1))", "X", "X=3x2", "σ(X)", "sigmoid(X)" },
    { "sum(log(1+exp(2*x)))", "x", "x=4x1", "2·σ(2·x)", "2*sigmoid(2*x)" },
    { "sum(log(1+exp(x))+log(1+exp(-x)))", "x", "x=4x1", "σ(x) − σ(−x)", "sigmoid(x) - sigmoid(-x)" },
    /* an operand that starts with a minus sign is bracketed on the right of
     * another operator: no two signs meet */
    { "sum(exp(x - (-y)))", "x", "x=3x1 y=3x1", "exp(x − (−y))", "exp(x + y)" },
    { "sum(exp(x.*(-y)))", "x", "x=3x1 y=3x1", "−exp(x ∘ (−y)) ∘ y", "-exp(-x.*y).*y" },
    { "sum(exp(A*(-x)))", "x", "x=3x1 A=3x3", "−A^T·exp(A·(−x))", "-A'*exp(-A*x)" },
    { "sum(exp(x + (-2)*y))", "x", "x=3x1 y=3x1", "exp(x + (−2·y))", "exp(x - 2*y)" },
    { "sum(exp(-(-y) - x))", "x", "x=3x1 y=3x1", "−exp(−(−y) − x)", "-exp(y - x)" },
    /* a positive term first (Poisson regression's gradient) */
    { "sum(exp(Z*w) - y.*(Z*w))", "w", "Z=5x3 y=5x1 w=3x1", "Z^T·(exp(Z·w) − y)", "Z'*(exp(Z*w) - y)" },
    /* everything cancels: ones, and a scalar's multiple of them */
    { "sum(log(exp(x).*exp(y)))", "x", "x=4x1 y=4x1", "1_4", "x.^0" },
    { "sum(log(exp(s*x)))", "x", "x=4x1 s=1x1", "s·1_4", "s*x.^0" },
    /* nothing cancels: the product as it was */
    { "sum(y.*log(exp(x)+2))", "x", "x=4x1 y=4x1", "(y ⊘ (exp(x) + 2)) ∘ exp(x)", "y.*exp(x)./(exp(x) + 2)" },
    /* an integer power of a negation or a transpose: the sign and the
     * transpose come out of the base */
    { "sum((-x).^3)", "x", "x=4x1", "−3·x^{∘2}", "-3*x.*x" },
    { "sum((-x).^2)", "x", "x=4x1", "2·x", "2*x" },
    { "sum((x').^3)", "x", "x=4x1", "3·x^{∘2}", "3*x.*x" },
    { "sum(sum((-X)'.^3))", "X", "X=3x2", "−3·X^{∘2}", "-3*X.*X" },
    { "sum((-x).^(-2))", "x", "x=4x1+", "−2 ⊘ x^{∘3}", "-2./(x.*x.*x)" },
    { "sum(sqrt(-(-x)))", "x", "x=4x1+", "0.5 ⊘ sqrt(−(−x))", "0.5./sqrt(x)" }, /* not an integer power */
    /* a whole power cancels against its base: x ⊘ x^{∘2} is 1 ⊘ x, and
     * 2·(1 ⊘ x) is 2 ⊘ x */
    { "sum(log(x.^2))", "x", "x=4x1+", "2 ⊘ x", "2./x" },
    { "sum(log(x.^3))", "x", "x=4x1+", "3 ⊘ x", "3./x" },
    /* nothing cancels, but equal factors on either side of a quotient
     * gather into powers: the quotient rule's u ⊘ v − u' ∘ v' ⊘ v^{∘2} */
    { "sum(x./(1+x))", "x", "x=4x1+", "1 ⊘ (1 + x) − x ⊘ (1 + x)^{∘2}", "1./(1 + x).^2" },
    { "sum(x.^2./(1+x.^2))", "x", "x=4x1", "2·(x ⊘ (1 + x^{∘2})) − 2·(x^{∘3} ⊘ (1 + x^{∘2})^{∘2})",
      "2*x./(1 + x.^2).^2" },
    { "sum(exp(x)./(1+exp(x)))", "x", "x=4x1", "σ(x) − σ(x)^{∘2}", "sigmoid(x).*(1 - sigmoid(x))" },
    { "sum(x./sqrt(1+x.^2))", "x", "x=4x1", "1 ⊘ sqrt(1 + x^{∘2}) − x^{∘2} ⊘ sqrt(1 + x^{∘2})^{∘3}",
      "1./sqrt(1 + x.^2).^3" },
};

START_TEST(test_elementwise_simplified)
{
    check_case(&ew_simplified[_i], 900 + (uint64_t)_i);
}
END_TEST

/* a^b with respect to b, and A*exp(x)'s Jacobian */
START_TEST(test_matrixcalculus_rest)
{
    static const gcase pb = { "a^b", "b", "a=1x1+ b=1x1", "a^b·log(a)", "a^b*log(a)" };
    check_case(&pb, 8);
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "A=4x4 x=4x1", 9);
    lj_expr *f = parse(ctx, t, "A*exp(x)");
    lj_op *J = lj_expr_jacobian(ctx, f, lj_symtab_get(t, "x"));
    CK_NN(ctx, J);
    char *u = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_str_eq(u, "A·Diag(exp(x))");
    lj_free(u);
    lj_op_free(&J);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* The three formats, and printing of the internal operations. */
/* A scalar that is a symbol stays one in J and H: its value multiplies,
 * its name prints ("s·I_9", never the number), through the rules that
 * fold scalings (products, Kronecker factors, transposes, negation), and
 * two symbols of equal value stay two terms. Each J is checked against
 * central differences. */
static const struct {
    const char *text, *var, *printed;
    int hessian;
} scalar_cases[] = {
    { "s*X", "X", "s·I_9", 0 },
    { "X*s", "X", "s·I_9", 0 },
    { "s.*X", "X", "s·I_9", 0 },
    { "X/s", "X", "(1/s)·I_9", 0 },
    { "X./s", "s", "−vec(X./s.^2)", 0 },
    { "X/s", "s", "−(1/s^2)·vec X", 0 },
    { "-(s*X)", "X", "−s·I_9", 0 },
    { "2*(s*X)", "X", "2·s·I_9", 0 },
    { "s*(A*X)", "X", "s·(I_3 ⊗ A)", 0 },
    { "(s*X)'", "X", "s·K_{3,3}", 0 },
    { "s*X + t*X", "X", "s·I_9 + t·I_9", 0 },
    { "s*X - s*X", "X", "0_{9×9}", 0 },
    { "s*(t*X)", "X", "s·t·I_9", 0 },
    { "(s+t)*X", "X", "(s + t)·I_9", 0 },
    { "det(X)", "X", "det(X)·(vec X^{-T})^T", 0 },
    { "2*X", "X", "2·I_9", 0 },
    { "s/2*(x'*x)", "x", "s·I_3", 1 },
    /* powers of one symbol multiply out, numbers stay numbers: u^j·u^k = u^(j+k), (u^j)^k = u^(jk) */
    { "1/(x'*x)^2", "x", "−4·(1/(x^T·x)^3)·x^T", 0 },
    { "(x'*x)^-2", "x", "−4·(1/(x^T·x)^3)·x^T", 0 },
    { "((x'*x)^2)^2", "x", "8·(x^T·x)^3·x^T", 0 },
    { "(x'*x)^2/(x'*x)", "x", "2·x^T", 0 },
    { "(x'*x)/(x'*x)", "x", "0_{1×3}", 0 },
    { "(x'*x)^-0.5", "x", "−(1/(x^T·x)^1.5)·x^T", 0 },
    { "(x'*x).^-0.5", "x", "−(1/(x^T·x)^1.5)·x^T", 0 },
    { "(x'*x)^1", "x", "2·x^T", 0 },
    { "(x'*x)^0", "x", "0_{1×3}", 0 },
    { "x/s^-2", "x", "s^2·I_3", 0 },
    { "X.^-1", "X", "Diag(−(vec X).^(−2))", 0 },
    { "X/(s')^3", "X", "(1/(s^T)^3)·I_9", 0 },
    { "1/(x'*x)", "x", "−2·((1/(x^T·x)^2)·I_3 − 4·(1/(x^T·x)^3)·x·x^T)", 1 },
    { "(x'*x)^-0.5", "x", "−((1/(x^T·x)^1.5)·I_3 − 3·(1/(x^T·x)^2.5)·x·x^T)", 1 },
    /* −(−P − Q) is P + Q; inverses as A^{-1} and A^{-T}; a commutation
     * between two Kronecker products passes the second, which folds into
     * the first (was (X^{-1} ⊗ I_3)·K_{3,3}·(X^{-T} ⊗ X^{-1}) + …) */
    { "tr(inv(X))", "X", "((X^{-1})^2 ⊗ X^{-T})·K_{3,3} + (X^{-1} ⊗ (X^{-T})^2)·K_{3,3}", 1 },
};

START_TEST(test_scalar_symbols)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "s=1x1 t=1x1 X=3x3 A=3x3 x=3x1", 77);
    const char *text = scalar_cases[_i].text;
    lj_expr *f = parse(ctx, t, text), *v = lj_symtab_get(t, scalar_cases[_i].var);
    lj_op *J = scalar_cases[_i].hessian ? lj_expr_hessian(ctx, f, v) : lj_expr_jacobian(ctx, f, v);
    CK_NN(ctx, J);
    char *p = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_msg(p && !strcmp(p, scalar_cases[_i].printed), "%s: J prints %s, expected %s", text, p,
                  scalar_cases[_i].printed);
    lj_free(p);
    double maxrel = 1;
    if (scalar_cases[_i].hessian) {
        lj_expr *g = lj_expr_gradient_expr(ctx, f, v);
        CK_NN(ctx, g);
        CK_OK(ctx, lj_expr_fd_check(ctx, g, v, J, 0, &maxrel, NULL));
        lj_expr_free(&g);
    } else
        CK_OK(ctx, lj_expr_fd_check(ctx, f, v, J, 0, &maxrel, NULL));
    ck_assert_msg(maxrel < 1e-7, "%s: J against central differences: %g", text, maxrel);
    lj_op_free(&J);
    /* every allocation of the build failing in turn: NOMEM, a message, no leak */
    int ok_at = 0;
    for (int n = 1; n < 2000 && !ok_at; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *K = scalar_cases[_i].hessian ? lj_expr_hessian(ctx, f, v) : lj_expr_jacobian(ctx, f, v);
        if (K) ok_at = n;
        else {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "%s, n=%d: %s", text, n, lj_context_message(ctx));
            ck_assert_msg(lj_context_message(ctx)[0], "%s, n=%d: no message", text, n);
            lj_context_clear(ctx);
        }
        lj_op_free(&K);
    }
    lj_context_fail_alloc(ctx, 0, 0);
    ck_assert_int_gt(ok_at, 1);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_formats)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "A=3x3 X=3x3 x=3x1 ones=3x1 P=3x3 W_12=3x3 x_1=3x1", 11);
    const struct { const char *f, *wrt, *u, *plain, *latex; } c[] = {
        { "tr(A*X'*X)", "X", "X·(A^T + A)", "X*(A' + A)", "X \\cdot \\left(A^{\\top} + A\\right)" },
        { "det(X)", "X", "det(X)·X^{-T}", "det(X)*inv(X)'", "\\det\\left(X\\right) \\cdot X^{-\\top}" },
        { "tr(inv(X))", "X", "−(X^{-T})^2", "-(inv(X)')^2", "-\\left(X^{-\\top}\\right)^{2}" },
        { "norm2(X)", "X", "X / ‖X‖_F", "X/norm2(X)", "\\frac{X}{\\|X\\|_F}" },
        { "sum(log(P))", "P", "1 ⊘ P", "1./P", "1 \\oslash P" },
        { "sum(X.^2.*A)", "X", "2·(A ∘ X)", "2*(A.*X)", "2 \\cdot \\left(A \\circ X\\right)" },
        { "sum(relu(X))", "X", "[X > 0]", "(X > 0)", "[X > 0]" },
        { "sum(max(X,A))", "X", "[X > A]", "(X > A)", "[X > A]" },
        { "sum(x)", "x", "1_3", "ones(3,1)", "\\mathbf{1}_{3}" },
        { "ones'*x", "x", "1_3", "ones", "\\mathbf{1}_{3}" },
        { "sum(A)", "X", "0_{3×3}", "zeros(3,3)", "\\mathbf{0}_{3\\times 3}" },
        /* a transpose taken into an elementwise expression down to its
         * transposes: exp(X^T)^T is exp(X) */
        { "sum(sum(exp(X')))", "X", "exp(X)", "exp(X)", "\\exp\\left(X\\right)" },
        { "tr(A*sin(X'))", "X", "A ∘ cos(X)", "A.*cos(X)", "A \\circ \\cos\\left(X\\right)" },
        { "tr(A*(sin(X').*P))", "X", "(A^T ∘ P ∘ cos(X^T))^T", "(A'.*P.*cos(X'))'",
          "\\left(A^{\\top} \\circ P \\circ \\cos\\left(X^{\\top}\\right)\\right)^{\\top}" },
        /* the language's fills: a factor of zeros is no term */
        { "sum(ones(3,3).*X) + sum(zeros(3,3).*X)", "X", "1_{3×3}", "ones(3,3)", "\\mathbf{1}_{3\\times 3}" },
        { "tr(zeros(3,3)*X) + tr(A*X)", "X", "A^T", "A'", "A^{\\top}" },
        { "sum(sigmoid(X))", "X", "σ(X) ∘ (1 − σ(X))", "sigmoid(X).*(1 - sigmoid(X))",
          "\\sigma\\left(X\\right) \\circ \\left(1 - \\sigma\\left(X\\right)\\right)" },
        /* a subscript longer than a character is braced in LaTeX */
        { "x_1'*W_12*x_1", "x_1", "(W_12^T + W_12)·x_1", "(W_12' + W_12)*x_1",
          "\\left(W_{12}^{\\top} + W_{12}\\right) \\cdot x_1" },
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        lj_expr *f = parse(ctx, t, c[i].f), *x = lj_symtab_get(t, c[i].wrt);
        lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
        CK_NN(ctx, g);
        const char *want[3] = { c[i].u, c[i].plain, c[i].latex };
        lj_print_format fmt[3] = { LJ_PRINT_UNICODE, LJ_PRINT_PLAIN, LJ_PRINT_LATEX };
        for (int k = 0; k < 3; k++) {
            char *s = lj_expr_print_math(ctx, g, x, fmt[k]);
            CK_NN(ctx, s);
            ck_assert_msg(!strcmp(s, want[k]), "%s format %d: '%s', want '%s'", c[i].f, k, s, want[k]);
            lj_free(s);
        }
        lj_expr_free(&g);
        lj_expr_free(&f);
    }
    /* without wrt only constants of ones print as 1_n: the variable named ones stays */
    lj_expr *f = parse(ctx, t, "ones'*x");
    char *s = lj_expr_print_math(ctx, f, NULL, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "ones^T·x");
    lj_free(s);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A gradient expression is an expression: the plain form re-parses to the
 * same values (its fills as ones(m,n) and zeros(m,n)), and it can be
 * differentiated again. */
START_TEST(test_plain_reparses)
{
    for (size_t i = 0; i < sizeof cookbook / sizeof cookbook[0]; i++) {
        lj_context *ctx = lj_context_new();
        lj_symtab *t = declare(ctx, cookbook[i].decls, 500 + i);
        lj_expr *f = parse(ctx, t, cookbook[i].f), *x = lj_symtab_get(t, cookbook[i].wrt);
        lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
        CK_NN(ctx, g);
        char *pl = lj_expr_print_math(ctx, g, NULL, LJ_PRINT_PLAIN);
        CK_NN(ctx, pl);
        lj_expr *back = parse(ctx, t, pl);
        int64_t n1, n2;
        double *a = value(ctx, g, &n1), *b = value(ctx, back, &n2);
        ck_assert_int_eq(n1, n2);
        ck_assert_msg(rel_diff(a, b, n1) < 1e-12, "%s: '%s' re-parsed differs", cookbook[i].f, pl);
        lj_free(a);
        lj_free(b);
        lj_free(pl);
        lj_expr_free(&back);
        lj_expr_free(&g);
        lj_expr_free(&f);
        lj_symtab_free(&t);
        lj_context_free(&ctx);
    }
}
END_TEST

/* Large matrix powers stay one factor: the gradient of tr(X^300) (fuzz_parse
 * once spent minutes on A^942) has few terms and the numbers of J^T·1. */
START_TEST(test_large_power)
{
    lj_context *ctx = lj_context_new();
    double x[9] = { 0.3, 0.1, -0.2, 0.05, 0.25, 0.1, -0.1, 0.2, 0.35 };
    lj_expr *X = lj_expr_var(ctx, "X", 3, 3, x);
    lj_expr *P = lj_expr_mpower(ctx, X, 300), *f = lj_expr_trace(ctx, P);
    CK_NN(ctx, f);
    lj_expr *g = lj_expr_gradient_expr(ctx, f, X);
    CK_NN(ctx, g);
    int64_t n;
    double *gv = value(ctx, g, &n), ref[9];
    jt_one(ctx, f, X, ref);
    ck_assert_msg(rel_diff(gv, ref, 9) < 1e-10, "tr(X^300): gradient differs by %g", rel_diff(gv, ref, 9));
    lj_free(gv);
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_expr_free(&P);
    lj_expr_free(&X);
    lj_context_free(&ctx);
}
END_TEST

/* ---- Hessians ---------------------------------------------------------------------- */

typedef struct {
    const char *f, *wrt, *decls, *form; /* form: the printed Hessian, or NULL */
} hcase;

static const hcase hessians[] = {
    { "tr(X'*A*X)", "X", "A=4x4 X=4x3", "I_3 ⊗ (A^T + A)" },
    { "norm2(A*X*B-C)^2/2", "X", "A=4x3 X=3x2 B=2x5 C=4x5", "(B·B^T) ⊗ (A^T·A)" },
    { "x'*A*x", "x", "x=3x1 A=3x3", "A^T + A" },
    { "sum(log(1+exp(-y.*(Z*w)))) + 0.5*w'*w", "w", "Z=6x3 y=6x1 w=3x1", NULL },
    { "logdet(X)", "X", "X=3x3", "−K_{3,3}·(X^{-T} ⊗ X^{-1})" },
    { "det(X)", "X", "X=3x3", NULL },
    { "tr(inv(X)*A)", "X", "X=3x3 A=3x3", NULL },
    { "norm2(A*x-y)^2", "x", "A=5x3 x=3x1 y=5x1", NULL },
    { "sum(exp(X))", "X", "X=3x2", NULL },
    { "exp(x'*A*x/10)", "x", "x=3x1 A=3x3", NULL },
    { "tr(X^3)", "X", "X=3x3", NULL },
    { "tr(A*X'*B*X*C)", "X", "A=2x3 X=4x3 B=4x4 C=3x2", NULL },
    { "sum(log(P))", "P", "P=3x2", NULL },
    { "norm2(X)", "X", "X=3x2", NULL },
    /* (1/‖x‖^2)·(1/‖x‖) multiplied out; a negative number's minus sign as in the other labels */
    { "norm2(x)", "x", "x=3x1", "(1/norm2(x))·I_3 − (1/norm2(x)^3)·x·x^T" },
    { "x'*x/(1+x'*x)", "x", "x=3x1", NULL },
    { "sum(sin(X).*A)", "X", "X=3x2 A=3x2", NULL },
    { "tr(X'*X)^2", "X", "X=3x2", NULL },
    { "a'*inv(X)*b", "X", "a=3x1 X=3x3 b=3x1", NULL },
    { "sum(sigmoid(A*x))", "x", "A=4x3 x=3x1", NULL },
    { "log(det(X'*X))", "X", "X=4x3", NULL },
    { "sum((A*X - B).^2)", "X", "A=4x3 X=3x2 B=4x2", NULL },
    { "sum(kron(X,X).*C)", "X", "X=2x3 C=4x9", NULL },
    { "sum(tanh(X*Y).^2)", "X", "X=3x2 Y=2x3", NULL },
    /* the second derivative one term, Z applied once; log(1 + exp(m))' is σ(m) */
    { "sum(log(1+exp(Z*w)))", "w", "Z=6x3 w=3x1", "Z^T·Diag(σ(Z·w) ∘ (1 − σ(Z·w)))·Z" },
    /* the logistic losses: ±1 labels (the sign of (−y) meets the gradient's),
     * 0/1 labels (the cross-entropy, whose gradient is Z^T·(σ(Z·w) − y)) */
    { "sum(log(1+exp(-y.*(Z*w))))", "w", "Z=6x3 y=6x1 w=3x1",
      "Z^T·Diag(y.^2 ∘ σ(−y ∘ (Z·w)) ∘ (1 − σ(−y ∘ (Z·w))))·Z" },
    { "-sum(y.*log(sigmoid(Z*w)) + (1-y).*log(1-sigmoid(Z*w)))", "w", "Z=6x3 y=6x1 w=3x1",
      "Z^T·Diag(σ(Z·w) ∘ (1 − σ(Z·w)))·Z" },
    { "sum(log(1+exp(x))+log(1+exp(-x)))", "x", "x=4x1",
      "Diag(σ(x) ∘ (1 − σ(x))) + Diag(σ(−x) ∘ (1 − σ(−x)))" },
    { "sum(log(exp(x).*exp(y)))", "x", "x=4x1 y=4x1", "0_{4×4}" },
    /* a whole number in a Diag's label meets the number in front of it */
    { "sum(x.^4)", "x", "x=4x1", "12·Diag(x.^2)" },
    { "sum((-x).^3) + sum(x.^4)", "x", "x=4x1", "12·Diag(x.^2) − 6·Diag(x)" },
    { "sum(x.*cos(x))", "x", "x=4x1", "−2·Diag(sin(x)) − Diag(x ∘ cos(x))" },
};

static void check_hessian(const hcase *c, uint64_t seed)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, c->decls, seed);
    lj_expr *f = parse(ctx, t, c->f), *x = lj_symtab_get(t, c->wrt);
    lj_op *H = lj_expr_hessian(ctx, f, x);
    CK_NN(ctx, H);
    int64_t n = lj_expr_nvalues(x);
    ck_assert_int_eq(lj_op_rows(H), n);
    ck_assert_int_eq(lj_op_cols(H), n);
    if (c->form) {
        char *u = lj_op_print(ctx, H, LJ_PRINT_UNICODE);
        ck_assert_msg(!strcmp(u, c->form), "Hessian of %s prints '%s', want '%s'", c->f, u, c->form);
        lj_free(u);
    }
    /* against central differences of the gradient expression */
    lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
    CK_NN(ctx, g);
    double maxrel = -1, fro;
    CK_OK(ctx, lj_expr_fd_check(ctx, g, x, H, 0, &maxrel, &fro));
    ck_assert_msg(maxrel < 1e-6, "Hessian of %s: finite differences differ by %g", c->f, maxrel);
    /* symmetric, and apply, transpose-apply and the materialised matrix agree */
    double *D = malloc(sizeof *D * (size_t)(n * n));
    CK_OK(ctx, lj_op_to_dense(ctx, H, D, n));
    double asym = 0, big = 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            asym = fmax(asym, fabs(D[i + j * n] - D[j + i * n]));
            big = fmax(big, fabs(D[i + j * n]));
        }
    ck_assert_msg(asym / big < 1e-12, "Hessian of %s is not symmetric: %g", c->f, asym / big);
    tmat ref = { n, n, D };
    check_op_against(ctx, H, ref, 1e-12, c->f);
    free(D);
    lj_expr_free(&g);
    lj_op_free(&H);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}

START_TEST(test_hessians)
{
    check_hessian(&hessians[_i], 700 + (uint64_t)_i);
}
END_TEST

/* The logistic Hessian, its halves one term Diag(…)·Z: a plan over the
 * gradient expression updates that Diag's numbers in place when w moves,
 * and its J is a fresh one's, bit for bit and in print. */
START_TEST(test_hessian_plan_in_place)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "Z=6x3 y=6x1 w=3x1", 91);
    lj_expr *f = parse(ctx, t, "sum(log(1+exp(-y.*(Z*w)))) + 0.5*w'*w"), *w = lj_symtab_get(t, "w");
    lj_expr *g = lj_expr_gradient_expr(ctx, f, w);
    CK_NN(ctx, g);
    lj_jacplan *p = lj_jacplan_new(ctx, g, 1, (const lj_expr *const *)&w);
    CK_NN(ctx, p);
    lj_op *H = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, H);
    char *u = lj_op_print(ctx, H, LJ_PRINT_UNICODE);
    ck_assert_msg(u && !strcmp(u, "I_3 + Z^T·Diag(y.^2 ∘ σ(−y ∘ (Z·w)) ∘ (1 − σ(−y ∘ (Z·w))))·Z"),
                  "the logistic Hessian prints %s", u);
    lj_free(u);
    lj_op_free(&H);
    const double w1[3] = { 0.3, -0.7, 1.1 };
    CK_OK(ctx, lj_expr_set_value(ctx, w, w1));
    H = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, H);
    const char *why;
    ck_assert_msg(lj_jacplan_rebuilt(p, &why) == 0, "built anew: %s", why);
    lj_op *K = lj_expr_jacobian(ctx, g, w);
    CK_NN(ctx, K);
    double dh[9], dk[9];
    CK_OK(ctx, lj_op_to_dense(ctx, H, dh, 3));
    CK_OK(ctx, lj_op_to_dense(ctx, K, dk, 3));
    ck_assert_msg(!memcmp(dh, dk, sizeof dh), "the updated Hessian differs from a fresh one");
    char *ph = lj_op_print(ctx, H, LJ_PRINT_UNICODE), *pk = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
    ck_assert_msg(ph && pk && !strcmp(ph, pk), "updated: %s, fresh: %s", ph, pk);
    lj_free(ph);
    lj_free(pk);
    double maxrel = 1;
    CK_OK(ctx, lj_expr_fd_check(ctx, g, w, H, 0, &maxrel, NULL));
    ck_assert_msg(maxrel < 1e-6, "the updated Hessian against central differences: %g", maxrel);
    tmat ref = { 3, 3, dk };
    check_op_against(ctx, H, ref, 1e-12, "the updated logistic Hessian");
    lj_op_free(&H);
    lj_op_free(&K);
    lj_jacplan_free(&p);
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Two terms Diag(a)·R and −Diag(b)·R with a = b in exact arithmetic:
 * where rounding makes them differ, one term Diag(a − b)·R; where a and
 * b are the same numbers (powers of two: exact), like terms, and J is 0.
 * A plan built at the first point and moved to the second rebuilds (its
 * guard that the terms stay unlike fails) and gives the fresh 0. */
START_TEST(test_plan_diag_terms_become_alike)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "A=3x3 x=3x1 y=3x1", 5);
    lj_expr *A = lj_symtab_get(t, "A"), *x = lj_symtab_get(t, "x"), *y = lj_symtab_get(t, "y");
    const double I3[9] = { 1, 0, 0, 0, 1, 0, 0, 0, 1 }, y0[3] = { 0.3, 1.7, 2.9 };
    const double x0[3] = { 0.1, 0.3, 0.7 }, x1[3] = { 0.5, 1, 2 }, y1[3] = { 0.25, 2, 4 };
    CK_OK(ctx, lj_expr_set_value(ctx, A, I3));
    CK_OK(ctx, lj_expr_set_value(ctx, y, y0));
    CK_OK(ctx, lj_expr_set_value(ctx, x, x0));
    lj_expr *f = parse(ctx, t, "(A'*x)./((A'*x)./(A.^2*y))");
    lj_jacplan *p = lj_jacplan_new(ctx, f, 1, (const lj_expr *const *)&x);
    CK_NN(ctx, p);
    lj_op *J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J);
    char *u = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    ck_assert_msg(u && strstr(u, "Diag(") && strstr(u, " − "), "at x0, J prints %s (want one Diag(a − b) term)", u);
    lj_free(u);
    lj_op_free(&J);
    CK_OK(ctx, lj_expr_set_value(ctx, x, x1));
    CK_OK(ctx, lj_expr_set_value(ctx, y, y1));
    J = lj_jacplan_eval(ctx, p, NULL);
    CK_NN(ctx, J);
    const char *why;
    ck_assert_int_eq(lj_jacplan_rebuilt(p, &why), 1);
    ck_assert_str_eq(why, "two terms of a sum became equal (a fresh build merges them)");
    lj_op *K = lj_expr_jacobian(ctx, f, x);
    CK_NN(ctx, K);
    char *pj = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *pk = lj_op_print(ctx, K, LJ_PRINT_UNICODE);
    ck_assert_msg(pj && pk && !strcmp(pj, pk) && !strcmp(pk, "0_{3×3}"), "the plan's J %s, a fresh one %s", pj, pk);
    lj_free(pj);
    lj_free(pk);
    lj_op_free(&J);
    lj_op_free(&K);
    lj_jacplan_free(&p);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Several variables: the block operator [H_ij], each block against central
 * differences of the gradient with respect to x_i, symmetric as a whole. */
START_TEST(test_hessian_blocks)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "X=3x2 Y=2x4 C=3x4 a=3x1", 31);
    lj_expr *f = parse(ctx, t, "sum((X*Y - C).^2) + a'*X*Y*Y'*X'*a");
    const lj_expr *v[2] = { lj_symtab_get(t, "X"), lj_symtab_get(t, "Y") };
    lj_op *H = lj_expr_hessian_n(ctx, f, 2, v);
    CK_NN(ctx, H);
    int64_t nx = 6, ny = 8, n = nx + ny;
    ck_assert_int_eq(lj_op_rows(H), n);
    double *D = malloc(sizeof *D * (size_t)(n * n));
    CK_OK(ctx, lj_op_to_dense(ctx, H, D, n));
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++)
            ck_assert_msg(fabs(D[i + j * n] - D[j + i * n]) < 1e-9 * fmax(1, fabs(D[i + j * n])),
                          "H[%lld,%lld] = %g, H[%lld,%lld] = %g", (long long)i, (long long)j, D[i + j * n],
                          (long long)j, (long long)i, D[j + i * n]);
    /* column j of H: central differences of (∇_X f, ∇_Y f) along variable entry j */
    lj_expr *gx = lj_expr_gradient_expr(ctx, f, v[0]), *gy = lj_expr_gradient_expr(ctx, f, v[1]);
    CK_NN(ctx, gx);
    CK_NN(ctx, gy);
    double worst = 0;
    for (int64_t j = 0; j < n; j++) {
        lj_expr *var = (lj_expr *)v[j < nx ? 0 : 1];
        int64_t k = j < nx ? j : j - nx;
        int64_t len = lj_expr_nvalues(var);
        double *x0 = malloc(sizeof *x0 * (size_t)len), *xp = malloc(sizeof *xp * (size_t)len);
        int64_t r, c;
        double *vals = NULL;
        CK_OK(ctx, lj_expr_eval(ctx, var, &r, &c, &vals));
        memcpy(x0, vals, sizeof *x0 * (size_t)len);
        lj_free(vals);
        double h = 1e-5, col[14], *gp[2], *gm[2];
        memcpy(xp, x0, sizeof *xp * (size_t)len);
        xp[k] += h;
        CK_OK(ctx, lj_expr_set_value(ctx, var, xp));
        CK_OK(ctx, lj_expr_eval(ctx, gx, &r, &c, &gp[0]));
        CK_OK(ctx, lj_expr_eval(ctx, gy, &r, &c, &gp[1]));
        xp[k] -= 2 * h;
        CK_OK(ctx, lj_expr_set_value(ctx, var, xp));
        CK_OK(ctx, lj_expr_eval(ctx, gx, &r, &c, &gm[0]));
        CK_OK(ctx, lj_expr_eval(ctx, gy, &r, &c, &gm[1]));
        CK_OK(ctx, lj_expr_set_value(ctx, var, x0));
        for (int64_t i = 0; i < nx; i++) col[i] = (gp[0][i] - gm[0][i]) / (2 * h);
        for (int64_t i = 0; i < ny; i++) col[nx + i] = (gp[1][i] - gm[1][i]) / (2 * h);
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(col[i] - D[i + j * n]) / fmax(1, fabs(D[i + j * n])));
        for (int s = 0; s < 2; s++) {
            lj_free(gp[s]);
            lj_free(gm[s]);
        }
        free(x0);
        free(xp);
    }
    ck_assert_msg(worst < 1e-6, "mixed Hessian differs from differences of the gradients by %g", worst);
    tmat ref = { n, n, D };
    check_op_against(ctx, H, ref, 1e-12, "mixed Hessian");
    free(D);
    lj_expr_free(&gx);
    lj_expr_free(&gy);
    lj_op_free(&H);
    lj_expr_free(&f);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* A sparse variable: the gradient on its pattern, P_S ∘ G, equal to
 * lj_expr_gradient's stored entries; the Hessian on the pattern against
 * differences of that gradient. */
START_TEST(test_sparse_variable)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "A=3x4 B=3x3 L=4x4", 41);
    uint64_t seed = 3;
    tmat ref;
    cholmod_sparse *S = tm_rand_sparse(ctx, 4, 3, 0.5, &seed, &ref);
    lj_expr *sv = lj_expr_var_sparse(ctx, "S", S);
    CK_OK(ctx, lj_symtab_add(ctx, t, sv));
    const struct { const char *f, *form, *hform; } c[] = {
        { "tr(A*S)", "P_S ∘ A^T", NULL },
        /* the selection of the pattern constant's entries is P_S, not P_P_S */
        { "norm2(A*S - B)^2", "P_S ∘ (2·A^T·(A·S − B))", "2·P_S·(I_3 ⊗ A^T)·(I_3 ⊗ A)·P_S^T" },
        { "tr(S'*L*S)", "P_S ∘ ((L^T + L)·S)", NULL },
        { "sum(exp(S).*S)", NULL, NULL },
    };
    int64_t nz = lj_expr_nvalues(sv);
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        lj_expr *f = parse(ctx, t, c[i].f);
        lj_expr *g = lj_expr_gradient_expr(ctx, f, sv);
        CK_NN(ctx, g);
        ck_assert(lj_expr_is_sparse(g));
        ck_assert_int_eq(lj_expr_nvalues(g), nz);
        if (c[i].form) {
            char *u = lj_expr_print_math(ctx, g, sv, LJ_PRINT_UNICODE);
            ck_assert_msg(!strcmp(u, c[i].form), "%s: '%s', want '%s'", c[i].f, u, c[i].form);
            lj_free(u);
        }
        cholmod_sparse *G = lj_expr_eval_sparse(ctx, g);
        CK_NN(ctx, G);
        double *r = malloc(sizeof *r * (size_t)nz);
        jt_one(ctx, f, sv, r);
        ck_assert_msg(rel_diff(G->x, r, nz) < 1e-10, "%s: gradient on the pattern differs by %g", c[i].f,
                      rel_diff(G->x, r, nz));
        double *lg = malloc(sizeof *lg * (size_t)nz);
        CK_OK(ctx, lj_expr_gradient(ctx, f, sv, lg));
        ck_assert_msg(rel_diff(lg, r, nz) < 1e-10, "%s: lj_expr_gradient on the pattern differs by %g", c[i].f,
                      rel_diff(lg, r, nz));
        free(lg);
        lj_op *H = lj_expr_hessian(ctx, f, sv);
        CK_NN(ctx, H);
        if (c[i].hform) {
            char *u = lj_op_print(ctx, H, LJ_PRINT_UNICODE);
            ck_assert_msg(!strcmp(u, c[i].hform), "%s: Hessian '%s', want '%s'", c[i].f, u, c[i].hform);
            lj_free(u);
        }
        ck_assert_int_eq(lj_op_rows(H), nz);
        ck_assert_int_eq(lj_op_cols(H), nz);
        double maxrel = -1, fro;
        CK_OK(ctx, lj_expr_fd_check(ctx, g, sv, H, 0, &maxrel, &fro));
        ck_assert_msg(maxrel < 1e-6, "%s: Hessian on the pattern differs from differences by %g", c[i].f, maxrel);
        lj_op_free(&H);
        free(r);
        lj_sparse_free(ctx, &G);
        lj_expr_free(&g);
        lj_expr_free(&f);
    }
    lj_expr_free(&sv);
    lj_sparse_free(ctx, &S);
    tm_free(&ref);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* ---- symmetric constants and lj_expr_gradient ------------------------------------------- */

static char *printed(lj_context *ctx, const lj_expr *f, const lj_expr *x)
{
    lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
    CK_NN(ctx, g);
    char *u = lj_expr_print_math(ctx, g, x, LJ_PRINT_UNICODE);
    CK_NN(ctx, u);
    lj_expr_free(&g);
    return u;
}

/* the gradient's three values agree: the expression, lj_expr_gradient, J^T·1 */
static void same_gradient(lj_context *ctx, const lj_expr *f, const lj_expr *x, const char *what)
{
    lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
    CK_NN(ctx, g);
    int64_t n = lj_expr_nvalues(x);
    double *ref = malloc(sizeof *ref * (size_t)n), *lg = malloc(sizeof *lg * (size_t)n), *gv = NULL;
    jt_one(ctx, f, x, ref);
    CK_OK(ctx, lj_expr_gradient(ctx, f, x, lg));
    if (lj_expr_is_sparse(g)) {
        cholmod_sparse *G = lj_expr_eval_sparse(ctx, g);
        CK_NN(ctx, G);
        gv = malloc(sizeof *gv * (size_t)n);
        memcpy(gv, G->x, sizeof *gv * (size_t)n);
        lj_sparse_free(ctx, &G);
    } else {
        int64_t m;
        double *v = value(ctx, g, &m);
        ck_assert_int_eq(m, n);
        gv = malloc(sizeof *gv * (size_t)n);
        memcpy(gv, v, sizeof *gv * (size_t)n);
        lj_free(v);
    }
    ck_assert_msg(rel_diff(lg, ref, n) < 1e-12, "%s: lj_expr_gradient differs from J^T·1 by %g", what,
                  rel_diff(lg, ref, n));
    ck_assert_msg(rel_diff(gv, ref, n) < 1e-12, "%s: the expression differs from J^T·1 by %g", what,
                  rel_diff(gv, ref, n));
    free(ref);
    free(lg);
    free(gv);
    lj_expr_free(&g);
}

/* a random symmetric n×n array */
static double *sym_rand(int64_t n, uint64_t *seed)
{
    tmat m = tm_rand(n, n, seed);
    double *a = malloc(sizeof *a * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < n; i++) a[i + j * n] = i >= j ? m.a[i + j * n] : m.a[j + i * n];
    tm_free(&m);
    return a;
}

START_TEST(test_symmetric_constants)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 31;
    double *a = sym_rand(4, &seed);
    tmat xv = tm_rand(4, 3, &seed), vv = tm_rand(4, 1, &seed);
    lj_expr *A = lj_expr_const(ctx, "A", 4, 4, a), *X = lj_expr_var(ctx, "X", 4, 3, xv.a);
    lj_expr *v = lj_expr_var(ctx, "v", 4, 1, vv.a);
    lj_symtab *t = lj_symtab_new(ctx);
    CK_OK(ctx, lj_symtab_add(ctx, t, A));
    CK_OK(ctx, lj_symtab_add(ctx, t, X));
    CK_OK(ctx, lj_symtab_add(ctx, t, v));
    lj_expr *f = parse(ctx, t, "tr(X'*A*X)"), *q = parse(ctx, t, "v'*A*v + sum(exp(A*v))");
    /* undeclared, A is any matrix: the Cookbook's general form */
    ck_assert_int_eq(lj_expr_is_symmetric(A), 0);
    char *u = printed(ctx, f, X);
    ck_assert_str_eq(u, "(A^T + A)·X");
    lj_free(u);
    same_gradient(ctx, f, X, "tr(X'*A*X), A undeclared");
    /* declared: A^T = A, one product */
    CK_OK(ctx, lj_expr_declare_symmetric(ctx, A));
    ck_assert_int_eq(lj_expr_is_symmetric(A), 1);
    u = printed(ctx, f, X);
    ck_assert_str_eq(u, "2·A·X");
    lj_free(u);
    u = printed(ctx, q, v);
    ck_assert_str_eq(u, "A·(exp(A·v) + 2·v)");
    lj_free(u);
    same_gradient(ctx, f, X, "tr(X'*A*X), A symmetric");
    same_gradient(ctx, q, v, "v'*A*v + sum(exp(A*v)), A symmetric");
    lj_op *H = lj_expr_hessian(ctx, f, X);
    CK_NN(ctx, H);
    u = lj_op_print(ctx, H, LJ_PRINT_UNICODE);
    ck_assert_str_eq(u, "2·(I_3 ⊗ A)");
    lj_free(u);
    lj_op_free(&H);
    /* new values must stay symmetric: refused, the old ones kept */
    double b[16];
    memcpy(b, a, sizeof b);
    b[1] += 1.0; /* (2,1) */
    ck_assert_int_eq(lj_expr_set_value(ctx, A, b), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "set_value: 'A' (4×4) is declared symmetric, the new values are not (entries "
               "(2,1) and (1,2) differ); values unchanged");
    int64_t n;
    double *av = value(ctx, A, &n);
    ck_assert_int_eq(memcmp(av, a, sizeof b), 0);
    lj_free(av);
    b[4] += 1.0; /* (1,2) too: symmetric again */
    CK_OK(ctx, lj_expr_set_value(ctx, A, b));
    same_gradient(ctx, f, X, "tr(X'*A*X), A set anew");
    /* errors */
    lj_expr *B = lj_expr_const(ctx, "B", 3, 3, xv.a), *R = lj_expr_const(ctx, "R", 4, 3, xv.a);
    lj_expr *AX = lj_expr_mul(ctx, A, X);
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, B), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: 'B' (3×3) is not symmetric: entries (2,1) and (1,2) differ");
    ck_assert_int_eq(lj_expr_is_symmetric(B), 0);
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, R), LJ_ERR_SHAPE);
    ASSERT_ERR(ctx, LJ_ERR_SHAPE, "declare_symmetric: 'R' is (4×3), not square");
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, X), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: a variable is not a constant leaf");
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, AX), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: an operation is not a constant leaf");
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, NULL), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: operand 1 is NULL");
    ck_assert_int_eq(lj_expr_declare_symmetric(NULL, A), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_expr_is_symmetric(NULL), 0);
    lj_expr *all[] = { A, X, v, f, q, B, R, AX };
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) lj_expr_free(&all[k]);
    lj_symtab_free(&t);
    free(a);
    tm_free(&xv);
    tm_free(&vv);
    lj_context_free(&ctx);
}
END_TEST

/* the 1-D Laplacian tridiag(-1, 2, -1) of order n, upper triangle only when
 * `upper` (stype 1), else both */
static cholmod_sparse *laplacian_1d(lj_context *ctx, int64_t n, bool upper)
{
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *L = cholmod_l_allocate_sparse((size_t)n, (size_t)n, (size_t)(3 * n), 1, 1, upper ? 1 : 0,
                                                  CHOLMOD_REAL, cc);
    ck_assert_ptr_nonnull(L);
    SuiteSparse_long *p = L->p, *i = L->i, q = 0;
    double *x = L->x;
    for (int64_t j = 0; j < n; j++) {
        p[j] = q;
        if (j > 0) i[q] = j - 1, x[q++] = -1;
        i[q] = j, x[q++] = 2;
        if (j < n - 1 && !upper) i[q] = j + 1, x[q++] = -1;
    }
    p[n] = q;
    return L;
}

START_TEST(test_symmetric_sparse)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 41;
    int64_t n = 7;
    tmat xv = tm_rand(n, 2, &seed);
    cholmod_sparse *Lu = laplacian_1d(ctx, n, true), *Lf = laplacian_1d(ctx, n, false);
    /* a symmetric CHOLMOD matrix says so itself */
    lj_expr *L = lj_expr_const_sparse(ctx, "L", Lu), *X = lj_expr_var(ctx, "X", n, 2, xv.a);
    CK_NN(ctx, L);
    ck_assert_int_eq(lj_expr_is_symmetric(L), 1);
    ck_assert_int_eq(lj_expr_nvalues(L), 3 * n - 2);
    lj_expr *Xt = lj_expr_transpose(ctx, X), *LX = lj_expr_mul(ctx, L, X), *XLX = lj_expr_mul(ctx, Xt, LX);
    lj_expr *f = lj_expr_trace(ctx, XLX);
    char *u = printed(ctx, f, X);
    ck_assert_str_eq(u, "2·L·X");
    lj_free(u);
    same_gradient(ctx, f, X, "tr(X'*L*X), L from stype 1");
    /* a borrowed unsymmetric-stype matrix is declared by the caller */
    lj_expr *M = lj_expr_const_sparse_borrow(ctx, "M", Lf);
    CK_NN(ctx, M);
    ck_assert_int_eq(lj_expr_is_symmetric(M), 0);
    CK_OK(ctx, lj_expr_declare_symmetric(ctx, M));
    lj_expr *MX = lj_expr_mul(ctx, M, X), *XMX = lj_expr_mul(ctx, Xt, MX), *h = lj_expr_trace(ctx, XMX);
    u = printed(ctx, h, X);
    ck_assert_str_eq(u, "2·M·X");
    lj_free(u);
    same_gradient(ctx, h, X, "tr(X'*M*X), M declared");
    /* a stored entry without its mirror, and unequal mirrored values */
    ((double *)Lf->x)[0] = 2.5; /* (1,1): still symmetric */
    CK_OK(ctx, lj_expr_declare_symmetric(ctx, M));
    ((double *)Lf->x)[1] = -3; /* (2,1) against (1,2) = -1 */
    lj_expr *M2 = lj_expr_const_sparse(ctx, "M2", Lf);
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, M2), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: 'M2' (7×7) is not symmetric: entries (2,1) and (1,2) differ");
    ((double *)Lf->x)[1] = -1;
    cholmod_sparse *T = laplacian_1d(ctx, n, true);
    T->stype = 0; /* the upper triangle alone, as an unsymmetric matrix */
    lj_expr *U = lj_expr_const_sparse(ctx, "U", T);
    ck_assert_int_eq(lj_expr_declare_symmetric(ctx, U), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "declare_symmetric: 'U' (7×7) is not symmetric: entries (1,2) and (2,1) differ");
    double *lv = malloc(sizeof *lv * (size_t)(3 * n - 2));
    memcpy(lv, Lf->x, sizeof *lv * (size_t)(3 * n - 2));
    lv[3] = 9; /* (2,2)... a diagonal entry: allowed */
    CK_OK(ctx, lj_expr_set_value(ctx, M, lv));
    lv[2] = 9; /* (1,2) alone */
    ck_assert_int_eq(lj_expr_set_value(ctx, M, lv), LJ_ERR_INVALID);
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "is declared symmetric, the new values are not");
    free(lv);
    lj_expr *all[] = { L, X, Xt, LX, XLX, f, M, MX, XMX, h, M2, U };
    for (size_t k = 0; k < sizeof all / sizeof all[0]; k++) lj_expr_free(&all[k]);
    lj_sparse_free(ctx, &Lu);
    lj_sparse_free(ctx, &Lf);
    lj_sparse_free(ctx, &T);
    tm_free(&xv);
    lj_context_free(&ctx);
}
END_TEST

/* lj_expr_gradient evaluates the gradient expression; where a derivative is
 * not finite it reports J^T·1's error, naming the operation */
START_TEST(test_gradient_domain)
{
    lj_context *ctx = lj_context_new();
    double p[4] = { 1, 0, 4, 9 }, g[4];
    lj_expr *P = lj_expr_var(ctx, "P", 2, 2, p), *S = lj_expr_func(ctx, LJ_FN_SQRT, P), *f = lj_expr_sum(ctx, S);
    ck_assert_int_eq(lj_expr_gradient(ctx, f, P, g), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "sqrt");
    p[1] = 0.25;
    CK_OK(ctx, lj_expr_set_value(ctx, P, p));
    CK_OK(ctx, lj_expr_gradient(ctx, f, P, g));
    for (int k = 0; k < 4; k++) ck_assert(fabs(g[k] - 0.5 / sqrt(p[k])) < 1e-15);
    lj_expr *n2 = lj_expr_norm2(ctx, P);
    double z[4] = { 0, 0, 0, 0 };
    CK_OK(ctx, lj_expr_set_value(ctx, P, z));
    ck_assert_int_eq(lj_expr_gradient(ctx, n2, P, g), LJ_ERR_DOMAIN);
    ASSERT_ERR(ctx, LJ_ERR_DOMAIN, "norm2: not differentiable at the zero matrix");
    lj_expr_free(&n2);
    lj_expr_free(&f);
    lj_expr_free(&S);
    lj_expr_free(&P);
    lj_context_free(&ctx);
}
END_TEST

/* Evaluation computes a product under a scaling with the factor (GEMM's and
 * sdmult's alpha), a shared product once, and frees values after their last
 * use: the values are those of the unfused forms. */
/* e evaluated with every allocation failing in turn: NOMEM until enough
 * succeed, then v (n values) exactly */
static void eval_fails_cleanly(lj_context *ctx, const lj_expr *e, const double *v, int64_t n)
{
    for (int w = 1; w < 400; w++) {
        lj_context_fail_alloc(ctx, w, 0);
        double *vw = NULL;
        int64_t r, c;
        lj_status st = lj_expr_eval(ctx, e, &r, &c, &vw);
        lj_context_fail_alloc(ctx, 0, 0);
        if (st == LJ_OK) {
            ck_assert_int_eq(memcmp(vw, v, sizeof *v * (size_t)n), 0);
            lj_free(vw);
            return;
        }
        ASSERT_ERR(ctx, LJ_ERR_NOMEM, "");
    }
    ck_abort_msg("evaluation still failed after 400 allocations");
}

/* The leaves of the fused-evaluation tests: A (4×3) and a variable X
 * (3×2) of random values, the sparse 1-D Laplacian L (3×3), all in t */
typedef struct {
    tmat av, xv;
    lj_expr *A, *X, *L;
    cholmod_sparse *Ls;
    lj_symtab *t;
} eval_leaves;

static eval_leaves eval_leaves_new(lj_context *ctx, uint64_t seed)
{
    eval_leaves l;
    l.av = tm_rand(4, 3, &seed), l.xv = tm_rand(3, 2, &seed);
    l.A = lj_expr_const(ctx, "A", 4, 3, l.av.a), l.X = lj_expr_var(ctx, "X", 3, 2, l.xv.a);
    l.Ls = laplacian_1d(ctx, 3, false);
    l.L = lj_expr_const_sparse(ctx, "L", l.Ls);
    l.t = lj_symtab_new(ctx);
    CK_OK(ctx, lj_symtab_add(ctx, l.t, l.A));
    CK_OK(ctx, lj_symtab_add(ctx, l.t, l.X));
    CK_OK(ctx, lj_symtab_add(ctx, l.t, l.L));
    return l;
}

static void eval_leaves_free(lj_context *ctx, eval_leaves *l)
{
    lj_symtab_free(&l->t);
    lj_expr_free(&l->A);
    lj_expr_free(&l->X);
    lj_expr_free(&l->L);
    lj_sparse_free(ctx, &l->Ls);
    tm_free(&l->av);
    tm_free(&l->xv);
}

START_TEST(test_eval_fused)
{
    lj_context *ctx = lj_context_new();
    eval_leaves l = eval_leaves_new(ctx, 53);
    lj_symtab *t = l.t;
    const char *forms[][2] = {
        { "2*(A*X)", "A*X + A*X" },
        { "-(A*X)", "0 - A*X" },
        { "-(L*X) + 3*(L*X)", "L*X + L*X" },
        { "2*(A*X) + (A*X).*(A*X)", "A*X + A*X + (A*X).^2" },
        { "X'*(0.5*(L*X))", "0.5*X'*L*X" },
        { "2.5*(X'*L)", "(2.5*X')*L" },
    };
    for (size_t k = 0; k < sizeof forms / sizeof forms[0]; k++) {
        lj_expr *a = parse(ctx, t, forms[k][0]), *b = parse(ctx, t, forms[k][1]);
        int64_t na, nb;
        double *va = value(ctx, a, &na), *vb = value(ctx, b, &nb);
        ck_assert_int_eq(na, nb);
        ck_assert_msg(rel_diff(va, vb, na) < 1e-14, "%s against %s: %g", forms[k][0], forms[k][1],
                      rel_diff(va, vb, na));
        eval_fails_cleanly(ctx, a, va, na);
        lj_free(va);
        lj_free(vb);
        lj_expr_free(&a);
        lj_expr_free(&b);
    }
    eval_leaves_free(ctx, &l);
    lj_context_free(&ctx);
}
END_TEST

/* A transpose read by a product alone is read through (X'·u one GEMM with
 * X transposed, X' never formed): values against products of explicit
 * transposes, every allocation failing in turn. */
START_TEST(test_eval_transposed)
{
    lj_context *ctx = lj_context_new();
    eval_leaves l = eval_leaves_new(ctx, 57);
    lj_symtab *t = l.t;
    tmat av = l.av, xv = l.xv;
    lj_expr *A = l.A;
    tmat At = tm_transpose(av), Xt = tm_transpose(xv), AX = tm_mul(av, xv);
    tmat Lm = tm_new(3, 3);
    for (int64_t j = 0; j < 9; j++) Lm.a[j] = 0;
    for (int64_t j = 0; j < 3; j++) {
        Lm.a[j + 3 * j] = 2;
        if (j) Lm.a[j - 1 + 3 * j] = Lm.a[j + 3 * (j - 1)] = -1;
    }
    tmat AtA = tm_mul(At, av), XtAt = tm_mul(Xt, At), negAtA = tm_add(-1, AtA, 0, AtA), AtAX = tm_mul(At, AX);
    tmat XtL = tm_mul(Xt, Lm), twoAtA = tm_add(2, AtA, 0, AtA);
    struct {
        const char *f;
        tmat ref;
    } cases[] = {
        { "A'*A", AtA },      /* the transpose's operand read directly too */
        { "X'*A'", XtAt },    /* both operands read through */
        { "-(A'*A)", negAtA }, /* a product under a negation */
        { "(A')'*X", AX },    /* the inner transpose formed, the outer read through */
        { "A'*(A*X)", AtAX },
        { "X'*L", XtL },      /* a sparse factor: no read-through */
        { NULL, twoAtA },     /* one A' read by two products: formed once */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int64_t pos;
        lj_expr *e;
        if (cases[k].f)
            e = lj_parse(ctx, cases[k].f, t, &pos);
        else {
            lj_expr *T = lj_expr_transpose(ctx, A), *p1 = lj_expr_mul(ctx, T, A), *p2 = lj_expr_mul(ctx, T, A);
            e = lj_expr_add(ctx, p1, p2);
            lj_expr_free(&T);
            lj_expr_free(&p1);
            lj_expr_free(&p2);
        }
        CK_NN(ctx, e);
        int64_t n;
        double *v = value(ctx, e, &n);
        ck_assert_int_eq(n, cases[k].ref.r * cases[k].ref.c);
        ck_assert_msg(rel_diff(v, cases[k].ref.a, n) < 1e-14, "%s: %g", cases[k].f ? cases[k].f : "A'*A + A'*A",
                      rel_diff(v, cases[k].ref.a, n));
        eval_fails_cleanly(ctx, e, v, n);
        lj_free(v);
        lj_expr_free(&e);
    }
    tmat fr[] = { At, Xt, AX, Lm, AtA, XtAt, negAtA, AtAX, XtL, twoAtA };
    for (size_t k = 0; k < sizeof fr / sizeof fr[0]; k++) tm_free(&fr[k]);
    eval_leaves_free(ctx, &l);
    lj_context_free(&ctx);
}
END_TEST

/* Defects found by fuzz/fuzz_pipeline, each with the input that showed it:
 * a Hadamard adjoint whose cotangent is the identity lost its factor
 * (tr(inv(inv(B.*A))) printed I_3, not I_3 ∘ B); a dense variable's
 * gradient on a sparse pattern gave a Hessian with one row per stored entry
 * (sum(vec(S./A)), 4×9); a sparse variable's gradient on a smaller pattern
 * (M .* S) had fewer values than the variable; the adjoint of asin leaked;
 * S ./ (-(B*A)) printed in a plain form that re-parsed as (S./-B)*A. */
START_TEST(test_pipeline_regressions)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 61;
    lj_symtab *t = declare(ctx, "A=3x3 B=3x3 x=3x1", seed);
    lj_expr *A = lj_symtab_get(t, "A");
    /* S (3×3, 4 entries) and M (5 entries), both variables here */
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *Ss = cholmod_l_allocate_sparse(3, 3, 4, 1, 1, 0, CHOLMOD_REAL, cc);
    cholmod_sparse *Ms = cholmod_l_allocate_sparse(3, 3, 5, 1, 1, 0, CHOLMOD_REAL, cc);
    int64_t sp[4] = { 0, 2, 3, 4 }, si[4] = { 0, 2, 1, 2 }, mp[4] = { 0, 2, 3, 5 }, mi[5] = { 0, 1, 1, 0, 2 };
    double sx[4] = { 1.5, -0.5, 0.8, 1.2 }, mx[5] = { 1.1, 0.4, 0.9, -0.3, 1.3 };
    memcpy(Ss->p, sp, sizeof sp), memcpy(Ss->i, si, sizeof si), memcpy(Ss->x, sx, sizeof sx);
    memcpy(Ms->p, mp, sizeof mp), memcpy(Ms->i, mi, sizeof mi), memcpy(Ms->x, mx, sizeof mx);
    lj_expr *S = lj_expr_var_sparse(ctx, "S", Ss), *M = lj_expr_const_sparse(ctx, "M", Ms);
    CK_OK(ctx, lj_symtab_add(ctx, t, S));
    CK_OK(ctx, lj_symtab_add(ctx, t, M));
    /* the identity cotangent through a Hadamard product */
    lj_expr *f = parse(ctx, t, "tr(inv(inv(B .* A)))");
    char *u = printed(ctx, f, A);
    ck_assert_str_eq(u, "I_3 ∘ B");
    lj_free(u);
    same_gradient(ctx, f, A, "tr(inv(inv(B .* A)))");
    lj_expr_free(&f);
    f = parse(ctx, t, "sum(inv(inv(A))) * 2");
    same_gradient(ctx, f, A, "sum(inv(inv(A)))");
    lj_expr_free(&f);
    /* gradients on patterns, stored as their variables are */
    const char *texts[][2] = { { "sum(vec(S ./ A))", "A" }, { "sum(vec(inv(M .* S)^2))", "S" },
                               { "sum(M .* S)", "S" }, { "tr(A'*(M .* A))", "A" } };
    for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
        f = parse(ctx, t, texts[k][0]);
        lj_expr *v = lj_symtab_get(t, texts[k][1]);
        lj_expr *g = lj_expr_gradient_expr(ctx, f, v);
        CK_NN(ctx, g);
        ck_assert_msg(lj_expr_nvalues(g) == lj_expr_nvalues(v), "%s: %lld values, the variable %lld", texts[k][0],
                      (long long)lj_expr_nvalues(g), (long long)lj_expr_nvalues(v));
        same_gradient(ctx, f, v, texts[k][0]);
        lj_op *H = lj_expr_hessian(ctx, f, v);
        CK_NN(ctx, H);
        ck_assert_int_eq(lj_op_rows(H), lj_expr_nvalues(v));
        ck_assert_int_eq(lj_op_cols(H), lj_expr_nvalues(v));
        double maxrel = -1;
        CK_OK(ctx, lj_op_check(ctx, H, 3, &maxrel));
        ck_assert_msg(maxrel < 1e-10, "%s: Hessian three ways %g", texts[k][0], maxrel);
        CK_OK(ctx, lj_expr_fd_check(ctx, g, v, H, 0, &maxrel, NULL));
        ck_assert_msg(maxrel < 1e-6, "%s: Hessian against differences %g", texts[k][0], maxrel);
        lj_op_free(&H);
        lj_expr_free(&g);
        lj_expr_free(&f);
    }
    /* the adjoints of asin and acos (a leak under ASan and valgrind) */
    f = parse(ctx, t, "sum(asin(x/4) + acos(x/4))");
    same_gradient(ctx, f, lj_symtab_get(t, "x"), "asin + acos");
    lj_expr_free(&f);
    /* a negated product as the right operand of ./ keeps its parentheses */
    f = parse(ctx, t, "det(B ./ (-(A * B)))");
    lj_expr *g = lj_expr_gradient_expr(ctx, f, A);
    CK_NN(ctx, g);
    char *plain = lj_expr_print_math(ctx, g, A, LJ_PRINT_PLAIN);
    CK_NN(ctx, plain);
    ck_assert_msg(strstr(plain, "./(-A*B)") != NULL, "plain form '%s'", plain);
    lj_expr *back = parse(ctx, t, plain);
    int64_t n1, n2;
    double *v1 = value(ctx, g, &n1), *v2 = value(ctx, back, &n2);
    ck_assert_msg(rel_diff(v2, v1, n1) < 1e-5, "'%s' re-parses %g away", plain, rel_diff(v2, v1, n1));
    lj_free(v1);
    lj_free(v2);
    lj_expr_free(&back);
    lj_free(plain);
    lj_expr_free(&g);
    lj_expr_free(&f);
    /* a fuzz finding: numbers in the plain form had six digits, so that
     * the gradient of sum((A/(-1.5/2))./A), written with 1.33333, re-parsed
     * 3.3e-5 away; the plain form now reads back exactly */
    f = parse(ctx, t, "sum(((A / (-1.5 / 2)) ./ A))");
    g = lj_expr_gradient_expr(ctx, f, A);
    CK_NN(ctx, g);
    plain = lj_expr_print_math(ctx, g, A, LJ_PRINT_PLAIN);
    CK_NN(ctx, plain);
    back = parse(ctx, t, plain);
    v1 = value(ctx, g, &n1), v2 = value(ctx, back, &n2);
    ck_assert_msg(n1 == n2 && rel_diff(v2, v1, n1) < 1e-14, "'%s' re-parses %g away", plain, rel_diff(v2, v1, n1));
    /* a reader's form writes the fraction (it had six digits, 1.33333) */
    char *uni = lj_expr_print_math(ctx, g, A, LJ_PRINT_UNICODE);
    ck_assert_msg(strstr(uni, "(4/3) ⊘ A") && !strstr(uni, "1.3333"), "unicode form '%s'", uni);
    lj_free(uni);
    lj_free(v1);
    lj_free(v2);
    lj_expr_free(&back);
    lj_free(plain);
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_expr_free(&S);
    lj_expr_free(&M);
    lj_sparse_free(ctx, &Ss);
    lj_sparse_free(ctx, &Ms);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* ---- errors -------------------------------------------------------------------------- */

START_TEST(test_errors)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "A=3x4 X=4x3 x=3x1", 5);
    lj_expr *X = lj_symtab_get(t, "X");
    lj_expr *f = parse(ctx, t, "tr(A*X)"), *m = parse(ctx, t, "A*X");
    ck_assert_ptr_null(lj_expr_gradient_expr(ctx, NULL, X));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "gradient_expr: NULL or dead expression");
    ck_assert_ptr_null(lj_expr_gradient_expr(ctx, f, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "gradient_expr: NULL or dead expression");
    ck_assert_ptr_null(lj_expr_gradient_expr(ctx, m, X));
    ASSERT_ERR(ctx, LJ_ERR_NOT_SCALAR, "gradient_expr: expression is (3×3), not a scalar");
    ck_assert_ptr_null(lj_expr_gradient_expr(ctx, f, m));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "gradient_expr: '?' is not a variable");
    ck_assert_ptr_null(lj_expr_gradient_expr(NULL, f, X));
    ck_assert_ptr_null(lj_expr_hessian(ctx, m, X));
    ASSERT_ERR(ctx, LJ_ERR_NOT_SCALAR, "hessian: expression is (3×3), not a scalar");
    ck_assert_ptr_null(lj_expr_hessian_n(ctx, f, 0, NULL));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "hessian: 0 variables (NULL list)");
    const lj_expr *bad[2] = { X, NULL };
    ck_assert_ptr_null(lj_expr_hessian_n(ctx, f, 2, bad));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "hessian: variable 2 is NULL or dead");
    ck_assert_ptr_null(lj_expr_print_math(ctx, NULL, NULL, LJ_PRINT_UNICODE));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "expr_print_math: NULL or dead expression");
    ck_assert_ptr_null(lj_expr_print_math(ctx, f, NULL, (lj_print_format)7));
    ASSERT_ERR(ctx, LJ_ERR_INVALID, "expr_print_math: unknown format 7");
    /* a variable f does not depend on: the zero matrix */
    lj_expr *g = lj_expr_gradient_expr(ctx, f, lj_symtab_get(t, "x"));
    CK_NN(ctx, g);
    char *s = lj_expr_print_math(ctx, g, NULL, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "0_3");
    lj_free(s);
    int64_t n;
    double *v = value(ctx, g, &n);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < 3; i++) ck_assert(v[i] == 0.0);
    lj_free(v);
    lj_expr_free(&g);
    lj_expr_free(&f);
    lj_expr_free(&m);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

/* Every allocation of a gradient expression and a Hessian failing in turn:
 * a clean LJ_ERR_NOMEM each time, nothing leaked (valgrind, ASan). */
START_TEST(test_alloc_failure)
{
    const char *texts[] = { "tr(A*X'*B*X*C) + log(det(X)) + sum(exp(X).*B)", "norm2(A*X*B-C)^2/2 + tr(inv(X))" };
    for (int w = 0; w < 2; w++) {
        lj_context *ctx = lj_context_new();
        lj_symtab *t = declare(ctx, "A=3x3 X=3x3 B=3x3 C=3x3", 17);
        lj_expr *f = parse(ctx, t, texts[w]), *x = lj_symtab_get(t, "X");
        int ok_at = 0;
        for (int k = 1; k < 20000 && !ok_at; k++) {
            lj_context_fail_alloc(ctx, k, 0);
            lj_expr *g = lj_expr_gradient_expr(ctx, f, x);
            lj_op *H = g ? lj_expr_hessian(ctx, f, x) : NULL;
            char *s = H ? lj_expr_print_math(ctx, g, x, LJ_PRINT_LATEX) : NULL;
            double gv[9];
            if (s && lj_expr_gradient(ctx, f, x, gv) != LJ_OK) lj_free(s), s = NULL;
            if (s) ok_at = k;
            else {
                ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "k=%d: %s", k, lj_context_message(ctx));
                lj_context_clear(ctx);
            }
            lj_free(s);
            lj_op_free(&H);
            lj_expr_free(&g);
        }
        lj_context_fail_alloc(ctx, 0, 0);
        ck_assert_int_gt(ok_at, 50);
        lj_expr_free(&f);
        lj_symtab_free(&t);
        lj_context_free(&ctx);
    }
}
END_TEST

/* ---- threads ---------------------------------------------------------------------------- */

/* Everything one derivative workflow produces, recorded as numbers and
 * text, so a thread's results compare with the single-threaded ones bit for
 * bit. */
typedef struct {
    double *v;
    size_t n, cap;
    char *s;
    size_t slen;
    bool ok;
    char why[160];
} record;

static void rec_nums(record *r, const double *x, int64_t n)
{
    if (!r->ok || !x) return;
    if (r->n + (size_t)n > r->cap) {
        size_t cap = 2 * (r->n + (size_t)n);
        double *v = realloc(r->v, cap * sizeof *v);
        if (!v) {
            r->ok = false;
            return;
        }
        r->v = v, r->cap = cap;
    }
    memcpy(r->v + r->n, x, (size_t)n * sizeof *x);
    r->n += (size_t)n;
}

static void rec_text(record *r, char *t) /* takes t */
{
    if (r->ok && t) {
        size_t len = strlen(t);
        char *s = realloc(r->s, r->slen + len + 2);
        if (s) {
            memcpy(s + r->slen, t, len);
            s[r->slen + len] = '\n';
            s[r->slen + len + 1] = '\0';
            r->s = s, r->slen += len + 1;
        } else r->ok = false;
    }
    lj_free(t);
}

static void rec_fail(record *r, lj_context *ctx, const char *what)
{
    if (r->ok) snprintf(r->why, sizeof r->why, "%s: %s", what, lj_context_message(ctx));
    r->ok = false;
}

/* J applied to x both ways and to three vectors, materialised, printed. */
static void rec_op(record *r, lj_context *ctx, const lj_op *J, const double *x)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J), big = m > n ? m : n;
    double *y = calloc((size_t)(3 * big + 1), sizeof *y);
    cholmod_sparse *S = NULL;
    if (!y || lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y) != LJ_OK) rec_fail(r, ctx, "apply");
    rec_nums(r, y, m);
    if (y && lj_op_apply(ctx, J, 1, 1.0, x, 0.0, y) != LJ_OK) rec_fail(r, ctx, "transpose-apply");
    rec_nums(r, y, n);
    if (y && lj_op_apply_multi(ctx, J, 0, 3, 1.0, x, n > 0 ? n : 1, 0.0, y, m > 0 ? m : 1) != LJ_OK)
        rec_fail(r, ctx, "apply_multi");
    rec_nums(r, y, 3 * m);
    if (!(S = lj_op_to_sparse(ctx, J))) rec_fail(r, ctx, "to_sparse");
    else {
        int64_t nz = ((int64_t *)S->p)[S->ncol];
        double dims[3] = { (double)m, (double)n, (double)nz };
        rec_nums(r, dims, 3);
        rec_nums(r, S->x, nz);
    }
    rec_text(r, lj_op_print(ctx, J, LJ_PRINT_UNICODE));
    lj_sparse_free(ctx, &S);
    free(y);
}

#define DFUNCS 3
#define NTHREADS_D 8
typedef struct {
    const lj_expr *f[DFUNCS], *fvar[DFUNCS]; /* scalar functions and their variables */
    const lj_expr *F, *X, *A;                 /* a matrix-valued F(X), and a second variable */
    const lj_op *shared[3];                   /* operators built once, used by every thread */
    const double *x;                          /* input vectors, long enough for everything */
} deriv_work;

/* One workflow: values, gradients (both ways), gradient expressions printed
 * and evaluated, Hessians and Jacobians built here and applied, a Jacobian
 * plan of this thread's own, and the shared operators used. */
static void derive_all(lj_context *ctx, const deriv_work *w, record *r)
{
    for (int k = 0; k < DFUNCS; k++) {
        const lj_expr *f = w->f[k], *x = w->fvar[k];
        int64_t rr, cc, nv = lj_expr_nvalues(x);
        double *v = NULL, *g = malloc(sizeof *g * (size_t)nv);
        if (!g || lj_expr_eval(ctx, f, &rr, &cc, &v) != LJ_OK) rec_fail(r, ctx, "eval");
        rec_nums(r, v, 1);
        lj_free(v);
        v = NULL;
        if (g && lj_expr_gradient(ctx, f, x, g) != LJ_OK) rec_fail(r, ctx, "gradient");
        rec_nums(r, g, nv);
        free(g);
        lj_expr *ge = lj_expr_gradient_expr(ctx, f, x);
        if (!ge) rec_fail(r, ctx, "gradient_expr");
        rec_text(r, lj_expr_print_math(ctx, ge, x, LJ_PRINT_UNICODE));
        rec_text(r, lj_expr_print_math(ctx, ge, x, LJ_PRINT_PLAIN));
        if (lj_expr_is_sparse(ge)) {
            cholmod_sparse *G = lj_expr_eval_sparse(ctx, ge);
            if (!G) rec_fail(r, ctx, "eval_sparse");
            else rec_nums(r, G->x, ((int64_t *)G->p)[G->ncol]);
            lj_sparse_free(ctx, &G);
        } else if (lj_expr_eval(ctx, ge, &rr, &cc, &v) != LJ_OK) rec_fail(r, ctx, "eval of the gradient");
        rec_nums(r, v, nv);
        lj_free(v);
        lj_expr_free(&ge);
        lj_op *H = lj_expr_hessian(ctx, f, x);
        if (!H) rec_fail(r, ctx, "hessian");
        else rec_op(r, ctx, H, w->x);
        lj_op_free(&H);
    }
    const lj_expr *vars[2] = { w->X, w->A };
    lj_op *J = lj_expr_jacobian(ctx, w->F, w->X);
    if (!J) rec_fail(r, ctx, "jacobian");
    else rec_op(r, ctx, J, w->x);
    lj_op_free(&J);
    lj_jacplan *plan = lj_jacplan_new(ctx, w->F, 2, vars);
    int64_t nf = lj_expr_nvalues(w->F);
    double *fv = malloc(sizeof *fv * (size_t)nf);
    J = plan && fv ? lj_jacplan_eval(ctx, plan, fv) : NULL;
    if (!J) rec_fail(r, ctx, "jacplan");
    else rec_nums(r, fv, nf), rec_op(r, ctx, J, w->x);
    lj_op_free(&J);
    lj_jacplan_free(&plan);
    free(fv);
    for (int k = 0; k < 3; k++) rec_op(r, ctx, w->shared[k], w->x);
}

typedef struct { const deriv_work *w; const record *ref; record out; } deriv_job;

static void *derive_rounds(void *arg)
{
    deriv_job *j = arg;
    lj_context *ctx = lj_context_new();
    j->out.ok = ctx != NULL;
    for (int round = 0; round < 4 && j->out.ok; round++) {
        record r = { .ok = true };
        derive_all(ctx, j->w, &r);
        if (r.ok && (r.n != j->ref->n || memcmp(r.v, j->ref->v, r.n * sizeof *r.v)))
            r.ok = false, snprintf(r.why, sizeof r.why, "round %d: numbers differ from one thread's", round);
        if (r.ok && strcmp(r.s, j->ref->s))
            r.ok = false, snprintf(r.why, sizeof r.why, "round %d: printing differs from one thread's", round);
        if (!r.ok) j->out.ok = false, memcpy(j->out.why, r.why, sizeof r.why);
        free(r.v);
        free(r.s);
    }
    lj_context_free(&ctx);
    return NULL;
}

/* Derivatives over dense and sparse data from 8 threads at once, each with
 * its own context: the expressions and three operators (a Hessian over a
 * sparse constant, a Jacobian through a sparse mask, a block Hessian) are
 * shared; every result equals the single-threaded one bit for bit. CI runs
 * this case under ThreadSanitizer. */
START_TEST(test_threads_derivatives)
{
    lj_context *ctx = lj_context_new();
    lj_symtab *t = declare(ctx, "X=4x4 A=3x4 B=3x3", 91);
    uint64_t seed = 92;
    tmat sref, mref;
    cholmod_sparse *Ls = laplacian_1d(ctx, 4, true), *Ss = tm_rand_sparse(ctx, 4, 3, 0.5, &seed, &sref);
    cholmod_sparse *Ms = tm_rand_sparse(ctx, 3, 4, 0.5, &seed, &mref);
    lj_expr *L = lj_expr_const_sparse(ctx, "L", Ls), *S = lj_expr_var_sparse(ctx, "S", Ss);
    lj_expr *M = lj_expr_const_sparse(ctx, "M", Ms);
    CK_OK(ctx, lj_symtab_add(ctx, t, L));
    CK_OK(ctx, lj_symtab_add(ctx, t, S));
    CK_OK(ctx, lj_symtab_add(ctx, t, M));
    lj_expr *X = lj_symtab_get(t, "X"), *A = lj_symtab_get(t, "A");
    lj_expr *f0 = parse(ctx, t, "tr(X'*L*X) + norm2(M.*(A*X))^2"), *f1 = parse(ctx, t, "norm2(A*S - B)^2");
    lj_expr *f2 = parse(ctx, t, "logdet(X) + sum(exp(A*X))"), *F = parse(ctx, t, "M.*tanh(A*X) + A*X*X");
    const lj_expr *both[2] = { X, A };
    lj_op *H0 = lj_expr_hessian(ctx, f0, X), *JF = lj_expr_jacobian(ctx, F, X);
    lj_op *Hn = lj_expr_hessian_n(ctx, f2, 2, both);
    CK_NN(ctx, H0);
    CK_NN(ctx, JF);
    CK_NN(ctx, Hn);
    double x[3 * 28];
    for (int i = 0; i < 3 * 28; i++) x[i] = sin(0.7 * i + 0.3);
    deriv_work w = { { f0, f1, f2 }, { X, S, X }, F, X, A, { H0, JF, Hn }, x };
    record ref = { .ok = true };
    derive_all(ctx, &w, &ref);
    ck_assert_msg(ref.ok, "one thread: %s", ref.why);
    ck_assert_msg(strstr(ref.s, " + L·X)\n"), "%s", ref.s); /* the Laplacian is used as symmetric */
    deriv_job jobs[NTHREADS_D];
    pthread_t th[NTHREADS_D];
    for (int i = 0; i < NTHREADS_D; i++) {
        jobs[i] = (deriv_job){ &w, &ref, { .ok = false } };
        ck_assert_int_eq(pthread_create(&th[i], NULL, derive_rounds, &jobs[i]), 0);
    }
    for (int i = 0; i < NTHREADS_D; i++) ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < NTHREADS_D; i++) ck_assert_msg(jobs[i].out.ok, "thread %d: %s", i, jobs[i].out.why);
    free(ref.v);
    free(ref.s);
    lj_op *ops[] = { H0, JF, Hn };
    for (size_t k = 0; k < 3; k++) lj_op_free(&ops[k]);
    lj_expr *es[] = { L, S, M, f0, f1, f2, F };
    for (size_t k = 0; k < sizeof es / sizeof es[0]; k++) lj_expr_free(&es[k]);
    lj_sparse_free(ctx, &Ls);
    lj_sparse_free(ctx, &Ss);
    lj_sparse_free(ctx, &Ms);
    tm_free(&sref);
    tm_free(&mref);
    lj_symtab_free(&t);
    lj_context_free(&ctx);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("grad");
    TCase *forms = tcase_create("forms");
    tcase_add_loop_test(forms, test_cookbook, 0, (int)(sizeof cookbook / sizeof cookbook[0]));
    tcase_add_loop_test(forms, test_matrixcalculus, 0, (int)(sizeof mc_examples / sizeof mc_examples[0]));
    tcase_add_loop_test(forms, test_elementwise_simplified, 0, (int)(sizeof ew_simplified / sizeof ew_simplified[0]));
    tcase_add_test(forms, test_matrixcalculus_rest);
    tcase_add_test(forms, test_formats);
    tcase_add_loop_test(forms, test_scalar_symbols, 0, (int)(sizeof scalar_cases / sizeof scalar_cases[0]));
    tcase_add_test(forms, test_plain_reparses);
    tcase_add_test(forms, test_large_power);
    suite_add_tcase(s, forms);
    TCase *hess = tcase_create("hessians");
    tcase_add_loop_test(hess, test_hessians, 0, (int)(sizeof hessians / sizeof hessians[0]));
    tcase_add_test(hess, test_hessian_blocks);
    tcase_add_test(hess, test_hessian_plan_in_place);
    tcase_add_test(hess, test_plan_diag_terms_become_alike);
    tcase_add_test(hess, test_sparse_variable);
    tcase_add_test(hess, test_symmetric_constants);
    tcase_add_test(hess, test_symmetric_sparse);
    tcase_add_test(hess, test_eval_fused);
    tcase_add_test(hess, test_eval_transposed);
    tcase_add_test(hess, test_pipeline_regressions);
    suite_add_tcase(s, hess);
    TCase *errors = tcase_create("errors");
    tcase_set_timeout(errors, 120);
    tcase_add_test(errors, test_errors);
    tcase_add_test(errors, test_gradient_domain);
    tcase_add_test(errors, test_alloc_failure);
    suite_add_tcase(s, errors);
    TCase *threads = tcase_create("threads");
    tcase_set_timeout(threads, 300);
    tcase_add_test(threads, test_threads_derivatives);
    suite_add_tcase(s, threads);
    return s;
}

int main(void)
{
    return run_suite(make_suite());
}
