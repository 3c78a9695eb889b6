"""The base of every layer spec: parameters, buffers, gradients, state dicts, train/eval.

A spec says *what* a layer is: its hyper-parameters, its parameters and buffers (with
PyTorch's names, shapes and initialisation), which inputs it accepts, its output shape
and which gradients its backward pass returns. *How* the numbers are computed lives in
a backend's kernel module, bound to the spec by :func:`backends.get`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_array(value: Any) -> np.ndarray:
    """A NumPy array from an array or a torch tensor (detached, moved to the CPU)."""
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def shape_str(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


class Module:
    """Base class of all PyNet layers, shaped like ``torch.nn.Module``.

    Parameters and buffers are NumPy arrays reachable as attributes (``layer.weight``).
    ``layer.grads`` maps parameter names to the gradients accumulated by ``backward``,
    the way ``param.grad`` accumulates in torch; :meth:`zero_grad` clears them.
    """

    #: the functions of the kernel contract (backends.contract) this layer calls
    kernel_names: tuple[str, ...] = ()
    #: the optional kernels (backends.contract.OptionalKernels) it uses where they exist
    optional_kernel_names: tuple[str, ...] = ()
    #: The constructor arguments that rebuild the layer, in the order torch's repr prints
    #: them; config(), describe() and extra_repr() all derive from this one list.
    __constants__: tuple[str, ...] = ()
    #: How many leading constants extra_repr() prints by value alone, e.g. Conv2d's channels.
    _repr_positional = 0
    #: Constants extra_repr() leaves out while they hold these values, as torch does.
    _repr_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        self._grads: dict[str, np.ndarray] = {}
        self._bound_grads: set[str] = set()
        self._ctx: Any = None
        self._out_shape: tuple[int, ...] | None = None
        self._out_dtype: np.dtype | None = None
        self.training = True

    @property
    def kernels(self) -> Any:
        """The backend's kernel module, which ``backends.get`` binds to a subclass."""
        name = type(self).__name__
        raise NotImplementedError(
            f"{name} has no backend: spec.{name} only says what the layer is. Build it from a "
            f"backend, e.g. backends.get('numba').{name}(...) (or 'numpy', 'naive', or your "
            f"own kernels: backends.get('my_kernels.py'))")

    # -- attribute access to parameters, buffers and children, as in torch ---------------
    def __getattr__(self, name: str) -> Any:
        for store in ("_parameters", "_buffers", "_modules"):
            items = self.__dict__.get(store)
            if items is not None and name in items:
                return items[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        for store in ("_parameters", "_buffers"):
            items = self.__dict__.get(store)
            if items is not None and name in items:
                items[name] = value
                return
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, value: np.ndarray | None) -> None:
        if value is None:
            object.__setattr__(self, name, None)  # e.g. bias=False: layer.bias is None
        else:
            self._parameters[name] = value

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value

    def add_module(self, name: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}: child {name!r} must be a PyNet layer, "
                            f"got {type(module).__name__}")
        self._modules[name] = module

    # -- traversal ----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name, value in module._parameters.items():
                yield prefix + name, value

    def parameters(self) -> list[np.ndarray]:
        return [value for _, value in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for name, value in module._buffers.items():
                yield prefix + name, value

    @property
    def grads(self) -> dict[str, np.ndarray]:
        """Accumulated gradients by parameter name (dotted names inside containers)."""
        return {prefix + name: g for prefix, module in self.named_modules()
                for name, g in module._grads.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget all accumulated gradients, as torch's ``zero_grad``: drop them, or with
        ``set_to_none=False`` fill them with zeros in place (views stay views)."""
        for _, module in self.named_modules():
            if set_to_none:
                module._grads.clear()
                module._bound_grads.clear()
            else:
                for grad in module._grads.values():
                    grad.fill(0)

    def bind_grads(self, buffer: np.ndarray) -> None:
        """Keep every parameter's gradient in a view of the flat ``buffer`` (zeroed, in
        ``named_parameters`` order), so that one array holds them all, e.g. to all-reduce.
        ``backward`` accumulates into the views in place; clear them with
        ``zero_grad(set_to_none=False)``."""
        sizes = [value.size for _, value in self.named_parameters()]
        if buffer.ndim != 1 or buffer.size != sum(sizes):
            raise ValueError(f"{self.describe()}: bind_grads expected a flat buffer of "
                             f"{sum(sizes)} elements, got shape {shape_str(buffer.shape)}")
        buffer.fill(0)
        offset = 0
        for prefix, module in self.named_modules():
            for name, value in module._parameters.items():
                view = buffer[offset:offset + value.size].reshape(value.shape)
                if view.dtype != value.dtype:
                    raise TypeError(f"{self.describe()}: bind_grads expected a {value.dtype} "
                                    f"buffer for {prefix + name!r}, got {buffer.dtype}")
                module._grads[name] = view
                module._bound_grads.add(name)
                offset += value.size

    def _accumulate_grad(self, name: str, grad: np.ndarray) -> None:
        previous = self._grads.get(name)
        if previous is None:
            self._grads[name] = grad
        elif name in self._bound_grads:
            previous += grad  # in place, into the view of the bound buffer
        else:
            self._grads[name] = previous + grad

    # -- modes and dtype ----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to(self, dtype: np.dtype | type) -> Module:
        """Cast every floating parameter and buffer to ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"{type(self).__name__}.to: expected float32 or float64, got {dtype}")
        for _, module in self.named_modules():
            for store in (module._parameters, module._buffers):
                for name, value in store.items():
                    if value.dtype.kind == "f":
                        store[name] = value.astype(dtype)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    # -- state dicts ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters then buffers, module by module, under PyTorch's names."""
        state: dict[str, np.ndarray] = {}
        for prefix, module in self.named_modules():
            for store in (module._parameters, module._buffers):
                state.update((prefix + name, value) for name, value in store.items())
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True) -> None:
        """Load arrays (or torch tensors) by PyTorch name, keeping the dtype they come with."""
        slots = {prefix + name: (store, name)
                 for prefix, module in self.named_modules()
                 for store in (module._parameters, module._buffers) for name in store}
        missing = [key for key in slots if key not in state_dict]
        unexpected = [key for key in state_dict if key not in slots]
        if strict and (missing or unexpected):
            raise KeyError(f"{self.describe()}: load_state_dict: missing keys {missing}, "
                           f"unexpected keys {unexpected}")
        for key, (store, name) in slots.items():
            if key not in state_dict:
                continue
            value = as_array(state_dict[key])
            current = store[name]
            if value.shape != current.shape:
                raise ValueError(f"{self.describe()}: load_state_dict: {key!r} expected shape "
                                 f"{shape_str(current.shape)}, got {shape_str(value.shape)}")
            if current.dtype.kind == "f" and value.dtype not in FLOAT_DTYPES:
                raise TypeError(f"{self.describe()}: load_state_dict: {key!r} expected float32 "
                                f"or float64, got {value.dtype}")
            store[name] = np.array(value, dtype=value.dtype if current.dtype.kind == "f"
                                   else current.dtype, copy=True)

    # -- model files (spec.serialization) ---------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the architecture and state dict to a ``.npz`` file, atomically."""
        from spec import serialization

        serialization.save(self, path)

    def load(self, path: str | os.PathLike) -> Module:
        """Load weights saved by :meth:`save` from a model of the same architecture."""
        from spec import serialization

        serialization.load_state(self, path)
        return self

    # -- calling --------------------------------------------------------------------------
    def __call__(self, x: np.ndarray) -> np.ndarray:
        self._check_input(x)
        y = self.forward(x)
        self._out_shape, self._out_dtype = y.shape, y.dtype
        return y

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """dL/dx of the last forward; parameter gradients accumulate into ``grads``.

        With ``input_grad=False`` only the parameter gradients are computed and None is
        returned, as torch skips dL/dx for an input that does not require grad, e.g. the
        images entering a network's first layer.
        """
        self._check_grad_output(dy)
        if input_grad:
            return self._backward(dy)
        self._parameter_backward(dy)
        return None

    def _backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _parameter_backward(self, dy: np.ndarray) -> None:
        """Accumulate the parameter gradients only; layers with a cheaper way override it."""
        if self._parameters:
            self._backward(dy)

    # -- validation -----------------------------------------------------------------------
    def expected_input(self) -> str:
        """The accepted input shape, as written in error messages, e.g. ``(N, 3, H, W)``."""
        return "(N, *)"

    def _input_ok(self, shape: tuple[int, ...]) -> bool:
        return len(shape) >= 1

    def _check_input(self, x: Any) -> None:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self.describe()}: expected a NumPy array, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{self.describe()}: expected a float32 or float64 input, "
                            f"got {x.dtype}")
        if not self._input_ok(x.shape):
            raise ValueError(f"{self.describe()}: expected input {self.expected_input()}, "
                             f"got {shape_str(x.shape)}")
        for name, value in self._parameters.items():
            if value.dtype != x.dtype:
                raise TypeError(f"{self.describe()}: input dtype {x.dtype} does not match "
                                f"parameter {name!r} dtype {value.dtype}; cast one of them "
                                f"(layer.to(np.{x.dtype}) or x.astype(np.{value.dtype}))")

    def _check_grad_output(self, dy: Any) -> None:
        if self._out_shape is None:
            raise RuntimeError(f"{self.describe()}: backward() called before forward()")
        if not isinstance(dy, np.ndarray):
            raise TypeError(f"{self.describe()}: backward expected a NumPy array, "
                            f"got {type(dy).__name__}")
        if dy.shape != self._out_shape or dy.dtype != self._out_dtype:
            raise ValueError(f"{self.describe()}: backward expected a gradient of shape "
                             f"{shape_str(self._out_shape)} and dtype {self._out_dtype}, got "
                             f"{shape_str(dy.shape)} and {dy.dtype}")

    # -- printing and rebuilding -------------------------------------------------------------
    def _constant(self, name: str) -> Any:
        """The value of constructor argument ``name``, as read back from the layer."""
        if name == "bias":  # the attribute holds the parameter itself, or None without one
            return self.bias is not None
        return getattr(self, name)

    def config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this layer (JSON-serialisable)."""
        return {name: self._constant(name) for name in self.__constants__}

    def describe(self) -> str:
        """A short label for error messages: the constructor call with its required
        arguments, e.g. ``Conv2d(3, 16, (3, 3))``."""
        signature = inspect.signature(type(self)).parameters
        required = [name for name in self.__constants__
                    if signature[name].default is inspect.Parameter.empty]
        return f"{type(self).__name__}({', '.join(repr(self._constant(n)) for n in required)})"

    def extra_repr(self) -> str:
        """The constructor arguments as torch prints them, e.g. ``4, eps=1e-05, ...``."""
        items = []
        for index, name in enumerate(self.__constants__):
            value = self._constant(name)
            if name in self._repr_defaults and value == self._repr_defaults[name]:
                continue
            text = self._repr_value(name, value)
            items.append(text if index < self._repr_positional else f"{name}={text}")
        return ", ".join(items)

    def _repr_value(self, name: str, value: Any) -> str:
        """How extra_repr() writes the value of constant ``name``."""
        return repr(value)

    def __repr__(self) -> str:
        if not self._modules:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = [f"  ({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"
