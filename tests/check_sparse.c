/* The sparse layer: exact materialisation, CSR views, pruning, Matrix Market
 * and Rutherford-Boeing files, malformed input, allocation failure. */
#include "testutil.h"
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/lj_sparse_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *tpath(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *name, const char *text)
{
    FILE *f = fopen(tpath(name), "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A sparse operator with a random pattern and its dense reference. */
static lj_op *rand_sparse_op(lj_context *ctx, int64_t r, int64_t c, double density, uint64_t *seed,
                             tmat *ref)
{
    cholmod_sparse *s = tm_rand_sparse(ctx, r, c, density, seed, ref);
    lj_op *a = lj_op_sparse(ctx, s, "S");
    lj_sparse_free(ctx, &s);
    return a;
}

static int64_t nnz_of(const cholmod_sparse *s)
{
    return ((const int64_t *)s->p)[s->ncol];
}

START_TEST(test_kron_exact_pattern)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 31;
    tmat A, B;
    lj_op *a = rand_sparse_op(ctx, 7, 5, 0.3, &seed, &A), *b = rand_sparse_op(ctx, 4, 9, 0.25, &seed, &B);
    lj_op *k = lj_op_kron(ctx, a, b);
    cholmod_sparse *S = lj_op_to_sparse(ctx, k), *SA = lj_op_to_sparse(ctx, a), *SB = lj_op_to_sparse(ctx, b);
    ck_assert_int_eq(nnz_of(S), nnz_of(SA) * nnz_of(SB));
    /* pattern: an entry exists exactly where both factors have one */
    tmat R = tm_kron(A, B);
    int64_t *p = S->p, *ii = S->i;
    double *x = S->x;
    int64_t count = 0;
    for (int64_t j = 0; j < (int64_t)S->ncol; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++) {
            ck_assert(R.a[ii[q] + j * R.r] == x[q]); /* one product each: exact */
            count++;
        }
    int64_t ref_nnz = 0;
    for (int64_t i = 0; i < R.r * R.c; i++) ref_nnz += R.a[i] != 0.0;
    ck_assert_int_eq(count, ref_nnz);
    check_op_against(ctx, k, R, 1e-15, "sparse ⊗ sparse");
    lj_sparse_free(ctx, &S);
    lj_sparse_free(ctx, &SA);
    lj_sparse_free(ctx, &SB);
    lj_op_free(&a);
    lj_op_free(&b);
    lj_op_free(&k);
    tm_free(&A);
    tm_free(&B);
    tm_free(&R);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_product_chain_and_sum)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 41;
    tmat A, B, C, D;
    lj_op *a = rand_sparse_op(ctx, 30, 4, 0.5, &seed, &A), *b = rand_sparse_op(ctx, 4, 40, 0.5, &seed, &B);
    lj_op *c = rand_sparse_op(ctx, 40, 3, 0.5, &seed, &C), *d = rand_sparse_op(ctx, 30, 3, 0.2, &seed, &D);
    const lj_op *abc[3] = { a, b, c };
    lj_op *p = lj_op_compose(ctx, 3, abc);
    lj_op *s = lj_op_sub(ctx, p, d);
    tmat AB = tm_mul(A, B), ABC = tm_mul(AB, C), R = tm_add(1, ABC, -1, D);
    check_op_against(ctx, p, ABC, 1e-13, "A·B·C sparse");
    check_op_against(ctx, s, R, 1e-13, "A·B·C − D");
    /* CSR view equals the CSC of the transpose, row by row */
    lj_csr *csr = lj_op_to_csr(ctx, s);
    CK_NN(ctx, csr);
    ck_assert_int_eq(csr->rows, 30);
    ck_assert_int_eq(csr->cols, 3);
    cholmod_sparse *S = lj_op_to_sparse(ctx, s);
    ck_assert_int_eq(csr->nnz, nnz_of(S));
    for (int64_t i = 0; i < csr->rows; i++)
        for (int64_t q = csr->rowptr[i]; q < csr->rowptr[i + 1]; q++) {
            if (q > csr->rowptr[i]) ck_assert(csr->colind[q - 1] < csr->colind[q]);
            ck_assert(fabs(csr->values[q] - R.a[i + csr->colind[q] * 30]) < 1e-13);
        }
    /* pruning removes only exact zeros (or those under the tolerance) */
    double *x = S->x;
    x[0] = 0.0;
    int64_t before = nnz_of(S);
    CK_OK(ctx, lj_sparse_prune(ctx, S, 0.0));
    ck_assert_int_eq(nnz_of(S), before - 1);
    CK_OK(ctx, lj_sparse_prune(ctx, S, 1e9));
    ck_assert_int_eq(nnz_of(S), 0);
    ck_assert_int_eq(lj_sparse_prune(ctx, S, -1), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_sparse_prune(ctx, NULL, 0), LJ_ERR_INVALID);
    lj_sparse_free(ctx, &S);
    lj_csr_free(&csr);
    lj_csr_free(&csr);
    lj_op *all[] = { a, b, c, d, p, s };
    for (size_t i = 0; i < 6; i++) lj_op_free(&all[i]);
    tmat ts[] = { A, B, C, D, AB, ABC, R };
    for (size_t i = 0; i < 7; i++) tm_free(&ts[i]);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_mtx_round_trip)
{
    lj_context *ctx = lj_context_new();
    make_tmpdir();
    uint64_t seed = 51;
    tmat A, W = tm_rand(3, 4, &seed);
    lj_op *a = rand_sparse_op(ctx, 5, 6, 0.4, &seed, &A), *w = lj_op_dense(ctx, 3, 4, W.a, 3, "W");
    lj_op *k = lj_op_kron(ctx, a, w);
    CK_OK(ctx, lj_op_write_mtx(ctx, k, tpath("k.mtx")));
    cholmod_sparse *S = lj_read_sparse_mtx(ctx, tpath("k.mtx")), *T = lj_op_to_sparse(ctx, k);
    CK_NN(ctx, S);
    ck_assert_int_eq(nnz_of(S), nnz_of(T));
    ck_assert(memcmp(S->p, T->p, sizeof(int64_t) * (S->ncol + 1)) == 0);
    ck_assert(memcmp(S->i, T->i, sizeof(int64_t) * (size_t)nnz_of(S)) == 0);
    ck_assert(memcmp(S->x, T->x, sizeof(double) * (size_t)nnz_of(S)) == 0); /* %.17g is exact */
    /* the header is real general coordinate, 1-based */
    FILE *f = fopen(tpath("k.mtx"), "r");
    char line[200];
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "%%MatrixMarket matrix coordinate real general\n");
    fclose(f);
    /* Rutherford-Boeing */
    CK_OK(ctx, lj_op_write_rb(ctx, k, tpath("k.rb"), "kron test", "ktest"));
    cholmod_sparse *R = lj_read_sparse_rb(ctx, tpath("k.rb"));
    CK_NN(ctx, R);
    ck_assert_int_eq(nnz_of(R), nnz_of(T));
    double *rx = R->x, *tx = T->x;
    for (int64_t q = 0; q < nnz_of(R); q++) ck_assert(fabs(rx[q] - tx[q]) <= 1e-15 * fabs(tx[q]) + 1e-300);
    /* dense array round trip */
    CK_OK(ctx, lj_write_dense_mtx(ctx, 3, 4, W.a, 3, tpath("w.mtx")));
    int64_t r, c;
    double *back;
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("w.mtx"), &r, &c, &back));
    ck_assert(r == 3 && c == 4);
    ck_assert(memcmp(back, W.a, sizeof(double) * 12) == 0);
    lj_free(back);
    /* a coordinate file read as dense */
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("k.mtx"), &r, &c, &back));
    tmat K = tm_kron(A, W), B2 = { r, c, back };
    ck_assert(tm_maxdiff(K, B2) == 0.0);
    lj_free(back);
    lj_sparse_free(ctx, &S);
    lj_sparse_free(ctx, &T);
    lj_sparse_free(ctx, &R);
    lj_op_free(&a);
    lj_op_free(&w);
    lj_op_free(&k);
    tm_free(&A);
    tm_free(&W);
    tm_free(&K);
    rm_tmpdir();
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_mtx_handwritten)
{
    lj_context *ctx = lj_context_new();
    make_tmpdir();
    write_file("sym.mtx", "%%MatrixMarket matrix coordinate real symmetric\n% a comment\n\n3 3 4\n"
                          "1 1 2.0\n2 1 -1\n3 2 -1\n3 3 2\n");
    int64_t r, c;
    double *a;
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("sym.mtx"), &r, &c, &a));
    double want[9] = { 2, -1, 0, -1, 0, -1, 0, -1, 2 };
    ck_assert(memcmp(a, want, sizeof want) == 0);
    lj_free(a);
    cholmod_sparse *S = lj_read_sparse_mtx(ctx, tpath("sym.mtx"));
    ck_assert_int_eq(nnz_of(S), 6);
    lj_sparse_free(ctx, &S);
    write_file("pat.mtx", "%%MatrixMarket matrix coordinate pattern general\n2 3 2\n1 3\n2 1\n");
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("pat.mtx"), &r, &c, &a));
    ck_assert(r == 2 && c == 3 && a[4] == 1.0 && a[1] == 1.0 && a[0] == 0.0);
    lj_free(a);
    write_file("int.mtx", "%%MatrixMarket matrix array integer general\n2 2\n1\n2\n3\n4\n");
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("int.mtx"), &r, &c, &a));
    ck_assert(a[3] == 4.0);
    lj_free(a);
    write_file("skew.mtx", "%%MatrixMarket matrix array real skew-symmetric\n3 3\n1\n2\n3\n");
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("skew.mtx"), &r, &c, &a));
    double skew[9] = { 0, 1, 2, -1, 0, 3, -2, -3, 0 };
    ck_assert(memcmp(a, skew, sizeof skew) == 0);
    lj_free(a);
    rm_tmpdir();
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_mtx_malformed)
{
    lj_context *ctx = lj_context_new();
    make_tmpdir();
    struct { const char *text, *frag; lj_status code; } bad[] = {
        { "", "empty", LJ_ERR_FORMAT },
        { "hello\n", "no Matrix Market header", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate complex general\n1 1 1\n1 1 1 0\n", "complex", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix blob real general\n", "unknown format", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real hermitian\n1 1 0\n", "symmetry", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n", "before its size line", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 x 1\n", "bad size line", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 2 9\n", "bad size line", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 2 2\n1 1 1\n", "truncated", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 2 1\n3 1 1\n", "bad entry", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 abc\n", "bad entry", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real general\n2 2 1\n1 1 1\n2 2 2\n", "more entries", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix array real general\n2 2\n1\n2\n3\n", "truncated", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix array real general\n2 2\n1\n2\nnan\n4\n", "bad value", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix array real symmetric\n2 3\n1\n", "not square", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix coordinate real symmetric\n2 2 1\n1 2 1\n", "bad entry", LJ_ERR_FORMAT },
        { "%%MatrixMarket matrix array real general\n-1 2\n", "bad size line", LJ_ERR_FORMAT },
    };
    for (size_t t = 0; t < sizeof bad / sizeof bad[0]; t++) {
        write_file("bad.mtx", bad[t].text);
        int64_t r = -5, c = -5;
        double *a = (double *)&r;
        lj_status st = lj_read_dense_mtx(ctx, tpath("bad.mtx"), &r, &c, &a);
        ck_assert_msg(st == bad[t].code, "case %zu: status %d (%s)", t, (int)st, lj_context_message(ctx));
        ck_assert_msg(strstr(lj_context_message(ctx), bad[t].frag) != NULL, "case %zu: '%s' lacks '%s'", t,
                      lj_context_message(ctx), bad[t].frag);
        ck_assert_msg(strstr(lj_context_message(ctx), "bad.mtx") != NULL, "message names the file");
        ck_assert(r == -5 && c == -5 && a == (double *)&r); /* outputs untouched */
        ck_assert_ptr_null(lj_read_sparse_mtx(ctx, tpath("bad.mtx")));
        ck_assert_int_eq(lj_context_status(ctx), bad[t].code);
    }
    double *a;
    int64_t r, c;
    ck_assert_int_eq(lj_read_dense_mtx(ctx, tpath("missing.mtx"), &r, &c, &a), LJ_ERR_IO);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "cannot open"));
    ck_assert_int_eq(lj_read_dense_mtx(ctx, NULL, &r, &c, &a), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_read_dense_mtx(ctx, tpath("missing.mtx"), NULL, &c, &a), LJ_ERR_INVALID);
    write_file("bad.rb", "this is not a Rutherford-Boeing file\n");
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("bad.rb")));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "bad header"));
    write_file("cplx.rb", "title                                                                   key\n"
                          "   3   1   1   1\ncua   2   2   2   0\n(8I10) (8I10) (4E20.12)\n");
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("cplx.rb")));
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "holds a cua matrix"));
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("nope.rb")));
    ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_IO);
    /* writing where one cannot leaves nothing behind */
    lj_op *I = lj_op_identity(ctx, 3);
    ck_assert_int_eq(lj_op_write_mtx(ctx, I, "/nonexistent-dir/x.mtx"), LJ_ERR_IO);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "/nonexistent-dir/x.mtx"));
    ck_assert_int_eq(lj_op_write_rb(ctx, I, "/nonexistent-dir/x.rb", NULL, NULL), LJ_ERR_IO);
    double v[3] = { 1, 2, 3 };
    ck_assert_int_eq(lj_write_dense_mtx(ctx, 3, 1, v, 3, "/nonexistent-dir/v.mtx"), LJ_ERR_IO);
    ck_assert_int_eq(lj_write_dense_mtx(ctx, 3, 1, v, 2, tpath("v.mtx")), LJ_ERR_SHAPE);
    ck_assert_int_eq(lj_write_dense_mtx(ctx, 3, 1, NULL, 3, tpath("v.mtx")), LJ_ERR_INVALID);
    ck_assert(!exists(tpath("v.mtx")));
    ck_assert_int_eq(lj_op_write_mtx(ctx, NULL, tpath("n.mtx")), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_op_write_mtx(ctx, I, NULL), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_op_to_dense(ctx, I, NULL, 3), LJ_ERR_INVALID);
    ck_assert_int_eq(lj_op_to_dense(ctx, I, v, 1), LJ_ERR_SHAPE);
    ck_assert_ptr_null(lj_op_to_csr(ctx, NULL));
    ck_assert_ptr_null(lj_op_to_sparse(ctx, NULL));
    lj_op_free(&I);
    rm_tmpdir();
    lj_context_free(&ctx);
}
END_TEST

