"""Down-mixing and sample-rate conversion (soxr), batch and streaming.

Input conventions shared by every function here:

- Layout: ``(n,)`` mono or ``(n, channels)`` frames-first, as `load_audio` returns it, with
  1 <= channels <= `MAX_CHANNELS` (64). A 2-D array with more columns than that is refused
  with a ValueError naming the expected layout and suggesting ``.T``: it is almost always a
  channels-first block such as ``(2, 48000)``, which would otherwise be read as 48000 channels
  of 2 samples. (Channels-first blocks of at most 64 samples cannot be told apart from
  frames-first ones and are read frames-first.) One check serves `to_mono`, `resample` and
  `StreamResampler.push`, and so `BeatTracker.push` and the beat-grid paths; an audio file
  with more than 64 channels is refused there with the same error.
- dtype: float32/float64 are used as they are (float64 is cast to float32). int16 and int32
  are scaled to float by ``1 / np.iinfo(dtype).max`` (int16: 1/32767, the scaling madmom and
  BeatNet apply). Any other dtype (bool, other integers, complex, object, ...) raises
  TypeError naming the dtype.
- Values: NaN or inf samples, and samples beyond +-`MAX_ABS` (1e30; soxr's float32
  internals overflow to inf above ~1e35), raise ValueError naming the first bad index
  (rules shared with the front end, in :mod:`fractalsync_dsp.sample_format`).
  (Rejecting rather than zeroing keeps a broken upstream visible; a rejected block leaves a
  `StreamResampler` untouched.)
- Rates: must be finite and > 0, else ValueError; so must their ratio stay within
  ``[1 / MAX_RATIO, MAX_RATIO]`` (soxr 1.1.0 segfaults or runs for minutes far beyond it,
  e.g. 0.001 -> 22050 Hz crashes, 2.2e16 -> 22050 Hz does not return).
"""

from __future__ import annotations

import math

import numpy as np
import soxr

from fractalsync_dsp.sample_format import MAX_ABS, as_float32

__all__ = [
    "MAX_ABS", "MAX_CHANNELS", "MAX_RATIO", "QUALITIES", "StreamResampler",
    "check_rate", "resample", "to_mono",
]

QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
"""soxr quality names, fastest/lowest first."""

MAX_RATIO = 4096.0
"""Largest accepted ``sr_out / sr_in`` and ``sr_in / sr_out`` (22050 Hz output: inputs of 5.4 Hz
to 90 MHz)."""

MAX_CHANNELS = 64
"""Most channels accepted in a ``(n, channels)`` array; more means a channels-first array."""


def check_rate(rate, name: str) -> float:
    """``rate`` (Hz) as a float: a real number (not bool or str), finite and > 0.

    Raises TypeError for a non-number and ValueError for 0, negative, NaN or inf; the message
    names the argument (``name``).
    """
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number (Hz), got {rate!r}")
    value = float(rate)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {rate!r}")
    return value


def _check_rates(sr_in, sr_out) -> tuple[float, float]:
    sr_in, sr_out = check_rate(sr_in, "sr_in"), check_rate(sr_out, "sr_out")
    if not 1.0 / MAX_RATIO <= sr_out / sr_in <= MAX_RATIO:
        raise ValueError(
            f"sr_out / sr_in = {sr_out:g} / {sr_in:g} is outside [1/{MAX_RATIO:g}, {MAX_RATIO:g}]"
        )
    return sr_in, sr_out


def _check_quality(quality: str) -> str:
    if quality not in QUALITIES:
        raise ValueError(f"quality must be one of {QUALITIES}, got {quality!r}")
    return quality


def _check_layout(x: np.ndarray, name: str) -> np.ndarray:
    """Return ``x`` if it is ``(n,)`` or ``(n, channels)`` with 1 <= channels <= `MAX_CHANNELS`.

    Raises ValueError naming ``name`` and the shape otherwise; for more than `MAX_CHANNELS`
    columns the message gives the expected layout ``(n_samples, n_channels)`` and suggests
    ``.T`` (the usual cause is a channels-first array such as ``(2, 48000)``).
    """
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n,) or (n, channels), got {x.shape}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 channels (shape {x.shape})")
    if x.shape[1] > MAX_CHANNELS:
        raise ValueError(
            f"{name} has shape {x.shape}: {x.shape[1]} channels, more than the "
            f"MAX_CHANNELS = {MAX_CHANNELS} supported; the layout is (n_samples, n_channels). "
            f"For a channels-first array, pass {name}.T"
        )
    return x


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    """Mean over channels of an already validated float32 array of 1 or 2 dims."""
    x = _check_layout(x, name)
    if x.ndim == 1:
        return x
    if x.shape[1] == 1:
        return x[:, 0]
    # A matrix-vector product is ~7x faster than x.mean(axis=1) on (1024, 2) blocks.
    return x @ np.full(x.shape[1], 1.0 / x.shape[1], np.float32)


