"""Tests for pmi_tutorial.verification and pmi_tutorial.suspects: the verdict, its evidence
checked against SciPy, every form of suspect, and bad suspects refused before any work.

The suspects are linear models on synthetic MNIST-shaped pools: pixel r+1 of an image of class
r carries the class, a little stronger for the revealed members (the "owner"), or equally
strong for both pools (the "innocent"): seconds on a CPU, no training.
"""

from __future__ import annotations

import math
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.stats as sps
from scipy.special import logsumexp as sps_logsumexp
import torch

from pmi_tutorial import pools_file as PF
from pmi_tutorial import verification as VF

CLASSES = (0, 1, 2)


def synthetic_pools(n_P=150, n_Q=300, member_boost=0.6, seed=0, **settings) -> PF.OwnerPools:
    rng = np.random.default_rng(seed)
    P_y, Q_y = np.repeat(CLASSES, n_P), np.repeat(CLASSES, n_Q)
    P_x = rng.normal(size=(len(P_y), 1, 28, 28)).astype(np.float32)
    Q_x = rng.normal(size=(len(Q_y), 1, 28, 28)).astype(np.float32)
    P_x[np.arange(len(P_y)), 0, 0, P_y + 1] += 2.0 + member_boost
    Q_x[np.arange(len(Q_y)), 0, 0, Q_y + 1] += 2.0
    return PF.OwnerPools("mnist", CLASSES, P_x, P_y, Q_x, Q_y, **settings)


def linear_suspect(seed=0) -> torch.nn.Module:
    """logit_j = 2 x[0, 0, j+1] + small random weights on every pixel."""
    torch.manual_seed(seed)
    lin = torch.nn.Linear(784, 10)
    with torch.no_grad():
        lin.weight.mul_(0.1)
        for j in range(10):
            lin.weight[j, j + 1] += 2.0
    return torch.nn.Sequential(torch.nn.Flatten(), lin).eval()


@pytest.fixture(scope="module")
def world():
    return {"owner": synthetic_pools(), "null": synthetic_pools(member_boost=0.0, seed=3),
            "model": linear_suspect()}


def _logprob_scores(model, pools):
    with torch.no_grad():
        lp = {k: torch.log_softmax(model(torch.from_numpy(x)), 1).double().numpy()
              for k, x in (("P", pools.P_x), ("Q", pools.Q_x))}
    return {r: (lp["P"][pools.P_y == r, r], lp["Q"][pools.Q_y == r, r]) for r in pools.classes}


def _logodds_scores(model, pools):
    """log p_r - log(1 - p_r), here as z_r - log sum_{j != r} exp z_j by masking in torch."""
    out = {}
    with torch.no_grad():
        for k, x, y in (("P", pools.P_x, pools.P_y), ("Q", pools.Q_x, pools.Q_y)):
            z = model(torch.from_numpy(x)).double()
            mask = torch.nn.functional.one_hot(torch.from_numpy(y), z.shape[1]).bool()
            zr = z[mask]
            rest = torch.logsumexp(z.masked_fill(mask, float("-inf")), 1)
            out[k] = ((zr - rest).numpy(), y)
    return {r: (out["P"][0][out["P"][1] == r], out["Q"][0][out["Q"][1] == r])
            for r in pools.classes}


def _tail_pvalue(scores, share):
    """The total count of members among each class's least confident share, its exact law the
    convolution of SciPy's hypergeometric laws."""
    law, total = np.ones(1), 0
    for sP, sQ in scores.values():
        s = np.concatenate([sP, sQ])
        k = math.ceil(share * len(s))
        low = s <= np.sort(s)[k - 1]
        total += int(low[:len(sP)].sum())
        law = np.convolve(law, sps.hypergeom(len(s), int(low.sum()), len(sP)).pmf(
            np.arange(len(sP) + 1)))
    return law[:total + 1].sum()


