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
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .. import attacks as attacks_registry
from .. import files as _files
from . import runner
from .runner import Experiment, Task
from ..data import as_index
from ..files import digest
from .study.design import training_split
from .study.run import train_cached

RESULT_FORMAT = "pmi-tutorial-paper-study"
RESULT_VERSION = _files.RESULT_FORMATS[RESULT_FORMAT]
FILES = {"records": "paper_study_records.json", "summary": "paper_study_summary.json"}
ATTACKS = ("finetune", "prune50", "prune90", "int8", "fp16", "noise", "distill_same",
           "distill_other", "probabilities")
FEATURES = ("logits", "logprob", "prob")
NEGATIVE = "innocent"
ATTACK_TITLES = {"owner": "owner (no attack)",
                 **{name: attacks_registry.ATTACKS[name].title for name in ATTACKS}}
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


# --------------------------------------------------------------------------- the design


@dataclass
class World:
    """The owner split, the owner's draw and the per-class positions used by the design."""

    cfg: PaperConfig
    split: object
    reveal: dict  # r -> positions (into split.train_*) of P', in reveal order
    outside: dict  # r -> training positions outside P'


def prepare(cfg: PaperConfig, root=None) -> World:
    from ..data import owner_split

    d = cfg.design
    split = owner_split(d.dataset, seed=d.split_seed, root=root)
    y = split.train_y.numpy()
    rng = np.random.default_rng([d.split_seed, d.reveal_seed, 4242])
    reveal, outside = {}, {}
    for r in range(split.num_classes):
        pos = rng.permutation(np.flatnonzero(y == r))
        need = d.reveal_per_class + d.innocent_per_class + d.select_per_class
        if len(pos) < need or d.distill_per_class > len(pos) - d.reveal_per_class:
            raise ValueError(f"class {r} has {len(pos)} training images; the design needs {need} "
                             "(reveal + innocent + select) and distill <= the rest; use smaller parts")
        reveal[r], outside[r] = pos[:d.reveal_per_class], np.sort(pos[d.reveal_per_class:])
    return World(cfg, split, reveal, outside)


def _per_class_draw(world: World, tag, k, sizes, exclude=()):
    """Disjoint random draws (``sizes`` per class) from the training positions outside P'."""
    rng = np.random.default_rng([world.cfg.design.split_seed, tag, int(k)])
    out = [[] for _ in sizes]
    for r, pos in world.outside.items():
        pos = np.setdiff1d(pos, np.concatenate([e[r] for e in exclude])) if exclude else pos
        pos = rng.permutation(pos)
        start = 0
        for i, s in enumerate(sizes):
            out[i].append(pos[start:start + s])
            start += s
    return out


def innocent_parts(world: World, k: int):
    """``(train, select, unseen)`` of innocent model k, per class lists of training positions:
    it trains on ``train`` and selects its epoch on ``select`` (both outside P'); ``unseen`` are
    the class's training positions it never used (P' included)."""
    d = world.cfg.design
    train, select = _per_class_draw(world, 7001, k, (d.innocent_per_class, d.select_per_class))
    y = world.split.train_y.numpy()
    unseen = [np.setdiff1d(np.flatnonzero(y == r), np.concatenate([train[r], select[r]]))
              for r in world.outside]
    return train, select, unseen


#: how an innocent model's own draw is made (part of its measurement's cache key)
OWN_DRAW = "random-split-of-unseen"


