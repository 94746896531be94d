"""`nightcap status [--json]`: model generation and file, pending episodes, last sleep, conditions."""

from __future__ import annotations

import json
import sys
from typing import Any

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.errors import NightcapError


def last_report(app: Nightcap) -> dict[str, Any] | None:
    """The newest stored sleep report (no conversation content), if any."""
    reports = sorted(app.home.reports.glob("sleep-*.json"))
    if not reports:
        return None
    try:
        return json.loads(reports[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    report = last_report(app)
    out["last_sleep"] = (
        {k: report.get(k) for k in ("finished", "outcome", "new_generation", "episodes")} if report else None
    )
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
