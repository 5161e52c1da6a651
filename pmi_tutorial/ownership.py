r"""The owner's verification: calibrated p-values first, the paper's rule beside them.

Chapter "Beyond the paper", section "A p-value without a floor".  Three pieces:

* :func:`closed_form_test`: a one-sided Mann-Whitney U (rank-sum) test per class of the
  per-sample confidence at the true class, members P' against non-members Q, and one rule fixed
  in advance that combines the classes (Stouffer by default, Fisher as an option).  Its
  p-value has no floor: it can be 1e-30 or smaller when the evidence is that strong, and it is
  computed in log space (``log10_pvalue``) so that it never underflows to 0.
* :class:`OwnerPools` with :func:`save_pools` / :func:`load_pools`: the owner's revealed members
  P' and non-members Q (images, labels, class ids, the dataset's name) written once, atomically,
  with a SHA-256 checksum of every array, and read back only if every checksum matches, so that
  a later verification provably uses the same images.
* :func:`verify_ownership`: a suspect (a checkpoint of ours, or any callable mapping a batch of
  images to logits or probabilities: a black-box API) against the pools.  It reports the
  closed-form p-value and the directional permutation test (B = 999) first, and the paper's
  rule (Eq. 13-14) beside them, labelled uncalibrated.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import _validate as V

COMBINES = ("stouffer", "fisher")
OUTPUTS = ("auto", "logits", "probabilities")
POOLS_FORMAT = "pmi-tutorial-pools"
POOLS_VERSION = 1
LOG10 = math.log(10.0)


# --------------------------------------------------------------------------- the closed form


@dataclass(frozen=True)
class RankSumResult:
    """One class's one-sided Mann-Whitney U test (members more confident than non-members).

    ``U`` counts the pairs (x from P', y from Q) with x > y (ties count 1/2); ``z`` is its
    normal score with tie and continuity corrections; ``log10_pvalue`` = log10 P(Z >= z).
    """

    U: float
    z: float
    log10_pvalue: float
    n_P: int
    n_Q: int

    @property
    def pvalue(self) -> float:
        return 10.0 ** self.log10_pvalue


def midranks(values) -> tuple[np.ndarray, np.ndarray]:
    """Ranks 1..N with tied values given the mean of their ranks (as ``scipy.stats.rankdata``),
    and the sizes of the groups of tied values; one sort."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    sv = v[order]
    start = np.flatnonzero(np.concatenate([[True], sv[1:] != sv[:-1]]))
    counts = np.diff(np.append(start, len(v)))
    mean_rank = start + (counts + 1) / 2.0  # ranks start+1 .. start+count
    ranks = np.empty(len(v))
    ranks[order] = np.repeat(mean_rank, counts)
    return ranks, counts


def rank_sum_test(x, y) -> RankSumResult:
    r"""One-sided Mann-Whitney U test that ``x`` (member scores) tends to exceed ``y``.

    :math:`U = R_x - n_x(n_x+1)/2` with :math:`R_x` the sum of the mid-ranks of ``x`` in the
    pooled sample; under the null (the n_x + n_y scores exchangeable) U has mean
    :math:`\mu = n_x n_y / 2` and variance
    :math:`\sigma^2 = \frac{n_x n_y}{12}\big((N+1) - \frac{\sum_k (t_k^3 - t_k)}{N(N-1)}\big)`
    (t_k the sizes of the groups of tied scores, N = n_x + n_y), and
    :math:`z = (U - \mu - 1/2) / \sigma` (continuity correction), p = P(Z >= z).  The same
    numbers as ``scipy.stats.mannwhitneyu(x, y, alternative="greater", method="asymptotic")``,
    but with ``log10 p`` from :func:`scipy.special.log_ndtr`, so that p never underflows.
    Scores that are all tied carry no evidence: z = 0 and p = 1.
    """
    from scipy.special import log_ndtr

    x = V.as_float_array(x, "member scores x", ndim=1)
    y = V.as_float_array(y, "non-member scores y", ndim=1)
    if x.size < 1 or y.size < 1:
        raise ValueError(
            f"the rank-sum test needs at least one member and one non-member score, got "
            f"{x.size} and {y.size}; reveal more members or use a class with non-members"
        )
    n1, n2 = x.size, y.size
    N = n1 + n2
    ranks, counts = midranks(np.concatenate([x, y]))
    U = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts))
    var = n1 * n2 / 12.0 * ((N + 1) - (ties / (N * (N - 1)) if N > 1 else 0.0))
    if var <= 0:
        return RankSumResult(U, 0.0, 0.0, n1, n2)
    z = (U - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return RankSumResult(U, float(z), float(log_ndtr(-z)) / LOG10, n1, n2)


TAIL = 0.05  # the tail test's pre-registered share of least confident pooled samples


def tail_count_test(x, y, fraction: float = TAIL) -> RankSumResult:
    r"""Exact one-sided test that members are rarely among the least confident samples.

    Pool the scores, take the K samples at or below the pooled ``fraction``-quantile (the
    least confident: high loss), and count the members among them, c.  Under the null (the
    pooled scores exchangeable) the members are a uniformly random subset of the pool, so c is
    hypergeometric, :math:`P(C = i) = \binom{K}{i}\binom{N-K}{|P'|-i} / \binom{N}{|P'|}`, and
    p = P(C <= c) exactly (summed in log space: no underflow); ties at the threshold are all
    in or all out, which K accounts for.  A model that generalises well gives members and
    non-members alike a confidence near 1, and what membership leaves is the tail: hard images
    the model memorised, which a rank test over the whole distribution barely sees.  Returns a
    :class:`RankSumResult` whose ``U`` is the count c and ``z`` = :math:`\Phi^{-1}(1 - p)`.
    ``fraction`` must be fixed before looking at the suspect (the owner may choose it on its
    own model).
    """
    from scipy.special import logsumexp, ndtri_exp

    x = V.as_float_array(x, "member scores x", ndim=1)
    y = V.as_float_array(y, "non-member scores y", ndim=1)
    if x.size < 1 or y.size < 1:
        raise ValueError(
            f"the tail test needs at least one member and one non-member score, got "
            f"{x.size} and {y.size}; reveal more members or use a class with non-members")
    if not 0 < float(fraction) < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}; e.g. fraction=0.05")
    n1, N = x.size, x.size + y.size
    pooled = np.concatenate([x, y])
    k = max(1, int(math.ceil(float(fraction) * N)))
    low = pooled <= np.partition(pooled, k - 1)[k - 1]
    K, c = int(low.sum()), int(low[:n1].sum())

    lo, logpmf = _hypergeom_logpmf(N, K, n1)
    logp = float(min(0.0, logsumexp(logpmf[:c - lo + 1])))
    z = float(-ndtri_exp(logp)) if logp < 0 else -40.0
    res = RankSumResult(float(c), max(z, -40.0), logp / LOG10, n1, N - n1)
    object.__setattr__(res, "_null", (lo, logpmf))  # the count's null law, for the exact sum
    return res


