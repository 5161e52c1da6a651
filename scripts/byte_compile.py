"""Byte-compile the virtual environment's packages on every core: ``python scripts/byte_compile.py``.

``make setup`` installs with ``pip install --no-compile`` and then runs this: pip compiles the
installed modules one file at a time (about a minute of CPU for the development install's
15,000 modules, most of them torch's), ``compileall`` does the same work on every core. The result
is the same ``__pycache__`` pip would write (timestamp-checked, unoptimised). A file that this
Python cannot compile (torch ships tests written in a newer Python's syntax) is skipped, as pip
skips it; it is counted and named, and does not fail the step.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig


def main(argv: list[str]) -> int:
    folders = argv or sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    run = subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *folders],
                         capture_output=True, text=True)
    failed = re.findall(r"\*\*\* Error compiling '([^']+)'", run.stdout)
    print(f"byte_compile: {', '.join(folders)} compiled on every core"
          + (f"; {len(failed)} file(s) this Python cannot compile, skipped as pip skips them: "
             + ", ".join(failed[:5]) if failed else ""), flush=True)
    if run.returncode != 0 and not failed:  # compileall itself failed
        print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
