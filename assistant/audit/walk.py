"""Bounded walks over the directories the audit reads: the home dir, the temp dir, caches.

The temp dir and the caches are shared with every other program, so the walk stays on the
user's own files (nothing Nightcap writes belongs to anyone else), never follows links, skips
files too large to be anything but model weights, and stops at a budget rather than reading a
whole disk; the caller says so when it had to stop.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILE = 512 * 1024 * 1024
"""Larger files are skipped: conversation copies are small, model weights are not."""
MAX_FILES = 50_000
MAX_BYTES = 4 * 1024 * 1024 * 1024
WEIGHT_SUFFIXES = frozenset({".gguf", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".msgpack"})
"""Model-weight files, skipped in shared caches (their own check covers the home dir)."""
PRUNE_DIRS = frozenset({".git", "node_modules", "__pycache__", "site-packages", ".venv", "venv"})
"""Big trees that no Nightcap code writes into."""


@dataclass
class Walk:
    """What one bounded walk visited and why it left things out."""

    files: int = 0
    bytes: int = 0
    skipped_large: int = 0
    unreadable: int = 0
    truncated: bool = False
    """The budget ran out before the walk finished."""
    roots: list[str] = field(default_factory=list)

    def merge(self, other: "Walk") -> None:
        self.files += other.files
        self.bytes += other.bytes
        self.skipped_large += other.skipped_large
        self.unreadable += other.unreadable
        self.truncated = self.truncated or other.truncated
        self.roots += other.roots


def walk(
    root: Path,
    *,
    exclude: tuple[Path, ...] = (),
    skip_weights: bool = False,
    skip: Callable[[Path], bool] | None = None,
    max_file: int = MAX_FILE,
    max_files: int = MAX_FILES,
    max_bytes: int = MAX_BYTES,
    tally: Walk | None = None,
) -> Iterator[tuple[Path, bytes]]:
    """Yield (path, contents) for the user's regular files under `root`, within the budget.

    `exclude` lists directories not to enter (already walked as another root); `skip` names
    files to pass over unread (counted with the large ones).
    """
    tally = tally if tally is not None else Walk()
    if not root.is_dir():
        return
    tally.roots.append(str(root))
    uid = os.getuid() if hasattr(os, "getuid") else None
    excluded = {os.path.realpath(p) for p in exclude}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=lambda _e: None):
        keep = []
        for d in dirnames:
            full = os.path.join(dirpath, d)
            if d in PRUNE_DIRS or os.path.realpath(full) in excluded:
                continue
            try:
                st = os.lstat(full)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and (uid is None or st.st_uid == uid):
                keep.append(d)
        dirnames[:] = sorted(keep)
        for name in sorted(filenames):
            path = Path(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                tally.unreadable += 1
                continue
            if not stat.S_ISREG(st.st_mode) or (uid is not None and st.st_uid != uid):
                continue
            weights = skip_weights and path.suffix.lower() in WEIGHT_SUFFIXES
            if st.st_size > max_file or weights or (skip is not None and skip(path)):
                tally.skipped_large += 1
                continue
            if tally.files >= max_files or tally.bytes + st.st_size > max_bytes:
                tally.truncated = True
                return
            try:
                data = path.read_bytes()
            except OSError:
                tally.unreadable += 1
                continue
            tally.files += 1
            tally.bytes += len(data)
            yield path, data


def is_generation_gguf(home_root: Path, path: Path) -> bool:
    """A served model generation's weights (models/gen-NNNN/model.gguf), not an intermediate."""
    try:
        rel = path.relative_to(home_root / "models").parts
    except ValueError:
        return False
    return len(rel) == 2 and rel[0].startswith("gen-") and rel[1] == "model.gguf"
