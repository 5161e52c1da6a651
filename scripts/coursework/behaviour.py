"""Hidden checks on behaviour: the submission is called, never trusted.

A chapter's ``check-hidden`` cell declares its exercise's graded parts:

* ``part_NAME(student, g)``: one part worth one point, its docstring's first line says what
  it checks. ``g`` is a ``numpy.random.Generator`` seeded anew for each grading run, so the
  inputs are ones the student never saw; ``student.NAME(*args)`` calls the submission's
  function and returns its result, ``student.get("NAME")`` reads one of its names. The part
  computes its reference values itself, in the grader's own process, and fails with an
  ``AssertionError`` whose message says what went wrong.
* ``forbidden``: the functions the exercise asks not to use, as dotted names
  (``"pmi_tutorial.mmd.mmd2_unbiased"``) or whole modules (``"pmi_tutorial.mmd"``).

The submission's code runs in a process of its own (:data:`RUNNER`) with a timeout and
resource limits; only data (JSON: numbers, lists, arrays, models as their weights) crosses to
the grader, so nothing the submission rebinds (``np.isclose``, a package function) reaches the
comparisons. A submission that names a forbidden function (found in its syntax tree) gets no
credit for the exercise's hidden parts, and in its process those functions raise.
"""

from __future__ import annotations

import ast
import base64
import functools
import json
import os
import re
import select
import subprocess
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from scripts.coursework import forks

ROOT = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 6 * 2**30  # bytes of address space for the submission's process
FILE_LIMIT = 64 * 2**20  # the largest file it may write

# The submission's process: reads the job (one JSON line on stdin), runs the setup and the
# submission's cells with the forbidden functions replaced, then answers requests (one JSON
# line each) on the file descriptor that was its stdout; what the code prints goes to stderr.
RUNNER = r'''
import base64, builtins, importlib, io, json, os, sys, traceback

proto = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr
job = json.loads(sys.stdin.readline())
import numpy as np


class ForbiddenCall(RuntimeError):
    pass


def _stub(name):
    def forbidden(*args, **kwargs):
        raise ForbiddenCall(f"{name} is not allowed in this exercise")
    forbidden.__name__ = name.rsplit(".", 1)[-1]
    return forbidden


ns = {"__name__": "__main__"}
errors = []
try:
    exec(compile(job["setup"], "<setup>", "exec"), ns)
except BaseException as exc:
    errors.append(f"setup: {type(exc).__name__}: {exc}")
originals = {}
for name in job["forbidden"]:
    try:
        module = importlib.import_module(name)
        targets = [(module, a) for a, v in vars(module).items() if callable(v) and not a.startswith("_")
                   and getattr(v, "__module__", None) == module.__name__]
    except ImportError:
        mod, _, attr = name.rpartition(".")
        try:
            targets = [(importlib.import_module(mod), attr)]
        except ImportError:
            continue
    for module, attr in targets:
        if not hasattr(module, attr):
            continue
        original = getattr(module, attr)
        originals[id(original)] = f"{module.__name__}.{attr}"
        setattr(module, attr, _stub(f"{module.__name__}.{attr}"))
for key, value in list(ns.items()):
    if id(value) in originals:
        ns[key] = _stub(originals[id(value)])
for k, cell in enumerate(job["cells"]):
    try:
        exec(compile(cell, f"<cell {k + 1}>", "exec"), ns)
    except BaseException as exc:
        errors.append(f"cell {k + 1}: {type(exc).__name__}: {exc}")
proto.write(json.dumps({"ready": True, "errors": errors}) + "\n")


def encode(x, depth=0):
    if depth > 20:
        raise TypeError("nested too deeply")
    torch = sys.modules.get("torch")  # a torch value means torch is imported: never import it here
    if torch is not None:
        if isinstance(x, torch.nn.Module):
            return {"__model__": {k: encode(v.detach().cpu().numpy()) for k, v in x.state_dict().items()}}
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            return [encode(v, depth + 1) for v in x.tolist()]
        return {"__nd__": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode(),
                "dtype": x.dtype.str, "shape": list(x.shape)}
    if isinstance(x, (np.generic,)):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if isinstance(x, (list, tuple)):
        return [encode(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {"__dict__": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    return {"__repr__": repr(x)[:200], "type": type(x).__name__}


def decode(x):
    if isinstance(x, list):
        return [decode(v) for v in x]
    if isinstance(x, dict):
        if "__nd__" in x:
            return np.frombuffer(base64.b64decode(x["__nd__"]), dtype=x["dtype"]).reshape(x["shape"]).copy()
        if "__build_model__" in x:
            from pmi_tutorial.models import build_model
            return build_model(**x["__build_model__"])
        if "__tuple__" in x:
            return tuple(decode(v) for v in x["__tuple__"])
        return {k: decode(v) for k, v in x.items()}
    return x


for line in sys.stdin:
    req = json.loads(line)
    try:
        if req["op"] == "get":
            if req["name"] not in ns:
                raise NameError(f"name {req['name']!r} is not defined")
            out = {"value": encode(ns[req["name"]])}
        else:
            fn = ns.get(req["name"])
            if fn is None:
                raise NameError(f"name {req['name']!r} is not defined")
            args = decode(req["args"])
            value = fn(*args)
            out = {"value": encode(value)}
            if req.get("return_args"):
                out["args"] = encode(args)
    except BaseException as exc:
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f"{f.filename}, line {f.lineno}" for f in reversed(tb) if f.filename.startswith("<cell")), "")
        out = {"error": f"{type(exc).__name__}: {exc}" + (f" ({where})" if where else "")}
    proto.write(json.dumps(out) + "\n")
'''