def to_mono(x) -> np.ndarray:
    """Mean of the channels.

    Parameters
    ----------
    x : array, shape (n,) or (n, channels), 1 <= channels <= `MAX_CHANNELS`
        Audio, frames first (see the module docstring for accepted layouts and dtypes).

    Returns
    -------
    np.ndarray, float32, shape (n,)
        C-contiguous. May share memory with `x` when `x` is already float32 and mono.

    Raises
    ------
    TypeError
        Unsupported dtype.
    ValueError
        More than 2 dims, 0 or more than `MAX_CHANNELS` channels (e.g. a channels-first
        ``(2, n)`` array: pass ``x.T``), or NaN/inf/beyond-`MAX_ABS` samples.
    """
    return np.ascontiguousarray(_mono(as_float32(x, "x"), "x"))


def resample(x, sr_in: float, sr_out: float, quality: str = "HQ") -> np.ndarray:
    """Resample a whole signal with soxr (offline).

    The output is time-aligned with the input: output sample m is the signal at time
    m / sr_out (soxr removes its filter delay). Its length is about ``len(x) * sr_out / sr_in``.
    The default "HQ" is what the shared reference excerpts were made with.

    Parameters
    ----------
    x : array, shape (n,) or (n, channels), 1 <= channels <= `MAX_CHANNELS`
        Audio, frames first; channels are kept. A channels-first ``(2, n)`` array raises
        ValueError (pass ``x.T``).
    sr_in, sr_out : float
        Rates in Hz, finite and > 0, ratio within ``[1 / MAX_RATIO, MAX_RATIO]``.
    quality : {"QQ", "LQ", "MQ", "HQ", "VHQ"}
        soxr quality.

    Returns
    -------
    np.ndarray, float32, shape (m,) or (m, channels)
    """
    sr_in, sr_out = _check_rates(sr_in, sr_out)
    x = _check_layout(as_float32(x, "x"), "x")
    y = soxr.resample(np.ascontiguousarray(x), sr_in, sr_out, quality=_check_quality(quality))
    return y.astype(np.float32, copy=False)


