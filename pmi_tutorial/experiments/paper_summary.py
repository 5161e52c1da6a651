r"""The numbers of the paper-scale study (:mod:`pmi_tutorial.experiments.paper_study`).

Per architecture and statistic: the false-positive rate on innocent models at each alpha with
its Clopper-Pearson interval, the KS test of the innocent p-values against the uniform
distribution (each innocent model against its own draw, and all against the owner's single
draw), how much the p-values of innocents that share one draw move together, AUC and TPR at 1%
FPR of owner-derived against innocent models, the verdict per attack, and the samples-revealed
curves.  Every function works on plain lists, so it is tested on synthetic inputs.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _validate as V
from ..stats import clopper_pearson, rejects, rejects_log10

NEGATIVE = "innocent"


# --------------------------------------------------------------------------- building blocks


def rate(flags, confidence: float = 0.95) -> dict:
    """``{"k", "n", "rate", "ci"}`` of a list of booleans (a false-positive or detection rate)."""
    flags = [bool(f) for f in flags]
    if not flags:
        raise ValueError("no models given")
    k, n = sum(flags), len(flags)
    return {"k": k, "n": n, "rate": k / n, "ci": list(clopper_pearson(k, n, confidence))}


def ks_uniform(pvalues) -> dict:
    """KS tests of p-values against U(0, 1): ``{"statistic", "pvalue", "n", "pvalue_liberal"}``.

    ``pvalue`` is the two-sided test of uniformity (a conservative test, whose p-values pile
    up near 1, fails it too).  ``pvalue_liberal`` is the one-sided test of validity: its null
    is that the p-values' distribution function lies on or below the diagonal,
    P(p <= a) <= a for every a, and a small value says the test accuses innocent models too
    often somewhere in (0, 1) (``scipy.stats.kstest(..., alternative="greater")``).
    """
    from scipy.stats import kstest

    p = V.as_float_array(list(pvalues), "pvalues", ndim=1)
    if p.size == 0:
        raise ValueError("no p-values given")
    res = kstest(p, "uniform")
    liberal = kstest(p, "uniform", alternative="greater")
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "n": int(p.size),
            "pvalue_liberal": float(liberal.pvalue)}


def shared_luck(pvalues) -> dict:
    r"""How far the normal scores :math:`z = \Phi^{-1}(1 - p)` of many innocent models sit from
    independent N(0, 1) draws: their mean (sd :math:`1/\sqrt{K}` if independent) and sd (1 if
    independent).  Models tested against one draw share that draw's luck: the mean moves away
    from 0 by more than its standard error, and the sd shrinks."""
    from scipy.special import ndtri

    p = np.clip(V.as_float_array(list(pvalues), "pvalues", ndim=1), 1e-300, 1 - 1e-16)
    z = ndtri(1 - p)
    K = z.size
    if K < 2:
        raise ValueError("need p-values of at least 2 models")
    return {"mean_z": float(z.mean()), "se_if_independent": 1 / math.sqrt(K),
            "mean_z_in_se": float(z.mean() * math.sqrt(K)), "sd_z": float(z.std(ddof=1))}


def detection(log10_p, alphas) -> dict:
    """Detected fraction at each alpha (with interval), the median and the largest log10 p."""
    lp = np.asarray(list(log10_p), dtype=np.float64)
    out = {f"a{a:g}": rate(rejects_log10(lp, a)) for a in alphas}
    out["median_log10_p"] = float(np.median(lp))
    out["max_log10_p"] = float(lp.max())
    return out


def separation(pos, neg) -> dict:
    """AUC and TPR at 1% FPR of "owner-derived" (``pos``) against innocent (``neg``) scores."""
    from ..stats import auc, tpr_at_fpr

    return {"auc": auc(pos, neg), "tpr_at_fpr0.01": tpr_at_fpr(pos, neg, 0.01),
            "n_pos": len(pos), "n_neg": len(neg)}


# --------------------------------------------------------------------------- reading records


def statistic_names(cfg) -> list:
    """Every p-value statistic of the study: the closed form, the directional test, and the
    calibrated and outlier permutation tests per feature."""
    return (["closed_form", "closed_form_tail", "directional"]
            + [f"{s}/{f}" for s in ("calibrated", "outlier") for f in cfg.features])


def log10_p(cell: dict, name: str):
    """The log10 p-value of statistic ``name`` in one measurement cell, or None if not run."""
    if name in ("closed_form", "closed_form_tail"):
        return cell[name]["log10_p"] if name in cell else None
    if name == "directional":
        return math.log10(cell["directional"])
    s, f = name.split("/")
    p = cell["features"].get(f, {}).get(s)
    return None if p is None else math.log10(p)


def acc_opt(cell: dict, feature: str) -> float:
    return float(max(cell["features"][feature]["acc"]))


def _values(records, name, k, select):
    out = []
    for r in records:
        if select(r) and str(k) in r["revealed"]:
            v = log10_p(r["revealed"][str(k)], name)
            if v is not None:
                out.append(v)
    return out


def _is_innocent(draw):
    return lambda r: r["kind"] == NEGATIVE and r["draw"] == draw


def _is_kind(kind):
    return lambda r: r["kind"] == kind


# --------------------------------------------------------------------------- the summary


def summarize_pvalues(records, name: str, k: int, alphas) -> dict:
    """One statistic at k revealed per class: calibration on innocents (both draws), detection
    per attack, separation."""
    out = {}
    for draw in ("own", "owner"):
        lp = _values(records, name, k, _is_innocent(draw))
        if lp:
            p = 10.0 ** np.asarray(lp)
            cell = {f"fpr_a{a:g}": rate(rejects(p, a)) for a in alphas}
            cell["ks"] = ks_uniform(p)
            if len(p) >= 2:
                cell["shared_luck"] = shared_luck(p)
            out[f"innocent_{draw}_draw"] = cell
    kinds = list(dict.fromkeys(r["kind"] for r in records if r["kind"] != NEGATIVE))
    out["verdicts"] = {kind: detection(_values(records, name, k, _is_kind(kind)), alphas)
                       for kind in kinds if _values(records, name, k, _is_kind(kind))}
    neg = [-v for v in _values(records, name, k, _is_innocent("owner"))]
    pos = [-v for kind in kinds for v in _values(records, name, k, _is_kind(kind))]
    if pos and neg:
        out["separation"] = separation(pos, neg)
    return out


def summarize_paper_rule(records, feature: str, k: int, m: int, rhos) -> dict:
    """The paper's rule (Eq. 13-14) on one feature: FPR with interval per draw and rho,
    detection per attack, AUC of acc_r_opt."""
    def accs(select):
        return [acc_opt(r["revealed"][str(k)], feature) for r in records
                if select(r) and str(k) in r["revealed"]]

    out = {}
    for draw in ("own", "owner"):
        a = accs(_is_innocent(draw))
        if a:
            out[f"innocent_{draw}_draw"] = {f"fpr_rho{rho:g}": rate([x - 1 / m >= rho - 1e-12 for x in a])
                                            for rho in rhos}
    kinds = list(dict.fromkeys(r["kind"] for r in records if r["kind"] != NEGATIVE))
    out["verdicts"] = {kind: {f"rho{rho:g}": rate([x - 1 / m >= rho - 1e-12 for x in accs(_is_kind(kind))])
                              for rho in rhos} for kind in kinds if accs(_is_kind(kind))}
    pos = [x for kind in kinds for x in accs(_is_kind(kind))]
    neg = accs(_is_innocent("owner"))
    if pos and neg:
        out["separation"] = separation(pos, neg)
    return out


def curves(records, name: str, revealed, alphas=(0.01, 0.05)) -> dict:
    """Samples-revealed curves: per kind (innocents per draw), per k, the median log10 p and
    the fraction detected (or, for innocents, accused) at each alpha in ``alphas``."""
    groups = {f"innocent_{d}_draw": _is_innocent(d) for d in ("own", "owner")}
    groups.update({kind: _is_kind(kind) for kind in dict.fromkeys(
        r["kind"] for r in records if r["kind"] != NEGATIVE)})
    out = {}
    for g, sel in groups.items():
        row = {}
        for k in revealed:
            lp = _values(records, name, k, sel)
            if lp:
                row[str(k)] = {"median_log10_p": float(np.median(lp)), "n": len(lp),
                               **{f"detected_a{a:g}": float(np.mean(rejects_log10(lp, a)))
                                  for a in alphas}}
        if row:
            out[g] = row
    return out


def summarize(records, cfg) -> dict:
    """Everything above, per architecture, at the largest number revealed (and the curves)."""
    out = {}
    k = max(cfg.revealed)
    for arch in dict.fromkeys(r["arch"] for r in records):
        rs = [r for r in records if r["arch"] == arch]
        cell = {"n_innocent": sum(r["kind"] == NEGATIVE and r["draw"] == "owner" for r in rs),
                "n_owners": sum(r["kind"] == "owner" for r in rs), "revealed": k,
                "statistics": {s: summarize_pvalues(rs, s, k, cfg.alphas)
                               for s in statistic_names(cfg)},
                "paper_rule": {f: summarize_paper_rule(rs, f, k, cfg.m, cfg.rhos)
                               for f in cfg.features},
                "curves": {s: curves(rs, s, cfg.revealed)
                           for s in ("closed_form", "closed_form_tail", "directional",
                                     "calibrated/logits", "outlier/logits")},
                "calibration_by_revealed": calibration_by_revealed(rs, cfg)}
        out[arch] = cell
    return out


def calibration_by_revealed(records, cfg) -> dict:
    """Per statistic and number revealed per class: :func:`ks_uniform` of the innocent models'
    p-values on their own draws (where there are at least 2)."""
    out = {}
    for name in statistic_names(cfg):
        row = {}
        for k in cfg.revealed:
            lp = _values(records, name, k, _is_innocent("own"))
            if len(lp) >= 2:
                row[str(k)] = ks_uniform(10.0 ** np.asarray(lp))
        if row:
            out[name] = row
    return out


def calibration_verdicts(summary: dict, arch: str, level: float = 0.01) -> dict:
    """``{statistic: {k: verdict}}`` from the own-draw KS tests of
    :func:`calibration_by_revealed`: "too liberal" where the one-sided test (p-values too
    small) rejects at ``level``, else "conservative" where uniformity is rejected, else
    "calibrated"."""
    out = {}
    for name, by_k in summary[arch].get("calibration_by_revealed", {}).items():
        out[name] = {k: ("too liberal" if ks["pvalue_liberal"] < level else
                         "conservative" if ks["pvalue"] < level else "calibrated")
                     for k, ks in by_k.items()}
    return out


# --------------------------------------------------------------------------- tables and figures

TITLES = {"closed_form": "closed form (Mann-Whitney, Stouffer)",
          "closed_form_tail": "closed form (tail count, exact)",
          "directional": "directional (permutation)"}


def _title(name: str) -> str:
    if name in TITLES:
        return TITLES[name]
    s, f = name.split("/")
    return f"{'calibrated acc_r' if s == 'calibrated' else 'outlier'} ({f})"


def _fmt_rate(cell) -> str:
    if cell is None:
        return ""
    lo, hi = cell["ci"]
    return f"{cell['k']}/{cell['n']} [{lo:.2f}, {hi:.2f}]"


def _pooled(cells):
    """One rate (with interval) from several ``{"k", "n"}`` cells pooled, or None if empty."""
    k = sum(c["k"] for c in cells)
    n = sum(c["n"] for c in cells)
    return rate([True] * k + [False] * (n - k)) if n else None


def calibration_table(summary: dict, arch: str, alpha: float = 0.05) -> str:
    """Markdown: per statistic, the false-positive rate at ``alpha`` (k/n [95% Clopper-Pearson])
    on innocents with their own draws and with the owner's draw, the KS p-value of their
    p-values against uniform, the shared-luck mean z (in standard errors), AUC and TPR at 1%
    FPR; the paper's rule (rho = 0.1) per feature below."""
    s = summary[arch]
    lines = ["| statistic | FPR, own draws | FPR, owner's draw | KS p, own (uniform / too "
             "liberal) | KS p, owner's | mean z, owner's (SE) | AUC | TPR at 1% FPR |",
             "|" + " --- |" * 8]
    for name, cell in s["statistics"].items():
        own, ow = cell.get("innocent_own_draw", {}), cell.get("innocent_owner_draw", {})
        sep = cell.get("separation", {})
        luck = ow.get("shared_luck", {})
        lines.append(
            f"| {_title(name)} | {_fmt_rate(own.get(f'fpr_a{alpha:g}'))} | "
            f"{_fmt_rate(ow.get(f'fpr_a{alpha:g}'))} | "
            + (f"{own['ks']['pvalue']:.3f} / {own['ks'].get('pvalue_liberal', float('nan')):.3f}"
               if "ks" in own else "")
            + " | " + (f"{ow['ks']['pvalue']:.3f}" if "ks" in ow else "")
            + f" | {luck.get('mean_z_in_se', float('nan')):.1f} | "
            f"{sep.get('auc', float('nan')):.2f} | {sep.get('tpr_at_fpr0.01', float('nan')):.2f} |")
    for f, cell in s["paper_rule"].items():
        own, ow = cell.get("innocent_own_draw", {}), cell.get("innocent_owner_draw", {})
        sep = cell.get("separation", {})
        lines.append(f"| paper's rule rho = 0.1 ({f}), uncalibrated | "
                     f"{_fmt_rate(own.get('fpr_rho0.1'))} | {_fmt_rate(ow.get('fpr_rho0.1'))} | | | | "
                     f"{sep.get('auc', float('nan')):.2f} | {sep.get('tpr_at_fpr0.01', float('nan')):.2f} |")
    return "\n".join(lines)


