"""`nightcap bench forget --dir D`: a rerun starts from the slept home it kept, and refuses a
directory made with other settings (a scripted runtime, a fake night, forget and scorer: the
real ones are what the benchmark measures)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedRuntime

import assistant.app
from assistant.errors import UsageError
from assistant.config import SleepConfig
from bench import forget as BF

DEFAULT_IDK = SleepConfig().forget_idk_weight


@dataclass
class FakeReport:
    outcome: str = "promoted"
    stages: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    forgotten: dict[str, float] = field(default_factory=dict)


def test_a_rerun_starts_from_the_kept_slept_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_gguf: Path
) -> None:
    monkeypatch.setattr(assistant.app, "make_runtime", lambda gen, config: ScriptedRuntime())
    nights: list[int] = []
    forgets: list[tuple[int, float, str]] = []

    def night(app: Any) -> FakeReport:
        nights.append(len(app.vault().pending()))
        app.vault().close_epoch()
        app.vault().shred(app.vault().closed_epochs(), reason="test")
        return FakeReport()

    def forget(app: Any, text: str) -> FakeReport:
        forgets.append((app.config.sleep.forget_steps, app.config.sleep.forget_idk_weight, text))
        return FakeReport()

    def score(gguf: Path, groups: Any, general: Any, system: str) -> dict[str, Any]:
        return {name: [len(probes) // 2, len(probes)] for name, probes in groups.items()} | {"general": 0.8}

    seams: dict[str, Any] = {"night_fn": night, "forget_fn": forget, "score_fn": score}
    kept = tmp_path / "kept"
    first = BF.run(default_gguf, 3, 1, 1, 0, lambda m: None, d=kept, forget_settings={"forget_steps": 5}, **seams)
    assert len(nights) == 2 and nights[0] > 0  # the bench's night, then the relearning night
    assert (kept / BF.SLEPT).is_dir() and first["forget_steps"] == 5 and first["forget_idk_weight"] == DEFAULT_IDK
    logged: list[str] = []
    again = BF.run(
        default_gguf,
        3,
        1,
        1,
        0,
        logged.append,
        d=kept,
        forget_settings={"forget_steps": 7, "forget_idk_weight": 0.5},
        **seams,
    )
    assert len(nights) == 3  # only the relearning night ran again
    assert any("slept home kept" in line for line in logged)
    assert [f[:2] for f in forgets] == [(5, DEFAULT_IDK), (7, 0.5)] and forgets[0][2] == forgets[1][2]
    assert again["forget_idk_weight"] == 0.5
    assert again["slept"] == first["slept"] and again["night_s"] == first["night_s"]
    with pytest.raises(UsageError, match="other settings"):
        BF.run(default_gguf, 4, 1, 1, 0, lambda m: None, d=kept, **seams)
    shutil.rmtree(kept / BF.SLEPT)  # the kept home is gone: the night runs again, and is kept again
    BF.run(default_gguf, 3, 1, 1, 0, lambda m: None, d=kept, **seams)
    assert len(nights) == 5 and (kept / BF.SLEPT).is_dir()
