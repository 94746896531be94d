"""`nightcap serve`'s API on a scripted runtime: shapes, auth, limits, the vault, generations."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path
from typing import Any, Iterator, NoReturn

import pytest
from scripted import ScriptedRuntime
from starlette.testclient import TestClient

import assistant.app
from assistant.app import Nightcap
from assistant.cli import main as cli
from assistant.config import Config
from assistant.server import api_token, make_api, parse_chat_request
from models.runtime import ReplyOptions
from models.store import Generation, ModelStore
from models.templates import Message


class Runtimes:
    """make_runtime's stand-in: one scripted runtime per generation, made on demand."""

    def __init__(self) -> None:
        self.made: dict[str, ScriptedRuntime] = {}

    def __call__(self, gen: Generation, config: Config) -> ScriptedRuntime:
        return self.made.setdefault(gen.name, ScriptedRuntime(generation=gen.name))

    def script(self, gen: str, *replies: Any) -> ScriptedRuntime:
        return self.made.setdefault(gen, ScriptedRuntime(generation=gen)).enqueue(*replies)


@pytest.fixture
def runtimes(monkeypatch: pytest.MonkeyPatch, provisioned_home: Path) -> Runtimes:
    made = Runtimes()
    monkeypatch.setattr(assistant.app, "make_runtime", made)
    return made


@pytest.fixture
def client(runtimes: Runtimes) -> Iterator[TestClient]:
    app = Nightcap.load()
    with TestClient(make_api(app)) as c:
        c.headers["Authorization"] = f"Bearer {api_token(app.home)}"
        yield c


def pending() -> list[Any]:
    app = Nightcap.load()
    return app.vault().pending()


def ask(client: TestClient, *messages: str, **fields: Any) -> Any:
    roles = ["user", "assistant"]
    body = {"model": "anything", "messages": [{"role": roles[i % 2], "content": m} for i, m in enumerate(messages)]}
    return client.post("/v1/chat/completions", json={**body, **fields})


def test_a_reply_has_openai_shape_and_becomes_an_episode(client: TestClient, runtimes: Runtimes) -> None:
    runtimes.script("gen-0000", ["Noted", ", Tamsin."])
    r = ask(client, "Remember that my daughter is called Tamsin.")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    assert body["model"] == "gen-0000"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Noted, Tamsin."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 2
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 2
    (episode,) = pending()
    assert episode.user_text == "Remember that my daughter is called Tamsin."
    assert episode.reply_text == "Noted, Tamsin."
    assert "remember" in episode.flags  # the same flags as the chat
    assert episode.generation == "gen-0000" and episode.session.startswith("api-")


def test_the_clients_history_is_what_the_model_sees_and_one_conversation_is_one_session(
    client: TestClient, runtimes: Runtimes
) -> None:
    rt = runtimes.script("gen-0000", "Hello!", "It is 4.")
    ask(client, "Hi there")
    ask(client, "Hi there", "Hello!", "What is 2+2?")
    system = Nightcap.load().config.chat.system_prompt
    assert rt.seen[1] == [
        {"role": "system", "content": system},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"},
    ]
    first, second = pending()
    assert first.session == second.session
    assert second.user_text == "What is 2+2?"


def test_a_client_system_prompt_replaces_the_configured_one(client: TestClient, runtimes: Runtimes) -> None:
    rt = runtimes.script("gen-0000", "Ahoy.")
    r = client.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "system", "content": "Talk like a pirate."},
                {"role": "user", "content": [{"type": "text", "text": "Hello"}]},
            ]
        },
    )
    assert r.status_code == 200
    assert rt.seen[0][0] == {"role": "system", "content": "Talk like a pirate."}


def test_sampling_fields_reach_the_runtime(client: TestClient, runtimes: Runtimes) -> None:
    rt = runtimes.script("gen-0000", ["one", " two", " three"])
    r = ask(client, "Count", temperature=0.2, top_p=0.5, max_tokens=2, stop=["four"], seed=7)
    opts = rt.options[0]
    assert opts is not None
    assert (opts.temperature, opts.top_p, opts.max_tokens, opts.seed, opts.stop) == (0.2, 0.5, 2, 7, ["four"])
    assert r.json()["choices"][0]["message"]["content"] == "one two"
    assert r.json()["choices"][0]["finish_reason"] == "length"


