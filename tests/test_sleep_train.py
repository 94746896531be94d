"""LoRA training on tiny random models: loss math, learning, pause/resume, extra terms."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import pytest
import torch
from tiny_lm import ByteTokenizer, devices, tiny_model

import sleep.loss as loss_mod
from assistant.config import SleepConfig
from assistant.errors import ConfigError, SleepError
from models.templates import template_for
from sleep.dataset import IGNORE, Example, build_examples, collate, example_from_messages
from sleep.loss import full_logits_ce, lm_parts, weighted_ce
import sleep.device as device_mod
from sleep.train import (
    StepInfo,
    TrainArgs,
    TrainState,
    autocast_dtype,
    batch_indices,
    learning_rate,
    pick_device,
    restore_lora,
    train_lora,
)

FACTS = [
    ("What is my cat called?", "Your cat is called Miso."),
    ("Where do I work?", "You work at the lighthouse."),
    ("What is my favourite colour?", "Teal."),
    ("When is my birthday?", "On the 3rd of May."),
    ("Who is my sister?", "Your sister is Ada."),
]


def _examples(weights: tuple[float, ...] = (1.0, 2.0, 0.5, 1.0, 3.0)) -> list[Example]:
    tok, template = ByteTokenizer(), template_for("gemma3")
    out = []
    for (q, a), w in zip(FACTS, weights):
        msgs = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ]
        ex = example_from_messages(msgs, template, tok, max_seq_len=128, weight=w)
        assert ex is not None
        out.append(ex)
    return out


def _args(**kw: Any) -> TrainArgs:
    base = TrainArgs(
        device="cpu", precision="fp32", lora_r=4, lora_alpha=8, learning_rate=1e-2, steps=6, batch_size=2, seed=3
    )
    return dataclasses.replace(base, **kw)


def _adapter(result: Any) -> dict[str, torch.Tensor]:
    return result.state.adapter


@pytest.mark.parametrize("arch,softcap", [("llama", None), ("gemma3", None), ("gemma3", 5.0)])
def test_head_only_at_labels_equals_full_logits(arch: str, softcap: float | None) -> None:
    model = tiny_model(arch, softcap=softcap)
    batch = collate(_examples())
    fast = weighted_ce(lm_parts(model), batch)
    slow = full_logits_ce(model, batch)
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    # The weights matter: equal weights give a different value.
    batch.weights = torch.ones_like(batch.weights)
    assert not torch.allclose(weighted_ce(lm_parts(model), batch), fast)


def test_lead_tokens_weigh_more_within_their_example() -> None:
    model = tiny_model("gemma3")
    examples = _examples()
    plain = weighted_ce(lm_parts(model), collate(examples))
    for ex in examples:
        ex.lead, ex.lead_weight = 3, 4.0
    batch = collate(examples)
    # Label weights: the lead weight on each example's first 3 labels, 1 on the other labels.
    for row, ex in enumerate(examples):
        at = [i for i, t in enumerate(ex.labels) if t != IGNORE]
        assert batch.label_weights[row, at[:3]].tolist() == [4.0] * 3
        assert batch.label_weights[row, at[3:]].eq(1).all() and batch.label_weights[row].sum() == len(at) + 9
    led = weighted_ce(lm_parts(model), batch)
    assert torch.allclose(led, full_logits_ce(model, batch), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(led, plain)
    # By hand: each example's mean loss with its first 3 labels counted 4 times.
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    want = torch.tensor(0.0)
    for row, ex in enumerate(examples):
        pos = [i for i, t in enumerate(ex.labels) if t != IGNORE]
        nll = [-torch.log_softmax(logits[row, i - 1].float(), -1)[ex.labels[i]] for i in pos]
        w = [4.0] * 3 + [1.0] * (len(pos) - 3)
        want += ex.weight * sum(a * b for a, b in zip(w, nll)) / sum(w)
    assert torch.allclose(led, want / len(examples), rtol=1e-4)


def test_chunked_head_gives_the_same_loss_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("gemma3", softcap=5.0)
    model.train()
    batch = collate(_examples())
    whole = weighted_ce(lm_parts(model), batch)
    whole.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    monkeypatch.setattr(loss_mod, "LOGIT_BUDGET", 512 * 7)  # 7 rows per chunk
    chunked = weighted_ce(lm_parts(model), batch)
    chunked.backward()
    assert torch.allclose(whole, chunked, rtol=1e-6, atol=1e-6)
    for name, g in grads.items():
        assert torch.allclose(g, dict(model.named_parameters())[name].grad, rtol=1e-4, atol=1e-6), name


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_fused_head_ce_matches_logits_and_autograd(softcap: float | None) -> None:
    from sleep.head_ce import HeadCE

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(300, 16, generator=gen)
    hidden = torch.randn(11, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 300, (11,), generator=gen)
    upstream = torch.rand(11, generator=gen)

    logits = hidden @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    (ref_grad,) = torch.autograd.grad((reference * upstream).sum(), hidden)

    fused = HeadCE.apply(hidden, weight, targets, softcap, 4)  # 3 chunks
    (grad,) = torch.autograd.grad((fused * upstream).sum(), hidden)
    assert torch.allclose(fused, reference, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_fused_head_ce_in_bf16_keeps_the_softcapped_gradient() -> None:
    """A bf16 head (a bf16 night's) keeps the soft-cap's tanh in bf16: the loss and gradient stay
    within bf16 rounding of the fp32 computation, with every row's softcap slope applied."""
    from sleep.head_ce import HeadCE

    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(300, 16, generator=gen).to(torch.bfloat16)
    hidden = torch.randn(11, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 300, (11,), generator=gen)
    softcap = 3.0  # small: most logits sit where the slope 1 - tanh^2 is far from 1

    logits = torch.tanh((hidden @ weight.float().T) / softcap) * softcap
    reference = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
    (ref_grad,) = torch.autograd.grad(reference.sum(), hidden)
    (uncapped,) = torch.autograd.grad(
        torch.nn.functional.cross_entropy(hidden @ weight.float().T, targets, reduction="none").sum(), hidden
    )

    fused = HeadCE.apply(hidden, weight, targets, softcap, 4)
    (grad,) = torch.autograd.grad(fused.sum(), hidden)
    assert torch.allclose(fused, reference, rtol=2e-2, atol=2e-2)
    assert torch.allclose(grad, ref_grad, rtol=5e-2, atol=5e-2)
    assert (grad - ref_grad).norm() < 0.05 * (uncapped - ref_grad).norm()


def test_peft_model_uses_the_fused_head_and_matches_full_logits() -> None:
    from sleep.head_ce import fusable
    from sleep.train import attach_lora

    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0), _args(lora_r=4))
    with torch.no_grad():  # a trained-looking adapter, so the loss depends on it
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    parts = lm_parts(peft_model)
    assert fusable(parts.head)
    batch = collate(_examples())
    fast = weighted_ce(parts, batch)
    fast.backward()
    fast_grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    peft_model.zero_grad()
    slow = full_logits_ce(peft_model, batch)
    slow.backward()
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(fast_grads[name], p.grad, rtol=1e-3, atol=1e-6), name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        approx = weighted_ce(parts, batch)
    assert float(approx.detach()) == pytest.approx(float(slow.detach()), rel=2e-2)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_shared_prefix_forward_matches_the_plain_batch(arch: str) -> None:
    from sleep.shared_prefix import shared_prefix_len
    from sleep.train import attach_lora

    peft_model = attach_lora(tiny_model(arch, window=256), _args(lora_r=4))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    parts = lm_parts(peft_model)
    batch = collate(_examples())
    assert parts.cache_kw is not None and shared_prefix_len(batch, parts.window) >= 10
    fast = weighted_ce(parts, batch)
    fast.backward()
    grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    peft_model.zero_grad()
    slow = full_logits_ce(peft_model, batch)
    slow.backward()
    assert torch.allclose(fast, slow, rtol=1e-5, atol=1e-6)
    for name, p in peft_model.named_parameters():
        if p.requires_grad:
            assert torch.allclose(grads[name], p.grad, rtol=1e-3, atol=1e-6), name


