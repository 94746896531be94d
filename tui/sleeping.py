"""Sleeping from inside the TUI: "sleep now", the running cycle's state, and its live progress.

The cycle itself (`sleep.cycle.run_cycle`) is imported only when the user asks to sleep: it
pulls in torch, which the chat never pays for. It runs in a thread worker owned by the app, so
leaving the sleep screen does not stop it; its progress callbacks come back as messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Protocol

from textual import work
from textual.message_pump import MessagePump

from assistant.errors import NightcapError, where
from sleep.progress import SleepProgress
from tui import messages as m
from tui.screens.sleep import SleepScreen

if TYPE_CHECKING:
    from textual.app import App

    from assistant.app import Nightcap
    from tui.runtime import PendingRuntime
    from tui.screens.chat import ChatScreen

    _Base = App[None]
else:
    _Base = object


class Sleeper(Protocol):
    """Runs one sleep cycle and returns its report as a dict (`SleepReport.to_dict()`)."""

    def __call__(
        self, nightcap: Any, *, should_stop: Callable[[], bool], progress: SleepProgress
    ) -> dict[str, Any]: ...


class Forgetter(Protocol):
    """Unlearns one consolidated statement and returns the report as a dict (`sleep.forget`)."""

    def __call__(
        self, nightcap: Any, text: str, *, should_stop: Callable[[], bool], progress: SleepProgress
    ) -> dict[str, Any]: ...


def run_forget(nightcap: Any, text: str, *, should_stop: Callable[[], bool], progress: SleepProgress) -> dict[str, Any]:
    """The real unlearning pass. Raises ImportError when the sleep side is not installed."""
    from sleep.forget import forget  # deferred: imports torch, transformers and peft

    return forget(nightcap, text, should_stop=should_stop, progress=progress).to_dict()


def run_sleep_cycle(nightcap: Any, *, should_stop: Callable[[], bool], progress: SleepProgress) -> dict[str, Any]:
    """The real cycle. Raises ImportError when the sleep side is not installed."""
    from sleep.cycle import run_cycle  # deferred: imports torch, transformers and peft

    return run_cycle(nightcap, should_stop=should_stop, progress=progress).to_dict()


class PostingProgress:
    """A `SleepProgress` that posts each callback to the UI as a message (thread-safe)."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target

    def stage(self, name: str) -> None:
        self.target.post_message(m.SleepStage(name))

    def step(self, i: int, total: int, loss: float | None) -> None:
        self.target.post_message(m.SleepStep(i, total, loss))


@dataclass
class SleepRun:
    """One cycle started from the TUI, as the sleep screen shows it."""

    stages: list[tuple[str, float]] = field(default_factory=list)
    step: int = 0
    total: int = 0
    losses: list[float] = field(default_factory=list)
    done: bool = False
    stopping: bool = False
    error: str | None = None
    report: dict[str, Any] | None = None
    title: str = "Sleeping"

    @property
    def stage(self) -> str:
        return self.stages[-1][0] if self.stages else "starting"

    def summary(self) -> str:
        """Short text for the status bar."""
        return f"{self.stage} {self.step}/{self.total}" if self.total else self.stage


class SleepControl(_Base):
    """The app's "sleep now": mixed into NightcapApp, which provides what the TYPE_CHECKING block
    below declares."""

    sleep_run: SleepRun | None = None
    _stop_sleep: threading.Event

    if TYPE_CHECKING:
        nightcap: Nightcap
        runtime: PendingRuntime
        chat: ChatScreen | None
        sleeper: Sleeper
        forgetter: Forgetter

        def switch_generation(self, name: str) -> None: ...

        def show_banner_if_due(self, report: dict[str, Any] | None = None, *, just_now: bool = False) -> None: ...

    def action_sleep_now(self) -> None:
        if self.sleep_run is None or self.sleep_run.done:
            self.sleep_run = SleepRun()
            self._stop_sleep = threading.Event()
            self.run_sleep(None)
        if not isinstance(self.screen, SleepScreen):
            self.push_screen(SleepScreen())

    def action_forget_learned(self) -> None:
        """Ask for a statement a night consolidated, then unlearn it on the sleep screen."""
        from tui.screens.forget import ForgetScreen

        if self.sleep_run is not None and not self.sleep_run.done:
            self.push_screen(SleepScreen())  # one cycle at a time: show the running one
            return

        def start(text: str | None) -> None:
            if text:
                self.sleep_run = SleepRun(title="Forgetting")
                self._stop_sleep = threading.Event()
                self.run_sleep(text)
                self.push_screen(SleepScreen())

        self.push_screen(ForgetScreen(), start)

    def action_stop_sleep(self) -> None:
        if self.sleep_run is not None and not self.sleep_run.done:
            self.sleep_run.stopping = True
            self._stop_sleep.set()
            self._sleep_changed()

    @work(thread=True, exclusive=True, group="sleep")
    def run_sleep(self, forget: str | None) -> None:
        """A night, or with `forget`, the unlearning of that statement (same screen, same stop)."""
        progress = PostingProgress(self)
        try:
            if forget is not None:
                report = self.forgetter(self.nightcap, forget, should_stop=self._stop_sleep.is_set, progress=progress)
            else:
                report = self.sleeper(self.nightcap, should_stop=self._stop_sleep.is_set, progress=progress)
        except ImportError:
            self.post_message(m.SleepFinished(None, "sleeping is not available in this installation"))
        except NightcapError as err:
            self.post_message(m.SleepFinished(None, str(err)))
        except Exception as err:  # the previous model keeps serving whatever went wrong
            self.post_message(
                m.SleepFinished(None, f"the sleep cycle failed ({where(err)}); the previous model keeps serving")
            )
        else:
            self.post_message(m.SleepFinished(report))

    def _sleep_changed(self) -> None:
        run = self.sleep_run
        if run is None:
            return
        if isinstance(self.screen, SleepScreen):
            self.screen.show(run)
        if self.chat is not None:
            self.chat.status_bar.sleeping = "" if run.done else run.summary()

    def on_sleep_stage(self, message: m.SleepStage) -> None:
        if self.sleep_run is not None:
            self.sleep_run.stages.append((message.name, time.monotonic()))
            self._sleep_changed()

    def on_sleep_step(self, message: m.SleepStep) -> None:
        run = self.sleep_run
        if run is not None:
            run.step, run.total = message.i, message.total
            if message.loss is not None:
                run.losses.append(message.loss)
            self._sleep_changed()

    def on_sleep_finished(self, message: m.SleepFinished) -> None:
        run = self.sleep_run
        if run is None:
            return
        run.done, run.report, run.error = True, message.report, message.error
        self._sleep_changed()
        if self.chat is not None:
            self.chat.refresh_memory()
        if message.error:
            self.notify(message.error, title="Sleep", severity="error", timeout=15, markup=False)
            self.show_banner_if_due(just_now=True)  # its stored report is no news at the next start
            return
        report = message.report or {}
        generation = report.get("new_generation")
        if generation and generation != self.runtime.generation:
            self.switch_generation(str(generation))
        self.show_banner_if_due(report, just_now=True)
