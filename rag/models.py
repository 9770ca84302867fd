"""The contract: pydantic models shared by the HTTP API and the CLI's --json output."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

EXAMPLE_QUESTION = "What minerals does the Chirchik center target?"
EXAMPLE_DOC = "001_747dad745748a0c8"


def valid_unicode(value: str) -> str:
    """Refuse text that cannot be UTF-8 encoded (JSON allows unpaired surrogates like \\ud800)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains an unpaired surrogate, which is not valid Unicode") from None
    return value


Text = Annotated[str, AfterValidator(valid_unicode)]

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(value: object) -> object:
    """Accept only a day written YYYY-MM-DD (or a `date`): pydantic alone would also take a
    number as a Unix timestamp (0 -> 1970-01-01) and a datetime string."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DAY.fullmatch(value):
        return value
    raise ValueError("must be a day written YYYY-MM-DD, e.g. 2024-03-01")


IsoDate = Annotated[date, BeforeValidator(iso_day)]


class Filters(BaseModel):
    """Restrict retrieval to some documents or a range of publication dates."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"example": {"doc_ids": [EXAMPLE_DOC]}}
    )

    doc_ids: list[Text] | None = Field(
        default=None, max_length=1000, description="Only these documents (at most 1000)."
    )
    date_from: IsoDate | None = Field(
        default=None, description="Published on or after this day (YYYY-MM-DD)."
    )
    date_to: IsoDate | None = Field(
        default=None, description="Published on or before this day (YYYY-MM-DD)."
    )


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
    page: int | None = Field(
        default=None,
        description="The page (1-based) the chunk starts on, in a paged document (PDF); null "
        "in others.",
    )
    text: str
    score: float = Field(description="Ranking score in the retrieval mode used (fused for hybrid).")
    dense_score: float | None = Field(
        default=None, description="Cosine similarity of question and chunk embeddings."
    )
    bm25_score: float | None = Field(default=None, description="BM25 score of the chunk's words.")
    dense_rank: int | None = Field(
        default=None, description="Rank among candidates by dense score."
    )
    bm25_rank: int | None = Field(default=None, description="Rank among candidates by BM25 score.")


class Quote(BaseModel):
    """An exact passage of a document: `document.text[start:end] == quote`. A citation is a
    quote with its number and scores; a corroboration (a near-duplicate sentence of another
    document) is a quote alone."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "doc_id": "000_a87859622d3621ae",
                "title": "On March 25, 2024, South Korea and Uzbekistan took a significant step",
                "chunk_id": "000_a87859622d3621ae:3",
                "start": 1763,
                "end": 1911,
                "quote": "The meeting between Chung Byung-won and Bobur Usmanov marks a pivotal "
                "moment ...",
            }
        }
    )

    doc_id: str
    title: str
    chunk_id: str
    start: int = Field(description="Character offset of the quote in the document's text.")
    end: int
    page: int | None = Field(
        default=None,
        description="The page (1-based) the quote starts on, in a paged document (PDF): the "
        "quote is in that page's text (`text[pages[page-1]:]` of GET /documents/{id}). Null "
        "in documents without pages.",
    )
    quote: str


class Citation(Quote):
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
    score: float = Field(description="How strongly the quote answers the question (0..1).")
    support: float | None = Field(
        default=None,
        description="How well the quote supports the answer sentence(s) citing it (0..1): "
        "embedding similarity and term overlap. Null when not checked (RAG_VERIFY_CITATIONS=0).",
    )
    supported: bool | None = Field(
        default=None,
        description="Whether `support` reaches RAG_MIN_SUPPORT; false flags a citation whose "
        "quote does not say what the answer says. Null when not checked.",
    )

    answer_start: int | None = Field(
        default=None,
        description="Character offset in the document's text of the short answer inside the "
        "quote (read by the reader); null for the sentence method.",
    )
    answer_end: int | None = None
    corroborated_by: list[Quote] = Field(
        default_factory=list,
        description="Sentences of other documents that say the same as the quote (near-"
        "duplicates); they are listed here rather than cited again.",
    )


class SentenceSupport(BaseModel):
    """One sentence of the answer and how well the quotes it cites support it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "text": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading ...",
                "start": 0,
                "end": 254,
                "citation_ids": [1],
                "support": 1.0,
                "supported": True,
            }
        }
    )

    text: str
    start: int = Field(description="Character offset of the sentence in the answer.")
    end: int
    citation_ids: list[int] = Field(description="The citations this sentence rests on.")
    support: float = Field(description="The best support among its cited quotes (0..1).")
    supported: bool