def test_shared_prefix_len_stops_before_labels_and_padding() -> None:
    from sleep.shared_prefix import shared_prefix_len

    a = Example([2, 5, 5, 5, 5, 5, 5, 7, 8], [IGNORE] * 8 + [8])
    b = Example([2, 5, 5, 5, 5, 5, 5, 7, 9, 9], [IGNORE] * 5 + [5, 5, 7, 9, 9])
    assert shared_prefix_len(collate([a, b]), None) == 4  # b's first label is at 5: position 4 predicts it
    assert shared_prefix_len(collate([a, b]), window=8) == 0  # sequences reach the sliding window
    assert shared_prefix_len(collate([a]), None) == 0  # nothing to share with
    c = Example([2, 5, 5], [IGNORE, IGNORE, 5])
    assert shared_prefix_len(collate([a, c]), None) == 0  # only 1 position before c's label


@pytest.mark.parametrize("device", devices())
def test_training_reduces_the_loss(device: str) -> None:
    examples = _examples()
    steps: list[StepInfo] = []
    result = train_lora(
        tiny_model("gemma3"), examples, _args(steps=30, batch_size=5, device=device), on_step=steps.append
    )
    assert [s.step for s in steps] == list(range(1, 31))
    assert result.steps == 30 and not result.interrupted and result.device == device
    assert result.losses[-1] < 0.5 * result.losses[0]
    assert result.tokens == sum(s.tokens for s in steps) == 30 * sum(len(e) for e in examples)
    assert steps[0].labelled == sum(e.n_labels for e in examples)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
