"""Datasets, the owner's split and the class pools (paper Section IV-A; book chapter "PMI end to end").

The paper pools each dataset's official train and test parts and splits the pool again:
MNIST's 70,000 images into 50,000 training / 20,000 validation images, CIFAR-10's 60,000 into
45,000 / 15,000.  The model owner trains on the training part and uses the validation part only
to pick the best epoch.  For a class r, the member pool P holds the training images of class r
and the non-member pool Q the validation images of class r (the paper, Section IV-B).

Files.  Each dataset is one NumPy archive ``{root}/{name}.npz`` with the keys ``x_train``,
``y_train``, ``x_test``, ``y_test`` (uint8, channels last).  ``root`` is the argument, else the
environment variable ``PMI_DATA_DIR``, else ``~/.cache/pmi_tutorial/data``.  A missing file is
downloaded through torchvision and converted; a file is checked against its known sha256 before
use (once per process).

Everything stays in memory as normalized float32 tensors: no per-sample PIL transforms.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from . import _validate as V
from .files import atomic_writer, write_text_atomic

DATASETS = ("mnist", "cifar10")

#: sha256 of the archives this package reads (the published MNIST and CIFAR-10, converted to .npz)
CHECKSUMS = {
    "mnist": "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64",
    "cifar10": "2d272e8812ecd24d1ae79a1796702033f14117b252d024dbbbdc74567d6c45f4",
}

#: the owner's split (paper Section IV-A): number of training images; the rest is validation.
TRAIN_SIZE = {"mnist": 50_000, "cifar10": 45_000}
TOTAL_SIZE = {"mnist": 70_000, "cifar10": 60_000}
NUM_CLASSES = {"mnist": 10, "cifar10": 10}
INPUT_SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
#: the usual per-channel normalization constants
MEAN = {"mnist": (0.1307,), "cifar10": (0.4914, 0.4822, 0.4465)}
STD = {"mnist": (0.3081,), "cifar10": (0.2470, 0.2435, 0.2616)}

DEFAULT_DATA_DIR = Path("~/.cache/pmi_tutorial/data")
_KEYS = ("x_train", "y_train", "x_test", "y_test")


class Dataset(NamedTuple):
    """A whole dataset: the file's train part followed by its test part."""

    name: str
    images: np.ndarray  # uint8, (N, 28, 28) or (N, 32, 32, 3); read-only
    labels: np.ndarray  # int64, (N,); read-only


class Pools(NamedTuple):
    """The member pool P and non-member pool Q of class r (normalized image tensors)."""

    P: torch.Tensor
    Q: torch.Tensor
    r: int


@dataclass(frozen=True, eq=False)
class Split:
    """The owner's split of one dataset.

    ``train_x`` / ``val_x`` are normalized float32 tensors (N, C, H, W); ``train_y`` / ``val_y``
    int64 tensors; ``train_index`` / ``val_index`` int64 indices into the pooled dataset
    (:func:`load_dataset`).  The tensors are shared by every caller of :func:`owner_split`
    (an in-process cache): do not modify them in place.
    """

    name: str
    seed: int
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    train_index: np.ndarray
    val_index: np.ndarray
    num_classes: int
    input_shape: tuple
    train_per_class: int | None = None

    def __repr__(self) -> str:
        return (
            f"Split(name={self.name!r}, seed={self.seed}, train={len(self.train_y)}, "
            f"val={len(self.val_y)}, num_classes={self.num_classes}, "
            f"input_shape={self.input_shape}, train_per_class={self.train_per_class})"
        )


# ----------------------------------------------------------------------------- files


def check_dataset(name) -> str:
    """``name`` must be one of :data:`DATASETS` (``"mnist"``, ``"cifar10"``)."""
    return V.check_choice(name, DATASETS, "dataset")


def data_dir(root=None) -> Path:
    """The folder holding the ``.npz`` files: ``root``, else ``$PMI_DATA_DIR``, else the cache."""
    if root is None:
        root = os.environ.get("PMI_DATA_DIR") or DEFAULT_DATA_DIR
    return Path(root).expanduser()


def dataset_path(name, root=None) -> Path:
    """Where the file of data set ``name`` lives: ``data_dir(root) / f"{name}.npz"``."""
    return data_dir(root) / f"{check_dataset(name)}.npz"


