"""The platform checks read a fake /proc, /sys and command runner: they pass where the platform
shows the home dir is safe, warn otherwise, and never fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.app import Nightcap
from assistant.audit.context import AuditContext
from assistant.audit.platform import CACHEDIR_SIGNATURE, Probe, checks
from assistant.audit.result import PASS, WARN, Check


def _block(
    sys_block: Path, name: str, uuid: str | None = None, dm_name: str | None = None, slaves: tuple[str, ...] = ()
) -> None:
    dev = sys_block / name
    dev.mkdir(parents=True)
    if uuid is not None:
        (dev / "dm").mkdir()
        (dev / "dm" / "uuid").write_text(uuid + "\n")
        (dev / "dm" / "name").write_text((dm_name or name) + "\n")
    if slaves:
        (dev / "slaves").mkdir()
        for s in slaves:
            (dev / "slaves" / s).mkdir()


def _linux(tmp_path: Path, home_device: str, fstype: str, swaps: list[str]) -> Probe:
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    mounts = [f"{home_device} / {fstype} rw,relatime 0 0", "tmpfs /dev/shm tmpfs rw 0 0"]
    (proc / "self" / "mounts").write_text("\n".join(mounts) + "\n")
    header = "Filename\tType\tSize\tUsed\tPriority\n"
    (proc / "swaps").write_text(header + "".join(f"{s}\tpartition\t100\t0\t-2\n" for s in swaps))
    return Probe(system="linux", proc=proc, sys_block=tmp_path / "sys" / "class" / "block", run=lambda cmd: None)


def _by_name(found: list[Check]) -> dict[str, Check]:
    assert [c.name for c in found] == ["snapshots", "swap", "disk-encryption", "backups"]
    assert all(c.status in (PASS, WARN) for c in found)
    return {c.name: c for c in found}


@pytest.fixture
def ctx() -> AuditContext:
    return AuditContext.load(Nightcap.load())


def test_luks_disk_and_encrypted_swap_pass(tmp_path: Path, ctx: AuditContext) -> None:
    probe = _linux(tmp_path, "/dev/mapper/luks-root", "ext4", ["/dev/dm-1", "/dev/zram0"])
    _block(probe.sys_block, "nvme0n1p3")
    _block(probe.sys_block, "dm-0", "CRYPT-LUKS2-abc-luks-root", "luks-root", ("nvme0n1p3",))
    _block(probe.sys_block, "dm-1", "CRYPT-PLAIN-swap", "swap", ("nvme0n1p2",))
    (ctx.home.root / "CACHEDIR.TAG").write_text(CACHEDIR_SIGNATURE + "\n")
    found = _by_name(checks(ctx, probe))
    assert {n: c.status for n, c in found.items()} == {
        "snapshots": PASS,
        "swap": PASS,
        "disk-encryption": PASS,
        "backups": PASS,
    }
    assert "LUKS" in found["disk-encryption"].reason


def test_lvm_on_luks_warns_about_snapshots_only(tmp_path: Path, ctx: AuditContext) -> None:
    probe = _linux(tmp_path, "/dev/mapper/vg-home", "xfs", [])
    _block(probe.sys_block, "sda2")
    _block(probe.sys_block, "dm-0", "CRYPT-LUKS2-xyz", "cryptlvm", ("sda2",))
    _block(probe.sys_block, "dm-1", "LVM-abcdef", "vg-home", ("dm-0",))
    found = _by_name(checks(ctx, probe))
    assert found["snapshots"].status == WARN and "LVM" in found["snapshots"].reason
    assert found["disk-encryption"].status == PASS
    assert found["swap"].status == PASS and "no swap" in found["swap"].reason
    assert found["backups"].status == WARN and "unknown" in found["backups"].reason


def test_plain_disk_btrfs_and_plain_swap_warn(tmp_path: Path, ctx: AuditContext) -> None:
    probe = _linux(tmp_path, "/dev/sda1", "btrfs", ["/dev/sda3"])
    _block(probe.sys_block, "sda1")
    _block(probe.sys_block, "sda3")
    found = _by_name(checks(ctx, probe))
    assert found["snapshots"].status == WARN and "btrfs" in found["snapshots"].reason
    assert found["swap"].status == WARN and "/dev/sda3 is not encrypted" in found["swap"].reason
    assert found["disk-encryption"].status == WARN and "not encrypted" in found["disk-encryption"].reason


def test_container_overlay_is_unknown(tmp_path: Path, ctx: AuditContext) -> None:
    probe = _linux(tmp_path, "overlay", "overlay", [])
    found = _by_name(checks(ctx, probe))
    assert found["snapshots"].status == WARN and "unknown" in found["snapshots"].reason
    assert found["disk-encryption"].status == WARN and "unknown" in found["disk-encryption"].reason


def test_macos_answers(ctx: AuditContext) -> None:
    answers = {
        "listlocalsnapshots": "Snapshots for disk /:\ncom.apple.TimeMachine.2025-01-02-030405.local\n",
        "vm.swapusage": "total = 1024.00M  used = 0.00M  free = 1024.00M  (encrypted)\n",
        "status": "FileVault is On.\n",
        "isexcluded": "[Included]    /Users/me/Library/Application Support/nightcap\n",
    }

    def run(cmd: list[str]) -> str | None:
        return next((out for key, out in answers.items() if key in cmd), None)

    found = _by_name(checks(ctx, Probe(system="darwin", run=run)))
    assert found["snapshots"].status == WARN and "1 Time Machine" in found["snapshots"].reason
    assert found["swap"].status == PASS and found["disk-encryption"].status == PASS
    assert found["backups"].status == WARN and "tmutil addexclusion" in found["backups"].reason
    silent = _by_name(checks(ctx, Probe(system="darwin", run=lambda cmd: None)))
    assert all(c.status == WARN and "unknown" in c.reason for c in silent.values())


def test_other_systems_are_unknown(ctx: AuditContext) -> None:
    found = _by_name(checks(ctx, Probe(system="win32")))
    assert all(c.status == WARN and "unknown" in c.reason for c in found.values())


def test_this_machine_never_fails(ctx: AuditContext) -> None:
    _by_name(checks(ctx))
