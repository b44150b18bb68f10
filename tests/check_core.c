/* The core layer: contexts, status codes and messages, allocation failure. */
#include "testutil.h"
#include <string.h>

START_TEST(test_version)
{
    int a = -1, b = -1, c = -1;
    lj_version(&a, &b, &c);
    ck_assert_int_eq(a, LJ_VERSION_MAJOR);
    ck_assert_int_eq(b, LJ_VERSION_MINOR);
    ck_assert_int_eq(c, LJ_VERSION_PATCH);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", a, b, c);
    ck_assert_str_eq(lj_version_string(), want);
    lj_version(NULL, NULL, NULL);
}
END_TEST

START_TEST(test_context_life)
{
    lj_context *ctx = lj_context_new();
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(lj_context_status(ctx), LJ_OK);
    ck_assert_str_eq(lj_context_message(ctx), "");
    ck_assert_ptr_nonnull(lj_context_cholmod(ctx));
    ck_assert_int_eq(lj_context_cholmod(ctx)->itype, CHOLMOD_LONG);
    lj_context_free(&ctx);
    ck_assert_ptr_null(ctx);
    lj_context_free(&ctx);
    lj_context_free(NULL);
    lj_free(NULL);
}
END_TEST

START_TEST(test_null_context)
{
    ck_assert_int_eq(lj_context_status(NULL), LJ_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(lj_context_message(NULL), "NULL"));
    ck_assert_ptr_null(lj_context_cholmod(NULL));
    ck_assert_ptr_null(lj_op_identity(NULL, 3));
    ck_assert_int_eq(lj_context_fail_alloc(NULL, 1, 0), -1);
    lj_context_clear(NULL);
}
END_TEST

START_TEST(test_status_strings)
{
    lj_status all[] = { LJ_OK, LJ_ERR_NOMEM, LJ_ERR_INVALID, LJ_ERR_SHAPE, LJ_ERR_OVERFLOW,
                        LJ_ERR_SINGULAR, LJ_ERR_DOMAIN, LJ_ERR_IO, LJ_ERR_FORMAT, LJ_ERR_PARSE,
                        LJ_ERR_NAME, LJ_ERR_UNSUPPORTED, LJ_ERR_CHOLMOD, LJ_ERR_NOT_SCALAR, LJ_ERR_EXTERNAL };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        const char *s = lj_status_string(all[i]);
        ck_assert_ptr_nonnull(s);
        ck_assert_str_ne(s, "unknown status");
        for (size_t j = 0; j < i; j++) ck_assert_str_ne(s, lj_status_string(all[j]));
    }
    ck_assert_str_eq(lj_status_string((lj_status)-999), "unknown status");
}
END_TEST

