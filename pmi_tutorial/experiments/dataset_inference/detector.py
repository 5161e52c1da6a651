"""The owner's detector (the blind walk and the membership regressor of :mod:`pmi_tutorial.baselines.dataset_inference`) and one suspect's test on revealed images."""

from __future__ import annotations

import time

import numpy as np

from .config import DIConfig


# --------------------------------------------------------------------------- images


def _pool_images(pools_split):
    """All member images (part A) and non-member images (Q) of a pool split, with labels."""
    return (pools_split.train_x, pools_split.train_y), (pools_split.val_x, pools_split.val_y)


def _take(xy, n, seed, exclude=frozenset()):
    """``n`` images of ``xy`` in a seeded order, skipping those whose hash is in ``exclude``."""
    from ...baselines.dataset_inference import row_hashes

    x, y = xy
    order = np.random.default_rng(seed).permutation(len(x))
    if exclude:
        h = row_hashes(x)
        order = np.asarray([i for i in order if h[i] not in exclude], dtype=np.int64)
    idx = order[:n]
    return x[idx], y[idx]


def owner_detector(owner, pools_split, cfg: DIConfig, box, unit):
    """Dataset Inference fitted on the owner's own model from its known members / non-members."""
    from ...baselines.dataset_inference import DatasetInference

    members, nonmembers = _pool_images(pools_split)
    km = _take(members, cfg.known, [cfg.seed, 1])
    kn = _take(nonmembers, cfg.known, [cfg.seed, 2])
    return DatasetInference.fit(owner, km, kn, seed=cfg.seed, epochs=cfg.epochs,
                                directions=cfg.directions, steps=cfg.steps, box=box, unit=unit,
                                step_scale=cfg.step_scale)


def test_suspect(detector, suspect, pools_split, cfg: DIConfig, draw: int = 0) -> dict:
    """One suspect's Dataset Inference record (p-values per size, cost).

    ``draw`` seeds which revealed images are taken: 0 (the owner's one draw, shared by every
    suspect tested against it) or a suspect's own index + 1 (an independent draw)."""
    import torch

    from ...features import logits

    members, nonmembers = _pool_images(pools_split)
    used = detector.regressor.train_hashes
    rm = _take(members, cfg.max_revealed, [cfg.seed, 3] + ([draw] if draw else []), exclude=used)
    rn = _take(nonmembers, cfg.max_revealed, [cfg.seed, 4] + ([draw] if draw else []), exclude=used)
    sizes = tuple(k for k in cfg.revealed if k <= min(len(rm[0]), len(rn[0])))
    t0 = time.perf_counter()
    res = detector.test(suspect, rm, rn, num_revealed=sizes, repeats=cfg.repeats, seed=cfg.seed)
    walk_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits(suspect, torch.cat([rm[0], rn[0]]))  # one forward pass over the revealed images
    forward_seconds = time.perf_counter() - t0
    return {
        "pvalue_hmean": {str(k): res.pvalues[k] for k in sizes},
        "pvalue_first_draw": {str(k): float(res.draws[k][0]) for k in sizes},
        "pvalue_median": {str(k): float(np.median(res.draws[k])) for k in sizes},
        "mean_difference": res.mean_difference,
        "queries": int(res.queries),
        "forward_equivalents": round(res.forward_equivalents, 2),
        "seconds": round(walk_seconds, 2),
        "forward_seconds": round(forward_seconds, 4),
        "revealed_available": [len(rm[0]), len(rn[0])],
    }


test_suspect.__test__ = False  # not a pytest test, despite its name
