"""Atomic, pickle-free checkpoints: a ``state_dict`` file plus a JSON sidecar (book chapter
"Reproducing Tables I-II").

A checkpoint is two files:

* ``path``: written with :func:`torch.save`; a dict holding the model's ``state_dict``, the
  optional training ``state`` (optimizer state, epoch, history, best weights: tensors and plain
  containers, numbers and strings only) and a copy of the settings.  It is read back with
  ``torch.load(..., weights_only=True)``, which refuses arbitrary pickled objects.
* ``path + ".json"``: the settings in readable form (model name, num_classes, width, dataset,
  format version, and whatever else the caller passed).

Both are written atomically (:func:`pmi_tutorial.files.atomic_writer`),
sidecar first, weights second, so that the weights file is the commit point: a run killed before
its first save completes leaves no weights file (never one without a sidecar).  Both carry the
same random ``checkpoint_id``; if a run is killed between the two replacements, or the files
come from different saves, the weights file (self-contained) wins and a warning says so.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import uuid
import warnings
from pathlib import Path

import torch
from torch import nn

from .files import write_bytes_atomic

FORMAT = "pmi_tutorial.checkpoint"
FORMAT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None))


def sidecar_path(path) -> Path:
    """The JSON sidecar of the checkpoint at ``path``: ``path + ".json"``."""
    return Path(str(path) + ".json")


def _check_plain(obj, where: str) -> None:
    """Only what ``torch.load(weights_only=True)`` can read back: tensors and plain data."""
    if isinstance(obj, (torch.Tensor, torch.Size)) or type(obj) in _PLAIN:  # not np.float64
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise ValueError(f"{where} has a key {k!r} of type {type(k).__name__}; use str or int keys")
            _check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    raise ValueError(
        f"{where} is a {type(obj).__module__}.{type(obj).__name__}; a checkpoint holds only "
        "tensors, dicts, lists, tuples, str, int, float, bool and None (convert NumPy values "
        "with float()/int()/.tolist() or torch.as_tensor)"
    )


def _arch_defaults(model: nn.Module) -> dict:
    arch = dict(getattr(model, "arch", None) or {})
    if "model" in arch:
        from .models import dataset_of

        arch.setdefault("dataset", dataset_of(arch["model"]))
    return arch


def save_checkpoint(path, model: nn.Module, settings: dict | None = None, state: dict | None = None) -> Path:
    """Save ``model``'s weights, optional training ``state`` and ``settings`` atomically.

    ``settings`` (JSON-serializable) is completed with the model's own description when it was
    made by :func:`pmi_tutorial.models.build_model` (model name, num_classes, width, dataset) and
    the format version.  Returns the path of the weights file.
    """
    path = Path(path)
    full = {**_arch_defaults(model), **(settings or {})}
    full.update(format=FORMAT, format_version=FORMAT_VERSION, checkpoint_id=uuid.uuid4().hex)
    try:
        text = json.dumps(full, indent=2, sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"settings must be JSON-serializable (str, numbers, lists, dicts): {exc}"
        ) from None
    if state is not None:
        if not isinstance(state, dict):
            raise ValueError(f"state must be a dict or None, got {type(state).__name__}")
        _check_plain(state, "state")
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "checkpoint_id": full["checkpoint_id"],
        "settings": json.loads(text),
        "model": weights,
        "state": state,
    }
    # sidecar first, weights last: the weights file is the commit point.  A run killed between
    # the two leaves either no weights file (a first save: nothing to resume, nothing half-done)
    # or the previous, complete weights beside a newer sidecar (load_checkpoint notices the
    # differing checkpoint_id and trusts the settings stored inside the weights file).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes_atomic(sidecar_path(path), (text + "\n").encode())
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _check_marker(obj, where, what: str) -> None:
    """``obj`` (a sidecar or a payload) must carry this package's format marker and version."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ValueError(f"{where} is not a pmi_tutorial {what}; pass the path of a file written "
                         "by pmi_tutorial.checkpoint.save_checkpoint")
    _check_version(obj.get("format_version"), where)


