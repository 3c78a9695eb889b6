"""The report as a list of blocks, and the two writers that render it: Markdown and PDF.

Both formats come from the same blocks, so they always hold the same sections, tables and
figures. The PDF uses fpdf2 with the DejaVu fonts that ship with matplotlib (full Unicode).
Each numbered section starts on a new A4 page; figures are placed at their drawn size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from fpdf import FPDF, FontFace
from PIL import Image as PILImage

from cifar.report.figures import FigureFile
from spec.files import atomic_write


@dataclass
class Title:
    text: str
    subtitle: str


@dataclass
class Heading:
    text: str
    level: int = 1


@dataclass
class Paragraph:
    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    """A table; `align` holds one of L/R/C per column, `widths` relative column widths."""

    header: list[str] | None
    rows: list[list[str]]
    widths: list[float]
    align: str
    font_size: float = 8.5
    verdict_column: int | None = None
    padding: float = 0.9


@dataclass
class Figure:
    figure: FigureFile


@dataclass
class Notice:
    """A highlighted box, used for what is missing from the run."""

    title: str
    items: list[str] = field(default_factory=list)


@dataclass
class Headline:
    """The run's result in one sentence, its key facts as (label, value) pairs (the PDF sets
    them in rows of three) and a note on what was measured; boxed, and coloured by whether the
    result meets the bar (None: unknown)."""

    result: str
    facts: list[tuple[str, str]]
    note: str
    meets_bar: bool | None


Block = Title | Heading | Paragraph | Bullets | Table | Figure | Notice | Headline


# ---- Markdown -------------------------------------------------------------------------------

def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block], folder: Path) -> str:
    """Markdown text of `blocks`; figure paths are relative to `folder` (where it is saved)."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Title):
            out += [f"# {block.text}", "", block.subtitle]
        elif isinstance(block, Heading):
            out.append("#" * (block.level + 1) + " " + block.text)
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            header = block.header or [""] * len(block.widths)
            rule = {"L": "---", "R": "---:", "C": ":---:"}
            lines = ["| " + " | ".join(map(_md_cell, header)) + " |",
                     "|" + "|".join(rule[a] for a in block.align) + "|"]
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Figure):
            rel = Path(os.path.relpath(block.figure.path, folder)).as_posix()
            out.append(f"![{block.figure.name}]({rel})\n\n*{block.figure.caption}*")
        elif isinstance(block, Notice):
            out.append("\n".join([f"> **{block.title}**", ">",
                                  *(f"> - {item}" for item in block.items)]))
        elif isinstance(block, Headline):
            facts = " · ".join(f"{label}: **{value}**" for label, value in block.facts)
            out.append("\n".join([f"> **{block.result}**", ">", f"> {facts}", ">",
                                  f"> *{block.note}*"]))
        out.append("")
    return "\n".join(out)


# ---- PDF ------------------------------------------------------------------------------------

FONT = "DejaVu"
MONO = "DejaVuMono"
BODY_PT = 10
LINE_MM = 5.0
ROW_FILL = (243, 245, 249)
VERDICT_COLOURS = {"PASS": (20, 120, 40), "FAIL": (190, 20, 20)}
HEADLINE_COLOURS = {True: ((231, 244, 234), VERDICT_COLOURS["PASS"]),  # (fill, left rule)
                    False: ((251, 231, 231), VERDICT_COLOURS["FAIL"]),
                    None: ((238, 238, 238), (130, 130, 130))}
HEADLINE_COLUMNS = 3


def _plain(text: str) -> str:
    """Text for the PDF: Markdown code ticks and bold markers dropped."""
    return text.replace("`", "").replace("**", "")


