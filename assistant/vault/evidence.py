"""What the privacy audit checks, read from a live vault: keys held, master-key facts, files,
the ledger, and whether leftover ciphertext still opens with any key the vault holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from assistant.vault import blobs, log
from assistant.vault.base import VaultBase
from assistant.vault.keystore import unwrap_key
from assistant.vault.ledger import GAP, Ledger


class Evidence(VaultBase):
    """The audit-facing half of `Vault` (a mixin: it works on the Vault's state, see base.py)."""

    def _ledger(self) -> Ledger:
        ks = self._ks
        return Ledger(self.ledger_path, unwrap_key(self._kek, ks.ledger_key, ks.vault_id, "ledger", ks.generation))

    def ledger(self) -> list[dict[str, Any]]:
        """Tombstones, oldest first (a gap entry is no tombstone: `ledger_problems` reports it)."""
        with self._lock.held():
            self._sync()
            return [e for e in self._ledger().entries() if e.get("reason") != GAP]

    def ledger_problems(self) -> list[str]:
        """Why the ledger fails to verify; empty when it verifies."""
        with self._lock.held():
            self._sync()
            staged = {s["id"] for s in self._ks.pending_tombstones}
            return self._ledger().problems(self._ks.ledger_head, staged)

    def verify_ledger(self) -> bool:
        return not self.ledger_problems()

    @property
    def key_generation(self) -> int:
        return self._ks.generation

    def key_ids(self) -> list[str]:
        """Epochs whose data keys the keystore holds (every live epoch)."""
        with self._lock.held():
            self._sync()
            return [e.id for e in self._ordered()]

    def master_info(self) -> dict[str, Any]:
        """Key hygiene facts: source (keyring | passphrase), backend, KDF parameters, generation."""
        return dict(self._source.describe(), generation=self._ks.generation, vault_id=self._ks.vault_id)

    def repairs(self) -> list[dict[str, Any]]:
        """Every repair recovery made to the logs, oldest first (no content)."""
        with self._lock.held():
            self._sync()
            return [dict(r) for r in self._ks.repairs]

    def kdf_params(self) -> dict[str, Any] | None:
        return self._source.describe()["kdf"]

    def files(self) -> list[Path]:
        """Every file the vault keeps."""
        return sorted(p for p in self.dir.rglob("*") if p.is_file())

    def epoch_files(self, epoch_id: str) -> list[Path]:
        """The log and any quarantined copies of one epoch."""
        found = [self._log(epoch_id)] if self._log(epoch_id).exists() else []
        if self.quarantine_dir.exists():
            found += sorted(self.quarantine_dir.glob(f"{epoch_id}.*"))
        return found

    def _held_keys(self, epoch_ids: list[str] | None) -> tuple[list[bytes], set[str]]:
        """Every key the vault holds, and every epoch id it knows (for the records' AAD)."""
        ks = self._ks
        ledger_key = unwrap_key(self._kek, ks.ledger_key, ks.vault_id, "ledger", ks.generation)
        keys = [s.key for s in self._epochs.values()] + self._blob_keys() + [self._kek, ledger_key]
        epochs = set(self._epochs) | {str(e["epoch"]) for e in self._ledger().entries() if e.get("epoch")}
        epochs |= set(epoch_ids or [])
        return keys, epochs

    def decrypts(self, data: bytes, epoch_ids: list[str] | None = None, max_frames: int = 256) -> bool:
        """Whether any record or sealed blob in `data` opens with any key the vault holds (data
        keys, blob keys, master key, ledger key); log records are tried under the AAD of every
        epoch the vault knows (live, tombstoned, or `epoch_ids`)."""
        with self._lock.held():
            self._sync()
            keys, epochs = self._held_keys(epoch_ids)
        if _opened(data, keys, sorted(epochs), max_frames, first=True):
            return True
        pos, frames = data.find(blobs.MAGIC), 0
        while pos != -1 and frames < max_frames:
            if blobs.frame_at(data, pos) is not None:
                frames += 1
                if any(blobs.open_at(data, pos, k) is not None for k in keys):
                    return True
            pos = data.find(blobs.MAGIC, pos + 1)
        return False

    def opened_epochs(self, data: bytes, epoch_ids: list[str], max_frames: int = 256) -> set[str]:
        """Which of `epoch_ids` have a log record in `data` that some key the vault holds opens.

        The audit's test for leftover ciphertext: for a shredded epoch the answer must be empty.
        """
        with self._lock.held():
            self._sync()
            keys, _ = self._held_keys(None)
        return _opened(data, keys, list(dict.fromkeys(epoch_ids)), max_frames, first=False)

    def copy_keys(self, data: bytes) -> dict[str, bytes] | None:
        """If `data` is a keystore (a copy: the audit finds them anywhere under the home), the
        data keys it gives for epochs this vault no longer holds, when it opens with this vault's
        key source (the passphrase, or a keyring entry of its generation that is still there);
        {} when it does not open. None when `data` is no keystore."""
        import json

        try:
            doc = json.loads(data)
            master, vault_id, entries = doc["master"], str(doc["vault_id"]), list(doc["epochs"])
            generation = int(master["generation"])
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            return None
        with self._lock.held():
            self._sync()
            live = set(self._epochs)
        try:
            kek = self._source.unlock(vault_id, master)
        except Exception:  # noqa: BLE001 - any failure to unlock means the copy does not open
            return {}
        out: dict[str, bytes] = {}
        for entry in entries:
            epoch = str(entry.get("id")) if isinstance(entry, dict) else ""
            if epoch and epoch not in live:
                try:
                    out[epoch] = unwrap_key(kek, str(entry.get("wrapped")), vault_id, epoch, generation)
                except Exception:  # noqa: BLE001 - a damaged entry gives no key
                    continue
        return out

    @staticmethod
    def sealed_frames(data: bytes) -> bool:
        """Whether `data` holds a framed log record or sealed blob (a copy of vault contents)."""
        pos = data.find(log.MAGIC)
        while pos != -1:
            if log.frame_at(data, pos) is not None:
                return True
            pos = data.find(log.MAGIC, pos + 1)
        pos = data.find(blobs.MAGIC)
        while pos != -1:
            if blobs.frame_at(data, pos) is not None:
                return True
            pos = data.find(blobs.MAGIC, pos + 1)
        return False

    @staticmethod
    def opens_with(data: bytes, keys: dict[str, bytes], max_frames: int = 256) -> set[str]:
        """Which epochs of `keys` (epoch -> data key) have a record in `data` that opens."""
        found: set[str] = set()
        for epoch, key in keys.items():
            found |= _opened(data, [key], [epoch], max_frames, first=True)
        return found

    def blob_info(self) -> list[dict[str, Any]]:
        """Name, size and sealing time of every sealed blob (no content)."""
        with self._lock.held():
            self._sync()
            return [{"name": b.name, "size": b.size, "created": b.created} for b in self._ks.blobs]


def _opened(data: bytes, keys: list[bytes], epochs: list[str], max_frames: int, first: bool) -> set[str]:
    """Epochs under whose AAD some framed record in `data` opens with one of `keys`."""
    found: set[str] = set()
    pos, frames = data.find(log.MAGIC), 0
    while pos != -1 and frames < max_frames:
        frame = log.frame_at(data, pos)
        if frame is not None:
            frames += 1
            seq, end = frame
            for epoch in epochs:
                if epoch not in found and any(log.open_at(data, pos, end, k, epoch, seq) is not None for k in keys):
                    found.add(epoch)
                    if first:
                        return found
        pos = data.find(log.MAGIC, pos + 1)
    return found
