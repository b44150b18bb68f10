/* Expression operations, one table entry each (the shape of lib/op/): an
 * entry holds the operation's name and arity, its shape rule and message,
 * its evaluation, its local Jacobians and which values they read, and how
 * it prints. Evaluation, differentiation, printing and the parser look the
 * entry up; none of them switches over operations.
 *
 * Adding an operation
 * -------------------
 * An elementwise function is one entry in op_func.c: the scalar function,
 * its derivative, its domain (or none), and the label of its derivative in
 * printed Jacobians ("exp(" … ")"); append its lj_func id at the end of
 * the enum in include/lazyjac.h and name it in `lji_func_defs`. The parser
 * finds it by name, the command and the API have it at once. Then add its
 * tests: the value against libm, the Jacobian against central differences
 * away from kinks, its kink convention, and a printing round trip
 * (tests/check_expr.c, tests/check_parse.c).
 * Any other operation is an entry in its family's file (op_arith.c,
 * op_prod.c, op_reduce.c, op_linalg.c) with `shape`, `eval` and `local`
 * functions of a few lines each, and a constructor in expr.c's style. */
#ifndef LJI_OPS_H
#define LJI_OPS_H
#include "expr.h"
#include "grad.h"

/* The values local(e, which) reads, beside the operands' shapes. */
enum { LJI_READ_OPERAND = 1, /* the operand `which` */
       LJI_READ_OTHER = 2,   /* the other operand */
       LJI_READ_NODE = 4 };  /* e's own value */

/* How an operation treats sparse operands (sparse.c, lji_sparse_node). */
enum { LJI_SP_NONE = 0,
       LJI_SP_SAME,      /* the operand's pattern (neg, scale, a / s) */
       LJI_SP_ZERO,      /* the operand's pattern where f(0) = 0 (functions, .^p, p > 0) */
       LJI_SP_VEC,       /* vec: the same entries in a column */
       LJI_SP_TRANSPOSE, /* the transposed pattern */
       LJI_SP_PRODUCT,   /* .*, and * with a scalar: the sparse side's pattern;
                            * for *, two sparse matrices give CHOLMOD's product */
       LJI_SP_QUOTIENT,  /* S ./ X: S's pattern */
       LJI_SP_UNION };   /* S ± T: the union */
/* How a node with a pattern is evaluated and differentiated. */
enum { LJI_SK_NONE = 0,
       LJI_SK_UNARY,  /* entry k from the operand's entry k: the dense code on the entries */
       LJI_SK_GATHER, /* entry k is the operand's entry map[0][k] (transpose) */
       LJI_SK_BINARY, /* entry k = bin(a at map[0][k], b at map[1][k]) */
       LJI_SK_OWN,    /* S * T through CHOLMOD */
       LJI_SK_SAMPLED }; /* A * B (dense) on a pattern: the entries only (SDDMM) */

/* Differentiation context: the plan's order and values, the variable, and
 * a cache of node values as labelled dense operators. With `raw`, a local
 * rule reads a sparse node's values as its stored entries (lji_d_val,
 * lji_d_len); otherwise as a dense array (scattered, cached in `dense`). */
typedef struct lji_dctx {
    lj_context *ctx;
    const lji_topo *t;
    double **vals;
    const lj_expr *var;
    lj_op **opval;
    bool raw;
    double **dense;
    /* a one-off build's interior values, each in a block of its own that
     * J's operators share instead of copying (NULL: a plan that records,
     * whose buffers are written again at its next evaluation) */
    lji_vblock **blk;
    /* each node's number of parents: a node's operator is kept in opval
     * for the rules that read it again only where more than one may */
    const int64_t *uses;
} lji_dctx;

