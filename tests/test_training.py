"""Tests for pmi_tutorial.training: learning, best-epoch selection, exact resume, the model cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from pmi_tutorial import data, training
from pmi_tutorial.checkpoint import load_checkpoint, read_payload, sidecar_path
from pmi_tutorial.models import build_model
from pmi_tutorial.profiles import Profile



@pytest.fixture(scope="module")
def small(mnist_root):
    """2,000 training images (200 per class), 2,000 validation images."""
    return data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 200, seed=0,
                       val_per_class=200)


def _weights_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_learns_above_chance(small):
    res = training.train(build_model("mlp", seed=0), small, epochs=3, seed=0, progress=False,
                         device="cpu")
    assert res.best_val_acc > 0.8  # chance is 0.1
    assert len(res.history) == 3
    assert set(res.history[0]) == {"epoch", "train_loss", "train_acc", "val_acc", "seconds"}
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    # the returned model really has the reported accuracy, and is in eval mode
    assert not res.model.training
    assert training.evaluate(res.model, small.val_x, small.val_y) == pytest.approx(res.best_val_acc)


def test_best_epoch_is_max_of_history(small):
    # lr=0.05 makes Adam unstable enough that the last epoch is often not the best
    res = training.train(build_model("mlp", seed=1), small, epochs=4, lr=0.05, seed=1,
                         progress=False, device="cpu")
    accs = res.val_acc
    assert res.best_val_acc == max(accs)
    assert res.best_epoch == accs.index(max(accs)) + 1  # earliest among ties
    acc = training.evaluate(res.model, small.val_x, small.val_y)
    assert acc == pytest.approx(res.best_val_acc)


def test_best_epoch_weights_loaded(small, monkeypatch):
    """Force a validation curve that peaks in epoch 2: the model must hold epoch 2's weights."""
    curve = iter([0.5, 0.9, 0.7])
    snapshots = []
    real_evaluate = training.evaluate

    def fake_evaluate(model, x, y, **kw):
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        real_evaluate(model, x, y, **kw)
        return next(curve)

    monkeypatch.setattr(training, "evaluate", fake_evaluate)
    res = training.train(build_model("mlp", seed=0), small, epochs=3, progress=False, device="cpu")
    assert res.best_epoch == 2 and res.best_val_acc == 0.9
    assert all(torch.equal(v, snapshots[1][k]) for k, v in res.model.state_dict().items())
    assert not all(torch.equal(v, snapshots[2][k]) for k, v in res.model.state_dict().items())


def test_seeded_runs_are_identical(small):
    a = training.train(build_model("mlp", seed=0), small, epochs=1, seed=3, progress=False, device="cpu")
    b = training.train(build_model("mlp", seed=0), small, epochs=1, seed=3, progress=False, device="cpu")
    c = training.train(build_model("mlp", seed=0), small, epochs=1, seed=4, progress=False, device="cpu")
    assert _weights_equal(a.model, b.model)
    assert not _weights_equal(a.model, c.model)


@pytest.mark.parametrize("name", ["mlp", "lenet5"])
def test_resume_gives_identical_weights(small, tmp_path, name):
    tiny = data.subset(small, 30, seed=0, val_per_class=20)  # keep LeNet-5 fast
    kw = dict(lr=1e-3, batch_size=32, seed=7, progress=False, device="cpu")
    full = training.train(build_model(name, seed=0), tiny, epochs=3, **kw)

    ckpt = tmp_path / "run.pt"
    first = training.train(build_model(name, seed=0), tiny, epochs=1, checkpoint_path=ckpt, **kw)
    assert ckpt.is_file() and sidecar_path(ckpt).is_file() and len(first.history) == 1
    # "killed" after epoch 1; a new process builds a fresh model (other init) and resumes
    resumed = training.train(build_model(name, seed=123), tiny, epochs=3, checkpoint_path=ckpt, **kw)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert _weights_equal(resumed.model, full.model)
    # the checkpoint's current weights are the last epoch's; calling again trains nothing more
    _, _, state = load_checkpoint(ckpt, build_model(name))
    assert state["epoch"] == 3 and len(state["history"]) == 3
    again = training.train(build_model(name, seed=5), tiny, epochs=3, checkpoint_path=ckpt, **kw)
    assert _weights_equal(again.model, full.model)


