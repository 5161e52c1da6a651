"""The shared input checks: each accepts what it should, converts as documented, and refuses the
rest with one message that names the problem and the fix."""

import math

import numpy as np
import pytest
import torch

from pmi_tutorial import _validate as V


def test_as_float_array_converts_tensors_lists_and_arrays_to_float64():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    for x in (t, t.numpy(), t.tolist()):
        a = V.as_float_array(x, "features", ndim=2)
        assert a.dtype == np.float64 and a.shape == (2, 3)
        np.testing.assert_array_equal(a, np.arange(6.0).reshape(2, 3))


@pytest.mark.parametrize("x, ndim, words", [
    (np.zeros(3), 2, ["must have 2 dimensions", "shape (3,)", "one row per sample"]),
    (np.zeros((2, 2)), 3, ["must have 3 dimensions", "(m, n, d)"]),
    (np.array([[1.0, np.nan], [np.inf, 0.0]]), 2, ["2 NaN or infinite", "diverged model"]),
    (np.array([1 + 2j]), None, ["complex", "real-valued"]),
    (torch.zeros(2, dtype=torch.complex64), None, ["complex", "real-valued"]),
    ([["a", "b"]], None, ["must be numeric", "could not convert"]),
])
def test_as_float_array_refuses_with_the_fix(x, ndim, words):
    with pytest.raises(ValueError) as info:
        V.as_float_array(x, "features", ndim=ndim)
    for w in words:
        assert w in str(info.value)


def brute_in_range(value, low, high, include):
    """The allowed range, spelled out case by case (independent of check_scalar's code)."""
    ok = True
    if low is not None:
        ok &= value >= low if include in ("both", "left") else value > low
    if high is not None:
        ok &= value <= high if include in ("both", "right") else value < high
    return ok


@pytest.mark.parametrize("include", ["both", "left", "right", "neither"])
def test_check_scalar_bounds_match_the_interval(include):
    for value in np.linspace(-0.5, 1.5, 21):
        expected = brute_in_range(value, 0.0, 1.0, include)
        try:
            got = V.check_scalar(float(value), "x", float, min_val=0.0, max_val=1.0,
                                 include_boundaries=include)
            assert expected and got == pytest.approx(value)
        except ValueError as exc:
            assert not expected, (value, include)
            assert "x must be a number in" in str(exc) and f"x={float(value)!r}" in str(exc)


def test_check_scalar_types():
    assert V.check_scalar(np.int64(3), "m", int, min_val=2) == 3
    assert V.check_scalar(2, "lr", float, min_val=0) == 2.0 and isinstance(
        V.check_scalar(2, "lr", float, min_val=0), float)
    for bad in (True, 3.0, "3", None):
        with pytest.raises(ValueError, match="m must be"):
            V.check_scalar(bad, "m", int, min_val=2)
    for bad in (math.nan, math.inf, "0.1", False):
        with pytest.raises(ValueError, match="lr must be"):
            V.check_scalar(bad, "lr", float, min_val=0)
    with pytest.raises(ValueError, match="a positive integer"):
        V.check_scalar(0, "B", int, min_val=1)
    with pytest.raises(ValueError, match="a non-negative number.*; try 0"):
        V.check_scalar(-1.0, "noise", float, min_val=0, hint="try 0")


def test_check_m_n_and_positive_int():
    assert V.check_m(2) == 2 and V.check_n(2) == 2
    with pytest.raises(ValueError, match="m must be.*one member and at least one non-member"):
        V.check_m(1)
    with pytest.raises(ValueError, match="n must be.*pairs i != j"):
        V.check_n(1)
    assert V.check_positive_int(np.int32(5), "B") == 5
    for bad in (0, -1, True, 2.0):
        with pytest.raises(ValueError, match="B must be a positive integer"):
            V.check_positive_int(bad, "B")


def test_check_rate():
    assert V.check_rate(0) == 0.0 and V.check_rate("0.5") == 0.5
    for bad in (1.0, -0.1, "half", None):
        with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
            V.check_rate(bad)


def test_check_choice_names_the_choices():
    assert V.check_choice("rbf", V.KERNELS, "kernel") == "rbf"
    with pytest.raises(ValueError, match="unknown kernel 'cubic'; use one of 'linear', 'rbf'"):
        V.check_kernel("cubic")
    with pytest.raises(ValueError, match="unknown linkage"):
        V.check_linkage("ward")
    with pytest.raises(ValueError, match=r"unknown attack \[1\]"):  # unhashable against dict keys
        V.check_choice([1], {"prune": 1}, "attack")


def test_check_pool_sizes_against_the_trial_needs():
    # a trial draws n members and n (m - 1) distinct non-members: check every small case
    for n_P in range(0, 5):
        for n_Q in range(0, 9):
            for m in (2, 3):
                for n in (2, 3):
                    ok = n_P > 0 and n_Q > 0 and n_P >= n and n_Q >= n * (m - 1)
                    try:
                        V.check_pool_sizes(n_P, n_Q, m, n)
                        assert ok
                    except ValueError as exc:
                        assert not ok
                        assert any(w in str(exc) for w in ("is empty", "use n <=", "lower n"))


def test_rng_from():
    assert V.rng_from(3).integers(1 << 30) == np.random.default_rng(3).integers(1 << 30)
    g = np.random.default_rng(0)
    assert V.rng_from(g) is g
    assert isinstance(V.rng_from(None), np.random.Generator)
    with pytest.raises(ValueError, match="rng must be None, an int seed"):
        V.rng_from("seed")
