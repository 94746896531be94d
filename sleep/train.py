"""LoRA training of the sleep cycle: peft adapters, AdamW, seeded, pausable between steps.

`train_lora` wraps a transformers causal LM with a peft LoRA adapter and runs `args.steps`
optimizer steps on the examples, with the loss from `sleep.loss` (logits only where there are
labels) plus any extra `LossTerm`s. Between steps it polls `should_stop()`; when asked to stop
it returns early with a `TrainState`, and `train_lora(..., resume=state)` later finishes with
exactly the adapter an uninterrupted run would have produced: batch order is a pure function of
(seed, step), and the state carries adapter, optimizer and RNG states.

A state is returned as bytes (`TrainState.to_bytes`) and never written to disk here: it is
derived from the user's conversations, so the caller encrypts it before it goes anywhere.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch

from assistant.config import SleepConfig
from assistant.errors import ConfigError, SleepError
from sleep.dataset import Example, collate, micro_batches
from sleep.device import autocast, autocast_dtype, lora_input_casts_off, pick_device
from sleep.loss import LossTerm, lm_parts, store_vocab_in, weighted_ce
from sleep.memory import release_freed_memory

STATE_VERSION = 1


@dataclass
class TrainArgs:
    """Settings of one training run; `from_config` fills them from config.toml's [sleep]. The
    defaults shared with `SleepConfig` are read from it, so they cannot drift apart."""

    device: str = SleepConfig.device
    """auto (cuda, then mps, then cpu), cuda, mps or cpu."""
    lora_r: int = SleepConfig.lora_r
    """LoRA rank."""
    lora_alpha: int = SleepConfig.lora_alpha
    """LoRA alpha; the update is scaled by alpha / r."""
    lora_targets: list[str] = field(default_factory=lambda: list(SleepConfig().lora_targets))
    """Names of the linear layers that get an adapter."""
    learning_rate: float = SleepConfig.learning_rate
    """AdamW learning rate (the peak, under a schedule)."""
    lr_schedule: str = SleepConfig.lr_schedule
    """constant, or cosine: from the peak down to a tenth of it at the last step."""
    weight_decay: float = 0.0
    """AdamW weight decay on the adapter."""
    max_grad_norm: float = 1.0
    """Clip the gradient norm to this; 0 turns clipping off."""
    steps: int = SleepConfig.steps
    """Optimizer steps in total (a resumed run counts the earlier ones)."""
    batch_size: int = SleepConfig.batch_size
    """Examples per step (fewer when there are fewer examples)."""
    max_batch_tokens: int = SleepConfig.max_batch_tokens
    """Padded tokens per forward pass; a larger batch runs in pieces whose gradients add up (bounds
    activation memory: about 2 MB per token for the default model)."""
    seed: int = SleepConfig.seed
    """Seeds adapter init, batch order and torch/python RNGs."""
    threads: int = SleepConfig.threads
    """torch CPU threads; 0 keeps torch's default."""
    precision: str = SleepConfig.precision
    """Matmul precision: auto (bf16 where the hardware has it natively, else fp32), fp32 or bf16."""

    @classmethod
    def from_config(cls, cfg: SleepConfig) -> "TrainArgs":
        return cls(
            device=cfg.device,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_targets=list(cfg.lora_targets),
            learning_rate=cfg.learning_rate,
            lr_schedule=cfg.lr_schedule,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            max_batch_tokens=cfg.max_batch_tokens,
            seed=cfg.seed,
            threads=cfg.threads,
            precision=cfg.precision,
        )


@dataclass
class StepInfo:
    """Progress after one optimizer step (for progress bars and the sleep report)."""

    step: int
    """Steps done so far, 1-based (counts steps done before a resume)."""
    steps: int
    """Steps in the whole run."""
    loss: float
    """Total loss of this step: weighted cross-entropy plus extra terms."""
    ce: float
    """The weighted cross-entropy alone."""
    extras: dict[str, float]
    """Value of each extra loss term, by name."""
    tokens: int
    """Real (non-padding) tokens processed in this step."""
    labelled: int
    """Tokens that carried cross-entropy loss."""
    seconds: float
    """Wall time of this step."""


