"""Crash-safe file primitives used everywhere state is written.

Atomic replacement: write a temp file in the same directory, fsync it, `os.replace` it over the
target, fsync the directory. A crash leaves either the old file or the new one, never a mix.
Files are created 0600 and directories 0700: everything under the home dir is private.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from assistant.errors import DiskFullError

FILE_MODE = 0o600
DIR_MODE = 0o700


def ensure_dir(path: Path) -> Path:
    """Create `path` (and parents) with mode 0700 if missing; return it."""
    missing: list[Path] = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    # One level at a time: `mkdir(parents=True)` would give the parents the umask's mode (0755).
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True, mode=DIR_MODE)
    path.mkdir(exist_ok=True, mode=DIR_MODE)  # still raises if `path` is a file
    return path


def open_private(path: Path) -> Any:
    """Open (creating 0600 if missing) a small file for locking, as a text file object."""
    ensure_dir(path.parent)
    return os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE), "r+")


def fsync_dir(path: Path) -> None:
    """Flush a directory entry change (rename, unlink) to disk where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _raise_if_full(err: OSError, path: Path) -> None:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"the disk holding {path.parent} is full; free some space and try again") from err


def atomic_write_bytes(path: Path, data: bytes, mode: int = FILE_MODE) -> None:
    """Replace `path` with `data` atomically (temp file, fsync, os.replace, fsync dir)."""
    ensure_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as err:
            _raise_if_full(err, path)
            raise
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, mode: int = FILE_MODE) -> None:
    """Atomic replacement with UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


def atomic_write_json(path: Path, obj: Any, mode: int = FILE_MODE) -> None:
    """Atomic replacement with pretty-printed JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n", mode)


def read_json(path: Path) -> Any:
    """Load a JSON file written by `atomic_write_json`."""
    return json.loads(path.read_text(encoding="utf-8"))