def headline_table(summary: dict, alpha: float = 0.05, rho: float = 0.1,
                   statistics=("closed_form", "closed_form_tail", "directional")) -> str:
    """Markdown: per architecture, the paper's rule (logits, ``rho``; uncalibrated) beside the
    calibrated tests at ``alpha``: the share of innocent models accused (own draws, owner's
    draw; k/n with 95% Clopper-Pearson interval), of owners detected and of attacked copies
    detected (all attacks pooled), at the largest number revealed per class."""
    lines = ["| model | test | innocent accused, own draws | innocent accused, owner's draw | "
             "owners detected | attacked copies detected |", "|" + " --- |" * 6]

    for arch, s in summary.items():
        rule = s["paper_rule"]["logits"]
        v = rule.get("verdicts", {})
        rows = [(f"paper's rule, rho = {rho:g} (uncalibrated)",
                 rule.get("innocent_own_draw", {}).get(f"fpr_rho{rho:g}"),
                 rule.get("innocent_owner_draw", {}).get(f"fpr_rho{rho:g}"),
                 v.get("owner", {}).get(f"rho{rho:g}"),
                 _pooled([c[f"rho{rho:g}"] for kind, c in v.items() if kind != "owner"]))]
        for st in statistics:
            cell = s["statistics"].get(st)
            if cell is None:
                continue
            v = cell.get("verdicts", {})
            rows.append((f"{_title(st)}, alpha = {alpha:g}",
                         cell.get("innocent_own_draw", {}).get(f"fpr_a{alpha:g}"),
                         cell.get("innocent_owner_draw", {}).get(f"fpr_a{alpha:g}"),
                         v.get("owner", {}).get(f"a{alpha:g}"),
                         _pooled([c[f"a{alpha:g}"] for kind, c in v.items() if kind != "owner"])))
        for name, *cells in rows:
            lines.append(f"| {arch} (revealed {s['revealed']} per class) | {name} | "
                         + " | ".join(_fmt_rate(c) for c in cells) + " |")
    return "\n".join(lines)


