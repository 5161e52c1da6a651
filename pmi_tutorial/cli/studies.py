"""The experiments' commands: ``reproduce`` (tables, forensics, controls), ``study``, ``dataset-inference``, ``confirm``."""

from __future__ import annotations

from .options import floats as _floats, ints as _ints


def cmd_forensics(args) -> int:
    from ..experiments import forensics

    if args.seed not in (None, 0) or args.rates or args.classes:
        raise ValueError("forensics runs seeds 0..--seeds-1 on every class; drop --seed, --rates and --classes")
    variants = None
    if args.variants:
        known = forensics.one_at_a_time()
        wanted = [v.strip() for v in args.variants.split(",") if v.strip()]
        unknown = [v for v in wanted if v not in known]
        if unknown:
            raise ValueError(f"unknown forensics variant(s) {unknown}; use some of {', '.join(known)}")
        variants = {v: known[v] for v in wanted}
    res = forensics.run(
        out_dir=args.out, profile=args.profile, models=tuple(args.models.split(",")) if args.models
        else ("mlp", "lenet5"), variants=variants, seeds=args.seeds, trials=args.trials,
        ms=_ints(args.ms, "ms"), ns=_ints(args.ns, "ns"), search=not args.no_search,
        single_seeds=args.single_seeds, full_seeds=tuple(args.full_seeds.split(",")),
        command="python -m pmi_tutorial " + " ".join(args.argv),
    )
    for model in dict.fromkeys(c["model"] for c in res["cells"]):
        print(f"{model}:")
        print(forensics.format_variant_table(res, model))
    print(f"result file: {res['path']}")
    return 0


def cmd_table1_controls(args) -> int:
    from ..experiments import runner
    from ..experiments import table1_controls as T

    extra = [f for f, v in (("--seed", args.seed), ("--trials", args.trials), ("--models", args.models),
                            ("--ms", args.ms), ("--ns", args.ns), ("--rates", args.rates),
                            ("--classes", args.classes), ("--variants", args.variants)) if v]
    if extra:
        raise ValueError(f"table1-controls takes its settings from --controls-config; drop {', '.join(extra)}")
    cfg = T.CONFIGS[args.controls_config]
    with runner.engine(args.workers, args.scheduler) as eng:
        res = T.run_controls(cfg, out=args.out, cache_dir=args.cache_dir, engine=eng,
                             command="python -m pmi_tutorial " + " ".join(args.argv),
                             progress=not args.no_progress)
    for split in cfg.splits:
        print(T.format_table(res, split))
    print(T.rescore_table(res))
    print(f"result file: {T.result_path(args.out, cfg)}")
    return 0


def cmd_reproduce(args) -> int:
    """``reproduce``: run (or resume) a sweep of Tables I-IV or Figure 2."""
    from .. import experiments

    if args.experiment == "forensics":
        return cmd_forensics(args)
    if args.experiment == "table1-controls":
        return cmd_table1_controls(args)

    res = experiments.reproduce(
        args.experiment, args.profile, out_dir=args.out, seed=args.seed, trials=args.trials,
        models=args.models.split(",") if args.models else None, ms=_ints(args.ms, "ms"),
        ns=_ints(args.ns, "ns"), rates=_floats(args.rates, "rates"), classes=_ints(args.classes, "classes"),
        progress=not args.no_progress,
        command="python -m pmi_tutorial " + " ".join(args.argv),
    )
    print(experiments.format_table(res))
    print(f"result file: {res['path']}")
    return 0


