"""scripts/wheel_test.py: which chapters read committed results (those run from a pip install)."""

from scripts import wheel_test as wt


def test_chapters_reading_results(tmp_path):
    (tmp_path / "a.md").write_text("t = experiments.committed_table('table1', 'paper')\n")
    (tmp_path / "b.md").write_text("records, cfg, files = study.load_results()\n")
    (tmp_path / "c.md").write_text("no results here; load_results is only mentioned\n")
    assert wt.chapters_reading_results(tmp_path) == ["a", "b"]


def test_the_repository_chapters_that_read_results():
    assert {"reproduce_tables", "robustness", "beyond_the_paper"} <= set(wt.chapters_reading_results())


def test_clean_env_drops_pythonpath(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = wt.clean_env(PMI_PROFILE="quick")
    assert "PYTHONPATH" not in env and env["PMI_PROFILE"] == "quick"


def test_nbval_runs_each_notebook_on_one_worker_when_jobs_exceed_one(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(wt.subprocess, "call", lambda cmd, **kw: commands.append(cmd) or 0)
    for k, jobs in enumerate((1, 2)):
        (tmp_path / str(k) / "work").mkdir(parents=True)
        assert wt.run_nbval(tmp_path / "python", tmp_path / str(k) / "work", {}, jobs) == []
    one, two = commands
    assert "-n" not in one and two[two.index("-n"):two.index("-n") + 4] == ["-n", "2", "--dist", "loadfile"]
    assert [a for a in one if a.endswith(".ipynb")] == [a for a in two if a.endswith(".ipynb")] != []


def test_jobs_must_be_positive(capsys):
    import pytest

    with pytest.raises(SystemExit):
        wt.main(["--nbval", "--jobs", "0"])
    assert "--jobs must be a positive integer, got 0" in capsys.readouterr().err
