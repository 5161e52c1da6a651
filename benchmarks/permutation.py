"""Seconds for B permutations per statistic, and the ratio to one-at-a-time permutations.

Synthetic cached features of realistic size: c = 10 classes, |P| = 5000, |Q| = 2000, d = 10
(an MNIST-like owner's split), m = 3, n = 100.  ``permutation_test(..., classes="max")``
re-splits every class in every permutation, so a trial statistic costs B * trials * c trials.

    python benchmarks/permutation.py            # B = 1000 (a few minutes in all)
    python benchmarks/permutation.py --quick    # CI: small B, two classes, < 30 s

The "naive" column times a plain loop for a few permutations (re-split with NumPy, call the
statistic on the new pools) and scales it to B; the ratio is naive / vectorized, of the wall
clock and ("cpu ratio") of the process's CPU time, which on a busy shared machine is steadier
than the wall clock.  Every ratio should be above 1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from pmi_tutorial import stats
from pmi_tutorial.fingerprint import class_seed


def synthetic_pools(classes, n_P, n_Q, d, seed=0):
    rng = np.random.default_rng(seed)
    pools = {}
    for r in range(classes):
        P = rng.normal(size=(n_P, d))
        Q = rng.normal(size=(n_Q, d))
        P[:, r % d] += 4.0
        Q[:, r % d] += 3.9  # members slightly more confident: a weak signal
        pools[r] = (P, Q)
    return pools


def naive_seconds(pools, name, kwargs, reps):
    """A plain loop over permutations (every class re-split, the max taken): (wall, CPU)
    seconds per permutation."""
    rng = np.random.default_rng(0)
    stat = stats.STATISTICS[name]
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(reps):
        vals = []
        for r, (P, Q) in pools.items():
            Z = np.concatenate([P, Q])
            perm = rng.permutation(len(Z))
            vals.append(stat(Z[perm[: len(P)]], Z[perm[len(P):]], seed=class_seed(0, r), r=r, **kwargs))
        max(vals)
    return (time.perf_counter() - t0) / reps, (time.process_time() - c0) / reps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small B and two classes (CI, < 30 s)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's choice; 1 helps on a busy machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        pools, B = synthetic_pools(2, 5000, 2000, 10), 50
        plan = [("mmd", {}), ("directional", {}), ("pmi", dict(trials=20)),
                ("outlier", dict(trials=20)), ("rbf", dict(trials=2))]
        naive_reps = 3
    else:
        pools, B = synthetic_pools(10, 5000, 2000, 10), 1000
        plan = [("mmd", {}), ("directional", {}),
                ("pmi", dict(trials=100)), ("pmi", dict(trials=100, dtype="float32")),
                ("pmi", dict(trials=20)), ("outlier", dict(trials=100)),
                ("rbf", dict(trials=3)), ("rbf", dict(trials=3, bandwidth=1.0))]
        naive_reps = 5
    c = len(pools)
    n_P, n_Q = (len(x) for x in pools[0])
    print(f"torch threads={torch.get_num_threads()} classes={c} |P|={n_P} |Q|={n_Q} d={pools[0][0].shape[1]} m=3 n=100 B={B} "
          "classes='max'")
    print(f"{'statistic':<12} {'options':<34} {'seconds':>8} {'cpu s':>7} {'per perm (ms)':>13} "
          f"{'naive (s)':>10} {'naive cpu':>10} {'ratio':>7} {'cpu ratio':>10} {'p':>7}")
    for name, kw in plan:
        # warm-up, untimed: the first call's one-time costs (lazy imports, allocator) are not
        # per-permutation costs and would otherwise be charged to the vectorized column only
        stats.permutation_test(pools, name, B=2, seed=1, m=3, n=100, **kw)
        naive_seconds(pools, name, dict(m=3, n=100, **kw), 1)
        t0, c0 = time.perf_counter(), time.process_time()
        res = stats.permutation_test(pools, name, B=B, seed=0, m=3, n=100, **kw)
        sec, cpu = time.perf_counter() - t0, time.process_time() - c0
        naive, naive_cpu = (x * B for x in naive_seconds(pools, name, dict(m=3, n=100, **kw),
                                                          naive_reps))
        opts = ", ".join(f"{k}={v}" for k, v in kw.items()) or "-"
        print(f"{name:<12} {opts:<34} {sec:8.2f} {cpu:7.2f} {1000 * sec / B:13.2f} {naive:10.1f} "
              f"{naive_cpu:10.1f} {naive / sec:7.1f} {naive_cpu / cpu:10.1f} {res.pvalue:7.4f}",
              flush=True)


if __name__ == "__main__":
    main()
