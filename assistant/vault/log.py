"""Episode log files: append-only framing of sealed records, and damage detection on read.

One file per epoch. A record is::

    magic "NCep" | length u32 | seq u64 | nonce 12 bytes | ciphertext+tag (length bytes)

sealed with AES-256-GCM under the epoch's data key, AAD = "nightcap-log" | format version |
epoch id | seq. A record therefore only opens at its own place (seq) in its own epoch: swapped,
replayed or transplanted records are detected, not merely unreadable.

`scan` reads a whole file and says what it found: the authentic records in file order, records
that authenticate under another live epoch (moved here), and damaged regions. A damaged region
with no authentic record after it is a *torn tail* when it looks like an interrupted append
(a prefix of a header, or a header whose declared length runs past the end of the file);
anything else is *corrupt*. Deciding what to do about it (quarantine, repair) is the vault's job.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import DiskFullError
from assistant.fsutil import FILE_MODE, fsync_dir
from assistant.vault import crypto

MAGIC = b"NCep"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">4sIQ")  # magic, length of ciphertext+tag, seq
HEADER_LEN = _HEAD.size + crypto.NONCE_LEN
MAX_RECORD = 64 * 1024 * 1024
"""Larger declared lengths are treated as damage rather than believed."""
MAX_PAYLOAD = MAX_RECORD - crypto.TAG_LEN
"""The largest record `encode_record` accepts: what the reader would believe."""


def record_aad(epoch: str, seq: int) -> bytes:
    ep = epoch.encode("utf-8")
    return b"nightcap-log" + struct.pack(">HH", FORMAT_VERSION, len(ep)) + ep + struct.pack(">Q", seq)


def encode_record(key: bytes, epoch: str, seq: int, payload: bytes) -> bytes:
    """One framed, sealed record. ValueError for a payload the reader would take for damage."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a record of {len(payload)} bytes is over the {MAX_PAYLOAD} a log can hold")
    sealed = crypto.seal(key, payload, record_aad(epoch, seq))
    nonce, body = sealed[: crypto.NONCE_LEN], sealed[crypto.NONCE_LEN :]
    return _HEAD.pack(MAGIC, len(body), seq) + nonce + body


@dataclass
class Record:
    """An authentic record found in a file (the payload is plaintext, in memory only)."""

    seq: int
    payload: bytes
    offset: int
    end: int


@dataclass
class Problem:
    """A damaged or out-of-place region of one log file."""

    kind: str
    """torn-tail, corrupt, reordered, duplicate, moved-out (a record of another epoch sits here)."""
    offset: int
    length: int
    detail: str = ""


@dataclass
class Scan:
    """What one log file holds."""

    records: list[Record] = field(default_factory=list)
    foreign: list[tuple[str, Record]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    size: int = 0

    @property
    def clean(self) -> bool:
        return not self.problems and not self.foreign


def frame_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """(seq, end) if a complete, plausible frame starts at pos."""
    if len(data) - pos < HEADER_LEN:
        return None
    magic, length, seq = _HEAD.unpack_from(data, pos)
    if magic != MAGIC or length < crypto.TAG_LEN or length > MAX_RECORD:
        return None
    end = pos + HEADER_LEN + length
    return (seq, end) if end <= len(data) else None


def open_at(data: bytes, pos: int, end: int, key: bytes, epoch: str, seq: int) -> bytes | None:
    sealed = data[pos + _HEAD.size : end]
    return crypto.unseal(key, sealed, record_aad(epoch, seq))


def _read(data: bytes, pos: int, epoch: str, key: bytes, others: dict[str, bytes]) -> tuple[str, Record] | None:
    """The record at pos and the epoch it authenticates under (home first), or None."""
    frame = frame_at(data, pos)
    if frame is None:
        return None
    seq, end = frame
    for owner, k in [(epoch, key), *others.items()]:
        payload = open_at(data, pos, end, k, owner, seq)
        if payload is not None:
            return owner, Record(seq, payload, pos, end)
    return None


def looks_torn(rest: bytes) -> bool:
    """Whether trailing bytes look like an append cut short (not like altered data)."""
    if len(rest) < len(MAGIC):
        return MAGIC.startswith(rest)
    if rest[: len(MAGIC)] != MAGIC:
        return False
    if len(rest) < _HEAD.size:
        return True
    _, length, _ = _HEAD.unpack_from(rest, 0)
    return crypto.TAG_LEN <= length <= MAX_RECORD and HEADER_LEN + length > len(rest)


def scan(data: bytes, epoch: str, key: bytes, others: dict[str, bytes] | None = None, start: int = 0) -> Scan:
    """Walk `data` from `start`, resynchronising on the magic after any damaged region."""
    others = {k: v for k, v in (others or {}).items() if k != epoch}
    out = Scan(size=len(data))
    pos = start
    while pos < len(data):
        found = _read(data, pos, epoch, key, others)
        if found is None:
            nxt = data.find(MAGIC, pos + 1)
            while nxt != -1 and _read(data, nxt, epoch, key, others) is None:
                nxt = data.find(MAGIC, nxt + 1)
            if nxt == -1:
                kind = "torn-tail" if looks_torn(data[pos:]) else "corrupt"
                out.problems.append(Problem(kind, pos, len(data) - pos))
                break
            out.problems.append(Problem("corrupt", pos, nxt - pos))
            pos = nxt
            continue
        owner, rec = found
        if owner == epoch:
            out.records.append(rec)
        else:
            out.foreign.append((owner, rec))
            out.problems.append(Problem("moved-out", rec.offset, rec.end - rec.offset, f"record of epoch {owner}"))
        pos = rec.end
    _check_order(out)
    return out


def _check_order(out: Scan) -> None:
    seen: set[int] = set()
    last = -1
    for rec in out.records:
        if rec.seq in seen:
            out.problems.append(Problem("duplicate", rec.offset, rec.end - rec.offset, f"seq {rec.seq} repeated"))
            continue
        if rec.seq < last:
            out.problems.append(Problem("reordered", rec.offset, rec.end - rec.offset, f"seq {rec.seq} after {last}"))
        seen.add(rec.seq)
        last = max(last, rec.seq)


def in_order(records: list[Record]) -> list[Record]:
    """Authentic records by seq, first copy of each seq kept."""
    unique: dict[int, Record] = {}
    for rec in records:
        unique.setdefault(rec.seq, rec)
    return [unique[s] for s in sorted(unique)]


def append_records(path: Path, blobs: list[bytes]) -> None:
    """Append framed records and fsync before returning: a returned append is durable."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    data = memoryview(b"".join(blobs))
    try:
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the disk holding {path.parent} is full; free some space and try again") from err
        raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
