"""Tests for pmi_tutorial.mmd (paper Eq. 7-11).

Every number is checked against an independent computation: a literal double loop over
i != j of Eq. 11, SciPy's pdist for the median heuristic, the closed form of the biased
estimator, or the known mean and standard error of the estimator.
"""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist

from pmi_tutorial import mmd


# ----------------------------------------------------------------------------- brute force
def k_linear(a, b):
    return float(sum(float(x) * float(y) for x, y in zip(a, b)))


def k_rbf(a, b, bw):
    sq = sum((float(x) - float(y)) ** 2 for x, y in zip(a, b))
    return math.exp(-sq / (2.0 * bw * bw))


def brute_mmd2_u(X, Y, k):
    """Eq. 10-11 literally: 1/(n^2-n) * sum_{i != j} h[i, j]."""
    n = len(X)
    total = 0.0
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            total += k(X[i], X[j]) + k(Y[i], Y[j]) - k(X[i], Y[j]) - k(X[j], Y[i])
    return total / (n * n - n)


def rand_pair(seed, n, d, shift=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift


# ----------------------------------------------------------------------------- Eq. 10-11
@pytest.mark.parametrize("seed,n,d", [(0, 2, 1), (1, 3, 2), (2, 7, 3), (3, 15, 4), (4, 25, 10)])
@pytest.mark.parametrize("shift", [0.0, 0.7])
def test_linear_matches_brute_force(seed, n, d, shift):
    X, Y = rand_pair(seed, n, d, shift)
    expected = brute_mmd2_u(X, Y, k_linear)
    assert mmd.mmd2_unbiased(X, Y) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert mmd.mmd2_unbiased(X, Y, kernel="linear") == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed,n,d,bw", [(0, 2, 1, 1.0), (1, 5, 2, 0.5), (2, 12, 3, 2.0), (3, 20, 5, 1.3)])
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_rbf_with_explicit_bandwidth_matches_brute_force(seed, n, d, bw, shift):
    X, Y = rand_pair(seed, n, d, shift)
    expected = brute_mmd2_u(X, Y, lambda a, b: k_rbf(a, b, bw))
    got = mmd.mmd2_unbiased(X, Y, kernel="rbf", bandwidth=bw)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("seed,n,d", [(5, 4, 2), (6, 10, 3), (7, 18, 6)])
def test_rbf_median_heuristic_is_median_of_pooled_pdist(seed, n, d):
    X, Y = rand_pair(seed, n, d, 0.3)
    bw = float(np.median(pdist(np.vstack([X, Y]))))
    assert mmd.median_bandwidth(np.vstack([X, Y])) == pytest.approx(bw, rel=1e-9)
    expected = brute_mmd2_u(X, Y, lambda a, b: k_rbf(a, b, bw))
    assert mmd.mmd2_unbiased(X, Y, kernel="rbf") == pytest.approx(expected, rel=1e-9, abs=1e-9)
    # and it is not some other bandwidth: a different one gives a different value
    other = brute_mmd2_u(X, Y, lambda a, b: k_rbf(a, b, 2 * bw))
    assert abs(other - expected) > 1e-6


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_symmetric_in_X_and_Y(kernel):
    X, Y = rand_pair(11, 13, 4, 0.4)
    assert mmd.mmd2_unbiased(X, Y, kernel=kernel) == pytest.approx(
        mmd.mmd2_unbiased(Y, X, kernel=kernel), rel=1e-12, abs=1e-14
    )


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_input_equals_numpy(kernel, dtype):
    X, Y = rand_pair(12, 9, 3, 0.2)
    Xt, Yt = torch.tensor(X, dtype=dtype), torch.tensor(Y, dtype=dtype)
    # the numpy reference sees exactly the values the tensors hold
    Xn, Yn = Xt.double().numpy(), Yt.double().numpy()
    expected = mmd.mmd2_unbiased(Xn, Yn, kernel=kernel)
    got = mmd.mmd2_unbiased(Xt, Yt, kernel=kernel)
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # and the literal double loop, for either kernel (the Gaussian one with SciPy's median)
    bw = float(np.median(pdist(np.vstack([Xn, Yn]))))
    k = k_linear if kernel == "linear" else (lambda a, b: k_rbf(a, b, bw))
    assert got == pytest.approx(brute_mmd2_u(Xn, Yn, k), rel=1e-9, abs=1e-9)


def test_biased_linear_is_squared_mean_difference():
    for seed in range(5):
        X, Y = rand_pair(seed, 11, 4, 0.3)
        diff = [sum(X[:, k]) / 11 - sum(Y[:, k]) / 11 for k in range(4)]
        assert mmd.mmd2_biased(X, Y) == pytest.approx(sum(v * v for v in diff), rel=1e-10)


def test_biased_rbf_is_v_statistic():
    X, Y = rand_pair(3, 8, 2, 0.4)
    bw, n = 0.9, 8
    kxx = sum(k_rbf(a, b, bw) for a in X for b in X) / n**2
    kyy = sum(k_rbf(a, b, bw) for a in Y for b in Y) / n**2
    kxy = sum(k_rbf(a, b, bw) for a in X for b in Y) / n**2
    assert mmd.mmd2_biased(X, Y, kernel="rbf", bandwidth=bw) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-10)


