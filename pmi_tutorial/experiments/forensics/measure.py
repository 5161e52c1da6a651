"""One cell of Table I under a reading of the paper: the feature kinds of a model, then every
trial of a class as batched tensor arithmetic (normalization, distances, decision).  For the
paper's reading the decisions equal those of :func:`pmi_tutorial.fingerprint.class_accuracy`
trial by trial (book chapter "Reproducing Tables I and II")."""

from __future__ import annotations

import numpy as np
import torch

from ... import _validate as V
from ... import batched
from .variants import BASELINE, DECISIONS, DISTANCES, DRAWS, FEATURES, NORMALIZATIONS, TIES, Variant


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
    from ...features import as_input, forward, eval_mode

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
    from ...data import class_pools

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
    from ...fingerprint import Draws, draw_trials

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
    from ...fingerprint import class_seed, summarize_classes as summarize

    acc = {}
    for r, (fP, fQ) in sorted(feature_pools.items()):
        guesses, s = class_guesses(fP, fQ, m, n, trials, class_seed(seed, r), variant)
        acc[int(r)] = float(np.mean(guesses == s))
    summ = summarize(acc, m)
    return {"r_opt": summ.r_opt, "acc_r_opt": summ.acc_opt, "mean_acc_r": summ.mean_acc,
            "acc_by_class": {str(r): a for r, a in acc.items()}}
