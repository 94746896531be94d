"""Power loss, simulated: only what fsync made durable survives.

A killed process loses nothing the kernel already holds (the page cache survives it); a power
cut loses every write that no fsync made durable. `Disk` watches a directory tree while code
runs: it starts from a snapshot of the tree (all durable), and each `os.fsync` records what it
makes durable: the whole content of a regular file (by inode, so a later rename or link keeps
it), or the entries of a directory (name -> inode). `Disk.cut_at = k` makes the k-th fsync (from
0) raise `PowerCut` instead, and every fsync after it: the machine is off. `image(dest)` then
writes the tree as a restart would find it:

- a directory holds exactly the entries of its last fsync (or of the snapshot);
- a file holds the content of its inode's last fsync (or of the snapshot), and nothing if
  neither happened: written, never synced.

This is the strict POSIX reading (ext4 and others often keep more); code that is safe under it
is safe on any of them. Linux only: an fd's path comes from /proc/self/fd.
"""

from __future__ import annotations

import os
import shutil
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest


class PowerCut(BaseException):
    """The power went out (BaseException: no `except Exception` of the product catches it)."""


@dataclass
class Disk:
    root: Path
    cut_at: int | None = None
    syncs: int = 0
    files: dict[int, bytes] = field(default_factory=dict)
    dirs: dict[int, dict[str, tuple[int, bool]]] = field(default_factory=dict)
    root_ino: int = 0

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.root_ino = os.stat(self.root).st_ino
        for here, _subdirs, names in os.walk(self.root):
            self._sync_dir(Path(here))
            for name in names:
                path = Path(here, name)
                if path.is_file() and not path.is_symlink():
                    self.files[os.stat(path).st_ino] = path.read_bytes()

    def _sync_dir(self, path: Path) -> None:
        with os.scandir(path) as entries:
            self.dirs[os.stat(path).st_ino] = {
                e.name: (e.inode(), e.is_dir(follow_symlinks=False)) for e in entries if not e.is_symlink()
            }

    def fsync(self, fd: int) -> None:
        if self.cut_at is not None and self.syncs >= self.cut_at:
            raise PowerCut(f"power cut at fsync {self.cut_at}")
        self.syncs += 1
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        if not path.is_relative_to(self.root):
            return
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self._sync_dir(path)
        elif stat.S_ISREG(st.st_mode):
            with open(f"/proc/self/fd/{fd}", "rb") as f:  # the fd may be open write-only
                self.files[st.st_ino] = f.read()

    def image(self, dest: Path) -> Path:
        """The tree a restart after the cut would find, written under `dest`."""

        def build(ino: int, at: Path) -> None:
            at.mkdir(mode=0o700)
            for name, (child, is_dir) in self.dirs.get(ino, {}).items():
                if is_dir:
                    build(child, at / name)
                else:
                    (at / name).write_bytes(self.files.get(child, b""))
                    os.chmod(at / name, 0o600)

        build(self.root_ino, dest)
        return dest


@contextmanager
def watched(monkeypatch: pytest.MonkeyPatch, disk: Disk) -> Iterator[Disk]:
    with monkeypatch.context() as m:
        m.setattr(os, "fsync", disk.fsync)
        yield disk


def copies_of(template: Path, root: Path) -> Callable[[], Path]:
    """`fresh` for `every_cut`: each call makes `root` a new copy of `template` and returns it."""

    def fresh() -> Path:
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(template, root)
        return root

    return fresh


def every_cut(
    monkeypatch: pytest.MonkeyPatch,
    fresh: Callable[[], Path],
    work: Callable[[Path, list[str]], None],
    check: Callable[[Path, list[str], bool], None],
    tmp: Path,
) -> int:
    """Run `work(root, acked)` on a `fresh()` tree once to count its fsyncs, then once per cut
    point (before each fsync, and after the last), and `check(image, acked, finished)` the tree
    a restart would find. `work` appends to `acked` what it has acknowledged (a returned call).
    Returns the number of cut points tried."""
    root = fresh()
    with watched(monkeypatch, Disk(root)) as disk:
        work(root, [])
    total = disk.syncs
    for k in range(total + 1):
        root = fresh()
        acked: list[str] = []
        disk = Disk(root, cut_at=k)
        finished = False
        with watched(monkeypatch, disk):
            try:
                work(root, acked)
                finished = True
            except PowerCut:
                pass
        check(disk.image(tmp / f"after-cut-{k}"), acked, finished)
    return total + 1
