"""The study on the experiment runner: its tasks, the budget, the result files (write, load, recompute the summary)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ... import files as _files
from .. import runner
from ..runner import Experiment, Task
from ...files import digest
from .config import FILES, NEGATIVE, OTHER, PAPER, PaperConfig, RESULT_FORMAT, RESULT_VERSION, config_from_dict
from .measurements import measure_settings, attack_settings, iter_records, plan
from .models import model_epochs, innocent_model, model_key, owner_model
from .world import World, prepare


# --------------------------------------------------------------------------- the run


def budget(records, cfg: PaperConfig) -> dict:
    """Measured CPU seconds per model (training and measurement) per architecture and kind, and
    the total they imply for the whole plan (what is done counts as measured)."""
    per, done = {}, {}
    for r in records:
        g = per.setdefault(f"{r['arch']}/{'innocent' if r['kind'] == NEGATIVE else 'owner-derived'}",
                           {"train": [], "measure": []})
        if r["draw"] != "own":  # one training per model
            g["train"].append(r.get("train_cpu_seconds", 0.0))
        g["measure"].append(r.get("cpu_seconds", 0.0))
        done[(r["arch"], r["kind"], r["index"], r["draw"])] = True
    means = {k: {s: float(np.mean(v)) if v else None for s, v in g.items()} for k, g in per.items()}
    total, missing = 0.0, 0
    for arch, kind, k in plan(cfg):
        g = means.get(f"{arch}/{'innocent' if kind == NEGATIVE else 'owner-derived'}")
        draws = ("owner", "own") if kind == NEGATIVE else ("owner",)
        if g is None or g["train"] is None:
            missing += 1
            continue
        total += g["train"] + len(draws) * g["measure"]
    return {"mean_cpu_seconds_per_model": means, "planned_models": len(plan(cfg)),
            "kinds_without_measurement": missing,
            "estimated_total_cpu_seconds": round(total, 1),
            "estimated_total_cpu_hours": round(total / 3600, 2),
            "done_cpu_hours": round(sum(r.get("train_cpu_seconds", 0) + r.get("cpu_seconds", 0)
                                        for r in records) / 3600, 3)}


#: CPU seconds of one training epoch over 10,000 MNIST images (Adam, batch 64, one thread),
#: measured on the 2-core machine of the committed run (``train_one_epoch`` on 10,000 images)
EPOCH_CPU_SECONDS_PER_10K = {"mlp": 0.13, "lenet5": 1.0}


def a_priori_budget(cfg: PaperConfig, measure_seconds: float,
                    epoch_seconds=EPOCH_CPU_SECONDS_PER_10K) -> dict:
    """The total CPU time of the plan from per-epoch costs (``epoch_seconds`` per 10,000
    images) and the CPU seconds of one measurement: owners train on 50,000 images, innocents
    on ``innocent_per_class`` x 10, fine-tuning on 20% of the 20,000 validation images,
    distillation on ``distill_per_class`` x 10 (the student's architecture); + 10% for the
    per-epoch validation."""
    d, c = cfg.design, 10
    train = 0.0
    n_measure = 0
    for arch, kind, k in plan(cfg):
        e, rate = model_epochs(cfg, arch), epoch_seconds[arch] / 10_000
        if kind == "owner":
            train += 50_000 * e * rate
        elif kind == NEGATIVE:
            train += d.innocent_per_class * c * e * rate
            n_measure += 1  # the own draw (the owner's draw is counted below)
        elif kind == "finetune":
            train += 0.2 * 20_000 * cfg.finetune_epochs * rate
        elif kind.startswith("distill"):
            student = arch if kind == "distill_same" else OTHER[arch]
            train += d.distill_per_class * c * cfg.distill_epochs * epoch_seconds[student] / 10_000
        n_measure += 1
    train *= 1.1
    total = train + n_measure * measure_seconds
    return {"train_cpu_seconds": round(train, 3), "train_cpu_hours": round(train / 3600, 2),
            "measurements": n_measure,
            "measure_cpu_seconds_each": round(measure_seconds, 1),
            "total_cpu_hours": round(total / 3600, 2),
            "basis": f"epoch CPU seconds per 10,000 images {dict(epoch_seconds)}; one measurement "
                     "= the mean measured so far"}


def result_files(records, cfg, prov, complete) -> dict:
    from ..paper_summary import summarize

    head = {"format": RESULT_FORMAT, "version": RESULT_VERSION, "banner": cfg.banner(),
            "reduced": cfg.reduced(),
            "settings": cfg.to_dict(), "provenance": prov, "complete": complete,
            "models_done": len(records), "budget": budget(records, cfg)}
    measure = [r.get("cpu_seconds", 0.0) for r in records]
    head["budget"]["a_priori"] = a_priori_budget(cfg, float(np.mean(measure)) if measure else 20.0)
    return {"records": {**head, "records": records},
            "summary": {**head, "summary": summarize(records, cfg)}}


def write_results(files: dict, out) -> None:
    from ...files import write_json_atomic

    for name, content in files.items():
        write_json_atomic(Path(out) / FILES[name], content)


def _read_records(folder) -> dict:
    """The records file in ``folder``, parsed and checked (:func:`files.read_result`: format,
    version, provenance)."""
    path = Path(folder) / FILES["records"]
    if not path.is_file():
        raise FileNotFoundError(f"no result file {path}; run `python -m pmi_tutorial study --config "
                                f"paper --out {folder}`")
    return _files.read_result(path, RESULT_FORMAT)


def load_results(folder):
    """``(records, config, summary file)`` from the result files in ``folder``."""
    rec = _read_records(folder)
    summ = _files.read_result(Path(folder) / FILES["summary"], RESULT_FORMAT)
    return rec["records"], config_from_dict(rec["settings"]), summ


def resummarize(folder, command=None) -> dict:
    """Recompute the summary file in ``folder`` from its records file, without models.

    The records (every measurement) and their provenance stay as the run wrote them; the summary
    gets ``"summary_recomputed"`` (command, commit, date) beside that provenance, so a reader
    sees both what measured the numbers and what last summarised them.
    """
    from ...files import git_commit, now, write_json_atomic

    rec = _read_records(folder)
    cfg = config_from_dict(rec["settings"])
    files = result_files(rec["records"], cfg, rec["provenance"], complete=rec["complete"])
    summary = files["summary"]
    summary["summary_recomputed"] = {"command": command, "git_commit": git_commit(),
                                     "date": now()}
    write_json_atomic(Path(folder) / FILES["summary"], summary)
    return summary


@functools.lru_cache(maxsize=1)
def cached_world(cfg: PaperConfig, root) -> World:
    return prepare(cfg, root)


def train_task(cfg: PaperConfig, arch, role, k, root=None, cache_dir=None) -> dict:
    """Runner task: train (or load) owner or innocent model k of ``arch``."""
    import torch

    torch.set_num_threads(1)
    make = owner_model if role == "owner" else innocent_model
    _, key, state = make(cached_world(cfg, root), arch, k, cache_dir)
    return {"model": key, "train_cpu_seconds": round(float(state.get("cpu_seconds", 0.0)), 2)}


def measure_task(cfg: PaperConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: the records of one entry of :func:`plan` (an innocent model has two draws)."""
    import torch

    torch.set_num_threads(1)
    return {"records": list(iter_records(cached_world(cfg, root), cfg, cache_dir, only=[(arch, kind, k)]))}


def _describe(cfg):
    def line(task_record):
        if "records" not in task_record:
            return f"trained {task_record['model']} ({task_record['train_cpu_seconds']} CPU s)"
        out = []
        for rec in task_record["records"]:
            top = rec["revealed"][str(max(cfg.revealed))]
            out.append(f"{rec['arch']:6s} {rec['kind']:13s} {rec['index']:2d} {rec['draw']:5s}: Q "
                       f"acc {rec['q_acc']:.3f}; closed form log10 p "
                       f"{top['closed_form']['log10_p']:.1f}, directional p {top['directional']:.3f}")
        return "\n".join(out)
    return line


def experiment(cfg: PaperConfig = PAPER, cache_dir=None, root=None, write=None) -> Experiment:
    """The paper-scale study as a runner plan: stage 1 trains every owner and innocent model,
    stage 2 measures every entry of :func:`plan` (training the attacked copies it needs)."""
    world = cached_world(cfg, root)
    root = None if root is None else str(root)
    cache = None if cache_dir is None else str(cache_dir)
    train = [Task(model_key(world, arch, role, k), train_task, (cfg, arch, role, k, root, cache))
             for arch, n_inn in zip(cfg.archs, cfg.n_innocent)
             for role, n in (("owner", cfg.n_owners), (NEGATIVE, n_inn)) for k in range(n)]
    measure_key = digest(measure_settings(cfg))

    def key(arch, kind, k):
        if kind == NEGATIVE:
            return f"{model_key(world, arch, kind, k)}_{measure_key}"
        base = model_key(world, arch, "owner", k)
        if kind != "owner":
            base = f"{base}_{kind}_{digest(attack_settings(cfg, kind))}"
        return f"{base}_{measure_key}"

    measure_ = [Task(key(*entry), measure_task, (cfg, *entry, root, cache)) for entry in plan(cfg)]
    return Experiment("paper_study", [train, measure_], write=write, describe=_describe(cfg),
                      cache_dir=cache_dir)


def run(cfg: PaperConfig = PAPER, out=None, cache_dir=None, root=None, progress=True,
        command=None, write_every=60.0, engine=None) -> dict:
    """Train (or load), attack and measure every model of :func:`plan` on the experiment runner
    (in process, or on ``engine``: :func:`runner.engine`); write the result files to ``out``
    at most every ``write_every`` seconds (``"complete": false``) and at the end."""
    import torch

    from ...files import provenance

    torch.set_num_threads(1)
    if progress:
        print(cfg.banner(), flush=True)
    last = {}

    def write(task_records, prov, complete):
        records = [r for t in task_records for r in t["records"]]
        last["files"] = result_files(records, cfg, prov, complete)
        if out is not None:
            write_results(last["files"], out)

    runner.run(experiment(cfg, cache_dir, root, write), engine=engine, progress=progress,
               write_every=write_every, provenance=provenance(command))
    return last["files"]
