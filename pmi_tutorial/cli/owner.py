"""The owner's commands: ``train``, ``pools``, ``verify``, ``attack``."""

from __future__ import annotations

from pathlib import Path

from .options import ints as _ints


def _owner_split(settings, args):
    from .. import data
    from ..models import dataset_of
    from ..profiles import get_profile

    profile = get_profile(args.profile)
    dataset = args.dataset or dataset_of(settings["model"])
    if dataset != dataset_of(settings["model"]):
        raise ValueError(
            f"the checkpoint holds a {settings['model']} model for {dataset_of(settings['model'])}, "
            f"but --dataset {dataset} was given; pass --dataset {dataset_of(settings['model'])}"
        )
    return data.owner_split(dataset, seed=args.seed, train_per_class=profile.train_per_class[dataset])


def cmd_train(args) -> int:
    """``train``: fit a model on the owner's split (best-validation epoch), resumable."""
    from .. import data
    from ..checkpoint import save_checkpoint, sidecar_path
    from ..models import build_model, dataset_of
    from ..profiles import get_profile
    from ..training import train

    profile = get_profile(args.profile)
    dataset = args.dataset or dataset_of(args.model)
    if dataset != dataset_of(args.model):
        raise ValueError(f"{args.model} is built for {dataset_of(args.model)}; pass --dataset {dataset_of(args.model)}")
    epochs = args.epochs if args.epochs is not None else profile.epochs[args.model]
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    print(profile.banner())
    out = Path(args.out or f"models/{args.model}.pt")
    split = data.owner_split(dataset, seed=args.seed, train_per_class=profile.train_per_class[dataset])
    width = profile.width[args.model]
    model = build_model(args.model, num_classes=split.num_classes, width=width, seed=args.seed)
    settings = {"model": args.model, "dataset": dataset, "width": width, "num_classes": split.num_classes,
                "epochs": epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed,
                "train_per_class": profile.train_per_class[dataset], "profile": profile.name}
    resume = out.with_name(out.name + ".resume")
    res = train(model, split, epochs=epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                checkpoint_path=resume, progress=not args.no_progress)
    save_checkpoint(out, res.model, dict(settings, best_epoch=res.best_epoch, best_val_acc=res.best_val_acc),
                    state={"history": res.history})
    for p in (resume, sidecar_path(resume)):  # finished: the per-epoch resume file is not needed
        p.unlink(missing_ok=True)
    print(f"best epoch {res.best_epoch} of {epochs}: validation accuracy {res.best_val_acc:.4f}")
    print(f"wrote {out} (weights) and {out}.json (settings)")
    return 0


def cmd_verify(args) -> int:
    """``verify``: the verdict (primary test and alpha fixed in the pools), the evidence (each
    calibrated p-value), and for comparison the paper's rule (Eq. 13-14) and Eq. 15.  Every
    argument and both files are checked before the suspect sees an image."""
    from .. import _validate as V
    from .. import fingerprint, pools_file, verification
    from ..suspects import check_suspect_file

    V.check_n(args.n)
    V.check_positive_int(args.trials, "--trials")
    if args.B is not None:
        V.check_positive_int(args.B, "--B")
    fingerprint.check_rho(args.rho, args.m)  # checks m and rho now, not after all the trials
    classes = _ints(args.classes, "classes")
    expect = None if args.expect_digest is None else pools_file.check_digest(args.expect_digest)
    if args.pools is None and expect is not None:
        raise ValueError("--expect-digest checks a pools file: add --pools FILE (the file whose "
                         "digest was registered)")
    if args.pools is not None and args.revealed is not None:
        raise ValueError("--revealed draws pools from the owner split, but --pools fixes them; "
                         "drop --revealed")
    kind = check_suspect_file(args.suspect)
    if args.pools is not None:
        pools = pools_file.load_pools(args.pools, expect_digest=expect)
        if args.dataset is not None and args.dataset != pools.dataset:
            raise ValueError(f"--dataset {args.dataset}, but the pools file holds {pools.dataset} "
                             f"images; drop --dataset or pass the owner's {args.dataset} pools")
    else:
        if kind != "checkpoint":
            raise ValueError(f"a {kind} suspect names no data set or split: pass the owner's pools "
                             "file with --pools FILE (python -m pmi_tutorial pools --out FILE)")
        from ..checkpoint import read_settings
        from ..profiles import get_profile

        if args.revealed is not None:
            V.check_positive_int(args.revealed, "--revealed")
        settings = read_settings(args.suspect)
        if "model" not in settings:
            raise ValueError(f"{args.suspect} does not name its model; pass --pools FILE")
        print(get_profile(args.profile).banner())
        pools = pools_file.pools_from_split(_owner_split(settings, args), args.revealed,
                                            seed=args.seed)
        print("no pools file: the owner split's pools, drawn now (register pools with "
              "`python -m pmi_tutorial pools` before examining a suspect)")
    res = verification.verify_ownership(args.suspect, pools, B=args.B, seed=args.seed, m=args.m,
                                        n=args.n, trials=args.trials, rho=args.rho,
                                        classes=classes, paper_rule=not args.no_paper_rule)
    print(res.report())  # the verdict first
    if args.json_out:
        from .. import files

        header = files.result_header("pmi-tutorial-verify", "python -m pmi_tutorial " + " ".join(args.argv))
        files.write_json_atomic(args.json_out, {**header, **res.to_dict(), "checkpoint": str(args.suspect)})
    return 0


