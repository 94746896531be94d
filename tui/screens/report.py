"""The last sleep report: what was consolidated, the gates, the loss curve, the durations."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Sparkline, Static

from sleep.cycle import STAGES
from sleep.report import SleepReport

NO_REPORT = (
    "Nightcap has not slept yet. It sleeps at night when the machine is plugged in and idle; "
    "press F5 on the chat screen to sleep now."
)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _short(digest: Any) -> str:
    return str(digest)[:12] if digest else "-"


TRAINED = {
    "episode": ("episode", "episodes"),
    "augment": ("augmentation", "augmentations"),
    "dream": ("dream", "dreams"),
    "replay": ("replay sample", "replay samples"),
}
"""Kinds of training example, as the report's counters name them."""
SET_ASIDE = {
    "secret_episodes": "episodes holding a secret, never trained on",
    "heldout_probes": "held-out questions for the recall gate",
    "ambiguous_dropped": "questions asked of more than one statement",
}
REJECTED = "dreams_rejected_"


def _words(key: str) -> str:
    return key.replace("_", " ").replace("-", " ")


def training_lines(counts: dict[str, int]) -> list[str]:
    """The report's example counters as sentences: what was trained on, what became of the
    model-written dreams, and what was set aside."""
    trained = [f"{counts[k]} {names[counts[k] != 1]}" for k, names in TRAINED.items() if counts.get(k)]
    lines = ["trained on " + " · ".join(trained)] if trained else []
    if counts.get("dreams_written"):
        line = f"dreams: {counts['dreams_written']} written, {counts.get('dreams_accepted', 0)} kept"
        rejected = sorted(
            ((v, _words(k[len(REJECTED) :])) for k, v in counts.items() if k.startswith(REJECTED) and v), reverse=True
        )
        if rejected:
            line += "; turned down: " + ", ".join(f"{n} {why}" for n, why in rejected)
        lines.append(line)
    aside = [f"{counts[k]} {what}" for k, what in SET_ASIDE.items() if counts.get(k)]
    known = {*TRAINED, *SET_ASIDE, "dreams_written", "dreams_accepted"}
    aside += [f"{v} {_words(k)}" for k, v in counts.items() if k not in known and not k.startswith(REJECTED) and v]
    if aside:
        lines.append("set aside: " + " · ".join(aside))
    return lines


def summary(report: SleepReport) -> Text:
    """The report's headline numbers, a few short lines."""
    text = Text()
    text.append(report.outcome or "unknown", style="bold")
    gen = report.new_generation
    text.append(f"  ->  {gen}" if gen else "  (the model was not changed)")
    text.append(f"\nstarted {report.started or '-'}   finished {report.finished or '-'}")
    if report.error:
        text.append(f"\n{report.error}", style="red")
    text.append(
        f"\n{report.episodes} episodes · {report.steps} training steps · "
        f"{report.consolidated_sessions} conversations consolidated and destroyed"
    )
    for line in training_lines(report.examples):
        text.append("\n" + line)
    text.append(f"\nmodel sha256 {_short(report.old_sha256)} -> {_short(report.new_sha256)}")
    return text


class SleepReportScreen(Screen[None]):
    """What the newest sleep did. No conversation content is ever in a report."""

    BINDINGS = [Binding("escape,f3,q", "app.pop_screen", "Back")]

    def __init__(self, report: SleepReport | None) -> None:
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        yield Label("Last sleep", classes="screen-title")
        if not self.report:
            yield Static(NO_REPORT, id="no-report")
            yield Footer(show_command_palette=False)
            return
        report = self.report
        yield Static(summary(report), id="summary")
        with Horizontal(id="tables"):
            with Vertical(id="gates-box"):
                yield Label("Gates", classes="section")
                yield DataTable(id="gates", cursor_type="none", zebra_stripes=False)
            with Vertical(id="stages-box"):
                yield Label("Durations", classes="section")
                yield DataTable(id="stages", cursor_type="none")
        losses = [float(x) for x in report.losses]
        with Horizontal(id="loss-box"):
            first = f"{losses[0]:.2f}" if losses else "-"
            last = f"{losses[-1]:.2f}" if losses else "-"
            yield Label(f"loss {first}", classes="section")
            yield Sparkline(losses, id="losses", summary_function=max)
            yield Label(last)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        if not self.report:
            return
        gates = self.query_one("#gates", DataTable)
        gates.add_columns("gate", "passed", "value", "threshold")
        for name, gate in self.report.gates.items():
            mark = Text("yes", style="green") if gate.passed else Text("NO", style="bold red")
            gates.add_row(name, mark, _num(gate.value), _num(gate.threshold))
        stages = self.query_one("#stages", DataTable)
        stages.add_columns("stage", "seconds")
        total = 0.0
        times = self.report.stages
        order = {name: i for i, name in enumerate(STAGES)}
        for name, seconds in sorted(times.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])):
            stages.add_row(name, Text(f"{float(seconds):.1f}", justify="right"))
            total += float(seconds)
        stages.add_row(Text("total", style="bold"), Text(f"{total:.1f}", style="bold", justify="right"))
