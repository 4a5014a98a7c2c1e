"""The anticipator network (torch): a small causal GRU over the 12.5 Hz slow grid.

Per slow step ``t`` (one step = 4 analysis frames = 80 ms), for every batch item:

- input normalisation with fixed statistics of the training corpus, stored as buffers and
  baked into the exported graph as constants: ``a = (audio_features - audio_mean) *
  audio_scale`` (272), ``b = (beat_features - beat_mean) * beat_scale`` (5);
- audio projection: ``p = relu(W_a a + c_a)`` (``proj`` units);
- beat and bar counters (:func:`beat_counters`), derived inside the model from the beat
  features and the state: a beat is counted when the beat phase wraps (``sin 2πφ`` goes from
  negative to non-negative while the phase moves forward), a bar when that beat has
  ``downbeat_prob > 0.5``; the counts are kept modulo 64 beats and 16 bars (integers, exact in
  float32) and enter as ``sin``/``cos`` of ``2π count / period`` for the periods 4, 8, 16, 32,
  64 beats and 2, 4, 8, 16 bars (18 features ``k``): the phrase position the GRU can relate to
  the last change it heard;
- a GRU (``hidden`` units; by default what the contract's state carries) over ``[p; b; k]``;
- heads: ``z = relu(W_h [h; k] + c_h)`` (``head`` units), then ``section_logits = W_s z + c_s``
  (8) and ``hazard_logits = W_z z + c_z`` (5).

The contract's recurrent state ``state_in`` / ``state_out`` [B, hidden + 4] is the whole
state: ``[h (hidden), previous sin 2πφ, previous cos 2πφ, beat count mod 64, bar count mod
16]``; ``contracts/v1.json`` fixes its size, so ``hidden`` is that size - 4 for a model the
runtime loads.

The network is causal: output ``t`` depends on inputs ``0..t`` and ``state_in`` only. Its
forward takes and returns exactly the contract's tensors (``contracts/v1.json``
``models.anticipator``), so the module itself is what :func:`export_onnx` in
:mod:`.train_anticipator` hands to ``torch.onnx.export``.

Zero inputs have a meaning the training noise relies on: all-zero audio features are silence
(``log10(1 + 0)``, no flux) and all-zero beat features are "no beat information" (the dropped
beat features of the robustness noise), which is also what the runtime feeds in place of
NaN/inf (:mod:`fractalsync_models.anticipator`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..anticipator import (  # the runtime's step kernel reads the same constants
    BAR_PERIODS,
    BEAT_PERIODS,
    COUNTER_STATE,
    DOWNBEAT_THRESHOLD,
    N_AUDIO,
    N_BEAT,
    N_COUNTER,
    N_HORIZONS,
    N_SECTIONS,
)


def contract_hidden(contract: dict | None = None) -> int:
    """GRU units of a network the runtime loads: the contract's ``state_in`` size (default:
    the packaged ``contracts/v1.json``) minus the :data:`COUNTER_STATE` counter values."""
    from ..contract import load_contract

    contract = load_contract() if contract is None else contract
    return int(contract["models"]["anticipator"]["inputs"][2]["shape"][-1]) - COUNTER_STATE


def beat_counters(beat: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Beat/bar counter features of a sequence and the counter state after it.

    beat : [B,T,5] raw beat features (T >= 1); tail : [B,4] counter state (previous sin,
    previous cos, beats mod 64, bars mod 16). Returns features [B,T,18] (sin of every angle,
    then cos of every angle; angles ``2π beats / p`` for p in BEAT_PERIODS, then
    ``2π bars / p`` for p in BAR_PERIODS, counts after the step's own wrap) and the new tail
    [B,4].
    """
    s, c, down_p = beat[..., 0], beat[..., 1], beat[..., 4]
    s_prev = torch.cat([tail[:, 0:1], s[:, :-1]], dim=1)
    c_prev = torch.cat([tail[:, 1:2], c[:, :-1]], dim=1)
    wrap = ((s_prev < 0) & (s >= 0) & (c_prev * s - s_prev * c > 0)).to(beat.dtype)
    down = wrap * (down_p > DOWNBEAT_THRESHOLD).to(beat.dtype)
    beats = torch.remainder(tail[:, 2:3] + torch.cumsum(wrap, dim=1), float(BEAT_PERIODS[-1]))
    bars = torch.remainder(tail[:, 3:4] + torch.cumsum(down, dim=1), float(BAR_PERIODS[-1]))
    angles = [beats * (2 * np.pi / p) for p in BEAT_PERIODS]
    angles += [bars * (2 * np.pi / p) for p in BAR_PERIODS]
    feats = torch.stack([torch.sin(a) for a in angles] + [torch.cos(a) for a in angles], -1)
    new_tail = torch.stack([s[:, -1], c[:, -1], beats[:, -1], bars[:, -1]], dim=-1)
    return feats, new_tail