def cmd_pools(args) -> int:
    """``pools``: draw the owner's P' and Q once, fix the test and alpha, save them with their
    digest and say how to register it."""
    from .. import _validate as V
    from .. import data, pools_file
    from ..profiles import get_profile

    V.check_positive_int(args.revealed, "--revealed")
    settings = pools_file.check_settings(args.alpha, args.test, args.tail, args.combine,
                                         999 if args.B is None else args.B, args.score)
    settings["B"] = args.B  # None: 999, or fewer when a class has fewer re-splits
    profile = get_profile(args.profile)
    split = data.owner_split(args.dataset, seed=args.split_seed,
                             train_per_class=profile.train_per_class[args.dataset])
    pools = pools_file.pools_from_split(split, args.revealed, seed=args.seed, **settings)
    path = pools_file.save_pools(args.out, pools)
    print(f"wrote {path}: {pools.dataset}, {len(pools.P_y)} revealed members, {len(pools.Q_y)} "
          f"non-members; verdict by {pools.test} at alpha = {pools.alpha:g} (scores: "
          f"{pools_file.SCORES[pools.score].split(',')[0].split(' (')[0]})")
    print(f"digest {pools.digest}")
    print("register this digest now, before examining any suspect (give it to the other party, or "
          "timestamp it): `verify --expect-digest DIGEST` then refuses any other pools file")
    return 0


def cmd_attack(args) -> int:
    """``attack``: fine-tune or prune a checkpoint (the paper's robustness attacks)."""
    from .. import attacks
    from ..checkpoint import load_checkpoint, save_checkpoint
    from ..profiles import get_profile
    from ..training import evaluate

    from .. import _validate as V

    if args.kind == "prune":
        V.check_rate(args.rate, "--rate")  # before loading anything
    model, settings, _ = load_checkpoint(args.checkpoint)
    profile = get_profile(args.profile)
    split = _owner_split(settings, args)
    if args.kind == "prune":
        attacked = attacks.prune(model, args.rate)
        val_acc = evaluate(attacked, split.val_x, split.val_y)
        extra = {"attack": "prune", "rate": args.rate}
    else:
        tuned = attacks.fine_tune(
            model, split, epochs=profile.finetune_epochs if args.epochs is None else args.epochs,
            lr=profile.finetune_lr if args.lr is None else args.lr,
            fraction=args.fraction, seed=args.seed)
        attacked, val_acc = tuned.model, tuned.val_acc
        extra = {"attack": "finetune", "fraction": args.fraction, "finetune_index": tuned.tuned_index.tolist()}
    save_checkpoint(args.out, attacked, dict(settings, **extra, val_acc_after=val_acc))
    print(f"{args.kind}: validation accuracy after the attack {val_acc:.4f}; wrote {args.out}")
    return 0
