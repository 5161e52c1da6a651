r"""The owner's calibrated tests, by the names the chapters use: closed-form rank and tail tests,
the directional permutation test.

Chapter "A calibrated test", section "A p-value without a floor".

* :func:`~pmi_tutorial.stats.closed_form.closed_form_test`: a one-sided Mann-Whitney U (rank-sum) test per class of the
  per-sample confidence at the true class, members P' against non-members Q, and one rule fixed
  in advance that combines the classes (Stouffer by default, Fisher as an option).  Its
  p-value has no floor: it can be 1e-30 or smaller when the evidence is that strong, and it is
  computed in log space (``log10_pvalue``) so that it never underflows to 0.  With
  ``test="tail"``: :func:`~pmi_tutorial.stats.closed_form.tail_count_test`, the exact count of members among the least
  confident samples.
* :func:`~pmi_tutorial.stats.directional.directional_test`: the directional permutation test, B re-splits in O(N log N).

The tests live in :mod:`pmi_tutorial.stats` (:mod:`~pmi_tutorial.stats.closed_form`,
:mod:`~pmi_tutorial.stats.directional`), the one home of significance; this module gives them
the owner's names.  The pools file (:class:`~pmi_tutorial.pools_file.OwnerPools`, :func:`~pmi_tutorial.pools_file.save_pools`, :func:`~pmi_tutorial.pools_file.load_pools`)
lives in :mod:`pmi_tutorial.pools_file`, the verification of a suspect
(:func:`~pmi_tutorial.verification.verify_ownership`) in :mod:`pmi_tutorial.verification`; their names stay importable
from here too.
"""

from __future__ import annotations

from .stats.closed_form import (COMBINES, LOG10, TAIL, ClosedFormResult, RankSumResult,  # noqa: F401
                                class_scores, closed_form_from_scores, closed_form_test,
                                combine_log10, midranks, rank_sum_test, tail_count_test,
                                tail_sum_log10)
from .stats.directional import (DirectionalResult, cyclic_subset_sums,  # noqa: F401
                                directional_from_scores, directional_test)

__all__ = ["COMBINES", "LOG10", "TAIL", "ClosedFormResult", "RankSumResult", "class_scores",
           "closed_form_from_scores", "closed_form_test", "combine_log10", "midranks",
           "rank_sum_test", "tail_count_test", "tail_sum_log10", "DirectionalResult",
           "cyclic_subset_sums", "directional_from_scores", "directional_test"]


# --------------------------------------------------------------------------- the old names

#: names that moved to :mod:`pmi_tutorial.pools_file` and :mod:`pmi_tutorial.verification`;
#: still importable from here (lazily: those modules import this one, never the reverse)
_MOVED = {
    "OwnerPools": "pools_file", "save_pools": "pools_file", "load_pools": "pools_file",
    "pools_from_split": "pools_file", "POOLS_FORMAT": "pools_file", "POOLS_VERSION": "pools_file",
    "verify_ownership": "verification", "OwnershipResult": "verification",
    "to_log_probabilities": "verification", "OUTPUTS": "verification",
}


def __getattr__(name):
    if name in _MOVED:
        from importlib import import_module

        return getattr(import_module(f".{_MOVED[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
