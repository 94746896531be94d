"""GGUF <-> torch bridge on tiny random models of every trainable architecture (seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from assistant.errors import ModelError
from models.bridge import load_torch_model, read_hf_tensors
from models.tensormap import ARCHS, arch_spec, to_gguf, to_hf
from models.tokenizer import Tokenizer
from tiny_model import TINY_ARCHS, make_tiny_gguf, tiny_model, tiny_vocab

PROMPT = "hello, my sister lives in paris. what is the capital of france? the dog is called rex."


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {arch: make_tiny_gguf(root / f"{arch}.gguf", arch) for arch in TINY_ARCHS}


def cpp_logits(path: Path, ids: list[int]) -> np.ndarray:
    from models.runtime import load_llama

    llama = load_llama(path, n_ctx=128, n_threads=1, logits_all=True)
    llama.eval(ids)
    return np.array(llama.scores[: len(ids)])


def test_every_supported_arch_has_a_tiny_model() -> None:
    assert set(TINY_ARCHS) == set(ARCHS)


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_round_trip_restores_the_exact_state_dict(tiny_files: dict[str, Path], arch: str) -> None:
    loaded = load_torch_model(tiny_files[arch])
    want = tiny_model(arch, len(tiny_vocab().tokens)).state_dict()
    got = loaded.model.state_dict()
    assert loaded.arch == arch and loaded.n_layers == loaded.hf_config.num_hidden_layers
    assert set(got) == set(want)
    for name, value in want.items():
        if arch == "gemma3" and "norm" in name:  # stored as w + 1: float rounding only
            assert torch.allclose(got[name], value, atol=1e-6), name
        else:  # includes llama's permuted q/k: the permutation must round-trip bit for bit
            assert torch.equal(got[name], value), name
    if loaded.hf_config.tie_word_embeddings:
        assert loaded.model.lm_head.weight is loaded.model.get_input_embeddings().weight


@pytest.mark.parametrize("arch", TINY_ARCHS)
def test_torch_logits_match_llama_cpp(tiny_files: dict[str, Path], arch: str) -> None:
    path = tiny_files[arch]
    ids = Tokenizer.from_gguf(path).encode(PROMPT, add_bos=True)
    assert len(ids) > 8  # longer than gemma3's 4-token window: sliding layers matter
    with torch.no_grad():
        ours = load_torch_model(path).model(torch.tensor([ids])).logits[0].numpy()
    theirs = cpp_logits(path, ids)
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()
    assert np.abs(ours - theirs).max() < 0.05 * ours.std()


def test_llama_qk_permutation_is_exact_and_not_identity() -> None:
    spec = arch_spec("llama")
    cfg = type("Cfg", (), {"num_attention_heads": 4, "num_key_value_heads": 2})()
    w = torch.randn(256, 256)
    for name, rows in (
        ("model.layers.0.self_attn.q_proj.weight", 256),
        ("model.layers.0.self_attn.k_proj.weight", 128),
    ):
        x = w[:rows]
        g = to_gguf(spec, name, "blk.0.attn_q.weight", x, cfg)
        assert not torch.equal(g, x)
        assert torch.equal(to_hf(spec, name, "blk.0.attn_q.weight", g, cfg), x)
    v = "model.layers.0.self_attn.v_proj.weight"
    assert torch.equal(to_gguf(spec, v, "blk.0.attn_v.weight", w, cfg), w)


def test_read_hf_tensors_matches_the_loaded_model(tiny_files: dict[str, Path]) -> None:
    path = tiny_files["llama"]
    names = ["model.layers.1.self_attn.k_proj.weight", "model.layers.0.mlp.down_proj.weight"]
    got = read_hf_tensors(path, names)
    state = load_torch_model(path).model.state_dict()
    for name in names:
        assert torch.equal(got[name], state[name])
    with pytest.raises(ModelError):
        read_hf_tensors(path, ["model.layers.9.self_attn.k_proj.weight"])


def test_unsupported_architecture_is_a_model_error() -> None:
    with pytest.raises(ModelError, match="cannot train 'phi3'"):
        arch_spec("phi3")


def test_tokenizer_uses_the_gguf_vocabulary(tiny_files: dict[str, Path]) -> None:
    tok = Tokenizer.from_gguf(tiny_files["llama"])
    vocab = tiny_vocab()
    assert (tok.bos_id, tok.eos_id, tok.n_vocab) == (1, 2, len(vocab.tokens))
    ids = tok.encode("the dog is called rex", add_bos=True)
    assert ids[0] == tok.bos_id and vocab.tokens[ids[1]] == "▁the"
    assert tok.decode(ids) == "the dog is called rex"
    turn = vocab.tokens.index("<start_of_turn>")
    assert tok.encode("<start_of_turn>", add_bos=False) == [turn]
    assert turn not in tok.encode("<start_of_turn>", add_bos=False, special=False)
    assert tok.decode([turn], special=True) == "<start_of_turn>"


def test_tokenizer_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        Tokenizer.from_gguf(tmp_path / "nope.gguf")


def test_llama3_rope_frequency_factors_are_applied(tmp_path: Path) -> None:
    from gguf_export import export_gguf

    vocab = tiny_vocab()
    model = tiny_model("llama", len(vocab.tokens))
    factors = np.linspace(1.0, 8.0, 32, dtype=np.float32)  # head_dim 64 -> 32 frequencies
    path = tmp_path / "llama3.gguf"
    export_gguf(path, "llama", model.config, model.state_dict(), vocab, extra_tensors={"rope_freqs.weight": factors})
    ids = Tokenizer.from_gguf(path).encode(PROMPT, add_bos=True)
    with torch.no_grad():
        ours = load_torch_model(path).model(torch.tensor([ids])).logits[0].numpy()
        plain = model(torch.tensor([ids])).logits[0].numpy()
    theirs = cpp_logits(path, ids)
    assert np.abs(ours - theirs).max() < 0.05 * ours.std()
    assert np.abs(plain - theirs).max() > 0.2 * ours.std()  # the factors do change the model


def test_fast_q8_0_dequantization_matches_gguf_py() -> None:
    import gguf

    from models.bridge import _dequantize_q8_0

    values = np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32)
    raw = gguf.quants.quantize(values, gguf.GGMLQuantizationType.Q8_0)
    want = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.Q8_0)
    got = _dequantize_q8_0(torch.from_numpy(raw.copy().reshape(-1))).reshape(64, 256)
    assert np.array_equal(got.numpy(), want)


def test_a_stop_asked_during_the_load_is_seen_between_tensors(tiny_files: dict[str, Path]) -> None:
    from assistant.stoppoints import Stopped, stop_points

    polls: list[int] = []

    def stop_after_three() -> bool:
        polls.append(1)
        return len(polls) > 3

    with stop_points(stop_after_three), pytest.raises(Stopped):
        load_torch_model(tiny_files["llama"])
    assert len(polls) == 4  # once before the model is built, then before each tensor: the third was not read
