"""Held-out evaluation of the structure anticipator through the live path (issue 10, item 8).

Run (the full evaluation, a few minutes on 2 cores; ``--quick``: one 30 s song, numpy and midi
only, for the tests)::

    .venv/bin/python benchmarks/measure_structure.py [--seeds 5000:5024] [--jobs 2] [--quick]

Songs: generator seeds never seen in training (the shipped model trains on seeds ``0..N-1`` of
``train_anticipator --build-corpus N``; its model card ``anticipator_v1.json`` lists them; the
default evaluation seeds 5000..5023 are far above any N used), each in three renditions of the
same plan (the default plan, ``variety=False``, which training never uses):

* ``numpy``: :func:`~fractalsync_models.training.song_generator.generate_song` at 22050 Hz,
  the numpy voices the model was trained on (with other plans, EQs and levels);
* ``midi``: :func:`~fractalsync_models.training.song_midi.render_midi_song`, the same plan
  played by FluidSynth with the FluidR3 General MIDI soundfont and the default instrument mix
  (:func:`~fractalsync_models.training.song_midi.default_mix`); training uses this soundfont
  with instruments, volumes, reverb and EQ drawn per song;
* ``timgm``: the same with the TimGM6mb soundfont (Debian ``timgm6mb-soundfont``), a sound
  set never used in training;

plus the demo song of the live app (``examples/julia/app.py``: ``generate_song(DEMO_SEED,
sample_rate=44100)``, seed 2026, outside the training seeds; reported separately).

Each song runs through :func:`fractalsync_tracking.structure.structure_timeline` (the exact
live path, 1024-sample blocks at the song's rate, the shipped model, the default hysteresis).
Metrics (:mod:`fractalsync_tracking.structure_metrics`), pooled over the songs of a set:

* section accuracy, time-weighted over the slow steps (each 80 ms), of the *displayed* label
  (after hysteresis) and of the per-step argmax; 8 labels and 7 (pre-chorus counted as verse);
  the floor is the majority label of the set;
* boundary hit rate F at ±0.5 s and ±3 s (mean over songs) of the displayed ``segments``' starts
  (and, for comparison, of the argmax's runs) against the true boundaries
  (:func:`~fractalsync_models.training.labels.boundaries` of the song's sections, as training
  uses them), and the median detection lag of the ±3 s matches (positive = late);
* per horizon 1, 2, 4, 8, 16 beats: AUROC and Brier of ``hazard_probs`` against the targets of
  training (:mod:`fractalsync_models.training.targets`: beats to the next true boundary counted
  on the tracker's own beats from the same run), steps where the targets are defined; next to
  the phrase prior (:func:`~fractalsync_tracking.structure_metrics.phrase_prior_hazard`: bars
  since the last true boundary on the same tracked beats and downbeats).

Issue 10's targets on held-out songs: section accuracy >= 0.75; HR3F >= 0.7; hazard AUROC above
the phrase prior's at every horizon and >= 0.85 at 4 and 8 beats. The script prints markdown
tables, the label confusion of the displayed label, and which targets are met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # examples/ for the demo song

from examples.julia.app import DEMO_RATE, DEMO_SEED  # noqa: E402
from fractalsync_models.anticipator import DEFAULT_MODEL_PATH  # noqa: E402
from fractalsync_models.training.labels import Segment, boundaries
from fractalsync_models.training.targets import (
    beats_to_next_boundary,
    hazard_targets,
    section_targets,
)
from fractalsync_tracking.slow_state import HORIZONS_BEATS, SECTION_LABELS
from fractalsync_tracking.structure import (
    DEFAULT_HYSTERESIS,
    Hysteresis,
    StructureTimeline,
    display_segments,
    structure_timeline,
)
from fractalsync_tracking.structure_metrics import (
    auroc,
    boundary_hit_rate,
    brier,
    majority_label_accuracy,
    median_detection_lag,
    phrase_prior_hazard,
    section_accuracy,
)

DEFAULT_SEEDS = range(5000, 5024)
MERGE_7 = {"pre-chorus": "verse"}
TARGETS = {"accuracy": 0.75, "hr3f": 0.7, "auroc_4_8": 0.85}
STEP_S = 0.08


# --------------------------------------------------------------------------- one song


@dataclass
class SongEval:
    """Everything the set metrics need from one song (S slow steps).

    truth, display, argmax : (S,) label indices (truth -1 = outside the labels);
    hazard, prior, targets : (S, 5) model hazard, phrase prior, 0/1 targets; ``valid`` (S,)
    marks the steps where the targets and the prior are defined; ref, est_display, est_argmax :
    boundary times (s); duration : seconds of audio.
    """

    name: str
    truth: np.ndarray
    display: np.ndarray
    argmax: np.ndarray
    hazard: np.ndarray
    prior: np.ndarray
    targets: np.ndarray
    valid: np.ndarray
    ref: np.ndarray
    est_display: np.ndarray
    est_argmax: np.ndarray
    duration: float


def song_segments(sections) -> list[Segment]:
    """The song's ``(start, end, label)`` sections as label segments."""
    return [Segment(s.start, s.end, s.label) for s in sections]


