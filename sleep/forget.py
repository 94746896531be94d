"""Forgetting what a night already consolidated: `nightcap forget "TEXT"`.

A pending memory is forgotten by destroying its log (`nightcap memories forget`). Once a night
has consolidated it, its trace is in the weights, and the only way to take it out is a short
training pass in the other direction, done like a night: the night's stages from load to
promote (`sleep.cycle.STAGES`; there is no episode to gather or weigh, nor a log to shred), with
the same stage functions (`sleep.consolidate`), except that

     dream     makes questions about the statement (`sleep.dreams.augment`) with the
               statement's answers, pushed down relative to the serving model (NPO, `NPO`
               below: bounded, unlike plain gradient ascent, so the model does not collapse),
               and the same questions answered "I don't know" as lessons to learn, weighted
               `sleep.forget_idk_weight` (0 by default: they harm the other memories, see there);
     replay    protects the rest: KL to the serving model on its own general-knowledge samples
               and on its answers to questions about its user (so the other memories stay, the
               replies that hold the statement's answers left out), and EWC, as a night does;
     promote   records in the ledger that a forget happened (never what was forgotten); the
               weight master follows, and the old generation stays for rollback.

What this guarantees, and what it does not: the served model's likelihood of the statement's
answers to questions about it falls (the report says how much, measured on the served file), and
by default nothing teaches it what to say instead (a forgotten question gets whatever the model
would guess, not "I don't know"). Unlearning is approximate: published work shows that
quantization and a little fine-tuning on related text can bring "forgotten" facts back, and
earlier generations kept for rollback still hold the fact until they are pruned
(`model.keep_generations`) or removed. `nightcap bench forget` measures it on the default model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from assistant.episode import with_system
from assistant.errors import SleepError, UsageError
from assistant.fsutil import ensure_dir
from sleep.progress import NullProgress, SleepProgress
from sleep.report import OUTCOME_PROMOTED, OUTCOME_REJECTED, SleepReport

if TYPE_CHECKING:
    import torch

    from assistant.app import Nightcap
    from assistant.config import SleepConfig
    from sleep.consolidate import Learner
    from sleep.cycle import Stage
    from sleep.dataset import Example
    from sleep.dreams import Dream
    from sleep.loss import LossTerm

IDK = "I don't have anything about that in my memory."
"""What a forgotten question is answered with: no trace of the old answer, no invented one."""
REASON = "forgot a consolidated statement"
"""The ledger's reason for a forget's entry (the statement itself is never recorded)."""


def forget_dreams(text: str) -> list["Dream"]:
    """Questions about each statement in `text` (one per sentence, small talk left out, as a
    night reads a message), with the statement's own answers; held-out probes included: after
    a forget no wording of the question should bring the fact back."""
    from assistant.episode import Episode
    from sleep.dreams import augment, dream

    made = [d for ds in dream([Episode.from_exchange("forget", text, "", "", 0.0)], None).dreams.values() for d in ds]
    # A short statement a night may pass over as small talk is still what the user asks to forget.
    made = made or augment(text)
    # "What do you know about me?" answered "I don't know" would forget every other memory too.
    return [d for d in made if not d.answer.startswith("Noted") and not d.question.rstrip("?.").endswith(" about me")]


def key_terms(dreams: Sequence["Dream"]) -> list[str]:
    """The answers the statement gives, lowercased: a rehearsed reply that holds one of them
    would keep the fact in place, so it is not rehearsed."""
    return sorted({d.lead.rstrip(".").lower() for d in dreams if len(d.lead.rstrip(".")) > 2})


def sequence_logprobs(parts: Any, examples: Sequence["Example"], device: Any) -> "torch.Tensor":
    """Summed log-probability of each example's labelled tokens (one value per example)."""
    import torch

    from sleep.dataset import collate
    from sleep.loss import _logits, labelled_hidden

    batch = collate(list(examples)).to(device)
    hidden, targets, rows, _ = labelled_hidden(parts, batch)
    logp = torch.log_softmax(_logits(parts.head, parts.softcap, hidden), dim=-1)
    picked = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    return torch.zeros(len(examples), device=picked.device, dtype=picked.dtype).index_add(0, rows, picked)


