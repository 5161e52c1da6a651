"""Features for PMI: each sample's logits, computed in batches under ``no_grad`` (paper
Section III-B, step 2 of a trial; book chapter "PMI end to end").

PMI represents a sample by the model's last-layer output without softmax (the logits), shape
``(n, c)``.  An owner who can only see the model's probabilities applies a transform to
these logits (``fingerprint.pool_features(..., transform=...)``, e.g. log-softmax).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from . import _validate as V


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without any."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: nn.Module):
    """Put every submodule in eval mode; restore each one's own train/eval flag afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def as_input(x) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"x must be a torch tensor or NumPy array of images (N, C, H, W), got {type(x).__name__}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"x has dtype {x.dtype}, but the models take normalized float images; raw uint8 "
            "pixels give meaningless logits: convert them with pmi_tutorial.data.normalize_images(images, "
            "dataset) or use the pools from pmi_tutorial.data.class_pools"
        )
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(
            f"x must hold at least one sample, batch dimension first, got shape {tuple(x.shape)}; "
            "pass images as (N, C, H, W), e.g. a pool P from pmi_tutorial.data.class_pools"
        )
    return x


def forward(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    try:
        return model(xb)
    except RuntimeError as exc:  # a shape mismatch; anything else (out of memory, ...) unchanged
        text = str(exc)
        if type(exc) is not RuntimeError or not any(w in text for w in ("shape", "size", "channels")):
            raise
        arch = getattr(model, "arch", None) or {}
        want = ""
        if arch.get("model"):
            from .models import input_shape_of

            want = f" ({arch['model']} takes (N, {', '.join(map(str, input_shape_of(arch['model'])))}))"
        raise ValueError(
            f"the model cannot take images of shape {tuple(xb.shape[1:])}{want}: "
            f"{text.splitlines()[0]}; pass images of the data set the model was trained on "
            "(MNIST models: (N, 1, 28, 28), CIFAR-10 models: (N, 3, 32, 32))"
        ) from None


def logits(model: nn.Module, x, batch_size: int = 1024, device=None) -> torch.Tensor:
    """The model's logits for every sample of ``x``: a float32 CPU tensor ``(len(x), c)``.

    Runs in eval mode (BatchNorm uses its running statistics) under ``no_grad``, in batches of
    ``batch_size``, on ``device`` (default: where the model is; the model is moved there for the
    call and back afterwards).  The model's train/eval mode is restored afterwards.
    """
    x = as_input(x)
    batch_size = V.check_positive_int(batch_size, "batch_size")
    home = model_device(model)
    device = torch.device(device) if device is not None else home
    if device != home:
        model.to(device)
    try:
        out = []
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = x[start:start + batch_size].to(device, dtype=torch.float32, non_blocking=True)
                out.append(forward(model, xb).float().cpu())
        return torch.cat(out)
    finally:
        if device != home:
            model.to(home)
