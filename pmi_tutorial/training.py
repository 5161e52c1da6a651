"""Training the owner's model: Adam, keep the epoch with the best validation accuracy, resume
(paper Section IV-A; book chapter "Reproducing Tables I-II").

The paper trains every model with Adam (lr 1e-3, batch 64) and keeps the epoch whose weights
reach the highest accuracy on the validation set; the validation set is used for nothing else,
which is what makes its images non-members (the pool Q).

The batches come straight from the in-memory tensors of a :class:`pmi_tutorial.data.Split`
with a per-epoch permutation seeded by ``(seed, epoch)``: no DataLoader, no per-sample
transforms.  With ``checkpoint_path`` every finished epoch is saved atomically (weights,
optimizer state, history, best weights), and a killed run started again with the same arguments
resumes after the last finished epoch and ends with the same weights as an uninterrupted run
(on the CPU; GPU kernels need not be bit-reproducible).  Models with dropout are not covered by
that promise: dropout draws from the global random state, which is not checkpointed (none of the
package's models has dropout).
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
from .checkpoint import load_checkpoint, read_settings, save_checkpoint, sidecar_path
from .features import eval_mode, model_device
from .files import remove_stale_temps

DEFAULT_CACHE_DIR = Path("~/.cache/pmi_tutorial/models")


@dataclass
class TrainResult:
    """A trained model with the best-validation-accuracy epoch's weights loaded.

    ``history`` holds one dict per epoch: ``epoch`` (1-based), ``train_loss``, ``train_acc``,
    ``val_acc``, ``seconds``.  ``split`` is the data the model was trained on (set by
    :func:`cached_model`), ``settings`` what produced it, ``from_cache`` whether it was loaded.
    """

    model: nn.Module
    history: list
    best_epoch: int
    best_val_acc: float
    split: object = None
    settings: dict = field(default_factory=dict)
    checkpoint_path: Path | None = None
    from_cache: bool = False

    @property
    def val_acc(self) -> list:
        """The validation curve: ``val_acc`` of every epoch."""
        return [h["val_acc"] for h in self.history]

    def __repr__(self) -> str:
        return (
            f"TrainResult(model={type(self.model).__name__}, epochs={len(self.history)}, "
            f"best_epoch={self.best_epoch}, best_val_acc={self.best_val_acc:.4f}, "
            f"from_cache={self.from_cache})"
        )


def pick_device() -> torch.device:
    """The fastest available device: CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of epoch ``epoch``'s batch order: a function of (seed, epoch) only."""
    state = np.random.SeedSequence([int(seed), int(epoch)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=enabled)


def train_one_epoch(model, optimizer, x, y, batch_size, generator, device, scaler=None,
                    amp=False, bar=None, max_steps=None, label_smoothing=0.0):
    """One pass over ``(x, y)`` in the order ``randperm(len(x), generator)``; returns
    ``(mean loss, accuracy)`` over the samples seen.  ``max_steps`` stops early (benchmarks);
    ``label_smoothing`` is passed to the cross-entropy (0: none)."""
    model.train()
    n = len(x)
    perm = torch.randperm(n, generator=generator)
    if x.device != torch.device("cpu"):
        perm = perm.to(x.device)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps = math.ceil(n / batch_size) if max_steps is None else min(max_steps, math.ceil(n / batch_size))
    for step in range(steps):
        idx = perm[step * batch_size:(step + 1) * batch_size]
        xb = x[idx].to(device, non_blocking=True)
        yb = y[idx].to(device, non_blocking=True)
        loss, out = train_step(model, optimizer, xb, yb, device, scaler, amp, label_smoothing)
        loss_sum += loss.detach() * len(yb)
        correct += (out.detach().argmax(1) == yb).sum()
        seen += len(yb)
        if bar is not None:
            bar.update(1)
            if step % 25 == 0 or step == steps - 1:
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{correct.item() / seen:.4f}")
    return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)