def own_draw_positions(world: World, k: int):
    """Innocent model k's own draw as positions: per class, ``(P'_k, Q_k)`` each a list of
    ``("train" | "val", position)`` pairs, a seeded random split of the images model k never
    saw (the training images it did not use, and the validation split) into
    ``reveal_per_class`` members, in reveal order, and ``own_q_per_class`` non-members.

    Every image in the pool is unseen by model k, so under the null P'_k and Q_k are
    exchangeable by construction, and because each model's split is its own random
    assignment, the hardest images of the pool fall on either side independently for each
    model (with Q_k a fixed part of the validation split for every model, their tail tests
    shared the luck of its hardest images)."""
    d = world.cfg.design
    _, _, unseen = innocent_parts(world, k)
    vy = world.split.val_y.numpy()
    rng = np.random.default_rng([d.split_seed, 7009, int(k)])
    out = []
    for r, tr in enumerate(unseen):
        pool = [("train", int(i)) for i in tr] + [("val", int(i)) for i in np.flatnonzero(vy == r)]
        need = d.reveal_per_class + d.own_q_per_class
        if len(pool) < need:
            raise ValueError(f"class {r}: innocent model {k} left {len(pool)} unseen images, the "
                             f"own draw needs {need} (reveal_per_class + own_q_per_class); use "
                             "smaller parts")
        order = rng.permutation(len(pool))
        out.append(([pool[i] for i in order[:d.reveal_per_class]],
                    [pool[i] for i in order[d.reveal_per_class:need]]))
    return out


def distill_part(world: World) -> np.ndarray:
    (part,) = _per_class_draw(world, 7005, 0, (world.cfg.design.distill_per_class,))
    return np.sort(np.concatenate(part))


def owner_draw(world: World):
    """The owner's draw: ``(P' per class in reveal order, Q per class)`` as images."""
    vy = world.split.val_y.numpy()
    P = {r: world.split.train_x[as_index(p)] for r, p in world.reveal.items()}
    Q = {r: world.split.val_x[as_index(np.flatnonzero(vy == r))] for r in world.reveal}
    return P, Q


def own_draw(world: World, k: int):
    """Innocent model k's own draw as images: ``(P'_k, Q_k)`` per class
    (:func:`own_draw_positions`)."""
    import torch

    def images(pairs):
        src = {"train": world.split.train_x, "val": world.split.val_x}
        return torch.stack([src[s][i] for s, i in pairs])

    parts = own_draw_positions(world, k)
    return ({r: images(p) for r, (p, _) in enumerate(parts)},
            {r: images(q) for r, (_, q) in enumerate(parts)})


# --------------------------------------------------------------------------- models (cached)


def model_folder(cache_dir) -> Path:
    """Where this study caches its models and per-suspect records."""
    from ..training import cache_folder

    return cache_folder(cache_dir) / "paper_study"


def _epochs(cfg, arch) -> int:
    return int(dict(zip(cfg.archs, cfg.epochs)).get(arch, cfg.epochs[0]))


#: the training seed of owner k and of innocent model k is the role's base plus k
_SEED_BASE = {"owner": 100, "innocent": 2000}


def _model_settings(world, arch, role, k) -> dict:
    return {"arch": arch, "role": role, "index": int(k), "seed": _SEED_BASE[role] + int(k),
            "design": asdict(world.cfg.design), "epochs": _epochs(world.cfg, arch)}


def model_key(world, arch, role, k) -> str:
    """The cache key of owner or innocent model k (``role``), without training or loading it."""
    return f"{arch}_{role}{k}_{digest(_model_settings(world, arch, role, k))}"


def _train_model(world, arch, role, k, train_split, cache_dir):
    from ..models import build_model
    from ..training import train

    cfg = world.cfg
    settings = _model_settings(world, arch, role, k)
    seed = settings["seed"]

    def make(partial):
        model = build_model(arch, num_classes=world.split.num_classes, seed=seed)
        res = train(model, train_split, _epochs(cfg, arch), seed=seed, checkpoint_path=partial,
                    device="cpu", progress=False)
        return res.model, {"best_epoch": res.best_epoch, "select_acc": res.best_val_acc}

    key = model_key(world, arch, role, k)
    model, state = train_cached(model_folder(cache_dir), key, settings, make)
    return model, key, state


def owner_model(world, arch, k, cache_dir=None):
    """Owner k: the whole training split, best epoch on the validation split (the paper)."""
    return _train_model(world, arch, "owner", k, world.split, cache_dir)


