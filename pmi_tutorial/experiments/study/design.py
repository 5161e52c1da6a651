"""The study's design: how the owner's MNIST training split is cut into disjoint parts, and
the settings of a run (book chapter "Beyond the paper").

Per class r, a seeded permutation of the owner's training images is cut into part S (best-epoch
selection for every model), part C (the distiller's queries), part A (the owner's training set;
P = its class-r images) and the rest R, from which independent model k draws its own training
part B_k.  Q is the owner's validation split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..kinds import titles
from ...data import as_index

#: the attacks of the registry (:data:`pmi_tutorial.attacks.ATTACKS`) the committed run applies
#: to every owner; ``StudyConfig.attacks`` takes any name of the registry
ATTACKS = ("finetune", "prune50", "int8", "noise", "distill_same", "probabilities")
NEGATIVES = ("independent", "resplit")  # models that never saw P (the rest: owner-derived)
#: the owner's and every registered attack's title (the old names of ``attack_names.ALIASES``
#: find theirs too)
ATTACK_TITLES = titles()
#: which registry setting a field of :class:`StudyConfig` sets, per attack (the other attacks
#: run with the registry's settings)
CONFIGURED = {
    "finetune": {"epochs": "finetune_epochs", "lr": "finetune_lr", "fraction": "finetune_fraction"},
    "prune50": {"rate": "prune_rate"},
    "int8": {"bits": "quantize_bits"},
    "noise": {"scale": "noise_scale"},
    "distill_same": {"epochs": "distill_epochs"},
    "distill_other": {"epochs": "distill_epochs"},
}


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Design:
    """How the owner's MNIST training split is cut (see the module docstring)."""

    dataset: str = "mnist"
    split_seed: int = 0
    member_per_class: int = 300  # part A: the owner's training set; P = its class-r images
    independent_per_class: int = 300  # part B_k: each independent model's training set
    distill_per_class: int = 500  # part C: the distiller's query images
    select_per_class: int = 100  # part S: best-epoch selection for every model
    nonmember_per_class: int | None = None  # Q: the whole validation class (None) or the first k


@dataclass(frozen=True)
class StudyConfig:
    """Everything that changes the study's numbers (reads back from JSON as lists)."""

    name: str = "cpu"
    design: Design = field(default_factory=Design)
    archs: tuple = ("mlp", "lenet5")
    n_independent: int = 20
    n_owners: int = 3
    epochs: int = 10
    width: float = 1.0
    attacks: tuple = ATTACKS
    finetune_epochs: int = 10  # the paper: 10 epochs, lr 1e-4, on 20% of the validation set
    finetune_lr: float = 1e-4
    finetune_fraction: float = 0.2
    prune_rate: float = 0.5
    quantize_bits: int = 8
    noise_scale: float = 0.1  # w + scale * std(w) * N(0, 1)
    distill_epochs: int = 10
    distill_temperature: float = 1.0
    # the paper's rule (Eq. 13-14) on every model
    trials: int = 100
    ms: tuple = (3, 4, 5)
    ns: tuple = (100, 200, 300)
    rhos: tuple = (0.1, 0.2)
    # the permutation tests (stats.permutation_test, classes="max") at one (m, n)
    statistics: tuple = ("pmi", "outlier", "rbf", "mmd", "directional")
    test_m: int = 3
    test_n: int = 100
    B: int = 200
    test_trials: int = 50  # trials of the trial statistics "pmi" and "outlier"
    rbf_B: int = 100  # the Gaussian kernel costs (mn)^2 per trial: fewer permutations, trials
    rbf_trials: int = 5
    alphas: tuple = (0.05, 0.01)
    seed: int = 0
    resplit: bool = True  # also test each independent model against its own random P


    def to_dict(self) -> dict:
        """The settings as plain JSON data (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))


#: the committed run: 20 independent and 5 owner models per architecture, on a 2-core CPU
CPU = StudyConfig()
#: the quick profile's study and the book's live slice: 3 independent MLPs and 1 owner, no attacks, the cheap statistics
TINY = StudyConfig(name="quick", archs=("mlp",), n_independent=3, n_owners=1, attacks=(),
                   resplit=False,
                   ms=(3,), ns=(100,), statistics=("pmi", "mmd", "directional"), test_trials=20)
#: ``quick`` is also the book's live slice; ``tiny`` is its earlier name
CONFIGS = {"cpu": CPU, "quick": TINY, "tiny": TINY}

REDUCED = (
    "models: 300 training images per class (3,000) instead of 50,000, 10 epochs instead of 300",
    "best epoch chosen on 100 training-split images per class (part S), not on the "
    "validation split",
    "permutation tests at m = 3, n = 100 only, B = 200 permutations (p >= 1/201), "
    "50 trials per permutation for 'pmi' and 'outlier' (the paper's rule uses 100)",
    "'rbf': B = 100, 5 trials, fixed bandwidth sqrt(2c) (the median heuristic costs 2.5x)",
    "20 independent and 3 owner models (each with 6 attacked copies) per architecture: a "
    "false-positive rate is known to about +-0.1, a detection rate per attack in steps of 1/3",
)


# --------------------------------------------------------------------------- the design


@dataclass(frozen=True)
class Parts:
    """Positions into the owner split's training tensors (``split.train_x[...]``)."""

    A: np.ndarray
    S: np.ndarray
    C: np.ndarray
    rest: np.ndarray


