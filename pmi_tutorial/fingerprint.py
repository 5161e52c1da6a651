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
the from-scratch clustering, and the two give identical decisions on the same draws.  The
batched arithmetic lives in :mod:`pmi_tutorial.batched` and is shared with
:func:`pmi_tutorial.stats.permutation.permutation_test`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from . import _validate as V
from . import batched
from .clustering import agglomerative, final_clusters
from .mmd import pairwise_mmd
from .pmi import guess_from_clusters, normalize_features

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
        """t, the number of trials drawn."""
        return len(self.s)

    def layout(self, n_P: int, offset: int = 0) -> np.ndarray:
        """(t, m, n) indices into ``concat([P, Q])`` (plus ``offset``), the member block at
        position s; position p holds non-member block p (p < s) or p - 1 (p > s)."""
        t, m1, n = self.nonmember.shape
        out = np.empty((t, m1 + 1, n), dtype=np.int64)
        rows = np.arange(t)
        out[rows, self.s] = self.member + offset
        for j in range(m1):
            out[rows, j + (j >= self.s)] = self.nonmember[:, j] + (n_P + offset)
        return out


def draw_trials(n_P: int, n_Q: int, m: int, n: int, trials: int, seed=0) -> Draws:
    """Draw t trials of the protocol, seeded: per trial the member position s, n members from P,
    n(m-1) distinct non-members from Q and one tie-break uniform u.

    The draws depend only on the pool sizes, m, n, t and the seed, never on the model, so
    for an int seed (or a sequence of ints, as :func:`class_seed` gives) they are computed
    once per process and shared (read-only arrays): verifying a second model, or the same
    model after an attack, on the same pools reuses them.
    """
    m, n = V.check_m(m), V.check_n(n)
    trials = V.check_positive_int(trials, "trials")
    V.check_pool_sizes(n_P, n_Q, m, n)
    key = _seed_key(seed)
    if key is None:  # None (fresh entropy), a Generator, a SeedSequence: never cached
        return _draw(int(n_P), int(n_Q), m, n, trials, seed)
    return _draw_cached(int(n_P), int(n_Q), m, n, trials, key)


def _seed_key(seed):
    """A hashable key for an int seed or a sequence of ints; None for anything else."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return int(seed)
    if isinstance(seed, (list, tuple)) and all(
        isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in seed
    ):
        return ("seq",) + tuple(int(x) for x in seed)
    return None


@lru_cache(maxsize=64)
def _draw_cached(n_P, n_Q, m, n, trials, key) -> Draws:
    seed = list(key[1:]) if isinstance(key, tuple) else key
    d = _draw(n_P, n_Q, m, n, trials, seed)
    for a in (d.member, d.nonmember, d.s, d.u):
        a.flags.writeable = False
    return d


def _draw(n_P, n_Q, m, n, trials, seed) -> Draws:
    # One rng.choice per pool and trial, in this order: the stream behind every committed
    # result.  A vectorised replay of the same numbers is no faster (choice runs Floyd's
    # algorithm and the shuffle in C; benchmarks/draws.py measures both, asserting equality).
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


def _as_numpy(x):
    """A CPU torch tensor as a NumPy view (NumPy then widens it to float64 on one thread)."""
    if hasattr(x, "detach") and not x.is_complex():
        return x.detach().cpu().numpy()
    return x


def check_features(features_P, features_Q):
    """``features_P`` (``|P|``, c) and ``features_Q`` (``|Q|``, c) as checked float64 arrays of one width."""
    P = V.as_float_array(_as_numpy(features_P), "features_P", ndim=2)
    Q = V.as_float_array(_as_numpy(features_Q), "features_Q", ndim=2)
    if P.shape[1] != Q.shape[1]:
        raise ValueError(
            f"features_P and features_Q must have the same width (one column per class), got "
            f"{P.shape[1]} and {Q.shape[1]}; compute both with the same model"
        )
    return P, Q


def _fast_path(kernel, linkage, method) -> bool:
    """Check the choices; whether the batched path runs them (``method="fast"`` refuses
    choices it does not cover)."""
    V.check_choice(method, METHODS, "method")
    V.check_kernel(kernel)
    V.check_linkage(linkage)
    fast = kernel == "linear" and linkage in ("single", "complete")
    if method == "fast" and not fast:
        raise ValueError(
            "the fast path covers the linear kernel with single or complete linkage; use "
            f"method='reference' for kernel={kernel!r}, linkage={linkage!r}"
        )
    return fast and method != "reference"


def trial_guesses(
    features_P, features_Q, draws: Draws, kernel="linear", linkage="single", method="auto"
) -> np.ndarray:
    """PMI's guess of the member position in every trial of ``draws``."""
    fast = _fast_path(kernel, linkage, method)
    P, Q = check_features(features_P, features_Q)
    idx = draws.layout(len(P))
    feats = np.concatenate([P, Q])
    if fast:
        return batched.trial_guesses(batched.feature_table(feats), idx, draws.u, "linear", linkage)
    out = np.empty(draws.trials, dtype=np.int64)
    for k in range(draws.trials):
        D = pairwise_mmd(normalize_features(feats[idx[k]]), kernel=kernel)
        G1, G2 = final_clusters(agglomerative(D, linkage=linkage))
        out[k] = guess_from_clusters(G1, G2, draws.u[k])
    return out


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
    draws: Draws | None = None,
) -> float:
    r""":math:`acc_r`: the fraction of t trials in which PMI finds the member mini-dataset.

    ``features_P`` (``|P|``, c) and ``features_Q`` (``|Q|``, c) are the per-sample features (logits) of
    the member and non-member pools of one class, computed once.  Trials are drawn by
    :func:`draw_trials` with ``seed``; ``method`` picks the batched path (``"fast"``), the
    per-trial from-scratch path (``"reference"``) or the fast one where it applies (``"auto"``).
    ``draws``: trials drawn beforehand (e.g. bound in the owner's pools file) instead of drawing.
    """
    P, Q = check_features(features_P, features_Q)
    if draws is None:
        draws = draw_trials(len(P), len(Q), m, n, trials, seed=seed)
    guesses = trial_guesses(P, Q, draws, kernel=kernel, linkage=linkage, method=method)
    return float(np.mean(guesses == draws.s))


