"""``pynet-check``: the gradient checker. Every backend against PyTorch, layer by layer.

For each layer x backend x dtype it runs the conformance cases of :mod:`backends.conformance`
and prints the worst relative error ``max|a - b| / max|b|`` of the forward output, dL/dx,
the parameter gradients, BatchNorm's running statistics and its eval-mode output and dx,
plus (float64) a finite-difference check that uses no torch. It exits 1 on any failure.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

from backends import BACKENDS
from backends.conformance import (
    CASES,
    FD_TOLERANCE,
    TOLERANCE,
    compare_with_torch,
    differentiable,
    finite_difference,
)

COLUMNS = ("forward", "dx", "params", "running", "eval", "fd")
DTYPES = ("float64", "float32")


def run_checks(backends: tuple[str, ...], dtypes: tuple[str, ...], seed: int = 0,
               progress: bool = False) -> list[dict]:
    """One result row per layer x backend x dtype: worst error per column and a verdict."""
    worst: dict[tuple[str, str, str], dict[str, float]] = defaultdict(dict)
    jobs = [(case, backend, dtype) for backend in backends for dtype in dtypes for case in CASES]
    for case, backend, dtype in tqdm(jobs, desc="pynet-check", disable=not progress,
                                     file=sys.stderr):
        errors = compare_with_torch(case, backend, dtype, seed)
        if "eval" in errors:
            errors["eval"] = max(errors["eval"], errors.pop("eval_dx"))
        if dtype == "float64" and differentiable(case):
            errors["fd"] = finite_difference(case, backend, seed)
        row = worst[(case.layer, backend, dtype)]
        for column, error in errors.items():
            row[column] = max(row.get(column, 0.0), error)
    rows = []
    for (layer, backend, dtype), errors in worst.items():
        limits = {column: FD_TOLERANCE if column == "fd" else TOLERANCE[dtype]
                  for column in errors}
        passed = all(errors[column] <= limits[column] for column in errors)
        rows.append({"layer": layer, "backend": backend, "dtype": dtype, "errors": errors,
                     "passed": passed})
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table: one row per layer x backend x dtype, '-' where a column does not
    apply."""
    header = ["layer", "backend", "dtype", *COLUMNS, "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["layer"], row["backend"], row["dtype"]]
        cells += [f"{row['errors'][c]:.1e}" if c in row["errors"] else "-" for c in COLUMNS]
        cells.append("PASS" if row["passed"] else "FAIL")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backend", "backend_names", multiple=True, type=click.Choice(BACKENDS),
              help="Backend to check (repeatable). Default: all.")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(DTYPES),
              help="Dtype to check (repeatable). Default: float64 and float32.")
@click.option("--seed", default=0, show_default=True, help="Seed of inputs and parameters.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results, with date and versions, to this JSON file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def main(backend_names: tuple[str, ...], dtypes: tuple[str, ...], seed: int,
         json_path: Path | None, quiet: bool) -> None:
    """Check every PyNet backend against PyTorch: forward, backward, running statistics.

    Tolerances: relative error <= 1e-10 in float64 and <= 1e-4 in float32; the
    finite-difference column (float64, no torch) <= 1e-6.
    """
    started = time.time()
    rows = run_checks(backend_names or BACKENDS, dtypes or DTYPES, seed, progress=not quiet)
    click.echo(format_table(rows))
    failures = sum(not row["passed"] for row in rows)
    click.echo(f"\n{len(rows) - failures} passed, {failures} failed "
               f"({len(CASES)} cases per backend and dtype, {time.time() - started:.1f} s)")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": seed,
            "tolerance": {**TOLERANCE, "fd": FD_TOLERANCE},
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "torch": torch.__version__},
            "rows": rows}, indent=2))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
