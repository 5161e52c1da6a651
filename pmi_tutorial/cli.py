"""Command line: ``python -m pmi_tutorial {train,pools,verify,attack,reproduce,study,dataset-inference} ...``.

Every mistake a user can make ends in one readable line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  python -m pmi_tutorial train --dataset mnist --model mlp --epochs 5 --out models/mlp.pt
  python -m pmi_tutorial pools --dataset mnist --revealed 1000 --alpha 0.01 --out pools.npz
  python -m pmi_tutorial verify --suspect models/mlp.pt --pools pools.npz --expect-digest HEX --json verify.json
  python -m pmi_tutorial attack prune --checkpoint models/mlp.pt --rate 0.5 --out models/mlp_pruned.pt
  python -m pmi_tutorial attack finetune --checkpoint models/mlp.pt --out models/mlp_ft.pt
  python -m pmi_tutorial reproduce table1 --profile quick
  python -m pmi_tutorial study --config tiny --out results
  python -m pmi_tutorial study --config paper --out pmi_tutorial/results

The data sets are read from $PMI_DATA_DIR (default ~/.cache/pmi_tutorial/data) and downloaded
there when missing.  The profile (quick: a CPU in minutes; paper: the paper's settings) comes
from --profile or $PMI_PROFILE.
"""


def _profile_arg(p):
    p.add_argument("--profile", default=None,
                   help="quick (reduced, CPU) or paper (the paper's settings); default $PMI_PROFILE or quick")


def _owner_args(p):
    p.add_argument("--dataset", choices=("mnist", "cifar10"), default=None,
                   help="the owner's data set (default: the one the checkpoint's model is built for)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the owner's train/validation split and of everything random (default 0)")
    _profile_arg(p)


