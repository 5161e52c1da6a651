"""Dataset Inference on the models of the paper-scale study (:mod:`pmi_tutorial.experiments.paper_study`): the owner's detector, each suspect's test on the owner's and its own draw, the run and its result file."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np

from ... import files as F
from .. import runner
from ..runner import Experiment, Task
from .config import DIConfig, FILE, PAPER, RESULT_FORMAT
from .results import build_result, describe, with_engine


# --------------------------------------------------------------------------- the paper-scale study


def _balanced(images: dict, per_class: int, exclude=frozenset()):
    """``(x, y)``: the first ``per_class`` images of each class of ``images`` (class -> tensor,
    in its order) whose hash is not in ``exclude``."""
    import torch

    from ...baselines.dataset_inference import row_hashes

    xs, ys = [], []
    for r, x in sorted(images.items()):
        keep = [i for i, h in enumerate(row_hashes(x)) if h not in exclude][:per_class]
        xs.append(x[keep])
        ys.append(torch.full((len(keep),), int(r), dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def paper_detector(world, owner, cfg: DIConfig, box, unit):
    """Dataset Inference fitted on a paper-study owner: ``known`` members from its training
    images outside P', ``known`` non-members from the validation split (both seeded); the
    test then reveals images of P' and Q outside these."""
    from ...baselines.dataset_inference import DatasetInference

    split = world.split
    rng = np.random.default_rng([cfg.seed, 11])
    outside = np.concatenate([world.outside[r] for r in sorted(world.outside)])
    km = rng.choice(outside, cfg.known, replace=False)
    kn = rng.choice(len(split.val_y), cfg.known, replace=False)
    return DatasetInference.fit(owner, (split.train_x[km], split.train_y[km]),
                                (split.val_x[kn], split.val_y[kn]), seed=cfg.seed,
                                epochs=cfg.epochs, directions=cfg.directions, steps=cfg.steps,
                                box=box, unit=unit, step_scale=cfg.step_scale)