def make_parts(split, design: Design) -> Parts:
    """Cut the owner's training split, class by class, into the disjoint parts A, S, C, rest.

    Per class r, a seeded permutation of the class-r positions is cut in order: S, C, A, rest.
    """
    y = split.train_y.numpy()
    rng = np.random.default_rng([design.split_seed, 314159])
    sizes = (design.select_per_class, design.distill_per_class, design.member_per_class)
    out = {"S": [], "C": [], "A": [], "rest": []}
    for r in range(split.num_classes):
        pos = rng.permutation(np.flatnonzero(y == r))
        need = sum(sizes) + design.independent_per_class
        if len(pos) < need:
            raise ValueError(
                f"class {r} has {len(pos)} training images, the design needs {need} "
                "(select + distill + member + independent per class); use smaller parts"
            )
        cuts = np.cumsum((0,) + sizes)
        for name, a, b in zip(("S", "C", "A"), cuts[:-1], cuts[1:]):
            out[name].append(pos[a:b])
        out["rest"].append(pos[cuts[-1]:])
    return Parts(**{k: np.sort(np.concatenate(v)) for k, v in out.items()})


def independent_part(split, parts: Parts, design: Design, k: int) -> np.ndarray:
    """Part B_k: ``independent_per_class`` images per class drawn from the rest R (seed k)."""
    y = split.train_y.numpy()
    rng = np.random.default_rng([design.split_seed, 271828, int(k)])
    picks = [rng.choice(parts.rest[y[parts.rest] == r], design.independent_per_class, replace=False)
             for r in range(split.num_classes)]
    return np.sort(np.concatenate(picks))


def resplit_part(split, parts: Parts, design: Design, k: int) -> np.ndarray:
    """A fresh member part A_k for independent model k: ``member_per_class`` images per class
    drawn (seed k) from A and R minus B_k, i.e. from images model k never used.

    With the owner's fixed P, the 20 independent models are tested against *one* random split
    of the data into P and Q, and their p-values are correlated through it; a permutation
    test is valid over the randomness of that split.  Testing model k against its own random
    A_k makes the (model, split) pairs independent draws, so the rate of rejections estimates
    the false-positive rate over owners, not for one owner's split.
    """
    y = split.train_y.numpy()
    seen = independent_part(split, parts, design, k)
    pool = np.setdiff1d(np.concatenate([parts.A, parts.rest]), seen)
    rng = np.random.default_rng([design.split_seed, 161803, int(k)])
    picks = [rng.choice(pool[y[pool] == r], design.member_per_class, replace=False)
             for r in range(split.num_classes)]
    return np.sort(np.concatenate(picks))


def training_split(split, train_pos, select_pos):
    """A :class:`~pmi_tutorial.data.Split` that trains on ``train_pos`` and picks the best
    epoch on ``select_pos`` (both positions into ``split``'s training tensors)."""
    t, s = as_index(train_pos), as_index(select_pos)
    return replace(split, train_x=split.train_x[t], train_y=split.train_y[t],
                   train_index=split.train_index[train_pos], val_x=split.train_x[s],
                   val_y=split.train_y[s], val_index=split.train_index[select_pos])


def pool_split(split, parts: Parts, design: Design, member_pos=None):
    """The split whose class pools are the study's: training = part A (P), validation = Q.

    ``member_pos`` replaces part A as the member images (see :func:`resplit_part`)."""
    out = training_split(split, parts.A if member_pos is None else member_pos, np.arange(0))
    v = np.arange(len(split.val_y))
    if design.nonmember_per_class is not None:
        y = split.val_y.numpy()
        v = np.sort(np.concatenate([np.flatnonzero(y == r)[:design.nonmember_per_class]
                                    for r in range(split.num_classes)]))
    return replace(out, val_x=split.val_x[as_index(v)], val_y=split.val_y[as_index(v)],
                   val_index=split.val_index[v])



@dataclass
class Study:
    """The owner split, its parts and the pool split of one :class:`Design`."""

    design: Design
    split: object
    parts: Parts
    pools: object  # Split: train = A (P), val = Q

    def class_pools(self, split=None) -> dict:
        """``{r: (P, Q)}`` image pools (of ``split``, default the study's pool split)."""
        from ...data import all_class_pools

        return {r: (p.P, p.Q) for r, p in all_class_pools(split or self.pools).items()}


def prepare(design: Design = Design(), root=None) -> Study:
    """Load the owner split of ``design.dataset`` and cut it (:func:`make_parts`)."""
    from ...data import owner_split

    split = owner_split(design.dataset, seed=design.split_seed, root=root)
    parts = make_parts(split, design)
    return Study(design, split, parts, pool_split(split, parts, design))


def config_from_dict(d: dict) -> StudyConfig:
    """The :class:`StudyConfig` a result file's ``settings`` describe (inverse of ``to_dict``)."""
    d = dict(d)
    d["design"] = Design(**d["design"])
    return StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

