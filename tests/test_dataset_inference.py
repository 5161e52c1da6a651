"""Dataset Inference (black box): the blind walk against closed-form distances, the Welch test
against SciPy, calibration under a planted null, power under a planted shift, bad inputs."""

import numpy as np
import pytest
import torch
from scipy import stats as sst

from pmi_tutorial.baselines import dataset_inference as di

DIM = 20


def linear_model(w):
    """Two-class linear classifier: class 1 where x . w > 0 (scores for classes 0 and 1)."""

    def predict(x):
        f = x.reshape(len(x), -1).double() @ w
        return torch.stack([-f, f], 1)

    return predict


def points_with_margin(margins, w, seed):
    """Random points whose signed value x . w (w of norm 1) equals ``margins`` exactly."""
    rng = np.random.default_rng(seed)
    z = torch.as_tensor(rng.normal(size=(len(margins), DIM)))
    z = z - (z @ w)[:, None] * w[None, :]
    return (z + torch.as_tensor(margins)[:, None] * w[None, :]).float()


def unit_w(seed=0):
    w = torch.as_tensor(np.random.default_rng(seed).normal(size=DIM))
    return w / w.norm()


def pnorm(d, norm):
    d = d.reshape(len(d), -1).double()
    return {"linf": d.abs().amax(1), "l2": d.norm(dim=1), "l1": d.abs().sum(1)}[norm]


@pytest.mark.parametrize("norm", di.NORMS)
def test_walk_distance_matches_the_linear_boundary_within_one_step(norm):
    w = unit_w(1)
    rng = np.random.default_rng(2)
    margins = rng.uniform(0.002, 0.08, size=40) * rng.choice([-1, 1], size=40)
    x = points_with_margin(margins, w, seed=3)
    y = torch.as_tensor(margins > 0).long()
    D, steps = 6, 50
    walk = di.blind_walk(linear_model(w), x, y, norms=(norm,), directions=D, steps=steps, seed=5)
    base = di.sample_directions(len(x), x.shape[1:], norm, D, seed=5)
    checked = 0
    for i in range(len(x)):
        f = float(x[i].double() @ w)
        for j in range(D):
            d = base[i, j]
            g = float(d.double() @ w)
            size = float(pnorm(d[None], norm)[0])
            kstar = -f / g if g != 0 else np.inf  # the boundary along x + k d, in closed form
            got = walk.distances[i, 0, j]
            if 0 < kstar <= steps - 1e-6:
                assert walk.flipped[i, 0, j]
                analytic = kstar * size
                assert analytic - 1e-6 <= got <= analytic + size + 1e-6
                checked += 1
            elif kstar <= 0 or kstar > steps + 1e-6:
                assert not walk.flipped[i, 0, j]
                assert got == pytest.approx(steps * size, rel=1e-5)
    assert checked >= 40  # most directions reach the boundary


def test_walk_is_seeded_and_independent_of_the_batch_size():
    w = unit_w(4)
    margins = np.random.default_rng(5).uniform(-0.05, 0.05, size=150)
    x = points_with_margin(margins, w, seed=6)
    y = torch.as_tensor(margins > 0).long()
    a = di.blind_walk(linear_model(w), x, y, directions=3, seed=9, batch_size=7)
    b = di.blind_walk(linear_model(w), x, y, directions=3, seed=9, batch_size=150)
    c = di.blind_walk(linear_model(w), x, y, directions=3, seed=10, batch_size=150)
    np.testing.assert_array_equal(a.distances, b.distances)
    assert a.queries == b.queries
    assert not np.array_equal(a.distances, c.distances)


def test_walk_clips_to_the_pixel_box():
    box, unit = di.pixel_space("mnist")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    x = ((torch.rand(8, 1, 28, 28) - 0.1307) / 0.3081)
    y = net(x).argmax(1)
    walk = di.blind_walk(net, x, y, norms=("linf",), directions=2, steps=400, box=box, unit=unit)
    # a step can never move a pixel outside [0, 1]: the linf distance is at most 1 pixel unit
    assert walk.distances.max() <= 1.0 + 1e-5


def test_walk_on_a_convolutional_model_equals_the_walk_through_a_plain_callable():
    # the walk queries a channels-last copy of a model with convolutions; the predictions and
    # so the distances must be those of the model as given, which stays untouched
    from pmi_tutorial.models import build_model

    box, unit = di.pixel_space("mnist")
    net = build_model("lenet5", num_classes=10, seed=3).eval()
    x = (torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(1)) - 0.1307) / 0.3081
    y = net(x).argmax(1)

    def plain(xb):  # not a module: queried exactly as given
        with torch.no_grad():
            return net(xb.contiguous())

    got = di.blind_walk(net, x, y, directions=3, steps=30, box=box, unit=unit, seed=2)
    want = di.blind_walk(plain, x, y, directions=3, steps=30, box=box, unit=unit, seed=2)
    np.testing.assert_array_equal(got.distances, want.distances)
    assert got.queries == want.queries and got.flipped.any()
    assert next(net.parameters()).is_contiguous()  # the suspect's own layout is unchanged
    assert isinstance(di._walk_model(net), di._ChannelsLast)
    assert di._walk_model(plain) is plain


def test_welch_equals_scipy_and_keeps_tiny_pvalues():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), size=rng.integers(3, 40))
        b = rng.normal(0, rng.uniform(0.5, 2), size=rng.integers(3, 40))
        ours = di.welch_test(a, b)
        ref = sst.ttest_ind(a, b, equal_var=False, alternative="greater")
        assert ours.t == pytest.approx(ref.statistic, rel=1e-10)
        assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)
    a, b = rng.normal(5, 1, size=500), rng.normal(0, 1, size=500)
    far = di.welch_test(a, b)
    ref = sst.ttest_ind(a, b, equal_var=False, alternative="greater")
    assert far.log10_pvalue < -100
    assert ref.pvalue == 0.0 or far.log10_pvalue == pytest.approx(np.log10(ref.pvalue), rel=1e-6)