def evaluate_song(name: str, tl: StructureTimeline, segments: Sequence[Segment]) -> SongEval:
    """Score one live timeline against the song's true sections (module docstring)."""
    times = tl.times
    ref = np.asarray(boundaries(segments), np.float64)
    truth = np.asarray(section_targets(segments, times), np.int64)
    argmax = tl.section_probs.argmax(axis=1).astype(np.int64)
    raw_runs = display_segments(times, argmax, tl.duration)
    btnb = beats_to_next_boundary(times, tl.beats, ref)
    targets = hazard_targets(btnb)
    prior = phrase_prior_hazard(times, tl.beats, tl.downbeats, ref)  # NaN rows: < 2 beats
    valid = ~np.isnan(btnb) & ~np.isnan(prior).any(axis=1)
    return SongEval(
        name=name, truth=truth, display=tl.labels.astype(np.int64), argmax=argmax,
        hazard=tl.hazard_probs.astype(np.float64), prior=np.nan_to_num(prior),
        targets=targets, valid=valid, ref=ref,
        est_display=np.array([s.start for s in tl.segments[1:]], np.float64),
        est_argmax=np.array([s.start for s in raw_runs[1:]], np.float64),
        duration=tl.duration,
    )


def summarize(evals: Sequence[SongEval]) -> dict:
    """The set's metrics (module docstring) as a dict of floats (NaN where undefined)."""
    truth = np.concatenate([e.truth for e in evals])
    w = np.full(truth.size, STEP_S)
    out: dict = {"songs": len(evals), "hours": sum(e.duration for e in evals) / 3600}
    for key, merge in (("8", None), ("7", MERGE_7)):
        for kind in ("display", "argmax"):
            pred = np.concatenate([getattr(e, kind) for e in evals])
            out[f"acc{key}_{kind}"] = section_accuracy(pred, truth, w, merge=merge)
        out[f"acc{key}_majority"] = majority_label_accuracy(truth, w, merge=merge)
    for kind in ("display", "argmax"):
        for win, tag in ((0.5, "hr05f"), (3.0, "hr3f")):
            out[f"{tag}_{kind}"] = float(np.mean([
                boundary_hit_rate(getattr(e, f"est_{kind}"), e.ref, win)[2] for e in evals]))
        # pooled lag: the songs laid end to end, 10 s apart, so no match crosses songs
        offsets = np.cumsum([0.0] + [e.duration + 10.0 for e in evals[:-1]])
        out[f"lag_{kind}"] = median_detection_lag(
            np.concatenate([getattr(e, f"est_{kind}") + o for e, o in zip(evals, offsets,
                                                                           strict=True)]),
            np.concatenate([e.ref + o for e, o in zip(evals, offsets, strict=True)]), 3.0)
        out[f"changes_per_min_{kind}"] = float(
            sum(getattr(e, f"est_{kind}").size for e in evals)
            / (sum(e.duration for e in evals) / 60))
    out["true_changes_per_min"] = float(sum(e.ref.size for e in evals)
                                        / (sum(e.duration for e in evals) / 60))
    valid = np.concatenate([e.valid for e in evals])
    y = np.concatenate([e.targets for e in evals])[valid]
    hz = np.concatenate([e.hazard for e in evals])[valid]
    pr = np.concatenate([e.prior for e in evals])[valid]
    for k, h in enumerate(HORIZONS_BEATS):
        out[f"auroc_{h}"] = auroc(hz[:, k], y[:, k])
        out[f"auroc_prior_{h}"] = auroc(pr[:, k], y[:, k])
        out[f"brier_{h}"] = brier(hz[:, k], y[:, k])
        out[f"brier_prior_{h}"] = brier(pr[:, k], y[:, k])
        out[f"positive_{h}"] = float(y[:, k].mean()) if y.size else float("nan")
    return out


