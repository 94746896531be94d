"""Wh-questions about a statement, each answered by a span of it: part of dreaming.

"My sister Priya lives in Lisbon and teaches chemistry." is later asked about as "Where does my
sister live?" and "What does Priya teach?". A reply to such a question should start with its
answer, and the model learns that only from questions of that shape. So each clause of a
statement (subject, verb, the rest) gives, for each answer span after its verb, the question
that asks for it: the span's preposition picks the question word ("in Lisbon" -> Where, "on
Wednesdays" -> Which day, "at 14:30" -> What time), a span right after the verb is its object
("teaches chemistry" -> What does ... teach?), and "as"/"with"/"for"/"called" stay at the end
("What does my partner Sam work as?"). Measures are asked with How ("about 11 kilometres" ->
"How long is the Cedar Ridge loop?"), "I like X to be Y" with "How do I like X?", and a named
thing's kind with "What kind of": "my dog's name is Biscuit and he's a beagle" -> "What kind of
dog is Biscuit?". Clauses these rules cannot parse give no question: the rules prefer silence
to a wrong question.
"""

from __future__ import annotations

import re

from sleep.sentences import sentences

_COPULA = {"is", "are", "was", "were", "am", "'s", "'re", "'m"}
_PRONOUNS = {"i": "do", "we": "do", "you": "do", "they": "do", "he": "does", "she": "does", "it": "does"}
_DETERMINERS = {"my", "our", "the", "your", "his", "her", "their"}
_ADVERBS = {"also", "always", "usually", "often", "never", "especially", "really", "still", "just", "only"}
_SKIP = {"the", "a", "an", "every", "each", "about", "my", "our", "your", "some"}
_WHERE = {"in", "at", "on", "from", "near", "inside", "under", "behind"}
_STRANDED = {"as", "with", "for", "about", "called", "named", "to"}
_PREPOSITIONS = _WHERE | _STRANDED | {"by"}
_SELF = {"I", "we", "you"}
_CONNECTIVES = {"and", "but", "or", "so", "then", "also", "not", "only", "just", "about"}
_NAMING = re.compile(r"^(?:(?:is|are)\s+)?(?:called|named)\s+((?:[A-Z][\w'-]*\s?)+)$|^((?:[A-Z][\w'-]*\s?)+)$")
_CLAUSE_WORDS = {"and", "or", "that", "which", "who", "be", "when", "if", "because", "of"}
_PEOPLE = set(
    """sister brother mother father mum mom dad parent son daughter child kid partner wife husband
doctor dentist neighbour neighbor friend boss manager colleague teacher cousin aunt uncle grandmother
grandfather grandma grandpa coach landlord landlady vet therapist""".split()
)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
"""The calendar's names: capitalised like names, but dates ("on Wednesdays" asks Which day)."""
_WEEKDAY = re.compile(r"(?:" + "|".join(d.removesuffix("day") for d in WEEKDAYS) + r")days?$", re.I)
_MONTH = re.compile(r"(?:" + "|".join(MONTHS) + r")$", re.I)
_CLOCK = re.compile(r"\d{1,2}(?::\d\d\s*(?:am|pm)?|\s*(?:am|pm))$", re.I)
"""A time of day is written with a colon or am/pm: a bare number ("turns 10") is no time."""
_YEAR = re.compile(r"(?:19|20)\d\d$")
_UNITS = {
    "How long": (
        r"kilometres?|kilometers?|km|miles?|metres?|meters?|centimetres?|centimeters?|cm|feet|foot|ft|"
        r"inches|inch|minutes?|hours?|days?|weeks?|months?"
    ),
    "How heavy": r"kilos?|kilograms?|kg|pounds?|lbs?",
    "How old": r"years? old",
}
_MEASURE = re.compile(
    r"(?:about|around|roughly|nearly|almost|over|under)?\s*(\d[\d.,]*\s*(?:" + "|".join(_UNITS.values()) + r"))$", re.I
)
_LIKING = {"like", "want", "prefer", "need"}
_NOT_VERB_S = {"is", "was", "has", "does", "this", "his", "its", "yes", "always", "sometimes", "bus", "plus", "status"}


def _base(verb: str) -> str:
    """Third-person -s form to base form ("lives" -> "live", "teaches" -> "teach")."""
    v = verb.lower()
    if v.endswith("ies") and len(v) > 4:
        return v[:-3] + "y"
    if re.search(r"(?:ch|sh|ss|x|z|o)es$", v):
        return v[:-2]
    return v[:-1]


