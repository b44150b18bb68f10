/* Materialisation and construction benchmarks, printed as ratios measured
 * in this one run:
 *   1. Kronecker materialisation throughput (nnz per second) on one and two
 *      threads, into fresh memory and into the arrays of the matrix freed
 *      before, against memset of the bytes it writes (an index and a value
 *      per entry) into fresh memory, with and without huge pages
 *   2. product materialisation (cholmod_l_ssmult chain) time against the
 *      flop count of the product (time per multiply-add)
 *   3. building the Jacobian of an expression with N nodes: a long chain and
 *      a wide sum, time per node for growing N (flat means linear)
 *   4. a Jacobian plan's evaluation (J and the value) against evaluating
 *      the value alone, for the seeds' expressions
 *   5. a one-off Jacobian that holds values computed on the way,
 *      (A·X)∘(B·X), built, against evaluating the expression (the same
 *      two GEMMs)
 * Usage: bench_build [quick] */
#define _DEFAULT_SOURCE /* MADV_HUGEPAGE */
#include <lazyjac.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* The benchmark's own huge-page memory for its reference copy, as
 * lazyjac allocates its large results: 2 MiB aligned, advised whole. */
static void *malloc_huge(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, (size_t)2 << 20, n)) return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, n, MADV_HUGEPAGE);
#endif
    return p;
}

static void die(lj_context *ctx)
{
    fprintf(stderr, "bench_build: %s\n", lj_context_message(ctx));
    exit(1);
}

