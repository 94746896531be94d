"""`nightcap memories` and `nightcap import`, driven through `assistant.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vault_helpers import episode

from assistant.cli import main
from assistant.home import Home
from assistant.vault import Vault


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_memories_list_empty_without_vault(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memories"]) == 0
    assert "No pending memories" in capsys.readouterr().out
    assert main(["memories", "list", "--json"]) == 0
    assert last_json(capsys.readouterr().out) == {"count": 0, "sessions": 0, "secrets": 0, "episodes": []}
    assert not Vault.exists(Home.resolve())  # listing does not create a vault


def test_memories_list_and_forget(capsys: pytest.CaptureFixture[str]) -> None:
    vault = Vault.open(Home.resolve())
    a, b = (
        episode("remember I take my coffee black", "Noted."),
        episode("what's the weather like on Mars today", "Cold.", session="s2"),
    )
    vault.append(a)
    vault.append(b)
    assert main(["memories", "list"]) == 0
    out = capsys.readouterr().out
    assert a.id in out and b.id in out and "remember" in out and "2 pending memories in 2 conversations" in out
    assert main(["memories", "list", "--json"]) == 0
    data = last_json(capsys.readouterr().out)
    assert [e["id"] for e in data["episodes"]] == [a.id, b.id]
    assert data["episodes"][0]["flags"] == ["remember"] and data["episodes"][0]["preview"].startswith("remember I take")

    assert main(["memories", "forget", a.id[:6]]) == 0  # a unique prefix will do
    assert f"Forgot {a.id}" in capsys.readouterr().out
    assert [e.id for e in Vault.open(Home.resolve()).pending()] == [b.id]
    assert vault.ledger()[-1]["reason"] == "forget"


def test_memories_list_counts_secrets_and_does_not_show_them(capsys: pytest.CaptureFixture[str]) -> None:
    vault = Vault.open(Home.resolve())
    told = episode("Thanks! My wifi password is tiger42. Sister is in Oslo.", "Noted.")
    plain = episode("my sister lives in Oslo", "Nice.")
    repeated = episode("help me log in", "Sure, your PIN 4512 goes first.")  # the reply holds it
    for ep in (told, plain, repeated):
        vault.append(ep)
    assert main(["memories", "list"]) == 0
    out = capsys.readouterr().out
    assert "tiger42" not in out and "[secret]" in out and "2 of them hold a secret" in out
    assert main(["memories", "list", "--json"]) == 0
    data = last_json(capsys.readouterr().out)
    assert data["secrets"] == 2 and [e["secret"] for e in data["episodes"]] == [True, False, True]
    assert data["episodes"][0]["flags"] == ["secret"] and data["episodes"][0]["preview"].startswith("Thanks! [secret]")
    # A correction that holds a secret flags its episode like the user's own words.
    vault.annotate(plain.id, correction="Her door code is 7731.")
    assert "secret" in next(ep for ep in vault.pending() if ep.id == plain.id).flags


def test_memories_errors(capsys: pytest.CaptureFixture[str]) -> None:
    Vault.open(Home.resolve()).append(episode())
    assert main(["memories", "forget", "feedface0000"]) == 1
    assert main(["memories", "forget"]) == 2
    assert main(["memories", "frobnicate"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no pending memory has id feedface0000" in err[0]
    assert all("Traceback" not in line for line in err)


def test_memories_wrong_passphrase(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    Vault.open(Home.resolve()).append(episode())
    monkeypatch.setenv("NIGHTCAP_PASSPHRASE", "guess")
    assert main(["memories", "list"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wrong passphrase" in err[0]


def test_memories_warns_about_damage(capsys: pytest.CaptureFixture[str]) -> None:
    vault = Vault.open(Home.resolve())
    vault.append(episode())
    (log,) = vault.epochs_dir.glob("*.log")
    log.write_bytes(log.read_bytes() + b"NCep\x00\x00")  # an append cut short
    assert main(["memories", "list"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "torn-tail" in captured.err and "1 pending memory" in captured.out


def test_import_jsonl_reports_malformed_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {
        "messages": [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "remember my bike is blue"},
            {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "and"},
            {"role": "user", "content": "my car?"},
            {"role": "assistant", "content": "Red."},
            {"role": "user", "content": "no reply to this"},
        ]
    }
    parts = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "hello"},
        ],
        "session": "chat-7",
    }
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({"text": "no messages"}),
        "",
        json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
        json.dumps(parts),
    ]
    src = tmp_path / "chats.jsonl"
    src.write_text("\n".join(lines) + "\n")
    assert main(["import", str(src), "--json"]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert [line.split(":")[1].strip() for line in err] == [
        "chats.jsonl line 2",
        "chats.jsonl line 3",
        "chats.jsonl line 5",
    ]
    data = last_json(captured.out)
    assert data["imported"] == 3 and data["format"] == "jsonl" and len(data["problems"]) == 3
    pending = Vault.open(Home.resolve()).pending()
    assert [e.user_text for e in pending] == ["remember my bike is blue", "and\n\nmy car?", "hi"]
    assert all("imported" in e.flags for e in pending) and "remember" in pending[0].flags
    assert pending[2].session == "chat-7" and pending[0].session == pending[1].session != "chat-7"


def _node(
    nid: str, parent: str | None, children: list[str], role: str | None, text: str, t: float, **extra: object
) -> dict:
    message = None
    if role:
        message = {
            "author": {"role": role},
            "create_time": t,
            "content": {"content_type": "text", "parts": [text]},
            **extra,
        }
    return {"id": nid, "parent": parent, "children": children, "message": message}


def test_import_chatgpt_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = {
        "root": _node("root", None, ["sys"], None, "", 0),
        "sys": _node(
            "sys", "root", ["u1"], "system", "hidden", 1, metadata={"is_visually_hidden_from_conversation": True}
        ),
        "u1": _node("u1", "sys", ["a1old", "a1"], "user", "Where is Lyon?", 100),
        "a1old": _node("a1old", "u1", [], "assistant", "a discarded branch", 101),
        "a1": _node("a1", "u1", ["tool"], "assistant", "In France.", 102),
        "tool": _node("tool", "a1", ["u2"], "assistant", "search()", 103, recipient="browser"),
        "u2": _node("u2", "tool", ["a2"], "user", "Thanks!", 104),
        "a2": _node("a2", "u2", [], "assistant", "You're welcome.", 105),
    }
    export = [
        {"title": "Lyon", "conversation_id": "conv-1", "current_node": "a2", "mapping": mapping},
        {"title": "broken"},
    ]
    src = tmp_path / "conversations.json"
    src.write_text(json.dumps(export))
    assert main(["import", str(src)]) == 0
    captured = capsys.readouterr()
    assert "conversation 2" in captured.err and "Imported 2 memories from 1 conversation" in captured.out
    pending = Vault.open(Home.resolve()).pending()
    assert [(e.user_text, e.reply_text) for e in pending] == [
        ("Where is Lyon?", "In France."),
        ("Thanks!", "You're welcome."),
    ]
    assert pending[0].session == "conv-1" and pending[0].started == 100.0


def test_import_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(tmp_path / "missing.jsonl")]) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n[1, 2\n")
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "does not exist" in err[0] and "line 1" in err[1] and "nothing was imported" in err[-1]
    assert not Vault.exists(Home.resolve())


def test_import_survives_hostile_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mapping = {
        "u": _node("u", None, ["a"], "user", "Where do I keep the spare key?", float("nan")),
        "a": _node("a", "u", [], "assistant", "Under the blue pot.", 1e300),
    }
    export = [
        {"conversation_id": "fine", "current_node": "a", "mapping": mapping},
        {"conversation_id": "typed", "current_node": "x", "mapping": {"x": {"message": {"author": "user"}}}},
        {
            "conversation_id": "content",
            "current_node": "x",
            "mapping": {"x": {"message": {"author": {"role": "user"}, "content": ["not", "a", "dict"]}}},
        },
        {
            "messages": [{"role": "user", "content": "lone \ud800 half"}, {"role": "assistant", "content": "ok"}],
            "session": ["not", "an", "id"],
        },
    ]
    src = tmp_path / "conversations.json"
    src.write_text(json.dumps(export, allow_nan=True))
    assert main(["import", str(src)]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "conversation 2: a field has the wrong type" in captured.err
    assert "conversation 3: a field has the wrong type" in captured.err and "Imported 2 memories" in captured.out
    pending = Vault.open(Home.resolve()).pending()
    spare = next(e for e in pending if e.session == "fine")
    assert spare.started < 4102444800 and spare.ended >= spare.started  # NaN and 1e300 were not believed
    assert any(e.user_text == "lone \ufffd half" for e in pending)
    # Deep nesting, in either format, is a reported line, not a crash.
    deep = tmp_path / "deep.jsonl"
    deep.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n'
        + "[" * 100_000
        + "]" * 100_000
        + "\n"
    )
    assert main(["import", str(deep)]) == 0
    captured = capsys.readouterr()
    assert "line 2: nested too deeply" in captured.err and "Imported 1 memory" in captured.out


def test_an_exchange_too_big_for_the_vault_is_refused_not_dropped_later(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.errors import VaultError
    from assistant.vault import log

    huge = "x" * (log.MAX_PAYLOAD + 1)
    src = tmp_path / "big.jsonl"
    src.write_text(
        "\n".join(
            json.dumps({"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]})
            for text in ("small one", huge)
        )
        + "\n"
    )
    assert main(["import", str(src)]) == 0
    captured = capsys.readouterr()
    assert "is over the 64 MiB the vault keeps per exchange" in captured.err and "Imported 1 memory" in captured.out
    vault = Vault.open(Home.resolve())
    with pytest.raises(VaultError, match="nothing of it was saved"):
        vault.append(episode(huge, "ok"))
    assert [e.user_text for e in Vault.open(Home.resolve()).pending()] == ["small one"]
