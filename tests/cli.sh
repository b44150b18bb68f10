#!/bin/sh
# Drives the built lazyjac command as a user would: every subcommand on
# several expressions, outputs compared with independent references and
# with products computed here; every bad input of the contract (exit status,
# the "lazyjac: error:" prefix, a caret for parse errors, no file left).
set -u
LJ="$top_builddir/tools/lazyjac"
# LAZYJAC_WRAPPER runs every lazyjac command under a tool (valgrind, in
# 'make check-valgrind'); its errors change the exit status, so they fail
lj() { ${LAZYJAC_WRAPPER:-} "$LJ" "$@"; }
TOOL="$top_builddir/tests/mtxtool"
CASES="$top_srcdir/tests/cases"
T=$(mktemp -d /tmp/lj_cli.XXXXXX)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0

ok()  { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# run EXPECTED_STATUS DESCRIPTION -- ARGS...: runs lazyjac, checks its status
run() {
  want=$1; what=$2; shift 3
  lj "$@" >"$T/out" 2>"$T/err"
  got=$?
  if [ "$got" -ne "$want" ]; then bad "$what: exit $got, want $want"; sed 's/^/  | /' "$T/err"; return 1; fi
  ok; return 0
}

# ---- demo ------------------------------------------------------------------
run 0 "demo" -- demo -o "$T/demo"
for form in "J = (I_5 ⊗ W)·Diag(vec B)" "J = Diag(vec A)·((x ⊗ I_4) + (I_4 ⊗ x))" \
            "gradient = (1_3 b^T) ∘ W" "J = W^T ⊗ A"; do
  grep -qF "$form" "$T/out" && ok || bad "demo prints '$form'"
done
[ "$(grep -c '(ok)' "$T/out")" -eq 4 ] && ok || bad "demo: four finite-difference checks pass"
for s in 000 001 003; do
  "$TOOL" diff "$T/demo/seed$s-jacobian.mtx" "$CASES/seed$s/jacobian.mtx" 1e-12 && ok || bad "demo seed$s file"
done
"$TOOL" diff "$T/demo/seed002-gradient.mtx" "$CASES/seed002/gradient.mtx" 1e-12 && ok || bad "demo seed002 file"

# ---- the seeds through files -------------------------------------------------
c="$CASES/seed000"
run 0 "jacobian seed000" -- jacobian -e "W*(A.*B)" -w A -v W="$c/W.mtx" -v A="$c/A.mtx" -v B="$c/B.mtx" -o "$T/j0.mtx" &&
  { "$TOOL" diff "$T/j0.mtx" "$c/jacobian.mtx" 1e-12 && ok || bad "seed000 jacobian values"; }
run 0 "eval seed000" -- eval -e "W*(A.*B)" -v W="$c/W.mtx" -v A="$c/A.mtx" -v B="$c/B.mtx" -o "$T/v0.mtx" &&
  { "$TOOL" diff "$T/v0.mtx" "$c/value.mtx" 1e-12 && ok || bad "seed000 value"; }
c="$CASES/seed001"
run 0 "jacobian seed001" -- jacobian -e "(x*x').*A" -w x -v x="$c/x.mtx" -v A="$c/A.mtx" -o "$T/j1.mtx" &&
  { "$TOOL" diff "$T/j1.mtx" "$c/jacobian.mtx" 1e-12 && ok || bad "seed001 jacobian values"; }
c="$CASES/seed002"
run 0 "gradient seed002" -- gradient -e "ones'*(Q.*W)*b" -w Q -v ones="$c/ones.mtx" -v Q="$c/Q.mtx" \
  -v W="$c/W.mtx" -v b="$c/b.mtx" -o "$T/g2.mtx" &&
  { "$TOOL" diff "$T/g2.mtx" "$c/gradient.mtx" 1e-12 && ok || bad "seed002 gradient values"; }
head -1 "$T/g2.mtx" | grep -q "array real general" && ok || bad "gradient is a Matrix Market array"
c="$CASES/seed003"
run 0 "jacobian seed003 --print --check" -- jacobian -e "A*H*W" -w H -v A="$c/A.mtx" -v H="$c/H.mtx" \
  -v W="$c/W.mtx" --print --check -o "$T/j3.mtx" &&
  { "$TOOL" diff "$T/j3.mtx" "$c/jacobian.mtx" 1e-12 && ok || bad "seed003 jacobian values"; }
for frag in "J = W^T ⊗ A" "plain: W' kron A" "latex: W^{\top} \otimes A" "shape: 10×15" "nnz: 150" "apply cost:" "tree:" "kron 10×15"; do
  grep -qF "$frag" "$T/out" && ok || bad "--print shows '$frag'"
done
err=$(sed -n 's/^finite-difference check: largest relative error \([^ ]*\).*/\1/p' "$T/out")
awk -v e="$err" 'BEGIN { exit !(e != "" && e + 0 < 1e-6) }' && ok || bad "--check error '$err'"
head -1 "$T/j3.mtx" | grep -q "coordinate real general" && ok || bad "jacobian is coordinate real general"
want_mode=$(umask -S >/dev/null; touch "$T/probe"; stat -c %a "$T/probe")
[ "$(stat -c %a "$T/j3.mtx")" = "$want_mode" ] && ok || bad "output file mode $(stat -c %a "$T/j3.mtx"), want $want_mode"

# ---- several expressions, against finite differences and J·v -------------------
for spec in "tanh(W*X)|X|-d W=4x3 -d X=3x2" "logdet(X'*X + 2)|X|-d X=4x3" \
            "kron(X, Y) + kron(X, Y)|Y|-d X=2x3 -d Y=3x2" "inv(X + 3*S)*X'|X|-d X=3x3 -d S=3x3" \
            "sum(exp(X).*X) / 3|X|-d X=2x5" "diag(diag(X*X'))|X|-d X=3x4"; do
  e=${spec%%|*}; rest=${spec#*|}; w=${rest%%|*}; decls=${rest#*|}
  # shellcheck disable=SC2086
  run 0 "check $e" -- jacobian -e "$e" -w "$w" $decls --check -o "$T/j.mtx" || continue
  err=$(sed -n 's/^finite-difference check: largest relative error \([^ ]*\).*/\1/p' "$T/out")
  awk -v e="$err" 'BEGIN { exit !(e != "" && e + 0 < 1e-6) }' && ok || bad "$e: fd error '$err'"
  cols=$(awk '!/^%/ { print $2; exit }' "$T/j.mtx"); rows=$(awk '!/^%/ { print $1; exit }' "$T/j.mtx")
  # a vector to apply to, and the product computed from the written matrix
  run 0 "eval vector" -- eval -e "v" -d v="${cols}x1" --seed 7 -o "$T/v.mtx"
  # shellcheck disable=SC2086
  run 0 "apply $e" -- apply -e "$e" -w "$w" $decls --vector "$T/v.mtx" -o "$T/y.mtx" &&
    { "$TOOL" matvec "$T/j.mtx" "$T/v.mtx" "$T/yref.mtx" && "$TOOL" diff "$T/y.mtx" "$T/yref.mtx" 1e-12 && ok || bad "apply $e"; }
  run 0 "eval vector" -- eval -e "u" -d u="${rows}x1" --seed 8 -o "$T/u.mtx"
  # shellcheck disable=SC2086
  run 0 "apply^T $e" -- apply -e "$e" -w "$w" $decls --vector "$T/u.mtx" --transpose -o "$T/z.mtx" &&
    { "$TOOL" matvec "$T/j.mtx" "$T/u.mtx" t "$T/zref.mtx" && "$TOOL" diff "$T/z.mtx" "$T/zref.mtx" 1e-12 && ok || bad "apply^T $e"; }
done

# Rutherford-Boeing, standard output, seeds of -d
run 0 "rb" -- jacobian -e "A*H*W" -w H -d A=5x5 -d H=5x3 -d W=3x2 --format rb -o "$T/j.rb"
run 0 "mtx" -- jacobian -e "A*H*W" -w H -d A=5x5 -d H=5x3 -d W=3x2 -o "$T/j.mtx"
"$TOOL" diff "$T/j.rb" "$T/j.mtx" 1e-15 && ok || bad "rb equals mtx"
run 0 "stdout" -- jacobian -e "A*H*W" -w H -d A=5x5 -d H=5x3 -d W=3x2
"$TOOL" diff "$T/out" "$T/j.mtx" 0 2>/dev/null || { cp "$T/out" "$T/so.mtx"; "$TOOL" diff "$T/so.mtx" "$T/j.mtx" 0; } && ok || bad "stdout matrix"
run 0 "seed 1" -- eval -e "X" -d X=2x2 -o "$T/s1.mtx"
run 0 "seed 1 again" -- eval -e "X" -d X=2x2 --seed 1 -o "$T/s1b.mtx"
run 0 "seed 2" -- eval -e "X" -d X=2x2 --seed 2 -o "$T/s2.mtx"
cmp -s "$T/s1.mtx" "$T/s1b.mtx" && ok || bad "--seed is deterministic"
cmp -s "$T/s1.mtx" "$T/s2.mtx" && bad "--seed changes the values" || ok
for sub in demo jacobian gradient hessian apply eval; do
  run 0 "$sub --help" -- "$sub" --help && { grep -q "lazyjac $sub" "$T/out" && ok || bad "$sub --help text"; }
done
run 0 "--help" -- --help
run 0 "--version" -- --version

# ---- bad input ----------------------------------------------------------------------
printf '%%%%MatrixMarket matrix array real general\n2 2\n1\n2\n' >"$T/trunc.mtx"
printf '%%%%MatrixMarket matrix array real general\n2 2\n1\n2\n2\n4\n' >"$T/sing.mtx"
printf '%%%%MatrixMarket matrix array real general\n3 1\n1\n2\n3\n' >"$T/v3.mtx"
D="-d A=3x4 -d B=4x2 -d S=3x3"
check_bad() {
  want=$1; frag=$2; shift 2
  rm -f "$T/res.mtx"
  lj "$@" >"$T/out" 2>"$T/err"
  got=$?
  [ "$got" -eq "$want" ] || { bad "'$*': exit $got, want $want"; sed 's/^/  | /' "$T/err"; return; }
  head -1 "$T/err" | grep -q "^lazyjac: error: " || { bad "'$*': no 'lazyjac: error:' line"; return; }
  grep -qF -- "$frag" "$T/err" || { bad "'$*': stderr lacks '$frag'"; sed 's/^/  | /' "$T/err"; return; }
  [ ! -e "$T/res.mtx" ] || { bad "'$*': left an output file"; return; }
  ls "$T" | grep -q 'res.mtx.tmp' && { bad "'$*': left a temporary file"; return; }
  ok
}
# shellcheck disable=SC2086
{
check_bad 2 "expected ')'"        jacobian -e "A*(B" -w A $D -o "$T/res.mtx"
check_bad 2 "unbalanced ')'"      jacobian -e "A*B)" -w A $D -o "$T/res.mtx"
check_bad 2 "unknown function 'foo'" jacobian -e "foo(A)" -w A $D -o "$T/res.mtx"
check_bad 2 "'kron' takes 2 arguments, got 1" jacobian -e "kron(A)" -w A $D -o "$T/res.mtx"
check_bad 2 "'tr' takes 1 argument, got more" jacobian -e "tr(S, S)" -w S $D -o "$T/res.mtx"
check_bad 2 "empty expression"    jacobian -e "" -w A $D -o "$T/res.mtx"
check_bad 2 "unexpected '#'"      jacobian -e "A # B" -w A $D -o "$T/res.mtx"
check_bad 2 "'Q' is not declared" jacobian -e "A*Q" -w A $D -o "$T/res.mtx"
check_bad 2 "'A' is declared twice" jacobian -e "A" -w A $D -d A=2x2 -o "$T/res.mtx"
check_bad 2 "-w Z: 'Z' is not declared" jacobian -e "A" -w Z $D -o "$T/res.mtx"
check_bad 2 "unknown option '--bogus'" jacobian -e "A" -w A $D --bogus
check_bad 2 "unknown command 'jacobain'" jacobain -e "A"
check_bad 2 "needs -w VAR"        jacobian -e "A" $D
check_bad 2 "needs -e EXPR"       eval $D
check_bad 2 "must read RxC"       eval -e "A" -d A=3by4
check_bad 2 "must read NAME=FILE" eval -e "A" -v A
check_bad 2 "needs a value"       eval -e
check_bad 2 "--format must be mtx or rb" jacobian -e "A" -w A $D --format csv
check_bad 2 "does not take -w"    eval -e "A" -w A $D
check_bad 2 "exponent"            eval -e "A.^B" $D
check_bad 1 "mul: inner dimensions differ: (3×4)·(3×3)" jacobian -e "A*S" -w A $D -o "$T/res.mtx"
check_bad 1 "add: shapes differ"  eval -e "A + B" $D -o "$T/res.mtx"
check_bad 1 "gradient: expression is (3×2), not a scalar" gradient -e "A*B" -w A $D -o "$T/res.mtx"
check_bad 1 "singular"            eval -e "inv(M)" -v M="$T/sing.mtx" -o "$T/res.mtx"
check_bad 1 "singular"            jacobian -e "inv(M)" -w M -v M="$T/sing.mtx" -o "$T/res.mtx"
check_bad 1 "truncated"           eval -e "M" -v M="$T/trunc.mtx" -o "$T/res.mtx"
check_bad 1 "cannot open"         eval -e "M" -v M="$T/missing.mtx" -o "$T/res.mtx"
check_bad 1 "apply: the vector"   apply -e "A*B" -w A $D --vector "$T/v3.mtx" -o "$T/res.mtx"
check_bad 1 "overflows"           eval -e "A" -d A=100000000000x100000000000 -o "$T/res.mtx"
check_bad 1 "overflows"           eval -e "kron(A, A)" -d A=4000000000x0 -o "$T/res.mtx"
check_bad 1 "logdet"              eval -e "logdet(-S'*S)" $D -o "$T/res.mtx"
check_bad 1 "/nonexistent-dir/res.mtx" jacobian -e "A" -w A $D -o /nonexistent-dir/res.mtx
}
# a parse error shows the expression and a caret under the offending character
lj eval -e "A + (B * )" -d A=2x2 -d B=2x2 2>"$T/err" >/dev/null
sed -n 2p "$T/err" | grep -qF "  A + (B * )" && ok || bad "parse error shows the expression"
sed -n 3p "$T/err" | grep -qx "           ^" && ok || bad "caret under ')'"

# ---- MATLAB's reading of a number before an elementwise operator ------------
printf '%%%%MatrixMarket matrix array real general\n1 2\n2\n-3\n' > "$T/x12.mtx"
printf '%%%%MatrixMarket matrix array real general\n2 1\n1\n2\n' > "$T/v2.mtx"
run 0 "eval X.^2.*X" -- eval -e "X.^2.*X" -v X="$T/x12.mtx" &&
  { [ "$(sed -n '3,4p' "$T/out" | tr '\n' ' ')" = "8 -27 " ] && ok || bad "X.^2.*X is (X.^2).*X: $(cat "$T/out")"; }
run 0 "eval 2./X - 2.^2" -- eval -e "2./X - 2.^2" -v X="$T/x12.mtx" &&
  { [ "$(sed -n '3p' "$T/out")" = "-3" ] && ok || bad "2./X - 2.^2: $(cat "$T/out")"; }
# a shape error points a caret at the operator that failed
lj eval -e "X + X*X" -d X=2x3 2>"$T/err" >/dev/null; [ $? -eq 1 ] && ok || bad "shape error exits 1"
sed -n 1p "$T/err" | grep -qF "mul: inner dimensions differ: (2×3)·(2×3)" && ok || bad "shape error message"
sed -n 3p "$T/err" | grep -qx "       ^" && ok || bad "caret under the failing '*': $(cat "$T/err")"

# ---- -f FILE and -f - -----------------------------------------------------
printf 'W*(A.*B)\n' > "$T/seed0.txt"
c="$CASES/seed000"
run 0 "jacobian -f" -- jacobian -f "$T/seed0.txt" -w A -v W="$c/W.mtx" -v A="$c/A.mtx" -v B="$c/B.mtx" -o "$T/jf.mtx" &&
  { "$TOOL" diff "$T/jf.mtx" "$c/jacobian.mtx" 1e-12 && ok || bad "jacobian -f values"; }
lj gradient -f - -w X -v X="$T/x12.mtx" -o "$T/gf.mtx" < /dev/null 2>"$T/err"; [ $? -eq 2 ] && ok || bad "-f - with empty input is a parse error"
printf 'sum(X.*X)' | lj gradient -f - -w X -v X="$T/x12.mtx" > "$T/out" 2>"$T/err" &&
  [ "$(sed -n '3,4p' "$T/out" | tr '\n' ' ')" = "4 -6 " ] && ok || bad "gradient -f -: $(cat "$T/out" "$T/err")"
# a fill's transpose swaps its sizes; a gradient's plain form parses again
lj jacobian -e "X*ones(3,2)" -w X -d X=2x3 --print > "$T/out" 2>"$T/err" &&
  grep -qxF "J = 1_{2×3} ⊗ I_2" "$T/out" && grep -qxF 'latex: \mathbf{1}_{2\times 3} \otimes I_{2}' "$T/out" &&
  ok || bad "fill's transpose: $(cat "$T/out" "$T/err")"
lj gradient -e "sum(X) + tr(A*X)" -w X -d X=2x3 -d A=3x2 --print > "$T/out" 2>"$T/err" &&
  grep -qxF "plain: A' + ones(2,3)" "$T/out" &&
  lj eval -e "A' + ones(2,3)" -d A=3x2 > "$T/out" 2>"$T/err" && ok || bad "gradient plain form with ones: $(cat "$T/out" "$T/err")"
printf '0.5.*X' | lj apply -f - -w X -v X="$T/x12.mtx" --vector "$T/v2.mtx" > "$T/out" 2>"$T/err" &&
  [ "$(sed -n '3,4p' "$T/out" | tr '\n' ' ')" = "0.5 1 " ] && ok || bad "apply -f -: $(cat "$T/out" "$T/err")"
printf 'X +\n  2*X*X\n' > "$T/bad.txt"
check_bad 1 "bad.txt:2:6: mul: inner dimensions differ" eval -f "$T/bad.txt" -d X=1x2 -o "$T/res.mtx"
sed -n 2p "$T/err" | grep -qxF "    2*X*X" && ok || bad "-f error shows the line: $(cat "$T/err")"
sed -n 3p "$T/err" | grep -qx "       ^" && ok || bad "-f error caret: $(cat "$T/err")"
printf 'X +\n (Y)' > "$T/bad2.txt"
check_bad 2 "bad2.txt:2:3: 'Y' is not declared" jacobian -f "$T/bad2.txt" -w X -d X=1x2 -o "$T/res.mtx"
printf ')\n' > "$T/paren.txt"
check_bad 2 "<stdin>:1:1: parse: unexpected ')'" eval -f - -d X=1x2 -o "$T/res.mtx" < "$T/paren.txt"
check_bad 1 "-f $T/none.txt: cannot open" eval -f "$T/none.txt" -d X=1x2 -o "$T/res.mtx"
printf 'X\000+X' > "$T/nul.txt"
check_bad 2 "NUL byte" eval -f "$T/nul.txt" -d X=1x2 -o "$T/res.mtx"
check_bad 2 "give the expression once" eval -e X -f "$T/seed0.txt" -d X=1x2 -o "$T/res.mtx"
check_bad 2 "needs -e EXPR or -f FILE" eval -d X=1x2 -o "$T/res.mtx"
check_bad 2 "does not take -e, -f" demo -f "$T/seed0.txt"
# an expression far longer than the kernel's argument limit (200 000 terms)
printf '%%%%MatrixMarket matrix array real general\n1 1\n1\n' > "$T/one.mtx"
awk 'BEGIN { printf "X"; for (i = 1; i < 200000; i++) printf " + %s", (i % 2 ? "2*X" : "X.^2"); printf "\n" }' > "$T/long.txt"
[ "$(wc -c < "$T/long.txt")" -gt 1000000 ] && ok || bad "long expression file"
run 0 "eval -f 200000 terms" -- eval -f "$T/long.txt" -v X="$T/one.mtx" &&
  { [ "$(sed -n 3p "$T/out")" = "300000" ] && ok || bad "200000-term value: $(sed -n 3p "$T/out")"; }
awk 'BEGIN { printf "exp(X"; for (i = 1; i < 200000; i++) printf " + X"; printf ")\n" }' > "$T/deep.txt"
run 0 "jacobian --print of exp(200000-term sum): labels of deep chains" -- jacobian -f "$T/deep.txt" -w X -v X="$T/one.mtx" --print &&
  { grep -qF "J = 200000·exp(X + X + X" "$T/out" && ok || bad "deep label: $(head -1 "$T/out")"; }
run 0 "gradient -f 200000 terms" -- gradient -f "$T/long.txt" -w X -v X="$T/one.mtx" &&
  { [ "$(sed -n 3p "$T/out")" = "399999" ] && ok || bad "200000-term gradient: $(sed -n 3p "$T/out")"; }

# ---- J without the value when the value is not needed -----------------------
# kron(X, Y) has 8.1·10¹³ entries; its Jacobian w.r.t. X needs Y alone
run 0 "jacobian --print of kron(X,Y), X and Y 3000×3000" -- jacobian -e "kron(X,Y)" -w X -d X=3000x3000 -d Y=3000x3000 --print &&
  { grep -qF "J = (I_3000 ⊗ K_{3000,3000} ⊗ I_3000)·(I_9000000 ⊗ vec Y)" "$T/out" && ok || bad "kron J printed: $(head -2 "$T/out")"; }
printf '%%%%MatrixMarket matrix array real general\n3 1\n1\n2\n3\n' > "$T/v3b.mtx"
run 0 "apply with a term whose value cannot be had" -- apply -e "x + tr(kron(B,B))" -w x -d x=3x1 -d B=3000x3000 --vector "$T/v3b.mtx" &&
  { [ "$(sed -n '3,5p' "$T/out" | tr '\n' ' ')" = "1 2 3 " ] && ok || bad "apply J v: $(cat "$T/out")"; }
check_bad 1 "out of memory" eval -e "x + tr(kron(B,B))" -d x=3x1 -d B=3000x3000 -o "$T/res.mtx"

# ---- readers: memory follows the file, not its header -----------------------
# (each read under a 2 GB address-space limit; sanitizer builds reserve more
# address space than that, so there the limit is left out)
limit_vm() { if [ "${LJ_SANITIZERS:-no}" = yes ]; then "$@"; else (ulimit -v 2000000; "$@"); fi; }
hdr='%%MatrixMarket matrix coordinate real general'
printf '%s\n%% tall and empty\n1882119519 11 0\n' "$hdr" > "$T/tall.mtx"
printf '%s\n100000 100000 1000000000\n1 1 1\n' "$hdr" > "$T/n9.mtx"
printf '%s\n1000000 1000000 100000000000\r\n1 1 1\r\n' "$hdr" > "$T/n11.mtx"
printf '%s\n11 1882119519 0\n' "$hdr" > "$T/wide.mtx"
limit_vm "$TOOL" read "$T/tall.mtx" > "$T/out" 2>"$T/err" && [ "$(cat "$T/out")" = "1882119519 11 0" ] && ok ||
  bad "tall empty matrix read under ulimit: $(cat "$T/out" "$T/err")"
for f in n9 n11; do
  limit_vm "$TOOL" read "$T/$f.mtx" > "$T/out" 2>"$T/err"; [ $? -eq 1 ] && grep -q "truncated: it declares" "$T/err" && ok ||
    bad "$f.mtx: $(cat "$T/err")"
done
limit_vm "$TOOL" read "$T/wide.mtx" > "$T/out" 2>"$T/err"; [ $? -eq 1 ] && grep -q "column pointers" "$T/err" && ok ||
  bad "wide.mtx: $(cat "$T/err")"
# a pipe has no size: what was read bounds the structure instead
if mkfifo "$T/wide.fifo" 2>/dev/null; then
  cat "$T/wide.mtx" > "$T/wide.fifo" &
  limit_vm "$TOOL" read "$T/wide.fifo" > "$T/out" 2>"$T/err"; [ $? -eq 1 ] && grep -q "column pointers" "$T/err" && ok ||
    bad "wide matrix through a pipe: $(cat "$T/err")"
  wait
fi
# a coordinate file stays sparse (19 bytes of file, 12 column pointers);
# read dense (--dense) it is a clear error, quickly
if run 0 "tall sparse leaf" -- eval -e "M" -v M="$T/tall.mtx"; then
  [ "$(sed -n 2p "$T/out")" = "1882119519 11 0" ] && ok || bad "tall sparse leaf: $(sed -n 2p "$T/out")"
fi
check_bad 1 "cannot be allocated" eval -e "M" -v M="$T/tall.mtx" --dense M -o "$T/res.mtx"
check_bad 1 "truncated: it declares 1000000000 entries" eval -e "M" -v M="$T/n9.mtx" -o "$T/res.mtx"
check_bad 1 "declaration '-d A=1000000x1000000': its 8e+03 GB of values cannot be allocated (more than this machine" eval -e "A" -d A=1000000x1000000 -o "$T/res.mtx"

# ---- gradient --print and --check ------------------------------------------
c="$CASES/seed002"
run 0 "gradient --print --check seed002" -- gradient -e "ones'*(Q.*W)*b" -w Q -v ones="$c/ones.mtx" -v Q="$c/Q.mtx" \
  -v W="$c/W.mtx" -v b="$c/b.mtx" --print --check &&
  { grep -qxF "gradient = (1_3 b^T) ∘ W" "$T/out" && grep -qF "shape: 3×4" "$T/out" &&
    grep -q "^finite-difference check: largest relative error" "$T/out" && ! grep -q "MatrixMarket" "$T/out" &&
    ok || bad "gradient --print: $(cat "$T/out")"; }
run 0 "gradient --print -o" -- gradient -e "tr(A*X*B)" -w X -d A=3x4 -d X=4x5 -d B=5x3 --print -o "$T/gp.mtx" &&
  { grep -qxF "gradient = A^T·B^T" "$T/out" && grep -qxF "plain: A'*B'" "$T/out" &&
    grep -qxF 'latex: A^{\top} \cdot B^{\top}' "$T/out" && [ -s "$T/gp.mtx" ] && ok || bad "gradient --print -o: $(cat "$T/out")"; }
# ---- hessian and apply --hessian ------------------------------------------------------
run 0 "hessian --print --check" -- hessian -e "tr(X'*A*X)" -w X -d A=3x3 -d X=3x2 --print --check &&
  { grep -qxF "gradient = (A^T + A)·X" "$T/out" && grep -qxF "H = I_2 ⊗ (A^T + A)" "$T/out" &&
    grep -qxF "shape: 6×6" "$T/out" && grep -q "^finite-difference check: largest relative error" "$T/out" &&
    ok || bad "hessian --print: $(cat "$T/out")"; }
run 0 "hessian -o" -- hessian -e "norm2(A*X*B-C)^2/2" -w X -d A=4x3 -d X=3x2 -d B=2x5 -d C=4x5 -o "$T/h.mtx" &&
  { head -1 "$T/h.mtx" | grep -q "coordinate real general" && ok || bad "hessian -o: $(head -2 "$T/h.mtx")"; }
run 0 "hessian rb" -- hessian -e "x'*A*x" -w x -d A=3x3 -d x=3x1 --format rb -o "$T/h.rb" &&
  { [ -s "$T/h.rb" ] && ok || bad "hessian --format rb wrote nothing"; }
# H v against the written H: x'*A*x has H = A + A^T
run 0 "hessian of x'Ax" -- hessian -e "x'*A*x" -w x -d A=4x4 -d x=4x1 -o "$T/hx.mtx"
run 0 "vector for H v" -- eval -e "v" -d v=4x1 --seed 5 -o "$T/hv.mtx"
run 0 "apply --hessian" -- apply -e "x'*A*x" -w x -d A=4x4 -d x=4x1 --hessian --vector "$T/hv.mtx" -o "$T/hy.mtx" &&
  { "$TOOL" matvec "$T/hx.mtx" "$T/hv.mtx" "$T/hyref.mtx" && "$TOOL" diff "$T/hy.mtx" "$T/hyref.mtx" 1e-12 && ok ||
    bad "apply --hessian differs from the written Hessian"; }
check_bad 1 "hessian: expression is (3×5), not a scalar" hessian -e "A*X" -w X -d A=3x4 -d X=4x5 -o "$T/res.mtx"
check_bad 1 "apply --hessian: expression is (3×5), not a scalar" apply -e "A*X" -w X -d A=3x4 -d X=4x5 --hessian --vector "$T/hv.mtx"
check_bad 2 "--format must be mtx or rb, not 'csv'" hessian -e "x'*x" -w x -d x=3x1 --format csv
check_bad 2 "'hessian' does not take --vector" hessian -e "x'*x" -w x -d x=3x1 --vector "$T/hv.mtx"
check_bad 2 "unknown option '--hessian' for 'jacobian'" jacobian -e "x'*x" -w x -d x=3x1 --hessian
check_bad 1 "apply: the vector in" apply -e "x'*x" -w x -d x=3x1 --hessian --vector "$T/hv.mtx"
check_bad 1 "gradient: expression is (3×5), not a scalar" gradient -e "A*X" -w X -d A=3x4 -d X=4x5 --print -o "$T/res.mtx"

# ---- sparse data -------------------------------------------------------------
printf '%%%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 2.5\n3 2 -1\n' >"$T/S.mtx"
if run 0 "sparse leaf: I ⊗ S" -- jacobian -e "S*X" -w X -v S="$T/S.mtx" -d X=3x2 --print; then
  grep -qF "J = I_2 ⊗ S" "$T/out" && grep -qF "nnz: 4" "$T/out" && ok || bad "sparse S*X: I_2 ⊗ S with nnz 4"
fi
if run 0 "--dense S" -- jacobian -e "S*X" -w X -v S="$T/S.mtx" --dense S -d X=3x2 --print; then
  grep -qF "nnz: 18" "$T/out" && ok || bad "--dense S makes S dense (nnz 18)"
fi
if run 0 "sparse value" -- eval -e "2*S'" -v S="$T/S.mtx"; then
  printf '%%%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 5\n2 3 -2\n' | cmp -s - "$T/out" && ok ||
    bad "eval of a sparse value writes coordinate"
fi
if run 0 "gradient on the pattern" -- gradient -e "sum(S .* S)" -w S -v S="$T/S.mtx" -o "$T/g.mtx"; then
  printf '%%%%MatrixMarket matrix coordinate real general\n3 3 2\n1 1 5\n3 2 -2\n' >"$T/gref.mtx"
  "$TOOL" diff "$T/g.mtx" "$T/gref.mtx" 1e-14 && ok || bad "gradient of a sparse variable on its pattern"
fi
if run 0 "sparse check" -- jacobian -e "S .* X" -w X -v S="$T/S.mtx" -d X=3x3 --print --check; then
  grep -qF "J = P_S·Diag(vec S)" "$T/out" && grep -qF "shape: 2×9" "$T/out" && ok || bad "S .* X prints P_S·Diag(vec S)"
fi
if run 0 "sparse gradient form" -- gradient -e "sum(S .* X)" -w S -v S="$T/S.mtx" -d X=3x3 --print; then
  grep -qxF "gradient = P_S ∘ X" "$T/out" && grep -qF "on the 2 stored entries of S" "$T/out" && ok ||
    bad "gradient of a sparse variable prints P_S ∘ X: $(cat "$T/out")"
fi
check_bad 2 "--dense T: no '-v T=FILE' declaration" eval -e "S" -v S="$T/S.mtx" --dense T

echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