class StreamResampler:
    """Streaming mono resampler for the live input: push blocks of any size, get samples out.

    Each pushed block (``(n,)`` or ``(n, channels)``; the channel count may change between
    blocks) is down-mixed with `to_mono` and fed to one ``soxr.ResampleStream``.

    Timing. soxr discards its filter's delay, so the output is time-aligned with the input:
    output sample m (counted since construction or `reset`) is the input signal at time
    m / sr_out. Hence ``delay_samples == 0`` for every quality; `measure_resampler_quality.py`
    and the impulse test in tests/test_resample.py check it (impulse centre within 0.01
    output samples). What soxr costs instead is *latency*: it holds back output until its
    filter has seen enough future input. After a push, ``pending_samples`` (=
    ``samples_in * sr_out / sr_in - samples_out``) is how many output samples the input
    already implies but soxr has not emitted yet. Timestamps must therefore be derived from
    the output sample index (``m / sr_out``), never from ``samples_in``.

    Measured (soxr 1.1.0, 48000 -> 22050 Hz, 1024-sample pushes; latency and burst figures
    over 469 pushes = 10 s; SNR on 30 s of Vibe Ace; command:
    ``.venv/bin/python benchmarks/measure_resampler_quality.py``):

    ======= ============= ========= ======= ============================ ============= ======
    quality latency mean/  out/push  pushes  passband gain dB at          alias reject  SNR vs
            max, out smp   steady    with 0  1k / 8k / 9k / 10k / 10.5k   dB at 12k/    batch
            (ms)           min..max  output  Hz                           14k/20k Hz    HQ, dB
    ======= ============= ========= ======= ============================ ============= ======
    QQ      0.4/0.8 (0/0) 353..471  0       0 / -0.1 / -0.2 / -0.3 / -0.4 -1/-1/-3      38.0
    LQ      236/443       426..853  0       0 / -0.2 / -3.6 / -23 / -46  -116/-123/-138 42.1
            (10.7/20.1)
    MQ      473/858       0..774    185     0 / -0.1 / -0.1 / -0.2 / -3.8 -126/-126/-143 71.4
            (21.5/38.9)
    HQ      473/841       0..737    170     0 / 0 / 0 / 0 / -3.8         -151/-138/-143 exact
            (21.5/38.1)
    VHQ     944/1746      0..1606   332     0 / 0 / 0 / 0 / -4.1         -193/-167/-161 74.0
            (42.8/79.2)
    ======= ============= ========= ======= ============================ ============= ======

    The impulse alignment was 0.00 output samples for all five; CPU per push was 5-10 us.
    For every quality, rate and block-size sequence tried (tests/test_resample.py, hypothesis),
    the pushes plus `flush` are bit-identical to batch `resample` with the same quality.

    Default "HQ": its streamed output is bit-identical to batch `resample(..., "HQ")`, which is
    how the reference excerpts (and so the features the CRNN parity is checked on) were made,
    so live features equal offline features. It is flat to 10 kHz, where the BeatNet
    filterbank's top bands (up to 10.85 kHz centres) sit. The price is ~21 ms mean / 38 ms max
    of latency and bursty output (36% of pushes emit nothing, others up to 737 samples), which
    the timestamps absorb (they come from the output index) and the fast clock's phase
    prediction hides. The alternatives are worse trades: QQ has no anti-alias filter (12-20 kHz
    content folds back at -1 to -3 dB), LQ halves the latency but cuts 9-11 kHz (-3.6 dB at
    9 kHz, -23 dB at 10 kHz), MQ has HQ's latency with lower fidelity, and VHQ doubles it.

    Hot path: `push` allocates its output array (soxr returns a new array per call) and, for
    multi-channel blocks, the down-mixed block; nothing is compiled after construction.

    Parameters
    ----------
    sr_in : float
        Input rate in Hz (finite, > 0).
    sr_out : float
        Output rate in Hz (finite, > 0); default 22050, the analysis rate.
    quality : {"QQ", "LQ", "MQ", "HQ", "VHQ"}
        soxr quality; see the table above.
    """

    def __init__(self, sr_in: float, sr_out: float = 22050, quality: str = "HQ") -> None:
        self.sr_in, self.sr_out = _check_rates(sr_in, sr_out)
        self.quality = _check_quality(quality)
        self._stream = soxr.ResampleStream(
            self.sr_in, self.sr_out, 1, dtype="float32", quality=self.quality
        )
        self.samples_in = 0
        self.samples_out = 0

    @property
    def delay_samples(self) -> float:
        """Alignment offset in output samples: out[m + delay] is the input at time m / sr_out.

        Always 0.0 because soxr trims its filter delay (see the class docstring).
        """
        return 0.0

    @property
    def pending_samples(self) -> float:
        """Output samples implied by the input pushed so far but not yet emitted (latency)."""
        return self.samples_in * self.sr_out / self.sr_in - self.samples_out

    def push(self, block) -> np.ndarray:
        """Feed one block of input; return the output samples that became ready.

        Parameters
        ----------
        block : array, shape (n,) or (n, channels), n >= 0, 1 <= channels <= `MAX_CHANNELS`
            Input audio at `sr_in`, frames first (layout and dtype rules in the module
            docstring; a channels-first ``(2, n)`` block raises ValueError).

        Returns
        -------
        np.ndarray, float32, shape (m,)
            Possibly empty (soxr emits in bursts, see `pending_samples`).
        """
        return self._push_mono(np.ascontiguousarray(_mono(as_float32(block, "block"), "block")))

    def _push_mono(self, x: np.ndarray) -> np.ndarray:
        """:meth:`push` of an already validated, C-contiguous float32 (n,) block (no checks)."""
        y = self._stream.resample_chunk(x)
        self.samples_in += x.shape[0]
        self.samples_out += y.shape[0]
        return y

    def flush(self) -> np.ndarray:
        """End the stream: return the held-back tail, then `reset` for a new stream.

        After `flush`, the total output is ``round(samples_in * sr_out / sr_in)`` samples
        (as the batch `resample` gives).
        """
        y = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self.reset()
        return y

    def reset(self) -> None:
        """Forget all input (state, counters); the next push starts a new stream at time 0."""
        self._stream.clear()
        self.samples_in = 0
        self.samples_out = 0
