"""The controls as a runner plan: stage 1 trains the owners and innocents, stage 2 measures
Table I on each (every m x n cell, every draw seed), each task cached by its settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import _validate as V
from ...files import digest
from .. import forensics as FZ
from ..runner import Experiment, Task
from .design import (MLP, RESULT_NAME, ROLES, ControlsConfig, Plan, cached_plan, dataset, parse_variant,
                     plan_split)


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
    from ...training import cache_folder

    return cache_folder(cache_dir) / RESULT_NAME


def trained(cfg, split, role, k, root=None, cache_dir=None):
    """``(best_model, last_model, state)`` of one model, trained once and cached."""
    import time

    from ...checkpoint import load_checkpoint
    from ...models import build_model
    from ...training import last_epoch_path, load_or_train, train

    settings = model_settings(cfg, split, role, k)
    plan = cached_plan(cfg, split, root)
    final = model_folder(cache_dir) / f"{model_key(cfg, split, role, k)}.pt"

    def make(partial):
        t0 = time.process_time()
        sp = plan_split(plan.train if role == "owner" else plan.innocent_train, plan.val, root)
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
    from ... import data

    ds = dataset(root)
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