def train_step(model, optimizer, xb, yb, device, scaler=None, amp=False, label_smoothing=0.0):
    """One Adam step on a batch: ``(loss, logits)``.  Mixed precision when ``amp`` (CUDA)."""
    with _autocast(device, amp):
        out = model(xb)
        loss = F.cross_entropy(out, yb, label_smoothing=float(label_smoothing))
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None and scaler.is_enabled():
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, out


def evaluate(model, x, y, batch_size=1024, device=None) -> float:
    """Accuracy of ``model`` on ``(x, y)``: eval mode, ``no_grad``, large batches."""
    device = torch.device(device) if device is not None else model_device(model)
    amp = device.type == "cuda"
    correct = torch.zeros((), dtype=torch.long, device=device)
    with eval_mode(model), torch.no_grad(), _autocast(device, amp):
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size].to(device, non_blocking=True)
            yb = y[start:start + batch_size].to(device, non_blocking=True)
            correct += (model(xb).argmax(1) == yb).sum()
    return correct.item() / max(len(x), 1)


def _split_fingerprint(split) -> dict:
    digest = hashlib.sha256(np.ascontiguousarray(split.train_index).tobytes())
    digest.update(np.ascontiguousarray(split.val_index).tobytes())
    return {
        "name": split.name, "seed": int(split.seed), "n_train": len(split.train_y),
        "n_val": len(split.val_y), "indices_sha256": digest.hexdigest()[:16],
    }


def _check_resume(path, saved: dict, now: dict) -> None:
    diff = [k for k in now if saved.get(k) != now[k]]
    if diff:
        detail = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now[k]!r}" for k in diff)
        raise ValueError(
            f"the checkpoint {path} was written by a run with other settings ({detail}); "
            "resume with the same settings, or delete the checkpoint (and its .json) to start over"
        )


def train(model, split, epochs, lr=1e-3, batch_size=64, seed=0, checkpoint_path=None,
          device=None, progress=True, amp=None) -> TrainResult:
    """Train ``model`` on ``split`` with Adam; keep the best-validation-accuracy epoch (Sec. IV-A).

    Every epoch visits the training images in an order seeded by ``(seed, epoch)``; validation
    accuracy is measured after each epoch, and the weights of the epoch with the highest one
    (the earliest among ties) are loaded into ``model`` at the end.  ``device`` defaults to
    :func:`pick_device`; ``amp`` (mixed precision, default: on for CUDA only).  With
    ``checkpoint_path`` each epoch is saved and a rerun resumes where the last one stopped.
    The model is returned in eval mode, on ``device``.
    """
    epochs = V.check_positive_int(epochs, "epochs")
    batch_size = V.check_positive_int(batch_size, "batch_size")
    lr = V.check_scalar(lr, "lr", float, min_val=0.0, include_boundaries="neither",
                        hint="a positive number such as 1e-3")
    device = torch.device(device) if device is not None else pick_device()
    amp = (device.type == "cuda") if amp is None else bool(amp and device.type == "cuda")
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda", enabled=amp) if amp else None
    train_settings = {"lr": float(lr), "batch_size": batch_size, "seed": int(seed), "amp": amp,
                      "split": _split_fingerprint(split)}

    history, start = [], 0
    best_state, best_epoch, best_val_acc = None, 0, -1.0
    path = Path(checkpoint_path) if checkpoint_path is not None else None
    if path is not None:
        remove_stale_temps(path)  # a run killed while saving leaves its temporary file behind
    if path is not None and path.is_file():
        _, _, state = load_checkpoint(path, model)
        if not isinstance(state, dict) or "optimizer" not in state:
            raise ValueError(
                f"{path} is a model checkpoint without training state, so a run cannot resume "
                "from it; pass another checkpoint_path or delete the file"
            )
        _check_resume(path, state.get("train", {}), train_settings)
        if state["epoch"] > epochs:
            raise ValueError(
                f"the checkpoint {path} already holds {state['epoch']} epochs, more than "
                f"epochs={epochs}; pass epochs >= {state['epoch']} or delete the checkpoint"
            )
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start, history = int(state["epoch"]), list(state["history"])
        best_state, best_epoch = state["best_state"], int(state["best_epoch"])
        best_val_acc = float(state["best_val_acc"])

    on_cpu = device.type == "cpu"
    train_x = split.train_x if on_cpu else split.train_x.to(device)
    train_y = split.train_y if on_cpu else split.train_y.to(device)
    steps = math.ceil(len(train_x) / batch_size)
    from tqdm import tqdm  # plain text bars: tqdm.auto warns in a kernel without ipywidgets

    for e in range(start, epochs):
        t0 = time.perf_counter()
        with tqdm(total=steps, desc=f"epoch {e + 1}/{epochs}", disable=not progress,
                  leave=False, unit="batch") as bar:
            loss, acc = train_one_epoch(model, optimizer, train_x, train_y, batch_size,
                                        epoch_generator(seed, e), device, scaler, amp, bar)
        val_acc = evaluate(model, split.val_x, split.val_y, device=device)
        if val_acc > best_val_acc:
            best_val_acc, best_epoch = val_acc, e + 1
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append({"epoch": e + 1, "train_loss": float(loss), "train_acc": float(acc),
                        "val_acc": float(val_acc), "seconds": time.perf_counter() - t0})
        if progress:
            tqdm.write(f"epoch {e + 1}/{epochs}: loss {loss:.4f}  train acc {acc:.4f}  "
                       f"val acc {val_acc:.4f}  ({history[-1]['seconds']:.1f} s)")
        if path is not None:
            state = {
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                "epoch": e + 1, "history": history, "best_state": best_state,
                "best_epoch": best_epoch, "best_val_acc": best_val_acc, "train": train_settings,
            }
            save_checkpoint(path, model, {"kind": "training", "epochs": epochs}, state)

    model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, history, best_epoch, best_val_acc,
                       settings={"epochs": epochs, **train_settings}, checkpoint_path=path)


