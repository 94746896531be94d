"""Check: every sealed blob in the vault derives from what still serves or waits.

The vault's blobs (`assistant.vault.derived`) are derived from conversations: a weight master and
a Fisher belong to one generation, a checkpoint to the pending episodes. After `models rollback`
or `use`, or a forget, those of what no longer serves are destroyed; one left behind (a switch
made while the vault could not open, an older Nightcap) holds what a rolled-back generation
learned, so the audit lists every blob with what it derives from and fails on any that is stale.
"""

from __future__ import annotations

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, Check
from assistant.vault.derived import describe

NAME = "sealed-state"


def check(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(NAME, FAIL, missing)
    if ctx.vault is None:
        return Check(NAME, PASS, "no vault yet: nothing sealed", {"blobs": []})
    serving = ctx.generations.get(ctx.current or "")
    blobs = describe(ctx.vault, serving.manifest.get("sha256") if serving else None, pending=bool(ctx.vault.pending()))
    details = {"blobs": [{"name": d.name, "derives_from": d.derives_from, "stale": d.stale} for d in blobs]}
    stale = [d for d in blobs if d.stale]
    if stale:
        more = f" (and {len(stale) - 1} more)" if len(stale) > 1 else ""
        return Check(
            NAME,
            FAIL,
            f"the sealed {stale[0].name} derives from {stale[0].derives_from}, but "
            f"{stale[0].stale}{more}; `nightcap models use {ctx.current or 'GEN'}` or the next `nightcap "
            "sleep` destroys it",
            details,
        )
    if not blobs:
        return Check(NAME, PASS, "no sealed state besides the episodes", details)
    return Check(
        NAME,
        PASS,
        f"{len(blobs)} sealed blob(s), each derived from the serving generation or the "
        "pending episodes: " + ", ".join(d.name for d in blobs),
        details,
    )
