"""The instruments of the structured-song generator: numpy synthesis of a song plan's notes.

Every song draws its own :class:`Palette` (drum kit and the timbres of bass, pad, keys, lead and
arpeggio), so no two songs sound alike. Pitched voices are wavetable oscillators: per pitch,
one period of a band-limited harmonic spectrum (a "bright" and a "dark" filtered version,
crossfaded over the note, which gives plucks and electric pianos their decaying brightness),
read with array indexing for the whole note, optionally doubled by a detuned copy, shaped by an
attack/decay/sustain/release envelope. Drums are one-shot samples made once per song (pitch-
dropping sines and filtered noise). Risers are noise sweeps (low-passed noise crossfading into
high-passed noise) plus a rising sine. Each note starts at the sample nearest its time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from .song_parts import DRUM_KEYS, Notes

__all__ = ["Palette", "Timbre", "draw_palette", "render_voice", "reverb"]

#: Samples per wavetable period (a power of two: the phase wraps with a bit mask).
_TABLE = 2048
#: Most harmonics in a wavetable (fewer for high notes: only those below 0.45 * rate).
_MAX_HARMONICS = 48


@dataclass(frozen=True)
class Timbre:
    """A pitched instrument.

    ``shape`` is the unfiltered spectrum (``"saw"``, ``"square"``, ``"soft"``: 1/h**2, or
    ``"organ"``: a few drawbars); ``bright_hz``/``dark_hz`` the cutoff of a 2nd-order low-pass
    roll-off applied to it at the note's start and end of the brightness decay
    (``bright_s`` time constant); ``attack_s``, ``decay_s``, ``sustain`` (0..1), ``release_s``
    the amplitude envelope; ``detune_cents`` a second oscillator (0: none); ``vibrato_cents``
    a 5.5 Hz vibrato depth.
    """

    shape: str
    bright_hz: float
    dark_hz: float
    bright_s: float
    attack_s: float
    decay_s: float
    sustain: float
    release_s: float
    detune_cents: float = 0.0
    vibrato_cents: float = 0.0


@dataclass(frozen=True, eq=False)
class Palette:
    """The sounds of one song: ``timbres`` per pitched voice, drum one-shots per GM key
    (``drums``: key -> float64 samples at ``sample_rate``) and the reverb impulse response."""

    sample_rate: int
    timbres: dict[str, Timbre]
    drums: dict[int, np.ndarray]
    reverb_ir: np.ndarray


def draw_palette(rng: np.random.Generator, sample_rate: int) -> Palette:
    """Draw a song's timbres and drum kit from ``rng`` and make its samples at ``sample_rate``."""

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    timbres = {
        "bass": Timbre(
            str(rng.choice(["saw", "square", "soft"])),
            u(500, 1400),
            u(180, 400),
            u(0.05, 0.3),
            0.004,
            u(0.3, 0.8),
            u(0.4, 0.8),
            0.04,
        ),
        "pad": Timbre(
            str(rng.choice(["saw", "square", "organ"])),
            u(1200, 3000),
            u(900, 2000),
            1.0,
            u(0.15, 0.5),
            1.0,
            0.85,
            u(0.3, 0.6),
            detune_cents=u(6, 14),
        ),
        "keys": Timbre(
            str(rng.choice(["soft", "organ", "saw"])),
            u(2500, 5000),
            u(500, 1200),
            u(0.08, 0.3),
            0.003,
            u(0.5, 1.5),
            u(0.1, 0.3),
            0.12,
        ),
        "lead": Timbre(
            str(rng.choice(["square", "saw", "soft"])),
            u(2500, 6000),
            u(1500, 3000),
            u(0.2, 0.6),
            u(0.005, 0.03),
            u(0.3, 1.0),
            u(0.6, 0.85),
            0.08,
            detune_cents=u(0, 6),
            vibrato_cents=u(8, 25),
        ),
        "arp": Timbre(
            str(rng.choice(["saw", "square", "soft"])),
            u(3000, 7000),
            u(400, 1000),
            u(0.04, 0.12),
            0.002,
            u(0.12, 0.3),
            0.0,
            0.05,
        ),
    }
    sr = int(sample_rate)
    return Palette(
        sample_rate=sr,
        timbres=timbres,
        drums=_drum_kit(rng, sr),
        reverb_ir=_reverb_ir(rng, sr, u(0.25, 0.6)),
    )


