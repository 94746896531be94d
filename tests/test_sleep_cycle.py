"""The whole sleep cycle on a tiny real model: GGUF -> torch -> LoRA -> merge -> requantize ->
gate -> promote -> shred, and what a failure or a kill at each stage leaves behind.

The model is a tiny random llama written to GGUF and quantized to Q4_K_M by llama.cpp, so every
stage runs its real code (llama.cpp tokenizer and gate, torch+peft training, the gguf writer,
`llama_model_quantize`, the vault's shred) in seconds.
"""

from __future__ import annotations

import gc
import json
import mmap
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from assistant.app import Nightcap
from assistant.episode import Episode
from assistant.errors import SleepError
from assistant.fsutil import atomic_write_text
from models.ggufmeta import read_meta
from sleep import consolidate
from sleep.cycle import STAGES as CYCLE_STAGES
from sleep.cycle import run_cycle
from sleep.device import pick_device
from tiny_model import MACHINERY_ONLY, make_tiny_q4

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from assistant.vault import Vault
    from sleep.consolidate import Learner, Lessons
    from sleep.dataset import Example
    from sleep.train import TrainResult

TESTS = Path(__file__).parent
FACTS = [
    ("remember my cat is called miso", "your cat is called miso"),
    ("my sister lives in paris", "your sister lives in paris"),
    ("what is the capital of france", "paris is the capital of france"),
]
# Stages after `gather` in run order; a kill or failure at any of them must lose nothing.
STAGES = list(CYCLE_STAGES[1:])


