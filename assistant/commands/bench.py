"""`nightcap bench {chat,serve,sleep,consolidation,nights,forget,yield} [...]`: Nightcap's own benchmarks.

The benchmarks live in the top-level package `bench` (shipped with the product, with their
development set in `bench/eval/`); this dispatcher names each module by string and imports only
the one asked for, so no product module imports `bench`.

Each prints a table of figures measured against a baseline in the same run, then one JSON line.
They are measurements, not tests: nothing here passes or fails on timing.
"""

from __future__ import annotations

import importlib

from assistant.errors import UsageError

BENCHES = {
    "chat": ("bench.chat", "serving speed and start-up vs raw llama-cpp-python"),
    "sleep": ("bench.training", "training tokens/s vs a naive peft loop; stage times; peak RSS"),
    "consolidation": ("bench.consolidation", "recall and retention after sleep vs baselines"),
    "compare": ("bench.compare", "two consolidation runs' replies probe by probe: wins, losses, exact p"),
    "serve": ("bench.serve", "the API's decode speed and time to first token vs raw llama-cpp-python"),
    "nights": ("bench.nights", "a month of nights on one home: recall, retention, time, memory, disk"),
    "forget": ("bench.forget", "unlearning consolidated facts: the forgotten, the kept, general MC"),
    "yield": ("bench.yielding", "how long a night takes to give the machine back, from random points of it"),
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: nightcap bench {" + ",".join(BENCHES) + "} [options]\n")
        for name, (_, desc) in BENCHES.items():
            print(f"  {name:<14} {desc}")
        return 0
    name = argv[0]
    if name not in BENCHES:
        raise UsageError(f"unknown benchmark '{name}'; choose one of: {', '.join(BENCHES)}")
    return int(importlib.import_module(BENCHES[name][0]).main(argv[1:]) or 0)
