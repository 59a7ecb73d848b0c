"""Device and dtype resolution: ``auto`` means CUDA when present, else CPU."""

from __future__ import annotations

import re

import torch

from stochthermo.errors import ScenarioError

DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEVICE_NAME = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    if not DEVICE_NAME.match(name):
        raise ScenarioError(f"unknown device '{name}' (use auto, cpu, cuda or cuda:N)", key="device")


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> :class:`torch.device`."""
    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ScenarioError(f"device '{name}' requested but CUDA is not available here", key="device")
    return torch.device(name)


def resolve_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ScenarioError(f"unknown dtype '{name}' (use float64 or float32)", key="dtype") from None
