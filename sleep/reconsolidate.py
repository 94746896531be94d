"""Reconsolidation: a fact told tonight that changes one an earlier night consolidated.

The earlier night's log is gone; what it taught lives only in the weights, and it was taught
through questions in its own framing ("Where does my cousin Tomasz live?" -> "Leeds."). Tonight
the user says "Tomasz moved again, he's in Bristol now.": tonight's own questions ("Where is
Tomasz?", a cloze of the sentence) do not ask in that framing, so the old answer keeps winning
when the user asks the old question. A brain that recalls a memory while learning something
that contradicts it rewrites the recalled memory; this does the same with the model's recall.

For a statement of tonight, the serving model (which slept before) is asked what it knows about
each thing the statement names ("What do you know about Tomasz?"). Where it recalls a sentence
about that thing ("Your cousin Tomasz lives in Leeds."), the questions a night would train on
that sentence are made (`sleep.dreams.augment`). A question whose old answer tonight's
statement does not repeat, and which tonight's statement can answer in exactly one way of the
same kind, is trained with tonight's answer: "Where does my cousin Tomasz live?" -> "Bristol.
Tomasz moved again, he's in Bristol now."; and the old value stays answerable as what it was:
"Where did my cousin Tomasz live before?" -> "Leeds. ...". The kind is the question word, as
tonight's own wh-questions ask for their spans (`sleep.questions.wh_questions`: a place is
asked with Where, a time with What time), or any number for a number (the only kind a cloze
question of the recalled sentence, "My cousin's flat is number ___", can be answered with).
Anything else (nothing recalled, a recalled sentence about something else or someone tonight
does not name, two possible answers) makes nothing: a wrong question trained to tonight's value
would tie that value to another fact.

No word list here beyond pronouns, auxiliaries and question words: what is asked and what is
answered comes from the model's own recall and tonight's statement.

Tried and not kept: where tonight's statement names the old value itself ("Aurelio moved away,
so Tomasz sweeps my chimney now": 7 of the 15 development updates), relinking through the value
(the old value named outside the clause with "now"/"anymore"/"no longer", the one span of its
shape inside it, never the recalled sentence's subject). With a perfect recall it relinked 8
of the 15 updates instead of 6 and made no new wrong question over the development set's
pairs that share a name; on the 30-item bench (3 nights, seeds 0 and 1) it lost MC on both
seeds (52, 50 of 85 against 55, 52), update-new MC (7, 4 of 17 against 10, 6) and the check
half, for update-old MC (8, 8 of 15 against 5, 8) and bleed. Routing a partly named value
("the Foundry on Quay Street", named tonight by "Foundry") to that path also took away some
relinks the question's words had made.
"""

from __future__ import annotations

import functools
import re
from typing import Callable

from sleep.dreams import (
    KIND_AUGMENT,
    TOPIC_QUESTIONS,
    Dream,
    _in_place,
    _led,
    _sentence,
    answer_spans,
    augment,
    content_words,
    key_terms,
    second_person,
    statement,
    topics,
)
from sleep.questions import wh_questions
from sleep.secrets import is_secret
from sleep.sentences import sentences

Recall = Callable[[str], str]
"""Answers a question as the serving model would (greedy, in the chat prompt): llama.cpp in
the cycle, a fake in tests."""

RECALL_QUESTION = TOPIC_QUESTIONS[0]
"""Asked of each thing tonight's statement names: the question every night trains restatements on."""
RECALL_TOKENS = 40
"""Length of a recalled answer, in tokens: one restated sentence."""
MAX_TERMS = 3
"""Things asked about per statement (each is one short completion of the serving model)."""

# Second person -> first person: a recalled restatement back in the user's voice, so the
# questions made from it are the questions the user asks ("my cousin", not "your cousin").
_PERSON = [
    (r"\byou're\b", "I'm"),
    (r"\byou are\b", "I am"),
    (r"\byou were\b", "I was"),
    (r"\byou've\b", "I've"),
    (r"\byou'll\b", "I'll"),
    (r"\byou'd\b", "I'd"),
    (r"\byourself\b", "myself"),
    (r"\byours\b", "mine"),
    (r"\byour\b", "my"),
]
_SUBJECT_YOU = re.compile(r"(^|[,;:.!?\u2014-]\s*|\b(?:and|but|so|or|then)\s+)you\b", re.I)


def first_person(text: str) -> str:
    """`text` (Nightcap's words to the user) in the user's voice: "Your dog" -> "My dog",
    "you live" -> "I live", "with you" -> "with me"."""
    out = text
    for pattern, repl in _PERSON:
        out = re.sub(pattern, functools.partial(_in_place, repl), out, flags=re.I)
    out = _SUBJECT_YOU.sub(lambda m: m.group(1) + "I", out)
    out = re.sub(r"\byou\b", "me", out, flags=re.I)
    return out[:1].upper() + out[1:]


