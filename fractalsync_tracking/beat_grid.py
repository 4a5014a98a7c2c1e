"""Offline beat grid: tempo, beats, downbeats, meter and confidence for a whole signal.

Pipeline (:func:`beat_grid`): load/down-mix/resample to 22050 Hz → BeatNet front end (50 fps)
→ BeatNet CRNN (``[beat, downbeat, no-beat]`` per frame) → :func:`grid_from_activations`, which
decodes the bar-pointer HMM of :mod:`fractalsync_tracking.viterbi` and reads the grid off the
Viterbi path. Times are seconds from the start of the signal: offline frame ``i`` is centred on
sample ``i * 441`` at 22050 Hz, i.e. on ``i / 50`` s, so no delay correction is needed.

For a file path the stages up to the CRNN run as a pipeline (:func:`file_activations`): a
background thread decodes the file while the blocks already decoded are resampled, turned into
features and run through the CRNN, with results identical to the array path on the loaded file.
On the 2-core dev machine, in one run of benchmarks/bench_beat_grid.py, the 61.5 s demo OGG
took 165 ms best / 176 ms median of 7 (372x / 350x real time) against 291 ms (212x) for the
same stages one after the other; as 16-bit WAV, 119 / 122 ms (516x / 504x).

``confidence`` (in [0, 1]) is ``salience * contrast * support``, computed on the per-frame beat
probability ``a = beat + downbeat`` (see :func:`grid_confidence`):

* **salience** — ``min(1, mean(on) / 0.5)``, where ``on`` is the activation at each grid beat
  (max within ±1 frame): hesitant beats lower it;
* **contrast** — ``1 - mean(off) / mean(on)`` clipped to [0, 1], where ``off`` is the activation
  halfway between consecutive beats (max within ±2 frames): evidence that is as strong between
  the beats as on them (noise, speech, a wrong phase, an unresolved half/double tempo) lowers it;
* **support** — ``min(1, (number of beats - 1) / 8)``: a handful of beats is not a grid.

An empty grid (silence, nothing above ``threshold``, fewer than 2 beats) has confidence 0.
Measured (tests/test_beat_grid.py, default ensemble rule ``split_mean``): the synthetic set
scores 0.43–1.0 (median 0.99; lowest: the tempo-ambiguous 60 BPM item), white/pink noise,
speech-like bursts, DC and silence 0–0.03.

The default CRNN is ``model="ensemble"``: the three BeatNet weight sets combined frame by frame
by :func:`fractalsync_models.beatnet.combine` with the registry's ``OFFLINE_RULE``
(``split_mean``: the beat mass and the downbeat share each pooled by their mean; the rules and
their measurements are in that module's docstring and benchmarks/measure_downbeat_combination.py).
On the synthetic set it removes model 1's half/double-tempo errors (mean beat F 0.90 -> 0.99,
downbeat F 0.73 -> 0.92), and on rendered loops its downbeat F (0.89) is above every single
model's (0.57-0.74) and the previous default's, the geometric mean (0.78). One thing the
geometric mean did better: on the whole "Let's Go Fishin'" it follows the models' agreement on
88.6 BPM (model 1's tempo, and BeatNet's DBN's on the reference excerpt), where ``split_mean``
and the arithmetic mean decode 176.5 BPM (on the 30 s excerpt all three give 88.6).
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np

from fractalsync_models.beatnet import OFFLINE_MODEL, OFFLINE_RULE, check_model

from .tempo import (
    MAX_BPM,
    MIN_BPM,
    alternative_tempo,
    dominant_tempo,
    grid_tempo,
    onbeat_offbeat_activation,
)
from .viterbi import BarPointerModel, observation_log_densities, viterbi_decode

__all__ = [
    "BeatGrid",
    "beat_activations",
    "beat_grid",
    "file_activations",
    "grid_confidence",
    "grid_from_activations",
]

FPS = 50.0
BEATNET_SR = 22050
SALIENCE_REF = 0.5
SUPPORT_BEATS = 8
READ_AHEAD = 8
"""Decoded blocks the decoder thread may queue ahead of the analysis (bounds the memory)."""
THREADS_BELOW = 0.6
"""The CRNN members of a file move to worker threads when the decoder thread's CPU time per
block is below this fraction of the analysis thread's (:func:`file_activations`)."""
DECIDE_AFTER = 8
"""Blocks analysed before that choice is made (>= 2; 12 s at 44.1 kHz; timed from the end of
the 1st block, which carries start-up costs). Shorter files keep the members on one thread."""


