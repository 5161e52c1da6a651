"""Dataset Inference's blind walk on a convolutional suspect: the channels-last copy the walk
queries (``baselines.dataset_inference._walk_model``) against the model as given.

One ratio, measured side by side in one run (time.perf_counter, median of ``--repeats``
alternating runs): the walk of ``--images`` MNIST-shaped images (the paper's 10 directions per
norm, 50 steps, the three norms) on an untrained LeNet-5 through a plain callable (the default
memory layout) over the same walk through the module (channels-last copy).  The distances must
be identical (asserted).  The weights do not change what a forward pass costs; an untrained
model rarely changes its label along a walk, so every step is queried: the worst case, which is
also what a well-generalising owner model costs (the paper-scale LeNet-5s need ~1,450 queries
per image of the 1,500 a walk can ask).

    python benchmarks/di_walk.py              # a few minutes on one CPU thread
    python benchmarks/di_walk.py --quick      # seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pmi_tutorial.baselines import dataset_inference as di
from pmi_tutorial.models import build_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256, help="one walk batch (the default batch_size)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="5 steps, 1 repeat")
    args = ap.parse_args()
    images, steps, repeats = (args.images, 5, 1) if args.quick else (args.images, 50, args.repeats)
    torch.set_num_threads(1)
    net = build_model("lenet5", num_classes=10, seed=0).eval()
    box, unit = di.pixel_space("mnist")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(images, 1, 28, 28, generator=g) - 0.1307) / 0.3081
    with torch.no_grad():
        y = net(x).argmax(1)

    def plain(xb):
        with torch.no_grad():
            return net(xb)

    times = {"module (channels-last copy)": [], "plain callable (default layout)": []}
    walks = {}
    for _ in range(repeats):
        for name, predict in (("plain callable (default layout)", plain),
                              ("module (channels-last copy)", net)):
            t0 = time.perf_counter()
            walks[name] = di.blind_walk(predict, x, y, directions=10, steps=steps, box=box,
                                        unit=unit, seed=0)
            times[name].append(time.perf_counter() - t0)
    a, b = walks.values()
    np.testing.assert_array_equal(a.distances, b.distances)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"blind walk, LeNet-5, {images} images x 3 norms x 10 directions x {steps} steps, "
          f"{a.queries} queries, one torch thread, median of {repeats}")
    for k, v in med.items():
        print(f"  {k:32s} {v:7.2f} s")
    print(f"  ratio default / channels-last: {med['plain callable (default layout)'] / med['module (channels-last copy)']:.2f}x "
          "(same distances)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
