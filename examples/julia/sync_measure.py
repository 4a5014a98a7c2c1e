"""Measuring how the Julia visual follows the music: visual pulses against true beats, control
jerk, and how often c gives a disconnected Julia set.

Offline measurement functions for rendered videos (or any frame sequence) and control logs:

* :func:`frame_change`: per-frame visual change of a frame sequence;
* :func:`detect_pulses`: frames where the change stands out of its running median;
* :func:`pulse_sync`: fraction of true beats with a visual pulse nearby, and the median offset;
* :func:`rms_jerk`: RMS jerk of each control (third difference times fps**3);
* :func:`disconnected_fraction`: fraction of selected frames whose c is outside the Mandelbrot
  set (critical-orbit test);
* :func:`section_contrast`: how different the sections look, the mean distance between the
  sections' mean (normalised) control vectors.

Frame ``k`` of a video at ``fps`` frames per second shows stream time ``k / fps``.
"""

from __future__ import annotations

import numpy as np

from examples.julia.controller import CONTROL_NAMES, CONTROL_RANGES, critical_orbit_escapes

__all__ = ["detect_pulses", "disconnected_fraction", "frame_change", "normalised_controls",
           "pulse_sync", "rms_jerk", "section_contrast"]

#: Rec. 709 luma weights of R, G, B.
_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
#: Controls that wrap, with their period: rotation (radians) and hue (turns).
_PERIODS = {"rotation": 2.0 * np.pi, "hue": 1.0}


def _positive_number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _luma(frame, downscale: int, shape: tuple[int, ...] | None, index: int) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3:
        desc = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) \
            else type(frame).__name__
        raise ValueError(f"frame {index} must be an (H, W, 3) uint8 array, got {desc}")
    if shape is not None and frame.shape != shape:
        raise ValueError(f"frame {index} has shape {frame.shape}, frame 0 had {shape}")
    h, w = frame.shape[0] // downscale * downscale, frame.shape[1] // downscale * downscale
    if h == 0 or w == 0:
        raise ValueError(f"frame {index} of shape {frame.shape} is smaller than downscale="
                         f"{downscale}")
    y = frame[:h, :w].astype(np.float32) @ _LUMA
    return y.reshape(h // downscale, downscale, w // downscale, downscale).mean(axis=(1, 3))


def frame_change(frames, downscale: int = 4) -> np.ndarray:
    """Per-frame visual change of a sequence of frames.

    ``frames``: iterable of (H, W, 3) uint8 RGB arrays, all of one shape (read one at a time, so
    a video decoder's generator works in constant memory). Each frame's luma (Rec. 709) is
    averaged over ``downscale`` x ``downscale`` blocks (the edges that do not fill a block are
    dropped); ``change[k]`` is the mean absolute difference between the block images of frames
    ``k`` and ``k - 1``, in units of full scale (0..1); ``change[0] = 0``.

    Returns float64 (n,) for n frames (empty for none). ValueError names a bad frame.
    """
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) \
            or downscale < 1:
        raise ValueError(f"downscale must be an int >= 1, got {downscale!r}")
    out, prev, shape = [], None, None
    for i, frame in enumerate(frames):
        cur = _luma(frame, int(downscale), shape, i)
        shape = frame.shape
        out.append(0.0 if prev is None else float(np.mean(np.abs(cur - prev))) / 255.0)
        prev = cur
    return np.array(out, np.float64)


