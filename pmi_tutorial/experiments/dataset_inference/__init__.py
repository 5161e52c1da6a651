r"""Dataset Inference on the study's models, beside PMI (book chapter "PMI and Dataset Inference").

The same models as the false-positive study (:mod:`pmi_tutorial.experiments.study`): owner
models trained on part A, their attacked copies, and independent models that never saw part A.
For each architecture and owner k, the owner fits Dataset Inference's membership regressor
(:class:`pmi_tutorial.baselines.dataset_inference.DatasetInference`) on *its own* model, from
``known`` images of part A (members) and ``known`` images of Q (non-members).  Every suspect is
then walked on up to ``max_revealed`` other images of each pool, disjoint from the regressor's,
and tested at each number of revealed samples.  Independent models are tested with owner 0's
regressor and pools: they are the innocent suspects an owner would accuse.

Two p-values are kept per suspect and size: the paper's harmonic mean over ``repeats`` random
draws (what Dataset Inference reports; not itself a valid p-value) and the p-value of the first
draw alone (a single Welch test: approximately valid), which is what calibration is measured on.
Every suspect's record is cached by its key and the settings, so a run resumes.

**Modules**: :mod:`.config` (settings), :mod:`.detector` (the owner's detector, one suspect's
test), :mod:`.on_study` (on the false-positive study's models), :mod:`.paper` (on the
paper-scale study's models), :mod:`.seeds` (the walk's seed study), :mod:`.results` (result
file, recomputed summary, progress lines), :mod:`.summary` (rates and tables); every public
name is importable from here.
"""

from __future__ import annotations

from .config import (
    RESULT_FORMAT, FILE, DIConfig, CPU, QUICK, PAPER, PAPER_TINY, CONFIGS, config_from_dict,
)
from .detector import (
    owner_detector, test_suspect,
)
from .on_study import (
    study_task, run_dataset_inference,
)
from .paper import (
    paper_detector, paper_test, paper_plan, paper_task, paper_key, run_on_paper_study,
)
from .seeds import (
    SEEDS_FORMAT, SEEDS_FILE, seed_study, two_way_anova, seed_summary, seed_z, plot_seed_study,
    seed_table,
)
from .results import (
    build_result, resummarize, report, with_engine, describe,
)
from .summary import (
    summarize, innocent_table, attack_table, paper_comparison,
)

__all__ = [
    'RESULT_FORMAT', 'FILE', 'DIConfig', 'CPU', 'QUICK', 'PAPER', 'PAPER_TINY', 'CONFIGS',
    'config_from_dict', 'owner_detector', 'test_suspect', 'study_task',
    'run_dataset_inference', 'paper_detector', 'paper_test', 'paper_plan', 'paper_task',
    'paper_key', 'run_on_paper_study', 'SEEDS_FORMAT', 'SEEDS_FILE', 'seed_study',
    'two_way_anova', 'seed_summary', 'seed_z', 'plot_seed_study', 'seed_table', 'build_result',
    'resummarize', 'report', 'with_engine', 'describe', 'summarize', 'innocent_table',
    'attack_table', 'paper_comparison',
]
