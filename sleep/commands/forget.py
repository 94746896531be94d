"""`nightcap forget "TEXT" [--json]`: unlearn a statement a night already consolidated.

For a memory still pending, `nightcap memories forget ID` destroys its log and that is the whole
story. Once a night has learned it, the statement is in the weights: this runs a short
unlearning pass on the serving generation (`sleep.forget`) and serves the result, keeping the
previous generation for rollback. It takes a few minutes on a laptop CPU, with progress on
stderr. The ledger records that a forget happened, never what was forgotten.
"""

from __future__ import annotations

import sys
from typing import Any

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.errors import UsageError


def _summary(report: dict[str, Any]) -> str:
    if report["outcome"] != "promoted":
        return f"{report['outcome']}: {report.get('error') or ''}".strip()
    measured = report.get("forgotten") or {}
    before, after = measured.get("answer_logprob_before"), measured.get("answer_logprob_after")
    change = (
        f"; the statement's answers went from {before:.2f} to {after:.2f} mean log-probability on the served model"
        if before is not None and after is not None
        else ""
    )
    return (
        f"unlearned into {report['new_generation']} (previous: {report['old_generation']}, kept for rollback)"
        f"{change}. Unlearning is approximate: older generations still hold it until pruned."
    )


def main(argv: list[str]) -> int:
    p = parser("forget", "Unlearn a statement that a night already consolidated into the model.")
    p.add_argument("text", help='the statement as you told it, e.g. "my locker code is 4417"')
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)

    from sleep.commands.sleep import RichProgress, _Quiet
    from sleep.forget import forget

    if not args.text.strip():
        raise UsageError('forget needs the statement to forget, e.g. nightcap forget "my locker code is 4417"')
    app = Nightcap.load()
    app.vault()  # unlock first: a wrong passphrase fails before any work
    with RichProgress() if sys.stderr.isatty() and not args.json else _Quiet() as progress:
        report = forget(app, args.text, progress=progress).to_dict()
    if args.json:
        print_json(report)
    else:
        print(_summary(report))
    return 0 if report["outcome"] == "promoted" else 1
