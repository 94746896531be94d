"""Cross-entropy through a frozen output head, with its gradient computed in the forward pass.

For a 262,144-word vocabulary the logits of even a few hundred tokens take hundreds of MB, and
autograd would keep them (and their softmax) until backward. Since the head is frozen, the
only gradient needed is d(loss_i)/d(hidden_i) = (softmax_i - onehot_i) @ W, which can be
computed right away, chunk by chunk, while the chunk's logits are at hand. Forward then stores
only that [N, hidden] gradient; backward scales it by the upstream gradient of each row.
Same arithmetic as logits + cross_entropy + autograd, no recomputation, one chunk of logits
in memory at a time. (The idea of Liger-Kernel's fused linear cross-entropy, in plain torch.)

Gemma-style soft-capping (z -> cap * tanh(z / cap)) is included: its derivative
1 - tanh^2 = 1 - (capped / cap)^2 is applied to the logit gradient.
"""

from __future__ import annotations

from typing import Any

import torch


def keep_gradient(ctx: Any, grad: torch.Tensor | None, hidden: torch.Tensor) -> None:
    """Store the gradient a fused head function computed in its forward pass, for `scaled_gradient`."""
    ctx.save_for_backward(grad if grad is not None else torch.empty(0))
    ctx.hidden_dtype = hidden.dtype


def scaled_gradient(ctx: Any, upstream: torch.Tensor) -> torch.Tensor:
    """The hidden states' gradient: the stored per-row gradient times each row's upstream gradient."""
    (grad,) = ctx.saved_tensors
    return (upstream.unsqueeze(1) * grad).to(ctx.hidden_dtype)


SLOPE_ROWS = 16
"""Rows of the kept tanh widened to fp32 at a time for the soft-cap's slope: a mixed-dtype
in-place product runs ~4x slower than an fp32 one, and 16 rows of the default vocabulary are
16 MB."""


class HeadCE(torch.autograd.Function):
    """Per-row CE of `targets` under logits = softcap(hidden @ weight.T); weight is frozen and
    already in the matmul dtype (fp32, or bf16 under autocast). Returns float32 losses."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        softcap: float | None,
        chunk: int,
    ) -> torch.Tensor:
        n = hidden.shape[0]
        losses = torch.empty(n, dtype=torch.float32, device=hidden.device)
        grad = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if hidden.requires_grad else None
        with torch.autocast(hidden.device.type, enabled=False), torch.no_grad():
            for i in range(0, n, chunk):
                t = targets[i : i + chunk].unsqueeze(1)
                z = (hidden[i : i + chunk].to(weight.dtype) @ weight.T).float()
                slope = None
                if softcap:
                    z.div_(softcap).tanh_()
                    # tanh(raw / cap), kept for the gradient's slope 1 - tanh^2 in the matmul's
                    # dtype (the logits came out of a matmul of that precision): a bf16 night
                    # keeps half the bytes, and the copy goes before the gradient's matmul.
                    slope = z.to(weight.dtype, copy=True) if grad is not None else None
                    z.mul_(softcap)
                # In place from here: each [chunk, vocab] pass is memory-bound, a fresh buffer
                # per pass costs as much again.
                top = z.amax(dim=1, keepdim=True)
                picked = z.gather(1, t)
                z.sub_(top).exp_()
                total = z.sum(dim=1, keepdim=True)
                losses[i : i + chunk] = (total.log() + top - picked).squeeze(1)
                if grad is None:
                    continue
                z.div_(total)  # softmax
                z.scatter_add_(1, t, torch.full_like(picked, -1.0))  # minus one-hot
                if slope is not None:
                    # d capped / d raw = 1 - tanh^2, widened to fp32 a few rows at a time
                    for j in range(0, z.shape[0], SLOPE_ROWS):
                        z[j : j + SLOPE_ROWS].mul_(slope[j : j + SLOPE_ROWS].float().square_().neg_().add_(1.0))
                    slope = None
                grad[i : i + chunk] = (z.to(weight.dtype) @ weight).float()
        keep_gradient(ctx, grad, hidden)
        return losses

    @staticmethod
    def backward(ctx: Any, upstream: torch.Tensor) -> tuple[Any, ...]:
        return scaled_gradient(ctx, upstream), None, None, None, None


def fusable(head: torch.nn.Module) -> bool:
    """Whether `head` is a plain frozen bias-free linear layer that HeadCE can stand in for."""
    return type(head) is torch.nn.Linear and head.bias is None and not head.weight.requires_grad


def matmul_dtype(device: torch.device) -> torch.dtype:
    """The dtype autocast would use for a matmul here right now (fp32 outside autocast)."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else torch.float32