# ----------------------------------------------------------------------------- the model cache


def cache_folder(path=None) -> Path:
    """Where trained models are kept: ``path``, else ``$PMI_CACHE_DIR``, else the user cache."""
    if path is None:
        path = os.environ.get("PMI_CACHE_DIR") or DEFAULT_CACHE_DIR
    return Path(path).expanduser()


def cache_key(model_name, dataset, epochs, width, train_per_class, seed, split_seed=None,
              batch_size=64, lr=1e-3) -> str:
    """File stem of a cached model: every setting that changes the trained weights."""
    key = (f"{model_name}_{dataset}_e{epochs}_w{float(width):g}_"
           f"tpc{'all' if train_per_class is None else train_per_class}_s{seed}")
    if split_seed is not None and split_seed != seed:
        key += f"_split{split_seed}"
    if batch_size != 64 or lr != 1e-3:
        key += f"_bs{batch_size}_lr{lr:g}"
    return key


def last_epoch_path(final) -> Path:
    """Where :func:`cached_model` keeps the last epoch's weights of the model cached at ``final``."""
    final = Path(final)
    return final.with_name(final.stem + ".last.pt")


def partial_path(final) -> Path:
    """Where :func:`load_or_train` keeps the per-epoch (resume) checkpoint of ``final``."""
    final = Path(final)
    return final.with_name(final.stem + ".training.pt")


