"""`nightcap bench sleep`: Nightcap's training loop against a naive peft loop, in one process.

The loops train the same LoRA (settings from config.toml's [sleep]) on the same examples in the
same batch order, on the same model loaded once through the GGUF -> torch bridge:

- nightcap: `sleep.train.train_lora`: output head only at labelled positions (gradient fused
  into its forward), the shared system-prompt prefix computed once per batch, matmuls in bf16
  where the hardware has native bf16 (`sleep.precision = "auto"`);
- nightcap fp32: the same in fp32, to show what the loss tricks give without bf16 (run only
  when the first loop used bf16);
- naive: the usual peft recipe in fp32, `model(...).logits` over the full vocabulary, then CE.

Reported: training tokens/s of each loop (median over the steps after `--warmup`), Nightcap's
speed-up over naive (target >= 3x), wall time and peak RSS after every phase (load, examples,
train, merge), and peak RSS through Nightcap's phases (target <= 3 GB for the default model on
CPU). The examples are built-in synthetic exchanges, never the user's episodes.

Then a whole night (`whole_night`): the same exchanges sealed into a throwaway home's vault and
a real `nightcap sleep --now --json` run on the model in a process of its own, with default
settings; its report gives the wall time and peak RSS of every stage of the cycle (`--no-night`
skips it).
Run: `nightcap bench sleep [--model PATH] [--steps N] [--precision P] [--no-night] [--json]`.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.episode import Episode
from sleep.cycle import STAGES
from sleep.report import peak_rss_bytes

GB = 1 << 30
TARGET_SPEEDUP = 3.0
TARGET_RSS_GB = 3.0

EXCHANGES = [
    ("Remember that my cat is called Miso.", "Got it: your cat is called Miso."),
    ("My sister Ada lives in Lisbon, don't forget.", "I'll remember that your sister Ada lives in Lisbon."),
    ("What should I cook tonight?", "A quick vegetable stir-fry with rice would be easy and filling."),
    ("No, actually my dentist appointment is on Thursday at 3pm.", "Thanks for the correction: Thursday at 3pm."),
    ("Note that I am allergic to peanuts.", "Noted: you are allergic to peanuts, so I will avoid suggesting them."),
    (
        "How do I keep basil alive indoors?",
        "Give it a sunny window, water when the top soil is dry, and pinch the tips.",
    ),
    ("I started learning the cello last month.", "That's wonderful! Practising a little every day helps most."),
    ("Remember my bike lock code is not something to share.", "Understood, I won't repeat it."),
    ("Which train do I take to work?", "You usually take the 7:42 train from Eastfield to the harbour."),
    ("Summarise why sleep matters in one sentence.", "Sleep restores the body and consolidates memories of the day."),
    ("Keep in mind that my partner's name is Sam.", "I'll keep in mind that your partner is Sam."),
    ("What is a good stretch for my back?", "Try a slow cat-cow stretch for a minute, breathing evenly."),
    ("My favourite tea is genmaicha.", "Genmaicha, the green tea with roasted rice: noted."),
    ("Plan a short walk for Sunday.", "A loop along the river path takes about forty minutes."),
    ("I moved to a new flat on Quayside Lane.", "Congratulations on the move to Quayside Lane!"),
    ("What time does the library close on Saturdays?", "You told me it closes at 5pm on Saturdays."),
]


def bench_episodes() -> list[Episode]:
    return [Episode.from_exchange("bench", u, r, "bench", 0.0) for u, r in EXCHANGES]


def load_default(path: Path) -> tuple[Any, Any, Any]:
    """(torch model, llama.cpp tokenizer, chat template) for the GGUF at `path`."""
    from models.bridge import load_torch_model
    from models.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_gguf(path)
    return load_torch_model(path).model, tokenizer, tokenizer.chat_template()


def naive_train(model: Any, examples: list[Any], args: Any, on_step: Callable[[int, int, float], None]) -> Any:
    """The reference loop: same adapter, optimizer and batches, full-vocabulary logits."""
    import torch

    from sleep.dataset import collate
    from sleep.loss import full_logits_ce
    from sleep.train import attach_lora, batch_indices, pick_device

    device = pick_device(args.device)
    peft_model = attach_lora(model, args).to(device)
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    peft_model.train()
    for step in range(args.steps):
        t0 = time.perf_counter()
        batch = collate([examples[i] for i in batch_indices(len(examples), args.batch_size, args.seed, step)])
        batch = batch.to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = full_logits_ce(peft_model, batch)
        loss.backward()
        if args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
        optimizer.step()
        on_step(batch.n_tokens, step, time.perf_counter() - t0)
    return peft_model


class StepLog:
    """Tokens, wall seconds and CPU seconds of each step of one loop."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, float]] = []
        self._cpu = time.process_time()

    def add(self, tokens: int, seconds: float) -> None:
        now = time.process_time()
        self.rows.append((tokens, seconds, now - self._cpu))
        self._cpu = now

    def rate(self, warmup: int, cpu: bool = False) -> float:
        """Median tokens per wall second (or per CPU second of this process) after `warmup`
        steps. Medians resist a neighbour briefly taking the CPU; CPU seconds resist it more
        (they do not count time the process waited), so both are reported."""
        rates = [n / (c if cpu else w) for n, w, c in self.rows[warmup:] if (c if cpu else w) > 0]
        return statistics.median(rates) if rates else 0.0