# --- drums --------------------------------------------------------------------------------------


def _t(seconds: float, sr: int) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def _band_noise(rng: np.random.Generator, n: int, sr: int, low: float, high: float | None):
    """White noise band-limited to [low, high] Hz (high None: high-pass only), peak 1."""
    nyq = 0.5 * sr
    if high is None or high >= 0.9 * nyq:
        sos = butter(4, min(low, 0.8 * nyq), btype="highpass", fs=sr, output="sos")
    else:
        sos = butter(2, [low, high], btype="bandpass", fs=sr, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    return x / np.max(np.abs(x))


def _drum_kit(rng: np.random.Generator, sr: int) -> dict[int, np.ndarray]:
    """One-shot samples per GM key of :data:`.song_parts.DRUM_KEYS`, peak about 1."""

    def u(a: float, b: float) -> float:
        return float(rng.uniform(a, b))

    def drop(f_hi: float, f_lo: float, fall_s: float, decay_s: float, length_s: float):
        t = _t(length_s, sr)
        f = f_lo + (f_hi - f_lo) * np.exp(-t / fall_s)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / decay_s)

    kick_t = _t(0.5, sr)
    kick = drop(u(110, 200), u(42, 60), u(0.02, 0.05), u(0.12, 0.3), 0.5)
    kick += 0.25 * rng.standard_normal(kick.size) * np.exp(-kick_t / 0.002)
    snare_t = _t(0.35, sr)
    snare_decay = u(0.06, 0.18)
    snare = 0.8 * _band_noise(rng, snare_t.size, sr, u(1000, 2500), u(5000, 9000))
    snare *= np.exp(-snare_t / snare_decay)
    snare += 0.5 * drop(u(200, 260), u(160, 200), 0.02, 0.05, 0.35)
    clap_t = _t(0.3, sr)
    clap_env = sum(
        np.exp(-np.clip(clap_t - d, 0, None) / 0.008) * (clap_t >= d) for d in (0.0, 0.011, 0.022)
    )
    clap_env = clap_env + 0.6 * np.exp(-np.clip(clap_t - 0.033, 0, None) / 0.09) * (clap_t >= 0.033)
    clap = _band_noise(rng, clap_t.size, sr, 900, 3500) * clap_env / 1.6
    stick = drop(u(1400, 1900), u(800, 1100), 0.005, 0.02, 0.12)
    hat_hz = u(6000, 9000)
    hat = _band_noise(rng, int(0.1 * sr), sr, hat_hz, None) * np.exp(-_t(0.1, sr) / u(0.015, 0.04))
    open_t = _t(0.5, sr)
    open_hat = _band_noise(rng, open_t.size, sr, hat_hz, None) * np.exp(-open_t / u(0.15, 0.3))
    crash_t = _t(2.5, sr)
    crash = _band_noise(rng, crash_t.size, sr, u(3000, 5000), None) * np.exp(-crash_t / u(0.7, 1.2))
    ride_t = _t(1.2, sr)
    bell = sum(np.sin(2 * np.pi * f * ride_t) for f in (u(2800, 3400), u(4100, 4700), 5900.0))
    ride = (0.5 * _band_noise(rng, ride_t.size, sr, 5000, None) + 0.15 * bell) * np.exp(
        -ride_t / 0.4
    )
    tom = u(90, 120)
    kit = {
        "kick": kick,
        "snare": snare,
        "clap": clap,
        "stick": stick,
        "hat": hat,
        "open_hat": open_hat,
        "crash": crash,
        "ride": ride,
        "tom_low": drop(1.6 * tom, tom, 0.04, 0.25, 0.6),
        "tom_mid": drop(2.0 * tom, 1.33 * tom, 0.04, 0.22, 0.6),
        "tom_high": drop(2.5 * tom, 1.78 * tom, 0.04, 0.2, 0.6),
    }
    return {DRUM_KEYS[k]: v / np.max(np.abs(v)) for k, v in kit.items()}