def load_or_train(final, make, keep_last: bool = False, device=None):
    """The one model cache: load the checkpoint ``final``, or make it once and save it there.

    ``make(partial)`` trains the model (resumable through the epoch checkpoint ``partial``,
    :func:`partial_path`) and returns ``(model, settings, state)``; ``settings`` and ``state``
    are saved with the model (:func:`pmi_tutorial.checkpoint.save_checkpoint`).  Afterwards
    the epoch checkpoint is removed, or, with ``keep_last``, kept as :func:`last_epoch_path`
    (the last epoch's weights beside the best-validation model).  Returns ``(model, settings,
    state, from_cache)`` with the settings as read back from the sidecar, the model on
    ``device`` (default: where it is) in eval mode.
    """
    final = Path(final)
    if final.is_file():
        model, settings, state = load_checkpoint(final)
        from_cache = True
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = partial_path(final)
        model, settings, state = make(partial)
        save_checkpoint(final, model, settings, state)
        if keep_last and partial.is_file():
            last = last_epoch_path(final)
            os.replace(partial, last)
            os.replace(sidecar_path(partial), sidecar_path(last))
        else:
            for p in (partial, sidecar_path(partial)):
                p.unlink(missing_ok=True)
        settings, from_cache = read_settings(final), False
    if device is not None:
        model.to(device)
    return model.eval(), settings, state or {}, from_cache


def cached_model(model_name, profile=None, seed=0, cache_dir=None, progress=True, device=None,
                 root=None, split_seed=None) -> TrainResult:
    """The profile's trained ``model_name``: loaded from the cache, or trained once and cached.

    ``profile`` is a :class:`pmi_tutorial.profiles.Profile` or its name (default: ``PMI_PROFILE``);
    it sets epochs, width, training images per class, batch size and lr.  ``seed`` seeds the
    owner's split (unless ``split_seed`` is given), the initial weights and the batch order.
    The cache folder is ``cache_dir``, else ``$PMI_CACHE_DIR``, else ``~/.cache/pmi_tutorial/models``.
    The result carries the split (``result.split``) and the training history (the validation
    curve); an interrupted training resumes from its epoch checkpoint on the next call, and the
    last epoch's weights are kept at :func:`last_epoch_path`.
    """
    from .data import owner_split
    from .models import build_model, dataset_of
    from .profiles import Profile, get_profile

    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    dataset = dataset_of(model_name)
    epochs, width = prof.epochs[model_name], prof.width[model_name]
    tpc = prof.train_per_class[dataset]
    split_seed = seed if split_seed is None else split_seed
    split = owner_split(dataset, seed=split_seed, root=root, train_per_class=tpc)
    key = cache_key(model_name, dataset, epochs, width, tpc, seed, split_seed,
                    prof.batch_size, prof.lr)
    final = cache_folder(cache_dir) / f"{key}.pt"
    device = torch.device(device) if device is not None else pick_device()

    def make(partial):
        if progress:
            print(f"training {model_name} on {dataset} ({prof.name} profile: {epochs} epochs, "
                  f"width {width:g}, {len(split.train_y)} training images); cached as {final}")
        model = build_model(model_name, num_classes=split.num_classes, width=width, seed=seed)
        result = train(model, split, epochs, lr=prof.lr, batch_size=prof.batch_size, seed=seed,
                       checkpoint_path=partial, device=device, progress=progress)
        settings = {
            "profile": prof.name, "epochs": epochs, "train_per_class": tpc, "seed": seed,
            "split_seed": split_seed, "batch_size": prof.batch_size, "lr": prof.lr,
            "n_train": len(split.train_y), "n_val": len(split.val_y), "device": str(device),
            "torch": torch.__version__,
        }
        return result.model, settings, summary_state(result)

    model, settings, state, from_cache = load_or_train(final, make, keep_last=True, device=device)
    return result_from_state(model, state, split, settings, final, from_cache)


def summary_state(result: TrainResult) -> dict:
    """What a cached model keeps of its training: the curves and the kept epoch."""
    return {"history": result.history, "best_epoch": result.best_epoch,
            "best_val_acc": result.best_val_acc}


def result_from_state(model, state, split, settings, path, from_cache) -> TrainResult:
    return TrainResult(model, list(state["history"]), int(state["best_epoch"]),
                       float(state["best_val_acc"]), split, settings, Path(path),
                       from_cache=from_cache)
