"""Tampering with the episode logs: every change is detected, and no valid acknowledged record is lost.

The master key is derived once per test (one `Vault.open`); each variant rewrites the files and
calls `reload()`, which reads everything again with the unlocked key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from vault_helpers import episode, restore, snapshot

from assistant.home import Home
from assistant.vault import Vault, log


@dataclass
class Setup:
    vault: Vault
    closed: str
    opened: str
    ids: dict[str, list[str]]
    """epoch -> episode ids in log order."""
    snap: dict[Path, bytes]

    def path(self, epoch: str) -> Path:
        return self.vault.epochs_dir / f"{epoch}.log"

    def bounds(self, epoch: str) -> list[tuple[int, int]]:
        """(start, end) of each record in the pristine log."""
        data = self.snap[self.path(epoch)]
        out, pos = [], 0
        while pos < len(data):
            frame = log.frame_at(data, pos)
            assert frame is not None
            out.append((pos, frame[1]))
            pos = frame[1]
        return out

    def reset(self) -> None:
        restore(self.vault.dir, self.snap)
        self.vault.damage.clear()

    def reread(self, epoch: str, data: bytes) -> set[str]:
        """Put `data` in place of `epoch`'s log, reload, return the pending episode ids."""
        self.reset()
        self.path(epoch).write_bytes(data)
        self.vault.reload()
        return {e.id for e in self.vault.pending()}


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> Setup:
    """A closed epoch with 3 small episodes and an open one with 2."""
    # Durability is not what these tests check, and thousands of fsyncs would dominate them.
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    vault = Vault.open(Home.resolve())
    closed_eps = [episode(f"c{i}", "r") for i in range(3)]
    for ep in closed_eps:
        vault.append(ep)
    closed = vault.close_epoch()
    assert closed
    open_eps = [episode(f"o{i}", "r") for i in range(2)]
    for ep in open_eps:
        vault.append(ep)
    opened = [e for e in vault.key_ids() if e != closed][0]
    ids = {closed: [e.id for e in closed_eps], opened: [e.id for e in open_eps]}
    return Setup(vault, closed, opened, ids, snapshot(vault.dir))


def all_ids(s: Setup) -> set[str]:
    return set(s.ids[s.closed]) | set(s.ids[s.opened])


def test_pristine_reload_is_clean(setup: Setup) -> None:
    setup.vault.reload()
    assert setup.vault.damage == [] and {e.id for e in setup.vault.pending()} == all_ids(setup)


@pytest.mark.parametrize("which", ["opened", "closed"])
def test_truncate_at_every_offset(setup: Setup, which: str) -> None:
    epoch = getattr(setup, which)
    data = setup.snap[setup.path(epoch)]
    bounds = setup.bounds(epoch)
    others = all_ids(setup) - set(setup.ids[epoch])
    for cut in range(len(data)):
        got = setup.reread(epoch, data[:cut])
        whole = [i for i, (_, end) in enumerate(bounds) if end <= cut]
        expected = others | {setup.ids[epoch][i] for i in whole}
        assert got == expected, cut  # every record wholly before the cut survives
        at_boundary = cut in {0} | {end for _, end in bounds}
        kinds = {d.kind for d in setup.vault.damage}
        if not at_boundary:
            assert "torn-tail" in kinds, cut  # the cut is detected, and cut off
            assert os.path.getsize(setup.path(epoch)) == (bounds[whole[-1]][1] if whole else 0)
        elif which == "closed":
            assert "missing" in kinds, cut  # a closed log knows how many records it had
        else:
            assert kinds == set(), cut  # a shorter open log is simply an earlier state
        if cut % 5 and not at_boundary:
            continue  # the re-check below on a sample of cuts keeps the test quick
        setup.vault.damage.clear()
        setup.vault.reload()
        assert setup.vault.damage == [] and {e.id for e in setup.vault.pending()} == expected, cut  # repaired for good


@pytest.mark.parametrize("which", ["opened", "closed"])
def test_flip_every_byte(setup: Setup, which: str) -> None:
    epoch = getattr(setup, which)
    data = setup.snap[setup.path(epoch)]
    bounds = setup.bounds(epoch)
    for pos in range(len(data)):
        hit = next(i for i, (start, end) in enumerate(bounds) if start <= pos < end)
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        got = setup.reread(epoch, bytes(flipped))
        assert got == all_ids(setup) - {setup.ids[epoch][hit]}, pos
        assert setup.vault.damage, pos
        # The damaged original is kept aside, byte for byte, never silently dropped.
        kept = setup.vault.damage[0].quarantined
        assert kept and Path(kept).read_bytes() == bytes(flipped), pos