def clauses(fact: str) -> list[str]:
    """The clauses of `fact`: its sentences split at commas, dashes and at "and" before a new
    subject or a verb ("lives in Lisbon and teaches chemistry")."""
    parts = [
        p
        for sentence in sentences(fact)
        for p in re.split(
            r",\s*(?:and\s+)?|\s+and\s+(?=(?:he|she|it|they|I|we|my|our|the)\b|[a-z]+s\s)|\s+[—–-]\s+", sentence
        )
    ]
    return [p.strip().rstrip(".!?;") for p in parts if p.strip().rstrip(".!?;")]


def _parse(clause: str, previous: tuple[str, str] | None) -> tuple[str, str, str, list[str]] | None:
    """(subject, auxiliary, verb, rest) of a clause in the user's voice, or None.

    Copulas give an empty verb ("the meeting" "is" "" [on, Mondays, ...]); -s verbs take "does"
    ("my sister Priya" "does" "live" [in, Lisbon]); I/we take "do". A clause that starts with
    he/she/it/they borrows the previous clause's subject ("it runs" -> "our tool")."""
    toks = clause.split()
    if not toks:
        return None
    low = [t.lower() for t in toks]
    first = low[0]
    contraction = re.fullmatch(r"(i|we|you|he|she|it|they)('m|'re|'s)", first)
    if contraction:
        subject = _referent(toks[0][: -len(contraction.group(2))], previous)
        aux = {"'m": "am", "'re": "are", "'s": "is"}[contraction.group(2)]
        return _finish(subject, aux, "", toks[1:]) if subject else None
    if first in _PRONOUNS:
        subject = _referent(toks[0], previous)
        return _verb_phrase(subject, _PRONOUNS[first], toks[1:]) if subject else None
    if previous is not None and previous[1] == "does":
        k = 0
        while k < len(low) - 1 and _adverb(low[k]):
            k += 1
        if low[k].endswith("s") and low[k] not in _NOT_VERB_S:  # "... and (always) teaches chemistry"
            return _finish(previous[0], "does", " ".join(toks[:k] + [_base(low[k])]), toks[k + 1 :])
    if first in _DETERMINERS:
        for i in range(1, len(toks)):
            w = low[i]
            if w in _COPULA:
                return _finish(" ".join(toks[:i]), w, "", toks[i + 1 :])
            if (
                w.endswith("s")
                and not w.endswith("'s")
                and w not in _NOT_VERB_S
                and low[i - 1] not in _DETERMINERS
                and len(w) > 3
                and i + 1 < len(toks)
                and not toks[i][:1].isupper()
            ):
                return _finish(" ".join(toks[:i]), "does", _base(w), toks[i + 1 :])
        return None
    if (
        len(toks) > 2
        and toks[0].isalpha()
        and toks[0].islower()
        and first not in _CONNECTIVES | _ADVERBS
        and low[1].endswith("s")
        and low[1] not in _NOT_VERB_S
        and len(low[1]) > 3
    ):
        return _finish(toks[0], "does", _base(low[1]), toks[2:])  # a bare noun: "rent goes up in April"
    # A name as the subject: "Oyelaran is a pilot", "Biscuit weighs 12 kilos", "Dr. Lee has ...".
    n = len(_leading_name(clause).split())
    if n:
        w = low[n]
        if w in _COPULA:
            return _finish(" ".join(toks[:n]), w, "", toks[n + 1 :])
        if w == "has" and not (low[n + 1] == "been" or low[n + 1].endswith(("ed", "en"))):
            return _finish(" ".join(toks[:n]), "does", "have", toks[n + 1 :])
        if w.endswith("s") and w not in _NOT_VERB_S and len(w) > 3 and w.isalpha():
            return _finish(" ".join(toks[:n]), "does", _base(w), toks[n + 1 :])
    return None


def _leading_name(clause: str) -> str:
    """The capitalised words a clause starts with, when a lower-case word follows ("" if none)."""
    toks = clause.split()
    n = 0
    while n < len(toks) and toks[n][:1].isupper() and toks[n].rstrip(".").isalpha():
        n += 1
    # Two words alone ("Good news", "Time flies") are an exclamation more often than a clause.
    if n == 0 or n >= len(toks) - 1 or toks[0].lower() in _DETERMINERS | set(_PRONOUNS) or not toks[n][:1].islower():
        return ""
    return " ".join(toks[:n])