def test_the_paper_rule_on_the_draws_bound_in_the_pools(world):
    """verify's paper's rule on the pools' draws equals fingerprint.run_on_features drawing
    them itself, on the same features; other settings draw anew."""
    from pmi_tutorial import fingerprint

    model, pools = world["model"], world["owner"]
    assert pools.rule == dict(PF.RULE)
    bound = VF.verify_ownership(model, pools).paper_rule
    fresh = VF.verify_ownership(model, synthetic_pools(rule=None)).paper_rule
    with torch.no_grad():
        feats = {k: model(torch.from_numpy(x)).numpy() for k, x in (("P", pools.P_x), ("Q", pools.Q_x))}
    want = fingerprint.run_on_features(
        {r: (feats["P"][pools.P_y == r], feats["Q"][pools.Q_y == r]) for r in pools.classes},
        3, 100, trials=100, seed=0)
    assert bound["acc_by_class"] == fresh["acc_by_class"] == {
        str(r): a for r, a in want.acc_by_class.items()}
    assert (bound["draws"], fresh["draws"]) == ("bound in the pools", "drawn with seed 0")
    other = VF.verify_ownership(model, pools, trials=10, seed=1).paper_rule
    assert other["draws"] == "drawn with seed 1" and other["trials"] == 10


def test_the_default_is_the_registered_test():
    """New pools carry the confirmatory study's registered test: rank+tail (Bonferroni) on the
    log-odds, tail share 2%, alpha 0.01 (registrations/confirmatory.json)."""
    import json
    from pathlib import Path

    reg = json.loads((Path(__file__).parents[1] / "registrations" / "confirmatory.json").read_text())
    for cfg in reg["configs"].values():
        pools = synthetic_pools()
        assert (pools.test, pools.score, pools.combine) == (cfg["test"], cfg["confidence"],
                                                            cfg["combine"])
        assert (pools.tail, pools.alpha) == (cfg["tail"], cfg["alpha"]) == (0.02, reg["alpha"])


def test_logprob_pools_rank_log_probabilities(world):
    model = world["model"]
    pools = synthetic_pools(score="logprob", tail=0.05)
    res = VF.verify_ownership(model, pools, paper_rule=False)
    scores = _logprob_scores(model, pools)
    p_cls = [sps.mannwhitneyu(sP, sQ, alternative="greater", method="asymptotic").pvalue
             for sP, sQ in scores.values()]
    assert res.closed_form.pvalue == pytest.approx(
        sps.combine_pvalues(p_cls, method="stouffer").pvalue, rel=1e-6)
    assert res.closed_form_tail.pvalue == pytest.approx(_tail_pvalue(scores, 0.05), rel=1e-6)
    assert res.pools["score"] == "logprob" and "log-probability of the true class" in res.report()


def test_verdict_and_evidence_against_scipy(world):
    model, pools = world["model"], world["owner"]
    res = VF.verify_ownership(model, pools, trials=10)
    scores = _logodds_scores(model, pools)
    # rank: SciPy's one-sided Mann-Whitney U per class, Stouffer's combination
    p_cls = [sps.mannwhitneyu(sP, sQ, alternative="greater", method="asymptotic").pvalue
             for sP, sQ in scores.values()]
    want_rank = sps.combine_pvalues(p_cls, method="stouffer").pvalue
    assert res.closed_form.pvalue == pytest.approx(want_rank, rel=1e-6)
    # tail: the total count of members among each class's 2% least confident
    want_tail = _tail_pvalue(scores, 0.02)
    assert res.closed_form_tail.pvalue == pytest.approx(want_tail, rel=1e-6)
    # the verdict: rank+tail (Bonferroni) at alpha = 0.01, the pools' defaults
    want = min(1.0, 2 * min(want_rank, want_tail))
    assert res.test == "rank+tail" and res.alpha == 0.01
    assert res.pvalue == pytest.approx(want, rel=1e-6)
    assert res.accused == (want <= 0.01) and res.verdict == "accused"
    d = res.to_dict()
    assert (d["verdict"], d["alpha"], d["test"]) == ("accused", 0.01, "rank+tail")
    assert d["p"] == pytest.approx(want, rel=1e-6)
    text = res.report()
    assert text.splitlines()[0] == f"verdict: {res.verdict_line()}"
    assert "accused at alpha = 0.01 by rank+tail" in text.splitlines()[0]
    assert text.index("evidence") < text.index("for comparison, no false-positive guarantee")
    assert "Eq. 13-14" in text and "Eq. 15: mean acc_r" in text and "warning" not in text


