"""`nightcap bench yield`: how long a night takes to give the machine back, from any point of it.

A night yields at its next check of `should_stop`: every stop point of every stage
(`assistant.stoppoints`) and every training step asks it. So one real night is run with a
`should_stop` that never says stop but notes when it was asked; a stop requested at time t is
seen at the first check after t, and the wait at t is that check's time minus t. The bench
draws `--points` stop times uniformly over the night (seeded), prints the distribution of the
waits and the longest gap between checks in each stage. Seeing the stop is not the whole of
yielding: the night then unwinds (seals a checkpoint, drops scratch files), so `--real-stops`
more nights, each in a fresh home, are really stopped at random points, and the time from the
first "stop" to `run_cycle` raising `SleepInterrupted` is printed beside. Target: wait + unwind
<= 10 s at every point.

Resuming is measured too (`--resume`, on by default): one more night is paused as it finishes
training, the user says something new, and the night is run again. The resumed night must not
dream or train again (its report says `skipped: ["weigh", "dream", "replay", "train"]`), and
what was said after the pause waits for the next night; its time is printed beside the uninterrupted night's.

The night is the bench day of `nightcap bench sleep` (built-in exchanges, never the user's) on
the given model with default settings, in a throwaway home, in this process.
Run: `nightcap bench yield [--model PATH] [--points 100] [--real-stops 2] [--no-resume] [--json]`.
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from assistant.commands._common import parser, print_json

TARGET_S = 10.0


@dataclass
class Trace:
    """What one night asked and did: times (seconds from its start) of every `should_stop` check
    and of every stage's start."""

    checks: list[float] = field(default_factory=list)
    stages: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0

    def stage_at(self, t: float) -> str:
        starts = [s for s, _ in self.stages]
        i = bisect.bisect_right(starts, t) - 1
        return self.stages[i][1] if i >= 0 else "start"


def waits(checks: Sequence[float], points: Sequence[float]) -> list[float]:
    """For a stop asked at each of `points`, the time until the next check (sorted `checks`);
    a point after the last check waits until the end, which is the last check or nothing."""
    out = []
    for t in points:
        i = bisect.bisect_left(checks, t)
        out.append(checks[i] - t if i < len(checks) else 0.0)
    return out


def longest_gaps(trace: Trace) -> dict[str, float]:
    """The longest stretch without a check, by the stage of the check that ends it (a stage that
    starts with a long stretch of work before its first check owns that stretch)."""
    gaps: dict[str, float] = {}
    for a, b in zip(trace.checks, trace.checks[1:]):
        name = trace.stage_at(b)
        gaps[name] = max(gaps.get(name, 0.0), b - a)
    return gaps


class _Stages:
    """SleepProgress that notes when each stage starts."""

    def __init__(self, trace: Trace, start: float) -> None:
        self.trace, self.start = trace, start

    def stage(self, name: str) -> None:
        self.trace.stages.append((time.monotonic() - self.start, name))

    def step(self, i: int, total: int, loss: float | None) -> None:
        pass


NightFn = Callable[..., Any]
"""`run_cycle(app, should_stop=..., progress=...)`, or a fake of it in tests."""


def traced_night(app: Any, night_fn: NightFn) -> Trace:
    """Run a whole night, noting every check of `should_stop` (which never says stop)."""
    trace, start = Trace(), time.monotonic()

    def asked() -> bool:
        trace.checks.append(time.monotonic() - start)
        return False

    night_fn(app, should_stop=asked, progress=_Stages(trace, start))
    trace.seconds = time.monotonic() - start
    return trace


def stopped_night(app: Any, night_fn: NightFn, at: float) -> tuple[float, float, str]:
    """Run a night and ask it to stop `at` seconds in: (seconds from asking to the night's return,
    seconds from asking to the check that saw it, stage it was in); NaN when it ended first."""
    from sleep.cycle import SleepInterrupted

    trace, start = Trace(), time.monotonic()
    asked_at: list[float] = []

    def should_stop() -> bool:
        now = time.monotonic() - start
        if now < at:
            return False
        asked_at.append(now)
        return True

    try:
        night_fn(app, should_stop=should_stop, progress=_Stages(trace, start))
    except SleepInterrupted:
        pass
    if not asked_at:
        return float("nan"), float("nan"), "finished"
    seen = asked_at[0]
    return time.monotonic() - start - at, seen - at, trace.stage_at(seen)


