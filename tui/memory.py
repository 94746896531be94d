"""The TUI's side of the vault: one caller at a time, and conversation summaries for the sidebar.

The TUI touches the vault from several worker threads (sealing a turn, refreshing the session
list, saving feedback); `SerialVault` makes those calls take turns so the vault itself need not
be thread-safe.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tui.reports import as_time


class SerialVault:
    """Wraps a vault so that every method call holds one lock."""

    def __init__(self, vault: Any) -> None:
        self._vault = vault
        self._lock = threading.RLock()

    @property
    def inner(self) -> Any:
        return self._vault

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._vault, name)
        if not callable(attr):
            return attr

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return locked


@dataclass
class SessionRow:
    """One pending conversation as the sidebar shows it."""

    id: str
    title: str
    turns: int
    last: float | None

    def meta(self, now: float | None = None) -> str:
        """e.g. "4 turns · 12 min ago"."""
        when = _ago(self.last, now if now is not None else time.time()) if self.last else ""
        return f"{self.turns} turn{'s' if self.turns != 1 else ''}" + (f" · {when}" if when else "")


def _first(obj: Any, *names: str) -> Any:
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _ago(ts: float, now: float) -> str:
    minutes = max(0, int(now - ts) // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} min ago"
    if minutes < 24 * 60:
        return f"{minutes // 60} h ago"
    return time.strftime("%b %d", time.localtime(ts))


def session_row(summary: Any) -> SessionRow:
    """A sidebar row from the vault's session summary (an object or a dict)."""
    words = _first(summary, "first_words", "title", "preview", "first") or "(untitled)"
    title = " ".join(str(words).split())
    return SessionRow(
        id=str(_first(summary, "id", "session", "session_id")),
        title=title,
        turns=int(_first(summary, "turns", "turn_count", "n_turns", "count") or 0),
        last=as_time(_first(summary, "last", "last_time", "ended", "last_seen")),
    )


def session_rows(vault: Any) -> list[SessionRow]:
    """The vault's pending conversations, most recent first."""
    rows = [session_row(s) for s in vault.sessions()]
    rows.sort(key=lambda r: r.last or 0.0, reverse=True)
    return rows