def verbs(fact: str) -> set[str]:
    """The verbs of `fact`'s clauses as written ("lives", "weighs", "left"), lower case: where a
    run of content words ends ("my sister Priya" | "lives" | "Lisbon"), found from the clause's
    shape, not from a list of verbs. A clause led by a name takes its next lower-case word."""
    out: set[str] = set()
    previous = None
    for clause in clauses(fact):
        toks = clause.split()
        parsed = _parse(clause, previous)
        if parsed is not None:
            previous = (parsed[0], parsed[1])
            lead = (
                len(parsed[0].split())
                if clause.lower().startswith(parsed[0].lower())
                else (1 if toks[0].lower() in _PRONOUNS or "'" in toks[0] else 0)
            )
        else:
            name = _leading_name(clause)
            previous = (name, "") if name else previous
            lead = len(name.split()) or (1 if toks[0].lower() in _PRONOUNS else 0)
            if lead == 0:
                continue
        rest = toks[lead:]
        while rest and _adverb(rest[0]):
            rest = rest[1:]
        if rest and rest[0].isalpha() and rest[0].islower():
            out.add(rest[0].lower())
    return out


def _referent(pronoun: str, previous: tuple[str, str] | None) -> str | None:
    """Who a pronoun subject is: he/she/it/they stand for the previous clause's subject (None
    when there is none); I/we/you are themselves."""
    if pronoun.lower() not in {"he", "she", "it", "they"}:
        return pronoun
    return previous[0] if previous is not None else None


def _adverb(word: str) -> bool:
    w = word.lower()
    return w in _ADVERBS or (w.endswith("ly") and len(w) > 4 and w.isalpha())


def _verb_phrase(subject: str, aux: str, toks: list[str]) -> tuple[str, str, str, list[str]] | None:
    """After a pronoun subject: adverbs, then the verb (a copula or a plain verb)."""
    adverbs = []
    while toks and _adverb(toks[0]):
        adverbs.append(toks[0])
        toks = toks[1:]
    if not toks:
        return None
    w = toks[0].lower()
    if w in _COPULA:
        if toks[1:2] and toks[1].lower().endswith(("ed", "en", "rn")):  # "I was born in ..."
            return _finish(subject, w, " ".join(adverbs + [toks[1]]), toks[2:])
        return _finish(subject, w, "", toks[1:])
    if aux == "does":
        if not w.endswith("s"):
            return None
        w = _base(w)
    elif w.endswith("ed") or not w.isalpha():
        return None
    return _finish(subject, aux, " ".join(adverbs + [w]), toks[1:])


def _finish(subject: str, aux: str, verb: str, rest: list[str]) -> tuple[str, str, str, list[str]] | None:
    if not rest:
        return None
    if subject.lower() in {"i"}:
        subject = "I"
    return subject, aux, verb, rest


def _measure_kind(span: str) -> str | None:
    """ "How long" for "11 kilometres" or "40 minutes", "How tall" for "2 metres tall", "How heavy"
    for kilos, "How old" for years old; None for anything else."""
    for kind, units in _UNITS.items():
        m = re.fullmatch(r"\d[\d.,]*\s*(?:" + units + r")(?:\s+(long|tall|high|wide|deep))?", span, re.I)
        if m:
            return f"How {m.group(1).lower()}" if m.group(1) else kind
    return None


def _kind(span: str, before: str) -> str | None:
    """The question word for `span` preceded by `before` (its preposition or the verb)."""
    measure = _measure_kind(span)
    if measure:
        return measure
    if _WEEKDAY.match(span):
        return "Which day"
    if _CLOCK.fullmatch(span):
        return "What time"
    if _MONTH.match(span) or _YEAR.fullmatch(span):
        return "When"
    if before in _WHERE:
        return "Where"
    if before in _STRANDED or before == "":
        return "What"
    return None


def _voice(subject: str) -> str:
    """A subject as it reads mid-question: "My sister" -> "my sister", "I" stays."""
    head, _, tail = subject.partition(" ")
    return (head.lower() if head.lower() in _DETERMINERS | {"we", "you"} else head) + (" " + tail if tail else "")


