"""One process of a distributed test run (tests/test_cifar_distributed.py), under torchrun.

    torchrun ... tests/dist_worker.py CONFIG.json OUT [--resume]

Calls `cifar.train.train` as `python -m cifar train` does, with a config the CLI cannot
express (a model without BatchNorm). Every rank writes its pid to OUT.pid<RANK>. With
DIST_TEST_FORBID_WRITES set, any run-directory write by a rank other than 0 fails. With
DIST_TEST_NAN_RANK=R, rank R's second batch is NaN.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

import cifar.train
from cifar.errors import CifarError
from cifar.rundir import RunDir

RANK = int(os.environ.get("RANK", 0))
WRITERS = ("create", "write_metrics", "save_last", "save_model", "write_summary")


def _forbid_run_dir_writes() -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"rank {RANK} wrote to the run directory")

    for name in WRITERS:
        setattr(RunDir, name, refuse)


def _poison_second_batch() -> None:
    batches = cifar.train.train_batches

    def poisoned(*args: object, **kwargs: object):
        for index, (inputs, labels) in enumerate(batches(*args, **kwargs)):
            yield (torch.full_like(inputs, float("nan")) if index == 1 else inputs), labels

    cifar.train.train_batches = poisoned


def main() -> None:
    config_path, out = sys.argv[1], Path(sys.argv[2])
    Path(f"{out}.pid{RANK}").write_text(str(os.getpid()))
    if RANK != 0 and os.environ.get("DIST_TEST_FORBID_WRITES"):
        _forbid_run_dir_writes()
    if os.environ.get("DIST_TEST_NAN_RANK") == str(RANK):
        _poison_second_batch()
    config = json.loads(Path(config_path).read_text())
    resume = "--resume" in sys.argv
    try:
        summary = cifar.train.train(config, out=None if resume else out,
                                    resume=out if resume else None, quiet=True)
    except CifarError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"rank {RANK}: test_accuracy {summary['test_accuracy']}")


if __name__ == "__main__":
    main()
