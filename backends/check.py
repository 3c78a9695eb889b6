"""``pynet-check``: the gradient checker. Every backend against PyTorch, layer by layer.

For each layer x backend x dtype it runs the conformance cases of :mod:`backends.conformance`
and prints the worst relative error ``max|a - b| / max|b|`` of the forward output, dL/dx,
the parameter gradients, BatchNorm's running statistics and its eval-mode output and dx,
plus (float64) a finite-difference check that uses no torch. Below the table it lists each
failure: the case, the quantity and its error against the tolerance, or the exception a
kernel raised. A backend of one's own (a module or ``.py`` file) may implement part of the
contract: layers whose kernels are missing or still raise NotImplementedError are listed as
not implemented. It exits 1 on any failure.
"""

from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from pathlib import Path

import click
import numpy as np
import torch
from tqdm import tqdm

import backends
from backends import BACKENDS
from backends.conformance import (
    CASES,
    FD_TOLERANCE,
    TOLERANCE,
    Backend,
    Case,
    column_of,
    compare_with_torch,
    conv_algorithms,
    differentiable,
    finite_difference,
    tolerance,
)
from backends.template import render_template

COLUMNS = ("forward", "dx", "params", "running", "eval", "fd")
DTYPES = ("float64", "float32")
NOT_IMPLEMENTED = "not implemented"


def _measure(case: Case, backend: Backend, dtype: str, seed: int,
             algorithm: str | None) -> dict[str, float]:
    errors = compare_with_torch(case, backend, dtype, seed, algorithm)
    if dtype == "float64" and differentiable(case):
        errors |= finite_difference(case, backend, seed, algorithm=algorithm)
    return errors


def _record_errors(row: dict, case: Case, errors: dict[str, float]) -> None:
    for quantity, error in errors.items():
        column = column_of(quantity)
        row["errors"][column] = float(np.max([row["errors"].get(column, 0.0), error]))  # NaN wins
        if not error <= tolerance(quantity, row["dtype"]):
            row["findings"].append({"case": case.id, "quantity": quantity, "error": error,
                                    "tolerance": tolerance(quantity, row["dtype"])})


def _record_exception(row: dict, case: Case, exc: Exception, partial: bool) -> None:
    """A NotImplementedError of a partial backend marks the row not implemented; any other
    exception is a finding, with where it was raised."""
    origin = traceback.extract_tb(exc.__traceback__)[-1]
    if partial and isinstance(exc, NotImplementedError):
        row["not_implemented"] = (row["not_implemented"] or str(exc)
                                  or f"{origin.name} raises NotImplementedError")
    else:
        row["findings"].append({"case": case.id, "exception": (
            f"{type(exc).__name__}: {exc} ({Path(origin.filename).name}:{origin.lineno}, "
            f"in {origin.name})")})


def run_checks(backend_names: tuple[Backend, ...], dtypes: tuple[str, ...], seed: int = 0,
               progress: bool = False) -> list[dict]:
    """One result row per layer x backend x dtype: the worst error per column, a verdict
    (PASS, FAIL or 'not implemented') and the ``findings`` behind a FAIL: each case and
    quantity above its tolerance, or the exception a case raised. Only a backend outside
    :data:`backends.BACKENDS` may leave kernels not implemented. A backend with several
    convolution algorithms gets a Conv2d row for each, e.g. 'Conv2d [winograd]', of the
    cases that algorithm computes."""
    rows: dict[tuple[str, str, str], dict] = {}
    jobs = [(case, backend, dtype, algorithm) for backend in backend_names for dtype in dtypes
            for case in CASES for algorithm in conv_algorithms(case, backend)]
    for case, backend, dtype, algorithm in tqdm(jobs, desc="pynet-check", disable=not progress,
                                                file=sys.stderr):
        label = backends.get(backend).name
        layer = f"{case.layer} [{algorithm}]" if algorithm else case.layer
        row = rows.setdefault((layer, label, dtype), {
            "layer": layer, "backend": label, "dtype": dtype, "errors": {},
            "findings": [], "not_implemented": None})
        try:
            _record_errors(row, case, _measure(case, backend, dtype, seed, algorithm))
        except Exception as exc:  # a kernel of one's own may raise anything: report, go on
            _record_exception(row, case, exc, partial=label not in BACKENDS)
    for row in rows.values():
        row["verdict"] = ("FAIL" if row["findings"] else
                          NOT_IMPLEMENTED if row["not_implemented"] else "PASS")
        row["passed"] = row["verdict"] == "PASS"
    return list(rows.values())


