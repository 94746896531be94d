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

MAX_REPORTED = 20
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "model": "assistant",
          "system": None, "developer": None, "tool": None, "function": None}


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


def _text(content: Any) -> str | None:
    """Message content as text: a string, or a list of text parts (OpenAI style)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") for p in content if isinstance(p, (str, dict))]
        return "\n".join(p for p in parts if isinstance(p, str))
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
        text = "\n".join(p for p in content.get("parts") or [] if isinstance(p, str))
        if text.strip():
            turns.append(Turn(role, text, msg.get("create_time")))
    return turns


def parse(text: str) -> Parsed:
    """Tell the format apart and read every conversation, collecting problems instead of stopping."""
    text = text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as err:
            lineno = getattr(err, "lineno", "?")
            return Parsed("json", problems=[(f"line {lineno}", f"not valid JSON ({getattr(err, 'msg', err)})")])
        out = Parsed("chatgpt")
        for n, conv in enumerate(data, 1):
            try:
                if isinstance(conv, dict) and "messages" in conv and "mapping" not in conv:
                    turns = _jsonl_turns(conv)
                else:
                    turns = _chatgpt_turns(conv)
            except ValueError as err:
                out.problems.append((f"conversation {n}", str(err)))
                continue
            sid = conv.get("conversation_id") or conv.get("id") or conv.get("session")
            out.conversations.append((str(sid) if sid else uuid.uuid4().hex[:12], turns))
        return out
    out = Parsed("jsonl")
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as err:
            out.problems.append((f"line {n}", f"not valid JSON ({getattr(err, 'msg', err)})"))
            continue
        try:
            turns = _jsonl_turns(obj)
        except ValueError as err:
            out.problems.append((f"line {n}", str(err)))
            continue
        sid = obj.get("session") or obj.get("id")
        out.conversations.append((str(sid) if isinstance(sid, (str, int)) else uuid.uuid4().hex[:12], turns))
    return out


def pair(session: str, turns: list[Turn], now: float) -> list[Episode]:
    """User message(s) + the assistant reply after them -> one imported Episode."""
    groups: list[Turn] = []
    for t in turns:
        if groups and groups[-1].role == t.role:
            groups[-1] = Turn(t.role, groups[-1].text + "\n\n" + t.text, groups[-1].time or t.time)
        else:
            groups.append(Turn(t.role, t.text, t.time))
    episodes = []
    for user, reply in zip(groups, groups[1:]):
        if user.role != "user" or reply.role != "assistant":
            continue
        flags = [FLAG_IMPORTED] + detect_flags(user.text)
        # Without timestamps, keep the file's order with distinct times.
        started = float(user.time) if isinstance(user.time, (int, float)) else now + len(episodes) * 1e-3
        ended = float(reply.time) if isinstance(reply.time, (int, float)) else started
        episodes.append(Episode(session=session, messages=[{"role": "user", "content": user.text},
                                                            {"role": "assistant", "content": reply.text}],
                                flags=flags, importance=importance_from_flags(flags), started=started, ended=ended))
    return episodes


def main(argv: list[str]) -> int:
    p = parser("import", "Import conversations as pending memories: JSON Lines of {\"messages\": [...]} "
                         "or a ChatGPT conversations.json export.")
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
    episodes = [ep for n, (sid, turns) in enumerate(parsed.conversations)
                for ep in pair(sid, turns, now + n)]
    unpaired = sum(1 for _, turns in parsed.conversations if not pair("", turns, now))
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
        print_json({"imported": len(episodes), "conversations": len(parsed.conversations), "format": parsed.format,
                    "without_reply": unpaired,
                    "problems": [{"where": w, "error": e} for w, e in parsed.problems]})
    else:
        skipped = f"; {len(parsed.problems)} skipped (listed above)" if parsed.problems else ""
        print(f"Imported {len(episodes)} {'memory' if len(episodes) == 1 else 'memories'} from "
              f"{len(parsed.conversations)} conversation{'' if len(parsed.conversations) == 1 else 's'}{skipped}.")
    return 0
