"""The line above the input that says the model is still loading (and that typing is fine)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, LoadingIndicator


class LoadingLine(Horizontal):
    """Shown while the model loads in the background."""

    def compose(self) -> ComposeResult:
        yield LoadingIndicator()
        yield Label("Loading the model; you can type already.", id="loading-text")

    def say(self, text: str) -> None:
        self.query_one("#loading-text", Label).update(text)