def _pool(w, n, seed, shift=0.0):
    """n points of one distribution: margins N(0, 0.04^2), members optionally pushed outward."""
    rng = np.random.default_rng(seed)
    m = rng.normal(0, 0.04, size=n)
    m = m + np.sign(m) * shift
    x = points_with_margin(m, w, seed=seed + 1)
    return x, torch.as_tensor(m > 0).long()


def _scores(reg, predict, x, y, seed):
    return reg.score(di.blind_walk(predict, x, y, directions=4, steps=50, seed=seed, batch_size=len(x)))


def test_pvalues_are_uniform_under_a_planted_null():
    """Members and non-members from one distribution, scored by a model that saw neither."""
    w = unit_w(7)
    model = linear_model(w)
    km, kn = _pool(w, 200, 10), _pool(w, 200, 20)
    reg = di.fit_regressor(di.blind_walk(model, *km, directions=4, seed=1),
                           di.blind_walk(model, *kn, directions=4, seed=2), epochs=300, seed=0)
    k, pairs = 20, 150
    xm, ym = _pool(w, k * pairs, 30)
    xn, yn = _pool(w, k * pairs, 40)
    sm, sn = _scores(reg, model, xm, ym, 3), _scores(reg, model, xn, yn, 4)
    p = np.array([di.welch_test(sm[i * k:(i + 1) * k], sn[i * k:(i + 1) * k]).pvalue
                  for i in range(pairs)])  # disjoint draws: independent p-values
    assert sst.kstest(p, "uniform").pvalue > 0.01
    lo, hi = sst.binom.ppf([0.0005, 0.9995], pairs, 0.05)
    assert lo <= np.sum(p < 0.05) <= hi


def test_members_far_from_the_boundary_are_detected():
    """A planted effect: the revealed members sit farther from the boundary than non-members."""
    w = unit_w(8)
    model = linear_model(w)
    km, kn = _pool(w, 200, 50, shift=0.03), _pool(w, 200, 60)
    d = di.DatasetInference.fit(model, km, kn, epochs=300, directions=4, steps=50)
    res = d.test(model, _pool(w, 200, 70, shift=0.03), _pool(w, 200, 80), num_revealed=(10, 100),
                 repeats=20)
    assert res.pvalues[100] < 1e-6
    assert res.pvalues[100] < res.pvalues[10]
    assert res.mean_difference > 0
    assert res.forward_equivalents >= 3 * 4  # at least one query per norm and direction


def test_bad_inputs_give_clear_errors():
    w = unit_w(9)
    model = linear_model(w)
    km, kn = _pool(w, 40, 90), _pool(w, 40, 91)
    with pytest.raises(ValueError, match="at least 10"):
        di.DatasetInference.fit(model, (km[0][:5], km[1][:5]), kn, epochs=5)
    d = di.DatasetInference.fit(model, km, kn, epochs=5, directions=2)
    with pytest.raises(ValueError, match="regressor was trained on"):
        d.test(model, (km[0][:20], km[1][:20]), _pool(w, 20, 92), num_revealed=5)

    def constant(x):
        return torch.zeros(len(x), dtype=torch.long)

    with pytest.raises(ValueError, match="one class for everything"):
        di.blind_walk(constant, *km, directions=2)
    with pytest.raises(ValueError, match="scores \\(N, c\\)"):
        di.blind_walk(lambda x: torch.zeros(len(x), 3, 1), *km, directions=2)
    with pytest.raises(ValueError, match="unknown norm"):
        di.blind_walk(model, *km, norms=("l3",))
    with pytest.raises(ValueError, match="num_revealed"):
        d.test(model, _pool(w, 20, 93), _pool(w, 20, 94), num_revealed=50)


def test_welch_over_draws_against_scipy():
    """The first draw's p and the harmonic mean over draws, recomputed with SciPy's Welch test
    on the same seeded positions; a size above the positions uses them all or is skipped."""
    import scipy.stats as sps

    from pmi_tutorial.baselines.dataset_inference import welch_over_draws

    rng = np.random.default_rng(5)
    sm, sn = rng.normal(0.4, 1.0, 30), rng.normal(0.0, 1.0, 30)
    got = welch_over_draws(sm, sn, (5, 12, 40), repeats=7, seed=3)
    pos = np.random.default_rng([3, 4099])
    for k in (5, 12, 40):
        ps = [sps.ttest_ind(sm[p], sn[p], equal_var=False, alternative="greater").pvalue
              for p in (pos.permutation(30)[:k] for _ in range(7))]
        assert got["first_draw"][str(k)] == pytest.approx(ps[0], rel=1e-9)
        assert got["hmean"][str(k)] == pytest.approx(len(ps) / sum(1 / p for p in ps), rel=1e-9)
    skipped = welch_over_draws(sm, sn, (40, 5), repeats=7, seed=3, larger="skip")
    assert list(skipped["first_draw"]) == ["5"]
    # nothing was drawn for 40, so 5 gets the first draws of the stream, as in `got`
    assert skipped["first_draw"]["5"] == got["first_draw"]["5"]
    with pytest.raises(ValueError, match="larger must be"):
        welch_over_draws(sm, sn, (5,), repeats=2, seed=0, larger="clip")
