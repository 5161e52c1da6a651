"""The owner's split and models under each reading: another split kind (random, stratified,
sequential), another training seed, the best-validation or the last epoch's weights (book
chapter "Reproducing Tables I and II")."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from .measure import pool_feature_kinds
from .variants import SPLITS, Variant


def split_indices(name: str, kind: str = "random", seed: int = 0, labels=None):
    """The owner's split of the pooled dataset (train part, then test part) as sorted indices.

    ``"random"`` is :func:`pmi_tutorial.data.split_indices` (a seeded permutation cut at
    50,000 for MNIST); ``"stratified"`` keeps the same share of every class in training (the
    largest remainders decide the last images, so the sizes are exactly 50,000 / 20,000);
    ``"sequential"`` takes the first 50,000 images, so the validation part is the last 10,000
    images of the official training file and the whole official test file.
    Returns ``(train_index, val_index)``.
    """
    from ... import data

    data.check_dataset(name)
    if kind not in SPLITS:
        raise ValueError(f"unknown split {kind!r}; use one of {', '.join(map(repr, SPLITS))}")
    total, n_train = data.TOTAL_SIZE[name], data.TRAIN_SIZE[name]
    if kind == "random":
        return data.split_indices(name, seed)
    if kind == "sequential":
        return np.arange(n_train, dtype=np.int64), np.arange(n_train, total, dtype=np.int64)
    if labels is None:
        raise ValueError("a stratified split needs the labels: pass labels=data.load_dataset(name).labels")
    labels = np.asarray(labels)
    if len(labels) != total:
        raise ValueError(f"labels must hold all {total} images of {name}, got {len(labels)}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    counts = np.array([(labels == r).sum() for r in classes])
    exact = counts * n_train / total
    k = np.floor(exact).astype(int)
    k[np.argsort(-(exact - k), kind="stable")[: n_train - k.sum()]] += 1
    train = []
    for r, kr in zip(classes, k):
        of_r = np.flatnonzero(labels == r)
        train.append(rng.permutation(of_r)[:kr])
    train = np.sort(np.concatenate(train)).astype(np.int64)
    val = np.setdiff1d(np.arange(total), train).astype(np.int64)
    return train, val


def owner_split(name: str, kind: str = "random", seed: int = 0, root=None):
    """A :class:`pmi_tutorial.data.Split` of the whole dataset drawn the ``kind`` way."""
    from ... import data

    if kind == "random":
        return data.owner_split(name, seed=seed, root=root)
    ds = data.load_dataset(name, root)
    train_index, val_index = split_indices(name, kind, seed, ds.labels)
    return data.Split(
        name=name, seed=int(seed),
        train_x=data.normalize_images(ds.images[train_index], name),
        train_y=torch.from_numpy(ds.labels[train_index].copy()),
        val_x=data.normalize_images(ds.images[val_index], name),
        val_y=torch.from_numpy(ds.labels[val_index].copy()),
        train_index=train_index, val_index=val_index,
        num_classes=data.NUM_CLASSES[name], input_shape=data.INPUT_SHAPE[name],
    )


# ----------------------------------------------------------------------------- the models


def model_path(model_name: str, profile, split: str = "random", train_seed: int = 0,
               cache_dir=None) -> Path:
    """Where the model of a split kind and training seed is cached (the best-validation file)."""
    from ...models import dataset_of
    from ...profiles import Profile, get_profile
    from ...training import cache_folder, cache_key

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = dataset_of(model_name)
    key = cache_key(model_name, dataset, prof.epochs[model_name], prof.width[model_name],
                    prof.train_per_class[dataset], train_seed, train_seed, prof.batch_size, prof.lr)
    if split != "random":
        key += f"_{split}split"
    return cache_folder(cache_dir) / f"{key}.pt"


def owner_model(model_name: str, profile, split: str = "random", train_seed: int = 0,
                cache_dir=None, progress: bool = False, train_if_missing: bool = True):
    """The owner's trained model for a split kind: ``(best_model, last_model, split, info)``.

    ``"random"`` with the profile's training is :func:`pmi_tutorial.training.cached_model`
    (same cache file).  The other split kinds are trained the same way (Adam, the profile's
    epochs, batch size and lr, best-validation epoch kept) and cached under their own name with
    the suffix ``_{split}split``; the last epoch's weights sit beside them
    (:func:`pmi_tutorial.training.last_epoch_path`).  The profile must train on the whole split.
    """
    import os

    from ...checkpoint import load_checkpoint, save_checkpoint, sidecar_path
    from ...models import build_model, dataset_of
    from ...profiles import Profile, get_profile
    from ... import training

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = dataset_of(model_name)
    if split == "random":
        res = training.cached_model(model_name, prof, seed=train_seed, cache_dir=cache_dir,
                                    progress=progress, device="cpu")
        final, the_split, history = res.checkpoint_path, res.split, res.history
        best_epoch, best_val = res.best_epoch, res.best_val_acc
        best = res.model
    else:
        if prof.train_per_class[dataset] is not None:
            raise ValueError(
                f"split {split!r} is defined on the whole dataset; use a profile that trains on "
                f"the whole split (the paper profile), not {prof.name!r}"
            )
        the_split = owner_split(dataset, split, seed=train_seed)
        final = model_path(model_name, prof, split, train_seed, cache_dir)
        if not final.is_file():
            if not train_if_missing:
                raise FileNotFoundError(f"no cached model at {final}; train it with owner_model(...)")
            final.parent.mkdir(parents=True, exist_ok=True)
            partial = final.with_name(final.stem + ".training.pt")
            model = build_model(model_name, num_classes=the_split.num_classes,
                                width=prof.width[model_name], seed=train_seed)
            res = training.train(model, the_split, prof.epochs[model_name], lr=prof.lr,
                                 batch_size=prof.batch_size, seed=train_seed,
                                 checkpoint_path=partial, device="cpu", progress=progress)
            settings = {"profile": prof.name, "epochs": prof.epochs[model_name], "seed": train_seed,
                        "split": split, "split_seed": train_seed, "batch_size": prof.batch_size,
                        "lr": prof.lr, "n_train": len(the_split.train_y),
                        "n_val": len(the_split.val_y), "device": "cpu", "torch": torch.__version__}
            state = {"history": res.history, "best_epoch": res.best_epoch,
                     "best_val_acc": res.best_val_acc}
            save_checkpoint(final, res.model, settings, state)
            last = training.last_epoch_path(final)
            os.replace(partial, last)
            os.replace(sidecar_path(partial), sidecar_path(last))
        best, _, state = load_checkpoint(final)
        history, best_epoch, best_val = state["history"], int(state["best_epoch"]), float(state["best_val_acc"])
    last_model, _, _ = load_checkpoint(training.last_epoch_path(final))
    best.cpu().eval()
    last_model.cpu().eval()
    info = {
        "cache_file": final.name, "split": split, "train_seed": train_seed,
        "best_epoch": best_epoch, "best_val_acc": best_val, "epochs": len(history),
        "last_val_acc": history[-1]["val_acc"], "best_train_acc": history[best_epoch - 1]["train_acc"],
        "last_train_acc": history[-1]["train_acc"],
        "n_train": len(the_split.train_y), "n_val": len(the_split.val_y),
    }
    return best, last_model, the_split, info


class CachedModels:
    """Features of the owner's models, computed once per (model, kept, split, training seed).

    ``train`` names the models that may be trained when their file is missing (a split kind
    or training seed other than the cached one); any other missing model makes its variants
    unavailable (``None``) instead of starting a long training.
    """

    def __init__(self, profile, cache_dir=None, train=("mlp",), progress=False):
        from ...profiles import Profile, get_profile

        self.profile = profile if isinstance(profile, Profile) else get_profile(profile)
        self.cache_dir, self.train, self.progress = cache_dir, tuple(train), progress
        self._features: dict = {}

    def __call__(self, model_name: str, variant: Variant):
        """``(feature_kinds, info)`` for ``variant``'s model, or None when it is not available."""
        key = (model_name, variant.split, variant.train_seed)
        if key not in self._features:
            if variant.split != "random" and self.profile.train_per_class.get("mnist") is not None:
                return None
            path = model_path(model_name, self.profile, variant.split, variant.train_seed, self.cache_dir)
            if not path.is_file():
                if model_name not in self.train:
                    return None
                partial = path.with_name(path.stem + ".training.pt")
                if partial.is_file() and time.time() - partial.stat().st_mtime < 600:
                    return None  # another process is training it right now: do not race it
            best, last, split, info = owner_model(model_name, self.profile, variant.split,
                                                  variant.train_seed, self.cache_dir, self.progress)
            self._features[key] = ({"best": pool_feature_kinds(best, split),
                                    "last": pool_feature_kinds(last, split)}, info)
        feats, info = self._features[key]
        return feats[variant.kept][variant.features], dict(info, kept=variant.kept)
