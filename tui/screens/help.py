"""The help screen: every key, and what each teaching signal does to what Nightcap learns."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

INTRO = (
    "Everything you say is kept as an encrypted memory. At night, when the machine is plugged in "
    "and idle, Nightcap sleeps: it learns from the day's memories, then destroys their transcripts."
)

SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Chat",
        [
            ("enter", "send the message"),
            ("ctrl+n", "new conversation"),
            ("f2", "show or hide the pending conversations"),
            ("tab", "move between the input and the conversation list"),
            ("enter", "(in the list) resume that conversation"),
            ("escape", "stop the reply being written, or dismiss the banner"),
            ("ctrl+q", "quit"),
        ],
    ),
    (
        "Teaching: acts on the last answer",
        [
            ("ctrl+e", "correct it: your text is learned instead, as important"),
            ("ctrl+g", "good: learn more from this exchange"),
            ("ctrl+b", "bad: learn less from it"),
            ("ctrl+r", "remember this exchange especially well"),
            ("ctrl+o", "incognito: keep nothing until it is switched off"),
        ],
    ),
    (
        "Memory and sleep",
        [
            ("f3", "the last sleep: what was consolidated, gates, loss, durations"),
            ("f4", "model generations, with rollback"),
            ("f5", "sleep now, with live progress"),
            ("f6", "forget something a night already learned"),
            ("f1", "this help"),
        ],
    ),
]

OUTRO = (
    "The conversation list shows only pending conversations: after a sleep, the ones consolidated "
    "into the model are gone for good, and the model carries what it learned from them."
)


def help_text() -> Content:
    parts: list[str | tuple[str, str]] = [INTRO, "\n"]
    for title, keys in SECTIONS:
        parts += ["\n", (title, "bold underline"), "\n"]
        for key, action in keys:
            parts += [(f"  {key:<8}", "bold"), f"{action}\n"]
    parts += ["\n", OUTRO]
    return Content.assemble(*parts)


class HelpScreen(ModalScreen[None]):
    """Keys and what they do."""

    BINDINGS = [Binding("escape,f1,q", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog") as dialog:
            dialog.border_title = "Nightcap help"
            dialog.border_subtitle = "escape closes"
            yield Static(help_text(), id="help")
