"""The daemon's decisions with every collaborator faked: conditions, clock, cycle, pending count."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, NoReturn

import pytest

from assistant.config import Config
from assistant.errors import SleepError, VaultError
from assistant.home import Home
from sleep.commands.daemon import main as daemon_main
from sleep.conditions import Conditions, check_conditions
from sleep.daemon import Daemon, DecisionLog, lock_path, next_sleep, read_state
from sleep.daemon_lock import DaemonRunning, InstanceLock, holder
from sleep.idle import IdleReading
from sleep.power import PowerReading
from sleep.report import SleepReport


class Interrupted(Exception):
    """The fake cycle's SleepInterrupted."""


@dataclass
class FakeApp:
    home: Home
    config: Config = field(default_factory=Config)


class World:
    """Everything outside the daemon: power, idle, wall clock, monotonic clock, pending count."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.plugged: bool | None = True
        self.idle: float | None = 9999.0
        self.now = datetime(2025, 3, 4, 23, 0)
        self.t = 0.0
        self.pending = 3
        self.pending_calls = 0
        self.condition_calls = 0
        self.back_at: float | None = None  # the monotonic time the user came back, once they have

    def conditions(self, pending: int | None = None) -> Conditions:
        self.condition_calls += 1
        return check_conditions(
            self.app.config,
            power=lambda: PowerReading(True, self.plugged),
            idle=lambda: IdleReading(self.idle, "fake"),
            clock=lambda: self.now,
            pending=pending,
            temperature=lambda: None,
        )

    def count(self) -> int:
        self.pending_calls += 1
        return self.pending

    def sleep(self, seconds: float) -> None:
        self.t += seconds


class FakeCycle:
    """Steps of 0.5 s of the world's clock; `at_step` lets a test change the world mid-cycle."""

    def __init__(
        self,
        world: World,
        steps: int = 10,
        at_step: dict[int, Callable[[], None]] | None = None,
        fail: BaseException | None = None,
    ) -> None:
        self.world, self.steps, self.at_step, self.fail = world, steps, at_step or {}, fail
        self.runs = 0
        self.stopped_at: list[int] = []

    def __call__(self, app: Any, *, should_stop: Callable[[], bool], progress: Any = None) -> SleepReport:
        self.runs += 1
        progress.stage("train")
        if self.fail is not None:
            raise self.fail
        for i in range(self.steps):
            self.at_step.pop(i, lambda: None)()
            if should_stop():
                self.stopped_at.append(i)
                raise Interrupted()
            self.world.t += 0.5
        return SleepReport(outcome="promoted")


@pytest.fixture
def app(nightcap_home: Path) -> FakeApp:
    return FakeApp(Home.resolve(nightcap_home))


@pytest.fixture
def world(app: FakeApp) -> World:
    return World(app)


def daemon(app: FakeApp, world: World, cycle: FakeCycle, lines: list[str]) -> Daemon:
    return Daemon(
        app,
        cycle=cycle,
        interrupted=Interrupted,
        conditions=world.conditions,
        pending=world.count,
        log=lines.append,
        now=lambda: world.now,
        monotonic=lambda: world.t,
        sleep=world.sleep,
    )


def test_waits_and_logs_a_decision_once(app: FakeApp, world: World) -> None:
    lines: list[str] = []
    world.plugged, cycle = False, FakeCycle(world)
    d = daemon(app, world, cycle, lines)
    assert d.serve(max_steps=5) == 0
    assert cycle.runs == 0
    waiting = [line for line in lines if line.startswith("conditions")]
    assert waiting == ["conditions: on battery, idle 2 h 46 min, in window 22:00-07:00: waiting"]
    assert world.pending_calls == 0, "the vault is opened only when everything else holds"