def run(
    loader: Callable[[], tuple[Any, Any, Any]], args: Any, system_prompt: str, max_seq_len: int, warmup: int
) -> dict[str, Any]:
    """Run every phase and return the figures (see the module docstring)."""
    from sleep.dataset import build_examples
    from sleep.merge import merged_weights
    from sleep.train import StepInfo, slim_for_training, train_lora

    phases: dict[str, float] = {}
    rss: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        phases[name] = round(time.perf_counter() - t0, 3)
        rss[name] = round(peak_rss_bytes() / GB, 3)
        return out

    model, tokenizer, template = timed("load", loader)
    examples = timed(
        "examples", lambda: build_examples(bench_episodes(), template, tokenizer, system_prompt, max_seq_len)
    )
    steps: dict[str, StepLog] = {}
    losses: list[float] = []

    def nightcap(loop: str, precision: str) -> Any:
        steps[loop] = StepLog()

        def on_step(info: StepInfo) -> None:
            steps[loop].add(info.tokens, info.seconds)
            if loop == "nightcap":
                losses.append(round(info.loss, 4))

        return train_lora(model, examples, dataclasses.replace(args, precision=precision), on_step=on_step)

    slim_for_training(model, args)  # as a night does
    result = timed("train_nightcap", lambda: nightcap("nightcap", args.precision))
    timed("merge", functools.partial(merged_weights, result.model))
    rss_nightcap = peak_rss_bytes() / GB
    device, precision = result.device, result.precision
    del model, result
    gc.collect()
    model = loader()[0]  # a fresh fp32 copy for the other loops
    if precision != "fp32":  # show what the head trick alone gives, without bf16
        timed("train_nightcap_fp32", lambda: nightcap("nightcap_fp32", "fp32").model.unload())
    steps["naive"] = StepLog()
    timed("train_naive", lambda: naive_train(model, examples, args, lambda n, s, dt: steps["naive"].add(n, dt)))

    rates = {loop: log.rate(warmup) for loop, log in steps.items()}
    cpu_rates = {loop: log.rate(warmup, cpu=True) for loop, log in steps.items()}
    speedup = rates["nightcap"] / rates["naive"] if rates["naive"] else 0.0
    figures = {
        "bench": "sleep",
        "device": device,
        "precision": precision,
        "examples": len(examples),
        "steps": args.steps,
        "warmup_steps": warmup,
        "batch_size": args.batch_size,
        "mean_tokens_per_example": round(sum(len(e) for e in examples) / len(examples), 1),
        "labelled_fraction": round(sum(e.n_labels for e in examples) / sum(len(e) for e in examples), 3),
        **{f"{loop}_tokens_per_s": round(rate, 2) for loop, rate in rates.items()},
        **{f"{loop}_tokens_per_cpu_s": round(rate, 2) for loop, rate in cpu_rates.items()},
        "speedup": round(speedup, 3),
        "speedup_cpu": round(cpu_rates["nightcap"] / cpu_rates["naive"], 3) if cpu_rates["naive"] else 0.0,
        "threads": torch_threads(),
        "peak_rss_gb_nightcap": round(rss_nightcap, 3),
        "peak_rss_gb": round(peak_rss_bytes() / GB, 3),
        "phases_s": phases,
        "peak_rss_gb_after": rss,
        "losses": losses,
        "target_speedup": TARGET_SPEEDUP,
        "target_rss_gb": TARGET_RSS_GB,
    }
    if "nightcap_fp32" in rates and rates["naive"]:
        figures["speedup_fp32"] = round(rates["nightcap_fp32"] / rates["naive"], 3)
    return figures


