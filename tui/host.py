"""The app that the TUI's screens and widgets run in, with its real type.

Textual types `node.app` as a plain `App`; the screens and widgets here always run inside a
`NightcapApp` and use what it owns (the vault, the model runtime, the `Nightcap` object).
`nightcap_app(node)` returns the same object typed as that class. tui.app is imported for type
checking only, because it imports the screens that call this (`textual.getters.app` would need
the class when each screen class is created, hence this function).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.message_pump import MessagePump

if TYPE_CHECKING:
    from tui.app import NightcapApp


def nightcap_app(node: MessagePump) -> NightcapApp:
    """The running app of `node` (a screen or widget of this package)."""
    return cast("NightcapApp", node.app)
