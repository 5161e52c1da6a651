"""Values of options given as comma-separated lists (``--ms 3,4,5``), read with one clear error."""

from __future__ import annotations


def numbers(text, name, kind=int):
    """``"3,4,5"`` -> ``[3, 4, 5]`` (``kind`` int or float); None stays None."""
    if text is None:
        return None
    try:
        return [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        what = "integers" if kind is int else "numbers"
        raise ValueError(f"--{name} must be comma-separated {what}, got {text!r}") from None


def ints(text, name):
    """``"3,4,5"`` -> ``[3, 4, 5]``; None stays None."""
    return numbers(text, name, int)


def floats(text, name):
    """``"0.1,0.2"`` -> ``[0.1, 0.2]``; None stays None."""
    return numbers(text, name, float)
