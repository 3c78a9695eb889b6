"""Every file the project writes goes through spec.files.atomic_write: all of it or nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import backends
from cifar.checkpoint import atomic_save
from cifar.report.document import Title, write_pdf
from cifar.rundir import RunDir
from spec.files import atomic_write

WRITERS: dict[str, tuple[str, Callable[[Path], object]]] = {
    "checkpoint (torch.save)": ("last.pt", lambda path: atomic_save({"epoch": 2}, path)),
    "run directory text": ("summary.json",
                           lambda path: RunDir(path.parent).write_summary({"epoch": 2})),
    "PyNet model file (np.savez)": ("model.npz",
                                    lambda path: backends.get("numpy").Linear(2, 2).save(path)),
    "report PDF": ("report.pdf", lambda path: write_pdf([Title("t", "s")], path, "t")),
}


def _disk_full(fd: int) -> None:
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("writer", WRITERS)
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str) -> None:
    name, write = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(b"old contents")
    monkeypatch.setattr(os, "fsync", _disk_full)  # the data is written, the flush to disk fails
    with pytest.raises(OSError, match="No space left on device"):
        write(path)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_successful_write_replaces_the_file_and_leaves_no_temporary_file(
        tmp_path: Path, writer: str) -> None:
    name, write = WRITERS[writer]
    path = tmp_path / name
    path.write_bytes(b"old contents")
    write(path)
    assert path.read_bytes() != b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == [name]


@pytest.mark.parametrize("mode, data", [("wb", b"new"), ("w", "new")])
def test_an_exception_inside_the_block_leaves_the_old_file(tmp_path: Path, mode: str,
                                                           data: str | bytes) -> None:
    path = tmp_path / "file"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_write(path, mode) as f:
        f.write(data)
        raise KeyboardInterrupt
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["file"]


def test_a_new_file_gets_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    with atomic_write(tmp_path / "atomic") as f:
        f.write(b"x")
    assert (tmp_path / "atomic").stat().st_mode == (tmp_path / "plain").stat().st_mode


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    atomic_save({"w": torch.zeros(2)}, tmp_path / "a" / "b" / "last.pt")
    assert (tmp_path / "a" / "b" / "last.pt").is_file()
