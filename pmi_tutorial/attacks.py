"""What a thief might do to a stolen model (paper Section IV-C; book chapter "Robustness").

Every attack returns a *new* model and leaves the one it was given untouched.

* :func:`prune` - global L1 (magnitude) unstructured pruning, made permanent (the paper).
* :func:`fine_tune` - a few epochs on a random 20% of the validation set; those samples leave
  the non-member pool Q, the member pool P stays (the paper).
* :func:`quantize` - int8 weights (symmetric, per output channel), beyond the paper.
* :func:`weight_noise` - Gaussian noise on every weight, beyond the paper.
* :func:`distill` - knowledge distillation into a fresh model from the suspect's outputs on
  non-member data only (model extraction), beyond the paper.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from . import _validate as V

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors that pruning and quantization act on: every Linear and Conv2d weight.

    Biases and BatchNorm parameters are left alone (they are few, and zeroing a BatchNorm scale
    switches a whole channel off).
    """
    return [m.weight for m in model.modules() if isinstance(m, PRUNABLE)]


def prune(model: nn.Module, rate: float) -> nn.Module:
    """Zero the fraction ``rate`` of prunable weights with the smallest absolute value.

    Global over all Linear and Conv2d layers (one threshold for the whole network), via
    ``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``, made permanent with
    ``prune.remove`` so the result is a plain model with zeros in its weights.
    """
    rate = V.check_rate(rate)
    model = copy.deepcopy(model)
    params = [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]
    if not params:
        raise ValueError("the model has no Linear or Conv2d layer to prune")
    if rate > 0:
        torch_prune.global_unstructured(
            params, pruning_method=torch_prune.L1Unstructured, amount=rate
        )
        for module, name in params:
            torch_prune.remove(module, name)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of prunable weights that are exactly zero."""
    ws = prunable_weights(model)
    return float(sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws))


@torch.no_grad()
def quantize(model: nn.Module, bits: int = 8) -> nn.Module:
    """Round every prunable weight to ``bits``-bit integers and back (symmetric, per channel).

    The scale of output channel k is ``max |w_k| / (2^(bits-1) - 1)``; this is what an int8
    deployment stores, seen in floating point.
    """
    bits = V.check_scalar(bits, "bits", int, min_val=2, max_val=16, hint="8 is int8")
    model = copy.deepcopy(model)
    qmax = 2 ** (bits - 1) - 1
    for w in prunable_weights(model):
        flat = w.reshape(w.shape[0], -1)
        scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / qmax
        flat.copy_(torch.round(flat / scale).clamp(-qmax, qmax) * scale)
    return model


@torch.no_grad()
def weight_noise(model: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    """Add Gaussian noise to every prunable weight: ``w + scale * std(w) * N(0, 1)``, seeded."""
    scale = V.check_scalar(scale, "scale", float, min_val=0.0,
                           hint="a non-negative multiple of std(w) such as 0.1")
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(int(seed))
    for w in prunable_weights(model):
        noise = torch.randn(w.shape, generator=gen, dtype=w.dtype)
        w.add_(noise.to(w.device) * scale * w.std())
    return model


def _check_positive(value, name: str, example: str) -> float:
    return V.check_scalar(value, name, float, min_val=0.0, include_boundaries="neither",
                          hint=f"a positive finite number such as {example}")


@dataclass
class FineTuneResult:
    """A fine-tuned model, the split whose Q no longer holds the fine-tuning samples, and
    ``tuned_index``: positions in the original validation set that were used for fine-tuning."""

    model: nn.Module
    split: object
    tuned_index: np.ndarray
    val_acc: float  # on the validation samples that were *not* used for fine-tuning


def finetune_split(split, fraction: float = 0.2, seed: int = 0):
    """Pick a random ``fraction`` of the validation set; return ``(tuned_index, rest_split)``.

    The fine-tuning samples leave the validation set (so they leave every Q); the training
    set (every P) is unchanged, as in the paper.
    """
    fraction = V.check_scalar(fraction, "fraction", float, min_val=0.0, max_val=1.0,
                              include_boundaries="neither", hint="the paper uses 0.2")
    n_val = len(split.val_y)
    rng = np.random.default_rng([int(seed), 20_000])
    tuned = np.sort(rng.choice(n_val, size=max(1, int(round(fraction * n_val))), replace=False))
    keep = np.setdiff1d(np.arange(n_val), tuned)
    keep_t = torch.as_tensor(keep)
    rest = replace(split, val_x=split.val_x[keep_t], val_y=split.val_y[keep_t],
                   val_index=np.asarray(split.val_index)[keep])
    return tuned, rest


def fine_tune(model: nn.Module, split, epochs: int = 10, lr: float = 1e-4, fraction: float = 0.2,
              seed: int = 0, batch_size: int = 64, device=None, progress: bool = False,
              label_smoothing: float = 0.0) -> FineTuneResult:
    """Fine-tune a copy of ``model`` with Adam on a random ``fraction`` of the validation set
    (with ``label_smoothing`` in the cross-entropy, 0 by default as in the paper).

    Returns the tuned model, the split without those samples (P unchanged, Q smaller), their
    positions, and the accuracy on the remaining validation samples.
    """
    from .features import model_device
    from .training import epoch_generator, evaluate, train_one_epoch

    epochs = V.check_positive_int(epochs, "epochs")
    _check_positive(lr, "lr", "1e-4")
    tuned_index, rest = finetune_split(split, fraction, seed)
    model = copy.deepcopy(model)
    device = torch.device(device) if device is not None else model_device(model)
    model.to(device)
    idx = torch.as_tensor(tuned_index)
    x, y = split.val_x[idx], split.val_y[idx]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    smoothing = V.check_scalar(label_smoothing, "label_smoothing", float, min_val=0.0, max_val=1.0,
                               include_boundaries="left", hint="0 (none) or e.g. 0.1")
    for e in range(epochs):
        loss, acc = train_one_epoch(model, optimizer, x, y, batch_size,
                                    epoch_generator(seed + 7919, e), device,
                                    label_smoothing=smoothing)
        if progress:
            print(f"fine-tune epoch {e + 1}/{epochs}: loss {loss:.4f}, accuracy {acc:.4f}")
    model.eval()
    return FineTuneResult(model, rest, tuned_index, evaluate(model, rest.val_x, rest.val_y))


def distill(teacher: nn.Module, student: nn.Module, x, epochs: int = 10, lr: float = 1e-3,
            temperature: float = 1.0, batch_size: int = 64, seed: int = 0, device=None,
            progress: bool = False) -> nn.Module:
    """Model extraction: train ``student`` to match the teacher's soft outputs on images ``x``.

    Only the teacher's outputs are used (no labels); pass non-member images (e.g. the owner's
    validation set) so the student never sees P.  Loss: KL divergence between softened
    probabilities at ``temperature`` (Hinton et al., 2015).
    """
    from .features import logits
    from .features import model_device
    from .training import epoch_generator

    epochs = V.check_positive_int(epochs, "epochs")
    _check_positive(lr, "lr", "1e-3")
    _check_positive(temperature, "temperature", "1.0 or 4.0")
    batch_size = V.check_positive_int(batch_size, "batch_size")
    device = torch.device(device) if device is not None else model_device(teacher)
    targets = torch.log_softmax(logits(teacher, x) / temperature, dim=1)
    student = student.to(device)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    n = len(x)
    for e in range(epochs):
        student.train()
        perm = torch.randperm(n, generator=epoch_generator(seed, e))
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            out = torch.log_softmax(student(x[idx].to(device)) / temperature, dim=1)
            loss = torch.nn.functional.kl_div(out, targets[idx].to(device), log_target=True,
                                              reduction="batchmean") * temperature**2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        if progress:
            print(f"distillation epoch {e + 1}/{epochs}: KL {total / n:.4f}")
    return student.eval()


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class AttackContext:
    """What an attack may use besides the model: the owner's split (fine-tuning draws from its
    validation part, whose images then leave Q), the model's architecture, a seed, and the
    extractor's query images (distillation; never P' or Q)."""

    split: object = None
    arch: str = None
    seed: int = 0
    query_images: torch.Tensor = None
    num_classes: int = 10


@dataclass
class Attacked:
    """An attacked copy: the model, what it returns (``"logits"`` or ``"probabilities"``), and
    the validation positions that stay in Q (``None``: all of them)."""

    model: nn.Module
    output: str = "logits"
    keep_q: np.ndarray = None


@dataclass(frozen=True)
class Attack:
    """One entry of :data:`ATTACKS`: ``apply(model, context, **settings) -> Attacked``; ``trains``
    says whether it trains (its result is worth caching); ``weights`` whether the copy keeps the
    owner's weights (fine-tuned, pruned, rounded or perturbed), as opposed to a new model that
    only learned from the owner's outputs."""

    name: str
    title: str
    apply: object
    settings: dict
    trains: bool = False
    weights: bool = True

    def __call__(self, model, context: AttackContext, **overrides) -> Attacked:
        unknown = set(overrides) - set(self.settings)
        if unknown:
            raise ValueError(f"attack {self.name!r} has no setting {sorted(unknown)[0]!r}; its "
                             f"settings are {sorted(self.settings)}")
        return self.apply(model, context, **{**self.settings, **overrides})


