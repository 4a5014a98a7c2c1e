"""prepare_corpus: the live path per track, the .npz layout, local pool == dask LocalCluster,
resume, per-track errors, foreign files, parity with the tracker and SlowStepInputs run
directly."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fractalsync_dsp.audio_io import load_audio
from fractalsync_models.training.labels import boundaries, read_labels
from fractalsync_models.training.synth import make_item
from fractalsync_models.training.targets import (
    beats_to_next_boundary,
    hazard_targets,
    section_targets,
)
from fractalsync_tracking.analysis_clock import AnalysisClock
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.online_grid import online_beat_grid
from fractalsync_tracking.prepare import (
    FORMAT,
    MANIFEST,
    ClusterExtraMissing,
    PrepareParams,
    compute_track,
    match_tracks,
    prepare_corpus,
)
from fractalsync_tracking.structure_inputs import SlowStepInputs

GOOD = ("drums_120", "groove_100_stereo", "waltz_141_nan")
#: name -> (dtype, shape with S, B, D, n, m for the sizes)
LAYOUT = {
    "times": ("f8", ("S",)), "audio_features": ("f4", ("S", 272)),
    "beat_features": ("f4", ("S", 5)), "y_section": ("i2", ("S",)), "btnb": ("f4", ("S",)),
    "y_hazard": ("f4", ("S", 5)), "beats": ("f8", ("B",)), "downbeats": ("f8", ("D",)),
    "boundaries": ("f8", ("n",)), "label_segments": ("f8", ("m", 3)),
    "format": ("U", ()), "track": ("U", ()), "audio_file": ("U", ()), "labels_file": ("U", ()),
    "audio_sha256": ("U", ()), "labels_sha256": ("U", ()), "contract_version": ("i8", ()),
    "tracker_model": ("U", ()), "tracker_seed": ("i8", ()), "decimation": ("i8", ()),
    "snap_s": ("f8", ()), "label_source": ("U", ()), "sample_rate": ("f8", ()),
    "duration": ("f8", ()), "params": ("U", ()),
}  # fmt: skip


def write_corpus(root: Path) -> tuple[Path, Path]:
    """A small corpus: three good tracks (22050 Hz mono WAV with CSV labels, 44100 Hz stereo
    FLAC with SongFormer JSON labels, 48000 Hz float WAV with NaN samples and CSV labels), one
    broken audio file, one track with bad labels, one audio file and one label file without a
    partner. Returns (audio_dir, labels_dir)."""
    audio, labels = root / "audio", root / "labels"
    audio.mkdir()
    labels.mkdir()
    csv = "start,end,label\n0,4,intro\n4,8.5,verse\n8.5,12,chorus\n"
    item = make_item("drums_120", 120.0, duration=12.0, sample_rate=22050)
    sf.write(audio / "drums_120.wav", item.audio, 22050)
    (labels / "drums_120.csv").write_text(csv)
    item = make_item("groove_100", 100.0, duration=12.0, sample_rate=44100, seed=3)
    sf.write(audio / "groove_100_stereo.flac", np.stack([item.audio, 0.5 * item.audio], 1),
             44100)
    (labels / "groove_100_stereo.json").write_text(json.dumps(
        [{"label": "Intro", "start": "0.00", "end": "2.40"},
         {"label": "Verse", "start": "2.40", "end": "7.20"},
         {"label": "Chorus", "start": "7.20", "end": "12.00"}]))
    item = make_item("waltz_141", 141.0, beats_per_bar=3, duration=12.0, sample_rate=48000)
    x = item.audio.copy()
    x[48000 * 5:48000 * 5 + 100] = np.nan
    sf.write(audio / "waltz_141_nan.wav", x, 48000, subtype="FLOAT")
    (labels / "waltz_141_nan.csv").write_text("start,end,label\n0,6,verse\n6,12,solo\n")
    (audio / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
    (labels / "broken.csv").write_text(csv)
    sf.write(audio / "bad_labels.wav", item.audio[:48000 * 2], 48000)
    (labels / "bad_labels.csv").write_text("start,end,label\n0,4,intro\n5,4,verse\n")
    sf.write(audio / "no_labels.wav", item.audio[:4800], 48000)
    (labels / "no_audio.txt").write_text("0 intro\n4 verse\n8 end\n")
    return audio, labels


def load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def assert_same_npz(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        if a[k].dtype.kind == "f":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # NaN == NaN here
        else:
            assert np.array_equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory, beatnet_models_dir):
    out = tmp_path_factory.mktemp("local")
    return prepare_corpus(*corpus, out, jobs=2, progress=False), out


@pytest.fixture(scope="module")
def dask_run(corpus, tmp_path_factory, beatnet_models_dir):
    distributed = pytest.importorskip("distributed")  # the [cluster] extra
    out = tmp_path_factory.mktemp("dask")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        report = prepare_corpus(*corpus, out, scheduler=cluster.scheduler_address,
                                progress=False)
    return report, out


def test_layout_and_report(local_run, corpus):
    report, out = local_run
    status = {t.name: t.status for t in report.tracks}
    assert status == {**dict.fromkeys(GOOD, "written"), "broken": "failed",
                      "bad_labels": "failed"}
    assert report.audio_without_labels == [str(corpus[0] / "no_labels.wav")]
    assert report.labels_without_audio == [str(corpus[1] / "no_audio.txt")]
    assert not report.ok and {t.name for t in report.failed} == {"broken", "bad_labels"}
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *(f"{n}.npz" for n in GOOD)])
    for track in report.written:
        d = load(out / f"{track.name}.npz")
        sizes = {"S": len(d["times"]), "B": len(d["beats"]), "D": len(d["downbeats"]),
                 "n": len(d["boundaries"]), "m": len(d["label_segments"])}
        assert set(d) == set(LAYOUT)
        for k, (dtype, shape) in LAYOUT.items():
            assert d[k].dtype.kind == "U" if dtype == "U" else d[k].dtype == np.dtype(dtype), k
            assert d[k].shape == tuple(sizes.get(s, s) for s in shape), k
        # 12 s at 12.5 Hz: steps every 80 ms up to the end of the file
        assert sizes["S"] == track.steps == 150 and sizes["B"] == track.beats > 15
        np.testing.assert_allclose(np.diff(d["times"]), 0.08, atol=1e-9)
        assert d["times"][-1] < d["duration"] == 12.0
        assert str(d["format"]) == FORMAT and str(d["track"]) == track.name
        assert int(d["decimation"]) == 4 and int(d["contract_version"]) == 1
        assert str(d["tracker_model"]) == "1" and int(d["tracker_seed"]) == 0
        assert json.loads(str(d["params"]))["snap_s"] == 0.0
        assert ((d["y_section"] >= -1) & (d["y_section"] < 8)).all()
        assert d["beat_features"][-20:, 3].min() > 0.5  # the tracker is confident on drums
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest == json.loads(json.dumps(report.to_dict()))
    assert manifest["counts"] == {"written": 3, "skipped": 0, "failed": 2, "pending": 0,
                                  "tracks": 5, "audio_without_labels": 1,
                                  "labels_without_audio": 1}


def test_per_track_errors_name_the_problem(local_run):
    report, _ = local_run
    errors = {t.name: t.error for t in report.failed}
    assert "broken.wav" in errors["broken"] and "not readable as audio" in errors["broken"]
    assert "bad_labels.csv:3" in errors["bad_labels"]
    warned = {t.name: t.warnings for t in report.tracks}
    assert any("NonFiniteAudioWarning" in w and "100" in w for w in warned["waltz_141_nan"])
    assert not any("UnknownLabelWarning" in w for w in warned["waltz_141_nan"])  # solo is inst
    assert warned["drums_120"] == []


def test_local_pool_and_dask_cluster_write_identical_files(local_run, dask_run):
    (local, a), (dask, b) = local_run, dask_run
    assert [(t.name, t.status, t.error) for t in local.tracks] == \
           [(t.name, t.status, t.error) for t in dask.tracks]
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for name in GOOD:
        assert_same_npz(load(a / f"{name}.npz"), load(b / f"{name}.npz"))


def _direct(path: Path):
    """The live path written out here: BeatTracker + SlowStepInputs on one clock, the decoded
    file pushed in 1024-sample blocks, then 0.25 s of silence."""
    x, sr = load_audio(path)
    clock = AnalysisClock()
    tracker = BeatTracker(seed=0, clock=clock)
    inputs = clock.add_consumer(SlowStepInputs())
    x = np.concatenate([x, np.zeros((int(round(0.25 * sr)), x.shape[1]), np.float32)])
    events, times, audio, beat = [], [], [], []
    for i in range(0, len(x), 1024):
        out = tracker.push(x[i:i + 1024], sr)
        steps = inputs.take(out.states)
        events += out.events
        times += list(steps.times)
        audio += list(steps.audio_features.copy())
        beat += list(steps.beat_features.copy())
    return events, np.array(times), np.array(audio), np.array(beat)


@pytest.mark.parametrize("name, suffix, labels", [("drums_120", ".wav", ".csv"),
                                                  ("groove_100_stereo", ".flac", ".json")])
def test_parity_with_the_tracker_and_the_inputs_run_directly(local_run, corpus, name, suffix,
                                                             labels):
    _, out = local_run
    d = load(out / f"{name}.npz")
    audio_path = corpus[0] / f"{name}{suffix}"
    events, times, audio, beat = _direct(audio_path)
    duration = float(d["duration"])
    inside = [e for e in events if e.t_sec < duration]
    np.testing.assert_array_equal(d["beats"], [e.t_sec for e in inside])
    np.testing.assert_array_equal(d["downbeats"], [e.t_sec for e in inside if e.is_downbeat])
    np.testing.assert_array_equal(d["beats"], online_beat_grid(audio_path).beats)
    keep = times < duration
    np.testing.assert_array_equal(d["times"], times[keep])
    np.testing.assert_array_equal(d["audio_features"], audio[keep])
    np.testing.assert_array_equal(d["beat_features"], beat[keep])
    # the targets are the targets module's on the tracked beats and the labels' boundaries
    segments = read_labels(corpus[1] / f"{name}{labels}")
    bounds = boundaries(segments)
    np.testing.assert_array_equal(d["boundaries"], bounds)
    btnb = beats_to_next_boundary(d["times"], d["beats"], bounds)
    np.testing.assert_array_equal(d["btnb"], btnb.astype(np.float32))
    np.testing.assert_array_equal(d["y_hazard"], hazard_targets(btnb))
    np.testing.assert_array_equal(d["y_section"], section_targets(segments, d["times"]))
    assert list(d["y_section"][[0, 60, 149]]) == [1, 2, 4]  # intro, verse, chorus
    np.testing.assert_array_equal(d["label_segments"],
                                  [[s.start, s.end, [1, 2, 4][i]] for i, s in enumerate(segments)])


def test_resume_skips_done_tracks_and_redoes_changed_ones(tmp_path, beatnet_models_dir):
    audio, labels = write_corpus(tmp_path)
    out = tmp_path / "out"
    first = prepare_corpus(audio, labels, out, jobs=1, progress=False)
    stamps = {n: os.stat(out / f"{n}.npz").st_mtime_ns for n in GOOD}
    again = prepare_corpus(audio, labels, out, jobs=1, progress=False)
    assert {t.name for t in again.skipped} == set(GOOD)
    assert [(t.steps, t.beats) for t in again.skipped] == \
           [(t.steps, t.beats) for t in first.written]
    assert {n: os.stat(out / f"{n}.npz").st_mtime_ns for n in GOOD} == stamps
    # new labels for one track: only that one is redone, with the new targets
    (labels / "drums_120.csv").write_text("start,end,label\n0,6,verse\n6,12,chorus\n")
    third = prepare_corpus(audio, labels, out, jobs=1, progress=False)
    assert [t.name for t in third.written] == ["drums_120"]
    assert {t.name for t in third.skipped} == {"groove_100_stereo", "waltz_141_nan"}
    d = load(out / "drums_120.npz")
    np.testing.assert_array_equal(d["boundaries"], [6.0])
    assert list(d["y_section"][[0, 149]]) == [2, 4]
    # other parameters redo every track
    fourth = prepare_corpus(audio, labels, out, jobs=1, progress=False, snap_s=0.15)
    assert {t.name for t in fourth.written} == set(GOOD)
    assert json.loads(str(load(out / "drums_120.npz")["params"]))["snap_s"] == 0.15
    # labels that turn bad: the out-of-date .npz goes, the track fails
    (labels / "drums_120.csv").write_text("start,end,label\n")
    fifth = prepare_corpus(audio, labels, out, jobs=1, progress=False, snap_s=0.15)
    assert [t.name for t in fifth.failed] == ["bad_labels", "broken", "drums_120"]
    assert not (out / "drums_120.npz").exists()


def test_foreign_files_are_never_replaced(corpus, tmp_path, beatnet_models_dir):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST).write_text('{"mine": true}')
    with pytest.raises(FileExistsError, match="not a fractalsync-prepare manifest"):
        prepare_corpus(*corpus, out, jobs=1, progress=False)
    assert (out / MANIFEST).read_text() == '{"mine": true}'
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]
    (out / MANIFEST).unlink()
    (out / "drums_120.npz").write_bytes(b"my own data")
    buf = io.BytesIO()
    np.savez(buf, times=np.zeros(3))
    (out / "waltz_141_nan.npz").write_bytes(buf.getvalue())  # an .npz, not ours
    np.savez(out / "groove_100_stereo.npz", format=np.array("fractalsync-prepare/0"))  # ours
    report = prepare_corpus(*corpus, out, jobs=1, progress=False)
    errors = {t.name: t.error for t in report.failed}
    assert "is not a fractalsync-prepare output" in errors["drums_120"]
    assert "is not a fractalsync-prepare output" in errors["waltz_141_nan"]
    assert (out / "drums_120.npz").read_bytes() == b"my own data"
    assert (out / "waltz_141_nan.npz").read_bytes() == buf.getvalue()
    assert [t.name for t in report.written] == ["groove_100_stereo"]  # an old output: redone
    assert str(load(out / "groove_100_stereo.npz")["format"]) == FORMAT


def test_matching_by_stem(tmp_path):
    audio, labels = tmp_path / "a", tmp_path / "l"
    audio.mkdir()
    labels.mkdir()
    for name in ("song.wav", "song.flac", "one.mp3", "readme.md"):
        (audio / name).write_bytes(b"")
    for name in ("song.csv", "one.json", "one.txt", "other.json", "notes.xml"):
        (labels / name).write_bytes(b"")
    (audio / "dir.wav").mkdir()
    tracks, lonely_audio, lonely_labels = match_tracks(audio, labels)
    assert {k: ([p.name for p in a], [p.name for p in la]) for k, (a, la) in tracks.items()} \
        == {"one": (["one.mp3"], ["one.json", "one.txt"]),
            "song": (["song.flac", "song.wav"], ["song.csv"])}
    assert lonely_audio == [] and lonely_labels == [str(labels / "other.json")]
    report = prepare_corpus(audio, labels, tmp_path / "out", jobs=1, progress=False)
    errors = {t.name: t.error for t in report.failed}
    assert errors == {"one": "ambiguous stem 'one': one.json, one.txt (keep one)",
                      "song": "ambiguous stem 'song': song.flac, song.wav (keep one)"}
    with pytest.raises(NotADirectoryError, match="nope"):
        match_tracks(tmp_path / "nope", labels)


def test_bad_arguments(corpus, tmp_path):
    for kwargs, match in (({"jobs": 0}, "jobs"), ({"jobs": 1.5}, "jobs"),
                          ({"snap_s": -1.0}, "snap_s"), ({"snap_s": float("nan")}, "snap_s"),
                          ({"source": "nope"}, "unknown label source"),
                          ({"model": 7}, "model"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=match):
            prepare_corpus(*corpus, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_missing_cluster_extra_is_named(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ClusterExtraMissing, match=r"\[cluster\] extra"):
        prepare_corpus(*corpus, tmp_path / "out", scheduler="tcp://127.0.0.1:8786")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_only_on_a_terminal(corpus, tmp_path, monkeypatch, capsys,
                                     beatnet_models_dir):
    prepare_corpus(*corpus, tmp_path / "a", jobs=1)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    prepare_corpus(*corpus, tmp_path / "b", jobs=1)
    text = terminal.getvalue()
    assert text.startswith("\r[1/5] ") and "\r[5/5] " in text and text.endswith("\n")
    terminal.truncate(0)
    prepare_corpus(*corpus, tmp_path / "c", jobs=1, progress=False)
    assert terminal.getvalue() == ""


def test_short_audio_gives_unknown_hazard_and_no_steps(tmp_path, beatnet_models_dir):
    """Fewer than 2 tracked beats: btnb NaN before a boundary, y_hazard rows NaN (masked by the
    trainer); a file shorter than one slow step gives S = 0."""
    rng = np.random.default_rng(0)
    (tmp_path / "t.csv").write_text("start,end,label\n0,0.5,intro\n0.5,1,verse\n")
    sf.write(tmp_path / "t.wav", 0.1 * rng.standard_normal(4410).astype(np.float32), 22050)
    d = compute_track("t", str(tmp_path / "t.wav"), str(tmp_path / "t.csv"), PrepareParams())
    assert len(d["times"]) == 2 and len(d["beats"]) < 2
    assert np.isnan(d["btnb"]).all() and np.isnan(d["y_hazard"]).all()
    assert d["y_section"].tolist() == [1, 1]
    sf.write(tmp_path / "t.wav", 0.1 * rng.standard_normal(100).astype(np.float32), 22050)
    d = compute_track("t", str(tmp_path / "t.wav"), str(tmp_path / "t.csv"), PrepareParams())
    assert all(d[k].shape[0] == 0 for k in ("times", "audio_features", "beat_features",
                                            "y_section", "btnb", "y_hazard", "beats"))
    np.testing.assert_array_equal(d["boundaries"], [0.5])
