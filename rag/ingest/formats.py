"""Reading the formats that are not plain UTF-8 text: PDF pages, DOCX paragraphs, and text
in a legacy encoding. Pure functions of a file's bytes; a file that cannot be read raises
`Unreadable` with a reason the loader counts (`rag index` prints them).

PDF text comes from pypdf (eval/README.md, "PDF text": it read a real PDF's order better
than pdfminer.six, 2-10x faster, BSD-licensed, no dependencies). Lines repeated at the top or
bottom of pages (running headers, footers, page numbers) are dropped, and lines wrapped at
the right margin are joined again, so that sentences are whole.
"""

from __future__ import annotations

import codecs
import io
import logging
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

logger = logging.getLogger(__name__)


class SkipReason(StrEnum):
    """Why a file was not indexed (the `rag index` summary counts files by these)."""

    UNSUPPORTED = "unsupported file type"
    TOO_LARGE = "over the size limit"
    UNREADABLE = "unreadable"
    BINARY = "binary content"
    ENCODING = "unknown text encoding"
    MALFORMED = "malformed file"
    ENCRYPTED = "encrypted"
    NO_TEXT_LAYER = "no text layer"
    EMPTY = "no text after cleaning"
    OUTSIDE = "links outside the folder"
    DUPLICATE_ID = "document id already taken"


class Unreadable(ValueError):
    """A file that cannot become documents; `reason` says why, the message says more."""

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ---- text in any encoding -------------------------------------------------------------------

_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def decode_text(raw: bytes, name: str) -> str:
    """A text file's content: UTF-8, else the encoding charset-normalizer detects (logged).
    Binary content raises Unreadable."""
    bom = raw.startswith(_BOMS)
    if not bom and b"\x00" in raw[:8192]:
        raise Unreadable(SkipReason.BINARY, "binary content")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    encoding, text = detect_encoding(raw, bom=bom)
    logger.info("%s is not UTF-8: decoded as %s", name, encoding)
    return text


