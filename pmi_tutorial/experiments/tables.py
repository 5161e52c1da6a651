"""The paper's experiments as one resumable runner (Section IV; chapters "Reproducing Tables I
and II" and "Robustness").

``reproduce("table1", profile)`` sweeps m in {3, 4, 5} x n in {100, 200, 300} over every class r
with t trials on the cached model of each architecture; ``table3``/``table4`` do the same after
fine-tuning, ``figure2`` after pruning at each rate with m = 3.  Every finished cell is written
to the result file at once (atomically), so a sweep that is killed resumes where it stopped.
The file records the command, profile, settings, seed, git commit, hardware, library versions,
date and run time.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .. import _validate as V
from .. import files as F
from ..profiles import Profile, get_profile

RESULT_FORMAT = "pmi-tutorial-result"
RESULT_VERSION = F.RESULT_FORMATS[RESULT_FORMAT]


@dataclass(frozen=True)
class Spec:
    """One of the paper's experiments: its table, data set, models and the attack before PMI."""
    name: str
    title: str
    dataset: str | None  # None: both data sets (figure2)
    models: tuple
    condition: str  # "original", "finetune" or "prune"


EXPERIMENTS = {
    "table1": Spec("table1", "Table I", "mnist", ("mlp", "lenet5"), "original"),
    "table2": Spec("table2", "Table II", "cifar10", ("vgg19", "resnet34"), "original"),
    "table3": Spec("table3", "Table III", "mnist", ("mlp", "lenet5"), "finetune"),
    "table4": Spec("table4", "Table IV", "cifar10", ("vgg19", "resnet34"), "finetune"),
    "figure2": Spec("figure2", "Figure 2", None, ("mlp", "lenet5", "vgg19", "resnet34"), "prune"),
}

MODEL_TITLES = {"mlp": "MLP", "lenet5": "LeNet-5", "vgg19": "VGG-19", "resnet34": "ResNet-34"}


def get_spec(name: str) -> Spec:
    """The :class:`Spec` of experiment ``name`` (one of :data:`EXPERIMENTS`)."""
    return EXPERIMENTS[V.check_choice(name, EXPERIMENTS, "experiment")]


def paper_table(name: str) -> dict:
    """The paper's numbers for Tables I-IV: ``{(model, m, n): (r_opt, acc_r_opt, mean_acc_r)}``."""
    text = resources.files("pmi_tutorial.resources").joinpath("paper_tables.json").read_text()
    tables = json.loads(text)["tables"]
    if name not in tables:
        return {}
    return {(row[0], row[1], row[2]): tuple(row[3:6]) for row in tables[name]["rows"]}


# --------------------------------------------------------------------------- result files


def load_result(path) -> dict:
    """Read a table result file (:func:`pmi_tutorial.files.read_result`), checking its cells."""
    return check_table(F.read_result(path, RESULT_FORMAT), path)


def check_table(result: dict, where) -> dict:
    """Check that a result file of a sweep holds settings, models and a list of cells."""
    missing = [k for k in ("settings", "provenance", "models", "cells") if k not in result]
    if missing or not isinstance(result["cells"], list):
        raise ValueError(
            f"result file {where} lacks {', '.join(missing) or 'a list of cells'}; "
            "delete it and run the experiment again"
        )
    return result


def committed_table(name: str, profile: str) -> dict:
    """The committed result file of experiment ``name`` under ``profile`` (e.g. ``table1``,
    ``paper``), read through :func:`pmi_tutorial.files.committed_result`."""
    key = f"{name}_{profile}"
    return check_table(F.committed_result(key, RESULT_FORMAT), f"pmi_tutorial/results/{key}.json")


def result_path(out_dir, name: str, profile: Profile) -> Path:
    """The result file of experiment ``name`` under ``profile`` in ``out_dir``."""
    return Path(out_dir) / f"{name}_{profile.name}.json"


