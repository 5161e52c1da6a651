"""Files of finished work: one atomic writer, one result-file header, one reader.

* :func:`atomic_writer` (and :func:`write_bytes_atomic`, :func:`write_text_atomic`,
  :func:`write_json_atomic` built on it): a temporary file in the target's folder, flushed and
  fsynced, then :func:`os.replace`. A reader sees the old file or the new one, never half of
  one. Checkpoints, result files, data downloads and the study's caches are all written here.
* :func:`result_header`: the fields every JSON result file starts with: ``format``,
  ``version`` and ``provenance`` (command, git commit, hardware, library versions, date).
* :func:`read_result`: reads a result file and checks that header; :func:`committed_result`
  reads one of the result files shipped with the package (``pmi_tutorial/results/*.json``),
  which the book's chapters quote.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from ._validate import check_choice
from .attack_names import upgrade

#: result-file formats this package writes and the version of each it reads
RESULT_FORMATS = {
    "pmi-tutorial-result": 1,  # Tables I-IV and Figure 2 (``reproduce``)
    "pmi-tutorial-beyond": 1,  # the false-positive study (``study``)
    "pmi-tutorial-verify": 1,  # one ``verify`` run (``--json``)
    "pmi-tutorial-dataset-inference": 1,  # Dataset Inference on the study's models
    "pmi-tutorial-forensics": 1,  # the readings of Table I (``reproduce forensics``)
    # innocent models under several seeds of Dataset Inference's walk (``--walk-seeds``)
    "pmi-tutorial-dataset-inference-seeds": 1,
    # the false-positive study at the paper's scale (``study --config paper``); version 2: each
    # innocent model's own draw is a random split of the images it never saw
    "pmi-tutorial-paper-study": 2,
    "pmi-tutorial-table1-controls": 1,  # Table I: owners beside innocents (``reproduce table1-controls``)
    "pmi-tutorial-confirmatory": 1,  # the confirmatory study (``confirm``)
    # Dataset Inference's positive control on CIFAR-10 (``dataset-inference --control``)
    "pmi-tutorial-di-control": 1,
    "pmi-tutorial-di-walk-scale": 1,  # MNIST walks scaled until they reach the boundary (``--walk-scales``)
}


# --------------------------------------------------------------------------- atomic writes


def digest(obj) -> str:
    """A short, stable key of JSON-able settings: the first 12 hex digits of the SHA-256 of their
    canonical JSON (sorted keys).  Cache keys of models, measurements and runner tasks."""
    import hashlib

    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def temp_file_beside(path) -> tuple[int, str]:
    """``tempfile.mkstemp`` in the folder of ``path`` (created if missing), for an atomic write.

    Returns ``(fd, temporary path)``.  A folder that cannot be created or written raises
    ValueError naming ``path`` (not the temporary file) and the fix.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ValueError(
            f"cannot write {path}: {reason} (folder {path.parent}); pass a path in a folder "
            "that exists or can be created and that you can write to"
        ) from None


