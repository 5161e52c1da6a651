r"""The fingerprinting protocol (paper Section III-C, Eq. 13-15; book chapter "PMI end to end").

For a class r with member pool P and non-member pool Q, one *trial* draws n samples from P and
n(m-1) distinct samples from Q, forms m mini-datasets with the member one at a uniformly random
position s, and asks PMI (:func:`pmi_tutorial.pmi.identify_member`) for s.  Over t trials,

* :math:`acc_r` is the fraction of trials in which PMI finds s,
* :math:`r_{opt} = \arg\max_r (acc_r - 1/m)` (Eq. 14) and the mean over classes (Eq. 15),
* ownership is claimed when :math:`acc_r - 1/m \ge \rho` (Eq. 13).

A sample's features (its logits) do not change between trials, so they are computed once per
pool and every trial is arithmetic on them.  :func:`class_accuracy` runs all trials of a class
at once in batched tensor operations; ``method="reference"`` runs them one at a time through
the from-scratch clustering, and the two give identical decisions on the same draws.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import _validate as V
from .clustering import agglomerative, final_clusters
from .mmd import pairwise_mmd
from .pmi import guess_from_clusters, normalize

METHODS = ("auto", "fast", "reference")


@dataclass(frozen=True)
class Draws:
    """The random part of t trials: which samples, where the member sits, the tie-break."""

    member: np.ndarray  # (t, n) indices into P
    nonmember: np.ndarray  # (t, m - 1, n) indices into Q, distinct within a trial
    s: np.ndarray  # (t,) position of the member mini-dataset in [0, m)
    u: np.ndarray  # (t,) uniforms for choosing inside the smaller cluster

    @property
    def trials(self) -> int:
        return len(self.s)

    def layout(self, n_P: int) -> np.ndarray:
        """(t, m, n) indices into ``concat([P, Q])``, the member block at position s."""
        t, m1, n = self.nonmember.shape
        idx = np.empty((t, m1 + 1, n), dtype=np.int64)
        for k in range(t):
            others = [i for i in range(m1 + 1) if i != self.s[k]]
            idx[k, self.s[k]] = self.member[k]
            idx[k, others] = self.nonmember[k] + n_P
        return idx


def draw_trials(n_P: int, n_Q: int, m: int, n: int, trials: int, seed=0) -> Draws:
    """Draw t trials of the protocol (step 1 of DESIGN.md section 1), seeded."""
    m, n = V.check_m(m), V.check_n(n)
    trials = V.check_positive_int(trials, "trials")
    V.check_pool_sizes(n_P, n_Q, m, n)
    rng = np.random.default_rng(seed)
    member = np.empty((trials, n), dtype=np.int64)
    nonmember = np.empty((trials, m - 1, n), dtype=np.int64)
    s = np.empty(trials, dtype=np.int64)
    for k in range(trials):
        s[k] = rng.integers(m)
        member[k] = rng.choice(n_P, size=n, replace=False)
        nonmember[k] = rng.choice(n_Q, size=n * (m - 1), replace=False).reshape(m - 1, n)
    u = rng.random(trials)
    return Draws(member, nonmember, s, u)


def _check_features(features_P, features_Q):
    P = V.as_float_array(features_P, "features_P", ndim=2)
    Q = V.as_float_array(features_Q, "features_Q", ndim=2)
    if P.shape[1] != Q.shape[1]:
        raise ValueError(
            f"features_P and features_Q must have the same width (one column per class), got "
            f"{P.shape[1]} and {Q.shape[1]}; compute both with the same model"
        )
    return P, Q


def batched_linkage_guesses(D, u, linkage: str = "single") -> np.ndarray:
    """Algorithm 1 run on a batch of distance matrices ``D`` (t, m, m) at once, vectorized.

    Each of the m - 1 merge steps is one tensor operation over all t trials: take the closest
    pair of active clusters (ties go to the smallest cluster ids, exactly as in
    :func:`pmi_tutorial.clustering.agglomerative`), and give the merged cluster the
    Lance-Williams distance ``min`` (single) or ``max`` (complete) of its parts, which equals
    the minimum / maximum over member pairs exactly.  Returns the guess of every trial, picked
    from the smaller final cluster with the uniforms ``u`` as in :func:`pmi_tutorial.pmi.pick`.
    """
    import torch

    if linkage not in ("single", "complete"):
        V.check_linkage(linkage)  # an unknown name: the general message
        raise ValueError(
            f"batched_linkage_guesses covers single and complete linkage, got {linkage!r}; "
            "use trial_guesses(..., method='reference') for average linkage"
        )
    combine = {"single": torch.minimum, "complete": torch.maximum}[linkage]
    D = torch.as_tensor(D)
    t, m, _ = D.shape
    K, dev = 2 * m - 1, D.device
    ar = torch.arange(t, device=dev)
    inf = torch.tensor(float("inf"), dtype=D.dtype, device=dev)
    dist = torch.full((t, K, K), float("inf"), dtype=D.dtype, device=dev)
    dist[:, :m, :m] = D
    member = torch.zeros((t, K, m), dtype=torch.bool, device=dev)
    member[:, torch.arange(m), torch.arange(m)] = True
    active = torch.zeros((t, K), dtype=torch.bool, device=dev)
    active[:, :m] = True
    upper = torch.ones((K, K), dtype=torch.bool, device=dev).triu(1)
    for step in range(m - 1):
        pairs = upper & active[:, :, None] & active[:, None, :]
        flat = torch.where(pairs, dist, inf).reshape(t, -1).argmin(dim=1)
        a, b = flat // K, flat % K
        if step == m - 2:
            break
        new = m + step
        row = combine(dist[ar, a], dist[ar, b])
        dist[:, new, :], dist[:, :, new] = row, row
        member[:, new] = member[ar, a] | member[ar, b]
        active[ar, a], active[ar, b] = False, False
        active[:, new] = True
    G1, G2 = member[ar, a], member[ar, b]
    s1, s2 = G1.sum(1, keepdim=True), G2.sum(1, keepdim=True)
    cand = torch.where(s1 < s2, G1, torch.where(s2 < s1, G2, G1 | G2)).cpu().numpy()
    count = cand.sum(1)
    k = np.minimum((np.asarray(u) * count).astype(np.int64), count - 1)
    rank = np.cumsum(cand, axis=1) - 1
    return np.argmax(cand & (rank == k[:, None]), axis=1)


def trial_guesses(
    features_P, features_Q, draws: Draws, kernel="linear", linkage="single", method="auto"
) -> np.ndarray:
    """PMI's guess of the member position in every trial of ``draws``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(map(repr, METHODS))}")
    V.check_kernel(kernel)
    V.check_linkage(linkage)
    P, Q = _check_features(features_P, features_Q)
    idx = draws.layout(len(P))
    fast = kernel == "linear" and linkage in ("single", "complete")
    if method == "fast" and not fast:
        raise ValueError(
            "the fast path covers the linear kernel with single or complete linkage; use "
            f"method='reference' for kernel={kernel!r}, linkage={linkage!r}"
        )
    feats = np.concatenate([P, Q])
    if fast and method != "reference":
        return _fast_guesses(feats, idx, draws.u, linkage)
    out = np.empty(draws.trials, dtype=np.int64)
    for k in range(draws.trials):
        D = pairwise_mmd(normalize(feats[idx[k]]), kernel=kernel)
        G1, G2 = final_clusters(agglomerative(D, linkage=linkage))
        out[k] = guess_from_clusters(G1, G2, draws.u[k])
    return out


