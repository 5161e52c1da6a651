r"""Reproduction forensics: which reading of the paper gives its Table I (paper Sections III-IV;
book chapter "Reproducing Tables I and II").

The paper leaves several choices open or ambiguous: what exactly the features are ("the last
layer without softmax"), how Eq. 5-6 normalize them, whether the distance is the square root of
the unbiased estimate (Eq. 10), which epoch's weights are kept, how the owner's split is drawn,
how a tie between the two final clusters is broken, whether clustering or outlier detection
decides.  A :class:`Variant` fixes one answer to each question; :func:`run` recomputes the 18
cells of Table I (m in {3, 4, 5} x n in {100, 200, 300}, MLP and LeNet-5) for each variant and
several seeds of the random draws, resumably, into one result file with provenance, and
:func:`compare` sets every variant beside the paper's numbers.

Features are computed once per model (all four kinds from one forward pass); every trial of a
class is then batched tensor arithmetic (:func:`class_guesses`).  For the paper's reading the
decisions equal those of :func:`pmi_tutorial.fingerprint.class_accuracy` trial by trial.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from .. import _validate as V
from .. import batched

FEATURES = ("logits", "log_probs", "probs", "penultimate")
NORMALIZATIONS = ("joint", "none", "block", "pool")
DISTANCES = ("sqrt", "mmd2", "abs", "biased", "unpaired")
DECISIONS = ("single", "complete", "average", "outlier")
TIES = ("both", "first", "second")
KEPT = ("best", "last")
SPLITS = ("random", "stratified", "sequential")
DRAWS = ("paper", "overlap", "replace")

_DESCRIBE = {
    "features": {
        "logits": "logits (last layer, no softmax)",
        "log_probs": "log-probabilities (log-softmax)",
        "probs": "probabilities (softmax)",
        "penultimate": "penultimate layer (input of the last linear layer)",
    },
    "normalization": {
        "joint": "joint over the m*n rows of a trial (Eq. 5-6)",
        "none": "none",
        "block": "per mini-dataset",
        "pool": "statistics of the whole pool P and Q of class r",
    },
    "distance": {
        "sqrt": "sqrt(max(MMD^2_u, 0)) (Eq. 10)",
        "mmd2": "MMD^2_u, negative values kept",
        "abs": "sqrt(|MMD^2_u|)",
        "biased": "biased MMD^2 (Eq. 8 with empirical means)",
        "unpaired": "unbiased MMD^2 with all cross pairs (no x_i-y_i pairing)",
    },
    "decision": {
        "single": "single linkage (Eq. 12)",
        "complete": "complete linkage",
        "average": "average linkage",
        "outlier": "outlier: largest summed distance to the others",
    },
    "tie": {
        "both": "equal final clusters: any of the m",
        "first": "equal final clusters: the first one (|G1| <= |G2|)",
        "second": "equal final clusters: the second one",
    },
    "kept": {"best": "best-validation epoch", "last": "last epoch (300)"},
    "split": {
        "random": "random (seeded permutation)",
        "stratified": "stratified by class",
        "sequential": "sequential (first 50,000 of train+test)",
    },
    "draws": {
        "paper": "n from P, n(m-1) distinct from Q",
        "overlap": "each non-member block drawn on its own (blocks may share samples)",
        "replace": "with replacement within a trial",
    },
}


@dataclass(frozen=True)
class Variant:
    """One reading of the paper: an answer to each choice it leaves open.

    The defaults are the package's reading (``data.owner_split``, ``fingerprint.run``).
    """

    features: str = "logits"
    normalization: str = "joint"
    distance: str = "sqrt"
    decision: str = "single"
    tie: str = "both"
    kept: str = "best"
    split: str = "random"
    draws: str = "paper"
    train_seed: int = 0

    def __post_init__(self):
        for f, allowed in (("features", FEATURES), ("normalization", NORMALIZATIONS),
                           ("distance", DISTANCES), ("decision", DECISIONS), ("tie", TIES),
                           ("kept", KEPT), ("split", SPLITS), ("draws", DRAWS)):
            value = getattr(self, f)
            if value not in allowed:
                raise ValueError(
                    f"unknown {f} {value!r} in a forensics variant; use one of "
                    f"{', '.join(map(repr, allowed))}"
                )
        if isinstance(self.train_seed, bool) or not isinstance(self.train_seed, (int, np.integer)) \
                or self.train_seed < 0:
            raise ValueError(f"train_seed must be a non-negative integer, got {self.train_seed!r}")

    def changes(self) -> dict:
        """The fields that differ from the paper's reading: ``{field: value}``."""
        base = Variant()
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != getattr(base, f.name)}

    def describe(self) -> str:
        """One line naming what differs from the baseline (``baseline`` for the default)."""
        ch = self.changes()
        if not ch:
            return "baseline (the package's reading)"
        parts = []
        for k, v in ch.items():
            parts.append(f"training seed {v}" if k == "train_seed" else f"{k}: {_DESCRIBE[k][v]}")
        return "; ".join(parts)

    def model_key(self) -> tuple:
        """What the trained weights depend on."""
        return (self.kept, self.split, self.train_seed)

    def to_dict(self) -> dict:
        return asdict(self)


