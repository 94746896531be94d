"""`nightcap memories [list|forget ID] [--json]`: the pending (not yet consolidated) episodes.

`list` shows id, time, conversation, flags and the first words of each (a sentence that holds
a secret shown as "[secret]", and the secrets counted); `forget ID` (a unique
prefix of at least 4 characters will do) removes one before sleep learns from it: its epoch is
re-sealed without it under a new key and the old key is destroyed, with a tombstone in the ledger.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from assistant.commands._common import parser, print_json
from assistant.episode import FLAG_SECRET, Episode
from assistant.errors import UsageError, VaultError
from assistant.home import Home
from assistant.vault import Vault
from sleep.secrets import holds_secret, masked

PREVIEW_CHARS = 60


def preview(text: str, width: int = PREVIEW_CHARS) -> str:
    """The first words of a message on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def row(ep: Episode) -> dict[str, Any]:
    return {
        "id": ep.id,
        "time": ep.started,
        "session": ep.session,
        "flags": ep.flags,
        "importance": ep.importance,
        "corrected": ep.correction is not None,
        "secret": holds_secret(ep),
        "preview": preview(masked(ep.user_text)),
    }


def warn_damage(vault: Vault, command: str) -> None:
    """Recovery findings go to stderr, one line each: never silently skipped."""
    for d in vault.damage:
        print(f"nightcap {command}: warning: vault {d.describe()}", file=sys.stderr)


def resolve_id(episodes: list[Episode], wanted: str) -> str:
    """An exact id, or a unique prefix of at least 4 characters."""
    if any(ep.id == wanted for ep in episodes):
        return wanted
    matches = [ep.id for ep in episodes if len(wanted) >= 4 and ep.id.startswith(wanted)]
    if len(matches) > 1:
        raise UsageError(f"'{wanted}' matches {len(matches)} memories; give more of the id")
    if not matches:
        raise VaultError(f"no pending memory has id {wanted}; see `nightcap memories list`")
    return matches[0]


def list_memories(home: Home, as_json: bool) -> int:
    episodes: list[Episode] = []
    if Vault.exists(home):
        vault = Vault.open(home, create=False)
        warn_damage(vault, "memories")
        episodes = vault.pending()
    rows = [row(ep) for ep in episodes]
    sessions, secrets = len({r["session"] for r in rows}), sum(r["secret"] for r in rows)
    if as_json:
        print_json({"count": len(rows), "sessions": sessions, "secrets": secrets, "episodes": rows})
        return 0
    if not rows:
        print("No pending memories.")
        return 0
    sid_width = min(14, max(len(r["session"]) for r in rows))
    print(f"{'ID':<12}  {'WHEN':<16}  {'SESSION':<{sid_width}}  {'FLAGS':<20}  FIRST WORDS")
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["time"]))
        flags = ",".join(r["flags"] + (["secret"] if r["secret"] and FLAG_SECRET not in r["flags"] else [])) or "-"
        print(f"{r['id']:<12}  {when:<16}  {r['session'][:sid_width]:<{sid_width}}  {flags:<20}  {r['preview']}")
    print(
        f"{len(rows)} pending {'memory' if len(rows) == 1 else 'memories'} in {sessions} "
        f"conversation{'' if sessions == 1 else 's'}; the next sleep consolidates them and destroys the transcripts."
    )
    if secrets:
        print(
            f"{secrets} of them hold{'s' if secrets == 1 else ''} a secret (a password, number or key): "
            f"kept for the conversation, {'its' if secrets == 1 else 'their'} secret sentences never trained on."
        )
    return 0


def forget(home: Home, wanted: str, as_json: bool) -> int:
    if not Vault.exists(home):
        raise VaultError(f"no pending memory has id {wanted}; see `nightcap memories list`")
    vault = Vault.open(home, create=False)
    warn_damage(vault, "memories")
    episode_id = resolve_id(vault.pending(), wanted)
    vault.forget(episode_id)
    if as_json:
        print_json({"forgotten": episode_id, "key_generation": vault.key_generation})
    else:
        print(f"Forgot {episode_id}: its epoch was re-sealed without it under a new key and the old key destroyed.")
    return 0


def main(argv: list[str]) -> int:
    p = parser("memories", "List or forget pending (not yet consolidated) memories.")
    p.add_argument("action", nargs="?", default="list", choices=["list", "forget"], help="list (default) or forget")
    p.add_argument("id", nargs="?", help="with forget: the memory's id (or a unique prefix)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    home = Home.resolve()
    if args.action == "forget":
        if not args.id:
            raise UsageError("forget needs the id of a memory (see `nightcap memories list`)")
        return forget(home, args.id, args.json)
    if args.id:
        raise UsageError(f"unexpected argument '{args.id}' (see `nightcap memories --help`)")
    return list_memories(home, args.json)