@pytest.mark.parametrize("device", devices())
def test_resume_gives_the_same_adapter_as_an_uninterrupted_run(device: str, schedule: str) -> None:
    examples, args = _examples(), _args(steps=7, device=device, lr_schedule=schedule)
    whole = train_lora(tiny_model("llama"), examples, args)

    done: list[int] = []
    first = train_lora(
        tiny_model("llama"), examples, args, on_step=lambda s: done.append(s.step), should_stop=lambda: len(done) >= 3
    )
    assert first.interrupted and first.steps == 3 and len(first.losses) == 3
    saved = first.state.to_bytes()
    assert isinstance(saved, bytes)
    rest = train_lora(tiny_model("llama"), examples, args, resume=TrainState.from_bytes(saved))
    assert not rest.interrupted and rest.steps == 7
    assert _adapter(rest).keys() == _adapter(whole).keys()
    if device == "cpu":
        assert rest.losses == whole.losses
        for name, value in _adapter(whole).items():
            assert torch.equal(value, _adapter(rest)[name]), name
    else:  # CUDA's atomic reductions (index_add) differ in the last bits from run to run
        assert rest.losses == pytest.approx(whole.losses, rel=1e-5)
        for name, value in _adapter(whole).items():
            assert torch.allclose(value, _adapter(rest)[name], rtol=1e-4, atol=1e-6), name


def test_a_finished_state_restored_without_training_gives_the_trained_model() -> None:
    examples, args = _examples(), _args(steps=4)
    trained = train_lora(tiny_model("llama"), examples, args)
    restored = restore_lora(tiny_model("llama"), TrainState.from_bytes(trained.state.to_bytes()), args)
    assert restored.steps == 4 and restored.losses == trained.losses and not restored.interrupted
    ids = torch.tensor([examples[0].input_ids])
    with torch.no_grad():
        want, got = trained.model(input_ids=ids).logits, restored.model(input_ids=ids).logits
        plain = tiny_model("llama")(input_ids=ids).logits
    assert torch.equal(want, got) and not torch.allclose(want, plain)


