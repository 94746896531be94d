"""The privacy audit: passes on a fresh home and after a cycle; each check fails, with its own
reason, when its promise is broken."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
from audit_helpers import SECRETS, add_generation, audit, isolate, sleep_once
from vault_helpers import episode

from assistant.audit import FAIL, PASS, WARN, AuditResult
from assistant.audit.platform import BACKUPS, DISK, SNAPSHOTS, SWAP
from assistant.fsutil import ensure_dir
from assistant.home import Home
from assistant.vault import Vault

PLATFORM = {SNAPSHOTS, SWAP, DISK, BACKUPS}
ALWAYS_WARN = PLATFORM | {"master-key"}  # passphrase mode in tests; platform unknown


@pytest.fixture
def tmpdir_(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate(tmp_path, monkeypatch)


@pytest.fixture
def vault(tmpdir_: Path) -> Vault:
    return Vault.open(Home.resolve())


def _failing(result: AuditResult) -> dict[str, str]:
    return {c.name: c.reason for c in result.checks if c.status == FAIL}


def _assert_clean(result: AuditResult) -> None:
    assert _failing(result) == {}
    assert result.passed
    for check in result.checks:
        assert check.status == PASS or check.name in ALWAYS_WARN | {"weights"}, (check.name, check.reason)


def test_fresh_home_passes(vault: Vault) -> None:
    vault.append(episode("hello there, this is my very first message", "hi"))
    result = audit()
    _assert_clean(result)
    assert {c.name for c in result.checks if c.status == WARN} == ALWAYS_WARN
    assert result.check("weights").status == PASS


def test_home_without_vault_passes_and_creates_none(tmpdir_: Path) -> None:
    home = Home.resolve()
    result = audit()
    assert result.passed and _failing(result) == {}
    # With nothing to search for, the scan says so instead of passing.
    scan = result.check("plaintext-scan")
    assert scan.status == WARN and scan.reason.startswith("nothing to look for") and scan.details["files_scanned"] == 0
    assert not Vault.exists(home)


def test_after_a_cycle_passes(vault: Vault) -> None:
    night = sleep_once(vault)
    vault.append(episode("a new day with a new secret: the wifi password is hunter22-purple", "ok"))
    result = audit()
    _assert_clean(result)
    assert result.check("shredded-epochs").details["shredded"] == 1
    assert result.check("ledger-provenance").details["consolidated"] == 1
    assert result.check("key-generation").details["generation"] == 2
    weights = result.check("weights")
    assert weights.status == WARN and "gen-0001" in json.dumps(weights.details)
    assert "`nightcap models use gen-0000`" in weights.reason
    assert [e["id"] for e in weights.details["generations"][1]["epochs"]] == [night.epoch]


def test_forget_tombstones_need_no_report(vault: Vault) -> None:
    gone = episode("please forget that my passport number is X1234567", "done")
    vault.append(gone)
    vault.append(episode("keep this one around for tomorrow please", "ok"))
    vault.forget(gone.id)
    result = audit()
    _assert_clean(result)
    assert result.check("ledger-provenance").details["forgotten"] == 1


@pytest.mark.parametrize("where", ["home", "tmp", "cache"])
def test_planted_plaintext_copy_fails(vault: Vault, tmpdir_: Path, where: str) -> None:
    sleep_once(vault)
    keep = episode(SECRETS[0], "Noted.")
    vault.append(keep)
    folder = {
        "home": vault.home.logs,
        "tmp": tmpdir_ / "some-app",
        "cache": Path(os.environ["XDG_CACHE_HOME"]) / "nightcap",
    }[where]
    ensure_dir(folder)
    planted = folder / "notes.txt"
    planted.write_text(f"unrelated words ... {SECRETS[0][5:40]} ... more unrelated words")
    planted.chmod(0o600)
    result = audit()
    assert set(_failing(result)) == {"plaintext-scan"}
    reason = result.check("plaintext-scan").reason
    assert str(planted) in reason and keep.id in reason
    assert SECRETS[0] not in json.dumps(result.to_dict())  # the audit never repeats the text


@pytest.mark.parametrize("form", ["utf-16-le", "json", "short-whole"])
def test_plaintext_forms(vault: Vault, tmpdir_: Path, form: str) -> None:
    text = 'she said "meet me at the old lighthouse" \u2013 at dawn' if form != "short-whole" else "Ottilie Rex 77"
    vault.append(episode(text, "ok"))
    data = {
        "utf-16-le": text.encode("utf-16-le"),
        "json": json.dumps({"m": text}).encode(),
        "short-whole": f"xx{text}yy".encode(),
    }[form]
    (tmpdir_ / "dump.bin.txt").write_bytes(b"\x00\x01" + data + b"\x02")
    assert set(_failing(audit())) == {"plaintext-scan"}


def test_short_fragments_and_system_prompt_are_not_copies(vault: Vault, tmpdir_: Path) -> None:
    vault.append(episode("You are Nightcap, a helpful private assistant. What is my name again, please?", "ok"))
    (tmpdir_ / "note.txt").write_text(SECRETS[1][:20])  # 20 characters of a longer message: not a copy
    vault.append(episode(SECRETS[1], "ok"))
    vault.home.config_file.write_text('[chat]\nsystem_prompt = "You are Nightcap, a helpful private assistant."\n')
    vault.home.config_file.chmod(0o600)
    result = audit()
    assert result.check("plaintext-scan").status == PASS, result.check("plaintext-scan").reason


def test_restored_old_keystore_fails(vault: Vault) -> None:
    night = sleep_once(vault)
    (vault.home.root / "backup-of-epoch.log").write_bytes(night.old_log)
    (vault.home.root / "backup-of-epoch.log").chmod(0o600)
    # Its key is gone, but sealed vault data outside the vault is out of shredding's reach.
    assert set(_failing(audit())) == {"vault-copies"}
    vault.keystore_path.write_bytes(night.old_keystore)  # an old copy, as an SSD or a backup may keep
    result = audit()
    failing = _failing(result)
    assert "back in the keystore" in failing["shredded-epochs"] and night.epoch in failing["shredded-epochs"]
    assert "old keystore copy was restored" in failing["key-generation"]
    assert result.check("shredded-epochs").details["decrypting"] == {night.epoch: ["backup-of-epoch.log"]}
    assert not result.passed


def test_a_copy_of_the_vault_under_the_home_fails_and_says_it_reads_again(vault: Vault) -> None:
    night = sleep_once(vault)
    copy = ensure_dir(vault.home.root / "old" / "vault.bak")
    for name, data in (("keystore.json", night.old_keystore), (f"{night.epoch}.log", night.old_log)):
        (copy / name).write_bytes(data)
        (copy / name).chmod(0o600)
    result = audit()
    reason = _failing(result)["vault-copies"]
    assert f"shredded epoch {night.epoch} reads again" in reason and "old/vault.bak/keystore.json" in reason
    assert result.check("vault-copies").details["shredded_epochs_readable"] == {
        night.epoch: [f"old/vault.bak/{night.epoch}.log"]
    }
    # The keystore copy alone (its logs gone) still holds the shredded epoch's key: it fails too.
    (copy / f"{night.epoch}.log").unlink()
    assert "holds the keys of 1 shredded epoch(s)" in _failing(audit())["vault-copies"]


def test_a_keystore_copy_that_does_not_open_still_fails(vault: Vault, tmpdir_: Path) -> None:
    vault.append(episode("something to keep", "ok"))
    doc = json.loads(vault.keystore_path.read_text())
    doc["vault_id"] = "0123456789abcdef"  # another vault's: the passphrase does not open it
    (vault.home.root / "keystore-old.json").write_text(json.dumps(doc))
    (vault.home.root / "keystore-old.json").chmod(0o600)
    assert (
        "keystore-old.json is a keystore copy: a copy of vault keys outside the vault"
        in (_failing(audit())["vault-copies"])
    )


def test_altered_ledger_entry_fails(vault: Vault) -> None:
    sleep_once(vault)
    path = vault.ledger_path
    entry = json.loads(path.read_text())
    entry["episodes"] = 1  # hide how much was destroyed
    path.write_text(json.dumps(entry, sort_keys=True) + "\n")
    failing = _failing(audit())
    assert set(failing) == {"ledger-chain"}
    assert "ledger entry 0 was altered" in failing["ledger-chain"]


def test_deleted_ledger_fails(vault: Vault) -> None:
    night = sleep_once(vault)
    vault.ledger_path.unlink()
    failing = _failing(audit())
    assert set(failing) == {"ledger-chain", "ledger-provenance"}
    assert "entries were removed" in failing["ledger-chain"]
    assert (
        f"gen-0001 learned epoch {night.epoch}, which is neither in the vault nor in the ledger"
        in failing["ledger-provenance"]
    )


def test_a_deleted_ledger_still_fails_after_the_next_shred(vault: Vault) -> None:
    sleep_once(vault)
    vault.ledger_path.unlink()
    vault.append(episode("a later thing to forget", "ok"))
    vault.forget(vault.pending()[0].id)  # a shred that appends to the ledger again
    failing = _failing(audit())
    assert "records a gap: the keystore recorded 1 entries before it and 0 were found" in failing["ledger-chain"]


def test_tombstone_without_report_or_manifest_fails(vault: Vault) -> None:
    night = sleep_once(vault)
    report = vault.home.reports / f"sleep-{night.report}.json"
    saved = report.read_bytes()
    report.unlink()
    failing = _failing(audit())
    assert set(failing) == {"ledger-provenance"}
    assert f"no stored sleep report records epoch {night.epoch} going into gen-0001" in failing["ledger-provenance"]
    report.write_bytes(saved)
    manifest = vault.home.models / "gen-0001" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["epochs"] = []
    manifest.write_text(json.dumps(data))
    assert "does not list epoch" in _failing(audit())["ledger-provenance"]


def test_pruned_generation_is_noted_not_failed(vault: Vault) -> None:
    first = sleep_once(vault)
    sleep_once(vault, "gen-0002", "gen-0001", texts=["a second night of secrets for the sleep cycle to learn"])
    gen1 = vault.home.models / "gen-0001"
    (gen1 / "model.gguf").chmod(0o600)
    for p in gen1.iterdir():
        p.unlink()
    gen1.rmdir()
    result = audit()
    assert result.passed
    provenance = result.check("ledger-provenance")
    assert provenance.details["pruned_generations"] == ["gen-0001"] and "since pruned" in provenance.reason
    assert result.check("shredded-epochs").details["shredded"] == 2
    gen2 = result.check("weights").details["generations"][-1]
    assert gen2["name"] == "gen-0002" and gen2["inherited"] == [first.epoch] and gen2["ancestry_complete"]


def test_generation_learning_unshredded_epoch_warns(vault: Vault) -> None:
    add_generation(vault.home, "gen-0000", None, [], None)
    vault.append(episode("this one is learned but the cycle died before the shred", "ok"))
    epoch = vault.close_epoch()
    assert epoch
    add_generation(vault.home, "gen-0001", "gen-0000", [epoch], "r1")
    result = audit()
    assert result.passed and result.check("ledger-provenance").status == WARN


@pytest.mark.parametrize("target", ["vault/keystore.json", "vault", "reports"])
def test_widened_permission_fails(vault: Vault, target: str) -> None:
    sleep_once(vault)
    path = vault.home.root / target
    path.chmod(0o755 if path.is_dir() else 0o644)
    failing = _failing(audit())
    assert set(failing) == {"permissions"}
    assert f"{target} (mode 0" in failing["permissions"]


def test_nested_directories_are_created_private(vault: Vault) -> None:
    deep = ensure_dir(vault.home.root / "tmp" / "sleep" / "work")
    for folder in (deep, deep.parent, deep.parent.parent):
        assert folder.stat().st_mode & 0o777 == 0o700
    assert audit().check("permissions").status == PASS


def test_loose_empty_lock_file_only_warns(vault: Vault) -> None:
    lock = vault.home.root / "sleep.lock"
    lock.touch()
    lock.chmod(0o644)
    check = audit().check("permissions")
    assert check.status == WARN and "sleep.lock" in check.reason


@pytest.mark.parametrize(
    "leftover",
    [
        "tmp/sleep/checkpoint.pt",
        "tmp/sleep/dataset.jsonl",
        "adapter/adapter_config.json",
        "models/.building-gen-0002-123/model.gguf",
        "exports/merged.safetensors",
    ],
)
def test_unencrypted_intermediate_fails(vault: Vault, leftover: str) -> None:
    sleep_once(vault)
    path = vault.home.root / leftover
    ensure_dir(path.parent)
    path.write_bytes(b"\x80\x02 tensor bytes")
    path.chmod(0o600)
    failing = _failing(audit())
    assert set(failing) == {"training-intermediates"}
    assert "unencrypted training intermediate" in failing["training-intermediates"]
    assert leftover.split("/")[0] in failing["training-intermediates"]


def test_sealed_checkpoint_is_fine_and_running_cycle_only_warns(vault: Vault) -> None:
    vault.seal_blob("sleep-checkpoint", b"adapter and optimizer state")
    assert audit().check("training-intermediates").status == PASS
    scratch = ensure_dir(vault.home.root / "tmp" / "sleep")
    (scratch / "merged.gguf").write_bytes(b"GGUF")
    with open(vault.home.root / "sleep.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        os.chmod(fh.name, 0o600)
        check = audit().check("training-intermediates")
    assert check.status == WARN and "sleep cycle is running" in check.reason
    assert audit().check("training-intermediates").status == FAIL


def test_vault_that_does_not_open_fails(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    vault.append(episode("hello there, this is my very first message", "hi"))
    monkeypatch.setenv("NIGHTCAP_PASSPHRASE", "not the passphrase")
    result = audit()
    failing = _failing(result)
    assert "shredded-epochs" in failing and "wrong passphrase" in failing["shredded-epochs"]
    assert not result.passed
