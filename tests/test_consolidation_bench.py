"""`nightcap bench consolidation`: the development set, its days and split, the recall figures,
arguments and the printed tables."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from assistant.errors import UsageError
from bench import consolidation as B
from bench import data_path
from bench import evalset as E
from bench import recall as R
from sleep import probes as P


def _item(i: int, night: int = 0, update_night: int = 0, category: str = "plain") -> dict[str, object]:
    rec: dict[str, object] = {
        "id": f"x{i}",
        "teach": [f"fact {i}"],
        "category": category,
        "probes": [{"question": f"q{i}?", "answer": f"a{i}", "distractors": ["d"]}],
    }
    if night:
        rec["night"] = night
    if update_night:
        rec["update"] = {"night": update_night, "teach": [f"update {i}"]}
    return rec


def test_the_shipped_set_splits_into_two_fixed_halves_by_id() -> None:
    items = E.items(P.load_jsonl(data_path("facts.jsonl")))
    tune, check = E.select(items, "tune"), E.select(items, "check")
    assert len(tune) + len(check) == len(items) == 100 and 35 <= len(tune) <= 65
    # The split depends on the id alone: reordering or filtering the file never moves an item.
    assert {it.id for it in E.select(list(reversed(items)), "tune")} == {it.id for it in tune}
    assert all(E.split_of(it.id) == "tune" for it in tune)
    assert all(p.split == "check" for it in check for p in it.probes)
    assert {p.kind for it in items for p in it.probes} >= {"direct", "paraphrase", "reverse", "update-new", "secret"}


def test_the_earlier_format_still_loads_with_defaults() -> None:
    items = E.items(P.load_jsonl(data_path("facts-20.jsonl")))
    assert len(items) == 20 and all(it.category == "plain" and it.night == 0 for it in items)
    assert {p.kind for it in items for p in it.probes} == {"direct"}
    days = E.days(items, 3)
    assert [len(d.items) for d in days] == [7, 7, 6] and [it for d in days for it in d.items] == items


def test_days_follow_the_items_nights_and_tell_each_update_on_its_night() -> None:
    items = E.items([_item(1, 1, 2), _item(2, 2), _item(3, 3), _item(4, 1)])
    days = E.days(items, 3)
    assert [[it.id for it in d.items] for d in days] == [["x1", "x4"], ["x2"], ["x3"]]
    assert days[0].conversations == (("fact 1",), ("fact 4",))
    assert days[1].conversations == (("fact 2",), ("update 1",))
    # One night: everything on one day, each update after what it changes.
    one = E.days(items, 1)
    assert len(one) == 1 and one[0].conversations[-1] == ("update 1",)
    assert E.context_messages(items) == ["fact 1", "fact 4", "fact 2", "update 1", "fact 3"]
    # Each item's night, as the replies record it: the night it was first told, not its update's.
    assert B.nights_told(days) == {"x1": 1, "x4": 1, "x2": 2, "x3": 3}


def test_wilson_interval_matches_known_values() -> None:
    lo, hi = R.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert R.wilson(0, 10)[0] == 0.0 and R.wilson(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)
    assert R.wilson(0, 0) == (0.0, 1.0) and str(R.Rate(0, 0)) == "-"


def _scored(
    item: str,
    answer: str,
    reply: str,
    kind: str = "direct",
    mc: bool = True,
    split: str = "tune",
    category: str = "plain",
) -> R.Scored:
    probe = E.EvalProbe(item, f"What about {item}?", answer, ("zzz",), kind, category, split)
    return R.Scored(probe, mc, R.contains(reply, answer), reply)


def test_summary_keeps_secrets_apart_and_counts_bleed() -> None:
    scored = [
        _scored("a", "Lisbon", "She lives in Lisbon."),
        _scored("b", "Oslo", "She lives in Lisbon.", mc=False, split="check"),  # another item's answer: bleed
        _scored("c", "teal", "I don't know.", kind="paraphrase", split="check"),  # wrong, but no bleed
        _scored("d", "hunter2", "It is hunter2.", kind="secret", category="secret"),
    ]
    s = R.summarize(scored)
    assert s["all"] == {"mc": [2, 3], "gen": [1, 3]} and s["secret"] == {"mc": [1, 1], "gen": [1, 1]}
    assert s["bleed"] == [1, 3]
    assert s["split"]["check"] == {"mc": [1, 2], "gen": [0, 2]} and set(s["kind"]) == {"direct", "paraphrase"}
    assert R.pooled([s, s])["all"] == {"mc": [4, 6], "gen": [2, 6]} and R.pooled([s, s])["bleed"] == [2, 6]


def test_an_answer_the_question_itself_names_is_no_bleed() -> None:
    scored = _scored("a", "Lisbon", "Yes, Oslo.")
    scored = dataclasses.replace(scored, probe=dataclasses.replace(scored.probe, question="Is it Oslo?"))
    assert not R.bled(scored, {"Oslo"}) and R.bled(_scored("a", "Lisbon", "Yes, Oslo."), {"Oslo"})


def test_scoring_a_real_model_gives_a_summary_of_every_probe(tmp_path: Path) -> None:
    from tiny_model import make_tiny_gguf

    model = make_tiny_gguf(tmp_path / "tiny.gguf")
    items = E.items([_item(1, 1), _item(2, 1, category="secret")])
    general = [P.Probe("the capital of france is", "paris", ["cat", "dog"], False)]
    replies = tmp_path / "replies.jsonl"
    summary, general_mc, ppl, first = B.score(
        model, E.probes_of(items), general, "the cat is my name.", "", E.probes_of(items[:1]), 0, replies, {"x1": 1}
    )
    assert summary["all"]["mc"][1] == 1 and summary["secret"]["mc"][1] == 1 and first is not None
    assert 0.0 <= general_mc <= 1.0 and ppl > 1.0
    lines = [json.loads(line) for line in replies.read_text(encoding="utf-8").splitlines()]
    assert [(r["item"], r.get("night")) for r in lines] == [("x1", 1), ("x2", None)]


def test_context_row_puts_the_messages_in_the_system_prompt() -> None:
    system = B.context_system("Be brief.", ["My cat is Miso.", "I live in Oslo."])
    assert system.startswith("Be brief.") and "My cat is Miso. I live in Oslo." in system


@pytest.mark.parametrize(
    "argv",
    [
        ["--rows", "bogus"],
        ["--rows", ""],
        ["--nights", "0"],
        ["--seeds", "0"],
        ["--split", "half"],
        ["--first-seed", "-1"],
        ["--set", "no_such_setting=1"],
        ["--set", "lead_weight=three"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        B.main(argv)


def _fig(rows: dict[str, list[B.Run]], items: int = 1, nights: int = 1) -> dict[str, object]:
    """A benchmark figure as `run` returns it, for the table tests."""
    return {
        "model": "m.gguf",
        "items": items,
        "probes": items,
        "general": 80,
        "nights": nights,
        "seeds": max(len(runs) for runs in rows.values()),
        "gates": "health",
        "targets": B.TARGETS,
        "rows": {name: [dataclasses.asdict(r) for r in runs] for name, runs in rows.items()},
    }


def test_tables_show_each_row_split_kind_and_leakage(capsys: pytest.CaptureFixture[str]) -> None:
    scored = [
        _scored("a", "Lisbon", "Lisbon"),
        _scored("b", "Oslo", "no", split="check", kind="reverse"),
        _scored("d", "hunter2", "no", kind="secret", category="secret"),
    ]
    s = R.summarize(scored)
    none = B.Run(0, s, 0.9, 12.0)
    night = [
        B.Run(
            seed, s, 0.88, 12.24, s, [400.0, 410.0], [120, 120], "promoted/promoted", "health", None, [2900.0, 3100.0]
        )
        for seed in (0, 1)
    ]
    B.print_tables(_fig({"none": [none], "nightcap": night}, items=3, nights=2))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("nightcap"))
    assert "0.500" in row and "+2.0%" in row and "410" in row
    assert "reverse" in out and "leakage" in out and "[120, 120]" in out and "peak RSS [2.83, 3.03]" in out


def test_tables_without_the_pre_sleep_row_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    s = R.summarize([_scored("a", "Lisbon", "Lisbon")])
    run = B.Run(0, s, 0.88, 12.24, None, [400.0], [120], "promoted", "health")
    B.print_tables(_fig({"nightcap": [run]}))
    out = capsys.readouterr().out
    assert "run the none row" in out and "+0.0%" not in out


def test_leakage_gives_exposure_over_the_pre_sleep_models(capsys: pytest.CaptureFixture[str]) -> None:
    def secret(bits: float) -> R.Scored:
        return dataclasses.replace(_scored("d", "hunter2", "no", kind="secret", category="secret"), exposure=bits)

    before = R.summarize([secret(3.5), secret(4.5)])
    after = R.summarize([secret(3.0), secret(3.5)])
    B.print_tables(_fig({"none": [B.Run(0, before, 0.9, 12.0)], "nightcap": [B.Run(0, after, 0.88, 12.2)]}))
    lines = capsys.readouterr().out.splitlines()
    assert next(ln for ln in lines if ln.startswith("  none:")).endswith("exposure 4.00 bits (mean of 2)")
    assert next(ln for ln in lines if ln.startswith("  nightcap:")).endswith(
        "exposure 3.25 bits (mean of 2), -0.75 over the pre-sleep model's"
    )


def test_random_strings_keep_the_secrets_shape() -> None:
    import random

    rng = random.Random(0)
    for secret in ("JT 62 91 04 B", "velvetRiver#2209", "14-37-22"):
        made = {R.shaped_like(secret, rng) for _ in range(50)}
        assert len(made) > 40 and all(len(m) == len(secret) for m in made)
        for m in made:
            assert all(
                (a.isdigit() == b.isdigit())
                and (a.isupper() == b.isupper())
                and (a.islower() == b.islower())
                and (a.isalnum() or a == b)
                for a, b in zip(m, secret)
            )


def test_a_secrets_words_are_swapped_for_words_and_a_key_keeps_its_service_prefix() -> None:
    import random

    rng = random.Random(0)
    words = {5: ["lemon", "river", "stone"], 6: ["garden", "velvet"], 7: ["harbour", "lantern"]}
    made = [R.shaped_like("velvetRiver#2209", rng, words) for _ in range(40)]
    # A run that reads as a word becomes a word of its length, in its case pattern.
    assert {m[:6] for m in made} == {"garden", "velvet"} and {m[6:11] for m in made} == {"Lemon", "River", "Stone"}
    assert all(m[11] == "#" and m[12:].isdigit() and len(m) == 16 for m in made)
    assert {R.shaped_like("quokka-lantern-5830", rng, words)[:15] for _ in range(20)} == {
        f"{a}-{b}-" for a in ("garden", "velvet") for b in ("harbour", "lantern")
    }
    # Letters that read as no word ("Rz", "QpT", "xkcd") stay random letters of their case.
    odd = {R.shaped_like("Rz8QpT1xkcd", rng, words) for _ in range(40)}
    assert len(odd) == 40 and all(re.fullmatch(r"[A-Z][a-z]\d[A-Z][a-z][A-Z]\d[a-z]{4}", o) for o in odd)
    # Every key of a service starts the same way: only its random part is random.
    keys = {R.shaped_like("sk-live-4Rz8QpT1mW9eXc27", rng, words) for _ in range(20)}
    assert len(keys) == 20 and all(k.startswith("sk-live-") and len(k) == 24 for k in keys)


def test_exposure_is_scored_on_secret_probes_only_and_bounded(tmp_path: Path) -> None:
    import math

    from models.scoring import Scorer
    from tiny_model import make_tiny_gguf

    model = make_tiny_gguf(tmp_path / "tiny.gguf")
    items = E.items([_item(1, 1), _item(2, 1, category="secret")])
    scorer = Scorer(model, n_ctx=512)
    try:
        scored = R.score_probes(scorer, E.probes_of(items), "", max_tokens=4, exposure=63)
    finally:
        scorer.close()
    bits = [s.exposure for s in scored]
    assert bits[0] is None and all(0.0 <= b <= math.log2(64) for b in bits[1:] if b is not None)
    assert R.summarize(scored)["exposure"][1] == len([b for b in bits if b is not None]) > 0


def test_the_nights_own_questions_are_its_span_answered_augmentations() -> None:
    said = ["My sister Ana lives in Porto.", "Hi! How are you today?", "My locker code is 4417."]
    asked = R.trained_questions(said, 50)
    assert asked and all(answer and answer.lower() in said[0].lower() for _, answer, _ in asked)
    # Small talk gives none and a secret is never a training question.
    assert not any("4417" in q or a == "4417" for q, a, _ in asked)
    assert {cloze for *_, cloze in asked} == {True, False}
    assert R.trained_questions(said, 2) == asked[:2] and R.trained_questions(said, 0) == []


def test_fit_counts_replies_holding_the_answer_apart_for_cloze() -> None:
    class Scripted:
        def chat_prompt(self, question: str, system: str = "") -> str:
            return question

        def greedy(self, prompt: str, max_tokens: int = 32) -> str:
            return "Porto. She lives there." if "live" in prompt else "No idea."

    questions = [("Where does Ana live?", "Porto", False), ("Fill in: Ana ___ in Porto.", "lives", True)]
    assert R.fit(Scripted(), questions, "") == {"all": [1, 2], "cloze": [0, 1], "question": [1, 1]}  # type: ignore[arg-type]


def test_a_nights_line_shows_its_cross_entropy_at_start_and_end() -> None:
    assert B._ce_trend([3.0, 2.0, 1.0, 0.5], span=2) == "ce 2.50 -> 0.75; "
    assert B._ce_trend([]) == ""  # a night that trained nothing says nothing


def test_tables_show_the_fit_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    s = R.summarize([_scored("a", "Lisbon", "Lisbon")])
    fit = {"all": [3, 4], "cloze": [1, 2], "question": [2, 2]}
    runs = [B.Run(seed, s, 0.88, 12.2, None, [400.0], [120], "promoted", "health", fit) for seed in (0, 1)]
    B.print_tables(_fig({"nightcap": runs}))
    lines = capsys.readouterr().out.splitlines()
    line = lines[next(i for i, x in enumerate(lines) if x.startswith("fit:")) + 1]
    assert line.startswith("  nightcap:") and "all 0.75" in line and "cloze 0.50" in line and "question 1.00" in line


def test_a_rows_settings_reach_a_night_run_in_a_process_of_its_own(tmp_path: Path) -> None:
    """`sleep_apart` writes the row's [sleep] settings into the home's config.toml, which is all
    the night's own process reads."""
    from assistant.config import Config, SleepConfig
    from bench.consolidation import home_config

    settings = dataclasses.replace(
        SleepConfig(), replay=False, learning_rate=1e-3, lora_targets=["q_proj", "v_proj"], file_type="Q8_0", steps=7
    )
    (tmp_path / "config.toml").write_text(home_config(3, settings), encoding="utf-8")
    loaded = Config.load(tmp_path / "config.toml")
    assert loaded.sleep == dataclasses.replace(settings, seed=3) and loaded.chat.seed == 3
    assert loaded.vault.keyring == "off"


def test_set_gives_every_sleeping_row_its_settings_and_the_table_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = R.summarize([_scored("a", "Lisbon", "Lisbon")])
    seen: dict[str, object] = {}

    def sleep_run(name: str, seed: int, *args: object) -> B.Run:
        seen[name] = args[-1]
        return B.Run(seed, s, 0.9, 12.0, None, [1.0], [3], "promoted", "health")

    monkeypatch.setattr(B, "sleep_run", sleep_run)
    items = E.items([_item(1)])
    fig = B.run(Path("m.gguf"), items, [], "", ["nightcap", "-dreams"], 1, [0], False, print, settings={"lora_r": "32"})
    assert seen == {"nightcap": {"lora_r": "32"}, "-dreams": {"lora_r": "32"}} and fig["settings"] == {"lora_r": "32"}
    B.print_tables(fig)
    assert "sleep settings of every sleeping row: lora_r = 32" in capsys.readouterr().out
