"""The study's models, cached by their settings: owners, innocent models, and the attacked copies (the registry :data:`pmi_tutorial.attacks.ATTACKS`)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...data import as_index
from ...files import digest
from ..study.design import training_split
from ..study.run import train_cached
from .config import ATTACKS, OTHER
from .world import distill_part, innocent_parts


# --------------------------------------------------------------------------- models (cached)


def model_folder(cache_dir) -> Path:
    """Where this study caches its models and per-suspect records."""
    from ...training import cache_folder

    return cache_folder(cache_dir) / "paper_study"


def model_epochs(cfg, arch) -> int:
    """The training epochs of ``arch`` in ``cfg`` (one number per architecture)."""
    return int(dict(zip(cfg.archs, cfg.epochs)).get(arch, cfg.epochs[0]))


#: the training seed of owner k and of innocent model k is the role's base plus k
_SEED_BASE = {"owner": 100, "innocent": 2000}


def _model_settings(world, arch, role, k) -> dict:
    return {"arch": arch, "role": role, "index": int(k), "seed": _SEED_BASE[role] + int(k),
            "design": asdict(world.cfg.design), "epochs": model_epochs(world.cfg, arch)}


def model_key(world, arch, role, k) -> str:
    """The cache key of owner or innocent model k (``role``), without training or loading it."""
    return f"{arch}_{role}{k}_{digest(_model_settings(world, arch, role, k))}"


def _train_model(world, arch, role, k, train_split, cache_dir):
    from ...models import build_model
    from ...training import train

    cfg = world.cfg
    settings = _model_settings(world, arch, role, k)
    seed = settings["seed"]

    def make(partial):
        model = build_model(arch, num_classes=world.split.num_classes, seed=seed)
        res = train(model, train_split, model_epochs(cfg, arch), seed=seed, checkpoint_path=partial,
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
    from ... import attacks

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
