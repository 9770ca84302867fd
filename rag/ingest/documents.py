"""Load a folder of articles (.txt, .md, .html/.htm, .jsonl, .pdf, .docx) into cleaned
documents. A file that cannot be read is skipped with a warning and a `Skipped` record of
why (rag.ingest.formats.SkipReason), which `rag index` counts."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from index.records import Document
from rag.ingest.cleaning import clean_article, clean_body, fallback_title, parse_date
from rag.ingest.formats import SkipReason, Unreadable, decode_text, join_pages, read_docx, read_pdf

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".html", ".htm", ".jsonl"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".pdf", ".docx"}


class EmptyCorpus(ValueError):
    """A folder yielded no documents."""


class CorpusError(ValueError):
    """A corpus folder that cannot be read at all."""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file (or a document in one) that was not indexed, and why."""

    path: str  # relative to the corpus folder
    reason: SkipReason
    detail: str


def skipped_counts(skipped: Iterable[Skipped]) -> dict[str, int]:
    """How many files were skipped for each reason, most frequent first (ties by name)."""
    counts = Counter(s.reason.value for s in skipped)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def load_corpus(
    directory: Path, *, max_file_bytes: int = 20_000_000, skipped: list[Skipped] | None = None
) -> list[Document]:
    """Every supported file under `directory` (recursively), cleaned. Files that cannot be
    read are skipped with a warning naming them (and added to `skipped`); no document at
    all is an error."""
    return list(iter_corpus(directory, max_file_bytes=max_file_bytes, skipped=skipped))