def paper_test(detector, suspect, draw, cfg: DIConfig, keep_q=None, split=None) -> dict:
    """One suspect against a draw ``(P', Q)`` (class -> images): the revealed images are the
    first ``max_revealed / classes`` of each class outside the regressor's images (and, for
    fine-tuning, outside the validation images it used)."""
    import torch

    from ...features import logits
    from ...data import as_index

    P, Q = draw
    if keep_q is not None:
        vy = split.val_y.numpy()
        Q = {r: split.val_x[as_index(np.intersect1d(np.flatnonzero(vy == r), keep_q))] for r in Q}
    per = -(-cfg.max_revealed // len(P))
    used = detector.regressor.train_hashes
    rm, rn = _balanced(P, per, used), _balanced(Q, per, used)
    sizes = tuple(k for k in cfg.revealed if k <= min(len(rm[0]), len(rn[0])))
    t0 = time.perf_counter()
    res = detector.test(suspect, rm, rn, num_revealed=sizes, repeats=cfg.repeats, seed=cfg.seed)
    walk_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits(suspect, torch.cat([rm[0], rn[0]]))
    forward_seconds = time.perf_counter() - t0
    return {"pvalue_hmean": {str(k): res.pvalues[k] for k in sizes},
            "pvalue_first_draw": {str(k): float(res.draws[k][0]) for k in sizes},
            "pvalue_median": {str(k): float(np.median(res.draws[k])) for k in sizes},
            "mean_difference": res.mean_difference, "queries": int(res.queries),
            "forward_equivalents": round(res.forward_equivalents, 2),
            "seconds": round(walk_seconds, 2), "forward_seconds": round(forward_seconds, 4),
            "revealed_available": [len(rm[0]), len(rn[0])], "censored": res.censored}


def paper_plan(paper_cfg, cfg: DIConfig) -> list:
    """``(arch, kind, index)`` in run order: per architecture, owner j's copies, then innocents
    (each with the owner's draw, "independent", and its own, "resplit"), so that a partial
    result holds some of every kind."""
    from .. import paper_study as PS

    out = []
    attacks = [k for k in cfg.kinds if k not in ("independent", "resplit")]
    for arch, n_inn in zip(paper_cfg.archs, paper_cfg.n_innocent):
        per = -(-n_inn // max(paper_cfg.n_owners, 1))
        for j in range(max(paper_cfg.n_owners, 1)):
            if j < paper_cfg.n_owners:
                out += [(arch, a, j) for a in attacks if a == "owner" or a in PS.ATTACKS]
            for i in range(j * per, min(n_inn, (j + 1) * per)):
                out += [(arch, kind, i) for kind in ("independent", "resplit") if kind in cfg.kinds]
    return out


_PER_ARCH = ("archs", "n_innocent", "epochs")


def _merged_config(paper_cfg, earlier_settings: dict):
    """``paper_cfg`` with the architectures of an earlier result file's study settings added
    (those this run does not have, with their numbers of innocent models and epochs)."""
    from dataclasses import replace

    per = {a: (n, e) for a, n, e in zip(*(earlier_settings[k] for k in _PER_ARCH))}
    per.update({a: (n, e) for a, n, e in zip(paper_cfg.archs, paper_cfg.n_innocent, paper_cfg.epochs)})
    order = [a for a in earlier_settings["archs"] if a not in paper_cfg.archs] + list(paper_cfg.archs)
    return replace(paper_cfg, archs=tuple(order), n_innocent=tuple(per[a][0] for a in order),
                   epochs=tuple(per[a][1] for a in order))


def _earlier_result(out, cfg: DIConfig, paper_cfg):
    """The records of the result file this run writes (``out``), when it exists: a run resumes
    from them (on a fresh machine too, without the per-suspect cache) and keeps the records of
    architectures it does not run.  ``(full_cfg, {(arch, kind, index): record}, earlier
    provenances)``; a file made with other settings is an error, not overwritten."""
    paths = [] if out is None else [Path(out) / FILE.format(name=cfg.name)]
    full_cfg, records, earlier = paper_cfg, {}, []
    for path in [p for p in paths if p.is_file()]:
        res = F.read_result(path, RESULT_FORMAT)
        st = res["settings"]
        mine = paper_cfg.to_dict()
        same_di = st["dataset_inference"] == cfg.to_dict()
        same_study = {k: v for k, v in st["study"].items() if k not in _PER_ARCH} == \
            {k: v for k, v in mine.items() if k not in _PER_ARCH}
        theirs = {a: (n, e) for a, n, e in zip(*(st["study"][k] for k in _PER_ARCH))}
        same_arch = all(theirs[a] == (n, e) for a, n, e in
                        zip(full_cfg.archs, full_cfg.n_innocent, full_cfg.epochs) if a in theirs)
        if not (same_di and same_study and same_arch):
            raise ValueError(
                f"{path} holds Dataset Inference results made with other settings (of Dataset "
                "Inference or of the study); this run would mix the two: write to another --out, "
                "or move that file away to start afresh")
        for r in res["models"]:
            records.setdefault((r["arch"], r["kind"], int(r["index"])), r)
        earlier += [e for e in (res["provenance"], *res.get("earlier_runs", [])) if e not in earlier]
        full_cfg = _merged_config(full_cfg, st["study"])
    return full_cfg, records, earlier


@functools.lru_cache(maxsize=4)
def _paper_owner_detector(paper_cfg, cfg: DIConfig, arch, owner_k, root=None, cache_dir=None):
    """Owner ``owner_k``'s fitted Dataset Inference (once per process: tasks of one owner share it)."""
    from ...baselines.dataset_inference import pixel_space
    from .. import paper_study as PS

    world = PS.cached_world(paper_cfg, root)
    owner, _, _ = PS.owner_model(world, arch, owner_k, cache_dir)
    return paper_detector(world, owner, cfg, *pixel_space(paper_cfg.design.dataset))


def paper_task(paper_cfg, cfg: DIConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: one suspect of the paper-scale study (an entry of :func:`paper_plan`)
    tested by Dataset Inference; innocent models use owner 0's regressor."""
    import torch

    from .. import paper_study as PS

    torch.set_num_threads(1)
    world = PS.cached_world(paper_cfg, root)
    innocent = kind in ("independent", "resplit")
    owner_k = 0 if innocent else k
    keep = None
    if innocent:
        model, _, _ = PS.innocent_model(world, arch, k, cache_dir)
    else:
        owner, okey, _ = PS.owner_model(world, arch, owner_k, cache_dir)
        model = owner
        if kind != "owner":
            model, _, keep = PS.attacked(world, owner, okey, arch, kind, k, cache_dir)
    detector = _paper_owner_detector(paper_cfg, cfg, arch, owner_k, root, cache_dir)
    draw = PS.own_draw(world, k) if kind == "resplit" else PS.owner_draw(world)
    info = {"arch": arch, "kind": kind, "index": int(k), "owner": None if innocent else int(k)}
    return {**info, **paper_test(detector, model, draw, cfg, keep, world.split)}


def paper_key(world, paper_cfg, cfg: DIConfig, arch, kind, k) -> str:
    """The cache key of one suspect's record (derived from the settings; nothing is trained)."""
    from .. import paper_study as PS
    from ...files import digest

    okey = PS.model_key(world, arch, "owner", 0 if kind in ("independent", "resplit") else k)
    if kind in ("independent", "resplit"):
        key = f"{PS.model_key(world, arch, 'innocent', k)}_{kind}"
    elif kind == "owner":
        key = okey
    else:
        key = f"{okey}_{kind}_{digest(PS.attack_settings(paper_cfg, kind))}"
    di_settings = {n: v for n, v in cfg.to_dict().items() if n not in ("name", "kinds")}
    return f"{key}_{digest({'di': di_settings, 'owner': okey, 'own_draw': PS.OWN_DRAW})}"


def run_on_paper_study(paper_cfg=None, cfg: DIConfig = PAPER, out=None, cache_dir=None,
                       root=None, progress=True, command=None, engine=None) -> dict:
    """Dataset Inference on the models of the paper-scale study (:mod:`.paper_study`).

    The owner fits the regressor on its own model (:func:`paper_detector`); every owner-derived
    suspect and every innocent model is tested against the owner's draw (P' and Q, as PMI is),
    and each innocent model also against its own draw (:func:`.paper_study.own_draw`, kind
    "resplit"), whose p-values are independent across models.  Innocent models use owner 0's
    regressor.  Runs on :mod:`.runner` (in process, or on ``engine``: ``--workers`` /
    ``--scheduler``): stage 1 trains the study's models that are missing (the same seeds and
    keys as the study), stage 2 tests every suspect (:func:`paper_task`).  Every record is
    cached as it finishes and the result file is rewritten atomically, so a run resumes; it
    also resumes from the result file already in ``out``, keeping its records of other
    architectures (with that file's provenance in ``"earlier_runs"``).
    """
    from .. import paper_study as PS

    paper_cfg = paper_cfg or PS.PAPER
    header = F.result_header(RESULT_FORMAT, command)
    world = PS.cached_world(paper_cfg, root)
    full_cfg, earlier, earlier_runs = _earlier_result(out, cfg, paper_cfg)
    plan = paper_plan(paper_cfg, cfg)
    in_plan = set(plan)
    kept = [r for key, r in earlier.items() if key not in in_plan]  # other architectures
    roots, cache = (None if root is None else str(root)), (None if cache_dir is None else str(cache_dir))
    tasks = [Task(paper_key(world, paper_cfg, cfg, *entry), paper_task,
                  (paper_cfg, cfg, *entry, roots, cache)) for entry in plan]
    known = {t.key: earlier[entry] for t, entry in zip(tasks, plan) if entry in earlier}
    train = PS.experiment(paper_cfg, cache_dir, root).stages[0]
    t_wall, last = time.perf_counter(), {}

    def write_out(records, prov, complete):
        done = {(r["arch"], r["kind"], int(r["index"])) for r in kept + records}
        complete = all(key in done for key in paper_plan(full_cfg, cfg))
        last["result"] = _paper_result(cfg, full_cfg, with_engine(header, prov), kept + records,
                                       complete, time.perf_counter() - t_wall, earlier_runs)
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), last["result"])

    # with every suspect in the result file already, there is nothing to train either
    stages = [tasks] if len(known) == len(tasks) else [train, tasks]
    exp = Experiment("dataset_inference_paper", stages, write=write_out, describe=describe,
                     folder=PS.model_folder(cache_dir) / "dataset_inference")
    runner.run(exp, engine=engine, progress=progress, provenance=header["provenance"], known=known)
    return last["result"]


def _paper_result(cfg, paper_cfg, header, records, complete, wall, earlier_runs=()) -> dict:
    res = build_result(cfg, paper_cfg, header, records, complete, wall)
    res["profile"] = (f"paper-scale study {paper_cfg.name} ({paper_cfg.banner()}); Dataset "
                      f"Inference {cfg.name}: the paper's walk ({cfg.directions} directions per "
                      f"norm, {cfg.steps} steps) and regressor ({cfg.epochs} epochs)")
    done = {(r["arch"], r["kind"], int(r["index"])) for r in records}
    res["not_yet_run"] = [list(key) for key in paper_plan(paper_cfg, cfg) if key not in done]
    res["models_planned"] = len(paper_plan(paper_cfg, cfg))
    if earlier_runs:
        # records this run read from the result file were made by these runs
        res["earlier_runs"] = list(earlier_runs)
    return res


