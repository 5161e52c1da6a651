r"""P-value arithmetic shared by every test (book chapter "Beyond the paper": significance).

* :func:`binomial_pvalue`, the naive test of one acc_r (not valid for PMI: see its docstring),
  and :func:`bonferroni`, the simple correction for choosing r_opt among the classes;
* :func:`permutation_pvalue`, the one (k + 1)/(B + 1) of every permutation test;
* :func:`rejects` / :func:`rejects_log10`, the one rejection rule (p <= alpha);
* :func:`clopper_pearson`, the exact interval of every false-positive or detection rate.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V

# Relative tolerance for ">= observed" (as scipy.stats.permutation_test): a permuted split that
# equals the observed one mathematically must count even if round-off puts it 1 ulp below.
TIES_RTOL = 100 * np.finfo(np.float64).eps


def binomial_pvalue(acc, trials, m) -> float:
    r"""One-sided binomial p-value of :math:`acc_r` against chance 1/m (the naive test).

    Counts :math:`k = \mathrm{round}(acc \cdot t)` successes in t trials and returns
    :math:`P(X \ge k)` for :math:`X \sim \mathrm{Bin}(t, 1/m)`, as
    ``scipy.stats.binomtest(k, t, 1/m, alternative="greater")``.  It tests the accuracy of
    Eq. 13 against the chance level 1/m the paper compares it with.

    **Why it is invalid for PMI.**  The binomial model needs the t trials to be independent
    draws.  They are not: every trial draws its member mini-dataset from the *same* finite pool
    P (and its non-members from the same Q).  When ``|P|`` is close to n the same member samples
    recur in every trial, so one pool that happens to sit apart from Q, by chance alone, is
    found in most trials; the successes come in lumps, their variance is far above
    :math:`t\,p(1-p)`, and the test rejects innocent models much more often than its level
    (``tests/test_stats.py`` shows it).  Second, r_opt (Eq. 14) is picked as the best of c
    classes *after* looking at them: the smallest of c p-values is not a p-value (a multiple
    comparison; :func:`bonferroni` corrects for that part only).  Use :func:`permutation_test`.
    """
    m = V.check_m(m)
    trials = V.check_positive_int(trials, "trials")
    try:
        acc = float(acc)
    except (TypeError, ValueError):
        raise ValueError(f"acc must be a success rate in [0, 1], got {acc!r}") from None
    if not 0.0 <= acc <= 1.0:
        raise ValueError(f"acc must be a success rate in [0, 1] (acc_r of Eq. 13), got {acc}")
    from scipy.stats import binom

    k = int(round(acc * trials))
    return float(binom.sf(k - 1, trials, 1.0 / m))


#: slack of the rejection rule: a p-value (k + 1)/(B + 1) equal to alpha is not lost to round-off
REJECT_SLACK = 1e-12


def rejects(pvalue, alpha: float):
    """The one rejection rule: a test at level ``alpha`` rejects when its p-value is <= alpha
    (with :data:`REJECT_SLACK`).  Works on one p-value (a bool) or an array (a bool array)."""
    out = np.asarray(pvalue, dtype=np.float64) <= float(alpha) + REJECT_SLACK
    return bool(out) if out.ndim == 0 else out


def rejects_log10(log10_p, alpha: float):
    """:func:`rejects` on log10 p-values (closed-form tests report p below 1e-300)."""
    out = np.asarray(log10_p, dtype=np.float64) <= math.log10(float(alpha)) + REJECT_SLACK
    return bool(out) if out.ndim == 0 else out


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial rate k / n: every false-positive or
    detection rate of the book carries one (Clopper and Pearson, Biometrika 1934)."""
    from scipy.stats import beta

    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    a = 1 - confidence
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def bonferroni(pvalues) -> float:
    r"""Bonferroni's correction for choosing the best of c classes: :math:`\min(1, c \min_r p_r)`.

    Applied to the per-class p-values, it makes the test at r_opt (Eq. 14) valid *as a choice
    among classes* (it does not repair invalid per-class p-values such as
    :func:`binomial_pvalue`).  ``pvalues``: a sequence or a dict ``{r: p_r}``.
    """
    if isinstance(pvalues, dict):
        pvalues = list(pvalues.values())
    p = V.as_float_array(pvalues, "pvalues", ndim=1)
    if p.size == 0:
        raise ValueError("pvalues is empty; pass one p-value per class")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("pvalues must lie in [0, 1]; pass p-values, not statistics")
    return float(min(1.0, p.size * p.min()))


def permutation_pvalue(null, observed: float) -> float:
    """The one permutation p-value: (k + 1)/(B + 1), k = the null statistics at least as large
    as ``observed``, counting as ties those within round-off (:data:`TIES_RTOL` relative, 1e-12
    absolute) so that an equal statistic computed along another path is never lost.  Exact
    under the null (P(p <= a) <= a) over the random permutations (Phipson and Smyth, 2010)."""
    null = np.asarray(null, dtype=np.float64)
    tol = TIES_RTOL * abs(observed) + 1e-12
    k = int(np.count_nonzero(null >= observed - tol))
    return (k + 1) / (len(null) + 1)
