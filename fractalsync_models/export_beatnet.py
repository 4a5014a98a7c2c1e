"""Convert BeatNet's pretrained CRNN weights to stateful ONNX models, without torch.

Source: the ``BeatNet-1.1.3-py3-none-any.whl`` wheel from the package index (downloaded
with ``pip download --no-deps``, never installed). Its members
``BeatNet/models/model_{1,2,3}_weights.pt`` are read with the restricted torch zip reader
(:mod:`fractalsync_models.torch_zip`). The weights are CC BY 4.0: Heydari, Cwitkowitz,
Duan, "BeatNet: CRNN and particle filtering for online joint beat downbeat and meter
tracking", ISMIR 2021.

Each variant gives two graphs of the same weights, written to ``<out>`` (default
``$FRACTALSYNC_HOME/models``): the sequence model ``beatnet_m{N}.onnx`` (contract
``models.beatnet_crnn``) and the one-frame streaming model ``beatnet_m{N}_step.onnx``
(``models.beatnet_crnn_step``), with a manifest ``beatnet_m{N}.json``. All three are
written atomically, and a re-run is a no-op while source wheel, converter version and both
model files still match the manifest.

Sequence graph (per frame, for every frame of every batch item): features (272) -> Conv1d(1->2,
k=10) -> ReLU -> MaxPool(2) -> flatten channel-major (262) -> Linear(262->150) -> 2-layer LSTM
(hidden 150, state h0/c0 [2,B,150]) -> Linear(150->3) -> softmax, order [beat, downbeat, no-beat].

Step graph: the same operators and weights for exactly one frame, with static shapes and
none of the sequence graph's shape nodes; see :func:`build_step_model`. It reproduces the
sequence graph bit for bit under onnxruntime.

Security: a wheel's sha256 is checked against the pin before the wheel is opened, on every
path (download, cache, ``--wheel``); a wheel that does not match is refused unless the caller
passes ``allow_unpinned`` (``--allow-unpinned``, for a retrained BeatNet), which warns
(:class:`UnpinnedWheelWarning`) and records the wheel's hash in the manifest. The weights are
read by the restricted, bounded reader of :mod:`fractalsync_models.torch_zip`. All models of a
run are built and validated in memory before the first file is written, and a run that fails
while writing removes the files and directories it created, so a failed conversion leaves no
partial output (files it replaced stay replaced: their manifest no longer matches, so the
next run converts them again).

CLI: ``fractalsync-export-beatnet [--wheel PATH] [--allow-unpinned] [--model 1|2|3|all]
[--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .atomic_write import write_atomic
from .cli_errors import add_debug_flag, cli_entry
from .contract import load_contract, validate_onnx_model
from .paths import models_dir, wheels_dir
from .torch_zip import TorchZipError, load_state_dict

CONVERTER_VERSION = "3"
OPSET = 17
BEATNET_VERSION = "1.1.3"
WHEEL_NAME = f"BeatNet-{BEATNET_VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "1ecfa17bdcbe899975a88bdb6efebd6970d846a4f3b6cfd5c6f320647c641c7e"
MAX_WEIGHTS_BYTES = 64 << 20
"""Largest ``model_N_weights.pt`` member read from a wheel (BeatNet's: 1.6 MB each)."""
VARIANTS = (1, 2, 3)
HIDDEN = 150
N_FEATURES = 272
ATTRIBUTION = (
    "BeatNet CRNN weights by Mojtaba Heydari, Frank Cwitkowitz and Zhiyao Duan "
    '("BeatNet", ISMIR 2021), CC BY 4.0, from BeatNet 1.1.3; converted to ONNX by FractalSync.'
)

EXPECTED_SHAPES = {
    "conv1.weight": (2, 1, 10),
    "conv1.bias": (2,),
    "linear0.weight": (HIDDEN, 262),
    "linear0.bias": (HIDDEN,),
    **{
        f"lstm.{kind}_l{layer}": shape
        for layer in (0, 1)
        for kind, shape in (
            ("weight_ih", (4 * HIDDEN, HIDDEN)),
            ("weight_hh", (4 * HIDDEN, HIDDEN)),
            ("bias_ih", (4 * HIDDEN,)),
            ("bias_hh", (4 * HIDDEN,)),
        )
    },
    "linear.weight": (3, HIDDEN),
    "linear.bias": (3,),
}

# PyTorch stacks the LSTM gates as (i, f, g, o); ONNX expects (i, o, f, c).
_TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


class ExportError(RuntimeError):
    """The BeatNet wheel could not be obtained or does not hold the expected weights."""


class UnpinnedWheelWarning(UserWarning):
    """A wheel whose sha256 is not the pinned one is converted (``allow_unpinned``)."""


def model_filename(variant: int) -> str:
    """File name of converted model ``variant`` (1, 2 or 3): ``beatnet_m{variant}.onnx``."""
    return f"beatnet_m{variant}.onnx"


def step_model_path(model_path: str | os.PathLike) -> Path:
    """The step model that belongs to a sequence model: ``<dir>/<stem>_step.onnx``.

    E.g. ``models/beatnet_m1.onnx`` -> ``models/beatnet_m1_step.onnx``.
    """
    path = Path(model_path)
    return path.with_name(f"{path.stem}_step.onnx")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return _sha256_stream(f)


def _sha256_stream(f: BinaryIO) -> str:
    """sha256 (hex) of what is left to read in ``f``."""
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _check_pin(wheel: Path, digest: str, allow_unpinned: bool) -> None:
    """Refuse ``wheel`` (sha256 ``digest``) unless it is the pinned wheel or unpinned is allowed.

    An allowed unpinned wheel gives one :class:`UnpinnedWheelWarning`, attributed to the wheel
    file (so the command line shows it on one line).
    """
    if digest == WHEEL_SHA256:
        return
    if not allow_unpinned:
        raise ExportError(
            f"{wheel}: sha256 {digest} does not match the pinned sha256 {WHEEL_SHA256} of "
            f"{WHEEL_NAME}; refusing to open it. To convert a wheel you trust (e.g. a retrained "
            "BeatNet), pass --allow-unpinned (allow_unpinned=True)."
        )
    warnings.warn_explicit(
        f"converting {wheel.name} with sha256 {digest}, which is not the pinned "
        f"{WHEEL_NAME} ({WHEEL_SHA256}); the manifest records its hash",
        UnpinnedWheelWarning,
        filename=str(wheel),
        lineno=0,
    )


@contextlib.contextmanager
def _open_wheel(wheel: Path, allow_unpinned: bool) -> Iterator[tuple[zipfile.ZipFile, str]]:
    """Yield ``(zip, sha256)`` of ``wheel``, opened as a zip only after :func:`_check_pin`.

    The hash is taken from the same open file the zip is then read from, so the file cannot
    be swapped between the check and the use.
    """
    try:
        f = open(wheel, "rb")
    except OSError as exc:
        raise ExportError(f"wheel {wheel}: cannot open ({exc})") from None
    with f:
        digest = _sha256_stream(f)
        _check_pin(wheel, digest, allow_unpinned)
        f.seek(0)
        try:
            whl = zipfile.ZipFile(f)
        except zipfile.BadZipFile as exc:
            raise ExportError(f"{wheel}: not a wheel ({exc})") from None
        with whl:
            yield whl, digest


@contextlib.contextmanager
def _created_dirs(path: Path) -> Iterator[None]:
    """Create directory ``path`` and its missing parents for the body.

    If the body raises, the directories created here are removed again, innermost first, as
    long as they are empty (a directory that existed before is never touched).
    """
    created = []
    p = path
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        for d in created:
            try:
                d.rmdir()
            except OSError:
                break
        raise


def fetch_wheel(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of the cached BeatNet wheel, downloading it with pip if needed.

    Runs ``<python> -m pip download --no-deps beatnet==1.1.3`` into ``cache_dir``
    (default ``$FRACTALSYNC_HOME/wheels``) and checks the wheel's pinned sha256.
    BeatNet is never installed. Raises :class:`ExportError` if pip fails; a cache directory
    created for a failed download is removed again.
    """
    cache = Path(cache_dir) if cache_dir is not None else wheels_dir()
    target = cache / WHEEL_NAME
    if target.is_file() and _sha256(target) == WHEEL_SHA256:
        return target
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "--quiet", f"beatnet=={BEATNET_VERSION}",
    ]  # fmt: skip
    with _created_dirs(cache), tempfile.TemporaryDirectory(dir=cache, prefix=".download.") as tmp:
        proc = subprocess.run([*cmd, "-d", tmp], capture_output=True, text=True)
        got = Path(tmp) / WHEEL_NAME
        if proc.returncode != 0 or not got.is_file():
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
            raise ExportError(
                f"could not download {WHEEL_NAME} ({' '.join(cmd)} -d {tmp} exited with "
                f"{proc.returncode}):\n{tail}\n"
                "Download it on a machine with network access and pass --wheel PATH."
            )
        digest = _sha256(got)
        if digest != WHEEL_SHA256:
            raise ExportError(
                f"downloaded {WHEEL_NAME} has sha256 {digest}, expected {WHEEL_SHA256}"
            )
        os.replace(got, target)
    return target


def read_weights(
    wheel: str | os.PathLike, variant: int, allow_unpinned: bool = False
) -> dict[str, np.ndarray]:
    """Read ``BeatNet/models/model_{variant}_weights.pt`` from the wheel as float32 arrays.

    The wheel's sha256 must be the pinned one (checked before the wheel is opened) unless
    ``allow_unpinned`` (then a :class:`UnpinnedWheelWarning` is given). Checks the state
    dict's names and shapes; raises :class:`ExportError` on any mismatch and
    :class:`~fractalsync_models.torch_zip.TorchZipError` for a file the reader refuses.
    """
    with _open_wheel(Path(wheel), allow_unpinned) as (whl, _):
        return _read_weights(whl, Path(wheel), variant)


def _read_weights(whl: zipfile.ZipFile, wheel: Path, variant: int) -> dict[str, np.ndarray]:
    """:func:`read_weights` from an opened, pin-checked wheel."""
    member = f"BeatNet/models/model_{variant}_weights.pt"
    try:
        size = whl.getinfo(member).file_size
        if size > MAX_WEIGHTS_BYTES:
            raise ExportError(f"{wheel}:{member}: {size} bytes, over {MAX_WEIGHTS_BYTES}")
        data = whl.read(member)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ExportError(f"{wheel}: cannot read {member} ({exc})") from None
    try:
        state = load_state_dict(data)
    except TorchZipError as exc:
        raise TorchZipError(f"{wheel}:{member}: {exc}") from None
    if set(state) != set(EXPECTED_SHAPES):
        raise ExportError(
            f"{wheel}:{member}: unexpected state dict keys "
            f"(missing {sorted(set(EXPECTED_SHAPES) - set(state))}, "
            f"extra {sorted(set(state) - set(EXPECTED_SHAPES))})"
        )
    for name, shape in EXPECTED_SHAPES.items():
        if state[name].shape != shape or state[name].dtype != np.float32:
            raise ExportError(
                f"{wheel}:{member}: {name} is {state[name].dtype}{state[name].shape}, "
                f"expected float32{shape}"
            )
    return state


def _onnx_gates(w: np.ndarray) -> np.ndarray:
    """Reorder the 4 stacked gate blocks (axis 0) from torch (i,f,g,o) to ONNX (i,o,f,c)."""
    blocks = np.split(w, 4, axis=0)
    return np.concatenate([blocks[k] for k in _TORCH_TO_ONNX_GATES], axis=0)


def _front_inits(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Initializers of the front (conv, linear0) and the output layer, shared by both graphs."""
    return {
        "conv_w": state["conv1.weight"],
        "conv_b": state["conv1.bias"],
        "fc0_w": state["linear0.weight"],
        "fc0_b": state["linear0.bias"],
        "out_w_t": state["linear.weight"].T,
        "out_b": state["linear.bias"],
    }


def _front_nodes(frames: str, emb: str) -> list:
    """``frames [N,1,272]`` -> conv/relu/pool -> flatten [N,262] -> Linear -> ``emb [N,150]``."""
    from onnx import helper

    node = helper.make_node
    return [
        node("Conv", [frames, "conv_w", "conv_b"], ["conv"], kernel_shape=[10]),
        node("Relu", ["conv"], ["conv_relu"]),
        node("MaxPool", ["conv_relu"], ["pool"], kernel_shape=[2], strides=[2]),
        node("Flatten", ["pool"], ["pool_flat"], axis=1),
        node("Gemm", ["pool_flat", "fc0_w", "fc0_b"], [emb], transB=1),
    ]


def _make_model(name: str, nodes: list, inits: dict, inputs: list, outputs: list, doc: str):
    """Assemble, and check, an opset-17 model; ``inputs``/``outputs`` are (name, shape) pairs."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def value(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    initializer = [
        numpy_helper.from_array(
            np.ascontiguousarray(v, v.dtype if v.dtype == np.int64 else np.float32), k
        )
        for k, v in inits.items()
    ]
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[value(*io) for io in inputs],
        outputs=[value(*io) for io in outputs],
        initializer=initializer,
        doc_string=doc,
    )
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),  # 8 for opset 17
        producer_name="fractalsync-export-beatnet",
        producer_version=CONVERTER_VERSION,
        doc_string=doc,
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def build_model(state: dict[str, np.ndarray], doc: str = ATTRIBUTION):
    """Build the stateful BeatNet CRNN ``onnx.ModelProto`` from a checked state dict.

    Inputs ``features [B,T,272]``, ``h0 [2,B,150]``, ``c0 [2,B,150]`` (float32);
    outputs ``probs [B,T,3]`` (softmax, [beat, downbeat, no-beat]), ``hN``, ``cN``.
    """
    from onnx import helper

    inits = {
        **_front_inits(state),
        "frame_shape": np.array([-1, 1, N_FEATURES], np.int64),
        "hidden_dim": np.array([HIDDEN], np.int64),
        "axis1": np.array([1], np.int64),
    }
    for layer in (0, 1):
        inits.update(_lstm_inits(state, layer))
    node = helper.make_node
    nodes = [
        # per-frame front: [B,T,272] -> [B*T,1,272] -> conv/relu/pool -> [B*T,262] -> [B*T,150]
        node("Shape", ["features"], ["bt"], start=0, end=2),
        node("Reshape", ["features", "frame_shape"], ["frames"]),
        *_front_nodes("frames", "emb"),
        node("Concat", ["bt", "hidden_dim"], ["bt_hidden"], axis=0),
        node("Reshape", ["emb", "bt_hidden"], ["emb_bt"]),
        node("Transpose", ["emb_bt"], ["seq0"], perm=[1, 0, 2]),
        # two stacked unidirectional LSTM layers, time-major [T,B,150]
        node("Split", ["h0"], ["h0_l0", "h0_l1"], axis=0),
        node("Split", ["c0"], ["c0_l0", "c0_l1"], axis=0),
    ]
    for layer in (0, 1):
        nodes += [
            _lstm_node(layer, f"seq{layer}", f"h0_l{layer}", f"c0_l{layer}", f"y{layer}",
                       f"hN_l{layer}", f"cN_l{layer}"),
            node("Squeeze", [f"y{layer}", "axis1"], [f"seq{layer + 1}"]),
        ]  # fmt: skip
    nodes += [
        node("MatMul", ["seq2", "out_w_t"], ["logits_nb"]),
        node("Add", ["logits_nb", "out_b"], ["logits"]),
        node("Softmax", ["logits"], ["probs_tb"], axis=-1),
        node("Transpose", ["probs_tb"], ["probs"], perm=[1, 0, 2]),
        node("Concat", ["hN_l0", "hN_l1"], ["hN"], axis=0),
        node("Concat", ["cN_l0", "cN_l1"], ["cN"], axis=0),
    ]
    state_shape = [2, "B", HIDDEN]
    return _make_model(
        "beatnet_crnn",
        nodes,
        inits,
        [("features", ["B", "T", N_FEATURES]), ("h0", state_shape), ("c0", state_shape)],
        [("probs", ["B", "T", 3]), ("hN", state_shape), ("cN", state_shape)],
        doc,
    )


STEP_STATE_INPUTS = ("h0_l0", "c0_l0", "h0_l1", "c0_l1")
STEP_STATE_OUTPUTS = ("hN_l0", "cN_l0", "hN_l1", "cN_l1")
"""The step model's state tensors (h, c per LSTM layer), each [1,1,150]: inputs and outputs."""


def _lstm_inits(state: dict[str, np.ndarray], layer: int) -> dict[str, np.ndarray]:
    """ONNX ``LSTM`` W, R, B initializers of ``layer`` (gates reordered to i, o, f, c)."""
    biases = [_onnx_gates(state[f"lstm.bias_{kind}_l{layer}"]) for kind in ("ih", "hh")]
    return {
        f"lstm{layer}_w": _onnx_gates(state[f"lstm.weight_ih_l{layer}"])[None],
        f"lstm{layer}_r": _onnx_gates(state[f"lstm.weight_hh_l{layer}"])[None],
        f"lstm{layer}_b": np.concatenate(biases)[None],
    }


def _lstm_node(layer: int, x: str, h0: str, c0: str, y: str, hn: str, cn: str):
    from onnx import helper

    return helper.make_node(
        "LSTM",
        [x, f"lstm{layer}_w", f"lstm{layer}_r", f"lstm{layer}_b", "", h0, c0],
        [y, hn, cn],
        hidden_size=HIDDEN,
        direction="forward",
    )


def build_step_model(state: dict[str, np.ndarray], doc: str = ATTRIBUTION):
    """Build the one-frame streaming BeatNet CRNN ``onnx.ModelProto`` from a checked state dict.

    Inputs ``features [1,1,272]`` and, per LSTM layer ``l`` (0, 1), ``h0_l{l}``, ``c0_l{l}``
    ``[1,1,150]``; outputs ``probs [1,1,3]`` and ``hN_l{l}``, ``cN_l{l}`` (float32).

    The same operators and weights as :func:`build_model` (so the same numbers, bit for bit
    under onnxruntime), but every shape is static and nothing moves tensors around: no
    Shape/Reshape-to-[B,T]/Transpose/Split/Squeeze/Concat, the LSTM state comes per layer
    (no Split/Concat of it), each ``LSTM`` node skips its sequence output ``Y``, and layer 0's
    final hidden state ``Y_h [1,1,150]`` is layer 1's input ``X`` (T=1, B=1) as it is.

    Layout choice, measured on the 2-core dev machine (onnxruntime 1.31, one thread): writing
    each LSTM cell as elementary ops (MatMul, Gemm with C, Add, Split, Sigmoid, Tanh, Mul: 12
    nodes per layer, bit-exact too) was slower, 35 us against 33 us per step (session run
    only, median): one ``LSTM`` node at T=1 (about 15.5 us incl. the ~3 us run overhead) costs
    less than a dozen small nodes (17 us).
    """
    from onnx import helper

    node = helper.make_node
    inits = {**_front_inits(state), "x_shape": np.array([1, 1, HIDDEN], np.int64)}
    nodes = [*_front_nodes("features", "emb"), node("Reshape", ["emb", "x_shape"], ["x0"])]
    x = "x0"
    for layer in (0, 1):
        inits.update(_lstm_inits(state, layer))
        h0, c0 = STEP_STATE_INPUTS[2 * layer : 2 * layer + 2]
        hn, cn = STEP_STATE_OUTPUTS[2 * layer : 2 * layer + 2]
        nodes.append(_lstm_node(layer, x, h0, c0, "", hn, cn))
        x = hn
    nodes += [
        node("MatMul", [x, "out_w_t"], ["logits_nb"]),
        node("Add", ["logits_nb", "out_b"], ["logits"]),
        node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    state_shape = [1, 1, HIDDEN]
    return _make_model(
        "beatnet_crnn_step",
        nodes,
        inits,
        [("features", [1, 1, N_FEATURES]), *[(n, state_shape) for n in STEP_STATE_INPUTS]],
        [("probs", [1, 1, 3]), *[(n, state_shape) for n in STEP_STATE_OUTPUTS]],
        doc,
    )


def _parse_variants(models) -> tuple[int, ...]:
    if models == "all":
        return VARIANTS
    items = (models,) if isinstance(models, (int, str)) else tuple(models)
    try:
        variants = tuple(int(m) for m in items)
    except (TypeError, ValueError):
        variants = ()
    if not variants or any(v not in VARIANTS for v in variants):
        raise ValueError(f"models must be a subset of {VARIANTS} or 'all', got {models!r}")
    return tuple(dict.fromkeys(variants))


def _manifest_ok(manifest: Path, model: Path, wheel_sha: str) -> bool:
    """Whether ``manifest`` vouches for ``model`` and its step model (both present and matching)."""
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    step = step_model_path(model)
    return (
        isinstance(info, dict)
        and info.get("converter_version") == CONVERTER_VERSION
        and info.get("source_wheel_sha256") == wheel_sha
        and model.is_file()
        and info.get("model_sha256") == _sha256(model)
        and step.is_file()
        and info.get("step_model_sha256") == _sha256(step)
    )


def _export(
    wheel: str | os.PathLike | None,
    models: int | str | Iterable[int],
    out_dir: str | os.PathLike | None,
    force: bool,
    allow_unpinned: bool = False,
) -> list[tuple[Path, bool]]:
    variants = _parse_variants(models)
    out = Path(out_dir) if out_dir is not None else models_dir()
    wheel_path = Path(wheel) if wheel is not None else None
    if wheel_path is not None and not wheel_path.is_file():
        raise ExportError(f"wheel {wheel_path}: no such file")
    with contextlib.ExitStack() as stack:
        if wheel_path is not None:
            whl, wheel_sha = stack.enter_context(_open_wheel(wheel_path, allow_unpinned))
        else:
            whl, wheel_sha = None, WHEEL_SHA256
        todo = [
            v
            for v in variants
            if force
            or not _manifest_ok(out / f"beatnet_m{v}.json", out / model_filename(v), wheel_sha)
        ]
        if todo and whl is None:
            wheel_path = fetch_wheel()
            whl, wheel_sha = stack.enter_context(_open_wheel(wheel_path, False))
        files = _convert(whl, wheel_path, wheel_sha, todo, out) if todo else {}
    _write_all(out, files)
    return [(out / model_filename(v), v in todo) for v in variants]


def _convert(
    whl: zipfile.ZipFile, wheel: Path, wheel_sha: str, variants: list[int], out: Path
) -> dict[Path, bytes | str]:
    """Build and validate the files of ``variants`` in memory: ``{path: content}``.

    Per variant: sequence model, step model, then the manifest that vouches for both.
    """
    contract = load_contract()
    files: dict[Path, bytes | str] = {}
    for v in variants:
        state = _read_weights(whl, wheel, v)
        doc = f"{ATTRIBUTION} Variant {v} (model_{v}_weights.pt)."
        target = out / model_filename(v)
        step_target = step_model_path(target)
        for path, build, name in (
            (target, build_model, "beatnet_crnn"),
            (step_target, build_step_model, "beatnet_crnn_step"),
        ):
            model = build(state, doc=doc)
            validate_onnx_model(model, name, contract)
            files[path] = model.SerializeToString()
        manifest = {
            "model": target.name,
            "step_model": step_target.name,
            "variant": v,
            "source_wheel": wheel.name,
            "source_wheel_sha256": wheel_sha,
            "source_member": f"BeatNet/models/model_{v}_weights.pt",
            "model_sha256": hashlib.sha256(files[target]).hexdigest(),
            "step_model_sha256": hashlib.sha256(files[step_target]).hexdigest(),
            "converter_version": CONVERTER_VERSION,
            "opset": OPSET,
            "contract_version": contract["version"],
            "license": ATTRIBUTION,
        }
        files[out / f"beatnet_m{v}.json"] = json.dumps(manifest, indent=2) + "\n"
    return files


def _write_all(out: Path, files: dict[Path, bytes | str]) -> None:
    """Write ``files`` atomically, in order, creating ``out`` only if there is something to write.

    If a write fails, the files this call created and the directories it made are removed
    (files that existed before stay: replaced ones keep their new content).
    """
    if not files:
        return
    with _created_dirs(out):
        created = []
        try:
            for path, data in files.items():
                is_new = not path.exists()
                write_atomic(path, data)
                if is_new:
                    created.append(path)
        except BaseException:
            for path in created:
                path.unlink(missing_ok=True)
            raise


def export_beatnet(
    wheel: str | os.PathLike | None = None,
    models: int | str | Iterable[int] = VARIANTS,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    allow_unpinned: bool = False,
) -> list[Path]:
    """Convert BeatNet CRNN variants to ONNX; return the sequence model paths (``models`` order).

    Each variant's step model is written next to its sequence model (:func:`step_model_path`).
    A failed conversion leaves no new file or directory behind.

    Parameters
    ----------
    wheel : path of ``BeatNet-1.1.3-py3-none-any.whl``; default: download it with pip into
        ``$FRACTALSYNC_HOME/wheels`` (only when a model actually needs converting). Its
        sha256 must be the pinned :data:`WHEEL_SHA256`; it is checked before the wheel is
        opened, and a mismatch raises :class:`ExportError`.
    models : variants to convert, a subset of (1, 2, 3), a single int, or ``"all"``.
    out_dir : output directory; default ``$FRACTALSYNC_HOME/models``.
    force : convert even if the manifest says the model is up to date.
    allow_unpinned : convert a ``wheel`` whose sha256 is not the pinned one (e.g. a retrained
        BeatNet you trust), with an :class:`UnpinnedWheelWarning`; the manifest records its
        hash. Its weights still go through the restricted, bounded reader.
    """
    return [path for path, _ in _export(wheel, models, out_dir, force, allow_unpinned)]


@cli_entry("fractalsync-export-beatnet", expected=(ExportError,))
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point ``fractalsync-export-beatnet``; returns the exit status (errors:
    :mod:`fractalsync_models.cli_errors`)."""
    parser = argparse.ArgumentParser(
        prog="fractalsync-export-beatnet",
        description="Convert BeatNet's pretrained CRNN weights (CC BY 4.0) to ONNX, without torch.",
    )
    parser.add_argument("--wheel", help=f"local {WHEEL_NAME} (default: pip download into cache)")
    parser.add_argument(
        "--model", default="all", choices=["1", "2", "3", "all"], help="variant (default: all)"
    )
    parser.add_argument("--out", help="output directory (default: $FRACTALSYNC_HOME/models)")
    parser.add_argument("--force", action="store_true", help="convert even if up to date")
    parser.add_argument(
        "--allow-unpinned",
        action="store_true",
        help="convert a --wheel whose sha256 is not the pinned one (e.g. a retrained BeatNet "
        "you trust): warns and records its hash in the manifest",
    )
    add_debug_flag(parser)
    args = parser.parse_args(argv)
    results = _export(args.wheel, args.model, args.out, args.force, args.allow_unpinned)
    for path, written in results:
        for p in (path, step_model_path(path)):
            print(f"{p}: {'written' if written else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
