"""`python -m cifar report`: a report from a tiny synthetic run, and from runs missing pieces."""

from __future__ import annotations

import json
import math
import re
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from cifar_fixtures import (  # noqa: F401  (pytest fixtures)
    CLASSES,
    shared_cifar_root_fixture,
    trained_run_fixture,
    write_cifar,
)
from click.testing import CliRunner
from PIL import Image

from cifar.checkpoint import model_checkpoint
from cifar.engine import lr_factor
from cifar.models import build_model, count_parameters
from cifar.presets import resolve_config
from cifar.report import build_report, report
from cifar.report.architecture import describe_config
from cifar.report.command import curves_caption
from cifar.report.content import SECTIONS
from cifar.report.training import lr_curve, settings_rows
from cifar.rundir import RunDir

TINY_MODEL = {"arch": "course", "widths": [4, 8, 8], "hidden": 16}
N_TRAIN, EPOCHS, BATCH = 200, 3, 64
SCHEDULE = {"kind": "warmup_linear", "warmup": 0.25, "start": 0.2, "end": 0.1}
FULL_REPORT_PAGES = 8  # summary, architecture, setup, graphs (2 pages), checker, bench, text
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PDF_OBJECT = re.compile(rb"(\d+) 0 obj\b")


def _config(data_dir: Path) -> dict[str, Any]:
    return resolve_config("course", model=TINY_MODEL, epochs=EPOCHS, batch_size=BATCH,
                          schedule=SCHEDULE, label_smoothing=0.1, data_dir=str(data_dir),
                          device="cpu", threads=1, eval_batch_size=32)


def _metrics(config: dict[str, Any]) -> list[dict[str, float]]:
    per_epoch = math.ceil(N_TRAIN / BATCH)
    return [{"epoch": e, "lr": config["lr"] * lr_factor(SCHEDULE, (e - 1) * per_epoch,
                                                        per_epoch * EPOCHS),
             "train_loss": 2.3 - 0.2 * e, "train_acc": 0.1 + 0.05 * e,
             "test_loss": 2.3 - 0.15 * e, "test_acc": 0.1 + 0.04 * e, "epoch_seconds": 0.5}
            for e in range(1, EPOCHS + 1)]


@pytest.fixture(name="data_dir")
def data_dir_fixture(tmp_path: Path) -> Path:
    """Synthetic CIFAR-10 (200 training, 60 test images)."""
    return write_cifar(tmp_path / "data")


@pytest.fixture(name="run_dir")
def run_dir_fixture(tmp_path: Path, data_dir: Path) -> Path:
    """A finished run of a tiny untrained course network: every file a run writes."""
    config = _config(data_dir)
    torch.manual_seed(0)
    model = build_model(config["model"])
    run = RunDir(tmp_path / "run")
    run.create(config)
    run.write_metrics(_metrics(config))
    classes = [name.decode() for name in CLASSES]
    run.save_last({"config": config, "model": model.state_dict(), "epoch": EPOCHS,
                   "classes": classes})
    run.save_model(model_checkpoint(model, config, classes))
    run.write_summary({"test_accuracy": 0.22, "test_accuracy_tta": 0.23, "test_loss": 1.9,
                       "tta_level": 1, "epochs": EPOCHS, "train_seconds": 1.5,
                       "wall_seconds": 2.5, "preset": "course",
                       "params": count_parameters(model), "seed": 0, "device": "cpu",
                       "threads": 1, "n_train": N_TRAIN, "n_test": 60, "resumed": False})
    return run.path


@pytest.fixture(name="check_json")
def check_json_fixture(tmp_path: Path) -> Path:
    rows = [{"layer": layer, "backend": backend, "dtype": dtype, "passed": True,
             "errors": {"forward": 1e-16, "dx": 2e-16, **({"fd": 1e-9} if dtype == "float64"
                                                        else {})}}
            for backend in ("naive", "numpy") for layer in ("Conv2d", "ReLU")
            for dtype in ("float64", "float32")]
    rows[-1] = {**rows[-1], "passed": False, "errors": {"forward": 3e-3, "dx": 1e-7}}
    path = tmp_path / "check.json"
    path.write_text(json.dumps({"date": "2026-01-02T03:04:05+0000", "seed": 0,
                                "tolerance": {"float64": 1e-10, "float32": 1e-4, "fd": 1e-6},
                                "versions": {"numpy": "2.0"}, "rows": rows}))
    return path


