"""pynet-check checks kernels of one's own, through the command line and the Python API: a
correct module passes, a gradient bug fails naming the layer, case, dtype, quantity and
tolerance, a crash is reported without stopping the other layers, missing kernels are
listed as not implemented, and the template documents every kernel of the contract."""

import inspect
from pathlib import Path

import pytest
from click.testing import CliRunner
from kernel_files import NUMPY_COPY, RELU_ONLY, kernels_file_fixture  # noqa: F401  (fixture)

import backends
from backends import contract
from backends.check import main, run_checks

BUGGY_RELU = RELU_ONLY.replace("return dy * (ctx > 0)", "return dy * 2 * (ctx > 0)")
GELU_CRASHES = {
    "raises": ('raise RuntimeError("out of coffee")', "RuntimeError: out of coffee"),
    "wrong shape": ("return x[..., :1], x", "forward has shape"),
    "no ctx": ("return x", "ValueError"),
}


def pynet_check(*args: str):
    return CliRunner().invoke(main, ["--quiet", *args])


def verdicts(output: str) -> dict[tuple[str, str], str]:
    """(layer, dtype) -> verdict, from the rows of pynet-check's table."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in output.splitlines()
             if line.startswith("| ") and not line.startswith("| layer")]
    return {(c[0], c[2]): c[-1] for c in cells}


@pytest.mark.parametrize("given_as", ["file", "module"])
def test_a_correct_kernel_module_passes_every_layer(given_as, kernels_file, monkeypatch):
    path = kernels_file("numpy_copy", NUMPY_COPY)
    if given_as == "module":
        monkeypatch.syspath_prepend(str(Path(path).parent))
    result = pynet_check("--backend", path if given_as == "file" else "numpy_copy")
    assert result.exit_code == 0, result.output
    assert set(verdicts(result.output).values()) == {"PASS"}
    assert "24 passed, 0 failed (32 cases per backend and dtype" in result.output
    assert "Failures" not in result.output


def test_a_builtin_backend_keeps_the_table_and_summary_line():
    result = pynet_check("--backend", "numpy", "--dtype", "float32")
    assert result.exit_code == 0
    assert result.output.startswith(
        "| layer | backend | dtype | forward | dx | params | running | eval | fd | verdict |")
    assert "| ReLU | numpy | float32 | 0.0e+00 | 0.0e+00 | - | - | - | - | PASS |" in result.output
    assert "\n12 passed, 0 failed (32 cases per backend and dtype" in result.output


def test_a_backend_with_two_conv_algorithms_gets_a_conv_row_for_each():
    result = pynet_check("--backend", "numba", "--dtype", "float64")
    rows = verdicts(result.output)
    assert rows[("Conv2d [im2col]", "float64")] == rows[("Conv2d [winograd]", "float64")] == "PASS"
    assert ("Conv2d", "float64") not in rows


def test_a_gradient_bug_fails_naming_layer_case_dtype_quantity_and_tolerance(kernels_file):
    path = kernels_file("buggy_relu", BUGGY_RELU)
    result = pynet_check("--backend", path, "--dtype", "float64")
    assert result.exit_code == 1
    assert verdicts(result.output)[("ReLU", "float64")] == "FAIL"
    assert (f"- ReLU, {path}, float64, case relu: dx relative error 1.0e+00 > tolerance 1e-10"
            in result.output)
    assert f"- ReLU, {path}, float64, case relu: fd dx relative error 1.0e+00" in result.output


@pytest.mark.parametrize("source", ["relu only", "template with relu filled in"])
def test_a_partial_module_passes_what_it_implements_and_the_rest_is_not_implemented(
        source, kernels_file, tmp_path):
    if source == "relu only":
        path = kernels_file("relu_only", RELU_ONLY)
    else:
        path = str(tmp_path / "template.py")
        assert pynet_check("--template", path).exit_code == 0
        Path(path).write_text(Path(path).read_text() + RELU_ONLY.replace("\n    ", "\n"))
    result = pynet_check("--backend", path)
    assert result.exit_code == 0, result.output
    passing = {layer for (layer, _), verdict in verdicts(result.output).items()
               if verdict == "PASS"}
    assert passing == {"ReLU", "Flatten"}
    assert "4 passed, 0 failed, 18 not implemented (32 cases" in result.output
    conv = next(line for line in result.output.splitlines()
                if line.startswith(f"- Conv2d, {path}: "))
    assert "conv2d_forward" in conv


@pytest.mark.parametrize("crash", GELU_CRASHES, ids=GELU_CRASHES.keys())
def test_a_crashing_kernel_is_reported_and_the_other_layers_are_still_checked(crash,
                                                                             kernels_file):
    body, message = GELU_CRASHES[crash]
    path = kernels_file("crashing_gelu", RELU_ONLY + f"""
    def gelu_forward(x, approximate):
        {body}
    """)
    rows = {row["layer"]: row for row in run_checks((path,), ("float64",))}
    assert rows["ReLU"]["verdict"] == "PASS"
    assert rows["GELU"]["verdict"] == "FAIL"
    assert [f["case"] for f in rows["GELU"]["findings"]] == ["gelu", "gelu-tanh"]
    assert all(message in f["exception"] for f in rows["GELU"]["findings"])


def test_the_template_defines_every_kernel_documented_and_not_implemented(tmp_path):
    path = tmp_path / "mine.py"
    assert pynet_check("--template", str(path)).exit_code == 0
    kernels = backends.get(str(path)).kernels
    assert contract.validate(kernels, str(path), complete=True) == ()
    for name in contract.KERNEL_NAMES:
        function = getattr(kernels, name)
        assert inspect.getdoc(function) == inspect.getdoc(getattr(contract.Kernels, name))
        with pytest.raises(NotImplementedError):
            function(*[None] * len(contract.parameters(name)))


def test_the_template_never_overwrites_a_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("my work")
    result = pynet_check("--template", str(path))
    assert result.exit_code == 2 and "exists" in result.output
    assert path.read_text() == "my work"


@pytest.mark.parametrize("source, message", [
    (None, "no such file"),
    ("def relu_forward(x):\n    pass\ndef relu_backward(grad):\n    pass\n",
     "relu_backward takes (grad), expected (dy, ctx)"),
    ("import nothing_of_that_name\n", "ModuleNotFoundError"),
])
def test_a_backend_that_cannot_be_used_is_a_usage_error_naming_it(source, message, tmp_path):
    path = tmp_path / "mine.py"
    if source is not None:
        path.write_text(source)
    result = pynet_check("--backend", str(path))
    assert result.exit_code == 2
    assert f"'{path}'" in result.output and message in result.output
