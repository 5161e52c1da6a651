"""Training throughput: our in-memory batches against the usual torchvision DataLoader loop.

Both loops run the same training step (pmi_tutorial.training.train_step: forward, cross-entropy,
backward, Adam) on the same MNIST training images of the owner's split, batch size 64, on the CPU.

* in-memory (ours): normalized float32 tensors built once; each batch is one tensor gather
  along a seeded permutation (pmi_tutorial.training.train_one_epoch).
* DataLoader (the usual way): a torchvision MNIST dataset built from the same npz arrays (no
  download) with transforms.Compose([ToTensor(), Normalize((0.1307,), (0.3081,))]) applied to
  every sample as a PIL image, shuffled by torch.utils.data.DataLoader.

Each measurement times a fixed number of steps (after a 5-step warm-up; by default the rest of
an epoch) with time.perf_counter, scales it to a full epoch (50,000 images, 782 steps) and takes
the median over repeats.  Prints
the ratio DataLoader time / in-memory time per model (target: >= 5x for the MLP).

    PMI_DATA_DIR=/path/to/data python benchmarks/train_throughput.py          # ~1-2 minutes
    PMI_DATA_DIR=/path/to/data python benchmarks/train_throughput.py --quick  # < 60 s (CI)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch
import torchvision.datasets as tvd
import torchvision.transforms as T
from torch.utils.data import DataLoader

from pmi_tutorial import data
from pmi_tutorial.models import build_model
from pmi_tutorial.training import epoch_generator, train_one_epoch, train_step

BATCH = 64


class NpzMNIST(tvd.MNIST):
    """torchvision's MNIST dataset class over arrays already in memory (no files, no download).

    ``__getitem__`` is torchvision's own: a PIL image per sample, then ``transform``."""

    def __init__(self, images, labels, transform=None):
        tvd.VisionDataset.__init__(self, root="", transform=transform)
        self.train = True
        self.data = torch.from_numpy(images.copy())
        self.targets = torch.from_numpy(labels.copy())


def time_in_memory(model_name, split, steps, warmup):
    model = build_model(model_name, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dev = torch.device("cpu")
    train_one_epoch(model, opt, split.train_x, split.train_y, BATCH, epoch_generator(0, 0), dev,
                    max_steps=warmup)
    t0 = time.perf_counter()
    train_one_epoch(model, opt, split.train_x, split.train_y, BATCH, epoch_generator(0, 1), dev,
                    max_steps=steps)
    return time.perf_counter() - t0


def time_dataloader(model_name, dataset, steps, warmup, workers):
    model = build_model(model_name, seed=0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dev = torch.device("cpu")
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    for _ in range(warmup):
        xb, yb = next(it)
        train_step(model, opt, xb, yb, dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        xb, yb = next(it)
        train_step(model, opt, xb, yb, dev)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced size for CI (< 60 s)")
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per measurement (default: a whole epoch; 40 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="measurements per pipeline (median, default 3)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader num_workers (default 0)")
    ap.add_argument("--models", default="mlp,lenet5")
    args = ap.parse_args(argv)
    repeats = args.repeats or 3
    warmup = 5

    t_start = time.perf_counter()
    split = data.owner_split("mnist", seed=0)
    ds = data.load_dataset("mnist")
    tv = NpzMNIST(ds.images[split.train_index], ds.labels[split.train_index],
                  transform=T.Compose([T.ToTensor(), T.Normalize((0.1307,), (0.3081,))]))
    # same images, same normalization: the two pipelines feed identical tensors
    x0, _ = tv[0]
    assert torch.allclose(x0, split.train_x[0], atol=1e-5), "pipelines disagree on the inputs"

    per_epoch = math.ceil(len(split.train_y) / BATCH)
    steps = min(args.steps or (40 if args.quick else per_epoch - warmup), per_epoch - warmup)
    print(f"MNIST owner split: {len(split.train_y)} training images, batch {BATCH} "
          f"({per_epoch} steps an epoch); {steps} timed steps, median of {repeats}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"DataLoader num_workers={args.workers}")
    print(f"{'model':8} {'in-memory s/epoch':>18} {'DataLoader s/epoch':>19} {'ratio':>7}")
    ratios = {}
    for name in args.models.split(","):
        mem, dl = [], []
        for _ in range(repeats):  # interleaved, so a busy neighbour hurts both alike
            mem.append(time_in_memory(name, split, steps, warmup))
            dl.append(time_dataloader(name, tv, steps, warmup, args.workers))
        m, d = statistics.median(mem) * per_epoch / steps, statistics.median(dl) * per_epoch / steps
        ratios[name] = d / m
        print(f"{name:8} {m:18.2f} {d:19.2f} {d / m:6.1f}x")
    print(f"total benchmark time {time.perf_counter() - t_start:.0f} s")
    if "mlp" in ratios:
        ok = ratios["mlp"] >= 5
        print(f"target: in-memory >= 5x faster than the DataLoader for the MLP: "
              f"{'met' if ok else 'NOT met'} ({ratios['mlp']:.1f}x)")
    return ratios


if __name__ == "__main__":
    main()
    sys.exit(0)
