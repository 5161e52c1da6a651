r"""Dataset Inference with a positive control (book chapter "Dataset Inference: a positive control").

Dataset Inference (:mod:`pmi_tutorial.baselines.dataset_inference`) is known to work on an
overfit CIFAR-10 model.  This experiment builds that case on a CPU: an owner (a small CNN,
:class:`SmallCNN`) trained to about 100% training accuracy on ``train_size`` CIFAR-10 images,
its attacked copies (fine-tuning, 50% pruning, int8 weights, probabilities only) and
``n_innocent`` innocent models, each trained the same way on its own ``train_size`` images,
disjoint from the owner's and from each other's.  The images are one seeded permutation of all
60,000: the owner's training set, then the held-out set (non-members: the walk's and PMI's
non-members; its first 20% fine-tune the owner and never serve as non-members), then the
innocents' training sets.

Dataset Inference uses the authors' constants (10 directions per norm, 50 steps of 0.005 /
0.005 / 0.01 pixel units, a 100-unit regressor trained 1000 epochs, 100 draws per size).  The
owner fits the regressor once on its own model (stage 2, :func:`regressor_task`, whose walks
are cached); every suspect (stage 3, :func:`suspect_task`) is walked on ``revealed`` members and
non-members: the owner's copies on one draw, each innocent model on its own draw, so that the
innocents' p-values are independent.  PMI runs on the same models and the same revealed
images: the closed-form rank and tail tests (:mod:`pmi_tutorial.stats.closed_form`) on
log-probabilities, with the non-members capped at Dataset Inference's count (equal budgets)
and with all held-out images (PMI's usual Q), and the paper's acc_r
(:func:`pmi_tutorial.fingerprint.run_on_features`) on the owner's whole pools.

The summary also runs the authors' aggregation
(:func:`pmi_tutorial.baselines.dataset_inference.authors_test`) on
the cached walks, and reports the share of walks that never reached the boundary
(:func:`pmi_tutorial.baselines.dataset_inference.censored_fraction`).
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import files as F
from ..baselines.dataset_inference import censored_fraction, welch_over_draws
from . import runner
from .runner import Experiment, Task

RESULT_FORMAT = "pmi-tutorial-di-control"
FILE = "di_control_{name}.json"
ATTACKS = ("owner", "finetune", "prune50", "int8", "logprob")
#: a probabilities-only copy answers every query with the owner's labels and log-probabilities,
#: so both methods give it the owner's numbers (``tests/test_di_control.py`` checks it): the
#: CIFAR-10 run spends its CPU on innocent models instead
CIFAR10_ATTACKS = ("owner", "finetune", "prune50", "int8")


@dataclass(frozen=True)
class ControlConfig:
    """Settings of the positive control (the DI paper's values where marked)."""

    name: str = "cifar10"
    dataset: str = "cifar10"
    train_size: int = 5000  # training images of every model (owner and innocents)
    max_epochs: int = 30  # Adam, lr 1e-3, batch 64, until the epoch's accuracy reaches target
    target_accuracy: float = 0.995
    widths: tuple = (16, 32, 128)  # the CNN's channels and hidden units
    n_innocent: int = 10
    attacks: tuple = CIFAR10_ATTACKS
    known: int = 200  # regressor's known members / non-members (the DI paper: 500)
    revealed: tuple = (10, 30, 100, 150)  # revealed images per side tested (the last: all walked)
    directions: int = 10  # the DI paper: 10
    steps: int = 50  # the DI paper: 50
    step_scale: float = 1.0  # the DI paper: 1 (2 for SVHN)
    repeats: int = 100  # the DI paper: 100
    epochs: int = 1000  # regressor epochs (the DI paper: 1000)
    finetune_fraction: float = 0.2  # of the held-out images (PMI paper: 20% of the validation set)
    finetune_epochs: int = 10
    pmi_m: int = 3
    pmi_n: int = 100
    pmi_trials: int = 100
    seed: int = 0

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def banner(self) -> str:
        return (f"{self.dataset}: every model a small CNN {self.widths} trained on "
                f"{self.train_size} images; {self.n_innocent} innocent models; Dataset Inference "
                f"with {self.known} known and {max(self.revealed)} revealed images per side "
                f"(the DI paper: 500 known, 1,000 walked), {self.directions} directions, "
                f"{self.steps} steps x{self.step_scale:g}")


CIFAR10 = ControlConfig()
#: tests: seconds, on any 10-class data set
TINY = ControlConfig(name="tiny", dataset="mnist", train_size=500, max_epochs=3, widths=(8, 16, 32),
                     n_innocent=2, attacks=("owner", "prune50", "logprob"), known=12,
                     revealed=(4, 8), directions=5, steps=4, repeats=5, epochs=20,
                     finetune_epochs=1, pmi_n=5, pmi_trials=5)
CONFIGS = {c.name: c for c in (CIFAR10, TINY)}


# --------------------------------------------------------------------------- the model


def small_cnn(in_channels: int, side: int, widths=(16, 32, 128), num_classes: int = 10, seed: int = 0):
    """Two 3x3 convolutions with max-pooling and a hidden layer: a CIFAR-10 model that reaches
    100% training accuracy on a few thousand images in minutes on one CPU core."""
    import torch
    from torch import nn

    c1, c2, h = widths
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(c2 * (side // 4) ** 2, h), nn.ReLU(), nn.Linear(h, num_classes))


class LogProb:
    """A suspect that returns log-probabilities only (a module's outputs through log-softmax)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        import torch

        return torch.log_softmax(self.model(x), dim=1)


# --------------------------------------------------------------------------- the data


@functools.lru_cache(maxsize=2)
def world(cfg: ControlConfig, root=None) -> dict:
    """The seeded partition of the data set's images (indices into :func:`data.load_dataset`):
    ``owner``, ``heldout``, ``finetune`` (the held-out images that fine-tune the owner), ``pool``
    (the other held-out images: the non-members), ``innocent`` (one index array per model),
    ``known_members`` / ``known_nonmembers`` (the regressor's images)."""
    from .. import data

    ds = data.load_dataset(cfg.dataset, root)
    n, t = len(ds.labels), cfg.train_size
    if (2 + cfg.n_innocent) * t > n:
        raise ValueError(
            f"{cfg.n_innocent} innocent models, the owner and the held-out set need "
            f"{(2 + cfg.n_innocent) * t} disjoint images of {t}, but {cfg.dataset} has {n}: "
            "lower train_size or n_innocent")
    perm = np.random.default_rng([cfg.seed, 27]).permutation(n)
    heldout = perm[t:2 * t]
    k = int(round(cfg.finetune_fraction * t))
    pool = heldout[k:]
    rng = np.random.default_rng([cfg.seed, 1])
    known_m = rng.choice(perm[:t], cfg.known, replace=False)
    known_n = rng.choice(pool, cfg.known, replace=False)
    top = max(cfg.revealed)
    if cfg.known + top > min(t, len(pool)):
        raise ValueError(f"known ({cfg.known}) plus revealed ({top}) images exceed the "
                         f"{min(t, len(pool))} members or non-members: lower them")
    return {"owner": perm[:t], "heldout": heldout, "finetune": heldout[:k], "pool": pool,
            "innocent": [perm[(2 + i) * t:(3 + i) * t] for i in range(cfg.n_innocent)],
            "known_members": known_m, "known_nonmembers": known_n}


def images(cfg: ControlConfig, idx, root=None):
    """``(x, y)``: normalized images and labels at the indices ``idx``."""
    import torch

    from .. import data

    ds = data.load_dataset(cfg.dataset, root)
    idx = np.asarray(idx)
    return data.normalize_images(ds.images[idx], cfg.dataset), torch.as_tensor(ds.labels[idx])


def revealed(cfg: ControlConfig, draw: int, root=None):
    """Draw ``draw`` of revealed member and non-member indices (``max(revealed)`` each), outside
    the regressor's images: draw 0 is the owner's (its copies), draw i + 1 innocent i's own."""
    w = world(cfg, root)
    m = np.setdiff1d(w["owner"], w["known_members"])
    q = np.setdiff1d(w["pool"], w["known_nonmembers"])
    top = max(cfg.revealed)
    return (np.random.default_rng([cfg.seed, 3, draw]).permutation(m)[:top],
            np.random.default_rng([cfg.seed, 4, draw]).permutation(q)[:top])


# --------------------------------------------------------------------------- stage 1: models


def _train_digest(cfg) -> str:
    """The key of the settings a trained model depends on (not the tests' settings)."""
    return F.digest({k: v for k, v in cfg.to_dict().items() if k in
                     ("dataset", "train_size", "max_epochs", "target_accuracy", "widths", "seed")})


def _model_path(cfg, which, cache_dir):
    from ..training import cache_folder

    return cache_folder(cache_dir) / "di_control" / f"{which}_{_train_digest(cfg)}.pt"


def train_task(cfg: ControlConfig, which: str, root=None, cache_dir=None) -> dict:
    """Runner task: train the owner (``which="owner"``) or innocent i (``"innocent3"``) until
    the training epoch's accuracy reaches ``target_accuracy`` (or ``max_epochs``); its record:
    training and held-out accuracy, epochs, CPU seconds."""
    import torch

    from ..checkpoint import save_checkpoint
    from ..training import epoch_generator, evaluate, train_one_epoch

    torch.set_num_threads(1)
    path = _model_path(cfg, which, cache_dir)
    if path.is_file():  # trained by a run with other test settings
        from ..checkpoint import read_settings

        return read_settings(path)["record"]
    w = world(cfg, root)
    idx = w["owner"] if which == "owner" else w["innocent"][int(which[len("innocent"):])]
    seed = 0 if which == "owner" else 1 + int(which[len("innocent"):])
    x, y = images(cfg, idx, root)
    model = small_cnn(x.shape[1], x.shape[2], cfg.widths, seed=1000 * cfg.seed + seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    t0, epochs = time.process_time(), 0
    for e in range(cfg.max_epochs):
        _, acc = train_one_epoch(model, opt, x, y, 64, epoch_generator(cfg.seed * 1000 + seed, e),
                                 torch.device("cpu"))
        epochs = e + 1
        if acc >= cfg.target_accuracy:
            break
    model.eval()
    xh, yh = images(cfg, w["pool"], root)
    rec = {"model": which, "epochs": epochs, "train_accuracy": evaluate(model, x, y),
           "heldout_accuracy": evaluate(model, xh, yh),
           "train_cpu_seconds": round(time.process_time() - t0, 1)}
    save_checkpoint(path, model, settings={"record": rec})
    return rec


def load_model(cfg: ControlConfig, which: str, cache_dir=None):
    from ..checkpoint import load_checkpoint

    c, s = (3, 32) if cfg.dataset == "cifar10" else (1, 28)
    model, _, _ = load_checkpoint(_model_path(cfg, which, cache_dir), small_cnn(c, s, cfg.widths))
    return model.eval()


def suspect_model(cfg: ControlConfig, kind: str, index: int, root=None, cache_dir=None):
    """The suspect of ``kind`` (an entry of :data:`ATTACKS`, or ``"innocent"``)."""
    from .. import attacks

    if kind == "innocent":
        return load_model(cfg, f"innocent{index}", cache_dir)
    owner = load_model(cfg, "owner", cache_dir)
    if kind == "owner":
        return owner
    if kind == "prune50":
        return attacks.prune(owner, 0.5).eval()
    if kind == "int8":
        return attacks.quantize(copy.deepcopy(owner), 8).eval()
    if kind == "logprob":
        return LogProb(owner)
    if kind == "finetune":  # Adam at lr 1e-4 on the held-out images that never serve as non-members
        import torch

        from ..training import epoch_generator, train_one_epoch

        x, y = images(cfg, world(cfg, root)["finetune"], root)
        tuned = copy.deepcopy(owner)
        opt = torch.optim.Adam(tuned.parameters(), lr=1e-4)
        for e in range(cfg.finetune_epochs):
            train_one_epoch(tuned, opt, x, y, 64, epoch_generator(cfg.seed + 7919, e), torch.device("cpu"))
        return tuned.eval()
    raise ValueError(f"unknown suspect kind {kind!r}; use one of {ATTACKS + ('innocent',)}")


# --------------------------------------------------------------------------- stage 2: regressor


def _walk(cfg, model, x, y, seed):
    from ..baselines.dataset_inference import blind_walk, pixel_space

    box, unit = pixel_space(cfg.dataset)
    return blind_walk(model, x, y, directions=cfg.directions, steps=cfg.steps, box=box, unit=unit,
                      seed=seed, step_scale=cfg.step_scale)


def _walk_record(w) -> dict:
    return {"distances": np.round(w.distances, 5).tolist(),
            "flipped": w.flipped.astype(int).tolist(), "queries": int(w.queries)}


def regressor_task(cfg: ControlConfig, root=None, cache_dir=None) -> dict:
    """Runner task: the owner's walks of its known members and non-members (the regressor's
    training data, as :meth:`DatasetInference.fit` walks them)."""
    import torch

    torch.set_num_threads(1)
    w, owner = world(cfg, root), load_model(cfg, "owner", cache_dir)
    t0 = time.perf_counter()
    wm = _walk(cfg, owner, *images(cfg, w["known_members"], root), cfg.seed)
    wn = _walk(cfg, owner, *images(cfg, w["known_nonmembers"], root), cfg.seed + 1)
    return {"model": "regressor", "members": _walk_record(wm), "nonmembers": _walk_record(wn),
            "seconds": round(time.perf_counter() - t0, 1)}


@functools.lru_cache(maxsize=2)
def _regressor(cfg: ControlConfig, folder: str, key: str):
    import json

    from ..baselines.dataset_inference import Walk, fit_regressor

    rec = json.loads((Path(folder) / f"{key}.json").read_text())
    walks = [Walk(np.asarray(rec[s]["distances"]), np.asarray(rec[s]["flipped"], bool),
                  ("linf", "l2", "l1"), cfg.steps, rec[s]["queries"]) for s in ("members", "nonmembers")]
    return fit_regressor(*walks, epochs=cfg.epochs, seed=cfg.seed)


# --------------------------------------------------------------------------- stage 3: suspects


def _pmi(cfg, logp_m, ym, logp_n, yn, logp_q, yq) -> dict:
    """PMI's closed-form tests at each size: P' the first k revealed members, Q the first k
    revealed non-members (equal budgets) or every non-member of the pool (``full``)."""
    from ..stats.closed_form import closed_form_test

    def pools(fm, a, fn, b):
        return {r: (fm[a == r], fn[b == r]) for r in range(10) if (a == r).any() and (b == r).any()}

    def log10p(p, test):  # no class with both a member and a non-member: no evidence, p = 1
        return closed_form_test(p, test=test).log10_pvalue if p else 0.0

    out = {}
    for k in cfg.revealed:
        for test in ("rank", "tail"):
            out.setdefault(f"{test}_equal", {})[str(k)] = log10p(
                pools(logp_m[:k], ym[:k], logp_n[:k], yn[:k]), test)
            out.setdefault(f"{test}_full_q", {})[str(k)] = log10p(pools(logp_m[:k], ym[:k], logp_q, yq), test)
    return out


def suspect_task(cfg: ControlConfig, kind: str, index: int, folder: str, reg_key: str,
                 root=None, cache_dir=None) -> dict:
    """Runner task: one suspect tested by Dataset Inference and by PMI on the same revealed
    images (draw 0 for the owner's copies, ``index + 1`` for innocent model ``index``)."""
    import torch

    from ..baselines.dataset_inference import welch_test
    from ..features import logits
    from ..fingerprint import run_on_features
    from ..training import evaluate

    torch.set_num_threads(1)
    w = world(cfg, root)
    reg = _regressor(cfg, folder, reg_key)
    model = suspect_model(cfg, kind, index, root, cache_dir)
    net = model.model if isinstance(model, LogProb) else model
    draw = index + 1 if kind == "innocent" else 0
    im, iq = revealed(cfg, draw, root)
    (xm, ym), (xn, yn) = images(cfg, im, root), images(cfg, iq, root)
    t0 = time.perf_counter()
    wm, wn = _walk(cfg, model, xm, ym, cfg.seed + 2), _walk(cfg, model, xn, yn, cfg.seed + 3)
    walk_seconds = time.perf_counter() - t0
    sm, sn = reg.score(wm), reg.score(wn)
    t0 = time.perf_counter()
    with torch.no_grad():
        lm, ln = torch.log_softmax(logits(net, xm), 1).numpy(), torch.log_softmax(logits(net, xn), 1).numpy()
    forward_seconds = time.perf_counter() - t0
    xq, yq = images(cfg, w["pool"], root)
    xo, yo = images(cfg, w["owner"], root)
    with torch.no_grad():
        lq, lo = torch.log_softmax(logits(net, xq), 1).numpy(), torch.log_softmax(logits(net, xo), 1).numpy()
    t0 = time.perf_counter()
    pmi = _pmi(cfg, lm, ym.numpy(), ln, yn.numpy(), lq, yq.numpy())
    pmi_seconds = time.perf_counter() - t0
    yo_, yq_ = yo.numpy(), yq.numpy()
    acc = run_on_features({r: (lo[yo_ == r], lq[yq_ == r]) for r in range(10)}, cfg.pmi_m,
                          cfg.pmi_n, trials=cfg.pmi_trials, seed=cfg.seed)
    all_ = welch_test(sm, sn)
    return {"kind": kind, "index": int(index), "draw": draw,
            "heldout_accuracy": evaluate(net, xq, yq),
            "di": {**welch_over_draws(sm, sn, cfg.revealed, cfg.repeats, cfg.seed),
                   "log10_pvalue_all": all_.log10_pvalue, "t_all": all_.t,
                   "mean_difference": float(sm.mean() - sn.mean()),
                   "queries": int(wm.queries + wn.queries),
                   "queries_per_image": (wm.queries + wn.queries) / (len(xm) + len(xn)),
                   "seconds": round(walk_seconds, 2),
                   "censored_members": censored_fraction(wm.flipped),
                   "censored_nonmembers": censored_fraction(wn.flipped)},
            "pmi": {**pmi, "acc_opt": acc.acc_opt, "r_opt": int(acc.r_opt), "mean_acc": acc.mean_acc,
                    "seconds_tests": round(pmi_seconds, 3)},
            "forward_seconds": round(forward_seconds, 4),
            "walk": {"members": _walk_record(wm), "nonmembers": _walk_record(wn)}}


# --------------------------------------------------------------------------- the run


def plan(cfg: ControlConfig) -> list:
    """``(kind, index)`` in run order: the owner and its copies, then the innocent models."""
    return [(a, 0) for a in cfg.attacks] + [("innocent", i) for i in range(cfg.n_innocent)]


def _settings_digest(cfg: ControlConfig) -> str:
    return F.digest({k: v for k, v in cfg.to_dict().items() if k not in ("name", "attacks", "n_innocent")})


def experiment(cfg: ControlConfig, out=None, root=None, cache_dir=None, command=None) -> Experiment:
    """The plan on :mod:`.runner`: train the models, walk the regressor's images on the owner,
    test every suspect; ``write`` rewrites ``di_control_<name>.json`` in ``out``."""
    from ..training import cache_folder

    dg = _settings_digest(cfg)
    roots, cache = (None if root is None else str(root)), (None if cache_dir is None else str(cache_dir))
    folder = cache_folder(cache_dir) / "runs" / "di_control"
    train = [Task(f"train_{w}_{_train_digest(cfg)}", train_task, (cfg, w, roots, cache))
             for w in ["owner"] + [f"innocent{i}" for i in range(cfg.n_innocent)]]
    reg_key = f"regressor_{dg}"
    tasks = [Task(f"{kind}{k}_{dg}", suspect_task, (cfg, kind, k, str(folder), reg_key, roots, cache))
             for kind, k in plan(cfg)]
    header = F.result_header(RESULT_FORMAT, command)
    t_wall = time.perf_counter()

    def write(records, prov, complete):
        import json

        models = [json.loads(p.read_text()) for p in
                  (folder / f"{t.key}.json" for t in train) if p.is_file()]
        from .di_control_report import build_result

        res = build_result(cfg, {**header, "provenance": {**header["provenance"], **prov}},
                           models, records, complete, time.perf_counter() - t_wall)
        if out is not None:
            F.write_json_atomic(Path(out) / FILE.format(name=cfg.name), res)
        write.last = res

    def describe(rec):
        if "di" not in rec:
            return (f"{rec['model']}: " + (f"{rec['seconds']} s" if "seconds" in rec else
                    f"train {rec['train_accuracy']:.3f}, held-out {rec['heldout_accuracy']:.3f}, "
                    f"{rec['epochs']} epochs, {rec['train_cpu_seconds']} CPU s"))
        return (f"{rec['kind']} {rec['index']}: DI log10 p (all) {rec['di']['log10_pvalue_all']:.1f}, "
                f"PMI rank log10 p {rec['pmi']['rank_equal'][str(max(cfg.revealed))]:.1f}; "
                f"{rec['di']['seconds']} s")

    write.last = None
    return Experiment("di_control", [train, [Task(reg_key, regressor_task, (cfg, roots, cache))], tasks],
                      write=write, describe=describe, folder=folder)


def run_control(cfg: ControlConfig = CIFAR10, out=None, root=None, cache_dir=None, progress=True,
                command=None, engine=None) -> dict:
    """Run (or resume) the positive control; returns the result file's content."""
    exp = experiment(cfg, out, root, cache_dir, command)
    runner.run(exp, engine=engine, progress=progress, provenance=F.provenance(command))
    return exp.write.last
