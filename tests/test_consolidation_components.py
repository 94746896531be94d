"""Consolidation components on tiny random models: replay KL, EWC, importance."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tiny_lm import ByteTokenizer, devices, tiny_model

from assistant.episode import Episode
from sleep.dataset import Example, collate
from sleep.ewc import EWCPenalty, covers, estimate_fisher, load_cached, lora_penalty, save_cached
from sleep.loss import labelled_hidden, lm_parts
from sleep.replay import (
    HeadKL,
    HeadTopKL,
    KLReplay,
    kl_to_frozen,
    load_anchor,
    replay_examples,
    save_anchor,
    teacher,
    teachers_for,
)
from sleep.surprise import user_nll, weigh
from sleep.train import TrainArgs, attach_lora, train_lora

# Losses are read as plain numbers straight from the differentiable tensors.
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")

PAIRS = [
    ("The capital of France is", " Paris, a city on the Seine."),
    ("Water boils at", " 100 degrees Celsius."),
    ("", "Bread needs flour, water, salt and yeast."),
    ("A triangle has", " three sides and three corners."),
]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _args(**kw: Any) -> TrainArgs:
    base = TrainArgs(
        device="cpu", precision="fp32", lora_r=4, lora_alpha=8, learning_rate=1e-2, steps=4, batch_size=2, seed=1
    )
    return dataclasses.replace(base, **kw)


def _samples() -> list[Example]:
    return replay_examples(PAIRS, ByteTokenizer(), 96)


def _exchange(question: str, answer: str, max_seq_len: int) -> Example:
    """One user/assistant exchange in Gemma's template as a training example (short enough never to be dropped)."""
    from models.templates import template_for
    from sleep.dataset import example_from_messages

    ex = example_from_messages(
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        template_for("gemma3"),
        ByteTokenizer(),
        max_seq_len=max_seq_len,
    )
    assert ex is not None
    return ex


def _perturb(peft_model: Any, scale: float = 0.05) -> None:
    torch.manual_seed(7)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, scale)


def test_replay_samples_label_only_the_continuation() -> None:
    tok = ByteTokenizer()
    ex = replay_examples([("Hi", " there")], tok, 64)[0]
    assert ex.input_ids == tok.encode("Hi", add_bos=True) + tok.encode(" there", add_bos=False)
    assert ex.n_labels == len(" there") and ex.kind == "replay"


@pytest.mark.parametrize("arch,softcap", [("llama", None), ("gemma3", 5.0)])
def test_kl_is_zero_at_initialisation_and_positive_once_the_adapter_moves(arch: str, softcap: float | None) -> None:
    peft_model = attach_lora(tiny_model(arch, softcap=softcap, window=256), _args())
    parts = lm_parts(peft_model)
    assert float(kl_to_frozen(peft_model, parts, _samples())) == pytest.approx(0.0, abs=1e-6)
    _perturb(peft_model)
    assert float(kl_to_frozen(peft_model, parts, _samples())) > 1e-4


