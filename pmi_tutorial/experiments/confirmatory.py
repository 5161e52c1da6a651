r"""The confirmatory study: the ownership test fixed in advance, judged on fresh worlds
(chapter "An ownership study", section "Confirmatory study").

The paper-scale study (:mod:`.paper_study`) is exploratory: its tail test was chosen after
seeing part of it, and all its owners share one revealed draw.  This study tests, on data the
exploration never touched, what a registration file fixed before any of its models existed:

* **The registration** (``registrations/confirmatory.json``, committed): the primary test and
  its combination across classes, alpha, the revealed sizes, the worlds, attacks and innocents,
  the seed ranges, the commit of the analysis code and the stopping rule.  :func:`run` refuses
  to start unless that file is committed and unmodified and the configuration equals it, and
  the result file carries the file's SHA-256 digest.
* **A world** is an owner split seed (a fresh 50,000 / 20,000 split of MNIST), its owner, its
  own revealed draw P' (``reveal_per_class`` per class, seeded by the world), its attacked copies
  (:data:`pmi_tutorial.attacks.ATTACKS`) and ``n_innocent`` innocent models trained on images of
  that split outside P' (so they never see P' or Q).  Owners and innocents of one world are
  judged on that world's draw: the question an owner actually asks.  Across worlds, draws are
  independent, so a rate over worlds has the draw's luck in it.
* **The measurements** (:func:`measure`): per revealed size k, the rank test, the tail test and
  their Bonferroni combination (the primary test) on the registered confidence score, the rank
  test on log-probabilities with its share of ties (what the log-odds repair), and the paper's
  acc_r per class (Eq. 13-14 and Eq. 15 are computed from it in the summary).
* **Stopping rule**: worlds run in a fixed order and every registered world is measured; no
  early stop on results.  A run cut short reports the worlds finished, labelled incomplete.

Each world is one runner task; its models and measurements are cached
(``training.cache_folder() / "confirmatory"``), so a run resumes.  The summary is
:mod:`.confirmatory_summary`.

**Why one module of about 500 lines.**  It is registered analysis code: the registration lists
this file, and a result file names every change to it since the registered commit as a
departure, so it stays as it was registered rather than being split for size.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .. import files as _files
from ..files import digest
from . import runner
from .paper_study import PaperConfig, PaperDesign
from .runner import Experiment, Task

RESULT_FORMAT = "pmi-tutorial-confirmatory"
FILE = "confirmatory_{arch}.json"
REGISTRATION = Path("registrations") / "confirmatory.json"
#: the files whose code decides the confirmatory numbers (a change after registration is a
#: departure, listed in the result file)
ANALYSIS_CODE = ("pmi_tutorial/experiments/confirmatory.py",
                 "pmi_tutorial/experiments/confirmatory_summary.py", "pmi_tutorial/stats",
                 "pmi_tutorial/attacks.py", "pmi_tutorial/training.py", "pmi_tutorial/models.py",
                 "pmi_tutorial/data.py", "pmi_tutorial/fingerprint.py", "pmi_tutorial/batched.py")
ATTACK_NAMES = ("finetune", "finetune_light", "finetune_heavy", "finetune_smooth", "prune50",
                "prune90", "int8", "fp16", "noise", "distill_same", "distill_other",
                "probabilities")
TESTS = ("rank+tail", "rank", "tail")


@dataclass(frozen=True)
class ConfirmatoryConfig:
    """Everything that changes the confirmatory numbers; compared field by field with the
    registration before a run starts."""

    name: str = "confirmatory"
    arch: str = "mlp"
    worlds: int = 20
    first_world: int = 1  # world w uses split seed world_seed_base + w
    world_seed_base: int = 1000  # the exploratory study used split seed 0
    n_innocent: int = 5
    epochs: int = 60
    attacks: tuple = ATTACK_NAMES
    design: PaperDesign = field(default_factory=PaperDesign)
    revealed: tuple = (10, 30, 100, 300, 1000)
    alpha: float = 0.01
    test: str = "rank+tail"  # the primary test: twice the smaller of the rank and tail p-values
    confidence: str = "logodds"
    combine: str = "stouffer"  # the rank test across classes (the tail test: exact sum of counts)
    tail: float = 0.02  # chosen on the exploration (registrations/exploration.json)
    m: int = 3
    n: int = 100
    trials: int = 100
    rho: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    def world_ids(self) -> list:
        return list(range(self.first_world, self.first_world + self.worlds))

    def banner(self) -> str:
        return (f"confirmatory study ({self.name}, {self.arch}): {self.worlds} worlds (split seeds "
                f"{self.world_seed_base + self.first_world}-"
                f"{self.world_seed_base + self.first_world + self.worlds - 1}), each an owner "
                f"({self.epochs} epochs, best validation epoch; the paper: 300), its own draw of "
                f"{self.design.reveal_per_class} per class, {len(self.attacks)} attacked copies "
                f"and {self.n_innocent} innocent models; primary test {self.test} on "
                f"{self.confidence}, alpha = {self.alpha}; revealed {list(self.revealed)} per class")


def config_from_dict(d: dict) -> ConfirmatoryConfig:
    d = dict(d)
    d["design"] = PaperDesign(**d["design"])
    return ConfirmatoryConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


#: 20 MLP worlds x 8 innocents + 10 LeNet-5 worlds x 5 innocents = 210 (world, innocent) pairs
MLP = ConfirmatoryConfig(n_innocent=8)
LENET5 = ConfirmatoryConfig(name="confirmatory", arch="lenet5", worlds=10, epochs=20)
TINY = ConfirmatoryConfig(
    name="confirmatory-tiny", worlds=2, n_innocent=2, epochs=1,
    attacks=("finetune", "int8", "probabilities"),
    design=PaperDesign(reveal_per_class=30, innocent_per_class=60, select_per_class=20,
                       distill_per_class=30, own_q_per_class=60),
    revealed=(10, 30), n=10, trials=10)
CONFIGS = {"mlp": MLP, "lenet5": LENET5}


# --------------------------------------------------------------------------- registration


def _git(args, cwd) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout.strip()


def file_digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_registration(path=REGISTRATION, repo=None) -> dict:
    """The registration at ``path`` (relative to the repository ``repo``), after checking that it
    is committed and unmodified; adds ``"sha256"`` (of the file) and ``"registered_in"`` (the
    commit that last changed it).  Raises ``ValueError`` in one line otherwise."""
    repo = Path(repo or Path.cwd())
    full = repo / path
    if not full.is_file():
        raise ValueError(f"no registration file {full}; write and commit it (python -m "
                         "pmi_tutorial confirm --write-registration) before training any "
                         "confirmatory model")
    rel = str(Path(path))
    try:
        tracked = _git(["ls-files", "--error-unmatch", rel], repo)
        dirty = _git(["status", "--porcelain", "--", rel], repo)
        commit = _git(["log", "-1", "--format=%H", "--", rel], repo)
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise ValueError(f"the registration {rel} is not committed in a git repository at "
                         f"{repo}; commit it (git add {rel} && git commit) before the run") from None
    if not tracked or not commit:
        raise ValueError(f"the registration {rel} is not committed; commit it before the run")
    if dirty:
        raise ValueError(f"the registration {rel} has uncommitted changes; a registration is "
                         "fixed once committed: commit the change (and list it as a departure) "
                         "or restore it with git checkout")
    reg = json.loads(full.read_text())
    return {**reg, "sha256": file_digest(full), "registered_in": commit}


def registration_for(configs, analysis_commit: str, stopping_rule: str = None) -> dict:
    """The content of a registration file for ``configs`` (one per architecture)."""
    return {
        "format": "pmi-tutorial-registration", "study": "confirmatory",
        "primary_test": {
            "name": "rank+tail",
            "definition": "p = min(1, 2 min(p_rank, p_tail)) (Bonferroni over the two tests); "
                          "p_rank: one-sided Mann-Whitney U per class of the true class's "
                          "log-odds, P' against Q, combined across classes by Stouffer's z; "
                          f"p_tail: the exact count of members among the {configs[0].tail:.0%} "
                          "least confident pooled samples per class (by the same log-odds), "
                          "combined by the exact law of the summed counts",
            "null": "in every class the scores of P' and Q are exchangeable (the suspect "
                    "treats the revealed members like the owner's non-members)",
            "guarantee": "P(p <= alpha) <= alpha over the draw of P' and Q from the owner's "
                         "images, for a model that never saw P'"},
        "alpha": configs[0].alpha, "revealed_per_class": list(configs[0].revealed),
        "confidence": "the true class's log-odds from the logits in float64 (stats.log_odds): "
                      "no ties from rounding, unlike log-softmax",
        "exploration": "registrations/exploration.json (the exploratory world, split seed 0: "
                       "one owner per architecture, two copies, six innocent models); it chose "
                       "the log-odds and the tail's 2% over 5%, 10% and 20%",
        "configs": {c.arch: c.to_dict() for c in configs},
        "analysis_commit": analysis_commit,
        "analysis_code": list(ANALYSIS_CODE),
        "stopping_rule": stopping_rule or (
            "every registered world is trained and measured, in world order; no stop or "
            "exclusion on results; a world whose training fails is reported as failed, not "
            "replaced; if the run is cut short, the finished worlds are reported as an "
            "incomplete result and the run is resumed"),
        "targets": {
            "detection": "every weight-preserving copy (finetune, prune50, int8, fp16, noise, "
                         "probabilities) detected in >= 95% of worlds at alpha with <= 300 "
                         "revealed per class",
            "innocents": "rate at alpha <= 0.01 with the upper 95% Clopper-Pearson bound <= 0.03 "
                         "over >= 200 (world, innocent) pairs (both architectures pooled)"},
    }


def check_against(cfg: ConfirmatoryConfig, registration: dict) -> None:
    """Refuse a configuration that differs from the registered one (one line per the first
    difference)."""
    reg = registration.get("configs", {}).get(cfg.arch)
    if reg is None:
        raise ValueError(f"the registration has no configuration for {cfg.arch}; register it "
                         "before running")
    mine = cfg.to_dict()
    for key in sorted(set(reg) | set(mine)):
        if reg.get(key) != mine.get(key):
            raise ValueError(f"the configuration differs from the registration in {key!r} "
                             f"({mine.get(key)!r}, registered {reg.get(key)!r}); run the "
                             "registered configuration")


def departures(registration: dict, repo=None) -> list:
    """The departures from the registration that the code shows: analysis files changed since
    the registered commit (each a line)."""
    repo = Path(repo or Path.cwd())
    base = registration.get("analysis_commit")
    try:
        changed = _git(["diff", "--name-only", base, "HEAD", "--", *registration["analysis_code"]],
                       repo).split()
    except (subprocess.CalledProcessError, FileNotFoundError, KeyError, TypeError):
        return [f"the analysis commit {base!r} could not be compared with the code that ran"]
    return [f"{name} changed after the registered analysis commit {base[:12]}" for name in changed]


# --------------------------------------------------------------------------- worlds and models


def world_config(cfg: ConfirmatoryConfig, w: int) -> PaperConfig:
    """The paper-study configuration whose design is world ``w``'s (split and reveal seeds)."""
    design = replace(cfg.design, split_seed=cfg.world_seed_base + int(w), reveal_seed=int(w))
    return PaperConfig(name=cfg.name, design=design, archs=(cfg.arch,), epochs=(cfg.epochs,))


