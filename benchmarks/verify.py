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
4. The owner's verification end to end, ``verification.verify_ownership`` (the suspect's
   outputs, the closed-form rank and tail tests, their Bonferroni combination, the directional
   permutation test at B = 999, the paper's rule with t = 100 for comparison on the draws
   bound in the pools, as in a fresh ``verify`` process reading a pools file), against one
   batched forward pass over the same pool images, for every architecture, on the quick pools
   (100 revealed members and 200 non-members per class) and on the full pools (1,000 revealed
   per class and the whole validation split: 30,000 MNIST images); target <= 1.5x.  Beside
   it: the same on pools without bound draws (``rule=None``, a version-2 file: the draws are
   made in the call, which ``benchmarks/draws.py`` shows no vectorised replay of the same
   numbers makes cheaper), the same without the paper's rule, and the directional test
   through ``stats.permutation_test`` (uniformly random permutations, B x N work per class),
   and the paper's rule's floor (:func:`rule_floor`: gathering its t x m x n feature rows per
   class and one batched product over them, the part no NumPy/torch kernel avoids).
   ``--owner-only`` runs this section alone.

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


ARCHS = (("mlp", "mnist", 1.0), ("lenet5", "mnist", 1.0), ("vgg19", "cifar10", 0.125),
         ("resnet34", "cifar10", 0.0625))  # CIFAR-10 models at the quick profile's widths


def owner_pools(dataset, size):
    """The owner's pools: "quick" = 100 revealed members and 200 non-members per class (3,000
    images), "full" = 1,000 revealed members per class and the whole validation split (30,000
    MNIST / 25,000 CIFAR-10 images), as ``python -m pmi_tutorial pools --revealed 1000``."""
    from pmi_tutorial import pools_file

    split = data.owner_split(dataset)
    pools = pools_file.pools_from_split(split, 100 if size == "quick" else 1000, seed=0)
    if size == "quick":
        keep = np.concatenate([np.flatnonzero(pools.Q_y == r)[:200] for r in pools.classes])
        pools = pools_file.OwnerPools(dataset, pools.classes, pools.P_x, pools.P_y,
                                      pools.Q_x[keep], pools.Q_y[keep])
    pools.digest  # computed once per pools (load_pools does it when reading the file)
    return pools


def without_bound_draws(pools):
    """The same pools without the paper's rule's draws (as a version-2 file): verify draws."""
    from pmi_tutorial import pools_file

    return pools_file.OwnerPools(pools.dataset, pools.classes, pools.P_x, pools.P_y, pools.Q_x,
                                 pools.Q_y, pools.info, rule=None)


