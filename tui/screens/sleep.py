"""Sleep now: the cycle's live progress (stages, training steps, loss) while it runs."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, Sparkline, Static

from tui.host import nightcap_app

if TYPE_CHECKING:
    from tui.sleeping import SleepRun


class SleepScreen(Screen[None]):
    """Watch the running cycle. Leaving the screen does not stop it; `s` asks it to stop."""

    BINDINGS = [
        Binding("escape,q", "app.pop_screen", "Back (keeps sleeping)"),
        Binding("s", "app.stop_sleep", "Stop"),
        Binding("f3", "app.show_report", "Report"),
    ]

    def compose(self) -> ComposeResult:
        yield Label("Sleeping", classes="screen-title")
        yield Static("", id="sleep-state")
        yield ProgressBar(id="sleep-steps", show_eta=False)
        yield Label("training loss", classes="section", id="sleep-loss-label")
        yield Sparkline([], id="sleep-loss")
        yield Static("", id="sleep-stages")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        run = nightcap_app(self).sleep_run
        if run is not None:
            self.show(run)
            self.query_one(".screen-title", Label).update(run.title)

    def show(self, run: SleepRun) -> None:
        """Redraw from `run`."""
        if run.error:
            state = f"The sleep did not finish: {run.error}"
        elif run.done:
            outcome = (run.report.outcome if run.report else "") or "done"
            state = f"Finished: {outcome}. Press F3 for the report."
        elif run.stopping:
            state = f"Stopping (during {run.stage}); it resumes from here next time…"
        else:
            state = f"Stage: {run.stage}" + (f"   step {run.step} of {run.total}" if run.total else "")
        self.query_one("#sleep-state", Static).update(state)
        bar = self.query_one(ProgressBar)
        if run.total:
            bar.update(total=run.total, progress=run.step)
        self.query_one(Sparkline).data = list(run.losses)
        now = time.monotonic()
        lines = []
        for index, (name, began) in enumerate(run.stages):
            ended = run.stages[index + 1][1] if index + 1 < len(run.stages) else (None if not run.done else now)
            took = f"{ended - began:6.1f} s" if ended is not None else "   …"
            lines.append(f"{name:<12}{took}")
        self.query_one("#sleep-stages", Static).update("\n".join(lines))
