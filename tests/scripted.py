"""A scripted stand-in for the llama.cpp runtime, for tests and demos without weights.

rt = ScriptedRuntime()
rt.enqueue(["Hello", " there"], ModelError("boom"))
"""

from __future__ import annotations

import time
from collections import deque
from typing import Iterator

from models.runtime import ReplyOptions
from models.templates import Message


class ScriptedRuntime:
    """Replies from a queue: each entry is a list of pieces, a string, or an exception to raise."""

    def __init__(self, generation: str = "gen-0000", delay: float = 0.0) -> None:
        self.generation = generation
        self.delay = delay
        self.queue: deque[list[str] | str | BaseException] = deque()
        self.seen: list[list[Message]] = []
        self.options: list[ReplyOptions | None] = []

    def enqueue(self, *replies: list[str] | str | BaseException) -> "ScriptedRuntime":
        self.queue.extend(replies)
        return self

    def stream_chat(self, messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
        """Each piece counts as one token; `options.max_tokens` cuts the reply there."""
        self.seen.append([dict(m) for m in messages])
        self.options.append(options)
        item = self.queue.popleft() if self.queue else "(no scripted reply)"
        if isinstance(item, BaseException):
            raise item
        pieces = [item] if isinstance(item, str) else list(item)
        if options is not None:
            options.prompt_tokens = sum(len(m["content"].split()) for m in messages)
            if options.max_tokens is not None and len(pieces) > options.max_tokens:
                pieces, options.finish_reason = pieces[: options.max_tokens], "length"
            options.completion_tokens = len(pieces)
        for piece in pieces:
            if self.delay:
                time.sleep(self.delay)
            yield piece
