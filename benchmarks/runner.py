"""Experiment runner throughput: the false-positive study in one process against two Dask workers.

Both sides run the same study (``pmi_tutorial.experiments.study``: train the innocent and owner
models, then measure every suspect) from an empty model cache of their own, pair by pair
(in process, then a 2-worker ``LocalCluster``, ``repeats`` times), and must give the same
records (asserted, timing fields aside).  Prints the tasks per second of each and the ratio
2 workers / 1 process; on an idle 2-core machine the study's tasks are single-threaded and
independent, so the ratio approaches 2 minus the cluster's start-up (a few seconds, included).

    PMI_DATA_DIR=/path/to/data python benchmarks/runner.py          # the quick study, minutes
    PMI_DATA_DIR=/path/to/data python benchmarks/runner.py --quick  # a smaller study, ~1 minute
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pmi_tutorial.experiments import runner, study

TIMING = ("cpu_seconds", "train_cpu_seconds")


def records(files):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in files["tests"]["models"]]


def one_run(cfg, workers: int, folder: Path):
    t0 = time.perf_counter()
    eng = runner.engine(workers=workers if workers > 1 else None)
    try:
        files = study.run_study(cfg, cache_dir=folder, progress=False, engine=eng)
    finally:
        eng.close()
    return time.perf_counter() - t0, files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller study (2 epochs, B = 50)")
    ap.add_argument("--repeats", type=int, default=2, help="pairs of runs (default 2)")
    args = ap.parse_args(argv)
    cfg = study.CONFIGS["quick"]
    if args.quick:
        cfg = replace(cfg, epochs=2, B=50, test_trials=10, trials=20)
    n_tasks = sum(len(s) for s in study.run.experiment(cfg).stages)
    print(f"study {cfg.name}{' (--quick: 2 epochs, B = 50)' if args.quick else ''}: "
          f"{n_tasks} tasks (train, then measure), fresh cache each run")
    times = {1: [], 2: []}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            t1, f1 = one_run(cfg, 1, Path(tmp) / f"one{i}")
            t2, f2 = one_run(cfg, 2, Path(tmp) / f"two{i}")
            assert records(f1) == records(f2), "the two engines gave different records"
            times[1].append(t1)
            times[2].append(t2)
            ratios.append(t1 / t2)
            print(f"pair {i + 1}: in process {t1:.1f} s, 2 workers {t2:.1f} s, ratio {t1 / t2:.2f}")
    for w, label in ((1, "in process"), (2, "2 Dask workers")):
        med = statistics.median(times[w])
        print(f"{label:15s} median {med:6.1f} s  {n_tasks / med:.3f} tasks/s")
    print(f"throughput ratio 2 workers / 1 process: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
