"""The paper-scale study's settings: :class:`PaperDesign`, :class:`PaperConfig`, the configurations ``paper`` and ``paper-tiny``, the result format and the attacks it applies."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


from ... import files as _files
from ..kinds import titles


RESULT_FORMAT = "pmi-tutorial-paper-study"
RESULT_VERSION = _files.RESULT_FORMATS[RESULT_FORMAT]
FILES = {"records": "paper_study_records.json", "summary": "paper_study_summary.json"}
ATTACKS = ("finetune", "prune50", "prune90", "int8", "fp16", "noise", "distill_same",
           "distill_other", "probabilities")
FEATURES = ("logits", "logprob", "prob")
NEGATIVE = "innocent"
ATTACK_TITLES = titles(ATTACKS)  # the owner's and the attacks' titles, from the registry
OTHER = {"mlp": "lenet5", "lenet5": "mlp"}


@dataclass(frozen=True)
class PaperDesign:
    """How the owner's MNIST split is used (see the module docstring)."""

    dataset: str = "mnist"
    split_seed: int = 0
    reveal_per_class: int = 1000  # P' of the owner's draw
    reveal_seed: int = 0
    innocent_per_class: int = 2500  # each innocent model's training images (outside P')
    select_per_class: int = 200  # each innocent model's best-epoch selection images
    distill_per_class: int = 2000  # the extractor's query images (outside P' and Q)
    own_q_per_class: int = 1000  # Q_k of an innocent model's own draw


@dataclass(frozen=True)
class PaperConfig:
    """Everything that changes the study's numbers; ``archs``, ``n_innocent`` and ``epochs``
    are aligned (one entry per architecture)."""

    name: str = "paper"
    design: PaperDesign = field(default_factory=PaperDesign)
    archs: tuple = ("mlp", "lenet5")
    n_innocent: tuple = (50, 20)
    n_owners: int = 5
    epochs: tuple = (60, 20)
    attacks: tuple = ATTACKS
    finetune_epochs: int = 10  # the paper: 10 epochs, lr 1e-4, on 20% of the validation split
    finetune_lr: float = 1e-4
    finetune_fraction: float = 0.2
    noise_scale: float = 0.1  # w + scale * std(w) * N(0, 1)
    distill_epochs: int = 10
    revealed: tuple = (10, 30, 100, 300, 1000)
    features: tuple = FEATURES
    m: int = 3
    n: int = 100  # samples per mini-dataset (min(n, revealed))
    trials: int = 100  # the paper's acc_r
    B: int = 999  # permutations of every permutation test
    perm_trials: int = 10  # trials per permutation of "calibrated" and "outlier" (the rule: 100)
    perm_all_features_at: tuple = (1000,)  # elsewhere "calibrated"/"outlier" on logits only
    tail: float = 0.05  # the tail test's share of least confident pooled samples (fixed in advance)
    rhos: tuple = (0.1, 0.2)
    alphas: tuple = (0.01, 0.05)
    seed: int = 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def banner(self) -> str:
        ep = ", ".join(f"{a} {e}" for a, e in zip(self.archs, self.epochs))
        return (f"paper-scale study ({self.name}): MNIST 50,000 / 20,000 split, Adam 1e-3, batch "
                f"64, best-validation epoch of {ep} epochs (the paper: 300); "
                f"{', '.join(f'{k} innocent {a}' for a, k in zip(self.archs, self.n_innocent))}, "
                f"{self.n_owners} owners per architecture x {len(self.attacks)} attacks; "
                f"revealed {list(self.revealed)} per class; B = {self.B}")

    def reduced(self) -> list:
        """What differs from the paper's setting, in plain words (written into the result file)."""
        ep = ", ".join(f"{a} {e}" for a, e in zip(self.archs, self.epochs))
        d = self.design
        return [f"epochs: {ep} instead of 300 (best-validation epoch kept, as in the paper)",
                f"innocent models train on {d.innocent_per_class * 10:,} images (training split "
                f"minus P') and choose their epoch on {d.select_per_class * 10:,} others, where the "
                "owner trains on all 50,000 and chooses on the validation split",
                f"the calibrated acc_r and the outlier test: {self.perm_trials} trials per re-split "
                f"(the paper's rule: {self.trials}), B = {self.B}; on logits at every number "
                f"revealed, on all three features at {list(self.perm_all_features_at)}",
                f"distillation: {self.distill_epochs} epochs on {d.distill_per_class * 10:,} "
                "training images outside P'"]


PAPER = PaperConfig()
TINY = PaperConfig(
    name="paper-tiny", design=PaperDesign(reveal_per_class=30, innocent_per_class=60, select_per_class=20,
                                    distill_per_class=30, own_q_per_class=60),
    archs=("mlp",), n_innocent=(2,), n_owners=1, epochs=(1,), finetune_epochs=1, distill_epochs=1,
    revealed=(10, 30), trials=10, B=19, perm_trials=3, perm_all_features_at=(30,), n=20)
CONFIGS = {c.name: c for c in (PAPER, TINY)}


def config_from_dict(d: dict) -> PaperConfig:
    d = dict(d)
    d["design"] = PaperDesign(**d["design"])
    return PaperConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
