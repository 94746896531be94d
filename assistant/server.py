"""The OpenAI chat-completions API in front of the assistant that remembers (`nightcap serve`).

`make_api(app)` builds a Starlette application with two routes, `POST /v1/chat/completions`
(streamed as server-sent events or not) and `GET /v1/models`, behind a bearer token kept in
the home (``serve/token``, 0600). Every request goes through the same `Session` as the chat:
the last user message and the reply become an episode in the vault, flagged the same way
("remember", corrections), unless the request is incognito (header ``X-Nightcap-Incognito: 1``
or ``"incognito": true`` in the body). A client's earlier messages are the history the model
sees; a conversation's episodes share a session id derived from its opening (or the
``X-Nightcap-Session`` header).

Replies come from the current generation: between requests `Models` notices that a night
promoted a new one and loads it, and never while a reply is being written. Each request touches
``serve/last-request``, which the daemon reads as the user being active.

Errors have OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, and never quote
what the user wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from assistant.chat import Session, Turn
from assistant.episode import Message
from assistant.errors import ModelError, NightcapError, ServeError, where
from assistant.fsutil import FILE_MODE, atomic_write_text, ensure_dir
from models.runtime import ReplyOptions

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from assistant.app import Nightcap
    from assistant.home import Home
    from models.runtime import Runtime

INCOGNITO_HEADER = "x-nightcap-incognito"
SESSION_HEADER = "x-nightcap-session"
MAX_STOPS = 4


# -- the files under home/serve -------------------------------------------------------------
def serve_dir(home: "Home") -> Path:
    return ensure_dir(home.root / "serve")


def token_file(home: "Home") -> Path:
    return serve_dir(home) / "token"


def api_token(home: "Home") -> str:
    """The API's bearer token, generated (0600) on first use."""
    path = token_file(home)
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
    token = "nc-" + secrets.token_urlsafe(32)
    atomic_write_text(path, token + "\n")
    return token


def mark_activity(home: "Home") -> None:
    try:
        serve_dir(home)
        home.api_activity.touch(mode=FILE_MODE)  # an existing file's mtime becomes now
    except OSError:
        pass  # a read-only home still serves; the daemon then judges idleness by input alone


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- requests -------------------------------------------------------------------------------
class ApiError(Exception):
    """A refused request, answered with OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


@dataclass
class ChatRequest:
    """A parsed `POST /v1/chat/completions` body."""

    history: list[Message]
    """The conversation before the last user message (no system messages)."""
    user_text: str
    system: str | None
    """The client's system prompt, when it sent one; None keeps Nightcap's."""
    options: ReplyOptions
    stream: bool = False
    include_usage: bool = False
    incognito: bool = False
    session: str = ""


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}: only text content parts are supported", param="messages")
            parts.append(part["text"])
        return "\n".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts", param="messages")


def _number(body: dict[str, Any], key: str, low: float, high: float, *, integer: bool = False) -> Any:
    value = body.get(key)
    if value is None:
        return None
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or (isinstance(value, float) and not math.isfinite(value))
        or not low <= value <= high
    ):
        raise ApiError(
            400, f"'{key}' must be {'an integer' if integer else 'a number'} from {low:g} to {high:g}", param=key
        )
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"))


def conversation_id(system: str | None, first_user: str) -> str:
    """One id for every request of a conversation: clients resend it whole, so its opening
    names it (two conversations that open with the same words share one)."""
    digest = hashlib.sha256(json.dumps([system or "", first_user]).encode("utf-8")).hexdigest()
    return "api-" + digest[:12]


def parse_chat_request(raw: bytes, headers: dict[str, str]) -> ChatRequest:
    """The request, checked field by field. Raises ApiError (400)."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ApiError(400, f"the body is not valid JSON ({type(err).__name__})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages")
    system_parts: list[str] = []
    turns: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"messages[{i}] must be an object", param="messages")
        role = m.get("role")
        text = _text_of(m.get("content"), f"messages[{i}]")
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": text})
        else:
            raise ApiError(
                400, f"messages[{i}]: role {role!r} is not supported (system, user, assistant)", param="messages"
            )
    if not turns or turns[-1]["role"] != "user":
        raise ApiError(400, "the last message must come from the user", param="messages")
    if not turns[-1]["content"].strip():
        raise ApiError(400, "the last user message is empty", param="messages")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "'n' must be 1: one reply per request", param="n")
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if stop is not None else []
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, f"'stop' must be a string or a list of up to {MAX_STOPS} non-empty strings", param="stop")
    max_tokens = _number(body, "max_completion_tokens", 1, 1 << 20, integer=True)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", 1, 1 << 20, integer=True)
    options = ReplyOptions(
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        max_tokens=max_tokens,
        seed=_number(body, "seed", -(1 << 63), (1 << 63) - 1, integer=True),
        stop=stops,
    )
    stream_opts = body.get("stream_options")
    system = "\n\n".join(system_parts) if system_parts else None
    first_user = next(t["content"] for t in turns if t["role"] == "user")
    session = headers.get(SESSION_HEADER, "").strip()[:64] or conversation_id(system, first_user)
    return ChatRequest(
        history=turns[:-1],
        user_text=turns[-1]["content"],
        system=system,
        options=options,
        stream=body.get("stream") is True,
        include_usage=isinstance(stream_opts, dict) and stream_opts.get("include_usage") is True,
        incognito=_truthy(body.get("incognito")) or _truthy(headers.get(INCOGNITO_HEADER)),
        session=session,
    )


