"""The paper's experiments and the study beyond them (Section IV; chapters "Reproducing Tables I
and II", "Robustness" and "Beyond the paper").

* :mod:`.tables` - the resumable runner of Tables I-IV and Figure 2 (:func:`reproduce`,
  ``python -m pmi_tutorial reproduce ...``); its public names are re-exported here;
* :mod:`.report` - what a chapter shows of a result file: provenance, the comparison with the
  paper, Figure 2;
* :mod:`.study` - the false-positive study (``python -m pmi_tutorial study ...``).
"""

from . import report, study
from .tables import (EXPERIMENTS, MODEL_TITLES, RESULT_FORMAT, RESULT_VERSION, TABLE_COLUMNS, Spec,
                     check_table, committed_table, feasible_classes, format_table,
                     get_spec, load_result, paper_table, plan, reproduce, result_path)

__all__ = [
    "report", "study", "EXPERIMENTS", "MODEL_TITLES", "RESULT_FORMAT", "RESULT_VERSION",
    "TABLE_COLUMNS", "Spec", "check_table", "committed_table", "feasible_classes",
    "format_table", "get_spec", "load_result", "paper_table", "plan", "reproduce", "result_path",
]
