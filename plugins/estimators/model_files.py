"""Model files are data, not code: a ``torch.export`` archive is inspected before torch reads it.

``torch.export.load`` unpickles several members of a ``.pt2`` archive without restriction: a weight or a
constant whose config says ``use_pickle``, "custom" and "opaque" constants, legacy weight files, and the
sample inputs when the restricted unpickler refuses them (it then retries unrestricted). Any of these runs
arbitrary code while the file is read. :func:`check_exported_program` reads the archive as a zip file first
and refuses it, naming the member, unless every member is one of

* the archive's marker files (``archive_format``, ``archive_version``, ``byteorder``, ``.data/...``),
* a program's graph (``models/<name>.json``, JSON),
* a weights or constants config (JSON) whose every entry is a raw tensor (``use_pickle: false``; constants
  named ``tensor_*``), and the raw tensor files they name,
* the sample inputs, which must load with ``torch.load(weights_only=True)`` (here, before torch tries),
* ``extra/`` files (read as text).

The archive must have one root folder and no member named twice, and legacy ``data/weights/<model>.pt`` or
``data/constants/<model>.pt`` members are refused (torch unpickles them whatever the configs say). Compiled
AOTInductor or ExecuTorch payloads (shared libraries) and anything else are refused. TorchScript
files are read by torch's own TorchScript unpickler, which builds TorchScript values only (no Python
objects); diffusers models are loaded from safetensors where the folder has them, and ``.bin`` weights only
by diffusers' ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import torch

from stochthermo import ScenarioError

#: members every archive may hold, below its root folder
MARKERS = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
MODEL = re.compile(r"^models/([^/]+)\.json$")
CONFIG = re.compile(r"^data/(weights|constants)/([^/]+)_(weights|constants)_config\.json$")
PAYLOAD = re.compile(r"^data/(weights|constants)/([^/]+)$")
SAMPLE_INPUTS = re.compile(r"^data/sample_inputs/([^/]+)\.pt$")
#: the prefix of a raw tensor constant's file (others are pickled objects)
TENSOR_CONSTANT = "tensor_"


class UnsafeModelFile(ScenarioError):
    """A model file that would run code when read."""


def check_exported_program(path: Path, key: str = "file") -> None:
    """Refuse a ``.pt2`` archive that torch would unpickle any part of (module docstring); errors name the file,
    the member and the scenario ``key``."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ScenarioError(f"{path}: not a torch.export program ({type(exc).__name__}: {exc})", key=key) from None
    with archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        roots = {name.split("/", 1)[0] for name in names if "/" in name}
        if len(set(names)) != len(names) or len(roots) > 1:
            raise UnsafeModelFile(f"{path}: members named twice or under several root folders: refused, the file is "
                                  "not read", key=key)
        members = {_inner(name): name for name in names}
        models = {match.group(1) for inner in members if (match := MODEL.match(inner))}
        for model in models:  # torch reads these legacy names as pickles, whatever a config says
            for legacy in (f"data/weights/{model}.pt", f"data/constants/{model}.pt"):
                if legacy in members:
                    raise UnsafeModelFile(f"{path}: member '{members[legacy]}' is a legacy pickled state dict, which "
                                          "reading would execute: refused, the file is not read", key=key)
        referenced = set()
        for inner, name in members.items():
            config = CONFIG.match(inner)
            if config:
                referenced |= _raw_payloads(archive, name, inner, config.group(1), path, key)
        for inner, name in members.items():
            if inner in MARKERS or MODEL.match(inner) or CONFIG.match(inner) or inner.startswith("extra/"):
                continue
            if SAMPLE_INPUTS.match(inner):
                _check_sample_inputs(archive.read(name), path, name, key)
            elif not (PAYLOAD.match(inner) and inner in referenced):
                raise UnsafeModelFile(f"{path}: member '{name}' is not a tensor, a graph or a config of a torch.export "
                                      "program (a pickle, a compiled library or a file of another format): refused, "
                                      "the file is not read", key=key)


def _inner(name: str) -> str:
    """A member's path below the archive's root folder."""
    return name.split("/", 1)[1] if "/" in name else name


def _raw_payloads(archive: zipfile.ZipFile, name: str, inner: str, folder: str, path: Path, key: str) -> set[str]:
    """The raw tensor files a weights or constants config names; a pickled entry refuses the file."""
    try:
        entries = json.loads(archive.read(name)).get("config", {})
    except (ValueError, AttributeError):
        raise UnsafeModelFile(f"{path}: member '{name}' is not a JSON config", key=key) from None
    if not isinstance(entries, dict):
        raise UnsafeModelFile(f"{path}: member '{name}' is not a JSON config", key=key)
    files = set()
    for entry_name, entry in entries.items():
        file_name = entry.get("path_name") if isinstance(entry, dict) else None
        pickled = not isinstance(entry, dict) or entry.get("use_pickle") is not False
        if pickled or not isinstance(file_name, str) or "/" in file_name or (
                folder == "constants" and not file_name.startswith(TENSOR_CONSTANT)):
            raise UnsafeModelFile(f"{path}: {folder[:-1]} '{entry_name}' in '{name}' is stored as a pickled object, "
                                  "which reading would execute: refused, the file is not read", key=key)
        files.add(f"data/{folder}/{file_name}")
    return files


def _check_sample_inputs(raw: bytes, path: Path, name: str, key: str) -> None:
    """Sample inputs must load with the restricted unpickler: torch retries a failure without restriction."""
    try:
        torch.load(io.BytesIO(raw), weights_only=True)
    except Exception as exc:  # whatever the restricted unpickler refuses, torch would run unrestricted
        raise UnsafeModelFile(f"{path}: member '{name}' holds objects beyond tensors "
                              f"({type(exc).__name__}), which reading would execute: refused, the file is not read",
                              key=key) from None