def _settings(spec: Spec, profile: Profile, seed: int, trials: int, classes=None) -> dict:
    """Everything that changes a cell's numbers, as it reads back from JSON (lists, not tuples)."""
    settings = {"experiment": spec.name, "profile": profile.to_dict(), "seed": seed, "trials": trials,
                "classes": None if classes is None else sorted(int(r) for r in classes)}
    return json.loads(json.dumps(settings))


def _cell_key(cell: dict) -> tuple:
    return (cell["model"], cell.get("rate"), cell["m"], cell["n"])


# --------------------------------------------------------------------------- the runner


def plan(spec: Spec, profile: Profile, models=None, ms=None, ns=None, rates=None) -> list[dict]:
    """Every cell of a sweep, in order: ``{"model", "m", "n"}`` plus ``"rate"`` for pruning."""
    models = tuple(models or spec.models)
    for model in models:
        if model not in spec.models:
            raise ValueError(
                f"model {model!r} is not part of {spec.name}; use some of {', '.join(spec.models)}"
            )
    ms = tuple(ms or ((3,) if spec.condition == "prune" else profile.ms))
    ns = tuple(ns or profile.ns)
    for m in ms:
        V.check_m(m)
    for n in ns:
        V.check_n(n)
    cells = []
    for model in models:
        if spec.condition == "prune":
            for rate in tuple(rates or profile.prune_rates):
                V.check_rate(rate)
                cells += [{"model": model, "rate": float(rate), "m": m, "n": n} for m in ms for n in ns]
        else:
            cells += [{"model": model, "m": m, "n": n} for m in ms for n in ns]
    return cells


def _model_info(model_name, profile, trained) -> dict:
    """What the result file says about the owner's model: settings, best epoch, the curves."""
    history = trained.history
    return {
        "epochs": profile.epochs[model_name],
        "width": profile.width[model_name],
        "best_epoch": trained.best_epoch,
        "best_val_acc": trained.best_val_acc,
        "n_train": len(trained.split.train_y),
        "n_val": len(trained.split.val_y),
        "trained_on": trained.settings.get("device"),
        "train_seconds": round(sum(h.get("seconds", 0.0) for h in history), 1),
        "val_acc_curve": [round(h["val_acc"], 4) for h in history],
        "train_acc_curve": [round(h["train_acc"], 4) for h in history],
    }


def _prepare_model(model_name, spec, profile, seed, cache_dir, progress=False):
    """Train or load the owner's model, apply the fine-tuning attack when the table asks for it."""
    from .. import attacks, training

    trained = training.cached_model(model_name, profile, seed=seed, cache_dir=cache_dir, progress=progress)
    info = _model_info(model_name, profile, trained)
    model, split = trained.model, trained.split
    if spec.condition == "finetune":
        tuned = attacks.fine_tune(
            model, split, epochs=profile.finetune_epochs, lr=profile.finetune_lr,
            fraction=profile.finetune_fraction, seed=seed, progress=progress,
        )
        model, split = tuned.model, tuned.split
        info.update(finetune_epochs=profile.finetune_epochs, finetune_lr=profile.finetune_lr,
                    finetune_samples=int(len(tuned.tuned_index)), val_acc_after=tuned.val_acc)
    return model, split, info


# --------------------------------------------------------------------------- runner tasks


def train_task(model_name: str, profile_json: str, seed: int, cache_dir=None) -> dict:
    """Runner task: train (or load) the owner's model of ``model_name`` under the profile."""
    from .. import training

    trained = training.cached_model(model_name, Profile(**json.loads(profile_json)), seed=seed,
                                    cache_dir=cache_dir, progress=False)
    return {"model": model_name, "best_epoch": trained.best_epoch}


