"""The daemon's night in a process of its own (`sleep.daemon.night_in_child`), driven with a stand-in
for `nightcap sleep --now --json`: a small script that speaks the same lines and stores a report
the same way."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from assistant.errors import SleepError
from sleep.cycle import SleepInterrupted
from sleep.daemon import child_can_unlock, load_cycle, night_in_child

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from sleep.report import SleepReport

    mode, home = sys.argv[1], Path(os.environ["NIGHTCAP_HOME"])
    if mode == "starting":  # still importing: the default action of SIGTERM ends it
        (home / "waiting").write_text("")
        time.sleep(60)
    args = sys.argv[2:]
    (home / "argv.txt").write_text(" ".join(args))

    def store(outcome, error=""):
        (home / "reports").mkdir(exist_ok=True)
        SleepReport(outcome=outcome, error=error).save(home / "reports")

    def on_term(signum, frame):
        store("interrupted", "stopped during train")
        print("nightcap sleep: sleep paused; it will resume from its checkpoint next time", file=sys.stderr)
        sys.exit(1)

    signal.signal(signal.SIGTERM, on_term)
    for line in ("sleep: gather", "sleep: train", "sleep: train step 10/20 loss 1.500"):
        print(line, file=sys.stderr, flush=True)
    if mode == "ok":
        store("promoted")
    elif mode == "wait":
        (home / "waiting").write_text("")
        while True:
            time.sleep(0.05)
    elif mode == "stuck":  # a stage that reaches no stop point: SIGTERM is not heard
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        (home / "waiting").write_text("")
        time.sleep(120)
    elif mode == "crash":
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ValueError: my sister lives in paris", file=sys.stderr)
        sys.exit(3)
    elif mode == "fail":
        store("failed", "ValueError at x.py:1")
        print("nightcap sleep: sleep failed during load (ValueError at x.py:1); the previous model keeps serving",
              file=sys.stderr)
        sys.exit(1)
    """
)


class Progress:
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.steps: list[tuple[int, int, float | None]] = []

    def stage(self, name: str) -> None:
        self.stages.append(name)

    def step(self, i: int, total: int, loss: float | None) -> None:
        self.steps.append((i, total, loss))


@pytest.fixture
def app(tmp_path: Path) -> SimpleNamespace:
    (tmp_path / "child.py").write_text(CHILD)
    return SimpleNamespace(home=SimpleNamespace(root=tmp_path, reports=tmp_path / "reports"))


def night(
    app: SimpleNamespace,
    mode: str,
    stop: Callable[[], bool] | None = None,
    progress: Progress | None = None,
    kill_after: float = 30.0,
) -> Any:
    return night_in_child(
        app,
        should_stop=stop or (lambda: False),
        progress=progress or Progress(),
        command=[sys.executable, str(app.home.root / "child.py"), mode],
        poll_seconds=0.02,
        kill_after=kill_after,
    )


def test_a_child_night_feeds_progress_and_returns_the_report_it_stored(app: SimpleNamespace) -> None:
    progress = Progress()
    report = night(app, "ok", progress=progress)
    assert report.outcome == "promoted"
    assert progress.stages == ["gather", "train"] and progress.steps == [(10, 20, 1.5)]
    assert (app.home.root / "argv.txt").read_text() == f"--parent-pid {os.getpid()}"


def test_a_stop_reaches_the_child_which_pauses(app: SimpleNamespace) -> None:
    waiting = app.home.root / "waiting"
    started = time.monotonic()
    with pytest.raises(SleepInterrupted, match="stopped during train"):
        night(app, "wait", stop=lambda: waiting.exists())
    assert time.monotonic() - started < 30


def test_a_child_that_does_not_pause_after_the_stop_is_killed_in_bounded_time(app: SimpleNamespace) -> None:
    waiting = app.home.root / "waiting"
    started = time.monotonic()
    with pytest.raises(SleepInterrupted, match=r"did not pause within 1 s of the stop and was ended"):
        night(app, "stuck", stop=lambda: waiting.exists(), kill_after=1.0)
    assert time.monotonic() - started < 60  # the child would sleep 120 s


def test_a_stop_while_the_child_starts_is_a_pause_not_a_failure(app: SimpleNamespace) -> None:
    waiting = app.home.root / "waiting"
    with pytest.raises(SleepInterrupted, match="before the night began"):
        night(app, "starting", stop=lambda: waiting.exists())


def test_a_child_that_dies_without_a_report_is_a_failure_that_quotes_nothing_it_printed(
    app: SimpleNamespace,
) -> None:
    with pytest.raises(SleepError, match=r"without a report \(exit status 3\)") as err:
        night(app, "crash")
    assert "paris" not in str(err.value) and "previous model keeps serving" in str(err.value)


def test_a_failed_child_night_says_its_own_one_line_error(app: SimpleNamespace) -> None:
    with pytest.raises(SleepError, match=r"^sleep failed during load \(ValueError at x.py:1\)"):
        night(app, "fail")


def test_the_daemon_runs_nights_in_a_child_only_where_the_child_can_unlock_the_vault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keyring = SimpleNamespace(vault=lambda: SimpleNamespace(in_keyring=True))
    typed = SimpleNamespace(vault=lambda: SimpleNamespace(in_keyring=False))
    monkeypatch.delenv("NIGHTCAP_PASSPHRASE", raising=False)
    assert child_can_unlock(keyring) and not child_can_unlock(typed)
    assert load_cycle(typed)[0] is not night_in_child and load_cycle(keyring)[0] is night_in_child
    monkeypatch.setenv("NIGHTCAP_PASSPHRASE", "from the service's environment")
    assert child_can_unlock(typed) and load_cycle(typed)[0] is night_in_child
