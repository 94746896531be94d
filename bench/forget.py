"""`nightcap bench forget`: does `nightcap forget` take a consolidated fact out, and only that?

In a fresh temporary home on the model under test: one day of `--facts` development items
(plain and chatty ones, told as a user would, through real Sessions), one real night, then
`nightcap forget` on the first `--forget` of them, one at a time, each on the text the user
told. Every model is scored in llama.cpp, multiple choice on the items' probes:

    pre-sleep     the model before the night (what "never learned" looks like)
    slept         after the night
    forgotten     after the forgets, on the served (requantized) file
    relearned     after a further night on `--relearn` other items (does light fine-tuning on
                  unrelated facts bring the forgotten ones back?)

Targets (issue: forgetting that holds): forgotten items' MC within 0.10 of pre-sleep after the
forgets and after relearning; the other items' MC falls by at most 0.05; general MC at least 98%
of the slept model's; each forget at most 3 minutes on 2 CPU cores. Prints a table, then one
JSON line.

Run: `nightcap bench forget [--facts N] [--forget K] [--relearn R] [--seed S] [--model PATH]
[--dir D] [--forget-steps N] [--forget-idk-weight W] [--forget-npo-weight W]`. With `--dir`,
the slept home and the figures up to it are kept in D: a rerun with the same items, seed and
model starts from the slept home (the night is most of the bench's time), so settings of the
forget itself (`--forget-steps`, `--forget-*-weight`) can be compared on one night.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from assistant.commands._common import parser, print_json
from assistant.errors import UsageError
from bench import data_path
from bench import evalset as E
from bench import recall as R
from bench.consolidation import BENCH_PASSPHRASE, make_home, teach
from sleep import probes as P

TARGETS = {"forgotten_above_pre": 0.10, "kept_drop": 0.05, "general_ratio": 0.98, "forget_minutes": 3.0}


def mc(gguf: Path, groups: Mapping[str, Sequence[E.EvalProbe]], general: list[P.Probe], system: str) -> dict[str, Any]:
    """MC accuracy [correct, n] of each group of probes, and general MC, for one model."""
    from models.scoring import Scorer

    scorer = Scorer(gguf, n_ctx=1024)
    try:
        out: dict[str, Any] = {}
        for name, probes in groups.items():
            right = [
                P.mc_correct(scorer, P.Probe(p.question, p.answer, list(p.distractors), True), system) for p in probes
            ]
            out[name] = [sum(right), len(right)]
        out["general"] = round(P.mc_accuracy(scorer, general), 4)
        return out
    finally:
        scorer.close()


def chosen_items(n: int, k: int, relearn: int) -> tuple[list[E.Item], list[E.Item], list[E.Item]]:
    """(forget, keep, relearn) items: plain and chatty development items in file order."""
    pool = [
        it
        for it in E.items(P.load_jsonl(data_path("facts.jsonl")))
        if it.category in ("plain", "chatty") and not it.update
    ]
    told, rest = pool[:n], pool[n:]
    return told[:k], told[k:], rest[:relearn]


FORGET_SETTINGS = ("forget_steps", "forget_idk_weight", "forget_npo_weight", "forget_kl_per_step")
"""The `sleep.*` settings of a forget that the command line can change for the bench's forgets."""

SLEPT, STATE = "slept", "state.json"
"""In `--dir`: the home as the night left it, and the figures measured up to there."""


def slept_home(
    d: Path | None, work: Path, settings: dict[str, Any], first_night: Callable[[Any], dict[str, Any]]
) -> tuple[Any, dict[str, Any]]:
    """The home after the bench's night, in `work`, and the figures measured up to it: from `d`
    when it holds this run's night, else made by `first_night(app)` on a fresh home (and kept
    in `d` when one is named)."""
    from assistant.app import Nightcap
    from assistant.fsutil import atomic_write_json

    home = work / "home"
    if d and (d / STATE).exists() and (d / SLEPT).is_dir():
        kept = json.loads((d / STATE).read_text(encoding="utf-8"))
        if kept.get("settings") != settings:
            raise UsageError(f"{d} holds a forget bench run with other settings; name another --dir")
        shutil.copytree(d / SLEPT, home, symlinks=True)
        app = Nightcap.load(home)
        app.vault(passphrase=BENCH_PASSPHRASE)
        return app, {**kept["figures"], "reused": True}
    app = make_home(home, Path(settings["model"]), settings["seed"])
    figures = first_night(app)
    if d:
        d.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(d / SLEPT, ignore_errors=True)
        shutil.copytree(home, d / SLEPT, symlinks=True)
        atomic_write_json(d / STATE, {"settings": settings, "figures": figures})
    return app, figures


