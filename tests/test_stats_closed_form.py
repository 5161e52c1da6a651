"""Tests for pmi_tutorial.ownership: the closed-form test, the pools file, verify_ownership."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps
import torch

from pmi_tutorial import ownership as O
from pmi_tutorial.stats import closed_form as CF
from pmi_tutorial.stats import confidence_scores
from pmi_tutorial.stats.directional import cyclic_subset_sums_many


# --------------------------------------------------------------------------- the rank-sum test


@pytest.mark.parametrize("case", range(6))
def test_rank_sum_equals_scipy(case):
    rng = np.random.default_rng(case)
    n1, n2 = [(5, 7), (12, 9), (30, 40), (3, 50), (20, 20), (8, 15)][case]
    x, y = rng.normal(0.3, 1, n1), rng.normal(0, 1, n2)
    if case % 2:  # ties within and across the samples
        x, y = np.round(x), np.round(y)
    res = O.rank_sum_test(x, y)
    ref = sps.mannwhitneyu(x, y, alternative="greater", method="asymptotic")
    assert res.U == pytest.approx(ref.statistic, abs=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    # U counts the pairs with x > y (ties 1/2): a brute-force count
    brute = sum((a > b) + 0.5 * (a == b) for a in x for b in y)
    assert res.U == pytest.approx(brute)


def test_midranks_equal_scipy():
    v = np.round(np.random.default_rng(9).normal(size=200), 1)
    ranks, counts = O.midranks(v)
    assert np.allclose(ranks, sps.rankdata(v))
    assert sorted(counts) == sorted(np.unique(v, return_counts=True)[1])


def test_rank_sum_has_no_floor_and_all_ties_carry_no_evidence():
    x, y = np.arange(1000.0, 2000.0), np.arange(0.0, 1000.0)  # perfectly separated
    res = O.rank_sum_test(x, y)
    assert np.isfinite(res.log10_pvalue) and res.log10_pvalue < -200
    # the far tail of the normal: log10 P(Z >= z) ~ -(z^2/2 + ln(z sqrt(2 pi))) / ln 10
    z = res.z
    assert res.log10_pvalue == pytest.approx(-(z * z / 2 + math.log(z * math.sqrt(2 * math.pi)))
                                             / math.log(10), rel=1e-4)
    same = O.rank_sum_test(np.ones(5), np.ones(7))
    assert same.z == 0.0 and same.pvalue == 1.0


def test_rank_sum_bad_input():
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        O.rank_sum_test([], [1.0, 2.0])
    with pytest.raises(ValueError, match="NaN"):
        O.rank_sum_test([np.nan], [1.0])


# --------------------------------------------------------------------------- the combination


@pytest.mark.parametrize("combine", ["stouffer", "fisher"])
def test_combination_equals_scipy(combine):
    rng = np.random.default_rng(3)
    z = rng.normal(0.5, 1.2, 10)
    lp = sps.norm.logsf(z) / math.log(10)
    stat, log10_p = O.combine_log10(z, lp, combine)
    ref = sps.combine_pvalues(10 ** lp, method=combine)
    assert stat == pytest.approx(ref.statistic, rel=1e-9)
    assert 10 ** log10_p == pytest.approx(ref.pvalue, rel=1e-8)


def test_fisher_far_tail_is_exact_in_log_space():
    # per-class p = 1e-40: X = -2 sum ln p; P(chi2_2K >= X) = e^{-X/2} sum_{j<K} (X/2)^j / j!
    K, lp = 10, np.full(10, -40.0)
    X, log10_p = O.combine_log10(np.zeros(K), lp, "fisher")
    t = X / 2
    direct = (-t + math.log(sum(t ** j / math.factorial(j) for j in range(K)))) / math.log(10)
    assert log10_p == pytest.approx(direct, rel=1e-12) and log10_p < -300  # below float64's range
    # where it does not underflow, SciPy's chi2 agrees
    X2, lp2 = O.combine_log10(np.zeros(3), np.array([-3.0, -2.0, -4.0]), "fisher")
    assert 10 ** lp2 == pytest.approx(sps.chi2.sf(X2, 6), rel=1e-10)


def test_combination_bad_input():
    with pytest.raises(ValueError, match="unknown combine rule"):
        O.combine_log10([1.0], [-1.0], "tippett")
    with pytest.raises(ValueError, match="one z and one log10"):
        O.combine_log10([], [], "stouffer")


# --------------------------------------------------------------------------- calibration


def _draw_pools(rng, n_P, n_Q, shift=0.0, c=10, ties=False):
    """Synthetic logits: the true-class logit of members raised by ``shift``."""
    out = {}
    for r in range(c):
        fP, fQ = rng.normal(0, 1, (n_P, c)), rng.normal(0, 1, (n_Q, c))
        fP[:, r] += 2.0 + shift
        fQ[:, r] += 2.0
        if ties:
            fP, fQ = np.round(fP, 1), np.round(fQ, 1)
        out[r] = (fP, fQ)
    return out


_NULL_DRAWS = 1500


@pytest.fixture(scope="module")
def null_results():
    """``null_results(ties)``: the per-class rank tests of 1,500 null draws (seed 11), computed
    once for every combination rule, and the first draws' pools (to check the shortcut)."""
    memo = {}

    def get(ties):
        if ties not in memo:
            rng = np.random.default_rng(11)
            pools = [_draw_pools(rng, 20, 40, ties=ties) for _ in range(_NULL_DRAWS)]
            memo[ties] = ([O.closed_form_test(p) for p in pools], pools[:20])
        return memo[ties]
    return get


