"""What one night learns and how: the data and model work behind the cycle's stages.

Each stage is a function that takes what it needs and returns what the next stage needs;
`sleep.cycle.run_cycle` chains them (in the order of `sleep.cycle.STAGES`) and `sleep.forget`
reuses them. Two records live across stages: `Learner`, the serving generation as a trainable
torch model with the tokenizer and chat template that turn text into its tokens, and `Lessons`,
what the night trains on and what it is judged by. `Writer` is the pre-sleep model in
llama.cpp, which writes dreams and replay samples. Heavy imports (torch, transformers, peft)
happen here, only when a night has work to do.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, cast

from assistant.episode import with_system
from sleep.progress import SleepProgress
from sleep.report import GateResult, SleepReport

if TYPE_CHECKING:
    import torch
    from llama_cpp import Llama
    from llama_cpp.llama_types import CreateCompletionStreamResponse
    from peft import PeftModel
    from transformers import PreTrainedModel

    from assistant.config import SleepConfig
    from assistant.episode import Episode
    from assistant.vault import Vault
    from models.master import Master
    from models.store import Generation
    from models.templates import ChatTemplate
    from models.tokenizer import Tokenizer
    from sleep.dataset import Example
    from sleep.dreams import Dream, DreamSet
    from sleep.loss import LossTerm
    from sleep.probes import Probe
    from sleep.replay import Teacher
    from sleep.train import TrainArgs, TrainResult, TrainState


@dataclass(frozen=True)
class Learner:
    """The serving generation as a trainable torch model, with llama.cpp's tokenizer and the
    chat template of the same file: the tokens a night trains on are those serving sees."""

    model: "PreTrainedModel"
    tokenizer: "Tokenizer"
    template: "ChatTemplate"


@dataclass(frozen=True)
class Lessons:
    """What the night trains on (`examples`) and the held-out probes its recall gate asks
    (made from the same statements, never trained on)."""

    examples: list["Example"]
    heldout: list["Probe"]


class Writer:
    """The pre-sleep model in llama.cpp, writing dreams and replay samples. Opened on first use
    (a night without dreams or replay never loads it); `close` frees it before training."""

    def __init__(self, gguf: Path, seed: int) -> None:
        self.gguf, self.seed = gguf, seed
        self._llama: "Llama | None" = None

    def _model(self) -> "Llama":
        """The llama.cpp model, loaded the first time a night asks it to write."""
        if self._llama is None:
            from models.runtime import load_llama

            self._llama = load_llama(self.gguf, n_ctx=1024, seed=self.seed)
        return self._llama

    def complete(
        self, prompt: str, max_tokens: int = 96, stop: list[str] | None = None, sample_seed: int | None = None
    ) -> str:
        """Greedy completion of `prompt`; with `sample_seed`, a sampled one instead,
        reproducible from the night's seed and `sample_seed`."""
        from assistant.stoppoints import stop_point

        greedy = sample_seed is None
        seed = None if sample_seed is None else self.seed * 1000 + sample_seed
        pieces = []
        # Streamed, with a stop point after every token: a night yields mid-completion.
        chunks = self._model().create_completion(
            prompt,
            max_tokens=max_tokens,
            repeat_penalty=1.1,
            stop=stop or [],
            stream=True,
            temperature=0.0 if greedy else 0.8,
            top_p=0.95,
            seed=seed,
        )
        for chunk in cast("Iterator[CreateCompletionStreamResponse]", chunks):  # stream=True: chunk by chunk
            stop_point()
            pieces.append(str(chunk["choices"][0]["text"]))
        return "".join(pieces)

    def close(self) -> None:
        """Free the llama.cpp model (it is loaded again if asked to write after this)."""
        if self._llama is not None:
            self._llama.close()
            self._llama = None


def train_args(cfg: "SleepConfig", gen: "Generation") -> "TrainArgs":
    """The night's training settings from `cfg`, once the settings only the night's last stages
    read are checked too: a bad one fails before the night spends time training."""
    from models.quantize import touched_ggml_type
    from sleep.train import TrainArgs, learning_rate

    args = TrainArgs.from_config(cfg)
    if cfg.gates not in ("full", "health"):
        from assistant.errors import ConfigError

        raise ConfigError(f'sleep.gates must be "full" or "health", not {cfg.gates!r}; fix config.toml')
    file_type(cfg.file_type, gen.manifest.get("file_type"))
    touched_ggml_type(cfg.touched_type)
    learning_rate(args, 0)
    return args


