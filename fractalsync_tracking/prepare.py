"""Corpus preparation for the anticipator: audio + section labels -> one ``.npz`` per track.

Every track runs **the exact live path** (:func:`live_inputs`): the file is decoded
(:class:`~fractalsync_dsp.audio_io.AudioReader`) and pushed at its own rate in blocks of
:data:`~fractalsync_tracking.online_grid.BLOCK` (1024) samples through one
:class:`~fractalsync_tracking.analysis_clock.AnalysisClock` feeding the
:class:`~fractalsync_tracking.beat_tracker.BeatTracker` (default model, seed 0) and
:class:`~fractalsync_tracking.structure_inputs.SlowStepInputs`, then
:data:`~fractalsync_tracking.online_grid.TAIL_S` (0.25 s) of silence so that the last beats get
decided, as ``fractalsync-beats --online`` does. Kept: the slow steps whose time is inside the
file (``0 <= t < duration``) and the beats reported inside it (the beats of the online grid).

Targets on those steps (:mod:`fractalsync_models.training.targets`), from the labels
(:func:`fractalsync_models.training.labels.read_labels`) and the **tracked** beats:
``y_section`` (the label at each step's time, -1 = ignore), the section boundaries (optionally
snapped to the nearest tracked downbeat within ``snap_s`` seconds, by
:func:`~fractalsync_models.training.targets.snap_boundaries`; default :data:`DEFAULT_SNAP_S` = 0,
no snapping: the labels' own times, right for exact labels such as the song generator's; 0.15 s
is that function's recommendation for SongFormer's teacher labels), ``btnb`` (beats to the next
boundary) and ``y_hazard``.

Audio and labels are matched by file stem: ``AUDIO_DIR/song.wav`` goes with
``LABEL_DIR/song.csv``, ``song.json`` or ``song.txt`` (the files directly inside each directory,
audio suffixes as ``fractalsync-beats``). Audio without labels and labels without audio are
reported (manifest and :class:`Report`), not failures; two audio files or two label files with
the same stem are a failure of that track.

The ``.npz`` of a track (``OUT_DIR/<stem>.npz``, written atomically, ``allow_pickle=False``
readable), with S slow steps (12.5 Hz), B beats, D downbeats, n boundaries, m segments:

=====================  ==========  =================================================================
times                  (S,) f8     stream time (s) of each slow step
audio_features         (S,272) f4  mean BeatNet features of the step's 4 analysis frames
beat_features          (S,5) f4    sin 2πφ, cos 2πφ, ln spb, conf, downbeat_prob at the step's time
y_section              (S,) i2     label index 0..7 (contract order), -1 = ignore
btnb                   (S,) f4     tracked beats to the next boundary (``targets``): inf = none
                                   follows, NaN = unknown (fewer than 2 tracked beats)
y_hazard               (S,5) f4    1 if 0 < btnb <= h for h in 1, 2, 4, 8, 16, else 0; rows
                                   are NaN where btnb is NaN
beats                  (B,) f8     tracked beat times (s)
downbeats              (D,) f8     tracked downbeat times (s)
boundaries             (n,) f8     section boundaries used for btnb (after snapping) (s)
label_segments         (m,3) f8    rows (start s, end s, label index or -1) as read
format                 str         ``"fractalsync-prepare/1"``
track                  str         the stem
audio_file             str         audio file name
labels_file            str         label file name
audio_sha256           str         of the audio file's bytes
labels_sha256          str         of the label file's bytes
contract_version       i8          ``contracts/v1.json`` version
tracker_model          str         BeatNet model (``"1"``, ..., ``"ensemble"``)
tracker_seed           i8          particle-filter seed
decimation             i8          analysis frames per slow step (4)
snap_s                 f8          boundary snapping tolerance (0 = off)
label_source           str         the label reader's ``source`` (``"auto"`` = by content)
sample_rate            f8          the audio file's rate (Hz)
duration               f8          the audio's length (s)
params                 str         JSON of every parameter above that changes the output
=====================  ==========  =================================================================

Resumable: a track whose ``.npz`` exists with the same audio and label hashes and ``params`` is
skipped; a track whose out-of-date ``.npz`` cannot be redone (its audio or labels are now bad)
loses that ``.npz``, so the directory never holds targets of labels it no longer has. An
existing ``<stem>.npz`` that is not a ``fractalsync-prepare`` output is never replaced (the
track fails), nor is a ``manifest.json`` that is not ours (nothing runs).

Scheduling: the per-track work (:func:`compute_track`) runs in a local process pool
(``jobs`` processes, started with "spawn"; ``jobs=1`` runs in this process) or, with
``scheduler="tcp://HOST:PORT"``, on a dask.distributed cluster (the ``[cluster]`` extra; the
audio and label paths must be readable at the same paths on the workers). The results come back
to this process, which writes every ``.npz`` and ``manifest.json`` (after each track), so the
output directory need only be local. Per-track errors (bad audio, bad labels) are collected and
reported at the end; the batch goes on.

Never a hang (dask): a cluster can lose workers, have none, or have workers that cannot import
this package, and a track can get stuck; the batch still ends, with the usual report. Every
track announces its start from the worker, and its clock (``track_timeout_s``, default
:data:`DEFAULT_TRACK_TIMEOUT_S` = 1800 s, ``--track-timeout``; the live path ran a 115 s song
in 1.7 s on one core of the project's 2-core test machine at load 8, so a 10 min track takes
~10 s) runs from its latest start (dask restarts a
track whose worker died). A track still running after ``track_timeout_s`` fails ("timed out"),
and so do the waiting tracks once no track of the batch has been running (or ended) for
``track_timeout_s`` ("not started": no worker, or none free). Both are cancelled on the cluster;
a worker thread stuck in a task cannot be stopped from outside (Python), it stays busy until the
task returns or the worker is restarted. Before the first track, the batch waits (at most
``track_timeout_s``) for a worker and asks every worker to load the per-track function. When
some cannot, the tracks go only to the workers that could, by address (a worker that cannot
import this package would otherwise take tracks and never run them; a good worker restarted
under a new address is then not used either); if none could, every track fails with the first
worker's error ("worker failed: no worker can run the tracks (tcp://...: ModuleNotFoundError:
...)"). A track whose worker died more often than the cluster's
``distributed.scheduler.allowed-failures`` fails with "worker failed: KilledWorker: ...", and
the tracks of a batch whose scheduler goes away with "worker failed: ..." once the client gives
up reconnecting (``distributed.comm.timeouts.connect``, 30 s by default).
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fractalsync_dsp.audio_io import AudioReader
from fractalsync_models.atomic_write import write_atomic
from fractalsync_models.beatnet import ONLINE_MODEL, ONLINE_RULE, check_model, load_beatnet
from fractalsync_models.cli_errors import describe
from fractalsync_models.contract import load_contract
from fractalsync_models.training.labels import SOURCES, boundaries, read_labels
from fractalsync_models.training.targets import (
    beats_to_next_boundary,
    hazard_targets,
    section_targets,
    snap_boundaries,
)

from .analysis_clock import AnalysisClock
from .beat_tracker import BeatTracker
from .cli_files import AUDIO_SUFFIXES
from .online_grid import BLOCK, TAIL_S
from .slow_state import SECTION_LABELS
from .structure_inputs import DECIMATION, SlowStepInputs

__all__ = [
    "DEFAULT_SNAP_S", "DEFAULT_TRACK_TIMEOUT_S", "FORMAT", "LABEL_SUFFIXES", "MANIFEST",
    "ClusterExtraMissing", "LiveInputs", "PrepareParams", "Report", "TrackResult",
    "compute_track", "live_inputs", "match_tracks", "prepare_corpus",
]  # fmt: skip

FORMAT = "fractalsync-prepare/1"
MANIFEST_FORMAT = "fractalsync-prepare-manifest/1"
#: Name of the manifest in the output directory.
MANIFEST = "manifest.json"
#: Label file suffixes matched to audio by stem.
LABEL_SUFFIXES = (".csv", ".json", ".txt")
#: Default boundary snapping tolerance (s): 0 keeps the labels' boundary times.
DEFAULT_SNAP_S = 0.0
#: Default per-track timeout on a dask cluster (s): see "Never a hang" in the module docstring.
DEFAULT_TRACK_TIMEOUT_S = 1800.0
_POLL_S = 0.5  # s between checks of the tracks' clocks while no result arrives


class ClusterExtraMissing(ImportError):
    """``scheduler`` was given but dask.distributed (the ``[cluster]`` extra) is not installed."""


# ------------------------------------------------------------------------------ parameters


@dataclass(frozen=True)
class PrepareParams:
    """Everything that changes a track's ``.npz`` (its ``params`` entry and the resume key).

    model : BeatNet model of the tracker (1, 2, 3 or "ensemble"; default the online default).
    seed : particle-filter seed.
    source : label format for ``read_labels``: one of its ``SOURCES`` (``-`` may stand for
        ``_``, as in ``songformer-json``), or None / "auto" to detect it from each file.
    snap_s : snap each boundary to the nearest tracked downbeat within this many seconds
        (0 = off).
    """

    model: int | str = ONLINE_MODEL
    seed: int = 0
    source: str | None = None
    snap_s: float = DEFAULT_SNAP_S

    def __post_init__(self) -> None:
        check_model(self.model)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if self.source is not None and not isinstance(self.source, str):
            raise TypeError(f"source must be a str or None, got {type(self.source).__name__}")
        source = None if self.source in (None, "auto") else self.source.replace("-", "_")
        if source is not None and source not in SOURCES:
            raise ValueError(f"unknown label source {self.source!r}; expected auto or one of "
                             f"{', '.join(SOURCES)}")
        object.__setattr__(self, "source", source)
        snap = self.snap_s
        if isinstance(snap, bool) or not isinstance(snap, (int, float)) \
                or not 0.0 <= snap < float("inf"):
            raise ValueError(f"snap_s must be a finite number of seconds >= 0, got {snap!r}")
        object.__setattr__(self, "snap_s", float(snap))

    def to_dict(self) -> dict:
        """The parameters with the fixed ones of the live path (JSON types)."""
        return {
            "format": FORMAT,
            "contract_version": int(load_contract()["version"]),
            "tracker_model": str(self.model),
            "tracker_seed": self.seed,
            "label_source": self.source or "auto",
            "snap_s": self.snap_s,
            "decimation": DECIMATION,
            "block_samples": BLOCK,
            "tail_s": TAIL_S,
        }


# ------------------------------------------------------------------------------ live path


@dataclass(frozen=True)
class LiveInputs:
    """What the live path gives for one audio file.

    times (S,) f8, audio_features (S,272) f4, beat_features (S,5) f4: the slow steps with
    ``0 <= times < duration``; beats (B,) f8 and downbeats (D,) f8: the beat events reported
    inside the file (s); sample_rate (Hz) and duration (s) of the file.
    """

    times: np.ndarray
    audio_features: np.ndarray
    beat_features: np.ndarray
    beats: np.ndarray
    downbeats: np.ndarray
    sample_rate: float
    duration: float


_CRNNS = threading.local()  # per thread: a CRNN carries state, trackers in parallel need their own


def _crnn(model):
    cache = getattr(_CRNNS, "models", None)
    if cache is None:
        cache = _CRNNS.models = {}
    if model not in cache:
        cache[model] = load_beatnet(model, ONLINE_RULE)
    return cache[model]


def live_inputs(audio_path: str | os.PathLike, model: int | str = ONLINE_MODEL,
                seed: int = 0) -> LiveInputs:
    """Run an audio file through the live path (see the module docstring).

    Raises :class:`~fractalsync_dsp.audio_io.AudioLoadError` for a file that cannot be decoded,
    ValueError for a bad ``model``. Warns as :class:`~fractalsync_dsp.audio_io.AudioReader`
    does (NaN samples read as silence, a truncated file).
    """
    check_model(model)
    clock = AnalysisClock()
    tracker = BeatTracker(seed=seed, crnn=_crnn(model), clock=clock)
    inputs = clock.add_consumer(SlowStepInputs())
    times, audio, beat, events = [], [], [], []

    def push(block: np.ndarray, sample_rate: float) -> None:
        out = tracker.push(block, sample_rate)
        steps = inputs.take(out.states)
        if len(steps.times):
            times.append(steps.times.copy())
            audio.append(steps.audio_features.copy())
            beat.append(steps.beat_features.copy())
        events.extend(out.events)

    with AudioReader(audio_path) as reader:
        sr = float(reader.sample_rate)
        channels = reader.channels
        for block in reader.blocks(BLOCK, read_ahead=4):
            push(block, sr)
    duration = tracker.stream_time
    tail = np.zeros((BLOCK, channels), np.float32)
    n_tail = int(round(TAIL_S * sr))
    for start in range(0, n_tail, BLOCK):
        push(tail[:min(BLOCK, n_tail - start)], sr)
    t = np.concatenate(times) if times else np.zeros(0)
    keep = t < duration
    events = [e for e in events if 0.0 <= e.t_sec < duration]
    return LiveInputs(
        times=t[keep],
        audio_features=(np.concatenate(audio) if audio else np.zeros((0, 272), np.float32))[keep],
        beat_features=(np.concatenate(beat) if beat else np.zeros((0, 5), np.float32))[keep],
        beats=np.array([e.t_sec for e in events], np.float64),
        downbeats=np.array([e.t_sec for e in events if e.is_downbeat], np.float64),
        sample_rate=sr,
        duration=duration,
    )


# ------------------------------------------------------------------------------ one track


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _label_index(label: str) -> int:
    """Contract index of a segment label; -1 for ``"ignore"``."""
    return SECTION_LABELS.index(label) if label in SECTION_LABELS else -1


def compute_track(name: str, audio_path: str, labels_path: str, params: PrepareParams,
                  ) -> dict:
    """The ``.npz`` arrays of one track (module docstring), as a dict name -> array.

    Runs in a worker (process pool or dask). Raises for a bad track: AudioLoadError (a
    ValueError) for the audio, LabelError (a ValueError) for the labels, OSError for files that
    cannot be read. Warns about unknown labels mapped to ignore (``UnknownLabelWarning``), NaN
    samples read as silence and truncated files. ``y_hazard`` rows are NaN where ``btnb`` is
    (fewer than 2 tracked beats: unknown, to be masked out), otherwise
    :func:`~fractalsync_models.training.targets.hazard_targets`.
    """
    labels_sha = _sha256(labels_path)
    segments = read_labels(labels_path, source=params.source)
    audio_sha = _sha256(audio_path)
    live = live_inputs(audio_path, params.model, params.seed)
    bounds = np.asarray(boundaries(segments), np.float64)
    if params.snap_s > 0:
        bounds = np.asarray(snap_boundaries(bounds, live.downbeats, params.snap_s), np.float64)
    btnb = np.asarray(beats_to_next_boundary(live.times, live.beats, bounds), np.float64)
    y_hazard = np.asarray(hazard_targets(btnb), np.float32)
    y_hazard[np.isnan(btnb)] = np.nan
    spec = params.to_dict()
    return {
        "times": live.times,
        "audio_features": live.audio_features,
        "beat_features": live.beat_features,
        "y_section": np.asarray(section_targets(segments, live.times)).astype(np.int16),
        "btnb": btnb.astype(np.float32),
        "y_hazard": y_hazard,
        "beats": live.beats,
        "downbeats": live.downbeats,
        "boundaries": bounds,
        "label_segments": np.array([(s.start, s.end, _label_index(s.label)) for s in segments],
                                   np.float64).reshape(-1, 3),
        "format": np.array(FORMAT),
        "track": np.array(name),
        "audio_file": np.array(os.path.basename(audio_path)),
        "labels_file": np.array(os.path.basename(labels_path)),
        "audio_sha256": np.array(audio_sha),
        "labels_sha256": np.array(labels_sha),
        "contract_version": np.array(spec["contract_version"], np.int64),
        "tracker_model": np.array(spec["tracker_model"]),
        "tracker_seed": np.array(spec["tracker_seed"], np.int64),
        "decimation": np.array(DECIMATION, np.int64),
        "snap_s": np.array(params.snap_s, np.float64),
        "label_source": np.array(spec["label_source"]),
        "sample_rate": np.array(live.sample_rate, np.float64),
        "duration": np.array(live.duration, np.float64),
        "params": np.array(json.dumps(spec, sort_keys=True)),
    }


def _worker(name: str, audio_path: str, labels_path: str, params: PrepareParams) -> dict:
    """:func:`compute_track` that never raises, for the workers: ``{"arrays": ...}`` or
    ``{"error": text}`` (no exception object has to cross a process or network boundary), with
    ``"warnings"`` (one line each) and ``"seconds"`` (the time it took)."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = {"arrays": compute_track(name, audio_path, labels_path, params)}
        except (OSError, ValueError, TypeError) as exc:
            result = {"error": describe(exc)}
        except Exception as exc:  # a bug: keep the batch going, say so, keep the traceback
            result = {"error": f"unexpected {type(exc).__name__}: {describe(exc)}",
                      "traceback": traceback.format_exc()}
    result["warnings"] = [f"{w.category.__name__}: {describe(w.message)}" for w in caught]
    result["seconds"] = time.perf_counter() - started
    return result


