"""Python objects handed to :func:`stochthermo.run` inside a scenario mapping, where a YAML file has a name.

A mapping may hold, where the file would name a callable (``model: package.module:name``), the callable itself —
an ``nn.Module`` or a function — and, where it would list numbers, a tensor or an array. Arrays become lists
(they are data the text can hold). A callable is *held* here for the life of the process and the scenario text
names it ``stochthermo.engine._objects:<name>``, which this module resolves (a module ``__getattr__``); the
run's Dataset records which keys were objects (attribute ``scenario_objects``), because its text alone cannot
re-create them in another process — a rerun there is refused naming the key. What the object computes is
recorded as always: a module's weights are digested into the task keys and the ``inputs`` attribute.
"""

from __future__ import annotations

import re
from typing import Any

from stochthermo.errors import ScenarioError

#: the module path a held object's reference starts with
REFERENCE = "stochthermo.engine._objects:"
_HELD: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    try:
        return _HELD[name]
    except KeyError:
        raise AttributeError(f"no object '{name}' is held in this process: the scenario named a Python object "
                             "handed to stochthermo.run in another session, which its text alone cannot "
                             "re-create; pass the object again") from None


def not_held(text: str) -> list[str]:
    """The objects a scenario text refers to that this process does not hold (a text from another session)."""
    return [name for name in re.findall(re.escape(REFERENCE) + r"(object_[0-9a-f]+)", text) if name not in _HELD]


def hold(value: Any) -> str:
    """Keep ``value`` for the life of the process; the reference a scenario text names it by."""
    name = f"object_{id(value):x}"
    _HELD[name] = value
    return REFERENCE + name


def with_objects_held(spec: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """``spec`` (a scenario mapping) with every callable replaced by its reference and every tensor or array by
    a list; and, by dotted key, a description of each object held. Anything else YAML cannot write is refused
    in one line naming its key."""
    if isinstance(spec, dict):
        out, held = {}, {}
        for key, value in spec.items():
            out[key], inner = with_objects_held(value, f"{path}.{key}" if path else str(key))
            held.update(inner)
        return out, held
    if isinstance(spec, list | tuple):
        pairs = [with_objects_held(value, f"{path}[{i}]") for i, value in enumerate(spec)]
        return [value for value, _ in pairs], {k: v for _, inner in pairs for k, v in inner.items()}
    if spec is None or isinstance(spec, str | bool | int | float):
        return spec, {}
    if hasattr(spec, "tolist") and hasattr(spec, "shape"):  # a torch tensor or a numpy array: data, as lists
        return spec.tolist(), {}
    if callable(spec):
        return hold(spec), {path: f"{type(spec).__name__} (a Python object; not re-creatable from the text)"}
    raise ScenarioError(f"a {type(spec).__name__} cannot stand in a scenario (a callable, a tensor or array, or "
                        "a YAML value is expected)", key=path)