# ----------------------------------------------------------------------------- statistics
def test_unbiased_mean_is_zero_for_one_distribution_and_can_be_negative():
    # X, Y ~ N(0, I_d) independent.  With d_i = x_i - y_i ~ N(0, 2 I), the linear estimate is
    # sum_{i != j} d_i . d_j / (n(n-1)); E = 0 and Var = 2 n(n-1) E[(d_i . d_j)^2] / (n(n-1))^2
    # = 2 * (4 d) / (n(n-1)) = 8d / (n(n-1)).  Over R independent repetitions the mean has
    # standard error sqrt(8d / (n(n-1)) / R); we allow 5 standard errors (false alarm < 1e-6).
    n, d, R = 20, 3, 3000
    rng = np.random.default_rng(2024)
    vals = np.array([mmd.mmd2_unbiased(rng.normal(size=(n, d)), rng.normal(size=(n, d))) for _ in range(R)])
    se = math.sqrt(8 * d / (n * (n - 1)) / R)
    assert abs(vals.mean()) < 5 * se
    # the sample sd agrees with the formula (a 10% band is > 5 sd of the sd estimate for R=3000)
    assert vals.std() == pytest.approx(math.sqrt(8 * d / (n * (n - 1))), rel=0.1)
    assert (vals < 0).mean() > 0.3  # negative about half of the time, not just occasionally
    # the biased estimate of the same samples has mean 2d/n > 0: that is the bias Eq. 10 removes
    b = np.array([mmd.mmd2_biased(rng.normal(size=(n, d)), rng.normal(size=(n, d))) for _ in range(300)])
    assert (b >= 0).all() and b.mean() > 2 * d / n * 0.8


def test_unbiased_rbf_mean_is_zero_for_one_distribution():
    # No closed-form variance here: use the empirical standard error of the R repetitions
    # (CLT, R=400 independent draws) and allow 5 of them.
    n, d, R = 15, 2, 400
    rng = np.random.default_rng(7)
    vals = np.array(
        [mmd.mmd2_unbiased(rng.normal(size=(n, d)), rng.normal(size=(n, d)), kernel="rbf", bandwidth=1.0) for _ in range(R)]
    )
    se = vals.std(ddof=1) / math.sqrt(R)
    assert abs(vals.mean()) < 5 * se
    assert (vals < 0).any()


def test_clearly_positive_and_unbiased_for_shifted_distributions():
    # Y = X-distribution shifted by delta: true linear MMD^2 = ||delta||^2 = d * shift^2 = 12.
    n, d, shift, R = 50, 3, 2.0, 400
    rng = np.random.default_rng(99)
    vals = np.array(
        [mmd.mmd2_unbiased(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift) for _ in range(R)]
    )
    assert (vals > 0).all()
    se = vals.std(ddof=1) / math.sqrt(R)
    assert abs(vals.mean() - d * shift**2) < 5 * se  # unbiased
    rbf = [mmd.mmd2_unbiased(rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift, kernel="rbf") for _ in range(20)]
    assert min(rbf) > 0.1


# ----------------------------------------------------------------------------- pairwise
def _stack(seed, m, n, d):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(m, n, d))
    F[1] += 0.5
    return F


@pytest.mark.parametrize("m,n,d", [(2, 2, 1), (3, 10, 4), (6, 15, 3)])
def test_pairwise_linear_matches_per_pair_brute_force(m, n, d):
    F = _stack(m * 100 + n, m, n, d)
    D = mmd.pairwise_mmd(F)
    assert D.shape == (m, m)
    assert (np.diag(D) == 0).all()
    assert (D == D.T).all()
    for a in range(m):
        for b in range(m):
            if a != b:
                expected = math.sqrt(max(brute_mmd2_u(F[a], F[b], k_linear), 0.0))
                assert D[a, b] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_pairwise_clips_negative_to_zero():
    # null data: some pairs have negative MMD^2; they must come out as exactly 0.
    rng = np.random.default_rng(1)
    F = rng.normal(size=(8, 10, 2))
    raw = [brute_mmd2_u(F[a], F[b], k_linear) for a in range(8) for b in range(a + 1, 8)]
    assert min(raw) < 0  # the test is meaningful
    D = mmd.pairwise_mmd(F)
    iu = np.triu_indices(8, 1)
    np.testing.assert_allclose(D[iu], np.sqrt(np.maximum(raw, 0)), rtol=1e-9, atol=1e-9)
    assert (D[iu][np.array(raw) < 0] == 0).all()


