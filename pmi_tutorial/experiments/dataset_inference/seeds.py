"""How much the walk's seed moves Dataset Inference's p-values: the seed study, its two-way ANOVA, table and figure."""

from __future__ import annotations

import json
import time

import numpy as np

from ... import files as F
from ...stats import clopper_pearson, rejects
from .config import DIConfig, PAPER, RESULT_FORMAT
from .results import report
from .paper import paper_detector, paper_test


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

    from ...baselines.dataset_inference import pixel_space
    from .. import paper_study as PS
    from ...files import digest

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
                report(rec, f"{arch:6s} innocent {k:2d} seed {s}", f"; {rec['seconds']} s")
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

    from ...plotting import MEMBER_COLOR, NEUTRAL_COLOR

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