# -- the model behind the API ---------------------------------------------------------------
class Models:
    """The runtime answering requests, one reply at a time. Between replies it follows the
    store's `current` pointer, so a generation a night promoted answers the next request; a
    reply under way keeps the runtime it started with."""

    def __init__(self, app: "Nightcap") -> None:
        self.app = app
        self._runtime: "Runtime | None" = None
        self._lock = threading.Lock()

    @contextmanager
    def serving(self) -> Iterator["Runtime"]:
        with self._lock:
            current = self.app.store.current()
            if self._runtime is None or self._runtime.generation != current.name:
                self._close()
                from assistant import app as app_module  # the seam tests replace

                self._runtime = app_module.make_runtime(current, self.app.config)
                load = getattr(self._runtime, "load", None)
                if load is not None:
                    load()
            yield self._runtime

    def _close(self) -> None:
        close = getattr(self._runtime, "close", None)
        if close is not None:
            close()
        self._runtime = None

    def close(self) -> None:
        with self._lock:
            self._close()


class ClientGone(Exception):
    """The client closed a stream: the reply stops and nothing is kept."""


class Assistant:
    """What the routes call: one reply to a parsed request, recorded like a chat turn."""

    def __init__(self, app: "Nightcap") -> None:
        self.app = app
        self.models = Models(app)

    def reply(
        self,
        req: ChatRequest,
        on_token: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
    ) -> tuple[Turn, str]:
        """The turn and the generation that wrote it (`on_start` hears its name before the first
        token). Raises NightcapError."""
        mark_activity(self.app.home)
        try:
            with self.models.serving() as runtime:
                if on_start is not None:
                    on_start(runtime.generation)
                sink = None if req.incognito else self.app.vault().append
                session = Session(
                    runtime,
                    system_prompt=self.app.config.chat.system_prompt if req.system is None else req.system,
                    session_id=req.session,
                    history=req.history,
                    on_episode=sink,
                )
                turn = session.turn(req.user_text, on_token, log=not req.incognito, options=req.options)
                return turn, runtime.generation
        finally:
            mark_activity(self.app.home)


# -- response bodies ------------------------------------------------------------------------
def _usage(options: ReplyOptions) -> dict[str, int]:
    return {
        "prompt_tokens": options.prompt_tokens,
        "completion_tokens": options.completion_tokens,
        "total_tokens": options.prompt_tokens + options.completion_tokens,
    }


def completion_body(cid: str, created: int, model: str, turn: Turn, options: ReplyOptions) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": turn.reply},
                "logprobs": None,
                "finish_reason": options.finish_reason,
            }
        ],
        "usage": _usage(options),
    }


