"""Anticipator training: losses against hand-computed values, the robustness noise, a tiny
training run, and the ONNX export (IR 8, contract, onnxruntime parity)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from fractalsync_models.anticipator import Anticipator  # noqa: E402
from fractalsync_models.contract import (  # noqa: E402
    ContractError,
    load_contract,
    validate_onnx_model,
)
from fractalsync_models.training.train_anticipator import (  # noqa: E402
    Track,
    TrainConfig,
    augment_beats,
    auroc,
    beats_since_boundary,
    delay_beats,
    evaluate,
    export_onnx,
    fit_phrase_prior,
    hazard_loss,
    load_track,
    section_loss,
    smoothness_loss,
    song_of,
    split_tracks,
    tempo_octave_error,
    train,
)
from fractalsync_models.training.train_anticipator import main as train_main  # noqa: E402

HORIZONS = (1, 2, 4, 8, 16)


def synthetic_track(seed: int, steps: int = 240, spb: float = 0.5, section_s: float = 4.0):
    """A track of the prepared layout whose section (cycling through the 8 labels every
    ``section_s`` seconds) is written plainly in audio features 0..7, with exact beat features
    and hazard targets."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps) / 12.5
    phase = (t / spb) % 1.0
    beat = np.stack(
        [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase), np.full(steps, np.log(spb)),
         np.full(steps, 0.9), (phase < 0.2).astype(float)], axis=1,
    ).astype(np.float32)  # fmt: skip
    section = (t // section_s).astype(np.int64) % 8
    audio = (rng.random((steps, 272)) * 0.1).astype(np.float32)
    audio[:, :8] += np.eye(8, dtype=np.float32)[section]
    bounds = np.arange(section_s, t[-1], section_s)
    beats = np.arange(0.0, t[-1] + 1.0, spb)
    nxt = np.searchsorted(bounds, t, side="right")
    padded = np.append(bounds, np.inf)  # no next boundary: infinitely many beats away
    btnb = (padded[nxt] - t) / spb
    y_hazard = np.stack([(btnb > 0) & (btnb <= h) for h in HORIZONS], 1).astype(np.float32)
    return Track(f"song_{seed:05d}", audio, beat, section, y_hazard, t, beats, bounds)


# --------------------------------------------------------------------------- losses


def test_section_loss_hand_computed():
    logits = torch.zeros(1, 3, 8)
    logits[0, 0, 1] = math.log(8.0)  # p(1) = 8 / 15
    y = torch.tensor([[1, -1, 0]])  # second step ignored; third: uniform, p(0) = 1/8
    expected = (-math.log(8 / 15) - math.log(1 / 8)) / 2
    assert section_loss(logits, y).item() == pytest.approx(expected, rel=1e-6)
    assert section_loss(logits, torch.full((1, 3), -1)).item() == 0.0


def test_hazard_loss_hand_computed_per_horizon():
    logits = torch.zeros(1, 2, 5)  # sigmoid 0.5 everywhere: each term is ln 2 (x pos_weight)
    y = torch.tensor([[[1, 0, 1, float("nan"), 0], [0, 0, 1, float("nan"), 1]]])
    pw = torch.tensor([3.0, 3.0, 2.0, 5.0, 1.0])
    got = hazard_loss(logits, y, pw).numpy()
    ln2 = math.log(2.0)
    expected = [(3 * ln2 + ln2) / 2, ln2, 2 * ln2, 0.0, ln2]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # a logit of 2 against target 1 without weight: -ln sigmoid(2)
    one = hazard_loss(torch.full((1, 1, 5), 2.0), torch.ones(1, 1, 5)).numpy()
    np.testing.assert_allclose(one, [math.log1p(math.exp(-2.0))] * 5, rtol=1e-6)


def test_smoothness_loss_hand_computed():
    logits = torch.zeros(1, 3, 8)
    logits[0, 1, 0] = math.log(7.0)  # step 1: p = [1/2, 1/14 x 7]; steps 0, 2 uniform
    mask = torch.tensor([[True, True, True]])
    # TV(uniform, step 1) = 0.5 * (3/8 + 7 * (1/8 - 1/14)) = 0.375 for both pairs
    assert smoothness_loss(logits, mask).item() == pytest.approx(0.375, rel=1e-6)
    # the pair (1, 2) leaves the track: only (0, 1) counts
    assert smoothness_loss(logits, torch.tensor([[True, True, False]])).item() == pytest.approx(
        0.375, rel=1e-6
    )
    assert smoothness_loss(torch.zeros(1, 4, 8), torch.ones(1, 4, dtype=bool)).item() == 0.0
    assert smoothness_loss(logits, torch.tensor([[True, False, False]])).item() == 0.0


# --------------------------------------------------------------------------- noise


def _beats(phases, spb=0.5):
    p = np.asarray(phases, float)
    n = len(p)
    return np.stack(
        [np.sin(2 * np.pi * p), np.cos(2 * np.pi * p), np.full(n, np.log(spb)),
         np.full(n, 0.8), np.zeros(n)], axis=1,
    ).astype(np.float32)  # fmt: skip


def test_delay_beats_repeats_the_first_row():
    b = _beats([0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(delay_beats(b, 2), b[[0, 0, 0, 1]])
    np.testing.assert_array_equal(delay_beats(b, 0), b)
    assert delay_beats(b[:0], 1).shape == (0, 5)


def test_tempo_octave_error_remaps_phase_and_spb():
    cycles = np.arange(12) * 0.25  # three beats, a quarter beat per step
    b = _beats(cycles % 1.0)
    half = tempo_octave_error(b, 2.0, 0, 12)
    np.testing.assert_allclose(half, _beats((cycles / 2) % 1.0, spb=1.0), atol=1e-6)
    odd = tempo_octave_error(b, 2.0, 0, 12, offset=1)
    np.testing.assert_allclose(odd, _beats(((cycles + 1) / 2) % 1.0, spb=1.0), atol=1e-6)
    double = tempo_octave_error(b, 0.5, 4, 8)
    np.testing.assert_allclose(double[4:8], _beats((cycles[4:8] * 2) % 1.0, spb=0.25),
                               atol=1e-6)
    np.testing.assert_array_equal(double[:4], b[:4])
    np.testing.assert_array_equal(double[8:], b[8:])
    with pytest.raises(ValueError, match="factor"):
        tempo_octave_error(b, 3.0, 0, 12)


def test_augment_beats_keeps_the_feature_ranges():
    b = synthetic_track(0, steps=600).beat
    np.testing.assert_array_equal(augment_beats(b, np.random.default_rng(0), p=0.0), b)
    saw_drop = False
    for seed in range(20):
        out = augment_beats(b, np.random.default_rng(seed))
        assert out.shape == b.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert (out[:, 3:5] >= 0).all() and (out[:, 3:5] <= 1).all()
        dropped = ~out.any(axis=1)
        saw_drop |= bool(dropped.any())
    assert saw_drop


# --------------------------------------------------------------------------- data, metrics


def test_load_track_reads_and_refuses(tmp_path):
    tr = synthetic_track(3, steps=50)
    good = tmp_path / "song_00003.npz"
    np.savez(good, times=tr.times, audio_features=tr.audio, beat_features=tr.beat,
             y_section=tr.y_section.astype(np.int16), y_hazard=tr.y_hazard, beats=tr.beats,
             boundaries=tr.boundaries)  # fmt: skip
    back = load_track(good)
    assert back.seed == 3 and back.audio.shape == (50, 272)
    np.testing.assert_array_equal(back.y_section, tr.y_section)
    bad = tmp_path / "bad.npz"
    np.savez(bad, times=tr.times, audio_features=tr.audio[:, :100], beat_features=tr.beat,
             y_section=tr.y_section, y_hazard=tr.y_hazard)  # fmt: skip
    with pytest.raises(ValueError, match="audio_features has shape"):
        load_track(bad)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        load_track(junk)


def test_split_and_metrics_hand_cases():
    tracks = [synthetic_track(i, steps=20) for i in range(5)]
    train_set, val, test = split_tracks(tracks, 2, 1)
    assert [t.seed for t in train_set] == [0, 1] and val[0].seed == 2
    assert [t.seed for t in test] == [3, 4]
    with pytest.raises(ValueError, match="hold out"):
        split_tracks(tracks, 4, 1)
    # renditions of one song (a letter suffix after its number) stay in one set
    gm = [synthetic_track(i, steps=20) for i in range(5)]
    for t in gm:
        t.name += "_gm"
    train_set, val, test = split_tracks(tracks + gm, 2, 1)
    assert sorted(t.name for t in test) == ["song_00003", "song_00003_gm", "song_00004",
                                            "song_00004_gm"]
    assert [t.name for t in val] == ["song_00002", "song_00002_gm"] and len(train_set) == 4
    assert gm[3].seed == 3 and gm[3].song == "song_00003"
    assert song_of("my_song") == "my_song" and song_of("take2_live") == "take2"
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == 0.5
    assert math.isnan(auroc(np.array([0.1, 0.2]), np.array([1, 1])))
    tr = synthetic_track(0, steps=20)  # steps every 0.08 s; beats at 0, 0.5, 1.0, 1.5, ...
    tr.boundaries = np.array([0.5])
    since = beats_since_boundary(tr)
    # before the boundary: the beat at 0 s since the start; from 0.5 s: beats after 0.5 s
    np.testing.assert_array_equal(since[:7], [1] * 7)  # t = 0 .. 0.48 s
    assert since[7] == 0 and since[12] == 0  # t = 0.56, 0.96 s
    assert since[13] == 1 and since[19] == 2  # t = 1.04, 1.52 s


def test_tiny_training_reduces_the_loss_and_learns_sections():
    tracks = [synthetic_track(i) for i in range(8)]
    train_set, _, test = split_tracks(tracks, 2, 0)
    config = TrainConfig(epochs=25, batch=3, window=40, lr=1e-2, seed=1, threads=1)
    model, history = train(train_set, config, log=lambda s: None)
    assert len(history) == 25
    assert history[-1]["total"] < 0.85 * history[0]["total"]
    assert history[-1]["section"] < history[0]["section"]
    metrics = evaluate(model, test, fit_phrase_prior(train_set))
    assert metrics["section_accuracy"] > metrics["majority_accuracy"] + 0.2
    assert len(metrics["hazard_auroc"]) == len(metrics["prior_auroc"]) == 5


def test_export_is_ir8_contract_checked_and_matches_torch(tmp_path):
    tracks = [synthetic_track(i, steps=80) for i in range(3)]
    model, _ = train(tracks, TrainConfig(epochs=1, batch=3, window=40, threads=1),
                     log=lambda s: None)
    data = export_onnx(model)
    proto = onnx.load_from_string(data)
    assert proto.ir_version == 8
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) <= 17
    onnx.checker.check_model(proto, full_check=True)
    path = tmp_path / "a.onnx"
    path.write_bytes(data)
    validate_onnx_model(path, "anticipator")
    assert len(data) <= 1 << 20
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    for b, t in ((1, 1), (3, 50)):
        a = rng.random((b, t, 272)).astype(np.float32)
        bf = rng.standard_normal((b, t, 5)).astype(np.float32)
        s = (rng.standard_normal((b, 128)) * 0.3).astype(np.float32)
        got = session.run(None, {"audio_features": a, "beat_features": bf, "state_in": s})
        with torch.no_grad():
            want = model(torch.from_numpy(a), torch.from_numpy(bf), torch.from_numpy(s))
        for g, w in zip(got, want, strict=True):
            assert g.shape == tuple(w.shape)
            assert np.abs(g - w.numpy()).max() <= 1e-5


def _contract_with_state(size: int) -> dict:
    """The packaged contract with the anticipator's state_in/state_out [B, size]."""
    contract = copy.deepcopy(load_contract())
    spec = contract["models"]["anticipator"]
    for t in spec["inputs"] + spec["outputs"]:
        if t["name"] in ("state_in", "state_out"):
            t["shape"] = ["B", size]
    return contract


def test_a_smaller_network_exports_and_runs_in_the_step_kernel(tmp_path):
    # hidden 12 (state 16), proj 8, head 8, more weight on the 8-beat horizon: the export is
    # checked against a contract with that state size, and the runtime (graph and numba step
    # kernel) loads it with the same contract; step == run within 1e-5
    tracks = [synthetic_track(i, steps=80) for i in range(3)]
    config = TrainConfig(epochs=2, batch=3, window=40, threads=1, hidden=12, proj=8, head=8,
                         horizon_weights=(1.0, 1.0, 1.0, 3.0, 1.0))
    model, history = train(tracks, config, log=lambda s: None)
    assert len(history) == 2 and all(math.isfinite(h["total"]) for h in history)
    contract = _contract_with_state(16)
    with pytest.raises(ContractError, match="state_in"):
        export_onnx(model)  # the packaged contract's state is 128 floats
    path = tmp_path / "small.onnx"
    path.write_bytes(export_onnx(model, contract))
    runtime = Anticipator(path, contract=contract)
    assert runtime.state_size == 16 and runtime.state.shape == (16,)
    rng = np.random.default_rng(3)
    audio = rng.random((60, 272)).astype(np.float32)
    beat = tracks[0].beat[:60]
    sec, haz, state = runtime.run(audio, beat)
    for i in range(60):
        s, h = runtime.step(audio[i], beat[i])
        np.testing.assert_allclose(s, sec[i], atol=1e-5)
        np.testing.assert_allclose(h, haz[i], atol=1e-5)
    np.testing.assert_allclose(runtime.state, state, atol=1e-5)
    with pytest.raises(ContractError, match=r"state_in.*expected 20, got 16"):
        Anticipator(path, contract=_contract_with_state(20))


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, -1.0, 1.0, 1.0, 1.0), (0.0,) * 5])
def test_bad_horizon_weights_are_refused(weights):
    tracks = [synthetic_track(0, steps=40)]
    with pytest.raises(ValueError, match="horizon_weights"):
        train(tracks, TrainConfig(epochs=1, batch=1, window=40, horizon_weights=weights),
              log=lambda s: None)


def test_cli_refuses_a_width_the_contract_cannot_carry(tmp_path, capsys):
    # checked before any corpus is built or read: the state is hidden + 4 floats
    wrong = load_contract()["models"]["anticipator"]["inputs"][2]["shape"][-1] - 4 + 1
    code = train_main(["--corpus", str(tmp_path), "--out", str(tmp_path / "m.onnx"),
                       "--hidden", str(wrong)])
    assert code != 0
    assert f"--hidden {wrong}: the contract's state_in holds" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
