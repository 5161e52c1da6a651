"""Exploration before the confirmatory registration: on the exploratory study's world (split
seed 0, reveal seed 0; models of ``pmi_tutorial.experiments.paper_study``), compare candidate
statistics on one owner per architecture, two of its copies and a few innocent models, all on
the owner's draw.  Writes registrations/exploration.json.  Exploration only: its numbers chose
the registered test and are never counted as confirmation.

    PMI_DATA_DIR=... python registrations/explore.py [--lenet5-innocents 2]
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from pmi_tutorial import stats
from pmi_tutorial.experiments import paper_study as ps
from pmi_tutorial.experiments.confirmatory import scores_of
from pmi_tutorial.files import provenance, write_json_atomic

FRACTIONS = (0.02, 0.05, 0.1, 0.2)
REVEALED = (10, 30, 100, 300, 1000)


def statistics(model, output, draw, keep=None, split=None):
    from pmi_tutorial.data import as_index
    from pmi_tutorial.features import logits

    P, Q = draw
    if keep is not None:
        vy = split.val_y.numpy()
        Q = {r: split.val_x[as_index(np.intersect1d(np.flatnonzero(vy == r), keep))] for r in Q}
    sP = {r: scores_of(logits(model, x).numpy(), r, output) for r, x in P.items()}
    sQ = {r: scores_of(logits(model, x).numpy(), r, output) for r, x in Q.items()}
    out = {}
    for k in REVEALED:
        cell = {}
        for conf in ("logprob", "logodds"):
            sc = {r: (sP[r][conf][:k], sQ[r][conf]) for r in sP}
            cell[f"rank_{conf}"] = round(stats.closed_form_from_scores(sc).log10_pvalue, 3)
            cell[f"ties_{conf}"] = round(float(np.mean(
                [stats.tie_share(np.concatenate(v)) for v in sc.values()])), 4)
            if conf == "logodds":
                for f in FRACTIONS:
                    cell[f"tail{f:g}"] = round(stats.closed_form_from_scores(
                        sc, test="tail", fraction=f).log10_pvalue, 3)
        for f in FRACTIONS:
            cell[f"rank+tail{f:g}"] = round(min(0.0, np.log10(2) + min(cell["rank_logodds"],
                                                                       cell[f"tail{f:g}"])), 3)
        out[str(k)] = cell
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlp-innocents", type=int, default=4)
    ap.add_argument("--lenet5-innocents", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    world = ps.cached_world(ps.PAPER, None)
    draw = ps.owner_draw(world)
    rows = []
    for arch, n_inn in (("mlp", args.mlp_innocents), ("lenet5", args.lenet5_innocents)):
        owner, okey, _ = ps.owner_model(world, arch, 0)
        rows.append({"arch": arch, "kind": "owner", "index": 0,
                     "revealed": statistics(owner, "logits", draw)})
        for attack in ("prune50", "finetune"):
            model, output, keep = ps.attacked(world, owner, okey, arch, attack, 0)
            rows.append({"arch": arch, "kind": attack, "index": 0,
                         "revealed": statistics(model, output, draw, keep, world.split)})
        for j in range(n_inn):
            model, _, _ = ps.innocent_model(world, arch, j)
            rows.append({"arch": arch, "kind": "innocent", "index": j,
                         "revealed": statistics(model, "logits", draw)})
        print(arch, "done", flush=True)
    write_json_atomic(Path(__file__).with_name("exploration.json"),
                      {"what": __doc__.split("\n\n")[0], "provenance": provenance(
                          "python registrations/explore.py " + " ".join(
                              f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())),
                       "rows": rows})


if __name__ == "__main__":
    main()