def test_fused_kl_matches_full_logits_kl_and_its_gradient() -> None:
    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    _perturb(peft_model)
    parts = lm_parts(peft_model)
    batch = collate(_samples())
    with torch.no_grad(), peft_model.disable_adapter():
        frozen = labelled_hidden(parts, batch)[0]
    hidden = labelled_hidden(parts, batch)[0]
    h1 = hidden.detach().clone().requires_grad_(True)
    h2 = hidden.detach().clone().requires_grad_(True)
    fused = HeadKL.apply(h1, frozen, parts.head.weight, parts.softcap, 7).mean()

    def capped(h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(parts.head(h) / 5.0) * 5.0

    ref = (
        F.kl_div(F.log_softmax(capped(h2), -1), F.log_softmax(capped(frozen), -1), log_target=True, reduction="none")
        .sum(-1)
        .mean()
    )
    fused.backward()
    ref.backward()
    assert float(fused) == pytest.approx(float(ref), rel=1e-4)
    assert h1.grad is not None and h2.grad is not None
    assert torch.allclose(h1.grad, h2.grad, atol=1e-6, rtol=1e-4)


def _coarse_kl(hidden: torch.Tensor, frozen: torch.Tensor, head: Any, k: int) -> torch.Tensor:
    """Reference for HeadTopKL by autograd: KL over the frozen top-k tokens plus one bucket."""
    lf, la = (F.log_softmax(torch.tanh(head(h) / 5.0) * 5.0, -1) for h in (frozen, hidden))
    lf_top, ids = lf.topk(k, dim=1)
    la_top = la.gather(1, ids)
    lf_rest = torch.log1p(-lf_top.exp().sum(1))
    la_rest = torch.log1p(-la_top.exp().sum(1))
    return ((lf_top.exp() * (lf_top - la_top)).sum(1) + lf_rest.exp() * (lf_rest - la_rest)).mean()


@pytest.mark.parametrize("k", [5, 40])
def test_top_k_kl_matches_the_coarsened_kl_its_gradient_and_bounds_the_full_one(k: int) -> None:
    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    _perturb(peft_model)
    parts = lm_parts(peft_model)
    samples = _samples()
    batch = collate(samples)
    with torch.no_grad(), peft_model.disable_adapter():
        frozen = labelled_hidden(parts, batch)[0]
    hidden = labelled_hidden(parts, batch)[0].detach()
    teachers = [teacher(peft_model, parts, ex, k) for ex in samples]
    ids, logp, rest = (torch.cat([getattr(t, f) for t in teachers]) for f in ("ids", "logp", "rest"))
    h1, h2, h3 = (hidden.clone().requires_grad_(True) for _ in range(3))
    fused = HeadTopKL.apply(h1, parts.head.weight, parts.softcap, 7, ids, logp, rest).mean()
    ref = _coarse_kl(h2, frozen, parts.head, k)
    full = HeadKL.apply(h3, frozen, parts.head.weight, parts.softcap, 7).mean()
    fused.backward()
    ref.backward()
    assert float(fused) == pytest.approx(float(ref), rel=1e-4)
    assert h1.grad is not None and h2.grad is not None
    assert torch.allclose(h1.grad, h2.grad, atol=1e-6, rtol=1e-3)
    assert 0.0 < float(fused) <= float(full) + 1e-6


def test_top_k_kl_with_the_whole_vocabulary_is_the_exact_kl() -> None:
    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    _perturb(peft_model)
    parts = lm_parts(peft_model)
    vocab = parts.head.get_parameter("weight").shape[0]
    exact = float(kl_to_frozen(peft_model, parts, _samples()))
    term = KLReplay(_samples(), weight=1.0, per_step=len(PAIRS), top_k=vocab)
    assert float(term(peft_model, 0)) == pytest.approx(exact, rel=1e-4)


def test_top_k_kl_term_is_zero_before_the_adapter_moves_and_keeps_its_teacher() -> None:
    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    term = KLReplay(_samples(), weight=1.0, per_step=2, top_k=8)
    assert float(term(peft_model, 0)) == pytest.approx(0.0, abs=1e-5)
    _perturb(peft_model)
    # The teacher was taken before the adapter moved: the term now measures the move.
    assert float(term(peft_model, 0)) > 1e-4


@pytest.mark.parametrize("device", devices())
def test_kl_replay_term_holds_the_model_closer_to_the_frozen_one(device: str) -> None:
    facts = [_exchange(q, a, 96) for q, a in [("Cat?", "Miso."), ("Sister?", "Ada in Lisbon.")]]
    samples = _samples()
    drift = {}
    for name, extra in [
        ("plain", []),
        ("kl", [KLReplay(samples, weight=5.0, per_step=4)]),
        ("top-k kl", [KLReplay(samples, weight=5.0, per_step=4, top_k=16)]),
    ]:
        result = train_lora(
            tiny_model("llama"), facts, _args(steps=8, learning_rate=2e-2, device=device), extra_losses=extra
        )
        drift[name] = float(kl_to_frozen(result.model, lm_parts(result.model), samples))
    assert drift["kl"] < drift["plain"] and drift["top-k kl"] < drift["plain"]


def test_kl_replay_picks_samples_by_step() -> None:
    term = KLReplay(_samples(), per_step=3)
    assert [e.input_ids for e in term.pick(5)] == [e.input_ids for e in KLReplay(_samples(), per_step=3).pick(5)]
    assert len(term.pick(0)) == 3 and term.pick(0) != term.pick(1)


def test_ewc_penalty_is_zero_for_zero_delta_and_grows_with_the_fisher(tmp_path: Path) -> None:
    model = tiny_model("llama")
    fisher = estimate_fisher(model, _samples(), TARGETS)
    assert len(fisher) == 2 * 7 and all(torch.isfinite(g).all() and (g >= 0).all() for g, _ in fisher.values())
    assert covers(fisher, model, TARGETS) and not covers(fisher, model, ["gate_proj", "up_proj", "down_proj"])
    peft_model = attach_lora(model, _args())
    assert float(lora_penalty(peft_model, fisher)) == 0.0  # LoRA B starts at zero: no change yet
    _perturb(peft_model)
    base = float(lora_penalty(peft_model, fisher))
    doubled = {k: (2 * g, a) for k, (g, a) in fisher.items()}
    assert base > 0 and float(lora_penalty(peft_model, doubled)) == pytest.approx(2 * base, rel=1e-5)
    assert float(EWCPenalty(fisher, 3.0)(peft_model, 0)) == pytest.approx(3 * base, rel=1e-5)

    # The r x r shortcut equals the elementwise sum over the merged update.
    total = 0.0
    for name, mod in peft_model.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            g, a = fisher[name.removeprefix("base_model.model.")]
            delta = mod.scaling["default"] * mod.lora_B["default"].weight @ mod.lora_A["default"].weight
            total += float((g[:, None] * a[None, :] * delta.square()).sum())
    assert base == pytest.approx(total, rel=1e-4)

    path = tmp_path / "ewc.pt"
    save_cached(path, fisher)
    again = load_cached(path)
    assert again is not None and torch.equal(
        again["model.layers.0.self_attn.q_proj"][0], fisher["model.layers.0.self_attn.q_proj"][0]
    )
    path.write_bytes(b"damaged")
    assert load_cached(path) is None


@pytest.mark.parametrize("device", devices())
def test_ewc_term_keeps_the_update_smaller_where_the_fisher_is_large(device: str) -> None:
    facts = [_exchange("Cat?", "Miso.", 64)]
    fisher = estimate_fisher(tiny_model("llama"), _samples(), TARGETS)
    sizes = {}
    for name, extra in [("plain", []), ("ewc", [EWCPenalty(fisher, 50.0)])]:
        result = train_lora(tiny_model("llama"), facts, _args(steps=6, device=device), extra_losses=extra)
        sizes[name] = float(lora_penalty(result.model, fisher))
    assert sizes["ewc"] < sizes["plain"]


def test_surprise_reweights_within_bounds_and_boosts_corrections() -> None:
    eps = [
        Episode.from_exchange("s", text, "ok", "gen-0000", 0.0)
        for text in ["My cat is Miso.", "Remember that the code is 5512.", "No, that's not right: it is teal."]
    ]
    model = tiny_model("llama")
    nll = user_nll(model, eps, ByteTokenizer())
    assert set(nll) == {e.id for e in eps} and all(v > 0 for v in nll.values())
    imp = weigh(eps, nll, correction_boost=1.5)
    for ep in eps:
        ratio = imp.weights[ep.id] / ep.importance
        if "correction" in ep.flags:
            ratio /= 1.5
        assert 0.5 - 1e-6 <= ratio <= 2.0 + 1e-6
    flat = weigh(eps, {}, correction_boost=2.0).weights
    assert flat[eps[0].id] == 1.0 and flat[eps[2].id] == pytest.approx(eps[2].importance * 2.0)
    many = weigh(eps, {eps[0].id: 9.0, eps[1].id: 1.0, eps[2].id: 1.0}, correction_boost=1.0).weights
    assert many[eps[0].id] > many[eps[1].id]


def test_replay_texts_are_self_generated_from_seed_prompts_and_corpus(tmp_path: Path) -> None:
    from sleep.replay import CHAT_PROMPTS, SEED_PROMPTS, replay_texts

    asked: list[str] = []

    def generate(prompt: str, n: int) -> str:
        asked.append(prompt)
        return "" if prompt == SEED_PROMPTS[1] else f" continues ({n})"

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("A paragraph about rivers that is long enough to keep.\n\nshort\n", encoding="utf-8")
    plain = replay_texts(generate, None, 4, 7, str(corpus))
    assert asked == SEED_PROMPTS[:4]
    assert [p for p, _ in plain] == [SEED_PROMPTS[0], SEED_PROMPTS[2], SEED_PROMPTS[3], ""]  # empty ones dropped
    assert plain[0][1] == " continues (7)" and plain[-1][1].startswith("A paragraph")
    asked.clear()
    replay_texts(generate, lambda q: f"<chat>{q}", 4, 7)
    assert asked == [SEED_PROMPTS[0], f"<chat>{CHAT_PROMPTS[0]}", SEED_PROMPTS[1], f"<chat>{CHAT_PROMPTS[1]}"]


def test_rehearsed_questions_are_the_nights_own_forms_of_what_the_model_recalls() -> None:
    from sleep.reconsolidate import questions_of

    recalled = ["Your cousin Mateus lives in Rosslyn. Is that right?", "You teach ceramics at Kelmscott."]
    asked = questions_of(recalled, 40)
    assert "Where does my cousin Mateus live?" in asked and "What is my cousin's name?" in asked
    assert any("ceramics" not in q and "Kelmscott" in q for q in asked)  # the other recollection too
    assert not any(q.startswith("Is that") for q in asked) and len(set(asked)) == len(asked)
    # Every recollection gets its first question before any gets a second.
    assert len(questions_of(recalled, 2)) == 2 and questions_of(recalled, 2)[1] in questions_of(recalled[1:], 1)
    assert questions_of(["Your bank password is Xq7!pLm2Rz9."], 10) == []


def test_rehearsal_samples_answers_to_questions_about_the_user() -> None:
    from sleep.replay import MEMORY_PROMPTS, rehearsal_texts

    calls: list[tuple[str, int, int]] = []

    def sample(prompt: str, n: int, seed: int) -> str:
        calls.append((prompt, n, seed))
        return "" if seed == 1 else f" your dog is called rex ({seed})"

    pairs = rehearsal_texts(sample, lambda q: f"<chat>{q}", len(MEMORY_PROMPTS) + 1, 9)
    # Every question is asked, the first one twice with another seed; empty replies are dropped.
    assert [c[0] for c in calls] == [f"<chat>{q}" for q in MEMORY_PROMPTS + MEMORY_PROMPTS[:1]]
    assert [c[2] for c in calls] == list(range(len(MEMORY_PROMPTS) + 1)) and {c[1] for c in calls} == {9}
    assert len(pairs) == len(MEMORY_PROMPTS) and pairs[-1] == (
        f"<chat>{MEMORY_PROMPTS[0]}",
        f" your dog is called rex ({len(MEMORY_PROMPTS)})",
    )


def test_night_steps_grow_with_examples_within_bounds() -> None:
    from assistant.config import SleepConfig
    from sleep.consolidate import file_type, steps_for

    cfg = SleepConfig(steps=40, min_epochs=3.0, max_steps=120)
    assert steps_for(cfg, 16, 8) == 40 and steps_for(cfg, 160, 8) == 60 and steps_for(cfg, 1000, 8) == 120
    assert steps_for(dataclasses.replace(cfg, augment=False, dreams=False), 1000, 8) == 40
    assert file_type("source", 15) == 15 and file_type("Q8_0", 15) == 7
    from assistant.errors import ConfigError

    with pytest.raises(ConfigError, match="sleep.file_type"):
        file_type("Q9_X", 15)


def test_fisher_needs_no_weight_gradients_and_leaves_the_model_as_it_was() -> None:
    model = tiny_model("llama")
    model.model.layers[0].mlp.up_proj.weight.requires_grad_(False)  # one frozen weight, to be kept so
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    accumulated: list[int] = []  # a weight gradient would cost a second copy of the model
    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(lambda p: accumulated.append(1))
    fisher = estimate_fisher(model, _samples(), TARGETS)
    assert fisher and not accumulated and all(p.grad is None for p in model.parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


@pytest.mark.parametrize("arch", ["gemma3", "llama"])  # tied head (and scaled embeddings), untied head
def test_a_bf16_night_keeps_the_vocabulary_in_bf16_and_trains_the_same(arch: str) -> None:
    from sleep.device import autocast
    from sleep.loss import store_vocab_in, weighted_ce

    batch = collate(_samples()[:2])
    losses = {}
    for slim in (False, True):
        model = tiny_model(arch)
        tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
        if slim:
            store_vocab_in(model, torch.bfloat16)
            embed, head = model.get_input_embeddings(), model.get_output_embeddings()
            assert embed.weight.dtype == head.weight.dtype == torch.bfloat16
            assert (head.weight is embed.weight) == tied
            assert embed(batch.input_ids).dtype == torch.float32  # the decoder still runs in fp32
        with torch.no_grad(), autocast(torch.device("cpu"), torch.bfloat16):
            losses[slim] = float(weighted_ce(lm_parts(model), batch))
    assert losses[True] == pytest.approx(losses[False], rel=2e-2)


def test_a_stop_is_seen_inside_the_teacher_pass() -> None:
    from assistant.stoppoints import Stopped, stop_points

    peft_model = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    term = KLReplay(_samples(), weight=1.0, per_step=2, top_k=8)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) >= 2  # stop after the second sample's teacher

    with stop_points(should_stop), pytest.raises(Stopped):
        term(peft_model, 0)
    assert len(asked) == 2 < len(PAIRS)


def test_an_anchor_keeps_the_first_models_teachers_and_a_damaged_one_is_not_trusted(tmp_path: Path) -> None:
    first = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    samples = _samples()
    teachers = teachers_for(first, samples, 8)
    path = tmp_path / "cache" / "replay-anchor.pt"
    save_anchor(path, {"arch": "gemma3"}, PAIRS, teachers)
    kept = load_anchor(path)
    assert kept is not None and kept[0] == {"arch": "gemma3"} and kept[1] == [tuple(p) for p in PAIRS]
    assert all(torch.equal(a.ids, b.ids) and torch.equal(a.logp, b.logp) for a, b in zip(kept[2], teachers))
    # A later night's model starts where the first one's nights left it: anchored, the term
    # sees that drift at once; against its own frozen copy it sees none.
    later = attach_lora(tiny_model("gemma3", softcap=5.0, window=256), _args())
    with torch.no_grad():
        for p in later.parameters():
            if not p.requires_grad:
                p.add_(0.02 * torch.randn_like(p))
    anchored = KLReplay(samples, weight=1.0, per_step=2, top_k=8, teachers=kept[2])
    assert float(anchored(later, 0)) > 1e-4
    assert float(KLReplay(samples, weight=1.0, per_step=2, top_k=8)(later, 0)) == pytest.approx(0.0, abs=1e-5)
    path.write_bytes(path.read_bytes()[:100])
    assert load_anchor(path) is None
    with pytest.raises(ValueError):
        KLReplay(samples, top_k=8, teachers=kept[2][:1])
