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
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import _validate as V
from .. import files as F
from ..files import digest
from . import forensics as FZ
from . import runner
from .runner import Experiment, Task

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
def _dataset(root):
    from .. import data

    return data.load_dataset("mnist", root)


@functools.lru_cache(maxsize=8)
def cached_plan(cfg: ControlsConfig, split: str, root=None) -> Plan:
    return make_plan(cfg, split, _dataset(root).labels)


def _split(train, val, root):
    import torch

    from .. import data

    ds = _dataset(root)
    return data.Split(
        name="mnist", seed=0,
        train_x=data.normalize_images(ds.images[train], "mnist"),
        train_y=torch.from_numpy(ds.labels[train].astype(np.int64)),
        val_x=data.normalize_images(ds.images[val], "mnist"),
        val_y=torch.from_numpy(ds.labels[val].astype(np.int64)),
        train_index=train, val_index=val, num_classes=10, input_shape=(1, 28, 28))


# --------------------------------------------------------------------------- models


def model_settings(cfg: ControlsConfig, split: str, role: str, k: int) -> dict:
    """Everything the trained weights of one model depend on."""
    V.check_choice(role, ROLES, "role")
    seed = int(k) if role == "owner" else cfg.innocent_seed + int(k)
    s = {"arch": cfg.arch, "split": split, "split_seed": cfg.split_seed, "role": role,
         "index": int(k), "seed": seed, "epochs": cfg.epochs, "width": cfg.width,
         "batch_size": cfg.batch_size, "lr": cfg.lr, "train_per_class": cfg.train_per_class,
         "val_per_class": cfg.val_per_class}
    if role == "innocent":
        s.update(heldout_fraction=cfg.heldout_fraction, heldout_seed=cfg.heldout_seed)
    return s


def model_key(cfg, split, role, k) -> str:
    return f"{cfg.arch}_{split}_{role}{k}_{digest(model_settings(cfg, split, role, k))}"


def model_folder(cache_dir=None) -> Path:
    from ..training import cache_folder

    return cache_folder(cache_dir) / RESULT_NAME


def trained(cfg, split, role, k, root=None, cache_dir=None):
    """``(best_model, last_model, state)`` of one model, trained once and cached."""
    import time

    from ..checkpoint import load_checkpoint
    from ..models import build_model
    from ..training import last_epoch_path, load_or_train, train

    settings = model_settings(cfg, split, role, k)
    plan = cached_plan(cfg, split, root)
    final = model_folder(cache_dir) / f"{model_key(cfg, split, role, k)}.pt"

    def make(partial):
        t0 = time.process_time()
        sp = _split(plan.train if role == "owner" else plan.innocent_train, plan.val, root)
        model = build_model(cfg.arch, num_classes=10, width=cfg.width, seed=settings["seed"])
        res = train(model, sp, cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size,
                    seed=settings["seed"], checkpoint_path=partial, device="cpu", progress=False)
        h = res.history
        state = {"best_epoch": res.best_epoch, "best_val_acc": res.best_val_acc,
                 "last_val_acc": h[-1]["val_acc"], "best_train_acc": h[res.best_epoch - 1]["train_acc"],
                 "last_train_acc": h[-1]["train_acc"], "n_train": len(sp.train_y),
                 "cpu_seconds": round(time.process_time() - t0, 1)}
        return res.model, {"controls": settings}, state

    best, _, state, _ = load_or_train(final, make, keep_last=True, device="cpu")
    last, _, _ = load_checkpoint(last_epoch_path(final))
    return best, last.cpu().eval(), state


def train_task(cfg, split, role, k, root=None, cache_dir=None) -> dict:
    """Runner task (stage 1): train (or load) one model."""
    import torch

    torch.set_num_threads(1)
    _, _, state = trained(cfg, split, role, k, root, cache_dir)
    return {"model": model_key(cfg, split, role, k), **state}


# --------------------------------------------------------------------------- measurements