BASELINE = Variant()


# ----------------------------------------------------------------------------- the owner's split


def split_indices(name: str, kind: str = "random", seed: int = 0, labels=None):
    """The owner's split of the pooled dataset (train part, then test part) as sorted indices.

    ``"random"`` is :func:`pmi_tutorial.data.split_indices` (a seeded permutation cut at
    50,000 for MNIST); ``"stratified"`` keeps the same share of every class in training (the
    largest remainders decide the last images, so the sizes are exactly 50,000 / 20,000);
    ``"sequential"`` takes the first 50,000 images, so the validation part is the last 10,000
    images of the official training file and the whole official test file.
    Returns ``(train_index, val_index)``.
    """
    from .. import data

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
    from .. import data

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
    from ..models import dataset_of
    from ..profiles import Profile, get_profile
    from ..training import cache_folder, cache_key

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

    from ..checkpoint import load_checkpoint, save_checkpoint, sidecar_path
    from ..models import build_model, dataset_of
    from ..profiles import Profile, get_profile
    from .. import training

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


# ----------------------------------------------------------------------------- features


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear:
    last = None
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            last = mod
    if last is None:
        raise ValueError(
            f"{type(model).__name__} has no nn.Linear layer, so it has no penultimate-layer "
            "features; use features='logits'"
        )
    return last


def feature_kinds(model: torch.nn.Module, x, batch_size: int = 1024) -> dict:
    """All four feature kinds of every sample of ``x`` from one forward pass (Eq. 4 readings).

    Returns ``{"logits", "log_probs", "probs", "penultimate"}`` -> float64 NumPy arrays: the
    logits (the last layer without softmax, the package's reading), their log-softmax and
    softmax, and the input of the model's last linear layer (captured with a forward hook).
    """
    from ..features import as_input, forward, eval_mode

    x = as_input(x)
    batch_size = V.check_positive_int(batch_size, "batch_size")
    captured = []
    hook = _last_linear(model).register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
    out = []
    try:
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(x), batch_size):
                out.append(forward(model, x[start:start + batch_size].float()).float())
    finally:
        hook.remove()
    logits = torch.cat(out)
    pen = torch.cat(captured).flatten(1).float()
    return {
        "logits": logits.double().numpy(),
        "log_probs": torch.log_softmax(logits.double(), dim=1).numpy(),
        "probs": torch.softmax(logits.double(), dim=1).numpy(),
        "penultimate": pen.double().numpy(),
    }


def pool_feature_kinds(model, split, classes=None, batch_size: int = 1024) -> dict:
    """``{kind: {r: (features_P, features_Q)}}`` for every class r of ``split`` (one pass)."""
    from ..data import class_pools

    classes = range(split.num_classes) if classes is None else classes
    out = {k: {} for k in FEATURES}
    for r in classes:
        pools = class_pools(split, r)
        fP, fQ = feature_kinds(model, pools.P, batch_size), feature_kinds(model, pools.Q, batch_size)
        for k in FEATURES:
            out[k][int(r)] = (fP[k], fQ[k])
    return out


# ----------------------------------------------------------------------------- one trial, batched


def normalize_blocks(F, how: str = "joint", pool_mean=None, pool_std=None):
    r"""Normalize stacked feature matrices ``F`` (..., m, n, c) the ``how`` way.

    * ``"joint"``: Eq. 5-6, every component zero mean and unit variance over the m*n rows of
      its trial (:func:`pmi_tutorial.pmi.normalize_features`);
    * ``"none"``: unchanged;
    * ``"block"``: the same, but over the n rows of each mini-dataset on its own;
    * ``"pool"``: with fixed statistics ``pool_mean``, ``pool_std`` (shape (c,)), those of the
      whole pool P and Q of the class.

    A component that is constant where its statistics are taken becomes 0.  Returns float64.
    """
    F = torch.as_tensor(np.asarray(F, dtype=np.float64) if not torch.is_tensor(F) else F).double()
    if F.ndim < 3:
        raise ValueError(f"F must have shape (..., m, n, c), got {tuple(F.shape)}")
    if how == "none":
        return F
    if how == "pool":
        if pool_mean is None or pool_std is None:
            raise ValueError("normalization 'pool' needs pool_mean and pool_std (the pool's statistics)")
        mean = torch.as_tensor(np.asarray(pool_mean, dtype=np.float64))
        std = torch.as_tensor(np.asarray(pool_std, dtype=np.float64))
        return (F - mean) / torch.where(std > 0, std, torch.ones_like(std)) * (std > 0)
    if how not in ("joint", "block"):
        raise ValueError(f"unknown normalization {how!r}; use one of {', '.join(map(repr, NORMALIZATIONS))}")
    dims = (-3, -2) if how == "joint" else (-2,)
    mean = F.mean(dim=dims, keepdim=True)
    std = F.std(dim=dims, keepdim=True, unbiased=False)
    const = F.amax(dim=dims, keepdim=True) == F.amin(dim=dims, keepdim=True)
    scale = torch.where(const | (std == 0), torch.ones_like(std), std)
    return torch.where(const, torch.zeros_like(F), F - mean) / scale


