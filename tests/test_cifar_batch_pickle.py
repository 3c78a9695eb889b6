"""A batch file is read like torch.load(weights_only=True): data only, never code."""

from __future__ import annotations

import builtins
import os
import pickle
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cifar.data import load_batch
from cifar.errors import DataError


class _Call:
    """Pickles as a call of `function(*args)`: how a crafted pickle runs code when loaded."""

    def __init__(self, function: Callable, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Callable, tuple]:
        return self.function, self.args


def _write(path: Path, batch: dict, protocol: int = 2) -> Path:
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=protocol)
    return path


def _message_start(path: Path, text: str) -> str:
    """A regex for an error message that begins with `path: text`, taken literally."""
    return "^" + re.escape(f"{path}: {text}")


def _official_batch(n: int = 3) -> dict:
    return {b"batch_label": b"testing batch 1 of 1", b"labels": [i % 10 for i in range(n)],
            b"data": np.arange(n * 3072).astype(np.uint8).reshape(n, 3072),
            b"filenames": [b"x.png"] * n}


@pytest.mark.parametrize("make_call", [
    lambda marker: _Call(os.system, f"touch {marker}"),
    lambda marker: _Call(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
    lambda marker: _Call(subprocess.call, ["touch", str(marker)]),
], ids=["os.system", "builtins.eval", "subprocess.call"])
def test_a_pickle_that_calls_a_function_is_refused_before_the_call_runs(
        tmp_path: Path, make_call: Callable[[Path], _Call]) -> None:
    marker = tmp_path / "code-ran"
    call = make_call(marker)
    path = _write(tmp_path / "test_batch", {**_official_batch(), b"data": call}, protocol=4)
    forbidden = f"{call.function.__module__}.{call.function.__name__}"  # e.g. posix.system
    with pytest.raises(DataError, match=_message_start(
            path, f"refused to load: the pickle calls {forbidden},")):
        load_batch(path)
    assert not marker.exists()
    with path.open("rb") as f:
        pickle.load(f)  # the plain unpickler does run it: the file is a real attack
    assert marker.exists()


@pytest.mark.parametrize("key, array", [
    (b"data", np.zeros((3, 3072), np.float64)),
    (b"data", np.array([[b"x"] * 3072] * 3, dtype=object)),
    (b"filenames", np.zeros(3, np.int64)),
], ids=["float64 data", "object data", "int64 elsewhere"])
def test_arrays_other_than_uint8_are_refused_wherever_they_are(
        tmp_path: Path, key: bytes, array: np.ndarray) -> None:
    path = _write(tmp_path / "test_batch", {**_official_batch(), key: array})
    with pytest.raises(DataError, match=_message_start(
            path, f"refused to load: it holds an array of dtype {array.dtype},")):
        load_batch(path)


@pytest.mark.parametrize("labels", [[0.0, 1.0, 2.0], [0, 1, "2"], [0, 1, True],
                                    np.array([0, 1, 2], np.uint8)])
def test_labels_must_be_a_list_of_ints(tmp_path: Path, labels: Any) -> None:
    path = _write(tmp_path / "test_batch", {**_official_batch(), b"labels": labels})
    with pytest.raises(DataError, match=_message_start(
            path, "expected b'labels' as a list of ints, got")):
        load_batch(path)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_official_layout_loads_whatever_the_pickle_protocol(tmp_path: Path,
                                                                 protocol: int) -> None:
    batch = _official_batch()
    split = load_batch(_write(tmp_path / "test_batch", batch, protocol))
    assert split.images.flatten().tolist() == batch[b"data"].flatten().tolist()
    assert split.labels.tolist() == batch[b"labels"]
