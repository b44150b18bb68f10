/* Matrix Market and Rutherford-Boeing files. Writers go to a temporary file
 * beside the target and rename it into place, so that a failed write leaves
 * nothing at the target path. */
#include "config.h"
#include "../op/op.h"
#include <RBio.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <unistd.h>

/* ---- temporary files ----------------------------------------------------------- */

/* A new file beside path, created exclusively with the usual permissions
 * (0666 less the umask; mkstemp's 0600 would carry over to the result). */
static FILE *open_temp(lj_context *ctx, const char *op, const char *path, char **tmp)
{
    static _Atomic unsigned long counter;
    size_t n = strlen(path) + 48;
    *tmp = lji_malloc(ctx, n);
    if (!*tmp) {
        lji_nomem(ctx, op);
        return NULL;
    }
    int fd = -1;
    for (int tries = 0; tries < 100 && fd < 0; tries++) {
        unsigned long k = atomic_fetch_add(&counter, 1);
        snprintf(*tmp, n, "%s.tmp%ld.%lu", path, (long)getpid(), k);
        fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        lji_error(ctx, LJ_ERR_IO, "%s: cannot create '%s': %s", op, path, strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return NULL;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        lji_error(ctx, LJ_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
        close(fd);
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return f;
}

/* Close f and move tmp to path when ok; otherwise remove tmp. */
static lj_status finish_temp(lj_context *ctx, const char *op, FILE *f, char *tmp, const char *path,
                             bool ok)
{
    lj_status st = LJ_OK;
    if (f) {
        if (ferror(f)) ok = false;
        if (fclose(f) != 0 && ok) {
            ok = false;
            st = lji_error(ctx, LJ_ERR_IO, "%s: writing '%s' failed: %s", op, path, strerror(errno));
        }
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        st = lji_error(ctx, LJ_ERR_IO, "%s: cannot rename into '%s': %s", op, path, strerror(errno));
    }
    if (!ok) {
        unlink(tmp);
        if (st == LJ_OK)
            st = ctx->status != LJ_OK ? ctx->status
                                      : lji_error(ctx, LJ_ERR_IO, "%s: writing '%s' failed", op, path);
    }
    free(tmp);
    return st;
}

/* ---- Matrix Market writers ---------------------------------------------------- */

static lj_status write_csc_mtx(lj_context *ctx, const char *op, const cholmod_sparse *s,
                               const char *path)
{
    char *tmp;
    FILE *f = open_temp(ctx, op, path, &tmp);
    if (!f) return ctx->status;
    const int64_t *p = s->p, *ii = s->i;
    const double *x = s->x;
    int64_t nz = p[s->ncol];
    fprintf(f, "%%%%MatrixMarket matrix coordinate real general\n");
    fprintf(f, "%% written by lazyjac %s\n", PACKAGE_VERSION);
    fprintf(f, "%" PRId64 " %" PRId64 " %" PRId64 "\n", (int64_t)s->nrow, (int64_t)s->ncol, nz);
    for (int64_t j = 0; j < (int64_t)s->ncol; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++)
            fprintf(f, "%" PRId64 " %" PRId64 " %.17g\n", ii[q] + 1, j + 1, x[q]);
    return finish_temp(ctx, op, f, tmp, path, true);
}

lj_status lj_op_write_mtx(lj_context *ctx, const lj_op *J, const char *path)
{
    const char *op = "write_mtx";
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    if (!path) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
    cholmod_sparse *s = lj_op_to_sparse(ctx, J);
    if (!s) return ctx->status;
    st = write_csc_mtx(ctx, op, s, path);
    cholmod_l_free_sparse(&s, &ctx->cc);
    return st;
}

lj_status lj_write_dense_mtx(lj_context *ctx, int64_t rows, int64_t cols, const double *a,
                             int64_t lda, const char *path)
{
    const char *op = "write_dense_mtx";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!path) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
    int64_t n;
    if (!lji_size_ok(rows, cols, &n))
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: bad shape " LJI_SHP, op, rows, cols);
    if (n > 0 && !a) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL data for " LJI_SHP, op, rows, cols);
    if (lda < (rows > 1 ? rows : 1))
        return lji_error(ctx, LJ_ERR_SHAPE, "%s: leading dimension %" PRId64 " < rows of " LJI_SHP,
                         op, lda, rows, cols);
    char *tmp;
    FILE *f = open_temp(ctx, op, path, &tmp);
    if (!f) return ctx->status;
    fprintf(f, "%%%%MatrixMarket matrix array real general\n");
    fprintf(f, "%% written by lazyjac %s\n", PACKAGE_VERSION);
    fprintf(f, "%" PRId64 " %" PRId64 "\n", rows, cols);
    for (int64_t j = 0; j < cols; j++)
        for (int64_t i = 0; i < rows; i++) fprintf(f, "%.17g\n", a[i + j * lda]);
    return finish_temp(ctx, op, f, tmp, path, true);
}

/* ---- Matrix Market reader ------------------------------------------------------ */

typedef struct {
    bool coordinate, symmetric, skew, pattern;
    int64_t rows, cols, nnz;
    /* triplets (coordinate) or values (array, column-major, expanded) */
    int64_t *ti, *tj;
    double *tx;
    int64_t count;
} mm_data;

static void mm_free(mm_data *d)
{
    free(d->ti);
    free(d->tj);
    free(d->tx);
}

static bool lower_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

/* Reads the next non-comment line into buf; false at end of file. */
static bool next_line(FILE *f, char *buf, size_t n, int64_t *lineno)
{
    while (fgets(buf, (int)n, f)) {
        (*lineno)++;
        const char *s = buf;
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '%' || *s == '\n' || *s == '\r' || *s == '\0') continue;
        return true;
    }
    return false;
}

static lj_status mm_read(lj_context *ctx, const char *op, const char *path, mm_data *d)
{
    memset(d, 0, sizeof *d);
    if (!path) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
    FILE *f = fopen(path, "r");
    if (!f) return lji_error(ctx, LJ_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    char line[1024], w[5][64];
    int64_t lineno = 0;
    lj_status st = LJ_OK;
    if (!fgets(line, sizeof line, f)) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is empty", op, path);
        goto done;
    }
    lineno = 1;
    if (sscanf(line, "%63s %63s %63s %63s %63s", w[0], w[1], w[2], w[3], w[4]) != 5 ||
        !lower_eq(w[0], "%%MatrixMarket") || !lower_eq(w[1], "matrix")) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' has no Matrix Market header", op, path);
        goto done;
    }
    if (lower_eq(w[2], "coordinate")) d->coordinate = true;
    else if (!lower_eq(w[2], "array")) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': unknown format '%s'", op, path, w[2]);
        goto done;
    }
    if (lower_eq(w[3], "pattern") && d->coordinate) d->pattern = true;
    else if (!lower_eq(w[3], "real") && !lower_eq(w[3], "integer") && !lower_eq(w[3], "double")) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' holds %s values; lazyjac reads real ones", op,
                       path, w[3]);
        goto done;
    }
    if (lower_eq(w[4], "symmetric")) d->symmetric = true;
    else if (lower_eq(w[4], "skew-symmetric")) d->symmetric = d->skew = true;
    else if (!lower_eq(w[4], "general")) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': unsupported symmetry '%s'", op, path, w[4]);
        goto done;
    }
    if (!next_line(f, line, sizeof line, &lineno)) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' ends before its size line", op, path);
        goto done;
    }
    char extra[8];
    int got = d->coordinate ? sscanf(line, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %7s", &d->rows,
                                     &d->cols, &d->nnz, extra)
                            : sscanf(line, "%" SCNd64 " %" SCNd64 " %7s", &d->rows, &d->cols, extra);
    int64_t total;
    if (got != (d->coordinate ? 3 : 2) || d->rows < 0 || d->cols < 0 ||
        !lji_size_ok(d->rows, d->cols, &total) || (d->coordinate && (d->nnz < 0 || d->nnz > total))) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad size line", op, path, lineno);
        goto done;
    }
    if (d->symmetric && d->rows != d->cols) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': symmetric matrix is not square " LJI_SHP, op,
                       path, d->rows, d->cols);
        goto done;
    }
    int64_t want;
    if (d->coordinate) want = d->nnz;
    else if (d->symmetric) want = d->rows * (d->rows + 1) / 2 - (d->skew ? d->rows : 0);
    else want = total;
    /* a file cannot hold more entries than it has bytes: guard allocation */
    if (d->coordinate) {
        d->ti = lji_malloc(ctx, (size_t)(want ? want : 1) * sizeof(int64_t));
        d->tj = lji_malloc(ctx, (size_t)(want ? want : 1) * sizeof(int64_t));
        d->tx = lji_malloc(ctx, (size_t)(want ? want : 1) * sizeof(double));
    } else
        d->tx = lji_calloc(ctx, (size_t)(total ? total : 1), sizeof(double));
    if (!d->tx || (d->coordinate && (!d->ti || !d->tj))) {
        st = lji_nomem(ctx, op);
        goto done;
    }
    int64_t ai = d->skew ? 1 : 0, aj = 0;
    for (int64_t k = 0; k < want; k++) {
        if (!next_line(f, line, sizeof line, &lineno)) {
            st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is truncated: %" PRId64 " of %" PRId64
                           " entries", op, path, k, want);
            goto done;
        }
        if (d->coordinate) {
            int64_t i, j;
            double v = 1.0;
            int n = d->pattern ? sscanf(line, "%" SCNd64 " %" SCNd64 " %7s", &i, &j, extra)
                               : sscanf(line, "%" SCNd64 " %" SCNd64 " %lf %7s", &i, &j, &v, extra);
            if (n != (d->pattern ? 2 : 3) || i < 1 || i > d->rows || j < 1 || j > d->cols ||
                !isfinite(v) || (d->symmetric && i < j)) {
                st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad entry", op, path,
                               lineno);
                goto done;
            }
            d->ti[k] = i - 1;
            d->tj[k] = j - 1;
            d->tx[k] = v;
        } else {
            double v;
            if (sscanf(line, "%lf %7s", &v, extra) != 1 || !isfinite(v)) {
                st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad value", op, path,
                               lineno);
                goto done;
            }
            d->tx[ai + aj * d->rows] = v;
            if (d->symmetric && ai != aj) d->tx[aj + ai * d->rows] = d->skew ? -v : v;
            /* next position: down the column, lower triangle only when symmetric */
            ai++;
            if (ai >= d->rows) {
                aj++;
                ai = d->symmetric ? aj + (d->skew ? 1 : 0) : 0;
            }
        }
    }
    d->count = want;
    if (next_line(f, line, sizeof line, &lineno)) {
        st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": more entries than declared",
                       op, path, lineno);
        goto done;
    }
