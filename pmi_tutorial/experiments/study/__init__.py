"""Does PMI accuse innocent models?  The false-positive study (book chapter "Beyond the paper").

The paper claims ownership when :math:`acc_{r_{opt}} - 1/m \\ge \\rho` (Eq. 13-14) and never
measures how often a model that never saw P passes that rule.  The study measures it, in four
modules split by job:

* :mod:`.design` - how the owner's training split is cut (parts A, S, C, R, B_k) and the
  settings of a run (:class:`StudyConfig`, ``CPU``, ``TINY``);
* :mod:`.run` - train (or load) every model, attack the owner's, measure them, write and read
  the result files (``python -m pmi_tutorial study --out pmi_tutorial/results``);
* :mod:`.summary` - the rates: false positives of the paper's rule and of the permutation
  tests, detection of owner-derived models;
* :mod:`.figures` - the chapter's plots and tables.
"""

from .design import (ATTACK_TITLES, ATTACKS, CONFIGS, CPU, NEGATIVES, REDUCED, TINY, Design,
                     Parts, Study, StudyConfig, config_from_dict, independent_part, make_parts,
                     pool_split, prepare, resplit_part, training_split)
from .figures import (plot_acc_distribution, plot_paper_rule_fpr, plot_pvalue_hist, plot_roc,
                      verdict_table)
from .run import (FILES, RESULT_FORMAT, RESULT_VERSION, attacked, independent_model,
                  iter_models, load_results, measure, measured, owner_model, result_files,
                  resummarize, run_study, write_results)
from .summary import (NAIVE_RATES, RULE_RATES, cell_key, cells, detection_rate, naive_pvalue, naive_rate,
                      paper_rule_accuses, paper_rule_fpr, parse_cell_key, record_acc, rejection_rate,
                      rejects, rule_cell, rule_rate, summarize_records, test_rate)

__all__ = [
    "ATTACK_TITLES", "ATTACKS", "CONFIGS", "CPU", "NEGATIVES", "REDUCED", "TINY", "Design", "Parts",
    "Study", "StudyConfig", "config_from_dict", "independent_part", "make_parts", "pool_split",
    "prepare", "resplit_part", "training_split", "plot_acc_distribution", "plot_paper_rule_fpr",
    "plot_pvalue_hist", "plot_roc", "verdict_table", "FILES", "RESULT_FORMAT", "RESULT_VERSION",
    "attacked", "independent_model", "iter_models", "load_results", "measure", "measured",
    "owner_model", "result_files", "resummarize", "run_study", "write_results", "naive_pvalue",
    "paper_rule_accuses", "paper_rule_fpr", "rejection_rate", "summarize_records", "NAIVE_RATES",
    "RULE_RATES", "cell_key", "cells", "naive_rate", "parse_cell_key", "record_acc", "rejects",
    "rule_cell", "rule_rate", "test_rate", "detection_rate",
]
