r"""Dataset Inference on the study's models, beside PMI (book chapter "PMI and Dataset Inference").

The same models as the false-positive study (:mod:`pmi_tutorial.experiments.study`): owner
models trained on part A, their attacked copies, and independent models that never saw part A.
For each architecture and owner k, the owner fits Dataset Inference's membership regressor
(:class:`pmi_tutorial.baselines.dataset_inference.DatasetInference`) on *its own* model, from
``known`` images of part A (members) and ``known`` images of Q (non-members).  Every suspect is
then walked on up to ``max_revealed`` other images of each pool, disjoint from the regressor's,
and tested at each number of revealed samples.  Independent models are tested with owner 0's
regressor and pools: they are the innocent suspects an owner would accuse.

Two p-values are kept per suspect and size: the paper's harmonic mean over ``repeats`` random
draws (what Dataset Inference reports; not itself a valid p-value) and the p-value of the first
draw alone (a single Welch test: approximately valid), which is what calibration is measured on.
Every suspect's record is cached by its key and the settings, so a run resumes.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import files as F
from ..stats import clopper_pearson, rejects
from . import runner
from .runner import Experiment, Task

RESULT_FORMAT = "pmi-tutorial-dataset-inference"
FILE = "dataset_inference_{name}.json"


@dataclass(frozen=True)
class DIConfig:
    """Settings of Dataset Inference in the comparison (the paper's values where it has them)."""

    name: str = "cpu"
    known: int = 500  # known members and known non-members for the regressor (the paper: 500)
    revealed: tuple = (10, 30, 100, 300)  # numbers of revealed samples tested
    max_revealed: int = 500  # images walked per pool on each suspect
    directions: int = 10  # random directions per norm (the paper: 10)
    steps: int = 50  # walk steps (the paper: 50)
    step_scale: float = 1.0  # multiplies the walk's step sizes (the paper: 1; 2 for SVHN)
    repeats: int = 100  # draws per size, aggregated by the harmonic mean (the paper: 100)
    epochs: int = 1000  # regressor training epochs (the paper: 1000)
    # the suspects: the study's models and the attacks of the registry (pmi_tutorial.attacks)
    kinds: tuple = ("independent", "resplit", "owner", "finetune", "prune50", "int8", "noise",
                    "distill_same", "probabilities")
    seed: int = 0

    def to_dict(self) -> dict:
        d = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        if d["step_scale"] == 1.0:  # the paper's steps: the settings (and keys) of earlier runs
            del d["step_scale"]
        return d


#: the whole comparison on the study's CPU models
CPU = DIConfig()
#: the chapter's live slice: small, seconds per model
QUICK = DIConfig(name="quick", known=200, revealed=(10, 30, 100), max_revealed=300, directions=4,
                 repeats=30, epochs=300)
#: on the models of the paper-scale study (:mod:`.paper_study`): the paper's walk and regressor,
#: up to 1,000 revealed samples of each pool (100 per class; PMI's k per class is 10 k samples)
PAPER = DIConfig(name="paper", revealed=(10, 30, 100, 300, 1000), max_revealed=1000,
                 kinds=("independent", "resplit", "owner", "finetune", "prune50", "prune90",
                        "int8", "fp16", "noise", "distill_same", "distill_other"))
#: its smallest form (tests)
PAPER_TINY = DIConfig(name="paper-tiny", known=40, revealed=(10, 20), max_revealed=20,
                      directions=2, steps=10, repeats=5, epochs=50, kinds=PAPER.kinds)
CONFIGS = {c.name: c for c in (CPU, QUICK, PAPER, PAPER_TINY)}


def config_from_dict(d: dict) -> DIConfig:
    return DIConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


# --------------------------------------------------------------------------- images


def _pool_images(pools_split):
    """All member images (part A) and non-member images (Q) of a pool split, with labels."""
    return (pools_split.train_x, pools_split.train_y), (pools_split.val_x, pools_split.val_y)


def _take(xy, n, seed, exclude=frozenset()):
    """``n`` images of ``xy`` in a seeded order, skipping those whose hash is in ``exclude``."""
    from ..baselines.dataset_inference import row_hashes

    x, y = xy
    order = np.random.default_rng(seed).permutation(len(x))
    if exclude:
        h = row_hashes(x)
        order = np.asarray([i for i in order if h[i] not in exclude], dtype=np.int64)
    idx = order[:n]
    return x[idx], y[idx]


def owner_detector(owner, pools_split, cfg: DIConfig, box, unit):
    """Dataset Inference fitted on the owner's own model from its known members / non-members."""
    from ..baselines.dataset_inference import DatasetInference

    members, nonmembers = _pool_images(pools_split)
    km = _take(members, cfg.known, [cfg.seed, 1])
    kn = _take(nonmembers, cfg.known, [cfg.seed, 2])
    return DatasetInference.fit(owner, km, kn, seed=cfg.seed, epochs=cfg.epochs,
                                directions=cfg.directions, steps=cfg.steps, box=box, unit=unit,
                                step_scale=cfg.step_scale)


def test_suspect(detector, suspect, pools_split, cfg: DIConfig, draw: int = 0) -> dict:
    """One suspect's Dataset Inference record (p-values per size, cost).

    ``draw`` seeds which revealed images are taken: 0 (the owner's one draw, shared by every
    suspect tested against it) or a suspect's own index + 1 (an independent draw)."""
    import torch

    from ..features import logits

    members, nonmembers = _pool_images(pools_split)
    used = detector.regressor.train_hashes
    rm = _take(members, cfg.max_revealed, [cfg.seed, 3] + ([draw] if draw else []), exclude=used)
    rn = _take(nonmembers, cfg.max_revealed, [cfg.seed, 4] + ([draw] if draw else []), exclude=used)
    sizes = tuple(k for k in cfg.revealed if k <= min(len(rm[0]), len(rn[0])))
    t0 = time.perf_counter()
    res = detector.test(suspect, rm, rn, num_revealed=sizes, repeats=cfg.repeats, seed=cfg.seed)
    walk_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits(suspect, torch.cat([rm[0], rn[0]]))  # one forward pass over the revealed images
    forward_seconds = time.perf_counter() - t0
    return {
        "pvalue_hmean": {str(k): res.pvalues[k] for k in sizes},
        "pvalue_first_draw": {str(k): float(res.draws[k][0]) for k in sizes},
        "pvalue_median": {str(k): float(np.median(res.draws[k])) for k in sizes},
        "mean_difference": res.mean_difference,
        "queries": int(res.queries),
        "forward_equivalents": round(res.forward_equivalents, 2),
        "seconds": round(walk_seconds, 2),
        "forward_seconds": round(forward_seconds, 4),
        "revealed_available": [len(rm[0]), len(rn[0])],
    }


test_suspect.__test__ = False  # not a pytest test, despite its name


# --------------------------------------------------------------------------- the run


def _report(rec: dict, label: str, extra: str = "") -> None:
    """One progress line: the suspect and its first-draw p-value per number revealed."""
    p = ", ".join(f"{n}: {v:.2g}" for n, v in rec["pvalue_first_draw"].items())
    print(f"{label}: DI p (first draw) {p}{extra}", flush=True)


@functools.lru_cache(maxsize=4)
def _study_detector(study_cfg, cfg: DIConfig, arch, owner_k, root=None, cache_dir=None):
    """Owner ``owner_k``'s fitted Dataset Inference (once per process: tasks of one owner share it)."""
    from ..baselines.dataset_inference import pixel_space
    from .study import run as SR

    study = SR.cached_study(study_cfg.design, root)
    owner, *_ = SR.owner_model(study, study_cfg, arch, owner_k, cache_dir)
    return owner_detector(owner, study.pools, cfg, *pixel_space(study_cfg.design.dataset))


def study_task(study_cfg, cfg: DIConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: one suspect of the false-positive study tested by Dataset Inference."""
    import torch

    from .study import run as SR

    torch.set_num_threads(1)
    study = SR.cached_study(study_cfg.design, root)
    info, model, pools, _, _ = SR.suspect(study, study_cfg, arch, kind, k, cache_dir)
    detector = _study_detector(study_cfg, cfg, arch, info["owner"] or 0, root, cache_dir)
    # an innocent model against its own random member pool also gets its own draw of the
    # revealed images: p-values independent across models (the study's "resplit")
    draw = info["index"] + 1 if kind == "resplit" else 0
    return {**info, **test_suspect(detector, model, pools, cfg, draw)}


def _with_engine(header: dict, prov: dict) -> dict:
    """The result header with the engine that ran the tasks (``runner.run``'s provenance)."""
    return {**header, "provenance": {**header["provenance"], "engine": prov["engine"]}}


def _describe(rec: dict) -> str:
    if "pvalue_first_draw" not in rec:
        return f"trained {rec['model']} ({rec['train_cpu_seconds']} CPU s)"
    p = ", ".join(f"{n}: {v:.2g}" for n, v in rec["pvalue_first_draw"].items())
    return f"{rec['arch']:6s} {rec['kind']:13s} {rec['index']:2d}: DI p (first draw) {p}; {rec['seconds']} s"


def run_dataset_inference(study_cfg=None, cfg: DIConfig = CPU, out=None, cache_dir=None,
                          root=None, progress=True, command=None, engine=None) -> dict:
    """Dataset Inference on every model of the study ``study_cfg`` (default: its CPU run).

    Runs on :mod:`.runner` (in process, or on ``engine``): stage 1 trains the study's models that
    are missing, stage 2 tests each suspect (:func:`study_task`), whose record is cached as it
    finishes, so an interrupted run resumes.  Writes ``dataset_inference_<name>.json`` to
    ``out`` (atomically, at most every 30 s and at the end) and returns its content.
    """
    from . import study as S

    study_cfg = study_cfg or S.CPU
    header = F.result_header(RESULT_FORMAT, command)
    study = S.run.cached_study(study_cfg.design, root)
    # a suspect's record depends on these settings, not on how many models the run has
    per_model = {k: v for k, v in study_cfg.to_dict().items()
                 if k not in ("name", "archs", "n_independent", "n_owners")}
    di_settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "kinds")}
    digest = F.digest({"di": di_settings, "study": per_model})
    roots, cache = (None if root is None else str(root)), (None if cache_dir is None else str(cache_dir))
    tasks = [Task(f"{S.run.suspect_key(study, study_cfg, arch, kind, k)}_{digest}", study_task,
                  (study_cfg, cfg, arch, kind, k, roots, cache))
             for arch, kind, k in S.run.suspects(study_cfg) if kind in cfg.kinds]
    train = S.run.experiment(study_cfg, cache_dir, root).stages[0]
    t_wall, last = time.perf_counter(), {}

    def write_out(records, prov, complete):
        last["result"] = build_result(cfg, study_cfg, _with_engine(header, prov), records,
                                      complete, time.perf_counter() - t_wall)
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), last["result"])

    exp = Experiment("dataset_inference", [train, tasks], write=write_out, describe=_describe,
                     folder=S.run.model_folder(cache_dir) / "dataset_inference")
    runner.run(exp, engine=engine, progress=progress, provenance=header["provenance"])
    return last["result"]


