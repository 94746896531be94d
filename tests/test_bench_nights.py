"""`nightcap bench nights`: fresh values for a second pass over the set, and a month that resumes
where it stopped (a scripted runtime, a fake night and a fake scorer: the real ones are what
the benchmark measures)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from scripted import ScriptedRuntime

import assistant.app
from assistant.errors import SleepError, UsageError
from bench import data_path
from bench import evalset as E
from bench import nights as BN
from sleep import probes as P

ITEM = E.items(
    [
        {
            "id": "x1",
            "night": 1,
            "category": "plain",
            "teach": ["My sister Marisol lives in Guadalajara, where she works as a court interpreter."],
            "probes": [
                {
                    "question": "Where does my sister Marisol live?",
                    "answer": "Guadalajara",
                    "distractors": ["Monterrey", "Puebla"],
                    "kind": "direct",
                },
                {
                    "question": "Which of my siblings lives in Guadalajara?",
                    "answer": "Marisol",
                    "distractors": ["Graciela", "Paloma"],
                    "kind": "reverse",
                },
                {
                    "question": "Which country does Marisol live in?",
                    "answer": "Mexico",
                    "distractors": ["Chile"],
                    "kind": "implied",
                },
            ],
        }
    ]
)[0]


def test_a_second_pass_tells_the_item_with_fresh_values_everywhere() -> None:
    again = BN.with_values(ITEM, 1)
    assert again is not None and again.id == "x1~1"
    assert again.teach == ("My sister Graciela lives in Monterrey, where she works as a court interpreter.",)
    assert [(p.question, p.answer) for p in again.probes] == [
        ("Where does my sister Graciela live?", "Monterrey"),
        ("Which of my siblings lives in Monterrey?", "Graciela"),
    ]
    assert "Guadalajara" in again.probes[0].distractors and "Monterrey" not in again.probes[0].distractors
    third = BN.with_values(ITEM, 2)
    assert third is not None and third.probes[0].answer == "Puebla"
    assert BN.with_values(ITEM, 0) is ITEM


def test_the_schedule_leaves_out_secrets_and_cycles_the_set() -> None:
    items = E.items(P.load_jsonl(data_path("facts.jsonl")))
    plan = BN.schedule(items, 30, 10)
    assert len(plan) == 30 and all(len(night) == 10 for night in plan)
    told = [it for night in plan for it in night]
    assert all(it.category != E.SECRET_KIND for it in told)
    assert len({it.id for it in told}) == len(told)
    assert any(it.id.endswith("~1") for it in told) and any(it.id.endswith("~2") for it in told)


@dataclass
class FakeReport:
    outcome: str = "promoted"
    steps: int = 3
    peak_rss_mb: float = 1234.0


def test_the_month_continues_after_the_last_finished_night(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rt = ScriptedRuntime()
    monkeypatch.setattr(assistant.app, "make_runtime", lambda gen, config: rt)
    nights: list[int] = []
    fail = {"once": True}

    def night(app: Any) -> FakeReport:
        pending = len(app.vault().pending())
        if fail["once"] and len(nights) == 1:
            fail["once"] = False
            raise KeyboardInterrupt  # the machine went off during night 2
        nights.append(pending)
        app.vault().close_epoch()
        epochs = app.vault().closed_epochs()
        app.vault().shred(epochs, reason="test")
        return FakeReport()

    def score(gguf: Path, probes: Any, general: Any, text: str, system: str, night1: Any = ()) -> Any:
        summary = {"all": {"mc": [len(probes) // 2, len(probes)], "gen": [1, max(1, len(probes))]}}
        return summary, 0.8, 20.0, ({"all": {"mc": [1, 2], "gen": [0, 2]}} if night1 else None)

    out = tmp_path / "month"
    state = BN.run(out, default_gguf, 1, 4, 10, [], "", lambda m: None, night, score)
    assert [r["night"] for r in state["rows"]] == [1]
    with pytest.raises(KeyboardInterrupt):
        BN.run(out, None, 3, 4, 10, [], "", lambda m: None, night, score)
    state = BN.run(out, None, 3, 4, 10, [], "", lambda m: None, night, score)
    assert [r["night"] for r in state["rows"]] == [1, 2, 3]
    plan = BN.schedule(E.items(P.load_jsonl(data_path("facts.jsonl"))), 3, 4)
    told = [sum(len(c) for c in BN.conversations(plan, n)) for n in (1, 2, 3)]
    assert nights == told  # night 2 was taught once, before the cut, and slept after it
    assert state["rows"][2]["scored"] == 10 and state["rows"][0]["peak_rss_mb"] == 1234.0
    assert BN.load_state(out)["taught"] == 3
    # The home's size beside its kept generations', and how much the rest grew since night 1.
    assert all(0 < r["models_mb"] <= r["home_mb"] for r in state["rows"])
    BN.print_tables(state)
    assert "of which the kept generations" in capsys.readouterr().out


def test_a_night_that_finished_before_its_scoring_was_cut_is_scored_not_slept_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_gguf: Path
) -> None:
    rt = ScriptedRuntime()
    monkeypatch.setattr(assistant.app, "make_runtime", lambda gen, config: rt)
    slept: list[int] = []

    def night(app: Any) -> FakeReport:
        slept.append(len(app.vault().pending()))
        app.vault().close_epoch()
        app.vault().shred(app.vault().closed_epochs(), reason="test")
        return FakeReport(peak_rss_mb=2000.0 + len(slept))

    cut = {"once": True}

    def score(gguf: Path, probes: Any, general: Any, text: str, system: str, night1: Any = ()) -> Any:
        if probes and cut["once"]:
            cut["once"] = False
            raise KeyboardInterrupt  # the machine went off while the slept model was scored
        return {"all": {"mc": [1, 2], "gen": [0, 2]}}, 0.8, 20.0, None

    out = tmp_path / "month"
    with pytest.raises(KeyboardInterrupt):
        BN.run(out, default_gguf, 1, 4, 10, [], "", lambda m: None, night, score)
    state = BN.run(out, None, 1, 4, 10, [], "", lambda m: None, night, score)
    assert len(slept) == 1 and slept[0] > 0  # slept once, on the night's episodes
    assert [(r["night"], r["peak_rss_mb"]) for r in state["rows"]] == [(1, 2001.0)]


def test_a_night_runs_as_nightcap_sleep_in_a_process_of_its_own(tmp_path: Path, default_gguf: Path) -> None:
    from bench import consolidation as BC

    app = BC.make_home(tmp_path / "home", default_gguf)
    report = BN.sleep_in_child(app)  # nothing pending: the real command, which has nothing to do
    assert report.outcome == "nothing-to-do" and report.steps == 0
    (tmp_path / "home" / "config.toml").write_text("[sleep]\nsteps = 'many'\n", encoding="utf-8")
    with pytest.raises(SleepError, match=r"exit status 1\): config.toml: 'sleep.steps' must be an integer"):
        BN.sleep_in_child(app)


def test_sleep_settings_go_into_the_home_it_makes_and_a_rerun_must_keep_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_gguf: Path
) -> None:
    rt = ScriptedRuntime()
    monkeypatch.setattr(assistant.app, "make_runtime", lambda gen, config: rt)

    def night(app: Any) -> FakeReport:
        assert app.config.sleep.replay_anchor is True and app.config.sleep.kl_weight == 2.5
        app.vault().close_epoch()
        app.vault().shred(app.vault().closed_epochs(), reason="test")
        return FakeReport()

    def score(gguf: Path, probes: Any, general: Any, text: str, system: str, night1: Any = ()) -> Any:
        return {"all": {"mc": [1, 2], "gen": [0, 2]}}, 0.8, 20.0, None

    out = tmp_path / "month"
    settings = {"replay_anchor": "true", "kl_weight": "2.5"}
    state = BN.run(out, default_gguf, 1, 2, 4, [], "", lambda m: None, night, score, settings)
    assert state["settings"] == settings and len(state["rows"]) == 1
    with pytest.raises(UsageError, match="use another --dir"):
        BN.run(out, None, 2, 2, 4, [], "", lambda m: None, night, score, {"replay_anchor": "false"})
    assert len(BN.run(out, None, 2, 2, 4, [], "", lambda m: None, night, score)["rows"]) == 2
