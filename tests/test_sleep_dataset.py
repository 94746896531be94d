"""Training examples: rendering, labels on assistant spans only, weights, truncation, batching."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_lm import SPECIALS, ByteTokenizer

from assistant.episode import Episode
from models.templates import template_for
from sleep.dataset import (
    IGNORE,
    Example,
    build_examples,
    collate,
    example_from_messages,
    micro_batches,
    truncate_left,
    weigh_by_tokens,
)

SYSTEM = "You are Nightcap."


def _episode(
    user: str = "Remember: my cat is Miso.",
    reply: str = "Noted, Miso.",
    *,
    correction: str | None = None,
    importance: float = 1.0,
) -> Episode:
    msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
    return Episode(session="s", messages=msgs, correction=correction, importance=importance)


def _labelled_text(ex: Example, tok: ByteTokenizer) -> str:
    return tok.decode([t for t in ex.labels if t != IGNORE], special=True)


def test_labels_cover_only_the_reply_and_its_end_marker() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    (ex,) = build_examples([_episode()], template, tok, SYSTEM, max_seq_len=512)
    assert _labelled_text(ex, tok) == "Noted, Miso.<end_of_turn>\n"
    # Labels are the input ids themselves where they are set (the loss shifts by one).
    assert all(lab in (IGNORE, tid) for lab, tid in zip(ex.labels, ex.input_ids))
    assert ex.input_ids[0] == SPECIALS["<bos>"] and ex.input_ids.count(SPECIALS["<bos>"]) == 1
    # The whole sequence is what serving renders, with the system prompt folded in by the template.
    messages = [{"role": "system", "content": SYSTEM}] + _episode().target_messages()
    assert tok.decode(ex.input_ids, special=True) == "<bos>" + template.render(messages, add_generation_prompt=False)
    assert SYSTEM in tok.decode(ex.input_ids) and SYSTEM not in _labelled_text(ex, tok)


def test_spans_tokenized_separately_equal_whole_text_for_byte_tokenizer() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    ep = _episode()
    (ex,) = build_examples([ep], template, tok, None, max_seq_len=512)
    assert ex.input_ids == tok.encode(template.render(ep.target_messages(), False), add_bos=True)


def test_multi_turn_labels_every_assistant_turn() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    msgs = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "Goodbye."},
    ]
    ex = example_from_messages(msgs, template, tok, max_seq_len=512)
    assert ex is not None
    assert _labelled_text(ex, tok) == "Hello.<end_of_turn>\nGoodbye.<end_of_turn>\n"


def test_correction_replaces_the_reply_and_importance_sets_the_weight() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    corrected = _episode(reply="Your cat is Tom.", correction="Your cat is Miso.", importance=2.5)
    plain = _episode(importance=0.25)
    a, b = build_examples([corrected, plain], template, tok, SYSTEM, max_seq_len=512)
    assert _labelled_text(a, tok) == "Your cat is Miso.<end_of_turn>\n"
    assert "Tom" not in tok.decode(a.input_ids)
    assert (a.weight, b.weight) == (2.5, 0.25)
    assert (a.kind, a.source) == ("episode", corrected.id)


def test_nothing_to_learn_gives_no_example() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    assert build_examples([_episode(importance=0.0)], template, tok, SYSTEM, 512) == []
    only_user = [{"role": "user", "content": "hello"}]
    assert example_from_messages(only_user, template, tok, max_seq_len=512) is None


def test_long_examples_are_cut_from_the_left_keeping_bos() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    ep = _episode(user="x" * 300, reply="The answer is 42.")
    (full,) = build_examples([ep], template, tok, SYSTEM, max_seq_len=10_000)
    (cut,) = build_examples([ep], template, tok, SYSTEM, max_seq_len=64)
    assert len(cut) == 64
    assert cut.input_ids[0] == SPECIALS["<bos>"] and cut.labels[0] == IGNORE
    assert cut.input_ids[1:] == full.input_ids[-63:] and cut.labels[1:] == full.labels[-63:]
    assert _labelled_text(cut, tok) == "The answer is 42.<end_of_turn>\n"


def test_truncate_left_refuses_a_length_with_no_room() -> None:
    with pytest.raises(ValueError):
        truncate_left([2, 5, 6], [IGNORE, 5, 6], max_len=1, keep=1)
    assert truncate_left([2, 5, 6], [IGNORE, 5, 6], max_len=2, keep=1) == ([2, 6], [IGNORE, 6])


def test_collate_pads_on_the_right() -> None:
    a = Example([2, 10, 11, 12], [IGNORE, IGNORE, 11, 12], weight=2.0)
    b = Example([2, 10], [IGNORE, 10], weight=0.5)
    batch = collate([a, b], pad_id=0)
    assert batch.input_ids.tolist() == [[2, 10, 11, 12], [2, 10, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.labels.tolist() == [[IGNORE, IGNORE, 11, 12], [IGNORE, 10, IGNORE, IGNORE]]
    assert batch.weights.tolist() == [2.0, 0.5]
    assert (batch.n_tokens, batch.n_labels) == (6, 3)


def test_a_lead_weighs_its_tokens_at_the_start_of_the_reply() -> None:
    tok, template = ByteTokenizer(), template_for("gemma3")
    msgs = [
        {"role": "user", "content": "Where does my sister live?"},
        {"role": "assistant", "content": "Lisbon. Your sister lives in Lisbon."},
    ]
    ex = example_from_messages(msgs, template, tok, max_seq_len=512, lead="Lisbon.", lead_weight=3.0)
    assert ex is not None and (ex.lead, ex.lead_weight) == (len("Lisbon."), 3.0)
    first = next(i for i, t in enumerate(ex.labels) if t != IGNORE)
    assert tok.decode(ex.labels[first : first + ex.lead]) == "Lisbon."
    row = collate([ex]).label_weights[0]
    assert row[first : first + ex.lead].eq(3.0).all() and row[first + ex.lead :].sum() == ex.n_labels - ex.lead
    assert row[:first].eq(0).all()
    # A lead the reply does not start with, or a weight of 1, weighs nothing differently.
    for lead, weight in (("Porto.", 3.0), ("Lisbon.", 1.0)):
        other = example_from_messages(msgs, template, tok, max_seq_len=512, lead=lead, lead_weight=weight)
        assert other is not None and other.lead == 0
        assert collate([other]).label_weights[0].tolist() == [float(t != IGNORE) for t in other.labels]


def test_weighing_by_tokens_turns_each_examples_mean_into_a_sum_over_tokens() -> None:
    import torch

    from sleep.loss import _weighted_mean

    tok, template = ByteTokenizer(), template_for("gemma3")

    def make(answer: str, lead: str, weight: float) -> Example:
        msgs = [{"role": "user", "content": "Where?"}, {"role": "assistant", "content": answer}]
        ex = example_from_messages(msgs, template, tok, max_seq_len=512, weight=weight, lead=lead, lead_weight=3.0)
        assert ex is not None
        return ex

    examples = [make("Oslo.", "Oslo.", 1.0), make("Lisbon. Your sister lives in Lisbon, by the sea.", "Lisbon.", 2.0)]
    before = [e.weight for e in examples]
    weigh_by_tokens(examples)
    batch = collate(examples)
    labelled = batch.labels[:, 1:] != IGNORE
    rows = torch.arange(2).unsqueeze(1).expand_as(labelled)[labelled]
    label_weights = batch.label_weights[:, 1:][labelled]
    losses = torch.rand(rows.shape[0], dtype=torch.float64)
    sizes = [float(label_weights[rows == i].sum()) for i in range(2)]
    # Every token's loss counts by its own label weight and its example's weight, over one
    # constant (the batch's examples times their mean size), however long its example is.
    want = sum(before[i] * float((losses * label_weights)[rows == i].sum()) for i in range(2)) / sum(sizes)
    got = float(_weighted_mean(losses, rows, batch.weights.double(), label_weights))
    assert got == pytest.approx(want)
    assert examples[1].weight / examples[0].weight == pytest.approx(2.0 * sizes[1] / sizes[0])
    assert [e.label_mass for e in examples] == pytest.approx(sizes)  # as collate weighs the labels
    weigh_by_tokens([])  # nothing to weigh


def test_micro_batches_bound_padded_tokens_and_keep_every_example() -> None:
    examples = [Example([2] * n, [IGNORE] * (n - 1) + [5]) for n in (10, 3, 7, 30, 12, 4)]
    pieces = micro_batches(examples, max_tokens=24)
    assert sorted(id(e) for p in pieces for e in p) == sorted(id(e) for e in examples)
    for piece in pieces:
        assert len(piece) == 1 or max(len(e) for e in piece) * len(piece) <= 24
    assert [len(e) for e in pieces[0]] == [30]  # longer than the budget: alone
    assert micro_batches(examples, max_tokens=10_000) == [sorted(examples, key=len, reverse=True)]


@pytest.mark.slow
def test_real_tokenizer_spans_equal_whole_text_tokenization(default_gguf: Path) -> None:
    from models.tokenizer import Tokenizer

    tok = Tokenizer.from_gguf(default_gguf)
    template = template_for("gemma3")
    conversations = [
        [{"role": "user", "content": "Remember: my cat is called Miso."}, {"role": "assistant", "content": "Got it."}],
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "\n\nHello there!\n"},
            {"role": "user", "content": "  what's 2+2?"},
            {"role": "assistant", "content": "  4 — easy. 日本語 ```code```\n\n    indented"},
        ],
    ]
    for msgs in conversations:
        msgs = [{"role": "system", "content": SYSTEM}] + msgs
        ex = example_from_messages(msgs, template, tok, max_seq_len=4096)
        assert ex is not None
        assert ex.input_ids == tok.encode(template.render(msgs, add_generation_prompt=False), add_bos=True)
        assert ex.input_ids[0] == tok.bos_id and ex.labels[0] == IGNORE
        assert tok.decode([t for t in ex.labels if t != IGNORE], special=True).endswith("<end_of_turn>\n")


def test_answers_name_their_subject_first_in_subject_order_unless_the_fact_lacks_the_value() -> None:
    from types import SimpleNamespace

    from assistant.config import SleepConfig
    from sleep.consolidate import _dream_examples
    from sleep.dreams import Dream

    tok, template = ByteTokenizer(), template_for("gemma3")
    learner = SimpleNamespace(tokenizer=tok, template=template)
    asked = Dream("Where does my sister live?", "Lisbon. Your sister lives in Lisbon.", lead="Lisbon.")
    before = Dream("Where did my sister live before?", "Porto. Your sister lives in Lisbon.", lead="Porto.")

    def replies(d: Dream, order: str = "value") -> list[tuple[str, int]]:
        made = _dream_examples(learner, d, "ep", 1.0, SleepConfig(answer_order=order), "")  # type: ignore[arg-type]
        assert all(led == (ex.lead > 0) for ex, led in made)
        return [(_labelled_text(ex, tok).removesuffix("<end_of_turn>\n"), ex.lead) for ex, _ in made]

    value_first, subject_first = (
        ("Lisbon. Your sister lives in Lisbon.", len("Lisbon.")),
        ("Your sister lives in Lisbon.", 0),
    )
    assert replies(asked) == [value_first]
    assert replies(asked, "subject") == [subject_first]
    assert replies(asked, "both") == [value_first, subject_first]
    # An answer the restatement does not hold (an earlier value) keeps leading with it.
    assert (
        replies(before, "subject")
        == replies(before, "both")
        == [("Porto. Your sister lives in Lisbon.", len("Porto."))]
    )
