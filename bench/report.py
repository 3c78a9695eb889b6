"""``python -m bench.report RAW.json``: pytest-benchmark JSON -> RESULTS.md and results.json."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import click

from bench.table import markdown, summarize


def measurements_from_pytest_benchmark(raw: dict) -> list[dict]:
    return [{**b["extra_info"], "seconds": b["stats"]["median"]} for b in raw["benchmarks"]]


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("raw", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench"), show_default=True)
def main(raw: Path, out_dir: Path) -> None:
    """Write RESULTS.md and results.json (medians, GFLOP/s, ratio to torch) from RAW."""
    data = json.loads(raw.read_text())
    rows = summarize(measurements_from_pytest_benchmark(data))
    machine = data.get("machine_info", {})
    threads = data["benchmarks"][0]["extra_info"].get("threads", "?")
    header = (f"# Backend benchmarks\n\nMedian wall time, float32, from `nox -s bench` on "
              f"{data.get('datetime', '?')[:10]}: {machine.get('cpu', {}).get('brand_raw', '?')}, "
              f"{machine.get('cpu', {}).get('count', '?')} cores, Python "
              f"{platform.python_version()}. torch, numba and NumPy's BLAS all use {threads} "
              f"threads. `× torch` is (forward + backward) time over torch's on the same shape; "
              f"GFLOP/s counts forward + backward as 3× the forward FLOPs.\n\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "RESULTS.md").write_text(header + markdown(rows) + "\n")
    (out_dir / "results.json").write_text(json.dumps(
        {"date": data.get("datetime"), "machine": machine, "rows": rows}, indent=2))
    click.echo(markdown(rows))


if __name__ == "__main__":
    main()