def innocent_model(world, arch, k, cache_dir=None):
    """Innocent k: ``innocent_per_class`` images per class outside P', its own selection set."""
    train, select, _ = innocent_parts(world, k)
    ts = training_split(world.split, np.sort(np.concatenate(train)), np.sort(np.concatenate(select)))
    return _train_model(world, arch, "innocent", k, ts, cache_dir)


def attacked(world, owner, owner_key, arch, attack, k, cache_dir=None):
    """The attacked copy (:data:`pmi_tutorial.attacks.ATTACKS`, with this configuration's
    settings): ``(model, output kind, validation positions kept in Q or None)``."""
    from .. import attacks

    cfg = world.cfg
    entry = attacks.get(attack)
    if attack not in cfg.attacks and attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")
    over = {"finetune": {"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr,
                         "fraction": cfg.finetune_fraction},
            "noise": {"scale": cfg.noise_scale}}.get(attack, {})
    distilling = attack.startswith("distill")
    if distilling:
        over = {"epochs": cfg.distill_epochs}
    ctx = attacks.AttackContext(split=world.split, arch=arch, seed=500 + k if distilling else k,
                                query_images=world.split.train_x[as_index(distill_part(world))]
                                if distilling else None, num_classes=world.split.num_classes)
    if not entry.trains:
        out = entry(owner, ctx, **over)
        return out.model, out.output, out.keep_q
    if attack == "finetune":  # the cache keys of the committed run
        settings = {"base": owner_key, "attack": attack, "epochs": cfg.finetune_epochs,
                    "lr": cfg.finetune_lr, "fraction": cfg.finetune_fraction, "seed": k}
        key = f"{owner_key}_ft_{digest(settings)}"
    else:
        settings = {"base": owner_key, "attack": attack,
                    "student": arch if attack == "distill_same" else OTHER[arch],
                    "epochs": cfg.distill_epochs, "seed": 500 + k, "images": "distill part",
                    "design": asdict(cfg.design)}
        key = f"{owner_key}_{attack}_{digest(settings)}"
    model, _ = train_cached(model_folder(cache_dir), key, settings,
                            lambda _: (entry(owner, ctx, **over).model, {}))
    keep = None
    if attack == "finetune":
        tuned, _ = attacks.finetune_split(world.split, cfg.finetune_fraction, seed=k)
        keep = np.setdiff1d(np.arange(len(world.split.val_y)), tuned)
    return model, "logits", keep


# --------------------------------------------------------------------------- measurements


def feature_views(outputs: np.ndarray, output: str) -> dict:
    """``{"logits", "logprob", "prob"}`` of one model's outputs (float64).  From probabilities
    only (float32, as an API returns them), the "logits" view is the log-probabilities."""
    from scipy.special import log_softmax

    from ..verification import to_log_probabilities

    if output == "logits":
        lp = log_softmax(outputs, axis=1)
        return {"logits": outputs, "logprob": lp, "prob": np.exp(lp)}
    lp = to_log_probabilities(outputs, "probabilities")
    return {"logits": lp, "logprob": lp, "prob": outputs}


