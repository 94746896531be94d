"""`nightcap audit [--before DAY] [--json]`: exit codes, the documented JSON, the table, and the
weights check's rollback advice."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from audit_helpers import add_generation, isolate, sleep_once
from vault_helpers import episode

from assistant.app import Nightcap
from assistant.audit.context import AuditContext
from assistant.audit.weights import lineage, parse_day, rollback_before
from assistant.cli import main
from assistant.home import Home
from assistant.vault import Vault

NAMES = [
    "shredded-epochs",
    "vault-copies",
    "ledger-chain",
    "ledger-provenance",
    "vault-repairs",
    "plaintext-scan",
    "training-intermediates",
    "sealed-state",
    "master-key",
    "key-generation",
    "permissions",
    "snapshots",
    "swap",
    "disk-encryption",
    "backups",
    "weights",
]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(tmp_path, monkeypatch)


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, dict]:
    code = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


def test_json_is_stable_and_passes_after_a_cycle(capsys: pytest.CaptureFixture[str]) -> None:
    sleep_once(Vault.open(Home.resolve()))
    code, data = _json(capsys, ["audit", "--json"])
    assert code == 0
    assert data["format"] == 1 and data["passed"] is True
    assert set(data) == {"format", "home", "started", "seconds", "passed", "counts", "checks"}
    assert [c["name"] for c in data["checks"]] == NAMES  # the real platform checks run here too
    for check in data["checks"]:
        assert set(check) == {"name", "status", "reason", "details"}
        assert check["status"] in ("pass", "warn") and "\n" not in check["reason"] and check["reason"]
    assert data["counts"]["fail"] == 0 and sum(data["counts"].values()) == len(NAMES)


def test_failure_exits_1_and_table_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    vault = Vault.open(Home.resolve())
    vault.append(episode("hello there, this is my very first message", "hi"))
    vault.keystore_path.chmod(0o644)
    code, data = _json(capsys, ["audit", "--json"])
    assert code == 1 and data["passed"] is False
    assert [c["name"] for c in data["checks"] if c["status"] == "fail"] == ["permissions"]
    assert main(["audit"]) == 1
    out = capsys.readouterr().out
    assert "permissions" in out and "fail" in out and "audit FAILED" in out


def test_table_on_a_clean_home(capsys: pytest.CaptureFixture[str]) -> None:
    Vault.open(Home.resolve())
    assert main(["audit"]) == 0
    out = capsys.readouterr().out
    assert "audit passed" in out and all(name in out for name in ("shredded-epochs", "weights"))


def test_bad_day_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--before", "yesterday"]) == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_before_names_the_generation_to_serve(capsys: pytest.CaptureFixture[str]) -> None:
    home = Home.resolve()
    vault = Vault.open(home)
    long_ago = (datetime.now().astimezone() - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S%z")
    add_generation(home, "gen-0000", None, [], None, created=long_ago)
    sleep_once(vault, "gen-0001", "gen-0000")
    tomorrow = (datetime.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    code, data = _json(capsys, ["audit", "--json", "--before", tomorrow])
    weights = data["checks"][-1]
    assert code == 0 and weights["details"]["before"] == {"day": tomorrow, "generation": "gen-0001"}
    assert f"from before {tomorrow}: `nightcap models use gen-0001`" in weights["reason"]
    today = datetime.now().strftime("%Y-%m-%d")
    _, data = _json(capsys, ["audit", "--json", "--before", today])
    assert data["checks"][-1]["details"]["before"]["generation"] == "gen-0000"


def test_lineage_and_rollback() -> None:
    home = Home.resolve()
    old = (datetime.now().astimezone() - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%S%z")
    mid = (datetime.now().astimezone() - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%S%z")
    add_generation(home, "gen-0000", None, [], None, created=old)
    add_generation(home, "gen-0001", "gen-0000", ["e1"], "r1", created=mid)
    add_generation(home, "gen-0002", "gen-0001", ["e2", "e3"], "r2")
    ctx = AuditContext.load(Nightcap.load())
    assert lineage(ctx, ctx.generations["gen-0002"]) == (["e2", "e3", "e1"], True)
    four_days_ago = parse_day((datetime.now() - timedelta(days=4)).strftime("%Y-%m-%d"))
    two_days_ago = parse_day((datetime.now() - timedelta(days=2)).strftime("%Y-%m-%d"))
    assert rollback_before(ctx, four_days_ago) == "gen-0000"
    assert rollback_before(ctx, two_days_ago) == "gen-0001"
    # With gen-0000 pruned, gen-0001's ancestry is unknown: nothing provably clean remains.
    for p in (home.models / "gen-0000").iterdir():
        p.chmod(0o600)
        p.unlink()
    (home.models / "gen-0000").rmdir()
    ctx = AuditContext.load(Nightcap.load())
    assert lineage(ctx, ctx.generations["gen-0002"]) == (["e2", "e3", "e1"], False)
    assert rollback_before(ctx, four_days_ago) is None
