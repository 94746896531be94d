"""Stop points: where long work asks whether it should give the machine back.

A night is stopped from outside (the user came back, power went, SIGTERM), and must yield within
seconds from any point of any stage, not only between training steps. Stages run llama.cpp
completions, scoring, forward passes and file writes in loops; each loop calls `stop_point()`,
which raises `Stopped` when the `should_stop` installed by `stop_points(...)` around the work
says so. Outside such a block `stop_point()` does nothing, so the same code serves chat and
tests unchanged. The installed check is per thread and per context (a ContextVar).

    with stop_points(lambda: flag.is_set()):
        run_the_night()        # any stop_point() inside raises Stopped once the flag is set
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Callable, Iterator

_SHOULD_STOP: ContextVar[Callable[[], bool] | None] = ContextVar("nightcap_should_stop", default=None)


class Stopped(Exception):
    """Work was asked to stop at a stop point; what it finished is kept by its caller."""


def stop_point() -> None:
    """Raise `Stopped` if the work around this call was asked to stop."""
    should_stop = _SHOULD_STOP.get()
    if should_stop is not None and should_stop():
        raise Stopped


@contextlib.contextmanager
def stop_points(should_stop: Callable[[], bool]) -> Iterator[None]:
    """Install `should_stop` for every `stop_point()` in this block."""
    token = _SHOULD_STOP.set(should_stop)
    try:
        yield
    finally:
        _SHOULD_STOP.reset(token)
