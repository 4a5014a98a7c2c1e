"""Train the anticipator (:class:`.anticipator_model.AnticipatorNet`) and export it to ONNX.

Data: a corpus directory of per-track ``.npz`` files written by ``fractalsync-prepare`` (on the
12.5 Hz slow grid: ``audio_features (S,272) f4``, ``beat_features (S,5) f4``, ``y_section (S,)``
label index 0..7 in contract order or -1 = ignore, ``y_hazard (S,5)`` 0/1 per horizon,
``times (S,)`` s, ``beats``/``boundaries`` s). With ``--build-corpus N`` the corpus is made
first: N songs of the structured-song generator (seeds 0..N-1) in their training variant, each
rendered twice (numpy voices, and FluidSynth with per-song GM instruments, both with a random
EQ and level) and prepared by :mod:`.build_corpus`, so that one command reproduces the shipped
model from nothing.

Split by song: the tracks are grouped by song (renditions of one song share a name up to a
letter suffix after its number: ``song_000042`` and ``song_000042_gm`` for generator seed 42)
and the songs ordered by name; every rendition of the last ``--holdout`` songs is the test set
(never trained on, reported in the model card), those of the ``--val`` songs before them the
validation set (never trained on, monitored per epoch).

Losses (each logged per epoch):

- ``section``: cross-entropy over the 8 labels, steps with ``y_section == -1`` ignored;
- ``hazard[k]``: binary cross-entropy per horizon ``k`` with ``pos_weight[k] =
  sqrt(n_neg / n_pos)`` on the training set (clipped to [1, 10]): a boundary within 1 beat is
  rare (~2 % of steps), the square root halves the imbalance (in log) rather than removing it,
  trading some calibration (Brier) for recall on the rare short horizons;
- ``smooth``: the total-variation distance ``0.5 * sum_c |p[t,c] - p[t-1,c]|`` between
  consecutive section distributions of a track, averaged over step pairs (anti-flicker);
- total = section + ``hazard_weight`` * mean_k (w[k] hazard[k]) + ``smooth_weight`` * smooth,
  with the per-horizon weights ``w`` of ``--horizon-weights`` scaled to mean 1 (default all
  1).

Network size: ``--hidden`` GRU units (the recurrent state is ``hidden + 4`` floats, which
must be the contract's ``state_in`` size for the runtime to load the model: the default, and
any other value is refused before anything runs), ``--proj`` audio projection and ``--head``
head units (:class:`.anticipator_model.AnticipatorNet`).

Robustness noise, drawn per track and epoch on the beat features (:func:`augment_beats`):
a delay of 0-2 steps, dropped spans (all five features zero: "no beat information"), a
tempo-octave error on a span (spb x2 or x0.5 with the phase re-mapped along the unwrapped beat
phase), and mild Gaussian noise on both inputs.

Truncated back-propagation through time: a batch holds whole tracks, processed in consecutive
windows of ``--window`` steps; the GRU state is carried from window to window within a track
(detached), starting from zeros as the runtime does.

Export (:func:`export_onnx`): ``torch.onnx.export`` (TorchScript exporter, opset 17), IR
version 8, ``onnx.checker`` (full check), the contract's ``models.anticipator`` tensors with
dynamic ``B`` and ``T``, and an onnxruntime-vs-torch parity check (1e-5) before the file is
written atomically. (The parity is ``|onnx - torch| <= 1e-5 * max(|torch|, 1)``: logits of
a trained model reach tens, where float32 rounding alone is a few 1e-6.)

CLI::

    python -m fractalsync_models.training.train_anticipator --build-corpus 240 \\
        --work /tmp/anticipator_work_v3 --out fractalsync_models/models/anticipator_v1.onnx \\
        --holdout 40 --val 20 --epochs 24 --batch 32 --window 512 --hazard-weight 2 --lr 4e-3 \\
        --jobs 2 --threads 1

(the shipped model's command; its model card ``anticipator_v1.json`` records it).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata

from ..anticipator import COUNTER_STATE, N_AUDIO, N_BEAT, N_HORIZONS, N_SECTIONS
from ..atomic_write import write_atomic
from ..cli_errors import add_debug_flag, cli_entry
from ..contract import load_contract, validate_onnx_model
from .anticipator_model import AnticipatorNet, contract_hidden

OPSET = 17
IR_VERSION = 8
PARITY_TOL = 1e-5
INPUT_NAMES = ("audio_features", "beat_features", "state_in")
OUTPUT_NAMES = ("section_logits", "hazard_logits", "state_out")
BEATS_PER_HORIZON = (1, 2, 4, 8, 16)  # contract hazard.horizons_beats


# --------------------------------------------------------------------------- data


@dataclass
class Track:
    """One prepared track on the slow grid (S steps).

    audio (S,272) f4, beat (S,5) f4, y_section (S,) i8 (-1 = ignore), y_hazard (S,5) f4 with
    NaN where undefined, times (S,) s, beats and boundaries (s) of the track.
    """

    name: str
    audio: np.ndarray
    beat: np.ndarray
    y_section: np.ndarray
    y_hazard: np.ndarray
    times: np.ndarray
    beats: np.ndarray
    boundaries: np.ndarray

    @property
    def song(self) -> str:
        """The song the track is a rendition of: its name without a letter suffix after the
        last digits (``song_000042_gm`` -> ``song_000042``; :func:`song_of`)."""
        return song_of(self.name)

    @property
    def seed(self) -> int | None:
        """The generator seed in the track's name (``song_00042``, ``song_00042_gm`` -> 42),
        if any."""
        m = re.search(r"(\d+)$", self.song)
        return int(m.group(1)) if m else None


_RENDITION_SUFFIX = re.compile(r"(?<=\d)_[a-z]+$")


def song_of(name: str) -> str:
    """The song of a track name: ``name`` without a ``_letters`` suffix that follows a digit
    (``song_000042_gm`` and ``song_000042`` are renditions of ``song_000042``; ``my_song``
    stays ``my_song``)."""
    return _RENDITION_SUFFIX.sub("", name)


def load_track(path: str | Path) -> Track:
    """Read one ``.npz`` of ``fractalsync-prepare``; ValueError naming the file if malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable .npz ({exc})") from None
    need = ("times", "audio_features", "beat_features", "y_section", "y_hazard")
    missing = [k for k in need if k not in d]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}")
    s = len(d["times"])
    shapes = {
        "audio_features": (s, N_AUDIO),
        "beat_features": (s, N_BEAT),
        "y_section": (s,),
        "y_hazard": (s, N_HORIZONS),
    }
    for k, shape in shapes.items():
        if d[k].shape != shape:
            raise ValueError(f"{path}: {k} has shape {d[k].shape}, expected {shape}")
    y = d["y_section"].astype(np.int64)
    if ((y < -1) | (y >= N_SECTIONS)).any():
        raise ValueError(f"{path}: y_section outside -1..{N_SECTIONS - 1}")
    return Track(
        name=path.stem,
        audio=np.nan_to_num(d["audio_features"].astype(np.float32), posinf=0.0, neginf=0.0),
        beat=np.nan_to_num(d["beat_features"].astype(np.float32), posinf=0.0, neginf=0.0),
        y_section=y,
        y_hazard=d["y_hazard"].astype(np.float32),
        times=d["times"].astype(np.float64),
        beats=d.get("beats", np.zeros(0)).astype(np.float64),
        boundaries=d.get("boundaries", np.zeros(0)).astype(np.float64),
    )


