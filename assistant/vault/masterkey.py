"""The vault's master key (KEK): kept in the OS keyring, or unlocked with a passphrase.

Two sources, chosen when the vault is created and recorded in its keystore:

* **keyring**: a random 32-byte KEK lives in the OS keyring (service ``nightcap``), one entry per
  key generation, so a rotation can write the new key before the keystore commits to it.
  The null and fail backends (and plaintext-file ones) are refused: they would either lose the
  key or keep it unprotected.
* **passphrase**: Argon2id (>= 64 MiB, t >= 3, 16-byte salt) turns the passphrase into a wrapping
  key that seals a random KEK. The KDF parameters are bound as associated data, so editing them
  in the keystore makes unlocking fail rather than silently weakening the derivation. Rotation
  replaces the random KEK; the passphrase and salt stay. An attacker who knows the passphrase and
  recovers an old copy of the keystore from the disk can still unwrap old keys: only a keyring
  (or secure hardware) can make a shred stick against that, and the audit says so.

`NIGHTCAP_KEYRING` (auto | on | off) overrides the `[vault] keyring` setting; `NIGHTCAP_PASSPHRASE`
supplies the passphrase for headless use and tests.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass
from typing import Any

from assistant.errors import ConfigError, VaultError, WrongPassphrase
from assistant.vault import crypto

ENV_KEYRING = "NIGHTCAP_KEYRING"
ENV_PASSPHRASE = "NIGHTCAP_PASSPHRASE"
KEYRING_SERVICE = "nightcap"

SALT_LEN = 16
MIN_MEMORY_KIB = 64 * 1024
MAX_MEMORY_KIB = 4 * 1024 * 1024  # refuse absurd headers instead of exhausting RAM
MIN_ITERATIONS = 3
MAX_ITERATIONS = 64

_MODES = {
    "auto": "auto",
    "on": "on",
    "off": "off",
    "1": "on",
    "true": "on",
    "yes": "on",
    "0": "off",
    "false": "off",
    "no": "off",
    "": "auto",
}


def keyring_mode(configured: str = "auto") -> str:
    """auto | on | off: the environment wins over config.toml."""
    raw = os.environ.get(ENV_KEYRING, configured)
    mode = _MODES.get(raw.strip().lower())
    if mode is None:
        raise ConfigError(f"{ENV_KEYRING}={raw!r} is not valid; use auto, on or off")
    return mode


# --- passphrase ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KdfParams:
    """Argon2id parameters, stored (and authenticated) in the keystore."""

    salt: bytes
    memory_cost: int = MIN_MEMORY_KIB
    """KiB of memory per derivation."""
    iterations: int = MIN_ITERATIONS
    lanes: int = 4

    @classmethod
    def fresh(cls) -> "KdfParams":
        return cls(salt=os.urandom(SALT_LEN))

    def to_dict(self) -> dict[str, Any]:
        return {
            "algorithm": "argon2id",
            "salt": crypto.b64(self.salt),
            "memory_cost": self.memory_cost,
            "iterations": self.iterations,
            "lanes": self.lanes,
            "length": crypto.KEY_LEN,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "KdfParams":
        try:
            params = cls(
                salt=crypto.unb64(data["salt"]),
                memory_cost=int(data["memory_cost"]),
                iterations=int(data["iterations"]),
                lanes=int(data["lanes"]),
            )
            ok = (
                data.get("algorithm") == "argon2id"
                and data.get("length") == crypto.KEY_LEN
                and len(params.salt) >= SALT_LEN
                and MIN_MEMORY_KIB <= params.memory_cost <= MAX_MEMORY_KIB
                and MIN_ITERATIONS <= params.iterations <= MAX_ITERATIONS
                and 1 <= params.lanes <= 64
            )
        except (KeyError, TypeError, ValueError) as err:
            raise VaultError("the vault keystore's key-derivation header is damaged; restore it from a backup") from err
        if not ok:
            raise VaultError(
                "the vault keystore asks for key-derivation settings below Nightcap's minimum; restore it from a backup"
            )
        return params

    def derive(self, passphrase: str) -> bytes:
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

        kdf = Argon2id(
            salt=self.salt,
            length=crypto.KEY_LEN,
            iterations=self.iterations,
            lanes=self.lanes,
            memory_cost=self.memory_cost,
        )
        return kdf.derive(passphrase.encode("utf-8"))


def obtain_passphrase(given: str | None, *, creating: bool) -> str:
    """The argument, else $NIGHTCAP_PASSPHRASE, else a prompt when stdin is a terminal."""
    if given is None:
        given = os.environ.get(ENV_PASSPHRASE) or None
    if given is None:
        if not sys.stdin or not sys.stdin.isatty():
            raise VaultError(
                f"the vault needs its passphrase: set {ENV_PASSPHRASE} or run Nightcap in a terminal to type it"
            )
        try:
            given = getpass.getpass("New Nightcap passphrase: " if creating else "Nightcap passphrase: ")
            if creating and getpass.getpass("Repeat the passphrase: ") != given:
                raise VaultError("the two passphrases differ; run the command again")
        except EOFError as err:
            raise VaultError(f"no passphrase was typed; set {ENV_PASSPHRASE} or type it at the prompt") from err
    if not given:
        raise VaultError(f"the passphrase is empty; choose one and set {ENV_PASSPHRASE} or type it at the prompt")
    return given


# --- the two sources ----------------------------------------------------------------------


def _kek_aad(vault_id: str, section: dict[str, Any]) -> bytes:
    return crypto.canonical(
        {"purpose": "master-key", "vault": vault_id, "kdf": section["kdf"], "generation": section["generation"]}
    )


class PassphraseSource:
    """KEK sealed under an Argon2id-derived wrapping key; derived once per process."""

    source = "passphrase"

    def __init__(self, params: KdfParams, wrapping_key: bytes) -> None:
        self.params = params
        self._wrapping_key = wrapping_key

    @classmethod
    def derive(cls, params: KdfParams, passphrase: str) -> "PassphraseSource":
        return cls(params, params.derive(passphrase))

    def store(self, vault_id: str, generation: int, kek: bytes) -> dict[str, Any]:
        section: dict[str, Any] = {"source": self.source, "generation": generation, "kdf": self.params.to_dict()}
        section["wrapped_kek"] = crypto.b64(crypto.seal(self._wrapping_key, kek, _kek_aad(vault_id, section)))
        return section

    def unlock(self, vault_id: str, section: dict[str, Any]) -> bytes:
        kek = crypto.unseal(self._wrapping_key, crypto.unb64(section["wrapped_kek"]), _kek_aad(vault_id, section))
        if kek is None:
            raise WrongPassphrase(f"wrong passphrase; check {ENV_PASSPHRASE} or type it again (nothing was changed)")
        return kek

    def retire(self, vault_id: str, generation: int) -> None:
        """Nothing outside the keystore holds an old passphrase-mode KEK."""

    def holds(self, vault_id: str, generation: int) -> bool:
        return False

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "backend": None,
            "kdf": {k: v for k, v in self.params.to_dict().items() if k != "salt"},
        }


def backend_problem(backend: Any) -> str | None:
    """Why a keyring backend must not hold the master key, or None if it is fine."""
    cls = type(backend)
    where = f"{cls.__module__}.{cls.__name__}"
    if cls.__module__.startswith(("keyring.backends.fail", "keyring.backends.null")):
        return f"no usable OS keyring ({where})"
    if "plaintext" in where.lower() or cls.__module__.startswith("keyrings.alt.file"):
        return f"the keyring backend {where} stores secrets unprotected"
    if cls.__name__ == "ChainerBackend" and not getattr(backend, "backends", None):
        return f"no usable OS keyring ({where})"
    try:
        if float(backend.priority) <= 0:
            return f"the keyring backend {where} is not a real keyring"
    except Exception:  # a backend whose priority raises is not usable either
        return f"the keyring backend {where} is not usable"
    return None


def system_keyring() -> tuple[Any | None, str | None]:
    """The OS keyring backend, or (None, reason) when there is none fit for the master key."""
    try:
        import keyring  # deferred: backend discovery can take a moment

        backend = keyring.get_keyring()
    except Exception as err:
        return None, f"the OS keyring could not be loaded ({type(err).__name__})"
    problem = backend_problem(backend)
    return (None, problem) if problem else (backend, None)


class KeyringSource:
    """KEK stored in the OS keyring, one entry per (vault, generation)."""

    source = "keyring"

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    @staticmethod
    def _user(vault_id: str, generation: int) -> str:
        return f"vault-{vault_id}-kek-{generation}"

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(KEYRING_SERVICE, *args)
        except Exception as err:  # backends raise their own error types (D-Bus, Keychain, ...)
            raise VaultError(
                f"the OS keyring failed to {what} the master key ({type(err).__name__}); unlock your keyring and try again"
            ) from err

    def store(self, vault_id: str, generation: int, kek: bytes) -> dict[str, Any]:
        self._call("store", self.backend.set_password, self._user(vault_id, generation), crypto.b64(kek))
        cls = type(self.backend)
        return {"source": self.source, "generation": generation, "backend": f"{cls.__module__}.{cls.__name__}"}

    def unlock(self, vault_id: str, section: dict[str, Any]) -> bytes:
        stored = self._call("read", self.backend.get_password, self._user(vault_id, section["generation"]))
        if not stored:
            raise VaultError(
                "the vault's master key is missing from the OS keyring; restore the keyring entry or the vault cannot be opened"
            )
        return crypto.unb64(stored)

    def retire(self, vault_id: str, generation: int) -> None:
        """Delete an old generation's entry (nothing to do when it is already gone). VaultError
        when the keyring refuses: the caller keeps the generation listed to retry."""
        if self.holds(vault_id, generation):
            self._call("delete", self.backend.delete_password, self._user(vault_id, generation))

    def holds(self, vault_id: str, generation: int) -> bool:
        """Whether the keyring still has generation `generation`'s master key."""
        return bool(self._call("read", self.backend.get_password, self._user(vault_id, generation)))

    def describe(self) -> dict[str, Any]:
        cls = type(self.backend)
        return {"source": self.source, "backend": f"{cls.__module__}.{cls.__name__}", "kdf": None}


