"""Read a PyTorch ``.pt`` state dict (zip format) into numpy arrays, without torch.

A torch zip holds ``<prefix>/data.pkl`` (a pickle of the state dict) and one raw,
little-endian storage per ``<prefix>/data/<key>``. Tensors reference a storage by key,
with a storage offset, a size and a stride, so several tensors may share one storage.

Security model: the file is treated as hostile.

- Before unpickling, every opcode of the pickle is checked against :data:`ALLOWED_OPCODES`
  (the data opcodes a state dict needs, plus GLOBAL/STACK_GLOBAL, REDUCE, BUILD and
  BINPERSID). INST, OBJ, NEWOBJ(_EX), the EXT codes (whose copyreg cache bypasses
  ``find_class``), text PERSID and out-of-band buffers are refused.
- The restricted unpickler resolves only ``collections.OrderedDict``,
  ``torch._utils._rebuild_tensor_v2`` (mapped to a rebuild record here) and the typed storage
  classes (``torch.FloatStorage`` ...), which become inert markers. Any other global raises
  :class:`TorchZipError` before anything is called, so nothing from the file is executed.
- A storage is read only if its record is well formed, its element count is within
  :data:`MAX_TENSOR_ELEMENTS` and its archive member holds exactly that many bytes.
- Tensors are built only after the whole pickle is read, once each one's geometry is checked:
  offset, sizes and strides non-negative, no zero stride on a dimension longer than 1, the
  last element read inside the storage, at most :data:`MAX_TENSOR_ELEMENTS` elements, and
  all storages and tensors of the file together within :data:`MAX_TOTAL_ELEMENTS`. So a
  stride trick cannot inflate a small storage (8 bytes viewed as 8192 x 8192 with stride 0).

The caps are far above what BeatNet needs: its largest tensor has 600 x 150 = 90,000
elements, its largest storage (all LSTM parameters) 362,400, and a whole weights file about
805,000 (storages and tensors counted once each).
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import re
import zipfile
from typing import BinaryIO, NamedTuple

import numpy as np

MAX_PICKLE_BYTES = 16 << 20
"""Largest ``data.pkl`` read (BeatNet's: 1,300 bytes)."""
MAX_TENSOR_ELEMENTS = 1 << 24
"""Most elements in one tensor or one storage: 16,777,216 (64 MiB of float32)."""
MAX_TOTAL_ELEMENTS = 1 << 26
"""Most elements in all storages and tensors of one file together: 67,108,864 (256 MiB
of float32, counting the storages read and the tensors built from them)."""

ALLOWED_OPCODES = frozenset(
    """PROTO FRAME STOP MARK POP POP_MARK DUP
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS
    EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET
    GET BINGET LONG_BINGET PUT BINPUT LONG_BINPUT MEMOIZE
    GLOBAL STACK_GLOBAL REDUCE BUILD BINPERSID""".split()
)
"""Pickle opcodes a state dict may use (``pickletools`` names); any other one is refused."""

_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}


class TorchZipError(ValueError):
    """The file is not a plain torch zip state dict, or it asks for something not allowed."""


