"""The overnight daemon: sleep when the machine is on power and idle, yield when the user is back.

`nightcap daemon` runs `Daemon(app).run()` in the foreground; a service manager (systemd --user,
launchd) keeps it alive and it never daemonizes itself. One instance per home: it holds an flock
on `home/daemon.lock` for its whole life, so a crashed daemon never blocks the next one (the
kernel drops the lock with the process). Every `poll_seconds` it checks the conditions; when they
hold it runs the sleep cycle, whose `should_stop` re-checks them about once a second: as
`nightcap sleep --now` in a process of its own (`night_in_child`) where that process can unlock
the vault unattended, so that the daemon holds little memory between nights, else in its own
process. When the user comes back or the power goes, the cycle seals a checkpoint and stops
(`SleepInterrupted`); the next cycle resumes from it. SIGTERM or SIGINT stop the same way and the
daemon exits 0.

At most one cycle completes per window opening (a rejected night is not retried until the next
one), recorded in `home/logs/daemon-state.json`. `home/logs/daemon.log` records what the daemon
decided and why: conditions, stages, outcomes; never conversation content.

Every collaborator (the cycle, the conditions, the pending count, the clock) is an argument of
`Daemon`; nothing is read from the environment to replace them (tests/daemon_runner.py is how the
subprocess tests do it).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import sys
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from assistant.errors import NightcapError
from assistant.fsutil import atomic_write_json, read_json
from sleep.conditions import Check, Conditions, check_conditions, duration, window_of
from sleep.daemon_lock import InstanceLock

STOP_CHECK_SECONDS = 1.0
LOG_MAX_BYTES = 1_000_000

CycleFn = Callable[..., Any]
ConditionsFn = Callable[..., Conditions]


def lock_path(home_root: Path) -> Path:
    return home_root / "daemon.lock"


def state_path(home_root: Path) -> Path:
    return home_root / "logs" / "daemon-state.json"


def read_state(home_root: Path) -> dict[str, Any]:
    """The last completed cycle the daemon ran: window opening, finish time, outcome."""
    try:
        data = read_json(state_path(home_root))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class DecisionLog:
    """Append-only `home/logs/daemon.log` (0600), echoed to stderr for the service's journal."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str) -> None:
        line = f"{datetime.now().isoformat(timespec='seconds')} {message}\n"
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            if self.path.exists() and self.path.stat().st_size > LOG_MAX_BYTES:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass  # a full disk must not kill the daemon; the cycle reports disk trouble itself
        if self.echo:
            sys.stderr.write(line)
            sys.stderr.flush()