@dataclass(frozen=True)
class BeatGrid:
    """A beat grid in the JSON shape of the beat-grid product page.

    Attributes
    ----------
    tempo : dominant tempo in BPM (not rounded); None for an empty grid.
    downbeat : time of the first downbeat in seconds; None if there is none.
    beats : every beat time in seconds, increasing, downbeats included.
    downbeats : the downbeat times (beat 1 of each bar) in seconds.
    confidence : overall confidence in [0, 1] (definition in the module docstring).
    bpm_alt : half or double of ``tempo`` when that reading is also plausible, else None.
    beat_positions : position of each beat in its bar, 1..meter (same length as ``beats``).
    meter : beats per bar (2, 3 or 4 by default); None if there are no beats.
    mode : ``"offline"`` (Viterbi over the whole file) or ``"online"``.
    """

    tempo: float | None
    downbeat: float | None
    beats: tuple[float, ...]
    downbeats: tuple[float, ...]
    confidence: float
    bpm_alt: float | None
    beat_positions: tuple[int, ...] = field(default=())
    meter: int | None = None
    mode: str = "offline"

    def to_dict(self) -> dict:
        """Plain-JSON dict; times rounded to 0.1 ms, tempo to 0.001 BPM, confidence to 1e-4."""
        d = asdict(self)
        d["beats"] = [round(t, 4) for t in self.beats]
        d["downbeats"] = [round(t, 4) for t in self.downbeats]
        d["beat_positions"] = list(self.beat_positions)
        for key, digits in (("tempo", 3), ("bpm_alt", 3), ("downbeat", 4)):
            if d[key] is not None:
                d[key] = round(d[key], digits)
        d["confidence"] = round(self.confidence, 4)
        return d

    def to_json(self, indent: int | None = None) -> str:
        """The grid as a JSON document (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent)


def empty_grid(mode: str = "offline") -> BeatGrid:
    """The grid of audio without a beat: no beats, tempo None, confidence 0."""
    return BeatGrid(tempo=None, downbeat=None, beats=(), downbeats=(), confidence=0.0,
                    bpm_alt=None, beat_positions=(), meter=None, mode=mode)


def assemble_grid(times: np.ndarray, positions: np.ndarray, meter: int, beat_act: np.ndarray,
                  frames: np.ndarray, dominant_bpm: float | None, mode: str,
                  **alt_options) -> BeatGrid:
    """Summarise tracked beats as a :class:`BeatGrid` (shared by the offline and online grids).

    ``times`` (B,) beat times in s, ``positions`` (B,) 1-based beat in bar, ``meter`` beats per
    bar, ``beat_act`` (N,) per-frame beat activation, ``frames`` (B,) the beats' frame indices in
    it, ``dominant_bpm`` the activation's dominant tempo; ``alt_options`` go to
    :func:`~fractalsync_tracking.tempo.alternative_tempo`. Tempo is the grid's own
    (:func:`~fractalsync_tracking.tempo.grid_tempo`), confidence :func:`grid_confidence`.
    """
    tempo = grid_tempo(times)
    downbeats = tuple(float(t) for t, p in zip(times, positions, strict=True) if p == 1)
    return BeatGrid(
        tempo=tempo,
        downbeat=downbeats[0] if downbeats else None,
        beats=tuple(float(t) for t in times),
        downbeats=downbeats,
        confidence=grid_confidence(beat_act, frames),
        bpm_alt=alternative_tempo(beat_act, frames, tempo, dominant_bpm, **alt_options),
        beat_positions=tuple(int(p) for p in positions),
        meter=int(meter),
        mode=mode,
    )


@lru_cache(maxsize=8)
def _model(fps: float, min_bpm: float, max_bpm: float, meters: tuple[int, ...],
           transition_lambda: float, observation_lambda: int) -> BarPointerModel:
    return BarPointerModel.from_bpm(fps=fps, min_bpm=min_bpm, max_bpm=max_bpm, meters=meters,
                                    transition_lambda=transition_lambda,
                                    observation_lambda=observation_lambda)


def _beat_frames(model: BarPointerModel, path, peak_act: np.ndarray):
    """Beat frames (activation peak inside each run of beat states) and their bar positions."""
    iv = np.asarray(model.intervals)[path.tempo_index]
    in_beat = (path.position % iv) < np.asarray(model.beat_widths)[path.tempo_index]
    edges = np.diff(np.concatenate(([0], in_beat.astype(np.int8), [0])))
    starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    frames = np.array([s + int(np.argmax(peak_act[s:e])) for s, e in zip(starts, ends,
                                                                          strict=True)],
                      dtype=np.int64)
    positions = path.position[frames] // iv[frames] + 1 if frames.size else frames
    return frames, positions.astype(np.int64)


def grid_confidence(beat_act: np.ndarray, beat_frames: np.ndarray) -> float:
    """Confidence in [0, 1] of a grid (definition in the module docstring).

    ``beat_act`` (N,) per-frame beat probability in [0, 1]; ``beat_frames`` (B,) int frame
    indices of the grid's beats, increasing.
    """
    frames = np.asarray(beat_frames, dtype=np.int64)
    if frames.size < 2:
        return 0.0
    on, off = onbeat_offbeat_activation(beat_act, frames)
    on_mean = float(on.mean())
    if on_mean <= 0.0:
        return 0.0
    salience = min(1.0, on_mean / SALIENCE_REF)
    contrast = float(np.clip(1.0 - float(off.mean()) / on_mean, 0.0, 1.0))
    support = min(1.0, (frames.size - 1) / SUPPORT_BEATS)
    return salience * contrast * support


def grid_from_activations(
    activations: np.ndarray,
    fps: float = FPS,
    *,
    meters: tuple[int, ...] = (2, 3, 4),
    min_bpm: float = MIN_BPM,
    max_bpm: float = MAX_BPM,
    transition_lambda: float = 100.0,
    observation_lambda: int = 16,
    threshold: float = 0.05,
    tempo_window: float | None = None,
    alt_ratio: float = 0.5,
) -> BeatGrid:
    """Decode a beat grid from per-frame beat/downbeat probabilities.

    Parameters
    ----------
    activations : (N, 2) or (N, 3) probabilities, columns ``[beat, downbeat(, no-beat)]``
        (BeatNet CRNN order), frame ``i`` at ``i / fps`` seconds.
    fps : frames per second.
    meters : beats-per-bar values to consider.
    min_bpm, max_bpm : tempo range of the decoder in BPM.
    transition_lambda : tempo-change penalty at beat boundaries (larger: steadier tempo).
    observation_lambda : int in [2, 2**31]; a beat's first ``1/observation_lambda`` are "beat"
        states (a float such as 2.5, or a bool, raises TypeError rather than being truncated).
    threshold : frames before the first / after the last frame with
        ``max(beat, downbeat) >= threshold`` are not decoded (no beats there).
    tempo_window : if given (BPM), decode only tempi within ± this of the dominant tempo
        of the activation (:func:`~fractalsync_tracking.tempo.dominant_tempo`).
    alt_ratio : ambiguity threshold for ``bpm_alt``
        (:func:`~fractalsync_tracking.tempo.alternative_tempo`).

    Returns
    -------
    :class:`BeatGrid` (``mode="offline"``); an empty grid (no beats, tempo None, confidence 0)
    if no frame reaches ``threshold`` or fewer than 2 beats are found.

    Raises
    ------
    ValueError for a wrong shape or NaN/inf activations, a NaN ``threshold``, a NaN or
    negative ``tempo_window`` or an ``observation_lambda`` outside [2, 2**31]; TypeError for a
    non-integer ``observation_lambda``.
    """
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite probability, got {threshold!r}")
    if tempo_window is not None and not tempo_window >= 0:
        raise ValueError(f"tempo_window must be >= 0 BPM or None, got {tempo_window!r}")
    log_obs = observation_log_densities(activations, observation_lambda)
    act = np.clip(np.asarray(activations, dtype=np.float64)[:, :2], 0.0, 1.0)
    beat_act = np.minimum(act.sum(axis=1), 1.0)
    peak_act = act.max(axis=1)
    active = np.nonzero(peak_act >= threshold)[0]
    if active.size == 0:
        return empty_grid()
    first, last = int(active[0]), int(active[-1]) + 1
    model = _model(float(fps), float(min_bpm), float(max_bpm), tuple(meters),
                   float(transition_lambda), int(observation_lambda))
    dominant = dominant_tempo(beat_act[first:last], fps, min_bpm, max_bpm).bpm
    if tempo_window is not None and np.isfinite(dominant):
        model = model.restricted(dominant - tempo_window, dominant + tempo_window)
    path = viterbi_decode(model, log_obs[first:last])
    frames, positions = _beat_frames(model, path, peak_act[first:last])
    frames = frames + first
    if frames.size < 2:
        return empty_grid()  # a lone beat (e.g. a transient in silence) is not a grid
    return assemble_grid(frames / float(fps), positions, path.meter, beat_act, frames, dominant,
                         "offline", ratio=alt_ratio, min_bpm=min_bpm, max_bpm=max_bpm)


@lru_cache(maxsize=8)
def _loaded(model: int | str, models_path: str):
    """One loaded model per (choice, models directory); ``run`` keeps no state between calls."""
    from fractalsync_models.beatnet import BeatNetModel

    return BeatNetModel(model, OFFLINE_RULE)


def _offline_model(model):
    """The loaded :class:`~fractalsync_models.beatnet.BeatNetModel` of a validated choice."""
    from fractalsync_models.paths import models_dir

    return _loaded(check_model(model), str(models_dir()))


def beat_activations(x: np.ndarray, sr: float, model: int | str = OFFLINE_MODEL) -> np.ndarray:
    """BeatNet CRNN activations of an audio signal.

    ``x`` (n,) or (n, channels) audio at ``sr`` Hz; ``model`` a BeatNet weight set (1, 2, 3) or
    ``"ensemble"`` (the three, :func:`~fractalsync_models.beatnet.combine`); default
    :data:`~fractalsync_models.beatnet.OFFLINE_MODEL`. Returns (frames, 3) float32
    ``[beat, downbeat, no-beat]`` at 50 fps, frame ``i`` centred on ``i / 50`` s.
    """
    check_model(model)
    from fractalsync_dsp.frontend import BeatNetFrontEnd
    from fractalsync_dsp.resample import resample, to_mono

    mono = to_mono(x)
    if mono.size == 0:
        return np.zeros((0, 3), dtype=np.float32)
    features = BeatNetFrontEnd().features(resample(mono, sr, BEATNET_SR))
    loaded = _offline_model(model)
    # The members run on their own threads (onnxruntime releases the GIL): on the 2-core dev
    # machine this took 3000 frames x 3 models from ~100 ms to ~68 ms.
    with ThreadPoolExecutor(max_workers=len(loaded.members)) as pool:
        return loaded.combine(list(pool.map(lambda crnn: crnn.run(features), loaded.members)))


class _PieceRuns:
    """The CRNN members run on consecutive pieces of a feature sequence.

    Each member carries its LSTM state from one piece to the next, so the concatenated outputs
    are those of one ``run`` over the whole sequence (bit for bit with onnxruntime 1.31's CPU
    kernels, for any piece sizes; tests/test_beat_grid.py). The pieces run on the calling
    thread until :meth:`use_threads`, then each member's on a worker thread of its own, in
    order. The first exception in a worker stops that worker's remaining pieces and is raised
    by the next :meth:`feed` or by :meth:`results`. A context manager: leaving it cancels the
    pieces not started yet and waits for the running ones.
    """

    def __init__(self, members: list) -> None:
        self._members = members
        self._states: list = [None] * len(members)
        self._outputs: list[list] = [[] for _ in members]  # arrays, or futures of arrays
        self._pools: list[ThreadPoolExecutor] | None = None
        self._error: BaseException | None = None

    def __enter__(self) -> _PieceRuns:
        return self

    def __exit__(self, *exc_info) -> None:
        for pool in self._pools or ():
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def threaded(self) -> bool:
        """Whether the members now run on worker threads."""
        return self._pools is not None

    def use_threads(self) -> None:
        """Run the next pieces of each member on a worker thread of its own."""
        if self._pools is None:
            self._pools = [ThreadPoolExecutor(max_workers=1, thread_name_prefix="beat_grid-crnn")
                           for _ in self._members]

    def feed(self, features: np.ndarray) -> None:
        """Run (or queue) every member on the next (k, 272) features (k may be 0)."""
        if self._error is not None:
            raise self._error
        if len(features) == 0:
            return
        for i, outputs in enumerate(self._outputs):
            if self._pools is None:
                outputs.append(self._run(i, features))
            else:
                outputs.append(self._pools[i].submit(self._guarded, i, features))

    def results(self) -> list[np.ndarray]:
        """Each member's (N, 3) probabilities for all pieces fed so far."""
        return [np.concatenate([o.result() if isinstance(o, Future) else o for o in outputs])
                if outputs else np.zeros((0, 3), np.float32) for outputs in self._outputs]

    def _guarded(self, i: int, features: np.ndarray) -> np.ndarray:
        if self._error is not None:
            raise self._error
        try:
            return self._run(i, features)
        except BaseException as exc:
            self._error = exc
            raise

    def _run(self, i: int, features: np.ndarray) -> np.ndarray:
        probs, self._states[i] = self._members[i].run(features, state=self._states[i],
                                                       return_state=True)
        return probs


