"""The paused night's training checkpoint, sealed in the vault.

A checkpoint (adapter, optimizer, RNG states) is derived from the user's conversations, so it is
kept exactly as safely as they are: encrypted under its own data key in the vault, and destroyed
with that key once the night completes or its data no longer matches.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from assistant.errors import SleepError
from assistant.vault.derived import CHECKPOINT as BLOB

if TYPE_CHECKING:
    from assistant.vault import Vault
    from sleep.train import TrainState


def save(vault: "Vault", state: "TrainState") -> None:
    """Seal the training state for the next cycle, with the epochs it read beside its key (so
    that `gathered` need not decrypt it)."""
    vault.seal_blob(BLOB, state.to_bytes(), about=json.dumps(state.gathered, sort_keys=True))


def load(vault: "Vault", fingerprint: str) -> "TrainState | None":
    """The saved state for this night's data and settings, or None.

    A checkpoint for other data (new episodes arrived, settings changed) is destroyed: the
    night starts over rather than mixing two nights' training.
    """
    state = _saved(vault, drop_unreadable=True)
    if state is None:
        return None
    if state.fingerprint != fingerprint:
        vault.drop_blob(BLOB)
        return None
    return state


def finished(vault: "Vault", night: str) -> "TrainState | None":
    """The saved state when it is the finished training of this night (`TrainState.night`),
    else None; a checkpoint of another night is left to `load` to judge."""
    state = _saved(vault, drop_unreadable=False)
    return state if state is not None and state.night and state.night == night else None


def _saved(vault: "Vault", *, drop_unreadable: bool) -> "TrainState | None":
    """The sealed state, or None: none saved, cut short or tampered with (dropped by the vault),
    or unreadable (dropped too with `drop_unreadable`)."""
    from sleep.train import TrainState

    data = vault.open_blob_or_discard(BLOB)  # cut short or tampered with: the night starts over
    if data is None:
        return None
    try:
        return TrainState.from_bytes(data)
    except SleepError:
        if drop_unreadable:
            vault.drop_blob(BLOB)
        return None


def gathered(vault: "Vault") -> dict[str, int]:
    """The epochs (and records of each) the saved night read; {} when there is no checkpoint."""
    from sleep.train import TrainState

    about = vault.blob_about(BLOB)
    if about:
        try:
            return {str(k): int(v) for k, v in json.loads(about).items()}
        except (ValueError, AttributeError, TypeError):
            return {}
    data = vault.open_blob_or_discard(BLOB)  # sealed before the keystore said what it read
    if data is None:
        return {}
    try:
        return dict(TrainState.from_bytes(data).gathered)
    except SleepError:
        return {}


def clear(vault: "Vault") -> None:
    """Destroy the checkpoint (crypto-shred its key, unlink its file)."""
    vault.drop_blob(BLOB)
