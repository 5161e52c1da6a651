r"""Agglomerative clustering, Algorithm 1 of the paper, written from scratch.

Book chapter "Linkage clustering".  Start with every object in its own cluster; repeatedly merge
the two clusters :math:`\mathcal G_1^*, \mathcal G_2^*` at the smallest cluster distance
:math:`D(\mathcal G_1, \mathcal G_2)` until one cluster remains.  The cluster distance is

* single linkage (Eq. 12): :math:`D(X, Y) = \min_{x\in X, y\in Y} d(x, y)`,
* complete linkage: the maximum of :math:`d(x, y)`,
* average linkage: the mean of :math:`d(x, y)`.

The result is returned in SciPy's linkage-matrix format so that it can be compared with
``scipy.cluster.hierarchy.linkage`` and drawn with ``scipy.cluster.hierarchy.dendrogram``:
row ``i`` holds ``[a, b, height, size]``; the cluster made at step ``i`` gets the id ``m + i``.
"""

from __future__ import annotations

import numpy as np

from . import _validate as V

_REDUCE = {"single": np.min, "complete": np.max, "average": np.mean}


def check_distance_matrix(D) -> np.ndarray:
    """Validate a square, symmetric, finite, non-negative distance matrix with zero diagonal."""
    D = V.as_float_array(D, "D", ndim=2)
    if D.shape[0] != D.shape[1]:
        raise ValueError(
            f"D must be a square (m, m) distance matrix, got shape {D.shape}; "
            "pass the output of pmi_tutorial.mmd.pairwise_mmd"
        )
    if D.shape[0] < 2:
        raise ValueError(f"D must describe at least 2 objects to cluster, got {D.shape[0]}")
    if not np.allclose(D, D.T, rtol=1e-9, atol=1e-12):
        raise ValueError("D must be symmetric (D[i, j] == D[j, i]); symmetrize it with (D + D.T) / 2")
    if np.any(D < 0):
        raise ValueError("D must be non-negative; distances cannot be negative")
    return D


def agglomerative(D, linkage: str = "single") -> np.ndarray:
    """Algorithm 1: bottom-up merging on an (m, m) distance matrix.

    Parameters
    ----------
    D : (m, m) symmetric distance matrix (e.g. MMD distances between mini-datasets).
    linkage : ``"single"`` (Eq. 12, the paper's choice), ``"complete"`` or ``"average"``.

    Returns
    -------
    Z : (m - 1, 4) float array in SciPy's format ``[a, b, height, size]`` with ``a < b``.
        Ties between equal distances go to the pair with the smallest cluster ids.
    """
    reduce = _REDUCE[V.check_linkage(linkage)]
    D = check_distance_matrix(D)
    m = D.shape[0]
    active = {i: [i] for i in range(m)}  # cluster id -> original objects (the set C)
    Z = np.zeros((m - 1, 4))
    for step in range(m - 1):
        best = None
        ids = sorted(active)
        for ai, a in enumerate(ids):  # line 5: argmin over pairs of active clusters
            for b in ids[ai + 1 :]:
                dist = float(reduce(D[np.ix_(active[a], active[b])]))
                if best is None or dist < best[0]:
                    best = (dist, a, b)
        dist, a, b = best
        merged = active.pop(a) + active.pop(b)  # lines 6-7
        active[m + step] = merged
        Z[step] = (a, b, dist, len(merged))  # line 8: record the union in the tree
    return Z


def members(Z, cluster_id: int) -> list[int]:
    """Original object indices inside cluster ``cluster_id`` of a linkage matrix."""
    Z = np.asarray(Z)
    m = Z.shape[0] + 1
    stack, out = [int(cluster_id)], []
    while stack:
        c = stack.pop()
        if c < m:
            out.append(c)
        else:
            stack.extend(int(x) for x in Z[c - m, :2])
    return sorted(out)


def final_clusters(Z) -> tuple[list[int], list[int]]:
    r"""The two clusters :math:`\mathcal G_1^*, \mathcal G_2^*` joined by the last merge.

    Returns two sorted lists of original indices, in the order of the last row of ``Z``.
    """
    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 4 or Z.shape[0] < 1:
        raise ValueError(
            f"Z must be a linkage matrix of shape (m - 1, 4) with m >= 2, got shape {Z.shape}; "
            "pass the output of agglomerative() or scipy.cluster.hierarchy.linkage"
        )
    a, b = Z[-1, :2]
    return members(Z, int(a)), members(Z, int(b))
