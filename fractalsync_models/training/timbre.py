"""Timbre and level randomisation of the anticipator's training songs.

A model trained on one synthesiser learns its sounds (the FluidSynth renditions of held-out
plans showed it: ``benchmarks/measure_structure.py``). The training corpus
(:mod:`.build_corpus`) therefore renders every plan twice, with the numpy voices and through
FluidSynth with instruments drawn per song (:func:`random_gm_mix`), and both through a mild
random EQ and level (:func:`random_colour`):

* :func:`random_gm_mix`: per voice a GM program from a wide pool (every bass, the pads and
  string ensembles, pianos, organs and guitars, leads, brass and reeds, chromatic percussion
  and plucked strings), a volume within +-12 dB of the default mix (CC 7; FluidSynth's volume
  curve is 40 log10(cc/127) dB, so x10^(g/40) on the controller value, clipped to 1..127) and
  a reverb send (CC 91) of 0-100;
* :func:`random_colour`: a low shelf and a high shelf of -6..+6 dB each (one-pole split at
  150-500 Hz and 2-6 kHz), the result brought back to the song's peak, then a level of
  -12..0 dB.

Deterministic per ``numpy.random.Generator``. The evaluation renditions never pass through
here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.signal import lfilter

from .song_generator import Song
from .song_midi import _VOLUME, GmMix

__all__ = ["PROGRAM_POOLS", "random_colour", "random_gm_mix"]

#: GM programs (0-based) a training mix draws from, per voice.
PROGRAM_POOLS: dict[str, tuple[int, ...]] = {
    "bass": tuple(range(32, 40)),
    "pad": (*range(88, 96), 48, 49, 50, 51, 52, 19),
    "keys": (*range(0, 8), *range(16, 21), 24, 25, 26, 27),
    "lead": (*range(80, 88), *range(56, 69), 71, 73, 40, 29, 30),
    "arp": (*range(8, 16), 45, 46, 104, 105, 106, 107, 108, 24, 98),
    "fx": (119, 122, 99, 103),
}


def random_gm_mix(rng: np.random.Generator) -> GmMix:
    """A GM mix drawn from ``rng`` (module docstring)."""
    programs = {v: int(pool[int(rng.integers(len(pool)))]) for v, pool in PROGRAM_POOLS.items()}
    volumes = {
        v: int(np.clip(round(cc * 10 ** (rng.uniform(-12.0, 12.0) / 40.0)), 1, 127))
        for v, cc in _VOLUME.items()
    }
    reverb = {v: int(rng.integers(0, 101)) for v in _VOLUME}
    return GmMix(programs, volumes, reverb)


def _one_pole_lowpass(x: np.ndarray, cutoff_hz: float, sr: int) -> np.ndarray:
    a = float(np.exp(-2.0 * np.pi * cutoff_hz / sr))
    return lfilter([1.0 - a], [1.0, -a], x)


def random_colour(song: Song, rng: np.random.Generator) -> Song:
    """``song`` with a random mild EQ and level (module docstring); annotations unchanged.

    The audio stays float32 with the same peak before the level is applied (at most the
    song's peak after it)."""
    x = song.audio.astype(np.float64)
    sr = song.sample_rate
    low_gain = 10 ** (rng.uniform(-6.0, 6.0) / 20.0)
    high_gain = 10 ** (rng.uniform(-6.0, 6.0) / 20.0)
    low = _one_pole_lowpass(x, float(rng.uniform(150.0, 500.0)), sr)
    high = x - _one_pole_lowpass(x, float(rng.uniform(2000.0, 6000.0)), sr)
    y = x + (low_gain - 1.0) * low + (high_gain - 1.0) * high
    peak_in, peak_out = np.max(np.abs(x)), np.max(np.abs(y))
    if peak_out > 0:
        y *= peak_in / peak_out
    y *= 10 ** (rng.uniform(-12.0, 0.0) / 20.0)
    return dataclasses.replace(song, audio=y.astype(np.float32))
