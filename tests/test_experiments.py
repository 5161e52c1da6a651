"""Tests for pmi_tutorial.experiments: the resumable sweeps behind Tables I-IV and Figure 2.

Everything runs on a tiny profile (an MLP trained for one epoch on 50 MNIST images per class,
two classes, n = 20, t = 5 trials), cached once for the module in a temporary folder.
"""

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest

from pmi_tutorial import experiments as E
from pmi_tutorial import profiles
from pmi_tutorial.profiles import QUICK

TINY = replace(
    QUICK, name="tiny", epochs={"mlp": 1, "lenet5": 1, "vgg19": 1, "resnet34": 1},
    train_per_class={"mnist": 50, "cifar10": 50}, finetune_epochs=1, trials=5, ms=(3, 4), ns=(20,),
    prune_rates=(0.5,),
)
KW = dict(models=["mlp"], classes=[0, 1], progress=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def table1(cache, tmp_path_factory):
    """An uninterrupted tiny Table I sweep: the reference for the resume tests."""
    out = tmp_path_factory.mktemp("full")
    lines = []
    res = E.reproduce("table1", TINY, out_dir=out, cache_dir=cache, log=lines.append, **KW)
    return res, lines


def test_tiny_sweep_is_complete_and_well_formed(table1):
    res, lines = table1
    assert [(c["model"], c["m"], c["n"]) for c in res["cells"]] == [("mlp", 3, 20), ("mlp", 4, 20)]
    for c in res["cells"]:
        assert set(c["acc_by_class"]) == {"0", "1"}
        assert all(0.0 <= a <= 1.0 for a in c["acc_by_class"].values())
        # Eq. 14-15 recomputed from the per-class numbers
        best = max(c["acc_by_class"].items(), key=lambda kv: (kv[1], -int(kv[0])))
        assert c["r_opt"] == int(best[0]) and c["acc_r_opt"] == best[1]
        assert c["mean_acc_r"] == pytest.approx(sum(c["acc_by_class"].values()) / 2)
        assert all(a * 5 == pytest.approx(round(a * 5)) for a in c["acc_by_class"].values())  # t = 5
    on_disk = E.load_result(res["path"])
    assert on_disk["cells"] == res["cells"]
    assert on_disk["settings"]["classes"] == [0, 1] and on_disk["settings"]["trials"] == 5
    assert on_disk["settings"]["profile"]["name"] == "tiny"
    prov = on_disk["provenance"]
    for key in ("command", "git_commit", "hardware", "versions", "started", "finished"):
        assert prov[key], key
    assert {"torch", "numpy", "scipy", "python"} <= set(prov["versions"])
    assert len(on_disk["runs"]) == 1 and on_disk["runs"][0]["cells_done"] == 2
    # the run time is the time of its cells plus their bookkeeping, summed per run
    assert on_disk["run_seconds"] == on_disk["runs"][0]["seconds"]
    assert on_disk["run_seconds"] >= round(sum(c["seconds"] for c in on_disk["cells"]), 1) - 0.1
    model = on_disk["models"]["mlp"]
    assert model["epochs"] == 1 and model["best_epoch"] == 1 and model["n_train"] == 500
    assert len(model["val_acc_curve"]) == 1 and 0 < model["best_val_acc"] <= 1
    assert any("best epoch 1 of 1" in line for line in lines)


def test_killed_sweep_resumes_without_redoing_cells(table1, cache, tmp_path, monkeypatch):
    class Killed(Exception):
        pass

    def log(line):
        if line.startswith("  MLP"):  # the first finished cell has just been written
            raise Killed

    import shutil

    shutil.rmtree(cache / "runs", ignore_errors=True)  # the trained model only: cells to compute
    with pytest.raises(Killed):
        E.reproduce("table1", TINY, out_dir=tmp_path, cache_dir=cache, log=log, **KW)
    partial = E.load_result(E.result_path(tmp_path, "table1", TINY))
    assert len(partial["cells"]) == 1
    lines = []
    res = E.reproduce("table1", TINY, out_dir=tmp_path, cache_dir=cache, log=lines.append, **KW)
    assert any("resuming" in line and "1 cell(s) already done" in line for line in lines)
    assert res["cells"][0] == partial["cells"][0]  # not recomputed (its timing is kept too)
    assert [r["cells_done"] for r in res["runs"]] == [1, 1]
    strip = [{k: v for k, v in c.items() if k != "seconds"} for c in res["cells"]]
    ref = [{k: v for k, v in c.items() if k != "seconds"} for c in table1[0]["cells"]]
    assert strip == ref
    # a third call finds nothing to do and leaves the file alone
    before = open(res["path"]).read()
    lines.clear()
    E.reproduce("table1", TINY, out_dir=tmp_path, cache_dir=cache, log=lines.append, **KW)
    assert any("nothing to do" in line for line in lines)
    assert open(res["path"]).read() == before
    # a sweep into another folder takes every cell from the runner's per-task cache
    monkeypatch.setattr("pmi_tutorial.fingerprint.run_on_features",
                        lambda *a, **k: pytest.fail("a cached cell was computed again"))
    other = E.reproduce("table1", TINY, out_dir=tmp_path / "other", cache_dir=cache, log=lines.append, **KW)
    assert other["cells"] == res["cells"]


def test_other_settings_are_refused(table1, cache):
    out = table1[0]["path"].rsplit("/", 1)[0]
    with pytest.raises(ValueError, match="other settings.*trials"):
        E.reproduce("table1", TINY, out_dir=out, cache_dir=cache, log=lambda s: None,
                    **dict(KW, progress=False), trials=3)
    with pytest.raises(ValueError, match="other settings.*classes"):
        E.reproduce("table1", TINY, out_dir=out, cache_dir=cache, log=lambda s: None,
                    models=["mlp"], classes=[0, 2], progress=False)


def test_incompatible_or_broken_result_files(tmp_path, table1):
    good = json.loads(open(table1[0]["path"]).read())
    path = tmp_path / "table1_tiny.json"
    path.write_text(json.dumps(dict(good, version=E.RESULT_VERSION + 1)))
    with pytest.raises(ValueError, match="format version 2.*reads version 1.*rerun"):
        E.load_result(path)
    with pytest.raises(ValueError, match="format version"):
        E.reproduce("table1", TINY, out_dir=tmp_path, log=lambda s: None, **KW)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        E.load_result(path)
    path.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a pmi-tutorial result file"):
        E.load_result(path)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "cells"}))
    with pytest.raises(ValueError, match="lacks cells"):
        E.load_result(path)
    with pytest.raises(FileNotFoundError, match="reproduce"):
        E.load_result(tmp_path / "missing.json")


