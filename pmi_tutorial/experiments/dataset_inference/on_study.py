"""Dataset Inference on the models of the false-positive study (:mod:`pmi_tutorial.experiments.study`), on the experiment runner."""

from __future__ import annotations

import functools
import time
from pathlib import Path


from ... import files as F
from .. import runner
from ..runner import Experiment, Task
from .config import CPU, DIConfig, FILE, RESULT_FORMAT
from .detector import owner_detector, test_suspect
from .results import build_result, describe, with_engine


# --------------------------------------------------------------------------- the run


@functools.lru_cache(maxsize=4)
def _study_detector(study_cfg, cfg: DIConfig, arch, owner_k, root=None, cache_dir=None):
    """Owner ``owner_k``'s fitted Dataset Inference (once per process: tasks of one owner share it)."""
    from ...baselines.dataset_inference import pixel_space
    from ..study import run as SR

    study = SR.cached_study(study_cfg.design, root)
    owner, *_ = SR.owner_model(study, study_cfg, arch, owner_k, cache_dir)
    return owner_detector(owner, study.pools, cfg, *pixel_space(study_cfg.design.dataset))


def study_task(study_cfg, cfg: DIConfig, arch, kind, k, root=None, cache_dir=None) -> dict:
    """Runner task: one suspect of the false-positive study tested by Dataset Inference."""
    import torch

    from ..study import run as SR

    torch.set_num_threads(1)
    study = SR.cached_study(study_cfg.design, root)
    info, model, pools, _, _ = SR.suspect(study, study_cfg, arch, kind, k, cache_dir)
    detector = _study_detector(study_cfg, cfg, arch, info["owner"] or 0, root, cache_dir)
    # an innocent model against its own random member pool also gets its own draw of the
    # revealed images: p-values independent across models (the study's "resplit")
    draw = info["index"] + 1 if kind == "resplit" else 0
    return {**info, **test_suspect(detector, model, pools, cfg, draw)}


def run_dataset_inference(study_cfg=None, cfg: DIConfig = CPU, out=None, cache_dir=None,
                          root=None, progress=True, command=None, engine=None) -> dict:
    """Dataset Inference on every model of the study ``study_cfg`` (default: its CPU run).

    Runs on :mod:`.runner` (in process, or on ``engine``): stage 1 trains the study's models that
    are missing, stage 2 tests each suspect (:func:`study_task`), whose record is cached as it
    finishes, so an interrupted run resumes.  Writes ``dataset_inference_<name>.json`` to
    ``out`` (atomically, at most every 30 s and at the end) and returns its content.
    """
    from .. import study as S

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
        last["result"] = build_result(cfg, study_cfg, with_engine(header, prov), records,
                                      complete, time.perf_counter() - t_wall)
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), last["result"])

    exp = Experiment("dataset_inference", [train, tasks], write=write_out, describe=describe,
                     folder=S.run.model_folder(cache_dir) / "dataset_inference")
    runner.run(exp, engine=engine, progress=progress, provenance=header["provenance"])
    return last["result"]