@pytest.mark.parametrize("combine,ties", [("stouffer", False), ("fisher", False), ("stouffer", True)])
def test_null_pvalues_are_uniform(combine, ties, null_results):
    results, first = null_results(ties)
    draws = _NULL_DRAWS

    def combined(res):  # the rule applied to the per-class tests, as closed_form_test applies it
        return 10.0 ** O.combine_log10([v.z for v in res.per_class.values()],
                                       [v.log10_pvalue for v in res.per_class.values()], combine)[1]
    p = np.array([combined(res) for res in results])
    assert p[:len(first)].tolist() == [O.closed_form_test(f, combine=combine).pvalue for f in first]
    assert sps.kstest(p, "uniform").pvalue > 1e-3
    k = int((p <= 0.05).sum())
    lo, hi = sps.binomtest(k, draws, 0.05).proportion_ci(0.999)
    assert lo <= 0.05 <= hi, (k, draws)


def test_pvalue_falls_with_the_number_revealed():
    rng = np.random.default_rng(5)
    means = []
    for n_P in (10, 30, 100, 300, 1000):
        lps = [O.closed_form_test(_draw_pools(rng, n_P, 1000, shift=0.3)).log10_pvalue
               for _ in range(5)]
        means.append(np.mean(lps))
    assert all(a > b for a, b in zip(means, means[1:])), means
    assert means[-1] < -30 and np.isfinite(means[-1])  # strong evidence, no underflow


def test_closed_form_is_the_same_on_logits_logprobs_and_probabilities():
    rng = np.random.default_rng(2)
    fp = _draw_pools(rng, 50, 80, shift=0.5)
    logp = {r: (torch.log_softmax(torch.tensor(a), 1).numpy(),
                torch.log_softmax(torch.tensor(b), 1).numpy()) for r, (a, b) in fp.items()}
    a, b = O.closed_form_test(fp), O.closed_form_test(logp)
    assert a.log10_pvalue == pytest.approx(b.log10_pvalue, rel=1e-9)
    # per class: the rank-sum test of the true-class confidence, as computed by hand
    r = 4
    ref = sps.mannwhitneyu(confidence_scores(fp[r][0], r), confidence_scores(fp[r][1], r),
                           alternative="greater", method="asymptotic").pvalue
    assert a.per_class[r].pvalue == pytest.approx(ref, rel=1e-9)
    d = a.to_dict()
    assert d["per_class"]["4"]["pvalue"] == pytest.approx(ref, rel=1e-9) and "null" in d


# --------------------------------------------------------------------------- the tail test


