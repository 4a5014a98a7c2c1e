"""The controller network: contract inputs and a 64-float state in, 8 controls and the state out.

One call per 60 Hz render frame (``contracts/v1.json`` ``models.controller``).
:meth:`ControllerNet.forward` is the exported graph (one frame, batch B);
:meth:`ControllerNet.sequence` runs T frames at once for training and gives the same values
(the same filter step in a loop; tested). The graph is kept to about 40 small operators (the
per-frame budget is 50 us through onnxruntime).

Inside the graph, per frame:

1. **Features** (25 values): the micro features normalised by fixed corpus statistics
   (``micro_mean``, ``micro_std``: buffers baked into the graph), the beat features with
   ``ln(spb / 0.5)`` for ``ln spb``, the 8 section probabilities and the 5 hazards.
2. **Pulse bank** (``N_BANK`` values, fixed form): von Mises bumps of the beat phase
   ``conf * exp(kappa (cos(2 pi (phi - phi0)) - 1))``, computed from the beat features'
   ``u = (sin, cos)`` as ``exp(-kappa / 2 |u - u0|^2)`` with ``u0`` the unit vector of
   ``phi0`` (``1 - cos = |u - u0|^2 / 2``, free of the cancellation that ``kappa cos -
   kappa`` has in float32), for the ``(kappa, phi0)`` of ``PULSE_BUMPS`` (sharp bumps on and
   just after the beat, wider ones later: a fast attack and a slower decay are a linear
   read-out).
3. **GRU** (``HIDDEN`` = 47 units) over the features.
4. **Head**: a linear map of ``[h, features]`` to 8 slow targets and ``2 N_BANK`` pulse gains.
   Targets ``scale * tanh(raw)`` around ``CENTRE`` (``TARGET_SCALE``): c (re, im), log-zoom,
   rotation speed (rad/s), hue, saturation, brightness logit, detail.
5. **Fixed filters** (the smoothness built in): two one-pole low-passes in series per target,
   ``y += alpha (x - y)``, ``alpha = 1 - exp(-1 / (60 tau))`` with the time constants
   ``TAU_S`` and ``TAU2_S`` (``TAU2_S = 0``: one stage). The filters hold the offsets from
   ``CENTRE``, so the zero state at a stream's start is the centre picture, gliding to the
   first targets within ``TAU_S``. The rotation angle integrates the filtered speed
   (``speed / 60`` per frame) and is wrapped to [-pi, pi): a slow spin whose jerk is the
   speed's second derivative / 60.
6. **Outputs**: ``v = CENTRE + filtered + pulse`` (the pulse: gains times bank, summed into the
   brightness logit and the log-zoom), then ``c = v[0:2]``, ``zoom = exp(v[2])``,
   ``rotation`` the angle, ``hue, saturation = v[4:6]``, ``brightness = 2 sigmoid(v[6])``,
   ``detail = v[7]``, clipped to ``CONTROL_RANGES`` (the filtered values are within them by
   construction; the clip bounds the zoom pulse).

State layout (64 floats): ``[0:47]`` GRU h, ``[47:55]`` first filter stage, ``[55:63]`` second
stage (control order, offsets from ``CENTRE``), ``[63]`` the rotation angle (rad, wrapped).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from examples.julia.controller import CONTROL_NAMES, CONTROL_RANGES

__all__ = ["CENTRE", "HIDDEN", "N_BANK", "N_FEATURES", "STATE", "ControllerNet"]

FPS = 60.0
HIDDEN = 47
STATE = 64
N_FEATURES = 25
#: (kappa, phase offset in beats) of the pulse bank's von Mises bumps.
PULSE_BUMPS = ((400.0, 0.0), (400.0, 0.02), (150.0, 0.05), (60.0, 0.1), (25.0, 0.18),
               (400.0, -0.02))
N_BANK = len(PULSE_BUMPS)
#: Centre and half-range of each slow target, control order (brightness as its logit).
CENTRE = (-0.5, 0.0, 0.1, 0.0, 0.5, 0.5, 0.0, 0.5)
TARGET_SCALE = (1.2, 1.2, 0.5, 0.8, 0.5, 0.5, 4.0, 0.5)
#: First and second filter stage time constants (s), control order; 0 = no second stage.
TAU_S = (0.08, 0.08, 0.12, 0.3, 0.5, 0.15, 0.06, 0.15)
TAU2_S = (0.08, 0.08, 0.12, 0.3, 0.0, 0.0, 0.0, 0.0)
_LN_SPB0 = math.log(0.5)
_H, _S1, _S2 = slice(0, HIDDEN), slice(HIDDEN, HIDDEN + 8), slice(HIDDEN + 8, HIDDEN + 16)
_ROT = HIDDEN + 16
_BRIGHT, _ZOOM, _ROTATION = (CONTROL_NAMES.index(n) for n in ("brightness", "zoom", "rotation"))


def _alpha(taus) -> torch.Tensor:
    return torch.tensor([1.0 - math.exp(-1.0 / (FPS * t)) if t > 0 else 1.0 for t in taus],
                        dtype=torch.float32)


def _wrap(x: torch.Tensor) -> torch.Tensor:
    """``x`` (rad) wrapped to [-pi, pi)."""
    return x - (2.0 * math.pi) * torch.floor((x + math.pi) * (0.5 / math.pi))


def _f32(values) -> torch.Tensor:
    return torch.tensor(np.asarray(values, np.float64), dtype=torch.float32)


class ControllerNet(nn.Module):
    """See the module docstring. ``micro_mean``, ``micro_std``: (7,) normalisation of the
    micro features (the training corpus's statistics), fixed in the graph."""

    def __init__(self, micro_mean=None, micro_std=None) -> None:
        super().__init__()
        mean = np.zeros(7) if micro_mean is None else np.asarray(micro_mean, np.float64)
        std = np.ones(7) if micro_std is None else np.asarray(micro_std, np.float64)
        self.register_buffer("micro_mean", _f32(mean))
        self.register_buffer("micro_inv_std", _f32(1.0 / np.maximum(std, 1e-3)))
        self.register_buffer("beat_offset", _f32([0, 0, _LN_SPB0, 0, 0]))
        self.register_buffer("bump_u", _f32([[math.sin(2 * math.pi * p) for _, p in PULSE_BUMPS],
                                             [math.cos(2 * math.pi * p) for _, p in PULSE_BUMPS]]))
        self.register_buffer("bump_k", _f32([-0.5 * k for k, _ in PULSE_BUMPS]))
        self.register_buffer("conf_pick", _f32(np.eye(5)[3]))
        pulse = np.zeros((2 * N_BANK, 8))  # gains * bank -> brightness logit, log-zoom
        pulse[:N_BANK, _BRIGHT] = 1.0
        pulse[N_BANK:, _ZOOM] = 1.0
        self.register_buffer("pulse_map", _f32(pulse))
        self.register_buffer("scale", _f32(TARGET_SCALE))
        self.register_buffer("centre", _f32(CENTRE))
        self.register_buffer("alpha1", _alpha(TAU_S))
        self.register_buffer("alpha2", _alpha(TAU2_S))
        self.register_buffer("speed_pick", _f32(np.eye(8)[_ROTATION][:, None] / FPS))
        masks = np.zeros((4, 8))
        masks[0] = 1.0
        masks[0, [_ZOOM, _BRIGHT, _ROTATION]] = 0.0
        masks[3, _ROTATION] = 1.0
        masks[1, _ZOOM] = 1.0
        masks[2, _BRIGHT] = 2.0
        self.register_buffer("masks", _f32(masks))
        self.register_buffer("lo", _f32([CONTROL_RANGES[n][0] for n in CONTROL_NAMES]))
        self.register_buffer("hi", _f32([CONTROL_RANGES[n][1] for n in CONTROL_NAMES]))
        self.gru = nn.GRU(N_FEATURES, HIDDEN, batch_first=True)
        self.head = nn.Linear(HIDDEN + N_FEATURES, 8 + 2 * N_BANK)
        with torch.no_grad():  # start: the centre picture with a brightness pulse on beats
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            self.head.bias[8 + 1] = 1.5

    # ------------------------------------------------------------------ per-frame parts

    def features(self, micro, beat, sect, haz):
        """(..., 25) GRU features and (..., N_BANK) pulse bank of contract inputs with any
        leading dims (module docstring, items 1-2)."""
        m = (micro - self.micro_mean) * self.micro_inv_std
        x = torch.cat([m, beat - self.beat_offset, sect, haz], dim=-1)
        conf = (beat * self.conf_pick).sum(-1, keepdim=True)
        d = beat[..., :2, None] - self.bump_u
        return x, torch.exp((d * d).sum(-2) * self.bump_k) * conf

    def targets(self, h, x):
        """Slow targets (..., 8) as offsets from ``CENTRE`` and pulse gains (..., 2 N_BANK)
        from the GRU output ``h`` and the features ``x``."""
        out = self.head(torch.cat([h, x], dim=-1))
        return self.scale * torch.tanh(out[..., :8]), out[..., 8:]

    def filter_step(self, s1, s2, tgt):
        """One frame of the fixed filters: the new (s1, s2), each (..., 8)."""
        s1 = s1 + self.alpha1 * (tgt - s1)
        return s1, s2 + self.alpha2 * (s1 - s2)

    def outputs(self, s2, rotation, gains, bank):
        """The 8 controls (..., 8) from the second filter stage, the rotation angle (..., 1)
        and the pulse."""
        v = s2 + self.centre + (gains * torch.cat([bank, bank], dim=-1)) @ self.pulse_map
        control = (v * self.masks[0] + torch.exp(v * self.masks[1]) * self.masks[1]
                   + torch.sigmoid(v) * self.masks[2] + rotation * self.masks[3])
        return torch.minimum(torch.maximum(control, self.lo), self.hi)

    # ------------------------------------------------------------------ graph and training

    def forward(self, micro_features, beat_features, section_probs, hazard_probs, state_in):
        """One render frame: contract inputs (B,7), (B,5), (B,8), (B,5), state (B,64) ->
        control (B,8), state_out (B,64)."""
        x, bank = self.features(micro_features, beat_features, section_probs, hazard_probs)
        h0, s1, s2, angle = torch.split(state_in, [HIDDEN, 8, 8, 1], dim=1)
        _, h = self.gru(x[:, None, :], h0[None].contiguous())
        h = h[0]
        tgt, gains = self.targets(h, x)
        s1, s2 = self.filter_step(s1, s2, tgt)
        angle = _wrap(angle + s2 @ self.speed_pick)
        return self.outputs(s2, angle, gains, bank), torch.cat([h, s1, s2, angle], dim=1)

    def sequence(self, micro, beat, sect, haz, state=None):
        """T frames at once: inputs (B,T,n) -> dict with ``control`` (B,T,8), ``c`` (B,T,2),
        ``log_zoom`` (B,T) (with its pulse), ``rotation``, ``hue``, ``saturation``,
        ``brightness``, ``detail`` (B,T) and ``state`` (B,64) after the last frame.
        ``state``: (B,64) before the first frame (None: zeros, a stream's start)."""
        b, t = micro.shape[:2]
        if state is None:
            state = torch.zeros(b, STATE)
        x, bank = self.features(micro, beat, sect, haz)
        hs, h_last = self.gru(x, state[None, :, _H].contiguous())
        tgt, gains = self.targets(hs, x)
        s1, s2 = state[:, _S1], state[:, _S2]
        s2s = []
        for k in range(t):
            s1, s2 = self.filter_step(s1, s2, tgt[:, k])
            s2s.append(s2)
        s2s = torch.stack(s2s, 1)
        angle = state[:, None, _ROT:] + torch.cumsum(s2s @ self.speed_pick, dim=1)
        control = self.outputs(s2s, _wrap(angle), gains, bank)
        return {
            "control": control, "c": control[..., 0:2], "log_zoom": torch.log(control[..., 2]),
            "rotation": angle[..., 0], "hue": control[..., 4], "saturation": control[..., 5],
            "brightness": control[..., 6], "detail": control[..., 7],
            "state": torch.cat([h_last[0], s1, s2, _wrap(angle[:, -1])], dim=1),
        }
