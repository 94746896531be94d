"""`nightcap bench chat`: Nightcap's serving path against raw llama-cpp-python, in one run.

1. Decode speed and time to first token: the same GGUF, prompts, greedy sampling and token
   budget through `LlamaRuntime.stream_chat` and through llama-cpp-python's own
   `create_chat_completion(stream=True)` (its built-in "gemma" chat format for Gemma models).
2. Start-up: wall time of `nightcap ask "hi"` (a fresh process: imports, config, vault unlock,
   model load, reply, sealing the episode) against a minimal raw llama-cpp-python script doing the
   same load and reply with the same settings (threads, context, GPU layers, system prompt, token
   budget, stop strings: `raw_settings`), each run several times after a warm-up, medians compared.

Targets: decode tokens/s ratio >= 0.97; start-up ratio <= 1.3.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, cast

from assistant.app import Nightcap
from assistant.commands._common import parser, print_json
from assistant.config import ChatConfig, ModelConfig

if TYPE_CHECKING:
    from llama_cpp.llama_types import ChatCompletionRequestMessage, CreateChatCompletionStreamResponse

PROMPTS = [
    "Write two sentences about the sea.",
    "What is the capital of France?",
    "Give me a tip for sleeping well.",
    "Describe a cat in one paragraph.",
]

RAW_SCRIPT = """
import json, sys, llama_cpp
from models.runtime import plain_cpu_buffers
s = json.loads(sys.argv[1])
with plain_cpu_buffers():  # as Nightcap loads: no AMX weight buffers (models.runtime)
    llm = llama_cpp.Llama(model_path=s["model"], n_ctx=s["n_ctx"], n_threads=s["n_threads"],
                          n_gpu_layers=s["n_gpu_layers"], verbose=False, chat_format=s["chat_format"])
messages = [{"role": "system", "content": s["system"]}] if s["system"] else []
out = llm.create_chat_completion(messages + [{"role": "user", "content": "hi"}], max_tokens=s["max_tokens"],
                                 temperature=0.0, stop=s["stop"])
