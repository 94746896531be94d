"""Pilot tests of the TUI around the chat: unlocking the vault, sleeping now, rollback, reports."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime
from typing import Any, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import TextArea

import assistant.app
from assistant.app import Nightcap
from assistant.errors import UsageError
from assistant.vault.vault import KEYSTORE
from scripted import ScriptedRuntime
from sleep.progress import SleepProgress
from sleep.report import SleepReport
from tui import messages as m
from tui.app import make_app
from tui.screens.passphrase import PassphraseScreen
from tui.screens.report import NO_REPORT, SleepReportScreen
from tui.screens.sleep import SleepScreen
from tui.widgets.response import Response
from tui.widgets.status_bar import StatusBar
from tui_support import (
    REPORT,
    SESSIONS,
    FakeVault,
    LockedNightcap,
    drive,
    of,
    say,
    settle,
    write_generation,
    write_generations,
    write_report,
)


@pytest.fixture
def scripted_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a generation gives a scripted runtime named after it (no llama.cpp)."""
    monkeypatch.setattr(
        assistant.app, "make_runtime", lambda gen, config: ScriptedRuntime(gen.name).enqueue(f"{gen.name} here")
    )


def test_locked_vault_asks_for_the_passphrase_until_it_opens() -> None:
    vault = FakeVault()
    home = Nightcap.load()
    (home.home.vault / KEYSTORE).write_text("{}")  # a vault exists: unlock it, do not create one
    nightcap = LockedNightcap(home, vault, "open sesame")
    app = make_app(nightcap, runtime=ScriptedRuntime().enqueue("hi"), conditions=lambda: None)  # type: ignore[arg-type]

    async def script(pilot: Pilot[None]) -> None:
        assert isinstance(app.screen, PassphraseScreen) and not app.screen.creating
        assert not app.screen.query_one("#reason").display
        await pilot.press(*"guess", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseScreen)  # asked again, saying why
        assert "wrong" in str(app.screen.query_one("#reason").render())
        await pilot.press(*"open sesame", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, PassphraseScreen)
        await say(pilot, "hello")

    posted = drive(app, script)
    assert nightcap.tries == [None, "guess", "open sesame"]
    assert len(of(posted, m.VaultLocked)) == 2 and len(of(posted, m.VaultReady)) == 1
    (done,) = of(posted, m.ResponseComplete)
    assert done.episode is not None and vault.writes() == [("append", done.episode.id)]


def test_a_new_vault_takes_the_passphrase_twice() -> None:
    vault = FakeVault()
    nightcap = LockedNightcap(Nightcap.load(), vault, "open sesame")
    app = make_app(nightcap, runtime=ScriptedRuntime(), conditions=lambda: None)  # type: ignore[arg-type]

    async def script(pilot: Pilot[None]) -> None:
        assert isinstance(app.screen, PassphraseScreen) and app.screen.creating
        await pilot.press(*"open sesame", "enter", *"open sesam", "enter")
        await settle(pilot)
        assert isinstance(app.screen, PassphraseScreen)
        assert str(app.screen.query_one("#reason").render()) == "The two passphrases differ; type them again."
        await pilot.press(*"open sesame", "enter")  # the first one is kept
        await pilot.press(*"open sesame", "enter")
        await settle(pilot)
        assert not isinstance(app.screen, PassphraseScreen)

    posted = drive(app, script)
    assert nightcap.tries == [None, "open sesame"] and len(of(posted, m.VaultReady)) == 1


def test_escaping_the_passphrase_chats_without_memory() -> None:
    vault = FakeVault()
    nightcap = LockedNightcap(Nightcap.load(), vault, "open sesame")
    app = make_app(nightcap, runtime=ScriptedRuntime().enqueue("hi"), conditions=lambda: None)  # type: ignore[arg-type]

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press("escape")
        await say(pilot, "hello")
        assert app.screen.query_one(StatusBar).memory == "off"

    posted = drive(app, script)
    (done,) = of(posted, m.ResponseComplete)
    assert done.episode is None and vault.calls == []


