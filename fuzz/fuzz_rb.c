/* libFuzzer target for the Rutherford-Boeing reader: any bytes either give
 * a canonical CSC matrix (sorted, packed, in range) or fail with a status;
 * memory must follow the input (run with -rss_limit_mb=2048
 * -malloc_limit_mb=2048). */
#define _GNU_SOURCE
#include <lazyjac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz_rb", 0);
    if (fd < 0) return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    lj_context *ctx = lj_context_new();
    cholmod_sparse *s = lj_read_sparse_rb(ctx, path);
    if (s) {
        const SuiteSparse_long *p = s->p, *ii = s->i;
        if (!s->packed || !s->sorted || p[0] != 0) abort();
        for (size_t j = 0; j < s->ncol; j++)
            for (SuiteSparse_long q = p[j]; q < p[j + 1]; q++)
                if (ii[q] < 0 || (size_t)ii[q] >= s->nrow || (q > p[j] && ii[q] <= ii[q - 1])) abort();
    } else if (lj_context_status(ctx) == LJ_OK)
        abort(); /* a failure always has a reason */
    lj_sparse_free(ctx, &s);
    lj_context_free(&ctx);
    close(fd);
    return 0;
}
