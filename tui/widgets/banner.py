"""The morning banner: what last night's sleep consolidated and destroyed."""

from __future__ import annotations

from textual.widgets import Static


class Banner(Static):
    """A one-off notice above the conversation; escape or a click dismisses it."""

    def say(self, text: str) -> None:
        self.update(text)
        self.display = True

    def on_click(self) -> None:
        self.display = False