@pytest.fixture(name="bench_json")
def bench_json_fixture(tmp_path: Path) -> Path:
    rows = [{"workload": "relu", "shape_kind": "full", "engine": engine, "shape": [128, 32, 32],
             "flops": None, "forward_ms": ms, "backward_ms": 2 * ms, "ratio": ms / 0.5}
            for engine, ms in (("numpy", 1.5), ("torch", 0.5))]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"date": "2026-02-03", "machine": {}, "rows": rows}))
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No real CIFAR-10, bench/results.json or $CIFAR10_DIR leaks in from the machine."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFAR10_DIR", raising=False)


def _pdf_pages(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    return len(re.findall(rb"/Type\s*/Page\b", data))


# A minimal reader for the PDFs that fpdf2 writes, so that tests see what a PDF viewer shows
# on a page without a PDF library among the dependencies.

@dataclass
class PdfPage:
    text: str  # the page's text runs joined by single spaces
    images: list[tuple[int, int]]  # pixel size of each image drawn on the page


def _pdf_objects(data: bytes) -> dict[int, tuple[bytes, bytes | None]]:
    """Object number -> (dictionary text, decompressed stream or None) of a PDF as fpdf2
    writes it (uncompressed object table, direct /Length values)."""
    objects, start = {}, 0
    while match := PDF_OBJECT.search(data, start):
        end, at = data.index(b"endobj", match.end()), data.find(b"stream", match.end())
        head, stream = data[match.end():end], None
        if 0 <= at < end:
            head = data[match.end():at]
            body = at + len(b"stream") + (2 if data[at + 6:at + 8] == b"\r\n" else 1)
            length = int(re.search(rb"/Length (\d+)", head)[1])
            stream = data[body:body + length]
            stream = zlib.decompress(stream) if b"/FlateDecode" in head else stream
            end = data.index(b"endobj", body + length)
        objects[int(match[1])] = (head, stream)
        start = end
    return objects


def _unescape(literal: bytes) -> bytes:
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    return re.sub(rb"\\([0-7]{1,3}|.)", lambda m: bytes([int(m[1], 8)]) if m[1].isdigit()
                  else escapes.get(m[1], m[1]), literal, flags=re.S)


def _ref(head: bytes, key: bytes) -> int:
    """The object number that the dictionary entry /key refers to."""
    return int(re.search(rb"/" + key + rb" (\d+) 0 R", head)[1])


def _read_pdf(path: Path) -> list[PdfPage]:
    """The text and images of every page, read back through each font's ToUnicode map."""
    objects = _pdf_objects(path.read_bytes())
    tree = next(head for head, _ in objects.values() if re.search(rb"/Type /Pages\b", head))
    pages = []
    for number in map(int, re.findall(rb"(\d+) 0 R", tree.split(b"/Kids", 1)[1])):
        head = objects[number][0]
        resources = objects[_ref(head, b"Resources")][0]
        fonts = {}
        for name, font in re.findall(rb"/(F\d+) (\d+) 0 R", resources):
            cmap = objects[_ref(objects[int(font)][0], b"ToUnicode")][1] or b""
            fonts[name] = {int(code, 16): chr(int(char, 16)) for code, char in
                           re.findall(rb"<([0-9A-F]{4})> <([0-9A-F]{4})>", cmap)}
        images = {name: tuple(int(re.search(rb"/" + key + rb" (\d+)", objects[int(obj)][0])[1])
                              for key in (b"Width", b"Height"))
                  for name, obj in re.findall(rb"/(I\d+) (\d+) 0 R", resources)}
        runs, drawn, font = [], [], {}
        content = objects[_ref(head, b"Contents")][1] or b""
        for op in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj|/(I\d+) Do",
                              content, flags=re.S):
            if op[1]:
                font = fonts[op[1]]
            elif op[3]:
                drawn.append(images[op[3]])
            else:
                codes = _unescape(op[2])
                runs.append("".join(font[int.from_bytes(codes[i:i + 2])]
                                    for i in range(0, len(codes), 2)))
        pages.append(PdfPage(" ".join(" ".join(runs).split()), drawn))
    return pages


def _first_section(markdown: Path) -> str:
    """The Markdown of the title and section 1, the PDF's first page."""
    return markdown.read_text().split(f"## {SECTIONS[1]}")[0]


def _figures_in(markdown: Path) -> list[Path]:
    return [markdown.parent / m for m in re.findall(r"!\[[^\]]*\]\(([^)]+)\)",
                                                    markdown.read_text())]


