"""Tests for pmi_tutorial.membership: per-sample losses, the loss-threshold attack, pooling."""

from __future__ import annotations


import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu, norm

from pmi_tutorial import membership, stats
from pmi_tutorial.models import build_model



@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (300,), generator=g)
    return x, y


# ----------------------------------------------------------------------------- per-sample loss


def test_per_sample_loss_equals_cross_entropy(batch):
    x, y = batch
    model = build_model("mlp", seed=0).eval()
    with torch.no_grad():
        direct = F.cross_entropy(model(x), y, reduction="none").double().numpy()
    out = membership.per_sample_loss(model, x, y)
    assert out.shape == (300,) and out.dtype == np.float64
    np.testing.assert_allclose(out, direct, rtol=1e-5, atol=1e-6)


def test_per_sample_loss_by_hand(batch):
    # -log softmax(f(x))_y computed in NumPy from the logits
    x, y = batch
    model = build_model("lenet5", seed=1).eval()
    with torch.no_grad():
        z = model(x).double().numpy()
    z = z - z.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    expected = -log_p[np.arange(len(y)), y.numpy()]
    np.testing.assert_allclose(membership.per_sample_loss(model, x, y), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("batch_size", [1, 7, 300, 1000])
def test_per_sample_loss_does_not_depend_on_batching(batch, batch_size):
    x, y = batch
    model = build_model("mlp", seed=2)
    np.testing.assert_allclose(membership.per_sample_loss(model, x, y, batch_size=batch_size),
                               membership.per_sample_loss(model, x, y), rtol=1e-5, atol=1e-6)


def test_per_sample_loss_accepts_numpy_labels(batch):
    x, y = batch
    model = build_model("mlp", seed=0)
    np.testing.assert_array_equal(membership.per_sample_loss(model, x, y.numpy()),
                                  membership.per_sample_loss(model, x, y))


@pytest.mark.parametrize("bad_y, match", [
    (torch.zeros(299, dtype=torch.long), "one integer label per sample"),
    (torch.zeros((300, 1), dtype=torch.long), "one integer label per sample"),
    (torch.full((300,), 10), r"labels in \[0, 10\)"),
    (torch.full((300,), -1), r"labels in \[0, 10\)"),
    (torch.zeros(300), r"labels in \[0, 10\)"),
])
def test_per_sample_loss_rejects_bad_labels(batch, bad_y, match):
    x, _ = batch
    with pytest.raises(ValueError, match=match):
        membership.per_sample_loss(build_model("mlp", seed=0), x, bad_y)


# ----------------------------------------------------------------------------- the attack


def test_scores_and_decisions():
    losses = np.array([0.0, 0.5, 2.0, 0.1])
    np.testing.assert_array_equal(membership.loss_threshold_scores(losses), -losses)
    np.testing.assert_array_equal(membership.predict_members(losses, 0.5),
                                  [True, True, False, True])
    # thresholding the score at -tau is the same rule
    tau = 0.3
    np.testing.assert_array_equal(membership.loss_threshold_scores(losses) >= -tau,
                                  membership.predict_members(losses, tau))
    with pytest.raises(ValueError, match="threshold"):
        membership.predict_members(losses, "low")
    with pytest.raises(ValueError, match="threshold"):
        membership.predict_members(losses, float("nan"))


def test_roc_of_the_scores_matches_the_rule():
    # every ROC point of -loss is (FPR, TPR) of "member when loss <= tau" for some tau
    rng = np.random.default_rng(0)
    lm, lq = rng.exponential(0.5, 200), rng.exponential(1.0, 300)
    fpr, tpr, thr = stats.roc_curve(membership.loss_threshold_scores(lm),
                                    membership.loss_threshold_scores(lq))
    for f, t, s in zip(fpr[1:], tpr[1:], thr[1:]):
        assert t == pytest.approx(membership.predict_members(lm, -s).mean())
        assert f == pytest.approx(membership.predict_members(lq, -s).mean())
    # and the AUC is the Mann-Whitney statistic (lower loss = member)
    U = mannwhitneyu(-lm, -lq).statistic
    assert stats.auc(-lm, -lq) == pytest.approx(U / (len(lm) * len(lq)))


# ----------------------------------------------------------------------------- pooling


def test_pooled_scores_shapes_and_seed():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(500), rng.standard_normal(400)
    pm, pn = membership.pooled_scores(a, b, n=10, trials=50, seed=3)
    assert pm.shape == pn.shape == (50,)
    pm2, pn2 = membership.pooled_scores(a, b, n=10, trials=50, seed=3)
    np.testing.assert_array_equal(pm, pm2)
    np.testing.assert_array_equal(pn, pn2)
    pm3, _ = membership.pooled_scores(a, b, n=10, trials=50, seed=4)
    assert not np.array_equal(pm, pm3)


def test_pooled_scores_draw_distinct_samples():
    # scores 2^k: n times the mean is a sum of distinct powers of two iff it has n bits set
    scores = 2.0 ** np.arange(40)
    n = 7
    pm, pn = membership.pooled_scores(scores, scores, n=n, trials=200, seed=0)
    for means in (pm, pn):
        sums = np.rint(means * n).astype(np.int64)
        assert np.allclose(sums, means * n, rtol=1e-12)
        assert all(bin(s).count("1") == n for s in sums)
    # the whole pool: every set mean is the pool mean
    pm, pn = membership.pooled_scores(scores[:10], scores[:12], n=10, trials=5, seed=0)
    np.testing.assert_allclose(pm, scores[:10].mean())


def test_pooled_means_have_variance_sigma2_over_n():
    rng = np.random.default_rng(1)
    big = rng.normal(2.0, 3.0, 200_000)
    pm, _ = membership.pooled_scores(big, big, n=25, trials=4000, seed=0)
    assert pm.mean() == pytest.approx(2.0, abs=0.05)
    assert pm.std() == pytest.approx(3.0 / 5.0, rel=0.05)


@pytest.mark.parametrize("n", [1, 4, 16, 64])
def test_pooled_auc_matches_the_normal_closed_form(n):
    # members ~ N(delta, sigma^2), non-members ~ N(0, sigma^2): AUC(n) = Phi(delta sqrt(n) / (sqrt(2) sigma))
    rng = np.random.default_rng(n)
    delta, sigma = 0.15, 1.3
    members = rng.normal(delta, sigma, 100_000)
    nonmembers = rng.normal(0.0, sigma, 100_000)
    expected = norm.cdf(delta * np.sqrt(n) / (np.sqrt(2) * sigma))
    got = membership.pooled_auc(members, nonmembers, [n], trials=4000, seed=0)[0]
    assert got == pytest.approx(expected, abs=0.02)
    assert membership.pooled_auc_normal(delta, n, sigma) == pytest.approx(expected, rel=1e-12)


def test_pooled_auc_normal_unequal_variances_by_simulation():
    rng = np.random.default_rng(5)
    delta, s_p, s_q, n = 0.3, 0.5, 2.0, 9
    # the set means directly: N(delta, s_p^2 / n) against N(0, s_q^2 / n)
    a = rng.normal(delta, s_p / 3, 40_000)
    b = rng.normal(0.0, s_q / 3, 40_000)
    assert membership.pooled_auc_normal(delta, n, s_p, s_q) == pytest.approx(stats.auc(a, b),
                                                                              abs=0.01)
    # arrays of n, and n = 1 is the per-sample AUC of two normals
    out = membership.pooled_auc_normal(delta, np.array([1, 4, 100]), s_p, s_q)
    assert out.shape == (3,) and np.all(np.diff(out) > 0)
    assert out[0] == pytest.approx(norm.cdf(delta / np.hypot(s_p, s_q)))


def test_pooled_auc_grows_with_n_and_is_seeded():
    rng = np.random.default_rng(2)
    a, b = rng.exponential(0.9, 5000), rng.exponential(1.0, 5000)
    aucs = membership.pooled_auc(-a, -b, [1, 10, 100, 1000], trials=400, seed=0)
    assert aucs[0] == pytest.approx(stats.auc(-a, -b), abs=0.05)
    assert aucs[-1] > 0.95 and aucs[-1] > aucs[0] + 0.3
    np.testing.assert_array_equal(aucs, membership.pooled_auc(-a, -b, [1, 10, 100, 1000],
                                                              trials=400, seed=0))


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 0}, "n must be a positive integer"),
    ({"n": 2.5}, "n must be a positive integer"),
    ({"n": 11}, "fewer than n=11"),
    ({"n": 5, "trials": 0}, "trials must be a positive integer"),
])
def test_pooled_scores_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        membership.pooled_scores(np.zeros(10), np.zeros(20), **kwargs)


