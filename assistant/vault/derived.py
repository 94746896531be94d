"""Sealed state derived from what the user said, and when it must go.

Sleep keeps three kinds of sealed blob in the vault, each derived from conversations:

- ``weight-master``: F16 copies of every tensor sleep has changed (`sleep.weights`), bound to
  the sha256 of the generation it produced;
- ``ewc-<sha>``: the diagonal Fisher of one generation (`sleep.ewc`), computed from that
  generation's weights;
- ``sleep-checkpoint``: a paused night's adapter and optimizer (`sleep.checkpoint`), trained on
  the pending episodes.

Each is only worth keeping while what it derives from serves or waits: a weight master or Fisher
of a generation that no longer serves (after `models rollback` or `use`) holds what that
generation learned; a checkpoint outlives its purpose once the model it trained on is switched
away from or an episode it trained on is forgotten. `stale` says which blobs are past that;
`drop_stale` destroys them (a rollback, a switch, a forget and each sleep call it), and the
audit fails while any is left.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.vault import Vault

WEIGHT_MASTER = "weight-master"
FISHER_PREFIX = "ewc-"
CHECKPOINT = "sleep-checkpoint"
SHA_CHARS = 32
"""Characters of a generation's sha256 in a Fisher's blob name."""


@dataclass
class Derived:
    """One sealed blob: what it derives from, and why it must go (None: it may stay)."""

    name: str
    derives_from: str
    stale: str | None


def master_generation(data: bytes) -> str:
    """The generation sha a weight master's bytes record (its safetensors metadata), or ""."""
    try:
        (n,) = struct.unpack_from("<Q", data, 0)
        meta = json.loads(bytes(data[8 : 8 + n])).get("__metadata__") or {}
        return str(meta.get("generation", ""))
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError):
        return ""


def describe(vault: "Vault", serving_sha: str | None, *, pending: bool, switched: bool = False) -> list[Derived]:
    """Every sealed blob with what it derives from. `serving_sha`: the serving generation's
    sha256; `pending`: whether any episode waits for sleep; `switched`: the serving generation
    has just changed (a checkpoint trained on the previous one is of no use)."""
    out = []
    sha = serving_sha or ""
    for name in vault.blob_names():
        if name == WEIGHT_MASTER:
            # The keystore says which generation it belongs to; only a master sealed before it
            # did is decrypted (about 200 MB for the default model) to read its own stamp.
            made = vault.blob_about(name)
            if not made:
                data = vault.open_blob_or_discard(name)
                made = master_generation(data) if data is not None else ""
            out.append(
                Derived(
                    name,
                    f"the generation with sha256 {made[:12] or '?'}",
                    None if made and made == sha else "it holds the weights of a generation that no longer serves",
                )
            )
        elif name.startswith(FISHER_PREFIX):
            made = name[len(FISHER_PREFIX) :]
            out.append(
                Derived(
                    name,
                    f"the generation with sha256 {made[:12]}",
                    None if sha[:SHA_CHARS] == made else "it was computed from a generation that no longer serves",
                )
            )
        elif name == CHECKPOINT:
            why = (
                "no episode it trained on is still pending"
                if not pending
                else "the model it trained switched"
                if switched
                else None
            )
            out.append(Derived(name, "the pending episodes (a paused night)", why))
        else:
            out.append(Derived(name, "unknown", "no part of Nightcap writes a blob of this name"))
    return out


def stale(vault: "Vault", serving_sha: str | None, *, pending: bool, switched: bool = False) -> list[Derived]:
    return [d for d in describe(vault, serving_sha, pending=pending, switched=switched) if d.stale]


def drop_stale(vault: "Vault", serving_sha: str | None, *, switched: bool = False) -> list[str]:
    """Destroy every stale derived blob; returns their names."""
    with vault.held():
        gone = stale(vault, serving_sha, pending=bool(vault.pending()), switched=switched)
        for d in gone:
            vault.drop_blob(d.name)
    return [d.name for d in gone]
