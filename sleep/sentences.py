"""Sentences of a user's message, for dreaming one fact at a time.

A chatty message holds small talk and facts in several sentences ("Ugh, what a week. Oh, one
thing to remember: Ottilie's birthday is on the 4th of May."); each sentence is dreamed on
its own, so that a question is answered by the sentence that says it and not by the greeting
around it. A full stop ends a sentence unless it closes a short abbreviation ("Dr.", "St.") or
sits inside a number ("9.5"); "!", "?" and a dash between clauses end one too.
"""

from __future__ import annotations

import re

_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(]?[A-Z0-9])|\s+[—–]\s+|\s+-\s+(?=[A-Za-z])")
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:dr|mr|mrs|ms|mx|st|mt|prof|jr|sr|rev|gen|capt|lt|sgt|no|vs|etc|approx|e\.g|"
    r"i\.e|[A-Z])\.$",
    re.I,
)


def sentences(text: str) -> list[str]:
    """The sentences of `text`, in order, stripped; never empty strings."""
    out: list[str] = []
    pending = ""
    start = 0
    for m in _END.finditer(text):
        piece = text[start : m.start()]
        start = m.end()
        if piece.rstrip().endswith(".") and _ABBREVIATION.search(piece.rstrip()) and not m.group().strip():
            pending += piece + m.group()  # "Dr. Okafor": the full stop closes an abbreviation
            continue
        out.append((pending + piece).strip())
        pending = ""
    out.append((pending + text[start:]).strip())
    return [s for s in out if s]