def _fast_guesses(feats: np.ndarray, idx: np.ndarray, u: np.ndarray, linkage: str, chunk: int = 512):
    import torch

    from .mmd import pairwise_mmd2_linear

    device = "cuda" if torch.cuda.is_available() else "cpu"
    feats_t = torch.as_tensor(feats, dtype=torch.float64, device=device)
    out = []
    for start in range(0, len(idx), chunk):
        sl = slice(start, start + chunk)
        F = normalize(feats_t[torch.as_tensor(idx[sl], device=device)])  # (t, m, n, c)
        D = pairwise_mmd2_linear(F).clamp_min(0).sqrt()
        out.append(batched_linkage_guesses(D, u[sl], linkage))
    return np.concatenate(out)


def class_accuracy(
    features_P,
    features_Q,
    m: int,
    n: int,
    trials: int = 100,
    seed=0,
    kernel: str = "linear",
    linkage: str = "single",
    method: str = "auto",
) -> float:
    r""":math:`acc_r`: the fraction of t trials in which PMI finds the member mini-dataset.

    ``features_P`` (|P|, c) and ``features_Q`` (|Q|, c) are the per-sample features (logits) of
    the member and non-member pools of one class, computed once.  Trials are drawn by
    :func:`draw_trials` with ``seed``; ``method`` picks the batched path (``"fast"``), the
    per-trial from-scratch path (``"reference"``) or the fast one where it applies (``"auto"``).
    """
    P, Q = _check_features(features_P, features_Q)
    draws = draw_trials(len(P), len(Q), m, n, trials, seed=seed)
    guesses = trial_guesses(P, Q, draws, kernel=kernel, linkage=linkage, method=method)
    return float(np.mean(guesses == draws.s))


@dataclass(frozen=True)
class Summary:
    r_opt: int
    acc_opt: float
    mean_acc: float
    m: int

    @property
    def chance(self) -> float:
        return 1.0 / self.m