def detect_encoding(raw: bytes, *, bom: bool = False) -> tuple[str, str]:
    """(encoding, text) of bytes that are not UTF-8. charset-normalizer's choice, except that
    Windows-1252 (Latin-1's superset, the commonest legacy encoding) wins a tie: the
    detector ranks Western single-byte code pages that fit equally well in no useful order
    (French Latin-1 came out as Windows-1250: "à Genève" read "ŕ Genčve")."""
    from charset_normalizer import from_bytes

    matches = [m for m in from_bytes(raw) if bom or not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        raise Unreadable(SkipReason.ENCODING, "not UTF-8, and no other text encoding fits")
    best = matches[0]
    western = from_bytes(raw, cp_isolation=["cp1252"]).best()
    if western is not None and western.chaos <= best.chaos and western.coherence >= best.coherence:
        best = western
    return best.encoding, str(best)


# ---- PDF ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PdfText:
    pages: list[str]  # each page's text: furniture dropped, wrapped lines joined
    title: str | None  # from the document's properties
    date: str | None  # ISO date the document's properties give (creation)


def read_pdf(raw: bytes) -> PdfText:
    """The text of each page of a PDF. Raises Unreadable for a broken or encrypted file, and
    for one whose pages hold no text (a scan)."""
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not _decrypts(reader):
            raise Unreadable(SkipReason.ENCRYPTED, "an encrypted PDF (it needs a password)")
        texts = [page.extract_text() or "" for page in reader.pages]
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many types (and RecursionError) for broken files
        raise Unreadable(SkipReason.MALFORMED, f"not a readable PDF ({_short(exc)})") from None
    if not texts:
        raise Unreadable(SkipReason.MALFORMED, "a PDF with no pages")
    if not any(t.strip() for t in texts):
        raise Unreadable(
            SkipReason.NO_TEXT_LAYER,
            f"no text layer in {len(texts)} page(s): a scan? (OCR it first, e.g. with ocrmypdf)",
        )
    title, date = _pdf_properties(reader)
    pages = [reflow(t) for t in strip_running_lines(texts)]
    return PdfText(pages=pages, title=title, date=date)


def _decrypts(reader) -> bool:
    """Whether an encrypted PDF opens with the empty password (many are only restricted)."""
    try:
        return bool(reader.decrypt(""))
    except Exception:  # a missing AES backend, an unknown scheme
        return False


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__


_JUNK_TITLE_RE = re.compile(r"^(untitled|microsoft word - .*|.*\.(docx?|pdf|tex|dvi))$", re.I)


def _pdf_properties(reader) -> tuple[str | None, str | None]:
    try:
        meta = reader.metadata
        title = (meta.title or "").strip() if meta else ""
        created = meta.creation_date if meta else None
    except Exception:  # a malformed info dictionary or date string: no properties
        return None, None
    if not title or _JUNK_TITLE_RE.match(title) or not re.search(r"\w", title):
        title = ""
    date = created.date().isoformat() if isinstance(created, datetime) else None
    return title or None, date


_EDGE_LINES = 3  # lines at the top and the bottom of a page that may be furniture
_PAGE_NUMBER_RE = re.compile(r"^(page\s+)?(#|[ivxlc]+)(\s*(of|/)\s*#)?$", re.I)


def _edge_key(line: str) -> str:
    """A line as compared across pages: digits stand for any number ("Page 3" ~ "Page 4")."""
    return re.sub(r"\d+", "#", " ".join(line.split())).lower()


def strip_running_lines(pages: list[str]) -> list[str]:
    """Drop running headers and footers: a line among the first or last few of a page that
    recurs at the same edge of other pages (3 of them, or 2 in a document of 2-4 pages), and
    bare page numbers at an edge. A one-page document is left as it is."""
    if len(pages) < 2:
        return pages
    need = 2 if len(pages) <= 4 else 3
    lines = [[line for line in p.splitlines() if line.strip()] for p in pages]
    top: Counter[str] = Counter()
    bottom: Counter[str] = Counter()
    for page in lines:
        top.update({_edge_key(line) for line in page[:_EDGE_LINES]})
        bottom.update({_edge_key(line) for line in page[-_EDGE_LINES:]})

    def furniture(line: str, counts: Counter[str]) -> bool:
        key = _edge_key(line)
        return counts[key] >= need or bool(_PAGE_NUMBER_RE.match(key))

    out = []
    for page in lines:
        first, last = 0, len(page)
        while first < min(_EDGE_LINES, last) and furniture(page[first], top):
            first += 1
        while last > max(first, len(page) - _EDGE_LINES) and furniture(page[last - 1], bottom):
            last -= 1
        out.append("\n".join(page[first:last]))
    return out


_ENDS_SENTENCE_RE = re.compile(r"[.!?:;…][\"'”’)\]]*$")


def reflow(text: str) -> str:
    """Join the lines of a page that were wrapped at the right margin (a line nearly as long
    as the page's full lines, not ending a sentence), and words hyphenated there ("ex-" +
    "traction"). Short lines (headings, a paragraph's last line, list items) stay lines."""
    lines = [line.strip() for line in text.splitlines()]
    lengths = sorted(len(line) for line in lines if line)
    if not lengths:
        return ""
    full = lengths[int(0.8 * (len(lengths) - 1))]
    out: list[str] = []
    for line in lines:
        if not line:
            out.append("")
            continue
        prev = out[-1] if out else ""
        if prev and len(prev) >= 0.7 * full and not _ENDS_SENTENCE_RE.search(prev):
            if re.search(r"[^\W\d_]-$", prev) and line[:1].islower():
                out[-1] = prev[:-1] + line
            else:
                out[-1] = f"{prev} {line}"
        else:
            out.append(line)
    return "\n".join(out)


def join_pages(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    """One text from cleaned pages, and the offset where each page starts. A page that ends
    mid-sentence runs on into the next one when it starts in lower case (one sentence across
    the break; a word hyphenated there is joined); other pages are paragraphs apart."""
    text = ""
    starts: list[int] = []
    for page in pages:
        if text and page:
            if re.search(r"[^\W\d_]-$", text) and page[:1].islower():
                text = text[:-1]
            elif not _ENDS_SENTENCE_RE.search(text) and page[:1].islower():
                text += " "
            else:
                text += "\n\n"
        starts.append(len(text))
        text += page
    return text, tuple(starts)


# ---- DOCX -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocxText:
    paragraphs: list[str]  # body paragraphs and headings, in order; table rows as lines
    title: str | None  # the properties' title, else the Title paragraph, else the 1st heading
    date: str | None  # ISO date the properties give (creation)


# python-docx's blank template carries this creation time: not a document's own date
_TEMPLATE_CREATED = datetime(2013, 12, 23, 23, 15)


def read_docx(raw: bytes) -> DocxText:
    """A Word document's paragraphs in order (headings as paragraphs of their own, each
    table row as one line), its title and its date. Raises Unreadable when broken."""
    import docx
    from docx.table import Table

    try:
        document = docx.Document(io.BytesIO(raw))
        props = document.core_properties
        prop_title = (props.title or "").strip()
        created = props.created
        title_style: str | None = None
        first_heading: str | None = None
        paragraphs: list[str] = []
        for block in document.iter_inner_content():
            if isinstance(block, Table):
                for row in block.rows:
                    cells = [c.text.strip() for c in row.cells]
                    if any(cells):
                        paragraphs.append(" | ".join(_unique_cells(cells)))
                continue
            text = block.text.strip()
            if not text:
                continue
            style = (getattr(block.style, "name", "") or "").lower()
            if style == "title" and title_style is None:
                title_style = text  # the document's title: shown as its title, not as text
                continue
            if style.startswith("heading") and first_heading is None:
                first_heading = text
            paragraphs.append(text)
    except Exception as exc:  # a broken zip or XML: python-docx raises several types
        raise Unreadable(SkipReason.MALFORMED, f"not a readable DOCX ({_short(exc)})") from None
    date = None
    if isinstance(created, datetime) and created.replace(tzinfo=None) != _TEMPLATE_CREATED:
        date = created.date().isoformat()
    title = prop_title or title_style or first_heading
    return DocxText(paragraphs=paragraphs, title=title, date=date)


def _unique_cells(cells: list[str]) -> list[str]:
    """A row's cells, merged cells (python-docx repeats them) once."""
    out: list[str] = []
    for cell in cells:
        if not out or cell != out[-1]:
            out.append(cell)
    return out