def test_runs_the_cycle_then_rests_until_the_next_window(app: FakeApp, world: World) -> None:
    lines: list[str] = []
    cycle = FakeCycle(world)
    d = daemon(app, world, cycle, lines)
    assert d.step() == "finished"
    assert read_state(app.home.root) == {
        "window": "2025-03-04T22:00",
        "finished": "2025-03-04T23:00:00",
        "outcome": "promoted",
    }
    world.now += timedelta(hours=3)  # 02:00, same night: no second cycle even with episodes pending
    counted = world.pending_calls
    assert d.step() == "done" and cycle.runs == 1
    assert world.pending_calls == counted, "a finished night does not reopen the vault every poll"
    world.now += timedelta(hours=20)  # 22:00 the next evening
    assert d.step() == "finished" and cycle.runs == 2
    assert any("cycle stage: train" in line for line in lines)
    assert any("cycle finished after 5 s: promoted" in line for line in lines)


def test_user_back_yields_within_a_second_and_the_next_run_resumes(app: FakeApp, world: World) -> None:
    lines: list[str] = []

    def user_back() -> None:
        world.idle, world.back_at = 2.0, world.t

    cycle = FakeCycle(world, at_step={4: user_back})
    d = daemon(app, world, cycle, lines)
    assert d.step() == "yielded"
    # The flip happened at step 4; the cycle was told to stop at most ~1 s of its time later.
    assert cycle.stopped_at and world.back_at is not None and world.t - world.back_at <= 1.0 + 0.5
    assert read_state(app.home.root) == {}, "an interrupted night is not over"
    assert any("yielded" in line and "in use (idle 2 s of 15 min)" in line for line in lines)
    assert d.step() == "waiting" and cycle.runs == 1
    world.idle = 9999.0
    assert d.step() == "finished" and cycle.runs == 2


def test_power_gone_yields_too(app: FakeApp, world: World) -> None:
    def unplug() -> None:
        world.plugged = False

    cycle = FakeCycle(world, at_step={2: unplug})
    lines: list[str] = []
    assert daemon(app, world, cycle, lines).step() == "yielded"
    assert any("on battery" in line for line in lines if "yielded" in line)


def test_should_stop_checks_conditions_at_most_once_a_second(app: FakeApp, world: World) -> None:
    d = daemon(app, world, FakeCycle(world), [])
    world.condition_calls = 0
    for _ in range(12):  # a call every 0.25 s for 3 s
        d.should_stop()
        world.t += 0.25
    assert world.condition_calls == 2  # at 1 s and at 2 s


def test_stop_request_checkpoints_and_ends_serve(app: FakeApp, world: World) -> None:
    holder_: list[Daemon] = []
    cycle = FakeCycle(world, at_step={3: lambda: holder_[0].request_stop("SIGTERM")})
    lines: list[str] = []
    d = daemon(app, world, cycle, lines)
    holder_.append(d)
    assert d.serve() == 0
    assert cycle.stopped_at == [3]
    assert lines[-2].endswith("cycle checkpointed and yielded after 1 s: SIGTERM")
    assert lines[-1].endswith("daemon stopped (SIGTERM)")


def test_a_failed_cycle_waits_for_the_next_window(app: FakeApp, world: World) -> None:
    lines: list[str] = []
    cycle = FakeCycle(world, fail=SleepError("the disk is full; free some space"))
    d = daemon(app, world, cycle, lines)
    assert d.step() == "failed"
    assert read_state(app.home.root)["outcome"] == "failed"
    assert d.step() == "done" and cycle.runs == 1
    assert any("cycle failed: the disk is full" in line for line in lines)


def test_unexpected_errors_are_logged_by_type_only(app: FakeApp, world: World) -> None:
    """An exception's text may quote a conversation: the log keeps only its type."""
    lines: list[str] = []
    cycle = FakeCycle(world, fail=ValueError("my bank PIN is 4321"))
    assert daemon(app, world, cycle, lines).step() == "failed"
    assert any("cycle failed with ValueError" in line for line in lines)
    assert not any("4321" in line for line in lines)


def test_a_locked_vault_keeps_it_waiting_with_the_reason(app: FakeApp, world: World) -> None:
    def locked() -> int:
        raise VaultError("the vault needs its passphrase: set NIGHTCAP_PASSPHRASE")

    lines: list[str] = []
    d = Daemon(
        app,
        cycle=FakeCycle(world),
        interrupted=Interrupted,
        conditions=world.conditions,
        pending=locked,
        log=lines.append,
        now=lambda: world.now,
        monotonic=lambda: world.t,
        sleep=world.sleep,
    )
    assert d.step() == "waiting"
    assert "pending episodes unknown (the vault needs its passphrase" in lines[-1]
    assert lines[-1].endswith(": waiting")


