"""`nightcap bench sleep` plumbing, on a tiny random model (the real figures need the default model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tiny_lm import ByteTokenizer, tiny_model

import bench.training as bench
from assistant.errors import UsageError
from models.templates import template_for


def test_bench_sleep_reports_both_loops_and_every_phase(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    def fake_load(path: Path) -> tuple[Any, Any, Any]:
        assert path == Path("tiny.gguf")
        return tiny_model("gemma3"), ByteTokenizer(), template_for("gemma3")

    monkeypatch.setattr(bench, "load_default", fake_load)
    assert (
        bench.main(
            [
                "--model",
                "tiny.gguf",
                "--steps",
                "3",
                "--batch-size",
                "4",
                "--device",
                "cpu",
                "--precision",
                "bf16",
                "--no-night",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    fig = json.loads(out.strip().splitlines()[-1])
    assert "speed-up" in out and "naive peft" in out
    assert fig["bench"] == "sleep" and fig["device"] == "cpu" and fig["steps"] == 3
    assert fig["examples"] == len(bench.EXCHANGES)
    assert set(fig["phases_s"]) == {"load", "examples", "train_nightcap", "merge", "train_nightcap_fp32", "train_naive"}
    assert fig["precision"] == "bf16"
    for loop in ("nightcap", "nightcap_fp32", "naive"):
        assert fig[f"{loop}_tokens_per_s"] > 0
    assert fig["speedup"] > 0 and fig["speedup_fp32"] > 0
    assert 0 < fig["peak_rss_gb_nightcap"] <= fig["peak_rss_gb"]
    assert len(fig["losses"]) == 3


def test_bench_sleep_rejects_steps_not_above_warmup() -> None:
    with pytest.raises(UsageError):
        bench.main(["--steps", "1", "--warmup", "1"])


def test_the_whole_night_is_a_real_cycle_in_its_own_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tiny_model import MACHINERY_ONLY, make_tiny_q4

    monkeypatch.setenv("NIGHTCAP_HOME", str(tmp_path / "unused"))  # the night uses a throwaway home
    report = bench.whole_night(make_tiny_q4(tmp_path), MACHINERY_ONLY + "steps = 2\n")
    assert report["outcome"] == "promoted" and report["episodes"] == len(bench.EXCHANGES)
    assert list(report["stage_rss_mb"]) == list(report["stages"]) and report["peak_rss_mb"] > 0
    assert not (tmp_path / "unused").exists()
