"""Check 5, what the audit cannot prove: snapshots, backups, swap and disk encryption.

Crypto-shredding makes old ciphertext useless, but the machine may keep other things: snapshots
and backups of the home dir (old keystores included), memory holding decrypted episodes paged to
an unencrypted swap, a disk that anyone holding it can read. These checks look where the
platform lets them (Linux: /proc and /sys; macOS: tmutil, sysctl, fdesetup) and otherwise say
"unknown". They pass or warn; they never fail the audit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from assistant.audit.context import AuditContext
from assistant.audit.result import PASS, WARN, Check

SNAPSHOTS, SWAP, DISK, BACKUPS = "snapshots", "swap", "disk-encryption", "backups"
CACHEDIR_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_SNAPSHOT_FS = {"btrfs": "btrfs", "zfs": "ZFS", "bcachefs": "bcachefs", "nilfs2": "NILFS"}


def _run(cmd: list[str]) -> str | None:
    """Output of a short platform command, or None if it is missing or fails."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


@dataclass
class Probe:
    """Where platform facts come from; tests point it at a fake /proc, /sys and command runner."""

    system: str = sys.platform
    proc: Path = Path("/proc")
    sys_block: Path = Path("/sys/class/block")
    run: Callable[[list[str]], str | None] = field(default=_run)


@dataclass
class Mount:
    device: str
    point: str
    fstype: str


def mounts(probe: Probe) -> list[Mount]:
    for name in ("self/mounts", "mounts"):
        try:
            lines = (probe.proc / name).read_text().splitlines()
        except OSError:
            continue
        out = []
        for line in lines:
            parts = line.split()
            if len(parts) >= 3:
                unescape = parts[1].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
                out.append(Mount(parts[0], unescape, parts[2]))
        return out
    return []


def mount_for(path: Path, table: list[Mount]) -> Mount | None:
    """The mount holding `path` (the last mounted of the longest matching mount points)."""
    real = os.path.realpath(path)
    best: Mount | None = None
    for m in table:
        prefix = m.point.rstrip("/") + "/"
        if (real == m.point or real.startswith(prefix)) and (best is None or len(m.point) >= len(best.point)):
            best = m
    return best


def _block_name(device: str, probe: Probe) -> str | None:
    name = Path(os.path.realpath(device)).name
    if (probe.sys_block / name).exists():
        return name
    if device.startswith("/dev/mapper/") and probe.sys_block.is_dir():
        wanted = device.rsplit("/", 1)[1]
        for dm in probe.sys_block.glob("dm-*"):
            try:
                if (dm / "dm" / "name").read_text().strip() == wanted:
                    return dm.name
            except OSError:
                continue
    return None


def dm_uuids(device: str, probe: Probe) -> list[str] | None:
    """Device-mapper uuids along the block stack under `device` (CRYPT-..., LVM-...); None if unknown."""
    name = _block_name(device, probe)
    if name is None:
        return None
    found: list[str] = []
    todo, seen = [name], set()
    while todo:
        cur = todo.pop()
        if cur in seen:
            continue
        seen.add(cur)
        try:
            found.append((probe.sys_block / cur / "dm" / "uuid").read_text().strip())
        except OSError:
            pass
        slaves = probe.sys_block / cur / "slaves"
        if slaves.is_dir():
            todo += [s.name for s in slaves.iterdir()]
    return found


def _encrypted(device: str, probe: Probe) -> bool | None:
    uuids = dm_uuids(device, probe)
    return None if uuids is None else any(u.startswith("CRYPT-") for u in uuids)


# --- Linux ------------------------------------------------------------------------------------


