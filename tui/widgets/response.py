"""A reply from Nightcap: streamed in, then marked with the teaching signals it received."""

from __future__ import annotations

from textual.widgets import Markdown

from assistant.episode import FLAG_CORRECTION, FLAG_REMEMBER, FLAG_SECRET, FLAG_THUMBS_DOWN, FLAG_THUMBS_UP, Episode

_MARKS = {
    FLAG_THUMBS_UP: "+ good",
    FLAG_THUMBS_DOWN: "- bad",
    FLAG_REMEMBER: "* remember",
    FLAG_CORRECTION: "corrected",
    FLAG_SECRET: "secret: kept out of sleep",
}


class Response(Markdown):
    """One reply. `episode` is the memory it was sealed as (None: not kept)."""

    BORDER_TITLE = "Nightcap"

    def __init__(self, markdown: str = "", *, episode: Episode | None = None, incognito: bool = False) -> None:
        super().__init__(markdown)
        self.episode = episode
        self.incognito = incognito

    def finish(self, reply: str, episode: Episode | None, incognito: bool) -> None:
        """The reply is complete: show it whole and remember which episode it is."""
        self.loading = False
        self.episode = episode
        self.incognito = incognito
        self.update(reply or "*(no reply)*")
        self.show_marks()

    def show_marks(self) -> None:
        """Put the teaching signals (and whether it was kept) in the border."""
        if self.incognito:
            self.border_subtitle = "incognito: not kept"
            self.add_class("-incognito")
            return
        flags = self.episode.flags if self.episode else []
        self.border_subtitle = " · ".join(mark for flag, mark in _MARKS.items() if flag in flags)
        self.set_class(bool(self.episode and self.episode.correction is not None), "-corrected")
