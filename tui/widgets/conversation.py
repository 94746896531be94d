"""The scrolling conversation: prompts and replies, anchored to the newest line."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widgets import Static

from assistant.episode import Episode

from tui.widgets.prompt import Prompt
from tui.widgets.response import Response

EMPTY = (
    "Say something. Nightcap keeps each exchange as an encrypted memory and learns from it "
    "while it sleeps; switch on incognito (ctrl+o) to keep nothing."
)


class Conversation(VerticalScroll, can_focus=False):
    """The messages of the current conversation."""

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static(EMPTY, id="empty")

    def on_mount(self) -> None:
        # Anchored: new text keeps the view at the bottom until the user scrolls up.
        self.anchor()

    async def add_prompt(self, text: str) -> Prompt:
        self.query("#empty").remove()
        prompt = Prompt(text)
        await self.mount(prompt)
        return prompt

    async def add_response(self, text: str = "", *, waiting: bool = False) -> Response:
        response = Response(text)
        await self.mount(response)
        response.loading = waiting
        self.anchor()
        return response

    async def show_history(self, messages: list[dict[str, str]], episodes: list[Episode] | None = None) -> None:
        """Replace what is shown with `messages` (user/assistant turns from the vault).

        `episodes`, one per assistant message when given, are attached to the replies so their
        marks show and the last one can be taught again.
        """
        await self.remove_children()
        if not messages:
            await self.mount(Static(EMPTY, id="empty"))
            return
        kept = iter(episodes or [])
        widgets: list[Prompt | Response] = []
        for msg in messages:
            if msg.get("role") == "user":
                widgets.append(Prompt(msg["content"]))
            elif msg.get("role") == "assistant":
                widgets.append(Response(msg.get("content", ""), episode=next(kept, None)))
        await self.mount_all(widgets)
        for response in self.query(Response):
            response.show_marks()
        self.anchor()

    def last_response(self) -> Response | None:
        responses = self.query(Response)
        return responses.last() if responses else None
