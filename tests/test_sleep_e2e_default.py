"""A user's day and night on the embedded default model, through the real `nightcap` command.

Teach with `nightcap ask` and `nightcap import`, sleep with `nightcap sleep --now --json`, then
check that the new generation serves and has learned the exchanges, that the logs are destroyed
(no key, no file, ledger tombstones) and that `nightcap audit` passes on the result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TAUGHT = [
    ("Remember that my cat is called Quibble.", "Got it: your cat is called Quibble."),
    ("My sister Zephyrine lives in Lisbon, don't forget.", "I'll remember that your sister Zephyrine lives in Lisbon."),
]


def nightcap(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "assistant.cli", *args], capture_output=True, text=True,
                          env=os.environ.copy(), timeout=1200)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_day_and_a_night_on_the_default_model(provisioned_home: Path, tmp_path: Path) -> None:
    from models.scoring import Scorer

    asked = last_json(nightcap("ask", "--json", "Note that I am allergic to peanuts."))
    assert asked["logged"] and asked["generation"] == "gen-0000" and "remember" in asked["flags"]
    teach = tmp_path / "teach.jsonl"
    teach.write_text("".join(json.dumps({"messages": [{"role": "user", "content": u},
                                                      {"role": "assistant", "content": a}]}) + "\n"
                             for u, a in TAUGHT))
    nightcap("import", str(teach))
    assert len(last_json(nightcap("memories", "list", "--json"))["episodes"]) == 3

    old = provisioned_home / "models" / "gen-0000" / "model.gguf"
    report = last_json(nightcap("sleep", "--now", "--json"))
    assert report["outcome"] == "promoted", report.get("error")
    assert report["episodes"] == 3 and report["new_generation"] == "gen-0001"
    assert report["losses"][-1] < report["losses"][0]
    epoch = report["shred"]["epochs"][0]

    # The new generation serves the next question.
    after = last_json(nightcap("ask", "--json", "--no-log", "Hello!"))
    assert after["generation"] == "gen-0001" and after["reply"].strip()

    # It learned the exchanges: each taught reply became far more likely after its question.
    def reply_logprobs(gguf: Path) -> list[float]:
        scorer = Scorer(gguf, n_ctx=256)
        try:
            return [scorer.mean_logprob(scorer.chat_prompt(u), a) for u, a in TAUGHT]
        finally:
            scorer.close()

    before_lp = reply_logprobs(old)
    after_lp = reply_logprobs(provisioned_home / "models" / "gen-0001" / "model.gguf")
    assert all(a > b + 0.5 for a, b in zip(after_lp, before_lp)), (before_lp, after_lp)

    # The logs are gone: nothing pending, the epoch's key and files destroyed, a tombstone left.
    assert last_json(nightcap("memories", "list", "--json"))["episodes"] == []
    keystore = (provisioned_home / "vault").rglob("*")
    assert not [p for p in keystore if epoch in p.name]
    audit = json.loads(subprocess.run([sys.executable, "-m", "assistant.cli", "audit", "--json"],
                                      capture_output=True, text=True, timeout=600).stdout.strip().splitlines()[-1])
    failed = [c for c in audit["checks"] if c["status"] == "fail"]
    assert failed == [], failed
    for word in ("Quibble", "Zephyrine", "peanuts"):
        # (Model files hold a vocabulary of public words; the user's words must be nowhere else.)
        hits = [p for p in provisioned_home.rglob("*")
                if p.is_file() and p.suffix != ".gguf" and word.encode() in p.read_bytes()]
        assert hits == [], (word, hits)
