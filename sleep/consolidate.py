"""What one night learns and how: the data and model work behind the cycle's steps.

`Plan` holds the night's state (the torch copy of the model, the tokenizer, the examples) so
that `sleep.cycle.run_cycle` can stay a plain list of steps. Each method is one step; heavy
imports (torch, transformers, peft) happen here, only when a night has work to do.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from assistant.episode import with_system
from sleep.progress import SleepProgress
from sleep.report import GateResult, SleepReport

if TYPE_CHECKING:
    from assistant.app import Nightcap
    from assistant.episode import Episode
    from models.bridge import LoadedModel
    from models.store import Generation
    from sleep.probes import Probe
    from sleep.train import TrainResult, TrainState


class Plan:
    """One night's consolidation of `episodes` into generation `gen`."""

    def __init__(self, app: "Nightcap", gen: "Generation", episodes: list["Episode"],
                 report: SleepReport, progress: SleepProgress) -> None:
        from sleep.train import TrainArgs

        self.app, self.gen, self.episodes = app, gen, episodes
        self.report, self.progress = report, progress
        self.cfg = app.config.sleep
        self.system_prompt = app.config.chat.system_prompt
        self.args = TrainArgs.from_config(self.cfg)
        self.model: Any = None
        self.examples: list[Any] = []
        self.extra_losses: list[Any] = []
        self.weights: dict[str, float] = {}
        self.heldout: list["Probe"] = []
        self.loaded: "LoadedModel | None" = None
        self._writer: Any = None
        self.master: Any = None
        self.touched: list[str] = []
        self._check_settings()

    def _check_settings(self) -> None:
        """Settings only the night's last steps read, checked before it spends time training."""
        from models.quantize import touched_ggml_type
        from sleep.train import learning_rate

        if self.cfg.gates not in ("full", "health"):
            from assistant.errors import ConfigError

            raise ConfigError(f"sleep.gates must be \"full\" or \"health\", not {self.cfg.gates!r}; fix config.toml")
        file_type(self.cfg.file_type, self.gen.manifest.get("file_type"))
        touched_ggml_type(self.cfg.touched_type)
        learning_rate(self.args, 0)

    # 2 load ----------------------------------------------------------------------------------
    def load(self) -> None:
        from models.bridge import load_torch_model
        from models.runtime import template_of
        from models.tokenizer import Tokenizer
        from sleep.train import slim_for_training

        self.tokenizer = Tokenizer.from_gguf(self.gen.gguf)
        self.template = template_of(self.tokenizer._llama)
        loaded = self.loaded = load_torch_model(self.gen.gguf)
        self.model = loaded.model
        slim_for_training(self.model, self.args)

    def writer(self) -> Any:
        """The pre-sleep model in llama.cpp, for dreams and replay samples (opened on first use)."""
        if self._writer is None:
            from models.runtime import load_llama

            self._writer = load_llama(self.gen.gguf, n_ctx=1024, seed=self.cfg.seed)
        return self._writer

    def complete(self, prompt: str, max_tokens: int = 96, stop: list[str] | None = None,
                 sample_seed: int | None = None) -> str:
        """Greedy completion by the pre-sleep model; with `sample_seed`, a sampled one instead,
        reproducible from the night's seed and `sample_seed`."""
        sampling: dict[str, float] = {"temperature": 0.0} if sample_seed is None else {
            "temperature": 0.8, "top_p": 0.95, "seed": self.cfg.seed * 1000 + sample_seed}
        from assistant.stoppoints import stop_point

        pieces = []
        # Streamed, with a stop point after every token: a night yields mid-completion.
        for chunk in self.writer().create_completion(prompt, max_tokens=max_tokens, repeat_penalty=1.1,
                                                     stop=stop or [], stream=True, **sampling):
            stop_point()
            pieces.append(str(chunk["choices"][0]["text"]))
        return "".join(pieces)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # 3 weigh ---------------------------------------------------------------------------------
    def weigh(self) -> None:
        """Importance from the flags set at log time (remember, correction, feedback), scaled by
        surprise under the pre-sleep model when `sleep.surprise` is on."""
        from sleep.surprise import user_nll, weigh

        nll = user_nll(self.model, self.episodes, self.tokenizer) if self.cfg.surprise else {}
        self.importance = weigh(self.episodes, nll, self.cfg.correction_boost)
        self.weights = self.importance.weights

    # 4 dream ---------------------------------------------------------------------------------
    def dream(self) -> None:
        """Examples of the night: each episode as logged, except that a stated fact (not a
        question) is learned through its augmentations and verified dreams instead of the
        reply the model happened to give; held-out probes are kept for the recall gate."""
        import dataclasses

        from sleep.dataset import KIND_DREAM, KIND_EPISODE, build_examples, example_from_messages
        from sleep.dreams import dream
        from sleep.probes import Probe
        from sleep.secrets import holds_secret

        writer = (lambda prompt: self.complete(prompt, 96, ["\n\n", "Statement:"])) if self.cfg.dreams else None
        dreams = dream(self.episodes, writer, augmentations=self.cfg.augment)
        self.heldout = []
        counts = {KIND_EPISODE: 0, KIND_DREAM: 0, "augment": 0, "secret_episodes": 0}
        examples = []
        for ep in self.episodes:
            weight = self.weights.get(ep.id, ep.importance)
            mine = dreams.dreams.get(ep.id, [])
            trained = [d for d in mine if not d.heldout]
            self.heldout += [Probe(d.question, d.answer) for d in mine if d.heldout]
            if holds_secret(ep):
                # Secrets never become training text (sleep.secrets): the exchange itself is not
                # trained on; its dreams were made from its other sentences only.
                counts["secret_episodes"] += 1
            elif not trained or _is_question(ep.user_text) or ep.correction is not None:
                for ex in build_examples([dataclasses.replace(ep, importance=weight)], self.template, self.tokenizer,
                                         self.system_prompt, self.cfg.max_seq_len):
                    examples.append(ex)
                    counts[KIND_EPISODE] += 1
            for d in trained:
                messages = with_system(self.system_prompt, [{"role": "user", "content": d.question},
                                                            {"role": "assistant", "content": d.answer}])
                learned = example_from_messages(
                    messages, self.template, self.tokenizer, max_seq_len=self.cfg.max_seq_len,
                    weight=weight * self.cfg.dream_weight, kind=KIND_DREAM, source=ep.id, lead=d.lead,
                    lead_weight=self.cfg.lead_weight)
                if learned is not None:
                    examples.append(learned)
                    counts["augment" if d.kind == "augment" else KIND_DREAM] += 1
        self.examples = examples
        # Settled here, before the cycle fingerprints the night for its checkpoint.
        self.args.steps = steps_for(self.cfg, len(self.examples), self.args.batch_size)
        self.report.examples.update(counts)
        self.report.examples.update({"heldout_probes": len(self.heldout), "dreams_written": dreams.written,
                                     "dreams_accepted": dreams.accepted, "ambiguous_dropped": dreams.ambiguous})
        for reason, n in dreams.rejected.items():
            self.report.examples[f"dreams_rejected_{reason}"] = n

    # replay ----------------------------------------------------------------------------------
    def replay(self, keep_rehearsal: Callable[[str], bool] | None = None) -> None:
        """Foundational replay (KL to the frozen model on self-written samples) and EWC.
        `keep_rehearsal` filters the rehearsed replies (a forget leaves out those that hold
        what it forgets)."""
        from sleep.replay import KLReplay, rehearsal_texts, replay_examples, replay_texts, sample_count

        try:
            if not (self.cfg.replay or self.cfg.ewc):
                return
            n = sample_count(len(self.episodes), self.cfg.replay_samples)
            render = lambda q: self.template.render(  # noqa: E731 - a one-line adapter
                with_system(self.system_prompt, [{"role": "user", "content": q}]), add_generation_prompt=True)
            pairs = replay_texts(lambda p, k: self.complete(p, k), render if self.cfg.replay_chat else None, n,
                                 self.cfg.replay_tokens, self.cfg.replay_corpus)
            samples = replay_examples(pairs, self.tokenizer, self.cfg.max_seq_len)
            self.report.examples["replay"] = len(samples)
            if self.cfg.replay and samples:
                self.extra_losses.append(KLReplay(samples, self.cfg.kl_weight, self.cfg.kl_per_step,
                                                   top_k=self.cfg.kl_top_k))
            if self.cfg.ewc and samples:
                self.extra_losses.append(self._ewc(samples))
            if self.cfg.rehearse and self.gen.manifest.get("source") in ("sleep", "forget"):
                # Only a slept model has memories of its user to rehearse.
                sample = lambda p, k, i: self.complete(p, k, sample_seed=i)  # noqa: E731 - a one-line adapter
                texts = rehearsal_texts(sample, render, self.cfg.rehearse_samples, self.cfg.rehearse_tokens)
                texts = [(p, t) for p, t in texts if keep_rehearsal is None or keep_rehearsal(t)]
                memories = replay_examples(texts, self.tokenizer, self.cfg.max_seq_len)
                self.report.examples["rehearsal"] = len(memories)
                if memories:
                    self.extra_losses.append(KLReplay(memories, self.cfg.kl_weight, self.cfg.kl_per_step, "rehearsal",
                                                       top_k=self.cfg.kl_top_k))
        finally:
            self.close_writer()

    def _ewc(self, samples: list[Any]) -> Any:
        from sleep.ewc import EWCPenalty, estimate_fisher, load_sealed, seal

        sha = self.gen.manifest.get("sha256") or self.gen.name
        fisher = load_sealed(self.app.vault(), sha)
        if fisher is None:
            fisher = estimate_fisher(self.model, samples, self.args.lora_targets)
            seal(self.app.vault(), sha, fisher)
        return EWCPenalty(fisher, self.cfg.ewc_weight)

    def fingerprint(self) -> str:
        from sleep.train import fingerprint

        return fingerprint(self.args, self.examples)

    # 5 train ---------------------------------------------------------------------------------
    def train(self, stop: Callable[[], bool], resume: "TrainState | None") -> "TrainResult":
        from sleep.train import StepInfo, train_lora

        if not self.examples:
            from assistant.errors import SleepError

            raise SleepError("no episode had a reply to learn from; nothing to consolidate")
        if resume is not None:
            self.report.resumed_from_step = resume.step

        def on_step(info: StepInfo) -> None:
            self.report.train_tokens += info.tokens
            for name, value in info.extras.items():
                self.report.loss_terms.setdefault(name, []).append(round(value, 5))
            self.progress.step(info.step, info.steps, info.loss)

        result = train_lora(self.model, self.examples, self.args, on_step=on_step, should_stop=stop,
                            resume=resume, extra_losses=self.extra_losses)
        self.report.steps, self.report.device = result.steps, result.device
        self.report.losses = [round(x, 5) for x in result.losses]
        return result

    # 6 merge ---------------------------------------------------------------------------------
    def merge(self, result: "TrainResult", dst: Path) -> Path:
        from models.writeback import write_merged_gguf

        if self.cfg.weight_master:
            # Into the sealed F16 master, so quantization error never compounds (sleep.weights);
            # it is kept only if the candidate is promoted (`sleep.cycle`).
            from sleep.weights import load_master, merge_night

            self.master = merge_night(load_master(self.app.vault(), self.gen.manifest.get("sha256")), result.model)
            replacements = self.master.replacements()
        else:
            from sleep.merge import merged_weights

            replacements = merged_weights(result.model)
        # The torch copy is no longer needed: free it (the loss terms hold references to its
        # layers too) before the write-back and llama.cpp's loads.
        self.model = self.loaded = result.model = None
        self.extra_losses = []
        gc.collect()
        release_freed_memory()
        self.touched = write_merged_gguf(self.gen.gguf, replacements, dst)
        return dst

    # 7 quantize ------------------------------------------------------------------------------
    def quantize(self, merged: Path, dst: Path) -> Path:
        from models.quantize import keep_touched_at, requantize

        ftype = file_type(self.cfg.file_type, self.gen.manifest.get("file_type"))
        requantize(merged, dst, ftype, overrides=keep_touched_at(self.cfg.touched_type, ftype, self.touched))
        merged.unlink(missing_ok=True)
        return dst

    # 8 gate ----------------------------------------------------------------------------------
    def gate(self, candidate: Path) -> list[GateResult]:
        from sleep.gate import health_gate, quality_gates

        results = health_gate(candidate, self.system_prompt)
        if self.cfg.gates == "health" or not all(r.passed for r in results):
            return results
        return results + quality_gates(candidate, self.gen.gguf, self.gen.manifest.get("sha256") or self.gen.name,
                                       self.heldout, self.cfg, self.system_prompt, self.app.home.root / "cache")


def steps_for(cfg: Any, n_examples: int, batch_size: int) -> int:
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


def release_freed_memory() -> None:
    """Hand memory that Python and torch freed back to the OS (glibc keeps small freed blocks
    for reuse; without this the process stays as large as the training was)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:  # not glibc: nothing to trim
        pass


def _is_question(text: str) -> bool:
    """A question asks for the reply; a statement tells a fact (learned through its dreams)."""
    t = text.strip().lower()
    return t.endswith("?") or t.split(" ", 1)[0] in {"what", "how", "why", "who", "where", "when", "which", "can",
                                                        "could", "should", "would", "is", "are", "do", "does"}
