"""Crypto-shredding, forgetting one episode, and the hash-chained ledger."""

from __future__ import annotations

import json

import pytest
from vault_helpers import episode

from assistant.errors import VaultError
from assistant.home import Home
from assistant.vault import Vault
from assistant.vault.keystore import Keystore, unwrap_key
from assistant.vault.ledger import Ledger


@pytest.fixture
def vault() -> Vault:
    return Vault.open(Home.resolve())


def _close_with(vault: Vault, n: int) -> str:
    for i in range(n):
        vault.append(episode(f"turn {i}", "ok"))
    epoch = vault.close_epoch()
    assert epoch
    return epoch


def test_shred_makes_epoch_undecryptable(vault: Vault) -> None:
    epoch = _close_with(vault, 3)
    keep = _close_with(vault, 1)
    old_log = (vault.epochs_dir / f"{epoch}.log").read_bytes()
    old_keystore = Keystore.load(vault.keystore_path)
    generation = vault.key_generation
    assert vault.decrypts(old_log, [epoch])  # the check can succeed: the copy opens before the shred

    report = vault.shred([epoch], reason="consolidated", generation="gen-0001")

    assert report.epochs == [epoch] and report.episodes == 3 and report.records == 3
    assert report.files_removed == 1 and report.bytes_removed == len(old_log)
    assert report.key_generation == vault.key_generation == generation + 1
    assert not vault.decrypts(old_log, [epoch])
    assert epoch not in vault.key_ids() and vault.epoch_files(epoch) == []
    assert epoch not in vault.keystore_path.read_text()
    # An old keystore copy (as an SSD may keep) no longer unwraps with the rotated master key.
    old_entry = old_keystore.epoch(epoch)
    assert old_entry is not None
    with pytest.raises(VaultError):
        unwrap_key(vault._kek, old_entry.wrapped, old_keystore.vault_id, epoch, old_keystore.generation)
    # Survivors were rewrapped and still read.
    assert len(Vault.open(vault.home).read_epoch(keep)) == 1
    assert json.dumps(report.__dict__)  # plain data for the sleep report


def test_shred_unknown_epoch_changes_nothing(vault: Vault) -> None:
    _close_with(vault, 1)
    before = vault.keystore_path.read_bytes()
    with pytest.raises(VaultError, match="nothing was shredded"):
        vault.shred(["no-such-epoch"], reason="consolidated")
    assert vault.keystore_path.read_bytes() == before


def test_shred_open_epoch_then_append(vault: Vault) -> None:
    vault.append(episode("a"))
    (epoch,) = vault.key_ids()
    vault.shred([epoch], reason="test")
    vault.append(episode("b"))
    assert [e.user_text for e in vault.pending()] == ["b"] and vault.key_ids() != [epoch]


def test_forget_rewrites_epoch_under_new_key(vault: Vault) -> None:
    eps = [episode(f"turn {i}") for i in range(3)]
    for ep in eps:
        vault.append(ep)
    vault.annotate(eps[1].id, flags=["thumbs_up"])
    vault.annotate(eps[2].id, flags=["thumbs_down"])
    epoch = vault.close_epoch()
    assert epoch is not None
    old_log = (vault.epochs_dir / f"{epoch}.log").read_bytes()

    vault.forget(eps[1].id)

    assert [e.id for e in vault.pending()] == [eps[0].id, eps[2].id]
    assert vault.pending()[1].flags[-1] == "thumbs_down"  # other annotations kept
    assert not vault.decrypts(old_log, [epoch]) and epoch not in vault.key_ids()
    (new_epoch,) = vault.closed_epochs()  # still a closed epoch, ready for sleep
    tomb = vault.ledger()[-1]
    assert tomb["reason"] == "forget" and tomb["epoch"] == epoch and tomb["replaced_by"] == new_epoch
    reopened = Vault.open(vault.home)
    assert [e.id for e in reopened.pending()] == [eps[0].id, eps[2].id] and reopened.damage == []
    with pytest.raises(VaultError, match="no pending memory"):
        vault.forget(eps[1].id)


def test_forget_last_episode_of_open_epoch(vault: Vault) -> None:
    ep = episode()
    vault.append(ep)
    vault.forget(ep.id)
    assert vault.pending() == [] and vault.key_ids() == []
    vault.append(episode("again"))
    assert [e.user_text for e in vault.pending()] == ["again"]


