"""Plain numpy reference of BeatNet's CRNN forward pass (float64, PyTorch conventions).

The executable specification the ONNX graph (and any faster kernel) is checked against in
tests and benchmarks. Slow on purpose: no tricks, one LSTM step at a time.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def reference_forward(
    weights: dict[str, np.ndarray], features: np.ndarray, h0: np.ndarray, c0: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the CRNN over a batch of sequences.

    Parameters
    ----------
    weights : BeatNet state dict (``conv1.weight`` ... ``linear.bias``, torch gate order
        i, f, g, o); float64 arrays avoid a conversion per call.
    features : (B, T, 272) front-end features.
    h0, c0 : (2, B, 150) initial LSTM state (layer, batch, unit).

    Returns ``(probs (B, T, 3), hN (2, B, 150), cN (2, B, 150))`` in float64, probabilities
    ordered [beat, downbeat, no-beat].
    """
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    x = np.asarray(features, np.float64)
    n_batch, n_time, _ = x.shape
    kernel = w["conv1.weight"][:, 0, :]  # (2 channels, 10 taps)
    windows = np.lib.stride_tricks.sliding_window_view(x, kernel.shape[1], axis=2)
    conv = np.einsum("btlk,ck->btcl", windows, kernel) + w["conv1.bias"][None, None, :, None]
    conv = np.maximum(conv, 0.0)  # (B, T, 2, 263)
    pooled = np.maximum(conv[..., 0:262:2], conv[..., 1:262:2])  # MaxPool1d(2): (B, T, 2, 131)
    emb = pooled.reshape(n_batch, n_time, 262) @ w["linear0.weight"].T + w["linear0.bias"]
    h = np.array(h0, np.float64)
    c = np.array(c0, np.float64)
    top = np.zeros((n_batch, n_time, h.shape[2]))
    for t in range(n_time):
        inp = emb[:, t]
        for layer in range(h.shape[0]):
            gates = (
                inp @ w[f"lstm.weight_ih_l{layer}"].T
                + w[f"lstm.bias_ih_l{layer}"]
                + h[layer] @ w[f"lstm.weight_hh_l{layer}"].T
                + w[f"lstm.bias_hh_l{layer}"]
            )
            i, f, g, o = np.split(gates, 4, axis=-1)
            c[layer] = _sigmoid(f) * c[layer] + _sigmoid(i) * np.tanh(g)
            h[layer] = _sigmoid(o) * np.tanh(c[layer])
            inp = h[layer]
        top[:, t] = inp
    logits = top @ w["linear.weight"].T + w["linear.bias"]
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True), h, c