@functools.lru_cache(maxsize=2)
def _features(name, profile_json, seed, cache_dir, model_name, rate, classes):
    """``(features of the pools, model info)`` of one (attacked) model, once per process."""
    from .. import attacks, data, fingerprint

    profile = Profile(**json.loads(profile_json))
    model, split, info = _prepare_model(model_name, get_spec(name), profile, seed, cache_dir)
    pools = data.all_class_pools(split)
    if classes is not None:
        missing = sorted(set(classes) - set(pools))
        if missing:
            raise ValueError(f"classes {missing} do not exist; use classes in 0..{len(pools) - 1}")
        pools = {r: pools[r] for r in classes}
    attacked = model if rate is None else attacks.prune(model, rate)
    if rate is not None:
        from ..training import evaluate

        info["val_acc_after_prune"] = {str(rate): evaluate(attacked, split.val_x, split.val_y)}
    return fingerprint.pool_features(attacked, pools), info


def cell_task(name, profile_json, seed, trials, classes, cache_dir, cell) -> dict:
    """Runner task: one cell of a sweep (acc_r for every class, Eq. 14-15)."""
    import torch

    from .. import fingerprint

    torch.set_num_threads(1)
    features, info = _features(name, profile_json, seed, cache_dir, cell["model"],
                               cell.get("rate"), classes)
    t0 = time.perf_counter()
    usable, skipped = feasible_classes(features, cell["m"], cell["n"])
    if usable:
        fr = fingerprint.run_on_features(usable, cell["m"], cell["n"], trials=trials, seed=seed)
        cell = dict(cell, r_opt=fr.r_opt, acc_r_opt=fr.acc_opt, mean_acc_r=fr.mean_acc,
                    acc_by_class={str(r): a for r, a in fr.acc_by_class.items()})
    else:
        cell = dict(cell, r_opt=None, acc_r_opt=None, mean_acc_r=None, acc_by_class={})
    if skipped:
        cell["skipped_classes"] = skipped
    cell["seconds"] = round(time.perf_counter() - t0, 3)
    return {"cell": cell, "info": info}


def _task_key(cell: dict, settings: dict) -> str:
    rate = "" if cell.get("rate") is None else f"_rate{cell['rate']}"
    return f"{cell['model']}{rate}_m{cell['m']}_n{cell['n']}_{F.digest(settings)}"


