"""The deletion ledger: a hash-chained, MACed list of tombstones, one per shredded epoch.

Each entry says what was destroyed and why (epoch id, reason, model generation, counts, the key
generation after the rotation), never what it contained. ``hash`` is SHA-256 over the entry's
canonical JSON including ``prev`` (the previous entry's hash), so editing, removing or reordering
an entry breaks the chain; ``mac`` is an HMAC of the hash under the ledger's own key (kept wrapped
in the keystore), so the chain cannot be recomputed by someone without the vault's keys. The
keystore also records the head (count and last hash), which catches a ledger cut short.

The file is JSON Lines, replaced atomically on each append (it grows by one line per night).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from assistant.fsutil import atomic_write_bytes
from assistant.vault import crypto

GENESIS = "0" * 64
GAP = "gap"
"""The reason of an entry that marks entries missing before it: never a tombstone, always a problem."""
_CHAIN_FIELDS = ("hash", "mac")


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k not in _CHAIN_FIELDS}
    return hashlib.sha256(crypto.canonical(body)).hexdigest()


class Ledger:
    """Read, extend and verify the tombstone ledger."""

    def __init__(self, path: Path, key: bytes) -> None:
        self.path = path
        self._key = crypto.subkey(key, "ledger-mac")

    def _lines(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def entries(self) -> list[dict[str, Any]]:
        """Every parseable entry, in order (see `problems` for integrity)."""
        out = []
        for line in self._lines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict):
                out.append(item)
        return out

    def ids(self) -> set[str]:
        return {str(e.get("id")) for e in self.entries()}

    def append(
        self, tombstones: list[dict[str, Any]], head: dict[str, Any] | None = None, staged: set[str] | None = None
    ) -> dict[str, Any]:
        """Chain `tombstones` onto the ledger (atomic rewrite); returns the new head.

        With `head` (the keystore's record of the last entry), a ledger that does not verify
        against it (deleted, cut short, edited) is not silently continued: a gap entry saying
        what was expected and what was found goes first, and `problems` reports it forever."""
        lines = self._lines()
        entries = self.entries()
        problems = self.problems(head, staged, gaps=False) if head is not None else []
        if problems:
            tombstones = [
                {
                    "id": uuid.uuid4().hex,
                    "time": time.time(),
                    "reason": GAP,
                    "epoch": None,
                    "generation": None,
                    "episodes": 0,
                    "records": 0,
                    "recorded_head": head,
                    "found": {"count": len(lines), "problems": problems[:5]},
                }
            ] + tombstones
        prev = entries[-1].get("hash", "") if entries else GENESIS
        for stone in tombstones:
            entry = dict(stone, index=len(entries), prev=prev)
            entry["hash"] = entry_hash(entry)
            entry["mac"] = crypto.mac(self._key, entry["hash"].encode("ascii"))
            lines.append(json.dumps(entry, sort_keys=True))
            entries.append(entry)
            prev = entry["hash"]
        atomic_write_bytes(self.path, ("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
        return {"count": len(entries), "hash": prev if entries else ""}

    def head(self) -> dict[str, Any]:
        entries = self.entries()
        return {"count": len(entries), "hash": entries[-1].get("hash", "") if entries else ""}

    def problems(
        self, head: dict[str, Any] | None = None, staged: set[str] | None = None, gaps: bool = True
    ) -> list[str]:
        """Why the ledger does not verify (empty list: it does).

        `head` is the keystore's record of the last entry; `staged` the ids of tombstones the
        keystore has staged but not yet recorded as written (a shred interrupted mid-way).
        `gaps=False` leaves out gaps already recorded (what `append` needs to know).
        """
        issues: list[str] = []
        prev = GENESIS
        lines = self._lines()
        for n, line in enumerate(lines):
            try:
                entry = json.loads(line)
                assert isinstance(entry, dict)
            except (ValueError, AssertionError):
                issues.append(f"ledger entry {n} is not valid JSON")
                prev = ""
                continue
            if entry.get("index") != n:
                issues.append(f"ledger entry {n} has index {entry.get('index')!r}")
            if entry.get("prev") != prev:
                issues.append(f"ledger entry {n} does not chain to the entry before it")
            if entry.get("hash") != entry_hash(entry):
                issues.append(f"ledger entry {n} was altered (hash mismatch)")
            elif not crypto.mac_ok(self._key, str(entry["hash"]).encode("ascii"), str(entry.get("mac", ""))):
                issues.append(f"ledger entry {n} has a bad MAC")
            prev = str(entry.get("hash", ""))
            if gaps and entry.get("reason") == GAP:
                recorded = entry.get("recorded_head") or {}
                found = entry.get("found") or {}
                issues.append(
                    f"ledger entry {n} records a gap: the keystore recorded {recorded.get('count')} "
                    f"entries before it and {found.get('count')} were found (deleted, cut short or edited)"
                )
        if head is not None:
            count = int(head.get("count", 0))
            if len(lines) < count:
                issues.append(
                    f"the ledger has {len(lines)} entries but the keystore recorded {count}: entries were removed"
                )
                return issues
            if count and _field(lines[count - 1], "hash") != head.get("hash"):
                issues.append("the ledger's entry at the recorded head differs from the keystore's record")
            for n in range(count, len(lines)):
                if _field(lines[n], "id") not in (staged or set()):
                    issues.append(f"ledger entry {n} is not recorded in the keystore")
        return issues


def _field(line: str, name: str) -> Any:
    try:
        item = json.loads(line)
    except ValueError:
        return None
    return item.get(name) if isinstance(item, dict) else None