class GeneratedSentence(BaseModel):
    """One sentence the generator wrote, and its check against the sentences it cites."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "text": "The center targets molybdenum and tungsten.",
                "markers": [4],
                "invalid_markers": [],
                "citation_ids": [1],
                "overlap": 1.0,
                "signal": 0.98,
                "support": 0.98,
                "supported": True,
                "kept": True,
                "reason": None,
            }
        }
    )

    text: str = Field(description="The sentence without its markers.")
    markers: list[int] = Field(description="The sentence numbers it cited, as written.")
    invalid_markers: list[int] = Field(
        description="Its markers that name no sentence of the prompt: ignored, never cited."
    )
    citation_ids: list[int] = Field(description="Its citations in the answer (empty: dropped).")
    overlap: float | None = Field(
        description="Share of its content words (idf-weighted) found in the cited sentences."
    )
    signal: float | None = Field(
        description="The reader's probability that the cited sentences answer the question "
        "(null when the lexical floor already failed)."
    )
    support: float
    supported: bool
    kept: bool = Field(description="Whether it is in the answer.")
    reason: str | None = Field(default=None, description="Why it is not supported.")


class Generation(BaseModel):
    """How a generated answer was made and checked (`generate: true`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "status": "generated",
                "reason": None,
                "model": "SmolLM2-135M-Instruct",
                "prompt_version": "answer_v1",
                "text": "The center targets molybdenum and tungsten [4].",
                "numbered_sentences": 14,
                "prompt_tokens": 612,
                "completion_tokens": 14,
                "unsupported": "drop",
                "sentences": [GeneratedSentence.model_config["json_schema_extra"]["example"]],
            }
        }
    )

    status: Literal["generated", "fallback", "skipped"] = Field(
        description="generated: the answer is the generator's, every sentence checked; "
        "fallback: no generated sentence was supported (or the generator said the passages "
        "do not answer), so the extractive answer is given; skipped: the extractive stage "
        "abstained, so the generator was not asked."
    )
    reason: str | None = Field(default=None, description="Why it fell back or was skipped.")
    model: str | None = None
    prompt_version: str
    text: str | None = Field(default=None, description="What the generator wrote, as it wrote it.")
    numbered_sentences: int = Field(description="Sentences of the passages given to the model.")
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    unsupported: Literal["drop", "mark"] = Field(
        description="What happens to an unsupported sentence (RAG_GENERATOR_UNSUPPORTED)."
    )
    sentences: list[GeneratedSentence] = Field(default_factory=list)


