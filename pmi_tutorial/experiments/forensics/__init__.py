r"""Reproduction forensics: which reading of the paper gives its Table I (paper Sections III-IV;
book chapter "Reproducing Tables I and II").

The paper leaves several choices open or ambiguous: what exactly the features are ("the last
layer without softmax"), how Eq. 5-6 normalize them, whether the distance is the square root of
the unbiased estimate (Eq. 10), which epoch's weights are kept, how the owner's split is drawn,
how a tie between the two final clusters is broken, whether clustering or outlier detection
decides.  A :class:`Variant` fixes one answer to each question; :func:`run` recomputes the 18
cells of Table I (m in {3, 4, 5} x n in {100, 200, 300}, MLP and LeNet-5) for each variant and
several seeds of the random draws, resumably, into one result file with provenance, and
:func:`compare` sets every variant beside the paper's numbers.

Features are computed once per model (all four kinds from one forward pass); every trial of a
class is then batched tensor arithmetic (:func:`class_guesses`).  For the paper's reading the
decisions equal those of :func:`pmi_tutorial.fingerprint.class_accuracy` trial by trial.

The package, one step a module: :mod:`.variants` (the open choices, :class:`Variant`),
:mod:`.owner` (the owner's split and models under each reading), :mod:`.measure` (the feature
kinds and one cell, batched), :mod:`.search` (:func:`run`: every variant, then the combination
search, resumably), :mod:`.summary` (the comparison with the paper, the committed result).
Every public name is importable from here.
"""

from .measure import (CHUNK_ELEMENTS, block_distances, cell, class_guesses, draw, feature_kinds,
                      linkage_guesses, normalize_blocks, pool_feature_kinds)
from .owner import CachedModels, model_path, owner_model, owner_split, split_indices
from .search import run
from .summary import (RESULT_FORMAT, RESULT_NAME, committed, compare, format_cells,
                      format_variant_table, paper_cells, provenance_text, result_path, variant_table)
from .variants import (BASELINE, DECISIONS, DISTANCES, DRAWS, FEATURES, KEPT, NORMALIZATIONS,
                       SEARCH_FIELDS, SPLITS, TIES, Variant, one_at_a_time, variant_name)

__all__ = [
    "BASELINE", "CHUNK_ELEMENTS", "CachedModels", "DECISIONS", "DISTANCES", "DRAWS", "FEATURES",
    "KEPT", "NORMALIZATIONS", "RESULT_FORMAT", "RESULT_NAME", "SEARCH_FIELDS", "SPLITS", "TIES",
    "Variant", "block_distances", "cell", "class_guesses", "committed", "compare", "draw",
    "feature_kinds", "format_cells", "format_variant_table", "linkage_guesses", "model_path",
    "normalize_blocks", "one_at_a_time", "owner_model", "owner_split", "paper_cells",
    "pool_feature_kinds", "provenance_text", "result_path", "run", "split_indices", "variant_name",
    "variant_table",
]
