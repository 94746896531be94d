"""`nightcap serve [--host H] [--port P] [--allow-remote] [--print-token]`: the OpenAI-compatible API.

Listens on 127.0.0.1:8765 by default (`[serve]` in config.toml). Every request needs the bearer
token kept in the home (`--print-token` prints it). The vault is unlocked and the model loaded
before the first request is accepted, so a wrong passphrase or a missing model fails here, at
once, on one line.
"""

from __future__ import annotations

import sys

from assistant.app import Nightcap
from assistant.commands._common import parser
from assistant.errors import ServeError


def main(argv: list[str]) -> int:
    p = parser("serve", "Serve the assistant over the OpenAI chat-completions API (localhost only by default).")
    p.add_argument("--host", help="address to listen on (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (default: serve.port, 8765)")
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow an address other than loopback: other machines can then reach the API",
    )
    p.add_argument("--print-token", action="store_true", help="print the API token (creating it) and exit")
    args = p.parse_args(argv)

    from assistant.server import ApiServer, api_token, is_loopback, token_file

    app = Nightcap.load()
    token = api_token(app.home)
    if args.print_token:
        print(token)
        return 0
    host = args.host or app.config.serve.host
    port = app.config.serve.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port} is not a TCP port (0-65535)")
    if not is_loopback(host):
        if not args.allow_remote:
            raise ServeError(
                f"{host} is reachable from other machines; pass --allow-remote to serve there anyway, "
                "or leave out --host for 127.0.0.1"
            )
        print(
            f"nightcap serve: warning: listening on {host}: anyone who can reach it and has the token "
            "talks to your assistant and adds to its memories",
            file=sys.stderr,
        )
    app.vault()  # unlock first: a wrong passphrase fails before anything listens
    server = ApiServer(app, host, port, token)
    with server.api.state.assistant.models.serving() as runtime:  # load the model before accepting requests
        generation = runtime.generation
    shown = f"[{host}]" if ":" in host else host
    print(
        f"nightcap serve: {generation} at http://{shown}:{server.port}/v1 "
        f"(token: `nightcap serve --print-token`, kept in {token_file(app.home)}); Ctrl-C stops",
        flush=True,
    )
    server.run()
    return 0
