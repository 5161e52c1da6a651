"""Dataset Inference on the study's models: exact intervals, hand-counted rates, a resumable run."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import kstest

from pmi_tutorial import files
from pmi_tutorial.stats import clopper_pearson
from pmi_tutorial.experiments import dataset_inference as D
from pmi_tutorial.experiments import study

REPO = Path(__file__).resolve().parents[1]
DESIGN = study.Design(member_per_class=20, independent_per_class=20, distill_per_class=20,
                      select_per_class=10, nonmember_per_class=60)
STUDY = study.StudyConfig(
    name="test", design=DESIGN, archs=("mlp",), n_independent=2, n_owners=1, epochs=1,
    finetune_epochs=1, distill_epochs=1, trials=10, ms=(3,), ns=(10,), test_n=10, B=20,
    test_trials=5, rbf_B=10, rbf_trials=2, resplit=True, attacks=("finetune", "probabilities"),
)
TINY_DI = D.DIConfig(name="test", known=40, revealed=(5, 20), max_revealed=60, directions=2,
                     steps=20, repeats=5, epochs=20)


def _real_data_dir() -> Path:
    for c in (os.environ.get("PMI_DATA_DIR"), REPO.parent / "shared" / "data"):
        if c and (Path(c) / "mnist.npz").is_file():
            return Path(c)
    pytest.skip("real mnist.npz not found (set PMI_DATA_DIR to the folder holding it)")


def _record(kind, p_first, p_hmean, k=0, owner=None):
    return {"arch": "mlp", "kind": kind, "index": k, "owner": owner,
            "pvalue_first_draw": {"10": p_first}, "pvalue_hmean": {"10": p_hmean},
            "pvalue_median": {"10": p_first}, "forward_equivalents": 300.0, "seconds": 2.0,
            "forward_seconds": 0.01}


def test_summary_matches_hand_counts():
    cfg = D.DIConfig(revealed=(10,))
    firsts = [0.004, 0.03, 0.2, 0.5, 0.9]
    hmeans = [0.001, 0.2, 0.04, 0.7, 0.01]
    recs = [_record("independent", f, h, k) for k, (f, h) in enumerate(zip(firsts, hmeans))]
    recs += [_record("owner", 1e-9, 1e-8, 0, 0), _record("finetune", 0.2, 0.06, 0, 0)]
    recs += [_record("resplit", 0.001, 0.5, 0), _record("resplit", 0.7, 0.5, 1)]
    s = D.summarize(recs, cfg)["mlp"]
    inn = s["innocent"]["10"]
    assert inn["n_models"] == 5
    assert inn["fpr_first_draw_0.01"][0] == pytest.approx(1 / 5)
    assert inn["fpr_first_draw_0.05"][0] == pytest.approx(2 / 5)
    assert inn["fpr_hmean_0.05"][0] == pytest.approx(3 / 5)
    assert inn["fpr_hmean_0.05"][1:] == pytest.approx(list(clopper_pearson(3, 5)))
    assert inn["ks_pvalue_first_draw"] == pytest.approx(kstest(firsts, "uniform").pvalue)
    own = s["innocent_own_draw"]["10"]
    assert own["n_models"] == 2 and own["fpr_first_draw_0.01"][0] == pytest.approx(1 / 2)
    assert set(s["attacks"]) == {"owner", "finetune"}
    assert s["attacks"]["owner"]["10"]["detected_0.05_hmean"] == 1.0
    assert s["attacks"]["finetune"]["10"]["detected_0.05_hmean"] == 0.0
    assert s["cost"]["median_seconds_ratio_to_forward"] == pytest.approx(200.0)


def test_tiny_run_writes_a_result_file_and_resumes(tmp_path):
    root = _real_data_dir()
    torch.set_num_threads(1)
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = D.run_dataset_inference(STUDY, TINY_DI, out=out, cache_dir=cache, root=root,
                                  progress=False, command="test")
    disk = files.read_result(out / "dataset_inference_test.json", D.RESULT_FORMAT)
    assert disk["complete"] is True and disk["provenance"]["command"] == "test"
    kinds = [r["kind"] for r in disk["models"]]
    assert kinds == ["independent"] * 2 + ["resplit"] * 2 + ["owner", "finetune", "probabilities"]
    assert disk["summary"]["mlp"]["innocent"]["5"]["n_models"] == 2
    assert disk["summary"]["mlp"]["innocent_own_draw"]["5"]["n_models"] == 2
    for r in disk["models"]:
        for k in ("5", "20"):
            assert 0 <= r["pvalue_first_draw"][k] <= 1 and 0 <= r["pvalue_hmean"][k] <= 1
        assert r["queries"] >= 2 * 3 * TINY_DI.directions * 20  # >= 1 query per image and direction
    # the owner seen through log-probabilities is the same classifier: the same labels, the same walk
    owner = next(r for r in disk["models"] if r["kind"] == "owner")
    logprob = next(r for r in disk["models"] if r["kind"] == "probabilities")
    assert owner["pvalue_hmean"] == logprob["pvalue_hmean"]
    # a second run reads every record from the cache: the same numbers
    again = D.run_dataset_inference(STUDY, TINY_DI, out=None, cache_dir=cache, root=root,
                                    progress=False)
    assert again["models"] == res["models"] and again["summary"] == res["summary"]
    cached = [json.loads(p.read_text()) for p in (cache / "beyond" / "dataset_inference").glob("*.json")]
    suspects = [c for c in cached if "kind" in c]
    assert len(suspects) == 7 and all(c["kind"] in kinds for c in suspects)
    # the rest: the runner's records of the models it made sure were trained (2 innocent, 1 owner)
    trained = sorted(c["model"].split("_")[1] for c in cached if "kind" not in c)
    assert trained == ["independent0", "independent1", "owner0"]


def test_revealed_images_avoid_the_regressor_images():
    x = torch.arange(40, dtype=torch.float32).view(40, 1, 1, 1)
    y = torch.zeros(40, dtype=torch.long)
    from pmi_tutorial.baselines.dataset_inference import image_hashes

    exclude = image_hashes(x[:25])
    xs, _ = D.detector._take((x, y), 40, seed=0, exclude=exclude)
    assert len(xs) == 15 and set(xs.flatten().tolist()) == set(range(25, 40))
    a, _ = D.detector._take((x, y), 10, seed=[1, 2])
    b, _ = D.detector._take((x, y), 10, seed=[1, 2])
    assert torch.equal(a, b) and len(np.unique(a.numpy())) == 10


def test_cli_has_the_dataset_inference_command():
    from pmi_tutorial import cli

    args = cli.build_parser().parse_args(["dataset-inference", "--config", "quick", "--study", "tiny",
                                          "--archs", "mlp"])
    assert cli.COMMANDS[args.command] is cli.cmd_dataset_inference
    assert (args.config, args.study, args.archs) == ("quick", "tiny", ["mlp"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["dataset-inference", "--config", "huge"])


def test_tables_show_every_view_size_and_attack():
    cfg = D.DIConfig(revealed=(10, 300))
    recs = [_record("independent", 0.03, 0.01, k) for k in range(4)]
    recs += [_record("resplit", 0.5, 0.5, k) for k in range(4)]
    recs += [_record("owner", 1e-9, 1e-8, 0, 0)]
    for r in recs:  # a second size
        for key in ("pvalue_first_draw", "pvalue_hmean", "pvalue_median"):
            r[key]["300"] = r[key]["10"]
    s = D.summarize(recs, cfg)
    inn = D.innocent_table(s).splitlines()
    assert len(inn) == 2 + 2 * 2  # header, rule, two views x two sizes
    assert "| mlp | the owner's one draw | 10 | 4 | 1.00 (" in inn[2]  # 4 of 4 at p = 0.03
    att = D.attack_table(s).splitlines()
    assert len(att) == 3 and att[2].startswith("| mlp | owner (no attack) | 1e-08 |")  # hmean
    assert "median p (harmonic mean over draws), 10 revealed | 300 revealed |" in att[0]
    assert att[2].rstrip().endswith("| 100% |")
    # a partial run: one innocent model of a kind has no KS test, and the table says so
    one = D.innocent_table(D.summarize(recs[:1] + recs[4:5], cfg)).splitlines()
    assert len(one) == 2 + 2 * 2 and all(row.rstrip().endswith("| - |") for row in one[2:])


def test_paper_comparison_puts_both_methods_at_the_same_number_revealed():
    cfg = D.DIConfig(revealed=(100, 1000))
    recs = [_record("resplit", p, p, k) for k, p in enumerate((0.01, 0.2, 0.6, 0.9))]
    recs += [_record("owner", 1e-9, 1e-8, 0, 0), _record("owner", 0.3, 0.2, 1, 1)]
    for r in recs:
        for key in ("pvalue_first_draw", "pvalue_hmean", "pvalue_median"):
            r[key]["1000"] = r[key].pop("10")
    di = D.summarize(recs, cfg)
    assert di["mlp"]["attacks"]["owner"]["1000"]["detected_0.05_first_draw"] == 0.5
    # PMI at 100 per class = 1,000 samples; the 10-per-class cell must not be used
    pmi = {"mlp": {"curves": {"closed_form": {
        "owner": {"100": {"detected_a0.05": 1.0, "n": 2}, "10": {"detected_a0.05": 0.0, "n": 2}},
        "innocent_own_draw": {"100": {"detected_a0.05": 0.04, "n": 50}}}}}}
    lines = D.paper_comparison(pmi, di, "mlp", total=1000).splitlines()
    owner = next(line for line in lines if line.startswith("| owner"))
    cells = [c.strip() for c in owner.strip("|").split("|")]
    assert cells[1:] == ["100% of 2", "", "", "50% of 2", "50% of 2"]
    innocent = [c.strip() for c in lines[-1].strip("|").split("|")]
    assert innocent[1] == "4% of 50" and innocent[4] == "25% of 4"  # 1 of 4 at p = 0.01


def _anova_by_least_squares(z):
    """F-test of the seed (column) effect by two least-squares fits with dummy variables."""
    from scipy.stats import f as fdist

    m, s = z.shape
    y = z.ravel()
    rows = np.repeat(np.arange(m), s)
    cols = np.tile(np.arange(s), m)
    ones = np.ones((m * s, 1))
    R = (rows[:, None] == np.arange(1, m)[None]).astype(float)
    C = (cols[:, None] == np.arange(1, s)[None]).astype(float)

    def rss(X):
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        return float(((y - X @ beta) ** 2).sum())

    full, reduced = rss(np.hstack([ones, R, C])), rss(np.hstack([ones, R]))
    df_res = (m - 1) * (s - 1)
    F = ((reduced - full) / (s - 1)) / (full / df_res)
    return full, reduced, F, fdist.sf(F, s - 1, df_res)


def test_two_way_anova_equals_least_squares_and_finds_a_planted_seed_effect():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(20, 6))
    a = D.two_way_anova(z)
    full, reduced, F, p = _anova_by_least_squares(z)
    assert a["ss_residual"] == pytest.approx(full)
    assert a["ss_seed"] == pytest.approx(reduced - full)
    assert a["f_seed"] == pytest.approx(F) and a["pvalue_seed"] == pytest.approx(p)
    assert a["share_seed"] + a["share_model"] + a["share_residual"] == pytest.approx(1.0)
    assert a["pvalue_seed"] > 0.01  # no seed effect planted
    shifted = z + np.array([0.0, 1.0, -1.0, 0.5, 0.0, -0.5])[None]  # one offset per seed
    b = D.two_way_anova(shifted)
    assert b["pvalue_seed"] < 1e-6 and b["share_seed"] > 0.2
    assert b["ss_residual"] == pytest.approx(a["ss_residual"])  # offsets leave the residual
    assert b["var_seed"] == pytest.approx(np.var([0, 1, -1, .5, 0, -.5], ddof=1), abs=0.15)
    with pytest.raises(ValueError, match="two models and two seeds"):
        D.two_way_anova(z[:, :1])


def test_seed_summary_hand_counts():
    from scipy.stats import norm

    cfg = D.DIConfig(revealed=(10, 30))
    p = {(0, 0): 0.01, (1, 0): 0.2, (2, 0): 0.04, (0, 1): 0.5, (1, 1): 0.9, (2, 1): 0.03}
    recs = [{"arch": "mlp", "kind": "resplit", "index": i, "seed": s,
             "pvalue_first_draw": {"10": v}} for (i, s), v in p.items()]
    e = D.seed_summary(recs, cfg)
    assert set(e) == {"10"}  # no record has 30
    e = e["10"]
    assert [e["per_seed"][s]["rejected"] for s in ("0", "1")] == [2, 1]
    z0 = norm.isf([0.01, 0.2, 0.04])
    assert e["per_seed"]["0"]["z_mean"] == pytest.approx(z0.mean())
    assert e["per_seed"]["0"]["z_sd"] == pytest.approx(z0.std(ddof=1))
    assert e["rejection_rate_0.05"][0] == pytest.approx(3 / 6)
    assert e["rejection_rate_0.05"][1:] == pytest.approx(list(clopper_pearson(3, 6)))
    z = norm.isf([[p[i, s] for s in (0, 1)] for i in range(3)])
    assert e["anova"]["pvalue_seed"] == pytest.approx(_anova_by_least_squares(z)[3])
    assert e["anova"]["grand_mean"] == pytest.approx(z.mean())
    assert "| 10 | 2, 1 (of 3) |" in D.seed_table({"10": e})


def test_seed_z_table_and_its_plot():
    import matplotlib

    matplotlib.use("Agg")
    from scipy.stats import norm

    p = {(3, 0): 0.01, (5, 0): 0.2, (3, 1): 0.5, (5, 1): 0.9, (7, 1): 0.03}
    recs = [{"arch": "mlp", "kind": "resplit", "index": i, "seed": s,
             "pvalue_first_draw": {"10": v}} for (i, s), v in p.items()]
    models, seeds, z = D.seed_z(recs, 10)
    assert models == [3, 5, 7] and seeds == [0, 1]
    assert z[0] == pytest.approx(norm.isf([0.01, 0.5]))
    assert np.isnan(z[2, 0]) and z[2, 1] == pytest.approx(norm.isf(0.03))
    with pytest.raises(ValueError, match="no record has 30"):
        D.seed_z(recs, 30)
    ax = D.plot_seed_study({"settings": {"arch": "mlp"}, "models": recs}, 10)
    lines = ax.get_lines()
    points = [ln for ln in lines if ln.get_marker() == "o"]
    assert [sorted(ln.get_ydata()) for ln in points] == [sorted(norm.isf([0.01, 0.2])),
                                                        sorted(norm.isf([0.5, 0.9, 0.03]))]
    means = [ln for ln in lines if np.ptp(ln.get_xdata()) == pytest.approx(0.6)]  # the bars
    assert [m.get_ydata()[0] for m in means] == pytest.approx(
        [norm.isf([0.01, 0.2]).mean(), norm.isf([0.5, 0.9, 0.03]).mean()])
    assert norm.isf(0.05) in [ln.get_ydata()[0] for ln in lines]  # the rejection line
    assert ax.get_title() == "mlp, 10 revealed"


def test_grand_mean_test_holds_its_level_with_a_seed_effect_and_finds_a_shift():
    # z_ij = mu + a_i + b_j + e_ij, models i and seeds j both random; closed-form variance of
    # the grand mean, and a Monte Carlo check of the test's level and power
    g = np.random.default_rng(5)
    m, s, sa, sb, se = 12, 4, 0.3, 0.7, 1.0
    true_var = sa**2 / m + sb**2 / s + se**2 / (m * s)
    est, p0, p1, naive = [], [], [], []
    for _ in range(3000):
        z = (g.normal(0, sa, (m, 1)) + g.normal(0, sb, (1, s)) + g.normal(0, se, (m, s)))
        a = D.two_way_anova(z)
        est.append(a["se_grand_mean"] ** 2)
        p0.append(a["pvalue_grand_mean"])
        p1.append(D.two_way_anova(z + 1.5)["pvalue_grand_mean"])
        naive.append(abs(z.mean()) / (z.std(ddof=1) / np.sqrt(m * s)) > 1.96)  # pairs as independent
    assert np.mean(est) == pytest.approx(true_var, rel=0.1)
    assert 0.015 <= np.mean(np.array(p0) <= 0.05) <= 0.06  # the level (Satterthwaite: a little conservative)
    assert np.mean(naive) > 0.25  # a test over pairs taken as independent does not hold it
    assert np.mean(np.array(p1) <= 0.05) > 0.5  # a real shift is found
