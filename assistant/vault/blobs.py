"""Sealed blobs: named binary state derived from episodes, kept exactly as safely as they are.

The sleep cycle's paused-training checkpoint (adapter, optimizer and RNG states) is learned from
the user's conversations, so it never touches the disk in the clear. Each blob is sealed under
its own random data key; the key is wrapped by the master key in the keystore (bound to the
vault, the blob's name and the key generation, and rewrapped on every rotation like an epoch's
key). Dropping a blob removes its key from the keystore first, so whatever copies of the file
the disk keeps can no longer be opened.

File ``vault/blobs/<name>.bin``::

    magic "NCbl" | format u16 | name length u16 | name | length u64 | nonce 12 | ciphertext+tag

AES-256-GCM, AAD = everything before the nonce (so the name and length are authenticated too).
Dropping a blob does not rotate the master key; a shred that follows does (the sleep cycle drops
its checkpoint just before shredding for that reason).
"""

from __future__ import annotations

import copy
import re
import struct
import time
from pathlib import Path

from assistant.errors import VaultError
from assistant.fsutil import atomic_write_bytes, fsync_dir
from assistant.vault import crypto
from assistant.vault.base import VaultBase
from assistant.vault.keystore import BlobEntry, unwrap_blob_key, wrap_blob_key

MAGIC = b"NCbl"
FORMAT_VERSION = 1
_HEAD = struct.Struct(">4sHH")  # magic, format version, name length
_LEN = struct.Struct(">Q")
MAX_NAME = 128
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class DamagedBlob(VaultError):
    """A sealed blob's file is missing, cut short or does not open with its key."""


def check_name(name: str) -> None:
    """Blob names become file names: letters, digits, '.', '_', '-'; ValueError otherwise."""
    if not (isinstance(name, str) and len(name) <= MAX_NAME and _NAME.match(name)):
        raise ValueError(f"invalid blob name {name!r}: use letters, digits, '.', '_' and '-'")


def _header(name: str, sealed_len: int) -> bytes:
    raw = name.encode("ascii")
    return _HEAD.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw + _LEN.pack(sealed_len)


def encode(key: bytes, name: str, data: bytes) -> bytes:
    """The file bytes of one sealed blob."""
    length = crypto.NONCE_LEN + len(data) + crypto.TAG_LEN
    head = _header(name, length)
    return head + crypto.seal(key, data, head)


def frame_at(data: bytes, pos: int) -> tuple[str, int, int] | None:
    """(name, start of the sealed part, end) if a complete, plausible blob frame starts at pos."""
    if len(data) - pos < _HEAD.size:
        return None
    magic, version, name_len = _HEAD.unpack_from(data, pos)
    start = pos + _HEAD.size + name_len + _LEN.size
    if magic != MAGIC or version != FORMAT_VERSION or not 0 < name_len <= MAX_NAME or start > len(data):
        return None
    (length,) = _LEN.unpack_from(data, start - _LEN.size)
    if length < crypto.NONCE_LEN + crypto.TAG_LEN or start + length > len(data):
        return None
    try:
        name = data[pos + _HEAD.size : pos + _HEAD.size + name_len].decode("ascii")
    except UnicodeDecodeError:
        return None
    return name, start, start + length


def open_at(data: bytes, pos: int, key: bytes) -> bytes | None:
    """The plaintext of the blob frame at pos, or None if it is not one that `key` opens."""
    frame = frame_at(data, pos)
    if frame is None:
        return None
    _, start, end = frame
    return crypto.unseal(key, data[start:end], data[pos:start])


