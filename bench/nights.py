"""`nightcap bench nights --nights 30 --dir D`: what a month of nights does to one home.

Each night teaches `--per-night` new items (about 10) through real sessions, then runs the real
sleep cycle with default settings, then scores the model it leaves serving: multiple-choice and
generation recall of every item told so far (a fixed sample of `--score-probes` probes, seeded)
and of the first night's items, general multiple choice, perplexity on held-out text, and the
night's seconds, peak memory and the home's size on disk. A table row per night, a terminal
chart of recall against nights, and one JSON line.

Items come from the development set in order, secrets left out (this measures recall over
time, not leakage); an item's update is told the night after the item. After the set is used
up, it comes again with fresh values: every answer that one of its probes asks for and that its
messages contain is swapped for one of that probe's distractors, the same swap everywhere in
the item (messages, update, questions), and only those probes are kept (an implied answer such
as a country would no longer follow).

Each night runs as `nightcap sleep --now --json` in a process of its own, as the daemon's night
would start in a process that has only chatted: its peak memory is the night's, not that of the
models the bench scored in its own process before it (they held 1.0-1.5 GB when nights ran in
the bench's process).

Thirty nights take hours: all state lives in `--dir` (the home and `state.json`); a rerun with
the same directory continues after the last finished night. A night killed midway is taught
once: a rerun finds its episodes pending and sleeps on them (resuming from a checkpoint where
the cycle left one). A night that finished before its scoring was cut is recorded as slept and
is scored, not slept again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from assistant.commands._common import parser, print_json
from assistant.errors import UsageError
from bench import SET_HELP, data_path, sleep_settings
from bench import evalset as E
from sleep import probes as P

STATE = "state.json"


def with_values(item: E.Item, cycle: int) -> E.Item | None:
    """`item` told again with fresh values (see the module docstring); cycle 0 is the item as it
    is. None when no probe's answer is in its messages."""
    if cycle == 0:
        return item
    text = " ".join(item.teach + item.update)
    swap: dict[str, str] = {}
    kept = []
    for p in item.probes:
        if p.answer in text and p.distractors:
            swap.setdefault(p.answer, p.distractors[(cycle - 1) % len(p.distractors)])
            kept.append(p)
    if not kept:
        return None
    pattern = re.compile("|".join(re.escape(a) for a in sorted(swap, key=len, reverse=True)))

    def fresh(s: str) -> str:
        return pattern.sub(lambda m: swap[m.group()], s)

    item_id = f"{item.id}~{cycle}"
    probes = tuple(
        dataclasses.replace(
            p,
            item=item_id,
            question=fresh(p.question),
            answer=swap[p.answer],
            distractors=tuple(p.answer if d == swap[p.answer] else d for d in p.distractors),
        )
        for p in kept
    )
    return dataclasses.replace(
        item, id=item_id, teach=tuple(map(fresh, item.teach)), update=tuple(map(fresh, item.update)), probes=probes
    )


def schedule(all_items: Sequence[E.Item], nights: int, per_night: int) -> list[list[E.Item]]:
    """The items first told on each night: the set in order, then again with fresh values."""
    base = [it for it in all_items if it.category != E.SECRET_KIND]
    out: list[list[E.Item]] = []
    stream: list[E.Item] = []
    cycle = 0
    while len(out) < nights:
        while len(stream) < per_night:
            stream += [v for it in base if (v := with_values(it, cycle)) is not None]
            cycle += 1
        out.append(stream[:per_night])
        stream = stream[per_night:]
    return out


def conversations(plan: Sequence[Sequence[E.Item]], night: int) -> list[tuple[str, ...]]:
    """What the user says on day `night` (1-based): that night's items, and the updates of the
    items told the night before."""
    told = [it.teach for it in plan[night - 1]]
    updates = [it.update for it in plan[night - 2] if it.update] if night > 1 else []
    return told + updates


def home_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file() and not f.is_symlink())


def sample(probes: Sequence[E.EvalProbe], n: int) -> list[E.EvalProbe]:
    """`n` of `probes`, chosen by a hash of each probe: as nights add probes, one already in the
    sample stays in it unless a new one ranks before it, so nights are scored on much the same
    questions."""

    def rank(p: E.EvalProbe) -> bytes:
        return hashlib.sha256(f"{p.item}\n{p.question}".encode("utf-8")).digest()

    return sorted(probes, key=rank)[:n]


