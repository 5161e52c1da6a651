"""The summary and the tables of Dataset Inference's positive control (:mod:`.di_control`;
book chapter "Dataset Inference: a positive control")."""

from __future__ import annotations

import numpy as np

from ..baselines.dataset_inference import authors_test


def _strip(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "walk"}


def _rate(ps, alpha):
    from ..stats import clopper_pearson

    k = int(np.sum(np.asarray(ps) <= alpha))
    return [k / len(ps), *clopper_pearson(k, len(ps))] if len(ps) else None


def summarize(cfg, records: list) -> dict:
    """Per suspect kind and test: the p-values (log10); for the innocent models, the rejection
    rates at 0.05 and 0.01 with Clopper-Pearson intervals and the KS test of uniformity; for
    the owner's copies, the share detected; the censored walks; the cost; the authors'
    aggregation beside ours."""
    from scipy.stats import kstest

    top = str(max(cfg.revealed))
    tests = {  # name -> log10 p-value of a record at size k
        "DI, one draw": lambda r, k: np.log10(max(r["di"]["first_draw"][k], 1e-300)),
        "DI, harmonic mean": lambda r, k: np.log10(max(r["di"]["hmean"][k], 1e-300)),
        "PMI rank, equal budget": lambda r, k: r["pmi"]["rank_equal"][k],
        "PMI tail, equal budget": lambda r, k: r["pmi"]["tail_equal"][k],
        "PMI rank, all of Q": lambda r, k: r["pmi"]["rank_full_q"][k],
        "PMI tail, all of Q": lambda r, k: r["pmi"]["tail_full_q"][k],
    }
    owner = next((r for r in records if r["kind"] == "owner"), None)
    authors = {}
    if owner is not None:
        om, on = owner["walk"]["members"]["distances"], owner["walk"]["nonmembers"]["distances"]
        for r in records:
            authors[f"{r['kind']}{r['index']}"] = authors_test(
                om, on, r["walk"]["members"]["distances"], r["walk"]["nonmembers"]["distances"],
                sizes=(10,), repeats=cfg.repeats, epochs=cfg.epochs, seed=cfg.seed)
    inn = [r for r in records if r["kind"] == "innocent"]
    out = {"log10_pvalues": {}, "innocent": {}, "detected": {}, "authors_aggregation": authors}
    for name, f in tests.items():
        out["log10_pvalues"][name] = {f"{r['kind']}{r['index']}": {k: float(f(r, k)) for k in map(str, cfg.revealed)}
                                      for r in records}
        e = {}
        for k in map(str, cfg.revealed):
            ps = [10.0 ** f(r, k) for r in inn]
            e[k] = {"n": len(ps), "rate_0.05": _rate(ps, 0.05), "rate_0.01": _rate(ps, 0.01),
                    "ks_pvalue": float(kstest(ps, "uniform").pvalue) if len(ps) > 1 else None}
        out["innocent"][name] = e
        copies = [r for r in records if r["kind"] != "innocent"]
        out["detected"][name] = {k: _rate([10.0 ** f(r, k) for r in copies], 0.05)
                                 for k in map(str, cfg.revealed)} if copies else {}
    ps_all = [10.0 ** r["di"]["log10_pvalue_all"] for r in inn]
    out["innocent"]["DI, all revealed at once"] = {top: {
        "n": len(ps_all), "rate_0.05": _rate(ps_all, 0.05), "rate_0.01": _rate(ps_all, 0.01),
        "ks_pvalue": float(kstest(ps_all, "uniform").pvalue) if len(ps_all) > 1 else None}}
    a_inn = [10.0 ** authors[f"innocent{r['index']}"]["log10_pvalue_all"] for r in inn] if authors else []
    a10 = [authors[f"innocent{r['index']}"]["first_draw"].get("10", np.nan) for r in inn] if authors else []
    out["innocent"]["DI, authors' rows, all test rows"] = {"n": len(a_inn), "rate_0.05": _rate(a_inn, 0.05),
                                                 "ks_pvalue": float(kstest(a_inn, "uniform").pvalue) if len(a_inn) > 1 else None}
    out["innocent"]["DI, authors' rows, 10 rows"] = {"n": len(a10), "rate_0.05": _rate(a10, 0.05),
                                                     "ks_pvalue": float(kstest(a10, "uniform").pvalue) if len(a10) > 1 else None}
    out["di_all"] = {f"{r['kind']}{r['index']}": r["di"]["log10_pvalue_all"] for r in records}
    out["acc_opt"] = {f"{r['kind']}{r['index']}": r["pmi"]["acc_opt"] for r in records}
    out["censored"] = {f"{r['kind']}{r['index']}": {"members": r["di"]["censored_members"],
                                                    "nonmembers": r["di"]["censored_nonmembers"]}
                       for r in records}
    cens = [np.mean(r["di"]["censored_members"] + r["di"]["censored_nonmembers"]) for r in records]
    out["cost"] = {
        "di_queries_per_image_median": float(np.median([r["di"]["queries_per_image"] for r in records])) if records else None,
        "di_seconds_per_forward_median": float(np.median([r["di"]["seconds"] / max(r["forward_seconds"], 1e-9)
                                                          for r in records])) if records else None,
        "pmi_queries_per_image": 1,
        "censored_median": float(np.median(cens)) if cens else None,
    }
    if owner is not None:
        out["owner"] = {"di_log10_pvalue_all": owner["di"]["log10_pvalue_all"],
                        "di_pvalue_10_first_draw": owner["di"]["first_draw"].get("10"),
                        "di_pvalue_10_hmean": owner["di"]["hmean"].get("10"),
                        "authors_pvalue_10_rows_hmean": authors["owner0"]["hmean"].get("10"),
                        "authors_log10_pvalue_all": authors["owner0"]["log10_pvalue_all"],
                        "detected_at_1e-6_per_image_10": bool(owner["di"]["hmean"].get("10", 1) <= 1e-6),
                        "detected_at_1e-6_authors_10_rows": bool(authors["owner0"]["hmean"].get("10", 1) <= 1e-6)}
    return out


