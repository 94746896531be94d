"""The sidebar: pending conversations (not yet consolidated by sleep), newest first."""

from __future__ import annotations

from textual import work
from textual.content import Content
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from assistant.errors import NightcapError
from tui import messages as m
from tui.host import nightcap_app
from tui.memory import SessionRow, session_rows


class SessionList(OptionList):
    """Pick a conversation to resume it. Consolidated ones leave the list after a night's sleep.

    Until the user toggles it (F2), the list shows only when there is something in it.
    """

    BORDER_TITLE = "Pending"
    TITLE_WIDTH = 22

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[SessionRow] = []
        self.current: str | None = None
        self.pinned: bool | None = None
        """Shown (True) or hidden (False) by hand; None follows the contents."""

    def on_mount(self) -> None:
        self.display = False

    @work(thread=True, exclusive=True)
    def reload(self) -> None:
        """Read the pending conversations from the vault (in a thread: it decrypts)."""
        vault = nightcap_app(self).vault
        if vault is None:
            return
        try:
            rows = session_rows(vault)
        except NightcapError as err:
            self.app.call_from_thread(self.notify, str(err), title="Conversations", severity="warning", markup=False)
            return
        self.post_message(m.SessionsLoaded(rows))

    def on_sessions_loaded(self, message: m.SessionsLoaded) -> None:
        self.show(message.sessions, self.current)

    def show(self, rows: list[SessionRow], current: str | None = None, now: float | None = None) -> None:
        """Replace the list with `rows`, marking the conversation shown now."""
        self.rows, self.current = rows, current
        highlighted = self.highlighted
        self.clear_options()
        for row in rows:
            marker = "▸ " if row.id == current else ""
            title = marker + row.title
            if len(title) > self.TITLE_WIDTH:
                title = title[: self.TITLE_WIDTH - 1] + "…"
            label = Content.assemble((title, "bold" if marker else ""), "\n", (row.meta(now), "dim"))
            self.add_option(Option(label, id=row.id))
        self.border_title = f"Pending · {len(rows)}" if rows else "Pending"
        if rows and highlighted is not None:
            self.highlighted = min(highlighted, len(rows) - 1)
        if self.pinned is None:
            self.display = bool(rows)

    def mark_current(self, session_id: str) -> None:
        self.show(self.rows, session_id)

    def toggle(self) -> None:
        self.pinned = self.display = not self.display
