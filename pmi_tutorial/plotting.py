r"""One look for every figure in the book (d2l's ``set_figsize`` idea).

Every chapter calls :func:`set_style` once and draws with the helpers below, so that the
member mini-dataset is always red, the non-members always blue, and a distance matrix or a
dendrogram looks the same in chapter "Maximum mean discrepancy", chapter "Linkage clustering"
and chapter "PMI end to end".

* :func:`draw_pmi_overview` - the paper's Figure 1 (the PMI pipeline), redrawn from synthetic data.
* :func:`plot_mmd_heatmap` - an (m, m) MMD distance matrix (Eq. 10-11) as an image.
* :func:`plot_dendrogram` - a linkage matrix (Algorithm 1) through SciPy's ``dendrogram``.
* :func:`plot_two_clouds` - two 2-D samples X ~ p and Y ~ q with their means (Eq. 7-9).
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

MEMBER_COLOR = "#c0392b"  # the member mini-dataset (drawn from P)
NONMEMBER_COLOR = "#2e6da4"  # the non-member mini-datasets (drawn from Q)
NEUTRAL_COLOR = "0.35"
CMAP = "viridis"

_STYLE = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "axes.prop_cycle": mpl.cycler(color=[NONMEMBER_COLOR, MEMBER_COLOR, "#27ae60", "#8e44ad", "#e67e22"]),
    "legend.frameon": False,
    "figure.constrained_layout.use": True,
    "image.cmap": CMAP,
}


def set_style() -> None:
    """Apply the book's matplotlib style (idempotent; call it at the top of a chapter).

    In a notebook, figures are also shown as "retina" PNGs: twice ``figure.dpi`` (200 dpi)
    and displayed at their size in inches, so text stays sharp and readable at page width.
    """
    mpl.rcParams.update(_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:  # no IPython: nothing to configure
        return
    if get_ipython() is not None:
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")


def _axes(ax, figsize=None):
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _default_labels(m: int) -> list[str]:
    return [f"$F_{{{i}}}$" for i in range(m)]


def plot_mmd_heatmap(D, ax=None, labels=None, member=None, annotate=True, colorbar=True,
                     title="MMD distance"):
    r"""Draw an (m, m) distance matrix, e.g. :math:`\sqrt{\max(\mathrm{MMD}^2_u, 0)}` (Eq. 10-11).

    Parameters
    ----------
    D : (m, m) array of distances.
    ax : matplotlib Axes to draw into (a new figure when None).
    labels : m tick labels (default :math:`F_0, \dots, F_{m-1}`).
    member : index of the member mini-dataset; its tick labels are drawn in the member colour.
    annotate : write each value into its cell (only for m <= 8).

    Returns
    -------
    The Axes; ``ax.images[0]`` holds ``D``.
    """
    D = np.asarray(D, dtype=float)
    if D.ndim != 2 or D.shape[0] != D.shape[1]:
        raise ValueError(f"D must be a square (m, m) matrix, got shape {D.shape}; "
                         "pass the output of pmi_tutorial.mmd.pairwise_mmd")
    m = D.shape[0]
    labels = _default_labels(m) if labels is None else list(labels)
    if len(labels) != m:
        raise ValueError(f"labels must have one entry per row of D ({m}), got {len(labels)}")
    ax = _axes(ax, figsize=(3.6, 3.0))
    im = ax.imshow(D, cmap=CMAP, vmin=0.0)
    ax.set_xticks(range(m), labels)
    ax.set_yticks(range(m), labels)
    ax.tick_params(length=0)
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if annotate and m <= 8:
        top = D.max() if D.size and D.max() > 0 else 1.0
        for i in range(m):
            for j in range(m):
                ax.text(j, i, f"{D[i, j]:.2f}", ha="center", va="center", fontsize=8,
                        color="white" if D[i, j] < 0.6 * top else "black")
    if member is not None:
        for tick in (ax.get_xticklabels()[member], ax.get_yticklabels()[member]):
            tick.set_color(MEMBER_COLOR)
            tick.set_fontweight("bold")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    return ax


def plot_dendrogram(Z, labels=None, ax=None, member=None, title=None, color="0.25"):
    r"""Draw a linkage matrix (SciPy's format, e.g. from Algorithm 1) as a dendrogram.

    A thin wrapper of :func:`scipy.cluster.hierarchy.dendrogram` in the book's look: one colour
    for every link, the height axis labelled with the cluster distance :math:`D`, and the leaf of
    the member mini-dataset (index ``member``) in the member colour.

    Returns
    -------
    The Axes; it holds m - 1 U-shaped links (one per row of ``Z``).
    """
    from scipy.cluster.hierarchy import dendrogram

    Z = np.asarray(Z, dtype=float)
    if Z.ndim != 2 or Z.shape[1] != 4 or Z.shape[0] < 1:
        raise ValueError(f"Z must be a linkage matrix of shape (m - 1, 4), got shape {Z.shape}; "
                         "pass the output of pmi_tutorial.clustering.agglomerative")
    m = Z.shape[0] + 1
    labels = _default_labels(m) if labels is None else list(labels)
    if len(labels) != m:
        raise ValueError(f"labels must have one entry per leaf ({m}), got {len(labels)}")
    ax = _axes(ax, figsize=(3.6, 3.0))
    dendrogram(Z, labels=labels, ax=ax, color_threshold=0.0, above_threshold_color=color,
                      leaf_rotation=0)
    ax.set_ylabel("merge height $D$")
    ax.spines["bottom"].set_visible(False)
    if member is not None:
        for tick in ax.get_xticklabels():
            if tick.get_text() == labels[member]:
                tick.set_color(MEMBER_COLOR)
                tick.set_fontweight("bold")
    if title:
        ax.set_title(title)
    return ax


def plot_two_clouds(X, Y, ax=None, labels=(r"$X \sim p$", r"$Y \sim q$"), show_means=True,
                    title=None):
    r"""Scatter two 2-D samples and mark their means.

    For the linear kernel the (biased) MMD is the distance between the two crosses
    (chapter "Maximum mean discrepancy", Eq. 9).

    Returns
    -------
    The Axes; its first two collections hold ``X`` and ``Y``.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    for name, A in (("X", X), ("Y", Y)):
        if A.ndim != 2 or A.shape[1] != 2:
            raise ValueError(f"{name} must have shape (n, 2) to be drawn in the plane, got {A.shape}")
    ax = _axes(ax, figsize=(4.0, 3.6))
    ax.scatter(X[:, 0], X[:, 1], s=12, alpha=0.6, color=NONMEMBER_COLOR, label=labels[0])
    ax.scatter(Y[:, 0], Y[:, 1], s=12, alpha=0.6, color=MEMBER_COLOR, label=labels[1])
    if show_means:
        for A, c in ((X, NONMEMBER_COLOR), (Y, MEMBER_COLOR)):
            mu = A.mean(0)
            ax.plot(*mu, marker="X", markersize=12, color=c, markeredgecolor="black")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(loc="best")
    if title:
        ax.set_title(title)
    return ax


def synthetic_features(m=3, n=60, c=4, s=1, shift=1.2, seed=0):
    """Toy feature matrices F of shape (m, n, c): F[s] plays the member, the rest non-members.

    Non-member rows are standard normal; member rows are shifted by ``shift`` along the first
    component and a little tighter, the way a model is more confident on what it was trained on.
    Used by :func:`draw_pmi_overview` and the exercises; real features come from
    ``pmi_tutorial.features``.
    """
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((m, n, c))
    F[s] = 0.7 * F[s]
    F[s, :, 0] += shift
    return F


def _box(ax, xy, w, h, text, color, fontsize=11, textcolor="black", alpha=0.18):
    ax.add_patch(FancyBboxPatch(xy, w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, alpha=alpha, edgecolor=color, linewidth=1.2))
    ax.text(xy[0] + w / 2, xy[1] + h / 2, text, ha="center", va="center", fontsize=fontsize,
            color=textcolor)


def _arrow(ax, start, end):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12,
                                 color=NEUTRAL_COLOR, linewidth=1.2))


