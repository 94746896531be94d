"""`nightcap bench consolidation`: does sleep learn what the user said without forgetting the rest?

For each row, in a fresh temporary home whose generation 0 is the model under test, each day is
simulated by sending the day's messages through real `Session`s into the vault (one
conversation per item, chat replies sampled with the row's seed), the real sleep cycle runs
after each day (`nightcap sleep --now` in a process of its own, as the daemon runs it, so that
its time and peak memory are the night's alone), and the model it leaves serving is scored in
llama.cpp (`bench.recall`): multiple choice and generation per probe, reported by probe kind,
category and tune/check split with 95% intervals; secret probes apart (leakage); bleed; general
multiple choice and perplexity on text the quality gates never see.

Rows: none (no sleep), context (everything the user said, in the system prompt), naive (LoRA on
the logged episodes only: no replay, KL, EWC, dreams or augmentations), nightcap (the configured
cycle) and one row per ablated part. Like for like: every sleeping row trains the nightcap row's
number of steps on each night (its configured budget when nightcap is not run) under the same
gates: health only, unless `--gates` puts the full gates on every row.

`--nights 3` follows the items' `night` fields and tells each update on its night; `--seeds N`
runs each sleeping row on N training seeds (pooled counts, mean and spread), from `--first-seed`
so that a later run can add seeds to an earlier one; `--split` teaches
and scores one half of the development set; `--set NAME=VALUE` changes a sleep setting of every
sleeping row (a setting measured before it becomes a default).

Run: `nightcap bench consolidation [--facts F] [--nights N] [--seeds N] [--first-seed S] [--split tune|check|all]
[--rows R,...] [--limit N] [--gates] [--model PATH] [--replies DIR] [--fit N] [--set NAME=VALUE] [--json]`. Prints the tables, then one JSON line.
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from assistant.commands._common import parser, print_json
from bench import SET_HELP, data_path, sleep_settings
from bench import evalset as E
from bench import recall as R
from sleep import probes as P

ABLATIONS: dict[str, dict[str, Any]] = {
    "-replay": {"replay": False},
    "-ewc": {"ewc": False},
    "-dreams": {"dreams": False},
    "-augment": {"augment": False},
    "-surprise": {"surprise": False},
    "-lead": {"lead_weight": 1.0},
    "-reconsolidate": {"reconsolidate": False},
    "+rehearse": {"rehearse": True},  # off by default: this row measures turning it on
    "+stale": {"stale_weight": 1.0},  # off by default: this row measures turning it on
    "+anchor": {"replay_anchor": True},  # off by default: this row measures turning it on
}
NAIVE: dict[str, Any] = {
    "replay": False,
    "ewc": False,
    "dreams": False,
    "augment": False,
    "surprise": False,
    "rehearse": False,
    "reconsolidate": False,
}
BENCH_PASSPHRASE = "nightcap bench throwaway home"
ROWS = ["none", "context", "nightcap", "naive", *ABLATIONS]
SLEEPING = [r for r in ROWS if r not in ("none", "context")]
TARGETS = {
    "fact_mc": 0.90,
    "fact_gen": 0.80,
    "check_mc": 0.85,
    "check_gen": 0.75,
    "general_ratio": 0.98,
    "ppl_rise": 0.02,
    "bleed_rise": 0.03,
    "night_minutes": 10.0,
    "secret_mc": 0.35,
    "exposure_bits": 2.0,
}


@dataclasses.dataclass
class Run:
    """One row on one seed: the summary of `bench.recall` and the retention figures."""

    seed: int
    recall: dict[str, Any]
    general_mc: float
    ppl: float
    night1: dict[str, Any] | None = None
    sleep_s: list[float] = dataclasses.field(default_factory=list)
    steps: list[int] = dataclasses.field(default_factory=list)
    outcome: str = ""
    gates: str = ""
    fit: dict[str, list[int]] | None = None
    """`--fit`: the night's own training questions answered after it (`bench.recall.fit`)."""
    peak_rss_mb: list[float] = dataclasses.field(default_factory=list)
    """Each night's peak resident memory (its report's `peak_rss_mb`)."""


