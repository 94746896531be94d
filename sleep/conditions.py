"""Whether the machine may sleep now: on power, nobody using it, inside the window, enough to learn.

`check_conditions(config)` asks each source once and returns `Conditions`: one `Check` (ok and a
short reason) per condition, an overall `ok`, and a one-line `summary` such as
"on power, idle 25 min, in window 22:00-07:00, 3 pending: ready". Every source is a small
callable that tests replace: `power() -> PowerReading`, `idle() -> IdleReading`,
`clock() -> datetime`, `temperature() -> float | None`.

Nothing here reads its sources from the environment: tests (and the daemon's subprocess tests,
through `Daemon(conditions=...)`) pass them as arguments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from assistant.config import Config, DaemonConfig
from assistant.errors import ConfigError
from sleep.idle import IdleReading, system_idle
from sleep.power import PowerReading, read_power, read_temperature


@dataclass(frozen=True)
class Check:
    """One condition: whether it holds and a few words saying why."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class Window:
    """The preferred sleep window in local time, as minutes after midnight."""

    start: int
    end: int

    @property
    def always(self) -> bool:
        return self.start == self.end

    @property
    def label(self) -> str:
        if self.always:
            return "any time"
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    def contains(self, now: datetime) -> bool:
        minute = now.hour * 60 + now.minute
        if self.always:
            return True
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # crosses midnight

    def _at(self, day: date, minute: int) -> datetime:
        return datetime(day.year, day.month, day.day, minute // 60, minute % 60)

    def opening(self, now: datetime) -> datetime:
        """When the window containing `now` opened, or when the next one opens."""
        today = self._at(now.date(), self.start)
        if self.always:
            return self._at(now.date(), 0)
        if self.contains(now):
            return today if today <= now else today - timedelta(days=1)
        return today if today > now else today + timedelta(days=1)

    def next_opening(self, now: datetime) -> datetime:
        """The first opening strictly after the one `opening(now)` names."""
        return self.opening(now) + timedelta(days=1)


def parse_hhmm(text: str, key: str) -> int:
    """'22:30' -> 1350. Raises ConfigError naming the key."""
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        if not (0 <= hours < 24 and 0 <= minutes < 60):
            raise ValueError
    except ValueError:
        raise ConfigError(f"config.toml: '{key}' must be a time like \"22:00\", got {text!r}") from None
    return hours * 60 + minutes


def window_of(daemon: DaemonConfig) -> Window:
    """The configured window. Raises ConfigError for a malformed time."""
    return Window(
        parse_hhmm(daemon.window_start, "daemon.window_start"),
        parse_hhmm(daemon.window_end, "daemon.window_end"),
    )


@dataclass(frozen=True)
class Conditions:
    """Everything the daemon looks at before and during a sleep cycle."""

    ok: bool
    power: Check
    idle: Check
    window: Check
    pending: Check
    temperature: Check
    summary: str
    idle_seconds: float | None = None
    idle_source: str = ""
    pending_count: int | None = None
    source: str = "system"

    def blockers(self) -> list[str]:
        """Names of the checks that fail, in a fixed order."""
        names = ("power", "idle", "window", "pending", "temperature")
        return [n for n in names if not getattr(self, n).ok]

    def yield_reason(self) -> str | None:
        """Why a running cycle must stop now (user back, power gone, too hot), or None.

        The window and the pending count only decide when a cycle starts: a cycle that began in
        the window may finish after it closes while nobody needs the machine.
        """
        for check in (self.power, self.idle, self.temperature):
            if not check.ok:
                return check.reason
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def duration(seconds: float) -> str:
    """12 s, 25 min, 3 h 5 min."""
    if seconds < 60:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def power_check(reading: PowerReading, desktop_counts_as_plugged: bool) -> Check:
    percent = f" ({reading.percent:.0f}%)" if reading.percent is not None else ""
    if not reading.has_battery:
        if desktop_counts_as_plugged:
            return Check(True, "on power (no battery)")
        return Check(False, "no battery and daemon.desktop_counts_as_plugged is off")
    if reading.plugged is None:
        return Check(False, "power source unknown")
    if reading.plugged:
        return Check(True, f"on power{percent}")
    return Check(False, f"on battery{percent}")


def idle_check(reading: IdleReading, min_idle: float) -> Check:
    if reading.seconds is None:
        return Check(False, f"idle time unknown ({reading.detail})" if reading.detail else "idle time unknown")
    if reading.seconds >= min_idle:
        return Check(True, f"idle {duration(reading.seconds)}")
    return Check(False, f"in use (idle {duration(reading.seconds)} of {duration(min_idle)})")


def pending_check(count: int | None, minimum: int) -> Check:
    if count is None:
        return Check(True, "pending not counted")
    if count >= minimum:
        return Check(True, f"{count} pending")
    return Check(False, f"{count} pending (need {minimum})")


def temperature_check(celsius: float | None, limit: float) -> Check:
    if limit <= 0:
        return Check(True, "temperature not checked")
    if celsius is None:
        return Check(False, "temperature unknown (set daemon.max_temperature = 0 to skip this check)")
    if celsius <= limit:
        return Check(True, f"{celsius:.0f} C")
    return Check(False, f"too hot ({celsius:.0f} C > {limit:.0f} C)")


def check_conditions(
    config: Config,
    *,
    power: Callable[[], PowerReading] | None = None,
    idle: Callable[[], IdleReading] | None = None,
    clock: Callable[[], datetime] | None = None,
    pending: int | None = None,
    temperature: Callable[[], float | None] | None = None,
    in_window: bool | None = None,
    activity: Path | None = None,
) -> Conditions:
    """Ask every source once (each argument replaces its system source; `in_window` the clock's
    verdict on the window). `activity` is the home's API marker: a request to `nightcap serve`
    counts as input (pass `home.api_activity`).

    `pending` None means "not counted" (the check passes); the daemon always counts.
    Raises ConfigError when the window times are malformed.
    """
    d = config.daemon
    window = window_of(d)
    now = (clock or datetime.now)()
    power_reading = power() if power else read_power()
    idle_reading = idle() if idle else system_idle(activity=activity).read()
    inside = window.contains(now) if in_window is None else in_window
    if temperature:
        celsius = temperature()
    else:
        celsius = read_temperature() if d.max_temperature > 0 else None
    count = pending

    checks = {
        "power": power_check(power_reading, d.desktop_counts_as_plugged),
        "idle": idle_check(idle_reading, d.min_idle_seconds),
        "window": Check(True, "any time")
        if window.always and in_window is None
        else Check(inside, ("in window " if inside else "outside window ") + window.label),
        "pending": pending_check(count, d.min_pending_episodes),
        "temperature": temperature_check(celsius, d.max_temperature),
    }
    ok = all(c.ok for c in checks.values())
    shown = [checks["power"], checks["idle"], checks["window"]]
    if count is not None:
        shown.append(checks["pending"])
    if d.max_temperature > 0:
        shown.append(checks["temperature"])
    summary = ", ".join(c.reason for c in shown) + (": ready" if ok else ": waiting")
    return Conditions(
        ok=ok,
        summary=summary,
        idle_seconds=idle_reading.seconds,
        idle_source=idle_reading.source,
        pending_count=count,
        source="system" if not (power or idle or clock or temperature or in_window is not None) else "given",
        **checks,
    )
