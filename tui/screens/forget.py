"""Forget something already learned: the statement to unlearn, typed as it was told."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class ForgetScreen(ModalScreen[str | None]):
    """Enter starts unlearning the typed statement (`nightcap forget`); escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Forget something Nightcap already learned", classes="title")
            yield Label(
                "Type the statement as you told it. A short unlearning pass makes a new model "
                "(a few minutes); the previous one stays for rollback. Pending memories are "
                "forgotten exactly from the sidebar instead."
            )
            yield Input(placeholder="e.g. my locker code at the gym is 4417", id="forget-text")
            yield Label("enter forget · escape cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
