"""Secrets stay out of the weights: which sentences of a message must never become training text.

A user may tell the assistant a card number, a password or a door code so it can help in the
conversation; that episode stays in the vault for the conversation, and is shredded with it.
But a model's weights outlive every shred, and a secret learned by heart is recited to whoever
asks. So a sentence that holds a secret is never trained on: not as the logged exchange, not in
an augmentation or a dream.

A secret is recognised by its shape and by what the sentence says it is:
- shapes no everyday fact has: a long run of digits (card, account and phone numbers: eight
  digits or more, so every payment card and IBAN is caught whether or not its checksum holds), a
  word mixing letters and digits with symbols or case ("velvet#22", "sk-4f9a..."), a long token
  of letters and digits, a token that starts as published API keys and access tokens do
  ("ghp_", "xoxb-", "AKIA"...), and a long token of letters alone that reads as random (varied
  letters in both cases, few vowels);
- a named kind of secret (password, PIN, passcode, combination, API key, token...) next to a
  value;
- a value of a few digits or a letters-and-digits code next to a word that makes it an
  identifier or a code (number, code, account, card, ID, login, licence, passport...).
Times, dates, years, measures and prices are none of these.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from assistant.episode import FLAG_SECRET, Episode
from sleep.sentences import sentences

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
_KEY_PREFIX = re.compile(
    r"^(?:sk|pk|rk)[-_](?:live|test|proj|ant)?[-_]?\w{8,}|^(?:ghp|gho|ghu|ghs|ghr|github_pat|glpat|hf|npm|pypi|shpat|"
    r"xox[abposr])[-_][\w-]{8,}|^AKIA[0-9A-Z]{12,}|^AIza[\w-]{20,}|^eyJ[\w-]{8,}\.[\w-]{8,}"
)
"""How widely used services write their API keys and tokens (Stripe and OpenAI "sk-", GitHub
"ghp_", Slack "xoxb-", AWS "AKIA", Google "AIza", a JWT's "eyJ..."): one of these is a key
whatever it is called."""


def key_prefix(token: str) -> str:
    """The start that every key of a known service shares ("sk-live-" of "sk-live-4Rz8QpT1mW9e",
    "ghp_", "AKIA"), or "" when `token` is no such key."""
    if not _KEY_PREFIX.match(token):
        return ""
    m = re.match(r"(?:[a-z]+[-_])+|AKIA|AIza|eyJ", token)
    return m.group() if m else ""


_RANDOM_MIN = 16
"""Shortest token of letters alone that is judged by how random it reads."""
_RANDOM_BITS = 3.5
"""Bits of entropy per character from which such a token may be random: English words and names
repeat their few letters ("responsibilities" 3.1, "incomprehensible" 3.5; 16 random letters about
3.7): this alone does not tell them apart, the share of vowels does."""
_RANDOM_VOWELS = 0.3
"""Share of vowels (y counted) below which such a token is no word: words and names are near
0.4, strings drawn from 52 letters near 0.23 ("PricewaterhouseCoopers" 0.45, "hGtrKqwZpLmXbvNc" 0)."""
_MEASURE_AFTER = re.compile(
    r"\s*(?:%|percent|kilo|kg|km|mile|metre|meter|cm|minute|hour|day|week|month|year|"
    r"euro|dollar|pound|st|nd|rd|th|am|pm|o'clock|degree|people|times)",
    re.I,
)


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _core(token: str) -> str:
    """A token without the punctuation and quotes around it."""
    return token.strip(".,;:!?()[]\"'")


def _strong(token: str) -> bool:
    """A token no everyday fact is written as."""
    core = _core(token)
    if len(core) < 6 or not any(c.isdigit() for c in core):
        return False
    has_alpha = any(c.isalpha() for c in core)
    symbols = re.search(r"[#$%&*@!^~+=_/\\|]", core) is not None
    mixed_case = any(c.islower() for c in core) and any(c.isupper() for c in core)
    return has_alpha and (symbols or mixed_case or len(core) >= 12)


def _random(token: str) -> bool:
    """A long token of letters alone, in both cases, that reads as random: varied characters
    and few vowels (tokens with digits in them are `_strong`'s)."""
    core = _core(token)
    if len(core) < _RANDOM_MIN or not core.isalpha() or core.islower() or core.isupper():
        return False
    counts = Counter(core)
    bits = -sum(n / len(core) * math.log2(n / len(core)) for n in counts.values())
    vowels = sum(c in "aeiouyAEIOUY" for c in core) / len(core)
    return bits >= _RANDOM_BITS and vowels < _RANDOM_VOWELS


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
    tokens = _TOKEN.findall(sentence)
    if any(_strong(t) or _random(t) or _KEY_PREFIX.match(_core(t)) for t in tokens):
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


def masked(text: str) -> str:
    """`text` with each sentence that holds a secret shown as "[secret]"."""
    return " ".join("[secret]" if is_secret(s) else s for s in sentences(text))


def holds_secret_text(text: str) -> bool:
    """Whether any sentence of `text` holds a secret."""
    return any(is_secret(s) for s in sentences(text))


def holds_secret(episode: Episode) -> bool:
    """Whether the exchange was flagged as holding a secret when it was logged, or any of its
    messages or its correction holds one (an episode logged before the flag existed, a reply
    that repeats a secret)."""
    if FLAG_SECRET in episode.flags:
        return True
    texts = [str(m.get("content", "")) for m in episode.messages] + [episode.correction or ""]
    return any(holds_secret_text(text) for text in texts)
