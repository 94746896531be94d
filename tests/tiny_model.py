"""Tiny random models of every trainable architecture, written to GGUF in well under a second.

Shared by tests that need a real model file without the 253 MB default: the bridge, write-back
and quantization tests, and the sleep cycle's fast end-to-end test. Sizes are multiples of 256
so llama.cpp's K-quants apply, as they do to real models.

    from tiny_model import make_tiny_gguf
    path = make_tiny_gguf(tmp_path / "tiny.gguf", arch="llama")
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gguf_export import BYTE, CONTROL, NORMAL, UNKNOWN, Vocab, export_gguf

TINY_ARCHS = ("llama", "qwen2", "qwen3", "gemma3")

_WORDS = (
    "the of and to in is was for on that with as by at from his her it an are were be this which "
    "or have had not but one all their they has been who its new after also first two more other "
    "can my your name sister dog cat lives called paris france capital city remember what where "
    "when how user model assistant hello thanks yes no"
).split()


def tiny_vocab(chat_tokens: bool = True) -> Vocab:
    """A SentencePiece-style vocabulary of ~480 pieces: control tokens, the 256 byte
    fallbacks, single characters and ~100 whole words (with the "▁" word-start marker)."""
    tokens = ["<unk>", "<s>", "</s>", "<pad>"]
    types = [UNKNOWN, CONTROL, CONTROL, CONTROL]
    if chat_tokens:
        tokens += ["<start_of_turn>", "<end_of_turn>"]
        types += [CONTROL, CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [BYTE] * 256
    pieces = ["▁"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list(".,!?:'\n0123456789")
    # Every prefix of a word is a piece too: SentencePiece merges symbol pairs, so "▁the"
    # is reachable only through "▁t" and "▁th".
    pieces += [f"▁{w[:i]}" for w in _WORDS for i in range(1, len(w) + 1)]
    for p in pieces:
        if p not in tokens:
            tokens.append(p)
            types.append(NORMAL)
    # Longer pieces score higher so SentencePiece merges prefer whole words.
    scores = [0.0 if t != NORMAL else -10.0 + len(tok) for tok, t in zip(tokens, types)]
    return Vocab(tokens=tokens, scores=scores, token_types=types, bos_id=1, eos_id=2, unk_id=0, pad_id=3)


def tiny_config(arch: str, vocab_size: int) -> Any:
    """A small transformers config of `arch`: 256 wide, 2-6 layers, GQA, head_dim 64."""
    import transformers

    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=256,
        intermediate_size=512,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    cfg: transformers.PreTrainedConfig
    if arch == "llama":
        cfg = transformers.LlamaConfig(
            num_hidden_layers=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, **common
        )
    elif arch == "qwen2":
        cfg = transformers.Qwen2Config(
            num_hidden_layers=2,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1e6},
            **common,
        )
    elif arch == "qwen3":
        cfg = transformers.Qwen3Config(
            num_hidden_layers=2, rope_parameters={"rope_type": "default", "rope_theta": 1e6}, **common
        )
    elif arch == "gemma3":
        # Six layers with a 4-token window: layer 5 is global, the rest sliding, so prompts
        # longer than 4 tokens check the sliding-window pattern and both rope bases.
        cfg = transformers.Gemma3TextConfig(
            num_hidden_layers=6,
            sliding_window=4,
            query_pre_attn_scalar=64,
            hidden_activation="gelu_pytorch_tanh",
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
            },
            **common,
        )
    else:
        raise ValueError(arch)
    cfg._attn_implementation = "sdpa"
    return cfg


def tiny_model(arch: str, vocab_size: int, seed: int = 0) -> Any:
    """A randomly initialised *ForCausalLM; weights scaled up from the HF init (std 0.02) so
    logits vary enough between tokens for top-1 comparisons to mean something."""
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = tiny_config(arch, vocab_size)
    cls = {
        "llama": "LlamaForCausalLM",
        "qwen2": "Qwen2ForCausalLM",
        "qwen3": "Qwen3ForCausalLM",
        "gemma3": "Gemma3ForCausalLM",
    }[arch]
    model = getattr(transformers, cls)(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (0.0 if arch == "gemma3" else 1.0))
            elif name.endswith(".bias"):
                p.copy_(torch.randn_like(p) * 0.1)
            else:
                p.copy_(torch.randn_like(p) * 0.08)
    return model.eval()


def make_tiny_gguf(path: Path, arch: str = "llama", seed: int = 0, f16: bool = False) -> Path:
    """Write a tiny random `arch` model with `tiny_vocab()` to `path`; returns `path`."""
    vocab = tiny_vocab()
    model = tiny_model(arch, len(vocab.tokens), seed)
    export_gguf(Path(path), arch, model.config, model.state_dict(), vocab, f16=f16, name=f"tiny-{arch}")
    return Path(path)


MACHINERY_ONLY = 'gates = "health"\naugment = false\ndreams = false\nreplay = false\newc = false\nsurprise = false\nreconsolidate = false\n'
"""[sleep] settings for cycles on a random tiny model: it has no knowledge to protect and writes
no sensible dreams, so only the machinery runs (the quality parts have tests of their own)."""


def make_tiny_q4(directory: Path, arch: str = "llama") -> Path:
    """A tiny `arch` model quantized by llama.cpp to Q4_K_M, as real generations are served."""
    from models.quantize import requantize

    f16 = make_tiny_gguf(Path(directory) / f"tiny-{arch}.gguf", arch=arch)
    out = f16.with_name(f"tiny-{arch}-q4.gguf")
    requantize(f16, out, 15)  # LLAMA_FTYPE_MOSTLY_Q4_K_M
    return out
