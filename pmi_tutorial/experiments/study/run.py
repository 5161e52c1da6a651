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

Owner models (several seeds, all trained on A) and their attacked copies (the attacks of the
registry :data:`pmi_tutorial.attacks.ATTACKS` named in ``StudyConfig.attacks``) give the true
positives; independent models give the false positives.  Every model is cached in
``training.cache_folder() / "beyond"``, keyed by its settings, and so is every model's
measurement: ``python -m pmi_tutorial study --out pmi_tutorial/results`` resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from ... import files as F
from ...data import as_index
from ...files import digest
from .design import (CONFIGURED, CPU, REDUCED, Study, StudyConfig,
                     config_from_dict, independent_part, pool_split, prepare, resplit_part,
                     training_split)
from .. import runner
from ..runner import Experiment, Task
from .summary import cell_key, summarize_records

RESULT_FORMAT = "pmi-tutorial-beyond"
RESULT_VERSION = F.RESULT_FORMATS[RESULT_FORMAT]
#: the three result files of a run, by part; committed as ``pmi_tutorial/results/beyond_*.json``
FILES = {"paper_rule": "beyond_paper_rule.json", "tests": "beyond_tests.json",
         "summary": "beyond_summary.json"}

# --------------------------------------------------------------------------- models (cached)


def model_folder(cache_dir) -> Path:
    """Where this study caches its models and per-suspect records."""
    from ...training import cache_folder

    return cache_folder(cache_dir) / "beyond"


def train_cached(folder: Path, key: str, settings: dict, make):
    """``folder/key.pt`` through the model cache (:func:`pmi_tutorial.training.load_or_train`):
    ``make(partial)`` -> (model, state) trains it, its CPU seconds are kept in the state."""
    from ...training import load_or_train

    def train_and_time(partial):
        t0 = time.process_time()
        model, state = make(partial)
        return model, {"study": settings}, {**state, "cpu_seconds": time.process_time() - t0}

    model, _, state, _ = load_or_train(folder / f"{key}.pt", train_and_time)
    return model, state


def _model_settings(study: Study, cfg: StudyConfig, arch, role, k, seed) -> dict:
    return {"arch": arch, "role": role, "index": int(k), "seed": int(seed),
            "design": asdict(study.design), "epochs": cfg.epochs, "width": cfg.width}


def model_key(study: Study, cfg: StudyConfig, arch, role, k) -> str:
    """The cache key of a model of the study (derived from its settings; nothing is trained)."""
    seed = 1000 + int(k) if role == "independent" else int(k)
    return f"{arch}_{role}{k}_{digest(_model_settings(study, cfg, arch, role, k, seed))}"