struct lji_opdef {
    const char *name;   /* in the language (functions) and in messages */
    int arity;          /* 0 for leaves and eye */
    bool function;      /* written name(args); the parser finds it by name */
    int level;          /* binding strength when printed: 1 sum, 2 term,
                           3 unary, 4 power, 5 postfix, 6 primary */
    const char *sym, *msym; /* infix symbol in the language and in labels */
    /* the result's shape, or an error naming the operation and shapes */
    lj_status (*shape)(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                       int64_t *rows, int64_t *cols);
    /* out (rows×cols of e) from the operands' values A and B */
    lj_status (*eval)(lj_context *ctx, const lj_expr *e, const double *A, const double *B, double *out);
    /* d vec e / d vec (operand `which`), a new operator */
    lj_op *(*local)(lji_dctx *d, const lj_expr *e, int which);
    unsigned char reads[2]; /* LJI_READ_* for which = 0, 1 */
    bool can_fail;          /* the value can fail (domain, singular) */
    /* custom printing (NULL: function call or infix `sym`) */
    void (*write)(lji_buf *b, const lj_expr *e);
    /* elementwise scalar functions (op_func.c) */
    double (*f)(double);
    double (*df)(double);
    const char *domain;     /* NULL, or what an argument must be: "positive" */
    bool (*in_domain)(double x);
    bool (*diff_at)(double x); /* NULL, or false where f' does not exist */
    const char *dpre, *dpost;  /* f'(vec A) printed as dpre "vec A" dpost */
    /* sparse operands: the rule (LJI_SP_*), whether `eval` reads sparse
     * operands itself (their stored entries, through the pattern), whether
     * `local` does (it may return NULL without an error to take the general
     * rule), and the scalar kernel of an elementwise binary operation and its
     * partial derivatives */
    unsigned char sparse;
    bool sparse_eval, sparse_local;
    double (*bin)(double x, double y);
    double (*dbin)(double x, double y, int which);
    /* reverse mode (grad.c): out += the adjoint of operand `which` given the
     * adjoint G of e, built with the lji_poly_* functions of grad.h */
    void (*adjoint)(lji_gctx *g, const lj_expr *e, int which, const lji_poly *G, lji_poly *out);
    /* elementwise functions: f'(a) as an expression D (new), out += scale·G ∘ D,
     * or scale·G ⊘ D when *divide; NULL with no error for f' = 0 */
    lj_expr *(*dexpr)(lj_context *ctx, lj_expr *a, lj_expr *e, double *scale, bool *divide);
};

/* The product's scalar kernel (.* and the matrix product by a scalar). */
double lji_k_mul(double x, double y);
double lji_dk_mul(double x, double y, int which);

/* The entries, by family. */
extern const lji_opdef lji_op_var, lji_op_const, lji_op_eye, lji_op_ones, lji_op_zeros;
extern const lji_opdef lji_op_add, lji_op_sub, lji_op_neg, lji_op_scale, lji_op_hadamard,
    lji_op_hdiv, lji_op_divs, lji_op_pow, lji_op_max, lji_op_min, lji_op_power;
extern const lji_opdef lji_op_mul, lji_op_kron, lji_op_transpose;
extern const lji_opdef lji_op_trace, lji_op_sum, lji_op_norm2, lji_op_norm1, lji_op_vec, lji_op_diag;
extern const lji_opdef lji_op_inv, lji_op_det, lji_op_logdet;
/* elementwise functions, indexed by lj_func */
extern const lji_opdef *const lji_func_defs[];
extern const int lji_n_funcs;
/* every function the language has, for the parser (NULL-terminated) */
extern const lji_opdef *const lji_language_functions[];

/* Generic constructors: operands checked, shape rule applied. */
lj_expr *lji_expr_unary(lj_context *ctx, const lji_opdef *d, lj_expr *a);
lj_expr *lji_expr_binary(lj_context *ctx, const lji_opdef *d, lj_expr *a, lj_expr *b);
bool lji_is_scalar(const lj_expr *e);
/* e is a number: an unnamed 1×1 constant, or its negation or multiple */
bool lji_is_number(const lj_expr *e);
/* the value of a number (lji_is_number): −2 is −(2) */
double lji_number_value(const lj_expr *e);
/* e = s·A or A·s for a scalar s (1×1, dense): A's side (1: b, 0: a);
 * else -1 */
int lji_scalar_times(const lj_expr *e);

/* Shape rules shared by several entries. */
lj_status lji_shape_same(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                         int64_t *r, int64_t *c);
lj_status lji_shape_broadcast(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                              int64_t *r, int64_t *c);
lj_status lji_shape_scalar(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c);
lj_status lji_shape_square(lj_context *ctx, const lji_opdef *d, const lj_expr *a, const lj_expr *b,
                           int64_t *r, int64_t *c);

/* The local Jacobian of e w.r.t. operand `which`, in the coordinates of
 * sparse values where e or the operand is sparse (sparse.c). */
lj_op *lji_local(lji_dctx *d, const lj_expr *e, int which);
/* tr (trace) or diag of a sparse square a, as selections of its entries */
lj_op *lji_d_diag_selection(lji_dctx *d, const lj_expr *a, bool trace);
/* A leaf's node with its name checked and set, no values (expr.c). */
lj_expr *lji_leaf_shell(lj_context *ctx, const lji_opdef *def, const char *op, const char *name, int64_t rows,
                        int64_t cols);

