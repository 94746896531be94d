"""The keystore: one JSON file holding every key the vault has, all wrapped by the master key.

It records the master-key section (source, generation, KDF header), the ledger's MAC key, one
entry per live epoch (open or closed) with its data key sealed by the KEK, and one entry per
sealed blob (see blobs.py); AES-GCM's associated data binds each wrapped key to the vault, its
epoch id or blob name and the key generation, so a key cannot be replayed under another owner or
an older generation. The whole file carries an HMAC under the
KEK, so an edited state (an epoch reopened, a tombstone dropped) is refused.

It is rewritten atomically (temp file, fsync, rename, fsync dir): dropping an epoch's key,
rotating the KEK and rewrapping every survivor happen in one replacement. Tombstones for a shred
are staged here (`pending_tombstones`) in that same write, so a crash before the ledger is
updated is rolled forward on the next open.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import VaultError
from assistant.fsutil import atomic_write_bytes
from assistant.vault import crypto

FORMAT = 1


@dataclass
class EpochEntry:
    """One live epoch: its state and its wrapped data key."""

    id: str
    state: str
    """"open" (collecting episodes) or "closed" (waiting for a sleep cycle)."""
    created: float
    wrapped: str
    closed: float | None = None
    records: int | None = None
    """Records in the log, tracked once the epoch is closed, so a log cut short is noticed."""


@dataclass
class BlobEntry:
    """One sealed blob: its name and wrapped data key."""

    name: str
    wrapped: str
    created: float
    size: int = 0
    """Plaintext bytes, for the audit's listing."""
    about: str = ""
    """What the blob derives from (a generation's sha256), readable without decrypting it."""


@dataclass
class Keystore:
    """The decoded keystore file. Keys stay wrapped; see `wrap_key`/`unwrap_key`."""

    vault_id: str
    master: dict[str, Any]
    ledger_key: str
    epochs: list[EpochEntry] = field(default_factory=list)
    pending_tombstones: list[dict[str, Any]] = field(default_factory=list)
    ledger_head: dict[str, Any] = field(default_factory=lambda: {"count": 0, "hash": ""})
    blobs: list[BlobEntry] = field(default_factory=list)
    repairs: list[dict[str, Any]] = field(default_factory=list)
    """What recovery found and repaired in the logs (epoch, kind, counts; never content), kept so
    that whichever process opens the vault first, the audit still reports it."""
    retiring: list[int] = field(default_factory=list)
    """Older master-key generations still to delete from the OS keyring: listed in the same write
    that rotates the key, cleared once the keyring confirms, retried on every open until then."""
    format: int = FORMAT
    mac: str = ""
    """HMAC of everything else under a subkey of the KEK (checked once the KEK is known)."""

    @property
    def generation(self) -> int:
        return int(self.master["generation"])

    def epoch(self, epoch_id: str) -> EpochEntry | None:
        return next((e for e in self.epochs if e.id == epoch_id), None)

    def blob(self, name: str) -> BlobEntry | None:
        return next((b for b in self.blobs if b.name == name), None)

    @property
    def open_epoch(self) -> EpochEntry | None:
        return next((e for e in self.epochs if e.state == "open"), None)

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data["epochs"] = [asdict(e) for e in self.epochs]
        # An empty `about` is left out, so keystores written before it existed keep a valid MAC.
        data["blobs"] = [{k: v for k, v in asdict(b).items() if k != "about" or v} for b in self.blobs]
        for optional in ("blobs", "retiring", "repairs"):
            if not data[optional]:
                data.pop(optional)  # so keystores written before these fields existed keep a valid MAC
        data.pop("mac")
        return data

    @classmethod
    def load(cls, path: Path) -> "Keystore":
        """Parse the file; a damaged one is a VaultError and is never overwritten."""
        try:
            data = json.loads(path.read_bytes())
            if data.get("format") != FORMAT:
                raise VaultError(
                    f"{path} has format {data.get('format')!r}, which this Nightcap cannot read; upgrade Nightcap"
                )
            data["epochs"] = [EpochEntry(**e) for e in data["epochs"]]
            data["blobs"] = [BlobEntry(**b) for b in data.get("blobs", [])]
            return cls(**data)
        except VaultError:
            raise
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise VaultError(
                f"the vault keystore {path} is unreadable or damaged; restore it from a backup (nothing was changed)"
            ) from err

    def save(self, path: Path, kek: bytes) -> None:
        """Atomic replacement, MACed under the KEK."""
        body = self.body()
        self.mac = body["mac"] = crypto.mac(crypto.subkey(kek, "keystore-mac"), crypto.canonical(body))
        atomic_write_bytes(path, (json.dumps(body, indent=1, sort_keys=True) + "\n").encode("ascii"))

    def verify(self, kek: bytes, path: Path) -> None:
        """Check the MAC under `kek`; VaultError if the file was edited outside Nightcap."""
        key = crypto.subkey(kek, "keystore-mac")
        if not isinstance(self.mac, str) or not crypto.mac_ok(key, crypto.canonical(self.body()), self.mac):
            raise VaultError(
                f"the vault keystore {path} was altered outside Nightcap; restore it from a backup (nothing was changed)"
            )


