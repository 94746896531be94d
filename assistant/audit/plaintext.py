"""Check 3, no plaintext anywhere: no file holds a readable copy of a pending conversation.

The pending episodes are decrypted in memory and every file under the home dir, the temp dir,
Nightcap's cache and the llama.cpp / Hugging Face caches is searched for any substantial piece of
them: any run of 24 or more characters of a message (UTF-8, UTF-16 or JSON-escaped), and each
shorter message of 12 characters or more whole. Consolidated episodes cannot be searched for:
their text is gone with their keys, and the canary tests cover that path.

How the search stays fast: every 12-byte window of every message goes into a set; each file is
read in 12-byte steps and each step looked up. A 24-byte common run must contain one whole
aligned step, so nothing of that length is missed; a hit is then confirmed by extending it both
ways. Windows with few distinct bytes (indentation, rules) and windows of the system prompt
(kept in config.toml on purpose) are left out, so they never count as a copy.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from os.path import commonprefix
from pathlib import Path

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check
from assistant.audit.walk import Walk, walk
from assistant.episode import Episode

NAME = "plaintext-scan"
MIN_RUN = 24
"""Characters of a message that count as a copy."""
MIN_WHOLE = 12
"""Shorter messages count when found whole, down to this many characters."""
_MIN_DISTINCT = 5
SHARED_BUDGET = 1024 * 1024 * 1024
"""Bytes read from each shared directory (temp, caches) before the scan says it stopped."""


def _encodings(text: str) -> list[tuple[int, bytes]]:
    """(bytes per character unit, encoded) for each form a copy could take."""
    forms = [(1, text.encode("utf-8")), (2, text.encode("utf-16-le"))]
    escaped = json.dumps(text, ensure_ascii=True)[1:-1].encode("ascii")
    if escaped != forms[0][1]:
        forms.append((1, escaped))
    return forms


@dataclass
class Needles:
    """What to look for, by width: window -> nothing (membership only), plus whole short texts."""

    windows: dict[int, set[bytes]] = field(default_factory=lambda: {12: set(), 24: set()})
    texts: dict[int, list[tuple[str, bytes]]] = field(default_factory=lambda: {12: [], 24: []})
    whole: list[tuple[str, bytes]] = field(default_factory=list)

    @classmethod
    def build(cls, episodes: list[Episode], public: str = "") -> "Needles":
        out = cls()
        public_windows: dict[int, set[bytes]] = {12: set(), 24: set()}
        for unit, enc in _encodings(public):
            public_windows[12 * unit] |= _windows(enc, 12 * unit)
        for ep in episodes:
            texts = [m.get("content", "") for m in ep.messages] + ([ep.correction] if ep.correction else [])
            for text in texts:
                if not isinstance(text, str) or len(text) < MIN_WHOLE:
                    continue
                for unit, enc in _encodings(text):
                    if len(text) < MIN_RUN:
                        if len(set(text)) >= _MIN_DISTINCT and text not in public:
                            out.whole.append((ep.id, enc))
                        continue
                    width = 12 * unit
                    out.windows[width] |= _windows(enc, width) - public_windows[width]
                    out.texts[width].append((ep.id, enc))
        return out

    def __bool__(self) -> bool:
        return bool(self.whole or any(self.windows.values()))

    def find(self, data: bytes) -> str | None:
        """The id of an episode a copy of which `data` holds, or None."""
        for width, windows in self.windows.items():
            if not windows:
                continue
            # A verdict depends only on the bytes within one window of the chunk on the left and
            # two on the right (any qualifying run fits there), so repeats are confirmed once.
            tried: set[bytes] = set()
            for q in range(0, len(data) - width + 1, width):
                chunk = data[q : q + width]
                if chunk in windows:
                    around = data[max(0, q - width) : q + 2 * width]
                    if around in tried:
                        continue
                    tried.add(around)
                    owner = self._confirm(data, q, chunk, width)
                    if owner:
                        return owner
        for owner, enc in self.whole:
            if enc in data:
                return owner
        return None

    def _confirm(self, data: bytes, q: int, chunk: bytes, width: int) -> str | None:
        """Whether the window at q sits in a common run of at least MIN_RUN characters."""
        need = MIN_RUN * width // 12
        for owner, enc in self.texts[width]:
            pos = enc.find(chunk)
            while pos != -1:
                right = len(commonprefix([data[q : q + len(enc) - pos], enc[pos:]]))
                left = len(commonprefix([data[max(0, q - pos) : q][::-1], enc[:pos][::-1]]))
                if left + right >= need:
                    return owner
                pos = enc.find(chunk, pos + 1)
        return None


def _windows(enc: bytes, width: int) -> set[bytes]:
    return {w for i in range(len(enc) - width + 1) if len(set(w := enc[i : i + width])) >= _MIN_DISTINCT}


def shared_roots() -> list[Path]:
    """The temp dir and the caches Nightcap, llama.cpp or Hugging Face could have written to."""
    import platformdirs  # deferred: only the audit needs it here

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    roots = [
        Path(tempfile.gettempdir()),
        Path(platformdirs.user_cache_dir("nightcap", appauthor=False)),
        Path(os.environ.get("LLAMA_CACHE") or platformdirs.user_cache_dir("llama.cpp", appauthor=False)),
        Path(os.environ.get("HF_HOME") or cache / "huggingface"),
    ]
    seen: list[Path] = []
    for root in roots:
        if root.is_dir() and root.resolve() not in [s.resolve() for s in seen]:
            seen.append(root)
    return seen


def check(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(NAME, FAIL, missing)
    episodes = ctx.vault.pending() if ctx.vault is not None else []
    needles = Needles.build(episodes, public=ctx.app.config.chat.system_prompt)
    if not needles:
        # Nothing was checked, so nothing is claimed: consolidated text is gone with its keys and
        # cannot be searched for (the shredded-epochs check and the canary tests cover that path).
        return Check(
            NAME,
            WARN,
            "nothing to look for: no pending episode to search the disk for, and consolidated "
            "ones cannot be searched (their text is gone with their keys)",
            {"episodes": len(episodes), "files_scanned": 0},
        )
    root = ctx.home.root
    tally, hits = Walk(), []
    # Each root has its own budget; weights are skipped (the intermediates check covers the home dir's).
    parts = [Walk()]
    sources = [walk(root, skip=lambda p: p.suffix == ".gguf", tally=parts[0])]
    for shared in shared_roots():
        parts.append(Walk())
        sources.append(walk(shared, exclude=(root,), skip_weights=True, max_bytes=SHARED_BUDGET, tally=parts[-1]))
    for source in sources:
        for path, data in source:
            owner = needles.find(data)
            if owner:
                hits.append({"path": str(path), "episode": owner})
    for part in parts:
        tally.merge(part)
    details = {
        "episodes": len(episodes),
        "files_scanned": tally.files,
        "bytes_scanned": tally.bytes,
        "roots": tally.roots,
        "skipped_large": tally.skipped_large,
        "unreadable": tally.unreadable,
        "truncated": tally.truncated,
        "copies": hits[:20],
    }
    if hits:
        more = f" (and {len(hits) - 1} more file(s))" if len(hits) > 1 else ""
        return Check(
            NAME,
            FAIL,
            f"{hits[0]['path']} holds a readable copy of pending episode {hits[0]['episode']}"
            f"{more}; delete it (and whatever made it)",
            details,
        )
    if tally.truncated:
        return Check(
            NAME,
            WARN,
            f"no copy of {len(episodes)} pending episode(s) in {tally.files} files, but the scan "
            "stopped at its size limit in a shared directory; clear the temp dir and run the audit again",
            details,
        )
    return Check(
        NAME,
        PASS,
        f"no copy of {len(episodes)} pending episode(s) in {tally.files} files under the home dir, "
        "the temp dir and the caches",
        details,
    )
