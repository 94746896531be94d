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
    return home
