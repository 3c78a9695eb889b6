"""The specs are pure: importing spec, or any of its modules, loads no backend, no torch and
no numba (each import runs in a fresh interpreter)."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import spec

SPEC_MODULES = ["spec"] + [f"spec.{m.name}" for m in pkgutil.iter_modules(spec.__path__)]
FORBIDDEN = ("torch", "backends", "numba")


@pytest.mark.parametrize("module", SPEC_MODULES)
def test_importing_a_spec_module_loads_no_backend_torch_or_numba(module):
    probe = (f"import sys, {module}; "
             f"print(' '.join(m for m in {FORBIDDEN!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, cwd=Path(spec.__file__).parents[1])
    assert result.stdout.split() == [], f"import {module} loaded {result.stdout.strip()}"
