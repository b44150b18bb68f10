/* lazyjac: Jacobians of matrix expressions as lazily composed structured
 * linear operators.
 *
 * ---------------------------------------------------------------------------
 * Conventions (they hold for every function below unless its comment says
 * otherwise)
 * ---------------------------------------------------------------------------
 * - Storage is column-major with an explicit leading dimension.
 *   vec(X) stacks columns: vec(X)[i + j*m] = X[i,j] for X m×n.
 * - For F (p×q) a function of X (m×n), J = d vec F / d vec X is (pq)×(mn).
 *   The gradient of a scalar f is reshape(J^T·1, m, n).
 * - K_{m,n} vec(A) = vec(A^T) for A m×n;  (A ⊗ B) vec(X) = vec(B X A^T).
 * - Dimensions, indices and nnz are int64_t. Sparse matrices are CHOLMOD's
 *   cholmod_sparse with SuiteSparse_long indices (the cholmod_l_* interface).
 * - Every function takes the context first. A function returning lj_status
 *   returns LJ_OK (0) or a negative code; a function returning a pointer
 *   returns NULL on failure. Either way the code and a message naming the
 *   operation and the shapes are recorded in the context
 *   (lj_context_status, lj_context_message). A NULL handle argument gives
 *   NULL out, so a chain of constructors may be checked once at its end.
 * - Ownership: a function that returns an lj_op* or lj_expr* returns a NEW
 *   reference, which the caller releases with lj_op_free / lj_expr_free.
 *   Arguments are BORROWED: constructors take their own reference to each
 *   child; the caller keeps (and releases) its handles. Numeric arrays are
 *   copied unless the function name ends in _borrow.
 * - Free functions take the address of the handle, accept NULL (and a
 *   pointer to NULL), and reset the handle to NULL.
 * - After a failure nothing was allocated that the caller must free, and no
 *   output argument was changed except where the comment says so.
 * - Operators and expressions are immutable once built (except for
 *   lj_expr_set_value on a leaf, see there); one operator may be applied
 *   from many threads at once, each thread with its own context. A context
 *   must not be used by two threads at once.
 * - The library never aborts, exits or prints.
 */
#ifndef LAZYJAC_H
#define LAZYJAC_H

#include <stddef.h>
#include <stdint.h>
#include <cholmod.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ----------------------------------------------------------------------- */
/* Versions, status codes, contexts                                          */
/* ----------------------------------------------------------------------- */

#define LJ_VERSION_MAJOR 0
#define LJ_VERSION_MINOR 1
#define LJ_VERSION_PATCH 0

typedef enum {
    LJ_OK = 0,
    LJ_ERR_NOMEM = -1,       /* an allocation failed */
    LJ_ERR_INVALID = -2,     /* a NULL, freed or otherwise invalid argument */
    LJ_ERR_SHAPE = -3,       /* shapes do not conform */
    LJ_ERR_OVERFLOW = -4,    /* a dimension product overflows int64 or BLAS's int */
    LJ_ERR_SINGULAR = -5,    /* a singular matrix */
    LJ_ERR_DOMAIN = -6,      /* a value outside a function's domain */
    LJ_ERR_IO = -7,          /* a file could not be opened, read or written */
    LJ_ERR_FORMAT = -8,      /* a file is malformed */
    LJ_ERR_PARSE = -9,       /* an expression does not parse */
    LJ_ERR_NAME = -10,       /* a name undeclared, or declared twice */
    LJ_ERR_UNSUPPORTED = -11,/* an operation the operator kind does not have */
    LJ_ERR_CHOLMOD = -12,    /* CHOLMOD reported an error */
    LJ_ERR_NOT_SCALAR = -13, /* a scalar expression was required */
    LJ_ERR_EXTERNAL = -14    /* another library (PETSc, MPI) reported an error */
} lj_status;

typedef struct lj_context lj_context;

/* Version of the library actually linked; string like "0.1.0". */
void lj_version(int *major, int *minor, int *patch);
const char *lj_version_string(void);

/* A short constant name for a status code ("shape mismatch", ...). */
const char *lj_status_string(lj_status s);

/* New context: owns a cholmod_common (long-index interface, printing off),
 * an error record and apply workspace. NULL only when memory runs out. */
lj_context *lj_context_new(void);
void lj_context_free(lj_context **ctx);
/* Gives back the memory the context keeps for reuse: the arrays of the
 * last large matrix freed with lj_sparse_free (see there). A dead or NULL
 * context is ignored. */
void lj_context_trim(lj_context *ctx);

/* The last error recorded in ctx: its code and message ("" when none). The
 * message is owned by the context and valid until the next call with it. */
