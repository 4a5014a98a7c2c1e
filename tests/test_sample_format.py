"""Sample-format rules: the numba scan and repair kernels against numpy, dtype rules, the strict
errors and the repair warning."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fractalsync_dsp import NonFiniteAudioWarning
from fractalsync_dsp.sample_format import (
    MAX_ABS,
    _first_bad_index,
    _repair_into,
    as_float32,
    as_float32_repaired,
)

LIMIT = np.float64(np.float32(MAX_ABS))

values = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -1.0, np.float32(MAX_ABS), -np.float32(MAX_ABS), 1e31, 1e38]),
)


def naive_bad(x: np.ndarray) -> np.ndarray:
    """Mask of the samples both rules treat as bad, computed in float64 by numpy."""
    with np.errstate(over="ignore", invalid="ignore"):
        return ~(np.abs(x.astype(np.float32).astype(np.float64)) <= LIMIT)


def naive_first_bad(flat: np.ndarray) -> int:
    bad = naive_bad(flat)
    return int(np.argmax(bad)) if bad.any() else -1


def naive_repair(x: np.ndarray) -> tuple[np.ndarray, int]:
    """The repair rule in numpy: bad samples -> 0.0, after the dtype rules."""
    if x.dtype in (np.int16, np.int32):
        x = x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
    bad = naive_bad(x)
    with np.errstate(over="ignore"):
        return np.where(bad, np.float32(0), x.astype(np.float32)), int(bad.sum())


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(0, 300), elements=values))
def test_scan_matches_numpy(flat):
    assert _first_bad_index(flat, np.float32(MAX_ABS)) == naive_first_bad(flat)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(0, 300), elements=values), st.booleans())
def test_repair_kernel_matches_numpy(flat, in_place):
    want, want_count = naive_repair(flat)
    src = flat.copy()
    dst = src if in_place else np.full_like(src, 7.0)
    assert _repair_into(src, dst, np.float32(MAX_ABS)) == want_count
    np.testing.assert_array_equal(dst, want)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(0, 50), st.integers(1, 3)), elements=values))
def test_as_float32_accepts_exactly_the_valid_arrays(x):
    bad = naive_first_bad(x.reshape(-1))
    if bad < 0:
        assert np.array_equal(as_float32(x, "x"), x)
    else:
        where = tuple(int(i) for i in np.unravel_index(bad, x.shape))
        with pytest.raises(ValueError, match=rf"first at index \({where[0]}, {where[1]}\)"):
            as_float32(x, "x")


float64_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e30, 1.0000001e30, 1e35, 3.4e38, 3.5e38, 1e300, -1e300]),
)


@settings(max_examples=80, deadline=None)
@given(
    st.one_of(
        arrays(np.float32, st.tuples(st.integers(0, 40), st.integers(1, 3)), elements=values),
        arrays(np.float64, st.integers(0, 100), elements=float64_values),
        arrays(np.int16, st.integers(0, 100)),
        arrays(np.int32, st.tuples(st.integers(0, 30), st.integers(1, 2))),
    )
)
def test_as_float32_repaired_matches_numpy(x):
    before = x.copy()
    want, want_count = naive_repair(x)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, count = as_float32_repaired(x, "x")
    assert got.dtype == np.float32 and got.shape == x.shape and got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)
    assert count == want_count and np.isfinite(got).all()
    np.testing.assert_array_equal(x, before)  # the caller's array is never modified
    assert len(caught) == (1 if count else 0)
    if count:
        assert caught[0].category is NonFiniteAudioWarning
        assert str(caught[0].message).startswith(f"x: {count} NaN/inf samples (of {x.size}) ")


@pytest.mark.parametrize(
    ("x", "replaced"),
    [
        (np.zeros(0, np.float32), 0),
        (np.zeros((0, 2), np.float64), 0),
        (np.array([np.nan], np.float32), 1),
        (np.array([0.25], np.float32), 0),
        (np.full((7, 2), np.nan, np.float32), 14),
        (np.array([np.inf, -np.inf, 0.5], np.float32), 2),
        (np.array([1e38, -1e38, np.float32(MAX_ABS)], np.float32), 2),
        (np.array([1e300, -1e300, 1e35, 0.5]), 3),  # float64 beyond float32 and beyond MAX_ABS
        (np.array([32767, -32768, 0], np.int16), 0),
    ],
    ids=["empty", "empty 2-d float64", "1 NaN", "1 sample", "all NaN", "+-inf", "1e38",
         "float64 beyond float32", "int16"],
)
def test_repair_edge_cases(x, replaced):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got, count = as_float32_repaired(x, "block")
    want, _ = naive_repair(x)
    np.testing.assert_array_equal(got, want)
    assert count == replaced and got.shape == x.shape
    assert [str(w.message) for w in caught] == (
        [f"block: {replaced} NaN/inf samples (of {x.size}) replaced by silence "
         f"(magnitudes above {MAX_ABS:g} count as inf)"] if replaced else []
    )


def test_repair_never_aliases_the_input():
    """Clean float32 input is copied too, so the caller may reuse its buffer."""
    x = np.linspace(-1, 1, 9, dtype=np.float32)
    got, count = as_float32_repaired(x, "x")
    assert count == 0 and not np.shares_memory(got, x)
    read_only = np.frombuffer(np.array([np.nan, 0.5], np.float32).tobytes(), np.float32)
    got, count = as_float32_repaired(read_only, "x", warn=False)
    np.testing.assert_array_equal(got, [0.0, 0.5])
    reversed_view = np.array([[1.0, np.inf], [2.0, 3.0]], np.float32)[::-1, ::-1]
    got, count = as_float32_repaired(reversed_view, "x", warn=False)
    np.testing.assert_array_equal(got, [[3.0, 2.0], [0.0, 1.0]])


def test_repair_warn_false_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_float32_repaired(np.full(5, np.nan, np.float32), "x", warn=False)[1] == 5


def test_integer_scaling_and_dtypes():
    np.testing.assert_array_equal(
        as_float32(np.array([32767, -32767, 0], np.int16), "x"), [1.0, -1.0, 0.0]
    )
    assert as_float32(np.array([2**31 - 1], np.int32), "x")[0] == 1.0
    assert as_float32(np.zeros(3, np.float64), "x").dtype == np.float32
    for fn in (as_float32, as_float32_repaired):
        for dtype in (np.int64, np.uint8, bool, np.complex64, object):
            with pytest.raises(TypeError, match=r"block must be .* got dtype"):
                fn(np.zeros(3, dtype), "block")
