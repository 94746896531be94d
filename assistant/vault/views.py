"""Reading an epoch's records as episodes: annotations applied, sessions summarised.

A log holds two kinds of record payload (JSON, sealed): ``{"t": "episode", "episode": {...}}``
written at the end of a turn, and ``{"t": "annotation", "id": ..., "changes": {...}}`` written
later when the user gives feedback in the TUI (thumbs, a correction, an importance). Records are
never edited in place; annotations are applied, in order, when the log is read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from assistant.episode import FLAG_CORRECTION, FLAG_SECRET, Episode, importance_from_flags
from sleep.secrets import holds_secret_text

ANNOTATION_KEYS = {"flags", "remove_flags", "correction", "importance"}


@dataclass
class SessionSummary:
    """One pending conversation, for the TUI sidebar."""

    id: str
    first: float
    last: float
    turns: int
    preview: str
    """The first words of the conversation's first user message."""


def episode_payload(episode: Episode) -> bytes:
    return json.dumps({"t": "episode", "episode": episode.to_dict()}, ensure_ascii=False).encode("utf-8")


def annotation_payload(episode_id: str, changes: dict[str, Any]) -> bytes:
    """Validate `annotate(**changes)` arguments and encode them. ValueError on a bad call."""
    unknown = set(changes) - ANNOTATION_KEYS
    if unknown:
        raise ValueError(f"unknown annotation field(s): {', '.join(sorted(unknown))}")
    for key in ("flags", "remove_flags"):
        if key in changes:
            value = changes[key]
            if isinstance(value, str) or not all(isinstance(f, str) for f in value):
                raise ValueError(f"{key} must be a list of flag names")
            changes[key] = list(value)
    if "correction" in changes and changes["correction"] is not None and not isinstance(changes["correction"], str):
        raise ValueError("correction must be a string or None")
    if "importance" in changes:
        changes["importance"] = float(changes["importance"])
    record = {"t": "annotation", "id": episode_id, "changes": changes, "time": time.time()}
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def decode(payload: bytes) -> dict[str, Any]:
    return json.loads(payload.decode("utf-8"))


def _apply(episode: Episode, changes: dict[str, Any]) -> None:
    flags = list(episode.flags)
    flags += [f for f in changes.get("flags", []) if f not in flags]
    if changes.get("correction"):
        # A correction from the TUI is a correction whatever words it used.
        flags += [FLAG_CORRECTION] if FLAG_CORRECTION not in flags else []
        # A correction that holds a secret keeps the exchange's secret out of sleep like the user's words.
        flags += [FLAG_SECRET] if FLAG_SECRET not in flags and holds_secret_text(changes["correction"]) else []
    flags = [f for f in flags if f not in changes.get("remove_flags", [])]
    if "correction" in changes:
        episode.correction = changes["correction"]
    if "importance" in changes:
        episode.importance = changes["importance"]
    elif flags != episode.flags:
        episode.importance = importance_from_flags(flags)
    episode.flags = flags


def episodes_of(records: list[dict[str, Any]]) -> list[Episode]:
    """The episodes in one epoch's records, in log order, with their annotations applied."""
    episodes: dict[str, Episode] = {}
    for rec in records:
        if rec.get("t") == "episode":
            ep = Episode.from_dict(rec["episode"])
            episodes[ep.id] = ep
        elif rec.get("t") == "annotation" and rec.get("id") in episodes:
            _apply(episodes[rec["id"]], rec.get("changes", {}))
    return list(episodes.values())


def episode_ids(records: list[dict[str, Any]]) -> set[str]:
    return {r["episode"]["id"] for r in records if r.get("t") == "episode"}


def without(records: list[dict[str, Any]], episode_id: str) -> list[dict[str, Any]]:
    """The records minus one episode and every annotation of it."""
    return [
        r
        for r in records
        if not (r.get("t") == "episode" and r["episode"]["id"] == episode_id)
        and not (r.get("t") == "annotation" and r.get("id") == episode_id)
    ]


def summarize(episodes: list[Episode], words: int = 8) -> list[SessionSummary]:
    """Conversations by most recent activity first."""
    by_session: dict[str, list[Episode]] = {}
    for ep in episodes:
        by_session.setdefault(ep.session, []).append(ep)
    out = []
    for sid, eps in by_session.items():
        eps.sort(key=lambda e: e.started)
        preview = " ".join(eps[0].user_text.split()[:words])
        out.append(SessionSummary(sid, eps[0].started, max(e.ended for e in eps), len(eps), preview))
    out.sort(key=lambda s: s.last, reverse=True)
    return out
