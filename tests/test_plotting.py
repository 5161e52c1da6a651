"""Tests for pmi_tutorial.plotting: every helper draws the artists it promises (Agg backend)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from scipy.cluster.hierarchy import linkage  # noqa: E402
from scipy.spatial.distance import squareform  # noqa: E402

from pmi_tutorial import plotting  # noqa: E402
from pmi_tutorial.clustering import agglomerative  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _distances(m, seed=0):
    X = np.random.default_rng(seed).standard_normal((m, 2))
    return np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))


def test_set_style_applies_the_book_look():
    plotting.set_style()
    assert matplotlib.rcParams["axes.spines.top"] is False
    assert matplotlib.rcParams["image.cmap"] == plotting.CMAP
    plotting.set_style()  # idempotent


def test_heatmap_holds_the_given_matrix():
    D = _distances(4)
    ax = plotting.plot_mmd_heatmap(D, member=2)
    assert isinstance(ax, plt.Axes)
    assert len(ax.images) == 1
    np.testing.assert_array_equal(ax.images[0].get_array(), D)
    assert len(ax.texts) == 16  # one annotation per cell
    assert [t.get_text() for t in ax.get_xticklabels()] == ["$F_{0}$", "$F_{1}$", "$F_{2}$", "$F_{3}$"]
    assert ax.get_xticklabels()[2].get_color() == plotting.MEMBER_COLOR
    assert len(ax.figure.axes) == 2  # the heatmap and its colorbar


def test_heatmap_draws_into_a_given_axes_without_colorbar():
    fig, ax = plt.subplots()
    out = plotting.plot_mmd_heatmap(_distances(3), ax=ax, colorbar=False, labels=list("abc"))
    assert out is ax
    assert len(fig.axes) == 1


def test_heatmap_rejects_non_square_input():
    with pytest.raises(ValueError, match="square"):
        plotting.plot_mmd_heatmap(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_mmd_heatmap(np.zeros((2, 2)), labels=["a"])


@pytest.mark.parametrize("m", [2, 3, 6])
def test_dendrogram_draws_one_link_per_merge(m):
    Z = agglomerative(_distances(m), linkage="single")
    ax = plotting.plot_dendrogram(Z, member=0)
    segments = [s for c in ax.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert len(segments) == m - 1  # m - 1 U-shaped links: SciPy's icoord has m - 1 rows
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == sorted(f"$F_{{{i}}}$" for i in range(m))
    member_tick = [t for t in ax.get_xticklabels() if t.get_text() == "$F_{0}$"][0]
    assert member_tick.get_color() == plotting.MEMBER_COLOR
    # the top of the highest link sits at the last merge height
    top = max(seg[:, 1].max() for seg in segments)
    assert top == pytest.approx(Z[-1, 2])


def test_dendrogram_accepts_scipy_linkage_and_labels():
    D = _distances(5, seed=3)
    Z = linkage(squareform(D, checks=False), method="average")
    ax = plotting.plot_dendrogram(Z, labels=list("abcde"), title="average")
    assert sorted(t.get_text() for t in ax.get_xticklabels()) == list("abcde")
    assert ax.get_title() == "average"


def test_dendrogram_rejects_bad_linkage_matrix():
    with pytest.raises(ValueError, match="linkage matrix"):
        plotting.plot_dendrogram(np.zeros((3, 3)))


def test_two_clouds_scatter_both_samples_and_means():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((30, 2)), rng.standard_normal((20, 2)) + 2
    ax = plotting.plot_two_clouds(X, Y)
    clouds = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert len(clouds) == 2
    np.testing.assert_allclose(clouds[0].get_offsets(), X)
    np.testing.assert_allclose(clouds[1].get_offsets(), Y)
    means = [line.get_xydata()[0] for line in ax.lines]
    np.testing.assert_allclose(means, [X.mean(0), Y.mean(0)])


def test_two_clouds_rejects_non_planar_input():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        plotting.plot_two_clouds(np.zeros((4, 3)), np.zeros((4, 2)))


def test_synthetic_features_are_seeded_and_shaped():
    F1 = plotting.synthetic_features(m=4, n=10, c=3, s=2, seed=5)
    F2 = plotting.synthetic_features(m=4, n=10, c=3, s=2, seed=5)
    assert F1.shape == (4, 10, 3)
    np.testing.assert_array_equal(F1, F2)
    assert F1[2, :, 0].mean() > F1[[0, 1, 3], :, 0].mean()  # the member block is shifted


@pytest.mark.parametrize("m,s", [(3, 1), (4, 0), (5, 4)])
def test_overview_finds_the_member_and_draws_every_stage(m, s):
    fig = plotting.draw_pmi_overview(m=m, s=s)
    assert isinstance(fig, plt.Figure)
    assert fig.pmi_guess == s
    # main canvas + m feature matrices + heatmap + dendrogram
    assert len(fig.axes) == 1 + m + 2
    heat = fig.axes[1 + m]
    assert heat.images[0].get_array().shape == (m, m)
    dendro = fig.axes[2 + m]
    segments = [s for c in dendro.collections if isinstance(c, LineCollection) for s in c.get_segments()]
    assert len(segments) == m - 1


def test_overview_rejects_member_out_of_range():
    with pytest.raises(ValueError, match="s must index"):
        plotting.draw_pmi_overview(m=3, s=3)
