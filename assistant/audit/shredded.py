"""Check 1, shredded epochs: what the ledger says was destroyed really is unreadable.

For every epoch with a tombstone: the keystore holds no key for it, the vault keeps no file of
it, and no ciphertext of it anywhere under the home dir opens with any key the vault still holds
(data, blob, master and ledger keys). An old keystore copy restored over the current one brings
shredded keys back; this is where that shows.
"""

from __future__ import annotations

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, Check
from assistant.audit.walk import Walk, walk
from assistant.vault import log

NAME = "shredded-epochs"


def check(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(NAME, FAIL, missing)
    vault = ctx.vault
    if vault is None:
        return Check(NAME, PASS, "no vault yet: nothing has been remembered, so nothing needs shredding")
    shredded = ctx.shredded_epochs()
    if not shredded:
        return Check(NAME, PASS, "no epoch has been shredded yet", {"shredded": 0})
    root = ctx.home.root
    held = set(vault.key_ids())
    keys_back = [e for e in shredded if e in held]
    files_left = [str(p.relative_to(root)) for e in shredded for p in vault.epoch_files(e)]
    tally = Walk()
    opens: dict[str, list[str]] = {}
    for path, data in walk(root, skip=lambda p: p.suffix == ".gguf", tally=tally):
        if log.MAGIC in data:
            for epoch in sorted(vault.opened_epochs(data, shredded)):
                opens.setdefault(epoch, []).append(str(path.relative_to(root)))
    details = {
        "shredded": len(shredded),
        "keys_back": keys_back,
        "files_left": files_left,
        "decrypting": opens,
        "files_scanned": tally.files,
    }
    if keys_back:
        return Check(
            NAME,
            FAIL,
            f"the key of shredded epoch {keys_back[0]} is back in the keystore"
            f"{f' (and {len(keys_back) - 1} more)' if len(keys_back) > 1 else ''}: an old keystore copy "
            "was restored; shred again with the current keystore or restore the newest one",
            details,
        )
    if opens:
        epoch, where = next(iter(opens.items()))
        return Check(
            NAME,
            FAIL,
            f"ciphertext of shredded epoch {epoch} in {where[0]} still decrypts with a key "
            "the vault holds; report this as a Nightcap bug and delete the file",
            details,
        )
    if files_left:
        return Check(
            NAME,
            FAIL,
            f"shredded epochs still have {len(files_left)} file(s) in the vault, e.g. "
            f"{files_left[0]}; they no longer decrypt, but delete them",
            details,
        )
    return Check(
        NAME,
        PASS,
        f"{len(shredded)} shredded epoch(s): no keys, no files, and none of "
        f"{tally.files} files under the home dir holds ciphertext that still opens",
        details,
    )
