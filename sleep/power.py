"""Power and temperature readings for the overnight daemon, from psutil.

Each reader takes the psutil function as an argument so tests can hand in a fake; the defaults
call psutil itself. Readers never raise: a sensor that cannot be read is reported as unknown and
the caller decides what unknown means (for power: not plugged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class PowerReading:
    """What the battery says. `plugged` is None when the battery cannot tell."""

    has_battery: bool
    plugged: bool | None
    percent: float | None = None


def _psutil_battery() -> Any:
    import psutil  # deferred: the awake side never needs it

    return psutil.sensors_battery()


def read_power(sensors_battery: Callable[[], Any] | None = None) -> PowerReading:
    """Read the battery through `psutil.sensors_battery()` (or a fake with the same shape).

    psutil returns None when there is no battery (a desktop) and `power_plugged=None` when the
    battery exists but cannot say whether it is charging.
    """
    try:
        battery = (sensors_battery or _psutil_battery)()
    except Exception:  # noqa: BLE001 - a broken sensor driver must not stop the daemon
        return PowerReading(has_battery=True, plugged=None)
    if battery is None:
        return PowerReading(has_battery=False, plugged=None)
    percent = getattr(battery, "percent", None)
    plugged = getattr(battery, "power_plugged", None)
    return PowerReading(
        has_battery=True,
        plugged=None if plugged is None else bool(plugged),
        percent=float(percent) if isinstance(percent, (int, float)) else None,
    )


def _psutil_temperatures() -> dict[str, Any]:
    import psutil

    reader = getattr(psutil, "sensors_temperatures", None)  # absent on macOS and Windows
    return reader() if reader else {}


def read_temperature(sensors_temperatures: Callable[[], dict[str, Any]] | None = None) -> float | None:
    """The hottest sensor's current temperature in degrees C, or None when no sensor reads."""
    try:
        sensors = (sensors_temperatures or _psutil_temperatures)() or {}
    except Exception:  # noqa: BLE001 - same reason as read_power
        return None
    values = [
        float(entry.current)
        for entries in sensors.values()
        for entry in entries
        if isinstance(getattr(entry, "current", None), (int, float))
    ]
    return max(values) if values else None
