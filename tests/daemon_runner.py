"""`nightcap daemon` as a real process with its world replaced, for the subprocess tests.

    python tests/daemon_runner.py CONDITIONS.json [--real-cycle]

The conditions come from a JSON file the test rewrites while the daemon runs (keys: "plugged",
"idle_seconds", "in_window", "pending", optional "temperature"); a file that cannot be read makes
the conditions raise, which the daemon treats as "wait". The cycle is tests/daemon_fake_cycle.py
unless --real-cycle. Everything goes in through `Daemon`'s arguments, as in-process tests do:
the product reads no test seam from the environment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from assistant.app import Nightcap
from sleep.conditions import Conditions, check_conditions
from sleep.daemon import Daemon
from sleep.idle import IdleReading
from sleep.power import PowerReading


def from_file(app: Any, path: Path) -> tuple[Any, Any]:
    """The daemon's `conditions` and `pending` collaborators, read from `path` on every call."""

    def data() -> dict[str, Any]:
        return json.loads(path.read_text(encoding="utf-8"))

    def conditions(pending: int | None = None) -> Conditions:
        d = data()
        plugged = d.get("plugged")
        secs = d.get("idle_seconds")
        return check_conditions(
            app.config,
            pending=pending,
            power=lambda: PowerReading(True, None if plugged is None else bool(plugged)),
            idle=lambda: IdleReading(None if secs is None else float(secs), "file", "conditions file"),
            in_window=bool(d.get("in_window", True)),
            temperature=(lambda: d.get("temperature")) if "temperature" in d else None,
        )

    return conditions, lambda: int(data().get("pending", 0))


def main(argv: list[str]) -> int:
    app = Nightcap.load()
    conditions, pending = from_file(app, Path(argv[0]))
    if "--real-cycle" in argv:
        return Daemon(app, conditions=conditions, pending=pending).run()
    import daemon_fake_cycle as fake

    return Daemon(
        app, cycle=fake.run_cycle, interrupted=fake.SleepInterrupted, conditions=conditions, pending=pending
    ).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
