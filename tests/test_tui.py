"""Pilot tests of the chat TUI with a scripted model and a fake vault.

Each test drives the app with key presses and asserts on the messages it posted (recorded with
`run_test(message_hook=...)`) and on what reached the vault, not on pixels.
"""

from __future__ import annotations

import threading
from typing import Any, Iterator

from textual.notifications import Notify
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from assistant.app import Nightcap
from assistant.episode import Episode
from assistant.errors import ModelError
from models.runtime import ReplyOptions, Runtime
from models.templates import Message
from scripted import ScriptedRuntime
from tui import messages as m
from tui.app import NightcapApp, make_app
from tui.widgets.conversation import Conversation
from tui.widgets.prompt import Prompt
from tui.widgets.response import Response
from tui.widgets.session_list import SessionList
from tui.widgets.status_bar import StatusBar
from tui_support import SESSIONS, FakeVault, Summary, drive, of, say, settle


def new_app(runtime: Runtime, vault: Any = None, **kw: Any) -> NightcapApp:
    return make_app(Nightcap.load(), runtime=runtime, vault=vault or FakeVault(), conditions=lambda: "on power", **kw)


def test_send_streams_the_reply_and_keeps_the_episode() -> None:
    runtime = ScriptedRuntime("gen-0004").enqueue(["Hel", "lo, ", "**Ada**!"])
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "hi, I am Ada")
        responses = list(app.screen.query(Response))
        assert len(responses) == 1 and responses[0].source == "Hello, **Ada**!"
        assert [p.source for p in app.screen.query(Prompt)] == ["hi, I am Ada"]

    posted = drive(app, script)
    assert [s.prompt for s in of(posted, m.ResponseStarted)] == ["hi, I am Ada"]
    assert [c.text for c in of(posted, m.ResponseChunk)] == ["Hel", "lo, ", "**Ada**!"]
    (done,) = of(posted, m.ResponseComplete)
    assert done.reply == "Hello, **Ada**!" and done.episode is not None and not done.incognito
    assert done.episode.generation == "gen-0004"
    assert vault.writes() == [("append", done.episode.id)]
    assert runtime.seen[0][-1] == {"role": "user", "content": "hi, I am Ada"}


def test_error_brings_the_prompt_back_and_keeps_nothing() -> None:
    runtime = ScriptedRuntime().enqueue(ModelError("the model fell over; try again"), ["fine now"])
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "what is 2+2")
        assert app.screen.query_one("#prompt", Input).value == "what is 2+2"
        assert not app.screen.query(Prompt) and not app.screen.query(Response)
        await pilot.press("enter")  # send it again, as it came back
        await settle(pilot)

    posted = drive(app, script)
    (failed,) = of(posted, m.ResponseFailed)
    assert failed.prompt == "what is 2+2" and "fell over" in failed.error
    errors = [n.notification for n in of(posted, Notify) if n.notification.severity == "error"]
    assert [n.message for n in errors] == ["the model fell over; try again"]
    # The failed turn left no trace: the retry is sent without it, and only the retry is kept.
    assert [msg["content"] for msg in runtime.seen[1] if msg["role"] != "system"] == ["what is 2+2"]
    (done,) = of(posted, m.ResponseComplete)
    assert done.episode is not None
    assert done.reply == "fine now" and vault.writes() == [("append", done.episode.id)]


