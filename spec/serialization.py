"""PyNet model files: ``.npz`` archives of the state dict plus an architecture record.

The archive holds one array per state-dict entry, under torch's names, and a JSON string
(``__architecture__``) naming each layer and its constructor arguments. Everything is read
with ``np.load(allow_pickle=False)``: a model file can never execute code. Writes go to a
temporary file first and are renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from spec.files import atomic_write
from spec.module import Module

ARCHITECTURE_KEY = "__architecture__"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A PyNet model file that cannot be loaded; the message names the file and the problem."""


def architecture(module: Module) -> dict[str, Any]:
    """``{"type": "Conv2d", "config": {...}}``, with ``"children"`` for containers."""
    record: dict[str, Any] = {"type": type(module).__name__, "config": module.config()}
    if module._modules:
        record["children"] = [architecture(child) for child in module._modules.values()]
        names = getattr(module, "child_names", None)
        if names is not None:
            record["names"] = names
    return record


def build(nn: Any, record: dict[str, Any]) -> Module:
    """The layer (tree) that an architecture record describes, from backend namespace ``nn``."""
    layer_type = getattr(nn, record.get("type", ""), None)
    if not (isinstance(layer_type, type) and issubclass(layer_type, Module)):
        raise ModelFileError(f"unknown layer type {record.get('type')!r}")
    if "children" in record:
        children = [build(nn, child) for child in record["children"]]
        if "names" in record:
            return layer_type(OrderedDict(zip(record["names"], children, strict=True)))
        return layer_type(*children)
    return layer_type(**record.get("config", {}))


def save(module: Module, path: str | os.PathLike) -> None:
    """Write ``module``'s architecture and state dict to ``path`` (.npz), atomically."""
    header = json.dumps({"format": FORMAT_VERSION, "architecture": architecture(module)})
    arrays = {ARCHITECTURE_KEY: np.array(header), **module.state_dict()}
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def read(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The architecture record and the state dict stored in ``path``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such PyNet model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable PyNet model file (truncated, corrupt "
                             f"or holding pickled objects): {error}") from None
    if ARCHITECTURE_KEY not in arrays:
        raise ModelFileError(f"{path}: no {ARCHITECTURE_KEY!r} record: not a PyNet model file")
    try:
        header = json.loads(str(arrays.pop(ARCHITECTURE_KEY)))
        return header["architecture"], arrays
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ModelFileError(f"{path}: unreadable architecture record: {error}") from None


def load(nn: Any, path: str | os.PathLike) -> Module:
    """Rebuild the model stored in ``path`` with backend namespace ``nn``."""
    record, state = read(path)
    try:
        module = build(nn, record)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: {error}") from None
    load_state(module, path, record, state)
    return module


def load_state(module: Module, path: str | os.PathLike,
               record: dict[str, Any] | None = None,
               state: dict[str, np.ndarray] | None = None) -> None:
    """Load the weights in ``path`` into ``module``, whose architecture must be the file's."""
    if record is None or state is None:
        record, state = read(path)
    expected = json.loads(json.dumps(architecture(module)))  # tuples -> lists, as in the file
    if record != expected:
        raise ModelFileError(f"{path}: the file holds another architecture: "
                             f"{_first_difference(record, expected)}")
    try:
        module.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as error:
        raise ModelFileError(f"{path}: {error.args[0] if error.args else error}") from None


def _first_difference(found: Any, expected: Any, where: str = "model") -> str:
    if isinstance(found, dict) and isinstance(expected, dict):
        for key in sorted(set(found) | set(expected)):
            if found.get(key) != expected.get(key):
                return _first_difference(found.get(key), expected.get(key), f"{where}.{key}")
    if isinstance(found, list) and isinstance(expected, list) and len(found) == len(expected):
        for index, (a, b) in enumerate(zip(found, expected, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}[{index}]")
    return f"{where} is {found!r} in the file, {expected!r} in the model"
