r"""Table I with controls: owners under several training seeds beside *innocent* models that
never saw the members (book chapter "Reproducing Tables I and II", forensics section).

The forensics of Table I (:mod:`pmi_tutorial.experiments.forensics`) found that one reading
of the paper, penultimate-layer features with a *sequential* owner's split (the first 50,000
images of train + test are the training part, so the non-members Q hold the whole official
test set, written by other people), brings our Table I closest to the paper's.  Two questions
decide what that means:

1. Does it hold for other owner training seeds and other draws than those that chose it?
2. Does an **innocent** model, one that never saw P, reach the same numbers under the same
   split, features and protocol?  Then the signal is the shift between P and Q, not membership.

**The design.**  For each split kind (``"stratified"``: a class-stratified random split, the
control; ``"sequential"``: the writer shift) one owner's split of MNIST is drawn (split seed
``split_seed``).  A seeded fifth of every class of its training part is *held out*: P' (the
held-out members).  Owner k trains on the whole training part (P' included) from training seed
k; innocent k trains on the training part *without* P' from seed ``innocent_seed + k``.  Both
are trained the same way (same architecture, epochs, optimizer, batch size, learning rate, the
same validation part for the best epoch) and measured the same way: Table I (every m x n cell,
t trials per class, :func:`pmi_tutorial.experiments.forensics.cell`) on the pools P' and Q of
every class, with the chosen reading of the forensics (its ``best`` variant, the split replaced
by the split kind).  The owners are also measured on the whole P (the paper's Table I).

Per model and cell the paper's two criteria are applied: Eq. 13-14,
:math:`acc_{r_{opt}} - 1/m \ge \rho`, and Eq. 15, :math:`\overline{acc_r} - 1/m \ge \rho`.
The search path of the forensics is re-scored on owners and draws disjoint from those that
chose it (training seeds other than ``search_train_seeds``, draw seeds ``draw_seeds``).

It runs on :mod:`pmi_tutorial.experiments.runner` (stage 1 trains, stage 2 measures; every
model and record cached by its settings, so a killed run resumes).  The runner runs a stage to
its end before the next, so :func:`run_controls` runs the plan in *rounds*: each round adds
innocent k and owner k of one split kind (sequential first), and the result file is rewritten
after every round, ``"complete": false`` until the last.

The package: :mod:`.design` (the settings and each split kind's plan), :mod:`.tasks` (the
runner plan: training and measuring tasks), :mod:`.summary` (the claims, the summary, the result
file, :func:`run_controls` and the chapter's tables).  Every public name is importable from here.
"""

from . import design, summary, tasks
from .design import (CHOSEN, CONFIGS, LENET5, MLP, RESULT_FORMAT, RESULT_NAME, ROLES, SEARCH_PATH,
                     SPLIT_KINDS, TINY, ControlsConfig, Plan, cached_plan, config_from_dict, dataset,
                     make_plan, parse_variant, plan_split)
from .summary import (claims, committed, format_table, group, read, rescore_table, rescored_distance,
                      result_dict, result_path, run_controls, summarize)
from .tasks import (describe, experiment, feature_pools, measure_settings, measure_task, measurements,
                    model_folder, model_key, model_settings, steps, train_task, trained)

__all__ = [
    "CHOSEN", "CONFIGS", "LENET5", "MLP", "RESULT_FORMAT", "RESULT_NAME", "ROLES", "SEARCH_PATH",
    "SPLIT_KINDS", "TINY", "ControlsConfig", "Plan", "cached_plan", "claims", "committed",
    "config_from_dict", "dataset", "describe", "design", "experiment", "feature_pools",
    "format_table", "group", "make_plan", "measure_settings", "measure_task", "measurements",
    "model_folder", "model_key", "model_settings", "parse_variant", "plan_split", "read",
    "rescore_table", "rescored_distance", "result_dict", "result_path", "run_controls", "steps",
    "summarize", "summary", "tasks", "train_task", "trained",
]
