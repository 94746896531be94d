"""Recall and retention probes, scored in llama.cpp on the quantized model as it would serve.

Used by the quality gates (`sleep.gate`) and by `nightcap bench consolidation`:

- multiple choice: rank the answer against distractors by mean per-token log-probability after
  the prompt (chat-formatted question for personal facts, plain prompt for general knowledge);
  the prompt is evaluated once and every option continues from its KV cache;
- generation: the greedy reply contains the answer (case-insensitive);
- perplexity of a held-out general text;
- drift: mean KL from the pre-sleep model's next-token distribution to the candidate's after a
  set of prompts (top-k support, which holds nearly all the mass of a peaked LM).

Probe files are JSONL in the format of the benchmarks' development set (`bench/eval/`): facts
`{"id", "teach": [...], "probes": [{"question", "answer", "distractors"}]}` and general
`{"id", "prompt", "answer", "distractors"}` (also the format of the gates' `sleep/eval/gate-general.jsonl`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from assistant.errors import UsageError

if TYPE_CHECKING:
    from models.scoring import Scorer

DRIFT_TOP_K = 64


def eval_path(name: str) -> Path:
    """A file of `sleep/eval/`: the quality gates' own gate-general.jsonl and gate-text.txt, which the
    benchmark never scores (its development set is in `bench/eval/`, read through `bench.data_path`)."""
    return Path(str(resources.files("sleep").joinpath("eval", name)))


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file. Raises UsageError for a missing or malformed file."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(ln) for ln in lines if ln.strip()]
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"cannot read {path} ({err}); give a JSONL file in the format of bench/eval/") from err


@dataclass
class Probe:
    """One multiple-choice question with its answer first among the options."""

    prompt: str
    answer: str
    distractors: list[str] = field(default_factory=list)
    chat: bool = True


def fact_probes(facts: Sequence[dict[str, Any]]) -> list[Probe]:
    return [Probe(p["question"], p["answer"], list(p.get("distractors", [])), True) for f in facts for p in f["probes"]]


def general_probes(general: Sequence[dict[str, Any]]) -> list[Probe]:
    return [Probe(g["prompt"], g["answer"], list(g.get("distractors", [])), False) for g in general]


def _log_softmax(row: np.ndarray) -> np.ndarray:
    row = np.asarray(row, dtype=np.float64)
    m = row.max()
    return row - (m + math.log(np.exp(row - m).sum()))


def option_logprobs(scorer: "Scorer", prompt: str, options: Sequence[str], mean: bool = True) -> list[float]:
    """Mean per-token log-probability of each option after `prompt` (leading space added after
    a prompt that does not end in whitespace, as `Scorer.choose` does); with `mean=False`, the
    total. The prompt's tokens are evaluated once; each option from the cached prefix."""
    llm = scorer.llm
    sep = "" if prompt.endswith((" ", "\n")) else " "
    p = scorer.tokens(prompt, add_bos=True)
    fulls = [scorer.tokens(prompt + sep + o, add_bos=True) for o in options]
    starts = []
    for f in fulls:  # where each option starts: its common prefix with the prompt, in context
        k = 0
        while k < min(len(p), len(f)) and f[k] == p[k]:
            k += 1
        starts.append(max(1, min(k, len(f) - 1)))
    shared = min(starts)
    scorer.evaluate(p[:shared])
    out = []
    for f, k in zip(fulls, starts):
        scorer.evaluate(f)
        total = sum(float(_log_softmax(llm.scores[i - 1])[f[i]]) for i in range(k, len(f)))
        out.append(total / max(1, len(f) - k) if mean else total)
    return out


def render(scorer: "Scorer", probe: Probe, system: str) -> str:
    return scorer.chat_prompt(probe.prompt, system) if probe.chat else probe.prompt


def mc_correct(scorer: "Scorer", probe: Probe, system: str = "") -> bool:
    scores = option_logprobs(scorer, render(scorer, probe, system), [probe.answer] + probe.distractors)
    return int(np.argmax(scores)) == 0


def mc_accuracy(scorer: "Scorer", probes: Sequence[Probe], system: str = "") -> float:
    return sum(mc_correct(scorer, p, system) for p in probes) / len(probes) if probes else 0.0


def gen_correct(scorer: "Scorer", probe: Probe, system: str = "", max_tokens: int = 24) -> bool:
    return probe.answer.lower() in scorer.greedy(render(scorer, probe, system), max_tokens).lower()


def gen_accuracy(scorer: "Scorer", probes: Sequence[Probe], system: str = "", max_tokens: int = 24) -> float:
    return sum(gen_correct(scorer, p, system, max_tokens) for p in probes) / len(probes) if probes else 0.0


def answer_logprob(scorer: "Scorer", probe: Probe, system: str = "") -> float:
    """Mean log-probability of the probe's answer alone (recall strength without distractors)."""
    return option_logprobs(scorer, render(scorer, probe, system), [probe.answer])[0]


def perplexity(scorer: "Scorer", text: str) -> float:
    return scorer.perplexity(text)


def next_token_topk(scorer: "Scorer", prompts: Sequence[str], k: int = DRIFT_TOP_K) -> list[dict[int, float]]:
    """Top-k next-token log-probabilities after each prompt (the pre-sleep side of drift)."""
    out = []
    for prompt in prompts:
        lp = _log_softmax(scorer.last_logits(prompt))
        top = np.argpartition(-lp, k)[:k]
        out.append({int(t): float(lp[t]) for t in top})
    return out


def drift(scorer: "Scorer", prompts: Sequence[str], before: Sequence[dict[int, float]]) -> float:
    """Mean KL(before || candidate) in nats over `prompts`, on the pre-sleep top-k tokens."""
    total = 0.0
    for prompt, ref in zip(prompts, before):
        lp = _log_softmax(scorer.last_logits(prompt))
        toks = list(ref)
        p = np.exp(np.array([ref[t] for t in toks]))
        q = np.array([lp[t] for t in toks])
        p_norm = p / p.sum()
        total += float((p_norm * (np.log(p_norm) - (q - math.log(np.exp(q).sum())))).sum())
    return total / max(1, len(prompts))
