"""`nightcap ask [--session S] [--no-log] [--json] MESSAGE`: one turn, the reply on stdout.

The reply streams when stdout is a terminal and prints whole when piped. The exchange is sealed
into the vault unless `--no-log`; `--session S` continues conversation S from the vault.
"""

from __future__ import annotations

import sys

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json


def main(argv: list[str]) -> int:
    p = parser("ask", "Send one message and print the reply.")
    p.add_argument("message", nargs="+", help="the message (quote it, or pass several words)")
    p.add_argument("--session", "-s", help="continue (or start) the named conversation")
    p.add_argument("--no-log", action="store_true", help="do not keep this exchange as a memory")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of plain text")
    args = p.parse_args(argv)

    app = Nightcap.load()
    log = not args.no_log
    if log or args.session:
        app.vault()  # unlock first: a wrong passphrase fails before any model work
    session = app.session(app.runtime(), args.session, log=log)
    stream = sys.stdout.isatty() and not args.json
    on_token = (lambda piece: (sys.stdout.write(piece), sys.stdout.flush())) if stream else None
    turn = session.turn(" ".join(args.message), on_token, log=log)
    if args.json:
        print_json(
            {
                "reply": turn.reply,
                "session": session.id,
                "episode": turn.episode.id if turn.logged else None,
                "logged": turn.logged,
                "generation": turn.episode.generation,
                "flags": turn.episode.flags,
            }
        )
    elif stream:
        sys.stdout.write("\n")
    else:
        print(turn.reply)
    return 0