def _pixels(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) > 100


def test_setup_table_gathers_the_features_that_are_off_in_one_row() -> None:
    rows = settings_rows(resolve_config("fast", ["color_jitter={\"brightness\": 0.1, "
                                                 "\"contrast\": 0.2}"]))
    assert all(value != "off" for _, value, _ in rows)
    assert rows[-1] == ["Not used", "EMA of the weights, Early crops", ""]
    assert ["Colour jitter", "brightness ±0.1, contrast ±0.2",
            "per image, on the normalised pixels"] in rows
    plain = settings_rows(resolve_config("fast"))
    assert plain[-1] == ["Not used", "EMA of the weights, Early crops, Colour jitter", ""]
    assert ["Whitening-bias epochs", "0", "the whitening bias stays frozen"] in plain


def test_report_from_a_synthetic_run(run_dir: Path, data_dir: Path, check_json: Path,
                                     bench_json: Path) -> None:
    result = CliRunner().invoke(report, [str(run_dir), "--data-dir", str(data_dir),
                                         "--check-json", str(check_json),
                                         "--bench-json", str(bench_json)])
    assert result.exit_code == 0, result.output
    pdf, markdown = run_dir / "report.pdf", run_dir / "report.md"
    assert _pdf_pages(pdf) == FULL_REPORT_PAGES
    text = markdown.read_text()
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings == list(SECTIONS)
    figures = _figures_in(markdown)
    assert {p.stem for p in figures} == {"curves", "lr", "confusion", "per_class",
                                         "misclassified"}
    for path in figures:
        _assert_png(path)
    assert "Missing from this run" not in text
    assert "2026-01-02T03:04:05+0000" in text and str(check_json) in text  # names its JSON
    assert "| numpy | ReLU | float32 |" in text and "FAIL" in text and "7 of 8 rows pass" in text
    assert "2026-02-03" in text and "| relu | 128×32×32 | numpy |" in text
    assert "agrees with metrics.csv" in text and "Label smoothing 0.1." in text
    assert "BELOW the 70% bar" in text


def test_first_page_holds_the_headline_the_table_and_the_learning_curves(
        run_dir: Path, data_dir: Path) -> None:
    files = build_report(run_dir, data_dir=str(data_dir), run_check=False)
    section = _first_section(files.markdown)
    headline = ("> **Test accuracy 22.00%: BELOW the 70% bar by 48.00 pts.**\n>\n"
                "> With TTA: **23.00%** · Epochs: **3 of 3 completed** · Wall-clock: **2.5 s** · "
                "Preset: **course** · Engine: **PyTorch** · "
                "Device, processes × threads: **cpu, 1 process × 1 thread**\n>\n"
                "> *Accuracy of the model after the last epoch on the test set, without and with "
                "test-time augmentation (TTA); the 70% bar applies to the accuracy without TTA. "
                "Source: summary.json.*")
    assert section.index("## 1. Summary") < section.index(headline) \
        < section.index("| Test accuracy, no TTA |") < section.index("![curves]")
    curves = files.markdown.parent / "report-figures" / "curves.png"
    assert curves in _figures_in(files.markdown) and "Figure 1. Learning curves" in section

    pages = _read_pdf(files.pdf)
    first = pages[0].text
    for text in ("1. Summary", "Test accuracy 22.00%: BELOW the 70% bar by 48.00 pts.",
                 "With TTA Epochs Wall-clock 23.00% 3 of 3 completed 2.5 s",
                 "Preset Engine Device, processes × threads course PyTorch cpu, 1 process × 1 "
                 "thread", "the model after the last epoch",
                 "Test accuracy, no TTA 22.00%: BELOW the 70% bar by 48.00 pts summary.json",
                 "Figure 1. Learning curves."):
        assert text in first, text
    assert first.index("BELOW the 70% bar by 48.00 pts.") < first.index("Item Value Source") \
        < first.index("Figure 1. Learning curves.")
    drawn = [size for page in pages for size in page.images]
    assert drawn == [_pixels(path) for path in _figures_in(files.markdown)]  # each once, in order
    assert pages[0].images == [_pixels(curves)]  # so page 1 shows the curves and nothing else
    assert SECTIONS[1] not in first and pages[1].text.startswith(SECTIONS[1])


