"""Tests for pmi_tutorial.experiments.forensics: the variant functions against direct
computations, the splits, the batched trials against the package's protocol, the comparison
with the paper, and the resumable runner (SIGKILL)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pmi_tutorial import fingerprint, mmd, pmi
from pmi_tutorial.clustering import agglomerative, final_clusters
from pmi_tutorial.experiments import forensics as F
from pmi_tutorial.models import build_model

ROOT = Path(__file__).resolve().parent.parent


def blocks(seed=0, m=4, n=12, c=5, shift=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n, c)) * rng.uniform(0.5, 3, size=c) + rng.normal(size=c)
    X[0] += shift
    return X


# ----------------------------------------------------------------------------- variants


def test_variant_names_and_validation():
    assert F.variant_name(F.BASELINE) == "baseline"
    v = F.Variant(features="log_probs", distance="mmd2")
    assert F.variant_name(v) == "features=log_probs+distance=mmd2"
    assert v.changes() == {"features": "log_probs", "distance": "mmd2"}
    assert "log-probabilities" in v.describe()
    with pytest.raises(ValueError, match="unknown features 'softmax'"):
        F.Variant(features="softmax")
    with pytest.raises(ValueError, match="train_seed"):
        F.Variant(train_seed=-1)
    singles = F.one_at_a_time()
    assert list(singles)[0] == "baseline"
    assert all(len(v.changes()) == 1 for k, v in singles.items() if k != "baseline")
    # every value of every open choice appears once
    assert len(singles) == 1 + sum(len(a) - 1 for a in (F.FEATURES, F.NORMALIZATIONS, F.DISTANCES,
                                                        F.KEPT, F.DECISIONS, F.TIES, F.DRAWS,
                                                        F.SPLITS)) + 1


# ----------------------------------------------------------------------------- normalization


def test_joint_normalization_is_eq_5_6():
    X = blocks(1)
    np.testing.assert_allclose(F.normalize_blocks(X, "joint").numpy(), pmi.normalize_features(X), atol=1e-12)
    Z = F.normalize_blocks(X, "joint").numpy().reshape(-1, X.shape[-1])
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose((Z ** 2).mean(0), 1, atol=1e-12)


def test_block_normalization_zero_mean_per_block_and_mmd_is_the_correction_term():
    X = blocks(2, shift=3.0)  # block 0 clearly shifted: block normalization removes it
    Z = F.normalize_blocks(X, "block").numpy()
    np.testing.assert_allclose(Z.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(1), 1, atol=1e-12)
    n = X.shape[1]
    D2 = F.block_distances(Z, "mmd2").numpy()
    for a in range(len(Z)):
        for b in range(len(Z)):
            if a != b:
                # ||S_a - S_b|| = 0: only the estimator's correction term is left
                corr = -((Z[a] - Z[b]) ** 2).sum() / (n * (n - 1))
                assert D2[a, b] == pytest.approx(corr, abs=1e-12)
                assert D2[a, b] == pytest.approx(mmd.mmd2_unbiased(Z[a], Z[b]), abs=1e-12)
    np.testing.assert_allclose(F.block_distances(Z, "biased").numpy(), 0, atol=1e-12)


def test_pool_and_none_normalization():
    X = blocks(3)
    mean, std = np.array([1.0, -2, 0, 3, 0.5]), np.array([2.0, 1, 0.5, 4, 1])
    np.testing.assert_allclose(F.normalize_blocks(X, "pool", mean, std).numpy(), (X - mean) / std)
    np.testing.assert_array_equal(F.normalize_blocks(X, "none").numpy(), X)
    with pytest.raises(ValueError, match="pool_mean"):
        F.normalize_blocks(X, "pool")
    with pytest.raises(ValueError, match="unknown normalization"):
        F.normalize_blocks(X, "zscore")


def test_constant_component_becomes_zero():
    X = blocks(4)
    X[..., 2] = 7.0
    for how in ("joint", "block"):
        Z = F.normalize_blocks(X, how).numpy()
        assert np.isfinite(Z).all() and (Z[..., 2] == 0).all()
    Z = F.normalize_blocks(X, "pool", X.reshape(-1, 5).mean(0), X.reshape(-1, 5).std(0)).numpy()
    assert np.isfinite(Z).all() and (Z[..., 2] == 0).all()


# ----------------------------------------------------------------------------- distances


def brute_unpaired(X, Y):
    n = len(X)
    Kxx, Kyy, Kxy = X @ X.T, Y @ Y.T, X @ Y.T
    off = ~np.eye(n, dtype=bool)
    return Kxx[off].sum() / (n * (n - 1)) + Kyy[off].sum() / (n * (n - 1)) - 2 * Kxy.mean()


def test_distances_against_direct_computations():
    Z = blocks(5, m=4, n=9, c=3, shift=0.4)
    got = {how: F.block_distances(Z, how).numpy() for how in F.DISTANCES}
    for a in range(4):
        for b in range(4):
            if a == b:
                for how in F.DISTANCES:
                    assert got[how][a, b] == 0.0
                continue
            u = mmd.mmd2_unbiased(Z[a], Z[b])  # Eq. 10-11, brute-force-tested in test_mmd
            assert got["mmd2"][a, b] == pytest.approx(u, abs=1e-10)
            assert got["sqrt"][a, b] == pytest.approx(np.sqrt(max(u, 0)), abs=1e-10)
            assert got["abs"][a, b] == pytest.approx(np.sqrt(abs(u)), abs=1e-10)
            assert got["biased"][a, b] == pytest.approx(mmd.mmd2_biased(Z[a], Z[b]), abs=1e-10)
            assert got["unpaired"][a, b] == pytest.approx(brute_unpaired(Z[a], Z[b]), abs=1e-10)
    # the paired estimate depends on the order of the rows, the unpaired one does not
    perm = Z.copy()
    perm[1] = perm[1][::-1]
    assert F.block_distances(perm, "unpaired").numpy()[0, 1] == pytest.approx(got["unpaired"][0, 1])
    assert F.block_distances(perm, "mmd2").numpy()[0, 1] != pytest.approx(got["mmd2"][0, 1])
    with pytest.raises(ValueError, match="unknown distance"):
        F.block_distances(Z, "l2")


def test_distances_batched_over_trials():
    Z = np.stack([blocks(s, m=3, n=6, c=2) for s in range(4)])
    D = F.block_distances(Z, "sqrt").numpy()
    for k in range(4):
        np.testing.assert_allclose(D[k], mmd.pairwise_mmd(Z[k]), atol=1e-12)


# ----------------------------------------------------------------------------- decisions


@pytest.mark.parametrize("decision", ["single", "complete", "average"])
@pytest.mark.parametrize("m", [3, 4, 5, 6])
def test_linkage_guesses_match_algorithm_1(decision, m):
    rng = np.random.default_rng(m)
    t = 60
    pts = rng.normal(size=(t, m, 3))
    D = np.sqrt(((pts[:, :, None] - pts[:, None]) ** 2).sum(-1))
    u = rng.random(t)
    got = F.linkage_guesses(D, u, decision)
    for k in range(t):
        G1, G2 = final_clusters(agglomerative(D[k], linkage=decision))
        assert got[k] == pmi.guess_from_clusters(G1, G2, u[k])


def test_tie_rules_and_outlier():
    # m = 4: {0, 1} and {2, 3} are tight pairs, the two pairs far apart: final clusters 2 + 2
    D = np.array([[0, 1, 9, 9], [1, 0, 9, 9], [9, 9, 0, 2], [9, 9, 2, 0.0]])[None]
    first = {int(F.linkage_guesses(D, [u], "single", "first")[0]) for u in np.linspace(0, 0.99, 20)}
    second = {int(F.linkage_guesses(D, [u], "single", "second")[0]) for u in np.linspace(0, 0.99, 20)}
    both = {int(F.linkage_guesses(D, [u], "single", "both")[0]) for u in np.linspace(0, 0.99, 20)}
    assert both == {0, 1, 2, 3}
    assert {frozenset(first), frozenset(second)} == {frozenset({0, 1}), frozenset({2, 3})}
    rng = np.random.default_rng(0)
    R = rng.random((30, 5, 5))
    R = R + R.transpose(0, 2, 1)
    R[:, range(5), range(5)] = 0
    np.testing.assert_array_equal(F.linkage_guesses(R, rng.random(30), "outlier"),
                                  [int(np.argmax(r.sum(1))) for r in R])
    with pytest.raises(ValueError, match="unknown decision"):
        F.linkage_guesses(D, [0.5], "ward")


# ----------------------------------------------------------------------------- draws and trials


def test_draw_schemes():
    d = F.draw(30, 40, 4, 10, 50, seed=3, scheme="paper")
    e = fingerprint.draw_trials(30, 40, 4, 10, 50, seed=3)
    np.testing.assert_array_equal(d.nonmember, e.nonmember)
    o = F.draw(30, 25, 4, 10, 50, seed=3, scheme="overlap")  # |Q| < n(m-1): allowed here
    assert all(len(set(o.nonmember[k, j])) == 10 for k in range(50) for j in range(3))
    assert any(len(set(o.nonmember[k].ravel())) < 30 for k in range(50))  # blocks share samples
    r = F.draw(30, 40, 4, 10, 200, seed=3, scheme="replace")
    assert any(len(set(r.member[k])) < 10 for k in range(200))
    assert o.member.max() < 30 and o.nonmember.max() < 25
    with pytest.raises(ValueError, match="unknown draw scheme"):
        F.draw(30, 40, 4, 10, 5, scheme="bootstrap")


def test_baseline_trials_equal_the_package_protocol():
    rng = np.random.default_rng(0)
    P, Q = rng.normal(size=(300, 6)) + 0.15, rng.normal(size=(700, 6))
    for m, n in ((3, 20), (4, 30), (5, 25)):
        draws = fingerprint.draw_trials(len(P), len(Q), m, n, 80, seed=[0, 3])
        ref = fingerprint.trial_guesses(P, Q, draws, method="reference")
        got, s = F.class_guesses(P, Q, m, n, 80, [0, 3])
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(s, draws.s)


def test_variant_trials_equal_a_direct_loop():
    rng = np.random.default_rng(1)
    P, Q = rng.normal(size=(200, 4)) + 0.2, rng.normal(size=(500, 4)) * 1.5
    v = F.Variant(normalization="pool", distance="unpaired", decision="average")
    got, s = F.class_guesses(P, Q, 4, 15, 40, 5, v)
    draws = fingerprint.draw_trials(len(P), len(Q), 4, 15, 40, seed=5)
    feats = np.concatenate([P, Q])
    mean, std = feats.mean(0), feats.std(0)
    idx = draws.layout(len(P))
    for k in range(40):
        Z = (feats[idx[k]] - mean) / std
        D = np.array([[0.0 if a == b else brute_unpaired(Z[a], Z[b]) for b in range(4)] for a in range(4)])
        # the estimate can be negative; Algorithm 1 with average linkage does not change
        # when a constant is added to every distance, and the reference wants them >= 0
        D = D + (np.abs(D).max() + 1) * (1 - np.eye(4))
        G1, G2 = final_clusters(agglomerative(D, linkage="average"))
        assert got[k] == pmi.guess_from_clusters(G1, G2, draws.u[k])


def test_cell_finds_a_strong_signal_and_chance_without_one():
    rng = np.random.default_rng(2)
    strong = {r: (rng.normal(size=(200, 3)) + 2.0, rng.normal(size=(400, 3))) for r in range(3)}
    c = F.cell(strong, 3, 20, 50, 0)
    assert c["acc_r_opt"] == 1.0 and c["mean_acc_r"] == 1.0
    none = {r: (rng.normal(size=(200, 3)), rng.normal(size=(400, 3))) for r in range(3)}
    accs = [F.cell(none, 3, 20, 100, s)["mean_acc_r"] for s in range(5)]
    # chance 1/3: five seeds x 300 trials, sd of the mean ~0.012
    assert abs(np.mean(accs) - 1 / 3) < 0.05


# ----------------------------------------------------------------------------- features


def test_feature_kinds_against_direct_computation():
    model = build_model("mlp", seed=0).eval()
    x = torch.randn(7, 1, 28, 28)
    k = F.feature_kinds(model, x, batch_size=3)
    lin1, lin2 = model.net[1], model.net[3]
    with torch.no_grad():
        hidden = torch.relu(x.flatten(1) @ lin1.weight.T + lin1.bias)
        logits = hidden @ lin2.weight.T + lin2.bias
    np.testing.assert_allclose(k["penultimate"], hidden.numpy(), atol=1e-5)
    np.testing.assert_allclose(k["logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(k["probs"].sum(1), 1, atol=1e-12)
    np.testing.assert_allclose(np.log(k["probs"]), k["log_probs"], atol=1e-10)
    lenet = build_model("lenet5", seed=0)
    assert F.feature_kinds(lenet, torch.randn(2, 1, 28, 28))["penultimate"].shape == (2, 84)
    with pytest.raises(ValueError, match="no nn.Linear"):
        F.feature_kinds(torch.nn.Sequential(torch.nn.Flatten()), x)


# ----------------------------------------------------------------------------- splits


def test_split_kinds():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=70_000)
    labels[:3] = 3  # uneven classes
    train, val = F.split_indices("mnist", "stratified", 0, labels)
    assert len(train) == 50_000 and len(val) == 20_000
    assert len(np.intersect1d(train, val)) == 0
    for r in range(10):
        share = (labels[train] == r).sum() / (labels == r).sum()
        assert abs(share * (labels == r).sum() - (labels == r).sum() * 5 / 7) < 1.0 + 1e-9
    train2, _ = F.split_indices("mnist", "stratified", 1, labels)
    assert not np.array_equal(train, train2)
    seq_train, seq_val = F.split_indices("mnist", "sequential")
    np.testing.assert_array_equal(seq_train, np.arange(50_000))
    np.testing.assert_array_equal(seq_val, np.arange(50_000, 70_000))
    from pmi_tutorial import data

    np.testing.assert_array_equal(F.split_indices("mnist", "random", 4)[0], data.split_indices("mnist", 4)[0])
    with pytest.raises(ValueError, match="needs the labels"):
        F.split_indices("mnist", "stratified")
    with pytest.raises(ValueError, match="unknown split"):
        F.split_indices("mnist", "by_writer")


# ----------------------------------------------------------------------------- comparison


def fake_result(values):
    """A result file with the 9 MLP cells of ``values`` {seed: (acc_opt, mean)} for variant v."""
    cells = []
    for seed, (opt, mean) in values.items():
        for m in (3, 4, 5):
            for n in (100, 200, 300):
                cells.append({"variant": "v", "model": "mlp", "seed": seed, "m": m, "n": n,
                              "r_opt": 6, "acc_r_opt": opt, "mean_acc_r": mean, "acc_by_class": {}})
    return {"variants": {"v": F.BASELINE.to_dict()}, "cells": cells}


def test_compare_by_hand():
    paper = F.paper_cells(("mlp",))
    res = fake_result({0: (0.5, 0.3), 1: (0.7, 0.4)})
    c = F.compare(res, "v", "mlp")
    assert c["cells"] == 9 and c["seeds"] == 2
    mad_opt = np.mean([abs(0.5 - p[1]) for p in paper.values()])
    mad_mean = np.mean([abs(0.3 - p[2]) for p in paper.values()])
    assert c["mad_acc_r_opt"] == pytest.approx(mad_opt)
    assert c["mad_mean_acc_r"] == pytest.approx(mad_mean)
    assert c["mad"] == pytest.approx((mad_opt + mad_mean) / 2)
    assert c["within_acc_r_opt"] == sum(0.5 <= p[1] <= 0.7 for p in paper.values())
    assert c["within_mean_acc_r"] == sum(0.3 <= p[2] <= 0.4 for p in paper.values())
    assert F.variant_table(res)[0]["variant"] == "v"
    assert "v" in F.format_variant_table(res)
    text = F.format_cells(res, "v", "mlp")
    assert "0.50 [0.50-0.70] (0.50)" in text  # m = 3, n = 100: paper 0.50
    assert F.compare(res, "other")["cells"] == 0


# ----------------------------------------------------------------------------- the runner


PROVIDER = textwrap.dedent("""
    import numpy as np
    def provider(model, variant):
        rng = np.random.default_rng(0)
        shift = 0.3 if variant.features == "log_probs" else 0.0
        return ({r: (rng.normal(size=(250, 3)) + shift, rng.normal(size=(700, 3))) for r in range(3)},
                {"synthetic": True})
