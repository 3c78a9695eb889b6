"""The kernel contract is code: every built-in backend follows it, every layer calls exactly
the kernels it declares, backends.get names whatever breaks it, a partial backend binds what
it has, and a layer without a backend says how to get one."""

import functools
import types

import numpy as np
import pytest
from kernel_files import RELU_ONLY, kernels_file_fixture  # noqa: F401  (pytest fixture)

import backends
import spec
from backends import contract
from backends.conformance import CASES, compare_with_torch


def recording(kernels: types.ModuleType, calls: set[str]) -> types.ModuleType:
    """A kernel module that runs ``kernels`` and notes the name of every kernel called."""
    def recorded(name: str):
        kernel = getattr(kernels, name)

        @functools.wraps(kernel)
        def record(*args):
            calls.add(name)
            return kernel(*args)
        return record

    module = types.ModuleType(f"recording_{kernels.__name__}")
    vars(module).update({name: recorded(name) for name in contract.KERNEL_NAMES})
    return module


def module_with(**functions) -> types.ModuleType:
    module = types.ModuleType("mine")
    vars(module).update(functions)
    return module


@pytest.fixture
def numpy_kernels(monkeypatch):
    """The numpy backend's kernel module, free to break: get() forgets it afterwards."""
    backends.get.cache_clear()
    yield backends.get("numpy").kernels
    monkeypatch.undo()
    backends.get.cache_clear()


@pytest.mark.parametrize("backend", backends.BACKENDS)
def test_every_builtin_backend_defines_every_kernel_with_the_contracts_parameters(backend):
    assert contract.validate(backends.get(backend).kernels, backend, complete=True) == ()


@pytest.mark.parametrize("layer", [cls for cls in spec.LAYERS if cls is not spec.Sequential],
                         ids=lambda cls: cls.__name__)
def test_each_layer_calls_exactly_the_kernels_it_declares(layer):
    calls: set[str] = set()
    kernels = recording(backends.get("numpy").kernels, calls)
    for case in [c for c in CASES if c.layer == layer.__name__]:
        compare_with_torch(case, kernels, "float64")
    assert set(layer.kernel_names) <= set(contract.KERNEL_NAMES)
    assert calls == set(layer.kernel_names)


def test_get_names_every_missing_and_misnamed_kernel_of_a_builtin_backend(numpy_kernels,
                                                                          monkeypatch):
    monkeypatch.delattr(numpy_kernels, "relu_backward")
    monkeypatch.delattr(numpy_kernels, "linear_forward")
    monkeypatch.setattr(numpy_kernels, "gelu_forward", lambda x: (x, None))
    backends.get.cache_clear()
    with pytest.raises(contract.ContractError) as error:
        backends.get("numpy")
    message = str(error.value)
    assert "'numpy'" in message
    assert "linear_forward(x, weight, bias) is missing" in message
    assert "relu_backward(dy, ctx) is missing" in message
    assert "gelu_forward takes (x), expected (x, approximate)" in message


def test_get_rejects_a_kernel_with_other_parameters_than_the_contracts():
    mine = module_with(relu_forward=lambda x: (x, x), relu_backward=lambda grad: grad)
    with pytest.raises(contract.ContractError,
                       match=r"relu_backward takes \(grad\), expected \(dy, ctx\)"):
        backends.get(mine)


def test_get_rejects_a_module_that_defines_no_kernel():
    with pytest.raises(contract.ContractError, match="'mine'.*defines none.*--template"):
        backends.get(module_with(helper=lambda x: x))


def test_a_partial_backend_computes_its_layers_and_the_others_name_what_is_missing(
        kernels_file):
    path = kernels_file("relu_only", RELU_ONLY)
    nn = backends.get(path)
    x = np.array([[-1.0, 2.0]])
    np.testing.assert_array_equal(nn.Sequential(nn.Flatten(), nn.ReLU())(x), [[0.0, 2.0]])
    with pytest.raises(NotImplementedError, match=f"Conv2d: backend '{path}' does not define "
                                                  f"conv2d_forward, conv2d_backward"):
        nn.Conv2d(1, 1, 1)(np.ones((1, 1, 2, 2), np.float32))


def test_get_imports_kernels_by_module_name(kernels_file, monkeypatch):
    path = kernels_file("my_relu_kernels", RELU_ONLY)
    monkeypatch.syspath_prepend(path.rsplit("/", 1)[0])
    nn = backends.get("my_relu_kernels")
    assert nn.kernels.__file__ == path
    assert nn.ReLU()(np.array([-1.0, 1.0])).tolist() == [0.0, 1.0]


def test_get_names_a_py_file_that_does_not_exist(tmp_path):
    with pytest.raises(ValueError, match="'.*nothing.py': no such file"):
        backends.get(str(tmp_path / "nothing.py"))


@pytest.mark.parametrize("layer", ["Conv2d", "ReLU", "BatchNorm2d"])
def test_a_spec_layer_without_a_backend_says_how_to_get_one(layer):
    build = {"Conv2d": lambda: spec.Conv2d(3, 8, 3), "ReLU": spec.ReLU,
             "BatchNorm2d": lambda: spec.BatchNorm2d(3)}[layer]
    with pytest.raises(NotImplementedError,
                       match=rf"{layer} has no backend.*backends.get\('numba'\).{layer}"):
        build()(np.ones((2, 3, 5, 5), np.float32))
