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
#include <sys/stat.h>
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

/* The reader's memory follows what the file holds, never what its header
 * claims: entry arrays grow as entries are read (and a declared count that
 * the file's size cannot hold is reported as a truncated file before
 * anything is allocated); the CSC conversion buckets entries by column in
 * O(nnz + cols) memory, never O(rows). */

typedef struct {
    FILE *f;
    const char *path, *op;
    int64_t lineno;
    int64_t size;     /* the file's size in bytes, or -1 (a pipe) */
    int64_t consumed; /* bytes read so far */
    char line[4096];
} mm_file;

typedef struct {
    bool coordinate, symmetric, skew, pattern;
    int64_t rows, cols, declared;
    /* coordinate: count triplets (0-based); array: count values in file order */
    int64_t *ti, *tj;
    double *tx;
    int64_t count, cap;
    int64_t bytes;    /* the file's size (or, for a pipe, the bytes read) */
} mm_data;

static void mm_free(mm_data *d)
{
    free(d->ti);
    free(d->tj);
    free(d->tx);
    d->ti = d->tj = NULL;
    d->tx = NULL;
}

static bool lower_eq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

static bool blank_or_comment(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return *s == '%' || *s == '\n' || *s == '\r' || *s == '\0';
}

/* The next line that is not blank or a comment, into m->line: 1, or 0 at
 * the end of the file, or -1 after recording an error (a data line longer
 * than the buffer; a comment line may be of any length). */
static int mm_next(lj_context *ctx, mm_file *m, bool data)
{
    while (fgets(m->line, sizeof m->line, m->f)) {
        m->lineno++;
        size_t n = strlen(m->line);
        m->consumed += (int64_t)n;
        bool whole = n > 0 && m->line[n - 1] == '\n';
        bool skip = data && blank_or_comment(m->line);
        if (!whole && !feof(m->f)) { /* a long line: skip a comment's rest, refuse data */
            if (!skip) {
                lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 " is longer than %zu bytes",
                          m->op, m->path, m->lineno, sizeof m->line - 1);
                return -1;
            }
            int c;
            while ((c = fgetc(m->f)) != EOF && c != '\n') m->consumed++;
        }
        if (!skip) return 1;
    }
    if (ferror(m->f)) {
        lji_error(ctx, LJ_ERR_IO, "%s: reading '%s' failed", m->op, m->path);
        return -1;
    }
    return 0;
}

/* The bytes of m's file not read yet (INT64_MAX for a pipe). */
static int64_t mm_remaining(mm_file *m)
{
    if (m->size < 0) return INT64_MAX;
    long at = ftell(m->f);
    return at < 0 ? INT64_MAX : m->size - (int64_t)at;
}

/* Room for one more entry: the declared count at once when the file's
 * size has vouched for it (mm_header), else arrays that grow geometrically
 * as entries arrive, never beyond the declared count. */
static lj_status mm_grow(lj_context *ctx, const mm_file *m, mm_data *d)
{
    if (d->count < d->cap) return LJ_OK;
    int64_t cap = d->cap ? 2 * d->cap : m->size >= 0 ? d->declared : 1024;
    if (cap > d->declared) cap = d->declared;
    if (cap <= d->count) cap = d->count + 1;
    size_t nb = (size_t)cap * sizeof(double);
    double *tx = lji_realloc(ctx, d->tx, nb);
    if (tx) d->tx = tx;
    if (tx && d->coordinate) {
        int64_t *ti = lji_realloc(ctx, d->ti, (size_t)cap * sizeof(int64_t));
        if (ti) d->ti = ti;
        int64_t *tj = ti ? lji_realloc(ctx, d->tj, (size_t)cap * sizeof(int64_t)) : NULL;
        if (tj) d->tj = tj;
        if (!ti || !tj) tx = NULL;
    }
    if (!tx)
        return lji_error(ctx, LJ_ERR_NOMEM, "%s: '%s': out of memory after %" PRId64 " entries", m->op,
                         m->path, d->count);
    d->cap = cap;
    return LJ_OK;
}

