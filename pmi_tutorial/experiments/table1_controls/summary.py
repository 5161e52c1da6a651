"""The controls' summary and text: the paper's two criteria per cell with Clopper-Pearson
intervals, the distance to the paper's Table I, the result file (written round by round by
:func:`run_controls`), the tables the chapter prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ... import files as F
from .. import forensics as FZ
from .. import runner
from .design import MLP, RESULT_FORMAT, RESULT_NAME, ControlsConfig, config_from_dict, parse_variant
from .tasks import experiment, steps


def claims(cell: dict, m: int, rho: float) -> dict:
    """The paper's two criteria on one cell: Eq. 13-14 on acc_{r_opt}, Eq. 15 on the mean."""
    from ...fingerprint import EQ13_SLACK, verify

    return {"eq13_14": verify(cell["acc_r_opt"], m, rho),
            "eq15": bool(cell["mean_acc_r"] - 1.0 / m >= rho - EQ13_SLACK)}


def _rate(k: int, n: int) -> dict:
    from ...stats import clopper_pearson

    lo, hi = clopper_pearson(k, n)
    return {"k": int(k), "n": int(n), "rate": k / n, "ci": [lo, hi]}


def summarize(records: list, cfg: ControlsConfig) -> dict:
    """Per group (split, role, pools, variant): Table I over the models, the claims of Eq. 13-14
    and Eq. 15 per cell (models claimed on the first draw seed, with Clopper-Pearson
    intervals), and the distance to the paper's Table I (the forensics' objective)."""
    paper = FZ.paper_cells((cfg.arch,))
    groups: dict = {}
    for rec in records:
        groups.setdefault((rec["split"], rec["role"], rec["pools"], rec["variant"]), []).append(rec)
    first = cfg.draw_seeds[0]
    out = []
    for (split, role, pools, variant), recs in groups.items():
        recs = sorted(recs, key=lambda r: r["index"])
        cells = []
        fresh = [i for i, r in enumerate(recs) if r["train_seed"] not in cfg.search_train_seeds
                 or r["role"] != "owner"]
        dists, dists_fresh = [], []
        for m in cfg.ms:
            for n in cfg.ns:
                per = [[c for c in r["cells"] if c["m"] == m and c["n"] == n] for r in recs]
                opt = np.array([[c["acc_r_opt"] for c in p] for p in per])
                mean = np.array([[c["mean_acc_r"] for c in p] for p in per])
                p = paper.get((cfg.arch, m, n))
                row = {"m": m, "n": n, "models": len(recs),
                       "acc_r_opt": {"mean": float(opt.mean()), "min": float(opt.min()), "max": float(opt.max())},
                       "mean_acc_r": {"mean": float(mean.mean()), "min": float(mean.min()), "max": float(mean.max())},
                       "paper": None if p is None else {"r_opt": p[0], "acc_r_opt": p[1], "mean_acc_r": p[2]},
                       "claims": {}}
                if p is not None:
                    dists.append((abs(opt.mean() - p[1]) + abs(mean.mean() - p[2])) / 2)
                    if fresh:
                        dists_fresh.append((abs(opt[fresh].mean() - p[1]) + abs(mean[fresh].mean() - p[2])) / 2)
                for rho in cfg.rhos:
                    if not 0 < rho <= 1 - 1 / m:
                        continue
                    at_first = [claims(next(c for c in pc if c["seed"] == first), m, rho) for pc in per]
                    every = [claims(c, m, rho) for pc in per for c in pc]
                    row["claims"][str(rho)] = {
                        crit: {**_rate(sum(a[crit] for a in at_first), len(at_first)),
                               "all_seeds": [int(sum(a[crit] for a in every)), len(every)]}
                        for crit in ("eq13_14", "eq15")}
                cells.append(row)
        out.append({"split": split, "role": role, "pools": pools, "variant": variant,
                    "indices": [r["index"] for r in recs],
                    "train_seeds": [r["train_seed"] for r in recs],
                    "val_acc": [r["training"]["last_val_acc" if parse_variant(variant).kept == "last"
                                              else "best_val_acc"] for r in recs],
                    "distance_to_paper": float(np.mean(dists)) if dists else None,
                    # over the models the forensics' search did not see (owners' training seeds
                    # outside search_train_seeds; every innocent)
                    "distance_to_paper_fresh": float(np.mean(dists_fresh)) if dists_fresh else None,
                    "fresh_train_seeds": [recs[i]["train_seed"] for i in fresh],
                    "cells": cells})
    return {"groups": out, "first_draw_seed": first}


