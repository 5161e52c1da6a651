"""Command line: ``python -m pmi_tutorial {train,pools,verify,attack,reproduce,study,dataset-inference} ...``.

Every mistake a user can make ends in one readable line on stderr and exit status 2, never a
traceback.

**Modules**: :mod:`.parser` (every command's options and help), :mod:`.owner` (``train``,
``pools``, ``verify``, ``attack``), :mod:`.studies` (``reproduce``, ``study``,
``dataset-inference``, ``confirm``), :mod:`.options` (comma-separated option values); here:
:func:`main` and the table of commands.
"""

from __future__ import annotations

import sys

from .owner import cmd_attack, cmd_pools, cmd_train, cmd_verify
from .parser import EPILOG, build_parser
from .studies import (cmd_confirm, cmd_dataset_inference, cmd_forensics, cmd_reproduce, cmd_study,
                      cmd_table1_controls)

__all__ = ["EPILOG", "build_parser", "cmd_train", "cmd_verify", "cmd_pools", "cmd_attack",
           "cmd_forensics", "cmd_table1_controls", "cmd_reproduce", "cmd_study",
           "cmd_dataset_inference", "cmd_confirm", "COMMANDS", "main"]

COMMANDS = {"train": cmd_train, "verify": cmd_verify, "pools": cmd_pools, "attack": cmd_attack,
            "reproduce": cmd_reproduce, "study": cmd_study, "dataset-inference": cmd_dataset_inference,
            "confirm": cmd_confirm}


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a library's message may span several)."""
    if isinstance(exc, OSError) and exc.strerror:  # raised by the OS, not by this package
        text = (f"{exc.strerror}: {exc.filename or ''}; check the path, the free disk space and "
                "the permissions, then run the same command again (finished work is kept)")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv=None) -> int:
    """Run the command line on ``argv``; returns the exit status (2 and one line on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command](args)
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: a full disk, no permission, ...
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is saved, run the same command again to resume", file=sys.stderr)
        return 130
