"""Loading every live epoch's log, with damage quarantined and reported, never skipped silently.

Recovery never destroys bytes: whenever a log is not exactly its records in order, the original
file is first copied into ``vault/quarantine/`` (it is ciphertext, and it is unlinked when its
epoch is shredded), then the log is atomically rewritten with the authentic records re-sealed in
seq order. Each finding becomes a `Damage` the caller reports. What is recovered:

* torn tail (an interrupted append, never acknowledged): cut off;
* corrupt region followed by authentic records: the records after it are kept;
* swapped / duplicated records: put back in seq order, one copy each;
* a record moved into another epoch's log: found by its AAD and returned to its own epoch.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import VaultError
from assistant.fsutil import atomic_write_bytes, ensure_dir
from assistant.vault import log, views


@dataclass
class Damage:
    """One finding of a log scan, as reported to the user and the audit (no content)."""

    epoch: str
    kind: str
    """torn-tail, corrupt, reordered, duplicate, moved-out, moved-in or missing."""
    offset: int
    length: int
    detail: str
    quarantined: str | None
    """Where the untouched original log was copied, if it was."""

    def record(self) -> dict[str, Any]:
        """What the keystore keeps of this finding (`Keystore.repairs`)."""
        return {
            "time": time.time(),
            "epoch": self.epoch,
            "kind": self.kind,
            "bytes": self.length,
            "detail": self.detail,
            "quarantined": self.quarantined is not None,
        }

    def describe(self) -> str:
        where = f" (original kept at {self.quarantined})" if self.quarantined else ""
        extra = f": {self.detail}" if self.detail else ""
        return f"epoch {self.epoch}: {self.kind} at byte {self.offset}, {self.length} bytes{extra}{where}"


@dataclass
class EpochState:
    """A live epoch as held in memory: its key and decoded records in seq order."""

    id: str
    key: bytes
    records: list[dict[str, Any]]
    size: int
    """Bytes of the log file already read."""
    stamp: tuple[int, int, int]
    """(size, inode, mtime_ns) of the log when last read, to notice other writers."""


def log_path(epochs_dir: Path, epoch_id: str) -> Path:
    return epochs_dir / f"{epoch_id}.log"


def stat_of(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0, 0, 0
    return st.st_size, st.st_ino, st.st_mtime_ns


def _decode(records: list[log.Record], epoch: str) -> list[dict[str, Any]]:
    try:
        return [views.decode(r.payload) for r in records]
    except ValueError as err:
        raise VaultError(
            f"a record of epoch {epoch} authenticates but does not decode; this Nightcap cannot read it"
        ) from err


def quarantine(quarantine_dir: Path, epoch: str, data: bytes) -> Path:
    ensure_dir(quarantine_dir)
    path = quarantine_dir / f"{epoch}.{int(time.time() * 1000)}.{secrets.token_hex(2)}.log"
    atomic_write_bytes(path, data)
    return path


def rewrite(path: Path, epoch: str, key: bytes, payloads: list[bytes]) -> int:
    """Replace a log with `payloads` sealed as seq 0..n-1; returns the new size."""
    data = b"".join(log.encode_record(key, epoch, seq, p) for seq, p in enumerate(payloads))
    atomic_write_bytes(path, data)
    return len(data)


def load_all(
    epochs_dir: Path, quarantine_dir: Path, keys: dict[str, bytes]
) -> tuple[dict[str, EpochState], list[Damage]]:
    """Scan every live epoch's log, repair what needs it, and return the decoded state."""
    originals: dict[str, bytes] = {}
    scans: dict[str, log.Scan] = {}
    for eid, key in keys.items():
        path = log_path(epochs_dir, eid)
        originals[eid] = path.read_bytes() if path.exists() else b""
        scans[eid] = log.scan(originals[eid], eid, key, keys)

    incoming: dict[str, list[log.Record]] = {eid: [] for eid in keys}
    for sc in scans.values():
        for owner, rec in sc.foreign:
            incoming[owner].append(rec)

    states: dict[str, EpochState] = {}
    damage: list[Damage] = []
    for eid, key in keys.items():
        sc = scans[eid]
        own = log.in_order(sc.records)
        have = {r.seq for r in own}
        moved_in = [r for r in log.in_order(incoming[eid]) if r.seq not in have]
        merged = sorted(own + moved_in, key=lambda r: r.seq)
        problems = list(sc.problems)
        problems += [
            log.Problem("moved-in", r.offset, r.end - r.offset, f"seq {r.seq} found in another epoch's log")
            for r in moved_in
        ]
        if merged:
            missing = sorted(set(range(merged[-1].seq + 1)) - {r.seq for r in merged})
            if missing:
                problems.append(log.Problem("missing", 0, 0, f"{len(missing)} record(s) gone, first seq {missing[0]}"))
        path = log_path(epochs_dir, eid)
        if problems:
            kept = quarantine(quarantine_dir, eid, originals[eid]) if originals[eid] else None
            rewrite(path, eid, key, [r.payload for r in merged])
            damage += [Damage(eid, p.kind, p.offset, p.length, p.detail, str(kept) if kept else None) for p in problems]
        stamp = stat_of(path)
        states[eid] = EpochState(eid, key, _decode(merged, eid), stamp[0], stamp)
    return states, damage


def read_new(state: EpochState, path: Path) -> bool:
    """Extend `state` with records appended by another process; False if a full load is needed."""
    stamp = stat_of(path)
    if stamp == state.stamp:
        return True
    size, ino, _ = stamp
    if ino != state.stamp[1] or size <= state.size:
        return False  # replaced or rewritten in place: read it all again
    data = path.read_bytes()
    sc = log.scan(data, state.id, state.key, start=state.size)
    expected = list(range(len(state.records), len(state.records) + len(sc.records)))
    if not sc.clean or [r.seq for r in sc.records] != expected:
        return False
    state.records += _decode(sc.records, state.id)
    state.size, state.stamp = len(data), stamp
    return True
