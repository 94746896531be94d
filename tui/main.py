"""`nightcap` / `nightcap chat [--session S] [--incognito] [--theme NAME]`: the chat TUI.

Start-up reaches the prompt before the model has loaded: llama.cpp loads it in a background
worker, and a message sent meanwhile waits for it.
"""

from __future__ import annotations

import io
import os
import sys

from assistant.commands._common import parser


def terminal_theme() -> str:
    """An ANSI theme, so the terminal's own palette shows through; light if the terminal says so.

    Many terminals export COLORFGBG="fg;bg"; a background of 7 or 15 is a light one.
    """
    background = os.environ.get("COLORFGBG", "").split(";")[-1]
    return "ansi-light" if background in ("7", "15") else "ansi-dark"


def main(argv: list[str]) -> int:
    p = parser("chat", "Chat with Nightcap in the terminal.")
    p.add_argument("--session", "-s", help="resume this pending conversation")
    p.add_argument("--incognito", action="store_true", help="start with incognito on: nothing is kept")
    p.add_argument("--theme", help="a Textual theme name, e.g. textual-dark (default: the terminal's colours)")
    args = p.parse_args(argv)

    from assistant.app import Nightcap
    from tui.app import make_app  # deferred: `nightcap --help` should not pay for Textual

    app = make_app(
        Nightcap.load(),
        session_id=args.session,
        incognito=args.incognito,
        theme=args.theme or terminal_theme(),
    )
    # The vault prompts with getpass when stdin is a terminal. Under the TUI that prompt would
    # fight Textual (which reads the terminal through sys.__stdin__) for the keyboard, so stdin
    # looks closed while the app runs and the passphrase is asked in the app's own dialog.
    stdin, sys.stdin = sys.stdin, io.StringIO()
    try:
        app.run()
    finally:
        sys.stdin = stdin
    return int(app.return_code or 0)
