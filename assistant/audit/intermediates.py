"""Check 3b, training intermediates: nothing derived from episodes is left unencrypted.

A sleep cycle's datasets, adapters, checkpoints and merged weights live in ``home/tmp`` while it
runs and are removed when it ends; its checkpoint is sealed in the vault (``vault/blobs``). So
after a cycle: any file under ``home/tmp``, any weights or tensor file elsewhere in the home dir
other than a generation's ``model.gguf``, any LoRA adapter directory, and any half-built
generation (``models/.building-*``) is an unencrypted record of the user's conversations.
While a cycle is running its scratch files are expected, and the check only warns.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check
from assistant.audit.walk import is_generation_gguf

NAME = "training-intermediates"
TENSOR_SUFFIXES = frozenset(
    {
        ".gguf",
        ".safetensors",
        ".pt",
        ".pth",
        ".ckpt",
        ".bin",
        ".npy",
        ".npz",
        ".arrow",
        ".parquet",
        ".pkl",
        ".pickle",
        ".h5",
        ".onnx",
    }
)
ADAPTER_MARKERS = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def cycle_running(home_root: Path) -> bool:
    """Whether a sleep cycle holds the home's cycle lock right now."""
    path = home_root / "sleep.lock"
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also releases the lock if it was taken
    return False


def _allowed(root: Path, path: Path) -> bool:
    if is_generation_gguf(root, path):
        return True
    rel = path.relative_to(root).parts
    return len(rel) == 3 and rel[:2] == ("vault", "blobs") and path.suffix == ".bin"


def find(root: Path) -> list[str]:
    """Home-relative paths of unencrypted training intermediates (directories end with '/')."""
    found: list[str] = []
    tmp = root / "tmp"
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames.sort()
        if here.parent == root / "models" and here.name.startswith(".building-"):
            found.append(str(here.relative_to(root)) + "/")
            dirnames[:] = []
            continue
        if any(m in filenames for m in ADAPTER_MARKERS):
            found.append(str(here.relative_to(root)) + "/")
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink() or _allowed(root, path):
                continue
            if tmp in path.parents or path.suffix.lower() in TENSOR_SUFFIXES:
                found.append(str(path.relative_to(root)))
    return found


def check(ctx: AuditContext) -> Check:
    root = ctx.home.root
    found = find(root)
    details = {"found": found[:50], "count": len(found)}
    if not found:
        return Check(
            NAME,
            PASS,
            "no unencrypted dataset, adapter, checkpoint or merged weights in the home dir "
            "(the sleep checkpoint is sealed in the vault)",
            details,
        )
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    if cycle_running(root):
        return Check(
            NAME,
            WARN,
            f"a sleep cycle is running and its scratch files exist, e.g. {found[0]}{more}; "
            "run the audit again when it has finished",
            details,
        )
    return Check(
        NAME,
        FAIL,
        f"unencrypted training intermediate left behind: {found[0]}{more}; delete it "
        "(a sleep cycle was probably killed mid-way)",
        details,
    )
