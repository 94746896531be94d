"""The consolidation benchmark's facts: items, their fixed tune/check split, and the days they are told.

An item (one line of `bench/eval/facts.jsonl`) is something the user says in chat and the probes
that ask about it later. The current set has `night` (the day it is told), `category`, an
optional `update` told on a later day, and a `kind` per probe; the earlier set has none of
these and still loads: its items get category "plain", probes kind "direct", and nights split
the file evenly in order.

The split is a pure function of the item id (a hash), so it never moves when items are added,
reordered or filtered: `tune` is what settings may be chosen on, `check` is what confirms them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Sequence

SPLITS = ("tune", "check", "all")
SECRET_KIND = "secret"


@dataclass(frozen=True)
class EvalProbe:
    """One question about one item, with what scores it."""

    item: str
    question: str
    answer: str
    distractors: tuple[str, ...]
    kind: str
    category: str
    split: str

    @property
    def secret(self) -> bool:
        """Leakage probes: scored apart, lower is better, never counted as recall."""
        return self.kind == SECRET_KIND or self.category == SECRET_KIND


@dataclass(frozen=True)
class Item:
    id: str
    teach: tuple[str, ...]
    night: int
    category: str
    update: tuple[str, ...] = ()
    update_night: int = 0
    probes: tuple[EvalProbe, ...] = field(default=())

    @property
    def split(self) -> str:
        return split_of(self.id)


def split_of(item_id: str) -> str:
    """ "tune" or "check", fixed by the id alone (about half each)."""
    return "tune" if hashlib.sha256(item_id.encode("utf-8")).digest()[0] % 2 == 0 else "check"


def items(records: Sequence[dict[str, Any]]) -> list[Item]:
    """Items from JSONL records of either format (see the module docstring)."""
    out = []
    for n, rec in enumerate(records):
        item_id = str(rec.get("id", f"item{n:03d}"))
        category = str(rec.get("category", "plain"))
        update = rec.get("update") or {}
        night = int(rec.get("night", 0))
        probes = tuple(
            EvalProbe(
                item_id,
                p["question"],
                p["answer"],
                tuple(p.get("distractors", [])),
                str(p.get("kind", "direct")),
                category,
                split_of(item_id),
            )
            for p in rec["probes"]
        )
        out.append(
            Item(
                item_id,
                tuple(rec["teach"]),
                night,
                category,
                tuple(update.get("teach", [])),
                int(update.get("night", 0)),
                probes,
            )
        )
    return out


def select(all_items: Sequence[Item], split: str, limit: int = 0) -> list[Item]:
    """The items of one split ("all": every item), the first `limit` of them when given."""
    chosen = [it for it in all_items if split == "all" or it.split == split]
    return chosen[: limit or None]


@dataclass(frozen=True)
class Day:
    """What the user says on one day: each conversation is a list of messages."""

    conversations: tuple[tuple[str, ...], ...]
    items: tuple[Item, ...]
    """Items first told on this day (their probes are the day's own)."""


def days(chosen: Sequence[Item], nights: int) -> list[Day]:
    """The chat days before each of `nights` nights.

    With the items' own `night` fields and `nights` equal to their largest value, each item is
    told on its night and each update on the update's night. With one night, every item is told
    on one day, updates after everything they change. Items without `night` fields (the earlier
    set) are split evenly, in order."""
    if not chosen:
        return []
    own = all(it.night > 0 for it in chosen)
    if own and nights == max(it.night for it in chosen):
        first = {it.id: it.night for it in chosen}
        later = {it.id: max(it.update_night, it.night + 1) for it in chosen if it.update}
    elif own and nights == 1:
        first = {it.id: 1 for it in chosen}
        later = {it.id: 1 for it in chosen if it.update}
    else:
        n = max(1, min(nights, len(chosen)))
        first = {it.id: 1 + i * n // len(chosen) for i, it in enumerate(chosen)}
        later = {it.id: min(n, first[it.id] + 1) for it in chosen if it.update}
    out = []
    for day in range(1, max([*first.values(), *later.values()]) + 1):
        told = tuple(it for it in chosen if first[it.id] == day)
        conversations = [it.teach for it in told] + [it.update for it in chosen if later.get(it.id) == day]
        out.append(Day(tuple(conversations), told))
    return out


def context_messages(chosen: Sequence[Item]) -> list[str]:
    """Everything the user told, in the order told (updates after what they change): what the
    facts-in-the-prompt baseline puts into its system prompt."""
    return [
        m
        for d in days(chosen, max(1, max((it.night for it in chosen), default=1)))
        for conv in d.conversations
        for m in conv
    ]


def probes_of(chosen: Sequence[Item]) -> list[EvalProbe]:
    return [p for it in chosen for p in it.probes]
