"""One runner for every experiment: a plan of independent tasks, recorded as they finish.

An experiment (:class:`Experiment`) is a validated config, a plan of *stages* run in order, each
a list of independent :class:`Task` objects (train a model, measure a suspect), and a function
that writes the result files from the records.  :func:`run` executes the plan through an
*engine*:

* in process (:class:`InProcess`, the default: no server, so the book and Colab need nothing);
* ``--workers N`` on this machine (:class:`DaskEngine` over a ``dask.distributed.LocalCluster``
  of N single-threaded worker processes, or :class:`ProcessPool`, the standard library's
  process pool, where Dask is not installed);
* ``--scheduler tcp://HOST:8786`` (or ``DASK_SCHEDULER_ADDRESS``): a running Dask cluster, which
  is how a study scales to many machines or GPUs.

Every finished task's record is written at once, atomically, to the per-task cache
(``cache_folder() / "runs" / NAME / KEY.json``), and the result files are rewritten from the
records at most every ``write_every`` seconds and at the end.  A killed run therefore loses
nothing finished, and the next run resumes: a task whose record is cached is not run again.
A task key is derived from the settings that change the task's result, so a changed setting is
a new task, never a stale record.

A run resumed across commits holds records made by several runs.  Beside each record the runner
writes the commit and start date of the run that made it (``KEY.provenance``, JSON), and the
provenance handed to ``write`` counts the records of the last stage by the commit that made
them (``records_made_at``; records cached before these notes existed are counted as unknown),
so that a result file says which code made its numbers, not only which run last touched it.

Dask is an optional extra (``pip install "pmi-tutorial[distributed]"``).
"""

from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .. import _validate as V
from .. import files as F

#: the environment variable Dask itself reads for a scheduler's address
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


@dataclass(frozen=True)
class Task:
    """One independent unit of work: ``fn(*args)`` returns its record (a JSON-able dict).

    ``fn`` must be a module-level function (it is pickled to worker processes); ``key`` is
    unique within the experiment and derived from the settings that change the result.
    """

    key: str
    fn: Callable
    args: tuple = ()

    def __call__(self) -> dict:
        return self.fn(*self.args)


@dataclass
class Experiment:
    """A named plan: ``stages`` run in order, the tasks of one stage in any order.

    ``write(records, provenance, complete)`` writes the result files from the records of the
    *last* stage, in plan order (``None``: the runner writes nothing, the caller uses the
    records).  ``describe(record)`` is the progress line of one finished task.
    """

    name: str
    stages: Sequence[Sequence[Task]]
    write: Callable[[list, dict, bool], None] | None = None
    describe: Callable[[dict], str] | None = None
    cache_dir: object = None
    #: the per-task cache; default ``cache_folder(cache_dir) / "runs" / name``
    folder: object = None

    def _check_keys(self):
        keys = [t.key for stage in self.stages for t in stage]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"experiment {self.name!r}: task keys {dup[:3]} appear more than once; "
                             "derive each key from the settings that make the task unique")

    def __post_init__(self):
        self._check_keys()
        if self.folder is None:
            from ..training import cache_folder

            self.folder = cache_folder(self.cache_dir) / "runs" / self.name
        self.folder = Path(self.folder)


# --------------------------------------------------------------------------- engines


class Engine:
    """What every engine shares: ``with runner.engine(...) as eng:`` closes it (its workers,
    its cluster) on the way out."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass


class InProcess(Engine):
    """Run the tasks one after another in this process (the default)."""

    name = "in process"

    def run(self, tasks: Sequence[Task]) -> Iterable[tuple[Task, dict | None, BaseException | None]]:
        for task in tasks:
            try:
                yield task, task(), None
            except Exception as exc:  # recorded and reported; the other tasks go on
                yield task, None, exc


def _call(fn, args):
    return fn(*args)


class ProcessPool(Engine):
    """The standard library's process pool (``spawn``): ``workers`` processes on this machine."""

    def __init__(self, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = V.check_positive_int(workers, "workers")
        self.name = f"process pool, {workers} workers"
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, tasks):
        from concurrent.futures import as_completed

        futures = {self._pool.submit(_call, t.fn, t.args): t for t in tasks}
        for fut in as_completed(futures):
            exc = fut.exception()
            yield futures[fut], None if exc else fut.result(), exc

    def close(self):
        self._pool.shutdown()