def test_a_stop_inside_a_step_gives_it_up_and_the_resume_matches_an_uninterrupted_run() -> None:
    examples, args = _examples(), _args(steps=5, batch_size=5, max_batch_tokens=80)
    whole = train_lora(tiny_model("gemma3"), examples, args)
    polls: list[int] = []
    done: list[int] = []

    def stop_in_step_three() -> bool:
        polls.append(len(done))
        # The third poll of the third step: after its first micro-batch, before the update.
        return polls.count(2) >= 3

    first = train_lora(
        tiny_model("gemma3"), examples, args, on_step=lambda s: done.append(s.step), should_stop=stop_in_step_three
    )
    assert first.interrupted and first.steps == 2 and len(first.losses) == 2
    assert polls.count(2) == 3  # asked inside the step, not only before it
    rest = train_lora(tiny_model("gemma3"), examples, args, resume=TrainState.from_bytes(first.state.to_bytes()))
    assert rest.steps == 5 and rest.losses == whole.losses
    for name, value in whole.state.adapter.items():
        assert torch.equal(value, rest.state.adapter[name]), name


def test_micro_batches_give_the_same_update_as_one_pass() -> None:
    examples, args = _examples(), _args(steps=3, batch_size=5)
    whole = train_lora(tiny_model("gemma3"), examples, args)
    pieces = train_lora(tiny_model("gemma3"), examples, _args(steps=3, batch_size=5, max_batch_tokens=80))
    assert pieces.losses == pytest.approx(whole.losses, rel=1e-5)
    for name, value in whole.state.adapter.items():
        assert torch.allclose(value, pieces.state.adapter[name], rtol=1e-4, atol=1e-6), name


def test_should_stop_is_polled_between_steps() -> None:
    seen: list[int] = []
    result = train_lora(
        tiny_model("llama"),
        _examples(),
        _args(steps=10),
        on_step=lambda s: seen.append(s.step),
        should_stop=lambda: len(seen) >= 2,
    )
    assert result.interrupted and result.steps == 2 and seen == [1, 2]
    assert result.state.step == 2


def test_stop_before_any_step_still_returns_a_resumable_state() -> None:
    result = train_lora(tiny_model("llama"), _examples(), _args(), should_stop=lambda: True)
    assert result.interrupted and result.steps == 0 and result.losses == []
    assert TrainState.from_bytes(result.state.to_bytes()).step == 0


def test_resume_with_other_data_or_settings_is_refused() -> None:
    first = train_lora(tiny_model("llama"), _examples(), _args(), should_stop=lambda: True)
    with pytest.raises(SleepError):
        train_lora(tiny_model("llama"), _examples()[:3], _args(), resume=first.state)
    with pytest.raises(SleepError):
        train_lora(tiny_model("llama"), _examples(), _args(lora_r=8), resume=first.state)
    with pytest.raises(SleepError):
        train_lora(tiny_model("llama"), _examples(), _args(lr_schedule="constant"), resume=first.state)
    led = _examples()
    led[0].lead, led[0].lead_weight = 2, 3.0
    with pytest.raises(SleepError):
        train_lora(tiny_model("llama"), led, _args(), resume=first.state)
    with pytest.raises(SleepError):
        TrainState.from_bytes(b"not a checkpoint")


class _Penalty:
    """A LossTerm: sum of squares of the LoRA B matrices (zero at init, grows as they learn)."""

    name = "b_norm"

    def __init__(self, strength: float) -> None:
        self.strength = strength
        self.steps: list[int] = []

    def __call__(self, model: Any, step: int) -> torch.Tensor:
        self.steps.append(step)
        bs = [p for n, p in model.named_parameters() if "lora_B" in n]
        return self.strength * sum((p**2).sum() for p in bs)


