"""The daemon as a real process: conditions from a file, the fake cycle from tests/daemon_fake_cycle.py.

Each test starts the daemon through tests/daemon_runner.py (the `nightcap daemon` process with its
conditions and cycle passed in) and flips its world by rewriting the conditions file. Waits poll for an event with a deadline; the only deadline that is part of the contract is
the 10 s within which a cycle must yield once the user is back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from assistant.fsutil import atomic_write_json

TESTS = Path(__file__).parent
ROOT = TESTS.parent
YIELD_DEADLINE_S = 10.0  # the contract
SLACK_S = 60.0  # start-up on a loaded machine: generous, not a measurement

AWAY = {"plugged": True, "idle_seconds": 9999, "in_window": True, "pending": 3}


class Rig:
    """One home, one conditions file, and the daemons started in it."""

    def __init__(self, home: Path, tmp: Path) -> None:
        self.home, self.tmp = home, tmp
        self.conditions = tmp / "conditions.json"
        self.procs: list[subprocess.Popen[bytes]] = []
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text("[daemon]\npoll_seconds = 0.2\n")
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
        self.real_cycle = False
        self.set(**AWAY)

    def set(self, **values: object) -> None:
        atomic_write_json(self.conditions, values)  # atomic: the daemon never reads half a file

    def start(self) -> subprocess.Popen[bytes]:
        out = open(self.tmp / f"daemon-{len(self.procs)}.out", "wb")
        argv = [sys.executable, str(TESTS / "daemon_runner.py"), str(self.conditions)]
        proc = subprocess.Popen(
            argv + (["--real-cycle"] if self.real_cycle else []),
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def events(self) -> list[str]:
        path = self.home / "fake-cycle.events"
        return path.read_text().split("\n")[:-1] if path.exists() else []

    def log(self) -> str:
        path = self.home / "logs" / "daemon.log"
        return path.read_text() if path.exists() else ""

    def wait_for(self, what: str, pred: Callable[[], bool], timeout: float = SLACK_S) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:g} s; events {self.events()}; log:\n{self.log()}")
            time.sleep(0.05)

    def yielded_at(self) -> int | None:
        steps = [int(e.split()[1]) for e in self.events() if e.startswith("yield")]
        return steps[-1] if steps else None

    def checkpoint(self) -> int | None:
        path = self.home / "fake-checkpoint.json"
        return json.loads(path.read_text())["step"] if path.exists() else None

    def stop(self, proc: subprocess.Popen[bytes]) -> int:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=SLACK_S)


@pytest.fixture
def rig(nightcap_home: Path, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(nightcap_home, tmp_path)
    yield r
    for proc in r.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def started(rig: Rig, step: int = 2) -> Callable[[], bool]:
    return lambda: any(e == f"step {step}" for e in rig.events())


def test_user_back_yields_within_10s_then_resumes_and_completes(rig: Rig) -> None:
    proc = rig.start()
    rig.wait_for("cycle start", started(rig))
    rig.set(**{**AWAY, "idle_seconds": 0})  # the user touches the mouse
    rig.wait_for("yield", lambda: rig.yielded_at() is not None, timeout=YIELD_DEADLINE_S)
    k = rig.yielded_at()
    assert rig.checkpoint() == k and "done" not in rig.events()
    assert proc.poll() is None, "yielding is not exiting: the daemon keeps watching"

    rig.set(**AWAY)  # away again
    rig.wait_for("completion", lambda: "done" in rig.events())
    events = rig.events()
    assert events[0] == "start 0" and f"start {k}" in events and events[-1] == "done"
    (report,) = sorted((rig.home / "reports").glob("sleep-*.json"))
    assert json.loads(report.read_text())["resumed_from_step"] == k
    assert rig.checkpoint() is None
    assert rig.stop(proc) == 0
    log = rig.log()
    for said in (
        "daemon started",
        "starting the sleep cycle",
        "yielded",
        "in use (idle 0 s",
        "cycle finished",
        "daemon stopped (SIGTERM)",
    ):
        assert said in log


def test_a_second_instance_refuses_with_one_line(rig: Rig) -> None:
    rig.set(**{**AWAY, "plugged": False})  # nothing to do: it only watches
    first = rig.start()
    rig.wait_for("start-up", lambda: "daemon started" in rig.log())
    second = subprocess.run(
        [sys.executable, "-m", "assistant.cli", "daemon", "run"],
        env=rig.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SLACK_S,
    )
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "already running" in lines[0] and f"pid {first.pid}" in lines[0]
    assert first.poll() is None
    assert rig.stop(first) == 0


def test_sigterm_checkpoints_and_exits_0(rig: Rig) -> None:
    proc = rig.start()
    rig.wait_for("cycle start", started(rig))
    assert rig.stop(proc) == 0
    k = rig.yielded_at()
    assert k is not None and rig.checkpoint() == k and "done" not in rig.events()
    assert "daemon stopped (SIGTERM)" in rig.log()


def test_kill_9_then_restart_resumes_from_the_last_checkpoint(rig: Rig) -> None:
    proc = rig.start()
    rig.wait_for("cycle start", started(rig))
    rig.set(**{**AWAY, "idle_seconds": 0})
    rig.wait_for("yield", lambda: rig.yielded_at() is not None, timeout=YIELD_DEADLINE_S)
    k = rig.yielded_at()
    assert k is not None
    rig.set(**AWAY)
    rig.wait_for("resumed steps", started(rig, k + 2))
    proc.kill()  # SIGKILL: no checkpoint, the lock dies with the process
    proc.wait()

    again = rig.start()
    rig.wait_for("completion after restart", lambda: "done" in rig.events())
    assert rig.events().count(f"start {k}") == 2, "both runs resumed from the sealed checkpoint"
    assert rig.checkpoint() is None
    assert rig.stop(again) == 0
