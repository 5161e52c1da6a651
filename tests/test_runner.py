"""The experiment runner: the same records in process, on a process pool and on a real Dask
cluster; a killed worker's task is re-run; a killed run resumes without redoing finished tasks."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from pmi_tutorial.experiments import runner
from pmi_tutorial.experiments.runner import Experiment, Task

distributed = pytest.importorskip("distributed")


def draw(seed, n, log_dir=None):
    """A toy task: a seeded draw (the same numbers in any process), its call logged."""
    if log_dir is not None:
        Path(log_dir, f"{seed}-{os.getpid()}-{np.random.randint(1 << 30)}").touch()
    x = np.random.default_rng(seed).normal(size=n)
    return {"seed": seed, "mean": float(x.mean()), "max": float(x.max())}



def flaky(seed, marker):
    """Raises the first time (no marker yet), succeeds afterwards."""
    if not Path(marker).exists():
        Path(marker).touch()
        raise RuntimeError("first attempt fails")
    return draw(seed, 5)


def dies_once(seed, marker):
    """The first of these tasks to run kills its worker process (as a crash or an OOM kill
    would); every other attempt computes its record."""
    try:
        Path(marker).touch(exist_ok=False)
    except FileExistsError:
        return draw(seed, 5)
    os._exit(1)


@pytest.fixture(autouse=True)
def by_value():
    """Worker processes cannot import this test module: ship its functions by value."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def toy(tmp_path, name="toy", fn=draw, n_tasks=6, write=None, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    marker = (lambda s: tmp_path / "died") if fn is dies_once else (lambda s: tmp_path / f"marker{s}")
    tasks = [Task(f"draw{s}", fn, (s, 10, kw.get("log_dir"))) if fn is draw else
             Task(f"draw{s}", fn, (s, str(marker(s)))) for s in range(n_tasks)]
    return Experiment(name, [tasks], write=write, cache_dir=tmp_path / "cache")


def expected(n_tasks=6):
    return [draw(s, 10) for s in range(n_tasks)]


# --------------------------------------------------------------------------- engines agree


def test_in_process_run_gives_the_plan_order_records(tmp_path):
    assert runner.run(toy(tmp_path), progress=False) == expected()


def test_process_pool_gives_the_same_records(tmp_path):
    with runner.ProcessPool(2) as eng:
        assert runner.run(toy(tmp_path), engine=eng, progress=False) == expected()
    with pytest.raises(RuntimeError):  # leaving the with-block shut the pool down
        list(eng.run(toy(tmp_path / "after").stages[0]))


def test_local_dask_cluster_gives_the_same_records_and_survives_a_killed_worker(tmp_path,
                                                                              dask_engine):
    eng = dask_engine
    assert isinstance(eng, runner.DaskEngine) and "2 workers" in eng.name
    assert runner.run(toy(tmp_path / "a"), engine=eng, progress=False) == expected()
    # a task that kills its worker process is re-run on another worker: same records
    records = runner.run(toy(tmp_path / "b", fn=dies_once, n_tasks=4), engine=eng, progress=False)
    assert (tmp_path / "b" / "died").exists()  # a worker did die
    assert records == [draw(s, 5) for s in range(4)]


def test_a_running_scheduler_by_address(tmp_path, dask_engine):
    address = dask_engine.client.scheduler.address  # a cluster this client did not start
    eng = runner.engine(scheduler=address)
    try:
        assert address in eng.name and eng._cluster is None
        assert runner.run(toy(tmp_path), engine=eng, progress=False) == expected()
    finally:
        eng.close()
    assert dask_engine.client.status == "running"  # closing a client leaves the cluster up


# --------------------------------------------------------------------------- resume


def test_finished_tasks_are_kept_and_not_run_again(tmp_path):
    # first run: every task fails once (flaky), so nothing but failures; the second finishes
    exp = toy(tmp_path, fn=flaky, n_tasks=3)
    with pytest.raises(runner.TasksFailed, match="3 task.*run the same command again"):
        runner.run(exp, progress=False)
    assert runner.cached_records(exp) == {}
    assert runner.run(exp, progress=False) == [draw(s, 5) for s in range(3)]
    # third run: all cached, the task function is never called
    logs = tmp_path / "logs"
    logs.mkdir()
    again = toy(tmp_path, n_tasks=3, log_dir=str(logs))
    again = Experiment("toy", [[Task(t.key, draw, (s, 5, str(logs))) for s, t in
                               enumerate(again.stages[0])]], cache_dir=tmp_path / "cache")
    assert runner.run(again, progress=False) == [draw(s, 5) for s in range(3)]
    assert list(logs.iterdir()) == []


def test_partial_results_are_written_as_tasks_finish(tmp_path):
    seen = []

    def write(records, prov, complete):
        seen.append((len(records), complete, prov["engine"]))

    runner.run(toy(tmp_path, n_tasks=3, write=write), progress=False, write_every=0.0)
    assert seen == [(1, False, "in process"), (2, False, "in process"), (3, False, "in process"),
                    (3, True, "in process")]
    # what was cached is what the records say, as JSON
    for s in range(3):
        cached = json.loads((tmp_path / "cache" / "runs" / "toy" / f"draw{s}.json").read_text())
        assert cached == draw(s, 10)


def test_each_record_says_which_run_made_it(tmp_path):
    """A run resumed across commits: the result's provenance counts the records per commit of
    the run that made them, old caches without notes and records from a result file apart."""
    seen = []

    def write(records, prov, complete):
        seen.append(prov["records_made_at"])

    exp = toy(tmp_path, n_tasks=4, write=write)
    first = {"git_commit": "aaaa", "started": "then"}
    runner.run(Experiment("toy", [exp.stages[0][:2]], write=write, cache_dir=tmp_path / "cache"),
               progress=False, provenance=first)
    assert seen[-1] == {"aaaa": 2}
    assert json.loads((exp.folder / "draw0.provenance").read_text()) == first
    (exp.folder / "draw1.provenance").unlink()  # a record cached before notes existed
    known = {"draw3": draw(3, 10)}  # a record read from a result file
    runner.run(exp, progress=False, provenance={"git_commit": "bbbb", "started": "now"},
               known=known)
    assert seen[-1] == {"aaaa": 1, "bbbb": 1, runner.UNKNOWN_RUN: 1, runner.FROM_RESULT_FILE: 1}
    assert runner.records_made_at(exp, ["draw0", "draw2"]) == {"aaaa": 1, "bbbb": 1}


def test_a_corrupt_cache_entry_is_run_again(tmp_path):
    exp = toy(tmp_path, n_tasks=2)
    runner.run(exp, progress=False)
    (exp.folder / "draw1.json").write_text("{not json")
    assert runner.run(exp, progress=False) == expected(2)


# --------------------------------------------------------------------------- bad input


def test_bad_plans_and_engines_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="appear more than once"):
        Experiment("x", [[Task("a", draw, (0, 1)), Task("a", draw, (1, 1))]])
    with pytest.raises(ValueError, match="not both"):
        runner.engine(workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="tcp://"):
        runner.engine(scheduler="localhost:8786")
    with pytest.raises(ValueError, match="workers"):
        runner.engine(workers=0)
    assert isinstance(runner.engine(), runner.InProcess)


def test_scheduler_from_the_environment(monkeypatch):
    monkeypatch.setenv(runner.SCHEDULER_ENV, "not-an-address")
    with pytest.raises(ValueError, match="tcp://"):
        runner.engine()