def _no_checkpoint(path) -> FileNotFoundError:
    return FileNotFoundError(
        f"no checkpoint at {path}; check the path, or train the model first "
        "(pmi_tutorial.training.train with checkpoint_path=...)"
    )


def _check_version(version, where) -> None:
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} was written in checkpoint format version {version!r}, but this version of "
            f"pmi_tutorial reads version {FORMAT_VERSION}; re-create the checkpoint (retrain, or "
            "delete the cached model so it is trained again) or use the pmi_tutorial version "
            "that wrote it"
        )


def read_settings(path) -> dict:
    """The JSON sidecar of the checkpoint at ``path``, checked for the format version."""
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"the checkpoint sidecar {side} is missing (save_checkpoint writes it next to the "
            f"weights); re-save the checkpoint, or delete {path} so that it is trained again"
        )
    try:
        settings = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"the checkpoint sidecar {side} is corrupt ({exc}); delete {path} and its sidecar "
            "and re-create the checkpoint"
        ) from None
    _check_marker(settings, side, f"checkpoint sidecar (no \"format\": \"{FORMAT}\")")
    return settings


def read_payload(path) -> dict:
    """``torch.load(path, weights_only=True, map_location="cpu")`` with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise _no_checkpoint(path)
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        first = f"it needs {found.group(1)}" if found else "not a weights-only file"
        raise ValueError(
            f"refusing to unpickle {path}: it holds objects other than tensors and plain data "
            f"({first}); this file is not a pmi_tutorial checkpoint or may be malicious. "
            "Do not load it with weights_only=False unless you trust its source"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"the checkpoint {path} is truncated or corrupt ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); delete it and its "
            "sidecar and re-create it (an interrupted copy or a full disk are common causes)"
        ) from None
    _check_marker(payload, path, f"checkpoint (a plain torch file without the \"{FORMAT}\" marker)")
    return payload


def load_checkpoint(path, model: nn.Module | None = None):
    """Load a checkpoint written by :func:`save_checkpoint`: ``(model, settings, state)``.

    Without ``model``, the model is rebuilt with :func:`pmi_tutorial.models.build_model` from the
    settings.  The weights are read with ``torch.load(weights_only=True)``; no code from the file
    runs.  ``state`` is the training state given to :func:`save_checkpoint` (or None).
    """
    path = Path(path)
    if not path.is_file():
        raise _no_checkpoint(path)
    settings = read_settings(path)
    payload = read_payload(path)
    if payload.get("checkpoint_id") != settings.get("checkpoint_id"):
        warnings.warn(
            f"the sidecar {sidecar_path(path)} and the weights {path} come from different saves "
            "(a save was interrupted between the two files); using the settings stored in the "
            "weights file",
            RuntimeWarning,
            stacklevel=2,
        )
        settings = dict(payload.get("settings") or {})
    if model is None:
        from .models import MODELS, build_model

        name = settings.get("model")
        if name not in MODELS:
            raise ValueError(
                f"the checkpoint {path} does not name one of the package's models "
                f"(model={name!r}); build the model yourself and pass it: "
                "load_checkpoint(path, model=...)"
            )
        model = build_model(name, num_classes=int(settings.get("num_classes", 10)),
                            width=float(settings.get("width", 1.0)))
    try:
        model.load_state_dict(payload["model"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        desc = ", ".join(f"{k}={settings[k]!r}" for k in ("model", "width", "num_classes") if k in settings)
        raise ValueError(
            f"the checkpoint {path} holds weights of another architecture ({desc or 'unknown'}) "
            f"than the model given ({type(model).__name__}): {' '.join(str(exc).split())[:600]} "
            "Build the model with the checkpoint's settings (or call load_checkpoint(path) "
            "without a model)"
        ) from None
    return model, settings, payload.get("state")
