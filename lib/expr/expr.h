/* Expression DAG nodes (internal layout). */
#ifndef LJI_EXPR_H
#define LJI_EXPR_H
#include "../op/op.h"

/* The operation of a node: its entry in the table of operations (ops.h). */
typedef struct lji_opdef lji_opdef;

/* A sparsity pattern (CSC, rows strictly ascending in each column), shared
 * by reference between the nodes whose values live on it. */
typedef struct lji_pat {
    atomic_long refs;
    int64_t nrow, ncol, nnz;
    int64_t *p, *i;
    bool borrowed; /* p and i belong to the caller's cholmod_sparse */
} lji_pat;

struct lj_expr {
    uint32_t magic;
    atomic_long refs;
    const lji_opdef *def;
    int64_t rows, cols;
    lj_expr *a, *b;  /* operands (owned references) */
    double p;        /* scale factor, .^ exponent */
    char *name;      /* leaves */
    double *value;   /* leaves: rows×cols, column-major */
    /* the block value lies in, for a dense leaf that owns its numbers
     * (NULL for borrowed and sparse leaves): shared with the operators
     * that read it in place, replaced before the values change
     * (lji_leaf_own) */
    lji_vblock *vblk;
    lj_expr *next;   /* work list while freeing */
    /* A matrix power's products print as pbase^pn: pbase is a node of the
     * product's own subtree (borrowed, alive while this node is). */
    const lj_expr *pbase;
    int64_t pn;
    /* A sparse value: the node's values are the pattern's nnz entries in CSC
     * order (a leaf's `value`, an operation's value buffer); a Jacobian's rows
     * (cols, for a variable) are those entries. NULL: a dense value. */
    lji_pat *pat;
    /* for each stored entry of the value, the index of the entry it comes
     * from in operand a's (map[0]) or b's (map[1]) values; -1 where that
     * operand holds a zero; NULL for the identity (same pattern) */
    int64_t *map[2];
    unsigned char skind; /* LJI_SK_*: how a sparse value is computed */
    /* A product sampled on a pattern (LJI_SK_SAMPLED): the label of the
     * sparse operand whose pattern it is ("M"), for printed selections. Such
     * nodes are made only inside S .* (…), where no other node sees them.
     * The pattern constant P_X of a sparse variable's gradient carries "X"
     * the same way: its selection prints P_X, not P_P_X. */
    char *plabel;
    bool borrowed; /* a leaf reading the caller's value array in place */
    /* a leaf's values changed this many times (lj_expr_set_value): Jacobian
     * plans update only what depends on a leaf that changed; a borrowed
     * leaf's values may change at any time */
    uint64_t version;
    /* a dense vector leaf's values all ones, as a Jacobian's label last saw
     * them: 2·(version + 1) + (all ones), 0 when not checked since the
     * values were set (lji_leaf_all_ones); never kept for a borrowed leaf */
    _Atomic uint64_t ones_seen;
    /* a constant declared symmetric (lj_expr_declare_symmetric, or a
     * symmetric CHOLMOD matrix): its values are checked when they are set,
     * and gradient expressions use A^T = A */
    bool symm;
};

#define LJI_EXPR_MAGIC 0x4c4a4558u /* "LJEX" */

/* The length of e's value array: nnz of its pattern, or rows·cols. */
static inline int64_t lji_vlen(const lj_expr *e)
{
    return e->pat ? e->pat->nnz : e->rows * e->cols;
}

static inline bool lji_expr_ok(const lj_expr *e)
{
    return e && e->magic == LJI_EXPR_MAGIC;
}

/* A leaf whose values are stored in the node (a variable or a constant):
 * asked of every node on every pass, so inline. */
extern const lji_opdef lji_op_var, lji_op_const;
static inline bool lji_is_leaf(const lj_expr *e)
{
    return e->def == &lji_op_var || e->def == &lji_op_const;
}
static inline bool lji_is_var(const lj_expr *e)
{
    return e->def == &lji_op_var;
}
/* Makes leaf e the only holder of its value block before its values are
 * written in place: a block operators share is left to them, e gets a copy.
 * NOMEM (recorded, for operation op) leaves e as it was. */
lj_status lji_leaf_own(lj_context *ctx, lj_expr *e, const char *op);
/* A new node of the given operation and shape, retaining its operands. */
lj_expr *lji_node_new(lj_context *ctx, const lji_opdef *def, int64_t rows, int64_t cols, lj_expr *a,
                      lj_expr *b);

/* Nodes of e in post-order (children before parents), each once. A DAG
 * of up to LJI_TOPO_INLINE nodes lives in the struct itself (no
 * allocation: building a small Jacobian allocates little), so a built
 * lji_topo is not to be copied; its nodes are found by a scan of node[]
 * (fewer instructions than hashing, for so few), larger ones through a
 * map. */
