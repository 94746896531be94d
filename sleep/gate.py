"""The gates a candidate model must pass before promotion, run on the quantized candidate in
llama.cpp exactly as it would serve.

- health: it loads, gives finite logits and non-empty answers;
- recall: held-out probes made from the night's episodes (never trained on) have their answer
  more likely than before sleep;
- retention: general multiple-choice accuracy stays within `gate_min_retention` of the
  pre-sleep model's; perplexity on held-out general text rises at most
  `gate_max_perplexity_rise`; the next-token distributions drift at most `gate_max_drift`.

Thresholds live in config.toml's [sleep]; `gates = "health"` keeps only the health gate. A
candidate that fails is never promoted; the previous generation keeps serving, the episodes stay
for the next night, and the report names the gate with its value and threshold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.errors import ModelError
from assistant.fsutil import atomic_write_json, ensure_dir
from sleep.report import GateResult

if TYPE_CHECKING:
    from assistant.config import SleepConfig
    from sleep.probes import Probe

BASELINE_VERSION = 1

HEALTH_PROMPTS = ["Hello! How are you today?", "What is the capital of France?", "Name three colours."]


def health_gate(candidate: Path, system_prompt: str = "") -> list[GateResult]:
    """Load `candidate`, check logits are finite and greedy replies are non-empty."""
    from models.scoring import Scorer

    try:
        scorer = Scorer(candidate, n_ctx=256)
    except ModelError as err:
        return [GateResult("loads", False, detail=str(err))]
    try:
        results = [GateResult("loads", True)]
        finite = all(
            np.isfinite(scorer.last_logits(scorer.chat_prompt(p, system_prompt))).all() for p in HEALTH_PROMPTS
        )
        results.append(GateResult("finite_logits", bool(finite)))
        answered = sum(bool(scorer.greedy(scorer.chat_prompt(p, system_prompt), 24).strip()) for p in HEALTH_PROMPTS)
        results.append(
            GateResult(
                "answers",
                answered == len(HEALTH_PROMPTS),
                float(answered),
                float(len(HEALTH_PROMPTS)),
                "non-empty greedy replies",
            )
        )
        return results
    finally:
        scorer.close()


def quality_gates(
    candidate: Path,
    before: Path,
    before_sha: str,
    heldout: list["Probe"],
    cfg: "SleepConfig",
    system_prompt: str,
    cache_dir: Path,
) -> list[GateResult]:
    """Recall on held-out probes, retention of general knowledge, perplexity and drift, each
    against the pre-sleep generation `before` (its figures cached by sha256 in `cache_dir`).
    A candidate that passes all three retention gates leaves its own figures in the cache too:
    once promoted it is the next night's or forget's `before`, and they need not be scored again."""
    from models.scoring import Scorer
    from sleep import probes as P

    general = P.general_probes(P.load_jsonl(P.eval_path("gate-general.jsonl")))
    text = P.eval_path("gate-text.txt").read_text(encoding="utf-8")
    prompts = [g.prompt for g in general]  # plain prompts: the drift of the model's own knowledge
    want_recall = cfg.gate_min_recall > 0 and heldout
    base = _baseline(before, before_sha, general, text, prompts, cache_dir)
    recall_before: list[float] = []
    if want_recall:
        scorer = Scorer(before, n_ctx=512)
        try:
            recall_before = [P.answer_logprob(scorer, p, system_prompt) for p in heldout]
        finally:
            scorer.close()
    scorer = Scorer(candidate, n_ctx=512)
    mine: dict[str, Any] = {"version": BASELINE_VERSION}
    try:
        out = []
        if want_recall:
            after = [P.answer_logprob(scorer, p, system_prompt) for p in heldout]
            frac = sum(a > b for a, b in zip(after, recall_before)) / len(heldout)
            gain = sum(a - b for a, b in zip(after, recall_before)) / len(heldout)
            out.append(
                GateResult(
                    "recall",
                    frac >= cfg.gate_min_recall,
                    round(frac, 4),
                    cfg.gate_min_recall,
                    f"held-out probes recalled better: {frac:.0%}, mean log-prob gain {gain:+.2f}",
                )
            )
        if cfg.gate_min_retention > 0:
            acc = mine["general_mc"] = P.mc_accuracy(scorer, general)
            ratio = acc / base["general_mc"] if base["general_mc"] > 0 else 1.0
            out.append(
                GateResult(
                    "retention",
                    ratio >= cfg.gate_min_retention,
                    round(ratio, 4),
                    cfg.gate_min_retention,
                    f"general multiple choice {acc:.3f} vs {base['general_mc']:.3f} before",
                )
            )
        if cfg.gate_max_perplexity_rise > 0:
            ppl = mine["perplexity"] = P.perplexity(scorer, text)
            rise = ppl / base["perplexity"] - 1.0
            out.append(
                GateResult(
                    "perplexity",
                    rise <= cfg.gate_max_perplexity_rise,
                    round(rise, 4),
                    cfg.gate_max_perplexity_rise,
                    f"held-out perplexity {ppl:.2f} vs {base['perplexity']:.2f} before",
                )
            )
        if cfg.gate_max_drift > 0:
            kl = P.drift(scorer, prompts, [{int(k): v for k, v in d.items()} for d in base["topk"]])
            out.append(
                GateResult(
                    "drift",
                    kl <= cfg.gate_max_drift,
                    round(kl, 4),
                    cfg.gate_max_drift,
                    "mean KL (nats) from the pre-sleep next-token distributions",
                )
            )
            if {"general_mc", "perplexity"} <= mine.keys() and all(r.passed for r in out):
                mine["topk"] = _topk_json(P.next_token_topk(scorer, prompts))
    finally:
        scorer.close()
    if "topk" in mine:
        from models.provision import sha256_file

        atomic_write_json(_baseline_path(cache_dir, sha256_file(candidate)), mine)
    return out


def _baseline_path(cache_dir: Path, sha: str) -> Path:
    return ensure_dir(cache_dir) / f"gate-{sha[:32]}.json"


def _topk_json(topk: list[dict[int, float]]) -> list[dict[str, float]]:
    return [{str(k): v for k, v in d.items()} for d in topk]


def _baseline(
    before: Path, sha: str, general: list["Probe"], text: str, prompts: list[str], cache_dir: Path
) -> dict[str, Any]:
    """The pre-sleep generation's figures: computed once per generation, then read from cache
    (they describe the model, not the user)."""
    from models.scoring import Scorer
    from sleep import probes as P

    path = _baseline_path(cache_dir, sha)
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == BASELINE_VERSION and len(data.get("topk", [])) == len(prompts):
                return data
        except (OSError, json.JSONDecodeError):
            pass  # recomputed below
    scorer = Scorer(before, n_ctx=512)
    try:
        data = {
            "version": BASELINE_VERSION,
            "general_mc": P.mc_accuracy(scorer, general),
            "perplexity": P.perplexity(scorer, text),
            "topk": _topk_json(P.next_token_topk(scorer, prompts)),
        }
    finally:
        scorer.close()
    atomic_write_json(path, data)
    return data
