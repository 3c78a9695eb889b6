"""The run report: `python -m cifar report RUN_DIR` writes report.pdf and report.md.

`collect` reads the run directory, the test set and the checker and benchmark JSON;
`architecture` and `training` describe the model and its setup; `figures` draws the graphs;
`content` turns it all into document blocks (`summary` builds section 1, the first page:
headline, summary table and learning curves), which `document` renders as Markdown and PDF.
Heavy imports (matplotlib, fpdf2) happen only when a report is built.
"""

from cifar.report.command import ReportFiles, build_report, report

__all__ = ["ReportFiles", "build_report", "report"]
