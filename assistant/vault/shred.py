"""Destroying memories: shred whole epochs (after sleep) or forget one episode (on request).

The commit point of every destruction is a single atomic keystore write that drops the keys,
rotates the master key, rewraps the survivors and stages the tombstones. Unlinking the files and
chaining the tombstones onto the ledger come after it and are idempotent, so an interrupted shred
is finished on the next open (`Vault._sync` calls `_finish_shred` while tombstones are staged).
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.errors import VaultError
from assistant.fsutil import fsync_dir
from assistant.vault import crypto, views
from assistant.vault.base import VaultBase
from assistant.vault.derived import CHECKPOINT
from assistant.vault.keystore import EpochEntry, rewrap_all, wrap_key
from assistant.vault.repair import EpochState, rewrite, stat_of


def _encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


@dataclass
class ShredReport:
    """What a shred destroyed, for the sleep report. Counts and ids only, never content."""

    reason: str
    generation: str | None
    epochs: list[str]
    episodes: int
    records: int
    files_removed: int
    bytes_removed: int
    key_generation: int
    """Master-key generation after the rotation."""
    tombstones: list[str]
    """Ids of the ledger entries written."""
    carried: int = 0
    """Episodes annotated after they were read, moved to a new epoch instead of destroyed."""


def _sized(path: Path) -> tuple[int, tuple[int, int, int]]:
    stamp = stat_of(path)
    return stamp[0], stamp


def new_epoch_id() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


class Shredding(VaultBase):
    """The destructive half of `Vault` (a mixin: it works on the Vault's state, see base.py)."""

    def shred(
        self, epoch_ids: list[str], *, reason: str, generation: str | None = None, read: dict[str, int] | None = None
    ) -> ShredReport:
        """Destroy epochs: drop their keys and rotate the master key (one atomic keystore write),
        unlink their files, chain a tombstone per epoch onto the ledger.

        `read` maps an epoch to the number of its records that were consumed (a sleep read them).
        Episodes annotated after that (feedback given while the night trained) are not destroyed
        untrained: with all their records they move to a new closed epoch, sealed under a new key,
        which the next night learns."""
        with self._lock.held():
            self._sync()
            ids = list(dict.fromkeys(epoch_ids))
            unknown = [e for e in ids if self._ks.epoch(e) is None]
            if unknown:
                raise VaultError(f"epoch {', '.join(unknown)} is not in the vault; nothing was shredded")
            stones = [self._tombstone(e, reason, generation) for e in ids]
            files = [p for e in ids for p in self.epoch_files(e)]
            sizes = sum(p.stat().st_size for p in files if p.exists())
            carry = [c for c in (self._carry(s, (read or {}).get(s["epoch"])) for s in stones) if c is not None]
            self._commit(ids, [(new, key) for new, key, _ in carry], stones)
            for new, key, keep in carry:
                self._epochs[new.id] = EpochState(new.id, key, keep, *_sized(self._log(new.id)))
            self._finish_shred()
            return ShredReport(
                reason,
                generation,
                ids,
                sum(s["episodes"] for s in stones),
                sum(s["records"] for s in stones),
                len(files),
                sizes,
                self._ks.generation,
                [s["id"] for s in stones],
                sum(s.get("carried", 0) for s in stones),
            )

    def _carry(
        self, stone: dict[str, Any], consumed: int | None
    ) -> tuple[EpochEntry, bytes, list[dict[str, Any]]] | None:
        """The episodes of `stone`'s epoch annotated after its first `consumed` records, resealed
        in a new closed epoch (None: nothing to carry). Updates the tombstone's counts."""
        records = self._epochs[stone["epoch"]].records
        if consumed is None or consumed >= len(records):
            return None
        touched = {r.get("id") for r in records[consumed:] if r.get("t") == "annotation"}
        keep = [
            r
            for r in records
            if (r.get("t") == "episode" and r["episode"]["id"] in touched)
            or (r.get("t") == "annotation" and r.get("id") in touched)
        ]
        carried = len(views.episode_ids(keep))
        if not carried:
            return None
        entry = self._ks.epoch(stone["epoch"])
        assert entry is not None
        new = EpochEntry(new_epoch_id(), "closed", entry.created, "", entry.closed or time.time(), len(keep))
        key = crypto.new_key()
        # Written before the keystore knows its key: a crash leaves an orphan, removed on open.
        rewrite(self._log(new.id), new.id, key, [_encode(r) for r in keep])
        stone.update(episodes=stone["episodes"] - carried, carried=carried, replaced_by=new.id)
        return new, key, keep

    def forget(self, episode_id: str) -> None:
        """Remove one pending episode: its epoch is rewritten without it under a new key, and the
        old epoch (key, files) is shredded with a tombstone."""
        with self._lock.held():
            self._sync()
            state = self._epoch_of(episode_id)
            entry = self._ks.epoch(state.id)
            assert entry is not None
            keep = views.without(state.records, episode_id)
            stone = self._tombstone(state.id, "forget", None)
            stone["episodes"] = 1
            add: list[tuple[EpochEntry, bytes]] = []
            if views.episode_ids(keep):
                new = EpochEntry(
                    new_epoch_id(),
                    entry.state,
                    entry.created,
                    "",
                    entry.closed,
                    len(keep) if entry.records is not None else None,
                )
                key = crypto.new_key()
                # Written before the keystore knows its key: a crash leaves an orphan, removed on open.
                rewrite(self._log(new.id), new.id, key, [_encode(r) for r in keep])
                stone["replaced_by"] = new.id
                add.append((new, key))
            self._commit([state.id], add, [stone])
            for new, key in add:
                self._epochs[new.id] = EpochState(new.id, key, keep, *_sized(self._log(new.id)))
            self._finish_shred()
            # A paused night's checkpoint may have trained on it: it goes too.
            self.drop_blob(CHECKPOINT)

    def record_unlearning(self, *, reason: str, generation: str) -> ShredReport:
        """A ledger entry saying a consolidated memory was unlearned into `generation` (no epoch:
        its logs were destroyed by the night that learned it; never what was unlearned). The
        master key rotates, as with every destruction."""
        with self._lock.held():
            self._sync()
            stone: dict[str, Any] = {
                "id": uuid.uuid4().hex,
                "time": time.time(),
                "epoch": None,
                "reason": reason,
                "generation": generation,
                "episodes": 0,
                "records": 0,
            }
            self._commit([], [], [stone])
            self._finish_shred()
            return ShredReport(reason, generation, [], 0, 0, 0, 0, self._ks.generation, [stone["id"]])

    def _tombstone(self, epoch_id: str, reason: str, generation: str | None) -> dict[str, Any]:
        records = self._epochs[epoch_id].records
        return {
            "id": uuid.uuid4().hex,
            "time": time.time(),
            "epoch": epoch_id,
            "reason": reason,
            "generation": generation,
            "episodes": len(views.episode_ids(records)),
            "records": len(records),
        }

    def _commit(self, drop: list[str], add: list[tuple[EpochEntry, bytes]], stones: list[dict[str, Any]]) -> None:
        """The point of no return: one keystore write drops keys, rotates the KEK, stages tombstones."""
        ks, old_generation = copy.deepcopy(self._ks), self._ks.generation
        new_kek, generation = crypto.new_key(), old_generation + 1
        ks.epochs = [e for e in ks.epochs if e.id not in drop]
        rewrap_all(ks, self._kek, new_kek, generation)
        for entry, key in add:
            entry.wrapped = wrap_key(new_kek, key, ks.vault_id, entry.id, generation)
            ks.epochs.append(entry)
        ks.master = self._source.store(ks.vault_id, generation, new_kek)  # keyring: new entry first
        ks.pending_tombstones += [dict(s, key_generation=generation) for s in stones]
        if self._source.source == "keyring":  # the old key goes once this write is safe on disk
            ks.retiring = sorted(set(ks.retiring) | {old_generation})
        ks.save(self.keystore_path, new_kek)
        self._ks, self._kek, self._ks_stamp = ks, new_kek, self._stamp()
        for epoch_id in drop:
            self._epochs.pop(epoch_id, None)
        self._retire_old_keys()

    def _retire_old_keys(self) -> None:
        """Delete the master keys of the generations the keystore lists as retiring from the
        keyring, then clear the list. A keyring that refuses (a denied prompt) leaves them
        listed: the next open tries again, and the audit fails while any is left."""
        ks = self._ks
        done = []
        for generation in ks.retiring:
            try:
                self._source.retire(ks.vault_id, generation)
            except VaultError:
                break
            done.append(generation)
        self._keep_retiring([g for g in ks.retiring if g not in done])

    def _keep_retiring(self, retiring: list[int]) -> None:
        """Save the keystore with `retiring` as the generations still to delete, if that changes it."""
        if retiring != self._ks.retiring:
            fresh = copy.deepcopy(self._ks)
            fresh.retiring = retiring
            self._save(fresh)

    def sweep_master_keys(self) -> tuple[list[int], list[int]]:
        """Delete from the OS keyring every older master-key generation it still holds, whether
        the keystore lists it as retiring or not (one left by a crash between rotation and
        retirement, or by an older Nightcap). Probes each generation: meant for the audit, not
        for every open. Returns (deleted, refused); the refused stay listed to retry."""
        with self._lock.held():
            self._sync()
            ks = self._ks
            deleted, refused = [], []
            for generation in range(1, ks.generation):
                if not self._source.holds(ks.vault_id, generation):
                    continue
                try:
                    self._source.retire(ks.vault_id, generation)
                except VaultError:
                    refused.append(generation)
                    continue
                deleted.append(generation)
            self._keep_retiring(sorted(set(refused) | {g for g in ks.retiring if g not in deleted}))
            return deleted, refused

    def _finish_shred(self) -> None:
        """Unlink the staged epochs' files and write their tombstones (idempotent, so it can resume)."""
        stones = self._ks.pending_tombstones
        live = {e.id for e in self._ks.epochs}
        for stone in stones:
            if stone["epoch"] is not None and stone["epoch"] not in live:
                for path in self.epoch_files(stone["epoch"]):
                    path.unlink(missing_ok=True)
        fsync_dir(self.epochs_dir)
        if self.quarantine_dir.exists():
            fsync_dir(self.quarantine_dir)
        ledger = self._ledger()
        written = ledger.ids()
        fresh = [s for s in stones if s["id"] not in written]
        # Checked against the keystore's head first: a deleted or cut ledger gets a gap entry.
        head = ledger.append(fresh, self._ks.ledger_head, {s["id"] for s in stones}) if fresh else ledger.head()
        ks = copy.deepcopy(self._ks)
        ks.pending_tombstones, ks.ledger_head = [], head
        self._save(ks)
