"""The forensics beside the paper's Table I: per-variant comparison, the variant table, the
committed result file and its provenance (book chapter "Reproducing Tables I and II")."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .variants import Variant

RESULT_NAME = "forensics"
RESULT_FORMAT = "pmi-tutorial-forensics"


def result_path(out_dir, profile) -> Path:
    from ...profiles import Profile, get_profile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    return Path(out_dir) / f"{RESULT_NAME}_{prof.name}.json"


def paper_cells(models=("mlp", "lenet5")) -> dict:
    """The paper's Table I: ``{(model, m, n): (r_opt, acc_r_opt, mean_acc_r)}``."""
    from ..tables import paper_table

    return {k: v for k, v in paper_table("table1").items() if k[0] in models}


def compare(result: dict, variant: str, model: str | None = None) -> dict:
    """How one variant's cells stand beside the paper's Table I.

    Per (model, m, n) cell the seed-0 values (the draws of the committed Table I) and the
    range over all seeds; summaries: the mean absolute difference to the paper over the cells
    (``mad_acc_r_opt``, ``mad_mean_acc_r``, ``mad`` = both together), the same for the mean
    over seeds (``mad_seed_mean``), and how many cells hold the paper's value inside the range
    over seeds (``within_acc_r_opt``, ``within_mean_acc_r``).  ``model`` restricts to one model.
    """
    paper = paper_cells()
    by_cell: dict = {}
    for c in result["cells"]:
        if c["variant"] != variant or (model is not None and c["model"] != model):
            continue
        by_cell.setdefault((c["model"], c["m"], c["n"]), {})[c["seed"]] = c
    rows = []
    for key in sorted(by_cell, key=lambda k: (("mlp", "lenet5").index(k[0]) if k[0] in ("mlp", "lenet5") else 9, k[1], k[2])):
        seeds = by_cell[key]
        if key not in paper or 0 not in seeds:
            continue
        opt = np.array([s["acc_r_opt"] for s in seeds.values()])
        mean = np.array([s["mean_acc_r"] for s in seeds.values()])
        p = paper[key]
        rows.append({
            "model": key[0], "m": key[1], "n": key[2], "seeds": len(seeds),
            "r_opt": seeds[0]["r_opt"], "acc_r_opt": seeds[0]["acc_r_opt"], "mean_acc_r": seeds[0]["mean_acc_r"],
            "acc_r_opt_range": [float(opt.min()), float(opt.max())],
            "mean_acc_r_range": [float(mean.min()), float(mean.max())],
            "acc_r_opt_seed_mean": float(opt.mean()), "mean_acc_r_seed_mean": float(mean.mean()),
            "paper_r_opt": p[0], "paper_acc_r_opt": p[1], "paper_mean_acc_r": p[2],
        })
    if not rows:
        return {"variant": variant, "cells": 0, "rows": []}
    d_opt = np.array([abs(r["acc_r_opt"] - r["paper_acc_r_opt"]) for r in rows])
    d_mean = np.array([abs(r["mean_acc_r"] - r["paper_mean_acc_r"]) for r in rows])
    s_opt = np.array([abs(r["acc_r_opt_seed_mean"] - r["paper_acc_r_opt"]) for r in rows])
    s_mean = np.array([abs(r["mean_acc_r_seed_mean"] - r["paper_mean_acc_r"]) for r in rows])

    def inside(r, k):
        lo, hi = r[f"{k}_range"]
        return lo - 1e-9 <= r[f"paper_{k}"] <= hi + 1e-9

    return {
        "variant": variant, "cells": len(rows), "seeds": min(r["seeds"] for r in rows),
        "mad_acc_r_opt": float(d_opt.mean()), "mad_mean_acc_r": float(d_mean.mean()),
        "mad": float((d_opt.mean() + d_mean.mean()) / 2),
        "mad_seed_mean": float((s_opt.mean() + s_mean.mean()) / 2),
        "within_acc_r_opt": int(sum(inside(r, "acc_r_opt") for r in rows)),
        "within_mean_acc_r": int(sum(inside(r, "mean_acc_r") for r in rows)),
        "mean_acc_r_avg": float(np.mean([r["mean_acc_r"] for r in rows])),
        "acc_r_opt_avg": float(np.mean([r["acc_r_opt"] for r in rows])),
        "rows": rows,
    }


def variant_table(result: dict, model: str | None = None) -> list[dict]:
    """:func:`compare` of every variant in the result file (without the per-cell rows), in
    the order of the file, each with its description."""
    out = []
    for name, spec in result.get("variants", {}).items():
        c = compare(result, name, model)
        if c["cells"]:
            c = {k: v for k, v in c.items() if k != "rows"}
            c["description"] = Variant(**spec).describe()
            out.append(c)
    return out


