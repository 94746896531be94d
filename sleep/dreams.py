"""Dreaming: variations of each episode to train on, verified against it, kept in memory only.

A user who says "my sister Priya lives in Lisbon" will later ask "where does my sister live?".
Training on the logged exchange alone teaches the reply the model happened to give (a base
model often gives none worth keeping), and only for that wording. So each episode's statement
(the user's words, cleaned of "remember that", "no, that's not right:" and the like), one
statement at a time (`statements`: sentences, without secrets or small talk), becomes:

- deterministic augmentations: the fact restated in the second person as the answer to several
  templated questions about its topic ("What do you know about my sister?"), questions a span
  of it answers ("Where does my sister Priya live?" -> "Lisbon. Your sister Priya lives in
  Lisbon."), and a fill-in-the-blank for every span, answered by the span and then the fact
  (by the span alone with `blank_only`). The statement itself is not answered with an
  acknowledgement: that taught the slept model to answer questions with "Noted: " and the
  question back;
- model-written dreams: the pre-sleep model, prompted with a few worked examples, writes a
  paraphrase and question/answer pairs. A small model writes many bad ones, so each is verified
  against the statement: an answer must be words of the statement, a paraphrase must keep every
  key term (names, numbers, the answer words) and add none, a question must be about the
  statement's topic and must not give its own answer away. Rejected dreams are only counted.

One templated question per episode is held out of training: the recall gate asks it.
Nothing here touches disk.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Callable

from assistant.episode import Episode
from sleep.questions import MONTHS, WEEKDAYS, clauses, verbs, wh_questions
from sleep.secrets import is_secret
from sleep.sentences import sentences

DreamWriter = Callable[[str], str]
"""Completes a prompt with the pre-sleep model (greedy, short): llama.cpp in the cycle, a fake in tests."""

KIND_AUGMENT = "augment"
KIND_DREAM = "dream"

_LEAD = re.compile(
    r"^\s*(?:(?:no|nope|wrong|actually|incorrect)\b[,.!:]?\s*|that'?s (?:not right|wrong|incorrect)[,.!:]?\s*"
    r"|by the way[,]?\s*|btw[,]?\s*|(?:please\s+)?(?:remember|note|keep in mind|don'?t forget|do not forget)"
    r"(?:\s+that)?[,:]?\s*|please\s+|just so you know[,]?\s*|fyi[,:]?\s*)+",
    re.I,
)
_TRAIL = re.compile(r"[,;]?\s*(?:don'?t forget|please remember|remember that|ok\??|okay\??)[.!]*\s*$", re.I)

# First person -> second person, longest first so "I'm" wins over "I".
_PERSON = [
    (r"\bI'm\b", "you're"),
    (r"\bI am\b", "you are"),
    (r"\bI've\b", "you've"),
    (r"\bI'll\b", "you'll"),
    (r"\bI'd\b", "you'd"),
    (r"\bI was\b", "you were"),
    (r"\bmyself\b", "yourself"),
    (r"\bmine\b", "yours"),
    (r"\bmy\b", "your"),
    (r"\bme\b", "you"),
    (r"\bI\b", "you"),
    (r"\bourselves\b", "yourselves"),
    (r"\bours\b", "yours"),
    (r"\bour\b", "your"),
    (r"\bwe're\b", "you're"),
    (r"\bwe\b", "you"),
    (r"\bus\b", "you"),
]
_STOP = set(
    """a an the and or but of in on at to for from with by as is are was were be been am do does did
has have had it its it's he she they them his her their this that these those there here who which what when
where how not no yes very really especially also just so about into over under than then too i i'm me my you
your we our us called named every each he's she's they're we're i've we've they've i'd he'd she'd we'd they'd
i'll he'll she'll we'll they'll you've you'd you'll now again anymore""".split()
)
"""Function words: never part of an answer or a topic. Verbs end a run too, found per statement
from its clauses (`sleep.questions.verbs`), not listed here."""
TOPIC_QUESTIONS = [
    "What do you know about {t}?",
    "Tell me about {t}.",
    "Remind me about {t}.",
    "What have I told you about {t}?",
]
CLOZE_QUESTION = "Fill in the blank from what I told you: {blank}"
HELDOUT_QUESTION = "What did I tell you about {t}?"
"""Never trained on: the recall gate asks it after sleep."""


@dataclass
class Dream:
    """One question/answer to train on (or to probe with, when `heldout`)."""

    question: str
    answer: str
    kind: str = KIND_AUGMENT
    heldout: bool = False
    lead: str = ""
    """The start of `answer` that answers the question ("Lisbon."), before the restatement that
    ties it to its subject; empty when the whole answer is the restatement."""


@dataclass
class DreamSet:
    """The night's dreams and what verification made of the model-written ones."""

    dreams: dict[str, list[Dream]] = field(default_factory=dict)
    """Episode id -> its dreams (held-out probes included)."""
    written: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """Why model-written dreams were turned down, by reason."""
    ambiguous: int = 0
    """Dreams left out because the night asks their question of more than one statement."""
    relinked: int = 0
    """Questions of an earlier night's recalled fact answered with tonight's value (`relink`)."""