def confusion(evals: Sequence[SongEval]) -> np.ndarray:
    """(8, 8) seconds with true label i displayed as j (steps outside the labels left out)."""
    m = np.zeros((len(SECTION_LABELS),) * 2)
    for e in evals:
        keep = e.truth >= 0
        np.add.at(m, (e.truth[keep], e.display[keep]), STEP_S)
    return m


def targets_met(s: dict) -> dict[str, bool]:
    """Issue 10's targets for a set summary."""
    return {
        "section accuracy (8) >= 0.75": s["acc8_display"] >= TARGETS["accuracy"],
        "HR3F >= 0.7": s["hr3f_display"] >= TARGETS["hr3f"],
        "AUROC > phrase prior at every horizon": all(
            s[f"auroc_{h}"] > s[f"auroc_prior_{h}"] for h in HORIZONS_BEATS),
        "AUROC >= 0.85 at 4 and 8 beats": all(
            s[f"auroc_{h}"] >= TARGETS["auroc_4_8"] for h in (4, 8)),
    }


# --------------------------------------------------------------------------- tables


def _f(v: float, digits: int = 3) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def format_tables(summaries: dict[str, dict]) -> str:
    """Markdown tables of the set summaries (one column per set)."""
    names = list(summaries)
    head = "| metric | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"

    def row(label: str, key: str, digits: int = 3) -> str:
        return f"| {label} | " + " | ".join(_f(summaries[n][key], digits) for n in names) + " |\n"

    text = head + row("songs", "songs", 0) + row("hours of audio", "hours", 2)
    for key in ("8", "7"):
        text += row(f"section accuracy ({key} labels), displayed", f"acc{key}_display")
        text += row(f"section accuracy ({key} labels), per-step argmax", f"acc{key}_argmax")
        text += row(f"majority-label floor ({key} labels)", f"acc{key}_majority")
    for kind, what in (("display", "displayed segments"), ("argmax", "argmax runs")):
        text += row(f"HR.5F, {what}", f"hr05f_{kind}")
        text += row(f"HR3F, {what}", f"hr3f_{kind}")
        text += row(f"median lag (s) of ±3 s hits, {what}", f"lag_{kind}", 2)
        text += row(f"label changes per minute, {what}", f"changes_per_min_{kind}", 1)
    text += row("true boundaries per minute", "true_changes_per_min", 1)
    text += "\n| hazard | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    for h in HORIZONS_BEATS:
        text += row(f"AUROC {h} beats (model)", f"auroc_{h}")
        text += row(f"AUROC {h} beats (phrase prior)", f"auroc_prior_{h}")
    for h in HORIZONS_BEATS:
        text += row(f"Brier {h} beats (model)", f"brier_{h}")
        text += row(f"Brier {h} beats (phrase prior)", f"brier_prior_{h}")
    for h in HORIZONS_BEATS:
        text += row(f"positive rate {h} beats", f"positive_{h}")
    return text


def format_confusion(m: np.ndarray) -> str:
    """Markdown: rows true label, columns displayed label, share of the row's time (%)."""
    short = [s[:5] for s in SECTION_LABELS]
    text = "| true \\ shown | " + " | ".join(short) + " | seconds |\n|---|" + "---|" * 9 + "\n"
    for i, name in enumerate(SECTION_LABELS):
        total = m[i].sum()
        cells = [f"{100 * v / total:.0f}" if total else "-" for v in m[i]]
        text += f"| {name} | " + " | ".join(cells) + f" | {total:.0f} |\n"
    return text


# --------------------------------------------------------------------------- running


_MODEL = {}


def _anticipator(path: str):
    from fractalsync_models.anticipator import Anticipator

    if path not in _MODEL:
        _MODEL[path] = Anticipator(path)
    return _MODEL[path]


def run_song(seed: int, rendition: str, sample_rate: int, duration_s: float | None,
             hysteresis: Hysteresis, model_path: str) -> SongEval:
    """Render one song (``numpy``, ``midi`` or ``timgm``), run the live path, score it."""
    if rendition in ("midi", "timgm"):
        from fractalsync_models.training.song_midi import TIMGM6MB_SOUNDFONT, render_midi_song

        song = render_midi_song(seed, sample_rate=sample_rate, duration_s=duration_s,
                                soundfont=TIMGM6MB_SOUNDFONT if rendition == "timgm" else None)
    else:
        from fractalsync_models.training.song_generator import generate_song

        song = generate_song(seed, sample_rate=sample_rate, duration_s=duration_s)
    tl = structure_timeline(song.audio, song.sample_rate, anticipator=_anticipator(model_path),
                            hysteresis=hysteresis)
    return evaluate_song(f"{rendition}_{seed}", tl, song_segments(song.sections))


