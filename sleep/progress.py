"""How a running sleep cycle reports its progress to whoever watches it.

`run_cycle(app, progress=...)` calls these methods from the thread it runs in; the TUI forwards
them to its screen, `nightcap sleep` prints them, and everyone else passes nothing and gets
`NullProgress`. Implementations must be cheap and must never raise: a watcher that fails must not
fail the night's consolidation.

    class Printer:
        def stage(self, name: str) -> None: print("->", name)
        def step(self, i: int, total: int, loss: float | None) -> None: print(i, total, loss)
"""

from __future__ import annotations

from typing import Protocol


class SleepProgress(Protocol):
    """Callbacks a sleep cycle makes while it runs."""

    def stage(self, name: str) -> None:
        """A stage of the cycle begins, e.g. "gather", "train", "gate", "shred".

        Args:
            name: the stage's short name, as in the design's list of steps.
        """
        ...

    def step(self, i: int, total: int, loss: float | None) -> None:
        """Optimizer step `i` of `total` finished (1-based) with training loss `loss`.

        Args:
            i: steps done so far, 1 <= i <= total.
            total: steps planned for this night.
            loss: the step's training loss, or None when it was not computed.
        """
        ...


class NullProgress:
    """The default watcher: ignores everything."""

    def stage(self, name: str) -> None:
        pass

    def step(self, i: int, total: int, loss: float | None) -> None:
        pass