def test_a_streamed_reply_is_server_sent_chunks_then_done(client: TestClient, runtimes: Runtimes) -> None:
    runtimes.script("gen-0000", ["My ", "cat ", "is Biscuit."])
    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "My cat is called Biscuit."}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "My cat is Biscuit."
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    (episode,) = pending()
    assert episode.reply_text == "My cat is Biscuit."


@pytest.mark.parametrize("how", ["header", "body"])
def test_an_incognito_request_keeps_nothing(client: TestClient, runtimes: Runtimes, how: str) -> None:
    runtimes.script("gen-0000", "Sure.")
    headers = {"X-Nightcap-Incognito": "1"} if how == "header" else {}
    fields = {"incognito": True} if how == "body" else {}
    r = client.post(
        "/v1/chat/completions",
        headers=headers,
        json={"messages": [{"role": "user", "content": "My PIN is 4471."}], **fields},
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "Sure."
    assert pending() == []


@pytest.mark.parametrize("auth", [None, "Bearer wrong", "Basic abc", "Bearer "])
def test_a_wrong_or_missing_token_is_401_and_writes_nothing(
    client: TestClient, runtimes: Runtimes, auth: str | None
) -> None:
    if auth is None:
        del client.headers["Authorization"]
    else:
        client.headers["Authorization"] = auth
    r = ask(client, "Remember my locker code is 1234.")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert client.get("/v1/models").status_code == 401
    assert runtimes.made.get("gen-0000") is None or runtimes.made["gen-0000"].seen == []
    assert pending() == []


def test_malformed_and_oversize_bodies_are_400_in_openai_shape(
    client: TestClient, runtimes: Runtimes, nightcap_home: Path
) -> None:
    bad = client.post("/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert set(bad.json()["error"]) == {"message", "type", "param", "code"}
    nightcap_home.joinpath("config.toml").write_text("[serve]\nmax_body_bytes = 200\n")
    app = Nightcap.load()
    with TestClient(make_api(app)) as small:
        small.headers["Authorization"] = f"Bearer {api_token(app.home)}"
        big = ask(small, "x" * 500)
        assert big.status_code == 400 and big.json()["error"]["code"] == "request_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"messages": [{"role": "user", "content": "'
            yield b"y" * 500
            yield b'"}]}'

        streamed = small.post("/v1/chat/completions", content=chunked())
        assert streamed.status_code == 400 and streamed.json()["error"]["code"] == "request_too_large"
    assert pending() == []


@pytest.mark.parametrize(
    "body, param",
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "tool", "content": "hi"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "seed": 10**400}, "seed"),
    ],
)
def test_invalid_fields_are_400_naming_the_field(client: TestClient, body: dict[str, Any], param: str) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param
    assert pending() == []


