"""The messages the Nightcap TUI posts, one small dataclass each, so the flow reads off the types.

A reply goes ResponseStarted -> ResponseChunk* -> ResponseComplete (or ResponseFailed). The model
and vault open in the background and announce themselves with ModelReady/ModelFailed and
VaultReady/VaultLocked. Teaching the model posts FeedbackGiven and CorrectionSaved. Tests record
these with `app.run_test(message_hook=...)` and assert on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from assistant.episode import Episode
from sleep.report import SleepReport


@dataclass
class ResponseStarted(Message, bubble=False):
    """The user sent `prompt`; a reply is on its way."""

    prompt: str
    session_id: str


@dataclass
class ResponseChunk(Message, bubble=False):
    """The next piece of the reply being streamed."""

    text: str


@dataclass
class ResponseComplete(Message, bubble=False):
    """The reply finished. `episode` is the memory sealed into the vault, None when nothing was kept."""

    reply: str
    episode: Episode | None
    incognito: bool = False


@dataclass
class ResponseFailed(Message, bubble=False):
    """The reply failed; `prompt` goes back into the input so it can be sent again."""

    prompt: str
    error: str


@dataclass
class ModelReady(Message, bubble=False):
    """The serving model is loaded and answers without delay now."""

    generation: str
    seconds: float


@dataclass
class ModelFailed(Message, bubble=False):
    """The serving model could not be loaded; chat is off until this is fixed."""

    error: str


@dataclass
class VaultReady(Message, bubble=False):
    """The vault is unlocked: conversations are remembered from now on."""


@dataclass
class VaultLocked(Message, bubble=False):
    """The vault could not be opened: it needs a passphrase (`creating`: a new one), or is missing."""

    error: str
    missing: bool = False
    creating: bool = False
    asked: bool = False
    """True when a typed passphrase was refused (`error` says why)."""


@dataclass
class FeedbackGiven(Message, bubble=False):
    """An episode's flags were changed by the user (thumbs up/down, remember)."""

    episode_id: str
    flags: list[str]
    importance: float


@dataclass
class CorrectionSaved(Message, bubble=False):
    """The user rewrote the last answer; sleep learns `correction` instead of the model's reply."""

    episode_id: str
    correction: str


@dataclass
class IncognitoChanged(Message, bubble=False):
    """Incognito was switched on (nothing is kept) or off."""

    on: bool


@dataclass
class SessionSwitched(Message, bubble=False):
    """The conversation shown is now `session_id` with `history` (empty for a new one).

    `episodes` are its kept exchanges, one per answer in `history`, when the vault could say:
    they carry earlier corrections and marks, and let the last answer be taught again.
    """

    session_id: str
    history: list[dict[str, str]] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)


@dataclass
class SessionsLoaded(Message, bubble=False):
    """The pending conversations in the vault, newest first."""

    sessions: list[Any]


@dataclass
class StatusUpdated(Message, bubble=False):
    """Fresh numbers for the status bar."""

    pending: int | None
    conditions: str | None


@dataclass
class SleepStage(Message, bubble=False):
    """The running sleep cycle entered stage `name`."""

    name: str


@dataclass
class SleepStep(Message, bubble=False):
    """The running sleep cycle finished training step `i` of `total`."""

    i: int
    total: int
    loss: float | None


@dataclass
class SleepFinished(Message, bubble=False):
    """The sleep cycle ended: `report` on success, `error` when it failed or could not start."""

    report: SleepReport | None
    error: str | None = None


@dataclass
class GenerationChanged(Message, bubble=False):
    """The serving generation was switched (rollback, use, or after a sleep)."""

    generation: str
