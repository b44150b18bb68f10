/* Shared by the file-reader fuzz targets: the input as a file the readers
 * open by name, and the invariants of every CSC matrix they return. */
#ifndef LJ_FUZZ_UTIL_H
#define LJ_FUZZ_UTIL_H
#include <lazyjac.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The bytes as a memory file (regular, with a size, like a file on disk);
 * its name goes to path. Returns the descriptor (close it), or -1. */
static inline int fuzz_memfile(const uint8_t *data, size_t size, char path[64])
{
    int fd = memfd_create("fuzz", 0);
    if (fd < 0) return -1;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return -1;
    }
    snprintf(path, 64, "/proc/self/fd/%d", fd);
    return fd;
}

/* Packed, sorted, every row index in range and strictly ascending. */
static inline void fuzz_check_csc(const cholmod_sparse *s)
{
    const SuiteSparse_long *p = s->p, *ii = s->i;
    if (!s->packed || !s->sorted || p[0] != 0) abort();
    for (size_t j = 0; j < s->ncol; j++) {
        if (p[j + 1] < p[j]) abort();
        for (SuiteSparse_long q = p[j]; q < p[j + 1]; q++)
            if (ii[q] < 0 || (size_t)ii[q] >= s->nrow || (q > p[j] && ii[q] <= ii[q - 1])) abort();
    }
}
#endif