lj_status lj_context_status(const lj_context *ctx);
const char *lj_context_message(const lj_context *ctx);
void lj_context_clear(lj_context *ctx);
/* Records an error in ctx (printf-style message, which should name the
 * operation, as lazyjac's own do) and returns code: for libraries built on
 * lazyjac (liblazyjac-petsc) and callbacks that report through a context.
 * code must be negative; LJ_OK clears the context instead. */
lj_status lj_context_set_error(lj_context *ctx, lj_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The context's cholmod_common (borrowed), for calling CHOLMOD on matrices
 * that lazyjac returns. */
cholmod_common *lj_context_cholmod(lj_context *ctx);

/* Testing aid: make the n-th allocation (counting from 1, from now on) made
 * through ctx fail, and every one after it while `sticky` is nonzero;
 * n = 0 turns failure injection off. Calls into CHOLMOD that allocate count
 * as allocations. Returns the number of allocations made since the last call. */
int64_t lj_context_fail_alloc(lj_context *ctx, int64_t n, int sticky);
/* Threads lazyjac's own loops may use in calls with ctx (Kronecker
 * materialisation, the transpose kernel behind commutations, multi-vector
 * applies): n >= 1, or 0 for the default, which is LJ_NUM_THREADS when
 * that is set (read when the context is made), else OMP_NUM_THREADS when
 * that is set, else one thread while OpenBLAS runs more than one pthread
 * of its own (its idle threads and lazyjac's would compete for the cores:
 * set OPENBLAS_NUM_THREADS=1 to give them to lazyjac), else one per core.
 * Results are the same bit for bit whatever the count. Without OpenMP
 * (configure --disable-openmp) there is one thread. BLAS threads are
 * BLAS's own (OPENBLAS_NUM_THREADS). */
lj_status lj_context_set_threads(lj_context *ctx, int n);
/* The number of threads a call with ctx would use now; -1 for a bad ctx. */
int lj_context_threads(const lj_context *ctx);

/* Memory returned by the library as plain arrays or strings (print results,
 * evaluated values, CSR views) is freed with lj_free. NULL is accepted. */
void lj_free(void *p);

/* ----------------------------------------------------------------------- */
/* Operators                                                                  */
/* ----------------------------------------------------------------------- */

typedef struct lj_op lj_op;

typedef enum {
    LJ_OP_IDENTITY, LJ_OP_ZERO, LJ_OP_SCALED, LJ_OP_DIAG, LJ_OP_DENSE,
    LJ_OP_SPARSE, LJ_OP_PERM, LJ_OP_COMMUTATION, LJ_OP_KRON, LJ_OP_COMPOSE,
    LJ_OP_SUM, LJ_OP_TRANSPOSE, LJ_OP_HSTACK, LJ_OP_VSTACK, LJ_OP_RANK1,
    LJ_OP_SAMPLED
} lj_op_kind;

/* Constructors. Each returns a new reference or NULL. `label` (may be NULL)
 * is the name a person gave the data ("W", "vec B"); it is copied and used
 * when printing. The smart constructors (scale, kron, compose, lincomb,
 * transpose) apply the rewriting rules of DESIGN.md, so the returned node
 * may be of another kind than the name says; its value is the same. */
lj_op *lj_op_identity(lj_context *ctx, int64_t n);
lj_op *lj_op_zero(lj_context *ctx, int64_t rows, int64_t cols);
lj_op *lj_op_diag(lj_context *ctx, int64_t n, const double *d, const char *label);
lj_op *lj_op_dense(lj_context *ctx, int64_t rows, int64_t cols, const double *a,
                   int64_t lda, const char *label);
/* Like lj_op_dense, but keeps a pointer to `a`, which the caller keeps alive
 * and unchanged for the operator's lifetime. */
lj_op *lj_op_dense_borrow(lj_context *ctx, int64_t rows, int64_t cols,
                          const double *a, int64_t lda, const char *label);
/* A copy of a real cholmod_sparse (long indices; packed or not, sorted or
 * not; a symmetric one is expanded to both triangles). */
lj_op *lj_op_sparse(lj_context *ctx, const cholmod_sparse *s, const char *label);
/* Permutation P with (P x)[i] = x[perm[i]]; perm is a permutation of 0..n-1. */
lj_op *lj_op_perm(lj_context *ctx, int64_t n, const int64_t *perm, const char *label);
/* Commutation K_{m,n}: (mn)×(mn), K_{m,n} vec(A) = vec(A^T) for A m×n. */
lj_op *lj_op_commutation(lj_context *ctx, int64_t m, int64_t n);
/* Rank one u v^T, u of length m, v of length n. */
lj_op *lj_op_rank1(lj_context *ctx, int64_t m, const double *u, const char *ulabel,
                   int64_t n, const double *v, const char *vlabel);
/* Sampled Kronecker product P_Ω·Diag(w)·(C ⊗ D), nnz×(q·p) for C n×q and
 * D m×p: row k maps vec X (X p×q) to w[k]·(D X C^T)[i[k], j[k]], with
 * 0 <= i[k] < m, 0 <= j[k] < n (repeats allowed); w NULL means ones. C and
 * D are each an identity or a dense block (or its transpose). Applied entry
 * by entry, O(nnz·(p or q)) plus one small GEMM, never forming C ⊗ D or the
 * m×n product: the Jacobian of a product sampled on a sparse pattern
 * (S .* (U*V') w.r.t. U is P_S·Diag(vec S)·(V ⊗ I)). `label` names the
 * P_Ω·Diag(w) part. Composed with a Kronecker product on the right it stays
 * one sampled node where the factors' products are again plain. */
lj_op *lj_op_sampled(lj_context *ctx, int64_t nnz, const int64_t *i, const int64_t *j,
                     const double *w, const lj_op *C, const lj_op *D, const char *label);

lj_op *lj_op_scale(lj_context *ctx, double alpha, const lj_op *a);
lj_op *lj_op_kron(lj_context *ctx, const lj_op *a, const lj_op *b);
lj_op *lj_op_kron_n(lj_context *ctx, int n, const lj_op *const *ops);
/* Product ops[0]·ops[1]···ops[n-1]. */
lj_op *lj_op_compose(lj_context *ctx, int n, const lj_op *const *ops);
lj_op *lj_op_mul(lj_context *ctx, const lj_op *a, const lj_op *b);
/* Σ coef[i]·ops[i]; coef NULL means all ones. */
lj_op *lj_op_lincomb(lj_context *ctx, int n, const double *coef, const lj_op *const *ops);
lj_op *lj_op_add(lj_context *ctx, const lj_op *a, const lj_op *b);
lj_op *lj_op_sub(lj_context *ctx, const lj_op *a, const lj_op *b);
lj_op *lj_op_transpose(lj_context *ctx, const lj_op *a);
/* [ops[0], ops[1], ...] side by side (equal rows) and stacked (equal cols). */
lj_op *lj_op_hstack(lj_context *ctx, int n, const lj_op *const *ops);
lj_op *lj_op_vstack(lj_context *ctx, int n, const lj_op *const *ops);

/* Rows [r0, r1) of J (0 <= r0 <= r1 <= rows), a new operator of
 * (r1 - r0)×cols built from J's structure: a Kronecker product's rows are
 * Kronecker products of its factors' rows, a product's are its first
 * factor's rows times the rest, a Diag's a block [0 Diag 0], a sum's its
 * terms' rows, and so on, so that applying the block costs about its share
 * of J and lj_op_to_sparse of it writes only those rows (what one rank of
 * a distributed Jacobian owns). The whole range gives J itself. */
lj_op *lj_op_row_block(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1);
/* Reference counting (atomic). retain returns its argument. */
lj_op *lj_op_retain(const lj_op *a);
void lj_op_free(lj_op **a);

/* Queries on a valid operator; a NULL or freed one gives -1 or 0. */
int64_t lj_op_rows(const lj_op *a);
int64_t lj_op_cols(const lj_op *a);
int lj_op_kind_of(const lj_op *a);          /* an lj_op_kind, or -1 */
const char *lj_op_kind_name(const lj_op *a); /* "kron", "diag", ... */
/* Children of composite kinds (borrowed); n_children 0 for leaves. */
int lj_op_n_children(const lj_op *a);
const lj_op *lj_op_child(const lj_op *a, int i);
/* Structural and numeric equality (same tree, same numbers). */
int lj_op_equal(const lj_op *a, const lj_op *b);
/* Number of stored entries of the materialised matrix: exact where the
 * structure determines it, an upper bound otherwise (*exact says which). */
int64_t lj_op_nnz(lj_context *ctx, const lj_op *a, int *exact);
/* Cost of one apply with one vector: floating-point operations and bytes
 * of operator data and vectors touched. */
lj_status lj_op_cost(lj_context *ctx, const lj_op *a, double *flops, double *bytes);

/* y <- alpha·op(J)·x + beta·y, op(J) = J (trans 0) or J^T (trans 1).
 * x and y must not overlap. beta = 0 ignores y's contents (NaN included).
 * Workspace comes from the context; after the first apply of a given
 * operator, further applies with the same context do not allocate. */
lj_status lj_op_apply(lj_context *ctx, const lj_op *J, int trans, double alpha,
                      const double *x, double beta, double *y);
/* The same for k vectors: X (cols×k, or rows×k when trans) with leading
 * dimension ldx, Y likewise with ldy. */
lj_status lj_op_apply_multi(lj_context *ctx, const lj_op *J, int trans, int64_t k,
                            double alpha, const double *X, int64_t ldx,
                            double beta, double *Y, int64_t ldy);

/* Printing. Returns a new NUL-terminated string (free with lj_free). An
 * operator shares subtrees, and written out a deep chain of them (the
 * Jacobian of a matrix power of a matrix power) can grow without bound: a
 * print (or tree) longer than LJ_PRINT_MAX bytes is cut and ends in "…"
 * ("..." in the plain form, "\ldots" in LaTeX, whose braces it does not
 * cut inside). The plain and LaTeX forms are ASCII. */
#define LJ_PRINT_MAX (1 << 20)
typedef enum { LJ_PRINT_UNICODE = 0, LJ_PRINT_PLAIN = 1, LJ_PRINT_LATEX = 2 } lj_print_format;
char *lj_op_print(lj_context *ctx, const lj_op *a, lj_print_format fmt);
/* The operator tree, one node a line, annotated with shape, nnz and cost.
 * It also validates every node's invariants (check-and-print) and fails with
 * LJ_ERR_INVALID naming the first bad node. */
char *lj_op_tree(lj_context *ctx, const lj_op *a);
/* The tree as a Graphviz DOT digraph. */
char *lj_op_dot(lj_context *ctx, const lj_op *a);
/* The structured form of J^T·1 for an operator with one row (a gradient),
 * written as a matrix of shape m×n: "(1_3 b^T) ∘ W". */
char *lj_op_print_gradient(lj_context *ctx, const lj_op *J, int64_t m, int64_t n,
                           lj_print_format fmt);

/* Verification. The dot test: relative gap |<Jx,y> - <x,J^T y>| / scale on
 * random x, y drawn from `seed`. */
lj_status lj_op_dot_test(lj_context *ctx, const lj_op *J, uint64_t seed, double *relgap);
/* Three-way check: apply and transpose-apply against the dense matrix made
 * from the exact sparse materialisation, and the dot test; *maxrel is the
 * largest relative discrepancy. For operators up to 2^24 entries. */
lj_status lj_op_check(lj_context *ctx, const lj_op *J, uint64_t seed, double *maxrel);

/* ----------------------------------------------------------------------- */
/* Materialisation and files                                                 */
/* ----------------------------------------------------------------------- */

/* Exact CSC matrix (long indices, sorted, packed, real), a new CHOLMOD
 * matrix owned by the caller: free with lj_sparse_free (or
 * cholmod_l_free_sparse with lj_context_cholmod(ctx)). The pattern is the
 * structural one the operator implies; numeric zeros are kept.
 *
 * Large results (arrays of 2 MiB or more) are written into memory on
 * transparent huge pages where the system offers them. lj_sparse_free
 * keeps the large arrays of the matrix it frees with the context (the
 * last matrix's only, and only up to an eighth of the machine's memory;
 * where CHOLMOD frees with the C library's free()), and the next large
 * result made with the context is written into them: a solver that
 * materialises J at every iteration then writes into pages it already
 * has instead of fresh ones, which the kernel must first fault in and
 * zero. lj_context_trim and lj_context_free give them back. */
cholmod_sparse *lj_op_to_sparse(lj_context *ctx, const lj_op *J);
void lj_sparse_free(lj_context *ctx, cholmod_sparse **s);
/* Remove stored entries with |value| <= tol (0 removes exact zeros). */
lj_status lj_sparse_prune(lj_context *ctx, cholmod_sparse *s, double tol);

/* CSR of J (that is, CSC of J^T): rowptr[rows+1], colind[nnz], values[nnz],
 * 0-based, each row's columns ascending. The arrays belong to the returned
 * structure, freed whole with lj_csr_free. */
typedef struct {
    int64_t rows, cols, nnz;
    int64_t *rowptr;
    int64_t *colind;
    double *values;
} lj_csr;
lj_csr *lj_op_to_csr(lj_context *ctx, const lj_op *J);
void lj_csr_free(lj_csr **csr);

/* J^T J, kept lazy (a new operator; nothing is multiplied out). */
lj_op *lj_op_normal(lj_context *ctx, const lj_op *J);
/* d[j] = (J^T J)_{jj} = ‖J e_j‖², for Jacobi preconditioning: computed from
 * the structure (Kronecker factors, Diag scalings, dense columns, stacks,
 * monomial factors) and, for the parts where it cannot be, from the exact
 * materialisation of that part alone. d has cols(J) entries. */
lj_status lj_op_normal_diag(lj_context *ctx, const lj_op *J, double *d);

/* Dense column-major copy of J into a (ld ≥ rows), for small operators. */
lj_status lj_op_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld);

