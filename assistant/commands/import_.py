"""`nightcap import FILE [--json]`: earlier conversations become pending memories.

Two formats, told apart by content:

* JSON Lines, one conversation per line: ``{"messages": [{"role": "user", "content": "..."},
  {"role": "assistant", "content": "..."}, ...], "session": "optional id"}``;
* a ChatGPT export's ``conversations.json`` (a JSON array of conversations with a ``mapping``
  tree; the branch that ends at ``current_node`` is the one imported).

Each user message is paired with the assistant reply that follows it (consecutive messages of one
role are joined) into an Episode flagged "imported"; system and tool messages are left out.
Malformed lines are reported with their line numbers on stderr and everything else is imported.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.commands._common import parser, print_json
from assistant.episode import FLAG_IMPORTED, Episode, detect_flags, importance_from_flags
from assistant.errors import NightcapError
from assistant.home import Home
from assistant.vault import log, views

MAX_REPORTED = 20
_ROLES = {
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
    "model": "assistant",
    "system": None,
    "developer": None,
    "tool": None,
    "function": None,
}


class ImportFailed(NightcapError):
    """Nothing could be imported from the file."""


@dataclass
class Turn:
    role: str
    text: str
    time: float | None = None


@dataclass
class Parsed:
    """What a file holds: conversations (session id, turns) and the problems found."""

    format: str
    conversations: list[tuple[str, list[Turn]]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(where, what): where is "line N" or "conversation N"."""


_SURROGATE = re.compile("[\ud800-\udfff]")
LATEST = 4102444800.0
"""2100-01-01: a later (or non-finite, or negative) timestamp is damage, and the file order is used."""
BAD_SHAPE = (ValueError, TypeError, AttributeError, KeyError, RecursionError)
"""What a conversation of the wrong shape raises while it is read: reported, never a traceback."""


def _clean(text: str) -> str:
    """A JSON string may hold a lone surrogate ("\\ud800"), which no UTF-8 file can store."""
    return _SURROGATE.sub("\ufffd", text)


