"""backends.memory.reuse_freed_memory: an array freed and allocated again at the same size
lands in memory that is already mapped, instead of being page-faulted in again."""

import subprocess
import sys

import pytest

FAULTS = """
import resource, numpy as np
from backends.memory import reuse_freed_memory
if {reuse}:
    assert reuse_freed_memory()
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    np.ones(64 << 18, np.float32)  # 64 MiB, written and freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
first = faults()
print(first, min(faults() for _ in range(3)))
"""


def page_faults(reuse: bool) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS.format(reuse=reuse)], check=True,
                         capture_output=True, text=True).stdout
    first, again = out.split()
    return int(first), int(again)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_a_freed_array_allocated_again_faults_no_page_in_after_reuse_freed_memory():
    first, again = page_faults(reuse=True)
    assert first > 0 and again <= first // 10


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator only")
def test_without_it_every_allocation_of_that_size_faults_its_pages_in_again():
    first, again = page_faults(reuse=False)
    assert again > first // 2  # what the setting removes: mmap per allocation, munmap per free