def reproduce(
    name: str,
    profile: Profile | str | None = None,
    out_dir="results",
    seed: int | None = None,
    trials: int | None = None,
    models=None,
    ms=None,
    ns=None,
    rates=None,
    classes=None,
    cache_dir=None,
    command: str | None = None,
    progress: bool = True,
    log=print,
    engine=None,
) -> dict:
    """Run (or resume) one of the paper's experiments and return its result dictionary.

    The sweep is a plan of the experiment runner (:mod:`.runner`; in process, or on
    ``engine``): stage 1 trains the owner's models, stage 2 computes one cell per task.  Cells
    already in the result file at ``out_dir/{name}_{profile}.json`` (or in the per-task cache)
    are skipped; the file is rewritten as soon as each new cell is done, so a killed sweep loses
    at most the cells it was on.  ``models``, ``ms``, ``ns`` and ``rates`` restrict the sweep to
    some cells (a later call can add the others to the same file); ``classes`` restricts every
    cell to some classes r and is part of the settings (a file holds cells of one class set
    only).  Every call is recorded in ``result["runs"]`` (command, git commit, hardware,
    versions, dates, seconds, cells done); ``result["provenance"]`` is the first of them.
    """
    from . import runner

    spec = get_spec(name)
    profile = profile if isinstance(profile, Profile) else get_profile(profile)
    seed = profile.seed if seed is None else int(seed)
    trials = V.check_positive_int(profile.trials if trials is None else trials, "trials")
    if classes is not None:
        classes = [int(r) for r in classes]
        if not classes:
            raise ValueError("classes is empty; pass some classes r, or None for all of them")
    cells = plan(spec, profile, models, ms, ns, rates)
    path = result_path(out_dir, name, profile)
    settings = _settings(spec, profile, seed, trials, classes)
    log(profile.banner())

    run = dict(F.result_header(RESULT_FORMAT, command)["provenance"], cells_done=0, seconds=0.0)
    F.remove_stale_temps(path)  # what a sweep killed while writing left behind
    if path.exists():
        result = load_result(path)
        if result["settings"] != settings:
            differ = sorted(k for k in settings if result["settings"].get(k) != settings[k])
            raise ValueError(
                f"{path} was made with other settings ({', '.join(differ)} differ); "
                "delete it or pass another --out folder"
            )
        log(f"[{name}] resuming from {path}: {len(result['cells'])} cell(s) already done")
    else:
        result = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "settings": settings,
                  "provenance": dict(run), "runs": [], "models": {}, "cells": [], "run_seconds": 0.0}
    result.setdefault("runs", []).append(run)
    keys = [_task_key(c, settings) for c in cells]
    in_file = {_cell_key(c): c for c in result["cells"]}
    known = {k: {"cell": in_file[_cell_key(c)]} for k, c in zip(keys, cells) if _cell_key(c) in in_file}
    planned = set(map(_cell_key, cells))
    kept = [c for c in result["cells"] if _cell_key(c) not in planned]  # outside this sweep
    todo_models = list(dict.fromkeys(c["model"] for k, c in zip(keys, cells) if k not in known))
    profile_json = json.dumps(profile.to_dict(), sort_keys=True)
    cache = None if cache_dir is None else str(cache_dir)
    cls = None if classes is None else tuple(classes)
    train = [runner.Task(f"{m}_{F.digest(settings)}", train_task, (m, profile_json, seed, cache))
             for m in todo_models]
    tasks = [runner.Task(k, cell_task, (name, profile_json, seed, trials, cls, cache, c))
             for k, c in zip(keys, cells)]
    t_start = time.perf_counter()
    announced = set()

    def write(records, prov, complete):
        nonlocal t_start
        new = [r for r in records if "info" in r and _cell_key(r["cell"]) not in in_file]
        fresh = [r for r in new if _cell_key(r["cell"]) not in announced]
        if not fresh and not complete:
            return
        for r in new:
            model, info = r["cell"]["model"], dict(r["info"])
            old = result["models"].get(model, {})
            acc = {**old.get("val_acc_after_prune", {}), **info.pop("val_acc_after_prune", {})}
            result["models"][model] = {**info, **({"val_acc_after_prune": acc} if acc else {})}
        result["cells"] = kept + [r["cell"] for r in records]
        elapsed = time.perf_counter() - t_start
        t_start = time.perf_counter()
        result["run_seconds"] = round(result["run_seconds"] + elapsed, 1)
        run["seconds"] = round(run["seconds"] + elapsed, 1)
        run["cells_done"] = len(new)
        if new:
            run["finished"] = result["provenance"]["finished"] = F.now()
            F.write_json_atomic(path, result)
        for r in fresh:
            cell = r["cell"]
            if cell["model"] not in announced:
                announced.add(cell["model"])
                info = r["info"]
                log(f"[{name}] {MODEL_TITLES[cell['model']]}: best epoch {info['best_epoch']} of "
                    f"{info['epochs']}, validation accuracy {info['best_val_acc']:.4f}")
            if cell.get("skipped_classes"):
                log(f"  {MODEL_TITLES[cell['model']]} m={cell['m']} n={cell['n']}: left out class(es) "
                    + "; ".join(f"{r} ({why})" for r, why in cell["skipped_classes"].items()))
            log(_cell_line(cell))
            announced.add(_cell_key(cell))

    exp = runner.Experiment(name, [train, tasks], write=write, cache_dir=cache_dir)
    runner.run(exp, engine=engine, progress=False, write_every=0.0, known=known,
               provenance=run)
    if len(known) == len(tasks):
        log(f"[{name}] nothing to do: every cell is in {path}")
    result["path"] = str(path)
    return result


