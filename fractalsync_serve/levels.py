"""Audio levels in the shape of Synesthesia's audio uniforms, from the slow clock's micro features.

Visual artists know ``level, bass, mid, high, hits, on_beat`` as numbers in [0, 1]. They are
computed here from the 7 micro features of the newest analysis frame
(:mod:`fractalsync_dsp.micro`: ``rms_db, bass, mid, treble, flux, centroid_hz, onset``) and the
published beat clock:

=========  ======================================================================================
level      ``rms_db`` mapped linearly from -60 dBFS (0) to 0 dBFS (1), clipped
bass       the 20-250 Hz band level (dB), the same mapping
mid        the 250-4000 Hz band level (dB), the same mapping
high       the 4000-11025 Hz band level (treble, dB), the same mapping
hits       ``onset``: flux relative to its 1 s running mean, in [0, 1) (0.5: usual change,
           near 1: a strong onset)
on_beat    ``conf * max(0, 1 - phase / 0.25)``: 1 on the published beat, falling linearly to 0 a
           quarter beat later, scaled by the tracker's confidence (0 before any beat)
=========  ======================================================================================
"""

from __future__ import annotations

__all__ = ["FLOOR_DB", "LEVEL_NAMES", "ON_BEAT_WIDTH", "levels"]

LEVEL_NAMES = ("level", "bass", "mid", "high", "hits", "on_beat")
FLOOR_DB = -60.0
ON_BEAT_WIDTH = 0.25  # beats


def _db01(db: float) -> float:
    return min(1.0, max(0.0, (db - FLOOR_DB) / -FLOOR_DB))


def levels(features, phase: float, conf: float) -> tuple[float, ...]:
    """The 6 levels of the module docstring, in ``LEVEL_NAMES`` order, each in [0, 1].

    Parameters
    ----------
    features : sequence of 7 floats or None
        Micro features (``SlowState.features``); None reads as silence.
    phase : float in [0, 1)
        Published beat phase.
    conf : float in [0, 1]
        Confidence of the published beat (0: no beat).
    """
    if features is None:
        rms = bass = mid = high = FLOOR_DB
        hits = 0.0
    else:
        rms, bass, mid, high, _flux, _centroid, hits = features
    on_beat = conf * max(0.0, 1.0 - phase / ON_BEAT_WIDTH)
    return (_db01(rms), _db01(bass), _db01(mid), _db01(high), min(1.0, max(0.0, hits)),
            min(1.0, max(0.0, on_beat)))
