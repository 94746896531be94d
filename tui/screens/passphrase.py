"""The passphrase dialog, shown when the vault cannot unlock on its own (no keyring, no
$NIGHTCAP_PASSPHRASE). For a new vault it asks twice: a mistyped passphrase would lock the
memories away for good.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label

UNLOCK = "Type your Nightcap passphrase to unlock your memories."
CREATE = (
    "Your memories are encrypted with a passphrase. Choose one and type it twice; "
    "nobody can recover it if it is forgotten."
)


class PassphraseScreen(ModalScreen[str | None]):
    """Ask for the vault passphrase; escape goes on without memory (nothing is kept)."""

    BINDINGS = [Binding("escape", "cancel", "Continue without memory")]

    def __init__(self, reason: str = "", *, creating: bool = False) -> None:
        super().__init__()
        self.reason = reason
        self.creating = creating

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Choose a passphrase" if self.creating else "Unlock your memories", classes="title")
            yield Label(CREATE if self.creating else UNLOCK)
            yield Label(self.reason, id="reason", classes="error")
            yield Input(placeholder="passphrase", password=True, id="passphrase")
            if self.creating:
                yield Input(placeholder="the same passphrase again", password=True, id="repeat")
            action = "enter next" if self.creating else "enter unlock"
            yield Label(f"{action} · escape continue without memory", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#reason").display = bool(self.reason)

    @on(Input.Submitted)
    def unlock(self, event: Input.Submitted) -> None:
        passphrase = self.query_one("#passphrase", Input).value
        if not passphrase:
            return
        if self.creating:
            repeat = self.query_one("#repeat", Input)
            if event.input.id == "passphrase":
                repeat.focus()
                return
            if repeat.value != passphrase:
                self._say("The two passphrases differ; type them again.")
                repeat.value = ""
                self.query_one("#passphrase", Input).focus()
                return
        self.dismiss(passphrase)

    def _say(self, text: str) -> None:
        reason = self.query_one("#reason", Label)
        reason.update(text)
        reason.display = True

    def action_cancel(self) -> None:
        self.dismiss(None)