# ------------------------------------------------------------------------------ corpus


@dataclass
class TrackResult:
    """The outcome of one track.

    status : "written", "skipped" (its ``.npz`` was up to date), "failed" or "pending".
    error : the reason of a failure (one line), else None.
    warnings : the warnings met while decoding and tracking (one line each).
    steps, beats : slow steps and tracked beats in its ``.npz`` (0 if none).
    seconds : wall time of its computation in the worker (0 when skipped).
    traceback : the worker's traceback of an unexpected error (a bug), else None.
    """

    name: str
    audio: str | None
    labels: str | None
    npz: str
    status: str = "pending"
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    steps: int = 0
    beats: int = 0
    seconds: float = 0.0
    traceback: str | None = None


@dataclass
class Report:
    """What :func:`prepare_corpus` did: one :class:`TrackResult` per matched stem (by name),
    the unmatched files, the parameters and the manifest's path."""

    out_dir: Path
    manifest: Path
    params: dict
    tracks: list[TrackResult]
    audio_without_labels: list[str]
    labels_without_audio: list[str]

    def _with(self, status: str) -> list[TrackResult]:
        return [t for t in self.tracks if t.status == status]

    @property
    def written(self) -> list[TrackResult]:
        return self._with("written")

    @property
    def skipped(self) -> list[TrackResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[TrackResult]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """True when no track failed."""
        return not self.failed

    def to_dict(self) -> dict:
        """The manifest document (JSON types)."""
        counts = {s: len(self._with(s)) for s in ("written", "skipped", "failed", "pending")}
        counts.update(tracks=len(self.tracks),
                      audio_without_labels=len(self.audio_without_labels),
                      labels_without_audio=len(self.labels_without_audio))
        return {
            "format": MANIFEST_FORMAT,
            "parameters": self.params,
            "counts": counts,
            "tracks": [asdict(t) for t in self.tracks],
            "audio_without_labels": self.audio_without_labels,
            "labels_without_audio": self.labels_without_audio,
        }


def _files(directory: Path, suffixes: Iterable[str], what: str) -> list[Path]:
    if not directory.is_dir():
        raise NotADirectoryError(20, f"not a directory ({what})", str(directory))
    wanted = frozenset(suffixes)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in wanted)


