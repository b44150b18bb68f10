/* The operator object: a common header plus one const table of functions per
 * kind, each kind in its own file. */
#ifndef LJI_OP_H
#define LJI_OP_H

#include "../core/lji.h"

/* Printing contexts: where a node stands decides whether it needs
 * parentheses. */
typedef enum {
    LJI_AT_TOP = 0,   /* the whole expression, or a function argument */
    LJI_AT_KRON,      /* a factor of ⊗ */
    LJI_AT_COMPOSE,   /* a factor of · */
    LJI_AT_SUM,       /* a term of + */
    LJI_AT_TIGHT      /* under ^T or a scalar factor */
} lji_place;

typedef lj_status (*lji_apply_fn)(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                                  const double *X, int64_t ldx, double beta, double *Y, int64_t ldy);

typedef struct lji_kind {
    lj_op_kind id;
    const char *name;
    /* Y <- alpha·op(J)·X + beta·Y for k columns; beta = 0 overwrites Y. */
    lj_status (*apply)(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                       const double *X, int64_t ldx, double beta, double *Y, int64_t ldy);
    /* exact CSC (sorted, packed), allocated with ctx's cholmod_common */
    cholmod_sparse *(*to_sparse)(lj_context *ctx, const lj_op *J);
    /* the whole matrix written into a (ld >= rows), every entry; NULL: from
     * the CSC (lji_to_dense) */
    lj_status (*to_dense)(lj_context *ctx, const lj_op *J, double *a, int64_t ld);
    /* rows [r0, r1) of J as a new operator (0 <= r0 < r1 <= rows, not all
     * of them); NULL: a selection times J (rows.c) */
    lj_op *(*rows)(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1);
    int64_t (*nnz)(const lj_op *J, bool *exact);
    /* flops and bytes for one apply of one vector */
    void (*cost)(const lj_op *J, double *flops, double *bytes);
    void (*print)(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where);
    /* payload equality; kinds, shapes and children are compared by the caller */
    bool (*equal)(const lj_op *a, const lj_op *b);
} lji_kind;

struct lj_op {
    uint32_t magic;
    atomic_long refs;
    const lji_kind *kind;
    int64_t rows, cols;
    /* structural and numeric hash, for like-term collection and equality:
     * computed when first asked for (lji_op_hash), 0 until then, so that
     * building a node that is never compared costs no pass over its data */
    _Atomic uint64_t hash;
    /* nnz (exact or a bound) and the cost of one apply, computed when the
     * node is sealed from its children's: queries and the Kronecker apply's
     * choice of association are O(1), and a DAG is never walked for them */
    int64_t nnz;
    bool nnz_exact;
    double flops, bytes;
    char *label, *label2; /* names a person gave the data */
    int nchild;
    lj_op **child;
    double *coef;         /* sum: one per child */
    double alpha;         /* scaled */
    double *data, *data2; /* dense (ld), diag (n), rank-one u and v */
    int64_t ld;
    bool borrowed;        /* data is the caller's */
    /* data lies in this value block (a leaf's, read in place), which the
     * node holds a reference to: dense blocks and Diag of lji_op_*_shared */
    lji_vblock *keep;
    int64_t m, n;         /* commutation K_{m,n} */
    int64_t *idx;         /* permutation */
    cholmod_sparse sp;    /* sparse: header over arrays this node owns */
    lj_op *next_dead;     /* work list while freeing */
    /* the fused apply kernel and its parameters (fused.c): NULL until the
     * node's first apply chooses it (lji_kernel), then the choice, which
     * may be "none" (the kind's apply) */
    _Atomic(struct lji_fused *) fused;
    /* the end of the node's allocation, and its extra part (lji_op_new_ext):
     * children, data and labels inside it are freed with the node */
    char *block_end, *extra;
    /* a node whose numbers a Jacobian plan's tape recomputes (tape.c): the
     * tape's generation and the step that writes them; 0 otherwise */
    uint64_t tgen;
    int tstep;
};