class _StorageType:
    """Inert stand-in for a ``torch.<X>Storage`` class named in the pickle."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)

    def __setattr__(self, key, value):
        raise TorchZipError("a storage type marker cannot be modified")

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TensorRecord(NamedTuple):
    """The arguments of one ``_rebuild_tensor_v2`` call; built into an array once checked."""

    storage: object
    offset: object
    size: object
    stride: object


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler resolving only the globals of a plain state dict; storages come from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, np.ndarray] = {}
        self.elements = 0  # elements of the storages read so far
        self._allowed = {
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2"): self._rebuild_tensor_v2,
        }
        for name in _STORAGE_DTYPES:
            self._allowed[("torch", name)] = _StorageType(name)

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise TorchZipError(
                f"forbidden global {module}.{name} in the pickle: only a plain state dict "
                "(OrderedDict, _rebuild_tensor_v2, torch.*Storage) is allowed; nothing was executed"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchZipError(f"unsupported persistent id {pid!r} (expected a storage record)")
        _, storage_type, key, _location, numel = pid
        if type(storage_type) is not _StorageType:
            raise TorchZipError(f"storage record {key!r}: {storage_type!r} is not a storage type")
        if not (isinstance(key, str) and re.fullmatch(r"\w+", key)):
            raise TorchZipError(f"storage record: invalid key {key!r}")
        if not (isinstance(numel, int) and not isinstance(numel, bool) and numel >= 0):
            raise TorchZipError(f"storage {key!r}: invalid element count {numel!r}")
        if numel > MAX_TENSOR_ELEMENTS:
            raise TorchZipError(
                f"storage {key!r}: {numel} elements exceed the cap of {MAX_TENSOR_ELEMENTS}"
            )
        dtype = np.dtype(_STORAGE_DTYPES[storage_type.name]).newbyteorder(self._byteorder)
        cached = self._storages.get(key)
        if cached is not None:
            if cached.dtype != dtype or cached.size != numel:
                raise TorchZipError(f"storage {key!r} is referenced with two different types")
            return cached
        member = f"{self._prefix}data/{key}"
        try:
            info = self._archive.getinfo(member)
        except KeyError:
            raise TorchZipError(f"storage {key!r}: archive member {member!r} missing") from None
        if info.file_size != numel * dtype.itemsize:
            raise TorchZipError(
                f"storage {key!r}: {member} holds {info.file_size} bytes, "
                f"expected {numel} x {dtype.itemsize}"
            )
        self.elements += numel
        if self.elements > MAX_TOTAL_ELEMENTS:
            raise TorchZipError(
                f"storage {key!r}: the storages read hold {self.elements} elements, "
                f"over the cap of {MAX_TOTAL_ELEMENTS}"
            )
        storage = np.frombuffer(_read_member(self._archive, member), dtype=dtype)
        self._storages[key] = storage
        return storage

    def _rebuild_tensor_v2(
        self, storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
    ) -> _TensorRecord:
        """Record a tensor (its geometry is checked by :meth:`build`, which knows its name)."""
        if not isinstance(requires_grad, bool) or backward_hooks or metadata:
            raise TorchZipError("tensor rebuild: backward hooks or metadata are not supported")
        return _TensorRecord(storage, storage_offset, size, stride)

    def build(self, names: list[str], records: list[_TensorRecord]) -> list[np.ndarray]:
        """Check every record's geometry and the element caps, then copy the tensors out.

        ``names`` are the state dict entries of the records (for the error messages); nothing
        is allocated before all records have passed.
        """
        total = self.elements
        for key, record in zip(names, records, strict=True):
            total += self._check(key, record)
            if total > MAX_TOTAL_ELEMENTS:
                raise TorchZipError(
                    f"tensor {key!r}: the storages and tensors up to it hold {total} elements, "
                    f"over the cap of {MAX_TOTAL_ELEMENTS}"
                )
        return [_copy_out(record) for record in records]

    def _check(self, name: str, record: _TensorRecord) -> int:
        """Validate one record against its storage; return its element count."""
        storage, offset, size, stride = record
        if not isinstance(storage, np.ndarray) or not any(
            storage is s for s in self._storages.values()
        ):
            raise TorchZipError(
                f"tensor {name!r}: the first rebuild argument is not a storage from the archive"
            )
        ints = (size, stride)
        if not all(isinstance(t, tuple) and all(_is_index(v) for v in t) for t in ints):
            raise TorchZipError(f"tensor {name!r}: invalid size {size!r} or stride {stride!r}")
        if len(size) != len(stride) or not _is_index(offset):
            raise TorchZipError(
                f"tensor {name!r}: size {size!r}, stride {stride!r}, offset {offset!r}"
            )
        numel = math.prod(size)
        if numel == 0:
            return 0
        for dim, (n, s) in enumerate(zip(size, stride, strict=True)):
            if s == 0 and n > 1:
                raise TorchZipError(
                    f"tensor {name!r}: stride 0 on dimension {dim} of size {n} "
                    "(broadcast tensors are not supported)"
                )
        if numel > MAX_TENSOR_ELEMENTS:
            raise TorchZipError(
                f"tensor {name!r}: {numel} elements exceed the cap of {MAX_TENSOR_ELEMENTS}"
            )
        last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise TorchZipError(
                f"tensor {name!r}: size {size} stride {stride} offset {offset} "
                f"reads element {last} of a storage of {storage.size}"
            )
        return numel


def _copy_out(record: _TensorRecord) -> np.ndarray:
    """A native-endian, C-contiguous copy of a checked record."""
    storage, offset, size, stride = record
    native = storage.dtype.newbyteorder("=")
    if 0 in size:
        return np.zeros(size, dtype=native)
    view = np.lib.stride_tricks.as_strided(
        storage[offset:],
        shape=size,
        strides=tuple(s * storage.itemsize for s in stride),
        writeable=False,
    )
    return np.array(view, dtype=native, order="C")


def _check_opcodes(data: bytes, member: str) -> None:
    """Refuse a pickle using any opcode outside :data:`ALLOWED_OPCODES` (nothing is run)."""
    try:
        for opcode, _arg, pos in pickletools.genops(data):
            if opcode.name not in ALLOWED_OPCODES:
                raise TorchZipError(
                    f"{member}: opcode {opcode.name} at byte {pos} is not allowed in a state "
                    "dict pickle; nothing was executed"
                )
    except TorchZipError:
        raise
    except Exception as exc:
        raise TorchZipError(f"{member}: malformed pickle: {type(exc).__name__}: {exc}") from None


def _read_member(archive: zipfile.ZipFile, member: str) -> bytes:
    """``archive.read(member)``; a damaged member (bad local header, CRC mismatch, corrupt
    compressed data, an unsupported or encrypted entry) raises :class:`TorchZipError`."""
    try:
        return archive.read(member)
    except Exception as exc:  # zipfile, zlib, bz2 and lzma each raise their own types
        raise TorchZipError(f"{member}: damaged archive member: {type(exc).__name__}: "
                            f"{exc}") from None


def _is_index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def load_state_dict(source: str | os.PathLike | bytes | BinaryIO) -> dict[str, np.ndarray]:
    """Read a torch zip ``.pt`` state dict into ``{name: numpy array}`` (C-contiguous copies).

    Parameters
    ----------
    source : path of the ``.pt`` file, its bytes, or a binary file object.

    Raises :class:`TorchZipError` for anything that is not a plain zip state dict of
    tensors (legacy non-zip files, forbidden globals, out-of-range strides, ...).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    elif not isinstance(source, (str, os.PathLike)) and not hasattr(source, "read"):
        raise TypeError(f"source must be a path, bytes or a binary file object, "
                        f"got {type(source).__name__}")
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise TorchZipError(
            "not a torch zip archive (legacy pickle-only .pt files are not supported)"
        ) from None
    with archive:
        pickles = [n for n in archive.namelist() if re.fullmatch(r"[^/]+/data\.pkl", n)]
        if len(pickles) != 1:
            raise TorchZipError(f"expected exactly one <prefix>/data.pkl member, found {pickles}")
        prefix = pickles[0][: -len("data.pkl")]
        if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
            raise TorchZipError(f"{pickles[0]} is larger than {MAX_PICKLE_BYTES} bytes")
        byteorder = "<"
        if f"{prefix}byteorder" in archive.namelist():
            order = _read_member(archive, f"{prefix}byteorder").decode("ascii", "replace")
            order = order.strip()
            if order not in ("little", "big"):
                raise TorchZipError(f"unknown byteorder {order!r}")
            byteorder = "<" if order == "little" else ">"
        data = _read_member(archive, pickles[0])
        _check_opcodes(data, pickles[0])
        unpickler = _StateDictUnpickler(data, archive, prefix, byteorder)
        try:
            state = unpickler.load()
        except TorchZipError:
            raise
        except Exception as exc:
            msg = f"malformed state dict pickle: {type(exc).__name__}: {exc}"
            raise TorchZipError(msg) from None
    if not isinstance(state, dict):
        raise TorchZipError(f"the pickle holds a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, _TensorRecord))]
    if bad:
        raise TorchZipError(f"not a plain state dict of tensors: entries {bad[:5]!r}")
    return dict(zip(state, unpickler.build(list(state), list(state.values())), strict=True))
