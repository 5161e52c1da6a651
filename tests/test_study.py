"""The false-positive study: its design keeps P away from every innocent model, its result files
are well formed, and its rates match hand counts."""

import json

import matplotlib
import numpy as np
import pytest
import torch
from scipy.stats import binomtest

from pmi_tutorial.experiments import study

matplotlib.use("Agg")
DESIGN = study.Design(member_per_class=20, independent_per_class=20, distill_per_class=20,
                      select_per_class=10, nonmember_per_class=60)
TINY = study.StudyConfig(
    name="test", design=DESIGN, archs=("mlp",), n_independent=2, n_owners=1, epochs=1,
    finetune_epochs=1, distill_epochs=1, trials=10, ms=(3,), ns=(10,), test_n=10, B=20,
    test_trials=5, rbf_B=10, rbf_trials=2,
)


@pytest.fixture(scope="module")
def prepared(mnist_root):
    return study.prepare(DESIGN, root=mnist_root)


# ----------------------------------------------------------------------------- the design


def test_parts_are_disjoint_and_sized(prepared):
    parts, split = prepared.parts, prepared.split
    sets = {k: set(getattr(parts, k).tolist()) for k in ("A", "S", "C", "rest")}
    names = list(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b], (a, b)
    assert set().union(*sets.values()) == set(range(len(split.train_y)))
    y = split.train_y.numpy()
    for name, k in (("A", 20), ("S", 10), ("C", 20)):
        assert np.array_equal(np.bincount(y[getattr(parts, name)], minlength=10), [k] * 10)


def test_independent_models_never_see_P(prepared):
    split, parts = prepared.split, prepared.parts
    P_ids = set(prepared.pools.train_index.tolist())  # every class's P, as dataset indices
    assert P_ids == set(split.train_index[parts.A].tolist())
    seen = []
    for k in range(3):
        pos = study.independent_part(split, parts, DESIGN, k)
        assert set(pos.tolist()) <= set(parts.rest.tolist())
        ids = set(study.training_split(split, pos, parts.S).train_index.tolist())
        assert not ids & P_ids and not ids & set(split.val_index.tolist())
        seen.append(ids)
    assert seen[0] != seen[1]  # each independent model draws its own part B_k
    # the pools: P = class-r images of part A, Q = class-r validation images (first 60)
    for r, (P, Q) in prepared.class_pools().items():
        assert len(P) == 20 and len(Q) == 60
    assert set(prepared.pools.val_index.tolist()) <= set(split.val_index.tolist())


def test_distillation_queries_only_part_C(prepared, monkeypatch, tmp_path):
    from pmi_tutorial import attacks
    from pmi_tutorial.models import build_model

    got = {}

    def spy(teacher, student, x, **kwargs):
        got["x"] = x
        return student

    monkeypatch.setattr(attacks, "distill", spy)
    owner = build_model("mlp", seed=0)
    study.attacked(prepared, TINY, owner, "k", {"arch": "mlp"}, "distill_same", 0,
                   cache_dir=tmp_path)
    C = prepared.parts.C
    assert torch.equal(got["x"], prepared.split.train_x[torch.as_tensor(C)])
    ids = set(prepared.split.train_index[C].tolist())
    assert not ids & set(prepared.pools.train_index.tolist())  # no P
    assert not ids & set(prepared.split.val_index.tolist())  # no Q


def test_the_study_applies_every_registered_attack_that_does_not_train(prepared):
    from pmi_tutorial import attacks
    from pmi_tutorial.models import build_model

    owner = build_model("mlp", seed=0)
    x = prepared.split.val_x[:8]
    for name, entry in attacks.ATTACKS.items():
        if entry.trains:
            continue
        model, pools, transform = study.attacked(prepared, TINY, owner, "k", {"arch": "mlp"}, name, 0)
        assert pools is prepared.pools
        expected = entry(owner, attacks.AttackContext(arch="mlp", seed=0),
                         **study.run.attack_settings(TINY, name))
        assert torch.equal(model(x), expected.model(x)), name
        assert (transform is not None) == (entry(owner, attacks.AttackContext()).output == "probabilities")
    with pytest.raises(ValueError, match="unknown attack 'quantize'; use one of finetune"):
        study.attacked(prepared, TINY, owner, "k", {"arch": "mlp"}, "quantize", 0)
    assert study.run.attack_settings(TINY, "prune50") == {"rate": TINY.prune_rate}
    assert study.run.attack_settings(TINY, "prune90") == attacks.ATTACKS["prune90"].settings


def test_a_design_too_big_for_the_split_is_refused(prepared):
    with pytest.raises(ValueError, match="training images"):
        study.make_parts(prepared.split, study.Design(member_per_class=10_000))


# ----------------------------------------------------------------------------- the run