/* ---- tapes (tape.c): how a Jacobian plan updates J in place ----------------
 *
 * While a plan builds J (lj_jacplan_eval), ctx->tape records, for every
 * node whose numbers come from the expression's values, a step that
 * recomputes them from the plan's value buffers: a copy of a value, an
 * elementwise derivative of values, the product of two such Diags, a dense
 * product multiplied out. Steps write into the nodes' own arrays; the tape
 * holds references to every node it writes or reads. Decisions a rule made
 * on such numbers (a Diag of ones is I, a "1_n" label) are recorded as
 * guards: a guard that no longer holds means a fresh build would give
 * another structure, and the plan rebuilds. A rule that combines recorded
 * numbers and has no step for it breaks the tape (lji_tape_break): the plan
 * then builds J anew at every evaluation, as it always may. */
typedef double (*lji_elem2_fn)(double x, double y, double p);
enum { LJI_STEP_COPY = 1, /* dst(rows×cols, ldd) <- x(rows×cols, ldx) */
       LJI_STEP_ELEM,     /* dst[i] <- f(x[i or 0], y[i or 0], p), i < rows */
       LJI_STEP_DIAGPROD, /* dst[i] <- x[i]·y[i], i < rows */
       LJI_STEP_DENSE,    /* dst(rows×cols, ldd) <- op written densely */
       LJI_STEP_FUNC,     /* dst[i] <- f1(x[i]), i < rows; ok1 and ok2 guard x[i] */
       LJI_STEP_ONES,     /* guard: (x[0..rows) all ones) == expect */
       LJI_STEP_UNEQUAL,  /* guard: op and op2 (terms of one sum) still differ */
       LJI_STEP_TRANSPOSE, /* dst(cols×rows, ldd) <- x(rows×cols, ldx)^T */
       LJI_STEP_LINCOMB };  /* dst[i] <- q·x[i] + p·y[i], i < rows */
typedef struct lji_step {
    int type;
    double *dst;
    int64_t rows, cols, ldd;
    const double *x, *y;
    int64_t ldx, xn, yn;
    double p, q;
    lji_elem2_fn f;
    double (*f1)(double);
    bool (*ok1)(double), (*ok2)(double);
    const lj_op *op, *op2; /* DENSE: a lazy product the tape holds; UNEQUAL: two terms */
    int64_t node[2];     /* plan nodes whose values it reads, or -1 */
    int src[2];          /* earlier steps whose output it reads, or -1 */
    bool expect;         /* ONES */
    bool dirty;          /* while running: a source changed */
} lji_step;
typedef struct lji_tape lji_tape;
lji_tape *lji_tape_new(lj_context *ctx);
void lji_tape_free(lji_tape **t);
/* the tape being recorded on ctx: NULL when none or broken */
lji_tape *lji_tape_on(const lj_context *ctx);
/* the recording cannot be replayed (why: a static string) */
void lji_tape_break(lj_context *ctx, const char *why);
bool lji_tape_broken(const lji_tape *t, const char **why);
/* an allocation for the tape failed: the error is on ctx, and the
 * evaluation that recorded it fails like any out of memory */
bool lji_tape_nomem(const lji_tape *t);
/* a's numbers are written by a step of ctx's tape */
bool lji_tape_vol(const lj_context *ctx, const lj_op *a);
/* some node under a (a included) is */
bool lji_tape_reaches(const lj_context *ctx, const lj_op *a);
/* a and b (equal) are equal without comparing recorded numbers: they are
 * the same nodes wherever a step writes one (true without a tape) */
bool lji_tape_same_nodes(const lj_context *ctx, const lj_op *a, const lj_op *b);
/* A guard that x[0..n) is all ones (expect) or not: read from plan node
 * `node` or written by step `src` (either -1). */
void lji_tape_guard_ones(lj_context *ctx, const double *x, int64_t n, int64_t node, int src, bool expect);
/* a and b, two terms of a sum that were not merged, could become like
 * terms when numbers change: a guard that they still differ */
void lji_tape_guard_unequal(lj_context *ctx, const lj_op *a, const lj_op *b);
/* the step writing a's numbers, or -1 (a recorded node, a constant) */
int lji_tape_step_of(const lj_context *ctx, const lj_op *a);
/* Appends st; `owner` (the node st writes, or NULL for a guard) becomes
 * volatile; `keep` (may be NULL) is a node the step reads, held. Returns the
 * step's index, or -1 (the tape breaks: no memory). */
int lji_tape_add(lj_context *ctx, const lji_step *st, const lj_op *owner, const lj_op *keep);
/* r = Diag(f(x, y)) of two Diags, recomputed by step st (its type and
 * function set; numbers, sources and the nodes held filled in here), and
 * a guard that it stays a Diag (not all ones); the tape breaks with `why`
 * when r is already I. */
