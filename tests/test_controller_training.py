"""The trained Julia controller's training path: corpus frames from the live path, conditioning,
a tiny deterministic training run, ONNX export (parity with torch over a sequence with the state
carried, the contract) and the shipped model file (examples/julia/controller_training)."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="controller training needs torch ([train])")

from examples.julia.controller_training import data as D  # noqa: E402
from examples.julia.controller_training.model import STATE, ControllerNet  # noqa: E402
from examples.julia.controller_training.proxy import (  # noqa: E402
    analytic_controls,
    model_controls,
    proxy_metrics,
)
from examples.julia.controller_training.train import (  # noqa: E402
    LOSS_NAMES,
    TrainConfig,
    export_onnx,
    parity_error,
    teacher_probability,
    train,
)
from fractalsync_models.contract import validate_onnx_model  # noqa: E402
from fractalsync_models.training.song_generator import generate_song  # noqa: E402
from fractalsync_tracking.slow_state import SECTION_LABELS  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "fractalsync_models" / "models"


@pytest.fixture(scope="module")
def song():
    """A 30 s generated song through the live path (CausalStream, structure model)."""
    s = generate_song(4242, sample_rate=D.RATE, duration_s=30.0)
    return s, D.song_frames(s.audio, D.RATE, "song_004242", s.beats, s.downbeats, s.sections)


def test_song_frames_are_the_runtime_inputs_and_the_truth(song):
    s, f = song
    n = int(np.floor(s.audio.size / D.RATE * D.FPS))
    assert len(f) == n and f.has_sections
    for a, width in ((f.micro, 7), (f.beat, 5), (f.sect_pred, 8), (f.haz_pred, 5),
                     (f.sect_true, 8), (f.haz_true, 5)):
        assert a.shape == (n, width) and a.dtype == np.float32 and np.all(np.isfinite(a))
    # beat features: a unit phase vector; the anticipator's probabilities sum to 1
    assert np.allclose(f.beat[:, 0] ** 2 + f.beat[:, 1] ** 2, 1.0, atol=1e-5)
    assert np.allclose(f.sect_pred.sum(1), 1.0, atol=1e-4)
    # true beats: 1 at downbeat frames, 0.8 at the others
    down = np.round(s.downbeats * D.FPS).astype(int)
    other = np.setdiff1d(np.round(s.beats * D.FPS).astype(int), down)
    assert np.all(f.beat_amp[down[down < n]] == 1.0)
    assert np.all(f.beat_amp[other[other < n]] == np.float32(0.8))
    assert np.count_nonzero(f.beat_amp) == np.count_nonzero(np.round(s.beats * D.FPS) < n)
    # the true section one-hot and the labels agree with the song's sections
    t = 10.0
    seg = next(x for x in s.sections if x.start <= t < x.end)
    k = int(t * D.FPS)
    assert f.label[k] == SECTION_LABELS.index(seg.label) and f.sect_true[k, f.label[k]] == 1.0
    # a jump is allowed around every downbeat
    assert np.all(f.jump[down[down < n]])
    # hazard truth: the horizon of 16 beats covers the 1-beat one
    assert np.all(f.haz_true[:, 4] >= f.haz_true[:, 0])


def test_conditioning_teacher_prediction_and_noise(song):
    _, f = song
    rng = np.random.default_rng(1)
    s, h = D.conditioning(f, 100, 400, rng, teacher=True, noise=0.0)
    assert np.array_equal(s, f.sect_true[100:400]) and np.array_equal(h, f.haz_true[100:400])
    s, h = D.conditioning(f, 100, 400, rng, teacher=False, noise=0.0)
    assert np.array_equal(s, f.sect_pred[100:400]) and np.array_equal(h, f.haz_pred[100:400])
    for seed in range(20):
        s, h = D.conditioning(f, 100, 400, np.random.default_rng(seed), teacher=True)
        assert s.shape == (300, 8) and h.shape == (300, 5)
        assert np.allclose(s.sum(1), 1.0, atol=1e-5) and np.all((h >= 0) & (h <= 1))
        # noisy but near the teacher: the delayed one-hot stays the largest mostly
        agree = np.mean(s.argmax(1) == f.sect_true[100:400].argmax(1))
        assert agree > 0.8


def test_sequence_and_frame_by_frame_agree():
    torch.manual_seed(3)
    model = ControllerNet(np.full(7, -20.0), np.full(7, 10.0)).eval()
    b, t = 2, 90
    phase = torch.rand(b, t) * 6.28
    seq = (torch.randn(b, t, 7) * 10 - 20,
           torch.stack([phase.sin(), phase.cos(), torch.full((b, t), -0.6), torch.rand(b, t),
                        (torch.rand(b, t) > 0.5).float()], -1),
           torch.softmax(torch.randn(b, t, 8), -1), torch.rand(b, t, 5))
    with torch.no_grad():
        whole = model.sequence(*seq)
        state = torch.zeros(b, STATE)
        frames = []
        for k in range(t):
            c, state = model(*(x[:, k] for x in seq), state)
            frames.append(c)
    assert torch.allclose(torch.stack(frames, 1), whole["control"], atol=1e-5)
    assert torch.allclose(state, whole["state"], atol=1e-5)
    lo = torch.tensor([-2, -2, 0.5, -np.pi, 0, 0, 0, 0])
    hi = torch.tensor([2, 2, 3, np.pi, 1, 1, 2, 1])
    assert torch.all(whole["control"] >= lo) and torch.all(whole["control"] <= hi)


def test_teacher_schedule():
    cfg = TrainConfig(epochs=12, teacher=0.25)
    assert [teacher_probability(e, cfg) for e in range(12)] == pytest.approx(
        [1, 1, 1, 1, 2 / 3, 1 / 3, 0, 0, 0, 0, 0, 0])


@pytest.fixture(scope="module")
def trained(song):
    cfg = TrainConfig(epochs=2, batch=2, crop=600, threads=1)
    return train([song[1]], cfg, log=lambda s: None), cfg


def test_tiny_training_run_logs_every_loss_and_is_deterministic(song, trained):
    (model, history), cfg = trained
    assert len(history) == 2
    for row in history:
        for name in LOSS_NAMES:
            assert np.isfinite(row[name]) and row[name] >= 0
    assert history[0]["section"] > 0  # the song has sections: the section loss is active
    again, _ = train([song[1]], cfg, log=lambda s: None)
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(),
                              strict=True):
        assert torch.equal(a, b), k


def test_export_parity_and_contract(song, trained, tmp_path):
    (model, _), _ = trained
    data = export_onnx(model)
    path = tmp_path / "controller.onnx"
    path.write_bytes(data)
    proto = validate_onnx_model(path, "controller")
    assert proto.ir_version == 8
    # parity over the real song's inputs, 300 frames, the state carried from zeros
    _, f = song
    seq = tuple(torch.from_numpy(a[None, 200:500]) for a in (f.micro, f.beat, f.sect_pred,
                                                               f.haz_pred))
    assert parity_error(data, model, seq) <= 1e-5
    # and the export is byte-identical for the same weights
    assert export_onnx(model) == data


def test_proxy_metrics_of_both_controllers(song, trained):
    (model, _), _ = trained
    _, f = song
    for controls in (analytic_controls(f), model_controls(model, f)):
        assert controls.shape == (len(f), 8) and np.all(np.isfinite(controls))
        m = proxy_metrics(controls, f)
        assert 0 <= m["pulse_hit"] <= 1 and m["jerk_c"] >= 0 and m["contrast"] >= 0


def test_shipped_model_file_matches_its_card():
    onnx_path = MODELS / "controller_v1.onnx"
    card = json.loads((MODELS / "controller_v1.json").read_text())
    data = onnx_path.read_bytes()
    assert len(data) <= 1_000_000 and card["bytes"] == len(data)
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert validate_onnx_model(onnx_path, "controller").ir_version == 8
    assert set(card["final_losses"]) == set(LOSS_NAMES)
    assert card["command"].startswith(".venv/bin/python -m examples.julia.controller_training")