def test_ledger_chain_verifies_and_detects_edits(vault: Vault) -> None:
    for n in range(3):
        vault.shred([_close_with(vault, 1)], reason="consolidated", generation=f"gen-000{n + 1}")
    entries = vault.ledger()
    assert [e["generation"] for e in entries] == ["gen-0001", "gen-0002", "gen-0003"]
    assert entries[1]["prev"] == entries[0]["hash"] and vault.verify_ledger()
    assert all("turn" not in json.dumps(e) for e in entries)  # no content in tombstones
    pristine = vault.ledger_path.read_text()
    lines = pristine.splitlines()

    edited = json.loads(lines[1])
    edited["reason"] = "something else"
    vault.ledger_path.write_text("\n".join([lines[0], json.dumps(edited), lines[2]]) + "\n")
    assert not vault.verify_ledger() and "entry 1 was altered" in " ".join(vault.ledger_problems())

    vault.ledger_path.write_text("\n".join(lines[:2]) + "\n")  # last entry removed
    assert "removed" in " ".join(vault.ledger_problems())

    vault.ledger_path.write_text("\n".join([lines[1], lines[0], lines[2]]) + "\n")
    assert not vault.verify_ledger()

    # Recomputing the hash chain is not enough without the ledger's MAC key.
    from assistant.vault.ledger import entry_hash

    forged = json.loads(lines[2])
    forged["reason"] = "forged"
    forged["hash"] = entry_hash(forged)
    vault.ledger_path.write_text("\n".join([lines[0], lines[1], json.dumps(forged)]) + "\n")
    assert "bad MAC" in " ".join(vault.ledger_problems())

    vault.ledger_path.write_text(pristine)
    assert vault.verify_ledger()


@pytest.mark.parametrize("damage", ["deleted", "cut short"])
def test_a_deleted_or_cut_ledger_is_not_laundered_by_the_next_shred(vault: Vault, damage: str) -> None:
    for n in range(2):
        vault.shred([_close_with(vault, 1)], reason="consolidated", generation=f"gen-000{n + 1}")
    lines = vault.ledger_path.read_text().splitlines()
    if damage == "deleted":
        vault.ledger_path.unlink()
    else:
        vault.ledger_path.write_text(lines[0] + "\n")
    assert not vault.verify_ledger()
    # The next shred chains on, after an explicit gap entry that fails verification for good.
    vault.shred([_close_with(vault, 1)], reason="consolidated", generation="gen-0003")
    reopened = Vault.open(vault.home)
    problems = reopened.ledger_problems()
    assert len(problems) == 1 and "records a gap: the keystore recorded 2 entries" in problems[0]
    assert [e["generation"] for e in reopened.ledger()][-1] == "gen-0003"  # the gap is no tombstone
    assert all(e.get("reason") != "gap" for e in reopened.ledger())
    vault.shred([_close_with(vault, 1)], reason="consolidated", generation="gen-0004")
    assert Vault.open(vault.home).ledger_problems() == problems


def test_interrupted_shred_is_rolled_forward(vault: Vault) -> None:
    epoch = _close_with(vault, 2)

    def boom(self: Ledger, *args: object) -> dict:
        raise OSError("power cut")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(OSError):
        mp.setattr(Ledger, "append", boom)
        vault.shred([epoch], reason="consolidated", generation="gen-0001")
    # The key is already gone (the commit point); the files and tombstone are finished on open.
    reopened = Vault.open(vault.home)
    assert reopened.pending() == [] and reopened.epoch_files(epoch) == []
    assert [e["epoch"] for e in reopened.ledger()] == [epoch] and reopened.verify_ledger()


def test_interrupted_forget_leaves_episodes_intact(vault: Vault) -> None:
    eps = [episode(f"t{i}") for i in range(2)]
    for ep in eps:
        vault.append(ep)

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("power cut")

    with pytest.MonkeyPatch.context() as mp, pytest.raises(OSError):
        mp.setattr(Vault, "_commit", boom)
        vault.forget(eps[0].id)
    assert len(list(vault.epochs_dir.glob("*.log"))) == 2  # the rewritten log, not yet committed
    reopened = Vault.open(vault.home)
    assert [e.id for e in reopened.pending()] == [e.id for e in eps]
    assert len(list(vault.epochs_dir.glob("*.log"))) == 1  # the orphan (no key) was removed
    reopened.forget(eps[0].id)
    assert [e.id for e in reopened.pending()] == [eps[1].id]