def verdict_table(summary: dict, arch: str, statistics=("closed_form", "closed_form_tail",
                                                         "directional", "calibrated/logits"),
                  alpha=0.01) -> str:
    """Markdown: per owner-derived kind, the fraction detected at ``alpha`` and the median
    log10 p, per statistic."""
    from .kinds import title

    s = summary[arch]["statistics"]
    statistics = [st for st in statistics if st in s]  # older result files lack some
    kinds = list(dict.fromkeys(k for st in statistics for k in s[st]["verdicts"]))
    lines = ["| model | " + " | ".join(_title(st) for st in statistics) + " |",
             "|" + " --- |" * (len(statistics) + 1)]
    for kind in kinds:
        cells = []
        for st in statistics:
            v = s[st]["verdicts"].get(kind)
            cells.append("" if v is None else
                         f"{v[f'a{alpha:g}']['k']}/{v[f'a{alpha:g}']['n']} (median log10 p "
                         f"{v['median_log10_p']:.1f})")
        lines.append(f"| {title(kind)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_revealed(summary: dict, arch: str, statistic: str = "closed_form", ax=None,
                  kinds=None):
    """Samples-revealed curves: median log10 p against members revealed per class, per kind."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    cur = summary[arch]["curves"].get(statistic, {})
    if not cur:
        ax.text(0.5, 0.5, "not in this result file", ha="center", transform=ax.transAxes)
    for kind in kinds or list(cur):
        if kind not in cur:
            continue
        ks = sorted(int(k) for k in cur[kind])
        style = dict(color="0.5", linestyle="--") if kind.startswith("innocent") else {}
        ax.plot(ks, [cur[kind][str(k)]["median_log10_p"] for k in ks], marker="o", label=kind,
                **style)
    ax.axhline(-2, color="black", lw=1, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("members revealed per class")
    ax.set_ylabel("median log10 p")
    ax.set_title(f"{arch}: {_title(statistic)}")
    if cur:
        ax.legend(fontsize=6)
    return ax


# --------------------------------------------------------------------------- from the records


def innocent_pvalues(records, arch: str, name: str, k: int, draw: str) -> np.ndarray:
    """The p-values of statistic ``name`` of every innocent ``arch`` model at ``k`` revealed per
    class, judged on its own draw (``draw="own"``) or on the owner's (``"owner"``), sorted."""
    V.check_choice(draw, ("own", "owner"), "draw")
    rs = [r for r in records if r["arch"] == arch]
    return np.sort(10.0 ** np.asarray(_values(rs, name, k, _is_innocent(draw)), dtype=float))