def load(gguf: Path, args: "TrainArgs") -> Learner:
    """The generation in `gguf` as a trainable torch model, with its tokenizer and template."""
    from assistant.stoppoints import stop_point
    from models.bridge import load_torch_model
    from models.tokenizer import Tokenizer
    from sleep.train import slim_for_training

    tokenizer = Tokenizer.from_gguf(gguf)
    template = tokenizer.chat_template()
    stop_point()
    model = load_torch_model(gguf).model
    slim_for_training(model, args)
    return Learner(model, tokenizer, template)


def weigh(learner: Learner, episodes: list["Episode"], cfg: "SleepConfig") -> dict[str, float]:
    """Each episode's importance (its training weight, by episode id): the flags set at log time
    (remember, correction, feedback), scaled by surprise under the pre-sleep model when
    `sleep.surprise` is on."""
    from sleep.surprise import user_nll, weigh as importance_of

    nll = user_nll(learner.model, episodes, learner.tokenizer) if cfg.surprise else {}
    return importance_of(episodes, nll, cfg.correction_boost).weights


def dream(
    learner: Learner,
    episodes: list["Episode"],
    importance: Mapping[str, float],
    writer: Writer,
    cfg: "SleepConfig",
    system_prompt: str,
    report: SleepReport,
    *,
    slept: bool = False,
) -> Lessons:
    """The night's examples: each episode as logged, except that a stated fact (not a question)
    is learned through its augmentations and verified dreams instead of the reply the model
    happened to give; held-out probes are kept for the recall gate. When the serving model
    `slept` before, it is asked what it recalls about what the night's statements name
    (`sleep.reconsolidate`), and what it now answers to the night's questions is checked
    (`_stale_beliefs`)."""
    from sleep.dataset import KIND_DREAM, KIND_EPISODE, rival_tokens, weigh_by_tokens
    from sleep.dreams import dream as dreams_of
    from sleep.probes import Probe
    from sleep.secrets import holds_secret

    complete = (lambda prompt: writer.complete(prompt, 96, ["\n\n", "Statement:"])) if cfg.dreams else None
    relink = None
    if slept and cfg.reconsolidate:
        from sleep.reconsolidate import RECALL_TOKENS, relink as relinked

        ask = _chat_prompt(learner.template, system_prompt)
        recall = functools.lru_cache(maxsize=None)(lambda q: writer.complete(ask(q), RECALL_TOKENS, ["\n"]))
        relink = functools.partial(relinked, recall=recall)
    dreams = dreams_of(episodes, complete, augmentations=cfg.augment, relink=relink, blank_only=cfg.cloze_blank_only)
    heldout: list[Probe] = []
    counts = {KIND_EPISODE: 0, KIND_DREAM: 0, "augment": 0, "secret_episodes": 0}
    examples: list[Example] = []
    asked: list[tuple[Example, Dream]] = []
    for ep in episodes:
        weight = importance.get(ep.id, ep.importance)
        mine = dreams.dreams.get(ep.id, [])
        trained = [d for d in mine if not d.heldout]
        heldout += [Probe(d.question, d.answer) for d in mine if d.heldout]
        if holds_secret(ep):
            # Secrets never become training text (sleep.secrets): the exchange itself is not
            # trained on; its dreams were made from its other sentences only.
            counts["secret_episodes"] += 1
        elif not trained or _is_question(ep.user_text) or ep.correction is not None:
            logged = _episode_examples(learner, ep, weight, cfg, system_prompt)
            examples += logged
            counts[KIND_EPISODE] += len(logged)
        for d in trained:
            for learned, led in _dream_examples(learner, d, ep.id, weight, cfg, system_prompt):
                examples.append(learned)
                counts["augment" if d.kind == "augment" else KIND_DREAM] += 1
                if led:
                    asked.append((learned, d))
    if cfg.token_loss:
        weigh_by_tokens(examples)
    rival_tokens(examples, cfg.rival_weight)
    if slept and cfg.stale_weight > 0 and asked:
        render = _chat_prompt(learner.template, system_prompt)
        checked, stale = _stale_beliefs(writer, render, learner.tokenizer, asked, cfg.stale_weight)
        counts["beliefs_checked"], counts["beliefs_stale"] = checked, stale
    _report_dreams(report, counts, len(heldout), dreams)
    return Lessons(examples, heldout)


