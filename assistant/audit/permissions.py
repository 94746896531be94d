"""Check 4b, permissions: the home dir is private to its owner.

Nightcap creates files 0600 and directories 0700 (model weights 0400). Any directory, or any file
with content, that the group or others may use, or that belongs to another user, fails. Empty
files (lock files) leak nothing, so loose modes on them only warn.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check

NAME = "permissions"


def loose(root: Path) -> tuple[list[str], list[str], int]:
    """(problems, loose empty files, entries checked) under `root`, as 'path (mode 0644)'."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    problems: list[str] = []
    empty: list[str] = []
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for path in [Path(dirpath)] + [Path(dirpath, n) for n in sorted(filenames)]:
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            count += 1
            name = "." if path == root else str(path.relative_to(root))
            mode = stat.S_IMODE(st.st_mode)
            if uid is not None and st.st_uid != uid:
                problems.append(f"{name} (owned by uid {st.st_uid})")
            elif mode & 0o077:
                (empty if stat.S_ISREG(st.st_mode) and st.st_size == 0 else problems).append(
                    f"{name} (mode {mode:04o})"
                )
    return problems, empty, count


def check(ctx: AuditContext) -> Check:
    root = ctx.home.root
    problems, empty, count = loose(root)
    details = {"checked": count, "problems": problems[:50], "loose_empty_files": empty[:50]}
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Check(
            NAME, FAIL, f"{problems[0]} in {root} is open to other users{more}; run `chmod -R go-rwx {root}`", details
        )
    if empty:
        return Check(
            NAME,
            WARN,
            f"{len(empty)} empty file(s) such as {empty[0]} have loose modes (nothing leaks); "
            f"`chmod -R go-rwx {root}` tidies them",
            details,
        )
    return Check(NAME, PASS, f"{count} files and directories under the home dir are private to their owner", details)
