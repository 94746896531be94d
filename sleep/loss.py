"""The training loss, computed without full-vocabulary logits.

The default model's vocabulary has 262,144 entries: a [batch, seq, vocab] logits tensor is most
of a training step's time and memory, yet only the assistant's tokens carry loss. So the model's
body (the decoder stack) runs alone (the prefix every sequence shares only once:
`sleep.shared_prefix`), the hidden states at labelled positions (shifted by one: position i-1
predicts token i) are gathered, and the output head runs on those rows only, in chunks, with its
gradient computed on the spot (`sleep.head_ce`), so memory stays bounded at `chunk x vocab`
floats and no logits are kept for backward.

`full_logits_ce` is the straightforward computation (`model(...).logits`) kept as the reference
the fast path is tested and benchmarked against. `LossTerm` is the seam for extra terms (KL to
the frozen model on replay samples, EWC) that the trainer adds to the cross-entropy.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from sleep.dataset import IGNORE, Batch
from sleep.head_ce import HeadCE, fusable, matmul_dtype
from sleep.shared_prefix import body_hidden, cache_keyword

LOGIT_BUDGET = 1 << 25
"""Largest number of logits (rows x vocab) materialised at once: 128 MB in fp32. Large chunks
matter for speed (a night's labelled rows fit in one or two), and the loss keeps one buffer."""


class LossTerm(Protocol):
    """An extra term of the training objective, added to the weighted cross-entropy.

    Called once per optimizer step with the peft-wrapped model (its adapter is trainable;
    `with model.disable_adapter():` gives the frozen base) and the 0-based step index. Returns a
    scalar tensor on the model's device; the trainer backpropagates it and reports its value
    under `name`. Terms that sample data must derive the sample from `step` (not from global
    random state) so that a resumed run equals an uninterrupted one.
    """

    name: str

    def __call__(self, model: Any, step: int) -> torch.Tensor: ...


@dataclass
class LMParts:
    """The pieces of a causal LM that the fast loss calls separately."""

    body: torch.nn.Module
    """The decoder stack: input ids -> last hidden states."""
    head: torch.nn.Module
    """The output projection: hidden states -> logits."""
    softcap: float | None
    """Gemma-style final logit soft-capping (cap * tanh(logits / cap)), or None."""
    cache_kw: str | None = None
    """Keyword of the body's KV cache argument (None: no shared-prefix forward)."""
    window: int | None = None
    """Sliding attention window, if the model has one."""

    def head_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The frozen head weight in `dtype`. A cast copy is made once per head and shared by
        every LMParts of that head (the training loss and the KL term): casting the 262k x
        hidden matrix each step cost about a tenth of a step, and each extra copy 335 MB."""
        weight = self.head.get_parameter("weight")
        if weight.dtype == dtype:
            return weight
        if dtype.itemsize > weight.dtype.itemsize:  # widening (a bf16-stored head in fp32 code): not kept
            return weight.detach().to(dtype)
        casts = _CASTS.setdefault(self.head, {})
        key = (weight.data_ptr(), weight._version)
        if dtype not in casts or casts[dtype][0] != key:
            casts[dtype] = (key, weight.detach().to(dtype))
        return casts[dtype][1]


_CASTS: "weakref.WeakKeyDictionary[torch.nn.Module, dict[torch.dtype, tuple[Any, torch.Tensor]]]" = (
    weakref.WeakKeyDictionary()
)
"""Cast copies of output heads, dropped with their head."""


def store_vocab_in(model: Any, dtype: torch.dtype) -> None:
    """Keep the frozen input embedding and output head of `model` in `dtype` (bf16 for a bf16
    night). They are the largest matrices of a small model with a big vocabulary (the default
    one: 262,144 x 640, 671 MB in fp32) and training reads the head in bf16 anyway. Looked-up
    embeddings are widened back to fp32 before any scaling, so the decoder runs as before."""
    import torch.nn.functional as F

    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and head.weight is embed.weight
    embed.weight = torch.nn.Parameter(embed.weight.detach().to(dtype), requires_grad=False)
    if tied:
        head.weight = embed.weight
    elif head is not None and type(head) is torch.nn.Linear and head.bias is None:
        head.weight = torch.nn.Parameter(head.weight.detach().to(dtype), requires_grad=False)
    scale = getattr(embed, "embed_scale", None)  # Gemma multiplies embeddings by sqrt(hidden)

    def lookup(input_ids: torch.Tensor) -> torch.Tensor:
        out = F.embedding(input_ids, embed.weight, embed.padding_idx).float()
        return out if scale is None else out * torch.as_tensor(scale, dtype=torch.float32, device=out.device)

    embed.forward = lookup


def lm_parts(model: Any) -> LMParts:
    """Split a (possibly peft-wrapped) transformers causal LM into body, head and soft-cap."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = base.get_decoder() if hasattr(base, "get_decoder") else None
    if body is None or body is base:
        body = getattr(base, "model", None)
    head = base.get_output_embeddings()
    if body is None or head is None:
        raise TypeError(f"{type(base).__name__} is not a causal language model with a decoder and an output head")
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    cap = getattr(config, "final_logit_softcapping", None)
    window = getattr(config, "sliding_window", None)
    return LMParts(body, head, float(cap) if cap else None, cache_keyword(body), int(window) if window else None)


def _logits(head: torch.nn.Module, softcap: float | None, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def labelled_hidden(parts: LMParts, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states that predict labelled tokens: (hidden [N, H], targets [N], row [N],
    label weight [N])."""
    hidden, offset = body_hidden(parts.body, batch, parts.cache_kw, parts.window)
    targets = batch.labels[:, offset + 1 :]
    keep = targets != IGNORE
    rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)[keep]
    return hidden[:, :-1][keep], targets[keep], rows, batch.label_weights[:, offset + 1 :][keep]


def _token_ce(
    head: torch.nn.Module, softcap: float | None, hidden: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    return F.cross_entropy(_logits(head, softcap, hidden), targets, reduction="none")


def token_ce(parts: LMParts, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-row cross-entropy of `targets` under the head, in bounded memory."""
    vocab = parts.head.get_parameter("weight").shape[0] if hasattr(parts.head, "weight") else 1 << 18
    chunk = max(1, LOGIT_BUDGET // vocab)
    if fusable(parts.head):
        weight = parts.head_weight(matmul_dtype(hidden.device))
        return HeadCE.apply(hidden, weight, targets, parts.softcap, chunk)
    # A head that trains or is not a plain linear layer: chunks whose logits are recomputed in
    # backward instead of kept.
    pieces = []
    for i in range(0, hidden.shape[0], chunk):
        h, t = hidden[i : i + chunk], targets[i : i + chunk]
        if torch.is_grad_enabled() and h.requires_grad and hidden.shape[0] > chunk:
            pieces.append(checkpoint(_token_ce, parts.head, parts.softcap, h, t, use_reentrant=False))
        else:
            pieces.append(_token_ce(parts.head, parts.softcap, h, t))
    return torch.cat(pieces)


def _weighted_mean(
    token_losses: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor, label_weights: torch.Tensor
) -> torch.Tensor:
    """Weighted mean loss per example (each label by its label weight), times the example's
    weight, averaged over the batch's examples."""
    n = weights.shape[0]
    label_weights = label_weights.to(token_losses.dtype)
    sums = torch.zeros(n, dtype=token_losses.dtype, device=token_losses.device).index_add(
        0, rows, token_losses * label_weights
    )
    counts = torch.zeros(n, dtype=token_losses.dtype, device=token_losses.device).index_add(0, rows, label_weights)
    per_example = sums / counts.clamp(min=1)
    return (per_example * weights.to(per_example.dtype)).sum() / n


def weighted_ce(parts: LMParts, batch: Batch) -> torch.Tensor:
    """The training objective on `batch`: each example's mean token cross-entropy on its
    labels, times its weight, averaged over examples, plus the rival term of rows that have
    rivals (`rival_loss`). Logits only at labelled positions."""
    hidden, targets, rows, label_weights = labelled_hidden(parts, batch)
    loss = _weighted_mean(token_ce(parts, hidden, targets), rows, batch.weights, label_weights)
    if batch.rivals is not None and batch.rival_weights is not None:
        loss = loss + rival_loss(parts, hidden, rows, batch.rivals, batch.rival_weights * batch.weights)
    return loss


def rival_loss(
    parts: LMParts, hidden: torch.Tensor, rows: torch.Tensor, rivals: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """-log(1 - P(rivals)) at each row's first labelled position (where its answer starts):
    an unlikelihood term on the total probability of the row's rival tokens, times the row's
    weight, averaged over the batch's rows. `rivals` [B, K] is padded with -1."""
    n = rivals.shape[0]
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]  # labelled positions come row by row, in order
    at, row = first.nonzero().flatten(), rows[first]
    keep = weights[row] > 0
    at, row = at[keep], row[keep]
    if row.numel() == 0:
        return hidden.new_zeros(()).float()
    logp = torch.log_softmax(_logits(parts.head, parts.softcap, hidden[at]), dim=-1)
    mine = rivals[row]
    rival = logp.gather(1, mine.clamp(min=0)).masked_fill(mine < 0, float("-inf"))
    log_p = torch.logsumexp(rival, dim=-1).clamp(max=-1e-6)
    return (-torch.log1p(-torch.exp(log_p)) * weights[row]).sum() / n


def full_logits_ce(model: Any, batch: Batch) -> torch.Tensor:
    """`weighted_ce` computed the naive way, from the model's full [B, T, vocab] logits."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    # Shift the labels rather than the logits, as transformers' own loss does (no logits copy).
    targets = F.pad(batch.labels, (0, 1), value=IGNORE)[:, 1:]
    keep = targets != IGNORE
    rows = torch.arange(targets.shape[0], device=targets.device).unsqueeze(1).expand_as(targets)[keep]
    flat = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none", ignore_index=IGNORE
    )
    return _weighted_mean(flat[keep.reshape(-1)], rows, batch.weights, F.pad(batch.label_weights, (0, 1))[:, 1:][keep])
