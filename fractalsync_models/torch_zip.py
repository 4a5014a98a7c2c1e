"""Read a PyTorch ``.pt`` state dict (zip format) into numpy arrays, without torch.

A torch zip holds ``<prefix>/data.pkl`` (a pickle of the state dict) and one raw,
little-endian storage per ``<prefix>/data/<key>``. Tensors reference a storage by key,
with a storage offset, a size and a stride, so several tensors may share one storage.

The pickle is read by a restricted unpickler: the only globals it resolves are
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` (mapped to a numpy
rebuild here) and the typed storage classes (``torch.FloatStorage`` ...), which become
inert markers. Any other global raises :class:`TorchZipError` before anything is
called, so nothing from the file is ever executed.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import re
import zipfile
from typing import BinaryIO

import numpy as np

MAX_PICKLE_BYTES = 16 << 20

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


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler resolving only the globals of a plain state dict; storages come from the zip."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, np.ndarray] = {}
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
        if not (isinstance(numel, int) and numel >= 0):
            raise TorchZipError(f"storage {key!r}: invalid element count {numel!r}")
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
        storage = np.frombuffer(self._archive.read(member), dtype=dtype)
        self._storages[key] = storage
        return storage

    def _rebuild_tensor_v2(
        self, storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None
    ) -> np.ndarray:
        if not isinstance(storage, np.ndarray) or not any(
            storage is s for s in self._storages.values()
        ):
            raise TorchZipError("tensor rebuild: first argument is not a storage from the archive")
        ints = (size, stride)
        if not all(isinstance(t, tuple) and all(_is_index(v) for v in t) for t in ints):
            raise TorchZipError(f"tensor rebuild: invalid size {size!r} or stride {stride!r}")
        if len(size) != len(stride) or not _is_index(storage_offset):
            raise TorchZipError(
                f"tensor rebuild: size {size!r}, stride {stride!r}, offset {storage_offset!r}"
            )
        if not isinstance(requires_grad, bool) or backward_hooks or metadata:
            raise TorchZipError("tensor rebuild: backward hooks or metadata are not supported")
        native = storage.dtype.newbyteorder("=")
        if 0 in size:
            return np.zeros(size, dtype=native)
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= storage.size:
            raise TorchZipError(
                f"tensor rebuild: size {size} stride {stride} offset {storage_offset} "
                f"reads element {last} of a storage of {storage.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            storage[storage_offset:],
            shape=size,
            strides=tuple(s * storage.itemsize for s in stride),
            writeable=False,
        )
        return np.array(view, dtype=native, order="C")


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
            order = archive.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise TorchZipError(f"unknown byteorder {order!r}")
            byteorder = "<" if order == "little" else ">"
        unpickler = _StateDictUnpickler(archive.read(pickles[0]), archive, prefix, byteorder)
        try:
            state = unpickler.load()
        except TorchZipError:
            raise
        except Exception as exc:
            msg = f"malformed state dict pickle: {type(exc).__name__}: {exc}"
            raise TorchZipError(msg) from None
    if not isinstance(state, dict):
        raise TorchZipError(f"the pickle holds a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and isinstance(v, np.ndarray))]
    if bad:
        raise TorchZipError(f"not a plain state dict of tensors: entries {bad[:5]!r}")
    return dict(state)