def _run_task(task) -> SongEval:
    return run_song(*task)


def _seeds(text: str) -> range:
    try:
        a, b = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP, got {text!r}") from None
    if not 0 <= a < b:
        raise argparse.ArgumentTypeError(f"need 0 <= START < STOP, got {text!r}")
    return range(a, b)


def training_seeds(model_path: Path) -> set[int] | None:
    """Generator seeds of the tracks the model was trained or validated on, from its model
    card (``<model>.json``: ``train_tracks``, ``val_tracks`` named ``song_<seed>``); None when
    there is no card."""
    card = model_path.with_suffix(".json")
    if not card.is_file():
        return None
    data = json.loads(card.read_text())
    names = [*data.get("train_tracks", []), *data.get("val_tracks", [])]
    return {int(m.group(1)) for n in names if (m := re.search(r"(\d+)(?:_[a-z]+)?$", n))}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS, help="START:STOP (5000:5024)")
    p.add_argument("--renditions", default=None,
                   help="some of numpy,midi,timgm, comma-separated (default: all three; with "
                   "--quick numpy,midi)")
    p.add_argument("--no-demo", action="store_true", help="skip the demo song")
    p.add_argument("--quick", action="store_true",
                   help="one 30 s song, the numpy and midi renditions")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--alpha", type=float, default=DEFAULT_HYSTERESIS.alpha)
    p.add_argument("--margin", type=float, default=DEFAULT_HYSTERESIS.margin)
    p.add_argument("--dwell", type=int, default=DEFAULT_HYSTERESIS.dwell_steps)
    p.add_argument("--json", type=Path, help="also write the summaries to this JSON file")
    args = p.parse_args(argv)
    hyst = Hysteresis(args.alpha, args.margin, args.dwell)
    seeds, duration = (range(5000, 5001), 30.0) if args.quick else (args.seeds, None)
    if args.renditions is None:
        args.renditions = "numpy,midi" if args.quick else "numpy,midi,timgm"
    renditions = [r for r in args.renditions.split(",") if r]
    if not set(renditions) <= {"numpy", "midi", "timgm"} or not renditions:
        p.error("--renditions: some of numpy, midi, timgm")
    model = str(args.model.resolve())
    seen = training_seeds(args.model)
    if seen is not None and seen & set(seeds):
        p.error(f"seeds {sorted(seen & set(seeds))[:10]} were trained on (model card)")
    card = ("no model card next to the model: training seeds unknown (the training script "
            "trains on seeds 0..N-1)" if seen is None else
            f"model card: trained/validated on seeds {min(seen)}..{max(seen)} ({len(seen)})")
    sha = hashlib.sha256(args.model.read_bytes()).hexdigest()[:16]
    tasks = {r: [(s, r, 22050, duration, hyst, model) for s in seeds] for r in renditions}
    if not (args.no_demo or args.quick):
        tasks[f"demo (seed {DEMO_SEED}, 44.1 kHz, held out)"] = [
            (DEMO_SEED, "numpy", DEMO_RATE, None, hyst, model)]
    started = time.perf_counter()
    flat = [t for ts in tasks.values() for t in ts]
    if args.jobs > 1 and len(flat) > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
            results = list(ex.map(_run_task, flat))
    else:
        results = [_run_task(t) for t in flat]
    evals, i = {}, 0
    for name, ts in tasks.items():
        evals[name] = results[i:i + len(ts)]
        i += len(ts)
    summaries = {name: summarize(ev) for name, ev in evals.items()}
    command = " ".join(["python", "benchmarks/measure_structure.py", *(argv or sys.argv[1:])])
    print(f"# Structure anticipator, live path, held-out songs\n\ncommand: `{command}`  ")
    print(f"model: {args.model} (sha256 {sha}...; {card})  ")
    print(f"seeds: {seeds.start}..{seeds.stop - 1}"
          f"{' (30 s each)' if duration else ''}; hysteresis: {hyst}; "
          f"{time.perf_counter() - started:.0f} s\n")
    print(format_tables(summaries))
    for name, ev in evals.items():
        print(f"\nDisplayed label vs truth, {name} (% of the true label's time):\n")
        print(format_confusion(confusion(ev)))
    for name, s in summaries.items():
        met = targets_met(s)
        print(f"\ntargets, {name}: " + "; ".join(
            f"{k}: {'met' if v else 'MISSED'}" for k, v in met.items()))
    if args.json:
        args.json.write_text(json.dumps(summaries, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