class AskResponse(BaseModel):
    """An answer with its citations and the passages it was chosen from."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "question": EXAMPLE_QUESTION,
                "answer": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading the "
                "project, ... including molybdenum and tungsten, crucial for semiconductors ...",
                "answerable": True,
                "confidence": 0.45,
                "citations": [Citation.model_config["json_schema_extra"]["example"]],
                "passages": [Passage.model_config["json_schema_extra"]["example"]],
                "timings_ms": {"embed": 6.1, "search": 1.2, "compose": 2.4, "total": 9.9},
            }
        }
    )

    question: str
    answer: str | None = Field(description="The answer, or null when the corpus does not answer.")
    short_answer: str | None = Field(
        default=None,
        description="The few words of the answer's sentence that answer a question asking for a "
        "date, number, amount or percentage, when exactly one such span is there; else null "
        "(the answer sentence is then the shortest reliable answer).",
    )
    answerable: bool = Field(description="Whether the evidence was strong enough to answer.")
    confidence: float = Field(
        description="Evidence score compared with the abstention threshold: with the reader, "
        "its probability that the passages read answer the question."
    )
    answer_mode: str | None = Field(
        default=None,
        description="How the answer was found: `reader`, `sentence`, or `generator` (a "
        "generated answer, each sentence checked against its citations).",
    )
    reason: str | None = Field(
        default=None,
        description="Why the service abstained (null when it answered); the nearest passages "
        "are in `passages`.",
    )
    citations: list[Citation]
    passages: list[Passage]
    timings_ms: dict[str, float]
    support: list[SentenceSupport] | None = Field(
        default=None,
        description="Per sentence of the answer, its support by the quotes it cites; null when "
        "citations are not checked or there is no answer.",
    )
    generation: Generation | None = Field(
        default=None,
        description="With `generate: true`: what the generator wrote and how each sentence "
        "was checked; null for extractive answers.",
    )


class SearchResponse(BaseModel):
    """Ranked chunks for a query, without an answer: the inspection view."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "question": EXAMPLE_QUESTION,
                "passages": [Passage.model_config["json_schema_extra"]["example"]],
                "timings_ms": {"embed": 6.1, "search": 1.2, "total": 7.4},
            }
        }
    )

    question: str
    passages: list[Passage]
    timings_ms: dict[str, float]


class DocumentInfo(BaseModel):
    """An indexed document, without its text."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": EXAMPLE_DOC,
                "title": "Korea, Uzbekistan to bolster infra, energy, supply chain ties",
                "date": "2024-03-26",
                "url": None,
                "source": "001_747dad745748a0c8.txt",
                "n_chunks": 10,
                "content_hash": "1c9b81c2593062c19d4e1056c423ef99e02d72ea26e7083d6013591d8586875d",
            }
        }
    )
    id: str
    title: str
    date: str | None = None
    url: str | None = None
    source: str | None = Field(
        default=None,
        description="Where it came from: its file relative to the indexed folder, "
        "`upload:NAME` or `api`.",
    )
    n_chunks: int
    content_hash: str


class DocumentDetail(DocumentInfo):
    """An indexed document with its cleaned text."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                **DocumentInfo.model_config["json_schema_extra"]["example"],
                "text": "Korea, Uzbekistan to bolster infra, energy, supply chain ties\n\n...",
            }
        }
    )
    text: str = Field(description="The cleaned text that chunk and citation offsets refer to.")
    pages: list[int] | None = Field(
        default=None,
        description="In a paged document (PDF): the offset in `text` where each page starts, "
        "page 1 first. Null in documents without pages.",
    )


class ChunkDetail(BaseModel):
    """A chunk with its place in its document: `document.text[start:end] == text`."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "chunk_id": f"{EXAMPLE_DOC}:3",
                "doc_id": EXAMPLE_DOC,
                "title": "Korea, Uzbekistan to bolster infra, energy, supply chain ties",
                "ordinal": 3,
                "start": 1616,
                "end": 2216,
                "text": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading ...",
                "n_tokens": 111,
                "previous_id": f"{EXAMPLE_DOC}:2",
                "next_id": f"{EXAMPLE_DOC}:4",
            }
        }
    )
    chunk_id: str
    doc_id: str
    title: str
    ordinal: int
    start: int
    end: int
    text: str
    n_tokens: int
    page: int | None = Field(
        default=None, description="The page (1-based) it starts on, in a paged document."
    )
    previous_id: str | None = None
    next_id: str | None = None


class IndexStats(BaseModel):
    """What an index holds and how it was built."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "path": ".rag/index/gen-000001",
                "generation": 1,
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "dimension": 384,
                "index_type": "flat",
                "tokenizer": "cl100k_base",
                "chunking": {"max_tokens": 128, "overlap": 32},
                "n_documents": 5,
                "n_chunks": 28,
                "created": "2024-06-20T10:52:14+00:00",
                "build_seconds": 2.5,
                "size_bytes": 144928,
            }
        }
    )
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
    store: str = Field(default="faiss", description="Where the vectors live: faiss or milvus.")
    store_location: dict[str, str] = Field(
        default_factory=dict, description="For milvus: the uri and the generation's collection."
    )


