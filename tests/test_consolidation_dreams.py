"""Dreams: augmentations of a stated fact and verification of what the model writes about it."""

from __future__ import annotations

import pytest

from assistant.episode import Episode
from sleep.dreams import (
    KIND_DREAM,
    DreamSet,
    augment,
    dream,
    parse_dream_text,
    second_person,
    statement,
    topics,
    verify_answer,
    verify_paraphrase,
    write_dreams,
)

FACT = "My sister Priya lives in Lisbon and teaches chemistry."


def test_statement_strips_the_request_around_the_fact() -> None:
    assert (
        statement("Please remember that I keep my passport in the blue drawer.")
        == "I keep my passport in the blue drawer."
    )
    assert (
        statement("No, that's not right: my favourite colour is teal, not blue.")
        == "My favourite colour is teal, not blue."
    )
    assert statement("By the way, my dog's name is Biscuit.") == "My dog's name is Biscuit."


def test_second_person_turns_the_users_words_around() -> None:
    assert second_person("I keep my passport in my desk.") == "You keep your passport in your desk."
    assert (
        second_person("I'm vegetarian and I was born in Halifax.") == "You're vegetarian and you were born in Halifax."
    )
    assert second_person("Our deploy tool is Kestrel.") == "Your deploy tool is Kestrel."


def test_augmentations_restate_the_fact_and_hold_one_question_out() -> None:
    out = augment("Remember that the garage door code is 5512.")
    assert topics("The garage door code is 5512.") == ["the garage door code"]
    trained = [d for d in out if not d.heldout]
    held = [d for d in out if d.heldout]
    assert len(held) == 1 and "garage door code" in held[0].question
    assert all("5512" in d.answer for d in out)
    assert any(d.question == "What is the garage door code?" and d.answer.startswith("5512.") for d in trained)
    assert held[0].question not in {d.question for d in trained}
    # The answer proper is marked where a reply starts with it; restatements have none.
    assert all(d.answer.startswith(d.lead) for d in out)
    assert {d.lead for d in out} == {"", "5512."}
    assert all(d.lead == "" for d in out if d.answer.startswith("The garage door code"))


def test_verification_rejects_a_dream_that_changes_the_answer() -> None:
    assert verify_answer(FACT, "Where does my sister live?", "Lisbon") is None
    assert verify_answer(FACT, "Where does my sister live?", "in Lisbon") is None
    assert verify_answer(FACT, "Where does my sister live?", "Madrid") == "answer-not-in-statement"
    assert verify_answer(FACT, "What is my sister's job?", "teacher") == "answer-not-in-statement"
    assert verify_answer(FACT, "Does Priya live in Lisbon?", "Lisbon") == "question-gives-answer"
    assert verify_answer(FACT, "What is the weather like?", "chemistry") == "off-topic"
    assert verify_paraphrase(FACT, "Priya, my sister, lives in Lisbon where she teaches chemistry.") is None
    assert verify_paraphrase(FACT, "My sister Priya lives in Madrid and teaches chemistry.") is not None
    assert verify_paraphrase(FACT, "My sister Priya lives in Lisbon and teaches chemistry with Tom.") == "new-key-term"
    assert verify_paraphrase(FACT, FACT) == "empty-or-copy"


def test_model_written_dreams_are_parsed_verified_and_counted() -> None:
    written = (
        "Priya, my sister, lives in Lisbon and teaches chemistry.\n"
        "Question: Where does my sister live?\nAnswer: Lisbon\n"
        "Question: What does Priya teach?\nAnswer: physics\n"
        "Question: Where does my sister live?\nAnswer: Lisbon\n\nStatement: junk"
    )
    paraphrase, pairs = parse_dream_text(written)
    assert paraphrase.startswith("Priya, my sister") and len(pairs) == 3
    counts = DreamSet()
    prompts: list[str] = []

    def writer(prompt: str) -> str:
        prompts.append(prompt)
        return written

    out = write_dreams(writer, FACT, counts)
    assert prompts and prompts[0].rstrip().endswith(f"Statement: {FACT}\nRephrased:")
    assert counts.written == 4 and counts.accepted == 2
    assert counts.rejected == {"answer-not-in-statement": 1, "duplicate": 1}
    assert all(d.kind == KIND_DREAM for d in out)
    assert any(
        d.question == "Where does my sister live?" and d.answer.startswith("Lisbon.") and d.lead == "Lisbon."
        for d in out
    )
    assert all("physics" not in d.answer for d in out)


def test_dream_makes_held_out_probes_even_without_augmentations() -> None:
    eps = [Episode.from_exchange("s", FACT, "You are Nightcap.", "gen-0000", 0.0)]
    on = dream(eps, None, augmentations=True).dreams[eps[0].id]
    off = dream(eps, None, augmentations=False).dreams[eps[0].id]
    assert len(on) > 2 and [d.heldout for d in off] == [True]


