"""Sleep reports as the TUI tells them: the morning banner and when it is due.

Reports are JSON files written by the sleep cycle under `home/reports/` (no conversation
content). The banner says what the newest one did, once: the time it was last shown is kept in
`home/tui.json`.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from assistant.errors import NightcapError
from assistant.fsutil import atomic_write_json, read_json
from assistant.home import Home
from sleep.report import SleepReport

STATE_FILE = "tui.json"


def as_time(value: Any) -> float | None:
    """A Unix time from a number or an ISO 8601 string; None for anything else."""
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def report_time(report: SleepReport) -> float | None:
    """When the report's cycle finished (or started), as a Unix time."""
    for value in (report.finished, report.started):
        found = as_time(value)
        if found is not None:
            return found
    return None


def banner_text(report: SleepReport, now: float | None = None, *, just_now: bool = False) -> str | None:
    """One sentence on what the night did, or None when there is nothing worth saying.

    Only a promoted cycle destroyed transcripts; a rejected or failed one changed nothing, and the
    banner says so rather than claim a forgetting that did not happen. `just_now`: the cycle was
    started from the TUI, which already showed how it ended unless it consolidated something.
    """
    now = time.time() if now is None else now
    if just_now:
        n = report.consolidated_sessions
        if report.outcome != "promoted" or not n:
            return None
        noun = "conversation; its transcript was" if n == 1 else "conversations; their transcripts were"
        return f"Nightcap just consolidated {n} {noun} destroyed."
    finished = report_time(report)
    recent = finished is None or now - finished < 24 * 3600
    day = "" if recent else " on " + time.strftime("%b %d", time.localtime(finished))
    outcome = report.outcome
    n = report.consolidated_sessions
    if outcome == "promoted" and n:
        when = "Last night" if recent else "On " + time.strftime("%b %d", time.localtime(finished))
        noun = "conversation; its transcript was" if n == 1 else "conversations; their transcripts were"
        return f"{when} Nightcap consolidated {n} {noun} destroyed."
    sleep = "Last night's sleep" if recent else f"The sleep{day}"
    if outcome == "rejected":
        return f"{sleep} was rejected by its safety checks; the model is unchanged and nothing was forgotten."
    if outcome == "failed":
        return f"{sleep} failed; the model is unchanged and nothing was forgotten (F3 shows why)."
    if outcome == "interrupted":
        return f"{sleep} was interrupted; it picks up where it stopped next time."
    return None


def _state(home: Home) -> dict[str, Any]:
    try:
        data = read_json(home.root / STATE_FILE)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def banner_due(home: Home, report: SleepReport | None) -> bool:
    """Whether `report` is newer than the last banner shown."""
    if not report:
        return False
    finished = report_time(report)
    shown = _state(home).get("banner_shown_at")
    if finished is None:
        return False
    return not isinstance(shown, (int, float)) or finished > shown


def mark_banner_shown(home: Home, now: float | None = None) -> None:
    state = _state(home)
    state["banner_shown_at"] = time.time() if now is None else now
    try:
        atomic_write_json(home.root / STATE_FILE, state)
    except (OSError, NightcapError):
        pass  # the banner shows again next time; nothing worse