def test_first_page_without_metrics_keeps_the_headline_and_says_there_are_no_curves(
        run_dir: Path, data_dir: Path) -> None:
    (run_dir / "metrics.csv").unlink()
    files = build_report(run_dir, data_dir=str(data_dir), run_check=False)
    section = _first_section(files.markdown)
    assert "> **Test accuracy 22.00%: BELOW the 70% bar by 48.00 pts.**" in section
    assert "Epochs: **3 of 3 completed**" in section  # from last.pt
    assert "No learning curves: metrics.csv is missing or empty" in section
    assert "![curves]" not in files.markdown.read_text()
    first = _read_pdf(files.pdf)[0]
    assert "Test accuracy 22.00%: BELOW the 70% bar by 48.00 pts." in first.text
    assert "No learning curves" in first.text and first.images == []


def test_headline_without_summary_or_checkpoint_names_the_epoch_its_accuracy_is_from(
        run_dir: Path, data_dir: Path) -> None:
    for name in ("summary.json", "model.pt", "last.pt"):
        (run_dir / name).unlink()
    files = build_report(run_dir, data_dir=str(data_dir), run_check=False)
    section = _first_section(files.markdown)
    assert "> **Test accuracy 22.00%: BELOW the 70% bar by 48.00 pts.**" in section
    assert "With TTA: **unknown**" in section and "Wall-clock: **1.5 s in training epochs**" \
        in section and "Device, processes × threads: **cpu, 1 thread requested**" in section
    assert "Accuracy of the model after epoch 3 on the test set; the 70% bar applies to the " \
        "accuracy without TTA. Source: metrics.csv, epoch 3." in section
    curves = files.markdown.parent / "report-figures" / "curves.png"
    first = _read_pdf(files.pdf)[0]  # under a four-item list of what is missing
    assert first.images == [_pixels(curves)] and "each curve's last value." in first.text


def test_run_dir_with_missing_files_states_what_is_missing(run_dir: Path, data_dir: Path
                                                           ) -> None:
    for name in ("metrics.csv", "summary.json", "model.pt"):
        (run_dir / name).unlink()
    state = torch.load(run_dir / "last.pt", weights_only=True)
    RunDir(run_dir).save_last({**state, "epoch": EPOCHS - 1})  # cut short after epoch 2
    files = build_report(run_dir, data_dir=str(data_dir), run_check=False)
    text = files.markdown.read_text()
    assert "| Epochs | 2 of 3 completed | last.pt |" in text
    assert "The run stopped early: 1 planned epoch did not run." in text
    for statement in ("metrics.csv is missing", "summary.json is missing",
                      "model.pt is missing", "last completed epoch's weights from last.pt",
                      "PyNet checker results: not run", "bench/results.json does not exist",
                      "no per-epoch loss and accuracy curves"):
        assert statement in text, statement
    assert "recomputed now from last.pt" in text  # accuracy, with and without TTA
    assert "Accuracy of the model after the last completed epoch" in text
    assert {p.stem for p in _figures_in(files.markdown)} == {"lr", "confusion", "per_class",
                                                             "misclassified"}
    assert "per-epoch lr" not in text and "full 50,000-image training set (assumed)" in text
    assert _pdf_pages(files.pdf) == files.pages


def test_empty_run_dir_and_missing_data_still_give_a_report(tmp_path: Path, run_dir: Path
                                                            ) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    files = build_report(empty, run_check=False)
    text = files.markdown.read_text()
    assert "config.json is missing" in text and "Neither model.pt nor last.pt" in text
    assert re.findall(r"^## (.+)$", text, flags=re.M) == list(SECTIONS)
    assert files.figures == [] and _pdf_pages(files.pdf) == len(SECTIONS)
    assert "> **Test accuracy unknown.**" in _first_section(files.markdown)
    assert "Test accuracy unknown." in _read_pdf(files.pdf)[0].text

    shutil.rmtree(tmp_path / "data")  # the run's config points here
    files = build_report(run_dir, run_check=False)
    assert "CIFAR-10 test set" in files.markdown.read_text() and "Pass --data-dir" in \
        files.markdown.read_text()
    assert "confusion" not in {p.stem for p in files.figures}