class GatedRuntime:
    """Says "Once upon", then waits for `gate` before going on."""

    generation = "gen-0000"

    def __init__(self) -> None:
        self.gate = threading.Event()

    def stream_chat(self, messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
        yield "Once upon"
        self.gate.wait(timeout=30)
        yield " a time"
        yield " there was a model."


def test_escape_stops_the_reply_and_keeps_what_was_said() -> None:
    runtime = GatedRuntime()
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press(*"tell me a story", "enter")
        while not app.screen.query(Response) or not app.screen.query(Response).last().source:
            await pilot.pause(0.01)  # until the first piece is on screen
        assert app.screen.query_one("#prompt", Input).placeholder.startswith("Nightcap is answering")
        await pilot.press("escape")
        runtime.gate.set()
        await settle(pilot)

    posted = drive(app, script)
    (done,) = of(posted, m.ResponseComplete)
    assert done.reply == "Once upon" and done.episode is not None
    assert done.episode.reply_text == "Once upon" and vault.writes() == [("append", done.episode.id)]


def test_correction_becomes_the_answer_to_learn() -> None:
    runtime = ScriptedRuntime().enqueue("Your dog is called Rex.", "Noted.")
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "what is my dog called?")
        await pilot.press("ctrl+e")
        await pilot.pause()
        editor = app.screen.query_one("#correction", TextArea)
        editor.text = "Your dog is called Biscuit."
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert app.screen.query(Response).last().source == "Your dog is called Biscuit."
        await say(pilot, "and his age?")

    posted = drive(app, script)
    first = of(posted, m.ResponseComplete)[0].episode
    assert first is not None
    (saved,) = of(posted, m.CorrectionSaved)
    assert saved.episode_id == first.id and saved.correction == "Your dog is called Biscuit."
    (_, episode_id, changes) = [c for c in vault.calls if c[0] == "annotate"][0]
    assert episode_id == first.id and changes["correction"] == "Your dog is called Biscuit."
    assert "correction" in changes["flags"] and changes["importance"] > 1.0
    # The conversation continues from the corrected answer.
    assert {"role": "assistant", "content": "Your dog is called Biscuit."} in runtime.seen[1]


def test_a_message_that_holds_a_secret_is_marked_as_kept_out_of_sleep() -> None:
    runtime = ScriptedRuntime().enqueue("I'll keep it for this chat.", "Lovely.")
    app = new_app(runtime, FakeVault())

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "My bank PIN is 2958, hold on to it.")
        assert app.screen.query(Response).last().border_subtitle == "secret: kept out of sleep"
        await say(pilot, "My sister lives in Oslo.")
        assert app.screen.query(Response).last().border_subtitle == ""

    posted = drive(app, script)
    kept = [c.episode for c in of(posted, m.ResponseComplete)]
    assert [ep is not None and "secret" in ep.flags for ep in kept] == [True, False]


def test_feedback_flags_the_last_episode() -> None:
    runtime = ScriptedRuntime().enqueue("Paris.")
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await say(pilot, "capital of France?")
        await pilot.press("ctrl+g", "ctrl+b", "ctrl+r")  # quick presses: saved in this order
        await settle(pilot)
        assert app.screen.query(Response).last().border_subtitle == "- bad · * remember"

    posted = drive(app, script)
    episode = of(posted, m.ResponseComplete)[0].episode
    assert episode is not None
    given = of(posted, m.FeedbackGiven)
    assert [g.flags for g in given] == [["thumbs_up"], ["thumbs_down"], ["thumbs_down", "remember"]]
    assert all(g.episode_id == episode.id for g in given)
    assert given[0].importance > 1.0 > given[1].importance
    annotations = [c[2] for c in vault.calls if c[0] == "annotate"]
    assert [a["flags"] for a in annotations] == [g.flags for g in given]
    assert [a["remove_flags"] for a in annotations] == [[], ["thumbs_up"], []]


def test_incognito_keeps_nothing() -> None:
    runtime = ScriptedRuntime().enqueue("A secret is safe.")
    vault = FakeVault()
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        await pilot.press("ctrl+o")
        await say(pilot, "my PIN is 1234")
        await pilot.press("ctrl+g", "ctrl+r", "ctrl+e")  # nothing to mark: it was not kept
        await settle(pilot)
        assert app.screen.query_one(StatusBar).incognito
        assert "INCOGNITO" in str(app.screen.query_one(StatusBar).render())
        assert app.screen.query_one("#prompt").border_title == "INCOGNITO: nothing is kept"

    posted = drive(app, script)
    assert [c.on for c in of(posted, m.IncognitoChanged)] == [True]
    (done,) = of(posted, m.ResponseComplete)
    assert done.incognito and done.episode is None
    assert vault.writes() == []
    assert not of(posted, m.FeedbackGiven) and not of(posted, m.CorrectionSaved)