class _PauseAt(_Stages):
    """SleepProgress that asks the night to stop once `target` starts (a stop point in it sees that)."""

    def __init__(self, trace: Trace, start: float, target: str) -> None:
        super().__init__(trace, start)
        self.target, self.pausing = target, False

    def stage(self, name: str) -> None:
        super().stage(name)
        self.pausing = self.pausing or name == self.target


def resumed_night(
    app: Any, night_fn: NightFn, chat_fn: Callable[[Any], Any], pause_at: str = "merge"
) -> dict[str, Any]:
    """Pause a night when `pause_at` starts (right after training), let the user say something
    (`chat_fn` adds it and returns the app to go on with), then run the night again: what the
    resumed night skipped and how long each part took."""
    from sleep.cycle import SleepInterrupted

    trace, start = Trace(), time.monotonic()
    pauser = _PauseAt(trace, start, pause_at)
    try:
        night_fn(app, should_stop=lambda: pauser.pausing, progress=pauser)
        paused = False
    except SleepInterrupted:
        paused = True
    first_s = time.monotonic() - start
    app = chat_fn(app)
    start = time.monotonic()
    report = night_fn(app, should_stop=lambda: False, progress=_Stages(Trace(), start))
    return {
        "paused_at": pause_at if paused else "finished",
        "paused_after_s": round(first_s, 2),
        "resumed_s": round(time.monotonic() - start, 2),
        "skipped": list(report.skipped),
        "resumed_from_step": report.resumed_from_step,
        "steps": report.steps,
        "train_s": report.stages.get("train"),
        "outcome": report.outcome,
        "episodes": report.episodes,
    }


def chat_since(app: Any) -> Any:
    """The user comes back and says something new (in the vault the night reads)."""
    from assistant.episode import Episode
    from bench.training import NIGHT_PASSPHRASE

    said = Episode.from_exchange("back", "My bike is the green one by the door.", "Got it.", "bench", time.time())
    app.vault(passphrase=NIGHT_PASSPHRASE).append(said)
    return app


def fresh_home(root: Path, model: Path) -> Any:
    """A throwaway home serving `model`, with the bench day's exchanges pending."""
    from assistant.app import Nightcap
    from bench.training import NIGHT_PASSPHRASE, bench_episodes

    root.mkdir(parents=True)
    (root / "config.toml").write_text('[vault]\nkeyring = "off"\n', encoding="utf-8")
    app = Nightcap.load(root)
    app.vault(passphrase=NIGHT_PASSPHRASE).append_many(bench_episodes())
    app.store.use(app.store.add(model, source="bench", link=True).name)
    return app


