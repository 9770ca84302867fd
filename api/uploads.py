"""Documents from a POST /documents body: JSON fields, or uploaded files in the formats
`rag index` reads (the same parser). Everything is checked before anything is written: a
file `rag index` would skip is refused, 415 for its type and 422 for its content.

POST /documents/from-path reads a file or folder on the server instead (rag.ingest.roots:
only inside RAG_CORPUS_ROOTS); a folder's unreadable files are skipped and listed, as
`rag index` does, and a single file that cannot be read is refused like an upload."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from api.errors import ApiError, InvalidDocuments, PayloadTooLarge, UnsupportedMediaType
from api.schemas import DocumentsIn, check_document_id
from rag.indexing import Document
from rag.ingest.cleaning import parse_date
from rag.ingest.documents import SUPPORTED_SUFFIXES, Skipped, document_from_fields, parse_bytes
from rag.ingest.formats import SkipReason, Unreadable
from rag.ingest.roots import CorpusPath, iter_documents, locate, public_detail
from rag.models import SkippedFile, valid_unicode


@dataclass(frozen=True, slots=True)
class UploadedFile:
    filename: str
    content: bytes


def documents_from_json(payload: DocumentsIn, *, max_documents: int) -> list[Document]:
    _check_count(len(payload.documents), max_documents)
    documents = []
    for item in payload.documents:
        if item.date is not None and item.date.strip() and parse_date(item.date) is None:
            raise InvalidDocuments(f"document {item.id!r}: unrecognised date {item.date!r}")
        doc = document_from_fields(item.model_dump(), default_id=item.id, source="api")
        if doc is None:
            raise InvalidDocuments(f"document {item.id!r} has no text left after cleaning")
        documents.append(doc)
    return _checked(documents, max_documents)


def documents_from_files(files: list[UploadedFile], *, max_documents: int) -> list[Document]:
    if not files:
        raise InvalidDocuments("no files: send them as multipart/form-data field 'files'")
    _check_count(len(files), max_documents)
    documents: list[Document] = []
    for file in files:
        documents.extend(_parse_file(file))
    return _checked(documents, max_documents)


def documents_from_path(
    sent: str, roots: Sequence[Path], *, max_documents: int, max_file_bytes: int
) -> tuple[list[Document], list[SkippedFile]]:
    """The documents at a server-side path inside `roots` (refusals: rag.ingest.roots), and
    the files of a folder that were skipped. At most `max_documents` are read."""
    place = locate(sent, roots)
    skipped: list[Skipped] = []
    try:
        read = iter_documents(place, max_file_bytes=max_file_bytes, skipped=skipped)
        documents = list(itertools.islice(read, max_documents + 1))
    except Unreadable as exc:
        raise _unreadable(place, exc) from None
    if len(documents) > max_documents:
        raise PayloadTooLarge(
            f"{place.sent!r} holds more than {max_documents} documents; the limit is "
            "RAG_MAX_DOCUMENTS_PER_REQUEST (index a large folder with `rag index`)"
        )
    listed = [
        SkippedFile(path=s.path, reason=s.reason.value, detail=public_detail(s.detail, place))
        for s in skipped
    ]
    return _checked(documents, max_documents), listed


def _unreadable(place: CorpusPath, exc: Unreadable) -> ApiError:
    message = f"{place.sent!r}: {public_detail(str(exc), place)}"
    if exc.reason is SkipReason.UNSUPPORTED:
        return UnsupportedMediaType(message)
    return InvalidDocuments(message)


def _parse_file(file: UploadedFile) -> list[Document]:
    # Only the file's own name counts: directories in it ("../../x.txt") are dropped.
    name = PurePosixPath(file.filename.replace("\\", "/")).name
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        raise UnsupportedMediaType(f"{name!r}: unsupported file type; send one of {kinds}")
    try:
        return parse_bytes(
            file.content, suffix=suffix, doc_id=PurePosixPath(name).stem, source=f"upload:{name}"
        )
    except Unreadable as exc:
        if exc.reason is SkipReason.UNSUPPORTED:
            raise UnsupportedMediaType(f"{name!r}: {exc}") from None
        raise InvalidDocuments(f"{name!r}: {exc}") from None


def _check_count(n: int, max_documents: int) -> None:
    if n > max_documents:
        raise PayloadTooLarge(
            f"{n} documents in one request; the limit is {max_documents} "
            "(RAG_MAX_DOCUMENTS_PER_REQUEST)"
        )


def _checked(documents: list[Document], max_documents: int) -> list[Document]:
    _check_count(len(documents), max_documents)
    seen: set[str] = set()
    for doc in documents:
        try:
            check_document_id(doc.id)
        except ValueError as exc:
            raise InvalidDocuments(f"document id {doc.id!r} {exc}") from None
        for field in ("id", "title", "text", "url"):
            try:
                valid_unicode(getattr(doc, field) or "")
            except ValueError as exc:
                raise InvalidDocuments(f"document {doc.id!r}: its {field} {exc}") from None
        if doc.id in seen:
            raise InvalidDocuments(f"document id {doc.id!r} appears more than once")
        seen.add(doc.id)
    return documents