def _linux_snapshots(home: Path, probe: Probe) -> Check:
    m = mount_for(home, mounts(probe))
    if m is None:
        return Check(
            SNAPSHOTS,
            WARN,
            "unknown: could not tell which filesystem holds the home dir; "
            "make sure no snapshot or backup keeps old copies of it",
        )
    details = {"device": m.device, "mount": m.point, "fstype": m.fstype}
    if m.fstype in _SNAPSHOT_FS:
        return Check(
            SNAPSHOTS,
            WARN,
            f"the home dir is on {_SNAPSHOT_FS[m.fstype]}, whose snapshots (snapper, timeshift, "
            "zfs-auto-snapshot) may keep old copies of the vault; exclude it from them",
            details,
        )
    uuids = dm_uuids(m.device, probe) if m.device.startswith("/dev/") else None
    if uuids is None:
        return Check(
            SNAPSHOTS,
            WARN,
            f"unknown: the home dir is on {m.fstype} ({m.device}), whose storage below "
            "cannot be seen from here; make sure no snapshot keeps old copies of it",
            details,
        )
    if any(u.startswith("LVM-") for u in uuids):
        return Check(
            SNAPSHOTS,
            WARN,
            f"the home dir is on an LVM volume ({m.device}), which can be snapshotted; "
            "check `sudo lvs` for snapshots holding old copies",
            details,
        )
    return Check(
        SNAPSHOTS,
        PASS,
        f"the home dir is on {m.fstype} on {m.device}, which keeps no filesystem snapshots "
        "(virtual-machine or storage snapshots cannot be seen from here)",
        details,
    )


def _linux_swap(probe: Probe) -> Check:
    try:
        lines = (probe.proc / "swaps").read_text().splitlines()[1:]
    except OSError:
        return Check(SWAP, WARN, "unknown: /proc/swaps is unreadable; make sure swap is encrypted or off")
    areas = [line.split()[0].replace("\\040", " ") for line in lines if line.split()]
    details: dict[str, object] = {"swap": areas}
    if not areas:
        return Check(SWAP, PASS, "no swap: decrypted episodes in memory are never written to disk", details)
    table = mounts(probe)
    plain, unknown = [], []
    for area in areas:
        if Path(area).name.startswith("zram"):
            continue  # compressed RAM, never on disk
        where = mount_for(Path(area), table) if not area.startswith("/dev/") else None
        device = where.device if where else area
        state = _encrypted(device, probe)
        if state is None:
            unknown.append(area)
        elif not state:
            plain.append(area)
    if plain:
        return Check(
            SWAP,
            WARN,
            f"swap on {plain[0]} is not encrypted: memory holding decrypted episodes may be "
            "written to disk; encrypt swap or turn it off",
            details,
        )
    if unknown:
        return Check(
            SWAP,
            WARN,
            f"unknown: cannot tell whether swap on {unknown[0]} is encrypted; encrypt swap or turn it off",
            details,
        )
    return Check(SWAP, PASS, "swap is encrypted or in compressed RAM", details)


def _linux_disk(home: Path, probe: Probe) -> Check:
    m = mount_for(home, mounts(probe))
    if m is None:
        return Check(DISK, WARN, "unknown: could not tell which disk holds the home dir; turn on full-disk encryption")
    details = {"device": m.device, "fstype": m.fstype}
    if m.fstype == "ecryptfs":
        return Check(DISK, PASS, "the home dir is on an eCryptfs-encrypted directory", details)
    if m.fstype in ("tmpfs", "ramfs"):
        return Check(DISK, PASS, f"the home dir is in memory ({m.fstype}); only swap could put it on a disk", details)
    state = _encrypted(m.device, probe) if m.device.startswith("/dev/") else None
    if state:
        return Check(DISK, PASS, f"the home dir is on an encrypted dm-crypt (LUKS) volume ({m.device})", details)
    if state is None:
        return Check(
            DISK,
            WARN,
            f"unknown: the home dir is on {m.fstype} ({m.device}) and the disk below cannot "
            "be seen from here; make sure full-disk encryption is on",
            details,
        )
    return Check(
        DISK,
        WARN,
        f"the disk holding the home dir ({m.device}) is not encrypted (per-directory fscrypt "
        "is not detected); turn on full-disk encryption",
        details,
    )