def test_table_printer_has_the_papers_columns(table1):
    text = E.format_table(table1[0])
    head, header, rule, *rows = text.splitlines()
    assert head.startswith("Table I - profile tiny, t = 5")
    columns = [c.strip() for c in header.split("  ") if c.strip()]
    assert columns == ["DNN Model", "m", "n", "r_opt", "acc_r_opt", "mean acc_r", "1/m"]
    assert E.TABLE_COLUMNS == tuple(columns)
    assert set(rule) <= {"-", " "}
    assert len(rows) == 2 and rows[0].startswith("MLP") and rows[1].startswith(" ")
    assert "0.33" in rows[0] and "0.25" in rows[1]  # the 1/m column


def test_table_printer_puts_the_papers_numbers_beside_ours():
    # Table I, MLP, m = 3, n = 100 in the paper: r_opt 6, acc 0.50, mean 0.392.
    cell = {"model": "mlp", "m": 3, "n": 100, "r_opt": 2, "acc_r_opt": 0.61, "mean_acc_r": 0.4,
            "acc_by_class": {}}
    result = {"settings": {"experiment": "table1", "profile": {"name": "paper"}, "trials": 100,
                           "seed": 0}, "cells": [cell]}
    row = E.format_table(result).splitlines()[3]
    assert row.split() == ["MLP", "3", "100", "2", "(6)", "0.61", "(0.50)", "0.400", "(0.392)", "0.33"]


def test_pruning_sweep_records_rates(cache, tmp_path):
    res = E.reproduce("figure2", TINY, out_dir=tmp_path, cache_dir=cache, log=lambda s: None, **KW)
    assert [(c["rate"], c["m"], c["n"]) for c in res["cells"]] == [(0.5, 3, 20)]
    assert 0 <= res["models"]["mlp"]["val_acc_after_prune"]["0.5"] <= 1
    header = E.format_table(res).splitlines()[1].split()
    assert header[:3] == ["DNN", "Model", "rate"]