/* Files. Matrix Market coordinate (real general, 1-based) or
 * Rutherford-Boeing for operators; Matrix Market array for dense data.
 * A failed write leaves no file behind at `path`. */
lj_status lj_op_write_mtx(lj_context *ctx, const lj_op *J, const char *path);
lj_status lj_op_write_rb(lj_context *ctx, const lj_op *J, const char *path,
                         const char *title, const char *key);
lj_status lj_write_dense_mtx(lj_context *ctx, int64_t rows, int64_t cols,
                             const double *a, int64_t lda, const char *path);

/* Readers. Their memory follows what a file holds, never what its header
 * claims: a declared count that the file's size cannot hold is reported as
 * a truncated file (LJ_ERR_FORMAT) before anything is allocated, and
 * structure a file declares but does not hold (the column pointers of a
 * very wide sparse matrix, the dense form of a coordinate file) may take at
 * most 64 MiB or 64 bytes per byte of the file (1 GiB for a dense form),
 * whichever is larger; beyond that the read fails with LJ_ERR_NOMEM and a
 * message naming the shape and the bytes it would need.
 *
 * A dense matrix read from a Matrix Market file (array, or coordinate which
 * is scattered into a dense array, duplicates summed): *data is new, freed
 * with lj_free. */
lj_status lj_read_dense_mtx(lj_context *ctx, const char *path, int64_t *rows,
                            int64_t *cols, double **data);
