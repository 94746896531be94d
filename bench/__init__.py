"""Nightcap's own benchmarks, run by `nightcap bench NAME` (`assistant.commands.bench` imports them
by name, on demand); no product package imports this one.

`bench/eval/` holds the benchmarks' development set: facts.jsonl (the items told and their
probes; facts-20.jsonl is the earlier set), general.jsonl (general-knowledge probes) and
heldout.txt (text for perplexity). The quality gates' own files stay in `sleep/eval/`.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """A file of `bench/eval/`: facts.jsonl, facts-20.jsonl, general.jsonl or heldout.txt."""
    return Path(str(resources.files("bench").joinpath("eval", name)))


SET_HELP = "a sleep setting for the homes this run makes (a TOML value: --set replay_anchor=true)"


def sleep_settings(pairs: list[str]) -> dict[str, str]:
    """`--set NAME=VALUE` pairs as [sleep] settings (TOML values, as config.toml holds them).
    Raises ValueError, with what to fix, for a value that is not TOML or a name that is no setting."""
    from assistant.config import SleepConfig

    settings = {}
    for pair in pairs:
        name, _, value = (part.strip() for part in pair.partition("="))
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            raise ValueError(f'--set {pair}: VALUE must be a TOML value (true, 0.5, "text")') from None
        if not hasattr(SleepConfig(), name):
            raise ValueError(f"--set {pair}: no sleep setting is called {name!r}")
        settings[name] = value
    return settings
