"""The controller's training corpus: 60 Hz input sequences exactly as the runtime sees them.

For each song (a generated one, ``generate_song(seed)`` at 44.1 kHz, with exact beats,
downbeats and sections; or a real recording with the offline beat grid as its beats) the live
analysis path runs causally at 60 frames per second (:class:`~examples.julia.video_render.
CausalStream` with the shipped anticipator's ``StructureTracker``, as
``examples/julia/app.py`` ``make_structure`` builds it) and every frame's
:class:`~examples.julia.controller.ControlInputs` is converted by
:class:`~examples.julia.controller_io.ContractInputs` (the one conversion the runtime uses).
Frame ``k`` is stream time ``k / 60``.

Stored per song (:class:`SongFrames`, one ``.npz`` per song in ``<work>/corpus``, written
atomically, so an interrupted build resumes where it stopped):

* ``micro (T,7)``, ``beat (T,5)``, ``sect_pred (T,8)``, ``haz_pred (T,5)``: the contract inputs
  (section and hazards: the anticipator's own predictions);
* ``sect_true (T,8)``: the true section one-hot, ``haz_true (T,5)``: 1 where a true boundary
  follows within ``HORIZONS_BEATS[k]`` true beats (``targets.hazard_targets``); recordings have
  no sections, so these are the predictions again and ``has_sections`` is False;
* ``beat_amp (T,)``: 1 at the frame nearest each true downbeat, 0.8 at other true beats, else
  0 (the pulse loss's target);
* ``jump (T,)``: frames within ``JUMP_FRAMES`` of a true downbeat or section boundary (the only
  places the smoothness loss lets c, zoom and rotation jump);
* ``segment (T,)`` index of the true section segment and ``label (T,)`` its label index
  (-1 for recordings).

Conditioning for training (:func:`conditioning`), per the roadmap's robustness plan: the
teacher (true one-hot and true hazards) or the anticipator's predictions, then a random delay
of 0-2 slow steps (80 ms = 4.8 frames each, rounded), dropout of hazard channels and mild
noise on the probabilities.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalsync_models.atomic_write import write_atomic
from fractalsync_tracking.slow_state import HORIZONS_BEATS, SECTION_LABELS

__all__ = [
    "FPS", "JUMP_FRAMES", "SLOW_STEP_S", "SongFrames", "build_corpus", "conditioning",
    "generated_song_frames", "load_corpus", "recording_frames", "song_frames",
]

FPS = 60.0
#: Frames either side of a true downbeat or boundary where jumps are allowed.
JUMP_FRAMES = 2
#: One slow (anticipator) step: 12.5 Hz.
SLOW_STEP_S = 0.08
BEAT_AMP, DOWNBEAT_AMP = 0.8, 1.0
RATE = 44100
_ARRAYS = ("micro", "beat", "sect_pred", "haz_pred", "sect_true", "haz_true", "beat_amp",
           "jump", "segment", "label", "beats")


@dataclass
class SongFrames:
    """One song's 60 Hz frames (see the module docstring); T frames."""

    name: str
    has_sections: bool
    micro: np.ndarray
    beat: np.ndarray
    sect_pred: np.ndarray
    haz_pred: np.ndarray
    sect_true: np.ndarray
    haz_true: np.ndarray
    beat_amp: np.ndarray
    jump: np.ndarray
    segment: np.ndarray
    label: np.ndarray
    beats: np.ndarray  # (B,) true beat times, s

    def __len__(self) -> int:
        return self.micro.shape[0]

    def save(self, path: Path) -> None:
        """Write the song as one ``.npz`` (atomically)."""
        buf = io.BytesIO()
        np.savez(buf, name=np.array(self.name), has_sections=np.array(self.has_sections),
                 **{k: getattr(self, k) for k in _ARRAYS})
        write_atomic(path, buf.getvalue())

    @classmethod
    def load(cls, path: Path) -> SongFrames:
        """Read a song written by :meth:`save`."""
        with np.load(path) as z:
            return cls(name=str(z["name"]), has_sections=bool(z["has_sections"]),
                       **{k: z[k] for k in _ARRAYS})


def _frame_of(times: np.ndarray, n: int) -> np.ndarray:
    k = np.round(np.asarray(times, np.float64) * FPS).astype(np.int64)
    return k[(k >= 0) & (k < n)]


