"""Run (or resume) the forensics of Table I: every variant's cells, then the greedy search for
the combination of readings closest to the paper (book chapter "Reproducing Tables I and II")."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ... import _validate as V
from .measure import cell
from .owner import CachedModels
from .summary import RESULT_FORMAT, RESULT_NAME, paper_cells, result_path
from .variants import (BASELINE, DECISIONS, DISTANCES, DRAWS, FEATURES, KEPT, NORMALIZATIONS,
                       SEARCH_FIELDS, SPLITS, TIES, one_at_a_time, variant_name)


def _settings(profile, trials, seeds, ms, ns, single_seeds, full_seeds) -> dict:
    return {"experiment": RESULT_NAME, "profile": profile.name, "trials": trials,
            "seeds": [int(s) for s in seeds], "ms": [int(m) for m in ms], "ns": [int(n) for n in ns],
            "single_seeds": single_seeds, "full_seed_variants": list(full_seeds)}


def _objective(result: dict, name: str, model: str, seeds) -> float | None:
    """Mean absolute difference to the paper of the seed-mean over ``seeds`` (both numbers)."""
    paper = paper_cells()
    vals: dict = {}
    for c in result["cells"]:
        if c["variant"] == name and c["model"] == model and c["seed"] in seeds:
            vals.setdefault((c["model"], c["m"], c["n"]), []).append((c["acc_r_opt"], c["mean_acc_r"]))
    diffs = []
    for key, v in vals.items():
        if key in paper and len(v) == len(seeds):
            a = np.mean(v, axis=0)
            diffs.append((abs(a[0] - paper[key][1]) + abs(a[1] - paper[key][2])) / 2)
    return float(np.mean(diffs)) if diffs else None


def run(out_dir="results", profile="paper", models=("mlp", "lenet5"), variants=None, seeds=10,
        trials=None, ms=None, ns=None, search: bool = True, search_seeds: int = 3,
        search_model: str = "mlp", search_fields=SEARCH_FIELDS, single_seeds: int | None = None,
        full_seeds=("baseline",), provider=None, cache_dir=None, command: str | None = None,
        log=print, write_every: float = 5.0) -> dict:
    """Run (or resume) the forensics of Table I and return the result dictionary.

    For every model, every variant (default :func:`one_at_a_time`) and every seed of the
    draws (``seeds``: a count, seeds 0..seeds-1, or a list), all cells m x n are computed
    (:func:`cell`) and written to ``out_dir/forensics_{profile}.json``: atomically, at most
    every ``write_every`` seconds and at the end, so a killed run loses only the last few
    seconds and resumes after its last written cell.  With ``search``, a greedy search then
    combines the one-at-a-time answers on ``search_model`` (each field in ``search_fields``,
    default :data:`SEARCH_FIELDS`, tried on top of the current best, judged by the mean absolute
    difference to the paper over the first ``search_seeds`` seeds, until nothing improves);
    the winner is run with every seed on every model as the variant named in
    ``result["best"]``.  With ``single_seeds``, the variants not named in ``full_seeds`` (and
    not the winner) get only the first ``single_seeds`` seeds.  ``provider(model, variant)`` gives ``({r: (features_P, features_Q)},
    model_info)`` or None (default: :class:`CachedModels`, which trains only missing MLPs).
    """
    from ... import files
    from ...profiles import Profile, get_profile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    trials = V.check_positive_int(prof.trials if trials is None else trials, "trials")
    seeds = list(range(V.check_positive_int(seeds, "seeds"))) if isinstance(seeds, (int, np.integer)) \
        else [int(s) for s in seeds]
    if not seeds or seeds[0] != 0:
        raise ValueError(f"seeds must start with 0 (the draws of the committed Table I), got {seeds}")
    search_seeds = seeds[:V.check_positive_int(search_seeds, "search_seeds")]
    ms = [V.check_m(m) for m in (ms or prof.ms)]
    ns = [V.check_n(n) for n in (ns or prof.ns)]
    variants = dict(one_at_a_time() if variants is None else variants)
    if "baseline" not in variants:
        variants = {"baseline": BASELINE, **variants}
    provider = provider or CachedModels(prof, cache_dir)
    path = result_path(out_dir, prof)
    if single_seeds is not None:
        single_seeds = min(V.check_positive_int(single_seeds, "single_seeds"), len(seeds))
    full_seeds = tuple(full_seeds)
    settings = _settings(prof, trials, seeds, ms, ns, single_seeds, full_seeds)
    files.remove_stale_temps(path)
    runinfo = dict(files.provenance(command), cells_done=0, seconds=0.0)
    if path.exists():
        result = files.read_result(path, RESULT_FORMAT)
        if result.get("settings") != settings:
            differ = sorted(k for k in settings if result["settings"].get(k) != settings[k])
            raise ValueError(f"{path} was made with other settings ({', '.join(differ)} differ); "
                             "delete it or pass another --out folder")
        log(f"[forensics] resuming from {path}: {len(result['cells'])} cell(s) already done")
    else:
        result = {**files.result_header(RESULT_FORMAT, command), "settings": settings, "runs": [],
                  "models": {}, "variants": {}, "unavailable": {}, "search": None, "best": None, "cells": [], "run_seconds": 0.0}
    result["runs"].append(runinfo)
    result["unavailable"] = {}  # recomputed: a model may have been trained since
    done = {(c["variant"], c["model"], c["seed"], c["m"], c["n"]) for c in result["cells"]}
    clock = {"start": time.perf_counter(), "written": time.perf_counter()}

    def save(force=False):
        now = time.perf_counter()
        if force or now - clock["written"] >= write_every:
            elapsed = now - clock["start"]
            clock["start"] = now
            result["run_seconds"] = round(result["run_seconds"] + elapsed, 1)
            runinfo["seconds"] = round(runinfo["seconds"] + elapsed, 1)
            runinfo["finished"] = result["provenance"]["finished"] = files.now()
            files.write_json_atomic(path, result)
            clock["written"] = now

    def evaluate(name, variant, model, use_seeds) -> bool:
        todo = [(s, m, n) for s in use_seeds for m in ms for n in ns
                if (name, model, s, m, n) not in done]
        result["variants"].setdefault(name, variant.to_dict())
        if not todo:
            return True
        got = provider(model, variant)
        if got is None:
            if name not in result["unavailable"].get(model, []):
                result["unavailable"].setdefault(model, []).append(name)
                log(f"[forensics] {model} {name}: its model is not available, left out")
            return False
        feats, info = got
        result["models"][f"{model}/{variant.kept}/{variant.split}/{variant.train_seed}"] = info
        for s, m, n in todo:
            t0 = time.perf_counter()
            c = cell(feats, m, n, trials, s, variant)
            c = {"variant": name, "model": model, "seed": s, "m": m, "n": n, **c,
                 "seconds": round(time.perf_counter() - t0, 3)}
            result["cells"].append(c)
            done.add((name, model, s, m, n))
            runinfo["cells_done"] += 1
            save()
            log(f"  {model} {name} seed={s} m={m} n={n}: r_opt={c['r_opt']} "
                f"acc_r_opt={c['acc_r_opt']:.2f} mean acc_r={c['mean_acc_r']:.3f}")
        save(force=True)
        return True

    for model in models:
        for name, variant in variants.items():
            few = single_seeds is not None and name not in full_seeds
            evaluate(name, variant, model, seeds[:single_seeds] if few else seeds)

    if search and search_model in models:
        singles = {n: v for n, v in variants.items()
                   if set(v.changes()) <= set(search_fields)}
        scored = {n: _objective(result, n, search_model, search_seeds) for n in singles}
        scored = {n: s for n, s in scored.items() if s is not None}
        if not scored:
            log("[forensics] no cell of the paper's Table I was computed: no combination search")
            search = False
    if search and search_model in models:
        current = min(scored, key=scored.get)
        best_v, best_s = variants[current], scored[current]
        path_log = [{"variant": current, "objective": best_s}]
        improved = True
        while improved:
            improved = False
            for f in search_fields:
                allowed = {"features": FEATURES, "normalization": NORMALIZATIONS, "distance": DISTANCES,
                           "decision": DECISIONS, "tie": TIES, "kept": KEPT, "draws": DRAWS,
                           "split": SPLITS}[f]
                for value in allowed:
                    cand = replace(best_v, **{f: value})
                    if cand == best_v:
                        continue
                    name = variant_name(cand)
                    if not evaluate(name, cand, search_model, search_seeds):
                        continue
                    score = _objective(result, name, search_model, search_seeds)
                    if score is not None and score < best_s - 1e-12:
                        best_v, best_s, improved = cand, score, True
                        path_log.append({"variant": name, "objective": score})
                        log(f"[forensics] search: {name} -> {score:.4f}")
        result["search"] = {"model": search_model, "seeds": search_seeds, "fields": list(search_fields),
                            "objective": "mean over cells of (|acc_r_opt - paper| + |mean acc_r - paper|) / 2, "
                                         "values averaged over the search seeds", "path": path_log}
        result["best"] = variant_name(best_v)
        for model in models:
            evaluate(result["best"], best_v, model, seeds)
    save(force=True)
    result["path"] = str(path)
    return result
