/* Least squares with PETSc's LSQR on a lazyjac Jacobian, on one rank or
 * many:
 *
 *     min_A ‖W (A ∘ B) − Y‖_F,     W p×m, A, B m×n, Y p×n,
 *
 * whose Jacobian with respect to A is J = (I_n ⊗ W)·Diag(vec B), a
 * (p·n)×(m·n) operator that is never formed. KSPLSQR solves J a = vec Y
 * twice: with J as a lazy MatShell (each rank applies its block of rows;
 * J^T y is summed over the ranks), then with the exact J materialised as
 * MATMPIAIJ (each rank writing only its rows). Both must agree with each
 * other and with the planted A to solver tolerance, on any number of ranks.
 *
 *   mpiexec -n 2 petsc_lsqr [p m n]     (default 60 40 50)
 * Ends by printing "solution norm <value>"; exit status 0 when both
 * solutions recover the planted A. */
#include <lazyjac_petsc.h>
#include <petscksp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* v's local part from the whole array, and back */
static void put(Vec v, const double *whole)
{
    PetscInt lo, hi;
    double *a;
    VecGetOwnershipRange(v, &lo, &hi);
    VecGetArrayWrite(v, &a);
    for (PetscInt i = lo; i < hi; i++) a[i - lo] = whole[i];
    VecRestoreArrayWrite(v, &a);
}

static int die(lj_context *ctx, const char *what)
{
    fprintf(stderr, "petsc_lsqr: %s: %s\n", what, lj_context_message(ctx));
    MPI_Abort(PETSC_COMM_WORLD, 1);
    return 1;
}

/* KSPLSQR on Mat A for right-hand side b; returns the solution in x, the
 * iterations in *its */
static PetscErrorCode lsqr(Mat A, Vec b, Vec x, PetscInt *its)
{
    KSP ksp;
    PC pc;
    PetscCall(KSPCreate(PETSC_COMM_WORLD, &ksp));
    PetscCall(KSPSetOperators(ksp, A, A));
    PetscCall(KSPSetType(ksp, KSPLSQR));
    PetscCall(KSPGetPC(ksp, &pc));
    PetscCall(PCSetType(pc, PCNONE));
    PetscCall(KSPSetTolerances(ksp, 1e-13, 1e-14, PETSC_DEFAULT, 5000));
    PetscCall(KSPSetFromOptions(ksp));
    PetscCall(VecSet(x, 0.0));
    PetscCall(KSPSolve(ksp, b, x));
    PetscCall(KSPGetIterationNumber(ksp, its));
    PetscCall(KSPDestroy(&ksp));
    return 0;
}

int main(int argc, char **argv)
{
    PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
    int64_t p = argc > 3 ? atoll(argv[1]) : 60, m = argc > 3 ? atoll(argv[2]) : 40, n = argc > 3 ? atoll(argv[3]) : 50;
    int size;
    MPI_Comm_size(PETSC_COMM_WORLD, &size);
    lj_context *ctx = lj_context_new();
    /* the same data on every rank: W, B, and a planted A0 with Y = W (A0 ∘ B) */
    unsigned long long seed = 11;
    double *W = malloc(sizeof *W * (size_t)(p * m)), *B = malloc(sizeof *B * (size_t)(m * n)),
           *A0 = malloc(sizeof *A0 * (size_t)(m * n));
    for (int64_t i = 0; i < p * m; i++) W[i] = urand(&seed) / sqrt((double)m);
    for (int64_t i = 0; i < m * n; i++) B[i] = 1.0 + 0.5 * urand(&seed), A0[i] = urand(&seed);
    lj_expr *We = lj_expr_const(ctx, "W", p, m, W), *Be = lj_expr_const(ctx, "B", m, n, B);
    lj_expr *Ae = lj_expr_var(ctx, "A", m, n, A0), *AB = lj_expr_hadamard(ctx, Ae, Be), *F = lj_expr_mul(ctx, We, AB);
    lj_op *J = lj_expr_jacobian(ctx, F, Ae);
    double *Y;
    int64_t r, c;
    if (!J || lj_expr_eval(ctx, F, &r, &c, &Y) != LJ_OK) return die(ctx, "setup");
    char *form = lj_op_print(ctx, J, LJ_PRINT_UNICODE);
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "least squares min ‖W (A ∘ B) − Y‖ on %d rank%s: J = %s (%lld×%lld)\n", size,
                          size == 1 ? "" : "s", form, (long long)lj_op_rows(J), (long long)lj_op_cols(J)));
    lj_free(form);

    Mat S, M;
    if (lj_petsc_matshell(ctx, J, PETSC_COMM_WORLD, 0, &S) != LJ_OK) return die(ctx, "matshell");
    if (lj_petsc_aij(ctx, J, PETSC_COMM_WORLD, &M) != LJ_OK) return die(ctx, "aij");
    Vec x, b, xa;
    PetscCall(MatCreateVecs(S, &x, &b));
    PetscCall(VecDuplicate(x, &xa));
    put(b, Y);
    PetscInt its_s, its_a;
    double t0 = MPI_Wtime();
    PetscCall(lsqr(S, b, x, &its_s));
    double t1 = MPI_Wtime();
    PetscCall(lsqr(M, b, xa, &its_a));
    double t2 = MPI_Wtime();
    /* both against the planted A0 and each other */
    Vec x0, d;
    PetscCall(VecDuplicate(x, &x0));
    PetscCall(VecDuplicate(x, &d));
    put(x0, A0);
    double n0, ns, na, es, ea, esa;
    PetscCall(VecNorm(x0, NORM_2, &n0));
    PetscCall(VecNorm(x, NORM_2, &ns));
    PetscCall(VecNorm(xa, NORM_2, &na));
    PetscCall(VecWAXPY(d, -1.0, x0, x));
    PetscCall(VecNorm(d, NORM_2, &es));
    PetscCall(VecWAXPY(d, -1.0, x0, xa));
    PetscCall(VecNorm(d, NORM_2, &ea));
    PetscCall(VecWAXPY(d, -1.0, x, xa));
    PetscCall(VecNorm(d, NORM_2, &esa));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "  MatShell (lazy): %d LSQR iterations, %.3f s, ‖A − A0‖/‖A0‖ = %.1e\n",
                          (int)its_s, t1 - t0, es / n0));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "  MATAIJ (exact):  %d LSQR iterations, %.3f s, ‖A − A0‖/‖A0‖ = %.1e\n",
                          (int)its_a, t2 - t1, ea / n0));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "  ‖A_shell − A_aij‖/‖A0‖ = %.1e\n", esa / n0));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "solution norm %.10e\n", ns));
    int ok = es / n0 < 1e-8 && ea / n0 < 1e-8 && esa / n0 < 1e-8;
    PetscCall(VecDestroy(&x));
    PetscCall(VecDestroy(&b));
    PetscCall(VecDestroy(&xa));
    PetscCall(VecDestroy(&x0));
    PetscCall(VecDestroy(&d));
    PetscCall(MatDestroy(&S));
    PetscCall(MatDestroy(&M));
    lj_expr *all[] = { We, Be, Ae, AB, F };
    for (int i = 0; i < 5; i++) lj_expr_free(&all[i]);
    lj_op_free(&J);
    lj_free(Y);
    free(W), free(B), free(A0);
    lj_context_free(&ctx);
    PetscCall(PetscFinalize());
    return ok ? 0 : 1;
}