class AnticipatorNet(nn.Module):
    """Causal section/hazard network with an explicit [B, hidden + 4] recurrent state.

    Parameters
    ----------
    audio_mean, audio_std : (272,) per-feature statistics of the training corpus.
    beat_mean, beat_std : (5,) the same for the beat features.
    proj : width of the audio projection.
    head : width of the hidden layer of the heads.
    hidden : GRU units; default :func:`contract_hidden` (what the packaged contract carries).

    Standard deviations below 1e-3 are floored at 1e-3 (constant features stay finite).
    """

    def __init__(
        self,
        audio_mean: np.ndarray,
        audio_std: np.ndarray,
        beat_mean: np.ndarray,
        beat_std: np.ndarray,
        proj: int = 64,
        head: int = 64,
        hidden: int | None = None,
    ):
        super().__init__()
        for name, value, n in (
            ("audio_mean", audio_mean, N_AUDIO),
            ("audio_std", audio_std, N_AUDIO),
            ("beat_mean", beat_mean, N_BEAT),
            ("beat_std", beat_std, N_BEAT),
        ):
            value = np.asarray(value, np.float64)
            if value.shape != (n,) or not np.isfinite(value).all():
                raise ValueError(f"{name}: expected {n} finite values, got shape {value.shape}")
        self.register_buffer("audio_mean", torch.tensor(audio_mean, dtype=torch.float32))
        self.register_buffer(
            "audio_scale", torch.tensor(1.0 / np.maximum(audio_std, 1e-3), dtype=torch.float32)
        )
        self.register_buffer("beat_mean", torch.tensor(beat_mean, dtype=torch.float32))
        self.register_buffer(
            "beat_scale", torch.tensor(1.0 / np.maximum(beat_std, 1e-3), dtype=torch.float32)
        )
        self.audio_proj = nn.Linear(N_AUDIO, proj)
        self.hidden = hidden = contract_hidden() if hidden is None else int(hidden)
        self.gru = nn.GRU(proj + N_BEAT + N_COUNTER, hidden, batch_first=True)
        self.head = nn.Linear(hidden + N_COUNTER, head)
        self.section_out = nn.Linear(head, N_SECTIONS)
        self.hazard_out = nn.Linear(head, N_HORIZONS)

    def forward(
        self, audio_features: torch.Tensor, beat_features: torch.Tensor, state_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """audio_features [B,T,272], beat_features [B,T,5], state_in [B,hidden+4] (float32)
        -> section_logits [B,T,8], hazard_logits [B,T,5], state_out [B,hidden+4]."""
        a = (audio_features - self.audio_mean) * self.audio_scale
        b = (beat_features - self.beat_mean) * self.beat_scale
        k, tail = beat_counters(beat_features, state_in[:, self.hidden :])
        x = torch.cat([torch.relu(self.audio_proj(a)), b, k], dim=-1)
        h, h_n = self.gru(x, state_in[:, : self.hidden].unsqueeze(0).contiguous())
        z = torch.relu(self.head(torch.cat([h, k], dim=-1)))
        state_out = torch.cat([h_n.squeeze(0), tail], dim=-1)
        return self.section_out(z), self.hazard_out(z), state_out