def test_tail_test_equals_the_hypergeometric_cdf():
    rng = np.random.default_rng(12)
    x, y = np.round(rng.normal(0.2, 1, 40), 1), np.round(rng.normal(0, 1, 70), 1)
    res = O.tail_count_test(x, y, 0.1)
    pooled = np.concatenate([x, y])
    thr = np.sort(pooled)[int(np.ceil(0.1 * 110)) - 1]
    K, c = int((pooled <= thr).sum()), int((x <= thr).sum())
    assert res.U == c
    assert res.pvalue == pytest.approx(sps.hypergeom.cdf(c, 110, K, 40), rel=1e-9)
    with pytest.raises(ValueError, match="fraction must be in"):
        O.tail_count_test(x, y, 1.5)


def test_tail_test_is_valid_under_the_null_and_sees_a_tail_the_rank_test_misses():
    rng = np.random.default_rng(13)
    draws = 600
    p = np.array([O.closed_form_test(_draw_pools(rng, 200, 400), test="tail").pvalue
                  for _ in range(draws)])
    k = int((p <= 0.05).sum())
    lo, hi = sps.binomtest(k, draws, 0.05).proportion_ci(0.999)
    assert lo <= 0.05  # never more false positives than alpha (discrete: a little conservative)
    assert k / draws > 0.02  # ... but not much
    # the exact combination is the law of the summed counts: brute force in linear space
    res = O.closed_form_test(_draw_pools(rng, 20, 40), test="tail", fraction=0.1)
    law = np.array([1.0])
    for v in res.per_class.values():
        N, n1 = v.n_P + v.n_Q, v.n_P
        K = int(math.ceil(0.1 * N))  # no ties in continuous scores
        law = np.convolve(law, sps.hypergeom.pmf(np.arange(n1 + 1), N, K, n1))
    assert res.log10_pvalue == pytest.approx(np.log10(law[:int(res.statistic) + 1].sum()), rel=1e-9)
    # members: no low-confidence outliers; non-members: 4% of them; the bulk identical
    pools = {}
    for r in range(10):
        fP, fQ = rng.normal(0, 1, (1000, 10)), rng.normal(0, 1, (2000, 10))
        fP[:, r] += 6
        fQ[:, r] += np.where(rng.uniform(size=2000) < 0.04, -2.0, 6.0)
        pools[r] = (fP, fQ)
    tail = O.closed_form_test(pools, test="tail")
    rank = O.closed_form_test(pools)
    assert tail.log10_pvalue < -30 and tail.log10_pvalue < rank.log10_pvalue - 10
    assert tail.to_dict()["test"].startswith("exact count of members among the 0.05 least")


# --------------------------------------------------------------------------- the directional test


