"""Tests for pmi_tutorial.batched: the one kernel behind fingerprint's acc_r and stats' tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pmi_tutorial import batched, fingerprint, stats
from pmi_tutorial.mmd import pairwise_mmd, pairwise_mmd2_linear
from pmi_tutorial.pmi import normalize_features, pick


def adversarial_pools(seed):
    """Features that break a careless batched formula: one component near-constant at 1e6,
    a few rows at -1e10 in another (so the global centring is far from every trial's mean),
    exact ties between rows, and a component of integers (ties inside a column)."""
    rng = np.random.default_rng(seed)
    P, Q = rng.normal(size=(60, 4)), rng.normal(size=(200, 4))
    P[:, 0] = 1e6 + 1e-4 * rng.normal(size=60)
    Q[:, 0] = 1e6 + 1e-4 * rng.normal(size=200)
    Q[:3, 1] = -1e10
    Q[10:20, 2] = Q[20:30, 2]
    P[:, 3] = np.round(P[:, 3])
    return P, Q


@pytest.mark.parametrize("seed", range(4))
def test_adversarial_features_give_equal_decisions_in_fingerprint_and_stats(seed):
    P, Q = adversarial_pools(seed)
    m, n, t = 3, 10, 200
    acc = fingerprint.class_accuracy(P, Q, m, n, trials=t, seed=fingerprint.class_seed(0, 0))
    res = stats.permutation_test({0: (P, Q)}, "pmi", B=1, seed=0, m=m, n=n, trials=t)
    assert res.observed == acc  # the same trials, the same decisions
    # and both are the paper-literal computation: normalize, pairwise MMD, Algorithm 1
    d = fingerprint.draw_trials(len(P), len(Q), m, n, t, seed=fingerprint.class_seed(0, 0))
    ref = fingerprint.trial_guesses(P, Q, d, method="reference")
    assert acc == float(np.mean(ref == d.s))
    fast = fingerprint.trial_guesses(P, Q, d, method="fast")
    np.testing.assert_array_equal(fast, ref)


def test_adversarial_distances_match_the_reference():
    P, Q = adversarial_pools(0)
    d = fingerprint.draw_trials(len(P), len(Q), 4, 8, 40, seed=5)
    feats, idx = np.concatenate([P, Q]), d.layout(len(P))
    D = batched.distances(batched.feature_table(feats), idx).numpy()
    Dr = np.stack([pairwise_mmd(normalize_features(feats[idx[k]])) for k in range(len(idx))])
    # the reference normalizes the raw values (1e6 + noise of 1e-4: six digits lost to round-off),
    # so agreement is to about 1e-7, not to machine precision
    np.testing.assert_allclose(D, Dr, rtol=1e-6, atol=1e-7)


def test_kth_candidate_is_pmi_pick():
    rng = np.random.default_rng(0)
    cand = rng.random((200, 5)) < 0.5
    cand[np.arange(200), rng.integers(0, 5, 200)] = True  # at least one candidate per row
    u = rng.random(200)
    u[:5] = [0.0, 0.999999, 0.5, 1 / 3, 2 / 3]  # boundaries of the floor
    got = batched.kth_candidate(cand, u)
    want = [pick(np.flatnonzero(row), uk) for row, uk in zip(cand, u)]
    np.testing.assert_array_equal(got, want)


def test_outlier_guesses_pick_the_farthest_and_break_ties_with_u():
    D = torch.tensor([[[0, 1, 5], [1, 0, 5], [5, 5, 0]],   # 2 is farthest
                      [[0, 2, 2], [2, 0, 2], [2, 2, 0]]],  # all tie
                     dtype=torch.float64)
    assert batched.outlier_guesses(D, np.array([0.9, 0.0])).tolist() == [2, 0]
    assert batched.outlier_guesses(D, np.array([0.0, 0.99])).tolist() == [2, 2]


def test_one_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with batched.one_thread("cpu"):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with pytest.raises(RuntimeError):
            with batched.one_thread("cpu"):
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_chunking_changes_distances_by_round_off_only():
    # batched reductions may round differently for other batch shapes (about 1 ulp), never more
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(80, 6))
    idx = np.stack([rng.permutation(80)[:15].reshape(3, 5) for _ in range(23)])
    ZT = batched.feature_table(feats)
    whole = batched.distances(ZT, idx, chunk=23)
    for chunk in (1, 4, None):
        np.testing.assert_allclose(batched.distances(ZT, idx, chunk=chunk), whole, rtol=1e-14, atol=1e-15)
    u = rng.random(23)
    np.testing.assert_array_equal(batched.trial_guesses(ZT, idx, u, chunk=4),
                                  batched.trial_guesses(ZT, idx, u, chunk=23))


def test_feature_table_float32_and_bad_choices():
    ZT = batched.feature_table(np.ones((4, 3)), "float32")
    assert ZT.dtype == torch.float32 and ZT.shape == (3, 4)
    assert batched.device() in ("cpu", "cuda")
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        batched.feature_table(np.ones((4, 3)), "float16")
    with pytest.raises(ValueError, match="unknown rule 'vote'"):
        batched.trial_guesses(ZT.double(), np.zeros((1, 2, 2), dtype=int), np.zeros(1), rule="vote")


def test_the_one_pass_sums_equal_the_two_pass_way_on_ordinary_trials():
    """Where the trial's mean is within a standard deviation of the table's centre the one-pass
    variance serves; it gives the two-pass distances to round-off."""
    rng = np.random.default_rng(4)
    Z = rng.normal(size=(5, 300))
    idx = np.stack([rng.permutation(300)[:200].reshape(2, 100) for _ in range(30)])
    ZT = batched.feature_table(Z.T)
    np.testing.assert_allclose(batched.linear_mmd2(ZT, idx).numpy(),
                               batched._two_pass(batched.gather(ZT, idx)).numpy(),
                               rtol=1e-10, atol=1e-13)


def test_trials_far_from_the_centre_are_computed_the_two_pass_way():
    """A table with two far-apart groups of rows: a trial drawn inside one group has its mean many
    standard deviations from the table's centre, where the one-pass variance would lose about
    14 digits; those trials (and only those) go the two-pass way, and match the reference."""
    rng = np.random.default_rng(8)
    feats = rng.normal(size=(400, 3))
    feats[:200, 0] += 1e7  # group A, component 0 far from group B
    idx = np.concatenate([rng.permutation(200)[:30].reshape(1, 3, 10),  # inside A
                          rng.permutation(400)[:30].reshape(1, 3, 10)])  # across both
    ZT = batched.feature_table(feats)
    X = batched.gather(ZT, idx)
    S, G = batched.gram(X)
    mu = S.sum(-1) / 30
    var = G.diagonal(dim1=-2, dim2=-1).sum(-1) / 30 - mu * mu
    assert (var <= mu * mu)[:, 0].any() and not (var <= mu * mu)[:, 1].any()
    got = batched.linear_mmd2(ZT, idx).numpy()
    ref = np.stack([pairwise_mmd2_linear(normalize_features(feats[i])) for i in idx])
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)


def test_feature_tables_centre_each_part_alone():
    rng = np.random.default_rng(9)
    parts = [rng.normal(size=(7, 3)) + 5, rng.normal(size=(4, 3)) - 2]
    ZT, starts = batched.feature_tables(parts)
    assert starts.tolist() == [0, 7]
    for Z, s0 in zip(parts, starts):
        np.testing.assert_array_equal(ZT[:, s0:s0 + len(Z)].numpy(), batched.feature_table(Z).numpy())


def test_a_trial_with_a_constant_component_is_found():
    """A component constant in one trial only (its rows share a value the pool repeats):
    `distances` finds it (weight 0, as the reference) and gives the reference's distances."""
    rng = np.random.default_rng(5)
    P, Q = rng.normal(size=(40, 3)), rng.normal(size=(120, 3))
    P[:10, 1] = 0.25
    Q[:20, 1] = 0.25
    d = fingerprint.Draws(np.arange(10)[None], np.arange(20).reshape(1, 2, 10), np.array([1]),
                          np.array([0.3]))
    feats = np.concatenate([P, Q])
    idx = d.layout(len(P))
    ZT = batched.feature_table(feats)
    ref = pairwise_mmd(normalize_features(feats[idx[0]]), kernel="linear")
    got = batched.distances(ZT, idx)[0].numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)


def test_all_classes_at_once_equal_the_reference_class_by_class():
    """fingerprint.run_on_features runs Algorithm 1 once over every class's trials: acc_r equal
    to the per-trial from-scratch path, classes of different pool sizes and with ties."""
    rng = np.random.default_rng(6)
    pools = {}
    for r, nq in enumerate((60, 90, 75)):
        P, Q = adversarial_pools(r)
        pools[r] = (P[:30] + r, Q[:nq])
    for linkage in ("single", "complete"):
        fast = fingerprint.run_on_features(pools, 3, 15, trials=40, seed=2, linkage=linkage)
        ref = fingerprint.run_on_features(pools, 3, 15, trials=40, seed=2, linkage=linkage,
                                          method="reference")
        assert fast.acc_by_class == ref.acc_by_class
        one = {r: fingerprint.class_accuracy(*pools[r], 3, 15, trials=40,
                                             seed=fingerprint.class_seed(2, r), linkage=linkage)
               for r in pools}
        assert fast.acc_by_class == one