class StudentError(Exception):
    """The submission failed to answer a request: it raised, timed out or crashed."""


def _decode(x):
    if isinstance(x, list):
        return [_decode(v) for v in x]
    if isinstance(x, dict):
        if "__nd__" in x:
            return np.frombuffer(base64.b64decode(x["__nd__"]), dtype=np.dtype(x["dtype"])).reshape(x["shape"]).copy()
        if "__model__" in x:
            return StateDict({k: _decode(v) for k, v in x["__model__"].items()})
        if "__dict__" in x:
            return {_freeze(_decode(k)): _decode(v) for k, v in x["__dict__"]}
        if "__repr__" in x:
            return Opaque(x["__repr__"], x.get("type", "?"))
    return x


def _freeze(x):
    return tuple(_freeze(v) for v in x) if isinstance(x, list) else x


def _encode(x):
    if isinstance(x, Model):
        return {"__build_model__": {"name": x.arch, "seed": x.seed}}
    if isinstance(x, np.ndarray):
        return {"__nd__": base64.b64encode(np.ascontiguousarray(x).tobytes()).decode(),
                "dtype": x.dtype.str, "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return {"__tuple__": [_encode(v) for v in x]}
    if isinstance(x, list):
        return [_encode(v) for v in x]
    return x


class StateDict(dict):
    """A model the submission returned, as its ``state_dict`` (name -> array)."""


@dataclass(frozen=True)
class Opaque:
    """A value of a type that does not cross processes: its repr and type name."""
    repr: str
    type: str


@dataclass(frozen=True)
class Model:
    """An argument built in the submission's process: ``build_model(arch, seed=seed)``."""
    arch: str
    seed: int


class Student:
    """The submission, served by a sandboxed process: ``student.f(*args)`` calls its ``f``."""

    def __init__(self, setup: str, cells: list[str], forbidden: list[str], timeout: float = 120.0):
        self.timeout = timeout
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
        import tempfile

        self.workdir = tempfile.mkdtemp(prefix="pmi-grading-")  # what the code writes lands here
        # forked from the fork server where there is one (the imports made once), else started afresh
        self.proc = forks.forked(env, self.workdir, RUNNER, _limit_values(timeout))
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, env=env, preexec_fn=_limits(timeout),
                                         start_new_session=True, cwd=self.workdir)
        self.proc.stdin.write(json.dumps({"setup": setup, "cells": cells, "forbidden": forbidden}) + "\n")
        self.proc.stdin.flush()
        self.errors = self._read(max(60.0, timeout * 3), "running the notebook's cells")["errors"]

    def _read(self, timeout: float, what: str) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise StudentError(f"the notebook's code stopped answering while {what} "
                               f"({'no answer within ' + str(int(timeout)) + ' s' if not ready else 'its process ended'})")
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise StudentError(f"the notebook's process sent garbage while {what}") from exc

    def _ask(self, req: dict, what: str):
        if self.proc.poll() is not None:
            raise StudentError(f"the notebook's process has ended; cannot run {what}")
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise StudentError(f"the notebook's process has ended; cannot run {what}") from exc
        out = self._read(self.timeout, what)
        if "error" in out:
            raise StudentError(f"{what} raised {out['error']}")
        return out

    def get(self, name: str):
        """The value of the submission's global ``name``."""
        return _answered(_decode(self._ask({"op": "get", "name": name}, f"reading {name}")["value"]), name)

    def call(self, name: str, *args, return_args: bool = False):
        """``name(*args)`` in the submission; with ``return_args``, also the arguments after the
        call (to see whether it changed them)."""
        what = f"{name}({', '.join(_describe(a) for a in args)})"
        out = self._ask({"op": "call", "name": name, "args": [_encode(a) for a in args],
                         "return_args": return_args}, what)
        value = _answered(_decode(out["value"]), what)
        return (value, _decode(out["args"])) if return_args else value

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kw: self.call(name, *args, **kw)

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        self.proc.wait()
        import shutil

        shutil.rmtree(self.workdir, ignore_errors=True)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


