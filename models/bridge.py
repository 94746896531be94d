"""GGUF -> trainable transformers model (float32, CPU), fast.

transformers can load GGUF files itself, but took 60-90 s for the default model here: it
rebuilds a tokenizer and runs random weight init before overwriting every weight. This bridge
builds the config from the GGUF header (`models.ggufmeta`), instantiates the model class with
weight init switched off, dequantizes each tensor with gguf-py straight from a memory map and
assigns it. The default model loads in a few seconds.

Usage (in sleep/, which owns the torch imports)::

    loaded = load_torch_model(generation.gguf)
    loaded.model          # e.g. Gemma3ForCausalLM, eval mode, requires_grad on
    loaded.gguf_names     # HF parameter name -> GGUF tensor name, for write-back
"""

from __future__ import annotations

import mmap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import ModelError
from assistant.stoppoints import stop_point
from models.ggufmeta import GGUFMeta, TensorInfo, read_meta
from models.tensormap import ArchSpec, arch_spec, gguf_name, head_counts, name_map, to_hf

# Gemma 3 constants that llama.cpp hard-codes rather than reading from the file
# (src/llama-model.cpp, LLM_ARCH_GEMMA3): every 6th layer is global, local rope base 10k.
_GEMMA3_SWA_PATTERN = 6
_GEMMA3_LOCAL_ROPE_BASE = 10_000.0


@dataclass
class LoadedModel:
    """A GGUF generation as a torch model, plus what write-back needs to go the other way."""

    model: Any
    """The transformers *ForCausalLM (float32, CPU)."""
    arch: str
    spec: ArchSpec
    hf_config: Any
    n_layers: int
    source: Path
    meta: GGUFMeta
    gguf_names: dict[str, str] = field(default_factory=dict)
    """HF parameter name -> GGUF tensor name, for every parameter loaded from the file."""
    load_seconds: float = 0.0