def _time(value: Any) -> float | None:
    """A usable timestamp, or None (NaN, infinite, negative, far future, or not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0.0 <= value < LATEST else None


def _text(content: Any) -> str | None:
    """Message content as text: a string, or a list of text parts (OpenAI style)."""
    if isinstance(content, str):
        return _clean(content)
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, (str, dict))]
        return _clean("\n".join(p for p in parts if isinstance(p, str)))
    return None


def _jsonl_turns(obj: Any) -> list[Turn]:
    if not isinstance(obj, dict) or not isinstance(obj.get("messages"), list):
        raise ValueError('expected an object with a "messages" list')
    turns = []
    for n, msg in enumerate(obj["messages"], 1):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ValueError(f"message {n} has no role")
        if msg["role"].lower() not in _ROLES:
            raise ValueError(f"message {n} has an unknown role {msg['role']!r}")
        text = _text(msg.get("content"))
        if text is None:
            raise ValueError(f"message {n} has no text content")
        role = _ROLES[msg["role"].lower()]
        if role:
            turns.append(Turn(role, text))
    return turns


def _chatgpt_turns(conv: Any) -> list[Turn]:
    if not isinstance(conv, dict) or not isinstance(conv.get("mapping"), dict):
        raise ValueError('expected a conversation with a "mapping"')
    mapping = conv["mapping"]
    node = conv.get("current_node")
    if node not in mapping:  # older exports: follow the last child from the root
        node = next((k for k, v in mapping.items() if isinstance(v, dict) and not v.get("parent")), None)
        while node in mapping and mapping[node].get("children"):
            node = mapping[node]["children"][-1]
    chain, seen = [], set()
    while node in mapping and node not in seen:
        seen.add(node)
        chain.append(mapping[node])
        node = mapping[node].get("parent")
    turns = []
    for item in reversed(chain):
        msg = item.get("message") if isinstance(item, dict) else None
        if not isinstance(msg, dict):
            continue
        role = (msg.get("author") or {}).get("role")
        meta = msg.get("metadata") or {}
        if role not in ("user", "assistant") or meta.get("is_visually_hidden_from_conversation"):
            continue
        if role == "assistant" and msg.get("recipient", "all") != "all":
            continue  # a tool call, not a reply
        content = msg.get("content") or {}
        if content.get("content_type") not in ("text", "multimodal_text"):
            continue
        text = _clean("\n".join(p for p in content.get("parts") or [] if isinstance(p, str)))
        if text.strip():
            turns.append(Turn(role, text, _time(msg.get("create_time"))))
    return turns


def parse(text: str) -> Parsed:
    """Tell the format apart and read every conversation, collecting problems instead of stopping."""
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except RecursionError:
            return Parsed("json", problems=[("line 1", "nested too deeply to be a conversation export")])
        except ValueError as err:
            lineno = getattr(err, "lineno", "?")
            return Parsed("json", problems=[(f"line {lineno}", f"not valid JSON ({getattr(err, 'msg', err)})")])
        out = Parsed("chatgpt")
        for n, conv in enumerate(data if isinstance(data, list) else [], 1):
            try:
                if isinstance(conv, dict) and "messages" in conv and "mapping" not in conv:
                    turns = _jsonl_turns(conv)
                else:
                    turns = _chatgpt_turns(conv)
                sid = conv.get("conversation_id") or conv.get("id") or conv.get("session")
            except BAD_SHAPE as err:
                out.problems.append((f"conversation {n}", _shape_problem(err)))
                continue
            out.conversations.append((_session(sid), turns))
        return out
    out = Parsed("jsonl")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            turns = _jsonl_turns(obj)
        except json.JSONDecodeError as err:
            out.problems.append((f"line {n}", f"not valid JSON ({err.msg})"))
            continue
        except BAD_SHAPE as err:
            out.problems.append((f"line {n}", _shape_problem(err)))
            continue
        out.conversations.append((_session(obj.get("session") or obj.get("id")), turns))
    return out


def _shape_problem(err: BaseException) -> str:
    """What was wrong, without quoting the file (its values are someone's conversation)."""
    if isinstance(err, RecursionError):
        return "nested too deeply to be a conversation"
    if type(err) is ValueError:  # raised here, with a message that names no content
        return str(err)
    return f"a field has the wrong type ({type(err).__name__})"


def _session(sid: Any) -> str:
    """A conversation id as text (a fresh one when the file gives none usable)."""
    if isinstance(sid, str) and sid.strip():
        return _clean(sid.strip())[:200]
    if isinstance(sid, int) and not isinstance(sid, bool):
        return str(sid)
    return uuid.uuid4().hex[:12]


def pair(session: str, turns: list[Turn], now: float) -> list[Episode]:
    """User message(s) + the assistant reply after them -> one imported Episode."""
    groups: list[Turn] = []
    for t in turns:
        if groups and groups[-1].role == t.role:
            groups[-1] = Turn(t.role, groups[-1].text + "\n\n" + t.text, groups[-1].time or t.time)
        else:
            groups.append(Turn(t.role, t.text, t.time))
    episodes: list[Episode] = []
    for user, reply in zip(groups, groups[1:]):
        if user.role != "user" or reply.role != "assistant":
            continue
        flags = [FLAG_IMPORTED] + detect_flags(user.text)
        # Without (usable) timestamps, keep the file's order with distinct times.
        started = _time(user.time)
        started = started if started is not None else now + len(episodes) * 1e-3
        ended = _time(reply.time)
        ended = ended if ended is not None and ended >= started else started
        episodes.append(
            Episode(
                session=session,
                messages=[{"role": "user", "content": user.text}, {"role": "assistant", "content": reply.text}],
                flags=flags,
                importance=importance_from_flags(flags),
                started=started,
                ended=ended,
            )
        )
    return episodes


def main(argv: list[str]) -> int:
    p = parser(
        "import",
        'Import conversations as pending memories: JSON Lines of {"messages": [...]} '
        "or a ChatGPT conversations.json export.",
    )
    p.add_argument("file", help="the JSONL file or conversations.json")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    path = Path(args.file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ImportFailed(f"{path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ImportFailed(f"cannot read {path} as UTF-8 text ({err.__class__.__name__}); export it again") from None

    parsed = parse(text)
    now = time.time()
    episodes = [ep for n, (sid, turns) in enumerate(parsed.conversations) for ep in pair(sid, turns, now + n)]
    unpaired = sum(1 for _, turns in parsed.conversations if not pair("", turns, now))
    too_big = [ep for ep in episodes if len(views.episode_payload(ep)) > log.MAX_PAYLOAD]
    for ep in too_big:
        parsed.problems.append(
            (
                f"conversation {ep.session}",
                f"an exchange of {len(views.episode_payload(ep)) >> 20} MiB "
                f"is over the {round(log.MAX_PAYLOAD / 2**20)} MiB the vault keeps per exchange",
            )
        )
    big = {ep.id for ep in too_big}
    episodes = [ep for ep in episodes if ep.id not in big]
    for where, what in parsed.problems[:MAX_REPORTED]:
        print(f"nightcap import: {path.name} {where}: {what}", file=sys.stderr)
    if len(parsed.problems) > MAX_REPORTED:
        print(f"nightcap import: ... and {len(parsed.problems) - MAX_REPORTED} more problems", file=sys.stderr)
    if episodes:
        from assistant.vault import Vault  # deferred: opening the vault derives the key

        Vault.open(Home.resolve()).append_many(episodes)
    elif parsed.problems:
        raise ImportFailed(f"nothing was imported from {path}: every conversation in it was malformed (see above)")

    if args.json:
        print_json(
            {
                "imported": len(episodes),
                "conversations": len(parsed.conversations),
                "format": parsed.format,
                "without_reply": unpaired,
                "problems": [{"where": w, "error": e} for w, e in parsed.problems],
            }
        )
    else:
        skipped = f"; {len(parsed.problems)} skipped (listed above)" if parsed.problems else ""
        print(
            f"Imported {len(episodes)} {'memory' if len(episodes) == 1 else 'memories'} from "
            f"{len(parsed.conversations)} conversation{'' if len(parsed.conversations) == 1 else 's'}{skipped}."
        )
    return 0