def match_tracks(audio_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                 ) -> tuple[dict[str, tuple[list[Path], list[Path]]], list[str], list[str]]:
    """Match audio and label files by stem (module docstring).

    Returns ``(tracks, audio_without_labels, labels_without_audio)``: ``tracks`` maps each stem
    that has both to its (audio files, label files), usually one each (more is ambiguous); the
    other two list the unmatched file paths. Raises NotADirectoryError for a missing directory.
    """
    audio: dict[str, list[Path]] = {}
    labels: dict[str, list[Path]] = {}
    for p in _files(Path(audio_dir), AUDIO_SUFFIXES, "audio"):
        audio.setdefault(p.stem, []).append(p)
    for p in _files(Path(labels_dir), LABEL_SUFFIXES, "labels"):
        labels.setdefault(p.stem, []).append(p)
    tracks = {s: (audio[s], labels[s]) for s in sorted(audio.keys() & labels.keys())}
    lonely_audio = [str(p) for s in sorted(audio.keys() - labels.keys()) for p in audio[s]]
    lonely_labels = [str(p) for s in sorted(labels.keys() - audio.keys()) for p in labels[s]]
    return tracks, lonely_audio, lonely_labels


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _existing(npz: Path) -> dict | None:
    """Metadata of an existing output: None if there is none; ValueError if the file is not a
    ``fractalsync-prepare`` output (it must not be replaced). An output of another format
    version is ours, and out of date (its ``params`` differ)."""
    if not npz.exists():
        return None
    try:
        with np.load(npz, allow_pickle=False) as z:
            fmt = str(z["format"]) if "format" in z.files else ""
            if not fmt.startswith(FORMAT.split("/")[0] + "/"):
                raise ValueError("no fractalsync-prepare format entry")
            meta = {k: str(z[k]) if k in z.files else ""
                    for k in ("audio_sha256", "labels_sha256", "params")}
            if fmt == FORMAT:
                meta.update(steps=int(z["times"].shape[0]), beats=int(z["beats"].shape[0]))
            return meta
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise ValueError(f"{npz} exists and is not a fractalsync-prepare output ({exc}); "
                         "not overwritten (move it away)") from None