def build_result(cfg, header: dict, models: list, records: list, complete: bool,
                 wall: float) -> dict:
    return {**header,
            "profile": (f"positive control ({cfg.name}), reduced for a 2-core CPU: " + cfg.banner()),
            "settings": cfg.to_dict(), "complete": bool(complete), "run_wall_seconds": round(wall, 1),
            "models": [m for m in models if "train_accuracy" in m],
            "records": [_strip(r) for r in records],
            "summary": summarize(cfg, records) if records else {}}


# --------------------------------------------------------------------------- tables

TITLES = {"owner": "owner", "finetune": "fine-tuned", "prune50": "pruned 50%", "int8": "int8 weights",
          "logprob": "probabilities only"}


def _p(log10p: float) -> str:
    if not np.isfinite(log10p):
        return "-"
    return "1" if log10p >= -0.005 else (f"{10 ** log10p:.2f}" if log10p > -2 else f"1e{log10p:.0f}")


def suspect_table(result: dict) -> str:
    """Markdown: per owner-derived suspect (and the innocent models' median), the p-values of
    Dataset Inference (ours at 10 revealed images: one draw, harmonic mean; all revealed at
    once; the authors' 10 rows) and of PMI's tests (all revealed members, non-members capped at
    Dataset Inference's count or all of Q), and the paper's acc at r_opt."""
    s, top = result["summary"], str(max(result["settings"]["revealed"]))
    lo = str(min(result["settings"]["revealed"]))
    lp, au = s["log10_pvalues"], s["authors_aggregation"]
    cols = [(f"DI, {lo}, one draw", lambda n: lp["DI, one draw"][n][lo]),
            (f"DI, {lo}, harmonic mean", lambda n: lp["DI, harmonic mean"][n][lo]),
            (f"DI, all {top}", lambda n: s["di_all"][n]),
            ("DI, authors' 10 rows, harmonic mean", lambda n: np.log10(max(au[n]["hmean"].get("10", np.nan), 1e-300))),
            (f"PMI rank, {top} + {top}", lambda n: lp["PMI rank, equal budget"][n][top]),
            (f"PMI tail, {top} + {top}", lambda n: lp["PMI tail, equal budget"][n][top]),
            (f"PMI rank, {top} + all Q", lambda n: lp["PMI rank, all of Q"][n][top])]
    rows = ["| suspect | " + " | ".join(c for c, _ in cols) + " | PMI acc at r_opt (m = 3) |",
            "|---|" + "---|" * (len(cols) + 1)]
    names = list(lp["DI, one draw"])
    for n in [n for n in names if not n.startswith("innocent")]:
        rows.append(f"| {TITLES.get(n[:-1], n)} | " + " | ".join(_p(f(n)) for _, f in cols)
                    + f" | {s['acc_opt'][n]:.2f} |")
    inn = [n for n in names if n.startswith("innocent")]
    if inn:
        rows.append(f"| innocent (median of {len(inn)}) | "
                    + " | ".join(_p(float(np.median([f(n) for n in inn]))) for _, f in cols)
                    + f" | {np.median([s['acc_opt'][n] for n in inn]):.2f} |")
    return "\n".join(rows)


def innocent_table(result: dict) -> str:
    """Markdown: per test, the innocent models accused at 0.05 (Clopper-Pearson 95% interval)
    and the KS test of their p-values against the uniform, at the smallest and the largest
    number revealed."""
    s, top = result["summary"], str(max(result["settings"]["revealed"]))
    lo = str(min(result["settings"]["revealed"]))
    rows = ["| test | revealed | accused at 0.05 (95% CI) | KS p (uniform) |", "|---|---|---|---|"]
    for name, e in s["innocent"].items():
        rows_label = "10 rows" if name.endswith("10 rows") else "all test rows"
        for k, v in (e.items() if "n" not in e else [(rows_label, e)]):
            if k not in (lo, top, rows_label) or not v["n"]:
                continue
            r = v["rate_0.05"]
            ks = "-" if v["ks_pvalue"] is None else f"{v['ks_pvalue']:.2g}"
            rows.append(f"| {name} | {k} | {round(r[0] * v['n'])} of {v['n']} ({r[1]:.2f}-{r[2]:.2f}) | {ks} |")
    return "\n".join(rows)
