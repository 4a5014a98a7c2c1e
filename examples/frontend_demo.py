"""Analyse a song with the BeatNet front end and write its spectrogram as a PNG.

    python examples/frontend_demo.py [AUDIO] [--out demo_output/frontend.png]

With no AUDIO it analyses the bundled demo song, "Vibe Ace" by Kevin MacLeod (CC BY 3.0, see
data/audio/Kevin_MacLeod_-_Vibe_Ace.txt). The PNG shows the 136-band log spectrogram (top) and
its positive first difference (bottom), low bands at the bottom of each panel, time left to
right. It prints the measured front-end throughput (frames per second and times real time).
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

from fractalsync_dsp.audio_io import AudioLoadError, load_audio
from fractalsync_dsp.frontend import HOP, N_BANDS, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.resample import resample, to_mono

DEMO_SONG = Path(__file__).resolve().parents[1] / "data/audio/Kevin_MacLeod_-_Vibe_Ace.ogg"

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
    """Write an (H, W, 3) uint8 image as an 8-bit RGB PNG (atomically: temp file + rename)."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(height))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6))
    png += chunk(b"IEND", b"")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(png)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="?", type=Path, default=DEMO_SONG)
    parser.add_argument("--out", type=Path, default=Path("demo_output/frontend.png"))
    args = parser.parse_args(argv)

    try:
        audio, rate = load_audio(args.audio)
    except AudioLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    x = resample(to_mono(audio), rate, SAMPLE_RATE)
    front_end = BeatNetFrontEnd()
    front_end.features(x[: SAMPLE_RATE])  # warm-up: numba kernels load from cache
    start = time.perf_counter()
    feats = front_end.features(x)
    elapsed = time.perf_counter() - start

    scale = 3  # pixels per band row
    panels = [feats[:, :N_BANDS].T[::-1], feats[:, N_BANDS:].T[::-1]]
    rows = [np.repeat(colourise(p), scale, axis=0) for p in panels]
    gap = np.full((6, feats.shape[0], 3), 255, np.uint8)
    write_png(args.out, np.concatenate([rows[0], gap, rows[1]], axis=0))

    seconds = len(x) / SAMPLE_RATE
    print(f"analysed {args.audio.name}: {seconds:.1f} s -> {len(feats)} frames of 272 features")
    print(
        f"front end (batch): {len(feats) / elapsed:,.0f} frames/s, "
        f"{seconds / elapsed:,.0f}x real time ({1e6 * elapsed / len(feats):.1f} us/frame, "
        f"hop {1e3 * HOP / SAMPLE_RATE:.0f} ms)"
    )
    print(f"wrote {args.out} ({feats.shape[0]} x {2 * N_BANDS * scale + 6} px)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