def run(
    model: Path,
    n: int,
    k: int,
    relearn: int,
    seed: int,
    log: Any,
    *,
    d: Path | None = None,
    forget_settings: Mapping[str, Any] | None = None,
    night_fn: Callable[[Any], Any] | None = None,
    forget_fn: Callable[[Any, str], Any] | None = None,
    score_fn: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The bench's figures. `forget_settings` replaces those `sleep.forget_*` settings for the
    forgets (not the nights). `night_fn(app)`, `forget_fn(app, text)` and `score_fn` (like `mc`)
    default to the real night, forget and scoring: seams for the bench's own tests."""
    from sleep.cycle import run_cycle
    from sleep.forget import forget

    sleep_night = night_fn or run_cycle
    forget_one = forget_fn or forget
    score = score_fn or mc

    gone, kept, later = chosen_items(n, k, relearn)
    groups = {
        "forgotten": [p for it in gone for p in it.probes if p.kind != "secret"],
        "kept": [p for it in kept for p in it.probes if p.kind != "secret"],
    }
    general = P.general_probes(P.load_jsonl(data_path("general.jsonl")))
    settings = {"model": str(model), "facts": n, "forget": k, "relearn": relearn, "seed": seed}

    def first_night(app: Any) -> dict[str, Any]:
        system = app.config.chat.system_prompt
        out: dict[str, Any] = {"pre": score(app.store.current().gguf, groups, general, system)}
        teach(app, [it.teach for it in gone + kept])
        t0 = time.perf_counter()
        night = sleep_night(app)
        out["night_s"] = round(time.perf_counter() - t0, 1)
        log(f"night: {night.outcome} in {out['night_s']:.0f}s")
        out["slept"] = score(app.store.current().gguf, groups, general, system)
        return out

    tmp = Path(tempfile.mkdtemp(prefix="nightcap-bench-forget-"))
    try:
        app, before = slept_home(d, tmp, settings, first_night)
        if before.get("reused"):
            log(f"night: the slept home kept in {d} (night of {before['night_s']:.0f}s)")
        fig: dict[str, Any] = {"bench": "forget", **settings, "targets": TARGETS, **before}
        app.config.sleep = dataclasses.replace(app.config.sleep, **(forget_settings or {}))
        fig.update({k: getattr(app.config.sleep, k) for k in FORGET_SETTINGS})
        system = app.config.chat.system_prompt
        fig["forget_s"], fig["forget_stages_s"] = [], []
        for it in gone:
            t0 = time.perf_counter()
            report = forget_one(app, " ".join(it.teach))
            fig["forget_s"].append(round(time.perf_counter() - t0, 1))
            fig["forget_stages_s"].append({k: round(v, 1) for k, v in report.stages.items()})
            log(
                f"forget {it.id}: {report.outcome} in {fig['forget_s'][-1]:.0f}s "
                f"({' '.join(f'{k} {v:.0f}s' for k, v in report.stages.items())}), answers' log-probability "
                f"{report.forgotten.get('answer_logprob_before')} -> {report.forgotten.get('answer_logprob_after')}"
            )
        fig["forgotten"] = score(app.store.current().gguf, groups, general, system)
        teach(app, [it.teach for it in later])
        sleep_night(app)
        fig["relearned"] = score(app.store.current().gguf, groups, general, system)
        return fig
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(fig: dict[str, Any]) -> None:
    def frac(pair: Sequence[int]) -> str:
        lo, hi = R.wilson(pair[0], pair[1])
        return f"{pair[0] / max(1, pair[1]):.3f} [{lo:.2f}-{hi:.2f}]"

    print(
        f"\n{fig['facts']} facts told, {fig['forget']} forgotten one at a time ({fig['forget_steps']} steps each, "
        f"'I don't know' weight {fig['forget_idk_weight']}, NPO weight {fig['forget_npo_weight']}, "
        f"KL samples {fig['forget_kl_per_step']} a step), "
        f"{fig['relearn']} others learned after; seed {fig['seed']}; model {fig['model']}"
    )
    print(f"{'model':<12} {'forgotten MC':>22} {'kept MC':>22} {'general':>8}")
    for row in ("pre", "slept", "forgotten", "relearned"):
        r = fig[row]
        print(f"{row:<12} {frac(r['forgotten']):>22} {frac(r['kept']):>22} {r['general']:>8.3f}")
    pre = fig["pre"]["forgotten"][0] / max(1, fig["pre"]["forgotten"][1])
    print(
        f"forgets: {fig['forget_s']} s (target <= {TARGETS['forget_minutes'] * 60:.0f} s each); night "
        f"{fig['night_s']} s; targets: forgotten MC <= pre-sleep {pre:.3f} + {TARGETS['forgotten_above_pre']}, "
        f"kept MC drop <= {TARGETS['kept_drop']}, general >= {TARGETS['general_ratio']:.0%} of slept"
    )


def main(argv: list[str]) -> int:
    from assistant.app import Nightcap

    p = parser("bench forget", "Unlearning consolidated facts: recall of the forgotten and the kept, general MC.")
    p.add_argument("--facts", type=int, default=20, help="items told before the night (default 20)")
    p.add_argument("--forget", type=int, default=5, help="items forgotten after it (default 5)")
    p.add_argument("--relearn", type=int, default=5, help="other items learned in a night after (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", type=Path, default=None, help="GGUF to start from (default: the current generation)")
    p.add_argument("--dir", type=Path, default=None, help="keep the slept home here; a rerun starts from it")
    p.add_argument("--forget-steps", type=int, default=None, help="training steps of each forget (default: config)")
    p.add_argument(
        "--forget-idk-weight", type=float, default=None, help="weight of each forget's 'I don't know' lessons"
    )
    p.add_argument("--forget-npo-weight", type=float, default=None, help="weight of each forget's NPO term")
    p.add_argument(
        "--forget-kl-per-step", type=int, default=None, help="samples in each of a forget's KL terms per step"
    )
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    model = args.model or Nightcap.load().store.current().gguf
    fig = run(
        model,
        args.facts,
        args.forget,
        args.relearn,
        args.seed,
        (lambda s: None) if args.json else (lambda s: print(s, flush=True)),
        d=args.dir,
        forget_settings={k: v for k in FORGET_SETTINGS if (v := getattr(args, k)) is not None},
    )
    if not args.json:
        print_table(fig)
    print_json(fig)
    return 0