class _Document(FPDF):
    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        import matplotlib

        fonts = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        self.add_font(FONT, "", fonts / "DejaVuSans.ttf")
        self.add_font(FONT, "B", fonts / "DejaVuSans-Bold.ttf")
        self.add_font(FONT, "I", fonts / "DejaVuSans-Oblique.ttf")
        self.add_font(MONO, "", fonts / "DejaVuSansMono.ttf")
        self.doc_title = title
        self.set_margins(18, 16, 18)
        self.set_auto_page_break(True, margin=16)
        self.set_title(title)
        self.set_creator("python -m cifar report")
        self.sections = 0

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font(FONT, size=7.5)
        self.set_text_color(120)
        self.cell(0, 4, f"{self.doc_title}  ·  page {self.page_no()} of {{nb}}", align="C")
        self.set_text_color(0)

    def space_left(self) -> float:
        return self.page_break_trigger - self.get_y()

    def text_block(self, text: str, size: float = BODY_PT, style: str = "",
                   indent: float = 0.0) -> None:
        self.set_font(FONT, style, size)
        self.set_x(self.l_margin + indent)
        self.multi_cell(self.epw - indent, size * 0.5, _plain(text), align="L",
                        new_x="LMARGIN", new_y="NEXT")


def _pdf_title(pdf: _Document, block: Title) -> None:
    pdf.set_font(FONT, "B", 18)
    pdf.multi_cell(0, 9, block.text, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(90)
    pdf.text_block(block.subtitle, size=8.5)
    pdf.set_text_color(0)
    pdf.ln(3)


def _figure_size(pdf: _Document, figure: FigureFile) -> tuple[float, float]:
    """Width and height in mm: the drawn size, shrunk to the text width if wider."""
    with PILImage.open(figure.path) as image:
        px_w, px_h = image.size
    width = min(figure.width_in * 25.4, pdf.epw)
    return width, width * px_h / px_w


def _pdf_heading(pdf: _Document, block: Heading, keep: float = 45) -> None:
    """A heading; level 1 opens a page, level 2 moves on when `keep` mm would not follow."""
    if block.level == 1:
        if pdf.sections:
            pdf.add_page()
        pdf.sections += 1
        pdf.ln(1)
        pdf.set_font(FONT, "B", 14)
        pdf.multi_cell(0, 8, block.text, new_x="LMARGIN", new_y="NEXT")
        pdf.set_draw_color(170)
        pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + pdf.epw, pdf.get_y())
        pdf.ln(2.5)
        return
    if pdf.space_left() < keep + 12:
        pdf.add_page()
    pdf.ln(2)
    pdf.set_font(FONT, "B", 11.5)
    pdf.multi_cell(0, 6.5, block.text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(1)


def _pdf_table(pdf: _Document, block: Table) -> None:
    total = sum(block.widths)
    widths = [pdf.epw * w / total for w in block.widths]
    align = {"L": "LEFT", "R": "RIGHT", "C": "CENTER"}
    if pdf.space_left() < 25:
        pdf.add_page()
    pdf.set_font(FONT, size=block.font_size)
    pdf.set_fill_color(*ROW_FILL)  # fpdf2 fills the banded rows with the current fill colour
    rows = ([block.header] if block.header else []) + block.rows
    with pdf.table(col_widths=widths, width=pdf.epw, text_align=[align[a] for a in block.align],
                   first_row_as_headings=bool(block.header), line_height=block.font_size * 0.47,
                   headings_style=FontFace(emphasis="BOLD", fill_color=(222, 228, 240)),
                   cell_fill_color=ROW_FILL, cell_fill_mode="ROWS",
                   borders_layout="HORIZONTAL_LINES", padding=(block.padding, 1.2),
                   v_align="MIDDLE") as table:
        for row in rows:
            cells = table.row()
            for i, text in enumerate(row):
                colour = VERDICT_COLOURS.get(text) if i == block.verdict_column else None
                style = FontFace(emphasis="BOLD", color=colour) if colour else None
                cells.cell(_plain(str(text)), style=style)
    pdf.ln(3)


def _pdf_figure(pdf: _Document, block: Figure) -> None:
    """The figure at its drawn size, centred, with its caption; both on one page."""
    figure = block.figure
    width, height = _figure_size(pdf, figure)
    pdf.set_font(FONT, "I", 8.5)
    caption = pdf.multi_cell(0, 4.2, _plain(figure.caption), align="C", dry_run=True,
                             output="HEIGHT")
    if pdf.space_left() < height + 1 + caption:
        pdf.add_page()
    y = pdf.get_y()
    pdf.image(str(figure.path), x=pdf.l_margin + (pdf.epw - width) / 2, y=y, w=width, h=height)
    pdf.set_y(y + height + 1)
    pdf.set_text_color(70)
    pdf.multi_cell(0, 4.2, _plain(figure.caption), align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.ln(4)


def _pdf_notice(pdf: _Document, block: Notice) -> None:
    pdf.set_fill_color(255, 243, 214)
    pdf.set_font(FONT, "B", 9.5)
    pdf.multi_cell(0, 5.5, _plain(block.title), fill=True, padding=(1.5, 3, 0.5, 3),
                   align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    for item in block.items:
        pdf.multi_cell(0, 4.6, "•  " + _plain(item), fill=True, padding=(0.6, 3, 0.6, 6),
                       align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.set_fill_color(255)
    pdf.ln(4)


def _pdf_headline(pdf: _Document, block: Headline) -> None:
    """A filled box with a coloured rule on its left: the result in large bold type, the facts
    as labelled values in rows of three, and the note in small italics."""
    fill, rule = HEADLINE_COLOURS[block.meets_bar]
    label_face = FontFace(color=100, size_pt=7.5)
    value_face = FontFace(emphasis="BOLD", size_pt=9.5)
    top = pdf.get_y()
    pdf.set_fill_color(*fill)
    pdf.set_font(FONT, "B", 12.5)
    pdf.multi_cell(0, 6.2, _plain(block.result), fill=True, padding=(2.5, 3, 1.5, 5),
                   align="L", new_x="LMARGIN", new_y="NEXT")
    rows = [block.facts[i:i + HEADLINE_COLUMNS]
            for i in range(0, len(block.facts), HEADLINE_COLUMNS)]
    widths = [0.0] * HEADLINE_COLUMNS
    for row in rows:
        for column, (label, value) in enumerate(row):
            pdf.set_font(FONT, size=label_face.size_pt)
            label_width = pdf.get_string_width(label)
            pdf.set_font(FONT, "B", value_face.size_pt)
            widths[column] = max(widths[column], label_width,
                                 pdf.get_string_width(_plain(value)))
    with pdf.table(col_widths=[w + 8 for w in widths], width=pdf.epw, text_align="LEFT",
                   line_height=4.4, first_row_as_headings=False, borders_layout="NONE",
                   cell_fill_color=fill, cell_fill_mode="ALL",
                   padding=(0.3, 1.2, 0.3, 4.2)) as table:
        for row in rows:
            for face, part in ((label_face, 0), (value_face, 1)):
                cells = table.row()
                for fact in row:
                    cells.cell(_plain(fact[part]), style=face)
    pdf.set_text_color(70)
    pdf.set_font(FONT, "I", 8.5)
    pdf.multi_cell(0, 4.2, _plain(block.note), fill=True, padding=(1.5, 3, 2, 5), align="L",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0)
    pdf.set_fill_color(*rule)
    pdf.rect(pdf.l_margin, top, 1.6, pdf.get_y() - top, style="F")
    pdf.set_fill_color(255)
    pdf.ln(4)


def write_pdf(blocks: list[Block], path: Path, title: str) -> int:
    """Render `blocks` to an A4 PDF at `path`; return its number of pages."""
    pdf = _Document(title)
    pdf.add_page()
    for i, block in enumerate(blocks):
        if isinstance(block, Title):
            _pdf_title(pdf, block)
        elif isinstance(block, Heading):
            after = blocks[i + 1] if i + 1 < len(blocks) else None
            keep = _figure_size(pdf, after.figure)[1] + 10 if isinstance(after, Figure) else 30
            _pdf_heading(pdf, block, keep)
        elif isinstance(block, Paragraph):
            pdf.text_block(block.text)
            pdf.ln(2)
        elif isinstance(block, Bullets):
            for item in block.items:
                pdf.set_font(FONT, size=BODY_PT)
                pdf.set_x(pdf.l_margin + 2)
                pdf.cell(4, LINE_MM, "•")
                pdf.text_block(item, indent=6)
                pdf.ln(0.8)
            pdf.ln(1.5)
        elif isinstance(block, Table):
            _pdf_table(pdf, block)
        elif isinstance(block, Figure):
            _pdf_figure(pdf, block)
        elif isinstance(block, Notice):
            _pdf_notice(pdf, block)
        elif isinstance(block, Headline):
            _pdf_headline(pdf, block)
    with atomic_write(path) as f:
        f.write(pdf.output())
    return pdf.pages_count