def block_distances(Z, how: str = "sqrt"):
    r"""Distances between the m mini-datasets of normalized ``Z`` (..., m, n, c): (..., m, m).

    With :math:`S_a = \sum_i z_{ai}` and :math:`G_{ab} = \sum_i z_{ai}\cdot z_{bi}`, the
    linear-kernel estimates are

    * unbiased, Eq. 10-11 (:math:`h[i,j]` pairs :math:`x_i` with :math:`y_i`):
      :math:`\mathrm{MMD}^2_u = (\lVert S_a - S_b\rVert^2 - (G_{aa}+G_{bb}-2G_{ab}))/(n(n-1))`;
      ``"sqrt"`` gives :math:`\sqrt{\max(\mathrm{MMD}^2_u, 0)}`, ``"mmd2"`` the signed value,
      ``"abs"`` :math:`\sqrt{|\mathrm{MMD}^2_u|}`;
    * ``"biased"``: the plug-in of Eq. 8, :math:`\lVert S_a - S_b\rVert^2/n^2`;
    * ``"unpaired"``: the unbiased estimate with every cross pair,
      :math:`(\lVert S_a\rVert^2 - G_{aa} + \lVert S_b\rVert^2 - G_{bb})/(n(n-1)) - 2 S_a\cdot S_b/n^2`.

    The diagonal is exactly 0.
    """
    if how not in DISTANCES:
        raise ValueError(f"unknown distance {how!r}; use one of {', '.join(map(repr, DISTANCES))}")
    Z = torch.as_tensor(Z).double()
    *lead, m, n, c = Z.shape
    if n < 2:
        raise ValueError(f"a mini-dataset needs n >= 2 samples for the unbiased estimate, got n={n}")
    S = Z.sum(-2)  # (..., m, c)
    flat = Z.reshape(*lead, m, n * c)
    G = flat @ flat.transpose(-1, -2)  # (..., m, m): sum_i z_ai . z_bi
    SS = S @ S.transpose(-1, -2)
    g = torch.diagonal(G, dim1=-2, dim2=-1)
    s2 = torch.diagonal(SS, dim1=-2, dim2=-1)
    sum_sq = s2[..., :, None] + s2[..., None, :] - 2 * SS
    if how == "biased":
        D = sum_sq / n**2
    elif how == "unpaired":
        within = (s2 - g) / (n * (n - 1))
        D = within[..., :, None] + within[..., None, :] - 2 * SS / n**2
    else:
        d2 = (sum_sq - (g[..., :, None] + g[..., None, :] - 2 * G)) / (n * (n - 1))
        D = {"sqrt": lambda v: v.clamp_min(0).sqrt(), "mmd2": lambda v: v,
             "abs": lambda v: v.abs().sqrt()}[how](d2)
    D = (D + D.transpose(-1, -2)) / 2
    eye = torch.eye(m, dtype=torch.bool)
    return D.masked_fill(eye, 0.0)


def linkage_guesses(D, u, decision: str = "single", tie: str = "both") -> np.ndarray:
    """The guessed member position of every trial from distance matrices ``D`` (t, m, m).

    ``decision`` single / complete / average runs Algorithm 1 on all trials at once (the
    :func:`pmi_tutorial.batched.two_clusters`) until two clusters remain, and picks from the
    smaller one with the uniforms ``u`` as :func:`pmi_tutorial.pmi.pick` does
    (:func:`pmi_tutorial.batched.kth_candidate`).  Two clusters of equal
    size: ``tie="both"`` lets every mini-dataset be picked (the package's reading), ``"first"``
    picks in the first cluster of the last merge (``|G1| <= |G2|`` read literally), ``"second"``
    in the other.  ``decision="outlier"`` skips clustering: the guess is the mini-dataset with
    the largest summed distance to the others (ties to the smallest index).
    """
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r}; use one of {', '.join(map(repr, DECISIONS))}")
    if tie not in TIES:
        raise ValueError(f"unknown tie rule {tie!r}; use one of {', '.join(map(repr, TIES))}")
    D = torch.as_tensor(D).double()
    if decision == "outlier":
        return D.sum(-1).argmax(-1).numpy().astype(np.int64)
    G1, G2 = batched.two_clusters(D, decision)
    s1, s2 = G1.sum(1, keepdim=True), G2.sum(1, keepdim=True)
    equal = {"both": G1 | G2, "first": G1, "second": G2}[tie]
    return batched.kth_candidate(torch.where(s1 < s2, G1, torch.where(s2 < s1, G2, equal)), u)


