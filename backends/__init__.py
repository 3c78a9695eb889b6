"""PyNet backends: how each layer spec is computed.

``backends.get(name)`` returns a namespace of the layer classes of :mod:`spec`, bound to one
backend's kernel module::

    import backends
    nn = backends.get("numba")             # "naive" | "numpy" | "numba"
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))

The numpy and numba backends compute a convolution by im2col + GEMM or by Winograd
F(2x2, 3x3), and the numba backend a 3x3 one with few input channels by a direct kernel,
chosen per shape; ``set_conv_algorithm("auto" | "im2col" | "winograd" | "direct")``, or
``with conv_algorithm(name):``, overrides the choice (:mod:`backends.conv_dispatch`).

``name`` is a built-in backend (:data:`BACKENDS`), an importable module (``"mypkg.kernels"``),
a path to a ``.py`` file or a module object, defining the functions of the kernel contract,
:class:`backends.contract.Kernels`: one forward and its backward per layer, such as
``relu_forward(x) -> (y, ctx)`` and ``relu_backward(dy, ctx) -> dx``. A built-in backend
defines them all; another may define some, and its layers whose kernels are missing raise
NotImplementedError when used. ``pynet-check --backend NAME`` checks any of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from functools import cache, partial
from pathlib import Path
from types import ModuleType, SimpleNamespace

import spec
from backends import contract
from backends.conv_dispatch import conv_algorithm, get_conv_algorithm, set_conv_algorithm
from backends.threads import get_num_threads, set_num_threads
from spec import serialization

#: The built-in backends, by name: the choices of every command line's ``--backend``.
BACKENDS = ("naive", "numpy", "numba")
__all__ = ["BACKENDS", "conv_algorithm", "get", "get_conv_algorithm", "get_num_threads",
           "set_conv_algorithm", "set_num_threads"]


@cache
def get(name: str | ModuleType) -> SimpleNamespace:
    """The layer classes of :mod:`spec`, computed by backend ``name``: a built-in name, an
    importable module, a ``.py`` file or a module object defining the kernel contract."""
    kernels = name if isinstance(name, ModuleType) else _import_kernels(name)
    label = kernels.__name__ if isinstance(name, ModuleType) else name
    missing = contract.validate(kernels, label, complete=label in BACKENDS)
    if len(missing) == len(contract.KERNEL_NAMES):
        raise contract.ContractError(
            f"backend {label!r}: {kernels.__name__} defines none of the functions of the kernel "
            f"contract (backends.contract.Kernels); expected a built-in backend "
            f"({', '.join(BACKENDS)}) or kernels of your own (`pynet-check --template FILE` "
            f"writes a file to fill in)")
    layers = {cls.__name__: _bind(cls, kernels, label, missing) for cls in spec.LAYERS}
    nn = SimpleNamespace(name=label, kernels=kernels, **layers)
    nn.load = partial(serialization.load, nn)  # nn.load("model.npz")
    return nn


def _import_kernels(name: str) -> ModuleType:
    if name in BACKENDS:
        return importlib.import_module(f"backends.{name}")
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"backend {name!r}: no such file")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (name + ".").startswith(exc.name + "."):
            raise  # the module exists but imports something that does not
        raise ValueError(f"unknown backend {name!r}: expected a built-in backend "
                         f"({', '.join(BACKENDS)}), an importable module or a .py file") from None


class _PartialKernels:
    """A kernel module seen by a layer whose kernels it does not all define: using a missing
    one raises NotImplementedError naming the layer, the backend and the functions."""

    def __init__(self, kernels: ModuleType, layer: str, backend: str,
                 absent: tuple[str, ...]) -> None:
        self._kernels, self._layer, self._backend, self._absent = kernels, layer, backend, absent

    def __getattr__(self, name: str) -> object:
        if name in self._absent:
            raise NotImplementedError(f"{self._layer}: backend {self._backend!r} does not define "
                                      f"{', '.join(self._absent)}")
        return getattr(self._kernels, name)


def _bind(layer: type, kernels: ModuleType, backend: str, missing: tuple[str, ...]) -> type:
    absent = tuple(name for name in layer.kernel_names if name in missing)
    bound = _PartialKernels(kernels, layer.__name__, backend, absent) if absent else kernels
    return type(layer.__name__, (layer,), {
        "kernels": bound, "__module__": kernels.__name__, "__doc__": layer.__doc__,
        "__qualname__": layer.__name__})
