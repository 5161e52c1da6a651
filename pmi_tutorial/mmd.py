r"""Maximum mean discrepancy (paper Eq. 7-11; book chapter "Maximum mean discrepancy").

For two samples :math:`X=\{x_i\}_{i=1}^n` and :math:`Y=\{y_i\}_{i=1}^n` of equal size, the
unbiased estimate of :math:`\mathrm{MMD}^2` (Eq. 10-11) is

.. math::

    \widehat{\mathrm{MMD}}^2_u = \frac{1}{n^2 - n}\sum_{i \ne j} h[i, j],\qquad
    h[i, j] = k(x_i, x_j) + k(y_i, y_j) - k(x_i, y_j) - k(x_j, y_i).

For the linear kernel :math:`k(x, y) = x \cdot y` the double sum collapses.  With
:math:`d_i = x_i - y_i` one has :math:`h[i, j] = d_i \cdot d_j`, so

.. math::

    \widehat{\mathrm{MMD}}^2_u = \frac{\lVert \sum_i d_i \rVert^2 - \sum_i \lVert d_i\rVert^2}{n(n-1)},

which costs :math:`O(nd)` and never forms an :math:`n\times n` matrix.  Because the diagonal
terms are left out, the estimate can be negative when the two distributions agree.
"""

from __future__ import annotations

import numpy as np

from . import _validate as V


def _pair(X, Y):
    X = V.as_float_array(X, "X", ndim=2)
    Y = V.as_float_array(Y, "Y", ndim=2)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(
            f"X and Y must hold the same number of samples for the unbiased estimate "
            f"(Eq. 10 assumes |X| = |Y|), got {X.shape[0]} and {Y.shape[0]}; "
            "draw equal-sized mini-datasets"
        )
    if X.shape[1] != Y.shape[1]:
        raise ValueError(
            f"X and Y must have the same feature width, got {X.shape[1]} and {Y.shape[1]}; "
            "compute both with the same model"
        )
    V.check_n(X.shape[0])
    return X, Y


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    sq = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(sq, 0.0)


def median_bandwidth(Z) -> float:
    """Median heuristic: the median Euclidean distance between distinct rows of ``Z``.

    Falls back to 1.0 when all rows coincide (every distance is zero).
    """
    Z = V.as_float_array(Z, "Z", ndim=2)
    iu = np.triu_indices(Z.shape[0], k=1)
    d = np.sqrt(_sq_dists(Z, Z)[iu])
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


def rbf_kernel(A, B, bandwidth: float) -> np.ndarray:
    r"""Gaussian kernel matrix :math:`k(a, b) = \exp(-\lVert a-b\rVert^2 / (2\sigma^2))`."""
    return np.exp(-_sq_dists(A, B) / (2.0 * bandwidth**2))


def _check_bandwidth(bandwidth) -> float:
    return V.check_scalar(bandwidth, "bandwidth", float, min_val=0.0, include_boundaries="neither",
                          hint="a positive number such as mmd.median_bandwidth(Z)")


def mmd2_unbiased(X, Y, kernel: str = "linear", bandwidth: float | None = None) -> float:
    r"""Unbiased :math:`\mathrm{MMD}^2` of Eq. 10-11, *before* the square root.

    Parameters
    ----------
    X, Y : array or tensor of shape (n, d), equal n >= 2
    kernel : ``"linear"`` (the paper's dot product, closed form in O(nd)) or ``"rbf"``
        (Gaussian; its bandwidth is the median distance between the pooled rows of X and Y
        unless ``bandwidth`` is given).

    Returns
    -------
    float, which can be negative (see the module docstring).
    """
    V.check_kernel(kernel)
    X, Y = _pair(X, Y)
    n = X.shape[0]
    if kernel == "linear":
        D = X - Y
        s = D.sum(0)
        return float((s @ s - np.einsum("ij,ij->", D, D)) / (n * (n - 1)))
    bw = median_bandwidth(np.vstack([X, Y])) if bandwidth is None else _check_bandwidth(bandwidth)
    Kxx, Kyy, Kxy = rbf_kernel(X, X, bw), rbf_kernel(Y, Y, bw), rbf_kernel(X, Y, bw)
    H = Kxx + Kyy - Kxy - Kxy.T  # H[i, j] = h[i, j] of Eq. 11
    return float((H.sum() - np.trace(H)) / (n * (n - 1)))


