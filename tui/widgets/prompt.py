"""A message the user sent, as shown in the conversation."""

from __future__ import annotations

from textual.widgets import Markdown


class Prompt(Markdown):
    """What the user typed."""

    BORDER_TITLE = "You"