static lj_status mm_header(lj_context *ctx, mm_file *m, mm_data *d)
{
    const char *op = m->op, *path = m->path;
    char w[5][64];
    int r = fgets(m->line, sizeof m->line, m->f) ? 1 : 0;
    m->lineno = 1;
    if (r) m->consumed += (int64_t)strlen(m->line);
    if (!r) return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is empty", op, path);
    if (sscanf(m->line, "%63s %63s %63s %63s %63s", w[0], w[1], w[2], w[3], w[4]) != 5 ||
        !lower_eq(w[0], "%%MatrixMarket") || !lower_eq(w[1], "matrix"))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' has no Matrix Market header", op, path);
    if (!strchr(m->line, '\n') && !feof(m->f))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': the header line is too long", op, path);
    if (lower_eq(w[2], "coordinate")) d->coordinate = true;
    else if (!lower_eq(w[2], "array"))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': unknown format '%s'", op, path, w[2]);
    if (lower_eq(w[3], "pattern") && d->coordinate) d->pattern = true;
    else if (!lower_eq(w[3], "real") && !lower_eq(w[3], "integer") && !lower_eq(w[3], "double"))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' holds %s values; lazyjac reads real ones", op,
                         path, w[3]);
    if (lower_eq(w[4], "symmetric")) d->symmetric = true;
    else if (lower_eq(w[4], "skew-symmetric")) d->symmetric = d->skew = true;
    else if (!lower_eq(w[4], "general"))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': unsupported symmetry '%s'", op, path, w[4]);
    if ((r = mm_next(ctx, m, true)) <= 0)
        return r < 0 ? ctx->status
                     : lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' ends before its size line", op, path);
    char extra[8];
    int got = d->coordinate ? sscanf(m->line, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %7s", &d->rows,
                                     &d->cols, &d->declared, extra)
                            : sscanf(m->line, "%" SCNd64 " %" SCNd64 " %7s", &d->rows, &d->cols, extra);
    int64_t total;
    /* sscanf saturates a number too large for int64 at INT64_MAX: refused */
    bool saturated = d->rows == INT64_MAX || d->cols == INT64_MAX || (d->coordinate && d->declared == INT64_MAX);
    if (got != (d->coordinate ? 3 : 2) || saturated || d->rows < 0 || d->cols < 0 ||
        !lji_size_ok(d->rows, d->cols, &total) ||
        (d->coordinate && (d->declared < 0 || d->declared > total)))
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad size line", op, path,
                         m->lineno);
    if (d->symmetric && d->rows != d->cols)
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s': symmetric matrix is not square " LJI_SHP, op,
                         path, d->rows, d->cols);
    if (!d->coordinate)
        d->declared = !d->symmetric ? total : d->rows * (d->rows + 1) / 2 - (d->skew ? d->rows : 0);
    /* every entry takes some bytes of the file: "1 1\n" at the least for a
     * pattern entry, "1 1 1\n" for a real one, "1\n" for an array value */
    int64_t least = d->coordinate ? (d->pattern ? 4 : 6) : 2, room = mm_remaining(m);
    if (room != INT64_MAX && d->declared > room / least + 1)
        return lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is truncated: it declares %" PRId64
                         " entries, but its remaining %" PRId64 " bytes hold at most %" PRId64,
                         op, path, d->declared, room, room / least + 1);
    return LJ_OK;
}

