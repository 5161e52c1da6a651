"""Tests for pmi_tutorial.fingerprint: trials, acc_r (fast and reference), Eq. 13-15."""

import math

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import fcluster, linkage as scipy_linkage
from scipy.spatial.distance import pdist, squareform

from pmi_tutorial import batched, fingerprint
from pmi_tutorial import data
from pmi_tutorial.models import build_model


def pools(seed, n_P=600, n_Q=1500, c=5, shift=0.0):
    """Synthetic logits: members ~ N(shift, I), non-members ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_P, c)) + shift, rng.normal(size=(n_Q, c))


def binomial_sd(p, t):
    return math.sqrt(p * (1 - p) / t)


# ----------------------------------------------------------------------------- draw_trials
@pytest.mark.parametrize("m,n", [(2, 5), (4, 10), (6, 3)])
def test_draw_trials_indices(m, n):
    n_P, n_Q, t = 40, n * (m - 1) + 7, 300
    d = fingerprint.draw_trials(n_P, n_Q, m, n, t, seed=1)
    assert d.member.shape == (t, n) and d.nonmember.shape == (t, m - 1, n) and d.s.shape == (t,)
    assert d.trials == t
    for k in range(t):
        assert len(set(d.member[k])) == n  # member indices distinct
        nm = d.nonmember[k].ravel()
        assert len(set(nm)) == n * (m - 1)  # non-member indices distinct within a trial
    assert d.member.min() >= 0 and d.member.max() < n_P
    assert d.nonmember.min() >= 0 and d.nonmember.max() < n_Q
    assert d.s.min() >= 0 and d.s.max() < m
    assert ((d.u >= 0) & (d.u < 1)).all()
    # layout: the member block at position s, non-members (offset by |P|) elsewhere, in order
    idx = d.layout(n_P)
    for k in range(t):
        np.testing.assert_array_equal(idx[k, d.s[k]], d.member[k])
        others = [i for i in range(m) if i != d.s[k]]
        np.testing.assert_array_equal(idx[k, others], d.nonmember[k] + n_P)
    # with an offset (the class's first row in a table of several classes): every index moves
    np.testing.assert_array_equal(d.layout(n_P, 1000), idx + 1000)


def test_draw_trials_s_is_uniform():
    # chi-square goodness of fit, m = 5 (4 dof): the 0.999 quantile is 18.47
    m, t = 5, 4000
    d = fingerprint.draw_trials(100, 400, m, 10, t, seed=3)
    counts = np.bincount(d.s, minlength=m)
    chi2 = ((counts - t / m) ** 2 / (t / m)).sum()
    assert chi2 < 18.47
    assert len(np.unique(d.s)) == m


def test_draw_trials_is_seeded():
    a = fingerprint.draw_trials(50, 100, 3, 10, 20, seed=7)
    b = fingerprint.draw_trials(50, 100, 3, 10, 20, seed=7)
    c = fingerprint.draw_trials(50, 100, 3, 10, 20, seed=8)
    for f in ("member", "nonmember", "s", "u"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.member, c.member)


# ----------------------------------------------------------------------------- class_accuracy
@pytest.mark.parametrize("m", [3, 5])
def test_class_accuracy_near_one_with_planted_shift(m):
    # A shift of 1 in each of 5 logits with n = 30 makes the member set far from the others
    # (MMD^2 ~ 5 vs. a null sd ~ sqrt(8*5/(30*29)) ~ 0.2), so the true success rate p is ~1.
    # Even if p were only 0.99, t = 400 gives sd = sqrt(.99*.01/400) = 0.005; 0.95 is 8 sd below.
    P, Q = pools(10 + m, shift=1.0)
    acc = fingerprint.class_accuracy(P, Q, m=m, n=30, trials=400, seed=0)
    assert acc >= 0.95


@pytest.mark.parametrize("m", [2, 3, 4])
def test_class_accuracy_near_chance_without_shift(m):
    # Null: P and Q from one distribution.  The m mini-datasets are exchangeable and s is
    # independent of them, so p = 1/m exactly (up to the finite-pool effect, kept small by pools
    # much larger than n).  t = 400: sd = sqrt((1/m)(1-1/m)/400) <= 0.025; allow 4 sd.
    P, Q = pools(20 + m, shift=0.0)
    t = 400
    acc = fingerprint.class_accuracy(P, Q, m=m, n=20, trials=t, seed=1)
    assert abs(acc - 1 / m) < 4 * binomial_sd(1 / m, t)


def test_class_accuracy_seeded_and_is_a_fraction():
    P, Q = pools(2, shift=0.15)
    a = fingerprint.class_accuracy(P, Q, m=3, n=20, trials=60, seed=5)
    assert a == fingerprint.class_accuracy(P, Q, m=3, n=20, trials=60, seed=5)
    assert a * 60 == pytest.approx(round(a * 60))  # k successes out of 60
    # accuracy is exactly the fraction of guesses equal to s on the same draws
    d = fingerprint.draw_trials(len(P), len(Q), 3, 20, 60, seed=5)
    g = fingerprint.trial_guesses(P, Q, d, method="reference")
    assert a == np.mean(g == d.s)


def test_class_accuracy_torch_features_and_other_paths():
    P, Q = pools(4, shift=1.0)
    acc_np = fingerprint.class_accuracy(P, Q, m=3, n=20, trials=40, seed=2)
    acc_t = fingerprint.class_accuracy(torch.tensor(P), torch.tensor(Q), m=3, n=20, trials=40, seed=2)
    assert acc_np == acc_t
    # kernel rbf and average linkage go through the reference path and still find the shift
    assert fingerprint.class_accuracy(P, Q, m=3, n=20, trials=20, seed=2, kernel="rbf") >= 0.9
    assert fingerprint.class_accuracy(P, Q, m=3, n=20, trials=20, seed=2, linkage="average") >= 0.9


# ----------------------------------------------------------------------------- fast == reference
@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("linkage", ["single", "complete"])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_fast_and_reference_give_identical_guesses(m, linkage, shift):
    # small n and few logits under the null make MMD^2 < 0 (clipped distance 0) frequent, so
    # the tie rule gets exercised; the shifted pools give structured trees.
    P, Q = pools(100 * m + int(10 * shift), n_P=200, n_Q=600, c=3, shift=shift)
    d = fingerprint.draw_trials(len(P), len(Q), m, 6, 120, seed=m)
    fast = fingerprint.trial_guesses(P, Q, d, linkage=linkage, method="fast")
    ref = fingerprint.trial_guesses(P, Q, d, linkage=linkage, method="reference")
    np.testing.assert_array_equal(fast, ref)
    auto = fingerprint.trial_guesses(P, Q, d, linkage=linkage)
    np.testing.assert_array_equal(auto, ref)
    assert fast.min() >= 0 and fast.max() < m


def test_null_pools_really_have_zero_distance_ties():
    # guard for the test above: under the null, clipped-at-zero distances are common
    from pmi_tutorial.mmd import pairwise_mmd
    from pmi_tutorial.pmi import normalize_features

    P, Q = pools(400, n_P=200, n_Q=600, c=3)
    d = fingerprint.draw_trials(len(P), len(Q), 5, 6, 50, seed=5)
    feats = np.concatenate([P, Q])
    idx = d.layout(len(P))
    zeros = [int((pairwise_mmd(normalize_features(feats[idx[k]]))[np.triu_indices(5, 1)] == 0).sum()) for k in range(50)]
    assert sum(z >= 2 for z in zeros) > 10


def smaller_cluster_guess(D, u):
    """Independent guess from SciPy: final 2-cluster partition, smaller one (or all on a tie)."""
    Zs = scipy_linkage(squareform(D, checks=False), method="single")
    labels = fcluster(Zs, 2, criterion="maxclust")
    groups = [np.flatnonzero(labels == lab) for lab in np.unique(labels)]
    groups.sort(key=len)
    cand = sorted(groups[0]) if len(groups[0]) < len(groups[1]) else sorted(np.concatenate(groups))
    return cand, cand[min(int(u * len(cand)), len(cand) - 1)]


@pytest.mark.parametrize("m", [2, 3, 5, 8])
def test_batched_linkage_guesses_against_scipy(m):
    rng = np.random.default_rng(m)
    t = 60
    D = np.stack([squareform(pdist(rng.normal(size=(m, 2)))) for _ in range(t)])
    u = rng.random(t)
    g = batched.linkage_guesses(torch.tensor(D), u, "single")
    for k in range(t):
        cand, guess = smaller_cluster_guess(D[k], u[k])
        assert g[k] in cand
        assert g[k] == guess


def test_batched_linkage_guesses_complete_against_scipy():
    rng = np.random.default_rng(0)
    m, t = 6, 60
    D = np.stack([squareform(pdist(rng.normal(size=(m, 3)))) for _ in range(t)])
    g = batched.linkage_guesses(D, np.zeros(t), "complete")
    for k in range(t):
        labels = fcluster(scipy_linkage(squareform(D[k]), "complete"), 2, criterion="maxclust")
        groups = sorted([np.flatnonzero(labels == lab) for lab in np.unique(labels)], key=len)
        cand = groups[0] if len(groups[0]) < len(groups[1]) else np.sort(np.concatenate(groups))
        assert g[k] == cand[0]  # u = 0 picks the smallest candidate


# ----------------------------------------------------------------------------- Eq. 14-15, Eq. 13
def test_summarize_hand_example_list_and_dict():
    # m = 4, chance 0.25: acc - 1/m = [0.05, 0.30, 0.30, -0.15] -> argmax tie r = 1, 2 -> r = 1
    acc = [0.30, 0.55, 0.55, 0.10]
    for arg in (acc, {0: 0.30, 1: 0.55, 2: 0.55, 3: 0.10}, {2: 0.55, 3: 0.10, 0: 0.30, 1: 0.55}):
        s = fingerprint.summarize_classes(arg, 4)
        assert s.r_opt == 1
        assert s.acc_opt == 0.55
        assert s.mean_acc == pytest.approx(1.5 / 4)
        assert s.m == 4 and s.chance == 0.25
    # dict keys need not be 0..c-1
    s = fingerprint.summarize_classes({7: 0.9, 3: 0.5, 5: 0.9}, 3)
    assert (s.r_opt, s.acc_opt) == (5, 0.9)
    assert s.mean_acc == pytest.approx(2.3 / 3)
    # numpy floats and ints
    s = fingerprint.summarize_classes([np.float64(0.2), 1, 0], 2)
    assert (s.r_opt, s.acc_opt, s.mean_acc) == (1, 1.0, pytest.approx(0.4))


@pytest.mark.parametrize(
    "acc,m,rho,expected",
    [
        (0.5, 4, 0.25, True),  # acc - 1/m == rho exactly: claimed
        (0.5, 3, 0.5 - 1 / 3, True),  # boundary with a non-representable 1/3
        (0.5, 3, 1 / 6, True),  # the same boundary written differently
        (0.5, 3, 1 / 6 + 1e-6, False),
        (0.49, 4, 0.25, False),
        (1.0, 4, 0.75, True),  # rho = 1 - 1/m is allowed
        (0.0, 2, 0.5, False),
        (0.6, 2, 0.1, True),
    ],
)
def test_verify(acc, m, rho, expected):
    assert fingerprint.verify(acc, m, rho) is expected


def test_run_on_features_and_result():
    fP0, fQ0 = pools(1, n_P=200, n_Q=600, shift=1.0)
    fP1, fQ1 = pools(2, n_P=200, n_Q=600, shift=0.0)
    res = fingerprint.run_on_features({1: (fP1, fQ1), 0: (fP0, fQ0)}, m=3, n=20, trials=60, seed=4)
    assert set(res.acc_by_class) == {0, 1}
    assert res.acc_by_class[0] >= 0.9
    assert res.acc_by_class[1] < 0.7
    # each class's accuracy is class_accuracy with that class's seed
    assert res.acc_by_class[1] == fingerprint.class_accuracy(
        fP1, fQ1, 3, 20, trials=60, seed=fingerprint.class_seed(4, 1)
    )
    assert res.r_opt == 0 and res.acc_opt == res.acc_by_class[0]
    assert res.mean_acc == pytest.approx((res.acc_by_class[0] + res.acc_by_class[1]) / 2)
    assert res.verdict(0.5) is (res.acc_opt - 1 / 3 >= 0.5)
    d = res.to_dict()
    assert d["acc_by_class"] == {"0": res.acc_by_class[0], "1": res.acc_by_class[1]}
    assert (d["m"], d["n"], d["trials"], d["seed"]) == (3, 20, 60, 4)
    # same seed, same result; class order in the input does not matter
    res2 = fingerprint.run_on_features({0: (fP0, fQ0), 1: (fP1, fQ1)}, m=3, n=20, trials=60, seed=4)
    assert res2.acc_by_class == res.acc_by_class


# ----------------------------------------------------------------------------- bad input
P10, Q30 = pools(0, n_P=10, n_Q=30, c=3)
P_NAN = P10.copy()
P_NAN[3, 1] = np.nan
Q_INF = Q30.copy()
Q_INF[0, 0] = -np.inf


@pytest.mark.parametrize(
    "P,Q,kwargs,match",
    [
        (P10, Q30, {"m": 3, "n": 11}, r"larger than the member pool P \(10 samples\); use n <= 10"),
        (P10, Q30[:29], {"m": 4, "n": 10}, r"non-member pool Q has 29 samples.*needs n\(m-1\)=30"),
        (P10, Q30[:25], {"m": 4, "n": 10}, r"non-member pool Q has 25 samples.*lower n to <= 8 or m"),
        (P10, Q30, {"m": 1, "n": 5}, "m must be an integer >= 2"),
        (P10, Q30, {"m": 3, "n": 1}, "n must be an integer >= 2"),
        (P10, Q30, {"m": 3, "n": 5, "trials": 0}, "trials must be a positive integer"),
        (P10, Q30[:, :2], {"m": 3, "n": 5}, "same width"),
        (P10[:, :, None], Q30, {"m": 3, "n": 5}, "must have 2 dimensions"),
        (P10.ravel(), Q30, {"m": 3, "n": 5}, "must have 2 dimensions"),
        (P_NAN, Q30, {"m": 3, "n": 5}, "NaN or infinite"),
        (P10, Q_INF, {"m": 3, "n": 5}, "NaN or infinite"),
        (P10[:0], Q30, {"m": 3, "n": 5}, "empty"),
        (P10, Q30, {"m": 3, "n": 5, "kernel": "laplace"}, "unknown kernel"),
        (P10, Q30, {"m": 3, "n": 5, "linkage": "ward"}, "unknown linkage"),
        (P10, Q30, {"m": 3, "n": 5, "method": "gpu"}, "unknown method"),
        (P10, Q30, {"m": 3, "n": 5, "method": "fast", "kernel": "rbf"}, "method='reference'"),
        (P10, Q30, {"m": 3, "n": 5, "method": "fast", "linkage": "average"}, "method='reference'"),
    ],
)
def test_class_accuracy_bad_input(P, Q, kwargs, match):
    kwargs.setdefault("trials", 3)
    with pytest.raises(ValueError, match=match):
        fingerprint.class_accuracy(P, Q, **kwargs)


def test_m4_n10_pool_message():
    # n(m-1) = 30 fits exactly into |Q| = 30: no error; 31 needed -> error
    fingerprint.draw_trials(10, 30, 4, 10, 2)
    with pytest.raises(ValueError, match=r"needs n\(m-1\)=33"):
        fingerprint.draw_trials(11, 30, 4, 11, 2)


@pytest.mark.parametrize("linkage,match", [("average", "single.*complete"), ("ward", "linkage")])
def test_batched_linkage_guesses_bad_linkage(linkage, match):
    with pytest.raises(ValueError, match=match):
        batched.linkage_guesses(np.zeros((2, 3, 3)), np.zeros(2), linkage)


@pytest.mark.parametrize(
    "acc,m,match",
    [
        ([0.5, 1.2], 3, r"acc_r must be a success rate in \[0, 1\]"),
        ({0: -0.1}, 3, r"acc_r must be a success rate in \[0, 1\]"),
        ([0.5, float("nan")], 3, r"acc_r must be a success rate"),
        ([0.5, "0.7"], 3, r"acc_r must be a success rate"),
        ([], 3, "empty"),
        ({}, 3, "empty"),
        ([0.5], 1, "m must be an integer >= 2"),
        ([0.5], 2.5, "m must be an integer"),
    ],
)
def test_summarize_bad_input(acc, m, match):
    with pytest.raises(ValueError, match=match):
        fingerprint.summarize_classes(acc, m)


@pytest.mark.parametrize(
    "acc,m,rho,match",
    [
        (0.5, 3, 0.0, r"rho must be in \(0, 1 - 1/m\]"),
        (0.5, 3, -0.1, r"rho must be in \(0, 1 - 1/m\]"),
        (0.5, 3, 0.67, r"rho must be in \(0, 1 - 1/m\] = \(0, 0.667\]"),
        (0.5, 2, 0.5000001, r"rho must be in"),
        (0.5, 3, float("nan"), r"rho must be in"),
        (1.5, 3, 0.2, r"acc must be a success rate in \[0, 1\]"),
        (-0.01, 3, 0.2, r"acc must be a success rate in \[0, 1\]"),
        (float("nan"), 3, 0.2, r"acc must be a success rate"),
        (0.5, 1, 0.2, "m must be an integer >= 2"),
    ],
)
def test_verify_bad_input(acc, m, rho, match):
    with pytest.raises(ValueError, match=match):
        fingerprint.verify(acc, m, rho)


def test_fast_and_reference_differ_on_discrete_features_only_at_exact_ties():
    # A known limitation, checked rather than marked xfail: with discrete features, MMD^2 values
    # that are equal in exact arithmetic (often 0) differ by round-off between the batched path
    # and the NumPy reference (sqrt turns 4e-16 into 2e-8), so exact ties can break
    # differently.  Every trial where the two disagree must hold such a tie.
    from pmi_tutorial.mmd import pairwise_mmd
    from pmi_tutorial.pmi import normalize_features

    rng = np.random.default_rng(37)
    P = rng.integers(0, 2, size=(100, 1)).astype(float)
    Q = rng.integers(0, 2, size=(400, 1)).astype(float)
    d = fingerprint.draw_trials(100, 400, 5, 2, 300, seed=1)
    fast = fingerprint.trial_guesses(P, Q, d, method="fast")
    ref = fingerprint.trial_guesses(P, Q, d, method="reference")
    differ = np.flatnonzero(fast != ref)
    assert 0 < len(differ) < len(fast) // 4  # the limitation exists, and is rare
    feats, idx = np.concatenate([P, Q]), d.layout(100)
    for k in differ:
        D = pairwise_mmd(normalize_features(feats[idx[k]]))
        upper = np.sort(D[np.triu_indices(5, 1)])
        assert np.any(np.diff(upper) < 1e-7), f"trial {k} differs without a tie"


# ----------------------------------------------------------------------------- bad input

_rng = np.random.default_rng(0)
P30, Q60 = _rng.normal(size=(30, 10)), _rng.normal(size=(60, 10))
MLP = build_model("mlp", seed=0)
IMGS = torch.randn(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def _with(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


#: (id, call, exception type, words the message must contain: the problem and the fix)
BAD_INPUTS = [
    ("features-1d", lambda: fingerprint.class_accuracy(P30[:, 0], Q60, 3, 5),
     ValueError, ["features_P", "2 dimensions", "(n, d)"]),
    ("features-strings", lambda: fingerprint.class_accuracy([["a", "b"]] * 30, Q60[:, :2], 3, 5),
     ValueError, ["features_P", "numeric"]),
    ("features-complex", lambda: fingerprint.class_accuracy(P30 + 1j, Q60, 3, 5),
     ValueError, ["complex", "real-valued"]),
    ("features-nan", lambda: fingerprint.class_accuracy(_with(P30, (3, 4), np.nan), Q60, 3, 5),
     ValueError, ["features_P", "NaN", "finite", "diverged"]),
    ("features-widths-differ", lambda: fingerprint.class_accuracy(P30, Q60[:, :9], 3, 5),
     ValueError, ["same width", "same model"]),
    ("images-uint8", lambda: fingerprint.run(MLP, {0: (IMGS.to(torch.uint8), IMGS)}, m=2, n=2, trials=1),
     ValueError, ["dtype", "uint8", "normalize"]),
    ("images-wrong-shape", lambda: fingerprint.run(MLP, {0: (torch.randn(6, 3, 32, 32),) * 2}, m=2, n=2),
     ValueError, ["shape (3, 32, 32)", "mlp takes (N, 1, 28, 28)", "data set the model was trained on"]),
    ("n-larger-than-P", lambda: fingerprint.class_accuracy(P30, Q60, 3, 31),
     ValueError, ["n=31", "member pool P (30", "n <= 30"]),
    ("n-times-m-larger-than-Q", lambda: fingerprint.class_accuracy(P30, Q60, 5, 20),
     ValueError, ["non-member pool Q has 60", "lower n to <= 15"]),
    ("m-1", lambda: fingerprint.class_accuracy(P30, Q60, 1, 5), ValueError, ["m must be an integer >= 2", "got m=1"]),
    ("m-float", lambda: fingerprint.class_accuracy(P30, Q60, 3.0, 5), ValueError, ["m must be an integer"]),
    ("n-1", lambda: fingerprint.class_accuracy(P30, Q60, 3, 1), ValueError, ["n must be an integer >= 2", "got n=1", "pairs"]),
    ("trials-0", lambda: fingerprint.class_accuracy(P30, Q60, 3, 5, trials=0),
     ValueError, ["trials", "positive integer"]),
    ("rho-outside", lambda: fingerprint.verify(0.9, 3, 0.9), ValueError, ["rho", "(0, 0.667]"]),
    ("empty-pool-P", lambda: fingerprint.run(MLP, {4: (IMGS[:0], IMGS)}, m=2, n=2),
     ValueError, ["member pool P of class 4 is empty"]),
    ("empty-pool-Q-features", lambda: fingerprint.class_accuracy(P30, Q60[:0], 2, 2),
     ValueError, ["Q", "empty"]),
    ("pools-not-pairs", lambda: fingerprint.run(MLP, [IMGS], m=2, n=2),
     ValueError, ["pools[0] must be a pair (P, Q)", "class_pools"]),
]


@pytest.mark.parametrize("call, exc, words", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_the_problem_and_the_fix(call, exc, words, refused):
    refused(call, exc, words)


def test_fingerprint_run_is_deterministic(mnist_root):
    split = data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 30, seed=1, val_per_class=60)
    model = build_model("mlp", seed=0)  # an untrained model: acc_r near 1/m, many near-ties
    pools = {r: data.class_pools(split, r) for r in range(4)}
    a = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=5)
    b = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=5)
    assert a.acc_by_class == b.acc_by_class and a.r_opt == b.r_opt
    c = fingerprint.run(model, pools, m=3, n=10, trials=40, seed=6)
    assert c.acc_by_class != a.acc_by_class  # the seed matters


def test_classes_with_features_of_different_widths_are_refused_in_one_line():
    rng = np.random.default_rng(0)
    pools = {0: (rng.normal(size=(30, 4)), rng.normal(size=(60, 4))),
             1: (rng.normal(size=(30, 5)), rng.normal(size=(60, 5)))}
    with pytest.raises(ValueError, match=r"different widths \[4, 5\].*same model"):
        fingerprint.run_on_features(pools, 3, 10, trials=5)
