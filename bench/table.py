"""Benchmark measurements -> rows with milliseconds, GFLOP/s and the ratio to torch."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

ENGINE_ORDER = {"naive": 0, "numpy": 1, "numba": 2, "torch": 3}


def summarize(measurements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, shape, engine). Each measurement holds workload, engine, call
    ('forward' | 'backward' | 'step'), shape_kind, shape, flops (forward, or None) and the
    median seconds. The ratio is (forward + backward) / torch's on the same shape."""
    grouped: dict[tuple, dict[str, Any]] = defaultdict(dict)
    for m in measurements:
        row = grouped[(m["workload"], m["shape_kind"], m["engine"])]
        row.update(workload=m["workload"], shape_kind=m["shape_kind"], engine=m["engine"],
                   shape=tuple(m["shape"]), flops=m["flops"])
        row[f"{m['call']}_ms"] = 1e3 * m["seconds"]
    rows = []
    for (workload, shape_kind, _), row in grouped.items():
        total = _total_ms(row)
        torch_row = grouped.get((workload, shape_kind, "torch"))
        row["ratio"] = total / _total_ms(torch_row) if torch_row else None
        if row["flops"]:
            # backward of a GEMM layer costs two forward GEMMs; a step is 3x the forward
            row["gflops"] = 3 * row["flops"] / total / 1e6
        rows.append(row)
    rows.sort(key=lambda r: (r["workload"], r["shape_kind"], ENGINE_ORDER[r["engine"]]))
    return rows


def _total_ms(row: dict[str, Any]) -> float:
    return row.get("step_ms", 0.0) + row.get("forward_ms", 0.0) + row.get("backward_ms", 0.0)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| workload | shape (N, C, H, W) | engine | forward ms | backward ms | "
             "step ms | GFLOP/s | × torch |", "|---|---|---|---:|---:|---:|---:|---:|"]

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    for r in rows:
        shape = "×".join(map(str, r["shape"])) + (" (reduced)" if r["shape_kind"] == "reduced"
                                                  else "")
        lines.append(
            f"| {r['workload']} | {shape} | {r['engine']} | {cell(r.get('forward_ms'), '.3f')} "
            f"| {cell(r.get('backward_ms'), '.3f')} | {cell(r.get('step_ms'), '.1f')} "
            f"| {cell(r.get('gflops'), '.1f')} | {cell(r['ratio'], '.2f')} |")
    return "\n".join(lines)