static lj_status mm_read(lj_context *ctx, const char *op, const char *path, mm_data *d)
{
    memset(d, 0, sizeof *d);
    if (!path) return lji_error(ctx, LJ_ERR_INVALID, "%s: NULL path", op);
    mm_file m = { .path = path, .op = op, .size = -1 };
    m.f = fopen(path, "r");
    if (!m.f) return lji_error(ctx, LJ_ERR_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(m.f), &sb) == 0 && S_ISREG(sb.st_mode)) m.size = (int64_t)sb.st_size;
    lj_status st = mm_header(ctx, &m, d);
    char extra[8];
    while (st == LJ_OK && d->count < d->declared) {
        int r = mm_next(ctx, &m, true);
        if (r <= 0) {
            st = r < 0 ? ctx->status
                       : lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is truncated: %" PRId64 " of %" PRId64
                                   " entries", op, path, d->count, d->declared);
            break;
        }
        if ((st = mm_grow(ctx, &m, d)) != LJ_OK) break;
        int64_t k = d->count;
        if (d->coordinate) {
            int64_t i, j;
            double v = 1.0;
            int n = d->pattern ? sscanf(m.line, "%" SCNd64 " %" SCNd64 " %7s", &i, &j, extra)
                               : sscanf(m.line, "%" SCNd64 " %" SCNd64 " %lf %7s", &i, &j, &v, extra);
            if (n != (d->pattern ? 2 : 3) || i < 1 || i > d->rows || j < 1 || j > d->cols ||
                !isfinite(v) || (d->symmetric && i < j) || (d->skew && i == j)) {
                st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad entry", op, path,
                               m.lineno);
                break;
            }
            d->ti[k] = i - 1;
            d->tj[k] = j - 1;
            d->tx[k] = v;
        } else if (sscanf(m.line, "%lf %7s", &d->tx[k], extra) != 1 || !isfinite(d->tx[k])) {
            st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": bad value", op, path,
                           m.lineno);
            break;
        }
        d->count++;
    }
    if (st == LJ_OK) {
        int r = mm_next(ctx, &m, true);
        if (r < 0) st = ctx->status;
        else if (r > 0)
            st = lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' line %" PRId64 ": more entries than declared",
                           op, path, m.lineno);
    }
    fclose(m.f);
    d->bytes = m.size >= 0 ? m.size : m.consumed;
    if (st != LJ_OK) mm_free(d);
    return st;
}

/* An array file's values (column by column; the lower triangle when
 * symmetric) as the dense rows×cols matrix: a new array. */
static double *mm_array_dense(lj_context *ctx, const char *op, mm_data *d)
{
    if (!d->symmetric) { /* the values are the matrix already */
        double *a = d->tx;
        d->tx = NULL;
        return a ? a : lji_calloc(ctx, 1, sizeof(double));
    }
    int64_t n = d->rows;
    double *a = lji_calloc(ctx, (size_t)(n > 0 ? n * n : 1), sizeof *a);
    if (!a) {
        lji_nomem(ctx, op);
        return NULL;
    }
    int64_t k = 0;
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = j + (d->skew ? 1 : 0); i < n; i++, k++) {
            a[i + j * n] = d->tx[k];
            if (i != j) a[j + i * n] = d->skew ? -d->tx[k] : d->tx[k];
        }
    return a;
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
    double *a = NULL;
    if (d.coordinate) { /* scattered into the dense matrix the caller asked for */
        int64_t cells = d.rows * d.cols;
        int64_t limit = lji_reader_structure_limit(d.bytes);
        if (limit < ((int64_t)1 << 30)) limit = (int64_t)1 << 30;
        if (cells <= limit / 8) a = lji_calloc(ctx, (size_t)(cells > 0 ? cells : 1), sizeof *a);
        if (!a)
            lji_error(ctx, LJ_ERR_NOMEM, "%s: '%s' is " LJI_SHP " with %" PRId64 " entries: its dense form "
                      "(%.3g GB) cannot be allocated%s", op, path, d.rows, d.cols, d.count,
                      (double)cells * 8e-9, cells <= limit / 8 ? "" : "; read it as a sparse matrix");
        for (int64_t k = 0; a && k < d.count; k++) {
            a[d.ti[k] + d.tj[k] * d.rows] += d.tx[k];
            if (d.symmetric && d.ti[k] != d.tj[k])
                a[d.tj[k] + d.ti[k] * d.rows] += d.skew ? -d.tx[k] : d.tx[k];
        }
    } else
        a = mm_array_dense(ctx, op, &d);
    mm_free(&d);
    if (!a) return ctx->status;
    *rows = d.rows;
    *cols = d.cols;
    *data = a;
    return LJ_OK;
}

/* An entry in its column's bucket; seq is its place in the file, so that
 * duplicates are summed in file order (as the dense reader sums them). */
typedef struct { int64_t i, seq; double x; } csc_entry;

