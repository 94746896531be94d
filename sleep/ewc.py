"""EWC: a penalty on changing the weights that the model's old knowledge depends on.

The diagonal Fisher of a linear layer y = W x is E[(dL/dy_i)^2 x_j^2]; like K-FAC we take it as
the product of its two marginals, F_ij = g_i * a_j, with g the mean squared output gradient and
a the mean squared input, gathered with hooks over a few backward passes on foundational
samples (the replay samples: the model's own continuations, so the gradients are those of the
model's own distribution). That is two vectors per layer instead of a copy of the weights, and
it makes the penalty on the LoRA update cheap and exact:

    sum_ij F_ij (s * (B A)_ij)^2 = s^2 * sum_kl (B^T diag(g) B)_kl * (A diag(a) A^T)_kl

(r x r matrices, r the LoRA rank). Each layer's Fisher is divided by the mean over all layers,
so `weight` means the same for any model.

The Fisher belongs to a model generation: it is computed once per generation and kept keyed by
the generation's sha256. A slept generation learned from conversations, and so did the samples it
writes, so the sleep cycle keeps the Fisher as a sealed vault blob (`load_sealed` / `seal`), like
every other derivative of the episodes; only the newest generation's is kept.

Tried and not kept: a Fisher of each night's facts, so that later nights keep off the weights
earlier nights' facts rely on (the recall of a night's facts falls with every night after it:
on the whole development set, 3 nights, seed 0, generation recall of night-1 items 12 of 88
after night 3 against 31 of 89 for night-3 items). At the end of a night the Fisher of the
trained model (LoRA active) on 48 of its question/answer examples was estimated, sealed with
the promoted generation (one per night, carried over), and each later night's penalty added
its term at weight 1. Against main on the same run: night-1 items MC 38 and generation 11 of
88 against 42 and 12, all items MC 0.554 against 0.588, generation 0.232 against 0.255, bleed
0.55 against 0.43, general 0.775 against 0.762, perplexity 20.81 against 21.14; 17-22 s more a
night. It held back new learning and protected none of the old.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import torch

from assistant.fsutil import atomic_write_bytes
from assistant.stoppoints import stop_point
from assistant.vault.derived import FISHER_PREFIX as BLOB_PREFIX
from assistant.vault.derived import SHA_CHARS
from sleep.dataset import Example, collate
from sleep.loss import lm_parts, weighted_ce

Fisher = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Module name (as in the plain model) -> (g [out], a [in])."""


def fisher_layers(model: Any, targets: Sequence[str]) -> dict[str, torch.nn.Linear]:
    """The linears of `model` a Fisher for `targets` covers: those whose name ends with one."""
    return {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in set(targets)
    }


def covers(fisher: Fisher, model: Any, targets: Sequence[str]) -> bool:
    """Whether `fisher` was estimated for exactly the layers `targets` adapt on `model`: one sealed
    under other `sleep.lora_targets` is normalised over other layers and is estimated again."""
    return set(fisher) == set(fisher_layers(model, targets))