@pytest.fixture(scope="module")
def tiny_q4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_q4(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def home(nightcap_home: Path, tiny_q4: Path) -> Path:
    """A home serving the tiny model as gen-0000, with three pending episodes and a short night."""
    atomic_write_text(
        nightcap_home / "config.toml",  # private, as Nightcap makes its files
        "[sleep]\nsteps = 3\nbatch_size = 2\nthreads = 1\n" + MACHINERY_ONLY,
    )
    app = Nightcap.load()
    app.store.use(app.store.add(tiny_q4, source="test").name)
    vault = app.vault()
    for i, (user, reply) in enumerate(FACTS):
        vault.append(Episode.from_exchange("s1", user, reply, "gen-0000", time.time() + i))
    return nightcap_home


def state(root: Path) -> dict:
    """What a cycle may change: the serving generation, the generations, the pending episodes."""
    app = Nightcap.load(root)
    return {
        "current": app.store.current_name(),
        "generations": [g.name for g in app.store.list()],
        "pending": sorted(ep.messages[0]["content"] for ep in app.vault().pending()),
    }


def leftovers(root: Path) -> list[str]:
    """Derived data that must never outlive a cycle: scratch files and half-built generations."""
    scratch = [str(p) for p in (root / "tmp").rglob("*") if p.is_file()] if (root / "tmp").exists() else []
    return scratch + [p.name for p in (root / "models").glob(".building-*")]


def assert_consolidated_once(root: Path, before: dict) -> None:
    """After a completed night: one new generation serves, it learned the epochs, they are gone."""
    app = Nightcap.load(root)
    cur = app.store.current()
    assert cur.parent == before["current"] and cur.manifest["source"] == "sleep"
    assert len(app.store.list()) == len(before["generations"]) + 1
    learned = cur.manifest["epochs"]
    assert learned and app.vault().pending() == []
    vault = app.vault()
    assert sorted(stone["epoch"] for stone in vault.ledger()) == sorted(learned)
    assert vault.verify_ledger()
    assert not [p for p in (root / "vault").rglob("*") if any(e in p.name for e in learned)]
    assert leftovers(root) == []


def test_a_night_promotes_a_new_generation_and_destroys_the_logs(home: Path) -> None:
    before = state(home)
    app = Nightcap.load(home)
    report = run_cycle(app)

    assert report.outcome == "promoted", report.error
    assert report.episodes == 3 and report.steps == 3 and len(report.losses) == 3
    assert report.device == pick_device("auto").type  # sleep.device = "auto": the GPU where there is one
    assert report.old_generation == "gen-0000" and report.new_generation == "gen-0001"
    assert report.old_sha256 != report.new_sha256
    assert list(report.stages) == list(CYCLE_STAGES) and report.gates_passed  # each stage, in order
    # Peak memory of every stage; the night's peak is the largest.
    rss = [report.stage_rss_mb[s] for s in report.stages]
    assert set(report.stage_rss_mb) == set(report.stages) and 0 < max(rss) <= report.peak_rss_mb
    assert_consolidated_once(home, before)
    # The new generation keeps the source's file type; the tensors the night changed are Q8_0
    # inside it (sleep.touched_type), every other tensor keeps its type.
    old, new = (read_meta(Nightcap.load(home).store.get(g).gguf) for g in ("gen-0000", "gen-0001"))
    assert new.file_type == old.file_type == 15
    touched = {t.name for t in old.tensors if t.name.startswith("blk.") and len(t.shape) == 2}
    assert {new.tensor(n).ggml_type for n in touched} == {8}
    assert {n.name: n.ggml_type for n in new.tensors if n.name not in touched} == {
        o.name: o.ggml_type for o in old.tensors if o.name not in touched
    }
    # The stored report says what happened without a word of the conversations.
    stored = (home / "reports").glob("sleep-*.json")
    text = "".join(p.read_text() for p in stored)
    assert '"promoted"' in text and not any(word in text for word in ("miso", "sister", "paris"))
    stored_report = json.loads(next((home / "reports").glob("sleep-*.json")).read_text())
    assert stored_report["peak_rss_mb"] == report.peak_rss_mb > 0
    # The privacy audit passes on the real cycle's result and traces the weights to the epoch.
    from assistant.audit import run_audit

    audit = run_audit(Nightcap.load(home))
    assert audit.passed, [c for c in audit.checks if c.status == "fail"]
    assert audit.check("shredded-epochs").details["shredded"] == 1
    # Nothing left to do: a second night is a no-op that keeps the new generation serving.
    assert run_cycle(Nightcap.load(home)).outcome == "nothing-to-do"
    assert Nightcap.load(home).store.current_name() == "gen-0001"


def test_an_exchange_that_holds_a_secret_is_never_trained_on(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Episode.from_exchange("s2", "my pin is 4512", "ok, your pin is 4512", "gen-0000", time.time() + 9)
    Nightcap.load(home).vault().append(secret)
    trained: list[str] = []
    real = consolidate.train

    def spy(model: PreTrainedModel, examples: list[Example], *args: Any, **kwargs: Any) -> TrainResult:
        trained.extend(ex.source for ex in examples)
        return real(model, examples, *args, **kwargs)

    monkeypatch.setattr(consolidate, "train", spy)
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted", report.error
    assert report.examples["secret_episodes"] == 1 and report.examples["episode"] == 3
    assert len(trained) == 3 and secret.id not in trained
    # Consumed with the rest: the secret is shredded, not left pending.
    assert not Nightcap.load(home).vault().pending()


@pytest.mark.parametrize(
    "setting", ['touched_type = "Q9_X"', 'file_type = "Q9_X"', 'gates = "most"', 'lr_schedule = "linear"']
)
def test_a_bad_setting_for_the_last_steps_stops_the_night_before_it_trains(home: Path, setting: str) -> None:
    from assistant.errors import ConfigError

    before = state(home)
    config = home / "config.toml"
    key = setting.split(" ")[0]
    lines = [line for line in config.read_text().splitlines() if not line.startswith(key + " ")]
    atomic_write_text(config, "\n".join(lines).replace("[sleep]", f"[sleep]\n{setting}") + "\n")
    # A choice that is not one of its values fails as the config is read; a llama.cpp type name
    # is checked before the night trains.
    with pytest.raises(ConfigError, match="sleep." + setting.split(" ")[0]):
        run_cycle(Nightcap.load(home))
    atomic_write_text(config, "\n".join(lines) + "\n")
    assert state(home) == before and leftovers(home) == []


def test_a_failing_gate_keeps_the_old_model_and_the_episodes(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sleep.report import GateResult

    monkeypatch.setattr(
        consolidate, "gate", lambda *args, **kwargs: [GateResult("recall", False, 0.2, 0.8, "held-out probes")]
    )
    before = state(home)
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "rejected" and report.error is not None
    assert "recall 0.2 (threshold 0.8)" in report.error
    assert state(home) == before and leftovers(home) == []


def _fail(stage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `stage` raise the way a real fault would (a bug, a full disk, a bad file)."""

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    if stage == "promote":
        monkeypatch.setattr("models.store.ModelStore.use", boom)
    elif stage == "shred":
        monkeypatch.setattr("assistant.vault.Vault.shred", boom)
    else:
        monkeypatch.setattr(consolidate, stage, boom)  # each stage's function is named after it


# The stages before the new model serves; dream stands for weigh and replay, stage functions that fail the same way.
BEFORE_PROMOTION = [s for s in STAGES[: STAGES.index("promote") + 1] if s not in ("weigh", "replay")]


@pytest.mark.parametrize("stage", BEFORE_PROMOTION)
def test_a_failure_before_promotion_loses_nothing_and_the_next_night_succeeds(
    home: Path, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state(home)
    with monkeypatch.context() as patch:
        _fail(stage, patch)
        with pytest.raises(SleepError, match="previous model keeps serving"):
            run_cycle(Nightcap.load(home))
    assert state(home) == before and leftovers(home) == []
    reports = [json.loads(p.read_text()) for p in (home / "reports").glob("sleep-*.json")]
    assert [r["outcome"] for r in reports] == ["failed"]

    assert run_cycle(Nightcap.load(home)).outcome == "promoted"
    assert_consolidated_once(home, before)


def test_a_failed_shred_is_finished_by_the_next_night_without_learning_twice(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = state(home)
    with monkeypatch.context() as patch:
        _fail("shred", patch)
        with pytest.raises(SleepError):
            run_cycle(Nightcap.load(home))
    # The new generation already serves; its episodes wait only for destruction.
    assert Nightcap.load(home).store.current_name() == "gen-0001"
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "nothing-to-do" and report.shred["epochs"]
    assert_consolidated_once(home, before)


KILLER = textwrap.dedent("""
    import os, signal, sys
    from assistant.app import Nightcap
    from sleep.cycle import run_cycle

    target, at_step = sys.argv[1], int(sys.argv[2])

    class Killer:
        def stage(self, name):
            if name == target and at_step == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        def step(self, i, total, loss):
            if target == "train" and i == at_step:
                os.kill(os.getpid(), signal.SIGKILL)

    run_cycle(Nightcap.load(), progress=Killer())
    print("cycle finished without being killed")
""")


@pytest.mark.parametrize("stage,at_step", [(s, 0) for s in STAGES] + [("train", 2)])
def test_power_pulled_at_any_stage_then_the_next_night_completes(home: Path, stage: str, at_step: int) -> None:
    before = state(home)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, stage, str(at_step)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr

    after = state(home)
    if stage == "shred":  # killed after promotion: the new model serves, the logs await shredding
        assert after["current"] == "gen-0001" and after["pending"] == before["pending"]
    else:
        assert after == before  # killed before promotion: nothing changed that anyone can see

    report = run_cycle(Nightcap.load(home))
    assert report.outcome == ("nothing-to-do" if stage == "shred" else "promoted"), report.error
    assert_consolidated_once(home, before)


def test_nights_merge_into_the_sealed_weight_master(home: Path) -> None:
    from sleep.weights import BLOB, load_master

    assert run_cycle(Nightcap.load(home)).outcome == "promoted"
    app = Nightcap.load(home)
    gen1 = app.store.current()
    assert (home / "vault" / "blobs" / f"{BLOB}.bin").exists()
    master = load_master(app.vault(), gen1.manifest["sha256"])
    assert master.matches(gen1.manifest["sha256"]) and len(master.tensors) == 7 * 2  # 7 linears x 2 layers

    app.vault().append(
        Episode.from_exchange("s2", "my dog is called rex", "your dog is called rex", "gen-0001", time.time())
    )
    assert run_cycle(Nightcap.load(home)).outcome == "promoted"
    app = Nightcap.load(home)
    gen2 = app.store.current()
    assert gen2.name == "gen-0002"
    assert load_master(app.vault(), gen2.manifest["sha256"]).matches(gen2.manifest["sha256"])

    # After a rollback the master belongs to a generation no longer served: it is destroyed, and
    # the next night starts a fresh one from the served weights.
    app.store.rollback()
    assert load_master(app.vault(), gen1.manifest["sha256"]).tensors == {}
    assert not (home / "vault" / "blobs" / f"{BLOB}.bin").exists()


def test_a_rollback_destroys_what_was_sealed_for_the_generation_it_leaves(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.audit import FAIL, PASS, run_audit
    from assistant.cli import main
    from sleep.ewc import BLOB_PREFIX
    from sleep.weights import BLOB

    atomic_write_text(home / "config.toml", (home / "config.toml").read_text().replace("ewc = false", "ewc = true"))
    report = run_cycle(Nightcap.load(home))
    # The night's Fisher was computed from the generation it replaced: it goes with the promotion.
    assert report.outcome == "promoted" and [n for n in report.dropped_state if n.startswith(BLOB_PREFIX)]
    app = Nightcap.load(home)
    assert app.vault().blob_names() == [BLOB]
    assert run_audit(app).check("sealed-state").status == PASS
    # Switched without the vault (as when it cannot open): the learned weights stay sealed, and
    # the audit names them.
    app.store.rollback()
    check = run_audit(Nightcap.load(home)).check("sealed-state")
    assert check.status == FAIL and "the sealed weight-master derives from the generation with sha256" in check.reason
    # `nightcap models use` (or rollback) destroys them with the switch.
    assert main(["models", "use", "gen-0000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert BLOB in out["dropped_state"] and Nightcap.load(home).vault().blob_names() == []
    assert run_audit(Nightcap.load(home)).check("sealed-state").status == PASS
    # The next night destroys what a switch left behind, before it learns anything.
    Nightcap.load(home).vault().seal_blob(BLOB_PREFIX + "0" * 32, b"a Fisher of a generation gone")
    Nightcap.load(home).vault().append(Episode.from_exchange("s3", "my dog is rex", "ok", "gen-0000", time.time()))
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted" and report.dropped_state[0] == BLOB_PREFIX + "0" * 32


def test_a_slept_model_rehearses_its_memories_and_a_fresh_one_has_none(home: Path) -> None:
    config = home / "config.toml"
    atomic_write_text(
        config,
        config.read_text().replace(
            "replay = false",
            "replay = true\nrehearse = true\nrehearse_questions = true\nreplay_samples = 2\nrehearse_samples = 3\n"
            "rehearse_tokens = 8\nkl_per_step = 1\nrehearse_weight = 0.0",
        ),
    )
    first = run_cycle(Nightcap.load(home))
    assert first.outcome == "promoted" and "kl" in first.loss_terms
    assert "rehearsal" not in first.loss_terms and "rehearsal" not in first.examples

    Nightcap.load(home).vault().append(
        Episode.from_exchange("s2", "my dog is called rex", "your dog is called rex", "gen-0001", time.time())
    )
    second = run_cycle(Nightcap.load(home))
    assert second.outcome == "promoted", second.error
    # Questions made from what the model recalled, answered by it too (none from gibberish).
    asked = second.examples["rehearsal_questions"]
    assert 0 <= asked <= 3 and 1 <= second.examples["rehearsal"] <= 3 + asked
    # The rehearsal term has its own weight (0 here), apart from the replay term's.
    assert len(second.loss_terms["rehearsal"]) == second.steps and set(second.loss_terms["rehearsal"]) == {0.0}
    assert any(v > 0 for v in second.loss_terms["kl"])


def test_a_slept_model_is_asked_what_it_recalls_and_its_old_question_learns_the_new_value(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = home / "config.toml"
    atomic_write_text(
        config,
        config.read_text()
        .replace("augment = false", "augment = true")
        .replace("reconsolidate = false", "reconsolidate = true"),
    )
    asked: list[str] = []

    def recall(self: consolidate.Writer, prompt: str, *args: Any, **kwargs: Any) -> str:
        asked.append(prompt)
        return "Your cousin Tomasz lives in Leeds." if "about Tomasz?" in prompt else "I don't know."

    monkeypatch.setattr(consolidate.Writer, "complete", recall)
    first = run_cycle(Nightcap.load(home))
    assert first.outcome == "promoted", first.error
    assert asked == [] and first.examples["relinked"] == 0  # a model that never slept recalls nothing

    Nightcap.load(home).vault().append(
        Episode.from_exchange("s2", "Tomasz moved again, he's in Bristol now.", "Noted.", "gen-0001", time.time())
    )
    second = run_cycle(Nightcap.load(home))
    assert second.outcome == "promoted", second.error
    assert any("What do you know about Tomasz?" in p for p in asked)
    assert second.examples["relinked"] == 2  # the question about now, and the same about before


def test_an_anchored_home_replays_its_first_models_samples_and_teachers_every_night(home: Path) -> None:
    config = home / "config.toml"
    atomic_write_text(
        config,
        config.read_text().replace(
            "replay = false", "replay = true\nreplay_anchor = true\nreplay_samples = 2\nkl_per_step = 1"
        ),
    )
    first = run_cycle(Nightcap.load(home))
    assert first.outcome == "promoted", first.error
    kept = home / "cache" / "replay-anchor.pt"
    assert kept.is_file() and "replay_anchored" not in first.examples
    made = kept.read_bytes()

    Nightcap.load(home).vault().append(
        Episode.from_exchange("s2", "my dog is called rex", "your dog is called rex", "gen-0001", time.time())
    )
    second = run_cycle(Nightcap.load(home))
    assert second.outcome == "promoted", second.error
    assert second.examples["replay_anchored"] == 1 and second.examples["replay"] == first.examples["replay"]
    # The slept model's drift from the first one is in the term from its first step.
    assert second.loss_terms["kl"][0] > 0.0
    assert kept.read_bytes() == made  # only a model that never slept makes the anchor


def test_the_night_that_makes_the_anchor_trains_exactly_as_one_without_it(
    nightcap_home: Path, tiny_q4: Path, tmp_path: Path
) -> None:
    losses = {}
    for anchored in (False, True):
        root = tmp_path / f"home-{anchored}"
        root.mkdir()
        atomic_write_text(
            root / "config.toml",
            "[sleep]\nsteps = 3\nbatch_size = 2\nthreads = 1\n"
            + MACHINERY_ONLY.replace(
                "replay = false",
                f"replay = true\nreplay_anchor = {str(anchored).lower()}\nreplay_samples = 2\nkl_per_step = 1",
            ),
        )
        app = Nightcap.load(root)
        app.store.use(app.store.add(tiny_q4, source="test").name)
        for i, (user, reply) in enumerate(FACTS):
            app.vault().append(Episode.from_exchange("s1", user, reply, "gen-0000", time.time() + i))
        report = run_cycle(Nightcap.load(root))
        assert report.outcome == "promoted", report.error
        losses[anchored] = (report.losses, report.loss_terms["kl"])
    assert (tmp_path / "home-True" / "cache" / "replay-anchor.pt").is_file()
    assert losses[True] == losses[False]  # the teachers it keeps are the ones the term computes


def test_a_paused_night_with_augmentations_resumes_from_its_checkpoint(home: Path) -> None:
    from sleep.cycle import SleepInterrupted

    # Augmentations multiply the examples and raise the step count: the checkpoint must still
    # match the night that resumes it.
    config = home / "config.toml"
    atomic_write_text(config, config.read_text().replace("augment = false", "augment = true"))
    calls = {"n": 0}

    def stop_after_two_steps() -> bool:
        return calls["n"] >= 2

    class Count:
        def stage(self, name: str) -> None:
            pass

        def step(self, i: int, total: int, loss: float | None) -> None:
            calls["n"] = i

    with pytest.raises(SleepInterrupted):
        run_cycle(Nightcap.load(home), should_stop=stop_after_two_steps, progress=Count())
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted" and report.resumed_from_step == 2
    assert report.examples.get("augment", 0) > 0 and report.steps > 3


def _during_training(monkeypatch: pytest.MonkeyPatch, home: Path, act: Callable[[Vault], object]) -> list[str]:
    """Run `act(vault)` from another opening of the vault (as another process would) while the
    night trains; returns the sources of the examples the night trained on."""
    real = consolidate.train
    trained: list[str] = []

    def train(model: PreTrainedModel, examples: list[Example], *args: Any, **kwargs: Any) -> TrainResult:
        trained.extend(ex.source for ex in examples)
        act(Nightcap.load(home).vault())
        return real(model, examples, *args, **kwargs)

    monkeypatch.setattr(consolidate, "train", train)
    return trained


def test_a_memory_forgotten_while_the_night_trains_is_never_promoted(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sleep.cycle import SleepInterrupted

    before = state(home)
    sister = next(ep for ep in Nightcap.load(home).vault().pending() if "sister" in ep.user_text)
    with monkeypatch.context() as patch:
        trained = _during_training(patch, home, lambda vault: vault.forget(sister.id))
        with pytest.raises(SleepInterrupted, match="forgotten while this night learned it"):
            run_cycle(Nightcap.load(home))
    assert sister.id in trained  # the night had learned it: its candidate is thrown away
    assert Nightcap.load(home).vault().blob_names() == []  # and no checkpoint of that training is kept
    after = state(home)
    assert after["current"] == before["current"] and after["generations"] == before["generations"]
    assert after["pending"] == [t for t in before["pending"] if "sister" not in t] and leftovers(home) == []
    stored = [json.loads(p.read_text()) for p in (home / "reports").glob("sleep-*.json")]
    assert [r["outcome"] for r in stored] == ["interrupted"] and "forgotten" in stored[0]["error"]
    # The next night learns the rest, and only the rest, exactly once.
    with monkeypatch.context() as patch:
        trained = _during_training(patch, home, lambda vault: None)
        assert run_cycle(Nightcap.load(home)).outcome == "promoted"
    assert trained and sister.id not in trained
    assert Nightcap.load(home).store.current().manifest["epochs"] and not Nightcap.load(home).vault().pending()


def test_a_memory_forgotten_while_the_night_gates_its_candidate_is_never_promoted(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sleep.cycle import SleepInterrupted

    before = state(home)
    sister = next(ep for ep in Nightcap.load(home).vault().pending() if "sister" in ep.user_text)
    real = consolidate.gate

    def gate(*args: Any, **kwargs: Any) -> Any:
        Nightcap.load(home).vault().forget(sister.id)  # as another process would, after merge and quantize
        return real(*args, **kwargs)

    monkeypatch.setattr(consolidate, "gate", gate)
    with pytest.raises(SleepInterrupted, match="forgotten while this night learned it"):
        run_cycle(Nightcap.load(home))
    after = state(home)
    assert after["current"] == before["current"] and after["generations"] == before["generations"]
    assert after["pending"] == [t for t in before["pending"] if "sister" not in t] and leftovers(home) == []
    assert Nightcap.load(home).vault().blob_names() == []  # no checkpoint or weight master of that night


def test_feedback_given_while_the_night_trains_is_kept_for_the_next_one(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = next(ep for ep in Nightcap.load(home).vault().pending() if "cat" in ep.user_text)
    with monkeypatch.context() as patch:
        _during_training(patch, home, lambda vault: vault.annotate(cat.id, correction="Your cat is called Mochi."))
        report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted" and report.shred["carried"] == 1 and report.shred["episodes"] == 2
    # The corrected exchange waits, with its correction, in a new sealed epoch; the rest is gone.
    app = Nightcap.load(home)
    (kept,) = app.vault().pending()
    assert kept.id == cat.id and kept.correction == "Your cat is called Mochi." and "correction" in kept.flags
    assert app.vault().closed_epochs()[0] not in app.store.current().manifest["epochs"]
    assert app.vault().verify_ledger()
    # The next night learns it, correction included, and destroys it.
    with monkeypatch.context() as patch:
        trained = _during_training(patch, home, lambda vault: None)
        second = run_cycle(Nightcap.load(home))
    assert second.outcome == "promoted" and trained == [cat.id] * len(trained) and trained
    assert not Nightcap.load(home).vault().pending() and second.shred["carried"] == 0


def test_a_crash_during_the_night_reports_no_word_of_the_conversations(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def dream(learner: Learner, episodes: list[Episode], *args: Any, **kwargs: Any) -> Lessons:
        raise ValueError(f"cannot parse {episodes[0].user_text!r}")  # as library errors quote their input

    monkeypatch.setattr(consolidate, "dream", dream)
    with pytest.raises(SleepError) as caught:
        run_cycle(Nightcap.load(home))
    assert "ValueError at tests/test_sleep_cycle.py:" in str(caught.value) and "miso" not in str(caught.value)
    stored = "".join(p.read_text() for p in (home / "reports").glob("sleep-*.json"))
    assert '"failed"' in stored and "ValueError at" in stored and "miso" not in stored


def test_forget_unlearns_into_a_new_generation_and_the_ledger_says_so_without_content(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.audit import FAIL, run_audit
    from assistant.cli import main
    from sleep.forget import IDK, forget_dreams

    assert run_cycle(Nightcap.load(home)).outcome == "promoted"
    extra = "forget_kl_per_step = 2\nforget_learning_rate = 5e-4\n"
    atomic_write_text(home / "config.toml", (home / "config.toml").read_text() + extra)
    kl_per_step, rates, replay, train = [], [], consolidate.replay, consolidate.train

    def spy(*args: Any, **kw: Any) -> Any:
        kl_per_step.append(kw["cfg"].kl_per_step)
        return replay(*args, **kw)

    def spy_train(model: Any, examples: Any, terms: Any, args: Any, **kw: Any) -> Any:
        rates.append(args.learning_rate)
        return train(model, examples, terms, args, **kw)

    monkeypatch.setattr(consolidate, "replay", spy)
    monkeypatch.setattr(consolidate, "train", spy_train)
    assert main(["forget", "remember my cat is called miso", "--json"]) == 0
    assert kl_per_step == [2] and rates == [5e-4]  # its own KL samples a step and learning rate
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "forget" and report["outcome"] == "promoted"
    assert report["old_generation"] == "gen-0001" and report["new_generation"] == "gen-0002"
    assert report["examples"]["idk"] == report["examples"]["npo"] == len(forget_dreams("my cat is called miso"))
    assert report["steps"] == 24 and set(report["forgotten"]) >= {"answer_logprob_before", "answer_logprob_after"}
    app = Nightcap.load(home)
    assert app.store.current().manifest["source"] == "forget" and app.store.current().parent == "gen-0001"
    entry = app.vault().ledger()[-1]
    assert entry["epoch"] is None and entry["generation"] == "gen-0002" and app.vault().verify_ledger()
    stored = "".join(p.read_text() for p in (home / "reports").glob("sleep-*.json")) + json.dumps(entry)
    assert "miso" not in stored and IDK not in stored
    audit = run_audit(app)
    assert not [c.name for c in audit.checks if c.status == FAIL], [c.reason for c in audit.checks if c.status == FAIL]
    provenance = audit.check("ledger-provenance")
    assert provenance.details["unlearned"] == 1 and "unlearned after sleep: approximate" in provenance.reason
    # The generations kept for rollback from before the forget still hold the statement: said.
    assert provenance.details["generations_before_last_unlearning"] == ["gen-0000", "gen-0001"]
    assert "2 kept generation(s) made before the last one still hold it" in provenance.reason
    # Its report gone, the ledger's forget entry has no paperwork: the audit says so.
    next(p for p in (home / "reports").glob("sleep-*.json") if '"forget"' in p.read_text()).unlink()
    assert (
        "no stored forget report records making gen-0002"
        in run_audit(Nightcap.load(home)).check("ledger-provenance").reason
    )


AFTER_TRAINING = ["weigh", "dream", "replay", "train"]
"""What a night resumed after its training finished skips."""


class _StopAt:
    """Progress that asks the night to stop when `stage` starts (or after `step` training steps)."""

    def __init__(self, stage: str = "", step: int = 0) -> None:
        self.target, self.at_step, self.stopping = stage, step, False

    def stage(self, name: str) -> None:
        self.stopping = self.stopping or name == self.target

    def step(self, i: int, total: int, loss: float | None) -> None:
        self.stopping = self.stopping or (self.at_step != 0 and i >= self.at_step)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a stage's own peak needs Linux's VmHWM reset")
def test_each_stage_reports_its_own_peak_memory_not_the_nights_so_far() -> None:
    from sleep.cycle import stages
    from sleep.progress import NullProgress
    from sleep.report import SleepReport

    report = SleepReport()
    stage = stages(report, NullProgress(), lambda: False)
    with stage("big"):
        # Fresh pages from the OS: a bytearray may be carved out of heap memory an earlier test
        # freed and the process still holds (glibc keeps it), which no peak count would see.
        held = mmap.mmap(-1, 300 * 2**20)
        for offset in range(0, len(held), 4096):
            held[offset] = 1  # touch every page
        held.close()
    with stage("small"):
        pass
    assert report.stage_rss_mb["small"] < report.stage_rss_mb["big"] - 200
    assert report.peak_rss_mb >= report.stage_rss_mb["big"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a stage's own peak needs Linux's VmHWM reset")
def test_a_stage_starts_without_what_only_the_cycle_collector_frees() -> None:
    """Memory held by objects in a reference cycle (a closed llama.cpp wrapper and its buffers)
    goes before the next stage, not whenever the collector next runs."""
    from sleep.cycle import stages
    from sleep.progress import NullProgress
    from sleep.report import SleepReport

    class Node:
        other: object
        held: mmap.mmap

    report = SleepReport()
    stage = stages(report, NullProgress(), lambda: False)
    gc.disable()  # only the stage may collect
    try:
        with stage("replay"):
            a, b = Node(), Node()
            a.other, b.other = b, a
            a.held = mmap.mmap(-1, 300 * 2**20)
            for offset in range(0, len(a.held), 4096):
                a.held[offset] = 1
            del a, b  # unreachable now, but only the cycle collector unmaps it
        with stage("train"):
            pass
    finally:
        gc.enable()
    assert report.stage_rss_mb["train"] < report.stage_rss_mb["replay"] - 200


@pytest.mark.parametrize("stage,step", [("quantize", 0), ("", 2)])
def test_a_paused_night_resumes_on_what_it_read_though_the_user_chatted_since(
    home: Path, stage: str, step: int
) -> None:
    from sleep.cycle import SleepInterrupted

    stop = _StopAt(stage, step)
    with pytest.raises(SleepInterrupted):
        run_cycle(Nightcap.load(home), should_stop=lambda: stop.stopping, progress=stop)
    assert leftovers(home) == []
    # The user comes back and says something new before the night resumes.
    later = Episode.from_exchange("s9", "my bike is green", "ok", "gen-0000", time.time() + 60)
    Nightcap.load(home).vault().append(later)
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted" and report.resumed_epochs and report.episodes == 3
    if stage:  # stopped after training: nothing that led to it is done again
        assert report.skipped == AFTER_TRAINING and report.resumed_from_step == report.steps == 3
        assert not set(AFTER_TRAINING) & set(report.stages)
    else:
        assert report.skipped == [] and report.resumed_from_step == 2 and report.steps == 3
    # What was said after the pause waits for the next night, which learns it alone.
    assert [ep.id for ep in Nightcap.load(home).vault().pending()] == [later.id]
    second = run_cycle(Nightcap.load(home))
    assert second.outcome == "promoted" and second.episodes == 1 and not second.resumed_epochs


@pytest.mark.parametrize("stage", ["weigh", "dream", "replay", "merge", "gate"])
def test_a_night_yields_inside_any_long_stage_and_the_next_one_completes(home: Path, stage: str) -> None:
    from sleep.cycle import SleepInterrupted

    # Every stage does real work here: surprise, model-written dreams, replay, the full gates.
    config = home / "config.toml"
    atomic_write_text(
        config, config.read_text().replace(MACHINERY_ONLY, "") + "replay_samples = 2\nreplay_tokens = 8\n"
    )
    before = state(home)
    stop = _StopAt(stage)
    with pytest.raises(SleepInterrupted):
        run_cycle(Nightcap.load(home), should_stop=lambda: stop.stopping, progress=stop)
    stored = [json.loads(p.read_text()) for p in (home / "reports").glob("sleep-*.json")]
    # Stopped at a stop point inside the stage, not at the next stage boundary.
    assert [r["error"] for r in stored] == [f"stopped during {stage}"]
    assert state(home) == before and leftovers(home) == []
    report = run_cycle(Nightcap.load(home))
    assert report.outcome in ("promoted", "rejected")  # a random tiny model may fail the quality gates
    assert report.skipped == (AFTER_TRAINING if stage in ("merge", "gate") else [])


def test_a_night_resumed_under_other_settings_trains_again(home: Path) -> None:
    from sleep.cycle import SleepInterrupted

    stop = _StopAt("quantize")
    with pytest.raises(SleepInterrupted):
        run_cycle(Nightcap.load(home), should_stop=lambda: stop.stopping, progress=stop)
    config = home / "config.toml"
    atomic_write_text(config, config.read_text().replace("[sleep]\n", "[sleep]\nlearning_rate = 0.0005\n", 1))
    report = run_cycle(Nightcap.load(home))
    assert report.outcome == "promoted" and report.resumed_epochs
    assert report.skipped == [] and report.resumed_from_step is None and "dream" in report.stages


KILL_AT = textwrap.dedent("""
    import importlib, os, signal, sys
    from assistant.app import Nightcap
    from sleep.cycle import run_cycle

    target, _, after = sys.argv[1].partition("@")  # "@module:Class.method": only once that has run
    armed = [not after]

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    def patch(spec, make):
        module, qualname = spec.split(":")
        owner = importlib.import_module(module)
        *path, name = qualname.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, make(getattr(owner, name)))

    if after:
        def arming(real):
            def run(*args, **kwargs):
                out = real(*args, **kwargs)
                armed[0] = True
                return out
            return run
        patch(after, arming)
    if target.startswith("replace:"):  # a file's atomic write, killed with its temp file written
        wanted, real = target.split(":", 1)[1], os.replace
        def replace(src, dst, *args, **kwargs):
            if armed[0] and wanted in os.path.basename(dst):
                die()
            return real(src, dst, *args, **kwargs)
        os.replace = replace
    else:
        patch(target, lambda real: lambda *a, **k: die() if armed[0] else real(*a, **k))
    run_cycle(Nightcap.load())
    print("cycle finished without being killed")
""")

# (where the night is killed, whether the new generation already serves, whether the logs' keys are gone)
KILL_POINTS = [
    ("assistant.vault.vault:Vault.consume", False, False),  # mid-gather, the open epoch just closed
    ("replace:weight-master.bin", False, False),  # mid-write of the weight master, before the switch
    ("models.store:ModelStore.use", False, False),  # between storing the candidate and switching to it
    ("assistant.vault.shred:Shredding._commit", True, False),  # the shred, before its keystore commit
    ("replace:keystore.json@assistant.vault.shred:Shredding._tombstone", True, False),  # mid-write of the commit
    ("assistant.vault.shred:Shredding._finish_shred", True, True),  # keys gone, files not yet unlinked
    ("assistant.vault.ledger:Ledger.append", True, True),  # files gone, tombstones not yet chained
    ("replace:sleep-20@assistant.vault.shred:Shredding.shred", True, True),  # the report, after everything
]


@pytest.mark.parametrize("target,switched,shredded", KILL_POINTS)
def test_killed_at_any_point_nothing_is_lost_and_the_next_night_completes_once(
    home: Path, target: str, switched: bool, shredded: bool
) -> None:
    from assistant.audit import FAIL, run_audit

    before = state(home)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    proc = subprocess.run([sys.executable, "-c", KILL_AT, target], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    after = state(home)
    assert after["current"] == ("gen-0001" if switched else "gen-0000")
    assert after["pending"] == ([] if shredded else before["pending"])  # every acknowledged episode, or learned

    report = run_cycle(Nightcap.load(home))
    assert report.outcome == ("nothing-to-do" if switched else "promoted"), report.error
    assert_consolidated_once(home, before)
    audit = run_audit(Nightcap.load(home))
    assert not [c.reason for c in audit.checks if c.status == FAIL]


def test_the_sleep_command_says_what_a_resumed_night_did_not_do_again() -> None:
    from sleep.commands.sleep import _summary

    report = {"outcome": "promoted", "episodes": 3, "consolidated_sessions": 1, "new_generation": "gen-0002"}
    assert "resumed" not in _summary({**report, "skipped": []})
    line = _summary({**report, "skipped": AFTER_TRAINING})
    assert "resumed a paused night; not done again: weigh, dream, replay, train" in line and "\n" not in line