def load_state(d: Path) -> dict[str, Any]:
    path = d / STATE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"rows": [], "taught": 0}


def save_state(d: Path, state: dict[str, Any]) -> None:
    from assistant.fsutil import atomic_write_json

    atomic_write_json(d / STATE, state)


def sleep_in_child(app: Any) -> Any:
    """One night on `app`'s home in a process of its own, as the daemon runs it; its stored report."""
    from bench.consolidation import night_apart

    return night_apart(app)


def chart(rows: Sequence[dict[str, Any]], key: str, width: int = 40) -> list[str]:
    """One bar per night of `key` (0-1)."""
    return [f"{r['night']:>3} {'#' * round(r[key] * width):<{width}} {r[key]:.2f}" for r in rows]


def run(
    d: Path,
    model: Path | None,
    nights: int,
    per_night: int,
    n_score: int,
    general: list[P.Probe],
    text: str,
    log: Callable[[str], None],
    night_fn: Callable[[Any], Any] | None = None,
    score_fn: Callable[..., Any] | None = None,
    settings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Continue the month in `d` up to `nights`; returns the state. `night_fn(app)` runs one
    sleep (default: `sleep_in_child`), `score_fn` scores a model (default:
    `bench.consolidation.score`): seams for the bench's own tests. `settings` (sleep settings as
    TOML values) go into the home's config when it is made, and must be the same on a rerun."""
    from bench import consolidation as BC

    d.mkdir(parents=True, exist_ok=True)
    state = load_state(d)
    home = d / "home"
    plan = schedule(E.items(P.load_jsonl(Path(state.get("facts") or data_path("facts.jsonl")))), nights, per_night)
    from assistant.app import Nightcap

    settings = dict(settings or {})
    if not home.exists():
        if model is None:
            model = Nightcap.load().store.current().gguf
        BC.make_home(home, model, sleep=settings)
        state["model"], state["settings"] = str(model), settings
    elif settings and settings != state.get("settings", {}):
        raise UsageError(f"the home in {d} was made with sleep settings {state.get('settings', {})}; use another --dir")
    app = Nightcap.load(home)
    app.vault(passphrase=BC.BENCH_PASSPHRASE)
    night_fn = night_fn or sleep_in_child
    score = score_fn or BC.score
    base_general = state.get("base_general")
    if base_general is None:
        _, base_general, base_ppl, _ = score(app.store.current().gguf, [], general, text, app.config.chat.system_prompt)
        state["base_general"], state["base_ppl"] = base_general, base_ppl
        save_state(d, state)
    for night in range(len(state["rows"]) + 1, nights + 1):
        if state["taught"] < night:
            BC.teach(app, conversations(plan, night))
            state["taught"] = night
            save_state(d, state)
        slept = state.get("slept") or {}
        if slept.get("night") != night:
            t0 = time.perf_counter()
            report = night_fn(app)
            slept = {
                "night": night,
                "outcome": report.outcome,
                "seconds": round(time.perf_counter() - t0, 1),
                "steps": report.steps,
                "peak_rss_mb": report.peak_rss_mb,
            }
            state["slept"] = slept
            save_state(d, state)
        told = [it for n in plan[:night] for it in n]
        probes = E.probes_of(told)
        first = E.probes_of(plan[0])
        summary, general_mc, ppl, firsts = score(
            app.store.current().gguf, sample(probes, n_score), general, text, app.config.chat.system_prompt, first
        )
        all_mc, all_gen = (summary["all"]["mc"], summary["all"]["gen"])
        f = firsts or summary
        row = {
            "night": night,
            "outcome": slept["outcome"],
            "seconds": slept["seconds"],
            "steps": slept["steps"],
            "facts": len(told),
            "mc": all_mc[0] / max(1, all_mc[1]),
            "gen": all_gen[0] / max(1, all_gen[1]),
            "night1_mc": f["all"]["mc"][0] / max(1, f["all"]["mc"][1]),
            "night1_gen": f["all"]["gen"][0] / max(1, f["all"]["gen"][1]),
            "general_mc": general_mc,
            "ppl": ppl,
            "peak_rss_mb": slept["peak_rss_mb"],
            "home_mb": round(home_bytes(home) / 2**20, 1),
            "models_mb": round(home_bytes(app.home.models) / 2**20, 1),
            "scored": all_mc[1],
        }
        state["rows"].append(row)
        save_state(d, state)
        log(
            f"night {night}: {row['outcome']} in {row['seconds']:.0f}s, {row['facts']} facts, MC {row['mc']:.2f} "
            f"gen {row['gen']:.2f}, night-1 MC {row['night1_mc']:.2f}, general {general_mc:.3f}, ppl {ppl:.2f}, "
            f"peak {row['peak_rss_mb']:.0f} MB, home {row['home_mb']:.0f} MB"
        )
    return state