def test_tiny_study_writes_well_formed_result_files(tmp_path, mnist_root, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    files = study.run_study(TINY, out=out, cache_dir=cache, root=mnist_root, progress=True,
                            command="test")
    lines = capsys.readouterr().out.splitlines()
    n = 2 * TINY.n_independent + TINY.n_owners * (1 + len(TINY.attacks))
    assert sum("trained mlp_" in s for s in lines) == TINY.n_independent + TINY.n_owners
    assert sum("p-values" in s for s in lines) == n
    for name in study.FILES.values():
        content = json.loads((out / name).read_text())
        assert content["format"] == study.RESULT_FORMAT and content["complete"] is True
        prov = content["provenance"]
        for key in ("command", "git_commit", "hardware", "versions", "started",
                    "run_wall_seconds", "run_cpu_seconds"):
            assert key in prov
    records, cfg, _ = study.load_results(out)
    assert cfg == TINY
    kinds = [r["kind"] for r in records]
    assert kinds == ["independent"] * 2 + ["resplit"] * 2 + ["owner"] + list(study.ATTACKS)
    for r in records:
        assert len(r["acc"]["m3_n10"]) == 10 and all(0 <= a <= 1 for a in r["acc"]["m3_n10"])
        for s, t in r["tests"].items():
            B = TINY.rbf_B if s == "rbf" else TINY.B
            assert 1 / (B + 1) - 1e-12 <= t["pvalue"] <= 1 and len(t["per_class_pvalue"]) == 10
    s = files["summary"]["summary"]["mlp"]
    assert set(s["tests"]["pmi"]["verdicts"]) == {"owner", *study.ATTACKS}
    # a second run takes every model and measurement from the cache: same numbers
    again = study.run_study(TINY, out=None, cache_dir=cache, root=mnist_root, progress=False)
    assert again["tests"]["models"] == files["tests"]["models"]
    assert again["summary"]["summary"] == files["summary"]["summary"]


# ----------------------------------------------------------------------------- the numbers


def test_paper_rule_fpr_matches_a_hand_count():
    # m = 3, rho = 0.1: accused when max_r acc_r >= 1/3 + 0.1 = 0.4333...
    models = [[0.30, 0.44, 0.20], [0.43, 0.33, 0.40], [0.90, 0.10, 0.10], [0.3, 0.3, 0.3]]
    assert [study.paper_rule_accuses(a, 3, 0.1) for a in models] == [True, False, True, False]
    assert study.paper_rule_fpr(models, 3, 0.1) == 0.5
    assert study.paper_rule_fpr(models, 3, 0.2) == 0.25  # only 0.90 >= 0.5333
    # m = 5, rho = 0.2: 0.40 is exactly 1/5 + 0.2 and counts (Eq. 13 has >=)
    assert study.paper_rule_fpr([[0.40, 0.1], [0.39, 0.1]], 5, 0.2) == 0.5


def test_naive_pvalue_and_rejection_rate_by_hand():
    acc = [0.30, 0.45, 0.40]
    by_hand = min(binomtest(round(a * 100), 100, 1 / 3, alternative="greater").pvalue for a in acc)
    assert study.naive_pvalue(acc, 3, 100) == pytest.approx(by_hand, rel=1e-9)
    assert study.naive_pvalue(acc, 3, 100, bonferroni=True) == pytest.approx(min(1, 3 * by_hand))
    assert study.rejection_rate([0.01, 0.05, 0.2, 0.049], 0.05) == 0.75
    assert study.rejection_rate([0.01, 0.05, 0.2, 0.049], 0.01) == 0.25


def test_summary_counts_match_the_records():
    def rec(kind, p, acc):
        return {"arch": "mlp", "kind": kind, "acc": {"m3_n100": acc},
                "tests": {"pmi": {"pvalue": p}}}

    records = [rec("independent", p, a) for p, a in
               ((0.5, [0.5, 0.3]), (0.04, [0.3, 0.3]), (0.9, [0.35, 0.2]), (0.2, [0.6, 0.1]))]
    records += [rec("owner", 0.005, [0.9, 0.4]), rec("prune50", 0.045, [0.4, 0.3])]
    cfg = study.StudyConfig(statistics=("pmi",), rhos=(0.1,))
    summary = study.summarize_records(records, cfg)
    s = summary["mlp"]
    assert study.rule_rate(summary, "mlp", 3, 100, 0.1) == 0.5  # 0.5 and 0.6 pass 0.4333
    assert study.rule_rate(summary, "mlp", 3, 100, 0.1, "tpr_owner") == 1.0
    assert study.cells(summary, "mlp") == [(3, 100)]
    assert study.cell_key(3, 100) == "m3_n100" and study.parse_cell_key("m3_n100") == (3, 100)
    assert study.record_acc(records[0], 3, 100) == [0.5, 0.3]
    assert study.test_rate(summary, "mlp", "pmi", 0.05) == 0.25
    assert study.test_rate(summary, "mlp", "pmi", 0.01) == 0.0
    assert study.detection_rate(summary, "mlp", "pmi", 0.05, "prune50") == 1.0
    assert study.detection_rate(summary, "mlp", "pmi", 0.01, "prune50") == 0.0
    # naive binomial test at r_opt (t = 100 trials, chance 1/3), recomputed with SciPy
    best = [0.5, 0.3, 0.35, 0.6]
    want = np.mean([binomtest(round(100 * a), 100, 1 / 3, alternative="greater").pvalue <= 0.05
                    for a in best])
    assert want == 0.5 and study.naive_rate(summary, "mlp", 3, 100, 0.05) == want
    t = s["tests"]["pmi"]
    with pytest.raises(ValueError, match="no cell m = 4, n = 100"):
        study.rule_rate(summary, "mlp", 4, 100, 0.1)
    with pytest.raises(ValueError, match="unknown kind 'tpr'"):
        study.rule_rate(summary, "mlp", 3, 100, 0.1, "tpr")
    with pytest.raises(ValueError, match="no architecture 'vgg19'"):
        study.rule_rate(summary, "vgg19", 3, 100, 0.1)
    # ROC on -log10 p: the owner (0.005) beats every independent model, the pruned copy (0.045)
    # beats all but the one at 0.04, so AUC = (4 + 3) / 8, and at FPR 0 only the owner is found
    assert t["auc"] == pytest.approx(7 / 8)
    assert t["tpr_at_fpr0.01"] == 0.5


def test_figures_and_table_from_a_summary(tmp_path):
    import matplotlib.pyplot as plt

    def rec(kind, p, acc):
        return {"arch": "mlp", "kind": kind, "acc": {"m3_n100": acc},
                "tests": {"pmi": {"pvalue": p}, "mmd": {"pvalue": p}}}

    records = [rec("independent", p, a) for p, a in ((0.3, [0.5, 0.3]), (0.6, [0.4, 0.3]),
                                                      (0.9, [0.45, 0.2]))]
    records.append(rec("owner", 0.01, [0.9, 0.5]))
    cfg = study.StudyConfig(statistics=("pmi", "mmd"), rhos=(0.1,))
    summary = study.summarize_records(records, cfg)
    ax = study.plot_paper_rule_fpr(summary, "mlp")
    heights = [b.get_height() for b in ax.patches]
    assert heights == [study.rule_rate(summary, "mlp", 3, 100, 0.1)] == [2 / 3]  # 0.5, 0.45 pass
    ax = study.plot_acc_distribution(records, "mlp", m=3, n=100)
    from matplotlib.patches import Rectangle

    bars = [b for b in ax.patches if isinstance(b, Rectangle)]
    assert sum(b.get_height() for b in bars) == 4  # acc_r_opt of 3 independent models + 1 owner
    assert ax.get_xlabel() == "accuracy (m = 3, n = 100)"
    ax = study.plot_roc(records, "mlp", ["pmi", "mmd"])
    x, y = ax.lines[0].get_data()
    assert list(x)[-1] == 1.0 and list(y)[-1] == 1.0 and "AUC 1.00" in ax.get_legend_handles_labels()[1][0]
    axes = study.plot_pvalue_hist(records, "mlp", ["pmi", "mmd"])
    assert sum(b.get_height() for b in axes[0].patches) == 3  # three independent p-values
    plt.close("all")
    table = study.verdict_table(summary, "mlp", ["pmi", "mmd"])
    assert "| owner (no attack) | 1/1" in table and "0/3" in table


def test_configs_read_back_from_json():
    for cfg in study.CONFIGS.values():
        assert study.config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_resplit_members_were_never_seen_by_their_model(prepared):
    split, parts = prepared.split, prepared.parts
    for k in range(3):
        seen = set(study.independent_part(split, parts, DESIGN, k).tolist())
        A_k = study.resplit_part(split, parts, DESIGN, k)
        assert not set(A_k.tolist()) & seen
        assert not set(A_k.tolist()) & (set(parts.S.tolist()) | set(parts.C.tolist()))
        y = split.train_y.numpy()
        assert np.array_equal(np.bincount(y[A_k], minlength=10), [20] * 10)
        pools = study.pool_split(split, parts, DESIGN, A_k)
        assert np.array_equal(pools.train_index, split.train_index[A_k])
    assert not np.array_equal(study.resplit_part(split, parts, DESIGN, 0),
                              study.resplit_part(split, parts, DESIGN, 1))


def test_tiny_study_on_a_dask_cluster_equals_the_in_process_run(tmp_path, mnist_root, dask_engine):
    timing = ("train_cpu_seconds", "cpu_seconds")
    strip = lambda f: [{k: v for k, v in r.items() if k not in timing}  # noqa: E731
                       for r in f["tests"]["models"] + f["paper_rule"]["models"]]
    here = study.run_study(TINY, out=None, cache_dir=tmp_path / "a", root=mnist_root, progress=False)
    there = study.run_study(TINY, out=tmp_path / "out", cache_dir=tmp_path / "b", root=mnist_root,
                            progress=False, engine=dask_engine)
    assert there["tests"]["provenance"]["engine"] == "dask LocalCluster, 2 workers"
    assert strip(there) == strip(here)
    assert there["summary"]["summary"] == here["summary"]["summary"]
