"""The Nightcap object: one home, its config, model store, runtime and vault, wired together.

The CLI commands and the TUI both start from `Nightcap.load()`, so they see the same state the
same way. Everything heavy (llama.cpp, the vault's key derivation) is opened on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.chat import Session
from assistant.config import Config
from assistant.home import Home
from models.store import Generation, ModelStore

if TYPE_CHECKING:
    from assistant.vault import Vault
    from models.runtime import Runtime


def make_runtime(gen: Generation, config: Config) -> "Runtime":
    """The runtime serving `gen`. Tests replace this seam with a scripted runtime."""
    from models.runtime import LlamaRuntime

    return LlamaRuntime(gen.gguf, gen.name, config.model, config.chat)


@dataclass
class Nightcap:
    """Everything a command needs, opened lazily."""

    home: Home
    config: Config
    _vault: Any = field(default=None, repr=False)

    @classmethod
    def load(cls, root: Path | None = None) -> "Nightcap":
        home = Home.resolve(root)
        return cls(home, Config.load(home.config_file))

    @cached_property
    def store(self) -> ModelStore:
        return ModelStore(self.home.models)

    def runtime(self) -> "Runtime":
        return make_runtime(self.store.current(), self.config)

    def vault(self, passphrase: str | None = None) -> "Vault":
        if self._vault is None:
            from assistant.vault import Vault

            self._vault = Vault.open(self.home, passphrase=passphrase)
        return self._vault

    def session(self, runtime: "Runtime", session_id: str | None = None, *, log: bool = True) -> Session:
        """A session that continues `session_id` from the vault and seals each turn into it."""
        history = self.vault().session_history(session_id) if session_id and log else []
        sink = self.vault().append if log else None
        return Session(
            runtime,
            system_prompt=self.config.chat.system_prompt,
            session_id=session_id,
            history=history,
            on_episode=sink,
        )