def statement(text: str) -> str:
    """The fact in a user's message, without the request wrapped around it."""
    s = _TRAIL.sub("", _LEAD.sub("", text.strip())).strip()
    return s[:1].upper() + s[1:] if s else s


def _in_place(repl: str, match: re.Match[str]) -> str:
    """`repl`, capitalised where it starts the text ("I" is upper case everywhere)."""
    return repl.capitalize() if match.start() == 0 else repl


def second_person(text: str) -> str:
    """The user's words as Nightcap would say them back ("my dog" -> "your dog")."""
    out = text
    for pattern, repl in _PERSON:
        out = re.sub(pattern, functools.partial(_in_place, repl), out, flags=re.I)
    for wrong, right in (("you is", "you are"), ("you was", "you were"), ("you has", "you have")):
        out = re.sub(rf"\b{wrong}\b", right, out, flags=re.I)
    return out[:1].upper() + out[1:]


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def words(text: str) -> list[str]:
    return re.findall(r"[\w'’:.-]+", text.lower().replace("’", "'"))


def content_words(text: str) -> set[str]:
    """Words that carry meaning, possessives as their noun ("band's" -> "band")."""
    stems = (re.sub(r"'s$", "", w).strip(".:'") for w in words(text))
    return {w for w in stems if w not in _STOP and len(w) > 2}


def key_terms(text: str) -> set[str]:
    """Names and numbers: capitalised words past the first, and anything with a digit."""
    toks = re.findall(r"[\w'’:-]+", text)
    keys = {t.lower() for t in toks if any(c.isdigit() for c in t)}
    keys |= {t.lower().rstrip("'s") for i, t in enumerate(toks) if i > 0 and t[:1].isupper() and t.lower() not in _STOP}
    return keys


def topics(text: str) -> list[str]:
    """Noun phrases the statement is about, in the user's voice ("my sister Priya")."""
    stop = _STOP | verbs(text)
    found: list[str] = []
    for m in re.finditer(r"\b(my|our|the)\s+([\w'-]+(?:\s+[\w'-]+){0,2})", text, re.I):
        det, rest = m.group(1).lower(), []
        for w in m.group(2).split():
            if w.lower() in stop:
                break
            rest.append(w)
        if rest and (det != "the" or not found):
            found.append(f"{det} {' '.join(rest)}")
    return found[:2] or ["me"]


def _copulas(text: str) -> list[tuple[str, str]]:
    """(subject, predicate) of its "X is Y" clauses (`sleep.questions.clauses`), for cloze questions."""
    out = []
    for part in clauses(text):
        m = re.match(r"^(.*?\b(?:my|our|the)\b[^,]*?)\s+(is|are)\s+(.+)$", part.strip(), re.I)
        if m and len(m.group(3).split()) <= 6:
            out.append((m.group(1).strip(), m.group(2) + " " + m.group(3).strip()))
    return out


