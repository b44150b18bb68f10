/* liblazyjac-petsc on however many ranks mpiexec gives (tests/petsc.sh runs
 * 1, 2 and 3): for one operator of every kind and the seeds' Jacobians,
 * the lazy MatShell against the AIJ matrix (MatMultEqual and its
 * transpose and add forms), both against lazyjac's own applies, each
 * rank's AIJ rows against the full materialisation entry for entry, the
 * shell's diag(J^T J); then the error paths both ways. Exit status 0 when
 * every rank passed. */
#include <lazyjac_petsc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank, size, failures;

#define EXPECT(cond, ...)                                                              \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            failures++;                                                                \
            fprintf(stderr, "[rank %d] %s:%d: ", rank, __FILE__, __LINE__);            \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
        }                                                                              \
    } while (0)

static double urand(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

static double *rnd(int64_t n, uint64_t *s)
{
    double *v = malloc(sizeof *v * (size_t)(n > 0 ? n : 1));
    for (int64_t i = 0; i < n; i++) v[i] = urand(s);
    return v;
}

static lj_op *dense(lj_context *ctx, int64_t r, int64_t c, uint64_t *s, const char *label)
{
    double *a = rnd(r * c, s);
    lj_op *o = lj_op_dense(ctx, r, c, a, r > 0 ? r : 1, label);
    free(a);
    return o;
}

static lj_op *sparse(lj_context *ctx, int64_t r, int64_t c, double dens, uint64_t *s, const char *label)
{
    cholmod_common *cc = lj_context_cholmod(ctx);
    cholmod_sparse *S = cholmod_l_allocate_sparse((size_t)r, (size_t)c, (size_t)(r * c + 1), 1, 1, 0, CHOLMOD_REAL, cc);
    SuiteSparse_long *p = S->p, *ii = S->i, q = 0;
    double *x = S->x;
    for (int64_t j = 0; j < c; j++) {
        p[j] = q;
        for (int64_t i = 0; i < r; i++)
            if ((urand(s) + 1) / 2 < dens) ii[q] = i, x[q++] = urand(s);
    }
    p[c] = q;
    lj_op *o = lj_op_sparse(ctx, S, label);
    cholmod_l_free_sparse(&S, cc);
    return o;
}

/* x (the whole vector) into a PETSc vector of the given layout */
static void set_local(Vec v, const double *whole)
{
    PetscInt lo, hi;
    double *a;
    VecGetOwnershipRange(v, &lo, &hi);
    VecGetArrayWrite(v, &a);
    for (PetscInt i = lo; i < hi; i++) a[i - lo] = whole[i];
    VecRestoreArrayWrite(v, &a);
}

/* the local part of v against the whole reference */
static double local_diff(Vec v, const double *whole)
{
    PetscInt lo, hi;
    const double *a;
    double worst = 0, scale = 1;
    VecGetOwnershipRange(v, &lo, &hi);
    VecGetArrayRead(v, &a);
    for (PetscInt i = lo; i < hi; i++) {
        double d = fabs(a[i - lo] - whole[i]);
        if (d > worst) worst = d;
        if (fabs(whole[i]) > scale) scale = fabs(whole[i]);
    }
    VecRestoreArrayRead(v, &a);
    return worst / scale;
}

static void check_one(lj_context *ctx, const lj_op *J, const char *what)
{
    int64_t m = lj_op_rows(J), n = lj_op_cols(J);
    Mat S = NULL, M = NULL;
    lj_status st = lj_petsc_matshell(ctx, J, PETSC_COMM_WORLD, LJ_PETSC_NORMAL_DIAGONAL, &S);
    EXPECT(st == LJ_OK, "%s: matshell: %s", what, lj_context_message(ctx));
    st = lj_petsc_aij(ctx, J, PETSC_COMM_WORLD, &M);
    EXPECT(st == LJ_OK, "%s: aij: %s", what, lj_context_message(ctx));
    if (!S || !M) {
        MatDestroy(&S);
        MatDestroy(&M);
        return;
    }
    PetscBool eq = PETSC_FALSE;
    MatMultEqual(S, M, 3, &eq);
    EXPECT(eq, "%s: MatMultEqual(shell, AIJ) failed", what);
    MatMultTransposeEqual(S, M, 3, &eq);
    EXPECT(eq, "%s: MatMultTransposeEqual(shell, AIJ) failed", what);
    MatMultAddEqual(S, M, 3, &eq);
    EXPECT(eq, "%s: MatMultAddEqual(shell, AIJ) failed", what);
    MatMultTransposeAddEqual(S, M, 3, &eq);
    EXPECT(eq, "%s: MatMultTransposeAddEqual(shell, AIJ) failed", what);
    /* against lazyjac's own applies of the whole J on every rank */
    uint64_t seed = 77;
    double *x = rnd(n, &seed), *w = rnd(m, &seed), *y = malloc(sizeof *y * (size_t)(m + 1)),
           *g = malloc(sizeof *g * (size_t)(n + 1));
    lj_op_apply(ctx, J, 0, 1.0, x, 0.0, y);
    lj_op_apply(ctx, J, 1, 1.0, w, 0.0, g);
    Vec vx, vy;
    MatCreateVecs(S, &vx, &vy);
    set_local(vx, x);
    set_local(vy, w);
    Vec sy, sx;
    VecDuplicate(vy, &sy);
    VecDuplicate(vx, &sx);
    MatMult(S, vx, sy);
    EXPECT(local_diff(sy, y) < 1e-13, "%s: shell J x differs from lj_op_apply by %g", what, local_diff(sy, y));
    MatMultTranspose(S, vy, sx);
    EXPECT(local_diff(sx, g) < 1e-13, "%s: shell J^T w differs from lj_op_apply by %g", what, local_diff(sx, g));
    MatMult(M, vx, sy);
    EXPECT(local_diff(sy, y) < 1e-13, "%s: AIJ J x differs from lj_op_apply by %g", what, local_diff(sy, y));
    /* diag(J^T J) */
    double *d = malloc(sizeof *d * (size_t)(n + 1));
    lj_op_normal_diag(ctx, J, d);
    MatGetDiagonal(S, sx);
    EXPECT(local_diff(sx, d) < 1e-13, "%s: shell diag(J^T J) differs by %g", what, local_diff(sx, d));
    /* this rank's AIJ rows, entry for entry, against the whole CSR */
    lj_csr *csr = lj_op_to_csr(ctx, J);
    PetscInt lo, hi;
    MatGetOwnershipRange(M, &lo, &hi);
    int bad = 0;
    for (PetscInt i = lo; i < hi && csr; i++) {
        PetscInt nc;
        const PetscInt *cols;
        const PetscScalar *vals;
        MatGetRow(M, i, &nc, &cols, &vals);
        int64_t q0 = csr->rowptr[i], q1 = csr->rowptr[i + 1];
        if (nc != q1 - q0) bad++;
        for (PetscInt t = 0; t < nc && !bad; t++)
            if (cols[t] != csr->colind[q0 + t] || vals[t] != csr->values[q0 + t]) bad++;
        MatRestoreRow(M, i, &nc, &cols, &vals);
    }
    EXPECT(csr && !bad, "%s: AIJ rows [%d, %d) differ from the full materialisation", what, (int)lo, (int)hi);
    lj_csr_free(&csr);
    free(x), free(w), free(y), free(g), free(d);
    VecDestroy(&vx), VecDestroy(&vy), VecDestroy(&sx), VecDestroy(&sy);
    MatDestroy(&S);
    MatDestroy(&M);
}

/* PETSc's message of the last error, caught by a handler of our own */
static char last_message[512];
static PetscErrorCode catch_message(MPI_Comm comm, int line, const char *fun, const char *file, PetscErrorCode n,
                                    PetscErrorType p, const char *mess, void *c)
{
    (void)comm, (void)line, (void)fun, (void)file, (void)p, (void)c;
    if (mess && p == PETSC_ERROR_INITIAL) snprintf(last_message, sizeof last_message, "%s", mess);
    return n;
}

int main(int argc, char **argv)
{
    PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
    MPI_Comm_rank(PETSC_COMM_WORLD, &rank);
    MPI_Comm_size(PETSC_COMM_WORLD, &size);
    lj_context *ctx = lj_context_new();
    uint64_t seed = 2024;
    /* the same operators on every rank (the same seed) */
    lj_op *a = dense(ctx, 5, 4, &seed, "A"), *b = dense(ctx, 3, 6, &seed, "B"), *s = sparse(ctx, 9, 7, 0.4, &seed, "S");
    double dg[24], u[9], vv[7];
    for (int i = 0; i < 24; i++) dg[i] = urand(&seed);
    for (int i = 0; i < 9; i++) u[i] = urand(&seed);
    for (int i = 0; i < 7; i++) vv[i] = urand(&seed);
    int64_t perm[9] = { 4, 8, 0, 3, 7, 1, 6, 2, 5 }, si[11] = { 0, 4, 2, 1, 3, 0, 4, 2, 1, 3, 0 },
            sj[11] = { 0, 1, 2, 0, 1, 2, 2, 1, 0, 0, 1 };
    lj_op *I9 = lj_op_identity(ctx, 9), *D = lj_op_diag(ctx, 24, dg, "d"), *P = lj_op_perm(ctx, 9, perm, "P");
    lj_op *K = lj_op_commutation(ctx, 4, 6), *R1 = lj_op_rank1(ctx, 9, u, "u", 7, vv, "v");
    lj_op *ab = lj_op_kron(ctx, a, b), *at = lj_op_transpose(ctx, a), *st = lj_op_transpose(ctx, s);
    lj_op *PS = lj_op_mul(ctx, P, s), *DK = lj_op_mul(ctx, D, K);
    const lj_op *sum3[3] = { s, R1, PS }, *hs[2] = { s, R1 }, *vs[2] = { s, PS };
    lj_op *Sum = lj_op_lincomb(ctx, 3, (double[]){ 1.0, -2.0, 0.5 }, sum3), *H = lj_op_hstack(ctx, 2, hs),
          *V = lj_op_vstack(ctx, 2, vs);
    lj_op *I3 = lj_op_identity(ctx, 3), *Sm = lj_op_sampled(ctx, 11, si, sj, NULL, I3, a, "P_Ω");
    /* the seeds' forms: (I ⊗ W)·Diag(vec B), Diag(vec A)·((x ⊗ I) + (I ⊗ x)), W^T ⊗ A */
    lj_op *W = dense(ctx, 4, 3, &seed, "W"), *I5 = lj_op_identity(ctx, 5), *IW = lj_op_kron(ctx, I5, W);
    double bb[15];
    for (int i = 0; i < 15; i++) bb[i] = urand(&seed);
    lj_op *DB = lj_op_diag(ctx, 15, bb, "vec B"), *seed0 = lj_op_mul(ctx, IW, DB);
    lj_op *x = dense(ctx, 6, 1, &seed, "x"), *I6 = lj_op_identity(ctx, 6), *xI = lj_op_kron(ctx, x, I6),
          *Ix = lj_op_kron(ctx, I6, x), *xs = lj_op_add(ctx, xI, Ix);
    double aa[36];
    for (int i = 0; i < 36; i++) aa[i] = urand(&seed);
    lj_op *DA = lj_op_diag(ctx, 36, aa, "vec A"), *seed1 = lj_op_mul(ctx, DA, xs);
    lj_op *W2 = dense(ctx, 4, 7, &seed, "W"), *W2t = lj_op_transpose(ctx, W2), *A2 = dense(ctx, 5, 5, &seed, "A"),
          *seed3 = lj_op_kron(ctx, W2t, A2);
    lj_op *Z = lj_op_zero(ctx, 4, 6);
    lj_op *ops[] = { a, s, I9, D, P, K, R1, ab, at, st, PS, DK, Sum, H, V, Sm, seed0, seed1, seed3, Z };
    const char *names[] = { "dense", "sparse", "identity", "Diag", "perm", "commutation", "rank1", "A ⊗ B",
                            "A^T", "S^T", "P·S", "Diag·K", "sum", "hstack", "vstack", "sampled",
                            "(I ⊗ W)·Diag(vec B)", "Diag(vec A)·((x ⊗ I) + (I ⊗ x))", "W^T ⊗ A", "zero" };
    int nops = (int)(sizeof ops / sizeof ops[0]);
    for (int i = 0; i < nops; i++) {
        EXPECT(ops[i] != NULL, "%s: not built: %s", names[i], lj_context_message(ctx));
        if (ops[i]) check_one(ctx, ops[i], names[i]);
    }

    /* ---- errors ---- */
    Mat E = NULL;
    /* operators of different shapes on different ranks: every rank fails */
    if (size > 1) {
        lj_status e1 = lj_petsc_matshell(ctx, rank == 0 ? a : b, PETSC_COMM_WORLD, 0, &E);
        EXPECT(e1 == LJ_ERR_SHAPE && strstr(lj_context_message(ctx), "different shapes") && !E,
               "mismatched shapes: status %d, '%s'", (int)e1, lj_context_message(ctx));
        lj_context_clear(ctx);
        /* a NULL operator on one rank: all of them fail, none hangs */
        lj_status e2 = lj_petsc_aij(ctx, rank == size - 1 ? NULL : a, PETSC_COMM_WORLD, &E);
        EXPECT(e2 != LJ_OK && !E, "a NULL J on one rank: status %d", (int)e2);
        lj_context_clear(ctx);
    }
    EXPECT(lj_petsc_matshell(ctx, NULL, PETSC_COMM_WORLD, 0, &E) == LJ_ERR_INVALID, "NULL J");
    lj_context_clear(ctx);
    EXPECT(lj_petsc_matshell(ctx, a, PETSC_COMM_WORLD, 0, NULL) == LJ_ERR_INVALID, "NULL output");
    lj_context_clear(ctx);
    EXPECT(lj_petsc_matshell(ctx, a, PETSC_COMM_WORLD, 0x40, &E) == LJ_ERR_INVALID, "unknown flags");
    lj_context_clear(ctx);
    /* sizes past PETSc's 32-bit PetscInt: refused, not wrapped */
    lj_op *huge = lj_op_identity(ctx, (int64_t)3 << 30);
    lj_status e3 = lj_petsc_matshell(ctx, huge, PETSC_COMM_WORLD, 0, &E);
    EXPECT(sizeof(PetscInt) > 4 || (e3 == LJ_ERR_OVERFLOW && strstr(lj_context_message(ctx), "PetscInt")),
           "a 3.2e9-row identity: status %d, '%s'", (int)e3, lj_context_message(ctx));
    if (E) MatDestroy(&E);
    lj_context_clear(ctx);
    lj_op_free(&huge);
    /* PETSc errors as lazyjac statuses */
    EXPECT(lj_petsc_status(ctx, 0, "x") == LJ_OK, "status of 0");
    EXPECT(lj_petsc_status(ctx, PETSC_ERR_ARG_SIZ, "test") == LJ_ERR_EXTERNAL &&
               strstr(lj_context_message(ctx), "test: PETSc error") != NULL,
           "PETSc error as status: '%s'", lj_context_message(ctx));
    lj_context_clear(ctx);
    /* a shell's operator replaced, the shape checked, a non-shell refused */
    Mat S = NULL, M = NULL;
    EXPECT(lj_petsc_matshell(ctx, ab, PETSC_COMM_WORLD, 0, &S) == LJ_OK, "shell of A ⊗ B");
    lj_op *ab2 = lj_op_scale(ctx, 3.0, ab);
    EXPECT(lj_petsc_matshell_reset(ctx, S, ab2) == LJ_OK, "reset: %s", lj_context_message(ctx));
    EXPECT(lj_petsc_matshell_reset(ctx, S, a) == LJ_ERR_SHAPE, "reset with another shape");
    lj_context_clear(ctx);
    EXPECT(lj_petsc_aij(ctx, ab2, PETSC_COMM_WORLD, &M) == LJ_OK, "AIJ of 3(A ⊗ B)");
    PetscBool eq = PETSC_FALSE;
    MatMultEqual(S, M, 3, &eq);
    EXPECT(eq, "the reset shell applies the new operator");
    EXPECT(lj_petsc_matshell_reset(ctx, M, ab) == LJ_ERR_INVALID, "reset of an AIJ matrix");
    lj_context_clear(ctx);
    EXPECT(lj_petsc_matshell_context(M) == NULL && lj_petsc_matshell_context(S) != NULL, "shell contexts");
    /* a lazyjac failure inside MatMult reaches PETSc with lazyjac's message:
     * every allocation of the shell's context fails from now */
    /* a Kronecker apply with a sparse factor takes workspace (one of two
     * small dense factors keeps its intermediate on the stack) */
    lj_op *Ks = lj_op_kron(ctx, s, a);
    Mat S2 = NULL;
    EXPECT(lj_petsc_matshell(ctx, Ks, PETSC_COMM_WORLD, 0, &S2) == LJ_OK, "shell of S ⊗ A");
    if (S2) {
        lj_context_fail_alloc(lj_petsc_matshell_context(S2), 1, 1);
        Vec vx, vy;
        MatCreateVecs(S2, &vx, &vy);
        VecSet(vx, 1.0);
        PetscPushErrorHandler(catch_message, NULL);
        PetscErrorCode ierr = MatMult(S2, vx, vy);
        PetscPopErrorHandler();
        /* ranks with no rows of J need no workspace and succeed */
        PetscInt lo, hi;
        MatGetOwnershipRange(S2, &lo, &hi);
        if (hi > lo)
            EXPECT(ierr == PETSC_ERR_LIB && strstr(last_message, "lazyjac: apply: out of memory") != NULL,
                   "MatMult under allocation failure: error %d, '%s'", (int)ierr, last_message);
        VecDestroy(&vx);
        VecDestroy(&vy);
        MatDestroy(&S2);
    }
    MatDestroy(&S);
    MatDestroy(&M);
    lj_op_free(&ab2);
    lj_op_free(&Ks);
    int64_t r0, r1;
    EXPECT(lj_petsc_row_range(ctx, PETSC_COMM_WORLD, 10, &r0, &r1) == LJ_OK && r1 - r0 >= 10 / size &&
               r1 - r0 <= 10 / size + 1,
           "row range [%lld, %lld) of 10 rows", (long long)r0, (long long)r1);
    EXPECT(lj_petsc_row_range(ctx, PETSC_COMM_WORLD, -1, &r0, &r1) == LJ_ERR_SHAPE, "negative rows");
    lj_context_clear(ctx);

    lj_op *all[] = { a, b, s, I9, D, P, K, R1, ab, at, st, PS, DK, Sum, H, V, I3, Sm, W, I5, IW, DB, seed0, x, I6,
                     xI, Ix, xs, DA, seed1, W2, W2t, A2, seed3, Z };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lj_op_free(&all[i]);
    lj_context_free(&ctx);
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, PETSC_COMM_WORLD);
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "check_petsc: %d operators on %d rank%s: %s\n", nops, size,
                          size == 1 ? "" : "s", total ? "FAILED" : "all passed"));
    PetscCall(PetscFinalize());
    return total ? 1 : 0;
}