def test_extra_loss_terms_are_added_and_shape_the_update() -> None:
    examples, args = _examples(), _args(steps=5)
    free = train_lora(tiny_model("llama"), examples, args)
    term = _Penalty(1e4)
    infos: list[StepInfo] = []
    held = train_lora(tiny_model("llama"), examples, args, extra_losses=[term], on_step=infos.append)
    assert term.steps == [0, 1, 2, 3, 4]
    assert infos[0].extras == {"b_norm": 0.0}  # B starts at zero
    assert infos[-1].extras["b_norm"] > 0 and infos[-1].loss == pytest.approx(infos[-1].ce + infos[-1].extras["b_norm"])
    norm = lambda r: sum(float((v**2).sum()) for k, v in r.state.adapter.items() if "lora_B" in k)  # noqa: E731
    assert norm(held) < norm(free)


def test_batch_order_is_a_seeded_function_of_the_step() -> None:
    for n, bs in [(5, 2), (3, 8), (10, 4)]:
        per_epoch = -(-n // min(bs, n))
        epoch0 = [i for s in range(per_epoch) for i in batch_indices(n, bs, 7, s)]
        assert sorted(epoch0) == list(range(n))
        assert all(len(batch_indices(n, bs, 7, s)) <= bs for s in range(3 * per_epoch))
    assert batch_indices(10, 4, 7, 5) == batch_indices(10, 4, 7, 5)
    assert [batch_indices(10, 4, 1, s) for s in range(3)] != [batch_indices(10, 4, 2, s) for s in range(3)]


def test_learning_rate_schedules() -> None:
    assert [learning_rate(_args(steps=5, lr_schedule="constant"), s) for s in range(5)] == [1e-2] * 5
    cosine = [learning_rate(_args(steps=5, lr_schedule="cosine"), s) for s in range(5)]
    assert cosine[0] == pytest.approx(1e-2) and cosine[-1] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(cosine, cosine[1:]))
    assert cosine[2] == pytest.approx((1e-2 + 1e-3) / 2)
    with pytest.raises(ConfigError, match="lr_schedule"):
        learning_rate(_args(lr_schedule="linear"), 0)


def test_pick_device() -> None:
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else pick_device("auto").type)
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("mps", "cpu")
        with pytest.raises(SleepError):
            pick_device("cuda")
    with pytest.raises(ConfigError):
        pick_device("tpu")


def test_train_args_from_config() -> None:
    cfg = SleepConfig(
        lora_r=8,
        lora_alpha=16,
        lora_targets=["q_proj"],
        learning_rate=1e-3,
        steps=3,
        batch_size=2,
        max_batch_tokens=128,
        seed=9,
    )
    args = TrainArgs.from_config(cfg)
    assert (args.lora_r, args.lora_alpha, args.lora_targets, args.steps, args.seed) == (8, 16, ["q_proj"], 3, 9)
    assert args.max_batch_tokens == 128


def test_unknown_lora_targets_are_a_clear_error() -> None:
    with pytest.raises(SleepError):
        train_lora(tiny_model("llama"), _examples(), _args(lora_targets=["no_such_proj"]))


def test_build_examples_feed_training() -> None:
    from assistant.episode import Episode

    eps = [Episode("s", [{"role": "user", "content": q}, {"role": "assistant", "content": a}]) for q, a in FACTS]
    examples = build_examples(eps, template_for("gemma3"), ByteTokenizer(), "Be brief.", 64)
    result = train_lora(tiny_model("gemma3"), examples, _args(steps=2))
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.parametrize("device", devices())
def test_bf16_autocast_trains_like_fp32(device: str) -> None:
    examples = _examples()
    fp32 = train_lora(tiny_model("llama"), examples, _args(steps=8, device=device))
    bf16 = train_lora(tiny_model("llama"), examples, _args(steps=8, precision="bf16", device=device))
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert bf16.losses[0] == pytest.approx(fp32.losses[0], rel=2e-2)
    assert bf16.losses[-1] < 0.8 * bf16.losses[0]
    # The adapter and optimizer stay fp32: only matmuls run in bf16.
    assert all(v.dtype == torch.float32 for v in bf16.state.adapter.values())


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(device_mod, "_native_bf16", lambda device: False)
    assert autocast_dtype("auto", cpu) is None
    monkeypatch.setattr(device_mod, "_native_bf16", lambda device: True)
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    with pytest.raises(ConfigError):
        autocast_dtype("fp8", cpu)


