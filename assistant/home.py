"""Where Nightcap keeps everything: one home directory.

`$NIGHTCAP_HOME` if set, else the platformdirs user data dir. Nothing is written anywhere else
(temp work happens in `home/tmp`, cleared at start of each cycle).

Layout::

    config.toml          settings (see assistant.config)
    models/              generations gen-0000, gen-0001, ... and the `current` pointer
    vault/               keystore, encrypted episode logs, ledger
    reports/             sleep reports (no conversation content)
    serve/               the API's token and the time of its last request (`nightcap serve`)
    logs/                daemon log (decisions only, no content)
    tmp/                 scratch for sleep; removed after each cycle and on the next start
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from assistant.fsutil import ensure_dir

ENV_HOME = "NIGHTCAP_HOME"


def default_home() -> Path:
    """The home directory in force: `$NIGHTCAP_HOME` or the platform's user data dir."""
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs  # deferred: only needed when no override is set

    return Path(platformdirs.user_data_dir("nightcap", appauthor=False))


@dataclass(frozen=True)
class Home:
    """Paths of one Nightcap home. Directories are created (0700) on first access."""

    root: Path

    @classmethod
    def resolve(cls, root: Path | None = None) -> "Home":
        home = cls(Path(root) if root else default_home())
        ensure_dir(home.root)
        return home

    def _dir(self, name: str) -> Path:
        return ensure_dir(self.root / name)

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def models(self) -> Path:
        return self._dir("models")

    @property
    def vault(self) -> Path:
        return self._dir("vault")

    @property
    def reports(self) -> Path:
        return self._dir("reports")

    @property
    def logs(self) -> Path:
        return self._dir("logs")

    @property
    def api_activity(self) -> Path:
        """Touched by every API request; its mtime counts as the user's last input."""
        return self.root / "serve" / "last-request"

    @property
    def tmp(self) -> Path:
        return self._dir("tmp")
