"""The report's seven sections as document blocks, built from the collected inputs."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from cifar.report.architecture import FLOP_CONVENTION, Architecture, format_flops
from cifar.report.collect import BenchResults, CheckResults, RunData, TestEvaluation
from cifar.report.document import Block, Bullets, Figure, Heading, Paragraph, Table, Title
from cifar.report.figures import FigureFile
from cifar.report.narrative import extra_features, what_was_done
from cifar.report.summary import final_accuracy, first_page, pct
from cifar.report.training import LrCurve, settings_rows

SECTIONS = ("1. Summary", "2. Architecture", "3. Training setup", "4. Graphs",
            "5. PyNet checker results", "6. Backend benchmarks",
            "7. What was done, and the extra features")
CHECK_COLUMNS = ("forward", "dx", "params", "running", "eval", "fd")


@dataclass
class ReportInputs:
    """Everything the report shows; any piece may be None when it could not be had."""

    run: RunData
    architecture: Architecture | None = None
    evaluation: TestEvaluation | None = None
    lr: LrCurve | None = None
    check: CheckResults | None = None
    bench: BenchResults | None = None
    figures: dict[str, FigureFile] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def summary_section(inputs: ReportInputs) -> list[Block]:
    return [Heading(SECTIONS[0]), *first_page(inputs)]


def architecture_section(inputs: ReportInputs) -> list[Block]:
    arch = inputs.architecture
    blocks: list[Block] = [Heading(SECTIONS[1])]
    if arch is None:
        return blocks + [Paragraph("Not available: no usable model configuration was found, "
                                   "so the layer table could not be generated.")]
    source = inputs.run.config_source or "the run configuration"
    blocks.append(Paragraph(
        f"Generated from the network that {source}'s `model` entry builds "
        f"(cifar.models.build_model), by passing one 1×3×32×32 image through it with a forward "
        f"hook on every leaf module. Output shapes leave out the batch dimension. FLOPs: "
        f"{FLOP_CONVENTION}."))
    rows = [[str(i), layer.name, layer.kind, layer.detail,
             "×".join(map(str, layer.output_shape)),
             f"{layer.params:,}",
             format_flops(layer.flops) if layer.flops else "-"]
            for i, layer in enumerate(arch.layers, 1)]
    rows.append(["", "total", "", "", "", f"{arch.params:,}", format_flops(arch.flops)])
    blocks.append(Table(["#", "Layer", "Type", "Details", "Output", "Params", "FLOPs"], rows,
                        [6.5, 24, 29, 38, 17, 15, 17], "RLLLRRR", 8))
    check = (inputs.run.summary or {}).get("params")
    if check is not None:
        same = "matches" if check == arch.params else f"differs from ({check:,})"
        blocks.append(Paragraph(f"The parameter total {same} summary.json's count."))
    return blocks


def setup_section(inputs: ReportInputs) -> list[Block]:
    config = inputs.run.config
    blocks: list[Block] = [Heading(SECTIONS[2])]
    if not config:
        return blocks + [Paragraph("Not available: config.json is missing and no checkpoint "
                                   "holds the configuration.")]
    blocks.append(Paragraph(f"Every entry of {inputs.run.config_source} except the model "
                            f"(section 2); preset `{config.get('preset', '?')}`."))
    blocks.append(Table(["Setting", "Value", "Meaning"], settings_rows(config), [25, 27, 64],
                        "LLL", 8, padding=0.5))
    blocks.append(Heading("Learning-rate schedule", 2))
    if "lr" in inputs.figures:
        blocks.append(Figure(inputs.figures["lr"]))
    else:
        blocks.append(Paragraph("Not plotted: neither the config nor metrics.csv gives the "
                                "learning rate."))
    return blocks


def graphs_section(inputs: ReportInputs) -> list[Block]:
    figures, evaluation = inputs.figures, inputs.evaluation
    curves = ("The per-epoch loss and accuracy curves are in section 1, on the first page"
              if "curves" in figures else "There are no per-epoch curves (see section 1)")
    lr = "; the learning rate over steps is plotted in section 3" if "lr" in figures else ""
    blocks: list[Block] = [Heading(SECTIONS[3]), Paragraph(f"{curves}{lr}."),
                           Heading("Test-set analysis", 2)]
    if evaluation is None:
        return blocks + [Paragraph("Not available: the checkpoint or the CIFAR-10 test set is "
                                   "missing (see section 1), so there is no confusion matrix, "
                                   "per-class accuracy or misclassified-image grid.")]
    summary = (inputs.run.summary or {}).get("test_accuracy")
    agree = f" (summary.json: {pct(summary)})" if summary is not None else ""
    blocks.append(Paragraph(
        f"{evaluation.checkpoint.name} evaluated at report time on {len(evaluation.labels):,} "
        f"test images from {evaluation.data_dir}, without test-time augmentation, with the "
        f"run's precision: accuracy {pct(evaluation.accuracy)}{agree}."))
    blocks += [Figure(figures[name]) for name in ("confusion", "per_class", "misclassified")
               if name in figures]
    if "misclassified" not in figures:
        blocks.append(Paragraph("No test image was misclassified, so there is no grid."))
    return blocks


def _error(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def check_section(inputs: ReportInputs) -> list[Block]:
    check = inputs.check
    blocks: list[Block] = [Heading(SECTIONS[4])]
    if check is None:
        return blocks + [Paragraph("Not available: pynet-check was not run (--no-run-check) "
                                   "and no --check-json file was given.")]
    where = ("Run in-process at report time" if check.source == "run at report time"
             else f"Read from {check.source}")
    tolerance = ", ".join(f"{k} {v:g}" for k, v in check.tolerance.items())
    versions = ", ".join(f"{k} {v}" for k, v in check.versions.items())
    failed = sum(not row["passed"] for row in check.rows)
    blocks.append(Paragraph(
        f"{where}, dated {check.date}; {versions or 'versions not recorded'}. Each backend "
        f"runs every layer's conformance cases against PyTorch; the columns are the worst "
        f"relative errors max|a - b| / max|b| of the forward output, dL/dx, the parameter "
        f"gradients, batch norm's running statistics and eval mode, and (float64) a "
        f"finite-difference check. Tolerances: {tolerance or 'not recorded'}. "
        f"{len(check.rows) - failed} of {len(check.rows)} rows pass."))
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in check.rows:
        groups.setdefault((row["backend"], row["dtype"]), []).append(row)
    summary = []
    for (backend, dtype), rows in groups.items():
        worst = [max((r["errors"][c] for r in rows if c in r["errors"]), default=None)
                 for c in CHECK_COLUMNS]
        passed = sum(r["passed"] for r in rows)
        summary.append([backend, dtype, f"{passed} of {len(rows)}", *map(_error, worst),
                        "PASS" if passed == len(rows) else "FAIL"])
    header = ["Backend", "dtype", "Layers", *CHECK_COLUMNS, "Verdict"]
    blocks += [Heading("Worst error per backend and dtype", 2),
               Table(header, summary, [13, 11, 11, *[10] * 6, 11], "LLR" + "R" * 6 + "C", 8,
                     verdict_column=9)]
    order = {key: {v: i for i, v in enumerate(dict.fromkeys(r[key] for r in check.rows))}
             for key in ("backend", "layer", "dtype")}
    ordered = sorted(check.rows, key=lambda r: tuple(order[k][r[k]] for k in order))
    rows = [[r["backend"], r["layer"], r["dtype"],
             *(_error(r["errors"].get(c)) for c in CHECK_COLUMNS),
             "PASS" if r["passed"] else "FAIL"] for r in ordered]
    header = ["Backend", "Layer", "dtype", *CHECK_COLUMNS, "Verdict"]
    blocks += [Heading("Every layer", 2),
               Table(header, rows, [11, 17, 11, *[9.5] * 6, 10], "LLL" + "R" * 6 + "C", 7.5,
                     verdict_column=9)]
    return blocks


def bench_section(inputs: ReportInputs) -> list[Block]:
    bench = inputs.bench
    blocks: list[Block] = [Heading(SECTIONS[5])]
    if bench is None:
        return blocks + [Paragraph("Not available: no benchmark JSON was found (bench/results."
                                   "json, written by `python -m bench.report`, or "
                                   "--bench-json).")]
    cpu = bench.machine.get("cpu") if isinstance(bench.machine.get("cpu"), dict) else {}
    machine = (f"{cpu.get('brand_raw', 'CPU model not recorded')}, {cpu.get('count', '?')} cores"
               if cpu else "machine not recorded")
    blocks.append(Paragraph(
        f"Read from {bench.source}, dated {bench.date}; {machine}. Median times; '× torch' is "
        f"(forward + backward) time over torch's on the same shape; GFLOP/s counts forward + "
        f"backward as 3× the forward FLOPs."))

    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return "-" if row.get(key) is None else format(row[key], fmt)

    rows = [[r["workload"], "×".join(map(str, r["shape"]))
             + (" (reduced)" if r.get("shape_kind") == "reduced" else ""), r["engine"],
             cell(r, "forward_ms", ".3f"), cell(r, "backward_ms", ".3f"),
             cell(r, "step_ms", ".1f"), cell(r, "gflops", ".1f"), cell(r, "ratio", ".2f")]
            for r in bench.rows]
    header = ["Workload", "Shape", "Engine", "Fwd ms", "Bwd ms", "Step ms", "GFLOP/s", "× torch"]
    blocks.append(Table(header, rows, [24, 22, 10, 10, 10, 10, 10, 9], "LLLRRRRR", 7.5))
    return blocks


def narrative_section(inputs: ReportInputs) -> list[Block]:
    run = inputs.run
    blocks: list[Block] = [Heading(SECTIONS[6])]
    if not run.config:
        return blocks + [Paragraph("Not available: without the run configuration there is "
                                   "nothing to describe.")]
    plain, _ = final_accuracy(inputs)
    blocks.append(Paragraph(what_was_done(run.config, run.summary, run.metrics,
                                          inputs.architecture, plain, run.last_epoch)))
    used, off = extra_features(run.config, run.summary, run.metrics, inputs.architecture)
    blocks.append(Heading("Extra features used in this run", 2))
    blocks.append(Bullets(used) if used else Paragraph("None: a plain baseline run."))
    if off:
        blocks.append(Paragraph("Not used in this run: " + ", ".join(off) + "."))
    return blocks


def build_blocks(inputs: ReportInputs) -> list[Block]:
    """Title and sections 1-7, with figures numbered in order of appearance."""
    title = Title(f"CIFAR-10 run report: {inputs.run.path.resolve().name}",
                  f"Run directory {inputs.run.path.resolve()}; generated "
                  f"{time.strftime('%Y-%m-%d %H:%M')} by `python -m cifar report`.")
    blocks: list[Block] = [title]
    sections = (summary_section, architecture_section, setup_section, graphs_section,
                check_section, bench_section, narrative_section)
    for heading, section in zip(SECTIONS, sections, strict=True):
        try:
            blocks += section(inputs)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # odd config values
            blocks += [Heading(heading), Paragraph(f"This section could not be generated "
                                                   f"({type(exc).__name__}: {exc}).")]
    figures = [i for i, block in enumerate(blocks) if isinstance(block, Figure)]
    for number, i in enumerate(figures, 1):
        figure = blocks[i].figure
        blocks[i] = Figure(replace(figure, caption=f"Figure {number}. {figure.caption}"))
    return blocks
