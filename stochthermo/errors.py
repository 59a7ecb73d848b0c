"""Errors a user can act on.

Every error the CLI reports as a one-line message (exit status 2, no traceback) derives from
:class:`StochthermoError`. Messages name the file, the key and what is wrong.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class StochthermoError(Exception):
    """Base of all user-facing errors."""


class ScenarioError(StochthermoError):
    """A scenario file (or an override of one) is invalid.

    ``key`` is the dotted path inside the file, e.g. ``protocols.cosine.schedule``; ``option`` names the run
    option that would accept what was refused (``force``, ``no-recompute``), which the command line shows as
    its flag.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None, option: str | None = None):
        self.file = file
        self.key = key
        self.option = option
        self.problem = message
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.problem}" if where else self.problem

    def located(self, *, file: str | None = None, key_prefix: str | None = None) -> ScenarioError:
        """The same error, with the file set and the key prefixed by the enclosing path."""
        key = self.key
        if key_prefix:
            key = f"{key_prefix}.{key}" if key else key_prefix
        return ScenarioError(self.problem, file=file or self.file, key=key, option=self.option)


class PluginError(StochthermoError):
    """A plugin could not be registered (bad hook, duplicate name, invalid class, import error)."""


class ConformanceError(StochthermoError, AssertionError):
    """A plugin class breaks the contract of its role (raised by :mod:`stochthermo.testing`; an
    ``AssertionError`` too, so pytest reports it as a failed check, but never an ``assert`` statement, which
    ``python -O`` would remove)."""


class SimulationError(StochthermoError):
    """A run produced something that must not reach an output file (e.g. a non-finite number)."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest candidate, or the list of valid names."""
    candidates = sorted(candidates)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (choose from: {', '.join(candidates)})" if candidates else ""


def first_line(exc: BaseException, fallback: str = "no message") -> str:
    """The first non-empty line of an exception's message (a library's message may span a traceback-like
    block, and a one-line error quotes only its head), or ``fallback`` when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else fallback