def feature_pools(model, plan: Plan, which: str, kind: str, root=None) -> dict:
    """``{r: (features_P, features_Q)}`` of one feature kind (:func:`forensics.feature_kinds`)."""
    from .. import data

    ds = _dataset(root)
    P = plan.train if which == "full" else plan.heldout
    idx = np.concatenate([P, plan.val])
    x = data.normalize_images(ds.images[idx], "mnist")
    f = FZ.feature_kinds(model, x)[kind]
    fP, fQ = f[: len(P)], f[len(P):]
    yP, yQ = ds.labels[P], ds.labels[plan.val]
    return {int(r): (fP[yP == r], fQ[yQ == r]) for r in np.unique(yQ)}


def measure_settings(cfg: ControlsConfig) -> dict:
    return {"trials": cfg.trials, "ms": list(cfg.ms), "ns": list(cfg.ns),
            "heldout_fraction": cfg.heldout_fraction, "heldout_seed": cfg.heldout_seed}


def measure_task(cfg, split, role, k, pools, variant, seeds, root=None, cache_dir=None) -> dict:
    """Runner task (stage 2): Table I of one model (every m x n cell, each draw seed)."""
    import torch

    torch.set_num_threads(1)
    v = parse_variant(variant)
    best, last, state = trained(cfg, split, role, k, root, cache_dir)
    fp = feature_pools(best if v.kept == "best" else last, cached_plan(cfg, split, root), pools,
                       v.features, root)
    cells = []
    for s in seeds:
        for m in cfg.ms:
            for n in cfg.ns:
                c = FZ.cell(fp, m, n, cfg.trials, s, v)
                cells.append({"seed": int(s), "m": m, "n": n, **c})
    return {"split": split, "role": role, "index": int(k), "train_seed": model_settings(cfg, split, role, k)["seed"],
            "pools": pools, "variant": variant, "model": model_key(cfg, split, role, k),
            "training": state, "cells": cells}


def steps(cfg: ControlsConfig) -> list:
    """``(k, split)`` in the order the run adds models: index k of every split kind, the
    sequential split first."""
    K = max(cfg.n_owners, cfg.n_innocents)
    return [(k, split) for k in range(K) for split in cfg.splits]


def measurements(cfg: ControlsConfig, upto: int | None = None, rescore: bool = True) -> list:
    """``(split, role, k, pools, variant, seeds)`` of every measurement, in plan order: for the
    first ``upto`` entries of :func:`steps` (all when None) the innocent k and the owner k of that
    split, then, with ``rescore``, the search path (:attr:`ControlsConfig.rescore`) on owner k
    when its split is the path's.  Every draw seed is outside the search's; owners whose
    training seed the search used are re-scored on new draws only."""
    out = []
    for k, split in steps(cfg)[:upto]:
        chosen = FZ.variant_name(parse_variant(cfg.variant, split=split))
        if k < cfg.n_innocents:
            out.append((split, "innocent", k, "heldout", chosen, tuple(cfg.draw_seeds)))
        if k < cfg.n_owners:
            out.append((split, "owner", k, "heldout", chosen, tuple(cfg.draw_seeds)))
            out.append((split, "owner", k, "full", chosen, tuple(cfg.draw_seeds)))
            for name in cfg.rescore if rescore else ():
                item = (split, "owner", k, "full", name, tuple(cfg.draw_seeds))
                if parse_variant(name).split == split and item not in out:
                    out.append(item)
    return out


def experiment(cfg: ControlsConfig = MLP, upto: int | None = None, rescore: bool = True,
               root=None, cache_dir=None, write=None) -> Experiment:
    """The controls as a runner plan: stage 1 trains, stage 2 measures (see :func:`measurements`)."""
    root = None if root is None else str(root)
    cache = None if cache_dir is None else str(cache_dir)
    meas = measurements(cfg, upto, rescore)
    models = list(dict.fromkeys((s, r, k) for s, r, k, *_ in meas))
    train = [Task(model_key(cfg, s, r, k), train_task, (cfg, s, r, k, root, cache)) for s, r, k in models]
    ms = digest(measure_settings(cfg))
    measure = [Task(f"{model_key(cfg, s, r, k)}_{pools}_{digest([variant, list(seeds)])}_{ms}",
                    measure_task, (cfg, s, r, k, pools, variant, seeds, root, cache))
               for s, r, k, pools, variant, seeds in meas]
    return Experiment(RESULT_NAME, [train, measure], write=write, describe=describe,
                      cache_dir=cache_dir)


