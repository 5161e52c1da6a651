"""The fast verification path against the paper-literal one, on a small real model (not timed).

The fast path (``fingerprint.trial_guesses(..., method="fast")``) computes every sample's logits
once and runs all trials as batched arithmetic on them.  The paper-literal way forwards each
trial's m mini-datasets through the model, builds the n x n linear-kernel matrices of Eq. 11 and
sums them over i != j, and clusters with the from-scratch Algorithm 1.  On the same draws the
decisions must be identical.  Speed is measured in ``benchmarks/verify.py``, never here.
"""

import numpy as np
import pytest
import torch

from pmi_tutorial import batched, data, fingerprint
from pmi_tutorial.clustering import agglomerative, final_clusters
from pmi_tutorial.features import logits
from pmi_tutorial.mmd import pairwise_mmd
from pmi_tutorial.models import build_model
from pmi_tutorial.pmi import guess_from_clusters, normalize_features


def literal_guesses(model, images, draws, n_P):
    """Paper-literal trials: a forward pass per trial, Eq. 11 with n x n kernel matrices."""
    idx = draws.layout(n_P)
    t, m, n = idx.shape
    out = np.empty(t, dtype=np.int64)
    for k in range(t):
        F = logits(model, images[torch.from_numpy(idx[k].reshape(-1))], batch_size=m * n)
        F = normalize_features(F.double().numpy().reshape(m, n, -1))
        D = np.zeros((m, m))
        for a in range(m):
            for b in range(a + 1, m):
                X, Y = F[a], F[b]
                H = X @ X.T + Y @ Y.T - X @ Y.T - Y @ X.T  # h[i, j] of Eq. 11
                D[a, b] = D[b, a] = np.sqrt(max((H.sum() - np.trace(H)) / (n * (n - 1)), 0.0))
        G1, G2 = final_clusters(agglomerative(D, linkage="single"))
        out[k] = guess_from_clusters(G1, G2, draws.u[k])
    return out


@pytest.fixture(scope="module")
def mnist_small(mnist_root):
    split = data.owner_split("mnist", root=mnist_root)
    small = data.subset(split, 150, seed=0, val_per_class=120)
    return {r: data.class_pools(small, r) for r in (0, 3)}


@pytest.fixture(scope="module")
def tiny_mlp(mnist_small):
    # a few Adam steps on the member pools, so that the logits carry some signal
    torch.manual_seed(0)
    model = build_model("mlp", num_classes=10, width=0.25, seed=0)
    X = torch.cat([p.P for p in mnist_small.values()])
    y = torch.cat([torch.full((len(p.P),), r) for r, p in mnist_small.items()])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return model.eval()


def test_mlp_is_a_real_small_model(mnist_small, tiny_mlp):
    # guard: real MNIST images, a small MLP, and logits that are not constant
    p = mnist_small[0]
    assert p.P.shape[1:] == (1, 28, 28) and len(p.P) == 150 and len(p.Q) == 120
    f = logits(tiny_mlp, p.P)
    assert f.shape == (150, 10) and float(f.std(0).min()) > 0


@pytest.mark.parametrize("m,n", [(3, 20), (4, 25), (2, 40)])
def test_fast_decisions_equal_paper_literal(mnist_small, tiny_mlp, m, n):
    feats = fingerprint.pool_features(tiny_mlp, mnist_small)
    for r, p in mnist_small.items():
        fP, fQ = feats[r]
        d = fingerprint.draw_trials(len(p.P), len(p.Q), m, n, 40, seed=fingerprint.class_seed(m, r))
        fast = fingerprint.trial_guesses(fP, fQ, d, method="fast")
        lit = literal_guesses(tiny_mlp, torch.cat([p.P, p.Q]), d, len(p.P))
        np.testing.assert_array_equal(fast, lit)
        ref = fingerprint.trial_guesses(fP, fQ, d, method="reference")
        np.testing.assert_array_equal(fast, ref)


def test_trial_distances_match_reference_distances(mnist_small, tiny_mlp):
    fP, fQ = fingerprint.pool_features(tiny_mlp, mnist_small)[3]
    d = fingerprint.draw_trials(len(fP), len(fQ), 5, 20, 30, seed=1)
    feats = np.concatenate([fP.double().numpy(), fQ.double().numpy()])
    idx = d.layout(len(fP))
    D = batched.distances(batched.feature_table(feats), idx).cpu().numpy()
    for k in range(len(idx)):
        np.testing.assert_allclose(D[k], pairwise_mmd(normalize_features(feats[idx[k]])), rtol=1e-9, atol=1e-12)
        assert np.array_equal(D[k], D[k].T) and np.all(np.diag(D[k]) == 0)


def test_trial_distances_constant_and_nearly_constant_components():
    # a component constant in a trial counts for nothing (normalize_features() maps it to 0); one that
    # is constant in some trials only, and a tiny-variance one, still match the reference
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(60, 4)) + 50.0, rng.normal(size=(90, 4)) + 50.0
    P[:, 1] = Q[:, 1] = 7.0
    P[:, 2] = 3.0
    Q[:45, 2] = 3.0
    P[:, 3] = 1e6 + 1e-3 * rng.normal(size=60)
    d = fingerprint.draw_trials(60, 90, 3, 10, 80, seed=2)
    feats, idx = np.concatenate([P, Q]), d.layout(60)
    D = batched.distances(batched.feature_table(feats), idx).cpu().numpy()
    Dr = np.stack([pairwise_mmd(normalize_features(feats[idx[k]])) for k in range(len(idx))])
    np.testing.assert_allclose(D, Dr, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(
        fingerprint.trial_guesses(P, Q, d, method="fast"), fingerprint.trial_guesses(P, Q, d, method="reference")
    )


def test_layout_matches_the_loop_definition():
    d = fingerprint.draw_trials(30, 80, 5, 6, 50, seed=3)
    idx = d.layout(30)
    for k in range(50):
        others = [i for i in range(5) if i != d.s[k]]
        np.testing.assert_array_equal(idx[k, d.s[k]], d.member[k])
        np.testing.assert_array_equal(idx[k, others], d.nonmember[k] + 30)


def test_draws_cached_are_read_only_and_equal_to_fresh_ones():
    a = fingerprint.draw_trials(50, 100, 3, 10, 20, seed=[4, 1])
    b = fingerprint.draw_trials(50, 100, 3, 10, 20, seed=[4, 1])
    assert a is b  # the same pools, design and seed: drawn once
    fresh = fingerprint._draw(50, 100, 3, 10, 20, [4, 1])
    for f in ("member", "nonmember", "s", "u"):
        np.testing.assert_array_equal(getattr(a, f), getattr(fresh, f))
        assert not getattr(a, f).flags.writeable
    # a Generator is never cached: two calls advance it
    g = np.random.default_rng(0)
    assert not np.array_equal(fingerprint.draw_trials(50, 100, 3, 10, 5, seed=g).member,
                              fingerprint.draw_trials(50, 100, 3, 10, 5, seed=g).member)
