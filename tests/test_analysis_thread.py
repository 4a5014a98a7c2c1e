"""AnalysisThread with real threads: a producer writes a song faster than real time; the
published states equal a synchronous SlowClock's; reads never block; a slow analysis makes
the ring drop samples instead of blocking the producer; errors reach check()/stop()."""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
import pytest

from fractalsync_dsp.block_ring import BlockRing
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.analysis_thread import AnalysisThread
from fractalsync_tracking.slow_clock import SlowClock
from fractalsync_tracking.slow_state import StructureState

SR = 48000
SANITY_S = 0.05  # a bound far above any real read or write time: a block would show as seconds


@pytest.fixture(scope="module")
def song(beatnet_models_dir):  # the fixture makes sure the ONNX models exist
    return make_item("analysis_thread_test", 110.0, duration=8.0, sample_rate=SR, seed=3).audio


@pytest.fixture(scope="module")
def synchronous(song):
    """The same song through a SlowClock in 1024-sample pushes, in this thread."""
    clock = SlowClock(SR)
    slow, states = [], []
    for i in range(0, len(song), 1024):
        slow.append(clock.push(song[i:i + 1024]))
        states += clock.beat_states_since_last_push
    return slow, states


def produce(ring, x, chunk, pause, resend, write_times):
    """Write x into the ring in `chunk`-sample pieces, sleeping `pause` s between them; with
    `resend`, what the full ring dropped is written again (lossless); the time of every write
    call goes to write_times."""
    i, give_up = 0, time.monotonic() + 60  # a stuck consumer must not hang the test run
    while i < len(x) and time.monotonic() < give_up:
        t0 = time.perf_counter()
        k = ring.write(x[i:i + chunk])
        write_times.append(time.perf_counter() - t0)
        i += k if resend else min(chunk, len(x) - i)
        time.sleep(pause)


def test_publishes_what_a_synchronous_clock_computes(song, synchronous):
    ring = BlockRing(SR)  # 1 s
    worker = AnalysisThread(ring, SlowClock(SR), 1024)
    initial = worker.latest
    assert initial is worker.slow_clock.latest and worker.published_count == 0
    worker.start()
    assert worker.running
    write_times = []
    producer = threading.Thread(target=produce, args=(ring, song, 2048, 0.002, True,
                                                      write_times), daemon=True)
    producer.start()
    seen, reads, drained = [], [], []
    while producer.is_alive() or worker.samples_analysed < len(song) - len(song) % 1024:
        t0 = time.perf_counter()
        state = worker.latest
        reads.append(time.perf_counter() - t0)
        seen.append((worker.published_count, state))
        drained += worker.drain_beat_states()
        worker.check()
        time.sleep(0.001)
    producer.join()
    worker.stop(10, drain=True)
    assert not worker.running
    drained += worker.drain_beat_states()

    slow, states = synchronous
    assert worker.samples_analysed == len(song) == worker.slow_clock.samples_consumed
    assert worker.published_count == len(slow)
    assert worker.latest == slow[-1]
    assert drained == states  # every beat state, once, in order
    # what the reader saw while it ran: states of the synchronous run, never going back
    assert len({id(s) for _, s in seen}) > 10
    counts = [c for c, _ in seen]
    assert counts == sorted(counts)
    times = [s.t_sec for _, s in seen]
    assert times == sorted(times)
    assert set(s for _, s in seen) <= {initial, *slow}  # whole states, never half-built
    assert max(reads) < SANITY_S and max(write_times) < SANITY_S


def test_reads_of_feature_windows_from_another_thread_are_consistent(song):
    """While the worker pushes, the render thread reads feature windows ending at the newest
    stored frame: each is exactly those frames (the seqlock never lets a read mix the frame
    count and the rings of different stores)."""
    song = song[: SR * 4]
    ring, clock = BlockRing(SR), SlowClock(SR)
    worker = AnalysisThread(ring, clock, 1024)
    reference = SlowClock(SR)
    for i in range(0, len(song), 1024):
        reference.push(song[i:i + 1024])
    n_ref = reference.frames_analysed
    frames = reference.feature_window(min(n_ref, 512), 1e9)[-n_ref:]
    row_of = {frames[i].tobytes(): i for i in range(len(frames))}
    assert len(row_of) == len(frames)  # rows are distinct, so a row names its frame

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)  # switch threads often: reads land inside stores
    worker.start()
    producer = threading.Thread(target=produce, args=(ring, song, 1024, 0.0005, True, []),
                                daemon=True)
    producer.start()
    try:
        checked = 0
        while producer.is_alive() or clock.frames_analysed < n_ref - 5:
            j = clock.frames_analysed - 1  # frame j is stored: the window must end at it
            window = clock.feature_window(6, clock.frame_time(j))
            if j >= 5:
                assert row_of[window[-1].tobytes()] == j
                np.testing.assert_array_equal(window, frames[j - 5:j + 1])
                checked += 1
    finally:
        sys.setswitchinterval(switch)
        producer.join()
        worker.stop(10, drain=True)
    assert checked > 20


