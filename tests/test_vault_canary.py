"""Canary test: random strings go through append, import, annotate, forget and shred; afterwards
no file under the home dir or the temp dir holds any of them in any common encoding."""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

import pytest
from vault_helpers import episode

from assistant.cli import main
from assistant.home import Home
from assistant.vault import Vault


def _encodings(text: str) -> list[bytes]:
    return [
        text.encode("utf-8"),
        text.encode("utf-16-le"),
        text.encode("utf-16-be"),
        json.dumps(text).encode("ascii")[1:-1],
    ]


def _hits(roots: list[Path], canaries: list[str]) -> list[str]:
    needles = [(c, n) for c in canaries for n in _encodings(c)]
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                found += [f"{c} in {path}" for c, n in needles if n in data]
    return found


def test_no_plaintext_anywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))
    home = Home.resolve()
    canaries = [f"canary{secrets.token_hex(8)}" for _ in range(6)]

    vault = Vault.open(home)
    said = episode(f"remember that my locker code is {canaries[0]}", f"I will remember {canaries[1]}")
    vault.append(said)
    src = tmp_path / "outside" / "import.jsonl"  # the user's own file, outside home and temp
    src.parent.mkdir()
    src.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"my ship is {canaries[2]}"},
                    {"role": "assistant", "content": f"lovely {canaries[3]}"},
                ]
            }
        )
        + "\n"
    )
    assert main(["import", str(src)]) == 0
    gone = episode(f"forget this {canaries[4]}", "ok")
    vault.append(gone)
    vault.annotate(said.id, correction=f"better answer {canaries[5]}")

    # The canaries really are stored (so the scan below can fail).
    text = json.dumps([e.to_dict() for e in Vault.open(home).pending()])
    assert all(c in text for c in canaries)
    assert _hits([home.root, tmpdir], canaries) == []

    assert main(["memories", "forget", gone.id]) == 0
    assert main(["memories", "list"]) == 0
    listed = capsys.readouterr().out  # a sentence holding a secret-shaped canary is masked even there
    assert canaries[0] not in listed and "[secret]" in listed
    assert _hits([home.root, tmpdir], canaries) == []

    vault.shred([vault.close_epoch() or ""], reason="consolidated", generation="gen-0001")
    assert Vault.open(home).pending() == []
    assert _hits([home.root, tmpdir], canaries) == []