def sha256_of(path, chunk: int = 1 << 20) -> str:
    """The sha256 hex digest of the file at ``path``, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict = {}  # resolved path -> (size, mtime_ns) of a file whose sha256 was checked


def _identity(path: Path):
    st = path.stat()
    return (st.st_size, st.st_mtime_ns)


def verify_file(name, path) -> None:
    """Check the sha256 of ``path`` against the known one (or our own download's sidecar).

    The result is remembered for the process, keyed by (path, size, mtime), so a file is hashed
    once.  Raises ValueError when the file is corrupt.
    """
    path = Path(path)
    key = str(path.resolve())
    ident = _identity(path)
    if _VERIFIED.get(key) == ident:
        return
    digest = sha256_of(path)
    accepted = {CHECKSUMS[name]}
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        text = sidecar.read_text().split()
        if text:
            accepted.add(text[0].strip().lower())
    if digest not in accepted:
        raise ValueError(
            f"the data file {path} is corrupt: its sha256 is {digest}, expected "
            f"{CHECKSUMS[name]} (or the one in {sidecar.name} for a file this package "
            f"downloaded); delete it and run again to re-download it (or copy a good "
            f"{name}.npz there / point PMI_DATA_DIR at a folder holding one)"
        )
    _VERIFIED[key] = ident


def _as_numpy(a, dtype) -> np.ndarray:
    if hasattr(a, "numpy"):
        a = a.numpy()
    return np.asarray(a, dtype=dtype)


def download(name, root=None) -> Path:
    """Download ``name`` through torchvision into ``root`` and convert it to ``{name}.npz``.

    Writes a ``{name}.npz.sha256`` sidecar (our conversion's bytes differ from the published
    archive's) so that :func:`verify_file` accepts the file later.
    """
    import torchvision.datasets as tvd

    name = check_dataset(name)
    folder = data_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    parts = {}
    for part, train in (("train", True), ("test", False)):
        ds = cls(root=str(folder), train=train, download=True)
        parts[f"x_{part}"] = _as_numpy(ds.data, np.uint8)
        parts[f"y_{part}"] = _as_numpy(ds.targets, np.uint8)
    path = folder / f"{name}.npz"
    with atomic_writer(path) as f:
        np.savez_compressed(f, **parts)
    write_text_atomic(path.with_name(path.name + ".sha256"), sha256_of(path) + "\n")
    return path


def _missing_message(name, path: Path, exc: BaseException) -> str:
    return (
        f"the {name} data file {path} is missing and downloading it through torchvision failed "
        f"({type(exc).__name__}: {exc}). Fix: connect to the internet and run again, or put "
        f"{name}.npz (keys x_train, y_train, x_test, y_test) in {path.parent}, or set the "
        f"environment variable PMI_DATA_DIR to a folder that holds it "
        f"(PMI_DATA_DIR is now {os.environ.get('PMI_DATA_DIR', 'unset')!r})"
    )


_LOADED: dict = {}  # resolved path -> (identity, Dataset)


def load_dataset(name, root=None) -> Dataset:
    """The whole dataset ``name``: the file's train part followed by its test part.

    The paper pools both parts before the owner's split (Section IV-A).  Images are uint8,
    labels int64; both arrays are read-only and shared within the process.
    """
    name = check_dataset(name)
    path = dataset_path(name, root)
    if not path.is_file():
        try:
            download(name, root)
        except Exception as exc:  # offline, no permission, ...
            raise FileNotFoundError(_missing_message(name, path, exc)) from exc
    key = str(path.resolve())
    ident = _identity(path)
    hit = _LOADED.get(key)
    if hit is not None and hit[0] == ident:
        return hit[1]
    verify_file(name, path)
    with np.load(path, allow_pickle=False) as f:
        missing = [k for k in _KEYS if k not in f.files]
        if missing:
            raise ValueError(
                f"the data file {path} lacks the key(s) {missing}; it needs {list(_KEYS)}: "
                "delete it and run again to re-download it"
            )
        images = np.concatenate([f["x_train"], f["x_test"]]).astype(np.uint8, copy=False)
        labels = np.concatenate([f["y_train"], f["y_test"]]).astype(np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    ds = Dataset(name, images, labels)
    _LOADED.clear()  # keep at most one raw dataset in memory; splits are cached separately
    _LOADED[key] = (ident, ds)
    return ds


# ----------------------------------------------------------------------------- the split


def normalize_images(images: np.ndarray, name) -> torch.Tensor:
    """uint8 images (N, H, W) or (N, H, W, C) -> normalized float32 tensor (N, C, H, W)."""
    name = check_dataset(name)
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    x = x.to(torch.float32).div_(255.0)
    mean = torch.tensor(MEAN[name], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(STD[name], dtype=torch.float32).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std).contiguous()


def split_indices(name, seed=0, labels=None, train_per_class=None):
    """The owner's split as indices: a seeded permutation of all images, cut at TRAIN_SIZE.

    With ``train_per_class`` only the first that many training images of each class (in the
    permutation's order) are kept; the others are unused (they do *not* join validation).
    Returns sorted int64 ``(train_index, val_index)``.
    """
    name = check_dataset(name)
    perm = np.random.default_rng(seed).permutation(TOTAL_SIZE[name])
    train, val = perm[: TRAIN_SIZE[name]], perm[TRAIN_SIZE[name]:]
    if train_per_class is not None:
        k = _check_per_class(train_per_class, "train_per_class")
        if labels is None:
            raise ValueError("split_indices needs labels when train_per_class is given")
        keep = []
        for r in range(NUM_CLASSES[name]):
            of_r = train[labels[train] == r]
            if len(of_r) < k:
                raise ValueError(
                    f"train_per_class={k} is more than the {len(of_r)} training images of class "
                    f"{r} in the {name} split; use train_per_class <= {len(of_r)} or None"
                )
            keep.append(of_r[:k])
        train = np.concatenate(keep)
    return np.sort(train).astype(np.int64), np.sort(val).astype(np.int64)


def _check_per_class(k, what) -> int:
    return V.check_scalar(k, what, int, min_val=1, hint="a number of images per class, or None")


_SPLITS: dict = {}
_MAX_SPLITS = 4


def owner_split(name, seed=0, root=None, train_per_class=None) -> Split:
    """The paper's owner split of ``name`` (Section IV-A), seeded.

    MNIST: 70,000 -> 50,000 training / 20,000 validation; CIFAR-10: 60,000 -> 45,000 / 15,000,
    a seeded permutation of all images.  ``train_per_class`` keeps only that many training
    images per class (the quick profile).  Cached in-process: repeated calls are free.
    """
    name = check_dataset(name)
    if train_per_class is not None:
        train_per_class = _check_per_class(train_per_class, "train_per_class")
    seed = int(seed)
    path = dataset_path(name, root)
    key = (name, seed, str(path.expanduser().resolve()), train_per_class)
    ident = _identity(path) if path.is_file() else None
    hit = _SPLITS.get(key)
    if hit is not None and ident is not None and hit[0] == ident:
        return hit[1]
    ds = load_dataset(name, root)
    train_index, val_index = split_indices(name, seed, ds.labels, train_per_class)
    split = Split(
        name=name,
        seed=seed,
        train_x=normalize_images(ds.images[train_index], name),
        train_y=torch.from_numpy(ds.labels[train_index].copy()),
        val_x=normalize_images(ds.images[val_index], name),
        val_y=torch.from_numpy(ds.labels[val_index].copy()),
        train_index=train_index,
        val_index=val_index,
        num_classes=NUM_CLASSES[name],
        input_shape=INPUT_SHAPE[name],
        train_per_class=train_per_class,
    )
    if len(_SPLITS) >= _MAX_SPLITS:
        _SPLITS.pop(next(iter(_SPLITS)))
    _SPLITS[key] = (_identity(path), split)
    return split


def clear_cache() -> None:
    """Forget the cached datasets, splits and checksum results (frees memory)."""
    _SPLITS.clear()
    _LOADED.clear()
    _VERIFIED.clear()


def subset(split: Split, n_per_class, seed=0, val_per_class=None) -> Split:
    """A smaller split: ``n_per_class`` random training images per class (and, optionally,
    ``val_per_class`` validation images per class), seeded.  For tests and exercises."""

    def pick(y: torch.Tensor, k, rng):
        yn = y.numpy()
        out = []
        for r in range(split.num_classes):
            of_r = np.flatnonzero(yn == r)
            if len(of_r) < k:
                raise ValueError(
                    f"asked for {k} images of class {r} but the split has {len(of_r)}; "
                    f"use at most {len(of_r)}"
                )
            out.append(rng.choice(of_r, size=k, replace=False))
        return np.sort(np.concatenate(out))

    rng = np.random.default_rng(seed)
    t = pick(split.train_y, _check_per_class(n_per_class, "n_per_class"), rng)
    changes = dict(
        train_x=split.train_x[t], train_y=split.train_y[t], train_index=split.train_index[t],
        train_per_class=int(n_per_class),
    )
    if val_per_class is not None:
        v = pick(split.val_y, _check_per_class(val_per_class, "val_per_class"), rng)
        changes.update(val_x=split.val_x[v], val_y=split.val_y[v], val_index=split.val_index[v])
    return replace(split, **changes)


# ----------------------------------------------------------------------------- pools


def _check_r(split: Split, r) -> int:
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < split.num_classes:
        raise ValueError(
            f"class r must be an integer in [0, {split.num_classes}), got {r!r}"
        )
    return int(r)


def class_pools(split: Split, r) -> Pools:
    """P = the training images of class r (members), Q = its validation images (non-members)."""
    r = _check_r(split, r)
    return Pools(split.train_x[split.train_y == r], split.val_x[split.val_y == r], r)


def pool_indices(split: Split, r):
    """Indices into the pooled dataset of P and Q of class r: ``(index_P, index_Q)``."""
    r = _check_r(split, r)
    return (
        split.train_index[split.train_y.numpy() == r],
        split.val_index[split.val_y.numpy() == r],
    )


def all_class_pools(split: Split) -> dict:
    """``{r: class_pools(split, r)}`` for every class r."""
    return {r: class_pools(split, r) for r in range(split.num_classes)}


def as_index(pos) -> "torch.Tensor":
    """Positions (a list or NumPy array) as a torch int64 index into a data tensor."""
    import torch

    return torch.as_tensor(np.asarray(pos, dtype=np.int64))
