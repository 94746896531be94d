"""What the parts of `Vault` share: its paths, its in-memory state, and the methods each part calls
on the others.

`Vault` is assembled from mixins (`Shredding` in shred.py, `Evidence` in evidence.py, `Blobs` in
blobs.py) that work on the state vault.py opens and keeps in step with the disk. Each mixin
subclasses `VaultBase`, so every use it makes of another part is declared here with its real
signature; the methods are abstract, so `Vault` (which inherits from all of them) cannot be
created unless some part defines each one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from assistant.vault.keystore import EpochEntry, Keystore
    from assistant.vault.ledger import Ledger
    from assistant.vault.lock import VaultLock
    from assistant.vault.masterkey import MasterSource
    from assistant.vault.repair import EpochState


class VaultBase(ABC):
    """The members of `Vault` that its mixins use; the comment above each group says which part
    defines it."""

    # Paths and state, set by Vault.__init__ (vault.py).
    dir: Path
    keystore_path: Path
    ledger_path: Path
    epochs_dir: Path
    quarantine_dir: Path
    _lock: VaultLock
    _source: MasterSource
    _kek: bytes
    _ks: Keystore
    _ks_stamp: tuple[int, int, int] | None
    _epochs: dict[str, EpochState]

    # Keeping up with the disk (vault.py).
    @abstractmethod
    def _sync(self, full: bool = False) -> None:
        """Catch up with the keystore and logs as other processes left them (under the lock)."""

    @abstractmethod
    def _save(self, ks: Keystore) -> None:
        """Write `ks` as the keystore (atomically) and make it the one in memory."""

    @abstractmethod
    def _stamp(self) -> tuple[int, int, int]:
        """The keystore file's identity (inode, mtime, size), to notice changes by others."""

    @abstractmethod
    def _log(self, epoch_id: str) -> Path:
        """Where the log of `epoch_id` lives."""

    @abstractmethod
    def _epoch_of(self, episode_id: str) -> EpochState:
        """The live epoch holding `episode_id` (VaultError when none does)."""

    @abstractmethod
    def _ordered(self) -> list[EpochEntry]:
        """The keystore's live epochs, oldest first."""

    # The audit's view (evidence.py).
    @abstractmethod
    def _ledger(self) -> Ledger:
        """The tombstone ledger, opened with its key."""

    @abstractmethod
    def epoch_files(self, epoch_id: str) -> list[Path]:
        """The log and any quarantined copies of one epoch."""

    # Sealed blobs (blobs.py).
    @abstractmethod
    def drop_blob(self, name: str) -> None:
        """Destroy blob `name`: drop its key, then unlink its file."""

    @abstractmethod
    def _blob_keys(self) -> list[bytes]:
        """The data keys of every sealed blob."""
