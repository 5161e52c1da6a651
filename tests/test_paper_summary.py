"""Tests for pmi_tutorial.paper_summary on synthetic inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as sps

from pmi_tutorial.experiments import paper_summary as S
from pmi_tutorial.experiments.paper_study import TINY
from pmi_tutorial.stats import clopper_pearson


@pytest.mark.parametrize("k,n", [(0, 50), (7, 20), (20, 20)])
def test_rate_carries_the_clopper_pearson_interval(k, n):
    ref = sps.binomtest(k, n).proportion_ci(0.95, method="exact")
    r = S.rate([True] * k + [False] * (n - k))
    assert r["rate"] == k / n and r["ci"] == pytest.approx([ref.low, ref.high], abs=1e-10)


def test_rate_bad_input():
    with pytest.raises(ValueError, match="no models"):
        S.rate([])


def test_ks_and_shared_luck():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=400)
    assert S.ks_uniform(p)["pvalue"] == pytest.approx(sps.kstest(p, "uniform").pvalue)
    indep = S.shared_luck(p)
    assert abs(indep["mean_z_in_se"]) < 3.5 and indep["sd_z"] == pytest.approx(1, abs=0.15)
    # one shared draw: z = common + individual -> the mean moves by many standard errors
    z = 1.0 + 0.5 * rng.normal(size=400)
    shared = S.shared_luck(sps.norm.sf(z))
    assert shared["mean_z"] == pytest.approx(1.0, abs=0.1) and shared["mean_z_in_se"] > 10
    assert shared["sd_z"] == pytest.approx(0.5, abs=0.08)
    assert S.ks_uniform(sps.norm.sf(z))["pvalue"] < 1e-6


def test_ks_tells_conservative_from_liberal():
    rng = np.random.default_rng(1)
    u = rng.uniform(size=300)
    conservative, liberal = np.sqrt(u), u ** 2  # P(p <= a) = a^2 < a, and sqrt(a) > a
    c, lib, ok = S.ks_uniform(conservative), S.ks_uniform(liberal), S.ks_uniform(u)
    assert c["pvalue"] < 1e-6 and c["pvalue_liberal"] > 0.5  # not uniform, but valid
    assert lib["pvalue"] < 1e-6 and lib["pvalue_liberal"] < 1e-6  # accuses innocents too often
    assert ok["pvalue_liberal"] > 0.01
    # the one-sided statistic by brute force: max_i (i / n - p_(i))
    ps = np.sort(liberal)
    d = np.max(np.arange(1, ps.size + 1) / ps.size - ps)
    assert lib["pvalue_liberal"] == pytest.approx(sps.ksone.sf(d, ps.size), rel=1e-6)


def _cell(log10_p, directional, acc):
    feats = {f: {"acc": acc, "calibrated": directional, "outlier": directional}
             for f in ("logits", "logprob", "prob")}
    return {"closed_form": {"log10_p": log10_p, "z": 0.0, "fisher_log10_p": log10_p},
            "directional": directional, "features": feats}


def _records(rng):
    recs = []
    for k in range(40):  # innocents: uniform p-values
        for draw in ("own", "owner"):
            p = float(rng.uniform(0.001, 1))
            recs.append({"arch": "mlp", "kind": "innocent", "index": k, "draw": draw, "revealed": {
                str(n): _cell(math.log10(p), p, [0.4] * 10) for n in (10, 30)}})
    for k in range(3):
        for kind, lp in (("owner", -40.0), ("prune90", -1.0)):
            recs.append({"arch": "mlp", "kind": kind, "index": k, "draw": "owner", "revealed": {
                "10": _cell(lp / 4, 10 ** (lp / 4), [0.6] * 10),
                "30": _cell(lp, max(10 ** lp, 1e-3), [0.6] * 10)}})
    return recs


def test_summarize_on_synthetic_records():
    rng = np.random.default_rng(1)
    recs = _records(rng)
    out = S.summarize(recs, TINY)["mlp"]
    assert out["n_innocent"] == 40 and out["n_owners"] == 3
    cf = out["statistics"]["closed_form"]
    own = [r for r in recs if r["kind"] == "innocent" and r["draw"] == "own"]
    k = sum(10 ** r["revealed"]["30"]["closed_form"]["log10_p"] <= 0.05 for r in own)
    assert cf["innocent_own_draw"]["fpr_a0.05"]["k"] == k
    assert cf["verdicts"]["owner"]["a0.01"]["rate"] == 1.0
    assert cf["verdicts"]["prune90"]["a0.01"]["rate"] == 0.0  # p = 0.1
    assert cf["separation"]["auc"] > 0.5
    rule = out["paper_rule"]["logits"]
    assert rule["innocent_owner_draw"]["fpr_rho0.1"]["rate"] == 0.0  # 0.4 - 1/3 < 0.1
    assert rule["verdicts"]["owner"]["rho0.2"]["rate"] == 1.0  # 0.6 - 1/3 >= 0.2
    curve = out["curves"]["closed_form"]["owner"]
    assert curve["10"]["median_log10_p"] == pytest.approx(-10) and curve["30"]["median_log10_p"] == -40


def test_tables_and_figure_show_the_summary():
    import matplotlib

    matplotlib.use("Agg")
    rng = np.random.default_rng(1)
    summ = S.summarize(_records(rng), TINY)
    table = S.calibration_table(summ, "mlp")
    cf = summ["mlp"]["statistics"]["closed_form"]["innocent_own_draw"]["fpr_a0.05"]
    assert f"| closed form (Mann-Whitney, Stouffer) | {cf['k']}/40 [" in table
    assert "paper's rule rho = 0.1 (logits), uncalibrated | 0/40" in table
    v = S.verdict_table(summ, "mlp")
    assert "| owner (no attack) | 3/3 (median log10 p -40.0)" in v and "| pruning 90% | 0/3" in v
    ax = S.plot_revealed(summ, "mlp", "closed_form")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["owner"].get_ydata()) == [-10.0, -40.0]
    # a statistic the file does not hold: an empty panel, no error
    assert not S.plot_revealed(summ, "mlp", "closed_form_tail").get_lines()[:-1]


def test_calibration_verdicts_tell_liberal_conservative_and_calibrated_apart():
    rng = np.random.default_rng(3)
    recs = _records(rng)
    for r in recs:
        if r["kind"] == "innocent" and r["draw"] == "own":
            for cell in r["revealed"].values():
                p = 10 ** cell["closed_form"]["log10_p"]
                cell["directional"] = p ** 3  # accuses innocents too often
                cell["features"]["logits"]["calibrated"] = p ** 0.1  # piles up near 1
    summ = S.summarize(recs, TINY)
    v = S.calibration_verdicts(summ, "mlp")
    assert v["closed_form"] == {"10": "calibrated", "30": "calibrated"}
    assert v["directional"] == {"10": "too liberal", "30": "too liberal"}
    assert v["calibrated/logits"] == {"10": "conservative", "30": "conservative"}
    own = [10 ** r["revealed"]["10"]["closed_form"]["log10_p"] for r in recs
           if r["kind"] == "innocent" and r["draw"] == "own"]
    ks = summ["mlp"]["calibration_by_revealed"]["closed_form"]["10"]
    assert ks["pvalue"] == pytest.approx(sps.kstest(own, "uniform").pvalue) and ks["n"] == 40


def test_headline_table_puts_the_paper_rule_beside_the_calibrated_tests():
    rng = np.random.default_rng(1)
    recs = _records(rng)
    summ = S.summarize(recs, TINY)
    lines = S.headline_table(summ).splitlines()
    rule = next(line for line in lines if "paper's rule" in line)
    # acc 0.4 on innocents: 0.4 - 1/3 < 0.1, never accused; 0.6 on owner-derived: always
    assert "| 0/40 [0.00, 0.09] | 0/40 [0.00, 0.09] | 3/3 [0.29, 1.00] | 3/3 [0.29, 1.00] |" in rule
    cf = next(line for line in lines if "Mann-Whitney" in line)
    own = [r for r in recs if r["kind"] == "innocent" and r["draw"] == "own"]
    k = sum(10 ** r["revealed"]["30"]["closed_form"]["log10_p"] <= 0.05 for r in own)
    lo, hi = clopper_pearson(k, 40)
    # owners at p = 1e-40 detected; pruned copies at p = 0.1 not
    assert f"| {k}/40 [{lo:.2f}, {hi:.2f}] |" in cf and cf.endswith("| 3/3 [0.29, 1.00] | 0/3 [0.00, 0.71] |")


def test_uniform_order_band_covers_sorted_uniform_samples():
    # independent check: simulate sorted U(0, 1) samples and count how often each order
    # statistic falls inside its band; a 95% pointwise band holds it ~95% of the time
    rng = np.random.default_rng(0)
    n, reps = 7, 40000
    lo, hi = S.uniform_order_band(n)
    u = np.sort(rng.uniform(size=(reps, n)), axis=1)
    inside = ((u >= lo) & (u <= hi)).mean(axis=0)
    assert np.all(np.abs(inside - 0.95) < 0.006)
    assert np.all(lo < np.arange(1, n + 1) / (n + 1)) and np.all(hi > np.arange(1, n + 1) / (n + 1))
    with pytest.raises(ValueError, match="n"):
        S.uniform_order_band(0)


def test_innocent_pvalues_and_qq_plot_read_the_records():
    import matplotlib

    matplotlib.use("Agg")
    recs = _records(np.random.default_rng(2))
    p = S.innocent_pvalues(recs, "mlp", "closed_form", 30, "own")
    own = sorted(10 ** r["revealed"]["30"]["closed_form"]["log10_p"] for r in recs
                 if r["kind"] == "innocent" and r["draw"] == "own")
    np.testing.assert_allclose(p, own)
    assert S.innocent_pvalues(recs, "lenet5", "closed_form", 30, "own").size == 0
    with pytest.raises(ValueError, match="draw"):
        S.innocent_pvalues(recs, "mlp", "closed_form", 30, "mine")
    ax = S.plot_qq(recs, "mlp", "closed_form", 30)
    pts = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_allclose(pts["own draws (40)"].get_ydata(), own)
    np.testing.assert_allclose(pts["own draws (40)"].get_xdata(), np.arange(1, 41) / 41)


def test_paper_rule_table_and_acc_histogram():
    import matplotlib

    matplotlib.use("Agg")
    recs = _records(np.random.default_rng(1))
    summ = S.summarize(recs, TINY)
    table = S.paper_rule_table(summ, "mlp")
    # innocents at acc 0.4: never accused at rho 0.1 (0.4 - 1/3 < 0.1); owner-derived at 0.6:
    # claimed at both rho (3 owners, 3 pruned copies)
    assert "| logits | 0.1 | 0/40 [0.00, 0.09] | 0/40 [0.00, 0.09] | 3/3 [0.29, 1.00] | 3/3 [0.29, 1.00] |" in table
    assert "| prob | 0.2 |" in table
    ax = S.plot_acc_opt(recs, "mlp", 30, m=3)
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    assert heights == [40, 6]