def print_tables(state: dict[str, Any]) -> None:
    rows = state["rows"]
    if state.get("settings"):
        print("sleep settings: " + ", ".join(f"{k} = {v}" for k, v in state["settings"].items()))
    print(
        f"{'night':>5} {'facts':>5} {'MC':>5} {'gen':>5} {'n1 MC':>6} {'n1 gen':>6} {'general':>7} {'ppl':>7} "
        f"{'s':>6} {'peak MB':>7} {'home MB':>7}  outcome"
    )
    for r in rows:
        print(
            f"{r['night']:>5} {r['facts']:>5} {r['mc']:>5.2f} {r['gen']:>5.2f} {r['night1_mc']:>6.2f} "
            f"{r['night1_gen']:>6.2f} {r['general_mc']:>7.3f} {r['ppl']:>7.2f} {r['seconds']:>6.0f} "
            f"{r['peak_rss_mb']:>7.0f} {r['home_mb']:>7.0f}  {r['outcome']}"
        )
    if rows:
        print("\nrecall of every fact told so far (MC), by night:")
        print("\n".join(chart(rows, "mc")))
        print("recall of the first night's facts (MC), by night:")
        print("\n".join(chart(rows, "night1_mc")))
        last = rows[-1]
        base_g, base_p = state["base_general"], state["base_ppl"]
        second = rows[1]["seconds"] if len(rows) > 1 else None
        print(
            f"\nafter night {last['night']}: night-1 MC {last['night1_mc']:.2f} (target >= 0.85), all MC "
            f"{last['mc']:.2f} (>= 0.85), general {last['general_mc'] / base_g:.1%} of the base model's (>= 97%), "
            f"perplexity {last['ppl'] / base_p - 1:+.1%} (<= +5%)"
            + (f", night time {last['seconds'] / second:.2f}x night 2's (<= 1.2x)" if second else "")
        )
        if "models_mb" in rows[0]:
            first, rest = rows[0], rows[-1]
            grew = (rest["home_mb"] - rest["models_mb"]) - (first["home_mb"] - first["models_mb"])
            print(
                f"home: {rest['home_mb']:.0f} MB, of which the kept generations {rest['models_mb']:.0f} MB; "
                f"the rest grew {grew:+.1f} MB since night {first['night']} (target: the home grows by no more "
                "than the kept generations)"
            )


def main(argv: list[str]) -> int:
    p = parser("bench nights", "A month of nights on one home: recall, retention, time, memory and disk per night.")
    p.add_argument("--dir", type=Path, required=True, help="where the home and the state live; a rerun continues")
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--per-night", type=int, default=10, help="new items told each day")
    p.add_argument("--score-probes", type=int, default=120, help="probes scored each night (a seeded sample)")
    p.add_argument("--model", type=Path, help="GGUF to start from (default: the current generation)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=SET_HELP,
    )
    p.add_argument("--json", action="store_true", help="only the JSON line")
    opts = p.parse_args(argv)
    if opts.nights < 1 or opts.per_night < 1:
        p.error("--nights and --per-night must be at least 1")
    try:
        settings = sleep_settings(opts.set)
    except ValueError as e:
        p.error(str(e))
    general = P.general_probes(P.load_jsonl(data_path("general.jsonl")))
    text = data_path("heldout.txt").read_text(encoding="utf-8")
    state = run(
        opts.dir,
        opts.model,
        opts.nights,
        opts.per_night,
        opts.score_probes,
        general,
        text,
        (lambda m: None) if opts.json else (lambda m: print(m, flush=True)),
        settings=settings,
    )
    if not opts.json:
        print_tables(state)
    print_json(
        {
            "bench": "nights",
            "dir": str(opts.dir),
            "base_general": state["base_general"],
            "base_ppl": state["base_ppl"],
            "settings": state.get("settings", {}),
            "rows": state["rows"],
        }
    )
    return 0