def run(
    model: Path,
    n_points: int,
    real_stops: int,
    seed: int,
    log: Callable[[str], None],
    night_fn: NightFn | None = None,
    home_fn: Callable[[Path, Path], Any] = fresh_home,
    resume: bool = True,
    chat_fn: Callable[[Any], Any] = chat_since,
) -> dict[str, Any]:
    """Trace one night, then stop `real_stops` more, then (with `resume`) pause one after
    training and resume it after a chat; `night_fn`, `home_fn` and `chat_fn` are the real night,
    home and chat unless a test gives fakes."""
    if night_fn is None:
        from sleep.cycle import run_cycle

        night_fn = run_cycle
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="nightcap-bench-yield-") as tmp:
        log("a whole night, noting every check of should_stop ...")
        trace = traced_night(home_fn(Path(tmp) / "traced", model), night_fn)
        points = sorted(rng.uniform(0.0, trace.seconds) for _ in range(n_points))
        seen = waits(trace.checks, points)
        stops = []
        for i in range(real_stops):
            at = rng.uniform(0.0, trace.seconds)
            log(f"night {i + 1} of {real_stops} stopped at {at:.0f} s ...")
            unwind, wait, stage = stopped_night(home_fn(Path(tmp) / f"stopped-{i}", model), night_fn, at)
            stops.append({"at_s": round(at, 2), "stage": stage, "wait_s": round(wait, 3), "return_s": round(unwind, 3)})
        resumed = None
        if resume:
            log("a night paused after training, then resumed after a new chat ...")
            resumed = resumed_night(home_fn(Path(tmp) / "resumed", model), night_fn, chat_fn)
    longest = max(seen, default=0.0)
    return {
        "bench": "yield",
        "model": str(model),
        "night_s": round(trace.seconds, 1),
        "checks": len(trace.checks),
        "points": n_points,
        "seed": seed,
        "waits_s": [round(w, 4) for w in seen],
        "stages": [[round(t, 2), name] for t, name in trace.stages],
        "longest_gap_by_stage_s": {k: round(v, 3) for k, v in longest_gaps(trace).items()},
        "wait_max_s": round(longest, 3),
        "real_stops": stops,
        "resumed": resumed,
        "target_s": TARGET_S,
    }


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def print_table(fig: dict[str, Any]) -> None:
    w = fig["waits_s"]
    print(
        f"one night of {fig['night_s']:.0f} s with {fig['checks']} checks of should_stop; "
        f"{fig['points']} stop times drawn uniformly over it (seed {fig['seed']})"
    )
    print(
        f"wait until the stop is seen (s): min {min(w, default=0):.3f}  median {statistics.median(w) if w else 0:.3f}  "
        f"p90 {quantile(w, 0.9):.3f}  p99 {quantile(w, 0.99):.3f}  max {max(w, default=0):.3f}"
    )
    print(f"{'stage':<10} {'longest gap between checks (s)':>32}")
    for name, gap in fig["longest_gap_by_stage_s"].items():
        print(f"{name:<10} {gap:>32.3f}")
    for s in fig["real_stops"]:
        print(
            f"stopped at {s['at_s']:.0f} s in {s['stage']}: seen after {s['wait_s']:.3f} s, "
            f"night returned {s['return_s']:.3f} s after the stop"
        )
    worst = fig["wait_max_s"] + max(
        (s["return_s"] - s["wait_s"] for s in fig["real_stops"] if not math.isnan(s["return_s"])), default=0.0
    )
    print(
        f"longest wait {fig['wait_max_s']:.3f} s; with the slowest unwind measured: {worst:.3f} s "
        f"(target <= {fig['target_s']:.0f} s)"
    )
    r = fig.get("resumed")
    if r:
        stages = {name: t for t, name in fig["stages"]}
        trained = round(stages["merge"] - stages["train"], 1) if "train" in stages and "merge" in stages else None
        print(
            f"paused at the start of {r['paused_at']} after {r['paused_after_s']:.0f} s; after a new chat the resumed "
            f"night took {r['resumed_s']:.0f} s (the whole night: {fig['night_s']:.0f} s), "
            f"skipped {', '.join(r['skipped']) or 'nothing'}, train {r['train_s']} s "
            f"(uninterrupted: {trained} s), step {r['resumed_from_step']} of {r['steps']}, "
            f"{r['episodes']} episode(s) learned, {r['outcome']}"
        )


def main(argv: list[str]) -> int:
    p = parser("bench yield", "How long a night takes to give the machine back, from random points of it.")
    p.add_argument("--model", type=Path, help="GGUF to sleep on (default: the current generation)")
    p.add_argument("--points", type=int, default=100, help="random stop times over the traced night")
    p.add_argument("--real-stops", type=int, default=2, help="nights really stopped at a random point")
    p.add_argument("--seed", type=int, default=0, help="seed of the stop times")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also pause a night after training and resume it after a new chat (one more night)",
    )
    p.add_argument("--json", action="store_true", help="only the JSON line")
    args = p.parse_args(argv)
    model = args.model
    if model is None:
        from assistant.app import Nightcap

        model = Nightcap.load().store.current().gguf
    log = (lambda _: None) if args.json else (lambda s: print(s, flush=True))
    fig = run(model, args.points, args.real_stops, args.seed, log, resume=args.resume)
    if not args.json:
        print_table(fig)
    print_json(fig)
    return 0