def test_sleep_now_shows_progress_then_the_banner(scripted_models: None) -> None:
    nightcap = Nightcap.load()
    write_generations(nightcap.home.models)
    vault = FakeVault(SESSIONS)
    report = SleepReport.from_dict(dict(REPORT, new_generation="gen-0003"))

    def sleeper(nightcap: Nightcap, *, should_stop: Callable[[], bool], progress: SleepProgress) -> SleepReport:
        for stage in ("gather", "train"):
            progress.stage(stage)
        for i in (1, 2, 3):
            progress.step(i, 3, 3.0 - i)
        write_generation(nightcap.home.models, 3, "gen-0002")
        nightcap.store.use("gen-0003")
        vault._sessions = []  # consolidated conversations leave the vault
        return report

    app = make_app(nightcap, runtime=ScriptedRuntime("gen-0002"), vault=vault, conditions=lambda: None, sleeper=sleeper)

    async def script(pilot: Pilot[None]) -> None:
        assert app.screen.query_one("#sessions").display
        await pilot.press("f5")
        await settle(pilot)
        assert isinstance(app.screen, SleepScreen)
        assert app.sleep_run is not None and app.sleep_run.done and app.sleep_run.losses == [2.0, 1.0, 0.0]
        await pilot.press("escape")
        await settle(pilot)
        banner = app.screen.query_one("#banner")
        assert banner.display
        assert str(banner.render()) == "Nightcap just consolidated 14 conversations; their transcripts were destroyed."
        assert not app.screen.query_one("#sessions").display  # nothing pending any more
        assert app.screen.query_one(StatusBar).generation == "gen-0003"
        await say(pilot, "who are you?")

    posted = drive(app, script)
    assert [s.name for s in of(posted, m.SleepStage)] == ["gather", "train"]
    assert [(s.i, s.total) for s in of(posted, m.SleepStep)] == [(1, 3), (2, 3), (3, 3)]
    (finished,) = of(posted, m.SleepFinished)
    assert finished.error is None and finished.report == report
    assert [g.generation for g in of(posted, m.GenerationChanged)] == ["gen-0003"]
    assert of(posted, m.ResponseComplete)[0].reply == "gen-0003 here"


def test_sleep_failure_is_reported_and_changes_nothing() -> None:
    def sleeper(nightcap: Nightcap, *, should_stop: Callable[[], bool], progress: SleepProgress) -> SleepReport:
        progress.stage("gather")
        raise ImportError("No module named 'torch'")

    app = make_app(
        Nightcap.load(),
        runtime=ScriptedRuntime("gen-0002"),
        vault=FakeVault(),
        conditions=lambda: None,
        sleeper=sleeper,
    )

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press("f5")
        await settle(pilot)

    posted = drive(app, script)
    (finished,) = of(posted, m.SleepFinished)
    assert finished.report is None and finished.error == "sleeping is not available in this installation"
    assert not of(posted, m.GenerationChanged)


def test_f6_forgets_a_learned_statement_on_the_sleep_screen(scripted_models: None) -> None:
    from textual.widgets import Label

    nightcap = Nightcap.load()
    write_generations(nightcap.home.models)
    asked: list[str] = []

    def forgetter(
        nightcap: Nightcap, text: str, *, should_stop: Callable[[], bool], progress: SleepProgress
    ) -> SleepReport:
        asked.append(text)
        for stage in ("load", "train"):
            progress.stage(stage)
        progress.step(1, 1, 0.5)
        return SleepReport(kind="forget", outcome="promoted", new_generation="gen-0002")

    app = make_app(
        nightcap, runtime=ScriptedRuntime("gen-0002"), vault=FakeVault(), conditions=lambda: None, forgetter=forgetter
    )

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press("f6")
        await settle(pilot)
        await pilot.press("escape")  # cancel: nothing happens
        await settle(pilot)
        assert app.sleep_run is None and not asked
        await pilot.press("f6")
        await settle(pilot)
        await pilot.press(*"my locker code is 4417")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, SleepScreen)
        assert str(app.screen.query_one(".screen-title", Label).render()) == "Forgetting"
        assert app.sleep_run is not None and app.sleep_run.done and app.sleep_run.losses == [0.5]

    posted = drive(app, script)
    assert asked == ["my locker code is 4417"]
    (finished,) = of(posted, m.SleepFinished)
    assert finished.error is None and finished.report is not None and finished.report.kind == "forget"


def test_rollback_switches_the_serving_model(scripted_models: None) -> None:
    nightcap = Nightcap.load()
    write_generations(nightcap.home.models)
    app = make_app(nightcap, vault=FakeVault(), conditions=lambda: None)  # the model loads in a worker

    async def script(pilot: Pilot[None]) -> None:
        assert app.screen.query_one(StatusBar).generation == "gen-0002"
        await pilot.press("f4", "r")
        await settle(pilot)
        await pilot.press("escape")
        await say(pilot, "hi")

    posted = drive(app, script)
    assert nightcap.store.current_name() == "gen-0001"
    assert [r.generation for r in of(posted, m.ModelReady)] == ["gen-0002", "gen-0001"]
    assert of(posted, m.ResponseComplete)[0].reply == "gen-0001 here"


