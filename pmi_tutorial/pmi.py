r"""Pooled membership inference for one trial (paper Section III-B; book chapter "PMI end to end").

Given m feature matrices :math:`F_0, \dots, F_{m-1}` (Eq. 4), one of which comes from samples the
model was trained on, PMI

1. normalizes every feature component jointly over all :math:`mn` rows (Eq. 5-6),
2. measures the distance between every pair of matrices by the unbiased MMD (Eq. 10-11),
3. clusters the m matrices with single linkage (Algorithm 1, Eq. 12) down to two clusters,
4. guesses that the member sits in the *smaller* final cluster.
"""

from __future__ import annotations

import numpy as np

from . import _validate as V
from .clustering import agglomerative, final_clusters
from .mmd import pairwise_mmd


def normalize_features(F):
    r"""Eq. 5-6: every component has zero mean and unit variance over all :math:`mn` rows.

    .. math::
        \frac{1}{nm}\sum_{i,j} F_{i,j,k} = 0, \qquad \frac{1}{nm}\sum_{i,j} F_{i,j,k}^2 = 1.

    ``F`` has shape (m, n, c) (or (..., m, n, c) with leading batch axes, NumPy or torch).
    A component that is constant over all rows carries no information: it becomes 0 rather
    than NaN.
    """
    if not hasattr(F, "detach"):
        F = np.asarray(F, dtype=np.float64)
    if F.ndim < 3:
        raise ValueError(
            f"F must have shape (m, n, c), got {tuple(F.shape)}; stack the m feature matrices with np.stack"
        )
    # A constant component is detected exactly (max == min): its computed mean can differ from
    # the constant by round-off, so "std > 0" alone would turn it into +-1 instead of 0.
    if hasattr(F, "detach"):
        import torch

        F = F.double() if not torch.is_floating_point(F) else F
        mean = F.mean(dim=(-3, -2), keepdim=True)
        std = F.std(dim=(-3, -2), keepdim=True, unbiased=False)
        const = F.amax(dim=(-3, -2), keepdim=True) == F.amin(dim=(-3, -2), keepdim=True)
        scale = torch.where(const | (std == 0), torch.ones_like(std), std)
        return torch.where(const, torch.zeros_like(F), F - mean) / scale
    mean = F.mean(axis=(-3, -2), keepdims=True)
    std = F.std(axis=(-3, -2), keepdims=True)
    const = F.max(axis=(-3, -2), keepdims=True) == F.min(axis=(-3, -2), keepdims=True)
    return np.where(const, 0.0, F - mean) / np.where(const | (std == 0), 1.0, std)


def pick(candidates, u: float) -> int:
    """Choose ``candidates[floor(u * len)]`` for a uniform ``u`` in [0, 1).

    Drawing ``u`` once per trial, whether or not it is needed, keeps the random stream the
    same for the fast batched path and this one-trial path.
    """
    candidates = list(candidates)
    return int(candidates[min(int(u * len(candidates)), len(candidates) - 1)])


def guess_from_clusters(G1, G2, u: float) -> int:
    """The smaller final cluster holds the guess; equal sizes leave every object a candidate."""
    if len(G1) == len(G2):
        candidates = sorted(list(G1) + list(G2))
    else:
        candidates = G1 if len(G1) < len(G2) else G2
    return pick(candidates, u)


def identify_member(F, rng=None, kernel: str = "linear", linkage: str = "single") -> int:
    """Guess which of the m mini-datasets in ``F`` (shape (m, n, c)) the model was trained on.

    Normalize (Eq. 5-6), pairwise MMD distances (Eq. 10-11), agglomerative clustering
    (Algorithm 1) down to two clusters; return the index in the smaller one.  When that cluster
    holds several mini-datasets, or both clusters have the same size, a member of it is drawn
    with ``rng`` (None, an int seed or a ``numpy.random.Generator``).
    """
    V.check_kernel(kernel)
    V.check_linkage(linkage)
    rng = V.rng_from(rng)
    F = V.as_float_array(F, "F", ndim=3)
    V.check_m(F.shape[0])
    V.check_n(F.shape[1])
    D = pairwise_mmd(normalize_features(F), kernel=kernel)
    G1, G2 = final_clusters(agglomerative(D, linkage=linkage))
    return guess_from_clusters(G1, G2, rng.random())
