"""Nightcap's own benchmarks, run by `nightcap bench NAME` (`assistant.commands.bench` imports them
by name, on demand); no product package imports this one.

`bench/eval/` holds the benchmarks' development set: facts.jsonl (the items told and their
probes; facts-20.jsonl is the earlier set), general.jsonl (general-knowledge probes) and
heldout.txt (text for perplexity). The quality gates' own files stay in `sleep/eval/`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(name: str) -> Path:
    """A file of `bench/eval/`: facts.jsonl, facts-20.jsonl, general.jsonl or heldout.txt."""
    return Path(str(resources.files("bench").joinpath("eval", name)))