class _StageLog:
    """Cycle progress for the log: stage names only, so the log shows where a night stopped."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log

    def stage(self, name: str) -> None:
        self.log(f"cycle stage: {name}")

    def step(self, i: int, total: int, loss: float | None) -> None:
        pass


def load_cycle(app: Any = None) -> tuple[CycleFn, type[BaseException]]:
    """How the daemon runs a night, and the exception that says it paused: `night_in_child`
    where a process of its own can unlock the vault unattended (the passphrase in the
    environment, or the key in the OS keyring), else `sleep.cycle.run_cycle` in this process
    (a passphrase typed at the daemon's prompt is not passed on)."""
    from sleep.cycle import SleepInterrupted, run_cycle

    if app is not None and child_can_unlock(app):
        return night_in_child, SleepInterrupted
    return run_cycle, SleepInterrupted


def child_can_unlock(app: Any) -> bool:
    """Whether `nightcap sleep` started by this process would open the vault without a prompt."""
    from assistant.vault.masterkey import ENV_PASSPHRASE

    if os.environ.get(ENV_PASSPHRASE):
        return True
    try:
        return bool(app.vault().in_keyring)
    except NightcapError:
        return False


KILL_AFTER_S = 30.0
"""Seconds a night in its own process has to pause after SIGTERM before it gets SIGKILL: every
stage is built to reach a stop point within seconds (`nightcap bench yield` on the default model,
2 CPU cores: 100 stop times over a 191 s night were seen after at most 1.75 s, and a stopped
night returned within 2.6 s of the stop), so this only bounds a stage stuck where none is
reached; well under the 90 s a service manager allows a stopping daemon."""


def night_in_child(
    app: Any,
    *,
    should_stop: Callable[[], bool],
    progress: Any,
    command: list[str] | None = None,
    env: dict[str, str] | None = None,
    poll_seconds: float = 0.2,
    kill_after: float = KILL_AFTER_S,
) -> Any:
    """One night as `nightcap sleep --now --json` in a process of its own. Its memory goes back to
    the OS when it ends: in the daemon's own process a night left about 700 MB held until the
    next one, and made that one peak about 400 MB higher (`sleep.memory`); a crash in it ends
    the night, not the daemon. Its stage lines feed `progress`; once `should_stop()` holds it
    gets SIGTERM, which it takes as the user coming back (checkpoint, exit); it also stops if
    the daemon dies. If it has not ended `kill_after` seconds after SIGTERM (a stage stuck where
    no stop point is reached), it gets SIGKILL: a night killed at any point leaves the old model
    serving and every memory pending (tests/test_sleep_cycle.py kills one at each), so the machine
    is given back in bounded time, at the cost of that night's unsaved work. `env` adds to the
    environment it inherits. Returns the report it stored. Raises SleepInterrupted when it paused
    or was killed after the stop, SleepError when it failed."""
    import subprocess
    import threading

    from assistant.errors import SleepError
    from sleep.cycle import SleepInterrupted
    from sleep.report import read_report

    reports = app.home.reports

    def stored() -> dict[Path, int]:
        found = {}
        for path in reports.glob("sleep-*.json") if reports.exists() else ():
            with contextlib.suppress(OSError):  # gone meanwhile
                found[path] = path.stat().st_mtime_ns
        return found

    before = stored()
    argv = command or [sys.executable, "-m", "assistant.cli", "sleep", "--now", "--json"]
    proc = subprocess.Popen(
        [*argv, "--parent-pid", str(os.getpid())],
        env={**os.environ, **(env or {}), "NIGHTCAP_HOME": str(app.home.root)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,  # the report is read from where the night stored it
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    said: collections.deque[str] = collections.deque(maxlen=20)
    follow = threading.Thread(target=_follow, args=(proc.stderr, progress, said), daemon=True)
    follow.start()
    signalled: float | None = None
    killed = False
    while proc.poll() is None:
        if signalled is None and should_stop():
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
        elif signalled is not None and not killed and time.monotonic() - signalled > kill_after:
            proc.kill()
            killed = True
        time.sleep(poll_seconds)
    follow.join(timeout=5.0)
    # Written since the start: a report of a night begun in the same second has the same name.
    new = sorted(p for p, mtime in stored().items() if before.get(p) != mtime)
    report = read_report(new[-1]) if new else None
    # Only the command's own one-line error: other output (a crash's) may quote what it handled.
    last = said[-1].removeprefix("nightcap sleep: ") if said and said[-1].startswith("nightcap sleep: ") else ""
    if killed:
        raise SleepInterrupted(
            f"the night did not pause within {kill_after:.0f} s of the stop and was ended; "
            "the previous model keeps serving and it starts again next time"
        )
    if report is None and signalled is not None:  # stopped while it was starting: nothing was done
        raise SleepInterrupted("stopped before the night began; it starts again next time")
    if report is None:
        raise SleepError(
            f"the night's process ended without a report (exit status {proc.returncode})"
            + (f": {last}" if last else "")
            + "; the previous model keeps serving and no memory was lost"
        )
    if report.outcome == "interrupted":
        raise SleepInterrupted(report.error or "sleep paused; it will resume from its checkpoint next time")
    if report.outcome == "failed":
        raise SleepError(last or report.error or f"sleep failed (exit status {proc.returncode})")
    return report


def _follow(stream: Any, progress: Any, said: "collections.deque[str]") -> None:
    """The child night's stderr: its stage and step lines go to `progress`, every other line is
    kept, the last few (the last one is its one-line error, if it failed)."""
    for raw in stream:
        line = raw.strip()
        if line.startswith("sleep: train step "):
            step, _, rest = line.removeprefix("sleep: train step ").partition(" ")
            done, _, total = step.partition("/")
            loss = rest.removeprefix("loss ").strip()
            try:
                progress.step(int(done), int(total), float(loss) if loss else None)
            except ValueError:
                pass
        elif line.startswith("sleep: ") and " " not in line.removeprefix("sleep: "):
            progress.stage(line.removeprefix("sleep: "))
        elif line:
            said.append(line)


def count_pending(app: Any) -> int:
    """Pending episodes in the vault. Raises NightcapError."""
    from assistant.vault import Vault

    if not Vault.exists(app.home):
        return 0  # nothing remembered yet; opening would create a vault
    return len(app.vault().pending())


class Daemon:
    """The watcher. Every collaborator is injectable so tests drive it without a model or a clock."""

    def __init__(
        self,
        app: Any,
        *,
        cycle: CycleFn | None = None,
        interrupted: type[BaseException] | None = None,
        conditions: ConditionsFn | None = None,
        pending: Callable[[], int] | None = None,
        log: Callable[[str], None] | None = None,
        now: Callable[[], datetime] = datetime.now,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        stop_check_seconds: float = STOP_CHECK_SECONDS,
        api: Callable[[], Any] | None = None,
    ) -> None:
        self.app = app
        self._api = api
        self._cycle, self._interrupted = cycle, interrupted
        self._conditions = conditions or (
            lambda pending=None: check_conditions(app.config, pending=pending, activity=app.home.api_activity)
        )
        self._pending = pending or (lambda: count_pending(app))
        self.log = log or DecisionLog(app.home.logs / "daemon.log")
        self.now, self.monotonic, self.sleep = now, monotonic, sleep
        self.stop_check_seconds = stop_check_seconds
        self.window = window_of(app.config.daemon)
        self.stop_reason: str | None = None
        self._yield_reason: str | None = None
        self._last_check = 0.0
        self._last_decision: tuple[Any, ...] | None = None

    # -- stopping ---------------------------------------------------------------------------
    def request_stop(self, why: str) -> None:
        """Ask the daemon (and a running cycle) to checkpoint and finish."""
        self.stop_reason = self.stop_reason or why

    def should_stop(self) -> bool:
        """The cycle's poll: a stop request, or (checked at most every second) the user is back."""
        if self.stop_reason:
            return True
        if self._yield_reason is None and self.monotonic() - self._last_check >= self.stop_check_seconds:
            self._last_check = self.monotonic()
            try:
                self._yield_reason = self._conditions(pending=None).yield_reason()
            except Exception as err:  # noqa: BLE001 - unreadable conditions: give the machine back
                self._yield_reason = f"conditions unreadable ({type(err).__name__})"
        return self._yield_reason is not None

    # -- one decision -----------------------------------------------------------------------
    def _with_pending(self, cond: Conditions) -> Conditions:
        """Count pending episodes (this opens the vault, so only once everything else holds)."""
        try:
            return self._conditions(pending=self._pending())
        except (NightcapError, ImportError, ValueError, TypeError) as err:
            reason = f"pending episodes unknown ({err})"
            summary = f"{cond.summary.removesuffix(': ready')}, {reason}: waiting"
            return replace(cond, ok=False, pending=Check(False, reason), summary=summary)

    def _note(self, key: tuple[Any, ...], message: str) -> None:
        """Log a decision only when it differs from the last one (the idle minutes always do)."""
        if key != self._last_decision:
            self._last_decision = key
            self.log(message)

    def step(self) -> str:
        """Check once and act. Returns 'waiting', 'done' (this window already had its night), or
        how a cycle ended: 'finished', 'yielded', 'failed', 'stopped'."""
        try:
            cond = self._conditions(pending=None)
        except Exception as err:  # noqa: BLE001 - a failing sensor means "wait", never a dead daemon
            self._note(("error", type(err).__name__), f"conditions unreadable ({type(err).__name__}: {err})")
            return "waiting"
        opening = self.window.opening(self.now()).isoformat(timespec="minutes")
        if cond.ok:
            state = read_state(self.app.home.root)
            if state.get("window") == opening:
                upcoming = self.window.next_opening(self.now()).isoformat(timespec="minutes")
                self._note(
                    ("done", opening),
                    f"this window already slept ({state.get('outcome')}); next window opens {upcoming}",
                )
                return "done"
            cond = self._with_pending(cond)
        if not cond.ok:
            self._note(("waiting", *cond.blockers()), f"conditions: {cond.summary}")
            return "waiting"
        self._last_decision = None
        self.log(f"conditions hold ({cond.summary}); starting the sleep cycle")
        return self._sleep_once(opening)

    def _finish(self, opening: str, outcome: str) -> None:
        stamp = self.now().isoformat(timespec="seconds")
        state = {"window": opening, "finished": stamp, "outcome": outcome}
        atomic_write_json(state_path(self.app.home.root), state)

    def _sleep_once(self, opening: str) -> str:
        try:
            if self._cycle is None:
                self._cycle, self._interrupted = load_cycle(self.app)
        except Exception as err:  # noqa: BLE001 - a broken install must not crash-loop the service
            self.log(f"cannot load the sleep cycle ({type(err).__name__}: {err}); next try in the next window")
            self._finish(opening, "failed")
            return "failed"
        interrupted = self._interrupted or ()
        self._yield_reason, self._last_check = None, self.monotonic()
        started = self.monotonic()
        try:
            report = self._cycle(self.app, should_stop=self.should_stop, progress=_StageLog(self.log))
        except interrupted:
            took = duration(self.monotonic() - started)
            why = self.stop_reason or self._yield_reason or "asked to stop"
            self.log(f"cycle checkpointed and yielded after {took}: {why}")
            return "stopped" if self.stop_reason else "yielded"
        except NightcapError as err:
            self.log(f"cycle failed: {err}; next try in the next window")
            self._finish(opening, "failed")
            return "failed"
        except Exception as err:  # noqa: BLE001 - the message may quote data: log the type only
            self.log(f"cycle failed with {type(err).__name__}; next try in the next window")
            self._finish(opening, "failed")
            return "failed"
        outcome = str(getattr(report, "outcome", "unknown"))
        took = duration(self.monotonic() - started)
        if outcome == "interrupted":
            self.log(f"cycle checkpointed and yielded after {took}: {self.stop_reason or self._yield_reason}")
            return "stopped" if self.stop_reason else "yielded"
        self.log(f"cycle finished after {took}: {outcome}")
        self._finish(opening, outcome)
        return "finished"

    # -- the loop -----------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        """Sleep in short slices so a stop request is seen within half a second."""
        deadline = self.monotonic() + seconds
        while not self.stop_reason and (left := deadline - self.monotonic()) > 0:
            self.sleep(min(left, 0.5))

    def serve(self, max_steps: int | None = None) -> int:
        """Poll and sleep until asked to stop (or `max_steps` decisions, for tests). Returns 0."""
        poll = max(0.05, float(self.app.config.daemon.poll_seconds))
        self.log(f"daemon started (pid {os.getpid()}, window {self.window.label}, poll {poll:g} s)")
        steps = 0
        while not self.stop_reason and (max_steps is None or steps < max_steps):
            self.step()
            steps += 1
            if not self.stop_reason and (max_steps is None or steps < max_steps):
                self._wait(poll)
        self.log(f"daemon stopped ({self.stop_reason or 'done'})")
        return 0

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.stop_reason and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user does not want to wait
        self.request_stop(signal.Signals(signum).name)

    def run(self) -> int:
        """Take the instance lock, install the signal handlers, start the API when the daemon
        was given one (`api()` starts it and returns what `.stop()`s it), serve. Raises
        DaemonRunning."""
        lock = InstanceLock(lock_path(self.app.home.root))
        lock.acquire()
        previous = {}
        server = None
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
            if self._api is not None:
                server = self._api()
                self.log(f"API serving on port {getattr(server, 'port', '?')}")
            return self.serve()
        finally:
            if server is not None:
                server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            lock.release()


def next_sleep(app: Any, now: datetime) -> dict[str, str]:
    """When the daemon will next try to sleep: now (inside an unused window) or a window opening."""
    window = window_of(app.config.daemon)
    opening = window.opening(now)
    used = read_state(app.home.root).get("window") == opening.isoformat(timespec="minutes")
    if window.contains(now) and not used:
        return {"at": now.isoformat(timespec="minutes"), "note": "in the window: as soon as idle and on power"}
    if window.contains(now):
        return {"at": window.next_opening(now).isoformat(timespec="minutes"), "note": "this window already slept"}
    return {"at": opening.isoformat(timespec="minutes"), "note": "when the window opens"}
