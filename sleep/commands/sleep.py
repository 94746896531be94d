"""`nightcap sleep [--now] [--json]`: one sleep cycle in the foreground, with progress.

Without `--now` it runs only when the sleep conditions hold (on power, idle, in the window,
enough pending episodes), as the daemon would; `--now` skips that check. Ctrl-C pauses the
night: training checkpoints (encrypted) and the next run resumes.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.errors import SleepError

from sleep.cycle import STAGES


class RichProgress:
    """Stage list and a training bar on stderr (stdout stays clean for --json)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bars = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.stages = self.bars.add_task("sleep", total=len(STAGES), loss="")
        self.train: Any = None

    def __enter__(self) -> "RichProgress":
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def stage(self, name: str) -> None:
        done = STAGES.index(name) if name in STAGES else 0
        self.bars.update(self.stages, completed=done, description=f"sleep: {name}")

    def step(self, i: int, total: int, loss: float | None) -> None:
        if self.train is None:
            self.train = self.bars.add_task("  train", total=total, loss="")
        self.bars.update(self.train, completed=i, total=total, loss="" if loss is None else f"loss {loss:.3f}")


def _summary(report: dict[str, Any]) -> str:
    outcome = report["outcome"]
    if outcome == "nothing-to-do":
        return "nothing to consolidate: no pending episodes"
    if outcome == "promoted":
        resumed = (
            f" (resumed a paused night; not done again: {', '.join(report['skipped'])})"
            if report.get("skipped")
            else ""
        )
        return (
            f"consolidated {report['episodes']} episodes from {report['consolidated_sessions']} conversations "
            f"into {report['new_generation']}{resumed}; their transcripts were destroyed"
        )
    return f"{outcome}: {report.get('error') or ''}".strip()


def main(argv: list[str]) -> int:
    p = parser("sleep", "Run one sleep cycle: learn the pending episodes, then destroy their logs.")
    p.add_argument("--now", action="store_true", help="run even if the sleep conditions do not hold")
    p.add_argument("--json", action="store_true", help="print the sleep report as one JSON object")
    # The daemon's night runs here in a process of its own; it yields if the daemon dies.
    p.add_argument("--parent-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    app = Nightcap.load()
    if not args.now:
        from sleep.conditions import check_conditions

        cond = check_conditions(app.config, activity=app.home.api_activity)
        if not cond.ok:
            raise SleepError(f"not sleeping now ({cond.summary}); use `nightcap sleep --now` to force it")
    app.vault()  # unlock before any work: a wrong passphrase fails first

    stopping = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["flag"] = True

    old = signal.signal(signal.SIGINT, on_signal), signal.signal(signal.SIGTERM, on_signal)
    from sleep.cycle import SleepInterrupted, run_cycle

    try:
        with RichProgress() if sys.stderr.isatty() and not args.json else _Quiet() as progress:
            orphaned = (lambda: os.getppid() != args.parent_pid) if args.parent_pid else (lambda: False)
            report = run_cycle(app, should_stop=lambda: stopping["flag"] or orphaned(), progress=progress).to_dict()
    except SleepInterrupted as err:
        print(f"nightcap sleep: {err}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, old[0])
        signal.signal(signal.SIGTERM, old[1])
    if args.json:
        print(_summary(report))
        print_json(report)
    else:
        print(_summary(report))
        for name, secs in report["stages"].items():
            print(f"  {name:<9} {secs:8.1f} s")
    return 0 if report["outcome"] in ("promoted", "nothing-to-do") else 1


class _Quiet:
    """Plain progress lines on stderr when it is not a terminal."""

    def __enter__(self) -> "_Quiet":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def stage(self, name: str) -> None:
        print(f"sleep: {name}", file=sys.stderr, flush=True)

    def step(self, i: int, total: int, loss: float | None) -> None:
        if i == total or i % 10 == 0:
            print(
                f"sleep: train step {i}/{total} loss {loss:.3f}" if loss is not None else f"step {i}/{total}",
                file=sys.stderr,
                flush=True,
            )
