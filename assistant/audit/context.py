"""What every check reads, gathered once: the vault (never created by the audit), the ledger's
tombstones, the stored sleep reports and the model generations' manifests."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.errors import NightcapError
from sleep.report import SleepReport, read_report

if TYPE_CHECKING:
    from assistant.app import Nightcap
    from assistant.home import Home
    from assistant.vault import Vault

_GEN = re.compile(r"^gen-(\d{4,})$")


@dataclass
class GenerationInfo:
    """One model generation on disk, as its manifest describes it."""

    name: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def index(self) -> int:
        return int(self.name.split("-")[1])

    @property
    def epochs(self) -> list[str]:
        return [str(e) for e in self.manifest.get("epochs") or []]

    @property
    def parent(self) -> str | None:
        parent = self.manifest.get("parent")
        return str(parent) if parent else None

    @property
    def created(self) -> datetime | None:
        return parse_time(self.manifest.get("created"))


@dataclass
class AuditContext:
    """Shared inputs of the checks. `vault` is None when there is none or it did not open."""

    app: "Nightcap"
    vault: "Vault | None" = None
    vault_error: str | None = None
    tombstones: list[dict[str, Any]] = field(default_factory=list)
    reports: dict[str, SleepReport] = field(default_factory=dict)
    bad_reports: list[str] = field(default_factory=list)
    generations: dict[str, GenerationInfo] = field(default_factory=dict)
    current: str | None = None
    before: datetime | None = None
    """The day asked about with `--before` (local midnight), for the rollback advice."""

    @property
    def home(self) -> "Home":
        return self.app.home

    @classmethod
    def load(cls, app: "Nightcap", before: datetime | None = None) -> "AuditContext":
        from assistant.vault import Vault

        ctx = cls(app, before=before)
        if Vault.exists(app.home):
            try:
                ctx.vault = app.vault()
                ctx.tombstones = ctx.vault.ledger()
            except NightcapError as err:
                ctx.vault, ctx.vault_error = None, str(err)
        ctx._load_reports()
        ctx._load_generations()
        return ctx

    def _load_reports(self) -> None:
        # Paths are built by hand: Home's properties would create missing folders, and the audit only reads.
        for path in sorted((self.home.root / "reports").glob("sleep-*.json")):
            report = read_report(path)
            if report is None:
                self.bad_reports.append(path.name)
                continue
            self.reports[report.id or path.stem.removeprefix("sleep-")] = report

    def _load_generations(self) -> None:
        models = self.home.root / "models"
        for path in sorted(models.iterdir()) if models.is_dir() else []:
            manifest = path / "manifest.json"
            if _GEN.match(path.name) and manifest.is_file():
                try:
                    data = json.loads(manifest.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = {}
                self.generations[path.name] = GenerationInfo(path.name, path, data if isinstance(data, dict) else {})
        try:
            self.current = (models / "current").read_text(encoding="utf-8").strip() or None
        except OSError:
            self.current = None

    def vault_missing(self) -> str | None:
        """Why vault checks cannot run (None when the vault is open)."""
        if self.vault is not None:
            return None
        return f"the vault did not open: {self.vault_error}" if self.vault_error else None

    def shredded_epochs(self) -> list[str]:
        """Every epoch the ledger says was destroyed, oldest first."""
        return list(dict.fromkeys(str(s["epoch"]) for s in self.tombstones if s.get("epoch") is not None))

    def tombstone_of(self, epoch: str) -> dict[str, Any] | None:
        return next((s for s in self.tombstones if s.get("epoch") == epoch), None)


def parse_time(value: Any) -> datetime | None:
    """A manifest or report time ("2025-01-02T03:04:05+0100") as an aware datetime."""
    if not isinstance(value, str):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"):
        try:
            when = datetime.strptime(value, fmt)
        except ValueError:
            continue
        return when if when.tzinfo else when.astimezone()
    return None


def epoch_opened(epoch: str) -> datetime | None:
    """When an epoch began collecting episodes (its id starts with the UTC time)."""
    try:
        return datetime.strptime(epoch.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def day(when: datetime | None) -> str | None:
    """Local calendar day, e.g. 2025-01-02."""
    return when.astimezone().strftime("%Y-%m-%d") if when else None
