"""One error base for everything Nightcap reports to a person.

A `NightcapError` carries a single sentence that says what went wrong and what to do next; the
CLI prints it on one line of stderr and exits 1, never with a traceback.
"""

from __future__ import annotations


class NightcapError(Exception):
    """A failure the user can act on. `str(err)` is the one-line message."""

    exit_code: int = 1

    def __init__(self, message: str, title: str = "Nightcap") -> None:
        super().__init__(message)
        self.title = title


class UsageError(NightcapError):
    """Bad command-line usage (exit code 2)."""

    exit_code = 2


class ConfigError(NightcapError):
    """config.toml is unreadable or a key has an invalid value."""


class ModelError(NightcapError):
    """A model file is missing, invalid, or cannot be served."""


class VaultError(NightcapError):
    """The encrypted episode vault cannot be opened or is damaged."""


class WrongPassphrase(VaultError):
    """The passphrase does not unlock the vault."""


class SleepError(NightcapError):
    """A sleep cycle could not run or failed; the previous model keeps serving."""


class ServeError(NightcapError):
    """`nightcap serve` cannot start (address in use, a remote bind not allowed)."""


class DiskFullError(NightcapError):
    """Not enough free disk space to finish the operation safely."""


def where(err: BaseException) -> str:
    """An unexpected exception described without its message: its type and the innermost line
    that raised it ("KeyError at sleep/dreams.py:212"). Messages of other code can quote the data
    they were handed (a conversation, a passphrase), so nothing of them reaches a report, a log
    or the screen."""
    import traceback
    from pathlib import Path

    name = type(err).__name__
    if isinstance(err, OSError) and err.strerror:  # the system's own words ("No space left on device")
        name += f" ({err.strerror})"
    frames = traceback.extract_tb(err.__traceback__) if err.__traceback__ else []
    if not frames:
        return name
    shown = "/".join(Path(frames[-1].filename).parts[-2:])
    return f"{name} at {shown}:{frames[-1].lineno}"
