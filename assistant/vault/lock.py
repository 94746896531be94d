"""An exclusive, re-entrant lock on the vault shared by every Nightcap process.

The chat, `nightcap ask`, an import and the sleep daemon may all touch the vault at once; each
vault operation holds ``vault/.lock`` (flock) for its duration. Re-entrant within a process so
that one operation can call another.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from assistant.fsutil import FILE_MODE

try:
    import fcntl
except ImportError:  # Windows: fall back to in-process locking only
    fcntl = None  # type: ignore[assignment]


class VaultLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, FILE_MODE)
                if fcntl is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._fd is not None:
                    os.close(self._fd)  # closing the descriptor releases the flock
                    self._fd = None
