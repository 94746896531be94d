"""Power cut at every fsync of the vault's and the model store's work (see tests/powerloss.py):
after a restart the vault opens with every acknowledged episode and nothing acknowledged as
destroyed, and the store serves a whole generation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from powerloss import Disk, PowerCut, copies_of, every_cut, watched

from assistant.episode import Episode
from assistant.fsutil import atomic_write_bytes
from assistant.home import Home
from assistant.vault import Vault
from models.ggufmeta import read_meta
from models.store import ModelStore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads fd paths from /proc")


def episode(text: str) -> Episode:
    return Episode.from_exchange("s1", text, "Noted.", "gen-0000", 0.0)


def test_the_layer_keeps_only_what_fsync_made_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    root = tmp_path / "root"
    root.mkdir()
    (root / "old").write_bytes(b"old")
    disk = Disk(root)
    with watched(monkeypatch, disk):
        (root / "old").write_bytes(b"changed, never synced")
        (root / "new").write_bytes(b"synced, but its entry never was")
        fd = os.open(root / "new", os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        (root / "both").write_bytes(b"synced with its entry")
        fd = os.open(root / "both", os.O_WRONLY)
        os.fsync(fd)
        os.close(fd)
        dfd = os.open(root, os.O_RDONLY)
        os.fsync(dfd)
        os.close(dfd)
        (root / "late").write_bytes(b"entry never synced")
        disk.cut_at = disk.syncs
        with pytest.raises(PowerCut):
            os.fsync(os.open(root / "late", os.O_RDONLY))
    image = disk.image(tmp_path / "image")
    assert (image / "old").read_bytes() == b"old"
    assert (image / "new").read_bytes() == b"synced, but its entry never was"  # the directory fsync came after
    assert (image / "both").read_bytes() == b"synced with its entry"
    assert not (image / "late").exists()


def test_the_vault_keeps_every_acknowledged_episode_across_a_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "template"
    first = episode("My bike is a green Brompton.")
    Vault.open(Home.resolve(template)).append(first)

    fresh = copies_of(template, tmp_path / "home")

    made = [episode(f"Fact number {i}: my locker is {100 + i}.") for i in range(3)]

    def work(root: Path, acked: list[str]) -> None:
        vault = Vault.open(Home(root))
        vault.append(made[0])
        acked.append(f"kept:{made[0].id}")
        vault.append(made[1])
        acked.append(f"kept:{made[1].id}")
        vault.annotate(made[0].id, flags=["thumbs_up"])
        acked.append(f"thumbs:{made[0].id}")
        acked.append(f"asked:{made[1].id}")  # asked to forget: may be gone before the call returns
        vault.forget(made[1].id)
        acked.append(f"gone:{made[1].id}")
        closed = vault.close_epoch()
        assert closed is not None
        vault.append(made[2])
        acked.append(f"kept:{made[2].id}")
        acked += [f"asked:{first.id}", f"asked:{made[0].id}"]
        vault.shred([closed], reason="sleep", generation="gen-0001")
        acked.append(f"gone:{first.id}")
        acked.append(f"gone:{made[0].id}")

    def check(image: Path, acked: list[str], finished: bool) -> None:
        pending = {ep.id: ep for ep in Vault.open(Home(image), create=False).pending()}
        kept = {a.split(":", 1)[1] for a in acked if a.startswith("kept:")}
        gone = {a.split(":", 1)[1] for a in acked if a.startswith("gone:")}
        asked = {a.split(":", 1)[1] for a in acked if a.startswith("asked:")}
        assert (kept - asked) <= set(pending), f"acknowledged episodes lost ({len(acked)} acks)"
        assert not (gone & set(pending)), "an episode acknowledged as destroyed is back"
        if f"thumbs:{made[0].id}" in acked and made[0].id in pending:
            assert "thumbs_up" in pending[made[0].id].flags
        if finished:
            assert set(pending) == {made[2].id}

    tried = every_cut(monkeypatch, fresh, work, check, tmp_path)
    assert tried > 10  # every append, annotation, forget, close and shred step was cut


def tiny_gguf(path: Path, width: int) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.ones((8, width), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("night", [False, True], ids=["models-add", "night-promotes"])
def test_the_store_serves_a_whole_generation_across_a_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, night: bool
) -> None:
    template = tmp_path / "template"
    store = ModelStore(template / "models")
    store.use(store.add(tiny_gguf(tmp_path / "a.gguf", 32), source="test").name)
    added = tiny_gguf(tmp_path / "b.gguf", 64)
    sizes = {"gen-0000": (tmp_path / "a.gguf").stat().st_size, "gen-0001": added.stat().st_size}

    fresh = copies_of(template, tmp_path / "home")

    def work(root: Path, acked: list[str]) -> None:
        s = ModelStore(root / "models")
        if night:  # as a night promotes: the candidate written (and synced) under the home, then linked in
            candidate = root / "tmp" / "candidate.gguf"
            atomic_write_bytes(candidate, added.read_bytes())
            gen = s.add(candidate, source="sleep", parent="gen-0000", link=True)
        else:
            gen = s.add(added, source="test", parent="gen-0000")
        s.use(gen.name)
        acked.append(gen.name)

    def check(image: Path, acked: list[str], finished: bool) -> None:
        gen = ModelStore(image / "models").current(provision=False)
        if acked:
            assert gen.name == acked[0], "a generation acknowledged as current is not"
        assert gen.gguf.stat().st_size == sizes[gen.name], f"{gen.name}'s model file is not whole"
        read_meta(gen.gguf)

    assert every_cut(monkeypatch, fresh, work, check, tmp_path) >= 3


def test_sealed_state_is_whole_or_gone_across_a_power_cut(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    template = tmp_path / "template"
    Vault.open(Home.resolve(template)).seal_blob("sleep-checkpoint", b"first night" * 1000)

    fresh = copies_of(template, tmp_path / "home")

    def work(root: Path, acked: list[str]) -> None:
        vault = Vault.open(Home(root))
        vault.seal_blob("sleep-checkpoint", b"second night" * 1000)
        acked.append("sealed")
        vault.seal_blob("weight-master", b"weights" * 1000)
        acked.append("master")
        acked.append("dropping")
        vault.drop_blob("sleep-checkpoint")
        acked.append("dropped")

    def check(image: Path, acked: list[str], finished: bool) -> None:
        vault = Vault.open(Home(image), create=False)
        checkpoint = vault.open_blob_or_discard("sleep-checkpoint")  # damaged: discarded, never wrong
        assert checkpoint in (None, b"first night" * 1000, b"second night" * 1000)
        if "sealed" in acked and "dropping" not in acked:
            assert checkpoint == b"second night" * 1000
        if "dropped" in acked:
            assert checkpoint is None
        if "master" in acked:
            assert vault.open_blob("weight-master") == b"weights" * 1000

    assert every_cut(monkeypatch, fresh, work, check, tmp_path) > 5