def terms(fact: str) -> list[str]:
    """What the statement names, to ask the model about: its topics ("my cousin"), then its
    capitalised spans (names), then its other spans; numbers alone are not asked about."""
    found = [t for t in topics(fact) if t != "me"]
    spans = [s for s in answer_spans(fact) if not re.fullmatch(r"[\d\W]+", s)]
    found += [s for s in spans if s[:1].isupper()] + [s for s in spans if not s[:1].isupper()]
    out: list[str] = []
    for t in found:
        # "cousin Tomasz" of "my cousin Tomasz" would ask the same again.
        if len(t) > 2 and not any(t.lower() in o.lower() for o in out):
            out.append(t)
    return out[:MAX_TERMS]


def _stems(text: str) -> set[str]:
    return {w.rstrip("s") for w in content_words(text)}


def _asks(question: str) -> str:
    """The question word that says what kind of answer a question wants: "Where", "Who",
    "What time", "How heavy" (a second word only where it is not the verb)."""
    m = re.match(
        r"\s*(what|which|how)\s+(?!(?:is|are|was|were|do|does|did|am|has|have)\b)(\w+)|\s*(\w+)", question, re.I
    )
    if m is None:
        return ""
    return (f"{m.group(1)} {m.group(2)}" if m.group(1) else m.group(3)).lower()


def recalled(term: str, reply: str) -> str | None:
    """The first sentence of the model's `reply` that is about `term` (shares a word with it),
    in the user's voice; None when it recalls nothing about it."""
    for sentence in sentences(reply.strip()):
        if _stems(term) & _stems(sentence) and not sentence.endswith("?"):
            return first_person(sentence)
    return None


def relink(source: str, recall: Recall) -> list[Dream]:
    """Tonight's answers to the questions an earlier night taught about what `source` (the
    user's words) names, where the model's recall of that night says something else."""
    fact = statement(source)
    if not fact:
        return []
    told = _sentence(second_person(fact))
    tonight = fact.lower()
    spans = answer_spans(fact)
    by_kind: dict[str, set[str]] = {}
    for question, span in wh_questions(fact, spans):
        by_kind.setdefault(_asks(question), set()).add(span)
    numbers = {s for s in spans if any(c.isdigit() for c in s)}
    out: list[Dream] = []
    asked: set[str] = set()
    for term in terms(fact):
        old = recalled(term, recall(RECALL_QUESTION.format(t=term)))
        if old is None or old.lower().rstrip(".!") in tonight or is_secret(old):
            continue  # nothing recalled, nothing new, or a secret: it never becomes training text
        for d in augment(old):
            value = d.lead.rstrip(".").strip()
            q = d.question
            if not value or d.heldout or q.lower() in asked:
                continue
            if value.lower() in tonight or not (_stems(q) & _stems(fact)):
                continue  # tonight says it again, or the question is about something tonight does not name
            if any(name not in tonight for name in key_terms(q)):
                continue  # about another one: "my cousin Ines" when tonight tells of "my cousin Tomasz"
            kind = by_kind.get(_asks(q), set()) | (numbers if any(c.isdigit() for c in value) else set())
            new = {s for s in kind if s.lower() not in q.lower() and s.lower() not in old.lower()}
            if len({s.lower() for s in new}) != 1:
                continue
            asked.add(q.lower())
            out.append(_led(q, new.pop(), told, KIND_AUGMENT))
            # The old value stays answerable as what it was: "Where did my cousin Tomasz live before?"
            before = previously(q)
            if before is not None and before.lower() not in asked:
                asked.add(before.lower())
                out.append(_led(before, value, told, KIND_AUGMENT))
    return out


def questions_of(recollections: list[str], limit: int) -> list[str]:
    """Up to `limit` questions about what the model recalls: those a night trains a value-led
    answer on (`sleep.dreams.augment`: wh-questions, names, fill-in-the-blanks), made from each
    sentence of `recollections` (the model's words) in the user's voice, one sentence after the
    other so that every recollection gets some. Secrets make none."""
    per: list[list[str]] = []
    for reply in recollections:
        for sentence in sentences(reply.strip()):
            if sentence.endswith("?") or is_secret(sentence):
                continue
            per.append([d.question for d in augment(first_person(sentence)) if d.lead and not d.heldout])
    out: list[str] = []
    seen: set[str] = set()
    for i in range(max((len(qs) for qs in per), default=0)):
        for qs in per:
            if i < len(qs) and qs[i].lower() not in seen and len(out) < limit:
                seen.add(qs[i].lower())
                out.append(qs[i])
    return out


_PAST = {"does": "did", "do": "did", "is": "was", "are": "were", "am": "was"}


def previously(question: str) -> str | None:
    """A wh-question about now, asked about before: "Where does my cousin live?" -> "Where did
    my cousin live before?"; None for a question of another shape (a cloze)."""
    m = re.match(r"^((?:\w+\s+){1,2}?)(does|do|is|are|am)\b(.*)\?$", question.strip(), re.I)
    if m is None or m.group(1).split()[0].lower() not in {"what", "which", "where", "who", "when", "how"}:
        return None
    return f"{m.group(1)}{_PAST[m.group(2).lower()]}{m.group(3)} before?"