""")


def run_small(out, **kw):
    ns = {}
    exec(PROVIDER, ns)
    variants = {"baseline": F.BASELINE, "features=log_probs": F.Variant(features="log_probs")}
    return F.run(out_dir=out, profile="paper", models=("mlp",), variants=variants, seeds=2, trials=10,
                 ms=[3], ns=[100, 200], provider=ns["provider"], log=lambda s: None,
                 search_fields=("distance",), **kw)


def test_run_writes_cells_and_searches(tmp_path):
    res = run_small(tmp_path)
    saved = json.loads((tmp_path / "forensics_paper.json").read_text())
    assert saved["format"] == "pmi-tutorial-forensics" and saved["provenance"]["command"]
    singles = [c for c in saved["cells"] if c["variant"] in ("baseline", "features=log_probs")]
    assert len(singles) == 2 * 2 * 2
    # the search started from the closer single and tried every distance on top of it
    assert saved["search"]["path"][0]["variant"] in ("baseline", "features=log_probs")
    assert len(saved["variants"]) == 2 + len(F.DISTANCES) - 1
    assert res["best"] in saved["variants"] and saved["search"]["path"]
    # the best combination was run with every seed
    assert {c["seed"] for c in saved["cells"] if c["variant"] == res["best"]} == {0, 1}
    # a rerun computes nothing new
    again = run_small(tmp_path)
    assert again["cells"] == saved["cells"]
    with pytest.raises(ValueError, match="other settings"):
        F.run(out_dir=tmp_path, profile="paper", seeds=3, trials=10, ms=[3], ns=[100, 200],
              provider=lambda m, v: None, log=lambda s: None)


def test_run_resumes_after_sigkill_without_changing_finished_cells(tmp_path):
    script = PROVIDER + textwrap.dedent(f"""
        import time
        from pmi_tutorial.experiments import forensics as F
        variants = {{"baseline": F.BASELINE, "features=log_probs": F.Variant(features="log_probs")}}
        def log(line):
            print(line, flush=True)
            time.sleep(0.25)
        F.run(out_dir={str(tmp_path)!r}, profile="paper", models=("mlp",), variants=variants, seeds=2,
              trials=10, ms=[3], ns=[100, 200], provider=provider, log=log, write_every=0.0,
              search_fields=("distance",))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    path = tmp_path / "forensics_paper.json"
    deadline = time.time() + 120
    partial = None
    while time.time() < deadline:
        if path.exists():
            try:
                partial = json.loads(path.read_text())
            except json.JSONDecodeError:  # never: the writes are atomic
                raise AssertionError("a half-written result file")
            if len(partial["cells"]) >= 3:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = json.loads(path.read_text())
    assert 3 <= len(partial["cells"]) < 8 + 8 + 2, "the run was killed in the middle"
    res = run_small(tmp_path)
    final = json.loads(path.read_text())
    assert final["cells"][:len(partial["cells"])] == partial["cells"]
    assert len(final["runs"]) == 2
    clean = run_small(tmp_path / "clean")
    key = lambda c: (c["variant"], c["seed"], c["m"], c["n"])  # noqa: E731
    strip = lambda c: {k: v for k, v in c.items() if k != "seconds"}  # noqa: E731
    assert sorted(map(key, final["cells"])) == sorted(map(key, clean["cells"]))
    assert {key(c): strip(c) for c in final["cells"]} == {key(c): strip(c) for c in clean["cells"]}
    assert res["best"] == clean["best"]


def test_cli_rejects_unknown_variants_and_seed(capsys, tmp_path):
    from pmi_tutorial.cli import main

    assert main(["reproduce", "forensics", "--variants", "features=softmax", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown forensics variant" in err and "features=log_probs" in err
    assert main(["reproduce", "forensics", "--seed", "3", "--out", str(tmp_path)]) == 2
    assert "drop --seed" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing was written
