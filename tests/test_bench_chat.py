"""`nightcap bench chat`: both sides start alike, and the whole bench runs on the default model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bench.chat as bench
from assistant.config import ChatConfig, ModelConfig
from models import runtime


def _served_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, model: ModelConfig) -> dict[str, Any]:
    """The keywords `load_llama` gives llama.cpp for `model` (captured, nothing loaded)."""
    import llama_cpp

    seen: dict[str, Any] = {}
    monkeypatch.setattr(llama_cpp, "Llama", lambda **kw: seen.update(kw))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    runtime.load_llama(gguf, model.n_ctx, model.n_threads, model.n_gpu_layers)
    return seen


@pytest.mark.parametrize("threads", [0, 3])
def test_the_raw_side_gets_the_settings_nightcap_serves_with(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, threads: int
) -> None:
    import llama_cpp

    model = ModelConfig(n_ctx=2048, n_threads=threads, n_gpu_layers=-1)
    chat = ChatConfig(max_tokens=16, system_prompt="Be brief.")
    served = _served_with(monkeypatch, tmp_path, model)
    raw = bench.raw_settings(tmp_path / "m.gguf", model, chat, ["<end_of_turn>"])
    assert raw["n_threads"] == served["n_threads"] and raw["n_ctx"] == served["n_ctx"]
    if llama_cpp.llama_supports_gpu_offload():
        assert raw["n_gpu_layers"] == served["n_gpu_layers"]
    assert raw["system"] == "Be brief." and raw["max_tokens"] == 16 and raw["stop"] == ["<end_of_turn>"]
    assert json.loads(json.dumps(raw)) == raw  # it travels to the script as one JSON argument


@pytest.mark.slow
def test_bench_chat_runs_both_sides_on_the_default_model(
    nightcap_home: Path, default_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--rounds", "1", "--runs", "1", "--max-tokens", "8", "--model", str(default_gguf)]) == 0
    out = capsys.readouterr().out
    fig = json.loads(out.strip().splitlines()[-1])
    assert fig["bench"] == "chat" and "start-up" in out
    for key in ("ours_tps", "raw_tps", "ask_s", "raw_s", "tps_ratio", "startup_ratio"):
        assert fig[key] > 0, key
