"""Tests for pmi_tutorial.report: provenance, completeness, the comparison with the paper, Figure 2."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pmi_tutorial import experiments as E  # noqa: E402
from pmi_tutorial.experiments import report  # noqa: E402
from pmi_tutorial.profiles import QUICK  # noqa: E402

RUN = {"command": "python -m pmi_tutorial reproduce table1 --profile quick", "git_commit": "abc123" * 7,
       "hardware": {"processor": "Some CPU", "cpu_count": 2}, "started": "2025-01-01T00:00:00+00:00",
       "finished": "2025-01-01T00:01:00+00:00", "cells_done": 2, "seconds": 60.0,
       "versions": {"torch": "2.x", "numpy": "2.x", "python": "3.x"}}
MODEL = {"epochs": 4, "width": 1.0, "best_epoch": 3, "best_val_acc": 0.95, "n_train": 10, "n_val": 5,
         "val_acc_curve": [0.9, 0.93, 0.95, 0.94], "train_acc_curve": [0.9, 0.95, 0.99, 1.0]}


def fake_result(experiment, cells):
    settings = {"experiment": experiment, "profile": QUICK.to_dict(), "seed": 0, "trials": 100,
                "classes": None}
    import json

    settings = json.loads(json.dumps(settings))
    return {"format": E.RESULT_FORMAT, "version": E.RESULT_VERSION, "settings": settings,
            "provenance": RUN, "runs": [RUN], "models": {"mlp": MODEL}, "cells": cells}


def cell(model, m, n, acc, mean, rate=None, r_opt=0):
    c = {"model": model, "m": m, "n": n, "r_opt": r_opt, "acc_r_opt": acc, "mean_acc_r": mean,
         "acc_by_class": {}}
    if rate is not None:
        c["rate"] = rate
    return c


def test_missing_cells_lists_what_the_sweep_lacks():
    res = fake_result("table1", [cell("mlp", 3, 100, 0.5, 0.4), cell("mlp", 3, 200, 0.5, 0.4)])
    missing = report.missing_cells(res)
    assert len(missing) == 2 * 9 - 2  # MLP and LeNet-5, 3 m x 3 n each
    assert {"model": "mlp", "m": 3, "n": 100} not in missing
    assert len(report.missing_cells(res, models=["mlp"])) == 7
    fig2 = fake_result("figure2", [cell("mlp", 3, 100, 0.5, 0.4, rate=0.1)])
    assert len(report.missing_cells(fig2, models=["mlp"])) == 9 * 3 - 1


def test_comparison_matches_the_papers_table_i():
    # paper, Table I: MLP m=3 n=100 -> 0.50 / 0.392; LeNet-5 m=5 n=300 -> 0.51 / 0.314
    res = fake_result("table1", [cell("lenet5", 5, 300, 0.41, 0.3), cell("mlp", 3, 100, 0.8, 0.45)])
    rows = report.comparison(res)
    assert [(r["model"], r["m"], r["n"]) for r in rows] == [("mlp", 3, 100), ("lenet5", 5, 300)]
    assert rows[0]["paper_acc_r_opt"] == 0.5 and rows[0]["d_acc_r_opt"] == pytest.approx(0.3)
    assert rows[1]["paper_mean_acc_r"] == 0.314 and rows[1]["d_mean_acc_r"] == pytest.approx(-0.014)
    top = report.largest_differences(res, k=1)
    assert top == [rows[0]]
    assert report.largest_differences(res, k=1, by="d_mean_acc_r")[0]["model"] == "mlp"
    with pytest.raises(ValueError, match="unknown by .acc.; use one of .d_acc_r_opt."):
        report.largest_differences(res, by="acc")
    assert report.comparison(fake_result("figure2", [cell("mlp", 3, 100, 0.5, 0.4, rate=0.1)])) == []


def test_provenance_text_names_command_commit_hardware_and_reductions():
    res = fake_result("table1", [cell("mlp", 3, 100, 0.5, 0.4)])
    text = report.provenance_text(res)
    assert "Table I (table1), profile quick, t = 100, seed 0, classes all" in text
    assert RUN["command"] in text and "abc123abc123" in text and "Some CPU (2 CPUs)" in text
    assert "best epoch 3" in text
    for item in QUICK.reduced:
        assert f"reduced: {item}" in text


def test_plot_pruning_draws_bars_lines_and_chance():
    cells = [cell(model, 3, n, 0.3 + 0.1 * k, 0.3 + 0.05 * k, rate=rate)
             for model in ("mlp", "lenet5") for n in (100, 300) for k, rate in enumerate((0.1, 0.5, 0.9))]
    res = fake_result("figure2", cells)
    fig = report.plot_pruning(res)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["MLP", "LeNet-5"]
    ax = axes[0]
    heights = sorted(round(p.get_height(), 6) for p in ax.patches)
    assert heights == sorted([0.3, 0.4, 0.5] * 2)  # one bar per (rate, n)
    chance = [ln for ln in ax.lines if np.allclose(ln.get_ydata(), 1 / 3)]
    assert chance and chance[0].get_linestyle() == "--"
    means = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(means) == 2 and np.allclose(means[0].get_ydata(), [0.3, 0.35, 0.4])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "0.5", "0.9"]
    plt.close(fig)
    fig = report.plot_pruning(res, models=["lenet5"], ns=[300])
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 3
    plt.close(fig)
    with pytest.raises(ValueError, match="no m = 3 cells for"):
        report.plot_pruning(res, models=["vgg19"])
    with pytest.raises(ValueError, match="Figure 2"):
        report.plot_pruning(fake_result("table1", []))


def test_plot_validation_curve_marks_the_kept_epoch():
    res = fake_result("table1", [])
    ax = report.plot_validation_curve(res, "mlp")
    kept = [ln for ln in ax.lines if ln.get_linestyle() == "--"]
    assert kept and kept[0].get_xdata()[0] == 3
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="no training curve"):
        report.plot_validation_curve(res, "vgg19")


def test_committed_tables_load_through_the_package():
    # every committed sweep file is found as package data and passes the header and cell checks
    for name, profile in (("table1", "paper"), ("table2", "quick"), ("table3", "paper"),
                          ("table4", "quick"), ("figure2", "paper"), ("figure2", "quick")):
        res = E.committed_table(name, profile)
        assert res["settings"]["experiment"] == name
        assert res["settings"]["profile"]["name"] == profile
    with pytest.raises(ValueError, match="table1_paper"):  # the error lists what exists
        E.committed_table("table9", "paper")


def test_signal_to_noise_matches_the_gaussian_closed_form():
    # P ~ N(delta e_1, I), Q ~ N(0, I), equal sizes: after the joint normalization the first
    # component has variance 1 + delta^2 / 4, so shift^2 = delta^2 / (1 + delta^2/4) and
    # tr(Sigma_P) = tr(Sigma_Q) = (c - 1) + 1 / (1 + delta^2/4).
    rng = np.random.default_rng(0)
    c, delta, n, N = 4, 0.5, 100, 200_000
    P = rng.standard_normal((N, c))
    P[:, 0] += delta
    Q = rng.standard_normal((N, c))
    s = 1 + delta**2 / 4
    expected = (delta**2 / s) / (2 * ((c - 1) + 1 / s) / n)
    assert report.signal_to_noise(P, Q, n) == pytest.approx(expected, rel=0.02)
    assert report.signal_to_noise(Q[: N // 2], Q[N // 2:], n) < 0.01
    assert report.signal_to_noise(3 * P + 7, 3 * Q + 7, n) == pytest.approx(report.signal_to_noise(P, Q, n))
    with pytest.raises(ValueError, match="same width|one width"):
        report.signal_to_noise(P, Q[:, :2], n)
