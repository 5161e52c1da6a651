"""The confirmatory study's rates (:mod:`.confirmatory`): detection over worlds, innocents over
(world, innocent) pairs, each with its 95% Clopper-Pearson interval; the innocents' p-values
against the uniform law; how much of their z is the world and how much the model; the paper's
rule (Eq. 13-14) and Eq. 15 beside the tests; the registered targets, met or not."""

from __future__ import annotations

import math

import numpy as np

from .. import fingerprint
from ..stats import rejects_log10
from .paper_summary import ks_uniform, rate

INNOCENT = "innocent"
#: the attacks whose copies keep the owner's weights (the registered detection target)
WEIGHT_PRESERVING = ("finetune", "prune50", "int8", "fp16", "noise", "probabilities")
TESTS = ("rank+tail", "rank", "tail", "rank_logprob")


def paper_rule(acc, m: int, rho: float) -> bool:
    """Eq. 13-14: the best class's acc_r - 1/m >= rho."""
    s = fingerprint.summarize_classes(acc, m)
    return fingerprint.verify(s.acc_opt, m, rho)


def eq15(acc, m: int, rho: float) -> bool:
    """Eq. 15 read as a rule: the mean over classes of acc_r - 1/m >= rho."""
    s = fingerprint.summarize_classes(acc, m)
    return fingerprint.verify(s.mean_acc, m, rho)


def world_share(z_by_world: dict) -> dict:
    """One-way random-effects decomposition of the innocents' z by world (method of moments):
    ``{"world_variance", "model_variance", "world_share", "worlds", "per_world"}``; the share
    is the world's part of the total variance (0 when the worlds' means vary no more than the
    models' z predict).  Needs at least two worlds with two models each."""
    groups = [np.asarray(v, dtype=float) for v in z_by_world.values() if len(v) >= 2]
    if len(groups) < 2:
        return {"world_variance": None, "model_variance": None, "world_share": None,
                "worlds": len(groups), "per_world": None}
    sizes = np.array([len(g) for g in groups])
    grand = np.concatenate(groups).mean()
    ssb = float(sum(len(g) * (g.mean() - grand) ** 2 for g in groups))
    ssw = float(sum(((g - g.mean()) ** 2).sum() for g in groups))
    a, N = len(groups), int(sizes.sum())
    msb, msw = ssb / (a - 1), ssw / (N - a)
    n0 = (N - (sizes ** 2).sum() / N) / (a - 1)
    between = max(0.0, (msb - msw) / n0)
    return {"world_variance": between, "model_variance": msw,
            "world_share": between / (between + msw) if between + msw > 0 else 0.0,
            "worlds": a, "per_world": int(round(float(sizes.mean())))}


def _z(log10_p: float) -> float:
    from scipy.special import ndtri_exp

    lp = min(float(log10_p) * math.log(10.0), 0.0)
    return float(-ndtri_exp(lp)) if lp < 0 else -8.0


def summarize(records, cfg) -> dict:
    """``{"by_kind": {kind: {k: {...}}}, "innocents": {k: {...}}, "targets": {...}}``."""
    log_alpha = math.log10(cfg.alpha)
    kinds = [k for k in ("owner", *cfg.attacks) if any(r["kind"] == k for r in records)]
    out = {"alpha": cfg.alpha, "test": cfg.test, "worlds": sorted({r["world"] for r in records}),
           "by_kind": {}, "innocents": {}}
    for kind in kinds:
        rs = [r for r in records if r["kind"] == kind]
        cells = {}
        for k in cfg.revealed:
            cell = {}
            for t in TESTS:
                lp = [r["revealed"][str(k)][t] for r in rs]
                cell[t] = {**rate([rejects_log10(x, cfg.alpha) for x in lp]),
                           "median_log10_p": float(np.median(lp))}
            acc = [r["revealed"][str(k)]["acc"] for r in rs]
            cell["paper_rule"] = rate([paper_rule(a, cfg.m, cfg.rho) for a in acc])
            cell["eq15"] = rate([eq15(a, cfg.m, cfg.rho) for a in acc])
            cell["ties_logprob"] = float(np.median([r["revealed"][str(k)]["ties_logprob"]
                                                    for r in rs]))
            cells[str(k)] = cell
        out["by_kind"][kind] = cells
    inn = [r for r in records if r["kind"] == INNOCENT]
    for k in cfg.revealed if inn else ():
        cell = {}
        for t in TESTS:
            lp = [r["revealed"][str(k)][t] for r in inn]
            cell[t] = {**rate([rejects_log10(x, cfg.alpha) for x in lp]),
                       "ks": ks_uniform([10.0 ** x for x in lp])}
        acc = [r["revealed"][str(k)]["acc"] for r in inn]
        cell["paper_rule"] = rate([paper_rule(a, cfg.m, cfg.rho) for a in acc])
        cell["eq15"] = rate([eq15(a, cfg.m, cfg.rho) for a in acc])
        z_rank, z_primary = {}, {}
        for r in inn:
            z_rank.setdefault(r["world"], []).append(r["revealed"][str(k)]["rank_z"])
            z_primary.setdefault(r["world"], []).append(_z(r["revealed"][str(k)][cfg.test]))
        cell["rank_z_mean"] = float(np.mean([z for v in z_rank.values() for z in v]))
        cell["rank_z_by_world"] = world_share(z_rank)
        cell["primary_z_by_world"] = world_share(z_primary)
        cell["ties_logprob"] = float(np.median([r["revealed"][str(k)]["ties_logprob"] for r in inn]))
        out["innocents"][str(k)] = cell
    out["targets"] = targets(out, cfg)
    return out


def targets(summary: dict, cfg, max_revealed: int = 300, detect: float = 0.95) -> dict:
    """The registered targets, checked on this architecture's records: per weight-preserving
    copy, the smallest revealed size <= ``max_revealed`` detected in at least ``detect`` of the
    worlds by the primary test (None: none); the innocents' rate at alpha at every size."""
    out = {}
    for kind in ("owner", *WEIGHT_PRESERVING):
        cells = summary["by_kind"].get(kind)
        if cells is None:
            continue
        ok = [k for k in cfg.revealed if k <= max_revealed and cells[str(k)][cfg.test]["rate"] >= detect]
        out[kind] = min(ok) if ok else None
    return {"smallest_revealed_detected": out,
            "all_detected_by_300": bool(out) and all(v is not None for v in out.values())}
