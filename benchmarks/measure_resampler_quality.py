"""Measure soxr's quality settings for the live 48 kHz -> 22050 Hz path.

Run:  .venv/bin/python benchmarks/measure_resampler_quality.py [path/to/audio]

For each soxr quality (QQ, LQ, MQ, HQ, VHQ), streaming 1024-sample blocks at 48 kHz, it prints:
- align: where an impulse at input time t comes out, minus t*22050 (output samples);
- latency: output samples owed but not yet emitted after a push (pushed*ratio - emitted),
  mean and max, also in ms;
- per-push output size: min/max after the first second, pushes that emit nothing;
- gain in dB of sines in the passband (1k, 5k, 8k, 10k, 10.5k Hz);
- rejection in dB of sines above the 11025 Hz output Nyquist (12k, 14k, 20k Hz), whose
  aliases land at 22050 - f;
- snr: streamed output against soxr HQ batch resampling (how the shared reference excerpts,
  hence the parity features, were made) of a real recording (the Vibe Ace track in the shared
  audio folder, or the given file), in dB ("exact" if bit-identical);
- cpu: median microseconds per 1024-sample push.
The numbers quoted in fractalsync_dsp.resample.StreamResampler come from this script.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import soxr

from fractalsync_dsp.audio_io import load_audio
from fractalsync_dsp.resample import QUALITIES, StreamResampler, resample, to_mono

SR_IN, SR_OUT, BLOCK = 48000, 22050, 1024
RATIO = SR_OUT / SR_IN
DEFAULT_AUDIO = Path(__file__).resolve().parents[2] / "shared/audio/Kevin_MacLeod_-_Vibe_Ace.ogg"


def _stream(x: np.ndarray, quality: str) -> tuple[np.ndarray, list[int], list[float]]:
    rs = StreamResampler(SR_IN, SR_OUT, quality=quality)
    outs, sizes, owed = [], [], []
    pushed = emitted = 0
    for i in range(0, len(x), BLOCK):
        y = rs.push(x[i : i + BLOCK])
        pushed += len(x[i : i + BLOCK])
        emitted += len(y)
        outs.append(y)
        sizes.append(len(y))
        owed.append(pushed * RATIO - emitted)
    outs.append(rs.flush())
    return np.concatenate(outs), sizes, owed


def _tone_gain_db(freq: float, quality: str) -> float:
    n = SR_IN * 2
    t = np.arange(n) / SR_IN
    x = np.sin(2 * np.pi * freq * t).astype(np.float32)
    y, _, _ = _stream(x, quality)
    mid = y[len(y) // 4 : 3 * len(y) // 4].astype(np.float64)
    return 10 * np.log10(np.mean(mid**2) / 0.5 + 1e-30)


def _align(quality: str) -> float:
    x = np.zeros(SR_IN, np.float32)
    x[4800] = 1.0  # t = 0.1 s -> output index 2205
    y, _, _ = _stream(x, quality)
    k = int(np.argmax(np.abs(y)))
    w = y[k - 3 : k + 4].astype(np.float64) ** 2
    return float(k - 3 + np.sum(w * np.arange(7)) / np.sum(w) - 0.1 * SR_OUT)


def _snr_db(x48: np.ndarray, quality: str) -> str:
    ref = resample(x48, SR_IN, SR_OUT, quality="HQ").astype(np.float64)
    y, _, _ = _stream(x48, quality)
    assert len(y) == len(ref)
    err = np.sum((y - ref) ** 2)
    return "exact" if err == 0 else f"{10 * np.log10(np.sum(ref**2) / err):.1f}"


def _cpu_us(x48: np.ndarray, quality: str) -> float:
    rs = StreamResampler(SR_IN, SR_OUT, quality=quality)
    times = []
    for i in range(0, len(x48) - BLOCK, BLOCK):
        t0 = time.perf_counter_ns()
        rs.push(x48[i : i + BLOCK])
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times) / 1e3)


def main() -> None:
    audio = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_AUDIO
    x, sr = load_audio(audio)
    x48 = resample(to_mono(x)[: 30 * sr], sr, SR_IN, quality="VHQ")
    print(f"soxr {soxr.__version__}; 48000 -> 22050 Hz, blocks of {BLOCK}; audio: {audio.name}")
    head = "quality align  lat_mean lat_max(ms)  out/push min..max zero-pushes"
    print(head + "  gain dB @1k/5k/8k/9k/10k/10.5k   reject dB @12k/14k/20k  snr_dB  cpu_us")
    for q in QUALITIES:
        _, sizes, owed = _stream(np.zeros(10 * SR_IN, np.float32), q)
        steady = sizes[SR_IN // BLOCK :]
        gains = [_tone_gain_db(f, q) for f in (1000, 5000, 8000, 9000, 10000, 10500)]
        rejects = [_tone_gain_db(f, q) for f in (12000, 14000, 20000)]
        print(
            f"{q:7s} {_align(q):+5.2f}  {np.mean(owed):7.1f} {np.max(owed):6.1f}"
            f" ({1e3 * np.max(owed) / SR_OUT:4.1f})   {min(steady):4d}..{max(steady):4d}"
            f"   {sum(s == 0 for s in sizes):4d}/{len(sizes)}"
            "   " + "/".join(f"{g:+.2f}" for g in gains)
            + "   " + "/".join(f"{r:.0f}" for r in rejects)
            + f"   {_snr_db(x48, q):>5s}  {_cpu_us(x48, q):6.1f}"
        )


if __name__ == "__main__":
    main()
