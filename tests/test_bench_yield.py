"""`nightcap bench yield`: the waits a stop asked at random times would see, measured on a fake
night (the real one is what the benchmark measures)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import pytest

from bench import yielding as BY
from sleep.cycle import SleepInterrupted
from sleep.progress import SleepProgress


def test_a_stop_waits_for_the_next_check() -> None:
    assert BY.waits([1.0, 2.0, 5.0], [0.5, 2.0, 3.0, 6.0]) == [0.5, 0.0, 2.0, 0.0]


def test_longest_gaps_are_counted_in_the_stage_that_ends_them() -> None:
    trace = BY.Trace(checks=[0.1, 0.2, 3.2, 3.3, 3.5], stages=[(0.0, "load"), (3.0, "train")], seconds=3.6)
    gaps = BY.longest_gaps(trace)
    assert math.isclose(gaps["load"], 0.1) and math.isclose(gaps["train"], 3.0)
    assert trace.stage_at(0.05) == "load" and trace.stage_at(3.25) == "train"


class Clock:
    """The bench's clock in these tests: it moves only when the fake night works."""

    now = 0.0

    @classmethod
    def monotonic(cls) -> float:
        return cls.now


def fake_night(app: Any, should_stop: Callable[[], bool], progress: SleepProgress) -> None:
    """Three stages of checks 2 s apart, except 30 s of work before each check of "gate"."""
    for stage, work in (("load", 2.0), ("train", 2.0), ("gate", 30.0)):
        progress.stage(stage)
        for _ in range(4):
            Clock.now += work
            if should_stop():
                raise SleepInterrupted("stopped")


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    Clock.now = 0.0
    monkeypatch.setattr(BY.time, "monotonic", Clock.monotonic)


def test_the_bench_traces_a_night_and_stops_others_where_it_was_asked(tmp_path: Path) -> None:
    fig = BY.run(
        tmp_path / "model.gguf",
        50,
        2,
        0,
        lambda _: None,
        night_fn=fake_night,
        home_fn=lambda root, model: object(),
        resume=False,
    )
    assert fig["checks"] == 12 and len(fig["waits_s"]) == 50 and fig["night_s"] == 136.0
    assert [name for _, name in fig["stages"]] == ["load", "train", "gate"]
    assert fig["longest_gap_by_stage_s"] == {"load": 2.0, "train": 2.0, "gate": 30.0}
    # No stop waits longer than the longest stretch without a check.
    assert 2.0 < fig["wait_max_s"] <= 30.0
    for stop in fig["real_stops"]:
        assert stop["stage"] in ("load", "train", "gate", "finished")
        if stop["stage"] != "finished":
            assert 0.0 <= stop["wait_s"] <= stop["return_s"]


def test_a_night_that_ends_before_the_stop_says_so() -> None:
    unwind, wait, stage = BY.stopped_night(object(), fake_night, at=1000.0)
    assert stage == "finished" and math.isnan(unwind) and math.isnan(wait)


def test_a_stopped_night_reports_when_the_stop_was_seen_and_when_it_returned() -> None:
    unwind, wait, stage = BY.stopped_night(object(), fake_night, at=17.0)
    # Asked at 17 s, inside the first 30 s of gate work (gate starts at 16 s): seen at 46 s.
    assert stage == "gate" and wait == 29.0 and unwind == 29.0


class ResumableNight:
    """A fake night that keeps its training when paused after it, as the real one's checkpoint does."""

    def __init__(self) -> None:
        self.trained = False
        self.chats = 0

    def __call__(self, app: Any, should_stop: Callable[[], bool], progress: SleepProgress) -> Any:
        skipped = []
        for stage in ("load", "train", "merge", "gate"):
            progress.stage(stage)
            if stage == "train":
                if self.trained:
                    skipped.append("train")
                else:
                    Clock.now += 50.0
                    self.trained = True
            Clock.now += 2.0
            if should_stop():
                raise SleepInterrupted("stopped")
        return SimpleNamespace(
            skipped=skipped, resumed_from_step=3, steps=3, stages={"train": 0.1}, outcome="promoted", episodes=2
        )

    def chat(self, app: Any) -> Any:
        self.chats += 1
        return app


def test_the_resumed_night_is_paused_after_training_and_says_what_it_skipped() -> None:
    night = ResumableNight()
    out = BY.resumed_night(object(), night, night.chat)
    assert night.chats == 1
    assert out["paused_at"] == "merge" and out["paused_after_s"] == 56.0
    assert out["skipped"] == ["train"] and out["resumed_s"] == 8.0 and out["outcome"] == "promoted"


def test_a_night_that_does_not_keep_its_training_shows_in_the_figure(capsys: pytest.CaptureFixture[str]) -> None:
    night = ResumableNight()

    def forgetful(app: Any) -> Any:
        night.trained = False  # the pause loses the training
        return app

    fig = BY.run(
        Path("m.gguf"), 5, 0, 0, lambda _: None, night_fn=night, home_fn=lambda root, model: object(), chat_fn=forgetful
    )
    assert fig["resumed"]["skipped"] == [] and fig["resumed"]["resumed_s"] == 58.0
    BY.print_table(fig)
    assert "skipped nothing" in capsys.readouterr().out
