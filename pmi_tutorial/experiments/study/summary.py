"""The study's numbers: how often the paper's rule (Eq. 13-14) and the permutation tests
accuse independent models, and detect owner-derived ones (book chapter "Beyond the paper")."""

from __future__ import annotations

import numpy as np

from ... import _validate as V
from .design import NEGATIVES, StudyConfig

# --------------------------------------------------------------------------- the numbers


def paper_rule_accuses(acc_by_class, m: int, rho: float) -> bool:
    r"""Eq. 13-14: does :math:`\max_r acc_r - 1/m \ge \rho` accuse this model?"""
    from ...fingerprint import summarize as summarize_acc, verify

    return verify(summarize_acc(list(acc_by_class), m).acc_opt, m, rho)


def paper_rule_fpr(acc_lists, m: int, rho: float) -> float:
    """Fraction of models (each a list of acc_r over classes) that the paper's rule accuses."""
    acc_lists = list(acc_lists)
    if not acc_lists:
        raise ValueError("no models given; pass one list of acc_r per independent model")
    return float(np.mean([paper_rule_accuses(a, m, rho) for a in acc_lists]))


def naive_pvalue(acc_by_class, m: int, trials: int, bonferroni: bool = False) -> float:
    """The naive test at r_opt: the smallest per-class binomial p-value (optionally x c)."""
    from ...stats import binomial_pvalue

    p = [binomial_pvalue(a, trials, m) for a in acc_by_class]
    return min(1.0, len(p) * min(p)) if bonferroni else min(p)


def rejection_rate(pvalues, alpha: float) -> float:
    """Fraction of p-values <= alpha (the false-positive rate on independent models)."""
    p = V.as_float_array(list(pvalues), "pvalues", ndim=1)
    if p.size == 0:
        raise ValueError("no p-values given")
    return float(np.mean(p <= alpha + 1e-12))


def _groups(records, arch):
    out = {}
    for r in records:
        if r["arch"] == arch:
            out.setdefault(r["kind"], []).append(r)
    return out


def _rule_rates(accs, m, cfg, prefix) -> dict:
    """FPR of the paper's rule and of the naive binomial test on models with these acc_r."""
    out = {}
    if not accs:
        return out
    for rho in cfg.rhos:
        out[f"{prefix}fpr_rho{rho:g}"] = paper_rule_fpr(accs, m, rho)
    for alpha in cfg.alphas:
        out[f"{prefix}naive_fpr_a{alpha:g}"] = rejection_rate(
            [naive_pvalue(a, m, cfg.trials) for a in accs], alpha)
        out[f"{prefix}naive_bonferroni_fpr_a{alpha:g}"] = rejection_rate(
            [naive_pvalue(a, m, cfg.trials, True) for a in accs], alpha)
    return out


def summarize(records, cfg: StudyConfig) -> dict:
    """Per architecture: the paper's rule (FPR on independent models, TPR on owners, the naive
    binomial test), and per statistic the permutation test's FPR, TPR, AUC, TPR at FPR 1% / 5%
    and the verdict on every attacked copy.  Keys with ``resplit_`` hold the same rates for the
    independent models tested against their own random P (:func:`resplit_part`)."""
    from ... import stats

    out = {}
    for arch in dict.fromkeys(r["arch"] for r in records):
        g = _groups(records, arch)
        ind, own, res = g.get("independent", []), g.get("owner", []), g.get("resplit", [])
        rule = {}
        for key in (ind or own or [{"acc": {}}])[0]["acc"]:
            m = int(key[1:].split("_")[0])
            accs = [r["acc"][key] for r in ind]
            cell = {"acc_opt_independent": [max(a) for a in accs],
                    "mean_acc_independent": [round(float(np.mean(a)), 4) for a in accs]}
            cell.update(_rule_rates(accs, m, cfg, ""))
            cell.update(_rule_rates([r["acc"][key] for r in res], m, cfg, "resplit_"))
            for rho in cfg.rhos if own else ():
                cell[f"tpr_owner_rho{rho:g}"] = paper_rule_fpr([r["acc"][key] for r in own], m, rho)
            rule[key] = cell
        tests = {}
        derived = [k for k in g if k not in NEGATIVES]
        for s in cfg.statistics:
            p_ind = [r["tests"][s]["pvalue"] for r in ind if s in r["tests"]]
            p_res = [r["tests"][s]["pvalue"] for r in res if s in r["tests"]]
            cell = {"verdicts": {}}
            for kind in derived:
                p = [r["tests"][s]["pvalue"] for r in g[kind] if s in r["tests"]]
                if p:
                    cell["verdicts"][kind] = {"pvalues": p, **{
                        f"detected_a{a:g}": rejection_rate(p, a) for a in cfg.alphas}}
            if p_res:
                cell.update({f"resplit_fpr_a{a:g}": rejection_rate(p_res, a) for a in cfg.alphas})
            if p_ind:
                cell.update({f"fpr_a{a:g}": rejection_rate(p_ind, a) for a in cfg.alphas})
                p_pos = [p for v in cell["verdicts"].values() for p in v["pvalues"]]
                if p_pos:
                    pos, neg = -np.log10(p_pos), -np.log10(p_ind)
                    cell["auc"] = stats.auc(pos, neg)
                    for f in (0.01, 0.05):
                        cell[f"tpr_at_fpr{f:g}"] = stats.tpr_at_fpr(pos, neg, f)
            tests[s] = cell
        out[arch] = {"n_independent": len(ind), "n_resplit": len(res), "n_owners": len(own),
                     "paper_rule": rule, "tests": tests}
    return out