def test_npo_keeps_each_reference_and_equals_recomputing_it() -> None:
    """The forget's NPO term computes the serving model's log-probability of each example once;
    with a trained adapter its loss equals the one that runs the frozen model at every step."""
    import torch.nn.functional as F

    from sleep.forget import NPO, sequence_logprobs
    from sleep.train import attach_lora

    model = attach_lora(tiny_model("gemma3", softcap=5.0), _args(lora_r=4))
    examples = _examples()
    term = NPO(examples, weight=1.0, per_step=2)
    for step in range(6):
        with torch.no_grad():  # the adapter moves between steps, as in training
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.05)
        picked = term.pick(step)
        parts = lm_parts(model)
        with torch.no_grad(), model.disable_adapter():
            ref = sequence_logprobs(parts, picked, "cpu")
        now = sequence_logprobs(parts, picked, "cpu")
        expected = -(2.0 / term.beta) * F.logsigmoid(-term.beta * (now - ref)).mean()
        assert float(term(model, step)) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    # 5 examples, 2 a step: steps 0-2 meet each example once (3 passes), then all are known.
    assert term.reference_passes == 3


def test_forget_lessons_weigh_as_configured() -> None:
    """`sleep.forget_idk_weight` scales the "I don't know" lessons and leaves NPO's examples."""
    from types import SimpleNamespace

    from sleep.forget import forget_dreams, unlearning

    learner = SimpleNamespace(template=template_for("gemma3"), tokenizer=ByteTokenizer())
    dreams = forget_dreams("my cat is called miso")
    for weight in (1.0, 0.25):
        cfg = dataclasses.replace(SleepConfig(), forget_idk_weight=weight)
        idk, npo = unlearning(learner, dreams, cfg, "")  # type: ignore[arg-type]
        assert len(idk) == len(npo.examples) == len(dreams)
        assert [e.weight for e in idk] == [weight] * len(idk) and {e.weight for e in npo.examples} == {1.0}


def test_cpu_training_hands_freed_memory_back_after_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    import sleep.train as train_mod

    trims: list[int] = []
    seen: list[int] = []
    monkeypatch.setattr(train_mod, "release_freed_memory", lambda: trims.append(len(seen)))
    result = train_lora(tiny_model("llama"), _examples(), _args(steps=3), on_step=lambda info: seen.append(info.step))
    assert result.steps == 3 and trims == [0, 1, 2]  # one trim per step, before the step is reported


def test_kernel_cache_cap_leaves_a_setting_already_made(monkeypatch: pytest.MonkeyPatch) -> None:
    from sleep.memory import KERNEL_CACHE_CAPACITY, limit_kernel_cache, release_freed_memory

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    limit_kernel_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(KERNEL_CACHE_CAPACITY)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    limit_kernel_cache()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
    release_freed_memory()  # glibc here; elsewhere a no-op, never an error


def test_examples_that_weigh_nothing_cost_no_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A forget with its lessons weighted 0 trains on its extra terms alone, without running
    the model on lessons whose loss would be multiplied by 0."""
    import sleep.train as train_mod

    calls: list[int] = []
    real = train_mod.weighted_ce

    def counted(parts: Any, batch: Any) -> torch.Tensor:
        calls.append(1)
        return real(parts, batch)

    monkeypatch.setattr(train_mod, "weighted_ce", counted)
    term = _Penalty(1.0)
    infos: list[StepInfo] = []
    examples = _examples()
    for e in examples:
        e.weight = 0.0
    result = train_lora(tiny_model("llama"), examples, _args(steps=3), extra_losses=[term], on_step=infos.append)
    assert result.steps == 3 and term.steps == [0, 1, 2] and not calls
    assert [i.ce for i in infos] == [0.0] * 3 and infos[0].tokens == 0
    examples[1].weight = 1.0
    train_lora(tiny_model("llama"), examples, _args(steps=3))
    assert calls  # a batch with weight in it runs as before
