"""The Vault: Nightcap's encrypted episodic memory, and the only way to destroy it.

Layout under ``home/vault/``::

    keystore.json        master-key header, wrapped data keys, staged tombstones (see keystore.py)
    ledger.jsonl         hash-chained tombstones of shredded epochs (see ledger.py)
    epochs/<id>.log      one append-only sealed log per live epoch (see log.py)
    blobs/<name>.bin     sealed binary state such as the sleep checkpoint (see blobs.py)
    quarantine/          untouched copies of logs that needed repair (see repair.py)
    .lock                held by whichever Nightcap process is using the vault

Episodes go into the open epoch; a sleep cycle closes it, reads it, and shreds it once the new
model is promoted. Every operation holds the lock and first catches up with changes made by other
processes (a chat and the sleep daemon run side by side). Plaintext exists only in memory.
"""

from __future__ import annotations

import contextlib
import copy
import os
import secrets
import time
from pathlib import Path
from typing import Any, Iterator

from assistant.config import Config
from assistant.episode import Episode, Message
from assistant.errors import VaultError
from assistant.fsutil import ensure_dir
from assistant.home import Home
from assistant.vault import crypto, log, views
from assistant.vault.blobs import Blobs
from assistant.vault.evidence import Evidence
from assistant.vault.keystore import EpochEntry, Keystore, unwrap_key, wrap_key
from assistant.vault.lock import VaultLock
from assistant.vault.masterkey import (
    KeyringSource,
    MasterSource,
    choose_for_new_vault,
    keyring_mode,
    source_for_existing,
)
from assistant.vault.repair import Damage, EpochState, load_all, log_path, read_new, stat_of
from assistant.vault.shred import Shredding, new_epoch_id

KEYSTORE = "keystore.json"


class NoVault(VaultError):
    """No vault has been created in this home yet."""


