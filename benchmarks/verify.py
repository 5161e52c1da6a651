"""Verification cost: our fast path against one forward pass, and against the paper-literal way.

Three ratios (time.perf_counter, medians over repeats measured side by side in one run):

1. ``fingerprint.run(model, pools, m=3, n=300, trials=100)`` over all c = 10 classes (features
   of every pool once, then every trial as arithmetic on the cached features) against one
   batched forward pass (``features.logits``) over the same P and Q images.  Target <= 1.2x.
   "cold": the trials' index draws are made in the call (first verification on these pools);
   "warm": they come from the per-process draw cache (every later model or attack on the same
   pools: the draws depend on the pool sizes and the seed, never on the model).
2. The paper-literal way on the same draws against ours: per trial, a forward pass of the m
   mini-datasets (m*n images) through the model, the n x n linear-kernel matrices of Eq. 11
   summed over i != j, and the from-scratch Algorithm 1 (``clustering.agglomerative``).  The
   decisions must be identical (asserted).  Where the literal way would take too long it runs
   on the first few trials of every class and its time is scaled to all trials (printed).
3. ``stats.permutation_test(feature_pools, "pmi", B=1000, m=3, n=100, trials=100,
   classes="max")`` on the cached MNIST MLP features (10^6 trials).
4. The calibrated verification of ``ownership.verify_ownership``: the closed-form test
   (one-sided Mann-Whitney U per class, Stouffer) plus the directional permutation test at
   B = 999 (``ownership.directional_test``), all 10 classes, on the owner's pools (P' = 1,000
   revealed training images per class, Q = the validation split), as a ratio to one batched
   forward pass over the same images ((forward + tests) / forward; target <= 1.5x on the
   MNIST MLP, 1.2-1.5x measured on a loaded 2-core CPU).  Also beside it the
   directional test through ``stats.permutation_test`` (uniformly random permutations, B x N
   work per class).

Models are untrained (``build_model(..., seed=0)``): the cost of a forward pass and of a trial
does not depend on the weights.  MNIST MLP and LeNet-5 at full width; CIFAR-10 ResNet-34 at
width 0.0625 by default (``--resnet-width``): at width 1.0 one forward pass over the 60,000
CIFAR-10 pool images is ~70 TFLOP, hours on a 2-core CPU (a GPU takes it in seconds).  Pools are the real owner split's (``data.owner_split``,
``data.all_class_pools``).  Peak memory: tracemalloc (NumPy) over one verification, CUDA
peak on a GPU, ru_maxrss of the process.

    PMI_DATA_DIR=/path/to/data python benchmarks/verify.py           # several minutes on 2 cores
    PMI_DATA_DIR=/path/to/data python benchmarks/verify.py --quick   # < 60 s (CI; never fails on time)
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np
import torch

from pmi_tutorial import data, fingerprint
from pmi_tutorial.clustering import agglomerative, final_clusters
from pmi_tutorial.features import logits
from pmi_tutorial.models import build_model
from pmi_tutorial.pmi import guess_from_clusters, normalize_features


# --------------------------------------------------------------------------- the literal way
def mmd2_eq11(X: np.ndarray, Y: np.ndarray) -> float:
    """Eq. 10-11 as written: n x n kernel matrices, h[i, j] summed over i != j."""
    n = len(X)
    Kxx, Kyy, Kxy = X @ X.T, Y @ Y.T, X @ Y.T
    H = Kxx + Kyy - Kxy - Kxy.T
    return float((H.sum() - np.trace(H)) / (n * (n - 1)))


def literal_guesses(model, images: torch.Tensor, draws: fingerprint.Draws, n_P: int, k: int,
                    clock=None):
    """The first ``k`` trials of ``draws``, the paper's way: a forward pass per trial.

    ``clock`` (a one-element list), when given, accumulates the seconds spent in forward passes.
    """
    idx = draws.layout(n_P)[:k]
    t, m, n = idx.shape
    out = np.empty(t, dtype=np.int64)
    for j in range(t):
        t0 = time.perf_counter()
        x = images[torch.from_numpy(idx[j].reshape(-1))]
        F = logits(model, x, batch_size=m * n).double().numpy().reshape(m, n, -1)
        if clock is not None:
            clock[0] += time.perf_counter() - t0
        F = normalize_features(F)  # Eq. 5-6
        D = np.zeros((m, m))
        for a in range(m):
            for b in range(a + 1, m):
                D[a, b] = D[b, a] = np.sqrt(max(mmd2_eq11(F[a], F[b]), 0.0))
        G1, G2 = final_clusters(agglomerative(D, linkage="single"))
        out[j] = guess_from_clusters(G1, G2, draws.u[j])
    return out


# --------------------------------------------------------------------------- helpers
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"CPU: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
            f"load average {load:.1f}; GPU: {gpu}; torch {torch.__version__}, numpy {np.__version__}")


def timed(f):
    t0 = time.perf_counter()
    out = f()
    return time.perf_counter() - t0, out


def small_pools(pools, n_P, n_Q):
    return {r: data.Pools(p.P[:n_P], p.Q[:n_Q], r) for r, p in pools.items()}


def verify_once(model, pools, m, n, trials, cold):
    if cold:
        fingerprint._draw_cached.cache_clear()
    return fingerprint.run(model, pools, m=m, n=n, trials=trials, seed=0)


# --------------------------------------------------------------------------- measurements
def bench_model(name, width, pools, m, n, trials, repeats, literal_trials, warm_too=True):
    model = build_model(name, num_classes=10, width=width, seed=0).eval()
    X = torch.cat([torch.cat([p.P, p.Q]) for p in pools.values()])  # the same P and Q images
    logits(model, X[:256])  # warm-up (allocator, kernels)
    fwd, cold, warm = [], [], []
    for _ in range(repeats):  # interleaved, so that load changes hit all three alike
        fwd.append(timed(lambda: logits(model, X))[0])
        dt, res = timed(lambda: verify_once(model, pools, m, n, trials, cold=True))
        cold.append(dt)
        if warm_too:
            warm.append(timed(lambda: verify_once(model, pools, m, n, trials, cold=False))[0])
    f, c = statistics.median(fwd), statistics.median(cold)
    w = statistics.median(warm) if warm else float("nan")

    # the trials alone, on cached features (what a permutation or a second statistic costs)
    feats = fingerprint.pool_features(model, pools)
    arith = statistics.median(
        timed(lambda: fingerprint.run_on_features(feats, m, n, trials=trials, seed=0))[0]
        for _ in range(max(3, repeats)))

    # peak NumPy memory of the trials on cached features, draws included (tracemalloc; not timed)
    fingerprint._draw_cached.cache_clear()
    tracemalloc.start()
    fingerprint.run_on_features(feats, m, n, trials=trials, seed=0)
    peak_np = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    # the literal way on the same draws; decisions compared with the fast path
    k = min(trials, literal_trials)
    lit_time, clock = 0.0, [0.0]
    for r, p in pools.items():
        fP, fQ = feats[r]
        d = fingerprint.draw_trials(len(p.P), len(p.Q), m, n, trials, seed=fingerprint.class_seed(0, r))
        images = torch.cat([p.P, p.Q])
        dt, lit = timed(lambda: literal_guesses(model, images, d, len(p.P), k, clock))
        lit_time += dt
        fast = fingerprint.trial_guesses(fP, fQ, d, method="fast")
        assert np.array_equal(fast[:k], lit), f"{name} class {r}: fast and literal decisions differ"
        assert np.isclose(np.mean(fast == d.s), res.acc_by_class[r])
    scale = trials / k
    lit_all = lit_time * scale
    lit_arith = max(lit_time - clock[0], 0.0) * scale
    return dict(name=name, width=width, images=len(X), fwd=f, cold=c, warm=w, arith=arith,
                lit=lit_all, lit_arith=lit_arith, literal_trials=k, trials=trials,
                peak_np=peak_np, acc=res.mean_acc, feats=feats)


def bench_permutation(feats, B, m, n, trials):
    try:
        from pmi_tutorial import stats
    except ImportError:
        stats = None
    if stats is not None and hasattr(stats, "permutation_test"):
        dt, res = timed(lambda: stats.permutation_test(feats, statistic="pmi", B=B, seed=0, m=m, n=n,
                                                       trials=trials, classes="max"))
        return dt, f"stats.permutation_test (p = {res.pvalue:.3g})" if hasattr(res, "pvalue") else "stats.permutation_test"
    # fallback: B re-splits x t trials through the fast path ourselves
    rng = np.random.default_rng(0)

    def loop():
        for _ in range(B):
            for r, (fP, fQ) in feats.items():
                Z = np.concatenate([np.asarray(fP), np.asarray(fQ)])
                perm = rng.permutation(len(Z))
                fingerprint.class_accuracy(Z[perm[:len(fP)]], Z[perm[len(fP):]], m, n, trials,
                                           seed=fingerprint.class_seed(0, r))
    return timed(loop)[0], "B re-splits through fingerprint.class_accuracy (stats.permutation_test absent)"


def bench_calibrated(repeats, revealed=1000, quick=False):
    """Section 4: forward pass over the pools vs forward + closed form + directional (B=999)."""
    from scipy.special import log_softmax

    from pmi_tutorial import ownership, stats

    split = data.owner_split("mnist")
    pools = ownership.pools_from_split(split, 100 if quick else revealed, seed=0)
    if quick:
        keep = np.concatenate([np.flatnonzero(pools.Q_y == r)[:200] for r in pools.classes])
        pools = ownership.OwnerPools("mnist", pools.classes, pools.P_x, pools.P_y,
                                     pools.Q_x[keep], pools.Q_y[keep])
    B = 199 if quick else 999
    model = build_model("mlp", num_classes=10, seed=0).eval()
    X = torch.from_numpy(np.concatenate([pools.P_x, pools.Q_x]))
    nP = len(pools.P_x)
    logits(model, X[:256])

    def tests(z):
        lp = log_softmax(z, axis=1)
        lpools = {r: (lp[:nP][pools.P_y == r], lp[nP:][pools.Q_y == r]) for r in pools.classes}
        scores = ownership.class_scores(lpools)  # as verify_ownership: once for both tests
        return (ownership.closed_form_from_scores(scores),
                ownership.directional_from_scores(scores, B=B, seed=0), lpools)

    fwd, cal, only = [], [], []
    for _ in range(repeats):  # interleaved
        fwd.append(timed(lambda: logits(model, X))[0])
        cal.append(timed(lambda: tests(logits(model, X).double().numpy()))[0])
        z = logits(model, X).double().numpy()
        dt, (cf, d, lpools) = timed(lambda: tests(z))
        only.append(dt)
    f, c, t = statistics.median(fwd), statistics.median(cal), statistics.median(only)
    slow = timed(lambda: stats.permutation_test(lpools, "directional", B=B, seed=0))[0]
    print(f"\n4. calibrated verification (closed form + directional permutation test, B={B}, 10 "
          f"classes) over {len(X):,} pool images, MNIST MLP (target <= 1.5x)")
    print(f"   forward {f:.3f} s, the two tests on its outputs {t:.3f} s: (forward + tests) / "
          f"forward = {(f + t) / f:.2f}x; measured end to end {c:.3f} s = {c / f:.2f}x "
          f"(closed form p = {cf.pvalue:.3g}, directional p = {d.pvalue:.3g})")
    print(f"   the directional test via stats.permutation_test (uniform random permutations): "
          f"{slow:.3f} s, {slow / t:.0f}x both tests of the cyclic-group version")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes, < 60 s (CI)")
    ap.add_argument("--resnet-width", type=float, default=None,
                    help="ResNet-34 width multiplier (default 0.0625)")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    q = args.quick
    m, n, trials = (3, 25, 10) if q else (3, 300, 100)
    repeats = args.repeats or (2 if q else 3)
    rw = args.resnet_width or 0.0625
    B, pn, pt = (20, 25, 10) if q else (1000, 100, 100)
    print(machine())
    print(f"m={m} n={n} trials={trials} per class, 10 classes, repeats={repeats}"
          + (" (--quick: pools cut to 200 P / 100 Q per class, CIFAR-10 60 / 50)" if q else ""))

    mnist = data.all_class_pools(data.owner_split("mnist"))
    cifar = data.all_class_pools(data.owner_split("cifar10"))
    if q:
        mnist, cifar = small_pools(mnist, 200, 100), small_pools(cifar, 60, 50)
    plan = [("mlp", 1.0, mnist, repeats + 2, trials if not q else 2, True),
            ("lenet5", 1.0, mnist, repeats, 20 if not q else 2, True),
            ("resnet34", rw, cifar, 1, 2 if not q else 1, False)]
    rows = []
    for name, width, pools, rep, lt, warm_too in plan:
        rows.append(bench_model(name, width, pools, m, n, trials, rep, lt, warm_too))
        r = rows[-1]
        print(f"  measured {name} (width {width:g}) over {r['images']} images: forward {r['fwd']:.3f} s,"
              f" verification cold {r['cold']:.3f} s, trials on cached features {r['arith']:.3f} s",
              flush=True)

    print("\n1. full verification (10 classes) / one batched forward pass over the same P and Q"
          " images (target <= 1.2x)")
    print(f"{'model':<16} {'forward s':>10} {'cold s':>8} {'warm s':>8} {'cold x':>7} {'warm x':>7}"
          f" {'trials only s':>14} {'(fwd+trials)/fwd':>17} {'mean acc':>9}")
    for r in rows:
        label = f"{r['name']} w{r['width']:g}"
        print(f"{label:<16} {r['fwd']:10.3f} {r['cold']:8.3f} {r['warm']:8.3f} "
              f"{r['cold'] / r['fwd']:6.2f}x {r['warm'] / r['fwd']:6.2f}x {r['arith']:14.3f} "
              f"{(r['fwd'] + r['arith']) / r['fwd']:16.3f}x {r['acc']:9.3f}")
    print("   (fwd+trials)/fwd: verification = features of every pool (one forward pass) + trials;"
          " robust to load noise in the forward timings on a shared machine")

    print("\n2. paper-literal way / ours on the same draws (target >= 100x); decisions identical"
          " (asserted)")
    print(f"{'model':<16} {'literal s':>10} {'ours s':>8} {'ratio':>8} {'literal arith s':>16}"
          f" {'ours trials s':>14} {'ratio':>8} {'fwd bound':>10}  literal trials/class run")
    for r in rows:
        label = f"{r['name']} w{r['width']:g}"
        # the literal way forwards trials*m*n images per class, ours every pool image once
        bound = 10 * r["trials"] * m * n / r["images"]
        print(f"{label:<16} {r['lit']:10.2f} {r['cold']:8.3f} {r['lit'] / r['cold']:7.1f}x "
              f"{r['lit_arith']:16.2f} {r['arith']:14.3f} {r['lit_arith'] / r['arith']:7.1f}x "
              f"{bound:9.1f}x  {r['literal_trials']} of {r['trials']}"
              + (" (scaled)" if r['literal_trials'] < r['trials'] else ""))
    print("   fwd bound: images the literal way forwards / images ours forwards; when the forward"
          " pass dominates, literal/ours cannot exceed it")

    dt, how = bench_permutation(rows[0]["feats"], B, 3, pn, pt)
    print(f"\n3. permutation test, MNIST MLP cached features: B={B}, m=3, n={pn}, trials={pt}, "
          f"10 classes ({B * pt * 10:,} trials): {dt:.1f} s via {how}")

    bench_calibrated(max(3, repeats), quick=q)

    print("\npeak memory:")
    for r in rows:
        print(f"  {r['name']:<10} tracemalloc (NumPy) peak, trials on cached features: {r['peak_np'] / 2**20:7.1f} MiB")
    if torch.cuda.is_available():
        print(f"  CUDA max_memory_allocated: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"  process ru_maxrss: {rss / (2**20 if sys.platform == 'darwin' else 2**10):.0f} MiB"
          " (includes both datasets' normalized images)")


if __name__ == "__main__":
    main()
