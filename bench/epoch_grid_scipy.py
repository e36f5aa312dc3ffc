"""scipy's L-BFGS-B on the same Huber-on-log Chinchilla objective and the same 4500-start grid
as `p2law` (Epoch AI's grid), for the side-by-side timing in bench/epoch_grid.sh.

Usage: python3 epoch_grid_scipy.py DATA.csv EVERY [P2LAW_PER_START_FILE]
Runs every EVERY-th start of the grid (in p2law's order: a, b, e, alpha, beta) and prints the
time per start; with p2law's per-start objectives, compares the two optimisers start by start.
"""
import csv
import itertools
import sys
import time

import numpy as np
from scipy.optimize import minimize
from scipy.special import logsumexp

DELTA = 1e-3


def load(path):
    rows = list(csv.DictReader(open(path)))
    rows.sort(key=lambda r: float(r["loss"]))
    rows = rows[:-5]
    n = np.array([float(r["Model Size"]) for r in rows])
    d = np.array([float(r["Training FLOP"]) for r in rows]) / (6 * n)
    loss = np.array([float(r["loss"]) for r in rows])
    return np.log(n), np.log(d), np.log(loss)


def objective(theta, ln_n, ln_d, ln_l):
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * ln_n, b - beta * ln_d, np.full_like(ln_n, e)])
    pred = logsumexp(terms, axis=0)
    r = pred - ln_l
    absr = np.abs(r)
    quad = absr <= DELTA
    value = np.where(quad, 0.5 * r * r, DELTA * (absr - 0.5 * DELTA)).sum()
    dr = np.clip(r, -DELTA, DELTA)
    w = np.exp(terms - pred)  # softmax weights, d pred / d term
    grad = np.array([
        (dr * w[0]).sum(),
        (dr * w[1]).sum(),
        (dr * w[2]).sum(),
        (dr * w[0] * -ln_n).sum(),
        (dr * w[1] * -ln_d).sum(),
    ])
    return value, grad


def main():
    path, every = sys.argv[1], int(sys.argv[2])
    ours = None
    if len(sys.argv) > 3:
        ours = [float(x) for x in open(sys.argv[3]).read().split()]
    data = load(path)
    grid = list(itertools.product(
        np.arange(0, 30, 5), np.arange(0, 30, 5), np.arange(-1, 1.5, 0.5), np.arange(0, 2.5, 0.5), np.arange(0, 2.5, 0.5)))
    assert len(grid) == 4500
    chosen = list(range(0, len(grid), every))
    best = np.inf
    results = {}
    t0 = time.perf_counter()
    for i in chosen:
        res = minimize(objective, np.array(grid[i], dtype=float), args=data, jac=True, method="L-BFGS-B")
        results[i] = res.fun
        best = min(best, res.fun)
    secs = time.perf_counter() - t0
    print(f"scipy starts       {len(chosen)} (every {every}th of 4500)")
    print(f"scipy time         {secs:.3f} s")
    print(f"scipy per start    {secs * 1e3 / len(chosen):.3f} ms")
    print(f"scipy best         {best:.10f}")
    if ours is not None:
        same = sum(1 for i in chosen if np.isfinite(ours[i]) and abs(ours[i] - results[i]) <= 1e-6 * abs(results[i]) + 1e-12)
        better = sum(1 for i in chosen if np.isfinite(ours[i]) and ours[i] < results[i] - 1e-6 * abs(results[i]))
        print(f"per start          same optimum {same}, p2law lower {better}, scipy lower {len(chosen) - same - better}")


if __name__ == "__main__":
    main()