@pytest.mark.parametrize("case", ["hypergeometric", "far tail"])
def test_log_convolve_is_exact(case):
    from scipy.special import logsumexp

    if case == "hypergeometric":  # the fast path (linear space)
        a, b = CF._hypergeom_logpmf(3000, 150, 1000)[1], CF._hypergeom_logpmf(2900, 145, 900)[1]
    else:  # laws spanning more than 1e-300: the exact log-space sum
        a = np.linspace(0.0, -2000.0, 60)
        b = np.linspace(-900.0, 0.0, 45)
    want = np.array([logsumexp([a[i] + b[k - i] for i in range(len(a)) if 0 <= k - i < len(b)])
                     for k in range(len(a) + len(b) - 1)])
    assert np.allclose(CF._log_convolve(a, b), want, rtol=1e-10, atol=1e-10)
    assert np.allclose(CF._log_convolve(a, b, 30), want[:30], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("N, a", [(23, 7), (64, 20), (97, 1), (2, 1)])
def test_cyclic_subset_sums_brute_force(N, a):
    rng = np.random.default_rng(4)
    s = np.round(rng.normal(size=N), 1)
    sigma = rng.permutation(N)
    S = O.cyclic_subset_sums(s, a, sigma)
    c, u = s[sigma], sigma < a
    brute = [sum(c[(t + j) % N] for t in range(N) if u[t]) for j in range(N)]
    assert S.shape == (N,)
    assert np.allclose(S, brute) and S[0] == pytest.approx(s[:a].sum())


def test_cyclic_subset_sums_of_several_classes_at_once_equal_one_by_one():
    rng = np.random.default_rng(5)
    classes = []
    for N, a in ((31, 9), (50, 25), (7, 3)):
        classes.append((rng.normal(size=N), a, rng.permutation(N)))
    many = cyclic_subset_sums_many(classes)
    for (s, a, sigma), S in zip(classes, many):
        c, u = s[sigma], sigma < a
        brute = [sum(c[(t + j) % len(s)] for t in range(len(s)) if u[t]) for j in range(len(s))]
        np.testing.assert_allclose(S, brute, rtol=1e-12, atol=1e-12)


def test_directional_statistics_are_the_re_split_means_drawn():
    """Each class's observed statistic is mean(P') - mean(Q), and each null statistic is that
    of the re-split its shift names (the cyclic group of its seeded order), computed directly."""
    rng = np.random.default_rng(6)
    scores = {r: (rng.normal(size=a), rng.normal(size=b)) for r, (a, b) in enumerate(((8, 30), (12, 41)))}
    res = O.directional_from_scores(scores, B=20, seed=3)
    null = []
    for r, (sP, sQ) in scores.items():
        s = np.concatenate([sP, sQ])
        a, N = len(sP), len(s)
        assert res.per_class_observed[r] == pytest.approx(sP.mean() - sQ.mean(), abs=1e-12)
        g = np.random.default_rng([3, r, 8111])  # the stream the test documents
        sigma = g.permutation(N)
        shifts = g.choice(np.arange(1, N), size=20, replace=False)
        c, u = s[sigma], sigma < a
        stats_r = [c[np.roll(u, j)].mean() - c[~np.roll(u, j)].mean() for j in shifts]
        assert res.per_class_pvalue[r] == (sum(x >= res.per_class_observed[r] - 1e-12
                                               for x in stats_r) + 1) / 21
        null.append(stats_r)
    k = sum(x >= res.observed - 1e-12 for x in np.max(null, axis=0))
    assert res.pvalue == (k + 1) / 21


def test_directional_test_is_uniform_under_the_null_and_detects_a_shift():
    rng = np.random.default_rng(8)
    draws = 1000
    p = np.array([O.directional_test(_draw_pools(rng, 20, 40, ties=True), B=39, seed=i).pvalue
                  for i in range(draws)])
    # discrete: P(p <= (k+1)/40) = (k+1)/40 exactly; KS on the continuous version p - U/40
    assert sps.kstest(p - rng.uniform(0, 1 / 40, draws), "uniform").pvalue > 1e-3
    k = int((p <= 0.05).sum())
    lo, hi = sps.binomtest(k, draws, 2 / 40).proportion_ci(0.999)
    assert lo <= 2 / 40 <= hi
    strong = O.directional_test(_draw_pools(rng, 400, 800, shift=1.0), B=999)
    assert strong.pvalue == pytest.approx(1 / 1000)
    # its per-class observed statistic is the difference of mean log-probabilities at r
    fp = _draw_pools(rng, 30, 50)
    res = O.directional_test(fp, B=9)
    r = 3
    want = confidence_scores(fp[r][0], r).mean() - confidence_scores(fp[r][1], r).mean()
    assert res.per_class_observed[r] == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="lower B"):
        O.directional_test(fp, B=80)


# --------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def small_world():
    """An owner MLP trained on 100 MNIST images per class (over-fitted: members are visible),
    an innocent MLP trained on 100 other images per class, and the owner's pools: P' = the
    owner's training images, Q = 300 validation images per class."""
    from pmi_tutorial import data
    from pmi_tutorial.models import build_model
    from pmi_tutorial.experiments.study import training_split
    from pmi_tutorial.training import train

    torch.set_num_threads(1)
    split = data.owner_split("mnist", seed=0)
    y, vy = split.train_y.numpy(), split.val_y.numpy()
    rng = np.random.default_rng(0)
    perm = {r: rng.permutation(np.flatnonzero(y == r)) for r in range(10)}
    own = np.sort(np.concatenate([p[:100] for p in perm.values()]))
    inn = np.sort(np.concatenate([p[100:200] for p in perm.values()]))
    sel = np.sort(np.concatenate([p[200:250] for p in perm.values()]))
    models = {}
    for name, pos, seed in (("owner", own, 0), ("innocent", inn, 1)):
        model = build_model("mlp", num_classes=10, seed=seed)
        models[name] = train(model, training_split(split, pos, sel), 40, seed=seed,
                             device="cpu", progress=False).model.eval()
    q = np.sort(np.concatenate([np.flatnonzero(vy == r)[:300] for r in range(10)]))
    pools = O.OwnerPools("mnist", tuple(range(10)), split.train_x.numpy()[own], y[own],
                         split.val_x.numpy()[q], vy[q])
    return models, pools