/* A sparse matrix read from a Matrix Market file (coordinate or array;
 * symmetric files expanded; duplicate entries summed, in file order;
 * explicit zeros kept): a new CSC matrix (sorted, packed), free with
 * lj_sparse_free. Memory O(nnz + cols), never O(rows): a tall matrix with
 * few entries is cheap. */
cholmod_sparse *lj_read_sparse_mtx(lj_context *ctx, const char *path);
/* A sparse matrix read from a Rutherford-Boeing file (real, assembled).
 * RBio needs workspace for every row and column, so the bounds above apply
 * to both dimensions. */
cholmod_sparse *lj_read_sparse_rb(lj_context *ctx, const char *path);

/* ----------------------------------------------------------------------- */
/* Expressions and derivatives                                               */
/* ----------------------------------------------------------------------- */

typedef struct lj_expr lj_expr;

/* Elementwise functions. Where f is not differentiable the derivative
 * follows PyTorch: abs'(0) = relu'(0) = 0, sign' = 0; sqrt at 0 and asin,
 * acos at ±1 (infinite slopes) are LJ_ERR_DOMAIN. */
typedef enum {
    LJ_FN_EXP, LJ_FN_LOG, LJ_FN_SIN, LJ_FN_COS, LJ_FN_TANH, LJ_FN_SQRT,
    LJ_FN_ABS, LJ_FN_SIGN, LJ_FN_RELU, LJ_FN_TAN, LJ_FN_ASIN, LJ_FN_ACOS, LJ_FN_ATAN,
    LJ_FN_SINH, LJ_FN_COSH, LJ_FN_SIGMOID, LJ_FN_SOFTPLUS, LJ_FN_LOG1P, LJ_FN_EXPM1
} lj_func;