def mmd2_biased(X, Y, kernel: str = "linear", bandwidth: float | None = None) -> float:
    r"""Biased (V-statistic) :math:`\mathrm{MMD}^2`: the plug-in of Eq. 8-9 with empirical means.

    Keeps the diagonal terms, so it is never negative.  For the linear kernel it equals
    :math:`\lVert \bar x - \bar y\rVert^2`.  Shown in the book as the contrast to Eq. 10.
    """
    V.check_kernel(kernel)
    X, Y = _pair(X, Y)
    if kernel == "linear":
        diff = X.mean(0) - Y.mean(0)
        return float(diff @ diff)
    bw = median_bandwidth(np.vstack([X, Y])) if bandwidth is None else _check_bandwidth(bandwidth)
    return float(
        rbf_kernel(X, X, bw).mean() + rbf_kernel(Y, Y, bw).mean() - 2 * rbf_kernel(X, Y, bw).mean()
    )


def pairwise_mmd2_linear(F):
    r"""Unbiased linear-kernel :math:`\mathrm{MMD}^2` between every pair of mini-datasets.

    Works on NumPy arrays or torch tensors of shape (..., m, n, d) (leading batch axes allowed,
    e.g. one per trial) and returns (..., m, m) in the same library, with zeros on the diagonal.
    With :math:`S_a = \sum_i F_{a,i}` and :math:`G_{ab} = \sum_i F_{a,i}\cdot F_{b,i}`,

    .. math:: \mathrm{MMD}^2_{ab} = \frac{\lVert S_a - S_b\rVert^2 - (G_{aa} + G_{bb} - 2G_{ab})}{n(n-1)}.
    """
    n = F.shape[-2]
    S = F.sum(-2)  # (..., m, d)
    if hasattr(F, "detach"):  # torch
        import torch

        G = torch.einsum("...aik,...bik->...ab", F, F)
        SS = S @ S.transpose(-1, -2)
        g = torch.diagonal(G, dim1=-2, dim2=-1)
        s2 = torch.diagonal(SS, dim1=-2, dim2=-1)
    else:
        G = np.einsum("...aik,...bik->...ab", F, F)
        SS = S @ np.swapaxes(S, -1, -2)
        g = np.diagonal(G, axis1=-2, axis2=-1)
        s2 = np.diagonal(SS, axis1=-2, axis2=-1)
    sum_sq = s2[..., :, None] + s2[..., None, :] - 2 * SS  # ||S_a - S_b||^2
    paired = g[..., :, None] + g[..., None, :] - 2 * G  # sum_i ||F_ai - F_bi||^2
    out = (sum_sq - paired) / (n * (n - 1))
    # exact zeros on the diagonal (round-off would leave ~1e-16 there)
    m = F.shape[-3]
    eye = np.eye(m, dtype=bool)
    if hasattr(out, "masked_fill"):
        import torch

        return out.masked_fill(torch.as_tensor(eye, device=out.device), 0.0)
    out[..., eye] = 0.0
    return out


def pairwise_mmd(F, kernel: str = "linear", bandwidth: float | None = None) -> np.ndarray:
    r"""Distance matrix between m mini-datasets: :math:`\sqrt{\max(\mathrm{MMD}^2_u, 0)}`.

    Parameters
    ----------
    F : array or tensor of shape (m, n, d), the stacked feature matrices :math:`F_0..F_{m-1}`
        of Eq. 4.
    kernel : ``"linear"`` or ``"rbf"``; for ``"rbf"`` one bandwidth serves every pair: the
        median distance between all m*n rows (unless ``bandwidth`` is given), so the distances
        are comparable.

    Returns
    -------
    (m, m) float64 array, symmetric, zero diagonal.  Clipping at 0 keeps the order of the
    positive distances, and single linkage depends only on that order.
    """
    V.check_kernel(kernel)
    F = V.as_float_array(F, "F", ndim=3)
    m, n, _ = F.shape
    V.check_m(m)
    V.check_n(n)
    if kernel == "linear":
        D2 = pairwise_mmd2_linear(F)
    else:
        bw = median_bandwidth(F.reshape(m * n, -1)) if bandwidth is None else _check_bandwidth(bandwidth)
        D2 = np.zeros((m, m))
        for a in range(m):
            for b in range(a + 1, m):
                D2[a, b] = D2[b, a] = mmd2_unbiased(F[a], F[b], kernel="rbf", bandwidth=bw)
    D = np.sqrt(np.maximum(D2, 0.0))
    return (D + D.T) / 2  # exactly symmetric
