#!/bin/sh
# Runs the examples a user would copy; each must succeed, and the README's
# "Using the library" program must be the one in examples/using.c.
set -u
T=$(mktemp -d /tmp/lj_ex.XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0 pass=0
for ex in hello seeds using; do
  if (cd "$T" && "$OLDPWD/$top_builddir/examples/$ex" >"$T/$ex.out" 2>&1); then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL: examples/$ex"; cat "$T/$ex.out"; fi
done
# the solvers: each converges (exit 0) and says so; the matrix-free and the
# assembled Levenberg-Marquardt runs agree (checked inside, reported here)
for ex in lowrank_lm riccati_nk; do
  if "$top_builddir/examples/$ex" >"$T/$ex.out" 2>&1 && grep -q "; converged$" "$T/$ex.out"; then pass=$((pass + 1))
  else fail=$((fail + 1)); echo "FAIL: examples/$ex"; cat "$T/$ex.out"; fi
done
if "$top_builddir/examples/lowrank_lm" 25 18 2 >"$T/lm2.out" 2>&1 && grep -q "agree: .* converged" "$T/lm2.out"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: lowrank_lm 25 18 2"; cat "$T/lm2.out"; fi
# matrix completion with a sparse mask: the residual on the mask's pattern, the planted factors recovered
if "$top_builddir/examples/lowrank_lm" --sparse >"$T/mc.out" 2>&1 && grep -q "; converged$" "$T/mc.out"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: lowrank_lm --sparse"; cat "$T/mc.out"; fi
# Newton for logistic regression: Newton-CG on Hessian-vector products and Cholesky of the
# materialised Hessian both converge, to the same w; the gradient and the Hessian print in
# the textbook's forms
if "$top_builddir/examples/newton_logreg" 800 30 0.5 >"$T/nl.out" 2>&1 && grep -q "^converged: both runs" "$T/nl.out" &&
   grep -qxF "∇f = lambda·w − X^T·(σ(−y ∘ (X·w)) ∘ y)" "$T/nl.out" &&
   grep -qxF "H = lambda·I_30 + X^T·Diag(y.^2 ∘ σ(−y ∘ (X·w)) ∘ (1 − σ(−y ∘ (X·w))))·X" "$T/nl.out"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: examples/newton_logreg 800 30 0.5"; cat "$T/nl.out"; fi
# sparse data: tr(X'*L*X) for a 3600-node grid Laplacian, value, gradient and J v checked inside
if "$top_builddir/examples/graph_laplacian" 60 3 >"$T/gl.out" 2>&1 && grep -q "^checks: ok$" "$T/gl.out"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: examples/graph_laplacian 60 3"; cat "$T/gl.out"; fi
[ -s "$T/J.mtx" ] && pass=$((pass + 1)) || { fail=$((fail + 1)); echo "FAIL: examples/using wrote no J.mtx"; }
# the README's program is examples/using.c, verbatim
awk '/^<!-- using.c -->/ { on = 1; next } on && /^```c/ { inblock = 1; next } inblock && /^```/ { exit } inblock { print }' \
  "$top_srcdir/README.md" >"$T/readme.c"
if cmp -s "$T/readme.c" "$top_srcdir/examples/using.c"; then pass=$((pass + 1))
else fail=$((fail + 1)); echo "FAIL: README's program differs from examples/using.c"; diff "$T/readme.c" "$top_srcdir/examples/using.c" | head; fi
echo "examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
