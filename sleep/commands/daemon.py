"""`nightcap daemon [run|install|uninstall|status] [--json]`: the overnight watcher and its service.

Bare `nightcap daemon` (or `run`) watches in the foreground until SIGTERM or Ctrl-C: it sleeps
when the machine is on power, idle and inside the window, and yields when the user is back.
`install` makes it a user service (systemd --user on Linux, a LaunchAgent on macOS) at the lowest
CPU and IO priority; `uninstall` removes it; `status` shows the service, whether a daemon runs,
the current conditions, the last sleep and the next one.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.errors import NightcapError
from sleep import service
from sleep.conditions import check_conditions
from sleep.daemon import Daemon, count_pending, lock_path, next_sleep
from sleep.daemon_lock import holder

ACTIONS = ("run", "install", "uninstall", "status")


def gather_status(app: Nightcap, now: datetime | None = None) -> dict[str, Any]:
    """Everything `status` shows, as one JSON-ready dict (no conversation content)."""
    from assistant.commands.status import last_report, last_sleep

    pid = holder(lock_path(app.home.root))
    out: dict[str, Any] = {"service": service.status().to_dict(), "running": pid is not None, "pid": pid or None}
    try:
        pending: int | None = count_pending(app)
    except (NightcapError, ImportError) as err:
        pending, out["pending_error"] = None, str(err)
    out["conditions"] = check_conditions(app.config, pending=pending, activity=app.home.api_activity).to_dict()
    out["last_sleep"] = last_sleep(last_report(app))
    out["next_sleep"] = next_sleep(app, now or datetime.now())
    return out


def start_api(app: Nightcap) -> Any:
    """The API of `nightcap serve` on a background thread of the daemon, at serve.host and
    serve.port (loopback only: a remote address is for `nightcap serve --allow-remote`)."""
    from assistant.errors import ServeError
    from assistant.server import ApiServer, is_loopback

    host = app.config.serve.host
    if not is_loopback(host):
        raise ServeError(
            f"the daemon serves the API on loopback only, not {host}; run `nightcap serve --allow-remote` for that"
        )
    app.vault()  # unlock before anything listens
    server = ApiServer(app, host, app.config.serve.port)
    server.start()
    return server


def _print_status(info: dict[str, Any]) -> None:
    w = sys.stdout.write
    svc = info["service"]
    if svc["kind"] == "none":
        w("service     unsupported here (no systemd or launchd); run `nightcap daemon` at login\n")
    elif svc["installed"]:
        state = {True: ", active", False: ", inactive", None: ""}[svc["active"]]
        w(f"service     installed{state} ({svc['kind']}: {svc['path']})\n")
    else:
        w("service     not installed (`nightcap daemon install`)\n")
    running = ("running" + (f" (pid {info['pid']})" if info["pid"] else "")) if info["running"] else "not running"
    w(f"daemon      {running}\n")
    w(f"conditions  {info['conditions']['summary']}\n")
    if info.get("pending_error"):
        w(f"            pending episodes unknown: {info['pending_error']}\n")
    last = info["last_sleep"]
    w(f"last sleep  {'never' if not last else str(last.get('finished')) + ' ' + str(last.get('outcome'))}\n")
    nxt = info["next_sleep"]
    w(f"next sleep  {nxt['at']} ({nxt['note']})\n")


def _print_result(action: str, res: service.ServiceResult) -> None:
    w = sys.stdout.write
    kind = "systemd user service" if res.kind == "systemd" else "LaunchAgent"
    if action == "install":
        w(f"wrote {res.path} ({kind}){', started' if res.active else ''}\n")
    elif res.changed:
        w(f"removed {res.path} ({kind})\n")
    else:
        w(f"not installed: {res.path} does not exist\n")
    for step in res.next_steps:
        w(f"next: {step}\n")
    for note in res.notes:
        w(f"note: {note}\n")


def main(argv: list[str]) -> int:
    p = parser("daemon", "The overnight watcher: sleep when on power and idle; manage its user service.")
    p.add_argument("action", nargs="?", default="run", choices=ACTIONS, help="what to do (default: run)")
    p.add_argument("--json", action="store_true", help="print one JSON object (install, uninstall, status)")
    p.add_argument(
        "--serve",
        action="store_true",
        help="run (or install a service that runs) the API of "
        "`nightcap serve` inside the daemon; serve.with_daemon in config.toml does the same",
    )
    args = p.parse_args(argv)
    if args.action == "run":
        app = Nightcap.load()
        serve = args.serve or app.config.serve.with_daemon
        return Daemon(app, api=(lambda: start_api(app)) if serve else None).run()
    if args.action == "status":
        info = gather_status(Nightcap.load())
        print_json(info) if args.json else _print_status(info)
        return 0
    res = service.install(serve=args.serve) if args.action == "install" else service.uninstall()
    print_json(res.to_dict()) if args.json else _print_result(args.action, res)
    return 0