done:
    fclose(f);
    if (st != LJ_OK) mm_free(d);
    return st;
}

lj_status lj_read_dense_mtx(lj_context *ctx, const char *path, int64_t *rows, int64_t *cols,
                            double **data)
{
    const char *op = "read_mtx";
    if (!lji_ctx_ok(ctx)) return LJ_ERR_INVALID;
    if (!rows || !cols || !data) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    mm_data d;
    lj_status st = mm_read(ctx, op, path, &d);
    if (st != LJ_OK) return st;
    if (d.coordinate) {
        int64_t cells = d.rows * d.cols;
        double *a = lji_calloc(ctx, (size_t)(cells > 0 ? cells : 1), sizeof *a);
        if (!a) {
            mm_free(&d);
            return lji_nomem(ctx, op);
        }
        for (int64_t k = 0; k < d.count; k++) {
            a[d.ti[k] + d.tj[k] * d.rows] += d.tx[k];
            if (d.symmetric && d.ti[k] != d.tj[k])
                a[d.tj[k] + d.ti[k] * d.rows] += d.skew ? -d.tx[k] : d.tx[k];
        }
        free(d.tx);
        d.tx = a;
    }
    *rows = d.rows;
    *cols = d.cols;
    *data = d.tx;
    d.tx = NULL;
    mm_free(&d);
    return LJ_OK;
}