STALE_TOKENS = 8
"""Length of the pre-sleep model's answer to a night's question, in tokens: enough to read the
value it leads with."""


def _stale_beliefs(
    writer: Writer,
    render: Callable[[str], str],
    tokenizer: "Tokenizer",
    asked: Sequence[tuple["Example", "Dream"]],
    weight: float,
) -> tuple[int, int]:
    """What the serving model believes now, where tonight's statements say otherwise.

    A slept model answers each of the night's questions that lead with a value (greedy, in the
    chat prompt, as serving would). Where its answer does not hold tonight's value, its tokens
    that tonight's answer does not use become rivals of that example (`Example.rivals`, pushed
    down at the answer's first position, at `weight`). Meant for a value an earlier night taught
    and the user has since changed ("Tartu" to "Where does my aunt Ruth live?" after "Ruth is in
    Valparaiso now"), which cross-entropy on the new value alone lifts too little to overtake;
    but whatever else the model says to a new fact's question is pushed down just the same.
    No list of words: the rivals are whatever the model itself would have said. Off by default
    (`sleep.stale_weight`): measured, it flags nearly every question of a night and does not
    make the new value win. Returns (questions asked, stale answers found)."""
    replies: dict[str, str] = {}
    stale = 0
    for example, d in asked:
        value = d.lead.rstrip(".").strip().lower()
        if d.question not in replies:
            replies[d.question] = writer.complete(render(d.question), STALE_TOKENS, ["\n"])
        reply = replies[d.question].strip()
        if not value or not reply or value in reply.lower():
            continue
        rivals = set(tokenizer.encode(reply, add_bos=False, special=False)) - set(example.labels)
        if not rivals:
            continue
        example.rivals = tuple(sorted(set(example.rivals) | rivals))
        example.rival_weight = max(example.rival_weight, weight)
        stale += 1
    return len(replies), stale


def _episode_examples(
    learner: Learner, ep: "Episode", weight: float, cfg: "SleepConfig", system_prompt: str
) -> list["Example"]:
    """The episode as logged (its correction replacing the reply), at the night's weight for it."""
    from sleep.dataset import build_examples

    return build_examples(
        [replace(ep, importance=weight)], learner.template, learner.tokenizer, system_prompt, cfg.max_seq_len
    )


def _dream_examples(
    learner: Learner, d: "Dream", source: str, weight: float, cfg: "SleepConfig", system_prompt: str
) -> list[tuple["Example", bool]]:
    """One dream as a question and its answer, weighted by `sleep.dream_weight` on top of the
    episode's importance; the answer's lead weighs `sleep.lead_weight`. An answer that leads with
    its value is trained in the order(s) `sleep.answer_order` names: value first ("Lisbon. Your
    sister lives in Lisbon."), subject first (the restatement alone, "Your sister lives in
    Lisbon.", wherever it names the value), or both as two examples. Each example comes with
    whether its answer leads with a value."""
    from sleep.dataset import KIND_DREAM, example_from_messages

    answers = [(d.answer, d.lead)]
    if cfg.answer_order != "value" and d.lead:
        told = d.answer[len(d.lead) :].strip()
        if d.lead.rstrip(".").strip().lower() in told.lower():  # the restatement names the value too
            answers = [(told, "")] if cfg.answer_order == "subject" else [(d.answer, d.lead), (told, "")]
    out = []
    for answer, lead in answers:
        messages = with_system(
            system_prompt, [{"role": "user", "content": d.question}, {"role": "assistant", "content": answer}]
        )
        example = example_from_messages(
            messages,
            learner.template,
            learner.tokenizer,
            max_seq_len=cfg.max_seq_len,
            weight=weight * cfg.dream_weight,
            kind=KIND_DREAM,
            source=source,
            lead=lead,
            lead_weight=cfg.lead_weight,
        )
        if example is not None:
            out.append((example, bool(lead)))
    return out


def _report_dreams(report: SleepReport, counts: dict[str, int], heldout: int, dreams: "DreamSet") -> None:
    """How many examples of each kind the night made, and what became of its dreams (no content)."""
    report.examples.update(counts)
    report.examples.update(
        {
            "heldout_probes": heldout,
            "dreams_written": dreams.written,
            "dreams_accepted": dreams.accepted,
            "ambiguous_dropped": dreams.ambiguous,
            "relinked": dreams.relinked,
        }
    )
    for reason, n in dreams.rejected.items():
        report.examples[f"dreams_rejected_{reason}"] = n