def detect_pulses(change, fps: float, window_s: float = 0.5, z: float = 4.0,
                  floor: float = 1e-4, min_gap_s: float = 0.1) -> np.ndarray:
    """Frame indices of visual pulses in a change signal (:func:`frame_change`).

    Rule: frame ``k`` is a candidate when it is a local maximum,
    ``change[k] > change[k - 1]`` and ``change[k] >= change[k + 1]`` (a missing neighbour at the
    ends counts as 0; on a plateau the first frame counts), that stands out of its
    neighbourhood: ``change[k] > median_k + z * 1.4826 * mad_k + floor``, with ``median_k`` and
    ``mad_k`` the median and the median absolute deviation from it of the centred window of
    ``max(3, round(window_s * fps) | 1)`` frames (odd; the signal mirrored at its ends, so a
    pulse at the first or last frame is judged against its neighbours). ``1.4826 * mad``
    estimates the standard deviation of the background change robustly (a few pulse frames in
    the window do not move it), so ``z`` is a threshold in standard deviations; ``floor``
    (change units) keeps a perfectly flat background from making every ripple a pulse. One
    visual pulse can ripple over a few frames: of candidates closer than
    ``round(min_gap_s * fps)`` frames, only the largest is kept (the earlier on a tie; greedy,
    largest first; ``min_gap_s = 0`` keeps all). The window is centred, so this is an offline
    measure.

    Returns int64 indices in increasing order. ``change`` must be a 1-D array of finite values
    >= 0 (ValueError otherwise); ``fps``, ``window_s`` > 0; ``z``, ``floor``, ``min_gap_s`` >= 0.
    """
    x = np.asarray(change, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"change must be 1-D, got shape {x.shape}")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("change must be finite and >= 0")
    fps, window_s = _positive_number("fps", fps), _positive_number("window_s", window_s)
    for name, v in (("z", z), ("floor", floor), ("min_gap_s", min_gap_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v) or v < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if x.size == 0:
        return np.zeros(0, np.int64)
    width = max(3, int(round(window_s * fps)) | 1)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(x, width // 2, mode="reflect"),
                                                       width)
    median = np.median(windows, axis=1)
    mad = np.median(np.abs(windows - median[:, None]), axis=1)
    left = np.concatenate(([0.0], x[:-1]))
    right = np.concatenate((x[1:], [0.0]))
    candidates = np.flatnonzero((x > left) & (x >= right) & (x > median + z * 1.4826 * mad + floor))
    gap = int(round(min_gap_s * fps))
    suppressed = np.zeros(x.size, bool)
    kept = []
    for k in candidates[np.argsort(-x[candidates], kind="stable")]:
        if not suppressed[k]:
            kept.append(k)
            suppressed[max(k - gap + 1, 0):k + gap] = True
    return np.sort(np.array(kept, np.int64))


def pulse_sync(pulse_frames, beat_times, fps: float, tolerance_frames: int = 2,
               skip_s: float = 5.0) -> dict:
    """How well visual pulses land on the true beats.

    Each true beat at ``t >= skip_s`` seconds is expected at frame ``b = round(t * fps)``; its
    offset is ``p - b`` for the nearest pulse frame ``p`` (ties: the earlier pulse), positive
    when the picture is late. A beat is hit when ``|p - b| <= tolerance_frames``.

    Returns a dict: ``hit_fraction`` (hit beats / beats after ``skip_s``),
    ``median_offset_frames`` (median offset of the hit beats; NaN when none is hit),
    ``n_beats`` (beats after ``skip_s``), ``n_hits``, ``n_pulses`` (pulses at frames
    ``>= round(skip_s * fps) - tolerance_frames``) and ``pulses_per_beat`` (``n_pulses /
    n_beats``: near 1 when the picture pulses once per beat; a picture that pulses all the time
    scores high hits but also a high rate).

    ValueError when no beat is at or after ``skip_s``, or on bad arguments.
    """
    fps = _positive_number("fps", fps)
    if isinstance(tolerance_frames, bool) or not isinstance(tolerance_frames, (int, np.integer)) \
            or tolerance_frames < 0:
        raise ValueError(f"tolerance_frames must be an int >= 0, got {tolerance_frames!r}")
    if isinstance(skip_s, bool) or not np.isfinite(skip_s):
        raise ValueError(f"skip_s must be a finite number, got {skip_s!r}")
    beats = np.asarray(beat_times, dtype=np.float64).ravel()
    pulses = np.sort(np.asarray(pulse_frames, dtype=np.int64).ravel())
    if not np.all(np.isfinite(beats)):
        raise ValueError("beat_times must be finite")
    beats = beats[beats >= skip_s]
    if beats.size == 0:
        raise ValueError(f"no beat at or after skip_s={skip_s} s")
    expected = np.round(beats * fps).astype(np.int64)
    n_pulses = int(np.sum(pulses >= round(skip_s * fps) - tolerance_frames))
    if pulses.size == 0:
        offsets = np.full(beats.size, np.inf)
    else:
        j = np.searchsorted(pulses, expected)
        before = pulses[np.clip(j - 1, 0, pulses.size - 1)]
        after = pulses[np.clip(j, 0, pulses.size - 1)]
        d_before, d_after = before - expected, after - expected
        offsets = np.where(np.abs(d_before) <= np.abs(d_after), d_before, d_after)
    hit = np.abs(offsets) <= tolerance_frames
    return {
        "hit_fraction": float(np.mean(hit)),
        "median_offset_frames": float(np.median(offsets[hit])) if hit.any() else float("nan"),
        "n_beats": int(beats.size),
        "n_hits": int(hit.sum()),
        "n_pulses": n_pulses,
        "pulses_per_beat": n_pulses / beats.size,
    }


def rms_jerk(controls, fps: float) -> dict:
    """RMS jerk of each control of a sequence of control vectors.

    ``controls``: (n, 8) array in ``CONTROL_NAMES`` order, one row per frame, n >= 4, finite.
    The jerk of a control ``x`` is ``diff(x, 3) * fps**3`` (its units per s**3); rotation and
    hue are unwrapped first (periods 2 pi and 1: the picture is continuous across their wraps).
    Returns ``{name: rms}`` for the 8 names plus ``"log_zoom"`` (the jerk of ``ln zoom``, the
    quantity the controller keeps smooth).
    """
    x = np.asarray(controls, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(CONTROL_NAMES):
        raise ValueError(f"controls must have shape (n, {len(CONTROL_NAMES)}), got {x.shape}")
    if x.shape[0] < 4:
        raise ValueError(f"controls need at least 4 frames for a third difference, "
                         f"got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("controls must be finite")
    fps = _positive_number("fps", fps)
    series = {name: x[:, i] for i, name in enumerate(CONTROL_NAMES)}
    for name, period in _PERIODS.items():
        series[name] = np.unwrap(series[name], period=period)
    zoom = series["zoom"]
    if np.any(zoom <= 0):
        raise ValueError("zoom must be > 0")
    series["log_zoom"] = np.log(zoom)
    return {name: float(np.sqrt(np.mean((np.diff(s, 3) * fps**3) ** 2)))
            for name, s in series.items()}


def disconnected_fraction(c_values, mask=None, max_iter: int = 1000) -> float:
    """Fraction of the selected frames whose Julia set is disconnected.

    ``c_values``: complex (n,) array, or real (n, 2) of ``(c_re, c_im)`` (e.g. the first two
    columns of the control log); ``mask``: bool (n,) selecting the frames (e.g. chorus frames;
    None: all). A frame counts as disconnected when its critical orbit escapes within
    ``max_iter`` iterations (:func:`~examples.julia.controller.critical_orbit_escapes`).
    ValueError when the mask selects no frame, on a shape mismatch or on non-finite c.
    """
    c = np.asarray(c_values)
    if c.ndim == 2 and c.shape[1] == 2 and not np.iscomplexobj(c):
        c = c[:, 0].astype(np.float64) + 1j * c[:, 1].astype(np.float64)
    if c.ndim != 1:
        raise ValueError(f"c_values must be complex (n,) or real (n, 2), got shape {c.shape}")
    if mask is None:
        mask = np.ones(c.shape, bool)
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != c.shape:
        raise ValueError(f"mask must be a bool array of shape {c.shape}, got {mask.dtype} "
                         f"{mask.shape}")
    if not mask.any():
        raise ValueError("mask selects no frame")
    return float(np.mean(critical_orbit_escapes(c[mask], max_iter)))


def normalised_controls(controls) -> np.ndarray:
    """Control vectors in comparable units: (n, 8) in ``CONTROL_NAMES`` order -> (n, 10).

    The six non-periodic controls (dc_re, dc_im, zoom, saturation, brightness, detail) become
    ``(x - lo) / (hi - lo)`` over their ``CONTROL_RANGES`` (the full range is 1); the periodic
    ones, rotation (angle ``x`` rad) and hue (angle ``2 pi x``), each become the point
    ``(cos, sin) / 2`` of their angle (opposite angles are 1 apart, like the ends of a range).
    Columns: the six in that order, then rotation cos, sin, hue cos, sin. ``controls`` must be
    finite (ValueError otherwise, or for a wrong shape).
    """
    x = np.asarray(controls, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(CONTROL_NAMES):
        raise ValueError(f"controls must have shape (n, {len(CONTROL_NAMES)}), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("controls must be finite")
    cols = []
    for i, name in enumerate(CONTROL_NAMES):
        if name not in _PERIODS:
            lo, hi = CONTROL_RANGES[name]
            cols.append((x[:, i] - lo) / (hi - lo))
    for name, period in _PERIODS.items():
        angle = x[:, CONTROL_NAMES.index(name)] * (2.0 * np.pi / period)
        cols += [0.5 * np.cos(angle), 0.5 * np.sin(angle)]
    return np.stack(cols, axis=1) if x.shape[0] else np.zeros((0, len(cols)))


def section_contrast(controls, labels) -> dict:
    """Between-section contrast: how far apart the sections' mean controls are.

    ``controls``: (n, 8) control vectors, one per frame; ``labels``: (n,) the section label of
    each frame (strings; None for frames outside every section, which are left out). For each
    label, ``m_label`` is the mean of its frames' :func:`normalised_controls` (10 values); the
    contrast is the mean Euclidean distance ``|m_a - m_b|`` over all pairs of distinct labels
    (units: fractions of the controls' ranges; 0 when every section looks alike on average).

    Returns ``{"contrast": float, "n_sections": int, "means": {label: (10,) array}}``.
    ValueError when fewer than two labels have frames, or on a shape mismatch.
    """
    u = normalised_controls(controls)
    lab = np.asarray(labels, dtype=object)
    if lab.shape != (u.shape[0],):
        raise ValueError(f"labels must have shape ({u.shape[0]},), got {lab.shape}")
    names = sorted({v for v in lab if v is not None}, key=str)
    if len(names) < 2:
        raise ValueError(f"section_contrast needs frames of at least two sections, got "
                         f"{names}")
    means = {name: u[lab == name].mean(axis=0) for name in names}
    dists = [float(np.linalg.norm(means[a] - means[b]))
             for i, a in enumerate(names) for b in names[i + 1:]]
    return {"contrast": float(np.mean(dists)), "n_sections": len(names), "means": means}