cholmod_sparse *lj_read_sparse_mtx(lj_context *ctx, const char *path)
{
    const char *op = "read_mtx";
    if (!lji_ctx_ok(ctx)) return NULL;
    mm_data d;
    if (mm_read(ctx, op, path, &d) != LJ_OK) return NULL;
    /* as triplets: coordinate entries, or the nonzeros of an array */
    int64_t n = 0;
    if (d.coordinate)
        n = d.count * (d.symmetric ? 2 : 1);
    else
        for (int64_t q = 0; q < d.rows * d.cols; q++) n += d.tx[q] != 0.0;
    cholmod_triplet *t = NULL;
    cholmod_sparse *s = NULL;
    if (lji_alloc_gate(ctx))
        t = cholmod_l_allocate_triplet((size_t)d.rows, (size_t)d.cols, (size_t)(n ? n : 1), 0,
                                       CHOLMOD_REAL, &ctx->cc);
    if (!t) {
        lji_nomem(ctx, op);
        goto done;
    }
    int64_t *ti = t->i, *tj = t->j, k = 0;
    double *tx = t->x;
    if (d.coordinate) {
        for (int64_t q = 0; q < d.count; q++) {
            ti[k] = d.ti[q];
            tj[k] = d.tj[q];
            tx[k++] = d.tx[q];
            if (d.symmetric && d.ti[q] != d.tj[q]) {
                ti[k] = d.tj[q];
                tj[k] = d.ti[q];
                tx[k++] = d.skew ? -d.tx[q] : d.tx[q];
            }
        }
    } else
        for (int64_t j = 0; j < d.cols; j++)
            for (int64_t i = 0; i < d.rows; i++)
                if (d.tx[i + j * d.rows] != 0.0) {
                    ti[k] = i;
                    tj[k] = j;
                    tx[k++] = d.tx[i + j * d.rows];
                }
    t->nnz = (size_t)k;
    if (lji_alloc_gate(ctx)) {
        s = cholmod_l_triplet_to_sparse(t, (size_t)k, &ctx->cc); /* sums duplicates, sorted */
        if (!s) lji_cholmod_check(ctx, op);
    }
    if (!s && ctx->status == LJ_OK) lji_nomem(ctx, op);
done:
    cholmod_l_free_triplet(&t, &ctx->cc);
    mm_free(&d);
    return s;
}