MasterSource = PassphraseSource | KeyringSource


def choose_for_new_vault(mode: str, passphrase: str | None) -> MasterSource:
    """Keyring when available (and not switched off), else a passphrase."""
    if mode != "off":
        backend, problem = system_keyring()
        if backend is not None:
            return KeyringSource(backend)
        if mode == "on":
            raise VaultError(
                f"{problem}; install or unlock an OS keyring, or set {ENV_KEYRING}=off to use a passphrase"
            )
    params = KdfParams.fresh()
    return PassphraseSource.derive(params, obtain_passphrase(passphrase, creating=True))


def source_for_existing(section: dict[str, Any], mode: str, passphrase: str | None) -> MasterSource:
    """The source recorded in an existing keystore; keys are never moved between sources silently."""
    if section.get("source") == "keyring":
        if mode == "off":
            raise VaultError(
                f"this vault's master key is in the OS keyring but {ENV_KEYRING}=off; unset it to open the vault"
            )
        backend, problem = system_keyring()
        if backend is None:
            raise VaultError(
                f"this vault's master key is in the OS keyring, but {problem}; unlock or install the keyring"
            )
        return KeyringSource(backend)
    if section.get("source") != "passphrase":
        raise VaultError("the vault keystore names an unknown master-key source; restore it from a backup")
    if mode == "on":
        raise VaultError(
            f"this vault is protected by a passphrase, not the OS keyring; set {ENV_KEYRING}=auto to open it"
        )
    params = KdfParams.from_dict(section.get("kdf") or {})
    return PassphraseSource.derive(params, obtain_passphrase(passphrase, creating=False))
