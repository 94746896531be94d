"""Check 4, key hygiene: where the master key lives, how it is derived, and that it rotates.

`master-key`: a keyring-held key must sit in a real OS keyring (the null, fail and plaintext
backends are refused, now as when the vault was made). A passphrase-derived key passes with a
warning: anyone who has the passphrase and recovers an old keystore copy from the disk could
unwrap the keys of shredded epochs; only a keyring (or secure hardware) makes a shred stick
against that. Older master-key generations the keyring still holds (each unwraps an old
keystore copy) fail the check; the audit deletes them as it finds them, so the next audit passes
once the keyring lets go.

The passphrase's stretching (Argon2id, at least 64 MiB and 3 passes) is reported in the
`master-key` details; a vault whose header asks for less is refused when it opens, so no
separate check could ever fail on it.

`key-generation`: each shred or forget rotates the master key and records the new generation in
its tombstone; a keystore older than the newest tombstone means an old copy was restored.
"""

from __future__ import annotations

from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, Check
from assistant.vault.masterkey import ENV_KEYRING, KEYRING_SERVICE, backend_problem, system_keyring

MASTER = "master-key"
GENERATION = "key-generation"


def _refuses_insecure() -> bool:
    """The refusal itself still works: null and fail backends are rejected."""
    import keyring.backends.fail
    import keyring.backends.null

    return all(backend_problem(b) for b in (keyring.backends.null.Keyring(), keyring.backends.fail.Keyring()))


def check_master(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(MASTER, FAIL, missing)
    if ctx.vault is None:
        return Check(MASTER, PASS, "no vault yet: no master key exists", {"source": None})
    info = ctx.vault.master_info()
    details = {"source": info.get("source"), "backend": info.get("backend"), "refuses_insecure": _refuses_insecure()}
    if not details["refuses_insecure"]:
        return Check(
            MASTER, FAIL, "this Nightcap would accept a null or failing keyring backend; reinstall Nightcap", details
        )
    if info.get("source") == "keyring":
        backend, problem = system_keyring()
        details["backend_now"] = f"{type(backend).__module__}.{type(backend).__name__}" if backend else None
        if problem:
            return Check(
                MASTER,
                FAIL,
                f"the master key is meant to be in the OS keyring but {problem}; unlock or install a secure keyring",
                details,
            )
        deleted, refused = ctx.vault.sweep_master_keys()
        details["stale_generations"], details["deleted_generations"] = deleted + refused, deleted
        if refused:
            return Check(
                MASTER,
                FAIL,
                f"the OS keyring still holds the master key of {len(refused)} older "
                f"generation(s) ({', '.join(map(str, refused[:5]))}), which unwrap the keys of shredded epochs "
                "from an old keystore copy, and refused to delete them; unlock the keyring and run "
                f'`nightcap audit` again (or remove the "{KEYRING_SERVICE}" entries of older generations by hand)',
                details,
            )
        if deleted:
            return Check(
                MASTER,
                FAIL,
                f"the OS keyring still held the master key of {len(deleted)} older "
                f"generation(s) ({', '.join(map(str, deleted[:5]))}), which unwrap the keys of shredded epochs "
                "from an old keystore copy; the audit deleted them just now: run `nightcap audit` again",
                details,
            )
        return Check(
            MASTER, PASS, f"the master key is random and held by the OS keyring ({details['backend_now']})", details
        )
    backend, _ = system_keyring()
    details["keyring_available"] = backend is not None
    hint = (
        f"an OS keyring is available: create the vault with {ENV_KEYRING}=on for shreds that stick"
        if backend is not None
        else "no secure OS keyring is available here"
    )
    # The passphrase's stretching is reported here; there is no separate check of it, because a
    # vault whose header asks for less than Argon2id 64 MiB t=3 is refused before any audit runs.
    kdf = info.get("kdf") or {}
    details["kdf"] = kdf
    stretched = f"Argon2id {int(kdf.get('memory_cost', 0)) // 1024} MiB, t={kdf.get('iterations')}"
    return Check(
        MASTER,
        WARN,
        f"the master key is unlocked by a passphrase ({stretched}): with the passphrase, an "
        f"old keystore copy recovered from the disk would still unwrap shredded keys; {hint}",
        details,
    )


def check_generation(ctx: AuditContext) -> Check:
    missing = ctx.vault_missing()
    if missing:
        return Check(GENERATION, FAIL, missing)
    if ctx.vault is None:
        return Check(GENERATION, PASS, "no vault yet", {"generation": None})
    generation = ctx.vault.key_generation
    rotations = [int(s["key_generation"]) for s in ctx.tombstones if isinstance(s.get("key_generation"), int)]
    newest = max(rotations, default=1)
    details = {
        "generation": generation,
        "newest_in_ledger": newest if rotations else None,
        "rotations": len(set(rotations)),
    }
    if generation < newest:
        return Check(
            GENERATION,
            FAIL,
            f"the master key is at generation {generation} but the ledger records a rotation "
            f"to {newest}: an old keystore copy was restored; restore the newest keystore",
            details,
        )
    return Check(
        GENERATION,
        PASS,
        f"master key generation {generation}, at or after the newest rotation the "
        f"ledger records ({len(set(rotations))} shred(s) so far)",
        details,
    )
