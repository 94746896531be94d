import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import assistant.app
from assistant.cli import main
from scripted import ScriptedRuntime


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch, provisioned_home: Path) -> ScriptedRuntime:
    rt = ScriptedRuntime()
    monkeypatch.setattr(assistant.app, "make_runtime", lambda gen, config: rt)
    return rt


def test_ask_no_log_plain(scripted: ScriptedRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue(["Hi", " there"])
    assert main(["ask", "--no-log", "hello", "world"]) == 0
    assert capsys.readouterr().out == "Hi there\n"
    assert scripted.seen[0][-1] == {"role": "user", "content": "hello world"}


def test_ask_json(scripted: ScriptedRuntime, capsys: pytest.CaptureFixture[str]) -> None:
    scripted.enqueue("Sure.")
    assert main(["ask", "--no-log", "--json", "remember that I like tea"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["reply"] == "Sure." and data["logged"] is False and data["episode"] is None
    assert "remember" in data["flags"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask"]) == 2
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("ask", "sleep", "audit", "models", "memories"):
        assert name in out


def test_status_json(provisioned_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["generation"] == "gen-0000" and data["arch"] == "gemma3"
    assert data["home"] == str(provisioned_home) and data["model_path"].endswith("model.gguf")


def test_chat_path_does_not_import_training_stack() -> None:
    code = (
        "import sys, importlib\n"
        "for m in ['assistant.cli', 'assistant.commands.ask', 'assistant.app', 'models.runtime', 'models.store',\n"
        "          'assistant.commands.status', 'tui.main', 'tui.app']:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_forget_without_a_statement_is_a_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["forget", "   "]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "forget needs the statement to forget" in err and "Traceback" not in err
    assert not (Path(os.environ["NIGHTCAP_HOME"]) / "vault").exists()  # nothing was created for it
