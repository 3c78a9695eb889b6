"""backends.memory.reuse_freed_memory: an array freed and allocated again at the same size
lands in memory that is already mapped, instead of being page-faulted in again."""

import subprocess
import sys

import pytest

FAULTS = """
import resource, numpy as np, torch
{setup}
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    {allocate}  # 64 MiB, written and freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
first = faults()
print(first, min(faults() for _ in range(9)))
"""

REUSE = "from backends.memory import reuse_freed_memory\nassert reuse_freed_memory()"
NUMPY = "np.ones(64 << 18, np.float32)"
TORCH = "torch.ones(64 << 18)"
ENGINE = """
from cifar.presets import resolve_config
config = resolve_config("course", device="cpu", threads=1, engine="{engine}")
config["model"]["widths"], config["model"]["hidden"] = [4, 4, 4], 8
from cifar.train import _engine_type
_engine_type(config)(config, 1, torch.device("cpu"))
"""
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="glibc's allocator only")


def page_faults(setup: str, allocate: str) -> tuple[int, int]:
    """Page faults of the first allocation of 64 MiB after `setup`, and the fewest of the
    next nine of the same size (torch's 64-byte aligned blocks take glibc's heap a few
    rounds to settle into reusable holes)."""
    script = FAULTS.format(setup=setup, allocate=allocate)
    out = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                         text=True).stdout
    first, again = out.split()
    return int(first), int(again)


@linux_only
@pytest.mark.parametrize("allocate", [NUMPY, TORCH], ids=["numpy", "torch"])
def test_a_freed_array_allocated_again_faults_no_page_in_after_reuse_freed_memory(allocate):
    first, again = page_faults(REUSE, allocate)
    assert first > 0 and again <= first // 10


@linux_only
@pytest.mark.parametrize("allocate", [NUMPY, TORCH], ids=["numpy", "torch"])
def test_without_it_every_allocation_of_that_size_faults_its_pages_in_again(allocate):
    first, again = page_faults("", allocate)
    assert again > first // 2  # what the setting removes: mmap per allocation, munmap per free


@linux_only
@pytest.mark.parametrize(("engine", "allocate"), [("torch", TORCH), ("pynet", NUMPY)])
def test_both_training_engines_reuse_freed_memory_between_steps(engine: str, allocate: str):
    first, again = page_faults(ENGINE.format(engine=engine), allocate)
    assert first > 0 and again <= first // 10
