"""Tests for pmi_tutorial.data: files, checksums, the owner's split and the class pools."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from pmi_tutorial import data

# Class counts of MNIST's published train / test parts (the real file's labels).
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist_split(real_mnist_root):
    return data.owner_split("mnist", seed=0, root=real_mnist_root)


def _fake_arrays(n_train=20, n_test=10, shape=(28, 28), seed=0):
    rng = np.random.default_rng(seed)
    return dict(
        x_train=rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8),
    )


# ----------------------------------------------------------------------------- files


def test_load_dataset_mnist(real_mnist_root):
    ds = data.load_dataset("mnist", root=real_mnist_root)
    assert ds.name == "mnist"
    assert ds.images.shape == (70000, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (70000,) and ds.labels.dtype == np.int64
    counts = np.bincount(ds.labels[:60000], minlength=10)
    assert counts.tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.labels[60000:], minlength=10).tolist() == MNIST_TEST_COUNTS
    # train part first, then test part, as in the file
    with np.load(real_mnist_root / "mnist.npz") as f:
        assert np.array_equal(ds.images[60000:], f["x_test"])
        assert np.array_equal(ds.labels[:60000], f["y_train"])
    assert not ds.images.flags.writeable  # shared: callers must not modify it


def test_load_dataset_uses_env_var(real_mnist_root, monkeypatch):
    monkeypatch.setenv("PMI_DATA_DIR", str(real_mnist_root))
    assert data.data_dir() == real_mnist_root
    assert data.load_dataset("mnist").images.shape == (70000, 28, 28)


def test_default_data_dir(monkeypatch):
    monkeypatch.delenv("PMI_DATA_DIR", raising=False)
    assert data.data_dir() == Path("~/.cache/pmi_tutorial/data").expanduser()


def test_unknown_dataset():
    with pytest.raises(ValueError, match="'mnist', 'cifar10'"):
        data.load_dataset("imagenet")
    with pytest.raises(ValueError, match="unknown dataset"):
        data.owner_split("svhn")


def test_corrupt_file_detected(tmp_path):
    np.savez_compressed(tmp_path / "mnist.npz", **_fake_arrays())
    with pytest.raises(ValueError, match="corrupt.*delete it"):
        data.load_dataset("mnist", root=tmp_path)


def test_corrupted_copy_of_real_file(real_mnist_root, tmp_path):
    raw = bytearray((real_mnist_root / "mnist.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (tmp_path / "mnist.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        data.load_dataset("mnist", root=tmp_path)


def test_checksum_cached_in_process(tmp_path, monkeypatch):
    arrays = _fake_arrays()
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "mnist.npz.sha256").write_text(digest + "\n")
    calls = []
    real = data.sha256_of
    monkeypatch.setattr(data, "sha256_of", lambda p, **kw: calls.append(p) or real(p, **kw))
    data.clear_cache()
    data.load_dataset("mnist", root=tmp_path)
    data._LOADED.clear()
    data.load_dataset("mnist", root=tmp_path)
    assert len(calls) == 1  # hashed once, then (path, size, mtime) remembered


def test_sidecar_accepted(tmp_path):
    arrays = _fake_arrays()
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)
    (tmp_path / "mnist.npz.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest())
    ds = data.load_dataset("mnist", root=tmp_path)
    assert ds.images.shape == (30, 28, 28)
    assert np.array_equal(ds.images[:20], arrays["x_train"])
    assert ds.labels.dtype == np.int64
    # a sidecar that does not match the file does not rescue it
    (tmp_path / "mnist.npz.sha256").write_text("0" * 64)
    data.clear_cache()
    with pytest.raises(ValueError, match="corrupt"):
        data.load_dataset("mnist", root=tmp_path)


class _FakeMNIST:
    """Stands in for torchvision.datasets.MNIST: no network."""

    calls: list = []

    def __init__(self, root, train=True, download=False, **kw):
        assert download
        type(self).calls.append((root, train))
        n = 20 if train else 10
        arrays = _fake_arrays(20, 10, seed=1)
        self.data = torch.from_numpy(arrays["x_train" if train else "x_test"])
        self.targets = torch.from_numpy(arrays["y_train" if train else "y_test"]).long()
        assert len(self.data) == n


class _FakeCIFAR10:
    def __init__(self, root, train=True, download=False, **kw):
        arrays = _fake_arrays(20, 10, shape=(32, 32, 3), seed=2)
        self.data = arrays["x_train" if train else "x_test"]  # numpy, as in torchvision
        self.targets = arrays["y_train" if train else "y_test"].tolist()  # a list, as in torchvision


class _Offline:
    def __init__(self, *a, **kw):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")


def test_download_path_with_fake_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "MNIST", _FakeMNIST)
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCIFAR10)
    root = tmp_path / "cache"
    ds = data.load_dataset("mnist", root=root)
    assert (root / "mnist.npz").is_file() and (root / "mnist.npz.sha256").is_file()
    expected = _fake_arrays(20, 10, seed=1)
    assert np.array_equal(ds.images, np.concatenate([expected["x_train"], expected["x_test"]]))
    assert ds.labels.dtype == np.int64
    assert [t for _, t in _FakeMNIST.calls[-2:]] == [True, False]
    with np.load(root / "mnist.npz", allow_pickle=False) as f:
        assert sorted(f.files) == ["x_test", "x_train", "y_test", "y_train"]
    # a fresh process (cleared caches) accepts our own file through the sidecar
    data.clear_cache()
    assert data.load_dataset("mnist", root=root).images.shape == (30, 28, 28)
    ds = data.load_dataset("cifar10", root=root)
    assert ds.images.shape == (30, 32, 32, 3)
    assert not list(root.glob("*.tmp"))  # no temporary files left behind


def test_missing_file_offline(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    monkeypatch.setattr(tvd, "MNIST", _Offline)
    monkeypatch.setenv("PMI_DATA_DIR", str(tmp_path / "nowhere"))
    expected = str(tmp_path / "nowhere" / "mnist.npz")
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("mnist")
    msg = str(info.value)
    assert expected in msg and "PMI_DATA_DIR" in msg and "internet" in msg


# ----------------------------------------------------------------------------- the split


def test_owner_split_mnist(mnist_split, real_mnist_root):
    s = mnist_split
    assert (s.name, s.seed, s.num_classes, s.input_shape) == ("mnist", 0, 10, (1, 28, 28))
    assert s.train_x.shape == (50000, 1, 28, 28) and s.val_x.shape == (20000, 1, 28, 28)
    assert s.train_x.dtype == torch.float32 and s.train_y.dtype == torch.int64
    assert s.train_index.dtype == np.int64 and len(s.val_index) == 20000
    # a partition of all 70,000 images
    assert np.array_equal(np.sort(np.concatenate([s.train_index, s.val_index])), np.arange(70000))
    # normalization, checked against an independent NumPy computation
    ds = data.load_dataset("mnist", root=real_mnist_root)
    i = [0, 123, 49999]
    ref = (ds.images[s.train_index[i]].astype(np.float64) / 255 - 0.1307) / 0.3081
    np.testing.assert_allclose(s.train_x[i, 0].numpy(), ref, rtol=1e-5, atol=1e-5)
    assert np.array_equal(s.val_y.numpy(), ds.labels[s.val_index])
    assert abs(float(s.train_x.mean())) < 0.02 and abs(float(s.train_x.std()) - 1) < 0.02


def test_owner_split_cached(real_mnist_root):
    a = data.owner_split("mnist", seed=0, root=real_mnist_root)
    assert data.owner_split("mnist", seed=0, root=real_mnist_root) is a


def test_split_deterministic_and_seeded(real_mnist_root):
    labels = data.load_dataset("mnist", root=real_mnist_root).labels
    a = data.split_indices("mnist", 0, labels)
    b = data.split_indices("mnist", 0, labels)
    c = data.split_indices("mnist", 1, labels)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(c[0]) == 50000 and len(c[1]) == 20000


def test_class_pools_counts_and_disjoint(mnist_split, real_mnist_root):
    labels = data.load_dataset("mnist", root=real_mnist_root).labels
    pools = data.all_class_pools(mnist_split)
    assert sorted(pools) == list(range(10))
    total_P = total_Q = 0
    for r, pool in pools.items():
        assert pool.r == r
        assert pool.P.shape[1:] == (1, 28, 28) and pool.Q.dtype == torch.float32
        iP, iQ = data.pool_indices(mnist_split, r)
        assert len(iP) == len(pool.P) and len(iQ) == len(pool.Q)
        assert len(pool.P) + len(pool.Q) == MNIST_TRAIN_COUNTS[r] + MNIST_TEST_COUNTS[r]
        assert np.intersect1d(iP, iQ).size == 0
        assert np.all(labels[iP] == r) and np.all(labels[iQ] == r)
        total_P += len(pool.P)
        total_Q += len(pool.Q)
    assert (total_P, total_Q) == (50000, 20000)
    P, Q, r = data.class_pools(mnist_split, 3)
    assert torch.equal(P, mnist_split.train_x[mnist_split.train_y == 3]) and r == 3


@pytest.mark.parametrize("r", [-1, 10, 2.0, "1", True])
def test_class_pools_bad_r(mnist_split, r):
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        data.class_pools(mnist_split, r)


def test_train_per_class(mnist_split, real_mnist_root):
    s = data.owner_split("mnist", seed=0, root=real_mnist_root, train_per_class=50)
    assert s.train_x.shape == (500, 1, 28, 28)
    assert np.bincount(s.train_y.numpy(), minlength=10).tolist() == [50] * 10
    # the dropped images are unused, not moved to validation
    assert np.array_equal(s.val_index, mnist_split.val_index)
    assert np.isin(s.train_index, mnist_split.train_index).all()
    with pytest.raises(ValueError, match="train_per_class"):
        data.owner_split("mnist", seed=0, root=real_mnist_root, train_per_class=0)
    with pytest.raises(ValueError, match="more than"):
        data.owner_split("mnist", seed=0, root=real_mnist_root, train_per_class=10**6)


def test_subset(mnist_split):
    a = data.subset(mnist_split, 20, seed=0, val_per_class=30)
    b = data.subset(mnist_split, 20, seed=0, val_per_class=30)
    c = data.subset(mnist_split, 20, seed=1)
    assert len(a.train_y) == 200 and len(a.val_y) == 300 and len(c.val_y) == 20000
    assert np.array_equal(a.train_index, b.train_index)
    assert not np.array_equal(a.train_index, c.train_index)
    assert np.isin(a.train_index, mnist_split.train_index).all()
    assert np.bincount(a.val_y.numpy()).tolist() == [30] * 10


def test_cifar10_split(real_cifar_root):
    s = data.owner_split("cifar10", seed=0, root=real_cifar_root, train_per_class=500)
    assert s.train_x.shape == (5000, 3, 32, 32) and s.val_x.shape == (15000, 3, 32, 32)
    assert s.input_shape == (3, 32, 32) and s.train_x.dtype == torch.float32
    ds = data.load_dataset("cifar10", root=real_cifar_root)
    assert ds.images.shape == (60000, 32, 32, 3) and ds.labels.dtype == np.int64
    assert ds.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    # channels last in the file -> channels first, normalized per channel
    j = 7
    ref = (ds.images[s.val_index[j]].astype(np.float64) / 255 - data.MEAN["cifar10"]) / data.STD[
        "cifar10"
    ]
    np.testing.assert_allclose(s.val_x[j].numpy(), ref.transpose(2, 0, 1), rtol=1e-5, atol=1e-5)
    # full split: 45,000 / 15,000, every class 6,000 = P + Q
    train, val = data.split_indices("cifar10", 0, ds.labels)
    assert len(train) == 45000 and len(val) == 15000
    per_class = np.bincount(ds.labels[train], minlength=10) + np.bincount(ds.labels[val], minlength=10)
    assert per_class.tolist() == [6000] * 10
    pools = data.all_class_pools(s)
    assert [len(p.P) for p in pools.values()] == [500] * 10
    assert sum(len(p.Q) for p in pools.values()) == 15000


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("r, words", [(3, ["class r", "[0, 3)", "got 3"]), (-1, ["[0, 3)", "got -1"])],
                         ids=["r-too-large", "r-negative"])
def test_class_pools_refuses_a_class_outside_the_split(r, words, fake_split, refused):
    refused(lambda: data.class_pools(fake_split(), r), ValueError, words)


def test_unknown_dataset_names_the_known_ones(refused):
    refused(lambda: data.owner_split("imagenet"), ValueError, ["unknown dataset", "'mnist'"])


def test_data_missing_offline_says_where_to_put_it(tmp_path, monkeypatch, refused):
    import torchvision.datasets as tvd

    class Offline:
        def __init__(self, *a, **kw):
            raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    monkeypatch.setenv("PMI_DATA_DIR", str(tmp_path / "no_such_folder"))
    refused(lambda: data.load_dataset("mnist"), FileNotFoundError,
            ["mnist data file", "no_such_folder", "downloading it through torchvision failed",
             "connect to the internet", "PMI_DATA_DIR"])
    assert not list(tmp_path.rglob("*.tmp"))