void lji_tape_diag_of_two(lj_context *ctx, lji_step *st, const lj_op *x, const lj_op *y, const lj_op *r,
                          const char *why);
/* After the build: the nodes of J the steps change (the written ones and
 * their ancestors, children first) and their reference counts, which must
 * be the same at replay (nobody else holds them); one reference to J is
 * the caller's, who releases it before the next evaluation. */
lj_status lji_tape_seal(lj_context *ctx, lji_tape *t, const lj_op *J);
/* Replay: is J (sealed) held by nobody but the plan? */
bool lji_tape_free_to_write(const lji_tape *t);
/* Runs the steps whose sources changed (changed[i] for plan node i) and
 * re-hashes the changed nodes. Returns LJ_OK; 1 when a guard failed (the
 * tree is then inconsistent and must be dropped; *why says which); an
 * error status (recorded on ctx) when a step failed. */
int lji_tape_run(lj_context *ctx, lji_tape *t, const unsigned char *changed, double *const *vals,
                 const char **why);
/* Forgets a node's hash (computed again when asked for) and recomputes its
 * fused kernel's parameters after its numbers changed (structure, nnz and
 * cost stay). */
void lji_op_rehash(lj_op *a);
/* The node's hash (struct lj_op), computed at the first call. */
uint64_t lji_op_hash(const lj_op *a);
void lji_refresh_kernel(lj_op *J);

/* Terms a fused kernel takes from a sum at most. */
#define LJI_FUSED_TERMS 4
/* J's fused apply kernel, or NULL: the kind's apply. Chosen at the first
 * call for J, from any thread (without memory for it, J applies as its
 * kind does and the next call chooses again). */
lji_apply_fn lji_kernel(const lj_op *J);
/* frees J's kernel (J dies) */
void lji_kernel_free(lj_op *J);

#define LJI_OP_MAGIC 0x4c4a4f50u /* "LJOP" */

/* Products and sums with more factors or terms than this are not flattened
 * into a new product or sum: they stand as one factor, so that building the
 * Jacobian of a long chain of products or sums costs time linear in its
 * length (flattening would copy the whole list at every step). */
#define LJI_FLATTEN_MAX 16

extern const lji_kind lji_kind_identity, lji_kind_zero, lji_kind_scaled, lji_kind_diag,
    lji_kind_dense, lji_kind_sparse, lji_kind_perm, lji_kind_commutation, lji_kind_kron,
    lji_kind_compose, lji_kind_sum, lji_kind_transpose, lji_kind_hstack, lji_kind_vstack,
    lji_kind_rank1, lji_kind_sampled;

/* P_Ω·Diag(w)·(C ⊗ D)·(E ⊗ F) as one sampled node, or NULL when the
 * products CE, DF are not identities or dense blocks (*fail on an error). */
lj_op *lji_sampled_times_kron(lj_context *ctx, const lj_op *x, const lj_op *y, bool *fail);
/* diag(J^T J) of a sampled node, without materialising it */
void lji_sampled_colnorms2(const lj_op *J, double *d);

static inline bool lji_op_ok(const lj_op *a)
{
    return a && a->magic == LJI_OP_MAGIC;
}
static inline bool lji_is(const lj_op *a, const lji_kind *k)
{
    return a->kind == k;
}

/* Handing references over. Each reference count changed is an atomic
 * read-modify-write (about 6 ns), and building a Jacobian makes dozens of
 * nodes, each made by a call such as r = lj_op_mul(ctx, L, R) after which
 * the caller frees L: a retain inside the call and a release after it.
 * lji_hand_over(ctx, a, b) offers the caller's own references to a and b
 * (b may be NULL) to the constructor it calls next, which takes one
 * wherever it would retain that operator (lji_take_ref); lji_hand_back
 * returns what was not taken, for the caller to free as before, and
 * empties the offer. Offers do not nest: lji_hand_over returns false,
 * offering nothing, while one is open. */
