"""What is measured on every model and draw (the closed-form, directional and permutation tests, the paper's acc_r), cached per model; the plan of suspects."""

from __future__ import annotations

import json
import time

import numpy as np

from ...data import as_index
from ...files import digest
from .config import FEATURES, NEGATIVE, PaperConfig
from .models import attacked, innocent_model, model_folder, owner_model
from .world import OWN_DRAW, World, own_draw, owner_draw


# --------------------------------------------------------------------------- measurements


def feature_views(outputs: np.ndarray, output: str) -> dict:
    """``{"logits", "logprob", "prob"}`` of one model's outputs (float64).  From probabilities
    only (float32, as an API returns them), the "logits" view is the log-probabilities."""
    from scipy.special import log_softmax

    from ...verification import to_log_probabilities

    if output == "logits":
        lp = log_softmax(outputs, axis=1)
        return {"logits": outputs, "logprob": lp, "prob": np.exp(lp)}
    lp = to_log_probabilities(outputs, "probabilities")
    return {"logits": lp, "logprob": lp, "prob": outputs}


def measure(views_P: dict, views_Q: dict, cfg: PaperConfig) -> dict:
    """Every statistic of one model and one draw, at each number revealed per class.

    ``views_P[f][r]`` / ``views_Q[f][r]``: features ``f`` (:func:`feature_views`) of P' (in
    reveal order) and Q of class r.  Returns ``{str(k): {"closed_form": {"log10_p", "z",
    "fisher_log10_p"}, "closed_form_tail": {"log10_p", "count"}, "directional": p,
    "features": {f: {"acc": [acc_r], "calibrated": p,
    "outlier": p}}}}``; "calibrated"/"outlier" only where the configuration runs them.
    """
    from ... import fingerprint, stats

    out = {}
    classes = sorted(views_P["logprob"])
    for k in cfg.revealed:
        lp = {r: (views_P["logprob"][r][:k], views_Q["logprob"][r]) for r in classes}
        scores = stats.class_scores(lp)
        cf = stats.closed_form_from_scores(scores)
        fi = stats.closed_form_from_scores(scores, combine="fisher")
        tail = stats.closed_form_from_scores(scores, test="tail", fraction=cfg.tail)
        d = stats.directional_from_scores(scores, B=cfg.B, seed=cfg.seed).pvalue
        n = min(cfg.n, k)
        feats = {}
        for f in cfg.features:
            fp = {r: (views_P[f][r][:k], views_Q[f][r]) for r in classes}
            res = fingerprint.run_on_features(fp, cfg.m, n, trials=cfg.trials, seed=cfg.seed)
            cell = {"acc": [round(float(res.acc_by_class[r]), 4) for r in classes]}
            if f == "logits" or k in cfg.perm_all_features_at:
                for name, stat in (("calibrated", "pmi"), ("outlier", "outlier")):
                    cell[name] = stats.permutation_test(fp, stat, B=cfg.B, seed=cfg.seed, m=cfg.m,
                                                        n=n, trials=cfg.perm_trials).pvalue
            feats[f] = cell
        out[str(k)] = {"closed_form": {"log10_p": round(cf.log10_pvalue, 4),
                                       "z": round(cf.statistic, 4),
                                       "fisher_log10_p": round(fi.log10_pvalue, 4)},
                       "closed_form_tail": {"log10_p": round(tail.log10_pvalue, 4),
                                            "count": tail.statistic},
                       "directional": d, "features": feats}
    return out


def measure_settings(cfg: PaperConfig) -> dict:
    """The settings a measurement depends on (its cache key and the run's task keys)."""
    d = cfg.to_dict()
    keep = ("revealed", "features", "m", "n", "trials", "B", "perm_trials", "perm_all_features_at",
            "seed", "tail")
    # the directional test of stats.directional_test (random cyclic-group re-splits), as in
    # verify_ownership
    return {**{k: d[k] for k in keep}, "directional": "cyclic-group"}


def _outputs(model, images: dict, output: str) -> dict:
    import torch

    from ...features import logits

    out = {}
    for r, x in images.items():
        z = logits(model, x).double()
        out[r] = (torch.softmax(z, 1).float().double() if output == "probabilities" else z).numpy()
    return out