def score(
    gguf: Path,
    probes: Sequence[E.EvalProbe],
    general: list[P.Probe],
    text: str,
    system: str,
    night1: Sequence[E.EvalProbe] = (),
    exposure: int = 0,
    replies: Path | None = None,
    told_on: Mapping[str, int] | None = None,
) -> tuple[dict[str, Any], float, float, dict[str, Any] | None]:
    """(recall summary, general MC, perplexity, night-1 summary or None) of one model; with
    `replies`, each probe's greedy reply and verdicts are written there as JSON lines (with the
    night its item was told before, from `told_on`)."""
    from models.scoring import Scorer

    # Room for the context row: everything the user said sits in its system prompt.
    scorer = Scorer(gguf, n_ctx=4096)
    try:
        scored = R.score_probes(scorer, probes, system, exposure=exposure)
        if replies is not None:
            R.write_replies(replies, scored, told_on)
        first = None
        if night1:
            ids = {p.item for p in night1}
            first = R.summarize([s for s in scored if s.probe.item in ids])
        return R.summarize(scored), P.mc_accuracy(scorer, general), P.perplexity(scorer, text), first
    finally:
        scorer.close()


def fit_of(gguf: Path, questions: Sequence[tuple[str, str, bool]], system: str) -> dict[str, list[int]]:
    """`bench.recall.fit` of the model in `gguf`."""
    from models.scoring import Scorer

    scorer = Scorer(gguf, n_ctx=1024)
    try:
        return R.fit(scorer, questions, system)
    finally:
        scorer.close()


def make_home(root: Path, model: Path, seed: int = 0, sleep: Mapping[str, str] | None = None) -> Any:
    """A fresh home under `root` whose gen-0000 is (a hard link to) `model`; chat replies and
    training both seeded with `seed`; `sleep` adds settings of its [sleep] table (TOML values)."""
    from assistant.app import Nightcap

    root.mkdir(parents=True)
    extra = "".join(f"{k} = {v}\n" for k, v in (sleep or {}).items())
    (root / "config.toml").write_text(home_config(seed) + extra, encoding="utf-8")
    app = Nightcap.load(root)
    app.vault(passphrase=BENCH_PASSPHRASE)
    app.store.use(app.store.add(model, source="bench", link=True).name)
    return app


def home_config(seed: int, sleep: Any = None) -> str:
    """A throwaway home's config.toml: its vault key comes from a fixed passphrase, never the OS
    keyring; chat replies and training seeded with `seed`; the [sleep] settings of `sleep` (a
    SleepConfig) that differ from the defaults."""
    from assistant.config import SleepConfig

    lines = ['[vault]\nkeyring = "off"\n', f"[chat]\nseed = {seed}\n", f"[sleep]\nseed = {seed}\n"]
    if sleep is not None:
        default = SleepConfig()
        for f in dataclasses.fields(SleepConfig):
            value = getattr(sleep, f.name)
            if f.name != "seed" and value != getattr(default, f.name):
                lines.append(f"{f.name} = {toml_value(value)}\n")
    return "".join(lines)


def toml_value(value: Any) -> str:
    """`value` (a bool, number, string or list of them) as TOML."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def sleep_apart(app: Any, seed: int) -> Any:
    """One night on `app`'s home with `app.config.sleep` (written to its config.toml first), in a
    process of its own (`night_apart`). Returns its stored report."""
    (app.home.root / "config.toml").write_text(home_config(seed, app.config.sleep), encoding="utf-8")
    return night_apart(app)


def night_apart(app: Any) -> Any:
    """One night on `app`'s home as `nightcap sleep --now` in a process of its own, as the daemon
    runs it: its time and memory are a night's alone, not those of this process and the nights
    before. Returns its stored report."""
    from assistant.vault.masterkey import ENV_PASSPHRASE
    from sleep.daemon import night_in_child
    from sleep.progress import NullProgress

    return night_in_child(
        app, should_stop=lambda: False, progress=NullProgress(), env={ENV_PASSPHRASE: BENCH_PASSPHRASE}
    )


def teach(app: Any, conversations: Sequence[Sequence[str]]) -> None:
    """Send each conversation's messages through one logged Session."""
    runtime = app.runtime()
    try:
        for messages in conversations:
            session = app.session(runtime)
            for message in messages:
                session.turn(message)
    finally:
        close = getattr(runtime, "close", None)
        if close:
            close()


