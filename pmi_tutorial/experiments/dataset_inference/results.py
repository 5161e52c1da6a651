"""A run's result file (its header with the engine, the records and their summary; the summary
recomputed from the records) and its progress lines."""

from __future__ import annotations

from ... import files as F
from .config import RESULT_FORMAT, config_from_dict
from .summary import summarize


def report(rec: dict, label: str, extra: str = "") -> None:
    """One progress line: the suspect and its first-draw p-value per number revealed."""
    p = ", ".join(f"{n}: {v:.2g}" for n, v in rec["pvalue_first_draw"].items())
    print(f"{label}: DI p (first draw) {p}{extra}", flush=True)


def with_engine(header: dict, prov: dict) -> dict:
    """The result header with the engine that ran the tasks (``runner.run``'s provenance)."""
    return {**header, "provenance": {**header["provenance"], "engine": prov["engine"]}}


def describe(rec: dict) -> str:
    """The runner's progress line of one trained model or tested suspect."""
    if "pvalue_first_draw" not in rec:
        return f"trained {rec['model']} ({rec['train_cpu_seconds']} CPU s)"
    p = ", ".join(f"{n}: {v:.2g}" for n, v in rec["pvalue_first_draw"].items())
    return f"{rec['arch']:6s} {rec['kind']:13s} {rec['index']:2d}: DI p (first draw) {p}; {rec['seconds']} s"


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
