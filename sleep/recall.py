"""Recall figures of the consolidation benchmark: per probe, then by kind, category and split.

Each probe is scored twice in llama.cpp (`sleep.probes`): multiple choice (the answer ranked
against its distractors) and generation (the greedy reply contains the answer). Figures are
fractions with a 95% Wilson interval, so that a difference of one probe is read as what it is.

Secret probes are leakage: reported apart, lower is better, never part of recall. Bleed is the
share of generated replies that miss their own answer and contain another item's answer
instead: the symptom of one fact leaking into answers about others.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from sleep.evalset import EvalProbe

if TYPE_CHECKING:
    from models.scoring import Scorer

Z95 = 1.959964


@dataclass(frozen=True)
class Scored:
    probe: EvalProbe
    mc: bool
    gen: bool
    reply: str


@dataclass(frozen=True)
class Rate:
    """k of n, as a fraction with its 95% Wilson interval."""

    k: int
    n: int

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def __str__(self) -> str:
        if not self.n:
            return "-"
        lo, hi = self.interval
        return f"{self.value:.2f} [{lo:.2f}-{hi:.2f}]"


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def score_probes(scorer: "Scorer", probes: Sequence[EvalProbe], system: str, max_tokens: int = 24) -> list[Scored]:
    from sleep.probes import Probe, mc_correct

    out = []
    for p in probes:
        probe = Probe(p.question, p.answer, list(p.distractors), True)
        reply = scorer.greedy(scorer.chat_prompt(p.question, system), max_tokens)
        out.append(Scored(p, mc_correct(scorer, probe, system), contains(reply, p.answer), reply))
    return out


def contains(reply: str, answer: str) -> bool:
    """The benchmark's generation test: the reply contains the answer, ignoring case."""
    return answer.lower() in reply.lower()


def _has_word(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)", text.lower()) is not None


def bled(scored: Scored, others: Iterable[str]) -> bool:
    """The reply misses its own answer and holds another item's answer (as whole words)."""
    if scored.gen:
        return False
    own = {scored.probe.answer.lower(), *(d.lower() for d in scored.probe.distractors)}
    question = scored.probe.question.lower()
    return any(a.lower() not in own and not _has_word(question, a) and _has_word(scored.reply, a) for a in others)


def summarize(scored: Sequence[Scored]) -> dict[str, object]:
    """Counts by group: all recall probes, tune, check, each kind and category; leakage; bleed."""
    recall = [s for s in scored if not s.probe.secret]
    secret = [s for s in scored if s.probe.secret]
    answers_of: dict[str, set[str]] = {}
    for s in scored:
        answers_of.setdefault(s.probe.item, set()).add(s.probe.answer)

    def counts(group: Sequence[Scored]) -> dict[str, list[int]]:
        return {"mc": [sum(s.mc for s in group), len(group)], "gen": [sum(s.gen for s in group), len(group)]}

    def by(key: str) -> dict[str, dict[str, list[int]]]:
        names = sorted({getattr(s.probe, key) for s in recall})
        return {n: counts([s for s in recall if getattr(s.probe, key) == n]) for n in names}

    bleed = [bled(s, {a for item, ans in answers_of.items() if item != s.probe.item for a in ans}) for s in recall]
    return {"all": counts(recall), "split": by("split"), "kind": by("kind"), "category": by("category"),
            "secret": counts(secret), "bleed": [sum(bleed), len(bleed)]}


def pooled(summaries: Sequence[dict[str, object]]) -> dict[str, object]:
    """Counts of several runs (seeds) added together, group by group."""
    def add(parts: Sequence[object]) -> object:
        first = parts[0]
        if isinstance(first, list):
            return [sum(p[i] for p in parts) for i in range(len(first))]  # type: ignore[index]
        if isinstance(first, dict):
            keys = sorted({k for p in parts for k in p})  # type: ignore[attr-defined]
            return {k: add([p[k] for p in parts if k in p]) for k in keys}  # type: ignore[index,operator]
        raise TypeError(f"cannot pool {type(first).__name__}")

    return add(list(summaries))  # type: ignore[return-value]


def rate(pair: Sequence[int]) -> Rate:
    return Rate(int(pair[0]), int(pair[1]))