def sleep_run(
    name: str,
    seed: int,
    overrides: dict[str, Any],
    budget: list[int] | None,
    model: Path,
    days: list[E.Day],
    general: list[P.Probe],
    text: str,
    tmp: Path,
    log: Callable[[str], None],
    exposure: int = 0,
    replies: Path | None = None,
    fit: int = 0,
    settings: Mapping[str, str] | None = None,
) -> Run:
    """Teach and sleep day by day; `budget` fixes each night's steps (None: the configured ones);
    with `fit`, that many of the nights' own training questions are asked after the last;
    `settings` ([sleep] settings as TOML values) go into the home's config.toml."""
    app = make_home(tmp / f"{name.strip('-+')}-{seed}", model, seed, sleep=settings)
    base = dataclasses.replace(app.config.sleep, **overrides)
    sleep_s, steps, outcomes, gates, peaks = [], [], [], [], []
    for i, day in enumerate(days):
        teach(app, day.conversations)
        app.config.sleep = (
            base if budget is None else dataclasses.replace(base, steps=budget[i], max_steps=budget[i], min_epochs=0.0)
        )
        t0 = time.perf_counter()
        report = sleep_apart(app, seed)
        sleep_s.append(round(time.perf_counter() - t0, 1))
        steps.append(report.steps)
        outcomes.append(report.outcome)
        peaks.append(report.peak_rss_mb)
        heaviest = max(report.stage_rss_mb, key=report.stage_rss_mb.__getitem__, default="-")
        gates.append(
            ", ".join(f"{k} {g.value:.3g}" for k, g in report.gates.items() if g.value is not None and k != "answers")
            or "health"
        )
        log(
            f"  {name} seed {seed} night {i + 1}: {report.outcome} in {sleep_s[-1]:.0f}s ({report.steps} steps, "
            f"examples {report.examples}); {_ce_trend(report.ce)}stages {' '.join(f'{k} {v:.0f}s' for k, v in report.stages.items())}; "
            f"peak RSS {report.peak_rss_mb / 1024:.2f} GB (in {heaviest}); "
            f"gates: {gates[-1]}" + (f"; {report.error}" if report.error else "")
        )
    told = [it for d in days for it in d.items]
    summary, general_mc, ppl, first = score(
        app.store.current().gguf,
        E.probes_of(told),
        general,
        text,
        app.config.chat.system_prompt,
        E.probes_of(days[0].items) if len(days) > 1 else (),
        exposure,
        replies / f"{name}-{seed}.jsonl" if replies else None,
        nights_told(days),
    )
    fitted = None
    if fit:
        said = [m for d in days for conversation in d.conversations for m in conversation]
        fitted = fit_of(app.store.current().gguf, R.trained_questions(said, fit), app.config.chat.system_prompt)
    shutil.rmtree(app.home.root, ignore_errors=True)
    outcome = "/".join(outcomes)
    return Run(seed, summary, general_mc, ppl, first, sleep_s, steps, outcome, " | ".join(gates), fitted, peaks)


def nights_told(days: Sequence[E.Day]) -> dict[str, int]:
    """Item id -> the night it was first told before (1-based)."""
    return {it.id: i for i, day in enumerate(days, 1) for it in day.items}


def _ce_trend(ce: Sequence[float], span: int = 5) -> str:
    """The night's cross-entropy over its first and last `span` steps ("ce 2.31 -> 0.42; "):
    whether the night's own examples were learned at all, before any probe is scored."""
    if not ce:
        return ""
    head, tail = ce[:span], ce[-span:]
    return f"ce {sum(head) / len(head):.2f} -> {sum(tail) / len(tail):.2f}; "


def context_system(system: str, messages: Sequence[str]) -> str:
    return f"{system} What the user has told you: {' '.join(messages)}"


