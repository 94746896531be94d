"""End to end on the embedded default model: a two-fact night keeps general knowledge within the gate."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TEACH = ["My sister Priya lives in Lisbon and teaches chemistry.", "The garage door code is 5512."]


def test_two_fact_sleep_learns_and_keeps_general_knowledge_within_the_gate(provisioned_home: Path) -> None:
    from assistant.app import Nightcap
    from models.runtime import LlamaRuntime
    from sleep.cycle import run_cycle

    app = Nightcap.load()
    # A short night (the real cycle, fewer steps and samples) so the test stays within minutes.
    app.config.sleep = dataclasses.replace(
        app.config.sleep, steps=12, dreams=False, replay_samples=8, replay_tokens=24, max_steps=12
    )
    runtime = app.runtime()
    assert isinstance(runtime, LlamaRuntime)  # the real model, closed before the night to free its memory
    try:
        for message in TEACH:
            app.session(runtime).turn(message)
    finally:
        runtime.close()

    report = run_cycle(app)

    assert report.outcome == "promoted", report.error
    assert report.examples["augment"] > 2 * len(TEACH) and report.examples["replay"] >= 8
    # The door code is a secret: neither the exchange nor any dream of it is trained on.
    assert report.examples["secret_episodes"] == 1 and report.examples["heldout_probes"] == 1
    assert set(report.loss_terms) == {"kl", "ewc"}
    assert len(report.ce) == report.steps and all(0 < ce <= loss for ce, loss in zip(report.ce, report.losses))
    gates = report.gates
    assert {"recall", "retention", "perplexity", "drift"} <= set(gates)
    retention, perplexity, recall = gates["retention"].value, gates["perplexity"].value, gates["recall"].value
    assert gates["retention"].passed and retention is not None and retention >= app.config.sleep.gate_min_retention
    assert perplexity is not None and perplexity <= app.config.sleep.gate_max_perplexity_rise
    assert recall is not None and recall >= app.config.sleep.gate_min_recall
    assert app.store.current().name == report.new_generation