def replay(
    learner: Learner,
    writer: Writer,
    *,
    n_episodes: int,
    gen: "Generation",
    vault: "Vault",
    args: "TrainArgs",
    cfg: "SleepConfig",
    system_prompt: str,
    report: SleepReport,
    keep_rehearsal: Callable[[str], bool] | None = None,
    cache: Path | None = None,
) -> list["LossTerm"]:
    """The loss terms that protect what the model knows: foundational replay (KL to the frozen
    model on self-written samples, or to the home's first model with `sleep.replay_anchor`,
    whose samples and teachers are kept in `cache`), EWC, and rehearsal of a slept model's
    memories of its user. `keep_rehearsal` filters the rehearsed replies (a forget leaves out
    those that hold what it forgets)."""
    from sleep.replay import KLReplay, replay_example, replay_texts, sample_count

    terms: list[LossTerm] = []
    if not (cfg.replay or cfg.ewc):
        return terms
    render = _chat_prompt(learner.template, system_prompt)
    anchor_dir = cache if cfg.replay and cfg.replay_anchor and cfg.kl_top_k > 0 else None
    kept = _anchor(learner, gen, cfg, anchor_dir) if anchor_dir is not None and gen.slept else None
    teachers = None
    if kept is not None:
        samples, teachers = kept
        report.examples["replay_anchored"] = 1
    else:
        n = sample_count(n_episodes, cfg.replay_samples)
        pairs = replay_texts(
            lambda p, k: writer.complete(p, k),
            render if cfg.replay_chat else None,
            n,
            cfg.replay_tokens,
            cfg.replay_corpus,
        )
        made = [(pair, replay_example(*pair, learner.tokenizer, cfg.max_seq_len)) for pair in pairs]
        made_pairs = [pair for pair, ex in made if ex is not None]
        samples = [ex for _, ex in made if ex is not None]
        if anchor_dir is not None and not gen.slept and samples:
            # The home's first model: its teachers are what the term computes anyway; kept for later nights.
            from sleep.device import autocast, autocast_dtype
            from sleep.replay import ANCHOR_FILE, save_anchor, teachers_for

            # Under the training's precision, as the term would compute them at its first step.
            device = next(learner.model.parameters()).device
            with autocast(device, autocast_dtype(args.precision, device)):
                teachers = teachers_for(learner.model, samples, cfg.kl_top_k)
            save_anchor(anchor_dir / ANCHOR_FILE, _lineage(gen), made_pairs, teachers)
    report.examples["replay"] = len(samples)
    if cfg.replay and samples:
        terms.append(KLReplay(samples, cfg.kl_weight, cfg.kl_per_step, top_k=cfg.kl_top_k, teachers=teachers))
    if cfg.ewc and samples:
        terms.append(_ewc(learner.model, samples, gen, vault, args, cfg))
    if cfg.rehearse and gen.slept:
        # Only a slept model has memories of its user to rehearse.
        terms += _rehearsal(learner, writer, render, cfg, report, keep_rehearsal)
    return terms


def _lineage(gen: "Generation") -> dict[str, str]:
    """What an anchor must match to serve a generation: the model family it was made from."""
    m = gen.manifest
    return {
        "arch": str(m.get("arch", "")),
        "model_name": str(m.get("model_name", "")),
        "sha256": str(m.get("sha256", "")),
    }


def _anchor(
    learner: Learner, gen: "Generation", cfg: "SleepConfig", cache: Path
) -> tuple[list["Example"], list["Teacher"]] | None:
    """The home's first model's replay samples and teachers, where they fit this generation."""
    from sleep.replay import ANCHOR_FILE, labelled_count, load_anchor, replay_examples

    kept = load_anchor(cache / ANCHOR_FILE)
    if kept is None:
        return None
    made_from, pairs, teachers = kept
    mine = _lineage(gen)
    if (made_from.get("arch"), made_from.get("model_name")) != (mine["arch"], mine["model_name"]):
        return None  # another model's: its distributions are no anchor for this one
    samples = replay_examples(pairs, learner.tokenizer, cfg.max_seq_len)
    if len(samples) != len(teachers) or any(labelled_count(ex) != t.ids.shape[0] for ex, t in zip(samples, teachers)):
        return None
    return samples, teachers


