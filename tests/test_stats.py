"""Tests for pmi_tutorial.stats: binomial and permutation p-values, statistics, ROC.

Calibration tests use fixed seeds, so they are deterministic; the tolerances are stated where
they are used (each would be exceeded with probability <= 0.001 by a correct implementation
on a fresh seed).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as ss
from scipy.special import log_softmax

from pmi_tutorial import batched
from pmi_tutorial import fingerprint as fp
from pmi_tutorial import stats as S
from pmi_tutorial.mmd import pairwise_mmd, pairwise_mmd2_linear
from pmi_tutorial.pmi import normalize_features


def null_pools(rng, n_P, n_Q, d, classes=1):
    return {r: (rng.normal(size=(n_P, d)), rng.normal(size=(n_Q, d))) for r in range(classes)}


def randomized_pvalue(res, u):
    """Exactly Uniform(0, 1) under the null, ties included: the observed value's rank among the
    B + 1 values with ties broken at random, spread over its 1/(B+1) cell."""
    tol = 1e-12 * abs(res.observed)
    greater = np.count_nonzero(res.null > res.observed + tol)
    equal = np.count_nonzero(np.abs(res.null - res.observed) <= tol)
    return (greater + u * (equal + 1)) / (res.B + 1)


# --------------------------------------------------------------------------------------------
# binomial_pvalue, bonferroni
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "acc, t, m", [(0.5, 100, 3), (0.34, 100, 3), (0.0, 20, 4), (1.0, 20, 5), (0.9, 10, 2), (0.47, 100, 4)]
)
def test_binomial_pvalue_matches_scipy_and_brute_force(acc, t, m):
    k = round(acc * t)
    p = S.binomial_pvalue(acc, t, m)
    assert p == pytest.approx(ss.binomtest(k, t, 1 / m, alternative="greater").pvalue, rel=1e-12)
    brute = sum(math.comb(t, j) * (1 / m) ** j * (1 - 1 / m) ** (t - j) for j in range(k, t + 1))
    assert p == pytest.approx(brute, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("args", [(1.2, 100, 3), (-0.1, 100, 3), (0.5, 0, 3), (0.5, 100, 1), ("x", 10, 3)])
def test_binomial_pvalue_bad_input(args):
    with pytest.raises(ValueError):
        S.binomial_pvalue(*args)


def test_bonferroni():
    assert S.bonferroni([0.01, 0.2, 0.5]) == pytest.approx(0.03)
    assert S.bonferroni({0: 0.4, 1: 0.3, 2: 0.9}) == pytest.approx(0.9)
    assert S.bonferroni([0.5, 0.6]) == 1.0
    with pytest.raises(ValueError, match="empty"):
        S.bonferroni([])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.bonferroni([0.1, 2.0])


# --------------------------------------------------------------------------------------------
# The statistics against independent computations
# --------------------------------------------------------------------------------------------


def test_batched_linear_mmd_matches_normalize_then_pairwise():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(50, 4)) * [1, 10, 0.1, 1] + 5
    Z[:, 3] = 2.0  # a constant component: Eq. 5-6 maps it to 0
    idx = rng.integers(0, 50, size=(7, 3, 6))
    got = batched.linear_mmd2(torch.as_tensor(Z.T.copy()), idx).numpy()
    want = pairwise_mmd2_linear(normalize_features(Z[idx]))
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_batched_rbf_mmd_matches_reference():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(40, 3))
    # distinct rows per trial, as in the protocol (duplicate rows give zero distances whose
    # round-off decides whether they enter the median: fragile in any implementation)
    idx = np.stack([rng.permutation(40)[:15].reshape(3, 5) for _ in range(4)])
    got = batched.rbf_mmd2(torch.as_tensor(Z.T.copy()), idx).clamp_min(0).sqrt().numpy()
    for k in range(4):
        np.testing.assert_allclose(got[k], pairwise_mmd(normalize_features(Z[idx[k]]), kernel="rbf"), atol=1e-12)


@pytest.mark.parametrize("zeros", [0, 1, 7])
def test_median_positive_matches_numpy(zeros):
    rng = np.random.default_rng(zeros)
    sq = rng.random((5, 12)) ** 2
    sq[:, :zeros] = 0.0  # zero distances are left out, as in mmd.median_bandwidth
    want = [np.median(np.sqrt(row[row > 0])) for row in sq]
    np.testing.assert_allclose(batched.median_positive(torch.as_tensor(sq)).numpy(), want, rtol=1e-14)
    assert batched.median_positive(torch.zeros((2, 6))).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pmi_and_rbf_statistics_equal_class_accuracy(seed):
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(30, 4)) + 0.3, rng.normal(size=(40, 4))
    got = S.STATISTICS["pmi"](P, Q, seed=seed, m=3, n=8, trials=60)
    assert got == fp.class_accuracy(P, Q, 3, 8, trials=60, seed=seed, method="reference")
    got = S.STATISTICS["rbf"](P, Q, seed=seed, m=3, n=6, trials=15)
    assert got == fp.class_accuracy(P, Q, 3, 6, trials=15, seed=seed, kernel="rbf", method="reference")


def test_outlier_statistic_brute_force():
    rng = np.random.default_rng(3)
    P, Q = rng.normal(size=(25, 3)) + 0.5, rng.normal(size=(40, 3))
    draws = fp.draw_trials(25, 40, 4, 6, 40, seed=7)
    feats, idx = np.concatenate([P, Q]), draws.layout(25)
    hits = [np.argmax(pairwise_mmd(normalize_features(feats[idx[k]])).mean(1)) == draws.s[k] for k in range(40)]
    assert S.STATISTICS["outlier"](P, Q, seed=7, m=4, n=6, trials=40) == pytest.approx(np.mean(hits))


def test_mmd_statistic_brute_force():
    rng = np.random.default_rng(4)
    P, Q = rng.normal(size=(9, 3)) + 1, rng.normal(size=(6, 3))
    Z = np.concatenate([P, Q])
    Z = (Z - Z.mean(0)) / Z.std(0)  # Eq. 5-6 over P and Q jointly
    X, Y = Z[:9], Z[9:]
    Kxx, Kyy, Kxy = X @ X.T, Y @ Y.T, X @ Y.T
    want = (
        (Kxx.sum() - np.trace(Kxx)) / (9 * 8) + (Kyy.sum() - np.trace(Kyy)) / (6 * 5) - 2 * Kxy.mean()
    )
    assert S.STATISTICS["mmd"](P, Q) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("confidence", ["logprob", "maxprob", "margin"])
def test_directional_statistic_by_hand(confidence):
    P = np.array([[2.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    Q = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])

    def conf(z):
        if confidence == "logprob":
            return log_softmax(z)[0]
        if confidence == "maxprob":
            return np.exp(log_softmax(z)).max()
        return z[0] - max(z[1:])

    want = np.mean([conf(z) for z in P]) - np.mean([conf(z) for z in Q])
    got = S.STATISTICS["directional"](P, Q, r=0, confidence=confidence)
    assert got == pytest.approx(want, rel=1e-12)
    # log-probabilities as features (probability-only access) give the same "logprob" value
    if confidence == "logprob":
        lp = S.STATISTICS["directional"](log_softmax(P, 1), log_softmax(Q, 1), r=0)
        assert lp == pytest.approx(want, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Calibration under the null, power under a planted signal
# --------------------------------------------------------------------------------------------

LEVEL = 0.001  # for the deterministic KS and binomial-count checks below


def check_calibration(pvalues, randomized, B):
    R = len(pvalues)
    # Exactly uniform under the null (see randomized_pvalue): KS against U(0, 1).
    assert ss.kstest(randomized, "uniform").pvalue > LEVEL
    # P(p <= 0.05) <= 0.05 (= 0.05 exactly when 0.05 (B+1) is an integer and there are no
    # ties), so the count of p <= 0.05 over R independent repetitions is at most Bin(R, 0.05):
    # its upper 1 - LEVEL quantile bounds it (R = 200: 21, i.e. 10.5%).
    count = int(np.count_nonzero(np.asarray(pvalues) <= 0.05 + 1e-12))
    assert count <= ss.binom.ppf(1 - LEVEL, R, 0.05)
    return count


@pytest.mark.parametrize("statistic, classes", [("mmd", "max"), ("mmd", 0), ("directional", "max")])
def test_pooled_statistics_are_calibrated_under_the_null(statistic, classes):
    rng = np.random.default_rng(10)
    R, B = 200, 99
    ps, pr = [], []
    for rep in range(R):
        pools = null_pools(rng, 12, 8, 4, classes=3)
        res = S.permutation_test(pools, statistic, B=B, seed=rep, classes=classes)
        ps.append(res.pvalue)
        pr.append(randomized_pvalue(res, rng.random()))
    count = check_calibration(ps, pr, B)
    # continuous statistic, 0.05 * 100 = 5 cells: P(p <= 0.05) = 0.05 exactly; the count is
    # Bin(200, 0.05) and its lower 0.001 quantile (2) catches an over-conservative p-value.
    assert count >= ss.binom.ppf(LEVEL, R, 0.05)


@pytest.mark.parametrize("statistic", ["pmi", "outlier"])
def test_trial_statistics_are_calibrated_under_the_null(statistic):
    rng = np.random.default_rng(11)
    R, B = 100, 39
    ps, pr = [], []
    for rep in range(R):
        res = S.permutation_test(null_pools(rng, 15, 30, 3), statistic, B=B, seed=rep, m=3, n=5, trials=10)
        ps.append(res.pvalue)
        pr.append(randomized_pvalue(res, rng.random()))
    check_calibration(ps, pr, B)


@pytest.mark.parametrize(
    "statistic, kw",
    [("pmi", {}), ("outlier", {}), ("rbf", dict(trials=30)), ("mmd", {}), ("directional", {})],
)
def test_planted_signal_gives_small_pvalue(statistic, kw):
    rng = np.random.default_rng(12)
    P, Q = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    P[:, 1] += 1.5  # members: higher logit at their class r = 1
    opts = dict(m=3, n=10, trials=30) | kw
    res = S.permutation_test({1: (P, Q)}, statistic, B=199, seed=0, **opts)
    assert res.pvalue < 0.01
    # and the same pools with the shift removed are not flagged
    res0 = S.permutation_test({1: (P - [0, 1.5, 0, 0], Q)}, statistic, B=199, seed=0, **opts)
    assert res0.pvalue > 0.01


def test_binomial_test_has_false_positives_under_pool_reuse_permutation_does_not():
    # |P| = n: every trial's member mini-dataset is all of P.  P is innocent (same
    # distribution as Q) but, being one fixed sample, it sits apart from Q by chance in some
    # repetitions and is then "found" in most of the t trials: the successes are dependent,
    # far more spread out than Bin(t, 1/m), and the binomial test rejects too often.
    rng = np.random.default_rng(13)
    R, t, B = 100, 100, 19
    binomial, permutation = [], []
    for rep in range(R):
        P, Q = rng.normal(size=(10, 3)), rng.normal(size=(200, 3))
        res = S.permutation_test({0: (P, Q)}, "pmi", B=B, seed=rep, m=3, n=10, trials=t)
        binomial.append(S.binomial_pvalue(res.observed, t, 3))
        permutation.append(res.pvalue)
    limit = ss.binom.ppf(1 - LEVEL, R, 0.05)  # 13 of 100: the most a valid level-5% test shows
    n_binomial = np.count_nonzero(np.asarray(binomial) < 0.05)
    n_permutation = np.count_nonzero(np.asarray(permutation) <= 0.05)
    assert n_binomial > limit, n_binomial
    assert n_permutation <= limit, n_permutation


# --------------------------------------------------------------------------------------------
# classes="max" vs a pre-registered class, seeding
# --------------------------------------------------------------------------------------------


def hand_pools():
    return {
        0: (np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]), np.array([[0.0, 0.0], [0.0, 0.0]])),
        1: (np.array([[0.0, 2.0], [0.0, 2.0], [0.0, 2.0]]), np.array([[0.0, 0.0], [0.0, 0.0]])),
    }


def test_max_over_classes_by_hand():
    # directional, logprob at class r: log softmax([1, 0])_0 = 1 - log(1 + e), of [0, 0]: -log 2
    stat0 = (2 * (1 - math.log(1 + math.e)) - math.log(2)) / 3 + math.log(2)
    stat1 = (2 - math.log(1 + math.e**2)) + math.log(2)
    res = S.permutation_test(hand_pools(), "directional", B=50, seed=0)
    assert res.per_class_observed[0] == pytest.approx(stat0)
    assert res.per_class_observed[1] == pytest.approx(stat1)
    assert res.observed == pytest.approx(max(stat0, stat1))
    np.testing.assert_array_equal(res.null, np.maximum(res.per_class_null[0], res.per_class_null[1]))
    assert res.pvalue == (np.count_nonzero(res.null >= res.observed - 1e-12) + 1) / 51
    for r, stat in ((0, stat0), (1, stat1)):
        single = S.permutation_test(hand_pools(), "directional", B=50, seed=0, classes=r)
        assert single.observed == pytest.approx(stat)
        assert list(single.per_class_observed) == [r]
        # the single-class test re-splits class r exactly as the max test does
        np.testing.assert_array_equal(single.null, res.per_class_null[r])
        assert single.pvalue == res.per_class_pvalue[r]


def test_max_test_pmi_observed_values_are_run_on_features():
    rng = np.random.default_rng(14)
    pools = null_pools(rng, 20, 30, 3, classes=3)
    res = S.permutation_test(pools, "pmi", B=5, seed=3, m=3, n=6, trials=40)
    acc = fp.run_on_features(pools, 3, 6, trials=40, seed=3).acc_by_class
    assert res.per_class_observed == pytest.approx(acc)
    assert res.observed == max(acc.values())


def test_seeding():
    rng = np.random.default_rng(15)
    pools = null_pools(rng, 20, 30, 3, classes=2)
    kw = dict(B=30, m=3, n=6, trials=10)
    a = S.permutation_test(pools, "pmi", seed=1, **kw)
    b = S.permutation_test(pools, "pmi", seed=1, chunk_trials=7, **kw)  # chunking changes nothing
    c = S.permutation_test(pools, "pmi", seed=2, **kw)
    assert a.pvalue == b.pvalue and a.observed == b.observed
    np.testing.assert_array_equal(a.null, b.null)
    assert not np.array_equal(a.null, c.null)
    m1 = S.permutation_test(pools, "mmd", B=30, seed=1)
    m2 = S.permutation_test(pools, "mmd", B=30, seed=2)
    assert m1.observed == m2.observed  # no randomness in the observed pooled statistic
    assert not np.array_equal(m1.null, m2.null)
    # torch tensors give the same result as NumPy arrays
    tp = {r: (torch.as_tensor(P), torch.as_tensor(Q)) for r, (P, Q) in pools.items()}
    np.testing.assert_array_equal(S.permutation_test(tp, "pmi", seed=1, **kw).null, a.null)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pools, kw, match",
    [
        ("ok", dict(B=0), r"B must be a positive integer, got B=0.*B=999"),
        ("ok", dict(B=2.5), r"B=999"),
        ("ok", dict(statistic="nope"), r"unknown statistic 'nope'; use one of"),
        ({0: (np.zeros((20, 3)), np.zeros((30, 4)))}, {}, r"same width"),
        ({0: (np.ones((20, 3)), np.ones((30, 3))), 1: (np.ones((20, 4)), np.ones((30, 4)))}, {},
         r"different widths"),
        ("ok", dict(n=25), r"n=25 is larger than the member pool P \(20 samples\); use n <= 20"),
        ("ok", dict(n=20, m=3), r"lower n to <= 15"),
        ({}, {}, r"feature_pools is empty; pass \{r: \(features_P, features_Q\)\}"),
        ("ok", dict(classes=7), r"classes must be 'max' or one of"),
        ("ok", dict(seed=-1), r"seed must be a non-negative integer"),
        ("ok", dict(statistic="mmd", bogus=1), r"unknown option"),
        ("ok", dict(linkage="average"), r"'single'"),
        ({5: (np.ones((20, 3)), np.ones((30, 3)))}, dict(statistic="directional"), r"column index"),
    ],
)
def test_bad_input(pools, kw, match):
    if pools == "ok":
        rng = np.random.default_rng(0)
        pools = {0: (rng.normal(size=(20, 3)), rng.normal(size=(30, 3)))}
    args = dict(B=5, m=3, n=5, trials=5) | kw
    with pytest.raises(ValueError, match=match):
        S.permutation_test(pools, **args)


# --------------------------------------------------------------------------------------------
# ROC, AUC, TPR at FPR
# --------------------------------------------------------------------------------------------


def brute_roc_point(pos, neg, thr):
    return np.mean(neg >= thr), np.mean(pos >= thr)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_auc_tpr_at_fpr_brute_force(seed):
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 12, size=40).astype(float) + 1  # ties on purpose
    neg = rng.integers(0, 12, size=57).astype(float)
    fpr, tpr, thr = S.roc_curve(pos, neg)
    assert thr[0] == np.inf and (fpr[0], tpr[0]) == (0, 0) and (fpr[-1], tpr[-1]) == (1, 1)
    assert np.all(np.diff(thr) < 0)
    for f, t, th in zip(fpr, tpr, thr):
        assert (f, t) == pytest.approx(brute_roc_point(pos, neg, th))
    pairs = np.mean((pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :]))
    u = ss.mannwhitneyu(pos, neg, alternative="greater").statistic / (len(pos) * len(neg))
    assert S.auc(pos, neg) == pytest.approx(pairs, rel=1e-12)
    assert S.auc(pos, neg) == pytest.approx(u, rel=1e-12)
    for target in (0.0, 0.01, 0.1, 0.5, 1.0):
        cands = [brute_roc_point(pos, neg, th) for th in np.concatenate([[np.inf], pos, neg])]
        want = max(t for f, t in cands if f <= target)
        assert S.tpr_at_fpr(pos, neg, fpr=target) == pytest.approx(want)


def test_roc_bad_input():
    with pytest.raises(ValueError, match="non-empty"):
        S.roc_curve([], [1.0])
    with pytest.raises(ValueError, match="fpr must be a rate"):
        S.tpr_at_fpr([1.0], [0.0], fpr=1.5)
    with pytest.raises(ValueError, match="dimensions"):
        S.auc([[1.0]], [0.0])


@pytest.mark.parametrize("k,n", [(0, 20), (1, 50), (7, 20), (20, 20), (3, 1000)])
def test_clopper_pearson_equals_scipy(k, n):
    from scipy.stats import binomtest

    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    lo, hi = S.clopper_pearson(k, n)
    assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)
    ref90 = binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
    assert S.clopper_pearson(k, n, 0.9) == pytest.approx((ref90.low, ref90.high), abs=1e-12)


def test_clopper_pearson_bad_input():
    for k, n in ((5, 3), (-1, 3), (0, 0)):
        with pytest.raises(ValueError, match="0 <= k <= n"):
            S.clopper_pearson(k, n)


def test_one_rejection_rule():
    # p = (k + 1)/(B + 1) equal to alpha in exact arithmetic rejects, even after round-off
    assert S.rejects(5 / 100, 0.05) and S.rejects(0.05 + 1e-13, 0.05)
    assert not S.rejects(0.0501, 0.05)
    np.testing.assert_array_equal(S.rejects([0.01, 0.05, 0.2], 0.05), [True, True, False])
    assert S.rejects_log10(-2.0, 0.01) and not S.rejects_log10(-1.99, 0.01)
    lp = np.log10([1e-300, 0.011, 0.009])
    np.testing.assert_array_equal(S.rejects_log10(lp, 0.01), S.rejects(10.0 ** lp, 0.01))
