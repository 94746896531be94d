"""The privacy audit: prove that consolidated conversations left no readable trace, and say
plainly what cannot be proven from inside the machine.

`run_audit(app)` runs every check, in this order (names are stable; see `nightcap audit --json`):

==========================  ================================================================
shredded-epochs             shredded epochs have no key, no file, no ciphertext that opens
vault-copies                no keystore, log or sealed blob outside the vault's own files
ledger-chain                the tombstone ledger's hash chain, MACs and recorded head verify
ledger-provenance           each tombstone matches a stored sleep report and model generation
vault-repairs               damage recovery repaired in the logs, whoever opened the vault first
plaintext-scan              no file under home, temp or caches holds a pending conversation
training-intermediates      no unencrypted dataset, adapter, checkpoint or merged weights
sealed-state                each sealed blob derives from the serving generation or pending episodes
master-key                  where the master key lives; insecure keyrings refused
key-generation              the master key is not older than the newest rotation in the ledger
permissions                 the home dir is private (files 0600, directories 0700)
snapshots                   filesystem / Time Machine snapshots that may keep old copies
swap                        swap that may hold decrypted memory
disk-encryption             full-disk encryption under the home dir
backups                     whether backups copy the home dir
weights                     which generations learned which destroyed epochs; how to roll back
==========================  ================================================================

The audit only reads: it never creates a vault, provisions a model or repairs anything. (Opening
the vault does finish an interrupted shred, as any Nightcap command would.) A memorization probe
is not included: it needs a sleep cycle on the real model.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from assistant.audit import (
    copies,
    intermediates,
    keys,
    ledger,
    permissions,
    plaintext,
    platform,
    repairs,
    sealed,
    shredded,
    weights,
)
from assistant.audit.context import AuditContext
from assistant.audit.result import FAIL, PASS, WARN, AuditResult, Check
from assistant.errors import NightcapError

if TYPE_CHECKING:
    from assistant.app import Nightcap

PLATFORM = (platform.SNAPSHOTS, platform.SWAP, platform.DISK, platform.BACKUPS)
"""Checks of what the audit cannot prove: they warn, never fail."""

__all__ = ["FAIL", "PASS", "WARN", "AuditResult", "Check", "run_audit"]


def _guarded(names: tuple[str, ...], run: Callable[[], list[Check]]) -> list[Check]:
    """A check that cannot finish fails with the reason (platform ones warn), and the others still run."""
    try:
        return run()
    except (NightcapError, OSError, ValueError) as err:
        status = WARN if names[0] in PLATFORM else FAIL
        return [
            Check(n, status, f"could not be checked ({type(err).__name__}: {err}); fix that and run the audit again")
            for n in names
        ]


def run_audit(app: "Nightcap", *, before: datetime | None = None, probe: platform.Probe | None = None) -> AuditResult:
    """Run every check against `app`'s home. `before` adds rollback advice for that day;
    `probe` replaces the platform inspection (tests)."""
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    ctx = AuditContext.load(app, before=before)
    steps: list[tuple[tuple[str, ...], Callable[[], list[Check]]]] = [
        ((shredded.NAME,), lambda: [shredded.check(ctx)]),
        ((copies.NAME,), lambda: [copies.check(ctx)]),
        ((ledger.CHAIN,), lambda: [ledger.check_chain(ctx)]),
        ((ledger.PROVENANCE,), lambda: [ledger.check_provenance(ctx)]),
        ((repairs.NAME,), lambda: [repairs.check(ctx)]),
        ((plaintext.NAME,), lambda: [plaintext.check(ctx)]),
        ((intermediates.NAME,), lambda: [intermediates.check(ctx)]),
        ((sealed.NAME,), lambda: [sealed.check(ctx)]),
        ((keys.MASTER,), lambda: [keys.check_master(ctx)]),
        ((keys.GENERATION,), lambda: [keys.check_generation(ctx)]),
        ((permissions.NAME,), lambda: [permissions.check(ctx)]),
        (PLATFORM, lambda: platform.checks(ctx, probe)),
        ((weights.NAME,), lambda: [weights.check(ctx)]),
    ]
    checks = [c for names, run in steps for c in _guarded(names, run)]
    return AuditResult(str(app.home.root), checks, started, time.perf_counter() - t0)
