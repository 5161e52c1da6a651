"""Tests for pmi_tutorial.clustering (Algorithm 1) against scipy.cluster.hierarchy."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.cluster.hierarchy import fcluster, linkage as scipy_linkage
from scipy.spatial.distance import pdist, squareform

from pmi_tutorial import clustering

LINKAGES = ["single", "complete", "average"]


def points_distances(seed, m, dim):
    """Euclidean distances between random points: continuous, so ties have probability 0."""
    X = np.random.default_rng(seed).normal(size=(m, dim))
    return squareform(pdist(X))


def partition(groups):
    return {frozenset(int(i) for i in g) for g in groups}


def fcluster_partition(Z_scipy):
    labels = fcluster(Z_scipy, 2, criterion="maxclust")
    return partition([np.flatnonzero(labels == lab) for lab in np.unique(labels)])


def assert_same_as_scipy(D, method):
    Z = clustering.agglomerative(D, linkage=method)
    Zs = scipy_linkage(squareform(D, checks=False), method=method)
    m = D.shape[0]
    assert Z.shape == (m - 1, 4) == Zs.shape
    # merge heights, in order
    np.testing.assert_allclose(Z[:, 2], Zs[:, 2], rtol=0, atol=1e-12)
    # the very same rows: ids (a < b), cluster sizes
    np.testing.assert_array_equal(Z[:, [0, 1, 3]], Zs[:, [0, 1, 3]])
    # final partition: our final_clusters on our Z equals SciPy's fcluster on SciPy's Z
    G1, G2 = clustering.final_clusters(Z)
    assert sorted(G1 + G2) == list(range(m))
    assert partition([G1, G2]) == fcluster_partition(Zs)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(2, 12),
    dim=st.integers(1, 5),
    method=st.sampled_from(LINKAGES),
)
def test_matches_scipy_on_random_euclidean_distances(seed, m, dim, method):
    assert_same_as_scipy(points_distances(seed, m, dim), method)


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    m=st.integers(2, 12),
    method=st.sampled_from(["single", "complete"]),
)
def test_matches_scipy_on_arbitrary_unique_dissimilarities(data, m, method):
    # Not a metric, but with unique values single/complete heights are original values and
    # therefore distinct, so the tree is unique.
    k = m * (m - 1) // 2
    vals = data.draw(
        st.lists(st.floats(0.0, 1e3, allow_nan=False, allow_infinity=False), min_size=k, max_size=k, unique=True)
    )
    assert_same_as_scipy(squareform(np.array(vals)), method)


def test_rows_are_scipy_format_small_hand_example():
    # points on a line at 0, 1, 3, 7: single-linkage merges (0,1)@1, (2,4)@2, (3,5)@4
    x = np.array([0.0, 1.0, 3.0, 7.0])
    D = np.abs(x[:, None] - x[None, :])
    Z = clustering.agglomerative(D, "single")
    np.testing.assert_array_equal(Z, [[0, 1, 1, 2], [2, 4, 2, 3], [3, 5, 4, 4]])
    Zc = clustering.agglomerative(D, "complete")
    # complete: (0,1)@1, then {0,1}-2 at 3 vs 2-3 at 4 -> (2,4)@3, then (3,5)@7
    np.testing.assert_array_equal(Zc, [[0, 1, 1, 2], [2, 4, 3, 3], [3, 5, 7, 4]])
    Za = clustering.agglomerative(D, "average")
    # average: (0,1)@1, {0,1}-2 = (3+2)/2 = 2.5 < 4 -> (2,4)@2.5, then 3 vs {0,1,2}: (7+6+4)/3
    np.testing.assert_allclose(Za, [[0, 1, 1, 2], [2, 4, 2.5, 3], [3, 5, 17 / 3, 4]])
    assert clustering.final_clusters(Z) == ([3], [0, 1, 2])


def test_default_linkage_is_single():
    D = points_distances(3, 7, 2)
    np.testing.assert_array_equal(clustering.agglomerative(D), clustering.agglomerative(D, "single"))
    assert not np.array_equal(
        clustering.agglomerative(D, "single")[:, 2], clustering.agglomerative(D, "complete")[:, 2]
    )


def test_ties_go_to_smallest_ids():
    # all distances equal: every merge is a tie; the documented rule picks the smallest ids
    D = np.ones((4, 4)) - np.eye(4)
    Z = clustering.agglomerative(D, "single")
    np.testing.assert_array_equal(Z, [[0, 1, 1, 2], [2, 3, 1, 2], [4, 5, 1, 4]])
    # zero off-diagonal distances (clipped MMD) are allowed
    Z0 = clustering.agglomerative(np.zeros((3, 3)), "complete")
    np.testing.assert_array_equal(Z0, [[0, 1, 0, 2], [2, 3, 0, 3]])


@pytest.mark.parametrize("seed", range(20))
def test_final_clusters_on_scipy_Z_matches_fcluster(seed):
    m = 3 + seed % 9
    D = points_distances(100 + seed, m, 3)
    Zs = scipy_linkage(squareform(D), method=LINKAGES[seed % 3])
    G1, G2 = clustering.final_clusters(Zs)
    assert partition([G1, G2]) == fcluster_partition(Zs)
    assert G1 == sorted(G1) and G2 == sorted(G2)
    # order: the last row's first cluster first
    a = int(Zs[-1, 0])
    size_a = 1 if a < m else int(Zs[a - m, 3])
    assert len(G1) == size_a


def test_members():
    x = np.array([0.0, 1.0, 3.0, 7.0])
    Z = clustering.agglomerative(np.abs(x[:, None] - x[None, :]))
    assert clustering.members(Z, 2) == [2]
    assert clustering.members(Z, 4) == [0, 1]
    assert clustering.members(Z, 5) == [0, 1, 2]
    assert clustering.members(Z, 6) == [0, 1, 2, 3]


# ----------------------------------------------------------------------------- bad input
ASYM = np.array([[0.0, 1.0, 2.0], [1.0, 0.0, 3.0], [2.5, 3.0, 0.0]])
NEG = np.array([[0.0, -1.0], [-1.0, 0.0]])
NAN = np.array([[0.0, np.nan], [np.nan, 0.0]])


@pytest.mark.parametrize(
    "D,kwargs,match",
    [
        (np.zeros((2, 3)), {}, "square"),
        (np.zeros((1, 1)), {}, "at least 2"),
        (np.zeros(4), {}, "must have 2 dimensions"),
        (np.zeros((2, 2, 2)), {}, "must have 2 dimensions"),
        (ASYM, {}, "symmetric.*\\(D \\+ D.T\\) / 2"),
        (NEG, {}, "non-negative"),
        (NAN, {}, "NaN or infinite"),
        (np.zeros((3, 3)), {"linkage": "ward"}, "unknown linkage.*'single'.*'complete'.*'average'"),
        (np.zeros((3, 3)), {"linkage": "Single"}, "unknown linkage"),
    ],
)
def test_agglomerative_bad_input(D, kwargs, match):
    with pytest.raises(ValueError, match=match):
        clustering.agglomerative(D, **kwargs)


@pytest.mark.parametrize("Z", [np.zeros((0, 4)), np.zeros((3, 3)), np.zeros(4)])
def test_final_clusters_bad_input(Z):
    with pytest.raises(ValueError, match="linkage matrix of shape"):
        clustering.final_clusters(Z)


def test_unknown_linkage_names_the_known_ones(refused):
    refused(lambda: clustering.agglomerative(np.ones((3, 3)) - np.eye(3), linkage="ward"),
            ValueError, ["unknown linkage 'ward'", "'single'"])
