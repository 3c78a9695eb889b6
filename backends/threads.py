"""How the backends use the cores: one thread count for numba's parallel kernels, the BLAS
under NumPy's GEMMs, and the chunk-parallel convolution loops of :func:`map_chunks`.

Convolution runs its chunks (a few images each) on a pool of Python threads, each chunk's
im2col, GEMMs and col2im on one core with a single-threaded BLAS. NumPy's GEMMs and the
``nogil`` numba kernels release the GIL, so the chunks run truly in parallel, and nothing
hands work between numba's and the BLAS's thread pools, which on few cores spin against
each other (measured: 25-45% slower convolutions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

_state: dict[str, Any] = {"threads": os.cpu_count() or 1, "pool": None, "controller": None,
                          "blas_limits": None}


def set_num_threads(threads: int) -> None:
    """Use `threads` threads in numba's kernels, the BLAS and the convolution chunks (as
    ``torch.set_num_threads`` does for torch). The BLAS limit holds until the next call."""
    import numba
    from threadpoolctl import threadpool_limits

    if threads < 1:
        raise ValueError(f"set_num_threads: expected a positive thread count, got {threads}")
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    _state["blas_limits"] = threadpool_limits(limits=threads)
    if _state["pool"] is not None:
        _state["pool"].shutdown()
    _state.update(threads=threads, pool=None)


def get_num_threads() -> int:
    return _state["threads"]


def map_chunks(work: Callable[[Any], T], chunks: Iterable[Any]) -> list[T]:
    """``[work(c) for c in chunks]``, spread over the threads, each with a 1-thread BLAS."""
    chunks = list(chunks)
    if _state["threads"] == 1 or len(chunks) == 1:
        return [work(chunk) for chunk in chunks]
    if _state["pool"] is None:
        _state["pool"] = ThreadPoolExecutor(_state["threads"], thread_name_prefix="pynet")
    if _state["controller"] is None:
        from threadpoolctl import ThreadpoolController

        _state["controller"] = ThreadpoolController()
    with _state["controller"].limit(limits=1, user_api="blas"):
        return list(_state["pool"].map(work, chunks))