def test_a_failing_sensor_means_waiting_not_a_dead_daemon(app: FakeApp, world: World) -> None:
    def broken(pending: int | None = None) -> NoReturn:
        raise OSError("sensor gone")

    lines: list[str] = []
    d = Daemon(
        app,
        cycle=FakeCycle(world),
        interrupted=Interrupted,
        conditions=broken,
        pending=world.count,
        log=lines.append,
        now=lambda: world.now,
        monotonic=lambda: world.t,
        sleep=world.sleep,
    )
    assert d.step() == "waiting" and lines == ["conditions unreadable (OSError: sensor gone)"]
    world.t += 5
    assert d.should_stop(), "mid-cycle, unreadable conditions give the machine back"


def test_too_few_pending_episodes_waits(app: FakeApp, world: World) -> None:
    world.pending = 0
    cycle = FakeCycle(world)
    assert daemon(app, world, cycle, []).step() == "waiting" and cycle.runs == 0


def test_decision_log_file_is_private_and_rotates(app: FakeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    path = app.home.logs / "daemon.log"
    log = DecisionLog(path, echo=False)
    log("waiting: on battery")
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().rstrip().endswith(" waiting: on battery")
    monkeypatch.setattr("sleep.daemon.LOG_MAX_BYTES", 10)
    log("second")
    assert path.with_name("daemon.log.1").exists() and "second" in path.read_text()


# --- the instance lock ----------------------------------------------------------------------------


def test_instance_lock_refuses_a_second_holder_and_reports_the_pid(app: FakeApp) -> None:
    path = lock_path(app.home.root)
    first = InstanceLock(path)
    first.acquire()
    try:
        assert holder(path) == os.getpid()
        with pytest.raises(DaemonRunning, match=f"already running for this home \\(pid {os.getpid()}\\)"):
            InstanceLock(path).acquire()
    finally:
        first.release()
    assert holder(path) is None


def test_a_stale_lock_file_does_not_block(app: FakeApp) -> None:
    path = lock_path(app.home.root)
    path.write_text("999999\n")  # left by a daemon that was killed
    assert holder(path) is None
    lock = InstanceLock(path)
    lock.acquire()
    assert path.read_text() == f"{os.getpid()}\n"
    lock.release()


# --- status -------------------------------------------------------------------------------------------


def test_next_sleep(app: FakeApp) -> None:
    assert next_sleep(app, datetime(2025, 3, 4, 12, 0)) == {"at": "2025-03-04T22:00", "note": "when the window opens"}
    assert next_sleep(app, datetime(2025, 3, 5, 1, 0))["at"] == "2025-03-05T01:00"
    (app.home.logs / "daemon-state.json").write_text(json.dumps({"window": "2025-03-04T22:00"}))
    assert next_sleep(app, datetime(2025, 3, 5, 1, 0)) == {
        "at": "2025-03-05T22:00",
        "note": "this window already slept",
    }


def test_status_json_shows_a_running_daemon_and_the_last_sleep(
    nightcap_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.resolve(nightcap_home)
    (home.reports / "sleep-20250304-230000.json").write_text(
        json.dumps(
            {"finished": "2025-03-04T23:40:00", "outcome": "promoted", "new_generation": "gen-0001", "episodes": 7}
        )
    )
    lock = InstanceLock(lock_path(home.root))
    lock.acquire()
    try:
        assert daemon_main(["status", "--json"]) == 0
    finally:
        lock.release()
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["running"] is True and info["pid"] == os.getpid()
    assert info["service"]["installed"] is False
    assert info["last_sleep"]["outcome"] == "promoted"
    assert info["conditions"]["pending_count"] == 0  # no vault yet: nothing pending
    assert set(info["next_sleep"]) == {"at", "note"}


def test_status_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert daemon_main(["status"]) == 0
    out = capsys.readouterr().out
    assert "daemon      not running" in out and "last sleep  never" in out
    assert "service     not installed" in out
