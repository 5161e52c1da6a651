r"""A suspect, whatever its form: a function from a batch of images to one row of scores each.

:func:`open_suspect` turns what the owner was given into ``(function, description, data set or
None, declared output)``:

* a pmi_tutorial checkpoint (weights plus its ``.json`` sidecar, read pickle-free);
* a TorchScript file (``torch.jit.save``; a zip archive with a ``code/`` folder);
* an ONNX file (``.onnx``; run with onnxruntime, the optional extra ``pmi_tutorial[onnx]``);
* a torch model, or any callable from a float32 image batch (b, C, H, W) to a (b, c) array of
  logits or probabilities: a wrapper around a remote API.

:func:`check_suspect_file` looks at a file without loading it (a few bytes and the archive's
table of contents), so that a wrong path or a file that is not a model is refused in one line
before any work.  TorchScript and ONNX files hold computation graphs: load them only from a
source you would run.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

KINDS = ("checkpoint", "torchscript", "onnx")
_ZIP_MAGIC = b"PK\x03\x04"


@dataclass
class Suspect:
    """``fn``: images (torch float32 tensor) -> scores; ``output``: "logits" when known, else
    None (decided from the scores); ``dataset``: the data set it is built for, when known."""

    fn: Callable
    name: str
    dataset: str | None
    output: str | None
    kind: str
    batches_itself: bool = False  # fn takes the whole pool and batches it (torch modules)


def _train_hint(path) -> str:
    return (f"train one first: python -m pmi_tutorial train --model mlp --out {path} (or pass "
            "a TorchScript or ONNX file)")


def check_suspect_file(path) -> str:
    """The kind of the suspect file at ``path`` ("checkpoint", "torchscript" or "onnx"), found
    without loading it; FileNotFoundError / ValueError (one line, naming the fix) otherwise."""
    from .checkpoint import sidecar_path

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; check the path, or {_train_hint(path)}")
    if not path.is_file():
        raise ValueError(f"{path} is a folder, not a model file; pass the checkpoint file itself")
    with open(path, "rb") as f:
        head = f.read(4)
    if head == _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            names = []
        if any("/code/" in n for n in names):
            return "torchscript"
        if sidecar_path(path).is_file():
            return "checkpoint"
        if any(n.endswith("data.pkl") for n in names):
            raise ValueError(
                f"{path} is a torch file without its settings file {sidecar_path(path).name} "
                "beside it; copy that file too, or save the model as TorchScript "
                "(torch.jit.save) and pass that")
        raise ValueError(f"{path} is a zip archive but not a model (no torch weights, no "
                         "TorchScript); pass a pmi_tutorial checkpoint, a TorchScript or an "
                         "ONNX file")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if sidecar_path(path).is_file():
        return "checkpoint"  # an old or damaged checkpoint: load_checkpoint says which
    raise ValueError(f"{path} is not a model file (not a pmi_tutorial checkpoint, TorchScript or "
                     f"ONNX file); pass the suspect's model file, or {_train_hint(path)}")


def _torch_fn(module, batch_size: int = 1024) -> Callable:
    """The whole pool through ``features.logits`` (its own batches, eval mode entered once)."""
    from .features import logits

    return lambda x: logits(module, x, batch_size=batch_size)


def _onnx_fn(path) -> Callable:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("reading an ONNX suspect needs onnxruntime: pip install "
                         "'pmi_tutorial[onnx]' (or pip install onnxruntime)") from None
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = max(1, int(os.environ.get("OMP_NUM_THREADS", "0") or 0))
        sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"onnxruntime cannot load {path} ({' '.join(str(exc).split())[:200]}); "
                         "pass a valid ONNX model") from None
    inp = sess.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) and inp.shape[0] > 0 else None

    def fn(x):
        x = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
        x = np.ascontiguousarray(x, dtype=np.float32)
        if fixed is None:
            return sess.run(None, {inp.name: x})[0]
        outs = []
        for s in range(0, len(x), fixed):  # a fixed batch size: pad the last batch
            xb = x[s:s + fixed]
            pad = fixed - len(xb)
            if pad:
                xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), np.float32)])
            outs.append(sess.run(None, {inp.name: xb})[0][:fixed - pad])
        return np.concatenate(outs)

    return fn


def open_suspect(suspect, batch_size: int = 1024) -> Suspect:
    """A :class:`Suspect` from a path (checkpoint, TorchScript, ONNX), a torch model or a
    callable; ValueError naming the accepted forms otherwise."""
    if isinstance(suspect, (str, os.PathLike)):
        kind = check_suspect_file(suspect)
        if kind == "checkpoint":
            from .checkpoint import load_checkpoint
            from .models import dataset_of

            model, settings, _ = load_checkpoint(suspect)  # weights_only: never unpickles code
            model.eval()
            dataset = dataset_of(settings["model"]) if "model" in settings else None
            return Suspect(_torch_fn(model, batch_size), f"checkpoint {suspect}", dataset,
                           "logits", kind, True)
        if kind == "torchscript":
            import torch

            try:
                with warnings.catch_warnings():  # deprecated in torch, still what owners are given
                    warnings.simplefilter("ignore", FutureWarning)
                    module = torch.jit.load(str(suspect), map_location="cpu")
            except (RuntimeError, ValueError) as exc:
                raise ValueError(f"{suspect} is not a loadable TorchScript file "
                                 f"({' '.join(str(exc).split())[:200]}); save the model again with "
                                 "torch.jit.save") from None
            module.eval()
            return Suspect(_torch_fn(module, batch_size), f"TorchScript {suspect}", None, None,
                           kind, True)
        return Suspect(_onnx_fn(suspect), f"ONNX {suspect}", None, None, kind)
    if hasattr(suspect, "state_dict") and hasattr(suspect, "forward"):
        return Suspect(_torch_fn(suspect, batch_size), type(suspect).__name__, None, "logits",
                       "model", True)
    if callable(suspect):
        return Suspect(suspect, getattr(suspect, "__name__", type(suspect).__name__), None, None,
                       "callable")
    raise ValueError(f"suspect must be a checkpoint path, a TorchScript or ONNX file, a torch model "
                     f"or a callable mapping a batch of images to logits or probabilities, got "
                     f"{type(suspect).__name__}")


def scores_of(fn, x: np.ndarray, c: int, batch_size: int = 1024,
              batches_itself: bool = False) -> np.ndarray:
    """``fn`` over ``x`` in batches (``batches_itself``: in one call, ``fn`` batching itself): a
    (len(x), c) float64 array; a suspect that returns labels, the wrong shape, NaN, or fails
    on the images is refused in one line."""
    import torch

    outs = []
    if batches_itself:
        batch_size = max(1, len(x))
    for start in range(0, len(x), batch_size):
        with warnings.catch_warnings():  # read-only pools: the suspect gets them, never writes
            warnings.simplefilter("ignore", UserWarning)
            xb = torch.from_numpy(x[start:start + batch_size])
        try:
            with torch.no_grad():
                out = fn(xb)
        except Exception as exc:  # the suspect is foreign code: say what it was given
            raise ValueError(
                f"the suspect failed on a batch of images of shape {tuple(xb.shape)} "
                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); it must accept the "
                "pools' images, normalized as pmi_tutorial.data does") from None
        if hasattr(out, "detach"):
            out = out.detach().cpu().double().numpy()
        out = np.asarray(out)
        if out.ndim == 1 or (out.ndim == 2 and out.shape[1] == 1 and c > 1):
            raise ValueError(
                f"the suspect returned one value per image (shape {out.shape}): labels only. The "
                f"calibrated tests need a score per class; give a suspect that returns {c} logits "
                "or probabilities per image (a label-only API cannot be verified with them)")
        out = out.astype(np.float64, copy=False)
        if out.shape != (len(xb), c):
            raise ValueError(
                f"the suspect returned shape {out.shape} for a batch of {len(xb)} images; it must "
                f"return ({len(xb)}, {c}): one row of {c} logits or probabilities per image")
        if not np.all(np.isfinite(out)):
            raise ValueError("the suspect returned NaN or infinite values; check the model or API")
        outs.append(out)
    return np.concatenate(outs)


def is_one_hot(out: np.ndarray) -> bool:
    """Every row a single 1 and zeros: predicted labels, not probabilities."""
    return bool(np.isin(out, (0.0, 1.0)).all() and (out.sum(1) == 1).all())


def looks_like_probabilities(out: np.ndarray) -> bool:
    return bool((out >= 0).all() and (out <= 1 + 1e-6).all()
                and np.allclose(out.sum(1), 1.0, atol=1e-4))
