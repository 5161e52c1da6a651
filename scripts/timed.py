"""Run a command and print its wall time: ``python scripts/timed.py LABEL CMD [ARGS...]``.

Used by ``make build-book`` so that every build reports how long executing the book took.
The exit status is the command's own.
"""

from __future__ import annotations

import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: timed.py LABEL COMMAND [ARGS...]", file=sys.stderr)
        return 2
    label, cmd = argv[0], argv[1:]
    start = time.perf_counter()
    try:
        rc = subprocess.call(cmd)
    except FileNotFoundError:
        print(f"timed.py: command not found: {cmd[0]} (run `make setup` first?)", file=sys.stderr)
        return 127
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.1f} s wall time (exit status {rc})", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