def test_answer_spans_are_written_as_in_the_fact_and_names_get_their_own_question() -> None:
    from sleep.dreams import answer_spans

    assert answer_spans("Your doctor is Dr. Lindqvist at the Harbourview clinic.") == [
        "doctor",
        "Dr. Lindqvist",
        "Harbourview clinic",
    ]
    assert answer_spans("You were born in Halifax, Nova Scotia.") == ["born", "Halifax", "Nova Scotia"]
    # A capitalised function word inside a name stays in it; one that starts a sentence does not join.
    assert answer_spans("Your brother teaches in Phu An every winter.")[-2:] == ["Phu An", "winter"]
    assert "The" not in " ".join(answer_spans("Read it. The Quiet Orchard was good."))
    assert answer_spans("Loved The Quiet Orchard.") == ["Loved", "Quiet Orchard"]
    out = augment("My doctor is Dr. Lindqvist at the Harbourview clinic.")
    blanks = [d for d in out if d.question.startswith("Fill in the blank")]
    assert blanks and all("___" in d.question for d in blanks)
    assert any(d.answer.startswith("Dr. Lindqvist. ") for d in blanks)
    asked = {d.question for d in out if not d.heldout}
    assert {"What do you know about Dr. Lindqvist?", "What do you know about Harbourview clinic?"} <= asked
    # A month is not a name: no "What do you know about March?".
    assert not any("about March" in d.question for d in augment("My insurance renews in March."))


def test_a_blank_is_answered_by_itself_and_the_fact_or_by_itself_alone() -> None:
    fact = "My doctor is Dr. Lindqvist at the Harbourview clinic."
    told = "Your doctor is Dr. Lindqvist at the Harbourview clinic."
    for blank_only in (False, True):
        eps = [Episode.from_exchange("s", fact, "OK.", "g", 0.0)]
        made = dream(eps, None, blank_only=blank_only).dreams[eps[0].id]
        blanks = {d.lead: d.answer for d in made if d.question.startswith("Fill in the blank")}
        assert blanks["Dr. Lindqvist."] == ("Dr. Lindqvist." if blank_only else f"Dr. Lindqvist. {told}")
        assert all(a == (lead if blank_only else f"{lead} {told}") for lead, a in blanks.items())
        # Only the blanks change: every other question is answered the same way.
        others = {d.question: d.answer for d in made if not d.question.startswith("Fill in the blank")}
        assert others == {d.question: d.answer for d in augment(fact) if not d.question.startswith("Fill in the blank")}


def test_a_cloze_answers_with_the_value_as_written_and_never_with_what_the_fact_denies() -> None:
    out = augment("No, that's not right: my favourite car is silver, not red.")
    answers = {d.question: d.answer for d in out if not d.heldout}
    assert answers["What is my favourite car?"] == "silver. Your favourite car is silver, not red."
    assert not any(d.answer.startswith("red.") for d in out)
    # "is called X" and "is with X" are no values of "What is ...?": the wh-questions ask for them.
    asked = {d.question: d.lead for d in augment("Our team chat is called Heron and it is with Slack.")}
    assert asked.get("What is our team chat called?") == "Heron." and "What is our team chat?" not in asked


def test_a_question_the_night_answers_in_two_ways_is_not_trained() -> None:
    from assistant.episode import Episode
    from sleep.dreams import dream

    told = ["Yesterday I finally finished painting a fence.", "Last week I started learning to play cello."]
    eps = [Episode.from_exchange(f"s{i}", text, "OK.", "g", 0.0) for i, text in enumerate(told)]
    out = dream(eps, None)
    trained = [d for made in out.dreams.values() for d in made if not d.heldout]
    answers: dict[str, set[str]] = {}
    for d in trained:
        answers.setdefault(d.question.lower(), set()).add(d.answer)
    assert trained and all(len(a) == 1 for a in answers.values())
    assert out.ambiguous > 0
    assert all(any(d.heldout for d in made) for made in out.dreams.values())


def test_a_night_hands_cloze_blank_only_to_dreaming(monkeypatch: pytest.MonkeyPatch) -> None:
    import sleep.dreams
    from assistant.config import SleepConfig
    from sleep import consolidate

    class Seen(Exception):
        pass

    def spy(*args: object, **kw: object) -> None:
        raise Seen(kw["blank_only"])

    monkeypatch.setattr(sleep.dreams, "dream", spy)
    for on in (False, True):
        with pytest.raises(Seen) as seen:
            consolidate.dream(None, [], {}, None, SleepConfig(cloze_blank_only=on), "", None)  # type: ignore[arg-type]
        assert seen.value.args == (on,)


def test_a_night_with_token_loss_weighs_its_examples_by_their_tokens() -> None:
    from tiny_lm import ByteTokenizer

    from assistant.config import SleepConfig
    from models.templates import template_for
    from sleep import consolidate
    from sleep.report import SleepReport

    learner = consolidate.Learner(None, ByteTokenizer(), template_for("gemma3"))  # type: ignore[arg-type]
    ep = Episode(session="s", messages=[{"role": "user", "content": FACT}, {"role": "assistant", "content": "Noted."}])
    made = {}
    for on in (False, True):
        cfg = SleepConfig(dreams=False, token_loss=on)
        made[on] = consolidate.dream(learner, [ep], {ep.id: 2.0}, None, cfg, "", SleepReport()).examples  # type: ignore[arg-type]
    off, weighed = made[False], made[True]
    assert len(off) == len(weighed) > 2 and {e.weight for e in off} == {2.0}
    sizes = [e.label_mass for e in weighed]
    assert len(set(sizes)) > 1  # answers of different lengths, so the weights differ
    for e, size in zip(weighed, sizes):
        assert e.weight == pytest.approx(2.0 * size * len(sizes) / sum(sizes))