def rule_floor(model, pools, m=3, n=100, trials=100, seed=0):
    """A function doing the paper's rule's unavoidable arithmetic on ``model``'s features: the
    gather of every trial's m x n feature rows and their sums and products (``batched.gather``,
    ``batched.gram``: each gathered number read once more), in the chunks ``batched.distances``
    uses; no normalization, no distances, no clustering.  Whatever the implementation, the
    rule reads t x m x n rows of c features per class, so this bounds its cost from below for
    NumPy/torch kernels."""
    from pmi_tutorial import batched

    z = logits(model, torch.from_numpy(np.concatenate([pools.P_x, pools.Q_x]))).double().numpy()
    nP = len(pools.P_x)
    draws = pools.rule_draws(m, n, trials, seed)
    ZT, idx = fingerprint.classes_table([(z[:nP][pools.P_y == r], z[nP:][pools.Q_y == r], draws[r])
                                         for r in pools.classes])
    chunk = max(1, batched.CHUNK_ELEMENTS // (ZT.shape[0] * m * n))

    def floor():
        with batched.one_thread(ZT.device):
            for start in range(0, len(idx), chunk):
                batched.gram(batched.gather(ZT, idx[start:start + chunk]))

    return floor


def bench_owner(sizes, archs, repeats):
    """Section 4: ``verification.verify_ownership`` end to end against one batched forward pass
    over the same pool images, interleaved, medians; CPU seconds of the process (steadier than
    the wall clock on a shared machine) and wall seconds side by side."""
    from pmi_tutorial import ownership, stats, verification

    def clock(f):
        w, c = time.perf_counter(), time.process_time()
        out = f()
        return time.perf_counter() - w, time.process_time() - c, out

    print(f"\n4. the owner's verification, end to end (verify_ownership: the suspect's outputs, "
          f"rank, tail, Bonferroni, directional permutation test B <= 999, the paper's rule t = 100 "
          f"on the draws bound in the pools) / one batched forward pass over the same images "
          f"(target <= 1.5x); torch threads {torch.get_num_threads()}, medians of {repeats}")
    print(f"{'model':<14} {'pools':<6} {'images':>7} {'forward s':>10} {'verify s':>9} "
          f"{'ratio':>7} {'unbound s':>9} {'ratio':>7} {'no paper s':>11} {'ratio':>7} "
          f"{'wall ratio':>11} {'rule floor':>11} {'verdict':>12}")
    rows = []
    for size in sizes:
        for name, dataset, width in archs:
            pools = owner_pools(dataset, size)
            unbound = without_bound_draws(pools)
            model = build_model(name, num_classes=10, width=width, seed=0).eval()
            X = torch.from_numpy(np.concatenate([pools.P_x, pools.Q_x]))
            logits(model, X[:256])  # warm-up
            floor = rule_floor(model, pools)
            fwd, ver, warm, nop, fwd_w, ver_w, flo = [], [], [], [], [], [], []
            for _ in range(repeats):  # interleaved: load changes hit all alike
                w, c, _ = clock(lambda: logits(model, X))
                fwd.append(c), fwd_w.append(w)
                fingerprint._draw_cached.cache_clear()  # cold: a fresh `verify` process
                w, c, res = clock(lambda: verification.verify_ownership(model, pools))
                ver.append(c), ver_w.append(w)
                fingerprint._draw_cached.cache_clear()
                warm.append(clock(lambda: verification.verify_ownership(model, unbound))[1])
                nop.append(clock(lambda: verification.verify_ownership(
                    model, pools, paper_rule=False))[1])
                flo.append(clock(floor)[1])
            f, v, v1, n0, fl = (statistics.median(x) for x in (fwd, ver, warm, nop, flo))
            wr = statistics.median(ver_w) / statistics.median(fwd_w)
            rows.append((name, size, v / f))
            print(f"{name + ' w' + format(width, 'g'):<14} {size:<6} {len(X):>7,} {f:10.3f} {v:9.3f} "
                  f"{v / f:6.2f}x {v1:8.3f} {v1 / f:6.2f}x {n0:11.3f} {n0 / f:6.2f}x {wr:10.2f}x "
                  f"{fl / f:10.2f}x {res.verdict:>12}",
                  flush=True)
    # the directional test via uniformly random permutations (B x N work per class), on the
    # last MNIST pools' scores, against the cyclic-group version verify_ownership uses
    pools = owner_pools("mnist", sizes[-1])
    model = build_model("mlp", num_classes=10, seed=0).eval()
    z = logits(model, torch.from_numpy(np.concatenate([pools.P_x, pools.Q_x]))).double().numpy()
    lp = verification.to_log_probabilities(z, "logits")
    nP = len(pools.P_x)
    lpools = {r: (lp[:nP][pools.P_y == r], lp[nP:][pools.Q_y == r]) for r in pools.classes}
    scores = ownership.class_scores(lpools)
    fast = clock(lambda: ownership.directional_from_scores(scores, B=pools.B, seed=0))[1]
    slow = clock(lambda: stats.permutation_test(lpools, "directional", B=pools.B, seed=0))[1]
    print(f"   directional test, B = {pools.B}: cyclic group (verify_ownership) {fast:.3f} CPU s, "
          f"uniform permutations (stats.permutation_test) {slow:.3f} CPU s, {slow / fast:.0f}x")
    print("   'unbound': the same call on pools without bound draws (a version-2 pools file): "
          "the paper's rule's draws are made in the call; the difference is the draws' cost, "
          "paid once by `pools` (benchmarks/draws.py)")
    print("   'no paper': the verdict and the evidence alone (verify_ownership(paper_rule=False)); "
          "the paper's rule for comparison costs its t x m x n trials per class")
    print("   'rule floor': the paper's rule's unavoidable part alone (gathering the t x m x n "
          "feature rows of every class's trials and one batched product over them, "
          "benchmarks/verify.py rule_floor) / the forward pass; where 'no paper' plus this "
          "floor exceeds 1.5x, no NumPy/torch kernel of the rule meets the target")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced sizes, < 60 s (CI)")
    ap.add_argument("--resnet-width", type=float, default=None,
                    help="ResNet-34 width multiplier (default 0.0625)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--owner-only", action="store_true",
                    help="only section 4 (the owner's verification against one forward pass)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--archs", default=None,
                    help="with --owner-only: comma-separated architectures (default: all four; "
                         "--quick: mlp,lenet5)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.owner_only:
        archs = ARCHS[:2] if args.quick else ARCHS
        if args.archs:
            want = args.archs.split(",")
            unknown = sorted(set(want) - {a[0] for a in ARCHS})
            if unknown:
                raise SystemExit(f"error: unknown architecture(s) {unknown}; use some of "
                                 f"{', '.join(a[0] for a in ARCHS)}")
            archs = tuple(a for a in ARCHS if a[0] in want)
        print(machine())
        bench_owner(("quick",) if args.quick else ("quick", "full"), archs, args.repeats or 3)
        return
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

    bench_owner(("quick",) if q else ("quick", "full"), ARCHS[:2] if q else ARCHS, max(3, repeats))

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
