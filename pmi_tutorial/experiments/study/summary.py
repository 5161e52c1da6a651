"""The study's numbers: how often the paper's rule (Eq. 13-14) and the permutation tests
accuse independent models, and detect owner-derived ones (book chapter "Beyond the paper")."""

from __future__ import annotations

import numpy as np

from ... import _validate as V
from ...stats.pvalues import rejects  # the one rejection rule (re-exported by study)
from .design import NEGATIVES, StudyConfig

# --------------------------------------------------------------------------- addressing results
# The result files key a cell (m, n) of the paper's rule as "m3_n100" and a rate by its kind and
# threshold ("fpr_rho0.1", "naive_fpr_a0.05", ...).  Those strings are built and read here only.


def cell_key(m: int, n: int) -> str:
    """The result files' key of the cell (m, n): ``cell_key(3, 100) == "m3_n100"``."""
    return f"m{int(m)}_n{int(n)}"


def parse_cell_key(key: str) -> tuple[int, int]:
    """``(m, n)`` of a key made by :func:`cell_key`."""
    m, n = key.split("_")
    if not (m.startswith("m") and n.startswith("n")):
        raise ValueError(f"{key!r} is not a cell key like 'm3_n100'")
    return int(m[1:]), int(n[1:])


def cells(summary: dict, arch: str) -> list[tuple[int, int]]:
    """The (m, n) cells of the paper's rule in ``summary`` for ``arch``, sorted."""
    return sorted(parse_cell_key(k) for k in _arch(summary, arch)["paper_rule"])


def record_acc(record: dict, m: int, n: int) -> list:
    """acc_r over the classes r of one model's record at the cell (m, n)."""
    return record["acc"][cell_key(m, n)]


def _arch(summary, arch):
    if arch not in summary:
        raise ValueError(f"the summary holds no architecture {arch!r}; use one of {sorted(summary)}")
    return summary[arch]


def rule_cell(summary: dict, arch: str, m: int, n: int) -> dict:
    """Everything the summary says about the paper's rule for ``arch`` at the cell (m, n)."""
    rule = _arch(summary, arch)["paper_rule"]
    key = cell_key(m, n)
    if key not in rule:
        raise ValueError(f"the summary holds no cell m = {m}, n = {n} for {arch}; use one of "
                         f"{cells(summary, arch)}")
    return rule[key]


RULE_RATES = ("fpr", "resplit_fpr", "tpr_owner")
NAIVE_RATES = ("naive_fpr", "naive_bonferroni_fpr", "resplit_naive_fpr",
               "resplit_naive_bonferroni_fpr")


def rule_rate(summary: dict, arch: str, m: int, n: int, rho: float, kind: str = "fpr") -> float:
    """How often the paper's rule (Eq. 13-14 at threshold ``rho``) fires at the cell (m, n).

    ``kind``: ``"fpr"`` (independent models against the owner's P), ``"resplit_fpr"``
    (independent models, each against its own random P) or ``"tpr_owner"`` (owner models).
    """
    V.check_choice(kind, RULE_RATES, "kind")
    return rule_cell(summary, arch, m, n)[f"{kind}_rho{float(rho):g}"]


def naive_rate(summary: dict, arch: str, m: int, n: int, alpha: float, kind: str = "naive_fpr") -> float:
    """How often the naive binomial test at r_opt rejects at level ``alpha`` at the cell (m, n).

    ``kind``: one of :data:`NAIVE_RATES` (with or without Bonferroni; owner's or own random P).
    """
    V.check_choice(kind, NAIVE_RATES, "kind")
    return rule_cell(summary, arch, m, n)[f"{kind}_a{float(alpha):g}"]


def test_rate(summary: dict, arch: str, statistic: str, alpha: float, kind: str = "fpr") -> float:
    """The permutation test's rejection rate at level ``alpha``: ``kind="fpr"`` (independent
    models, owner's P) or ``"resplit_fpr"`` (independent models, own random P)."""
    V.check_choice(kind, ("fpr", "resplit_fpr"), "kind")
    tests = _arch(summary, arch)["tests"]
    V.check_choice(statistic, tuple(tests), "statistic")
    return tests[statistic][f"{kind}_a{float(alpha):g}"]


test_rate.__test__ = False  # not a pytest test, despite its name


def detection_rate(summary: dict, arch: str, statistic: str, alpha: float, kind: str = "owner") -> float:
    """The fraction of the owner-derived models of ``kind`` (``"owner"`` or an attack such as
    ``"finetune"``) whose permutation p-value is <= ``alpha``."""
    tests = _arch(summary, arch)["tests"]
    V.check_choice(statistic, tuple(tests), "statistic")
    verdicts = tests[statistic]["verdicts"]
    V.check_choice(kind, tuple(verdicts), "kind")
    return verdicts[kind][f"detected_a{float(alpha):g}"]


# --------------------------------------------------------------------------- the numbers


def paper_rule_accuses(acc_by_class, m: int, rho: float) -> bool:
    r"""Eq. 13-14: does :math:`\max_r acc_r - 1/m \ge \rho` accuse this model?"""
    from ...fingerprint import summarize_classes, verify

    return verify(summarize_classes(list(acc_by_class), m).acc_opt, m, rho)


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
    return float(np.mean([rejects(x, alpha) for x in p]))




def groups(records, arch):
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


def summarize_records(records, cfg: StudyConfig) -> dict:
    """Per architecture: the paper's rule (FPR on independent models, TPR on owners, the naive
    binomial test), and per statistic the permutation test's FPR, TPR, AUC, TPR at FPR 1% / 5%
    and the verdict on every attacked copy.  Keys with ``resplit_`` hold the same rates for the
    independent models tested against their own random P (:func:`resplit_part`)."""
    from ... import stats

    out = {}
    for arch in dict.fromkeys(r["arch"] for r in records):
        g = groups(records, arch)
        ind, own, res = g.get("independent", []), g.get("owner", []), g.get("resplit", [])
        rule = {}
        for key in (ind or own or [{"acc": {}}])[0]["acc"]:
            m, _ = parse_cell_key(key)
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