static inline bool lji_hand_over(lj_context *ctx, lj_op *a, lj_op *b)
{
    if (ctx->handed[0] || ctx->handed[1]) return false;
    ctx->handed[0] = a;
    ctx->handed[1] = b;
    return true;
}
static inline void lji_hand_back(lj_context *ctx, bool offered, lj_op **a, lj_op **b)
{
    if (!offered) return;
    *a = ctx->handed[0];
    if (b) *b = ctx->handed[1];
    ctx->handed[0] = ctx->handed[1] = NULL;
}
/* A reference to a for the node being made: the one handed over, else a
 * new one. */
static inline lj_op *lji_take_ref(lj_context *ctx, const lj_op *a)
{
    for (int k = 0; k < 2; k++)
        if (a && ctx->handed[k] == a) {
            ctx->handed[k] = NULL;
            return (lj_op *)a;
        }
    return lj_op_retain(a);
}

/* A new node of kind k with shape rows×cols and room for nchild children
 * (each retained by the caller into child[i]). */
lj_op *lji_op_new(lj_context *ctx, const lji_kind *k, int64_t rows, int64_t cols, int nchild,
                  const char *op);
/* The same with `extra` bytes after the header and children (64-byte
 * aligned, uninitialised, at a->extra) for the node's data and labels, so
 * that a leaf is one allocation. */
lj_op *lji_op_new_ext(lj_context *ctx, const lji_kind *k, int64_t rows, int64_t cols, int nchild,
                      size_t extra, const char *op);
/* Copies label to *at (inside a->extra), advances *at, returns the copy
 * (NULL for a NULL label). */
char *lji_op_put_label(lj_op *a, char **at, const char *label);
/* Computes the node's nnz and cost once it is filled in (its hash waits
 * until something asks for it). */
void lji_op_seal(lj_op *a);
/* Common checks of a constructor's arguments: a live context and live
 * operators. Records and returns an error, or LJ_OK. */
lj_status lji_check_args(lj_context *ctx, const char *op, int n, const lj_op *const *ops);
/* Constructors for operands the library made itself (live, of this
 * context): lj_op_kron, lj_op_transpose and lj_op_mul without
 * lji_check_args, which a Jacobian's build would run at every node. */
lj_op *lji_op_kron_nc(lj_context *ctx, const lj_op *a, const lj_op *b);
lj_op *lji_op_transpose_nc(lj_context *ctx, const lj_op *a);
lj_op *lji_op_mul_nc(lj_context *ctx, const lj_op *a, const lj_op *b);

/* A product the chain rule has not made a node of yet: the factors (new
 * references, left to right) of what would be a product node of shape
 * rows×cols. A Jacobian's build passes L·J[c] on to c's parent this way
 * when the parent is its only user, so that the parent's product takes
 * the factors as they are instead of a node it would flatten and free
 * (the result is the same node: the factors are those the product's
 * rules left). */
#define LJI_CHAIN_MAX 8
typedef struct {
    int n;
    int64_t rows, cols;
    lj_op *f[LJI_CHAIN_MAX];
} lji_chain;
/* ops[0..n)'s product, the references passed to it: an operator, or NULL
 * with out->n > 0 where it leaves a chain (out->n = 0 and NULL: failure) */
lj_op *lji_compose_chain(lj_context *ctx, int n, lj_op *const *ops, lji_chain *out);
/* the product node of c's factors (c emptied); NULL when out of memory */
lj_op *lji_chain_finish(lj_context *ctx, lji_chain *c);
void lji_chain_free(lji_chain *c);

/* Dispatch without re-checking arguments (used by composite kinds). */
lj_status lji_apply(lj_context *ctx, const lj_op *J, bool trans, int64_t k, double alpha,
                    const double *X, int64_t ldx, double beta, double *Y, int64_t ldy);
/* Sums of large terms (a sum's, or an hstack's blocks) on several threads:
 * term(c, J, i, …) applies term i as lji_apply would (Y <- alpha·T_i X +
 * beta·Y). The terms fall into up to LJI_TERM_GROUPS groups, fixed by the
 * number of terms alone; each group is summed in order into its own
 * buffer (the first into Y), the groups on as many threads as there are,
 * and the buffers added to Y in order: the result is the same bit for bit
 * on any number of threads. Returns 1 and sets *st when it applied J, 0
 * when J is too small to be worth it (the caller applies term by term). */