def _answered(value, what: str):
    """The value, or a StudentError when it is still the placeholder's ``...`` or None."""
    if value is None or (isinstance(value, Opaque) and value.type == "ellipsis"):
        raise StudentError(f"{what} gave {'None' if value is None else '...'}: not answered yet "
                           "(replace the `...` with your code)")
    return value


def _describe(a) -> str:
    if isinstance(a, np.ndarray):
        return f"array of shape {a.shape}"
    if isinstance(a, Model):
        return f"build_model({a.arch!r}, seed={a.seed})"
    if isinstance(a, (list, tuple)) and len(a) > 4:
        return f"a {type(a).__name__} of {len(a)}"
    return repr(a)


def _limit_values(timeout: float) -> list[tuple[str, int]]:
    """The submission's resource limits: CPU seconds, address space, file size, no core file."""
    return [("RLIMIT_CPU", int(timeout * 4) + 30), ("RLIMIT_AS", MEMORY_LIMIT), ("RLIMIT_FSIZE", FILE_LIMIT),
            ("RLIMIT_CORE", 0)]


def _limits(timeout: float):
    return functools.partial(forks.apply_limits, _limit_values(timeout))



# ------------------------------------------------------------------ the parts of an exercise
@dataclass
class Part:
    name: str
    description: str
    fn: object


@dataclass
class Spec:
    """An exercise's hidden parts and forbidden functions, from its ``check-hidden`` cell."""
    parts: list[Part]
    forbidden: list[str] = field(default_factory=list)


def spec(hidden_code: str, setup: str, where: str = "") -> Spec:
    """Run a ``check-hidden`` cell's definitions in the grader's namespace; its parts."""
    ns: dict = {"__name__": "hidden_checks", "Model": Model}
    exec(compile(setup, f"<setup {where}>", "exec"), ns)
    exec(compile(hidden_code, f"<hidden checks {where}>", "exec"), ns)
    parts = [Part(k[len("part_"):], (v.__doc__ or k).strip().split("\n")[0], v)
             for k, v in ns.items() if k.startswith("part_") and callable(v)]
    if not parts:
        raise ValueError(f"{where}: the check-hidden cell defines no part_NAME(student, g) function")
    forbidden = list(ns.get("forbidden", []))
    return Spec(parts, forbidden)


def is_parts_cell(code: str) -> bool:
    """Whether a ``check-hidden`` cell declares parts (else it is a plain check, run by otter)."""
    return bool(re.search(r"^def part_\w+\(student, g\)", code, re.M))


