"""``pynet-check --template FILE``: a kernel module to fill in, written from the contract."""

from __future__ import annotations

import inspect
import textwrap

from backends.contract import KERNEL_NAMES, Kernels, parameters

HEADER = '''"""My PyNet kernels: fill in each function, then check them against PyTorch with

    pynet-check --backend {filename}

A function that still raises NotImplementedError counts as not implemented: pynet-check
lists its layers as such, without failing them. Each forward returns (output, ctx), where
ctx is whatever its backward needs back. Compute in the input's dtype (float32 or float64).
You may add the optional shortcuts of backends.contract.OptionalKernels as well.
"""

import numpy as np
'''


def _stub(name: str) -> str:
    doc = inspect.getdoc(getattr(Kernels, name))
    if "\n" in doc:
        doc = textwrap.indent(doc, "    ").lstrip() + "\n    "
    return (f'\n\ndef {name}({", ".join(parameters(name))}):\n    """{doc}"""\n'
            f"    raise NotImplementedError\n")


def render_template(filename: str) -> str:
    """The text of a kernel module named ``filename`` whose every function raises
    NotImplementedError, documented as in :class:`backends.contract.Kernels`."""
    return HEADER.format(filename=filename) + "".join(_stub(name) for name in KERNEL_NAMES)
