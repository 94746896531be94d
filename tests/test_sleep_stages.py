"""The night's stage order is written once, in `sleep.cycle.STAGES`: the code that chains the
stages, the cycle's description of them and the README's list of them all follow it."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path
from typing import Callable

from sleep import cycle, forget
from sleep.cycle import STAGES

README = Path(__file__).resolve().parent.parent / "README.md"


def stages_chained_by(function: Callable[..., object]) -> list[str]:
    """The names passed to `stage(...)` in `function`, in source order."""
    tree = ast.parse(inspect.getsource(function))
    named = [
        (node.lineno, node.col_offset, str(node.args[0].value))
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "stage"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]
    return [name for _, _, name in sorted(named)]


def readme_stages() -> list[str]:
    """The bold stage names of the README's numbered list in "How the day/night loop works"
    (an item may name several: "**weigh / dream / replay**")."""
    section = README.read_text(encoding="utf-8").split("## How the day/night loop works", 1)[1].split("\n## ", 1)[0]
    items = re.findall(r"^\d+\. \*\*([^*]+)\*\*", section, flags=re.MULTILINE)
    return [name.strip() for item in items for name in item.split("/")]


def test_the_cycle_runs_every_stage_in_the_order_of_stages() -> None:
    # `_run` chains them; weigh to train are `_learn`'s, which it calls once the model is loaded.
    run = stages_chained_by(cycle._run)
    at = run.index("load") + 1
    assert run[:at] + stages_chained_by(cycle._learn) + run[at:] == list(STAGES)


def test_a_forget_runs_the_stages_it_needs_in_the_order_of_stages() -> None:
    used = stages_chained_by(forget._run)
    assert used and used == [s for s in STAGES if s in used]


def test_the_cycle_describes_each_stage_in_the_order_of_stages() -> None:
    described = re.findall(r"^    (\w+) {2,}\S", cycle.__doc__ or "", flags=re.MULTILINE)
    assert described == list(STAGES)


def test_the_readme_lists_the_stages_in_the_order_of_stages() -> None:
    assert readme_stages() == list(STAGES)