/* A random sparse operator of the given density. */
static lj_op *rand_sparse(lj_context *ctx, int64_t r, int64_t c, double dens, unsigned *s, const char *label)
{
    cholmod_common *cc = lj_context_cholmod(ctx);
    int64_t cap = (int64_t)((double)(r * c) * dens * 1.5) + c + 16;
    cholmod_sparse *S = cholmod_l_allocate_sparse((size_t)r, (size_t)c, (size_t)cap, 1, 1, 0, CHOLMOD_REAL, cc);
    int64_t *p = S->p, *ii = S->i, q = 0;
    double *x = S->x;
    for (int64_t j = 0; j < c; j++) {
        p[j] = q;
        for (int64_t i = 0; i < r && q < cap; i++) {
            *s = *s * 1664525u + 1013904223u;
            if ((double)(*s >> 8) / 16777216.0 < dens) {
                ii[q] = i;
                x[q++] = (double)(*s & 255) / 128.0 - 1.0;
            }
        }
    }
    p[c] = q;
    lj_op *a = lj_op_sparse(ctx, S, label);
    cholmod_l_free_sparse(&S, cc);
    return a;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && !strcmp(argv[1], "quick");
    lj_context *ctx = lj_context_new();
    unsigned seed = 11;
    printf("lazyjac %s materialisation and construction benchmarks\n\n", lj_version_string());

    printf("1. Kronecker materialisation A ⊗ B (A, B n×n, 5%% dense): throughput on one and two threads,\n"
           "   into fresh memory (lj_context_trim before each run) and again (into the arrays lj_sparse_free\n"
           "   kept from the run before, as in a solver's loop), against filling the same bytes (16 per entry,\n"
           "   memset) into fresh memory with 4 KiB pages and with huge pages (2 MiB aligned, as lazyjac\n"
           "   allocates large results); best of three runs each, in M entries a second\n");
    /* OpenBLAS's idle pool spins for a while after start-up, and on the
     * cores it shares with lazyjac's two threads a parallel region waited
     * for a scheduler time slice (README, threads); the library's default
     * count avoids that, the two-thread columns here ask for two */
    const char *ob = getenv("OPENBLAS_NUM_THREADS");
    if (!ob || strcmp(ob, "1"))
        printf("   (OPENBLAS_NUM_THREADS is not 1: OpenBLAS's idle threads may stall the two-thread columns)\n");
    printf("   %5s %12s %9s %9s %9s %9s %9s %9s %10s %10s\n", "n", "nnz", "1T fresh", "1T again", "2T fresh",
           "2T again", "2T/1T fr", "2T/1T ag", "4K memset", "2M memset");
    int ks[] = { 100, 290, 580 };
    for (int si = 0; si < (quick ? 2 : 3); si++) {
        lj_op *a = rand_sparse(ctx, ks[si], ks[si], 0.05, &seed, "A");
        lj_op *b = rand_sparse(ctx, ks[si], ks[si], 0.05, &seed, "B");
        lj_op *k = lj_op_kron(ctx, a, b);
        double tk[2][2]; /* [threads][again] */
        int64_t nz = 0;
        for (int t = 0; t < 2; t++) {
            lj_context_set_threads(ctx, t + 1);
            for (int again = 0; again < 2; again++) {
                tk[t][again] = 1e300;
                for (int r = 0; r < 3; r++) {
                    if (!again) lj_context_trim(ctx); /* fresh memory */
                    double t0 = now();
                    cholmod_sparse *S = lj_op_to_sparse(ctx, k);
                    double dt = now() - t0;
                    if (!S) die(ctx);
                    nz = ((int64_t *)S->p)[S->ncol];
                    lj_sparse_free(ctx, &S);
                    if (dt < tk[t][again]) tk[t][again] = dt;
                }
            }
        }
        lj_context_set_threads(ctx, 0);
        lj_context_trim(ctx);
        size_t bytes = (size_t)nz * 16;
        double tf = 1e300, th = 1e300;
        for (int r = 0; r < 3; r++)
            for (int huge = 0; huge < 2; huge++) {
                char *dst = huge ? malloc_huge(bytes) : malloc(bytes);
                if (!dst) continue;
                double t0 = now();
                memset(dst, 1, bytes);
                double dt = now() - t0;
                if (dst[bytes / 2] != 1) printf("?");
                free(dst);
                if (huge && dt < th) th = dt;
                if (!huge && dt < tf) tf = dt;
            }
        double M = 1e-6 * (double)nz;
        printf("   %5d %12lld %9.1f %9.1f %9.1f %9.1f %9.2f %9.2f %10.1f %10.1f\n", ks[si], (long long)nz, M / tk[0][0],
               M / tk[0][1], M / tk[1][0], M / tk[1][1], tk[0][0] / tk[1][0], tk[0][1] / tk[1][1], M / tf, M / th);
        lj_op_free(&a);
        lj_op_free(&b);
        lj_op_free(&k);
    }
    printf("   (bench/kron_scipy.py times scipy.sparse.kron on the same shapes)\n");

    printf("\n2. product materialisation A·B·C (sparse; the chain order is chosen from nnz estimates)\n");
    printf("   %22s %12s %12s %14s\n", "shapes", "time (s)", "flops (est.)", "ns per flop");
    int ps[][4] = { { 2000, 50, 2000, 30 }, { 5000, 100, 5000, 20 } };
    for (int si = 0; si < 2; si++) {
        int m = ps[si][0], k1 = ps[si][1], k2 = ps[si][2], n = ps[si][3];
        lj_op *A = rand_sparse(ctx, m, k1, 0.2, &seed, "A"), *B = rand_sparse(ctx, k1, k2, 0.2, &seed, "B");
        lj_op *C = rand_sparse(ctx, k2, n, 0.2, &seed, "C");
        const lj_op *abc[3] = { A, B, C };
        lj_op *P = lj_op_compose(ctx, 3, abc);
        double t0 = now();
        cholmod_sparse *S = lj_op_to_sparse(ctx, P);
        double t = now() - t0;
        if (!S) die(ctx);
        /* the cheaper order, A·(B·C): nnz(B)·nnz(C)/k2 + nnz(A)·nnz(BC)/k1 multiply-adds */
        int e;
        double nb = (double)lj_op_nnz(ctx, B, &e), nc = (double)lj_op_nnz(ctx, C, &e), na = (double)lj_op_nnz(ctx, A, &e);
        double bc = nb * nc / k2, nbc = bc < (double)k1 * n ? bc : (double)k1 * n;
        double flops = bc + na * nbc / k1;
        printf("   %5d×%d·%d×%d·%d×%-4d %12.4f %12.3g %14.3f\n", m, k1, k1, k2, k2, n, t, flops, 1e9 * t / flops);
        lj_sparse_free(ctx, &S);
        lj_op *ops[] = { A, B, C, P };
        for (int i = 0; i < 4; i++) lj_op_free(&ops[i]);
    }

    printf("\n3. Jacobian construction for expressions with N nodes (time per node; flat = linear)\n");
    printf("   (chain: tanh(sin(tanh(…X)))); wide sum: X∘C_1 + X∘C_2 + …; product chain: M(M(…(M X))))\n");
    printf("   %8s %18s %18s %18s\n", "N", "chain (µs/node)", "wide sum (µs/node)", "products (µs/node)");
    int Ns[] = { 1000, 2000, 4000, 8000 };
    for (int si = 0; si < (quick ? 2 : 4); si++) {
        int N = Ns[si];
        double xv[12];
        for (int i = 0; i < 12; i++) xv[i] = 0.1 * i - 0.5;
        lj_expr *X = lj_expr_var(ctx, "X", 4, 3, xv);
        /* chain: tanh(sin(tanh(...X))) */
        lj_expr *c = lj_expr_retain(X);
        for (int i = 0; i < N; i++) {
            lj_expr *nx = lj_expr_func(ctx, i % 2 ? LJ_FN_SIN : LJ_FN_TANH, c);
            lj_expr_free(&c);
            c = nx;
        }
        double t0 = now();
        lj_op *J = lj_expr_jacobian(ctx, c, X);
        double tc = now() - t0;
        if (!J) die(ctx);
        lj_op_free(&J);
        /* wide sum: X.*C_1 + X.*C_2 + ... with N distinct constants C_i */
        lj_expr *s = lj_expr_retain(X);
        for (int i = 1; i < N; i++) {
            double cv[12];
            for (int q = 0; q < 12; q++) cv[q] = 1.0 + 0.001 * i + 0.01 * q;
            lj_expr *C = lj_expr_const(ctx, "C", 4, 3, cv);
            lj_expr *t = lj_expr_hadamard(ctx, X, C), *u = lj_expr_add(ctx, s, t);
            lj_expr_free(&C);
            lj_expr_free(&t);
            lj_expr_free(&s);
            s = u;
        }
        t0 = now();
        J = lj_expr_jacobian(ctx, s, X);
        double ts = now() - t0;
        if (!J) die(ctx);
        lj_op_free(&J);
        /* product chain: M·(M·(…·X)) with a constant 4×4 M */
        double mv[16];
        for (int i = 0; i < 16; i++) mv[i] = (i % 5 == 0) ? 0.9 : 0.01 * i;
        lj_expr *M = lj_expr_const(ctx, "M", 4, 4, mv), *p = lj_expr_retain(X);
        for (int i = 0; i < N; i++) {
            lj_expr *t = lj_expr_mul(ctx, M, p);
            lj_expr_free(&p);
            p = t;
        }
        t0 = now();
        J = lj_expr_jacobian(ctx, p, X);
        double tp = now() - t0;
        if (!J) die(ctx);
        lj_op_free(&J);
        printf("   %8d %18.2f %18.2f %18.2f\n", N, 1e6 * tc / N, 1e6 * ts / N, 1e6 * tp / N);
        lj_expr_free(&c);
        lj_expr_free(&s);
        lj_expr_free(&p);
        lj_expr_free(&M);
        lj_expr_free(&X);
    }

    printf("\n4. Jacobian plans: lj_jacplan_eval (J and the value at the leaves' current values) against\n"
           "   lj_expr_eval (the value alone), the variable set anew before every call on both sides,\n"
           "   best of 5 rounds; 'in place': the evaluations that updated the previous J's numbers\n");
    printf("   %-12s %6s %14s %14s %8s %10s\n", "expression", "n", "eval (µs)", "plan eval (µs)", "ratio", "in place");
    int pn[] = { 4, 64, 256, 1024 };
    for (int si = 0; si < (quick ? 2 : 4); si++) {
        int n = pn[si];
        double *w = malloc(sizeof *w * (size_t)n * n), *a = malloc(sizeof *a * (size_t)n * n),
               *bb = malloc(sizeof *bb * (size_t)n * n), *xv = malloc(sizeof *xv * (size_t)n),
               *val = malloc(sizeof *val * (size_t)n * n);
        for (int i = 0; i < n * n; i++) w[i] = 0.01 * (i % 97) - 0.4, a[i] = 0.02 * (i % 89) - 0.5, bb[i] = 1.0 + 0.001 * (i % 13);
        for (int i = 0; i < n; i++) xv[i] = 0.1 * i - 0.3;
        lj_expr *W = lj_expr_const(ctx, "W", n, n, w), *A = lj_expr_var(ctx, "A", n, n, a), *B = lj_expr_const(ctx, "B", n, n, bb);
        lj_expr *x = lj_expr_var(ctx, "x", n, 1, xv), *H = lj_expr_var(ctx, "H", n, n, a);
        lj_expr *AB = lj_expr_hadamard(ctx, A, B), *e0 = lj_expr_mul(ctx, W, AB);
        lj_expr *xt = lj_expr_transpose(ctx, x), *xx = lj_expr_mul(ctx, x, xt), *e1 = lj_expr_hadamard(ctx, xx, B);
        lj_expr *WH = lj_expr_mul(ctx, W, H), *e3 = lj_expr_mul(ctx, WH, B);
        lj_expr *es[3] = { e0, e1, e3 }, *vs[3] = { A, x, H };
        const char *names[3] = { "W(A∘B)", "(xx^T)∘A", "AHW" };
        /* two sets of values for each variable, alternated */
        double *v0[3] = { a, xv, a }, *v1[3];
        for (int k = 0; k < 3; k++) {
            int64_t len = lj_expr_nvalues(vs[k]);
            v1[k] = malloc(sizeof(double) * (size_t)len);
            for (int64_t i = 0; i < len; i++) v1[k][i] = v0[k][i] + 0.125;
        }
        for (int k = 0; k < 3; k++) {
            lj_jacplan *pl = lj_jacplan_new(ctx, es[k], 1, (const lj_expr *const *)&vs[k]);
            if (!pl) die(ctx);
            double te = 1e300, tj = 1e300;
            for (int r = 0; r < 5; r++) {
                int reps = 0;
                double t0 = now(), t1;
                do {
                    int64_t rr, cc;
                    double *v;
                    /* the variable's values change at every call, on both sides */
                    if (lj_expr_set_value(ctx, vs[k], reps & 1 ? v1[k] : v0[k]) != LJ_OK) die(ctx);
                    if (lj_expr_eval(ctx, es[k], &rr, &cc, &v) != LJ_OK) die(ctx);
                    lj_free(v);
                    reps++;
                    t1 = now();
                } while (t1 - t0 < (quick ? 0.01 : 0.05));
                if ((t1 - t0) / reps < te) te = (t1 - t0) / reps;
                reps = 0;
                t0 = now();
                do {
                    if (lj_expr_set_value(ctx, vs[k], reps & 1 ? v1[k] : v0[k]) != LJ_OK) die(ctx);
                    lj_op *Jp = lj_jacplan_eval(ctx, pl, val);
                    if (!Jp) die(ctx);
                    lj_op_free(&Jp);
                    reps++;
                    t1 = now();
                } while (t1 - t0 < (quick ? 0.01 : 0.05));
                if ((t1 - t0) / reps < tj) tj = (t1 - t0) / reps;
            }
            int64_t nb = 0, nu = 0;
            if (lj_jacplan_counts(ctx, pl, &nb, &nu) != LJ_OK) die(ctx);
            printf("   %-12s %6d %14.3f %14.3f %8.2f %9.0f%%\n", names[k], n, 1e6 * te, 1e6 * tj, tj / te,
                   100.0 * (double)nu / (double)(nb + nu));
            lj_jacplan_free(&pl);
        }
        for (int k = 0; k < 3; k++) free(v1[k]);
        lj_expr *fr[] = { W, A, B, x, H, AB, e0, xt, xx, e1, WH, e3 };
        for (int i = 0; i < 12; i++) lj_expr_free(&fr[i]);
        free(w), free(a), free(bb), free(xv), free(val);
    }

    printf("\n5. building J of (A·X)∘(B·X) once (lj_expr_jacobian, J freed after), A, B, X n×n, against\n"
           "   evaluating the expression (lj_expr_eval): both compute A·X and B·X into fresh memory, and\n"
           "   J = Diag(vec(B·X))·(I ⊗ A) + Diag(vec(A·X))·(I ⊗ B) holds those two arrays; best of 5 rounds\n");
    printf("   %6s %14s %14s %8s\n", "n", "eval (ms)", "build J (ms)", "ratio");
    int hn[] = { 100, 300, 1000 };
    for (int si = 0; si < (quick ? 2 : 3); si++) {
        int n = hn[si];
        size_t nn = (size_t)n * n;
        double *a = malloc(sizeof *a * nn), *b = malloc(sizeof *b * nn), *xv = malloc(sizeof *xv * nn);
        for (size_t i = 0; i < nn; i++) a[i] = 0.01 * (double)(i % 97) - 0.4, b[i] = 0.02 * (double)(i % 89) - 0.5, xv[i] = 1.0 + 0.001 * (double)(i % 13);
        lj_expr *A = lj_expr_const(ctx, "A", n, n, a), *B = lj_expr_const(ctx, "B", n, n, b), *X = lj_expr_var(ctx, "X", n, n, xv);
        lj_expr *AX = lj_expr_mul(ctx, A, X), *BX = lj_expr_mul(ctx, B, X), *F = lj_expr_hadamard(ctx, AX, BX);
        if (!F) die(ctx);
        double budget = quick ? 0.1 : 0.5, te = 1e300, tj = 1e300;
        for (int rep = 0; rep < 2; rep++) { /* in turn, twice: a slow spell lands on both */
            double t, *v;
            int64_t rr, cc;
            TIME_BEST(t, budget, {
                if (lj_expr_eval(ctx, F, &rr, &cc, &v) != LJ_OK) die(ctx);
                lj_free(v);
            });
            if (t < te) te = t;
            TIME_BEST(t, budget, {
                lj_op *J = lj_expr_jacobian(ctx, F, X);
                if (!J) die(ctx);
                lj_op_free(&J);
            });
            if (t < tj) tj = t;
        }
        printf("   %6d %14.3f %14.3f %8.2f\n", n, 1e3 * te, 1e3 * tj, tj / te);
        lj_expr *fr[] = { A, B, X, AX, BX, F };
        for (int i = 0; i < 6; i++) lj_expr_free(&fr[i]);
        free(a), free(b), free(xv);
    }
    lj_context_free(&ctx);
    return 0;
}
