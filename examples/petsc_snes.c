/* PETSc's SNES (Newton-Krylov) on a matrix equation with lazyjac's
 * Jacobian, on one rank or many:
 *
 *     F(X) = X A X + B X − C = 0,    X n×n,
 *
 * with J = d vec F / d vec X = (X^T A^T ⊗ I) + (I ⊗ X A) + (I ⊗ B) built by
 * a Jacobian plan at each Newton iterate and handed to SNES as a lazy
 * MatShell (lj_petsc_matshell_reset swaps the new operator into the same
 * Mat); GMRES solves each step with J v alone. Every rank evaluates F and J
 * on the whole X (gathered once an iterate) and owns its block of rows.
 *
 *   mpiexec -n 2 petsc_snes [n]     (default 12)
 * Ends by printing "solution norm <value>"; exit status 0 when SNES
 * converged to the planted X*. */
#include <lazyjac_petsc.h>
#include <petscsnes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static double urand(unsigned long long *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* v's local part from the whole array */
static PetscErrorCode put(Vec v, const double *whole)
{
    PetscInt lo, hi;
    double *a;
    PetscCall(VecGetOwnershipRange(v, &lo, &hi));
    PetscCall(VecGetArrayWrite(v, &a));
    for (PetscInt i = lo; i < hi; i++) a[i - lo] = whole[i];
    PetscCall(VecRestoreArrayWrite(v, &a));
    return 0;
}

typedef struct {
    lj_context *ctx;
    lj_expr *X, *F;
    lj_jacplan *plan;
    int64_t N;
    VecScatter all; /* an iterate gathered whole on every rank */
    Vec xall;
    double *value;  /* vec F, N doubles */
} problem;

