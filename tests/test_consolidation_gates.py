"""Quality gates and probes on a tiny GGUF in llama.cpp: scoring, thresholds, margins, cache."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from tiny_model import make_tiny_gguf

from assistant.config import SleepConfig
from bench import data_path
from sleep import probes as P
from sleep.gate import quality_gates
from sleep.report import SleepReport


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gates")
    return make_tiny_gguf(root / "before.gguf", seed=0), make_tiny_gguf(root / "after.gguf", seed=1)


def test_shipped_eval_files_load_in_the_probe_format() -> None:
    facts = P.load_jsonl(data_path("facts.jsonl"))
    general = P.general_probes(P.load_jsonl(data_path("general.jsonl")))
    assert len(facts) == 100 and all(f["teach"] and f["probes"] for f in facts)
    assert len(general) == 80 and all(g.distractors and not g.chat for g in general)
    assert data_path("heldout.txt").read_text(encoding="utf-8").count("\n\n") >= 2


def test_what_the_gates_select_on_is_not_what_the_benchmark_scores() -> None:
    gate = {g.prompt for g in P.general_probes(P.load_jsonl(P.eval_path("gate-general.jsonl")))}
    bench = {g.prompt for g in P.general_probes(P.load_jsonl(data_path("general.jsonl")))}
    assert len(gate) == 30 and not gate & bench
    gate_text = P.eval_path("gate-text.txt").read_text(encoding="utf-8").split("\n\n")
    bench_text = data_path("heldout.txt").read_text(encoding="utf-8").split("\n\n")
    assert not {t.strip() for t in gate_text} & {t.strip() for t in bench_text}


def test_bad_probe_file_is_a_usage_error(tmp_path: Path) -> None:
    from assistant.errors import UsageError

    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(UsageError, match="JSONL"):
        P.load_jsonl(tmp_path / "bad.jsonl")


def test_scores_reusing_the_cache_equal_scores_from_a_fresh_model(tiny_pair: tuple[Path, Path]) -> None:
    from models.scoring import Scorer

    prompts = ["the capital of france is", "the capital of france was my", "my sister lives in paris"]
    fresh = []
    for prompt in prompts:
        scorer = Scorer(tiny_pair[0], n_ctx=256)
        try:
            fresh.append((scorer.last_logits(prompt), scorer.greedy(prompt, 8)))
        finally:
            scorer.close()
    scorer = Scorer(tiny_pair[0], n_ctx=256)
    try:
        for prompt, (logits, reply) in zip(prompts * 2, fresh * 2, strict=True):  # shared prefixes, then repeats
            assert scorer.last_logits(prompt) == pytest.approx(logits, abs=1e-3)
            assert scorer.greedy(prompt, 8) == reply
    finally:
        scorer.close()


def test_option_scores_from_the_cached_prompt_equal_scoring_each_option_alone(tiny_pair: tuple[Path, Path]) -> None:
    from models.scoring import Scorer

    scorer = Scorer(tiny_pair[0], n_ctx=256)
    try:
        for prompt, options in [
            ("The capital of France is", ["Paris", "Rome", "Lyon x"]),
            (scorer.chat_prompt("Where?", "Be brief."), ["here", "over there"]),
        ]:
            fast = P.option_logprobs(scorer, prompt, options)
            slow = [scorer.mean_logprob(prompt, ("" if prompt.endswith("\n") else " ") + o) for o in options]
            assert fast == pytest.approx(slow, abs=1e-3)
    finally:
        scorer.close()


def test_identical_candidate_passes_and_strict_thresholds_fail_with_their_margin(
    tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    before, _ = tiny_pair
    heldout = [P.Probe("What did I tell you about my cat?", "Your cat is Miso.")]
    cfg = SleepConfig(gate_min_recall=0.0)
    results = {r.name: r for r in quality_gates(before, before, "sha-before", heldout, cfg, "", tmp_path)}
    assert set(results) == {"retention", "perplexity", "drift"}  # recall off at threshold 0
    assert all(r.passed for r in results.values())
    assert results["retention"].value == 1.0 and results["drift"].value == pytest.approx(0.0, abs=1e-4)
    cache = tmp_path / "gate-sha-before.json"
    assert json.loads(cache.read_text())["perplexity"] > 1.0

    # An unchanged model cannot recall better: the recall gate fails and the report says by how much.
    strict = dataclasses.replace(cfg, gate_min_recall=0.5, gate_min_retention=1.5)
    report = SleepReport()
    for r in quality_gates(before, before, "sha-before", heldout, strict, "", tmp_path):
        report.add_gate(r)
    assert not report.gates_passed
    failed = report.failed_gates()
    assert any(f.startswith("recall 0 (threshold 0.5)") for f in failed)
    assert any(f.startswith("retention 1 (threshold 1.5)") for f in failed)


def test_a_different_model_drifts(tiny_pair: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = tiny_pair
    cfg = SleepConfig(gate_min_recall=0.0, gate_min_retention=0.0, gate_max_perplexity_rise=0.0, gate_max_drift=1e-6)
    (drift,) = quality_gates(after, before, "sha-x", [], cfg, "", tmp_path)
    assert drift.name == "drift" and not drift.passed
    assert drift.value is not None and drift.value > 1e-3


def test_a_passing_candidate_leaves_the_figures_its_next_gate_would_score(
    tiny_pair: tuple[Path, Path], tmp_path: Path
) -> None:
    from models.provision import sha256_file
    from sleep.gate import _baseline

    before, after = tiny_pair
    cfg = SleepConfig(gate_min_recall=0.0, gate_max_drift=1e3, gate_min_retention=1e-9, gate_max_perplexity_rise=1e3)
    assert all(r.passed for r in quality_gates(after, before, "sha-before", [], cfg, "", tmp_path / "a"))
    kept = json.loads((tmp_path / "a" / f"gate-{sha256_file(after)[:32]}.json").read_text())
    general = P.general_probes(P.load_jsonl(P.eval_path("gate-general.jsonl")))
    text = P.eval_path("gate-text.txt").read_text(encoding="utf-8")
    fresh = _baseline(after, "fresh", general, text, [g.prompt for g in general], tmp_path / "b")
    assert kept["general_mc"] == fresh["general_mc"] and kept["perplexity"] == pytest.approx(fresh["perplexity"])
    assert kept["topk"] == fresh["topk"]

    # A candidate that fails a gate is not promoted: it leaves nothing to read.
    strict = dataclasses.replace(cfg, gate_max_drift=1e-6)
    assert not all(r.passed for r in quality_gates(after, before, "sha-before", [], strict, "", tmp_path / "c"))
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["gate-sha-before.json"]