def _hypergeom_logpmf(N: int, K: int, n: int):
    """``(lowest count, log P(C = lowest + i) for i = 0, 1, ...)`` of C ~ Hypergeom(N, K, n)."""
    from scipy.special import gammaln

    def lbinom(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    lo, hi = max(0, n - (N - K)), min(K, n)
    i = np.arange(lo, hi + 1, dtype=np.float64)
    return lo, lbinom(K, i) + lbinom(N - K, n - i) - lbinom(N, n)


def _log_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log of the convolution of two pmfs given as logs (exact, no underflow)."""
    from scipy.special import logsumexp

    i, j = np.arange(len(a))[:, None], np.arange(len(b))[None, :]
    S = np.full((len(a), len(a) + len(b) - 1), -np.inf)
    S[np.broadcast_to(i, (len(a), len(b))), i + j] = a[:, None] + b[None, :]
    return logsumexp(S, axis=0)


def tail_sum_log10(per_class: dict) -> tuple[float, float]:
    """The tail tests of all classes combined exactly: the total count of members among the
    least confident, ``(total, log10 P(total <= observed))``, its null law the convolution of
    the classes' independent hypergeometric laws."""
    from scipy.special import logsumexp

    lo, law, total = 0, np.zeros(1), 0
    for res in per_class.values():
        l, lp = res._null
        lo, law, total = lo + l, _log_convolve(law, lp), total + int(res.U)
    return float(total), float(min(0.0, logsumexp(law[:total - lo + 1]))) / LOG10


def _log_chi2_sf_even(x: float, dof: int) -> float:
    r"""ln P(chi^2_dof >= x) for even dof = 2K, exactly: :math:`e^{-t}\sum_{j<K} t^j/j!`,
    t = x/2, summed in log space (no underflow for any x)."""
    from scipy.special import gammaln, logsumexp

    K, t = dof // 2, x / 2.0
    if t <= 0:
        return 0.0
    j = np.arange(K, dtype=np.float64)
    return float(min(0.0, -t + logsumexp(j * math.log(t) - gammaln(j + 1))))


def combine_log10(z, log10_p, combine: str = "stouffer") -> tuple[float, float]:
    r"""Combine per-class results into one ``(statistic, log10 p)`` by a rule fixed in advance.

    ``"stouffer"``: :math:`Z = \sum_k z_k / \sqrt{K}`, p = P(N(0,1) >= Z) (equal weights: every
    class counts alike, decided before looking at the data).  ``"fisher"``:
    :math:`X = -2\sum_k \ln p_k`, p = P(chi^2_{2K} >= X), exactly and in log space.  Both equal
    ``scipy.stats.combine_pvalues`` where that does not underflow.  Under the null the classes'
    tests are independent (disjoint samples, independent draws), so either combination is valid.
    """
    from scipy.special import log_ndtr

    if combine not in COMBINES:
        raise ValueError(f"unknown combine rule {combine!r}; use one of {', '.join(map(repr, COMBINES))}")
    z = np.asarray(z, dtype=np.float64)
    lp = np.asarray(log10_p, dtype=np.float64)
    if z.size == 0 or z.shape != lp.shape:
        raise ValueError("pass one z and one log10 p-value per class (at least one class)")
    if combine == "stouffer":
        Z = float(z.sum() / math.sqrt(z.size))
        return Z, float(log_ndtr(-Z)) / LOG10
    X = float(-2.0 * LOG10 * lp.sum())
    return X, _log_chi2_sf_even(X, 2 * lp.size) / LOG10


@dataclass
class ClosedFormResult:
    """What :func:`closed_form_test` found (see there)."""

    pvalue: float
    log10_pvalue: float
    statistic: float
    combine: str
    confidence: str
    per_class: dict  # r -> RankSumResult
    test: str = "rank"
    fraction: float | None = None  # the tail test's share

    def to_dict(self) -> dict:
        what = ("one-sided Mann-Whitney U per class" if self.test == "rank" else
                f"exact count of members among the {self.fraction:g} least confident per class")
        return {"test": f"{what}, {self.combine} combination", "fraction": self.fraction,
                "null": "for the suspect, P' and Q of every class are exchangeable",
                "pvalue": self.pvalue, "log10_pvalue": self.log10_pvalue,
                "statistic": self.statistic, "combine": self.combine,
                "confidence": self.confidence,
                "per_class": {str(r): {**asdict(v), "pvalue": v.pvalue}
                              for r, v in self.per_class.items()}}


def closed_form_test(feature_pools, combine: str = "stouffer", confidence: str = "logprob",
                     test: str = "rank", fraction: float = TAIL) -> ClosedFormResult:
    r"""A p-value without a floor for "the suspect was trained on P'" (chapter "Beyond the paper").

    ``feature_pools``: ``{r: (features_P, features_Q)}`` (logits or log-probabilities of the
    revealed members P' and the non-members Q of class r, shape ``(len(P'), c)`` and ``(len(Q), c)``).  Per
    class, the score of a sample is its confidence at the true class r
    (:func:`pmi_tutorial.stats.confidence_scores`, default log-softmax = minus the loss: the
    same ranks from logits, log-probabilities or probabilities); :func:`rank_sum_test` asks
    whether members score higher, and :func:`combine_log10` combines the classes by the rule
    ``combine`` fixed in advance.  The reported ``pvalue`` may underflow to 0.0 as a float;
    ``log10_pvalue`` never does.

    **Why it is valid.**  The null hypothesis is that, for the suspect, P' and Q of every class
    are exchangeable: P' and Q are a random split of one population (the owner's images of
    class r) and the suspect treats the two parts alike, as any model does that was trained on
    neither.  Given the model, the scores are then i.i.d. draws of one distribution per class
    (the samples are independent), so every assignment of the pooled ranks to P' is equally
    likely: the null distribution of U is known exactly, whatever the model and the score's
    distribution (a rank test is distribution-free), tied scores included (mid-ranks and the
    conditional variance above).  The p-value uses the normal approximation to that exact
    distribution, excellent for pools of tens of samples and more at the levels where a
    decision is taken (alpha = 0.05, 0.01); far out in the tail (p = 1e-30) it reports the
    strength of the evidence, not a calibrated probability to many digits.  The classes use
    disjoint samples, so their tests are independent and Stouffer's and Fisher's rules are
    valid; the rule is fixed before looking at the data, so there is no search over r and
    nothing to correct for.

    **What breaks it.**  (1) A suspect trained on Q (or on part of it, e.g. fine-tuned on the
    owner's validation images): Q is then "member-like" too and the test loses power; a suspect
    trained on Q but not P' can even look *less* like the owner.  (2) Pools from different
    sources (P' from one collection, Q from another, scanned differently or from another
    time): any model, innocent or not, can tell them apart, and the test accuses innocents.
    (3) Duplicates or near-duplicates across P' and Q, or within the pools (the samples are no
    longer independent; a duplicate of a member in Q counts as a member).  (4) Choosing P', Q,
    the score or the combination rule after looking at the suspect's outputs.
    """
    return closed_form_from_scores(class_scores(feature_pools, confidence), combine, confidence,
                                   test, fraction)


def class_scores(feature_pools, confidence: str = "logprob") -> dict:
    """``{r: (scores of P', scores of Q)}``: each sample's confidence at its true class r
    (:func:`pmi_tutorial.stats.confidence_scores`), computed once for both tests."""
    from .fingerprint import pool_items
    from .stats import confidence_scores

    out = {r: (confidence_scores(fP, r, confidence), confidence_scores(fQ, r, confidence))
           for r, fP, fQ in pool_items(feature_pools)}
    if not out:
        raise ValueError("feature_pools is empty; pass {r: (features_P, features_Q)}")
    return out


def closed_form_from_scores(scores: dict, combine: str = "stouffer", confidence: str = "logprob",
                            test: str = "rank", fraction: float = TAIL) -> ClosedFormResult:
    """:func:`closed_form_test` on per-class scores ``{r: (scores_P, scores_Q)}``; ``test``:
    ``"rank"`` (:func:`rank_sum_test`) or ``"tail"`` (:func:`tail_count_test`; its classes are
    combined exactly, by the law of the summed counts (:func:`tail_sum_log10`), unless
    ``combine="fisher"``: a sum of discrete p-values' normal scores would be conservative)."""
    if test not in ("rank", "tail"):
        raise ValueError(f"unknown closed-form test {test!r}; use 'rank' or 'tail'")
    per = {r: (rank_sum_test(sP, sQ) if test == "rank" else tail_count_test(sP, sQ, fraction))
           for r, (sP, sQ) in scores.items()}
    if not per:
        raise ValueError("no classes given; pass {r: (scores_P, scores_Q)}")
    if test == "tail" and combine == "stouffer":  # the exact law of the summed counts instead
        stat, lp = tail_sum_log10(per)
        combine = "exact sum of counts"
    else:
        stat, lp = combine_log10([v.z for v in per.values()], [v.log10_pvalue for v in per.values()],
                                 combine)
    return ClosedFormResult(10.0 ** lp, lp, stat, combine, confidence, per, test,
                            fraction if test == "tail" else None)


# --------------------------------------------------------------------------- a fast permutation test


@dataclass
class DirectionalResult:
    """What :func:`directional_test` found: ``pvalue`` = (k + 1) / (B + 1)."""

    pvalue: float
    observed: float
    B: int
    per_class_observed: dict
    per_class_pvalue: dict

    def to_dict(self) -> dict:
        return {"test": "directional permutation test (mean log-probability at r, P' minus Q; "
                        "max over classes; permutations from a random cyclic group per class)",
                "null": "for the suspect, P' and Q of every class are exchangeable",
                "pvalue": self.pvalue, "B": self.B, "observed": self.observed,
                "per_class_observed": {str(r): v for r, v in self.per_class_observed.items()},
                "per_class_pvalue": {str(r): v for r, v in self.per_class_pvalue.items()}}


def cyclic_subset_sums(scores, n_P: int, sigma) -> np.ndarray:
    r"""All N re-split sums of the cyclic group conjugated by ``sigma``.

    With :math:`c_t = s_{\sigma_t}` (the pooled scores, P' first, in the random order
    ``sigma``) and :math:`u_t = 1[\sigma_t < |P'|]` (where the members sit), re-split j puts
    the members at :math:`t + j \bmod N`; its member sum is
    :math:`S_j = \sum_t u_t c_{(t + j) \bmod N}`, a circular cross-correlation: one FFT gives
    all N of them (:math:`S_0` is the observed sum)."""
    c = np.asarray(scores, dtype=np.float64)[sigma]
    u = (np.asarray(sigma) < n_P).astype(np.float64)
    return np.fft.irfft(np.conj(np.fft.rfft(u)) * np.fft.rfft(c), n=len(c))


def directional_test(logprob_pools, B: int = 999, seed: int = 0) -> DirectionalResult:
    r"""The directional permutation test (members more confident), B re-splits, in O(N log N).

    The statistic of class r is the mean log-probability at r of P' minus that of Q; the test
    statistic is the max over classes (the search over r is part of the test).  The re-splits
    are random elements of a group: per class, a random order :math:`\sigma` of the pooled
    samples (independent of the data) and the N cyclic shifts in that order
    (:func:`cyclic_subset_sums`); B shifts are drawn per class, independently across classes.
    Under the null (P' and Q exchangeable for the suspect) the pooled scores are exchangeable,
    so their distribution is invariant under every permutation, in particular under this group;
    p = (k + 1)/(B + 1) with k the number of drawn re-splits whose statistic reaches the
    observed one is then exact for random group elements (Hemerik and Goeman, "Exact testing with
    random permutations", TEST 2018), as for uniformly random permutations
    (:func:`pmi_tutorial.stats.permutation_test`, ``"directional"``, which costs B x N per class
    instead of one FFT).  Needs B < N for every class.
    """
    return directional_from_scores(class_scores(logprob_pools), B, seed)


def directional_from_scores(scores: dict, B: int = 999, seed: int = 0) -> DirectionalResult:
    """:func:`directional_test` on per-class scores ``{r: (scores_P, scores_Q)}``."""
    from .stats import _TIES_RTOL

    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
        raise ValueError(f"B must be an integer >= 1, got {B!r}; e.g. B=999")
    per_obs, per_null = {}, {}
    for r, (sP, sQ) in scores.items():
        s = np.concatenate([sP, sQ])
        a, N = len(sP), len(s)
        if N - 1 < B:
            raise ValueError(f"class {r} has {N} samples, fewer re-splits than B={B}; lower B to "
                             f"<= {N - 1} or use stats.permutation_test")
        rng = np.random.default_rng([int(seed), int(r), 8111])
        S = cyclic_subset_sums(s, a, rng.permutation(N))
        stat = S / a - (s.sum() - S) / (N - a)
        shifts = rng.choice(np.arange(1, N), size=int(B), replace=False)
        per_obs[r], per_null[r] = float(stat[0]), stat[shifts]
    if not per_obs:
        raise ValueError("no classes given; pass {r: (scores_P, scores_Q)}")
    observed = max(per_obs.values())
    null = np.max(np.stack(list(per_null.values())), axis=0)

    def pval(nul, obs):
        return (int(np.count_nonzero(nul >= obs - _TIES_RTOL * abs(obs) - 1e-12)) + 1) / (len(nul) + 1)

    return DirectionalResult(pval(null, observed), observed, int(B), per_obs,
                             {r: pval(per_null[r], per_obs[r]) for r in per_obs})


# --------------------------------------------------------------------------- the pools file


def _sha256(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


@dataclass
class OwnerPools:
    """The owner's revealed members P' and non-members Q, per class.

    ``P_x`` / ``Q_x``: float32 image arrays (N, C, H, W), normalized as the models expect
    (:func:`pmi_tutorial.data.normalize`); ``P_y`` / ``Q_y``: their labels; ``classes``: the
    class ids; ``dataset``: the dataset's name.  ``digest`` identifies the images exactly.
    """

    dataset: str
    classes: tuple
    P_x: np.ndarray
    P_y: np.ndarray
    Q_x: np.ndarray
    Q_y: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("P_x", "Q_x"):
            setattr(self, name, np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float32)))
        for name in ("P_y", "Q_y"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int64))
        self.classes = tuple(int(r) for r in self.classes)
        if len(self.P_x) != len(self.P_y) or len(self.Q_x) != len(self.Q_y):
            raise ValueError("each pool needs one label per image; pass P_y with len(P_x) labels "
                             "and Q_y with len(Q_x)")
        for r in self.classes:
            if not (self.P_y == r).any() or not (self.Q_y == r).any():
                raise ValueError(f"class {r} has no member or no non-member image in the pools; "
                                 "reveal members of every class listed in `classes`")

    def checksums(self) -> dict:
        return {k: _sha256(getattr(self, k)) for k in ("P_x", "P_y", "Q_x", "Q_y")}

    @property
    def digest(self) -> str:
        """SHA-256 over the arrays' checksums, the dataset and the classes."""
        return hashlib.sha256(json.dumps([self.dataset, list(self.classes), self.checksums()],
                                         sort_keys=True).encode()).hexdigest()

    def class_pools(self) -> dict:
        """``{r: data.Pools(P, Q, r)}`` (torch tensors), as :func:`data.all_class_pools` gives."""
        import torch

        from .data import Pools

        return {r: Pools(torch.from_numpy(self.P_x[self.P_y == r]),
                         torch.from_numpy(self.Q_x[self.Q_y == r]), r) for r in self.classes}

    def sizes(self) -> dict:
        return {str(r): [int((self.P_y == r).sum()), int((self.Q_y == r).sum())]
                for r in self.classes}