def test_the_morning_banner_shows_once() -> None:
    nightcap = Nightcap.load()
    finished = datetime.fromtimestamp(time.time() - 5 * 3600).isoformat(timespec="seconds")
    write_report(nightcap.home.reports, dict(REPORT, finished=finished))
    shown: list[bool] = []

    for _ in range(2):
        app = make_app(nightcap, runtime=ScriptedRuntime(), vault=FakeVault(), conditions=lambda: None)

        async def script(pilot: Pilot[None], app: Any = app) -> None:
            banner = app.screen.query_one("#banner")
            shown.append(banner.display)
            if banner.display:
                assert str(banner.render()) == (
                    "Last night Nightcap consolidated 14 conversations; their transcripts were destroyed."
                )
                await pilot.press("escape")
                assert not banner.display

        drive(app, script)
    assert shown == [True, False]


def test_report_screen_without_a_sleep_says_so() -> None:
    app = make_app(Nightcap.load(), runtime=ScriptedRuntime(), vault=FakeVault(), conditions=lambda: None)

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, SleepReportScreen)
        assert str(app.screen.query_one("#no-report").render()) == NO_REPORT

    drive(app, script)


def test_chat_start_imports_no_training_or_native_model_code() -> None:
    code = (
        "import sys, tui.main, tui.app; from tui.app import make_app; "
        "heavy = [n for n in ('torch', 'transformers', 'peft', 'llama_cpp') if n in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_chat_command_rejects_unknown_options() -> None:
    from tui.main import main

    with pytest.raises(UsageError):
        main(["--no-such-option"])


def test_banner_is_shown_once_per_report(tmp_path: Any) -> None:
    from assistant.home import Home
    from tui.reports import banner_due, banner_text, mark_banner_shown

    home = Home.resolve(tmp_path / "h")
    now = time.time()
    stored = dict(REPORT, finished=datetime.fromtimestamp(now - 3600).isoformat())

    def report(**changes: Any) -> SleepReport:
        return SleepReport.from_dict({**stored, **changes})

    assert banner_due(home, report())
    mark_banner_shown(home, now)
    assert not banner_due(home, report())
    assert banner_due(home, report(finished=datetime.fromtimestamp(now + 60).isoformat()))
    assert not banner_due(home, None)
    assert banner_text(report(), now) == (
        "Last night Nightcap consolidated 14 conversations; their transcripts were destroyed."
    )
    assert banner_text(report(consolidated_sessions=1), now) == (
        "Last night Nightcap consolidated 1 conversation; its transcript was destroyed."
    )
    # Only a promoted cycle destroyed anything; the others say the model is unchanged, or nothing.
    assert banner_text(report(outcome="rejected"), now) == (
        "Last night's sleep was rejected by its safety checks; the model is unchanged and nothing was forgotten."
    )
    assert banner_text(report(outcome="nothing-to-do", consolidated_sessions=0), now) is None
    earlier = banner_text(SleepReport.from_dict(REPORT), now)
    assert earlier is not None and earlier.startswith("On Mar 14 Nightcap consolidated 14 conversations")
    assert banner_text(report(outcome="failed"), now, just_now=True) is None


def test_teaching_reaches_the_real_vault() -> None:
    """The same flow against `assistant.vault` itself (unlocked with the test passphrase)."""
    nightcap = Nightcap.load()
    app = make_app(nightcap, runtime=ScriptedRuntime().enqueue("Rex.", "He is three."), conditions=lambda: None)

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "what is my dog called?")
        await pilot.press("ctrl+g", "ctrl+e")
        await settle(pilot)
        app.screen.query_one("#correction", TextArea).text = "Biscuit."
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("ctrl+n")
        await settle(pilot)
        app.screen.query_one("#sessions").focus()
        await pilot.press("down", "enter")  # resume it from the vault
        await settle(pilot)
        assert app.screen.query(Response).last().source == "Biscuit."
        await say(pilot, "how old is he?")

    posted = drive(app, script)
    assert [type(msg) for msg in posted if isinstance(msg, (m.VaultReady, m.VaultLocked))] == [m.VaultReady]
    first, second = nightcap.vault().pending()
    assert first.correction == "Biscuit." and {"thumbs_up", "correction"} <= set(first.flags)
    assert second.session == first.session and second.reply_text == "He is three."


def test_the_report_says_what_the_night_trained_on_in_words() -> None:
    from tui.screens.report import training_lines

    lines = training_lines(
        {
            "episode": 1,
            "augment": 567,
            "dream": 11,
            "replay": 32,
            "secret_episodes": 4,
            "heldout_probes": 53,
            "dreams_written": 105,
            "dreams_accepted": 11,
            "dreams_rejected_empty-or-copy": 38,
            "dreams_rejected_off-topic": 11,
            "new_counter": 2,
        }
    )
    assert lines == [
        "trained on 1 episode · 567 augmentations · 11 dreams · 32 replay samples",
        "dreams: 105 written, 11 kept; turned down: 38 empty or copy, 11 off topic",
        "set aside: 4 episodes holding a secret, never trained on · 53 held-out questions for the recall gate"
        " · 2 new counter",
    ]
    assert training_lines({}) == []