def _key_aad(vault_id: str, owner: str, generation: int) -> bytes:
    return crypto.canonical({"purpose": "data-key", "vault": vault_id, "epoch": owner, "generation": generation})


def wrap_key(kek: bytes, key: bytes, vault_id: str, owner: str, generation: int) -> str:
    """Seal a data key (owner = epoch id, or "ledger") for one key generation."""
    return crypto.b64(crypto.seal(kek, key, _key_aad(vault_id, owner, generation)))


def unwrap_key(kek: bytes, wrapped: str, vault_id: str, owner: str, generation: int) -> bytes:
    key = crypto.unseal(kek, crypto.unb64(wrapped), _key_aad(vault_id, owner, generation))
    if key is None:
        raise VaultError(f"the vault keystore entry for {owner} does not unwrap; restore the keystore from a backup")
    return key


def _blob_aad(vault_id: str, name: str, generation: int) -> bytes:
    return crypto.canonical({"purpose": "blob-key", "vault": vault_id, "blob": name, "generation": generation})


def wrap_blob_key(kek: bytes, key: bytes, vault_id: str, name: str, generation: int) -> str:
    """Seal a blob's data key for one key generation."""
    return crypto.b64(crypto.seal(kek, key, _blob_aad(vault_id, name, generation)))


def unwrap_blob_key(kek: bytes, wrapped: str, vault_id: str, name: str, generation: int) -> bytes:
    key = crypto.unseal(kek, crypto.unb64(wrapped), _blob_aad(vault_id, name, generation))
    if key is None:
        raise VaultError(
            f"the vault keystore entry for the sealed {name} does not unwrap; restore the keystore from a backup"
        )
    return key


def rewrap_all(ks: Keystore, old_kek: bytes, new_kek: bytes, new_generation: int) -> None:
    """Re-seal every surviving key under the new KEK and generation (in memory)."""
    old_generation = ks.generation
    for entry in ks.epochs:
        key = unwrap_key(old_kek, entry.wrapped, ks.vault_id, entry.id, old_generation)
        entry.wrapped = wrap_key(new_kek, key, ks.vault_id, entry.id, new_generation)
    for blob in ks.blobs:
        key = unwrap_blob_key(old_kek, blob.wrapped, ks.vault_id, blob.name, old_generation)
        blob.wrapped = wrap_blob_key(new_kek, key, ks.vault_id, blob.name, new_generation)
    ledger_key = unwrap_key(old_kek, ks.ledger_key, ks.vault_id, "ledger", old_generation)
    ks.ledger_key = wrap_key(new_kek, ledger_key, ks.vault_id, "ledger", new_generation)