@dataclass
class TrainState:
    """Everything needed to continue a run exactly: adapter, optimizer, RNGs, step."""

    step: int
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    fingerprint: str
    """Hash of the settings and data the run depends on; resuming with others is refused."""
    losses: list[float] = field(default_factory=list)
    gathered: dict[str, int] = field(default_factory=dict)
    """The epochs the night read and how many records of each (set by the cycle): a resumed
    night reads exactly those again, so what was said after the pause cannot void the work."""
    night: str = ""
    """Set by the cycle once training finished: the hash of what the night gathered and the
    settings it ran under (`sleep.cycle.night_fingerprint`), known before anything is dreamt. A
    resumed night with the same one skips weigh, dream, replay and train."""
    heldout: list[dict[str, Any]] = field(default_factory=list)
    """The recall gate's held-out probes of that night (set by the cycle with `night`)."""

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save({"version": STATE_VERSION, **asdict(self)}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrainState":
        try:
            raw = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises several types for a damaged pickle
            raise SleepError("the saved training checkpoint is unreadable; start the night's training over") from err
        if raw.pop("version", None) != STATE_VERSION:
            raise SleepError("the saved training checkpoint is from another Nightcap version; start the training over")
        return cls(**raw)


@dataclass
class TrainResult:
    """What a training run produced. `model` is the peft model holding the adapter."""

    model: Any
    state: TrainState
    losses: list[float]
    """Loss of every step so far (including steps before a resume)."""
    steps: int
    """Steps completed in total."""
    tokens: int
    """Real tokens processed by this call."""
    seconds: float
    """Wall time of this call's training steps."""
    interrupted: bool
    """True when `should_stop` ended the run before `args.steps`; resume from `state`."""
    device: str
    precision: str = "fp32"
    """"fp32", or "bf16" when matmuls ran under bf16 autocast."""


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of step `step`: each epoch is a seeded shuffle split into near-equal
    batches, so the order depends only on (n, batch_size, seed, step)."""
    per_epoch = -(-n // max(1, min(batch_size, n)))
    epoch, k = divmod(step, per_epoch)
    order = list(range(n))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order[k * n // per_epoch : (k + 1) * n // per_epoch]


def learning_rate(args: TrainArgs, step: int) -> float:
    """The learning rate of 0-based `step`: a pure function of the step (and the run's
    `args.steps`), so a resumed run follows the schedule of an uninterrupted one."""
    if args.lr_schedule == "constant":
        return args.learning_rate
    if args.lr_schedule != "cosine":
        raise ConfigError(
            f'sleep.lr_schedule must be "constant" or "cosine", not {args.lr_schedule!r}; fix config.toml'
        )
    floor = 0.1 * args.learning_rate
    progress = step / max(1, args.steps - 1)
    return floor + (args.learning_rate - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def fingerprint(args: TrainArgs, examples: Sequence[Example]) -> str:
    """Hash of what a resumed run must share with the run it continues."""
    h = hashlib.sha256()
    keep = {k: v for k, v in asdict(args).items() if k not in ("device", "steps", "threads")}
    h.update(json.dumps(keep, sort_keys=True).encode())
    for e in examples:
        h.update(
            json.dumps([e.input_ids, e.labels, e.weight, e.lead, e.lead_weight, e.rivals, e.rival_weight]).encode()
        )
    return h.hexdigest()


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def slim_for_training(model: Any, args: TrainArgs) -> None:
    """Before a bf16 night: keep the frozen vocabulary matrices in bf16 (`sleep.loss.store_vocab_in`);
    about 670 MB less for the default model. An fp32 night keeps everything in fp32."""
    amp = autocast_dtype(args.precision, pick_device(args.device))
    if amp is not None:
        store_vocab_in(model, amp)


def attach_lora(model: Any, args: TrainArgs) -> Any:
    """Wrap `model` (in place) with a fresh, seeded LoRA adapter; returns the peft model."""
    from peft import LoraConfig, get_peft_model  # deferred: heavy, and only sleep needs it

    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        target_modules=list(args.lora_targets),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(args.seed)  # LoRA A is randomly initialised
    try:
        with warnings.catch_warnings():
            # peft asks transformers 5 a deprecated question; the answer is right, the noise is not.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, config)
    except ValueError as err:
        raise SleepError(f"sleep.lora_targets match no layer of this model ({err}); fix them in config.toml") from err


class _Abandoned(Exception):
    """A training step was given up part-way because the night was asked to stop."""


def _step(
    model: Any,
    parts: Any,
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    examples: Sequence[Example],
    args: TrainArgs,
    step: int,
    device: torch.device,
    amp: torch.dtype | None,
    extra_losses: Sequence[LossTerm],
    should_stop: Callable[[], bool] | None = None,
) -> StepInfo:
    """One optimizer step (0-based `step`); returns its StepInfo (1-based step number). Raises
    `_Abandoned` when `should_stop` says so between its micro-batches and loss terms, before the
    optimizer has changed anything: a step on a big model takes long, and a stop waits for none
    of it."""

    def poll() -> None:
        if should_stop is not None and should_stop():
            raise _Abandoned

    t0 = time.perf_counter()
    chosen = [examples[i] for i in batch_indices(len(examples), args.batch_size, args.seed, step)]
    optimizer.zero_grad(set_to_none=True)
    ce, n_tokens, n_labels = 0.0, 0, 0
    for piece in micro_batches(chosen, args.max_batch_tokens):
        poll()
        if not any(e.weight for e in piece):
            continue  # weighs nothing (a forget with its lessons weighted 0): no pass to run
        batch = collate(piece).to(device)
        with autocast(device, amp):
            # weighted_ce averages over the piece; rescale so the pieces sum to the batch mean
            part = weighted_ce(parts, batch) * (len(piece) / len(chosen))
        part.backward()  # frees this piece's activations before the next piece runs
        ce += float(part.detach())
        n_tokens, n_labels = n_tokens + batch.n_tokens, n_labels + batch.n_labels
    extras: dict[str, float] = {}
    for term in extra_losses:
        poll()
        with autocast(device, amp):
            value = term(model, step)
        value.backward()  # each term's graph is freed before the next one is built
        extras[term.name] = float(value.detach())
    poll()
    if args.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(args, step)
    optimizer.step()
    loss = ce + sum(extras.values())
    return StepInfo(step + 1, args.steps, loss, ce, extras, n_tokens, n_labels, time.perf_counter() - t0)


def _put_adapter(named: list[tuple[str, torch.Tensor]], adapter: dict[str, torch.Tensor], device: torch.device) -> None:
    """Copy a saved adapter into the live one's parameters (by name)."""
    with torch.no_grad():
        for name, p in named:
            p.copy_(adapter[name].to(device))


def restore_lora(model: Any, state: TrainState, args: TrainArgs) -> TrainResult:
    """`model` wrapped by peft with the adapter of a finished `state` (nothing trains): what
    `train_lora` returned when it finished that state."""
    device = pick_device(args.device)
    peft_model = attach_lora(model, args).to(device)
    _put_adapter([(n, p) for n, p in peft_model.named_parameters() if p.requires_grad], state.adapter, device)
    peft_model.eval()
    amp = autocast_dtype(args.precision, device)
    return TrainResult(
        peft_model, state, list(state.losses), state.step, 0, 0.0, False, str(device), "bf16" if amp else "fp32"
    )


def train_lora(
    model: Any,
    examples: Sequence[Example],
    args: TrainArgs,
    *,
    on_step: Callable[[StepInfo], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: TrainState | None = None,
    extra_losses: Sequence[LossTerm] = (),
) -> TrainResult:
    """Train a LoRA adapter on `model` (a transformers causal LM, wrapped in place by peft;
    `result.model.unload()` gives the plain model back). Raises SleepError."""
    if not examples:
        raise ValueError("train_lora needs at least one example")
    device = pick_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    amp = autocast_dtype(args.precision, device)
    fp = fingerprint(args, examples)
    if resume is not None and resume.fingerprint != fp:
        raise SleepError("the saved training checkpoint belongs to other data or settings; start the training over")

    random.seed(args.seed)
    peft_model = attach_lora(model, args).to(device)
    named = [(n, p) for n, p in peft_model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay)
    step, losses = 0, []
    if resume is not None:
        _put_adapter(named, resume.adapter, device)
        optimizer.load_state_dict(copy.deepcopy(resume.optimizer))
        _set_rng_state(resume.rng, device)
        step, losses = resume.step, list(resume.losses)

    parts = lm_parts(peft_model)
    peft_model.train()
    tokens, seconds, interrupted = 0, 0.0, False
    with lora_input_casts_off(peft_model, amp is not None):
        while step < args.steps:
            if should_stop is not None and should_stop():
                interrupted = True
                break
            rng = _rng_state(device)
            try:
                info = _step(
                    peft_model, parts, optimizer, params, examples, args, step, device, amp, extra_losses, should_stop
                )
            except _Abandoned:
                # Nothing was applied: the state is that of the last finished step, as if the stop
                # had come before this one (random state included, so a resume matches).
                optimizer.zero_grad(set_to_none=True)
                _set_rng_state(rng, device)
                interrupted = True
                break
            step += 1
            losses.append(info.loss)
            tokens, seconds = tokens + info.tokens, seconds + info.seconds
            if device.type == "cpu":
                release_freed_memory()  # keeps the resident set from climbing step after step
            if on_step is not None:
                on_step(info)
    peft_model.eval()

    state = TrainState(
        step=step,
        adapter={n: p.detach().to("cpu", copy=True) for n, p in named},
        optimizer=copy.deepcopy(optimizer.state_dict()),  # detached from the live optimizer
        rng=_rng_state(device),
        fingerprint=fp,
        losses=list(losses),
    )
    return TrainResult(
        peft_model, state, losses, step, tokens, seconds, interrupted, str(device), "bf16" if amp else "fp32"
    )