def estimate_fisher(model: Any, examples: Sequence[Example], targets: Sequence[str], batch: int = 4) -> Fisher:
    """Diagonal (Kronecker-factored) Fisher of every linear whose name ends with one of `targets`."""
    linears = fisher_layers(model, targets)
    sums: dict[str, list[Any]] = {n: [None, None, 0] for n in linears}
    hooks = []

    def fwd(name: str) -> Any:
        def hook(mod: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            x = inp[0].detach().float().reshape(-1, inp[0].shape[-1])
            s = sums[name]
            s[1] = x.square().sum(0) if s[1] is None else s[1] + x.square().sum(0)
            s[2] += x.shape[0]

        return hook

    def bwd(name: str) -> Any:
        def hook(mod: torch.nn.Module, grad_in: Any, grad_out: tuple[torch.Tensor, ...]) -> None:
            g = grad_out[0].detach().float().reshape(-1, grad_out[0].shape[-1])
            s = sums[name]
            s[0] = g.square().sum(0) if s[0] is None else s[0] + g.square().sum(0)

        return hook

    for name, mod in linears.items():
        hooks += [mod.register_forward_hook(fwd(name)), mod.register_full_backward_hook(bwd(name))]
    embed = model.get_input_embeddings()
    # Base weights are frozen: make the embeddings' output require grad so backward reaches
    # every layer (the hooks need the output gradients, not the weight gradients).
    hooks.append(embed.register_forward_hook(lambda m, i, o: o.requires_grad_(True)))
    parts = lm_parts(model)
    was_training = model.training
    model.eval()
    # Only activation gradients are wanted: weight gradients would cost a second copy of the
    # model (about 1 GB for the default one).
    wants_grad = {p: p.requires_grad for p in model.parameters()}
    for p in wants_grad:
        p.requires_grad_(False)
    try:
        for i in range(0, len(examples), batch):
            stop_point()
            loss = weighted_ce(parts, collate(examples[i : i + batch]).to(next(model.parameters()).device))
            loss.backward()
    finally:
        for h in hooks:
            h.remove()
        for p, wanted in wants_grad.items():
            p.requires_grad_(wanted)
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    fisher = {n: (s[0], s[1] / max(1, s[2])) for n, s in sums.items() if s[0] is not None and s[1] is not None}
    total = sum(float(g.mean() * a.mean()) for g, a in fisher.values()) / max(1, len(fisher))
    return {n: (g / total, a) for n, (g, a) in fisher.items()} if total > 0 else fisher


def load_cached(path: Path) -> Fisher | None:
    return from_bytes(path.read_bytes()) if path.is_file() else None


def save_cached(path: Path, fisher: Fisher) -> None:
    """A plain-file copy (for a Fisher of a model that never learned from conversations)."""
    atomic_write_bytes(path, to_bytes(fisher))


def to_bytes(fisher: Fisher) -> bytes:
    buf = io.BytesIO()
    torch.save({k: [g, a] for k, (g, a) in fisher.items()}, buf)
    return buf.getvalue()


def from_bytes(data: bytes) -> Fisher | None:
    """The Fisher in `data`, or None when it does not load (it is then recomputed)."""
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return {k: (v[0], v[1]) for k, v in raw.items()}
    except Exception:  # a damaged copy is recomputed, never trusted
        return None


def load_sealed(vault: Any, sha256: str) -> Fisher | None:
    """The Fisher sealed for the generation with `sha256`, or None."""
    data = vault.open_blob_or_discard(BLOB_PREFIX + sha256[:SHA_CHARS])
    return None if data is None else from_bytes(data)


def seal(vault: Any, sha256: str, fisher: Fisher) -> None:
    """Seal `fisher` for the generation with `sha256`; Fishers of other generations are dropped."""
    name = BLOB_PREFIX + sha256[:SHA_CHARS]
    vault.seal_blob(name, to_bytes(fisher))
    for old in vault.blob_names():
        if old.startswith(BLOB_PREFIX) and old != name:
            vault.drop_blob(old)


def _base_name(peft_name: str) -> str:
    """ "base_model.model.model.layers.0.mlp.up_proj" -> "model.layers.0.mlp.up_proj"."""
    return peft_name.removeprefix("base_model.model.")


def lora_penalty(model: Any, fisher: Fisher) -> torch.Tensor:
    """sum over adapted layers of F * (scale * B A)^2, via r x r products (see module docstring)."""
    total: torch.Tensor | None = None
    for name, mod in model.named_modules():
        if not hasattr(mod, "lora_A") or "default" not in getattr(mod, "lora_A", {}):
            continue
        key = _base_name(name)
        if key not in fisher:
            continue
        g, a = fisher[key]
        A, B = mod.lora_A["default"].weight, mod.lora_B["default"].weight  # [r, in], [out, r]
        s = float(mod.scaling["default"])
        g, a = g.to(B.device, B.dtype), a.to(A.device, A.dtype)
        term = (s * s) * ((B.T * g) @ B * ((A * a) @ A.T)).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros((), device=next(model.parameters()).device)
    return total


class EWCPenalty:
    """`LossTerm`: weight x the Fisher-weighted size of the LoRA update."""

    name = "ewc"

    def __init__(self, fisher: Fisher, weight: float) -> None:
        self.fisher, self.weight = fisher, float(weight)

    def __call__(self, model: Any, step: int) -> torch.Tensor:
        return self.weight * lora_penalty(model, self.fisher)
