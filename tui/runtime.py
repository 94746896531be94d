"""A model runtime that exists before the model does.

The TUI must take input within a second and a half, but llama.cpp needs longer than that to load
a model (and on first run the default model is assembled first). Conversations therefore hold a
`PendingRuntime`: a turn sent early waits in its worker thread until the real runtime arrives,
and a rollback or a new generation after sleep swaps the runtime underneath without touching the
conversation. `interrupt()` ends the reply being streamed early; what was said so far stands as
the reply.
"""

from __future__ import annotations

import threading
from typing import Iterator

from assistant.errors import ModelError
from models.runtime import ReplyOptions, Runtime
from models.templates import Message


class PendingRuntime:
    """Implements `models.runtime.Runtime` by waiting for, then delegating to, the real one."""

    def __init__(self, generation: str = "") -> None:
        self._ready = threading.Event()
        self._runtime: Runtime | None = None
        self._error: str | None = None
        self._generation = generation
        self._interrupt = threading.Event()

    @property
    def generation(self) -> str:
        return self._runtime.generation if self._runtime is not None else self._generation

    @property
    def ready(self) -> bool:
        return self._runtime is not None

    def set(self, runtime: Runtime) -> None:
        """The real runtime is loaded; waiting turns go ahead."""
        self._runtime, self._error = runtime, None
        self._ready.set()

    def fail(self, error: str) -> None:
        """Loading failed; waiting turns fail with `error`."""
        self._runtime, self._error = None, error
        self._ready.set()

    def reset(self, generation: str) -> None:
        """A different generation is about to load; new turns wait for it."""
        old = self._runtime
        self._ready.clear()
        self._runtime, self._error, self._generation = None, None, generation
        close = getattr(old, "close", None)
        if close is not None:
            close()  # frees llama.cpp's memory before the next model loads

    def interrupt(self) -> None:
        """Stop the reply being streamed after its current piece."""
        self._interrupt.set()

    def stream_chat(self, messages: list[Message], options: ReplyOptions | None = None) -> Iterator[str]:
        self._interrupt.clear()
        self._ready.wait()
        if self._runtime is None:
            raise ModelError(self._error or "the model is not loaded; restart Nightcap")
        runtime = self._runtime
        pieces = runtime.stream_chat(messages) if options is None else runtime.stream_chat(messages, options)
        try:
            for piece in pieces:
                if self._interrupt.is_set():
                    break
                yield piece
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:
                close()  # ends llama.cpp's completion and releases the runtime's lock now