def test_switching_sessions_resumes_history_from_the_vault() -> None:
    sid = SESSIONS[1].id
    history = [
        {"role": "user", "content": "Remember that my dog is called Biscuit"},
        {"role": "assistant", "content": "I will remember Biscuit."},
    ]
    runtime = ScriptedRuntime().enqueue("Biscuit!", "Hello again.")
    vault = FakeVault(SESSIONS, {sid: history})
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        sessions = app.screen.query_one("#sessions", SessionList)
        assert sessions.display and sessions.option_count == 2
        sessions.focus()
        sessions.highlighted = 1
        await pilot.press("enter")
        await settle(pilot)
        conversation = app.screen.query_one(Conversation)
        assert [w.source for w in conversation.query(Prompt)] == ["Remember that my dog is called Biscuit"]
        await say(pilot, "what is my dog called?")
        await pilot.press("ctrl+n")
        await settle(pilot)
        assert not app.screen.query(Prompt)
        await say(pilot, "hello")

    posted = drive(app, script)
    switched = of(posted, m.SessionSwitched)
    assert switched[0].session_id == sid and switched[0].history == history
    assert switched[1].session_id != sid and switched[1].history == []
    assert ("session_history", sid) in vault.calls
    assert runtime.seen[0][-3:-1] == history  # the model saw the resumed conversation
    episodes = [c.episode for c in of(posted, m.ResponseComplete)]
    assert episodes[0] is not None and episodes[0].session == sid
    assert episodes[1] is not None and episodes[1].session == switched[1].session_id
    assert runtime.seen[1][-1] == {"role": "user", "content": "hello"} and len(runtime.seen[1]) <= 2


def test_a_resumed_conversation_goes_on_from_its_corrections() -> None:
    kept = Episode(
        session="s1",
        messages=[{"role": "user", "content": "what is my dog called?"}, {"role": "assistant", "content": "Rex."}],
        flags=["correction"],
        correction="Biscuit.",
    )
    vault = FakeVault([Summary("s1", "what is my dog called?", 1, 1710407700.0, 1710407700.0)], {"s1": kept.messages})
    vault.episodes.append(kept)
    runtime = ScriptedRuntime().enqueue("He is three.")
    app = new_app(runtime, vault)

    async def script(pilot: Pilot[None]) -> None:
        app.screen.query_one("#sessions").focus()
        await pilot.press("down", "enter")
        await settle(pilot)
        answer = app.screen.query(Response).last()
        assert answer.source == "Biscuit." and answer.border_subtitle == "corrected"
        await pilot.press("ctrl+g")  # the resumed answer can still be taught
        await settle(pilot)
        await say(pilot, "how old is he?")

    posted = drive(app, script)
    (switched,) = of(posted, m.SessionSwitched)
    assert switched.episodes == [kept]
    (given,) = of(posted, m.FeedbackGiven)
    assert given.episode_id == kept.id and given.flags == ["correction", "thumbs_up"]
    assert {"role": "assistant", "content": "Biscuit."} in runtime.seen[0]


def test_a_crash_is_told_in_one_line_without_locals_or_message(capsys: Any) -> None:
    import asyncio

    app = new_app(ScriptedRuntime())

    def explode() -> None:
        passphrase = "correct horse battery staple"  # noqa: F841 - a local the crash must not print
        raise ValueError("the sidebar choked on: my door code is 4417")

    async def main() -> None:
        async with app.run_test() as pilot:
            app.call_later(explode)
            await pilot.pause()

    try:
        asyncio.run(main())
    except ValueError:
        pass  # the test harness re-raises the app's exception; what matters is what was printed
    app._print_error_renderables()
    err = capsys.readouterr().err
    assert "nightcap chat: crashed (ValueError at tests/test_tui.py:" in err
    assert "correct horse" not in err and "4417" not in err and "passphrase" not in err
