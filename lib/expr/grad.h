/* Symbolic reverse mode (grad.c): adjoints as sums of monomials.
 *
 * The adjoint Ḡ of a node (the gradient of the scalar root with respect to
 * the node's value, in its shape) is kept as a polynomial: a sum of terms
 *
 *     c · s_1 ⋯ s_k / (d_1 ⋯ d_l) · M_1 · M_2 ⋯ M_j
 *
 * with c a number, s and d scalar (1×1) expressions and M a chain of
 * matrix factors. Each operation's adjoint rule (the `adjoint` slot of its
 * table entry) builds its operands' adjoints from Ḡ with the functions
 * below; they keep the form normal as they go: numbers folded into c,
 * products and transposes of products flattened into the chain ((A·B)^T is
 * B^T·A^T), (A^T)^T = A, identities dropped, X^{-1}·X and X^{-T}·X^T
 * cancelled, scalar factors cancelled against equal divisors, equal terms
 * merged (x + x = 2x). lji_poly_expr turns a polynomial into an expression,
 * taking out common factors ((A + A^T)·x). */
#ifndef LJI_GRAD_H
#define LJI_GRAD_H
#include "expr.h"

typedef struct {
    lj_expr **v;
    int n, cap;
} lji_elist;

typedef struct {
    double c;
    lji_elist s, d, m; /* scalar factors, scalar divisors, the matrix chain */
} lji_mono;

typedef struct {
    int64_t rows, cols;
    lji_mono *t;
    int n, cap;
} lji_poly;

/* The state of one reverse pass: the first failure is recorded in ctx and
 * `failed` set; every function is then a no-op. */
typedef struct {
    lj_context *ctx;
    bool failed;
} lji_gctx;

void lji_poly_init(lji_poly *p, int64_t rows, int64_t cols);
void lji_poly_free(lji_poly *p);
bool lji_poly_is_zero(const lji_poly *p);
/* p += c·e (e has p's shape; numbers, negations, scalings and products in e
 * are taken into the term's normal form) */
void lji_poly_add_expr(lji_gctx *g, lji_poly *p, double c, const lj_expr *e);
/* p += c·q */
void lji_poly_add(lji_gctx *g, lji_poly *p, double c, const lji_poly *q);
/* out += c·(G·e) (right) or c·(e·G) (left), e^T for e when `transposed`; e's shape must conform, a 1×1
 * side multiplies as a scalar */
void lji_poly_mul_expr(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *e, bool left,
                       bool transposed);
/* out += c·G^T */
void lji_poly_transpose(lji_gctx *g, lji_poly *out, double c, const lji_poly *G);
/* out += c·(G ∘ e), or c·(G ⊘ e) when `divide`; a 1×1 G or e broadcasts
 * (a number times the other); a G that is a multiple of 1_{m×n} gives the
 * multiple of e */
void lji_poly_hadamard(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *e,
                       bool divide);
/* out (1×1) += c·sum of all entries of G (c·m·n for a multiple of 1_{m×n}) */
void lji_poly_sum(lji_gctx *g, lji_poly *out, double c, const lji_poly *G);
/* out += c·G / s (s 1×1) */
void lji_poly_div_scalar(lji_gctx *g, lji_poly *out, double c, const lji_poly *G, const lj_expr *s);
/* The polynomial as a new expression (the zero matrix for no terms). */
lj_expr *lji_poly_expr(lji_gctx *g, const lji_poly *p);
/* A new node, failure recorded in g (NULL in gives NULL out). */
lj_expr *lji_g_node(lji_gctx *g, lj_expr *made);
/* Structural equality of two expressions (same operations on the same
 * leaves, numbers and shapes). */
bool lji_expr_equal(const lj_expr *a, const lj_expr *b);
/* Symmetric by construction: I, M^T·M, M·M^T, sums and Hadamard products
 * of symmetric terms, c·S, S^{-1}, S^k, constants declared symmetric. */
bool lji_expr_symmetric(const lj_expr *e);

/* The constant matrix filled with x (1_{m×n}, 0_{m×n}), an internal leaf. */
lj_expr *lji_expr_fill(lj_context *ctx, int64_t rows, int64_t cols, double x);
/* Internal operations of gradient expressions. */
extern const lji_opdef lji_op_fill, lji_op_reshape, lji_op_gt, lji_op_step, lji_op_kron_ca, lji_op_kron_cb;
/* reshape(a, rows, cols), vec order kept */
lj_expr *lji_expr_reshape(lj_context *ctx, lj_expr *a, int64_t rows, int64_t cols);
#endif
