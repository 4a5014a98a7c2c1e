"""BeatNet -> ONNX converter: graph semantics, manifest, atomic/no-op re-runs, CLI."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from fractalsync_models.atomic_write import write_atomic
from fractalsync_models.contract import validate_onnx_model
from fractalsync_models.crnn_reference import reference_forward
from fractalsync_models.export_beatnet import (
    CONVERTER_VERSION,
    EXPECTED_SHAPES,
    STEP_STATE_INPUTS,
    STEP_STATE_OUTPUTS,
    WHEEL_NAME,
    WHEEL_SHA256,
    ExportError,
    UnpinnedWheelWarning,
    build_model,
    build_step_model,
    export_beatnet,
    fetch_wheel,
    read_weights,
    step_model_path,
)

CLI = Path(sys.executable).parent / "fractalsync-export-beatnet"
# the module itself (the package exports the function export_beatnet under the same name)
export_module = importlib.import_module("fractalsync_models.export_beatnet")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def _random_state_dict(rng, gate_biases: bool = False):
    sd = {k: rng.normal(0.0, 0.3, size=s).astype(np.float32) for k, s in EXPECTED_SHAPES.items()}
    if gate_biases:  # distinct gate biases make any gate-order mistake visible
        offsets = np.repeat([-1.0, 1.0, 0.5, -0.5], 150).astype(np.float32)
        for layer in (0, 1):
            sd[f"lstm.bias_ih_l{layer}"] += offsets
    return sd


def _run_step_model(session, features, h0, c0):
    """Feed ``features (T, 272)`` frame by frame through a step model from state (2, 1, 150)."""
    state = {name: (h0, c0)[j % 2][j // 2][None] for j, name in enumerate(STEP_STATE_INPUTS)}
    probs = []
    for frame in features:
        feeds = {"features": frame[None, None], **state}
        p, *new = session.run(["probs", *STEP_STATE_OUTPUTS], feeds)
        probs.append(p[0, 0])
        state = dict(zip(STEP_STATE_INPUTS, new, strict=True))
    h = np.concatenate([state["h0_l0"], state["h0_l1"]])
    c = np.concatenate([state["c0_l0"], state["c0_l1"]])
    return np.array(probs), h, c


def test_graph_matches_torch_semantics_on_random_weights():
    rng = np.random.default_rng(7)
    sd = _random_state_dict(rng, gate_biases=True)
    model = build_model(sd)
    validate_onnx_model(model)
    features = rng.normal(0.0, 1.0, size=(2, 7, 272)).astype(np.float32)
    h0 = rng.normal(0.0, 0.5, size=(2, 2, 150)).astype(np.float32)
    c0 = rng.normal(0.0, 0.5, size=(2, 2, 150)).astype(np.float32)
    probs, hn, cn = _session(model).run(None, {"features": features, "h0": h0, "c0": c0})
    ref_p, ref_h, ref_c = reference_forward(sd, features, h0, c0)
    assert probs.shape == (2, 7, 3) and hn.shape == (2, 2, 150) and cn.shape == (2, 2, 150)
    np.testing.assert_allclose(probs, ref_p, atol=1e-5)
    np.testing.assert_allclose(hn, ref_h, atol=1e-5)
    np.testing.assert_allclose(cn, ref_c, atol=1e-5)


def test_reference_reproduces_torch_activations(wheel):
    # the numpy reference itself is checked against BeatNet's torch outputs (first 300 frames)
    ref = Path(__file__).parent / "data" / "reference" / "vibe_ace"
    x = np.load(ref / "features.npy")[None, :300]
    z = np.zeros((2, 1, 150))
    probs, _, _ = reference_forward(read_weights(wheel, 2), x, z, z)
    assert np.abs(probs[0] - np.load(ref / "act_m2.npy")[:300]).max() <= 1e-4


def test_step_graph_matches_reference_and_sequence_graph_on_random_weights():
    rng = np.random.default_rng(11)
    sd = _random_state_dict(rng, gate_biases=True)
    step = build_step_model(sd)
    validate_onnx_model(step, "beatnet_crnn_step")
    assert step.ir_version == 8 and step.opset_import[0].version == 17  # what onnxruntime takes
    features = rng.normal(0.0, 1.0, size=(9, 272)).astype(np.float32)
    h0 = rng.normal(0.0, 0.5, size=(2, 1, 150)).astype(np.float32)
    c0 = rng.normal(0.0, 0.5, size=(2, 1, 150)).astype(np.float32)
    probs, hn, cn = _run_step_model(_session(step), features, h0, c0)
    ref_p, ref_h, ref_c = reference_forward(sd, features[None], h0, c0)
    np.testing.assert_allclose(probs, ref_p[0], atol=1e-5)
    np.testing.assert_allclose(hn, ref_h, atol=1e-5)
    np.testing.assert_allclose(cn, ref_c, atol=1e-5)
    seq_p, seq_h, seq_c = _session(build_model(sd)).run(
        None, {"features": features[None], "h0": h0, "c0": c0}
    )
    assert np.abs(probs - seq_p[0]).max() <= 1e-6
    assert max(np.abs(hn - seq_h).max(), np.abs(cn - seq_c).max()) <= 1e-6


def test_step_graph_is_static_without_shape_nodes():
    model = build_step_model(_random_state_dict(np.random.default_rng(3)))
    ops = [n.op_type for n in model.graph.node]
    assert not set(ops) & {"Shape", "Transpose", "Squeeze", "Unsqueeze", "Split", "Concat"}
    assert ops.count("LSTM") == 2
    for n in model.graph.node:
        if n.op_type == "LSTM":
            assert n.output[0] == ""  # the sequence output Y is not computed
    for vi in [*model.graph.input, *model.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        assert all(d.HasField("dim_value") for d in dims), vi.name


def test_dynamic_batch_and_time():
    sd = _random_state_dict(np.random.default_rng(1))
    sess = _session(build_model(sd))
    for b, t in [(1, 1), (3, 2), (1, 40)]:
        x = np.ones((b, t, 272), np.float32)
        z = np.zeros((2, b, 150), np.float32)
        probs, hn, _ = sess.run(None, {"features": x, "h0": z, "c0": z})
        assert probs.shape == (b, t, 3) and hn.shape == (2, b, 150)
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)


# ------------------------------------------------------------ the real models


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_converted_models_and_manifests(beatnet_models_dir, variant):
    path = beatnet_models_dir / f"beatnet_m{variant}.onnx"
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    validate_onnx_model(path)
    assert model.opset_import[0].version == 17
    assert "CC BY 4.0" in model.doc_string and "Heydari" in model.doc_string
    step = beatnet_models_dir / f"beatnet_m{variant}_step.onnx"
    assert step_model_path(path) == step
    step_model = onnx.load(step)
    onnx.checker.check_model(step_model, full_check=True)
    validate_onnx_model(step, "beatnet_crnn_step")
    assert step_model.ir_version == 8 and step_model.opset_import[0].version == 17
    assert "CC BY 4.0" in step_model.doc_string and f"Variant {variant}" in step_model.doc_string
    manifest = json.loads((beatnet_models_dir / f"beatnet_m{variant}.json").read_text())
    assert manifest["model_sha256"] == _sha(path)
    assert manifest["step_model"] == step.name and manifest["step_model_sha256"] == _sha(step)
    assert manifest["source_wheel_sha256"] == WHEEL_SHA256 == _sha(fetch_wheel())
    assert manifest["source_member"] == f"BeatNet/models/model_{variant}_weights.pt"
    assert manifest["converter_version"] == CONVERTER_VERSION
    assert manifest["variant"] == variant


def test_variants_differ(beatnet_models_dir):
    for name in ("beatnet_m{}.onnx", "beatnet_m{}_step.onnx"):
        assert len({_sha(beatnet_models_dir / name.format(v)) for v in (1, 2, 3)}) == 3


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_real_step_model_equals_sequence_model(beatnet_models_dir, variant):
    # both graphs of a variant come from the same weights: one frame at a time through the step
    # model equals the sequence model (and so the torch activations) on a real excerpt
    x = np.load(Path(__file__).parent / "data" / "reference" / "vibe_ace" / "features.npy")[:400]
    z = np.zeros((2, 1, 150), np.float32)
    step = _session(beatnet_models_dir / f"beatnet_m{variant}_step.onnx")
    probs, h, c = _run_step_model(step, x, z, z)
    seq = _session(beatnet_models_dir / f"beatnet_m{variant}.onnx")
    seq_p, seq_h, seq_c = seq.run(None, {"features": x[None], "h0": z, "c0": z})
    assert np.abs(probs - seq_p[0]).max() <= 1e-6
    assert max(np.abs(h - seq_h).max(), np.abs(c - seq_c).max()) <= 1e-6


@pytest.fixture(scope="module")
def wheel(beatnet_models_dir):
    return fetch_wheel()


def test_rerun_is_noop_force_and_tamper_rewrite(wheel, tmp_path):
    out = tmp_path / "models"
    (path,) = export_beatnet(wheel=wheel, models=2, out_dir=out)
    assert path == out / "beatnet_m2.onnx"
    step = out / "beatnet_m2_step.onnx"
    stats = {p: p.stat() for p in (path, step)}
    manifest = out / "beatnet_m2.json"
    assert export_beatnet(wheel=wheel, models=[2], out_dir=out) == [path]
    for p, stat in stats.items():
        assert p.stat().st_ino == stat.st_ino and p.stat().st_mtime_ns == stat.st_mtime_ns
    assert export_beatnet(wheel=wheel, models=2, out_dir=out, force=True) == [path]
    for p, stat in stats.items():
        assert p.stat().st_ino != stat.st_ino  # replaced, not rewritten in place
    good = {p: p.read_bytes() for p in (path, step)}
    for p in (path, step):
        p.write_bytes(good[p][:-10])  # a truncated / tampered model is converted again
        export_beatnet(wheel=wheel, models=2, out_dir=out)
        assert p.read_bytes() == good[p]
    step.unlink()  # a missing step model too
    export_beatnet(wheel=wheel, models=2, out_dir=out)
    assert step.read_bytes() == good[step]
    manifest.write_text("{")  # a broken manifest too
    export_beatnet(wheel=wheel, models=2, out_dir=out)
    assert json.loads(manifest.read_text())["model_sha256"] == _sha(path)
    assert sorted(p.name for p in out.iterdir()) == [
        "beatnet_m2.json",
        "beatnet_m2.onnx",
        "beatnet_m2_step.onnx",
    ]


def test_models_of_the_previous_converter_get_a_step_model(wheel, tmp_path):
    # what a cache made before step models existed looks like: converter 1, no step file
    out = tmp_path / "models"
    (path,) = export_beatnet(wheel=wheel, models=1, out_dir=out)
    step = step_model_path(path)
    step.unlink()
    manifest = out / "beatnet_m1.json"
    info = json.loads(manifest.read_text())
    del info["step_model"], info["step_model_sha256"]
    manifest.write_text(json.dumps({**info, "converter_version": "1"}))
    assert export_beatnet(wheel=wheel, models=1, out_dir=out) == [path]
    validate_onnx_model(step, "beatnet_crnn_step")
    assert json.loads(manifest.read_text())["step_model_sha256"] == _sha(step)


def test_default_wheel_is_not_fetched_when_up_to_date(beatnet_models_dir, monkeypatch):
    # with no wheel given and the models up to date, nothing is downloaded or run
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    paths = export_beatnet()
    assert [p.name for p in paths] == ["beatnet_m1.onnx", "beatnet_m2.onnx", "beatnet_m3.onnx"]
    assert all(step_model_path(p).is_file() for p in paths)


def test_download_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(ExportError, match=r"(?s)could not download BeatNet-1\.1\.3.*--wheel PATH"):
        fetch_wheel(tmp_path / "wheels")
    assert not (tmp_path / "wheels").exists()  # no empty cache directory left behind
    monkeypatch.setenv("FRACTALSYNC_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(ExportError, match="could not download"):
        export_beatnet(models=1)  # no cached wheel and no models: it must download
    assert not (tmp_path / "empty_home").exists()


def test_bad_arguments_and_bad_wheels(tmp_path):
    with pytest.raises(ValueError, match="subset of"):
        export_beatnet(models=(1, 4), out_dir=tmp_path)
    with pytest.raises(ValueError, match="subset of"):
        export_beatnet(models=(), out_dir=tmp_path)
    with pytest.raises(ExportError, match="no such file"):
        export_beatnet(wheel=tmp_path / "absent.whl", out_dir=tmp_path)
    fake = tmp_path / "fake.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("BeatNet/__init__.py", "")
    with pytest.raises(ExportError, match="cannot read BeatNet/models/model_3_weights.pt"):
        with pytest.warns(UnpinnedWheelWarning):
            export_beatnet(wheel=fake, models=3, out_dir=tmp_path / "out", allow_unpinned=True)
    assert not (tmp_path / "out").exists()


def test_wrong_state_dict_is_refused(wheel, tmp_path):
    # a wheel whose model_1_weights.pt is the whole pickled module (model-1.pt), which needs
    # opcodes and globals the restricted reader refuses
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(bad, "w") as dst:
        dst.writestr("BeatNet/models/model_1_weights.pt", src.read("BeatNet/models/model-1.pt"))
    member = "BeatNet/models/model_1_weights.pt"
    with pytest.raises(ValueError, match=f"bad.whl:{member}: .*opcode NEWOBJ"):
        with pytest.warns(UnpinnedWheelWarning):
            export_beatnet(wheel=bad, models=1, out_dir=tmp_path / "out", allow_unpinned=True)
    assert not (tmp_path / "out").exists()


def test_oversized_weights_member_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "MAX_WEIGHTS_BYTES", 1000)
    big = tmp_path / "big.whl"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as z:  # deflates to a few bytes
        z.writestr("BeatNet/models/model_1_weights.pt", b"\0" * 1001)
    with pytest.raises(ExportError, match="model_1_weights.pt: 1001 bytes, over 1000"):
        with pytest.warns(UnpinnedWheelWarning):
            read_weights(big, 1, allow_unpinned=True)


def _modified_wheel(wheel: Path, path: Path) -> Path:
    """A copy of the real wheel plus one member: the same weights under another sha256."""
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info.filename))
        dst.writestr("BeatNet/retrained.txt", "not the published wheel\n")
    return path


def test_unpinned_wheel_is_refused_before_it_is_opened(wheel, tmp_path, monkeypatch):
    modified = _modified_wheel(wheel, tmp_path / WHEEL_NAME)
    sha = _sha(modified)
    opened = []
    real_zipfile = zipfile.ZipFile

    def spy_zipfile(*args, **kwargs):
        opened.append(args)
        return real_zipfile(*args, **kwargs)

    monkeypatch.setattr(zipfile, "ZipFile", spy_zipfile)
    out = tmp_path / "models"
    for convert in (
        lambda: export_beatnet(wheel=modified, models=1, out_dir=out),
        lambda: read_weights(modified, 1),
    ):
        with pytest.raises(ExportError) as exc:
            convert()
        msg = str(exc.value)
        assert str(modified) in msg and sha in msg and WHEEL_SHA256 in msg, msg
        assert "--allow-unpinned" in msg
    assert opened == [] and not out.exists()


def test_allow_unpinned_converts_warns_and_records_the_hash(wheel, tmp_path):
    modified = _modified_wheel(wheel, tmp_path / "retrained.whl")
    out = tmp_path / "models"
    with pytest.warns(UnpinnedWheelWarning, match=f"sha256 {_sha(modified)}.*not the pinned"):
        (path,) = export_beatnet(wheel=modified, models=1, out_dir=out, allow_unpinned=True)
    manifest = json.loads((out / "beatnet_m1.json").read_text())
    assert manifest["source_wheel"] == "retrained.whl"
    assert manifest["source_wheel_sha256"] == _sha(modified) != WHEEL_SHA256
    validate_onnx_model(path)
    # the pinned wheel converts again: the manifest names another source
    stat = path.stat()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the pinned wheel, even with the flag
        export_beatnet(wheel=wheel, models=1, out_dir=out, allow_unpinned=True)
    assert path.stat().st_ino != stat.st_ino
    assert json.loads((out / "beatnet_m1.json").read_text())["source_wheel_sha256"] == WHEEL_SHA256


def test_failed_conversion_leaves_no_directory_or_file(wheel, tmp_path, monkeypatch):
    fake = tmp_path / "fake.whl"
    with zipfile.ZipFile(fake, "w") as z:
        z.writestr("BeatNet/__init__.py", "")
    fresh = tmp_path / "new" / "models"
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for out in (fresh, existing):
        with pytest.raises(ExportError), pytest.warns(UnpinnedWheelWarning):
            export_beatnet(wheel=fake, models="all", out_dir=out, allow_unpinned=True)
    assert not (tmp_path / "new").exists()
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    # a write failing midway (disk full after the first variant) removes what the run created
    written = []

    def write_then_fail(path, data):
        if len(written) == 4:
            raise OSError(28, "No space left on device", str(path))
        written.append(path)
        write_atomic(path, data)

    monkeypatch.setattr(export_module, "write_atomic", write_then_fail)
    for out in (fresh, existing):
        written.clear()
        with pytest.raises(OSError, match="No space left"):
            export_beatnet(wheel=wheel, models=(1, 2), out_dir=out)
        assert len(written) == 4
    assert not (tmp_path / "new").exists()
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]
    assert (existing / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------ CLI


def _cli(*args, env=None):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True, env=env, timeout=300)


def test_cli(wheel, tmp_path):
    out = tmp_path / "cli"
    first = _cli("--wheel", str(wheel), "--model", "3", "--out", str(out))
    assert first.returncode == 0, first.stderr
    files = [out / "beatnet_m3.onnx", out / "beatnet_m3_step.onnx"]
    assert first.stdout.splitlines() == [f"{p}: written" for p in files]
    second = _cli("--wheel", str(wheel), "--model", "3", "--out", str(out))
    assert second.stdout.splitlines() == [f"{p}: up to date" for p in files]
    validate_onnx_model(files[0])
    validate_onnx_model(files[1], "beatnet_crnn_step")


def test_cli_default_output_uses_fractalsync_home(wheel, tmp_path):
    env = {**os.environ, "FRACTALSYNC_HOME": str(tmp_path / "home")}
    res = _cli("--wheel", str(wheel), "--model", "1", env=env)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "home" / "models" / "beatnet_m1.onnx").is_file()
    assert (tmp_path / "home" / "models" / "beatnet_m1_step.onnx").is_file()


def test_cli_wheel_pin(wheel, tmp_path):
    modified = _modified_wheel(wheel, tmp_path / "retrained.whl")
    sha = _sha(modified)
    out = tmp_path / "cli"
    refused = _cli("--wheel", str(modified), "--model", "2", "--out", str(out))
    assert refused.returncode == 1
    for part in (sha, WHEEL_SHA256, str(modified)):
        assert part in refused.stderr
    assert not out.exists()
    allowed = _cli("--wheel", str(modified), "--model", "2", "--out", str(out), "--allow-unpinned")
    assert allowed.returncode == 0, allowed.stderr
    (line,) = allowed.stderr.splitlines()  # one line
    assert "UnpinnedWheelWarning" in line and sha in line
    assert json.loads((out / "beatnet_m2.json").read_text())["source_wheel_sha256"] == sha


def test_cli_errors(tmp_path):
    res = _cli("--model", "4")
    assert res.returncode == 2 and "invalid choice" in res.stderr
    res = _cli("--wheel", str(tmp_path / "absent.whl"), "--out", str(tmp_path))
    assert res.returncode == 1
    assert "error:" in res.stderr and "absent.whl: no such file" in res.stderr
