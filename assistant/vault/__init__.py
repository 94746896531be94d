"""Nightcap's vault: encrypted episodic memory that can be destroyed for certain.

Every exchange becomes an `Episode` sealed into the open epoch's log under that epoch's own data
key; data keys are wrapped by a master key from the OS keyring or an Argon2id passphrase. Deletion
is cryptographic: shredding an epoch drops its key, rotates the master key, unlinks its files and
chains a tombstone onto the ledger. See "Vault and deletion" in DESIGN.md.

Modules: `crypto` (AEAD helpers), `masterkey` (keyring / passphrase), `keystore` (wrapped keys,
atomic rewrite), `log` (record framing, damage detection), `repair` (quarantine and recovery),
`ledger` (hash-chained tombstones), `views` (annotations, session summaries), `blobs` (sealed
binary state such as the sleep checkpoint), `evidence` (what the audit reads), `base` (what those
parts use of each other), `lock`, and `vault` (the facade).

Typical use::

    vault = Vault.open(Home.resolve())
    vault.append(episode)
    ...
    epoch = vault.close_epoch()                # the sleep cycle
    episodes = vault.read_epoch(epoch)
    report = vault.shred([epoch], reason="consolidated", generation="gen-0004")
"""

from assistant.errors import VaultError, WrongPassphrase
from assistant.vault.blobs import DamagedBlob
from assistant.vault.repair import Damage
from assistant.vault.shred import ShredReport
from assistant.vault.vault import NoVault, Vault
from assistant.vault.views import SessionSummary

__all__ = [
    "Damage",
    "DamagedBlob",
    "NoVault",
    "SessionSummary",
    "ShredReport",
    "Vault",
    "VaultError",
    "WrongPassphrase",
]
