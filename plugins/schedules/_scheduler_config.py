"""Finding and reading a diffusers scheduler config (shared by the ``diffusers`` and ``edm`` schedules; registers
nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from stochthermo import ScenarioError


def load_scheduler_config(path: Path) -> tuple[Path, dict]:
    """The file and the JSON object of a scheduler config: ``path`` is a ``scheduler_config.json``, a scheduler
    directory holding one, or a pipeline directory with a ``scheduler/`` folder; a one-line
    :class:`ScenarioError` naming the path and what is wrong otherwise."""
    path = Path(path)
    candidates = [path] if path.suffix == ".json" else [path / "scheduler_config.json",
                                                        path / "scheduler" / "scheduler_config.json"]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        what = "no such file" if path.suffix == ".json" else (
            "not a diffusers scheduler or pipeline directory (no scheduler_config.json or "
            "scheduler/scheduler_config.json)")
        raise ScenarioError(f"{path}: {what}", key="path")
    try:
        config = json.loads(found.read_text())
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{found}: not a readable JSON scheduler config ({type(exc).__name__})", key="path") \
            from None
    if not isinstance(config, dict):
        raise ScenarioError(f"{found}: a scheduler config must be a JSON object", key="path")
    return found, config