class DaskEngine(Engine):
    """Tasks as futures on a Dask cluster: a running scheduler's ``address``, or a
    ``LocalCluster`` of ``workers`` single-threaded processes started (and closed) here.

    A task whose worker dies is re-run on another worker by Dask (up to ``retries`` more times
    for tasks that raise)."""

    def __init__(self, address: str | None = None, workers: int | None = None, retries: int = 1):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ImportError('Dask is not installed: pip install "pmi-tutorial[distributed]" '
                              "(or run without --scheduler / --workers)") from None
        self.retries = retries
        self._cluster = None
        if address:
            self.name = f"dask scheduler {address}"
            self.client = Client(address, timeout="20s")
        else:
            workers = V.check_positive_int(workers, "workers")
            self.name = f"dask LocalCluster, {workers} workers"
            self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                         dashboard_address=":0")
            self.client = Client(self._cluster)

    def run(self, tasks):
        from distributed import as_completed

        futures = {}
        for t in tasks:
            fut = self.client.submit(t.fn, *t.args, key=f"pmi-{t.key}-{os.getpid()}-{time.time_ns()}",
                                     pure=False, retries=self.retries)
            futures[fut.key] = (t, fut)
        for fut in as_completed([f for _, f in futures.values()]):
            task = futures[fut.key][0]
            if fut.status == "error":
                yield task, None, fut.exception()
            else:
                yield task, fut.result(), None
            fut.release()

    def close(self):
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def engine(workers: int | None = None, scheduler: str | None = None):
    """The engine for ``--workers`` / ``--scheduler`` (``DASK_SCHEDULER_ADDRESS`` when neither).

    No workers and no scheduler: :class:`InProcess`.  ``workers`` alone: a Dask
    ``LocalCluster`` where Dask is installed, else :class:`ProcessPool`."""
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler and workers:
        raise ValueError("give --workers (a cluster on this machine) or --scheduler (a running "
                         "Dask cluster), not both")
    if scheduler:
        if not str(scheduler).startswith(("tcp://", "tls://", "inproc://", "ucx://", "ws://", "wss://")):
            raise ValueError(f"--scheduler {scheduler!r}: give the address a dask-scheduler prints, "
                             "e.g. tcp://127.0.0.1:8786")
        return DaskEngine(address=scheduler)
    if workers is None or workers == 1:
        if workers is not None:
            V.check_positive_int(workers, "--workers")
        return InProcess()
    V.check_positive_int(workers, "--workers")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        return ProcessPool(workers)
    return DaskEngine(workers=workers)


# --------------------------------------------------------------------------- the run


PROVENANCE_SUFFIX = ".provenance"  # JSON, but not matched by a glob of the records (*.json)
UNKNOWN_RUN = "unknown (cached before per-task provenance was recorded)"
FROM_RESULT_FILE = "read from a result file (see that file's provenance)"


def _made_by(prov: dict) -> dict:
    return {"git_commit": prov.get("git_commit"), "started": prov.get("started")}