/* ---- Rutherford-Boeing ------------------------------------------------------------ */

lj_status lj_op_write_rb(lj_context *ctx, const lj_op *J, const char *path, const char *title,
                         const char *key)
{
    const char *op = "write_rb";
    lj_status st = lji_check_args(ctx, op, 1, &J);
    if (st != LJ_OK) return st;
    if (!path) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
    cholmod_sparse *s = lj_op_to_sparse(ctx, J);
    if (!s) return ctx->status;
    char *tmp;
    FILE *f = open_temp(ctx, op, path, &tmp);
    if (!f) {
        cholmod_l_free_sparse(&s, &ctx->cc);
        return ctx->status;
    }
    fclose(f); /* RBio writes by name */
    char t[73], k[9], mtype[4];
    snprintf(t, sizeof t, "%s", title ? title : "lazyjac Jacobian");
    snprintf(k, sizeof k, "%s", key ? key : "lazyjac");
    SuiteSparse_long r = RBwrite(tmp, t, k, (SuiteSparse_long)s->nrow, (SuiteSparse_long)s->ncol,
                                 s->p, s->i, s->x, NULL, NULL, NULL, 0, mtype);
    cholmod_l_free_sparse(&s, &ctx->cc);
    bool ok = r == 0;
    if (!ok)
        lji_error(ctx, LJ_ERR_IO, "%s: RBio could not write '%s' (status %ld)", op, path, (long)r);
    return finish_temp(ctx, op, NULL, tmp, path, ok);
}