def model_folder(cache_dir=None) -> Path:
    from ..training import cache_folder

    return cache_folder(cache_dir) / "confirmatory"


#: training seeds: owner of world w: 30,000 + w; innocent j of world w: 40,000 + 100 w + j;
#: attack i of world w: 50,000 + 100 w + i (none of them used by the exploratory study)
def seeds(w: int, role: str, j: int = 0) -> int:
    base = {"owner": 30_000, "innocent": 40_000, "attack": 50_000}[role]
    return base + (0 if role == "owner" else 100 * int(w)) + (int(w) if role == "owner" else int(j))


def _train(world, cfg, role, w, j, split, cache_dir):
    from ..models import build_model
    from ..training import train
    from .study.run import train_cached

    seed = seeds(w, role, j)
    settings = {"arch": cfg.arch, "role": role, "world": int(w), "index": int(j), "seed": seed,
                "design": asdict(world.cfg.design), "epochs": cfg.epochs}

    def make(partial):
        model = build_model(cfg.arch, num_classes=world.split.num_classes, seed=seed)
        res = train(model, split, cfg.epochs, seed=seed, checkpoint_path=partial, device="cpu",
                    progress=False)
        return res.model, {"best_epoch": res.best_epoch, "select_acc": res.best_val_acc}

    key = f"{cfg.arch}_w{w}_{role}{j}_{digest(settings)}"
    model, state = train_cached(model_folder(cache_dir), key, settings, make)
    return model, key, state


