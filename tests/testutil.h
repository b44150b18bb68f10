/* Shared helpers for the Check suites: random data and dense references
 * computed here, independently of the library's operator code. */
#ifndef LJ_TESTUTIL_H
#define LJ_TESTUTIL_H
#include "lazyjac.h"
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

/* A dense column-major matrix owned by the test. */
typedef struct {
    int64_t r, c;
    double *a;
} tmat;

tmat tm_new(int64_t r, int64_t c);
tmat tm_rand(int64_t r, int64_t c, uint64_t *seed);
/* uniform in [0, 1) */
double tm_uniform(uint64_t *seed);
void tm_free(tmat *m);
tmat tm_eye(int64_t n);
tmat tm_mul(tmat a, tmat b);
tmat tm_kron(tmat a, tmat b);
tmat tm_transpose(tmat a);
tmat tm_add(double alpha, tmat a, double beta, tmat b);
tmat tm_commutation(int64_t m, int64_t n);
tmat tm_hstack(tmat a, tmat b);
tmat tm_vstack(tmat a, tmat b);
double tm_maxdiff(tmat a, tmat b);
double tm_maxabs(tmat a);
double urand(uint64_t *s);
/* A random sparse matrix: each entry stored with probability `density`,
 * as a new CHOLMOD matrix (free with lj_sparse_free) and as *ref. */
cholmod_sparse *tm_rand_sparse(lj_context *ctx, int64_t r, int64_t c, double density, uint64_t *seed,
                               tmat *ref);

/* Checks an operator three ways against the dense reference D:
 * apply (1 and k vectors, with alpha/beta and padded leading dimensions),
 * transpose-apply, the materialised matrix (values, and nnz when the
 * structure is exact), and the dot test. Fails the current test on error. */
void check_op_against(lj_context *ctx, const lj_op *J, tmat D, double tol, const char *what);

/* Fails with the context message if st is not LJ_OK. */
#define CK_OK(ctx, st) ck_assert_msg((st) == LJ_OK, "status %d: %s", (int)(st), lj_context_message(ctx))
#define CK_NN(ctx, p) ck_assert_msg((p) != NULL, "NULL: %s", lj_context_message(ctx))

/* Asserts the context holds status `code` with a message containing frag,
 * then clears it. */
#define ASSERT_ERR(ctx, code, frag)                                                             \
    do {                                                                                        \
        ck_assert_msg(lj_context_status(ctx) == (code), "status %d, want %d: %s",               \
                      (int)lj_context_status(ctx), (int)(code), lj_context_message(ctx));       \
        ck_assert_msg(strstr(lj_context_message(ctx), frag) != NULL, "message '%s' lacks '%s'", \
                      lj_context_message(ctx), frag);                                           \
        lj_context_clear(ctx);                                                                  \
    } while (0)

/* The memory tool the tests run under ("AddressSanitizer",
 * "ThreadSanitizer", or LJ_TEST_MEMORY_TOOL's value, which make
 * check-valgrind sets), NULL for none: their shadow memory and redzones
 * make a peak resident size no measure of the library's own. */
const char *tm_memory_tool(void);

/* Runs a suite, returning the process exit status. */
int run_suite(Suite *s);
#endif
