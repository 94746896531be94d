"""Wh-questions about a stated fact, answered by a span of it (sleep.questions)."""

from __future__ import annotations

import pytest

from sleep.dreams import answer_spans, augment, statement
from sleep.questions import wh_questions


def asked(text: str) -> dict[str, str]:
    fact = statement(text)
    return dict(wh_questions(fact, answer_spans(fact)))


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "My brother Tomas lives in Oslo and works as a carpenter.",
            {
                "Where does my brother Tomas live?": "Oslo",
                "What does my brother Tomas work as?": "carpenter",
                "Who lives in Oslo?": "Tomas",
            },
        ),
        (
            "The dentist appointment is on Thursday at 9:15.",
            {
                "Which day is the dentist appointment?": "Thursday",
                "What time is the dentist appointment on Thursday?": "9:15",
            },
        ),
        (
            "My daughter Mia plays violin every Saturday.",
            {
                "What does my daughter Mia play?": "violin",
                "Which day does my daughter Mia play violin?": "Saturday",
                "Who plays violin every Saturday?": "Mia",
            },
        ),
        ("I'm allergic to penicillin.", {"What am I allergic to?": "penicillin"}),
        ("Our cat is called Pixel.", {"What is our cat called?": "Pixel"}),
        (
            "I work at Siemens as an engineer.",
            {"Where do I work?": "Siemens", "What do I work at Siemens as?": "engineer"},
        ),
        (
            "We usually eat dinner at 7pm.",
            {"What time do we usually eat dinner?": "7pm", "What do we usually eat?": "dinner"},
        ),
        ("My dentist is Dr. Okafor.", {"Who is my dentist?": "Dr. Okafor"}),
        ("The wifi password is tiger42.", {"What is the wifi password?": "tiger42"}),
        # A name given in one clause stands for the thing in the next.
        (
            "Our cat is called Pixel and she sleeps on the sofa.",
            {"What is our cat called?": "Pixel", "Where does Pixel sleep?": "sofa"},
        ),
        (
            "My daughter's name is Ella and she studies law in Leeds.",
            {
                "What is my daughter's name?": "Ella",
                "What does Ella study?": "law",
                "Where does Ella study law?": "Leeds",
            },
        ),
        ("I rent a flat, and rent goes up in April.", {"What do I rent?": "flat", "When does rent go up?": "April"}),
        # What kind of thing a named one is.
        (
            "Our cat is called Pixel and she is a Siamese.",
            {"What is our cat called?": "Pixel", "What kind of cat is Pixel?": "Siamese", "What is Pixel?": "Siamese"},
        ),
        (
            "My horse's name is Juniper and she's an Arabian.",
            {
                "What is my horse's name?": "Juniper",
                "What kind of horse is Juniper?": "Arabian",
                "What is Juniper?": "Arabian",
            },
        ),
        # Measures are asked for with "How long/tall/heavy/old", also when added after a comma.
        ("The commute takes 35 minutes.", {"How long does the commute take?": "35 minutes"}),
        ("My nephew is 130 centimetres tall.", {"How tall is my nephew?": "130 centimetres tall"}),
        (
            "The lake we swim in is Loch Ard, roughly 2 miles.",
            {"What is the lake we swim in?": "Loch Ard", "How long is Loch Ard?": "2 miles"},
        ),
        # Places and times between the verb and a place do not stay in the question.
        (
            "The book club meets on Thursdays at 19:00 in the library.",
            {
                "Which day does the book club meet?": "Thursdays",
                "What time does the book club meet on Thursdays?": "19:00",
                "Where does the book club meet?": "library",
            },
        ),
        # How the user likes a thing.
        (
            "I like my coffee to be black and strong.",
            {"How do I like my coffee?": "black and strong", "What do I like?": "coffee"},
        ),
        # Only a name is a "who"; a noun is a "what".
        ("My uncle is a baker.", {"What is my uncle?": "baker"}),
        # A name leads the clause; its verb ends the name's run whatever the verb is.
        ("Biscuit weighs 12 kilos.", {"How heavy does Biscuit weigh?": "12 kilos"}),
        (
            "Oyelaran sits at the window and always brings samosas for lunch.",
            {
                "Where does Oyelaran sit?": "window",
                "What does Oyelaran always bring?": "samosas",
                "What does Oyelaran always bring samosas for?": "lunch",
            },
        ),
        ("Policy renews in March.", {"When does Policy renew?": "March"}),
        # A name leading a clause the rules cannot ask about is who the next pronoun stands for.
        ("Tomasz moved again, he's in Leeds now.", {"Where is Tomasz?": "Leeds"}),
        ("Kofi moved to Accra last year, and he teaches physics there now.", {"What does Kofi teach?": "physics"}),
        # A bare number is no time of day.
        (
            "My godson Tom turns 10 in August.",
            {
                "Who turns 10 in August?": "Tom",
                "What does my godson Tom turn?": "10",
                "When does my godson Tom turn 10?": "August",
            },
        ),
        # Sentences of one statement: a pronoun stands for the last subject.
        (
            "My aunt Vera keeps bees. She sells honey at the market.",
            {
                "What does my aunt Vera keep?": "bees",
                "Who keeps bees?": "Vera",
                "What does my aunt Vera sell?": "honey",
                "Where does my aunt Vera sell honey?": "market",
            },
        ),
    ],
)
def test_each_span_after_the_verb_gets_the_question_that_asks_for_it(text: str, expected: dict[str, str]) -> None:
    assert asked(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "My parents live in Porto.",  # a plural subject's verb is not told apart from a noun
        "I moved to Berlin in 2019.",  # past tenses are not turned into questions
        "Wonderful.",  # no clause at all
    ],
)
def test_clauses_the_rules_cannot_parse_give_no_question(text: str) -> None:
    assert asked(text) == {}


def test_no_question_contains_its_answer_or_a_clause_of_its_own() -> None:
    for text in [
        "I keep my passport in the blue drawer of the desk.",
        "I like answers to be short and in bullet points.",
        "I play the bass guitar in a band called The Late Owls.",
        "My laptop is a ThinkPad X1 that I bought in 2023.",
    ]:
        for question, span in asked(text).items():
            assert span.lower() not in question.lower()
            assert not {"that", "be", "of"} & set(question.lower().rstrip("?").split()), question


def test_augmentations_answer_each_wh_question_with_its_span_first() -> None:
    dreams = {d.question: d.answer for d in augment("My sister Priya lives in Lisbon and teaches chemistry.")}
    told = "Your sister Priya lives in Lisbon and teaches chemistry."
    assert dreams["Where does my sister Priya live?"] == f"Lisbon. {told}"
    assert dreams["What does my sister Priya teach?"] == f"chemistry. {told}"  # the user's word, as written
    assert dreams["Who lives in Lisbon?"] == f"Priya. {told}"
    # A question asked twice (a cloze "What is X?" and a wh-question) is trained once.
    questions = [d.question for d in augment("The garage door code is 5512.")]
    assert questions.count("What is the garage door code?") == 1


def test_a_name_given_after_what_it_names_is_asked_for_by_it() -> None:
    dreams = {d.question: d.answer for d in augment("My optician Oskar lives in Tromso.")}
    told = "Your optician Oskar lives in Tromso."
    assert dreams["What is my optician's name?"] == f"Oskar. {told}"
    assert dreams["What do you know about my optician?"] == told
    # No name after it, no question for one.
    assert not any(q.endswith("'s name?") for q in (d.question for d in augment("My optician lives in Tromso.")))