def test_pooled_auc_normal_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma"):
        membership.pooled_auc_normal(0.1, 10, 0.0, 0.0)
    with pytest.raises(ValueError, match="positive set size"):
        membership.pooled_auc_normal(0.1, 0)


# ----------------------------------------------------------------------------- the over-fitted model


def test_overfit_model_is_trained_once_then_loaded(tmp_path, mnist_root):
    kwargs = dict(per_class=5, epochs=3, val_per_class=5, cache_dir=tmp_path, root=mnist_root,
                  device="cpu")
    first = membership.overfit_model(**kwargs)
    assert not first.from_cache
    assert len(first.split.train_y) == 50 and len(first.split.val_y) == 50
    assert np.bincount(first.split.train_y.numpy()).tolist() == [5] * 10
    assert len(first.history) == 3 and 1 <= first.best_epoch <= 3
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and "overfit" in files[0].name

    second = membership.overfit_model(**kwargs)
    assert second.from_cache
    assert second.best_epoch == first.best_epoch and second.history == first.history
    np.testing.assert_array_equal(second.split.train_index, first.split.train_index)
    for k, v in first.model.state_dict().items():
        assert torch.equal(v.cpu(), second.model.state_dict()[k].cpu())
    # the loaded model gives the same losses
    x, y = first.split.train_x, first.split.train_y
    np.testing.assert_array_equal(membership.per_sample_loss(first.model, x, y),
                                  membership.per_sample_loss(second.model, x, y))


def test_overfit_model_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="per_class"):
        membership.overfit_model(per_class=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="epochs"):
        membership.overfit_model(epochs=-1, cache_dir=tmp_path)
