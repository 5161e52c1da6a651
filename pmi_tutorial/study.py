r"""Does PMI accuse innocent models?  The false-positive study (book chapter "Beyond the paper").

The paper claims ownership when :math:`acc_{r_{opt}} - 1/m \ge \rho` (Eq. 13-14) and never
measures how often a model that never saw P passes that rule.  This module measures it.

**The design** (one owner's split of MNIST, :func:`pmi_tutorial.data.owner_split`, cut further
by class into disjoint parts of its *training* images, :func:`make_parts`):

* part A (``member_per_class`` images per class): the owner trains on A.  P = the class-r images
  of A; Q = the class-r images of the owner's validation split (all of them, or the first
  ``nonmember_per_class``).
* part S (``select_per_class``): the validation set that picks the best epoch of *every* model
  (so no model, owner or not, ever uses a Q image).
* part C (``distill_per_class``): the images an extractor queries the suspect on in
  knowledge distillation: never in P, never in Q.
* the rest R: independent model k trains on its own random ``independent_per_class`` images
  per class of R (part B_k, seeded by k) from its own initial weights: it never saw P.

Owner models (several seeds, all trained on A) and their attacked copies (fine-tuning as in the
paper, pruning, int8 quantization, weight noise, distillation, probability-only access) give the
true positives; independent models give the false positives.  Every model is cached in
``training.cache_folder() / "beyond"``, keyed by its settings, and so is every model's
measurement: ``python -m pmi_tutorial.study --out book/results`` resumes where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import _validate as V

RESULT_FORMAT = "pmi-tutorial-beyond"
RESULT_VERSION = 1
FILES = {"paper_rule": "beyond_paper_rule.json", "tests": "beyond_tests.json",
         "summary": "beyond_summary.json"}
ATTACKS = ("finetune", "prune", "quantize", "noise", "distill", "logprob")
NEGATIVES = ("independent", "resplit")  # models that never saw P (the rest: owner-derived)
ATTACK_TITLES = {
    "owner": "owner (no attack)", "finetune": "fine-tuning (paper)", "prune": "pruning",
    "quantize": "int8 quantization", "noise": "weight noise", "distill": "distillation",
    "logprob": "probabilities only",
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
        return json.loads(json.dumps(asdict(self)))


#: the committed run: 20 independent and 5 owner models per architecture, on a 2-core CPU
CPU = StudyConfig()
#: the book's live slice: 3 independent MLPs and 1 owner, no attacks, the cheap statistics
TINY = StudyConfig(name="tiny", archs=("mlp",), n_independent=3, n_owners=1, attacks=(),
                   resplit=False,
                   ms=(3,), ns=(100,), statistics=("pmi", "mmd", "directional"), test_trials=20)
CONFIGS = {c.name: c for c in (CPU, TINY)}

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


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


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
    t, s = _as_index(train_pos), _as_index(select_pos)
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
    return replace(out, val_x=split.val_x[_as_index(v)], val_y=split.val_y[_as_index(v)],
                   val_index=split.val_index[v])


def _as_index(pos):
    import torch

    return torch.as_tensor(np.asarray(pos, dtype=np.int64))


@dataclass
class Study:
    """The owner split, its parts and the pool split of one :class:`Design`."""

    design: Design
    split: object
    parts: Parts
    pools: object  # Split: train = A (P), val = Q

    def class_pools(self, split=None) -> dict:
        """``{r: (P, Q)}`` image pools (of ``split``, default the study's pool split)."""
        from .data import all_class_pools

        return {r: (p.P, p.Q) for r, p in all_class_pools(split or self.pools).items()}


def prepare(design: Design = Design(), root=None) -> Study:
    """Load the owner split of ``design.dataset`` and cut it (:func:`make_parts`)."""
    from .data import owner_split

    split = owner_split(design.dataset, seed=design.split_seed, root=root)
    parts = make_parts(split, design)
    return Study(design, split, parts, pool_split(split, parts, design))


# --------------------------------------------------------------------------- models (cached)


def _folder(cache_dir) -> Path:
    from .training import cache_folder

    return cache_folder(cache_dir) / "beyond"


def _cached_model(folder: Path, key: str, settings: dict, make):
    """Load ``folder/key.pt``, or ``make(partial_path)`` -> (model, state) and save it."""
    from .checkpoint import load_checkpoint, save_checkpoint, sidecar_path

    final = folder / f"{key}.pt"
    if final.is_file():
        model, _, state = load_checkpoint(final)
        return model.eval(), state or {}
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{key}.training.pt"
    t0 = time.process_time()
    model, state = make(partial)
    state = {**state, "cpu_seconds": time.process_time() - t0}
    save_checkpoint(final, model, {"study": settings}, state)
    for p in (partial, sidecar_path(partial)):
        p.unlink(missing_ok=True)
    return model.eval(), state


def _trained(study: Study, cfg: StudyConfig, arch, role, k, train_pos, seed, cache_dir):
    from .models import build_model
    from .training import train

    settings = {"arch": arch, "role": role, "index": int(k), "seed": int(seed),
                "design": asdict(study.design), "epochs": cfg.epochs, "width": cfg.width}

    def make(partial):
        model = build_model(arch, num_classes=study.split.num_classes, width=cfg.width, seed=seed)
        res = train(model, training_split(study.split, train_pos, study.parts.S), cfg.epochs,
                    seed=seed, checkpoint_path=partial, device="cpu", progress=False)
        return res.model, {"best_epoch": res.best_epoch, "select_acc": res.best_val_acc}

    key = f"{arch}_{role}{k}_{_digest(settings)}"
    model, state = _cached_model(_folder(cache_dir), key, settings, make)
    return model, key, settings, state


def independent_model(study, cfg, arch, k, cache_dir=None):
    """Independent model k: trained on part B_k (never on P) from seed 1000 + k."""
    pos = independent_part(study.split, study.parts, study.design, k)
    return _trained(study, cfg, arch, "independent", k, pos, 1000 + int(k), cache_dir)


def owner_model(study, cfg, arch, k, cache_dir=None):
    """Owner model k: trained on part A from seed k."""
    return _trained(study, cfg, arch, "owner", k, study.parts.A, int(k), cache_dir)


def attacked(study, cfg, owner, owner_key, owner_settings, attack, k, cache_dir=None):
    """The attacked copy of owner model k: ``(model, pool split, feature transform)``.

    The pool split changes only for fine-tuning (its 20% of the validation set leaves Q);
    ``logprob`` is the owner model itself seen through log-probabilities.
    """
    import torch

    from . import attacks
    from .models import build_model

    pools, transform = study.pools, None
    if attack == "prune":
        return attacks.prune(owner, cfg.prune_rate), pools, None
    if attack == "quantize":
        return attacks.quantize(owner, cfg.quantize_bits), pools, None
    if attack == "noise":
        return attacks.weight_noise(owner, cfg.noise_scale, seed=k), pools, None
    if attack == "logprob":
        return owner, pools, lambda z: torch.log_softmax(z, dim=1)
    if attack == "finetune":
        settings = {"base": owner_key, "attack": attack, "epochs": cfg.finetune_epochs,
                    "lr": cfg.finetune_lr, "fraction": cfg.finetune_fraction, "seed": k}
        _, rest = attacks.finetune_split(pools, cfg.finetune_fraction, seed=k)

        def make(_):
            res = attacks.fine_tune(owner, pools, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                                    fraction=cfg.finetune_fraction, seed=k, device="cpu")
            return res.model, {}

        model, _ = _cached_model(_folder(cache_dir), f"{owner_key}_ft_{_digest(settings)}",
                                 settings, make)
        return model, rest, None
    if attack == "distill":
        settings = {"base": owner_key, "attack": attack, "epochs": cfg.distill_epochs,
                    "temperature": cfg.distill_temperature, "seed": 500 + k,
                    "images": "part C"}
        x = study.split.train_x[_as_index(study.parts.C)]

        def make(_):
            student = build_model(owner_settings["arch"], num_classes=study.split.num_classes,
                                  width=cfg.width, seed=500 + k)
            return attacks.distill(owner, student, x, epochs=cfg.distill_epochs,
                                   temperature=cfg.distill_temperature, seed=500 + k,
                                   device="cpu"), {}

        model, _ = _cached_model(_folder(cache_dir), f"{owner_key}_kd_{_digest(settings)}",
                                 settings, make)
        return model, pools, None
    raise ValueError(f"unknown attack {attack!r}; use one of {', '.join(ATTACKS)}")


# --------------------------------------------------------------------------- measurements


def _test_options(cfg: StudyConfig, statistic: str, c: int) -> dict:
    if statistic == "rbf":
        return dict(B=cfg.rbf_B, trials=cfg.rbf_trials, bandwidth=math.sqrt(2 * c), dtype="float32")
    return dict(B=cfg.B, trials=cfg.test_trials)


def measure(feature_pools, cfg: StudyConfig) -> dict:
    """The paper's rule on every (m, n) and the permutation p-values of one model's features.

    Returns ``{"acc": {"m3_n100": [acc_0, ..., acc_9], ...}, "tests": {statistic: {"pvalue",
    "observed", "per_class_pvalue"}}}``.
    """
    from . import fingerprint, stats

    acc = {}
    for m in cfg.ms:
        for n in cfg.ns:
            res = fingerprint.run_on_features(feature_pools, m, n, trials=cfg.trials, seed=cfg.seed)
            acc[f"m{m}_n{n}"] = [float(res.acc_by_class[r]) for r in sorted(res.acc_by_class)]
    c = next(iter(feature_pools.values()))[0].shape[1]
    tests = {}
    for name in cfg.statistics:
        pr = stats.permutation_test(feature_pools, name, seed=cfg.seed, m=cfg.test_m, n=cfg.test_n,
                                    **_test_options(cfg, name, c))
        tests[name] = {"pvalue": pr.pvalue, "observed": round(pr.observed, 6),
                       "per_class_pvalue": [round(pr.per_class_pvalue[r], 6)
                                            for r in sorted(pr.per_class_pvalue)]}
    return {"acc": acc, "tests": tests}


def _measure_settings(cfg: StudyConfig) -> dict:
    d = cfg.to_dict()
    keep = ("trials", "ms", "ns", "statistics", "test_m", "test_n", "B", "test_trials", "rbf_B",
            "rbf_trials", "seed")
    return {k: d[k] for k in keep}


def measured(model, pools_split, transform, key, cfg, cache_dir=None) -> dict:
    """:func:`measure` on ``model``'s features of the pools, cached by model key and settings."""
    from . import fingerprint
    from .data import all_class_pools
    from .experiments import write_json_atomic

    path = _folder(cache_dir) / "records" / f"{key}_{_digest(_measure_settings(cfg))}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.process_time()
    fp = fingerprint.pool_features(model, all_class_pools(pools_split), transform=transform)
    correct = sum(int((fQ.argmax(1) == r).sum()) for r, (_, fQ) in fp.items())
    record = {"val_acc": round(correct / sum(len(fQ) for _, fQ in fp.values()), 4),
              **measure(fp, cfg)}
    record["cpu_seconds"] = round(time.process_time() - t0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def iter_models(study: Study, cfg: StudyConfig, cache_dir=None):
    """Yield ``(info, model, pool split, transform, key)`` for every model of the study, in
    order: per architecture the independent models, then each owner followed by its copies."""
    for arch in cfg.archs:
        for k in range(cfg.n_independent):
            model, key, _, state = independent_model(study, cfg, arch, k, cache_dir)
            yield _info(arch, "independent", k, None, state), model, study.pools, None, key
        for k in range(cfg.n_independent if cfg.resplit else 0):
            model, key, _, _ = independent_model(study, cfg, arch, k, cache_dir)
            pools = pool_split(study.split, study.parts, study.design,
                               resplit_part(study.split, study.parts, study.design, k))
            yield _info(arch, "resplit", k, None, {}), model, pools, None, f"{key}_resplit"
        for k in range(cfg.n_owners):
            owner, key, settings, state = owner_model(study, cfg, arch, k, cache_dir)
            yield _info(arch, "owner", k, k, state), owner, study.pools, None, key
            for attack in cfg.attacks:
                model, pools, transform = attacked(study, cfg, owner, key, settings, attack, k,
                                                   cache_dir)
                yield (_info(arch, attack, k, k, {}), model, pools, transform,
                       f"{key}_{attack}_{_digest(_attack_settings(cfg, attack))}")


def _attack_settings(cfg, attack) -> dict:
    d = cfg.to_dict()
    prefix = {"finetune": "finetune_", "prune": "prune_", "quantize": "quantize_",
              "noise": "noise_", "distill": "distill_", "logprob": "none"}[attack]
    return {k: v for k, v in d.items() if k.startswith(prefix)}


def _info(arch, kind, k, owner, state) -> dict:
    return {"arch": arch, "kind": kind, "index": int(k), "owner": owner,
            "train_cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 2)}


# --------------------------------------------------------------------------- the run


def run_study(cfg: StudyConfig = CPU, out=None, cache_dir=None, root=None, progress=True,
              command=None) -> dict:
    """Train (or load), attack and measure every model; write the result files to ``out``.

    Returns ``{"paper_rule": ..., "tests": ..., "summary": ...}`` (the three files' contents).
    The files are rewritten atomically at most every 30 s while models are measured
    (``"complete": false``) and at the end, so an interrupted run leaves usable partial results
    and resumes from the caches.
    """
    import torch

    from .experiments import provenance

    torch.set_num_threads(1)
    prov = provenance(command)
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    study = prepare(cfg.design, root)
    records = []
    timing = {"run_wall_seconds": 0.0, "run_cpu_seconds": 0.0}
    last_write = time.perf_counter()
    for info, model, pools, transform, key in iter_models(study, cfg, cache_dir):
        rec = {**info, **measured(model, pools, transform, key, cfg, cache_dir)}
        records.append(rec)
        if progress:
            p = ", ".join(f"{s} {t['pvalue']:.3f}" for s, t in rec["tests"].items())
            print(f"{info['arch']:6s} {info['kind']:11s} {info['index']:2d}: val acc "
                  f"{rec['val_acc']:.3f}; p-values {p}", flush=True)
        timing = {"run_wall_seconds": round(time.perf_counter() - t_wall, 1),
                  "run_cpu_seconds": round(time.process_time() - t_cpu, 1)}
        if out is not None and time.perf_counter() - last_write > 30:  # partial results
            write_results(result_files(records, cfg, {**prov, **timing}, complete=False), out)
            last_write = time.perf_counter()
    files = result_files(records, cfg, {**prov, **timing}, complete=True)
    if out is not None:
        write_results(files, out)
    return files


def result_files(records, cfg: StudyConfig, prov: dict, complete: bool) -> dict:
    """The contents of the three result files (see :data:`FILES`)."""
    head = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "settings": cfg.to_dict(),
            "reduced": list(REDUCED) if cfg.name == "cpu" else [], "provenance": prov,
            "complete": complete,
            "compute_cpu_seconds": round(sum(r.get("train_cpu_seconds", 0) + r.get("cpu_seconds", 0)
                                             for r in records), 1)}
    base = ("arch", "kind", "index", "owner", "val_acc")
    return {
        "paper_rule": {**head, "models": [{**{k: r[k] for k in base}, "acc": r["acc"]}
                                          for r in records]},
        "tests": {**head, "models": [{**{k: r[k] for k in base}, "tests": r["tests"]}
                                     for r in records]},
        "summary": {**head, "summary": summarize(records, cfg)},
    }


def write_results(files: dict, out) -> None:
    from .experiments import write_json_atomic

    for name, content in files.items():
        write_json_atomic(Path(out) / FILES[name], content)


def load_results(folder) -> tuple[list, StudyConfig, dict]:
    """Read the result files in ``folder``: ``(records, config, files)``.

    ``records`` merges the per-model entries of ``beyond_paper_rule.json`` and
    ``beyond_tests.json``; ``config`` is the :class:`StudyConfig` they were made with.
    """
    files = {}
    for name, fname in FILES.items():
        path = Path(folder) / fname
        if not path.is_file():
            raise FileNotFoundError(f"no result file {path}; run `python -m pmi_tutorial.study "
                                    f"--out {folder}`")
        files[name] = json.loads(path.read_text())
        head = (files[name].get("format"), files[name].get("version"))
        if head != (RESULT_FORMAT, RESULT_VERSION):
            raise ValueError(f"{path} is not a version-{RESULT_VERSION} result file of this "
                             "study; run the study again")
    records = [{**a, **b} for a, b in zip(files["paper_rule"]["models"], files["tests"]["models"])]
    return records, config_from_dict(files["summary"]["settings"]), files


def config_from_dict(d: dict) -> StudyConfig:
    d = dict(d)
    d["design"] = Design(**d["design"])
    return StudyConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --------------------------------------------------------------------------- the numbers


def paper_rule_accuses(acc_by_class, m: int, rho: float) -> bool:
    r"""Eq. 13-14: does :math:`\max_r acc_r - 1/m \ge \rho` accuse this model?"""
    from .fingerprint import summarize as summarize_acc, verify

    return verify(summarize_acc(list(acc_by_class), m).acc_opt, m, rho)


def paper_rule_fpr(acc_lists, m: int, rho: float) -> float:
    """Fraction of models (each a list of acc_r over classes) that the paper's rule accuses."""
    acc_lists = list(acc_lists)
    if not acc_lists:
        raise ValueError("no models given; pass one list of acc_r per independent model")
    return float(np.mean([paper_rule_accuses(a, m, rho) for a in acc_lists]))


def naive_pvalue(acc_by_class, m: int, trials: int, bonferroni: bool = False) -> float:
    """The naive test at r_opt: the smallest per-class binomial p-value (optionally x c)."""
    from .stats import binomial_pvalue

    p = [binomial_pvalue(a, trials, m) for a in acc_by_class]
    return min(1.0, len(p) * min(p)) if bonferroni else min(p)


def rejection_rate(pvalues, alpha: float) -> float:
    """Fraction of p-values <= alpha (the false-positive rate on independent models)."""
    p = V.as_float_array(list(pvalues), "pvalues", ndim=1)
    if p.size == 0:
        raise ValueError("no p-values given")
    return float(np.mean(p <= alpha + 1e-12))


def _groups(records, arch):
    out = {}
    for r in records:
        if r["arch"] == arch:
            out.setdefault(r["kind"], []).append(r)
    return out


def _rule_rates(accs, m, cfg, prefix) -> dict:
    """FPR of the paper's rule and of the naive binomial test on models with these acc_r."""
    out = {}
    if not accs:
        return out
    for rho in cfg.rhos:
        out[f"{prefix}fpr_rho{rho:g}"] = paper_rule_fpr(accs, m, rho)
    for alpha in cfg.alphas:
        out[f"{prefix}naive_fpr_a{alpha:g}"] = rejection_rate(
            [naive_pvalue(a, m, cfg.trials) for a in accs], alpha)
        out[f"{prefix}naive_bonferroni_fpr_a{alpha:g}"] = rejection_rate(
            [naive_pvalue(a, m, cfg.trials, True) for a in accs], alpha)
    return out


def summarize(records, cfg: StudyConfig) -> dict:
    """Per architecture: the paper's rule (FPR on independent models, TPR on owners, the naive
    binomial test), and per statistic the permutation test's FPR, TPR, AUC, TPR at FPR 1% / 5%
    and the verdict on every attacked copy.  Keys with ``resplit_`` hold the same rates for the
    independent models tested against their own random P (:func:`resplit_part`)."""
    from . import stats

    out = {}
    for arch in dict.fromkeys(r["arch"] for r in records):
        g = _groups(records, arch)
        ind, own, res = g.get("independent", []), g.get("owner", []), g.get("resplit", [])
        rule = {}
        for key in (ind or own or [{"acc": {}}])[0]["acc"]:
            m = int(key[1:].split("_")[0])
            accs = [r["acc"][key] for r in ind]
            cell = {"acc_opt_independent": [max(a) for a in accs],
                    "mean_acc_independent": [round(float(np.mean(a)), 4) for a in accs]}
            cell.update(_rule_rates(accs, m, cfg, ""))
            cell.update(_rule_rates([r["acc"][key] for r in res], m, cfg, "resplit_"))
            for rho in cfg.rhos if own else ():
                cell[f"tpr_owner_rho{rho:g}"] = paper_rule_fpr([r["acc"][key] for r in own], m, rho)
            rule[key] = cell
        tests = {}
        derived = [k for k in g if k not in NEGATIVES]
        for s in cfg.statistics:
            p_ind = [r["tests"][s]["pvalue"] for r in ind if s in r["tests"]]
            p_res = [r["tests"][s]["pvalue"] for r in res if s in r["tests"]]
            cell = {"verdicts": {}}
            for kind in derived:
                p = [r["tests"][s]["pvalue"] for r in g[kind] if s in r["tests"]]
                if p:
                    cell["verdicts"][kind] = {"pvalues": p, **{
                        f"detected_a{a:g}": rejection_rate(p, a) for a in cfg.alphas}}
            if p_res:
                cell.update({f"resplit_fpr_a{a:g}": rejection_rate(p_res, a) for a in cfg.alphas})
            if p_ind:
                cell.update({f"fpr_a{a:g}": rejection_rate(p_ind, a) for a in cfg.alphas})
                p_pos = [p for v in cell["verdicts"].values() for p in v["pvalues"]]
                if p_pos:
                    pos, neg = -np.log10(p_pos), -np.log10(p_ind)
                    cell["auc"] = stats.auc(pos, neg)
                    for f in (0.01, 0.05):
                        cell[f"tpr_at_fpr{f:g}"] = stats.tpr_at_fpr(pos, neg, f)
            tests[s] = cell
        out[arch] = {"n_independent": len(ind), "n_resplit": len(res), "n_owners": len(own),
                     "paper_rule": rule, "tests": tests}
    return out


# --------------------------------------------------------------------------- figures


def plot_paper_rule_fpr(summary: dict, arch: str, ax=None, rho=None):
    """Bars: how often the paper's rule accuses an independent model, per (m, n)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    rule = summary[arch]["paper_rule"]
    rhos = sorted({k.split("rho")[1] for c in rule.values() for k in c if k.startswith("fpr_rho")})
    rho = rhos[0] if rho is None else f"{rho:g}"
    ms = sorted({int(k[1:].split("_")[0]) for k in rule})
    ns = sorted({int(k.split("_n")[1]) for k in rule})
    w = 0.8 / len(ms)
    for i, m in enumerate(ms):
        vals = [rule[f"m{m}_n{n}"][f"fpr_rho{rho}"] for n in ns]
        ax.bar(np.arange(len(ns)) + (i - (len(ms) - 1) / 2) * w, vals, w, label=f"m = {m}")
    ax.set_xticks(range(len(ns)), [f"n = {n}" for n in ns])
    ax.set_ylim(0, 1)
    ax.set_ylabel("false-positive rate")
    ax.set_title(f"{_title(arch)}: paper's rule, rho = {rho}")
    ax.legend(fontsize=8)
    return ax


def plot_acc_distribution(records, arch: str, key="m3_n100", ax=None, rho=0.1):
    """Histograms of acc_{r_opt} for independent and owner models, with 1/m and 1/m + rho."""
    import matplotlib.pyplot as plt

    from .plotting import MEMBER_COLOR, NEUTRAL_COLOR, NONMEMBER_COLOR

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    g = _groups(records, arch)
    m = int(key[1:].split("_")[0])
    bins = np.linspace(0, 1, 41)
    for kind, color in (("independent", NONMEMBER_COLOR), ("owner", MEMBER_COLOR)):
        accs = [r["acc"][key] for r in g.get(kind, [])]
        ax.hist([max(a) for a in accs], bins, color=color, alpha=0.6,
                label=f"{kind}: $acc_{{r_{{opt}}}}$")
        ax.hist([np.mean(a) for a in accs], bins, color=color, alpha=0.9, histtype="step",
                linestyle="--", label=f"{kind}: mean $acc_r$")
    ax.axvline(1 / m, color=NEUTRAL_COLOR, lw=1)
    ax.axvline(1 / m + rho, color="black", lw=1.5, linestyle=":")
    ax.set_xlabel(f"accuracy ({key.replace('_', ', ').replace('m', 'm = ').replace('n', 'n = ')})")
    ax.set_ylabel("models")
    ax.set_title(f"{_title(arch)}: chance 1/m (grey), 1/m + rho (dotted)")
    ax.legend(fontsize=7)
    return ax


def plot_roc(records, arch: str, statistics, ax=None):
    """ROC of "owner-derived (owners and attacked copies) vs independent", score -log10 p."""
    import matplotlib.pyplot as plt

    from . import stats

    ax = ax or plt.subplots(figsize=(4, 4))[1]
    g = _groups(records, arch)
    for s in statistics:
        neg = [-math.log10(r["tests"][s]["pvalue"]) for r in g.get("independent", [])]
        pos = [-math.log10(r["tests"][s]["pvalue"]) for k, rs in g.items() if k not in NEGATIVES
               for r in rs]
        fpr, tpr, _ = stats.roc_curve(pos, neg)
        ax.step(fpr, tpr, where="post", label=f"{s} (AUC {stats.auc(pos, neg):.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, linestyle=":")
    ax.set_xlabel("false-positive rate (independent models)")
    ax.set_ylabel("true-positive rate (owner-derived)")
    ax.set_title(f"{_title(arch)}: ROC of the p-values")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_pvalue_hist(records, arch: str, statistics, axes=None, kind="independent"):
    """Histograms of the permutation p-values of the independent models (uniform if valid);
    ``kind="resplit"``: each tested against its own random P."""
    import matplotlib.pyplot as plt

    from .plotting import NONMEMBER_COLOR

    if axes is None:
        axes = plt.subplots(1, len(statistics), figsize=(2.4 * len(statistics), 2.4),
                            sharey=True)[1]
    axes = np.atleast_1d(axes)
    ind = _groups(records, arch).get(kind, [])
    for ax, s in zip(axes, statistics):
        ax.hist([r["tests"][s]["pvalue"] for r in ind], np.linspace(0, 1, 11),
                color=NONMEMBER_COLOR, alpha=0.8)
        ax.axhline(len(ind) / 10, color="black", lw=1, linestyle=":")
        ax.set_title(s)
        ax.set_xlabel("p-value")
    axes[0].set_ylabel(f"{_title(arch)}: {kind}")
    return axes


def verdict_table(summary: dict, arch: str, statistics, alpha=0.05) -> str:
    """Markdown table: per owner group / attack, detected copies at ``alpha``, per statistic."""
    tests = summary[arch]["tests"]
    kinds = list(dict.fromkeys(k for s in statistics for k in tests[s]["verdicts"]))
    head = "| model | " + " | ".join(statistics) + " |"
    lines = [head, "|" + " --- |" * (len(statistics) + 1)]
    for kind in kinds:
        cells = []
        for s in statistics:
            v = tests[s]["verdicts"].get(kind)
            if v is None:
                cells.append("")
                continue
            k = sum(p <= alpha + 1e-12 for p in v["pvalues"])
            cells.append(f"{k}/{len(v['pvalues'])} (max p {max(v['pvalues']):.3f})")
        lines.append(f"| {ATTACK_TITLES.get(kind, kind)} | " + " | ".join(cells) + " |")
    n_ind = summary[arch]["n_independent"]
    cells = [f"{round(tests[s][f'fpr_a{alpha:g}'] * n_ind)}/{n_ind}" for s in statistics]
    lines.append("| **independent, owner's P (false positives)** | " + " | ".join(cells) + " |")
    n_res = summary[arch].get("n_resplit", 0)
    if n_res:
        cells = [f"{round(tests[s][f'resplit_fpr_a{alpha:g}'] * n_res)}/{n_res}"
                 for s in statistics]
        lines.append("| **independent, own random P (false positives)** | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def _title(arch):
    from .experiments import MODEL_TITLES

    return MODEL_TITLES.get(arch, arch)


# --------------------------------------------------------------------------- command line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pmi_tutorial.study",
        description="False positives of PMI: train independent, owner and attacked models, "
                    "measure the paper's rule and the permutation tests, write beyond_*.json")
    ap.add_argument("--out", default="book/results", help="folder for the result files")
    ap.add_argument("--config", default="cpu", choices=sorted(CONFIGS))
    ap.add_argument("--archs", nargs="+", default=None, help="e.g. mlp lenet5")
    ap.add_argument("--n-independent", type=int, default=None)
    ap.add_argument("--n-owners", type=int, default=None)
    ap.add_argument("--cache-dir", default=None, help="default: $PMI_CACHE_DIR or ~/.cache")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    cfg = CONFIGS[args.config]
    changes = {k: v for k, v in (("archs", tuple(args.archs) if args.archs else None),
                                 ("n_independent", args.n_independent),
                                 ("n_owners", args.n_owners)) if v is not None}
    cfg = replace(cfg, **changes)
    command = "python -m pmi_tutorial.study " + " ".join(sys.argv[1:] if argv is None else argv)
    files = run_study(cfg, out=args.out, cache_dir=args.cache_dir, progress=not args.quiet,
                      command=command.strip())
    prov = files["summary"]["provenance"]
    print(f"wrote {', '.join(FILES.values())} to {args.out} in {prov['run_wall_seconds']} s "
          f"({prov['run_cpu_seconds']} CPU s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
