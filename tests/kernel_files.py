"""Kernel modules of one's own, as a student writes them, for `backends.get(FILE.py)` and
`pynet-check --backend FILE.py`: written by the `kernels_file` fixture."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

RELU_ONLY = """
    import numpy as np

    def relu_forward(x):
        y = np.maximum(x, 0)
        return y, y

    def relu_backward(dy, ctx):
        return dy * (ctx > 0)
"""
NUMPY_COPY = "from backends.numpy import *  # every kernel of the numpy backend\n"


@pytest.fixture(name="kernels_file")
def kernels_file_fixture(tmp_path: Path) -> Callable[[str, str], str]:
    """Write a kernel module ``NAME.py`` in a fresh folder; return its path as a string."""
    def write(name: str, source: str) -> str:
        path = tmp_path / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        return str(path)
    return write
