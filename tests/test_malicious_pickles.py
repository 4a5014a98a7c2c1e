"""Hostile ``.pt`` files: each payload is live under plain pickle, and refused by our reader.

Every code-running payload below creates a marker file when a plain ``pickle.loads`` reads it;
each test first proves that in a subprocess (the marker appears), then feeds the same payload,
packaged as a real torch zip ``.pt`` (``archive/data.pkl`` + ``archive/data/N``), to
:func:`load_state_dict`, to :func:`read_weights` and to :func:`export_beatnet` (inside a
wheel, with ``allow_unpinned``), and checks that each refuses it with :class:`TorchZipError`
and that no marker exists afterwards. The resource payloads (bad storage records, stride
bombs) run no code; they check that nothing is inflated beyond the documented caps.
"""

from __future__ import annotations

import io
import shlex
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest
from torch_pickles import (
    beatnet_wheel,
    call,
    glob,
    integer,
    state_dict_pickle,
    tensor,
    text,
    torch_zip,
    tup,
)

from fractalsync_models import torch_zip as tz
from fractalsync_models.export_beatnet import ExportError, export_beatnet, read_weights
from fractalsync_models.torch_zip import TorchZipError, load_state_dict

# ------------------------------------------------------------------ code-running payloads

# copyreg extension codes registered (in the subprocesses only) for the EXT opcodes
EXTENSIONS = {"ext1": 0xF1, "ext2": 0xF1F2, "ext4": 0x7FF1F2F3}
_EXT_OPCODES = {"ext1": (b"\x82", "<B"), "ext2": (b"\x83", "<H"), "ext4": (b"\x84", "<i")}


def _touch(marker) -> bytes:
    return text(f"touch {shlex.quote(str(marker))}")


def _create(marker) -> bytes:
    return text(f"open({str(marker)!r}, 'w').close()")


def _ext(kind: str):
    opcode, fmt = _EXT_OPCODES[kind]
    return lambda m: opcode + struct.pack(fmt, EXTENSIONS[kind]) + tup(_touch(m)) + b"R"


# Each builds the pickled value of one state dict entry that, unpickled plainly, creates `m`.
PAYLOADS = {
    "reduce_os_system": lambda m: call(glob("os", "system"), _touch(m)),
    "reduce_builtins_exec": lambda m: call(glob("builtins", "exec"), _create(m)),
    "reduce_builtins_eval": lambda m: call(glob("builtins", "eval"), _create(m)),
    "stack_global_posix_system": lambda m: (
        text("posix") + text("system") + b"\x93" + tup(_touch(m)) + b"R"
    ),
    "inst_os_system": lambda m: b"(" + _touch(m) + b"ios\nsystem\n",
    "obj_os_system": lambda m: b"(" + glob("os", "system") + _touch(m) + b"o",
    "getattr_chain": lambda m: call(
        call(
            glob("builtins", "getattr"),
            call(glob("builtins", "__import__"), text("os")),
            text("system"),
        ),
        _touch(m),
    ),
    "ext1": _ext("ext1"),
    "ext2": _ext("ext2"),
    "ext4": _ext("ext4"),
    # BUILD with a dict state writes __setstate__ into an OrderedDict's instance dict; the next
    # BUILD on it calls that __setstate__ with the state
    "build_sets_setstate": lambda m: (
        call(glob("collections", "OrderedDict"))
        + b"}"
        + text("__setstate__")
        + glob("os", "system")
        + b"sb"
        + _touch(m)
        + b"b"
    ),
    # BUILD with a (None, slots) state replaces the instance __dict__ by setattr
    "build_replaces_dict": lambda m: (
        call(glob("collections", "OrderedDict"))
        + b"N}"
        + text("__dict__")
        + b"}"
        + text("__setstate__")
        + glob("os", "system")
        + b"ss"
        + b"\x86b"
        + _touch(m)
        + b"b"
    ),
    # a storage record whose storage type slot is a call
    "persistent_id_smuggles_call": lambda m: (
        tup(
            text("storage"),
            call(glob("os", "system"), _touch(m)),
            text("0"),
            text("cpu"),
            integer(1),
        )
        + b"Q"
    ),
}


def _weights_pt(payload: bytes) -> bytes:
    """A real-looking ``.pt``: the payload as the first entry of a state dict, then a tensor."""
    pkl = state_dict_pickle({"x": payload, "w": tensor("0", 1, 0, (1,), (1,))})
    return torch_zip(pkl, {"0": b"\0" * 4})


def _run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60
    )


def _register_extensions(name: str) -> str:
    """Source lines registering ``os.system`` under the extension code of payload ``name``."""
    if name not in EXTENSIONS:
        return ""
    return f"import copyreg\ncopyreg.add_extension('os', 'system', {EXTENSIONS[name]})\n"