def wh_questions(fact: str, spans: list[str]) -> list[tuple[str, str]]:
    """(question, span) pairs for the `spans` of `fact` (the user's words) that a question can
    ask for; questions are in the user's voice and never contain their answer."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(question: str, span: str) -> None:
        question = re.sub(r"\s+", " ", question).strip(" ,") + "?"
        if span.lower() not in question.lower() and question.lower() not in seen:
            seen.add(question.lower())
            out.append((question, span))

    previous = None
    kinds: dict[str, str] = {}  # name -> what it names
    complement = None  # what the last copula clause said its subject is: "the Cedar Ridge loop"
    for clause in clauses(fact):
        parsed = _parse(clause, previous)
        if parsed is None:
            # A measure added on its own: "..., about 11 kilometres" -> "How long is the Cedar Ridge loop?"
            measure = _MEASURE.fullmatch(clause)
            kind = _measure_kind(measure.group(1)) if measure else None
            if measure and kind and complement:
                add(f"{kind} {complement[1]} {complement[0]}", measure.group(1))
            # A name leading a clause the rules cannot ask about ("Tomasz moved again") is still
            # who a pronoun after it stands for: "... he's in Leeds now" -> "Where is Tomasz?"
            name = _leading_name(clause)
            previous = (name, "") if name else previous
            continue
        subject, aux, verb, rest = parsed
        text, copular = " ".join(rest), aux in _COPULA and not verb
        complement = (text, aux) if copular else None
        # A name given here stands for the thing in the next clause: "my dog's name is Biscuit
        # and he's a beagle" -> "What is Biscuit?"; "our tool is called Kestrel and it runs ...".
        naming = _NAMING.match(text) if copular else None
        if naming and (subject.lower().endswith("name") or naming.group(1)):
            previous = ((naming.group(1) or naming.group(2)).strip(), aux)
            # What the name names ("dog" in "my dog's name", "cat" in "our cat is called"),
            # to ask what kind of one it is: "he's a beagle" -> "What kind of dog is Biscuit?"
            kinds[previous[0]] = re.sub(r"'s name$", "", subject, flags=re.I).split()[-1].lower()
        else:
            previous = (subject, aux)
        kind_of = re.fullmatch(r"an? ((?:[\w'-]+ ?){1,3})", text) if copular and subject in kinds else None
        if kind_of and (sort := kind_of.group(1).strip()) in spans:
            add(f"What kind of {kinds[subject]} {aux} {subject}", sort)
        subject = _voice(subject)
        # How the user likes a thing: "I like answers to be short" -> "How do I like answers?"
        liking = re.fullmatch(r"(\w+(?: \w+)?) to be (.+)", text) if verb in _LIKING else None
        if liking:
            add(f"How {aux} {subject} {verb} {liking.group(1)}", liking.group(2))
        # A name closing the subject is asked for by what it does: "Who waters my plants?"
        closing = re.search(r"(?<=\s)(?:[A-Z][\w'-]*\s?)+$", subject)
        words = clause.split()
        if closing and verb and clause.lower().startswith(subject.lower()) and len(words) > len(subject.split()):
            add(f"Who {words[len(subject.split())].lower()} {text}", closing.group().strip())
        for span in spans:
            at = re.search(r"(?<!\w)" + re.escape(span) + r"(?!\w)", text)
            if at is None or span.lower().endswith("ing"):
                continue
            head = text[: at.start()].split()
            skipped = []
            while head and head[-1].lower() in _SKIP:
                skipped.append(head.pop().lower())
            before = head[-1].lower() if head else ""
            kind = _kind(span, before)
            if kind is None or (kind in ("What", "Where") and {"every", "each"} & set(skipped)):
                continue
            if kind == "Where" and {"a", "an"} & set(skipped):
                continue  # "in a band": not a place to ask for
            if kind == "What" and not before and not verb and subject in _SELF:
                continue  # "I'm vegetarian": "What am I?" is no question to train on
            if (
                kind == "What"
                and before == ""
                and aux in _COPULA
                and subject.split()[-1].lower() in _PEOPLE
                and span[:1].isupper()
            ):
                kind = "Who"
            # The words between the verb and the span's preposition (kept, unless they make a
            # clause of their own); "as", "with", "for", "called" stay at the end.
            middle = head if kind == "What" and before in _STRANDED else head[:-1] if before in _PREPOSITIONS else head
            if kind.startswith("How"):
                middle = []  # "How long is the trail?": the measure is the whole answer
            if _CLAUSE_WORDS & {w.lower() for w in middle}:
                continue
            if len(middle) > 3:
                # A long run of prepositional phrases (other places and times) is left out:
                # "Where is the weekly planning meeting?", not "... on Mondays at 14:30?".
                if kind == "What" or middle[0].lower() not in _PREPOSITIONS:
                    continue
                middle = []
            add(" ".join([kind, aux, subject] + ([verb] if verb else []) + middle), span)
    return out
