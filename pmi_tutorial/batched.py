r"""The trial arithmetic of PMI, batched over many trials at once (book chapter "PMI end to end").

One trial of PMI (:func:`pmi_tutorial.pmi.identify_member`) normalizes m mini-datasets of n
feature rows jointly (Eq. 5-6), measures their pairwise unbiased MMD (Eq. 10-11), clusters them
(Algorithm 1) and guesses the member in the smaller final cluster.  A sample's features do not
change between trials, so ``fingerprint`` (acc_r) and ``stats`` (the permutation tests, which
re-split the pools thousands of times) both run *all* their trials through the functions
here, on one table of features:

* :func:`feature_table` - the (c, N) table of the pooled features, centred, on the device
  (:func:`feature_tables`: several pools side by side in one table);
* :func:`gather` - the rows of a batch of trials, component-major (c, T, m, n);
* :func:`gram` - their sums and products per mini-dataset (one batched matrix product);
* :func:`linear_mmd2` / :func:`rbf_mmd2` - Eq. 5-6 then Eq. 10-11 for every trial, (T, m, m);
* :func:`distances` - :math:`\sqrt{\max(\mathrm{MMD}^2_u, 0)}`, in chunks of trials;
* :func:`two_clusters` - Algorithm 1 on a batch of trials (single, complete, average linkage);
* :func:`linkage_guesses` / :func:`outlier_guesses` - the guess of every trial, ties broken by
  :func:`kth_candidate` exactly as :func:`pmi_tutorial.pmi.pick` breaks them;
* :func:`trial_guesses` - all of the above for a batch of trials;
* :func:`one_thread` and :func:`device` - where and on how many threads this runs.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from . import _validate as V

#: elements of one gathered (c, T, m, n) feature block (float64: 8 bytes each): 8 MB, small
#: enough that the sums and products read it again from the processor's cache (a block four
#: times larger made the paper's rule in ``verify`` about 10% slower on a 2-core CPU)
CHUNK_ELEMENTS = 1 << 20
KERNELS = ("linear", "rbf")
RULES = ("cluster", "outlier")


def device() -> str:
    """``"cuda"`` when a GPU is available, else ``"cpu"``: where the trial arithmetic runs."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextmanager
def one_thread(dev):
    """Run the trial arithmetic on one CPU thread (nothing changes on a GPU).

    Its operations are small (a few MB each), so intra-op threads cost more in hand-offs than
    they win, badly so on a busy machine; the threads stay with the forward pass.
    """
    import torch

    threads = torch.get_num_threads()
    if str(getattr(dev, "type", dev)) != "cpu" or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def feature_table(features, dtype="float64", dev=None):
    """The (c, N) transposed table of the pooled features ``features`` (N, c), as a tensor.

    The features are centred by their mean over all N rows (label-free: it changes no
    distance, and keeps the round-off of the per-trial sums small), transposed so that a
    gather of a trial's rows is contiguous per component, and put on ``dev`` (default
    :func:`device`).  ``dtype``: ``"float64"`` (exact) or ``"float32"`` (faster).
    """
    return feature_tables([features], dtype, dev)[0]


def gather(ZT, idx):
    """Rows ``idx`` (T, m, n) of the table ``ZT`` (c, N), as a new (c, T, m, n) tensor.

    On the CPU NumPy's ``take`` gathers several times faster than torch's advanced indexing;
    on a GPU torch gathers in place.
    """
    import torch

    idx = np.asarray(idx.cpu() if hasattr(idx, "cpu") else idx, dtype=np.int64)
    T, m, n = idx.shape
    if ZT.device.type == "cpu":
        X = torch.from_numpy(np.take(ZT.numpy(), idx.reshape(-1), axis=1))
    else:
        X = torch.index_select(ZT, 1, torch.as_tensor(idx.reshape(-1), device=ZT.device))
    return X.reshape(ZT.shape[0], T, m, n)


def feature_tables(parts, dtype="float64", dev=None):
    """Several feature arrays (N_i, c) as one (c, sum N_i) table, each part centred by its own
    mean exactly as :func:`feature_table` centres it alone; returns the table and the first
    column of every part (add it to a part's row indices)."""
    import torch

    table = {"float64": torch.float64, "float32": torch.float32}
    V.check_choice(dtype, table, "dtype")
    blocks = [np.asarray(Z, dtype=np.float64) for Z in parts]
    starts = np.cumsum([0] + [len(Z) for Z in blocks[:-1]])
    Zt = np.empty((blocks[0].shape[1], sum(len(Z) for Z in blocks)))
    for Z, s0 in zip(blocks, starts):
        np.subtract(Z.T, Z.mean(0)[:, None], out=Zt[:, s0:s0 + len(Z)])
    return torch.as_tensor(Zt, dtype=table[dtype], device=dev or device()), starts


