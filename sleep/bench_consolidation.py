"""`nightcap bench consolidation`: does sleep learn the day's facts without forgetting the rest?

For each row, in a fresh temporary home whose generation 0 is the model under test: the day is
simulated by sending every fact's `teach` messages through a real `Session` into the vault (the
path a user's chat takes), the real sleep cycle (`sleep.cycle.run_cycle`) runs, and the model
it leaves serving is scored in llama.cpp (`sleep.probes`):

    fact MC    answer vs distractors by mean log-probability after the chat-formatted question
    fact gen   the greedy reply to the question contains the answer
    general    multiple-choice accuracy on the general set (plain prompts)
    ppl        perplexity of a held-out general text

Rows: none (no sleep), naive (LoRA on the logged episodes: no replay, KL, EWC, dreams or
augmentations, health gate only), context (the facts in the system prompt: the retrieval upper
bound), nightcap (the configured cycle, its gates included), and one "-component" row per
ablated component (health gate only, so the damage shows). `--nights 3` splits the facts over
three nights and also scores the first night's facts after the last night.

Run: `nightcap bench consolidation [--facts F] [--general G] [--nights N] [--rows R,...]
[--limit N] [--model PATH] [--json]`. Prints the table, then one JSON line.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from assistant.commands._common import parser, print_json
from sleep import probes as P

ABLATIONS = {
    "-replay": {"replay": False},
    "-ewc": {"ewc": False},
    "-dreams": {"dreams": False},
    "-augment": {"augment": False},
    "-surprise": {"surprise": False},
    "-lead": {"lead_weight": 1.0},
    "+rehearse": {"rehearse": True},  # off by default: this row measures turning it on
}
NAIVE = {"replay": False, "ewc": False, "dreams": False, "augment": False, "surprise": False, "rehearse": False,
         "gates": "health"}
BENCH_PASSPHRASE = "nightcap bench throwaway home"
ROWS = ["none", "naive", "context", "nightcap", *ABLATIONS]
TARGETS = {"fact_mc": 0.90, "fact_gen": 0.80, "general_ratio": 0.98, "ppl_rise": 0.02, "night1_mc": 0.85,
           "night_minutes": 15.0}


@dataclasses.dataclass
class Row:
    """Scores of one configuration (fractions; ppl as is)."""

    name: str
    fact_mc: float = 0.0
    fact_gen: float = 0.0
    general_mc: float = 0.0
    ppl: float = 0.0
    night1_mc: float | None = None
    outcome: str = ""
    sleep_s: float = 0.0
    """Wall seconds of the slowest night's cycle."""
    gates: str = ""


def score(gguf: Path, facts: list[dict[str, Any]], general: list[P.Probe], text: str, system: str,
          night1: list[dict[str, Any]] | None = None) -> dict[str, float]:
    from models.scoring import Scorer

    scorer = Scorer(gguf, n_ctx=1024)
    try:
        fp = P.fact_probes(facts)
        out = {"fact_mc": P.mc_accuracy(scorer, fp, system), "fact_gen": P.gen_accuracy(scorer, fp, system),
               "general_mc": P.mc_accuracy(scorer, general), "ppl": P.perplexity(scorer, text)}
        if night1 is not None:
            out["night1_mc"] = P.mc_accuracy(scorer, P.fact_probes(night1), system)
        return out
    finally:
        scorer.close()


def make_home(root: Path, model: Path) -> Any:
    """A fresh home under `root` whose gen-0000 is (a hard link to) `model`."""
    from assistant.app import Nightcap

    root.mkdir(parents=True)
    # A throwaway home: its vault key comes from a fixed passphrase, never the OS keyring.
    (root / "config.toml").write_text('[vault]\nkeyring = "off"\n', encoding="utf-8")
    app = Nightcap.load(root)
    app.vault(passphrase=BENCH_PASSPHRASE)
    app.store.use(app.store.add(model, source="bench", link=True).name)
    return app


def teach(app: Any, facts: list[dict[str, Any]]) -> None:
    """Send every teach message through a logged Session, one conversation per fact."""
    runtime = app.runtime()
    try:
        for fact in facts:
            session = app.session(runtime)
            for message in fact["teach"]:
                session.turn(message)
    finally:
        close = getattr(runtime, "close", None)
        if close:
            close()


def sleep_row(name: str, overrides: dict[str, Any], model: Path, nights: list[list[dict[str, Any]]],
              general: list[P.Probe], text: str, tmp: Path, log: Callable[[str], None]) -> Row:
    from sleep.cycle import run_cycle

    app = make_home(tmp / name.strip("-"), model)
    app.config.sleep = dataclasses.replace(app.config.sleep, **overrides)
    row, outcomes, gates = Row(name), [], []
    for i, group in enumerate(nights, 1):
        teach(app, group)
        t0 = time.perf_counter()
        report = run_cycle(app)
        row.sleep_s = max(row.sleep_s, time.perf_counter() - t0)
        outcomes.append(report.outcome)
        gates.append(", ".join(f"{k} {g['value']:.3g}" for k, g in report.gates.items()
                               if g.get("value") is not None and k != "answers") or "health")
        log(f"  {name} night {i}: {report.outcome} in {time.perf_counter() - t0:.0f}s "
            f"({report.steps} steps, examples {report.examples}); gates: {gates[-1]}"
            + (f"; {report.error}" if report.error else ""))
    every = [f for group in nights for f in group]
    figures = score(app.store.current().gguf, every, general, text, app.config.chat.system_prompt,
                    nights[0] if len(nights) > 1 else None)
    row = dataclasses.replace(row, outcome="/".join(outcomes), gates=" | ".join(gates), **figures)
    shutil.rmtree(app.home.root, ignore_errors=True)
    return row


