"""The episode: one exchange between the user and Nightcap, as the vault keeps it.

An episode is what the sleep cycle learns from. Flags are set at log time from the text alone
(no model call): an explicit "remember ..." request, a user correction ("no, actually ..."), a
secret in the user's words (kept out of sleep), and feedback given later in the TUI.
`importance` starts from the flags; sleep adds surprise.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}

FLAG_REMEMBER = "remember"
FLAG_CORRECTION = "correction"
FLAG_THUMBS_UP = "thumbs_up"
FLAG_THUMBS_DOWN = "thumbs_down"
FLAG_IMPORTED = "imported"
FLAG_SECRET = "secret"
"""The user's words hold a secret (a password, card number, key...; `sleep.secrets`): the
exchange is kept for the conversation, its secret sentences never become training text."""

_REMEMBER = re.compile(r"\b(remember|don'?t forget|do not forget|keep in mind|note that)\b", re.I)
_CORRECTION = re.compile(
    r"^\s*(no[,.!]|nope\b|wrong\b|that'?s (not right|wrong|incorrect)|actually\b|incorrect\b)"
    r"|\b(that'?s (wrong|not right|incorrect)|you'?re wrong|not correct)\b",
    re.I,
)

_FLAG_WEIGHT = {FLAG_REMEMBER: 1.0, FLAG_CORRECTION: 1.0, FLAG_THUMBS_UP: 0.5, FLAG_THUMBS_DOWN: -0.5}


def with_system(system_prompt: str | None, messages: list[Message]) -> list[Message]:
    """`messages` as serving sends them: the system prompt first, when there is one. The one
    place this is built, so that chat, training, dreams, forgetting and scoring agree."""
    return ([{"role": "system", "content": system_prompt}] if system_prompt else []) + list(messages)


def detect_flags(user_text: str) -> list[str]:
    """Flags readable from the user's words alone."""
    from sleep.secrets import holds_secret_text

    flags = []
    if _REMEMBER.search(user_text):
        flags.append(FLAG_REMEMBER)
    if _CORRECTION.search(user_text):
        flags.append(FLAG_CORRECTION)
    if holds_secret_text(user_text):
        flags.append(FLAG_SECRET)
    return flags


def importance_from_flags(flags: list[str]) -> float:
    """Base importance in [0.25, 3]: 1 for an ordinary exchange, more for flagged ones."""
    return max(0.25, 1.0 + sum(_FLAG_WEIGHT.get(f, 0.0) for f in flags))


@dataclass
class Episode:
    """One user turn and the reply, with the context needed to learn from it."""

    session: str
    """Conversation id; turns with the same id form one conversation."""
    messages: list[Message]
    """The exchange: the user's message then the assistant's reply (system prompt excluded)."""
    generation: str = ""
    """Model generation that answered, e.g. "gen-0003"."""
    flags: list[str] = field(default_factory=list)
    """Signals set at log time: remember, correction, secret, thumbs_up, thumbs_down, imported."""
    importance: float = 1.0
    """Training weight before surprise is added at sleep time."""
    correction: str | None = None
    """The user's better answer, replacing the assistant's reply when learning (from the TUI)."""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    started: float = field(default_factory=time.time)
    ended: float = field(default_factory=time.time)

    @property
    def user_text(self) -> str:
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")

    @property
    def reply_text(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), "")

    def target_messages(self) -> list[Message]:
        """The exchange as it should be learned: the correction, when given, replaces the reply."""
        if self.correction is None:
            return [dict(m) for m in self.messages]
        out = [dict(m) for m in self.messages if m["role"] != "assistant"]
        out.append({"role": "assistant", "content": self.correction})
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Episode":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_exchange(cls, session: str, user: str, reply: str, generation: str, started: float) -> "Episode":
        flags = detect_flags(user)
        return cls(
            session=session,
            messages=[{"role": "user", "content": user}, {"role": "assistant", "content": reply}],
            generation=generation,
            flags=flags,
            importance=importance_from_flags(flags),
            started=started,
        )
