/* lazyjac: the command. Type a matrix expression, get its structured
 * Jacobian, check it against finite differences, export it. Built on the
 * public API alone; the contract (options, formats, exit status) is the one
 * in DESIGN.md and lazyjac(1). */
#include <lazyjac.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "demo_data.h"

enum { EXIT_USAGE = 2, EXIT_FAIL = 1 };

static const char *usage_text =
    "usage: lazyjac demo [-o DIR]\n"
    "       lazyjac jacobian -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--format mtx|rb] [--print] [--check]\n"
    "       lazyjac gradient -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--print] [--check]\n"
    "       lazyjac hessian  -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--format mtx|rb] [--print] [--check]\n"
    "       lazyjac apply    -e EXPR|-f FILE -w VAR [DECL...] --vector FILE [--transpose|--hessian] [-o FILE]\n"
    "       lazyjac eval     -e EXPR|-f FILE [DECL...] [-o FILE]\n"
    "       -f FILE (or -f - for standard input) may stand for -e EXPR everywhere.\n"
    "DECL:  -d NAME=RxC     shape; values drawn from --seed N (default 1)\n"
    "       -v NAME=FILE    values (and shape) from a Matrix Market file; a coordinate\n"
    "                       file stays sparse (--dense NAME reads it dense)\n"
    "Run 'lazyjac COMMAND --help' for one command, 'lazyjac --version' for the version.\n";

static const char *help_demo =
    "lazyjac demo [-o DIR]\n"
    "  Runs the four seed problems on embedded values: prints each question, the\n"
    "  structured answer, its shape and nnz, the finite-difference check, and\n"
    "  writes each Jacobian (or gradient) as Matrix Market into DIR\n"
    "  (default: lazyjac-demo). Needs no input.\n";
static const char *help_jacobian =
    "lazyjac jacobian -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--format mtx|rb] [--print] [--check]\n"
    "  J = d vec(EXPR) / d vec(VAR), materialised exactly and written as Matrix\n"
    "  Market coordinate (1-based, real, general) or Rutherford-Boeing (--format rb)\n"
    "  to FILE, or to standard output when there is no -o and neither --print\n"
    "  nor --check is given.\n"
    "  --print   the structured form (Unicode, plain and LaTeX), shape, nnz,\n"
    "            apply cost and the operator tree\n"
    "  --check   the largest relative error against central finite differences\n"
    "  --seed N  seed for the values of -d declarations (default 1)\n"
    "  -f FILE   read EXPR from FILE (- for standard input) instead of -e\n";
static const char *help_gradient =
    "lazyjac gradient -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--print] [--check]\n"
    "  The gradient of a scalar (1×1) EXPR, in VAR's shape, computed as J^T·1\n"
    "  through the lazy operator, written as a Matrix Market array to FILE, or\n"
    "  to standard output when there is no -o and neither --print nor --check\n"
    "  is given. -f FILE reads EXPR from FILE (- for standard input).\n"
    "  --print   gradient = <expression>: the gradient derived symbolically (reverse\n"
    "            mode, simplified: tr(A*X*B) gives A^T·B^T), in Unicode, plain and\n"
    "            LaTeX, and its shape\n"
    "  --check   the largest relative error of J against central finite differences\n";
static const char *help_hessian =
    "lazyjac hessian -e EXPR|-f FILE -w VAR [DECL...] [-o FILE] [--format mtx|rb] [--print] [--check]\n"
    "  H = d vec(gradient) / d vec(VAR) of a scalar EXPR: the Jacobian of the\n"
    "  symbolic gradient, a structured operator (tr(X'*A*X) gives I ⊗ (A + A^T)),\n"
    "  materialised exactly and written like 'jacobian' writes J.\n"
    "  --print   the gradient expression, then H's structured form (Unicode,\n"
    "            plain and LaTeX), shape, nnz, apply cost and operator tree\n"
    "  --check   the largest relative error of H against central finite\n"
    "            differences of the gradient\n";
static const char *help_apply =
    "lazyjac apply -e EXPR|-f FILE -w VAR [DECL...] --vector FILE [--transpose|--hessian] [-o FILE]\n"
    "  J v (or J^T v with --transpose) for the column vector in the Matrix Market\n"
    "  file, through the lazy operator (J is never materialised), written as a\n"
    "  Matrix Market array. With --hessian, the Hessian-vector product H v of a\n"
    "  scalar EXPR, H never formed. -f FILE reads EXPR from FILE (- for standard input).\n";
static const char *help_eval =
    "lazyjac eval -e EXPR|-f FILE [DECL...] [-o FILE]\n"
    "  The value of EXPR, written as a Matrix Market array (coordinate when the\n"
    "  value is sparse). -f FILE reads EXPR from FILE (- for standard input).\n";

/* ---- errors ----------------------------------------------------------------------- */