def augment(source: str, *, blank_only: bool = False) -> list[Dream]:
    """Deterministic variations of a statement (the user's words); the last one is held out.
    `blank_only` answers a fill-in-the-blank with its blank alone, not with the blank and then
    the fact (which the question already holds)."""
    fact = statement(source)
    if not fact:
        return []
    told = _sentence(second_person(fact))
    out: list[Dream] = []
    subjects = topics(fact)
    for i, topic in enumerate(subjects):
        for q in TOPIC_QUESTIONS[i % 2 :: 1 + i]:
            out.append(Dream(q.format(t=topic), told))
    for subject, predicate in _copulas(fact):
        verb, _, value = predicate.partition(" ")
        if value.split(" ", 1)[0].lower() in _NOT_A_VALUE:
            continue  # "is called Kestrel", "is with Beacon Mutual": the wh-questions below ask for these
        q = f"What {verb} {subject[:1].lower() + subject[1:]}?"
        # The value as the user wrote it, up to a comma: "teal" of "teal, not blue" (as the wh-answers below).
        value = value.split(",", 1)[0].strip()
        out.append(_led(q, value, told) if value else Dream(q, told))
    spans = answer_spans(told)
    # Wh-questions answered by a span, the span first and as the user wrote it: "Where does my
    # sister Priya live?" -> "Lisbon. Your sister Priya lives in Lisbon and ..."; "What does my
    # partner work as?" -> "nurse. ..." (the user's word, not a capitalised "Nurse", which the
    # model would learn as a different token).
    asked = {d.question.lower() for d in out}
    for question, span in wh_questions(fact, answer_spans(fact)):
        if question.lower() not in asked:
            out.append(_led(question, span, told))
    # A name given after what it names ("my optician Oskar"): asked for by what it names,
    # and what it names asked about without the name (the way a user asks later).
    for topic in subjects:
        apposed = re.fullmatch(r"((?:my|our|the)(?:\s+[a-z][\w'-]*)+)\s+((?:[A-Z][\w'-]*\s?)+)", topic)
        if apposed:
            role, name = apposed.group(1), apposed.group(2).strip()
            for question, dream in (
                (f"What is {role}'s name?", _led(f"What is {role}'s name?", name, told)),
                (TOPIC_QUESTIONS[0].format(t=role), Dream(TOPIC_QUESTIONS[0].format(t=role), told)),
            ):
                if question.lower() not in asked:
                    asked.add(question.lower())
                    out.append(dream)
    # Names asked about on their own ("What breed is Biscuit?"): tie each to the whole fact.
    named = [
        sp
        for sp in spans
        if sp[:1].isupper()
        and sp.lower().rstrip("s") not in _CALENDAR
        and not any(sp.lower() in t.lower() for t in subjects)
    ]
    for name in named[:2]:
        out.append(Dream(TOPIC_QUESTIONS[0].format(t=name), told))
    # A statement about "your X" / "the X" opens with its subject, which questions name anyway.
    for span in spans[1:] if told.lower().startswith(("your ", "the ")) else spans:
        if re.search(r"\bnot\s+(?:an?\s+|the\s+)?" + re.escape(span) + r"(?!\w)", told, re.I):
            continue  # "teal, not blue": "blue" is no answer to teach
        blank = re.sub(r"(?<!\w)" + re.escape(span) + r"(?!\w)", "___", told, count=1)
        question, alone = CLOZE_QUESTION.format(blank=blank), _sentence(span)
        out.append(Dream(question, alone, lead=alone) if blank_only else _led(question, span, told))
    out.append(Dream(HELDOUT_QUESTION.format(t=subjects[0]), told, heldout=True))
    return out


def _led(question: str, span: str, told: str, kind: str = KIND_AUGMENT) -> Dream:
    """A question answered by `span` first, then by the whole fact (`told`)."""
    return Dream(question, _sentence(f"{span}. {told}"), kind, lead=f"{span}.")


_NOT_A_VALUE = {"called", "named", "in", "on", "at", "with", "from", "for", "by", "to", "near"}
"""First words of an "X is ..." predicate that is no value to answer "What is X?" with."""
_CALENDAR = {*WEEKDAYS, *MONTHS}
"""Capitalised, but a date, not a name to ask about."""
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "st", "prof", "mt"}


def answer_spans(text: str) -> list[str]:
    """Runs of content words ("blue drawer", "14:30", "Dr. Lindqvist"), exactly as they are
    written in `text`: what a question may ask for. A comma ends a run ("Halifax" and "Nova
    Scotia"), and so do a function word (unless capitalised inside a name) and a verb of the
    statement ("my sister Priya" | "lives" | "Lisbon"). The first run is usually the subject,
    which the question itself names."""
    stop = _STOP | verbs(text)
    spans: list[str] = []
    start = end = -1
    prev = ""
    for m in re.finditer(r"[\w'’:.-]+", text):
        core = m.group().strip(".,:")
        # A capitalised function word inside a name goes on with it ("Phu An"),
        # unless the run began the sentence, capitalised as a first word is ("Finished The ...").
        in_name = (
            start >= 0
            and prev[:1].isupper()
            and core[:1].isupper()
            and text[end : m.start()].isspace()
            and re.search(r"(?:^|[.!?]\s+)$", text[:start]) is None
        )
        if (
            not core
            or (core.lower() in stop and not in_name)
            or core.lower() in {"you're", "your", "yours"}
            or len(core) < 2
        ):
            if start >= 0:
                spans.append(text[start:end])
            start = -1
            continue
        at = m.start() + m.group().index(core)
        gap = text[end:at] if start >= 0 else ""
        joined = start >= 0 and (gap.isspace() or (prev.lower() in _ABBREVIATIONS and re.fullmatch(r"\.\s+", gap)))
        if start >= 0 and not joined:
            spans.append(text[start:end])
            start = -1
        if start < 0:
            start = at
        end, prev = at + len(core), core
    if start >= 0:
        spans.append(text[start:end])
    # A particle or a short word alone ("up" of "grew up") is no answer.
    return [s for s in spans if not s.endswith("'s") and (len(s) > 2 or not s.islower())]


