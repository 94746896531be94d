"""Write a transformers state dict as a GGUF that llama.cpp can serve.

The inverse of `models.bridge` for a whole model: hyper-parameters from the HF config, tensors
renamed and re-laid-out by `models.tensormap`, a vocabulary given explicitly. Sleep itself never
needs it (write-back patches an existing GGUF, `models.writeback`); it exists so tests can
build tiny models of every supported architecture in seconds and check the bridge against
llama.cpp with a writer that does not share the bridge's code path.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from assistant.fsutil import ensure_dir, fsync_dir
from models.tensormap import arch_spec, gguf_name, name_map, to_gguf

# gguf token types (gguf.TokenType): normal, unknown, control, byte.
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


@dataclass
class Vocab:
    """A SentencePiece-style ("llama") vocabulary, as the tokenizer.ggml.* fields store it."""

    tokens: list[str]
    scores: list[float]
    token_types: list[int]
    bos_id: int
    eos_id: int
    unk_id: int
    pad_id: int | None = None
    add_bos: bool = True
    add_space_prefix: bool = True
    extra_fields: dict[str, Any] = field(default_factory=dict)
    """More string fields, e.g. {"tokenizer.chat_template": "..."}."""


def _hparams(writer: Any, arch: str, config: Any) -> None:
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    rope = config.rope_parameters
    if arch == "gemma3":
        writer.add_rope_freq_base(float(rope["full_attention"]["rope_theta"]))
        writer.add_float32(f"{arch}.rope.freq_base_swa", float(rope["sliding_attention"]["rope_theta"]))
        writer.add_sliding_window(int(config.sliding_window))
        writer.add_sliding_window_pattern([t == "sliding_attention" for t in config.layer_types])
    else:
        writer.add_rope_freq_base(float(rope["rope_theta"]))
        writer.add_rope_dimension_count(head_dim)
    if arch == "llama":
        writer.add_vocab_size(int(config.vocab_size))


def _vocab(writer: Any, vocab: Vocab) -> None:
    writer.add_tokenizer_model("llama")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.token_types)
    writer.add_bos_token_id(vocab.bos_id)
    writer.add_eos_token_id(vocab.eos_id)
    writer.add_unk_token_id(vocab.unk_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_space_prefix(vocab.add_space_prefix)
    for key, value in vocab.extra_fields.items():
        writer.add_string(key, value)


def export_gguf(
    dst: Path,
    arch: str,
    config: Any,
    state_dict: Mapping[str, Any],
    vocab: Vocab,
    *,
    f16: bool = False,
    name: str = "nightcap-export",
    extra_tensors: Mapping[str, Any] | None = None,
) -> None:
    """Write `state_dict` (HF names, torch tensors) as a GGUF at `dst`, atomically.

    Matrices are stored F32 (exact round trip) or F16 with `f16=True`; vectors always F32, as
    llama.cpp expects for norms. A tied `lm_head.weight` is left out, as in llama.cpp's files.
    `extra_tensors` (GGUF name -> float32 numpy array) are written as given, e.g. llama 3's
    "rope_freqs.weight".
    """
    import gguf
    import numpy as np

    spec = arch_spec(arch)
    names = name_map(arch, int(config.num_hidden_layers))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    dst = Path(dst)
    ensure_dir(dst.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(name)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
        _hparams(writer, arch, config)
        _vocab(writer, vocab)
        for hf_name, tensor in state_dict.items():
            if tied and hf_name == "lm_head.weight":
                continue
            tensor_name = gguf_name(names, hf_name)
            if tensor_name is None:
                raise ValueError(f"no GGUF name for {hf_name} in {arch}")
            value = to_gguf(spec, hf_name, tensor_name, tensor.detach().float(), config).numpy()
            dtype = np.float16 if (f16 and value.ndim > 1) else np.float32
            writer.add_tensor(tensor_name, value.astype(dtype))
        for tensor_name, array in (extra_tensors or {}).items():
            writer.add_tensor(tensor_name, np.asarray(array, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
