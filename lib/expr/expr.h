/* Expression DAG nodes (internal layout). */
#ifndef LJI_EXPR_H
#define LJI_EXPR_H
#include "../op/op.h"

/* The operation of a node: its entry in the table of operations (ops.h). */
typedef struct lji_opdef lji_opdef;

struct lj_expr {
    uint32_t magic;
    atomic_long refs;
    const lji_opdef *def;
    int64_t rows, cols;
    lj_expr *a, *b;  /* operands (owned references) */
    double p;        /* scale factor, .^ exponent */
    char *name;      /* leaves */
    double *value;   /* leaves: rows×cols, column-major */
    lj_expr *next;   /* work list while freeing */
    /* A matrix power's products print as pbase^pn: pbase is a node of the
     * product's own subtree (borrowed, alive while this node is). */
    const lj_expr *pbase;
    int64_t pn;
};

#define LJI_EXPR_MAGIC 0x4c4a4558u /* "LJEX" */

static inline bool lji_expr_ok(const lj_expr *e)
{
    return e && e->magic == LJI_EXPR_MAGIC;
}

/* A leaf whose values are stored in the node (a variable or a constant). */
bool lji_is_leaf(const lj_expr *e);
bool lji_is_var(const lj_expr *e);
/* A new node of the given operation and shape, retaining its operands. */
lj_expr *lji_node_new(lj_context *ctx, const lji_opdef *def, int64_t rows, int64_t cols, lj_expr *a,
                      lj_expr *b);

/* Nodes of e in post-order (children before parents), each once. */
typedef struct {
    const lj_expr **node;
    int64_t n;
    /* open-addressing map node pointer -> index */
    const lj_expr **key;
    int64_t *idx;
    int64_t cap;
} lji_topo;

lj_status lji_topo_build(lj_context *ctx, const lj_expr *e, lji_topo *t);
int64_t lji_topo_find(const lji_topo *t, const lj_expr *e);
void lji_topo_free(lji_topo *t);

/* Values of every node in topological order (vals[i] rows×cols of node i). */
lj_status lji_eval_all(lj_context *ctx, const lji_topo *t, double ***vals);
void lji_vals_free(const lji_topo *t, double **vals);
/* The same in two steps: buffers once, values as often as the leaves change.
 * With `need` (one flag a node, closed under operands), only the flagged
 * nodes get a buffer and a value; NULL means every node. lji_vals_alloc
 * fills only the slots still NULL, so it may be called again with a larger
 * set. */
lj_status lji_vals_alloc(lj_context *ctx, const lji_topo *t, const unsigned char *need, double ***vals);
lj_status lji_eval_into(lj_context *ctx, const lji_topo *t, const unsigned char *need, double **vals);

/* Appends e in the expression language; `level` is the binding strength of
 * the place it stands in (parenthesised when weaker). */
void lji_expr_write(lji_buf *b, const lj_expr *e, int level);
/* Short label of e's value for printed operators: "A" for a leaf named A,
 * "(A*B)" for a compound expression. New string. */
char *lji_expr_label(lj_context *ctx, const lj_expr *e);
#endif