def _engine_args(p):
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run the tasks on N worker processes of this machine (a Dask LocalCluster "
                        "when Dask is installed, else a process pool); default: in this process")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run the tasks on a running Dask cluster, e.g. tcp://HOST:8786 (default "
                        "$DASK_SCHEDULER_ADDRESS); needs pip install \"pmi-tutorial[distributed]\"")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m pmi_tutorial`` with its five subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m pmi_tutorial",
        description="Pooled Membership Inference: fingerprint a neural network without changing it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model on the owner's split, keeping the best-validation epoch",
                       description="Train a model with Adam on the owner's training split and keep the epoch "
                                   "with the best validation accuracy (the paper's rule). A killed run resumes "
                                   "from its checkpoint when started again with the same --out.")
    t.add_argument("--model", required=True, choices=("mlp", "lenet5", "vgg19", "resnet34"))
    t.add_argument("--epochs", type=int, default=None, help="default: the profile's number")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    t.add_argument("--batch-size", type=int, default=64, help="default 64")
    t.add_argument("--out", default=None, help="checkpoint path (default models/MODEL.pt)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    _owner_args(t)

    v = sub.add_parser("verify", help="one calibrated verdict: was the suspect trained on the owner's pools?",
                       description="Verify a suspect model against the owner's pools (revealed members P', "
                                   "non-members Q). Prints first the verdict, 'accused' or 'not accused' at the "
                                   "level alpha by the primary test, both fixed in the pools file (`pools "
                                   "--alpha --test`); then the evidence, each calibrated p-value (rank and tail "
                                   "closed forms, their Bonferroni combination, the directional permutation "
                                   "test with B permutations) with what it measures; then, labelled "
                                   "'for comparison, no false-positive guarantee', the paper's rule (acc_r per class of t "
                                   "trials of m mini-datasets of n samples, r_opt (Eq. 14), the Eq. 13 "
                                   "verdict) and the mean acc_r (Eq. 15). The suspect may be a pmi_tutorial "
                                   "checkpoint, a TorchScript file or an ONNX file (onnxruntime).")
    v.add_argument("--suspect", "--checkpoint", dest="suspect", required=True,
                   help="the suspect model: a pmi_tutorial checkpoint (--checkpoint), a TorchScript file "
                        "(torch.jit.save) or an ONNX file (.onnx; needs onnxruntime)")
    v.add_argument("--pools", default=None,
                   help="the owner's pools file (written once by `pools`; checksums and digest verified); "
                        "default: the owner split's pools, P' = --revealed training images per class "
                        "(needs a pmi_tutorial checkpoint)")
    v.add_argument("--expect-digest", default=None, metavar="HEX",
                   help="the digest registered when the pools were made (printed by `pools`); a pools "
                        "file with any other digest is refused")
    v.add_argument("--revealed", type=int, default=None,
                   help="without --pools: members revealed per class (default: all training images)")
    v.add_argument("--B", type=int, default=None,
                   help="permutations of the permutation test (default: the pools file's, 999)")
    v.add_argument("--m", type=int, default=3, help="paper's rule: mini-datasets per trial (default 3)")
    v.add_argument("--n", type=int, default=100, help="paper's rule: samples per mini-dataset (default 100)")
    v.add_argument("--trials", type=int, default=100, help="paper's rule: trials per class (default 100)")
    v.add_argument("--rho", type=float, default=0.1, help="paper's rule: threshold of Eq. 13 (default 0.1)")
    v.add_argument("--no-paper-rule", action="store_true",
                   help="skip the comparison with the paper's rule (the verdict and the evidence alone; "
                        "on a small model most of the time goes to its t x m x n trials)")
    v.add_argument("--classes", default=None, help="comma-separated classes r (default: all)")
    v.add_argument("--json", dest="json_out", default=None,
                   help="also write the result as JSON here (verdict, alpha, test, p first)")
    _owner_args(v)

    pl = sub.add_parser("pools", help="fix the owner's pools (P', Q), the test and alpha once; print the digest",
                        description="Write the owner's revealed members P' (--revealed training images per "
                                    "class, drawn with --seed) and non-members Q (the validation images) of the "
                                    "owner split to one file, with the verification's primary test and its level "
                                    "alpha, a SHA-256 checksum of every array and one digest over all of it. "
                                    "Register the digest (give it to the other party, or timestamp it) before "
                                    "examining any suspect; `verify --expect-digest HEX` then refuses any other "
                                    "file.")
    pl.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    pl.add_argument("--revealed", type=int, default=1000, help="members revealed per class (default 1000)")
    pl.add_argument("--split-seed", type=int, default=0, help="seed of the owner's split (default 0)")
    pl.add_argument("--seed", type=int, default=0, help="seed of the draw of P' (default 0)")
    pl.add_argument("--alpha", type=float, default=0.01,
                    help="the verdict's level: an innocent suspect is accused with probability at most "
                         "alpha (default 0.01)")
    pl.add_argument("--test", choices=("rank+tail", "rank", "tail", "permutation"), default="rank+tail",
                    help="the primary test of the verdict (default rank+tail: Bonferroni over the closed-form "
                         "rank and tail tests)")
    pl.add_argument("--tail", type=float, default=0.05,
                    help="the tail test's share of least confident samples (default 0.05)")
    pl.add_argument("--combine", choices=("stouffer", "fisher"), default="stouffer",
                    help="how the closed-form tests combine classes (default stouffer)")
    pl.add_argument("--B", type=int, default=None,
                    help="permutations of the permutation test (default 999, or fewer when a class has fewer re-splits)")
    pl.add_argument("--out", required=True, help="the pools file (.npz)")
    _profile_arg(pl)

    a = sub.add_parser("attack", help="fine-tune or prune a model (the paper's robustness attacks)")
    a.add_argument("kind", choices=("finetune", "prune"))
    a.add_argument("--checkpoint", required=True, help="the model to attack")
    a.add_argument("--out", required=True, help="where to write the attacked model")
    a.add_argument("--rate", type=float, default=0.5, help="prune: fraction of weights zeroed, in [0, 1)")
    a.add_argument("--epochs", type=int, default=None, help="finetune: epochs (default: the profile's)")
    a.add_argument("--lr", type=float, default=None, help="finetune: learning rate (default: the profile's)")
    a.add_argument("--fraction", type=float, default=0.2, help="finetune: share of the validation set used (0.2)")
    _owner_args(a)

    r = sub.add_parser("reproduce", help="reproduce Table I-IV or Figure 2 of the paper",
                       description="Run one of the paper's sweeps (m in {3,4,5} x n in {100,200,300}, every "
                                   "class, t trials; Figure 2: pruning rates 0.1-0.9, m = 3), print it beside "
                                   "the paper's numbers and write a result file with provenance. A killed run "
                                   "resumes without redoing finished cells.")
    r.add_argument("experiment", choices=("table1", "table2", "table3", "table4", "figure2", "forensics",
                                          "table1-controls"),
                   help="forensics: Table I under each reading of the paper's open choices; "
                        "table1-controls: Table I of owners (several training seeds) beside innocent "
                        "models that never saw P, with the claims of Eq. 13-14 and Eq. 15")
    _profile_arg(r)
    r.add_argument("--out", default="results", help="folder of the result file (default ./results)")
    r.add_argument("--seed", type=int, default=None, help="default: the profile's seed")
    r.add_argument("--trials", type=int, default=None, help="default: the profile's t (100)")
    r.add_argument("--models", default=None, help="comma-separated subset of the experiment's models")
    r.add_argument("--ms", default=None, help="comma-separated m values (default 3,4,5)")
    r.add_argument("--ns", default=None, help="comma-separated n values (default 100,200,300)")
    r.add_argument("--rates", default=None,
                   help="figure2: comma-separated pruning rates (default 0.1,0.2,...,0.9)")
    r.add_argument("--classes", default=None,
                   help="comma-separated classes r (default: all); a file holds one class set")
    r.add_argument("--seeds", type=int, default=10,
                   help="forensics: number of seeds of the random draws per variant (default 10)")
    r.add_argument("--single-seeds", type=int, default=None,
                   help="forensics: seeds for the variants not in --full-seeds (default: all --seeds)")
    r.add_argument("--full-seeds", default="baseline",
                   help="forensics: comma-separated variants that get all --seeds (default baseline)")
    r.add_argument("--variants", default=None,
                   help="forensics: comma-separated variant names (default: all one-at-a-time variants)")
    r.add_argument("--no-search", action="store_true",
                   help="forensics: skip the search for the best combination")
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--controls-config", default="mlp", choices=("mlp", "lenet5", "tiny"),
                   help="table1-controls: mlp (5 owners and 5 innocents per split, 300 epochs; hours "
                        "on a CPU), lenet5 (the same plan, about 71 minutes per model on one core) "
                        "or tiny (seconds)")
    r.add_argument("--cache-dir", default=None,
                   help="table1-controls: model and task cache (default $PMI_CACHE_DIR or ~/.cache)")
    _engine_args(r)

    s = sub.add_parser("study", help="the false-positive study beyond the paper (independent models)",
                       description="False positives of PMI: train independent, owner and attacked "
                                   "models, measure the paper's rule (Eq. 13-14) and the permutation "
                                   "tests, and write beyond_*.json. Every model and measurement is "
                                   "cached, so a killed run resumes where it stopped.")
    s.add_argument("--out", default="results", help="folder for the result files (default ./results)")
    s.add_argument("--config", default="cpu", choices=("cpu", "quick", "tiny", "paper", "paper-tiny"),
                   help="cpu: the committed run; quick (or tiny): 3 independent MLPs and 1 owner, "
                        "minutes on a 2-core CPU (default cpu); "
                        "paper: the study at the paper's scale (50,000 / 20,000 split, innocent models "
                        "outside the revealed members, 9 attacks, 10-1,000 revealed per class); "
                        "paper-tiny: its smallest form, seconds")
    _engine_args(s)
    s.add_argument("--archs", nargs="+", default=None, help="architectures, e.g. mlp lenet5")
    s.add_argument("--n-independent", type=int, default=None, help="independent models per architecture")
    s.add_argument("--n-owners", type=int, default=None, help="owner models per architecture")
    s.add_argument("--cache-dir", default=None, help="model cache (default $PMI_CACHE_DIR or ~/.cache)")
    s.add_argument("--quiet", action="store_true", help="no line per model")
    s.add_argument("--summarize-only", action="store_true",
                   help="recompute the summary file in --out from the records of the run's result "
                        "files (no models, seconds)")

    c = sub.add_parser("confirm", help="the confirmatory study: the registered test on fresh worlds",
                       description="Train and measure the registered worlds (owner, attacked copies, "
                                   "innocent models, each world its own split and draw) and write "
                                   "confirmatory_ARCH.json. Refuses to start unless the registration "
                                   "is committed and matches the configuration; resumes.")
    c.add_argument("--arch", default="mlp", choices=("mlp", "lenet5"))
    c.add_argument("--out", default="results", help="folder for the result file (default ./results)")
    c.add_argument("--registration", default="registrations/confirmatory.json",
                   help="the committed registration (default registrations/confirmatory.json)")
    c.add_argument("--write-registration", action="store_true",
                   help="write the registration of both architectures' configurations (with the "
                        "current commit as the analysis commit), to be committed before any run")
    c.add_argument("--cache-dir", default=None, help="model cache (default $PMI_CACHE_DIR or ~/.cache)")
    c.add_argument("--quiet", action="store_true", help="no line per world")
    c.add_argument("--summarize-only", action="store_true",
                   help="recompute the summary in --out from its records (seconds)")
    _engine_args(c)

    d = sub.add_parser("dataset-inference", help="Dataset Inference (the peer method) on the study's models",
                       description="Run black-box Dataset Inference on the false-positive study's "
                                   "models (owners, attacked copies, independent models) and write "
                                   "dataset_inference_CONFIG.json. Every suspect is cached, so a "
                                   "killed run resumes.")
    d.add_argument("--out", default="results", help="folder for the result file (default ./results)")
    d.add_argument("--config", default="cpu", choices=("cpu", "quick", "paper", "paper-tiny"),
                   help="cpu: the committed comparison on the CPU study; quick: the chapter's live "
                        "settings; paper: the paper's walk on the paper-scale study (with --study "
                        "paper); paper-tiny: its smallest form")
    d.add_argument("--study", default="cpu", choices=("cpu", "tiny", "paper", "paper-tiny"),
                   help="which study's models (paper, paper-tiny: the paper-scale study's; models "
                        "it has not trained yet are trained, with the study's seeds)")
    d.add_argument("--archs", nargs="+", default=None, help="architectures, e.g. mlp lenet5")
    d.add_argument("--cache-dir", default=None, help="model cache (default $PMI_CACHE_DIR or ~/.cache)")
    _engine_args(d)
    # replaced by --workers / --scheduler: kept only to say so (see _GONE)
    d.add_argument("--owners", nargs="+", default=None, help=argparse.SUPPRESS)
    d.add_argument("--gather-only", action="store_true", help=argparse.SUPPRESS)
    d.add_argument("--merge", nargs="+", default=None, help=argparse.SUPPRESS)
    d.add_argument("--train-missing", action="store_true",
                   help="with --walk-seeds: train the innocent models the study has not trained "
                        "yet (as the study would, seeded) instead of skipping them (the comparison "
                        "itself trains what it needs)")
    d.add_argument("--walk-seeds", nargs="+", type=int, default=None, metavar="SEED",
                   help="--study paper: instead of the comparison, test innocent models (their own "
                        "draws) with each of these seeds of the test's walk and subsets, and "
                        "write dataset_inference_seeds_CONFIG.json (one architecture, --archs)")
    d.add_argument("--innocents", default="20", metavar="N|A-B",
                   help="with --walk-seeds: the first N innocent models, or those with indices A "
                        "to B (default 20)")
    d.add_argument("--quiet", action="store_true", help="no line per model")
    d.add_argument("--control", default=None, choices=("cifar10", "tiny"),
                   help="instead of the comparison, the positive control: an overfit CIFAR-10 owner, "
                        "its copies and innocent models, Dataset Inference beside PMI; writes "
                        "di_control_CONTROL.json (tiny: its smallest form)")
    d.add_argument("--walk-scales", default=None, choices=("mnist-mlp",),
                   help="instead of the comparison, the paper-scale MNIST owner and innocent models "
                        "with the walk's steps and step sizes scaled 1, 2, 4, 10x; writes "
                        "di_walk_scale_NAME.json")
    d.add_argument("--summarize-only", action="store_true",
                   help="recompute the summary of --out's dataset_inference_CONFIG.json from its "
                        "per-suspect records (no models, seconds)")
    return parser