def _chat_prompt(template: "ChatTemplate", system_prompt: str) -> Callable[[str], str]:
    """Renders a question as serving would prompt the model with it."""
    return lambda q: template.render(
        with_system(system_prompt, [{"role": "user", "content": q}]), add_generation_prompt=True
    )


def _rehearsal(
    learner: Learner,
    writer: Writer,
    render: Callable[[str], str],
    cfg: "SleepConfig",
    report: SleepReport,
    keep: Callable[[str], bool] | None,
) -> list["LossTerm"]:
    """KL to the frozen model on its own sampled answers about its user: what earlier nights
    taught it comes back in them, and is kept in place."""
    from sleep.replay import KLReplay, rehearsal_texts, replay_examples

    sample = lambda p, k, i: writer.complete(p, k, sample_seed=i)  # noqa: E731 - a one-line adapter
    ok = lambda t: keep is None or keep(t)  # noqa: E731 - what a forget leaves out is not rehearsed
    texts = [(p, t) for p, t in rehearsal_texts(sample, render, cfg.rehearse_samples, cfg.rehearse_tokens) if ok(t)]
    if cfg.rehearse_questions:
        from sleep.reconsolidate import RECALL_TOKENS, questions_of

        # The night's own question forms, answered as the slept model answers them now; made
        # only from kept recollections, and kept only where question and answer both pass.
        asked = [q for q in questions_of([t for _, t in texts], cfg.rehearse_samples) if ok(q)]
        prompts = [render(q) for q in asked]
        answered = [(p, writer.complete(p, RECALL_TOKENS, ["\n"])) for p in prompts]
        texts += [(p, t) for p, t in answered if t.strip() and ok(t)]
        report.examples["rehearsal_questions"] = len(asked)
    memories = replay_examples(texts, learner.tokenizer, cfg.max_seq_len)
    report.examples["rehearsal"] = len(memories)
    if not memories:
        return []
    return [KLReplay(memories, cfg.rehearse_weight, cfg.kl_per_step, "rehearsal", top_k=cfg.kl_top_k)]


def _ewc(
    model: "PreTrainedModel",
    samples: Sequence["Example"],
    gen: "Generation",
    vault: "Vault",
    args: "TrainArgs",
    cfg: "SleepConfig",
) -> "LossTerm":
    """EWC against the generation's Fisher, estimated once per generation and sealed in the vault."""
    from sleep.ewc import EWCPenalty, covers, estimate_fisher, load_sealed, seal

    sha = gen.manifest.get("sha256") or gen.name
    fisher = load_sealed(vault, sha)
    if fisher is None or not covers(fisher, model, args.lora_targets):
        fisher = estimate_fisher(model, samples, args.lora_targets)
        seal(vault, sha, fisher)
    return EWCPenalty(fisher, cfg.ewc_weight)


def train(
    model: "PreTrainedModel",
    examples: list["Example"],
    extra_losses: Sequence["LossTerm"],
    args: "TrainArgs",
    *,
    stop: Callable[[], bool],
    resume: "TrainState | None",
    report: SleepReport,
    progress: SleepProgress,
) -> "TrainResult":
    """LoRA on the examples plus the extra loss terms, from `resume` when given; the report
    follows every step (tokens, loss terms) and `progress` shows it."""
    from sleep.train import StepInfo, train_lora

    if not examples:
        from assistant.errors import SleepError

        raise SleepError("no episode had a reply to learn from; nothing to consolidate")
    if resume is not None:
        report.resumed_from_step = resume.step

    def on_step(info: StepInfo) -> None:
        report.train_tokens += info.tokens
        report.ce.append(round(info.ce, 5))
        for name, value in info.extras.items():
            report.loss_terms.setdefault(name, []).append(round(value, 5))
        progress.step(info.step, info.steps, info.loss)

    result = train_lora(
        model, examples, args, on_step=on_step, should_stop=stop, resume=resume, extra_losses=extra_losses
    )
    report.steps, report.device = result.steps, result.device
    report.losses = [round(x, 5) for x in result.losses]
    return result


