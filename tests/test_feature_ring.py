"""Tests for fractalsync_dsp.feature_ring.FeatureRing against a plain list reference."""

from __future__ import annotations

import sys
import threading
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.feature_ring import FeatureRing


def _frame(i: int, dim: int) -> np.ndarray:
    """Frame number i: distinct, exactly representable values."""
    return (np.arange(dim) + 1000.0 * (i + 1)).astype(np.float32)


def _ref_last(frames: list[np.ndarray], T: int, dim: int) -> np.ndarray:
    """Plain reference: zero rows first, then the last min(T, len) frames, oldest first."""
    kept = frames[len(frames) - T :] if T <= len(frames) else frames
    pad = [np.zeros(dim, np.float32)] * (T - len(kept))
    rows = pad + list(kept)
    return np.array(rows, np.float32).reshape(T, dim)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.just(1)),
        st.tuples(st.just("extend"), st.integers(0, 25)),
        st.tuples(st.just("read"), st.integers(0, 10_000)),
        st.tuples(st.just("read_out"), st.integers(0, 10_000)),
    ),
    max_size=60,
)


@settings(max_examples=50, deadline=None)
@given(capacity=st.integers(1, 12), dim=st.integers(1, 5), ops=OPS)
def test_matches_list_reference(capacity, dim, ops):
    ring, frames = FeatureRing(capacity, dim), []
    for op, arg in ops:
        if op == "append":
            frames.append(_frame(len(frames), dim))
            ring.append(frames[-1])
        elif op == "extend":
            new = [_frame(len(frames) + j, dim) for j in range(arg)]
            frames.extend(new)
            ring.extend(np.array(new, np.float32).reshape(arg, dim))
        else:
            T = arg % (capacity + 1)
            out = np.full((T, dim), -1.0, np.float32) if op == "read_out" else None
            got = ring.last(T, out=out)
            if out is not None:
                assert got is out
            np.testing.assert_array_equal(got, _ref_last(frames, T, dim))
        assert ring.frames_written == len(frames)
        assert ring.count == min(len(frames), capacity)
    for T in range(capacity + 1):
        np.testing.assert_array_equal(ring.last(T), _ref_last(frames, T, dim))


@settings(max_examples=50, deadline=None)
@given(
    capacity=st.integers(1, 10),
    dim=st.integers(1, 4),
    batches=st.lists(st.integers(0, 15), max_size=15),
    read_sizes=st.lists(st.integers(0, 10), min_size=1, max_size=7),
)
def test_reading_0_or_100_times_changes_nothing(capacity, dim, batches, read_sizes):
    quiet, busy = FeatureRing(capacity, dim), FeatureRing(capacity, dim)
    n = 0
    for k in batches:
        block = np.array([_frame(n + j, dim) for j in range(k)], np.float32).reshape(k, dim)
        n += k
        quiet.extend(block)
        busy.extend(block)
        for r in range(100):  # 100 polls of assorted sizes, with and without out=
            T = read_sizes[r % len(read_sizes)] % (capacity + 1)
            busy.last(T, out=np.empty((T, dim), np.float32) if r % 2 else None)
        for T in range(capacity + 1):
            np.testing.assert_array_equal(busy.last(T), quiet.last(T))
        assert busy.frames_written == quiet.frames_written == n


def test_padding_before_capacity_is_reached():
    ring = FeatureRing(4, 2)
    ring.append([1.0, 2.0])
    np.testing.assert_array_equal(ring.last(3), [[0, 0], [0, 0], [1, 2]])
    assert ring.count == 1 and ring.frames_written == 1
    assert ring.last(0).shape == (0, 2)


def test_extend_longer_than_capacity_keeps_newest():
    ring = FeatureRing(3, 1)
    ring.extend(np.arange(10, dtype=np.float32)[:, None])
    np.testing.assert_array_equal(ring.last(3)[:, 0], [7, 8, 9])
    assert ring.frames_written == 10 and ring.count == 3


def test_last_returns_copy_not_view():
    ring = FeatureRing(3, 2)
    ring.append([1.0, 1.0])
    got = ring.last(1)
    ring.append([2.0, 2.0])
    np.testing.assert_array_equal(got, [[1, 1]])


def test_clear():
    ring = FeatureRing(3, 2)
    ring.extend(np.ones((5, 2)))
    ring.clear()
    assert ring.frames_written == 0 and ring.count == 0
    np.testing.assert_array_equal(ring.last(3), np.zeros((3, 2)))


def test_other_dtype_ring():
    ring = FeatureRing(2, 3, dtype=np.float64)
    ring.append(np.array([1, 2, 3], np.int16))
    got = ring.last(1)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [[1, 2, 3]])


@pytest.mark.parametrize(
    ("capacity", "dim"), [(0, 3), (3, 0), (-1, 3), (2.5, 3), (True, 3), (3, "4")]
)
def test_bad_construction(capacity, dim):
    with pytest.raises(ValueError, match="must be an int >= 1"):
        FeatureRing(capacity, dim)


def test_bad_calls():
    ring = FeatureRing(4, 3)
    with pytest.raises(ValueError, match=r"frame must have shape \(3,\)"):
        ring.append(np.zeros(4))
    with pytest.raises(ValueError, match=r"frames must have shape \(k, 3\)"):
        ring.extend(np.zeros(3))
    for T in (-1, 5, 1.0, True):
        with pytest.raises(ValueError, match=r"T must be an int in \[0, 4\]"):
            ring.last(T)
    with pytest.raises(ValueError, match="out must have shape"):
        ring.last(2, out=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        ring.last(2, out=np.zeros((2, 3), np.float64))
    assert ring.frames_written == 0


def test_append_and_read_into_out_allocate_no_array_data():
    dim = 8192  # one frame = 32 KiB, far above any Python object overhead
    ring = FeatureRing(16, dim)
    frame = np.ones(dim, np.float32)
    out = np.empty((16, dim), np.float32)
    ring.append(frame)
    ring.last(16, out=out)  # warm up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(100):
            ring.append(frame)
            ring.last(16, out=out)
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        ring.last(16)  # without out=, the result (512 KiB) is allocated: the probe sees it
        peak_alloc = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 4 * dim
    assert peak_alloc >= 16 * 4 * dim


def test_concurrent_reader_sees_consecutive_complete_frames():
    capacity, dim, n = 8, 64, 20_000
    ring = FeatureRing(capacity, dim)
    frames = np.repeat(np.arange(1, n + 1, dtype=np.float32)[:, None], dim, axis=1)
    errors: list[str] = []
    reads = [0, 0]

    def read(me: int) -> None:
        out = np.empty((capacity, dim), np.float32)
        while ring.frames_written < n and not errors:
            rows = ring.last(capacity, out=out)
            first = rows[:, :1]
            if not (rows == first).all():
                errors.append("torn frame")
            got = first[:, 0]
            data = got[got > 0]
            if not (np.diff(data) == 1).all() or (got[: capacity - len(data)] != 0).any():
                errors.append(f"not consecutive: {got}")
            reads[me] += 1  # a reader that crashed (an exception ends only its thread) reads 0

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        readers = [threading.Thread(target=read, args=(me,)) for me in range(2)]
        for t in readers:
            t.start()
        for i in range(n):
            ring.append(frames[i])
        for t in readers:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors[:3]
    assert min(reads) > 0, reads  # both readers really read (and checked) while it wrote