def test_resume_with_other_settings_refused(small, tmp_path):
    tiny = data.subset(small, 10, seed=0, val_per_class=10)
    ckpt = tmp_path / "run.pt"
    training.train(build_model("mlp"), tiny, epochs=2, checkpoint_path=ckpt, progress=False, device="cpu")
    with pytest.raises(ValueError, match="other settings.*lr"):
        training.train(build_model("mlp"), tiny, epochs=3, lr=1e-2, checkpoint_path=ckpt,
                       progress=False, device="cpu")
    with pytest.raises(ValueError, match="already holds 2 epochs"):
        training.train(build_model("mlp"), tiny, epochs=1, checkpoint_path=ckpt, progress=False,
                       device="cpu")
    with pytest.raises(ValueError, match="another architecture"):
        training.train(build_model("lenet5"), tiny, epochs=3, checkpoint_path=ckpt, progress=False,
                       device="cpu")


def test_bad_arguments(small):
    with pytest.raises(ValueError, match="epochs"):
        training.train(build_model("mlp"), small, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        training.train(build_model("mlp"), small, epochs=1, lr=-1)


def test_pick_device_and_generator():
    assert training.pick_device().type in ("cuda", "mps", "cpu")
    a = torch.randperm(100, generator=training.epoch_generator(0, 1))
    assert torch.equal(a, torch.randperm(100, generator=training.epoch_generator(0, 1)))
    assert not torch.equal(a, torch.randperm(100, generator=training.epoch_generator(0, 2)))
    assert not torch.equal(a, torch.randperm(100, generator=training.epoch_generator(1, 1)))


TINY = Profile(
    name="tiny", description="test profile", epochs={"mlp": 2, "lenet5": 1, "vgg19": 1, "resnet34": 1},
    train_per_class={"mnist": 30, "cifar10": 10},
    width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 0.125, "resnet34": 0.125},
)


def test_cached_model_trains_once_then_loads(mnist_root, tmp_path, monkeypatch):
    first = training.cached_model("mlp", TINY, seed=0, cache_dir=tmp_path, progress=False,
                                  device="cpu", root=mnist_root)
    assert not first.from_cache and len(first.history) == 2
    files = sorted(p.name for p in tmp_path.iterdir())
    # the best-validation model and the last epoch's weights, each with its sidecar; no partials
    assert files == ["mlp_mnist_e2_w1_tpc30_s0.last.pt", "mlp_mnist_e2_w1_tpc30_s0.last.pt.json",
                     "mlp_mnist_e2_w1_tpc30_s0.pt", "mlp_mnist_e2_w1_tpc30_s0.pt.json"]
    assert training.last_epoch_path(first.checkpoint_path).name == files[0]
    assert first.split.train_per_class == 30 and len(first.split.train_y) == 300
    assert len(first.split.val_y) == 20000

    def no_training(*a, **kw):
        raise AssertionError("cached_model trained again instead of loading the cache")

    monkeypatch.setattr(training, "train", no_training)
    monkeypatch.setenv("PMI_CACHE_DIR", str(tmp_path))
    second = training.cached_model("mlp", TINY, seed=0, progress=False, device="cpu", root=mnist_root)
    assert second.from_cache
    assert _weights_equal(first.model, second.model)
    assert second.history == first.history and second.best_epoch == first.best_epoch
    assert second.settings["profile"] == "tiny" and second.settings["model"] == "mlp"
    assert torch.equal(second.split.train_x, first.split.train_x)
    assert second.best_val_acc == pytest.approx(
        training.evaluate(second.model, second.split.val_x, second.split.val_y))
    # another seed is another model: not in the cache, so it would train
    with pytest.raises(AssertionError, match="trained again"):
        training.cached_model("mlp", TINY, seed=1, progress=False, device="cpu", root=mnist_root)


