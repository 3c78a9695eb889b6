"""Several processes on `torch.distributed`, as launched by `torchrun`.

`World.from_env()` reads `RANK`, `WORLD_SIZE` and `LOCAL_RANK` (set by torchrun, or by hand
with `MASTER_ADDR`/`MASTER_PORT`) and joins the process group: gloo on the CPU, nccl on CUDA
with one GPU per local rank. Without those variables it is a world of one process and every
method is a no-op, so the single-process trainer runs exactly as before.

The trainer keeps the recipe independent of the number of processes: `--batch-size` is the
global batch, each rank takes its contiguous slice of every global batch (`shard`), and
the engines combine gradients so that the step equals the one-process step.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cifar.errors import CifarError

LOST_RANK_WAIT_SECONDS = 3.0


class DistributedError(CifarError):
    """The process group could not be formed, or a rank was lost; names what and where."""


@dataclass
class World:
    """This process's place among `size` processes (one process: rank 0 of 1, no group)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    @classmethod
    def from_env(cls, device: torch.device, timeout_s: float) -> World:
        """Join the process group the environment describes (torchrun's variables), or
        return the world of one process where there are none."""
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            return cls()
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            dist.init_process_group(backend, rank=rank, world_size=size,
                                    timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError, OSError) as exc:  # DistStoreError, timeouts, ports
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DistributedError(
                f"rank {rank} of {size}: could not form the {backend} process group at "
                f"{where} within {timeout_s:g}s (--dist-timeout): {detail}") from None
        return cls(rank, size, local_rank, backend)

    def device(self, device: torch.device) -> torch.device:
        """The device of this rank: its own GPU (LOCAL_RANK) on CUDA."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of `n` items (the first `n % size` ranks get one
        more), in rank order, so the parts concatenate to the whole."""
        base, extra = divmod(n, self.size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def sum(self, values: Sequence[float]) -> list[float]:
        """`values` summed over all ranks (float64)."""
        if not self.distributed:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self._comm_device)
        self.all_reduce(tensor)
        return tensor.tolist()

    def all_reduce(self, tensor: torch.Tensor) -> None:
        """Sum `tensor` over all ranks, in place."""
        if self.distributed:
            self._collective(dist.all_reduce, tensor)

    def broadcast(self, tensor: torch.Tensor) -> None:
        """Overwrite `tensor` with rank 0's, in place (whatever its memory layout)."""
        if not self.distributed:
            return
        dense = tensor if tensor.is_contiguous() else tensor.contiguous()
        self._collective(dist.broadcast, dense, 0)
        if dense is not tensor:
            tensor.copy_(dense)

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (pickled between the job's own processes)."""
        if not self.distributed:
            return obj
        box = [obj]
        self._collective(dist.broadcast_object_list, box, 0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            self._collective(dist.barrier)

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()

    @property
    def _comm_device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else \
            torch.device("cpu")

    @contextlib.contextmanager
    def guard(self) -> Iterator[None]:
        """Turn a collective that fails inside (DDP's own, say) because a rank is gone into a
        DistributedError naming the lost ranks; other errors pass through."""
        try:
            yield
        except DistributedError:
            raise
        except RuntimeError as exc:
            if not self.distributed:
                raise
            lost = self._lost_ranks()
            if isinstance(exc, dist.DistError) or lost != []:
                raise DistributedError(self._lost_message(exc, lost)) from None
            raise

    def _collective(self, op: Any, *args: Any) -> None:
        try:
            op(*args)
        except (RuntimeError, ValueError) as exc:  # gloo/nccl errors, timeouts
            raise DistributedError(self._lost_message(exc, self._lost_ranks())) from None

    def _lost_ranks(self) -> list[int] | None:
        """The ranks that are gone: each survivor checks in to the rendezvous store, waits a
        moment, and those that did not check in are lost; None if the store itself is gone
        (it lives with rank 0, or with torchrun's agent on its node)."""
        try:
            store = dist.distributed_c10d._get_default_store()
            store.set(f"cifar/alive/{self.rank}", "1")
            time.sleep(LOST_RANK_WAIT_SECONDS)
            return [r for r in range(self.size) if not store.check([f"cifar/alive/{r}"])]
        except Exception:  # noqa: BLE001 - any store failure means it is gone
            return None

    def _lost_message(self, exc: BaseException, lost: list[int] | None) -> str:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if lost is None:
            named = "unknown (the rendezvous store is unreachable: rank 0 or its node is lost)"
        else:
            named = ", ".join(map(str, lost)) or "none found"
        return (f"rank {self.rank} of {self.size}: lost contact with rank(s) {named}; stopping "
                f"({detail:.200})")