def measure(views_P: dict, views_Q: dict, cfg: PaperConfig) -> dict:
    """Every statistic of one model and one draw, at each number revealed per class.

    ``views_P[f][r]`` / ``views_Q[f][r]``: features ``f`` (:func:`feature_views`) of P' (in
    reveal order) and Q of class r.  Returns ``{str(k): {"closed_form": {"log10_p", "z",
    "fisher_log10_p"}, "closed_form_tail": {"log10_p", "count"}, "directional": p,
    "features": {f: {"acc": [acc_r], "calibrated": p,
    "outlier": p}}}}``; "calibrated"/"outlier" only where the configuration runs them.
    """
    from .. import fingerprint, stats

    out = {}
    classes = sorted(views_P["logprob"])
    for k in cfg.revealed:
        lp = {r: (views_P["logprob"][r][:k], views_Q["logprob"][r]) for r in classes}
        scores = stats.class_scores(lp)
        cf = stats.closed_form_from_scores(scores)
        fi = stats.closed_form_from_scores(scores, combine="fisher")
        tail = stats.closed_form_from_scores(scores, test="tail", fraction=cfg.tail)
        d = stats.directional_from_scores(scores, B=cfg.B, seed=cfg.seed).pvalue
        n = min(cfg.n, k)
        feats = {}
        for f in cfg.features:
            fp = {r: (views_P[f][r][:k], views_Q[f][r]) for r in classes}
            res = fingerprint.run_on_features(fp, cfg.m, n, trials=cfg.trials, seed=cfg.seed)
            cell = {"acc": [round(float(res.acc_by_class[r]), 4) for r in classes]}
            if f == "logits" or k in cfg.perm_all_features_at:
                for name, stat in (("calibrated", "pmi"), ("outlier", "outlier")):
                    cell[name] = stats.permutation_test(fp, stat, B=cfg.B, seed=cfg.seed, m=cfg.m,
                                                        n=n, trials=cfg.perm_trials).pvalue
            feats[f] = cell
        out[str(k)] = {"closed_form": {"log10_p": round(cf.log10_pvalue, 4),
                                       "z": round(cf.statistic, 4),
                                       "fisher_log10_p": round(fi.log10_pvalue, 4)},
                       "closed_form_tail": {"log10_p": round(tail.log10_pvalue, 4),
                                            "count": tail.statistic},
                       "directional": d, "features": feats}
    return out


def _measure_settings(cfg: PaperConfig) -> dict:
    d = cfg.to_dict()
    keep = ("revealed", "features", "m", "n", "trials", "B", "perm_trials", "perm_all_features_at",
            "seed", "tail")
    # the directional test of stats.directional_test (random cyclic-group re-splits), as in
    # verify_ownership
    return {**{k: d[k] for k in keep}, "directional": "cyclic-group"}


def _outputs(model, images: dict, output: str) -> dict:
    import torch

    from ..features import logits

    out = {}
    for r, x in images.items():
        z = logits(model, x).double()
        out[r] = (torch.softmax(z, 1).float().double() if output == "probabilities" else z).numpy()
    return out


