r"""Reading result files in the book (chapters "Reproducing Tables I and II" and "Robustness").

The sweeps of :mod:`pmi_tutorial.experiments.tables` write one JSON result file per experiment. The
helpers here turn such a file into what a chapter shows:

* :func:`provenance_text` - who made the numbers: command, commit, hardware, date, profile and
  what that profile reduces;
* :func:`missing_cells` - the cells of the paper's sweep that the file does not hold yet;
* :func:`comparison` / :func:`largest_differences` - our acc_{r_opt} (Eq. 14) and mean acc_r
  (Eq. 15) beside the paper's, cell by cell;
* :func:`plot_pruning` - Figure 2 in the paper's style: bars for acc_{r_opt}, a line for the
  mean, the chance level 1/m drawn;
* :func:`plot_validation_curve` - the owner's validation accuracy per epoch and the epoch kept.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as V
from ..profiles import Profile
from .tables import MODEL_TITLES, get_spec, paper_table, plan


def _profile(result) -> Profile:
    d = dict(result["settings"]["profile"])
    for key in ("ms", "ns", "prune_rates", "reduced"):
        d[key] = tuple(d[key])
    return Profile(**d)


def _key(cell) -> tuple:
    return (cell["model"], cell.get("rate"), cell["m"], cell["n"])


def missing_cells(result, models=None) -> list[dict]:
    """The cells of the full sweep (every m, n and rate of the file's profile) not in ``result``.

    ``models`` limits the check to some architectures (e.g. the MNIST models of Figure 2).
    """
    spec = get_spec(result["settings"]["experiment"])
    done = {_key(c) for c in result["cells"]}
    return [c for c in plan(spec, _profile(result), models=models) if _key(c) not in done]


def provenance_text(result) -> str:
    """Where a result file's numbers come from, in a few lines (every run that added cells)."""
    s = result["settings"]
    prof = s["profile"]
    lines = [f"experiment: {get_spec(s['experiment']).title} ({s['experiment']}), profile "
             f"{prof['name']}, t = {s['trials']}, seed {s['seed']}, classes "
             f"{'all' if s.get('classes') is None else s['classes']}"]
    runs = result.get("runs") or [result["provenance"]]
    for i, run in enumerate(runs, 1):
        hw = run["hardware"]
        device = hw.get("gpu") or f"{hw.get('processor')} ({hw.get('cpu_count')} CPUs)"
        lines.append(f"run {i}: {run['command']}")
        lines.append(f"  commit {run['git_commit'][:12]}{'-dirty' if run['git_commit'].endswith('-dirty') else ''}"
                     f", {run['started']} -> {run.get('finished', '?')}, "
                     f"{run.get('cells_done', len(result['cells']))} cell(s), "
                     f"{run.get('seconds', result.get('run_seconds', 0)):.0f} s")
        lines.append(f"  on {device}; torch {run['versions']['torch']}, numpy "
                     f"{run['versions']['numpy']}, python {run['versions']['python']}")
    for name, info in result.get("models", {}).items():
        lines.append(f"model {MODEL_TITLES[name]}: {info['epochs']} epochs, width {info['width']:g}, "
                     f"{info.get('n_train', '?')} training / {info.get('n_val', '?')} validation images, "
                     f"best epoch {info['best_epoch']} (validation accuracy {info['best_val_acc']:.4f})")
    lines += [f"reduced: {item}" for item in prof["reduced"]] or ["reduced: nothing"]
    return "\n".join(lines)


def comparison(result) -> list[dict]:
    """Every cell with the paper's numbers beside ours and the differences (ours - paper).

    Keys: ``model``, ``m``, ``n``, ``r_opt``, ``acc_r_opt``, ``mean_acc_r``, ``paper_r_opt``,
    ``paper_acc_r_opt``, ``paper_mean_acc_r``, ``d_acc_r_opt``, ``d_mean_acc_r``; cells the
    paper has no number for (Figure 2) are left out.
    """
    paper = paper_table(result["settings"]["experiment"])
    spec = get_spec(result["settings"]["experiment"])
    rows = []
    for c in sorted(result["cells"], key=lambda c: (spec.models.index(c["model"]), c["m"], c["n"])):
        ref = paper.get((c["model"], c["m"], c["n"]))
        if ref is None or c["acc_r_opt"] is None:
            continue
        rows.append({"model": c["model"], "m": c["m"], "n": c["n"], "r_opt": c["r_opt"],
                     "acc_r_opt": c["acc_r_opt"], "mean_acc_r": c["mean_acc_r"],
                     "paper_r_opt": ref[0], "paper_acc_r_opt": ref[1], "paper_mean_acc_r": ref[2],
                     "d_acc_r_opt": round(c["acc_r_opt"] - ref[1], 4),
                     "d_mean_acc_r": round(c["mean_acc_r"] - ref[2], 4)})
    return rows


def largest_differences(result, k: int = 3, by: str = "d_acc_r_opt") -> list[dict]:
    """The ``k`` cells whose ``by`` difference (ours - paper) is largest in absolute value."""
    V.check_choice(by, ("d_acc_r_opt", "d_mean_acc_r"), "by")
    return sorted(comparison(result), key=lambda row: -abs(row[by]))[:k]


def _num(x) -> float:
    return np.nan if x is None else float(x)


def plot_pruning(result, models=None, ns=None, axes=None, m: int = 3):
    """Figure 2 in the paper's style: one panel per model, the pruning rate on the x axis.

    Bars show acc_{r_opt} (Eq. 14) and a line with markers the mean acc_r (Eq. 15), one colour
    per n; the dashed line is the chance level 1/m. Returns the figure.
    """
    import matplotlib.pyplot as plt

    from ..plotting import NEUTRAL_COLOR

    spec = get_spec(result["settings"]["experiment"])
    if spec.condition != "prune":
        raise ValueError(f"plot_pruning draws Figure 2; got a {spec.title} result file")
    cells = [c for c in result["cells"] if c["m"] == m]
    have = [name for name in spec.models if any(c["model"] == name for c in cells)]
    models = list(models or have)
    unknown = [name for name in models if name not in have]
    if unknown:
        raise ValueError(f"the result file holds no m = {m} cells for {unknown}; use some of {have}")
    ns = sorted(ns or {c["n"] for c in cells if c["model"] in models})
    if axes is None:
        fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models) + 1.6, 3.4), squeeze=False,
                                 sharey=True, layout="constrained")
        axes = axes[0]
    axes = np.atleast_1d(axes)
    if len(axes) != len(models):
        raise ValueError(f"axes holds {len(axes)} panels for {len(models)} models; pass one per model")
    colors = plt.get_cmap("viridis")(np.linspace(0.15, 0.75, len(ns)))
    width = 0.8 / len(ns)
    for ax, name in zip(axes, models):
        rates = sorted({c["rate"] for c in cells if c["model"] == name})
        x = np.arange(len(rates))
        for j, (n, color) in enumerate(zip(ns, colors)):
            by_rate = {c["rate"]: c for c in cells if c["model"] == name and c["n"] == n}
            acc = [_num(by_rate[r]["acc_r_opt"]) if r in by_rate else np.nan for r in rates]
            mean = [_num(by_rate[r]["mean_acc_r"]) if r in by_rate else np.nan for r in rates]
            offset = (j - (len(ns) - 1) / 2) * width
            ax.bar(x + offset, acc, width, color=color, alpha=0.85, label=f"acc$_{{r_{{opt}}}}$, n={n}")
            ax.plot(x + offset, mean, "o-", color=color, markeredgecolor="black", markersize=4,
                    label=rf"$\overline{{acc}}_r$, n={n}")
        ax.axhline(1 / m, color=NEUTRAL_COLOR, linestyle="--", linewidth=1.2, label=f"1/m = 1/{m}")
        ax.set_xticks(x, [f"{r:g}" for r in rates])
        ax.set_xlabel("pruning rate")
        ax.set_title(MODEL_TITLES[name])
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return axes[0].figure