def restrict_q(Q: dict, keep_q, split) -> dict:
    """Q per class without the validation images a fine-tuning attack used (``keep_q``: the
    validation indices left; None: Q unchanged)."""
    if keep_q is None:
        return Q
    vy = split.val_y.numpy()
    return {r: split.val_x[as_index(np.intersect1d(np.flatnonzero(vy == r), keep_q))] for r in Q}


def measured(model, output, draw, key, cfg, cache_dir=None, keep_q=None, split=None) -> dict:
    """:func:`measure` of ``model`` on ``draw`` = (P images, Q images) per class, cached by the
    model's key, the draw and the settings; written atomically."""
    from ...files import write_json_atomic

    path = model_folder(cache_dir) / "records" / f"{key}_{digest(measure_settings(cfg))}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.process_time()
    P, Q = draw
    Q = restrict_q(Q, keep_q, split)
    oP, oQ = _outputs(model, P, output), _outputs(model, Q, output)
    vP = {f: {} for f in FEATURES}
    vQ = {f: {} for f in FEATURES}
    for r in oP:
        for f, v in feature_views(oP[r], output).items():
            vP[f][r] = v
        for f, v in feature_views(oQ[r], output).items():
            vQ[f][r] = v
    correct = sum(int((oQ[r].argmax(1) == r).sum()) for r in oQ)
    record = {"q_acc": round(correct / sum(len(v) for v in oQ.values()), 4),
              "revealed": measure(vP, vQ, cfg)}
    record["cpu_seconds"] = round(time.process_time() - t0, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def plan(cfg: PaperConfig) -> list:
    """The models in run order: per architecture, owner k with its copies, then a block of the
    innocent models (so that partial results hold some of every kind)."""
    out = []
    for arch, n_inn in zip(cfg.archs, cfg.n_innocent):
        per = -(-n_inn // max(cfg.n_owners, 1))
        for k in range(max(cfg.n_owners, 1)):
            if k < cfg.n_owners:
                out.append((arch, "owner", k))
                out += [(arch, a, k) for a in cfg.attacks]
            out += [(arch, NEGATIVE, j) for j in range(k * per, min(n_inn, (k + 1) * per))]
    return out


def iter_records(world: World, cfg: PaperConfig, cache_dir=None, only=None):
    """Yield one record per (model, draw) of :func:`plan`, training and measuring as needed."""
    odraw = owner_draw(world)
    owners = {}
    for arch, kind, k in plan(cfg) if only is None else only:
        if kind == NEGATIVE:
            model, key, state = innocent_model(world, arch, k, cache_dir)
            for draw_name, draw, tag in (("owner", odraw, "owner"),
                                         ("own", own_draw(world, k), f"own-{digest(OWN_DRAW)}")):
                rec = measured(model, "logits", draw, f"{key}_{tag}", cfg, cache_dir)
                yield {"arch": arch, "kind": kind, "index": k, "owner": None, "draw": draw_name,
                       "train_cpu_seconds": state.get("cpu_seconds", 0.0), **rec}
            continue
        if (arch, k) not in owners:
            owners[(arch, k)] = owner_model(world, arch, k, cache_dir)
        owner, okey, ostate = owners[(arch, k)]
        if kind == "owner":
            model, output, keep, key, tsec = owner, "logits", None, okey, ostate.get("cpu_seconds", 0)
        else:
            t0 = time.process_time()
            model, output, keep = attacked(world, owner, okey, arch, kind, k, cache_dir)
            key, tsec = f"{okey}_{kind}_{digest(attack_settings(cfg, kind))}", time.process_time() - t0
        rec = measured(model, output, odraw, key, cfg, cache_dir, keep_q=keep, split=world.split)
        yield {"arch": arch, "kind": kind, "index": k, "owner": k, "draw": "owner",
               "train_cpu_seconds": round(float(tsec), 2), **rec}


def attack_settings(cfg, attack) -> dict:
    d = cfg.to_dict()
    return {"attack": attack, **{k: v for k, v in d.items()
                                 if k.split("_")[0] in ("finetune", "noise", "distill", "design")}}
