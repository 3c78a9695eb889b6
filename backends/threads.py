"""How the backends use the cores: one pool of threads for all of PyNet's parallel work.

Convolution runs its chunks (a few images each) on the pool, each chunk's im2col, GEMMs and
col2im on one core with a single-threaded BLAS; the other numba kernels run over parts of
their range (planes, channels, elements) on the same pool. NumPy's GEMMs and the ``nogil``
numba kernels release the GIL, so the parts run truly in parallel.

One pool, because thread pools that spin compete for few cores: OpenBLAS's and OpenMP's
workers (numba's ``parallel=True``) busy-wait after each parallel region, and take the cores
from the next layer's threads. Measured on 2 cores: a convolution after one OpenMP kernel
1.45x slower, the benchmark's small-CNN step 1.6x slower than on this one pool. The pool's
idle threads sleep.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

T = TypeVar("T")

_state: dict[str, Any] = {"threads": os.cpu_count() or 1, "pool": None, "controller": None,
                          "blas_limits": None}


def set_num_threads(threads: int) -> None:
    """Run PyNet's parallel work on `threads` threads (as ``torch.set_num_threads`` does for
    torch), and the BLAS under NumPy single-threaded from now on: every GEMM of the
    backends runs inside one of those threads. Calling it again changes the count."""
    from threadpoolctl import threadpool_limits

    if threads < 1:
        raise ValueError(f"set_num_threads: expected a positive thread count, got {threads}")
    _state["blas_limits"] = threadpool_limits(limits=1, user_api="blas")
    if _state["pool"] is not None:
        _state["pool"].shutdown()
    _state.update(threads=threads, pool=None)


def get_num_threads() -> int:
    return _state["threads"]


def _single_threaded_blas() -> AbstractContextManager:
    """A 1-thread BLAS for the pool's work; already so once :func:`set_num_threads` ran."""
    if _state["blas_limits"] is not None:
        return nullcontext()
    if _state["controller"] is None:
        from threadpoolctl import ThreadpoolController

        _state["controller"] = ThreadpoolController()
    return _state["controller"].limit(limits=1, user_api="blas")


def map_chunks(work: Callable[[Any], T], chunks: Iterable[Any]) -> list[T]:
    """``[work(c) for c in chunks]``, spread over the threads, each with a 1-thread BLAS."""
    chunks = list(chunks)
    if _state["threads"] == 1 or len(chunks) == 1:
        return [work(chunk) for chunk in chunks]
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(_state["threads"], thread_name_prefix="pynet")
    with _single_threaded_blas():
        return list(_state["pool"].map(work, chunks))


def split_range(total: int, parts: int) -> list[tuple[int, int]]:
    """``range(total)`` as up to `parts` contiguous (start, stop) pieces of near-equal size."""
    parts = max(1, min(parts, total))
    bounds = [total * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def chunk_slices(total: int, item_bytes: int, chunk_bytes: int) -> list[slice]:
    """``range(total)`` as slices of about `chunk_bytes` of `item_bytes`-sized items each
    (at least one item): the convolutions' chunks of whole images."""
    step = max(1, chunk_bytes // item_bytes)
    return [slice(start, min(start + step, total)) for start in range(0, total, step)]


def parallel_range(kernel: Callable[[int, int], None], total: int, grain: int = 1,
                   threads: int | None = None) -> None:
    """``kernel(start, stop)`` over pieces of ``range(total)``, one per thread (`threads`, at
    most the pool's; default: all of it) and each at least `grain` long (a smaller range runs
    in the calling thread)."""
    threads = min(threads or get_num_threads(), get_num_threads())
    map_chunks(lambda bounds: kernel(*bounds), split_range(total, min(threads, total // grain)))
