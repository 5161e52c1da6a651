"""The design of the controls: the settings (:class:`ControlsConfig`), the variant names,
and each split kind's plan (the owners' training part, P', the innocents' training part)."""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from ... import _validate as V
from .. import forensics as FZ

RESULT_FORMAT = "pmi-tutorial-table1-controls"
RESULT_NAME = "table1_controls"
SPLIT_KINDS = ("sequential", "stratified")
ROLES = ("innocent", "owner")
#: the forensics' chosen reading (``forensics_paper.json``: ``best``), without its split
CHOSEN = "features=penultimate+tie=second+kept=last"
#: the forensics' search path (``forensics_paper.json``: ``search.path``), re-scored here
SEARCH_PATH = (
    "split=sequential",
    "features=log_probs+split=sequential",
    "features=penultimate+split=sequential",
    "features=penultimate+normalization=pool+split=sequential",
    "features=penultimate+normalization=pool+tie=second+split=sequential",
    "features=penultimate+normalization=pool+tie=second+kept=last+split=sequential",
    "features=penultimate+tie=second+kept=last+split=sequential",
)


def parse_variant(name: str, **changes) -> FZ.Variant:
    """A forensics variant from its name (``field=value`` joined by ``+``; ``baseline``)."""
    spec = {}
    if name != "baseline":
        for part in name.split("+"):
            key, sep, value = part.partition("=")
            if not sep or key not in {f for f in FZ.Variant.__dataclass_fields__}:
                raise ValueError(f"bad variant name {name!r}: write field=value joined by '+', "
                                 "e.g. features=penultimate+kept=last")
            spec[key] = int(value) if key == "train_seed" else value
    return FZ.Variant(**{**spec, **changes})


@dataclass(frozen=True)
class ControlsConfig:
    """What the controls run: models, training, the held-out members, the measurement."""

    name: str = "mlp"
    arch: str = "mlp"
    splits: tuple = SPLIT_KINDS
    n_owners: int = 5
    n_innocents: int = 5
    epochs: int = 300
    width: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    #: images per class kept of the training / validation part (None: all, the paper's split)
    train_per_class: int | None = None
    val_per_class: int | None = None
    split_seed: int = 0
    heldout_fraction: float = 0.2
    heldout_seed: int = 0
    innocent_seed: int = 1000
    variant: str = CHOSEN
    trials: int = 100
    ms: tuple = (3, 4, 5)
    ns: tuple = (100, 200, 300)
    draw_seeds: tuple = (10, 11, 12)
    rhos: tuple = (0.05, 0.1, 0.2)
    #: the training and draw seeds the forensics' search was scored on (re-scoring avoids them)
    search_train_seeds: tuple = (0,)
    search_draw_seeds: tuple = (0, 1, 2)
    rescore: tuple = SEARCH_PATH
    reduced: tuple = field(default_factory=tuple)

    def __post_init__(self):
        for s in self.splits:
            V.check_choice(s, SPLIT_KINDS, "split")
        for name in ("n_owners", "n_innocents", "epochs", "batch_size", "trials"):
            V.check_positive_int(getattr(self, name), name)
        if not 0 < self.heldout_fraction < 1:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction!r}")
        if set(self.draw_seeds) & set(self.search_draw_seeds):
            raise ValueError(f"draw_seeds {self.draw_seeds} must be disjoint from the search's "
                             f"{self.search_draw_seeds}")
        parse_variant(self.variant)
        for v in self.rescore:
            parse_variant(v)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


MLP = ControlsConfig()
TINY = ControlsConfig(
    name="tiny", n_owners=2, n_innocents=2, epochs=2, train_per_class=60, val_per_class=40,
    trials=10, ms=(3,), ns=(5,), draw_seeds=(10,),
    rescore=("split=sequential", "features=penultimate+tie=second+kept=last+split=sequential"),
    reduced=("60 training and 40 validation images per class", "2 epochs", "t = 10, m = 3, n = 5"))
#: LeNet-5 under the same plan (about 71 minutes per model on one CPU core at 300 epochs);
#: the reading was chosen on the MLP
LENET5 = ControlsConfig(name="lenet5", arch="lenet5")
CONFIGS = {"mlp": MLP, "lenet5": LENET5, "tiny": TINY}


def config_from_dict(d: dict) -> ControlsConfig:
    return ControlsConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --------------------------------------------------------------------------- the plan's data


@dataclass(frozen=True, eq=False)
class Plan:
    """The index sets of one split kind, into the pooled dataset (sorted int64 arrays)."""

    split: str
    train: np.ndarray  # the owners' training part
    val: np.ndarray  # the validation part: Q, and the best-epoch choice of every model
    heldout: np.ndarray  # P', the held-out members (a subset of ``train``)
    innocent_train: np.ndarray  # ``train`` without P'


def _per_class(index, labels, k, rng):
    if k is None:
        return index
    keep = [rng.permutation(index[labels[index] == r])[:k] for r in np.unique(labels[index])]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def make_plan(cfg: ControlsConfig, split: str, labels) -> Plan:
    """The owners' split, P' and the innocents' training part of one split kind."""
    labels = np.asarray(labels)
    train, val = FZ.split_indices("mnist", split, cfg.split_seed, labels)
    rng = np.random.default_rng([cfg.split_seed, 7])
    train = _per_class(train, labels, cfg.train_per_class, rng)
    val = _per_class(val, labels, cfg.val_per_class, rng)
    rng = np.random.default_rng([cfg.heldout_seed, 11])
    held = []
    for r in np.unique(labels[train]):
        of_r = train[labels[train] == r]
        held.append(rng.permutation(of_r)[: int(round(cfg.heldout_fraction * len(of_r)))])
    heldout = np.sort(np.concatenate(held)).astype(np.int64)
    return Plan(split, train, val, heldout, np.setdiff1d(train, heldout).astype(np.int64))


@functools.lru_cache(maxsize=4)
def dataset(root):
    """MNIST (train and test pooled), loaded once per data folder."""
    from ... import data

    return data.load_dataset("mnist", root)


@functools.lru_cache(maxsize=8)
def cached_plan(cfg: ControlsConfig, split: str, root=None) -> Plan:
    return make_plan(cfg, split, dataset(root).labels)


def plan_split(train, val, root):
    """A :class:`pmi_tutorial.data.Split` of the pooled MNIST images at the indices ``train``
    and ``val`` (a model's training and validation parts)."""
    import torch

    from ... import data

    ds = dataset(root)
    return data.Split(
        name="mnist", seed=0,
        train_x=data.normalize_images(ds.images[train], "mnist"),
        train_y=torch.from_numpy(ds.labels[train].astype(np.int64)),
        val_x=data.normalize_images(ds.images[val], "mnist"),
        val_y=torch.from_numpy(ds.labels[val].astype(np.int64)),
        train_index=train, val_index=val, num_classes=10, input_shape=(1, 28, 28))
