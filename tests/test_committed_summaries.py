"""Every committed summary is what today's code computes from the committed records: a change of
the summary code that would change a number the book quotes fails here."""

import json

import pytest

from pmi_tutorial import files as F
from pmi_tutorial.experiments import dataset_inference as D
from pmi_tutorial.experiments import paper_study as PS
from pmi_tutorial.experiments import study
from pmi_tutorial.experiments.paper_summary import summarize as paper_summarize


def as_json(obj):
    return json.loads(json.dumps(obj))


def same(new, committed, where=""):
    """Equal structure and values, floats to 1e-9 relative (library versions move the last bits)."""
    kind = [dict if isinstance(x, dict) else type(x) for x in (new, committed)]  # ByKind: a dict
    assert kind[0] is kind[1], f"{where}: {kind[0].__name__} vs {kind[1].__name__}"
    if isinstance(new, dict):
        assert new.keys() == committed.keys(), f"{where}: keys {sorted(set(new) ^ set(committed))}"
        for k in new:
            same(new[k], committed[k], f"{where}/{k}")
    elif isinstance(new, list):
        assert len(new) == len(committed), where
        for i, (a, b) in enumerate(zip(new, committed)):
            same(a, b, f"{where}[{i}]")
    elif isinstance(new, float):
        assert new == pytest.approx(committed, rel=1e-9, abs=1e-12, nan_ok=True), where
    else:
        assert new == committed, where


def test_same_catches_a_changed_number_and_a_missing_key():
    same({"a": [1.0, {"b": 2}]}, {"a": [1.0 + 1e-13, {"b": 2}]})
    with pytest.raises(AssertionError, match="/a"):
        same({"a": [1.0]}, {"a": [1.001]})
    with pytest.raises(AssertionError, match="keys"):
        same({"a": 1, "c": 2}, {"a": 1})


def test_false_positive_study_summary():
    records, cfg, files = study.load_results()
    same(as_json(study.summarize_records(records, cfg)), files["summary"]["summary"])


def test_paper_scale_study_summary():
    rec = F.committed_result("paper_study_records", PS.RESULT_FORMAT)
    summ = F.committed_result("paper_study_summary", PS.RESULT_FORMAT)
    cfg = PS.config_from_dict(rec["settings"])
    same(as_json(paper_summarize(rec["records"], cfg)), summ["summary"])


@pytest.mark.parametrize("name", ["dataset_inference_cpu", "dataset_inference_paper"])
def test_dataset_inference_summaries(name):
    res = F.committed_result(name, D.RESULT_FORMAT)
    cfg = D.config_from_dict(res["settings"]["dataset_inference"])
    same(as_json(D.summarize(res["models"], cfg)), res["summary"])


@pytest.mark.parametrize("arch", ["mlp", "lenet5"])
def test_confirmatory_summaries(arch):
    from pmi_tutorial.experiments import confirmatory as C

    name = f"confirmatory_{arch}"
    if name not in F.committed_names():
        pytest.skip(f"{name}.json is not committed yet")
    res = C.load(arch)
    cfg = C.config_from_dict(res["settings"])
    same(as_json(C.summarize_records(res["records"], cfg)), res["summary"])
    assert res["worlds_done"] == sorted({r["world"] for r in res["records"]})


def test_forensics_search_path_recomputes_from_its_cells():
    """Every objective on the committed search path is today's objective on the committed cells
    (the mean over the search seeds, then over the paper's cells), and the winner is the path's end."""
    from pmi_tutorial.experiments import forensics as FZ
    from pmi_tutorial.experiments.forensics.search import _objective

    res = FZ.committed("paper")
    search = res["search"]
    path = search["path"]
    for step in path:
        same(_objective(res, step["variant"], search["model"], search["seeds"]), step["objective"],
             step["variant"])
    assert res["best"] == path[-1]["variant"]
    assert all(a["objective"] > b["objective"] for a, b in zip(path, path[1:]))  # each step improved


@pytest.mark.parametrize("name", ["mnist-mlp", "mnist-lenet5"])
def test_di_walk_scale_summary(name):
    from pmi_tutorial.experiments import di_walk_scale as W

    res = F.committed_result(f"di_walk_scale_{name}", W.RESULT_FORMAT)
    assert res["settings"] == W.CONFIGS[name].to_dict() | {"dataset_inference": res["settings"]["dataset_inference"]}
    same(as_json(W.summarize(res["records"])), res["summary"])
