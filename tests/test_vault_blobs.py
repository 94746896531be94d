"""Sealed blobs: round trip, replacement, destruction, key rotation, and no plaintext on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from vault_helpers import episode, snapshot

from assistant.home import Home
from assistant.vault import DamagedBlob, Vault
from assistant.vault.keystore import Keystore

NAME = "sleep-checkpoint"


@pytest.fixture
def vault() -> Vault:
    return Vault.open(Home.resolve())


def _blob_file(vault: Vault, name: str = NAME) -> Path:
    return vault.dir / "blobs" / f"{name}.bin"


def test_round_trip_and_reopen(vault: Vault) -> None:
    data = os.urandom(5000) + b"\x00" * 10
    assert vault.open_blob(NAME) is None
    vault.seal_blob(NAME, data)
    assert vault.open_blob(NAME) == data
    assert vault.blob_names() == [NAME]
    assert _blob_file(vault).stat().st_mode & 0o777 == 0o600
    assert Vault.open(vault.home).open_blob(NAME) == data
    vault.seal_blob("other", b"")
    assert Vault.open(vault.home).open_blob("other") == b""
    assert vault.blob_names() == ["other", NAME]


def test_replace_drops_the_old_key(vault: Vault) -> None:
    vault.seal_blob(NAME, b"first state " * 100)
    old = _blob_file(vault).read_bytes()
    assert vault.decrypts(old)  # the check below can fail: the old bytes open before the replace
    vault.seal_blob(NAME, b"second state")
    assert vault.open_blob(NAME) == b"second state"
    assert not vault.decrypts(old)
    assert len(Keystore.load(vault.keystore_path).blobs) == 1


def test_drop_makes_old_bytes_undecryptable(vault: Vault) -> None:
    vault.append(episode("keep me", "ok"))
    vault.seal_blob(NAME, b"adapter weights")
    vault.seal_blob("keep", b"another")
    old = _blob_file(vault).read_bytes()
    assert vault.decrypts(old)
    vault.drop_blob(NAME)
    assert not _blob_file(vault).exists()
    assert vault.open_blob(NAME) is None and vault.blob_names() == ["keep"]
    assert not vault.decrypts(old)
    assert not Vault.open(vault.home).decrypts(old)
    assert NAME not in vault.keystore_path.read_text()
    vault.drop_blob(NAME)  # absent: no-op
    vault.drop_blob("never-sealed")
    assert vault.open_blob("keep") == b"another"


def test_survives_shred_and_forget(vault: Vault) -> None:
    vault.append(episode("turn", "ok"))
    epoch = vault.close_epoch()
    assert epoch
    forgotten = episode("forget me", "ok")
    vault.append(forgotten)
    vault.seal_blob("weight-master", b"master bytes")
    vault.seal_blob("sleep-checkpoint", b"checkpoint bytes")
    generation = vault.key_generation
    vault.shred([epoch], reason="consolidated into gen-0001", generation="gen-0001")
    assert vault.open_blob("sleep-checkpoint") == b"checkpoint bytes"
    vault.forget(forgotten.id)
    assert vault.key_generation == generation + 2
    assert vault.open_blob("weight-master") == b"master bytes"
    assert Vault.open(vault.home).open_blob("weight-master") == b"master bytes"
    # A paused night's checkpoint may have trained on the forgotten episode: it is destroyed with it.
    assert vault.open_blob("sleep-checkpoint") is None and vault.blob_names() == ["weight-master"]


def test_damaged_blob_is_reported_and_droppable(vault: Vault) -> None:
    vault.seal_blob(NAME, b"x" * 100)
    path = _blob_file(vault)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(DamagedBlob, match="cannot be read"):
        vault.open_blob(NAME)
    path.write_bytes(bytes(raw[:-5]))
    with pytest.raises(DamagedBlob):
        vault.open_blob(NAME)
    path.unlink()
    with pytest.raises(DamagedBlob):
        vault.open_blob(NAME)
    vault.drop_blob(NAME)
    assert vault.open_blob(NAME) is None


def test_rebuildable_state_discards_a_damaged_blob(vault: Vault) -> None:
    vault.seal_blob(NAME, b"x" * 100)
    path = _blob_file(vault)
    path.write_bytes(path.read_bytes()[:-5])  # cut short, as by a crash or a full disk
    assert vault.open_blob_or_discard(NAME) is None
    assert NAME not in vault.blob_names() and not path.exists()
    vault.seal_blob(NAME, b"y")
    assert vault.open_blob_or_discard(NAME) == b"y"


def test_blob_file_cannot_move_to_another_name(vault: Vault) -> None:
    vault.seal_blob("a", b"aaaa")
    vault.seal_blob("b", b"bbbb")
    _blob_file(vault, "b").write_bytes(_blob_file(vault, "a").read_bytes())
    with pytest.raises(DamagedBlob):
        vault.open_blob("b")


def test_orphan_blob_file_removed_on_open(vault: Vault) -> None:
    vault.seal_blob(NAME, b"state")
    orphan = _blob_file(vault, "orphan")
    orphan.write_bytes(_blob_file(vault).read_bytes())
    stale = vault.dir / "blobs" / f".{NAME}.bin.abc.tmp"
    stale.write_bytes(b"partial")
    reopened = Vault.open(vault.home)
    assert not orphan.exists() and not stale.exists()
    assert reopened.open_blob(NAME) == b"state"


def test_bad_names_refused(vault: Vault) -> None:
    for bad in ("", "../x", "a/b", ".hidden", "x" * 200):
        with pytest.raises(ValueError):
            vault.seal_blob(bad, b"")


def test_keystore_without_blobs_keeps_its_mac(vault: Vault) -> None:
    vault.append(episode("hello", "hi"))
    assert '"blobs"' not in vault.keystore_path.read_text()
    vault.seal_blob(NAME, b"1")
    vault.drop_blob(NAME)
    assert Vault.open(vault.home).pending()


def test_plaintext_never_on_disk(vault: Vault) -> None:
    canary = f"canary-{secrets.token_hex(12)}".encode()
    vault.seal_blob(NAME, canary * 50)
    vault.seal_blob(NAME, canary + b" replaced")
    assert vault.open_blob(NAME) == canary + b" replaced"
    vault.drop_blob(NAME)
    files = snapshot(vault.home.root)
    assert files  # the scan looks at real files
    assert [p for p, data in files.items() if canary in data] == []


def test_a_weight_masters_generation_is_read_without_decrypting_it(
    vault: Vault, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from assistant.vault import derived
    from models.master import Master

    master = Master({"w": torch.zeros(4).half()}, "")
    vault.seal_blob(derived.WEIGHT_MASTER, master.stamp("sha-new").to_bytes(), about="sha-new")
    assert Vault.open(vault.home).blob_about(derived.WEIGHT_MASTER) == "sha-new"  # MAC holds with the field

    def no_decrypting(name: str) -> bytes | None:
        raise AssertionError(f"{name} was decrypted")

    monkeypatch.setattr(vault, "open_blob_or_discard", no_decrypting)
    assert derived.stale(vault, "sha-new", pending=False) == []
    (old,) = derived.stale(vault, "sha-other", pending=False)
    assert old.name == derived.WEIGHT_MASTER
    monkeypatch.undo()
    vault.seal_blob(derived.WEIGHT_MASTER, master.stamp("sha-old").to_bytes())  # sealed before `about` existed
    assert derived.stale(vault, "sha-old", pending=False) == []


def test_what_a_checkpoint_read_is_known_without_decrypting_it(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from sleep import checkpoint
    from sleep.train import TrainState

    state = TrainState(3, {"a": torch.zeros(2)}, {}, {}, "fp", gathered={"e1": 4, "e2": 7})
    checkpoint.save(vault, state)
    monkeypatch.setattr(vault, "open_blob_or_discard", lambda name: (_ for _ in ()).throw(AssertionError(name)))
    assert checkpoint.gathered(vault) == {"e1": 4, "e2": 7}
    monkeypatch.undo()
    restored = checkpoint.load(vault, "fp")
    assert restored is not None and restored.gathered == {"e1": 4, "e2": 7}