def _cachedir_tagged(home: Path) -> bool:
    try:
        return (home / "CACHEDIR.TAG").read_text(errors="replace").startswith(CACHEDIR_SIGNATURE)
    except OSError:
        return False


# --- macOS ------------------------------------------------------------------------------------


def _mac_checks(home: Path, probe: Probe) -> list[Check]:
    out: list[Check] = []
    snaps = probe.run(["tmutil", "listlocalsnapshots", "/"])
    if snaps is None:
        out.append(
            Check(
                SNAPSHOTS,
                WARN,
                "unknown: `tmutil listlocalsnapshots` did not answer; APFS snapshots may keep old copies",
            )
        )
    else:
        n = sum("com.apple" in line for line in snaps.splitlines())
        out.append(
            Check(
                SNAPSHOTS,
                WARN,
                f"{n} Time Machine local snapshot(s) may hold old copies of the vault; "
                "`tmutil deletelocalsnapshots /` removes them",
                {"local_snapshots": n},
            )
            if n
            else Check(SNAPSHOTS, PASS, "no Time Machine local snapshots", {"local_snapshots": 0})
        )
    swap = probe.run(["sysctl", "-n", "vm.swapusage"])
    if swap is None:
        out.append(Check(SWAP, WARN, "unknown: `sysctl vm.swapusage` did not answer"))
    else:
        out.append(
            Check(SWAP, PASS, "swap is encrypted (macOS)")
            if "encrypted" in swap
            else Check(
                SWAP, WARN, "swap is not reported as encrypted; memory holding decrypted episodes may reach the disk"
            )
        )
    fv = probe.run(["fdesetup", "status"])
    if fv is None:
        out.append(Check(DISK, WARN, "unknown: `fdesetup status` did not answer; make sure FileVault is on"))
    else:
        out.append(
            Check(DISK, PASS, "FileVault is on")
            if "FileVault is On" in fv
            else Check(DISK, WARN, "FileVault is off: anyone holding the disk can read old files; turn FileVault on")
        )
    excluded = probe.run(["tmutil", "isexcluded", str(home)])
    if excluded is None:
        out.append(Check(BACKUPS, WARN, f"unknown: `tmutil isexcluded` did not answer; exclude {home} from backups"))
    elif "[Excluded]" in excluded:
        out.append(Check(BACKUPS, PASS, "the home dir is excluded from Time Machine backups"))
    else:
        out.append(
            Check(
                BACKUPS,
                WARN,
                f"Time Machine backs up {home}, so backups keep old vault files; "
                f"`tmutil addexclusion {home}` excludes it",
            )
        )
    return out


def checks(ctx: AuditContext, probe: Probe | None = None) -> list[Check]:
    """The four platform checks, in order: snapshots, swap, disk-encryption, backups."""
    probe = probe or Probe()
    home = ctx.home.root
    if probe.system == "darwin":
        return _mac_checks(home, probe)
    if probe.system.startswith("linux"):
        backups = (
            Check(
                BACKUPS,
                PASS,
                "the home dir carries a CACHEDIR.TAG, which borg, restic and tar skip when asked to exclude caches",
            )
            if _cachedir_tagged(home)
            else Check(
                BACKUPS,
                WARN,
                f"unknown: Linux has no standard way to tell whether backups copy {home}; "
                "exclude it from your backup tool",
            )
        )
        return [_linux_snapshots(home, probe), _linux_swap(probe), _linux_disk(home, probe), backups]
    unknown = f"unknown: Nightcap cannot inspect {probe.system}"
    return [
        Check(SNAPSHOTS, WARN, f"{unknown}; make sure no snapshot keeps old copies of {home}"),
        Check(SWAP, WARN, f"{unknown}; make sure swap is encrypted or off"),
        Check(DISK, WARN, f"{unknown}; make sure full-disk encryption is on"),
        Check(BACKUPS, WARN, f"{unknown}; exclude {home} from backups"),
    ]
