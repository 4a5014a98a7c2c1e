"""Track the beats of a song as the live system would, and draw what was found.

    python examples/beat_demo.py [AUDIO] [--out demo_output/beats.png]

With no AUDIO it analyses the bundled demo song, "Vibe Ace" by Kevin MacLeod (CC BY 3.0, see
data/audio/Kevin_MacLeod_-_Vibe_Ace.txt). Three things run and are reported:

1. the BeatNet front end over the whole song (batch), with its measured throughput;
2. the live tracker (``BeatTracker``, BeatNet model 1 and the particle filter) fed the audio in
   20 ms blocks at the file's own rate, as a sound card would deliver it, with the measured
   wall time per block, the first beats as they were reported, and a ``PhasePredictor`` clock
   sampled at 60 frames/s in between (what a visual would draw);
3. the offline beat grid (three-model ensemble, Viterbi), and how well the live beats agree
   with it (beat and downbeat F-measure, +-70 ms), for model 1 and for the live path run with
   the three-model ensemble.

The PNG shows, left to right in time: a strip of the live beats (white ticks, downbeats red),
a strip of the offline grid, then the 136-band log spectrogram and its positive first
difference (low bands at the bottom of each panel).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

import fractalsync_tracking as ft
from fractalsync_dsp.audio_io import AudioLoadError, load_audio
from fractalsync_dsp.frontend import HOP, N_BANDS, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.resample import resample, to_mono
from fractalsync_models.atomic_write import write_atomic
from fractalsync_tracking.metrics import beat_f_measure, downbeat_f_measure
from fractalsync_tracking.online_grid import online_grid_from_audio

DEMO_SONG = Path(__file__).resolve().parents[1] / "data/audio/Kevin_MacLeod_-_Vibe_Ace.ogg"
BLOCK_S = 0.02  # a sound card's block: 20 ms
RENDER_FPS = 60.0  # the visual's frame rate, at which the phase predictor is sampled
STRIP = 24  # pixel rows of each beat strip
WHITE, RED, GREY = (255, 255, 255), (230, 40, 40), (40, 40, 40)

# Dark blue -> purple -> orange -> pale yellow, interpolated linearly.
_ANCHORS = np.array(
    [[0, 0, 4], [40, 11, 84], [120, 28, 109], [187, 55, 84], [237, 105, 37], [252, 255, 164]],
    dtype=np.float64,
)


def colourise(values: np.ndarray) -> np.ndarray:
    """Map (H, W) values to (H, W, 3) uint8 colours, scaled by the 99.5th percentile."""
    top = float(np.percentile(values, 99.5)) or 1.0
    pos = np.clip(values / top, 0.0, 1.0) * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def write_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as an 8-bit RGB PNG (atomically, `write_atomic`)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png)


def beat_strip(width: int, beats: np.ndarray, downbeats: np.ndarray) -> np.ndarray:
    """(STRIP, width, 3) image: a tick per beat (white) and downbeat (red), one column per
    20 ms frame (beat at t seconds -> column round(t / hop))."""
    strip = np.full((STRIP, width, 3), GREY, np.uint8)
    for times, colour, top in ((beats, WHITE, STRIP // 3), (downbeats, RED, 0)):
        cols = np.round(np.asarray(times) * SAMPLE_RATE / HOP).astype(int)
        strip[top:, cols[(cols >= 0) & (cols < width)]] = colour
    return strip


def track_live(audio: np.ndarray, rate: float):
    """Push ``audio`` in 20 ms blocks through a BeatTracker, sampling a PhasePredictor at
    RENDER_FPS; return (events, wall time per push in us, predicted next-beat times per render
    tick as (tick_t, next_beat_t) pairs, whether phase/beat count ever ran backwards)."""
    tracker, clock = ft.BeatTracker(), ft.PhasePredictor()
    block = max(1, round(BLOCK_S * rate))
    tracker.push(audio[: 10 * block], rate)  # warm-up: model load and kernels
    tracker.reset()
    events, push_us, predictions = [], [], []
    backwards, last = False, (-1, -1.0)
    tick = 0.0
    for start in range(0, audio.shape[0], block):
        t0 = time.perf_counter_ns()
        out = tracker.push(audio[start : start + block], rate)
        push_us.append((time.perf_counter_ns() - t0) / 1e3)
        events += out.events
        for state in out.states:
            clock.update(state)
        now = min(start + block, audio.shape[0]) / rate
        while clock.state is not None and tick <= now:
            q = clock.query(tick)
            backwards |= (q.beat_count, q.phase) < last
            last = (q.beat_count, q.phase)
            predictions.append((tick, q.next_beat_t))
            tick += 1.0 / RENDER_FPS
        if clock.state is None:
            tick = now
    return events, np.array(push_us), np.array(predictions).reshape(-1, 2), backwards


def prediction_errors(predictions: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """How well the clock sees a beat coming: for each reported beat (from the second on), the
    render tick half-way between it and the previous beat, and the error (s) of that tick's
    predicted next beat, ``|next_beat_t - beat|``."""
    if beats.size < 2 or predictions.size == 0:
        return np.zeros(0)
    half_way = 0.5 * (beats[:-1] + beats[1:])
    idx = np.searchsorted(predictions[:, 0], half_way, side="right") - 1
    ok = idx >= 0
    return np.abs(predictions[idx[ok], 1] - beats[1:][ok])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="?", type=Path, default=DEMO_SONG)
    parser.add_argument("--out", type=Path, default=Path("demo_output/beats.png"))
    args = parser.parse_args(argv)

    try:
        audio, rate = load_audio(args.audio)
    except AudioLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    x = resample(to_mono(audio), rate, SAMPLE_RATE)
    seconds = len(x) / SAMPLE_RATE
    front_end = BeatNetFrontEnd()
    front_end.features(x[:SAMPLE_RATE])  # warm-up: numba kernels load from cache
    start = time.perf_counter()
    feats = front_end.features(x)
    elapsed = time.perf_counter() - start
    print(f"analysed {args.audio.name}: {seconds:.1f} s -> {len(feats)} frames of 272 features")
    print(
        f"front end (batch): {len(feats) / elapsed:,.0f} frames/s, "
        f"{seconds / elapsed:,.0f}x real time ({1e6 * elapsed / len(feats):.1f} us/frame, "
        f"hop {1e3 * HOP / SAMPLE_RATE:.0f} ms)"
    )

    events, push_us, predictions, backwards = track_live(audio, rate)
    beats = np.array([e.t_sec for e in events])
    downs = np.array([e.t_sec for e in events if e.is_downbeat])
    p50, p99 = np.percentile(push_us, [50, 99])
    print(f"live tracker, {len(push_us)} blocks of {1e3 * BLOCK_S:.0f} ms at {rate:g} Hz: "
          f"p50 {p50:.0f} us, p99 {p99:.0f} us per block "
          f"({100 * p99 / (1e6 * BLOCK_S):.2f} % of the block at p99)")
    if beats.size >= 2:
        bpm = 60.0 / np.median(np.diff(beats))
        meter = max(set(e.beats_per_bar for e in events),
                    key=[e.beats_per_bar for e in events].count)
        print(f"  {beats.size} beats, {downs.size} downbeats, {bpm:.1f} BPM, {meter} beats per bar;"
              f" the first beats as reported, then a stretch from the middle:")
        middle = int(np.searchsorted(beats, beats[-1] / 2))
        for e in events[:4] + events[middle:middle + 5]:
            mark = "downbeat" if e.is_downbeat else ""
            print(f"    t={e.t_sec:7.3f} s  beat {e.beat_in_bar}/{e.beats_per_bar}  "
                  f"conf {e.conf:.2f}  {mark}")
    else:
        print("  no beats found")
    errors = prediction_errors(predictions, beats)
    if errors.size:
        print(f"  phase predictor at {RENDER_FPS:.0f} fps: {len(predictions)} render frames, "
              f"half a beat ahead it predicts the next beat within "
              f"{1e3 * np.median(errors):.1f} ms (median), {1e3 * np.percentile(errors, 95):.1f}"
              f" ms (p95); "
              f"{'RAN BACKWARDS' if backwards else 'never ran backwards'}")

    grid = ft.beat_grid(args.audio)
    offline_b, offline_d = np.array(grid.beats), np.array(grid.downbeats)
    tempo = "none" if grid.tempo is None else f"{grid.tempo:.1f} BPM"
    print(f"offline grid (ensemble): {offline_b.size} beats, tempo {tempo}, meter {grid.meter}")
    if offline_b.size:
        ens = online_grid_from_audio(audio, rate, model="ensemble")
        for name, b, d in (("model 1", beats, downs),
                           ("the three-model ensemble", np.array(ens.beats),
                            np.array(ens.downbeats))):
            print(f"  the live path with {name} vs offline: beat F "
                  f"{beat_f_measure(offline_b, b):.3f}, downbeat F "
                  f"{downbeat_f_measure(offline_d, d):.3f}")

    scale = 3  # pixels per band row
    width = feats.shape[0]
    panels = [feats[:, :N_BANDS].T[::-1], feats[:, N_BANDS:].T[::-1]]
    rows = [np.repeat(colourise(p), scale, axis=0) for p in panels]
    gap = np.full((6, width, 3), 255, np.uint8)
    image = np.concatenate([beat_strip(width, beats, downs), gap,
                            beat_strip(width, offline_b, offline_d), gap,
                            rows[0], gap, rows[1]], axis=0)
    write_png(args.out, image)
    print(f"wrote {args.out} ({width} x {image.shape[0]} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
