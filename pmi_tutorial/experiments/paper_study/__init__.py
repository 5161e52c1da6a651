r"""The false-positive study at the paper's scale (chapter "Beyond the paper").

**Design** (MNIST, the paper's split: 50,000 training / 20,000 validation images,
:func:`pmi_tutorial.data.owner_split`):

* **Owners** (MLP and LeNet-5, several seeds) train on the whole training split with the paper's
  recipe (Adam, lr 1e-3, batch 64, the epoch of best validation accuracy), for fewer epochs than
  the paper's 300 (the number is in the banner and the result file).
* The owner **reveals** P' = ``reveal_per_class`` training images per class (a seeded random
  draw, in random order: revealing k per class means the first k) and uses its validation
  images as Q.  This is "the owner's single draw".
* **Innocent models** train on a random ``innocent_per_class`` images per class of the training
  split minus P' (own seed, own subset), and pick their best epoch on ``select_per_class``
  further images of it: they never see P' or Q.  Each is tested against the owner's draw and
  against its own draw (:func:`own_draw`): a fresh random split of the images it never saw
  (training images it did not use and the validation split) into P'_k and Q_k.  A p-value's
  guarantee holds over the draw of the pools.  Because each model's split is its own random
  assignment, the own-draw p-values are independent across models given the models, and each
  is uniform under the null; the owner's single draw is shared, so those p-values move
  together.
* **Attacked copies** of every owner (:data:`ATTACKS`): fine-tuning as in the paper (its 20% of
  the validation split leaves Q), pruning 50% and 90%, int8 and fp16 weights, weight noise,
  distillation into the same and into the other architecture on ``distill_per_class``
  training images per class outside P' (never Q), and access to probabilities only.

**Measurements** (:func:`measure`) for every model and draw, at each number of revealed members
per class in ``revealed``: the closed-form test (:func:`pmi_tutorial.stats.closed_form.closed_form_test`),
the directional permutation test (:func:`pmi_tutorial.stats.directional.directional_test`, as
verify_ownership reports it), and per feature (logits, log-probabilities, probabilities) the
paper's acc_r (Eq. 13-14), its calibrated version (the permutation test of acc_r,
``stats.permutation_test(..., "pmi")``) and the outlier variant.  Models and measurements are
cached (``training.cache_folder() / "paper_study"``), each written atomically, so
``python -m pmi_tutorial study --config paper`` resumes where it stopped.  The summary is
:mod:`pmi_tutorial.experiments.paper_summary`.

**Modules**: :mod:`.config` (settings, result format), :mod:`.world` (the split and the draws),
:mod:`.models` (owners, innocent models, attacked copies), :mod:`.measurements` (what is
measured, the plan of suspects), :mod:`.runs` (runner tasks, budget, result files); every
public name is importable from here.
"""

from __future__ import annotations

from .config import (
    RESULT_FORMAT, RESULT_VERSION, FILES, ATTACKS, FEATURES, NEGATIVE, ATTACK_TITLES, OTHER,
    PaperDesign, PaperConfig, PAPER, TINY, CONFIGS, config_from_dict,
)
from .world import (
    World, prepare, innocent_parts, OWN_DRAW, own_draw_positions, distill_part, owner_draw,
    own_draw,
)
from .models import (
    model_folder, model_key, owner_model, innocent_model, attacked,
)
from .measurements import (
    feature_views, measure, measured, plan, iter_records, attack_settings,
)
from .runs import (
    budget, EPOCH_CPU_SECONDS_PER_10K, a_priori_budget, result_files, write_results,
    load_results, resummarize, cached_world, train_task, measure_task, experiment, run,
)

__all__ = [
    'RESULT_FORMAT', 'RESULT_VERSION', 'FILES', 'ATTACKS', 'FEATURES', 'NEGATIVE',
    'ATTACK_TITLES', 'OTHER', 'PaperDesign', 'PaperConfig', 'PAPER', 'TINY', 'CONFIGS',
    'config_from_dict', 'World', 'prepare', 'innocent_parts', 'OWN_DRAW', 'own_draw_positions',
    'distill_part', 'owner_draw', 'own_draw', 'model_folder', 'model_key', 'owner_model',
    'innocent_model', 'attacked', 'feature_views', 'measure', 'measured', 'plan',
    'iter_records', 'attack_settings', 'budget', 'EPOCH_CPU_SECONDS_PER_10K',
    'a_priori_budget', 'result_files', 'write_results', 'load_results', 'resummarize',
    'cached_world', 'train_task', 'measure_task', 'experiment', 'run',
]