def context_system(system: str, facts: list[dict[str, Any]]) -> str:
    told = " ".join(m for f in facts for m in f["teach"])
    return f"{system} What the user has told you: {told}"


def split(facts: list[dict[str, Any]], nights: int) -> list[list[dict[str, Any]]]:
    n = max(1, min(nights, len(facts)))
    return [facts[i * len(facts) // n : (i + 1) * len(facts) // n] for i in range(n)]


def run(model: Path, facts: list[dict[str, Any]], general: list[P.Probe], text: str, rows: list[str],
        nights: int, gated: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from assistant.config import ChatConfig

    system = ChatConfig().system_prompt
    groups = split(facts, nights)
    out: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="nightcap-bench-") as tmp:
        for name in rows:
            t0 = time.perf_counter()
            if name == "none":
                row = Row(name, **score(model, facts, general, text, system, groups[0] if nights > 1 else None))
            elif name == "context":
                row = Row(name, **score(model, facts, general, text, context_system(system, facts),
                                        groups[0] if nights > 1 else None))
            else:
                overrides = NAIVE if name == "naive" else dict(ABLATIONS.get(name, {}))
                if name != "nightcap" or not gated:
                    overrides.setdefault("gates", "health")
                row = sleep_row(name, overrides, model, groups, general, text, Path(tmp), log)
            log(f"{name}: fact MC {row.fact_mc:.3f}, fact gen {row.fact_gen:.3f}, general {row.general_mc:.3f}, "
                f"ppl {row.ppl:.2f}" + (f", night-1 MC {row.night1_mc:.3f}" if row.night1_mc is not None else "")
                + f" ({time.perf_counter() - t0:.0f}s)")
            out.append(row)
    base = next((r for r in out if r.name == "none"), None)
    return {"bench": "consolidation", "model": str(model), "facts": len(facts),
            "fact_probes": sum(len(f["probes"]) for f in facts), "general": len(general), "nights": nights,
            "rows": [dataclasses.asdict(r) for r in out],
            "pre_sleep": dataclasses.asdict(base) if base else None, "targets": TARGETS}


def print_table(fig: dict[str, Any]) -> None:
    base = fig["pre_sleep"]
    print(f"{fig['facts']} facts ({fig['fact_probes']} probes), {fig['general']} general probes, "
          f"{fig['nights']} night(s); model {fig['model']}")
    n1 = fig["nights"] > 1
    head = f"{'row':<10} {'fact MC':>8} {'fact gen':>9} {'general':>8} {'vs pre':>7} {'ppl':>7} {'ppl rise':>9}"
    print(head + (f" {'night-1 MC':>11}" if n1 else "") + f" {'sleep s':>8}  outcome / gates")
    for r in fig["rows"]:
        ratio = f"{r['general_mc'] / base['general_mc']:.1%}" if base and base["general_mc"] else "-"
        rise = f"{r['ppl'] / base['ppl'] - 1:+.1%}" if base and base["ppl"] else "-"
        line = (f"{r['name']:<10} {r['fact_mc']:>8.3f} {r['fact_gen']:>9.3f} {r['general_mc']:>8.3f} {ratio:>7} "
                f"{r['ppl']:>7.2f} {rise:>9}")
        if n1:
            line += f" {r['night1_mc']:>11.3f}" if r.get("night1_mc") is not None else f" {'-':>11}"
        line += f" {r['sleep_s']:>8.0f}  {r['outcome'] or '-'}" + (f" ({r['gates']})" if r["gates"] else "")
        print(line)
    t = fig["targets"]
    print(f"targets: fact MC >= {t['fact_mc']}, fact gen >= {t['fact_gen']}, general >= {t['general_ratio']:.0%} "
          f"of pre-sleep, ppl rise <= {t['ppl_rise']:.0%}, night-1 MC after 3 nights >= {t['night1_mc']}, "
          f"one night <= {t['night_minutes']:.0f} min")


def main(argv: list[str]) -> int:
    p = parser("bench consolidation", "Recall of taught facts and retention of general knowledge after sleep.")
    p.add_argument("--facts", type=Path, default=P.eval_path("facts.jsonl"), help="facts JSONL (teach + probes)")
    p.add_argument("--general", type=Path, default=P.eval_path("general.jsonl"), help="general-knowledge JSONL")
    p.add_argument("--text", type=Path, default=P.eval_path("heldout.txt"), help="held-out text for perplexity")
    p.add_argument("--model", type=Path, help="GGUF to start from (default: the current generation)")
    p.add_argument("--nights", type=int, default=1, help="split the facts over this many nights")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated rows to run, of: {','.join(ROWS)}")
    p.add_argument("--limit", type=int, default=0, help="use only the first N facts (0: all)")
    p.add_argument("--no-gates", action="store_true", help="health gate only on the nightcap row too")
    p.add_argument("--json", action="store_true", help="only the JSON line")
    opts = p.parse_args(argv)
    rows = [r.strip() for r in opts.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        p.error(f"unknown row(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ROWS)}")
    if opts.nights < 1:
        p.error("--nights must be at least 1")
    facts = P.load_jsonl(opts.facts)[: opts.limit or None]
    general = P.general_probes(P.load_jsonl(opts.general))
    text = opts.text.read_text(encoding="utf-8")
    if opts.model is None:
        from assistant.app import Nightcap

        model = Nightcap.load().store.current().gguf
    else:
        model = opts.model
    log = (lambda s: None) if opts.json else (lambda s: print(s, flush=True))
    fig = run(Path(model), facts, general, text, rows, opts.nights, not opts.no_gates, log)
    if not opts.json:
        print_table(fig)
    print_json(fig)
    return 0
