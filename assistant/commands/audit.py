"""`nightcap audit [--before DAY] [--json]`: the privacy audit; exit 0 only if no check fails.

Prints a table, one row per check: its name, pass / warn / fail, and a one-line reason.
Warnings state what cannot be proven from inside the machine and never fail the audit. See
assistant/audit/__init__.py for what each check does. `--before 2025-01-31` adds to the
`weights` check which generation to serve for a model that knows nothing said from that day on.

`--json` prints one object on the last line of stdout (format 1; fields are only ever added)::

    {
      "format": 1,                   # version of this layout
      "home": "/path/to/home",
      "started": "2025-01-02T03:04:05+0000",
      "seconds": 0.42,               # how long the audit took
      "passed": true,                # no check failed (warnings allowed); same as exit code 0
      "counts": {"pass": 10, "warn": 4, "fail": 0},
      "checks": [                    # always these names, in this order:
        {"name": "shredded-epochs", "status": "pass", "reason": "...", "details": {...}},
        ...                          # ledger-chain, ledger-provenance, plaintext-scan,
      ]                              # training-intermediates, master-key, kdf, key-generation,
    }                                # permissions, snapshots, swap, disk-encryption, backups, weights

`status` is "pass", "warn" or "fail"; `reason` is one line; `details` holds the evidence as
counts, ids and paths (never conversation text), with keys particular to each check.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from assistant.app import Nightcap
from assistant.audit import FAIL, PASS, AuditResult, run_audit
from assistant.audit.weights import parse_day
from assistant.commands._common import parser, print_json
from assistant.errors import UsageError

_STYLE = {PASS: "green", "warn": "yellow", FAIL: "bold red"}


def render(result: AuditResult, console: Console) -> None:
    table = Table(title=f"Nightcap privacy audit of {result.home}", title_justify="left", expand=False)
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("reason")
    for check in result.checks:
        table.add_row(check.name, f"[{_STYLE[check.status]}]{check.status}[/]", check.reason)
    console.print(table)
    counts = result.counts()
    verdict = "[green]audit passed[/]" if result.passed else "[bold red]audit FAILED[/]"
    console.print(
        f"{verdict}: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail ({result.seconds:.1f} s)"
    )


def main(argv: list[str]) -> int:
    p = parser("audit", "Check that consolidated conversations left no readable trace, and say what cannot be proven.")
    p.add_argument(
        "--before", metavar="DAY", help="also say which model to serve to forget everything from DAY (YYYY-MM-DD) on"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    try:
        before = parse_day(args.before) if args.before else None
    except ValueError:
        raise UsageError(f"--before {args.before!r} is not a day; write it as YYYY-MM-DD") from None
    result = run_audit(Nightcap.load(), before=before)
    if args.json:
        print_json(result.to_dict())
    else:
        render(result, Console(highlight=False, soft_wrap=False))
    return 0 if result.passed else 1