@dataclass(frozen=True)
class Summary:
    """Eq. 14-15 over the classes: r_opt, its accuracy and the mean accuracy, for m mini-datasets."""
    r_opt: int
    acc_opt: float
    mean_acc: float
    m: int

    @property
    def chance(self) -> float:
        """1/m, the accuracy of a random guess."""
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


def summarize_classes(acc_by_class, m: int) -> Summary:
    r"""r_opt (Eq. 14), the accuracy at r_opt, and the mean accuracy over classes (Eq. 15).

    ``acc_by_class`` is a dict ``{r: acc_r}`` or a sequence indexed by r.  Ties in Eq. 14 go
    to the smallest r.
    """
    m = V.check_m(m)
    items = _acc_items(acc_by_class)
    r_opt, acc_opt = max(items, key=lambda kv: (float(kv[1]) - 1.0 / m, -kv[0]))
    return Summary(int(r_opt), float(acc_opt), float(np.mean([a for _, a in items])), m)


#: slack of Eq. 13's comparison: acc_r = k/t and 1/m are rounded, so acc - 1/m that equals rho
#: in exact arithmetic must not fall 1 ulp short of it
EQ13_SLACK = 1e-12


def check_rho(rho, m: int) -> float:
    r"""The threshold of Eq. 13: a number in :math:`(0, 1 - 1/m]`."""
    m = V.check_m(m)
    try:
        value = float(rho)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value <= 1.0 - 1.0 / m:
        raise ValueError(
            f"rho must be in (0, 1 - 1/m] = (0, {1 - 1 / m:.3f}] for m={m}, got {rho!r}"
        )
    return value


def verify(acc: float, m: int, rho: float) -> bool:
    r"""Eq. 13: claim ownership when :math:`acc - 1/m \ge \rho`, with :math:`\rho \in (0, 1-1/m]`.

    The one implementation of the paper's rule: :meth:`FingerprintResult.verdict`, the study,
    the command line and the chapters all call it (with the :data:`EQ13_SLACK` tolerance).
    """
    rho = check_rho(rho, m)
    if not 0.0 <= float(acc) <= 1.0:
        raise ValueError(f"acc must be a success rate in [0, 1], got {acc!r}")
    return bool(float(acc) - 1.0 / m >= rho - EQ13_SLACK)


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
        self.summary = summarize_classes(self.acc_by_class, self.m)

    @property
    def r_opt(self) -> int:
        """r_opt of Eq. 14."""
        return self.summary.r_opt

    @property
    def acc_opt(self) -> float:
        """acc_r at r_opt (Eq. 14)."""
        return self.summary.acc_opt

    @property
    def mean_acc(self) -> float:
        """The mean of acc_r over the classes (Eq. 15)."""
        return self.summary.mean_acc

    def verdict(self, rho: float) -> bool:
        """Eq. 13 at r_opt: :func:`verify` on :math:`acc_{r_{opt}}`."""
        return verify(self.acc_opt, self.m, rho)

    def to_dict(self) -> dict:
        """Plain JSON data: the settings, acc_r per class (string keys) and the summary."""
        d = asdict(self)
        d["acc_by_class"] = {str(k): v for k, v in self.acc_by_class.items()}
        return d


