/* libFuzzer target for the Rutherford-Boeing reader: any bytes either give
 * a canonical CSC matrix (sorted, packed, in range) or fail with a status;
 * memory must follow the input (run with -rss_limit_mb=2048
 * -malloc_limit_mb=2048). */
#define _GNU_SOURCE
#include <stdint.h>
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = fuzz_memfile(data, size, path);
    if (fd < 0) return 0;
    lj_context *ctx = lj_context_new();
    cholmod_sparse *s = lj_read_sparse_rb(ctx, path);
    if (s)
        fuzz_check_csc(s);
    else if (lj_context_status(ctx) == LJ_OK)
        abort(); /* a failure always has a reason */
    lj_sparse_free(ctx, &s);
    lj_context_free(&ctx);
    close(fd);
    return 0;
}
