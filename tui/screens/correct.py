"""The correction editor: rewrite the last answer the way it should have been."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, TextArea


class CorrectionScreen(ModalScreen[str | None]):
    """Edit `answer`; ctrl+s saves the text as the correction, escape keeps the answer as it was."""

    BINDINGS = [
        Binding("ctrl+s", "save", "Save correction", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Correct the answer", classes="title")
            yield Label("Nightcap learns this instead of its reply when it next sleeps.")
            yield TextArea(self.answer, id="correction", soft_wrap=True, show_line_numbers=False)
            yield Label("ctrl+s save · escape cancel", classes="hint")

    def on_mount(self) -> None:
        editor = self.query_one(TextArea)
        editor.focus()
        editor.move_cursor(editor.document.end)

    def action_save(self) -> None:
        self.dismiss(self.query_one(TextArea).text)

    def action_cancel(self) -> None:
        self.dismiss(None)