static int die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("lazyjac: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return code;
}

static int exit_for(lj_status st)
{
    return (st == LJ_ERR_PARSE || st == LJ_ERR_NAME) ? EXIT_USAGE : EXIT_FAIL;
}

static int lib_error(lj_context *ctx)
{
    lj_status st = lj_context_status(ctx);
    return die(exit_for(st), "%s", lj_context_message(ctx));
}

/* ---- options ----------------------------------------------------------------------- */

typedef struct {
    const char *cmd, *expr, *file, *wrt, *out, *format, *vector;
    bool print, check, transpose, help, hessian;
    uint64_t seed;
    const char *dense[256];
    int ndense;
    const char *decl_kind[256];
    const char *decl[256];
    int ndecl;
} options;

static int parse_options(int argc, char **argv, options *o)
{
    memset(o, 0, sizeof *o);
    o->cmd = argv[1];
    o->seed = 1;
    o->format = "mtx";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        bool takes = !strcmp(a, "-e") || !strcmp(a, "-f") || !strcmp(a, "-w") || !strcmp(a, "-o") || !strcmp(a, "-d") ||
                     !strcmp(a, "-v") || !strcmp(a, "--format") || !strcmp(a, "--vector") ||
                     !strcmp(a, "--seed") || !strcmp(a, "--dense");
        if (takes && i + 1 >= argc) return die(EXIT_USAGE, "option '%s' needs a value", a);
        const char *v = takes ? argv[++i] : NULL;
        if (!strcmp(a, "-e") || !strcmp(a, "-f")) {
            if (o->expr || o->file) return die(EXIT_USAGE, "give the expression once: -e EXPR or -f FILE");
            if (a[1] == 'e') o->expr = v;
            else o->file = v;
        }
        else if (!strcmp(a, "-w")) o->wrt = v;
        else if (!strcmp(a, "-o")) o->out = v;
        else if (!strcmp(a, "--format")) o->format = v;
        else if (!strcmp(a, "--vector")) o->vector = v;
        else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (errno || *end || !*v || v[0] == '-') return die(EXIT_USAGE, "--seed needs a non-negative integer, not '%s'", v);
            o->seed = s;
        } else if (!strcmp(a, "-d") || !strcmp(a, "-v")) {
            if (o->ndecl == 256) return die(EXIT_USAGE, "too many declarations");
            o->decl_kind[o->ndecl] = a;
            o->decl[o->ndecl++] = v;
        } else if (!strcmp(a, "--dense")) {
            if (o->ndense == 256) return die(EXIT_USAGE, "too many --dense names");
            o->dense[o->ndense++] = v;
        } else if (!strcmp(a, "--print")) o->print = true;
        else if (!strcmp(a, "--check")) o->check = true;
        else if (!strcmp(a, "--transpose")) o->transpose = true;
        else if (!strcmp(a, "--hessian") && !strcmp(o->cmd, "apply")) o->hessian = true;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) o->help = true;
        else return die(EXIT_USAGE, "unknown option '%s' for '%s' (see 'lazyjac %s --help')", a, o->cmd, o->cmd);
    }
    return 0;
}

/* Flags that a command does not take are usage errors, not silently ignored. */
static int reject(const options *o, bool cond, const char *what)
{
    return cond ? die(EXIT_USAGE, "'%s' does not take %s", o->cmd, what) : 0;
}

/* ---- declarations ----------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static bool parse_dim(const char *s, const char **end, int64_t *v)
{
    char *e;
    errno = 0;
    if (*s < '0' || *s > '9') return false;
    long long x = strtoll(s, &e, 10);
    if (errno == ERANGE) {
        *v = -2; /* too large: reported as overflow */
        *end = e;
        return true;
    }
    *v = x;
    *end = e;
    return true;
}

/* A Matrix Market coordinate file (by its banner); anything else, or a
 * file that cannot be read, goes to the dense reader, which says why. */
static bool coordinate_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char line[256] = "";
    bool coord = fgets(line, sizeof line, f) && !strncmp(line, "%%MatrixMarket", 14);
    fclose(f);
    for (char *c = line; *c; c++) *c = (char)tolower((unsigned char)*c);
    return coord && strstr(line, " coordinate");
}

static bool wants_dense(const options *o, const char *name)
{
    for (int i = 0; i < o->ndense; i++)
        if (!strcmp(o->dense[i], name)) return true;
    return false;
}

