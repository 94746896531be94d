"""`nightcap status [--json]`: model generation and file, pending episodes, last sleep, conditions."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.errors import NightcapError

if TYPE_CHECKING:
    from sleep.report import SleepReport


def last_report(app: Nightcap) -> SleepReport | None:
    """The newest stored sleep report (no conversation content), if any."""
    from sleep.report import newest_report

    return newest_report(app.home.reports)


def last_sleep(report: SleepReport | None) -> dict[str, Any] | None:
    """What `status` shows of the last sleep."""
    if report is None:
        return None
    return {
        "finished": report.finished,
        "outcome": report.outcome,
        "new_generation": report.new_generation,
        "episodes": report.episodes,
    }


def gather(app: Nightcap) -> dict[str, Any]:
    gen = app.store.current()
    m = gen.manifest
    out: dict[str, Any] = {
        "home": str(app.home.root),
        "generation": gen.name,
        "model_path": str(gen.gguf),
        "arch": gen.arch,
        "file_type": m.get("file_type_name", m.get("file_type")),
        "can_sleep": gen.can_sleep,
        "source": m.get("source"),
    }
    try:
        out["pending_episodes"] = len(app.vault().pending())
    except NightcapError as err:
        out["pending_episodes"] = None
        out["vault"] = str(err)
    out["last_sleep"] = last_sleep(last_report(app))
    try:
        from sleep.conditions import check_conditions  # optional until the daemon lands

        out["conditions"] = check_conditions(app.config, activity=app.home.api_activity).to_dict()
    except ImportError:
        out["conditions"] = None
    return out


def main(argv: list[str]) -> int:
    p = parser("status", "Show the model, pending memories, the last sleep and sleep conditions.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    info = gather(Nightcap.load())
    if args.json:
        print_json(info)
        return 0
    w = sys.stdout.write
    w(f"model       {info['generation']}  {info['arch']} {info['file_type']}  {info['model_path']}\n")
    if not info["can_sleep"]:
        w("            this architecture can chat but cannot sleep\n")
    pending = info["pending_episodes"]
    w(f"pending     {pending if pending is not None else 'unknown (' + info.get('vault', '') + ')'} episodes\n")
    last = info["last_sleep"]
    w(f"last sleep  {'never' if not last else str(last.get('finished')) + ' ' + str(last.get('outcome'))}\n")
    cond = info["conditions"]
    if cond:
        w(f"conditions  {cond.get('summary', '')}\n")
    w(f"home        {info['home']}\n")
    return 0