@contextlib.contextmanager
def atomic_writer(path, mode: int = 0o644):
    """``with atomic_writer(path) as f: f.write(...)``: ``path`` appears complete or not at all.

    ``f`` is a binary file in the folder of ``path``; on leaving the block it is flushed,
    fsynced, given permissions ``mode`` and renamed onto ``path`` (:func:`os.replace`).  An
    exception inside the block removes the temporary file and leaves ``path`` as it was.
    """
    path = Path(path)
    fd, tmp = temp_file_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; finished work is for sharing
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_writer`); returns ``path``."""
    with atomic_writer(path) as f:
        f.write(data)
    return Path(path)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`atomic_writer`); returns ``path``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically; returns ``path``."""
    try:
        text = json.dumps(obj, indent=1, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot write {path}: the content is not JSON-serializable ({exc}); "
                         "convert NumPy values with float()/int()/.tolist()") from None
    return write_text_atomic(path, text + "\n")


def remove_stale_temps(path) -> list[Path]:
    """Delete the temporary files a killed write of ``path`` (or of its ``.json`` sidecar) left.

    Call it only from the process that owns ``path`` (the run that resumes it).  The temporary
    files never load as ``path`` (they have other names); this only reclaims their space.
    Returns the files removed.
    """
    path = Path(path)
    removed = []
    for name in (path.name, path.name + ".json"):
        for tmp in path.parent.glob(f".{glob.escape(name)}.*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


# --------------------------------------------------------------------------- provenance


def git_commit() -> str:
    """The package's git commit (``-dirty`` when tracked files changed), or ``"unknown"``."""
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        commit = out.stdout.strip()
        if not commit:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """The machine a result was computed on: CPU, core count, torch threads, GPU if any."""
    import torch

    info = {
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict:
    """Versions of Python, this package, torch, NumPy and SciPy."""
    import numpy as np
    import scipy
    import torch

    from . import __version__

    return {
        "python": platform.python_version(),
        "pmi_tutorial": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
    }


def now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def provenance(command: str | None = None) -> dict:
    """What produced a result: command, git commit, hardware, library versions, start date."""
    return {
        "command": command or " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "versions": versions(),
        "started": now(),
    }


# --------------------------------------------------------------------------- result files


def _check_format(fmt: str) -> int:
    return RESULT_FORMATS[check_choice(fmt, RESULT_FORMATS, "result format")]


def result_header(fmt: str, command: str | None = None) -> dict:
    """The first fields of every result file: ``{"format", "version", "provenance"}``.

    ``fmt`` is one of :data:`RESULT_FORMATS`; ``provenance`` is :func:`provenance` (command,
    git commit, hardware, versions, start date).
    """
    return {"format": fmt, "version": _check_format(fmt), "provenance": provenance(command)}


def check_result(result, where, fmt: str | None = None) -> dict:
    """Check the header of a parsed result file (``where`` names it in the error)."""
    if not isinstance(result, dict) or result.get("format") not in RESULT_FORMATS:
        raise ValueError(f"{where} is not a pmi-tutorial result file (no known \"format\"); pass a "
                         "file written by `python -m pmi_tutorial reproduce`, `study` or `verify`")
    if fmt is not None and result["format"] != fmt:
        raise ValueError(f"{where} is a {result['format']!r} file, not {fmt!r}; pass a file of "
                         "the right kind")
    expected = RESULT_FORMATS[result["format"]]
    if result.get("version") != expected:
        raise ValueError(
            f"result file {where} has format version {result.get('version')!r}, this pmi_tutorial "
            f"reads version {expected}; rerun the experiment (or use the matching release)")
    if not isinstance(result.get("provenance"), dict):
        raise ValueError(f"result file {where} has no provenance; delete it and run the "
                         "experiment again")
    return upgrade(result)  # the attacks' old names -> the registry's (attack_names.ALIASES)


def _parse(text: str, where) -> dict:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"result file {where} is not valid JSON ({exc}); delete it and run the experiment again"
        ) from None


def read_result(path, fmt: str | None = None) -> dict:
    """Read a result file and check its header (:func:`check_result`).

    Raises FileNotFoundError for a missing file and ValueError for one that is not valid JSON,
    not a result file, of another ``fmt``, or of another version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no result file at {path}; run `python -m pmi_tutorial reproduce "
                                "...` (or `study`) to make it")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"result file {path} is not text ({exc}); delete it and run the "
                         "experiment again") from None
    return check_result(_parse(text, path), path, fmt)


def committed_names() -> list[str]:
    """The names of the result files shipped with the package (``committed_result`` takes them)."""
    folder = resources.files("pmi_tutorial").joinpath("results")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def committed_result(name: str, fmt: str | None = None) -> dict:
    """The committed result file ``pmi_tutorial/results/<name>.json`` (package data), checked.

    ``name`` is e.g. ``"table1_paper"`` or ``"beyond_summary"``; the files are read through
    :mod:`importlib.resources`, so they are found wherever the package is installed.
    """
    if not isinstance(name, str) or name not in committed_names():
        raise ValueError(f"no committed result file {name!r}; use one of {', '.join(committed_names())}")
    where = f"pmi_tutorial/results/{name}.json"
    text = resources.files("pmi_tutorial").joinpath("results").joinpath(f"{name}.json").read_text()
    return check_result(_parse(text, where), where, fmt)