class SkippedFile(BaseModel):
    """A file of the indexed folder that was not indexed, and why."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "path": "scans/invoice.pdf",
                "reason": "no text layer",
                "detail": "no text layer in 2 page(s): a scan? (OCR it first, e.g. with ocrmypdf)",
            }
        }
    )
    path: str = Field(
        description="The file, relative to the indexed folder (POST /documents/from-path: to "
        "the corpus root)."
    )
    reason: str = Field(
        description="unsupported file type, over the size limit, unreadable, binary content, "
        "unknown text encoding, malformed file, encrypted, no text layer, no text after "
        "cleaning, links outside the folder, or document id already taken."
    )
    detail: str


class BuildReport(BaseModel):
    """What a build or update did."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "path": ".rag/index",
                "generation": 2,
                "n_documents": 6,
                "n_chunks": 31,
                "added": 1,
                "changed": 0,
                "unchanged": 5,
                "removed": 0,
                "embedded_chunks": 3,
                "seconds": 0.4,
                "size_bytes": 151234,
            }
        }
    )
    path: str = Field(
        description="Where the index is: its folder (CLI), or the new generation's directory "
        "name, e.g. gen-000002 (HTTP, which shows no server paths)."
    )
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
    skipped: list[SkippedFile] = Field(
        default_factory=list,
        description="Files of the folder that `rag index` (or POST /documents/from-path) did "
        "not index, and why. Empty for other writes over HTTP, which refuse such a file "
        "(415/422) instead.",
    )


class QuestionRequest(BaseModel):
    """The fields every question route takes (POST /ask, /search, /explain)."""

    model_config = ConfigDict(extra="forbid")

    question: Text = Field(
        strict=True,
        description="The question: non-empty, at most RAG_MAX_QUESTION_CHARS (2000) characters; "
        "longer ones are refused with 413.",
    )
    k: int | None = Field(
        default=None,
        strict=True,
        ge=1,
        description="Passages to retrieve: 1 to RAG_MAX_K (50). Default RAG_K (5).",
    )
    filters: Filters | None = None
    mode: Text | None = Field(
        default=None,
        description="Retrieval mode (dense, bm25 or hybrid). Default RAG_RETRIEVAL_MODE.",
    )


class AskRequest(QuestionRequest):
    """A question for POST /ask."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": EXAMPLE_QUESTION},
                {"question": EXAMPLE_QUESTION, "k": 3, "filters": {"doc_ids": [EXAMPLE_DOC]}},
                {"question": EXAMPLE_QUESTION, "generate": True},
            ]
        },
    )

    generate: bool = Field(
        default=False,
        strict=True,
        description="Have the configured generator (RAG_GENERATOR_URL) write the answer from "
        "numbered sentences of the passages; each sentence is checked against the sentences "
        "it cites. 422 when no generator is configured; 502/504 (with the extractive answer) "
        "when it fails.",
    )


class SearchRequest(QuestionRequest):
    """A query for POST /search; `query` is accepted as another name for `question`."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {"question": EXAMPLE_QUESTION, "k": 3},
                {"query": "rare metals", "filters": {"date_from": "2024-03-01"}},
            ]
        },
    )

    question: Text = Field(
        strict=True,
        validation_alias=AliasChoices("question", "query"),
        description="The query (or send it as `query`), at most RAG_MAX_QUESTION_CHARS characters.",
    )


