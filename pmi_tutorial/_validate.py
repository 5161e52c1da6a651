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


def check_kernel(kernel: str) -> str:
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; use one of {', '.join(map(repr, KERNELS))}")
    return kernel


def check_linkage(linkage: str) -> str:
    if linkage not in LINKAGES:
        raise ValueError(
            f"unknown linkage {linkage!r}; use one of {', '.join(map(repr, LINKAGES))}"
        )
    return linkage


def check_m(m) -> int:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise ValueError(f"m must be an integer >= 2 (the number of mini-datasets), got {m!r}")
    if m < 2:
        raise ValueError(
            f"m must be >= 2 (one member mini-dataset and at least one non-member), got m={m}"
        )
    return int(m)


def check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be an integer >= 2 (samples per mini-dataset), got {n!r}")
    if n < 2:
        raise ValueError(
            f"n must be >= 2: the unbiased MMD (Eq. 10) averages over pairs i != j, got n={n}"
        )
    return int(n)


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_rate(rate, name: str = "rate") -> float:
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1), got {rate!r}") from None
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}; e.g. 0.5 prunes half the weights")
    return rate


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
