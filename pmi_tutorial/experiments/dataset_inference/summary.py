"""The rates of a run (innocent models' false positives with Clopper-Pearson intervals, detection per attack) and their Markdown tables."""

from __future__ import annotations


import numpy as np

from ...stats import clopper_pearson, rejects
from .config import DIConfig


# --------------------------------------------------------------------------- the summary


def _innocent_rates(inn, cfg: DIConfig, alphas) -> dict:
    """Rejection rates (Clopper-Pearson) and KS p-value of innocent models' p-values, per size."""
    from scipy.stats import kstest

    out = {}
    for k in map(str, cfg.revealed):
        first = [r["pvalue_first_draw"][k] for r in inn if k in r["pvalue_first_draw"]]
        hmean = [r["pvalue_hmean"][k] for r in inn if k in r["pvalue_hmean"]]
        if not first:
            continue
        e = {"n_models": len(first),
             "ks_pvalue_first_draw": float(kstest(first, "uniform").pvalue) if len(first) > 1 else None}
        for a in alphas:
            kf, kh = int(rejects(first, a).sum()), int(rejects(hmean, a).sum())
            e[f"fpr_first_draw_{a}"] = [kf / len(first), *clopper_pearson(kf, len(first))]
            e[f"fpr_hmean_{a}"] = [kh / len(hmean), *clopper_pearson(kh, len(hmean))]
        out[k] = e
    return out


def summarize(records, cfg: DIConfig, alphas=(0.01, 0.05)) -> dict:
    """Per architecture and size: innocent models' rejection rates (with Clopper-Pearson
    intervals) and KS test against the uniform of their first-draw p-values; per attack, the
    median p-values and the share detected; the cost in forward passes.  ``innocent``: the
    independent models against the owner's one draw; ``innocent_own_draw``: each against its own
    random member pool and its own draw of revealed images."""
    out = {}
    for arch in dict.fromkeys(r["arch"] for r in records):  # in the order of the records
        rs = [r for r in records if r["arch"] == arch]
        entry = {"innocent": {}, "innocent_own_draw": {}, "attacks": {}, "cost": {}}
        for view, kind in (("innocent", "independent"), ("innocent_own_draw", "resplit")):
            inn = [r for r in rs if r["kind"] == kind]
            entry[view] = _innocent_rates(inn, cfg, alphas)
        for kind in sorted({r["kind"] for r in rs} - {"independent", "resplit"}):
            group = [r for r in rs if r["kind"] == kind]
            entry["attacks"][kind] = {
                k: {"median_pvalue_hmean": float(np.median([r["pvalue_hmean"][k] for r in group])),
                    "detected_0.05_hmean": float(np.mean([r["pvalue_hmean"][k] <= 0.05 for r in group])),
                    "median_pvalue_first_draw": float(np.median([r["pvalue_first_draw"][k] for r in group])),
                    "detected_0.05_first_draw": float(np.mean([r["pvalue_first_draw"][k] <= 0.05 for r in group])),
                    "n_models": len(group)}
                for k in map(str, cfg.revealed) if all(k in r["pvalue_hmean"] for r in group)
            }
        entry["cost"] = {
            "median_forward_equivalents": float(np.median([r["forward_equivalents"] for r in rs])),
            "median_seconds": float(np.median([r["seconds"] for r in rs])),
            "median_seconds_ratio_to_forward": float(np.median(
                [r["seconds"] / max(r["forward_seconds"], 1e-9) for r in rs])),
        }
        out[arch] = entry
    return out


# --------------------------------------------------------------------------- tables


def innocent_table(summary) -> str:
    """Markdown table: innocent models' false-positive rates (both views) and KS p-values."""
    rows = ["| model | innocent models tested against | revealed | models | FPR at 0.05, one draw (95% CI) | FPR at 0.05, harmonic mean (95% CI) | KS p (one draw vs uniform) |",
            "|---|---|---|---|---|---|---|"]
    views = {"innocent": "the owner's one draw", "innocent_own_draw": "each its own draw"}
    for arch, s in summary.items():
        for view, title in views.items():
            for k, e in s[view].items():
                f, h = e["fpr_first_draw_0.05"], e["fpr_hmean_0.05"]
                rows.append(f"| {arch} | {title} | {k} | {e['n_models']} "
                            f"| {f[0]:.2f} ({f[1]:.2f}-{f[2]:.2f}) | {h[0]:.2f} ({h[1]:.2f}-{h[2]:.2f}) "
                            f"| {'-' if e['ks_pvalue_first_draw'] is None else format(e['ks_pvalue_first_draw'], '.2g')} |")
    return "\n".join(rows)


