"""pytest plugin: print each notebook's total execution time in the terminal summary.

Load it with ``pytest -p scripts.notebook_timing`` (``make notebooks`` does).  nbval turns every
cell of ``notebooks/NAME.ipynb`` into a test item ``notebooks/NAME.ipynb::Cell K``; this plugin
adds up the setup (kernel start), call and teardown time of the items of each notebook.
"""

from __future__ import annotations

from collections import defaultdict

_seconds: dict[str, float] = defaultdict(float)
_failed: dict[str, int] = defaultdict(int)


def _notebook(nodeid: str) -> str | None:
    path = nodeid.split("::", 1)[0]
    return path if path.endswith(".ipynb") else None


def pytest_runtest_logreport(report):
    name = _notebook(report.nodeid)
    if name is None:
        return
    _seconds[name] += getattr(report, "duration", 0.0) or 0.0
    if report.failed:
        _failed[name] += 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _seconds:
        return
    tr = terminalreporter
    tr.section("notebook execution times")
    width = max(len(name) for name in _seconds)
    for name in sorted(_seconds):
        status = f"  ({_failed[name]} failed)" if _failed[name] else ""
        tr.write_line(f"{name:<{width}}  {_seconds[name]:7.1f} s{status}")
    tr.write_line(f"{'total':<{width}}  {sum(_seconds.values()):7.1f} s")
