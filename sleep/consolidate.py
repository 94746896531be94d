"""What one night learns and how: the data and model work behind the cycle's steps.

`Plan` holds the night's state (the torch copy of the model, the tokenizer, the examples) so
that `sleep.cycle.run_cycle` can stay a plain list of steps. Each method is one step; heavy
imports (torch, transformers, peft) happen here, only when a night has work to do.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from sleep.progress import SleepProgress
from sleep.report import GateResult, SleepReport

if TYPE_CHECKING:
    from assistant.app import Nightcap
    from assistant.episode import Episode
    from models.store import Generation
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

    # 3 load ----------------------------------------------------------------------------------
    def load(self) -> None:
        from models.bridge import load_torch_model
        from models.runtime import template_of
        from models.tokenizer import Tokenizer

        self.tokenizer = Tokenizer.from_gguf(self.gen.gguf)
        self.template = template_of(self.tokenizer._llama)
        self.loaded = load_torch_model(self.gen.gguf)
        self.model = self.loaded.model

    # 2 weigh ---------------------------------------------------------------------------------
    def weigh(self) -> None:
        """Importance comes from the flags set at log time (remember, correction, feedback)."""
        self.weights = {ep.id: ep.importance for ep in self.episodes}

    # 4 dream ---------------------------------------------------------------------------------
    def dream(self) -> None:
        from sleep.dataset import build_examples

        self.examples = build_examples(self.episodes, self.template, self.tokenizer,
                                       self.system_prompt, self.cfg.max_seq_len)
        self.report.examples["episode"] = len(self.examples)

    # replay ----------------------------------------------------------------------------------
    def replay(self) -> None:
        pass

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
        from sleep.merge import merged_weights

        write_merged_gguf(self.gen.gguf, merged_weights(result.model), dst)
        # The fp32 copy is no longer needed: free it before llama.cpp loads the candidate.
        self.model = self.loaded = result.model = None
        gc.collect()
        return dst

    # 7 quantize ------------------------------------------------------------------------------
    def quantize(self, merged: Path, dst: Path) -> Path:
        from models.quantize import requantize

        requantize(merged, dst, self.gen.manifest.get("file_type"))
        merged.unlink(missing_ok=True)
        return dst

    # 8 gate ----------------------------------------------------------------------------------
    def gate(self, candidate: Path) -> list[GateResult]:
        from sleep.gate import health_gate

        return health_gate(candidate, self.system_prompt)