def describe(rec: dict) -> str:
    if "cells" not in rec:
        return (f"trained {rec['model']} (best epoch {rec['best_epoch']}, validation "
                f"{rec['best_val_acc']:.4f}, {rec.get('cpu_seconds', 0)} CPU s)")
    c = rec["cells"]
    return (f"{rec['split']:10s} {rec['role']:8s} {rec['index']} {rec['pools']:7s} {rec['variant']}: "
            f"mean acc_r_opt {np.mean([x['acc_r_opt'] for x in c]):.3f}, "
            f"mean acc_r {np.mean([x['mean_acc_r'] for x in c]):.3f}")


# --------------------------------------------------------------------------- claims and summary


def claims(cell: dict, m: int, rho: float) -> dict:
    """The paper's two criteria on one cell: Eq. 13-14 on acc_{r_opt}, Eq. 15 on the mean."""
    from ..fingerprint import EQ13_SLACK, verify

    return {"eq13_14": verify(cell["acc_r_opt"], m, rho),
            "eq15": bool(cell["mean_acc_r"] - 1.0 / m >= rho - EQ13_SLACK)}


def _rate(k: int, n: int) -> dict:
    from .paper_summary import clopper_pearson

    lo, hi = clopper_pearson(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n, "ci": [lo, hi]}


def summarize(records: list, cfg: ControlsConfig) -> dict:
    """Per group (split, role, pools, variant): Table I over the models, the claims of Eq. 13-14
    and Eq. 15 per cell (models claimed on the first draw seed, with Clopper-Pearson
    intervals), and the distance to the paper's Table I (the forensics' objective)."""
    paper = FZ.paper_cells((cfg.arch,))
    groups: dict = {}
    for rec in records:
        groups.setdefault((rec["split"], rec["role"], rec["pools"], rec["variant"]), []).append(rec)
    first = cfg.draw_seeds[0]
    out = []
    for (split, role, pools, variant), recs in groups.items():
        recs = sorted(recs, key=lambda r: r["index"])
        cells = []
        fresh = [i for i, r in enumerate(recs) if r["train_seed"] not in cfg.search_train_seeds
                 or r["role"] != "owner"]
        dists, dists_fresh = [], []
        for m in cfg.ms:
            for n in cfg.ns:
                per = [[c for c in r["cells"] if c["m"] == m and c["n"] == n] for r in recs]
                opt = np.array([[c["acc_r_opt"] for c in p] for p in per])
                mean = np.array([[c["mean_acc_r"] for c in p] for p in per])
                p = paper.get((cfg.arch, m, n))
                row = {"m": m, "n": n, "models": len(recs),
                       "acc_r_opt": {"mean": float(opt.mean()), "min": float(opt.min()), "max": float(opt.max())},
                       "mean_acc_r": {"mean": float(mean.mean()), "min": float(mean.min()), "max": float(mean.max())},
                       "paper": None if p is None else {"r_opt": p[0], "acc_r_opt": p[1], "mean_acc_r": p[2]},
                       "claims": {}}
                if p is not None:
                    dists.append((abs(opt.mean() - p[1]) + abs(mean.mean() - p[2])) / 2)
                    if fresh:
                        dists_fresh.append((abs(opt[fresh].mean() - p[1]) + abs(mean[fresh].mean() - p[2])) / 2)
                for rho in cfg.rhos:
                    if not 0 < rho <= 1 - 1 / m:
                        continue
                    at_first = [claims(next(c for c in pc if c["seed"] == first), m, rho) for pc in per]
                    every = [claims(c, m, rho) for pc in per for c in pc]
                    row["claims"][str(rho)] = {
                        crit: {**_rate(sum(a[crit] for a in at_first), len(at_first)),
                               "all_seeds": [int(sum(a[crit] for a in every)), len(every)]}
                        for crit in ("eq13_14", "eq15")}
                cells.append(row)
        out.append({"split": split, "role": role, "pools": pools, "variant": variant,
                    "indices": [r["index"] for r in recs],
                    "train_seeds": [r["train_seed"] for r in recs],
                    "val_acc": [r["training"]["last_val_acc" if parse_variant(variant).kept == "last"
                                              else "best_val_acc"] for r in recs],
                    "distance_to_paper": float(np.mean(dists)) if dists else None,
                    # over the models the forensics' search did not see (owners' training seeds
                    # outside search_train_seeds; every innocent)
                    "distance_to_paper_fresh": float(np.mean(dists_fresh)) if dists_fresh else None,
                    "fresh_train_seeds": [recs[i]["train_seed"] for i in fresh],
                    "cells": cells})
    return {"groups": out, "first_draw_seed": first}