/* Files whose headers claim far more than they hold: every read ends at
 * once, with the right matrix or a clear error, and memory that follows
 * the file's content (the peak resident size grows by less than 100 MB). */
static long peak_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

START_TEST(test_hostile_headers)
{
    lj_context *ctx = lj_context_new();
    make_tmpdir();
    const char *hdr = "%%MatrixMarket matrix coordinate real general\n";
    struct { const char *name, *body; int64_t rows, cols, nnz; const char *frag; } cases[] = {
        /* legal: 1 882 119 519 rows, 11 columns, no entries (12 column pointers) */
        { "tall.mtx", "%% a tall empty matrix, as legal as it is small\n1882119519 11 0\n", 1882119519, 11, 0, NULL },
        { "tallcrlf.mtx", "1882119519 11 1\r\n1882119519 11 2.5\r\n", 1882119519, 11, 1, NULL },
        /* declared counts that the file's bytes cannot hold */
        { "count9.mtx", "100000 100000 1000000000\n1 1 1\n", 0, 0, 0, "truncated: it declares 1000000000 entries" },
        { "count11.mtx", "1000000 1000000 100000000000\n1 1 1\n", 0, 0, 0, "truncated" },
        { "countcrlf.mtx", "100000 100000 1000000000\r\n1 1 1\r\n", 0, 0, 0, "truncated" },
        /* a very wide matrix: CSC needs a pointer a column, refused clearly */
        { "wide.mtx", "11 1882119519 0\n", 0, 0, 0, "column pointers" },
        { "widecrlf.mtx", "11 1882119519 0\r\n", 0, 0, 0, "column pointers" },
        /* negative and overflowing counts */
        { "neg.mtx", "-1882119519 11 0\n", 0, 0, 0, "bad size line" },
        { "negnz.mtx", "3 3 -1\n", 0, 0, 0, "bad size line" },
        { "ovf.mtx", "99999999999999999999999 11 0\n", 0, 0, 0, "bad size line" },
        { "ovf2.mtx", "4294967296 4294967296 1\n1 1 1\n", 0, 0, 0, "bad size line" },
        /* a fuzz input: 0 rows and a column count past int64 */
        { "ovf0.mtx", "0 0511555555555555555555555555555555555 0\n", 0, 0, 0, "bad size line" },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        char text[512];
        snprintf(text, sizeof text, "%s%s", hdr, cases[t].body);
        write_file(cases[t].name, text);
        long before = peak_kb();
        double t0 = now_s();
        cholmod_sparse *s = lj_read_sparse_mtx(ctx, tpath(cases[t].name));
        double dt = now_s() - t0;
        ck_assert_msg(dt < 1.0, "%s: read took %.2f s", cases[t].name, dt);
        ck_assert_msg(peak_kb() - before < 100 * 1024, "%s: peak grew by %ld kB", cases[t].name,
                      peak_kb() - before);
        if (!cases[t].frag) {
            CK_NN(ctx, s);
            ck_assert(s->nrow == (size_t)cases[t].rows && s->ncol == (size_t)cases[t].cols);
            ck_assert_int_eq(nnz_of(s), cases[t].nnz);
            ck_assert(s->sorted && s->packed);
            /* usable: written back and read again with memory of its entries */
            lj_op *A = lj_op_sparse(ctx, s, "S");
            CK_NN(ctx, A);
            CK_OK(ctx, lj_op_write_mtx(ctx, A, tpath("back.mtx")));
            cholmod_sparse *b = lj_read_sparse_mtx(ctx, tpath("back.mtx"));
            CK_NN(ctx, b);
            ck_assert(b->nrow == s->nrow && b->ncol == s->ncol && nnz_of(b) == nnz_of(s));
            ck_assert_msg(peak_kb() - before < 100 * 1024, "%s: round trip peak grew by %ld kB",
                          cases[t].name, peak_kb() - before);
            lj_sparse_free(ctx, &b);
            lj_op_free(&A);
            lj_sparse_free(ctx, &s);
        } else {
            ck_assert_msg(s == NULL, "%s read", cases[t].name);
            ck_assert_msg(strstr(lj_context_message(ctx), cases[t].frag) != NULL, "%s: '%s' lacks '%s'",
                          cases[t].name, lj_context_message(ctx), cases[t].frag);
            ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), cases[t].name));
            lj_context_clear(ctx);
        }
    }
    /* a tall matrix with few entries is applied both ways with vectors of
     * its own size and nothing of size rows × cols */
    write_file("tall2.mtx", "%%MatrixMarket matrix coordinate real general\n4000000 3 2\n"
                            "3999999 3 2.5\n1 1 -1\n");
    cholmod_sparse *s = lj_read_sparse_mtx(ctx, tpath("tall2.mtx"));
    CK_NN(ctx, s);
    lj_op *A = lj_op_sparse(ctx, s, "S");
    CK_NN(ctx, A);
    double x[3] = { 1, 2, 4 }, *y = calloc(4000000, sizeof *y), z[3];
    ck_assert_ptr_nonnull(y);
    CK_OK(ctx, lj_op_apply(ctx, A, 0, 1.0, x, 0.0, y));
    ck_assert(y[0] == -1.0 && y[3999998] == 10.0 && y[1] == 0.0);
    CK_OK(ctx, lj_op_apply(ctx, A, 1, 1.0, y, 0.0, z));
    ck_assert(z[0] == 1.0 && z[1] == 0.0 && z[2] == 25.0);
    free(y);
    lj_op_free(&A);
    lj_sparse_free(ctx, &s);
    /* array files: the declared size against the file's length */
    write_file("arr.mtx", "%%MatrixMarket matrix array real general\n100000 100000\n1\n2\n");
    double *a = NULL;
    int64_t r, c;
    double t0 = now_s();
    ck_assert_int_eq(lj_read_dense_mtx(ctx, tpath("arr.mtx"), &r, &c, &a), LJ_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(lj_context_message(ctx), "truncated: it declares 10000000000 entries"));
    ck_assert(now_s() - t0 < 1.0);
    /* a fuzz finding: an array of no rows and 2.2·10^9 columns holds no
     * values, and read sparse its 17 GB of column pointers were allocated;
     * refused like a wide coordinate file. Read dense it is the empty
     * array it is. */
    write_file("arrwide.mtx", "%%MatrixMarket matrix array real general\n0 2177777777\n");
    long before = peak_kb();
    ck_assert_ptr_null(lj_read_sparse_mtx(ctx, tpath("arrwide.mtx")));
    ASSERT_ERR(ctx, LJ_ERR_NOMEM, "(0×2177777777) with 0 values: its CSC form needs 17.4 GB of column pointers");
    ck_assert_msg(peak_kb() - before < 100 * 1024, "arrwide.mtx: peak grew by %ld kB", peak_kb() - before);
    CK_OK(ctx, lj_read_dense_mtx(ctx, tpath("arrwide.mtx"), &r, &c, &a));
    ck_assert(r == 0 && c == 2177777777);
    lj_free(a);
    a = NULL;
    /* Rutherford-Boeing: header counts against the file's size, and rows
     * beyond what RBio's workspace may take from a small file */
    write_file("big.rb", "title                                                                   key\n"
                         "   3   1   1   1\nrua   5   5   1000000000   0\n(8I10) (8I10) (4E20.12)\n");
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("big.rb")));
    ASSERT_ERR(ctx, LJ_ERR_FORMAT, "truncated: it declares 5 columns and 1000000000 entries");
    /* a count RBio reads as a number and sscanf would read as its first
     * digits ("8E8." is 8·10⁸ to RBio, which allocated 12.8 GB for it) */
    const char *odd[] = { "8E8.", "8e8", "8.", "-1", "0x10" };
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        char body[400];
        snprintf(body, sizeof body,
                 "title                                                                   key\n"
                 "   3   1   1   1\nrua   3   3   %s   0\n(8I10) (8I10) (4E20.12)\n1 2 3 4\n1 2 3\n1 2 3\n",
                 odd[i]);
        write_file("odd.rb", body);
        ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("odd.rb")));
        ASSERT_ERR(ctx, LJ_ERR_FORMAT, "bad header");
    }
    write_file("oddcards.rb", "title                                                                   key\n"
                              "   3   1E9   1   1\nrua   3   3   3   0\n(8I10) (8I10) (4E20.12)\n1 2 3 4\n1 2 3\n1 2 3\n");
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("oddcards.rb")));
    ASSERT_ERR(ctx, LJ_ERR_FORMAT, "bad header");
    write_file("tall.rb", "title                                                                   key\n"
                          "   3   1   1   1\nrua   1882119519   2   1   0\n(8I10) (8I10) (4E20.12)\n"
                          "1 2 2\n1\n1.0\n");
    ck_assert_ptr_null(lj_read_sparse_rb(ctx, tpath("tall.rb")));
    ASSERT_ERR(ctx, LJ_ERR_NOMEM, "RBio's workspace");
    rm_tmpdir();
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_alloc_failure_materialise_and_files)
{
    lj_context *ctx = lj_context_new();
    make_tmpdir();
    uint64_t seed = 61;
    tmat A, B, C;
    lj_op *a = rand_sparse_op(ctx, 6, 5, 0.5, &seed, &A), *b = rand_sparse_op(ctx, 5, 4, 0.5, &seed, &B);
    lj_op *c = rand_sparse_op(ctx, 6, 4, 0.5, &seed, &C);
    lj_op *ab = lj_op_mul(ctx, a, b), *s = lj_op_add(ctx, ab, c), *k = lj_op_kron(ctx, s, a);
    lj_op *J = lj_op_transpose(ctx, k);
    const lj_op *hv[2] = { J, J };
    lj_op *H = lj_op_vstack(ctx, 2, hv);
    int ok_at = 0;
    for (int n = 1; n < 1000; n++) {
        lj_context_fail_alloc(ctx, n, 0);
        cholmod_sparse *S = lj_op_to_sparse(ctx, H);
        lj_csr *csr = S ? lj_op_to_csr(ctx, J) : NULL;
        lj_status st = csr ? lj_op_write_mtx(ctx, s, tpath("s.mtx")) : LJ_ERR_NOMEM;
        cholmod_sparse *R = st == LJ_OK ? lj_read_sparse_mtx(ctx, tpath("s.mtx")) : NULL;
        bool all = S && csr && st == LJ_OK && R;
        if (!all) {
            ck_assert_msg(lj_context_status(ctx) == LJ_ERR_NOMEM, "n=%d: %d %s", n,
                          (int)lj_context_status(ctx), lj_context_message(ctx));
            lj_context_clear(ctx);
        }
        lj_sparse_free(ctx, &S);
        lj_sparse_free(ctx, &R);
        lj_csr_free(&csr);
        if (all) {
            ok_at = n;
            break;
        }
    }
    ck_assert_int_gt(ok_at, 10);
    lj_context_fail_alloc(ctx, 0, 0);
    lj_op *all[] = { a, b, c, ab, s, k, J, H };
    for (size_t i = 0; i < 8; i++) lj_op_free(&all[i]);
    tm_free(&A);
    tm_free(&B);
    tm_free(&C);
    rm_tmpdir();
    lj_context_free(&ctx);
}
END_TEST

