"""`nightcap bench compare BASE OTHER`: two runs of `bench consolidation` probe by probe.

Each run's `--replies DIR` holds one JSON line per probe and sleeping row and seed
(`ROW-SEED.jsonl`: the question, the greedy reply, and whether multiple choice and generation got
it right). Two rows scored on the same probes, seeds and data differ where one is right and the
other is not; the rest says nothing about which is better. So the comparison counts, per measure,
the probes only OTHER got right (wins) and those only BASE got right (losses), and gives the
exact two-sided sign test of those discordant pairs (McNemar's test): a difference of a few
probes on a hundred is read as what it is. Pairs are matched by seed, item and question; secret
probes are leakage, never recall, and are left out. Also by split (tune/check: a change that helps
one half only is noise or overfitting), by probe kind, and by the night the item was told on
(`bench consolidation --nights 3` writes it): a change that holds earlier nights' items may take
it from tonight's.

Run: `nightcap bench compare BASE_DIR OTHER_DIR [--row nightcap] [--json]`.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from assistant.commands._common import parser, print_json
from assistant.errors import UsageError
from bench.evalset import split_of

MEASURES = ("mc", "gen")

Key = tuple[str, str, str]
"""(seed, item, question) of one probe."""


def load(directory: Path, row: str) -> dict[Key, dict[str, Any]]:
    """The non-secret probes of `row` in a replies directory, by (seed, item, question).
    Raises UsageError naming the file when a line is not a scored probe."""
    files = sorted(directory.glob(f"{row}-*.jsonl"))
    if not files:
        raise UsageError(
            f"{directory} holds no {row}-SEED.jsonl; pass a directory `bench consolidation --replies` wrote"
        )
    out: dict[Key, dict[str, Any]] = {}
    for path in files:
        seed = path.stem[len(row) + 1 :]
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                probe = json.loads(line)
                key = (seed, str(probe["item"]), str(probe["question"]))
                verdicts = {m: bool(probe[m]) for m in MEASURES}
            except (ValueError, KeyError, TypeError):
                raise UsageError(f"{path}:{n} is not a scored probe; rerun the bench that wrote it") from None
            if probe.get("kind") != "secret":
                out[key] = {"kind": str(probe.get("kind", "")), "night": probe.get("night"), **verdicts}
    return out


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided p of `wins` against `losses` discordant pairs under no difference."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(base: dict[Key, dict[str, Any]], other: dict[Key, dict[str, Any]], keys: list[Key]) -> dict[str, Any]:
    """Rates of both and the discordant pairs of each measure, over `keys`."""
    out: dict[str, Any] = {"n": len(keys)}
    for m in MEASURES:
        wins = sum(1 for k in keys if other[k][m] and not base[k][m])
        losses = sum(1 for k in keys if base[k][m] and not other[k][m])
        out[m] = {
            "base": round(sum(base[k][m] for k in keys) / len(keys), 4) if keys else 0.0,
            "other": round(sum(other[k][m] for k in keys) / len(keys), 4) if keys else 0.0,
            "wins": wins,
            "losses": losses,
            "p": round(sign_test(wins, losses), 4),
        }
    return out


def compare(base: dict[Key, dict[str, Any]], other: dict[Key, dict[str, Any]]) -> dict[str, Any]:
    """All, per seed, per split, per kind and per night the item was told on (where both runs
    wrote it: a later night's learning overwriting an earlier night's shows there); only the
    probes both runs scored."""
    keys = sorted(set(base) & set(other))
    if not keys:
        raise UsageError("the two runs share no probe: compare runs of the same items and seeds")
    groups: dict[str, dict[str, list[Key]]] = {"seed": defaultdict(list), "split": defaultdict(list)}
    groups["kind"], groups["night"] = defaultdict(list), defaultdict(list)
    for k in keys:
        groups["seed"][k[0]].append(k)
        groups["split"][split_of(k[1])].append(k)
        groups["kind"][base[k]["kind"]].append(k)
        if base[k]["night"] is not None and base[k]["night"] == other[k]["night"]:
            groups["night"][str(base[k]["night"])].append(k)
    return {
        "bench": "compare",
        "all": paired(base, other, keys),
        "only_base": len(set(base) - set(other)),
        "only_other": len(set(other) - set(base)),
        **{name: {g: paired(base, other, ks) for g, ks in sorted(by.items())} for name, by in groups.items()},
    }


def _line(label: str, fig: dict[str, Any]) -> str:
    cells = [
        f"{fig[m]['base']:.3f} -> {fig[m]['other']:.3f} +{fig[m]['wins']}/-{fig[m]['losses']} p {fig[m]['p']:.3f}"
        for m in MEASURES
    ]
    return (f"{label:<20} {fig['n']:>5}  " + "   ".join(f"{c:<32}" for c in cells)).rstrip()


def print_table(fig: dict[str, Any], base: Path, other: Path) -> None:
    print(f"base {base}, other {other}: paired probes (secret probes left out)")
    if fig["only_base"] or fig["only_other"]:
        print(f"left out, scored by one run only: {fig['only_base']} of base's, {fig['only_other']} of other's")
    print(f"{'':<20} {'n':>5}  {'MC: base -> other, wins/losses, exact p':<32}   gen: the same")
    print(_line("all", fig["all"]))
    for group in ("seed", "split", "kind", "night"):
        for name, sub in fig[group].items():
            print(_line(f"{group} {name}", sub))


def main(argv: list[str]) -> int:
    p = parser("bench compare", "Two runs of `bench consolidation --replies` compared probe by probe.")
    p.add_argument("base", type=Path, help="replies directory of the run to compare against")
    p.add_argument("other", type=Path, help="replies directory of the run compared")
    p.add_argument("--row", default="nightcap", help="the sleeping row to compare (default: nightcap)")
    p.add_argument("--json", action="store_true", help="only the JSON line")
    args = p.parse_args(argv)
    fig = compare(load(args.base, args.row), load(args.other, args.row))
    if not args.json:
        print_table(fig, args.base, args.other)
    print_json(fig)
    return 0