def owner(world, cfg, w, cache_dir=None):
    """World w's owner: the whole training split, best epoch on the validation split."""
    return _train(world, cfg, "owner", w, 0, world.split, cache_dir)


def innocent(world, cfg, w, j, cache_dir=None):
    """Innocent j of world w: ``innocent_per_class`` images per class outside P', its own
    selection images; never P' or Q."""
    from .paper_study import innocent_parts
    from .study.design import training_split

    train, select, _ = innocent_parts(world, j)
    ts = training_split(world.split, np.sort(np.concatenate(train)), np.sort(np.concatenate(select)))
    return _train(world, cfg, "innocent", w, j, ts, cache_dir)


def attacked(world, cfg, w, owner_model, owner_key, name, cache_dir=None):
    """``(Attacked, key)``: the registered attack ``name`` on world w's owner, cached if it
    trains."""
    from .. import attacks
    from ..data import as_index
    from .paper_study import distill_part
    from .study.run import train_cached

    attack = attacks.get(name)
    i = cfg.attacks.index(name)
    ctx = attacks.AttackContext(split=world.split, arch=cfg.arch, seed=seeds(w, "attack", i),
                                query_images=world.split.train_x[as_index(distill_part(world))]
                                if name.startswith("distill") else None,
                                num_classes=world.split.num_classes)
    settings = {"base": owner_key, "attack": name, "settings": attack.settings, "seed": ctx.seed}
    key = f"{owner_key}_{name}_{digest(settings)}"
    if not attack.trains:
        return attack(owner_model, ctx), key
    keep = {}

    def make(_):
        out = attack(owner_model, ctx)
        keep["q"] = out.keep_q
        return out.model, {}

    model, _ = train_cached(model_folder(cache_dir), key, settings, make)
    if name.startswith("finetune") and "q" not in keep:  # loaded: the positions are seeded
        tuned, _ = attacks.finetune_split(world.split, attack.settings["fraction"], seed=ctx.seed)
        keep["q"] = np.setdiff1d(np.arange(len(world.split.val_y)), tuned)
    return attacks.Attacked(model, "logits", keep.get("q")), key