def cmd_study(args) -> int:
    """``study``: run (or resume) the false-positive study and write its result files."""
    from dataclasses import replace

    from .. import _validate as V
    from ..experiments import paper_study, runner, study

    command = "python -m pmi_tutorial " + " ".join(args.argv)
    if args.summarize_only and (args.workers or args.scheduler):
        raise ValueError("--summarize-only reads the records file only: drop --workers / --scheduler")
    if args.config in paper_study.CONFIGS:  # the paper-scale study's configurations
        if args.summarize_only:
            summary = paper_study.resummarize(args.out, command=command)
            print(f"recomputed {paper_study.FILES['summary']} in {args.out} from "
                  f"{summary['models_done']} measured models")
            return 0
        with runner.engine(args.workers, args.scheduler) as eng:
            files = paper_study.run(paper_study.CONFIGS[args.config], out=args.out,
                                    cache_dir=args.cache_dir, progress=not args.quiet,
                                    command=command, engine=eng)
        print(f"wrote {', '.join(paper_study.FILES.values())} to {args.out}; "
              f"{files['summary']['budget']['done_cpu_hours']} CPU-hours")
        return 0
    if args.summarize_only:
        summary = study.resummarize(args.out, command=command)
        print(f"recomputed {study.FILES['summary']} in {args.out} from "
              f"{len(summary['summary'])} architectures' records")
        return 0
    changes = {"archs": tuple(args.archs) if args.archs else None,
               "n_independent": args.n_independent, "n_owners": args.n_owners}
    for name in ("n_independent", "n_owners"):
        if changes[name] is not None:
            V.check_positive_int(changes[name], "--" + name.replace("_", "-"))
    cfg = replace(study.CONFIGS[args.config], **{k: v for k, v in changes.items() if v is not None})
    with runner.engine(args.workers, args.scheduler) as eng:
        files = study.run_study(cfg, out=args.out, cache_dir=args.cache_dir,
                                progress=not args.quiet, command=command, engine=eng)
    prov = files["summary"]["provenance"]
    print(f"wrote {', '.join(study.FILES.values())} to {args.out} in {prov['run_wall_seconds']} s "
          f"({prov['run_cpu_seconds']} CPU s, {prov['engine']})")
    return 0


def _walk_seeds(args, cfg, command) -> int:
    """``dataset-inference --walk-seeds``: the seed study of :func:`.dataset_inference.seed_study`."""
    from pathlib import Path

    from ..experiments import dataset_inference as D

    if len(cfg.archs) != 1:
        raise ValueError(f"--walk-seeds studies one architecture: add --archs with one of "
                         f"{', '.join(cfg.archs)}")
    spec = args.innocents.strip()
    try:
        lo, _, hi = spec.partition("-")
        models = range(int(lo), int(hi) + 1) if hi else range(int(lo))
    except ValueError:
        raise ValueError(f"--innocents {spec!r}: give a number N (the first N innocent models) or "
                         "a range A-B, e.g. --innocents 9-13") from None
    di = D.CONFIGS[args.config]
    main = Path(args.out) / D.FILE.format(name=di.name)
    res = D.seed_study(cfg, di, arch=cfg.archs[0], models=models,
                       seeds=args.walk_seeds, out=args.out, cache_dir=args.cache_dir,
                       progress=not args.quiet, command=command,
                       only_cached_models=not args.train_missing,
                       main_result=main if main.is_file() else None)
    print(D.seed_table(res["summary"]))
    if "reproduction" in res:
        r = res["reproduction"]
        print(f"seed {r['seed']} against {main}: {r['n_models_compared']} models, largest "
              f"difference of a first-draw p-value {r['max_abs_difference_first_draw']}")
    print(f"wrote {D.SEEDS_FILE.format(name=di.name, arch=cfg.archs[0])} to {args.out}: {len(res['models'])} "
          f"(model, seed) tests in {res['run_wall_seconds']} s"
          + ("" if res["complete"] else "; some models are not trained (--train-missing)"))
    return 0


_GONE = ("one run shares its tasks between processes now: run it once with --workers N (this "
         "machine) or --scheduler ADDRESS (a Dask cluster); a killed run resumes from its cache")