def feasible_classes(features: dict, m: int, n: int):
    """Split ``{r: (features_P, features_Q)}`` into the classes a trial can be drawn from and
    the others: a trial needs n members and n(m-1) distinct non-members.

    After fine-tuning, Q loses 20% of its samples, and a class of CIFAR-10 can be left with
    fewer than the 1,200 non-members that m = 5, n = 300 needs. Such a class is left out of the
    cell (Eq. 14-15 then run over the remaining classes) and named, with the reason, in
    ``skipped``: ``(usable, skipped)``.
    """
    usable, skipped = {}, {}
    for r, (fP, fQ) in features.items():
        if len(fP) >= n and len(fQ) >= n * (m - 1):
            usable[r] = (fP, fQ)
        else:
            skipped[str(r)] = f"|P| = {len(fP)}, |Q| = {len(fQ)}; needs n = {n} and n(m-1) = {n * (m - 1)}"
    return usable, skipped


def _cell_line(cell: dict) -> str:
    rate = f" rate={cell['rate']:.1f}" if cell.get("rate") is not None else ""
    if cell["acc_r_opt"] is None:
        return f"  {MODEL_TITLES[cell['model']]:<9}{rate} m={cell['m']} n={cell['n']}: no class has pools this large"
    return (f"  {MODEL_TITLES[cell['model']]:<9}{rate} m={cell['m']} n={cell['n']}: r_opt={cell['r_opt']} "
            f"acc_r_opt={cell['acc_r_opt']:.2f} mean acc_r={cell['mean_acc_r']:.3f}")


# --------------------------------------------------------------------------- printing


TABLE_COLUMNS = ("DNN Model", "m", "n", "r_opt", "acc_r_opt", "mean acc_r", "1/m")


def format_table(result: dict) -> str:
    """The result in the paper's layout (Tables I-IV), the paper's numbers beside ours.

    Each number reads ``ours (paper)``; for Figure 2 the rows are pruning rates.
    """
    name = result["settings"]["experiment"]
    spec = get_spec(name)
    paper = paper_table(name)
    prof = result["settings"]["profile"]
    head = [f"{spec.title} - profile {prof['name']}, t = {result['settings']['trials']}, "
            f"seed {result['settings']['seed']}; each entry: ours (paper)"]
    rows, notes = [], []
    cells = sorted(result["cells"], key=lambda c: (spec.models.index(c["model"]), c.get("rate") or 0, c["m"], c["n"]))
    last_model = None
    for c in cells:
        ref = paper.get((c["model"], c["m"], c["n"]))
        model = MODEL_TITLES[c["model"]] if c["model"] != last_model else ""
        last_model = c["model"]
        ref_r, ref_acc, ref_mean = (f"({ref[0]})", f"({ref[1]:.2f})", f"({ref[2]:.3f})") if ref else ("", "", "")
        if c["acc_r_opt"] is None:
            ours_r = ours_acc = ours_mean = "n/a"
        else:
            ours_r, ours_acc, ours_mean = str(c["r_opt"]), f"{c['acc_r_opt']:.2f}", f"{c['mean_acc_r']:.3f}"
        if c.get("skipped_classes"):
            ours_mean += "*"
            notes.append(f"* {MODEL_TITLES[c['model']]} m={c['m']} n={c['n']}: class(es) "
                         + ", ".join(f"{r} ({why.split(';')[0]})" for r, why in c["skipped_classes"].items())
                         + f" left out: a trial needs |P| >= n = {c['n']} and |Q| >= n(m-1) = "
                         f"{c['n'] * (c['m'] - 1)}")
        row = [model, str(c["m"]), str(c["n"]), f"{ours_r} {ref_r}".strip(),
               f"{ours_acc} {ref_acc}".strip(), f"{ours_mean} {ref_mean}".strip(),
               f"{1 / c['m']:.2f}"]
        if spec.condition == "prune":
            row.insert(1, f"{c['rate']:.1f}")
        rows.append(row)
    cols = list(TABLE_COLUMNS)
    if spec.condition == "prune":
        cols.insert(1, "rate")
    widths = [max(len(x) for x in [col] + [r[i] for r in rows]) for i, col in enumerate(cols)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = head + [fmt.format(*cols), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*r) for r in rows]
    return "\n".join(lines + notes)