def test_swapped_records_restored_in_order(setup: Setup) -> None:
    epoch = setup.closed
    data = setup.snap[setup.path(epoch)]
    (a0, a1), (b0, b1), _ = setup.bounds(epoch)
    swapped = data[b0:b1] + data[a0:a1] + data[b1:]
    got = setup.reread(epoch, swapped)
    assert got == all_ids(setup)
    assert "reordered" in {d.kind for d in setup.vault.damage}
    assert [e.id for e in setup.vault.read_epoch(epoch)] == setup.ids[epoch]
    setup.vault.damage.clear()
    setup.vault.reload()
    assert setup.vault.damage == []  # repaired for good


def test_duplicated_record_dropped(setup: Setup) -> None:
    epoch = setup.opened
    data = setup.snap[setup.path(epoch)]
    (a0, a1), _ = setup.bounds(epoch)
    got = setup.reread(epoch, data + data[a0:a1])
    assert got == all_ids(setup) and "duplicate" in {d.kind for d in setup.vault.damage}
    assert len(setup.vault.read_epoch(epoch)) == 2


def test_record_moved_to_another_epoch(setup: Setup) -> None:
    src, dst = setup.closed, setup.opened
    src_data, dst_data = setup.snap[setup.path(src)], setup.snap[setup.path(dst)]
    start, end = setup.bounds(src)[1]
    setup.reset()
    setup.path(src).write_bytes(src_data[:start] + src_data[end:])
    setup.path(dst).write_bytes(dst_data + src_data[start:end])
    setup.vault.reload()
    kinds = {(d.epoch, d.kind) for d in setup.vault.damage}
    assert (dst, "moved-out") in kinds and (src, "moved-in") in kinds
    assert [e.id for e in setup.vault.read_epoch(src)] == setup.ids[src]  # back in place
    assert [e.id for e in setup.vault.read_epoch(dst)] == setup.ids[dst]


def test_record_moved_into_middle_of_another_epoch(setup: Setup) -> None:
    src, dst = setup.opened, setup.closed
    src_data, dst_data = setup.snap[setup.path(src)], setup.snap[setup.path(dst)]
    start, end = setup.bounds(src)[0]
    mid = setup.bounds(dst)[1][0]
    setup.reset()
    setup.path(src).write_bytes(src_data[end:])
    setup.path(dst).write_bytes(dst_data[:mid] + src_data[start:end] + dst_data[mid:])
    setup.vault.reload()
    assert {e.id for e in setup.vault.pending()} == all_ids(setup)
    assert [e.id for e in setup.vault.read_epoch(src)] == setup.ids[src]
    assert [e.id for e in setup.vault.read_epoch(dst)] == setup.ids[dst]


def test_record_of_shredded_epoch_is_not_accepted(setup: Setup) -> None:
    vault = setup.vault
    stale = setup.snap[setup.path(setup.closed)]
    vault.shred([setup.closed], reason="consolidated")
    path = setup.path(setup.opened)
    path.write_bytes(path.read_bytes() + stale)
    vault.reload()
    assert {e.id for e in vault.pending()} == set(setup.ids[setup.opened])
    assert "corrupt" in {d.kind for d in vault.damage}


def test_scan_reports_garbage_between_records() -> None:
    key = os.urandom(32)
    recs = [log.encode_record(key, "e", i, b"payload %d" % i) for i in range(3)]
    sc = log.scan(recs[0] + b"\x00" * 50 + recs[1] + recs[2], "e", key)
    assert [r.seq for r in sc.records] == [0, 1, 2]
    assert [(p.kind, p.offset, p.length) for p in sc.problems] == [("corrupt", len(recs[0]), 50)]
    assert log.scan(b"".join(recs), "other-epoch", key).records == []  # AAD binds the epoch


def test_a_repair_is_recorded_for_whoever_opens_the_vault_next(setup: Setup) -> None:
    from assistant.app import Nightcap
    from assistant.audit import PASS, WARN, run_audit

    assert run_audit(Nightcap.load()).check("vault-repairs").status == PASS
    start, _ = setup.bounds(setup.closed)[-1]
    setup.reread(setup.closed, setup.snap[setup.path(setup.closed)][:start])  # the last record gone
    assert {d.kind for d in setup.vault.damage} == {"missing"}
    # A later process finds a clean log, but the keystore kept what was repaired (no content).
    later = Vault.open(Home.resolve())
    assert later.damage == [] and [r["kind"] for r in later.repairs()] == ["missing"]
    check = run_audit(Nightcap.load()).check("vault-repairs")
    assert check.status == WARN and "records were lost" in check.reason and setup.closed in check.reason
