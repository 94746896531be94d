"""The health gate: a candidate model must load in llama.cpp, give finite logits and answer.

Run on the quantized candidate exactly as it would serve. A candidate that fails is never
promoted; the previous generation keeps serving and the episodes stay for the next night.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from assistant.errors import ModelError
from sleep.report import GateResult

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
        finite = all(np.isfinite(scorer.last_logits(scorer.chat_prompt(p, system_prompt))).all()
                     for p in HEALTH_PROMPTS)
        results.append(GateResult("finite_logits", bool(finite)))
        answered = sum(bool(scorer.greedy(scorer.chat_prompt(p, system_prompt), 24).strip()) for p in HEALTH_PROMPTS)
        results.append(GateResult("answers", answered == len(HEALTH_PROMPTS), float(answered),
                                  float(len(HEALTH_PROMPTS)), "non-empty greedy replies"))
        return results
    finally:
        scorer.close()