# --------------------------------------------------------------------------- the paper-scale study


def _balanced(images: dict, per_class: int, exclude=frozenset()):
    """``(x, y)``: the first ``per_class`` images of each class of ``images`` (class -> tensor,
    in its order) whose hash is not in ``exclude``."""
    import torch

    from ..baselines.dataset_inference import row_hashes

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
    from ..baselines.dataset_inference import DatasetInference

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

    from ..features import logits
    from ..data import as_index

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
    from . import paper_study as PS

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
    from ..baselines.dataset_inference import pixel_space
    from . import paper_study as PS

    world = PS.cached_world(paper_cfg, root)
    owner, _, _ = PS.owner_model(world, arch, owner_k, cache_dir)
    return paper_detector(world, owner, cfg, *pixel_space(paper_cfg.design.dataset))


def paper_task(paper_cfg, cfg: DIConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: one suspect of the paper-scale study (an entry of :func:`paper_plan`)
    tested by Dataset Inference; innocent models use owner 0's regressor."""
    import torch

    from . import paper_study as PS

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
    from . import paper_study as PS
    from ..files import digest

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
    from . import paper_study as PS

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
        last["result"] = _paper_result(cfg, full_cfg, _with_engine(header, prov), kept + records,
                                       complete, time.perf_counter() - t_wall, earlier_runs)
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), last["result"])

    # with every suspect in the result file already, there is nothing to train either
    stages = [tasks] if len(known) == len(tasks) else [train, tasks]
    exp = Experiment("dataset_inference_paper", stages, write=write_out, describe=_describe,
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


def build_result(cfg, study_cfg, header, records, complete, wall) -> dict:
    return {**header, "profile": f"study {study_cfg.name} (reduced CPU setting)", "settings": {"dataset_inference": cfg.to_dict(), "study": study_cfg.to_dict()},
            "complete": complete, "run_wall_seconds": round(wall, 1),
            # the walks and tests of every suspect, cached ones included (this run may have read them)
            "dataset_inference_seconds": round(sum(r["seconds"] for r in records), 1),
            "hardware_note": "CPU, one torch thread per process, on a shared 2-core machine",
            "models": records, "summary": summarize(records, cfg)}


def resummarize(path, command=None) -> dict:
    """Recompute the summary of the result file at ``path`` from its per-suspect records (no
    models, no walks) and write it back; the run's provenance stays, ``"summary_recomputed"``
    (command, commit, date) is added beside it."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file {path}; run `python -m pmi_tutorial "
                                "dataset-inference` first")
    res = F.read_result(path, RESULT_FORMAT)
    cfg = config_from_dict(res["settings"]["dataset_inference"])
    res["summary"] = summarize(res["models"], cfg)
    res["summary_recomputed"] = {"command": command, "git_commit": F.git_commit(), "date": F.now()}
    F.write_json_atomic(path, res)
    return res


# --------------------------------------------------------------------------- the walk's seed

SEEDS_FORMAT = "pmi-tutorial-dataset-inference-seeds"
SEEDS_FILE = "dataset_inference_seeds_{name}_{arch}.json"


def seed_study(paper_cfg=None, cfg: DIConfig = PAPER, arch: str = "mlp", models=range(20),
               seeds=range(6), out=None, cache_dir=None, root=None, progress=True, command=None,
               only_cached_models=False, main_result=None) -> dict:
    """Innocent models' p-values under several seeds of the test's walk and subsets.

    Every suspect of :func:`run_on_paper_study` is tested with the same seed (``cfg.seed``):
    the same random directions at each position of the revealed sets (for members and for
    non-members, from different streams) and the same subset positions for every model.  If
    that shared draw shifts the Welch statistic, innocent models' p-values are correlated
    across models and their spread understates a p-value's randomness.  Here each innocent
    model ``models`` of ``arch`` is tested against its own draw (kind "resplit") with owner 0's
    regressor (fitted with ``cfg.seed``, as in the main run) and each test seed in ``seeds``;
    :func:`seed_summary` separates the seed's share of the variance from the models'.  Each
    (model, seed) record is cached and the result file is written after each (atomically), so
    the run resumes.  ``main_result``: the main run's result file; the records of the main
    run's seed are compared with it (a reproduction check, stored in the result).
    """
    from dataclasses import replace
    from pathlib import Path

    import torch

    from ..baselines.dataset_inference import pixel_space
    from . import paper_study as PS
    from ..files import digest

    torch.set_num_threads(1)
    paper_cfg = paper_cfg or PS.PAPER
    models, seeds = [int(k) for k in models], [int(s) for s in seeds]
    if arch not in paper_cfg.archs:
        raise ValueError(f"unknown architecture {arch!r}: the study has {list(paper_cfg.archs)}")
    n_inn = paper_cfg.n_innocent[paper_cfg.archs.index(arch)]
    if not models or not seeds or max(models) >= n_inn or min(models) < 0:
        raise ValueError(f"models must be innocent indices in [0, {n_inn}) and seeds non-empty; "
                         f"got models {models} and seeds {seeds}")
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ValueError(f"give at least two distinct seeds to separate their effect, got {seeds}")
    header = F.result_header(SEEDS_FORMAT, command)
    world = PS.prepare(paper_cfg, root)
    box, unit = pixel_space(paper_cfg.design.dataset)
    folder = PS.model_folder(cache_dir) / "dataset_inference"
    di_settings = {k: v for k, v in cfg.to_dict().items() if k not in ("name", "kinds", "seed")}
    okey = PS.model_key(world, arch, "owner", 0)
    detector, records, t_wall = None, [], time.perf_counter()

    def result(complete):
        res = {**header, "profile": (f"paper-scale study {paper_cfg.name} ({paper_cfg.banner()}); "
                                     f"Dataset Inference {cfg.name}, test seeds {seeds}"),
               "settings": {"dataset_inference": cfg.to_dict(), "study": paper_cfg.to_dict(),
                            "arch": arch, "models": models, "seeds": seeds},
               "complete": complete, "run_wall_seconds": round(time.perf_counter() - t_wall, 1),
               "hardware_note": "CPU, one torch thread per process, on a shared 2-core machine",
               "models": records, "summary": seed_summary(records, cfg)}
        if main_result is not None:
            res["reproduction"] = _reproduction(records, main_result, arch, cfg.seed)
        return res

    for k in models:
        ikey = PS.model_key(world, arch, "innocent", k)
        for s in seeds:
            path = folder / f"{ikey}_resplit_seed{s}_{digest({'di': di_settings, 'owner': okey, 'own_draw': PS.OWN_DRAW})}.json"
            if path.is_file():
                rec = json.loads(path.read_text())
            else:
                have = list(PS.model_folder(cache_dir).glob(f"{arch}_innocent{k}_*.pt"))
                if only_cached_models and not have:
                    continue
                if detector is None:
                    owner, _, _ = PS.owner_model(world, arch, 0, cache_dir)
                    detector = paper_detector(world, owner, cfg, box, unit)
                model, _, _ = PS.innocent_model(world, arch, k, cache_dir)
                rec = {"arch": arch, "kind": "resplit", "index": k, "seed": s,
                       **paper_test(detector, model, PS.own_draw(world, k), replace(cfg, seed=s))}
                path.parent.mkdir(parents=True, exist_ok=True)
                F.write_json_atomic(path, rec)
            records.append(rec)
            if progress:
                _report(rec, f"{arch:6s} innocent {k:2d} seed {s}", f"; {rec['seconds']} s")
            if out is not None:
                F.write_json_atomic(Path(out) / SEEDS_FILE.format(name=cfg.name, arch=arch), result(False))
    complete = len(records) == len(models) * len(seeds)
    res = result(complete)
    if out is not None:
        F.write_json_atomic(Path(out) / SEEDS_FILE.format(name=cfg.name, arch=arch), res)
    return res


def _reproduction(records, main_result, arch, seed) -> dict:
    """The records of the main run's seed beside the main run's own (the same models, draws,
    regressor and seed: the p-values must agree)."""
    main = {int(r["index"]): r for r in F.read_result(main_result, RESULT_FORMAT)["models"]
            if r["arch"] == arch and r["kind"] == "resplit"}
    mine = [r for r in records if r["seed"] == seed and int(r["index"]) in main]
    diff = [abs(r["pvalue_first_draw"][k] - main[int(r["index"])]["pvalue_first_draw"][k])
            for r in mine for k in r["pvalue_first_draw"]]
    return {"seed": seed, "n_models_compared": len(mine),
            "max_abs_difference_first_draw": max(diff) if diff else None}


def two_way_anova(z) -> dict:
    """Two-way analysis of variance without replication of a models x seeds table ``z``:
    sums of squares of the seeds (columns), the models (rows) and the residual, their shares
    of the total, the F-test of "no seed effect" (``pvalue_seed``, against the residual) and
    of "no model effect", and the seed's variance component (method of moments)."""
    from scipy.stats import f as fdist

    z = np.asarray(z, dtype=float)
    m, s = z.shape
    if m < 2 or s < 2:
        raise ValueError(f"need at least two models and two seeds, got a {m} x {s} table")
    g = z.mean()
    ss_seed = m * float(((z.mean(axis=0) - g) ** 2).sum())
    ss_model = s * float(((z.mean(axis=1) - g) ** 2).sum())
    ss_total = float(((z - g) ** 2).sum())
    ss_res = ss_total - ss_seed - ss_model
    df_seed, df_model, df_res = s - 1, m - 1, (m - 1) * (s - 1)
    ms_seed, ms_model, ms_res = ss_seed / df_seed, ss_model / df_model, ss_res / df_res
    return {"ss_seed": ss_seed, "ss_model": ss_model, "ss_residual": ss_res, "ss_total": ss_total,
            "share_seed": ss_seed / ss_total, "share_model": ss_model / ss_total,
            "share_residual": ss_res / ss_total,
            "f_seed": ms_seed / ms_res, "pvalue_seed": float(fdist.sf(ms_seed / ms_res, df_seed, df_res)),
            "f_model": ms_model / ms_res,
            "pvalue_model": float(fdist.sf(ms_model / ms_res, df_model, df_res)),
            "var_seed": max((ms_seed - ms_res) / m, 0.0), "df": [df_seed, df_model, df_res],
            **_grand_mean_test(g, (ms_seed, ms_model, ms_res), (df_seed, df_model, df_res), m * s)}


def _grand_mean_test(g, ms, df, n) -> dict:
    """The t-test of "the mean z is 0" when seeds and models are both random (crossed, one
    observation per cell): Var(grand mean) = var_seed / S + var_model / M + var_res / (M S),
    estimated without bias by (MS_seed + MS_model - MS_res) / (M S), with Satterthwaite's
    degrees of freedom.  Under a valid test z is standard normal, so its mean is 0; pairs that
    share a seed are not independent, and this test, unlike one over the pairs, allows for it."""
    from scipy.stats import t as tdist

    ms_seed, ms_model, ms_res = ms
    est = ms_seed + ms_model - ms_res
    if est <= 0:  # no excess variance of seeds or models: the residual alone
        est, dof = ms_res, float(df[2])
    else:
        dof = est ** 2 / (ms_seed ** 2 / df[0] + ms_model ** 2 / df[1] + ms_res ** 2 / df[2])
    se = float(np.sqrt(est / n))
    tt = g / se
    return {"grand_mean": float(g), "se_grand_mean": se, "df_grand_mean": float(dof),
            "pvalue_grand_mean": float(2 * tdist.sf(abs(tt), dof))}


def seed_summary(records, cfg: DIConfig, alpha: float = 0.05) -> dict:
    """Per size: for each seed, the innocent models' rejections at ``alpha`` and the mean and
    spread of z = Phi^-1(1 - p) across models (under a valid test and independent models:
    about 0 and 1); over all (model, seed) pairs, the rejection rate (each pair is one
    verification with a fresh seed) and the spread of z; the two-way ANOVA of z
    (:func:`two_way_anova`) on the models tested with every seed."""
    from scipy.stats import kstest

    out = {}
    for k in map(str, cfg.revealed):
        try:
            _, seeds, p = _pvalue_table(records, k)
        except ValueError:  # no record has this size
            continue
        z = _z(p)
        per_seed = {}
        for j, s in enumerate(seeds):
            ps, zs = p[~np.isnan(p[:, j]), j], z[~np.isnan(z[:, j]), j]
            per_seed[str(s)] = {"n_models": len(ps), "rejected": int(rejects(ps, alpha).sum()),
                                "z_mean": float(zs.mean()),
                                "z_sd": float(zs.std(ddof=1)) if len(zs) > 1 else None,
                                "ks_pvalue": float(kstest(ps, "uniform").pvalue) if len(ps) > 1 else None}
        p_all, z_all = p[~np.isnan(p)], z[~np.isnan(z)]
        kr = int(rejects(p_all, alpha).sum())
        e = {"per_seed": per_seed, "n_pairs": len(p_all),
             f"rejection_rate_{alpha:g}": [kr / len(p_all), *clopper_pearson(kr, len(p_all))],
             "z_mean": float(z_all.mean()), "z_sd": float(z_all.std(ddof=1)) if len(z_all) > 1 else None}
        full = ~np.isnan(z).any(axis=1)  # the models tested with every seed
        if full.sum() >= 2 and len(seeds) >= 2:
            e["anova"] = {"n_models": int(full.sum()), **two_way_anova(z[full])}
        out[k] = e
    return out


def _pvalue_table(records, size) -> tuple:
    """The single-draw p-values at ``size`` revealed samples as a models x seeds table
    ``(models, seeds, p)``, NaN where that pair was not tested."""
    k = str(size)
    by = {(int(r["index"]), int(r["seed"])): r["pvalue_first_draw"][k]
          for r in records if k in r["pvalue_first_draw"]}
    if not by:
        raise ValueError(f"no record has {size} revealed samples")
    models = sorted({i for i, _ in by})
    seeds = sorted({s for _, s in by})
    p = np.full((len(models), len(seeds)), np.nan)
    for (i, s), v in by.items():
        p[models.index(i), seeds.index(s)] = v
    return models, seeds, p


def _z(p):
    """z = Phi^-1(1 - p), finite for p = 0 and p = 1; NaN stays NaN."""
    from scipy.stats import norm

    return norm.isf(np.clip(p, 1e-300, 1 - 1e-16))


def seed_z(records, size) -> tuple:
    """The z-scores ``Phi^-1(1 - p)`` of the single-draw test at ``size`` revealed samples as a
    models x seeds table: ``(models, seeds, z)``, with ``z[i, j]`` for ``models[i]`` under
    ``seeds[j]`` and NaN where that pair was not tested."""
    models, seeds, p = _pvalue_table(records, size)
    return models, seeds, _z(p)


def plot_seed_study(result: dict, size, ax=None, alpha: float = 0.05):
    """One column of points per seed: the innocent models' z-scores (:func:`seed_z`) at
    ``size`` revealed samples, the seed's mean as a bar, and the rejection line
    ``z = Phi^-1(1 - alpha)``; a valid test with independent seeds scatters the means about 0."""
    import matplotlib.pyplot as plt
    from scipy.stats import norm

    from ..plotting import MEMBER_COLOR, NEUTRAL_COLOR

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3))
    _, seeds, z = seed_z(result["models"], size)
    jitter = np.random.default_rng(0).uniform(-0.15, 0.15, z.shape[0])
    for j in range(len(seeds)):
        ok = ~np.isnan(z[:, j])
        ax.plot(j + jitter[ok], z[ok, j], "o", ms=3, alpha=0.6, color=NEUTRAL_COLOR)
        ax.plot([j - 0.3, j + 0.3], [np.nanmean(z[:, j])] * 2, "-", lw=2.5, color=MEMBER_COLOR)
    ax.axhline(norm.isf(alpha), ls="--", lw=1, color="0.2")
    ax.axhline(0, ls=":", lw=1, color="0.5")
    ax.set_xticks(range(len(seeds)), [str(s) for s in seeds])
    ax.set_xlabel("seed of the walk and subsets")
    ax.set_ylabel(r"$z = \Phi^{-1}(1 - p)$")
    ax.set_title(f"{result['settings']['arch']}, {size} revealed")
    return ax