class _TimedTransform:
    """Wraps the decoder thread's per-block step and records that thread's CPU use."""

    def __init__(self, step) -> None:
        self._step = step
        self.progress = (0.0, 0)  # (thread CPU seconds, blocks), replaced in one assignment

    def __call__(self, block: np.ndarray) -> np.ndarray:
        out = self._step(block)
        self.progress = (time.thread_time(), self.progress[1] + 1)
        return out


def _decoding_is_cheap(decoder: _TimedTransform, since: tuple, analysed: int) -> bool:
    """Whether the decoder thread has used less than :data:`THREADS_BELOW` of this thread's CPU
    time per block since ``since = (this thread's CPU time, decoder.progress, blocks analysed)``;
    ``analysed`` blocks have been analysed now. A decoder that has decoded nothing meanwhile
    has finished: its core is idle, so it counts as cheap."""
    analysis_cpu, (decoder_cpu, decoded), analysed_then = since
    now_cpu, now_decoded = decoder.progress
    if now_decoded == decoded:
        return True
    return (now_cpu - decoder_cpu) / (now_decoded - decoded) < THREADS_BELOW * (
        time.thread_time() - analysis_cpu) / (analysed - analysed_then)


def file_activations(path: str | os.PathLike, model: int | str = OFFLINE_MODEL) -> np.ndarray:
    """:func:`beat_activations` of an audio file, decoding it while it is being analysed.

    A background thread decodes the file (:class:`~fractalsync_dsp.audio_io.AudioReader`;
    libsndfile runs without the GIL) in the blocks ``load_audio`` reads
    (``fractalsync_dsp.audio_io.BLOCK_FRAMES`` frames) and resamples each with the HQ
    :class:`~fractalsync_dsp.resample.StreamResampler` into a queue of at most
    :data:`READ_AHEAD` blocks. Meanwhile this thread takes each block through the streaming front
    end and the CRNN member(s), which carry their LSTM state from block to block. The result
    equals ``beat_activations(*load_audio(path), model)`` to the bit: streamed resampling,
    streamed features and pieced CRNN runs each equal their batch forms (tested in
    tests/test_beat_grid.py). The whole audio is never held in memory.

    Where the CRNN members run depends on how costly decoding is. After :data:`DECIDE_AFTER`
    blocks, if the decoder thread has used less than :data:`THREADS_BELOW` of this thread's CPU
    time per block, its core is mostly idle and the members move to worker threads of their
    own; otherwise they stay on this thread, because more busy threads than cores slow the
    decoder down. Per block of the demo song, Vorbis decoding + resampling took 0.75-0.8 of the
    analysis thread's CPU time, MP3 0.35-0.4, FLAC 0.35-0.5, 16-bit WAV 0.15-0.2. Wall times
    of ``beat_grid(path)``, best / median of 5, members here | on threads (placement table in
    benchmarks/bench_beat_grid.py): OGG 160/162 | 170/185, WAV 161/163 | 117/127, FLAC
    156/167 | 128/148, MP3 159/171 | 127/136 ms. Either way the result is the same to the bit.

    Raises :class:`~fractalsync_dsp.audio_io.AudioLoadError` as ``load_audio`` does, also for
    an error the decoder meets part-way (raised after the blocks before it were analysed); the
    decoder thread and any CRNN worker threads have ended when this returns or raises.
    """
    check_model(model)
    from fractalsync_dsp.audio_io import AudioReader
    from fractalsync_dsp.frontend import BeatNetFrontEnd
    from fractalsync_dsp.resample import StreamResampler

    with AudioReader(path) as reader:  # an unreadable file fails first, then a missing model
        loaded = _offline_model(model)
        resampler = StreamResampler(reader.sample_rate, BEATNET_SR, quality="HQ")
        front_end = BeatNetFrontEnd()
        decoder = _TimedTransform(resampler.push)  # resampling also runs on the decoder thread
        with _PieceRuns(loaded.members) as runs:
            blocks = reader.blocks(read_ahead=READ_AHEAD, transform=decoder)
            for n, samples in enumerate(blocks, start=1):
                runs.feed(front_end.push(samples))
                if n == 1:  # the first block carries start-up costs: compare from here on
                    since = (time.thread_time(), decoder.progress, n)
                elif n == DECIDE_AFTER and _decoding_is_cheap(decoder, since, n):
                    runs.use_threads()
            runs.feed(front_end.push(resampler.flush()))
            runs.feed(front_end.flush())
            return loaded.combine(runs.results())


