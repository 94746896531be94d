"""`nightcap bench consolidation`: argument handling, night splitting and the printed table."""

from __future__ import annotations

import dataclasses

import pytest

from assistant.errors import UsageError
from sleep import bench_consolidation as B


def test_facts_split_over_nights_in_order() -> None:
    facts = [{"id": str(i)} for i in range(7)]
    groups = B.split(facts, 3)
    assert [len(g) for g in groups] == [2, 2, 3] and [f for g in groups for f in g] == facts
    assert B.split(facts[:2], 3) == [[facts[0]], [facts[1]]]


def test_context_row_puts_the_teach_messages_in_the_system_prompt() -> None:
    system = B.context_system("Be brief.", [{"teach": ["My cat is Miso."]}, {"teach": ["I live in Oslo."]}])
    assert system.startswith("Be brief.") and "My cat is Miso. I live in Oslo." in system


@pytest.mark.parametrize("argv", [["--rows", "bogus"], ["--rows", ""], ["--nights", "0"]])
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        B.main(argv)


def test_table_shows_each_row_against_the_pre_sleep_model(capsys: pytest.CaptureFixture[str]) -> None:
    none = B.Row("none", 0.2, 0.0, 0.9, 12.0, 0.1)
    night = B.Row("nightcap", 0.8, 0.5, 0.9, 12.24, 0.7, "promoted/promoted/promoted", 400.0, "recall 1")
    fig = {"model": "m.gguf", "facts": 2, "fact_probes": 3, "general": 30, "nights": 3, "targets": B.TARGETS,
           "rows": [dataclasses.asdict(none), dataclasses.asdict(night)], "pre_sleep": dataclasses.asdict(none)}
    B.print_table(fig)
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("nightcap"))
    assert "0.800" in row and "100.0%" in row and "+2.0%" in row and "0.700" in row and "promoted" in row