def seed_table(summary, alpha: float = 0.05) -> str:
    """Markdown: per size, the rejections of each seed, the seeds' mean z, the seed's share of
    the variance and the F-test p-value, the mean z over all pairs with the test that it is 0
    (:func:`_grand_mean_test`), and the rate over all pairs (its Clopper-Pearson interval takes
    the pairs as independent, which pairs sharing a seed are not: read it as too narrow)."""
    rows = ["| revealed | innocent models rejected at 0.05, per seed | mean z per seed | "
            "seed's share of the variance | F-test p (no seed effect) | "
            "mean z over all pairs (SE) | t-test p (mean z = 0, seeds and models random) | "
            "rate over all (model, seed) pairs (95% CI, pairs as independent) |",
            "|---|---|---|---|---|---|---|---|"]
    for k, e in summary.items():
        ps = e["per_seed"]
        rej = ", ".join(f"{v['rejected']}" for v in ps.values())
        n = {v["n_models"] for v in ps.values()}
        zm = ", ".join(f"{v['z_mean']:+.2f}" for v in ps.values())
        a = e.get("anova")
        r = e[f"rejection_rate_{alpha:g}"]
        rows.append(f"| {k} | {rej} (of {'/'.join(map(str, sorted(n)))}) | {zm} | "
                    + (f"{a['share_seed']:.0%} | {a['pvalue_seed']:.2g} | {a['grand_mean']:+.2f} "
                       f"({a['se_grand_mean']:.2f}) | {a['pvalue_grand_mean']:.2g}" if a else "- | - | - | -")
                    + f" | {r[0]:.3f} ({r[1]:.3f}-{r[2]:.3f}) |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- the summary


def _innocent_rates(inn, cfg: DIConfig, alphas) -> dict:
    """Rejection rates (Clopper-Pearson) and KS p-value of innocent models' p-values, per size."""
    from scipy.stats import kstest

    out = {}
    for k in map(str, cfg.revealed):
        first = [r["pvalue_first_draw"][k] for r in inn if k in r["pvalue_first_draw"]]
        hmean = [r["pvalue_hmean"][k] for r in inn if k in r["pvalue_hmean"]]
        if not first:
            continue
        e = {"n_models": len(first),
             "ks_pvalue_first_draw": float(kstest(first, "uniform").pvalue) if len(first) > 1 else None}
        for a in alphas:
            kf, kh = int(rejects(first, a).sum()), int(rejects(hmean, a).sum())
            e[f"fpr_first_draw_{a}"] = [kf / len(first), *clopper_pearson(kf, len(first))]
            e[f"fpr_hmean_{a}"] = [kh / len(hmean), *clopper_pearson(kh, len(hmean))]
        out[k] = e
    return out


def summarize(records, cfg: DIConfig, alphas=(0.01, 0.05)) -> dict:
    """Per architecture and size: innocent models' rejection rates (with Clopper-Pearson
    intervals) and KS test against the uniform of their first-draw p-values; per attack, the
    median p-values and the share detected; the cost in forward passes.  ``innocent``: the
    independent models against the owner's one draw; ``innocent_own_draw``: each against its own
    random member pool and its own draw of revealed images."""
    out = {}
    for arch in dict.fromkeys(r["arch"] for r in records):  # in the order of the records
        rs = [r for r in records if r["arch"] == arch]
        entry = {"innocent": {}, "innocent_own_draw": {}, "attacks": {}, "cost": {}}
        for view, kind in (("innocent", "independent"), ("innocent_own_draw", "resplit")):
            inn = [r for r in rs if r["kind"] == kind]
            entry[view] = _innocent_rates(inn, cfg, alphas)
        for kind in sorted({r["kind"] for r in rs} - {"independent", "resplit"}):
            group = [r for r in rs if r["kind"] == kind]
            entry["attacks"][kind] = {
                k: {"median_pvalue_hmean": float(np.median([r["pvalue_hmean"][k] for r in group])),
                    "detected_0.05_hmean": float(np.mean([r["pvalue_hmean"][k] <= 0.05 for r in group])),
                    "median_pvalue_first_draw": float(np.median([r["pvalue_first_draw"][k] for r in group])),
                    "detected_0.05_first_draw": float(np.mean([r["pvalue_first_draw"][k] <= 0.05 for r in group])),
                    "n_models": len(group)}
                for k in map(str, cfg.revealed) if all(k in r["pvalue_hmean"] for r in group)
            }
        entry["cost"] = {
            "median_forward_equivalents": float(np.median([r["forward_equivalents"] for r in rs])),
            "median_seconds": float(np.median([r["seconds"] for r in rs])),
            "median_seconds_ratio_to_forward": float(np.median(
                [r["seconds"] / max(r["forward_seconds"], 1e-9) for r in rs])),
        }
        out[arch] = entry
    return out


# --------------------------------------------------------------------------- tables


def innocent_table(summary) -> str:
    """Markdown table: innocent models' false-positive rates (both views) and KS p-values."""
    rows = ["| model | innocent models tested against | revealed | models | FPR at 0.05, one draw (95% CI) | FPR at 0.05, harmonic mean (95% CI) | KS p (one draw vs uniform) |",
            "|---|---|---|---|---|---|---|"]
    views = {"innocent": "the owner's one draw", "innocent_own_draw": "each its own draw"}
    for arch, s in summary.items():
        for view, title in views.items():
            for k, e in s[view].items():
                f, h = e["fpr_first_draw_0.05"], e["fpr_hmean_0.05"]
                rows.append(f"| {arch} | {title} | {k} | {e['n_models']} "
                            f"| {f[0]:.2f} ({f[1]:.2f}-{f[2]:.2f}) | {h[0]:.2f} ({h[1]:.2f}-{h[2]:.2f}) "
                            f"| {'-' if e['ks_pvalue_first_draw'] is None else format(e['ks_pvalue_first_draw'], '.2g')} |")
    return "\n".join(rows)


def attack_table(summary) -> str:
    """Markdown table: per attack and size, the median over suspects of Dataset Inference's
    headline p-value (the harmonic mean over draws), and the share detected with it at the
    largest size."""
    from .kinds import titles

    titles = titles()
    found = {k for s in summary.values() for k in s["attacks"]}
    kinds = [k for k in titles if k in found] + sorted(found - set(titles))  # the titles' order
    sizes = sorted({k for s in summary.values() for a in s["attacks"].values() for k in a}, key=int)
    top = sizes[-1] if sizes else "300"
    rows = ["| model | suspect | median p (harmonic mean over draws), " + " | ".join(f"{k} revealed" for k in sizes)
            + f" | detected at 0.05 ({top} revealed) |", "|---|---|" + "---|" * (len(sizes) + 1)]
    for arch, s in summary.items():
        for kind in kinds:
            if kind not in s["attacks"]:
                continue
            a = s["attacks"][kind]
            cells = [f"{a[k]['median_pvalue_hmean']:.2g}" if k in a else "-" for k in sizes]
            det = f"{a[top]['detected_0.05_hmean']:.0%}" if top in a else "-"
            rows.append(f"| {arch} | {titles.get(kind, kind)} | " + " | ".join(cells) + f" | {det} |")
    return "\n".join(rows)


def paper_comparison(pmi_summary: dict, di_summary: dict, arch: str, total: int = 1000,
                     alpha: float = 0.05) -> str:
    """Markdown: PMI's calibrated tests and Dataset Inference on the paper-scale study's models
    at the same number of revealed samples, ``total`` (PMI: ``total / 10`` members per class
    and the validation images of each class; Dataset Inference: ``total`` members and
    ``total`` non-members), the share detected at ``alpha`` per suspect kind and, for innocent
    models with their own draws, the share accused (the false-positive rate).  A cell is
    empty where the result files hold no such models yet."""
    from .paper_study import ATTACK_TITLES

    per_class = str(total // 10)
    pmi = pmi_summary.get(arch, {}).get("curves", {})
    di = di_summary.get(arch, {})
    tests = ("closed_form", "closed_form_tail", "directional")
    names = {"closed_form": "PMI rank test", "closed_form_tail": "PMI tail test",
             "directional": "PMI directional"}
    head = ("| suspect | " + " | ".join(names[t] for t in tests)
            + " | Dataset Inference, one draw | Dataset Inference, harmonic mean |")
    rows = [head, "|---|" + "---|" * (len(tests) + 2)]

    def pmi_cell(group):
        cells = []
        for t in tests:
            c = pmi.get(t, {}).get(group, {}).get(per_class)
            cells.append("" if c is None else f"{c[f'detected_a{alpha:g}']:.0%} of {c['n']}")
        return cells

    kinds = [k for k in ATTACK_TITLES if k in di.get("attacks", {}) or
             any(k in pmi.get(t, {}) for t in tests)]
    for kind in kinds:
        a = di.get("attacks", {}).get(kind, {}).get(str(total))
        d = (["", ""] if a is None else
             [f"{a[f'detected_{alpha:g}_first_draw']:.0%} of {a['n_models']}",
              f"{a[f'detected_{alpha:g}_hmean']:.0%} of {a['n_models']}"])
        label = ATTACK_TITLES[kind] + (" (labels only for Dataset Inference)" if kind == "owner" else "")
        rows.append(f"| {label} | " + " | ".join(pmi_cell(kind) + d) + " |")
    e = di.get("innocent_own_draw", {}).get(str(total))
    d = (["", ""] if e is None else
         [f"{e[f'fpr_first_draw_{alpha:g}'][0]:.0%} of {e['n_models']}",
          f"{e[f'fpr_hmean_{alpha:g}'][0]:.0%} of {e['n_models']}"])
    rows.append("| innocent, own draws (false positives) | "
                + " | ".join(pmi_cell("innocent_own_draw") + d) + " |")
    return "\n".join(rows)
