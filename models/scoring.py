"""Scoring a model in llama.cpp: log-probabilities of continuations and greedy answers.

Used by the sleep cycle's gates and by `nightcap bench consolidation`, so candidates are judged
exactly as they will serve (quantized, in llama.cpp), not as the fp32 training copy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from assistant.episode import with_system
from assistant.stoppoints import stop_point
from models.runtime import load_llama, template_of
from models.templates import ChatTemplate, Message


def _log_softmax(row: np.ndarray) -> np.ndarray:
    m = row.max()
    return row - (m + math.log(np.exp(row - m).sum()))


class Scorer:
    """A GGUF loaded for evaluation (all logits kept; short contexts)."""

    def __init__(self, gguf: Path, n_ctx: int = 256, n_threads: int = 0) -> None:
        self.llm: Any = load_llama(gguf, n_ctx=n_ctx, n_threads=n_threads, logits_all=True)
        self.template: ChatTemplate = template_of(self.llm)

    def close(self) -> None:
        self.llm.close()

    def tokens(self, text: str, add_bos: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)

    def chat_prompt(self, question: str, system: str = "") -> str:
        msgs: list[Message] = with_system(system, [{"role": "user", "content": question}])
        return self.template.render(msgs, add_generation_prompt=True)

    def evaluate(self, toks: list[int]) -> None:
        """Evaluate `toks` so that `llm.scores[i]` holds the logits after `toks[: i + 1]`, reusing
        the longest prefix already evaluated: probes share a chat prefix (and, in the benchmark's
        facts-in-the-prompt row, a long system prompt), so most tokens need no new evaluation."""
        stop_point()  # scoring two models is minutes on a bigger one: yield here
        cached = self.llm.input_ids[: self.llm.n_tokens]
        k = 0
        limit = min(len(cached), len(toks))
        while k < limit and int(cached[k]) == toks[k]:
            k += 1
        self.llm.n_tokens = k
        if k < len(toks):
            self.llm.eval(toks[k:])

    def last_logits(self, prompt: str) -> np.ndarray:
        """Next-token logits after `prompt`."""
        toks = self.tokens(prompt, add_bos=True)
        self.evaluate(toks)
        return np.array(self.llm.scores[len(toks) - 1], dtype=np.float32)

    def mean_logprob(self, prompt: str, continuation: str) -> float:
        """Mean per-token log-probability of `continuation` after `prompt`."""
        p = self.tokens(prompt, add_bos=True)
        full = self.tokens(prompt + continuation, add_bos=True)
        # Tokenize the continuation in context: the shared prefix is the prompt's tokens.
        k = 0
        while k < min(len(p), len(full)) and p[k] == full[k]:
            k += 1
        k = max(1, min(k, len(full) - 1))
        self.evaluate(full)
        scores = self.llm.scores
        total = 0.0
        for i in range(k, len(full)):
            total += float(_log_softmax(np.asarray(scores[i - 1], dtype=np.float64))[full[i]])
        return total / max(1, len(full) - k)

    def choose(self, prompt: str, options: list[str]) -> int:
        """Index of the option with the highest mean log-probability (leading space added)."""
        return int(
            np.argmax([self.mean_logprob(prompt, " " + o if not prompt.endswith((" ", "\n")) else o) for o in options])
        )

    def greedy(self, prompt: str, max_tokens: int = 32) -> str:
        # No reset: llama.cpp reuses the prompt's prefix already in the cache. Streamed, so that
        # a stop point comes after every token.
        pieces = []
        for chunk in self.llm.create_completion(
            prompt, max_tokens=max_tokens, temperature=0.0, stop=self.template.stop, repeat_penalty=1.0, stream=True
        ):
            stop_point()
            pieces.append(str(chunk["choices"][0]["text"]))
        return "".join(pieces)

    def perplexity(self, text: str) -> float:
        """exp(mean negative log-likelihood) of `text` (after BOS), in windows of the context."""
        toks = self.tokens(text, add_bos=True)
        n_ctx = self.llm.n_ctx()
        nll, count = 0.0, 0
        for start in range(0, len(toks) - 1, n_ctx - 1):
            window = toks[start : start + n_ctx]
            if len(window) < 2:
                break
            stop_point()
            self.llm.reset()
            self.llm.eval(window)
            for i in range(1, len(window)):
                nll -= float(_log_softmax(np.asarray(self.llm.scores[i - 1], dtype=np.float64))[window[i]])
                count += 1
        return math.exp(nll / max(1, count))