def test_checker_runs_at_report_time_by_default(run_dir: Path, data_dir: Path,
                                                check_json: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    rows = json.loads(check_json.read_text())["rows"]
    calls = []
    monkeypatch.setattr("backends.check.run_checks", lambda *args: calls.append(args) or rows)
    out = run_dir / "out" / "r.pdf"
    files = build_report(run_dir, out, str(data_dir))
    assert files.pdf == out and files.markdown == out.with_suffix(".md")
    assert calls and "Run in-process at report time" in files.markdown.read_text()
    assert all(p.parent.name == "r-figures" for p in files.figures)


@pytest.mark.parametrize("content", ["not json", '{"rows": []}', '{"rows": [{"layer": 1}]}'])
def test_unusable_check_json_is_a_one_line_error_naming_it(run_dir: Path, tmp_path: Path,
                                                           content: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = CliRunner().invoke(report, [str(run_dir), "--check-json", str(bad)])
    assert result.exit_code == 1 and result.output.startswith("Error: ")
    assert "bad.json" in result.output and "pynet-check" in result.output
    assert result.output.count("\n") == 1 and not (run_dir / "report.pdf").exists()


def test_architecture_table_counts_parameters_and_flops() -> None:
    arch = describe_config(TINY_MODEL)
    assert arch.params == count_parameters(build_model(TINY_MODEL)) == arch.trainable
    convs = 2 * (4 * 32 * 32 * 3 * 9 + 8 * 16 * 16 * 4 * 9 + 8 * 8 * 8 * 8 * 9)
    assert arch.flops == convs + 2 * (16 * 128 + 10 * 16)
    assert [layer.output_shape for layer in arch.layers][-1] == (10,)
    assert arch.layers[0].kind == "Conv2d" and arch.layers[0].output_shape == (4, 32, 32)


def test_lr_curve_is_rebuilt_per_step_and_checked_against_metrics(data_dir: Path) -> None:
    config = _config(data_dir)
    metrics = _metrics(config)
    curve = lr_curve(config, {"n_train": N_TRAIN}, metrics)
    assert curve.per_step and len(curve.lrs) == 4 * EPOCHS and curve.steps_per_epoch == 4
    assert max(curve.lrs) == pytest.approx(config["lr"]) and "agrees" in curve.source
    other = [{**row, "lr": 2 * row["lr"]} for row in metrics]
    assert "NOT agree" in lr_curve(config, {"n_train": N_TRAIN}, other).source
    fallback = lr_curve(None, None, metrics)
    assert not fallback.per_step and fallback.steps == [1, 2, 3]


def test_report_on_a_trained_airnet_run_reproduces_its_accuracy(
        trained_run: Path, shared_cifar_root: Path, tmp_path: Path) -> None:
    run = shutil.copytree(trained_run, tmp_path / "airnet")
    files = build_report(run, data_dir=str(shared_cifar_root), run_check=False)
    summary = json.loads((run / "summary.json").read_text())
    text = files.markdown.read_text()
    accuracy = f"{100 * summary['test_accuracy']:.2f}%"
    assert f"accuracy {accuracy} (summary.json: {accuracy})" in text
    assert "Whitening stem" in text and "Lookahead: every 5 steps" in text
    assert "| whiten | Conv2d | 3→24, 2×2, weight frozen |" in text


def test_corrupt_run_files_are_reported_as_unreadable(run_dir: Path, data_dir: Path) -> None:
    (run_dir / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage")
    (run_dir / "summary.json").write_text("{not json")
    (run_dir / "config.json").write_text("[1, 2]")
    files = build_report(run_dir, data_dir=str(data_dir), run_check=False)
    text = files.markdown.read_text()
    assert "metrics.csv is unreadable" in text and "summary.json is unreadable" in text
    assert "config.json holds a list, expected an object" in text
    assert "Every entry of model.pt" in text  # the settings come from the checkpoint instead
    assert _pdf_pages(files.pdf) == files.pages


@pytest.mark.parametrize("tested, says", [
    ((1, 2, 3), "Test: the model after each epoch, without TTA"),
    ((3,), "Test: the model after epoch 3 only (the run's eval_every), without TTA"),
    ((2, 3), "Test: the model after epochs 2, 3 only (the run's eval_every), without TTA"),
    ((), "Test: none (the run evaluated no epoch), without TTA"),
], ids=["every-epoch", "last-only", "some", "none"])
def test_learning_curves_caption_says_after_which_epochs_the_test_set_was_evaluated(
        tested: tuple[int, ...], says: str) -> None:
    metrics = [{"epoch": float(epoch), "train_loss": 1.0,
                "test_acc": 0.5 if epoch in tested else None} for epoch in (1, 2, 3)]
    assert curves_caption(metrics).startswith(f"Learning curves. {says}; dashed: the 70% bar.")
