"""The contract: pydantic models shared by the HTTP API and the CLI's --json output."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_QUESTION = "What minerals does the Chirchik center target?"
EXAMPLE_DOC = "001_747dad745748a0c8"


class Filters(BaseModel):
    """Restrict retrieval to some documents or a range of publication dates."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"doc_ids": [EXAMPLE_DOC]}}
    )

    doc_ids: list[str] | None = Field(default=None, description="Only these documents.")
    date_from: date | None = Field(default=None, description="Published on or after this day.")
    date_to: date | None = Field(default=None, description="Published on or before this day.")


class Passage(BaseModel):
    """A retrieved chunk: `document.text[start:end] == text`."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "rank": 1,
                "chunk_id": f"{EXAMPLE_DOC}:3",
                "doc_id": EXAMPLE_DOC,
                "title": "Korea, Uzbekistan to bolster infra, energy, supply chain ties",
                "date": "2024-03-26",
                "start": 1616,
                "end": 2216,
                "text": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading ...",
                "score": 0.62,
            }
        }
    )

    rank: int = Field(description="1 for the best passage.")
    chunk_id: str
    doc_id: str
    title: str
    date: str | None = None
    start: int = Field(description="Character offset of the chunk in the document's text.")
    end: int
    text: str
    score: float = Field(description="Retrieval score (cosine similarity for dense search).")


class Citation(BaseModel):
    """The exact passage an answer rests on: `document.text[start:end] == quote`."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": 1,
                "doc_id": EXAMPLE_DOC,
                "title": "Korea, Uzbekistan to bolster infra, energy, supply chain ties",
                "chunk_id": f"{EXAMPLE_DOC}:3",
                "start": 1616,
                "end": 1870,
                "quote": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading the "
                "project, ... including molybdenum and tungsten, crucial for semiconductors ...",
                "score": 0.71,
            }
        }
    )

    id: int = Field(description="The citation's number, as in [1].")
    doc_id: str
    title: str
    chunk_id: str
    start: int = Field(description="Character offset of the quote in the document's text.")
    end: int
    quote: str
    score: float = Field(description="How strongly the quote answers the question (0..1).")


class AskResponse(BaseModel):
    """An answer with its citations and the passages it was chosen from."""

    question: str
    answer: str | None = Field(description="The answer, or null when the corpus does not answer.")
    answerable: bool = Field(description="Whether the evidence was strong enough to answer.")
    confidence: float = Field(description="Evidence score compared with the abstention threshold.")
    citations: list[Citation]
    passages: list[Passage]
    timings_ms: dict[str, float]


class SearchResponse(BaseModel):
    """Ranked chunks for a query, without an answer: the inspection view."""

    question: str
    passages: list[Passage]
    timings_ms: dict[str, float]


class DocumentInfo(BaseModel):
    id: str
    title: str
    date: str | None = None
    url: str | None = None
    source: str | None = None
    n_chunks: int
    content_hash: str


class DocumentDetail(DocumentInfo):
    text: str = Field(description="The cleaned text that chunk and citation offsets refer to.")


class ChunkDetail(BaseModel):
    chunk_id: str
    doc_id: str
    title: str
    ordinal: int
    start: int
    end: int
    text: str
    n_tokens: int
    previous_id: str | None = None
    next_id: str | None = None


class IndexStats(BaseModel):
    path: str
    generation: int
    model: str
    dimension: int
    index_type: str
    tokenizer: str
    chunking: dict[str, int | str]
    n_documents: int
    n_chunks: int
    created: str
    build_seconds: float | None = None
    size_bytes: int


class BuildReport(BaseModel):
    path: str
    generation: int
    n_documents: int
    n_chunks: int
    added: int = Field(description="Documents new to the index.")
    changed: int = Field(description="Documents whose content changed and were re-embedded.")
    unchanged: int = Field(description="Documents reused with their stored embeddings.")
    removed: int
    embedded_chunks: int
    seconds: float
    size_bytes: int