def _numbers(text, name, kind=int):
    """``"3,4,5"`` -> ``[3, 4, 5]`` (``kind`` int or float); None stays None."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"--{name} must be comma-separated {what}, got {text!r}") from None


def _ints(text, name):
    return _numbers(text, name, int)


def _floats(text, name):
    return _numbers(text, name, float)


def _owner_split(settings, args):
    from . import data
    from .models import dataset_of
    from .profiles import get_profile

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
    from . import data
    from .checkpoint import save_checkpoint, sidecar_path
    from .models import build_model, dataset_of
    from .profiles import get_profile
    from .training import train

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
    from . import _validate as V
    from . import fingerprint, pools_file, verification
    from .suspects import check_suspect_file

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
        from .checkpoint import read_settings
        from .profiles import get_profile

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
        from . import files

        header = files.result_header("pmi-tutorial-verify", "python -m pmi_tutorial " + " ".join(args.argv))
        files.write_json_atomic(args.json_out, {**header, **res.to_dict(), "checkpoint": str(args.suspect)})
    return 0


def cmd_pools(args) -> int:
    """``pools``: draw the owner's P' and Q once, fix the test and alpha, save them with their
    digest and say how to register it."""
    from . import _validate as V
    from . import data, pools_file
    from .profiles import get_profile

    V.check_positive_int(args.revealed, "--revealed")
    settings = pools_file.check_settings(args.alpha, args.test, args.tail, args.combine,
                                         999 if args.B is None else args.B)
    settings["B"] = args.B  # None: 999, or fewer when a class has fewer re-splits
    profile = get_profile(args.profile)
    split = data.owner_split(args.dataset, seed=args.split_seed,
                             train_per_class=profile.train_per_class[args.dataset])
    pools = pools_file.pools_from_split(split, args.revealed, seed=args.seed, **settings)
    path = pools_file.save_pools(args.out, pools)
    print(f"wrote {path}: {pools.dataset}, {len(pools.P_y)} revealed members, {len(pools.Q_y)} "
          f"non-members; verdict by {pools.test} at alpha = {pools.alpha:g}")
    print(f"digest {pools.digest}")
    print("register this digest now, before examining any suspect (give it to the other party, or "
          "timestamp it): `verify --expect-digest DIGEST` then refuses any other pools file")
    return 0


def cmd_attack(args) -> int:
    """``attack``: fine-tune or prune a checkpoint (the paper's robustness attacks)."""
    from . import attacks
    from .checkpoint import load_checkpoint, save_checkpoint
    from .profiles import get_profile
    from .training import evaluate

    from . import _validate as V

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


def cmd_forensics(args) -> int:
    from .experiments import forensics

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
    from .experiments import runner
    from .experiments import table1_controls as T

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
    from . import experiments

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

    from . import _validate as V
    from .experiments import paper_study, runner, study

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

    from .experiments import dataset_inference as D

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

    from .experiments import dataset_inference as D
    from .experiments import runner, study

    command = "python -m pmi_tutorial " + " ".join(args.argv)
    gone = [f for f, on in (("--owners", args.owners is not None), ("--gather-only", args.gather_only),
                            ("--merge", args.merge is not None)) if on]
    if gone:
        raise ValueError(f"{' and '.join(gone)}: {_GONE}")
    if args.walk_scales is not None:
        from .experiments import di_walk_scale as W

        with runner.engine(args.workers, args.scheduler) as eng:
            res = W.run_scales(W.CONFIGS[args.walk_scales], out=args.out, cache_dir=args.cache_dir,
                               progress=not args.quiet, command=command, engine=eng)
        print(f"wrote {W.FILE.format(name=args.walk_scales)} to {args.out}: "
              f"{len(res['records'])} suspects, complete: {res['complete']}")
        return 0
    if args.control is not None:
        from .experiments import di_control

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
    from .experiments import paper_study

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

    from .experiments import confirmatory as C
    from .experiments import runner
    from .files import git_commit, write_json_atomic

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


COMMANDS = {"train": cmd_train, "verify": cmd_verify, "pools": cmd_pools, "attack": cmd_attack,
            "reproduce": cmd_reproduce, "study": cmd_study, "dataset-inference": cmd_dataset_inference,
            "confirm": cmd_confirm}


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a library's message may span several)."""
    if isinstance(exc, OSError) and exc.strerror:  # raised by the OS, not by this package
        text = (f"{exc.strerror}: {exc.filename or ''}; check the path, the free disk space and "
                "the permissions, then run the same command again (finished work is kept)")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    """Run the command line on ``argv``; returns the exit status (2 and one line on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: a full disk, no permission, ...
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, run the same command again to resume", file=sys.stderr)
        return 130
