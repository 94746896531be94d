"""One daemon per home: an exclusive lock on `home/daemon.lock`, held for the process's life.

The lock is the kernel's (flock on POSIX, a byte-range lock on Windows), so it vanishes with the
process however it dies: a stale file from a killed daemon never blocks the next start. The file
holds the owner's pid for `nightcap daemon status`; it is never deleted, because unlinking a lock
file races with a process that has just opened it.
"""

from __future__ import annotations

import os
from pathlib import Path

from assistant.errors import NightcapError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

# Windows locks are mandatory: lock a byte past the pid text so status can still read the pid.
_WIN_LOCK_OFFSET = 1024


class DaemonRunning(NightcapError):
    """Another daemon already holds the lock for this home."""


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        else:
            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int) -> None:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        else:
            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    except OSError:
        pass


class InstanceLock:
    """The daemon's lock. `acquire()` raises DaemonRunning when another process holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            os.close(fd)
            pid = read_pid(self.path)
            owner = f" (pid {pid})" if pid else ""
            raise DaemonRunning(
                f"a Nightcap daemon is already running for this home{owner}; "
                "see `nightcap daemon status` or stop that one first"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # at offset 0: the file was just opened
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def holder(path: Path) -> int | None:
    """The pid of the running daemon (0 if it wrote none yet), or None when nobody holds the lock."""
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY if fcntl is not None else os.O_RDWR)
    except OSError:
        return None
    try:
        # A shared probe never blocks another probe; it fails only against the daemon's lock.
        if _try_lock(fd, shared=True):
            _unlock(fd)
            return None
        return read_pid(path) or 0
    finally:
        os.close(fd)