def records_made_at(experiment: Experiment, keys, known=()) -> dict:
    """``{git commit: number of records}`` over ``keys``, from the per-task provenance notes
    (``known``: keys whose records came from a result file, not from this cache)."""
    out: dict = {}
    for key in keys:
        if key in known and not (experiment.folder / f"{key}.json").exists():
            commit = FROM_RESULT_FILE
        else:
            try:
                note = json.loads((experiment.folder / f"{key}{PROVENANCE_SUFFIX}").read_text())
                commit = note.get("git_commit") or "unknown commit"
            except (FileNotFoundError, json.JSONDecodeError):
                commit = UNKNOWN_RUN
        out[commit] = out.get(commit, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def cached_records(experiment: Experiment) -> dict:
    """``{key: record}`` of the experiment's tasks already in the per-task cache."""
    out = {}
    for stage in experiment.stages:
        for t in stage:
            path = experiment.folder / f"{t.key}.json"
            try:
                out[t.key] = json.loads(path.read_text())
            except (FileNotFoundError, json.JSONDecodeError):  # not done (or not readable): run it
                pass
    return out


class TasksFailed(RuntimeError):
    """Some tasks raised; the finished ones are recorded, a new run retries the rest."""


def run(experiment: Experiment, engine=None, command: str | None = None, progress: bool = True,
        write_every: float = 30.0, provenance: dict | None = None, known: dict | None = None,
        log=None) -> list:
    """Run every task not yet cached, stage by stage; returns the last stage's records in plan
    order.  ``known``: ``{key: record}`` of tasks done elsewhere (e.g. read from a result file
    on a fresh machine), not run again.  Progress lines go to ``log``, each after the result
    files hold what it reports.  See the module docstring for resume and atomicity."""
    eng = engine if engine is not None else InProcess()
    log = log or functools.partial(print, flush=True)
    prov = dict(provenance if provenance is not None else F.provenance(command))
    prov["engine"] = eng.name
    t_wall, t_cpu = time.perf_counter(), time.process_time()
    done = {**cached_records(experiment), **(known or {})}
    last = experiment.stages[-1] if experiment.stages else []
    last_keys = {t.key for t in last}
    last_write = time.perf_counter()
    n_all = sum(len(s) for s in experiment.stages)
    n_done = sum(t.key in done for s in experiment.stages for t in s)
    if progress and n_done:
        log(f"{experiment.name}: {n_done} of {n_all} tasks already done (cache {experiment.folder})")
    failed = []

    def flush(complete):
        if experiment.write is None:
            return
        timing = {"run_wall_seconds": round(time.perf_counter() - t_wall, 1),
                  "run_cpu_seconds": round(time.process_time() - t_cpu, 1)}
        keys = [t.key for t in last if t.key in done]
        made = records_made_at(experiment, keys, known=known or {})
        experiment.write([done[k] for k in keys], {**prov, **timing, "records_made_at": made},
                         complete)

    try:
        for stage in experiment.stages:
            todo = [t for t in stage if t.key not in done]
            if not todo:
                continue
            for task, record, exc in eng.run(todo):
                n_done += 1
                if exc is not None:
                    failed.append((task.key, exc))
                    if progress:
                        log(f"[{n_done}/{n_all}] {task.key}: FAILED: {exc}")
                    continue
                if not isinstance(record, dict):
                    raise TypeError(f"task {task.key} returned {type(record).__name__}, not a dict")
                record = json.loads(json.dumps(record))  # as the cache reads it back
                # who made it first, then the record: a record never lacks its note
                F.write_json_atomic(experiment.folder / f"{task.key}{PROVENANCE_SUFFIX}",
                                    _made_by(prov))
                F.write_json_atomic(experiment.folder / f"{task.key}.json", record)
                done[task.key] = record
                if task.key in last_keys and time.perf_counter() - last_write >= write_every:
                    flush(False)
                    last_write = time.perf_counter()
                if progress:
                    line = experiment.describe(record) if experiment.describe else task.key
                    log(f"[{n_done}/{n_all}] {line}")
            if failed:
                break
    finally:
        if engine is None:
            eng.close()
    complete = not failed and all(t.key in done for t in last)
    flush(complete)
    if failed:
        key, exc = failed[0]
        raise TasksFailed(f"{len(failed)} task(s) of {experiment.name} failed, first {key}: "
                          f"{type(exc).__name__}: {exc}; the finished tasks are kept, run the same "
                          "command again to retry the rest") from exc
    return [done[t.key] for t in last]
