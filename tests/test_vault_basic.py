"""Vault round trip, annotations, sessions, key sources and refusals (wrong passphrase and friends)."""

from __future__ import annotations

import io
import json
import stat
import sys
from pathlib import Path
from typing import Any

import keyring.backend
import keyring.backends.fail
import keyring.backends.null
import keyring.core
import keyring.errors
import pytest
from vault_helpers import episode, snapshot

from assistant.errors import VaultError, WrongPassphrase
from assistant.home import Home
from assistant.vault import NoVault, Vault
from assistant.vault.masterkey import MIN_MEMORY_KIB


@pytest.fixture
def home() -> Home:
    return Home.resolve()


def test_round_trip_and_reopen(home: Home) -> None:
    vault = Vault.open(home)
    first, second = episode("remember my cat is Tom", "Noted."), episode("and my dog?", "Rex.", session="s2")
    vault.append(first)
    vault.append(second)
    again = Vault.open(home)
    got = again.pending()
    assert [e.to_dict() for e in got] == [first.to_dict(), second.to_dict()]
    assert again.damage == []
    assert "remember" in got[0].flags


def test_files_private_and_no_plaintext(home: Home) -> None:
    vault = Vault.open(home)
    vault.append(episode("my secret word is pelican", "ok"))
    for path in home.vault.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path
        if path.is_file():
            assert b"pelican" not in path.read_bytes()


def test_annotations_apply_on_read(home: Home) -> None:
    vault = Vault.open(home)
    ep = episode("what is 2+2?", "5")
    vault.append(ep)
    vault.annotate(ep.id, flags=["thumbs_down"])
    vault.annotate(ep.id, correction="4")
    got = Vault.open(home).pending()[0]
    assert got.correction == "4" and "thumbs_down" in got.flags and "correction" in got.flags
    assert got.target_messages()[-1] == {"role": "assistant", "content": "4"}
    vault.annotate(ep.id, remove_flags=["thumbs_down"], importance=2.5)
    got = vault.pending()[0]
    assert "thumbs_down" not in got.flags and got.importance == 2.5
    with pytest.raises(ValueError):
        vault.annotate(ep.id, colour="red")
    with pytest.raises(VaultError, match="no pending memory"):
        vault.annotate("nope", flags=["thumbs_up"])


def test_annotation_reaches_closed_epoch(home: Home) -> None:
    vault = Vault.open(home)
    ep = episode()
    vault.append(ep)
    epoch = vault.close_epoch()
    assert epoch is not None
    vault.annotate(ep.id, flags=["thumbs_up"])
    assert vault.read_epoch(epoch)[0].flags[-1] == "thumbs_up"
    vault.reload()
    assert vault.damage == [] and vault.read_epoch(epoch)[0].flags[-1] == "thumbs_up"


def test_sessions_and_history(home: Home) -> None:
    vault = Vault.open(home)
    vault.append(episode("first question here please", "a1", session="A"))
    vault.append(episode("other", "b1", session="B"))
    vault.append(episode("second", "a2", session="A"))
    summaries = vault.sessions()
    assert [s.id for s in summaries] == ["A", "B"]  # A was active last
    assert summaries[0].turns == 2 and summaries[0].preview == "first question here please"
    history = vault.session_history("A")
    assert [m["content"] for m in history] == ["first question here please", "a1", "second", "a2"]


def test_epochs_close_and_read(home: Home) -> None:
    vault = Vault.open(home)
    assert vault.close_epoch() is None  # nothing to close
    a = episode()
    vault.append(a)
    epoch = vault.close_epoch()
    assert epoch and vault.closed_epochs() == [epoch]
    b = episode()
    vault.append(b)
    assert [e.id for e in vault.read_epoch(epoch)] == [a.id]
    assert [e.id for e in vault.pending()] == [a.id, b.id]
    with pytest.raises(VaultError):
        vault.read_epoch("no-such-epoch")