/* Results whose arrays are 2 MiB or more come on 2 MiB pages from their
 * start (lib/core/memory.c): one result whose arrays end in a partial
 * 2 MiB page, one whose arrays are rounded up to whole pages. Both must be
 * exact, CHOLMOD's matrices in every respect (checked, reallocated, freed
 * with CHOLMOD's bookkeeping back where it was), and fail cleanly at every
 * allocation. */
/* The peak resident size of this process from the next call on (false
 * where the kernel offers no reset: /proc/self/clear_refs). */
static bool peak_reset(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    bool ok = f && fputs("5", f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    return ok;
}

static double status_mb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ':') kb = atof(line + n + 1);
    if (f) fclose(f);
    return kb / 1024.0;
}

/* Monomial factors round a sparse leaf (P·S·Diag: rows moved, sorted again
 * and scaled; S·Q: columns moved) or a Kronecker product ((S ⊗ v)·K) are
 * materialised into the result and a few maps of the rows and columns:
 * the peak resident size grows by at most 1.3 times the result's arrays
 * (2·10⁶ and 4·10⁶ entries, 32 and 64 MB), where a product through
 * CHOLMOD and its sort held three such matrices. Every entry is checked
 * against S's, or the matrix against the operator applied. */
START_TEST(test_monomial_sides_peak_memory)
{
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    const int64_t n = 40000, per = 50;
    cholmod_sparse *cs = cholmod_l_allocate_sparse((size_t)n, (size_t)n, (size_t)(n * per), 1, 1, 0, CHOLMOD_REAL, cc);
    ck_assert_ptr_nonnull(cs);
    int64_t *sp = cs->p, *si = cs->i, *perm = malloc(sizeof *perm * (size_t)n), *inv = malloc(sizeof *inv * (size_t)n);
    int64_t *qperm = malloc(sizeof *qperm * (size_t)n);
    double *sx = cs->x, *d = malloc(sizeof *d * (size_t)n), *col = calloc((size_t)n, sizeof *col);
    uint64_t seed = 73;
    for (int64_t c = 0; c < n; c++) {
        sp[c] = c * per;
        for (int64_t k = 0; k < per; k++) { /* rows spread over all n, ascending */
            si[c * per + k] = k * (n / per) + (int64_t)(tm_uniform(&seed) * (double)(n / per));
            sx[c * per + k] = urand(&seed);
        }
        d[c] = 2.0 + urand(&seed);
        perm[c] = c, qperm[c] = c;
    }
    sp[n] = n * per;
    for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int64_t j = (int64_t)(tm_uniform(&seed) * (double)(i + 1)), t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        j = (int64_t)(tm_uniform(&seed) * (double)(i + 1)), t = qperm[i];
        qperm[i] = qperm[j], qperm[j] = t;
    }
    for (int64_t i = 0; i < n; i++) inv[perm[i]] = i; /* P's row i reads row perm[i] */
    lj_op *S = lj_op_sparse(ctx, cs, "S"), *P = lj_op_perm(ctx, n, perm, "P"), *Q = lj_op_perm(ctx, n, qperm, "Q");
    lj_op *D = lj_op_diag(ctx, n, d, "d");
    /* (S ⊗ v)·K, v = (1, -2)^T: a Kronecker product whose columns move is
     * written with its columns in place (no matrix before the result) */
    double vv[2] = { 1.0, -2.0 };
    lj_op *v = lj_op_dense(ctx, 2, 1, vv, 2, "v"), *Sv = lj_op_kron(ctx, S, v), *K = lj_op_commutation(ctx, 200, 200);
    const lj_op *psd[3] = { P, S, D }, *sq[2] = { S, Q }, *svk[2] = { Sv, K };
    lj_op *J[3] = { lj_op_compose(ctx, 3, psd), lj_op_compose(ctx, 2, sq), lj_op_compose(ctx, 2, svk) };
    const char *what[3] = { "P·S·Diag", "S·Q", "(S ⊗ v)·K" };
    for (int t = 0; t < 3; t++) ck_assert_msg(J[t] != NULL, "%s: %s", what[t], lj_context_message(ctx));
    /* S·Q's column c is S's column i where q[i] = c (Q's row i holds its one at column q[i]) */
    int64_t *qcol = malloc(sizeof *qcol * (size_t)n);
    for (int64_t i = 0; i < n; i++) qcol[qperm[i]] = i;
    for (int t = 0; t < 3; t++) {
        const int64_t nz = t == 2 ? 2 * n * per : n * per;
        const double out_mb = (double)nz * 16.0 / 1048576.0;
        const char *tool = tm_memory_tool();
        bool probe = !tool && peak_reset();
        double before = status_mb("VmRSS");
        cholmod_sparse *M = lj_op_to_sparse(ctx, J[t]);
        double grew = status_mb("VmHWM") - before;
        ck_assert_ptr_nonnull(M);
        if (probe)
            ck_assert_msg(grew <= 1.3 * out_mb, "%s: peak grew by %.1f MB for a %.1f MB result", what[t], grew,
                          out_mb);
        else if (t == 0)
            fprintf(stderr, "test_monomial_sides_peak_memory: peak not checked (%s)\n",
                    tool ? tool : "no /proc/self/clear_refs");
        ck_assert(cholmod_l_check_sparse(M, cc));
        ck_assert(M->sorted);
        ck_assert_int_eq(nnz_of(M), nz);
        if (t == 2) { /* against the operator applied */
            double *x = malloc(sizeof *x * (size_t)n), *y = malloc(sizeof *y * (size_t)(2 * n));
            double *y2 = calloc((size_t)(2 * n), sizeof *y2), err = 0;
            for (int64_t i = 0; i < n; i++) x[i] = urand(&seed);
            ck_assert_int_eq(lj_op_apply(ctx, J[t], 0, 1.0, x, 0.0, y), LJ_OK);
            const int64_t *mp = M->p, *mi = M->i;
            const double *mx = M->x;
            for (int64_t c = 0; c < n; c++)
                for (int64_t q = mp[c]; q < mp[c + 1]; q++) y2[mi[q]] += mx[q] * x[c];
            for (int64_t i = 0; i < 2 * n; i++) err = fmax(err, fabs(y[i] - y2[i]) / (1 + fabs(y[i])));
            ck_assert_msg(err < 1e-13, "%s: the matrix times x differs from J x by %g", what[t], err);
            free(x), free(y), free(y2);
            lj_sparse_free(ctx, &M);
            lj_context_trim(ctx);
            continue;
        }
        const int64_t *mp = M->p, *mi = M->i;
        const double *mx = M->x;
        int64_t bad = 0, bad_col = -1; /* counted, not asserted an entry: Check logs each assertion */
        for (int64_t c = 0; c < n; c++) {
            int64_t was = bad;
            for (int64_t q = mp[c]; q < mp[c + 1]; q++) col[mi[q]] = mx[q];
            const int64_t f = t ? qcol[c] : c;
            for (int64_t q = sp[f]; q < sp[f + 1]; q++) {
                int64_t r = t ? si[q] : inv[si[q]];
                bad += col[r] != (t ? sx[q] : sx[q] * d[c]);
                col[r] = 0.0;
            }
            for (int64_t q = mp[c]; q < mp[c + 1]; q++) bad += col[mi[q]] != 0.0, col[mi[q]] = 0.0;
            if (bad > was && bad_col < 0) bad_col = c;
        }
        ck_assert_msg(bad == 0, "%s: %lld entries differ from S's, the first in column %lld", what[t], (long long)bad,
                      (long long)bad_col);
        lj_sparse_free(ctx, &M);
        lj_context_trim(ctx);
    }
    lj_op *all[] = { J[0], J[1], J[2], S, P, Q, D, v, Sv, K };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    cholmod_l_free_sparse(&cs, cc);
    free(perm), free(inv), free(qperm), free(qcol), free(d), free(col);
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_large_result_pages)
{
    lj_context *ctx = lj_context_new();
    cholmod_common *cc = lj_context_cholmod(ctx);
    uint64_t seed = 71;
    const int64_t sizes[][2] = { { 18, 190 }, { 40, 250 } }; /* about 3.3·10⁵ and 2.5·10⁶ entries */
    for (int c = 0; c < 2; c++) {
        int64_t na = sizes[c][0], nb = sizes[c][1];
        tmat A, B;
        lj_op *a = rand_sparse_op(ctx, na, na, 0.9, &seed, &A), *b = rand_sparse_op(ctx, nb, nb, 0.05, &seed, &B);
        lj_op *k = lj_op_kron(ctx, a, b);
        size_t count0 = (size_t)cc->malloc_count, inuse0 = (size_t)cc->memory_inuse;
        cholmod_sparse *S = lj_op_to_sparse(ctx, k);
        ck_assert_ptr_nonnull(S);
        int64_t nz = nnz_of(S);
        ck_assert_int_gt(nz * (int64_t)sizeof(double), (int64_t)2 << 20);
#ifdef __linux__
        ck_assert_int_eq((uintptr_t)S->i % ((uintptr_t)2 << 20), 0);
        ck_assert_int_eq((uintptr_t)S->x % ((uintptr_t)2 << 20), 0);
#endif
        ck_assert(cholmod_l_check_sparse(S, cc));
        /* S against the operator, both ways, on random vectors */
        int64_t n = (int64_t)S->ncol, m = (int64_t)S->nrow;
        double *x = malloc(sizeof *x * (size_t)n), *y = malloc(sizeof *y * (size_t)m);
        double *y2 = calloc((size_t)m, sizeof *y2), *g = malloc(sizeof *g * (size_t)n), *g2 = calloc((size_t)n, sizeof *g2);
        for (int64_t i = 0; i < n; i++) x[i] = urand(&seed);
        for (int64_t i = 0; i < m; i++) y[i] = urand(&seed);
        const int64_t *p = S->p, *ii = S->i;
        const double *sx = S->x;
        for (int64_t j = 0; j < n; j++)
            for (int64_t q = p[j]; q < p[j + 1]; q++) {
                y2[ii[q]] += sx[q] * x[j];
                g2[j] += sx[q] * y[ii[q]];
            }
        double *y1 = malloc(sizeof *y1 * (size_t)m);
        ck_assert_int_eq(lj_op_apply(ctx, k, 0, 1.0, x, 0.0, y1), LJ_OK);
        ck_assert_int_eq(lj_op_apply(ctx, k, 1, 1.0, y, 0.0, g), LJ_OK);
        for (int64_t i = 0; i < m; i++) ck_assert_double_eq_tol(y1[i], y2[i], 1e-12 * (1 + fabs(y2[i])));
        for (int64_t j = 0; j < n; j++) ck_assert_double_eq_tol(g[j], g2[j], 1e-12 * (1 + fabs(g2[j])));
        /* CHOLMOD may reallocate it (realloc on the aligned arrays) */
        ck_assert(cholmod_l_reallocate_sparse((size_t)nz, S, cc));
        ck_assert_int_eq((int64_t)S->nzmax, nz);
        ck_assert(cholmod_l_check_sparse(S, cc));
        void *i0 = S->i, *x0 = S->x;
        lj_sparse_free(ctx, &S);
        ck_assert_int_eq((size_t)cc->malloc_count, count0);
        ck_assert_int_eq((size_t)cc->memory_inuse, inuse0);
        /* the next large result is written into the arrays lj_sparse_free
         * kept, and is the same */
        S = lj_op_to_sparse(ctx, k);
        ck_assert_ptr_nonnull(S);
        ck_assert((S->i == i0 && S->x == x0) || (S->i == x0 && S->x == i0));
        ck_assert_int_eq(nnz_of(S), nz);
        ck_assert(cholmod_l_check_sparse(S, cc));
        ck_assert_int_eq(lj_op_apply(ctx, k, 0, 1.0, x, 0.0, y1), LJ_OK);
        for (int64_t i = 0; i < m; i++) y2[i] = 0.0;
        p = S->p, ii = S->i, sx = S->x;
        for (int64_t j = 0; j < n; j++)
            for (int64_t q = p[j]; q < p[j + 1]; q++) y2[ii[q]] += sx[q] * x[j];
        for (int64_t i = 0; i < m; i++) ck_assert_double_eq_tol(y1[i], y2[i], 1e-12 * (1 + fabs(y2[i])));
        lj_sparse_free(ctx, &S);
        ck_assert_int_eq((size_t)cc->malloc_count, count0);
        lj_context_trim(ctx); /* gives them back (the sanitizers and valgrind see them go) */
        lj_context_trim(ctx);
        lj_context_trim(NULL);
        /* every allocation of the materialisation fails cleanly, with and
         * without arrays kept */
        int ok_at = 0;
        for (int f = 1; f < 100 && !ok_at; f++) {
            lj_context_fail_alloc(ctx, f, 0);
            S = lj_op_to_sparse(ctx, k);
            if (!S && f % 2 == 0) { /* once more, from the arrays kept */
                lj_context_clear(ctx);
                lj_context_fail_alloc(ctx, 0, 0);
                cholmod_sparse *K = lj_op_to_sparse(ctx, k);
                ck_assert_ptr_nonnull(K);
                lj_sparse_free(ctx, &K);
                lj_context_fail_alloc(ctx, f, 0);
                S = lj_op_to_sparse(ctx, k);
            }
            if (S) ok_at = f;
            else {
                ck_assert_int_eq(lj_context_status(ctx), LJ_ERR_NOMEM);
                lj_context_clear(ctx);
            }
            lj_sparse_free(ctx, &S);
            ck_assert_int_eq((size_t)cc->malloc_count, count0);
        }
        lj_context_fail_alloc(ctx, 0, 0);
        ck_assert_int_gt(ok_at, 3);
        free(x), free(y), free(y1), free(y2), free(g), free(g2);
        lj_op_free(&a);
        lj_op_free(&b);
        lj_op_free(&k);
        tm_free(&A);
        tm_free(&B);
    }
    lj_context_free(&ctx);
}
END_TEST