static int declare(lj_context *ctx, lj_symtab *t, const options *o)
{
    for (int i = 0; i < o->ndense; i++) {
        bool found = false;
        for (int k = 0; k < o->ndecl && !found; k++) {
            const char *d = o->decl[k], *eq = strchr(d, '=');
            found = o->decl_kind[k][1] == 'v' && eq && (size_t)(eq - d) == strlen(o->dense[i]) &&
                    !strncmp(d, o->dense[i], (size_t)(eq - d));
        }
        if (!found) return die(EXIT_USAGE, "--dense %s: no '-v %s=FILE' declaration", o->dense[i], o->dense[i]);
    }
    uint64_t rng = o->seed;
    for (int i = 0; i < o->ndecl; i++) {
        const char *d = o->decl[i];
        const char *eq = strchr(d, '=');
        if (!eq || eq == d || !eq[1])
            return die(EXIT_USAGE, "declaration '%s %s' must read NAME=%s", o->decl_kind[i], d,
                       o->decl_kind[i][1] == 'd' ? "RxC" : "FILE");
        char name[128];
        if ((size_t)(eq - d) >= sizeof name) return die(EXIT_USAGE, "name too long in '%s'", d);
        memcpy(name, d, (size_t)(eq - d));
        name[eq - d] = '\0';
        if (lj_symtab_get(t, name)) return die(EXIT_USAGE, "'%s' is declared twice", name);
        lj_expr *e = NULL;
        if (o->decl_kind[i][1] == 'd') {
            int64_t r, c;
            const char *p = eq + 1, *q;
            if (!parse_dim(p, &q, &r) || (*q != 'x' && *q != 'X') || !parse_dim(q + 1, &p, &c) || *p)
                return die(EXIT_USAGE, "declaration '-d %s': shape must read RxC, like 3x4", d);
            if (r < 0 || c < 0 || (r > 0 && c > INT64_MAX / r) || r * c > ((int64_t)1 << 40))
                return die(EXIT_FAIL, "declaration '-d %s': the size %s overflows", d, eq + 1);
            /* refused before any memory is touched when the machine cannot
             * hold it (an allocator that overcommits would accept it) */
            double gb = (double)r * (double)c * 8e-9;
            struct sysinfo si;
            bool fits = sysinfo(&si) != 0 ||
                        (double)r * (double)c * 8.0 <=
                            ((double)si.totalram + (double)si.totalswap) * (double)si.mem_unit;
            double *v = fits ? malloc(sizeof *v * (size_t)(r * c > 0 ? r * c : 1)) : NULL;
            if (!v)
                return die(EXIT_FAIL, "declaration '-d %s': its %.3g GB of values cannot be allocated%s", d,
                           gb, fits ? "" : " (more than this machine's memory)");
            for (int64_t k = 0; k < r * c; k++)
                v[k] = (double)(splitmix(&rng) >> 11) * (2.0 / 9007199254740992.0) - 1.0;
            e = lj_expr_var(ctx, name, r, c, v);
            free(v);
        } else if (coordinate_file(eq + 1) && !wants_dense(o, name)) { /* stays sparse */
            cholmod_sparse *S = lj_read_sparse_mtx(ctx, eq + 1);
            if (!S) return die(EXIT_FAIL, "%s (declaring '%s')", lj_context_message(ctx), name);
            e = lj_expr_var_sparse(ctx, name, S);
            lj_sparse_free(ctx, &S);
        } else {
            int64_t r, c;
            double *v;
            if (lj_read_dense_mtx(ctx, eq + 1, &r, &c, &v) != LJ_OK)
                return die(EXIT_FAIL, "%s (declaring '%s')", lj_context_message(ctx), name);
            e = lj_expr_var(ctx, name, r, c, v);
            lj_free(v);
        }
        if (!e) return lib_error(ctx);
        lj_status st = lj_symtab_add(ctx, t, e);
        lj_expr_free(&e);
        if (st != LJ_OK) return lib_error(ctx);
    }
    return 0;
}

/* The text of -f FILE (standard input for "-"): a new string, or NULL after
 * reporting why. */