class ExplainRequest(QuestionRequest):
    """A question for POST /explain, optionally with the document or chunk that should have
    been retrieved."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"question": EXAMPLE_QUESTION},
                {"question": EXAMPLE_QUESTION, "k": 3, "gold": EXAMPLE_DOC},
            ]
        },
    )

    gold: Text | None = Field(
        default=None,
        max_length=1000,
        description="A document id or chunk id: report where it ranked and which signal lost it.",
    )


class ExplainedChunk(BaseModel):
    """A chunk's place in each ranking. Ranks are over every chunk searched (all of the index,
    or those the filters allow); tied scores share a rank."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "rank": 1,
                "chunk_id": f"{EXAMPLE_DOC}:3",
                "doc_id": EXAMPLE_DOC,
                "title": "Korea, Uzbekistan to bolster infra, energy, supply chain ties",
                "start": 1616,
                "end": 2216,
                "text": "The Korea-Uzbek Rare Metals Center in Chirchik is spearheading ...",
                "retrieved": True,
                "candidate": True,
                "score": 1.0,
                "dense_score": 0.62,
                "dense_rank": 1,
                "bm25_score": 7.9,
                "bm25_rank": 1,
                "matched_terms": ["chirchik", "center"],
                "term_scores": {"chirchik": 4.1, "center": 3.8},
            }
        }
    )

    rank: int | None = Field(
        description="Rank by the retrieval mode's score among the candidates; null when the "
        "chunk was not a candidate (hybrid: in neither signal's top list)."
    )
    chunk_id: str
    doc_id: str
    title: str
    start: int
    end: int
    text: str
    retrieved: bool = Field(description="Among the k passages an answer is composed from.")
    candidate: bool = Field(description="Among the chunks the retrieval mode scored and ranked.")
    score: float | None = Field(
        description="The mode's ranking score (fused for hybrid); null when not a candidate."
    )
    dense_score: float = Field(description="Cosine similarity of question and chunk.")
    dense_rank: int = Field(description="Rank by dense score among all chunks searched.")
    bm25_score: float
    bm25_rank: int = Field(description="Rank by BM25 score among all chunks searched.")
    matched_terms: list[str] = Field(
        description="The question's terms (stemmed, as BM25 sees them) that occur in the chunk."
    )
    term_scores: dict[str, float] = Field(
        description="Each matched term's share of the BM25 score (they sum to it)."
    )


class GoldExplanation(BaseModel):
    """Where the expected document or chunk came, and what lost it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "id": EXAMPLE_DOC,
                "kind": "document",
                "retrieved": True,
                "rank": 1,
                "doc_rank": 1,
                "lost_by": [],
                "reason": f"retrieved at rank 1 (chunk {EXAMPLE_DOC}:3)",
                "chunk": ExplainedChunk.model_config["json_schema_extra"]["example"],
            }
        }
    )

    id: str
    kind: Literal["document", "chunk"]
    retrieved: bool
    rank: int | None = Field(
        description="The best rank of its chunk(s) by the mode's score; null when no chunk of it "
        "was a candidate."
    )
    doc_rank: int | None = Field(
        description="Its document's rank among the candidates' documents (by best chunk)."
    )
    lost_by: list[str] = Field(
        description="Empty when retrieved; else what lost it: `dense`, `bm25` (a signal ranked "
        "it below k, or below the candidates it contributes), `fusion`, or `filters`."
    )
    reason: str
    chunk: ExplainedChunk = Field(description="Its best-ranked chunk.")


class ExplainResponse(BaseModel):
    """Why each passage was retrieved, and (with `gold`) why the expected one was or was not."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "question": EXAMPLE_QUESTION,
                "mode": "hybrid",
                "k": 5,
                "query_terms": ["miner", "chirchik", "center", "target"],
                "n_searched": 40,
                "n_candidates": 40,
                "passages": [ExplainedChunk.model_config["json_schema_extra"]["example"]],
                "gold": GoldExplanation.model_config["json_schema_extra"]["example"],
                "timings_ms": {"embed": 6.1, "search": 1.2, "explain": 3.0, "total": 10.5},
            }
        }
    )

    question: str
    mode: str
    k: int
    query_terms: list[str] = Field(description="The question's terms as BM25 analyses them.")
    n_searched: int = Field(description="Chunks ranked: the index, or those the filters allow.")
    n_candidates: int = Field(
        description="Chunks the mode ranks: hybrid, the fused pool; dense, all searched; bm25, "
        "those sharing a term with the question."
    )
    passages: list[ExplainedChunk] = Field(description="The k retrieved chunks, best first.")
    gold: GoldExplanation | None = None
    timings_ms: dict[str, float]
