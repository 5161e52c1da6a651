r"""P-values for "this model was trained on P" (book chapter "Beyond the paper": significance).

The paper claims ownership when :math:`acc_r - 1/m \ge \rho` (Eq. 13) at
:math:`r_{opt} = \arg\max_r(acc_r - 1/m)` (Eq. 14).  That is a threshold, not a test: it says
nothing about how often an innocent model would pass it.  This module turns the claim into a
p-value in two ways.

* :func:`binomial_pvalue`, the naive test: treat the t trials as independent coin flips with
  success probability 1/m.  It is **not valid** for PMI (see its docstring): the trials reuse
  the same finite pools, and r_opt is chosen after looking at every class.
* :func:`permutation_test`, the valid one.  Under the null hypothesis "the model did not train
  on P", the member pool P and the non-member pool Q of a class are *exchangeable* for the
  model: their features are draws from the same distribution.  Re-splitting
  :math:`P \cup Q` at random into sizes ``|P|``, ``|Q|`` and recomputing the statistic then gives
  draws from the statistic's null distribution, whatever the dependence between trials, and
  :math:`p = (k + 1) / (B + 1)` with :math:`k = \#\{\text{permuted} \ge \text{observed}\}`
  is exact (P(p <= a) <= a for every a).

A sample's features (its logits) do not depend on which pool it is called a member of, so
every statistic works on features computed once, and a permutation is only a new index
array.  The statistics in :data:`STATISTICS` evaluate many permutations at once.

The p-value arithmetic (:func:`~.pvalues.permutation_pvalue`, the rejection rule, intervals)
lives in :mod:`.pvalues`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .. import _validate as V
from .. import batched
from ..fingerprint import check_features, class_seed, draw_trials, pool_items
from ..pmi import normalize_features
from .pvalues import permutation_pvalue

# A fixed tag keeps the permutation stream of class r apart from its trial stream class_seed(seed, r).
_PERM_TAG = 7919
# Permutations are drawn in blocks of this many, each block from its own seeded stream, so the
# permutations do not depend on how the computation is chunked.
_PERM_BLOCK = 128
CONFIDENCES = ("logprob", "maxprob", "margin", "logodds")


# --------------------------------------------------------------------------------------------
# Statistics: observed and permuted values through one batched code path
# --------------------------------------------------------------------------------------------


@dataclass
class _Context:
    """What one class needs for any number of permutations (built once per class)."""

    n_P: int
    n_Q: int
    data: dict


@dataclass(frozen=True)
class Statistic:
    """A per-class statistic: bigger values are more evidence that P are members.

    Call it as ``STATISTICS[name](features_P, features_Q, seed=0, r=..., m=3, n=100,
    trials=100)`` for the observed value.  :func:`permutation_test` evaluates the same code on
    many re-splits of P and Q at once (``prepare`` once per class, ``evaluate`` on a (B, N)
    array of permutations of the pooled rows; the first ``|P|`` positions of a row form P').
    """

    name: str
    description: str
    uses_trials: bool
    prepare: Callable = field(repr=False)
    evaluate: Callable = field(repr=False)

    def __call__(self, features_P, features_Q, seed=0, *, r=None, m=3, n=100, trials=100, **options):
        ctx = self.prepare(features_P, features_Q, seed=seed, r=r, m=m, n=n, trials=trials, **options)
        N = ctx.n_P + ctx.n_Q
        return float(self.evaluate(ctx, np.arange(N)[None, :])[0])


def _pooled(features_P, features_Q):
    P, Q = check_features(features_P, features_Q)
    return P, Q, np.concatenate([P, Q])


# ---- trial statistics: "pmi", "outlier", "rbf" -----------------------------------------------


def _prepare_trials(kind):
    def prepare(features_P, features_Q, seed=0, r=None, m=3, n=100, trials=100, linkage="single",
                bandwidth=None, dtype="float64", chunk_trials=None, **unknown):
        _no_unknown(unknown)
        if kind != "outlier":
            V.check_linkage(linkage)
            if linkage == "average":
                raise ValueError(
                    f"the batched {kind!r} statistic covers linkage='single' (the paper) or "
                    "'complete'; use one of those"
                )
        P, Q, Z = _pooled(features_P, features_Q)
        draws = draw_trials(len(P), len(Q), m, n, trials, seed=seed)
        if chunk_trials is None:  # bounded memory: rbf holds (m n)^2 kernel entries per trial
            chunk_trials = max(1, 2**21 // (m * n) ** 2) if kind == "rbf" else 2048
        return _Context(len(P), len(Q), dict(
            ZT=batched.feature_table(Z, dtype), layout=draws.layout(len(P)), s=draws.s, u=draws.u,
            kind=kind, linkage=linkage, bandwidth=bandwidth,
            chunk=V.check_positive_int(chunk_trials, "chunk_trials"),
        ))

    return prepare


def _evaluate_trials(ctx, perms):
    """acc_r of every permutation's re-split pools: the trials' draws read in permuted rows."""
    c = ctx.data
    layout, s, u = c["layout"], c["s"], c["u"]
    t, m, n = layout.shape
    per = max(1, c["chunk"] // t)  # permutations per chunk
    kernel = "rbf" if c["kind"] == "rbf" else "linear"
    rule = "outlier" if c["kind"] == "outlier" else "cluster"
    out = np.empty(len(perms))
    for start in range(0, len(perms), per):
        p = perms[start:start + per]
        b = len(p)
        g = batched.trial_guesses(c["ZT"], p[:, layout].reshape(b * t, m, n), np.tile(u, b),
                                  kernel=kernel, linkage=c["linkage"], rule=rule,
                                  bandwidth=c["bandwidth"], chunk=b * t)
        out[start:start + b] = (g.reshape(b, t) == s[None, :]).mean(1)
    return out


# ---- pooled statistics: "mmd", "directional" ------------------------------------------------


def _no_unknown(unknown):
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for this statistic; see the "
            "docstring of pmi_tutorial.stats.permutation_test for the options"
        )


def _indicator(perms, n_P):
    """(B, N) 0/1 matrix: row b marks the rows that permutation b calls members."""
    W = np.zeros(perms.shape, dtype=np.float64)
    np.put_along_axis(W, perms[:, :n_P], 1.0, axis=1)
    return W


def _prepare_mmd(features_P, features_Q, seed=0, r=None, m=3, n=100, trials=100, **unknown):
    _no_unknown(unknown)
    P, Q, Z = _pooled(features_P, features_Q)
    for name, k in (("P", len(P)), ("Q", len(Q))):
        if k < 2:
            raise ValueError(
                f"the pool {name} has {k} sample(s); the unbiased MMD needs at least 2 in each pool"
            )
    Zn = normalize_features(Z[None])[0]  # Eq. 5-6 over P and Q jointly: the same for every re-split
    return _Context(len(P), len(Q), dict(Z=Zn, q=(Zn * Zn).sum(1)))


def _evaluate_mmd(ctx, perms):
    r"""Unbiased linear MMD^2 between all of P and all of Q (unequal sizes allowed):

    .. math::
        \frac{\lVert S_P\rVert^2 - \sum_P\lVert x\rVert^2}{|P|(|P|-1)}
        + \frac{\lVert S_Q\rVert^2 - \sum_Q\lVert y\rVert^2}{|Q|(|Q|-1)}
        - \frac{2\,S_P\cdot S_Q}{|P||Q|},

    the general-size form of Eq. 10 with k(x, y) = x . y (S: the sum of a pool's rows).
    """
    Z, q, a, b = ctx.data["Z"], ctx.data["q"], ctx.n_P, ctx.n_Q
    out = np.empty(len(perms))
    S_all, q_all = Z.sum(0), q.sum()
    for start in range(0, len(perms), 256):
        W = _indicator(perms[start:start + 256], a)
        SP, qP = W @ Z, W @ q
        SQ, qQ = S_all - SP, q_all - qP
        out[start:start + 256] = (
            ((SP * SP).sum(1) - qP) / (a * (a - 1))
            + ((SQ * SQ).sum(1) - qQ) / (b * (b - 1))
            - 2 * (SP * SQ).sum(1) / (a * b)
        )
    return out


def log_odds(features, r) -> np.ndarray:
    r"""Log-odds of the true class r, :math:`\log p_r - \log(1 - p_r)`, in float64.

    From logits (rows that are not log-probabilities):
    :math:`z_r - \operatorname{logsumexp}_{j \ne r} z_j`, exact however confident the model
    is.  :math:`\log\mathrm{softmax}(z)_r` rounds to exactly 0 in float64 once the margin
    exceeds about 37 (:math:`e^{-37} < 2^{-53}`), which ties the most confident samples; the
    log-odds keep their order.  Log-probabilities (rows whose exponentials sum to 1) give the
    same numbers, since log-softmax leaves them unchanged.  ``r``: one class for every row,
    or an array of one class per row (one computation for both).
    """
    import torch

    Z = V.as_float_array(features, "features", ndim=2)
    N, c = Z.shape
    if c < 2:
        raise ValueError("the log-odds need at least 2 classes (columns); use confidence='logprob'")
    y = np.broadcast_to(np.asarray(r), (N,))
    if not np.issubdtype(y.dtype, np.integer) or (N and not 0 <= y.min() <= y.max() < c):
        raise ValueError(f"r must be class indices in [0, {c}) (one, or one per row), got {r!r}")
    # on the transposed (c, N) table: every reduction runs across c long rows instead of along
    # N short ones
    cols = np.arange(N)
    others = Z.T.copy()
    own = others[y, cols]
    others[y, cols] = -np.inf
    top = others.max(axis=0)
    others -= top
    torch.from_numpy(others).exp_()  # in place; torch's vectorised exp, about 2.5x NumPy's
    return own - (top + np.log(others.sum(axis=0)))


def tie_share(scores) -> float:
    """The share of scores that equal another score (0 when all are distinct)."""
    v = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if v.size < 2:
        return 0.0
    same = np.zeros(v.size, dtype=bool)
    eq = v[1:] == v[:-1]
    same[1:] |= eq
    same[:-1] |= eq
    return float(same.mean())


def confidence_scores(features, r, confidence="logprob") -> np.ndarray:
    r"""Per-sample confidence at the true class r (bigger: more member-like).

    ``"logprob"``: :math:`\log\mathrm{softmax}(z)_r`, minus the cross-entropy loss
    (log-probabilities passed as features give the same numbers, since log-softmax leaves them
    unchanged); ``"maxprob"``: the largest softmax probability; ``"margin"``:
    :math:`z_r - \max_{j \ne r} z_j`; ``"logodds"``: :func:`log_odds`, the log-odds of the
    true class, an increasing function of ``"logprob"`` (so a rank test gives the same answer
    wherever ``"logprob"`` has no ties) that does not round to 0 for confident samples.
    """
    V.check_choice(confidence, CONFIDENCES, "confidence")
    Z = V.as_float_array(features, "features", ndim=2)
    c = Z.shape[1]
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < c:
        raise ValueError(
            f"the directional statistic needs the true class r as a column index in [0, {c}), "
            f"got r={r!r}; key feature_pools by class index (or pass r=...)"
        )
    from scipy.special import log_softmax

    if confidence == "logprob":
        return log_softmax(Z, axis=1)[:, r]
    if confidence == "logodds":
        return log_odds(Z, r)
    if confidence == "maxprob":
        return np.exp(log_softmax(Z, axis=1)).max(1)
    if c < 2:
        raise ValueError("the margin needs at least 2 classes (columns); use confidence='logprob'")
    others = np.delete(Z, r, axis=1)
    return Z[:, r] - others.max(1)


def _prepare_directional(features_P, features_Q, seed=0, r=None, m=3, n=100, trials=100,
                         confidence="logprob", **unknown):
    _no_unknown(unknown)
    P, Q, Z = _pooled(features_P, features_Q)
    return _Context(len(P), len(Q), dict(score=confidence_scores(Z, r, confidence)))


def _evaluate_directional(ctx, perms):
    sc, a, b = ctx.data["score"], ctx.n_P, ctx.n_Q
    total = sc.sum()
    out = np.empty(len(perms))
    for start in range(0, len(perms), 256):
        sP = _indicator(perms[start:start + 256], a) @ sc
        out[start:start + 256] = sP / a - (total - sP) / b
    return out


STATISTICS = {
    s.name: s
    for s in (
        Statistic(
            "pmi",
            "acc_r of the paper's procedure: linear MMD (Eq. 10-11) + single linkage "
            "(Algorithm 1) over `trials` trials of m mini-datasets of n samples",
            True, _prepare_trials("pmi"), _evaluate_trials,
        ),
        Statistic(
            "outlier",
            "like pmi, but the guess is the mini-dataset with the largest mean MMD distance to "
            "the others (outlier detection instead of clustering)",
            True, _prepare_trials("outlier"), _evaluate_trials,
        ),
        Statistic(
            "rbf",
            "the paper's procedure with the Gaussian kernel (median bandwidth per trial); "
            "slower: use fewer trials",
            True, _prepare_trials("rbf"), _evaluate_trials,
        ),
        Statistic(
            "mmd",
            "pooled unbiased linear MMD^2 between all of P and all of Q after joint Eq. 5-6 "
            "(no trials: the dataset-level statistic)",
            False, _prepare_mmd, _evaluate_mmd,
        ),
        Statistic(
            "directional",
            "mean confidence of P minus mean confidence of Q at the true class r (default: "
            "log-softmax, i.e. minus the loss); signed, one-sided: members are more confident",
            False, _prepare_directional, _evaluate_directional,
        ),
    )
}


# --------------------------------------------------------------------------------------------
# The permutation test
# --------------------------------------------------------------------------------------------


@dataclass
class PermutationResult:
    """What :func:`permutation_test` found.

    ``pvalue`` = (k + 1) / (B + 1), k = #{null >= observed}; ``null`` holds the B permuted
    values of the test statistic; ``per_class_observed`` / ``per_class_null`` /
    ``per_class_pvalue`` hold each tested class's own statistic, permuted values and p-value.
    """

    pvalue: float
    observed: float
    null: np.ndarray
    per_class_observed: dict
    statistic: str
    B: int
    classes: object = "max"
    per_class_null: dict = field(default_factory=dict, repr=False)
    per_class_pvalue: dict = field(default_factory=dict)


def _permutations(N, B, seed, r):
    """B seeded permutations of range(N) for class r, in fixed blocks (chunking-invariant)."""
    base = np.arange(N, dtype=np.int64)
    out = np.empty((B, N), dtype=np.int64)
    for blk, start in enumerate(range(0, B, _PERM_BLOCK)):
        rows = min(_PERM_BLOCK, B - start)
        rng = np.random.default_rng([int(seed), int(r), _PERM_TAG, blk])
        out[start:start + rows] = rng.permuted(np.tile(base, (rows, 1)), axis=1)
    return out


def _check_seed(seed) -> int:
    return V.check_scalar(seed, "seed", int, min_val=0, hint="a non-negative integer, e.g. seed=0")


def permutation_test(
    feature_pools,
    statistic: str = "pmi",
    B: int = 1000,
    seed: int = 0,
    m: int = 3,
    n: int = 100,
    trials: int = 100,
    classes="max",
    **options,
) -> PermutationResult:
    r"""Permutation p-value for "the model was trained on P" (chapter "Beyond the paper").

    Parameters
    ----------
    feature_pools : ``{r: (features_P, features_Q)}``, per-sample features (logits, or
        log-probabilities) of each class's member and non-member pools, shape (``|P|``, c) and
        (``|Q|``, c), NumPy or torch; as returned by :func:`pmi_tutorial.fingerprint.pool_features`.
    statistic : a name in :data:`STATISTICS`: ``"pmi"`` (acc_r, Eq. 13), ``"outlier"``,
        ``"rbf"``, ``"mmd"``, ``"directional"``.
    B : number of random re-splits (permutations).
    seed : the same seed gives the same p-value.  Class r's trials are drawn with
        ``class_seed(seed, r)``, as :func:`pmi_tutorial.fingerprint.run_on_features` does, so
        the observed "pmi" statistic of class r is that function's acc_r.
    m, n, trials : the trial design of the trial statistics (ignored by "mmd", "directional").
    classes : ``"max"`` (default): the test statistic is the max over classes of the per-class
        statistic, and every permutation re-splits every class independently and takes the
        max again, so the search for r_opt (Eq. 14) is part of the test and needs no further
        correction.  An int r: the single class r, chosen before looking at the data
        (pre-registered, or picked on held-out data).
    options : per-statistic options: ``linkage`` ("pmi": "single" or "complete"),
        ``bandwidth`` ("rbf": a fixed bandwidth instead of the per-trial median; faster),
        ``confidence`` ("directional": "logprob", "maxprob" or "margin"), ``dtype``
        ("float64" or "float32" for the trial statistics: about twice as fast, decisions may
        differ from float64 in near-ties; still a valid test, since observed and permuted
        values go through the same code), ``chunk_trials`` (trials per batch).

    Notes
    -----
    The null hypothesis: for the model, P and Q of every class are exchangeable (P was not
    trained on, or trained on no more than Q).  A permutation re-splits :math:`P\cup Q` at
    random into sizes ``|P|`` and ``|Q|`` and recomputes the statistic; the trial statistics keep the
    trials' index draws and read them in the re-split pools, and the normalization of Eq. 5-6
    is redone in every trial.  The p-value :math:`(k + 1)/(B + 1)` is exact for any B.

    **Trials and speed.**  A trial statistic costs ``trials`` trials per permutation and
    class: B = 1000, t = 100 and 10 classes are 10^6 trials.  The statistic must be the same
    for the observed value and the permuted ones, so to save time lower ``trials`` itself
    (e.g. 20): the test stays exact, but a noisier acc_r loses power.  Never compare an
    acc_r from many trials with a null from few.

    Returns
    -------
    :class:`PermutationResult`.
    """
    stat = STATISTICS[V.check_choice(statistic, STATISTICS, "statistic")]
    B = V.check_scalar(B, "B", int, min_val=1, hint="B is the number of permutations, e.g. "
                       "B=999 (the smallest possible p-value is 1/(B+1))")
    seed = _check_seed(seed)
    items = pool_items(feature_pools) if feature_pools is not None else []
    if not items:
        raise ValueError(
            "feature_pools is empty; pass {r: (features_P, features_Q)} for at least one class "
            "(see pmi_tutorial.fingerprint.pool_features)"
        )
    widths = set()
    for r, fP, fQ in items:
        widths.add(check_features(fP, fQ)[0].shape[1])
    if len(widths) > 1:
        raise ValueError(
            f"the classes' features have different widths {sorted(widths)}; compute every "
            "class's features with the same model"
        )
    keys = [r for r, _, _ in items]
    if isinstance(classes, str) and classes == "max":
        chosen = items
    elif isinstance(classes, (int, np.integer)) and not isinstance(classes, bool) and classes in keys:
        chosen = [it for it in items if it[0] == classes]
    else:
        raise ValueError(
            f"classes must be 'max' or one of the classes in feature_pools {keys}, got {classes!r}"
        )

    per_obs, per_null, per_p = {}, {}, {}
    for r, fP, fQ in chosen:
        ctx = stat.prepare(fP, fQ, seed=class_seed(seed, r), r=r, m=m, n=n, trials=trials, **options)
        N = ctx.n_P + ctx.n_Q
        perms = np.concatenate([np.arange(N)[None, :], _permutations(N, B, seed, r)])
        values = stat.evaluate(ctx, perms)
        per_obs[r], per_null[r] = float(values[0]), values[1:]
        per_p[r] = permutation_pvalue(values[1:], float(values[0]))
    if len(chosen) == 1:
        (r,) = per_obs
        observed, null = per_obs[r], per_null[r]
    else:
        observed = max(per_obs.values())
        null = np.max(np.stack([per_null[r] for r in per_obs]), axis=0)
    return PermutationResult(
        pvalue=permutation_pvalue(null, observed), observed=observed, null=null,
        per_class_observed=per_obs, statistic=statistic, B=B, classes=classes,
        per_class_null=per_null, per_class_pvalue=per_p,
    )
