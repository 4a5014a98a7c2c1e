"""Sample-format validation: the numba scan against numpy, dtype rules, error messages."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fractalsync_dsp.sample_format import MAX_ABS, _first_bad_index, as_float32

values = st.one_of(
    st.floats(width=32, allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1.0, -1.0, np.float32(MAX_ABS), -np.float32(MAX_ABS), 1e31]),
)


def naive_first_bad(flat: np.ndarray) -> int:
    bad = ~(np.abs(flat.astype(np.float64)) <= np.float64(np.float32(MAX_ABS)))
    return int(np.argmax(bad)) if bad.any() else -1


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.integers(0, 300), elements=values))
def test_scan_matches_numpy(flat):
    assert _first_bad_index(flat, np.float32(MAX_ABS)) == naive_first_bad(flat)


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


def test_integer_scaling_and_dtypes():
    np.testing.assert_array_equal(
        as_float32(np.array([32767, -32767, 0], np.int16), "x"), [1.0, -1.0, 0.0]
    )
    assert as_float32(np.array([2**31 - 1], np.int32), "x")[0] == 1.0
    assert as_float32(np.zeros(3, np.float64), "x").dtype == np.float32
    for dtype in (np.int64, np.uint8, bool, np.complex64, object):
        with pytest.raises(TypeError, match="dtype"):
            as_float32(np.zeros(3, dtype), "block")
