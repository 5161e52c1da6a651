"""Tests for pmi_tutorial.paper_study: the tiny configuration end to end, and its resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pmi_tutorial.experiments import paper_study as PS


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("paper_study")
    files = PS.run(PS.TINY, out=base / "out", cache_dir=base / "cache", progress=True)
    return base, files


def test_tiny_study_end_to_end(tiny_run):
    base, files = tiny_run
    recs = files["records"]["records"]
    cfg = PS.TINY
    # one owner with every attack, two innocents each against two draws
    assert len(recs) == 1 + len(cfg.attacks) + 2 * 2
    assert [r["kind"] for r in recs[:1 + len(cfg.attacks)]] == ["owner", *cfg.attacks]
    assert sorted((r["index"], r["draw"]) for r in recs if r["kind"] == "innocent") == [
        (0, "own"), (0, "owner"), (1, "own"), (1, "owner")]
    for r in recs:
        assert set(r["revealed"]) == {"10", "30"}
        cell = r["revealed"]["30"]
        assert set(cell["features"]) == set(PS.FEATURES)
        assert all("calibrated" in cell["features"][f] for f in PS.FEATURES)  # all features at 30
        assert "calibrated" in r["revealed"]["10"]["features"]["logits"]
        assert "calibrated" not in r["revealed"]["10"]["features"]["prob"]
        assert 1 / 20 <= cell["directional"] <= 1  # B = 19
        assert cell["closed_form_tail"]["log10_p"] <= 0 and cell["closed_form_tail"]["count"] >= 0
    on_disk = json.loads((base / "out" / PS.FILES["records"]).read_text())
    assert on_disk["complete"] and on_disk["banner"].startswith("paper-scale study (paper-tiny)")
    assert "mlp 1 epochs (the paper: 300)" in on_disk["banner"]
    assert on_disk["reduced"][0] == "epochs: mlp 1 instead of 300 (best-validation epoch kept, as in the paper)"
    b = on_disk["budget"]
    assert b["planned_models"] == len(PS.plan(cfg)) and b["estimated_total_cpu_seconds"] > 0
    assert b["a_priori"]["measurements"] == len(recs)  # one per (model, draw)
    # the a-priori training time: 1 owner epoch on 50,000 images, 2 innocents on 600, ...
    rate = PS.EPOCH_CPU_SECONDS_PER_10K
    want = 1.1 * (5 * rate["mlp"] + 2 * 0.06 * rate["mlp"] + 0.4 * rate["mlp"]
                  + 0.03 * (rate["mlp"] + rate["lenet5"]))
    assert b["a_priori"]["train_cpu_seconds"] == pytest.approx(want, abs=0.002)
    summ = json.loads((base / "out" / PS.FILES["summary"]).read_text())["summary"]["mlp"]
    assert summ["n_innocent"] == 2 and summ["n_owners"] == 1
    assert summ["statistics"]["closed_form"]["innocent_own_draw"]["fpr_a0.05"]["n"] == 2


def test_design_keeps_innocents_away_from_the_pools(tiny_run):
    world = PS.prepare(PS.TINY)
    y = world.split.train_y.numpy()
    for k in range(2):
        train, select, unseen = PS.innocent_parts(world, k)
        draw = PS.own_draw_positions(world, k)
        vy = world.split.val_y.numpy()
        for r in range(10):
            seen = np.concatenate([train[r], select[r]])
            assert not np.intersect1d(seen, world.reveal[r]).size  # never P'
            assert (y[seen] == r).all() and len(train[r]) == PS.TINY.design.innocent_per_class
            P, Q = draw[r]
            assert len(P) == PS.TINY.design.reveal_per_class and len(Q) == PS.TINY.design.own_q_per_class
            assert not set(P) & set(Q)  # disjoint
            tr = [i for s, i in P + Q if s == "train"]
            assert not np.intersect1d(seen, tr).size  # its own draw: images it never used
            assert (y[tr] == r).all() and (vy[[i for s, i in P + Q if s == "val"]] == r).all()
    # the split is random per model: both sides take training and validation images, and two
    # models' draws differ
    sides = [{s for s, _ in part} for k in range(2) for r in range(10)
             for part in PS.own_draw_positions(world, k)[r]]
    assert sum(side == {"train", "val"} for side in sides) > len(sides) // 2
    assert PS.own_draw_positions(world, 0)[0] != PS.own_draw_positions(world, 1)[0]
    assert PS.own_draw_positions(world, 0) == PS.own_draw_positions(world, 0)  # seeded
    assert not np.intersect1d(PS.distill_part(world), np.concatenate(list(world.reveal.values()))).size


def test_tiny_study_resumes_from_its_caches(tiny_run, monkeypatch):
    base, files = tiny_run

    def boom(*a, **k):
        raise AssertionError("a cached model or measurement was computed again")

    monkeypatch.setattr("pmi_tutorial.training.train", boom)
    monkeypatch.setattr(PS.measurements, "measure", boom)
    monkeypatch.setattr("pmi_tutorial.attacks.distill", boom)
    monkeypatch.setattr("pmi_tutorial.attacks.fine_tune", boom)
    again = PS.run(PS.TINY, out=base / "out2", cache_dir=base / "cache", progress=False)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "train_cpu_seconds"} for r in rs]  # noqa: E731
    assert strip(again["records"]["records"]) == strip(files["records"]["records"])


def test_bad_design():
    bad = PS.PaperConfig(design=PS.PaperDesign(reveal_per_class=4000))
    with pytest.raises(ValueError, match="use smaller parts"):
        PS.prepare(bad)
    with pytest.raises(ValueError, match="unknown attack"):
        PS.attacked(PS.prepare(PS.TINY), None, "k", "mlp", "melt", 0)


def test_dataset_inference_on_the_paper_study_models(tiny_run, monkeypatch):
    from pmi_tutorial.experiments import dataset_inference as D

    base, _ = tiny_run
    monkeypatch.setattr("pmi_tutorial.training.train", lambda *a, **k: pytest.fail("trained"))
    res = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=base / "di", cache_dir=base / "cache",
                               progress=False)
    kinds = [(r["kind"], r["index"]) for r in res["models"]]
    attacks = [k for k in D.PAPER_TINY.kinds if k in PS.ATTACKS]
    assert kinds == [("owner", 0)] + [(a, 0) for a in attacks] + [
        ("independent", 0), ("resplit", 0), ("independent", 1), ("resplit", 1)]
    assert res["not_yet_run"] == [] and res["complete"] and res["models_planned"] == len(kinds)
    for r in res["models"]:
        assert set(r["pvalue_first_draw"]) == {"10", "20"} and r["revealed_available"] == [20, 20]
        assert all(0 <= p <= 1 for p in r["pvalue_hmean"].values())
        assert r["queries"] > 40  # every revealed image walked at least once
    # the owner's draw is shared, each innocent's own draw is its own
    inn = {(r["kind"], r["index"]): r for r in res["models"] if r["owner"] is None}
    assert inn["resplit", 0]["pvalue_first_draw"] != inn["resplit", 1]["pvalue_first_draw"]
    on_disk = json.loads((base / "di" / "dataset_inference_paper-tiny.json").read_text())
    assert on_disk["models"] == res["models"] and "paper-scale study" in on_disk["profile"]
    assert "ks_pvalue_first_draw" in on_disk["summary"]["mlp"]["innocent_own_draw"]["10"]
    # cached: a second run walks nothing
    for where in (D.paper, D.seeds):  # the modules that call it
        monkeypatch.setattr(where, "paper_test", lambda *a, **k: pytest.fail("walked again"))
    again = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, cache_dir=base / "cache", progress=False)
    assert again["models"] == res["models"]


def test_dataset_inference_on_a_dask_cluster_equals_the_in_process_run(tiny_run, tmp_path,
                                                                        dask_engine):
    import shutil

    from pmi_tutorial.experiments import dataset_inference as D

    base, _ = tiny_run
    cache = tmp_path / "cache"  # the study's models, no Dataset Inference records
    shutil.copytree(base / "cache", cache)
    shutil.rmtree(cache / "paper_study" / "dataset_inference", ignore_errors=True)
    here = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, cache_dir=base / "cache", progress=False)
    there = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, cache_dir=cache, progress=False,
                                 engine=dask_engine)
    timing = ("seconds", "forward_seconds")
    strip = lambda rs: [{k: v for k, v in r.items() if k not in timing} for r in rs]  # noqa: E731
    assert strip(there["models"]) == strip(here["models"])
    assert there["provenance"]["engine"] == "dask LocalCluster, 2 workers"
    assert here["provenance"]["engine"] == "in process"


def test_summarize_only_recomputes_the_summaries_from_the_records(tiny_run, monkeypatch, tmp_path):
    import shutil

    from pmi_tutorial import cli
    from pmi_tutorial.experiments import dataset_inference as D
    from pmi_tutorial.experiments.paper_summary import summarize

    base, files = tiny_run
    out = tmp_path / "out"
    out.mkdir()
    for name in PS.FILES.values():
        shutil.copy(base / "out" / name, out / name)
    summ_path = out / PS.FILES["summary"]
    stale = json.loads(summ_path.read_text())
    stale["summary"] = {"stale": True}
    summ_path.write_text(json.dumps(stale))
    monkeypatch.setattr(PS.measurements, "measure", lambda *a, **k: pytest.fail("measured again"))
    assert cli.main(["study", "--config", "paper-tiny", "--out", str(out), "--summarize-only"]) == 0
    fresh = json.loads(summ_path.read_text())
    records = files["records"]["records"]
    assert fresh["summary"] == json.loads(json.dumps(summarize(records, PS.TINY)))
    assert fresh["provenance"] == files["records"]["provenance"]  # the run's own provenance stays
    assert "--summarize-only" in fresh["summary_recomputed"]["command"]
    with pytest.raises(FileNotFoundError, match="no result file"):
        PS.resummarize(tmp_path / "nowhere")
    assert cli.main(["study", "--config", "paper-tiny", "--out", str(out), "--summarize-only",
                     "--workers", "2"]) == 2

    # Dataset Inference: the same from its per-suspect records
    di = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=tmp_path / "di",
                              cache_dir=base / "cache", progress=False)
    path = tmp_path / "di" / "dataset_inference_paper-tiny.json"
    res = json.loads(path.read_text())
    res["summary"] = {}
    path.write_text(json.dumps(res))
    assert cli.main(["dataset-inference", "--config", "paper-tiny", "--study", "paper-tiny",
                     "--out", str(tmp_path / "di"), "--summarize-only"]) == 0
    again = json.loads(path.read_text())
    assert again["summary"] == json.loads(json.dumps(D.summarize(di["models"], D.PAPER_TINY)))
    assert again["models"] == di["models"] and "summary_recomputed" in again


def test_dataset_inference_resumes_from_its_result_file_and_keeps_other_records(
        tiny_run, monkeypatch, tmp_path):
    import shutil
    from dataclasses import replace

    from pmi_tutorial.experiments import dataset_inference as D

    base, _ = tiny_run
    first = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=tmp_path / "di",
                                 cache_dir=base / "cache", progress=False)
    path = tmp_path / "di" / "dataset_inference_paper-tiny.json"
    # a fresh machine: the models, but no per-suspect cache; the committed file is enough
    fresh = tmp_path / "cache"
    shutil.copytree(base / "cache", fresh)
    shutil.rmtree(fresh / "paper_study" / "dataset_inference")
    for where in (D.paper, D.seeds):  # the modules that call it
        monkeypatch.setattr(where, "paper_test", lambda *a, **k: pytest.fail("walked again"))
    again = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=tmp_path / "di", cache_dir=fresh,
                                 progress=False)
    assert again["models"] == first["models"] and again["complete"]
    assert again["earlier_runs"][0] == first["provenance"]

    # records of an architecture this run does not have stay, with their settings
    other = json.loads(path.read_text())
    study = other["settings"]["study"]
    for k in ("archs", "n_innocent", "epochs"):
        study[k] = [*({"archs": "lenet5"}.get(k, study[k][0]),), *study[k]]
    other["models"] = [{**r, "arch": "lenet5"} for r in other["models"]] + other["models"]
    path.write_text(json.dumps(other))
    merged = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=tmp_path / "di", cache_dir=fresh,
                                  progress=False)
    on_disk = json.loads(path.read_text())
    assert on_disk["settings"]["study"]["archs"] == ["lenet5", "mlp"]
    assert [r["arch"] for r in on_disk["models"]] == ["lenet5"] * len(first["models"]) + [
        "mlp"] * len(first["models"])
    assert set(on_disk["summary"]) == {"lenet5", "mlp"} and merged["complete"]
    assert on_disk["models_planned"] == 2 * len(first["models"])

    # a file made with other settings is not overwritten
    with pytest.raises(ValueError, match="other settings"):
        D.run_on_paper_study(PS.TINY, replace(D.PAPER_TINY, repeats=7), out=tmp_path / "di",
                             cache_dir=fresh, progress=False)
    assert json.loads(path.read_text()) == on_disk


def test_dataset_inference_options_that_are_gone_or_misplaced_are_refused(capsys):
    from pmi_tutorial import cli

    for flags in (["--owners", "0", "2"], ["--gather-only"], ["--merge", "a.json"]):
        assert cli.main(["dataset-inference", "--study", "paper-tiny", *flags]) == 2
        err = capsys.readouterr().err
        assert flags[0] in err and "--workers N" in err and "--scheduler" in err
        assert len(err.strip().splitlines()) == 1
    assert cli.main(["dataset-inference", "--study", "tiny", "--walk-seeds", "0", "1"]) == 2
    assert "--walk-seeds works with --study paper" in capsys.readouterr().err
    assert cli.main(["dataset-inference", "--study", "paper-tiny", "--train-missing"]) == 2
    assert "--train-missing goes with --walk-seeds" in capsys.readouterr().err
    assert cli.main(["dataset-inference", "--study", "paper-tiny", "--walk-seeds", "0", "1",
                     "--innocents", "two"]) == 2
    assert "give a number N" in capsys.readouterr().err

def test_seed_study_reproduces_the_main_run_and_varies_with_the_seed(tiny_run, monkeypatch, tmp_path):
    from pmi_tutorial import files
    from pmi_tutorial.experiments import dataset_inference as D

    base, _ = tiny_run
    main = D.run_on_paper_study(PS.TINY, D.PAPER_TINY, out=tmp_path / "main",
                                cache_dir=base / "cache", progress=False)
    main_file = tmp_path / "main" / "dataset_inference_paper-tiny.json"
    res = D.seed_study(PS.TINY, D.PAPER_TINY, models=[0, 1], seeds=[0, 5], out=tmp_path / "s",
                       cache_dir=base / "cache", progress=False, main_result=main_file)
    assert res["complete"] and len(res["models"]) == 4
    got = {(r["index"], r["seed"]): r["pvalue_first_draw"] for r in res["models"]}
    mine = {r["index"]: r["pvalue_first_draw"] for r in main["models"] if r["kind"] == "resplit"}
    # seed 0 is the main run's test of each innocent model against its own draw
    assert got[0, 0] == mine[0] and got[1, 0] == mine[1]
    assert res["reproduction"] == {"seed": 0, "n_models_compared": 2,
                                   "max_abs_difference_first_draw": 0.0}
    assert got[0, 5] != got[0, 0] and got[1, 5] != got[1, 0]  # other directions and subsets
    disk = files.read_result(tmp_path / "s" / "dataset_inference_seeds_paper-tiny_mlp.json",
                             D.SEEDS_FORMAT)
    assert disk["models"] == res["models"] and disk["settings"]["seeds"] == [0, 5]
    assert disk["summary"]["10"]["anova"]["n_models"] == 2
    # cached: a second run walks nothing
    for where in (D.paper, D.seeds):  # the modules that call it
        monkeypatch.setattr(where, "paper_test", lambda *a, **k: pytest.fail("walked again"))
    again = D.seed_study(PS.TINY, D.PAPER_TINY, models=[0, 1], seeds=[0, 5],
                         cache_dir=base / "cache", progress=False)
    assert again["models"] == res["models"]
    with pytest.raises(ValueError, match="two distinct seeds"):
        D.seed_study(PS.TINY, D.PAPER_TINY, models=[0], seeds=[3], cache_dir=base / "cache")
    with pytest.raises(ValueError, match="innocent indices"):
        D.seed_study(PS.TINY, D.PAPER_TINY, models=[9], seeds=[0, 1], cache_dir=base / "cache")