/* the leaf X takes the iterate (whole, on every rank) */
static PetscErrorCode set_iterate(problem *pb, Vec x)
{
    const double *xa;
    PetscCall(VecScatterBegin(pb->all, x, pb->xall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecScatterEnd(pb->all, x, pb->xall, INSERT_VALUES, SCATTER_FORWARD));
    PetscCall(VecGetArrayRead(pb->xall, &xa));
    lj_status st = lj_expr_set_value(pb->ctx, pb->X, xa);
    PetscCall(VecRestoreArrayRead(pb->xall, &xa));
    PetscCheck(st == LJ_OK, PETSC_COMM_SELF, PETSC_ERR_LIB, "lazyjac: %s", lj_context_message(pb->ctx));
    return 0;
}

static PetscErrorCode residual(SNES snes, Vec x, Vec f, void *user)
{
    (void)snes;
    problem *pb = user;
    PetscCall(set_iterate(pb, x));
    double *v;
    int64_t r, c;
    lj_status st = lj_expr_eval(pb->ctx, pb->F, &r, &c, &v);
    PetscCheck(st == LJ_OK, PETSC_COMM_SELF, PETSC_ERR_LIB, "lazyjac: %s", lj_context_message(pb->ctx));
    PetscCall(put(f, v));
    lj_free(v);
    return 0;
}

/* J at the iterate: the plan's new operator, swapped into the same shell */
static PetscErrorCode jacobian(SNES snes, Vec x, Mat Jm, Mat P, void *user)
{
    (void)snes, (void)P;
    problem *pb = user;
    PetscCall(set_iterate(pb, x));
    lj_op *J = lj_jacplan_eval(pb->ctx, pb->plan, NULL);
    PetscCheck(J, PETSC_COMM_SELF, PETSC_ERR_LIB, "lazyjac: %s", lj_context_message(pb->ctx));
    lj_status st = lj_petsc_matshell_reset(pb->ctx, Jm, J);
    lj_op_free(&J);
    PetscCheck(st == LJ_OK, PETSC_COMM_SELF, PETSC_ERR_LIB, "lazyjac: %s", lj_context_message(pb->ctx));
    return 0;
}

int main(int argc, char **argv)
{
    PetscCall(PetscInitialize(&argc, &argv, NULL, NULL));
    int64_t n = argc > 1 ? atoll(argv[1]) : 12, N = n * n;
    int size;
    MPI_Comm_size(PETSC_COMM_WORLD, &size);
    lj_context *ctx = lj_context_new();
    /* the problem of examples/riccati_nk: a planted X*, C = X* A X* + B X* */
    unsigned long long seed = 7;
    double *Xs = malloc(sizeof(double) * (size_t)N), *A = malloc(sizeof(double) * (size_t)N);
    double *B = malloc(sizeof(double) * (size_t)N), *X0 = malloc(sizeof(double) * (size_t)N);
    for (int64_t j = 0; j < n; j++)
        for (int64_t i = 0; i < n; i++) {
            Xs[i + j * n] = (i == j) + 0.3 * urand(&seed) / sqrt((double)n);
            A[i + j * n] = 0.5 * urand(&seed) / sqrt((double)n);
            B[i + j * n] = 2.0 * (i == j) + 0.5 * urand(&seed) / sqrt((double)n);
        }
    lj_expr *Xe = lj_expr_var(ctx, "X", n, n, Xs), *Ae = lj_expr_const(ctx, "A", n, n, A);
    lj_expr *Be = lj_expr_const(ctx, "B", n, n, B);
    lj_expr *XA = lj_expr_mul(ctx, Xe, Ae), *XAX = lj_expr_mul(ctx, XA, Xe), *BX = lj_expr_mul(ctx, Be, Xe);
    lj_expr *lhs = lj_expr_add(ctx, XAX, BX);
    double *C;
    int64_t r, c;
    if (!lhs || lj_expr_eval(ctx, lhs, &r, &c, &C) != LJ_OK) {
        fprintf(stderr, "petsc_snes: setup: %s\n", lj_context_message(ctx));
        MPI_Abort(PETSC_COMM_WORLD, 1);
    }
    lj_expr *Ce = lj_expr_const(ctx, "C", n, n, C), *F = lj_expr_sub(ctx, lhs, Ce);
    for (int64_t i = 0; i < N; i++) X0[i] = Xs[i] + 0.2 * urand(&seed) / sqrt((double)n);
    problem pb = { .ctx = ctx, .X = Xe, .F = F, .N = N };
    const lj_expr *vars[1] = { Xe };
    pb.plan = lj_jacplan_new(ctx, F, 1, vars);
    lj_op *J0 = pb.plan ? lj_jacplan_eval(ctx, pb.plan, NULL) : NULL;
    Mat Jm;
    if (!J0 || lj_petsc_matshell(ctx, J0, PETSC_COMM_WORLD, 0, &Jm) != LJ_OK) {
        fprintf(stderr, "petsc_snes: jacobian: %s\n", lj_context_message(ctx));
        MPI_Abort(PETSC_COMM_WORLD, 1);
    }
    char *form = lj_op_print(ctx, J0, LJ_PRINT_UNICODE);
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "SNES Newton-Krylov for X A X + B X − C = 0, X %lldx%lld, on %d rank%s\n  J = %s\n",
                          (long long)n, (long long)n, size, size == 1 ? "" : "s", form));
    lj_free(form);
    lj_op_free(&J0);
    Vec x, f;
    PetscCall(MatCreateVecs(Jm, &x, &f));
    PetscCall(VecScatterCreateToAll(x, &pb.all, &pb.xall));
    PetscCall(put(x, X0));
    SNES snes;
    KSP ksp;
    PC pc;
    PetscCall(SNESCreate(PETSC_COMM_WORLD, &snes));
    PetscCall(SNESSetFunction(snes, f, residual, &pb));
    PetscCall(SNESSetJacobian(snes, Jm, Jm, jacobian, &pb));
    PetscCall(SNESGetKSP(snes, &ksp));
    PetscCall(KSPSetType(ksp, KSPGMRES));
    PetscCall(KSPGetPC(ksp, &pc));
    PetscCall(PCSetType(pc, PCNONE));
    PetscCall(KSPSetTolerances(ksp, 1e-12, 1e-14, PETSC_DEFAULT, 2000));
    PetscCall(SNESSetTolerances(snes, 1e-13, 1e-12, 1e-14, 50, 1000));
    PetscCall(SNESSetFromOptions(snes));
    PetscCall(SNESSolve(snes, NULL, x));
    SNESConvergedReason why;
    PetscInt its, lits;
    PetscCall(SNESGetConvergedReason(snes, &why));
    PetscCall(SNESGetIterationNumber(snes, &its));
    PetscCall(SNESGetLinearSolveIterations(snes, &lits));
    /* against the planted X* */
    Vec xs, d;
    PetscCall(VecDuplicate(x, &xs));
    PetscCall(VecDuplicate(x, &d));
    PetscCall(put(xs, Xs));
    double nx, ns, e, fn;
    PetscCall(VecNorm(x, NORM_2, &nx));
    PetscCall(VecNorm(xs, NORM_2, &ns));
    PetscCall(VecWAXPY(d, -1.0, xs, x));
    PetscCall(VecNorm(d, NORM_2, &e));
    PetscCall(SNESComputeFunction(snes, x, f));
    PetscCall(VecNorm(f, NORM_2, &fn));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "  %s after %d Newton steps (%d GMRES iterations): ‖F‖ = %.2e, ‖X − X*‖/‖X*‖ = %.1e\n",
                          why > 0 ? "converged" : "NOT converged", (int)its, (int)lits, fn, e / ns));
    PetscCall(PetscPrintf(PETSC_COMM_WORLD, "solution norm %.10e\n", nx));
    int ok = why > 0 && e / ns < 1e-8;
    PetscCall(SNESDestroy(&snes));
    PetscCall(VecDestroy(&x));
    PetscCall(VecDestroy(&f));
    PetscCall(VecDestroy(&xs));
    PetscCall(VecDestroy(&d));
    PetscCall(VecDestroy(&pb.xall));
    PetscCall(VecScatterDestroy(&pb.all));
    PetscCall(MatDestroy(&Jm));
    lj_jacplan_free(&pb.plan);
    lj_expr *all[] = { Xe, Ae, Be, XA, XAX, BX, lhs, Ce, F };
    for (int i = 0; i < 9; i++) lj_expr_free(&all[i]);
    lj_free(C);
    free(Xs), free(A), free(B), free(X0);
    lj_context_free(&ctx);
    PetscCall(PetscFinalize());
    return ok ? 0 : 1;
}