/* Leaves: a named matrix of a given shape with values (copied; NULL means
 * zeros). A variable is what one differentiates with respect to; a constant
 * never is. Names are copied; they label printed Jacobians. */
lj_expr *lj_expr_var(lj_context *ctx, const char *name, int64_t rows, int64_t cols,
                     const double *values);
lj_expr *lj_expr_const(lj_context *ctx, const char *name, int64_t rows, int64_t cols,
                       const double *values);
lj_expr *lj_expr_scalar(lj_context *ctx, double value);
/* Sparse leaves: S's pattern and values (real, int64 indices; copied, a
 * symmetric S expanded, unsorted columns sorted; duplicate entries are an
 * error, as CHOLMOD's CSC has none: sum them first, as lj_read_sparse_mtx
 * does). The value of a sparse leaf is its stored entries in CSC order,
 * explicit zeros included: a sparse variable's free entries are exactly
 * its pattern, and J = d vec(e)/d var has one column per stored entry.
 * The _borrow forms read S's arrays in place (S must be packed, sorted,
 * unsymmetric, and outlive the expression; lj_expr_set_value writes S->x).
 *
 * Operations keep a sparse value sparse where the result is: S', -S, a·S,
 * S/s, S.^p (p > 0), f(S) for f(0) = 0, vec S, S .* X and s*S (S's
 * pattern), S .* T (the intersection), S ± T (the union), S*T (CHOLMOD's
 * product). S*X and X*S are dense (through cholmod_l_sdmult), and tr, sum,
 * norm1, norm2, diag read the stored entries. Other operations (exp(S),
 * S + X, inv(S)) have a dense result and read S as a dense matrix. A sparse
 * result's value, and its rows of J, are its stored entries in CSC order
 * (lj_expr_nvalues of them). */