def measured(model, output, draw, key, cfg, cache_dir=None, keep_q=None, split=None) -> dict:
    """:func:`measure` of ``model`` on ``draw`` = (P images, Q images) per class, cached by the
    model's key, the draw and the settings; written atomically."""
    from ..files import write_json_atomic

    path = model_folder(cache_dir) / "records" / f"{key}_{digest(_measure_settings(cfg))}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.process_time()
    P, Q = draw
    if keep_q is not None:  # fine-tuning: its images leave Q
        vy = split.val_y.numpy()
        Q = {r: split.val_x[as_index(np.intersect1d(np.flatnonzero(vy == r), keep_q))] for r in Q}
    oP, oQ = _outputs(model, P, output), _outputs(model, Q, output)
    vP = {f: {} for f in FEATURES}
    vQ = {f: {} for f in FEATURES}
    for r in oP:
        for f, v in feature_views(oP[r], output).items():
            vP[f][r] = v
        for f, v in feature_views(oQ[r], output).items():
            vQ[f][r] = v
    correct = sum(int((oQ[r].argmax(1) == r).sum()) for r in oQ)
    record = {"q_acc": round(correct / sum(len(v) for v in oQ.values()), 4),
              "revealed": measure(vP, vQ, cfg)}
    record["cpu_seconds"] = round(time.process_time() - t0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def plan(cfg: PaperConfig) -> list:
    """The models in run order: per architecture, owner k with its copies, then a block of the
    innocent models (so that partial results hold some of every kind)."""
    out = []
    for arch, n_inn in zip(cfg.archs, cfg.n_innocent):
        per = -(-n_inn // max(cfg.n_owners, 1))
        for k in range(max(cfg.n_owners, 1)):
            if k < cfg.n_owners:
                out.append((arch, "owner", k))
                out += [(arch, a, k) for a in cfg.attacks]
            out += [(arch, NEGATIVE, j) for j in range(k * per, min(n_inn, (k + 1) * per))]
    return out


def iter_records(world: World, cfg: PaperConfig, cache_dir=None, only=None):
    """Yield one record per (model, draw) of :func:`plan`, training and measuring as needed."""
    odraw = owner_draw(world)
    owners = {}
    for arch, kind, k in plan(cfg) if only is None else only:
        if kind == NEGATIVE:
            model, key, state = innocent_model(world, arch, k, cache_dir)
            for draw_name, draw, tag in (("owner", odraw, "owner"),
                                         ("own", own_draw(world, k), f"own-{digest(OWN_DRAW)}")):
                rec = measured(model, "logits", draw, f"{key}_{tag}", cfg, cache_dir)
                yield {"arch": arch, "kind": kind, "index": k, "owner": None, "draw": draw_name,
                       "train_cpu_seconds": state.get("cpu_seconds", 0.0), **rec}
            continue
        if (arch, k) not in owners:
            owners[(arch, k)] = owner_model(world, arch, k, cache_dir)
        owner, okey, ostate = owners[(arch, k)]
        if kind == "owner":
            model, output, keep, key, tsec = owner, "logits", None, okey, ostate.get("cpu_seconds", 0)
        else:
            t0 = time.process_time()
            model, output, keep = attacked(world, owner, okey, arch, kind, k, cache_dir)
            key, tsec = f"{okey}_{kind}_{digest(attack_settings(cfg, kind))}", time.process_time() - t0
        rec = measured(model, output, odraw, key, cfg, cache_dir, keep_q=keep, split=world.split)
        yield {"arch": arch, "kind": kind, "index": k, "owner": k, "draw": "owner",
               "train_cpu_seconds": round(float(tsec), 2), **rec}


def attack_settings(cfg, attack) -> dict:
    d = cfg.to_dict()
    return {"attack": attack, **{k: v for k, v in d.items()
                                 if k.split("_")[0] in ("finetune", "noise", "distill", "design")}}


# --------------------------------------------------------------------------- the run


def budget(records, cfg: PaperConfig) -> dict:
    """Measured CPU seconds per model (training and measurement) per architecture and kind, and
    the total they imply for the whole plan (what is done counts as measured)."""
    per, done = {}, {}
    for r in records:
        g = per.setdefault(f"{r['arch']}/{'innocent' if r['kind'] == NEGATIVE else 'owner-derived'}",
                           {"train": [], "measure": []})
        if r["draw"] != "own":  # one training per model
            g["train"].append(r.get("train_cpu_seconds", 0.0))
        g["measure"].append(r.get("cpu_seconds", 0.0))
        done[(r["arch"], r["kind"], r["index"], r["draw"])] = True
    means = {k: {s: float(np.mean(v)) if v else None for s, v in g.items()} for k, g in per.items()}
    total, missing = 0.0, 0
    for arch, kind, k in plan(cfg):
        g = means.get(f"{arch}/{'innocent' if kind == NEGATIVE else 'owner-derived'}")
        draws = ("owner", "own") if kind == NEGATIVE else ("owner",)
        if g is None or g["train"] is None:
            missing += 1
            continue
        total += g["train"] + len(draws) * g["measure"]
    return {"mean_cpu_seconds_per_model": means, "planned_models": len(plan(cfg)),
            "kinds_without_measurement": missing,
            "estimated_total_cpu_seconds": round(total, 1),
            "estimated_total_cpu_hours": round(total / 3600, 2),
            "done_cpu_hours": round(sum(r.get("train_cpu_seconds", 0) + r.get("cpu_seconds", 0)
                                        for r in records) / 3600, 3)}


#: CPU seconds of one training epoch over 10,000 MNIST images (Adam, batch 64, one thread),
#: measured on the 2-core machine of the committed run (``train_one_epoch`` on 10,000 images)
EPOCH_CPU_SECONDS_PER_10K = {"mlp": 0.13, "lenet5": 1.0}


def a_priori_budget(cfg: PaperConfig, measure_seconds: float,
                    epoch_seconds=EPOCH_CPU_SECONDS_PER_10K) -> dict:
    """The total CPU time of the plan from per-epoch costs (``epoch_seconds`` per 10,000
    images) and the CPU seconds of one measurement: owners train on 50,000 images, innocents
    on ``innocent_per_class`` x 10, fine-tuning on 20% of the 20,000 validation images,
    distillation on ``distill_per_class`` x 10 (the student's architecture); + 10% for the
    per-epoch validation."""
    d, c = cfg.design, 10
    train = 0.0
    n_measure = 0
    for arch, kind, k in plan(cfg):
        e, rate = _epochs(cfg, arch), epoch_seconds[arch] / 10_000
        if kind == "owner":
            train += 50_000 * e * rate
        elif kind == NEGATIVE:
            train += d.innocent_per_class * c * e * rate
            n_measure += 1  # the own draw (the owner's draw is counted below)
        elif kind == "finetune":
            train += 0.2 * 20_000 * cfg.finetune_epochs * rate
        elif kind.startswith("distill"):
            student = arch if kind == "distill_same" else OTHER[arch]
            train += d.distill_per_class * c * cfg.distill_epochs * epoch_seconds[student] / 10_000
        n_measure += 1
    train *= 1.1
    total = train + n_measure * measure_seconds
    return {"train_cpu_seconds": round(train, 3), "train_cpu_hours": round(train / 3600, 2),
            "measurements": n_measure,
            "measure_cpu_seconds_each": round(measure_seconds, 1),
            "total_cpu_hours": round(total / 3600, 2),
            "basis": f"epoch CPU seconds per 10,000 images {dict(epoch_seconds)}; one measurement "
                     "= the mean measured so far"}


def result_files(records, cfg, prov, complete) -> dict:
    from .paper_summary import summarize

    head = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "banner": cfg.banner(),
            "reduced": cfg.reduced(),
            "settings": cfg.to_dict(), "provenance": prov, "complete": complete,
            "models_done": len(records), "budget": budget(records, cfg)}
    measure = [r.get("cpu_seconds", 0.0) for r in records]
    head["budget"]["a_priori"] = a_priori_budget(cfg, float(np.mean(measure)) if measure else 20.0)
    return {"records": {**head, "records": records},
            "summary": {**head, "summary": summarize(records, cfg)}}


def write_results(files: dict, out) -> None:
    from ..files import write_json_atomic

    for name, content in files.items():
        write_json_atomic(Path(out) / FILES[name], content)


def _read_records(folder) -> dict:
    """The records file in ``folder``, parsed and checked (:func:`files.read_result`: format,
    version, provenance)."""
    path = Path(folder) / FILES["records"]
    if not path.is_file():
        raise FileNotFoundError(f"no result file {path}; run `python -m pmi_tutorial study --config "
                                f"paper --out {folder}`")
    return _files.read_result(path, RESULT_FORMAT)


def load_results(folder):
    """``(records, config, summary file)`` from the result files in ``folder``."""
    rec = _read_records(folder)
    summ = _files.read_result(Path(folder) / FILES["summary"], RESULT_FORMAT)
    return rec["records"], config_from_dict(rec["settings"]), summ


def resummarize(folder, command=None) -> dict:
    """Recompute the summary file in ``folder`` from its records file, without models.

    The records (every measurement) and their provenance stay as the run wrote them; the summary
    gets ``"summary_recomputed"`` (command, commit, date) beside that provenance, so a reader
    sees both what measured the numbers and what last summarised them.
    """
    from ..files import git_commit, now, write_json_atomic

    rec = _read_records(folder)
    cfg = config_from_dict(rec["settings"])
    files = result_files(rec["records"], cfg, rec["provenance"], complete=rec["complete"])
    summary = files["summary"]
    summary["summary_recomputed"] = {"command": command, "git_commit": git_commit(),
                                     "date": now()}
    write_json_atomic(Path(folder) / FILES["summary"], summary)
    return summary


@functools.lru_cache(maxsize=1)
def cached_world(cfg: PaperConfig, root) -> World:
    return prepare(cfg, root)


def train_task(cfg: PaperConfig, arch, role, k, root=None, cache_dir=None) -> dict:
    """Runner task: train (or load) owner or innocent model k of ``arch``."""
    import torch

    torch.set_num_threads(1)
    make = owner_model if role == "owner" else innocent_model
    _, key, state = make(cached_world(cfg, root), arch, k, cache_dir)
    return {"model": key, "train_cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 2)}


def measure_task(cfg: PaperConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: the records of one entry of :func:`plan` (an innocent model has two draws)."""
    import torch

    torch.set_num_threads(1)
    return {"records": list(iter_records(cached_world(cfg, root), cfg, cache_dir, only=[(arch, kind, k)]))}


def _describe(cfg):
    def line(task_record):
        if "records" not in task_record:
            return f"trained {task_record['model']} ({task_record['train_cpu_seconds']} CPU s)"
        out = []
        for rec in task_record["records"]:
            top = rec["revealed"][str(max(cfg.revealed))]
            out.append(f"{rec['arch']:6s} {rec['kind']:13s} {rec['index']:2d} {rec['draw']:5s}: Q "
                       f"acc {rec['q_acc']:.3f}; closed form log10 p "
                       f"{top['closed_form']['log10_p']:.1f}, directional p {top['directional']:.3f}")
        return "\n".join(out)
    return line


def experiment(cfg: PaperConfig = PAPER, cache_dir=None, root=None, write=None) -> Experiment:
    """The paper-scale study as a runner plan: stage 1 trains every owner and innocent model,
    stage 2 measures every entry of :func:`plan` (training the attacked copies it needs)."""
    world = cached_world(cfg, root)
    root = None if root is None else str(root)
    cache = None if cache_dir is None else str(cache_dir)
    train = [Task(model_key(world, arch, role, k), train_task, (cfg, arch, role, k, root, cache))
             for arch, n_inn in zip(cfg.archs, cfg.n_innocent)
             for role, n in (("owner", cfg.n_owners), (NEGATIVE, n_inn)) for k in range(n)]
    measure_key = digest(_measure_settings(cfg))

    def key(arch, kind, k):
        if kind == NEGATIVE:
            return f"{model_key(world, arch, kind, k)}_{measure_key}"
        base = model_key(world, arch, "owner", k)
        if kind != "owner":
            base = f"{base}_{kind}_{digest(attack_settings(cfg, kind))}"
        return f"{base}_{measure_key}"

    measure_ = [Task(key(*entry), measure_task, (cfg, *entry, root, cache)) for entry in plan(cfg)]
    return Experiment("paper_study", [train, measure_], write=write, describe=_describe(cfg),
                      cache_dir=cache_dir)


def run(cfg: PaperConfig = PAPER, out=None, cache_dir=None, root=None, progress=True,
        command=None, write_every=60.0, engine=None) -> dict:
    """Train (or load), attack and measure every model of :func:`plan` on the experiment runner
    (in process, or on ``engine``: :func:`runner.engine`); write the result files to ``out``
    at most every ``write_every`` seconds (``"complete": false``) and at the end."""
    import torch

    from ..files import provenance

    torch.set_num_threads(1)
    if progress:
        print(cfg.banner(), flush=True)
    last = {}

    def write(task_records, prov, complete):
        records = [r for t in task_records for r in t["records"]]
        last["files"] = result_files(records, cfg, prov, complete)
        if out is not None:
            write_results(last["files"], out)

    runner.run(experiment(cfg, cache_dir, root, write), engine=engine, progress=progress,
               write_every=write_every, provenance=provenance(command))
    return last["files"]
