"""`nightcap serve` end to end: the official `openai` client against the real server on the real
embedded default model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

from assistant.app import Nightcap
from assistant.server import ApiServer, api_token
from models.store import ModelStore

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.chat import ChatCompletionMessageParam

pytestmark = pytest.mark.slow

openai = pytest.importorskip("openai")


@pytest.fixture
def served(provisioned_home: Path) -> Iterator[tuple[ApiServer, Nightcap]]:
    app = Nightcap.load()
    server = ApiServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield server, app
    finally:
        server.stop()


def client_for(server: ApiServer, app: Nightcap, key: str | None = None) -> OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.port}/v1", api_key=key or api_token(app.home), max_retries=0, timeout=120
    )


def test_the_openai_client_chats_streams_and_is_remembered(
    served: tuple[ApiServer, Nightcap], default_gguf: Path
) -> None:
    server, app = served
    client = client_for(server, app)
    assert [m.id for m in client.models.list().data] == ["gen-0000"]

    said = "Please remember that my sister Wilhelmina plays the oboe."
    reply = client.chat.completions.create(
        model="nightcap", messages=[{"role": "user", "content": said}], max_tokens=24, temperature=0
    )
    roomy = client.chat.completions.create(
        model="nightcap",
        max_tokens=100_000,
        temperature=0,
        extra_body={"incognito": True},
        messages=[{"role": "user", "content": "Say hello."}],
    )  # more than the context
    assert roomy.choices[0].message.content
    first = reply.choices[0].message.content or ""
    assert first.strip() and reply.model == "gen-0000"
    assert reply.usage is not None and reply.usage.completion_tokens > 0

    follow: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": said},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "What does she play?"},
    ]
    stream = client.chat.completions.create(
        model="nightcap", messages=follow, max_tokens=24, temperature=0, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed.strip()

    client.chat.completions.create(
        model="nightcap",
        max_tokens=8,
        temperature=0,
        messages=[{"role": "user", "content": "My bank PIN is 8254."}],
        extra_headers={"X-Nightcap-Incognito": "1"},
    )
    episodes = Nightcap.load().vault().pending()
    assert [(e.user_text, e.reply_text) for e in episodes] == [
        (said, first.strip()),
        ("What does she play?", streamed.strip()),
    ]
    assert "remember" in episodes[0].flags and episodes[0].session == episodes[1].session

    with pytest.raises(openai.AuthenticationError):
        client_for(server, app, key="nc-wrong").chat.completions.create(
            model="nightcap", messages=[{"role": "user", "content": "My locker code is 1234."}]
        )
    assert len(Nightcap.load().vault().pending()) == 2

    store = ModelStore(app.home.models)  # a night promotes a new generation while the server runs
    promoted = store.add(default_gguf, source="test", parent="gen-0000", link=True)
    store.use(promoted.name)
    again = client.chat.completions.create(
        model="nightcap", max_tokens=8, temperature=0, messages=[{"role": "user", "content": "Hello"}]
    )
    assert again.model == promoted.name
    assert Nightcap.load().vault().pending()[-1].generation == promoted.name
