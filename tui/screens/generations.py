"""Model generations: which one answers now, where each came from, and rollback."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from assistant.errors import NightcapError
from models.store import ModelStore
from tui.host import nightcap_app


def _when(created: object) -> str:
    text = str(created or "")
    return text[:16].replace("T", " ")  # 2026-01-02T03:04:05+0000 -> 2026-01-02 03:04


class GenerationsScreen(Screen[None]):
    """Every stored generation; `enter` or `u` switches to the highlighted one, `r` rolls back."""

    BINDINGS = [
        Binding("escape,f4,q", "app.pop_screen", "Back"),
        Binding("u", "use", "Use selected"),
        Binding("r", "rollback", "Rollback"),
    ]

    def __init__(self, store: ModelStore) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        yield Label("Model generations", classes="screen-title")
        yield DataTable(id="generations", cursor_type="row")
        yield Static(
            "Each sleep writes a new generation; the older ones stay for rollback. "
            "The current one (*) answers in the chat.",
            id="generations-hint",
        )
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("", "name", "arch", "type", "created", "parent", "source")
        self.fill()

    def fill(self) -> None:
        table = self.query_one(DataTable)
        table.clear()
        current = self.store.current_name()
        for row, gen in enumerate(self.store.list()):
            m = gen.manifest
            is_current = gen.name == current
            style = "bold" if is_current else ""
            source = str(m.get("source") or "-")
            table.add_row(
                Text("*" if is_current else "", style=style),
                Text(gen.name, style=style),
                gen.arch or "-",
                str(m.get("file_type_name") or m.get("file_type") or "-"),
                _when(m.get("created")),
                gen.parent or "-",
                source if len(source) <= 18 else source[:17] + "…",
                key=gen.name,
            )
            if is_current:
                table.move_cursor(row=row)

    def _switched(self, name: str, verb: str) -> None:
        self.fill()
        nightcap_app(self).switch_generation(name)
        self.notify(f"{verb} {name}; it is loading in the background.", title="Model")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_use()

    def action_use(self) -> None:
        table = self.query_one(DataTable)
        if table.row_count == 0:
            return
        name = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if not name or name == self.store.current_name():
            return
        try:
            gen = self.store.use(name)
        except NightcapError as err:
            self.notify(str(err), title="Model", severity="error", markup=False)
            return
        self._switched(gen.name, "Now using")

    def action_rollback(self) -> None:
        try:
            gen = self.store.rollback()
        except NightcapError as err:
            self.notify(str(err), title="Rollback", severity="error", markup=False)
            return
        self._switched(gen.name, "Rolled back to")
