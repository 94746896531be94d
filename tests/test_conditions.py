"""Sleep conditions: power, idle, window, pending, temperature, and the conditions-file seam."""

from __future__ import annotations

import json
from collections import namedtuple
from datetime import datetime
from typing import NoReturn

import pytest

from assistant.config import Config
from assistant.errors import ConfigError
from sleep.conditions import Conditions, Window, check_conditions, duration, parse_hhmm, window_of
from sleep.idle import IdleReading
from sleep.power import PowerReading, read_power, read_temperature

sbattery = namedtuple("sbattery", "percent secsleft power_plugged")
shwtemp = namedtuple("shwtemp", "label current high critical")

NIGHT = datetime(2025, 3, 4, 23, 30)


def at(hhmm: str, day: int = 4) -> datetime:
    h, m = map(int, hhmm.split(":"))
    return datetime(2025, 3, day, h, m)


def check(
    config: Config | None = None,
    *,
    plugged: bool | None = True,
    battery: bool = True,
    idle: float | None = 3600,
    now: datetime = NIGHT,
    pending: int | None = 3,
    temperature: float | None = None,
) -> Conditions:
    return check_conditions(
        config or Config(),
        power=lambda: PowerReading(battery, plugged if battery else None, 80.0 if battery else None),
        idle=lambda: IdleReading(idle, "fake", "fake source"),
        clock=lambda: now,
        pending=pending,
        temperature=lambda: temperature,
    )


# --- power ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "battery, has_battery, plugged",
    [
        (None, False, None),  # a desktop
        (sbattery(80, 3600, True), True, True),
        (sbattery(40, 1800, False), True, False),
        (sbattery(55, -2, None), True, None),  # battery cannot tell
    ],
)
def test_read_power_every_sensors_battery_variant(
    battery: sbattery | None, has_battery: bool, plugged: bool | None
) -> None:
    reading = read_power(lambda: battery)
    assert (reading.has_battery, reading.plugged) == (has_battery, plugged)


def test_a_broken_battery_sensor_is_unknown_not_a_crash() -> None:
    def broken() -> NoReturn:
        raise RuntimeError("driver")

    assert read_power(broken) == PowerReading(has_battery=True, plugged=None)


@pytest.mark.parametrize(
    "battery, counts, ok, reason",
    [
        (None, True, True, "on power (no battery)"),
        (None, False, False, "no battery and daemon.desktop_counts_as_plugged is off"),
        (sbattery(80, 3600, True), True, True, "on power (80%)"),
        (sbattery(40, 1800, False), True, False, "on battery (40%)"),
        (sbattery(55, -2, None), True, False, "power source unknown"),
    ],
)
def test_power_check(battery: sbattery | None, counts: bool, ok: bool, reason: str) -> None:
    cfg = Config()
    cfg.daemon.desktop_counts_as_plugged = counts
    cond = check_conditions(
        cfg,
        power=lambda: read_power(lambda: battery),
        idle=lambda: IdleReading(9999, "fake"),
        clock=lambda: NIGHT,
        pending=3,
    )
    assert cond.power.ok is ok and cond.power.reason == reason
    assert cond.ok is ok


# --- everything together --------------------------------------------------------------------


def test_ready_summary_is_one_line() -> None:
    cond = check(idle=25 * 60)
    assert cond.ok
    assert cond.summary == "on power (80%), idle 25 min, in window 22:00-07:00, 3 pending: ready"
    assert json.loads(json.dumps(cond.to_dict()))["idle"] == {"ok": True, "reason": "idle 25 min"}


def test_unknown_idle_counts_as_not_idle() -> None:
    cond = check(idle=None)
    assert not cond.ok and cond.blockers() == ["idle"]
    assert cond.idle.reason == "idle time unknown (fake source)"


def test_recent_input_blocks_and_says_how_long() -> None:
    cond = check(idle=12)
    assert not cond.ok and cond.idle.reason == "in use (idle 12 s of 15 min)"
    assert cond.summary.endswith(": waiting")


def test_pending_below_minimum_and_not_counted() -> None:
    cfg = Config()
    cfg.daemon.min_pending_episodes = 5
    assert check(cfg, pending=2).pending.reason == "2 pending (need 5)"
    assert not check(cfg, pending=2).ok
    uncounted = check(cfg, pending=None)
    assert uncounted.ok and "pending" not in uncounted.summary