# ----------------------------------------------------------------------------- trials


def draw(n_P: int, n_Q: int, m: int, n: int, trials: int, seed=0, scheme: str = "paper"):
    """The random part of t trials (a :class:`pmi_tutorial.fingerprint.Draws`).

    ``"paper"`` is :func:`pmi_tutorial.fingerprint.draw_trials` (n distinct members, n(m-1)
    distinct non-members: Section III-C); ``"overlap"`` draws each of the m-1 non-member blocks
    on its own (n distinct samples each, blocks may share samples); ``"replace"`` draws every
    block with replacement.  Same order of calls per trial: position s, then the blocks.
    """
    from ..fingerprint import Draws, draw_trials

    if scheme == "paper":
        return draw_trials(n_P, n_Q, m, n, trials, seed=seed)
    if scheme not in DRAWS:
        raise ValueError(f"unknown draw scheme {scheme!r}; use one of {', '.join(map(repr, DRAWS))}")
    m, n = V.check_m(m), V.check_n(n)
    trials = V.check_positive_int(trials, "trials")
    if scheme == "overlap" and (n_P < n or n_Q < n):
        raise ValueError(f"each block needs n = {n} distinct samples: |P| = {n_P}, |Q| = {n_Q}")
    rng = np.random.default_rng(seed)
    member = np.empty((trials, n), dtype=np.int64)
    nonmember = np.empty((trials, m - 1, n), dtype=np.int64)
    s = np.empty(trials, dtype=np.int64)
    replace_ = scheme == "replace"
    for k in range(trials):
        s[k] = rng.integers(m)
        member[k] = rng.choice(n_P, size=n, replace=replace_)
        for j in range(m - 1):
            nonmember[k, j] = rng.choice(n_Q, size=n, replace=replace_)
    u = rng.random(trials)
    return Draws(member, nonmember, s, u)


#: float64 elements of one gathered (b, m, n, c) chunk of trials
CHUNK_ELEMENTS = 1 << 22


