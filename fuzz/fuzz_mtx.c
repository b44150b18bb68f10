/* libFuzzer target for the Matrix Market readers: any bytes, read by the
 * dense and the sparse reader, either give a matrix or fail with a status.
 * A sparse result must be canonical (sorted, packed, in range) and agree
 * with the dense reading where that is small; memory must follow the
 * input (run with -rss_limit_mb=2048 -malloc_limit_mb=2048). */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    if (fd < 0) return 0;
    lj_context *ctx = lj_context_new();
    cholmod_sparse *s = lj_read_sparse_mtx(ctx, path);
    if (s) fuzz_check_csc(s);
    else if (lj_context_status(ctx) == LJ_OK || !lj_context_message(ctx)[0]) abort();
    int64_t r = -1, c = -1;
    double *a = NULL;
    /* the dense reading of a coordinate file has rows × cols entries by
     * request (up to 1 GiB from a small file): only where that is small,
     * or where the sparse reading failed for another reason than memory */
    if (s ? (double)s->nrow * (double)s->ncol <= 1e6 : lj_context_status(ctx) != LJ_ERR_NOMEM) {
        lj_status st = lj_read_dense_mtx(ctx, path, &r, &c, &a);
        if (st == LJ_OK && s) {
            if ((size_t)r != s->nrow || (size_t)c != s->ncol) abort();
            /* the same matrix both ways, to the bit (duplicates are summed
             * in file order by both; explicit zeros stay stored) */
            const SuiteSparse_long *p = s->p, *ii = s->i;
            const double *x = s->x;
            double *b = calloc((size_t)(r * c > 0 ? r * c : 1), sizeof *b);
            if (b) {
                for (int64_t j = 0; j < c; j++)
                    for (SuiteSparse_long q = p[j]; q < p[j + 1]; q++) b[ii[q] + j * r] = x[q];
                for (int64_t k = 0; k < r * c; k++)
                    if (b[k] != a[k]) abort();
                free(b);
            }
        } else if (st == LJ_OK && !s && lj_context_status(ctx) == LJ_OK)
            abort(); /* dense read succeeded where sparse failed without a reason */
    }
    lj_free(a);
    lj_sparse_free(ctx, &s);
    lj_context_free(&ctx);
    close(fd);
    return 0;
}