class _Progress:
    """``\\r[i/n] name`` on stderr, only when enabled and stderr is a terminal."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled and total > 0 and sys.stderr.isatty()
        self._width = 0

    def step(self, name: str) -> None:
        self.done += 1
        if self.enabled:
            text = f"[{self.done}/{self.total}] {name}"
            sys.stderr.write("\r" + text.ljust(self._width))
            sys.stderr.flush()
            self._width = len(text)

    def close(self) -> None:
        if self.enabled and self.done:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _check_manifest(path: Path) -> None:
    if not path.exists():
        return
    try:
        ours = json.loads(path.read_text("utf-8")).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise FileExistsError(17, "exists and is not a fractalsync-prepare manifest; not "
                                  "overwritten (choose another --out)", str(path))


def _run_local(tasks: list[tuple], jobs: int, on_result: Callable[[str, dict], None]) -> None:
    if jobs == 1 or len(tasks) <= 1:
        for task in tasks:
            on_result(task[0], _worker(*task))
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process running threads
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(_worker, *task): task[0] for task in tasks}
        try:
            for future in as_completed(futures):
                try:
                    result = future.result()
                except Exception as exc:  # the worker process died (BrokenProcessPool)
                    result = {"error": f"worker failed: {describe(exc)}"}
                on_result(futures[future], result)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _import_dask():
    """dask.distributed's ``Client`` and ``wait``, or :class:`ClusterExtraMissing`."""
    try:
        from distributed import Client, wait
    except ImportError as exc:
        raise ClusterExtraMissing(
            f"--scheduler needs dask.distributed, the [cluster] extra: pip install "
            f"'fractalsync-dsp[cluster]' ({exc})") from None
    return Client, wait


