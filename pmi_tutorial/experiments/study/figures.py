"""The study's figures and tables (book chapter "Beyond the paper")."""

from __future__ import annotations

import math

import numpy as np

from .design import ATTACK_TITLES, NEGATIVES
from .summary import groups, cells, record_acc, rejects, rule_cell, rule_rate, test_rate

# --------------------------------------------------------------------------- figures


def plot_paper_rule_fpr(summary: dict, arch: str, ax=None, rho=None):
    """Bars: how often the paper's rule accuses an independent model, per (m, n)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    grid = cells(summary, arch)
    if rho is None:  # the smallest threshold the summary holds
        first = rule_cell(summary, arch, *grid[0])
        rho = min(float(k.split("rho")[1]) for k in first if k.startswith("fpr_rho"))
    ms, ns = sorted({m for m, _ in grid}), sorted({n for _, n in grid})
    w = 0.8 / len(ms)
    for i, m in enumerate(ms):
        vals = [rule_rate(summary, arch, m, n, rho) for n in ns]
        ax.bar(np.arange(len(ns)) + (i - (len(ms) - 1) / 2) * w, vals, w, label=f"m = {m}")
    ax.set_xticks(range(len(ns)), [f"n = {n}" for n in ns])
    ax.set_ylim(0, 1)
    ax.set_ylabel("false-positive rate")
    ax.set_title(f"{_title(arch)}: paper's rule, rho = {rho:g}")
    ax.legend(fontsize=8)
    return ax


def plot_acc_distribution(records, arch: str, m: int = 3, n: int = 100, ax=None, rho=0.1):
    """Histograms of acc_{r_opt} for independent and owner models, with 1/m and 1/m + rho."""
    import matplotlib.pyplot as plt

    from ...plotting import MEMBER_COLOR, NEUTRAL_COLOR, NONMEMBER_COLOR

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    g = groups(records, arch)
    bins = np.linspace(0, 1, 41)
    for kind, color in (("independent", NONMEMBER_COLOR), ("owner", MEMBER_COLOR)):
        accs = [record_acc(r, m, n) for r in g.get(kind, [])]
        ax.hist([max(a) for a in accs], bins, color=color, alpha=0.6,
                label=f"{kind}: $acc_{{r_{{opt}}}}$")
        ax.hist([np.mean(a) for a in accs], bins, color=color, alpha=0.9, histtype="step",
                linestyle="--", label=f"{kind}: mean $acc_r$")
    ax.axvline(1 / m, color=NEUTRAL_COLOR, lw=1)
    ax.axvline(1 / m + rho, color="black", lw=1.5, linestyle=":")
    ax.set_xlabel(f"accuracy (m = {m}, n = {n})")
    ax.set_ylabel("models")
    ax.set_title(f"{_title(arch)}: chance 1/m (grey), 1/m + rho (dotted)")
    ax.legend(fontsize=7)
    return ax


def plot_roc(records, arch: str, statistics, ax=None):
    """ROC of "owner-derived (owners and attacked copies) vs independent", score -log10 p."""
    import matplotlib.pyplot as plt

    from ... import stats

    ax = ax or plt.subplots(figsize=(4, 4))[1]
    g = groups(records, arch)
    for s in statistics:
        neg = [-math.log10(r["tests"][s]["pvalue"]) for r in g.get("independent", [])]
        pos = [-math.log10(r["tests"][s]["pvalue"]) for k, rs in g.items() if k not in NEGATIVES
               for r in rs]
        fpr, tpr, _ = stats.roc_curve(pos, neg)
        ax.step(fpr, tpr, where="post", label=f"{s} (AUC {stats.auc(pos, neg):.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, linestyle=":")
    ax.set_xlabel("false-positive rate (independent models)")
    ax.set_ylabel("true-positive rate (owner-derived)")
    ax.set_title(f"{_title(arch)}: ROC of the p-values")
    ax.legend(fontsize=7, loc="lower right")
    return ax


def plot_pvalue_hist(records, arch: str, statistics, axes=None, kind="independent"):
    """Histograms of the permutation p-values of the independent models (uniform if valid);
    ``kind="resplit"``: each tested against its own random P."""
    import matplotlib.pyplot as plt

    from ...plotting import NONMEMBER_COLOR

    if axes is None:
        axes = plt.subplots(1, len(statistics), figsize=(2.4 * len(statistics), 2.4),
                            sharey=True)[1]
    axes = np.atleast_1d(axes)
    ind = groups(records, arch).get(kind, [])
    for ax, s in zip(axes, statistics):
        ax.hist([r["tests"][s]["pvalue"] for r in ind], np.linspace(0, 1, 11),
                color=NONMEMBER_COLOR, alpha=0.8)
        ax.axhline(len(ind) / 10, color="black", lw=1, linestyle=":")
        ax.set_title(s)
        ax.set_xlabel("p-value")
    axes[0].set_ylabel(f"{_title(arch)}: {kind}")
    return axes


def verdict_table(summary: dict, arch: str, statistics, alpha=0.05) -> str:
    """Markdown table: per owner group / attack, detected copies at ``alpha``, per statistic."""
    tests = summary[arch]["tests"]
    kinds = list(dict.fromkeys(k for s in statistics for k in tests[s]["verdicts"]))
    head = "| model | " + " | ".join(statistics) + " |"
    lines = [head, "|" + " --- |" * (len(statistics) + 1)]
    for kind in kinds:
        row = []
        for s in statistics:
            v = tests[s]["verdicts"].get(kind)
            if v is None:
                row.append("")
                continue
            k = sum(rejects(p, alpha) for p in v["pvalues"])
            row.append(f"{k}/{len(v['pvalues'])} (max p {max(v['pvalues']):.3f})")
        lines.append(f"| {ATTACK_TITLES.get(kind, kind)} | " + " | ".join(row) + " |")
    n_ind = summary[arch]["n_independent"]
    row = [f"{round(test_rate(summary, arch, s, alpha) * n_ind)}/{n_ind}" for s in statistics]
    lines.append("| **independent, owner's P (false positives)** | " + " | ".join(row) + " |")
    n_res = summary[arch].get("n_resplit", 0)
    if n_res:
        row = [f"{round(test_rate(summary, arch, s, alpha, 'resplit_fpr') * n_res)}/{n_res}"
               for s in statistics]
        lines.append("| **independent, own random P (false positives)** | "
                     + " | ".join(row) + " |")
    return "\n".join(lines)


def _title(arch):
    from ..tables import MODEL_TITLES

    return MODEL_TITLES.get(arch, arch)

