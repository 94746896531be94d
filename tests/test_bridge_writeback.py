"""Header reading, write-back, requantization and the weight master on tiny GGUFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from assistant.errors import ModelError
from models.bridge import load_torch_model, read_hf_tensors
from models.ggufmeta import read_meta
from models.master import Master, linear_names
from models.quantize import keep_touched_at, requantize
from models.writeback import write_merged_gguf
from tiny_model import make_tiny_gguf

Q4_K_M = 15
QK = ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gguf(tmp_path_factory.mktemp("wb") / "tiny.gguf", "llama")


@pytest.fixture(scope="module")
def tiny_q4(tiny: Path) -> Path:
    out = tiny.with_name("tiny-q4.gguf")
    requantize(tiny, out, Q4_K_M)
    return out


def leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_read_meta_reports_the_header(tiny: Path, tiny_q4: Path) -> None:
    meta = read_meta(tiny)
    assert (meta.arch, meta.n_layers, meta.file_type, meta.file_type_name) == ("llama", 2, 0, "F32")
    assert meta.name == "tiny-llama" and meta.chat_template is None
    assert meta.n_vocab == meta.tensor("token_embd.weight").shape[1]
    assert meta.n_params == sum(t.n_elements for t in meta.tensors) > 1_000_000
    assert read_meta(tiny_q4).file_type_name == "Q4_K_M"


@pytest.mark.parametrize("cut", [3, 20, 200, 5_000, -1])
def test_read_meta_rejects_truncated_files(tiny: Path, tmp_path: Path, cut: int) -> None:
    data = tiny.read_bytes()
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(data[:cut])
    with pytest.raises(ModelError, match="not (a|a usable) GGUF model file"):
        read_meta(bad)


def test_read_meta_rejects_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.gguf").write_text("hello, this is not a model" * 10)
    with pytest.raises(ModelError, match="is not a GGUF model file; pass a .gguf"):
        read_meta(tmp_path / "notes.gguf")
    with pytest.raises(ModelError, match="does not exist"):
        read_meta(tmp_path / "missing.gguf")
    with pytest.raises(ModelError, match="not a GGUF"):
        read_meta(tmp_path)


def test_write_back_without_replacements_is_byte_identical(tiny_q4: Path, tmp_path: Path) -> None:
    write_merged_gguf(tiny_q4, {}, tmp_path / "same.gguf")
    assert (tmp_path / "same.gguf").read_bytes() == tiny_q4.read_bytes()
    assert leftovers(tmp_path) == []


def test_merged_weights_round_trip_through_f16(tiny: Path, tmp_path: Path) -> None:
    base = read_hf_tensors(tiny, QK + ["model.norm.weight"])
    merged = {k: v + 0.01 * torch.randn_like(v) for k, v in base.items()}
    write_merged_gguf(tiny, merged, tmp_path / "merged.gguf")
    meta = read_meta(tmp_path / "merged.gguf")
    assert meta.tensor("blk.0.attn_q.weight").ggml_type == 1  # F16
    assert meta.tensor("output_norm.weight").ggml_type == 0  # vectors stay F32
    assert meta.tensor("blk.0.attn_v.weight").ggml_type == 0  # untouched: copied as is
    back = read_hf_tensors(tmp_path / "merged.gguf", list(merged))
    for name, value in merged.items():
        # F16 precision; a missing re-permutation of q/k would be off by the weights' size.
        assert torch.allclose(back[name], value, atol=1e-3, rtol=1e-3), name


def test_merged_and_requantized_model_serves(tiny: Path, tmp_path: Path) -> None:
    from models.runtime import load_llama

    state = load_torch_model(tiny).model.state_dict()
    names = linear_names(2)
    merged = {k: state[k] + 0.002 * torch.randn_like(state[k]) for k in names}
    write_merged_gguf(tiny, merged, tmp_path / "merged.gguf")
    requantize(tmp_path / "merged.gguf", tmp_path / "q4.gguf", Q4_K_M)
    meta = read_meta(tmp_path / "q4.gguf")
    assert meta.file_type == Q4_K_M
    assert all(t.ggml_type not in (0, 1) for t in meta.tensors if len(t.shape) == 2)  # no F32/F16 matrix left
    llama = load_llama(tmp_path / "q4.gguf", n_ctx=64, n_threads=1, logits_all=True)
    llama.eval([1, 300, 301, 302])
    assert np.isfinite(np.array(llama.scores[:4])).all()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"model.layers.7.mlp.up_proj.weight": torch.zeros(512, 256)}, "has no tensor"),
        ({"model.layers.0.mlp.up_proj.weight": torch.zeros(256, 512)}, "has shape"),
        ({"model.layers.0.mlp.up_proj.weight": torch.full((512, 256), float("nan"))}, "diverged"),
        ({"model.layers.0.mlp.up_proj.weight": torch.full((512, 256), 1e6)}, "diverged"),
    ],
)
def test_write_back_refuses_bad_weights(tiny: Path, tmp_path: Path, bad: dict, match: str) -> None:
    with pytest.raises(ModelError, match=match):
        write_merged_gguf(tiny, bad, tmp_path / "out.gguf")
    assert list(tmp_path.iterdir()) == []


def test_requantize_defaults_to_the_source_file_type(tiny_q4: Path, tmp_path: Path) -> None:
    state = read_hf_tensors(tiny_q4, QK)
    write_merged_gguf(tiny_q4, state, tmp_path / "f16.gguf")  # still says Q4_K_M in its header
    requantize(tmp_path / "f16.gguf", tmp_path / "again.gguf")
    assert read_meta(tmp_path / "again.gguf").file_type == Q4_K_M


@pytest.mark.parametrize("touched_type, least_kept", [("Q8_0", 0.95), ("file", None)])
def test_touched_tensors_keep_a_small_change_at_their_own_type(
    tiny_q4: Path, tmp_path: Path, touched_type: str, least_kept: float | None
) -> None:
    # A change far below a 4-bit step, as one night's LoRA makes: stored at Q8_0 inside the
    # Q4_K_M file it survives; quantized with the file's own types most of it is rounded away.
    served = read_hf_tensors(tiny_q4, QK)
    gen = torch.Generator().manual_seed(0)
    delta = {k: 0.05 * float(w.std()) * torch.randn(w.shape, generator=gen) for k, w in served.items()}
    touched = write_merged_gguf(tiny_q4, {k: w + delta[k] for k, w in served.items()}, tmp_path / "f16.gguf")
    assert sorted(touched) == ["blk.0.attn_q.weight", "blk.1.attn_k.weight"]
    overrides = keep_touched_at(touched_type, Q4_K_M, touched)
    requantize(tmp_path / "f16.gguf", tmp_path / "out.gguf", overrides=overrides)
    before, after = read_meta(tiny_q4), read_meta(tmp_path / "out.gguf")
    assert after.file_type == Q4_K_M
    for t in before.tensors:
        assert after.tensor(t.name).ggml_type == (8 if t.name in overrides else t.ggml_type), t.name
    now = read_hf_tensors(tmp_path / "out.gguf", QK)
    kept = sum(float(((now[k] - served[k]) * delta[k]).sum()) for k in QK) / sum(
        float(delta[k].square().sum()) for k in QK
    )
    if least_kept is None:
        assert kept < 0.5
    else:
        assert kept > least_kept


def test_touched_type_names_a_ggml_type_and_is_moot_for_unquantized_files() -> None:
    from assistant.errors import ConfigError

    assert keep_touched_at("q6_k", Q4_K_M, ["a", "b"]) == {"a": 14, "b": 14}
    assert keep_touched_at("file", Q4_K_M, ["a"]) == {}
    assert keep_touched_at("Q8_0", 1, ["a"]) == {}  # an F16 file already keeps every change
    with pytest.raises(ConfigError, match="sleep.touched_type 'Q9' is not a ggml tensor type"):
        keep_touched_at("Q9", Q4_K_M, ["a"])


def test_requantize_failure_is_a_model_error_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "junk.gguf").write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ModelError):
        requantize(tmp_path / "junk.gguf", tmp_path / "out.gguf", Q4_K_M)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.gguf"]


def test_a_stop_during_requantize_kills_the_quantizer_and_leaves_nothing(tiny_q4: Path, tmp_path: Path) -> None:
    import time

    from assistant.stoppoints import Stopped, stop_points

    started = time.monotonic()
    with stop_points(lambda: True), pytest.raises(Stopped):
        requantize(tiny_q4, tmp_path / "out.gguf", Q4_K_M)
    assert time.monotonic() - started < 10
    assert list(tmp_path.iterdir()) == []


def test_a_stop_during_write_back_leaves_nothing(tiny: Path, tmp_path: Path) -> None:
    from assistant.stoppoints import Stopped, stop_points

    asked = iter(range(10_000))
    with stop_points(lambda: next(asked) >= 3), pytest.raises(Stopped):  # after three tensors
        write_merged_gguf(tiny, read_hf_tensors(tiny, QK), tmp_path / "merged.gguf")
    assert list(tmp_path.iterdir()) == []


def test_master_serializes_and_detects_damage() -> None:
    m = Master({"a.weight": torch.randn(3, 4).half(), "b.weight": torch.randn(5).half()}, "sha-1")
    back = Master.from_bytes(m.to_bytes())
    assert back.generation == "sha-1" and back.matches("sha-1") and not back.matches("sha-2")
    assert all(torch.equal(back.tensors[k], v) for k, v in m.tensors.items())
    assert not Master().matches("")
    for junk in (b"", b"\x00" * 64, m.to_bytes()[:40]):
        with pytest.raises(ModelError, match="weight master is damaged"):
            Master.from_bytes(junk)


def test_master_merges_onto_its_own_copy_not_the_served_weights() -> None:
    served = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor([5.0])}
    first = Master().merged({"w": torch.tensor([0.25, 0.25])}, served)
    assert first.tensors["w"].dtype == torch.float16 and first.generation == ""
    drifted = {"w": torch.tensor([9.0, 9.0]), "v": torch.tensor([5.0])}  # ignored: master holds w
    second = first.stamp("g1").merged({"w": torch.tensor([0.25, 0.0]), "v": torch.tensor([1.0])}, drifted)
    assert second.tensors["w"].tolist() == [1.5, 2.25] and second.tensors["v"].tolist() == [6.0]
    with pytest.raises(ModelError):
        second.merged({"nope": torch.zeros(1)}, served)


def test_master_nights_do_not_drift(tiny_q4: Path, tmp_path: Path) -> None:
    names = linear_names(2)
    master = Master().merged({k: torch.zeros(1) for k in names}, read_hf_tensors(tiny_q4, names))
    current = tiny_q4
    files = []
    for night in range(2):
        write_merged_gguf(current, master.replacements(), tmp_path / "merged.gguf")
        current = tmp_path / f"night{night}.gguf"
        requantize(tmp_path / "merged.gguf", current)
        files.append(current.read_bytes())
    assert files[0] == files[1]
