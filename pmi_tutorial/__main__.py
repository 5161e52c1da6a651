"""``python -m pmi_tutorial``: see :mod:`pmi_tutorial.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