QA_PROMPT = """Statement: My cat Tom is black and sleeps on the sofa.
Rephrased: Tom, my cat, is black and likes to sleep on the sofa.
Question: What is my cat's name?
Answer: Tom
Question: Where does my cat sleep?
Answer: on the sofa

Statement: I work as an architect in Oslo.
Rephrased: I am an architect and my work is in Oslo.
Question: What is my job?
Answer: architect
Question: Which city do I work in?
Answer: Oslo

Statement: The book club meets on Fridays at 19:00 at Ana's flat.
Rephrased: Every Friday at 19:00 the book club meets at Ana's flat.
Question: When does the book club meet?
Answer: Fridays at 19:00

Statement: {statement}
Rephrased:"""


def parse_dream_text(text: str) -> tuple[str, list[tuple[str, str]]]:
    """(paraphrase, [(question, answer), ...]) from the model's continuation of QA_PROMPT."""
    lines = [ln.strip() for ln in text.split("\n")]
    paraphrase = lines[0] if lines else ""
    pairs: list[tuple[str, str]] = []
    question: str | None = None
    for ln in lines[1:]:
        if ln.startswith("Statement:") or (not ln and pairs):
            break
        if ln.startswith("Question:"):
            question = ln[len("Question:") :].strip()
        elif ln.startswith("Answer:") and question:
            pairs.append((question, ln[len("Answer:") :].strip()))
            question = None
    return paraphrase, pairs


_ANSWER_LEAD = re.compile(r"^(?:in|on|at|the|a|an|by|to)\s+", re.I)


def verify_answer(fact: str, question: str, answer: str) -> str | None:
    """Why a model-written question/answer about `fact` is rejected, or None when it holds."""
    core = answer.strip().rstrip(".!")
    while _ANSWER_LEAD.match(core):
        core = _ANSWER_LEAD.sub("", core, count=1)
    if not core or len(core) > 60:
        return "empty-or-long"
    if not question.endswith("?"):
        return "not-a-question"
    if not re.search(r"(?<!\w)" + re.escape(core.lower()) + r"(?!\w)", fact.lower()):
        return "answer-not-in-statement"
    if core.lower() in question.lower():
        return "question-gives-answer"
    if not (content_words(question) & content_words(fact)):
        return "off-topic"
    return None


def verify_paraphrase(fact: str, paraphrase: str) -> str | None:
    """Why a model-written paraphrase of `fact` is rejected, or None when it holds."""
    if not paraphrase or paraphrase.rstrip(".") == fact.rstrip("."):
        return "empty-or-copy"
    have, need = key_terms(paraphrase), key_terms(fact)
    if not need <= have and not all(k in paraphrase.lower() for k in need):
        return "lost-key-term"
    if have - need - {w.lower() for w in words(fact)}:
        return "new-key-term"
    if not content_words(fact) <= content_words(paraphrase) | _soft(fact):
        return "lost-content"
    return None