def _forbidden_names(forbidden: list[str]) -> dict[str, set[str]]:
    """module -> the names of its forbidden functions (every public function for a module)."""
    import importlib

    out: dict[str, set[str]] = {}
    for dotted in forbidden:
        try:
            module = importlib.import_module(dotted)
            out.setdefault(dotted, set()).update(
                a for a, v in vars(module).items() if callable(v) and not a.startswith("_")
                and getattr(v, "__module__", None) == module.__name__)
        except ImportError:
            mod, _, attr = dotted.rpartition(".")
            out.setdefault(mod, set()).add(attr)
    return out


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def forbidden_uses(cells: list[str], forbidden: list[str], setup: str = "") -> list[str]:
    """Where the submission's code uses a forbidden function: through its module
    (``attacks.prune``, ``pmi_tutorial.attacks.prune``), by a name imported from it (in the
    setup or the submission), through ``getattr`` with its name, or by reaching code
    dynamically (``__import__``, ``importlib``, ``eval``, ``exec``). Importing it is no use
    (the student notebook's setup cell imports what the chapter imports); calling it is."""
    by_module = _forbidden_names(forbidden)
    if not by_module:
        return []
    every = set().union(*by_module.values())
    module_alias: dict[str, str] = {}  # a name bound to a forbidden module -> the module
    function_alias: set[str] = set()  # a name bound to a forbidden function

    def bind(tree):
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in by_module:
                        module_alias[a.asname or a.name] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in by_module:
                        module_alias[a.asname or a.name] = full
                    elif node.module in by_module and a.name in by_module[node.module]:
                        function_alias.add(a.asname or a.name)

    trees = []
    for k, cell in enumerate([setup] + list(cells)):
        try:
            trees.append((k, ast.parse(cell)))
        except SyntaxError:
            continue
    for _, tree in trees:
        bind(tree)
    found = []
    for k, tree in trees:
        if k == 0:
            continue  # the setup imports; using what it imports is what counts
        for node in ast.walk(tree):
            hit = None
            if isinstance(node, ast.Attribute):
                prefix = _dotted(node.value)
                module = module_alias.get(prefix, prefix)
                if node.attr in by_module.get(module, ()):
                    hit = f"{prefix}.{node.attr}"
            elif isinstance(node, ast.Name) and node.id in function_alias:
                hit = node.id
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and any(isinstance(a, ast.Constant) and a.value in every for a in node.args)):
                hit = f"getattr(..., {next(a.value for a in node.args if isinstance(a, ast.Constant))!r})"
            elif isinstance(node, ast.Name) and node.id in {"__import__", "eval", "exec", "importlib"}:
                hit = f"{node.id} (reaching code dynamically)"
            if hit:
                found.append(f"cell {k}, line {getattr(node, 'lineno', '?')}: {hit}")
    return sorted(set(found))


@dataclass
class PartResult:
    name: str
    description: str
    score: float
    message: str = ""


def run_parts(sp: Spec, setup: str, cells: list[str], seed: int, timeout: float = 120.0) -> list[PartResult]:
    """Grade one exercise's hidden parts on a submission's cells; one point per part."""
    uses = forbidden_uses(cells, sp.forbidden, setup)
    if uses:
        why = ("uses a function this exercise asks you not to use (" + "; ".join(uses[:5]) +
               f"); forbidden here: {', '.join(sp.forbidden)}")
        return [PartResult(p.name, p.description, 0.0, why) for p in sp.parts]
    results = []
    student = None
    try:
        for k, part in enumerate(sp.parts):
            if student is None or student.proc.poll() is not None:
                try:
                    student = Student(setup, cells, sp.forbidden, timeout)
                except StudentError as exc:
                    results.append(PartResult(part.name, part.description, 0.0, str(exc)))
                    continue
            g = np.random.default_rng([seed, k])
            try:
                part.fn(student, g)
                results.append(PartResult(part.name, part.description, 1.0))
            except StudentError as exc:
                results.append(PartResult(part.name, part.description, 0.0, str(exc)))
            except AssertionError as exc:
                msg = str(exc) or _assert_line(exc)
                results.append(PartResult(part.name, part.description, 0.0, msg))
            except Exception as exc:  # the part could not even read the answer (a wrong type)
                results.append(PartResult(part.name, part.description, 0.0,
                                          f"the answer has the wrong form: {type(exc).__name__}: {exc}"))
    finally:
        if student is not None:
            student.close()
    return results


def _assert_line(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"failed: {frames[-1].line}" if frames else "failed"


def submission_cells(nb) -> list[str]:
    """The code a submission runs: every code cell, less otter's own lines (its init, checks
    and export) and IPython's ``%`` / ``!`` lines; the Colab install cell is left out."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "google.colab" in cell.source:
            continue
        keep = [line for line in cell.source.split("\n")
                if not line.lstrip().startswith(("%", "!"))
                and not re.match(r"\s*(import otter\b|grader\s*=\s*otter\.|grader\.\w+\()", line)]
        src = "\n".join(keep)
        if src.strip():
            cells.append(src)
    return cells