def test_the_pools_fix_test_and_alpha(world):
    model = world["model"]
    res = {}
    for test in PF.TESTS:
        pools = synthetic_pools(test=test, alpha=0.2)
        res[test] = VF.verify_ownership(model, pools, paper_rule=False)
        r = res[test]
        assert r.test == test and r.alpha == 0.2 and r.paper_rule is None
        assert r.accused == (r.pvalue <= 0.2)
    assert res["rank"].pvalue == pytest.approx(res["rank"].closed_form.pvalue)
    assert res["tail"].pvalue == pytest.approx(res["tail"].closed_form_tail.pvalue)
    assert res["permutation"].pvalue == res["permutation"].permutation["pvalue"]
    # under the null (P' and Q alike for the suspect) the verdict is "not accused" here
    null = VF.verify_ownership(model, world["null"], trials=10)
    assert null.verdict == "not accused" and null.pvalue > 0.01
    assert "not evidence of innocence" in null.report()


def test_log_probabilities_equal_scipy():
    from scipy.special import log_softmax

    z = np.random.default_rng(0).normal(scale=30.0, size=(50, 10))
    assert np.allclose(VF.to_log_probabilities(z, "logits"), log_softmax(z, axis=1), atol=1e-12)
    p = np.exp(log_softmax(z, axis=1))
    assert np.isfinite(VF.to_log_probabilities(p, "probabilities")).all()


def test_a_small_revealed_pool_is_flagged(world):
    res = VF.verify_ownership(world["model"], synthetic_pools(n_P=30), B=99, paper_rule=False)
    assert res.small_revealed == 30 and res.to_dict()["small_revealed"] == 30
    assert "warning: only 30 revealed members in a class" in res.report()


def test_bad_inputs_are_refused_before_the_suspect_sees_an_image(world):
    calls = []

    def api(x):
        calls.append(len(x))
        return world["model"](x)

    pools = world["owner"]
    for kwargs, words in [
        (dict(B=50_000), "lower B to <= 449"), (dict(classes=[7]), "class 7 is not in the pools"),
        (dict(expect_digest="0" * 64), "not the registered"),
        (dict(expect_digest="xyz"), "64 hexadecimal"), (dict(output="scores"), "unknown output"),
        (dict(m=1), "m must be"),
    ]:
        with pytest.raises(ValueError, match=words):
            VF.verify_ownership(api, pools, **kwargs)
    assert calls == []
    strict = synthetic_pools(test="permutation", B=99)
    with pytest.raises(ValueError, match="fix the permutation test with B = 99"):
        VF.verify_ownership(api, strict, B=199)
    assert calls == []


def test_probabilities_handled_labels_refused(world):
    model, pools = world["model"], world["owner"]
    ref = VF.verify_ownership(model, pools, paper_rule=False)
    probs = VF.verify_ownership(lambda x: torch.softmax(model(x), 1).numpy(), pools,
                                paper_rule=False)
    assert probs.output == "probabilities"
    assert probs.closed_form.log10_pvalue == pytest.approx(ref.closed_form.log10_pvalue, rel=1e-3)
    with pytest.raises(ValueError, match=r"one value per image \(shape \(.*,\)\): labels only"):
        VF.verify_ownership(lambda x: model(x).argmax(1), pools)
    with pytest.raises(ValueError, match="labels only"):
        VF.verify_ownership(lambda x: model(x).argmax(1, keepdim=True), pools)
    with pytest.raises(ValueError, match="one-hot rows"):
        VF.verify_ownership(lambda x: torch.nn.functional.one_hot(model(x).argmax(1), 10), pools)
    with pytest.raises(ValueError, match=r"the suspect failed on a batch of images of shape "
                                         r"\(.*, 1, 28, 28\) \(ValueError: the model cannot"):
        VF.verify_ownership(torch.nn.Linear(3, 10), pools)


