r"""The directional permutation test: do the members score higher than the non-members?
B re-splits of each class in O(N log N) (cyclic subsets), the maximum over classes (book chapter
"Beyond the paper")."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .closed_form import class_scores
from .pvalues import permutation_pvalue


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
    all N of them (:math:`S_0` is the observed sum).  See :func:`cyclic_subset_sums_many`."""
    return cyclic_subset_sums_many([(scores, n_P, sigma)])[0]


def cyclic_subset_sums_many(classes) -> list:
    """:func:`cyclic_subset_sums` of several ``(scores, n_P, sigma)`` at once, in one FFT.

    Each correlation is taken over ``c`` written twice, zero-padded to one length with small
    prime factors only (for every :math:`t, j < N`, :math:`t + j < 2N` needs no wrap-around):
    an FFT of a length with a large prime factor (most class sizes) costs several times more."""
    from scipy.fft import next_fast_len

    Ns = [len(sigma) for _, _, sigma in classes]
    L = next_fast_len(2 * max(Ns), real=True)
    U, C = np.zeros((len(Ns), L)), np.zeros((len(Ns), L))
    for k, (scores, n_P, sigma) in enumerate(classes):
        N = Ns[k]
        U[k, :N] = np.asarray(sigma) < n_P
        C[k, :N] = np.asarray(scores, dtype=np.float64)[sigma]
        C[k, N:2 * N] = C[k, :N]
    S = np.fft.irfft(np.conj(np.fft.rfft(U)) * np.fft.rfft(C), n=L)
    return [S[k, :N] for k, N in enumerate(Ns)]


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
    (:func:`pmi_tutorial.stats.permutation.permutation_test`, ``"directional"``, which costs B x N per class
    instead of one FFT).  Needs B < N for every class.
    """
    return directional_from_scores(class_scores(logprob_pools), B, seed)


def directional_from_scores(scores: dict, B: int = 999, seed: int = 0) -> DirectionalResult:
    """:func:`directional_test` on per-class scores ``{r: (scores_P, scores_Q)}``."""

    if isinstance(B, bool) or not isinstance(B, (int, np.integer)) or B < 1:
        raise ValueError(f"B must be an integer >= 1, got {B!r}; e.g. B=999")
    per_obs, per_null, drawn = {}, {}, []
    for r, (sP, sQ) in scores.items():
        s = np.concatenate([sP, sQ])
        a, N = len(sP), len(s)
        if N - 1 < B:
            raise ValueError(f"class {r} has {N} samples, fewer re-splits than B={B}; lower B to "
                             f"<= {N - 1} or use stats.permutation_test")
        rng = np.random.default_rng([int(seed), int(r), 8111])
        sigma = rng.permutation(N)
        drawn.append((r, s, a, sigma, rng.choice(np.arange(1, N), size=int(B), replace=False)))
    sums = cyclic_subset_sums_many([(s, a, sigma) for _, s, a, sigma, _ in drawn]) if drawn else []
    for (r, s, a, _, shifts), S in zip(drawn, sums):
        stat = S / a - (s.sum() - S) / (len(s) - a)
        per_obs[r], per_null[r] = float(stat[0]), stat[shifts]
    if not per_obs:
        raise ValueError("no classes given; pass {r: (scores_P, scores_Q)}")
    observed = max(per_obs.values())
    null = np.max(np.stack(list(per_null.values())), axis=0)

    return DirectionalResult(permutation_pvalue(null, observed), observed, int(B), per_obs,
                             {r: permutation_pvalue(per_null[r], per_obs[r]) for r in per_obs})