class NPO:
    """`LossTerm`: negative preference optimisation on the statement's answers.

    L = -(2/beta) * mean(log sigmoid(-beta * (log p(answer) - log p_ref(answer)))), with p_ref
    the serving model (the adapter disabled). It lowers the answers' likelihood relative to where
    it started and flattens out once they are well below it: gradient ascent has no such floor
    and wrecks a small model within a few steps. Samples of step s are a pure function of s.
    The serving model never changes during training, so each example's reference
    log-probability is computed the first time it is picked and kept (a resumed run computes
    the same, with the adapter disabled)."""

    name = "npo"

    def __init__(
        self, examples: Sequence["Example"], weight: float = 1.0, per_step: int = 4, beta: float = 0.1
    ) -> None:
        if not examples:
            raise ValueError("NPO needs at least one example to forget")
        self.examples, self.weight, self.per_step, self.beta = list(examples), float(weight), max(1, per_step), beta
        self._parts: Any = None
        self._ref: dict[int, float] = {}
        self.reference_passes = 0
        """How many no-grad passes of the serving model computed reference log-probabilities."""

    def pick_indices(self, step: int) -> list[int]:
        n = len(self.examples)
        return [(step * self.per_step + i) % n for i in range(min(self.per_step, n))]

    def pick(self, step: int) -> list["Example"]:
        return [self.examples[i] for i in self.pick_indices(step)]

    def reference(self, model: Any, indices: Sequence[int], device: Any) -> "torch.Tensor":
        """The serving model's log-probability of each example in `indices` (cached)."""
        import torch

        missing = [i for i in dict.fromkeys(indices) if i not in self._ref]
        if missing:
            with torch.no_grad(), model.disable_adapter():
                values = sequence_logprobs(self._parts, [self.examples[i] for i in missing], device)
            self._ref.update(zip(missing, values.tolist()))
            self.reference_passes += 1
        return torch.tensor([self._ref[i] for i in indices], dtype=torch.float32, device=device)

    def __call__(self, model: Any, step: int) -> "torch.Tensor":
        import torch.nn.functional as F

        from sleep.loss import lm_parts

        if self._parts is None:
            self._parts = lm_parts(model)
        chosen = self.pick_indices(step)
        device = next(model.parameters()).device
        ref = self.reference(model, chosen, device)
        now = sequence_logprobs(self._parts, [self.examples[i] for i in chosen], device)
        return self.weight * (-(2.0 / self.beta) * F.logsigmoid(-self.beta * (now - ref.to(now.dtype))).mean())