def pools_from_split(split, revealed_per_class=None, seed: int = 0, classes=None) -> OwnerPools:
    """The owner's pools of a :class:`~pmi_tutorial.data.Split`: P' = ``revealed_per_class``
    training images per class drawn at random (seeded; None: all of them), Q = every validation
    image of the class."""
    classes = list(range(split.num_classes)) if classes is None else [int(r) for r in classes]
    y, vy = split.train_y.numpy(), split.val_y.numpy()
    rng = np.random.default_rng([int(seed), 60221])
    P_idx, Q_idx = [], []
    for r in classes:
        pos = np.flatnonzero(y == r)
        if revealed_per_class is not None:
            k = V.check_positive_int(revealed_per_class, "revealed_per_class")
            if k > len(pos):
                raise ValueError(f"class {r} has {len(pos)} training images, cannot reveal {k}; "
                                 f"lower revealed_per_class to <= {len(pos)}")
            pos = np.sort(rng.choice(pos, k, replace=False))
        P_idx.append(pos)
        Q_idx.append(np.flatnonzero(vy == r))
    P_idx, Q_idx = np.concatenate(P_idx), np.concatenate(Q_idx)
    info = {"split_seed": int(split.seed), "revealed_per_class": revealed_per_class,
            "draw_seed": int(seed), "P_index": split.train_index[P_idx].tolist(),
            "Q_index": split.val_index[Q_idx].tolist()}
    return OwnerPools(split.name, tuple(classes), split.train_x.numpy()[P_idx], y[P_idx],
                      split.val_x.numpy()[Q_idx], vy[Q_idx], info)


