"""The one atomic file writer of FractalSync (model files, manifests, beat grids, images).

It lives in fractalsync_models, which depends on no other FractalSync package, so that every
package may use it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["write_atomic"]

_TEMP_ATTEMPTS = 100


def write_atomic(path: str | os.PathLike, data: bytes | str, overwrite: bool = True) -> None:
    """Write `data` to `path` so that `path` is either untouched or complete.

    The data goes to a new temporary file ``.<name>.<random>.tmp`` in the target directory,
    is flushed and fsynced, and the file is then renamed onto `path` (``os.replace``); the
    directory is fsynced too where the platform allows it, so the rename survives a crash.
    The file gets the permissions a newly created file would: ``0o666 & ~umask`` (the
    temporary file is created with mode 0o666 and the kernel applies the umask and any
    default ACL; ``tempfile.mkstemp`` would give 0o600). On any failure the temporary file
    is removed and an existing `path` keeps its content.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist.
    data : bytes or str
        The content; a str is encoded as UTF-8.
    overwrite : bool
        If False and `path` exists, raise FileExistsError and leave it alone. The check and
        the write are one atomic step (the temporary file is hard-linked to `path`, which
        fails if it exists); on file systems without hard links the check precedes the
        rename.

    Raises
    ------
    FileExistsError
        If `overwrite` is False and `path` exists (the message names it).
    OSError
        If the directory is missing or not writable, the disk is full, etc.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp, fd = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_or_rename(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new temporary file next to `path`, opened for writing with mode 0o666 (& ~umask)."""
    for _ in range(_TEMP_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(f"no unused temporary file name next to {path} "
                          f"after {_TEMP_ATTEMPTS} attempts")


def _link_or_rename(tmp: Path, path: Path) -> None:
    """Give the complete temporary file the name `path` unless `path` exists."""
    exists = FileExistsError(f"{path} exists (not overwritten)")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists from None
    except OSError:  # no hard links on this file system: check, then rename
        if path.exists():
            raise exists from None
        os.replace(tmp, path)


def _fsync_dir(directory: Path) -> None:
    """fsync a directory so that a rename in it is durable (not possible on Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
