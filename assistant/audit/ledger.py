"""Check 2, the deletion ledger: the hash chain verifies, and each tombstone has its paperwork.

`ledger-chain`: every entry hashes and MACs correctly, chains to the one before, and the last
one is where the keystore recorded it (so entries were neither edited, dropped nor reordered).

`ledger-provenance`: a tombstone written by the sleep cycle says "consolidated into gen-N"; a
stored sleep report must record that night (its epochs and new generation, or its shred), and
generation gen-N's manifest must list the epoch (unless gen-N has since been pruned, which the
check notes). Conversely every epoch a generation learned is either shredded or still waiting
for its shred. Tombstones of `nightcap memories forget` name no generation and need no report.
"""

from __future__ import annotations

from typing import Any

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check

CHAIN = "ledger-chain"
PROVENANCE = "ledger-provenance"
CONSOLIDATED = "consolidated into "


def check_chain(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(CHAIN, FAIL, missing)
    if ctx.vault is None:
        return Check(CHAIN, PASS, "no vault yet: the ledger is empty", {"entries": 0})
    problems = ctx.vault.ledger_problems()
    details = {"entries": len(ctx.tombstones), "problems": problems}
    if problems:
        more = f" ({len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        return Check(
            CHAIN,
            FAIL,
            f"{problems[0]}{more}; the deletion record was tampered with or damaged: "
            "restore vault/ledger.jsonl from a backup",
            details,
        )
    if not ctx.tombstones:
        return Check(CHAIN, PASS, "the ledger is empty, as the keystore records: nothing was shredded yet", details)
    return Check(
        CHAIN,
        PASS,
        f"{len(ctx.tombstones)} tombstone(s); hash chain, MACs and the keystore's record of the head all verify",
        details,
    )


def _report_for(ctx: AuditContext, epoch: str, generation: str) -> str | None:
    """Id of a stored report that records `epoch` going into `generation`."""
    for rid, rep in ctx.reports.items():
        if epoch in rep.epochs and rep.new_generation == generation:
            return rid
        if epoch in (rep.shred.get("epochs") or []) and rep.shred.get("generation") == generation:
            return rid
    return None


def _unlearning_problem(ctx: AuditContext, stone: dict[str, Any], pruned: set[str]) -> str | None:
    """A `nightcap forget` entry: no epoch, and a stored forget report that made its generation."""
    gen = stone.get("generation")
    if not gen:
        return "a forget entry in the ledger names no model generation"
    if not any(r.kind == "forget" and r.new_generation == gen for r in ctx.reports.values()):
        return f"no stored forget report records making {gen}, which the ledger says unlearned a statement"
    if str(gen) not in ctx.generations:
        pruned.add(str(gen))
    return None


def _stone_problem(ctx: AuditContext, stone: dict[str, Any], pruned: set[str]) -> str | None:
    if stone.get("epoch") is None:
        return _unlearning_problem(ctx, stone, pruned)
    epoch, gen, reason = str(stone.get("epoch")), stone.get("generation"), str(stone.get("reason", ""))
    named = reason[len(CONSOLIDATED) :] if reason.startswith(CONSOLIDATED) else None
    if gen is None:
        return f"the tombstone of epoch {epoch} says {reason!r} but names no model generation" if named else None
    if named is not None and named != gen:
        return f"the tombstone of epoch {epoch} says {reason!r} but records generation {gen}"
    if _report_for(ctx, epoch, str(gen)) is None:
        return f"no stored sleep report records epoch {epoch} going into {gen}"
    info = ctx.generations.get(str(gen))
    if info is None:
        pruned.add(str(gen))
    elif epoch not in info.epochs:
        return f"the manifest of {gen} does not list epoch {epoch}, which its tombstone says it learned"
    return None


def check_provenance(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(PROVENANCE, FAIL, missing)
    pruned: set[str] = set()
    problems = [p for s in ctx.tombstones if (p := _stone_problem(ctx, s, pruned))]
    shredded = set(ctx.shredded_epochs())
    live = set(ctx.vault.key_ids()) if ctx.vault is not None else set()
    waiting: list[str] = []
    for gen in ctx.generations.values():
        for epoch in gen.epochs:
            if epoch in live:
                waiting.append(epoch)
            elif epoch not in shredded:
                problems.append(f"{gen.name} learned epoch {epoch}, which is neither in the vault nor in the ledger")
    consolidated = sum(1 for s in ctx.tombstones if s.get("generation") and s.get("epoch") is not None)
    unlearned = sum(1 for s in ctx.tombstones if s.get("epoch") is None)
    details = {
        "tombstones": len(ctx.tombstones),
        "consolidated": consolidated,
        "forgotten": len(ctx.tombstones) - consolidated - unlearned,
        "unlearned": unlearned,
        "pruned_generations": sorted(pruned),
        "awaiting_shred": waiting,
        "unreadable_reports": ctx.bad_reports,
        "problems": problems,
    }
    if problems:
        more = f" ({len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check(
            PROVENANCE,
            FAIL,
            f"{problems[0]}{more}; the deletion record and the sleep history disagree: "
            "restore the missing report or manifest from a backup",
            details,
        )
    if waiting:
        return Check(
            PROVENANCE,
            WARN,
            f"{len(waiting)} epoch(s) learned by a model generation are not shredded yet "
            "(a sleep cycle stopped before its shred); the next `nightcap sleep` finishes it",
            details,
        )
    if not ctx.tombstones:
        return Check(PROVENANCE, PASS, "no tombstones yet, and no model generation learned an epoch", details)
    note = f" ({len(pruned)} of their generations since pruned)" if pruned else ""
    return Check(
        PROVENANCE,
        PASS,
        f"{consolidated} consolidation tombstone(s) match a stored sleep report and "
        f"a model generation{note}; {details['forgotten']} forget tombstone(s) need none"
        + _unlearning_caveat(ctx, details),
        details,
    )


def _unlearning_caveat(ctx: AuditContext, details: dict[str, Any]) -> str:
    """What a `nightcap forget` of a consolidated statement guarantees, said where the audit
    counts them: its log was already gone, and the weights were only pushed away from it."""
    unlearned = [str(s.get("generation")) for s in ctx.tombstones if s.get("epoch") is None]
    if not unlearned:
        return ""
    older = sorted(g for g in ctx.generations if g < max(unlearned))
    details["generations_before_last_unlearning"] = older
    kept = f"; {len(older)} kept generation(s) made before the last one still hold it" if older else ""
    return (
        f"; {len(unlearned)} statement(s) unlearned after sleep: approximate, the serving model was trained "
        "away from each, but unlearning in weights can be partial and later training on related text can "
        f"bring one back{kept}"
    )
