"""Random operation sequences (Hypothesis state machine) and a SIGKILL in the middle of appends.

Invariants: no acknowledged record of a live epoch is lost, across crashes and torn appends; no
shredded (or forgotten) epoch's old log decrypts with any key the vault holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from vault_helpers import episode

from assistant.home import Home
from assistant.vault import Vault

REPO = Path(__file__).resolve().parents[1]


def test_state_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # durability is the SIGKILL test's job

    class VaultMachine(RuleBasedStateMachine):
        @initialize()
        def start(self) -> None:
            self.home = Home.resolve(Path(tempfile.mkdtemp(dir=tmp_path)))
            self.vault = Vault.open(self.home)
            self.acked: dict[str, str] = {}  # episode id -> user text
            self.shredded: list[tuple[str, bytes]] = []  # (epoch, its log as it was)

        @rule(text=st.text(min_size=1, max_size=20), session=st.sampled_from(["a", "b"]))
        def append(self, text: str, session: str) -> None:
            ep = episode(text, "reply", session=session)
            self.vault.append(ep)
            self.acked[ep.id] = text

        @rule()
        def close(self) -> None:
            self.vault.close_epoch()

        def _remember_logs(self, epochs: list[str]) -> None:
            for epoch in epochs:
                path = self.vault.epochs_dir / f"{epoch}.log"
                self.shredded.append((epoch, path.read_bytes() if path.exists() else b""))

        @precondition(lambda self: self.vault.closed_epochs())
        @rule()
        def shred_closed(self) -> None:
            epochs = self.vault.closed_epochs()
            gone = {e.id for epoch in epochs for e in self.vault.read_epoch(epoch)}
            self._remember_logs(epochs)
            self.vault.shred(epochs, reason="consolidated")
            for ep_id in gone:
                del self.acked[ep_id]

        @precondition(lambda self: self.acked)
        @rule(data=st.data())
        def forget(self, data: st.DataObject) -> None:
            # In the order they were told: ids are random, so a sorted choice would pick another
            # episode when hypothesis replays the same draws, and the run would not repeat.
            ep_id = data.draw(st.sampled_from(list(self.acked)))
            owner = next(e for e in self.vault.key_ids() if ep_id in {x.id for x in self.vault.read_epoch(e)})
            self._remember_logs([owner])
            self.vault.forget(ep_id)
            del self.acked[ep_id]

        @rule(cut=st.integers(min_value=1, max_value=60))
        def crash_mid_append(self, cut: int) -> None:
            """A process died while writing a record: part of an unacknowledged record is on disk."""
            open_epochs = [e for e in self.vault.key_ids() if e not in self.vault.closed_epochs()]
            if not open_epochs:
                return
            ghost = episode("never acknowledged", "x")
            from assistant.vault import log, views

            state = self.vault._epochs[open_epochs[0]]
            blob = log.encode_record(state.key, state.id, len(state.records), views.episode_payload(ghost))
            with open(self.vault.epochs_dir / f"{state.id}.log", "ab") as fh:
                fh.write(blob[: min(cut, len(blob) - 1)])
            self.reopen()

        @rule()
        def reopen(self) -> None:
            """A fresh process: nothing carried over but the key (so no Argon2 per step)."""
            old = self.vault
            self.vault = Vault(old.home, old._source, old._kek, old._ks)
            self.vault.reload()
            assert {d.kind for d in self.vault.damage} <= {"torn-tail"}

        @invariant()
        def nothing_acknowledged_is_lost(self) -> None:
            got = {e.id: e.user_text for e in self.vault.pending()}
            assert got == self.acked

        @invariant()
        def shredded_stays_shredded(self) -> None:
            live = set(self.vault.key_ids())
            for epoch, data in self.shredded:
                assert epoch not in live
                assert not self.vault.decrypts(data, [epoch])

        @invariant()
        def ledger_verifies(self) -> None:
            assert self.vault.verify_ledger()

    run_state_machine_as_test(
        VaultMachine,
        settings=settings(
            max_examples=15,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


CHILD = """
import sys
from assistant.episode import Episode
from assistant.home import Home
from assistant.vault import Vault
vault = Vault.open(Home.resolve())
i = 0
while True:
    ep = Episode.from_exchange("killed", f"turn {i}", "reply " * 40, "gen-0000", float(i))
    vault.append(ep)
    print(ep.id, flush=True)  # only after append returned: acknowledged
    i += 1
"""


def test_sigkill_mid_appends_loses_nothing_acknowledged() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.stdout is not None
    acked = []
    for line in proc.stdout:
        acked.append(line.strip())
        if len(acked) >= 150:
            break
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=60)
    acked += [line.strip() for line in rest.splitlines() if line.strip()]
    assert proc.returncode == -signal.SIGKILL
    vault = Vault.open(Home.resolve())
    got = [e.id for e in vault.pending()]
    assert set(acked) <= set(got) and len(got) - len(acked) <= 1  # at most the one in flight
    assert {d.kind for d in vault.damage} <= {"torn-tail"}
