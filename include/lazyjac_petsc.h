/* lazyjac inside PETSc: lazyjac operators as PETSc matrices, on one rank
 * and on many (liblazyjac-petsc; pkg-config lazyjac-petsc).
 *
 * Conventions, besides lazyjac.h's:
 * - Every function is collective on comm: each rank passes the same
 *   operator (built from the same data) and gets its part. Rank k of p
 *   owns the contiguous block of J's rows PETSc's default layout gives it
 *   (PetscSplitOwnership), and the same split of J's columns for the input
 *   vectors; lj_petsc_row_range tells which.
 * - Functions return an lj_status with the reason in ctx; a PETSc or MPI
 *   error becomes LJ_ERR_EXTERNAL with PETSc's message. In the other
 *   direction a lazyjac error inside MatMult (or any operation of a shell)
 *   is returned to PETSc as PETSC_ERR_LIB carrying lazyjac's message.
 * - The Mat is new and owned by the caller (MatDestroy); it keeps its own
 *   references to what it needs, so the caller may release J and ctx.
 * - PetscInt is PETSc's index type (32-bit in Debian's build): a matrix
 *   whose sizes or nnz do not fit it is refused with LJ_ERR_OVERFLOW.
 *
 * The distributed lazy product: J x on rank k is J's row block applied to
 * x gathered whole on every rank (VecScatterCreateToAll), and J^T y is
 * each rank's block transposed applied to its part of y, summed over the
 * ranks by one MPI_Allreduce over the columns. The column space is thus
 * replicated on every rank: memory n doubles a rank, and one allgather or
 * allreduce of n doubles a product, which bounds the method to Jacobians
 * whose column count fits a rank (the rows, where the data and the work
 * are, are what is distributed). A column-distributed variant would need
 * the operator's column blocks as well (J = [J_1 … J_p], a rank's part of
 * x entering only J_k) and a reduce-scatter of the products, or for
 * Kronecker structure the 2-D distribution of vec(X) by blocks. */
#ifndef LAZYJAC_PETSC_H
#define LAZYJAC_PETSC_H
#include <lazyjac.h>
#include <petscmat.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Options of lj_petsc_matshell. */
enum {
    /* MatGetDiagonal gives diag(J^T J) = ‖J e_j‖², the column norms a
     * normal-equation method (LSQR, CGLS) preconditions with; without it a
     * shell has no MatGetDiagonal. */
    LJ_PETSC_NORMAL_DIAGONAL = 1
};

/* A MATSHELL for J (m×n) on comm: MatMult, MatMultTranspose, MatMultAdd,
 * MatMultTransposeAdd, MatGetDiagonal (with LJ_PETSC_NORMAL_DIAGONAL) and
 * MatCreateVecs (PETSc's default layouts) call lazyjac; vectors are used
 * in place (VecGetArray), with no copy on one rank. */
lj_status lj_petsc_matshell(lj_context *ctx, const lj_op *J, MPI_Comm comm, int flags, Mat *A);
/* Replaces the operator of a shell made by lj_petsc_matshell with K, of
 * the same shape (a Newton iteration's new Jacobian; the shell is the
 * same Mat for SNES). Collective. */
lj_status lj_petsc_matshell_reset(lj_context *ctx, Mat A, const lj_op *K);
/* The context a shell reports through (borrowed; for its error messages
 * and lj_context_fail_alloc in tests), or NULL for another Mat. */
lj_context *lj_petsc_matshell_context(Mat A);
/* The exact J as an AIJ matrix: MATSEQAIJ on one rank, MATMPIAIJ on
 * several, each rank materialising only its own block of rows
 * (lj_op_row_block), never the whole J. */
lj_status lj_petsc_aij(lj_context *ctx, const lj_op *J, MPI_Comm comm, Mat *A);
/* [r0, r1): the rows of an m-row operator this rank owns on comm. */
lj_status lj_petsc_row_range(lj_context *ctx, MPI_Comm comm, int64_t m, int64_t *r0, int64_t *r1);
/* A PETSc error code as a lazyjac status: LJ_OK for 0, else
 * LJ_ERR_EXTERNAL recorded in ctx with PETSc's message and op. */
lj_status lj_petsc_status(lj_context *ctx, PetscErrorCode ierr, const char *op);

#ifdef __cplusplus
}
#endif
#endif