def iter_corpus(
    directory: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = 20_000_000,
    skipped: list[Skipped] | None = None,
) -> Iterator[Document]:
    """`load_corpus`, one document at a time (for streaming ingestion): only the ids seen
    are kept in memory. No document at all raises EmptyCorpus once the folder is read.
    `skipped` receives each skipped file as it is met. `root`: the corpus folder that ids
    and sources are relative to, and that files may not link out of (default `directory`;
    a sub-folder read on its own keeps the ids its corpus gives it)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CorpusError(f"{directory} is not a folder")
    base = directory if root is None else Path(root)
    skipped = [] if skipped is None else skipped
    seen: set[str] = set()
    boundary = base.resolve()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        if not path.resolve().is_relative_to(boundary):
            _skip(skipped, path, base, SkipReason.OUTSIDE, f"it links outside {base}")
            continue
        for doc in load_file(path, root=base, max_file_bytes=max_file_bytes, skipped=skipped):
            if doc.id in seen:
                _skip(
                    skipped,
                    path,
                    base,
                    SkipReason.DUPLICATE_ID,
                    f"document id {doc.id!r} is already taken",
                )
                continue
            seen.add(doc.id)
            yield doc
    if not seen:
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        why = "; ".join(f"{n} {reason}" for reason, n in skipped_counts(skipped).items())
        raise EmptyCorpus(
            f"no documents found in {directory} (looked for {kinds})"
            + (f"; skipped {len(skipped)} file(s): {why}" if skipped else "")
        )


def load_file(
    path: Path,
    *,
    root: Path | None = None,
    max_file_bytes: int = 20_000_000,
    skipped: list[Skipped] | None = None,
) -> list[Document]:
    """The documents in one file; [] with a warning (and a `Skipped` record) when it is
    unsupported or unreadable."""
    try:
        return read_file(path, root=root, max_file_bytes=max_file_bytes)
    except Unreadable as exc:
        _skip(skipped, path, root, exc.reason, str(exc))
        return []


def read_file(
    path: Path, *, root: Path | None = None, max_file_bytes: int = 20_000_000
) -> list[Document]:
    """The documents in one file. Raises Unreadable (with its reason) instead of skipping."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise Unreadable(SkipReason.UNSUPPORTED, f"unsupported file type {suffix or '(none)'!r}")
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise Unreadable(
                SkipReason.TOO_LARGE, f"{size} bytes is over the limit of {max_file_bytes}"
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise Unreadable(SkipReason.UNREADABLE, str(exc)) from None
    return parse_bytes(
        raw,
        suffix=suffix,
        doc_id=document_id(path, root),
        source=document_source(path, root),
    )


def parse_bytes(raw: bytes, *, suffix: str, doc_id: str, source: str) -> list[Document]:
    """The documents in a file's bytes, by its suffix (the loader's and the upload API's
    one parser). Raises Unreadable."""
    if suffix == ".pdf":
        docs: list[Document | None] = [parse_pdf(raw, doc_id=doc_id, source=source)]
    elif suffix == ".docx":
        docs = [parse_docx(raw, doc_id=doc_id, source=source)]
    elif suffix in TEXT_SUFFIXES:
        content = decode_text(raw, source)
        if suffix == ".jsonl":
            docs = list(parse_jsonl(content, default_id=doc_id, source=source))
        elif suffix in {".html", ".htm"}:
            docs = [parse_html(content, doc_id=doc_id, source=source)]
        elif suffix in {".md", ".markdown"}:
            docs = [parse_markdown(content, doc_id=doc_id, source=source)]
        else:
            docs = [parse_text(content, doc_id=doc_id, source=source)]
    else:
        raise Unreadable(SkipReason.UNSUPPORTED, f"unsupported file type {suffix or '(none)'!r}")
    found = [d for d in docs if d is not None and d.text.strip()]
    if not found:
        raise Unreadable(SkipReason.EMPTY, "no text after cleaning")
    return found


def _skip(
    skipped: list[Skipped] | None,
    path: Path,
    root: Path | None,
    reason: SkipReason,
    detail: str,
) -> None:
    logger.warning("skipping %s: %s", path, detail)
    if skipped is not None:
        skipped.append(Skipped(document_source(path, root), reason, detail))


def document_id(path: Path, root: Path | None) -> str:
    """The file stem; in a sub-folder, its relative path joined with '__' (ids stay URL-safe)."""
    if root is not None:
        try:
            rel = path.relative_to(root).with_suffix("")
            return "__".join(rel.parts)
        except ValueError:
            pass
    return path.stem


def document_source(path: Path, root: Path | None) -> str:
    """Where a document came from, relative to the corpus folder (the HTTP API shows it, so
    no server path): `sub/name.md`; the file name alone without a root."""
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.name


def parse_text(content: str, *, doc_id: str, source: str | None = None) -> Document:
    cleaned = clean_article(content)
    return Document(
        id=doc_id, text=cleaned.text, title=cleaned.title, date=cleaned.date, source=source
    )


_FRONT_MATTER_RE = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)
_HEADING_RE = re.compile(r"^#{1,6}\s+", re.MULTILINE)


def parse_markdown(content: str, *, doc_id: str, source: str | None = None) -> Document:
    """Markdown: optional front matter (title, date), '#' markers dropped from headings."""
    meta: dict[str, str] = {}
    m = _FRONT_MATTER_RE.match(content.replace("\r\n", "\n"))
    if m:
        for line in m.group(1).splitlines():
            key, sep, value = line.partition(":")
            if sep:
                meta[key.strip().lower()] = value.strip().strip("\"'")
        content = content.replace("\r\n", "\n")[m.end() :]
    title = meta.get("title")
    if title is None:
        h1 = re.search(r"^#\s+(.+)$", content, re.MULTILINE)
        title = h1.group(1).strip() if h1 else None
    cleaned = clean_article(
        _HEADING_RE.sub("", content), title=title, date_hint=parse_date(meta.get("date"))
    )
    return Document(
        id=doc_id,
        text=cleaned.text,
        title=cleaned.title,
        date=cleaned.date,
        url=meta.get("url"),
        source=source,
    )


