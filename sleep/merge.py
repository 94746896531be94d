"""The merge: W' = W + scale * B @ A for every linear layer the LoRA adapter touched.

`merged_weights` returns the new weights keyed by the base model's own parameter names
(e.g. "model.layers.0.self_attn.q_proj.weight"), computed in float32 and cast back to the base
weight's dtype, without changing the model: the write-back maps those names to GGUF tensor
names and the peft model stays usable (e.g. for evaluation gates). The result equals peft's
`merge_and_unload()` for the same adapter.

`delta_weights` gives the same updates B @ A * scale, differentiable, for penalties on the
effective weight change (EWC).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from assistant.stoppoints import stop_point


def lora_layers(peft_model: Any) -> Iterator[tuple[str, Any]]:
    """(base parameter name of the weight, peft LoRA layer) for each adapted linear layer."""
    from peft.tuners.lora import LoraLayer  # deferred: peft is heavy and only sleep needs it

    base = peft_model.get_base_model() if hasattr(peft_model, "get_base_model") else peft_model
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            yield f"{name}.weight", module


def delta_weight(layer: Any) -> torch.Tensor | None:
    """scale * B @ A summed over the layer's active adapters, in float32 (None if inactive)."""
    total = None
    for adapter in layer.active_adapters:
        if adapter not in layer.lora_A:
            continue
        if layer.use_dora.get(adapter) or layer.lora_bias.get(adapter):
            raise ValueError("merging supports plain LoRA only (no DoRA, no LoRA bias)")
        a = layer.lora_A[adapter].weight.float()
        b = layer.lora_B[adapter].weight.float()
        delta = b @ a
        if getattr(layer, "fan_in_fan_out", False):
            delta = delta.T
        delta = delta * layer.scaling[adapter]
        total = delta if total is None else total + delta
    return total


def delta_weights(peft_model: Any) -> dict[str, torch.Tensor]:
    """Differentiable weight updates of the adapter, keyed like `merged_weights`."""
    out = {}
    for name, layer in lora_layers(peft_model):
        delta = delta_weight(layer)
        if delta is not None:
            out[name] = delta
    return out


@torch.no_grad()
def merged_weights(peft_model: Any) -> dict[str, torch.Tensor]:
    """New weight of every LoRA-touched linear, by base parameter name, on the CPU. The model
    is left as it was (adapter still separate)."""
    out = {}
    for name, layer in lora_layers(peft_model):
        stop_point()
        if getattr(layer, "merged", False):
            raise ValueError(f"{name}: the adapter is already merged into the weight")
        delta = delta_weight(layer)
        if delta is None:
            continue
        weight = layer.get_base_layer().weight
        out[name] = (weight.float() + delta).to(weight.dtype).cpu()
    return out