def test_torchscript_file_gives_the_model_s_numbers(world, tmp_path):
    model, pools = world["model"], world["owner"]
    path = tmp_path / "suspect.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still supported
        torch.jit.save(torch.jit.trace(model, torch.zeros(2, 1, 28, 28)), str(path))
    ref = VF.verify_ownership(model, pools, trials=10)
    ts = VF.verify_ownership(str(path), pools, trials=10)
    assert ts.suspect.startswith("TorchScript") and ts.output == "logits"
    assert ts.log10_p() == pytest.approx(ref.log10_p(), rel=1e-6)
    assert ts.paper_rule["acc_by_class"] == ref.paper_rule["acc_by_class"]


@pytest.mark.parametrize("dynamic", [True, False])
def test_onnx_file_gives_the_model_s_numbers(world, tmp_path, dynamic):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model, pools = world["model"], world["owner"]
    path = tmp_path / "suspect.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(7, 1, 28, 28),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "b"}} if dynamic else None)
    ref = VF.verify_ownership(model, pools, paper_rule=False)
    onnx = VF.verify_ownership(str(path), pools, paper_rule=False)  # fixed batch 7: padded
    assert onnx.suspect.startswith("ONNX") and onnx.output == "logits"
    assert onnx.log10_p() == pytest.approx(ref.log10_p(), rel=1e-4)


def test_onnx_without_onnxruntime_says_how_to_install(world, tmp_path, monkeypatch):
    path = tmp_path / "suspect.onnx"
    path.write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(ValueError, match=r"needs onnxruntime: pip install 'pmi_tutorial\[onnx\]'"):
        VF.verify_ownership(str(path), world["owner"])


def test_no_import_cycle():
    code = ("import sys, pmi_tutorial.fingerprint as f; "
            "assert 'pmi_tutorial.ownership' not in sys.modules; "
            "import pmi_tutorial.stats, pmi_tutorial.ownership as o; "
            "assert 'pmi_tutorial.verification' not in sys.modules; "
            "assert o.verify_ownership is __import__('pmi_tutorial.verification', "
            "fromlist=['x']).verify_ownership; "
            "from pmi_tutorial.ownership import OwnerPools, save_pools, load_pools, verify_ownership")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_log_odds_with_a_class_per_row_are_the_log_odds_row_by_row():
    from pmi_tutorial import stats

    rng = np.random.default_rng(0)
    Z = rng.normal(scale=8.0, size=(500, 10))
    Z[:50, 3] += 60.0  # margins past 37, where log-softmax rounds to 0
    y = rng.integers(0, 10, size=500)
    y[:50] = 3
    got = stats.log_odds(Z, y)
    want = np.array([stats.log_odds(Z[i:i + 1], int(y[i]))[0] for i in range(len(Z))])
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)  # round-off of the vector exp
    # and SciPy's logsumexp over the other classes, row by row
    ref = np.array([Z[i, y[i]] - sps_logsumexp(np.delete(Z[i], y[i])) for i in range(len(Z))])
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert len(np.unique(got[:50])) == 50  # no ties where log-softmax has them
    # log-probabilities give the same numbers
    lp = Z - np.log(np.exp(Z - Z.max(1, keepdims=True)).sum(1, keepdims=True)) - Z.max(1, keepdims=True)
    np.testing.assert_allclose(stats.log_odds(lp, y)[50:], got[50:], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("r", [10, -1, 2.0, "3", np.array([0, 11])])
def test_log_odds_refuses_classes_out_of_range(r):
    from pmi_tutorial import stats

    with pytest.raises(ValueError, match=r"r must be class indices in \[0, 10\)"):
        stats.log_odds(np.zeros((2, 10)), r)


def test_rows_by_class_are_the_rows_of_each_class_in_order():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 6, 500)
    y[y == 4] = 5  # class 4 absent
    rows = VF.rows_by_class(y, range(7))
    for r in range(7):
        np.testing.assert_array_equal(rows[r], np.flatnonzero(y == r))