START_TEST(test_set_error)
{
    /* errors recorded from outside the library (liblazyjac-petsc, callbacks) */
    lj_context *ctx = lj_context_new();
    ck_assert_int_eq(lj_context_set_error(ctx, LJ_ERR_EXTERNAL, "petsc: MatMult failed (error %d)", 73), LJ_ERR_EXTERNAL);
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_EXTERNAL);
    ck_assert_str_eq(lj_context_message(ctx), "petsc: MatMult failed (error 73)");
    ck_assert_int_eq(lj_context_set_error(ctx, LJ_OK, "ignored"), LJ_OK);
    ck_assert_int_eq(lj_context_status(ctx), LJ_OK);
    ck_assert_str_eq(lj_context_message(ctx), "");
    char longer[2000];
    memset(longer, 'x', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    lj_context_set_error(ctx, LJ_ERR_INVALID, "%s", longer); /* cut, never overflowing */
    ck_assert_int_lt((int)strlen(lj_context_message(ctx)), 1000);
    ck_assert_int_eq(lj_context_set_error(NULL, LJ_ERR_SHAPE, "x"), LJ_ERR_SHAPE);
    ck_assert_int_eq(lj_context_set_error(NULL, LJ_OK, "x"), LJ_ERR_INVALID);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_error_messages_name_operation)
{
    lj_context *ctx = lj_context_new();
    ck_assert_ptr_null(lj_op_identity(ctx, -2));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "identity"));
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "-2"));
    lj_context_clear(ctx);
    ck_assert_int_eq(lj_context_status(ctx), LJ_OK);
    ck_assert_str_eq(lj_context_message(ctx), "");
    ck_assert_ptr_null(lj_op_commutation(ctx, INT64_MAX / 2, 5));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_OVERFLOW);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "commutation"));
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_fail_alloc_every_point)
{
    /* constructors that allocate once (a Diag: node, values and label in
     * one block) and several times (a sum: node, coefficients, the list of
     * terms): fail each allocation in turn */
    lj_context *ctx = lj_context_new();
    double d[4] = { 1, 2, 3, 4 }, e[4] = { 4, 3, 2, 1 };
    int64_t points = 0;
    for (int64_t n = 1; n < 100; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *a = lj_op_diag(ctx, 4, d, "vec d");
        if (a) {
            points = n - 1;
            lj_op_free(&a);
            break;
        }
        ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_NOMEM);
        ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "diag"));
        lj_context_clear(ctx);
    }
    ck_assert_int_eq(points, 1); /* one block */
    lj_context_fail_alloc(ctx, 0, 0);
    lj_op *a = lj_op_diag(ctx, 4, d, "vec d"), *b = lj_op_diag(ctx, 4, e, "vec e");
    points = 0;
    for (int64_t n = 1; n < 100; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        lj_op *s = lj_op_add(ctx, a, b);
        if (s) {
            points = n - 1;
            lj_op_free(&s);
            break;
        }
        ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_NOMEM);
        lj_context_clear(ctx);
    }
    ck_assert_int_ge(points, 2);
    lj_context_fail_alloc(ctx, 0, 0);
    lj_op_free(&a);
    lj_op_free(&b);
    lj_context_fail_alloc(ctx, 0, 0);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_fail_alloc_counts)
{
    lj_context *ctx = lj_context_new();
    lj_context_fail_alloc(ctx, 0, 0);
    lj_op *a = lj_op_identity(ctx, 3);
    ck_assert_int_ge(lj_context_fail_alloc(ctx, 0, 0), 1);
    /* sticky: every allocation from the first fails */
    lj_context_fail_alloc(ctx, 1, 1);
    ck_assert_ptr_null(lj_op_identity(ctx, 2));
    ck_assert_ptr_null(lj_op_zero(ctx, 2, 2));
    char *s = lj_op_print(ctx, a, LJ_PRINT_UNICODE);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_NOMEM);
    lj_context_fail_alloc(ctx, 0, 0);
    s = lj_op_print(ctx, a, LJ_PRINT_UNICODE);
    ck_assert_str_eq(s, "I_3");
    lj_free(s);
    lj_op_free(&a);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_use_after_free_reported)
{
    lj_context *ctx = lj_context_new();
    lj_op *a = lj_op_identity(ctx, 3);
    lj_op *b = lj_op_retain(a);
    lj_op_free(&a);
    ck_assert_ptr_null(a);
    ck_assert_int_eq(lj_op_rows(b), 3);
    lj_op_free(&b);
    lj_op_free(&b);
    lj_op_free(NULL);
    ck_assert_ptr_null(lj_op_kron(ctx, NULL, NULL));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_INVALID);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "kron"));
    lj_context_free(&ctx);
}
END_TEST

Suite *make_core_suite(void)
{
    Suite *s = suite_create("core");
    TCase *normal = tcase_create("normal");
    tcase_add_test(normal, test_version);
    tcase_add_test(normal, test_context_life);
    tcase_add_test(normal, test_status_strings);
    suite_add_tcase(s, normal);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, test_null_context);
    tcase_add_test(errors, test_error_messages_name_operation);
    tcase_add_test(errors, test_set_error);
    tcase_add_test(errors, test_fail_alloc_every_point);
    tcase_add_test(errors, test_fail_alloc_counts);
    tcase_add_test(errors, test_use_after_free_reported);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    return run_suite(make_core_suite());
}