def test_finetune_sweep_records_the_attack(cache, tmp_path):
    res = E.reproduce("table3", TINY, out_dir=tmp_path, cache_dir=cache, log=lambda s: None,
                      ms=[3], **KW)
    info = res["models"]["mlp"]
    assert info["finetune_epochs"] == 1 and info["finetune_samples"] == 4000  # 20% of 20,000
    assert len(res["cells"]) == 1


def test_plan_checks_its_input():
    assert len(E.plan(E.get_spec("table2"), QUICK)) == 2 * 3 * 3
    assert len(E.plan(E.get_spec("figure2"), QUICK)) == 4 * 9 * 3
    with pytest.raises(ValueError, match="not part of table1"):
        E.plan(E.get_spec("table1"), QUICK, models=["vgg19"])
    with pytest.raises(ValueError, match="unknown experiment"):
        E.get_spec("table5")
    with pytest.raises(ValueError, match="classes"):
        E.reproduce("table1", TINY, classes=[], log=lambda s: None)


def test_command_line(cache, tmp_path, monkeypatch, capsys):
    from pmi_tutorial import cli

    monkeypatch.setitem(profiles.PROFILES, "quick", replace(TINY, name="quick"))
    monkeypatch.setenv("PMI_CACHE_DIR", str(cache))
    argv = ["reproduce", "table1", "--profile", "quick", "--out", str(tmp_path), "--models", "mlp",
            "--ms", "3", "--classes", "0,1", "--no-progress"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "Table I - profile quick" in out and "DNN Model" in out
    saved = E.load_result(tmp_path / "table1_quick.json")
    assert saved["provenance"]["command"].startswith("python -m pmi_tutorial reproduce table1")
    assert cli.main(argv[:-1] + ["--ms", "three"]) == 2
    assert "--ms must be comma-separated integers" in capsys.readouterr().err


def test_cells_with_too_small_pools_are_marked_not_fatal(cache, tmp_path):
    # 50 training images per class: no class can give n = 60 members.
    res = E.reproduce("table1", TINY, out_dir=tmp_path, cache_dir=cache, log=lambda s: None,
                      ns=[20, 60], ms=[3], **KW)
    by_n = {c["n"]: c for c in res["cells"]}
    assert by_n[20]["acc_r_opt"] is not None and "skipped_classes" not in by_n[20]
    assert by_n[60]["acc_r_opt"] is None and set(by_n[60]["skipped_classes"]) == {"0", "1"}
    text = E.format_table(res)
    assert "n/a" in text and "class(es) 0 (|P| = 50, |Q| = " in text and "|P| >= n = 60" in text


def test_feasible_classes_leaves_out_only_the_small_pools():
    import numpy as np

    features = {0: (np.zeros((300, 10)), np.zeros((1200, 10))), 1: (np.zeros((300, 10)), np.zeros((1158, 10)))}
    usable, skipped = E.feasible_classes(features, m=5, n=300)
    assert list(usable) == [0] and list(skipped) == ["1"]
    assert "|Q| = 1158" in skipped["1"] and "n(m-1) = 1200" in skipped["1"]
    usable, skipped = E.feasible_classes(features, m=4, n=300)
    assert list(usable) == [0, 1] and skipped == {}
    cell = {"model": "vgg19", "m": 5, "n": 300, "r_opt": 6, "acc_r_opt": 1.0, "mean_acc_r": 0.95,
            "acc_by_class": {}, "skipped_classes": {"3": "|P| = 320, |Q| = 1158; needs ..."}}
    result = {"settings": {"experiment": "table4", "profile": {"name": "quick"}, "trials": 100, "seed": 0},
              "cells": [cell]}
    text = E.format_table(result)
    assert "0.950*" in text
    assert text.splitlines()[-1] == ("* VGG-19 m=5 n=300: class(es) 3 (|P| = 320, |Q| = 1158) left out: "
                                     "a trial needs |P| >= n = 300 and |Q| >= n(m-1) = 1200")


def test_sweep_on_a_dask_cluster_equals_the_in_process_sweep(table1, tmp_path, dask_engine):
    res = E.reproduce("table1", TINY, out_dir=tmp_path, cache_dir=tmp_path / "cache",
                      log=lambda s: None, engine=dask_engine, **KW)
    strip = lambda cells: [{k: v for k, v in c.items() if k != "seconds"} for c in cells]  # noqa: E731
    assert strip(res["cells"]) == strip(table1[0]["cells"])
    assert E.load_result(res["path"])["runs"][0]["cells_done"] == 2


# ----------------------------------------------------------------------------- bad input, no lost work


def test_unknown_experiment_names_the_known_ones(refused):
    refused(lambda: E.reproduce("table9"), ValueError, ["unknown experiment", "table1"])


def test_old_result_file_is_refused(tmp_path, refused):
    path = tmp_path / "table1_quick.json"
    path.write_text(json.dumps({"format": E.RESULT_FORMAT, "version": 0, "cells": []}))
    refused(lambda: E.load_result(path), ValueError, ["format version 0", "rerun the experiment"])
    assert not list(tmp_path.rglob("*.tmp"))


SWEEP_PROFILE = profiles.Profile(
    name="tiny", description="tests", epochs={"mlp": 2, "lenet5": 1, "vgg19": 1, "resnet34": 1},
    train_per_class={"mnist": 30, "cifar10": 30},
    width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 0.125, "resnet34": 0.125}, trials=15)