def load_corpus(corpus: str | Path) -> list[Track]:
    """All ``*.npz`` tracks of a corpus directory, ordered by name."""
    files = sorted(Path(corpus).glob("*.npz"))
    if not files:
        raise ValueError(f"{corpus}: no .npz tracks (make them with fractalsync-prepare)")
    return [load_track(f) for f in files]


def split_tracks(
    tracks: list[Track], holdout: int, val: int
) -> tuple[list[Track], list[Track], list[Track]]:
    """(train, val, test) by song (:attr:`Track.song`), songs in name order: test = every
    rendition of the last ``holdout`` songs, val = those of the ``val`` songs before them, so
    no plan is in two sets. (With one track per song, as in a user's corpus, songs are
    tracks.) ValueError if fewer than one training song remains."""
    songs = sorted({t.song for t in tracks})
    if holdout < 0 or val < 0 or len(songs) - holdout - val < 1:
        raise ValueError(
            f"cannot hold out {holdout} + {val} of {len(songs)} songs and keep one to train on"
        )
    n_train = len(songs) - holdout - val
    part = {s: 0 if i < n_train else 1 if i < n_train + val else 2 for i, s in enumerate(songs)}
    sets: tuple[list[Track], list[Track], list[Track]] = ([], [], [])
    for t in tracks:
        sets[part[t.song]].append(t)
    return sets


