"""ROC curves for per-sample membership scores (the loss-threshold baselines of the chapter
"Membership inference"): :func:`roc_curve`, :func:`auc`, :func:`tpr_at_fpr`."""

from __future__ import annotations

import numpy as np

from .. import _validate as V


def _scores(pos, neg):
    pos = V.as_float_array(pos, "scores_pos", ndim=1)
    neg = V.as_float_array(neg, "scores_neg", ndim=1)
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            "scores_pos and scores_neg must both be non-empty; pass the scores of members "
            "(positives) and of non-members (negatives)"
        )
    return pos, neg


def roc_curve(scores_pos, scores_neg):
    """ROC of the rule "member if score >= threshold" (bigger scores: more member-like).

    Returns ``(fpr, tpr, thresholds)``: thresholds run from +inf (nothing flagged: (0, 0))
    down through every distinct score (the last flags everything: (1, 1)).
    """
    pos, neg = _scores(scores_pos, scores_neg)
    thr = np.concatenate([[np.inf], np.unique(np.concatenate([pos, neg]))[::-1]])
    ps, ns = np.sort(pos), np.sort(neg)
    tpr = (pos.size - np.searchsorted(ps, thr, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(ns, thr, side="left")) / neg.size
    return fpr, tpr, thr


def auc(scores_pos, scores_neg) -> float:
    """Area under :func:`roc_curve` (trapezoids): P(pos > neg) + P(pos = neg) / 2, the
    Mann-Whitney U statistic divided by ``|pos|`` ``|neg|``."""
    fpr, tpr, _ = roc_curve(scores_pos, scores_neg)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def tpr_at_fpr(scores_pos, scores_neg, fpr=0.01) -> float:
    """The largest true-positive rate among ROC points with false-positive rate <= ``fpr``
    (no interpolation between points: what a threshold can actually achieve)."""
    try:
        target = float(fpr)
    except (TypeError, ValueError):
        target = float("nan")
    if not 0.0 <= target <= 1.0:
        raise ValueError(f"fpr must be a rate in [0, 1], got {fpr!r}; e.g. fpr=0.01")
    f, t, _ = roc_curve(scores_pos, scores_neg)
    return float(t[f <= target + 1e-12].max())
