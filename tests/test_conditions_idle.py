"""Every idle source, faked: X11, logind, device timestamps, macOS ioreg, Windows, and the chain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import pytest

from sleep.idle import (
    FirstKnown,
    IdleReading,
    InputDevicesIdle,
    LogindIdle,
    MacIdle,
    WindowsIdle,
    WithActivity,
    X11Idle,
    system_idle,
)

NOW = 1_700_000_000.0


class FakeRunner:
    """A fake command runner: the key is the command line joined by spaces; `calls` records each line run."""

    def __init__(self, outputs: dict[str, str | None]) -> None:
        self.outputs = outputs
        self.calls: list[str] = []

    def __call__(self, cmd: Sequence[str]) -> str | None:
        line = " ".join(cmd)
        self.calls.append(line)
        return self.outputs.get(line)


def runner(outputs: dict[str, str | None]) -> FakeRunner:
    return FakeRunner(outputs)


# --- X11 ----------------------------------------------------------------------------------------


def test_x11_needs_a_display() -> None:
    source = X11Idle(env={}, xss=lambda: 5, run=runner({}))
    assert source.read() == IdleReading(None, "x11", "no X display")


def test_x11_screensaver_extension() -> None:
    assert X11Idle(env={"DISPLAY": ":0"}, xss=lambda: 1500, run=runner({})).read().seconds == 1.5


def test_x11_falls_back_on_xprintidle() -> None:
    source = X11Idle(env={"DISPLAY": ":0"}, xss=lambda: None, run=runner({"xprintidle": "90000\n"}))
    assert source.read() == IdleReading(90.0, "x11", "xprintidle")


def test_x11_unknown_when_nothing_answers() -> None:
    source = X11Idle(env={"DISPLAY": ":0"}, xss=lambda: None, run=runner({"xprintidle": "garbage"}))
    assert source.read().seconds is None


# --- logind -------------------------------------------------------------------------------------

SHOW = "loginctl show-session {} -p Class -p IdleHint -p IdleSinceHint"
LIST = "loginctl list-sessions --no-legend"


def logind(outputs: dict[str, str | None], uptime: float | None = 7200.0) -> LogindIdle:
    return LogindIdle(run=runner(outputs), now=lambda: NOW, uptime=lambda: uptime)


def test_logind_active_session_is_not_idle() -> None:
    src = logind({LIST: "  2 1000 ann seat0 tty2\n", SHOW.format(2): "Class=user\nIdleHint=no\nIdleSinceHint=0\n"})
    assert src.read().seconds == 0.0


def test_logind_idle_since_hint() -> None:
    since = int((NOW - 1200) * 1e6)
    src = logind(
        {LIST: "2 1000 ann seat0 tty2\n", SHOW.format(2): f"Class=user\nIdleHint=yes\nIdleSinceHint={since}\n"}
    )
    assert src.read().seconds == pytest.approx(1200)


def test_logind_most_recent_session_decides_and_managers_are_skipped() -> None:
    old, recent = int((NOW - 5000) * 1e6), int((NOW - 700) * 1e6)
    src = logind(
        {
            LIST: "2 1000 ann seat0 tty2\n5 1001 bob - pts/1\n7 1000 ann - -\n",
            SHOW.format(2): f"Class=user\nIdleHint=yes\nIdleSinceHint={old}\n",
            SHOW.format(5): f"Class=user\nIdleHint=yes\nIdleSinceHint={recent}\n",
            SHOW.format(7): "Class=manager\nIdleHint=no\nIdleSinceHint=0\n",  # systemd --user, not a person
        }
    )
    reading = src.read()
    assert reading.seconds == pytest.approx(700) and reading.detail == "2 session(s)"


def test_logind_nobody_logged_in_counts_as_idle_since_boot() -> None:
    reading = logind({LIST: ""}, uptime=7200.0).read()
    assert reading.seconds == 7200.0 and reading.detail == "nobody is logged in"


def test_logind_unavailable_or_silent_is_unknown() -> None:
    assert logind({}).read().seconds is None  # no loginctl, or no bus
    silent = logind({LIST: "2 1000 ann seat0 tty2\n", SHOW.format(2): "Class=user\nIdleHint=yes\nIdleSinceHint=0\n"})
    assert silent.read().seconds is None


# --- device timestamps ----------------------------------------------------------------------------


def test_input_devices_newest_stamp_wins(tmp_path: Path) -> None:
    for name, stamp in (("event0", NOW - 4000), ("event1", NOW - 300), ("pts0", NOW - 9000)):
        f = tmp_path / name
        f.write_text("")
        os.utime(f, (stamp, stamp))
    src = InputDevicesIdle(patterns=[str(tmp_path / "event*"), str(tmp_path / "pts*")], now=lambda: NOW)
    assert src.read().seconds == pytest.approx(300)


def test_input_devices_none_readable_is_unknown(tmp_path: Path) -> None:
    assert InputDevicesIdle(patterns=[str(tmp_path / "nothing*")]).read().seconds is None


# --- macOS and Windows ----------------------------------------------------------------------------

IOREG = """+-o IOHIDSystem  <class IOHIDSystem, id 0x100000abc, registered, matched, active>
    {
      "HIDIdleTime" = 305123456789
      "HIDParameters" = {"HIDKeyboardModifierMappingPairs"=()}
    }
