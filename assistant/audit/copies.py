"""Check: no copy of the vault's keys or ciphertext outside the vault's own files.

Shredding destroys what the vault knows about: its keystore, its logs, its blobs. A copy made
elsewhere under the home dir (a backup folder, a stray `cp -r vault vault.bak`) is outside that
bookkeeping: an old keystore copy, unlocked with the passphrase, unwraps the data keys of epochs
shredded since, and a copy of their logs then reads again. So every file under the home dir
that is keystore-shaped, or holds a framed log record or sealed blob, and is not one of the
vault's own files fails this check. A keystore copy is also tried with the current key source,
and against every log copy found, so the reason says when shredded epochs really open again.
"""

from __future__ import annotations

from pathlib import Path

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, Check
from assistant.audit.walk import Walk, walk

NAME = "vault-copies"
OWN_DIRS = ("epochs", "quarantine", "blobs")
"""Directories of vault/ whose files are the vault's own sealed data."""


def _own(vault_dir: Path, path: Path) -> bool:
    try:
        rel = path.relative_to(vault_dir).parts
    except ValueError:
        return False
    return rel in (("keystore.json",), ("ledger.jsonl",), (".lock",)) or (len(rel) == 2 and rel[0] in OWN_DIRS)


def check(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(NAME, FAIL, missing)
    root = ctx.home.root
    vault = ctx.vault
    tally = Walk()
    keystores: dict[str, int] = {}
    """Keystore copies -> how many shredded epochs' keys they give."""
    sealed: list[tuple[str, bytes]] = []
    keys: dict[str, bytes] = {}
    for path, data in walk(root, skip=lambda p: p.suffix == ".gguf", tally=tally):
        if _own(root / "vault", path):
            continue
        rel = str(path.relative_to(root))
        if data[:1] == b"{" and b'"master"' in data and b'"epochs"' in data:
            given = vault.copy_keys(data) if vault is not None else None
            if given is not None:
                keystores[rel] = len(given)
                keys.update(given)
                continue
        if vault is not None and vault.sealed_frames(data):
            sealed.append((rel, data))
    opened: dict[str, list[str]] = {}
    for rel, data in sealed:
        for epoch in sorted(vault.opens_with(data, keys)) if vault is not None and keys else []:
            opened.setdefault(epoch, []).append(rel)
    details = {
        "keystore_copies": keystores,
        "sealed_copies": [rel for rel, _ in sealed],
        "shredded_epochs_readable": opened,
        "files_scanned": tally.files,
    }
    if opened:
        epoch, where = next(iter(opened.items()))
        copy = next(name for name, n in keystores.items() if n)
        return Check(
            NAME,
            FAIL,
            f"shredded epoch {epoch} reads again: the keystore copy {copy} opens with this "
            f"vault's key source and decrypts its log copy {where[0]}; delete both copies",
            details,
        )
    if keystores:
        copy, n = next(iter(keystores.items()))
        what = (
            f"it opens with this vault's key source and holds the keys of {n} shredded epoch(s)"
            if n
            else "a copy of vault keys outside the vault, which shredding cannot reach"
        )
        return Check(NAME, FAIL, f"{copy} is a keystore copy: {what}; delete it", details)
    if sealed:
        return Check(
            NAME,
            FAIL,
            f"{sealed[0][0]} holds sealed vault data outside the vault"
            f"{f' (and {len(sealed) - 1} more file(s))' if len(sealed) > 1 else ''}, which shredding "
            "cannot reach; delete it",
            details,
        )
    return Check(
        NAME,
        PASS,
        f"no keystore, log or sealed blob outside the vault's own files in {tally.files} files under the home dir",
        details,
    )