def feature_stats(tracks: list[Track]) -> dict[str, np.ndarray]:
    """Per-feature mean and standard deviation over all steps of ``tracks`` (float64)."""
    audio = np.concatenate([t.audio for t in tracks]).astype(np.float64)
    beat = np.concatenate([t.beat for t in tracks]).astype(np.float64)
    return {
        "audio_mean": audio.mean(0),
        "audio_std": audio.std(0),
        "beat_mean": beat.mean(0),
        "beat_std": beat.std(0),
    }


def hazard_pos_weight(tracks: list[Track]) -> np.ndarray:
    """(5,) ``sqrt(n_neg / n_pos)`` per horizon over defined targets, clipped to [1, 10]."""
    y = np.concatenate([t.y_hazard for t in tracks])
    ok = np.isfinite(y)
    pos = ((y > 0.5) & ok).sum(0)
    neg = ((y <= 0.5) & ok).sum(0)
    return np.clip(np.sqrt(neg / np.maximum(pos, 1)), 1.0, 10.0)


# --------------------------------------------------------------------------- robustness noise


def delay_beats(beat: np.ndarray, steps: int) -> np.ndarray:
    """Beat features ``steps`` slow steps late: row t is row t-steps (row 0 repeated at first).

    beat: (S,5); steps >= 0. Returns a new (S,5) array.
    """
    if steps <= 0 or len(beat) == 0:
        return beat.copy()
    idx = np.maximum(np.arange(len(beat)) - steps, 0)
    return beat[idx]


def tempo_octave_error(beat: np.ndarray, factor: float, start: int, stop: int,
                       offset: int = 0) -> np.ndarray:
    """Beat features as a tracker locked to the wrong tempo octave would give them on
    steps ``start:stop``.

    factor 2: half tempo (spb x2, ln spb + ln 2; the unwrapped beat phase ``P`` (in beats)
    becomes ``(P + offset) / 2``, ``offset`` in {0, 1} choosing which beats the slow clock
    lands on); factor 0.5: double tempo (spb / 2, phase ``2 P``). The phase is unwrapped over
    the whole track from ``atan2(sin, cos)``. Returns a new (S,5) array.
    """
    if factor not in (2.0, 0.5):
        raise ValueError(f"factor must be 2 or 0.5, got {factor!r}")
    out = beat.copy()
    if stop <= start:
        return out
    cycles = np.unwrap(np.arctan2(beat[:, 0], beat[:, 1])) / (2 * np.pi)
    remapped = (cycles[start:stop] + offset) / 2 if factor == 2.0 else cycles[start:stop] * 2
    out[start:stop, 0] = np.sin(2 * np.pi * remapped)
    out[start:stop, 1] = np.cos(2 * np.pi * remapped)
    out[start:stop, 2] += np.float32(math.log(factor))
    return out


