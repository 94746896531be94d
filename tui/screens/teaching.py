"""Teaching Nightcap from the chat screen: correct, thumbs up/down, remember, incognito.

These are the awake phase's signals. Each one rewrites the last answer's episode in the vault
(`vault.annotate`) so the next sleep weighs it: a correction replaces the model's reply as the
answer to learn and marks the episode important; thumbs up/down and "remember" adjust its
importance. Incognito keeps nothing at all, so there is nothing to teach from while it is on.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from textual import work
from textual.message import Message

from assistant.episode import (
    FLAG_CORRECTION,
    FLAG_REMEMBER,
    FLAG_THUMBS_DOWN,
    FLAG_THUMBS_UP,
    importance_from_flags,
)
from assistant.errors import NightcapError
from tui import messages as m
from tui.host import nightcap_app
from tui.screens.correct import CorrectionScreen
from tui.widgets.conversation import Conversation
from tui.widgets.response import Response
from tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from textual.screen import Screen

    _Base = Screen[None]
else:
    _Base = object


class TeachingMixin(_Base):
    """Actions on the last answer. Mixed into ChatScreen, which provides `session`, `busy`,
    `incognito` and `status_bar`."""

    incognito: bool
    busy: bool
    session: Any

    if TYPE_CHECKING:

        @property
        def status_bar(self) -> StatusBar: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._notes: deque[tuple[str, dict[str, Any], list[Message]]] = deque()
        self._notes_lock = threading.Lock()

    def _teachable(self) -> Response | None:
        """The last answer, if it was kept as an episode; otherwise say why not and return None."""
        if self.busy:
            self.notify("Wait for the reply to finish first.", severity="warning", markup=False)
            return None
        response = self.query_one(Conversation).last_response()
        if response is None:
            self.notify("There is no answer to teach from yet.", severity="warning", markup=False)
        elif response.incognito:
            self.notify("That answer was given in incognito and was not kept.", severity="warning", markup=False)
        elif response.episode is None:
            self.notify("That answer's memory was not found, so it cannot be marked.", severity="warning", markup=False)
        elif nightcap_app(self).vault is None:
            self.notify("Memory is off, so nothing can be marked.", severity="warning", markup=False)
        else:
            return response
        return None

    def _toggle(self, flag: str, opposite: str | None = None) -> None:
        response = self._teachable()
        if response is None or response.episode is None:
            return
        episode = response.episode
        old = episode.flags
        flags = [f for f in old if f != opposite]
        flags = [f for f in flags if f != flag] if flag in flags else flags + [flag]
        # Shown at once, so a quick second key press starts from this state, not the stored one.
        episode.flags, episode.importance = flags, importance_from_flags(flags)
        response.show_marks()
        self.save_flags(episode.id, flags, [f for f in old if f not in flags])

    def action_thumbs_up(self) -> None:
        self._toggle(FLAG_THUMBS_UP, FLAG_THUMBS_DOWN)

    def action_thumbs_down(self) -> None:
        self._toggle(FLAG_THUMBS_DOWN, FLAG_THUMBS_UP)

    def action_remember(self) -> None:
        self._toggle(FLAG_REMEMBER)

    def action_correct(self) -> None:
        response = self._teachable()
        if response is None or response.episode is None:
            return
        episode = response.episode
        current = episode.correction if episode.correction is not None else episode.reply_text

        def corrected(text: str | None) -> None:
            if text is not None and text.strip() and text.strip() != current.strip():
                self.save_correction(episode.id, text.strip(), list(episode.flags))

        self.app.push_screen(CorrectionScreen(current), corrected)

    def save_flags(self, episode_id: str, flags: list[str], removed: list[str]) -> None:
        importance = importance_from_flags(flags)
        changes = {"flags": flags, "remove_flags": removed, "importance": importance}
        self._annotate(episode_id, changes, [m.FeedbackGiven(episode_id, flags, importance)])

    def save_correction(self, episode_id: str, correction: str, flags: list[str]) -> None:
        flags = flags if FLAG_CORRECTION in flags else flags + [FLAG_CORRECTION]
        importance = importance_from_flags(flags)
        changes = {"correction": correction, "flags": flags, "importance": importance}
        self._annotate(
            episode_id,
            changes,
            [m.FeedbackGiven(episode_id, flags, importance), m.CorrectionSaved(episode_id, correction)],
        )

    def _annotate(self, episode_id: str, changes: dict[str, Any], then: list[Message]) -> None:
        """Queue one annotation; they reach the vault in the order they were made."""
        self._notes.append((episode_id, changes, then))
        self._write_notes()

    @work(thread=True, group="vault")
    def _write_notes(self) -> None:
        # Workers run in any order; the lock and the queue keep the annotations in key-press order.
        with self._notes_lock:
            while self._notes:
                episode_id, changes, then = self._notes.popleft()
                vault = nightcap_app(self).vault
                assert vault is not None  # notes are queued only once the vault is open (`_teachable`)
                try:
                    vault.annotate(episode_id, **changes)
                except NightcapError as err:
                    self.app.call_from_thread(self.notify, str(err), title="Not saved", severity="error", markup=False)
                    continue
                for message in then:
                    self.post_message(message)

    def _response_for(self, episode_id: str) -> Response | None:
        for response in self.query(Response):
            if response.episode is not None and response.episode.id == episode_id:
                return response
        return None

    def on_feedback_given(self, message: m.FeedbackGiven) -> None:
        response = self._response_for(message.episode_id)
        if response is not None and response.episode is not None:
            response.episode.flags = list(message.flags)
            response.episode.importance = message.importance
            response.show_marks()

    def on_correction_saved(self, message: m.CorrectionSaved) -> None:
        response = self._response_for(message.episode_id)
        if response is None or response.episode is None:
            return
        response.episode.correction = message.correction
        response.update(message.correction)
        response.show_marks()
        # The conversation goes on from the corrected answer, as if Nightcap had said it.
        history = self.session.history
        if history and history[-1].get("role") == "assistant" and response is self.query(Response).last():
            history[-1] = {"role": "assistant", "content": message.correction}
        self.notify("Correction saved; Nightcap learns it during the next sleep.", title="Corrected")

    def action_toggle_incognito(self) -> None:
        self.set_incognito(not self.incognito)
        if self.incognito:
            self.notify("Incognito: nothing from now on is kept or learned.", title="Incognito on")
        else:
            self.notify("Incognito off: exchanges are kept as memories again.", title="Incognito off")

    def set_incognito(self, on: bool) -> None:
        self.incognito = on
        self.set_class(on, "-incognito")
        self.status_bar.incognito = on
        prompt = self.query_one("#prompt")
        prompt.border_title = "INCOGNITO: nothing is kept" if on else None
        self.post_message(m.IncognitoChanged(on))