#define LJI_TERM_GROUPS 4
typedef lj_status (*lji_term_fn)(lj_context *c, const lj_op *J, int i, bool trans, int64_t k, double alpha,
                                 const double *X, int64_t ldx, double beta, double *Y, int64_t ldy);
int lji_apply_terms(lj_context *ctx, const lj_op *J, int n, lji_term_fn term, bool trans, int64_t k, double alpha,
                    const double *X, int64_t ldx, double beta, double *Y, int64_t ldy, lj_status *st);
/* Blocks of output written by independent applies (a vstack's), on
 * several threads where they are large: block(c, J, i, …) applies block i.
 * Returns 1 and sets *st when it applied J, 0 when it did not. */
int lji_apply_blocks(lj_context *ctx, const lj_op *J, int n, lji_term_fn block, bool trans, int64_t k,
                     double alpha, const double *X, int64_t ldx, double beta, double *Y, int64_t ldy,
                     lj_status *st);

/* Y <- alpha·X·op(A)^T + beta·Y, X r×(cols of op(A)), Y r×(rows of op(A)). */
lj_status lji_apply_right(lj_context *ctx, const lj_op *A, bool trans, int64_t r, double alpha,
                          const double *X, int64_t ldx, double beta, double *Y, int64_t ldy);
/* Y <- beta·Y over an r×k block (beta 0 writes zeros). */
void lji_scale_block(int64_t r, int64_t k, double beta, double *Y, int64_t ldy);

cholmod_sparse *lji_to_sparse(lj_context *ctx, const lj_op *J);
/* Coefficients that are symbols (scaled.c). A scaled node with a label
 * prints the label where its number would be ("s·I_9" for a named scalar
 * s, never its value). Numbers stay outside such a node: c·(s·A), never
 * a node labelled "c·s", so that s·A − s·A cancel as like terms. Rules
 * that fold scalings together collect them in an lji_coef: num the
 * product of the plain numbers, salpha that of the symbols' values and
 * sym their labels' product. lji_coef_apply scales a by it (and frees
 * sym); lji_scale_sym is lj_op_scale with the coefficient's label (NULL:
 * a plain number). */
typedef struct {
    double num, salpha;
    char *sym;
    bool failed;
} lji_coef;
void lji_coef_take(lj_context *ctx, lji_coef *c, const lj_op *scaled);
lj_op *lji_coef_apply(lj_context *ctx, lji_coef *c, const lj_op *a);
lj_op *lji_scale_sym(lj_context *ctx, double alpha, const char *sym, const lj_op *a);
/* whether two symbols are powers of one core (s^2 and 1/s, (u)^2 and u),
 * which a product of them multiplies out */
bool lji_sym_same_core(const char *p, const char *q);
/* the label of a coefficient where it multiplies: parenthesised unless it
 * reads as one factor (a sum or a quotient does not) */
void lji_put_coef_label(lji_buf *b, const char *label, lj_print_format fmt);
/* A dense block (rows×cols at a, leading dimension lda) and Diag(d) read
 * in place from value block keep (a leaf's numbers, lji_vblock), which the
 * node holds on to: no copy. Nothing may write keep's numbers while the
 * node lives (a leaf takes a new block first: lji_leaf_own). */
/* label^T as a label: "X^T" for an atom X, "X" for an atom "X^T",
 * "X^{-T}" for "X^{-1}" and back, a product's transposed factors
 * (lji_label_product_transposed), "(vec x)^T" otherwise; written into buf (cap bytes) when it fits, else
 * into new memory, *own (NULL when none); NULL for no memory */
const char *lji_label_transposed_to(lj_context *ctx, const char *label, char *buf, size_t cap, char **own);
lj_op *lji_op_dense_shared(lj_context *ctx, int64_t rows, int64_t cols, const double *a, int64_t lda,
                           const char *label, lji_vblock *keep);
lj_op *lji_op_diag_shared(lj_context *ctx, int64_t n, const double *d, const char *label, lji_vblock *keep);
/* Row blocks (rows.c): J[r0:r1, :] by the kinds' rules (lji_rows; the
 * whole range gives J itself); a label "W(4:7,:)" for a block of a leaf;
 * M placed at columns [r0, r1) of an r×n block, [0 M 0] (M consumed);
 * rows of a CSC matrix; an r×n operator with one entry a row. */