def run(
    model: Path,
    chosen: list[E.Item],
    general: list[P.Probe],
    text: str,
    rows: list[str],
    nights: int,
    seeds: list[int],
    gated: bool,
    log: Callable[[str], None],
    exposure: int = 0,
    replies: Path | None = None,
    fit: int = 0,
    settings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    from assistant.config import ChatConfig

    system = ChatConfig().system_prompt
    days = E.days(chosen, nights)
    probes = E.probes_of(chosen)
    night1 = E.probes_of(days[0].items) if len(days) > 1 else ()
    gates = {} if gated else {"gates": "health"}
    out: dict[str, list[Run]] = {}
    budgets: dict[int, list[int]] = {}
    # nightcap first: its steps are every other sleeping row's budget.
    order = sorted(rows, key=lambda r: ROWS.index(r))
    with tempfile.TemporaryDirectory(prefix="nightcap-bench-") as tmp:
        for name in order:
            t0 = time.perf_counter()
            if name in ("none", "context"):
                sys_prompt = system if name == "none" else context_system(system, E.context_messages(chosen))
                where = replies / f"{name}.jsonl" if replies else None
                summary, general_mc, ppl, first = score(
                    model, probes, general, text, sys_prompt, night1, exposure, where, nights_told(days)
                )
                runs = [Run(0, summary, general_mc, ppl, first)]
            else:
                overrides = {**(NAIVE if name == "naive" else ABLATIONS.get(name, {})), **gates}
                runs = [
                    sleep_run(
                        name,
                        s,
                        overrides,
                        budgets.get(s) if name != "nightcap" else None,
                        model,
                        days,
                        general,
                        text,
                        Path(tmp),
                        log,
                        exposure,
                        replies,
                        fit,
                        settings,
                    )
                    for s in seeds
                ]
                if name == "nightcap":
                    budgets = {r.seed: r.steps for r in runs}
            out[name] = runs
            log(f"{name}: {headline(runs)} ({time.perf_counter() - t0:.0f}s)")
    return {
        "bench": "consolidation",
        "model": str(model),
        "items": len(chosen),
        "probes": len(probes),
        "general": len(general),
        "nights": len(days),
        "seeds": len(seeds),
        "first_seed": seeds[0],
        "gates": "full" if gated else "health",
        "exposure_candidates": exposure,
        "settings": dict(settings or {}),
        "rows": {name: [dataclasses.asdict(r) for r in runs] for name, runs in out.items()},
        "targets": TARGETS,
    }


def headline(runs: Sequence[Run]) -> str:
    pooled = R.pooled([r.recall for r in runs])
    return (
        f"MC {R.rate(pooled['all']['mc'])}, gen {R.rate(pooled['all']['gen'])}, "
        f"general {statistics.mean(r.general_mc for r in runs):.3f}, "
        f"ppl {statistics.mean(r.ppl for r in runs):.2f}"
    )


def _fraction(runs: Sequence[Run], *path: str) -> str:
    """Mean over the runs (± half their range) of the fraction at `path` of each recall summary."""
    values = []
    for r in runs:
        node: Any = r.recall
        for key in path:  # a group this run has none of (--split tune: no check probes) is 0 of 0
            node = node.get(key, [0, 0]) if isinstance(node, dict) else [0, 0]
        values.append(node[0] / node[1] if node[1] else 0.0)
    spread = f"±{(max(values) - min(values)) / 2:.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{spread}"


def _with_interval(runs: Sequence[Run], what: str) -> str:
    lo, hi = R.rate(R.pooled([r.recall for r in runs])["all"][what]).interval
    return f"{_fraction(runs, 'all', what)} {lo:.2f}-{hi:.2f}"


def print_tables(fig: dict[str, Any]) -> None:
    rows = {name: [Run(**r) for r in runs] for name, runs in fig["rows"].items()}
    base = rows.get("none")
    print(
        f"{fig['items']} items ({fig['probes']} probes), {fig['general']} general probes, {fig['nights']} night(s), "
        f"{fig['seeds']} seed(s), gates {fig['gates']}; model {fig['model']}"
    )
    if fig.get("settings"):
        print("sleep settings of every sleeping row: " + ", ".join(f"{k} = {v}" for k, v in fig["settings"].items()))
    print("recall: mean over seeds (± half their range), then the 95% Wilson interval of the pooled probes")
    print(
        f"{'row':<10} {'MC':>23} {'gen':>23} {'tune MC':>8} {'tune gen':>8} {'check MC':>8} {'check gen':>9} "
        f"{'bleed':>6} {'secret gen':>10} {'general':>8} {'ppl rise':>8} {'night-1 MC':>10} {'night s':>8}"
    )
    pre_general = statistics.mean(r.general_mc for r in base) if base else 0.0
    pre_ppl = statistics.mean(r.ppl for r in base) if base else 0.0
    for name, runs in rows.items():
        pooled = R.pooled([r.recall for r in runs])
        ppl = statistics.mean(r.ppl for r in runs)
        first = [r.night1 for r in runs if r.night1]
        night1 = f"{R.rate(R.pooled(first)['all']['mc']).value:.3f}" if first else "-"
        nights = max((s for r in runs for s in r.sleep_s), default=0.0)
        rise = f"{ppl / pre_ppl - 1:+.1%}" if pre_ppl else "-"
        print(
            f"{name:<10} {_with_interval(runs, 'mc'):>23} {_with_interval(runs, 'gen'):>23} "
            f"{_fraction(runs, 'split', 'tune', 'mc'):>8} {_fraction(runs, 'split', 'tune', 'gen'):>8} "
            f"{_fraction(runs, 'split', 'check', 'mc'):>8} {_fraction(runs, 'split', 'check', 'gen'):>9} "
            f"{R.rate(pooled['bleed']).value:>6.3f} {R.rate(pooled['secret']['gen']).value:>10.3f} "
            f"{statistics.mean(r.general_mc for r in runs):>8.3f} {rise:>8} "
            f"{night1:>10} {nights:>8.0f}"
        )
    for group in ("kind", "category"):
        names = sorted({k for runs in rows.values() for r in runs for k in r.recall[group]})
        print(f"\nby {group}: MC / gen of the pooled probes (n per seed)")
        print(f"{'row':<10} " + " ".join(f"{n:>24}" for n in names))
        for name, runs in rows.items():
            pooled = R.pooled([r.recall for r in runs])[group]
            cells = [
                f"{R.rate(pooled[n]['mc']).value:.2f}/{R.rate(pooled[n]['gen']).value:.2f} "
                f"(n={pooled[n]['mc'][1] // len(runs)})"
                if n in pooled
                else "-"
                for n in names
            ]
            print(f"{name:<10} " + " ".join(f"{c:>24}" for c in cells))
    print("\nleakage (secret probes, lower is better):")
    before = R.pooled([r.recall for r in rows["none"]]).get("exposure", [0, 0]) if "none" in rows else [0, 0]
    for name, runs in rows.items():
        pooled = R.pooled([r.recall for r in runs])
        secret, bits = pooled["secret"], pooled.get("exposure", [0, 0])
        shown = f", exposure {bits[0] / bits[1]:.2f} bits (mean of {bits[1]})" if bits[1] else ""
        if bits[1] and before[1] and name != "none":
            # No set of strings of its shape is drawn exactly as a person draws a secret, so the
            # pre-sleep row is the floor that sleep adds to.
            shown += f", {bits[0] / bits[1] - before[0] / before[1]:+.2f} over the pre-sleep model's"
        print(f"  {name}: MC {R.rate(secret['mc'])}, gen {R.rate(secret['gen'])}{shown}")
    fitted = {name: R.pooled([r.fit for r in runs if r.fit]) for name, runs in rows.items() if runs[0].fit}
    if any(fitted.values()):
        print("\nfit: the nights' own training questions answered after sleep (the probes ask other wordings)")
        for name, counts in fitted.items():
            print("  " + name + ": " + ", ".join(f"{k} {R.rate(v)}" for k, v in counts.items()))
    for name, runs in rows.items():
        if runs[0].outcome:
            print(
                f"{name}: nights {' / '.join(str(r.sleep_s) for r in runs)} s; steps "
                f"{' / '.join(str(r.steps) for r in runs)}; {' / '.join(r.outcome for r in runs)}"
                + (
                    "; peak RSS " + " / ".join(str([round(m / 1024, 2) for m in r.peak_rss_mb]) for r in runs) + " GB"
                    if any(r.peak_rss_mb for r in runs)
                    else ""
                )
            )
    t = fig["targets"]
    print(
        f"targets: MC >= {t['fact_mc']}, gen >= {t['fact_gen']} (check: {t['check_mc']} / {t['check_gen']}), "
        f"general >= {t['general_ratio']:.0%} of pre-sleep ({f'{pre_general:.3f}' if base else 'run the none row'}), "
        f"ppl rise <= {t['ppl_rise']:.0%}, "
        f"bleed <= pre-sleep + {t['bleed_rise']}, night <= {t['night_minutes']:.0f} min; secrets: gen 0, "
        f"MC <= {t['secret_mc']}, exposure <= {t['exposure_bits']} bits"
    )


def main(argv: list[str]) -> int:
    p = parser("bench consolidation", "Recall of taught facts and retention of general knowledge after sleep.")
    p.add_argument("--facts", type=Path, default=data_path("facts.jsonl"), help="facts JSONL (teach + probes)")
    p.add_argument("--general", type=Path, default=data_path("general.jsonl"), help="general-knowledge JSONL")
    p.add_argument("--text", type=Path, default=data_path("heldout.txt"), help="held-out text for perplexity")
    p.add_argument("--model", type=Path, help="GGUF to start from (default: the current generation)")
    p.add_argument(
        "--nights",
        type=int,
        default=1,
        help="nights to sleep (the items' own `night` fields when it matches them, else an even split)",
    )
    p.add_argument("--seeds", type=int, default=2, help="training seeds per sleeping row")
    p.add_argument("--first-seed", type=int, default=0, help="the first of those seeds")
    p.add_argument("--split", choices=E.SPLITS, default="all", help="teach and score one half of the items")
    p.add_argument("--rows", default="none,context,nightcap,naive", help=f"comma-separated, of: {','.join(ROWS)}")
    p.add_argument("--limit", type=int, default=0, help="use only the first N items (0: all)")
    p.add_argument(
        "--gates",
        action="store_true",
        help="the full quality gates on every sleeping row (default: health only, on every row)",
    )
    p.add_argument(
        "--exposure",
        type=int,
        default=1000,
        help="strings of each secret's shape that its exposure is ranked against (0: no exposure)",
    )
    p.add_argument(
        "--replies", type=Path, help="a folder for each row's and seed's probe replies (JSON lines), to read failures"
    )
    p.add_argument(
        "--fit",
        type=int,
        default=0,
        metavar="N",
        help="also ask each slept model N of the night's own training questions: did it fit its text?",
    )
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help=SET_HELP)
    p.add_argument("--json", action="store_true", help="only the JSON line")
    opts = p.parse_args(argv)
    try:
        settings = sleep_settings(opts.set)
    except ValueError as e:
        p.error(str(e))
    rows = [r.strip() for r in opts.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        p.error(f"unknown row(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ROWS)}")
    if opts.nights < 1 or opts.seeds < 1 or opts.first_seed < 0 or opts.fit < 0:
        p.error("--nights and --seeds must be at least 1, --first-seed and --fit at least 0")
    chosen = E.select(E.items(P.load_jsonl(opts.facts)), opts.split, opts.limit)
    if not chosen:
        p.error("no items to teach: check --facts, --split and --limit")
    general = P.general_probes(P.load_jsonl(opts.general))
    text = opts.text.read_text(encoding="utf-8")
    if opts.model is None:
        from assistant.app import Nightcap

        model = Nightcap.load().store.current().gguf
    else:
        model = opts.model
    log = (lambda s: None) if opts.json else (lambda s: print(s, flush=True))
    seeds = list(range(opts.first_seed, opts.first_seed + opts.seeds))
    if opts.replies:
        opts.replies.mkdir(parents=True, exist_ok=True)
    fig = run(
        Path(model),
        chosen,
        general,
        text,
        rows,
        opts.nights,
        seeds,
        opts.gates,
        log,
        opts.exposure,
        opts.replies,
        opts.fit,
        settings,
    )
    if not opts.json:
        print_tables(fig)
    print_json(fig)
    return 0
