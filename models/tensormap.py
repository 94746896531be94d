"""How a Hugging Face parameter and its GGUF tensor correspond, per architecture.

Names come from gguf-py's own tables (`gguf.get_tensor_name_map`), so they follow llama.cpp.
Values differ in two places, both undone here and redone on the way back:

- llama (and mistral-style) GGUFs store q/k projections with rows permuted, because llama.cpp
  applies rotary embeddings to interleaved pairs while transformers rotates halves
  (llama.cpp's `convert_hf_to_gguf.py`, `LlamaModel.permute`). qwen2/qwen3/gemma3 use the
  "neox" layout and are stored unpermuted.
- Gemma RMSNorms scale by (1 + w) in transformers; their GGUFs store w + 1 (all "*_norm" tensors).

Both transforms are exact in float32, so HF -> GGUF -> HF is a round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.errors import ModelError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ArchSpec:
    """What Nightcap needs to know to train one GGUF architecture with transformers."""

    gguf_arch: str
    model_class: str
    config_class: str
    permute_qk: bool = False
    norm_plus_one: bool = False


ARCHS: dict[str, ArchSpec] = {
    "llama": ArchSpec("llama", "LlamaForCausalLM", "LlamaConfig", permute_qk=True),
    "qwen2": ArchSpec("qwen2", "Qwen2ForCausalLM", "Qwen2Config"),
    "qwen3": ArchSpec("qwen3", "Qwen3ForCausalLM", "Qwen3Config"),
    "gemma3": ArchSpec("gemma3", "Gemma3ForCausalLM", "Gemma3TextConfig", norm_plus_one=True),
}


def arch_spec(arch: str) -> ArchSpec:
    """The spec for a GGUF `general.architecture`; ModelError if sleep cannot train it."""
    try:
        return ARCHS[arch]
    except KeyError:
        supported = ", ".join(sorted(ARCHS))
        raise ModelError(
            f"Nightcap cannot train '{arch}' models (supported: {supported}); "
            "use one of those for sleep, or keep chatting without it"
        ) from None


def name_map(arch: str, n_layers: int) -> Any:
    """gguf-py's `TensorNameMap` for `arch` with `n_layers` blocks."""
    import gguf  # deferred: numpy-heavy

    for key, value in gguf.MODEL_ARCH_NAMES.items():
        if value == arch:
            return gguf.get_tensor_name_map(key, n_layers)
    raise ModelError(f"this gguf package does not know the '{arch}' architecture; update Nightcap")


def gguf_name(names: Any, hf_name: str) -> str | None:
    """GGUF tensor name of HF parameter `hf_name` (e.g. "blk.3.attn_q.weight"), or None."""
    return names.get_name(hf_name, try_suffixes=(".weight", ".bias"))


def head_counts(meta: Any) -> Any:
    """The head counts `to_hf`/`to_gguf` need, read from a `GGUFMeta` (no transformers)."""
    from types import SimpleNamespace

    n_heads = int(meta.arch_field("attention.head_count"))
    n_kv = meta.arch_field("attention.head_count_kv", n_heads)
    n_kv = int(n_kv[0] if isinstance(n_kv, list) else n_kv)  # some files store one per layer
    return SimpleNamespace(num_attention_heads=n_heads, num_key_value_heads=n_kv)


def _heads_for(hf_name: str, config: Any) -> int | None:
    """Heads the permutation groups rows by: q uses all heads, k the key/value heads."""
    if ".q_proj." in hf_name:
        return int(config.num_attention_heads)
    if ".k_proj." in hf_name:
        return int(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    return None


def _permute(w: "torch.Tensor", n_head: int) -> "torch.Tensor":
    # HF (halves) -> GGUF (interleaved pairs); mirrors convert_hf_to_gguf.LlamaModel.permute.
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: "torch.Tensor", n_head: int) -> "torch.Tensor":
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _is_norm(gguf_tensor: str) -> bool:
    return gguf_tensor.endswith("norm.weight")


def to_hf(spec: ArchSpec, hf_name: str, gguf_tensor: str, w: "torch.Tensor", config: Any) -> "torch.Tensor":
    """Value of HF parameter `hf_name` from the dequantized GGUF tensor `w` (float32)."""
    if spec.norm_plus_one and _is_norm(gguf_tensor):
        return w - 1.0
    if spec.permute_qk and (heads := _heads_for(hf_name, config)):
        return _unpermute(w, heads).contiguous()
    return w


def to_gguf(spec: ArchSpec, hf_name: str, gguf_tensor: str, w: "torch.Tensor", config: Any) -> "torch.Tensor":
    """Inverse of `to_hf`: the GGUF layout of HF parameter `hf_name`'s value `w`."""
    if spec.norm_plus_one and _is_norm(gguf_tensor):
        return w + 1.0
    if spec.permute_qk and (heads := _heads_for(hf_name, config)):
        return _permute(w, heads).contiguous()
    return w
