/* Test helper for the command tests: compares Matrix Market (or
 * Rutherford-Boeing, by extension) files, and multiplies a matrix file by a
 * vector file, through the library's readers.
 *   mtxtool diff A B TOL        exit 0 when max |A - B| <= TOL·(1 + max|B|)
 *   mtxtool matvec J v [t] OUT  writes J v (or J^T v) as a dense array
 *   mtxtool read F              reads F sparse; prints "rows cols nnz" */
#include <lazyjac.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double *load(lj_context *ctx, const char *path, int64_t *r, int64_t *c)
{
    double *v = NULL;
    size_t n = strlen(path);
    if (n > 3 && !strcmp(path + n - 3, ".rb")) {
        cholmod_sparse *s = lj_read_sparse_rb(ctx, path);
        lj_op *a = s ? lj_op_sparse(ctx, s, NULL) : NULL;
        lj_sparse_free(ctx, &s);
        if (a) {
            *r = lj_op_rows(a);
            *c = lj_op_cols(a);
            v = malloc(sizeof *v * (size_t)(*r * *c + 1));
            lj_op_to_dense(ctx, a, v, *r > 0 ? *r : 1);
        }
        lj_op_free(&a);
    } else if (lj_read_dense_mtx(ctx, path, r, c, &v) != LJ_OK)
        v = NULL;
    if (!v) fprintf(stderr, "mtxtool: %s\n", lj_context_message(ctx));
    return v;
}

int main(int argc, char **argv)
{
    lj_context *ctx = lj_context_new();
    int rc = 2;
    if (argc == 5 && !strcmp(argv[1], "diff")) {
        int64_t ar, ac, br, bc;
        double *a = load(ctx, argv[2], &ar, &ac), *b = load(ctx, argv[3], &br, &bc);
        double tol = atof(argv[4]), d = 0, scale = 0;
        if (a && b && ar * ac == br * bc && (ar == br || ac == 1 || bc == 1)) {
            for (int64_t i = 0; i < ar * ac; i++) {
                d = fmax(d, fabs(a[i] - b[i]));
                scale = fmax(scale, fabs(b[i]));
            }
            rc = d <= tol * (1 + scale) ? 0 : 1;
            if (rc) fprintf(stderr, "mtxtool: %s and %s differ by %g\n", argv[2], argv[3], d);
        } else if (a && b) {
            fprintf(stderr, "mtxtool: shapes differ\n");
            rc = 1;
        }
        free(a);
        free(b);
    } else if ((argc == 5 || argc == 6) && !strcmp(argv[1], "matvec")) {
        int64_t jr, jc, vr, vc;
        int t = argc == 6;
        double *J = load(ctx, argv[2], &jr, &jc), *v = load(ctx, argv[3], &vr, &vc);
        int64_t out = t ? jc : jr;
        double *y = calloc((size_t)(out + 1), sizeof *y);
        if (J && v && vr == (t ? jr : jc)) {
            for (int64_t i = 0; i < jr; i++)
                for (int64_t j = 0; j < jc; j++) {
                    if (t) y[j] += J[i + j * jr] * v[i];
                    else y[i] += J[i + j * jr] * v[j];
                }
            rc = lj_write_dense_mtx(ctx, out, 1, y, out > 0 ? out : 1, argv[argc - 1]) == LJ_OK ? 0 : 1;
        }
        free(J);
        free(v);
        free(y);
    } else if (argc == 3 && !strcmp(argv[1], "read")) {
        size_t n = strlen(argv[2]);
        cholmod_sparse *s = n > 3 && !strcmp(argv[2] + n - 3, ".rb") ? lj_read_sparse_rb(ctx, argv[2])
                                                                     : lj_read_sparse_mtx(ctx, argv[2]);
        if (s) {
            printf("%zu %zu %lld\n", s->nrow, s->ncol, (long long)((SuiteSparse_long *)s->p)[s->ncol]);
            rc = 0;
        } else {
            fprintf(stderr, "mtxtool: %s\n", lj_context_message(ctx));
            rc = 1;
        }
        lj_sparse_free(ctx, &s);
    } else
        fprintf(stderr, "usage: mtxtool diff A B TOL | mtxtool matvec J v [t] OUT | mtxtool read F\n");
    lj_context_free(&ctx);
    return rc;
}
