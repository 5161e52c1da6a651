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