print(out["choices"][0]["message"]["content"])
"""
"""A minimal llama-cpp-python chat: one load, one reply to "hi", with `raw_settings`."""


def raw_settings(gguf: Path, model: ModelConfig, chat: ChatConfig, stop: list[str]) -> dict[str, Any]:
    """What the raw side is given: the threads, context, GPU layers, system prompt, token budget
    and stop strings Nightcap serves with (`models.runtime.load_llama`), so that the two sides
    differ only in what Nightcap adds around llama.cpp."""
    return {
        "model": str(gguf),
        "n_ctx": model.n_ctx,
        "n_threads": model.n_threads or max(1, os.cpu_count() or 2),
        "n_gpu_layers": model.n_gpu_layers,
        "chat_format": "gemma",
        "system": chat.system_prompt,
        "max_tokens": chat.max_tokens,
        "stop": list(stop),
    }


def _timed_stream(pieces: Iterator[Any], text_of: Any) -> tuple[float, float, str]:
    """(time to first text, total time, text) of a stream."""
    t0 = time.perf_counter()
    first, text = None, []
    for piece in pieces:
        chunk = text_of(piece)
        if chunk:
            text.append(chunk)
            if first is None:
                first = time.perf_counter() - t0
    return (first or 0.0), time.perf_counter() - t0, "".join(text)


def _decode_rate(ttft: float, total: float, n: int) -> float:
    return (n - 1) / (total - ttft) if n > 1 and total > ttft else 0.0


def bench_decode(gguf: Path, max_tokens: int, rounds: int) -> dict[str, float]:
    """Decode rate and time to first token of Nightcap's runtime and of raw llama-cpp-python on
    the same prompts with the same stop strings. Rates count tokens (the reply re-tokenized),
    not stream pieces: llama-cpp-python merges pieces while it checks for stop strings."""
    import llama_cpp

    from models.runtime import LlamaRuntime, plain_cpu_buffers

    chat = ChatConfig(temperature=0.0, max_tokens=max_tokens, repeat_penalty=1.0, seed=0, system_prompt="")
    served = ModelConfig(n_ctx=4096)
    ours = LlamaRuntime(gguf, "bench", served, chat)
    ours.load()
    stop = list(ours.template.stop)
    same = raw_settings(gguf, served, chat, stop)
    with plain_cpu_buffers():
        raw = llama_cpp.Llama(
            model_path=str(gguf),
            n_ctx=same["n_ctx"],
            n_threads=same["n_threads"],
            n_gpu_layers=same["n_gpu_layers"],
            verbose=False,
            chat_format="gemma",
        )

    def tokens(text: str) -> int:
        return len(raw.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    res: dict[str, list[float]] = {"ours_tps": [], "raw_tps": [], "ours_ttft": [], "raw_ttft": []}
    for r in range(rounds):
        for prompt in PROMPTS:
            msgs = [{"role": "user", "content": prompt}]
            # Alternate the order each round so neither side always runs on a warmer cache.
            order = ("ours", "raw") if r % 2 == 0 else ("raw", "ours")
            for side in order:
                if side == "ours":
                    ttft, total, text = _timed_stream(ours.stream_chat(msgs), lambda p: p)
                else:
                    raw_msgs: list[ChatCompletionRequestMessage] = [{"role": "user", "content": prompt}]
                    completion = raw.create_chat_completion(
                        raw_msgs,
                        max_tokens=max_tokens,
                        temperature=0.0,
                        repeat_penalty=1.0,
                        seed=0,
                        stop=stop,
                        stream=True,
                    )
                    # With stream=True the call returns the chunks, never a whole response.
                    stream = cast("Iterator[CreateChatCompletionStreamResponse]", completion)
                    ttft, total, text = _timed_stream(stream, lambda c: c["choices"][0]["delta"].get("content"))
                res[f"{side}_tps"].append(_decode_rate(ttft, total, tokens(text)))
                res[f"{side}_ttft"].append(ttft)
    ours.close()
    raw.close()
    return {k: statistics.median(v) for k, v in res.items()}


def _wall(cmd: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs + 1):  # the first run warms the page cache and is dropped
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def bench_startup(tmp: Path, runs: int, max_tokens: int, model: Path | None = None) -> dict[str, Any]:
    """Wall time of `nightcap ask "hi"` vs a minimal raw script, in a fresh home under `tmp`
    serving `model` (default: the embedded default model)."""
    env = dict(
        os.environ,
        NIGHTCAP_HOME=str(tmp),
        NIGHTCAP_PASSPHRASE=os.environ.get("NIGHTCAP_PASSPHRASE", "bench"),
        NIGHTCAP_KEYRING="off",
    )
    Path(tmp, "config.toml").write_text(f"[chat]\ntemperature = 0.0\nmax_tokens = {max_tokens}\n")
    app = Nightcap.load(Path(tmp))
    if model is not None:
        app.store.use(app.store.add(model, source="bench", link=True).name)
    gen = app.store.current()
    from models.tokenizer import Tokenizer

    stop = Tokenizer.from_gguf(gen.gguf).chat_template().stop
    same = raw_settings(gen.gguf, app.config.model, app.config.chat, stop)
    script = Path(tmp, "raw.py")
    script.write_text(RAW_SCRIPT)
    ours = _wall([sys.executable, "-m", "assistant.cli", "ask", "hi"], env, runs)
    raw = _wall([sys.executable, str(script), json.dumps(same)], env, runs)
    return {"ask_s": ours, "raw_s": raw, "gguf": str(gen.gguf)}


def main(argv: list[str]) -> int:
    p = parser("bench chat", "Serving speed and start-up of Nightcap vs raw llama-cpp-python.")
    p.add_argument("--rounds", type=int, default=2, help="passes over the prompt set")
    p.add_argument("--runs", type=int, default=3, help="start-up runs per side (after one warm-up)")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--model", type=Path, help="GGUF to serve (default: the embedded default model)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nightcap-bench-") as tmp:
        startup = bench_startup(Path(tmp), args.runs, 16, args.model)
        decode = bench_decode(Path(startup["gguf"]), args.max_tokens, args.rounds)
    tps_ratio = decode["ours_tps"] / decode["raw_tps"] if decode["raw_tps"] else 0.0
    start_ratio = startup["ask_s"] / startup["raw_s"]
    rows = [
        ("decode tokens/s", decode["ours_tps"], decode["raw_tps"], tps_ratio, ">= 0.97"),
        (
            "time to first token (s)",
            decode["ours_ttft"],
            decode["raw_ttft"],
            decode["ours_ttft"] / decode["raw_ttft"] if decode["raw_ttft"] else 0.0,
            "",
        ),
        ('start-up: `ask "hi"` (s)', startup["ask_s"], startup["raw_s"], start_ratio, "<= 1.3"),
    ]
    print(f"{'metric':<26} {'nightcap':>10} {'raw llama':>10} {'ratio':>7}  target")
    for name, a, b, r, target in rows:
        print(f"{name:<26} {a:>10.3f} {b:>10.3f} {r:>7.3f}  {target}")
    print_json(
        {
            "bench": "chat",
            **{k: round(v, 4) for k, v in decode.items()},
            "ask_s": round(startup["ask_s"], 3),
            "raw_s": round(startup["raw_s"], 3),
            "tps_ratio": round(tps_ratio, 3),
            "startup_ratio": round(start_ratio, 3),
        }
    )
    return 0