#define LJI_TOPO_INLINE 32
typedef struct {
    const lj_expr **node;
    int64_t (*kid)[2]; /* the indices of node i's operands a and b, -1 for none */
    int64_t n;
    /* open-addressing map node pointer -> index, past LJI_TOPO_INLINE
     * nodes (NULL and 0 before) */
    const lj_expr **key;
    int64_t *idx;
    int64_t cap;
    const lj_expr *node_in[LJI_TOPO_INLINE];
    int64_t kid_in[LJI_TOPO_INLINE][2];
} lji_topo;

lj_status lji_topo_build(lj_context *ctx, const lj_expr *e, lji_topo *t);
int64_t lji_topo_find(const lji_topo *t, const lj_expr *e);
/* the index of operand w (0: a, 1: b) of node i, -1 when it has none:
 * looked up once, when the order was built */
static inline int64_t lji_topo_kid(const lji_topo *t, int64_t i, int w)
{
    return t->kid[i][w];
}
void lji_topo_free(lji_topo *t);

/* Values of every node in topological order (vals[i] rows×cols of node i). */
lj_status lji_eval_all(lj_context *ctx, const lji_topo *t, double ***vals);
void lji_vals_free(const lji_topo *t, double **vals);
/* the interior nodes' buffers freed, not the array */
void lji_vals_clear(const lji_topo *t, double **vals);
/* The same in two steps: buffers once, values as often as the leaves change.
 * With `need` (one flag a node, closed under operands), only the flagged
 * nodes get a buffer and a value; NULL means every node. lji_vals_alloc
 * fills only the slots still NULL, so it may be called again with a larger
 * set. */
lj_status lji_vals_alloc(lj_context *ctx, const lji_topo *t, const unsigned char *need, double ***vals);
lj_status lji_eval_into(lj_context *ctx, const lji_topo *t, const unsigned char *need, double **vals);

/* ---- sparse values (sparse.c) ---- */
lji_pat *lji_pat_retain(lji_pat *p);
void lji_pat_free(lji_pat **p);
/* A read-only CHOLMOD view of pattern p with values x (no allocation). */
void lji_pat_view(const lji_pat *p, const double *x, cholmod_sparse *v);
/* Position of entry (r, c) among p's stored entries, or -1. */
int64_t lji_pat_find(const lji_pat *p, int64_t r, int64_t c);
/* Row and column of stored entry k. */
void lji_pat_entry(const lji_pat *p, int64_t k, int64_t *row, int64_t *col);
/* Called by every constructor once the node's operands and parameters are
 * set: gives e a pattern where its operation keeps sparse operands sparse. */
lj_status lji_sparse_node(lj_context *ctx, lj_expr *e);
/* The value of a sparse node scattered into a new dense rows×cols array. */
double *lji_scatter(lj_context *ctx, const lj_expr *e, const double *x, const char *op);
/* Evaluates node e whose operands or result are sparse. */
lj_status lji_sparse_eval(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out);
/* Whether a leaf's values (rows×cols, or on its pattern) equal their
 * transpose exactly; the first entry that does not, 1-based, in *bad. */
bool lji_values_symmetric(const lj_expr *e, const double *x, int64_t bad[2]);
/* Value of e (lji_vlen(e) entries) written to out, intermediate values
 * freed once their last consumer has read them, a product under a scaling
 * computed with the factor (one pass, no buffer for the product). */
lj_status lji_eval_to(lj_context *ctx, const lj_expr *e, double *out);
/* A matrix product node's value times alpha, for a product with a dense
 * value and matrix factors, not both sparse (lji_mul_fusable). */
bool lji_mul_fusable(const lj_expr *e);
lj_status lji_mul_eval_scaled(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double alpha,
                              double *out);
/* Whether operand `which` of e is a dense transpose that e's product can
 * read through (lji_mul_eval_t with its operand's value, ta or tb set),
 * so that the transpose itself is never formed. */
bool lji_mul_reads_through(const lj_expr *e, int which);
lj_status lji_mul_eval_t(lj_context *ctx, const lj_expr *e, const double *A, bool ta, const double *B, bool tb,
                         double alpha, double *out);
/* Value of e (lji_vlen(e) entries), new. */
lj_status lji_eval_raw(lj_context *ctx, const lj_expr *e, double **out);

/* Appends e in the expression language; `level` is the binding strength of
 * the place it stands in (parenthesised when weaker). */
void lji_expr_write(lji_buf *b, const lj_expr *e, int level);
/* whether e, written into b, starts with a minus sign (then bracketed as
 * a right operand or under a negation) */
bool lji_expr_writes_minus(const lji_buf *b, const lj_expr *e);
/* Short label of e's value for printed operators: "A" for a leaf named A,
 * "(A*B)" for a compound expression. New string. */
char *lji_expr_label(lj_context *ctx, const lj_expr *e);
#endif
