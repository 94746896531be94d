"""Reconsolidation: an earlier night's questions, recalled by the model, answered with what the
user changed tonight (sleep.reconsolidate)."""

from __future__ import annotations

from assistant.episode import Episode
from sleep.dreams import Dream, dream
from sleep.reconsolidate import first_person, previously, relink, terms


def recalling(*known: str):  # type: ignore[no-untyped-def]
    """A serving model that recalls each of `known` (its own words) when asked about a word of it."""
    asked: list[str] = []

    def recall(question: str) -> str:
        asked.append(question)
        thing = question.removeprefix("What do you know about ").rstrip("?").lower()
        return next((k for k in known if set(thing.split()) & set(k.lower().rstrip(".").split())), "I don't know.")

    return recall, asked


def led(dreams: list[Dream]) -> dict[str, str]:
    return {d.question: d.lead for d in dreams}


def test_the_old_question_is_answered_with_the_new_value() -> None:
    recall, asked = recalling("Your cousin Tomasz lives in Leeds.")
    made = relink("Tomasz moved again, he's in Bristol now.", recall)
    assert led(made) == {
        "Where does my cousin Tomasz live?": "Bristol.",
        "Where did my cousin Tomasz live before?": "Leeds.",  # the old value, as what it was
    }
    assert made[0].answer == "Bristol. Tomasz moved again, he's in Bristol now."
    assert "What do you know about Tomasz?" in asked


def test_a_number_is_changed_in_the_recalled_sentence_too() -> None:
    recall, _ = recalling("Your locker at the climbing gym is number 31.")
    made = led(relink("They renumbered the lockers at the climbing gym, so my locker is number 164 now.", recall))
    assert made["Fill in the blank from what I told you: Your locker at the climbing gym is ___."] == "number 164."
    assert made["What is my locker at the climbing gym?"] == "number 164."
    assert made["What was my locker at the climbing gym before?"] == "number 31."
    assert set(made.values()) == {"number 164.", "number 31."}


def test_nothing_is_made_without_a_recall_about_what_tonight_names() -> None:
    recall, asked = recalling("Your neighbour Aurelio keeps bees in Halifax.")
    assert relink("Tomasz moved again, he's in Bristol now.", recall) == []
    assert asked  # it was asked, and recalled nothing about Tomasz or Bristol


def test_nothing_is_made_where_tonight_repeats_the_old_value_or_answers_two_ways() -> None:
    recall, _ = recalling("Your cousin Tomasz lives in Leeds.")
    assert relink("Tomasz loves Leeds, he's in Leeds for good.", recall) == []
    # Two places tonight: which one he lives in now is not for a rule to guess.
    assert relink("Tomasz works in Bristol and lives in Truro now.", recall) == []


def test_a_recall_about_another_one_of_the_same_kind_changes_nothing() -> None:
    recall, _ = recalling("Your cousin Aurelio lives in Halifax.")
    assert relink("My cousin Tomasz lives in Bristol now.", recall) == []


def test_a_recalled_secret_never_becomes_a_question() -> None:
    recall, _ = recalling("Your locker code at the climbing gym is 4471.")
    tonight = "They moved the lockers at the climbing gym, my locker is number 164 now."
    assert relink(tonight, recall) == []


def test_a_question_about_now_is_asked_about_before() -> None:
    assert previously("What time is the pickup?") == "What time was the pickup before?"
    assert previously("What does my partner work as?") == "What did my partner work as before?"
    assert previously("Fill in the blank from what I told you: Your locker is ___.") is None


def test_recalled_words_are_put_back_in_the_users_voice() -> None:
    assert first_person("You're a surveyor and your sister lives with you.") == (
        "I'm a surveyor and my sister lives with me."
    )
    assert first_person("Your flat is yours, you said.") == "My flat is mine, I said."


def test_what_a_statement_names_is_asked_about_numbers_alone_are_not() -> None:
    named = terms("My cousin Tomasz is 31 and lives in Bristol.")
    assert named[:2] == ["my cousin Tomasz", "Bristol"] and not [t for t in named if "31" in t]


def test_the_nights_dreams_count_what_was_relinked() -> None:
    recall, _ = recalling("Your cousin Tomasz lives in Leeds.")
    ep = Episode.from_exchange("s1", "Tomasz moved again, he's in Bristol now.", "Noted.", "gen-0001", 0.0)
    made = dream([ep], None, relink=lambda source: relink(source, recall))
    assert made.relinked == 2  # the question about now, and the same about before
    assert "Where does my cousin Tomasz live?" in {d.question for d in made.dreams[ep.id]}
