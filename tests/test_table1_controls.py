"""Tests for pmi_tutorial.experiments.table1_controls: the plan (owners, innocents, the
innocents' training data disjoint from P' on the indices), the claims of Eq. 13-14 and Eq. 15
against a hand count, resume from the per-task cache, the result file and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from pmi_tutorial import files
from pmi_tutorial.experiments import forensics as FZ
from pmi_tutorial.experiments import table1_controls as T

ROOT = Path(__file__).resolve().parents[1]


def labels_of(root):
    from pmi_tutorial import data

    return data.load_dataset("mnist", root).labels


# --------------------------------------------------------------------------- the plan


@pytest.mark.parametrize("split", T.SPLIT_KINDS)
def test_plan_innocents_never_see_P_prime_nor_Q(split, mnist_root):
    labels = labels_of(mnist_root)
    for cfg in (T.TINY, T.MLP):
        plan = T.make_plan(cfg, split, labels)
        train, held, inn, val = map(set, (plan.train, plan.heldout, plan.innocent_train, plan.val))
        assert held <= train and not held & inn and not inn & val and not train & val
        assert inn | held == train
        for r in range(10):  # a fifth of every class of the training part is held out
            n_r = int((labels[plan.train] == r).sum())
            assert int((labels[plan.heldout] == r).sum()) == round(cfg.heldout_fraction * n_r)
    full = T.make_plan(T.MLP, split, labels)
    assert len(full.train) == 50_000 and len(full.val) == 20_000
    if split == "sequential":  # the writer shift: P' from the first 50,000, Q the rest
        assert full.heldout.max() < 50_000 <= full.val.min()


def test_measurements_plan_owners_innocents_and_the_rescoring():
    cfg = T.MLP
    meas = T.measurements(cfg)
    for split in cfg.splits:
        chosen = FZ.variant_name(T.parse_variant(cfg.variant, split=split))
        assert chosen == ("features=penultimate+tie=second+kept=last+split=" + split)
        inn = [k for s, r, k, p, v, _ in meas if (s, r, p, v) == (split, "innocent", "heldout", chosen)]
        own = [k for s, r, k, p, v, _ in meas if (s, r, p, v) == (split, "owner", "heldout", chosen)]
        full = [k for s, r, k, p, v, _ in meas if (s, r, p, v) == (split, "owner", "full", chosen)]
        assert inn == own == full == list(range(5))
    # the search path is re-scored on every sequential owner with draws the search did not use
    # (the chosen reading, the path's last step, is measured on every owner anyway)
    chosen = T.SEARCH_PATH[-1]
    rescored = [(k, v) for s, r, k, p, v, seeds in meas if v in T.SEARCH_PATH and v != chosen]
    assert sorted(rescored) == sorted((k, v) for k in range(5) for v in T.SEARCH_PATH[:-1])
    assert all(seeds == cfg.draw_seeds for *_, seeds in meas)
    assert not set(cfg.draw_seeds) & set(cfg.search_draw_seeds)
    # the chosen variant is the committed forensics' best; the path is its search path
    fz = FZ.committed("paper")
    assert FZ.variant_name(T.parse_variant(cfg.variant, split="sequential")) == fz["best"]
    assert [p["variant"] for p in fz["search"]["path"]] == list(T.SEARCH_PATH)
    # the rounds: sequential first, then every round adds one index of one split
    assert T.steps(cfg)[:3] == [(0, "sequential"), (0, "stratified"), (1, "sequential")]
    first = T.measurements(cfg, upto=1)
    assert {(s, r, k) for s, r, k, *_ in first} == {("sequential", "innocent", 0), ("sequential", "owner", 0)}
    assert len(first) == 3 + len(T.SEARCH_PATH) - 1  # re-scored in the round of its owner
    keys = [t.key for st in T.experiment(cfg).stages for t in st]
    assert len(keys) == len(set(keys)) == 20 + len(meas)
    lenet = [t.key for st in T.experiment(T.LENET5).stages for t in st]
    assert len(lenet) == len(keys) and not set(lenet) & set(keys)  # LeNet-5: the same plan, its own models


def test_bad_config_and_variant_names():
    with pytest.raises(ValueError, match="disjoint"):
        replace(T.TINY, draw_seeds=(0, 10))
    with pytest.raises(ValueError, match="field=value"):
        T.parse_variant("features")
    with pytest.raises(ValueError, match="unknown features"):
        T.parse_variant("features=softmax")
    with pytest.raises(ValueError, match="split"):
        replace(T.TINY, splits=("random",))


def test_innocent_trains_on_the_training_part_without_P_prime(monkeypatch, tmp_path, mnist_root):
    from pmi_tutorial import training

    seen = {}
    real = training.train

    def spy(model, split, *a, **k):
        seen.setdefault("index", []).append(np.asarray(split.train_index))
        seen.setdefault("val", []).append(np.asarray(split.val_index))
        return real(model, split, *a, **k)

    monkeypatch.setattr(training, "train", spy)
    cfg = replace(T.TINY, epochs=1)
    plan = T.cached_plan(cfg, "sequential", None)
    T.trained(cfg, "sequential", "innocent", 0, cache_dir=tmp_path)
    T.trained(cfg, "sequential", "owner", 0, cache_dir=tmp_path)
    inn, own = seen["index"]
    assert not set(inn) & set(plan.heldout) and not set(inn) & set(plan.val)
    assert set(plan.heldout) <= set(own) and set(own) == set(plan.train)
    assert np.array_equal(seen["val"][0], plan.val) and np.array_equal(seen["val"][1], plan.val)


# --------------------------------------------------------------------------- claims


def by_hand(acc_by_class: dict, m: int, trials: int, rho: float) -> tuple[bool, bool]:
    """Eq. 13-14 and Eq. 15 in exact fractions from the per-class accuracies."""
    acc = [Fraction(round(a * trials), trials) for a in acc_by_class.values()]
    rho = Fraction(rho).limit_denominator(1000)
    return max(acc) - Fraction(1, m) >= rho, sum(acc) / len(acc) - Fraction(1, m) >= rho


def test_claims_eq15_differs_from_eq13_14():
    cell = {"acc_r_opt": 0.6, "mean_acc_r": 0.4}
    assert T.claims(cell, 3, 0.1) == {"eq13_14": True, "eq15": False}
    assert T.claims({"acc_r_opt": 0.6, "mean_acc_r": 0.45}, 3, 0.1) == {"eq13_14": True, "eq15": True}
    # exactly on the threshold counts (Eq. 13's >=): 0.3 - 1/5 = 0.1
    assert T.claims({"acc_r_opt": 0.3, "mean_acc_r": 0.3}, 5, 0.1) == {"eq13_14": True, "eq15": True}


def fake_record(split, role, k, accs, m=3, n=5):
    from pmi_tutorial.fingerprint import summarize_classes

    s = summarize_classes(dict(enumerate(accs)), m)
    return {"split": split, "role": role, "index": k, "train_seed": k if role == "owner" else 1000 + k,
            "pools": "heldout", "variant": "features=penultimate+tie=second+kept=last+split=" + split,
            "training": {"last_val_acc": 0.9, "best_val_acc": 0.9},
            "cells": [{"seed": 10, "m": m, "n": n, "r_opt": s.r_opt, "acc_r_opt": s.acc_opt,
                       "mean_acc_r": s.mean_acc, "acc_by_class": {str(r): a for r, a in enumerate(accs)}}]}


def test_summary_claims_against_a_hand_count():
    rng = np.random.default_rng(3)
    cfg = replace(T.TINY, rhos=(0.05, 0.1, 0.2), n_owners=4, n_innocents=4)
    recs = [fake_record(s, r, k, list(rng.integers(0, 11, 10) / 10))
            for s in cfg.splits for r in T.ROLES for k in range(4)]
    summ = T.summarize(recs, cfg)
    assert len(summ["groups"]) == 4
    for g in summ["groups"]:
        mine = [r for r in recs if (r["split"], r["role"]) == (g["split"], g["role"])]
        cell = g["cells"][0]
        for rho in cfg.rhos:
            hand = [by_hand(r["cells"][0]["acc_by_class"], 3, 10, rho) for r in mine]
            got = cell["claims"][str(rho)]
            assert got["eq13_14"]["k"] == sum(h[0] for h in hand) and got["eq13_14"]["n"] == 4
            assert got["eq15"]["k"] == sum(h[1] for h in hand)
            from scipy.stats import beta

            k = got["eq15"]["k"]
            lo = 0.0 if k == 0 else beta.ppf(0.025, k, 4 - k + 1)
            assert got["eq15"]["ci"][0] == pytest.approx(lo)
        opts = [max(r["cells"][0]["acc_by_class"].values()) for r in mine]
        assert cell["acc_r_opt"]["mean"] == pytest.approx(np.mean(opts))
        assert cell["acc_r_opt"]["max"] == pytest.approx(max(opts))


# --------------------------------------------------------------------------- a run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("controls")
    res = T.run_controls(T.TINY, out=folder / "out", cache_dir=folder / "cache", progress=False,
                         command="test tiny run")
    return folder, res


def test_run_records_and_claims_by_hand(tiny_run):
    folder, res = tiny_run
    cfg = T.TINY
    assert res["complete"] and res["device"] == "cpu" and "CPU" in res["note"]
    roles = {(r["split"], r["role"], r["pools"]) for r in res["records"]}
    assert roles == {(s, r, p) for s in cfg.splits for r, p in
                     (("innocent", "heldout"), ("owner", "heldout"), ("owner", "full"))}
    for g in res["summary"]["groups"]:
        recs = [r for r in res["records"] if (r["split"], r["role"], r["pools"], r["variant"])
                == (g["split"], g["role"], g["pools"], g["variant"])]
        assert g["indices"] == sorted(r["index"] for r in recs)
        for row in g["cells"]:
            m = row["m"]
            firsts = [next(c for c in r["cells"] if c["seed"] == cfg.draw_seeds[0]) for r in recs]
            for c in firsts:  # r_opt and the mean recomputed from acc_r
                acc = {int(k): v for k, v in c["acc_by_class"].items()}
                assert c["acc_r_opt"] == max(acc.values()) and c["mean_acc_r"] == pytest.approx(np.mean(list(acc.values())))
            for rho, got in row["claims"].items():
                hand = [by_hand(c["acc_by_class"], m, cfg.trials, float(rho)) for c in firsts]
                assert got["eq13_14"]["k"] == sum(h[0] for h in hand)
                assert got["eq15"]["k"] == sum(h[1] for h in hand)
    # the measurement equals forensics.cell on the model's features, recomputed here
    rec = next(r for r in res["records"] if r["role"] == "innocent" and r["split"] == "sequential")
    best, last, _ = T.trained(cfg, "sequential", "innocent", 0, cache_dir=folder / "cache")
    fp = T.feature_pools(last, T.cached_plan(cfg, "sequential", None), "heldout", "penultimate")
    again = FZ.cell(fp, 3, 5, cfg.trials, cfg.draw_seeds[0], T.parse_variant(rec["variant"]))
    assert again["acc_by_class"] == rec["cells"][0]["acc_by_class"]
    # P' has a fifth of every class's training images; Q all of its validation images
    plan = T.cached_plan(cfg, "sequential", None)
    assert sum(len(p) for p, _ in fp.values()) == len(plan.heldout)
    assert sum(len(q) for _, q in fp.values()) == len(plan.val)


def test_result_file_reads_back(tiny_run):
    folder, res = tiny_run
    path = T.result_path(folder / "out", T.TINY)
    back = files.read_result(path, T.RESULT_FORMAT)
    assert back == json.loads(json.dumps(res))
    assert back["provenance"]["command"] == "test tiny run" and back["provenance"]["hardware"]
    assert T.config_from_dict(back["settings"]) == T.TINY
    text = T.format_table(back, "sequential")
    assert "owners" in text and "innocents" in text and "Eq15" in text
    with pytest.raises(ValueError, match="not 'pmi-tutorial-forensics'"):
        files.read_result(path, "pmi-tutorial-forensics")


def test_resume_runs_nothing_cached_and_only_what_is_missing(tiny_run, monkeypatch):
    folder, res = tiny_run
    exp = T.experiment(T.TINY, cache_dir=folder / "cache")
    measure_keys = [t.key for t in exp.stages[1]]
    (exp.folder / f"{measure_keys[0]}.json").unlink()  # one measurement lost
    calls = []
    real = FZ.cell

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(FZ, "cell", counting)  # the measuring task calls forensics.cell
    out = folder / "again"
    again = T.run_controls(T.TINY, out=out, cache_dir=folder / "cache", progress=False,
                           command="test tiny run")
    cells_per_task = len(T.TINY.ms) * len(T.TINY.ns) * len(T.TINY.draw_seeds)
    assert len(calls) == cells_per_task  # the lost task only
    strip = lambda r: {k: v for k, v in r.items() if k != "provenance"}  # noqa: E731
    assert strip(again) == strip(json.loads(json.dumps(res)))


def test_partial_result_is_marked_incomplete(tmp_path, monkeypatch):
    cfg = replace(T.TINY, epochs=1)
    real = T.measure_task

    def second_fails(*a, **k):
        if a[1] == "stratified":
            raise RuntimeError("stopped")
        return real(*a, **k)

    monkeypatch.setattr(T.tasks, "measure_task", second_fails)  # where the plan takes it from
    from pmi_tutorial.experiments.runner import TasksFailed

    with pytest.raises(TasksFailed):
        T.run_controls(cfg, out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False)
    partial = T.read(T.result_path(tmp_path / "out", cfg))
    assert partial["complete"] is False
    assert {r["split"] for r in partial["records"]} == {"sequential"}


def test_cli_runs_tiny_and_rejects_foreign_options(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PMI_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "pmi_tutorial", "reproduce", "table1-controls", "--controls-config",
           "tiny", "--out", str(tmp_path / "out"), "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "innocents" in proc.stdout and "re-scored" in proc.stdout
    res = T.read(tmp_path / "out" / "table1_controls_tiny.json")
    assert res["complete"] and "reproduce table1-controls" in res["provenance"]["command"]
    bad = subprocess.run(cmd + ["--seed", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--seed" in bad.stderr


def test_committed_controls_summary_recomputes_from_its_records():
    names = [n for n in files.committed_names() if n.startswith(T.RESULT_NAME)]
    if not names:
        pytest.skip("no committed table1_controls result yet")
    for name in names:
        res = files.committed_result(name, T.RESULT_FORMAT)
        cfg = T.config_from_dict(res["settings"])
        assert res["device"] == "cpu" and res["provenance"]["command"].startswith(
            "python -m pmi_tutorial reproduce table1-controls")
        assert json.loads(json.dumps(T.summarize(res["records"], cfg))) == res["summary"]
        for rec in res["records"]:  # Eq. 14 and Eq. 15 of every cell from its acc_r
            for c in rec["cells"]:
                acc = list(c["acc_by_class"].values())
                assert c["acc_r_opt"] == max(acc) and c["mean_acc_r"] == pytest.approx(np.mean(acc))
