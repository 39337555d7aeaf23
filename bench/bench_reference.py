"""Benchmarks for reference/ (speed is measured here, not in timed tests).

Run:  .venv/bin/python bench/bench_reference.py [--quick]

1. mAP over the 2IMM10 out-of-domain set size: 5,000 items (10 classes x 500),
   every item querying the other 4,999, with
   reference.retrieval.mean_average_precision versus a per-query loop over
   sklearn.metrics.average_precision_score (same inputs, same run), for
   128-d and 2048-d float64 features and 2048-d float32 ones (the width and
   precision of the seed's layer-6/7 neural codes from a torch model). Also
   the peak memory traced by tracemalloc for the vectorised version.
2. Hard-negative mining for a batch of 1,024 embeddings:
   reference.metric_learning.hardest_negatives versus a Python loop.

Figures are wall-clock seconds on whatever machine runs this; the baselines
are measured in the same run (for mAP interleaved with the reference, as
this machine's speed drifts; see bench_map).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc

import numpy as np
from sklearn.metrics import average_precision_score

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reference import retrieval  # noqa: E402
from reference.metric_learning import hardest_negatives  # noqa: E402
from reference.retrieval import average_precisions_all_vs_all, l2_normalize, mean_average_precision  # noqa: E402


def best_of(fn, repeats):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def sklearn_map_loop(f, labels, queries):
    n = f.shape[0]
    aps = []
    for i in queries:
        s = f @ f[i]
        mask = np.arange(n) != i
        aps.append(average_precision_score(labels[mask] == labels[i], s[mask]))
    return np.array(aps)


def upper_product_only(f):
    """The upper-triangle block products that the reference makes, and nothing
    else: a floor for any exact all-vs-all ranking on this machine."""
    with retrieval._threads(retrieval._default_jobs(None)) as run:
        run(lambda blk: f[blk[0]:blk[1]] @ f[blk[2]:blk[3]].T, retrieval._upper_blocks(f.shape[0]))


def bench_map(dim, dtype, quick, rng, block=250, group=4):
    """This machine's speed drifts by tens of percent over seconds, so the
    reference and the loop are timed interleaved: two reference runs, then
    ``group`` blocks of ``block`` loop queries, and so on. Each side is
    scored by its best (the loop by its fastest block, scaled to all
    queries); the medians are printed too."""
    n, classes = 5000, 10
    labels = np.repeat(np.arange(classes), n // classes)
    centres = rng.standard_normal((classes, dim))
    f = l2_normalize(rng.standard_normal((n, dim)) + 0.35 * centres[labels]).astype(dtype)
    mean_average_precision(f, labels)  # warm-up: first-touch page faults, thread pool
    sklearn_map_loop(f, labels, range(3))  # warm-up, so that first-call costs are not scaled up
    t_fast1, _ = best_of(lambda: mean_average_precision(f, labels, n_jobs=1), 3)
    blocks = [range(a, a + block) for a in range(0, n, block)]
    if quick:
        blocks = blocks[::5]  # 4 blocks, spread over the classes
    fast, loop, ref = [], [], []
    for g in range(0, len(blocks), group):
        for _ in range(2):
            time.sleep(0.25)  # let the loop's BLAS threads, which spin a while after use, go idle
            t, m = best_of(lambda: mean_average_precision(f, labels), 1)
            fast.append(t)
        for queries in blocks[g:g + group]:
            t0 = time.perf_counter()
            ref.append(sklearn_map_loop(f, labels, queries))
            loop.append((time.perf_counter() - t0) * n / len(queries))
    t_fast, t_loop = min(fast), min(loop)
    t_floor, _ = best_of(lambda: upper_product_only(f), 3)
    ap = average_precisions_all_vs_all(f, labels)
    ref = np.concatenate(ref)
    err = float(np.max(np.abs(ap[np.concatenate(blocks)] - ref)))
    tracemalloc.start()
    mean_average_precision(f, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"mAP, 5000 items x {dim}-d {np.dtype(dtype).name} features, each querying the other 4999 (mAP = {m:.4f})")
    print(f"  reference (threads={os.cpu_count() and min(4, os.cpu_count())}): best {t_fast:.3f} s, "
          f"median {np.median(fast):.3f} s of {len(fast)} runs   (1 thread: {t_fast1:.3f} s)")
    print(f"  sklearn per-query loop, scaled to {n} queries from its fastest block of {block}: {t_loop:.2f} s, "
          f"median block {np.median(loop):.2f} s ({len(ref)} queries run)")
    print(f"  speed-up: {t_loop / t_fast:.1f}x (best vs best), {np.median(loop) / np.median(fast):.1f}x (median vs median)"
          f"   max |AP - sklearn AP| = {err:.1e}")
    print(f"  floor: the upper-triangle products alone take {t_floor:.3f} s, so no exact ranking here "
          f"beats {t_loop / t_floor:.0f}x")
    print(f"  peak traced memory (reference, incl. nothing else): {peak / 2**20:.1f} MiB "
          f"(features alone: {f.nbytes / 2**20:.1f} MiB)")
    return t_fast, t_loop, peak


def python_loop_hardest(e, labels, n_anchors):
    n = e.shape[0]
    out = []
    for i in range(n_anchors):
        best, arg = float("inf"), -1
        for j in range(n):
            if labels[j] != labels[i]:
                d = float(np.sum((e[i] - e[j]) ** 2))
                if d < best:
                    best, arg = d, j
        out.append(arg)
    return np.array(out)


def row_loop_hardest(e, labels):
    out = []
    for i in range(e.shape[0]):
        d = np.sum((e - e[i]) ** 2, axis=1)
        d[labels == labels[i]] = np.inf
        out.append(int(np.argmin(d)))
    return np.array(out)


def bench_mining(quick, rng):
    b, dim = 1024, 128
    labels = rng.integers(0, 32, b)
    e = rng.standard_normal((b, dim))
    t_fast, fast = best_of(lambda: hardest_negatives(e, labels), 10)
    t_row, row = best_of(lambda: row_loop_hardest(e, labels), 3)
    nq = 128 if quick else b
    t0 = time.perf_counter()
    slow = python_loop_hardest(e, labels, nq)  # pure Python loop over anchors x candidates
    t_py = (time.perf_counter() - t0) * b / nq
    assert np.array_equal(fast[:nq], slow) and np.array_equal(fast, row)
    extrap = " (extrapolated from %d anchors)" % nq if nq < b else ""
    print(f"hard-negative mining, batch of {b} x {dim}-d embeddings, 32 classes")
    print(f"  reference (vectorised): {t_fast * 1e3:.1f} ms")
    print(f"  Python loop over anchors x candidates: {t_py:.2f} s{extrap}  -> {t_py / t_fast:.0f}x")
    print(f"  per-anchor numpy loop: {t_row * 1e3:.1f} ms  -> {t_row / t_fast:.1f}x")
    return t_fast, t_py, t_row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="extrapolate the slow baselines from a subset")
    ap.add_argument("--cases", default="128:float64,2048:float64,2048:float32",
                    help="dimension:dtype of the features in the mAP benchmark")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"cpu_count={os.cpu_count()} numpy={np.__version__}")
    try:
        print(f"load average: {os.getloadavg()}")
    except OSError:
        pass
    for case in args.cases.split(","):
        dim, dtype = case.split(":")
        bench_map(int(dim), dtype, args.quick, rng)
    bench_mining(args.quick, rng)


if __name__ == "__main__":
    main()
