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

Earlier nights' facts (`sleep.ewc_facts_weight`): a Fisher on foundational samples protects what
the model knew before it ever slept, not what it learned since, and each night's LoRA overwrote
part of the nights before it. So at the end of a night, while its training text is still in
memory, the Fisher of the trained model on a sample of that text is estimated too; it is sealed
with the generation the night promotes (`Fishers.facts`, one per night, the previous nights'
carried over), and the next night's penalty weighs its LoRA update by it as well. Only the
Fisher's factors are kept (the mean squared gradient and input of each layer), never the text.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
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

MAX_FACT_FISHERS = 8
"""Nights whose facts' Fishers a blob keeps apart; beyond that the two oldest are merged into one
(their factors summed: exact where they agree, an over-estimate of the cross terms otherwise), so
the blob stays small over a month."""
FACT_SAMPLES = 48
"""Training examples of a night the facts' Fisher is estimated on (fewer in a smaller night)."""


@dataclass
class Fishers:
    """What one generation's sealed blob holds: the Fisher on foundational samples (None until a
    night has estimated it for this generation) and one per night of learned facts, oldest first."""

    general: Fisher | None = None
    facts: list[Fisher] = field(default_factory=list)

    def with_night(self, night: Fisher) -> "Fishers":
        """These Fishers, tonight's facts added (the two oldest merged beyond `MAX_FACT_FISHERS`),
        and no general one: that belongs to the generation it was computed on."""
        facts = [*self.facts, night]
        while len(facts) > MAX_FACT_FISHERS:
            (a, b), facts = facts[:2], facts[2:]
            facts.insert(0, {k: (a[k][0] + b[k][0], a[k][1] + b[k][1]) for k in a if k in b})
        return Fishers(None, facts)


def _base_name(peft_name: str) -> str:
    """ "base_model.model.model.layers.0.mlp.up_proj" -> "model.layers.0.mlp.up_proj"."""
    return peft_name.removeprefix("base_model.model.")


def _linears(model: Any, targets: Sequence[str]) -> dict[str, torch.nn.Module]:
    """The linears named by `targets`, by their name in the plain model: plain `nn.Linear`s, or
    peft's LoRA wrappers of one (whose output is the adapted layer's)."""
    wanted, out = set(targets), {}
    for name, mod in model.named_modules():
        if name.rsplit(".", 1)[-1] not in wanted:
            continue
        if isinstance(mod, torch.nn.Linear) or isinstance(getattr(mod, "base_layer", None), torch.nn.Linear):
            out[_base_name(name)] = mod
    return out


def estimate_fisher(model: Any, examples: Sequence[Example], targets: Sequence[str], batch: int = 4) -> Fisher:
    """Diagonal (Kronecker-factored) Fisher of every linear whose name ends with one of `targets`
    (of a plain model, or of one with a LoRA adapter: then of the adapted layers)."""
    linears = _linears(model, targets)
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


def pack(fishers: Fishers) -> bytes:
    buf = io.BytesIO()
    general = None if fishers.general is None else {k: [g, a] for k, (g, a) in fishers.general.items()}
    facts = [{k: [g, a] for k, (g, a) in f.items()} for f in fishers.facts]
    torch.save({"version": 2, "general": general, "facts": facts}, buf)
    return buf.getvalue()


def unpack(data: bytes) -> Fishers | None:
    """The Fishers in `data` (a blob sealed before facts had Fishers holds the general one
    alone), or None when it does not load."""
    try:
        raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        if raw.get("version") != 2:
            return Fishers({k: (v[0], v[1]) for k, v in raw.items()})
        general = raw["general"]
        return Fishers(
            None if general is None else {k: (v[0], v[1]) for k, v in general.items()},
            [{k: (v[0], v[1]) for k, v in f.items()} for f in raw["facts"]],
        )
    except Exception:  # a damaged copy is recomputed, never trusted
        return None


def load_sealed(vault: Any, sha256: str) -> Fishers | None:
    """The Fishers sealed for the generation with `sha256`, or None."""
    data = vault.open_blob_or_discard(BLOB_PREFIX + sha256[:SHA_CHARS])
    return None if data is None else unpack(data)


def seal(vault: Any, sha256: str, fishers: Fishers) -> None:
    """Seal `fishers` for the generation with `sha256`; Fishers of other generations are dropped."""
    name = BLOB_PREFIX + sha256[:SHA_CHARS]
    vault.seal_blob(name, pack(fishers))
    for old in vault.blob_names():
        if old.startswith(BLOB_PREFIX) and old != name:
            vault.drop_blob(old)


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


def facts_sample(examples: Sequence[Example], seed: int, n: int = FACT_SAMPLES) -> list[Example]:
    """The night's examples a facts' Fisher is estimated on: `n` of those that answer a question
    with a value (the lead), else of all, chosen by `seed`; in their original order."""
    pool = [i for i, e in enumerate(examples) if e.lead > 0] or list(range(len(examples)))
    chosen = sorted(random.Random(seed).sample(pool, min(n, len(pool))))
    return [examples[i] for i in chosen]


class EWCPenalty:
    """`LossTerm`: weight x the Fisher-weighted size of the LoRA update, plus `facts_weight` x
    its size under each earlier night's facts' Fisher."""

    name = "ewc"

    def __init__(self, fisher: Fisher, weight: float, facts: Sequence[Fisher] = (), facts_weight: float = 0.0) -> None:
        self.fisher, self.weight = fisher, float(weight)
        self.facts, self.facts_weight = list(facts) if facts_weight > 0 else [], float(facts_weight)

    def __call__(self, model: Any, step: int) -> torch.Tensor:
        total = self.weight * lora_penalty(model, self.fisher)
        for night in self.facts:
            total = total + self.facts_weight * lora_penalty(model, night)
        return total