def group(result: dict, split: str, role: str, pools: str = "heldout", variant: str | None = None):
    """One group of the summary (None when it has no model yet)."""
    cfg = config_from_dict(result["settings"])
    variant = variant or FZ.variant_name(parse_variant(cfg.variant, split=split))
    for g in result["summary"]["groups"]:
        if (g["split"], g["role"], g["pools"], g["variant"]) == (split, role, pools, variant):
            return g
    return None


def result_dict(records, cfg: ControlsConfig, prov: dict, complete: bool) -> dict:
    return {"format": RESULT_FORMAT, "version": F.RESULT_FORMATS[RESULT_FORMAT], "provenance": prov,
            "device": "cpu", "note": "a CPU run (torch on one thread per process); no GPU was used",
            "complete": bool(complete), "settings": cfg.to_dict(),
            "design": ("owner k trains on the whole training part from seed k; innocent k trains on "
                       "the training part without the held-out members P' from seed innocent_seed + k; "
                       "every model is measured on P' and Q (pools 'heldout'), the owners also on the "
                       "whole P (pools 'full', the paper's Table I); one split per kind (split_seed)"),
            "records": records, "summary": summarize(records, cfg) if records else {"groups": []}}


def result_path(out, cfg: ControlsConfig) -> Path:
    return Path(out) / f"{RESULT_NAME}_{cfg.name}.json"


def run_controls(cfg: ControlsConfig = MLP, out=None, root=None, cache_dir=None, engine=None,
                 command=None, progress=True, rounds: bool = True) -> dict:
    """Run (or resume) the controls round by round; returns the result dictionary.

    Round k plans the models of the first k entries of :func:`steps` (innocent and owner k of
    one split kind), so each round's models are measured (and re-scored) before the next round
    trains.  ``out``: the folder of ``table1_controls_{cfg.name}.json``,
    rewritten after every round (``"complete": false`` until the run has finished).
    """
    import torch

    torch.set_num_threads(1)
    prov = F.result_header(RESULT_FORMAT, command)["provenance"]
    state = {}
    K = len(steps(cfg))
    plan_rounds = [(k, True) for k in range(1, K + 1)] if rounds else [(K, True)]
    for i, (upto, rescore) in enumerate(plan_rounds):
        last_round = i == len(plan_rounds) - 1

        def write(records, p, complete, last_round=last_round):
            state["result"] = result_dict(records, cfg, p, complete and last_round)
            if out is not None:
                F.write_json_atomic(result_path(out, cfg), state["result"])

        exp = experiment(cfg, upto, rescore, root, cache_dir, write)
        runner.run(exp, engine=engine, progress=progress, provenance=prov)
    return state["result"]


def read(path) -> dict:
    """A controls result file, checked (:func:`pmi_tutorial.files.read_result`)."""
    return F.read_result(path, RESULT_FORMAT)


def committed(name: str = "mlp") -> dict:
    return F.committed_result(f"{RESULT_NAME}_{name}", RESULT_FORMAT)


# --------------------------------------------------------------------------- text