def group(result: dict, split: str, role: str, pools: str = "heldout", variant: str | None = None):
    """One group of the summary (None when it has no model yet)."""
    cfg = config_from_dict(result["settings"])
    variant = variant or FZ.variant_name(parse_variant(cfg.variant, split=split))
    for g in result["summary"]["groups"]:
        if (g["split"], g["role"], g["pools"], g["variant"]) == (split, role, pools, variant):
            return g
    return None


def result_dict(records, cfg: ControlsConfig, prov: dict, complete: bool) -> dict:
    return {"format": RESULT_FORMAT, "version": F.RESULT_FORMATS[RESULT_FORMAT], "provenance": prov,
            "device": "cpu", "note": "a CPU run (torch on one thread per process); no GPU was used",
            "complete": bool(complete), "settings": cfg.to_dict(),
            "design": ("owner k trains on the whole training part from seed k; innocent k trains on "
                       "the training part without the held-out members P' from seed innocent_seed + k; "
                       "every model is measured on P' and Q (pools 'heldout'), the owners also on the "
                       "whole P (pools 'full', the paper's Table I); one split per kind (split_seed)"),
            "records": records, "summary": summarize(records, cfg) if records else {"groups": []}}


def result_path(out, cfg: ControlsConfig) -> Path:
    return Path(out) / f"{RESULT_NAME}_{cfg.name}.json"


def run_controls(cfg: ControlsConfig = MLP, out=None, root=None, cache_dir=None, engine=None,
                 command=None, progress=True, rounds: bool = True) -> dict:
    """Run (or resume) the controls round by round; returns the result dictionary.

    Round k plans the models of the first k entries of :func:`steps` (innocent and owner k of
    one split kind), so each round's models are measured (and re-scored) before the next round
    trains.  ``out``: the folder of ``table1_controls_{cfg.name}.json``,
    rewritten after every round (``"complete": false`` until the run has finished).
    """
    import torch

    torch.set_num_threads(1)
    prov = F.result_header(RESULT_FORMAT, command)["provenance"]
    state = {}
    K = len(steps(cfg))
    plan_rounds = [(k, True) for k in range(1, K + 1)] if rounds else [(K, True)]
    for i, (upto, rescore) in enumerate(plan_rounds):
        last_round = i == len(plan_rounds) - 1

        def write(records, p, complete, last_round=last_round):
            state["result"] = result_dict(records, cfg, p, complete and last_round)
            if out is not None:
                F.write_json_atomic(result_path(out, cfg), state["result"])

        exp = experiment(cfg, upto, rescore, root, cache_dir, write)
        runner.run(exp, engine=engine, progress=progress, provenance=prov)
    return state["result"]


def read(path) -> dict:
    """A controls result file, checked (:func:`pmi_tutorial.files.read_result`)."""
    return F.read_result(path, RESULT_FORMAT)


def committed(name: str = "mlp") -> dict:
    return F.committed_result(f"{RESULT_NAME}_{name}", RESULT_FORMAT)


# --------------------------------------------------------------------------- text


