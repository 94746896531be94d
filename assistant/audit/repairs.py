"""Check: damage the vault repaired is reported, whoever opened the vault first.

Recovery (`assistant.vault.repair`) rewrites a damaged log from its authentic records and keeps
the original in quarantine; records gone from a closed epoch are dropped and its count updated.
Every such repair is recorded in the keystore in the same write, so the audit can say what was
repaired even when the daemon, the TUI or a sleep opened the vault first. The check warns: the
repair itself was right, but a torn write, a corrupt region or lost records mean the disk or a
process misbehaved, and lost records are memories sleep will never learn.
"""

from __future__ import annotations

import time
from collections import Counter

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check

NAME = "vault-repairs"


def check(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(NAME, FAIL, missing)
    repairs = ctx.vault.repairs() if ctx.vault is not None else []
    kinds = Counter(str(r.get("kind")) for r in repairs)
    details = {"repairs": len(repairs), "kinds": dict(kinds), "records": repairs[-20:]}
    if not repairs:
        return Check(NAME, PASS, "no log ever needed repair", details)
    last = repairs[-1]
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(last.get("time", 0))))
    lost = " (records were lost: those memories will not be learned)" if kinds.get("missing") else ""
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    return Check(
        NAME,
        WARN,
        f"the vault repaired damaged logs {len(repairs)} time(s) ({summary}){lost}; the latest, "
        f"on {when}, in epoch {last.get('epoch')}: {last.get('detail') or last.get('kind')}; check the disk",
        details,
    )
