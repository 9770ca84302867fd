"""Chunk-boundary report: gold answers that are in a document but in no single chunk of it.

Such an answer can never be quoted whole by an extractive answer, whatever the retrieval,
so a chunk setting is judged by how many it cuts. Pure: texts, chunk spans and questions in,
counts out; `rechunk` re-chunks without embedding (chunking alone is cheap).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, Field

from index import Document
from rag.text.chunking import chunk_text

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class GoldItem:
    id: str
    answers: tuple[str, ...]
    doc_ids: tuple[str, ...]


class BoundaryRow(BaseModel):
    """How one chunk setting treats the gold answers."""

    chunking: str = Field(description="max_tokens/overlap.")
    source: str = Field(description="`index` (the index evaluated) or `rechunked`.")
    questions: int = Field(description="Answerable questions considered.")
    answer_in_document: int = Field(description="Some gold string occurs in a gold document.")
    in_one_chunk: int = Field(description="...and some occurrence lies inside a single chunk.")
    across_boundary: int = Field(description="...but every occurrence straddles a boundary.")
    across_ids: list[str] = Field(default_factory=list)


def answer_spans(text: str, answer: str) -> list[Span]:
    """Every occurrence of `answer` in `text`, ignoring case and the kind of white space."""
    words = answer.split()
    if not words:
        return []
    pattern = r"\s+".join(re.escape(w) for w in words)
    return [(m.start(), m.end()) for m in re.finditer(pattern, text, re.IGNORECASE)]


def within_one(span: Span, chunks: Sequence[Span]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in chunks)


def boundary_row(
    items: Sequence[GoldItem],
    texts: Mapping[str, str],
    chunks: Mapping[str, Sequence[Span]],
    *,
    chunking: str,
    source: str,
) -> BoundaryRow:
    """Count the items whose gold answers fall across a chunk boundary."""
    in_doc = in_one = 0
    across: list[str] = []
    for item in items:
        spans = [
            (doc_id, span)
            for doc_id in item.doc_ids
            if doc_id in texts
            for answer in item.answers
            for span in answer_spans(texts[doc_id], answer)
        ]
        if not spans:
            continue
        in_doc += 1
        if any(within_one(span, chunks.get(doc_id, ())) for doc_id, span in spans):
            in_one += 1
        else:
            across.append(item.id)
    return BoundaryRow(
        chunking=chunking,
        source=source,
        questions=len(items),
        answer_in_document=in_doc,
        in_one_chunk=in_one,
        across_boundary=len(across),
        across_ids=across,
    )


def rechunk(
    documents: Sequence[Document], max_tokens: int, overlap: int, encoding: str
) -> dict[str, list[Span]]:
    return {
        d.id: [
            (c.start, c.end)
            for c in chunk_text(
                d.id, d.text, max_tokens=max_tokens, overlap=overlap, encoding=encoding
            )
        ]
        for d in documents
    }


def parse_chunk_sizes(text: str) -> list[tuple[int, int]]:
    """`64/16,128/32,256` -> [(64, 16), (128, 32), (256, 0)]."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        size, _, overlap = part.partition("/")
        try:
            pair = (int(size), int(overlap or 0))
        except ValueError:
            raise ValueError(f"{part!r} is not TOKENS or TOKENS/OVERLAP") from None
        if pair[0] < 1 or pair[1] < 0:
            raise ValueError(f"{part!r}: tokens must be positive and overlap not negative")
        out.append(pair)
    return out