def test_pools_file_round_trip_and_bad_files(small_world, tmp_path):
    _, pools = small_world
    path = O.save_pools(tmp_path / "pools.npz", pools)
    back = O.load_pools(path, dataset="mnist")
    assert back.digest == pools.digest and back.classes == pools.classes
    assert np.array_equal(back.P_x, pools.P_x) and np.array_equal(back.Q_y, pools.Q_y)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary file left
    with pytest.raises(FileNotFoundError, match="no pools file"):
        O.load_pools(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="built for cifar10"):
        O.load_pools(path, dataset="cifar10")
    # one changed pixel, the header (and its checksums) kept: refused
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["P_x"] = arrays["P_x"].copy()
    arrays["P_x"][0, 0, 0, 0] += 1.0
    np.savez_compressed(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(ValueError, match="checksum mismatch in .* for P_x"):
        O.load_pools(tmp_path / "tampered.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a pools file of pmi_tutorial"):
        O.load_pools(tmp_path / "junk.npz")


def test_owner_is_accused_and_innocent_is_not(small_world, tmp_path):
    from pmi_tutorial.checkpoint import save_checkpoint

    models, pools = small_world
    res = {k: O.verify_ownership(m, pools, B=199, trials=20) for k, m in models.items()}
    own, inn = res["owner"], res["innocent"]
    assert own.output == "logits"
    # the verdict: the pools' primary test (rank+tail, Bonferroni) at the pools' alpha (0.01)
    assert (own.verdict, inn.verdict) == ("accused", "not accused")
    assert own.log10_p() == pytest.approx(min(0.0, math.log10(2) + min(
        own.closed_form.log10_pvalue, own.closed_form_tail.log10_pvalue)))
    # p < 1e-6 for the over-fitted owner (its exact value moves with the torch build), > 1e-3 innocent
    assert own.closed_form.log10_pvalue < -6 < -3 < inn.closed_form.log10_pvalue
    # at most two of the 199 re-splits reach the owner's statistic; the innocent is unremarkable
    assert own.permutation["pvalue"] <= 3 / 200 < 0.05 < inn.permutation["pvalue"]
    # the combined p-value is Stouffer's rule on the per-class tests
    z = [own.closed_form.per_class[r].z for r in range(10)]
    assert own.closed_form.log10_pvalue == pytest.approx(
        sps.norm.logsf(sum(z) / math.sqrt(10)) / math.log(10), rel=1e-9)
    d = own.to_dict()
    assert list(d)[:4] == ["verdict", "accused", "alpha", "test"] and d["p"] == own.pvalue
    assert d["paper_rule"]["label"] == "for comparison, no false-positive guarantee"
    assert d["pools"]["digest"] == pools.digest and d["pools"]["n_P"] == 1000
    text = own.report()
    assert text.startswith("verdict: accused at alpha = 0.01 by rank+tail")
    assert (text.index("verdict") < text.index("closed form") < text.index("permutation")
            < text.index("no false-positive guarantee") < text.index("Eq. 15"))
    assert "{" not in text and "warning" not in text  # every number formatted; 100 revealed per class

    # a checkpoint path and a pools file give the same numbers
    ckpt = save_checkpoint(tmp_path / "owner.pt", models["owner"], {"model": "mlp"})
    pf = O.save_pools(tmp_path / "pools.npz", pools)
    again = O.verify_ownership(str(ckpt), str(pf), B=199, trials=20)
    assert again.closed_form.log10_pvalue == pytest.approx(own.closed_form.log10_pvalue, rel=1e-6)
    with pytest.raises(ValueError, match="cifar10 images, but the suspect is built for mnist"):
        O.verify_ownership(str(ckpt), O.OwnerPools("cifar10", pools.classes, pools.P_x,
                                                   pools.P_y, pools.Q_x, pools.Q_y), B=9)

    # a black-box API that returns probabilities: detected, same closed-form p-value
    api = lambda x: torch.softmax(models["owner"](x), 1).numpy()  # noqa: E731
    bb = O.verify_ownership(api, pools, B=199, trials=20)
    assert bb.output == "probabilities"
    assert bb.closed_form.log10_pvalue == pytest.approx(own.closed_form.log10_pvalue, rel=1e-3)


def test_bad_suspects(small_world):
    models, pools = small_world
    with pytest.raises(ValueError, match=r"returned shape \(.*, 9\).*must return"):
        O.verify_ownership(lambda x: np.zeros((len(x), 9)), pools, B=9)
    with pytest.raises(ValueError, match="NaN or infinite"):
        O.verify_ownership(lambda x: np.full((len(x), 10), np.nan), pools, B=9)
    with pytest.raises(ValueError, match="suspect must be a checkpoint path"):
        O.verify_ownership(42, pools, B=9)
    with pytest.raises(ValueError, match="unknown output"):
        O.verify_ownership(models["owner"], pools, output="scores")
    with pytest.raises(FileNotFoundError, match="no pools file"):
        O.verify_ownership(models["owner"], "absent.npz")


def test_cli_verify_orders_owner_before_innocent(small_world, tmp_path, capsys):
    import json

    from pmi_tutorial import cli
    from pmi_tutorial.checkpoint import save_checkpoint

    models, pools = small_world
    pf = O.save_pools(tmp_path / "pools.npz", pools)
    log10 = {}
    for name, model in models.items():
        ckpt = save_checkpoint(tmp_path / f"{name}.pt", model, {"model": "mlp", "dataset": "mnist"})
        out_json = tmp_path / f"{name}.json"
        assert cli.main(["verify", "--checkpoint", str(ckpt), "--pools", str(pf), "--B", "199",
                         "--trials", "10", "--json", str(out_json)]) == 0
        text = capsys.readouterr().out
        assert text.index("verdict: ") < text.index("closed form") < text.index("no false-positive")
        saved = json.loads(out_json.read_text())
        log10[name] = saved["calibrated"]["closed_form"]["log10_pvalue"]
        assert saved["verdict"] == ("accused" if name == "owner" else "not accused")
        assert f"log10 p = {log10[name]:.2f}" in text
        assert saved["pools"]["digest"] == pools.digest
    assert log10["owner"] < -6 and log10["innocent"] > -3
    # bad inputs: one line on stderr, exit status 2
    assert cli.main(["verify", "--checkpoint", str(tmp_path / "owner.pt"), "--pools",
                     str(tmp_path / "absent.npz")]) == 2
    assert "no pools file" in capsys.readouterr().err
    c10 = O.save_pools(tmp_path / "c10.npz", O.OwnerPools("cifar10", pools.classes, pools.P_x,
                                                           pools.P_y, pools.Q_x, pools.Q_y))
    assert cli.main(["verify", "--checkpoint", str(tmp_path / "owner.pt"), "--pools", str(c10),
                     "--B", "199"]) == 2
    assert "suspect is built for mnist" in capsys.readouterr().err


def test_logsumexp_against_scipy_and_at_the_edges():
    from scipy.special import logsumexp as scipy_lse

    from pmi_tutorial.stats.closed_form import logsumexp

    rng = np.random.default_rng(0)
    for scale in (1.0, 1e3, 1e300):
        a = rng.normal(size=50) * scale
        assert logsumexp(a) == pytest.approx(float(scipy_lse(a)), rel=1e-14)
    assert logsumexp([-1e4, -1e4]) == pytest.approx(-1e4 + math.log(2), rel=1e-15)  # exp underflows
    assert logsumexp([]) == -math.inf
    assert logsumexp([-math.inf, -math.inf]) == -math.inf
    assert logsumexp([math.inf, 0.0]) == math.inf