START_TEST(test_normal_equations)
{
    lj_context *ctx = lj_context_new();
    uint64_t seed = 71;
    tmat A, B, C, W = tm_rand(4, 3, &seed);
    lj_op *a = rand_sparse_op(ctx, 5, 3, 0.6, &seed, &A), *b = rand_sparse_op(ctx, 4, 2, 0.6, &seed, &B);
    lj_op *c = rand_sparse_op(ctx, 20, 6, 0.5, &seed, &C), *w = lj_op_dense(ctx, 4, 3, W.a, 4, "W");
    double dv[6] = { 1, -2, 3, 0.5, 2, -1 };
    lj_op *D = lj_op_diag(ctx, 6, dv, "d"), *K = lj_op_commutation(ctx, 4, 5);
    lj_op *k = lj_op_kron(ctx, a, b), *kd = lj_op_mul(ctx, k, D), *Kc = lj_op_mul(ctx, K, c);
    lj_op *s = lj_op_add(ctx, k, k), *kw = lj_op_kron(ctx, w, b), *kwt = lj_op_transpose(ctx, kw);
    const lj_op *hs[3] = { kd, Kc, s };
    lj_op *h = lj_op_hstack(ctx, 3, hs);
    const lj_op *vs[2] = { kd, Kc };
    lj_op *v = lj_op_vstack(ctx, 2, vs);
    /* sampled products: dense factors with weights, an identity factor,
     * and a trailing commutation */
    tmat E = tm_rand(3, 2, &seed);
    lj_op *e = lj_op_dense(ctx, 3, 2, E.a, 3, "E"), *I4 = lj_op_identity(ctx, 4), *K23 = lj_op_commutation(ctx, 2, 3);
    int64_t si[5] = { 0, 2, 1, 2, 0 }, sj[5] = { 3, 1, 0, 1, 2 };
    lj_op *sw = lj_op_sampled(ctx, 5, si, sj, dv, w, e, "P"), *si4 = lj_op_sampled(ctx, 5, si, sj, NULL, I4, w, "P");
    lj_op *sk = lj_op_mul(ctx, sw, K23);
    lj_op *cases[] = { k, kd, Kc, s, h, v, kw, kwt, D, sw, si4, sk };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        lj_op *J = cases[t];
        int64_t m = lj_op_rows(J), n = lj_op_cols(J);
        tmat Jd = tm_new(m, n);
        CK_OK(ctx, lj_op_to_dense(ctx, J, Jd.a, m));
        double *d = malloc(sizeof *d * (size_t)n);
        CK_OK(ctx, lj_op_normal_diag(ctx, J, d));
        for (int64_t j = 0; j < n; j++) {
            double r = 0;
            for (int64_t i = 0; i < m; i++) r += Jd.a[i + j * m] * Jd.a[i + j * m];
            ck_assert_msg(fabs(r - d[j]) <= 1e-13 * (1 + r), "case %zu column %lld: %g vs %g", t, (long long)j, d[j], r);
        }
        /* J^T J stays lazy and equals the product of the references */
        lj_op *N = lj_op_normal(ctx, J);
        ck_assert_int_eq(lj_op_rows(N), n);
        tmat Jt = tm_transpose(Jd), JtJ = tm_mul(Jt, Jd);
        check_op_against(ctx, N, JtJ, 1e-13, "J^T J");
        lj_op_free(&N);
        free(d);
        tm_free(&Jd);
        tm_free(&Jt);
        tm_free(&JtJ);
    }
    ck_assert_int_eq(lj_op_normal_diag(ctx, k, NULL), LJ_ERR_INVALID);
    ck_assert_ptr_null(lj_op_normal(ctx, NULL));
    lj_op *all[] = { a, b, c, w, D, K, k, kd, Kc, s, kw, kwt, h, v, e, I4, K23, sw, si4, sk };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    tm_free(&E);
    tm_free(&A);
    tm_free(&B);
    tm_free(&C);
    tm_free(&W);
    lj_context_free(&ctx);
}
END_TEST

Suite *make_sparse_suite(void)
{
    Suite *s = suite_create("sparse");
    TCase *normal = tcase_create("normal");
    tcase_add_test(normal, test_kron_exact_pattern);
    tcase_add_test(normal, test_product_chain_and_sum);
    tcase_add_test(normal, test_mtx_round_trip);
    tcase_add_test(normal, test_mtx_handwritten);
    tcase_add_test(normal, test_normal_equations);
    tcase_add_test(normal, test_large_result_pages);
    tcase_add_test(normal, test_monomial_sides_peak_memory);
    suite_add_tcase(s, normal);
    TCase *errors = tcase_create("errors");
    tcase_set_timeout(errors, 120);
    tcase_add_test(errors, test_mtx_malformed);
    tcase_add_test(errors, test_hostile_headers);
    tcase_add_test(errors, test_alloc_failure_materialise_and_files);
    suite_add_tcase(s, errors);
    return s;
}

int main(void)
{
    return run_suite(make_sparse_suite());
}
