"""Restricted torch zip reader: tensor rebuild (offsets, strides, shared storages) and security.

The pickles are assembled opcode by opcode (tests/torch_pickles.py), so no torch is needed.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest
from torch_pickles import (
    call,
    glob,
    integer,
    state_dict_pickle,
    tensor,
    text,
    torch_zip,
    tup,
)

from fractalsync_models.export_beatnet import EXPECTED_SHAPES, fetch_wheel
from fractalsync_models.torch_zip import TorchZipError, load_state_dict

# ----------------------------------------------------------------- tensor rebuild


def test_shared_storage_offsets_and_strides():
    s0 = np.arange(20, dtype=np.float32) * 0.5
    s1 = np.array([3, -7, 11], dtype=np.int64)
    pkl = state_dict_pickle(
        {
            "a": tensor("0", 20, 0, (2, 3), (3, 1)),
            "b_transposed": tensor("0", 20, 6, (3, 2), (1, 3)),
            "c_strided": tensor("0", 20, 12, (4,), (2,)),
            "d_int": tensor("1", 3, 1, (2,), (1,), cls="LongStorage"),
            "e_scalar": tensor("0", 20, 19, (), ()),
            "f_empty": tensor("0", 20, 0, (0, 4), (4, 1)),
        }
    )
    sd = load_state_dict(torch_zip(pkl, {"0": s0.tobytes(), "1": s1.tobytes()}))
    assert list(sd) == ["a", "b_transposed", "c_strided", "d_int", "e_scalar", "f_empty"]
    np.testing.assert_array_equal(sd["a"], [[0, 0.5, 1], [1.5, 2, 2.5]])
    # b[i, j] = storage[6 + i * 1 + j * 3]
    np.testing.assert_array_equal(sd["b_transposed"], [[3, 4.5], [3.5, 5], [4, 5.5]])
    np.testing.assert_array_equal(sd["c_strided"], [6, 7, 8, 9])
    np.testing.assert_array_equal(sd["d_int"], [-7, 11])
    assert sd["e_scalar"].shape == () and sd["e_scalar"] == 9.5
    assert sd["f_empty"].shape == (0, 4)
    assert sd["a"].dtype == np.float32 and sd["d_int"].dtype == np.int64
    for v in sd.values():
        assert v.flags.c_contiguous and v.flags.writeable and v.flags.owndata
    sd["a"][0, 0] = 99.0  # copies: writing one tensor leaves the others alone
    assert sd["b_transposed"][0, 0] == 3


def test_big_endian_storage():
    values = np.array([1.25, -2.5, 1e-3], dtype=">f4")
    pkl = state_dict_pickle({"w": tensor("0", 3, 0, (3,), (1,))})
    sd = load_state_dict(torch_zip(pkl, {"0": values.tobytes()}, byteorder="big"))
    assert sd["w"].dtype == np.float32 and sd["w"].dtype.isnative
    np.testing.assert_array_equal(sd["w"], values.astype(np.float32))


@pytest.mark.parametrize("member", ["archive/data.pkl", "archive/byteorder", "archive/data/0"])
@pytest.mark.parametrize("damage", ["local header", "crc"])
def test_damaged_members_raise(member, damage):
    """A member whose local header or CRC is damaged (found by tests/test_cli_fuzz.py: an
    unexpected BadZipFile escaped from the data.pkl read)."""
    values = np.arange(3, dtype="<f4").tobytes()
    raw = bytearray(torch_zip(state_dict_pickle({"w": tensor("0", 3, 0, (3,), (1,))}),
                              {"0": values}, byteorder="little"))
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo(member)
    if damage == "local header":
        raw[info.header_offset] ^= 0xFF  # "PK\x03\x04" no more
    else:  # the last byte of the stored data
        name_len, extra_len = np.frombuffer(raw, "<u2", 2, info.header_offset + 26)
        raw[info.header_offset + 30 + name_len + extra_len + info.compress_size - 1] ^= 0xFF
    with pytest.raises(TorchZipError, match=f"{member}: damaged archive member"):
        load_state_dict(bytes(raw))


def test_reads_from_path_and_file_object(tmp_path):
    raw = torch_zip(state_dict_pickle({"w": tensor("0", 2, 0, (2,), (1,))}), {"0": b"\0" * 8})
    path = tmp_path / "w.pt"
    path.write_bytes(raw)
    for source in (path, str(path), io.BytesIO(raw), raw):
        np.testing.assert_array_equal(load_state_dict(source)["w"], [0.0, 0.0])


@pytest.mark.parametrize(
    "entry, storages, message",
    [
        (tensor("0", 4, 2, (2, 2), (2, 1)), {"0": b"\0" * 16}, "reads element 5 of a storage of 4"),
        (tensor("0", 4, 0, (2,), (1, 1)), {"0": b"\0" * 16}, "size (2,), stride (1, 1)"),
        (tensor("0", 4, -1, (2,), (1,)), {"0": b"\0" * 16}, "offset -1"),
        (tensor("0", 4, 0, (2,), (1,)), {}, "member 'archive/data/0' missing"),
        (tensor("0", 4, 0, (2,), (1,)), {"0": b"\0" * 12}, "holds 12 bytes, expected 4 x 4"),
        (tensor("../x", 4, 0, (2,), (1,)), {"0": b"\0" * 16}, "invalid key '../x'"),
    ],
)
def test_malformed_tensors_raise(entry, storages, message):
    with pytest.raises(TorchZipError) as exc:
        load_state_dict(torch_zip(state_dict_pickle({"w": entry}), storages))
    assert message in str(exc.value)


def test_not_a_state_dict():
    with pytest.raises(TorchZipError, match="not a torch zip archive"):
        load_state_dict(b"\x80\x02}q\x00.")
    with pytest.raises(TorchZipError, match="holds a list, not a state dict"):
        load_state_dict(torch_zip(b"\x80\x02]q\x00.", {}))
    with pytest.raises(TorchZipError, match="not a plain state dict of tensors"):
        load_state_dict(torch_zip(state_dict_pickle({"w": integer(3)}), {}))
    with pytest.raises(TorchZipError, match="exactly one <prefix>/data.pkl"):
        load_state_dict(_zip_without_pickle())


def _zip_without_pickle() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


# ----------------------------------------------------------------- security


def _os_system_payload(marker) -> bytes:
    """A pickle that runs `touch <marker>` through os.system when unpickled naively."""
    return b"\x80\x02" + call(glob("os", "system"), text(f"touch {marker}")) + b"."


def test_payload_is_live_with_plain_pickle(tmp_path):
    # Proves the crafted payload really executes code, so the next test can fail.
    marker = tmp_path / "pwned_plain"
    pickle.loads(_os_system_payload(marker))
    assert marker.exists()


def test_malicious_global_is_rejected_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(TorchZipError, match=r"forbidden global os\.system.*nothing was executed"):
        load_state_dict(torch_zip(_os_system_payload(marker), {}))
    assert not marker.exists()
    # hidden inside an otherwise valid state dict, after a legitimate tensor
    evil = call(glob("os", "system"), text(f"touch {marker}"))
    pkl = state_dict_pickle({"w": tensor("0", 1, 0, (1,), (1,)), "x": evil})
    with pytest.raises(TorchZipError, match="forbidden global os.system"):
        load_state_dict(torch_zip(pkl, {"0": b"\0" * 4}))
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("builtins", "eval"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_parameter"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("collections", "defaultdict"),
    ],
)
def test_only_state_dict_globals_resolve(module, name):
    pkl = b"\x80\x02" + call(glob(module, name), text("1")) + b"."
    with pytest.raises(TorchZipError, match=f"forbidden global {module}.{name}"):
        load_state_dict(torch_zip(pkl, {}))


def test_allowed_globals_cannot_be_abused():
    # calling a storage marker, or rebuilding from something that is not an archive storage
    with pytest.raises(TorchZipError, match="malformed state dict pickle"):
        load_state_dict(torch_zip(b"\x80\x02" + call(glob("torch", "FloatStorage")) + b".", {}))
    fake = call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        text("not a storage"),
        integer(0),
        tup(integer(1)),
        tup(integer(1)),
        b"\x89",
        call(glob("collections", "OrderedDict")),
    )
    with pytest.raises(TorchZipError, match="not a storage from the archive"):
        load_state_dict(torch_zip(state_dict_pickle({"w": fake}), {}))
    # BUILD trying to mutate the storage-type marker
    build = glob("torch", "FloatStorage") + b"}" + text("name") + text("DoubleStorage") + b"sb."
    with pytest.raises(TorchZipError):
        load_state_dict(torch_zip(b"\x80\x02" + build, {}))
    # a persistent id that is not a storage record
    with pytest.raises(TorchZipError, match="unsupported persistent id"):
        load_state_dict(torch_zip(b"\x80\x02" + text("x") + b"Q.", {}))


# ----------------------------------------------------------------- the real BeatNet weights


@pytest.fixture(scope="module")
def beatnet_wheel(beatnet_models_dir):
    return fetch_wheel()


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_beatnet_weights(beatnet_wheel, variant):
    with zipfile.ZipFile(beatnet_wheel) as whl:
        data = whl.read(f"BeatNet/models/model_{variant}_weights.pt")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        n_storages = sum("/data/" in n for n in z.namelist())
    sd = load_state_dict(data)
    assert {k: v.shape for k, v in sd.items()} == EXPECTED_SHAPES  # FACTS.md section 2
    assert n_storages < len(sd)  # LSTM parameters share one storage via offsets
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in sd.values())
    assert not np.array_equal(sd["lstm.weight_ih_l0"], sd["lstm.weight_hh_l0"])


def test_beatnet_full_model_pickle_is_refused(beatnet_wheel):
    # The wheel also ships whole pickled modules (model-1.pt): these need arbitrary objects,
    # built with NEWOBJ from arbitrary globals.
    with zipfile.ZipFile(beatnet_wheel) as whl:
        data = whl.read("BeatNet/models/model-1.pt")
    with pytest.raises(TorchZipError, match="opcode NEWOBJ at byte 16 is not allowed"):
        load_state_dict(data)