def test_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("PMI_CACHE_DIR", str(tmp_path))
    assert training.cache_folder() == tmp_path
    monkeypatch.delenv("PMI_CACHE_DIR")
    assert training.cache_folder() == Path("~/.cache/pmi_tutorial/models").expanduser()
    assert training.cache_key("vgg19", "cifar10", 15, 0.125, 500, 0) == "vgg19_cifar10_e15_w0.125_tpc500_s0"


def test_load_or_train_makes_once_and_handles_the_epoch_checkpoint(tmp_path):
    from pmi_tutorial.checkpoint import save_checkpoint

    calls = []

    def make(partial):
        calls.append(partial)
        model = build_model("mlp", seed=3)
        save_checkpoint(partial, model, {"kind": "training"}, {"epoch": 1})  # what train() leaves
        return model, {"note": "test"}, {"best_epoch": 1}

    final = tmp_path / "m.pt"
    model, settings, state, cached = training.load_or_train(final, make)
    assert not cached and calls == [training.partial_path(final)] and settings["note"] == "test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "m.pt.json"]  # partial removed
    again, settings2, state2, cached2 = training.load_or_train(final, make)
    assert cached2 and len(calls) == 1 and state2 == {"best_epoch": 1} and settings2 == settings
    assert _weights_equal(model, again) and not again.training  # eval mode

    kept = tmp_path / "k.pt"
    training.load_or_train(kept, make, keep_last=True)
    assert training.last_epoch_path(kept).is_file()
    assert not training.partial_path(kept).exists()


def test_zero_epochs_is_refused(fake_split, refused):
    refused(lambda: training.train(build_model("mlp"), fake_split(), epochs=0),
            ValueError, ["epochs", "positive integer"])


# ----------------------------------------------------------------------------- no lost work

TRAIN_CHILD = textwrap.dedent("""
    import sys, time, torch
    torch.set_num_threads({threads})
    from pmi_tutorial import data, training
    from pmi_tutorial.models import build_model
    split = data.subset(data.owner_split("mnist", seed=0), 40, seed=0, val_per_class=40)
    slow = training.evaluate
    def evaluate(*a, **kw):  # a slower epoch, so the kill lands mid-run
        time.sleep(0.4)
        return slow(*a, **kw)
    training.evaluate = evaluate
    training.train(build_model("mlp", seed=0), split, epochs={epochs}, batch_size=16, seed=3,
                   checkpoint_path={path!r}, progress=False, device="cpu")
""")


def test_training_resumes_after_sigkill(tmp_path, mnist_root, kill_when_ready):
    epochs = 6
    ckpt = tmp_path / "run.pt"
    env = dict(os.environ, PMI_DATA_DIR=str(mnist_root), PMI_CACHE_DIR=str(tmp_path / "cache"))
    code = TRAIN_CHILD.format(threads=1, epochs=epochs, path=str(ckpt))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    kill_when_ready(proc, ckpt.is_file)

    # what the kill left: the weights file is complete and loads, with its sidecar
    assert sidecar_path(ckpt).is_file()
    done = read_payload(ckpt)["state"]["epoch"]
    assert 1 <= done < epochs, "killed too late to test anything"
    (tmp_path / f".{ckpt.name}.k1ll3d.tmp").write_bytes(b"half a save")  # as a kill mid-save leaves

    split = data.subset(data.owner_split("mnist", seed=0, root=mnist_root), 40, seed=0, val_per_class=40)
    kw = dict(epochs=epochs, batch_size=16, seed=3, progress=False, device="cpu")
    resumed = training.train(build_model("mlp", seed=99), split, checkpoint_path=ckpt, **kw)
    full = training.train(build_model("mlp", seed=0), split, **kw)
    assert [h["epoch"] for h in resumed.history] == list(range(1, epochs + 1))
    assert [h["val_acc"] for h in resumed.history] == [h["val_acc"] for h in full.history]
    assert resumed.best_epoch == full.best_epoch
    assert _weights_equal(resumed.model, full.model)
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))
