"""Tests for pmi_tutorial.pmi: Eq. 5-6 normalization and one PMI trial."""

from collections import Counter

import numpy as np
import pytest
import torch

from pmi_tutorial import pmi


def explicit_normalize(F):
    """Eq. 5-6 by hand: flatten the m*n rows, then per column (x - mean) / population sd."""
    m, n, c = F.shape
    rows = F.reshape(m * n, c)
    out = np.empty_like(rows)
    for k in range(c):
        col = rows[:, k]
        mu = sum(col) / len(col)
        var = sum((x - mu) ** 2 for x in col) / len(col)
        out[:, k] = (col - mu) / np.sqrt(var)
    return out.reshape(m, n, c)


# ----------------------------------------------------------------------------- normalize
@pytest.mark.parametrize("shape", [(2, 2, 1), (3, 10, 4), (5, 7, 10)])
def test_normalize_matches_explicit_computation(shape):
    rng = np.random.default_rng(sum(shape))
    F = rng.normal(loc=3.0, scale=[0.5 * (k + 1) for k in range(shape[2])], size=shape)
    out = pmi.normalize_features(F)
    np.testing.assert_allclose(out, explicit_normalize(F), rtol=1e-10, atol=1e-12)
    rows = out.reshape(-1, shape[2])
    # Eq. 5: zero mean; Eq. 6: (1/nm) sum F^2 = 1 -- per component, over ALL m*n rows
    np.testing.assert_allclose(rows.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose((rows**2).mean(0), 1, rtol=1e-12)


def test_normalize_is_joint_not_per_mini_dataset():
    F = np.zeros((2, 3, 1))
    F[1] = 2.0  # mini-dataset 0 all zeros, mini-dataset 1 all twos -> -1 and +1 jointly
    np.testing.assert_allclose(pmi.normalize_features(F)[..., 0], [[-1, -1, -1], [1, 1, 1]])


@pytest.mark.parametrize("const", [0.0, 0.1, 1 / 3, 0.7, 123.456, -5e6 + 0.1])
def test_constant_component_becomes_zero_not_nan(const):
    rng = np.random.default_rng(0)
    F = rng.normal(size=(4, 37, 3))
    F[:, :, 1] = const
    for out in (pmi.normalize_features(F), pmi.normalize_features(torch.tensor(F)).numpy()):
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[:, :, 1], 0.0)
        np.testing.assert_allclose(out[:, :, [0, 2]], explicit_normalize(F[:, :, [0, 2]]), rtol=1e-10, atol=1e-12)


def test_normalize_torch_equals_numpy():
    rng = np.random.default_rng(5)
    F = rng.normal(size=(4, 9, 3)) * [1.0, 10.0, 0.01]
    out_t = pmi.normalize_features(torch.tensor(F))
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), pmi.normalize_features(F), rtol=1e-12, atol=1e-13)
    # integer tensors work too (converted to float)
    Fi = torch.tensor(rng.integers(0, 10, size=(3, 4, 2)))
    np.testing.assert_allclose(pmi.normalize_features(Fi).numpy(), pmi.normalize_features(Fi.numpy()), rtol=1e-12, atol=1e-13)


def test_normalize_batched_leading_axis():
    rng = np.random.default_rng(6)
    F = rng.normal(size=(3, 4, 5, 2))
    out = pmi.normalize_features(F)
    for t in range(3):
        np.testing.assert_allclose(out[t], explicit_normalize(F[t]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pmi.normalize_features(torch.tensor(F)).numpy(), out, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("F", [np.zeros((4, 3)), np.zeros(5), torch.zeros(4, 3)])
def test_normalize_wrong_dimensions(F):
    with pytest.raises(ValueError, match=r"shape \(m, n, c\)"):
        pmi.normalize_features(F)


# ----------------------------------------------------------------------------- identify_member
def planted(m, seed, at=2, n=50, c=5, shift=1.0):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(m, n, c))
    F[at] += shift
    return F


@pytest.mark.parametrize("m", [3, 4, 5, 6, 8])
@pytest.mark.parametrize("linkage", ["single", "complete", "average"])
def test_identify_member_finds_planted_shift(m, linkage):
    for seed in range(3):
        F = planted(m, seed=1000 * m + seed)
        assert pmi.identify_member(F, rng=seed, linkage=linkage) == 2


@pytest.mark.parametrize("m", [3, 5])
def test_identify_member_finds_planted_shift_rbf_and_torch(m):
    F = planted(m, seed=77, at=0)
    assert pmi.identify_member(F, rng=0, kernel="rbf") == 0
    assert pmi.identify_member(torch.tensor(F), rng=0) == 0


def test_identify_member_is_seeded():
    F = np.random.default_rng(3).normal(size=(4, 20, 3))  # null data: guesses are random
    for seed in range(10):
        a = pmi.identify_member(F, rng=seed)
        assert a == pmi.identify_member(F, rng=seed)
        assert a == pmi.identify_member(F, rng=np.random.default_rng(seed))


def test_tie_m2_picks_either_uniformly():
    # m = 2: the final clusters are {0} and {1}, always equal sizes -> choose among all.
    F = planted(2, seed=1, at=1)
    counts = Counter(pmi.identify_member(F, rng=s) for s in range(400))
    assert set(counts) == {0, 1}
    # binomial(400, 1/2): sd = 10; allow 4 sd
    assert abs(counts[0] - 200) < 40


def test_tie_2_2_split_picks_among_all_four():
    # sets 0, 1 ~ N(0); sets 2, 3 ~ N(3): two pairs merge first -> final 2-2 split -> all 4
    # are candidates.  Binomial(400, 1/4): mean 100, sd sqrt(400 * 3/16) = 8.7; allow 4.6 sd.
    rng = np.random.default_rng(8)
    F = rng.normal(size=(4, 40, 3))
    F[2:] += 3.0
    counts = Counter(pmi.identify_member(F, rng=s) for s in range(400))
    assert set(counts) == {0, 1, 2, 3}
    assert all(abs(counts[k] - 100) < 40 for k in range(4))


def test_smaller_cluster_with_two_members_picks_inside_it():
    # m = 5: sets 1 and 3 shifted together (a 2-cluster), three null sets -> guess in {1, 3}
    rng = np.random.default_rng(9)
    F = rng.normal(size=(5, 40, 3))
    F[[1, 3]] += 3.0
    counts = Counter(pmi.identify_member(F, rng=s) for s in range(200))
    assert set(counts) == {1, 3}
    assert abs(counts[1] - 100) < 40  # binomial(200, 1/2): sd 7.1


@pytest.mark.parametrize(
    "F,kwargs,match",
    [
        (np.zeros((1, 5, 2)), {}, "m must be an integer >= 2"),
        (np.zeros((3, 1, 2)), {}, "n must be an integer >= 2"),
        (np.zeros((5, 2)), {}, "must have 3 dimensions"),
        (np.full((3, 5, 2), np.nan), {}, "NaN or infinite"),
        (np.full((3, 5, 2), np.inf), {}, "NaN or infinite"),
        (np.zeros((3, 5, 2)), {"kernel": "poly"}, "unknown kernel"),
        (np.zeros((3, 5, 2)), {"linkage": "ward"}, "unknown linkage"),
        (np.zeros((3, 5, 2)), {"rng": "seed"}, "rng must be"),
    ],
)
def test_identify_member_bad_input(F, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pmi.identify_member(F, **kwargs)


def test_identify_member_needs_three_dimensions(refused):
    F = np.random.default_rng(0).normal(size=(3, 5))
    refused(lambda: pmi.identify_member(F), ValueError, ["3 dimensions", "(m, n, d)"])