def attack_table(summary) -> str:
    """Markdown table: per attack and size, the median over suspects of Dataset Inference's
    headline p-value (the harmonic mean over draws), and the share detected with it at the
    largest size."""
    from ..kinds import titles

    titles = titles()
    found = {k for s in summary.values() for k in s["attacks"]}
    kinds = [k for k in titles if k in found] + sorted(found - set(titles))  # the titles' order
    sizes = sorted({k for s in summary.values() for a in s["attacks"].values() for k in a}, key=int)
    top = sizes[-1] if sizes else "300"
    rows = ["| model | suspect | median p (harmonic mean over draws), " + " | ".join(f"{k} revealed" for k in sizes)
            + f" | detected at 0.05 ({top} revealed) |", "|---|---|" + "---|" * (len(sizes) + 1)]
    for arch, s in summary.items():
        for kind in kinds:
            if kind not in s["attacks"]:
                continue
            a = s["attacks"][kind]
            cells = [f"{a[k]['median_pvalue_hmean']:.2g}" if k in a else "-" for k in sizes]
            det = f"{a[top]['detected_0.05_hmean']:.0%}" if top in a else "-"
            rows.append(f"| {arch} | {titles.get(kind, kind)} | " + " | ".join(cells) + f" | {det} |")
    return "\n".join(rows)


def paper_comparison(pmi_summary: dict, di_summary: dict, arch: str, total: int = 1000,
                     alpha: float = 0.05) -> str:
    """Markdown: PMI's calibrated tests and Dataset Inference on the paper-scale study's models
    at the same number of revealed samples, ``total`` (PMI: ``total / 10`` members per class
    and the validation images of each class; Dataset Inference: ``total`` members and
    ``total`` non-members), the share detected at ``alpha`` per suspect kind and, for innocent
    models with their own draws, the share accused (the false-positive rate).  A cell is
    empty where the result files hold no such models yet."""
    from ..paper_study import ATTACK_TITLES

    per_class = str(total // 10)
    pmi = pmi_summary.get(arch, {}).get("curves", {})
    di = di_summary.get(arch, {})
    tests = ("closed_form", "closed_form_tail", "directional")
    names = {"closed_form": "PMI rank test", "closed_form_tail": "PMI tail test",
             "directional": "PMI directional"}
    head = ("| suspect | " + " | ".join(names[t] for t in tests)
            + " | Dataset Inference, one draw | Dataset Inference, harmonic mean |")
    rows = [head, "|---|" + "---|" * (len(tests) + 2)]

    def pmi_cell(group):
        cells = []
        for t in tests:
            c = pmi.get(t, {}).get(group, {}).get(per_class)
            cells.append("" if c is None else f"{c[f'detected_a{alpha:g}']:.0%} of {c['n']}")
        return cells

    kinds = [k for k in ATTACK_TITLES if k in di.get("attacks", {}) or
             any(k in pmi.get(t, {}) for t in tests)]
    for kind in kinds:
        a = di.get("attacks", {}).get(kind, {}).get(str(total))
        d = (["", ""] if a is None else
             [f"{a[f'detected_{alpha:g}_first_draw']:.0%} of {a['n_models']}",
              f"{a[f'detected_{alpha:g}_hmean']:.0%} of {a['n_models']}"])
        label = ATTACK_TITLES[kind] + (" (labels only for Dataset Inference)" if kind == "owner" else "")
        rows.append(f"| {label} | " + " | ".join(pmi_cell(kind) + d) + " |")
    e = di.get("innocent_own_draw", {}).get(str(total))
    d = (["", ""] if e is None else
         [f"{e[f'fpr_first_draw_{alpha:g}'][0]:.0%} of {e['n_models']}",
          f"{e[f'fpr_hmean_{alpha:g}'][0]:.0%} of {e['n_models']}"])
    rows.append("| innocent, own draws (false positives) | "
                + " | ".join(pmi_cell("innocent_own_draw") + d) + " |")
    return "\n".join(rows)