class SlowStructure:
    """A structure tracker that takes `delay` seconds per update (and fails after `fail_after`
    updates, if given)."""

    def __init__(self, delay, fail_after=None):
        self.delay, self.fail_after, self.updates = delay, fail_after, 0

    def update(self, states):
        self.updates += 1
        if self.fail_after is not None and self.updates > self.fail_after:
            raise RuntimeError("structure model failed")
        time.sleep(self.delay)
        return StructureState.neutral()

    def reset(self):
        self.updates = 0


def test_slow_analysis_drops_samples_instead_of_blocking_the_producer(song):
    ring = BlockRing(8192)
    worker = AnalysisThread(ring, SlowClock(SR, structure=SlowStructure(0.05)), 1024)
    worker.start()
    write_times = []
    produce(ring, song[: SR * 2], 1024, 0.001, False, write_times)  # ~20x real time
    assert ring.dropped_samples > 0
    assert ring.written_total + ring.dropped_samples == SR * 2
    assert max(write_times) < SANITY_S  # a write waiting for a 50 ms analysis step would show
    worker.stop(5)
    assert worker.samples_analysed == ring.read_total
    assert worker.published_count == ring.read_total // 1024


def test_an_analysis_error_reaches_check_and_stop(song):
    ring = BlockRing(4096)
    worker = AnalysisThread(ring, SlowClock(SR, structure=SlowStructure(0.0, fail_after=2)),
                            1024)
    worker.start()
    produce(ring, song[: SR], 1024, 0.001, False, [])  # the ring fills once the thread died
    deadline = time.monotonic() + 10
    while worker.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker.running
    assert worker.published_count == 2
    assert ring.dropped_samples > 0  # nobody reads any more, and the producer went on
    with pytest.raises(RuntimeError, match="structure model failed"):
        worker.check()
    with pytest.raises(RuntimeError, match="structure model failed"):
        worker.stop(1)


def test_control_and_argument_errors(song, synchronous):
    ring, clock = BlockRing(2048, 2), SlowClock(SR)
    with pytest.raises(TypeError, match="BlockRing"):
        AnalysisThread(object(), clock)
    with pytest.raises(TypeError, match="SlowClock"):
        AnalysisThread(ring, object())
    for bad in (0, 2049, 1.5, True):
        with pytest.raises(ValueError, match="block_samples"):
            AnalysisThread(ring, clock, bad)
    with pytest.raises(ValueError, match="beat_queue_size"):
        AnalysisThread(ring, clock, beat_queue_size=0)
    worker = AnalysisThread(ring, clock, 512, beat_queue_size=3)
    worker.stop(1)  # never started: nothing to join
    worker = AnalysisThread(ring, clock, 512, beat_queue_size=3)
    worker.start()
    with pytest.raises(RuntimeError, match="already started"):
        worker.start()
    stereo = np.repeat(song[:SR, None], 2, axis=1)  # both channels equal: the mono mix is song
    produce(ring, stereo, 512, 0.0, True, [])
    deadline = time.monotonic() + 10
    while worker.samples_analysed < SR - SR % 512 and time.monotonic() < deadline:
        time.sleep(0.005)
    worker.stop(5)
    assert worker.samples_analysed == SR - SR % 512
    assert worker.published_count == SR // 512
    n_states = clock.frames_analysed - 4
    assert n_states > 3
    # the queue kept the newest 3 states (of a run whose states equal the synchronous one's)
    assert worker.drain_beat_states() == synchronous[1][n_states - 3:n_states]
