"""The argument parser of ``python -m pmi_tutorial``: every command, its options and its help."""

from __future__ import annotations

import argparse


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
                         "rank and tail tests, as the confirmatory study registered it)")
    pl.add_argument("--tail", type=float, default=0.02,
                    help="the tail test's share of least confident samples (default 0.02, registered)")
    pl.add_argument("--score", choices=("logodds", "logprob"), default="logodds",
                    help="what the tests rank: the log-odds of the true class (default, registered; "
                         "never rounds to 0) or its log-probability")
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
    d.add_argument("--walk-scales", default=None, choices=("mnist-mlp", "mnist-lenet5"),
                   help="instead of the comparison, the paper-scale MNIST owner and innocent models "
                        "with the walk's steps and step sizes scaled (MLP: 1, 2, 4, 10x; LeNet-5: "
                        "1, 4x); writes di_walk_scale_NAME.json")
    d.add_argument("--summarize-only", action="store_true",
                   help="recompute the summary of --out's dataset_inference_CONFIG.json from its "
                        "per-suspect records (no models, seconds)")
    return parser