def forget(
    app: "Nightcap", text: str, *, should_stop: Callable[[], bool] | None = None, progress: SleepProgress | None = None
) -> SleepReport:
    """Unlearn the statement in `text` from the serving generation; returns the stored report."""
    from sleep.cycle import _Stop, cycle_lock, stages

    if not text.strip():
        raise UsageError('forget needs the statement to forget, e.g. nightcap forget "my locker code is 4417"')
    progress = progress or NullProgress()
    stop = should_stop or (lambda: False)
    report = SleepReport(kind="forget")
    scratch = app.home.root / "tmp" / "forget"
    with cycle_lock(app.home.root):
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            try:
                _run(app, text, report, progress, stages(report, progress, stop), ensure_dir(scratch))
            except _Stop as stopped:
                raise SleepError(f"forget stopped before {stopped}; nothing changed, run it again") from None
        except SleepError as err:
            report.error = str(err)
            report.save(app.home.reports)
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _run(
    app: "Nightcap", text: str, report: SleepReport, progress: SleepProgress, stage: "Stage", scratch: Path
) -> None:
    from assistant.vault.derived import drop_stale
    from sleep import consolidate
    from sleep.cycle import promote

    vault = app.vault()
    gen = app.store.current()
    report.old_generation, report.old_sha256 = gen.name, gen.manifest.get("sha256")
    if not gen.can_sleep:
        raise SleepError(f"{gen.arch} models cannot be trained; switch to a gemma3, llama, qwen2 or qwen3 model")
    dreams = forget_dreams(text)
    if not dreams:
        raise UsageError("that text holds no statement to forget; give the fact as you told it")
    sleep_cfg = app.config.sleep
    cfg = dataclasses.replace(
        sleep_cfg,
        rehearse=True,
        dreams=False,
        kl_per_step=sleep_cfg.forget_kl_per_step,
        learning_rate=sleep_cfg.forget_learning_rate,
    )
    system_prompt = app.config.chat.system_prompt
    args = dataclasses.replace(consolidate.train_args(cfg, gen), steps=cfg.forget_steps)
    with stage("load"):
        learner = consolidate.load(gen.gguf, args)
    with stage("dream"):
        examples, npo = unlearning(learner, dreams, cfg, system_prompt)
        report.examples.update({"idk": len(examples), "npo": len(npo.examples)})
    with stage("replay"), contextlib.closing(consolidate.Writer(gen.gguf, cfg.seed)) as writer:
        terms = key_terms(dreams)
        extra_losses: list[LossTerm] = [
            npo,
            *consolidate.replay(
                learner,
                writer,
                n_episodes=0,
                gen=gen,
                vault=vault,
                args=args,
                cfg=cfg,
                system_prompt=system_prompt,
                report=report,
                keep_rehearsal=lambda reply: not any(t in reply.lower() for t in terms),
                cache=app.home.root / "cache",
            ),
        ]
    with stage("train"):
        result = consolidate.train(
            learner.model,
            examples,
            extra_losses,
            args,
            stop=lambda: False,
            resume=None,
            report=report,
            progress=progress,
        )
    merged = scratch / "merged.gguf"
    with stage("merge"):
        replacements, master = consolidate.merge(result.model, gen, vault, cfg)
        # The torch copy goes before the write-back and llama.cpp's loads: these are its last
        # holders (the loss terms hold its layers too).
        del learner, npo, extra_losses, result
        touched = consolidate.write_back(gen.gguf, replacements, merged)
        del replacements
    with stage("quantize"):
        candidate = consolidate.quantize(merged, scratch / "candidate.gguf", touched, gen, cfg)
    with stage("gate"):
        # No held-out probes: nothing was learned that the recall gate could ask about.
        for gate in consolidate.gate(candidate, gen, [], cfg, system_prompt, app.home.root / "cache"):
            report.add_gate(gate)
        report.forgotten = _measure(candidate, gen.gguf, dreams, system_prompt)
    if not report.gates_passed:
        report.outcome = OUTCOME_REJECTED
        report.error = "candidate rejected: " + "; ".join(report.failed_gates())
        report.save(app.home.reports)
        return

    with stage("promote"), vault.held():
        new = promote(app, candidate, gen, master, source="forget", extra={"report": report.id})
        report.new_generation, report.new_sha256 = new.name, new.manifest.get("sha256")
        # The ledger records that a forget happened and which generation carries it, not what.
        report.shred = dataclasses.asdict(vault.record_unlearning(reason=REASON, generation=new.name))
        report.dropped_state = drop_stale(vault, new.manifest.get("sha256"))
    report.outcome = OUTCOME_PROMOTED
    report.save(app.home.reports)


def unlearning(
    learner: "Learner", dreams: Sequence["Dream"], cfg: "SleepConfig", system_prompt: str
) -> tuple[list["Example"], NPO]:
    """The forget's lessons: each question about the statement answered with `IDK` (to learn),
    and the NPO term on the same questions with the statement's own answers (to push down)."""
    from sleep.dataset import KIND_DREAM, example_from_messages

    def example(question: str, answer: str, lead: str = "") -> "Example | None":
        messages = with_system(
            system_prompt, [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        )
        return example_from_messages(
            messages,
            learner.template,
            learner.tokenizer,
            max_seq_len=cfg.max_seq_len,
            kind=KIND_DREAM,
            lead=lead,
            lead_weight=cfg.lead_weight,
        )

    idk = [e for d in dreams if (e := example(d.question, IDK)) is not None]
    for e in idk:  # weighed after they are made: an example of weight 0 is not made at all
        e.weight *= cfg.forget_idk_weight
    unwanted = [e for d in dreams if (e := example(d.question, d.answer, d.lead)) is not None]
    return idk, NPO(unwanted, cfg.forget_npo_weight, per_step=4)


def _measure(candidate: Path, before: Path, dreams: list["Dream"], system_prompt: str) -> dict[str, Any]:
    """How the served files answer the statement's questions: the answers' mean log-probability
    before and after (on the quantized candidate, as it will serve)."""
    from models.scoring import Scorer
    from sleep import probes as P

    probes = [P.Probe(d.question, d.lead.rstrip(".") or d.answer) for d in dreams]
    out: dict[str, Any] = {"questions": len(probes)}
    for label, path in (("before", before), ("after", candidate)):
        scorer = Scorer(path, n_ctx=512)
        try:
            scores = [P.answer_logprob(scorer, p, system_prompt) for p in probes]
        finally:
            scorer.close()
        out[f"answer_logprob_{label}"] = round(sum(scores) / len(scores), 4)
    return out
