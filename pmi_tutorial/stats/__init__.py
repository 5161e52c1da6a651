r"""Significance in one place: every p-value of the book and of ``verify``.

* :mod:`.pvalues`: the p-value arithmetic every test shares: the naive binomial test and
  Bonferroni, the one permutation p-value (k + 1)/(B + 1), the one rejection rule (p <= alpha),
  the Clopper-Pearson interval of every rate;
* :mod:`.permutation`: the permutation test of "this model was trained on P" and its registry
  of statistics (:data:`STATISTICS`: "pmi", "outlier", "rbf", "mmd", "directional"), exact under
  the null that P and Q are exchangeable for the model (book chapter "Beyond the paper");
* :mod:`.closed_form`: the closed-form rank and tail tests per class and their combination
  across classes, without a floor;
* :mod:`.directional`: the directional permutation test in O(N log N) per class;
* :mod:`.roc`: ROC curves of per-sample membership scores (chapter "Membership inference").

Every public name is importable from here: ``from pmi_tutorial import stats;
stats.permutation_test(...)``.
"""

from .closed_form import (COMBINES, TAIL, ClosedFormResult, RankSumResult, class_scores,
                          closed_form_from_scores, closed_form_test, combine_log10, midranks,
                          rank_sum_test, tail_count_test, tail_sum_log10)
from .directional import DirectionalResult, cyclic_subset_sums, directional_from_scores, directional_test
from .permutation import (CONFIDENCES, STATISTICS, PermutationResult, Statistic, confidence_scores,
                          log_odds, permutation_test, tie_share)
from .pvalues import (REJECT_SLACK, TIES_RTOL, binomial_pvalue, bonferroni, clopper_pearson,
                      permutation_pvalue, rejects, rejects_log10)
from .roc import auc, roc_curve, tpr_at_fpr

__all__ = [
    "COMBINES", "TAIL", "ClosedFormResult", "RankSumResult", "class_scores",
    "closed_form_from_scores", "closed_form_test", "combine_log10", "midranks", "rank_sum_test",
    "tail_count_test", "tail_sum_log10", "DirectionalResult", "cyclic_subset_sums",
    "directional_from_scores", "directional_test", "CONFIDENCES", "STATISTICS",
    "PermutationResult", "Statistic", "confidence_scores", "log_odds", "tie_share", "permutation_test", "REJECT_SLACK",
    "TIES_RTOL", "binomial_pvalue", "bonferroni", "clopper_pearson", "permutation_pvalue",
    "rejects", "rejects_log10", "auc", "roc_curve", "tpr_at_fpr",
]