def _acc_items(acc_by_class):
    if isinstance(acc_by_class, dict):
        items = sorted(acc_by_class.items())
    else:
        items = list(enumerate(acc_by_class))
    if not items:
        raise ValueError("acc_by_class is empty; pass acc_r for at least one class")
    for r, a in items:
        if not (isinstance(a, (int, float, np.floating)) and 0.0 <= float(a) <= 1.0):
            raise ValueError(f"acc_r must be a success rate in [0, 1], got {a!r} for class {r}")
    return items


def summarize(acc_by_class, m: int) -> Summary:
    r"""r_opt (Eq. 14), the accuracy at r_opt, and the mean accuracy over classes (Eq. 15).

    ``acc_by_class`` is a dict ``{r: acc_r}`` or a sequence indexed by r.  Ties in Eq. 14 go
    to the smallest r.
    """
    m = V.check_m(m)
    items = _acc_items(acc_by_class)
    r_opt, acc_opt = max(items, key=lambda kv: (float(kv[1]) - 1.0 / m, -kv[0]))
    return Summary(int(r_opt), float(acc_opt), float(np.mean([a for _, a in items])), m)


def verify(acc: float, m: int, rho: float) -> bool:
    r"""Eq. 13: claim ownership when :math:`acc - 1/m \ge \rho`, with :math:`\rho \in (0, 1-1/m]`."""
    m = V.check_m(m)
    if not 0.0 <= float(acc) <= 1.0:
        raise ValueError(f"acc must be a success rate in [0, 1], got {acc!r}")
    if not 0.0 < float(rho) <= 1.0 - 1.0 / m:
        raise ValueError(
            f"rho must be in (0, 1 - 1/m] = (0, {1 - 1 / m:.3f}] for m={m}, got {rho!r}"
        )
    return bool(float(acc) - 1.0 / m >= float(rho) - 1e-12)


@dataclass
class FingerprintResult:
    """What :func:`run` found: acc_r for every class and the summary of Eq. 14-15."""

    acc_by_class: dict
    m: int
    n: int
    trials: int
    seed: int
    summary: Summary = field(init=False)

    def __post_init__(self):
        self.summary = summarize(self.acc_by_class, self.m)

    @property
    def r_opt(self) -> int:
        return self.summary.r_opt

    @property
    def acc_opt(self) -> float:
        return self.summary.acc_opt

    @property
    def mean_acc(self) -> float:
        return self.summary.mean_acc

    def verdict(self, rho: float) -> bool:
        return verify(self.acc_opt, self.m, rho)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["acc_by_class"] = {str(k): v for k, v in self.acc_by_class.items()}
        return d


def _pool_items(pools):
    """Accept {r: (P, Q)}, {r: obj with .P/.Q}, or a sequence of such objects with .r."""
    if isinstance(pools, dict):
        items = sorted(pools.items())
    elif hasattr(pools, "P") and hasattr(pools, "Q"):
        items = [(getattr(pools, "r", 0), pools)]
    else:
        items = [(getattr(p, "r", i), p) for i, p in enumerate(pools)]
    out = []
    for r, p in items:
        P, Q = (p.P, p.Q) if hasattr(p, "P") else p
        out.append((int(r), P, Q))
    return out


def class_seed(seed: int, r: int) -> list[int]:
    """The seed of class r's trials: independent streams per class, fixed by ``seed``."""
    return [int(seed), int(r)]


def run_on_features(feature_pools, m, n, trials=100, seed=0, **kwargs) -> FingerprintResult:
    """Like :func:`run`, on precomputed features ``{r: (features_P, features_Q)}``."""
    acc = {
        r: class_accuracy(fP, fQ, m, n, trials=trials, seed=class_seed(seed, r), **kwargs)
        for r, fP, fQ in _pool_items(feature_pools)
    }
    return FingerprintResult(acc, m, n, trials, seed)


def pool_features(model, pools, batch_size: int = 1024, transform=None) -> dict:
    """Logits of every sample of every pool, computed once: ``{r: (features_P, features_Q)}``.

    ``transform`` (optional) maps logits to the features used, e.g. log-probabilities.
    """
    from .features import logits

    out = {}
    for r, P, Q in _pool_items(pools):
        fP, fQ = logits(model, P, batch_size=batch_size), logits(model, Q, batch_size=batch_size)
        if transform is not None:
            fP, fQ = transform(fP), transform(fQ)
        out[r] = (fP, fQ)
    return out


def run(model, pools, m: int, n: int, trials: int = 100, seed: int = 0, **kwargs):
    """acc_r for every class in ``pools`` on ``model``, with r_opt and the mean (Eq. 14-15).

    ``acc = fingerprint.run(model, pools, m=3, n=100, trials=100)``; ``pools`` maps each class r
    to its member and non-member images (see :func:`pmi_tutorial.data.class_pools`).
    """
    return run_on_features(pool_features(model, pools), m, n, trials=trials, seed=seed, **kwargs)
