"""Shared input checks.

Every check raises :class:`ValueError` with a message that names the problem *and* the fix,
so that a reader who passes the wrong thing learns what to pass instead.
"""

from __future__ import annotations

import numpy as np

KERNELS = ("linear", "rbf")
LINKAGES = ("single", "complete", "average")


def as_float_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Convert a NumPy array, torch tensor or nested list to a float64 array and check it.

    Checks the number of dimensions (when ``ndim`` is given) and that every value is finite.
    """
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        if x.is_complex():
            raise ValueError(f"{name} is complex ({x.dtype}); pass real-valued features (logits)")
        x = x.detach().cpu().double().numpy()
    if np.iscomplexobj(x):
        raise ValueError(f"{name} is complex; pass real-valued features (logits)")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"{name} must be numeric (a NumPy array or torch tensor of numbers); "
            f"could not convert it: {exc}"
        ) from None
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name} must have {ndim} dimensions, got shape {arr.shape}; "
            f"{_shape_hint(name, ndim)}"
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or infinite value(s); features must be finite: "
            "check the model's outputs (e.g. a diverged model or a division by zero upstream)"
        )
    return arr


def _shape_hint(name: str, ndim: int) -> str:
    if ndim == 2:
        return f"pass {name} as (n, d): one row per sample, one column per feature"
    if ndim == 3:
        return f"pass {name} as (m, n, d): m mini-datasets of n samples with d features"
    return f"reshape {name} to {ndim} dimensions"


_TYPE_WORDS = {int: "an integer", float: "a number", (int, float): "a number"}


def check_scalar(x, name: str, target_type=int, *, min_val=None, max_val=None,
                 include_boundaries: str = "both", hint: str = ""):
    """Check that ``x`` is a finite scalar of ``target_type`` within bounds; return it converted.

    In the style of ``sklearn.utils.check_scalar``.  ``target_type`` is ``int`` (an integer;
    ``True``/``False`` and floats such as 3.0 are refused) or ``float`` (a real number: ints
    are converted; strings, NaN and infinity are refused).  ``include_boundaries``:
    ``"both"``, ``"left"``, ``"right"`` or ``"neither"`` says which of ``min_val`` and
    ``max_val`` are allowed.  The ValueError names ``name``, the allowed range, the value given
    and ``hint`` (how to fix it).
    """
    check_choice(include_boundaries, ("both", "left", "right", "neither"), "include_boundaries")
    low = "[" if include_boundaries in ("both", "left") else "("
    high = "]" if include_boundaries in ("both", "right") else ")"
    if min_val is not None and max_val is not None:
        where = f" in {low}{min_val:g}, {max_val:g}{high}"
    elif min_val is not None:
        where = f" {'>=' if low == '[' else '>'} {min_val:g}"
    elif max_val is not None:
        where = f" {'<=' if high == ']' else '<'} {max_val:g}"
    else:
        where = ""
    tail = f"; {hint}" if hint else ""
    kind = _TYPE_WORDS.get(target_type, "a number")
    noun = kind.split(" ", 1)[1]
    if max_val is None and min_val == 0:  # the plain words for the common ranges
        what = f"a positive {noun}" if low == "(" else f"a non-negative {noun}"
    elif max_val is None and min_val == 1 and target_type is int and low == "[":
        what = "a positive integer"
    else:
        what = kind + where
    message = f"{name} must be {what}, got {name}={x!r}{tail}"
    if target_type is int:
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise ValueError(message)
        value = int(x)
    else:
        if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
            raise ValueError(message)
        value = float(x)
        if not np.isfinite(value):
            raise ValueError(message)
    too_low = min_val is not None and (value < min_val if low == "[" else value <= min_val)
    too_high = max_val is not None and (value > max_val if high == "]" else value >= max_val)
    if too_low or too_high:
        raise ValueError(message)
    return value


def check_choice(value, choices, name: str, hint: str = ""):
    """Return ``value`` if it is one of ``choices``, else ValueError "unknown NAME; use one of ..."."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # an unhashable value against dict keys
        ok = False
    if not ok:
        tail = f" ({hint})" if hint else ""
        raise ValueError(f"unknown {name} {value!r}; use one of {', '.join(map(repr, choices))}{tail}")
    return value


def check_kernel(kernel: str) -> str:
    """``kernel`` must be ``"linear"`` (the paper, Eq. 10-11) or ``"rbf"`` (Gaussian)."""
    return check_choice(kernel, KERNELS, "kernel")


def check_linkage(linkage: str) -> str:
    """``linkage`` must be one of Algorithm 1's linkages: single (the paper), complete, average."""
    return check_choice(linkage, LINKAGES, "linkage")


def check_m(m) -> int:
    """m, the number of mini-datasets per trial: an integer >= 2."""
    return check_scalar(m, "m", int, min_val=2, hint="m is the number of mini-datasets: one "
                        "member and at least one non-member")


def check_n(n) -> int:
    """n, the samples per mini-dataset: an integer >= 2 (Eq. 10 averages over pairs i != j)."""
    return check_scalar(n, "n", int, min_val=2, hint="n is the number of samples per "
                        "mini-dataset; the unbiased MMD (Eq. 10) averages over pairs i != j")


def check_positive_int(value, name: str) -> int:
    """``value`` must be a positive integer (``True`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_rate(rate, name: str = "rate") -> float:
    """A pruning rate: a number in [0, 1)."""
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}") from None
    return check_scalar(value, name, float, min_val=0.0, max_val=1.0, include_boundaries="left",
                        hint="e.g. 0.5 prunes half the weights")


def check_pool_sizes(n_P: int, n_Q: int, m: int, n: int) -> None:
    """A trial draws n members from P and n(m-1) distinct non-members from Q."""
    if n_P == 0 or n_Q == 0:
        which = "P (members)" if n_P == 0 else "Q (non-members)"
        raise ValueError(f"the pool {which} is empty; check the class r and the data split")
    if n_P < n:
        raise ValueError(
            f"n={n} is larger than the member pool P ({n_P} samples); use n <= {n_P}"
        )
    if n_Q < n * (m - 1):
        raise ValueError(
            f"the non-member pool Q has {n_Q} samples, but m={m}, n={n} needs n(m-1)="
            f"{n * (m - 1)} distinct ones; lower n to <= {n_Q // (m - 1)} or m"
        )


def rng_from(rng) -> np.random.Generator:
    """Accept None, an int seed or a Generator; return a Generator."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise ValueError(f"rng must be None, an int seed or numpy.random.Generator, got {type(rng)}")
