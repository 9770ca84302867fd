"""What the index stores: documents and their chunks."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Document:
    """A cleaned document. `text` is the text that chunk and citation offsets refer to."""

    id: str
    text: str
    title: str = ""
    date: str | None = None  # ISO 8601 date (YYYY-MM-DD) when known
    url: str | None = None
    source: str | None = None  # path or origin it was loaded from
    # Paged formats (PDF): the offset in `text` where each page starts, page 1 first (0).
    pages: tuple[int, ...] | None = None

    @property
    def content_hash(self) -> str:
        parts = [self.title, self.date or "", self.text]
        if self.pages:  # unpaged documents keep the hash they had before pages existed
            parts.append(",".join(map(str, self.pages)))
        return content_hash(*parts)

    def page_at(self, offset: int) -> int | None:
        return page_at(self.pages, offset)


@dataclass(frozen=True, slots=True)
class Chunk:
    """A span of a document: `document.text[start:end] == text`."""

    id: str
    doc_id: str
    ordinal: int
    start: int
    end: int
    text: str
    n_tokens: int
    page: int | None = None  # 1-based page of `start` in a paged document

    @property
    def vector_id(self) -> int:
        return vector_id(self.id)


def page_at(pages: Sequence[int] | None, offset: int) -> int | None:
    """The 1-based page holding character `offset`, given each page's start offset; None for
    an unpaged document."""
    if not pages:
        return None
    return max(1, bisect.bisect_right(pages, offset))


def chunk_id(doc_id: str, ordinal: int) -> str:
    return f"{doc_id}:{ordinal}"


@lru_cache(maxsize=1 << 16)  # asked for every candidate chunk of every query
def vector_id(chunk_id: str) -> int:
    """A stable 63-bit FAISS id derived from the chunk id, so ids never shift after deletes."""
    digest = hashlib.blake2b(chunk_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 63) - 1)


def content_hash(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()
