"""Progress inside a task: long loops (the steps of a flow, training iterations) say how far they are, and whoever
listens — the command line's progress bar — shows it; with nobody listening a report costs one context lookup.

A loop reports through :func:`steps`::

    progress = steps("reverse flow", len(grid) - 1)
    for i in range(len(grid) - 1):
        ...
        progress.advance()

and a caller listens with :func:`listening` (a context manager that installs a callback
``(what, done, total) -> None`` for the code it wraps, in this thread and context only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: receives ``(what, done, total)`` from every loop that reports, or ``None``: nobody listens
Listener = Callable[[str, int, int], None]
_LISTENER: ContextVar[Listener | None] = ContextVar("stochthermo_progress", default=None)


class Steps:
    """How far one loop of ``total`` steps is (see the module docstring)."""

    __slots__ = ("what", "total", "done", "_listener")

    def __init__(self, what: str, total: int):
        self.what, self.total, self.done = what, total, 0
        self._listener = _LISTENER.get()

    def advance(self, count: int = 1) -> None:
        """``count`` more steps are done."""
        self.done += count
        if self._listener is not None:
            self._listener(self.what, self.done, self.total)


def steps(what: str, total: int) -> Steps:
    """A reporter for a loop of ``total`` steps, described by ``what`` (e.g. ``"flow"``, ``"training"``)."""
    return Steps(what, total)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send the reports of every loop run inside the ``with`` block to ``listener``."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)
