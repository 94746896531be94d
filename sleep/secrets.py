"""Secrets stay out of the weights: which sentences of a message must never become training text.

A user may tell the assistant a card number, a password or a door code so it can help in the
conversation; that episode stays in the vault for the conversation, and is shredded with it.
But a model's weights outlive every shred, and a secret learned by heart is recited to whoever
asks. So a sentence that holds a secret is never trained on: not as the logged exchange, not in
an augmentation or a dream.

A secret is recognised by its shape and by what the sentence says it is:
- shapes no everyday fact has: a long run of digits (card, account and phone numbers), a word
  mixing letters and digits with symbols or case ("velvet#22", "sk-4f9a..."), a long token of
  letters and digits;
- a named kind of secret (password, PIN, passcode, combination, API key, token...) next to a
  value;
- a value of a few digits or a letters-and-digits code next to a word that makes it an
  identifier or a code (number, code, account, card, ID, login, licence, passport...).
Times, dates, years, measures and prices are none of these.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sleep.sentences import sentences

if TYPE_CHECKING:
    from assistant.episode import Episode

_NAMED = re.compile(
    r"\b(?:pass(?:word|code|phrase)s?|pins?|pin codes?|cvv|cvc|api[- ]?keys?|secret keys?|private keys?|"
    r"access tokens?|auth(?:entication)? tokens?|bearer tokens?|recovery codes?|security codes?|combinations?|"
    r"one[- ]time codes?|otp|seed phrase|mnemonic)\b",
    re.I,
)
_IDENTIFYING = re.compile(
    r"\b(?:numbers?|no\.|codes?|accounts?|cards?|ids?|logins?|usernames?|customer|member(?:ship)?|licen[cs]e|"
    r"passports?|insurance|social security|ssn|iban|routing|sort code|serial|policy|alarm|door|gate|safe|"
    r"locker|lock|key ?pad|wifi|wi-fi)\b",
    re.I,
)
# A run of digit groups ("4111 1111 1111 1111", "JT 62 91 04 B", "14-37-22"): spaces, hyphens and
# dots between groups; a time ("14:30") or a decimal ("9.5") stays short of the digit counts below.
_DIGIT_RUN = re.compile(r"(?<![\w:])(?:[A-Za-z]{0,3}\d[\dA-Za-z]*(?:[ .-](?=[\dA-Za-z]*\d|[A-Z]\b)[\dA-Za-z]+)*)")
_TOKEN = re.compile(r"\S+")
_MEASURE_AFTER = re.compile(
    r"\s*(?:%|percent|kilo|kg|km|mile|metre|meter|cm|minute|hour|day|week|month|year|"
    r"euro|dollar|pound|st|nd|rd|th|am|pm|o'clock|degree|people|times)",
    re.I,
)


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _strong(token: str) -> bool:
    """A token no everyday fact is written as."""
    core = token.strip(".,;:!?()[]\"'")
    if len(core) < 6 or not any(c.isdigit() for c in core):
        return False
    has_alpha = any(c.isalpha() for c in core)
    symbols = re.search(r"[#$%&*@!^~+=_/\\|]", core) is not None
    mixed_case = any(c.islower() for c in core) and any(c.isupper() for c in core)
    return has_alpha and (symbols or mixed_case or len(core) >= 12)


def _runs(text: str) -> list[str]:
    """Digit-group runs that are not measures, times, dates with a unit, or ordinals."""
    out = []
    for m in _DIGIT_RUN.finditer(text):
        run = m.group().strip(" .-")
        if (
            not run
            or _MEASURE_AFTER.match(text[m.end() :])
            or re.fullmatch(r"(?:19|20)\d\d", run)
            or re.fullmatch(r"\d+(?:st|nd|rd|th|s)", run, re.I)
        ):
            continue
        out.append(run)
    return out


def is_secret(sentence: str) -> bool:
    """Whether `sentence` holds a secret (see the module docstring)."""
    if any(_strong(t) for t in _TOKEN.findall(sentence)):
        return True
    runs = _runs(sentence)
    if any(_digits(r) >= 8 for r in runs):
        return True
    named = _NAMED.search(sentence) is not None
    if named and re.search(r"\b(?:is|are|was|:|=)\s*\S", sentence, re.I):
        return True
    return (named or _IDENTIFYING.search(sentence) is not None) and any(
        _digits(r) >= 4 or (_digits(r) >= 1 and re.search(r"[A-Za-z]", r)) for r in runs
    )


def without_secrets(text: str) -> str:
    """`text` without the sentences that hold a secret ("" when every one does)."""
    return " ".join(s for s in sentences(text) if not is_secret(s))


def holds_secret(episode: "Episode") -> bool:
    """Whether any message of the exchange, or its correction, holds a secret."""
    texts = [str(m.get("content", "")) for m in episode.messages] + [episode.correction or ""]
    return any(is_secret(s) for text in texts for s in sentences(text))