lj_op *lji_rows(lj_context *ctx, const lj_op *J, int64_t r0, int64_t r1);
char *lji_rows_label(lj_context *ctx, const char *label, int64_t r0, int64_t r1, bool cols);
lj_op *lji_place_cols(lj_context *ctx, lj_op *M, int64_t r0, int64_t r1, int64_t n);
/* For a = [0 M 0] (an hstack of M between zero blocks, either may be
 * absent): M (borrowed) and its columns [*c0, *c1); else NULL. */
const lj_op *lji_placed_middle(const lj_op *a, int64_t *c0, int64_t *c1);
cholmod_sparse *lji_csc_rows(lj_context *ctx, const cholmod_sparse *s, int64_t r0, int64_t r1);
lj_op *lji_rows_one_per_row(lj_context *ctx, int64_t r, int64_t n, const int64_t *col, const double *v,
                            const char *label);

/* J written densely into a (ld >= rows): the kind's to_dense where it has
 * one, else its CSC scattered; lji_zero_block clears an r×c block. */
lj_status lji_to_dense(lj_context *ctx, const lj_op *J, double *a, int64_t ld);
void lji_zero_block(int64_t r, int64_t c, double *a, int64_t ld);
/* Diag(rs)·(A ⊗ B)·Diag(cs) (rs, cs may be NULL) for a Kronecker node J,
 * in the one pass that writes A ⊗ B: the scalings cost no pass of their
 * own and no second matrix. */
cholmod_sparse *lji_kron_to_sparse_scaled(lj_context *ctx, const lj_op *J, const double *rs, const double *cs);
/* Where a row goes or a column comes from, and its scale (the maps of
 * monomial factors, compose.c) */
typedef struct {
    int64_t to;
    double w;
} lji_map;
/* The columns of Diag(rs)·(A ⊗ B) in cm's order, each scaled: column c is
 * column cm[c].to times cm[c].w (rs may be NULL), written in one pass as
 * lji_kron_to_sparse_scaled writes A ⊗ B, with no matrix before it. */
cholmod_sparse *lji_kron_to_sparse_mapped(lj_context *ctx, const lj_op *J, const double *rs, const lji_map *cm);
/* allocation of a CSC result through CHOLMOD, with failure injection */
cholmod_sparse *lji_sparse_alloc(lj_context *ctx, int64_t rows, int64_t cols, int64_t nz,
                                 const char *op);
/* For the walk of J that materialises it (lj_op_to_sparse, lj_op_to_csr,
 * lj_op_to_dense): nodes that two or more parents in J share are
 * materialised once (lji_to_sparse keeps them). *mine when this call
 * opened the memo, which lji_memo_close(ctx, mine) then frees; none is
 * opened inside another's walk. LJ_ERR_NOMEM (op's) when out of memory. */
lj_status lji_memo_open(lj_context *ctx, const lj_op *J, const char *op, bool *mine);
void lji_memo_close(lj_context *ctx, bool mine);
/* The result of a CHOLMOD call (ssmult, add, transpose, a reader) made
 * canonical: packed, every column's rows strictly ascending, s->sorted set.
 * CHOLMOD's own flags are not trusted: SuiteSparse 7 returns sorted=0 from
 * ssmult where SuiteSparse 5 sorted, so the columns are checked and sorted
 * only where they need it, in place when packed (room for one column).
 * On failure s is freed and NULL returned. */
cholmod_sparse *lji_sparse_canon(lj_context *ctx, cholmod_sparse *s, const char *op);
/* Each column of packed s whose rows are not ascending sorted in place;
 * wi and wx hold the longest such column (may be NULL when none is longer
 * than 32 entries). */
void lji_sparse_sort_columns(cholmod_sparse *s, int64_t *wi, double *wx);
/* One column's len rows ascending, its values with them (wi and wx hold
 * len entries; unused, and may be NULL, for len <= 32). */
void lji_sort_column(int64_t *ii, double *xx, int64_t len, int64_t *wi, double *wx);
/* A CSC matrix with every entry of J's shape stored (values left to fill). */
cholmod_sparse *lji_sparse_full(lj_context *ctx, const lj_op *J, const char *what);
/* The sum of the children's costs. */
void lji_cost_of_children(const lj_op *J, double *flops, double *bytes);
/* The node's stored nnz and cost (lji_op_seal computed them). */
int64_t lji_nnz(const lj_op *J, bool *exact);
void lji_cost(const lj_op *J, double *flops, double *bytes);
void lji_print(lji_buf *b, const lj_op *J, lj_print_format fmt, lji_place where);
bool lji_equal(const lj_op *a, const lj_op *b);