def gram(X):
    r"""Per component and trial of ``X`` (c, T, m, n): the sums S (c, T, m) of every mini-dataset
    and the products G (c, T, m, m), :math:`G_{ab} = \sum_i x_{ai} x_{bi}` (one batched product)."""
    import torch

    c, T, m, n = X.shape
    Xb = X.reshape(c * T, m, n)
    return X.sum(-1), torch.bmm(Xb, Xb.transpose(1, 2)).reshape(c, T, m, m)


def _mmd2(S, G, w, n):
    """Eq. 10-11 from the sums: (T, m, m), the weighted sum over components, exactly symmetric
    with a zero diagonal (the upper triangle mirrored)."""
    g = G.diagonal(dim1=-2, dim2=-1)
    dS = S[..., :, None] - S[..., None, :]  # (c, T, m, m)
    h = dS * dS - (g[..., :, None] + g[..., None, :] - 2 * G)
    d2 = (w[..., None, None] * h).sum(0).triu_(1) / (n * (n - 1))
    return d2 + d2.transpose(1, 2)


def _two_pass(X):
    """Eq. 5-6 then Eq. 10-11 for the trials of ``X`` (c, T, m, n), each trial's rows centred by
    the trial's own mean first (the two-pass variance) and a component constant in a trial
    found exactly as :func:`pmi_tutorial.pmi.normalize_features` finds it (weight 0)."""
    import torch

    c, T, m, n = X.shape
    Xr = X.reshape(c, T, m * n)
    const = Xr.amax(-1) == Xr.amin(-1)
    Xr = Xr - Xr.mean(-1, keepdim=True)
    S, G = gram(Xr.reshape(c, T, m, n))
    var = G.diagonal(dim1=-2, dim2=-1).sum(-1) / (m * n) - (S.sum(-1) / (m * n)) ** 2  # mean: round-off
    w = torch.where(const | (var <= 0), 0.0, 1.0 / var.clamp_min(1e-300))
    return _mmd2(S, G, w, n)


def linear_mmd2(ZT, idx):
    r"""Unbiased linear-kernel MMD^2 (Eq. 10-11) after the normalization of Eq. 5-6, per trial.

    ``ZT`` (c, N) is the feature table (:func:`feature_table`, centred), ``idx`` (T, m, n) the
    rows of every trial.  Returns a (T, m, m) tensor, exactly symmetric with a zero diagonal,
    equal to ``mmd.pairwise_mmd2_linear(pmi.normalize_features(F))`` for each trial's ``F`` up to
    round-off.

    Per component k, with :math:`S_{ak} = \sum_i x_{aik}` and
    :math:`G_{abk} = \sum_i x_{aik} x_{bik}` (one batched matrix product over the gathered
    rows), Eq. 5-6 is a weight :math:`w_k = 1/\sigma_k^2` (0 for a component constant in the
    trial: it carries no information, as in :func:`pmi_tutorial.pmi.normalize_features`) and

    .. math:: \mathrm{MMD}^2_{ab} = \frac{\sum_k w_k\,[(S_{ak}-S_{bk})^2 - (G_{aak}+G_{bbk}-2G_{abk})]}{n(n-1)}.

    The bracket does not change when every row is shifted, so the sums of the table's centred
    rows serve as they are, and :math:`\sigma_k^2 = \sum_a G_{aak}/mn - \mu_k^2` in one pass.
    That is accurate wherever the trial's mean :math:`\mu_k` lies within one standard deviation
    of the table's centre (:math:`\mu_k^2 < \sigma_k^2`: round-off grows with
    :math:`1 + \mu_k^2/\sigma_k^2`), the usual case for a trial of rows drawn from the table.
    Every other trial (a component constant in it, whose one-pass variance is round-off no
    larger than :math:`\mu_k^2`, or a few extreme rows far from the rest) is computed again
    the two-pass way (:func:`_two_pass`), so that no case loses accuracy.
    """
    import torch

    X = gather(ZT, idx)  # (c, T, m, n), a fresh copy
    c, T, m, n = X.shape
    S, G = gram(X)
    mu = S.sum(-1) / (m * n)
    var = G.diagonal(dim1=-2, dim2=-1).sum(-1) / (m * n) - mu * mu  # (c, T)
    redo = var <= mu * mu
    w = torch.where(redo, 0.0, 1.0 / var.clamp_min(1e-300))
    d2 = _mmd2(S, G, w, n)
    again = torch.nonzero(redo.any(0)).flatten()
    if len(again):
        d2[again] = _two_pass(X[:, again])
    return d2