def test_two_handles_see_each_other(home: Home) -> None:
    one, two = Vault.open(home), Vault.open(home)
    one.append(episode("from one"))
    two.append(episode("from two"))
    epoch = one.close_epoch()
    assert epoch is not None
    two.append(episode("after close"))
    assert [e.user_text for e in one.pending()] == ["from one", "from two", "after close"]
    assert two.closed_epochs() == [epoch]
    one.shred([epoch], reason="consolidated")
    assert [e.user_text for e in two.pending()] == ["after close"]
    assert two.key_generation == one.key_generation


def test_kdf_params_meet_the_minimum(home: Home) -> None:
    vault = Vault.open(home)
    kdf = vault.kdf_params()
    assert kdf and kdf["algorithm"] == "argon2id" and kdf["memory_cost"] >= 64 * 1024 and kdf["iterations"] >= 3
    stored = json.loads((home.vault / "keystore.json").read_text())["master"]["kdf"]
    assert len(__import__("base64").b64decode(stored["salt"])) == 16
    assert vault.master_info()["source"] == "passphrase"


def test_wrong_passphrase_touches_nothing(home: Home) -> None:
    Vault.open(home).append(episode())
    before = snapshot(home.root)
    with pytest.raises(WrongPassphrase, match="^wrong passphrase"):
        Vault.open(home, passphrase="not the passphrase")
    assert snapshot(home.root) == before