static int cmp_entry(const void *x, const void *y)
{
    const csc_entry *a = x, *b = y;
    if (a->i != b->i) return (a->i > b->i) - (a->i < b->i);
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* CSC from triplets (ti, tj, tx; count entries; a symmetric matrix's
 * mirror entries added) in O(nnz + cols) memory: bucket by column, sort
 * each column by row, sum duplicates. */
static cholmod_sparse *csc_from_triplets(lj_context *ctx, const char *op, const char *path,
                                         const mm_data *d)
{
    int64_t ncol = d->cols, nz = 0;
    for (int64_t k = 0; k < d->count; k++) nz += (d->symmetric && d->ti[k] != d->tj[k]) ? 2 : 1;
    csc_entry *e = NULL;
    int64_t *cp = lji_calloc(ctx, (size_t)ncol + 2, sizeof *cp);
    e = cp ? lji_malloc(ctx, (size_t)(nz ? nz : 1) * sizeof *e) : NULL;
    cholmod_sparse *s = NULL;
    if (!cp || !e) {
        lji_error(ctx, LJ_ERR_NOMEM, "%s: '%s' " LJI_SHP " with %" PRId64 " entries: out of memory", op,
                  path, d->rows, d->cols, nz);
        goto done;
    }
    for (int64_t k = 0; k < d->count; k++) {
        cp[d->tj[k] + 2]++;
        if (d->symmetric && d->ti[k] != d->tj[k]) cp[d->ti[k] + 2]++;
    }
    for (int64_t j = 0; j < ncol; j++) cp[j + 2] += cp[j + 1];
    for (int64_t k = 0; k < d->count; k++) { /* cp[j+1] is the next free slot of column j */
        int64_t q = cp[d->tj[k] + 1]++;
        e[q] = (csc_entry){ d->ti[k], q, d->tx[k] };
        if (d->symmetric && d->ti[k] != d->tj[k]) {
            q = cp[d->ti[k] + 1]++;
            e[q] = (csc_entry){ d->tj[k], q, d->skew ? -d->tx[k] : d->tx[k] };
        }
    }
    /* now cp[j] .. cp[j+1] is column j; count each column once sorted */
    int64_t out = 0;
    for (int64_t j = 0; j < ncol; j++) {
        int64_t a = cp[j], b = cp[j + 1];
        bool sorted = true;
        for (int64_t q = a + 1; q < b && sorted; q++) sorted = e[q - 1].i < e[q].i;
        if (!sorted) qsort(e + a, (size_t)(b - a), sizeof *e, cmp_entry);
        for (int64_t q = a; q < b; q++) out += (q == a || e[q].i != e[q - 1].i);
    }
    if (!(s = lji_sparse_alloc(ctx, d->rows, ncol, out, op))) goto done;
    int64_t *sp = s->p, *si = s->i, w = 0;
    double *sx = s->x;
    for (int64_t j = 0; j < ncol; j++) {
        sp[j] = w;
        for (int64_t q = cp[j]; q < cp[j + 1]; q++) {
            if (q > cp[j] && e[q].i == si[w - 1]) {
                sx[w - 1] += e[q].x; /* a duplicate entry: summed */
                continue;
            }
            si[w] = e[q].i;
            sx[w++] = e[q].x;
        }
    }
    sp[ncol] = w;
    s->sorted = 1;
done:
    free(cp);
    free(e);
    return s;
}

/* CSC of a dense array's nonzeros. */
static cholmod_sparse *csc_from_dense(lj_context *ctx, const char *op, int64_t rows, int64_t cols,
                                      const double *a)
{
    int64_t nz = 0;
    for (int64_t q = 0; q < rows * cols; q++) nz += a[q] != 0.0;
    cholmod_sparse *s = lji_sparse_alloc(ctx, rows, cols, nz, op);
    if (!s) return NULL;
    int64_t *sp = s->p, *si = s->i, w = 0;
    double *sx = s->x;
    for (int64_t j = 0; j < cols; j++) {
        sp[j] = w;
        for (int64_t i = 0; i < rows; i++)
            if (a[i + j * rows] != 0.0) {
                si[w] = i;
                sx[w++] = a[i + j * rows];
            }
    }
    sp[cols] = w;
    return s;
}

cholmod_sparse *lj_read_sparse_mtx(lj_context *ctx, const char *path)
{
    const char *op = "read_mtx";
    if (!lji_ctx_ok(ctx)) return NULL;
    mm_data d;
    if (mm_read(ctx, op, path, &d) != LJ_OK) return NULL;
    cholmod_sparse *s = NULL;
    /* CSC needs a pointer a column: refuse where that is far more than the
     * file could justify (a very wide matrix with few entries, or an array
     * of no rows and very many columns, which holds no values at all) */
    int64_t bytes = d.bytes;
    if (d.cols >= lji_reader_structure_limit(bytes) / 8) /* cols + 1 pointers; cols may be INT64_MAX */
        lji_error(ctx, LJ_ERR_NOMEM, "%s: '%s' is " LJI_SHP " with %.0f %s: its CSC form "
                  "needs %.3g GB of column pointers, more than a file of %" PRId64 " bytes may take",
                  op, path, d.rows, d.cols, d.coordinate ? (double)d.count : (double)d.rows * (double)d.cols,
                  d.coordinate ? "entries" : "values", ((double)d.cols + 1.0) * 8e-9, bytes);
    else if (d.coordinate)
        s = csc_from_triplets(ctx, op, path, &d);
    else {
        double *a = mm_array_dense(ctx, op, &d);
        if (a) s = csc_from_dense(ctx, op, d.rows, d.cols, a);
        free(a);
    }
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

/* The whitespace-separated fields of s, up to max of them, into v: how
 * many there were, or -1 when one is not a plain decimal integer >= 0.
 * RBio reads a header field such as "8E8." as 8·10⁸ (and allocates that
 * much), where sscanf's %lld would stop at the 8: a header is checked
 * only as far as lazyjac reads its fields the way RBio does. */
static int rb_fields(const char *s, long long *v, int max)
{
    int n = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        if (*s == '\0' || *s == '\n' || *s == '\r') return n;
        if (n == max || !isdigit((unsigned char)*s)) return -1;
        char *end;
        errno = 0;
        v[n++] = strtoll(s, &end, 10);
        if (errno || (*end && !isspace((unsigned char)*end))) return -1;
        s = end;
    }
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
    long long cards[5], sz[4], nr = 0, nc = 0, nz = 0;
    int at = 0;
    bool ok = fgets(l1, sizeof l1, probe) && fgets(l2, sizeof l2, probe) && fgets(l3, sizeof l3, probe) &&
              fgets(l4, sizeof l4, probe) && rb_fields(l2, cards, 5) >= 3 &&
              sscanf(l3, " %3s%n", t, &at) == 1 && strlen(t) == 3 && rb_fields(l3 + at, sz, 4) >= 3 &&
              strchr("rRiIpPcC", t[0]) && strchr("uUsSzZrRhH", t[1]) && strchr("aAeE", t[2]);
    if (ok) nr = sz[0], nc = sz[1], nz = sz[2];
    struct stat sb;
    int64_t bytes = fstat(fileno(probe), &sb) == 0 && S_ISREG(sb.st_mode) ? (int64_t)sb.st_size : -1;
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
    /* RBio allocates what the header declares before it reads: each column
     * pointer, row index and value takes at least one byte of the file, and
     * its per-row and per-column arrays are bounded like every reader's */
    if (bytes >= 0 && (nc >= bytes || nz > (bytes - nc - 1) / 2)) {
        lji_error(ctx, LJ_ERR_FORMAT, "%s: '%s' is truncated: it declares %lld columns and %lld entries, "
                  "more than its %" PRId64 " bytes hold", op, path, nc, nz, bytes);
        return NULL;
    }
    int64_t limit = lji_reader_structure_limit(bytes) / 8;
    if (nr >= limit || nc >= limit) {
        lji_error(ctx, LJ_ERR_NOMEM, "%s: '%s' is (%lld×%lld): RBio's workspace for its rows and columns "
                  "needs %.3g GB, more than a file of %" PRId64 " bytes may take", op, path, nr, nc,
                  ((double)nr + (double)nc + 2) * 8e-9, bytes);
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