def augment_beats(beat: np.ndarray, rng: np.random.Generator, p: float = 1.0) -> np.ndarray:
    """The training noise on one track's (S,5) beat features; ``p`` scales every probability.

    With probability 0.5p a delay of 1-2 steps; 0.3p a tempo-octave error (x2 or x0.5, equally
    likely) on a random span of 10-100 % of the track; 0.3p one to three dropped spans of
    2-40 s (all features zero); always Gaussian noise (sd 0.05 on sin/cos and ln spb, 0.05 on
    conf and downbeat_prob, clipped to [0, 1]) unless p == 0.
    """
    out = beat.copy()
    s = len(out)
    if s == 0 or p <= 0:
        return out
    if rng.random() < 0.5 * p:
        out = delay_beats(out, int(rng.integers(1, 3)))
    if rng.random() < 0.3 * p:
        n = int(rng.integers(max(1, s // 10), s + 1))
        start = int(rng.integers(0, s - n + 1))
        factor = 2.0 if rng.random() < 0.5 else 0.5
        out = tempo_octave_error(out, factor, start, start + n, int(rng.integers(0, 2)))
    if rng.random() < 0.3 * p:
        for _ in range(int(rng.integers(1, 4))):
            n = int(rng.integers(25, 500))
            start = int(rng.integers(0, s))
            out[start : start + n] = 0.0
    dropped = ~out.any(axis=1)
    out += rng.normal(0.0, 0.05, out.shape).astype(np.float32)
    out[:, 3:5] = np.clip(out[:, 3:5], 0.0, 1.0)
    out[dropped] = 0.0
    return out


# --------------------------------------------------------------------------- losses


def section_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of section logits [...,8] against labels [...] (-1 = ignore);
    0 if no step is labelled."""
    valid = y >= 0
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], y[valid])


def hazard_loss(
    logits: torch.Tensor, y: torch.Tensor, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """(5,) mean binary cross-entropy per horizon of hazard logits [...,5] against targets
    [...,5] in {0,1}; NaN targets are ignored; ``pos_weight`` (5,) multiplies the positive
    term. A horizon without a defined target gives 0."""
    valid = torch.isfinite(y)
    target = torch.where(valid, y, torch.zeros_like(y))
    per = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, reduction="none"
    )
    per = torch.where(valid, per, torch.zeros_like(per))
    dims = tuple(range(per.dim() - 1))
    return per.sum(dims) / valid.sum(dims).clamp(min=1)


def smoothness_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean total-variation distance between consecutive section distributions.

    logits [B,T,8]; mask [B,T] bool (steps inside the track). Pairs (t-1, t) count when both
    steps are inside; 0 when there is no pair.
    """
    p = torch.softmax(logits, dim=-1)
    tv = 0.5 * (p[:, 1:] - p[:, :-1]).abs().sum(-1)
    pair = mask[:, 1:] & mask[:, :-1]
    if not bool(pair.any()):
        return logits.sum() * 0.0
    return tv[pair].mean()


# --------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Training hyper-parameters (documented in the module docstring)."""

    epochs: int = 40
    batch: int = 16
    window: int = 128
    lr: float = 3e-3
    hazard_weight: float = 1.0
    smooth_weight: float = 0.2
    noise: float = 1.0
    seed: int = 0
    threads: int = 1  # torch threads: 2 ran 8-16x slower whenever another process held a core
    hidden: int = field(default_factory=contract_hidden)
    proj: int = 64
    head: int = 64
    horizon_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)


def _pad(arrays: list[np.ndarray], fill: float) -> np.ndarray:
    n = max(len(a) for a in arrays)
    out = np.full((len(arrays), n, *arrays[0].shape[1:]), fill, dtype=arrays[0].dtype)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _batch_tensors(tracks: list[Track], rng: np.random.Generator | None, noise: float):
    """Padded tensors of a batch: audio, beat, y_section (-1 pad), y_hazard (NaN pad), mask."""
    audio, beat = [], []
    for t in tracks:
        a, b = t.audio, t.beat
        if rng is not None and noise > 0:
            b = augment_beats(b, rng, noise)
            a = a + rng.normal(0.0, 0.02, a.shape).astype(np.float32)
        audio.append(a)
        beat.append(b)
    mask = _pad([np.ones(len(t.times), bool) for t in tracks], False)
    return (
        torch.from_numpy(_pad(audio, 0.0)),
        torch.from_numpy(_pad(beat, 0.0)),
        torch.from_numpy(_pad([t.y_section for t in tracks], -1)),
        torch.from_numpy(_pad([t.y_hazard for t in tracks], np.nan)),
        torch.from_numpy(mask),
    )


def train(
    tracks: list[Track],
    config: TrainConfig,
    val: list[Track] | None = None,
    log=print,
) -> tuple[AnticipatorNet, list[dict]]:
    """Train a fresh :class:`AnticipatorNet` on ``tracks``; returns (model in eval mode,
    per-epoch history of the mean losses, plus validation metrics when ``val`` is given)."""
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = AnticipatorNet(**feature_stats(tracks), proj=config.proj, head=config.head,
                           hidden=config.hidden)
    horizon_w = torch.tensor(config.horizon_weights, dtype=torch.float32)
    if horizon_w.shape != (N_HORIZONS,) or not bool((horizon_w >= 0).all()) or not (
            float(horizon_w.sum()) > 0):
        raise ValueError(f"horizon_weights: expected {N_HORIZONS} non-negative weights, not all "
                         f"0, got {config.horizon_weights!r}")
    horizon_w = horizon_w / horizon_w.mean()
    pos_weight = torch.tensor(hazard_pos_weight(tracks), dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(config.epochs, 1),
                                                       eta_min=config.lr * 0.03)
    history = []
    for epoch in range(config.epochs):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(len(tracks))
        sums = {"section": 0.0, "smooth": 0.0, "total": 0.0}
        hz_sum = np.zeros(N_HORIZONS)
        n_win = 0
        for i in range(0, len(order), config.batch):
            batch = [tracks[j] for j in order[i : i + config.batch]]
            audio, beat, ys, yh, mask = _batch_tensors(batch, rng, config.noise)
            state = torch.zeros(len(batch), config.hidden + COUNTER_STATE)
            for s in range(0, audio.shape[1], config.window):
                w = slice(s, s + config.window)
                sec, haz, state = model(audio[:, w], beat[:, w], state)
                ls = section_loss(sec, ys[:, w])
                lh = hazard_loss(haz, yh[:, w], pos_weight)
                lsm = smoothness_loss(sec, mask[:, w])
                loss = (ls + config.hazard_weight * (lh * horizon_w).mean()
                        + config.smooth_weight * lsm)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                state = state.detach()
                sums["section"] += ls.item()
                sums["smooth"] += lsm.item()
                sums["total"] += loss.item()
                hz_sum += lh.detach().numpy()
                n_win += 1
        sched.step()
        rec = {k: v / max(n_win, 1) for k, v in sums.items()}
        rec["hazard"] = [round(float(v), 5) for v in hz_sum / max(n_win, 1)]
        rec = {"epoch": epoch + 1, **rec, "seconds": round(time.perf_counter() - t0, 2)}
        if val:
            rec["val"] = evaluate(model, val)
        history.append(rec)
        log(json.dumps(rec))
    model.eval()
    return model, history


# --------------------------------------------------------------------------- evaluation


def predict(model: AnticipatorNet, track: Track) -> tuple[np.ndarray, np.ndarray]:
    """Section probabilities (S,8) and hazard probabilities (S,5) of a whole track, causal,
    from the zero state, without noise."""
    model.eval()
    with torch.no_grad():
        sec, haz, _ = model(
            torch.from_numpy(track.audio[None]),
            torch.from_numpy(track.beat[None]),
            torch.zeros(1, model.hidden + COUNTER_STATE),
        )
    return torch.softmax(sec[0], -1).numpy(), torch.sigmoid(haz[0]).numpy()


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); NaN without both classes."""
    labels = np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def beats_since_boundary(track: Track) -> np.ndarray:
    """(S,) int: beats of the track in (last true boundary at or before t, t] per step t
    (beats since the track start before its first boundary)."""
    b = np.searchsorted(track.boundaries, track.times, side="right")
    last = np.where(b > 0, track.boundaries[np.maximum(b - 1, 0)], -np.inf)
    n_now = np.searchsorted(track.beats, track.times, side="right")
    n_last = np.searchsorted(track.beats, last, side="right")
    return n_now - n_last


PRIOR_MAX_BEATS = 160


def fit_phrase_prior(tracks: list[Track]) -> np.ndarray:
    """(PRIOR_MAX_BEATS+1, 5) empirical P(y_hazard[k] = 1 | beats since the last true
    boundary), over ``tracks`` (beats beyond the cap pooled in the last row)."""
    counts = np.zeros((PRIOR_MAX_BEATS + 1, N_HORIZONS))
    totals = np.zeros((PRIOR_MAX_BEATS + 1, N_HORIZONS))
    for t in tracks:
        b = np.minimum(beats_since_boundary(t), PRIOR_MAX_BEATS)
        ok = np.isfinite(t.y_hazard)
        for k in range(N_HORIZONS):
            np.add.at(counts[:, k], b[ok[:, k]], t.y_hazard[ok[:, k], k])
            np.add.at(totals[:, k], b[ok[:, k]], 1.0)
    return (counts + 0.5) / (totals + 1.0)


def evaluate(
    model: AnticipatorNet, tracks: list[Track], prior: np.ndarray | None = None
) -> dict:
    """Held-out metrics over ``tracks``: step-weighted section accuracy (8 labels, and 7
    with pre-chorus counted as verse), majority-label accuracy, per-horizon hazard AUROC and
    Brier score, and with ``prior`` (from :func:`fit_phrase_prior`) the phrase prior's AUROC.
    Steps are uniform in time (12.5 Hz), so step-weighted is time-weighted."""
    pred, true, hz, yh, pr = [], [], [], [], []
    for t in tracks:
        sp, hp = predict(model, t)
        pred.append(sp.argmax(1))
        true.append(t.y_section)
        hz.append(hp)
        yh.append(t.y_hazard)
        if prior is not None:
            pr.append(prior[np.minimum(beats_since_boundary(t), PRIOR_MAX_BEATS)])
    pred, true = np.concatenate(pred), np.concatenate(true)
    hz, yh = np.concatenate(hz), np.concatenate(yh)
    ok = true >= 0
    fold = np.arange(N_SECTIONS)
    fold[3] = 2  # pre-chorus -> verse
    out = {
        "section_accuracy": float((pred[ok] == true[ok]).mean()),
        "section_accuracy_7": float((fold[pred[ok]] == fold[true[ok]]).mean()),
        "majority_accuracy": float(np.bincount(true[ok], minlength=N_SECTIONS).max() / ok.sum()),
        "hazard_auroc": [],
        "hazard_brier": [],
    }
    if prior is not None:
        out["prior_auroc"] = []
        pr = np.concatenate(pr)
    for k in range(N_HORIZONS):
        v = np.isfinite(yh[:, k])
        out["hazard_auroc"].append(round(auroc(hz[v, k], yh[v, k] > 0.5), 4))
        out["hazard_brier"].append(round(float(((hz[v, k] - yh[v, k]) ** 2).mean()), 4))
        if prior is not None:
            out["prior_auroc"].append(round(auroc(pr[v, k], yh[v, k] > 0.5), 4))
    for key in ("section_accuracy", "section_accuracy_7", "majority_accuracy"):
        out[key] = round(out[key], 4)
    return out


# --------------------------------------------------------------------------- export


def _name_weights(proto) -> None:
    """Give the exporter's generated weight names (``onnx::MatMul_108``) stable names that
    the runtime's step kernel reads: ``<layer>.weight_t`` for the right operand of a layer's
    MatMul (``/audio_proj/MatMul``: ``audio_proj.weight_t``, [in, out]) and ``gru.W``,
    ``gru.R``, ``gru.B`` for the ONNX GRU's weights (gates z, r, h)."""
    inits = {t.name: t for t in proto.graph.initializer}
    rename = {}
    for node in proto.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            rename[node.input[1]] = node.output[0].split("/")[1] + ".weight_t"
        elif node.op_type == "GRU":
            rename.update(zip(node.input[1:4], ("gru.W", "gru.R", "gru.B"), strict=True))
    for t in proto.graph.initializer:
        t.name = rename.get(t.name, t.name)
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = rename.get(name, name)


def export_onnx(model: AnticipatorNet, contract: dict | None = None, seed: int = 0) -> bytes:
    """The model as an ONNX file (bytes): opset 17, IR version 8, the contract's tensor names
    with dynamic B and T; checked by ``onnx.checker`` (full), against ``contracts/v1.json``
    ``models.anticipator``, and onnxruntime against torch on random inputs (B=2, T=37, random
    state) within 1e-5 (relative to max(|torch value|, 1)). Raises ValueError if a check
    fails."""
    import onnx
    import onnxruntime as ort

    contract = load_contract() if contract is None else contract
    model = model.eval()
    g = torch.Generator().manual_seed(seed)
    args = (
        torch.randn(2, 37, N_AUDIO, generator=g).abs(),
        torch.randn(2, 37, N_BEAT, generator=g),
        torch.randn(2, model.hidden + COUNTER_STATE, generator=g) * 0.5,
    )
    seq = {0: "B", 1: "T"}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript exporter's deprecation notice, and its GRU batch-size advice (the
        # initial state is an input here, state_in, which is what that advice asks for)
        for category in (DeprecationWarning, UserWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        torch.onnx.export(
            model,
            args,
            buf,
            dynamo=False,
            opset_version=OPSET,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={
                "audio_features": seq,
                "beat_features": seq,
                "state_in": {0: "B"},
                "section_logits": seq,
                "hazard_logits": seq,
                "state_out": {0: "B"},
            },
        )
    proto = onnx.load_from_string(buf.getvalue())
    _name_weights(proto)
    proto.ir_version = IR_VERSION
    proto.graph.name = "anticipator_v1"
    proto.doc_string = (
        "FractalSync anticipator: causal GRU, section logits (8) and boundary hazard logits "
        "(5) per 12.5 Hz slow step; contracts/v1.json models.anticipator."
    )
    onnx.checker.check_model(proto, full_check=True)
    validate_onnx_model(proto, "anticipator", contract)
    data = proto.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), dict(zip(INPUT_NAMES, (a.numpy() for a in args),
                                                   strict=True)))
    with torch.no_grad():
        want = model(*args)
    for name, a, b in zip(OUTPUT_NAMES, got, want, strict=True):
        b = b.numpy()
        err = float((np.abs(a - b) / np.maximum(np.abs(b), 1.0)).max())
        if err > PARITY_TOL:
            raise ValueError(
                f"export parity: {name} differs from torch by {err:.3g} > 1e-5 (relative to "
                "max(|torch value|, 1))"
            )
    return data


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fractalsync_models.training.train_anticipator",
        description="Train the anticipator on a prepared corpus and export it to ONNX.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--corpus", type=Path, help="directory of fractalsync-prepare .npz tracks")
    src.add_argument("--build-corpus", type=int, metavar="N",
                     help="first generate N songs (seeds 0..N-1) and prepare them in --work")
    p.add_argument("--work", type=Path, default=Path("anticipator_work"),
                   help="work directory of --build-corpus (audio, labels, corpus)")
    p.add_argument("--jobs", type=int, default=2, help="processes of the corpus preparation")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--holdout", type=int, default=40,
                   help="test songs (the last by name, every rendition)")
    p.add_argument("--val", type=int, default=0, help="validation songs (before the test set)")
    d = TrainConfig()
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--window", type=int, default=d.window, help="TBPTT window in slow steps")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--hazard-weight", type=float, default=d.hazard_weight)
    p.add_argument("--smooth-weight", type=float, default=d.smooth_weight)
    p.add_argument("--noise", type=float, default=d.noise, help="robustness noise scale (0: off)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--hidden", type=int, default=None,
                   help="GRU units (default and only value the runtime loads: the contract's "
                   "state_in size - 4)")
    p.add_argument("--proj", type=int, default=d.proj, help="audio projection units")
    p.add_argument("--head", type=int, default=d.head, help="units of the heads' hidden layer")
    p.add_argument("--horizon-weights", type=float, nargs=N_HORIZONS,
                   default=d.horizon_weights, metavar="W",
                   help="hazard loss weight per horizon (1 2 4 8 16 beats), scaled to mean 1")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads (default 1: with 2, any other busy process on this "
                   "2-core machine made epochs 8-16x slower, 8 s -> 60-150 s)")
    add_debug_flag(p)
    return p