# --------------------------------------------------------------------------- measurements


def scores_of(outputs: np.ndarray, r: int, output: str) -> dict:
    """Per-sample scores at the true class r: ``"logodds"`` and ``"logprob"`` (float64)."""
    from scipy.special import log_softmax

    from .. import stats

    z = np.asarray(outputs, dtype=np.float64)
    if output == "probabilities":
        z = np.log(np.clip(z, np.finfo(np.float32).tiny, None))
    return {"logodds": stats.log_odds(z, r), "logprob": log_softmax(z, axis=1)[:, r]}


def measure(out_P: dict, out_Q: dict, output: str, cfg: ConfirmatoryConfig) -> dict:
    """Every statistic of one suspect on one draw, per revealed size k.

    ``out_P[r]`` / ``out_Q[r]``: the suspect's outputs (logits or probabilities) on P' of class
    r (in reveal order) and on Q of class r.  Returns ``{str(k): {"rank", "tail",
    "rank+tail", "rank_logprob": log10 p, "rank_z": z, "ties_logprob", "ties_logodds": share
    of tied scores, "acc": [acc_r per class]}}``.
    """
    from .. import fingerprint, stats

    classes = sorted(out_P)
    sP = {r: scores_of(out_P[r], r, output) for r in classes}
    sQ = {r: scores_of(out_Q[r], r, output) for r in classes}
    feats_P = {r: (out_P[r] if output == "logits" else np.log(np.clip(
        out_P[r], np.finfo(np.float32).tiny, None))) for r in classes}
    feats_Q = {r: (out_Q[r] if output == "logits" else np.log(np.clip(
        out_Q[r], np.finfo(np.float32).tiny, None))) for r in classes}
    out = {}
    for k in cfg.revealed:
        pick = {c: {r: (sP[r][c][:k], sQ[r][c]) for r in classes} for c in ("logodds", "logprob")}
        main = pick[cfg.confidence]
        rank = stats.closed_form_from_scores(main, combine=cfg.combine)
        tail = stats.closed_form_from_scores(main, combine=cfg.combine, test="tail",
                                             fraction=cfg.tail)
        rank_lp = stats.closed_form_from_scores(pick["logprob"], combine=cfg.combine)
        both = min(0.0, np.log10(2.0) + min(rank.log10_pvalue, tail.log10_pvalue))
        n = min(cfg.n, k)
        fp = {r: (feats_P[r][:k], feats_Q[r]) for r in classes}
        res = fingerprint.run_on_features(fp, cfg.m, n, trials=cfg.trials, seed=cfg.seed)
        ties = {c: float(np.mean([stats.tie_share(np.concatenate(v)) for v in pick[c].values()]))
                for c in pick}
        out[str(k)] = {"rank": round(rank.log10_pvalue, 4), "rank_z": round(rank.statistic, 4),
                       "tail": round(tail.log10_pvalue, 4), "rank+tail": round(float(both), 4),
                       "rank_logprob": round(rank_lp.log10_pvalue, 4),
                       "ties_logprob": round(ties["logprob"], 5),
                       "ties_logodds": round(ties["logodds"], 5),
                       "acc": [round(float(res.acc_by_class[r]), 4) for r in classes]}
    return out