def _plain_pickle_runs(name: str, pkl: bytes, tmp_path) -> None:
    """Unpickle ``pkl`` with plain ``pickle.loads`` in a subprocess (errors after it ignored)."""
    path = tmp_path / "plain.pkl"
    path.write_bytes(pkl)
    code = _register_extensions(name) + (
        "import pickle, sys\n"
        "try:\n"
        "    pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "except Exception as exc:\n"
        "    print('plain pickle stopped later at', type(exc).__name__, exc)\n"
    )
    res = _run_python(code, str(path))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payload_is_live_under_plain_pickle_and_refused_everywhere(name, tmp_path):
    # proof: the very pickle we feed our reader runs code under plain pickle.loads
    plain_marker = tmp_path / "plain_marker"
    pt = _weights_pt(PAYLOADS[name](plain_marker))
    with zipfile.ZipFile(io.BytesIO(pt)) as z:
        _plain_pickle_runs(name, z.read("archive/data.pkl"), tmp_path)
    assert plain_marker.exists(), f"{name}: the payload did not run under plain pickle"

    marker = tmp_path / "marker"
    pt = _weights_pt(PAYLOADS[name](marker))
    with pytest.raises(TorchZipError, match="nothing was executed|not allowed|forbidden"):
        load_state_dict(pt)
    wheel = beatnet_wheel(tmp_path / "evil.whl", pt)
    with pytest.warns(UserWarning, match="not the pinned"), pytest.raises(TorchZipError):
        read_weights(wheel, 1, allow_unpinned=True)
    out = tmp_path / "models"
    with pytest.warns(UserWarning, match="not the pinned"), pytest.raises(TorchZipError):
        export_beatnet(wheel=wheel, models=1, out_dir=out, allow_unpinned=True)
    with pytest.raises(ExportError, match="pinned sha256"):  # without the flag: never opened
        export_beatnet(wheel=wheel, models=1, out_dir=out)
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize("name", list(EXTENSIONS))
def test_ext_opcodes_refused_even_with_a_primed_extension_cache(name, tmp_path):
    # The C unpickler takes an EXT code that some earlier unpickling in the process resolved
    # from copyreg's process-wide cache, without calling find_class: only refusing the opcode
    # itself keeps such a process safe.
    plain_marker, marker = tmp_path / "plain_marker", tmp_path / "marker"
    (tmp_path / "plain.pkl").write_bytes(b"\x80\x02" + PAYLOADS[name](plain_marker) + b".")
    (tmp_path / "evil.pt").write_bytes(_weights_pt(PAYLOADS[name](marker)))
    code = _register_extensions(name) + (
        "import pickle, sys\n"
        "from fractalsync_models.torch_zip import TorchZipError, load_state_dict\n"
        "pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "try:\n"
        "    load_state_dict(sys.argv[2])\n"
        "except TorchZipError as exc:\n"
        "    print('refused:', exc)\n"
    )
    res = _run_python(code, str(tmp_path / "plain.pkl"), str(tmp_path / "evil.pt"))
    assert res.returncode == 0, res.stderr
    assert plain_marker.exists()  # the cache is primed: plain pickle ran os.system
    assert res.stdout.startswith("refused:") and "EXT" in res.stdout
    assert not marker.exists()


def test_build_on_the_allowed_objects_is_refused():
    # BUILD can only reach what find_class allows: the OrderedDict type, the rebuild function
    # and the storage type markers; none of them can be reconfigured into a callable of choice.
    od = glob("collections", "OrderedDict")
    rebuild = glob("torch._utils", "_rebuild_tensor_v2")
    setstate_to = b"N}" + text("__setstate__") + od + b"s\x86b"  # (None, {'__setstate__': OD})
    for pkl in (
        od + setstate_to,  # setattr on the OrderedDict type itself
        rebuild + setstate_to,  # setattr on the bound rebuild method
        glob("torch", "FloatStorage") + setstate_to,  # the storage type marker
        glob("torch", "FloatStorage") + b"}" + text("name") + text("LongStorage") + b"b",
    ):
        with pytest.raises(TorchZipError):
            load_state_dict(torch_zip(b"\x80\x02" + pkl + b".", {}))
    # __setstate__ set to an allowed callable in an OrderedDict's dict: the second BUILD calls
    # the rebuild with one argument, which fails instead of building anything
    pkl = call(od) + b"}" + text("__setstate__") + rebuild + b"sb" + text("x") + b"b"
    with pytest.raises(TorchZipError, match="malformed"):
        load_state_dict(torch_zip(b"\x80\x02" + pkl + b".", {}))


# ------------------------------------------------------------------ persistent_load abuse


def _record(type_: bytes, key: str = "0", numel: bytes = integer(4)) -> bytes:
    return tup(text("storage"), type_, text(key), text("cpu"), numel) + b"Q"


