"""The versioned FractalSync contract (``contracts/v1.json``): loading and validation.

The contract fixes the clocks, the BeatNet front end and the tensors (names, shapes,
dtypes) of every model. ``load_contract`` parses and checks the JSON file,
``validate_onnx_model`` checks an ONNX model's graph inputs/outputs against it.
Every problem is reported as a :class:`ContractError` whose message names the field,
e.g. ``models.beatnet_crnn.inputs[0].shape[2]: ...``.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
from pathlib import Path
from typing import Any

SUPPORTED_VERSIONS = (1,)
DEFAULT_CONTRACT = "contracts/v1.json"
DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")


class ContractError(ValueError):
    """The contract file, or a model checked against it, is invalid. The message names the field."""


def load_contract(path: str | os.PathLike | None = None) -> dict:
    """Load and validate a contract JSON file.

    Parameters
    ----------
    path : path of a contract JSON file; default: the packaged ``contracts/v1.json``.

    Returns the contract as a plain ``dict``. Raises :class:`ContractError` (naming the
    field) if it is malformed, ``FileNotFoundError`` if ``path`` does not exist.
    """
    if path is None:
        where = f"fractalsync_models/{DEFAULT_CONTRACT}"
        text = importlib.resources.files("fractalsync_models").joinpath(DEFAULT_CONTRACT).read_text(
            encoding="utf-8"
        )
    else:
        where = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"{where}: not UTF-8 text ({exc})") from None
    try:
        contract = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ContractError(f"{where}: not valid JSON ({exc})") from None
    validate_contract(contract)
    return contract


# --------------------------------------------------------------------------- contract structure


def _get(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise ContractError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise ContractError(f"{where}.{key}: missing" if where else f"{key}: missing")
    return obj[key]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _pos_int(obj: Any, key: str, where: str) -> int:
    v = _get(obj, key, where)
    if not _is_int(v) or v <= 0:
        raise ContractError(f"{where}.{key}: expected a positive integer, got {v!r}")
    return v


def _pos_num(obj: Any, key: str, where: str) -> float:
    v = _get(obj, key, where)
    if not (_is_int(v) or isinstance(v, float)) or not math.isfinite(v) or v <= 0:
        raise ContractError(f"{where}.{key}: expected a positive number, got {v!r}")
    return float(v)


def _names(obj: Any, key: str, where: str) -> list[str]:
    v = _get(obj, key, where)
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s for s in v):
        raise ContractError(f"{where}.{key}: expected a non-empty list of strings, got {v!r}")
    if len(set(v)) != len(v):
        raise ContractError(f"{where}.{key}: duplicate names in {v!r}")
    return v


def _ratio(obj: dict, key: str, where: str, expected: float) -> None:
    got = _pos_num(obj, key, where)
    if not math.isclose(got, expected, rel_tol=1e-9):
        raise ContractError(f"{where}.{key}: expected {expected!r} (rate / samples), got {got!r}")


def _tensor(spec: Any, where: str) -> tuple[str, list]:
    name = _get(spec, "name", where)
    if not isinstance(name, str) or not name:
        raise ContractError(f"{where}.name: expected a non-empty string, got {name!r}")
    shape = _get(spec, "shape", where)
    if not isinstance(shape, list) or not shape:
        raise ContractError(f"{where}.shape: expected a non-empty list, got {shape!r}")
    for k, d in enumerate(shape):
        ok = (_is_int(d) and d > 0) or (isinstance(d, str) and d.isidentifier())
        if not ok:
            raise ContractError(
                f"{where}.shape[{k}]: expected a positive integer or a symbol like 'B', got {d!r}"
            )
    dtype = _get(spec, "dtype", where)
    if dtype not in DTYPES:
        raise ContractError(f"{where}.dtype: expected one of {list(DTYPES)}, got {dtype!r}")
    return name, shape


def _model(spec: Any, where: str) -> dict[str, list]:
    """Validate one model entry; return {tensor name: shape}."""
    shapes: dict[str, list] = {}
    for kind in ("inputs", "outputs"):
        tensors = _get(spec, kind, where)
        if not isinstance(tensors, list) or not tensors:
            raise ContractError(f"{where}.{kind}: expected a non-empty list of tensor specs")
        for i, t in enumerate(tensors):
            name, shape = _tensor(t, f"{where}.{kind}[{i}]")
            if name in shapes:
                raise ContractError(f"{where}.{kind}[{i}].name: duplicate tensor name {name!r}")
            shapes[name] = shape
    return shapes


def validate_contract(contract: Any) -> None:
    """Check the structure and internal consistency of a parsed contract; raise ContractError."""
    if not isinstance(contract, dict):
        raise ContractError(f"contract: expected a JSON object, got {type(contract).__name__}")
    version = _get(contract, "version", "")
    if not _is_int(version) or version not in SUPPORTED_VERSIONS:
        raise ContractError(
            f"version: unsupported contract version {version!r} (supported: {SUPPORTED_VERSIONS})"
        )

    clocks = _get(contract, "clocks", "")
    inp = _get(clocks, "input", "clocks")
    rate = _pos_num(inp, "sample_rate_hz", "clocks.input")
    block = _pos_int(inp, "block_samples", "clocks.input")
    _ratio(inp, "publish_rate_hz", "clocks.input", rate / block)
    ana = _get(clocks, "analysis", "clocks")
    rate = _pos_num(ana, "sample_rate_hz", "clocks.analysis")
    frame = _pos_int(ana, "frame_samples", "clocks.analysis")
    hop = _pos_int(ana, "hop_samples", "clocks.analysis")
    _ratio(ana, "frame_rate_hz", "clocks.analysis", rate / hop)
    _pos_num(_get(clocks, "render", "clocks"), "target_fps", "clocks.render")

    fe = _get(contract, "frontend", "")
    if _pos_int(fe, "fft_size", "frontend") != frame:
        raise ContractError(
            f"frontend.fft_size: must equal clocks.analysis.frame_samples ({frame})"
        )
    _pos_int(fe, "n_bins", "frontend")
    _pos_int(fe, "bands_per_octave", "frontend")
    if _pos_num(fe, "fmin_hz", "frontend") >= _pos_num(fe, "fmax_hz", "frontend"):
        raise ContractError("frontend.fmin_hz: must be below frontend.fmax_hz")
    fe_dim = _pos_int(fe, "dim", "frontend")
    if fe_dim != 2 * _pos_int(fe, "n_bands", "frontend"):
        raise ContractError(f"frontend.dim: expected 2 * frontend.n_bands, got {fe_dim}")
    _pos_int(fe, "stream_lag_samples", "frontend")

    dims = {"frontend.dim": fe_dim}
    for section in ("micro_features", "beat_features"):
        n = len(_names(_get(contract, section, ""), "names", section))
        if _pos_int(contract[section], "dim", section) != n:
            raise ContractError(f"{section}.dim: expected len({section}.names) = {n}")
        dims[f"{section}.dim"] = n
    dims["len(sections.labels)"] = len(_names(_get(contract, "sections", ""), "labels", "sections"))
    horizons = _get(_get(contract, "hazard", ""), "horizons_beats", "hazard")
    if (
        not isinstance(horizons, list)
        or not horizons
        or not all(_is_int(h) and h > 0 for h in horizons)
        or any(b <= a for a, b in zip(horizons[:-1], horizons[1:], strict=True))
    ):
        raise ContractError(
            f"hazard.horizons_beats: expected increasing positive integers, got {horizons!r}"
        )
    dims["len(hazard.horizons_beats)"] = len(horizons)

    models = _get(contract, "models", "")
    if not isinstance(models, dict) or not models:
        raise ContractError("models: expected a non-empty object of model specs")
    shapes = {name: _model(spec, f"models.{name}") for name, spec in models.items()}
    crnn = _get(models, "beatnet_crnn", "models")
    order = _names(crnn, "output_order", "models.beatnet_crnn")
    dims["len(models.beatnet_crnn.output_order)"] = len(order)
    _get(models, "beatnet_crnn_step", "models")
    hidden = shapes["beatnet_crnn"].get("h0", [None])[-1]
    if not _is_int(hidden):
        raise ContractError(f"models.beatnet_crnn.h0.shape[-1]: expected a size, got {hidden!r}")
    dims["models.beatnet_crnn.h0.shape[-1]"] = hidden
    controller = _get(models, "controller", "models")
    dims["len(models.controller.control_names)"] = len(
        _names(controller, "control_names", "models.controller")
    )
    _get(models, "anticipator", "models")
    for model, tensor, source in _LAST_DIM_RULES:
        shape = shapes[model].get(tensor)
        if shape is None:
            raise ContractError(f"models.{model}: missing tensor {tensor!r}")
        if shape[-1] != dims[source]:
            raise ContractError(
                f"models.{model}.{tensor}.shape[-1]: expected {source} = {dims[source]}, "
                f"got {shape[-1]!r}"
            )

    bus = _get(contract, "state_bus", "")
    for key in ("BeatClockState", "StructureState", "SlowState"):
        _names(bus, key, "state_bus")


# (model, tensor, source of the required size of its last dimension)
_LAST_DIM_RULES = (
    ("beatnet_crnn", "features", "frontend.dim"),
    ("beatnet_crnn", "probs", "len(models.beatnet_crnn.output_order)"),
    ("beatnet_crnn_step", "features", "frontend.dim"),
    ("beatnet_crnn_step", "probs", "len(models.beatnet_crnn.output_order)"),
    *(
        ("beatnet_crnn_step", f"{kind}{t}_l{layer}", "models.beatnet_crnn.h0.shape[-1]")
        for layer in (0, 1)
        for kind in ("h", "c")
        for t in ("0", "N")
    ),
    ("anticipator", "audio_features", "frontend.dim"),
    ("anticipator", "beat_features", "beat_features.dim"),
    ("anticipator", "section_logits", "len(sections.labels)"),
    ("anticipator", "hazard_logits", "len(hazard.horizons_beats)"),
    ("controller", "micro_features", "micro_features.dim"),
    ("controller", "beat_features", "beat_features.dim"),
    ("controller", "section_probs", "len(sections.labels)"),
    ("controller", "hazard_probs", "len(hazard.horizons_beats)"),
    ("controller", "control", "len(models.controller.control_names)"),
)


# --------------------------------------------------------------------------- ONNX models


def validate_onnx_model(model: Any, name: str = "beatnet_crnn", contract: dict | None = None):
    """Check an ONNX model's graph inputs and outputs against ``contract["models"][name]``.

    Parameters
    ----------
    model : path of an ``.onnx`` file, or an ``onnx.ModelProto``.
    name : model entry in the contract (``beatnet_crnn``, ``beatnet_crnn_step``,
        ``anticipator``, ``controller``).
    contract : a contract dict; default: :func:`load_contract()`.

    Names must match exactly (no missing, no extra tensors). Each tensor must have the
    contract's dtype and rank; integer dims must be fixed to that value; symbolic dims
    ("B", "T") may be dynamic or any size, but fixed sizes bound to one symbol must agree.
    Returns the ``onnx.ModelProto``. Raises :class:`ContractError` listing every mismatch.
    """
    import onnx
    from onnx import helper

    if contract is None:
        contract = load_contract()
    else:
        validate_contract(contract)
    models = contract["models"]
    if name not in models:
        raise ContractError(f"models.{name}: no such model in the contract (have {sorted(models)})")
    if isinstance(model, onnx.ModelProto):
        label = f"ONNX model {model.graph.name!r}"
    elif isinstance(model, (str, os.PathLike)):
        label = f"ONNX model {os.fspath(model)}"
        if not Path(model).is_file():
            raise FileNotFoundError(f"{label}: no such file")
        try:
            model = onnx.load(os.fspath(model), load_external_data=False)
        except Exception as exc:  # protobuf DecodeError and friends
            raise ContractError(f"{label}: not a readable ONNX model ({exc})") from None
    else:
        raise TypeError(f"model must be a path or onnx.ModelProto, got {type(model).__name__}")

    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    actual = {
        "inputs": {v.name: v for v in graph.input if v.name not in initializers},
        "outputs": {v.name: v for v in graph.output},
    }
    errors: list[str] = []
    bound: dict[str, tuple[int, str]] = {}
    for kind in ("inputs", "outputs"):
        specs = models[name][kind]
        expected = [s["name"] for s in specs]
        extra = sorted(set(actual[kind]) - set(expected))
        if extra:
            errors.append(f"models.{name}.{kind}: unexpected model {kind} {extra}")
        for i, spec in enumerate(specs):
            where = f"models.{name}.{kind}[{i}] ({spec['name']!r})"
            vi = actual[kind].get(spec["name"])
            if vi is None:
                errors.append(f"{where}: missing from the model (model has {sorted(actual[kind])})")
                continue
            if not vi.type.HasField("tensor_type"):
                errors.append(f"{where}: not a tensor")
                continue
            tt = vi.type.tensor_type
            try:
                dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type).name
            except (KeyError, ValueError):
                dtype = f"elem_type {tt.elem_type}"
            if dtype != spec["dtype"]:
                errors.append(f"{where}.dtype: expected {spec['dtype']}, got {dtype}")
            if not tt.HasField("shape"):
                errors.append(f"{where}.shape: model declares no shape")
                continue
            dims = tt.shape.dim
            if len(dims) != len(spec["shape"]):
                errors.append(
                    f"{where}.shape: expected rank {len(spec['shape'])} {spec['shape']}, "
                    f"got rank {len(dims)}"
                )
                continue
            for k, (want, dim) in enumerate(zip(spec["shape"], dims, strict=True)):
                fixed = dim.dim_value if dim.HasField("dim_value") else None
                if isinstance(want, int):
                    if fixed != want:
                        got = fixed if fixed is not None else f"dynamic {dim.dim_param or '?'!r}"
                        errors.append(f"{where}.shape[{k}]: expected {want}, got {got}")
                elif fixed is not None:
                    prev = bound.setdefault(want, (fixed, f"{where}.shape[{k}]"))
                    if prev[0] != fixed:
                        errors.append(
                            f"{where}.shape[{k}]: symbol {want!r} fixed to {fixed} here but to "
                            f"{prev[0]} at {prev[1]}"
                        )
    if errors:
        raise ContractError(
            f"{label} does not satisfy contract models.{name}:\n  " + "\n  ".join(errors)
        )
    return model