def _reverb_ir(rng: np.random.Generator, sr: int, decay_s: float) -> np.ndarray:
    """A room: low-passed exponentially decaying noise, 3 decay times long, unit energy."""
    t = _t(3.0 * decay_s, sr)
    ir = sosfilt(
        butter(1, 5000.0 if sr > 12000 else 0.4 * sr, fs=sr, output="sos"),
        rng.standard_normal(t.size),
    ) * np.exp(-t / decay_s)
    ir[: int(0.01 * sr)] = 0.0  # 10 ms pre-delay
    return ir / np.sqrt(np.sum(ir**2))


#: Wet level of the reverb (its impulse response has unit energy).
_REVERB_LEVEL = 0.35


def reverb(x: np.ndarray, palette: Palette) -> np.ndarray:
    """``x`` (shape (n,)) convolved with the palette's room times the wet level, truncated to
    n samples: overlap-add of FFT blocks of half the FFT size (>= the response's length)."""
    ir = palette.reverb_ir
    nfft = 1 << int(np.ceil(np.log2(2 * ir.size)))
    block = nfft // 2
    n_blocks = -(-x.size // block)
    blocks = np.zeros((n_blocks, block))
    blocks.reshape(-1)[: x.size] = x
    spectrum = np.fft.rfft(ir, nfft) * _REVERB_LEVEL
    y = np.fft.irfft(np.fft.rfft(blocks, nfft, axis=1) * spectrum, nfft, axis=1)
    out = np.zeros((n_blocks + 1) * block)
    out[: n_blocks * block] += y[:, :block].reshape(-1)
    out[block:] += y[:, block:].reshape(-1)
    return out[: x.size]


# --- pitched voices -------------------------------------------------------------------------------


def _spectrum(shape: str, h: np.ndarray) -> np.ndarray:
    """Harmonic amplitudes of ``shape`` for harmonic numbers ``h`` (1, 2, ...)."""
    if shape == "saw":
        return 1.0 / h
    if shape == "square":
        return np.where(h % 2 == 1, 1.0 / h, 0.0)
    if shape == "soft":
        return 1.0 / h**2
    drawbars = {1: 1.0, 2: 0.6, 3: 0.5, 4: 0.3, 6: 0.2, 8: 0.15}  # organ
    return np.array([drawbars.get(int(k), 0.0) for k in h])


def _wavetables(timbre: Timbre, freq: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Bright and dark single-period tables (shape (_TABLE,)) for a note at ``freq`` Hz, peak
    of the bright one 1; only harmonics below 0.45 * sr."""
    n_h = int(min(_MAX_HARMONICS, max(1, np.floor(0.45 * sr / freq))))
    h = np.arange(1, n_h + 1, dtype=np.float64)
    amp = _spectrum(timbre.shape, h)
    tables = []
    for cut in (timbre.bright_hz, timbre.dark_hz):
        spec = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
        spec[1 : n_h + 1] = -1j * amp / (1.0 + (h * freq / cut) ** 2) * (_TABLE / 2)
        tables.append(np.fft.irfft(spec, _TABLE))
    peak = np.max(np.abs(tables[0]))
    return tables[0] / peak, tables[1] / peak


class _Shapes:
    """A timbre's note-independent curves over the longest note, so each note only slices them:
    ``warp`` (time in s, bent by the vibrato: a note's phase is ``freq * warp``), ``bright``
    (weight of the bright table) and ``env`` (attack and decay to sustain)."""

    def __init__(self, tb: Timbre, max_samples: int, sr: int) -> None:
        t = np.arange(max_samples) / sr
        self.warp = t
        if tb.vibrato_cents:
            depth = 2.0 ** (tb.vibrato_cents / 1200.0) - 1.0
            vib = 1.0 - np.cos(2 * np.pi * 5.5 * t)
            self.warp = t + np.clip(t / 0.3, 0.0, 1.0) * depth / (2 * np.pi * 5.5) * vib
        self.bright = np.exp(-t / tb.bright_s)
        self.env = np.minimum(t / tb.attack_s, 1.0) * (
            tb.sustain + (1 - tb.sustain) * np.exp(-t / tb.decay_s)
        )


def _tone(tables, phase: np.ndarray, bright: np.ndarray) -> np.ndarray:
    """Table lookup at ``phase`` (periods), crossfading dark to bright by weight ``bright``."""
    idx = (phase * _TABLE).astype(np.int64) & (_TABLE - 1)
    hi, lo = tables
    dark = lo[idx]
    return dark + bright * (hi[idx] - dark)


def _pitched(notes: Notes, starts: np.ndarray, lengths_s: np.ndarray, tb: Timbre, n: int, sr: int):
    """Sum of the notes of one pitched voice, shape (n,): per note, the bright/dark wavetable
    oscillator (and its detuned copy) times the envelope, released linearly after its length."""
    out = np.zeros(n)
    release = max(1, int(round(tb.release_s * sr)))
    sizes = np.minimum(np.rint(lengths_s * sr).astype(np.int64) + release, n - starts)
    if sizes.size == 0 or sizes.max() <= 0:
        return out
    shapes = _Shapes(tb, int(sizes.max()), sr)
    fade = np.linspace(1.0, 0.0, release, endpoint=False)
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    detune = 2.0 ** (tb.detune_cents / 1200.0)
    for p, s, m, v in zip(notes.pitch, starts, sizes, notes.velocity, strict=True):
        if m <= 0:
            continue
        freq = 440.0 * 2.0 ** ((int(p) - 69) / 12.0)
        if p not in cache:
            cache[p] = _wavetables(tb, freq * max(detune, 1.0), sr)
        warp, bright = shapes.warp[:m], shapes.bright[:m]
        tone = _tone(cache[p], freq * warp, bright)
        if tb.detune_cents:
            tone = 0.5 * (tone + _tone(cache[p], freq * detune * warp + 0.37, bright))
        tone *= shapes.env[:m]
        r = min(release, m)
        tone[m - r :] *= fade[release - r :]
        out[s : s + m] += (v**1.5) * tone
    return out


def _riser(rng: np.random.Generator, m: int, sr: int) -> np.ndarray:
    """A noise sweep of ``m`` samples: low-passed noise crossfading into high-passed noise, plus a
    sine rising 3 octaves, growing quadratically to full level at its end."""
    x = rng.standard_normal(m)
    low = sosfilt(butter(2, min(700.0, 0.4 * sr), fs=sr, output="sos"), x)
    high = sosfilt(butter(2, min(3500.0, 0.4 * sr), btype="highpass", fs=sr, output="sos"), x)
    ramp = np.linspace(0.0, 1.0, m, endpoint=False)
    noise = (1 - ramp) * low / max(np.std(low), 1e-12) + ramp * high / max(np.std(high), 1e-12)
    freq = 220.0 * 8.0**ramp
    sweep = np.sin(2 * np.pi * np.cumsum(freq) / sr)
    return (0.25 * noise + 0.5 * sweep) * ramp**2


def render_voice(
    voice: str,
    notes: Notes,
    seconds: Callable[[np.ndarray], np.ndarray],
    n_samples: int,
    palette: Palette,
    rng: np.random.Generator,
) -> np.ndarray:
    """One voice's audio, shape (n_samples,), float64, unnormalised.

    Parameters
    ----------
    voice : str
        ``"drums"``, ``"fx"`` or a pitched voice with a timbre in ``palette``.
    notes : Notes
        The voice's notes (beats).
    seconds : callable
        Maps beat positions (array) to song time in seconds.
    n_samples : int
        Output length; sounds are cut at the end.
    palette : Palette
        The song's sounds and sample rate.
    rng : numpy.random.Generator
        Noise for the risers.
    """
    sr = palette.sample_rate
    out = np.zeros(n_samples)
    if len(notes) == 0:
        return out
    on = seconds(notes.beat)
    starts = np.rint(on * sr).astype(np.int64)
    lengths_s = seconds(notes.beat + notes.length) - on
    if voice == "drums":
        for key, s, v in zip(notes.pitch, starts, notes.velocity, strict=True):
            sample = palette.drums[int(key)]
            m = min(sample.size, n_samples - s)
            if m > 0:
                out[s : s + m] += (v**1.5) * sample[:m]
        return out
    if voice == "fx":
        for s, length in zip(starts, lengths_s, strict=True):
            m = min(int(round(length * sr)), n_samples - s)
            if m > 0:
                out[s : s + m] += _riser(rng, m, sr)
        return out
    return _pitched(notes, starts, lengths_s, palette.timbres[voice], n_samples, sr)
