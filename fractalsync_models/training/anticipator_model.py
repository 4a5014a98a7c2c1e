"""The anticipator network (torch): a small causal GRU over the 12.5 Hz slow grid.

Per slow step ``t`` (one step = 4 analysis frames = 80 ms), for every batch item:

- input normalisation with fixed statistics of the training corpus, stored as buffers and
  baked into the exported graph as constants: ``a = (audio_features - audio_mean) *
  audio_scale`` (272), ``b = (beat_features - beat_mean) * beat_scale`` (5);
- audio projection: ``p = relu(W_a a + c_a)`` (``proj`` units);
- a GRU (``hidden`` = 128 units, the contract's whole recurrent state: ``state_in`` /
  ``state_out`` [B, 128] are the GRU's hidden state) over ``[p; b]``;
- heads: ``z = relu(W_h h + c_h)`` (``head`` units), then ``section_logits = W_s z + c_s`` (8)
  and ``hazard_logits = W_z z + c_z`` (5).

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

N_AUDIO = 272  # contract frontend.dim
N_BEAT = 5  # contract beat_features.dim
N_SECTIONS = 8  # len(contract sections.labels)
N_HORIZONS = 5  # len(contract hazard.horizons_beats)
STATE = 128  # contract models.anticipator state_in.shape[-1]


class AnticipatorNet(nn.Module):
    """Causal section/hazard network with an explicit [B, 128] recurrent state.

    Parameters
    ----------
    audio_mean, audio_std : (272,) per-feature statistics of the training corpus.
    beat_mean, beat_std : (5,) the same for the beat features.
    proj : width of the audio projection.
    head : width of the hidden layer of the heads.

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
        self.gru = nn.GRU(proj + N_BEAT, STATE, batch_first=True)
        self.head = nn.Linear(STATE, head)
        self.section_out = nn.Linear(head, N_SECTIONS)
        self.hazard_out = nn.Linear(head, N_HORIZONS)

    def forward(
        self, audio_features: torch.Tensor, beat_features: torch.Tensor, state_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """audio_features [B,T,272], beat_features [B,T,5], state_in [B,128] (float32) ->
        section_logits [B,T,8], hazard_logits [B,T,5], state_out [B,128]."""
        a = (audio_features - self.audio_mean) * self.audio_scale
        b = (beat_features - self.beat_mean) * self.beat_scale
        x = torch.cat([torch.relu(self.audio_proj(a)), b], dim=-1)
        h, h_n = self.gru(x, state_in.unsqueeze(0))
        z = torch.relu(self.head(h))
        return self.section_out(z), self.hazard_out(z), h_n.squeeze(0)
