r"""Dataset Inference's walk scaled until it reaches the boundary (book chapter "Dataset
Inference: a positive control").

On the paper-scale MNIST models the blind walk with the authors' CIFAR-10 constants (50 steps
of 0.005 / 0.005 / 0.01 pixel units) rarely reaches the decision boundary: most walks stop at
their last step, and the "distance" they report is the walk's own length.  The authors doubled
both the step sizes and the steps for SVHN.  This experiment multiplies both by each factor of
``scales`` (1, 2, 4, 10) and reports, per factor, the share of walks that never reached the
boundary (:func:`pmi_tutorial.baselines.dataset_inference.censored_fraction`) and Dataset
Inference's p-values for the owner and for innocent models, each of those on its own draw
(:func:`.paper_study.own_draw`).  Only models already trained by the paper-scale study are
needed (``n_innocent`` of them); every (factor, suspect) is a runner task, so a run resumes.
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .. import files as F
from . import runner
from .runner import Experiment, Task

RESULT_FORMAT = "pmi-tutorial-di-walk-scale"
FILE = "di_walk_scale_{name}.json"


@dataclass(frozen=True)
class ScaleConfig:
    name: str = "mnist-mlp"
    arch: str = "mlp"
    scales: tuple = (1, 2, 4, 10)  # step sizes and steps both multiplied
    n_innocent: int = 10

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


MNIST_MLP = ScaleConfig()
#: LeNet-5: the authors' walk and four times longer steps, four times as many; two of the
#: paper-scale study's innocent LeNet-5s (innocents 0 and 1: training one takes over an hour of
#: CPU), as the chapter says
MNIST_LENET5 = ScaleConfig(name="mnist-lenet5", arch="lenet5", scales=(1, 4), n_innocent=2)
CONFIGS = {c.name: c for c in (MNIST_MLP, MNIST_LENET5)}


def di_config(scale):
    """The paper-scale Dataset Inference settings with steps and step sizes times ``scale``."""
    from .dataset_inference import PAPER

    return replace(PAPER, name=f"paper-x{scale:g}", steps=int(round(PAPER.steps * scale)),
                   step_scale=float(scale), kinds=("owner", "resplit"))


@functools.lru_cache(maxsize=2)
def _detector(arch, scale, root=None, cache_dir=None):
    from ..baselines.dataset_inference import pixel_space
    from . import paper_study as PS
    from .dataset_inference import paper_detector

    world = PS.cached_world(PS.PAPER, root)
    owner, _, _ = PS.owner_model(world, arch, 0, cache_dir)
    t0 = time.perf_counter()
    det = paper_detector(world, owner, di_config(scale), *pixel_space(PS.PAPER.design.dataset))
    return det, time.perf_counter() - t0


def scale_task(arch, scale, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: one suspect (the owner, ``kind="owner"``, or innocent ``k`` on its own draw,
    ``kind="resplit"``) tested with the walk scaled by ``scale``."""
    import torch

    from . import paper_study as PS
    from .dataset_inference import paper_test

    torch.set_num_threads(1)
    world = PS.cached_world(PS.PAPER, root)
    det, fit_seconds = _detector(arch, scale, root, cache_dir)
    if kind == "owner":
        model, _, _ = PS.owner_model(world, arch, 0, cache_dir)
        draw = PS.owner_draw(world)
    else:
        model, _, _ = PS.innocent_model(world, arch, k, cache_dir)
        draw = PS.own_draw(world, k)
    rec = paper_test(det, model, draw, di_config(scale))
    return {"arch": arch, "scale": scale, "kind": kind, "index": int(k),
            "regressor_fit_seconds": round(fit_seconds, 1), **rec}