cholmod_sparse *lj_read_sparse_rb(lj_context *ctx, const char *path)
{
    const char *op = "read_rb";
    if (!lji_ctx_ok(ctx)) return NULL;
    if (!path) {
        lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
        return NULL;
    }
    FILE *probe = fopen(path, "r");
    if (!probe) {
        lji_error(ctx, LJ_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
        return NULL;
    }
    /* The header is checked here before RBio parses the file: RBio reads
     * past what a malformed header holds. Line 2 holds card counts, line 3
     * the type (real/integer, any symmetry, assembled) and the sizes. */
    char l1[200], l2[200], l3[200], l4[200], t[8];
    long long c1, c2, c3, nr, nc, nz, ne;
    bool ok = fgets(l1, sizeof l1, probe) && fgets(l2, sizeof l2, probe) && fgets(l3, sizeof l3, probe) &&
              fgets(l4, sizeof l4, probe) && sscanf(l2, "%lld %lld %lld", &c1, &c2, &c3) == 3 &&
              sscanf(l3, "%3s %lld %lld %lld %lld", t, &nr, &nc, &nz, &ne) >= 4 && strlen(t) == 3 &&
              strchr("rRiIpPcC", t[0]) && strchr("uUsSzZrRhH", t[1]) && strchr("aAeE", t[2]) &&
              nr >= 0 && nc >= 0 && nz >= 0 && c1 >= 0 && c2 >= 0 && c3 >= 0;
    fclose(probe);
    if (!ok) {
        lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is not a Rutherford-Boeing file (bad header)", op, path);
        return NULL;
    }
    if (!strchr("rRiI", t[0]) || strchr("eE", t[2])) {
        lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' holds a %s matrix; lazyjac reads real assembled ones", op,
                  path, t);
        return NULL;
    }
    char title[73], key[9], mtype[4];
    SuiteSparse_long nrow, ncol, mkind, skind, asize, znz;
    SuiteSparse_long *Ap = NULL, *Ai = NULL, *Zp = NULL, *Zi = NULL;
    double *Ax = NULL, *Az = NULL;
    SuiteSparse_long r = RBread((char *)path, 1, 0, title, key, mtype, &nrow, &ncol, &mkind,
                                &skind, &asize, &znz, &Ap, &Ai, &Ax, &Az, &Zp, &Zi);
    cholmod_sparse *s = NULL;
    if (r != 0) {
        lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is not a readable Rutherford-Boeing file (RBio %ld)",
                  op, path, (long)r);
        goto done;
    }
    if ((mkind != 0 && mkind != 3) || !Ax) {
        lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is not a real matrix (type %s)", op, path, mtype);
        goto done;
    }
    cholmod_sparse hdr = { .nrow = (size_t)nrow, .ncol = (size_t)ncol,
                           .nzmax = (size_t)(Ap[ncol] ? Ap[ncol] : 1), .p = Ap, .i = Ai, .x = Ax,
                           .stype = 0, .itype = CHOLMOD_LONG, .xtype = CHOLMOD_REAL,
                           .dtype = CHOLMOD_DOUBLE, .sorted = 1, .packed = 1 };
    lj_op *tmp = lj_op_sparse(ctx, &hdr, NULL);
    if (tmp) s = lji_to_sparse(ctx, tmp);
    lj_op_free(&tmp);
done:
    SuiteSparse_free(Ap);
    SuiteSparse_free(Ai);
    SuiteSparse_free(Ax);
    SuiteSparse_free(Az);
    SuiteSparse_free(Zp);
    SuiteSparse_free(Zi);
    return s;
}
