"""Tables and sentences of the confirmatory study for the chapter "A confirmatory study"
(formatting only: every number comes from the result file's summary,
:mod:`.confirmatory_summary`)."""

from __future__ import annotations

from .. import attacks
from ..display import Table


def title(kind: str) -> str:
    return "owner (no attack)" if kind == "owner" else attacks.ATTACKS[kind].title


def fmt_rate(cell: dict) -> str:
    """``k/n (lo-hi)``: a rate with its 95% Clopper-Pearson interval in percent."""
    lo, hi = cell["ci"]
    return f"{cell['k']}/{cell['n']} ({100 * lo:.0f}-{100 * hi:.0f})"


def worlds_line(result: dict) -> str:
    cfg = result["settings"]
    done = len(result["worlds_done"])
    state = "complete" if result["complete"] and done == cfg["worlds"] else "incomplete"
    return (f"{cfg['arch']}: {done} of {cfg['worlds']} registered worlds measured ({state}); "
            f"{cfg['n_innocent']} innocent models per world")


def detection_table(result: dict) -> Table:
    """Per suspect kind: the primary test's detection rate over worlds at each revealed size."""
    s, cfg = result["summary"], result["settings"]
    test, sizes = cfg["test"], [str(k) for k in cfg["revealed"]]
    rows = [[title(kind)] + [fmt_rate(cells[k][test]) for k in sizes]
            for kind, cells in s["by_kind"].items()]
    return Table(["suspect"] + sizes, rows,
                 caption=f"{cfg['arch']}: worlds in which {test} detects the suspect at alpha = "
                         f"{cfg['alpha']}, by revealed images per class (95% interval, %)",
                 groups=[("", 1), ("revealed per class", len(sizes))])


def rule_table(result: dict, at: str = "300") -> Table:
    """Per suspect kind and for the innocent models: the primary test's median log10 p and the
    paper's rule (Eq. 13-14) and Eq. 15 at ``at`` revealed per class."""
    s, cfg = result["summary"], result["settings"]
    test = cfg["test"]
    rows = [[title(kind), f"{cells[at][test]['median_log10_p']:.1f}",
             fmt_rate(cells[at]["paper_rule"]), fmt_rate(cells[at]["eq15"])]
            for kind, cells in s["by_kind"].items()]
    inn = s["innocents"].get(at)
    if inn is not None:
        rows.append(["innocent models", "", fmt_rate(inn["paper_rule"]), fmt_rate(inn["eq15"])])
    return Table(["suspect", f"median log10 p ({test})", "Eq. 13-14", "Eq. 15"], rows,
                 caption=f"{cfg['arch']}, {at} revealed per class: the paper's rule (rho = "
                         f"{cfg['rho']}) and Eq. 15 claim ownership (95% interval, %)")


def innocents_table(result: dict) -> Table:
    """Per revealed size: the innocents' rates at alpha over (world, innocent) pairs, the KS
    test of the primary p-values, and the world's share of the rank test's z."""
    s, cfg = result["summary"], result["settings"]
    rows = []
    for k, cell in s["innocents"].items():
        share = cell["rank_z_by_world"]["world_share"]
        rows.append([k, fmt_rate(cell[cfg["test"]]), fmt_rate(cell["rank"]), fmt_rate(cell["tail"]),
                     f"{cell[cfg['test']]['ks']['pvalue_liberal']:.2f}",
                     "n/a" if share is None else f"{share:.0%}"])
    header = ["revealed", cfg["test"], "rank", "tail", "KS (one-sided)", "world's share"]
    return Table(header, rows, caption=f"{cfg['arch']}: innocent models accused at alpha = "
                                       f"{cfg['alpha']}, (world, innocent) pairs (95% interval, %)")


def pooled_innocents(results, k: str, test: str = "rank+tail") -> dict:
    """``{"k", "n"}`` of the innocents accused by ``test`` at revealed size ``k``, over every
    architecture's (world, innocent) pairs."""
    cells = [r["summary"]["innocents"][k][test] for r in results if k in r["summary"]["innocents"]]
    return {"k": sum(c["k"] for c in cells), "n": sum(c["n"] for c in cells)}


def independent_ks(result: dict, k: str, test: str = None) -> dict:
    """The KS tests (:func:`.paper_summary.ks_uniform`) of the primary p-values of one innocent
    model per world (the first): the innocents of one world share its draw, so only one per
    world gives p-values that are independent."""
    from .paper_summary import ks_uniform

    test = test or result["settings"]["test"]
    first = {}
    for r in result["records"]:
        if r["kind"] == "innocent" and r["world"] not in first:
            first[r["world"]] = 10.0 ** r["revealed"][k][test]
    return ks_uniform(list(first.values()))


def provenance_details(result: dict) -> str:
    """What made the result file: banner, run, hardware, reduced settings, registration."""
    p, reg = result["provenance"], result["registration"]
    hw = p.get("hardware", {})
    lines = [result["banner"], f"command: {p.get('command')}",
             f"commit {str(p.get('git_commit'))[:12]}, started {p.get('started')}, "
             f"{hw.get('processor')} ({hw.get('cpu_count')} CPUs, cuda {hw.get('cuda')})",
             f"registration {reg['path']} sha256 {reg['sha256']}, committed in "
             f"{reg['registered_in']}"]
    lines += [f"reduced: {item}" for item in result.get("reduced", [])]
    lines += [f"departure: {item}" for item in result.get("departures", [])] or ["departures: none"]
    return "\n".join(lines)