def save_pools(path, pools: OwnerPools) -> Path:
    """Write ``pools`` to ``path`` (.npz, compressed) once: arrays plus a JSON header with the
    format, the dataset, the classes and the SHA-256 of every array; atomically (a temporary
    file in the same folder, then ``os.replace``).  Returns the path."""
    path = Path(path)
    head = {"format": POOLS_FORMAT, "version": POOLS_VERSION, "dataset": pools.dataset,
            "classes": list(pools.classes), "sha256": pools.checksums(), "digest": pools.digest,
            "sizes": pools.sizes(), "info": {k: v for k, v in pools.info.items()
                                             if k not in ("P_index", "Q_index")}}
    buf = io.BytesIO()
    extra = {k: np.asarray(pools.info[k], dtype=np.int64) for k in ("P_index", "Q_index")
             if k in pools.info}
    np.savez_compressed(buf, P_x=pools.P_x, P_y=pools.P_y, Q_x=pools.Q_x, Q_y=pools.Q_y,
                        header=np.frombuffer(json.dumps(head).encode(), dtype=np.uint8), **extra)
    from .files import write_bytes_atomic

    write_bytes_atomic(path, buf.getvalue())
    return path


def load_pools(path, dataset: str | None = None) -> OwnerPools:
    """Read a pools file written by :func:`save_pools`, verifying every checksum.

    ``dataset``: the dataset the suspect is built for; pools of another dataset are refused.
    Raises FileNotFoundError for a missing file, ValueError for a corrupt file, a checksum
    mismatch (the images changed since they were saved) or the wrong dataset.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no pools file at {path}; check the path, or write one first with "
            "`python -m pmi_tutorial pools --out FILE` (ownership.save_pools)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        head = json.loads(bytes(arrays.pop("header")).decode())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable pools file ({exc}); write it again with "
                         "ownership.save_pools") from None
    if head.get("format") != POOLS_FORMAT or head.get("version") != POOLS_VERSION:
        raise ValueError(f"{path} is not a version-{POOLS_VERSION} pools file of pmi_tutorial; "
                         "write it again with ownership.save_pools")
    info = dict(head.get("info", {}))
    for k in ("P_index", "Q_index"):
        if k in arrays:
            info[k] = arrays.pop(k).tolist()
    pools = OwnerPools(head["dataset"], tuple(head["classes"]), arrays["P_x"], arrays["P_y"],
                       arrays["Q_x"], arrays["Q_y"], info)
    sums = pools.checksums()
    bad = [k for k, v in head["sha256"].items() if sums.get(k) != v]
    if bad:
        raise ValueError(f"checksum mismatch in {path} for {', '.join(bad)}: the pools changed "
                         "since they were saved; use the original file (a verification must use "
                         "exactly the images the owner fixed)")
    if dataset is not None and pools.dataset != dataset:
        raise ValueError(f"the pools in {path} are {pools.dataset} images, but the suspect is "
                         f"built for {dataset}; pass the owner's {dataset} pools file")
    return pools


# --------------------------------------------------------------------------- the suspect


def _as_callable(suspect):
    """``(function images -> outputs, description, dataset or None)``."""
    if isinstance(suspect, (str, os.PathLike)):
        from .checkpoint import load_checkpoint
        from .features import logits
        from .models import dataset_of

        model, settings, _ = load_checkpoint(suspect)  # weights_only: never unpickles code
        model.eval()
        return (lambda x: logits(model, x), f"checkpoint {suspect}",
                dataset_of(settings["model"]) if "model" in settings else None, "logits")
    if hasattr(suspect, "state_dict") and hasattr(suspect, "forward"):
        from .features import logits as logits_of

        return lambda x: logits_of(suspect, x), type(suspect).__name__, None, "logits"
    if callable(suspect):
        return suspect, getattr(suspect, "__name__", type(suspect).__name__), None, None
    raise ValueError(f"suspect must be a checkpoint path, a torch model or a callable mapping "
                     f"a batch of images to logits or probabilities, got {type(suspect).__name__}")


def _outputs(fn, x, c: int, batch_size: int) -> np.ndarray:
    import torch

    outs = []
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start:start + batch_size])
        with torch.no_grad():
            out = fn(xb)
        if hasattr(out, "detach"):
            out = out.detach().cpu().double().numpy()
        out = np.asarray(out, dtype=np.float64)
        if out.shape != (len(xb), c):
            raise ValueError(
                f"the suspect returned shape {out.shape} for a batch of {len(xb)} images; it must "
                f"return ({len(xb)}, {c}): one row of {c} logits or probabilities per image")
        if not np.all(np.isfinite(out)):
            raise ValueError("the suspect returned NaN or infinite values; check the model or API")
        outs.append(out)
    return np.concatenate(outs)


def _looks_like_probabilities(out: np.ndarray) -> bool:
    return bool((out >= 0).all() and (out <= 1 + 1e-6).all()
                and np.allclose(out.sum(1), 1.0, atol=1e-4))


def to_log_probabilities(out: np.ndarray, output: str) -> np.ndarray:
    """Log-probabilities from logits (log-softmax) or from probabilities (log, clipped at the
    smallest positive float32 so that a probability of 0 stays finite)."""
    from scipy.special import log_softmax

    if output == "logits":
        return log_softmax(out, axis=1)
    return np.log(np.clip(out, np.finfo(np.float32).tiny, None))


@dataclass
class OwnershipResult:
    """What :func:`verify_ownership` found: calibrated p-values first, the paper's rule beside."""

    closed_form: ClosedFormResult
    permutation: dict
    paper_rule: dict
    suspect: str
    output: str
    pools: dict
    closed_form_tail: ClosedFormResult | None = None

    @property
    def log10_pvalue_both(self) -> float:
        """Bonferroni over the two closed-form tests: log10 min(1, 2 min(p_rank, p_tail))."""
        lps = [self.closed_form.log10_pvalue]
        if self.closed_form_tail is not None:
            lps.append(self.closed_form_tail.log10_pvalue)
        return min(0.0, min(lps) + math.log10(len(lps)))

    def to_dict(self) -> dict:
        tail = self.closed_form_tail.to_dict() if self.closed_form_tail is not None else None
        return {"calibrated": {"closed_form": self.closed_form.to_dict(),
                               "closed_form_tail": tail,
                               "closed_form_both": {"test": "Bonferroni over the rank and the tail "
                                                            "test", "log10_pvalue": self.log10_pvalue_both},
                               "permutation": self.permutation},
                "paper_rule": self.paper_rule, "suspect": self.suspect, "output": self.output,
                "pools": self.pools}

    def to_json(self, path=None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            from .files import write_json_atomic

            write_json_atomic(path, self.to_dict())
        return text

    def report(self) -> str:
        cf, pm, pr = self.closed_form, self.permutation, self.paper_rule
        lines = [
            f"suspect: {self.suspect} (outputs read as {self.output}); pools {self.pools['digest'][:16]} "
            f"({self.pools['dataset']}, {self.pools['n_P']} revealed members, {self.pools['n_Q']} non-members)",
            "calibrated p-values (null: P' and Q exchangeable for the suspect; valid over the draw of the pools):",
            f"  closed form (one-sided Mann-Whitney U per class, {cf.combine}): "
            f"p = {_fmt_p(cf.log10_pvalue)} (log10 p = {cf.log10_pvalue:.2f})",
            *([f"  closed form (members among the {self.closed_form_tail.fraction:g} least confident, "
               f"exact under the null, {self.closed_form_tail.combine}; shown calibrated on innocent "
               f"MNIST models from 100 members per class, conservative below): p = {_fmt_p(self.closed_form_tail.log10_pvalue)} "
               f"(log10 p = {self.closed_form_tail.log10_pvalue:.2f})",
               f"  closed form, both (Bonferroni): log10 p = {self.log10_pvalue_both:.2f}"]
              if self.closed_form_tail is not None else []),
            f"  permutation (directional, max over classes, B = {pm['B']}): p = {pm['pvalue']:.4g} "
            f"(smallest possible 1/(B+1) = {1 / (pm['B'] + 1):.4g})",
            f"paper's rule, uncalibrated (Eq. 13-14, m = {pr['m']}, n = {pr['n']}, t = {pr['trials']}): "
            f"r_opt = {pr['r_opt']}, acc_r_opt = {pr['acc_opt']:.2f}, 1/m + rho = "
            f"{1 / pr['m'] + pr['rho']:.3f} -> {'claim' if pr['verdict'] else 'no claim'} "
            "(no false-positive guarantee)",
        ]
        return "\n".join(lines)


def _fmt_p(log10_p: float) -> str:
    if log10_p > -4:
        return f"{10 ** log10_p:.4g}"
    e = math.floor(log10_p)
    return f"{10 ** (log10_p - e):.2f}e{e}"


def verify_ownership(suspect, pools, *, output: str = "auto", B: int = 999, seed: int = 0,
                     combine: str = "stouffer", m: int = 3, n: int = 100, trials: int = 100,
                     rho: float = 0.1, batch_size: int = 1024, classes=None,
                     tail: float = TAIL) -> OwnershipResult:
    r"""Was ``suspect`` trained on the owner's revealed members?  Calibrated p-values first.

    ``suspect``: a pmi_tutorial checkpoint path (loaded pickle-free), a torch model, or any
    callable mapping a batch of images (a float32 tensor (b, C, H, W), normalized as in
    :mod:`pmi_tutorial.data`) to a (b, c) array of logits or probabilities: a black-box API.
    ``output``: ``"logits"``, ``"probabilities"``, or ``"auto"`` (probabilities when every row
    is non-negative and sums to 1, else logits); the result says which was used.
    ``pools``: an :class:`OwnerPools` or the path of a pools file (:func:`load_pools`, checksums
    verified; refused if its dataset is not the checkpoint's).

    Reports (1) :func:`closed_form_test` (no floor): the rank test, the tail test
    (:func:`tail_count_test`, share ``tail`` fixed in advance) and, to quote when both are
    read, their Bonferroni combination ``log10_pvalue_both``; (2) the directional permutation test
    (:func:`directional_test`: max over classes, B re-splits, p >= 1/(B+1)) on
    log-probabilities, both valid over the random draw of the
    pools under the null "P' and Q are exchangeable for the suspect"; and (3) beside them the
    paper's rule (Eq. 13-14 on m, n, trials; logits where available, else log-probabilities),
    which has no false-positive guarantee and is labelled uncalibrated.
    """
    from . import fingerprint

    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; use one of {', '.join(map(repr, OUTPUTS))}")
    fingerprint.check_rho(rho, m)  # checks m and rho now
    fn, name, dataset, declared = _as_callable(suspect)
    if not isinstance(pools, OwnerPools):
        pools = load_pools(pools, dataset=dataset)
    elif dataset is not None and pools.dataset != dataset:
        raise ValueError(f"the pools are {pools.dataset} images, but the suspect is built for "
                         f"{dataset}; pass the owner's {dataset} pools")
    chosen = pools.classes if classes is None else tuple(int(r) for r in classes)
    from .data import NUM_CLASSES

    c = NUM_CLASSES.get(pools.dataset, max(pools.classes) + 1)
    outP = _outputs(fn, pools.P_x, c, batch_size)
    outQ = _outputs(fn, pools.Q_x, c, batch_size)
    if declared is not None and output == "auto":
        output = declared
    if output == "auto":
        output = ("probabilities" if _looks_like_probabilities(np.concatenate([outP, outQ]))
                  else "logits")
    lpP, lpQ = to_log_probabilities(outP, output), to_log_probabilities(outQ, output)
    featP, featQ = (outP, outQ) if output == "logits" else (lpP, lpQ)
    lp_pools, feat_pools = {}, {}
    for r in chosen:
        if r not in pools.classes:
            raise ValueError(f"class {r} is not in the pools (classes {list(pools.classes)})")
        iP, iQ = pools.P_y == r, pools.Q_y == r
        lp_pools[r] = (lpP[iP], lpQ[iQ])
        feat_pools[r] = (featP[iP], featQ[iQ])
    scores = class_scores(lp_pools)  # once, for both calibrated tests
    cf = closed_form_from_scores(scores, combine=combine)
    cf_tail = closed_form_from_scores(scores, combine=combine, test="tail", fraction=tail)
    permutation = directional_from_scores(scores, B=B, seed=seed).to_dict()
    n_eff = min(n, min(len(v[0]) for v in feat_pools.values()))
    paper = fingerprint.run_on_features(feat_pools, m, n_eff, trials=trials, seed=seed)
    paper_rule = {"label": "uncalibrated", "m": m, "n": n_eff, "trials": trials, "rho": rho,
                  "features": "logits" if output == "logits" else "log-probabilities",
                  "acc_by_class": {str(r): float(a) for r, a in paper.acc_by_class.items()},
                  "r_opt": paper.r_opt, "acc_opt": float(paper.acc_opt),
                  "mean_acc": float(paper.mean_acc), "verdict": bool(paper.verdict(rho))}
    info = {"dataset": pools.dataset, "digest": pools.digest, "classes": list(chosen),
            "n_P": int(sum(len(v[0]) for v in lp_pools.values())),
            "n_Q": int(sum(len(v[1]) for v in lp_pools.values()))}
    return OwnershipResult(cf, permutation, paper_rule, name, output, info, cf_tail)
