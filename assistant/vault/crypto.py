"""Small cryptographic helpers shared by the vault modules.

Everything is AES-256-GCM with random 96-bit nonces: sealed = nonce | ciphertext+tag. Keys are
32 random bytes from the OS. Canonical JSON (sorted keys, no spaces) is what gets MACed or bound
as associated data, so the same structure always yields the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_LEN)


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM encrypt; returns nonce | ciphertext+tag."""
    nonce = os.urandom(NONCE_LEN)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def unseal(key: bytes, sealed: bytes, aad: bytes) -> bytes | None:
    """Inverse of `seal`; None when the key, the AAD or the bytes do not match."""
    if len(sealed) < NONCE_LEN + TAG_LEN:
        return None
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_LEN], sealed[NONCE_LEN:], aad)
    except InvalidTag:
        return None


def canonical(obj: Any) -> bytes:
    """Deterministic JSON bytes for MACs and associated data."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def mac(key: bytes, data: bytes) -> str:
    """Hex HMAC-SHA256."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, data: bytes, tag: str) -> bool:
    return hmac.compare_digest(mac(key, data), tag)


def subkey(key: bytes, purpose: str) -> bytes:
    """A key for one purpose derived from `key`, so one secret never serves two roles."""
    return hmac.new(key, b"nightcap/" + purpose.encode(), hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
