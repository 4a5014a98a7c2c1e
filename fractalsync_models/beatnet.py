"""The BeatNet model registry: one place that validates a model choice and loads it.

A choice is one of :data:`MODEL_CHOICES`: a single weight set (1: GTZAN held out in training, 2:
Ballroom held out, 3: Rock corpus held out) or ``"ensemble"``, the three combined.
:func:`load_beatnet` returns a :class:`BeatNetModel` with the same interface for every choice:

* ``run(features)``: a whole (T, 272) feature sequence -> (T, 3) probabilities (offline);
* ``step(frame, out)``: one frame, carrying each member's LSTM state (online);
* ``reset()``: back to the zero state.

Outputs are in the contract's order ``[beat, downbeat, no-beat]``. For the ensemble the members'
outputs are combined frame by frame by :func:`combine`, one rule for ``run`` and ``step``: the
online output of a frame equals the offline output of that frame.

Combination rules
-----------------
Each rule maps the members' rows ``(b_m, d_m, n_m)`` of one frame to one row (definitions in
:func:`combine`). Measured by ``benchmarks/measure_downbeat_combination.py`` (mean beat F /
downbeat F, +-70 ms after 5 s; offline: the Viterbi grid, online: the particle filter, seeds
0-2) on the two reference excerpts against BeatNet's DBN (real recordings; pseudo ground truth
made from model 1), the 18-item synthetic set and 16 rendered loops (waltzes with and without
drums, rock, drum-and-bass two-step and Amen-style breaks, house, kick-only):

=================  =================  =================  =================
offline | online   reference          synthetic          loops
=================  =================  =================  =================
model 1            1.00 1.00 | .99 .80  .90 .73 | .88 .70  .91 .70 | .91 .65
model 2            .83 .85 | .92 .61    .97 .84 | .98 .84  .96 .74 | .94 .71
model 3            .83 .50 | .73 .39    .95 .60 | .92 .56  .92 .57 | .95 .53
mean               1.00 1.00 | .98 .86  .99 .92 | .97 .87  .98 .85 | .95 .80
geometric          1.00 1.00 | .92 .83  .99 .92 | .83 .68  .96 .78 | .93 .74
split_mean         1.00 1.00 | .98 .87  .99 .92 | .97 .85  .98 .89 | .95 .81
=================  =================  =================  =================

* ``mean``: the mixture of experts. Its downbeat share ``d / (b + d)`` is the members' shares
  weighted by their beat mass, so a member that hears the beat strongly but not the bar (model
  2 or 3 on many grooves) outvotes the one that hears the bar. It is close to ``split_mean``
  everywhere; the offline loop difference is one item (the drummed waltz at 156 BPM, 0.26
  against 1.00), and fast drummed waltzes are where the rules disagree: between 140 and 156 BPM
  the decoded meter flips with the tempo and the noise seed for every ensemble rule.
* ``geometric``: the product of experts (the offline default until this measurement). Any
  member that calls a downbeat a plain beat vetoes it: offline it reads the drummed waltz at
  148 BPM (seed 0; tests/test_beatnet_registry.py) as 4/4, downbeat F 0.28 against
  ``split_mean``'s 1.00; online the veto also costs beats (synthetic beat F 0.83).
* ``split_mean`` (the default, offline and online): beat evidence and meter evidence pooled
  separately, the beat mass by its mean (the ensemble's tempo robustness: it removes model 1's
  half/double-tempo errors on the synthetic set) and the downbeat share by its unweighted mean
  (every member's bar reading counts as much, however strongly it hears the beat). It is the
  best or within 0.015 of the best setting in every column, and at least as good as the best
  single model in every downbeat column; the one shortfall, online beat F on the synthetic set
  (0.97 against model 2's 0.98) and on the reference (0.98 against model 1's 0.99 on model
  1's own pseudo ground truth), is shared by every ensemble rule.

Candidates measured and dropped (defined in the script): model 1's share with the mean beat
mass (a per-output choice; synthetic downbeat F .86/.78), log-opinion pools of the shares,
unweighted or weighted by beat mass (best offline on the loops, .91, but online synthetic
downbeat .79/.84), the largest share, the share of the most decided member, the root mean
square of the shares, shares weighted by beat mass squared, and a mixture weighted per frame by
each member's confidence ``1 - H/log 3`` (online reference downbeat .68), and ``split_mean``
with the beat mass log-opinion pooled instead (loops offline downbeat .77, synthetic online
beat F .91). What ``split_mean`` gives up: on the whole "Let's Go Fishin'" (no ground truth
beyond the 30 s excerpt) the offline grid reads 176.5 BPM, as the mean does, where model 1 and
the geometric mean read 88.6 BPM. On BeatNet's
``808kick120bpm.mp3`` (identical kicks, no bar cue) every setting's beat F is 0.98-0.99; the
downbeats there are only a convention (see the script).

The online default stays model 1 alone: the three-member step costs p50 79 / p99 137 us per
frame here (one member: 24 / 40 us), which with the rest of the chain exceeds the 150 us p99
budget per 20 ms hop. ``ONLINE_RULE`` is what ``BeatTracker(model="ensemble")`` uses.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .crnn import N_FEATURES, BeatNetCRNN

__all__ = [
    "COMBINATION_RULES",
    "ENSEMBLE_VARIANTS",
    "MODEL_CHOICES",
    "OFFLINE_MODEL",
    "OFFLINE_RULE",
    "ONLINE_MODEL",
    "ONLINE_RULE",
    "BeatNetModel",
    "check_model",
    "combine",
    "load_beatnet",
]

#: Every valid model choice.
MODEL_CHOICES = (1, 2, 3, "ensemble")
#: The weight sets the ensemble combines.
ENSEMBLE_VARIANTS = (1, 2, 3)
#: Names of the combination rules (see :func:`combine`).
COMBINATION_RULES = ("mean", "geometric", "split_mean")
#: Default model choice of the offline beat grid and its ensemble rule.
OFFLINE_MODEL, OFFLINE_RULE = "ensemble", "split_mean"
#: Default model choice of the live tracker and its ensemble rule.
ONLINE_MODEL, ONLINE_RULE = 1, "split_mean"
_FLOOR = 1e-9


def check_model(model) -> int | str:
    """Return ``model`` if it is one of :data:`MODEL_CHOICES`, else raise ValueError naming it.

    Bools are refused (``True == 1`` would otherwise select model 1); numpy integers are
    accepted and returned as ``int``.
    """
    if isinstance(model, (bool, np.bool_)):
        raise ValueError(f"model must be one of {MODEL_CHOICES}, got {model!r}")
    if isinstance(model, np.integer):
        model = int(model)
    if model not in MODEL_CHOICES or (isinstance(model, float)):
        raise ValueError(f"model must be one of {MODEL_CHOICES}, got {model!r}")
    return model


@njit(cache=True)
def _combine(stack, rule, out):
    """Combine members' probabilities frame by frame (each output row a function of the
    members' rows of that frame only).

    stack: (M, T, 3) float32, each row ``[beat, downbeat, no-beat]``. rule: an index into
    :data:`COMBINATION_RULES` (0 mean, 1 geometric, 2 split_mean; see :func:`combine`).
    out: (T, 3) float32, written in place.
    """
    m_count = stack.shape[0]
    for t in range(stack.shape[1]):
        if rule == 2:
            mass = 0.0
            share = 0.0
            for m in range(m_count):
                s = np.float64(stack[m, t, 0]) + np.float64(stack[m, t, 1])
                mass += s
                if s > _FLOOR:
                    share += np.float64(stack[m, t, 1]) / s
            mass = min(max(mass / m_count, 0.0), 1.0)
            share = min(max(share / m_count, 0.0), 1.0)
            out[t, 0] = mass * (1.0 - share)
            out[t, 1] = mass * share
            out[t, 2] = 1.0 - mass
            continue
        total = 0.0
        for c in range(3):
            if rule == 0:
                acc = 0.0
                for m in range(m_count):
                    acc += stack[m, t, c]
                v = acc / m_count
            else:
                acc = 0.0
                for m in range(m_count):
                    acc += math.log(max(np.float64(stack[m, t, c]), _FLOOR))
                v = math.exp(acc / m_count)
            out[t, c] = v
            total += v
        if rule == 1:
            for c in range(3):
                out[t, c] = out[t, c] / total


def combine(probs, rule: str = "mean") -> np.ndarray:
    """Combine the members' CRNN outputs of one signal.

    Parameters
    ----------
    probs : sequence of M >= 1 arrays of shape (T, 3), or an array (M, T, 3)
        Each member's ``[beat, downbeat, no-beat]`` probabilities per frame.
    rule : one of :data:`COMBINATION_RULES`, defined per frame on the members' rows
        ``(b_m, d_m, n_m)``:

        * ``"mean"``: the arithmetic mean of the rows (a mixture of experts);
        * ``"geometric"``: the geometric mean of the rows, each value floored at 1e-9,
          renormalised to sum to 1 (a product of experts);
        * ``"split_mean"``: beat evidence and meter evidence pooled separately. The beat mass
          ``S = mean(b_m + d_m)`` and the downbeat share ``R = mean(r_m)`` with
          ``r_m = d_m / (b_m + d_m)`` (0 for a member with ``b_m + d_m <= 1e-9``), both
          clipped to [0, 1]; the row is ``[S (1 - R), S R, 1 - S]``. For one member it
          returns the member's row (up to float32 rounding, for rows that sum to 1).

        The measured effect of each rule is in the module docstring.

    Returns
    -------
    np.ndarray, (T, 3) float32
    """
    if rule not in COMBINATION_RULES:
        raise ValueError(f"rule must be one of {COMBINATION_RULES}, got {rule!r}")
    stack = np.ascontiguousarray(np.asarray(probs, dtype=np.float32))
    if stack.ndim != 3 or stack.shape[0] < 1 or stack.shape[2] != 3:
        raise ValueError(f"expected M >= 1 arrays of shape (T, 3), got shape {stack.shape}")
    out = np.empty(stack.shape[1:], np.float32)
    _combine(stack, COMBINATION_RULES.index(rule), out)
    return out


class BeatNetModel:
    """A validated, loaded model choice with ``run``, ``step`` and ``reset`` (module docstring).

    Parameters
    ----------
    model : one of :data:`MODEL_CHOICES`.
    rule : combination rule of the ensemble (ignored for a single weight set).

    Attributes
    ----------
    model : the choice.
    members : the loaded :class:`~fractalsync_models.crnn.BeatNetCRNN` (one, or three).

    Raises ValueError for a bad choice or rule, and what :class:`BeatNetCRNN` raises for
    missing or invalid model files (``ModelNotFoundError`` names the command that makes them).
    Not thread-safe for ``step``: one instance per stream.
    """

    def __init__(self, model: int | str = 1, rule: str = "split_mean") -> None:
        self.model = check_model(model)
        if rule not in COMBINATION_RULES:
            raise ValueError(f"rule must be one of {COMBINATION_RULES}, got {rule!r}")
        self.rule = rule
        self._rule = COMBINATION_RULES.index(rule)
        variants = ENSEMBLE_VARIANTS if self.model == "ensemble" else (self.model,)
        self.members = tuple(BeatNetCRNN(variant=v) for v in variants)
        self._stack = np.zeros((len(self.members), 1, 3), np.float32)
        self._out = np.zeros((1, 3), np.float32)

    def __repr__(self) -> str:
        return f"BeatNetModel(model={self.model!r}, rule={self.rule!r})"

    def reset(self) -> None:
        """Every member back to the zero LSTM state."""
        for m in self.members:
            m.reset()

    def combine(self, probs) -> np.ndarray:
        """This model's combination of its members' (T, 3) outputs (the identity for one)."""
        if len(self.members) == 1:
            return np.asarray(probs[0], np.float32)
        return combine(probs, self.rule)

    def run(self, features) -> np.ndarray:
        """(T, 272) features -> (T, 3) float32 probabilities, from the zero state; the
        streaming state of :meth:`step` is not touched."""
        return self.combine([m.run(features) for m in self.members])

    def step(self, frame, out: np.ndarray | None = None) -> np.ndarray:
        """One (272,) float frame -> (3,) float32 probabilities (into ``out`` if given), carrying
        the state. Raises as :meth:`BeatNetCRNN.step` does (the state is then unchanged)."""
        frame = np.asarray(frame)
        if frame.shape != (N_FEATURES,):
            raise ValueError(f"frame: expected shape ({N_FEATURES},), got {frame.shape}")
        if frame.dtype.kind != "f":
            raise TypeError(f"frame: expected float features, got dtype {frame.dtype}")
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
            x = np.ascontiguousarray(frame, dtype=np.float32)
        if not np.isfinite(x).all():
            i = int(np.argmin(np.isfinite(x)))
            raise ValueError(f"frame must be finite: element ({i},) is {x[i]}")
        if out is not None:
            if getattr(out, "shape", None) != (3,):
                raise ValueError(f"out: expected a (3,) float array, got {out!r:.60}")
            if out.dtype.kind != "f":
                raise TypeError(f"out: expected a float array, got dtype {out.dtype}")
        result = self._out[0]
        self._step_trusted(x, result)
        if out is None:
            return result.copy()
        out[...] = result
        return out

    def _step_trusted(self, frame: np.ndarray, out: np.ndarray) -> None:
        """:meth:`step` without checks: ``frame`` C-contiguous finite float32 (272,), ``out``
        float32 (3,). Allocates nothing."""
        if len(self.members) == 1:
            self.members[0]._step_trusted(frame, out)
            return
        for m, row in zip(self.members, self._stack, strict=True):
            m._step_trusted(frame, row[0])
        _combine(self._stack, self._rule, self._out)
        out[:] = self._out[0]


def load_beatnet(model: int | str = 1, rule: str = "split_mean") -> BeatNetModel:
    """:class:`BeatNetModel` of ``model`` (validated by :func:`check_model`)."""
    return BeatNetModel(model, rule)