def hf_config_from_meta(meta: GGUFMeta) -> Any:
    """The transformers config equivalent to the hyper-parameters in a GGUF header."""
    import transformers  # deferred: heavy, training side only

    spec = arch_spec(meta.arch)
    f = meta.arch_field
    try:
        embd = meta.tensor("token_embd.weight")
        hidden, n_heads = int(f("embedding_length")), int(f("attention.head_count"))
        n_kv = f("attention.head_count_kv", n_heads)
        if isinstance(n_kv, list):  # some files store one value per layer
            n_kv = n_kv[0]
        kw: dict[str, Any] = dict(
            vocab_size=int(embd.shape[1]),
            hidden_size=hidden,
            intermediate_size=int(f("feed_forward_length")),
            num_hidden_layers=meta.n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=int(n_kv),
            head_dim=int(f("attention.key_length", hidden // n_heads)),
            max_position_embeddings=int(f("context_length", 4096)),
            rms_norm_eps=float(f("attention.layer_norm_rms_epsilon", 1e-6)),
            tie_word_embeddings=not any(t.name == "output.weight" for t in meta.tensors),
            bos_token_id=meta.fields.get("tokenizer.ggml.bos_token_id"),
            eos_token_id=meta.fields.get("tokenizer.ggml.eos_token_id"),
            pad_token_id=meta.fields.get("tokenizer.ggml.padding_token_id"),
        )
    except (TypeError, ValueError) as err:
        raise ModelError(
            f"{meta.path} lacks hyper-parameters Nightcap needs ({err}); the model file is incomplete"
        ) from None
    theta = float(f("rope.freq_base", 10_000.0))
    rope: dict[str, Any] = {"rope_type": "default", "rope_theta": theta}
    if f("rope.scaling.type") == "linear" and f("rope.scaling.factor"):
        rope = {"rope_type": "linear", "rope_theta": theta, "factor": float(f("rope.scaling.factor"))}
    names = {t.name for t in meta.tensors}
    if spec.gguf_arch == "llama":
        kw["attention_bias"] = "blk.0.attn_q.bias" in names
        kw["mlp_bias"] = "blk.0.ffn_up.bias" in names
    if spec.gguf_arch == "gemma3":
        kw["hidden_activation"] = "gelu_pytorch_tanh"
        kw["sliding_window"] = int(f("attention.sliding_window", 512))
        kw["layer_types"] = _gemma3_layer_types(meta)
        # llama.cpp scales queries by 1/sqrt(head_dim), except for the 27B layout.
        kw["query_pre_attn_scalar"] = hidden // n_heads if meta.n_layers == 62 else kw["head_dim"]
        kw["final_logit_softcapping"] = f("final_logit_softcapping")
        kw["attn_logit_softcapping"] = f("attn_logit_softcapping")
        local = {"rope_type": "default", "rope_theta": float(f("rope.freq_base_swa", _GEMMA3_LOCAL_ROPE_BASE))}
        kw["rope_parameters"] = {"full_attention": rope, "sliding_attention": local}
    else:
        kw["rope_parameters"] = rope
    config = getattr(transformers, spec.config_class)(**kw)
    # sdpa: same maths as eager here (no softcapping in these archs), much less memory.
    config._attn_implementation = "sdpa"
    return config


def _gemma3_layer_types(meta: GGUFMeta) -> list[str]:
    pattern = meta.arch_field("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == meta.n_layers:  # per-layer flags, newer files
        return ["sliding_attention" if swa else "full_attention" for swa in pattern]
    every = int(pattern) if isinstance(pattern, int) and pattern > 0 else _GEMMA3_SWA_PATTERN
    return ["sliding_attention" if (i + 1) % every else "full_attention" for i in range(meta.n_layers)]


def dequantize(mm: Any, meta: GGUFMeta, info: TensorInfo) -> Any:
    """One GGUF tensor as a float32 torch tensor in row-major (HF) shape."""
    import gguf
    import numpy as np
    import torch

    qtype = gguf.GGMLQuantizationType(info.ggml_type)
    raw = np.frombuffer(mm, dtype=np.uint8, count=info.n_bytes, offset=meta.data_offset + info.offset)
    if qtype == gguf.GGMLQuantizationType.Q8_0:
        values = _dequantize_q8_0(torch.from_numpy(raw.copy()))
    else:
        rows = info.n_elements // info.shape[0] if info.shape else 1
        arr = gguf.quants.dequantize(raw.reshape(rows, -1), qtype)
        # F32 comes back as a view of the read-only map: copy it into torch-owned memory.
        values = torch.from_numpy(np.array(arr, dtype=np.float32, copy=True))
    return values.reshape(info.torch_shape)


def _dequantize_q8_0(raw: Any) -> Any:
    # Q8_0 block: float16 scale + 32 int8. torch runs this on all cores, about 5x faster than
    # gguf-py's numpy version on the 262k x 640 embedding of the default model.
    import torch

    blocks = raw.view(-1, 34)
    scale = blocks[:, :2].contiguous().view(torch.float16).to(torch.float32)
    return blocks[:, 2:].contiguous().view(torch.int8).to(torch.float32).mul_(scale)


def _instantiate(spec: ArchSpec, config: Any) -> Any:
    import transformers
    from transformers.initialization import no_init_weights

    # Skip random init: every parameter is overwritten below. Rotary frequencies and Gemma's
    # embedding scale are plain buffers computed in __init__, so they stay correct.
    with no_init_weights():
        return getattr(transformers, spec.model_class)(config)


def load_torch_model(gguf_path: Path) -> LoadedModel:
    """Load the GGUF at `gguf_path` as a float32 transformers model on CPU.

    Raises ModelError if the file is unreadable, the architecture unsupported, or a parameter
    has no tensor in the file.
    """
    started = time.perf_counter()
    meta = read_meta(Path(gguf_path))
    spec = arch_spec(meta.arch)
    config = hf_config_from_meta(meta)
    stop_point()
    model = _instantiate(spec, config)
    names = name_map(meta.arch, meta.n_layers)
    by_name = {t.name: t for t in meta.tensors}
    state: dict[str, Any] = {}
    gguf_names: dict[str, str] = {}
    tied = bool(config.tie_word_embeddings)
    with open(meta.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for hf_name in model.state_dict():
            stop_point()  # a night asked to stop gives the machine back between tensors
            tensor_name = gguf_name(names, hf_name)
            if tensor_name is None or tensor_name not in by_name:
                if tied and hf_name == "lm_head.weight":
                    continue
                raise ModelError(
                    f"{meta.path} has no tensor for {hf_name}; the model file does not match its architecture"
                )
            value = dequantize(mm, meta, by_name[tensor_name])
            state[hf_name] = to_hf(spec, hf_name, tensor_name, value, config)
            gguf_names[hf_name] = tensor_name
        rope_freqs = by_name.get("rope_freqs.weight")
        rope_factors = dequantize(mm, meta, rope_freqs) if rope_freqs else None
    # Every state-dict key was matched above (or is the tied head), so nothing is left holding
    # the uninitialised memory that no_init_weights allocated.
    model.load_state_dict(state, strict=False, assign=True)
    if tied:
        model.lm_head.weight = model.get_input_embeddings().weight
    if rope_factors is not None:
        _apply_rope_factors(model, rope_factors)
    model.eval()
    return LoadedModel(
        model=model,
        arch=meta.arch,
        spec=spec,
        hf_config=config,
        n_layers=meta.n_layers,
        source=meta.path,
        meta=meta,
        gguf_names=gguf_names,
        load_seconds=time.perf_counter() - started,
    )


def read_hf_tensors(gguf_path: Path, hf_names: list[str]) -> dict[str, Any]:
    """Just the named parameters of a GGUF, dequantized to float32 in HF layout (no model built).

    Used where whole-model loading is wasted: comparing generations, seeding a weight master.
    """
    meta = read_meta(Path(gguf_path))
    spec = arch_spec(meta.arch)
    names = name_map(meta.arch, meta.n_layers)
    heads = head_counts(meta)
    out: dict[str, Any] = {}
    with open(meta.path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for hf_name in hf_names:
            tensor_name = gguf_name(names, hf_name)
            if tensor_name is None:
                raise ModelError(
                    f"{meta.path} has no tensor for {hf_name}; the model file does not match its architecture"
                )
            out[hf_name] = to_hf(spec, hf_name, tensor_name, dequantize(mm, meta, meta.tensor(tensor_name)), heads)
    return out


def _apply_rope_factors(model: Any, factors: Any) -> None:
    # Llama 3.x GGUFs bake their rope scaling into a `rope_freqs` tensor that llama.cpp divides
    # the base frequencies by; apply the same to the HF buffers instead of guessing its params.
    rotary = model.model.rotary_emb
    inv = rotary.inv_freq / factors.to(rotary.inv_freq.dtype)
    rotary.inv_freq = inv
    rotary.original_inv_freq = inv.clone()