@pytest.mark.parametrize(
    "limit, celsius, ok, reason",
    [
        (0.0, None, True, "temperature not checked"),
        (80.0, 55.0, True, "55 C"),
        (80.0, 91.0, False, "too hot (91 C > 80 C)"),
        (80.0, None, False, "temperature unknown (set daemon.max_temperature = 0 to skip this check)"),
    ],
)
def test_temperature(limit: float, celsius: float | None, ok: bool, reason: str) -> None:
    cfg = Config()
    cfg.daemon.max_temperature = limit
    cond = check(cfg, temperature=celsius)
    assert (cond.temperature.ok, cond.temperature.reason) == (ok, reason)


def test_read_temperature_takes_the_hottest_sensor() -> None:
    sensors = {
        "coretemp": [shwtemp("Core 0", 48.0, 90, 100), shwtemp("Core 1", 61.5, 90, 100)],
        "acpitz": [shwtemp("", 40.0, None, None)],
    }
    assert read_temperature(lambda: sensors) == 61.5
    assert read_temperature(lambda: {}) is None


def test_yield_reason_ignores_window_and_pending() -> None:
    """A cycle that began in the window may run past its end; only the user or power stop it."""
    late = check(now=at("07:30"), pending=0)
    assert not late.ok and late.yield_reason() is None
    assert check(idle=3).yield_reason() == "in use (idle 3 s of 15 min)"
    assert check(plugged=False).yield_reason() == "on battery (80%)"


# --- the window -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "start, end, now, inside",
    [
        ("22:00", "07:00", "21:59", False),
        ("22:00", "07:00", "22:00", True),
        ("22:00", "07:00", "23:59", True),
        ("22:00", "07:00", "00:00", True),
        ("22:00", "07:00", "06:59", True),
        ("22:00", "07:00", "07:00", False),
        ("22:00", "07:00", "12:00", False),
        ("13:00", "17:00", "12:59", False),
        ("13:00", "17:00", "13:00", True),
        ("13:00", "17:00", "17:00", False),
        ("00:00", "00:00", "15:00", True),  # equal ends: any time
    ],
)
def test_window_contains(start: str, end: str, now: str, inside: bool) -> None:
    window = Window(parse_hhmm(start, "s"), parse_hhmm(end, "e"))
    assert window.contains(at(now)) is inside


def test_window_openings_across_midnight() -> None:
    window = Window(parse_hhmm("22:00", "s"), parse_hhmm("07:00", "e"))
    assert window.opening(at("02:00", day=5)) == at("22:00", day=4)  # the night that began yesterday
    assert window.opening(at("23:00")) == at("22:00")
    assert window.opening(at("12:00")) == at("22:00")  # the next one, tonight
    assert window.next_opening(at("02:00", day=5)) == at("22:00", day=5)
    same_day = Window(parse_hhmm("13:00", "s"), parse_hhmm("17:00", "e"))
    assert same_day.opening(at("18:00")) == at("13:00", day=5)


def test_window_check_in_conditions() -> None:
    assert check(now=at("12:00")).window.reason == "outside window 22:00-07:00"
    assert check(now=at("03:00")).window.ok
    cfg = Config()
    cfg.daemon.window_start = cfg.daemon.window_end = "00:00"
    assert check(cfg, now=at("12:00")).window.reason == "any time"


@pytest.mark.parametrize("bad", ["25:00", "7", "ab:cd", "12:60", ""])
def test_malformed_window_names_the_key(bad: str) -> None:
    cfg = Config()
    cfg.daemon.window_end = bad
    with pytest.raises(ConfigError, match="'daemon.window_end'"):
        window_of(cfg.daemon)


def test_duration_wording() -> None:
    assert [duration(s) for s in (5, 61, 3600, 3660 * 2)] == ["5 s", "1 min", "1 h", "2 h 2 min"]


def test_given_sources_replace_the_system_ones() -> None:
    from sleep.power import PowerReading

    cond = check_conditions(
        Config(),
        power=lambda: PowerReading(True, True),
        idle=lambda: IdleReading(9999, "fake"),
        in_window=True,
        pending=4,
    )
    assert cond.ok and cond.source == "given" and cond.pending_count == 4
    cond = check_conditions(
        Config(), power=lambda: PowerReading(True, None), idle=lambda: IdleReading(None, "fake"), in_window=False
    )
    assert cond.blockers() == ["power", "idle", "window"]


def test_real_system_sources_answer_without_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `nightcap status` calls: whatever this machine is, it answers and serializes."""
    cond = check_conditions(Config())
    json.dumps(cond.to_dict())
    assert cond.summary.endswith((": ready", ": waiting")) and cond.source == "system"