def chunk_body(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


def _error_of(err: BaseException) -> ApiError:
    """An ApiError for a failure while replying. The message of a NightcapError is one line
    written for the user; anything else is named by its type only (its text may quote input)."""
    if isinstance(err, ApiError):
        return err
    if isinstance(err, ModelError):
        return ApiError(400, str(err), code="model_error")
    if isinstance(err, NightcapError):
        return ApiError(500, str(err), type_="server_error")
    return ApiError(500, f"internal error ({where(err)})", type_="server_error")


# -- the application ------------------------------------------------------------------------
def make_api(app: "Nightcap", token: str | None = None, assistant: Assistant | None = None) -> "Starlette":
    """The ASGI application serving `app`. `token` defaults to the home's API token."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    secret = (token or api_token(app.home)).encode("utf-8")
    serving = assistant or Assistant(app)
    limit = app.config.serve.max_body_bytes

    def refuse(err: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    def authorize(request: Request) -> None:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode("utf-8"), secret):
            raise ApiError(
                401,
                "missing or wrong API key: send `Authorization: Bearer TOKEN` with the token "
                "that `nightcap serve --print-token` prints",
                code="invalid_api_key",
            )

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        too_big = ApiError(
            400, f"the body is larger than {limit} bytes (serve.max_body_bytes)", code="request_too_large"
        )
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def models(request: Request) -> "Response":
        try:
            authorize(request)
            gen = serving.app.store.current()
        except Exception as err:  # noqa: BLE001 - every failure answers in OpenAI's shape
            return refuse(_error_of(err))
        created = int(gen.gguf.stat().st_mtime) if gen.gguf.exists() else 0
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": gen.name, "object": "model", "created": created, "owned_by": "nightcap"}],
            }
        )

    async def chat(request: Request) -> "Response":
        try:
            authorize(request)
            req = parse_chat_request(await read_body(request), {k.lower(): v for k, v in request.headers.items()})
        except Exception as err:  # noqa: BLE001 - a refused request answers in OpenAI's shape
            return refuse(_error_of(err))
        cid, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        if req.stream:
            return _stream(serving, req, cid, created)
        import anyio

        try:
            turn, gen = await anyio.to_thread.run_sync(serving.reply, req)
        except Exception as err:  # noqa: BLE001
            return refuse(_error_of(err))
        return JSONResponse(completion_body(cid, created, gen, turn, req.options))

    async def not_found(request: Request, exc: Exception) -> "Response":
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        what = "no such route" if status == 404 else "method not allowed" if status == 405 else "request refused"
        return refuse(ApiError(status, f"{what}: {request.method} {request.url.path}"))

    middleware = []
    if app.config.serve.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(app.config.serve.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", INCOGNITO_HEADER, SESSION_HEADER],
            )
        )
    api = Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models, methods=["GET"])],
        middleware=middleware,
        exception_handlers={HTTPException: not_found},
    )
    api.state.assistant = serving
    return api


def _stream(serving: Assistant, req: ChatRequest, cid: str, created: int) -> "Response":
    """The reply as server-sent events: a role chunk, one chunk per piece, a finish chunk (and a
    usage chunk when asked), then ``[DONE]``; a failure midway is sent as an error event."""
    from sse_starlette.sse import EventSourceResponse

    async def events() -> AsyncIterator[dict[str, str]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        gone = threading.Event()

        def post(kind: str, value: Any) -> None:
            if gone.is_set():
                raise ClientGone()
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def work() -> None:
            try:
                result: tuple[str, Any] = (
                    "done",
                    serving.reply(req, lambda p: post("piece", p), lambda g: post("start", g)),
                )
            except BaseException as err:  # noqa: BLE001 - handed to the event loop
                result = ("error", err)
            loop.call_soon_threadsafe(queue.put_nowait, result)

        worker = threading.Thread(target=work, name="nightcap-reply", daemon=True)
        model = ""
        worker.start()
        try:
            while True:
                kind, value = await queue.get()
                if kind == "start":  # the generation answering is known: the role chunk names it
                    model = value
                    yield {
                        "data": json.dumps(chunk_body(cid, created, model, {"role": "assistant", "content": ""}, None))
                    }
                elif kind == "piece":
                    yield {"data": json.dumps(chunk_body(cid, created, model, {"content": value}, None))}
                elif kind == "error":
                    yield {"data": json.dumps(_error_of(value).body())}
                    break
                else:
                    turn, model = value
                    yield {"data": json.dumps(chunk_body(cid, created, model, {}, req.options.finish_reason))}
                    if req.include_usage:
                        usage = {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": _usage(req.options),
                        }
                        yield {"data": json.dumps(usage)}
                    break
            yield {"data": "[DONE]"}
        finally:
            gone.set()

    return EventSourceResponse(events(), ping=15)


# -- running it -----------------------------------------------------------------------------
def bind(host: str, port: int) -> Any:
    """A listening socket, or a one-line ServeError saying what to do."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({err.strerror or err}); pass another --port or stop what uses it"
        ) from None
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class ApiServer:
    """uvicorn serving `make_api(app)` on a socket, in this thread (`run`) or a background one
    (`start`/`stop`, as the daemon does)."""

    def __init__(self, app: "Nightcap", host: str, port: int, token: str | None = None) -> None:
        import uvicorn

        self.sock = bind(host, port)
        self.port = self.sock.getsockname()[1]
        self.api = make_api(app, token)
        config = uvicorn.Config(
            self.api, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        finally:
            self.api.state.assistant.models.close()

    def start(self, timeout: float = 30.0) -> None:
        """Serve from a background thread; returns once it accepts requests."""
        self._thread = threading.Thread(target=self.run, name="nightcap-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise ServeError(f"the API did not start on port {self.port}; run `nightcap serve` to see why")

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
