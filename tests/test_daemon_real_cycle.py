"""The daemon running the real sleep cycle on a tiny real model: it trains, yields within 10 s
when the user comes back (sealing its checkpoint in the vault), and resumes from that checkpoint
to promote a new generation once the machine is free again."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest

from assistant.app import Nightcap
from assistant.episode import Episode
from test_daemon_process import AWAY, YIELD_DEADLINE_S, Rig
from tiny_model import MACHINERY_ONLY, make_tiny_q4


@pytest.fixture
def rig(nightcap_home: Path, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(nightcap_home, tmp_path)
    r.real_cycle = True  # the real sleep.cycle
    # Enough steps that the night is still training when the user comes back.
    (nightcap_home / "config.toml").write_text(
        "[daemon]\npoll_seconds = 0.2\n[sleep]\nsteps = 200\nbatch_size = 2\nthreads = 1\n" + MACHINERY_ONLY
    )
    app = Nightcap.load()
    app.store.use(app.store.add(make_tiny_q4(tmp_path), source="test").name)
    for i, (user, reply) in enumerate(
        [
            ("my cat is called miso", "your cat is called miso"),
            ("my sister lives in paris", "your sister lives in paris"),
        ]
    ):
        app.vault().append(Episode.from_exchange("s1", user, reply, "gen-0000", time.time() + i))
    yield r
    for proc in r.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_real_cycle_yields_with_a_sealed_checkpoint_and_resumes(rig: Rig) -> None:
    checkpoint = rig.home / "vault" / "blobs" / "sleep-checkpoint.bin"
    proc = rig.start()
    rig.wait_for("training", lambda: "cycle stage: train" in rig.log(), timeout=180)
    time.sleep(2.0)  # a few steps in

    rig.set(**{**AWAY, "idle_seconds": 0})  # the user is back
    rig.wait_for("yield", lambda: "yielded" in rig.log(), timeout=YIELD_DEADLINE_S)
    assert proc.poll() is None and checkpoint.exists()
    assert b"miso" not in checkpoint.read_bytes()
    assert Nightcap.load(rig.home).store.current_name() == "gen-0000"

    rig.set(**AWAY)
    rig.wait_for("completion", lambda: "cycle finished" in rig.log(), timeout=900)
    assert rig.stop(proc) == 0
    reports = [json.loads(p.read_text()) for p in sorted((rig.home / "reports").glob("sleep-*.json"))]
    assert [r["outcome"] for r in reports] == ["interrupted", "promoted"]
    assert 0 < reports[1]["resumed_from_step"] < reports[1]["steps"] == 200
    assert Nightcap.load(rig.home).store.current_name() == "gen-0001"
    assert not checkpoint.exists() and Nightcap.load(rig.home).vault().pending() == []
