"""`nightcap bench compare`: two runs' replies paired probe by probe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.errors import UsageError
from bench import compare as C
from bench.evalset import split_of


def _write(directory: Path, seed: int, rows: list[tuple[str, str, bool, bool]], row: str = "nightcap") -> Path:
    directory.mkdir(exist_ok=True)
    with (directory / f"{row}-{seed}.jsonl").open("w", encoding="utf-8") as f:
        for item, kind, mc, gen in rows:
            probe = {"item": item, "kind": kind, "question": f"q {item} {kind}", "answer": "a", "reply": "r"}
            f.write(json.dumps({**probe, "mc": mc, "gen": gen}) + "\n")
    return directory


def test_only_discordant_probes_count_and_secrets_are_left_out(tmp_path: Path) -> None:
    base = _write(
        tmp_path / "base",
        0,
        [("v1", "direct", True, False), ("v2", "direct", False, False), ("v3", "reverse", True, True)]
        + [("v4", "secret", False, False)],
    )
    other = _write(
        tmp_path / "other",
        0,
        [("v1", "direct", True, True), ("v2", "direct", True, True), ("v3", "reverse", False, True)]
        + [("v4", "secret", True, True), ("v5", "direct", True, True)],  # v5: scored by one run only
    )
    fig = C.compare(C.load(base, "nightcap"), C.load(other, "nightcap"))
    assert fig["all"]["n"] == 3 and fig["only_other"] == 1 and fig["only_base"] == 0
    assert (fig["all"]["mc"]["wins"], fig["all"]["mc"]["losses"]) == (1, 1)
    assert (fig["all"]["gen"]["wins"], fig["all"]["gen"]["losses"]) == (2, 0)
    assert fig["all"]["gen"]["base"] == pytest.approx(1 / 3, abs=1e-4) and fig["all"]["gen"]["other"] == 1.0
    assert fig["kind"]["reverse"]["mc"]["losses"] == 1 and "secret" not in fig["kind"]
    assert sum(s["n"] for s in fig["split"].values()) == 3 and split_of("v1") in fig["split"]


def test_the_sign_test_is_exact_and_two_sided() -> None:
    assert C.sign_test(0, 0) == 1.0 and C.sign_test(3, 3) == 1.0
    assert C.sign_test(0, 5) == C.sign_test(5, 0) == pytest.approx(2 / 32)
    assert C.sign_test(12, 6) == pytest.approx(0.2379, abs=1e-4)  # the same as a binomial test by hand


def test_seeds_pair_with_their_own_seed(tmp_path: Path) -> None:
    base = _write(tmp_path / "base", 0, [("v1", "direct", False, False)])
    _write(base, 1, [("v1", "direct", True, True)])
    other = _write(tmp_path / "other", 0, [("v1", "direct", True, True)])
    _write(other, 1, [("v1", "direct", True, True)])
    fig = C.compare(C.load(base, "nightcap"), C.load(other, "nightcap"))
    assert fig["seed"]["0"]["mc"]["wins"] == 1 and fig["seed"]["1"]["mc"]["wins"] == 0
    assert fig["all"]["n"] == 2


def test_probes_group_by_the_night_their_item_was_told_where_both_runs_wrote_it(tmp_path: Path) -> None:
    def told(directory: Path, rows: list[tuple[str, int | None, bool]]) -> Path:
        directory.mkdir()
        with (directory / "nightcap-0.jsonl").open("w", encoding="utf-8") as f:
            for item, night, gen in rows:
                probe = {"item": item, "kind": "direct", "question": f"q {item}", "answer": "a", "reply": "r"}
                f.write(json.dumps({**probe, **({"night": night} if night else {}), "mc": gen, "gen": gen}) + "\n")
        return directory

    base = told(tmp_path / "base", [("v1", 1, False), ("v2", 1, False), ("v3", 3, True), ("v4", None, True)])
    other = told(tmp_path / "other", [("v1", 1, True), ("v2", 1, True), ("v3", 3, False), ("v4", None, False)])
    fig = C.compare(C.load(base, "nightcap"), C.load(other, "nightcap"))
    assert set(fig["night"]) == {"1", "3"}  # v4's night is unknown: in "all", in no night
    assert (fig["night"]["1"]["gen"]["wins"], fig["night"]["1"]["gen"]["losses"]) == (2, 0)
    assert (fig["night"]["3"]["gen"]["wins"], fig["night"]["3"]["gen"]["losses"]) == (0, 1)
    assert fig["all"]["n"] == 4


def test_bad_input_is_one_line_that_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="holds no nightcap-SEED.jsonl"):
        C.load(empty, "nightcap")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "nightcap-0.jsonl").write_text('{"item": "v1"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="nightcap-0.jsonl:1 is not a scored probe"):
        C.load(broken, "nightcap")
    other = _write(tmp_path / "other", 3, [("v1", "direct", True, True)])
    base = _write(tmp_path / "base", 0, [("v1", "direct", True, True)])
    with pytest.raises(UsageError, match="share no probe"):
        C.compare(C.load(base, "nightcap"), C.load(other, "nightcap"))
    assert main(["bench", "compare", str(empty), str(other)]) == 2
    err = capsys.readouterr().err
    assert "holds no nightcap-SEED.jsonl" in err and "Traceback" not in err and err.count("\n") == 1


def test_the_command_prints_a_table_and_one_json_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assistant.cli import main

    base = _write(tmp_path / "base", 0, [("v1", "direct", False, False), ("v2", "paraphrase", True, False)])
    other = _write(tmp_path / "other", 0, [("v1", "direct", True, False), ("v2", "paraphrase", True, True)])
    assert main(["bench", "compare", str(base), str(other)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("{") and json.loads(out[-1])["all"]["mc"]["wins"] == 1
    assert any(line.startswith("all") and "+1/-0" in line for line in out)
    assert main(["bench", "compare", str(base), str(other), "--json"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