SWEEP = dict(models=["mlp"], ms=[2, 3], ns=[5, 10], classes=[0, 1], progress=False)

SWEEP_CHILD = textwrap.dedent("""
    import time, torch
    torch.set_num_threads({threads})
    from pmi_tutorial import experiments, fingerprint
    from pmi_tutorial.profiles import Profile
    slow = fingerprint.run_on_features
    def run_on_features(*a, **kw):  # a slower cell, so the kill lands mid-sweep
        time.sleep(0.5)
        return slow(*a, **kw)
    fingerprint.run_on_features = run_on_features
    experiments.reproduce("table1", Profile(**{profile!r}), out_dir={out!r}, cache_dir={cache!r},
                          log=lambda *a: None, **{sweep!r})
""")


def _cells(result):
    return {(c['model'], c.get('rate'), c['m'], c['n']): {k: v for k, v in c.items() if k != "seconds"}
            for c in result["cells"]}


def test_sweep_resumes_after_sigkill_and_is_deterministic(tmp_path, mnist_root, kill_when_ready):
    out, cache = tmp_path / "killed", tmp_path / "cache"
    path = E.result_path(out, "table1", SWEEP_PROFILE)
    profile = {k: v for k, v in SWEEP_PROFILE.to_dict().items()}
    code = SWEEP_CHILD.format(threads=1, profile=profile, out=str(out),
                              cache=str(cache), sweep=SWEEP)
    env = dict(os.environ, PMI_DATA_DIR=str(mnist_root))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)

    def one_cell_done():
        try:
            return len(json.loads(path.read_text())["cells"]) >= 1
        except (OSError, ValueError):  # not there yet; never half-written (os.replace)
            return False

    kill_when_ready(proc, one_cell_done)
    partial = E.load_result(path)  # the file the kill left loads
    assert 1 <= len(partial["cells"]) < 4, "killed too late to test anything"
    (out / f".{path.name}.k1ll3d.tmp").write_text('{"cells": [')  # as a kill mid-write leaves

    resumed = E.reproduce("table1", SWEEP_PROFILE, out_dir=out, cache_dir=cache, log=lambda *a: None,
                          **SWEEP)
    assert resumed["runs"][0]["cells_done"] == len(partial["cells"])
    full = E.reproduce("table1", SWEEP_PROFILE, out_dir=tmp_path / "full", cache_dir=tmp_path / "cache2",
                       log=lambda *a: None, **SWEEP)
    assert len(_cells(full)) == 4 and _cells(resumed) == _cells(full)
    assert _cells(E.load_result(path)) == _cells(full)
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    # determinism: the same seed, a second time from scratch (the cached model, new result file)
    again = E.reproduce("table1", SWEEP_PROFILE, out_dir=tmp_path / "again", cache_dir=tmp_path / "cache2",
                        log=lambda *a: None, **SWEEP)
    assert _cells(again) == _cells(full)