def class_guesses(features_P, features_Q, m: int, n: int, trials: int = 100, seed=0,
                  variant: Variant = BASELINE):
    """PMI's guesses in t trials of one class under ``variant``: ``(guesses, s)``.

    The features (one kind, as ``variant.features`` names it) of the pools are given; every
    trial gathers its m*n rows, normalizes them (:func:`normalize_blocks`), measures the
    distances (:func:`block_distances`) and decides (:func:`linkage_guesses`), all trials at
    once in chunks.
    """
    P = np.asarray(features_P, dtype=np.float64)
    Q = np.asarray(features_Q, dtype=np.float64)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(
            f"features_P and features_Q must be (samples, width) of equal width, got "
            f"{P.shape} and {Q.shape}; compute both with the same model"
        )
    draws = draw(len(P), len(Q), m, n, trials, seed=seed, scheme=variant.draws)
    feats = np.concatenate([P, Q])
    idx = draws.layout(len(P))
    mean = std = None
    if variant.normalization == "pool":
        mean, std = feats.mean(0), feats.std(0)
    c = feats.shape[1]
    chunk = max(1, CHUNK_ELEMENTS // (m * n * c))
    D = torch.empty((draws.trials, m, m), dtype=torch.float64)
    for start in range(0, draws.trials, chunk):
        X = torch.from_numpy(feats[idx[start:start + chunk]])
        Z = normalize_blocks(X, variant.normalization, mean, std)
        D[start:start + chunk] = block_distances(Z, variant.distance)
    return linkage_guesses(D, draws.u, variant.decision, variant.tie), draws.s


def cell(feature_pools: dict, m: int, n: int, trials: int = 100, seed: int = 0,
         variant: Variant = BASELINE) -> dict:
    """One cell of Table I under ``variant``: acc_r of every class, r_opt and the mean (Eq. 14-15).

    ``feature_pools`` is ``{r: (features_P, features_Q)}`` of the kind the variant uses; class
    r's trials are seeded with :func:`pmi_tutorial.fingerprint.class_seed` ``(seed, r)``, as in
    :func:`pmi_tutorial.fingerprint.run_on_features`, so the baseline gives the same draws.
    """
    from ..fingerprint import class_seed, summarize_classes as summarize

    acc = {}
    for r, (fP, fQ) in sorted(feature_pools.items()):
        guesses, s = class_guesses(fP, fQ, m, n, trials, class_seed(seed, r), variant)
        acc[int(r)] = float(np.mean(guesses == s))
    summ = summarize(acc, m)
    return {"r_opt": summ.r_opt, "acc_r_opt": summ.acc_opt, "mean_acc_r": summ.mean_acc,
            "acc_by_class": {str(r): a for r, a in acc.items()}}


# ----------------------------------------------------------------------------- the variants


def one_at_a_time() -> dict:
    """The variants that change one choice of the baseline: ``{name: Variant}``, baseline first.

    Names read ``field=value`` (``baseline`` for the package's reading).  The variants that
    need a model of their own (another split, another training seed) come last.
    """
    out = {"baseline": BASELINE}
    for f, allowed in (("features", FEATURES), ("normalization", NORMALIZATIONS),
                       ("distance", DISTANCES), ("kept", KEPT), ("decision", DECISIONS),
                       ("tie", TIES), ("draws", DRAWS), ("split", SPLITS)):
        for value in allowed:
            if value != getattr(BASELINE, f):
                out[f"{f}={value}"] = replace(BASELINE, **{f: value})
    out["train_seed=1"] = replace(BASELINE, train_seed=1)
    return out


def variant_name(v: Variant) -> str:
    """``baseline``, or the changed fields as ``field=value`` joined by ``+``."""
    ch = v.changes()
    return "+".join(f"{k}={val}" for k, val in ch.items()) or "baseline"


#: the fields a combination search may change.  Not the draws: the paper states them ("n
#: different samples", "n(m-1) different samples"); and not the training seed.
SEARCH_FIELDS = ("features", "normalization", "distance", "decision", "tie", "kept", "split")


# ----------------------------------------------------------------------------- comparison


def paper_cells(models=("mlp", "lenet5")) -> dict:
    """The paper's Table I: ``{(model, m, n): (r_opt, acc_r_opt, mean_acc_r)}``."""
    from .tables import paper_table

    return {k: v for k, v in paper_table("table1").items() if k[0] in models}


def compare(result: dict, variant: str, model: str | None = None) -> dict:
    """How one variant's cells stand beside the paper's Table I.

    Per (model, m, n) cell the seed-0 values (the draws of the committed Table I) and the
    range over all seeds; summaries: the mean absolute difference to the paper over the cells
    (``mad_acc_r_opt``, ``mad_mean_acc_r``, ``mad`` = both together), the same for the mean
    over seeds (``mad_seed_mean``), and how many cells hold the paper's value inside the range
    over seeds (``within_acc_r_opt``, ``within_mean_acc_r``).  ``model`` restricts to one model.
    """
    paper = paper_cells()
    by_cell: dict = {}
    for c in result["cells"]:
        if c["variant"] != variant or (model is not None and c["model"] != model):
            continue
        by_cell.setdefault((c["model"], c["m"], c["n"]), {})[c["seed"]] = c
    rows = []
    for key in sorted(by_cell, key=lambda k: (("mlp", "lenet5").index(k[0]) if k[0] in ("mlp", "lenet5") else 9, k[1], k[2])):
        seeds = by_cell[key]
        if key not in paper or 0 not in seeds:
            continue
        opt = np.array([s["acc_r_opt"] for s in seeds.values()])
        mean = np.array([s["mean_acc_r"] for s in seeds.values()])
        p = paper[key]
        rows.append({
            "model": key[0], "m": key[1], "n": key[2], "seeds": len(seeds),
            "r_opt": seeds[0]["r_opt"], "acc_r_opt": seeds[0]["acc_r_opt"], "mean_acc_r": seeds[0]["mean_acc_r"],
            "acc_r_opt_range": [float(opt.min()), float(opt.max())],
            "mean_acc_r_range": [float(mean.min()), float(mean.max())],
            "acc_r_opt_seed_mean": float(opt.mean()), "mean_acc_r_seed_mean": float(mean.mean()),
            "paper_r_opt": p[0], "paper_acc_r_opt": p[1], "paper_mean_acc_r": p[2],
        })
    if not rows:
        return {"variant": variant, "cells": 0, "rows": []}
    d_opt = np.array([abs(r["acc_r_opt"] - r["paper_acc_r_opt"]) for r in rows])
    d_mean = np.array([abs(r["mean_acc_r"] - r["paper_mean_acc_r"]) for r in rows])
    s_opt = np.array([abs(r["acc_r_opt_seed_mean"] - r["paper_acc_r_opt"]) for r in rows])
    s_mean = np.array([abs(r["mean_acc_r_seed_mean"] - r["paper_mean_acc_r"]) for r in rows])

    def inside(r, k):
        lo, hi = r[f"{k}_range"]
        return lo - 1e-9 <= r[f"paper_{k}"] <= hi + 1e-9

    return {
        "variant": variant, "cells": len(rows), "seeds": min(r["seeds"] for r in rows),
        "mad_acc_r_opt": float(d_opt.mean()), "mad_mean_acc_r": float(d_mean.mean()),
        "mad": float((d_opt.mean() + d_mean.mean()) / 2),
        "mad_seed_mean": float((s_opt.mean() + s_mean.mean()) / 2),
        "within_acc_r_opt": int(sum(inside(r, "acc_r_opt") for r in rows)),
        "within_mean_acc_r": int(sum(inside(r, "mean_acc_r") for r in rows)),
        "mean_acc_r_avg": float(np.mean([r["mean_acc_r"] for r in rows])),
        "acc_r_opt_avg": float(np.mean([r["acc_r_opt"] for r in rows])),
        "rows": rows,
    }


def variant_table(result: dict, model: str | None = None) -> list[dict]:
    """:func:`compare` of every variant in the result file (without the per-cell rows), in
    the order of the file, each with its description."""
    out = []
    for name, spec in result.get("variants", {}).items():
        c = compare(result, name, model)
        if c["cells"]:
            c = {k: v for k, v in c.items() if k != "rows"}
            c["description"] = Variant(**spec).describe()
            out.append(c)
    return out


def format_variant_table(result: dict, model: str | None = None) -> str:
    """The variant table as text: one line per variant, best match to the paper first."""
    rows = sorted(variant_table(result, model), key=lambda c: c["mad"])
    head = (f"{'variant':<46} {'cells':>5} {'MAD opt':>8} {'MAD mean':>8} {'MAD':>6} "
            f"{'in range opt/mean':>17} {'avg mean acc_r':>14}")
    lines = [head, "-" * len(head)]
    for c in rows:
        lines.append(
            f"{c['variant'][:46]:<46} {c['cells']:>5} {c['mad_acc_r_opt']:>8.3f} {c['mad_mean_acc_r']:>8.3f} "
            f"{c['mad']:>6.3f} {c['within_acc_r_opt']:>8}/{c['within_mean_acc_r']:<8} {c['mean_acc_r_avg']:>14.3f}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runner

RESULT_NAME = "forensics"
RESULT_FORMAT = "pmi-tutorial-forensics"


def result_path(out_dir, profile) -> Path:
    from ..profiles import Profile, get_profile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return Path(out_dir) / f"{RESULT_NAME}_{prof.name}.json"


class CachedModels:
    """Features of the owner's models, computed once per (model, kept, split, training seed).

    ``train`` names the models that may be trained when their file is missing (a split kind
    or training seed other than the cached one); any other missing model makes its variants
    unavailable (``None``) instead of starting a long training.
    """

    def __init__(self, profile, cache_dir=None, train=("mlp",), progress=False):
        from ..profiles import Profile, get_profile

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


def _settings(profile, trials, seeds, ms, ns, single_seeds, full_seeds) -> dict:
    return {"experiment": RESULT_NAME, "profile": profile.name, "trials": trials,
            "seeds": [int(s) for s in seeds], "ms": [int(m) for m in ms], "ns": [int(n) for n in ns],
            "single_seeds": single_seeds, "full_seed_variants": list(full_seeds)}


def _objective(result: dict, name: str, model: str, seeds) -> float | None:
    """Mean absolute difference to the paper of the seed-mean over ``seeds`` (both numbers)."""
    paper = paper_cells()
    vals: dict = {}
    for c in result["cells"]:
        if c["variant"] == name and c["model"] == model and c["seed"] in seeds:
            vals.setdefault((c["model"], c["m"], c["n"]), []).append((c["acc_r_opt"], c["mean_acc_r"]))
    diffs = []
    for key, v in vals.items():
        if key in paper and len(v) == len(seeds):
            a = np.mean(v, axis=0)
            diffs.append((abs(a[0] - paper[key][1]) + abs(a[1] - paper[key][2])) / 2)
    return float(np.mean(diffs)) if diffs else None


def run(out_dir="results", profile="paper", models=("mlp", "lenet5"), variants=None, seeds=10,
        trials=None, ms=None, ns=None, search: bool = True, search_seeds: int = 3,
        search_model: str = "mlp", search_fields=SEARCH_FIELDS, single_seeds: int | None = None,
        full_seeds=("baseline",), provider=None, cache_dir=None, command: str | None = None,
        log=print, write_every: float = 5.0) -> dict:
    """Run (or resume) the forensics of Table I and return the result dictionary.

    For every model, every variant (default :func:`one_at_a_time`) and every seed of the
    draws (``seeds``: a count, seeds 0..seeds-1, or a list), all cells m x n are computed
    (:func:`cell`) and written to ``out_dir/forensics_{profile}.json``: atomically, at most
    every ``write_every`` seconds and at the end, so a killed run loses only the last few
    seconds and resumes after its last written cell.  With ``search``, a greedy search then
    combines the one-at-a-time answers on ``search_model`` (each field in ``search_fields``,
    default :data:`SEARCH_FIELDS`, tried on top of the current best, judged by the mean absolute
    difference to the paper over the first ``search_seeds`` seeds, until nothing improves);
    the winner is run with every seed on every model as the variant named in
    ``result["best"]``.  With ``single_seeds``, the variants not named in ``full_seeds`` (and
    not the winner) get only the first ``single_seeds`` seeds.  ``provider(model, variant)`` gives ``({r: (features_P, features_Q)},
    model_info)`` or None (default: :class:`CachedModels`, which trains only missing MLPs).
    """
    from .. import files
    from ..profiles import Profile, get_profile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    trials = V.check_positive_int(prof.trials if trials is None else trials, "trials")
    seeds = list(range(V.check_positive_int(seeds, "seeds"))) if isinstance(seeds, (int, np.integer)) \
        else [int(s) for s in seeds]
    if not seeds or seeds[0] != 0:
        raise ValueError(f"seeds must start with 0 (the draws of the committed Table I), got {seeds}")
    search_seeds = seeds[:V.check_positive_int(search_seeds, "search_seeds")]
    ms = [V.check_m(m) for m in (ms or prof.ms)]
    ns = [V.check_n(n) for n in (ns or prof.ns)]
    variants = dict(one_at_a_time() if variants is None else variants)
    if "baseline" not in variants:
        variants = {"baseline": BASELINE, **variants}
    provider = provider or CachedModels(prof, cache_dir)
    path = result_path(out_dir, prof)
    if single_seeds is not None:
        single_seeds = min(V.check_positive_int(single_seeds, "single_seeds"), len(seeds))
    full_seeds = tuple(full_seeds)
    settings = _settings(prof, trials, seeds, ms, ns, single_seeds, full_seeds)
    files.remove_stale_temps(path)
    runinfo = dict(files.provenance(command), cells_done=0, seconds=0.0)
    if path.exists():
        result = files.read_result(path, RESULT_FORMAT)
        if result.get("settings") != settings:
            differ = sorted(k for k in settings if result["settings"].get(k) != settings[k])
            raise ValueError(f"{path} was made with other settings ({', '.join(differ)} differ); "
                             "delete it or pass another --out folder")
        log(f"[forensics] resuming from {path}: {len(result['cells'])} cell(s) already done")
    else:
        result = {**files.result_header(RESULT_FORMAT, command), "settings": settings, "runs": [],
                  "models": {}, "variants": {}, "unavailable": {}, "search": None, "best": None, "cells": [], "run_seconds": 0.0}
    result["runs"].append(runinfo)
    result["unavailable"] = {}  # recomputed: a model may have been trained since
    done = {(c["variant"], c["model"], c["seed"], c["m"], c["n"]) for c in result["cells"]}
    clock = {"start": time.perf_counter(), "written": time.perf_counter()}

    def save(force=False):
        now = time.perf_counter()
        if force or now - clock["written"] >= write_every:
            elapsed = now - clock["start"]
            clock["start"] = now
            result["run_seconds"] = round(result["run_seconds"] + elapsed, 1)
            runinfo["seconds"] = round(runinfo["seconds"] + elapsed, 1)
            runinfo["finished"] = result["provenance"]["finished"] = files.now()
            files.write_json_atomic(path, result)
            clock["written"] = now

    def evaluate(name, variant, model, use_seeds) -> bool:
        todo = [(s, m, n) for s in use_seeds for m in ms for n in ns
                if (name, model, s, m, n) not in done]
        result["variants"].setdefault(name, variant.to_dict())
        if not todo:
            return True
        got = provider(model, variant)
        if got is None:
            if name not in result["unavailable"].get(model, []):
                result["unavailable"].setdefault(model, []).append(name)
                log(f"[forensics] {model} {name}: its model is not available, left out")
            return False
        feats, info = got
        result["models"][f"{model}/{variant.kept}/{variant.split}/{variant.train_seed}"] = info
        for s, m, n in todo:
            t0 = time.perf_counter()
            c = cell(feats, m, n, trials, s, variant)
            c = {"variant": name, "model": model, "seed": s, "m": m, "n": n, **c,
                 "seconds": round(time.perf_counter() - t0, 3)}
            result["cells"].append(c)
            done.add((name, model, s, m, n))
            runinfo["cells_done"] += 1
            save()
            log(f"  {model} {name} seed={s} m={m} n={n}: r_opt={c['r_opt']} "
                f"acc_r_opt={c['acc_r_opt']:.2f} mean acc_r={c['mean_acc_r']:.3f}")
        save(force=True)
        return True

    for model in models:
        for name, variant in variants.items():
            few = single_seeds is not None and name not in full_seeds
            evaluate(name, variant, model, seeds[:single_seeds] if few else seeds)

    if search and search_model in models:
        singles = {n: v for n, v in variants.items()
                   if set(v.changes()) <= set(search_fields)}
        scored = {n: _objective(result, n, search_model, search_seeds) for n in singles}
        scored = {n: s for n, s in scored.items() if s is not None}
        if not scored:
            log("[forensics] no cell of the paper's Table I was computed: no combination search")
            search = False
    if search and search_model in models:
        current = min(scored, key=scored.get)
        best_v, best_s = variants[current], scored[current]
        path_log = [{"variant": current, "objective": best_s}]
        improved = True
        while improved:
            improved = False
            for f in search_fields:
                allowed = {"features": FEATURES, "normalization": NORMALIZATIONS, "distance": DISTANCES,
                           "decision": DECISIONS, "tie": TIES, "kept": KEPT, "draws": DRAWS,
                           "split": SPLITS}[f]
                for value in allowed:
                    cand = replace(best_v, **{f: value})
                    if cand == best_v:
                        continue
                    name = variant_name(cand)
                    if not evaluate(name, cand, search_model, search_seeds):
                        continue
                    score = _objective(result, name, search_model, search_seeds)
                    if score is not None and score < best_s - 1e-12:
                        best_v, best_s, improved = cand, score, True
                        path_log.append({"variant": name, "objective": score})
                        log(f"[forensics] search: {name} -> {score:.4f}")
        result["search"] = {"model": search_model, "seeds": search_seeds, "fields": list(search_fields),
                            "objective": "mean over cells of (|acc_r_opt - paper| + |mean acc_r - paper|) / 2, "
                                         "values averaged over the search seeds", "path": path_log}
        result["best"] = variant_name(best_v)
        for model in models:
            evaluate(result["best"], best_v, model, seeds)
    save(force=True)
    result["path"] = str(path)
    return result


def committed(profile: str = "paper") -> dict:
    """The committed forensics result ``pmi_tutorial/results/forensics_{profile}.json``."""
    from .. import files

    return files.committed_result(f"{RESULT_NAME}_{profile}", RESULT_FORMAT)


def format_cells(result: dict, variant: str, model: str | None = None) -> str:
    """One variant's cells in the paper's layout: ``seed 0 [min-max over seeds] (paper)``."""
    c = compare(result, variant, model)
    if not c["cells"]:
        return f"{variant}: no cells"
    lines = [f"{variant} ({Variant(**result['variants'][variant]).describe()}), {c['seeds']} seed(s); "
             "entries: seed 0 [range over seeds] (paper)",
             f"{'model':<7} {'m':>2} {'n':>4}  {'r_opt':>9}  {'acc_r_opt':>25}  {'mean acc_r':>28}"]
    for r in c["rows"]:
        lo, hi = r["acc_r_opt_range"]
        mlo, mhi = r["mean_acc_r_range"]
        lines.append(
            f"{r['model']:<7} {r['m']:>2} {r['n']:>4}  {r['r_opt']:>3} ({r['paper_r_opt']})  "
            f"{r['acc_r_opt']:.2f} [{lo:.2f}-{hi:.2f}] ({r['paper_acc_r_opt']:.2f})  "
            f"{r['mean_acc_r']:.3f} [{mlo:.3f}-{mhi:.3f}] ({r['paper_mean_acc_r']:.3f})")
    lines.append(f"mean |difference| to the paper: acc_r_opt {c['mad_acc_r_opt']:.3f}, "
                 f"mean acc_r {c['mad_mean_acc_r']:.3f}; paper inside the range over seeds: "
                 f"{c['within_acc_r_opt']}/{c['cells']} (acc_r_opt), {c['within_mean_acc_r']}/{c['cells']} (mean)")
    return "\n".join(lines)


def provenance_text(result: dict) -> str:
    """Where the forensics numbers come from: settings, every run, every model used."""
    s = result["settings"]
    lines = [f"forensics of Table I, profile {s['profile']}, t = {s['trials']}, seeds of the draws "
             f"{s['seeds'][0]}..{s['seeds'][-1]} (one-at-a-time variants: the first "
             f"{s.get('single_seeds') or len(s['seeds'])}; all of them for "
             f"{', '.join(s.get('full_seed_variants') or ['baseline'])} and the best combination)"]
    for i, run in enumerate(result.get("runs") or [result["provenance"]], 1):
        hw = run["hardware"]
        device = hw.get("gpu") or f"{hw.get('processor')} ({hw.get('cpu_count')} CPUs)"
        lines.append(f"run {i}: {run['command']}")
        lines.append(f"  commit {run['git_commit'][:12]}{'-dirty' if run['git_commit'].endswith('-dirty') else ''}, "
                     f"{run['started']} -> {run.get('finished', '?')}, {run.get('cells_done', 0)} cell(s), "
                     f"{run.get('seconds', 0):.0f} s on {device}; torch {run['versions']['torch']}")
    for key, info in result.get("models", {}).items():
        lines.append(f"model {key}: {info['cache_file']}, {info['n_train']} / {info['n_val']} images, "
                     f"epoch {info['best_epoch'] if info.get('kept') == 'best' else info['epochs']} of "
                     f"{info['epochs']} (training accuracy "
                     f"{info['best_train_acc'] if info.get('kept') == 'best' else info['last_train_acc']:.4f}, "
                     f"validation {info['best_val_acc'] if info.get('kept') == 'best' else info['last_val_acc']:.4f})")
    for model, names in (result.get("unavailable") or {}).items():
        lines.append(f"not run on {model} (no trained model): {', '.join(names)}")
    return "\n".join(lines)
