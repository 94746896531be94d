"""Helpers shared by the vault tests: small episodes and whole-directory snapshots."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from assistant.episode import Episode

_clock = itertools.count()


def episode(user: str = "hello", reply: str = "hi", session: str = "s1") -> Episode:
    """An exchange with a strictly increasing start time, so pending() order is predictable."""
    return Episode.from_exchange(session, user, reply, "gen-0000", time.time() + next(_clock) * 1e-3)


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file under `root` and its bytes."""
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def restore(root: Path, snap: dict[Path, bytes]) -> None:
    """Put `root` back exactly as snapshotted (extra files removed)."""
    for p in sorted(root.rglob("*"), reverse=True):
        if p.is_file() and p not in snap:
            p.unlink()
    for p, data in snap.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
