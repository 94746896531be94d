from assistant.chat import Session
from assistant.episode import FLAG_CORRECTION, FLAG_REMEMBER, Episode
from assistant.errors import ModelError
from scripted import ScriptedRuntime

import pytest


def test_turn_streams_and_records_episode() -> None:
    rt = ScriptedRuntime("gen-0007").enqueue(["Hel", "lo", "!"])
    got: list[Episode] = []
    pieces: list[str] = []
    s = Session(rt, system_prompt="SYS", on_episode=got.append)
    turn = s.turn("Please remember my dog is Biscuit", pieces.append)
    assert pieces == ["Hel", "lo", "!"] and turn.reply == "Hello!"
    assert rt.seen[0][0] == {"role": "system", "content": "SYS"}
    assert got == [turn.episode] and turn.logged
    ep = got[0]
    assert ep.session == s.id and ep.generation == "gen-0007"
    assert ep.messages == [
        {"role": "user", "content": "Please remember my dog is Biscuit"},
        {"role": "assistant", "content": "Hello!"},
    ]
    assert FLAG_REMEMBER in ep.flags and ep.importance > 1.0


def test_history_carries_between_turns() -> None:
    rt = ScriptedRuntime().enqueue("A1", "A2")
    s = Session(rt)
    s.turn("Q1")
    s.turn("Q2")
    assert [m["content"] for m in rt.seen[1]] == ["Q1", "A1", "Q2"]


def test_failed_turn_changes_nothing() -> None:
    rt = ScriptedRuntime().enqueue(ModelError("boom"), "ok")
    got: list[Episode] = []
    s = Session(rt, on_episode=got.append)
    with pytest.raises(ModelError):
        s.turn("hi")
    assert s.history == [] and got == []
    assert s.turn("hi").reply == "ok"


def test_no_log_skips_sink() -> None:
    got: list[Episode] = []
    turn = Session(ScriptedRuntime().enqueue("x"), on_episode=got.append).turn("hi", log=False)
    assert not turn.logged and got == []


def test_correction_flag_and_target_messages() -> None:
    ep = Episode.from_exchange("s", "No, actually my sister lives in Porto.", "OK", "gen-0000", 0.0)
    assert FLAG_CORRECTION in ep.flags
    ep.correction = "Your sister lives in Porto."
    assert ep.target_messages()[-1] == {"role": "assistant", "content": "Your sister lives in Porto."}
    assert Episode.from_dict(ep.to_dict()) == ep
