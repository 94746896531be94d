"""`nightcap bench serve`: replies through the API against raw llama-cpp-python, in one run.

`nightcap serve` runs as its own process on a fresh home holding the default model (the real
path: token check, request parsing, the chat's Session, the episode sealed into the vault after
the reply); this process streams each prompt through it over HTTP (server-sent events, read
with httpx) and through llama-cpp-python directly, on the same GGUF, rendered prompt, greedy
sampling, stop strings, token budget and thread count. Both sides alternate order each round.

- decode tokens/s: (tokens - 1) / (time of the last piece - time of the first); tokens are the
  reply re-tokenized on both sides (the API's `usage.completion_tokens` counts the same way).
- time to first token: from sending the request (the call, raw) to the first piece of text.

Targets: decode ratio >= 0.95; the API adds <= 10 ms to time to first token (medians).
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
from typing import Any, Iterator

from assistant.commands._common import parser, print_json

PROMPTS = [
    "Write two sentences about the sea.",
    "What is the capital of France?",
    "Give me a tip for sleeping well.",
    "Describe a cat in one paragraph.",
]


def _timed(pieces: Iterator[str]) -> tuple[float, float, str]:
    """(time to the first piece, time to the last piece, text), from when `pieces` is first asked."""
    t0 = time.perf_counter()
    first = last = 0.0
    text: list[str] = []
    for piece in pieces:
        if piece:
            last = time.perf_counter() - t0
            first = first or last
            text.append(piece)
    return first, last, "".join(text)


def _rate(first: float, last: float, tokens: int) -> float:
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def start_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    """`nightcap serve --port 0` on `home`; the process and the port it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"nightcap serve did not start: {line.strip()} {proc.stderr.read() if proc.stderr else ''}")
    port = int(line.split("http://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    return proc, port


def api_pieces(
    client: Any, port: int, token: str, prompt: str, max_tokens: int, usage: dict[str, int]
) -> Iterator[str]:
    body = {
        "model": "nightcap",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with client.stream(
        "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                usage.update(chunk["usage"])
            for choice in chunk.get("choices", []):
                yield choice["delta"].get("content") or ""


def main(argv: list[str]) -> int:
    p = parser("bench serve", "Decode speed and time to first token through the API vs raw llama-cpp-python.")
    p.add_argument("--rounds", type=int, default=3, help="passes over the prompt set")
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args(argv)

    import httpx

    from assistant.app import Nightcap
    from assistant.server import api_token
    from models.runtime import load_llama, template_of

    with tempfile.TemporaryDirectory(prefix="nightcap-bench-serve-") as tmp:
        home = Path(tmp)
        # The same sampling on both sides: greedy, no repeat penalty, no system prompt.
        (home / "config.toml").write_text(
            f'[chat]\ntemperature = 0.0\nrepeat_penalty = 1.0\nmax_tokens = {args.max_tokens}\nsystem_prompt = ""\n'
        )
        app = Nightcap.load(home)
        gguf = app.store.current().gguf
        threads = app.config.model.n_threads or max(1, os.cpu_count() or 2)
        env = dict(
            os.environ,
            NIGHTCAP_HOME=str(home),
            NIGHTCAP_KEYRING="off",
            NIGHTCAP_PASSPHRASE=os.environ.get("NIGHTCAP_PASSPHRASE", "bench"),
        )
        proc, port = start_server(home, env)
        raw = load_llama(gguf, app.config.model.n_ctx, threads, app.config.model.n_gpu_layers)
        template = template_of(raw)

        def raw_pieces(prompt: str, max_tokens: int) -> Iterator[str]:
            rendered = template.render([{"role": "user", "content": prompt}], add_generation_prompt=True)
            stream = raw.create_completion(
                rendered,
                max_tokens=max_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                top_p=app.config.chat.top_p,
                top_k=app.config.chat.top_k,
                stop=list(template.stop),
                stream=True,
            )
            return (c["choices"][0]["text"] for c in stream)

        res: dict[str, list[float]] = {"api_tps": [], "raw_tps": [], "api_ttft": [], "raw_ttft": []}
        try:
            token = api_token(app.home)
            with httpx.Client(timeout=300) as client:
                list(api_pieces(client, port, token, "hi", 4, {}))  # warm-up of both sides: first call, caches
                list(raw_pieces("hi", 4))
                for r in range(args.rounds):
                    for prompt in PROMPTS:
                        order = ("api", "raw") if r % 2 == 0 else ("raw", "api")
                        for side in order:
                            usage: dict[str, int] = {}
                            if side == "api":
                                first, last, text = _timed(
                                    api_pieces(client, port, token, prompt, args.max_tokens, usage)
                                )
                                n = usage.get("completion_tokens", 0)
                            else:
                                first, last, text = _timed(raw_pieces(prompt, args.max_tokens))
                                n = len(raw.tokenize(text.encode("utf-8"), add_bos=False))
                            res[f"{side}_tps"].append(_rate(first, last, n))
                            res[f"{side}_ttft"].append(first)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            raw.close()
    fig = {k: statistics.median(v) for k, v in res.items()}
    ratio = fig["api_tps"] / fig["raw_tps"] if fig["raw_tps"] else 0.0
    added_ms = (fig["api_ttft"] - fig["raw_ttft"]) * 1000
    print(
        f"{len(PROMPTS)} prompts x {args.rounds} rounds, {args.max_tokens} tokens max, {threads} threads, "
        f"greedy; medians"
    )
    print(f"{'metric':<26} {'API':>10} {'raw llama':>10} {'':>9}  target")
    print(f"{'decode tokens/s':<26} {fig['api_tps']:>10.2f} {fig['raw_tps']:>10.2f} {ratio:>8.3f}x  >= 0.95x")
    print(
        f"{'time to first token (ms)':<26} {fig['api_ttft'] * 1000:>10.1f} {fig['raw_ttft'] * 1000:>10.1f} "
        f"{added_ms:>+7.1f}ms  <= +10 ms"
    )
    print_json(
        {
            "bench": "serve",
            **{k: round(v, 4) for k, v in fig.items()},
            "tps_ratio": round(ratio, 3),
            "ttft_added_ms": round(added_ms, 1),
            "rounds": args.rounds,
            "max_tokens": args.max_tokens,
        }
    )
    return 0
