"""One sleep cycle: the day's episodes become a new model generation, then the logs are destroyed.

`run_cycle` is the only place the stages are chained, in the order of `STAGES`. What each does:

    gather    close the open epoch; decrypt every closed epoch in memory
    load      the current generation as a trainable torch model (GGUF -> torch bridge)
    weigh     importance from flags (and surprise, when enabled)
    dream     generative replay: variations of each episode (sleep.consolidate)
    replay    self-written samples for the KL term, and the EWC Fisher
    train     LoRA on episodes + dreams + replay, pausable with an encrypted checkpoint
    merge     W' = W + scale * B @ A, written back under the GGUF's tensor names
    quantize  llama_model_quantize to the serving generation's file type
    gate      the candidate must load, answer, recall and retain (else: rejected)
    promote   atomic switch of `current` to the new generation; older ones kept for rollback
    shred     destroy the consumed epochs' keys and files; ledger tombstone; report

A failure at any stage leaves the previous generation serving and the episodes readable; the
scratch directory (derived data: merged weights, candidate) is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from assistant.errors import NightcapError, SleepError, where
from assistant.fsutil import ensure_dir, open_private
from assistant.stoppoints import Stopped, stop_points
from assistant.vault.derived import drop_stale
from sleep import checkpoint
from sleep.memory import settle
from sleep.progress import NullProgress, SleepProgress
from sleep.report import (
    OUTCOME_FAILED,
    OUTCOME_INTERRUPTED,
    OUTCOME_NOTHING,
    OUTCOME_PROMOTED,
    OUTCOME_REJECTED,
    SleepReport,
    peak_rss_bytes,
    reset_peak_rss,
)

if TYPE_CHECKING:
    from assistant.app import Nightcap
    from assistant.config import SleepConfig
    from assistant.episode import Episode
    from assistant.vault import Vault
    from models.master import Master
    from models.store import Generation
    from sleep.consolidate import Learner
    from sleep.loss import LossTerm
    from sleep.probes import Probe
    from sleep.train import TrainArgs, TrainResult


class SleepInterrupted(NightcapError):
    """The cycle stopped on request (user back, power gone, SIGTERM); it resumes next time."""


FORGOTTEN_DURING_SLEEP = (
    "a memory was forgotten while this night learned it: the night's training was discarded, "
    "and the next sleep learns the rest"
)


class _Stop(Exception):
    pass


@contextlib.contextmanager
def cycle_lock(home_root: Path) -> Iterator[None]:
    """One cycle at a time per home (the daemon and a manual `nightcap sleep` exclude each other)."""
    with open_private(home_root / "sleep.lock") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SleepError("another sleep cycle is already running; wait for it or stop the daemon") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


STAGES = ("gather", "load", "weigh", "dream", "replay", "train", "merge", "quantize", "gate", "promote", "shred")
"""The cycle's stages, in order (the report's `stages` and `stage_rss_mb` are keyed by them)."""


SETTLE_BEFORE = ("train", "gate")
"""Stages that start with `sleep.memory.settle`: the two that follow what leaves garbage behind
(the llama.cpp writer of dreams and replay; the merge and quantize), and hold the most. A full
collection takes about 0.15 s in a process that imported torch: before every stage it made a
short night of the test suite about 2 s longer."""


def _peak_rss_mb() -> float:
    return peak_rss_bytes() / (1024.0 * 1024.0)


class Stage(Protocol):
    """`with stage(name):` around one stage of a night (made by `stages`)."""

    def __call__(self, name: str, stoppable: bool = True) -> contextlib.AbstractContextManager[None]: ...


def stages(report: SleepReport, progress: SleepProgress, stop: Callable[[], bool]) -> Stage:
    """`with stage(name):` for a night (and `nightcap forget`): raises `_Stop` first if asked to
    stop (unless `stoppable=False`), tells `progress`, and records the stage's time and the peak
    memory so far in `report`."""

    @contextlib.contextmanager
    def stage(name: str, stoppable: bool = True) -> Iterator[None]:
        if stoppable and stop():
            raise _Stop(name)
        progress.stage(name)
        # Each stage's own peak where the system can restart the count (what the process held
        # before is kept in the night's peak first), from what the night still holds.
        report.peak_rss_mb = max(report.peak_rss_mb, round(_peak_rss_mb(), 1))
        if name in SETTLE_BEFORE:
            settle()
        reset_peak_rss()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            report.stages[name] = round(time.perf_counter() - t0, 3)
            report.stage_rss_mb[name] = round(_peak_rss_mb(), 1)
            report.peak_rss_mb = max(report.peak_rss_mb, report.stage_rss_mb[name])  # the stored report's too

    return stage


def promote(
    app: "Nightcap",
    candidate: Path,
    parent: "Generation",
    master: "Master | None",
    *,
    source: str,
    extra: dict[str, Any],
) -> "Generation":
    """Store `candidate` as a new generation, seal the weight master it came from, and switch to
    it. On any failure the new generation is removed: never keep weights that learned unshredded
    logs. The caller holds the vault."""
    new = app.store.add(candidate, source=source, parent=parent.name, link=True, extra=extra)
    try:
        if master is not None:
            from sleep.weights import keep_master

            keep_master(app.vault(), master, new.manifest["sha256"])
        app.store.use(new.name)
    except BaseException:
        shutil.rmtree(new.dir, ignore_errors=True)
        raise
    app.store.prune(app.config.model.keep_generations)
    return new


def _unless_forgotten(vault: "Vault", epochs: list[str], report: SleepReport) -> None:
    """Raise SleepInterrupted (dropping the checkpoint) if a memory the night read was forgotten
    since (its epoch was rewritten without it). Call with the vault held."""
    live = set(vault.closed_epochs())
    if any(e not in live for e in epochs):
        checkpoint.clear(vault)
        report.error = FORGOTTEN_DURING_SLEEP
        raise SleepInterrupted(FORGOTTEN_DURING_SLEEP)


def run_cycle(
    app: "Nightcap",
    *,
    should_stop: Callable[[], bool] | None = None,
    progress: SleepProgress | None = None,
) -> SleepReport:
    """Consolidate all pending episodes into a new generation. Returns the stored report.

    Raises:
        SleepInterrupted: `should_stop()` turned true; a checkpoint was sealed for next time.
        SleepError: the cycle failed; the previous model serves and no episode was lost.
    """
    progress = progress or NullProgress()
    stop = should_stop or (lambda: False)
    report = SleepReport()
    settle()  # what an earlier night or chat in this process left is handed back first
    reset_peak_rss()  # the night's own peak, not that of what the process did before it
    scratch = app.home.root / "tmp" / "sleep"
    stage = stages(report, progress, stop)

    with cycle_lock(app.home.root):
        shutil.rmtree(scratch, ignore_errors=True)  # leftovers of a cycle that was killed
        app.store.clean_partial()
        try:
            # Every loop of every stage has a stop point (assistant.stoppoints): the night yields
            # within seconds of `stop()` turning true, wherever it is.
            with stop_points(stop):
                _run(app, report, stage, stop, progress, ensure_dir(scratch))
        except (_Stop, Stopped) as stopped:
            report.outcome = OUTCOME_INTERRUPTED
            at = f"before {stopped}" if isinstance(stopped, _Stop) else f"during {next(reversed(report.stages))}"
            report.error = f"stopped {at}"
            report.save(app.home.reports)
            raise SleepInterrupted("sleep paused; it will resume from its checkpoint next time") from None
        except SleepInterrupted:
            report.outcome = OUTCOME_INTERRUPTED
            report.save(app.home.reports)
            raise
        except NightcapError as err:
            report.outcome, report.error = OUTCOME_FAILED, str(err)
            report.save(app.home.reports)
            raise
        except Exception as err:  # any other failure: keep serving, keep the episodes
            # Its message may quote what it was handed (a conversation): only type and place are kept.
            report.outcome, report.error = OUTCOME_FAILED, where(err)
            report.save(app.home.reports)
            raise SleepError(
                f"sleep failed during {next(reversed(report.stages), 'start')} ({where(err)}); "
                "the previous model keeps serving and no memory was lost"
            ) from err
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            report.peak_rss_mb = max(report.peak_rss_mb, round(_peak_rss_mb(), 1))
            settle()  # a long-lived process (the daemon) does not keep the night's memory
    return report


def _drop_unpromoted(app: "Nightcap", current: str, live: set[str]) -> None:
    """Remove sleep-made generations newer than `current` that learned epochs still in the vault:
    candidates of a cycle killed between storing and promoting them. (A generation the user
    rolled back from learned only epochs already shredded, and is kept.)"""
    cur_index = app.store.get(current).index
    for g in app.store.list():
        learned = set(g.manifest.get("epochs", []))
        if g.index > cur_index and g.manifest.get("source") == "sleep" and learned & live:
            shutil.rmtree(g.dir, ignore_errors=True)


def _run(
    app: "Nightcap", report: SleepReport, stage: Stage, stop: Callable[[], bool], progress: SleepProgress, scratch: Path
) -> None:
    from sleep import consolidate  # deferred: torch and peft load only when there is work
    from sleep.probes import Probe

    vault = app.vault()
    gen = app.store.current()
    report.old_generation, report.old_sha256 = gen.name, gen.manifest.get("sha256")

    with stage("gather"):
        epochs, episodes, read = _gather(app, vault, gen, report)
    if not episodes:
        report.outcome = OUTCOME_NOTHING
        report.save(app.home.reports)
        return
    if not gen.can_sleep:
        raise SleepError(f"{gen.arch} models cannot sleep yet; switch to a gemma3, llama, qwen2 or qwen3 model")

    cfg, system_prompt = app.config.sleep, app.config.chat.system_prompt
    args = consolidate.train_args(cfg, gen)
    night = night_fingerprint(cfg, gen, read, system_prompt)
    # A night paused after its training finished resumes at the merge: what it would dream,
    # replay and train again is what it already trained.
    done = checkpoint.finished(vault, night) if report.resumed_epochs else None
    with stage("load"):
        learner = consolidate.load(gen.gguf, args)
    extra_losses: list["LossTerm"] = []
    if done is not None:
        report.skipped += ["weigh", "dream", "replay", "train"]
        heldout = [Probe(**p) for p in done.heldout]
    else:
        result, heldout, extra_losses = _learn(
            app, gen, learner, epochs, episodes, read, night, args, report, stage, stop, progress
        )
    merged = scratch / "merged.gguf"
    with stage("merge"):
        if done is not None:  # the finished adapter back on the model: nothing trains
            result = consolidate.restore(learner.model, done, args, report)
        replacements, master = consolidate.merge(result.model, gen, vault, cfg)
        # The torch copy goes before the write-back and llama.cpp's loads: these are its last
        # holders (the loss terms hold its layers too).
        del learner, extra_losses, result
        touched = consolidate.write_back(gen.gguf, replacements, merged)
        del replacements
    with stage("quantize"):
        candidate = consolidate.quantize(merged, scratch / "candidate.gguf", touched, gen, cfg)
    with stage("gate"):
        for gate in consolidate.gate(candidate, gen, heldout, cfg, system_prompt, app.home.root / "cache"):
            report.add_gate(gate)
    if not report.gates_passed:
        report.outcome = OUTCOME_REJECTED
        report.error = "candidate rejected: " + "; ".join(report.failed_gates())
        checkpoint.clear(vault)
        report.save(app.home.reports)
        return
    # Promote and shred with the vault held: a memory forgotten while the night trained must not
    # be promoted, and no forget or feedback can slip in between the check and the shred.
    with vault.held():
        _unless_forgotten(vault, epochs, report)
        with stage("promote"):
            new = promote(
                app, candidate, gen, master, source="sleep", extra={"epochs": list(epochs), "report": report.id}
            )
            report.new_generation, report.new_sha256 = new.name, new.manifest.get("sha256")
            # Stored before the shred: a night killed after its commit (finished on the next open)
            # still has the report the ledger's tombstones refer to.
            report.outcome = OUTCOME_PROMOTED
            report.save(app.home.reports)
        with stage("shred", stoppable=False):  # the new model serves: its logs go now, whatever happens
            _shred(vault, epochs, read, new, report)
    report.outcome = OUTCOME_PROMOTED
    report.save(app.home.reports)


def _learn(
    app: "Nightcap",
    gen: "Generation",
    learner: "Learner",
    epochs: list[str],
    episodes: list["Episode"],
    read: dict[str, int],
    night: str,
    args: "TrainArgs",
    report: SleepReport,
    stage: Stage,
    stop: Callable[[], bool],
    progress: SleepProgress,
) -> tuple["TrainResult", list["Probe"], list["LossTerm"]]:
    """Weigh, dream, replay and train: the trained adapter (on `learner.model`), the recall
    gate's held-out probes and the loss terms (which hold the model's layers too). Training's
    state is sealed whether it finished or was paused."""
    from sleep import consolidate
    from sleep.train import fingerprint

    vault = app.vault()
    cfg, system_prompt = app.config.sleep, app.config.chat.system_prompt
    with stage("weigh"):
        importance = consolidate.weigh(learner, episodes, cfg)
    writer = consolidate.Writer(gen.gguf, cfg.seed)
    with stage("dream"):
        lessons = consolidate.dream(learner, episodes, importance, writer, cfg, system_prompt, report, slept=gen.slept)
        # The step count follows the examples; settled before the night is fingerprinted.
        args = dataclasses.replace(args, steps=consolidate.steps_for(cfg, len(lessons.examples), args.batch_size))
    with stage("replay"), contextlib.closing(writer):  # the writer's memory goes before training
        extra_losses = consolidate.replay(
            learner,
            writer,
            n_episodes=len(episodes),
            gen=gen,
            vault=vault,
            args=args,
            cfg=cfg,
            system_prompt=system_prompt,
            report=report,
            cache=app.home.root / "cache",
        )
    with stage("train"):
        resume = checkpoint.load(vault, fingerprint(args, lessons.examples))
        if resume is not None and resume.step >= args.steps:
            report.skipped.append("train")  # finished before the pause: only the adapter is loaded
        result = consolidate.train(
            learner.model,
            lessons.examples,
            extra_losses,
            args,
            stop=stop,
            resume=resume,
            report=report,
            progress=progress,
        )
        result.state.gathered = dict(read)
        if not result.interrupted:
            result.state.night = night
            result.state.heldout = [asdict(p) for p in lessons.heldout]
        # Sealed after training too: a pause in a later stage resumes without training again;
        # never when a memory it trained on was forgotten meanwhile (that forget dropped the last one).
        with vault.held():
            _unless_forgotten(vault, epochs, report)
            checkpoint.save(vault, result.state)
        if result.interrupted:
            raise SleepInterrupted("sleep paused during training; it will resume from its checkpoint next time")
    return result, lessons.heldout, list(extra_losses)


def night_fingerprint(cfg: "SleepConfig", gen: "Generation", read: dict[str, int], system_prompt: str) -> str:
    """What a night's training follows from, known before anything is dreamt: its settings (but
    where and on how many threads it runs), the generation it starts from, the system prompt and
    exactly what it gathered (epochs and records of each)."""
    keep = {k: v for k, v in asdict(cfg).items() if k not in ("device", "threads")}
    raw = [keep, gen.manifest.get("sha256") or gen.name, system_prompt, sorted(read.items())]
    return hashlib.sha256(json.dumps(raw, sort_keys=True, default=str).encode()).hexdigest()


def _gather(
    app: "Nightcap", vault: "Vault", gen: "Generation", report: SleepReport
) -> tuple[list[str], list["Episode"], dict[str, int]]:
    """The epochs the night learns, their episodes, and how many records of each it read. Epochs
    the serving generation already learned are shredded instead of learned twice, and a paused
    night reads exactly what it read before."""
    # Sealed state of a generation that no longer serves (a rollback meanwhile) goes first.
    report.dropped_state = drop_stale(vault, gen.manifest.get("sha256"))
    vault.close_epoch()
    epochs = vault.closed_epochs()
    # A cycle killed between promote and shred: the serving generation already learned
    # these epochs, so finish their destruction instead of learning them twice.
    _drop_unpromoted(app, gen.name, set(epochs))
    learned = [e for e in epochs if e in gen.manifest.get("epochs", [])]
    if learned:
        report.shred = asdict(vault.shred(learned, reason=f"consolidated into {gen.name}", generation=gen.name))
        epochs = [e for e in epochs if e not in learned]
    # A paused night resumes on exactly what it read: episodes logged (or feedback given)
    # since then wait for the next night instead of voiding the saved work.
    before = checkpoint.gathered(vault)
    if before and set(before) <= set(epochs):
        epochs = [e for e in epochs if e in before]
        report.resumed_epochs = True
    episodes, read = vault.consume(epochs, before if report.resumed_epochs else None)
    report.epochs, report.episodes = list(epochs), len(episodes)
    report.consolidated_sessions = len({ep.session for ep in episodes})
    return epochs, episodes, read


def _shred(vault: "Vault", epochs: list[str], read: dict[str, int], new: "Generation", report: SleepReport) -> None:
    """Destroy the logs the new generation learned (the checkpoint first, so the shred's key
    rotation also covers its key). Call with the vault held."""
    checkpoint.clear(vault)
    # Feedback given while the night trained is not destroyed untrained: `read` keeps it.
    report.shred = asdict(
        vault.shred(list(epochs), reason=f"consolidated into {new.name}", generation=new.name, read=read)
    )
    # The old generation's Fisher (it learned earlier nights) has no more use.
    report.dropped_state += drop_stale(vault, new.manifest.get("sha256"))