class Blobs(VaultBase):
    """The sealed-blob half of `Vault` (a mixin: it works on the Vault's state, see base.py)."""

    @property
    def blobs_dir(self) -> Path:
        return self.dir / "blobs"

    def _blob_path(self, name: str) -> Path:
        return self.blobs_dir / f"{name}.bin"

    def seal_blob(self, name: str, data: bytes, about: str = "") -> None:
        """Encrypt `data` under a fresh key and store it as `name`, replacing any previous blob
        of that name (its key is dropped in the same keystore write). `about` says what it
        derives from (`blob_about`), in the keystore beside its key."""
        check_name(name)
        with self._lock.held():
            self._sync()
            key = crypto.new_key()
            # The file goes first: a crash before the keystore write leaves either an orphan file
            # (removed on open) or a file that the stored key no longer opens, never a stored key
            # whose plaintext could be recovered from an older file.
            atomic_write_bytes(self._blob_path(name), encode(key, name, data))
            ks = copy.deepcopy(self._ks)
            ks.blobs = [b for b in ks.blobs if b.name != name]
            ks.blobs.append(
                BlobEntry(
                    name, wrap_blob_key(self._kek, key, ks.vault_id, name, ks.generation), time.time(), len(data), about
                )
            )
            self._save(ks)

    def open_blob(self, name: str) -> bytes | None:
        """The plaintext of blob `name` (in memory only), or None if there is none.

        Raises DamagedBlob when the blob exists but cannot be read; `drop_blob` clears it.
        """
        check_name(name)
        with self._lock.held():
            self._sync()
            entry = self._ks.blob(name)
            if entry is None:
                return None
            damaged = DamagedBlob(f"the vault's sealed {name} is damaged and cannot be read; it can be discarded")
            try:
                key = unwrap_blob_key(self._kek, entry.wrapped, self._ks.vault_id, name, self._ks.generation)
                raw = self._blob_path(name).read_bytes()
            except (VaultError, OSError) as err:
                raise damaged from err
            frame = frame_at(raw, 0)
            data = open_at(raw, 0, key) if frame is not None and frame[0] == name and frame[2] == len(raw) else None
            if data is None:
                raise damaged
            return data

    def open_blob_or_discard(self, name: str) -> bytes | None:
        """Like `open_blob`, for state that can be rebuilt: a damaged blob is destroyed and None
        returned, so the caller starts over instead of failing on it."""
        try:
            return self.open_blob(name)
        except DamagedBlob:
            self.drop_blob(name)
            return None

    def drop_blob(self, name: str) -> None:
        """Destroy blob `name`: drop its key (atomic keystore rewrite), then unlink its file."""
        check_name(name)
        with self._lock.held():
            self._sync()
            if self._ks.blob(name) is not None:
                ks = copy.deepcopy(self._ks)
                ks.blobs = [b for b in ks.blobs if b.name != name]
                self._save(ks)
            path = self._blob_path(name)
            if path.exists():
                path.unlink(missing_ok=True)
                fsync_dir(self.blobs_dir)

    def blob_about(self, name: str) -> str:
        """What blob `name` derives from, as sealed with it ("" when not recorded)."""
        with self._lock.held():
            self._sync()
            entry = self._ks.blob(name)
            return entry.about if entry is not None else ""

    def blob_names(self) -> list[str]:
        """Names of the sealed blobs the keystore holds keys for."""
        with self._lock.held():
            self._sync()
            return sorted(b.name for b in self._ks.blobs)

    def _blob_keys(self) -> list[bytes]:
        ks = self._ks
        return [unwrap_blob_key(self._kek, b.wrapped, ks.vault_id, b.name, ks.generation) for b in ks.blobs]

    def _remove_blob_orphans(self) -> None:
        """Blob files without a key (a drop or first seal cut short) and stale temp files."""
        if not self.blobs_dir.exists():
            return
        live = {b.name for b in self._ks.blobs}
        for path in self.blobs_dir.iterdir():
            stale_tmp = path.name.startswith(".") and path.name.endswith(".tmp")
            orphan = path.suffix == ".bin" and path.stem not in live
            if path.is_file() and (stale_tmp or orphan):
                path.unlink(missing_ok=True)