def cmd_dataset_inference(args) -> int:
    from dataclasses import replace

    from ..experiments import dataset_inference as D
    from ..experiments import runner, study

    command = "python -m pmi_tutorial " + " ".join(args.argv)
    gone = [f for f, on in (("--owners", args.owners is not None), ("--gather-only", args.gather_only),
                            ("--merge", args.merge is not None)) if on]
    if gone:
        raise ValueError(f"{' and '.join(gone)}: {_GONE}")
    if args.walk_scales is not None:
        from ..experiments import di_walk_scale as W

        with runner.engine(args.workers, args.scheduler) as eng:
            res = W.run_scales(W.CONFIGS[args.walk_scales], out=args.out, cache_dir=args.cache_dir,
                               progress=not args.quiet, command=command, engine=eng)
        print(f"wrote {W.FILE.format(name=args.walk_scales)} to {args.out}: "
              f"{len(res['records'])} suspects, complete: {res['complete']}")
        return 0
    if args.control is not None:
        from ..experiments import di_control

        with runner.engine(args.workers, args.scheduler) as eng:
            res = di_control.run_control(di_control.CONFIGS[args.control], out=args.out,
                                         cache_dir=args.cache_dir, progress=not args.quiet,
                                         command=command, engine=eng)
        print(f"wrote {di_control.FILE.format(name=args.control)} to {args.out}: "
              f"{len(res['records'])} suspects, complete: {res['complete']}")
        return 0
    if args.summarize_only:
        from pathlib import Path

        res = D.resummarize(Path(args.out) / D.FILE.format(name=args.config), command=command)
        print(f"recomputed the summary of {D.FILE.format(name=args.config)} in {args.out} from "
              f"{len(res['models'])} suspects")
        return 0
    if args.walk_seeds is None and args.train_missing:
        raise ValueError("--train-missing goes with --walk-seeds (the comparison trains the "
                         "models it needs): drop it")
    from ..experiments import paper_study

    if args.study in paper_study.CONFIGS:  # the paper-scale study's models
        cfg = paper_study.CONFIGS[args.study]
        if args.archs:
            keep = [i for i, a in enumerate(cfg.archs) if a in args.archs]
            if not keep:
                raise ValueError(f"--archs {' '.join(args.archs)}: the study {args.study} has "
                                 f"{', '.join(cfg.archs)}")
            cfg = replace(cfg, archs=tuple(cfg.archs[i] for i in keep),
                          n_innocent=tuple(cfg.n_innocent[i] for i in keep),
                          epochs=tuple(cfg.epochs[i] for i in keep))
        if args.walk_seeds is not None:
            if args.workers or args.scheduler:
                raise ValueError("--walk-seeds runs in this process: drop --workers / --scheduler")
            return _walk_seeds(args, cfg, command)
        with runner.engine(args.workers, args.scheduler) as eng:
            res = D.run_on_paper_study(cfg, D.CONFIGS[args.config], out=args.out,
                                       cache_dir=args.cache_dir, progress=not args.quiet,
                                       command=command, engine=eng)
    else:
        if args.walk_seeds is not None:
            raise ValueError("--walk-seeds works with --study paper or paper-tiny")
        cfg = study.CONFIGS[args.study]
        if args.archs:
            cfg = replace(cfg, archs=tuple(args.archs))
        with runner.engine(args.workers, args.scheduler) as eng:
            res = D.run_dataset_inference(cfg, D.CONFIGS[args.config], out=args.out,
                                          cache_dir=args.cache_dir, progress=not args.quiet,
                                          command=command, engine=eng)
    print(f"wrote {D.FILE.format(name=args.config)} to {args.out}: {len(res['models'])} models "
          f"in {res['run_wall_seconds']} s")
    return 0


def cmd_confirm(args) -> int:
    """``confirm``: the confirmatory study (:mod:`.experiments.confirmatory`)."""
    import json
    from pathlib import Path

    from ..experiments import confirmatory as C
    from ..experiments import runner
    from ..files import git_commit, write_json_atomic

    if args.write_registration:
        path = Path(args.registration)
        if path.exists():
            raise ValueError(f"{path} exists; a registration is written once (edit it only with a "
                             "departure noted), or pass another --registration")
        reg = C.registration_for([C.CONFIGS[a] for a in ("mlp", "lenet5")], git_commit())
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, reg)
        print(f"wrote {path}; commit it before the run (analysis commit {reg['analysis_commit']})")
        return 0
    if args.summarize_only:
        path = Path(args.out) / C.FILE.format(arch=args.arch)
        res = C.load(args.arch, args.out)
        res["summary"] = C.summarize_records(res["records"], C.config_from_dict(res["settings"]))
        write_json_atomic(path, res)
        print(f"recomputed the summary of {path} from {len(res['records'])} records")
        return 0
    command = "python -m pmi_tutorial " + " ".join(args.argv)
    with runner.engine(args.workers, args.scheduler) as eng:
        res = C.run(C.CONFIGS[args.arch], out=args.out, cache_dir=args.cache_dir,
                    registration=args.registration, progress=not args.quiet, command=command,
                    engine=eng)
    print(f"wrote {C.FILE.format(arch=args.arch)} to {args.out}: worlds {res['worlds_done']}; "
          f"targets {json.dumps(res['summary']['targets'])}")
    return 0