static char *read_text(const char *path, int *rc)
{
    bool in = !strcmp(path, "-");
    FILE *f = in ? stdin : fopen(path, "rb");
    if (!f) {
        *rc = die(EXIT_FAIL, "-f %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t n = 0, cap = 1 << 16;
    char *s = malloc(cap);
    while (s) {
        if (n + 1 == cap) {
            char *t = cap < SIZE_MAX / 2 ? realloc(s, cap * 2) : NULL;
            if (!t) {
                free(s);
                s = NULL;
                break;
            }
            s = t;
            cap *= 2;
        }
        size_t got = fread(s + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    bool err = ferror(f) != 0;
    if (!in) fclose(f);
    if (!s) {
        *rc = die(EXIT_FAIL, "-f %s: out of memory", path);
        return NULL;
    }
    if (err) {
        free(s);
        *rc = die(EXIT_FAIL, "-f %s: read error", path);
        return NULL;
    }
    s[n] = '\0';
    if (strlen(s) != n) {
        free(s);
        *rc = die(EXIT_USAGE, "-f %s: the file holds a NUL byte", path);
        return NULL;
    }
    return s;
}

/* Parses text; on failure reports the message, prefixed with FILE:LINE:COL
 * when the text came from a file, and the caret under the offending place. */
static int parse_expr_from(lj_context *ctx, const lj_symtab *t, const char *text, const char *file,
                           lj_expr **out)
{
    int64_t pos;
    *out = lj_parse(ctx, text, t, &pos);
    if (*out) return 0;
    int code = exit_for(lj_context_status(ctx));
    if (file && pos >= 0) {
        int64_t line = 1, col = 1;
        for (int64_t i = 0; i < pos; i++) {
            if (text[i] == '\n') line++, col = 1;
            else if (((unsigned char)text[i] & 0xC0) != 0x80) col++;
        }
        die(code, "%s:%" PRId64 ":%" PRId64 ": %s", strcmp(file, "-") ? file : "<stdin>", line, col,
            lj_context_message(ctx));
    } else
        die(code, "%s", lj_context_message(ctx));
    if (pos >= 0) {
        char *c = lj_caret(text, pos);
        if (c) fprintf(stderr, "%s\n", c);
        lj_free(c);
    }
    return code;
}

static int parse_expr(lj_context *ctx, const lj_symtab *t, const char *text, lj_expr **out)
{
    return parse_expr_from(ctx, t, text, NULL, out);
}

/* ---- output ------------------------------------------------------------------------ */

static bool to_stdout(const char *out)
{
    return !out || !strcmp(out, "-");
}

/* Matrix Market array on standard output (files go through the library,
 * which writes to a temporary name and renames). */
static int write_array(lj_context *ctx, const char *out, int64_t r, int64_t c, const double *v)
{
    if (!to_stdout(out)) return lj_write_dense_mtx(ctx, r, c, v, r > 0 ? r : 1, out) == LJ_OK ? 0 : lib_error(ctx);
    printf("%%%%MatrixMarket matrix array real general\n%" PRId64 " %" PRId64 "\n", r, c);
    for (int64_t k = 0; k < r * c; k++) printf("%.17g\n", v[k]);
    return fflush(stdout) == 0 ? 0 : die(EXIT_FAIL, "writing standard output failed");
}

/* Matrix Market coordinate: to standard output here, to a file through the
 * library (a temporary name, renamed). */
static int write_sparse(lj_context *ctx, const char *out, const cholmod_sparse *S)
{
    if (!to_stdout(out)) {
        lj_op *op = lj_op_sparse(ctx, S, NULL);
        lj_status st = op ? lj_op_write_mtx(ctx, op, out) : lj_context_status(ctx);
        lj_op_free(&op);
        return st == LJ_OK ? 0 : lib_error(ctx);
    }
    const int64_t *p = S->p, *ii = S->i;
    const double *x = S->x;
    printf("%%%%MatrixMarket matrix coordinate real general\n%zu %zu %" PRId64 "\n", S->nrow, S->ncol,
           p[S->ncol]);
    for (size_t j = 0; j < S->ncol; j++)
        for (int64_t q = p[j]; q < p[j + 1]; q++) printf("%" PRId64 " %zu %.17g\n", ii[q] + 1, j + 1, x[q]);
    return fflush(stdout) == 0 ? 0 : die(EXIT_FAIL, "writing standard output failed");
}

/* Materialisation (and the writing that includes it) runs in a worker
 * thread, so that a long one shows its progress on standard error when that
 * is a terminal. */
typedef struct {
    lj_context *ctx;
    const lj_op *J;
    const options *o;
    cholmod_sparse *S; /* standard output: the matrix to print */
    lj_status st;
    volatile int done;
} mat_job;

static void *materialise(void *arg)
{
    mat_job *m = arg;
    const options *o = m->o;
    if (!strcmp(o->format, "rb"))
        m->st = lj_op_write_rb(m->ctx, m->J, o->out, "lazyjac Jacobian", "lazyjac");
    else if (!to_stdout(o->out))
        m->st = lj_op_write_mtx(m->ctx, m->J, o->out);
    else {
        m->S = lj_op_to_sparse(m->ctx, m->J);
        m->st = m->S ? LJ_OK : lj_context_status(m->ctx);
    }
    m->done = 1;
    return NULL;
}

static lj_status materialise_with_progress(mat_job *job)
{
    pthread_t th;
    if (pthread_create(&th, NULL, materialise, job) != 0) {
        materialise(job);
        return job->st;
    }
    bool tty = isatty(2);
    struct timespec t0, now, nap = { 0, 50 * 1000 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int shown = 0;
    int exact = 0;
    int64_t nz = -1;
    while (!job->done) {
        nanosleep(&nap, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
        double el = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
        if (tty && el >= 1.0 && (int)el > shown) {
            if (nz < 0) {
                lj_context *c2 = lj_context_new(); /* the worker owns ctx */
                nz = lj_op_nnz(c2, job->J, &exact);
                lj_context_free(&c2);
            }
            shown = (int)el;
            fprintf(stderr, "\rlazyjac: materialising J (%" PRId64 "×%" PRId64 ", %s%" PRId64 " entries): %ds",
                    lj_op_rows(job->J), lj_op_cols(job->J), exact ? "" : "≤", nz, shown);
        }
    }
    pthread_join(th, NULL);
    if (shown) fprintf(stderr, "\n");
    return job->st;
}

static int write_jacobian(lj_context *ctx, const lj_op *J, const options *o)
{
    if (!strcmp(o->format, "rb") && to_stdout(o->out)) return die(EXIT_USAGE, "--format rb needs -o FILE");
    mat_job job = { ctx, J, o, NULL, LJ_OK, 0 };
    if (materialise_with_progress(&job) != LJ_OK) return lib_error(ctx);
    if (!job.S) return 0; /* written to the file */
    cholmod_sparse *S = job.S;
    int rc = write_sparse(ctx, NULL, S);
    lj_sparse_free(ctx, &S);
    return rc;
}

static void print_report(lj_context *ctx, const lj_op *J, const char *name, FILE *f)
{
    char *u = lj_op_print(ctx, J, LJ_PRINT_UNICODE), *pl = lj_op_print(ctx, J, LJ_PRINT_PLAIN);
    char *lx = lj_op_print(ctx, J, LJ_PRINT_LATEX);
    char *tree = lj_op_tree(ctx, J);
    int exact;
    int64_t nz = lj_op_nnz(ctx, J, &exact);
    double flops = 0, bytes = 0;
    lj_op_cost(ctx, J, &flops, &bytes);
    fprintf(f, "%s = %s\nplain: %s\nlatex: %s\nshape: %" PRId64 "×%" PRId64 "\nnnz: %s%" PRId64 "\n",
            name, u ? u : "?", pl ? pl : "?", lx ? lx : "?", lj_op_rows(J), lj_op_cols(J), exact ? "" : "≤ ", nz);
    fprintf(f, "apply cost: %.4g flops, %.4g bytes per vector\ntree:\n%s", flops, bytes, tree ? tree : "");
    lj_free(u);
    lj_free(pl);
    lj_free(lx);
    lj_free(tree);
}

/* ---- commands ---------------------------------------------------------------------- */

typedef struct {
    lj_context *ctx;
    lj_symtab *t;
    lj_expr *f, *x;
    char *text; /* the expression read with -f */
} session;

static void session_end(session *s)
{
    free(s->text);
    lj_expr_free(&s->f);
    lj_symtab_free(&s->t);
    lj_context_free(&s->ctx);
}

/* Declarations, the expression, and the variable -w names. */
static int session_begin(session *s, const options *o, bool need_var)
{
    memset(s, 0, sizeof *s);
    if (!o->expr && !o->file) return die(EXIT_USAGE, "'%s' needs -e EXPR or -f FILE", o->cmd);
    if (need_var && !o->wrt) return die(EXIT_USAGE, "'%s' needs -w VAR", o->cmd);
    s->ctx = lj_context_new();
    if (!s->ctx) return die(EXIT_FAIL, "out of memory");
    s->t = lj_symtab_new(s->ctx);
    if (!s->t) return lib_error(s->ctx);
    int rc = declare(s->ctx, s->t, o);
    if (rc) return rc;
    if (need_var) {
        s->x = lj_symtab_get(s->t, o->wrt);
        if (!s->x) return die(EXIT_USAGE, "-w %s: '%s' is not declared", o->wrt, o->wrt);
    }
    if (o->file) {
        int rc2 = 0;
        if (!(s->text = read_text(o->file, &rc2))) return rc2;
    }
    return parse_expr_from(s->ctx, s->t, o->file ? s->text : o->expr, o->file, &s->f);
}

/* jacobian and hessian: the output format, no --vector or --transpose, the session */
static int matrix_command_begin(const options *o, session *s)
{
    memset(s, 0, sizeof *s);
    if (strcmp(o->format, "mtx") && strcmp(o->format, "rb"))
        return die(EXIT_USAGE, "--format must be mtx or rb, not '%s'", o->format);
    int rc;
    if ((rc = reject(o, o->vector != NULL, "--vector")) || (rc = reject(o, o->transpose, "--transpose"))) return rc;
    return session_begin(s, o, true);
}

/* --check: J of e against central differences */
static int fd_report(lj_context *ctx, const lj_expr *e, lj_expr *x, const lj_op *J)
{
    double maxrel, fro;
    if (lj_expr_fd_check(ctx, e, x, J, 0, &maxrel, &fro) != LJ_OK) return lib_error(ctx);
    printf("finite-difference check: largest relative error %.3e (Frobenius %.3e)\n", maxrel, fro);
    return 0;
}

static int cmd_jacobian(const options *o)
{
    session s;
    int rc = matrix_command_begin(o, &s);
    lj_op *J = NULL;
    if (!rc) {
        J = lj_expr_jacobian(s.ctx, s.f, s.x);
        if (!J) rc = lib_error(s.ctx);
    }
    if (!rc && o->print) print_report(s.ctx, J, "J", stdout);
    if (!rc && o->check) rc = fd_report(s.ctx, s.f, s.x, J);
    if (!rc && (o->out || (!o->print && !o->check))) rc = write_jacobian(s.ctx, J, o);
    lj_op_free(&J);
    session_end(&s);
    return rc;
}

static int cmd_gradient(const options *o)
{
    int rc;
    if ((rc = reject(o, o->vector != NULL, "--vector")) || (rc = reject(o, o->transpose, "--transpose")) ||
        (rc = reject(o, strcmp(o->format, "mtx") != 0, "--format")))
        return rc;
    session s;
    rc = session_begin(&s, o, true);
    if (!rc && (lj_expr_rows(s.f) != 1 || lj_expr_cols(s.f) != 1))
        rc = die(EXIT_FAIL, "gradient: expression is (%" PRId64 "×%" PRId64 "), not a scalar", lj_expr_rows(s.f),
                 lj_expr_cols(s.f));
    int64_t m = lj_expr_rows(s.x), n = lj_expr_cols(s.x);
    lj_op *J = NULL;
    if (!rc && o->check && !(J = lj_expr_jacobian(s.ctx, s.f, s.x))) rc = lib_error(s.ctx);
    bool sv = !rc && lj_expr_is_sparse(s.x);
    if (!rc && o->print) { /* the gradient as an expression, in the variable's shape (on its pattern) */
        lj_expr *ge = lj_expr_gradient_expr(s.ctx, s.f, s.x);
        char *u = ge ? lj_expr_print_math(s.ctx, ge, s.x, LJ_PRINT_UNICODE) : NULL;
        char *pl = u ? lj_expr_print_math(s.ctx, ge, s.x, LJ_PRINT_PLAIN) : NULL;
        char *lx = pl ? lj_expr_print_math(s.ctx, ge, s.x, LJ_PRINT_LATEX) : NULL;
        if (!lx) rc = lib_error(s.ctx);
        else {
            printf("gradient = %s\nplain: %s\nlatex: %s\nshape: %" PRId64 "×%" PRId64, u, pl, lx, m, n);
            if (sv) printf(", on the %" PRId64 " stored entries of %s", lj_expr_nvalues(s.x), o->wrt);
            printf("\n");
        }
        lj_free(u);
        lj_free(pl);
        lj_free(lx);
        lj_expr_free(&ge);
    }
    if (!rc && o->check) rc = fd_report(s.ctx, s.f, s.x, J);
    double *g = NULL;
    if (!rc && (o->out || (!o->print && !o->check))) {
        int64_t nv = lj_expr_nvalues(s.x);
        g = malloc(sizeof *g * (size_t)(nv > 0 ? nv : 1));
        if (!g) rc = die(EXIT_FAIL, "out of memory");
        else if (lj_expr_gradient(s.ctx, s.f, s.x, g) != LJ_OK) rc = lib_error(s.ctx);
        else if (sv) { /* on the variable's pattern */
            cholmod_sparse *S = lj_expr_eval_sparse(s.ctx, s.x);
            if (!S) rc = lib_error(s.ctx);
            else {
                memcpy(S->x, g, sizeof *g * (size_t)nv);
                rc = write_sparse(s.ctx, o->out, S);
            }
            lj_sparse_free(s.ctx, &S);
        } else
            rc = write_array(s.ctx, o->out, m, n, g);
    }
    free(g);
    lj_op_free(&J);
    session_end(&s);
    return rc;
}

static int cmd_hessian(const options *o)
{
    session s;
    int rc = matrix_command_begin(o, &s);
    if (!rc && (lj_expr_rows(s.f) != 1 || lj_expr_cols(s.f) != 1))
        rc = die(EXIT_FAIL, "hessian: expression is (%" PRId64 "×%" PRId64 "), not a scalar", lj_expr_rows(s.f),
                 lj_expr_cols(s.f));
    lj_op *H = NULL;
    lj_expr *g = NULL;
    if (!rc && (!(g = lj_expr_gradient_expr(s.ctx, s.f, s.x)) || !(H = lj_expr_hessian(s.ctx, s.f, s.x))))
        rc = lib_error(s.ctx);
    if (!rc && o->print) {
        char *gu = lj_expr_print_math(s.ctx, g, s.x, LJ_PRINT_UNICODE);
        if (!gu) rc = lib_error(s.ctx);
        else printf("gradient = %s\n", gu);
        lj_free(gu);
        if (!rc) print_report(s.ctx, H, "H", stdout);
    }
    if (!rc && o->check) rc = fd_report(s.ctx, g, s.x, H); /* against differences of the gradient */
    if (!rc && (o->out || (!o->print && !o->check))) rc = write_jacobian(s.ctx, H, o);
    lj_expr_free(&g);
    lj_op_free(&H);
    session_end(&s);
    return rc;
}

static int cmd_apply(const options *o)
{
    int rc;
    if ((rc = reject(o, o->print || o->check, "--print or --check")) ||
        (rc = reject(o, strcmp(o->format, "mtx") != 0, "--format")))
        return rc;
    if (!o->vector) return die(EXIT_USAGE, "'apply' needs --vector FILE");
    session s;
    rc = session_begin(&s, o, true);
    lj_op *J = NULL;
    double *v = NULL, *y = NULL;
    if (!rc && o->hessian && (lj_expr_rows(s.f) != 1 || lj_expr_cols(s.f) != 1))
        rc = die(EXIT_FAIL, "apply --hessian: expression is (%" PRId64 "×%" PRId64 "), not a scalar",
                 lj_expr_rows(s.f), lj_expr_cols(s.f));
    if (!rc) {
        J = o->hessian ? lj_expr_hessian(s.ctx, s.f, s.x) : lj_expr_jacobian(s.ctx, s.f, s.x);
        if (!J) rc = lib_error(s.ctx);
    }
    if (!rc) {
        int64_t r, c, in = o->transpose ? lj_op_rows(J) : lj_op_cols(J);
        int64_t out = o->transpose ? lj_op_cols(J) : lj_op_rows(J);
        if (lj_read_dense_mtx(s.ctx, o->vector, &r, &c, &v) != LJ_OK) rc = lib_error(s.ctx);
        else if (c != 1 || r != in)
            rc = die(EXIT_FAIL, "apply: the vector in '%s' is (%" PRId64 "×%" PRId64 "); %s needs (%" PRId64 "×1)",
                     o->vector, r, c, o->hessian ? (o->transpose ? "H^T" : "H") : o->transpose ? "J^T" : "J", in);
        else if (!(y = malloc(sizeof *y * (size_t)(out > 0 ? out : 1))))
            rc = die(EXIT_FAIL, "out of memory");
        else if (lj_op_apply(s.ctx, J, o->transpose, 1.0, v, 0.0, y) != LJ_OK)
            rc = lib_error(s.ctx);
        else
            rc = write_array(s.ctx, o->out, out, 1, y);
    }
    lj_free(v);
    free(y);
    lj_op_free(&J);
    session_end(&s);
    return rc;
}

static int cmd_eval(const options *o)
{
    int rc;
    if ((rc = reject(o, o->wrt != NULL, "-w")) || (rc = reject(o, o->vector != NULL, "--vector")) ||
        (rc = reject(o, o->transpose || o->print || o->check, "--transpose, --print or --check")) ||
        (rc = reject(o, strcmp(o->format, "mtx") != 0, "--format")))
        return rc;
    session s;
    rc = session_begin(&s, o, false);
    double *v = NULL;
    int64_t r, c;
    if (!rc && lj_expr_is_sparse(s.f)) { /* a sparse value: coordinate */
        cholmod_sparse *S = lj_expr_eval_sparse(s.ctx, s.f);
        rc = S ? write_sparse(s.ctx, o->out, S) : lib_error(s.ctx);
        lj_sparse_free(s.ctx, &S);
    } else if (!rc) {
        if (lj_expr_eval(s.ctx, s.f, &r, &c, &v) != LJ_OK) rc = lib_error(s.ctx);
        else rc = write_array(s.ctx, o->out, r, c, v);
    }
    lj_free(v);
    session_end(&s);
    return rc;
}

/* ---- demo -------------------------------------------------------------------------- */

typedef struct {
    const char *id, *question, *expr, *wrt, *answer;
    const demo_matrix *m;
    int nm;
    bool gradient;
} demo_case;

static int cmd_demo(const options *o)
{
    int rc;
    if ((rc = reject(o, o->expr || o->file || o->wrt || o->vector || o->ndecl,
                     "-e, -f, -w, --vector or declarations")) ||
        (rc = reject(o, o->print || o->check || o->transpose, "--print, --check or --transpose")))
        return rc;
    const demo_case cases[] = {
        { "seed000", "Derivative of W (A ∘ B) with respect to A; W 4×3, A and B 3×5", "W*(A.*B)", "A",
          "(I_n ⊗ W)·Diag(vec B)", demo_seed000, 3, false },
        { "seed001", "Derivative of (x x^T) ∘ A with respect to x; x 4×1, A 4×4", "(x*x').*A", "x",
          "Diag(vec A)·((x ⊗ I_K) + (I_K ⊗ x))", demo_seed001, 2, false },
        { "seed002", "Gradient of 1_p^T (Q ∘ W) b with respect to Q; Q and W 3×4, b 4×1", "ones'*(Q.*W)*b",
          "Q", "(1_p b^T) ∘ W", demo_seed002, 4, true },
        { "seed003", "Derivative of A H W with respect to H; A 5×5, H 5×3, W 3×2", "A*H*W", "H", "W^T ⊗ A",
          demo_seed003, 3, false },
    };
    const char *dir = o->out ? o->out : "lazyjac-demo";
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return die(EXIT_FAIL, "demo: cannot create '%s': %s", dir, strerror(errno));
    lj_context *ctx = lj_context_new();
    if (!ctx) return die(EXIT_FAIL, "out of memory");
    int failures = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] && !rc; k++) {
        const demo_case *c = &cases[k];
        lj_symtab *t = lj_symtab_new(ctx);
        for (int i = 0; i < c->nm && t; i++) {
            lj_expr *e = lj_expr_var(ctx, c->m[i].name, c->m[i].rows, c->m[i].cols, c->m[i].v);
            if (!e || lj_symtab_add(ctx, t, e) != LJ_OK) rc = lib_error(ctx);
            lj_expr_free(&e);
        }
        lj_expr *f = NULL, *x = lj_symtab_get(t, c->wrt);
        lj_op *J = NULL;
        if (!rc) rc = parse_expr(ctx, t, c->expr, &f);
        if (!rc && !(J = lj_expr_jacobian(ctx, f, x))) rc = lib_error(ctx);
        char *form = NULL, path[1024];
        double maxrel = NAN, fro;
        if (!rc) {
            int64_t m = lj_expr_rows(x), n = lj_expr_cols(x);
            form = c->gradient ? lj_op_print_gradient(ctx, J, m, n, LJ_PRINT_UNICODE) : lj_op_print(ctx, J, LJ_PRINT_UNICODE);
            if (!form) rc = lib_error(ctx);
            else if (lj_expr_fd_check(ctx, f, x, J, 0, &maxrel, &fro) != LJ_OK) rc = lib_error(ctx);
        }
        if (!rc) {
            snprintf(path, sizeof path, "%s/%s-%s.mtx", dir, c->id, c->gradient ? "gradient" : "jacobian");
            if (c->gradient) {
                int64_t m = lj_expr_rows(x), n = lj_expr_cols(x);
                double *g = malloc(sizeof *g * (size_t)(m * n));
                if (!g || lj_expr_gradient(ctx, f, x, g) != LJ_OK ||
                    lj_write_dense_mtx(ctx, m, n, g, m, path) != LJ_OK)
                    rc = g ? lib_error(ctx) : die(EXIT_FAIL, "out of memory");
                free(g);
            } else if (lj_op_write_mtx(ctx, J, path) != LJ_OK)
                rc = lib_error(ctx);
        }
        if (!rc) {
            int exact;
            int64_t nz = lj_op_nnz(ctx, J, &exact);
            bool ok = maxrel < 1e-6;
            failures += !ok;
            printf("[%s] %s\n", c->id, c->question);
            printf("  expression:      %s   (with respect to %s)\n", c->expr, c->wrt);
            printf("  accepted answer: %s\n", c->answer);
            printf("  lazyjac:         %s%s\n", c->gradient ? "gradient = " : "J = ", form);
            printf("  J: %" PRId64 "×%" PRId64 ", nnz %s%" PRId64 "\n", lj_op_rows(J), lj_op_cols(J),
                   exact ? "" : "≤ ", nz);
            printf("  finite differences: largest relative error %.2e (%s)\n", maxrel, ok ? "ok" : "FAILED");
            printf("  wrote %s\n\n", path);
        }
        lj_free(form);
        lj_op_free(&J);
        lj_expr_free(&f);
        lj_symtab_free(&t);
    }
    lj_context_free(&ctx);
    if (!rc && failures) rc = die(EXIT_FAIL, "demo: %d finite-difference check(s) failed", failures);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("lazyjac %s\n", lj_version_string());
        return 0;
    }
    static const struct { const char *name, *help; int (*run)(const options *); } cmds[] = {
        { "demo", NULL, cmd_demo }, { "jacobian", NULL, cmd_jacobian }, { "gradient", NULL, cmd_gradient },
        { "hessian", NULL, cmd_hessian }, { "apply", NULL, cmd_apply }, { "eval", NULL, cmd_eval },
    };
    const char *helps[] = { help_demo, help_jacobian, help_gradient, help_hessian, help_apply, help_eval };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(cmd, cmds[i].name)) continue;
        options o;
        int rc = parse_options(argc, argv, &o);
        if (rc) return rc;
        if (o.help) {
            fputs(helps[i], stdout);
            return 0;
        }
        return cmds[i].run(&o);
    }
    die(EXIT_USAGE, "unknown command '%s'", cmd);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}