def beat_grid(
    path_or_array: str | os.PathLike | np.ndarray,
    sr: float | None = None,
    model: int | str = OFFLINE_MODEL,
    **options,
) -> BeatGrid:
    """Offline beat grid of an audio file or array.

    Parameters
    ----------
    path_or_array : a path to an audio file (anything ``fractalsync_dsp.audio_io.load_audio``
        reads), or audio samples ``(n,)`` / ``(n, channels)``.
    sr : sample rate in Hz; required for an array, must be None for a path.
    model : BeatNet weight set, 1 (GTZAN held out), 2 (Ballroom), 3 (Rock corpus), or
        ``"ensemble"`` (default: the three combined, :func:`~fractalsync_models.beatnet.combine`).
    **options : passed to :func:`grid_from_activations` (``meters``, ``tempo_window``, ...).

    Raises
    ------
    fractalsync_dsp.audio_io.AudioLoadError for an unreadable file;
    fractalsync_models.crnn.ModelNotFoundError if the converted models are missing;
    ValueError/TypeError for bad arguments or samples (NaN/inf audio).
    """
    check_model(model)
    if isinstance(path_or_array, (str, os.PathLike)):
        if sr is not None:
            raise ValueError("sr must not be given with a file path (the file has its own rate)")
        activations = file_activations(path_or_array, model)
    else:
        if sr is None:
            raise ValueError("sr (Hz) is required when passing an array")
        activations = beat_activations(path_or_array, sr, model)
    return grid_from_activations(activations, FPS, **options)