def _announced(topic: str, key: str, task: Callable[..., dict], *args) -> dict:
    """``task(*args)`` on a dask worker, after telling the client (event ``key`` on ``topic``)
    that it starts: the per-track clock of :func:`_run_dask` runs from there."""
    from distributed import get_worker

    get_worker().log_event(topic, key)
    return task(*args)


def _can_run(task: Callable[..., dict]) -> bool:
    """Run on each worker before any track: that ``task`` (and this module) arrived means the
    worker can import them."""
    return callable(task)


def _able_workers(client, task: Callable[..., dict], timeout_s: float,
                  ) -> tuple[list[str] | None, str | None]:
    """Where the tracks may run, from :func:`_can_run` on every worker: ``(None, None)`` when
    every worker can run ``task`` (no restriction: workers restarted or added later count too),
    ``(addresses, None)`` for the workers that can when some cannot, ``([], error)`` with the
    error every track gets when none can (the first worker's failure) or no worker joined
    within ``timeout_s``."""
    try:
        client.wait_for_workers(1, timeout=timeout_s)
    except TimeoutError:
        return [], (f"not started: no dask worker joined the scheduler within {timeout_s:g} s "
                    "(--track-timeout)")
    checks = client.run(_can_run, task, on_error="return")
    able = sorted(w for w, ok in checks.items() if ok is True)
    if len(able) == len(checks):
        return None, None
    if able:
        return able, None
    worker, exc = min((w, e) for w, e in checks.items() if e is not True)
    return [], (f"worker failed: no worker can run the tracks ({worker}: "
                f"{type(exc).__name__}: {describe(exc)})")


