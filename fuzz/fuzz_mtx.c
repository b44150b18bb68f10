/* libFuzzer target for the Matrix Market readers: any bytes, read by the
 * dense and the sparse reader, either give a matrix or fail with a status.
 * A sparse result must be canonical (sorted, packed, in range) and agree
 * with the dense reading where that is small; memory must follow the
 * input (run with -rss_limit_mb=2048 -malloc_limit_mb=2048). */
#define _GNU_SOURCE
#include <lazyjac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_csc(const cholmod_sparse *s)
{
    const SuiteSparse_long *p = s->p, *ii = s->i;
    if (!s->packed || !s->sorted || p[0] != 0) abort();
    for (size_t j = 0; j < s->ncol; j++) {
        if (p[j + 1] < p[j]) abort();
        for (SuiteSparse_long q = p[j]; q < p[j + 1]; q++)
            if (ii[q] < 0 || (size_t)ii[q] >= s->nrow || (q > p[j] && ii[q] <= ii[q - 1])) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the bytes as a file the readers open by name (a memory file: regular,
     * with a size, like a file on disk) */
    int fd = memfd_create("fuzz_mtx", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lj_context *ctx = lj_context_new();
    cholmod_sparse *s = lj_read_sparse_mtx(ctx, path);
    if (s) check_csc(s);
    else if (lj_context_status(ctx) == LJ_OK || !lj_context_message(ctx)[0]) abort();
    int64_t r = -1, c = -1;
    double *a = NULL;
    /* the dense reading of a coordinate file has rows × cols entries by
     * request: only where that is small */
    if (!s || (double)s->nrow * (double)s->ncol <= 1e6) {
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