def pool_items(pools):
    """``[(r, P, Q), ...]`` sorted by r, from {r: (P, Q)}, {r: obj with .P/.Q}, or a sequence of
    such objects with .r; an empty pool raises ValueError naming its class."""
    if isinstance(pools, dict):
        items = sorted(pools.items())
    elif hasattr(pools, "P") and hasattr(pools, "Q"):
        items = [(getattr(pools, "r", 0), pools)]
    else:
        items = [(getattr(p, "r", i), p) for i, p in enumerate(pools)]
    out = []
    for r, p in items:
        try:
            P, Q = (p.P, p.Q) if hasattr(p, "P") else p
        except (TypeError, ValueError):
            raise ValueError(
                f"pools[{r!r}] must be a pair (P, Q) or an object with .P and .Q, got "
                f"{type(p).__name__}; pass {{r: data.class_pools(split, r)}} or data.all_class_pools(split)"
            ) from None
        for name, pool in (("member pool P", P), ("non-member pool Q", Q)):
            if len(pool) == 0:
                raise ValueError(f"the {name} of class {r} is empty; check the class r and the data split")
        out.append((int(r), P, Q))
    return out


def class_seed(seed: int, r: int) -> list[int]:
    """The seed of class r's trials: independent streams per class, fixed by ``seed``."""
    return [int(seed), int(r)]


def classes_table(classes):
    """One feature table for several classes' trials: ``classes`` is ``[(P, Q, draws), ...]``
    (checked features); returns the (c, N) table (:func:`batched.feature_tables`, each class's
    ``concat([P, Q])`` centred alone) and every trial's rows in it, (sum of t, m, n)."""
    widths = {P.shape[1] for P, _, _ in classes}
    if len(widths) > 1:
        raise ValueError(f"the classes' features have different widths {sorted(widths)}; "
                         "compute every class's features with the same model")
    ZT, starts = batched.feature_tables([np.concatenate([P, Q]) for P, Q, _ in classes])
    idx = np.concatenate([d.layout(len(P), s0) for (P, _, d), s0 in zip(classes, starts)])
    return ZT, idx


def run_on_features(feature_pools, m, n, trials=100, seed=0, draws=None, kernel: str = "linear",
                    linkage: str = "single", method: str = "auto") -> FingerprintResult:
    """Like :func:`run`, on precomputed features ``{r: (features_P, features_Q)}``;
    ``draws``: ``{r: Draws}`` drawn beforehand, else each class draws with its seed.

    On the batched path the classes' tables sit side by side in one table
    (:func:`classes_table`, each class centred alone) and every class's trials are
    computed at once, Algorithm 1 included (the same guesses as class by class, in one tensor
    operation per step instead of one per class and step).
    """
    fast = _fast_path(kernel, linkage, method)
    items = pool_items(feature_pools)
    acc, per = {}, []
    with batched.one_thread(batched.device()):
        for r, fP, fQ in items:
            P, Q = check_features(fP, fQ)
            d = draws[r] if draws is not None else draw_trials(len(P), len(Q), m, n, trials,
                                                               seed=class_seed(seed, r))
            if fast:
                per.append((r, P, Q, d))
            else:
                acc[r] = float(np.mean(trial_guesses(P, Q, d, kernel, linkage, method) == d.s))
        if per:
            ZT, idx = classes_table([(P, Q, d) for _, P, Q, d in per])
            guesses = batched.linkage_guesses(batched.distances(ZT, idx),
                                              np.concatenate([d.u for *_, d in per]), linkage)
        start = 0
        for r, _, _, d in per:
            acc[r] = float(np.mean(guesses[start:start + d.trials] == d.s))
            start += d.trials
    return FingerprintResult(acc, m, n, trials, seed)


def pool_features(model, pools, batch_size: int = 1024, transform=None) -> dict:
    """Logits of every sample of every pool, computed once: ``{r: (features_P, features_Q)}``.

    ``transform`` (optional) maps logits to the features used, e.g. log-probabilities.
    """
    from .features import logits

    out = {}
    for r, P, Q in pool_items(pools):
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


#: names that left this module, and where they live now: asking for one here raises an
#: AttributeError that names its home.  Nothing is imported from there, so this module never
#: depends on :mod:`pmi_tutorial.verification` (which depends on :mod:`pmi_tutorial.stats`,
#: which depends on this module): no import cycle, not even a lazy one.
MOVED = {"verify_ownership": "pmi_tutorial.verification"}


def __getattr__(name):
    if name in MOVED:
        raise AttributeError(
            f"{name} is no longer in pmi_tutorial.fingerprint; import it from {MOVED[name]} "
            f"(from {MOVED[name]} import {name})"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