def _trained(study: Study, cfg: StudyConfig, arch, role, k, train_pos, seed, cache_dir):
    from ...models import build_model
    from ...training import train

    settings = _model_settings(study, cfg, arch, role, k, seed)

    def make(partial):
        model = build_model(arch, num_classes=study.split.num_classes, width=cfg.width, seed=seed)
        res = train(model, training_split(study.split, train_pos, study.parts.S), cfg.epochs,
                    seed=seed, checkpoint_path=partial, device="cpu", progress=False)
        return res.model, {"best_epoch": res.best_epoch, "select_acc": res.best_val_acc}

    key = f"{arch}_{role}{k}_{digest(settings)}"
    model, state = train_cached(model_folder(cache_dir), key, settings, make)
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

    ``attack`` is a name of the registry :data:`pmi_tutorial.attacks.ATTACKS`, run with this
    configuration's settings (:func:`attack_settings`); an attack that trains is cached.  The
    pool split changes when the attack used validation images (fine-tuning: they leave Q); a
    copy that answers with probabilities only is seen through their logarithm.
    """
    import torch

    from ... import attacks

    entry = attacks.get(attack)
    pools = study.pools
    distilling = not entry.weights
    if distilling and (cfg.width != 1.0 or cfg.distill_temperature != 1.0):
        raise ValueError(f"attack {attack!r} trains a student of width 1 at temperature 1; set "
                         "width=1.0 and distill_temperature=1.0 or leave the attack out")
    ctx = attacks.AttackContext(
        split=pools, arch=owner_settings["arch"], seed=500 + k if distilling else k,
        query_images=study.split.train_x[as_index(study.parts.C)] if distilling else None,
        num_classes=study.split.num_classes)
    settings = attack_settings(cfg, attack)
    if entry.trains:
        cache = {"base": owner_key, "attack": attack, **settings, "seed": ctx.seed}
        model, _ = train_cached(model_folder(cache_dir), f"{owner_key}_{attack}_{digest(cache)}",
                                cache, lambda _: (entry(owner, ctx, **settings).model, {}))
        out = attacks.Attacked(model)
        if "fraction" in settings:  # fine-tuning: its validation images (seeded) leave Q
            _, pools = attacks.finetune_split(pools, settings["fraction"], seed=ctx.seed)
    else:
        out = entry(owner, ctx, **settings)
        if out.keep_q is not None:
            raise ValueError(f"attack {attack!r} changes Q without training; the study "
                             "handles that for the fine-tuning attacks only")
    transform = (lambda z: torch.log_softmax(z, dim=1)) if out.output == "probabilities" else None
    return out.model, pools, transform


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
    from ... import fingerprint, stats

    acc = {}
    for m in cfg.ms:
        for n in cfg.ns:
            res = fingerprint.run_on_features(feature_pools, m, n, trials=cfg.trials, seed=cfg.seed)
            acc[cell_key(m, n)] = [float(res.acc_by_class[r]) for r in sorted(res.acc_by_class)]
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
    from ... import fingerprint
    from ...data import all_class_pools

    path = model_folder(cache_dir) / "records" / f"{key}_{digest(_measure_settings(cfg))}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.process_time()
    fp = fingerprint.pool_features(model, all_class_pools(pools_split), transform=transform)
    correct = sum(int((fQ.argmax(1) == r).sum()) for r, (_, fQ) in fp.items())
    record = {"val_acc": round(correct / sum(len(fQ) for _, fQ in fp.values()), 4),
              **measure(fp, cfg)}
    record["cpu_seconds"] = round(time.process_time() - t0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    F.write_json_atomic(path, record)
    return record


def suspects(cfg: StudyConfig) -> list:
    """``(arch, kind, k)`` of every suspect the study measures, in order: per architecture the
    independent models, their resplit tests, then each owner followed by its attacked copies."""
    out = []
    for arch in cfg.archs:
        out += [(arch, "independent", k) for k in range(cfg.n_independent)]
        out += [(arch, "resplit", k) for k in range(cfg.n_independent if cfg.resplit else 0)]
        for k in range(cfg.n_owners):
            out += [(arch, "owner", k)] + [(arch, attack, k) for attack in cfg.attacks]
    return out


def suspect_key(study: Study, cfg: StudyConfig, arch, kind, k) -> str:
    """The key of one suspect's measurement (without training anything)."""
    if kind in ("independent", "resplit"):
        key = model_key(study, cfg, arch, "independent", k)
        return key if kind == "independent" else f"{key}_resplit"
    key = model_key(study, cfg, arch, "owner", k)
    return key if kind == "owner" else f"{key}_{kind}_{digest(attack_settings(cfg, kind))}"


def suspect(study: Study, cfg: StudyConfig, arch, kind, k, cache_dir=None):
    """``(info, model, pool split, transform, key)`` of one suspect (trained if not cached)."""
    if kind in ("independent", "resplit"):
        model, key, _, state = independent_model(study, cfg, arch, k, cache_dir)
        if kind == "independent":
            return _info(arch, kind, k, None, state), model, study.pools, None, key
        pools = pool_split(study.split, study.parts, study.design,
                           resplit_part(study.split, study.parts, study.design, k))
        return _info(arch, kind, k, None, {}), model, pools, None, f"{key}_resplit"
    owner, key, settings, state = owner_model(study, cfg, arch, k, cache_dir)
    if kind == "owner":
        return _info(arch, kind, k, k, state), owner, study.pools, None, key
    model, pools, transform = attacked(study, cfg, owner, key, settings, kind, k, cache_dir)
    return (_info(arch, kind, k, k, {}), model, pools, transform,
            f"{key}_{kind}_{digest(attack_settings(cfg, kind))}")


def iter_models(study: Study, cfg: StudyConfig, cache_dir=None):
    """Yield :func:`suspect` for every entry of :func:`suspects`, in order."""
    for arch, kind, k in suspects(cfg):
        yield suspect(study, cfg, arch, kind, k, cache_dir)


def attack_settings(cfg, attack) -> dict:
    """The settings of the registered ``attack`` in this configuration: the registry's, with
    the fields of :data:`.design.CONFIGURED` in their place."""
    from ... import attacks

    d = cfg.to_dict()
    own = {name: d[field] for name, field in CONFIGURED.get(attack, {}).items()}
    return {**attacks.get(attack).settings, **own}


