"""The daemon as a user service: a systemd `--user` unit on Linux, a LaunchAgent on macOS.

Both start `python -m assistant.cli daemon run` with the interpreter Nightcap is installed in, at
the lowest CPU and IO priority, restart it only when it fails, and leave it time to seal a
checkpoint on stop. Elsewhere `install` says how to start the daemon at login by hand.

`$NIGHTCAP_SERVICE_DIR` replaces the target directory (tests use it so they never touch the real
user configuration); with it set, or without systemctl and a user bus (launchctl on macOS),
nothing is activated and the next command to run is returned instead.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import NightcapError
from assistant.fsutil import atomic_write_bytes, ensure_dir
from assistant.home import Home

ENV_SERVICE_DIR = "NIGHTCAP_SERVICE_DIR"
UNIT_NAME = "nightcap.service"
LABEL = "org.nightcap.daemon"
STOP_TIMEOUT_S = 90  # a cycle polls should_stop between steps; sealing the checkpoint takes seconds


@dataclass
class ServiceResult:
    """What install / uninstall / status found or did. `next_steps` are commands for the user."""

    kind: str
    path: str
    installed: bool
    active: bool | None = None
    changed: bool = False
    next_steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def service_kind(platform: str | None = None) -> str | None:
    platform = platform or sys.platform
    return "systemd" if platform.startswith("linux") else "launchd" if platform == "darwin" else None


def default_dir(kind: str) -> Path:
    if kind == "launchd":
        return Path.home() / "Library" / "LaunchAgents"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def service_path(kind: str) -> Path:
    override = os.environ.get(ENV_SERVICE_DIR)
    directory = Path(override).expanduser() if override else default_dir(kind)
    return directory / (UNIT_NAME if kind == "systemd" else f"{LABEL}.plist")


def exec_args(serve: bool = False) -> list[str]:
    """The daemon's command line: this interpreter, so a virtualenv install keeps working; with
    `serve`, the daemon also runs the API (`nightcap serve`).

    `-P` keeps the working directory off sys.path: a folder named `assistant` in the user's home
    must not shadow Nightcap.
    """
    args = [str(Path(sys.executable).absolute()), "-P", "-m", "assistant.cli", "daemon", "run"]
    return args + (["--serve"] if serve else [])


def service_env() -> dict[str, str]:
    """Environment the service needs: the home override, and PYTHONPATH for an uninstalled checkout."""
    env = {}
    if os.environ.get("NIGHTCAP_HOME"):
        env["NIGHTCAP_HOME"] = str(Path(os.environ["NIGHTCAP_HOME"]).expanduser().resolve())
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = [sys.executable, "-P", "-c", "import assistant.cli, sleep.daemon"]
    if subprocess.run(probe, cwd=Path.home(), env=clean, capture_output=True, check=False).returncode != 0:
        import assistant

        env["PYTHONPATH"] = str(Path(assistant.__file__).resolve().parent.parent)
    return env


def _systemd_escape(text: str) -> str:
    """One word of a unit file line: % and $ doubled, quoted when it holds spaces or quotes."""
    text = text.replace("%", "%%").replace("$", "$$")
    if any(c in text for c in " \t\"\\'"):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def systemd_unit(args: list[str], env: dict[str, str]) -> str:
    lines = [
        "# Written by `nightcap daemon install`; remove it with `nightcap daemon uninstall`.",
        "[Unit]",
        "Description=Nightcap overnight sleep: learns from the day's conversations while the machine is idle",
        "",
        "[Service]",
        "Type=simple",
        "ExecStart=" + " ".join(_systemd_escape(a) for a in args),
        "Restart=on-failure",
        "RestartSec=60",
        "Nice=19",
        "IOSchedulingClass=idle",
        "CPUSchedulingPolicy=idle",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
    ]
    lines += [f"Environment={_systemd_escape(f'{k}={v}')}" for k, v in sorted(env.items())]
    lines += ["", "[Install]", "WantedBy=default.target", ""]
    return "\n".join(lines)


def launchd_plist(args: list[str], env: dict[str, str], log_dir: Path) -> bytes:
    plist: dict[str, Any] = {
        "Label": LABEL,
        "ProgramArguments": args,
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},  # restart on failure only
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "LowPriorityBackgroundIO": True,
        "Nice": 19,
        "ExitTimeOut": STOP_TIMEOUT_S,
        "StandardErrorPath": str(log_dir / "daemon-stderr.log"),
    }
    if env:
        plist["EnvironmentVariables"] = env
    return plistlib.dumps(plist)


def _can_activate(kind: str) -> bool:
    if os.environ.get(ENV_SERVICE_DIR):
        return False  # a file outside the manager's search path: nothing to activate
    if kind == "launchd":
        return shutil.which("launchctl") is not None
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    bus = os.environ.get("DBUS_SESSION_BUS_ADDRESS") or (runtime and Path(runtime, "bus").exists())
    return shutil.which("systemctl") is not None and bool(bus)


def _run(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _commands(kind: str, path: Path, action: str) -> list[list[str]]:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    if kind == "systemd":
        if action == "install":
            # restart, not start: a reinstall (new interpreter, new home) must take effect now.
            return [
                ["systemctl", "--user", "daemon-reload"],
                ["systemctl", "--user", "enable", UNIT_NAME],
                ["systemctl", "--user", "restart", UNIT_NAME],
            ]
        return [["systemctl", "--user", "disable", "--now", UNIT_NAME], ["systemctl", "--user", "daemon-reload"]]
    if action == "install":
        return [["launchctl", "bootstrap", f"gui/{uid}", str(path)]]
    return [["launchctl", "bootout", f"gui/{uid}/{LABEL}"]]


def _unsupported() -> NightcapError:
    cmd = " ".join(exec_args())
    return NightcapError(
        f"this system has neither systemd nor launchd; start `{cmd}` at login yourself (e.g. with Task Scheduler)"
    )


def install(kind: str | None = None, log_dir: Path | None = None, serve: bool = False) -> ServiceResult:
    """Write the unit/plist (a daemon that also serves the API, with `serve`) and activate it
    where possible. Raises NightcapError when unsupported."""
    kind = kind or service_kind()
    if kind is None:
        raise _unsupported()
    path = service_path(kind)
    args, env = exec_args(serve), service_env()
    ensure_dir(path.parent)
    if kind == "systemd":
        data = systemd_unit(args, env).encode()
    else:
        data = launchd_plist(args, env, log_dir or Home.resolve().logs)
    if kind == "launchd" and _can_activate(kind) and path.exists():
        _run(_commands(kind, path, "uninstall")[0])  # reinstall: unload the old definition first
    atomic_write_bytes(path, data, mode=0o644)
    result = ServiceResult(kind, str(path), installed=True, changed=True)
    cmds = _commands(kind, path, "install")
    if _can_activate(kind) and all(_run(c) for c in cmds):
        result.active = True
    else:
        result.next_steps = [" ".join(c) for c in cmds]
    if os.environ.get("NIGHTCAP_PASSPHRASE"):
        result.notes.append(
            "NIGHTCAP_PASSPHRASE is not copied into the service: it unlocks the vault through the OS keyring"
        )
    return result


def uninstall(kind: str | None = None) -> ServiceResult:
    """Deactivate and remove the unit/plist; removing what is not there is not an error."""
    kind = kind or service_kind()
    if kind is None:
        raise _unsupported()
    path = service_path(kind)
    result = ServiceResult(kind, str(path), installed=False, active=False, changed=path.exists())
    cmds = _commands(kind, path, "uninstall")
    deactivated = _can_activate(kind) and path.exists() and _run(cmds[0])
    if path.exists():
        path.unlink()
    if kind == "systemd":
        wants = path.parent / "default.target.wants" / UNIT_NAME
        if wants.is_symlink():
            wants.unlink()  # what `systemctl --user enable` left behind
    if result.changed and not deactivated:
        # The manager may still hold the old definition in memory until told to reload.
        result.next_steps = [" ".join(cmds[-1])]
    elif kind == "systemd" and _can_activate(kind):
        _run(cmds[-1])
    return result


def status(kind: str | None = None) -> ServiceResult:
    """Whether the service file exists and (where the manager can be asked) whether it is active."""
    kind = kind or service_kind()
    if kind is None:
        return ServiceResult("none", "", installed=False)
    path = service_path(kind)
    result = ServiceResult(kind, str(path), installed=path.exists())
    if result.installed and _can_activate(kind):
        uid = os.getuid() if hasattr(os, "getuid") else 0
        probe = (
            ["systemctl", "--user", "is-active", "--quiet", UNIT_NAME]
            if kind == "systemd"
            else ["launchctl", "print", f"gui/{uid}/{LABEL}"]
        )
        result.active = _run(probe)
    return result
