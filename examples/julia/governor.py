"""Dynamic resolution and detail for the live window, as games do it: a quality governor.

A :class:`QualityGovernor` holds a position on a *ladder* of quality levels, best first. Each
:class:`Level` is a sample grid (``scale``: one computed sample per ``scale`` x ``scale`` block,
nearest-upscaled; :meth:`GLRenderer.set_scale <examples.julia.render_gl.GLRenderer.set_scale>`)
and an iteration cap that clamps the controller's ``max_iter`` (never raises it)::

    level 0  scale 1, no cap        every pixel, the controller's detail
    level 1  scale 1, cap 128
    level 2  scale 2, no cap        480 x 270 samples at 960 x 540
    level 3  scale 2, cap 128
    level 4  scale 2, cap 64
    level 5  scale 3, cap 64
    level 6  scale 4, cap 48

The caller feeds it each frame's cost, :meth:`QualityGovernor.record` (wall-clock ms from
the start of drawing to the end of ``present`` or ``read``; Mesa's llvmpipe renders synchronously
there), and draws the next frame at :attr:`QualityGovernor.current`. The rules, with ``B`` the
frame budget (``1000 / fps`` ms):

* **Down at once.** A frame over ``B`` (a missed frame), or 2 of the last 4 frames at this level
  over ``down_frac * B`` (nearing the budget), moves one level down, from the next frame on.
* **Up only after a sustained margin.** After at least ``hold_frames`` frames at this level, it
  moves one level up when the 90th percentile of the last ``hold_frames`` frames (robust to the
  odd frame another process delayed), times the cost ratio of the level above to this one, is
  under ``up_frac * B`` (``up_frac < down_frac``: hysteresis).
* **Cost ratios are measured.** Each move between neighbouring levels ``j`` (better) and
  ``j + 1`` observes their cost ratio: the median of the frames at the old level (since it
  got there, at most the last ``hold_frames``: not just the slow or fast frames that triggered
  the move) against the median of the first ones at the new level (up to ``settle_frames``;
  fewer when it leaves again sooner). The first observation replaces the prior (the
  sample-count ratio: the cost of a frame is mostly its samples times their iterations); later
  ones are averaged in (geometric mean of the old and the new, so one frame delayed by another
  process moves the estimate only half-way). Observations are clipped to what the levels allow:
  a frame's cost is a fixed part plus its samples times their iterations, so the ratio lies
  between 1 and the sample-count ratio times the cap ratio (a cap changes a sample's iterations
  by at most that much; below 1 when the better level has the lower cap, as scale 1 cap 128
  against scale 2 uncapped).

Under a constant load this settles and stays: after a move down from ``j`` the learnt ratio
predicts ``j``'s cost, which was above ``down_frac * B > up_frac * B``, so it does not try ``j``
again (a prior can be too hopeful: one failed try per pair at most). When the load goes
away, the current level's frames get cheaper, the predicted cost of the level above falls with
them, and it moves up again. A governor is pure state (no clock, no GL): tests feed it frame
times (``tests/test_julia_governor.py``).

With a GPU (not a software rasteriser) the window uses no governor: full quality, every frame
(:class:`~examples.julia.window.JuliaWindow`).
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from dataclasses import dataclass

from examples.julia.params import MAX_ITER_RANGE, JuliaParams

__all__ = ["DEFAULT_LADDER", "SOFTWARE_GL_START", "Level", "QualityGovernor"]


@dataclass(frozen=True)
class Level:
    """One rung of the ladder: ``scale`` (int >= 1, one sample per ``scale`` x ``scale`` block)
    and ``iter_cap`` (int in ``MAX_ITER_RANGE``, or None for no cap)."""

    scale: int
    iter_cap: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"Level.scale must be an int >= 1, got {self.scale!r}")
        lo, hi = MAX_ITER_RANGE
        if self.iter_cap is not None and (isinstance(self.iter_cap, bool)
                                          or not isinstance(self.iter_cap, int)
                                          or not lo <= self.iter_cap <= hi):
            raise ValueError(f"Level.iter_cap must be None or an int in [{lo}, {hi}], "
                             f"got {self.iter_cap!r}")

    def apply(self, params: JuliaParams) -> JuliaParams:
        """``params`` with ``max_iter`` clamped to the cap (unchanged without a cap, or when
        ``max_iter`` is already below it)."""
        if self.iter_cap is None or params.max_iter <= self.iter_cap:
            return params
        return dataclasses.replace(params, max_iter=self.iter_cap)

    def samples(self, width: int, height: int) -> int:
        """Samples computed per frame of ``width`` x ``height`` output pixels."""
        return -(-width // self.scale) * -(-height // self.scale)

    def describe(self) -> str:
        """E.g. ``"scale 2, cap 128"`` or ``"scale 1"``."""
        return f"scale {self.scale}" + (f", cap {self.iter_cap}" if self.iter_cap else "")


#: The window's ladder (module docstring), best first.
DEFAULT_LADDER = (Level(1), Level(1, 128), Level(2), Level(2, 128), Level(2, 64), Level(3, 64),
                  Level(4, 48))
#: Where a window on a software rasteriser starts: 2x2 blocks, the controller's detail (level 2).
#: Starting at every pixel cost the first second 2-4 missed frames (20-60 ms each) while it
#: stepped down; from here it climbs when the frames leave a margin.
SOFTWARE_GL_START = DEFAULT_LADDER.index(Level(2))

#: Per-frame sample-count ratios are computed for this output size (a 16:9 reference); the
#: ratios of integer scales barely depend on it.
_REFERENCE_SIZE = (960, 540)


def _cap_value(cap: int | None) -> int:
    return MAX_ITER_RANGE[1] if cap is None else cap


class QualityGovernor:
    """Moves along ``ladder`` by measured frame cost (module docstring).

    Parameters
    ----------
    budget_ms : the frame budget (ms), e.g. ``1000 / 60``; > 0.
    ladder : the levels, best first (at least one; each a :class:`Level`); each level has a
        larger scale than the one before it, or the same scale and a lower cap.
    start : index of the first frame's level.
    down_frac, up_frac : fractions of the budget for the rules, ``0 < up_frac < down_frac <= 1``.
    hold_frames : frames at a level before a move up is considered (>= 1).
    settle_frames : frames after a move that measure the new level's cost (>= 1).
    """

    #: Frames looked at by the "2 of the last 4 near the budget" rule.
    NEAR_WINDOW = 4
    NEAR_COUNT = 2
    #: Percentile of the last ``hold_frames`` frame costs that must show the margin.
    UP_PERCENTILE = 90

    def __init__(self, budget_ms: float = 1000.0 / 60.0, ladder: tuple[Level, ...] = DEFAULT_LADDER,
                 *, start: int = 0, down_frac: float = 0.9, up_frac: float = 0.6,
                 hold_frames: int = 30, settle_frames: int = 5) -> None:
        if isinstance(budget_ms, bool) or not isinstance(budget_ms, (int, float)) \
                or not math.isfinite(budget_ms) or budget_ms <= 0:
            raise ValueError(f"QualityGovernor: budget_ms must be a finite number > 0, "
                             f"got {budget_ms!r}")
        ladder = tuple(ladder)
        if not ladder or not all(isinstance(level, Level) for level in ladder):
            raise ValueError(f"QualityGovernor: ladder must be a non-empty sequence of Level, "
                             f"got {ladder!r}")
        for better, worse in zip(ladder[:-1], ladder[1:], strict=True):
            if worse.scale < better.scale or not (
                    worse.scale > better.scale
                    or _cap_value(worse.iter_cap) < _cap_value(better.iter_cap)):
                raise ValueError(f"QualityGovernor: each level needs a larger scale, or the same "
                                 f"scale and a lower cap, than the one before it; got {better} "
                                 f"before {worse}")
        if not (0.0 < up_frac < down_frac <= 1.0):
            raise ValueError(f"QualityGovernor: need 0 < up_frac < down_frac <= 1, got "
                             f"up_frac={up_frac!r}, down_frac={down_frac!r}")
        for name, value in (("hold_frames", hold_frames), ("settle_frames", settle_frames)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QualityGovernor: {name} must be an int >= 1, got {value!r}")
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < len(ladder):
            raise ValueError(f"QualityGovernor: start must be a level index in "
                             f"[0, {len(ladder) - 1}], got {start!r}")
        self.budget_ms = float(budget_ms)
        self.ladder = ladder
        self.down_ms = down_frac * self.budget_ms
        self.up_ms = up_frac * self.budget_ms
        self.hold_frames = hold_frames
        self.settle_frames = settle_frames
        self.level = start
        #: ``ratio_bounds[j]``: the range the cost ratio of level j to level j + 1 can take:
        #: between 1 (a fixed cost per frame, the same at both) and the sample-count ratio times
        #: 1 and times the cap ratio (either way round).
        self.ratio_bounds = []
        #: ``ratio[j]``: the estimated cost of level j over that of level j + 1.
        self.ratio = []
        self._learnt = [False] * (len(ladder) - 1)
        for better, worse in zip(ladder[:-1], ladder[1:], strict=True):
            samples = better.samples(*_REFERENCE_SIZE) / worse.samples(*_REFERENCE_SIZE)
            caps = _cap_value(better.iter_cap) / _cap_value(worse.iter_cap)
            self.ratio_bounds.append((min(samples * min(caps, 1.0), 1.0),
                                      max(samples * max(caps, 1.0), 1.0)))
            self.ratio.append(samples)
        self._recent: deque[float] = deque(maxlen=max(hold_frames, self.NEAR_WINDOW,
                                                      settle_frames))
        self._pending: tuple[int, int, float] | None = None  # (from, to, cost before the move)
        self._after: list[float] = []
        #: Frames recorded at each level (index -> count), and level changes so far.
        self.frames_at = [0] * len(ladder)
        self.changes = 0

    @property
    def current(self) -> Level:
        """The level to draw the next frame at."""
        return self.ladder[self.level]

    def record(self, frame_ms: float) -> int:
        """Take one frame's cost (ms) at :attr:`current`; returns the level index for the next
        frame. NaN or negative costs are a ``ValueError``; inf counts as a missed frame."""
        if isinstance(frame_ms, bool) or not isinstance(frame_ms, (int, float)) \
                or math.isnan(frame_ms) or frame_ms < 0:
            raise ValueError(f"QualityGovernor.record: frame_ms must be a number >= 0, "
                             f"got {frame_ms!r}")
        frame_ms = float(frame_ms)
        self.frames_at[self.level] += 1
        self._recent.append(frame_ms)
        if self._pending is not None:
            self._after.append(frame_ms)
            if len(self._after) >= self.settle_frames:
                self._observe()
        if self.level + 1 < len(self.ladder) and self._too_slow(frame_ms):
            self._move(self.level + 1)
        elif self.level > 0 and self._margin():
            self._move(self.level - 1)
        return self.level

    def predicted_up_ms(self) -> float | None:
        """The 90th percentile (nearest rank) of the last ``hold_frames`` frames' costs scaled to
        the level above (None at the top, or before ``hold_frames`` frames at this level)."""
        if self.level == 0 or len(self._recent) < self.hold_frames:
            return None
        recent = sorted(list(self._recent)[-self.hold_frames:])
        p90 = recent[math.ceil(self.UP_PERCENTILE / 100.0 * len(recent)) - 1]
        return p90 * self.ratio[self.level - 1]

    def summary(self) -> str:
        """Frames per level as a one-line report, e.g. ``"quality: scale 1 40%, scale 2 60%
        (3 changes)"`` (levels without frames left out)."""
        total = max(sum(self.frames_at), 1)
        parts = [f"{level.describe()} {100.0 * n / total:.0f}%"
                 for level, n in zip(self.ladder, self.frames_at, strict=True) if n]
        return f"quality: {', '.join(parts) or 'no frames'} ({self.changes} changes)"

    def _too_slow(self, frame_ms: float) -> bool:
        if frame_ms > self.budget_ms:
            return True
        near = list(self._recent)[-self.NEAR_WINDOW:]
        return sum(t > self.down_ms for t in near) >= self.NEAR_COUNT

    def _margin(self) -> bool:
        predicted = self.predicted_up_ms()
        return predicted is not None and predicted < self.up_ms

    def _move(self, to: int) -> None:
        if self._pending is not None and self._after:
            self._observe()
        before = sorted(self._recent)
        self._pending = (self.level, to, before[len(before) // 2])
        self._after = []
        self._recent.clear()
        self.level = to
        self.changes += 1

    def _observe(self) -> None:
        """Turn the pending move's before/after costs into a ratio observation."""
        origin, to, before = self._pending
        after = sorted(self._after)[len(self._after) // 2]
        self._pending, self._after = None, []
        j = min(origin, to)
        hi, lo = (before, after) if origin < to else (after, before)
        low, high = self.ratio_bounds[j]
        obs = min(max(hi / lo, low), high) if lo > 0 and math.isfinite(hi) else high
        self.ratio[j] = math.sqrt(self.ratio[j] * obs) if self._learnt[j] else obs
        self._learnt[j] = True
