"""BlockRing: random write/read sequences against a plain deque model, input errors, no
allocation on write/read, wait_readable, and a real producer/consumer thread pair."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections import deque

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_dsp.block_ring import BlockRing


def _samples(start: int, n: int, channels: int) -> np.ndarray:
    """Samples number start..start+n-1, channel c of sample i holding i + 0.25 * c (exact)."""
    i = np.arange(start, start + n, dtype=np.float32)[:, None]
    return i + 0.25 * np.arange(channels, dtype=np.float32)[None, :]


OPS = st.lists(
    st.tuples(st.sampled_from(["write", "read"]), st.integers(0, 20), st.booleans()),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(capacity=st.integers(1, 12), channels=st.integers(1, 3), ops=OPS)
@example(capacity=1, channels=1, ops=[("write", 1, True), ("write", 1, True), ("read", 1, True)])
@example(capacity=5, channels=2, ops=[("write", 7, False), ("read", 3, False),
                                      ("write", 3, False), ("read", 20, False)])
def test_matches_a_deque_model(capacity, channels, ops):
    ring, model = BlockRing(capacity, channels), deque()
    n_made = n_dropped = n_read = 0
    for op, n, flat in ops:
        flat = flat and channels == 1  # (n,) blocks only for a mono ring
        if op == "write":
            block = _samples(n_made, n, channels)
            n_made += n
            fits = min(n, capacity - len(model))
            model.extend(block[:fits])
            n_dropped += n - fits
            assert ring.write(block[:, 0] if flat else block) == fits
        else:
            out = np.full((n, channels), -1.0, np.float32)
            k = ring.read(out[:, 0] if flat else out)
            want = [model.popleft() for _ in range(min(n, len(model)))]
            assert k == len(want)
            n_read += k
            np.testing.assert_array_equal(out[:k], np.array(want).reshape(k, channels))
            assert np.all(out[k:] == -1.0)  # rows past the count untouched
        assert ring.available == len(model)
        assert ring.dropped_samples == n_dropped
        assert ring.read_total == n_read
        assert ring.written_total == n_read + len(model)


def test_non_contiguous_blocks_and_outputs():
    ring = BlockRing(8, 2)
    big = _samples(0, 6, 4)
    assert ring.write(big[::2, 1:3]) == 3  # strided rows and columns
    out = np.zeros((4, 4), np.float32)
    assert ring.read(out[:, ::2]) == 3
    np.testing.assert_array_equal(out[:3, ::2], big[::2, 1:3])


@pytest.mark.parametrize(
    "args, exc, match",
    [
        ((0,), ValueError, "capacity_samples"),
        ((-3,), ValueError, "capacity_samples"),
        ((True,), ValueError, "capacity_samples"),
        ((4.0,), ValueError, "capacity_samples"),
        ((4, 0), ValueError, "channels"),
        ((4, "2"), ValueError, "channels"),
    ],
)
def test_constructor_errors(args, exc, match):
    with pytest.raises(exc, match=match):
        BlockRing(*args)


@pytest.mark.parametrize(
    "channels, block, exc, match",
    [
        (1, np.zeros(4, np.float64), TypeError, "float32"),
        (1, np.zeros(4, np.int16), TypeError, "float32"),
        (1, [0.0, 1.0], TypeError, "numpy"),
        (1, np.zeros((4, 2), np.float32), ValueError, r"\(n,\) or \(n, 1\)"),
        (2, np.zeros(4, np.float32), ValueError, r"\(n, 2\)"),
        (2, np.zeros((4, 3), np.float32), ValueError, r"\(n, 2\)"),
        (1, np.zeros((2, 2, 1), np.float32), ValueError, "shape"),
        (1, np.float32(1.0), TypeError, "numpy"),
    ],
)
def test_bad_blocks_and_outputs_are_refused_and_change_nothing(channels, block, exc, match):
    ring = BlockRing(8, channels)
    ring.write(_samples(0, 3, channels) if channels > 1 else _samples(0, 3, 1)[:, 0])
    with pytest.raises(exc, match=match):
        ring.write(block)
    with pytest.raises(exc, match=match):
        ring.read(block)
    assert (ring.available, ring.written_total, ring.read_total, ring.dropped_samples) == (
        3, 3, 0, 0)


def test_non_finite_samples_are_stored_as_given():
    ring = BlockRing(4)
    block = np.array([np.nan, np.inf, -np.inf, 3e38], np.float32)
    assert ring.write(block) == 4
    out = np.zeros(4, np.float32)
    ring.read(out)
    np.testing.assert_array_equal(out, block)


def test_write_and_read_allocate_no_array_data():
    ring = BlockRing(10_000, 2)
    block = _samples(0, 4096, 2)  # 32 KiB: any temporary copy would show
    out = np.zeros((4096, 2), np.float32)
    for _ in range(3):  # warm-up
        ring.write(block)
        ring.read(out)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(200):
            assert ring.write(block) == 4096
            assert ring.read(out) == 4096
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 8192, f"write/read allocated: peak +{peak - base} bytes"
    assert current - base < 1024


def test_wait_readable():
    ring = BlockRing(100)
    assert ring.wait_readable(0, 0.0)
    t0 = time.monotonic()
    assert not ring.wait_readable(1, 0.02)
    assert time.monotonic() - t0 >= 0.02
    ring.write(np.zeros(10, np.float32))
    assert ring.wait_readable(10, 0.0)
    assert not ring.wait_readable(11, 0.0)

    def late_writer():
        time.sleep(0.05)
        ring.write(np.zeros(50, np.float32))

    writer = threading.Thread(target=late_writer)
    writer.start()
    assert ring.wait_readable(60, None)  # no time limit: returns once the writer has written
    writer.join()
    assert ring.available == 60


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_samples": 101, "timeout": 0.0}, "min_samples"),
        ({"min_samples": -1, "timeout": 0.0}, "min_samples"),
        ({"min_samples": 1.5, "timeout": 0.0}, "min_samples"),
        ({"min_samples": 1, "timeout": -1.0}, "timeout"),
        ({"min_samples": 1, "timeout": float("nan")}, "timeout"),
        ({"min_samples": 1, "timeout": 0.0, "poll_interval": 0.0}, "poll_interval"),
        ({"min_samples": 1, "timeout": 0.0, "poll_interval": float("inf")}, "poll_interval"),
    ],
)
def test_wait_readable_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockRing(100).wait_readable(**kwargs)


def test_two_threads_deliver_every_sample_in_order():
    """A producer writes 600 000 two-channel samples in random-sized blocks, re-sending what
    the full ring dropped; a consumer reads in other random sizes. The consumer gets exactly
    the samples written, in order, and the counters stay consistent throughout."""
    total, channels, capacity = 600_000, 2, 3000
    ring = BlockRing(capacity, channels)
    data = _samples(0, total, channels)
    got = np.zeros((total, channels), np.float32)
    errors = []

    attempted = [0]

    def producer():
        try:
            rng = np.random.default_rng(1)
            i = 0
            while i < total:
                n = min(int(rng.integers(0, 2000)), total - i)
                k = ring.write(data[i:i + n])
                attempted[0] += n
                assert 0 <= k <= n
                i += k
                if k < n:
                    time.sleep(0)  # the ring is full: let the consumer run
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    def consumer():
        try:
            rng = np.random.default_rng(2)
            i = 0
            while i < total:
                if not ring.wait_readable(1, 10.0, poll_interval=0.0005):
                    raise AssertionError("no data for 10 s")
                avail = ring.available
                assert 1 <= avail <= capacity
                n = int(rng.integers(1, 2500))
                k = ring.read(got[i:i + min(n, total - i)])
                assert k >= min(n, total - i, avail)
                i += k
                assert ring.read_total == i
                assert ring.written_total - ring.read_total == ring.available >= 0
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    np.testing.assert_array_equal(got, data)
    assert ring.written_total == ring.read_total == total
    assert ring.available == 0
    # the producer re-sent what was dropped: every attempted sample was stored or counted
    assert ring.dropped_samples == attempted[0] - total