class Vault(Shredding, Evidence, Blobs):
    """Open with `Vault.open(home)`; every method is safe to call from several processes.

    This file holds opening, catching up with the disk, and the awake side (append, annotate,
    read); destruction is in shred.py, sealed blobs in blobs.py and the audit's view in evidence.py.
    """

    def __init__(self, home: Home, source: MasterSource, kek: bytes, ks: Keystore) -> None:
        self.home = home
        self.dir = home.vault
        self.keystore_path = self.dir / KEYSTORE
        self.ledger_path = self.dir / "ledger.jsonl"
        self.epochs_dir = ensure_dir(self.dir / "epochs")
        self.quarantine_dir = self.dir / "quarantine"
        self._lock = VaultLock(self.dir / ".lock")
        self._source = source
        self._kek = kek
        self._ks = ks
        self._ks_stamp: tuple[int, int, int] | None = None
        self._epochs: dict[str, EpochState] = {}
        self.damage: list[Damage] = []
        """Everything recovery found and repaired since this object was opened (see repair.py)."""

    @property
    def in_keyring(self) -> bool:
        """Whether the master key comes from the OS keyring: another process of this user can
        open the vault without a prompt."""
        return isinstance(self._source, KeyringSource)

    # --- opening ------------------------------------------------------------------------

    @staticmethod
    def exists(home: Home) -> bool:
        return (home.root / "vault" / KEYSTORE).exists()

    @classmethod
    def open(cls, home: Home, *, create: bool = True, passphrase: str | None = None) -> "Vault":
        """Unlock (or first create) the vault. Nothing on disk changes before the key is verified."""
        mode = keyring_mode(Config.load(home.config_file).vault.keyring)
        path = home.vault / KEYSTORE
        if not path.exists():
            vault = cls._create(home, mode, passphrase, create)
            if vault is not None:
                return vault
        # The passphrase (or keyring) is obtained outside the lock: a prompt must not block the
        # daemon. The KDF header never changes, but the wrapped master key does on rotation, so
        # it is read again under the lock.
        source = source_for_existing(Keystore.load(path).master, mode, passphrase)
        with VaultLock(home.vault / ".lock").held():
            ks = Keystore.load(path)
            kek = source.unlock(ks.vault_id, ks.master)
            ks.verify(kek, path)
        vault = cls(home, source, kek, ks)
        vault.reload()
        return vault

    @classmethod
    def _create(cls, home: Home, mode: str, passphrase: str | None, create: bool) -> "Vault | None":
        logs = list((home.vault / "epochs").glob("*.log")) if (home.vault / "epochs").exists() else []
        if logs:
            raise VaultError(
                f"the vault keystore is missing but {len(logs)} episode log(s) exist; restore {home.vault / KEYSTORE} from a backup (nothing was changed)"
            )
        if not create:
            raise NoVault("there is no vault yet: nothing has been remembered in this Nightcap home")
        source = choose_for_new_vault(mode, passphrase)
        with VaultLock(home.vault / ".lock").held():
            if (home.vault / KEYSTORE).exists():
                return None  # another process created it meanwhile: open that one
            vault_id, kek = secrets.token_hex(8), crypto.new_key()
            ks = Keystore(
                vault_id, source.store(vault_id, 1, kek), wrap_key(kek, crypto.new_key(), vault_id, "ledger", 1)
            )
            ks.save(home.vault / KEYSTORE, kek)
        vault = cls(home, source, kek, ks)
        vault.reload()
        return vault

    def reload(self) -> None:
        """Forget what is in memory and read the keystore and every log again (with recovery);
        retry deleting old master keys from the keyring if an earlier rotation could not."""
        with self._lock.held():
            self._epochs, self._ks_stamp = {}, None
            self._sync(full=True)
            if self._ks.retiring:
                self._retire_old_keys()

    # --- keeping up with the disk ------------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.keystore_path)
        except FileNotFoundError:
            raise VaultError(
                f"the vault keystore {self.keystore_path} disappeared; restore it from a backup and restart Nightcap"
            ) from None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _log(self, epoch_id: str) -> Path:
        return log_path(self.epochs_dir, epoch_id)

    def _save(self, ks: Keystore) -> None:
        ks.save(self.keystore_path, self._kek)
        self._ks, self._ks_stamp = ks, self._stamp()

    def _sync(self, full: bool = False) -> None:
        if self._stamp() != self._ks_stamp:
            ks = Keystore.load(self.keystore_path)
            if ks.vault_id != self._ks.vault_id:
                raise VaultError("the vault was replaced while Nightcap was running; restart Nightcap")
            kek = self._kek if ks.master == self._ks.master else self._source.unlock(ks.vault_id, ks.master)
            ks.verify(kek, self.keystore_path)
            self._ks, self._kek, self._ks_stamp = ks, kek, self._stamp()
        if self._ks.pending_tombstones:
            self._finish_shred()  # a shred was interrupted: roll it forward
        live = {e.id for e in self._ks.epochs}
        if full or set(self._epochs) != live or not all(read_new(s, self._log(s.id)) for s in self._epochs.values()):
            self._load_all()

    def _load_all(self) -> None:
        ks = self._ks
        keys = {e.id: unwrap_key(self._kek, e.wrapped, ks.vault_id, e.id, ks.generation) for e in ks.epochs}
        self._remove_orphans(set(keys))
        states, damage = load_all(self.epochs_dir, self.quarantine_dir, keys)
        fixed = copy.deepcopy(ks)
        for entry in fixed.epochs:
            n = len(states[entry.id].records)
            if entry.records is not None and n != entry.records:
                if n < entry.records:
                    damage.append(
                        Damage(
                            entry.id,
                            "missing",
                            states[entry.id].size,
                            0,
                            f"{entry.records - n} record(s) gone from the end of the closed log",
                            None,
                        )
                    )
                entry.records = n
        # Recorded in the same write that accepts the new counts: a repair is never silent.
        fixed.repairs += [d.record() for d in damage]
        if fixed.epochs != ks.epochs or damage:
            self._save(fixed)
        self._epochs = states
        self.damage += damage

    def _remove_orphans(self, live: set[str]) -> None:
        """Files whose key is gone can never be read again; temp files may hold old keys."""
        for folder in (self.dir, self.epochs_dir, self.quarantine_dir):
            if not folder.exists():
                continue
            for path in folder.iterdir():
                epoch = path.name.split(".", 1)[0]
                stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
                orphan = folder != self.dir and path.suffix == ".log" and epoch not in live
                if path.is_file() and (stale_tmp or orphan):
                    path.unlink(missing_ok=True)
        self._remove_blob_orphans()

    def _epoch_of(self, episode_id: str) -> EpochState:
        for state in self._epochs.values():
            if episode_id in views.episode_ids(state.records):
                return state
        raise VaultError(f"no pending memory has id {episode_id}; see `nightcap memories list`")

    def _append(self, state: EpochState, payloads: list[bytes]) -> None:
        too_big = [len(p) for p in payloads if len(p) > log.MAX_PAYLOAD]
        if too_big:  # it would be sealed, then read back as damage and dropped: refuse it instead
            raise VaultError(
                f"an exchange of {too_big[0] >> 20} MiB is over the {round(log.MAX_PAYLOAD / 2**20)} MiB "
                "the vault keeps per exchange; nothing of it was saved: shorten it"
            )
        first = len(state.records)
        blobs = [log.encode_record(state.key, state.id, first + i, p) for i, p in enumerate(payloads)]
        log.append_records(self._log(state.id), blobs)
        state.records += [views.decode(p) for p in payloads]
        state.stamp = stat_of(self._log(state.id))
        state.size = state.stamp[0]

    def _open_epoch(self) -> EpochState:
        entry = self._ks.open_epoch
        if entry is None:
            ks, key = copy.deepcopy(self._ks), crypto.new_key()
            entry = EpochEntry(new_epoch_id(), "open", time.time(), "")
            entry.wrapped = wrap_key(self._kek, key, ks.vault_id, entry.id, ks.generation)
            ks.epochs.append(entry)
            self._save(ks)
            self._epochs[entry.id] = EpochState(entry.id, key, [], 0, stat_of(self._log(entry.id)))
        return self._epochs[entry.id]

    # --- the awake side ------------------------------------------------------------------------

    def append(self, episode: Episode) -> None:
        """Seal one episode into the open epoch; durable (fsynced) when this returns."""
        self.append_many([episode])

    def append_many(self, episodes: list[Episode]) -> None:
        """Seal several episodes with one write and one fsync (imports)."""
        if not episodes:
            return
        with self._lock.held():
            self._sync()
            self._append(self._open_epoch(), [views.episode_payload(ep) for ep in episodes])

    def annotate(self, episode_id: str, **changes: Any) -> None:
        """Later feedback on a pending episode: flags=[...], remove_flags=[...], correction=str, importance=float.

        Stored as an annotation record in the episode's own epoch and applied on read. A
        correction also sets the "correction" flag; changed flags recompute importance unless it
        is given.
        """
        payload = views.annotation_payload(episode_id, dict(changes))
        with self._lock.held():
            self._sync()
            state = self._epoch_of(episode_id)
            self._append(state, [payload])
            entry = self._ks.epoch(state.id)
            if entry is not None and entry.records is not None:
                ks = copy.deepcopy(self._ks)
                ks.epoch(state.id).records = len(state.records)  # type: ignore[union-attr]
                self._save(ks)

    def _ordered(self) -> list[EpochEntry]:
        return sorted(self._ks.epochs, key=lambda e: e.created)

    def pending(self) -> list[Episode]:
        """Every episode not yet consolidated (open and closed epochs), annotations applied, by time."""
        with self._lock.held():
            self._sync()
            episodes = [ep for entry in self._ordered() for ep in views.episodes_of(self._epochs[entry.id].records)]
        episodes.sort(key=lambda ep: ep.started)
        return episodes

    def session_history(self, session: str) -> list[Message]:
        """The messages of one pending conversation, in order (to continue it)."""
        return [dict(m) for ep in self.pending() if ep.session == session for m in ep.messages]

    def sessions(self) -> list[views.SessionSummary]:
        """Pending conversations, most recently active first."""
        return views.summarize(self.pending())

    # --- the sleep side ------------------------------------------------------------------------

    def close_epoch(self) -> str | None:
        """Close the open epoch if it holds anything; later appends start a new one."""
        with self._lock.held():
            self._sync()
            entry = self._ks.open_epoch
            if entry is None or not self._epochs[entry.id].records:
                return None
            ks = copy.deepcopy(self._ks)
            closing = ks.epoch(entry.id)
            assert closing is not None
            closing.state, closing.closed, closing.records = "closed", time.time(), len(self._epochs[entry.id].records)
            self._save(ks)
            return entry.id

    def closed_epochs(self) -> list[str]:
        """Closed epochs not yet shredded, oldest first."""
        with self._lock.held():
            self._sync()
            return [e.id for e in self._ordered() if e.state == "closed"]

    def consume(self, epoch_ids: list[str], upto: dict[str, int] | None = None) -> tuple[list[Episode], dict[str, int]]:
        """What a sleep learns: the episodes of closed epochs (as `read_epoch`), and how many
        records each epoch held when read, for `shred(read=...)` to keep later feedback.
        `upto` reads only the first records of an epoch (a resumed night reads what it read)."""
        with self._lock.held():
            self._sync()
            missing = [e for e in epoch_ids if e not in self._epochs]
            if missing:
                raise VaultError(f"epoch {missing[0]} is not in the vault; it may already have been consolidated")
            counts = {
                e: min(len(self._epochs[e].records), (upto or {}).get(e, len(self._epochs[e].records)))
                for e in epoch_ids
            }
            episodes = [ep for e in epoch_ids for ep in views.episodes_of(self._epochs[e].records[: counts[e]])]
            return episodes, counts

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Hold the vault across several operations: no other process appends, annotates,
        forgets or shreds meanwhile (sleep checks and promotes under it)."""
        with self._lock.held():
            yield

    def read_epoch(self, epoch_id: str) -> list[Episode]:
        """The episodes of one live epoch, annotations applied, in log order."""
        with self._lock.held():
            self._sync()
            state = self._epochs.get(epoch_id)
            if state is None:
                raise VaultError(f"epoch {epoch_id} is not in the vault; it may already have been consolidated")
            return views.episodes_of(state.records)
