"""Sleeping from inside the TUI: "sleep now", the running cycle's state, and its live progress.

The cycle itself (`sleep.cycle.run_cycle`) is imported only when the user asks to sleep: it
pulls in torch, which the chat never pays for. It runs in a thread worker owned by the app, so
leaving the sleep screen does not stop it; its progress callbacks come back as messages.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Protocol

from textual.message_pump import MessagePump

from assistant.errors import NightcapError, where
from sleep.progress import SleepProgress
from sleep.report import SleepReport
from tui import messages as m
from tui.screens.sleep import SleepScreen

if TYPE_CHECKING:
    from tui.app import NightcapApp


class Sleeper(Protocol):
    """Runs one sleep cycle and returns its report."""

    def __call__(self, nightcap: Any, *, should_stop: Callable[[], bool], progress: SleepProgress) -> SleepReport: ...


class Forgetter(Protocol):
    """Unlearns one consolidated statement and returns its report (`sleep.forget`)."""

    def __call__(
        self, nightcap: Any, text: str, *, should_stop: Callable[[], bool], progress: SleepProgress
    ) -> SleepReport: ...


def run_forget(nightcap: Any, text: str, *, should_stop: Callable[[], bool], progress: SleepProgress) -> SleepReport:
    """The real unlearning pass. Raises ImportError when the sleep side is not installed."""
    from sleep.forget import forget  # deferred: imports torch, transformers and peft

    return forget(nightcap, text, should_stop=should_stop, progress=progress)


def run_sleep_cycle(nightcap: Any, *, should_stop: Callable[[], bool], progress: SleepProgress) -> SleepReport:
    """The real cycle. Raises ImportError when the sleep side is not installed."""
    from sleep.cycle import run_cycle  # deferred: imports torch, transformers and peft

    return run_cycle(nightcap, should_stop=should_stop, progress=progress)


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
    report: SleepReport | None = None
    title: str = "Sleeping"

    @property
    def stage(self) -> str:
        return self.stages[-1][0] if self.stages else "starting"

    def summary(self) -> str:
        """Short text for the status bar."""
        return f"{self.stage} {self.step}/{self.total}" if self.total else self.stage


class Sleeping:
    """The app's "sleep now" and "forget", owned by NightcapApp (`app.sleeping`): at most one
    cycle at a time, run in a thread worker of the app so that leaving the sleep screen does not
    stop it; the app hands it the cycle's progress messages."""

    def __init__(self, app: NightcapApp, sleeper: Sleeper, forgetter: Forgetter) -> None:
        self.app = app
        self.sleeper = sleeper
        self.forgetter = forgetter
        self.run: SleepRun | None = None
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.done

    def sleep_now(self) -> None:
        """Start a night unless one runs, and show it."""
        if not self.running:
            self._start(SleepRun(), None)
        self._show()

    def forget(self) -> None:
        """Ask for a statement a night consolidated, then unlearn it on the sleep screen."""
        from tui.screens.forget import ForgetScreen

        if self.running:
            self._show()  # one cycle at a time: show the running one
            return

        def start(text: str | None) -> None:
            if text:
                self._start(SleepRun(title="Forgetting"), text)
                self._show()

        self.app.push_screen(ForgetScreen(), start)

    def stop(self) -> None:
        if self.run is not None and self.running:
            self.run.stopping = True
            self._stop.set()
            self._changed()

    def _start(self, run: SleepRun, forget: str | None) -> None:
        self.run, self._stop = run, threading.Event()
        self.app.run_worker(partial(self._work, forget), thread=True, exclusive=True, group="sleep")

    def _show(self) -> None:
        if not isinstance(self.app.screen, SleepScreen):
            self.app.push_screen(SleepScreen())

    def _work(self, forget: str | None) -> None:
        """A night, or with `forget`, the unlearning of that statement (same screen, same stop)."""
        app, stop = self.app, self._stop.is_set
        progress = PostingProgress(app)
        try:
            if forget is not None:
                report = self.forgetter(app.nightcap, forget, should_stop=stop, progress=progress)
            else:
                report = self.sleeper(app.nightcap, should_stop=stop, progress=progress)
        except ImportError:
            app.post_message(m.SleepFinished(None, "sleeping is not available in this installation"))
        except NightcapError as err:
            app.post_message(m.SleepFinished(None, str(err)))
        except Exception as err:  # the previous model keeps serving whatever went wrong
            app.post_message(
                m.SleepFinished(None, f"the sleep cycle failed ({where(err)}); the previous model keeps serving")
            )
        else:
            app.post_message(m.SleepFinished(report))

    def _changed(self) -> None:
        run = self.run
        if run is None:
            return
        if isinstance(self.app.screen, SleepScreen):
            self.app.screen.show(run)
        if self.app.chat is not None:
            self.app.chat.status_bar.sleeping = "" if run.done else run.summary()

    def stage(self, message: m.SleepStage) -> None:
        if self.run is not None:
            self.run.stages.append((message.name, time.monotonic()))
            self._changed()

    def step(self, message: m.SleepStep) -> None:
        run = self.run
        if run is not None:
            run.step, run.total = message.i, message.total
            if message.loss is not None:
                run.losses.append(message.loss)
            self._changed()

    def finished(self, message: m.SleepFinished) -> None:
        run, app = self.run, self.app
        if run is None:
            return
        run.done, run.report, run.error = True, message.report, message.error
        self._changed()
        if app.chat is not None:
            app.chat.refresh_memory()
        if message.error:
            app.notify(message.error, title="Sleep", severity="error", timeout=15, markup=False)
            app.show_banner_if_due(just_now=True)  # its stored report is no news at the next start
            return
        generation = message.report.new_generation if message.report else None
        if generation and generation != app.runtime.generation:
            app.switch_generation(generation)
        app.show_banner_if_due(message.report, just_now=True)
