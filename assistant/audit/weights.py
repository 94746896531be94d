"""Check 6, the weights are a record too: which generations learned which (destroyed) epochs.

Shredding destroys the logs, not what the model learned from them. Each generation the sleep
cycle makes lists the epochs it consolidated (`epochs` in its manifest) and the report of that
night (`report`); a generation also carries whatever its parents learned. This check lists them
with dates and says which generation to serve to be rid of them: one that learned nothing, or,
with `nightcap audit --before DAY`, the newest one made before that day (a generation can only
know what was said before it was made). It warns whenever trained weights are on disk, because
that is the truth; it never fails.

A memorization probe (plant canaries, sleep, measure whether they can be reproduced) is not part
of this audit: it needs a full sleep cycle on the real model.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from assistant.audit.context import AuditContext, GenerationInfo, day, epoch_opened
from assistant.audit.result import PASS, WARN, Check

NAME = "weights"


def _known(ctx: AuditContext, name: str) -> tuple[list[str], str | None, bool] | None:
    """(epochs learned, parent, parent recorded) of one generation, from its manifest or, once
    pruned, from the reports and tombstones that name it; None if nothing is known of it."""
    gen = ctx.generations.get(name)
    if gen is not None:
        return gen.epochs, gen.parent, True
    reports = [r for r in ctx.reports.values() if r.new_generation == name]
    epochs = [e for r in reports for e in r.epochs]
    epochs += [str(s["epoch"]) for s in ctx.tombstones if s.get("generation") == name and s.get("epoch") is not None]
    parent = next((r.old_generation for r in reports if r.old_generation), None)
    if not epochs and parent is None:
        return None
    return list(dict.fromkeys(epochs)), parent, parent is not None


def lineage(ctx: AuditContext, gen: GenerationInfo) -> tuple[list[str], bool]:
    """Epochs learned by `gen` and its ancestors (pruned ones included, as far as the reports
    tell), and whether the chain is known all the way back to a generation with no parent."""
    epochs: list[str] = []
    seen: set[str] = set()
    name: str | None = gen.name
    while name is not None and name not in seen:
        seen.add(name)
        known = _known(ctx, name)
        if known is None:
            return epochs, False
        own, parent, recorded = known
        epochs += [e for e in own if e not in epochs]
        if not recorded:
            return epochs, False
        name = parent
    return epochs, name is None


def clean(ctx: AuditContext, gen: GenerationInfo) -> bool:
    """Whether `gen` provably learned nothing from the user's conversations."""
    epochs, complete = lineage(ctx, gen)
    return complete and not epochs


def rollback_before(ctx: AuditContext, when: datetime) -> str | None:
    """The newest generation on disk that cannot know anything said from `when` on, or None."""
    fit = [g for g in ctx.generations.values() if clean(ctx, g) or (g.created is not None and g.created < when)]
    return max(fit, key=lambda g: g.index).name if fit else None


def _epoch_row(ctx: AuditContext, epoch: str) -> dict[str, Any]:
    stone = ctx.tombstone_of(epoch)
    opened = epoch_opened(epoch)
    shredded = (
        datetime.fromtimestamp(float(stone["time"])).astimezone().isoformat(timespec="seconds") if stone else None
    )
    return {
        "id": epoch,
        "opened": opened.astimezone().isoformat(timespec="seconds") if opened else None,
        "shredded": shredded,
    }


def _generation_row(ctx: AuditContext, gen: GenerationInfo) -> dict[str, Any]:
    epochs, complete = lineage(ctx, gen)
    report = ctx.reports.get(str(gen.manifest.get("report")))
    return {
        "name": gen.name,
        "created": gen.manifest.get("created"),
        "parent": gen.parent,
        "current": gen.name == ctx.current,
        "report": gen.manifest.get("report"),
        "report_stored": report is not None,
        "epochs": [_epoch_row(ctx, e) for e in gen.epochs],
        "inherited": [e for e in epochs if e not in gen.epochs],
        "learned_total": len(epochs),
        "ancestry_complete": complete,
    }


def check(ctx: AuditContext) -> Check:
    gens = sorted(ctx.generations.values(), key=lambda g: g.index)
    trained = [g for g in gens if not clean(ctx, g)]
    baseline = max((g for g in gens if clean(ctx, g)), key=lambda g: g.index, default=None)
    details: dict[str, Any] = {
        "generations": [_generation_row(ctx, g) for g in gens],
        "clean": baseline.name if baseline else None,
        "before": None,
    }
    advice = ""
    if ctx.before is not None:
        target = rollback_before(ctx, ctx.before)
        details["before"] = {"day": day(ctx.before), "generation": target}
        advice = (
            f"; for a model from before {day(ctx.before)}: `nightcap models use {target}`"
            if target
            else f"; no generation from before {day(ctx.before)} is kept"
        )
    if not trained:
        return Check(NAME, PASS, f"no model generation on disk was trained on your conversations{advice}", details)
    learned = sorted({e for g in trained for e in lineage(ctx, g)[0]})
    days = sorted(d for e in learned if (d := day(epoch_opened(e))))
    span = f", {days[0]} to {days[-1]}" if days else ""
    serving = " (the serving one among them)" if ctx.current in {g.name for g in trained} else ""
    way_back = (
        f"`nightcap models use {baseline.name}` serves one that learned none of it"
        if baseline
        else "no generation without them is kept"
    )
    return Check(
        NAME,
        WARN,
        f"{len(trained)} model generation(s) on disk{serving} learned from {len(learned)} "
        f"epoch(s) of your conversations{span}: the logs are destroyed but the weights are a record of "
        f"them; {way_back}{advice}",
        details,
    )


def parse_day(text: str) -> datetime:
    """`--before 2025-01-31` as local midnight. ValueError on another format."""
    return datetime.strptime(text, "%Y-%m-%d").astimezone()
