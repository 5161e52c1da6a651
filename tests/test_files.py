"""Tests for pmi_tutorial.files: the atomic writer, the result header, the result readers."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pmi_tutorial import files


def test_atomic_writer_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "sub" / "out.bin"
    files.write_bytes_atomic(path, b"old")
    with pytest.raises(RuntimeError):
        with files.atomic_writer(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # no temporary file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_text_and_json_writers_round_trip(tmp_path):
    files.write_text_atomic(tmp_path / "a.txt", "ä\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "ä\n"
    files.write_json_atomic(tmp_path / "a.json", {"x": [1, 2.5, None]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": [1, 2.5, None]}
    with pytest.raises(ValueError, match="not JSON-serializable"):
        files.write_json_atomic(tmp_path / "b.json", {"x": object()})
    assert not (tmp_path / "b.json").exists()


def test_unwritable_folder_names_the_target(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot write .*out.json"):
        files.write_json_atomic(blocker / "out.json", {})


def test_remove_stale_temps_only_removes_this_files_temps(tmp_path):
    target = tmp_path / "r.json"
    mine = [tmp_path / ".r.json.abc.tmp", tmp_path / ".r.json.json.x.tmp"]
    other = tmp_path / ".s.json.abc.tmp"
    for p in mine + [other]:
        p.write_text("")
    assert sorted(files.remove_stale_temps(target)) == sorted(mine)
    assert other.exists()


def test_header_and_reader(tmp_path):
    head = files.result_header("pmi-tutorial-result", "python -m pmi_tutorial reproduce table1")
    assert head["format"] == "pmi-tutorial-result" and head["version"] == 1
    prov = head["provenance"]
    assert prov["command"] == "python -m pmi_tutorial reproduce table1"
    assert set(prov) == {"command", "git_commit", "hardware", "versions", "started"}
    assert prov["versions"]["torch"] and prov["hardware"]["cpu_count"] == os.cpu_count()
    path = files.write_json_atomic(tmp_path / "r.json", {**head, "cells": []})
    assert files.read_result(path)["cells"] == []
    assert files.read_result(path, "pmi-tutorial-result")["format"] == "pmi-tutorial-result"
    with pytest.raises(ValueError, match="not 'pmi-tutorial-beyond'"):
        files.read_result(path, "pmi-tutorial-beyond")
    with pytest.raises(ValueError, match="unknown result format"):
        files.result_header("csv")


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    (json.dumps([1, 2]), "not a pmi-tutorial result file"),
    (json.dumps({"format": "pmi-tutorial-result", "version": 0, "provenance": {}}), "version 0"),
    (json.dumps({"format": "pmi-tutorial-result", "version": 1}), "no provenance"),
])
def test_reader_refuses_bad_files(tmp_path, content, words):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=words):
        files.read_result(path)


def test_reader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="reproduce"):
        files.read_result(tmp_path / "none.json")


def test_every_committed_result_loads():
    names = files.committed_names()
    assert {"table1_paper", "table2_quick", "beyond_summary"} <= set(names)
    for name in names:
        res = files.committed_result(name)
        assert res["provenance"]["command"].startswith("python -m pmi_tutorial")
    with pytest.raises(ValueError, match="use one of .*table1_paper"):
        files.committed_result("table9_paper")


def test_unwritable_output_folder_is_refused_and_leaves_nothing(tmp_path, refused):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    refused(lambda: files.write_json_atomic(blocker / "results" / "table1_quick.json", {"cells": []}),
            ValueError, ["cannot write", "a_file", "folder"])
    assert not list(tmp_path.rglob("*.tmp"))