def _soft(fact: str) -> set[str]:
    # Words a faithful paraphrase may drop: at most a third of the content words, the
    # commonest first, so a paraphrase keeps the substance and may change the wording.
    ws = sorted(content_words(fact), key=len)
    return set(ws[: len(ws) // 3])


def write_dreams(writer: DreamWriter, source: str, dreams: DreamSet) -> list[Dream]:
    """Model-written dreams of one statement that pass verification; counts go to `dreams`."""
    fact = statement(source)
    if not fact:
        return []
    paraphrase, pairs = parse_dream_text(writer(QA_PROMPT.format(statement=fact)))
    out: list[Dream] = []
    candidates: list[tuple[str, str | None]] = [(paraphrase, verify_paraphrase(fact, paraphrase))]
    seen: set[str] = set()
    for q, a in pairs:
        reason = verify_answer(fact, q, a) if q.lower() not in seen else "duplicate"
        seen.add(q.lower())
        candidates.append((f"{q}\n{a}", reason))
    topic = topics(fact)[0]
    for text, reason in candidates:
        dreams.written += 1
        if reason is not None:
            dreams.rejected[reason] = dreams.rejected.get(reason, 0) + 1
            continue
        dreams.accepted += 1
        if "\n" in text:
            q, a = text.split("\n", 1)
            out.append(_led(q, a[:1].upper() + a[1:], second_person(fact), KIND_DREAM))
        else:
            out.append(Dream(TOPIC_QUESTIONS[0].format(t=topic), _sentence(second_person(text)), KIND_DREAM))
    return out


def dream(
    episodes: list[Episode],
    writer: DreamWriter | None,
    *,
    augmentations: bool = True,
    relink: Callable[[str], list[Dream]] | None = None,
    blank_only: bool = False,
) -> DreamSet:
    """Dreams for every episode, one statement at a time (`statements`): augmentations (when on),
    verified model-written ones (when a writer is given) and, with `relink`
    (`sleep.reconsolidate.relink`), an earlier night's questions answered with what the statement
    changes. The held-out probe is made either way, for the recall gate. `blank_only`: see
    `augment`."""
    out = DreamSet()
    for ep_id, units in statements(episodes).items():
        mine: list[Dream] = []
        for source in units:
            made = augment(source, blank_only=blank_only)
            mine += made if augmentations else [d for d in made if d.heldout]
            if writer is not None:
                mine += write_dreams(writer, source, out)
            if relink is not None:
                linked = relink(source)
                out.relinked += len(linked)
                mine += linked
        out.dreams[ep_id] = mine
    _drop_ambiguous(out)
    return out


def _drop_ambiguous(out: DreamSet) -> None:
    """Leave out every trained question the night answers in more than one way ("What do you
    know about me?" after fifteen statements): no single answer to it is right, and training on
    all of them teaches the model to answer a question with any other fact."""
    answers: dict[str, set[str]] = {}
    for made in out.dreams.values():
        for d in made:
            if not d.heldout:
                answers.setdefault(d.question.strip().lower(), set()).add(d.answer)
    clash = {q for q, a in answers.items() if len(a) > 1}
    for ep_id, made in out.dreams.items():
        kept = [d for d in made if d.heldout or d.question.strip().lower() not in clash]
        out.ambiguous += len(made) - len(kept)
        out.dreams[ep_id] = kept


_LEANS_BACK = {"he", "she", "they", "it", "his", "her", "their", "its", "there", "this", "that", "these", "those"}
"""First words of a sentence that leans on the one before it ("She used to row for Ghana")."""


def statements(episodes: list[Episode]) -> dict[str, list[str]]:
    """Episode id -> the statements to dream of in its user turn.

    A message is split into sentences; a sentence that holds a secret is dropped (secrets never
    become training text: `sleep.secrets`), and so are questions and small talk too short to
    state a fact ("Ugh, what a week."). A sentence that leans on the one before it, by a pronoun
    or with no subject of its own ("Thinking a week in Tbilisi"), is joined to it, also across
    the messages of one conversation and after a question ("Can you suggest a gift for my friend
    Leo? He's into bonsai."): a fact told over two messages is dreamed as one."""
    out: dict[str, list[str]] = {}
    # session -> the sentence a next one may lean on, and where it is in `out` (None: a question)
    last: dict[str, tuple[str, tuple[str, int] | None]] = {}
    for ep in episodes:
        mine = out.setdefault(ep.id, [])
        for sentence in sentences(ep.user_text):
            if is_secret(sentence):
                last.pop(ep.session, None)  # what follows a secret does not lean on it
                continue
            if sentence.endswith("?"):
                last[ep.session] = (sentence, None)
                continue
            first = (re.findall(r"[\w]+", sentence)[:1] or [""])[0]
            leans = first.lower() in _LEANS_BACK or (
                first.lower().endswith("ing") and first[:1].isupper() and first.lower() not in _STOP
            )
            before = last.get(ep.session) if leans else None
            if before is not None and before[1] is None:
                sentence, before = _named_from(before[0], sentence), None
            if before is not None:
                text, at = before
                sentence = f"{_sentence(text)} {sentence}"
                if at is not None and at[0] == ep.id:
                    mine[at[1]] = sentence
                    last[ep.session] = (sentence, at)
                    continue
            elif len(content_words(statement(sentence))) < 3 and not key_terms(sentence):
                continue
            mine.append(sentence)
            last[ep.session] = (sentence, (ep.id, len(mine) - 1))
    return out


def _named_from(question: str, sentence: str) -> str:
    """`sentence` with its leading pronoun replaced by what `question` named ("Can you suggest a
    gift for my friend Leo?" + "He's into bonsai." -> "My friend Leo's into bonsai.")."""
    named = topics(question)[-1]
    pronoun = re.match(r"(?:he|she|they|it)\b", sentence, re.I)
    if named == "me" or pronoun is None:
        return sentence
    return named[:1].upper() + named[1:] + sentence[pronoun.end() :]
