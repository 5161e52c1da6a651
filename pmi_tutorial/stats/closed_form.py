r"""The closed-form rank and tail tests and their combination across classes (book chapter
"Beyond the paper", section "A p-value without a floor").

* :func:`closed_form_test`: a one-sided Mann-Whitney U (rank-sum) test per class of the
  per-sample confidence at the true class, members P' against non-members Q, and one rule fixed
  in advance that combines the classes (Stouffer by default, Fisher as an option).  Its
  p-value has no floor: it can be 1e-30 or smaller when the evidence is that strong, and it is
  computed in log space (``log10_pvalue``) so that it never underflows to 0.  With
  ``test="tail"``: :func:`tail_count_test`, the exact count of members among the least
  confident samples.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .. import _validate as V

COMBINES = ("stouffer", "fisher")
LOG10 = math.log(10.0)


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
    and the sizes of the groups of tied values; one sort (not a stable one: tied values share
    one rank whatever their order)."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v)
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


def logsumexp(a) -> float:
    r""":math:`\log \sum_i e^{a_i}` of a 1-d array of logs, without overflow or underflow (as
    ``scipy.special.logsumexp``, whose array-API dispatch costs more than the sum itself on the
    tens of numbers a test adds up); -inf for an empty array or all -inf."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return -math.inf
    top = float(a.max())
    if not math.isfinite(top):
        return top
    return top + math.log(float(np.exp(a - top).sum()))


TAIL = 0.05  # the tail test's default share of least confident pooled samples (pools_file.TAIL)


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
    from scipy.special import ndtri_exp

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


_SPAN = 340.0  # natural-log range of a block: products within two blocks stay above 1e-295


def _blocks(x: np.ndarray) -> list:
    """Contiguous ``(start, stop)`` ranges of ``x`` (finite logs) whose values span at most
    :data:`_SPAN`."""
    out, start = [], 0
    while start < len(x):
        rest = x[start:]
        width = np.maximum.accumulate(rest) - np.minimum.accumulate(rest)
        stop = start + int(np.searchsorted(width, _SPAN, side="right"))
        out.append((start, max(stop, start + 1)))
        start = out[-1][1]
    return out


def _log_convolve(a: np.ndarray, b: np.ndarray, size: int | None = None) -> np.ndarray:
    """log of the convolution of two pmfs given as logs, its first ``size`` entries (default
    all), without underflow.

    Each law is cut into blocks spanning at most e^340 (:func:`_blocks`; one or two for the
    hypergeometric laws of the tail test); each pair of blocks is shifted by its maxima and
    convolved in linear space, where every product is then a normal double (above 1e-295 of
    the pair's largest) and every sum of positive terms is exact to a few ulps; the pairs
    are added in log space."""
    size = len(a) + len(b) - 1 if size is None else min(size, len(a) + len(b) - 1)
    a, b = a[:size], b[:size]
    out = np.full(size, -np.inf)
    bb = _blocks(b)
    for a0, a1 in _blocks(a):
        ma = a[a0:a1].max()
        ea = np.exp(a[a0:a1] - ma)
        for b0, b1 in bb:
            k0 = a0 + b0
            if k0 >= size:
                break
            mb = b[b0:b1].max()
            c = np.convolve(ea, np.exp(b[b0:b1] - mb))[:size - k0]
            out[k0:k0 + len(c)] = np.logaddexp(out[k0:k0 + len(c)], np.log(c) + (ma + mb))
    return out


def tail_sum_log10(per_class: dict) -> tuple[float, float]:
    """The tail tests of all classes combined exactly: the total count of members among the
    least confident, ``(total, log10 P(total <= observed))``, its null law the convolution of
    the classes' independent hypergeometric laws (only its part up to the observed total is
    needed, and computed)."""
    total = sum(int(res.U) for res in per_class.values())
    cut = total - sum(res._null[0] for res in per_class.values()) + 1  # entries 0 .. observed
    law = np.zeros(1)
    for res in per_class.values():
        law = _log_convolve(law, res._null[1], cut)
    return float(total), float(min(0.0, logsumexp(law[:cut]))) / LOG10


def _log_chi2_sf_even(x: float, dof: int) -> float:
    r"""ln P(chi^2_dof >= x) for even dof = 2K, exactly: :math:`e^{-t}\sum_{j<K} t^j/j!`,
    t = x/2, summed in log space (no underflow for any x)."""
    from scipy.special import gammaln

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
    (:func:`pmi_tutorial.stats.permutation.confidence_scores`, default log-softmax = minus the loss: the
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
    (:func:`pmi_tutorial.stats.permutation.confidence_scores`), computed once for both tests."""
    from ..fingerprint import pool_items
    from .permutation import confidence_scores

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