@cli_entry("train_anticipator")
def main(argv: Sequence[str] | None = None) -> int:
    """Train, evaluate on the held-out tracks, export the ONNX model and its model card."""
    args = _parser().parse_args(argv)
    contract = load_contract()
    hidden = contract_hidden(contract)
    if args.hidden is None:
        args.hidden = hidden
    elif args.hidden != hidden:
        raise ValueError(f"--hidden {args.hidden}: the contract's state_in holds "
                         f"{hidden + COUNTER_STATE} floats, so the runtime loads only "
                         f"--hidden {hidden}")
    t_start = time.perf_counter()
    corpus = args.corpus
    build_seconds = None
    if args.build_corpus is not None:
        from .build_corpus import build_corpus

        corpus = build_corpus(args.work, range(args.build_corpus), jobs=args.jobs)
        build_seconds = round(time.perf_counter() - t_start, 1)
    tracks = load_corpus(corpus)
    train_set, val_set, test_set = split_tracks(tracks, args.holdout, args.val)
    config = TrainConfig(
        epochs=args.epochs, batch=args.batch, window=args.window, lr=args.lr,
        hazard_weight=args.hazard_weight, smooth_weight=args.smooth_weight, noise=args.noise,
        seed=args.seed, threads=args.threads, hidden=args.hidden, proj=args.proj,
        head=args.head, horizon_weights=tuple(args.horizon_weights),
    )  # fmt: skip
    t_train = time.perf_counter()
    model, history = train(train_set, config, val_set, log=lambda s: print(s, flush=True))
    train_seconds = round(time.perf_counter() - t_train, 1)
    prior = fit_phrase_prior(train_set)
    metrics = evaluate(model, test_set, prior)
    by_rendition = {}
    for t in test_set:
        by_rendition.setdefault(t.name[len(t.song):].lstrip("_") or "plain", []).append(t)
    if len(by_rendition) > 1:
        metrics["by_rendition"] = {r: evaluate(model, ts, prior)
                                   for r, ts in sorted(by_rendition.items())}
    data = export_onnx(model, contract)
    write_atomic(args.out, data)
    card = {
        "model": args.out.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "onnx": {"ir_version": IR_VERSION, "opset": OPSET, "contract": "v1 models.anticipator"},
        "command": " ".join(["python -m fractalsync_models.training.train_anticipator",
                             *(argv if argv is not None else sys.argv[1:])]),
        "torch": torch.__version__,
        "config": vars(config),
        "corpus": str(corpus),
        "train_tracks": [t.name for t in train_set],
        "val_tracks": [t.name for t in val_set],
        "holdout_tracks": [t.name for t in test_set],
        "holdout_seeds": [t.seed for t in test_set],
        "hazard_pos_weight": [round(float(v), 4) for v in hazard_pos_weight(train_set)],
        "corpus_build_seconds": build_seconds,
        "train_seconds": train_seconds,
        "final_epoch": history[-1] if history else None,
        "holdout_metrics": metrics,
        "metrics_note": "phrase prior = empirical P(y_hazard | beats since the last true "
        "boundary) fitted on the training tracks (fit_phrase_prior)",
    }
    write_atomic(args.out.with_suffix(".json"), json.dumps(card, indent=1) + "\n")
    print(json.dumps({"holdout_metrics": metrics, "train_seconds": train_seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
