"""The rival term: a question about one fact is not to be answered with another fact's value."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch
from tiny_lm import ByteTokenizer, tiny_model

from models.templates import template_for
from sleep.dataset import Example, collate, example_from_messages, rival_tokens
from sleep.loss import labelled_hidden, lm_parts, rival_loss, weighted_ce
from sleep.train import TrainArgs, attach_lora, train_lora

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")

QA = [
    ("Who is my dentist?", "Zora.", "Zora"),
    ("Where does my uncle live?", "Quito.", "Quito"),
    ("What is my cat called?", "Kiwi.", "Kiwi"),
]


def _examples(weight: float = 1.0, lead_weight: float = 2.0) -> list[Example]:
    out = []
    for question, answer, lead in QA:
        ex = example_from_messages(
            [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            template_for("gemma3"),
            ByteTokenizer(),
            max_seq_len=128,
            lead=lead,
            lead_weight=lead_weight,
        )
        assert ex is not None
        out.append(ex)
    rival_tokens(out, weight)
    return out


def _args(**kw: Any) -> TrainArgs:
    base = TrainArgs(
        device="cpu", precision="fp32", lora_r=4, lora_alpha=8, learning_rate=1e-2, steps=4, batch_size=3, seed=1
    )
    return dataclasses.replace(base, **kw)


def test_each_answer_has_the_other_answers_first_tokens_as_rivals() -> None:
    exs = _examples()
    firsts = [ByteTokenizer().encode(lead, add_bos=False)[0] for _, _, lead in QA]
    for ex, own in zip(exs, firsts, strict=True):
        assert ex.first_label == own
        assert set(ex.rivals) == set(firsts) - {own} and ex.rival_weight == 1.0


def test_no_rivals_without_a_lead_or_at_weight_zero() -> None:
    assert all(not e.rivals for e in _examples(weight=0.0))
    assert all(not e.rivals for e in _examples(lead_weight=1.0))  # lead weight 1: no lead is marked
    assert collate(_examples(weight=0.0)).rivals is None


def test_the_term_is_minus_log_of_one_minus_the_rivals_probability() -> None:
    model = tiny_model("gemma3", softcap=5.0, window=256)
    parts = lm_parts(model)
    exs = _examples()
    batch = collate(exs)
    assert batch.rivals is not None and batch.rival_weights is not None
    hidden, _, rows, _ = labelled_hidden(parts, batch)
    got = rival_loss(parts, hidden, rows, batch.rivals, batch.rival_weights)
    # By hand: each example's reply from its first labelled position, through the full logits.
    want = 0.0
    for ex in exs:
        ids = torch.tensor([ex.input_ids])
        logits = model(input_ids=ids).logits[0].float()
        start = next(i for i, t in enumerate(ex.labels) if t != -100)
        p = torch.softmax(logits[start - 1], -1)
        want += float(-torch.log1p(-p[list(ex.rivals)].sum()))
    assert float(got) == pytest.approx(want / len(exs), rel=1e-4)


def test_training_with_the_term_makes_the_rivals_less_likely_than_without() -> None:
    def rivals_mass(weight: float) -> float:
        exs = _examples(weight=weight)
        result = train_lora(tiny_model("gemma3", window=256), exs, _args(steps=12))
        probe = [
            dataclasses.replace(e, rival_weight=1.0, rivals=r.rivals) for e, r in zip(exs, _examples(), strict=True)
        ]
        batch = collate(probe)
        parts = lm_parts(result.model)
        with torch.no_grad():
            hidden, _, rows, _ = labelled_hidden(parts, batch)
            assert batch.rivals is not None and batch.rival_weights is not None
            return float(rival_loss(parts, hidden, rows, batch.rivals, batch.rival_weights))

    assert rivals_mass(5.0) < rivals_mass(0.0)


def test_weighted_ce_adds_the_term_only_where_there_are_rivals() -> None:
    model = attach_lora(tiny_model("gemma3", window=256), _args())
    parts = lm_parts(model)
    with torch.no_grad():
        plain = float(weighted_ce(parts, collate(_examples(weight=0.0))))
        with_rivals = float(weighted_ce(parts, collate(_examples(weight=1.0))))
    assert with_rivals > plain


class _Serving:
    """The serving model answering a night's questions: an old value for one, tonight's for another."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies, self.prompts = replies, []  # type: tuple[dict[str, str], list[str]]

    def complete(self, prompt: str, max_tokens: int = 96, stop: list[str] | None = None) -> str:
        self.prompts.append(prompt)
        return next(r for q, r in self.replies.items() if q in prompt)


def test_a_slept_models_other_answer_becomes_a_rival_of_that_question_only() -> None:
    from sleep.consolidate import _stale_beliefs
    from sleep.dreams import Dream

    exs = _examples(weight=0.0)
    asked = [(ex, Dream(q, a, lead=lead + ".")) for ex, (q, a, lead) in zip(exs, QA, strict=True)]
    again = dataclasses.replace(exs[0])
    asked.append((again, asked[0][1]))  # the same question of two statements is asked once
    serving = _Serving({QA[0][0]: "Mirela, your dentist.", QA[1][0]: "Your uncle lives in Quito.", QA[2][0]: "Kiwi."})
    checked, stale = _stale_beliefs(serving, lambda q: f"<q>{q}</q>", ByteTokenizer(), asked, 2.0)  # type: ignore[arg-type]
    assert (checked, stale) == (3, 2) and len(serving.prompts) == 3
    said = set(ByteTokenizer().encode("Mirela, your dentist.", add_bos=False)) - set(exs[0].labels)
    assert (
        exs[0].rivals == again.rivals == tuple(sorted(said)) and ByteTokenizer().encode("M", add_bos=False)[0] in said
    )
    assert exs[0].rival_weight == 2.0
    # It said tonight's value (in other words, or first): nothing to push down.
    assert not exs[1].rivals and not exs[2].rivals