def whole_night(model: Path, sleep_settings: str = "") -> dict[str, Any]:
    """A real night, `nightcap sleep --now --json`, with default settings (plus `sleep_settings`,
    lines of the [sleep] table) on the bench's exchanges, in a throwaway home and in a process of
    its own, so that the peak memory it reports is the cycle's alone. Returns its report."""
    import json
    import os
    import subprocess
    import tempfile

    from assistant.errors import SleepError

    with tempfile.TemporaryDirectory(prefix="nightcap-bench-night-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "config.toml").write_text(f'[vault]\nkeyring = "off"\n[sleep]\n{sleep_settings}', encoding="utf-8")
        app = Nightcap.load(home)
        app.vault(passphrase=NIGHT_PASSPHRASE).append_many(bench_episodes())
        app.store.use(app.store.add(model, source="bench", link=True).name)
        env = {**os.environ, "NIGHTCAP_HOME": str(home), "NIGHTCAP_PASSPHRASE": NIGHT_PASSPHRASE}
        proc = subprocess.run(
            [sys.executable, "-m", "assistant.cli", "sleep", "--now", "--json"], env=env, capture_output=True, text=True
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise SleepError(f"the bench's night failed: {(proc.stderr.strip().splitlines() or ['no output'])[-1]}")
        report: dict[str, Any] = json.loads(lines[-1])
        return report


NIGHT_PASSPHRASE = "nightcap bench throwaway home"


def torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def print_table(fig: dict[str, Any]) -> None:
    print(
        f"training on {fig['device']}: {fig['examples']} examples of {fig['mean_tokens_per_example']} tokens "
        f"({fig['labelled_fraction']:.0%} labelled), batch {fig['batch_size']}, {fig['steps']} steps per loop "
        f"({fig['warmup_steps']} warm-up not timed)"
    )
    rows = [("nightcap", f"nightcap ({fig['precision']}, head at labels)")]
    if "nightcap_fp32_tokens_per_s" in fig:
        rows.append(("nightcap_fp32", "nightcap (fp32, head at labels)"))
    rows.append(("naive", "naive peft (fp32, full logits)"))
    print(f"{'loop':<36} {'tokens/s':>10} {'vs naive':>9} {'tokens/CPU-s':>13} {'vs naive':>9}")
    for key, label in rows:
        cells = []
        for unit in ("s", "cpu_s"):
            rate, base = fig[f"{key}_tokens_per_{unit}"], fig[f"naive_tokens_per_{unit}"]
            cells.append(f"{rate:>{10 if unit == 's' else 13}.1f} {rate / base if base else 0.0:>8.2f}x")
        print(f"{label:<36} {' '.join(cells)}")
    if "speedup_fp32" in fig:  # the headline compares like with like: both loops in fp32
        print(
            f"speed-up like for like (both fp32): {fig['speedup_fp32']:.2f}x wall; with Nightcap's "
            f"{fig['precision']} autocast on top: {fig['speedup']:.2f}x wall, {fig['speedup_cpu']:.2f}x CPU time "
            f"(target >= {TARGET_SPEEDUP:.0f}x; {fig['threads']} torch threads)"
        )
    else:
        print(
            f"speed-up: {fig['speedup']:.2f}x wall, {fig['speedup_cpu']:.2f}x CPU time, both fp32 "
            f"(target >= {TARGET_SPEEDUP:.0f}x; {fig['threads']} torch threads)"
        )
    print(f"\n{'phase':<20} {'seconds':>9} {'peak RSS GB':>12}")
    for name, seconds in fig["phases_s"].items():
        print(f"{name:<20} {seconds:>9.2f} {fig['peak_rss_gb_after'][name]:>12.2f}")
    print(
        f"peak RSS through Nightcap's phases: {fig['peak_rss_gb_nightcap']:.2f} GB (target <= {TARGET_RSS_GB:.0f} GB); "
        f"overall, naive loop included: {fig['peak_rss_gb']:.2f} GB"
    )
    night = fig.get("night")
    if night:
        print(
            f"\na whole night ({night['episodes']} episodes, default settings, own process): {night['outcome']}, "
            f"{night['steps']} steps"
        )
        print(f"{'stage':<20} {'seconds':>9} {'peak RSS GB':>12}")
        order = {name: i for i, name in enumerate(STAGES)}
        for name, seconds in sorted(night["stages"].items(), key=lambda kv: order.get(kv[0], len(order))):
            print(f"{name:<20} {seconds:>9.2f} {night['stage_rss_mb'].get(name, 0.0) / 1024:>12.2f}")
        print(
            f"peak RSS of the night: {night['peak_rss_mb'] / 1024:.2f} GB (target <= {TARGET_RSS_GB:.0f} GB), "
            f"{sum(night['stages'].values()):.0f} s in all"
        )


def main(argv: list[str]) -> int:
    from sleep.train import TrainArgs

    p = parser("bench sleep", "Training speed of Nightcap's LoRA loop vs a naive peft loop; stage times; peak RSS.")
    p.add_argument("--model", type=Path, help="GGUF to train on (default: the current generation)")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per loop, warm-up included")
    p.add_argument("--warmup", type=int, default=1, help="first steps of each loop left out of tokens/s")
    p.add_argument("--batch-size", type=int, help="examples per step (default: sleep.batch_size)")
    p.add_argument("--device", help="auto, cuda, mps or cpu (default: sleep.device)")
    p.add_argument("--precision", help="auto, fp32 or bf16 for Nightcap's loop (default: sleep.precision)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: sleep.threads)")
    p.add_argument("--no-night", action="store_true", help="skip the whole night (a real sleep cycle, minutes)")
    p.add_argument("--json", action="store_true", help="only the JSON line")
    opts = p.parse_args(argv)
    if opts.steps <= opts.warmup:
        p.error("--steps must be larger than --warmup")

    app = Nightcap.load()
    args = TrainArgs.from_config(app.config.sleep)
    args.steps = opts.steps
    args.batch_size = opts.batch_size or args.batch_size
    args.device = opts.device or args.device
    args.precision = opts.precision or args.precision
    args.threads = opts.threads or args.threads
    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)  # before the naive loop too, not only inside train_lora
    path = opts.model or app.store.current().gguf
    figures = run(
        lambda: load_default(path), args, app.config.chat.system_prompt, app.config.sleep.max_seq_len, opts.warmup
    )
    figures["model"] = str(path)
    if not opts.no_night:
        if not opts.json:
            print("running a whole night in a throwaway home (a few minutes)...", file=sys.stderr)
        report = whole_night(Path(path))
        figures["night"] = {
            k: report.get(k) for k in ("outcome", "episodes", "steps", "stages", "stage_rss_mb", "peak_rss_mb", "gates")
        }
    if not opts.json:
        print_table(figures)
    print_json(figures)
    return 0