def summarize(records) -> dict:
    """Per factor: the median censored share (members, non-members), the owner's p-values and
    the innocent models' rejections at 0.05 (one draw, Clopper-Pearson)."""
    from ..stats import clopper_pearson

    out = {}
    for s in sorted({r["scale"] for r in records}):
        rs = [r for r in records if r["scale"] == s]
        inn = [r for r in rs if r["kind"] == "resplit"]
        own = next((r for r in rs if r["kind"] == "owner"), None)
        e = {"censored_members": float(np.mean([np.mean(r["censored"]["members"]) for r in rs])),
             "censored_nonmembers": float(np.mean([np.mean(r["censored"]["nonmembers"]) for r in rs])),
             "queries_per_image_median": float(np.median([r["forward_equivalents"] for r in rs])),
             "owner_pvalue_first_draw": own and own["pvalue_first_draw"],
             "owner_pvalue_hmean": own and own["pvalue_hmean"], "innocent": {}}
        for k in (inn[0]["pvalue_first_draw"] if inn else {}):
            ps = [r["pvalue_first_draw"][k] for r in inn]
            n_rej = int(np.sum(np.asarray(ps) <= 0.05))
            e["innocent"][k] = {"n": len(ps), "rate_0.05": [n_rej / len(ps), *clopper_pearson(n_rej, len(ps))]}
        out[str(s)] = e
    return out


def run_scales(cfg: ScaleConfig = MNIST_MLP, out=None, root=None, cache_dir=None, progress=True,
               command=None, engine=None) -> dict:
    """Every factor of ``cfg.scales`` on the owner and ``n_innocent`` innocent models."""
    from ..training import cache_folder

    header = F.result_header(RESULT_FORMAT, command)
    roots, cache = (None if root is None else str(root)), (None if cache_dir is None else str(cache_dir))
    entries = [(s, "owner", 0) for s in cfg.scales] + \
        [(s, "resplit", k) for s in cfg.scales for k in range(cfg.n_innocent)]
    tasks = [Task(f"{cfg.arch}_x{s:g}_{kind}{k}_{F.digest(di_config(s).to_dict())}", scale_task,
                  (cfg.arch, s, kind, k, roots, cache)) for s, kind, k in entries]
    last = {}

    def write(records, prov, complete):
        last["result"] = {**header, "provenance": {**header["provenance"], **prov},
                          "profile": (f"the paper-scale study's {cfg.arch} owner 0 and innocent models "
                                      f"0-{cfg.n_innocent - 1} (own draws); Dataset Inference as in "
                                      "dataset_inference_paper.json with steps and step sizes scaled"),
                          "settings": {**cfg.to_dict(), "dataset_inference": {
                              str(s): di_config(s).to_dict() for s in cfg.scales}},
                          "complete": complete, "records": records, "summary": summarize(records)}
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), last["result"])

    def describe(r):
        return (f"x{r['scale']:g} {r['kind']} {r['index']}: censored "
                f"{np.mean(r['censored']['members']):.0%} / {np.mean(r['censored']['nonmembers']):.0%}, "
                f"p (one draw, 1000) {r['pvalue_first_draw'].get('1000', float('nan')):.2g}")

    exp = Experiment("di_walk_scale", [tasks], write=write, describe=describe,
                     folder=cache_folder(cache_dir) / "runs" / "di_walk_scale")
    runner.run(exp, engine=engine, progress=progress, provenance=header["provenance"])
    return last["result"]


def scale_table(result: dict, size: str = "1000") -> str:
    """Markdown: per factor, the share of walks that never reached the boundary, the queries per
    revealed image, the owner's p-values and the innocent models accused at 0.05 (one draw)."""
    rows = [f"| steps and step sizes | walks never at the boundary (members / non-members) | "
            f"queries per revealed image | owner's p, {size} revealed (one draw / harmonic mean) | "
            f"innocent models accused at 0.05, {size} revealed (95% CI) |", "|---|---|---|---|---|"]
    for s, e in result["summary"].items():
        own = e["owner_pvalue_first_draw"] or {}
        hm = e["owner_pvalue_hmean"] or {}
        inn = e["innocent"].get(size)
        cell = "-" if inn is None else (f"{round(inn['rate_0.05'][0] * inn['n'])} of {inn['n']} "
                                        f"({inn['rate_0.05'][1]:.2f}-{inn['rate_0.05'][2]:.2f})")
        rows.append(f"| x{float(s):g} | {e['censored_members']:.0%} / {e['censored_nonmembers']:.0%} | "
                    f"{e['queries_per_image_median']:,.0f} | {own.get(size, float('nan')):.2g} / "
                    f"{hm.get(size, float('nan')):.2g} | {cell} |")
    return "\n".join(rows)