/* Printing pieces in the three notations. */
/* lji_buf_finish for a buffer with limit LJ_PRINT_MAX: a cut text ends in "…" */
char *lji_buf_finish_capped(lji_buf *b, const char *op, lj_print_format fmt);
const char *lji_sym_ellipsis(lj_print_format fmt);
void lji_put_open(lji_buf *b, bool paren);
void lji_put_close(lji_buf *b, bool paren);
void lji_put_label(lji_buf *b, const char *label, lj_print_format fmt);
/* the first len bytes of label, as lji_put_label */
void lji_put_label_n(lji_buf *b, const char *label, size_t len, lj_print_format fmt);
void lji_put_name_latex(lji_buf *b, const char *name, size_t len);
/* A function of the language (exp, sigmoid, logdet, tr, …) as each
 * notation writes it; lji_fn_form_of(name, n) is NULL where the n bytes at
 * name are not one. */
typedef struct {
    const char *name, *unicode, *latex;
} lji_fn_form;
const lji_fn_form *lji_fn_form_of(const char *name, size_t n);
/* true when a label needs no parentheses before ^T: no operator outside
 * its own parentheses or braces ("W", "(X·A)", "A^{-1}", not "vec B") */
bool lji_label_is_atomic(const char *label);
/* the same for the first n bytes */
bool lji_label_is_atomic_n(const char *label, size_t n);
/* The longest label a Diag gets from combining others' (a ∘ b, a − b)
 * before it is cut to a head and "…": bounded, so that long chains of
 * diagonal factors or terms stay linear; long enough for the two halves of
 * a second derivative, each as the rules write it */
#define LJI_DIAG_LABEL_MAX 256
void lji_put_label_head(lji_buf *b, const char *label, const char *more);
bool lji_label_is_sum(const char *label);
/* the same for the first n bytes */
bool lji_label_is_sum_n(const char *label, size_t n);
/* the length of a whole number or a fraction as numbers print, and its
 * dot, leading s ("2·(vec X)^T", "−3·x^T", "(2/3)·I_3", in fmt's symbols;
 * not LaTeX's \frac), the number in *k; 0 where s does not start with
 * one or is a sum at its top level */
size_t lji_leading_number(const char *s, lj_print_format fmt, double *k);
/* the same inside the parentheses that wrap the whole label, if they do */
bool lji_label_is_sum_inside(const char *label);
/* "(…)" as one pair of parentheses around the whole label ("(A)·(B)" is not) */
bool lji_label_is_wrapped(const char *label);
/* the same for the first n bytes */
bool lji_label_is_wrapped_n(const char *label, size_t n);
/* −D for a Diag D whose label is one negated term: "Diag(x)" for −Diag(−x),
 * "Diag(vec(M))" for −Diag(vec(−M)); false, and nothing written, for any
 * other D */
bool lji_diag_print_negated(lji_buf *b, const lj_op *D, lj_print_format fmt);
/* D/k for a Diag D whose label is a whole number k (or −k) times one
 * term: "Diag(x.^2)" for Diag(3·x.^2), *k = 3; false, and nothing
 * written, for any other D */
bool lji_diag_print_times(lji_buf *b, const lj_op *D, lj_print_format fmt, double *k);
/* D is a Diag labelled with a number k (not 0) (its label's factors all
 * cancelled, as in J of log(exp(x).^2)): it prints as k·I */
bool lji_diag_is_number(const lj_op *D, double *k);
/* −P printed at `where` with no sign of its own, where P prints as a
 * product with such a Diag among its top-level factors: the Diag's sign
 * dropped (−A·Diag(−2·x) is A·Diag(2·x)). NULL when P is not one, or
 * prints past like's limit, or on failure to allocate (*failed). */
char *lji_print_negated(const lji_buf *like, const lj_op *P, lj_print_format fmt, lji_place where, bool *failed);
/* For a label "(−M)" (or "(-M)"), M a product with no sign of its own and
 * no sum at its top: the bytes before M; else 0 */