def _outputs(model, images: dict, output: str) -> dict:
    import torch

    from ..features import logits

    out = {}
    for r, x in images.items():
        z = logits(model, x)
        out[r] = (torch.softmax(z, 1) if output == "probabilities" else z).numpy()
    return out


def measured(model, output, draw, key, cfg, cache_dir=None, keep_q=None, split=None) -> dict:
    """:func:`measure` of ``model`` on ``draw`` (P images, Q images per class), cached by the
    suspect's key and the measurement settings; written atomically."""
    from ..files import write_json_atomic

    settings = {k: v for k, v in cfg.to_dict().items()
                if k in ("revealed", "confidence", "combine", "tail", "m", "n", "trials", "seed")}
    path = model_folder(cache_dir) / "records" / f"{key}_{digest(settings)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.process_time()
    from .paper_study.measurements import restrict_q

    P, Q = draw
    Q = restrict_q(Q, keep_q, split)  # fine-tuning: its images leave Q
    oP, oQ = _outputs(model, P, output), _outputs(model, Q, output)
    correct = sum(int((oQ[r].argmax(1) == r).sum()) for r in oQ)
    record = {"q_acc": round(correct / sum(len(v) for v in oQ.values()), 4),
              "n_Q": int(sum(len(v) for v in oQ.values())),
              "revealed": measure(oP, oQ, output, cfg),
              "cpu_seconds": round(time.process_time() - t0, 2)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def world_task(cfg: ConfirmatoryConfig, w: int, root=None, cache_dir=None) -> dict:
    """Runner task: world w from start to end (owner, copies, innocents; each cached)."""
    import torch

    from .paper_study import owner_draw, prepare

    torch.set_num_threads(1)
    t0 = time.process_time()
    world = prepare(world_config(cfg, w), root)
    draw = owner_draw(world)
    records = []

    def add(kind, index, model, output, key, state=None, keep=None):
        rec = measured(model, output, draw, key, cfg, cache_dir, keep_q=keep, split=world.split)
        extra = {"best_epoch": state.get("best_epoch")} if state else {}
        records.append({"world": int(w), "kind": kind, "index": int(index), **extra, **rec})

    model, okey, ostate = owner(world, cfg, w, cache_dir)
    add("owner", 0, model, "logits", okey, ostate)
    for name in cfg.attacks:
        att, key = attacked(world, cfg, w, model, okey, name, cache_dir)
        add(name, 0, att.model, att.output, key, keep=att.keep_q)
    for j in range(cfg.n_innocent):
        inn, key, state = innocent(world, cfg, w, j, cache_dir)
        add("innocent", j, inn, "logits", key, state)
    return {"world": int(w), "records": records, "cpu_seconds": round(time.process_time() - t0, 1)}


def experiment(cfg: ConfirmatoryConfig, cache_dir=None, root=None, write=None) -> Experiment:
    """One task per world, in world order."""
    root = None if root is None else str(root)
    cache = None if cache_dir is None else str(cache_dir)
    key = digest(cfg.to_dict())
    tasks = [Task(f"{cfg.arch}_w{w}_{key}", world_task, (cfg, w, root, cache))
             for w in cfg.world_ids()]

    def describe(rec):
        owner_rec = next(r for r in rec["records"] if r["kind"] == "owner")
        top = owner_rec["revealed"][str(max(cfg.revealed))]
        return (f"{cfg.arch} world {rec['world']}: owner log10 p ({cfg.test}) {top[cfg.test]:.1f}; "
                f"{len(rec['records'])} suspects, {rec['cpu_seconds']} CPU s")

    return Experiment(f"confirmatory_{cfg.arch}", [tasks], write=write, describe=describe,
                      cache_dir=cache_dir)


def summarize_records(records, cfg) -> dict:
    from .confirmatory_summary import summarize

    return summarize(records, cfg)


def result_file(task_records, cfg, registration, prov, complete, repo=None) -> dict:
    from .confirmatory_summary import summarize

    records = [r for t in sorted(task_records, key=lambda t: t["world"]) for r in t["records"]]
    worlds = sorted({r["world"] for r in records})
    return {"format": RESULT_FORMAT, "version": _files.RESULT_FORMATS[RESULT_FORMAT],
            "banner": cfg.banner(), "settings": cfg.to_dict(),
            "reduced": [f"epochs: {cfg.epochs} instead of the paper's 300 (best-validation "
                        "epoch kept)",
                        f"innocent models train on {cfg.design.innocent_per_class * 10:,} images "
                        "outside P' where the owner trains on all 50,000"],
            "registration": {"path": str(REGISTRATION), "sha256": registration.get("sha256"),
                             "registered_in": registration.get("registered_in"),
                             "analysis_commit": registration.get("analysis_commit")},
            "departures": departures(registration, repo) if registration.get("analysis_code")
            else [],
            "provenance": prov, "complete": complete, "worlds_done": worlds,
            "records": records, "summary": summarize(records, cfg)}


def run(cfg: ConfirmatoryConfig, out=None, cache_dir=None, root=None, registration=REGISTRATION,
        repo=None, progress=True, command=None, engine=None, write_every=60.0) -> dict:
    """Check the registration, then train and measure every world on the runner; write
    ``confirmatory_<arch>.json`` to ``out`` as worlds finish and at the end."""
    from ..files import provenance, write_json_atomic

    reg = read_registration(registration, repo)
    check_against(cfg, reg)
    if progress:
        print(cfg.banner(), flush=True)
        print(f"registration {registration}: sha256 {reg['sha256'][:16]}..., committed in "
              f"{reg['registered_in'][:12]}", flush=True)
    last = {}

    def write(task_records, prov, complete):
        last["file"] = result_file(task_records, cfg, reg, prov, complete, repo)
        if out is not None:
            write_json_atomic(Path(out) / FILE.format(arch=cfg.arch), last["file"])

    runner.run(experiment(cfg, cache_dir, root, write), engine=engine, progress=progress,
               write_every=write_every, provenance=provenance(command))
    return last["file"]


def load(arch: str, folder=None) -> dict:
    """The committed (or ``folder``'s) result file of ``arch``, checked."""
    name = FILE.format(arch=arch)
    if folder is None:
        return _files.committed_result(name[:-len(".json")], RESULT_FORMAT)
    return _files.read_result(Path(folder) / name, RESULT_FORMAT)
