"""Importance of each episode: the vault's flags, times how surprising the user's words were.

Flags come from log time (an explicit "remember", a correction, thumbs up/down: see
`assistant.episode`). Surprise is the mean per-token loss of the user's turn under the
pre-sleep model, computed here during sleep and never at chat time: what the model could not
have predicted is what it has to learn. It scales importance by `nll / mean nll` of the night,
clipped to [0.5, 2], so surprise reorders a night's episodes without changing its total.

Corrections must override what the model said before: their weight is raised further by
`correction_boost`, and every example made from them (dreams included) carries it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from assistant.episode import FLAG_CORRECTION, Episode
from sleep.dataset import IGNORE, Example, TokenizerLike

LOW, HIGH = 0.5, 2.0


@dataclass
class Importance:
    """Per-episode training weights and the surprise behind them (no content)."""

    weights: dict[str, float]
    surprise: dict[str, float]
    """Mean negative log-likelihood of the user's turn, nats per token (empty when off)."""


def user_turn_example(ep: Episode, tokenizer: TokenizerLike, max_len: int = 128) -> Example:
    """The user's words as a plain sequence whose every token is scored."""
    ids = tokenizer.encode(ep.user_text, add_bos=True, special=False)[:max_len]
    return Example(ids, [IGNORE] + ids[1:], 1.0, "surprise", ep.id)


def user_nll(model: Any, episodes: Sequence[Episode], tokenizer: TokenizerLike) -> dict[str, float]:
    """Mean NLL per token of each episode's user turn under `model` (one forward each)."""
    import torch

    from sleep.dataset import collate
    from sleep.loss import lm_parts, weighted_ce

    parts = lm_parts(model)
    device = next(model.parameters()).device
    out: dict[str, float] = {}
    from assistant.stoppoints import stop_point

    with torch.no_grad():
        for ep in episodes:
            stop_point()
            ex = user_turn_example(ep, tokenizer)
            if ex.n_labels == 0:
                continue
            out[ep.id] = float(weighted_ce(parts, collate([ex]).to(device)))
    return out


def weigh(
    episodes: Sequence[Episode], surprise: dict[str, float] | None = None, correction_boost: float = 1.5
) -> Importance:
    """Weights from flags, scaled by relative surprise when given, corrections boosted."""
    surprise = surprise or {}
    mean = sum(surprise.values()) / len(surprise) if surprise else 0.0
    weights: dict[str, float] = {}
    for ep in episodes:
        w = ep.importance
        if ep.id in surprise and mean > 0:
            w *= min(HIGH, max(LOW, surprise[ep.id] / mean))
        if FLAG_CORRECTION in ep.flags or ep.correction is not None:
            w *= correction_boost
        weights[ep.id] = round(w, 4)
    return Importance(weights, {k: round(v, 4) for k, v in surprise.items()})
