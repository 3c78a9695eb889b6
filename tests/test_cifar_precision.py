"""precision "auto": bf16 autocast only where the device has bf16 kernels, agreed by every rank;
"bf16" and "fp32" stand as asked."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from cifar_fixtures import cifar_root_fixture, tiny_config  # noqa: F401  (pytest fixtures)

from cifar.distributed import World
from cifar.engine import Engine
from cifar.evaluate import PRECISIONS, autocast, has_bf16_kernels, resolve_precision
from cifar.report.narrative import extra_features
from cifar.train import train

CPU = torch.device("cpu")


@pytest.fixture(name="bf16_kernels")
def bf16_kernels_fixture(monkeypatch: pytest.MonkeyPatch) -> Callable[[bool], None]:
    """Pretend the CPU has (True) or lacks (False) bf16 kernels."""
    def pretend(present: bool) -> None:
        for module in ("cifar.evaluate", "cifar.engine"):
            monkeypatch.setattr(f"{module}.has_bf16_kernels", lambda device: present)
    return pretend


@pytest.mark.parametrize("present", [True, False], ids=["bf16-kernels", "no-bf16-kernels"])
@pytest.mark.parametrize("asked", PRECISIONS)
def test_auto_computes_in_bf16_only_where_there_are_bf16_kernels_and_a_choice_stands(
        asked: str, present: bool, bf16_kernels: Callable[[bool], None]) -> None:
    bf16_kernels(present)
    expected = {"auto": "bf16" if present else "fp32"}.get(asked, asked)
    assert resolve_precision(asked, CPU) == expected
    with autocast(CPU, asked):
        product = torch.ones(2, 2) @ torch.ones(2, 2)
    assert product.dtype == (torch.bfloat16 if expected == "bf16" else torch.float32)


def test_an_unknown_precision_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match=r"precision: expected one of \['auto', 'bf16', "
                                         r"'fp32'\], got 'fp16'"):
        resolve_precision("fp16", CPU)


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                    reason="reads the x86 CPU flags in /proc/cpuinfo")
def test_this_cpu_has_bf16_kernels_exactly_when_it_has_avx512_bw_vl_and_dq() -> None:
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("flags")).split()
    avx512 = {"avx512bw", "avx512vl", "avx512dq"} <= set(flags)
    assert has_bf16_kernels(CPU) == avx512


@dataclasses.dataclass
class _OtherRanks(World):
    """Rank 0 of `size`, where the other ranks resolve bf16 `others_bf16` times."""

    others_bf16: int = 0

    def sum(self, values: Sequence[float]) -> list[float]:
        return [values[0] + self.others_bf16]


@pytest.mark.parametrize(("here", "others_bf16", "expected"), [
    (True, 1, "bf16"), (True, 0, "fp32"), (False, 1, "fp32"), (False, 0, "fp32")],
    ids=["all-have-kernels", "another-lacks-them", "this-one-lacks-them", "none-has-them"])
def test_auto_takes_bf16_only_if_every_rank_has_bf16_kernels(
        here: bool, others_bf16: int, expected: str, bf16_kernels: Callable[[bool], None],
        tmp_path: Path) -> None:
    bf16_kernels(here)
    world = _OtherRanks(rank=0, size=2, others_bf16=others_bf16)
    engine = Engine(tiny_config(tmp_path), steps_per_epoch=1, device=CPU, world=world)
    assert engine.precision == expected


def test_bf16_asked_without_bf16_kernels_warns_and_stays_bf16(
        bf16_kernels: Callable[[bool], None], tmp_path: Path) -> None:
    bf16_kernels(False)
    with pytest.warns(UserWarning, match="precision bf16: cpu has no bf16 kernels.*--precision "
                                         "auto picks fp32"):
        engine = Engine(tiny_config(tmp_path, precision="bf16"), steps_per_epoch=1, device=CPU)
    assert engine.precision == "bf16"


def test_a_run_says_and_records_the_precision_auto_chose_and_the_report_follows(
        bf16_kernels: Callable[[bool], None], cifar_root: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    bf16_kernels(False)
    config = tiny_config(cifar_root)
    assert config["precision"] == "auto"
    summary = train(config, out=tmp_path / "run")
    assert summary["precision"] == "fp32"
    assert "precision auto: fp32 (bf16 autocast needs bf16 kernels: a GPU, or a CPU with " \
           "AVX-512)" in capsys.readouterr().out
    used, off = extra_features(config, summary, [], None)
    assert "bfloat16 autocast" in off
    assert not any("bfloat16" in line for line in used)
