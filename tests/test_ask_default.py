"""`nightcap ask` on the real embedded default model: it answers, and `--session` carries context."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

import assistant.app
from assistant.cli import main
from assistant.config import Config
from models.runtime import ReplyOptions, Runtime
from models.store import Generation
from models.templates import Message

pytestmark = pytest.mark.slow


def test_ask_answers_and_a_session_carries_its_context(
    provisioned_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[list[dict[str, Any]]] = []
    real = assistant.app.make_runtime

    def spying(gen: Generation, config: Config) -> Runtime:
        runtime = real(gen, config)  # the real llama.cpp runtime; only its input is recorded
        stream = runtime.stream_chat

        def stream_chat(messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
            seen.append([dict(m) for m in messages])
            return stream(messages, options)

        monkeypatch.setattr(runtime, "stream_chat", stream_chat)
        return runtime

    monkeypatch.setattr(assistant.app, "make_runtime", spying)

    def ask(*args: str) -> dict[str, Any]:
        assert main(["ask", "--json", *args]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    first = ask("--session", "trip", "My name is Ada and I am planning a trip to Oslo.")
    assert first["reply"].strip() and first["generation"] == "gen-0000" and first["session"] == "trip"
    second = ask("--session", "trip", "Where am I going?")
    assert second["reply"].strip()
    # The second call sent the first exchange, read back from the vault, before the new question.
    contents = [m["content"] for m in seen[1]]
    assert "My name is Ada and I am planning a trip to Oslo." in contents
    assert first["reply"] in contents and contents[-1] == "Where am I going?"
    # A call without the session starts fresh.
    ask("--no-log", "Where am I going?")
    assert [m["content"] for m in seen[2] if m["role"] != "system"] == ["Where am I going?"]
