"""Build torch zip ``.pt`` files opcode by opcode, without torch (shared by the test modules).

A state dict pickle is assembled here in protocol 2, as ``torch.save`` writes it, and packaged
the way a real ``.pt`` is: a zip with ``archive/data.pkl`` and one raw storage per
``archive/data/<key>``. :func:`beatnet_wheel` wraps such a file into a wheel the converter reads.
"""

from __future__ import annotations

import io
import struct
import zipfile


def glob(module: str, name: str) -> bytes:
    """GLOBAL ``module.name`` (resolved through ``find_class``)."""
    return b"c" + f"{module}\n{name}\n".encode()


def text(s: str) -> bytes:
    """BINUNICODE ``s``."""
    raw = s.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def integer(v: int) -> bytes:
    """BININT ``v`` (a signed 32-bit int)."""
    return b"J" + struct.pack("<i", v)


def tup(*items: bytes) -> bytes:
    """MARK, the items, TUPLE."""
    return b"(" + b"".join(items) + b"t"


def call(func: bytes, *args: bytes) -> bytes:
    """``func(*args)`` through REDUCE."""
    return func + tup(*args) + b"R"


def storage_ref(key: str, numel: int, cls: str = "FloatStorage") -> bytes:
    """A BINPERSID record as torch writes it: ('storage', torch.<cls>, key, 'cpu', numel)."""
    return tup(text("storage"), glob("torch", cls), text(key), text("cpu"), integer(numel)) + b"Q"


def tensor(key, numel, offset, size, stride, cls="FloatStorage") -> bytes:
    """``_rebuild_tensor_v2`` of storage ``key`` (``numel`` elements) with offset, size, stride."""
    return call(
        glob("torch._utils", "_rebuild_tensor_v2"),
        storage_ref(key, numel, cls),
        integer(offset),
        tup(*map(integer, size)),
        tup(*map(integer, stride)),
        b"\x89",  # requires_grad=False
        call(glob("collections", "OrderedDict")),  # backward hooks
    )


def state_dict_pickle(entries: dict[str, bytes]) -> bytes:
    """A whole pickle: ``OrderedDict`` with ``entries`` (name -> pickled value), then STOP."""
    items = b"".join(text(k) + v for k, v in entries.items())
    return b"\x80\x02" + call(glob("collections", "OrderedDict")) + b"(" + items + b"u."


def torch_zip(pkl: bytes, storages: dict[str, bytes], byteorder: str | None = None) -> bytes:
    """Package a pickle and its raw storages as a torch zip ``.pt`` (the bytes of the file)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        for key, raw in storages.items():
            z.writestr(f"archive/data/{key}", raw)
        if byteorder is not None:
            z.writestr("archive/byteorder", byteorder)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def beatnet_wheel(path, weights_pt: bytes, variant: int = 1):
    """Write a wheel at ``path`` whose ``model_{variant}_weights.pt`` is ``weights_pt``."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("BeatNet/__init__.py", "")
        z.writestr(f"BeatNet/models/model_{variant}_weights.pt", weights_pt)
    return path
