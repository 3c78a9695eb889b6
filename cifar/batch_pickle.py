"""Unpickling CIFAR-10 batch files without letting them run code.

A pickle may call any importable function while it loads, so a crafted `test_batch` could run
`os.system`. `read_batch_pickle` admits only what the official files are made of (dicts,
lists, tuples, bytes, str, numbers and NumPy's uint8 arrays), the promise that
`torch.load(weights_only=True)` makes for checkpoints.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cifar.errors import DataError

# The functions NumPy pickles an array with: _reconstruct up to protocol 4, _frombuffer from 5
_reconstruct = np.empty(0).__reduce_ex__(4)[0]
_frombuffer = np.empty(0).__reduce_ex__(5)[0]


def _latin1_bytes(text: str, encoding: str) -> bytes:
    """Bytes as Python 3 writes them in pickle protocol 2: `_codecs.encode(text, "latin1")`."""
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r}, expected 'latin1'")
    return text.encode("latin1")


ALLOWED_GLOBALS = {
    "numpy.core.multiarray._reconstruct": _reconstruct,  # NumPy 1, as in the official files
    "numpy._core.multiarray._reconstruct": _reconstruct,  # NumPy 2 moved numpy.core
    "numpy.core.numeric._frombuffer": _frombuffer,
    "numpy._core.numeric._frombuffer": _frombuffer,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "_codecs.encode": _latin1_bytes,
}


class _BatchUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = ALLOWED_GLOBALS.get(f"{module}.{name}")
        if allowed is None:
            raise DataError(f"{self.path}: refused to load: the pickle calls {module}.{name}, but "
                            f"a CIFAR-10 batch holds only dicts, lists, bytes, str, numbers "
                            f"and uint8 arrays")
        return allowed


def _non_uint8_array(obj: Any) -> np.ndarray | None:
    """The first NumPy array in `obj` (and the dicts, lists and tuples in it) that is not uint8."""
    pending, seen = [obj], set()
    while pending:
        item = pending.pop()
        if isinstance(item, np.ndarray):
            if item.dtype != np.uint8:
                return item
        elif isinstance(item, dict | list | tuple) and id(item) not in seen:
            seen.add(id(item))  # a pickle can make a list that holds itself
            pending.extend(item.values() if isinstance(item, dict) else item)
    return None


def read_batch_pickle(path: Path) -> Any:
    """The object pickled in `path`; a DataError if it names anything but the allowed globals
    or holds an array that is not uint8."""
    with path.open("rb") as f:
        obj = _BatchUnpickler(f, path).load()
    array = _non_uint8_array(obj)
    if array is not None:
        raise DataError(f"{path}: refused to load: it holds an array of dtype {array.dtype}, "
                        f"but a CIFAR-10 batch holds only uint8 arrays")
    return obj