lj_expr *lj_expr_const_sparse(lj_context *ctx, const char *name, const cholmod_sparse *S);
lj_expr *lj_expr_var_sparse(lj_context *ctx, const char *name, const cholmod_sparse *S);
lj_expr *lj_expr_const_sparse_borrow(lj_context *ctx, const char *name, cholmod_sparse *S);
lj_expr *lj_expr_var_sparse_borrow(lj_context *ctx, const char *name, cholmod_sparse *S);
/* Replace the values of a leaf (lj_expr_nvalues of them: rows×cols, or a
 * sparse leaf's stored entries). Expressions built on it see the
 * new values at their next evaluation or differentiation; operators already
 * built keep the values they were built with. (A Jacobian reads a dense
 * leaf's numbers in place: while one holds them, the leaf takes new
 * storage for its new values, and LJ_ERR_NOMEM when there is none leaves
 * the leaf as it was.) */
lj_status lj_expr_set_value(lj_context *ctx, lj_expr *leaf, const double *values);
/* Declare a square constant symmetric (its values are checked: exactly
 * equal to their transpose, else LJ_ERR_INVALID naming an entry that
 * differs). Gradient expressions then use A^T = A: tr(X'*A*X) gives 2·A·X,
 * one product, where (A^T + A)·X costs two. A sparse constant made from a
 * symmetric CHOLMOD matrix (stype != 0) is declared symmetric already.
 * lj_expr_set_value on a declared constant refuses values that are not
 * symmetric (a borrowed matrix's values must stay symmetric too). */
lj_status lj_expr_declare_symmetric(lj_context *ctx, lj_expr *leaf);
int lj_expr_is_symmetric(const lj_expr *e);

/* Operations. Shapes are checked here; a 1×1 operand broadcasts in add,
 * sub, hadamard and hdiv; mul accepts a 1×1 operand on either side as a
 * scalar multiple. */
