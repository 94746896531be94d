import dataclasses
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.config import Config
from assistant.errors import ConfigError


def test_defaults_when_missing(tmp_path: Path) -> None:
    cfg = Config.load(tmp_path / "none.toml")
    assert cfg.model.n_ctx == 4096 and cfg.chat.temperature == 0.7


def test_reads_values_and_coerces_ints_to_floats(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('[chat]\ntemperature = 1\nsystem_prompt = "Be terse."\n[model]\nn_ctx = 1024\n')
    cfg = Config.load(f)
    assert cfg.chat.temperature == 1.0 and isinstance(cfg.chat.temperature, float)
    assert cfg.chat.system_prompt == "Be terse." and cfg.model.n_ctx == 1024


@pytest.mark.parametrize(
    "text, key",
    [
        ('[chat]\ntemperature = "hot"\n', "chat.temperature"),
        ("[model]\nn_ctx = 1.5\n", "model.n_ctx"),
        ("[model]\nbogus = 1\n", "model.bogus"),
        ("chat = 3\n", "chat"),
        ("[sleep]\nlora_targets = [1, 2]\n", "sleep.lora_targets"),
    ],
)
def test_invalid_key_is_named(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        Config.load(f)
    assert f"'{key}'" in str(err.value)


def test_broken_toml_is_one_line_cli_error(nightcap_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nightcap_home.mkdir(parents=True, exist_ok=True)
    (nightcap_home / "config.toml").write_text("[chat\n")
    assert main(["status"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid TOML" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "section,key,bad",
    [
        ("sleep", "gates", "most"),
        ("sleep", "lr_schedule", "linear"),
        ("sleep", "device", "tpu"),
        ("sleep", "precision", "fp8"),
        ("vault", "keyring", "sometimes"),
    ],
)
def test_a_choice_setting_outside_its_values_fails_when_the_config_is_read(
    tmp_path: Path, section: str, key: str, bad: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[{section}]\n{key} = "{bad}"\n')
    with pytest.raises(ConfigError, match=f"'{section}.{key}' must be one of .*got '{bad}'"):
        Config.load(path)


def test_readme_settings_table_is_generated_from_the_fields() -> None:
    from assistant.config import TABLE_BEGIN, TABLE_END, readme_with_settings, settings_table

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert readme_with_settings(readme) == readme, "the README's settings table is stale: python -m assistant.config"
    table = settings_table()
    assert TABLE_BEGIN in readme and TABLE_END in readme
    # Every field of every section has a row with its docstring, and choices list their values.
    sections = [getattr(Config(), f.name) for f in dataclasses.fields(Config)]
    assert table.count("\n| `") == sum(len(dataclasses.fields(s)) for s in sections)
    assert "| `sleep.kl_top_k` | `128` | The frozen model's side" in table
    assert "One of: auto, on, off." in table


def test_a_table_row_follows_a_changed_docstring() -> None:
    from assistant.config import readme_with_settings

    stale = (
        "before\n<!-- settings table: generated from assistant/config.py by `python -m assistant.config` -->\n"
        "| old |\n<!-- end of settings table -->\nafter"
    )
    fresh = readme_with_settings(stale)
    assert fresh.startswith("before\n") and fresh.endswith("\n<!-- end of settings table -->\nafter")
    assert "| old |" not in fresh and "`model.n_ctx`" in fresh


def test_quantization_type_choices_all_name_real_types() -> None:
    import typing

    import gguf
    import llama_cpp

    from assistant.config import FileType, TensorType

    for name in typing.get_args(FileType)[1:]:
        assert hasattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}"), name
    for name in typing.get_args(TensorType)[1:]:
        gguf.GGMLQuantizationType[name]
