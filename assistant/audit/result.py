"""The audit's records: one `Check` per claim tested, gathered into an `AuditResult`.

A check passes, fails, or warns. Warnings are for what the audit cannot prove from inside the
machine (snapshots, backups, swap, disk encryption, the weights themselves): they are stated
plainly and never make the audit fail.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS = "pass"
FAIL = "fail"
WARN = "warn"
STATUSES = (PASS, FAIL, WARN)

FORMAT = 1
"""Version of the `--json` object; bumped only when a field changes meaning or disappears."""


@dataclass
class Check:
    """One audited claim and its verdict. Never holds conversation text."""

    name: str
    """Stable identifier, e.g. "shredded-epochs" (the list is in assistant/audit/__init__.py)."""
    status: str
    """pass, fail or warn."""
    reason: str
    """One line saying why (and, for a fail or warn, what to do next)."""
    details: dict[str, Any] = field(default_factory=dict)
    """Machine-readable evidence: counts, paths, ids. Keys vary by check."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown check status {self.status!r}")
        self.reason = " ".join(self.reason.split())  # one line, whatever the parts held


@dataclass
class AuditResult:
    """Every check of one audit run, in a fixed order."""

    home: str
    checks: list[Check]
    started: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        """True when no check failed (warnings allowed)."""
        return all(c.status != FAIL for c in self.checks)

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def counts(self) -> dict[str, int]:
        return {s: sum(c.status == s for c in self.checks) for s in STATUSES}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "home": self.home,
            "started": self.started,
            "seconds": round(self.seconds, 3),
            "passed": self.passed,
            "counts": self.counts(),
            "checks": [asdict(c) for c in self.checks],
        }
