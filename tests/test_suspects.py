"""Tests for pmi_tutorial.suspects: a suspect file is recognised without being loaded, and
every file that is not a model is refused in one line naming the fix."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest
import torch

from pmi_tutorial import suspects as S
from pmi_tutorial.checkpoint import save_checkpoint
from pmi_tutorial.models import build_model


def test_kinds_are_recognised(tmp_path):
    ckpt = save_checkpoint(tmp_path / "mlp.pt", build_model("mlp", seed=0))
    assert S.check_suspect_file(ckpt) == "checkpoint"
    ts = tmp_path / "mlp.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(build_model("mlp", seed=0)), str(ts))
    assert S.check_suspect_file(ts) == "torchscript"
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    assert S.check_suspect_file(tmp_path / "m.onnx") == "onnx"


@pytest.mark.parametrize("case, words", [
    ("missing", ["no checkpoint at", "python -m pmi_tutorial train --model mlp --out"]),
    ("folder", ["is a folder"]),
    ("text", ["is not a model file", "TorchScript or ONNX"]),
    ("zip", ["zip archive but not a model"]),
    ("torch-no-sidecar", ["without its settings file", "mlp.pt.json"]),
])
def test_files_that_are_not_suspects(tmp_path, case, words):
    path = tmp_path / ("mlp.pt" if case == "torch-no-sidecar" else case)
    if case == "folder":
        path.mkdir()
    elif case == "text":
        path.write_text("notes\n")
    elif case == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("a.txt", "x")
    elif case == "torch-no-sidecar":
        torch.save(build_model("mlp").state_dict(), path)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        S.check_suspect_file(path)
    text = str(info.value)
    assert "\n" not in text and "delete" not in text
    for w in words:
        assert w in text


def test_scores_of_checks_the_shape_and_values():
    x = np.zeros((5, 1, 28, 28), np.float32)
    out = S.scores_of(lambda b: torch.ones(len(b), 10), x, 10, batch_size=2)
    assert out.shape == (5, 10) and out.dtype == np.float64
    with pytest.raises(ValueError, match="labels only"):
        S.scores_of(lambda b: np.zeros(len(b), dtype=np.int64), x, 10)
    with pytest.raises(ValueError, match="NaN or infinite"):
        S.scores_of(lambda b: np.full((len(b), 10), np.inf), x, 10)
    assert S.is_one_hot(np.eye(10)[[1, 2, 3]]) and not S.is_one_hot(np.full((2, 10), 0.1))
    assert S.looks_like_probabilities(np.full((2, 10), 0.1))
