"""A chat session: multi-turn conversation state over a `Runtime`.

Each turn streams the reply and produces an `Episode`, the record the vault seals and the sleep
cycle learns from. The session does not know about the vault: whoever creates it passes an
`on_episode` sink (or none, for incognito / `--no-log`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable

from assistant.episode import Episode, Message, with_system
from assistant.errors import ModelError
from models.runtime import ReplyOptions, Runtime


@dataclass
class Turn:
    """The outcome of one exchange."""

    reply: str
    episode: Episode
    logged: bool


class Session:
    """A conversation with the model: history, system prompt, and the episode hook."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        system_prompt: str = "",
        session_id: str | None = None,
        history: list[Message] | None = None,
        on_episode: Callable[[Episode], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.system_prompt = system_prompt
        self.id = session_id or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.history: list[Message] = list(history or [])
        self.on_episode = on_episode

    def messages_for(self, user_text: str) -> list[Message]:
        """What the model sees for the next turn: system prompt, history, the new message."""
        return with_system(self.system_prompt, self.history + [{"role": "user", "content": user_text}])

    def turn(
        self,
        user_text: str,
        on_token: Callable[[str], object] | None = None,
        *,
        log: bool = True,
        options: ReplyOptions | None = None,
    ) -> Turn:
        """Send `user_text`, stream the reply through `on_token`, record the exchange. `options`
        overrides the configured sampling for this reply (the API's request fields).

        The history only changes when the reply completes, so a failed turn can be retried.

        Raises:
            ModelError: the runtime failed; nothing was recorded.
        """
        user_text = user_text.strip()
        if not user_text:
            raise ModelError("the message is empty; type something to send")
        started = time.time()
        pieces: list[str] = []
        messages = self.messages_for(user_text)
        stream = self.runtime.stream_chat(messages) if options is None else self.runtime.stream_chat(messages, options)
        try:
            for piece in stream:
                pieces.append(piece)
                if on_token is not None:
                    on_token(piece)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # a reply cut short (the reader gave up) ends the completion and its lock now
        reply = "".join(pieces).strip()
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
        episode = Episode.from_exchange(self.id, user_text, reply, self.runtime.generation, started)
        logged = bool(log and self.on_episode is not None)
        if logged:
            assert self.on_episode is not None
            self.on_episode(episode)
        return Turn(reply, episode, logged)