def test_pairwise_rbf_uses_one_median_bandwidth_for_all_pairs():
    m, n, d = 4, 8, 3
    F = _stack(5, m, n, d)
    bw = float(np.median(pdist(F.reshape(m * n, d))))
    D = mmd.pairwise_mmd(F, kernel="rbf")
    assert (D == D.T).all() and (np.diag(D) == 0).all()
    for a in range(m):
        for b in range(a + 1, m):
            e = math.sqrt(max(brute_mmd2_u(F[a], F[b], lambda x, y: k_rbf(x, y, bw)), 0))
            assert D[a, b] == pytest.approx(e, rel=1e-9, abs=1e-9)
    D2 = mmd.pairwise_mmd(F, kernel="rbf", bandwidth=0.7)
    e = math.sqrt(max(brute_mmd2_u(F[0], F[1], lambda x, y: k_rbf(x, y, 0.7)), 0))
    assert D2[0, 1] == pytest.approx(e, rel=1e-9, abs=1e-9)


def test_pairwise_torch_equals_numpy():
    F = _stack(3, 5, 12, 4)
    np.testing.assert_allclose(mmd.pairwise_mmd(torch.tensor(F)), mmd.pairwise_mmd(F), rtol=1e-12, atol=1e-14)


def test_pairwise_mmd2_linear_batched_numpy_and_torch():
    rng = np.random.default_rng(4)
    F = rng.normal(size=(3, 4, 6, 2))  # (t, m, n, d)
    for out in (mmd.pairwise_mmd2_linear(F), mmd.pairwise_mmd2_linear(torch.tensor(F)).numpy()):
        for t in range(3):
            for a in range(4):
                for b in range(4):
                    e = 0.0 if a == b else brute_mmd2_u(F[t, a], F[t, b], k_linear)
                    assert out[t, a, b] == pytest.approx(e, rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------------------- bad input
X5 = np.zeros((5, 3))
NAN5 = np.zeros((5, 3))
NAN5[2, 1] = np.nan
INF5 = np.zeros((5, 3))
INF5[0, 0] = np.inf


@pytest.mark.parametrize(
    "X,Y,kwargs,match",
    [
        (np.zeros((5, 3)), np.zeros((4, 3)), {}, "same number of samples"),
        (np.zeros((1, 3)), np.zeros((1, 3)), {}, "n must be an integer >= 2"),
        (np.zeros(5), np.zeros(5), {}, "must have 2 dimensions"),
        (np.zeros((2, 5, 3)), np.zeros((2, 5, 3)), {}, "must have 2 dimensions"),
        (np.zeros((5, 3)), np.zeros((5, 4)), {}, "same feature width"),
        (NAN5, X5, {}, "NaN or infinite"),
        (X5, INF5, {}, "NaN or infinite"),
        (X5, X5, {"kernel": "gaussian"}, "unknown kernel.*'linear'.*'rbf'"),
        (X5, X5, {"kernel": "rbf", "bandwidth": -1.0}, "bandwidth must be a positive"),
        (X5, X5, {"kernel": "rbf", "bandwidth": 0}, "bandwidth must be a positive"),
        (X5, X5, {"kernel": "rbf", "bandwidth": float("nan")}, "bandwidth must be a positive"),
        ([["a", "b"], ["c", "d"]], X5, {}, "must be numeric"),
    ],
)
def test_mmd2_unbiased_bad_input(X, Y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmd.mmd2_unbiased(X, Y, **kwargs)


def test_mmd2_unbiased_bad_torch_input():
    with pytest.raises(ValueError, match="NaN or infinite"):
        mmd.mmd2_unbiased(torch.tensor(NAN5), torch.tensor(X5))


F_NAN = np.zeros((3, 4, 2))
F_NAN[1, 1, 1] = np.nan


@pytest.mark.parametrize(
    "F,kwargs,match",
    [
        (np.zeros((1, 4, 2)), {}, "m must be an integer >= 2"),
        (np.zeros((3, 1, 2)), {}, "n must be an integer >= 2"),
        (np.zeros((4, 2)), {}, "must have 3 dimensions"),
        (np.zeros((2, 3, 4, 2)), {}, "must have 3 dimensions"),
        (F_NAN, {}, "NaN or infinite"),
        (np.zeros((3, 4, 2)), {"kernel": "cosine"}, "unknown kernel"),
    ],
)
def test_pairwise_mmd_bad_input(F, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmd.pairwise_mmd(F, **kwargs)


def _with_inf(shape, seed=0):
    F = np.random.default_rng(seed).normal(size=shape)
    F[(0,) * len(shape)] = np.inf
    return F


@pytest.mark.parametrize("call, words", [
    (lambda: mmd.pairwise_mmd(_with_inf((3, 5, 4))), ["F", "infinite"]),
    (lambda: mmd.mmd2_unbiased(*rand_pair(0, 5, 10), kernel="poly"),
     ["unknown kernel 'poly'", "'linear'", "'rbf'"]),
], ids=["features-inf-F", "unknown-kernel"])
def test_bad_input_names_the_problem_and_the_fix(call, words, refused):
    refused(call, ValueError, words)
