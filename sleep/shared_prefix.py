"""Run the model body once for the prefix that every sequence of a batch shares.

Every training sequence starts the way serving starts a conversation: BOS, the turn marker and
the system prompt, typically a third of an episode's tokens. Those positions are computed once
(batch of one), their keys and values are repeated across the batch through the model's KV
cache, and only the rest of each sequence runs batched. Gradients flow back through the cached
keys and values into the shared positions, summed over the batch, so loss and gradients equal
the plain batched forward (up to float rounding; tested). About 13% of a step on the default
model with the default system prompt.

Used only when it is safe: at least `MIN_PREFIX` shared tokens, no label inside the prefix,
sequences within the model's sliding window, and a body that takes a KV cache.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from sleep.dataset import IGNORE, Batch

MIN_PREFIX = 4
"""Shorter shared prefixes are not worth a second forward call."""


def cache_keyword(body: torch.nn.Module) -> str | None:
    """The name under which `body.forward` takes a KV cache (transformers renamed it), or None."""
    try:
        params = inspect.signature(body.forward).parameters
    except (TypeError, ValueError):
        return None
    return next((k for k in ("cache", "past_key_values") if k in params), None)


def shared_prefix_len(batch: Batch, window: int | None) -> int:
    """How many leading positions can be computed once for the whole batch (0: none)."""
    ids, mask, labels = batch.input_ids, batch.attention_mask, batch.labels
    if ids.shape[0] < 2 or (window is not None and ids.shape[1] >= window):
        return 0
    same = ((ids == ids[:1]) & mask.bool()).all(dim=0).long().cumprod(dim=0)
    labelled = labels != IGNORE
    # Position i's hidden state predicts token i+1: labelled tokens must lie beyond the prefix,
    # and every row keeps at least one position of its own.
    first_label = int(torch.where(labelled.any(dim=1), labelled.long().argmax(dim=1), ids.shape[1]).min())
    length = min(int(same.sum()), first_label - 1, int(mask.sum(dim=1).min()) - 1)
    return length if length >= MIN_PREFIX else 0


def body_hidden(
    body: torch.nn.Module, batch: Batch, cache_kw: str | None, window: int | None
) -> tuple[torch.Tensor, int]:
    """Last hidden states from position `offset` on, and `offset` (the shared prefix length)."""
    prefix = shared_prefix_len(batch, window) if cache_kw else 0
    if prefix == 0 or cache_kw is None:
        out = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        return _last_hidden(out), 0
    first = body(input_ids=batch.input_ids[:1, :prefix], use_cache=True)
    cache = getattr(first, cache_kw, None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        out = body(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
        return _last_hidden(out), 0
    cache.batch_repeat_interleave(batch.input_ids.shape[0])
    out = body(
        input_ids=batch.input_ids[:, prefix:], attention_mask=batch.attention_mask, use_cache=True, **{cache_kw: cache}
    )
    return _last_hidden(out), prefix


def _last_hidden(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out.last_hidden_state
