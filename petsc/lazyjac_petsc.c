/* liblazyjac-petsc: lazyjac operators as PETSc matrices (lazyjac_petsc.h
 * says what and why; DESIGN.md's PETSc layer). Built on lazyjac's public
 * API alone; the core library knows nothing of PETSc. */
#include "config.h"
#include "lazyjac_petsc.h"
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------ */

lj_status lj_petsc_status(lj_context *ctx, PetscErrorCode ierr, const char *op)
{
    if (!ierr) return LJ_OK;
    const char *text = NULL;
    PetscErrorMessage(ierr, &text, NULL);
    return lj_context_set_error(ctx, LJ_ERR_EXTERNAL, "%s: PETSc error %d: %s", op ? op : "petsc", (int)ierr,
                                text ? text : "(no message)");
}

/* A PETSc call inside a lazyjac-style function: on an error, the status
 * and PETSc's message go to ctx and control to the function's cleanup. */
#define PTRY(call)                                                                  \
    do {                                                                            \
        PetscErrorCode e_ = (call);                                                 \
        if (e_) {                                                                   \
            st = lj_petsc_status(ctx, e_, op);                                      \
            goto done;                                                              \
        }                                                                           \
    } while (0)
#define MTRY(call)                                                                  \
    do {                                                                            \
        int e_ = (call);                                                            \
        if (e_ != MPI_SUCCESS) {                                                    \
            st = lj_context_set_error(ctx, LJ_ERR_EXTERNAL, "%s: MPI error %d in %s", op, e_, #call); \
            goto done;                                                              \
        }                                                                           \
    } while (0)

/* A lazyjac failure inside a PETSc callback: PETSC_ERR_LIB with lazyjac's
 * message, so that KSP, SNES or the caller see why. */
#define LJ_TO_PETSC(ctx, st)                                                        \
    do {                                                                            \
        if ((st) != LJ_OK) SETERRQ(PETSC_COMM_SELF, PETSC_ERR_LIB, "lazyjac: %s", lj_context_message(ctx)); \
    } while (0)

/* ---- layouts ------------------------------------------------------------------ */

/* [r0, r1) of PETSc's default split of m rows on comm (st on failure). */
static lj_status split(lj_context *ctx, const char *op, MPI_Comm comm, int64_t m, int64_t *r0, int64_t *r1)
{
    lj_status st = LJ_OK;
    if (m > PETSC_MAX_INT) {
        return lj_context_set_error(ctx, LJ_ERR_OVERFLOW,
                                    "%s: %" PRId64 " rows or columns exceed PETSc's index type (PetscInt, %d bytes)",
                                    op, m, (int)sizeof(PetscInt));
    }
    PetscInt loc = PETSC_DECIDE, glob = (PetscInt)m;
    PTRY(PetscSplitOwnership(comm, &loc, &glob));
    long long l = loc, before = 0;
    int rank;
    MTRY(MPI_Comm_rank(comm, &rank));
    MTRY(MPI_Exscan(&l, &before, 1, MPI_LONG_LONG, MPI_SUM, comm));
    if (rank == 0) before = 0; /* MPI_Exscan leaves rank 0's result undefined */
    *r0 = before;
    *r1 = before + loc;
done:
    return st;
}

lj_status lj_petsc_row_range(lj_context *ctx, MPI_Comm comm, int64_t m, int64_t *r0, int64_t *r1)
{
    const char *op = "petsc_row_range";
    if (!r0 || !r1) return lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    if (m < 0) return lj_context_set_error(ctx, LJ_ERR_SHAPE, "%s: negative row count %" PRId64, op, m);
    return split(ctx, op, comm, m, r0, r1);
}

/* A collective function's local steps may fail on one rank and not on
 * another; before the next collective step all ranks learn whether any
 * failed (st is this rank's status; the result is LJ_OK everywhere or an
 * error everywhere). */
static lj_status agree(lj_context *ctx, const char *op, MPI_Comm comm, lj_status st)
{
    int mine = st, worst = st;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
        return st != LJ_OK ? st : lj_context_set_error(ctx, LJ_ERR_EXTERNAL, "%s: MPI_Allreduce failed", op);
    if (st == LJ_OK && worst != LJ_OK)
        return lj_context_set_error(ctx, (lj_status)worst, "%s: failed on another rank (%s)", op,
                                    lj_status_string((lj_status)worst));
    return st;
}

/* Every rank passed an operator of the same shape (collective; LJ_ERR_SHAPE
 * on all ranks otherwise). */
static lj_status same_shape(lj_context *ctx, const char *op, MPI_Comm comm, const lj_op *J)
{
    lj_status st = LJ_OK;
    long long mine[2] = { lj_op_rows(J), lj_op_cols(J) }, lo[2], hi[2];
    MTRY(MPI_Allreduce(mine, lo, 2, MPI_LONG_LONG, MPI_MIN, comm));
    MTRY(MPI_Allreduce(mine, hi, 2, MPI_LONG_LONG, MPI_MAX, comm));
    if (lo[0] != hi[0] || lo[1] != hi[1])
        st = lj_context_set_error(ctx, LJ_ERR_SHAPE,
                                  "%s: the ranks passed operators of different shapes (%lld×%lld here; rows from "
                                  "%lld to %lld, columns from %lld to %lld)",
                                  op, mine[0], mine[1], lo[0], hi[0], lo[1], hi[1]);
done:
    return st;
}

/* ---- the shell ------------------------------------------------------------------ */

typedef struct {
    lj_context *ctx;      /* the shell's own: it outlives the caller's */
    lj_op *J, *Jl;        /* the operator and this rank's row block */
    int64_t m, n, r0, r1, c0, c1;
    int flags, size;
    MPI_Comm comm;
    VecScatter scat;      /* x gathered whole (several ranks) */
    Vec xall;
    double *z;            /* n doubles: J^T y before the sum over ranks */
} shell;

static PetscErrorCode shell_mult_impl(Mat A, Vec x, Vec y, bool add)
{
    shell *s;
    PetscCall(MatShellGetContext(A, &s));
    const double *xa;
    double *ya;
    Vec src = x;
    if (s->size > 1) {
        PetscCall(VecScatterBegin(s->scat, x, s->xall, INSERT_VALUES, SCATTER_FORWARD));
        PetscCall(VecScatterEnd(s->scat, x, s->xall, INSERT_VALUES, SCATTER_FORWARD));
        src = s->xall;
    }
    PetscCall(VecGetArrayRead(src, &xa));
    PetscCall(add ? VecGetArray(y, &ya) : VecGetArrayWrite(y, &ya));
    lj_status st = lj_op_apply(s->ctx, s->Jl, 0, 1.0, xa, add ? 1.0 : 0.0, ya);
    PetscCall(add ? VecRestoreArray(y, &ya) : VecRestoreArrayWrite(y, &ya));
    PetscCall(VecRestoreArrayRead(src, &xa));
    LJ_TO_PETSC(s->ctx, st);
    return 0;
}

static PetscErrorCode shell_mult(Mat A, Vec x, Vec y)
{
    return shell_mult_impl(A, x, y, false);
}

static PetscErrorCode shell_mult_add(Mat A, Vec x, Vec y, Vec z)
{
    if (z != y) PetscCall(VecCopy(y, z));
    return shell_mult_impl(A, x, z, true);
}

/* out (column layout) <- J^T y (+ out): this rank's block transposed, the
 * sum over the ranks by one allreduce of n doubles */
static PetscErrorCode shell_mult_t_impl(Mat A, Vec y, Vec out, bool add)
{
    shell *s;
    PetscCall(MatShellGetContext(A, &s));
    const double *ya;
    double *oa;
    PetscCall(VecGetArrayRead(y, &ya));
    PetscCall(add ? VecGetArray(out, &oa) : VecGetArrayWrite(out, &oa));
    lj_status st;
    if (s->size == 1) {
        st = lj_op_apply(s->ctx, s->Jl, 1, 1.0, ya, add ? 1.0 : 0.0, oa);
    } else {
        st = lj_op_apply(s->ctx, s->Jl, 1, 1.0, ya, 0.0, s->z);
        if (st == LJ_OK) {
            int e = MPI_Allreduce(MPI_IN_PLACE, s->z, (int)s->n, MPI_DOUBLE, MPI_SUM, s->comm);
            if (e != MPI_SUCCESS) st = lj_context_set_error(s->ctx, LJ_ERR_EXTERNAL, "apply_t: MPI error %d", e);
        }
        if (st == LJ_OK)
            for (int64_t j = s->c0; j < s->c1; j++) oa[j - s->c0] = (add ? oa[j - s->c0] : 0.0) + s->z[j];
    }
    PetscCall(add ? VecRestoreArray(out, &oa) : VecRestoreArrayWrite(out, &oa));
    PetscCall(VecRestoreArrayRead(y, &ya));
    LJ_TO_PETSC(s->ctx, st);
    return 0;
}

static PetscErrorCode shell_mult_t(Mat A, Vec y, Vec x)
{
    return shell_mult_t_impl(A, y, x, false);
}

static PetscErrorCode shell_mult_t_add(Mat A, Vec y, Vec w, Vec z)
{
    if (z != w) PetscCall(VecCopy(w, z));
    return shell_mult_t_impl(A, y, z, true);
}

/* diag(J^T J) into d (column layout): each rank's rows' part, summed */
static PetscErrorCode shell_normal_diagonal(Mat A, Vec d)
{
    shell *s;
    PetscCall(MatShellGetContext(A, &s));
    PetscInt nl;
    PetscCall(VecGetLocalSize(d, &nl));
    PetscCheck(nl == s->c1 - s->c0, PETSC_COMM_SELF, PETSC_ERR_ARG_SIZ,
               "lazyjac: the diagonal of J^T J has the column layout (%" PetscInt_FMT " local entries here, not %" PetscInt_FMT
               "): a vector of MatCreateVecs' first kind", (PetscInt)(s->c1 - s->c0), nl);
    double *da;
    PetscCall(VecGetArrayWrite(d, &da));
    double *z = s->size == 1 ? da : s->z;
    lj_status st = lj_op_normal_diag(s->ctx, s->Jl, z);
    if (st == LJ_OK && s->size > 1) {
        int e = MPI_Allreduce(MPI_IN_PLACE, z, (int)s->n, MPI_DOUBLE, MPI_SUM, s->comm);
        if (e != MPI_SUCCESS) st = lj_context_set_error(s->ctx, LJ_ERR_EXTERNAL, "normal_diag: MPI error %d", e);
        if (st == LJ_OK) memcpy(da, z + s->c0, (size_t)(s->c1 - s->c0) * sizeof *da);
    }
    PetscCall(VecRestoreArrayWrite(d, &da));
    LJ_TO_PETSC(s->ctx, st);
    return 0;
}

static void shell_free(shell *s)
{
    if (!s) return;
    lj_op_free(&s->Jl);
    lj_op_free(&s->J);
    if (s->scat) VecScatterDestroy(&s->scat);
    if (s->xall) VecDestroy(&s->xall);
    free(s->z);
    lj_context_free(&s->ctx);
    free(s);
}

static PetscErrorCode shell_destroy(Mat A)
{
    shell *s;
    PetscCall(MatShellGetContext(A, &s));
    shell_free(s);
    return 0;
}

lj_status lj_petsc_matshell(lj_context *ctx, const lj_op *J, MPI_Comm comm, int flags, Mat *A)
{
    const char *op = "petsc_matshell";
    lj_status st = LJ_OK;
    shell *s = NULL;
    Vec xt = NULL;
    Mat M = NULL;
    PetscPushErrorHandler(PetscReturnErrorHandler, NULL); /* PETSc's errors come back to us, unprinted */
    if (!A) st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    else if (lj_op_rows(J) < 0) st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: J is %s", op, J ? "not a live operator" : "NULL");
    else if (flags & ~LJ_PETSC_NORMAL_DIAGONAL) st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: unknown flags %#x", op, flags);
    if (A) *A = NULL;
    if ((st = agree(ctx, op, comm, st)) != LJ_OK) goto done;
    if ((st = same_shape(ctx, op, comm, J)) != LJ_OK) goto done;
    s = calloc(1, sizeof *s);
    if (!s) {
        st = lj_context_set_error(ctx, LJ_ERR_NOMEM, "%s: out of memory", op);
        goto done;
    }
    s->m = lj_op_rows(J);
    s->n = lj_op_cols(J);
    s->flags = flags;
    s->comm = comm;
    MTRY(MPI_Comm_size(comm, &s->size));
    if ((st = split(ctx, op, comm, s->m, &s->r0, &s->r1)) != LJ_OK) goto done;
    if ((st = split(ctx, op, comm, s->n, &s->c0, &s->c1)) != LJ_OK) goto done;
    if (!(s->ctx = lj_context_new())) {
        st = lj_context_set_error(ctx, LJ_ERR_NOMEM, "%s: out of memory", op);
        goto done;
    }
    s->J = lj_op_retain(J);
    if (!(s->Jl = lj_op_row_block(s->ctx, J, s->r0, s->r1)))
        st = lj_context_set_error(ctx, lj_context_status(s->ctx), "%s: %s", op, lj_context_message(s->ctx));
    if (s->size > 1 && st == LJ_OK && !(s->z = malloc(sizeof *s->z * (size_t)(s->n ? s->n : 1))))
        st = lj_context_set_error(ctx, LJ_ERR_NOMEM, "%s: out of memory for %" PRId64 " doubles", op, s->n);
    if ((st = agree(ctx, op, comm, st)) != LJ_OK) goto done;
    PTRY(MatCreateShell(comm, (PetscInt)(s->r1 - s->r0), (PetscInt)(s->c1 - s->c0), (PetscInt)s->m, (PetscInt)s->n, s, &M));
    PTRY(MatShellSetOperation(M, MATOP_MULT, (void (*)(void))shell_mult));
    PTRY(MatShellSetOperation(M, MATOP_MULT_ADD, (void (*)(void))shell_mult_add));
    PTRY(MatShellSetOperation(M, MATOP_MULT_TRANSPOSE, (void (*)(void))shell_mult_t));
    PTRY(MatShellSetOperation(M, MATOP_MULT_TRANSPOSE_ADD, (void (*)(void))shell_mult_t_add));
    if (flags & LJ_PETSC_NORMAL_DIAGONAL)
        PTRY(MatShellSetOperation(M, MATOP_GET_DIAGONAL, (void (*)(void))shell_normal_diagonal));
    if (s->size > 1) {
        PTRY(MatCreateVecs(M, &xt, NULL));
        PTRY(VecScatterCreateToAll(xt, &s->scat, &s->xall));
    }
    /* from here the Mat owns s */
    PTRY(MatShellSetOperation(M, MATOP_DESTROY, (void (*)(void))shell_destroy));
    s = NULL;
    PTRY(MatAssemblyBegin(M, MAT_FINAL_ASSEMBLY));
    PTRY(MatAssemblyEnd(M, MAT_FINAL_ASSEMBLY));
    *A = M;
    M = NULL;
done:
    if (xt) VecDestroy(&xt);
    if (M) MatDestroy(&M);
    shell_free(s);
    PetscPopErrorHandler();
    return st;
}

/* The shell of A if lazyjac made it (its MatMult is ours), else NULL. */
static shell *shell_of(Mat A)
{
    if (!A) return NULL;
    PetscBool is;
    void (*f)(void) = NULL;
    if (PetscObjectTypeCompare((PetscObject)A, MATSHELL, &is) || !is) return NULL;
    if (MatShellGetOperation(A, MATOP_MULT, &f) || f != (void (*)(void))shell_mult) return NULL;
    shell *s = NULL;
    if (MatShellGetContext(A, &s)) return NULL;
    return s;
}

lj_context *lj_petsc_matshell_context(Mat A)
{
    PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
    shell *s = shell_of(A);
    PetscPopErrorHandler();
    return s ? s->ctx : NULL;
}

lj_status lj_petsc_matshell_reset(lj_context *ctx, Mat A, const lj_op *K)
{
    const char *op = "petsc_matshell_reset";
    lj_status st = LJ_OK;
    PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
    shell *s = shell_of(A);
    lj_op *Kl = NULL;
    MPI_Comm comm = PETSC_COMM_SELF;
    if (!s)
        st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: the Mat is not a shell made by lj_petsc_matshell", op);
    else if (lj_op_rows(K) < 0)
        st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: K is %s", op, K ? "not a live operator" : "NULL");
    if (A) PetscObjectGetComm((PetscObject)A, &comm);
    if ((st = agree(ctx, op, comm, st)) != LJ_OK) goto done;
    if ((st = same_shape(ctx, op, s->comm, K)) != LJ_OK) goto done;
    if (lj_op_rows(K) != s->m || lj_op_cols(K) != s->n) {
        st = lj_context_set_error(ctx, LJ_ERR_SHAPE, "%s: K is (%" PRId64 "×%" PRId64 "), the shell (%" PRId64 "×%" PRId64 ")",
                                  op, lj_op_rows(K), lj_op_cols(K), s->m, s->n);
        goto done;
    }
    if (!(Kl = lj_op_row_block(s->ctx, K, s->r0, s->r1)))
        st = lj_context_set_error(ctx, lj_context_status(s->ctx), "%s: %s", op, lj_context_message(s->ctx));
    if ((st = agree(ctx, op, s->comm, st)) != LJ_OK) goto done;
    lj_op_free(&s->Jl);
    lj_op_free(&s->J);
    s->Jl = Kl;
    Kl = NULL;
    s->J = lj_op_retain(K);
    /* a new assembly: the Mat's state moves on, so that KSP and PC see a
     * new operator */
    PTRY(MatAssemblyBegin(A, MAT_FINAL_ASSEMBLY));
    PTRY(MatAssemblyEnd(A, MAT_FINAL_ASSEMBLY));
done:
    lj_op_free(&Kl);
    PetscPopErrorHandler();
    return st;
}

/* ---- AIJ -------------------------------------------------------------------------- */

lj_status lj_petsc_aij(lj_context *ctx, const lj_op *J, MPI_Comm comm, Mat *A)
{
    const char *op = "petsc_aij";
    lj_status st = LJ_OK;
    lj_op *Jl = NULL;
    lj_csr *csr = NULL;
    PetscInt *pi = NULL, *pj = NULL;
    Mat M = NULL;
    int64_t m = lj_op_rows(J), n = lj_op_cols(J), r0 = 0, r1 = 0, c0 = 0, c1 = 0;
    int size;
    PetscPushErrorHandler(PetscReturnErrorHandler, NULL);
    if (!A) st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: NULL output", op);
    else if (m < 0) st = lj_context_set_error(ctx, LJ_ERR_INVALID, "%s: J is %s", op, J ? "not a live operator" : "NULL");
    if (A) *A = NULL;
    if ((st = agree(ctx, op, comm, st)) != LJ_OK) goto done;
    if ((st = same_shape(ctx, op, comm, J)) != LJ_OK) goto done;
    MTRY(MPI_Comm_size(comm, &size));
    if ((st = split(ctx, op, comm, m, &r0, &r1)) != LJ_OK) goto done;
    if ((st = split(ctx, op, comm, n, &c0, &c1)) != LJ_OK) goto done;
    /* this rank's rows alone, materialised as CSR (local steps: agreed on
     * before the collective ones) */
    if (!(Jl = lj_op_row_block(ctx, J, r0, r1)) || !(csr = lj_op_to_csr(ctx, Jl)))
        st = lj_context_status(ctx);
    else if (csr->nnz > PETSC_MAX_INT)
        st = lj_context_set_error(ctx, LJ_ERR_OVERFLOW,
                                  "%s: this rank's %" PRId64 " rows hold %" PRId64 " entries, more than PETSc's index "
                                  "type (PetscInt, %d bytes) counts",
                                  op, r1 - r0, csr->nnz, (int)sizeof(PetscInt));
    else if (!(pi = malloc(sizeof *pi * (size_t)(r1 - r0 + 1))) || !(pj = malloc(sizeof *pj * (size_t)(csr->nnz ? csr->nnz : 1))))
        st = lj_context_set_error(ctx, LJ_ERR_NOMEM, "%s: out of memory for the CSR indices of %" PRId64 " entries", op,
                                  csr->nnz);
    if ((st = agree(ctx, op, comm, st)) != LJ_OK) goto done;
    for (int64_t i = 0; i <= r1 - r0; i++) pi[i] = (PetscInt)csr->rowptr[i];
    for (int64_t q = 0; q < csr->nnz; q++) pj[q] = (PetscInt)csr->colind[q];
    PTRY(MatCreate(comm, &M));
    PTRY(MatSetSizes(M, (PetscInt)(r1 - r0), (PetscInt)(c1 - c0), (PetscInt)m, (PetscInt)n));
    PTRY(MatSetType(M, size == 1 ? MATSEQAIJ : MATMPIAIJ));
    /* each copies the arrays, inserts the values and assembles (the one of
     * the other type does nothing) */
    PTRY(MatSeqAIJSetPreallocationCSR(M, pi, pj, csr->values));
    PTRY(MatMPIAIJSetPreallocationCSR(M, pi, pj, csr->values));
    *A = M;
    M = NULL;
done:
    if (M) MatDestroy(&M);
    free(pi);
    free(pj);
    lj_csr_free(&csr);
    lj_op_free(&Jl);
    PetscPopErrorHandler();
    return st;
}
