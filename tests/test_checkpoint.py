"""Tests for pmi_tutorial.checkpoint: round trips, atomic writes and every refusal."""

from __future__ import annotations

import json
import os
import pickle
import re

import pytest
import torch

from pmi_tutorial.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    read_payload,
    save_checkpoint,
    sidecar_path,
)
from pmi_tutorial.models import build_model


class Evil:
    """A pickled object that would run code when unpickled without weights_only."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path):
    model = build_model("lenet5", seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    opt.step()
    state = {
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "history": [{"epoch": 1, "val_acc": 0.5, "seconds": 1.25}],
        "best_state": {k: v.clone() for k, v in model.state_dict().items()},
        "note": None,
    }
    path = tmp_path / "sub" / "lenet5.pt"
    save_checkpoint(path, model, {"epochs": 3, "profile": "quick"}, state)
    return path, model, state


def test_round_trip(saved):
    path, model, state = saved
    assert path.is_file() and sidecar_path(path).is_file()
    side = json.loads(sidecar_path(path).read_text())
    assert side["model"] == "lenet5" and side["dataset"] == "mnist" and side["width"] == 1.0
    assert side["num_classes"] == 10 and side["format_version"] == FORMAT_VERSION
    assert side["epochs"] == 3 and side["profile"] == "quick"
    loaded, settings, st = load_checkpoint(path)  # rebuilt from the sidecar
    assert _same_weights(loaded, model)
    assert settings["checkpoint_id"] == side["checkpoint_id"]
    assert st["epoch"] == 3 and st["history"] == state["history"] and st["note"] is None
    assert all(torch.equal(st["best_state"][k], v) for k, v in state["best_state"].items())
    # optimizer state restores into a fresh optimizer
    opt = torch.optim.Adam(loaded.parameters(), lr=1e-3)
    opt.load_state_dict(st["optimizer"])
    # and into a given model
    other = build_model("lenet5", seed=1)
    same, _, _ = load_checkpoint(path, model=other)
    assert same is other and _same_weights(other, model)
    assert not list(path.parent.glob("*.tmp"))


def test_width_round_trip(tmp_path):
    model = build_model("resnet34", width=0.125, seed=0)
    save_checkpoint(tmp_path / "r.pt", model, {})
    loaded, settings, state = load_checkpoint(tmp_path / "r.pt")
    assert settings["width"] == 0.125 and state is None
    assert _same_weights(loaded, model)
    # BatchNorm running statistics are part of the state_dict
    assert "bn1.running_mean" in loaded.state_dict()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")


def test_missing_sidecar(saved):
    path, _, _ = saved
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 10, 0.5, -10])
def test_truncated(saved, keep):
    path, _, _ = saved
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(raw) + keep)
    path.write_bytes(raw[:n])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(path)


def test_refuses_pickled_objects(saved):
    path, _, _ = saved
    torch.save({"format": "pmi_tutorial.checkpoint", "model": Evil()}, path)
    with pytest.raises(ValueError, match="refusing to unpickle.*may be malicious") as info:
        load_checkpoint(path)
    assert "Evil" in str(info.value) or "system" in str(info.value)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_refuses_plain_pickle(saved):
    path, _, _ = saved
    path.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(ValueError, match="refusing to unpickle"):
        load_checkpoint(path)


def test_plain_torch_file_is_not_a_checkpoint(saved):
    path, model, _ = saved
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="not a pmi_tutorial checkpoint"):
        load_checkpoint(path)


def test_other_architecture(saved):
    path, _, _ = saved
    with pytest.raises(ValueError, match="another architecture"):
        load_checkpoint(path, model=build_model("mlp"))
    with pytest.raises(ValueError, match="another architecture"):
        load_checkpoint(path, model=build_model("lenet5", width=0.5))  # same keys, other shapes


def test_incompatible_version(saved):
    path, _, _ = saved
    side = json.loads(sidecar_path(path).read_text())
    side["format_version"] = 99
    sidecar_path(path).write_text(json.dumps(side))
    with pytest.raises(ValueError, match="format version 99.*re-create"):
        load_checkpoint(path)


def test_corrupt_sidecar(saved):
    path, _, _ = saved
    sidecar_path(path).write_text('{"model": "lenet5", ')
    with pytest.raises(ValueError, match="sidecar.*corrupt"):
        load_checkpoint(path)


def test_interrupted_between_files(tmp_path):
    """Weights replaced but sidecar still from the previous save: the weights file wins."""
    path = tmp_path / "m.pt"
    old = build_model("mlp", seed=0)
    save_checkpoint(path, old, {"epoch": 1})
    old_side = sidecar_path(path).read_text()
    new = build_model("mlp", seed=1)
    save_checkpoint(path, new, {"epoch": 2})
    sidecar_path(path).write_text(old_side)
    with pytest.warns(RuntimeWarning, match="different saves"):
        loaded, settings, _ = load_checkpoint(path)
    assert settings["epoch"] == 2 and _same_weights(loaded, new)


def test_save_rejects_unloadable_state(tmp_path):
    import numpy as np

    model = build_model("mlp")
    with pytest.raises(ValueError, match=r"state\['history'\]\[0\]\['acc'\].*numpy"):
        save_checkpoint(tmp_path / "x.pt", model, {}, {"history": [{"acc": np.float64(0.5)}]})
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.pt", model, {"bad": object()})
    assert not (tmp_path / "x.pt").exists()


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    first = build_model("mlp", seed=0)
    save_checkpoint(path, first, {})

    def boom(obj, f, *a, **kw):
        f.write(b"partial")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, build_model("mlp", seed=1), {})
    monkeypatch.undo()
    loaded, _, _ = load_checkpoint(path)
    assert _same_weights(loaded, first)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------- refusals


def test_truncated_checkpoint_is_refused(tmp_path, refused):
    path = save_checkpoint(tmp_path / "m.pt", build_model("mlp", seed=0))
    path.write_bytes(path.read_bytes()[:1000])
    refused(lambda: load_checkpoint(path), ValueError, ["truncated or corrupt", "re-create"])
    assert not list(tmp_path.rglob("*.tmp"))


def test_other_architecture_is_refused(tmp_path, refused):
    path = save_checkpoint(tmp_path / "m.pt", build_model("lenet5"))
    refused(lambda: load_checkpoint(path, model=build_model("mlp")), ValueError,
            ["another architecture", "model='lenet5'", "without a model"])
    assert not list(tmp_path.rglob("*.tmp"))


def test_pickled_code_in_checkpoint_is_refused(tmp_path, evil_checkpoint, fake_split):
    from pmi_tutorial import training

    path, marker = evil_checkpoint(tmp_path)
    for load in (load_checkpoint, read_payload):
        with pytest.raises(ValueError, match="refusing to unpickle") as info:
            load(path)
        # the global is io.open up to Python 3.11 and _io.open from 3.12 on
        assert re.search(r"it needs _?io\.open\b", str(info.value)) and "weights_only=False" in str(info.value)
    assert not marker.exists()
    # the same file as a training run's resume checkpoint
    with pytest.raises(ValueError, match="refusing to unpickle"):
        training.train(build_model("mlp"), fake_split(), epochs=1, checkpoint_path=path,
                       progress=False, device="cpu")
    assert not marker.exists()
