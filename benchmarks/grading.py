r"""The submission's process: forked from the grader's fork server against started afresh.

Every hidden part of an assignment is graded on the submission's code served by a process of
its own (``scripts.coursework.behaviour.Student``; the fork server is ``scripts.coursework.forks``). Started afresh (``python -c RUNNER``) that
process first imports what the chapter's setup imports, torch, SciPy, matplotlib and the
package, about 3 s of CPU; forked from the fork server, which made those imports once, it
starts in milliseconds. This prints both, side by side, for one chapter's setup: the wall time
of starting a submission's process and reading one of its names, the median over ``--rounds``
interleaved rounds, and the ratio (afresh / forked). The fork server's own start (once per
grader process and environment) is printed apart.

Measured on the 2-core machine, loaded by other jobs: the calibrated-test chapter's setup,
afresh 2.5 s a process, forked 0.04 s (63x, 3 rounds), the fork server's start 3.7 s;
tests/test_course_cheats.py (about forty submission processes) 117 s -> 35 s.

    python benchmarks/grading.py                    # the calibrated-test chapter, 5 rounds
    python benchmarks/grading.py --chapter mmd --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import course  # noqa: E402
from scripts.coursework import behaviour, forks  # noqa: E402


def one(setup: str, forked: bool) -> float:
    """Seconds to start a submission's process on ``setup`` and read a name from it."""
    real = forks.forked
    if not forked:
        forks.forked = lambda *args: None
    try:
        start = time.perf_counter()
        student = behaviour.Student(setup, ["answer = 42"], forbidden=[])
        try:
            assert student.get("answer") == 42 and student.errors == []
            assert isinstance(student.proc, forks.Forked) == forked
        finally:
            student.close()
        return time.perf_counter() - start
    finally:
        forks.forked = real


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chapter", default="calibrated_test", help="whose setup the submission runs")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error(f"--rounds must be a positive integer, got {args.rounds}")
    md = ROOT / "book" / f"{args.chapter}.md"
    if not md.is_file():
        ap.error(f"no chapter {args.chapter!r} in book/")
    setup = course.setup_code(md)
    start = time.perf_counter()
    one(setup, forked=True)  # starts the fork server
    print(f"fork server started and first submission served in {time.perf_counter() - start:.2f} s")
    forked, afresh = [], []
    for _ in range(args.rounds):
        forked.append(one(setup, forked=True))
        afresh.append(one(setup, forked=False))
    f, a = statistics.median(forked), statistics.median(afresh)
    print(f"{args.chapter}: a submission's process started afresh {a:.2f} s, forked {f:.3f} s "
          f"(medians of {args.rounds}); afresh / forked = {a / f:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