def test_no_passphrase_headless(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NIGHTCAP_PASSPHRASE")
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    with pytest.raises(VaultError, match="NIGHTCAP_PASSPHRASE"):
        Vault.open(home)
    assert not (home.vault / "keystore.json").exists()


def test_no_vault_without_create(home: Home) -> None:
    with pytest.raises(NoVault):
        Vault.open(home, create=False)
    assert not Vault.exists(home)


def _edit_keystore(home: Home, fn: Any) -> None:
    path = home.vault / "keystore.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_damaged_keystore_is_refused_and_kept(home: Home) -> None:
    Vault.open(home).append(episode())
    path = home.vault / "keystore.json"
    path.write_bytes(b"{not json")
    before = snapshot(home.root)
    with pytest.raises(VaultError, match="damaged"):
        Vault.open(home)
    assert snapshot(home.root) == before


def test_edited_keystore_is_refused(home: Home) -> None:
    vault = Vault.open(home)
    vault.append(episode())
    vault.close_epoch()
    _edit_keystore(home, lambda d: d["epochs"][0].update(state="open"))
    with pytest.raises(VaultError, match="altered"):
        Vault.open(home)


def test_weakened_kdf_header_is_refused(home: Home) -> None:
    Vault.open(home)
    _edit_keystore(home, lambda d: d["master"]["kdf"].update(memory_cost=MIN_MEMORY_KIB // 64))
    with pytest.raises(VaultError, match="minimum"):
        Vault.open(home)


def test_missing_keystore_with_logs_is_refused(home: Home) -> None:
    Vault.open(home).append(episode())
    (home.vault / "keystore.json").unlink()
    before = snapshot(home.root)
    with pytest.raises(VaultError, match="keystore is missing"):
        Vault.open(home)
    assert snapshot(home.root) == before


class MemoryKeyring(keyring.backend.KeyringBackend):
    """A keyring that keeps secrets in a dict."""

    priority = 5

    def __init__(self) -> None:
        super().__init__()
        self.items: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.items.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.items[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.items.pop((service, username), None)


def test_keyring_holds_master_key_and_rotates(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = MemoryKeyring()
    monkeypatch.setattr(keyring.core, "_keyring_backend", ring)
    monkeypatch.setenv("NIGHTCAP_KEYRING", "auto")
    monkeypatch.delenv("NIGHTCAP_PASSPHRASE")
    vault = Vault.open(home)
    assert vault.master_info()["source"] == "keyring" and vault.kdf_params() is None
    vault.append(episode())
    assert len(ring.items) == 1
    epoch = vault.close_epoch()
    assert epoch is not None
    vault.shred([epoch], reason="consolidated")
    assert len(ring.items) == 1 and list(ring.items)[0][1].endswith(f"-kek-{vault.key_generation}")
    assert Vault.open(home).pending() == []
    monkeypatch.setenv("NIGHTCAP_KEYRING", "off")
    with pytest.raises(VaultError, match="OS keyring"):
        Vault.open(home)


class StubbornKeyring(MemoryKeyring):
    """A keyring whose delete fails while `refuse` is set (a denied Keychain prompt)."""

    refuse = True

    def delete_password(self, service: str, username: str) -> None:
        if self.refuse:
            raise keyring.errors.PasswordDeleteError("user denied access")
        super().delete_password(service, username)


def test_old_master_keys_the_keyring_would_not_delete_are_retried_and_fail_the_audit(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.app import Nightcap
    from assistant.audit import FAIL, PASS, run_audit

    ring = StubbornKeyring()
    monkeypatch.setattr(keyring.core, "_keyring_backend", ring)
    monkeypatch.setenv("NIGHTCAP_KEYRING", "auto")
    monkeypatch.delenv("NIGHTCAP_PASSPHRASE")
    vault = Vault.open(home)
    for _ in range(2):
        vault.append(episode())
        epoch = vault.close_epoch()
        assert epoch is not None
        vault.shred([epoch], reason="consolidated")  # commits although the keyring refuses
    assert vault.pending() == [] and vault.key_generation == 3
    assert sorted(int(user.rsplit("-", 1)[1]) for _, user in ring.items) == [1, 2, 3]
    assert json.loads((home.vault / "keystore.json").read_text())["retiring"] == [1, 2]
    master = run_audit(Nightcap.load(home.root)).check("master-key")
    assert master.status == FAIL and "older generation(s) (1, 2)" in master.reason and "refused" in master.reason
    # Once the keyring lets go, the next open deletes them and the audit passes that check.
    ring.refuse = False
    Vault.open(home)
    current = "vault-" + vault.master_info()["vault_id"] + "-kek-3"
    assert [user for _, user in ring.items] == [current]
    assert "retiring" not in json.loads((home.vault / "keystore.json").read_text())
    assert run_audit(Nightcap.load(home.root)).check("master-key").status == PASS
    # An old entry the keystore does not list (left by a crash or an older Nightcap): no open
    # looks for it, the audit finds it, fails, and deletes it; the next audit passes.
    ring.items[("nightcap", "vault-" + vault.master_info()["vault_id"] + "-kek-1")] = "AAAA"
    Vault.open(home)
    assert len(ring.items) == 2
    master = run_audit(Nightcap.load(home.root)).check("master-key")
    assert master.status == FAIL and "older generation(s) (1)" in master.reason and "deleted them" in master.reason
    assert [user for _, user in ring.items] == [current]
    assert run_audit(Nightcap.load(home.root)).check("master-key").status == PASS


@pytest.mark.parametrize("backend", [keyring.backends.null.Keyring, keyring.backends.fail.Keyring])
def test_insecure_keyrings_refused(home: Home, monkeypatch: pytest.MonkeyPatch, backend: type) -> None:
    monkeypatch.setattr(keyring.core, "_keyring_backend", backend())
    monkeypatch.setenv("NIGHTCAP_KEYRING", "auto")
    assert Vault.open(home).master_info()["source"] == "passphrase"  # auto falls back
    monkeypatch.setenv("NIGHTCAP_KEYRING", "on")
    (home.vault / "keystore.json").unlink()
    with pytest.raises(VaultError, match="NIGHTCAP_KEYRING=off"):
        Vault.open(home)
    assert not (home.vault / "keystore.json").exists()


def test_invalid_keyring_setting(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIGHTCAP_KEYRING", "sometimes")
    with pytest.raises(Exception, match="NIGHTCAP_KEYRING"):
        Vault.open(home)


def test_vault_files_listed(home: Home) -> None:
    vault = Vault.open(home)
    vault.append(episode())
    names = {p.name for p in vault.files()}
    assert "keystore.json" in names and any(n.endswith(".log") for n in names)
    assert isinstance(vault.key_ids(), list) and len(vault.key_ids()) == 1
    assert all(isinstance(p, Path) for p in vault.epoch_files(vault.key_ids()[0]))