lj_expr *lj_expr_add(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_sub(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_neg(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_scale(lj_context *ctx, double alpha, lj_expr *a);
lj_expr *lj_expr_mul(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_hadamard(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_hdiv(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_div_scalar(lj_context *ctx, lj_expr *a, lj_expr *s); /* a / s, s 1×1 */
lj_expr *lj_expr_pow(lj_context *ctx, lj_expr *a, double p);           /* a .^ p */
lj_expr *lj_expr_kron(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_transpose(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_trace(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_sum(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_vec(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_diag(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_func(lj_context *ctx, lj_func f, lj_expr *a);
lj_expr *lj_expr_inv(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_det(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_logdet(lj_context *ctx, lj_expr *a);
lj_expr *lj_expr_norm2(lj_context *ctx, lj_expr *a);   /* Frobenius norm */
lj_expr *lj_expr_norm1(lj_context *ctx, lj_expr *a);   /* entrywise 1-norm Σ|a_ij| */
/* max(a, b) and min(a, b) elementwise (a 1×1 operand broadcasts); at ties
 * the derivative is shared evenly, ½ to each operand (PyTorch's maximum). */
lj_expr *lj_expr_max(lj_context *ctx, lj_expr *a, lj_expr *b);
lj_expr *lj_expr_min(lj_context *ctx, lj_expr *a, lj_expr *b);
/* a^b for 1×1 a and b (the language's '^' on scalars). */
lj_expr *lj_expr_power(lj_context *ctx, lj_expr *a, lj_expr *b);
/* A^n for a square A and an integer n, |n| <= LJ_MPOWER_MAX (the language's
 * '^' on a square matrix): a product by repeated squaring over shared nodes,
 * printed A^n. A^0 is eye(n); A^-n is inv(A)^n. */
#define LJ_MPOWER_MAX 1024
lj_expr *lj_expr_mpower(lj_context *ctx, lj_expr *a, int64_t n);
/* The n×n identity, a constant. */
lj_expr *lj_expr_eye(lj_context *ctx, int64_t n);

lj_expr *lj_expr_retain(lj_expr *e);
void lj_expr_free(lj_expr **e);
int64_t lj_expr_rows(const lj_expr *e);
int64_t lj_expr_cols(const lj_expr *e);
const char *lj_expr_name(const lj_expr *e);  /* a leaf's name, else NULL */
int lj_expr_is_var(const lj_expr *e);
int lj_expr_is_sparse(const lj_expr *e);     /* the value lives on a pattern */
/* The length of e's value: rows·cols, or the stored entries of a sparse
 * value; the rows of J = d e / d var, and a variable's columns of J. */
int64_t lj_expr_nvalues(const lj_expr *e);
/* The expression written in the expression language (new string). */
char *lj_expr_print(lj_context *ctx, const lj_expr *e);

/* Value of e: *values is new (rows×cols, column-major; a sparse value is
 * scattered into it), free with lj_free. */
lj_status lj_expr_eval(lj_context *ctx, const lj_expr *e, int64_t *rows, int64_t *cols,
                       double **values);
/* The value of a sparse e as a new CHOLMOD matrix (sorted, packed; free
 * with lj_sparse_free); LJ_ERR_INVALID for a dense value. */
cholmod_sparse *lj_expr_eval_sparse(lj_context *ctx, const lj_expr *e);

/* J = d vec e / d vec var, a new operator. A variable e does not depend on
 * gives the zero operator of the right shape. J's dense blocks and Diags
 * that are a dense leaf's values read the leaf's numbers in place (no copy,
 * no second array in memory); lj_expr_set_value leaves J's numbers as
 * they were. Those that are values computed on the way (A·X in
 * Diag(vec(A·X))) keep the arrays they were computed into. */
lj_op *lj_expr_jacobian(lj_context *ctx, const lj_expr *e, const lj_expr *var);
/* [J_1, J_2, ...] for several variables, as a horizontal block stack. */
lj_op *lj_expr_jacobian_n(lj_context *ctx, const lj_expr *e, int nvars,
                          const lj_expr *const *vars);
/* A Jacobian plan: the analysis of e for the given variables (topological
 * order, which nodes depend on which variable, a buffer for every node's
 * value) done once, for solvers that need J again and again as the leaves
 * change (lj_expr_set_value). lj_jacplan_eval evaluates every node once at
 * the leaves' current values, writes e's value to `value` (lj_expr_nvalues(e),
 * may be NULL) and returns J (a block row [J_1, …] for several variables).
 * A plan keeps its own references to e and the variables; it must not be
 * used by two threads at once.
 *
 * The first evaluation builds J and records how its numbers follow from
 * the values. When the caller has released the previous J (lj_op_free),
 * the next evaluation updates that J's numbers in place and returns it
 * again, recomputing only what depends on a leaf that changed: the cost of
 * the numbers, not of building the tree. It builds J anew instead when the
 * previous J (or any part of it) is still held, so an operator the caller
 * keeps never changes; when a value-dependent rewrite would now come out
 * differently (a Diag that became all ones is I); and for derivatives
 * whose numbers no recorded step computes (sparse values, scalings by a
 * value, a norm's derivative): those are built at every evaluation.
 * lj_jacplan_rebuilt says which happened. */
typedef struct lj_jacplan lj_jacplan;
lj_jacplan *lj_jacplan_new(lj_context *ctx, const lj_expr *e, int nvars, const lj_expr *const *vars);
lj_op *lj_jacplan_eval(lj_context *ctx, lj_jacplan *plan, double *value);
void lj_jacplan_free(lj_jacplan **plan);
/* 1 when the last lj_jacplan_eval built J anew, 0 when it updated the
 * previous J in place, -1 before any evaluation or for a bad plan; *why
 * (may be NULL) gets a sentence saying why it built ("the first
 * evaluation", "the previous J was still held", ...). */
int lj_jacplan_rebuilt(const lj_jacplan *plan, const char **why);
/* How many evaluations built J and how many updated it (either may be NULL). */
lj_status lj_jacplan_counts(lj_context *ctx, const lj_jacplan *plan, int64_t *builds, int64_t *updates);

/* Gradient of a 1×1 expression, in var's shape (rows×cols of var, written to
 * g with leading dimension var rows; for a sparse var, its stored entries in
 * CSC order). It evaluates the gradient expression (lj_expr_gradient_expr)
 * straight into g, each intermediate value freed after its last use and a
 * scaled product computed with its factor: tr(X'*L*X) for a sparse L
 * declared symmetric costs one cholmod_l_sdmult, 2·L·X. Where a derivative
 * is not finite (sqrt at 0) or the expression cannot be evaluated, the
 * answer and the error are those of J^T·1 through the lazy Jacobian. */
lj_status lj_expr_gradient(lj_context *ctx, const lj_expr *e, const lj_expr *var, double *g);

/* Derivatives as expressions. The gradient of a 1×1 f with respect to a
 * dense variable x, as a new expression of x's shape built by reverse mode
 * from each operation's adjoint rule and simplified the way one writes it
 * by hand: tr(A·X·B) gives A^T·B^T, x'*A*x gives (A + A^T)·x,
 * log(det(X)) gives X^{-T}, det(X) gives det(X)·X^{-T}. It evaluates like
 * any expression (the numbers of lj_expr_gradient, to rounding), prints with
 * lj_expr_print_math, and can be differentiated again. A variable f does
 * not depend on gives the zero matrix. For a sparse variable S the gradient
 * lives on S's pattern: P_S ∘ G, with P_S the constant of ones on the
 * pattern (its stored values are lj_expr_gradient's, in CSC order). */
lj_expr *lj_expr_gradient_expr(lj_context *ctx, const lj_expr *f, const lj_expr *x);
/* The Hessian d vec(∇f) / d vec x: the Jacobian of the gradient expression,
 * a lazy structured operator (Hessian-vector products through lj_op_apply;
 * exact materialisation through lj_op_to_sparse). tr(X'*A*X) gives
 * I ⊗ (A + A^T). For several variables, the block operator of the mixed
 * second derivatives [H_ij] = d vec(∇_i f) / d vec x_j. */
lj_op *lj_expr_hessian(lj_context *ctx, const lj_expr *f, const lj_expr *x);
lj_op *lj_expr_hessian_n(lj_context *ctx, const lj_expr *f, int nvars, const lj_expr *const *vars);
/* An expression in mathematical notation: Unicode (A^T·x, X^{-T}, A ∘ B,
 * ‖A‖_F, a b^T), plain (the expression language where it has the
 * operation: A'*x, inv(X)', A.*B, norm2(A)) or LaTeX (new string). In
 * Unicode and LaTeX a constant vector of ones prints as 1_n, as in printed
 * Jacobians; with wrt (the variable of a derivative; may be NULL) so does
 * any other leaf that is a vector of ones. */
char *lj_expr_print_math(lj_context *ctx, const lj_expr *e, const lj_expr *wrt, lj_print_format fmt);

/* Central finite differences: compares the operator J (or, when J is NULL,
 * the Jacobian built here) with (f(x + h e_j) - f(x - h e_j)) / 2h column by
 * column. Reports the largest entrywise error relative to max(1, |J|_max)
 * and the overall relative Frobenius error. h <= 0 picks cbrt(eps)·scale. */
lj_status lj_expr_fd_check(lj_context *ctx, const lj_expr *e, lj_expr *var,
                           const lj_op *J, double h, double *max_rel, double *fro_rel);

/* ----------------------------------------------------------------------- */
/* The expression language                                                   */
/* ----------------------------------------------------------------------- */

/* A table of named leaves (borrowed by lj_parse; the table keeps its own
 * references). */
typedef struct lj_symtab lj_symtab;
lj_symtab *lj_symtab_new(lj_context *ctx);
void lj_symtab_free(lj_symtab **t);
/* Add a leaf under its own name; LJ_ERR_NAME if the name is taken. */
lj_status lj_symtab_add(lj_context *ctx, lj_symtab *t, lj_expr *leaf);
lj_expr *lj_symtab_get(const lj_symtab *t, const char *name); /* borrowed or NULL */
int lj_symtab_size(const lj_symtab *t);
lj_expr *lj_symtab_at(const lj_symtab *t, int i);               /* borrowed */

/* Parse `text` with names bound in `t`. When the failure has a place in the
 * text, *errpos (if not NULL) gets the 0-based byte offset of it: the
 * offending character of a syntax error (LJ_ERR_PARSE) or an undeclared
 * name (LJ_ERR_NAME), the operator or function whose operands do not
 * conform (LJ_ERR_SHAPE, LJ_ERR_OVERFLOW, LJ_ERR_DOMAIN); otherwise (out of
 * memory, invalid arguments) -1. */
lj_expr *lj_parse(lj_context *ctx, const char *text, const lj_symtab *t, int64_t *errpos);
/* "  A*(B\n     ^" style two-line rendering of the line of `text` that holds
 * byte `pos`, with a caret under it (new string). A line longer than 100
 * characters is shown as a window around pos, cut with "…". */
char *lj_caret(const char *text, int64_t pos);

#ifdef __cplusplus
}
#endif
#endif /* LAZYJAC_H */
