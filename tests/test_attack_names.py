"""attack_names: the old names of four attacks, mapped to the registry's where a result file is
read; experiments.kinds: the tables' titles from the registry."""

from __future__ import annotations

import json

import pytest

from pmi_tutorial import attack_names as N
from pmi_tutorial import attacks
from pmi_tutorial import files as F
from pmi_tutorial.experiments import kinds


def test_every_alias_names_a_registered_attack():
    assert set(N.ALIASES.values()) <= set(attacks.ATTACKS)
    assert not set(N.ALIASES) & set(attacks.ATTACKS)
    assert N.canonical("quantize") == "int8" and N.canonical("int8") == "int8"
    assert N.canonical("independent") == "independent" and N.canonical(None) is None


def test_by_kind_answers_to_an_old_name_and_lists_the_new_one():
    d = N.ByKind({"owner": 1, "distill_same": 2})
    assert d["distill"] == 2 and d.get("distill") == 2 and "distill" in d
    assert list(d) == ["owner", "distill_same"] and d == {"owner": 1, "distill_same": 2}
    assert "quantize" not in d and d.get("quantize", 0) == 0
    with pytest.raises(KeyError):
        d["quantize"]
    assert json.loads(json.dumps(d)) == {"owner": 1, "distill_same": 2}


def _legacy(fmt):
    return {"format": fmt, "settings": {"attacks": ["finetune", "prune", "logprob"],
                                        "features": ["logits", "logprob"]},
            "models": [{"kind": "quantize", "features": {"logprob": 1}}, {"kind": "independent"}],
            "summary": {"mlp": {"attacks": {"distill": {"300": 0.5}, "owner": {"300": 1.0}},
                                "tests": {"pmi": {"verdicts": {"prune": 0.1}}}}}}


def test_upgrade_renames_the_kinds_only_and_only_in_the_legacy_formats():
    old = _legacy("pmi-tutorial-beyond")
    new = N.upgrade(old)
    assert old == _legacy("pmi-tutorial-beyond")  # the input is left as it was
    assert new["settings"] == {"attacks": ["finetune", "prune50", "probabilities"],
                               "features": ["logits", "logprob"]}  # a feature keeps its name
    assert new["models"] == [{"kind": "int8", "features": {"logprob": 1}}, {"kind": "independent"}]
    assert list(new["summary"]["mlp"]["attacks"]) == ["distill_same", "owner"]
    assert new["summary"]["mlp"]["attacks"]["distill"] == {"300": 0.5}
    assert list(new["summary"]["mlp"]["tests"]["pmi"]["verdicts"]) == ["prune50"]
    other = _legacy("pmi-tutorial-paper-study")
    assert N.upgrade(other) is other


def test_committed_files_are_read_with_the_registrys_names():
    beyond = F.committed_result("beyond_summary")
    assert beyond["settings"]["attacks"] == ["finetune", "prune50", "int8", "noise", "distill_same",
                                             "probabilities"]
    raw = json.loads((F.Path(F.__file__).parent / "results" / "beyond_summary.json").read_text())
    assert raw["settings"]["attacks"][2] == "quantize"  # the file itself is unchanged
    verdicts = beyond["summary"]["mlp"]["tests"]["directional"]["verdicts"]
    assert verdicts["int8"] == raw["summary"]["mlp"]["tests"]["directional"]["verdicts"]["quantize"]
    di = F.committed_result("dataset_inference_cpu")["summary"]["mlp"]["attacks"]
    assert di["distill"] is di["distill_same"]


def test_titles_come_from_the_registry():
    assert kinds.title("owner") == N.OWNER_TITLE
    assert kinds.title("int8") == attacks.ATTACKS["int8"].title == kinds.title("quantize")
    assert kinds.title("something else") == "something else"
    t = kinds.titles()
    assert list(t) == ["owner", *attacks.ATTACKS] and t["logprob"] == attacks.ATTACKS["probabilities"].title