def _info(arch, kind, k, owner, state) -> dict:
    return {"arch": arch, "kind": kind, "index": int(k), "owner": owner,
            "train_cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 2)}


# --------------------------------------------------------------------------- the run


@functools.lru_cache(maxsize=2)
def cached_study(design, root) -> Study:
    return prepare(design, root)


def train_task(cfg: StudyConfig, arch, role, k, root=None, cache_dir=None) -> dict:
    """Runner task: train (or load) independent or owner model k of ``arch``."""
    import torch

    torch.set_num_threads(1)
    make = independent_model if role == "independent" else owner_model
    _, key, _, state = make(cached_study(cfg.design, root), cfg, arch, k, cache_dir)
    return {"model": key, "train_cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 2)}


def measure_task(cfg: StudyConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: the record of one suspect (:func:`suspect`, then :func:`measured`)."""
    import torch

    torch.set_num_threads(1)
    info, model, pools, transform, key = suspect(cached_study(cfg.design, root), cfg, arch, kind, k,
                                                 cache_dir)
    return {**info, **measured(model, pools, transform, key, cfg, cache_dir)}


def describe(rec: dict) -> str:
    """The progress line of one trained model or measured suspect."""
    if "tests" not in rec:
        return f"trained {rec['model']} ({rec['train_cpu_seconds']} CPU s)"
    p = ", ".join(f"{s} {t['pvalue']:.3f}" for s, t in rec["tests"].items())
    return (f"{rec['arch']:6s} {rec['kind']:11s} {rec['index']:2d}: val acc {rec['val_acc']:.3f}; "
            f"p-values {p}")


def experiment(cfg: StudyConfig = CPU, cache_dir=None, root=None, write=None) -> Experiment:
    """The study as a runner plan: stage 1 trains the independent and owner models, stage 2
    measures every suspect (training the attacked copies it needs).  ``write(records,
    provenance, complete)`` receives the measured records (see :func:`runner.run`)."""
    study = cached_study(cfg.design, root)
    root = None if root is None else str(root)
    cache = None if cache_dir is None else str(cache_dir)
    train = [Task(model_key(study, cfg, arch, role, k), train_task, (cfg, arch, role, k, root, cache))
             for arch in cfg.archs for role, n in (("independent", cfg.n_independent),
                                                   ("owner", cfg.n_owners)) for k in range(n)]
    settings = digest(_measure_settings(cfg))
    measure_ = [Task(f"{suspect_key(study, cfg, arch, kind, k)}_{settings}", measure_task,
                     (cfg, arch, kind, k, root, cache)) for arch, kind, k in suspects(cfg)]
    return Experiment("study", [train, measure_], write=write, describe=describe,
                      cache_dir=cache_dir)


def run_study(cfg: StudyConfig = CPU, out=None, cache_dir=None, root=None, progress=True,
              command=None, engine=None) -> dict:
    """Train (or load), attack and measure every model; write the result files to ``out``.

    Returns ``{"paper_rule": ..., "tests": ..., "summary": ...}`` (the three files' contents).
    Runs on :mod:`pmi_tutorial.experiments.runner`: in process by default, or on ``engine``
    (``runner.engine(workers=2)``, a Dask cluster).  Every measured suspect is recorded as it
    finishes; the files are rewritten at most every 30 s (``"complete": false``) and at the
    end, so an interrupted run leaves usable partial results and resumes from the caches.
    """
    import torch

    torch.set_num_threads(1)
    last = {}

    def write(records, prov, complete):
        last["files"] = result_files(records, cfg, prov, complete)
        if out is not None:
            write_results(last["files"], out)

    exp = experiment(cfg, cache_dir, root, write)
    runner.run(exp, engine=engine, progress=progress,
               provenance=F.result_header(RESULT_FORMAT, command)["provenance"])
    return last["files"]


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
        "summary": {**head, "summary": summarize_records(records, cfg)},
    }


def resummarize(folder, command=None) -> dict:
    """Recompute ``beyond_summary.json`` in ``folder`` from the records of its other two files
    (no models); the run's provenance stays, ``"summary_recomputed"`` says what re-summarised."""
    records, cfg, files = load_results(folder)
    head = files["summary"]
    summary = {**result_files(records, cfg, head["provenance"], head["complete"])["summary"],
               "summary_recomputed": {"command": command, "git_commit": F.git_commit(),
                                      "date": F.now()}}
    F.write_json_atomic(Path(folder) / FILES["summary"], summary)
    return summary


def write_results(files: dict, out) -> None:
    """Write the three result files (:func:`result_files`) into the folder ``out``, atomically."""
    for name, content in files.items():
        F.write_json_atomic(Path(out) / FILES[name], content)


def load_results(folder=None) -> tuple[list, StudyConfig, dict]:
    """Read the study's result files: ``(records, config, files)``.

    ``folder=None`` reads the committed files (:func:`pmi_tutorial.files.committed_result`),
    otherwise the files a run wrote into ``folder``.  ``records`` merges the per-model entries
    of ``beyond_paper_rule.json`` and ``beyond_tests.json``; ``config`` is the
    :class:`StudyConfig` they were made with.
    """
    files = {}
    for name, fname in FILES.items():
        if folder is None:
            files[name] = F.committed_result(fname[:-len(".json")], RESULT_FORMAT)
            continue
        path = Path(folder) / fname
        if not path.is_file():
            raise FileNotFoundError(f"no result file {path}; run `python -m pmi_tutorial study "
                                    f"--out {folder}`")
        files[name] = F.read_result(path, RESULT_FORMAT)
    records = [{**a, **b} for a, b in zip(files["paper_rule"]["models"], files["tests"]["models"])]
    return records, config_from_dict(files["summary"]["settings"]), files


