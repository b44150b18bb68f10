#!/usr/bin/env python3
"""scipy.sparse.kron on the shapes of bench_build's Kronecker part: A, B
n×n with 5% of their entries stored, the product in CSC (what lazyjac's
lj_op_to_sparse returns), best of two runs. A benchmark, not a
dependency: Debian's python3-scipy (apt-get install python3-scipy).
Usage: python3 bench/kron_scipy.py [quick]"""
import sys
import time

import numpy as np
import scipy
import scipy.sparse as sp

quick = len(sys.argv) > 1 and sys.argv[1] == "quick"
rng = np.random.default_rng(11)
print(f"scipy {scipy.__version__}: sparse.kron(A, B, format='csc'), A, B n×n, 5% dense")
print(f"   {'n':>5} {'nnz':>12} {'Mnnz/s':>10}")
for n in (100, 290) if quick else (100, 290, 580):
    a = sp.random(n, n, density=0.05, format="csc", random_state=rng)
    b = sp.random(n, n, density=0.05, format="csc", random_state=rng)
    best = float("inf")
    nnz = 0
    for _ in range(2):
        t0 = time.perf_counter()
        k = sp.kron(a, b, format="csc")
        dt = time.perf_counter() - t0
        nnz = k.nnz
        del k
        best = min(best, dt)
    print(f"   {n:>5} {nnz:>12} {nnz / best * 1e-6:>10.1f}")