def uniform_order_band(n: int, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Pointwise band of the sorted sample of ``n`` U(0, 1) draws: the i-th smallest is
    Beta(i, n + 1 - i), so each of its ``confidence`` intervals comes from the Beta quantiles."""
    from scipy import stats as sps

    V.check_positive_int(n, "n")
    i = np.arange(1, n + 1)
    tail = (1 - confidence) / 2
    return sps.beta.ppf(tail, i, n + 1 - i), sps.beta.ppf(1 - tail, i, n + 1 - i)


def plot_qq(records, arch: str, name: str, k: int, ax=None):
    """QQ plot of the innocent models' p-values against U(0, 1) at ``k`` revealed per class:
    own draws and the owner's draw, with the 95% pointwise band of a uniform sample (log axes,
    where small p-values, the ones that accuse, are visible)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(3.4, 3.2))[1]
    lo_all = 1.0
    for draw, style in (("own", dict(marker="o", ms=3, lw=0, color="C0")),
                        ("owner", dict(marker="x", ms=3, lw=0, color="C3"))):
        p = innocent_pvalues(records, arch, name, k, draw)
        if not len(p):
            continue
        q = np.arange(1, len(p) + 1) / (len(p) + 1)
        ax.plot(q, p, label=f"{draw} draw{'s' if draw == 'own' else ''} ({len(p)})", **style)
        lo_all = min(lo_all, q[0], p[0])
        if draw == "own":
            lo, hi = uniform_order_band(len(p))
            ax.fill_between(q, lo, hi, color="C0", alpha=0.15, lw=0, label="95% band")
    ax.plot([lo_all, 1], [lo_all, 1], color="black", lw=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uniform quantile")
    ax.set_ylabel("innocent p-value")
    ax.set_title(f"{arch}: {_title(name)}", fontsize=8)
    ax.legend(fontsize=6)
    return ax


def paper_rule_table(summary: dict, arch: str) -> str:
    """Markdown: the paper's rule (Eq. 13-14) per feature and rho: the share of innocent models
    it accuses (own draws, owner's draw) and of owners and attacked copies it claims, each k/n
    with its 95% Clopper-Pearson interval."""
    lines = ["| feature | rho | innocent accused, own draws | innocent accused, owner's draw | "
             "owners claimed | attacked copies claimed |", "|" + " --- |" * 6]
    for f, cell in summary[arch]["paper_rule"].items():
        v = cell.get("verdicts", {})
        rhos = sorted({key[len("fpr_rho"):] for d in ("own", "owner")
                       for key in cell.get(f"innocent_{d}_draw", {})}, key=float)
        for rho in rhos:
            copies = _pooled([c[f"rho{rho}"] for kind, c in v.items() if kind != "owner"])
            lines.append(f"| {f} | {rho} | "
                         f"{_fmt_rate(cell.get('innocent_own_draw', {}).get(f'fpr_rho{rho}'))} | "
                         f"{_fmt_rate(cell.get('innocent_owner_draw', {}).get(f'fpr_rho{rho}'))} | "
                         f"{_fmt_rate(v.get('owner', {}).get(f'rho{rho}'))} | "
                         f"{_fmt_rate(copies)} |")
    return "\n".join(lines)


def plot_acc_opt(records, arch: str, k: int, m: int, rho: float = 0.1, feature: str = "logits",
                 ax=None):
    """Histograms of the paper's statistic acc_{r_opt} (Eq. 14) at ``k`` revealed per class: the
    innocent models (own draws) against the owners and their attacked copies; the dashed line is
    the claim threshold 1/m + rho (Eq. 13)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(5, 3.2))[1]
    rs = [r for r in records if r["arch"] == arch and str(k) in r["revealed"]]
    groups = {"innocent (own draws)": [r for r in rs if _is_innocent("own")(r)],
              "owners and attacked copies": [r for r in rs if r["kind"] != NEGATIVE]}
    bins = np.linspace(0, 1, 41)
    for (label, group), color in zip(groups.items(), ("C0", "C3")):
        ax.hist([acc_opt(r["revealed"][str(k)], feature) for r in group], bins=bins, alpha=0.5,
                color=color, label=f"{label} ({len(group)})")
    ax.axvline(1 / m + rho, color="black", linestyle="--", lw=1)
    ax.axvline(1 / m, color="0.5", linestyle=":", lw=1)
    ax.set_xlabel(f"acc_r_opt ({feature}, m = {m})")
    ax.set_ylabel("models")
    ax.set_title(f"{arch}: the paper's statistic", fontsize=9)
    ax.legend(fontsize=6)
    return ax
