"""The model store: immutable generations and an atomically switched `current` pointer.

Layout under `home/models`::

    gen-0000/model.gguf        the weights (never modified once written)
    gen-0000/manifest.json     source, sha256, created, parent, arch, file type, epochs learned
    current                    the name of the serving generation, replaced atomically

A generation directory is built under a temporary name and renamed into place, so a crash never
leaves a half generation. On first use the embedded default model becomes `gen-0000`.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from assistant.errors import DiskFullError, ModelError
from assistant.fsutil import atomic_write_json, atomic_write_text, ensure_dir, fsync_dir, open_private, read_json
from models.provision import DEFAULT_SOURCE, assemble_default, sha256_file

GGUF_NAME = "model.gguf"
MANIFEST = "manifest.json"
SLEEP_ARCHS = ("gemma3", "llama", "qwen2", "qwen3")
_GEN = re.compile(r"^gen-(\d{4,})$")


@dataclass
class Generation:
    """One immutable model generation."""

    name: str
    dir: Path
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def gguf(self) -> Path:
        return self.dir / GGUF_NAME

    @property
    def index(self) -> int:
        return int(self.name.split("-")[1])

    @property
    def arch(self) -> str:
        return str(self.manifest.get("arch", ""))

    @property
    def can_sleep(self) -> bool:
        return self.arch in SLEEP_ARCHS

    @property
    def slept(self) -> bool:
        """Made by a night or a forget: it has learned from its user."""
        return self.manifest.get("source") in ("sleep", "forget")

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")


def describe_gguf(path: Path) -> dict[str, Any]:
    """Validate a GGUF and return the manifest fields read from it. Raises ModelError."""
    from models.ggufmeta import read_meta  # deferred: pulls in numpy and gguf

    meta = read_meta(path)
    return {
        "arch": meta.arch,
        "file_type": meta.file_type,
        "file_type_name": meta.file_type_name,
        "model_name": meta.name,
        "n_layers": meta.n_layers,
        "can_sleep": meta.arch in SLEEP_ARCHS,
    }


class ModelStore:
    """Generations of the serving model under `root` (normally `home.models`)."""

    def __init__(self, root: Path) -> None:
        self.root = ensure_dir(root)
        self._pointer = self.root / "current"

    # -- reading -----------------------------------------------------------------------------

    def list(self) -> list[Generation]:
        gens = []
        for p in sorted(self.root.iterdir()):
            if _GEN.match(p.name) and (p / MANIFEST).exists():
                gens.append(Generation(p.name, p, read_json(p / MANIFEST)))
        return gens

    def get(self, name: str) -> Generation:
        if name.isdigit():
            name = f"gen-{int(name):04d}"
        d = self.root / name
        if not (_GEN.match(name) and (d / MANIFEST).exists()):
            raise ModelError(f"no model generation '{name}'; see `nightcap models list`")
        return Generation(name, d, read_json(d / MANIFEST))

    def current_name(self) -> str | None:
        try:
            return self._pointer.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def current(self, provision: bool = True) -> Generation:
        """The serving generation; provisions the embedded default model on first use."""
        name = self.current_name()
        if name is None:
            if not provision:
                raise ModelError("no model yet; run `nightcap ask hi` to set up the default model")
            return self.provision_default()
        try:
            gen = self.get(name)
        except ModelError:
            raise ModelError(
                f"the current model {name} is missing; run `nightcap models list` and `nightcap models use GEN`"
            ) from None
        if not gen.gguf.exists():
            raise ModelError(f"{gen.gguf} is missing; run `nightcap models rollback` or `nightcap models use GEN`")
        return gen

    # -- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise store changes across processes."""
        with open_private(self.root / ".lock") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _next_name(self) -> str:
        used = [int(m.group(1)) for p in self.root.iterdir() if (m := _GEN.match(p.name))]
        return f"gen-{(max(used) + 1 if used else 0):04d}"

    def clean_partial(self) -> None:
        """Remove half-built generations left by a crash."""
        for p in self.root.glob(".building-*"):
            shutil.rmtree(p, ignore_errors=True)

    def _install(self, fill: Callable[[Path], dict[str, Any]], extra: dict[str, Any]) -> Generation:
        with self.lock():
            self.clean_partial()
            name = self._next_name()
            tmp = self.root / f".building-{name}-{os.getpid()}"
            ensure_dir(tmp)
            try:
                manifest = {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fill(tmp / GGUF_NAME)}
                manifest.update(extra)
                atomic_write_json(tmp / MANIFEST, manifest)
                os.chmod(tmp / GGUF_NAME, 0o400)
                os.rename(tmp, self.root / name)
                fsync_dir(self.root)
            except OSError as err:
                shutil.rmtree(tmp, ignore_errors=True)
                if getattr(err, "errno", None) == 28:
                    raise DiskFullError(f"the disk holding {self.root} is full; free some space and try again") from err
                raise
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return Generation(name, self.root / name, manifest)

    def provision_default(self) -> Generation:
        """Make the embedded default model `gen-0000` and point `current` at it (once)."""
        with self.lock():
            name = self.current_name()
        if name is not None:
            return self.current()

        def fill(dest: Path) -> dict[str, Any]:
            digest = assemble_default(dest)
            return {"source": DEFAULT_SOURCE, "sha256": digest, "parent": None, **describe_gguf(dest)}

        gen = self._install(fill, {})
        self.use(gen.name)
        return gen

    def add(
        self,
        path: Path,
        *,
        source: str | None = None,
        parent: str | None = None,
        extra: dict[str, Any] | None = None,
        link: bool = False,
    ) -> Generation:
        """Validate `path` and store a copy as a new generation (not made current).

        `link=True` hard-links instead of copying where the filesystem allows (used for files
        the store itself produced). Raises ModelError for a file that is not a usable GGUF; the
        store is untouched then.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path} does not exist or is not a file")
        info = describe_gguf(path)

        def fill(dest: Path) -> dict[str, Any]:
            if link:
                try:
                    os.link(path, dest)
                except OSError:
                    shutil.copyfile(path, dest)
            else:
                shutil.copyfile(path, dest)
            # Durable before `current` can name it: without this a power cut after `models use`
            # can leave the generation's directory with an empty model file.
            with open(dest, "rb") as fh:
                os.fsync(fh.fileno())
            return {"source": source or str(path.resolve()), "sha256": sha256_file(dest), "parent": parent, **info}

        return self._install(fill, extra or {})

    def use(self, name: str) -> Generation:
        """Switch `current` to generation `name` atomically."""
        gen = self.get(name)
        if not gen.gguf.exists():
            raise ModelError(f"{gen.name} has no model file; pick another generation")
        atomic_write_text(self._pointer, gen.name + "\n")
        return gen

    def rollback(self) -> Generation:
        """Switch back to the current generation's parent (or the previous one by number)."""
        cur = self.current(provision=False)
        target = cur.parent
        if target is None:
            older = [g for g in self.list() if g.index < cur.index]
            if not older:
                raise ModelError(f"{cur.name} is the oldest generation; there is nothing to roll back to")
            target = older[-1].name
        return self.use(target)

    def prune(self, keep: int) -> builtins.list[str]:  # in this class `list` names the method
        """Delete generations beyond the current one and its `keep` predecessors by number."""
        cur = self.current_name()
        gens = self.list()
        keepers = {cur}
        older = [g.name for g in gens if cur and g.index < int(cur.split("-")[1])]
        keepers.update(older[-keep:] if keep > 0 else [])
        removed = []
        for g in gens:
            if g.name not in keepers and cur and g.index < int(cur.split("-")[1]):
                shutil.rmtree(g.dir, ignore_errors=True)
                removed.append(g.name)
        return removed
