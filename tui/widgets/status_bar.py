"""The status line: model generation, pending memories, sleep conditions, and incognito."""

from __future__ import annotations

from textual import work
from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from assistant.errors import NightcapError
from tui import messages as m
from tui.host import nightcap_app

REFRESH_EVERY_S = 30.0


class StatusBar(Widget):
    """One line at the top of the chat. Incognito shows in reverse video while it is on."""

    generation: reactive[str] = reactive("")
    model: reactive[str] = reactive("loading")
    """loading, ready or failed."""
    pending: reactive[int | None] = reactive(None)
    memory: reactive[str] = reactive("opening")
    """opening, on, or off (the vault is locked or missing: nothing is being kept)."""
    conditions: reactive[str | None] = reactive(None)
    incognito: reactive[bool] = reactive(False)
    sleeping: reactive[str] = reactive("")

    def on_mount(self) -> None:
        self.set_interval(REFRESH_EVERY_S, self.refresh_counts)

    @work(thread=True, exclusive=True)
    def refresh_counts(self) -> None:
        """Count pending episodes and read the power/idle conditions (both can take a moment)."""
        app = nightcap_app(self)
        pending = None
        vault = app.vault
        if vault is not None:
            try:
                pending = len(vault.pending())
            except NightcapError:
                pending = None
        self.post_message(m.StatusUpdated(pending, app.conditions()))

    def on_status_updated(self, message: m.StatusUpdated) -> None:
        self.pending, self.conditions = message.pending, message.conditions

    def render(self) -> Content:
        parts: list[str | tuple[str, str]] = []
        if self.incognito:
            parts += [(" INCOGNITO ", "bold reverse"), " "]
        parts.append(("Nightcap", "bold"))
        model = self.generation or "model"
        if self.model == "loading":
            model += " (loading…)"
        elif self.model == "failed":
            model += " (not loaded)"
        parts.append(f"  {model}")
        if self.memory == "off":
            parts.append(("  memory off", "bold"))
        elif self.memory == "opening":
            parts.append("  unlocking memories…")
        elif self.pending is not None:
            parts.append(f"  {self.pending} pending")
        if self.sleeping:
            parts.append((f"  sleeping: {self.sleeping}", "bold"))
        elif self.conditions:
            parts.append((f"  {self.conditions}", "dim"))
        return Content.assemble(*parts)
