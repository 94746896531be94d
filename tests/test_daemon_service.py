"""The daemon's user service: unit and plist contents, install / uninstall / status, activation."""

from __future__ import annotations

import configparser
import json
import plistlib
import sys
from pathlib import Path

import pytest

from assistant.cli import main as cli
from sleep import service


class UnitParser(configparser.RawConfigParser):
    """A systemd unit reader: keys keep their case, as systemd's do."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def parse_unit(text: str) -> configparser.RawConfigParser:
    unit = UnitParser(strict=False, interpolation=None)
    unit.read_string(text)
    return unit


def test_systemd_unit_fields_that_matter() -> None:
    args = service.exec_args()
    unit = parse_unit(service.systemd_unit(args, {"NIGHTCAP_HOME": "/srv/nc"}))
    svc = unit["Service"]
    assert svc["ExecStart"] == f"{Path(sys.executable).absolute()} -P -m assistant.cli daemon run"
    assert Path(svc["ExecStart"].split()[0]).is_absolute()
    assert svc["Restart"] == "on-failure"
    assert (svc["Nice"], svc["IOSchedulingClass"], svc["CPUSchedulingPolicy"]) == ("19", "idle", "idle")
    assert int(svc["TimeoutStopSec"]) >= 30, "time to seal a checkpoint after SIGTERM"
    assert svc["Environment"] == "NIGHTCAP_HOME=/srv/nc"
    assert unit["Install"]["WantedBy"] == "default.target"


def test_systemd_unit_escapes_spaces_and_specifiers() -> None:
    text = service.systemd_unit(["/opt/my python/bin/python", "-m", "x"], {"NIGHTCAP_HOME": "/home/a b/50%"})
    assert 'ExecStart="/opt/my python/bin/python" -m x' in text
    assert 'Environment="NIGHTCAP_HOME=/home/a b/50%%"' in text


def test_launchd_plist_fields_that_matter(tmp_path: Path) -> None:
    args = service.exec_args()
    plist = plistlib.loads(service.launchd_plist(args, {"NIGHTCAP_HOME": "/Users/a/nc"}, tmp_path))
    assert plist["Label"] == service.LABEL
    assert plist["ProgramArguments"] == args and args[-2:] == ["daemon", "run"]
    assert plist["RunAtLoad"] is True
    assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart on failure only
    assert plist["ProcessType"] == "Background"
    assert plist["LowPriorityIO"] is True and plist["Nice"] == 19
    assert plist["EnvironmentVariables"] == {"NIGHTCAP_HOME": "/Users/a/nc"}
    assert plist["StandardErrorPath"].startswith(str(tmp_path))


def test_service_env_carries_the_home_override(nightcap_home: Path) -> None:
    assert service.service_env()["NIGHTCAP_HOME"] == str(nightcap_home.resolve())


def test_install_status_uninstall_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> bool:
        ran.append(cmd)
        return True

    monkeypatch.setattr(service, "_run", run)
    monkeypatch.setattr(sys, "platform", "linux")
    target = tmp_path / "service" / "nightcap.service"

    assert cli(["daemon", "install"]) == 0
    out = capsys.readouterr().out
    assert target.exists() and f"wrote {target}" in out
    assert "next: systemctl --user enable nightcap.service" in out
    assert ran == [], "a unit outside the manager's search path is never activated"
    assert "-m assistant.cli daemon run" in target.read_text()
    assert "--serve" not in target.read_text()

    assert cli(["daemon", "status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["service"]["installed"] is True and info["service"]["path"] == str(target)

    wants = target.parent / "default.target.wants" / "nightcap.service"
    wants.parent.mkdir()
    wants.symlink_to(target)
    assert cli(["daemon", "uninstall", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["changed"] is True and not target.exists() and not wants.is_symlink()
    assert cli(["daemon", "uninstall"]) == 0
    assert "not installed" in capsys.readouterr().out


def test_install_serve_makes_a_daemon_that_also_serves_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_run", lambda cmd: True)
    monkeypatch.setattr(sys, "platform", "linux")
    assert cli(["daemon", "install", "--serve"]) == 0
    exec_start = next(
        line
        for line in (tmp_path / "service" / "nightcap.service").read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    assert exec_start.endswith("daemon run --serve")


def test_install_activates_when_a_user_manager_is_reachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []

    def run(cmd: list[str]) -> bool:
        ran.append(cmd)
        return True

    monkeypatch.setattr(service, "_run", run)
    monkeypatch.setattr(service, "_can_activate", lambda kind: True)
    res = service.install("systemd")
    assert res.active is True and res.next_steps == []
    assert ran == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "nightcap.service"],
        ["systemctl", "--user", "restart", "nightcap.service"],
    ]
    ran.clear()
    service.uninstall("systemd")
    assert ran == [
        ["systemctl", "--user", "disable", "--now", "nightcap.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]


def test_launchd_install_writes_the_plist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "_run", lambda cmd: pytest.fail(f"ran {cmd}"))
    res = service.install("launchd", log_dir=tmp_path)
    path = tmp_path / "service" / f"{service.LABEL}.plist"
    assert res.path == str(path) and plistlib.loads(path.read_bytes())["Nice"] == 19
    assert res.next_steps and res.next_steps[0].startswith("launchctl bootstrap gui/")
    assert service.status("launchd").installed
    assert service.uninstall("launchd").changed and not path.exists()


def test_unsupported_platform_prints_instructions(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    assert cli(["daemon", "install"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither systemd nor launchd" in err[0] and "daemon run" in err[0]