def _long(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


@pytest.mark.parametrize(
    "record, message",
    [
        (_record(glob("collections", "OrderedDict")), "is not a storage type"),
        (_record(text("FloatStorage")), "is not a storage type"),
        (_record(glob("torch", "FloatStorage"), numel=_long(1 << 40)), "exceed the cap"),
        (_record(glob("torch", "FloatStorage"), numel=_long(-4)), "invalid element count"),
        (_record(glob("torch", "FloatStorage"), numel=integer(3)), "holds 16 bytes"),
        (_record(glob("torch", "FloatStorage"), key="../../etc/passwd"), "invalid key"),
        (_record(glob("torch", "FloatStorage"), key="7"), "missing"),
        (tup(text("storage"), glob("torch", "FloatStorage")) + b"Q", "unsupported persistent id"),
        (text("storage") + b"Q", "unsupported persistent id"),
        (_record(glob("torch", "FloatStorage")) + _record(glob("torch", "IntStorage")) + b"\x86",
         "two different types"),
    ],
)  # fmt: skip
def test_bad_storage_records_are_refused(record, message):
    with pytest.raises(TorchZipError, match=message):
        load_state_dict(torch_zip(state_dict_pickle({"w": record}), {"0": b"\0" * 16}))


# ------------------------------------------------------------------ stride bombs


def _bomb(size, stride, numel, storage: bytes, n_tensors: int = 1) -> bytes:
    entries = {f"t{i}": tensor("0", numel, 0, size, stride) for i in range(n_tensors)}
    return torch_zip(state_dict_pickle(entries), {"0": storage})


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_zero_stride_bomb_is_refused_without_inflating(tmp_path):
    # 8192 x 8192 float32 with stride (0, 0) over an 8-byte storage: a naive as_strided copy
    # would allocate 256 MiB
    naive = np.lib.stride_tricks.as_strided(np.zeros(2, np.float32), (8192, 8192), (0, 0))
    assert naive.nbytes == 8192 * 8192 * 4
    pt = _bomb((8192, 8192), (0, 0), 2, b"\0" * 8)

    def load():
        with pytest.raises(TorchZipError, match=r"tensor 't0': stride 0 on dimension 0 of size"):
            load_state_dict(pt)

    assert _peak_bytes(load) < 4 << 20
    wheel = beatnet_wheel(tmp_path / "bomb.whl", pt)
    with pytest.warns(UserWarning), pytest.raises(TorchZipError, match="'t0'"):
        export_beatnet(wheel=wheel, models=1, out_dir=tmp_path / "out", allow_unpinned=True)
    assert not (tmp_path / "out").exists()


def test_overlapping_stride_bomb_is_capped():
    # size (5000, 5000) with stride (1, 1) reads only 9999 elements of a 10000-element storage
    # but would inflate to 25M elements (100 MB): over the per-tensor cap
    pt = _bomb((5000, 5000), (1, 1), 10_000, b"\0" * 40_000)

    def load():
        with pytest.raises(TorchZipError, match=r"tensor 't0': 25000000 elements exceed the cap"):
            load_state_dict(pt)

    assert _peak_bytes(load) < 4 << 20


def test_many_tensors_on_one_storage_hit_the_total_cap():
    # five 4000 x 4000 overlapping views are each under the per-tensor cap; together they
    # pass the total cap, which is checked before any tensor is built
    pt = _bomb((4000, 4000), (1, 1), 8000, b"\0" * 32_000, n_tensors=5)

    def load():
        with pytest.raises(TorchZipError, match=r"tensor 't4': .* over the cap of 67108864"):
            load_state_dict(pt)

    assert _peak_bytes(load) < 4 << 20


def test_storage_element_caps(monkeypatch):
    monkeypatch.setattr(tz, "MAX_TENSOR_ELEMENTS", 8)
    pt = torch_zip(state_dict_pickle({"w": tensor("0", 9, 0, (9,), (1,))}), {"0": b"\0" * 36})
    with pytest.raises(TorchZipError, match="storage '0': 9 elements exceed the cap of 8"):
        load_state_dict(pt)
    monkeypatch.setattr(tz, "MAX_TENSOR_ELEMENTS", 16)
    monkeypatch.setattr(tz, "MAX_TOTAL_ELEMENTS", 16)  # the 9-element storage plus its tensor
    with pytest.raises(TorchZipError, match="'w': .* 18 elements, over the cap of 16"):
        load_state_dict(pt)
    monkeypatch.setattr(tz, "MAX_TOTAL_ELEMENTS", 18)
    assert load_state_dict(pt)["w"].shape == (9,)
    # the storages alone: the second one is not read
    two = state_dict_pickle(
        {"a": tensor("0", 9, 0, (1,), (1,)), "b": tensor("1", 10, 0, (1,), (1,))}
    )
    pt = torch_zip(two, {"0": b"\0" * 36, "1": b"\0" * 40})
    with pytest.raises(TorchZipError, match="storage '1': the storages read hold 19 elements"):
        load_state_dict(pt)