def draw_pmi_overview(m=3, n=60, c=4, s=1, seed=6):
    r"""The PMI pipeline (the paper's Figure 1), drawn by our code from synthetic features.

    m mini-datasets :math:`D_0..D_{m-1}` (one, :math:`D_s`, from the member pool P) go through
    the model; each gives a feature matrix :math:`F_i` (n x c logits); the MMD distances
    between them (Eq. 10-11) are clustered by single linkage (Algorithm 1, Eq. 12); the smaller
    of the two final clusters is the guess.  The matrices, the distances and the dendrogram in
    the figure are computed (:func:`synthetic_features`, :func:`pmi_tutorial.pmi.normalize_features`,
    :func:`pmi_tutorial.mmd.pairwise_mmd`, :func:`pmi_tutorial.clustering.agglomerative`).

    Returns
    -------
    The Figure.  ``fig.pmi_guess`` is the index PMI picks (it equals ``s`` for the defaults).
    """
    from .clustering import agglomerative, final_clusters
    from .mmd import pairwise_mmd
    from .pmi import normalize_features

    if not 0 <= s < m:
        raise ValueError(f"s must index one of the m={m} mini-datasets, got {s}")
    F = normalize_features(synthetic_features(m=m, n=n, c=c, s=s, seed=seed))
    D = pairwise_mmd(F)
    Z = agglomerative(D, linkage="single")
    G1, G2 = final_clusters(Z)
    small = G1 if len(G1) <= len(G2) else G2

    fig = plt.figure(figsize=(12.0, 3.9), layout="none")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 12)
    ax.set_ylim(0, 3.9)
    ax.axis("off")

    # column 1: the mini-datasets
    h, gap = 2.7 / m, 0.12
    ys = [0.35 + (m - 1 - i) * h for i in range(m)]
    for i, y in enumerate(ys):
        is_member = i == s
        _box(ax, (0.2, y + gap / 2), 1.5, h - gap,
             f"$D_{{{i}}}$\n" + ("from $P$ (member)" if is_member else "from $Q$"),
             MEMBER_COLOR if is_member else NONMEMBER_COLOR, fontsize=10.5)
    ax.text(1.0, 3.45, f"$m = {m}$ mini-datasets,\n$n = {n}$ images each", ha="center",
            va="bottom", fontsize=11)

    # column 2: the model
    _box(ax, (2.3, 1.3), 1.25, 1.1, "model\n$\\mathcal{M}$\n(logits)", NEUTRAL_COLOR, fontsize=11)
    for y in ys:
        _arrow(ax, (1.75, y + h / 2), (2.28, 1.85))

    # column 3: the feature matrices, drawn from the computed F (first rows only)
    rows = min(n, 12)
    for i, y in enumerate(ys):
        fax = fig.add_axes((4.15 / 12, (y + gap / 2) / 3.9, 0.6 / 12, (h - gap) / 3.9))
        fax.imshow(F[i, :rows], aspect="auto", cmap="RdBu_r", vmin=-2.5, vmax=2.5)
        fax.set_xticks([])
        fax.set_yticks([])
        for spine in fax.spines.values():
            spine.set_visible(True)
            spine.set_color(MEMBER_COLOR if i == s else NONMEMBER_COLOR)
            spine.set_linewidth(1.5)
        ax.text(4.1, y + h / 2, f"$F_{{{i}}}$", ha="right", va="center", fontsize=13)
        _arrow(ax, (3.58, 1.85), (3.8, y + h / 2))
    ax.text(4.45, 3.45, f"features ($n \\times c$,\n$c = {c}$), normalized", ha="center",
            va="bottom", fontsize=11)

    # column 4: the MMD distance matrix
    hax = fig.add_axes((5.55 / 12, 0.55 / 3.9, 2.0 / 12, 2.3 / 3.9))
    plot_mmd_heatmap(D, ax=hax, member=s, colorbar=False, title=None)
    ax.text(6.55, 3.45, "MMD distances\n(Eq. 10-11)", ha="center", va="bottom", fontsize=11)
    _arrow(ax, (5.05, 1.85), (5.5, 1.85))

    # column 5: the single-linkage dendrogram
    dax = fig.add_axes((8.25 / 12, 0.55 / 3.9, 1.6 / 12, 2.3 / 3.9))
    plot_dendrogram(Z, ax=dax, member=s)
    dax.set_ylabel("")
    dax.tick_params(axis="y", labelsize=9)
    dax.tick_params(axis="x", labelsize=12)
    hax.tick_params(labelsize=12)
    ax.text(9.05, 3.45, "single linkage\n(Algorithm 1)", ha="center", va="bottom", fontsize=11)
    _arrow(ax, (7.6, 1.85), (8.0, 1.85))

    # column 6: the decision
    guess = small[0] if len(small) == 1 else None
    verdict = (f"smaller final cluster\n$\\{{F_{{{guess}}}\\}}$\n\nguess: $D_{{{guess}}}$ was\nin the training set"
               if guess is not None else "tie: pick one of\nthe smaller cluster")
    _box(ax, (10.35, 1.0), 1.5, 1.7, verdict, MEMBER_COLOR if guess == s else NEUTRAL_COLOR,
         fontsize=10.5)
    _arrow(ax, (9.95, 1.85), (10.3, 1.85))
    fig.pmi_guess = guess
    return fig
