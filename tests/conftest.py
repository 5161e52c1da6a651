"""Shared fixtures: the data folder, one torch thread per test, tiny profiles and models.

* ``mnist_root``: a folder holding ``mnist.npz``: the real MNIST when ``$PMI_DATA_DIR`` has it,
  otherwise a synthetic MNIST-shaped data set (:func:`write_synthetic_mnist`), so that the
  end-to-end tests run rather than skip without the real data.
* ``real_mnist_root`` / ``real_cifar_root``: the real files, or the test is skipped (tests of
  facts about the published data sets: class counts, checksums).
* ``synthetic_mnist_root``: always the synthetic set (tests that must not depend on real data).
* ``data_dir_env`` (automatic): ``$PMI_DATA_DIR`` names ``mnist_root`` for the whole run.
* ``one_thread`` (automatic): every test runs torch on one thread (the machines that run the
  suite are small and shared; two threads can be far slower), restored afterwards.
* ``tiny_profile(**changes)``: a :class:`pmi_tutorial.profiles.Profile` that trains in seconds.
* ``fake_split(...)``: a data-free split of random 'MNIST' images, for checks that fail before
  any data is used.
* ``refused(call, exc, words)``: ``call()`` raises ``exc`` whose one message names the problem
  and the fix (holds every one of ``words``).
* ``evil_checkpoint(folder)``: a file that looks like a checkpoint but carries pickled code.
* ``kill_when_ready(proc, ready)``: SIGKILL a run once it has saved some work.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

#: MNIST's shape: 60,000 training and 10,000 test images of 28 x 28 pixels, 10 classes
MNIST_SHAPE = {"train": 60_000, "test": 10_000, "side": 28, "classes": 10}


def real_data_dir(name: str = "mnist") -> Path | None:
    """``$PMI_DATA_DIR`` when it holds ``{name}.npz``, else None."""
    folder = os.environ.get("PMI_DATA_DIR")
    if folder and (Path(folder) / f"{name}.npz").is_file() and not (Path(folder) / SYNTHETIC).exists():
        return Path(folder)
    return None


SYNTHETIC = "SYNTHETIC"  # marks a folder of synthetic stand-ins


def write_synthetic_mnist(folder: Path, seed: int = 0) -> Path:
    """Write an MNIST-shaped ``mnist.npz`` (and its sha256 sidecar) into ``folder``.

    Every class r has a fixed random binary template of about 120 lit pixels; an image is its
    class's template with 5% of the pixels flipped, so a small MLP learns it within an epoch,
    and a model still fits its training images better than unseen ones.  Labels are balanced
    (7,000 images per class over both parts), in a seeded random order.
    """
    rng = np.random.default_rng(seed)
    side, c = MNIST_SHAPE["side"], MNIST_SHAPE["classes"]
    total = MNIST_SHAPE["train"] + MNIST_SHAPE["test"]
    templates = rng.random((c, side * side)) < 0.15
    y = rng.permutation(np.repeat(np.arange(c), total // c)).astype(np.uint8)
    flips = rng.integers(0, 20, size=(total, side * side), dtype=np.uint8) == 0
    x = ((templates[y] ^ flips) * np.uint8(255)).astype(np.uint8).reshape(total, side, side)
    n = MNIST_SHAPE["train"]
    path = folder / "mnist.npz"
    np.savez(path, x_train=x[:n], y_train=y[:n], x_test=x[n:], y_test=y[n:])  # 55 MB, fast
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "mnist.npz.sha256").write_text(digest + "\n")  # as data.download writes it
    (folder / SYNTHETIC).touch()  # never taken for the real data (data_dir_env points here)
    return path


@pytest.fixture(scope="session")
def synthetic_mnist_root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic_data")
    write_synthetic_mnist(folder)
    return folder


@pytest.fixture(scope="session")
def mnist_root(synthetic_mnist_root) -> Path:
    return real_data_dir("mnist") or synthetic_mnist_root


@pytest.fixture(scope="session", autouse=True)
def data_dir_env(mnist_root):
    """``$PMI_DATA_DIR`` points at ``mnist_root`` for the whole run (the real folder when set,
    else the synthetic one), so that code reading the environment finds data either way."""
    with pytest.MonkeyPatch.context() as mp:
        if real_data_dir("mnist") is None:
            mp.setenv("PMI_DATA_DIR", str(mnist_root))
        yield


def _real_or_skip(name: str) -> Path:
    found = real_data_dir(name)
    if found is None:
        pytest.skip(f"the real {name}.npz is not in $PMI_DATA_DIR (set it to the folder holding it)")
    return found


@pytest.fixture(scope="session")
def real_mnist_root() -> Path:
    return _real_or_skip("mnist")


@pytest.fixture(scope="session")
def real_cifar_root() -> Path:
    return _real_or_skip("cifar10")


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_profile():
    """``tiny_profile(**changes)``: the quick profile cut down to seconds (2 MLP epochs on 30
    images per class, 15 trials), with ``changes`` applied."""
    from pmi_tutorial.profiles import QUICK

    base = dataclasses.replace(
        QUICK, name="tiny", description="tests: a few images per class, seconds",
        epochs={"mlp": 2, "lenet5": 1, "vgg19": 1, "resnet34": 1},
        train_per_class={"mnist": 30, "cifar10": 30},
        width={"mlp": 1.0, "lenet5": 1.0, "vgg19": 0.125, "resnet34": 0.125},
        trials=15, finetune_epochs=1, reduced=("everything: a test profile",))

    def make(**changes):
        return dataclasses.replace(base, **changes)

    return make


@pytest.fixture(scope="session")
def dask_engine():
    """One Dask ``LocalCluster`` of two worker processes for every test that needs a cluster
    (starting one costs seconds); skipped where Dask is not installed."""
    pytest.importorskip("distributed")
    from pmi_tutorial.experiments import runner

    eng = runner.engine(workers=2)
    yield eng
    eng.close()


def _fake_split(n_train=40, n_val=40, classes=3):
    from pmi_tutorial import data

    g = torch.Generator().manual_seed(0)
    return data.Split(
        name="mnist", seed=0,
        train_x=torch.randn(n_train, 1, 28, 28, generator=g), train_y=torch.arange(n_train) % classes,
        val_x=torch.randn(n_val, 1, 28, 28, generator=g), val_y=torch.arange(n_val) % classes,
        train_index=np.arange(n_train), val_index=np.arange(n_train, n_train + n_val),
        num_classes=classes, input_shape=(1, 28, 28),
    )


@pytest.fixture(scope="session")
def fake_split():
    """``fake_split(n_train=40, n_val=40, classes=3)``: a :class:`pmi_tutorial.data.Split` of
    random 'MNIST' images, enough for checks that fail before the data is used."""
    return _fake_split


def _refused(call, exc, words) -> str:
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} missing from the message: {msg}"
    assert "Traceback" not in msg and len(msg) < 700
    return msg


@pytest.fixture(scope="session")
def refused():
    """``refused(call, exc, words)``: ``call()`` raises ``exc`` with one short message (no
    traceback) that holds every one of ``words`` (the problem and the fix); returns it."""
    return _refused


class Evil:
    """Unpickling this without weights_only would create the marker file (code execution)."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _evil_checkpoint(folder: Path) -> tuple[Path, Path]:
    from pmi_tutorial.checkpoint import save_checkpoint, sidecar_path
    from pmi_tutorial.models import build_model

    marker = folder / "PWNED"
    Evil.marker = str(marker)
    path = folder / "suspect.pt"
    good = save_checkpoint(folder / "good.pt", build_model("mlp"))
    torch.save({"format": "pmi_tutorial.checkpoint", "format_version": 1,
                "model": {"net.1.weight": Evil()}, "state": None}, path)
    sidecar_path(path).write_text(sidecar_path(good).read_text())
    return path, marker


@pytest.fixture(scope="session")
def evil_checkpoint():
    """``evil_checkpoint(folder) -> (path, marker)``: a file that looks like a checkpoint (a
    valid sidecar, the format marker) but carries code that, unpickled, creates ``marker``."""
    return _evil_checkpoint


def _kill_when_ready(proc, ready, timeout=90.0):
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended before it could be killed: {proc.communicate()[1][-2000:]}")
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail("the run never reached its first checkpoint")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture(scope="session")
def kill_when_ready():
    """``kill_when_ready(proc, ready, timeout=90)``: wait until ``ready()`` (the subprocess
    ``proc`` has saved some work), then SIGKILL it; fails the test when it ends first."""
    return _kill_when_ready