def format_table(result: dict, split: str, rho: float = 0.1) -> str:
    """Owners and innocents side by side on P' and Q: seed-mean [min-max over models and draw
    seeds] of acc_{r_opt} and mean acc_r, the paper's values, and the models claimed (first
    draw seed) by Eq. 13-14 and Eq. 15 at ``rho``."""
    own, inn = group(result, split, "owner"), group(result, split, "innocent")
    if own is None and inn is None:
        return f"{split}: no model measured yet"
    cfg = config_from_dict(result["settings"])
    head = (f"{split} split, {cfg.variant}, pools P' and Q; entries: mean [min-max] over models and "
            f"draw seeds; claims at rho = {rho} on draw seed {cfg.draw_seeds[0]}")
    lines = [head, f"{'m':>2} {'n':>4} | {'owners acc_opt':>19} {'mean acc_r':>19} | "
             f"{'innocents acc_opt':>19} {'mean acc_r':>19} | {'paper':>11} | "
             f"{'Eq13-14 own/inn':>15} {'Eq15 own/inn':>13}"]

    def val(g, i, what):
        if g is None:
            return " " * 19
        x = g["cells"][i][what]
        return f"{x['mean']:.3f} [{x['min']:.2f}-{x['max']:.2f}]"

    def cl(g, i, crit):
        if g is None or str(rho) not in g["cells"][i]["claims"]:
            return "-"
        c = g["cells"][i]["claims"][str(rho)][crit]
        return f"{c['k']}/{c['n']}"

    def paper_text(p):
        return f"{p['acc_r_opt']:.2f}/{p['mean_acc_r']:.3f}" if p else "-"

    ref = own or inn
    for i, row in enumerate(ref["cells"]):
        p = row["paper"]
        lines.append(f"{row['m']:>2} {row['n']:>4} | {val(own, i, 'acc_r_opt'):>19} {val(own, i, 'mean_acc_r'):>19} | "
                     f"{val(inn, i, 'acc_r_opt'):>19} {val(inn, i, 'mean_acc_r'):>19} | "
                     f"{paper_text(p):>11} | "
                     f"{cl(own, i, 'eq13_14') + ' / ' + cl(inn, i, 'eq13_14'):>15} "
                     f"{cl(own, i, 'eq15') + ' / ' + cl(inn, i, 'eq15'):>13}")
    for name, g in (("owners", own), ("innocents", inn)):
        if g is not None:
            d = g["distance_to_paper"]
            lines.append(f"{name}: models {g['indices']} (training seeds {g['train_seeds']}), "
                         "distance to the paper " + ("-" if d is None else f"{d:.3f}"))
    return "\n".join(lines)


def rescore_table(result: dict) -> str:
    """The search path re-scored: distance to the paper (the forensics' objective, on the mean
    over models and draws) on new draws of the owners the search used, and on owners it never
    saw, beside the distance the search saw."""
    cfg = config_from_dict(result["settings"])
    try:
        seen = {p["variant"]: p["objective"] for p in FZ.committed("paper")["search"]["path"]}
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        seen = {}
    lines = [f"search path re-scored on draw seeds {list(cfg.draw_seeds)} (the search used draw seeds "
             f"{list(cfg.search_draw_seeds)} on training seed(s) {list(cfg.search_train_seeds)})",
             f"{'variant':<80} {'search':>6} {'seed-0 owner':>12} {'new owners':>10}"]
    for name in cfg.rescore:
        g = group(result, parse_variant(name).split, "owner", "full", name)
        old = [i for i, s in enumerate(g["train_seeds"]) if s in cfg.search_train_seeds] if g else []
        same = None
        if g and old:
            same = rescored_distance(result, name, [g["indices"][i] for i in old])
        new = g["distance_to_paper_fresh"] if g else None
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        lines.append(f"{name:<80} {fmt(seen.get(name)):>6} {fmt(same):>12} {fmt(new):>10}"
                     + (f"  (owners {g['fresh_train_seeds']})" if g and g["fresh_train_seeds"] else ""))
    return "\n".join(lines)


def rescored_distance(result: dict, variant: str, indices) -> float | None:
    """The forensics' objective for one variant over the owners ``indices`` (pools ``full``):
    mean over the paper's cells of (|acc_r_opt - paper| + |mean acc_r - paper|) / 2, each value
    the mean over those owners and their draw seeds."""
    cfg = config_from_dict(result["settings"])
    paper = FZ.paper_cells((cfg.arch,))
    recs = [r for r in result["records"] if r["role"] == "owner" and r["pools"] == "full"
            and r["variant"] == variant and r["index"] in set(indices)]
    d = []
    for m in cfg.ms:
        for n in cfg.ns:
            cs = [c for r in recs for c in r["cells"] if (c["m"], c["n"]) == (m, n)]
            p = paper.get((cfg.arch, m, n))
            if cs and p is not None:
                d.append((abs(np.mean([c["acc_r_opt"] for c in cs]) - p[1])
                          + abs(np.mean([c["mean_acc_r"] for c in cs]) - p[2])) / 2)
    return float(np.mean(d)) if d else None