def test_a_nan_is_refused_like_any_bad_number(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b'{"messages": [{"role": "user", "content": "hi"}], "top_p": NaN}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "top_p"


def test_a_model_failure_is_an_error_body_and_keeps_nothing(client: TestClient, runtimes: Runtimes) -> None:
    from assistant.errors import ModelError

    runtimes.script("gen-0000", ModelError("the message is too long for the model's context"))
    r = ask(client, "a long message")
    assert r.status_code == 400 and "too long" in r.json()["error"]["message"]
    assert pending() == []


def test_unknown_routes_answer_in_openai_shape(client: TestClient) -> None:
    r = client.get("/v1/nothing")
    assert r.status_code == 404 and "error" in r.json()


def test_models_lists_the_current_generation(client: TestClient) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list" and [m["id"] for m in body["data"]] == ["gen-0000"]


def test_a_promoted_generation_answers_the_next_request_not_the_one_in_flight(
    client: TestClient, runtimes: Runtimes, default_gguf: Path, nightcap_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(nightcap_home / "models")
    gate = threading.Event()
    old = runtimes.script("gen-0000")

    def slow_reply(messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
        yield "old "
        gate.wait(timeout=10)
        yield "model"

    monkeypatch.setattr(old, "stream_chat", slow_reply)
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(r=ask(client, "first")))
    worker.start()
    new = store.add(default_gguf, source="test", parent="gen-0000", link=True)
    store.use(new.name)  # a night promotes while the first reply is being written
    gate.set()
    worker.join(timeout=10)
    assert result["r"].json()["model"] == "gen-0000"
    assert result["r"].json()["choices"][0]["message"]["content"] == "old model"
    runtimes.script(new.name, "new model")
    second = ask(client, "second").json()
    assert second["model"] == new.name and second["choices"][0]["message"]["content"] == "new model"
    assert client.get("/v1/models").json()["data"][0]["id"] == new.name


def test_requests_mark_the_user_active(client: TestClient, runtimes: Runtimes, nightcap_home: Path) -> None:
    from assistant.home import Home

    marker = Home(nightcap_home).api_activity
    assert not marker.exists()
    runtimes.script("gen-0000", "ok")
    ask(client, "hello")
    assert marker.exists()


def test_the_token_file_is_private_and_stable(nightcap_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["serve", "--print-token"]) == 0
    token = capsys.readouterr().out.strip()
    path = nightcap_home / "serve" / "token"
    assert token.startswith("nc-") and path.read_text().strip() == token
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cli(["serve", "--print-token"]) == 0
    assert capsys.readouterr().out.strip() == token


def test_a_remote_address_needs_allow_remote(nightcap_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["serve", "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "--allow-remote" in err and len(err.strip().splitlines()) == 1


def test_parse_names_a_conversation_by_its_opening() -> None:
    one = parse_chat_request(json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode(), {})
    two = parse_chat_request(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Bye"},
                ]
            }
        ).encode(),
        {},
    )
    other = parse_chat_request(json.dumps({"messages": [{"role": "user", "content": "Yo"}]}).encode(), {})
    named = parse_chat_request(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode(), {"x-nightcap-session": "editor-1"}
    )
    assert one.session == two.session != other.session
    assert named.session == "editor-1"


def test_the_daemon_serves_the_api_while_it_runs(runtimes: Runtimes, nightcap_home: Path) -> None:
    import httpx

    from sleep.commands.daemon import start_api
    from sleep.daemon import Daemon

    nightcap_home.joinpath("config.toml").write_text("[serve]\nport = 0\n")
    app = Nightcap.load()
    runtimes.script("gen-0000", "Served by the daemon.")
    seen: dict[str, Any] = {}

    def api() -> Any:
        server = start_api(app)
        r = httpx.post(
            f"http://127.0.0.1:{server.port}/v1/chat/completions",
            timeout=30,
            headers={"Authorization": f"Bearer {api_token(app.home)}"},
            json={"messages": [{"role": "user", "content": "hello"}]},
        )
        seen["reply"] = r.json()["choices"][0]["message"]["content"]
        seen["server"] = server
        return server

    def conditions(pending: int | None = None) -> NoReturn:
        raise AssertionError("a daemon asked to stop before it runs checks no conditions")

    daemon = Daemon(app, api=api, conditions=conditions, pending=lambda: 0, log=lambda m: None)
    daemon.request_stop("test")  # serve() returns at once; run() still starts and stops the API
    assert daemon.run() == 0
    assert seen["reply"] == "Served by the daemon."
    assert seen["server"].server.should_exit
    assert len(pending()) == 1


def test_the_daemon_refuses_a_remote_api_address(nightcap_home: Path) -> None:
    from assistant.errors import ServeError
    from sleep.commands.daemon import start_api

    nightcap_home.mkdir(parents=True, exist_ok=True)
    nightcap_home.joinpath("config.toml").write_text('[serve]\nhost = "0.0.0.0"\n')
    with pytest.raises(ServeError, match="loopback"):
        start_api(Nightcap.load())


def test_status_counts_what_the_api_kept(
    client: TestClient, runtimes: Runtimes, capsys: pytest.CaptureFixture[str]
) -> None:
    runtimes.script("gen-0000", "Noted.")
    ask(client, "My bike is a green Brompton.")
    assert cli(["status", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["pending_episodes"] == 1


def test_cors_is_off_unless_origins_are_configured(runtimes: Runtimes, nightcap_home: Path) -> None:
    preflight = {
        "Origin": "http://localhost:3000",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with TestClient(make_api(Nightcap.load())) as c:
        assert "access-control-allow-origin" not in c.options("/v1/chat/completions", headers=preflight).headers
    nightcap_home.joinpath("config.toml").write_text('[serve]\ncors_origins = ["http://localhost:3000"]\n')
    with TestClient(make_api(Nightcap.load())) as c:
        r = c.options("/v1/chat/completions", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = c.options("/v1/chat/completions", headers={**preflight, "Origin": "http://evil.example"})
        assert other.headers.get("access-control-allow-origin") != "http://evil.example"
