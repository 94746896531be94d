"""Tiny random causal LMs and a byte-level tokenizer for fast sleep-side tests (no weights)."""

from __future__ import annotations

import re
from typing import Any

SPECIALS = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<start_of_turn>": 3, "<end_of_turn>": 4}
_SPLIT = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")
BYTE_BASE = 8


def devices() -> list[str]:
    """ "cpu", plus "cuda" where torch sees a GPU: training tests run on each (CI has only the CPU)."""
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class ByteTokenizer:
    """One token per UTF-8 byte, plus Gemma's control tokens when `special` is set."""

    bos_id = SPECIALS["<bos>"]
    eos_id = SPECIALS["<eos>"]
    n_vocab = BYTE_BASE + 256

    def encode(self, text: str, *, add_bos: bool, special: bool = True) -> list[int]:
        ids = [self.bos_id] if add_bos else []
        for part in _SPLIT.split(text) if special else [text]:
            if special and part in SPECIALS:
                ids.append(SPECIALS[part])
            else:
                ids += [BYTE_BASE + b for b in part.encode("utf-8")]
        return ids

    def decode(self, ids: list[int], *, special: bool = False) -> str:
        names = {v: k for k, v in SPECIALS.items()}
        out, buf = [], bytearray()
        for i in ids:
            if i >= BYTE_BASE:
                buf.append(i - BYTE_BASE)
                continue
            out.append(buf.decode("utf-8", "replace"))
            buf = bytearray()
            if special:
                out.append(names.get(i, ""))
        out.append(buf.decode("utf-8", "replace"))
        return "".join(out)


def tiny_model(arch: str = "llama", seed: int = 0, softcap: float | None = None, window: int = 8) -> Any:
    """A 2-layer, hidden-64, vocab-512 random model of `arch` ("llama" or "gemma3"), fp32.
    Gemma's sliding window is tiny by default so that short tests exercise it."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, PreTrainedConfig

    torch.manual_seed(seed)
    common: dict[str, Any] = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=1,
        # Wide enough embeddings that a LoRA (which cannot touch the head or norms) can move
        # the logits far: at the usual 0.02 the loss of a random tiny model barely moves.
        initializer_range=0.2,
    )
    config: PreTrainedConfig
    if arch == "gemma3":
        config = Gemma3TextConfig(**common, head_dim=16, sliding_window=window, final_logit_softcapping=softcap)
        config._attn_implementation = "eager"
        model: Gemma3ForCausalLM | LlamaForCausalLM = Gemma3ForCausalLM(config)
    else:
        config = LlamaConfig(**common)
        config._attn_implementation = "sdpa"
        model = LlamaForCausalLM(config)
    return model.float().eval()
