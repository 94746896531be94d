"""A stand-in for `sleep.cycle` in the daemon's subprocess tests (passed in by tests/daemon_runner.py).

Same contract as the real cycle: `run_cycle(app, should_stop=..., progress=...)` polls
`should_stop()` before every step; when it turns true the position is saved as a checkpoint and
`SleepInterrupted` is raised; the next run resumes from the checkpoint, which is removed only when
the night completes. Steps take `NIGHTCAP_FAKE_STEP_S` seconds (0.15), `NIGHTCAP_FAKE_STEPS`
of them (20). Every start, step, yield and finish is appended to `home/fake-cycle.events`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from assistant.fsutil import atomic_write_json
from sleep.report import SleepReport

CHECKPOINT = "fake-checkpoint.json"
EVENTS = "fake-cycle.events"


class SleepInterrupted(Exception):
    """should_stop() turned true; the checkpoint is saved."""


def _event(home: Path, text: str) -> None:
    with open(home / EVENTS, "a", encoding="utf-8") as fh:
        fh.write(text + "\n")


def run_cycle(app: Any, *, should_stop: Callable[[], bool] | None = None, progress: Any = None) -> SleepReport:
    home = app.home.root
    steps = int(os.environ.get("NIGHTCAP_FAKE_STEPS", "20"))
    step_s = float(os.environ.get("NIGHTCAP_FAKE_STEP_S", "0.15"))
    ckpt = home / CHECKPOINT
    start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
    _event(home, f"start {start}")
    for i in range(start, steps):
        if should_stop and should_stop():
            atomic_write_json(ckpt, {"step": i})
            _event(home, f"yield {i}")
            raise SleepInterrupted(f"paused at step {i}")
        time.sleep(step_s)
        _event(home, f"step {i + 1}")
    report = SleepReport(outcome="promoted", finished=time.strftime("%Y-%m-%dT%H:%M:%S"), resumed_from_step=start)
    atomic_write_json(app.home.reports / f"sleep-{report.id}.json", report.to_dict())
    ckpt.unlink(missing_ok=True)
    _event(home, "done")
    return report
