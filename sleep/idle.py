"""How long nobody has used the machine: one small adapter per operating-system source.

Each source has `read() -> IdleReading`; `seconds` is None when the source cannot tell, and the
conditions treat unknown as "not idle" so the daemon never takes the machine from a present user.
External commands go through an injectable runner and OS calls through injectable functions, so
every source is tested with fakes.

- Linux: X11 screensaver idle time (libXss through ctypes, else `xprintidle`), then logind's
  IdleHint (`loginctl`, which speaks logind's D-Bus API), then the timestamps of terminal and
  input device nodes.
- macOS: `ioreg -c IOHIDSystem` HIDIdleTime.
- Windows: GetLastInputInfo.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

Runner = Callable[[Sequence[str]], "str | None"]


@dataclass(frozen=True)
class IdleReading:
    """Seconds since the last user input (None: unknown), which source said so, and why."""

    seconds: float | None
    source: str
    detail: str = ""


class IdleSource(Protocol):
    """Anything that can say how long the user has been away."""

    def read(self) -> IdleReading: ...


def run_command(cmd: Sequence[str]) -> str | None:
    """stdout of `cmd`, or None when it is missing, fails or hangs (2 s)."""
    if not shutil.which(cmd[0]):
        return None
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@functools.cache
def _x_libraries() -> tuple[str | None, str | None]:
    # find_library may run ldconfig or a compiler: once per process is enough.
    return ctypes.util.find_library("X11"), ctypes.util.find_library("Xss")


def _xss_idle_ms() -> int | None:
    """X11 idle time in ms from libXss, or None when there is no display or no library."""
    x11_name, xss_name = _x_libraries()
    if not x11_name or not xss_name:
        return None

    class XScreenSaverInfo(ctypes.Structure):
        _fields_ = [
            ("window", ctypes.c_ulong),
            ("state", ctypes.c_int),
            ("kind", ctypes.c_int),
            ("til_or_since", ctypes.c_ulong),
            ("idle", ctypes.c_ulong),
            ("event_mask", ctypes.c_ulong),
        ]

    try:
        x11, xss = ctypes.CDLL(x11_name), ctypes.CDLL(xss_name)
        x11.XOpenDisplay.restype = ctypes.c_void_p
        x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
        x11.XDefaultRootWindow.restype = ctypes.c_ulong
        x11.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
        x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
        xss.XScreenSaverAllocInfo.restype = ctypes.POINTER(XScreenSaverInfo)
        xss.XScreenSaverQueryInfo.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.POINTER(XScreenSaverInfo)]
        display = x11.XOpenDisplay(None)
        if not display:
            return None
        try:
            info = xss.XScreenSaverAllocInfo()
            if not xss.XScreenSaverQueryInfo(display, x11.XDefaultRootWindow(display), info):
                return None
            idle = int(info.contents.idle)
            x11.XFree(info)
            return idle
        finally:
            x11.XCloseDisplay(display)
    except (OSError, AttributeError):
        return None


class X11Idle:
    """X11 screensaver idle time: the most precise source on an X desktop."""

    def __init__(
        self,
        env: dict[str, str] | None = None,
        xss: Callable[[], int | None] = _xss_idle_ms,
        run: Runner = run_command,
    ) -> None:
        self.env = os.environ if env is None else env
        self.xss, self.run = xss, run

    def read(self) -> IdleReading:
        if not self.env.get("DISPLAY"):
            return IdleReading(None, "x11", "no X display")
        ms = self.xss()
        if ms is not None:
            return IdleReading(ms / 1000.0, "x11", "XScreenSaver")
        out = self.run(["xprintidle"])
        if out and out.strip().isdigit():
            return IdleReading(int(out.strip()) / 1000.0, "x11", "xprintidle")
        return IdleReading(None, "x11", "neither libXss nor xprintidle answered")


def _parse_props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


class LogindIdle:
    """logind's IdleHint over every user session on the machine.

    A session that is not idle means someone is there (0 s); idle time runs from IdleSinceHint, a
    wall-clock timestamp in microseconds. Every session counts, not only the daemon's (a service
    has none), so another user at the keyboard also keeps the machine awake. Service-manager and
    background sessions (cron) are not people and are skipped; none left means nobody is logged in.
    """

    def __init__(
        self,
        run: Runner = run_command,
        now: Callable[[], float] = time.time,
        uptime: Callable[[], float | None] | None = None,
    ) -> None:
        self.run, self.now = run, now
        self.uptime = uptime or _uptime

    def _session(self, sid: str) -> tuple[bool, float | None]:
        """(is a person's session, idle seconds or None when unknown)."""
        out = self.run(["loginctl", "show-session", sid, "-p", "Class", "-p", "IdleHint", "-p", "IdleSinceHint"])
        if out is None:
            return True, None
        props = _parse_props(out)
        if not props.get("Class", "user").startswith("user"):
            return False, None
        if props.get("IdleHint") == "no":
            return True, 0.0
        since = props.get("IdleSinceHint", "0")
        if props.get("IdleHint") == "yes" and since.isdigit() and int(since) > 0:
            return True, max(0.0, self.now() - int(since) / 1e6)
        return True, None

    def read(self) -> IdleReading:
        listing = self.run(["loginctl", "list-sessions", "--no-legend"])
        if listing is None:
            return IdleReading(None, "logind", "loginctl unavailable")
        ids = [line.split()[0] for line in listing.splitlines() if line.strip()]
        values = [idle for person, idle in map(self._session, ids) if person]
        if not values:
            return IdleReading(self.uptime(), "logind", "nobody is logged in")
        if any(v is None for v in values):
            return IdleReading(None, "logind", "a session gave no idle hint")
        # Several sessions: the most recently active one decides.
        return IdleReading(min(v for v in values if v is not None), "logind", f"{len(values)} session(s)")


def _uptime() -> float | None:
    try:
        import psutil

        return max(0.0, time.time() - psutil.boot_time())
    except Exception:  # noqa: BLE001 - uptime is a nicety, not a requirement
        return None


DEVICE_PATTERNS = ("/dev/input/event*", "/dev/input/mice", "/dev/pts/[0-9]*", "/dev/tty[0-9]*")


class InputDevicesIdle:
    """Last access or change time of terminal and input device nodes (what `w` reports).

    The kernel stamps terminals on every keystroke; input event nodes are stamped by some drivers
    only, so this is the last resort, used when neither X11 nor logind answers.
    """

    def __init__(
        self,
        patterns: Sequence[str] = DEVICE_PATTERNS,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.patterns, self.now = patterns, now

    def read(self) -> IdleReading:
        newest: float | None = None
        for pattern in self.patterns:
            for path in glob.glob(pattern):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                stamp = max(st.st_atime, st.st_mtime)
                newest = stamp if newest is None else max(newest, stamp)
        if newest is None:
            return IdleReading(None, "devices", "no readable terminal or input device")
        return IdleReading(max(0.0, self.now() - newest), "devices", "device timestamps")


class MacIdle:
    """macOS: HIDIdleTime (nanoseconds) from `ioreg -c IOHIDSystem`."""

    def __init__(self, run: Runner = run_command) -> None:
        self.run = run

    def read(self) -> IdleReading:
        out = self.run(["ioreg", "-c", "IOHIDSystem", "-d", "4"])
        match = re.search(r'"HIDIdleTime"\s*=\s*(\d+)', out or "")
        if not match:
            return IdleReading(None, "ioreg", "no HIDIdleTime")
        return IdleReading(int(match.group(1)) / 1e9, "ioreg", "HIDIdleTime")


def _last_input_ms() -> int | None:
    """Windows: milliseconds since the last input event in this desktop session."""

    class LASTINPUTINFO(ctypes.Structure):
        _fields_ = [("cbSize", ctypes.c_uint), ("dwTime", ctypes.c_uint)]

    try:
        windll = ctypes.windll  # type: ignore[attr-defined]
        info = LASTINPUTINFO()
        info.cbSize = ctypes.sizeof(info)
        if not windll.user32.GetLastInputInfo(ctypes.byref(info)):
            return None
        # Both counters are 32-bit milliseconds and wrap after 49.7 days.
        return (windll.kernel32.GetTickCount() - info.dwTime) & 0xFFFFFFFF
    except (AttributeError, OSError):
        return None


class WindowsIdle:
    """Windows: GetLastInputInfo against GetTickCount."""

    def __init__(self, last_input_ms: Callable[[], int | None] = _last_input_ms) -> None:
        self.last_input_ms = last_input_ms

    def read(self) -> IdleReading:
        ms = self.last_input_ms()
        if ms is None:
            return IdleReading(None, "win32", "GetLastInputInfo failed")
        return IdleReading(ms / 1000.0, "win32", "GetLastInputInfo")


class FirstKnown:
    """Ask sources in order of precision; the first that knows wins."""

    def __init__(self, sources: Sequence[IdleSource]) -> None:
        self.sources = list(sources)

    def read(self) -> IdleReading:
        tried = []
        for source in self.sources:
            reading = source.read()
            if reading.seconds is not None:
                return reading
            tried.append(f"{reading.source}: {reading.detail}")
        return IdleReading(None, "none", "; ".join(tried) or "no idle source")


class WithActivity:
    """`source`'s idle time, or less when `marker` was touched more recently: requests to
    `nightcap serve` are the user at work even when nobody touches this machine's keyboard."""

    def __init__(self, source: IdleSource, marker: Path) -> None:
        self.source, self.marker = source, marker

    def read(self) -> IdleReading:
        reading = self.source.read()
        try:
            since = max(0.0, time.time() - self.marker.stat().st_mtime)
        except OSError:
            return reading  # never served
        if reading.seconds is not None and since < reading.seconds:
            return IdleReading(since, "api", "last API request")
        return reading


def system_idle(platform: str | None = None, activity: Path | None = None) -> IdleSource:
    """The idle source chain for this operating system; with `activity`, API requests count
    as input too (see `WithActivity`)."""
    if activity is not None:
        return WithActivity(system_idle(platform), activity)
    platform = platform or sys.platform
    if platform == "darwin":
        return MacIdle()
    if platform.startswith("win"):
        return WindowsIdle()
    return FirstKnown([X11Idle(), LogindIdle(), InputDevicesIdle()])