"""


def test_mac_hid_idle_time() -> None:
    src = MacIdle(run=runner({"ioreg -c IOHIDSystem -d 4": IOREG}))
    assert src.read().seconds == pytest.approx(305.123456789)
    assert MacIdle(run=runner({})).read().seconds is None


def test_windows_last_input() -> None:
    assert WindowsIdle(last_input_ms=lambda: 65_000).read().seconds == 65.0
    assert WindowsIdle(last_input_ms=lambda: None).read().seconds is None


# --- the chain ------------------------------------------------------------------------------------


class Fixed:
    def __init__(self, reading: IdleReading) -> None:
        self.reading, self.asked = reading, 0

    def read(self) -> IdleReading:
        self.asked += 1
        return self.reading


def test_first_known_source_wins_in_order() -> None:
    x11, logind_, devices = (
        Fixed(IdleReading(None, "x11", "no X display")),
        Fixed(IdleReading(42.0, "logind")),
        Fixed(IdleReading(9.0, "devices")),
    )
    assert FirstKnown([x11, logind_, devices]).read().source == "logind"
    assert devices.asked == 0


def test_first_known_all_unknown_says_why() -> None:
    reading = FirstKnown(
        [Fixed(IdleReading(None, "x11", "no X display")), Fixed(IdleReading(None, "logind", "loginctl unavailable"))]
    ).read()
    assert reading.seconds is None
    assert reading.detail == "x11: no X display; logind: loginctl unavailable"


def test_system_idle_per_platform() -> None:
    assert isinstance(system_idle("darwin"), MacIdle)
    assert isinstance(system_idle("win32"), WindowsIdle)
    linux = system_idle("linux")
    assert isinstance(linux, FirstKnown)
    assert [type(s) for s in linux.sources] == [X11Idle, LogindIdle, InputDevicesIdle]


class Reads:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def read(self) -> IdleReading:
        return IdleReading(self.seconds, "fixed")


def test_a_recent_api_request_counts_as_input(tmp_path: Path) -> None:
    import time

    marker = tmp_path / "last-request"
    assert WithActivity(Reads(3600.0), marker).read().seconds == 3600.0  # never served
    marker.touch()
    os.utime(marker, (time.time() - 30, time.time() - 30))
    reading = WithActivity(Reads(3600.0), marker).read()
    assert reading.source == "api" and 25 <= (reading.seconds or 0) <= 60
    assert WithActivity(Reads(5.0), marker).read().seconds == 5.0  # the keyboard was more recent
    assert WithActivity(Reads(None), marker).read().seconds is None  # unknown stays unknown: not idle


def test_the_daemon_yields_to_api_requests(tmp_path: Path) -> None:
    from assistant.config import Config
    from sleep.conditions import check_conditions
    from sleep.power import PowerReading

    marker = tmp_path / "last-request"
    marker.touch()
    cond = check_conditions(
        Config(), power=lambda: PowerReading(True, True), in_window=True, idle=WithActivity(Reads(7200.0), marker).read
    )
    assert not cond.idle.ok and cond.yield_reason() is not None
