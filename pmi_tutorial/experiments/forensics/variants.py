"""The readings of the paper that the forensics compare: the open choices, one
:class:`Variant` per reading, the one-at-a-time set and the variant names (paper Sections III-IV;
book chapter "Reproducing Tables I and II")."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

import numpy as np

FEATURES = ("logits", "log_probs", "probs", "penultimate")
NORMALIZATIONS = ("joint", "none", "block", "pool")
DISTANCES = ("sqrt", "mmd2", "abs", "biased", "unpaired")
DECISIONS = ("single", "complete", "average", "outlier")
TIES = ("both", "first", "second")
KEPT = ("best", "last")
SPLITS = ("random", "stratified", "sequential")
DRAWS = ("paper", "overlap", "replace")

_DESCRIBE = {
    "features": {
        "logits": "logits (last layer, no softmax)",
        "log_probs": "log-probabilities (log-softmax)",
        "probs": "probabilities (softmax)",
        "penultimate": "penultimate layer (input of the last linear layer)",
    },
    "normalization": {
        "joint": "joint over the m*n rows of a trial (Eq. 5-6)",
        "none": "none",
        "block": "per mini-dataset",
        "pool": "statistics of the whole pool P and Q of class r",
    },
    "distance": {
        "sqrt": "sqrt(max(MMD^2_u, 0)) (Eq. 10)",
        "mmd2": "MMD^2_u, negative values kept",
        "abs": "sqrt(|MMD^2_u|)",
        "biased": "biased MMD^2 (Eq. 8 with empirical means)",
        "unpaired": "unbiased MMD^2 with all cross pairs (no x_i-y_i pairing)",
    },
    "decision": {
        "single": "single linkage (Eq. 12)",
        "complete": "complete linkage",
        "average": "average linkage",
        "outlier": "outlier: largest summed distance to the others",
    },
    "tie": {
        "both": "equal final clusters: any of the m",
        "first": "equal final clusters: the first one (|G1| <= |G2|)",
        "second": "equal final clusters: the second one",
    },
    "kept": {"best": "best-validation epoch", "last": "last epoch (300)"},
    "split": {
        "random": "random (seeded permutation)",
        "stratified": "stratified by class",
        "sequential": "sequential (first 50,000 of train+test)",
    },
    "draws": {
        "paper": "n from P, n(m-1) distinct from Q",
        "overlap": "each non-member block drawn on its own (blocks may share samples)",
        "replace": "with replacement within a trial",
    },
}


@dataclass(frozen=True)
class Variant:
    """One reading of the paper: an answer to each choice it leaves open.

    The defaults are the package's reading (``data.owner_split``, ``fingerprint.run``).
    """

    features: str = "logits"
    normalization: str = "joint"
    distance: str = "sqrt"
    decision: str = "single"
    tie: str = "both"
    kept: str = "best"
    split: str = "random"
    draws: str = "paper"
    train_seed: int = 0

    def __post_init__(self):
        for f, allowed in (("features", FEATURES), ("normalization", NORMALIZATIONS),
                           ("distance", DISTANCES), ("decision", DECISIONS), ("tie", TIES),
                           ("kept", KEPT), ("split", SPLITS), ("draws", DRAWS)):
            value = getattr(self, f)
            if value not in allowed:
                raise ValueError(
                    f"unknown {f} {value!r} in a forensics variant; use one of "
                    f"{', '.join(map(repr, allowed))}"
                )
        if isinstance(self.train_seed, bool) or not isinstance(self.train_seed, (int, np.integer)) \
                or self.train_seed < 0:
            raise ValueError(f"train_seed must be a non-negative integer, got {self.train_seed!r}")

    def changes(self) -> dict:
        """The fields that differ from the paper's reading: ``{field: value}``."""
        base = Variant()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}

    def describe(self) -> str:
        """One line naming what differs from the baseline (``baseline`` for the default)."""
        ch = self.changes()
        if not ch:
            return "baseline (the package's reading)"
        parts = []
        for k, v in ch.items():
            parts.append(f"training seed {v}" if k == "train_seed" else f"{k}: {_DESCRIBE[k][v]}")
        return "; ".join(parts)

    def model_key(self) -> tuple:
        """What the trained weights depend on."""
        return (self.kept, self.split, self.train_seed)

    def to_dict(self) -> dict:
        return asdict(self)


BASELINE = Variant()


def one_at_a_time() -> dict:
    """The variants that change one choice of the baseline: ``{name: Variant}``, baseline first.

    Names read ``field=value`` (``baseline`` for the package's reading).  The variants that
    need a model of their own (another split, another training seed) come last.
    """
    out = {"baseline": BASELINE}
    for f, allowed in (("features", FEATURES), ("normalization", NORMALIZATIONS),
                       ("distance", DISTANCES), ("kept", KEPT), ("decision", DECISIONS),
                       ("tie", TIES), ("draws", DRAWS), ("split", SPLITS)):
        for value in allowed:
            if value != getattr(BASELINE, f):
                out[f"{f}={value}"] = replace(BASELINE, **{f: value})
    out["train_seed=1"] = replace(BASELINE, train_seed=1)
    return out


def variant_name(v: Variant) -> str:
    """``baseline``, or the changed fields as ``field=value`` joined by ``+``."""
    ch = v.changes()
    return "+".join(f"{k}={val}" for k, val in ch.items()) or "baseline"


#: the fields a combination search may change.  Not the draws: the paper states them ("n
#: different samples", "n(m-1) different samples"); and not the training seed.
SEARCH_FIELDS = ("features", "normalization", "distance", "decision", "tie", "kept", "split")