def plot_validation_curve(result, model: str, ax=None):
    """The owner's validation (and training) accuracy per epoch, the kept epoch marked."""
    import matplotlib.pyplot as plt

    info = result["models"].get(model)
    if info is None or not info.get("val_acc_curve"):
        raise ValueError(f"the result file holds no training curve for {model!r}; "
                         f"use one of {sorted(result['models'])}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.2))
    epochs = np.arange(1, len(info["val_acc_curve"]) + 1)
    ax.plot(epochs, info["train_acc_curve"], color="0.6", linewidth=1, label="training accuracy")
    ax.plot(epochs, info["val_acc_curve"], color="C0", linewidth=1.2, label="validation accuracy")
    ax.axvline(info["best_epoch"], color="C3", linestyle="--", linewidth=1,
               label=f"kept: epoch {info['best_epoch']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{MODEL_TITLES[model]}: the best-validation epoch")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def signal_to_noise(features_P, features_Q, n: int) -> float:
    r"""How visible membership is to the linear kernel at mini-dataset size ``n``.

    After the joint normalization of Eq. 5-6 (here over P and Q together), the linear-kernel
    MMD^2 (Eq. 10-11) compares means only. Between the member mini-dataset and a non-member
    one its expectation is the squared mean shift
    :math:`\delta^2 = \lVert \bar P - \bar Q \rVert^2` plus sampling noise
    :math:`(\mathrm{tr}\,\Sigma_P + \mathrm{tr}\,\Sigma_Q)/n`; between two non-member
    mini-datasets it is noise alone. The ratio :math:`\delta^2 / ((\mathrm{tr}\,\Sigma_P +
    \mathrm{tr}\,\Sigma_Q)/n)` is returned: well below 1, PMI is close to a random guess.
    """
    P = np.asarray(features_P, dtype=np.float64)
    Q = np.asarray(features_Q, dtype=np.float64)
    if P.ndim != 2 or Q.ndim != 2 or P.shape[1] != Q.shape[1]:
        raise ValueError(f"features_P and features_Q must be (samples, c) arrays of one width, "
                         f"got shapes {P.shape} and {Q.shape}")
    n = V.check_positive_int(n, "n")
    both = np.concatenate([P, Q])
    mu, sd = both.mean(0), both.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    P, Q = (P - mu) / sd, (Q - mu) / sd
    shift2 = float(((P.mean(0) - Q.mean(0)) ** 2).sum())
    noise = float(P.var(0).sum() + Q.var(0).sum()) / int(n)
    return shift2 / noise