size_t lji_label_minus_product(const char *label);
/* the bytes of a minus sign ('-' or '−') at s, else 0 */
size_t lji_label_minus_len(const char *s);
/* the length of the minus sign that starts a label of one negated term
 * ("−sin(x)", "−2·x"), 0 for any other ("−a + b", "x", "−(−x)") */
size_t lji_label_negated_term(const char *label);
/* whether s, a printed operator, is a zero matrix alone: 0_{3×3}, 0_{3\times 3} */
bool lji_text_is_zero(const char *s);
/* label less a number in front, "2·vec X" → "vec X" with *k = 2 ("−2·…":
 * −2); the label itself, *k = 1, where it has none or is a sum ("2·a + b") */
const char *lji_label_number(const char *label, double *k);
/* whether "label^T" reads as the label transposed: an atom, and no vec
 * ((vec(A·x))^T, not vec(A·x)^T) */
bool lji_label_transposes_bare(const char *label);
/* A value's label "(P·Q·R)" transposed as the product "(R^T·Q^T·P^T)",
 * each factor's own ^T dropped ((x^T·A)^T is A^T·x), X^{-1} and X^{-T}
 * swapped, numbers and a leading minus sign kept: a new string when that
 * writes no more ^T than "(P·Q·R)^T"; else NULL, with *failed on no
 * memory. */
char *lji_label_product_transposed(lj_context *ctx, const char *label, bool *failed);
/* A value's label as the dense printer writes it at `where`: its own
 * brackets dropped for the whole or a term of a sum */
void lji_put_value_label(lji_buf *b, const char *label, lj_print_format fmt, lji_place where);
void lji_put_number(lji_buf *b, double x, lj_print_format fmt);
/* x as lji_put_number writes it: the fewest significant digits, from
 * six, that read back as x (in plain form exactly, else within four units
 * in the last place), or a fraction (2/3) whose decimals do not end */
void lji_format_number(char *tmp, size_t n, double x, lj_print_format fmt);
/* a fraction "(p/q)" as lji_put_number writes it at s: its length and
 * value; 0 where s does not start with one */
size_t lji_label_fraction(const char *s, double *k);
/* the number that the first n bytes of s start with, as
 * lji_format_number writes one without a sign (2, 0.5, 1e+06, (2/3)):
 * its length and value (*k); 0 where s does not start with one. The one
 * reader of numbers in labels: each caller then asks what its own form
 * needs (a whole number, a dot after it). */
size_t lji_label_number_at(const char *s, size_t n, double *k);
/* an exponent as a label or the language writes it after ^ or .^: 2,
 * 0.5, and bracketed once, its sign inside, (−1), (1/3), (−2/3) (fmt:
 * LJ_PRINT_UNICODE or LJ_PRINT_PLAIN) */
void lji_put_exponent(lji_buf *b, double e, lj_print_format fmt);
/* x = p/q (q from 2 to 1000, the smallest) where six significant digits
 * do not read back as x */
bool lji_fraction(double x, lj_print_format fmt, long *p, long *q);
const char *lji_sym_kron(lj_print_format fmt);
const char *lji_sym_dot(lj_print_format fmt);
const char *lji_sym_transpose(lj_print_format fmt);
const char *lji_sym_minus(lj_print_format fmt);
/* a term's sign and number in a sum: " + " or " − " (only "−" for the
 * first term, nothing when it is positive), then |c|· where it is not 1 */
void lji_put_signed_coef(lji_buf *b, double c, bool first, lj_print_format fmt);

/* Whether a is an identity, a zero operator: asked by most rules, so
 * inline */
static inline bool lji_is_identity(const lj_op *a) { return lji_is(a, &lji_kind_identity); }
static inline bool lji_is_zero(const lj_op *a) { return lji_is(a, &lji_kind_zero); }

/* A word at a time: h absorbs x and is mixed (the multiply-xorshift of
 * splitmix64), so that a hash costs a few cycles a word, not a byte;
 * inline, as every node hashed (when first compared) hashes a few dozen
 * words. */
static inline uint64_t lji_hash_u64(uint64_t h, uint64_t x)
{
    h = (h ^ x) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}
static inline uint64_t lji_hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, c + i, 8);
        h = lji_hash_u64(h, w);
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, c + i, n - i);
        h = lji_hash_u64(h, w ^ ((uint64_t)(n - i) << 56));
    }
    return h;
}

#endif
