"""`nightcap models [list|add PATH|use GEN|rollback] [--json]`: the model generations."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from assistant.app import Nightcap
from assistant.commands._common import Parser, parser, print_json
from models.store import Generation


def _row(gen: Generation, current: str | None) -> dict[str, object]:
    m = gen.manifest
    return {
        "name": gen.name,
        "current": gen.name == current,
        "arch": gen.arch,
        "file_type": m.get("file_type_name", m.get("file_type")),
        "can_sleep": gen.can_sleep,
        "parent": gen.parent,
        "created": m.get("created"),
        "source": m.get("source"),
        "sha256": m.get("sha256"),
        "epochs": m.get("epochs", []),
        "path": str(gen.gguf),
    }


def main(argv: list[str]) -> int:
    p = parser("models", "List, add, switch or roll back model generations.")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print one JSON object")
    sub = p.add_subparsers(dest="action")
    sub.add_parser("list", help="list generations (default)", parents=[common])
    add = sub.add_parser("add", help="add a GGUF file as a new generation and switch to it", parents=[common])
    add.add_argument("path", type=Path)
    add.add_argument("--no-use", action="store_true", help="add without switching to it")
    use = sub.add_parser("use", help="switch to generation GEN (e.g. gen-0002 or 2)", parents=[common])
    use.add_argument("gen")
    sub.add_parser("rollback", help="switch back to the current generation's parent", parents=[common])
    args = p.parse_args(argv)

    store = Nightcap.load().store
    action = args.action or "list"
    if action == "list":
        if store.current_name() is None:
            store.provision_default()
        cur = store.current_name()
        rows = [_row(g, cur) for g in store.list()]
        if args.json:
            print_json({"current": cur, "generations": rows})
            return 0
        for r in rows:
            mark = "*" if r["current"] else " "
            sleep = "" if r["can_sleep"] else "  (cannot sleep: unsupported architecture)"
            print(f"{mark} {r['name']}  {r['arch']:<7} {str(r['file_type']):<9} {r['created']}  {r['source']}{sleep}")
        return 0
    if action == "add":
        gen = store.add(args.path)
        if not args.no_use:
            store.use(gen.name)
        result = _row(gen, store.current_name())
        msg = f"added {gen.name} ({gen.arch}, {result['file_type']})" + ("" if args.no_use else "; now current")
        if not gen.can_sleep:
            msg += f"; note: {gen.arch} models can chat but cannot sleep"
    elif action == "use":
        gen = store.use(args.gen)
        result, msg = _row(gen, gen.name), f"now using {gen.name}"
    else:
        gen = store.rollback()
        result, msg = _row(gen, gen.name), f"rolled back to {gen.name}"
    switched = action != "add" or not args.no_use
    dropped = _drop_derived(Nightcap.load(), store.current()) if switched else []
    if args.json:
        print_json(dict(result, dropped_state=dropped))
    else:
        print(msg + (f"; dropped sealed state of the previous generation ({', '.join(dropped)})" if dropped else ""))
    return 0


def _drop_derived(app: Nightcap, serving: Generation) -> list[str]:
    """Sealed state learned for the generation that stopped serving (its weight master, its
    Fisher, a paused night's checkpoint) is destroyed with the switch (`assistant.vault.derived`)."""
    from assistant.errors import VaultError
    from assistant.vault import Vault
    from assistant.vault.derived import drop_stale

    if not Vault.exists(app.home):
        return []
    try:
        return drop_stale(app.vault(), serving.manifest.get("sha256"), switched=True)
    except VaultError as err:
        print(
            f"nightcap models: warning: the vault did not open ({err}), so the sealed state learned for the "
            "previous generation is still there; the next `nightcap sleep` destroys it",
            file=sys.stderr,
        )
        return []
