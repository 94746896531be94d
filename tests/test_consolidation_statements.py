"""What a night dreams of: the sentences of each message, joined where they lean on each other,
without small talk and never with a secret (sleep.sentences, sleep.secrets, sleep.dreams.statements)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bench
from assistant.episode import FLAG_SECRET, Episode
from sleep.dreams import dream, statements
from sleep.secrets import holds_secret, is_secret, key_prefix, without_secrets
from sleep.sentences import sentences


def _episode(session: str, user: str, reply: str = "OK.") -> Episode:
    return Episode.from_exchange(session, user, reply, "gen-0000", 0.0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Ugh, what a week. Work was chaos.", ["Ugh, what a week.", "Work was chaos."]),
        ("My dentist is Dr. Okafor. She is kind.", ["My dentist is Dr. Okafor.", "She is kind."]),
        ("It weighs 9.5 kilos now! Great?", ["It weighs 9.5 kilos now!", "Great?"]),
        ("Two weeks in Tbilisi — Ottilie wants to go.", ["Two weeks in Tbilisi", "Ottilie wants to go."]),
        ("I live in Rome. My sister too.", ["I live in Rome.", "My sister too."]),
        ("", []),
    ],
)
def test_sentences_end_at_full_stops_but_not_abbreviations_or_decimals(text: str, expected: list[str]) -> None:
    assert sentences(text) == expected


@pytest.mark.parametrize(
    "sentence",
    [
        "My PIN is 4512.",
        "The wifi password is tiger42.",
        "My password is swordfish.",
        "My card number is 4111 1111 1111 1111.",
        "Our API key is sk-live-9f8a7b6c5d4e.",
        "The alarm code is 2580.",
        "My passport number is X4821937.",
        "Call me on 07700 900123.",
        "My login is customer number 88204617.",
        "Use ghp_abcdefghijklmnopqrstuvwx for the repo.",
        "The AWS one is AKIAIOSFODNN7EXAMPLE.",
        "token: abcdefghijklmnopqrstuvwxyzABCDEF",
        "It's hGtrKqwZpLmXbvNcQs, paste it in.",
    ],
)
def test_secrets_are_recognised_by_shape_and_kind(sentence: str) -> None:
    assert is_secret(sentence)


@pytest.mark.parametrize(
    "sentence",
    [
        "My parking spot is number 113 now.",
        "I was born in 1987.",
        "The meeting is at 14:30 on the 3rd.",
        "I ran 10 kilometres in 52 minutes.",
        "My flat is at 221 Baker Street.",
        "My sister Marisol lives in Guadalajara.",
        "Biscuit weighs 7.5 kilos.",
        "Her birthday is on the 2nd of December.",
        "She works at PricewaterhouseCoopers in Frankfurt.",
        "He studies internationalization and localization.",
    ],
)
def test_everyday_facts_with_numbers_are_no_secrets(sentence: str) -> None:
    assert not is_secret(sentence)


def test_the_development_sets_secrets_are_flagged_when_logged_and_nothing_else_is() -> None:
    items = [json.loads(line) for line in (Path(bench.__file__).parent / "eval" / "facts.jsonl").open()]
    flagged = {}
    for item in items:
        update = (item.get("update") or {}).get("teach", [])
        told = item["teach"] + ([update] if isinstance(update, str) else update)
        logged = [Episode.from_exchange("s", text, "OK.", "gen-0000", 0.0) for text in told]
        flagged[item["id"]] = any(FLAG_SECRET in ep.flags for ep in logged)
    secret = {item["id"] for item in items if item["category"] == "secret"}
    assert len(secret) >= 10 and {i for i, f in flagged.items() if f} == secret


@pytest.mark.parametrize(
    ("token", "prefix"),
    [
        ("sk-live-4Rz8QpT1mW9eXc27", "sk-live-"),
        ("ghp_Zq81mW0aT4kLx9Yb2", "ghp_"),
        ("github_pat_11AbC9xYz0Q", "github_pat_"),
        ("AKIAZ3Q8M1T0X2Y7W9K4", "AKIA"),
        ("sk-", ""),
        ("velvetRiver#2209", ""),
    ],
)
def test_a_keys_service_prefix_is_what_every_key_of_it_shares(token: str, prefix: str) -> None:
    assert key_prefix(token) == prefix


def test_a_secret_sentence_is_dropped_and_the_rest_kept() -> None:
    assert without_secrets("I'm at the bank. My PIN is 4512. Back soon.") == "I'm at the bank. Back soon."
    assert holds_secret(_episode("s", "Help me book.", "Sure, your PIN 4512 is noted."))
    assert not holds_secret(_episode("s", "My sister lives in Oslo."))


def test_statements_split_messages_join_what_leans_back_and_drop_small_talk_and_secrets() -> None:
    eps = [
        _episode("a", "Ugh, what a week. My coach Adaeze wants me to fix my breathing. She swam for Ghana."),
        _episode("b", "We're finally booking a trip away!"),
        _episode("b", "Thinking a week in Tbilisi in March."),
        _episode("c", "Can you suggest a gift for my friend Leo? He's really into bonsai trees."),
        _episode("d", "For the form: my passport number is X4821937. Thanks a lot."),
    ]
    got = statements(eps)
    assert got[eps[0].id] == ["My coach Adaeze wants me to fix my breathing. She swam for Ghana."]
    assert got[eps[1].id] == ["We're finally booking a trip away!"]
    # A fact told over two messages of one conversation is dreamed as one statement.
    assert got[eps[2].id] == ["We're finally booking a trip away! Thinking a week in Tbilisi in March."]
    # After a question, the pronoun stands for what the question named.
    assert got[eps[3].id] == ["My friend Leo's really into bonsai trees."]
    assert got[eps[4].id] == []


def test_no_dream_or_probe_holds_a_secret() -> None:
    eps = [_episode("a", "The door code is 7731 and my neighbour Ama has a spare key.")]
    eps += [_episode("b", "My online banking password is velvetRiver#2209.")]
    made = dream(eps, None)
    texts = [d.question + " " + d.answer for ds in made.dreams.values() for d in ds]
    assert not made.dreams[eps[1].id] and not any("7731" in t or "velvet" in t for t in texts)