def parse_html(content: str, *, doc_id: str, source: str | None = None) -> Document | None:
    """HTML through trafilatura (main-content extraction; scripts, styles and navigation
    dropped), with its title and date when it finds them."""
    import trafilatura

    extracted = trafilatura.bare_extraction(
        content, with_metadata=True, include_comments=False, include_tables=True, favor_recall=True
    )
    if extracted is None or not (extracted.text or "").strip():
        text = _html_to_text(content)
        title, date_value, url = None, None, None
    else:
        text = extracted.text
        title, date_value, url = extracted.title, extracted.date, extracted.url
    cleaned = clean_article(text, title=title, date_hint=parse_date(date_value))
    return Document(
        id=doc_id, text=cleaned.text, title=cleaned.title, date=cleaned.date, url=url, source=source
    )


def parse_pdf(raw: bytes, *, doc_id: str, source: str | None = None) -> Document:
    """A PDF, page by page: the first page with text cleaned as an article's start (title,
    dateline), the others as body text; `pages` records where each page starts. The title
    comes from the document's properties when it has one, the date from a dateline in the
    text, else from the properties (creation)."""
    pdf = read_pdf(raw)
    first = next(i for i, page in enumerate(pdf.pages) if page.strip())
    opening = clean_article(pdf.pages[first], title=pdf.title)
    cleaned = [""] * first + [opening.text] + [clean_body(p) for p in pdf.pages[first + 1 :]]
    text, pages = join_pages(cleaned)
    return Document(
        id=doc_id,
        text=text,
        title=opening.title or fallback_title(text),
        date=opening.date or pdf.date,
        source=source,
        pages=pages,
    )


def parse_docx(raw: bytes, *, doc_id: str, source: str | None = None) -> Document:
    """A Word document: headings and paragraphs as paragraphs of their own (so a heading
    is never read into the sentence after it), tables a row a line; title and date from the
    document's properties when present (else its Title paragraph or first heading)."""
    docx = read_docx(raw)
    text = clean_body("\n\n".join(docx.paragraphs))
    return Document(
        id=doc_id,
        text=text,
        title=docx.title or fallback_title(text),
        date=docx.date,
        source=source,
    )


def _html_to_text(content: str) -> str:
    """Fallback for pages too small for trafilatura: visible text only."""
    import lxml.html
    from lxml_html_clean import Cleaner

    try:
        tree = lxml.html.fromstring(content)
    except Exception:  # lxml raises several types for hopeless input
        return ""
    tree = Cleaner(scripts=True, javascript=True, style=True, comments=True).clean_html(tree)
    return "\n".join(t.strip() for t in tree.itertext() if t.strip())


def parse_jsonl(content: str, *, default_id: str, source: str | None = None) -> Iterator[Document]:
    """One `{"id", "title", "text", "date", "url"}` object per line; bad lines are skipped with
    a warning naming their line number."""
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            logger.warning("skipping %s line %d: invalid JSON (%s)", source, lineno, exc.msg)
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            logger.warning('skipping %s line %d: no "text" string', source, lineno)
            continue
        doc = document_from_fields(obj, default_id=f"{default_id}-{lineno}", source=source)
        if doc is None:
            logger.warning("skipping %s line %d: no text after cleaning", source, lineno)
            continue
        yield doc


def document_from_fields(
    obj: dict, *, default_id: str, source: str | None = None
) -> Document | None:
    """A document from JSON fields (the .jsonl format and the HTTP API's JSON body)."""
    raw_id = obj.get("id", obj.get("_id"))
    doc_id = str(raw_id).strip() if raw_id not in (None, "") else default_id
    title = (
        obj.get("title") if isinstance(obj.get("title"), str) and obj.get("title").strip() else None
    )
    date_value = obj.get("date")
    cleaned = clean_article(
        str(obj.get("text", "")),
        title=title,
        date_hint=parse_date(str(date_value)) if date_value else None,
    )
    if not cleaned.text.strip():
        return None
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    return Document(
        id=doc_id, text=cleaned.text, title=cleaned.title, date=cleaned.date, url=url, source=source
    )


def corpus_hash(documents: Iterable[Document]) -> str:
    from index.records import content_hash

    return content_hash(*sorted(f"{d.id}:{d.content_hash}" for d in documents))