def format_variant_table(result: dict, model: str | None = None) -> str:
    """The variant table as text: one line per variant, best match to the paper first."""
    rows = sorted(variant_table(result, model), key=lambda c: c["mad"])
    head = (f"{'variant':<46} {'cells':>5} {'MAD opt':>8} {'MAD mean':>8} {'MAD':>6} "
            f"{'in range opt/mean':>17} {'avg mean acc_r':>14}")
    lines = [head, "-" * len(head)]
    for c in rows:
        lines.append(
            f"{c['variant'][:46]:<46} {c['cells']:>5} {c['mad_acc_r_opt']:>8.3f} {c['mad_mean_acc_r']:>8.3f} "
            f"{c['mad']:>6.3f} {c['within_acc_r_opt']:>8}/{c['within_mean_acc_r']:<8} {c['mean_acc_r_avg']:>14.3f}")
    return "\n".join(lines)


def committed(profile: str = "paper") -> dict:
    """The committed forensics result ``pmi_tutorial/results/forensics_{profile}.json``."""
    from ... import files

    return files.committed_result(f"{RESULT_NAME}_{profile}", RESULT_FORMAT)


def format_cells(result: dict, variant: str, model: str | None = None) -> str:
    """One variant's cells in the paper's layout: ``seed 0 [min-max over seeds] (paper)``."""
    c = compare(result, variant, model)
    if not c["cells"]:
        return f"{variant}: no cells"
    lines = [f"{variant} ({Variant(**result['variants'][variant]).describe()}), {c['seeds']} seed(s); "
             "entries: seed 0 [range over seeds] (paper)",
             f"{'model':<7} {'m':>2} {'n':>4}  {'r_opt':>9}  {'acc_r_opt':>25}  {'mean acc_r':>28}"]
    for r in c["rows"]:
        lo, hi = r["acc_r_opt_range"]
        mlo, mhi = r["mean_acc_r_range"]
        lines.append(
            f"{r['model']:<7} {r['m']:>2} {r['n']:>4}  {r['r_opt']:>3} ({r['paper_r_opt']})  "
            f"{r['acc_r_opt']:.2f} [{lo:.2f}-{hi:.2f}] ({r['paper_acc_r_opt']:.2f})  "
            f"{r['mean_acc_r']:.3f} [{mlo:.3f}-{mhi:.3f}] ({r['paper_mean_acc_r']:.3f})")
    lines.append(f"mean |difference| to the paper: acc_r_opt {c['mad_acc_r_opt']:.3f}, "
                 f"mean acc_r {c['mad_mean_acc_r']:.3f}; paper inside the range over seeds: "
                 f"{c['within_acc_r_opt']}/{c['cells']} (acc_r_opt), {c['within_mean_acc_r']}/{c['cells']} (mean)")
    return "\n".join(lines)


def provenance_text(result: dict) -> str:
    """Where the forensics numbers come from: settings, every run, every model used."""
    s = result["settings"]
    lines = [f"forensics of Table I, profile {s['profile']}, t = {s['trials']}, seeds of the draws "
             f"{s['seeds'][0]}..{s['seeds'][-1]} (one-at-a-time variants: the first "
             f"{s.get('single_seeds') or len(s['seeds'])}; all of them for "
             f"{', '.join(s.get('full_seed_variants') or ['baseline'])} and the best combination)"]
    for i, run in enumerate(result.get("runs") or [result["provenance"]], 1):
        hw = run["hardware"]
        device = hw.get("gpu") or f"{hw.get('processor')} ({hw.get('cpu_count')} CPUs)"
        lines.append(f"run {i}: {run['command']}")
        lines.append(f"  commit {run['git_commit'][:12]}{'-dirty' if run['git_commit'].endswith('-dirty') else ''}, "
                     f"{run['started']} -> {run.get('finished', '?')}, {run.get('cells_done', 0)} cell(s), "
                     f"{run.get('seconds', 0):.0f} s on {device}; torch {run['versions']['torch']}")
    for key, info in result.get("models", {}).items():
        lines.append(f"model {key}: {info['cache_file']}, {info['n_train']} / {info['n_val']} images, "
                     f"epoch {info['best_epoch'] if info.get('kept') == 'best' else info['epochs']} of "
                     f"{info['epochs']} (training accuracy "
                     f"{info['best_train_acc'] if info.get('kept') == 'best' else info['last_train_acc']:.4f}, "
                     f"validation {info['best_val_acc'] if info.get('kept') == 'best' else info['last_val_acc']:.4f})")
    for model, names in (result.get("unavailable") or {}).items():
        lines.append(f"not run on {model} (no trained model): {', '.join(names)}")
    return "\n".join(lines)
