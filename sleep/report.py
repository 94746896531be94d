"""The sleep report: what a cycle did, stored as JSON with no conversation content.

Counts, durations, losses, hashes and gate results only: a report can be shown, logged and kept
after the episodes it describes have been destroyed.
"""

from __future__ import annotations

import json
import time
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from assistant.fsutil import atomic_write_json

OUTCOME_PROMOTED = "promoted"
OUTCOME_NOTHING = "nothing-to-do"
OUTCOME_REJECTED = "rejected"
OUTCOME_FAILED = "failed"
OUTCOME_INTERRUPTED = "interrupted"


def reset_peak_rss() -> bool:
    """Start this process's peak-memory count afresh (Linux: VmHWM), so that a night in a
    long-lived process (the daemon, a benchmark) reports its own peak. False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """This process's peak resident memory. Linux's VmHWM starts afresh when a program starts;
    getrusage's maximum would include the peak of whichever process launched this one."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class GateResult:
    """One check on the candidate model."""

    name: str
    passed: bool
    value: float | None = None
    threshold: float | None = None
    detail: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GateResult":
        """A stored gate read back; a value of the wrong type reads as missing."""
        return cls(**_typed_fields(cls, data, {"name": "", "passed": False}))


@dataclass
class SleepReport:
    """A cycle's account of itself. Never holds episode text."""

    id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    finished: str | None = None
    outcome: str = OUTCOME_FAILED
    error: str | None = None
    episodes: int = 0
    consolidated_sessions: int = 0
    epochs: list[str] = field(default_factory=list)
    examples: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    losses: list[float] = field(default_factory=list)
    ce: list[float] = field(default_factory=list)
    """The weighted cross-entropy alone of each step this run trained (`losses` adds the extra
    terms): how well the night's examples are learned as it goes."""
    loss_terms: dict[str, list[float]] = field(default_factory=dict)
    train_tokens: int = 0
    stages: dict[str, float] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    stage_rss_mb: dict[str, float] = field(default_factory=dict)
    """Peak resident memory of the process during each stage (on Linux; elsewhere the
    high-water mark when the stage ended, so the stage where it jumps needed the memory).
    `peak_rss_mb` is the largest."""
    device: str = ""
    old_generation: str | None = None
    new_generation: str | None = None
    old_sha256: str | None = None
    new_sha256: str | None = None
    gates: dict[str, GateResult] = field(default_factory=dict)
    shred: dict[str, Any] = field(default_factory=dict)
    resumed_from_step: int | None = None
    resumed_epochs: bool = False
    """The night resumed a paused one and read exactly the epochs (and records) it had read."""
    skipped: list[str] = field(default_factory=list)
    """Stages a resumed night did not run again (their work was in the checkpoint)."""
    kind: str = "sleep"
    """"sleep" (a night) or "forget" (`nightcap forget`: unlearning a consolidated statement)."""
    forgotten: dict[str, Any] = field(default_factory=dict)
    """A forget's measure on the served files: the statement's answers' log-probability before and after."""
    dropped_state: list[str] = field(default_factory=list)
    """Sealed blobs destroyed at the start because what they derived from no longer serves."""

    def add_gate(self, gate: GateResult) -> None:
        self.gates[gate.name] = gate

    @property
    def gates_passed(self) -> bool:
        return all(g.passed for g in self.gates.values())

    def failed_gates(self) -> list[str]:
        out = []
        for name, g in self.gates.items():
            if not g.passed:
                bound = f" (threshold {g.threshold:.3g})" if g.threshold is not None else ""
                value = f" {g.value:.3g}" if g.value is not None else ""
                out.append(f"{name}{value}{bound}{': ' + g.detail if g.detail else ''}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SleepReport":
        """A stored report read back. Fields it lacks, and values of the wrong type (a report
        from an older version, a damaged file), keep their defaults; unknown keys are ignored."""
        # What a stored report lacks is unknown, not "now" or "failed".
        known = _typed_fields(
            cls, {k: v for k, v in data.items() if k != "gates"}, dict.fromkeys(("id", "started", "outcome"), "")
        )
        gates = data.get("gates")
        if isinstance(gates, Mapping):
            known["gates"] = {
                str(name): GateResult.from_dict({"name": name, **g})
                for name, g in gates.items()
                if isinstance(g, Mapping)
            }
        return cls(**known)

    def save(self, reports_dir: Path) -> Path:
        self.finished = self.finished or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        path = reports_dir / f"sleep-{self.id}.json"
        atomic_write_json(path, self.to_dict())
        return path


def read_report(path: Path) -> SleepReport | None:
    """The report stored at `path`; None when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return SleepReport.from_dict(data) if isinstance(data, dict) else None


def newest_report(reports_dir: Path) -> SleepReport | None:
    """The newest report stored in `reports_dir` (names sort by time), if any can be read."""
    paths = sorted(reports_dir.glob("sleep-*.json"))
    return read_report(paths[-1]) if paths else None


def _fits(value: Any, tp: Any) -> bool:
    """Whether a JSON value has type `tp` (the shapes report fields use)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    return isinstance(value, tp)


def _typed_fields(cls: type, data: Mapping[str, Any], required: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of dataclass `cls` that `data` holds with the right type, with
    `required`'s value for each required field `data` lacks."""
    hints = typing.get_type_hints(cls)
    out = dict(required)
    for f in fields(cls):
        if f.name in data and _fits(data[f.name], hints[f.name]):
            value = data[f.name]
            out[f.name] = float(value) if hints[f.name] is float else value
    return out
