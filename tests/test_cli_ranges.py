"""Every numeric command-line option states its valid range, so a bad value is a usage error."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bench.cli import main as bench_main
from bench.epoch import main as bench_epoch
from bench.interop import main as bench_interop
from bench.step import main as bench_step
from cifar.cli import main as cifar_main
from cifar.pipeline import EPOCH_SEED_STRIDE, MAX_SEED, epoch_generator

COMMANDS = {"python -m cifar": cifar_main, "pynet-bench": bench_main,
            "python -m bench.epoch": bench_epoch, "python -m bench.interop": bench_interop,
            "python -m bench.step": bench_step}


def _options(name: str, command: click.Command) -> list[tuple[str, click.Option]]:
    """(command path, option) for every option of `command` and its subcommands."""
    found = [(name, p) for p in command.params if isinstance(p, click.Option)]
    for sub_name, sub in getattr(command, "commands", {}).items():
        found += _options(f"{name} {sub_name}", sub)
    return found


def test_every_numeric_option_has_a_range() -> None:
    unranged = [f"{name} {option.opts[0]}"
                for command_name, command in COMMANDS.items()
                for name, option in _options(command_name, command)
                if option.type in (click.INT, click.FLOAT)]
    assert unranged == []


@pytest.mark.parametrize("program, args", [
    ("python -m cifar", ["train", "--epochs", "0"]),
    ("python -m cifar", ["train", "--batch-size", "-5"]),
    ("python -m cifar", ["train", "--train-subset", "0"]),
    ("python -m cifar", ["train", "--test-subset", "0"]),
    ("python -m cifar", ["train", "--eval-every", "-1"]),
    ("python -m cifar", ["train", "--threads", "0"]),
    ("python -m cifar", ["train", "--seed", str(MAX_SEED + 1)]),
    ("python -m cifar", ["test", "{file}", "--threads", "0"]),
    ("python -m bench.epoch", ["--train-subset", "0"]),
    ("python -m bench.epoch", ["--threads", "0"]),
    ("python -m bench.interop", ["{folder}", "--threads", "0"]),
], ids=lambda value: value if isinstance(value, str) else " ".join(value))
def test_an_out_of_range_value_is_a_usage_error_naming_the_option(
        tmp_path: Path, program: str, args: list[str]) -> None:
    (tmp_path / "model.pt").touch()
    args = [arg.format(file=tmp_path / "model.pt", folder=tmp_path) for arg in args]
    result = CliRunner().invoke(COMMANDS[program], args)
    assert result.exit_code == 2, result.output
    assert f"Error: Invalid value for '{args[-2]}': {args[-1]} is not in the range" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["--eval-every", "0"], ["--seed", "-5"],
                                  ["--seed", str(MAX_SEED)], ["--seed", str(-MAX_SEED)],
                                  ["--epochs", "1", "--batch-size", "1", "--train-subset", "1",
                                   "--test-subset", "1", "--threads", "1"]], ids=" ".join)
def test_the_range_limits_themselves_are_accepted(args: list[str]) -> None:
    context = cifar_main.commands["train"].make_context("train", list(args))
    for flag, value in zip(args[::2], args[1::2], strict=True):
        assert context.params[flag.lstrip("-").replace("-", "_")] == int(value)


@pytest.mark.parametrize("seed", [MAX_SEED, -MAX_SEED])
def test_the_extreme_seeds_seed_every_epochs_generator(seed: int) -> None:
    for epoch in (0, EPOCH_SEED_STRIDE - 1):
        epoch_generator(seed, epoch)


def test_bench_step_times_every_width_at_every_size() -> None:
    result = CliRunner().invoke(bench_step, [
        "--widths", "8,16,16", "--widths", "8,24,24", "--sizes", "32,24", "--batch-size", "8",
        "--threads", "1", "--rounds", "1", "--steps", "1"])
    assert result.exit_code == 0, result.output
    rows = [line.split(" | ") for line in result.output.splitlines()
            if line.startswith("| preset |")]
    assert [(row[1], row[2]) for row in rows] == [
        ("8,16,16", "32"), ("8,16,16", "24"), ("8,24,24", "32"), ("8,24,24", "24")]
    assert rows[0][4] == "1.00 |" and all(float(row[3]) > 0 for row in rows)


def test_bench_step_times_the_preset_then_each_variant() -> None:
    result = CliRunner().invoke(bench_step, [
        "--widths", "8,16,16", "--variant", "model.activation=relu whiten_bias_epochs=10",
        "--batch-size", "8", "--threads", "1", "--rounds", "1", "--steps", "1"])
    assert result.exit_code == 0, result.output
    rows = [line.split(" | ") for line in result.output.splitlines()
            if line.endswith("|") and "8,16,16" in line]
    assert [row[0] for row in rows] == [
        "| preset", "| model.activation=relu whiten_bias_epochs=10"]
    assert rows[0][4] == "1.00 |" and all(float(row[3]) > 0 for row in rows)


@pytest.mark.parametrize("args, message", [
    (["--widths", "8,16"], "expected 3 widths for preset 'fast', got [8, 16]"),
    (["--widths", "8,x,16"], "expected comma-separated positive integers, got '8,x,16'"),
    (["--sizes", "32,0"], "expected comma-separated positive integers, got '32,0'"),
    (["--variant", "muon.foo=1"], "muon.foo: no such setting; expected one of ['lr'"),
    (["--variant", "epochs"], "expected KEY=VALUE with KEY a dotted config path"),
], ids=["widths-count", "widths-not-ints", "sizes-not-positive", "variant-unknown-key",
        "variant-not-key-value"])
def test_bench_step_refuses_malformed_lists_naming_the_option(args: list[str],
                                                              message: str) -> None:
    result = CliRunner().invoke(bench_step, [*args, "--batch-size", "4", "--rounds", "1"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for {args[0]}: {message}" in " ".join(result.output.split()), \
        result.output
