"""fractalsync_serve inputs: the stdin PCM source and the --fast file source feed the engine the
same blocks, so their publications agree exactly; stdin chunking never changes the samples."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_serve.engine import ServeEngine
from fractalsync_serve.inputs import FastFileSource, StdinSource
from fractalsync_serve.publisher import Publisher
from fractalsync_tracking.slow_clock import SlowClock


def _writer(fd: int, data: bytes, chunks: list[int]) -> threading.Thread:
    def run():
        pos, i = 0, 0
        while pos < len(data):
            size = chunks[i % len(chunks)] if chunks else len(data)
            os.write(fd, data[pos:pos + size])
            pos += size
            i += 1
        os.close(fd)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _read_all(source, block: int) -> list[np.ndarray]:
    out, buf = [], np.zeros((block, 1), np.float32)
    while True:
        n = source.read(buf)
        if n is None:
            return out
        if n:
            out.append(buf[:n, 0].copy())


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 5000), st.lists(st.integers(1, 9000), max_size=6),
       st.integers(0, 3), st.integers(1, 2048))
@example(0, [], 0, 1024)  # empty stream
@example(1, [1], 0, 1024)  # one sample, written byte by byte
@example(1024, [4096], 3, 1024)  # exactly one block and a torn last sample
def test_stdin_blocks_are_whole_and_carry_every_sample(n, chunks, torn, block):
    x = np.random.default_rng(n).standard_normal(n).astype("<f4")
    data = x.tobytes() + b"\x7f" * torn
    r, w = os.pipe()
    writer = _writer(w, data, chunks)
    try:
        blocks = _read_all(StdinSource(48000, r), block)
    finally:
        writer.join()
        os.close(r)
    assert all(len(b) == block for b in blocks[:-1])  # whole blocks; the rest at the end
    got = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    assert np.array_equal(got, x)  # an incomplete last sample is discarded


@pytest.mark.usefixtures("beatnet_models_dir")
def test_stdin_and_fast_file_publish_the_same_states():
    from fractalsync_models.training.song_generator import generate_song

    audio = generate_song(7, sample_rate=48000, duration_s=30).audio[: 48000 * 12]
    audio = audio.astype(np.float32)

    def publications(source):
        got = []
        publisher = Publisher()
        publisher.add_sink("collect", got.append)
        ServeEngine(source, SlowClock(48000), publisher).run()
        return [(p.seq, p.state, p.events, p.stream_time, p.clock) for p in got]

    r, w = os.pipe()
    writer = _writer(w, audio.astype("<f4").tobytes(), [3000, 70001, 4])
    try:
        piped = publications(StdinSource(48000, r))
    finally:
        writer.join()
        os.close(r)
    batch = publications(FastFileSource(audio[:, None], 48000, "song"))
    assert len(batch) == -(-len(audio) // 1024)
    assert piped == batch