/* Helpers for local Jacobians (diff.c). Functions that take operators
 * consume them (NULL in gives NULL out). */
double *lji_d_val(lji_dctx *d, const lj_expr *e);
int64_t lji_d_len(lji_dctx *d, const lj_expr *e);    /* length of lji_d_val(d, e) */
lj_op *lji_d_opval(lji_dctx *d, const lj_expr *e);   /* e's value as a labelled operator */
lj_op *lji_d_opval_transposed(lji_dctx *d, const lj_expr *e); /* the same, transposed */
lj_op *lji_d_vec(lji_dctx *d, const lj_expr *e);     /* vec of e's value, (mn)×1 */
char *lji_d_label(lji_dctx *d, const lj_expr *e);    /* "A", "(A·B)", "1_n" */
/* e's label as a Kronecker factor, (e)^T's when `transposed`: "A^T" and
 * "X^{-1}" bare, "(A·B)" and "(A^T)^T"... written as "A" */
char *lji_d_factor_label(lji_dctx *d, const lj_expr *e, bool transposed);
/* "P_M": the selection of a sparse e's stored entries, named by the sparse
 * leaf whose pattern e has, if one does (sparse.c) */
char *lji_d_pattern_name(lji_dctx *d, const lj_expr *e);
char *lji_d_vec_label(lji_dctx *d, const lj_expr *e, const char *prefix, const char *suffix);
const char *lji_d_vec_label_to(lji_dctx *d, const lj_expr *e, const char *prefix, const char *suffix, char *buf,
                               size_t cap, char **own);
/* Diag(g) (or the column g when as_column) with g[i] = f(x[i], y[i], p);
 * x or y of length 1 broadcast. */
typedef lji_elem2_fn lji_elem_fn;
lj_op *lji_d_elem(lji_dctx *d, int64_t mn, const lj_expr *x, const lj_expr *y, double p, lji_elem_fn f,
                  const char *label, bool as_column);
/* Diag(vec e) */
lj_op *lji_d_diag(lji_dctx *d, const lj_expr *e, const char *label);
/* A Jacobian plan updates J in place by the steps these helpers record
 * (op.h, tapes): lji_d_opval, lji_d_vec, lji_d_diag and lji_d_elem record
 * theirs. A rule that reads numbers through lji_d_val and builds from them
 * itself has none: the plan then rebuilds J at every evaluation. A rule
 * with a step of its own reads through lji_d_val_recorded and records it
 * (lji_d_record_func: r = Diag(df(vec a)), guarded by the domain tests). */
const double *lji_d_val_recorded(lji_dctx *d, const lj_expr *e);
void lji_d_record_func(lji_dctx *d, const lj_op *r, const lj_expr *a, double (*df)(double),
                       bool (*ok1)(double), bool (*ok2)(double));
lj_op *lji_d_scaled(lj_context *ctx, double s, lj_op *a);
/* d vec(e)/d vec h for e = (a·h)·o (side 0) or o·(h·a) (side 1), x the
 * inner product: o^T ⊗ a or a^T ⊗ o (op_prod.c) */
lj_op *lji_mul3_local(lji_dctx *d, const lj_expr *e, const lj_expr *x, int side);
/* s·a (a consumed) where s comes from scalar expression e's value: the
 * coefficient prints as e's label between pre and post ("1/" and "" for
 * 1/s), so that a symbol stays a symbol; a plain number e prints as the
 * number s. */
lj_op *lji_d_scaled_by(lji_dctx *d, const lj_expr *e, double s, const char *pre, const char *post, lj_op *a);
lj_op *lji_d_transposed(lj_context *ctx, lj_op *a);
lj_op *lji_d_mul(lj_context *ctx, lj_op *a, lj_op *b);
lj_op *lji_d_kron(lj_context *ctx, lj_op *a, lj_op *b);
lj_op *lji_d_add(lj_context *ctx, lj_op *a, lj_op *b);
lj_op *lji_d_identity(lj_context *ctx, int64_t n);
/* 1_n, a dense column of ones labelled "1_n" */
lj_op *lji_d_ones(lj_context *ctx, int64_t n);
/* The (nn)×cols selection with a one at (i + i·n, i) for i < n (cols = n),
 * or all n ones in one column (cols = 1): vec I_n. Sparse, n entries. */
lj_op *lji_d_selection(lj_context *ctx, int64_t nn, int64_t n, int64_t cols, const char *label);
#endif