def restore(model: "PreTrainedModel", state: "TrainState", args: "TrainArgs", report: SleepReport) -> "TrainResult":
    """The adapter of a paused night's finished training, back on `model` (nothing trains)."""
    from sleep.train import restore_lora

    report.resumed_from_step = state.step
    result = restore_lora(model, state, args)
    report.steps, report.device = result.steps, result.device
    report.losses = [round(x, 5) for x in result.losses]
    return result


def merge(
    model: "PeftModel", gen: "Generation", vault: "Vault", cfg: "SleepConfig"
) -> tuple[Mapping[str, "torch.Tensor"], "Master | None"]:
    """The new weights (W' = W + scale·B·A) of every tensor the adapter touched, and the weight
    master they come from. With `sleep.weight_master` they are merged into the sealed F16
    master, so quantization error never compounds (sleep.weights); the caller keeps it only if
    the candidate is promoted (`sleep.cycle.promote`). Without, into the served weights."""
    if cfg.weight_master:
        from sleep.weights import load_master, merge_night

        master = merge_night(load_master(vault, gen.manifest.get("sha256")), model)
        return master.replacements(), master
    from sleep.merge import merged_weights

    return merged_weights(model), None


def write_back(src: Path, replacements: Mapping[str, "torch.Tensor"], dst: Path) -> list[str]:
    """Write `src` with `replacements` under its own tensor names to `dst`; returns the names of
    the tensors written. Call it once nothing holds the torch copy of the model: the memory it
    freed goes back to the OS first, before the write-back and llama.cpp's loads."""
    from models.writeback import write_merged_gguf
    from sleep.memory import settle

    settle()
    return write_merged_gguf(src, replacements, dst)


def quantize(merged: Path, dst: Path, touched: list[str], gen: "Generation", cfg: "SleepConfig") -> Path:
    """`merged` quantized to the serving generation's file type (`sleep.file_type`) into `dst`,
    except that the `touched` tensors stay at `sleep.touched_type`: 4-bit rounding would erase
    most of what one night learns. `merged` is removed."""
    from models.quantize import keep_touched_at, requantize

    ftype = file_type(cfg.file_type, gen.manifest.get("file_type"))
    requantize(merged, dst, ftype, overrides=keep_touched_at(cfg.touched_type, ftype, touched))
    merged.unlink(missing_ok=True)
    return dst


def gate(
    candidate: Path, gen: "Generation", heldout: list["Probe"], cfg: "SleepConfig", system_prompt: str, cache_dir: Path
) -> list[GateResult]:
    """The candidate's gates: health always; with `sleep.gates = "full"` and a healthy candidate,
    also recall of `heldout` and retention against `gen` (its figures cached in `cache_dir`)."""
    from sleep.gate import health_gate, quality_gates

    results = health_gate(candidate, system_prompt)
    if cfg.gates == "health" or not all(r.passed for r in results):
        return results
    return results + quality_gates(
        candidate, gen.gguf, gen.manifest.get("sha256") or gen.name, heldout, cfg, system_prompt, cache_dir
    )


def steps_for(cfg: "SleepConfig", n_examples: int, batch_size: int) -> int:
    """`cfg.steps`, raised to `cfg.min_epochs` passes over the examples (capped at
    `cfg.max_steps`) when augmentations or dreams multiply a night's examples."""
    if not (cfg.augment or cfg.dreams):
        return int(cfg.steps)
    wanted = math.ceil(cfg.min_epochs * n_examples / max(1, batch_size))
    return max(cfg.steps, min(cfg.max_steps, wanted))


def file_type(name: str, source: int | None) -> int | None:
    """The llama.cpp file type to quantize the candidate to: `source` keeps the serving one."""
    if name.lower() == "source":
        return source
    import llama_cpp  # deferred: the native library loads only when a night quantizes

    value = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name.upper()}", None)
    if value is None:
        from assistant.errors import ConfigError

        raise ConfigError(f"sleep.file_type '{name}' is not a llama.cpp quantization type; use e.g. Q8_0 or source")
    return int(value)


def _is_question(text: str) -> bool:
    """A question asks for the reply; a statement tells a fact (learned through its dreams)."""
    t = text.strip().lower()
    return t.endswith("?") or t.split(" ", 1)[0] in {
        "what",
        "how",
        "why",
        "who",
        "where",
        "when",
        "which",
        "can",
        "could",
        "should",
        "would",
        "is",
        "are",
        "do",
        "does",
    }
