"""How long the rest of a run will take, learned per kind of task.

The tasks of one run are not alike: an SDE protocol's task can take ten times an ODE protocol's, a large sweep
value ten times a small one. A task's *kind* is everything that decides its work except the seed (its
configuration, protocol, device, dtype and code: :attr:`~stochthermo.Task.kind`), so the tasks of one kind differ
only in their random numbers and take about as long. The estimate of what is left is the sum over the tasks not yet
finished of their kind's mean duration — from this run's finished tasks of that kind, else from earlier runs (a
small file in the user's cache directory, ``$XDG_CACHE_HOME/stochthermo/task_seconds.json``), else the mean over
the run's kinds that are known — and, for the task running now, its kind's mean less the time it has run. The file holds
only durations: a damaged or foreign one is ignored and rewritten, and an unwritable cache directory only means no
memory across runs.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from stochthermo.engine._tasks import Task
from stochthermo.output._files import atomic_path

#: how many task kinds the file remembers (the most recently finished)
REMEMBERED_KINDS = 2000


def history_path() -> Path:
    """Where durations of earlier runs are kept."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stochthermo" / "task_seconds.json"


class TaskClock:
    """Durations of finished tasks by kind, and the time left for a run's pending tasks (module docstring)."""

    def __init__(self, history: Path | None = None):
        self.history = history
        self._earlier = _read(history) if history is not None else {}
        self._now: dict[str, list[float]] = {}
        self._started: float | None = None

    def start(self) -> None:
        """A task starts now."""
        self._started = time.perf_counter()

    def finished(self, task: Task) -> float:
        """The running ``task`` has finished: its duration (seconds), learned for its kind."""
        seconds = 0.0 if self._started is None else time.perf_counter() - self._started
        self._now.setdefault(task.kind, []).append(seconds)
        self._started = None
        return seconds

    def _this_run(self) -> dict[str, float]:
        """The mean duration of each kind finished in this run."""
        return {kind: sum(durations) / len(durations) for kind, durations in self._now.items()}

    def expected(self, task: Task) -> float | None:
        """The mean duration of ``task``'s kind: this run's, else earlier runs', else ``None``."""
        return self._expected(task, self._this_run())

    def _expected(self, task: Task, this_run: dict[str, float]) -> float | None:
        return this_run.get(task.kind, self._earlier.get(task.kind))

    def remaining(self, running: Task | None, pending: list[Task]) -> float | None:
        """Seconds left for the ``running`` task and the ``pending`` ones; ``None`` while nothing is known."""
        this_run = self._this_run()  # once per estimate: it is asked for every pending task
        known = [self._expected(task, this_run) for task in pending]
        # a kind nobody has timed yet: the mean over the kinds of this run that are known
        kinds = {task.kind: self._expected(task, this_run) for task in [*pending, *([running] if running else [])]}
        kinds |= this_run
        timed = [value for value in kinds.values() if value is not None]
        typical = sum(timed) / len(timed) if timed else None
        left = 0.0
        if running is not None and self._started is not None:
            elapsed = time.perf_counter() - self._started
            mean = self._expected(running, this_run)
            if mean is None:
                mean = typical
            if mean is None:
                return None
            left += max(mean - elapsed, 0.0)
        for value in known:
            if value is None and typical is None:
                return None
            left += value if value is not None else typical
        return left

    def save(self) -> None:
        """Add this run's durations to the file of earlier runs (best effort: a cache, not a result)."""
        if self.history is None or not self._now:
            return
        # this run's kinds last (the most recent), so that a full file drops the kinds not seen for longest
        merged = {kind: seconds for kind, seconds in self._earlier.items() if kind not in self._now}
        merged |= self._this_run()
        kept = dict(list(merged.items())[-REMEMBERED_KINDS:])
        try:
            self.history.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.history) as tmp:
                Path(tmp).write_text(json.dumps(kept))
        except OSError:
            pass  # no cache directory to write: no memory across runs


def _read(path: Path) -> dict[str, float]:
    """The durations in ``path``, or none where it is missing, damaged or not ours."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {key: float(value) for key, value in raw.items() if isinstance(key, str)
            and isinstance(value, int | float) and math.isfinite(value) and value >= 0}


def format_seconds(seconds: float | None) -> str:
    """``about 3 min left`` style text for a time left (``time left unknown`` while nothing is known)."""
    if seconds is None:
        return "time left unknown"
    if seconds < 90:
        return f"about {seconds:.0f} s left"
    if seconds < 5400:
        return f"about {seconds / 60:.0f} min left"
    return f"about {seconds / 3600:.1f} h left"
