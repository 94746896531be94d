"""Snapshot tests (pytest-textual-snapshot) of the TUI at 80x24 with fixed fake data.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`, then
look at the new SVGs under tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from textual.pilot import Pilot

from assistant.app import Nightcap
from scripted import ScriptedRuntime
from tui.app import NightcapApp, make_app
from tui_support import SESSIONS, FakeVault, settle, write_generations, write_report

REPLY = [
    "Your dog is called **Biscuit**. ",
    "Things he likes:\n\n",
    "- long walks\n- naps in the sun\n",
]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dates in the sidebar and banner render the same in every time zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()


def fixed_app() -> NightcapApp:
    nightcap = Nightcap.load()
    write_generations(nightcap.home.models)
    write_report(nightcap.home.reports)
    return make_app(
        nightcap,
        runtime=ScriptedRuntime("gen-0002").enqueue(REPLY),
        vault=FakeVault(SESSIONS),
        conditions=lambda: "on power, idle 12 min",
        theme="ansi-dark",
    )


def run(keys: list[str]) -> Callable[[Pilot[None]], Any]:
    async def before(pilot: Pilot[None]) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return before


def test_main_screen(snap_compare: Any) -> None:
    """Banner after a sleep, pending conversations, a streamed Markdown reply marked good."""
    keys = [*"what is my dog called?", "enter", "ctrl+g"]
    assert snap_compare(fixed_app(), run_before=run(keys), terminal_size=(80, 24))


def test_sleep_report_screen(snap_compare: Any) -> None:
    """Counts, gates, durations and the loss sparkline of the newest report."""
    assert snap_compare(fixed_app(), run_before=run(["f3"]), terminal_size=(80, 24))


def test_generations_screen(snap_compare: Any) -> None:
    """Three generations, the current one marked."""
    assert snap_compare(fixed_app(), run_before=run(["f4"]), terminal_size=(80, 24))
