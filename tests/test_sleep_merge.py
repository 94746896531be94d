"""The merge math: W + scale * B @ A per touched linear equals peft's merge_and_unload."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch
from tiny_lm import tiny_model

from sleep.merge import delta_weights, merged_weights
from sleep.train import TrainArgs, attach_lora

if TYPE_CHECKING:
    from peft import PeftModel


def _trained_lora(arch: str, targets: list[str]) -> tuple[PeftModel, dict[str, torch.Tensor]]:
    base = tiny_model(arch)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = attach_lora(base, TrainArgs(lora_r=4, lora_alpha=8, lora_targets=targets, seed=1))
    # B starts at zero (a no-op adapter); give it values as training would.
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return peft_model, original


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_merged_weights_equal_merge_and_unload(arch: str) -> None:
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    peft_model, original = _trained_lora(arch, targets)
    merged = merged_weights(peft_model)
    assert len(merged) == 2 * len(targets)
    assert set(merged) <= set(original)  # names are the base model's own parameter names
    assert "model.layers.0.self_attn.q_proj.weight" in merged
    for name, w in merged.items():
        assert w.dtype == original[name].dtype and w.shape == original[name].shape
        assert not torch.equal(w, original[name])  # the adapter changed every touched weight

    ids = torch.tensor([[2, 40, 41, 42, 43]])
    with torch.no_grad():
        before = peft_model(input_ids=ids).logits
    reference = peft_model.merge_and_unload().state_dict()
    for name, w in merged.items():
        assert torch.equal(w, reference[name]), name  # same float32 arithmetic as peft
    for name, w in reference.items():
        if name not in merged:
            assert torch.equal(w, original[name]), name  # untouched tensors are not in the map
    with torch.no_grad():
        merged_logits = peft_model(input_ids=ids).logits  # peft_model now holds the merged base
    assert torch.allclose(before, merged_logits, rtol=1e-4, atol=1e-5)


def test_merge_leaves_the_adapter_in_place() -> None:
    peft_model, original = _trained_lora("llama", ["q_proj", "v_proj"])
    ids = torch.tensor([[2, 40, 41, 42, 43]])
    with torch.no_grad():
        before = peft_model(input_ids=ids).logits.clone()
        merged_weights(peft_model)
        after = peft_model(input_ids=ids).logits
    assert torch.equal(before, after)
    base_q = peft_model.get_base_model().get_parameter("model.layers.0.self_attn.q_proj.base_layer.weight")
    assert torch.equal(base_q, original["model.layers.0.self_attn.q_proj.weight"])


def test_delta_weights_are_differentiable_and_zero_at_init() -> None:
    base = tiny_model("llama")
    peft_model = attach_lora(base, TrainArgs(lora_r=4, lora_alpha=8, lora_targets=["q_proj"], seed=0))
    deltas = delta_weights(peft_model)
    assert set(deltas) == {"model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.q_proj.weight"}
    assert all(float(d.detach().abs().max()) == 0.0 for d in deltas.values())
    total = sum((d**2).sum() for d in deltas.values())
    assert isinstance(total, torch.Tensor)
    total.backward()
    assert any(p.grad is not None for n, p in peft_model.named_parameters() if "lora_B" in n)