def format_table(result: dict, split: str, rho: float = 0.1) -> str:
    """Owners and innocents side by side on P' and Q: seed-mean [min-max over models and draw
    seeds] of acc_{r_opt} and mean acc_r, the paper's values, and the models claimed (first
    draw seed) by Eq. 13-14 and Eq. 15 at ``rho``."""
    own, inn = group(result, split, "owner"), group(result, split, "innocent")
    if own is None and inn is None:
        return f"{split}: no model measured yet"
    cfg = config_from_dict(result["settings"])
    head = (f"{split} split, {cfg.variant}, pools P' and Q; entries: mean [min-max] over models and "
            f"draw seeds; claims at rho = {rho} on draw seed {cfg.draw_seeds[0]}")
    lines = [head, f"{'m':>2} {'n':>4} | {'owners acc_opt':>19} {'mean acc_r':>19} | "
             f"{'innocents acc_opt':>19} {'mean acc_r':>19} | {'paper':>11} | "
             f"{'Eq13-14 own/inn':>15} {'Eq15 own/inn':>13}"]

    def val(g, i, what):
        if g is None:
            return " " * 19
        x = g["cells"][i][what]
        return f"{x['mean']:.3f} [{x['min']:.2f}-{x['max']:.2f}]"

    def cl(g, i, crit):
        if g is None or str(rho) not in g["cells"][i]["claims"]:
            return "-"
        c = g["cells"][i]["claims"][str(rho)][crit]
        return f"{c['k']}/{c['n']}"

    def paper_text(p):
        return f"{p['acc_r_opt']:.2f}/{p['mean_acc_r']:.3f}" if p else "-"

    ref = own or inn
    for i, row in enumerate(ref["cells"]):
        p = row["paper"]
        lines.append(f"{row['m']:>2} {row['n']:>4} | {val(own, i, 'acc_r_opt'):>19} {val(own, i, 'mean_acc_r'):>19} | "
                     f"{val(inn, i, 'acc_r_opt'):>19} {val(inn, i, 'mean_acc_r'):>19} | "
                     f"{paper_text(p):>11} | "
                     f"{cl(own, i, 'eq13_14') + ' / ' + cl(inn, i, 'eq13_14'):>15} "
                     f"{cl(own, i, 'eq15') + ' / ' + cl(inn, i, 'eq15'):>13}")
    for name, g in (("owners", own), ("innocents", inn)):
        if g is not None:
            d = g["distance_to_paper"]
            lines.append(f"{name}: models {g['indices']} (training seeds {g['train_seeds']}), "
                         "distance to the paper " + ("-" if d is None else f"{d:.3f}"))
    return "\n".join(lines)


def rescore_table(result: dict) -> str:
    """The search path re-scored: distance to the paper (the forensics' objective, on the mean
    over models and draws) on new draws of the owners the search used, and on owners it never
    saw, beside the distance the search saw."""
    cfg = config_from_dict(result["settings"])
    try:
        seen = {p["variant"]: p["objective"] for p in FZ.committed("paper")["search"]["path"]}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        seen = {}
    lines = [f"search path re-scored on draw seeds {list(cfg.draw_seeds)} (the search used draw seeds "
             f"{list(cfg.search_draw_seeds)} on training seed(s) {list(cfg.search_train_seeds)})",
             f"{'variant':<80} {'search':>6} {'seed-0 owner':>12} {'new owners':>10}"]
    for name in cfg.rescore:
        g = group(result, parse_variant(name).split, "owner", "full", name)
        old = [i for i, s in enumerate(g["train_seeds"]) if s in cfg.search_train_seeds] if g else []
        same = None
        if g and old:
            same = rescored_distance(result, name, [g["indices"][i] for i in old])
        new = g["distance_to_paper_fresh"] if g else None
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"{name:<80} {fmt(seen.get(name)):>6} {fmt(same):>12} {fmt(new):>10}"
                     + (f"  (owners {g['fresh_train_seeds']})" if g and g["fresh_train_seeds"] else ""))
    return "\n".join(lines)


def rescored_distance(result: dict, variant: str, indices) -> float | None:
    """The forensics' objective for one variant over the owners ``indices`` (pools ``full``):
    mean over the paper's cells of (|acc_r_opt - paper| + |mean acc_r - paper|) / 2, each value
    the mean over those owners and their draw seeds."""
    cfg = config_from_dict(result["settings"])
    paper = FZ.paper_cells((cfg.arch,))
    recs = [r for r in result["records"] if r["role"] == "owner" and r["pools"] == "full"
            and r["variant"] == variant and r["index"] in set(indices)]
    d = []
    for m in cfg.ms:
        for n in cfg.ns:
            cs = [c for r in recs for c in r["cells"] if (c["m"], c["n"]) == (m, n)]
            p = paper.get((cfg.arch, m, n))
            if cs and p is not None:
                d.append((abs(np.mean([c["acc_r_opt"] for c in cs]) - p[1])
                          + abs(np.mean([c["mean_acc_r"] for c in cs]) - p[2])) / 2)
    return float(np.mean(d)) if d else None
