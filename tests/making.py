"""Real PDF and DOCX files made inside the tests (fpdf2, python-docx): nothing binary is
committed. Each maker returns the file's bytes and can write them to a path."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

# A two-page report whose answer (the tonnage shipped to Marlow) is on page 2 only.
QUARRY_TITLE = "The Valley Quarry Report"
QUARRY_HEADER = "Quarry Gazette - Spring Edition"
QUARRY_PAGES = [
    [
        "The valley quarry opened in 1998 and has employed workers from the three villages "
        "along the river ever since. Its owners reinvested their profits into roads, schools "
        "and a small clinic.",
        "During the first year of the contract the quarry cut stone only for local builders, "
        "who used it for bridges, walls and the new town hall in the market square.",
    ],
    [
        "In the second year of the contract, the quarry shipped 48,000 tonnes of granite to "
        "the coastal port of Marlow, where it was loaded onto barges bound for the capital.",
        "Engineers expect the output to grow once the railway spur to the port opens next "
        "spring, which would take most of the lorries off the valley road.",
    ],
]
QUARRY_QUESTION = "How many tonnes of granite did the quarry ship to the port of Marlow?"
QUARRY_ANSWER_SENTENCE = "the quarry shipped 48,000 tonnes of granite"


def pdf_bytes(
    pages: list[list[str]],
    *,
    title: str | None = None,
    header: str | None = None,
    page_numbers: bool = False,
) -> bytes:
    """A text PDF: each page's paragraphs wrapped at the margin (as a word processor
    would), with a running header and "Page N" footers when asked."""
    from fpdf import FPDF

    class Report(FPDF):
        def header(self) -> None:
            if header:
                self.set_font("Helvetica", size=9)
                self.cell(0, 8, header)
                self.ln(12)

        def footer(self) -> None:
            if page_numbers:
                self.set_y(-15)
                self.set_font("Helvetica", size=9)
                self.cell(0, 8, f"Page {self.page_no()}")

    pdf = Report(format="A4")
    if title:
        pdf.set_title(title)
    for paragraphs in pages:
        pdf.add_page()
        pdf.set_font("Helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(4)
    return bytes(pdf.output())


def scan_pdf_bytes(n_pages: int = 2) -> bytes:
    """A PDF like a scan: each page one picture of text, no text layer."""
    from fpdf import FPDF
    from PIL import Image, ImageDraw

    pdf = FPDF(format="A4")
    for n in range(n_pages):
        image = Image.new("L", (600, 800), 255)
        draw = ImageDraw.Draw(image)
        for line in range(20):
            draw.text((40, 40 + line * 30), f"Scanned page {n + 1}, line {line + 1}", fill=0)
        pdf.add_page()
        pdf.image(image, x=10, y=10, w=190)
    return bytes(pdf.output())


def docx_bytes(
    blocks: list[tuple[str, str]],
    *,
    title: str | None = None,
    created: datetime | None = None,
    table: list[list[str]] | None = None,
) -> bytes:
    """A Word document of (style, text) blocks: style "title", "h1", "h2" or "p"; the title
    and creation date set in its properties when given, and a table at the end."""
    import io

    import docx

    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    if created is not None:
        document.core_properties.created = created
    for style, text in blocks:
        if style == "title":
            document.add_heading(text, level=0)
        elif style.startswith("h"):
            document.add_heading(text, level=int(style[1:]))
        else:
            document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def quarry_pdf() -> bytes:
    return pdf_bytes(QUARRY_PAGES, title=QUARRY_TITLE, header=QUARRY_HEADER, page_numbers=True)