def _finetune(model, ctx, fraction, epochs, lr, label_smoothing=0.0):
    res = fine_tune(model, ctx.split, epochs=epochs, lr=lr, fraction=fraction, seed=ctx.seed,
                    device="cpu", label_smoothing=label_smoothing)
    keep = np.setdiff1d(np.arange(len(ctx.split.val_y)), res.tuned_index)
    return Attacked(res.model, "logits", keep)


def _distill(model, ctx, student, epochs):
    from .models import build_model

    other = {"mlp": "lenet5", "lenet5": "mlp"}
    arch = ctx.arch if student == "same" else other[ctx.arch]
    if ctx.query_images is None:
        raise ValueError("distillation needs the extractor's query images; pass "
                         "AttackContext(query_images=...) (images outside P' and Q)")
    fresh = build_model(arch, num_classes=ctx.num_classes, seed=ctx.seed)
    return Attacked(distill(model, fresh, ctx.query_images, epochs=epochs, seed=ctx.seed,
                            device="cpu"))


def _fp16(model, ctx):
    return Attacked(copy.deepcopy(model).half().float().eval())


#: Every attack the studies, Dataset Inference, the command line and the chapters know, by name.
#: Adding one: its function above, its entry here, its test in tests/test_attacks.py.
ATTACKS = {a.name: a for a in (
    Attack("finetune", "fine-tuning (paper)", _finetune,
           {"fraction": 0.2, "epochs": 10, "lr": 1e-4}, trains=True),
    Attack("finetune_light", "thief's fine-tuning, light", _finetune,
           {"fraction": 0.1, "epochs": 5, "lr": 1e-3}, trains=True),
    Attack("finetune_heavy", "thief's fine-tuning, heavy", _finetune,
           {"fraction": 0.5, "epochs": 10, "lr": 1e-3}, trains=True),
    Attack("finetune_smooth", "fine-tuning with label smoothing", _finetune,
           {"fraction": 0.2, "epochs": 10, "lr": 1e-4, "label_smoothing": 0.1}, trains=True),
    Attack("prune50", "pruning 50%", lambda m, ctx, rate: Attacked(prune(m, rate)), {"rate": 0.5}),
    Attack("prune90", "pruning 90%", lambda m, ctx, rate: Attacked(prune(m, rate)), {"rate": 0.9}),
    Attack("int8", "int8 weights", lambda m, ctx, bits: Attacked(quantize(m, bits)), {"bits": 8}),
    Attack("fp16", "fp16 weights", _fp16, {}),
    Attack("noise", "weight noise",
           lambda m, ctx, scale: Attacked(weight_noise(m, scale, seed=ctx.seed)), {"scale": 0.1}),
    Attack("distill_same", "distillation, same architecture", _distill,
           {"student": "same", "epochs": 10}, trains=True, weights=False),
    Attack("distill_other", "distillation, other architecture", _distill,
           {"student": "other", "epochs": 10}, trains=True, weights=False),
    Attack("probabilities", "probabilities only", lambda m, ctx: Attacked(m, "probabilities"), {}),
)}


def get(name: str) -> Attack:
    """The registry entry ``name``, or one line naming the known attacks."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; use one of {', '.join(ATTACKS)}")
    return ATTACKS[name]