def format_table(rows: list[dict]) -> str:
    """A Markdown table: one row per layer x backend x dtype, '-' where a column does not
    apply."""
    header = ["layer", "backend", "dtype", *COLUMNS, "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["layer"], row["backend"], row["dtype"]]
        cells += [f"{row['errors'][c]:.1e}" if c in row["errors"] else "-" for c in COLUMNS]
        cells.append(row["verdict"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _finding(row: dict, finding: dict) -> str:
    what = finding.get("exception") or (
        f"{finding['quantity']} relative error {finding['error']:.1e} > tolerance "
        f"{finding['tolerance']:.0e}")
    return f"- {row['layer']}, {row['backend']}, {row['dtype']}, case {finding['case']}: {what}"


def format_findings(rows: list[dict]) -> str:
    """What failed, case by case and quantity by quantity, then what is not implemented
    (once per layer and backend); empty when everything passed."""
    sections = []
    failures = [_finding(row, finding) for row in rows for finding in row["findings"]]
    if failures:
        sections.append("\n".join(["Failures:", *failures]))
    missing = {(row["layer"], row["backend"]): row["not_implemented"] for row in rows
               if row["verdict"] == NOT_IMPLEMENTED}
    if missing:
        sections.append("\n".join(["Not implemented:", *(
            f"- {layer}, {backend}: {why}" for (layer, backend), why in missing.items())]))
    return "\n\n".join(sections)


def _load_backends(ctx: click.Context, param: click.Parameter,
                   names: tuple[str, ...]) -> tuple[str, ...]:
    for name in names:
        try:
            backends.get(name)
        except Exception as exc:  # a kernel file of one's own may fail in any way
            raise click.BadParameter(f"{name!r}: {type(exc).__name__}: {exc}") from None
    return names or BACKENDS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--backend", "backend_names", multiple=True, callback=_load_backends,
              metavar="NAME",
              help=f"Backend to check (repeatable): {', '.join(BACKENDS)}, an importable "
                   f"module or a .py file of kernels of your own. Default: every built-in one.")
@click.option("--dtype", "dtypes", multiple=True, type=click.Choice(DTYPES),
              help="Dtype to check (repeatable). Default: float64 and float32.")
@click.option("--seed", default=0, show_default=True, help="Seed of inputs and parameters.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results, with date and versions, to this JSON file.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--template", type=click.Path(dir_okay=False, path_type=Path),
              help="Write a kernel file to fill in (every function of the kernel contract, "
                   "documented, raising NotImplementedError) and exit.")
def main(backend_names: tuple[str, ...], dtypes: tuple[str, ...], seed: int,
         json_path: Path | None, quiet: bool, template: Path | None) -> None:
    """Check PyNet backends, built-in or your own kernels, against PyTorch: forward,
    backward, running statistics. Start your own with --template FILE.

    Tolerances: relative error <= 1e-10 in float64 and <= 1e-4 in float32; the
    finite-difference column (float64, no torch) <= 1e-6.
    """
    if template is not None:
        if template.exists():
            raise click.BadParameter(f"{template} exists; remove it or choose another name",
                                     param_hint="--template")
        template.write_text(render_template(str(template)))
        click.echo(f"wrote {template}: fill in its functions, then run "
                   f"pynet-check --backend {template}")
        return
    started = time.time()
    rows = run_checks(backend_names, dtypes or DTYPES, seed, progress=not quiet)
    click.echo(format_table(rows))
    findings = format_findings(rows)
    if findings:
        click.echo("\n" + findings)
    failures = sum(row["verdict"] == "FAIL" for row in rows)
    missing = sum(row["verdict"] == NOT_IMPLEMENTED for row in rows)
    click.echo(f"\n{len(rows) - failures - missing} passed, {failures} failed"
               + (f", {missing} {NOT_IMPLEMENTED}" if missing else "")
               + f" ({len(CASES)} cases per backend and dtype, {time.time() - started:.1f} s)")
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