def song_frames(audio: np.ndarray, rate: int, name: str, beats: np.ndarray,
                downbeats: np.ndarray, sections=None) -> SongFrames:
    """Run the live path over ``audio`` ((n,) or (n, ch) float32 at ``rate`` Hz) at 60 fps and
    return its frames with the true beats (s), downbeats (s) and sections (``Segment`` s with
    ``start, end, label``; None for a recording without them)."""
    from examples.julia.controller_io import ContractInputs
    from examples.julia.video_render import CausalStream
    from fractalsync_models.training.targets import beats_to_next_boundary, hazard_targets
    from fractalsync_tracking.structure import StructureTracker

    audio = np.asarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    n = int(np.floor(audio.shape[0] / rate * FPS))
    stream = CausalStream(audio, rate, StructureTracker())
    convert = ContractInputs()
    micro, beat = np.zeros((n, 7), np.float32), np.zeros((n, 5), np.float32)
    sect, haz = np.zeros((n, 8), np.float32), np.zeros((n, 5), np.float32)
    for k in range(n):
        t = k / FPS
        stream.advance(t, timed=False)
        micro[k], beat[k], sect[k], haz[k] = (a[0] for a in convert.convert(stream.inputs(t)))
    beats = np.asarray(beats, np.float64)
    amp = np.zeros(n, np.float32)
    amp[_frame_of(beats, n)] = BEAT_AMP
    amp[_frame_of(downbeats, n)] = DOWNBEAT_AMP
    times = np.arange(n) / FPS
    segment = np.full(n, -1, np.int64)
    label = np.full(n, -1, np.int64)
    jump_times = [np.asarray(downbeats, np.float64)]
    sect_true, haz_true = sect.copy(), haz.copy()
    if sections is not None:
        for i, seg in enumerate(sections):
            m = (times >= seg.start) & (times < seg.end)
            segment[m], label[m] = i, SECTION_LABELS.index(seg.label)
        bounds = np.array([s.start for s in sections[1:]], np.float64)
        jump_times.append(bounds)
        sect_true = np.zeros((n, 8), np.float32)
        sect_true[label >= 0, label[label >= 0]] = 1.0
        sect_true[label < 0] = 1.0 / 8
        haz_true = hazard_targets(beats_to_next_boundary(times, beats, bounds), HORIZONS_BEATS)
    jump = np.zeros(n, bool)
    for k in _frame_of(np.concatenate(jump_times), n):
        jump[max(k - JUMP_FRAMES, 0):k + JUMP_FRAMES + 1] = True
    return SongFrames(name, sections is not None, micro, beat, sect, haz, sect_true,
                      haz_true.astype(np.float32), amp, jump, segment, label, beats)


def generated_song_frames(seed: int) -> SongFrames:
    """The frames of ``generate_song(seed)`` at 44.1 kHz (the measurement's rate)."""
    from fractalsync_models.training.song_generator import generate_song

    song = generate_song(seed, sample_rate=RATE)
    return song_frames(song.audio, RATE, f"song_{seed:06d}", song.beats, song.downbeats,
                       song.sections)


def recording_frames(path: Path) -> SongFrames:
    """The frames of a real recording; its beats and downbeats are the offline beat grid
    (``fractalsync_tracking.beat_grid``: Viterbi over the whole file, the project's best
    reference; the recordings carry no annotations)."""
    from fractalsync_dsp.audio_io import load_audio
    from fractalsync_tracking.beat_grid import beat_grid

    audio, rate = load_audio(str(path))
    grid = beat_grid(str(path))
    return song_frames(audio, int(rate), Path(path).stem, np.array(grid.beats),
                       np.array(grid.downbeats))


def build_corpus(work: Path, seeds, recordings=(), log=print,
                 sub: str = "corpus") -> list[SongFrames]:
    """Every song's frames, from ``<work>/<sub>/<name>.npz`` when cached, else computed and
    cached (resumable). ``seeds``: generator seeds; ``recordings``: audio file paths."""
    corpus = Path(work) / sub
    corpus.mkdir(parents=True, exist_ok=True)
    jobs = [(f"song_{s:06d}", generated_song_frames, s) for s in seeds]
    jobs += [(Path(p).stem, recording_frames, Path(p)) for p in recordings]
    songs = []
    for i, (name, make, arg) in enumerate(jobs):
        path = corpus / f"{name}.npz"
        if not path.exists():
            make(arg).save(path)
            log(f"corpus: {name} ({i + 1}/{len(jobs)})")
        songs.append(SongFrames.load(path))
    return songs


def load_corpus(work: Path, sub: str = "corpus") -> list[SongFrames]:
    """Every cached song of ``<work>/<sub>``, by name."""
    return [SongFrames.load(p) for p in sorted((Path(work) / sub).glob("*.npz"))]


def conditioning(song: SongFrames, start: int, stop: int, rng: np.random.Generator,
                 teacher: bool, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Section probabilities (L,8) and hazards (L,5) for frames ``[start, stop)`` of ``song``.

    ``teacher``: the true one-hot and true hazards (a song without sections has only the
    predictions). Then, scaled by ``noise`` (0: none): a delay of 0-2 slow steps (the frame
    reads the value of ``round(d * 4.8)`` frames earlier, the first frame's value before the
    start), each hazard channel dropped (0) with probability 0.15 and all of them with 0.1,
    the section probabilities multiplied by ``exp(N(0, 0.15))`` and renormalised, the hazards
    offset by ``N(0, 0.03)`` and clipped to [0, 1].
    """
    sect = song.sect_true if teacher and song.has_sections else song.sect_pred
    haz = song.haz_true if teacher and song.has_sections else song.haz_pred
    if noise <= 0:
        return sect[start:stop].copy(), haz[start:stop].copy()
    delay = int(round(int(rng.integers(0, 3)) * SLOW_STEP_S * FPS))
    idx = np.clip(np.arange(start, stop) - delay, 0, None)
    s, h = sect[idx].astype(np.float64), haz[idx].astype(np.float64)
    keep = (rng.random(h.shape[1]) >= 0.15 * noise) & (rng.random() >= 0.1 * noise)
    s = s * np.exp(rng.normal(0.0, 0.15 * noise, s.shape))
    s /= s.sum(axis=1, keepdims=True)
    h = np.clip(h + rng.normal(0.0, 0.03 * noise, h.shape), 0.0, 1.0) * keep
    return s.astype(np.float32), h.astype(np.float32)