def _run_dask(tasks: list[tuple], scheduler: str, on_result: Callable[[str, dict], None],
              timeout_s: float, task: Callable[..., dict] = _worker) -> None:
    """Run ``task(*t)`` (default :func:`_worker`) for every ``t`` of ``tasks`` on the dask
    scheduler at ``scheduler``; ``on_result(t[0], outcome)`` in this thread for each, in order
    of completion. Never waits forever (module docstring, "Never a hang"): the tracks run on
    the workers that could load ``task`` when the batch started (all tracks fail at once if
    none can, or if no worker joins within ``timeout_s``); a track running longer than
    ``timeout_s`` (from its latest start on a worker), or waiting while no track of the batch
    has run for ``timeout_s``, gets an error outcome and is cancelled; so does a track whose
    workers died too often (KilledWorker)."""
    client_class, dask_wait = _import_dask()
    batch = uuid.uuid4().hex
    topic = f"fractalsync-prepare-{batch}"
    started: dict[str, float] = {}  # key -> time.monotonic() of its latest start

    def on_event(event) -> None:  # (timestamp, key), in the client's event-loop thread
        started[event[1]] = time.monotonic()

    with client_class(scheduler) as client:
        if not tasks:
            return
        able, error = _able_workers(client, task, timeout_s)
        if error is not None:
            for t in tasks:
                on_result(t[0], {"error": error})
            return
        client.subscribe_topic(topic, on_event)  # before any task can start
        names, pending = {}, set()
        for i, t in enumerate(tasks):
            key = f"{topic}-{i}"
            pending.add(client.submit(_announced, topic, key, task, *t, key=key, pure=False,
                                      workers=able, allow_other_workers=False))
            names[key] = t[0]
        active = time.monotonic()  # the latest time some track of the batch ran or ended
        while pending:
            lost = None
            try:
                dask_wait(pending, timeout=_POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
            except Exception as exc:  # the scheduler cancelled tracks, or is gone
                lost = f"worker failed: lost the dask scheduler ({type(exc).__name__})"
            done = {f for f in pending if f.done()}
            if lost is not None and not done:
                for future in pending:
                    on_result(names[future.key], {"error": lost})
                return
            for future in done:
                pending.discard(future)
                try:
                    result = future.result(timeout=timeout_s)
                except Exception as exc:  # KilledWorker, a lost result
                    result = {"error": f"worker failed: {type(exc).__name__}: {describe(exc)}"}
                on_result(names[future.key], result)
                future.release()
            now = time.monotonic()
            if done:
                active = now
            late, waited = [], []
            for future in pending:
                since = started.get(future.key)
                if since is None:
                    waited.append(future)
                elif now - since > timeout_s:
                    late.append(future)
                else:
                    active = now
            if now - active <= timeout_s:
                waited = []
            for future, error in [*((f, f"timed out: still running after {timeout_s:g} s "
                                       "(--track-timeout)") for f in late),
                                  *((f, f"not started: no dask worker ran a track of this "
                                       f"batch for {timeout_s:g} s (--track-timeout)")
                                    for f in waited)]:
                pending.discard(future)
                future.cancel()
                on_result(names[future.key], {"error": error})


def prepare_corpus(audio_dir: str | os.PathLike, labels_dir: str | os.PathLike,
                   out_dir: str | os.PathLike, jobs: int | None = None,
                   scheduler: str | None = None, progress: bool = True,
                   source: str | None = None, snap_s: float = DEFAULT_SNAP_S,
                   model: int | str = ONLINE_MODEL, seed: int = 0,
                   track_timeout_s: float = DEFAULT_TRACK_TIMEOUT_S) -> Report:
    """Prepare every matched track of a corpus (see the module docstring).

    Parameters
    ----------
    audio_dir, labels_dir : directories of audio files and label files (matched by stem).
    out_dir : output directory (created if missing); gets ``<stem>.npz`` and ``manifest.json``.
    jobs : local worker processes (default ``os.cpu_count()``; 1 = in this process).
    scheduler : ``"tcp://HOST:PORT"`` of a dask.distributed scheduler instead of local workers.
    progress : show ``[i/n] track`` on stderr (only when it is a terminal).
    source : label format for ``read_labels`` (None = detect).
    snap_s : boundary snapping tolerance in seconds (0 = off).
    model, seed : the tracker's BeatNet model and particle-filter seed.
    track_timeout_s : with ``scheduler``: seconds a track may run on a worker, and the longest
        the batch waits while no track runs, before the track fails (module docstring, "Never a
        hang"); finite, > 0.

    Returns
    -------
    Report
        Per-track status; failed tracks carry their error. ``manifest.json`` holds the same.

    Raises
    ------
    NotADirectoryError
        A missing input directory.
    FileExistsError
        ``out_dir/manifest.json`` exists and is not a ``fractalsync-prepare`` manifest.
    ClusterExtraMissing
        ``scheduler`` given without dask.distributed installed.
    ValueError
        Bad ``jobs``, ``snap_s``, ``model``, ``seed`` or ``track_timeout_s``.
    """
    params = PrepareParams(model=model, seed=seed, source=source, snap_s=snap_s)
    if jobs is None:
        jobs = os.cpu_count() or 1
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    if isinstance(track_timeout_s, bool) or not isinstance(track_timeout_s, (int, float)) \
            or not 0.0 < track_timeout_s < float("inf"):
        raise ValueError(f"track_timeout_s must be a finite number of seconds > 0, got "
                         f"{track_timeout_s!r}")
    if scheduler is not None:
        if not isinstance(scheduler, str):
            raise TypeError(f"scheduler must be an address string, got "
                            f"{type(scheduler).__name__}")
        _import_dask()  # before any work
    matched, lonely_audio, lonely_labels = match_tracks(audio_dir, labels_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / MANIFEST
    _check_manifest(manifest)
    spec = params.to_dict()
    spec_json = json.dumps(spec, sort_keys=True)
    report = Report(out, manifest, spec, [], lonely_audio, lonely_labels)
    by_name: dict[str, TrackResult] = {}
    stale: set[str] = set()  # tracks whose existing .npz (ours) is out of date
    tasks: list[tuple] = []
    for name, (audio_files, label_files) in matched.items():
        npz = out / f"{name}.npz"
        result = TrackResult(name, str(audio_files[0]), str(label_files[0]), str(npz))
        report.tracks.append(result)
        by_name[name] = result
        try:
            if len(audio_files) > 1 or len(label_files) > 1:
                many = audio_files if len(audio_files) > 1 else label_files
                raise ValueError(f"ambiguous stem {name!r}: "
                                 f"{', '.join(p.name for p in many)} (keep one)")
            old = _existing(npz)
            if (old is not None and old["params"] == spec_json
                    and old["audio_sha256"] == _sha256(audio_files[0])
                    and old["labels_sha256"] == _sha256(label_files[0])):
                result.status, result.steps, result.beats = "skipped", old["steps"], old["beats"]
                continue
            if old is not None:
                stale.add(name)
        except (OSError, ValueError) as exc:
            result.status, result.error = "failed", describe(exc)
            continue
        tasks.append((name, result.audio, result.labels, params))

    bar = _Progress(len(tasks), progress)

    def on_result(name: str, outcome: dict) -> None:
        result = by_name[name]
        result.seconds = round(float(outcome.get("seconds", 0.0)), 3)
        result.warnings = list(outcome.get("warnings", ()))
        if "error" in outcome:
            result.status, result.error = "failed", outcome["error"]
            result.traceback = outcome.get("traceback")
            if name in stale:  # our own output of other audio/labels/parameters: not current
                Path(result.npz).unlink(missing_ok=True)
        else:
            arrays = outcome["arrays"]
            try:
                write_atomic(result.npz, _npz_bytes(arrays))
            except OSError as exc:
                result.status, result.error = "failed", describe(exc)
            else:
                result.status = "written"
                result.steps = int(arrays["times"].shape[0])
                result.beats = int(arrays["beats"].shape[0])
        write_atomic(manifest, json.dumps(report.to_dict(), indent=1) + "\n")
        bar.step(name)

    write_atomic(manifest, json.dumps(report.to_dict(), indent=1) + "\n")
    try:
        if scheduler is not None:
            _run_dask(tasks, scheduler, on_result, float(track_timeout_s))
        else:
            _run_local(tasks, jobs, on_result)
    finally:
        bar.close()
    write_atomic(manifest, json.dumps(report.to_dict(), indent=1) + "\n")
    return report