def median_positive(sq):
    """Row-wise median of sqrt(sq) over the positive entries (``mmd.median_bandwidth``; 1.0 if none).

    ``sq`` (T, L) holds squared distances.  The square root is monotone, so only the one or
    two middle entries are needed: a linear-time partition (NumPy) instead of a sort, when no
    row has a zero distance (the usual case); otherwise a sort that puts the zeros first.
    """
    import torch

    T, L = sq.shape
    if sq.device.type == "cpu" and not bool((sq <= 0).any()):
        lo, hi = (L - 1) // 2, L // 2
        part = np.partition(sq.numpy(), [lo, hi], axis=1)
        mid = torch.from_numpy(np.sqrt(part[:, [lo, hi]]))
        return mid.mean(1)
    d, _ = torch.sort(sq.clamp_min(0).sqrt(), dim=1)
    z = (d <= 0).sum(1)
    p = L - z
    lo = (z + (p - 1).clamp_min(0) // 2).clamp_max(L - 1)
    hi = (z + p // 2).clamp_max(L - 1)
    med = (d.gather(1, lo[:, None]) + d.gather(1, hi[:, None]))[:, 0] / 2
    return torch.where(p > 0, med, torch.ones_like(med))


def rbf_mmd2(ZT, idx, bandwidth=None):
    """Unbiased Gaussian-kernel MMD^2 (Eq. 10-11) after Eq. 5-6, per trial: (T, m, m).

    The bandwidth is, per trial, the median distance between the m*n normalized rows, as in
    :func:`pmi_tutorial.mmd.pairwise_mmd`; a fixed ``bandwidth`` skips that (faster).
    """
    import torch

    from .pmi import normalize_features

    F = normalize_features(gather(ZT, idx).permute(1, 2, 3, 0))  # (T, m, n, c)
    T, m, n, c = F.shape
    Y = F.reshape(T, m * n, c)
    q = (Y * Y).sum(-1)
    sq = torch.baddbmm(q[:, :, None] + q[:, None, :], Y, Y.transpose(1, 2), alpha=-2).clamp_min_(0)
    if bandwidth is None:
        iu = torch.triu_indices(m * n, m * n, 1, device=Y.device)
        bw = median_positive(sq[:, iu[0], iu[1]])
    else:
        bw = torch.full((T,), float(bandwidth), dtype=Y.dtype, device=Y.device)
    K = sq.div_(-2 * bw[:, None, None] ** 2).exp_().reshape(T, m, n, m, n)
    Ks = K.sum((2, 4))  # (T, m, m): sum over all i, j of block (a, b)
    Kt = K.diagonal(dim1=2, dim2=4).sum(-1)  # (T, m, m): sum over i of block (a, b) at (i, i)
    off = Ks - Kt
    diag = off.diagonal(dim1=1, dim2=2)
    out = (diag[:, :, None] + diag[:, None, :] - off - off.transpose(1, 2)) / (n * (n - 1))
    return out * (1 - torch.eye(m, dtype=out.dtype, device=out.device))


def distances(ZT, idx, kernel: str = "linear", bandwidth=None, chunk: int | None = None):
    r"""MMD distances :math:`\sqrt{\max(\mathrm{MMD}^2_u, 0)}` of every trial: (T, m, m).

    Trials are processed ``chunk`` at a time (default: gathered blocks of about
    :data:`CHUNK_ELEMENTS` numbers, fewer for the Gaussian kernel, which holds (mn)^2 kernel
    entries per trial), on one CPU thread (:func:`one_thread`).
    """
    import torch

    V.check_choice(kernel, KERNELS, "kernel")
    idx = np.asarray(idx)
    T, m, n = idx.shape
    if chunk is None:
        chunk = max(1, 2**21 // (m * n) ** 2) if kernel == "rbf" else max(1, CHUNK_ELEMENTS // (ZT.shape[0] * m * n))
    out = torch.empty((T, m, m), dtype=ZT.dtype, device=ZT.device)
    with one_thread(ZT.device):
        for start in range(0, T, chunk):
            sl = idx[start:start + chunk]
            d2 = linear_mmd2(ZT, sl) if kernel == "linear" else rbf_mmd2(ZT, sl, bandwidth)
            out[start:start + len(sl)] = d2.clamp_min(0).sqrt()
    return out


def kth_candidate(cand, u) -> np.ndarray:
    """Per row of the boolean (T, m) matrix ``cand``, the candidate number ``floor(u * count)``.

    The same rule as :func:`pmi_tutorial.pmi.pick` (``candidates[floor(u * len)]``, candidates
    in increasing order), one uniform ``u`` per trial, so batched and one-trial paths break
    ties identically.
    """
    cand = np.asarray(cand.cpu() if hasattr(cand, "cpu") else cand, dtype=bool)
    count = cand.sum(1)
    k = np.minimum((np.asarray(u) * count).astype(np.int64), count - 1)
    rank = np.cumsum(cand, axis=1) - 1
    return np.argmax(cand & (rank == k[:, None]), axis=1)


def two_clusters(D, linkage: str = "single"):
    """Algorithm 1 on a batch of distance matrices ``D`` (T, m, m) until two clusters remain.

    Each of the m - 2 merge steps is one tensor operation over all T trials: take the closest
    pair of active clusters (ties go to the smallest cluster ids, exactly as in
    :func:`pmi_tutorial.clustering.agglomerative`), and give the merged cluster the
    Lance-Williams distance of its parts: ``min`` (single), ``max`` (complete) or the
    size-weighted mean (average), each equal to the minimum / maximum / mean over member pairs.
    Returns the boolean membership masks ``(G1, G2)``, each (T, m), of the last two clusters.
    """
    import torch

    V.check_linkage(linkage)
    D = torch.as_tensor(D)
    t, m, _ = D.shape
    K, dev = 2 * m - 1, D.device
    ar = torch.arange(t, device=dev)
    inf = torch.tensor(float("inf"), dtype=D.dtype, device=dev)
    dist = torch.full((t, K, K), float("inf"), dtype=D.dtype, device=dev)
    dist[:, :m, :m] = D
    member = torch.zeros((t, K, m), dtype=torch.bool, device=dev)
    member[:, torch.arange(m), torch.arange(m)] = True
    size = torch.zeros((t, K), dtype=D.dtype, device=dev)
    size[:, :m] = 1
    active = torch.zeros((t, K), dtype=torch.bool, device=dev)
    active[:, :m] = True
    upper = torch.ones((K, K), dtype=torch.bool, device=dev).triu(1)
    for step in range(m - 1):
        pairs = upper & active[:, :, None] & active[:, None, :]
        flat = torch.where(pairs, dist, inf).reshape(t, -1).argmin(dim=1)
        a, b = flat // K, flat % K
        if step == m - 2:
            break
        new = m + step
        da, db = dist[ar, a], dist[ar, b]
        if linkage == "single":
            row = torch.minimum(da, db)
        elif linkage == "complete":
            row = torch.maximum(da, db)
        else:
            na, nb = size[ar, a][:, None], size[ar, b][:, None]
            row = (na * da + nb * db) / (na + nb)
        dist[:, new, :], dist[:, :, new] = row, row
        member[:, new] = member[ar, a] | member[ar, b]
        size[:, new] = size[ar, a] + size[ar, b]
        active[ar, a], active[ar, b] = False, False
        active[:, new] = True
    return member[ar, a], member[ar, b]


def linkage_guesses(D, u, linkage: str = "single") -> np.ndarray:
    """Algorithm 1 run on a batch of distance matrices ``D`` (T, m, m) at once, vectorized
    (:func:`two_clusters`, single or complete linkage: the paths of ``fingerprint`` and
    ``stats``).  Returns the guess of every trial, picked from the smaller final cluster with
    the uniforms ``u`` (:func:`kth_candidate`).
    """
    import torch

    if linkage not in ("single", "complete"):
        V.check_linkage(linkage)  # an unknown name: the general message
        raise ValueError(
            f"the batched path covers single and complete linkage, got {linkage!r}; "
            "use fingerprint.trial_guesses(..., method='reference') for average linkage"
        )
    G1, G2 = two_clusters(D, linkage)
    s1, s2 = G1.sum(1, keepdim=True), G2.sum(1, keepdim=True)
    return kth_candidate(torch.where(s1 < s2, G1, torch.where(s2 < s1, G2, G1 | G2)), u)


def outlier_guesses(D, u) -> np.ndarray:
    """The mini-dataset with the largest summed distance to the others; ties drawn with ``u``."""
    Dm = D.sum(-1)
    return kth_candidate(Dm == Dm.max(-1, keepdim=True).values, u)


def trial_guesses(ZT, idx, u, kernel: str = "linear", linkage: str = "single", rule: str = "cluster",
                  bandwidth=None, chunk: int | None = None) -> np.ndarray:
    """PMI's guess of the member position in every trial ``idx`` (T, m, n) of the table ``ZT``.

    ``rule="cluster"``: Algorithm 1 with ``linkage`` (the paper); ``"outlier"``: the
    mini-dataset farthest from the others.  ``u`` (T,) are the trials' tie-break uniforms.
    """
    V.check_choice(rule, RULES, "rule")
    D = distances(ZT, idx, kernel=kernel, bandwidth=bandwidth, chunk=chunk)
    with one_thread(D.device):
        if rule == "outlier":
            return outlier_guesses(D, u)
        return linkage_guesses(D, u, linkage)
